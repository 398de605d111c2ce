"""The in-process side of the S3 benchmark (case 10): pyarrow and polars writing and reading a
bundle's tables to and from the same S3-compatible server as btstore, and btstore's Python
package reading a job's result in process as they do. One measurement per process, one JSON
object printed ({"seconds", "rows"}):

    s3_peers.py write --tool pyarrow|polars --src BUNDLE_DIR --uri s3://bucket/prefix
    s3_peers.py read  --tool pyarrow|polars --uri s3://bucket/prefix
    s3_peers.py month --tool polars --uri s3://bucket/prefix --from YYYY-MM-DD --to YYYY-MM-DD
    s3_peers.py read|month --tool btstore --catalog URL --uri s3://bucket/prefix --job JOB_ID
                [--from --to]
    s3_peers.py write --tool btstore --catalog URL --uri s3://bucket/prefix --src BUNDLE_DIR
                --job JOB_ID --from YYYY-MM-DD --to YYYY-MM-DD

The endpoint and credentials come from the environment (BTSTORE_S3_ENDPOINT and the AWS
variables), as for btstore. `write` reads the local tables first (untimed); btstore's writes them
with `Store.import_result` (validation, checksums, the upload and the catalog's commit, as a
notebook stores a result it computed). btstore's store is opened before the clock starts (a
notebook or service opens it once), as pyarrow's and polars' modules are imported before it; its
open time is printed as "open_seconds".
"""

import argparse
import datetime as dt
import json
import os
import time

TABLES = ("daily_signals", "daily_weights", "daily_ic")
METRICS = ("mean_ic", "icir", "hit_rate", "coverage", "long_short_spread", "average_turnover",
           "decay_half_life")


def filesystem():
    import pyarrow.fs as pafs
    endpoint = os.environ["BTSTORE_S3_ENDPOINT"]
    scheme, _, host = endpoint.partition("://")
    return pafs.S3FileSystem(access_key=os.environ["AWS_ACCESS_KEY_ID"],
                             secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
                             region=os.environ.get("AWS_REGION", "us-east-1"), scheme=scheme,
                             endpoint_override=host)


def storage_options():
    return {"aws_access_key_id": os.environ["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": os.environ["AWS_SECRET_ACCESS_KEY"],
            "aws_region": os.environ.get("AWS_REGION", "us-east-1"),
            "aws_endpoint_url": os.environ["BTSTORE_S3_ENDPOINT"], "aws_allow_http": "true"}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("op", choices=("write", "read", "month"))
    parser.add_argument("--tool", choices=("pyarrow", "polars", "btstore"), required=True)
    parser.add_argument("--catalog")
    parser.add_argument("--job")
    parser.add_argument("--src")
    parser.add_argument("--uri", required=True)
    parser.add_argument("--from", dest="start")
    parser.add_argument("--to", dest="end")
    args = parser.parse_args()
    key = args.uri[len("s3://"):]
    rows = 0
    extra = {}
    if args.tool == "btstore" and args.op == "write":
        import btstore
        import pyarrow.parquet as pq
        tables = {t: pq.read_table(os.path.join(args.src, f"{t}.parquet")) for t in TABLES}
        # The metrics and ids of the bundle's summary, as `btstore import` takes them.
        with open(os.path.join(args.src, "summary.json"), encoding="utf-8") as f:
            summary = json.load(f)
        opened = time.perf_counter()
        store = btstore.Store(catalog=args.catalog, artifact_root=args.uri)
        extra["open_seconds"] = time.perf_counter() - opened
        start = time.perf_counter()
        metrics = {k: summary[k] for k in METRICS if summary.get(k) is not None}
        store.import_result(alpha_name="bench", start_date=args.start, end_date=args.end,
                            job_id=args.job, tables=tables, metrics=metrics,
                            snapshot_id=summary["snapshot_id"],
                            dataset_version_ids=summary.get("dataset_version_ids"))
        rows = sum(table.num_rows for table in tables.values())
    elif args.tool == "btstore":
        import btstore
        opened = time.perf_counter()
        store = btstore.Store(catalog=args.catalog, artifact_root=args.uri)
        extra["open_seconds"] = time.perf_counter() - opened
        month = args.op == "month"
        start = time.perf_counter()
        result = store.get_result(args.job, start=args.start if month else None,
                                  end=args.end if month else None,
                                  tables=["daily_signals"] if month else None)
        rows = sum(frame.height for frame in result.tables.values())
    elif args.op == "write":
        import pyarrow.parquet as pq
        tables = {t: pq.read_table(os.path.join(args.src, f"{t}.parquet")) for t in TABLES}
        if args.tool == "polars":
            import polars as pl
            frames = {t: pl.from_arrow(table) for t, table in tables.items()}
        fs = filesystem()
        start = time.perf_counter()
        for name, table in tables.items():
            if args.tool == "pyarrow":
                pq.write_table(table, f"{key}/{name}.parquet", filesystem=fs)
            else:
                frames[name].write_parquet(f"{args.uri}/{name}.parquet",
                                           storage_options=storage_options())
            rows += table.num_rows
    elif args.op == "read":
        # Modules imported and pyarrow's filesystem made before the clock starts, as btstore's
        # store is opened before it.
        import polars as pl
        import pyarrow.parquet as pq
        fs = filesystem() if args.tool == "pyarrow" else None
        start = time.perf_counter()
        for name in TABLES:
            if args.tool == "pyarrow":
                rows += pq.read_table(f"{key}/{name}.parquet", filesystem=fs).num_rows
            else:
                rows += pl.read_parquet(f"{args.uri}/{name}.parquet",
                                        storage_options=storage_options()).height
    else:
        import polars as pl
        low, high = dt.date.fromisoformat(args.start), dt.date.fromisoformat(args.end)
        start = time.perf_counter()
        rows = (pl.scan_parquet(f"{args.uri}/daily_signals.parquet",
                                storage_options=storage_options())
                .filter(pl.col("date").is_between(low, high)).collect().height)
    print(json.dumps({"seconds": time.perf_counter() - start, "rows": rows, **extra}))


if __name__ == "__main__":
    main()

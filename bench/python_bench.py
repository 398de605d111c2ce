"""The Python package's side of the benchmarks (case 9 of run_bench.py): one measurement per
process, printed as one JSON object with `seconds` (and more), like btstore_bench and peers.py.
Needs `btstore` importable (run_bench.py sets PYTHONPATH=<build>/python).

    python_bench.py import     --catalog URL --root DIR --src BUNDLE --job-id ID      (setup)
    python_bench.py ic-jobs    --catalog URL --root DIR --jobs N --days D --alpha A  (setup)
    python_bench.py get-result --catalog URL --root DIR --job-id ID
    python_bench.py ic-panel   --catalog URL --root DIR --alpha A
    python_bench.py ic-glob    --glob 'DIR/*/daily_ic.parquet'
    python_bench.py list       --catalog URL --iterations N [--page-size 50]

get-result times Store.get_result (catalog lookup, manifest checks, the three tables) and the
hand-over of the tables as polars DataFrames; ic-panel times Store.ic_panel with a list filter;
ic-glob times polars scan_parquet over a glob of the same files, with the path as a column;
list times the first page of list_jobs for the filters of btstore_bench's `list` that take the
same form in Python (none, user, alpha, status) and reports p50/p99, after the same walk of
10,000 rows per filter that btstore_bench's `list` makes before it times.
"""

import argparse
import datetime as dt
import json
import statistics
import tempfile
import time

import polars as pl

import btstore
import limiter  # bench/limiter.py: marks the measured operation for the profile run


def cmd_import(args):
    store = btstore.Store(args.catalog, args.root)
    out = store.import_result(args.src, alpha_name="bench", start_date="2010-01-01",
                              end_date="2019-12-31", job_id=args.job_id, created_by="bench")
    print(json.dumps({"job_id": out.job_id}))


def cmd_ic_jobs(args):
    """N completed jobs whose daily_ic has `days` rows (signals and weights of one symbol)."""
    store = btstore.Store(args.catalog, args.root)
    dates = pl.date_range(dt.date(2010, 1, 4), dt.date(2040, 1, 1), "1d", eager=True)
    dates = dates.filter(dates.dt.weekday() <= 5).head(args.days)
    start = time.perf_counter()
    for i in range(args.jobs):
        ic = pl.DataFrame({"date": dates, "ic": ((pl.int_range(args.days, eager=True) * (i + 1))
                                                 % 97 / 970.0),
                           "rank_ic": pl.int_range(args.days, eager=True) % 89 / 890.0})
        one = pl.DataFrame({"date": dates, "permno": pl.repeat(1, args.days, eager=True,
                                                               dtype=pl.Int64),
                            "signal": pl.repeat(0.5, args.days, eager=True)})
        store.import_result(tables={"daily_signals": one,
                                    "daily_weights": one.rename({"signal": "weight"}),
                                    "daily_ic": ic},
                            metrics={"mean_ic": 0.01}, snapshot_id="bench",
                            dataset_version_ids={"prices": "v1"}, alpha_name=args.alpha,
                            start_date=dates[0], end_date=dates[-1], job_id=f"ic-{i}",
                            created_by="bench")
    print(json.dumps({"jobs": args.jobs, "seconds": time.perf_counter() - start}))


def cmd_get_result(args):
    store = btstore.Store(args.catalog, args.root)
    with limiter.region():
        start = time.perf_counter()
        result = store.get_result(args.job_id)
        frames = [result.daily_signals, result.daily_weights, result.daily_ic]
        seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "rows": sum(f.height for f in frames)}))


def cmd_ic_panel(args):
    store = btstore.Store(args.catalog, args.root)
    start = time.perf_counter()
    panel = store.ic_panel(alpha_name=args.alpha)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "rows": panel.height}))


def cmd_ic_glob(args):
    start = time.perf_counter()
    panel = pl.scan_parquet(args.glob, include_file_paths="path").collect()
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "rows": panel.height}))


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cmd_list(args):
    # Listing reads only the catalog; the store still wants an artifact root.
    with tempfile.TemporaryDirectory(prefix="btstore-bench-list-") as root:
        list_pages(args, btstore.Store(args.catalog, root))


def list_pages(args, store):
    filters = {"none": {}, "user": {"created_by": "user7"}, "alpha": {"alpha_name": "alpha3"},
               "status": {"status": "completed"}}
    out = []
    for name, given in filters.items():
        # The C++ side walks 10,000 rows deep with each filter before timing (to find its deep
        # cursor), which brings that filter's index pages into SQLite's cache; walk the same.
        walked, after = 0, None
        while walked < 10_050:
            page = store.list_jobs_page(limit=1000, after=after, **given)
            walked += len(page.jobs)
            if page.next is None:
                break
            after = page.next
        times = []
        for i in range(-2, args.iterations):  # 2 warm-up rounds, not recorded
            start = time.perf_counter()
            jobs = store.list_jobs(limit=args.page_size, **given)
            if i >= 0:
                times.append(time.perf_counter() - start)
        out.append({"filter": name, "p50_s": statistics.median(times),
                    "p99_s": percentile(times, 0.99), "rows": len(jobs)})
    print(json.dumps({"filters": out}))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("import")
    p.add_argument("--catalog", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--src", required=True)
    p.add_argument("--job-id", required=True)
    p = sub.add_parser("ic-jobs")
    p.add_argument("--catalog", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--jobs", type=int, required=True)
    p.add_argument("--days", type=int, required=True)
    p.add_argument("--alpha", required=True)
    p = sub.add_parser("get-result")
    p.add_argument("--catalog", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--job-id", required=True)
    p = sub.add_parser("ic-panel")
    p.add_argument("--catalog", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--alpha", required=True)
    p = sub.add_parser("ic-glob")
    p.add_argument("--glob", required=True)
    p = sub.add_parser("list")
    p.add_argument("--catalog", required=True)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--page-size", type=int, default=50)
    args = parser.parse_args()
    {"import": cmd_import, "ic-jobs": cmd_ic_jobs, "get-result": cmd_get_result,
     "ic-panel": cmd_ic_panel, "ic-glob": cmd_ic_glob, "list": cmd_list}[args.command](args)


if __name__ == "__main__":
    main()

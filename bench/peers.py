"""The peer side of the benchmarks: pyarrow and polars doing what btstore_bench does.

Each invocation performs one measurement in a fresh process and prints one JSON object, with
the same keys as btstore_bench (seconds, rss_before_mb, peak_rss_mb, table_bytes, rows):

    peers.py write --tool pyarrow|polars --src BUNDLE_DIR --out DIR
    peers.py read  --tool pyarrow|polars --dir BUNDLE_DIR
    peers.py month --tool pyarrow|polars --dir BUNDLE_DIR --from YYYY-MM-DD --to YYYY-MM-DD

`write` first reads the three tables of a bundle written by btstore_bench (untimed), then times
writing them with the tool's own Parquet writer, snappy, default settings otherwise, no flush.
Peak memory is that of the timed operation: VmHWM is reset through /proc/self/clear_refs just
before it (Linux >= 4.0), so loading the input does not count while holding it does.
"""

import argparse
import datetime as dt
import gc
import json
import os
import time

TABLES = ("daily_signals", "daily_weights", "daily_ic")
pl = None  # polars or pyarrow.parquet, imported in main() for the tool measured
pq = None


def status_mib(key):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return -1.0


def reset_peak_rss():
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def measure(operation):
    """Run operation() once; return its result, seconds and memory facts."""
    gc.collect()
    before = status_mib("VmRSS")
    reset_peak_rss()
    start = time.perf_counter()
    result = operation()
    seconds = time.perf_counter() - start
    return result, {"seconds": seconds, "rss_before_mb": before, "peak_rss_mb": status_mib("VmHWM")}


def table_bytes(tables, tool):
    if tool == "polars":
        return sum(int(t.estimated_size()) for t in tables)
    return sum(int(t.nbytes) for t in tables)


def cmd_write(args):
    tables = [read_whole(args.tool, os.path.join(args.src, f"{name}.parquet")) for name in TABLES]
    os.makedirs(args.out, exist_ok=True)
    paths = [os.path.join(args.out, f"{name}.parquet") for name in TABLES]

    def write():
        for table, path in zip(tables, paths):
            if args.tool == "polars":
                table.write_parquet(path, compression="snappy")
            else:
                pq.write_table(table, path, compression="snappy")

    _, facts = measure(write)
    facts["table_bytes"] = table_bytes(tables, args.tool)
    facts["file_bytes"] = sum(os.path.getsize(p) for p in paths)
    facts["rows"] = len(tables[0]) if args.tool == "polars" else tables[0].num_rows
    return facts


def read_whole(tool, path):
    if tool == "polars":
        return pl.read_parquet(path)
    return pq.read_table(path)


def cmd_read(args):
    paths = [os.path.join(args.dir, f"{name}.parquet") for name in TABLES]

    def read():
        return [read_whole(args.tool, p) for p in paths]

    tables, facts = measure(read)
    facts["table_bytes"] = table_bytes(tables, args.tool)
    facts["rows"] = len(tables[0]) if args.tool == "polars" else tables[0].num_rows
    return facts


def cmd_month(args):
    path = os.path.join(args.dir, "daily_signals.parquet")
    first = dt.date.fromisoformat(args.date_from)
    last = dt.date.fromisoformat(args.date_to)

    def read():
        if args.tool == "polars":
            return (pl.scan_parquet(path)
                    .filter(pl.col("date").is_between(first, last))
                    .collect())
        return pq.read_table(path, filters=[("date", ">=", first), ("date", "<=", last)])

    table, facts = measure(read)
    facts["table_bytes"] = table_bytes([table], args.tool)
    facts["rows"] = len(table) if args.tool == "polars" else table.num_rows
    return facts


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    write = sub.add_parser("write")
    write.add_argument("--tool", choices=("pyarrow", "polars"), required=True)
    write.add_argument("--src", required=True)
    write.add_argument("--out", required=True)
    read = sub.add_parser("read")
    read.add_argument("--tool", choices=("pyarrow", "polars"), required=True)
    read.add_argument("--dir", required=True)
    month = sub.add_parser("month")
    month.add_argument("--tool", choices=("pyarrow", "polars"), required=True)
    month.add_argument("--dir", required=True)
    month.add_argument("--from", dest="date_from", required=True)
    month.add_argument("--to", dest="date_to", required=True)
    args = parser.parse_args()
    # Import only the tool measured, so that its process holds no other library's memory.
    global pl, pq
    if args.tool == "polars":
        import polars as pl
        version = pl.__version__
    else:
        import pyarrow
        import pyarrow.parquet as pq
        version = pyarrow.__version__
    facts = {"write": cmd_write, "read": cmd_read, "month": cmd_month}[args.command](args)
    facts["tool_version"] = version
    print(json.dumps(facts))


if __name__ == "__main__":
    main()

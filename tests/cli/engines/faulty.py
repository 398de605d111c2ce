#!/usr/bin/env python3
"""A command engine for the tests: its config's "mode" says how it behaves.

valid            a small valid bundle
wrong_dtype      daily_signals.signal written as float32
unsorted         daily_weights rows in descending date order
no_summary       the three tables, no summary.json
nothing          writes nothing, exits 0
stderr_exit3     10 MB on stderr, then exit 3
wait_for_sigterm reports progress, starts a grandchild (sleep), waits until SIGTERM, exits 143
print_env        a valid bundle; prints ENGINE_GREETING and the working directory on stdout
quiet_checkpoint without a checkpoint: saves one, starts a grandchild (sleep), then waits in
                 silence, ignoring SIGPIPE's absence of readers (it never writes again), until
                 SIGTERM; with one: a valid bundle whose summary says what it resumed from
"""
import json
import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta

import polars as pl

job = json.load(open(os.environ["BTSTORE_JOB"]))
mode = job["config_json"].get("mode", "valid")
out = os.environ["BTSTORE_OUTPUT_DIR"]
control = os.fdopen(int(os.environ["BTSTORE_CONTROL_FD"]), "w", buffering=1)


def write_bundle(signal_type=pl.Float64, reverse_weights=False, summary=True):
    start = date.fromisoformat(job["start_date"])
    days = [start + timedelta(n) for n in range(5)]
    permnos = [1, 2, 3]
    keys = {"date": [d for d in days for _ in permnos], "permno": permnos * len(days)}
    n = len(keys["date"])
    pl.DataFrame({**keys, "signal": [0.5] * n},
                 schema={"date": pl.Date, "permno": pl.Int64, "signal": signal_type}) \
        .write_parquet(f"{out}/daily_signals.parquet")
    weights = pl.DataFrame({**keys, "weight": [0.1] * n},
                           schema={"date": pl.Date, "permno": pl.Int64, "weight": pl.Float64})
    if reverse_weights:
        weights = weights.sort("date", "permno", descending=True)
    weights.write_parquet(f"{out}/daily_weights.parquet")
    pl.DataFrame({"date": days, "ic": [0.1] * 5, "rank_ic": [0.2] * 5},
                 schema={"date": pl.Date, "ic": pl.Float64, "rank_ic": pl.Float64}) \
        .write_parquet(f"{out}/daily_ic.parquet")
    if summary:
        json.dump({"snapshot_id": "test-snapshot", "dataset_version_ids": {"prices": "v1"},
                   "mean_ic": 0.1}, open(f"{out}/summary.json", "w"))


if mode == "valid":
    write_bundle()
elif mode == "wrong_dtype":
    write_bundle(signal_type=pl.Float32)
elif mode == "unsorted":
    write_bundle(reverse_weights=True)
elif mode == "no_summary":
    write_bundle(summary=False)
elif mode == "nothing":
    pass
elif mode == "stderr_exit3":
    line = "x" * 99 + "\n"
    for i in range(100_000):  # 10 MB
        sys.stderr.write(line)
    sys.stderr.write("the last words before exit 3\n")
    sys.stderr.flush()
    sys.exit(3)
elif mode == "wait_for_sigterm":
    stop = False

    def on_sigterm(signum, frame):
        global stop
        stop = True

    signal.signal(signal.SIGTERM, on_sigterm)
    subprocess.Popen(["sleep", "1000"])  # a grandchild in the same process group
    control.write(json.dumps({"progress": 10}) + "\n")
    print("waiting for SIGTERM", flush=True)
    while not stop:
        time.sleep(0.005)
    print("got SIGTERM", file=sys.stderr, flush=True)
    sys.exit(143)
elif mode == "quiet_checkpoint":
    if os.environ["BTSTORE_CHECKPOINT"]:
        resumed_from = open(os.environ["BTSTORE_CHECKPOINT"]).read()
        write_bundle()
        summary = json.load(open(f"{out}/summary.json"))
        summary["resumed_from"] = resumed_from
        json.dump(summary, open(f"{out}/summary.json", "w"))
        sys.exit(0)
    path = os.path.join(os.environ["BTSTORE_CHECKPOINT_DIR"], "state")
    with open(path, "w") as f:
        f.write(f"state of attempt {job['attempt']}")
    control.write(json.dumps({"checkpoint": "state"}) + "\n")
    subprocess.Popen(["sleep", "1000"])
    while True:  # a long computation that reports nothing
        time.sleep(1)
elif mode == "print_env":
    print(f"greeting={os.environ.get('ENGINE_GREETING')}")
    print(f"cwd={os.getcwd()}")
    print(f"catalog={os.environ.get('BTSTORE_CATALOG')}")
    write_bundle()
else:
    sys.exit(f"unknown mode {mode}")

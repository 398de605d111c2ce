#!/usr/bin/env python3
"""The smallest btstore command engine: read the job, write a bundle, exit 0 (docs/ENGINES.md).

    btstore worker --engine minimal='python3 examples/engines/minimal.py'
    btstore submit --alpha demo --start 2024-01-02 --end 2024-01-05 --config '{"engine": "minimal"}'
"""
import json
import os
from datetime import date, timedelta

import polars as pl

job = json.load(open(os.environ["BTSTORE_JOB"]))          # catalog fields, config_json, attempt
out = os.environ["BTSTORE_OUTPUT_DIR"]                     # empty: the bundle goes here
control = os.fdopen(int(os.environ["BTSTORE_CONTROL_FD"]), "w", buffering=1)

start, end = date.fromisoformat(job["start_date"]), date.fromisoformat(job["end_date"])
days = [start + timedelta(n) for n in range((end - start).days + 1)]
permnos = [10001, 10002]
# Rows sorted by (date, permno); exact types: date32, int64, float64.
keys = {"date": [d for d in days for _ in permnos], "permno": permnos * len(days)}
schema = {"date": pl.Date, "permno": pl.Int64}
pl.DataFrame({**keys, "signal": [1.0, -1.0] * len(days)}, schema={**schema, "signal": pl.Float64}) \
    .write_parquet(f"{out}/daily_signals.parquet")
pl.DataFrame({**keys, "weight": [0.5, -0.5] * len(days)}, schema={**schema, "weight": pl.Float64}) \
    .write_parquet(f"{out}/daily_weights.parquet")
pl.DataFrame({"date": days, "ic": [0.1] * len(days), "rank_ic": [0.1] * len(days)},
             schema={"date": pl.Date, "ic": pl.Float64, "rank_ic": pl.Float64}) \
    .write_parquet(f"{out}/daily_ic.parquet")
control.write(json.dumps({"progress": 90}) + "\n")
json.dump({"snapshot_id": "demo-snapshot", "dataset_version_ids": {"prices": "v1"},
           "mean_ic": 0.1, "icir": None, "hit_rate": 1.0}, open(f"{out}/summary.json", "w"))
print(f"wrote {len(days)} days for job {job['job_id']} (attempt {job['attempt']})")

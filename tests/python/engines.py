"""Python engines of the tests, also run by worker processes (worker_main.py).

`paced` computes one business day per step with ctx.sleep pauses, checkpointing its day index
every `checkpoint_every` days and resuming from the checkpoint; it records in the result's
`extra_summary` where it resumed, so a test can tell a resumed run from a fresh one. The
result depends only on the job's dates and seed: an interrupted and a straight run give the
same tables bit for bit.
"""

import datetime as dt
import json
import math
from pathlib import Path

import polars as pl

from conftest import business_days


def paced(job, ctx):
    config = job.config
    days = business_days(dt.date.fromisoformat(job.start_date),
                         config.get("days", 20))
    pause = config.get("pause", 0.0)
    every = config.get("checkpoint_every", 5)
    marker = config.get("marker")
    saved = ctx.load_checkpoint()
    start = json.loads(saved)["day"] if saved else 0
    for day in range(start, len(days)):
        ctx.check()
        if pause:
            ctx.sleep(pause)
        ctx.progress(100 * day // len(days))
        if every and day > start and day % every == 0:
            ctx.save_checkpoint(json.dumps({"day": day}))
            if marker:
                Path(marker).write_text(str(day))
    ctx.check()
    seed = config.get("seed", 1)
    permnos = [1, 2, 3]
    signals = pl.DataFrame({"date": [d for d in days for _ in permnos],
                            "permno": permnos * len(days),
                            "signal": [math.sin(seed + i) for i in range(len(days) * 3)]},
                           schema={"date": pl.Date, "permno": pl.Int64, "signal": pl.Float64})
    ic = pl.DataFrame({"date": days, "ic": [math.cos(seed + i) for i in range(len(days))],
                       "rank_ic": [0.5] * len(days)},
                      schema={"date": pl.Date, "ic": pl.Float64, "rank_ic": pl.Float64})
    return {"daily_signals": signals,
            "daily_weights": signals.rename({"signal": "weight"}),
            "daily_ic": ic,
            "metrics": {"mean_ic": ic["ic"].mean(), "hit_rate": 0.5},
            "snapshot_id": config.get("snapshot_id", "py-snap"),
            "dataset_version_ids": {"prices": "v1"},
            "extra_summary": {"python_engine": {"resumed_at_day": start,
                                                "attempt": job.attempt}}}


def failing(job, ctx):
    raise RuntimeError(f"bad data for {job.alpha_name}")


def forever(job, ctx):
    """Never finishes on its own: runs until asked to stop."""
    while True:
        ctx.check()
        ctx.sleep(0.05)

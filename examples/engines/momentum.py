#!/usr/bin/env python3
"""A cross-sectional momentum backtest as a btstore command engine (docs/ENGINES.md).

Register it on a worker and submit jobs that name it:

    btstore worker --engine momentum='python3 examples/engines/momentum.py'
    btstore submit --alpha mom20 --start 2020-01-01 --end 2020-12-31 --weight-method zscore \
        --config '{"engine": "momentum", "lookback": 20, "symbols": 50}'

It builds its own synthetic price panel (deterministic in `seed`), computes a momentum signal
(the return over `lookback` days), z-scored weights, the daily IC and rank IC of the signal
against the next day's return, and the metrics, and writes the bundle with polars. It reports
progress on the control pipe, saves a checkpoint every `checkpoint_every_days` days, resumes from
the one it is given, and on SIGTERM saves a checkpoint and exits. A resumed run gives the same
tables and metrics, bit for bit, as an uninterrupted one.

Config keys: symbols (50), lookback (20), seed (7), checkpoint_every_days (20),
delay_ms_per_day (0: a pause per day, to make a run long), snapshot_id ("momentum-synthetic-v1").
"""

import json
import math
import os
import random
import signal
import sys
import time
from datetime import date, timedelta

import polars as pl

stop_requested = False


def on_sigterm(signum, frame):
    # The worker asks us to stop (cancel, lost lease, job_timeout, shutdown): finish the day at
    # hand, save a checkpoint, exit. The worker sends SIGKILL after its grace period.
    global stop_requested
    stop_requested = True


class Control:
    """The control pipe: JSON lines to the worker."""

    def __init__(self):
        self.pipe = os.fdopen(int(os.environ["BTSTORE_CONTROL_FD"]), "w", buffering=1)
        self.last_progress = -1

    def progress(self, pct):
        if pct != self.last_progress:
            self.pipe.write(json.dumps({"progress": pct}) + "\n")
            self.last_progress = pct

    def checkpoint(self, state):
        # Write the file completely before naming it; the worker copies it when it reads the line.
        name = f"day-{state['next_day']}.json"
        path = os.path.join(os.environ["BTSTORE_CHECKPOINT_DIR"], name)
        with open(path + ".tmp", "w") as f:
            json.dump(state, f)
        os.replace(path + ".tmp", path)
        self.pipe.write(json.dumps({"checkpoint": name}) + "\n")


def business_days(start, end):
    days, d = [], start
    while d <= end:
        if d.weekday() < 5:
            days.append(d)
        d += timedelta(days=1)
    return days


def price_panel(days, symbols, lookback, seed):
    """Prices for `lookback` warm-up days before the first day, the days, and one day after."""
    rng = random.Random(seed)
    first, last = days[0], days[-1]
    warmup = business_days(first - timedelta(days=3 * lookback + 10), first - timedelta(days=1))
    dates = warmup[-lookback:] + days + [last + timedelta(days=1 if last.weekday() < 4 else 3)]
    rows = {"date": [], "permno": [], "price": []}
    for s in range(symbols):
        permno = 10000 + s
        price, drift = 100.0, 0.0
        for d in dates:
            # A persistent drift makes past returns say something about the next one.
            drift = 0.95 * drift + rng.gauss(0.0, 0.002)
            price *= math.exp(drift + rng.gauss(0.0, 0.015))
            rows["date"].append(d)
            rows["permno"].append(permno)
            rows["price"].append(price)
    return pl.DataFrame(rows, schema={"date": pl.Date, "permno": pl.Int64, "price": pl.Float64})


def signals_and_returns(panel, lookback):
    return (panel.sort("permno", "date")
            .with_columns(
                signal=(pl.col("price") / pl.col("price").shift(lookback).over("permno") - 1.0),
                forward=(pl.col("price").shift(-1).over("permno") / pl.col("price") - 1.0))
            .sort("date", "permno"))


def day_ic(day_frame):
    """Pearson and Spearman correlation of the signal with the next day's return."""
    valid = day_frame.filter(pl.col("signal").is_not_null() & pl.col("forward").is_not_null())
    if valid.height < 3:
        return float("nan"), float("nan")
    ic = valid.select(pl.corr("signal", "forward")).item()
    rank_ic = valid.select(pl.corr("signal", "forward", method="spearman")).item()
    return (float("nan") if ic is None else ic), (float("nan") if rank_ic is None else rank_ic)


def main():
    with open(os.environ["BTSTORE_JOB"]) as f:
        job = json.load(f)
    config = job["config_json"]
    symbols = int(config.get("symbols", 50))
    lookback = int(config.get("lookback", 20))
    seed = int(config.get("seed", 7))
    every = int(config.get("checkpoint_every_days", 20))
    delay = float(config.get("delay_ms_per_day", 0)) / 1000.0
    out = os.environ["BTSTORE_OUTPUT_DIR"]
    control = Control()
    signal.signal(signal.SIGTERM, on_sigterm)

    days = business_days(date.fromisoformat(job["start_date"]), date.fromisoformat(job["end_date"]))
    if not days:
        print("the date range holds no business day", file=sys.stderr)
        return 2
    frame = signals_and_returns(price_panel(days, symbols, lookback, seed), lookback)
    frame = frame.filter(pl.col("date").is_between(days[0], days[-1]))

    # Resume: the days already computed come from the checkpoint, bit for bit.
    state = {"version": 1, "next_day": 0, "ic": [], "rank_ic": []}
    if os.environ.get("BTSTORE_CHECKPOINT"):
        with open(os.environ["BTSTORE_CHECKPOINT"]) as f:
            state = json.load(f)
        print(f"resuming at day {state['next_day']} of {len(days)}")
    resumed_at = state["next_day"]
    by_day = frame.partition_by("date", as_dict=True, maintain_order=True)
    for i in range(resumed_at, len(days)):
        ic, rank_ic = day_ic(by_day[(days[i],)])
        state["ic"].append(ic)
        state["rank_ic"].append(rank_ic)
        state["next_day"] = i + 1
        control.progress(int(100 * (i + 1) / len(days)))
        if stop_requested:
            control.checkpoint(state)
            print(f"stopped at day {i + 1} on SIGTERM", file=sys.stderr)
            return 128 + signal.SIGTERM
        if every > 0 and (i + 1) % every == 0 and i + 1 < len(days):
            control.checkpoint(state)
        if delay:
            time.sleep(delay)

    # Weights: the signal z-scored across the day's symbols, scaled to gross exposure 1.
    z = (pl.col("signal") - pl.col("signal").mean().over("date")) / pl.col("signal").std().over("date")
    frame = frame.with_columns(weight=(z / z.abs().sum().over("date")))
    signals = frame.select("date", "permno", "signal")
    weights = frame.select("date", "permno", "weight")
    ic_table = pl.DataFrame({"date": days, "ic": state["ic"], "rank_ic": state["rank_ic"]},
                            schema={"date": pl.Date, "ic": pl.Float64, "rank_ic": pl.Float64})

    finite = [v for v in state["ic"] if math.isfinite(v)]
    mean_ic = sum(finite) / len(finite) if finite else None
    std = (math.sqrt(sum((v - mean_ic) ** 2 for v in finite) / (len(finite) - 1))
           if len(finite) > 1 else 0.0)
    icir = (mean_ic / std if std > 0 else 0.0) if mean_ic is not None else None
    hit_rate = sum(1 for v in finite if v > 0) / len(finite) if finite else None
    coverage = frame.select(pl.col("signal").is_not_null().mean()).item()
    quintiles = (frame.filter(pl.col("forward").is_not_null() & pl.col("signal").is_not_null())
                 .with_columns(q=(pl.col("signal").rank().over("date")
                                  / pl.len().over("date") * 5).ceil())
                 .group_by("date")
                 .agg(top=pl.col("forward").filter(pl.col("q") == 5).mean(),
                      bottom=pl.col("forward").filter(pl.col("q") == 1).mean()))
    long_short = quintiles.select((pl.col("top") - pl.col("bottom")).mean()).item()
    turnover = (frame.sort("permno", "date")
                .with_columns(change=(pl.col("weight") - pl.col("weight").shift(1).over("permno"))
                              .abs())
                .group_by("date").agg(pl.col("change").sum() / 2)
                .filter(pl.col("date") > days[0])
                .select(pl.col("change").mean()).item())

    def metric(value):
        return value if value is not None and math.isfinite(value) else None

    signals.write_parquet(os.path.join(out, "daily_signals.parquet"), compression="snappy")
    weights.write_parquet(os.path.join(out, "daily_weights.parquet"), compression="snappy")
    ic_table.write_parquet(os.path.join(out, "daily_ic.parquet"), compression="snappy")
    summary = {
        "snapshot_id": config.get("snapshot_id", "momentum-synthetic-v1"),
        "dataset_version_ids": {"prices": f"synthetic-seed-{seed}"},
        "mean_ic": metric(mean_ic), "icir": metric(icir), "hit_rate": metric(hit_rate),
        "coverage": metric(coverage), "long_short_spread": metric(long_short),
        "average_turnover": metric(turnover), "decay_half_life": None,
        "engine": {"name": "momentum", "business_days": len(days), "resumed_at_day": resumed_at,
                   "computed_days": len(days) - resumed_at},
        "momentum": {"lookback": lookback, "symbols": symbols},
    }
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    control.progress(100)
    print(f"momentum: {len(days)} days, {symbols} symbols, mean IC {mean_ic}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fixtures of the Python package's tests.

`store` is parametrised over both catalogs: a fresh SQLite file, or a fresh database of a private
PostgreSQL cluster started once per session (tests/support/btstore_testing.py), each with its own
artifact root. `make_result` builds a valid result in memory as a notebook would (polars).
"""

import datetime as dt
import math
import sys
import time
from pathlib import Path

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from btstore_testing import private_pg_cluster  # noqa: E402

import btstore  # noqa: E402


@pytest.fixture(scope="session")
def pg_cluster():
    yield from private_pg_cluster("btstore-py-pg-")


class Place:
    """A catalog URL and an artifact root; `open()` gives a new Store on them."""

    def __init__(self, backend, url, root):
        self.backend = backend
        self.url = url
        self.root = Path(root)

    def open(self):
        return btstore.Store(self.url, self.root)


def make_place(backend, request, tmp_path):
    root = tmp_path / "results"
    if backend == "sqlite":
        return Place(backend, f"sqlite:{tmp_path / 'catalog.db'}", root)
    cluster = request.getfixturevalue("pg_cluster")
    return Place(backend, cluster.new_database(prefix="btstore_py_"), root)


@pytest.fixture(params=["sqlite", "postgresql"])
def place(request, tmp_path):
    """A fresh catalog on each backend, with its own artifact root."""
    return make_place(request.param, request, tmp_path)


@pytest.fixture
def store(place):
    return place.open()


def business_days(start, count):
    days, day = [], start
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day += dt.timedelta(days=1)
    return days


def make_result(days=30, symbols=5, seed=1, start=dt.date(2024, 1, 1)):
    """A valid result with NaN, null and +/-Inf in its tables, and the optional returns."""
    dates = business_days(start, days)
    rows = [(d, p) for d in dates for p in range(1, symbols + 1)]
    values = [math.sin(seed * 1000 + i) for i in range(len(rows))]
    values[0] = math.nan
    values[1] = math.inf
    values[2] = -math.inf
    signals = pl.DataFrame({"date": [r[0] for r in rows], "permno": [r[1] for r in rows],
                            "signal": values}, schema={"date": pl.Date, "permno": pl.Int64,
                                                       "signal": pl.Float64})
    signals = signals.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(None).otherwise(pl.col("signal"))
        .alias("signal"))
    weights = signals.rename({"signal": "weight"}).with_columns(pl.col("weight") / 10)
    ic = pl.DataFrame({"date": dates,
                       "ic": [math.cos(seed + i) / 10 for i in range(days)],
                       "rank_ic": [None if i == 1 else math.sin(seed + i) / 10
                                   for i in range(days)]},
                      schema={"date": pl.Date, "ic": pl.Float64, "rank_ic": pl.Float64})
    gross = pl.DataFrame({"date": dates, "return": [0.001 * i for i in range(days)]},
                         schema={"date": pl.Date, "return": pl.Float64})
    net = pl.DataFrame({"date": dates, "gross_return": [0.001 * i for i in range(days)],
                        "cost_drag": [0.0001] * days,
                        "net_return": [0.001 * i - 0.0001 for i in range(days)]},
                       schema={"date": pl.Date, "gross_return": pl.Float64,
                               "cost_drag": pl.Float64, "net_return": pl.Float64})
    return {"daily_signals": signals, "daily_weights": weights, "daily_ic": ic,
            "daily_portfolio_returns": gross, "net_portfolio_returns": net,
            "metrics": {"mean_ic": 0.01 * seed, "icir": 0.5, "hit_rate": 0.55,
                        "coverage": None, "long_short_spread": 0.002,
                        "average_turnover": 0.3, "decay_half_life": 4.0},
            "snapshot_id": f"snap-{seed}", "dataset_version_ids": {"prices": "v3", "ref": "v1"},
            "walk_forward": {"version": "1.0", "created_at": "2024-02-01T00:00:00Z",
                             "windows": [{"ic": 0.1}, {"ic": None}]}}


def wait_for(condition, timeout=30.0, what="condition"):
    """Poll `condition` (a cheap read of the catalog or a file) until it holds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)

"""btstore bundles as the platform's Python tools see them, and theirs as btstore sees them."""

import json
import math
import shutil
import struct

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

REQUIRED = {
    "daily_signals": {"date": pl.Date, "permno": pl.Int64, "signal": pl.Float64},
    "daily_weights": {"date": pl.Date, "permno": pl.Int64, "weight": pl.Float64},
    "daily_ic": {"date": pl.Date, "ic": pl.Float64, "rank_ic": pl.Float64},
}
ARROW_TYPES = {pl.Date: pa.date32(), pl.Int64: pa.int64(), pl.Float64: pa.float64()}
METRICS = ["mean_ic", "icir", "hit_rate", "coverage", "long_short_spread",
           "average_turnover", "decay_half_life"]


def bits(x):
    return None if x is None else struct.pack("<d", x)


def assert_same_cells(a: pa.Table, b: pa.Table):
    """Cell for cell, doubles bit for bit (NaN stays NaN, null stays null)."""
    assert a.schema.names == b.schema.names
    assert a.num_rows == b.num_rows
    for name in a.schema.names:
        x, y = a.column(name).to_pylist(), b.column(name).to_pylist()
        if pa.types.is_floating(a.schema.field(name).type):
            assert [bits(v) for v in x] == [bits(v) for v in y], name
        else:
            assert x == y, name


def duck_table(path) -> pa.Table:
    result = duckdb.sql(f"SELECT * FROM read_parquet('{path}')").arrow()
    return result.read_all() if isinstance(result, pa.RecordBatchReader) else result


@pytest.fixture()
def sample(run, tmp_path):
    bundle = tmp_path / "sample"
    code, doc = run("bundle", "sample", bundle, "--days", 40, "--symbols", 60, "--seed", 3)
    assert code == 0, doc
    return bundle


def test_sample_bundle_reads_alike_in_pyarrow_polars_and_duckdb(run, sample):
    code, inspect = run("bundle", "inspect", sample)
    assert code == 0, inspect
    assert inspect["manifest"] == "verified"
    summary = json.loads((sample / "summary.json").read_text())
    assert summary["schema_version"] == 1
    assert isinstance(summary["snapshot_id"], str)
    assert isinstance(summary["dataset_version_ids"], dict)
    for table, columns in REQUIRED.items():
        path = sample / f"{table}.parquet"
        frame = pl.read_parquet(path)
        assert dict(frame.schema) == columns
        arrow = pq.read_table(path)
        assert arrow.schema.names == list(columns)
        for name, dtype in columns.items():
            assert arrow.schema.field(name).type == ARROW_TYPES[dtype]
        assert frame.height == arrow.num_rows == inspect["tables"][table]["rows"]
        assert frame.height == summary["artifacts"][f"{table}.parquet"]["rows"]
        assert_same_cells(frame.to_arrow().cast(arrow.schema), arrow)
        assert_same_cells(duck_table(path).cast(arrow.schema), arrow)
    signals = pl.read_parquet(sample / "daily_signals.parquet")
    assert signals.height == 40 * 60
    assert signals.select(pl.struct("date", "permno").is_sorted()).item()


def polars_bundle(root):
    """A bundle as the platform's Python writer made it: polars, snappy, NaN and nulls in the
    tables, the optional tables of the platform (one with an extra column) and a table of its
    own, walk_forward.json and summary.json from json.dump with NaN tokens, no manifest."""
    root.mkdir()
    nan, inf = float("nan"), float("inf")
    dates = pl.date_range(pl.date(2021, 3, 1), pl.date(2021, 3, 12), "1d", eager=True)
    permnos = [10001, 10002, 10107]
    rows = [(d, p) for d in dates for p in permnos]
    values = [nan if i % 7 == 0 else None if i % 11 == 0 else inf if i == 5 else -inf if i == 6
              else (i * 0.37) % 1 - 0.5 for i in range(len(rows))]
    signals = pl.DataFrame({"date": [r[0] for r in rows], "permno": [r[1] for r in rows],
                            "signal": values},
                           schema={"date": pl.Date, "permno": pl.Int64, "signal": pl.Float64})
    weights = signals.rename({"signal": "weight"}).with_columns(pl.col("weight") / 3)
    ic = pl.DataFrame({"date": dates,
                       "ic": [nan if i == 2 else None if i == 4 else 0.01 * i for i in range(len(dates))],
                       "rank_ic": [0.02 * i for i in range(len(dates))]},
                      schema={"date": pl.Date, "ic": pl.Float64, "rank_ic": pl.Float64})
    returns = pl.DataFrame({"date": dates,
                            "return": [nan if i == 1 else 0.001 * i for i in range(len(dates))],
                            "label": [f"d{i}" for i in range(len(dates))]})
    net = pl.DataFrame({"date": dates, "gross_return": [0.001 * i for i in range(len(dates))],
                        "cost_drag": [-1e-4] * len(dates),
                        "net_return": [None if i == 2 else 0.001 * i - 1e-4
                                       for i in range(len(dates))]})
    by_stock = signals.rename({"signal": "return"}).with_columns(
        pl.format("S{}", pl.col("permno")).alias("symbol"))
    prices = signals.select("date", "permno", (pl.col("permno") / 100).alias("price"))
    turnover = pl.DataFrame({"date": dates, "turnover": [0.1] * len(dates)})
    frames = {"daily_signals": signals, "daily_weights": weights, "daily_ic": ic,
              "daily_portfolio_returns": returns, "net_portfolio_returns": net,
              "daily_returns": by_stock, "daily_prices": prices, "turnover": turnover}
    for name, frame in frames.items():
        frame.write_parquet(root / f"{name}.parquet", compression="snappy")
    with open(root / "walk_forward.json", "w") as f:
        json.dump({"version": "1.0", "created_at": "2021-03-15T08:00:00",
                   "windows": [{"test_ic": nan, "train_ic": 0.1}]}, f)
    summary = {"job_id": "py-job-1", "alpha_name": "value", "start_date": "2021-03-01",
               "end_date": "2021-03-12", "weight_method": "rank", "snapshot_id": "snap-py",
               "dataset_version_ids": {"prices": "2021-03-15"},
               "mean_ic": nan, "icir": inf, "hit_rate": None, "coverage": 0.1 + 0.2,
               "long_short_spread": -1.5e-7, "average_turnover": 1 / 3, "decay_half_life": 4.0,
               "engine_notes": {"threads": 8}}
    with open(root / "summary.json", "w") as f:
        json.dump(summary, f)  # Python writes NaN and Infinity as bare tokens
    assert "NaN" in (root / "summary.json").read_text()
    return frames, summary


def test_polars_bundle_survives_rewrite(run, tmp_path):
    frames, summary = polars_bundle(tmp_path / "py")
    code, doc = run("bundle", "rewrite", tmp_path / "py", tmp_path / "out")
    assert code == 0, doc
    out = tmp_path / "out"
    for name, frame in frames.items():
        back = pl.read_parquet(out / f"{name}.parquet")
        assert_frame_equal(back, frame, check_exact=True)  # NaN equals NaN here
        assert_same_cells(back.to_arrow(), frame.to_arrow())
        assert_same_cells(pq.read_table(out / f"{name}.parquet"), frame.to_arrow())
        # DuckDB sees the same cells, NaN included.
        assert_same_cells(duck_table(out / f"{name}.parquet"), back.to_arrow().cast(
            duck_table(out / f"{name}.parquet").schema))
    written = json.loads((out / "summary.json").read_text())
    assert written["mean_ic"] is None and written["icir"] is None and written["hit_rate"] is None
    for key in ["coverage", "long_short_spread", "average_turnover", "decay_half_life"]:
        assert bits(written[key]) == bits(summary[key]), key
    assert written["snapshot_id"] == "snap-py"
    assert written["dataset_version_ids"] == {"prices": "2021-03-15"}
    assert written["engine_notes"] == {"threads": 8}
    assert set(written["artifacts"]) == {f"{n}.parquet" for n in frames} | {"walk_forward.json"}
    walk_forward = json.loads((out / "walk_forward.json").read_text())
    assert walk_forward["windows"] == [{"test_ic": None, "train_ic": 0.1}]
    code, inspect = run("bundle", "inspect", out)
    assert code == 0, inspect
    assert inspect["manifest"] == "verified"
    assert inspect["summary"]["metrics"]["coverage"] == summary["coverage"]
    assert inspect["summary"]["metrics"]["mean_ic"] is None
    # The original, without a manifest, inspects fine too.
    code, inspect = run("bundle", "inspect", tmp_path / "py")
    assert code == 0 and inspect["manifest"] == "absent"


def test_rewrite_recomputes_absent_ic_metrics(run, tmp_path):
    frames, summary = polars_bundle(tmp_path / "py")
    del summary["mean_ic"], summary["icir"]
    (tmp_path / "py" / "summary.json").write_text(json.dumps(summary))
    code, doc = run("bundle", "rewrite", tmp_path / "py", tmp_path / "out")
    assert code == 0, doc
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    ic = frames["daily_ic"]["ic"].drop_nulls()
    assert ic.is_nan().any()  # polars' mean propagates NaN, as btstore's does: not available
    assert written["mean_ic"] is None


def broken(tmp_path, sample, how):
    bundle = tmp_path / f"broken-{how}"
    shutil.copytree(sample, bundle)
    summary_path = bundle / "summary.json"
    summary = json.loads(summary_path.read_text())
    if how == "no-summary":
        summary_path.unlink()
    elif how == "no-snapshot":
        del summary["snapshot_id"]
        summary_path.write_text(json.dumps(summary))
    elif how == "no-versions":
        del summary["dataset_version_ids"]
        summary_path.write_text(json.dumps(summary))
    elif how == "garbage":
        del summary["artifacts"]
        summary_path.write_text(json.dumps(summary))
        (bundle / "daily_weights.parquet").write_bytes(b"not parquet at all" * 100)
    elif how == "checksum":
        path = bundle / "daily_ic.parquet"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 1
        path.write_bytes(bytes(data))
    elif how == "truncated":
        path = bundle / "daily_signals.parquet"
        path.write_bytes(path.read_bytes()[:-100])
    elif how == "wrong-type":
        del summary["artifacts"]
        summary_path.write_text(json.dumps(summary))
        frame = pl.read_parquet(bundle / "daily_signals.parquet")
        frame.with_columns(pl.col("signal").cast(pl.Float32)).write_parquet(
            bundle / "daily_signals.parquet")
    elif how == "missing-table":
        (bundle / "daily_weights.parquet").unlink()
    return bundle


@pytest.mark.parametrize("how,exit_code,code,file", [
    ("no-summary", 6, "MissingReproducibilityMetadata", "summary.json"),
    ("no-snapshot", 6, "MissingReproducibilityMetadata", "summary.json"),
    ("no-versions", 6, "MissingReproducibilityMetadata", "summary.json"),
    ("garbage", 6, "InvalidResult", "daily_weights.parquet"),
    ("checksum", 6, "InvalidResult", "daily_ic.parquet"),
    ("truncated", 6, "InvalidResult", "daily_signals.parquet"),
    ("wrong-type", 6, "InvalidResult", "daily_signals.parquet"),
    ("missing-table", 6, "InvalidResult", "daily_weights.parquet"),
])
def test_inspect_reports_each_error_with_its_exit_status(run, tmp_path, sample, how, exit_code,
                                                         code, file):
    status, doc = run("bundle", "inspect", broken(tmp_path, sample, how))
    assert status == exit_code, doc
    assert doc["error"]["code"] == code
    assert doc["error"]["details"]["file"] == file
    if how == "wrong-type":
        assert doc["error"]["details"]["column"] == "signal"
        assert doc["error"]["details"]["expected"] == "double"
        assert doc["error"]["details"]["found"] == "float"


def test_missing_directory_bad_flags_and_existing_target(run, tmp_path, sample):
    status, doc = run("bundle", "inspect", tmp_path / "nowhere")
    assert status == 4 and doc["error"]["code"] == "ResultPathMissing"
    status, doc = run("bundle", "rewrite", sample, tmp_path / "x", "--compression", "gzip")
    assert status == 2 and doc["error"]["code"] == "InvalidArgument"
    # An output directory that exists is the user's slip (issue 10, item 19), not a job's state.
    status, doc = run("bundle", "rewrite", sample, sample)
    assert status == 2 and doc["error"]["code"] == "InvalidArgument"
    status, doc = run("bundle", "sample", tmp_path / "y", "--days", 0)
    assert status == 2 and doc["error"]["code"] == "InvalidArgument"


def test_zstd_rewrite_is_readable_and_identical(run, tmp_path, sample):
    code, doc = run("bundle", "rewrite", sample, tmp_path / "z", "--compression", "zstd")
    assert code == 0, doc
    meta = pq.ParquetFile(tmp_path / "z" / "daily_signals.parquet").metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    for table in REQUIRED:
        assert_same_cells(pq.read_table(tmp_path / "z" / f"{table}.parquet"),
                          pq.read_table(sample / f"{table}.parquet"))
    original = json.loads((sample / "summary.json").read_text())
    rewritten = json.loads((tmp_path / "z" / "summary.json").read_text())
    for key in METRICS:
        assert bits(rewritten[key]) == bits(original[key]), key
    assert not any(isinstance(v, float) and math.isnan(v) for v in rewritten.values())

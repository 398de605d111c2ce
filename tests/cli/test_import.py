"""`btstore import`, the platform's optional tables and JSON artifacts through `result --table`,
and the cost columns, on both catalogs."""

import json
import math
import shutil
import struct
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

NAN = float("nan")
OPTIONAL_TABLES = ["daily_portfolio_returns", "daily_returns", "daily_prices",
                   "net_portfolio_returns"]
COST_CONFIG = {"commission_bps": 1.5, "impact": {"model": "sqrt", "k": 0.1}}
COST_SUMMARY = {"total_cost_drag": -0.0008, "turnover": 0.30000000000000004}


def bits(x):
    return None if x is None else struct.pack("<d", x)


def research_bundle(root, scale=1.0):
    """A bundle as the platform's Python code wrote it: polars, every optional table, both JSON
    artifacts (Python's NaN tokens included), cost blocks, no manifest."""
    root.mkdir(parents=True)
    dates = pl.date_range(pl.date(2024, 1, 1), pl.date(2024, 1, 12), "1d", eager=True)
    permnos = [10001, 10002, 10107]
    keys = [(d, p) for d in dates for p in permnos]
    values = [NAN if i % 7 == 0 else None if i % 11 == 0 else (i * 0.37 * scale) % 1 - 0.5
              for i in range(len(keys))]
    key_columns = {"date": [k[0] for k in keys], "permno": [k[1] for k in keys]}
    frames = {
        "daily_signals": pl.DataFrame({**key_columns, "signal": values}),
        "daily_weights": pl.DataFrame({**key_columns, "weight": [v and v / 3 for v in values]}),
        "daily_ic": pl.DataFrame({"date": dates, "ic": [0.01 * i for i in range(len(dates))],
                                  "rank_ic": [0.02 * i for i in range(len(dates))]}),
        "daily_portfolio_returns": pl.DataFrame(
            {"date": dates, "return": [NAN if i == 3 else 0.001 * i * scale
                                       for i in range(len(dates))]}),
        "daily_returns": pl.DataFrame({**key_columns, "return": values,
                                       "symbol": [f"S{p}" for _, p in keys]}),
        "daily_prices": pl.DataFrame({**key_columns, "price": [100 + i for i in range(len(keys))],
                                      "symbol": [f"S{p}" for _, p in keys]},
                                     schema_overrides={"price": pl.Float64}),
        "net_portfolio_returns": pl.DataFrame(
            {"date": dates, "gross_return": [0.001 * i * scale for i in range(len(dates))],
             "cost_drag": [-0.0001] * len(dates),
             "net_return": [None if i == 5 else 0.001 * i * scale - 0.0001
                            for i in range(len(dates))]}),
    }
    for name, frame in frames.items():
        frame.write_parquet(root / f"{name}.parquet")
    walk_forward = {"version": "1.0", "created_at": "2024-02-01T10:00:00",
                    "windows": [{"train_ic": 0.05, "test_ic": NAN, "overfit": float("inf")}]}
    param_search = {"version": "1.0", "created_at": "2024-02-01T10:00:00",
                    "combinations": [{"lookback": 20, "ic": 0.30000000000000004}]}
    (root / "walk_forward.json").write_text(json.dumps(walk_forward))
    (root / "param_search.json").write_text(json.dumps(param_search))
    summary = {"snapshot_id": "snap-research", "dataset_version_ids": {"prices": "2024-02-01"},
               "mean_ic": 0.1 * scale, "icir": NAN, "hit_rate": 0.55, "coverage": 1 / 3,
               "cost_config": COST_CONFIG, "cost_summary": COST_SUMMARY,
               "has_walk_forward": True, "walk_forward_windows": 1}
    (root / "summary.json").write_text(json.dumps(summary))
    return frames


def do_import(bt, directory, job_id="imp-1", expect=0, **flags):
    args = ["import", directory, "--alpha", flags.get("alpha", "research"),
            "--start", "2024-01-01", "--end", "2024-01-12", "--weight-method", "zscore",
            "--user", "alice", "--config", '{"lookback": 20}']
    if job_id:
        args += ["--job-id", job_id]
    return bt.run(*args, expect=expect)


def test_import_round_trip_tables_artifacts_and_cost_columns(catalog, tmp_path):
    frames = research_bundle(tmp_path / "research")
    doc = do_import(catalog, tmp_path / "research").json()
    assert doc == {"job_id": "imp-1", "created": True, "status": "completed",
                   "result_path": doc["result_path"]}
    bundle = Path(doc["result_path"])
    assert bundle == (catalog.root / "imp-1").resolve()

    job = catalog.ok("show", "imp-1")
    assert job["status"] == "completed" and job["alpha_name"] == "research"
    assert job["cost_config"] == COST_CONFIG and job["cost_summary"] == COST_SUMMARY
    assert job["mean_ic"] == 0.1 and job["icir"] is None
    assert job["summary"]["artifacts"]["walk_forward.json"]["checksum"].startswith("xxh3-128:")

    # Every table, cell for cell as polars wrote it, and the manifest verifies.
    for name, frame in frames.items():
        back = pl.read_parquet(bundle / f"{name}.parquet")
        assert back.equals(frame, null_equal=True), name
    assert catalog.ok("verify", "imp-1")["ok"]
    written = json.loads((bundle / "walk_forward.json").read_text())
    assert written["windows"][0]["test_ic"] is None and written["windows"][0]["overfit"] is None

    whole = catalog.ok("result", "imp-1")
    assert set(whole["tables"]) == set(frames)
    assert whole["artifacts"] == {"walk_forward": {"available": True},
                                  "param_search": {"available": True}}

    # Each by name.
    for name in OPTIONAL_TABLES:
        one = catalog.ok("result", "imp-1", "--table", name)
        assert list(one["tables"]) == [name]
        assert one["tables"][name]["rows"] == frames[name].height
        assert one["tables"][name]["columns"] == frames[name].columns
    for name in ("walk_forward", "param_search"):
        one = catalog.ok("result", "imp-1", "--table", name)
        assert one["tables"] == {}
        assert one["artifacts"][name]["document"]["version"] == "1.0"
    search = catalog.ok("result", "imp-1", "--table", "param_search")
    ic = search["artifacts"]["param_search"]["document"]["combinations"][0]["ic"]
    assert bits(ic) == bits(0.30000000000000004)
    # The dated ones in part.
    part = catalog.ok("result", "imp-1", "--table", "daily_returns", "--from", "2024-01-03",
                      "--to", "2024-01-04")
    assert part["tables"]["daily_returns"]["rows"] == 6
    # People see the artifact's document.
    people = catalog.run("result", "imp-1", "--table", "walk_forward", json_out=False)
    assert '"created_at": "2024-02-01T10:00:00"' in people.stdout

    # Importing the same bundle again changes nothing.
    again = do_import(catalog, tmp_path / "research").json()
    assert again["created"] is False and again["result_path"] == doc["result_path"]
    assert len(catalog.ok("list")["jobs"]) == 1


def test_import_refusals_exit_statuses_and_leave_nothing(catalog, tmp_path):
    research_bundle(tmp_path / "ok")
    do_import(catalog, tmp_path / "ok")

    # Another result under the same job_id.
    research_bundle(tmp_path / "other", scale=2.0)
    error = do_import(catalog, tmp_path / "other", expect=4).json()["error"]
    assert error["code"] == "InvalidTransition" and error["details"]["job_id"] == "imp-1"

    def refused(directory, code, status, file=None, column=None):
        result = do_import(catalog, directory, job_id="refused", expect=status)
        error = result.json()["error"]
        assert error["code"] == code, result
        if file:
            assert error["details"]["file"] == file, result
        if column:
            assert error["details"]["column"] == column, result
        assert not (catalog.root / "refused").exists()

    refused(tmp_path / "nowhere", "InvalidArgument", 2)
    research_bundle(tmp_path / "no-summary")
    (tmp_path / "no-summary" / "summary.json").unlink()
    refused(tmp_path / "no-summary", "MissingReproducibilityMetadata", 6, "summary.json")
    frames = research_bundle(tmp_path / "float32")
    frames["net_portfolio_returns"].with_columns(pl.col("net_return").cast(pl.Float32)) \
        .write_parquet(tmp_path / "float32" / "net_portfolio_returns.parquet")
    refused(tmp_path / "float32", "InvalidResult", 6, "net_portfolio_returns.parquet",
            "net_return")
    frames = research_bundle(tmp_path / "order")
    frames["daily_prices"].select("date", "price", "permno", "symbol") \
        .write_parquet(tmp_path / "order" / "daily_prices.parquet")
    refused(tmp_path / "order", "InvalidResult", 6, "daily_prices.parquet", "permno")
    research_bundle(tmp_path / "bad-json")
    (tmp_path / "bad-json" / "param_search.json").write_text('{"version": "1.0"}')
    refused(tmp_path / "bad-json", "InvalidResult", 6, "param_search.json")
    assert [j["job_id"] for j in catalog.ok("list")["jobs"]] == ["imp-1"]
    assert not any((catalog.root / ".staging").glob("*"))


def test_a_corrupt_artifact_is_unavailable_alone_and_copies_keep_artifacts(catalog, tmp_path):
    research_bundle(tmp_path / "research")
    bundle = Path(do_import(catalog, tmp_path / "research").json()["result_path"])

    # Copies carry both JSON artifacts.
    rewritten = tmp_path / "rewritten"
    catalog.ok("bundle", "rewrite", bundle, rewritten)
    exported = tmp_path / "exported"
    catalog.ok("result", "imp-1", "--export", exported)
    for copy in (rewritten, exported):
        for name in ("walk_forward.json", "param_search.json"):
            assert (copy / name).read_text() == (bundle / name).read_text(), (copy, name)
        assert name in json.loads((copy / "summary.json").read_text())["artifacts"]

    (bundle / "walk_forward.json").write_text("{ not json")
    whole = catalog.ok("result", "imp-1")
    assert whole["tables"]["daily_signals"]["rows"] > 0
    assert whole["artifacts"]["param_search"] == {"available": True}
    unavailable = whole["artifacts"]["walk_forward"]
    assert unavailable["available"] is False
    assert unavailable["error"]["code"] == "InvalidResult"
    error = catalog.run("result", "imp-1", "--table", "walk_forward", expect=6).json()["error"]
    assert error["code"] == "InvalidResult"
    assert error["details"]["file"] == "walk_forward.json"
    # A copy would lose it: refused.
    error = catalog.run("result", "imp-1", "--export", tmp_path / "lossy", expect=6).json()
    assert error["error"]["details"]["file"] == "walk_forward.json"
    assert not (tmp_path / "lossy").exists()
    error = catalog.run("bundle", "rewrite", bundle, tmp_path / "lossy2", expect=6).json()
    assert error["error"]["details"]["file"] == "walk_forward.json"
    problems = catalog.ok("verify", "imp-1", expect=None)
    assert [p["error_code"] for p in problems["problems"]] == ["InvalidResult"]


def test_platform_select_star_sees_the_cost_columns(pg_catalog, tmp_path):
    import psycopg
    from psycopg.rows import dict_row

    research_bundle(tmp_path / "research")
    do_import(pg_catalog, tmp_path / "research")
    with psycopg.connect(pg_catalog.url, row_factory=dict_row) as conn:
        row = conn.execute("SELECT * FROM backtest_jobs WHERE job_id = 'imp-1'").fetchone()
        columns = conn.execute(
            "SELECT column_name, data_type, column_default FROM information_schema.columns "
            "WHERE table_name = 'backtest_jobs' AND column_name LIKE 'cost_%'").fetchall()
    types = {c["column_name"]: (c["data_type"], c["column_default"]) for c in columns}
    assert types == {"cost_config": ("jsonb", None), "cost_summary": ("jsonb", None)}
    assert row["cost_config"] == COST_CONFIG
    assert bits(row["cost_summary"]["turnover"]) == bits(0.30000000000000004)

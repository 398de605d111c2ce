"""Store: every reading, writing and lifecycle method, on both catalogs."""

import datetime as dt
import json
import math
import os
import struct
import threading

import polars as pl
import pyarrow as pa
import pytest

import btstore
from conftest import make_result, wait_for


def cells(table: pa.Table):
    """Every cell of a table, floats as their bit patterns (NaN as NaN, -0.0 as such)."""
    out = {}
    for name in table.column_names:
        column = table.column(name)
        values = column.to_pylist()
        if pa.types.is_floating(column.type):
            values = [None if v is None else struct.pack("<d", v) for v in values]
        out[name] = (str(column.type), values)
    return out


def import_sample(store, seed=1, alpha="alpha", **kwargs):
    return store.import_result(make_result(seed=seed), alpha_name=alpha, start_date="2024-01-01",
                               end_date="2024-03-01", created_by="ann", **kwargs)


def test_import_result_from_dataframes_round_trips_bit_for_bit(store):
    source = make_result(seed=3)
    imported = store.import_result(source, alpha_name="alpha", start_date=dt.date(2024, 1, 1),
                                   end_date=dt.date(2024, 3, 1), created_by="ann")
    assert imported.created and imported.status == "completed"
    assert os.path.isdir(imported.result_path)
    # A completed job's listing (metrics, reproducibility ids and costs parsed in C++) has the
    # fields and values get_job gives through the wire layer's JSON.
    listed = store.list_jobs(limit=1)[0]
    assert listed == store.get_job(imported.job_id)
    assert isinstance(listed["dataset_version_ids"], dict) and listed["mean_ic"] is not None
    result = store.get_result(imported.job_id)
    for name in ("daily_signals", "daily_weights", "daily_ic", "daily_portfolio_returns",
                 "net_portfolio_returns"):
        assert cells(result.to_arrow(name)) == cells(source[name].to_arrow()), name
        assert isinstance(result.table(name), pl.DataFrame)
    assert math.isnan(result.daily_signals["signal"][0])
    assert result.daily_signals["signal"][3] is None
    for name, value in source["metrics"].items():
        got = getattr(result, name)
        if value is None:
            assert math.isnan(got)
        else:
            assert struct.pack("<d", got) == struct.pack("<d", value)
    assert result.snapshot_id == "snap-3"
    assert result.dataset_version_ids == {"prices": "v3", "ref": "v1"}
    assert result.job_id == imported.job_id and result.alpha_name == "alpha"
    assert result.start_date == dt.date(2024, 1, 1) and result.end_date == dt.date(2024, 3, 1)
    assert result.walk_forward["windows"][0] == {"ic": 0.1}
    assert result.param_search is None and result.unavailable == {}
    listed = store.list_jobs()[0]
    assert listed == store.get_job(imported.job_id) and listed["coverage"] is None
    assert listed["dataset_version_ids"] == {"prices": "v3", "ref": "v1"}
    # The same import again changes nothing.
    again = store.import_result(source, alpha_name="alpha", start_date="2024-01-01",
                                end_date="2024-03-01", created_by="ann")
    assert again.job_id == imported.job_id and not again.created


def test_import_result_from_pyarrow_and_keywords_and_a_directory(store):
    source = make_result(seed=4)
    arrow = {name: source[name].to_arrow() for name in ("daily_signals", "daily_weights",
                                                        "daily_ic")}
    first = store.import_result(tables=arrow, metrics={"mean_ic": 0.25}, snapshot_id="s",
                                dataset_version_ids={"d": "1"}, alpha_name="kw",
                                start_date="2024-01-01", end_date="2024-03-01", created_by="bob")
    result = store.get_result(first.job_id)
    assert result.mean_ic == 0.25 and math.isnan(result.icir)
    assert cells(result.to_arrow("daily_weights")) == cells(arrow["daily_weights"])
    # A bundle directory (here the stored one) imports as another job.
    second = store.import_result(first.result_path, alpha_name="copy", start_date="2024-01-01",
                                 end_date="2024-03-01", created_by="bob")
    assert second.job_id != first.job_id
    copy = store.get_result(second.job_id)
    assert cells(copy.to_arrow("daily_ic")) == cells(arrow["daily_ic"])


def test_import_result_refuses_what_the_contract_refuses(store):
    source = make_result()
    with pytest.raises(btstore.MissingReproducibilityMetadata):
        store.import_result({**source, "snapshot_id": None}, alpha_name="a",
                            start_date="2024-01-01", end_date="2024-03-01")
    # In-memory tables are arguments: a bad one is InvalidArgument (a ValueError, as the
    # platform raised), naming the table.
    unsorted = {**source, "daily_signals": source["daily_signals"].reverse()}
    with pytest.raises(btstore.InvalidArgument) as caught:
        store.import_result(unsorted, alpha_name="a", start_date="2024-01-01",
                            end_date="2024-03-01")
    assert isinstance(caught.value, ValueError) and "daily_signals" in str(caught.value)
    wrong_type = {**source, "daily_ic": source["daily_ic"].with_columns(pl.col("ic").cast(pl.Float32))}
    with pytest.raises(btstore.InvalidArgument) as caught:
        store.import_result(wrong_type, alpha_name="a", start_date="2024-01-01",
                            end_date="2024-03-01")
    assert "daily_ic" in str(caught.value)
    with pytest.raises(btstore.InvalidArgument):
        store.import_result({**source, "daily_ic": [1, 2]}, alpha_name="a",
                            start_date="2024-01-01", end_date="2024-03-01")
    assert store.list_jobs() == []


def test_partial_reads_by_dates_columns_and_tables(store):
    job_id = import_sample(store).job_id
    part = store.get_result(job_id, start="2024-01-10", end=dt.date(2024, 1, 12),
                            columns=["signal"], tables=["daily_signals"])
    signals = part.daily_signals
    assert signals.columns == ["date", "signal"]
    assert signals["date"].min() == dt.date(2024, 1, 10)
    assert signals["date"].max() == dt.date(2024, 1, 12)
    assert part.daily_ic is None and part.daily_weights is None
    ic_only = store.get_result(job_id, tables=["daily_ic"])
    assert set(ic_only.to_arrow()) == {"daily_ic"}
    with pytest.raises(btstore.InvalidArgument):
        store.get_result(job_id, start="2024-02-01", end="2024-01-01")
    with pytest.raises(btstore.InvalidArgument):
        store.get_result(job_id, tables=["no_such_table"])


def test_lazy_signals_and_portfolio_returns(store):
    job_id = import_sample(store).job_id
    lazy = store.load_universe_signals_lazy(job_id)
    assert isinstance(lazy, pl.LazyFrame)
    full = lazy.collect()
    assert full.height == 150 and full.columns == ["date", "permno", "signal"]
    some = store.load_universe_signals_lazy(job_id, signal_name="alpha",
                                            date_range=("2024-01-03", dt.date(2024, 1, 4)),
                                            limit=7).collect()
    assert some.columns == ["date", "permno", "alpha"] and some.height == 7
    assert some["date"].min() == dt.date(2024, 1, 3)
    pending = store.submit("a", "2024-01-01", "2024-02-01").job_id
    assert store.load_universe_signals_lazy(pending) is None
    with pytest.raises(btstore.JobNotFound):
        store.load_universe_signals_lazy("missing")
    net = store.load_portfolio_returns(job_id)
    assert net.columns == ["date", "return"] and net.height == 30
    assert net["return"][2] == pytest.approx(0.002 - 0.0001)
    gross = store.load_portfolio_returns(job_id, basis="gross", start="2024-01-05")
    assert gross["date"].min() == dt.date(2024, 1, 5)
    with pytest.raises(btstore.InvalidArgument):
        store.load_portfolio_returns(job_id, basis="sideways")


def test_submit_get_list_cancel_resume_pin(store):
    first = store.submit("momentum", "2024-01-01", "2024-06-30", config={"symbols": 10},
                         created_by="ann")
    again = store.submit("momentum", dt.date(2024, 1, 1), dt.date(2024, 6, 30),
                         config='{"symbols": 10}', created_by="ann")
    assert first.created and not again.created and again.job_id == first.job_id
    other = store.submit("value", "2023-01-01", "2023-03-31", created_by="bob", job_id="v-1")
    assert other.job_id == "v-1"
    job = store.get_job("v-1")
    assert job["status"] == "pending" and job["start_date"] == "2023-01-01"
    assert job["created_at"].endswith("Z")
    assert [j["job_id"] for j in store.list_jobs()] == ["v-1", first.job_id]
    # A listed job has exactly the fields and values get_job gives (the wire layer's shape).
    assert store.list_jobs()[1] == store.get_job(first.job_id)
    assert store.list_jobs()[1]["config_json"] == {"symbols": 10}
    assert [j["job_id"] for j in store.list_jobs(created_by="ann")] == [first.job_id]
    assert [j["job_id"] for j in store.list_jobs(alpha_name="value")] == ["v-1"]
    assert [j["job_id"] for j in store.list_jobs(start="2024-03-01")] == [first.job_id]
    page = store.list_jobs_page(limit=1)
    assert len(page.jobs) == 1 and page.next
    rest = store.list_jobs_page(limit=1, after=page.next)
    assert [j["job_id"] for j in rest.jobs] == [first.job_id] and rest.next is None
    assert [j["job_id"] for j in store.list_jobs(limit=1, offset=1)] == [first.job_id]
    assert store.list_jobs(created_to=dt.date(2000, 1, 1)) == []
    assert len(store.list_jobs(created_from=dt.datetime.now(dt.timezone.utc)
                               - dt.timedelta(hours=1))) == 2
    cancelled = store.cancel("v-1")
    assert cancelled["status"] == "cancelled"
    assert [j["job_id"] for j in store.list_jobs(status=["cancelled", "failed"])] == ["v-1"]
    assert store.resume("v-1")["status"] == "pending"
    store.pin("v-1")
    assert store.get_job("v-1")["pinned"] is True
    store.pin("v-1", pinned=False)
    assert store.get_job("v-1")["pinned"] is False
    assert "summary" not in store.show("v-1") or store.show("v-1")["summary"] is None
    with pytest.raises(btstore.InvalidArgument):
        store.list_jobs(limit=0)
    with pytest.raises(btstore.InvalidArgument):
        store.list_jobs(status="sleeping")


def test_verify_cleanup_and_the_cross_job_frames(store):
    ids = [import_sample(store, seed=s, alpha=f"a{s % 2}", job_id=f"job-{s}").job_id
           for s in (1, 2, 3)]
    assert store.verify() == {"checked": 3, "ok": True, "problems": []}
    assert store.verify([ids[0]])["checked"] == 1
    panel = store.ic_panel()
    assert panel.columns == ["job_id", "date", "ic", "rank_ic"]
    assert panel.height == 90 and set(panel["job_id"]) == set(ids)
    assert panel.schema["date"] == pl.Date
    one = store.ic_panel(alpha_name="a0")
    assert set(one["job_id"]) == {ids[1]}
    chosen = store.ic_panel([ids[2], ids[0]])
    assert chosen.filter(pl.col("job_id") == ids[2])["ic"].to_list() == \
        store.get_result(ids[2]).daily_ic["ic"].to_list()
    assert store.ic_panel([]).height == 0
    with pytest.raises(btstore.JobNotFound):
        store.ic_panel(["nope"])
    frame = store.metrics_frame(created_by="ann")
    assert frame.height == 3 and frame.schema["mean_ic"] == pl.Float64
    assert frame.schema["start_date"] == pl.Date
    assert sorted(frame["mean_ic"].to_list()) == [0.01, 0.02, 0.03]
    assert frame["coverage"].null_count() == 3
    compared = store.compare(ids[:2])
    assert compared.columns[0] == "date" and set(compared.columns[1:]) == set(ids[:2])
    store.pin(ids[0])
    assert store.cleanup_old_results(retention_days=0, dry_run=True) == 2
    assert len(store.list_jobs()) == 3
    assert store.cleanup_old_results(retention_days=90) == 0
    assert store.cleanup_old_results(retention_days=0) == 2
    assert [j["job_id"] for j in store.list_jobs()] == [ids[0]]


def test_ic_panel_checks_every_bundle_as_get_result_does(store):
    jobs = [import_sample(store, seed=s, job_id=f"job-{s}") for s in (1, 2, 3)]
    whole = store.ic_panel()
    assert whole.height == 90 and set(whole["job_id"]) == {j.job_id for j in jobs}
    chosen = store.ic_panel([jobs[2].job_id, jobs[0].job_id])
    assert chosen["job_id"].to_list() == [jobs[2].job_id] * 30 + [jobs[0].job_id] * 30
    for job in jobs:
        expected = store.get_result(job.job_id).daily_ic
        assert whole.filter(pl.col("job_id") == job.job_id).drop("job_id").equals(expected)
    # A changed daily_ic: the checksum of the manifest catches it, for the job named.
    path = os.path.join(jobs[1].result_path, "daily_ic.parquet")
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    for read in (lambda: store.ic_panel(), lambda: store.ic_panel([j.job_id for j in jobs])):
        with pytest.raises(btstore.InvalidResult) as raised:
            read()
        assert raised.value.details["job_id"] == jobs[1].job_id
        assert "checksum mismatch" in str(raised.value)
    # A bundle gone from disk.
    for name in os.listdir(jobs[1].result_path):
        os.remove(os.path.join(jobs[1].result_path, name))
    os.rmdir(jobs[1].result_path)
    with pytest.raises(btstore.ResultPathMissing):
        store.ic_panel()
    assert store.ic_panel([jobs[0].job_id, jobs[2].job_id]).height == 60


def test_store_defaults_follow_the_command_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BTSTORE_CATALOG", raising=False)
    monkeypatch.delenv("BTSTORE_ARTIFACT_ROOT", raising=False)
    store = btstore.Store()
    assert store.catalog == "sqlite:btstore-data/catalog.db"
    assert (tmp_path / "btstore-data" / "catalog.db").is_file()
    assert (tmp_path / "btstore-data" / "results").is_dir()
    monkeypatch.setenv("BTSTORE_CATALOG", f"sqlite:{tmp_path / 'env.db'}")
    monkeypatch.setenv("BTSTORE_ARTIFACT_ROOT", str(tmp_path / "env-results"))
    from_env = btstore.Store()
    from_env.submit("a", "2024-01-01", "2024-01-31")
    assert (tmp_path / "env.db").is_file() and (tmp_path / "env-results").is_dir()
    assert len(btstore.Store(f"sqlite:{tmp_path / 'env.db'}", tmp_path / "x").list_jobs()) == 1


def test_one_store_serves_threads_at_once(store):
    job_id = import_sample(store).job_id
    expected = cells(store.get_result(job_id).to_arrow("daily_signals"))
    errors = []

    def read():
        try:
            for _ in range(20):
                assert cells(store.get_result(job_id).to_arrow("daily_signals")) == expected
                assert store.list_jobs()[0]["job_id"] == job_id
        except Exception as e:  # collected for the main thread's assertion
            errors.append(e)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []

"""list_jobs' rows, built in C++ (python/src/job_dicts.cc, json_to_python.cc): field for field,
in order and type, what get_job gives through the wire layer's JSON, on both catalogs; and no
dict or list shared between rows or with a later call."""

import sqlite3

import psycopg
import pytest

from conftest import make_place, make_result

# A listed job's keys, in the order of the catalog's columns (the platform's order).
JOB_KEYS = [
    "id", "job_id", "status", "alpha_name", "start_date", "end_date", "weight_method",
    "config_json", "created_at", "started_at", "completed_at", "worker_id", "progress_pct",
    "job_timeout", "result_path", "mean_ic", "icir", "hit_rate", "coverage", "long_short_spread",
    "average_turnover", "decay_half_life", "snapshot_id", "dataset_version_ids", "error_message",
    "retry_count", "created_by", "cost_config", "cost_summary", "priority", "max_retries",
    "attempt", "cancel_requested", "heartbeat_at", "lease_expires_at", "run_after",
    "checkpoint_path", "pinned", "expiring_at", "engine"]
JSON_COLUMNS = ("config_json", "dataset_version_ids", "cost_config", "cost_summary")


def key_orders(value):
    """Every dict's keys in order, depth first (dict equality ignores the order)."""
    if isinstance(value, dict):
        return [list(value)] + [o for v in value.values() for o in key_orders(v)]
    if isinstance(value, list):
        return [o for v in value for o in key_orders(v)]
    return []


def types(value):
    """The value's shape with the exact type of every part (1 == 1.0 == True in Python)."""
    if isinstance(value, dict):
        return {k: types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [types(v) for v in value]
    return type(value).__name__


def assert_as_get_job(store, job):
    expected = store.get_job(job["job_id"])
    assert list(job) == JOB_KEYS
    assert job == expected
    assert types(job) == types(expected)
    for column in JSON_COLUMNS:
        assert key_orders(job[column]) == key_orders(expected[column]), column


def set_column(place, job_id, column, text):
    """Write a JSON column's text as another tool could (validity checks off on SQLite)."""
    if place.backend == "sqlite":
        with sqlite3.connect(place.url.split(":", 1)[1]) as conn:
            conn.execute("PRAGMA ignore_check_constraints = ON")
            conn.execute(f"UPDATE backtest_jobs SET {column} = ? WHERE job_id = ?",
                         (text, job_id))
    else:
        with psycopg.connect(place.url) as conn:
            conn.execute(f"UPDATE backtest_jobs SET {column} = CAST(%s AS jsonb) "
                         "WHERE job_id = %s", (text, job_id))


def test_rows_have_the_fields_order_and_types_of_get_job(place):
    store = place.open()
    config = {"z": 1, "a": {"y": [1, 2.5, {"k": None, "b": True}], "x": "\u00e9\u2603"},
              "m": -9223372036854775808, "u": 18446744073709551615, "f": -0.0}
    ids = [store.submit("momentum", "2024-01-01", "2024-06-30", config=config, created_by=user,
                        job_id=f"same-{user}").job_id for user in ("ann", "bob")]
    # More distinct users, alphas and configs than a page keeps for reuse.
    for i in range(12):
        store.submit(f"alpha{i}", "2023-01-01", "2023-12-31", config={"i": i, "w": "x" * i},
                     created_by=f"user{i}", job_id=f"many-{i}", priority="high" if i % 2 else "low")
    for seed in (1, 2, 3):  # the same dataset_version_ids text on three rows
        store.import_result(make_result(seed=seed), alpha_name="imported",
                            start_date="2024-01-01", end_date="2024-03-01", created_by="cy",
                            job_id=f"done-{seed}")
    store.cancel("many-3")
    store.pin("done-2")
    set_column(place, "done-1", "cost_config", '{"b": 1, "a": {"d": 2, "c": [3]}, "b": 4}')
    set_column(place, "done-1", "cost_summary", '{"drag": 0.0001, "turnover": [0.5, null]}')
    jobs = store.list_jobs(limit=1000)
    assert len(jobs) == 17
    for job in jobs:
        assert_as_get_job(store, job)
    by_id = {job["job_id"]: job for job in jobs}
    assert by_id[ids[0]]["config_json"] == config and by_id[ids[1]]["config_json"] == config
    assert list(by_id[ids[0]]["config_json"]) == ["a", "f", "m", "u", "z"]
    assert by_id["done-1"]["cost_config"] == {"a": {"c": [3], "d": 2}, "b": 4}
    assert by_id["done-2"]["pinned"] is True and by_id["many-3"]["status"] == "cancelled"
    assert [by_id[f"many-{i}"]["created_by"] for i in range(12)] == [f"user{i}" for i in range(12)]
    assert by_id["done-3"]["dataset_version_ids"] == {"prices": "v3", "ref": "v1"}
    assert by_id["many-5"]["priority"] == "high" and by_id["many-4"]["priority"] == "low"


def test_rows_share_no_dict_or_list_with_each_other_or_a_later_call(store):
    config = {"outer": {"inner": [1, {"deep": "x"}]}, "n": 1}
    for user in ("ann", "bob", "cy"):
        store.submit("momentum", "2024-01-01", "2024-06-30", config=config, created_by=user)
    for seed in (1, 2):
        store.import_result(make_result(seed=seed), alpha_name="imported",
                            start_date="2024-01-01", end_date="2024-03-01", created_by="cy",
                            job_id=f"imported-{seed}")
    first = store.list_jobs(alpha_name="momentum")
    assert len(first) == 3
    a, b = first[1]["config_json"], first[2]["config_json"]
    assert a is not b and a["outer"] is not b["outer"]
    assert a["outer"]["inner"] is not b["outer"]["inner"]
    assert a["outer"]["inner"][1] is not b["outer"]["inner"][1]
    # The first row's value and a copy made from it, changed at every depth.
    for changed in (first[0], first[2]):
        changed["config_json"]["outer"]["inner"][1]["deep"] = "changed"
        changed["config_json"]["outer"]["inner"].append(2)
        changed["config_json"]["n"] = 2
        changed["status"] = "mutated"
    assert first[1]["config_json"] == config
    again = store.list_jobs(alpha_name="momentum")
    assert [job["config_json"] for job in again] == [config] * 3
    assert [job["status"] for job in again] == ["pending"] * 3
    done = store.list_jobs(alpha_name="imported")
    done[0]["dataset_version_ids"]["prices"] = "changed"
    assert done[1]["dataset_version_ids"] == {"prices": "v3", "ref": "v1"}
    assert store.list_jobs(alpha_name="imported")[0]["dataset_version_ids"]["prices"] == "v3"


def nested_lists(depth):
    value = []
    for _ in range(depth - 1):
        value = [value]
    return value


# JSON column text as another tool may have written it (the SQLite catalog keeps the text as
# written; PostgreSQL's jsonb only holds JSON it accepted), and the Python value it lists as.
ODD_JSON = [
    ("{not json", "{not json"),
    ('{"a": 1} x', '{"a": 1} x'),
    ("[1, 2,]", "[1, 2,]"),
    ("", ""),
    ('"\\ud800"', '"\\ud800"'),  # a lone surrogate escape: nlohmann refuses it
    ("1e400", "1e400"),  # beyond a double
    ("[" * 65 + "]" * 65, "[" * 65 + "]" * 65),  # deeper than kMaxJsonDepth
    ("[" * 64 + "]" * 64, nested_lists(64)),
    ("null", None),
    ('  {"b" : 1 , "a":[true,false]}  ', {"a": [True, False], "b": 1}),
    ('"\\u00e9\\ud83d\\ude00\\n"', "\u00e9\U0001F600\n"),
    ("12345678901234567890123", 1.2345678901234568e22),
    ("-0", 0),
    ("-0.0", -0.0),
    ("18446744073709551615", 18446744073709551615),
    ('{"k": 1, "k": 2, "K": 3}', {"K": 3, "k": 2}),
]


def test_json_columns_read_as_the_wire_layer_reads_them(request, tmp_path):
    place = make_place("sqlite", request, tmp_path)
    store = place.open()
    for i in range(len(ODD_JSON)):
        store.submit("odd", "2024-01-01", "2024-06-30", created_by="ann", job_id=f"odd-{i}")
    for i, (text, _) in enumerate(ODD_JSON):
        set_column(place, f"odd-{i}", "cost_summary", text)
        set_column(place, f"odd-{i}", "cost_config", text)
    jobs = {job["job_id"]: job for job in store.list_jobs(limit=1000)}
    for i, (text, value) in enumerate(ODD_JSON):
        job = jobs[f"odd-{i}"]
        assert_as_get_job(store, job)
        assert job["cost_summary"] == value and types(job["cost_summary"]) == types(value), text
        assert job["cost_config"] == value, text
    assert list(jobs["odd-15"]["cost_summary"]) == ["K", "k"]


def test_neighbouring_rows_that_differ_in_one_field_each(store):
    """A row starts from the previous one: every kind of change between neighbours shows."""
    source = make_result(seed=5)
    tables = {name: source[name] for name in ("daily_signals", "daily_weights", "daily_ic")}
    # Newest first in the listing: a missing metric after a present one, the same value twice,
    # values that differ in their last bits.
    for i, mean_ic in enumerate([0.25, 0.25, None, 0.0, 5e-324, 0.0]):
        store.import_result(tables=tables, metrics={"mean_ic": mean_ic, "icir": 1.0 + i},
                            snapshot_id="s", dataset_version_ids={"d": str(i % 2)},
                            alpha_name="metric", start_date="2024-01-01", end_date="2024-03-01",
                            created_by="ann", job_id=f"m-{i}")
    store.submit("metric", "2024-01-01", "2024-03-01", created_by="ann", job_id="pending-1")
    store.pin("m-3")
    jobs = store.list_jobs(alpha_name="metric")
    assert [job["job_id"] for job in jobs] == ["pending-1"] + [f"m-{i}" for i in range(5, -1, -1)]
    for job in jobs:
        assert_as_get_job(store, job)
    means = [job["mean_ic"] for job in jobs]
    assert means[0] is None and [str(m) for m in means[1:]] == [
        "0.0", "5e-324", "0.0", "None", "0.25", "0.25"]
    assert [job["pinned"] for job in jobs] == [False, False, False, True, False, False, False]
    assert jobs[0]["snapshot_id"] is None and jobs[0]["dataset_version_ids"] is None
    assert jobs[0]["result_path"] is None and jobs[1]["result_path"] is not None

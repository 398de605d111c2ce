"""End-to-end tests of the `btstore` command line on both catalogs."""

import json
import math
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from btstore_testing import wait_until
from conftest import free_port

COMMANDS = ["migrate", "submit", "import", "worker", "list", "show", "result", "cancel", "resume", "pin",
            "cleanup", "verify", "demo"]
SMALL = '{"engine":"synthetic","seed":7,"symbols":20}'
DEADLINE_SECONDS = 60


def submit(bt, job_id, alpha="momentum", start="2020-01-01", end="2020-03-31", user="alice",
           config=SMALL, method="equal"):
    doc = bt.ok("submit", "--job-id", job_id, "--alpha", alpha, "--start", start, "--end", end,
                "--user", user, "--config", config, "--weight-method", method)
    assert doc["job_id"] == job_id
    return doc


def run_worker(bt):
    return bt.ok("worker", "--until-idle", "--poll-ms", "20")


def completed_job(bt, job_id="done-1"):
    submit(bt, job_id)
    summary = run_worker(bt)
    assert summary["events"]["completed"] >= 1
    return bt.ok("show", job_id)


def same_cells(a, b):
    """Compare two tables as dicts of columns, NaN equal to NaN."""
    def norm(column):
        return ["NaN" if isinstance(v, float) and math.isnan(v) else v for v in column]
    return a.keys() == b.keys() and all(norm(a[k]) == norm(b[k]) for k in a)


def assert_error(result, code, exit_status):
    assert result.returncode == exit_status, result
    doc = result.json()
    assert doc["error"]["code"] == code, result
    assert doc["error"]["message"]
    assert isinstance(doc["error"]["details"], dict)
    return doc["error"]


# --- help and version ---------------------------------------------------------------------------

@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_examples(cli, command):
    proc = subprocess.run([cli, command, "--help"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "Examples:" in proc.stdout
    assert f"btstore {command}" in proc.stdout


def test_top_level_help_lists_every_command(cli):
    proc = subprocess.run([cli, "--help"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    for command in COMMANDS:
        assert command in proc.stdout


def test_version_prints_the_project_version(cli):
    proc = subprocess.run([cli, "--version"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    assert proc.stdout.startswith("btstore 0.")


def test_unknown_flag_is_an_invalid_argument(cli, tmp_path):
    proc = subprocess.run([cli, "--json", "list", "--no-such-flag"], capture_output=True,
                          text=True, timeout=30, cwd=tmp_path)
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["error"]["code"] == "InvalidArgument"


# --- migrate, submit ----------------------------------------------------------------------------

def test_migrate_twice_changes_nothing_the_second_time(catalog):
    first = catalog.ok("migrate")
    assert first["applied"] >= 1
    assert first["backend"] == catalog.backend
    assert catalog.ok("migrate")["applied"] == 0


def test_submit_twice_gives_one_job(catalog):
    args = ["submit", "--alpha", "momentum", "--start", "2020-01-01", "--end", "2020-06-30",
            "--user", "alice", "--config", SMALL]
    first = catalog.ok(*args)
    second = catalog.ok(*args)
    assert first["created"] is True
    assert second["created"] is False
    assert first["job_id"] == second["job_id"]
    assert first["job_id"].startswith("bt-")
    jobs = catalog.ok("list")["jobs"]
    assert [job["job_id"] for job in jobs] == [first["job_id"]]
    assert jobs[0]["status"] == "pending"
    assert jobs[0]["created_by"] == "alice"


def test_submit_defaults_user_and_weight_method(catalog):
    env_user = os.environ.get("USER") or "unknown"
    catalog.ok("submit", "--job-id", "defaults", "--alpha", "a", "--start", "2020-01-01",
               "--end", "2020-01-31")
    job = catalog.ok("show", "defaults")
    assert job["created_by"] == env_user
    assert job["weight_method"] == "equal"
    assert job["priority"] == "normal"


def test_submit_people_output_is_the_job_id(catalog):
    result = catalog.run("submit", "--job-id", "plain", "--alpha", "a", "--start", "2020-01-01",
                         "--end", "2020-01-31", json_out=False)
    assert result.stdout.strip() == "plain"


# --- worker, show, result -----------------------------------------------------------------------

def test_worker_runs_jobs_and_results_load_whole_and_in_part(catalog, tmp_path):
    submit(catalog, "job-a", start="2020-01-01", end="2020-06-30")
    submit(catalog, "job-b", alpha="value", user="bob", method="signal")
    summary = run_worker(catalog)
    assert summary["events"]["completed"] == 2
    assert summary["finished"] == 2

    job = catalog.ok("show", "job-a")
    assert job["status"] == "completed"
    assert job["progress_pct"] == 100
    assert job["completed_at"] is not None
    assert job["snapshot_id"] == job["summary"]["snapshot_id"]
    assert isinstance(job["dataset_version_ids"], dict)
    assert job["config_json"] == json.loads(SMALL)
    for column in ("id", "job_id", "status", "alpha_name", "start_date", "end_date",
                   "weight_method", "created_at", "started_at", "worker_id", "job_timeout",
                   "result_path", "mean_ic", "icir", "hit_rate", "coverage",
                   "long_short_spread", "average_turnover", "decay_half_life", "error_message",
                   "retry_count", "created_by"):
        assert column in job, column

    whole = catalog.ok("result", "job-a")
    for key in ("job_id", "mean_ic", "icir", "hit_rate", "snapshot_id", "dataset_version_ids"):
        assert key in whole
    assert whole["mean_ic"] == job["mean_ic"]
    rows = {name: table["rows"] for name, table in whole["tables"].items()}
    assert rows["daily_signals"] > 0 and rows["daily_weights"] > 0 and rows["daily_ic"] > 0

    bundle = Path(job["result_path"])
    on_disk = pq.read_table(bundle / "daily_signals.parquet")
    assert rows["daily_signals"] == on_disk.num_rows

    part = catalog.ok("result", "job-a", "--from", "2020-03-01", "--to", "2020-03-31",
                      "--columns", "signal,ic")
    signals = on_disk.to_pydict()
    expected = sum(1 for d in signals["date"] if str(d) >= "2020-03-01" and str(d) <= "2020-03-31")
    assert part["tables"]["daily_signals"]["rows"] == expected
    assert part["tables"]["daily_signals"]["columns"] == ["date", "signal"]
    assert part["bytes_read"] > 0 and whole["bytes_read"] > 0

    export = tmp_path / "exported"
    exported = catalog.ok("result", "job-a", "--export", export)
    assert Path(exported["exported_to"]) == export.resolve()
    copy = pq.read_table(export / "daily_signals.parquet")
    assert copy.schema == on_disk.schema
    assert same_cells(copy.to_pydict(), on_disk.to_pydict())
    assert json.loads((export / "summary.json").read_text())["snapshot_id"] == job["snapshot_id"]


def test_people_output_of_list_show_and_result(catalog):
    completed_job(catalog, "people-1")
    listing = catalog.run("list", json_out=False).stdout
    header = listing.splitlines()[0]
    for title in ("JOB ID", "ALPHA", "USER", "STATUS", "DATES", "MEAN IC", "ICIR", "HIT RATE",
                  "CREATED"):
        assert title in header
    assert "people-1" in listing and "completed" in listing and "UTC" in listing

    show = catalog.run("show", "people-1", json_out=False).stdout
    fields = {line.split(":", 1)[0]: line.split(":", 1)[1].strip()
              for line in show.splitlines() if ":" in line and not line.startswith(" ")}
    assert fields["status"] == "completed"
    assert fields["job_id"] == "people-1"
    assert "summary:" in show and "snapshot_id" in show

    result = catalog.run("result", "people-1", json_out=False).stdout
    assert "daily_signals" in result and "mean_ic" in result and "bytes of Parquet" in result


def test_worker_stops_on_sigterm_and_prints_a_summary(catalog):
    catalog.ok("migrate")
    worker = catalog.spawn("worker", "--poll-ms", "20", json_out=False)
    try:
        # The first line says the worker runs; SIGTERM must then stop it.
        assert worker.stdout.readline().startswith("worker started")
        worker.send_signal(signal.SIGTERM)
        stdout, stderr = worker.communicate(timeout=DEADLINE_SECONDS)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, stderr
    assert "worker stopped: 0 attempt(s) finished" in stdout


# --- list ---------------------------------------------------------------------------------------

def test_list_filters_and_pages(catalog):
    submit(catalog, "l-1", alpha="momentum", user="alice", start="2019-01-01", end="2019-06-30")
    submit(catalog, "l-2", alpha="momentum", user="bob", start="2020-01-01", end="2020-06-30")
    submit(catalog, "l-3", alpha="value", user="alice", start="2020-03-01", end="2020-12-31")
    submit(catalog, "l-4", alpha="value", user="carol", start="2021-01-01", end="2021-06-30")
    submit(catalog, "l-5", alpha="quality", user="alice", start="2018-01-01", end="2018-03-31")
    catalog.ok("cancel", "l-4")

    def ids(*args):
        return sorted(job["job_id"] for job in catalog.ok("list", *args)["jobs"])

    assert ids("--user", "alice") == ["l-1", "l-3", "l-5"]
    assert ids("--alpha", "momentum") == ["l-1", "l-2"]
    assert ids("--status", "cancelled") == ["l-4"]
    assert ids("--status", "pending,cancelled") == ["l-1", "l-2", "l-3", "l-4", "l-5"]
    assert ids("--from", "2020-02-01", "--to", "2020-04-30") == ["l-2", "l-3"]
    assert ids("--created-from", "2999-01-01") == []
    assert ids("--created-to", "2000-01-01T00:00:00Z") == []
    assert ids("--created-from", "2000-01-01T00:00:00+02:00", "--user", "carol") == ["l-4"]

    everything = catalog.ok("list")["jobs"]
    created = [job["created_at"] for job in everything]
    assert created == sorted(created, reverse=True)
    assert everything[0]["mean_ic"] is None  # not run yet: null, not NaN

    seen = []
    page = catalog.ok("list", "--limit", "2")
    while True:
        seen += [job["job_id"] for job in page["jobs"]]
        assert len(page["jobs"]) <= 2
        if page["next"] is None:
            break
        page = catalog.ok("list", "--limit", "2", "--after", page["next"])
    assert seen == [job["job_id"] for job in everything]
    offset = catalog.ok("list", "--limit", "2", "--offset", "2")["jobs"]
    assert [job["job_id"] for job in offset] == seen[2:4]


# --- cancel, resume, pin, cleanup, verify -------------------------------------------------------

def test_cancel_a_pending_job_then_resume_and_run_it(catalog):
    submit(catalog, "c-1")
    cancelled = catalog.ok("cancel", "c-1")
    assert cancelled["status"] == "cancelled"
    resumed = catalog.ok("resume", "c-1")
    assert resumed["status"] == "pending"
    assert resumed["retry_count"] == 1
    run_worker(catalog)
    assert catalog.ok("show", "c-1")["status"] == "completed"


def test_cleanup_respects_pins_and_dry_run(catalog):
    job = completed_job(catalog, "old-1")
    submit(catalog, "pending-1")
    dry = catalog.ok("cleanup", "--retention-days", "0", "--dry-run")
    assert dry == {**dry, "removed": 1, "job_ids": ["old-1"], "dry_run": True}
    assert Path(job["result_path"]).is_dir()

    assert catalog.ok("pin", "old-1") == {"job_id": "old-1", "pinned": True}
    assert catalog.ok("show", "old-1")["pinned"] is True
    assert catalog.ok("cleanup", "--retention-days", "0", "--dry-run")["removed"] == 0
    catalog.ok("pin", "old-1", "--off")

    assert catalog.ok("cleanup", "--retention-days", "30")["removed"] == 0
    done = catalog.ok("cleanup", "--retention-days", "0")
    assert done["removed"] == 1 and done["job_ids"] == ["old-1"] and done["dry_run"] is False
    assert not Path(job["result_path"]).exists()
    assert_error(catalog.run("show", "old-1", expect=None), "JobNotFound", 3)
    assert catalog.ok("show", "pending-1")["status"] == "pending"


def test_verify_reports_corrupt_missing_and_orphan_bundles(catalog):
    good = completed_job(catalog, "v-1")
    report = catalog.ok("verify")
    assert report["checked"] == 1 and report["ok"] is True and report["problems"] == []
    assert "all in order" in catalog.run("verify", json_out=False).stdout

    orphan = catalog.root / "nobody-knows-me"
    orphan.mkdir()
    (orphan / "summary.json").write_text("{}")
    report = catalog.run("verify", "--orphan-grace-seconds", "0", expect=6).json()
    assert [p["kind"] for p in report["problems"]] == ["orphan_bundle"]
    shutil.rmtree(orphan)

    path = Path(good["result_path"]) / "daily_ic.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    report = catalog.run("verify", "v-1", expect=6).json()
    assert report["ok"] is False
    assert report["problems"][0]["kind"] == "invalid_bundle"
    assert report["problems"][0]["job_id"] == "v-1"

    shutil.rmtree(good["result_path"])
    report = catalog.run("verify", expect=6).json()
    assert report["problems"][0]["kind"] == "missing_bundle"
    assert_error(catalog.run("verify", "no-such-job", expect=None), "JobNotFound", 3)


# --- errors of contract section 6 ---------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["submit", "--alpha", "a", "--start", "2020-13-01", "--end", "2020-12-31"],
    ["submit", "--alpha", "a", "--start", "2020-12-31", "--end", "2020-01-01"],
    ["submit", "--alpha", "a", "--start", "2020-01-01", "--end", "2020-12-31", "--config", "[1]"],
    ["submit", "--alpha", "a", "--start", "2020-01-01", "--end", "2020-12-31", "--config", "{x"],
    ["submit", "--alpha", "a", "--start", "2020-01-01", "--end", "2020-12-31", "--job-id", ".x"],
    ["submit", "--alpha", "a", "--start", "2020-01-01", "--end", "2020-12-31",
     "--priority", "urgent"],
    ["list", "--status", "finished"],
    ["list", "--limit", "0"],
    ["list", "--limit", "5000"],
    ["list", "--after", "not-a-cursor"],
    ["list", "--created-from", "yesterday"],
    ["list", "--from", "2020-02-30"],
    ["result", "x", "--from", "2020-05-01", "--to", "2020-04-01"],
])
def test_bad_input_is_an_invalid_argument(catalog, args):
    assert_error(catalog.run(*args, expect=None), "InvalidArgument", 2)


def test_bad_input_in_people_mode_goes_to_stderr(catalog):
    result = catalog.run("list", "--status", "finished", json_out=False, expect=2)
    assert result.stdout == ""
    assert "InvalidArgument" in result.stderr


def test_unknown_job_is_job_not_found(catalog):
    for command in ("show", "result", "cancel", "resume", "pin"):
        error = assert_error(catalog.run(command, "no-such-job", expect=None), "JobNotFound", 3)
        assert error["details"].get("job_id") == "no-such-job"


def test_result_of_a_job_without_bundle_is_result_path_missing(catalog):
    submit(catalog, "pending-1")
    assert_error(catalog.run("result", "pending-1", expect=None), "ResultPathMissing", 4)
    job = completed_job(catalog, "gone-1")
    shutil.rmtree(job["result_path"])
    assert_error(catalog.run("result", "gone-1", expect=None), "ResultPathMissing", 4)
    shown = catalog.ok("show", "gone-1")
    assert shown["summary"] is None
    assert shown["summary_error"]["code"] == "ResultPathMissing"


def test_moves_a_status_does_not_allow_are_invalid_transitions(catalog):
    completed_job(catalog, "t-1")
    for command in ("resume", "cancel"):
        error = assert_error(catalog.run(command, "t-1", expect=None), "InvalidTransition", 4)
        assert error["details"].get("job_id") == "t-1"
    submit(catalog, "t-2")
    assert_error(catalog.run("resume", "t-2", expect=None), "InvalidTransition", 4)


def test_missing_summary_is_missing_reproducibility_metadata(catalog):
    job = completed_job(catalog, "m-1")
    (Path(job["result_path"]) / "summary.json").unlink()
    assert_error(catalog.run("result", "m-1", expect=None), "MissingReproducibilityMetadata", 6)


def test_corrupt_parquet_is_invalid_result(catalog):
    job = completed_job(catalog, "r-1")
    path = Path(job["result_path"]) / "daily_signals.parquet"
    path.write_bytes(b"this is not parquet")
    error = assert_error(catalog.run("result", "r-1", expect=None), "InvalidResult", 6)
    assert "daily_signals" in json.dumps(error)


def test_unreachable_postgresql_is_catalog_unavailable(tmp_path, cli):
    from conftest import Btstore

    dead = Btstore("postgresql", f"postgresql://postgres@127.0.0.1:{free_port()}/x", tmp_path)
    for args in (["list"], ["migrate"], ["show", "x"]):
        assert_error(dead.run(*args, expect=None, timeout=60), "CatalogUnavailable", 5)


def test_unknown_catalog_scheme_is_invalid_argument(tmp_path, cli):
    from conftest import Btstore

    bad = Btstore("none", "mysql://x/y", tmp_path)
    assert_error(bad.run("list", expect=None), "InvalidArgument", 2)


# --- demo and concurrency -----------------------------------------------------------------------

def test_demo_runs_to_completion_and_again(catalog):
    for _ in range(2 if catalog.backend == "sqlite" else 1):
        result = catalog.run("demo", "--fast", timeout=300)
        report = result.json()
        assert [job["status"] for job in report["jobs"]] == ["completed"] * 12, result
        assert report["cancelled"]["status"] == "cancelled"
        engine = report["resumed"]["engine"]
        assert 0 < engine["resumed_at_day"] < engine["business_days"]
        assert engine["computed_days"] == engine["business_days"] - engine["resumed_at_day"]
        assert report["verify"]["problems"] == 0
        slice_rows = report["result"]["slice"]["rows"]["daily_signals"]
        assert 0 < slice_rows < report["result"]["whole"]["rows"]["daily_signals"]
        assert "$ btstore cancel" in result.stderr and "$ btstore resume" in result.stderr


def test_two_workers_and_a_cancel_from_a_third_process(pg_catalog):
    bt = pg_catalog
    slow = '{"engine":"synthetic","seed":1,"symbols":20,"delay_ms_per_day":20,' \
           '"checkpoint_every_days":5}'
    submit(bt, "slow", config=slow, start="2019-01-01", end="2020-12-31")
    fast_ids = [f"fast-{i}" for i in range(8)]
    for i, job_id in enumerate(fast_ids):
        submit(bt, job_id, config='{"engine":"synthetic","seed":%d,"symbols":30}' % i)
    workers = [bt.spawn("worker", "--until-idle", "--concurrency", "2", "--poll-ms", "20",
                        "--worker-id", f"w{i}") for i in range(2)]
    try:
        wait_until(lambda: bt.ok("show", "slow")["status"] == "running", "the slow job runs")
        assert bt.ok("cancel", "slow")["cancel_requested"] is True
        outputs = [w.communicate(timeout=120) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    for w, (stdout, stderr) in zip(workers, outputs):
        assert w.returncode == 0, stderr
    summaries = [json.loads(stdout) for stdout, _ in outputs]

    finished = [event["job_id"] for s in summaries for event in s["jobs"]]
    assert sorted(finished) == sorted(fast_ids + ["slow"])  # each job ran exactly once
    assert sum(s["events"]["completed"] for s in summaries) == len(fast_ids)
    assert sum(s["events"]["cancelled"] for s in summaries) == 1

    slow_row = bt.ok("show", "slow")
    assert slow_row["status"] == "cancelled"
    assert slow_row["result_path"] is None
    assert not (bt.root / "slow").exists()
    for job_id in fast_ids:
        row = bt.ok("show", job_id)
        assert row["status"] == "completed" and row["attempt"] == 1
        assert Path(row["result_path"]).is_dir()
        assert row["summary"]["snapshot_id"]


# --- environment variables and defaults (contract section 7) ------------------------------------

def run_in(cwd, *args, env=None):
    """Run `btstore --json ARGS` in `cwd` with neither BTSTORE_CATALOG nor BTSTORE_ARTIFACT_ROOT
    inherited, plus `env`; expect success and return the parsed output."""
    from conftest import btstore_bin

    environment = {k: v for k, v in os.environ.items()
                   if k not in ("BTSTORE_CATALOG", "BTSTORE_ARTIFACT_ROOT")}
    environment.update(env or {})
    proc = subprocess.run([btstore_bin(), "--json", *[str(a) for a in args]], cwd=cwd,
                          env=environment, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"{args}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout)


def run_one_job(cwd, env=None):
    """Migrate, submit and work one job in `cwd`; return the job as `show` prints it."""
    run_in(cwd, "migrate", env=env)
    run_in(cwd, "submit", "--job-id", "env-1", "--alpha", "momentum", "--start", "2020-01-01",
           "--end", "2020-01-31", "--config", SMALL, env=env)
    assert run_in(cwd, "worker", "--until-idle", "--poll-ms", "20", env=env)["finished"] == 1
    job = run_in(cwd, "show", "env-1", env=env)
    assert job["status"] == "completed", job
    return job


def test_defaults_in_an_empty_directory_are_the_embedded_catalog_and_btstore_data(tmp_path):
    job = run_one_job(tmp_path)
    assert (tmp_path / "btstore-data" / "catalog.db").is_file()
    assert Path(job["result_path"]) == (tmp_path / "btstore-data" / "results" / "env-1").resolve()
    assert (Path(job["result_path"]) / "summary.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["btstore-data"]


def test_btstore_catalog_selects_the_catalog(catalog, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    job = run_one_job(work, env={"BTSTORE_CATALOG": catalog.url})
    # The job is in the catalog the variable names (seen through --catalog), not in a default one.
    assert catalog.ok("show", "env-1")["status"] == "completed"
    assert not (work / "btstore-data" / "catalog.db").exists()
    # The artifact root is still the default.
    assert Path(job["result_path"]) == (work / "btstore-data" / "results" / "env-1").resolve()


def test_btstore_artifact_root_selects_the_root(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    root = tmp_path / "elsewhere" / "results"
    job = run_one_job(work, env={"BTSTORE_ARTIFACT_ROOT": str(root)})
    assert Path(job["result_path"]) == (root / "env-1").resolve()
    assert not (work / "btstore-data" / "results").exists()
    # The catalog is still the default embedded one.
    assert (work / "btstore-data" / "catalog.db").is_file()


def test_flags_take_precedence_over_the_environment(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    env = {"BTSTORE_CATALOG": f"sqlite:{tmp_path / 'env.db'}",
           "BTSTORE_ARTIFACT_ROOT": str(tmp_path / "env-results")}
    flags = ["--catalog", f"sqlite:{tmp_path / 'flag.db'}",
             "--artifact-root", str(tmp_path / "flag-results")]
    run_in(work, *flags, "migrate", env=env)
    assert (tmp_path / "flag.db").is_file()
    assert not (tmp_path / "env.db").exists()

"""Issue 10's worker items through the real executable: SIGTERM to `btstore worker` gives its
job back (item 5), and `result --export` / `bundle rewrite` stage next to their destination and
refuse one inside their source (item 14)."""

import json
import signal
import time

DEADLINE_SECONDS = 60


def wait_for(condition, timeout=DEADLINE_SECONDS):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def entries(path):
    return sorted(p.name for p in path.iterdir())


def test_item5_sigterm_gives_the_running_job_back_as_pending(catalog):
    catalog.ok("migrate")
    config = json.dumps({"symbols": 5, "delay_ms_per_day": 100, "checkpoint_every_days": 1})
    catalog.ok("submit", "--alpha", "a", "--start", "2024-01-01", "--end", "2024-03-29",
               "--config", config, "--job-id", "term-1")
    worker = catalog.spawn("worker", "--poll-ms", "20", "--worker-id", "cli-worker")
    try:
        wait_for(lambda: catalog.ok("show", "term-1")["checkpoint_path"] is not None)
        worker.send_signal(signal.SIGTERM)
        stdout, stderr = worker.communicate(timeout=DEADLINE_SECONDS)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["events"]["released"] == 1, summary
    job = catalog.ok("show", "term-1")
    assert job["status"] == "pending"
    assert job["retry_count"] == 0
    assert "cli-worker shut down" in job["error_message"]
    assert job["checkpoint_path"]


def test_item14_export_stages_next_to_the_destination_and_leaves_nothing_else(catalog, tmp_path):
    catalog.ok("migrate")
    catalog.ok("submit", "--alpha", "a", "--start", "2024-01-01", "--end", "2024-01-31",
               "--config", '{"symbols": 3}', "--job-id", "exp-1")
    catalog.ok("worker", "--until-idle", "--poll-ms", "5")
    out = tmp_path / "out"
    out.mkdir()
    catalog.ok("result", "exp-1", "--export", out / "copy")
    assert entries(out) == ["copy"]
    catalog.ok("bundle", "rewrite", out / "copy", out / "again")
    assert entries(out) == ["again", "copy"]


def test_item14_a_destination_inside_the_source_is_an_invalid_argument(catalog, tmp_path):
    catalog.ok("migrate")
    catalog.ok("submit", "--alpha", "a", "--start", "2024-01-01", "--end", "2024-01-31",
               "--config", '{"symbols": 3}', "--job-id", "exp-2")
    catalog.ok("worker", "--until-idle", "--poll-ms", "5")
    bundle = catalog.root / "exp-2"
    before = entries(bundle)
    result = catalog.run("result", "exp-2", "--export", bundle / "inner", expect=2)
    assert result.json()["error"]["code"] == "InvalidArgument"
    work = tmp_path / "work"
    work.mkdir()
    base = work / "base"
    catalog.ok("bundle", "rewrite", bundle, base)
    for target in (base / "inner", base / "inner" / "deeper", base / "." / "x"):
        result = catalog.run("bundle", "rewrite", base, target, expect=2)
        assert result.json()["error"]["code"] == "InvalidArgument"
    assert entries(bundle) == before
    assert entries(base) == before
    assert entries(work) == ["base"]

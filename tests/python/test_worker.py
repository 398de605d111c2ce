"""Python engines run by btstore.Worker under the library's lifecycle: end to end, failure,
cancel of a running engine, stop and Ctrl-C, kill -9 and rescue with resume from the checkpoint,
and readers on other threads while the worker writes."""

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import btstore
import engines
from conftest import wait_for

HERE = Path(__file__).resolve().parent


def submit(store, engine, job_id, **config):
    return store.submit("py-alpha", "2024-01-01", "2024-06-28", job_id=job_id, created_by="ann",
                        config={"engine": engine, **config}, max_retries=0).job_id


class Running:
    """A Worker's run() on a thread."""

    def __init__(self, worker, until_idle=False):
        self.worker = worker
        self.finished = None
        self.error = None
        self.thread = threading.Thread(target=self._run)
        self.until_idle = until_idle
        self.thread.start()

    def _run(self):
        try:
            self.finished = self.worker.run(until_idle=self.until_idle)
        except Exception as e:  # reported by join()
            self.error = e

    def join(self):
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()
        if self.error:
            raise self.error
        return self.finished


def test_a_python_engine_runs_end_to_end(store):
    job_id = submit(store, "paced", "py-1", days=12, checkpoint_every=4)
    other = store.submit("synthetic-alpha", "2024-01-01", "2024-01-31").job_id
    worker = btstore.Worker(store, {"paced": engines.paced}, lease_seconds=5)
    assert worker.run(until_idle=True) == 1
    job = store.get_job(job_id)
    assert job["status"] == "completed" and job["progress_pct"] == 100
    assert job["snapshot_id"] == "py-snap" and job["dataset_version_ids"] == {"prices": "v1"}
    result = store.get_result(job_id)
    assert result.daily_signals.height == 36 and result.daily_ic.height == 12
    assert result.mean_ic == pytest.approx(result.daily_ic["ic"].mean())
    assert result.extra_summary["python_engine"] == {"resumed_at_day": 0, "attempt": 1}
    assert store.verify([job_id])["ok"]
    # A job of an engine the worker does not have is left for another worker.
    assert store.get_job(other)["status"] == "pending"


def test_an_engine_that_raises_fails_the_attempt_with_its_message(store):
    job_id = submit(store, "failing", "py-fail")
    worker = btstore.Worker(store, {"failing": engines.failing})
    worker.run(until_idle=True)
    job = store.get_job(job_id)
    assert job["status"] == "failed"
    assert "RuntimeError" in job["error_message"] and "bad data for py-alpha" in job["error_message"]
    assert job["result_path"] is None


def test_an_engine_returning_an_invalid_result_fails_and_leaves_no_bundle(store):
    def unsorted(job, ctx):
        result = engines.paced(job, ctx)
        result["daily_signals"] = result["daily_signals"].reverse()
        return result

    job_id = submit(store, "unsorted", "py-bad", days=3)
    btstore.Worker(store, {"unsorted": unsorted}).run(until_idle=True)
    job = store.get_job(job_id)
    assert job["status"] == "failed" and "sorted" in job["error_message"]
    assert not (Path(store.artifact_root) / "py-bad").exists()


def test_cancel_reaches_a_running_python_engine(store):
    job_id = submit(store, "forever", "py-cancel")
    worker = btstore.Worker(store, {"forever": engines.forever}, lease_seconds=2)
    running = Running(worker)
    wait_for(lambda: store.get_job(job_id)["status"] == "running", what="the job to run")
    store.cancel(job_id)
    wait_for(lambda: store.get_job(job_id)["status"] == "cancelled", timeout=10,
             what="the cancel to reach the engine")
    worker.stop()
    assert running.join() == 1
    assert store.get_job(job_id)["result_path"] is None


def test_stop_from_another_thread_gives_the_job_back(store):
    job_id = submit(store, "forever", "py-stop")
    worker = btstore.Worker(store, {"forever": engines.forever})
    running = Running(worker)
    wait_for(lambda: store.get_job(job_id)["status"] == "running", what="the job to run")
    worker.stop()
    running.join()
    job = store.get_job(job_id)
    assert job["status"] == "pending" and job["retry_count"] == 0


def spawn_worker(place, lease):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ["PYTHONPATH"]]))
    return subprocess.Popen([sys.executable, str(HERE / "worker_main.py"), place.url,
                             str(place.root), str(lease)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_ctrl_c_stops_a_worker_process_cleanly(place, tmp_path):
    store = place.open()
    job_id = submit(store, "forever", "py-sigint")
    proc = spawn_worker(place, 30)
    try:
        wait_for(lambda: store.get_job(job_id)["status"] == "running", what="the job to run")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "finished" in out
    job = store.get_job(job_id)
    assert job["status"] == "pending" and job["retry_count"] == 0


def test_kill_9_of_a_worker_process_is_rescued_and_resumes_from_its_checkpoint(place, tmp_path):
    store = place.open()
    marker = tmp_path / "checkpointed"
    config = {"days": 40, "pause": 0.02, "checkpoint_every": 10, "marker": str(marker)}
    job_id = store.submit("py-alpha", "2024-01-01", "2024-06-28", job_id="py-kill",
                          config={"engine": "paced", **config}, max_retries=2).job_id
    straight_id = store.submit("py-alpha", "2024-01-01", "2024-06-28", job_id="py-straight",
                               config={"engine": "paced", **config, "marker": None}).job_id
    proc = spawn_worker(place, 1)
    try:
        wait_for(lambda: marker.exists() and store.get_job(job_id)["checkpoint_path"],
                 what="a checkpoint")
        proc.kill()
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert store.get_job(job_id)["status"] == "running"
    # Another worker notices the expired lease, and the job runs again from its checkpoint.
    worker = btstore.Worker(store, {"paced": engines.paced}, lease_seconds=1)
    running = Running(worker)
    wait_for(lambda: store.get_job(job_id)["status"] == "completed"
             and store.get_job(straight_id)["status"] == "completed", timeout=60,
             what="the rescue and the straight run")
    worker.stop()
    running.join()
    job = store.get_job(job_id)
    assert job["retry_count"] == 1 and job["attempt"] == 2
    resumed = store.get_result(job_id)
    info = resumed.extra_summary["python_engine"]
    assert info["attempt"] == 2 and info["resumed_at_day"] >= 10
    straight = store.get_result(straight_id)
    for name in ("daily_signals", "daily_weights", "daily_ic"):
        assert resumed.to_arrow(name).equals(straight.to_arrow(name)), name
    assert json.dumps(resumed.metrics) == json.dumps(straight.metrics)  # NaN as NaN


def test_threads_read_while_a_worker_writes(store):
    ids = [submit(store, "paced", f"py-w{i}", days=8, pause=0.005, seed=i) for i in range(6)]
    worker = btstore.Worker(store, {"paced": engines.paced}, concurrency=2, lease_seconds=5)
    running = Running(worker, until_idle=True)
    errors, seen = [], set()

    def read():
        try:
            while running.thread.is_alive():
                for job in store.list_jobs(status="completed"):
                    result = store.get_result(job["job_id"])
                    assert result.daily_ic.height == 8 and result.snapshot_id == "py-snap"
                    seen.add(job["job_id"])
        except Exception as e:  # collected for the main thread's assertion
            errors.append(e)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for r in readers:
        r.start()
    assert running.join() == 6
    for r in readers:
        r.join()
    assert errors == []
    assert all(store.get_job(i)["status"] == "completed" for i in ids)
    assert seen  # the readers saw completed results while the worker ran


def test_heartbeats_continue_while_an_engine_holds_the_gil(store):
    def busy(job, ctx):
        # One C call that keeps the GIL for about three leases (builtin sum over a range never
        # lets go of it): the worker's heartbeats must not need the GIL to keep the lease.
        import time
        start = time.perf_counter()
        sum(range(2_000_000))
        per_item = (time.perf_counter() - start) / 2_000_000
        sum(range(int(3.0 / per_item)))
        return engines.paced(job, ctx)

    job_id = submit(store, "busy", "py-busy", days=3)
    btstore.Worker(store, {"busy": busy}, lease_seconds=1).run(until_idle=True)
    job = store.get_job(job_id)
    assert job["status"] == "completed" and job["retry_count"] == 0 and job["attempt"] == 1

"""The command line with an s3:// artifact root on a private S3-compatible server (moto's, on
loopback): jobs, reads, verify and cleanup, cancel, kill -9 + rescue + resume on another
"host", two workers sharing only the catalog and the bucket (PostgreSQL), on both catalogs; and
the store's faults, which do not depend on the catalog, on SQLite."""

import json
import os
import signal
import subprocess
import time
from datetime import datetime

import polars as pl
import pyarrow.parquet as pq
import pytest

from btstore_testing import wait_until
from conftest import Btstore, S3Btstore

SMALL = '{"engine":"synthetic","seed":7,"symbols":20}'
SLOW = ('{"engine":"synthetic","seed":1,"symbols":20,"delay_ms_per_day":25,'
        '"checkpoint_every_days":5}')


def submit(bt, job_id, config=SMALL, start="2020-01-01", end="2020-03-31", retries=2):
    doc = bt.ok("submit", "--job-id", job_id, "--alpha", "momentum", "--start", start, "--end",
                end, "--config", config, "--max-retries", retries)
    assert doc["job_id"] == job_id


def work(bt, *extra):
    return bt.ok("worker", "--until-idle", "--poll-ms", "20", *extra)


def keys_under(bt, key):
    """The object keys under `key` (bucket/prefix/...), relative to it."""
    import pyarrow.fs as pafs
    selector = pafs.FileSelector(key, recursive=True, allow_not_found=True)
    return sorted(info.path[len(key) + 1:] for info in bt.server.filesystem().get_file_info(selector)
                  if info.type == pafs.FileType.File)


def key_of(uri):
    assert uri.startswith("s3://")
    return uri[len("s3://"):]


def test_a_job_publishes_under_an_attempt_prefix_and_reads_back_from_the_store(s3_catalog,
                                                                               tmp_path):
    bt = s3_catalog
    bt.ok("migrate")
    submit(bt, "s3-1")
    assert work(bt)["events"]["completed"] == 1
    job = bt.ok("show", "s3-1")
    assert job["status"] == "completed"
    path = job["result_path"]
    assert path.startswith(bt.uri + "/s3-1/a-"), path
    assert keys_under(bt, key_of(path)) == ["daily_ic.parquet", "daily_signals.parquet",
                                            "daily_weights.parquet", "summary.json"]
    # Nothing else of the job is left in the store (no staging, no checkpoint).
    assert keys_under(bt, key_of(bt.uri)) == [
        path[len(bt.uri) + 1:] + "/" + name for name in keys_under(bt, key_of(path))]

    whole = bt.ok("result", "s3-1")
    assert whole["tables"]["daily_signals"]["rows"] == 20 * 65
    part = bt.ok("result", "s3-1", "--from", "2020-02-03", "--to", "2020-02-07")
    assert part["tables"]["daily_signals"]["rows"] == 20 * 5
    assert part["bytes_read"] > 0
    assert bt.ok("verify")["problems"] == []

    # Readable straight from the store by polars and pyarrow.
    signals_uri = path + "/daily_signals.parquet"
    frame = pl.read_parquet(signals_uri, storage_options=bt.server.storage_options())
    assert frame.height == 20 * 65
    table = pq.read_table(key_of(signals_uri), filesystem=bt.server.filesystem())
    assert table.num_rows == 20 * 65
    assert frame.equals(pl.from_arrow(table))

    # --export writes a local bundle with the same tables.
    export = tmp_path / "export"
    bt.ok("result", "s3-1", "--export", export)
    assert pl.read_parquet(export / "daily_signals.parquet").equals(frame)


def test_cancel_removes_nothing_visible_and_resume_completes(s3_catalog):
    bt = s3_catalog
    bt.ok("migrate")
    submit(bt, "s3-cancel", config=SLOW, start="2020-01-01", end="2020-12-31")
    worker = bt.spawn("worker", "--until-idle", "--poll-ms", "20", "--lease-seconds", "2")
    try:
        wait_until(lambda: bt.ok("show", "s3-cancel")["checkpoint_path"], "a checkpoint is saved")
        checkpoint = bt.ok("show", "s3-cancel")["checkpoint_path"]
        assert checkpoint.startswith(bt.uri + "/.checkpoints/s3-cancel/"), checkpoint
        bt.ok("cancel", "s3-cancel")
        stdout, stderr = worker.communicate(timeout=120)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, stderr
    job = bt.ok("show", "s3-cancel")
    assert job["status"] == "cancelled" and job["result_path"] is None
    assert keys_under(bt, key_of(bt.uri) + "/s3-cancel") == []

    bt.ok("resume", "s3-cancel")
    assert work(bt)["events"]["completed"] == 1
    job = bt.ok("show", "s3-cancel")
    assert job["status"] == "completed"
    assert job["summary"]["engine"]["resumed_at_day"] > 0
    # The checkpoints go once the job completed.
    assert keys_under(bt, key_of(bt.uri) + "/.checkpoints/s3-cancel") == []


def test_kill_9_then_another_host_rescues_and_resumes_from_the_checkpoint(s3_catalog, tmp_path):
    bt = s3_catalog
    bt.ok("migrate")
    submit(bt, "s3-killed", config=SLOW, start="2020-01-01", end="2020-12-31")
    host_a = S3Btstore(bt.backend, bt.url, bt.server, bt.uri.split("/", 3)[3], tmp_path / "a")
    host_b = S3Btstore(bt.backend, bt.url, bt.server, bt.uri.split("/", 3)[3], tmp_path / "b")
    worker = host_a.spawn("worker", "--until-idle", "--poll-ms", "20", "--lease-seconds", "1")
    try:
        wait_until(lambda: bt.ok("show", "s3-killed")["checkpoint_path"], "a checkpoint is saved")
        worker.send_signal(signal.SIGKILL)
        worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
    lease = datetime.fromisoformat(bt.ok("show", "s3-killed")["lease_expires_at"]).timestamp()
    wait_until(lambda: time.time() > lease + 0.05, "the dead worker's lease expired")
    summary = work(host_b, "--lease-seconds", "1")
    assert summary["events"]["rescued"] >= 1 and summary["events"]["completed"] == 1, summary
    job = bt.ok("show", "s3-killed")
    assert job["status"] == "completed" and job["attempt"] == 2
    assert 0 < job["summary"]["engine"]["resumed_at_day"]
    assert bt.ok("verify")["problems"] == []


def test_two_workers_sharing_only_the_catalog_and_the_bucket_run_each_job_once(s3_pg_catalog,
                                                                               tmp_path):
    bt = s3_pg_catalog
    bt.ok("migrate")
    job_ids = [f"many-{i:03d}" for i in range(int(os.environ.get("BTSTORE_S3_JOBS", "100")))]
    # Submitting needs only the catalog (and so starts no S3 client: a tenth of a second each).
    submitter = Btstore(bt.backend, bt.url, tmp_path / "submitter")
    for i, job_id in enumerate(job_ids):
        submit(submitter, job_id, config='{"engine":"synthetic","seed":%d,"symbols":10}' % i,
               end="2020-01-31")
    prefix = bt.uri.split("/", 3)[3]
    hosts = [S3Btstore(bt.backend, bt.url, bt.server, prefix, tmp_path / f"host{i}")
             for i in range(2)]
    workers = [h.spawn("worker", "--until-idle", "--concurrency", "2", "--poll-ms", "20",
                       "--worker-id", f"host{i}") for i, h in enumerate(hosts)]
    try:
        outputs = [w.communicate(timeout=300) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    for w, (_, stderr) in zip(workers, outputs):
        assert w.returncode == 0, stderr
    summaries = [json.loads(stdout) for stdout, _ in outputs]
    finished = sorted(event["job_id"] for s in summaries for event in s["jobs"])
    assert finished == job_ids  # each job ran exactly once
    assert all(s["events"]["completed"] > 0 for s in summaries), summaries

    options = bt.server.storage_options()
    fs = bt.server.filesystem()
    listed = {job["job_id"]: job for job in submitter.ok("list", "--limit", 1000)["jobs"]}
    assert sorted(listed) == job_ids
    for job_id in job_ids:
        job = listed[job_id]
        assert job["status"] == "completed" and job["attempt"] == 1
        # One attempt prefix per job: nothing was written twice.
        keys = keys_under(bt, key_of(bt.uri) + "/" + job_id)
        assert len({k.split("/")[0] for k in keys}) == 1, keys
        uri = job["result_path"] + "/daily_weights.parquet"
        assert pl.read_parquet(uri, storage_options=options).height > 0
        assert pq.read_table(key_of(uri), filesystem=fs).num_rows > 0


def test_verify_reports_and_cleanup_sweeps_a_dead_attempts_objects(s3_catalog):
    bt = s3_catalog
    bt.ok("migrate")
    submit(bt, "s3-old")
    work(bt)
    path = bt.ok("show", "s3-old")["result_path"]
    # A dead attempt's objects: an older attempt prefix that no row names.
    fs = bt.server.filesystem()
    dead = key_of(bt.uri) + "/s3-old/a-20200101T000000Z-00000000deadbeef"
    fs.copy_file(key_of(path) + "/summary.json", dead + "/summary.json")
    problems = bt.run("verify", expect=6).json()["problems"]
    assert [(p["kind"], p["path"]) for p in problems] == [("orphan_bundle", "s3://" + dead)], \
        problems
    assert keys_under(bt, dead) == ["summary.json"]  # verify only reports

    # cleanup sweeps it (older than its grace) and keeps the job's bundle.
    assert bt.ok("cleanup", "--retention-days", "3650")["removed"] == 0
    assert keys_under(bt, dead) == []
    assert len(keys_under(bt, key_of(path))) == 4
    assert bt.ok("verify")["problems"] == []

    # Removing the job removes everything of it.
    assert bt.ok("cleanup", "--retention-days", "0")["removed"] == 1
    assert keys_under(bt, key_of(bt.uri)) == []


def test_an_unreachable_store_is_catalog_unavailable_with_the_endpoint_and_no_secret(
        s3_sqlite_catalog, tmp_path):
    bt = s3_sqlite_catalog
    bt.ok("migrate")
    submit(bt, "s3-down")
    work(bt)
    secret = bt.server.SECRET_KEY
    closed = f"http://127.0.0.1:{bt.server.port + 1 if bt.server.port < 65535 else 1}"

    class Unreachable(S3Btstore):
        def environment(self):
            return {**super().environment(), "BTSTORE_S3_ENDPOINT": closed}

    down = Unreachable(bt.backend, bt.url, bt.server, bt.uri.split("/", 3)[3], tmp_path / "d")
    for args in (["result", "s3-down"], ["verify"]):
        for json_out in (True, False):
            result = down.run(*args, expect=5, json_out=json_out)
            assert closed in result.stdout + result.stderr, result
            assert secret not in result.stdout + result.stderr, result
    # A worker that cannot upload fails the attempt with the real error and leaves no bundle.
    submit(bt, "s3-upload", retries=0)
    down.ok("worker", "--until-idle", "--poll-ms", "20")
    job = bt.ok("show", "s3-upload")
    assert job["status"] == "failed" and job["result_path"] is None, job
    assert closed in (job["error_message"] or ""), job
    assert secret not in json.dumps(job)
    assert keys_under(bt, key_of(bt.uri) + "/s3-upload") == []


def test_the_server_stopped_during_uploads_fails_the_attempts_and_nothing_is_visible(
        s3_sqlite_catalog):
    bt = s3_sqlite_catalog
    bt.ok("migrate")
    big = '{"engine":"synthetic","seed":3,"symbols":300}'
    for i in range(3):
        submit(bt, f"s3-cut-{i}", config=big, start="2018-01-01", end="2020-12-31", retries=0)
    worker = bt.spawn("worker", "--until-idle", "--poll-ms", "20")
    server = bt.server
    try:
        wait_until(lambda: keys_under(bt, key_of(bt.uri) + "/s3-cut-0"), "an upload started")
        server.stop()
        stdout, stderr = worker.communicate(timeout=300)
    finally:
        if worker.poll() is None:
            worker.kill()
        if server.proc is None:
            server.start()
            server.create_bucket(server.bucket)
    assert worker.returncode == 0, stderr
    jobs = [bt.ok("show", f"s3-cut-{i}") for i in range(3)]
    # The job whose upload was cut, and those after it, failed with the store's error (each
    # retry found the server down) and name no bundle.
    failed = [job for job in jobs if job["status"] != "completed"]
    assert failed, jobs
    for job in failed:
        assert job["status"] == "failed" and job["result_path"] is None, job
        assert f"artifact store at {server.endpoint}" in job["error_message"], job


# --- Faults injected by a proxy in front of the server (tests/support FaultProxy) -------------


def secrets_of(server):
    return (server.ACCESS_KEY, server.SECRET_KEY)


def assert_unavailable_naming(result, endpoint, server):
    """`result` failed as CatalogUnavailable (exit 5), naming `endpoint` and no credential."""
    assert result.returncode == 5, result
    assert endpoint in result.stdout + result.stderr, result
    for secret in secrets_of(server):
        assert secret not in result.stdout + result.stderr, result


@pytest.mark.parametrize("fault", ["slow_down", "reset"])
def test_throttling_and_connection_resets_are_retried(s3_sqlite_catalog, fault_proxy, tmp_path,
                                                      fault):
    bt = s3_sqlite_catalog
    bt.ok("migrate")
    for i in range(2):
        submit(bt, f"s3-{fault}-{i}", retries=0)
    flaky = bt.through(fault_proxy)
    setattr(fault_proxy, f"{fault}_share", 0.3)
    assert work(flaky)["events"]["completed"] == 2
    for i in range(2):
        job_id = f"s3-{fault}-{i}"
        assert flaky.ok("result", job_id)["tables"]["daily_signals"]["rows"] == 20 * 65
        part = flaky.ok("result", job_id, "--from", "2020-02-03", "--to", "2020-02-07")
        assert part["tables"]["daily_signals"]["rows"] == 20 * 5
        flaky.ok("result", job_id, "--export", tmp_path / job_id)
        # What came through the faults is what a healthy client reads from the store.
        direct = pl.read_parquet(bt.ok("show", job_id)["result_path"] + "/daily_signals.parquet",
                                 storage_options=bt.server.storage_options())
        assert pl.read_parquet(tmp_path / job_id / "daily_signals.parquet").equals(direct)
    assert flaky.ok("verify")["problems"] == []
    statuses = fault_proxy.statuses()
    assert statuses.get(503 if fault == "slow_down" else "RST", 0) >= 5, statuses


def test_a_store_that_always_throttles_is_catalog_unavailable_and_publishes_nothing(
        s3_sqlite_catalog, fault_proxy):
    bt = s3_sqlite_catalog
    bt.ok("migrate")
    submit(bt, "s3-read")
    work(bt)
    throttled = bt.through(fault_proxy)
    fault_proxy.slow_down_share = 1.0
    fault_proxy.max_faults_in_a_row = None
    for args in (["result", "s3-read"], ["verify"]):
        result = throttled.run(*args, expect=None)
        assert_unavailable_naming(result, fault_proxy.endpoint, bt.server)
        assert result.json()["error"]["code"] == "CatalogUnavailable", result
    submit(bt, "s3-write", retries=0)
    throttled.ok("worker", "--until-idle", "--poll-ms", "20")
    job = bt.ok("show", "s3-write")
    assert job["status"] == "failed" and job["result_path"] is None, job
    assert fault_proxy.endpoint in job["error_message"], job
    for secret in secrets_of(bt.server):
        assert secret not in json.dumps(job)
    # No request got through: no object of the job exists, half or whole.
    assert keys_under(bt, key_of(bt.uri) + "/s3-write") == []
    assert set(fault_proxy.statuses()) == {503}


def test_the_store_stopped_during_a_read_is_catalog_unavailable(s3_sqlite_catalog, fault_proxy):
    bt = s3_sqlite_catalog
    bt.ok("migrate")
    submit(bt, "s3-read-cut")
    work(bt)
    cut = bt.through(fault_proxy)
    for args in (["result", "s3-read-cut"], ["result", "s3-read-cut", "--from", "2020-02-03"]):
        fault_proxy.reset_faults()
        # The server goes away once the read has found the bundle, at its first Parquet fetch.
        fault_proxy.go_down_when = lambda method, path: path.split("?")[0].endswith(".parquet")
        result = cut.run(*args, expect=None)
        assert fault_proxy.down
        assert any(status != "RST" for *_, status, _ in fault_proxy.requests)
        assert_unavailable_naming(result, fault_proxy.endpoint, bt.server)
    fault_proxy.reset_faults()
    assert bt.ok("show", "s3-read-cut")["status"] == "completed"
    assert cut.ok("result", "s3-read-cut")["tables"]["daily_signals"]["rows"] == 20 * 65


def test_the_store_stopped_during_an_upload_leaves_nothing_a_reader_sees(s3_sqlite_catalog,
                                                                          fault_proxy):
    bt = s3_sqlite_catalog
    bt.ok("migrate")
    submit(bt, "s3-up-cut", retries=0)
    cut = bt.through(fault_proxy)
    # The server stops in the middle of the bundle's upload, right after storing daily_weights
    # (before it could reply): a part of the bundle is in the store. The request that stores an
    # object is a PUT of it whole, or the POST that completes its multipart upload.
    def stores_weights(method, path):
        name, _, query = path.partition("?")
        return name.endswith("/daily_weights.parquet") and (
            (method == "PUT" and "partNumber=" not in query) or
            (method == "POST" and "uploadId=" in query))

    fault_proxy.go_down_when = stores_weights
    fault_proxy.last_request_lands = True
    cut.ok("worker", "--until-idle", "--poll-ms", "20")
    assert fault_proxy.down
    fault_proxy.reset_faults()  # the server is back
    job = bt.ok("show", "s3-up-cut")
    assert job["status"] == "failed" and job["result_path"] is None, job
    assert f"artifact store at {fault_proxy.endpoint}" in job["error_message"], job
    assert cut.run("result", "s3-up-cut", expect=None).returncode == 4
    left = keys_under(bt, key_of(bt.uri) + "/s3-up-cut")
    dead = {f"{bt.uri}/s3-up-cut/{k.split('/')[0]}" for k in left}
    assert len(dead) == 1 and "daily_weights.parquet" in {k.split("/")[-1] for k in left}, left
    # No row names the dead attempt's prefix, and verify reports nothing while the job has no
    # bundle. Once a resumed attempt completes the job, the dead one's objects are a stray
    # attempt: verify reports them (grace 0 here) and cleanup sweeps them after its grace.
    assert cut.ok("verify", "--orphan-grace-seconds", "0")["problems"] == []
    bt.ok("resume", "s3-up-cut")
    assert work(cut)["events"]["completed"] == 1
    job = bt.ok("show", "s3-up-cut")
    assert job["status"] == "completed" and job["result_path"] not in dead, job
    verify = cut.run("verify", "--orphan-grace-seconds", "0", expect=6)
    assert [(p["kind"], p["path"]) for p in verify.json()["problems"]] == [
        ("orphan_bundle", *dead)], verify
    assert cut.ok("result", "s3-up-cut")["tables"]["daily_signals"]["rows"] == 20 * 65


def test_wrong_credentials_are_catalog_unavailable_and_never_printed(s3_auth_server, tmp_path):
    server = s3_auth_server
    bt = S3Btstore("sqlite", f"sqlite:{tmp_path / 'catalog.db'}", server, "auth", tmp_path)
    bt.ok("migrate")
    submit(bt, "s3-auth")
    assert work(bt)["events"]["completed"] == 1  # the server's own key works
    good = (server.ACCESS_KEY, server.SECRET_KEY)
    wrong_secret = {"AWS_SECRET_ACCESS_KEY": "wrong-secret-" + server.SECRET_KEY[::-1]}
    unknown_key = {"AWS_ACCESS_KEY_ID": "AKIAUNKNOWNKEY000000",
                   "AWS_SECRET_ACCESS_KEY": "unknown-key-secret-0123456789"}
    for n, wrong in enumerate((wrong_secret, unknown_key)):
        class WrongCredentials(S3Btstore):
            def environment(self):
                return {**super().environment(), **wrong}

        denied = WrongCredentials("sqlite", bt.url, server, "auth", tmp_path)
        forbidden = {*good, *wrong.values()}
        for args in (["result", "s3-auth"], ["verify"]):
            for json_out in (True, False):
                result = denied.run(*args, expect=5, json_out=json_out)
                text = result.stdout + result.stderr
                assert server.endpoint in text and "credentials" in text, result
                for secret in forbidden:
                    assert secret not in text, (secret, result)
            assert denied.run(*args, expect=5).json()["error"]["code"] == "CatalogUnavailable"
        submit(bt, f"s3-denied-{n}", retries=0)
        denied.ok("worker", "--until-idle", "--poll-ms", "20")
        job = bt.ok("show", f"s3-denied-{n}")
        assert job["status"] == "failed" and "credentials" in job["error_message"], job
        for secret in forbidden:
            assert secret not in json.dumps(job)


def test_uploads_skip_the_sdks_checksum_trailer_unless_the_user_asks_for_it(
        s3_sqlite_catalog, fault_proxy, tmp_path, monkeypatch):
    """The AWS SDK's default sends each upload as an aws-chunked body with a CRC64 trailer (which
    doubled an S3-compatible server's work per byte); btstore's manifest checksums cover the
    objects, so it asks for the SDK's checksums only where S3 requires them, unless the user
    set AWS_REQUEST_CHECKSUM_CALCULATION (or the AWS config file's key)."""
    bt = s3_sqlite_catalog
    bt.ok("migrate")
    sample = tmp_path / "sample"
    bt.run("bundle", "sample", sample, "--days", 30, "--symbols", 5)
    counted = bt.through(fault_proxy)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))

    def uploads(job_id):
        fault_proxy.reset_faults()
        counted.ok("import", sample, "--alpha", "a", "--start", "2020-01-01", "--end",
                   "2020-02-11", "--job-id", job_id)
        puts = [headers for (method, *_), headers
                in zip(fault_proxy.requests, fault_proxy.request_headers) if method == "PUT"]
        assert len(puts) == 4, fault_proxy.requests  # three tables and summary.json
        return puts

    monkeypatch.delenv("AWS_REQUEST_CHECKSUM_CALCULATION", raising=False)
    for headers in uploads("s3-plain"):
        assert "x-amz-trailer" not in headers and "aws-chunked" not in headers.get(
            "content-encoding", ""), headers
        assert int(headers["content-length"]) > 0, headers
    assert counted.ok("verify", "s3-plain")["problems"] == []

    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_supported")
    for headers in uploads("s3-sdk-checksums"):
        assert "crc64" in headers.get("x-amz-trailer", ""), headers

    monkeypatch.delenv("AWS_REQUEST_CHECKSUM_CALCULATION")
    (tmp_path / "aws-config").write_text("[default]\nrequest_checksum_calculation = when_supported\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    for headers in uploads("s3-config-checksums"):
        assert "crc64" in headers.get("x-amz-trailer", ""), headers


def test_reads_fetch_what_they_need_in_few_requests(s3_sqlite_catalog, fault_proxy, tmp_path):
    bt = s3_sqlite_catalog
    bt.ok("migrate")
    sample = tmp_path / "sample"
    bt.run("bundle", "sample", sample, "--days", 1300, "--symbols", 100)  # two row groups
    counted = bt.through(fault_proxy)
    counted.ok("import", sample, "--alpha", "a", "--start", "2020-01-01", "--end", "2024-12-24",
               "--job-id", "s3-requests")
    # Each file of the bundle is written with one PUT (no multipart upload for small objects).
    writes = [(method, path) for method, path, *_ in fault_proxy.requests if method != "GET"]
    assert sorted(path.rsplit("/", 1)[-1] for method, path in writes) == [
        "daily_ic.parquet", "daily_signals.parquet", "daily_weights.parquet", "summary.json"], \
        writes
    assert {method for method, _ in writes} == {"PUT"}, writes
    signals_bytes = (sample / "daily_signals.parquet").stat().st_size

    def requests_of(*args):
        fault_proxy.reset_faults()
        doc = counted.ok(*args)
        return doc, [(method, path.split("?")[0].rsplit("/", 1)[-1], byte_range, size)
                     for method, path, byte_range, _, size in fault_proxy.requests]

    # A month: the listing, summary.json, the signals' footer and its one row group; nothing
    # asks for a size (the listing has them).
    doc, requests = requests_of("result", "s3-requests", "--tables", "daily_signals", "--from",
                                "2021-06-01", "--to", "2021-06-30")
    assert doc["tables"]["daily_signals"]["rows"] > 0
    assert sorted((method, name) for method, name, _, _ in requests) == [
        ("GET", "btstore-test"), ("GET", "daily_signals.parquet"),
        ("GET", "daily_signals.parquet"), ("GET", "summary.json")], requests
    fetched = sum(size for _, name, _, size in requests if name == "daily_signals.parquet")
    assert fetched < signals_bytes * 0.7, (fetched, signals_bytes)
    assert doc["bytes_read"] == fetched

    # Whole: the listing, then each file once, whole.
    doc, requests = requests_of("result", "s3-requests")
    assert sorted((method, name) for method, name, _, _ in requests) == [
        ("GET", "btstore-test"), ("GET", "daily_ic.parquet"), ("GET", "daily_signals.parquet"),
        ("GET", "daily_weights.parquet"), ("GET", "summary.json")], requests
    assert {name: size for _, name, _, size in requests}["daily_signals.parquet"] == signals_bytes

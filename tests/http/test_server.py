"""The server as a process: live progress, limits, `--auth none`, graceful shutdown on SIGTERM,
a server killed mid-request, and an unreachable catalog."""

import http.client
import json
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from btstore_testing import PgCluster, pg_missing_reason, skip_or_fail
from conftest import Btstore, Server

START, END = "2020-01-01", "2020-03-01"


@pytest.fixture
def bt(tmp_path):
    return Btstore(f"sqlite:{tmp_path / 'catalog.db'}", tmp_path / "results")


def read_events(base, token, job_id, until, timeout=60):
    """Read the job's Server-Sent Events until `until(event)` holds; return (event, time) pairs."""
    url = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    conn.request("GET", f"/api/v1/jobs/{job_id}/events", headers={"Authorization": f"Bearer {token}"})
    res = conn.getresponse()
    assert res.status == 200 and res.getheader("Content-Type").startswith("text/event-stream")
    events = []
    while True:
        line = res.readline()
        if not line:
            break
        if line.startswith(b"data: "):
            event = json.loads(line[6:])
            events.append((event, time.monotonic()))
            if until(event):
                break
    conn.close()
    return events


def test_events_follow_a_job_from_pending_to_completed_with_progress(bt):
    admin = bt.token("root", "admin")
    job_id = bt.ok("submit", "--alpha", "live", "--start", "2020-01-01", "--end", "2020-06-30",
                   "--config", '{"delay_ms_per_day": 15, "symbols": 20}', "--user", "u")["job_id"]
    server = Server(bt)
    try:
        worker = None
        got = []

        def follow():
            got.extend(read_events(server.base, admin, job_id,
                                   lambda e: e["status"] in ("completed", "failed", "cancelled")))

        reader = threading.Thread(target=follow)
        reader.start()
        worker = subprocess.Popen(bt.argv("worker", "--until-idle", "--lease-seconds", "2"),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        reader.join(timeout=120)
        assert worker.wait(timeout=120) == 0
        statuses = [e["status"] for e, _ in got]
        assert statuses[0] == "pending" and statuses[-1] == "completed"
        progress = [e["progress_pct"] for e, _ in got if e["status"] == "running"]
        assert len(set(progress)) >= 3, progress  # several heartbeats seen, not only the end
        # Updates arrive within a second of each other while it runs (heartbeats are <= 1 s).
        times = [t for e, t in got if e["status"] == "running"]
        assert max(b - a for a, b in zip(times, times[1:])) < 1.5
    finally:
        assert server.stop() == 0


def test_events_of_an_unknown_job_are_404(bt):
    server = Server(bt, "--auth", "none")
    try:
        res = server.client().get("/api/v1/jobs/nope/events")
        assert res.status == 404 and res.error_code() == "JobNotFound"
    finally:
        server.stop()


def test_auth_none_is_refused_off_loopback_and_acts_as_admin_on_it(bt):
    proc = bt.run("serve", "--listen", "0.0.0.0:0", "--auth", "none", expect=2)
    assert json.loads(proc.stdout)["error"]["code"] == "InvalidArgument"
    server = Server(bt, "--auth", "none")
    try:
        client = server.client()
        assert client.get("/api/v1/whoami").json()["role"] == "admin"
        assert client.post("/api/v1/cleanup", {"dry_run": True}).status == 200
    finally:
        server.stop()


def test_a_body_over_the_limit_is_413_and_nothing_is_written(bt):
    server = Server(bt, "--auth", "none", "--max-body-mb", "1")
    try:
        res = server.client().request("POST", "/api/v1/import", raw=b"x" * (2 << 20),
                                      content_type="multipart/form-data; boundary=b")
        assert res.status == 413
        assert res.error_code() == "InvalidArgument"
        assert server.client().get("/api/v1/jobs").json()["jobs"] == []
    finally:
        server.stop()


def test_headers_over_the_limit_are_refused(bt):
    server = Server(bt, "--auth", "none")
    try:
        res = server.client().get("/api/v1/jobs", headers={"X-Big": "y" * 20000})
        assert res.status >= 400
    finally:
        server.stop()


def big_job(bt, tmp_path):
    sample = tmp_path / "big"
    bt.ok("bundle", "sample", sample, "--days", 500, "--symbols", 1000)
    bt.ok("import", sample, "--alpha", "big", "--start", START, "--end", "2022-01-01",
          "--job-id", "big")
    return 500 * 1000


def test_sigterm_lets_a_request_in_flight_finish_and_refuses_new_ones(bt, tmp_path):
    rows = big_job(bt, tmp_path)
    server = Server(bt, "--auth", "none")
    url = urllib.parse.urlparse(server.base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    conn.request("GET", "/api/v1/jobs/big/tables/daily_signals")
    res = conn.getresponse()
    head = res.read(64 * 1024)  # the response has started; the rest is still on its way
    server.proc.send_signal(signal.SIGTERM)
    body = head + res.read()
    assert ipc.open_stream(body).read_all().num_rows == rows
    assert server.proc.wait(timeout=30) == 0
    server.log.close()
    with pytest.raises(OSError):
        socket.create_connection((url.hostname, url.port), timeout=5).close()


def test_a_server_killed_mid_stream_gives_the_client_a_clean_error(bt, tmp_path):
    big_job(bt, tmp_path)
    server = Server(bt, "--auth", "none")
    url = urllib.parse.urlparse(server.base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    conn.request("GET", "/api/v1/jobs/big/tables/daily_signals")
    res = conn.getresponse()
    head = res.read(64 * 1024)
    server.stop(signal.SIGKILL)
    with pytest.raises((http.client.IncompleteRead, ConnectionError, pa.ArrowInvalid)):
        ipc.open_stream(head + res.read()).read_all()


def test_a_server_killed_mid_upload_writes_nothing(bt, tmp_path):
    sample = tmp_path / "s"
    bt.ok("bundle", "sample", sample, "--days", 30, "--symbols", 20)
    server = Server(bt, "--auth", "none")
    url = urllib.parse.urlparse(server.base)
    sock = socket.create_connection((url.hostname, url.port))
    boundary = "b" + uuid.uuid4().hex
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"daily_ic.parquet\"\r\n\r\n").encode() + (sample / "daily_ic.parquet").read_bytes()
    sock.sendall((f"POST /api/v1/import HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                  f"boundary={boundary}\r\nContent-Length: {len(part) * 10}\r\n\r\n").encode() + part)
    server.stop(signal.SIGKILL)
    sock.close()
    bundles = [p for p in (bt.root).iterdir() if not p.name.startswith(".")] if bt.root.exists() else []
    assert bundles == []
    assert bt.ok("list")["jobs"] == []


def test_an_unreachable_catalog_is_503(tmp_path):
    skip_or_fail(pg_missing_reason(), "PostgreSQL")
    cluster = PgCluster(prefix="btstore-http-503-")
    try:
        bt = Btstore(cluster.new_database(prefix="btstore_http_"), tmp_path / "results")
        server = Server(bt, "--auth", "none")
        client = server.client()
        assert client.get("/healthz").status == 200
        cluster.stop()
        cluster = None
        for path in ("/healthz", "/api/v1/jobs", "/api/v1/jobs/x"):
            res = client.get(path)
            assert res.status == 503, res.body
            assert res.error_code() == "CatalogUnavailable"
            assert "password" not in res.body.decode()
        assert server.stop() == 0
    finally:
        if cluster:
            cluster.stop()


def assert_served(connections):
    """Each kept-alive connection still answers a request."""
    for conn in connections:
        conn.request("GET", "/healthz")
        res = conn.getresponse()
        assert res.status == 200
        res.read()


def open_idle_connections(server, count):
    url = urllib.parse.urlparse(server.base)
    idle = [http.client.HTTPConnection(url.hostname, url.port, timeout=30) for _ in range(count)]
    assert_served(idle)
    return idle


def test_idle_kept_alive_connections_do_not_starve_an_active_one(bt):
    """cpp-httplib holds a thread per open connection: 300 idle kept-alive connections must not
    keep a new request waiting (the pool grows to --threads, 1,100 by default)."""
    token = bt.token("reader", "reader")
    server = Server(bt, "--keep-alive-seconds", "60")
    idle = []
    try:
        idle = open_idle_connections(server, 300)
        started = time.monotonic()
        res = server.client(token).get("/api/v1/jobs", timeout=30)
        assert res.status == 200
        assert time.monotonic() - started < 2.0
        # The idle ones are still open and served.
        assert_served(idle[:20])
    finally:
        for conn in idle:
            conn.close()
        assert server.stop() == 0


def context_switches(pid):
    """Sum of the voluntary context switches of every thread of the process: one per wake-up."""
    total = 0
    for task in (Path("/proc") / str(pid) / "task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
        except FileNotFoundError:  # a thread that ended meanwhile
            pass
    return total


def test_idle_kept_alive_connections_wait_without_waking_the_server(bt):
    """A kept-alive connection waits for its next request in one blocking poll: 200 idle
    connections for 2 s cost a handful of wake-ups (cpp-httplib's own loop woke each about 90
    times a second: some 36,000 here)."""
    server = Server(bt, "--auth", "none", "--keep-alive-seconds", "60")
    idle = open_idle_connections(server, 200)
    try:
        time.sleep(0.5)  # the answers' last writes settle
        before = context_switches(server.proc.pid)
        time.sleep(2.0)
        woken = context_switches(server.proc.pid) - before
        assert woken < 2_000, woken
        # Still open and served.
        assert_served(idle[:10])
    finally:
        for conn in idle:
            conn.close()
        assert server.stop() == 0


def test_sigterm_closes_idle_kept_alive_connections_at_once(bt):
    server = Server(bt, "--auth", "none", "--keep-alive-seconds", "600")
    idle = open_idle_connections(server, 20)
    try:
        server.proc.send_signal(signal.SIGTERM)
        # The idle connections are closed by the server, not left to their 600 s keep-alive.
        assert server.proc.wait(timeout=20) == 0
        for conn in idle:
            assert conn.sock.recv(1) == b""
    finally:
        for conn in idle:
            conn.close()
        server.stop()


def test_pipelined_requests_on_one_connection_are_all_answered_in_order(bt):
    server = Server(bt, "--auth", "none")
    try:
        url = urllib.parse.urlparse(server.base)
        sock = socket.create_connection((url.hostname, url.port), timeout=30)
        paths = ["/healthz", "/api/v1/jobs?limit=1", "/api/v1/jobs/nope", "/healthz"]
        sock.sendall(b"".join(f"GET {p} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for p in paths))
        reader = sock.makefile("rb")
        statuses = []
        for _ in paths:
            statuses.append(int(reader.readline().split()[1]))
            headers = {}
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.lower()] = value.strip()
            reader.read(int(headers["content-length"]))
        assert statuses == [200, 200, 404, 200]
        sock.close()
    finally:
        assert server.stop() == 0


def test_the_server_queues_a_burst_of_connections(bt):
    """cpp-httplib listens with an accept queue of 5: a burst of clients beyond it (64 of wrk's
    connections reconnecting after their last kept-alive request) had their SYNs dropped and
    retried a second later, the p99 of every route near a second. `ss` shows the listening
    socket's queue as its Send-Q."""
    server = Server(bt, "--auth", "none")
    try:
        port = urllib.parse.urlparse(server.base).port
        row = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True,
                             check=True).stdout.split()
        assert row[0] == "LISTEN" and int(row[2]) >= 128, row
    finally:
        assert server.stop() == 0

"""Helpers shared by the Python tests (tests/cli, tests/interop) and the benchmark driver
(bench/run_bench.py): the btstore executable under test, a private PostgreSQL cluster and a
private S3-compatible server (moto's), and a proxy in front of it that injects faults.

PgCluster runs initdb + pg_ctl in a temporary directory (as the `postgres` user when run as
root) on a free 127.0.0.1 port, never a server that happens to be running, and removes it all
on stop(). It is the Python twin of tests/support/pg_cluster.cc.
"""

import http.client
import http.server
import os
import pwd
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

PG_BINDIR = Path(os.environ.get("BTSTORE_PG_BINDIR", "/usr/lib/postgresql/15/bin"))
RUNUSER = "/usr/sbin/runuser"
# A free port can be taken by another process before the server binds it: try a few.
START_ATTEMPTS = 4


class PgClusterError(RuntimeError):
    """initdb, pg_ctl or the server failed; the message holds their output and log."""


def btstore_bin():
    """The btstore executable under test (ctest sets BTSTORE_BIN), or None when unset."""
    path = os.environ.get("BTSTORE_BIN")
    return path if path and Path(path).is_file() else None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_missing_reason():
    """Why a private cluster cannot be started here, or None when it can."""
    for program in ("initdb", "pg_ctl", "postgres"):
        if not os.access(PG_BINDIR / program, os.X_OK):
            return f"PostgreSQL not installed: {PG_BINDIR / program} missing"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a user named postgres"
        if not os.access(RUNUSER, os.X_OK):
            return f"{RUNUSER} missing"
    return None


class PgCluster:
    """A private PostgreSQL server.

    parent: directory to create the cluster's directory in (default: the system's temporary
    directory). fsync: keep the server's fsync on (benchmarks measure durable commits; tests turn
    it off for speed). stop_mode: pg_ctl's shutdown mode in stop().
    """

    def __init__(self, parent=None, fsync=False, max_connections=200, stop_mode="immediate",
                 prefix="btstore-pg-"):
        self.as_root = os.geteuid() == 0
        self.stop_mode = stop_mode
        self.dir = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        if self.as_root:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            if parent is not None:
                os.chmod(parent, 0o755)  # the postgres user must reach its directory
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = None
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                 "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions")
        last_error = None
        for _ in range(START_ATTEMPTS):
            self.port = free_port()
            options = (f"-c port={self.port} -c listen_addresses=127.0.0.1 "
                       f"-c unix_socket_directories={self.dir} "
                       f"-c max_connections={max_connections}"
                       + ("" if fsync else " -c fsync=off"))
            try:
                self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
                         "-w", "-t", "60", "start")
                return
            except PgClusterError as e:
                last_error = e
        raise last_error

    def _pg(self, program, *args):
        cmd = [str(PG_BINDIR / program), *args]
        if self.as_root:
            cmd = [RUNUSER, "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=self.dir,
                              stdin=subprocess.DEVNULL, timeout=120)
        if proc.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise PgClusterError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
                                 f"\n{log[-4000:]}")

    def url(self, database="postgres"):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix="btstore_"):
        """Create an empty database with a fresh name; return its URL."""
        import psycopg

        name = prefix + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self):
        try:
            self._pg("pg_ctl", "-D", str(self.data), "-m", self.stop_mode, "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def moto_missing_reason(python=None):
    """Why moto's S3 server cannot be started here, or None when it can."""
    python = python or os.environ.get("BTSTORE_PYTHON") or sys.executable
    proc = subprocess.run([python, "-c", "import moto.server"], capture_output=True, text=True)
    if proc.returncode != 0:
        return "moto[server] is not installed (pip install -r requirements-dev.txt)"
    return None


class S3Server:
    """A private S3-compatible server: moto's standalone server on a free 127.0.0.1 port, with
    one bucket, started by the tests and stopped by stop(). Its objects live in its memory, so a
    restart starts empty.

    env() gives the variables that point btstore (BTSTORE_S3_ENDPOINT and the AWS variables) at
    it; storage_options() the same for polars.
    """

    ACCESS_KEY = "btstore-test-key"
    SECRET_KEY = "btstore-test-secret-0123456789"
    REGION = "us-east-1"

    def __init__(self, bucket="btstore-test", python=None):
        self.python = python or os.environ.get("BTSTORE_PYTHON") or sys.executable
        self.bucket = bucket
        self.port = None
        self.proc = None
        self.dir = Path(tempfile.mkdtemp(prefix="btstore-s3-"))
        self.log = self.dir / "server.log"
        self.start()
        self.create_bucket(bucket)

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        """Start the server (again on the same port after stop()) and wait until it answers."""
        last_error = None
        for _ in range(START_ATTEMPTS):
            port = self.port or free_port()
            # The server logs every request: into a file, since an unread pipe would fill up
            # and stall it.
            with open(self.log, "w") as log:
                self.proc = subprocess.Popen(
                    [self.python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                    stdout=log, stderr=subprocess.STDOUT)
            self.port = port
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    last_error = Path(self.log).read_text()[-2000:]
                    break
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                        return
                except OSError:
                    time.sleep(0.05)  # the server binds its port within a second or two
            else:
                last_error = "moto did not listen within 30 s"
            self.stop()
        raise RuntimeError(f"cannot start moto's S3 server: {last_error}")

    def stop(self):
        """Kill the server and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def close(self):
        """Stop the server and remove its log."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def filesystem(self):
        import pyarrow.fs as pafs
        return pafs.S3FileSystem(access_key=self.ACCESS_KEY, secret_key=self.SECRET_KEY,
                                 region=self.REGION, scheme="http",
                                 endpoint_override=f"127.0.0.1:{self.port}",
                                 allow_bucket_creation=True)

    def create_bucket(self, bucket):
        self.filesystem().create_dir(bucket)

    def require_credentials(self):
        """Make the server check every request's signature and key from now on, as S3 does
        (moto's IAM authentication), and switch this object to the one key it accepts: an IAM
        user's, allowed everything, made while the server still accepted anything."""
        import boto3
        import urllib.request

        iam = boto3.client("iam", endpoint_url=self.endpoint, region_name=self.REGION,
                           aws_access_key_id=self.ACCESS_KEY,
                           aws_secret_access_key=self.SECRET_KEY)
        iam.create_user(UserName="btstore")
        iam.put_user_policy(UserName="btstore", PolicyName="all",
                            PolicyDocument='{"Version": "2012-10-17", "Statement": [{"Effect": '
                                           '"Allow", "Action": "*", "Resource": "*"}]}')
        key = iam.create_access_key(UserName="btstore")["AccessKey"]
        self.ACCESS_KEY, self.SECRET_KEY = key["AccessKeyId"], key["SecretAccessKey"]
        # What INITIAL_NO_AUTH_ACTION_COUNT=0 in the server's environment does, set at run time.
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset-auth", data=b"0",
                                         headers={"Content-Type": "text/plain"}, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200

    def env(self):
        return {"BTSTORE_S3_ENDPOINT": self.endpoint, "AWS_ACCESS_KEY_ID": self.ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": self.SECRET_KEY, "AWS_REGION": self.REGION,
                "AWS_EC2_METADATA_DISABLED": "true"}

    def storage_options(self):
        return {"aws_access_key_id": self.ACCESS_KEY, "aws_secret_access_key": self.SECRET_KEY,
                "aws_region": self.REGION, "aws_endpoint_url": self.endpoint,
                "aws_allow_http": "true"}


SLOW_DOWN_BODY = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
                  b'<Message>Please reduce your request rate.</Message>'
                  b'<RequestId>btstore-fault-proxy</RequestId></Error>')


class FaultProxy:
    """An HTTP proxy on a free 127.0.0.1 port in front of an S3 server on `upstream_port`, for
    the tests of the store's faults. It forwards each request whole (one upstream connection per
    request) and records it; the test sets, at any time:

    slow_down_share: the share of requests answered 503 SlowDown (S3's throttling reply, XML
        body as S3 sends it) instead of being forwarded;
    reset_share: the share of requests whose connection is reset (RST) instead;
    max_faults_in_a_row: at most this many faults in a row for one request (same method, path,
        query and range), so that a client retrying a few times always gets through: the
        random shares then cannot make a test fail by chance (None: no bound);
    go_down_when: when set, a predicate on (method, path): from the first request for which
        it holds on, every request is reset, as if the server had stopped there (None: never);
    last_request_lands: whether that first request still reaches the server, which acts on it,
        before its connection is reset (the server stopped before it could reply).

    requests: (method, path, range header, status, response body bytes) of every request,
    "RST" as the status of a reset one; request_headers: each one's headers (names in lower
    case), in the same order. env() and storage_options() are the server's, pointed at the
    proxy.
    """

    def __init__(self, server, seed=0):
        self.server = server
        self.slow_down_share = 0.0
        self.reset_share = 0.0
        self.max_faults_in_a_row = 2
        self.go_down_when = None
        self.last_request_lands = False
        self.requests = []
        self.request_headers = []
        self._down = False
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._faults_in_a_row = {}
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass  # the requests are recorded, not printed

            def handle_one(self):
                body = self._read_body()
                fault = proxy._decide(self.command, self.path, self.headers.get("Range"))
                if fault == "forward_then_reset":
                    self._forward(body)
                    fault = "reset"
                if fault == "reset":
                    proxy._record(self.command, self.path, self.headers, "RST", 0)
                    # A zero linger makes close() send RST; the descriptor is closed here, at
                    # once (the handler's own close would shut the socket down first: a FIN).
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
                    self.close_connection = True
                    os.close(self.connection.detach())
                    return
                if fault == "slow_down":
                    self._reply(503, [("Content-Type", "application/xml")], SLOW_DOWN_BODY)
                    proxy._record(self.command, self.path, self.headers, 503,
                                  len(SLOW_DOWN_BODY))
                    return
                status, headers, data = self._forward(body)
                self._reply(status, headers, data, send_length=False)
                proxy._record(self.command, self.path, self.headers, status, len(data))

            def _forward(self, body):
                """Send the request to the server; return its status, headers and body."""
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.server.port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "expect"}
                    upstream.putrequest(self.command, self.path, skip_host=True,
                                        skip_accept_encoding=True)
                    for key, value in headers.items():
                        upstream.putheader(key, value)
                    upstream.endheaders(body)
                    response = upstream.getresponse()
                    data = response.read()
                    headers = [(k, v) for k, v in response.getheaders()
                               if k.lower() not in ("transfer-encoding", "connection")
                               and (self.command == "HEAD" or k.lower() != "content-length")]
                    if self.command != "HEAD":
                        headers.append(("Content-Length", str(len(data))))
                    return response.status, headers, data
                finally:
                    upstream.close()

            def _read_body(self):
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    # Forwarded as it came, framing included (the header goes along).
                    raw = b""
                    while True:
                        line = self.rfile.readline()
                        raw += line
                        size = int(line.split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while True:  # trailers, up to the empty line
                                trailer = self.rfile.readline()
                                raw += trailer
                                if trailer in (b"\r\n", b"\n", b""):
                                    return raw
                        raw += self.rfile.read(size + 2)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _reply(self, status, headers, data, send_length=True):
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                if send_length:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_one

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def _decide(self, method, path, byte_range):
        with self._lock:
            if self.go_down_when is not None and not self._down:
                self._down = bool(self.go_down_when(method, path))
                if self._down and self.last_request_lands:
                    return "forward_then_reset"
            if self._down:
                return "reset"
            identity = (method, path, byte_range)
            in_a_row = self._faults_in_a_row.get(identity, 0)
            draw = self._random.random()
            fault = None
            if self.max_faults_in_a_row is None or in_a_row < self.max_faults_in_a_row:
                if draw < self.slow_down_share:
                    fault = "slow_down"
                elif draw < self.slow_down_share + self.reset_share:
                    fault = "reset"
            if fault is None:
                self._faults_in_a_row.pop(identity, None)
            else:
                self._faults_in_a_row[identity] = in_a_row + 1
            return fault

    def _record(self, method, path, headers, status, size):
        with self._lock:
            self.requests.append((method, path, headers.get("Range"), status, size))
            self.request_headers.append({k.lower(): v for k, v in headers.items()})

    def statuses(self):
        """How many requests got each status ("RST" for a reset)."""
        with self._lock:
            counts = {}
            for request in self.requests:
                counts[request[3]] = counts.get(request[3], 0) + 1
            return counts

    @property
    def down(self):
        """Whether go_down_when has held: the proxy resets every request."""
        with self._lock:
            return self._down

    def reset_faults(self):
        """Forward every request from now on (the server is back), and forget the recorded
        ones."""
        with self._lock:
            self.slow_down_share = self.reset_share = 0.0
            self.go_down_when = None
            self.last_request_lands = False
            self._down = False
            self.requests = []
            self.request_headers = []
            self._faults_in_a_row = {}

    def env(self):
        return {**self.server.env(), "BTSTORE_S3_ENDPOINT": self.endpoint}

    def close(self):
        self._httpd.shutdown()
        self._httpd.server_close()


def skip_or_fail(reason, what):
    """End the calling pytest test or fixture when `reason` (a missing tool) is set: a failure
    under CI=true, where no test may skip, else a skip."""
    import pytest  # only the pytest suites call this; the benchmarks import this module too

    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: {what} tests may not skip)")
        pytest.skip(reason)


def private_pg_cluster(prefix):
    """The body of a session fixture: a private PostgreSQL cluster, stopped at the end."""
    skip_or_fail(pg_missing_reason(), "PostgreSQL")
    cluster = PgCluster(prefix=prefix)
    try:
        yield cluster
    finally:
        cluster.stop()


def private_fault_proxy(server):
    """The body of a fixture: a FaultProxy in front of `server`, closed at the end."""
    proxy = FaultProxy(server)
    try:
        yield proxy
    finally:
        proxy.close()


def private_s3_server(**kwargs):
    """The body of a fixture: a private S3 server (S3Server(**kwargs)), closed at the end."""
    skip_or_fail(moto_missing_reason(), "S3")
    server = S3Server(**kwargs)
    try:
        yield server
    finally:
        server.close()


def wait_until(predicate, what, timeout=60.0):
    """Poll `predicate` (a cheap read) every 50 ms until it returns something true, and return
    that; fail the test naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)

"""Fixtures of the HTTP API tests: a catalog on each backend filled with jobs and tokens, and a
`btstore serve` started on a free loopback port per test module and stopped at its end.

PostgreSQL is a private cluster started here (tests/support/btstore_testing.py), never a server
that happens to be running.
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from btstore_testing import private_pg_cluster  # noqa: E402
from btstore_testing import btstore_bin as find_btstore  # noqa: E402

OUTPUT_DIR = Path(os.environ.get("BTSTORE_BINARY_DIR", "build")) / "test-output" / "http"


def btstore_bin():
    path = find_btstore()
    if not path:
        pytest.fail("BTSTORE_BIN is not set (run the tests through ctest)")
    return path


class Btstore:
    """Runs the real `btstore` executable with one catalog and artifact root."""

    def __init__(self, url, root):
        self.url = url
        self.root = Path(root)

    def argv(self, *args):
        return [btstore_bin(), "--catalog", self.url, "--artifact-root", str(self.root), "--json",
                *[str(a) for a in args]]

    def run(self, *args, expect=0):
        proc = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=300)
        assert proc.returncode == expect, (args, proc.stdout, proc.stderr)
        return proc

    def ok(self, *args):
        return json.loads(self.run(*args).stdout)

    def token(self, user, role):
        return self.ok("token", "create", "--user", user, "--role", role)["token"]


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def error_code(self):
        return self.json()["error"]["code"]


class Client:
    """A small HTTP client (urllib) bound to a server and, optionally, a token."""

    def __init__(self, base, token=None):
        self.base = base
        self.token = token

    def request(self, method, path, body=None, headers=None, raw=None, content_type=None,
                timeout=60):
        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if content_type:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as res:
                return Response(res.status, res.headers, res.read())
        except urllib.error.HTTPError as e:
            return Response(e.code, e.headers, e.read())

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body if body is not None else {}, **kw)

    def as_(self, token):
        return Client(self.base, token)


class Server:
    """`btstore serve` on a free loopback port; stop() sends SIGTERM and waits."""

    def __init__(self, btstore, *extra, env=None):
        self.btstore = btstore
        self.log_path = btstore.root.parent / f"serve-{time.monotonic_ns()}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(btstore.argv("serve", "--listen", "127.0.0.1:0", *extra),
                                     stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        # The first document on stdout says where it listens, once it accepts connections.
        text = ""
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.log.flush()
                raise AssertionError("serve ended: " + self.log_path.read_text())
            text += line
            if line.startswith("}"):
                break
        self.base = json.loads(text)["listening"]

    def client(self, token=None):
        return Client(self.base, token)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self.log.close()
        return code

    def access_log(self):
        self.log.flush()
        return [json.loads(l) for l in self.log_path.read_text().splitlines() if l.startswith("{")]


@pytest.fixture(scope="session")
def pg_cluster():
    yield from private_pg_cluster("btstore-http-pg-")


def make_btstore(backend, request, tmp):
    root = tmp / "results"
    if backend == "sqlite":
        return Btstore(f"sqlite:{tmp / 'catalog.db'}", root)
    cluster = request.getfixturevalue("pg_cluster")
    return Btstore(cluster.new_database(prefix="btstore_http_"), root)


@pytest.fixture(scope="session")
def output_dir():
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    return OUTPUT_DIR

"""Fixtures of the command line's end-to-end tests.

`pg_cluster` starts a private PostgreSQL cluster once per session (the helper shared with
tests/interop and the benchmark, tests/support/btstore_testing.py) and stops it at the end.
`catalog` is parametrised over both backends and gives each test a fresh catalog and artifact
root plus a helper that runs the real executable.
"""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from btstore_testing import free_port, private_pg_cluster  # noqa: E402,F401
from btstore_testing import private_fault_proxy, private_s3_server  # noqa: E402
from btstore_testing import btstore_bin as find_btstore  # noqa: E402


def btstore_bin():
    path = find_btstore()
    if not path:
        pytest.fail("BTSTORE_BIN is not set (run the tests through ctest)")
    return path


class Result:
    """What one run of the executable gave."""

    def __init__(self, args, proc):
        self.args = args
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    def json(self):
        # The whole of stdout must be exactly one JSON document.
        return json.loads(self.stdout)

    def __repr__(self):
        return (f"btstore {' '.join(self.args)} -> {self.returncode}\n"
                f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}")


class Btstore:
    """Runs `btstore` with one catalog and artifact root."""

    def __init__(self, backend, url, root):
        self.backend = backend
        self.url = url
        self.root = Path(root)

    def argv(self, *args, json_out=True):
        base = [btstore_bin(), "--catalog", self.url, "--artifact-root", str(self.root)]
        return base + (["--json"] if json_out else []) + [str(a) for a in args]

    def environment(self):
        """The environment of its runs (the store's endpoint and credentials for S3)."""
        return None

    def run(self, *args, expect=0, json_out=True, timeout=180):
        proc = subprocess.run(self.argv(*args, json_out=json_out), capture_output=True, text=True,
                              timeout=timeout, env=self.environment())
        result = Result([str(a) for a in args], proc)
        if expect is not None:
            assert result.returncode == expect, result
        return result

    def ok(self, *args, **kwargs):
        """Run with --json, expect success, return the parsed document."""
        return self.run(*args, **kwargs).json()

    def spawn(self, *args, json_out=True):
        return subprocess.Popen(self.argv(*args, json_out=json_out), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.environment())


class S3Btstore(Btstore):
    """Runs `btstore` with one catalog and an s3:// artifact root on `server`; `uri` is the root,
    `cwd` its working directory (its local temporary directory is under it). With `via` (a
    FaultProxy of tests/support), its requests go through that proxy."""

    def __init__(self, backend, url, server, prefix, cwd, via=None):
        super().__init__(backend, url, cwd / "unused-local-root")
        self.server = server
        self.via = via
        self.uri = f"s3://{server.bucket}/{prefix}"
        self.cwd = Path(cwd)

    def argv(self, *args, json_out=True):
        base = [btstore_bin(), "--catalog", self.url, "--artifact-root", self.uri]
        return base + (["--json"] if json_out else []) + [str(a) for a in args]

    def environment(self):
        tmp = self.cwd / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return {**os.environ, **(self.via or self.server).env(), "TMPDIR": str(tmp)}

    def through(self, proxy):
        """The same catalog and root, reached through `proxy`."""
        return S3Btstore(self.backend, self.url, self.server, self.uri.split("/", 3)[3], self.cwd,
                         via=proxy)


@pytest.fixture(scope="session")
def pg_cluster():
    yield from private_pg_cluster("btstore-cli-pg-")


def make_btstore(backend, request, tmp_path):
    root = tmp_path / "results"
    if backend == "sqlite":
        return Btstore(backend, f"sqlite:{tmp_path / 'catalog.db'}", root)
    cluster = request.getfixturevalue("pg_cluster")
    return Btstore(backend, cluster.new_database(prefix="btstore_cli_"), root)


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog(request, tmp_path):
    """A fresh catalog on each backend, with its own artifact root."""
    return make_btstore(request.param, request, tmp_path)


@pytest.fixture
def pg_catalog(request, tmp_path):
    """A fresh PostgreSQL catalog."""
    return make_btstore("postgresql", request, tmp_path)


@pytest.fixture(scope="session")
def s3_server():
    yield from private_s3_server()


@pytest.fixture
def s3_auth_server():
    """A private S3 server of its own that checks credentials (S3Server.require_credentials)."""
    for server in private_s3_server(bucket="btstore-auth"):
        server.require_credentials()
        yield server


@pytest.fixture
def fault_proxy(s3_server):
    """A proxy that injects faults in front of the private S3 server (see FaultProxy)."""
    yield from private_fault_proxy(s3_server)


def make_s3_btstore(backend, request, tmp_path):
    server = request.getfixturevalue("s3_server")
    prefix = f"results-{uuid.uuid4().hex[:12]}"
    if backend == "sqlite":
        url = f"sqlite:{tmp_path / 'catalog.db'}"
    else:
        url = request.getfixturevalue("pg_cluster").new_database(prefix="btstore_s3_")
    return S3Btstore(backend, url, server, prefix, tmp_path)


@pytest.fixture(params=["sqlite", "postgresql"])
def s3_catalog(request, tmp_path):
    """A fresh catalog on each backend with its own artifact root on the private S3 server."""
    return make_s3_btstore(request.param, request, tmp_path)


@pytest.fixture
def s3_sqlite_catalog(request, tmp_path):
    """A fresh SQLite catalog with its own artifact root on the private S3 server."""
    return make_s3_btstore("sqlite", request, tmp_path)


@pytest.fixture
def s3_pg_catalog(request, tmp_path):
    """A fresh PostgreSQL catalog with its own artifact root on the private S3 server."""
    return make_s3_btstore("postgresql", request, tmp_path)


@pytest.fixture
def cli():
    """The executable without a catalog (for --help and --version)."""
    return btstore_bin()

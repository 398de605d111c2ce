"""Fixtures of the command line's end-to-end tests.

`pg_cluster` starts a private PostgreSQL cluster once per session (initdb + pg_ctl in a temporary
directory, as the `postgres` user when run as root, on a free 127.0.0.1 port) and stops it at the
end. `catalog` is parametrised over both backends and gives each test a fresh catalog and
artifact root plus a helper that runs the real executable.
"""

import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

PG_BINDIR = Path(os.environ.get("BTSTORE_PG_BINDIR", "/usr/lib/postgresql/15/bin"))
RUNUSER = "/usr/sbin/runuser"
IN_CI = os.environ.get("CI") == "true"


def btstore_bin():
    path = os.environ.get("BTSTORE_BIN")
    if not path:
        pytest.fail("BTSTORE_BIN is not set (run the tests through ctest)")
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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

    def run(self, *args, expect=0, json_out=True, timeout=180):
        proc = subprocess.run(self.argv(*args, json_out=json_out), capture_output=True, text=True,
                              timeout=timeout)
        result = Result([str(a) for a in args], proc)
        if expect is not None:
            assert result.returncode == expect, result
        return result

    def ok(self, *args, **kwargs):
        """Run with --json, expect success, return the parsed document."""
        return self.run(*args, **kwargs).json()

    def spawn(self, *args, json_out=True):
        return subprocess.Popen(self.argv(*args, json_out=json_out), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)


class PgCluster:
    def __init__(self):
        self.as_root = os.geteuid() == 0
        self.dir = Path(tempfile.mkdtemp(prefix="btstore-cli-pg-"))
        if self.as_root:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = None
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                 "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions")
        last_error = None
        for _ in range(4):  # a free port can be taken before the server binds it
            self.port = free_port()
            options = (f"-c port={self.port} -c listen_addresses=127.0.0.1 "
                       f"-c unix_socket_directories={self.dir} -c fsync=off "
                       f"-c max_connections=200")
            try:
                self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
                         "-w", "-t", "60", "start")
                return
            except RuntimeError as e:
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
            raise RuntimeError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
                               f"\n{log[-4000:]}")

    def url(self, database="postgres"):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self):
        import psycopg

        name = "btstore_cli_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self):
        try:
            self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def pg_missing_reason():
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


@pytest.fixture(scope="session")
def pg_cluster():
    reason = pg_missing_reason()
    if reason:
        if IN_CI:
            pytest.fail(reason + " (CI=true: PostgreSQL tests may not skip)")
        pytest.skip(reason)
    cluster = PgCluster()
    yield cluster
    cluster.stop()


def make_btstore(backend, request, tmp_path):
    root = tmp_path / "results"
    if backend == "sqlite":
        return Btstore(backend, f"sqlite:{tmp_path / 'catalog.db'}", root)
    cluster = request.getfixturevalue("pg_cluster")
    return Btstore(backend, cluster.new_database(), root)


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog(request, tmp_path):
    """A fresh catalog on each backend, with its own artifact root."""
    return make_btstore(request.param, request, tmp_path)


@pytest.fixture
def pg_catalog(request, tmp_path):
    """A fresh PostgreSQL catalog."""
    return make_btstore("postgresql", request, tmp_path)


@pytest.fixture
def cli():
    """The executable without a catalog (for --help and --version)."""
    return btstore_bin()

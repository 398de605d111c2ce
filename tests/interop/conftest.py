"""Fixtures of the interoperability tests: the btstore executable and a way to run it."""

import json
import os
import subprocess
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def btstore_bin() -> str:
    path = os.environ.get("BTSTORE_BIN")
    if not path or not Path(path).is_file():
        pytest.fail("BTSTORE_BIN must name the built btstore executable (ctest sets it)")
    return path


@pytest.fixture()
def run(btstore_bin, tmp_path):
    """Run `btstore --json ARGS...`; return (exit status, parsed stdout)."""

    def _run(*args):
        proc = subprocess.run(
            [btstore_bin, "--json", *map(str, args)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
        )
        try:
            doc = json.loads(proc.stdout) if proc.stdout.strip() else None
        except json.JSONDecodeError as e:
            raise AssertionError(f"stdout is not one JSON document: {proc.stdout!r}") from e
        return proc.returncode, doc

    return _run

"""Fixtures of the interoperability tests: the btstore executable and a way to run it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from btstore_testing import btstore_bin as find_btstore  # noqa: E402


@pytest.fixture(scope="session")
def btstore_bin() -> str:
    path = find_btstore()
    if not path:
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

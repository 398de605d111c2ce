"""The Python package over an artifact root on S3: a private moto server on loopback
(tests/support/btstore_testing.py). The work runs in a child interpreter so that its exit, which
must end Arrow's S3 client cleanly (the package finalises it at interpreter exit), is checked too.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from btstore_testing import private_s3_server  # noqa: E402

CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    import polars as pl
    import btstore
    from conftest import make_result

    store = btstore.Store(catalog=sys.argv[2], artifact_root=sys.argv[3])
    source = make_result(seed=5)
    imported = store.import_result(source, alpha_name="alpha", start_date="2024-01-01",
                                   end_date="2024-03-01", created_by="ann", job_id="s3-py-1")
    assert imported.created and imported.result_path.startswith(sys.argv[3] + "/s3-py-1/")
    result = store.get_result("s3-py-1")
    for name in ("daily_signals", "daily_weights", "daily_ic"):
        assert getattr(result, name).equals(source[name], null_equal=True), name
    month = store.get_result("s3-py-1", start="2024-02-01", end="2024-02-29")
    assert month.daily_signals["date"].min().month == 2
    # The panel on S3 reads through the store's own reads (no lean local reader there).
    for panel in (store.ic_panel(alpha_name="alpha"), store.ic_panel(["s3-py-1"])):
        assert panel.columns == ["job_id", "date", "ic", "rank_ic"]
        assert panel.drop("job_id").equals(source["daily_ic"], null_equal=True)
        assert set(panel["job_id"]) == {"s3-py-1"}
    print(imported.result_path)
""")


@pytest.fixture(scope="module")
def s3():
    yield from private_s3_server(bucket="btstore-py")


def test_a_store_on_s3_round_trips_and_its_process_exits_cleanly(s3, tmp_path):
    root = f"s3://{s3.bucket}/python"
    env = dict(os.environ, **s3.env())
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(Path(__file__).resolve().parent),
         f"sqlite:{tmp_path / 'catalog.db'}", root],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "FinalizeS3 was not called" not in proc.stderr
    result_path = proc.stdout.strip().splitlines()[-1]
    # What the store wrote is read by polars straight from the bucket.
    import polars as pl
    signals = pl.read_parquet(f"{result_path}/daily_signals.parquet",
                              storage_options=s3.storage_options())
    assert signals.height > 0 and signals.columns == ["date", "permno", "signal"]

"""Every exception class: its place in the hierarchy, its built-in base, and the library error
that raises it (with .code and .details)."""

import os
import pickle
from pathlib import Path

import pytest

import btstore
from conftest import make_result

BASES = {
    "InvalidArgument": ValueError,
    "JobNotFound": LookupError,
    "ResultPathMissing": ValueError,
    "InvalidTransition": None,
    "MissingReproducibilityMetadata": ValueError,
    "InvalidResult": ValueError,
    "CatalogUnavailable": ConnectionError,
    "Unauthenticated": None,
    "PermissionDenied": None,
    "Internal": None,
}


@pytest.mark.parametrize("name", sorted(BASES))
def test_each_contract_name_is_an_error_with_its_builtin_base(name):
    cls = getattr(btstore, name)
    assert issubclass(cls, btstore.Error)
    if BASES[name] is not None:
        assert issubclass(cls, BASES[name])
    error = cls("message", name, {"job_id": "j"})
    assert (error.code, error.details, str(error)) == (name, {"job_id": "j"}, "message")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls and copy.details == {"job_id": "j"}
    assert issubclass(btstore.MissingReproducibilityMetadata, btstore.InvalidResult)
    assert not issubclass(btstore.Stopped, btstore.Error)


def completed(store):
    return store.import_result(make_result(), alpha_name="a", start_date="2024-01-01",
                               end_date="2024-03-01").job_id


def test_the_library_raises_each_name(store, tmp_path):
    with pytest.raises(btstore.JobNotFound) as caught:
        store.get_result("no-such-job")
    assert caught.value.code == "JobNotFound" and caught.value.details["job_id"] == "no-such-job"

    with pytest.raises(btstore.InvalidArgument) as caught:
        store.submit("a", "2024-13-01", "2024-12-31")
    assert caught.value.code == "InvalidArgument"

    pending = store.submit("a", "2024-01-01", "2024-02-01").job_id
    with pytest.raises(btstore.ResultPathMissing) as caught:
        store.get_result(pending)
    assert caught.value.details["job_id"] == pending

    job_id = completed(store)
    with pytest.raises(btstore.InvalidTransition) as caught:
        store.resume(job_id)
    assert caught.value.code == "InvalidTransition"

    bundle = Path(store.get_job(job_id)["result_path"])
    parquet = bundle / "daily_ic.parquet"
    data = parquet.read_bytes()
    parquet.write_bytes(data[: len(data) // 2])
    with pytest.raises(btstore.InvalidResult) as caught:
        store.get_result(job_id)
    assert "daily_ic" in caught.value.details.get("file", str(caught.value))
    parquet.write_bytes(data)

    os.remove(bundle / "summary.json")
    with pytest.raises(btstore.MissingReproducibilityMetadata) as caught:
        store.get_result(job_id)
    assert caught.value.code == "MissingReproducibilityMetadata"


def test_unreachable_catalog_and_unusable_root():
    with pytest.raises(btstore.CatalogUnavailable) as caught:
        btstore.Store("postgresql://btstore@127.0.0.1:1/none?connect_timeout=2", "unused-root")
    assert isinstance(caught.value, ConnectionError)


def test_an_unusable_root_is_internal(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(btstore.Internal) as caught:
        btstore.Store(f"sqlite:{tmp_path / 'c.db'}", blocker / "results")
    assert caught.value.code == "Internal"

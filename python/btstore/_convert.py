"""Conversions between the user's values (polars / pyarrow tables, dates, dicts) and the plain
values the native module takes and returns (Arrow stream capsules, ISO strings, JSON text)."""

from __future__ import annotations

import datetime as _dt
import json
import math
from typing import Any, Mapping

import pyarrow as pa

from ._errors import InvalidArgument

METRIC_NAMES = ("mean_ic", "icir", "hit_rate", "coverage", "long_short_spread",
                "average_turnover", "decay_half_life")
JSON_ARTIFACTS = ("walk_forward", "param_search")


def iso_date(value: Any, field: str) -> str | None:
    """Return a date (datetime.date, or an ISO string) as "YYYY-MM-DD"."""
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        return value.date().isoformat()
    if isinstance(value, _dt.date):
        return value.isoformat()
    if isinstance(value, str):
        return value
    raise InvalidArgument(f"{field} must be a date or an ISO date string", "InvalidArgument",
                          {"field": field})


def iso_time(value: Any, field: str) -> str | None:
    """Return a date or a datetime (naive: UTC) as the text the list request parses."""
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return value.isoformat()
    return iso_date(value, field)


def capsule_to_arrow(capsule) -> pa.Table:
    """Take over an Arrow stream capsule from the native module (no copy)."""
    return pa.RecordBatchReader._import_from_c_capsule(capsule).read_all()


def to_arrow_table(value: Any, name: str) -> pa.Table:
    """Return a polars DataFrame, a pyarrow Table/RecordBatch or any object with
    `__arrow_c_stream__` as a pyarrow Table (no copy where the producer allows it). polars'
    large strings and string views become Arrow's utf8, which the contract's tables use."""
    if isinstance(value, pa.RecordBatch):
        value = pa.Table.from_batches([value])
    if not isinstance(value, pa.Table):
        to_arrow = getattr(value, "to_arrow", None)
        if callable(to_arrow):
            value = to_arrow()
        elif hasattr(value, "__arrow_c_stream__"):
            value = pa.RecordBatchReader.from_stream(value).read_all()
        else:
            raise InvalidArgument(
                f"table {name!r} must be a polars DataFrame or a pyarrow Table, not "
                f"{type(value).__name__}", "InvalidArgument", {"field": name})
    fields = []
    changed = False
    for field in value.schema:
        if pa.types.is_large_string(field.type) or pa.types.is_string_view(field.type):
            fields.append(field.with_type(pa.string()))
            changed = True
        else:
            fields.append(field)
    if changed:
        value = value.cast(pa.schema(fields, metadata=value.schema.metadata))
    return value


def _get(source: Any, key: str, default: Any = None) -> Any:
    if isinstance(source, Mapping):
        return source.get(key, default)
    return getattr(source, key, default)


def result_dict(source: Any, *, tables: Mapping[str, Any] | None = None) -> dict:
    """Return the result dict the native module reads, from a dict or an object with `tables`
    (or the table names as keys/attributes), `metrics` (or metric names as keys/attributes),
    `snapshot_id`, `dataset_version_ids`, optional `walk_forward` / `param_search` (dicts or JSON
    text) and `extra_summary` (a dict of summary.json keys to keep)."""
    found: dict[str, Any] = dict(tables or _get(source, "tables", None) or {})
    for name in ("daily_signals", "daily_weights", "daily_ic", "daily_portfolio_returns",
                 "daily_returns", "daily_prices", "net_portfolio_returns"):
        value = _get(source, name)
        if value is not None and name not in found:
            found[name] = value
    metrics = dict(_get(source, "metrics", None) or {})
    for name in METRIC_NAMES:
        value = _get(source, name)
        if value is not None and name not in metrics:
            metrics[name] = value
    out: dict[str, Any] = {
        "tables": {name: to_arrow_table(t, name).__arrow_c_stream__() for name, t in found.items()},
        "metrics": {name: (None if value is None else float(value))
                    for name, value in metrics.items()},
        "snapshot_id": _get(source, "snapshot_id"),
        "dataset_version_ids": _get(source, "dataset_version_ids"),
    }
    artifacts = {}
    for name in JSON_ARTIFACTS:
        value = _get(source, name)
        if value is not None:
            artifacts[name] = value if isinstance(value, str) else json.dumps(value)
    out["json_artifacts"] = artifacts
    extra = _get(source, "extra_summary")
    if extra is not None:
        out["extra_summary"] = extra if isinstance(extra, str) else json.dumps(extra)
    return out


def nan_if_none(value: Any) -> float:
    return math.nan if value is None else value


def run_engine(fn, job_json: str, ctx) -> dict:
    """Call a Python engine for one attempt (on a worker thread, with the GIL) and return its
    result as the native module reads it."""
    from . import EngineContext, Job  # noqa: PLC0415 - the package imports this module

    job = Job(json.loads(job_json))
    out = fn(job, EngineContext(ctx))
    if out is None:
        raise InvalidArgument("the engine returned None instead of a result", "InvalidArgument",
                              {"engine": job.get("engine", "")})
    return result_dict(out)

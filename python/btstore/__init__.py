"""btstore: the storage of alpha backtest results, from Python.

    import btstore
    store = btstore.Store()                      # $BTSTORE_CATALOG / $BTSTORE_ARTIFACT_ROOT
    result = store.get_result("bt-...")          # polars tables, metrics, reproducibility ids
    jobs = store.list_jobs(alpha_name="momentum", status="completed")

A `Store` opens the catalog (embedded SQLite by default, or PostgreSQL) and the artifact root
with the command line's defaults. Tables cross from the C++ library without a copy (the Arrow C
stream interface). `Worker` runs Python functions as engines under the library's job lifecycle.
Errors are subclasses of `btstore.Error` named as in the storage contract.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import json
import math
import os
import threading
from typing import Any, Callable, Iterable, Mapping, NamedTuple

import pyarrow as pa  # loads libarrow once, before the native module that links it

import polars as pl

from . import _btstore

# Arrow's S3 client must be released before the process ends, and a C exit handler is too late
# for it; Python's exit handlers run while the interpreter (and the client) are still whole.
atexit.register(_btstore.finalize_object_stores)
from ._convert import (METRIC_NAMES, capsule_to_arrow, iso_date, iso_time, result_dict)
from ._errors import (CatalogUnavailable, Error, Internal, InvalidArgument, InvalidResult,
                      InvalidTransition, JobNotFound, MissingReproducibilityMetadata,
                      PermissionDenied, ResultPathMissing, Stopped, Unauthenticated)

__version__ = "0.1.0"

__all__ = ["Store", "BacktestResult", "Worker", "Job", "EngineContext", "Submitted", "JobsPage",
           "Error", "InvalidArgument", "JobNotFound", "ResultPathMissing", "InvalidTransition",
           "InvalidResult", "MissingReproducibilityMetadata", "CatalogUnavailable",
           "Unauthenticated", "PermissionDenied", "Internal", "Stopped"]

DEFAULT_CATALOG = _btstore.default_catalog
DEFAULT_ARTIFACT_ROOT = _btstore.default_artifact_root


def _polars(table: pa.Table) -> pl.DataFrame:
    # rechunk=False keeps Arrow's buffers: the frame shares them instead of copying.
    return pl.from_arrow(table, rechunk=False)


def _default_user() -> str:
    return os.environ.get("USER") or "unknown"


class Submitted(NamedTuple):
    """What submit and import_result return."""

    job_id: str
    created: bool  #: False when the job existed already (idempotent submission)
    status: str
    result_path: str | None = None  #: import_result only: where the bundle is


class JobsPage(NamedTuple):
    """A page of jobs and the cursor of the next one (None on the last page)."""

    jobs: list[dict]
    next: str | None


class BacktestResult:
    """A completed job's result, whole or in part.

    Tables are polars DataFrames (`daily_signals`, `daily_weights`, `daily_ic`, the optional
    `daily_portfolio_returns`, `daily_returns`, `daily_prices`, `net_portfolio_returns`, and any
    other table under `tables`); a table that was not read is None. `to_arrow()` gives them as
    pyarrow Tables. Metrics are floats (NaN when not available), also in `metrics`. The JSON
    artifacts `walk_forward` and `param_search` are dicts when present; `cost_config` and
    `cost_summary` are the summary's cost blocks; `unavailable` names the files that a whole read
    found corrupt and left out.
    """

    def __init__(self, native: dict):
        self.job_id: str = native["job_id"]
        self.alpha_name: str = native["alpha_name"]
        self.start_date = _dt.date.fromisoformat(native["start_date"]) if native["start_date"] else None
        self.end_date = _dt.date.fromisoformat(native["end_date"]) if native["end_date"] else None
        self.weight_method: str = native["weight_method"]
        self.config_hash: str = native["config_hash"]
        self.metrics: dict[str, float] = dict(native["metrics"])
        self.snapshot_id: str = native["snapshot_id"]
        self.dataset_version_ids: dict[str, str] = dict(native["dataset_version_ids"])
        self._arrow = {name: capsule_to_arrow(c) for name, c in native["tables"].items()}
        self._frames: dict[str, pl.DataFrame] = {}
        self.walk_forward = self._artifact(native, "walk_forward")
        self.param_search = self._artifact(native, "param_search")
        self.unavailable: dict[str, str] = dict(native["unavailable"])
        self.extra_summary: dict = json.loads(native["extra_summary"] or "{}")
        self.cost_config = self.extra_summary.get("cost_config")
        self.cost_summary = self.extra_summary.get("cost_summary")

    @staticmethod
    def _artifact(native: dict, name: str):
        text = native["json_artifacts"].get(name)
        return None if text is None else json.loads(text)

    def __getattr__(self, name: str):
        if name in METRIC_NAMES:
            return self.metrics[name]
        raise AttributeError(name)

    def table(self, name: str) -> pl.DataFrame | None:
        """Return the table `name` as a polars DataFrame (None when it was not read)."""
        if name not in self._frames:
            arrow = self._arrow.get(name)
            if arrow is None:
                return None
            self._frames[name] = _polars(arrow)
        return self._frames[name]

    @property
    def tables(self) -> dict[str, pl.DataFrame]:
        """Every table read, by name, as polars DataFrames."""
        return {name: self.table(name) for name in self._arrow}

    @property
    def daily_signals(self) -> pl.DataFrame | None:
        return self.table("daily_signals")

    @property
    def daily_weights(self) -> pl.DataFrame | None:
        return self.table("daily_weights")

    @property
    def daily_ic(self) -> pl.DataFrame | None:
        return self.table("daily_ic")

    @property
    def daily_portfolio_returns(self) -> pl.DataFrame | None:
        return self.table("daily_portfolio_returns")

    @property
    def net_portfolio_returns(self) -> pl.DataFrame | None:
        return self.table("net_portfolio_returns")

    @property
    def daily_returns(self) -> pl.DataFrame | None:
        return self.table("daily_returns")

    @property
    def daily_prices(self) -> pl.DataFrame | None:
        return self.table("daily_prices")

    def to_arrow(self, name: str | None = None):
        """Return the table `name` as a pyarrow Table (None when not read), or without a name a
        dict of every table read."""
        if name is None:
            return dict(self._arrow)
        return self._arrow.get(name)

    def __repr__(self) -> str:
        rows = ", ".join(f"{n}={t.num_rows}" for n, t in self._arrow.items())
        return (f"BacktestResult(job_id={self.job_id!r}, snapshot_id={self.snapshot_id!r}, "
                f"mean_ic={self.metrics['mean_ic']!r}, {rows})")


def _list_fields(created_by=None, alpha_name=None, status=None, created_from=None,
                 created_to=None, start=None, end=None, limit=None, offset=None, after=None,
                 engine=None, min_mean_ic=None, min_icir=None, min_hit_rate=None) -> dict:
    if status is not None and not isinstance(status, str):
        status = ",".join(status)
    if engine is not None and not isinstance(engine, str):
        engine = ",".join(engine)
    raw = {"user": created_by, "alpha": alpha_name, "status": status,
           "created_from": iso_time(created_from, "created_from"),
           "created_to": iso_time(created_to, "created_to"),
           "from": iso_date(start, "start"), "to": iso_date(end, "end"),
           "limit": limit, "offset": offset or None, "after": after, "engine": engine,
           "min_mean_ic": min_mean_ic, "min_icir": min_icir, "min_hit_rate": min_hit_rate}
    return {k: (v if isinstance(v, str) else repr(v)) for k, v in raw.items() if v is not None}


def _spec(alpha_name, start_date, end_date, weight_method, config, created_by, priority, job_id,
          job_timeout, max_retries, engine) -> dict:
    if config is not None and not isinstance(config, str):
        config = json.dumps(config)
    return {"alpha_name": alpha_name, "start_date": iso_date(start_date, "start_date"),
            "end_date": iso_date(end_date, "end_date"), "weight_method": weight_method,
            "config": config, "created_by": created_by or _default_user(), "priority": priority,
            "job_id": job_id, "job_timeout": job_timeout, "max_retries": max_retries,
            "engine": engine}


class Store:
    """The catalog and the artifact root, opened together.

    `catalog`: "sqlite:PATH" or a PostgreSQL connection string; default $BTSTORE_CATALOG, else
    the embedded "sqlite:btstore-data/catalog.db". `artifact_root`: default
    $BTSTORE_ARTIFACT_ROOT, else "btstore-data/results". The schema is migrated when opened.
    Safe to share between threads; long calls release the GIL.

    Raises InvalidArgument (a bad URL or root), CatalogUnavailable (the catalog cannot be
    reached), Internal (the root cannot be created).
    """

    def __init__(self, catalog: str | None = None, artifact_root: str | os.PathLike | None = None):
        self.catalog = _btstore.resolve_catalog_url(catalog or "")
        self.artifact_root = _btstore.resolve_artifact_root(os.fspath(artifact_root or ""))
        self._native = _btstore.Store(self.catalog, self.artifact_root)

    def __repr__(self) -> str:
        return f"Store(artifact_root={self.artifact_root!r})"

    # --- reading -------------------------------------------------------------------------------

    def get_result(self, job_id: str, start=None, end=None, columns: Iterable[str] | None = None,
                   tables: Iterable[str] | None = None) -> BacktestResult:
        """Load a completed job's result, whole or in part.

        `start`/`end` (dates, inclusive) keep only those days, skipping row groups by their
        statistics; `columns` loads only those columns of each table (besides `date`); `tables`
        loads only those tables or JSON artifacts by name (default: the three required tables,
        every optional table and artifact).

        Raises JobNotFound; ResultPathMissing (not completed, no usable bundle path, missing on
        disk, outside the artifact root); MissingReproducibilityMetadata (summary.json missing,
        unreadable, or without snapshot_id / dataset_version_ids); InvalidResult (a file missing,
        corrupt, of the wrong schema, or differing from the manifest; details name the file);
        InvalidArgument (bad dates, an unknown table); CatalogUnavailable.
        """
        native = self._native.get_result(job_id, iso_date(start, "start"), iso_date(end, "end"),
                                         list(columns or []), list(tables or []))
        return BacktestResult(native)

    def load_portfolio_returns(self, job_id: str, basis: str = "net", start=None,
                               end=None) -> pl.DataFrame:
        """Return a completed job's portfolio returns on `basis` ("net": after costs, from
        net_portfolio_returns; "gross": daily_portfolio_returns) as a DataFrame (date, return)
        sorted by date, optionally between `start` and `end`. Raises as get_result, and
        InvalidArgument when the bundle has no table for that basis."""
        capsule = self._native.portfolio_returns(job_id, basis, iso_date(start, "start"),
                                                 iso_date(end, "end"))
        return _polars(capsule_to_arrow(capsule))

    def load_universe_signals_lazy(self, job_id: str, signal_name: str | None = None,
                                   date_range=None, limit: int | None = None):
        """Return a completed job's daily_signals as a polars LazyFrame (date, permno, signal),
        scanned lazily from its bundle, or None when the job has not completed (it has no
        result yet, or it failed or was cancelled).

        `signal_name` names the signal column (e.g. the alpha, to join several jobs); `date_range`
        (start, end), either end None for open, keeps those days; `limit` keeps the first rows.
        Raises JobNotFound, ResultPathMissing (completed but no usable bundle), InvalidResult
        (the file is missing), CatalogUnavailable.
        """
        if self.get_job(job_id)["status"] != "completed":
            return None
        path = os.path.join(self._native.result_location(job_id), "daily_signals.parquet")
        if not os.path.isfile(path):
            raise InvalidResult(f"{path} is missing", "InvalidResult",
                                {"job_id": job_id, "file": "daily_signals.parquet"})
        frame = pl.scan_parquet(path)
        if date_range is not None:
            low, high = date_range
            if low is not None:
                frame = frame.filter(pl.col("date") >= _dt.date.fromisoformat(iso_date(low, "date_range")))
            if high is not None:
                frame = frame.filter(pl.col("date") <= _dt.date.fromisoformat(iso_date(high, "date_range")))
        if signal_name:
            frame = frame.rename({"signal": signal_name})
        if limit is not None:
            frame = frame.head(limit)
        return frame

    def list_jobs(self, created_by: str | None = None, alpha_name: str | None = None,
                  status: str | Iterable[str] | None = None, created_from=None, created_to=None,
                  start=None, end=None, limit: int = 100, offset: int = 0,
                  after: str | None = None, **filters) -> list[dict]:
        """Return jobs, newest first, as dicts of their catalog fields (dates and times as ISO
        strings, metrics as numbers or None, JSON columns parsed).

        Filters combine with AND: `created_by`, `alpha_name`, `status` (one or several),
        `created_from`/`created_to` (dates or datetimes; a bare date as the upper bound covers
        that day), `start`/`end` (the backtest range overlaps them), and `engine`,
        `min_mean_ic`, `min_icir`, `min_hit_rate`. Pages: `limit` (1..1000) with `offset`, or
        `after` (a cursor from list_jobs_page, fast at any depth). Raises InvalidArgument,
        CatalogUnavailable.
        """
        return self.list_jobs_page(created_by, alpha_name, status, created_from, created_to,
                                   start, end, limit, offset, after, **filters).jobs

    def list_jobs_page(self, created_by=None, alpha_name=None, status=None, created_from=None,
                       created_to=None, start=None, end=None, limit: int = 100, offset: int = 0,
                       after: str | None = None, **filters) -> JobsPage:
        """As list_jobs, returning the jobs and the cursor of the next page (`next`, None on the
        last page) to pass as `after`."""
        fields = _list_fields(created_by, alpha_name, status, created_from, created_to, start,
                              end, limit, offset, after, **filters)
        jobs, cursor = self._native.list_jobs(fields)
        return JobsPage(jobs, cursor)

    def iter_jobs(self, **filters) -> Iterable[dict]:
        """Yield every job the filters of list_jobs select, page by page."""
        after = None
        while True:
            page = self.list_jobs_page(limit=1000, after=after, **filters)
            yield from page.jobs
            if page.next is None:
                return
            after = page.next

    def get_job(self, job_id: str) -> dict:
        """Return a job's catalog fields. Raises JobNotFound, CatalogUnavailable."""
        return json.loads(self._native.get_job(job_id))

    def show(self, job_id: str) -> dict:
        """Return a job's catalog fields and, when completed, its summary.json as `summary`.
        Raises JobNotFound, CatalogUnavailable."""
        return json.loads(self._native.show(job_id))

    # --- writing and the lifecycle ---------------------------------------------------------------

    def submit(self, alpha_name: str, start_date, end_date, weight_method: str = "equal",
               config: Mapping | str | None = None, created_by: str | None = None,
               priority: str = "normal", job_id: str | None = None, job_timeout: int = 3600,
               max_retries: int = 2, engine: str | None = None) -> Submitted:
        """Submit a job idempotently: the same submission twice gives the same job_id and one
        job (`created` False the second time). `config` (a dict or JSON text) names the engine
        under "engine" (default "synthetic"); `created_by` defaults to $USER. Raises
        InvalidArgument (a bad field, or a config the engine refuses), CatalogUnavailable."""
        spec = _spec(alpha_name, start_date, end_date, weight_method, config, created_by,
                     priority, job_id, job_timeout, max_retries, engine)
        out = json.loads(self._native.submit(spec))
        return Submitted(out["job_id"], out["created"], out["status"])

    def cancel(self, job_id: str) -> dict:
        """Cancel a job: a pending one at once; a running one is asked to stop and ends
        cancelled. Returns the job. Raises JobNotFound, InvalidTransition (already ended),
        CatalogUnavailable."""
        return json.loads(self._native.cancel(job_id))

    def resume(self, job_id: str) -> dict:
        """Run a failed or cancelled job again from its last checkpoint. Returns the job.
        Raises JobNotFound, InvalidTransition, CatalogUnavailable."""
        return json.loads(self._native.resume(job_id))

    def pin(self, job_id: str, pinned: bool = True) -> None:
        """Exempt a job from retention (or lift that with pinned=False). Raises JobNotFound,
        CatalogUnavailable."""
        self._native.pin(job_id, pinned)

    def verify(self, job_ids: Iterable[str] | None = None) -> dict:
        """Check completed jobs' bundles against their manifests (all, or `job_ids`; without
        ids, also report bundles no row knows). Returns {"checked", "ok", "problems": [...]}.
        Raises JobNotFound (an unknown listed id), CatalogUnavailable."""
        return json.loads(self._native.verify(list(job_ids or [])))

    def cleanup_old_results(self, retention_days: int = 90, dry_run: bool = False) -> int:
        """Remove terminal, unpinned jobs that ended more than `retention_days` ago (bundle and
        row); return how many were removed (or, with dry_run, would be). Raises InvalidArgument,
        Internal (files cannot be removed; run again), CatalogUnavailable."""
        return json.loads(self._native.cleanup(retention_days, dry_run))["removed"]

    def import_result(self, source: Any = None, *, alpha_name: str, start_date, end_date,
                      weight_method: str = "equal", created_by: str | None = None,
                      job_id: str | None = None, config: Mapping | str | None = None,
                      tables: Mapping[str, Any] | None = None,
                      metrics: Mapping[str, float | None] | None = None,
                      snapshot_id: str | None = None,
                      dataset_version_ids: Mapping[str, str] | None = None,
                      walk_forward: Mapping | None = None,
                      param_search: Mapping | None = None) -> Submitted:
        """Store a result computed elsewhere as a completed job.

        `source` is a bundle directory (a path), or a result: a dict or an object with the
        tables (polars DataFrames or pyarrow Tables: daily_signals, daily_weights, daily_ic and
        any optional table), metrics, snapshot_id and dataset_version_ids; or give these as the
        keyword arguments. The bundle is validated (exact schemas, sorted rows) and written with
        btstore's writer; the job_id is derived as submit derives it unless given. Idempotent:
        the same import again returns created=False.

        Raises InvalidArgument (a bad field; an in-memory table of the wrong schema, unsorted
        or not a table), MissingReproducibilityMetadata (no snapshot_id / dataset_version_ids),
        InvalidResult (the bundle directory is not valid),
        InvalidTransition (the job_id exists with other content), CatalogUnavailable.
        """
        spec = _spec(alpha_name, start_date, end_date, weight_method, config, created_by,
                     "normal", job_id, None, None, None)
        if isinstance(source, (str, os.PathLike)):
            out = json.loads(self._native.import_directory(os.fspath(source), spec))
        else:
            given = {"tables": tables, "metrics": metrics, "snapshot_id": snapshot_id,
                     "dataset_version_ids": dataset_version_ids, "walk_forward": walk_forward,
                     "param_search": param_search}
            if source is None:
                source = {k: v for k, v in given.items() if v is not None}
            elif any(v is not None for v in given.values()):
                raise InvalidArgument("give a result as `source` or as keyword arguments, not both",
                                      "InvalidArgument", {"field": "source"})
            result = result_dict(source)
            if not result["snapshot_id"] or result["dataset_version_ids"] is None:
                raise MissingReproducibilityMetadata(
                    "a result needs snapshot_id and dataset_version_ids",
                    "MissingReproducibilityMetadata",
                    {"missing": "snapshot_id" if not result["snapshot_id"]
                     else "dataset_version_ids"})
            out = json.loads(self._native.import_tables(spec, result))
        return Submitted(out["job_id"], out["created"], out["status"], out.get("result_path"))

    # --- across jobs ---------------------------------------------------------------------------

    def ic_panel(self, job_ids: Iterable[str] | None = None, threads: int = 0,
                 **list_filters) -> pl.DataFrame:
        """Return the daily IC of many jobs as one DataFrame (job_id, date, ic, rank_ic), read
        from their bundles in parallel by the C++ library (`threads`, default one per core).
        The jobs are `job_ids`, or those that list_jobs' filters select (completed ones unless
        `status` says otherwise). Raises as get_result for any job, InvalidArgument for bad
        filters."""
        fields = _list_fields(**list_filters)
        ids = None if job_ids is None else list(job_ids)
        return _polars(capsule_to_arrow(self._native.ic_panel(ids, fields, threads)))

    def metrics_frame(self, **list_filters) -> pl.DataFrame:
        """Return every job the filters of list_jobs select as one DataFrame: identity, status,
        dates, snapshot_id and the metrics (null when not available)."""
        columns = ["job_id", "status", "alpha_name", "created_by", "weight_method", "start_date",
                   "end_date", "created_at", "completed_at", "snapshot_id", *METRIC_NAMES]
        rows = [{c: job.get(c) for c in columns} for job in self.iter_jobs(**list_filters)]
        schema = {c: pl.Float64 if c in METRIC_NAMES else pl.String for c in columns}
        frame = pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
        return frame.with_columns(pl.col("start_date", "end_date").str.to_date(),
                                  pl.col("created_at", "completed_at").str.to_datetime(time_zone="UTC"))

    def compare(self, job_ids: Iterable[str] | None = None, **list_filters) -> pl.DataFrame:
        """Return the cumulative IC of many jobs side by side: one row per date, one column per
        job_id (null where a job has no such day)."""
        panel = self.ic_panel(job_ids, **list_filters).sort("job_id", "date")
        cumulative = panel.with_columns(pl.col("ic").fill_nan(None).fill_null(0.0)
                                        .cum_sum().over("job_id").alias("cumulative_ic"))
        return cumulative.pivot(on="job_id", index="date", values="cumulative_ic").sort("date")


class Job(dict):
    """The job a Python engine runs: its catalog fields (as get_job returns them) with
    attribute access, `config` (the config dict) and `attempt` (1 for the first run)."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def config(self) -> dict:
        config = self.get("config_json") or {}
        return json.loads(config) if isinstance(config, str) else config


class EngineContext:
    """What a running Python engine can do with its worker. Valid only during its call."""

    def __init__(self, native):
        self._native = native

    def progress(self, pct: float) -> None:
        """Record progress (0..100); sent with the next heartbeat."""
        self._native.progress(int(pct))

    def save_checkpoint(self, data: bytes | str) -> None:
        """Save a checkpoint durably before returning; a later attempt of this job (a resume, a
        retry, a rescue) gets it from load_checkpoint(). Raises Internal when it cannot be
        written."""
        self._native.save_checkpoint(data.encode() if isinstance(data, str) else bytes(data))

    def load_checkpoint(self) -> bytes | None:
        """Return the checkpoint an earlier attempt saved, or None."""
        return self._native.load_checkpoint()

    def stop_requested(self) -> bool:
        """Return True once the engine should stop: a cancel, a lost lease, a shutdown."""
        return self._native.stop_requested()

    def check(self) -> None:
        """Raise Stopped when the engine should stop (call it often, e.g. once a day simulated)."""
        if self._native.stop_requested():
            raise Stopped("the job was asked to stop")

    def sleep(self, seconds: float) -> bool:
        """Wait up to `seconds` without holding the GIL, returning True early once asked to
        stop."""
        return self._native.sleep(seconds)


class Worker:
    """Runs jobs whose config names one of `engines` ({"name": fn}) with those Python functions.

    `fn(job, ctx)` gets a Job and an EngineContext and returns the result: a dict or an object
    with the tables (polars or pyarrow: daily_signals, daily_weights, daily_ic, optional ones),
    metrics, snapshot_id and dataset_version_ids. It should call ctx.check() (or test
    ctx.stop_requested()) often, and may save and load checkpoints. Raising Stopped ends the
    attempt as the worker decides (cancelled, given back); any other exception fails it with its
    text. The C++ worker claims, heartbeats (on its own threads, never needing the GIL),
    fences, validates and publishes the bundle, and rescues jobs of dead workers, as for any
    engine. Only jobs naming these engines are claimed.
    """

    def __init__(self, store: Store, engines: Mapping[str, Callable], concurrency: int = 1,
                 lease_seconds: float = 30, worker_id: str | None = None,
                 poll_interval: float = 0.2):
        from ._convert import run_engine  # noqa: PLC0415

        if not engines:
            raise InvalidArgument("a Worker needs at least one engine", "InvalidArgument",
                                  {"field": "engines"})
        self.store = store
        self._native = _btstore.Worker(store._native, dict(engines), run_engine, Stopped,
                                       concurrency, float(lease_seconds), worker_id or "",
                                       float(poll_interval))

    def run(self, until_idle: bool = False) -> int:
        """Run jobs until stop() (from another thread) or Ctrl-C / SIGTERM (when called on the
        main thread), or with until_idle until no job is left. Running jobs are given back at
        once when stopped (pending, checkpoint kept). Returns how many attempts ended here.
        While the catalog is unreachable the worker backs off and retries. Raises
        InvalidArgument (bad options, a catalog without the schema), Internal (the disk)."""
        main = threading.current_thread() is threading.main_thread()
        return self._native.run(until_idle, main)

    def stop(self) -> None:
        """Ask run() to return; thread-safe. A stop before run() ends that run at once."""
        self._native.stop()

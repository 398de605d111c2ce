# Type hints of the btstore package (see the docstrings in __init__.py).
import datetime as _dt
import os
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple

import polars as pl
import pyarrow as pa

from ._errors import CatalogUnavailable as CatalogUnavailable
from ._errors import Error as Error
from ._errors import Internal as Internal
from ._errors import InvalidArgument as InvalidArgument
from ._errors import InvalidResult as InvalidResult
from ._errors import InvalidTransition as InvalidTransition
from ._errors import JobNotFound as JobNotFound
from ._errors import MissingReproducibilityMetadata as MissingReproducibilityMetadata
from ._errors import PermissionDenied as PermissionDenied
from ._errors import ResultPathMissing as ResultPathMissing
from ._errors import Stopped as Stopped
from ._errors import Unauthenticated as Unauthenticated

__version__: str
DEFAULT_CATALOG: str
DEFAULT_ARTIFACT_ROOT: str

_Date = _dt.date | str
_Time = _dt.datetime | _dt.date | str
_Table = pl.DataFrame | pa.Table | Any

class Submitted(NamedTuple):
    job_id: str
    created: bool
    status: str
    result_path: str | None = ...

class JobsPage(NamedTuple):
    jobs: list[dict[str, Any]]
    next: str | None

class BacktestResult:
    job_id: str
    alpha_name: str
    start_date: _dt.date | None
    end_date: _dt.date | None
    weight_method: str
    config_hash: str
    metrics: dict[str, float]
    mean_ic: float
    icir: float
    hit_rate: float
    coverage: float
    long_short_spread: float
    average_turnover: float
    decay_half_life: float
    snapshot_id: str
    dataset_version_ids: dict[str, str]
    walk_forward: dict[str, Any] | None
    param_search: dict[str, Any] | None
    cost_config: dict[str, Any] | None
    cost_summary: dict[str, Any] | None
    unavailable: dict[str, str]
    extra_summary: dict[str, Any]
    def table(self, name: str) -> pl.DataFrame | None: ...
    @property
    def tables(self) -> dict[str, pl.DataFrame]: ...
    @property
    def daily_signals(self) -> pl.DataFrame | None: ...
    @property
    def daily_weights(self) -> pl.DataFrame | None: ...
    @property
    def daily_ic(self) -> pl.DataFrame | None: ...
    @property
    def daily_portfolio_returns(self) -> pl.DataFrame | None: ...
    @property
    def net_portfolio_returns(self) -> pl.DataFrame | None: ...
    @property
    def daily_returns(self) -> pl.DataFrame | None: ...
    @property
    def daily_prices(self) -> pl.DataFrame | None: ...
    def to_arrow(self, name: str | None = ...) -> Any: ...

class Store:
    catalog: str
    artifact_root: str
    def __init__(self, catalog: str | None = ...,
                 artifact_root: str | os.PathLike[str] | None = ...) -> None: ...
    def get_result(self, job_id: str, start: _Date | None = ..., end: _Date | None = ...,
                   columns: Iterable[str] | None = ...,
                   tables: Iterable[str] | None = ...) -> BacktestResult: ...
    def load_portfolio_returns(self, job_id: str, basis: str = ..., start: _Date | None = ...,
                               end: _Date | None = ...) -> pl.DataFrame: ...
    def load_universe_signals_lazy(
        self, job_id: str, signal_name: str | None = ...,
        date_range: tuple[_Date | None, _Date | None] | None = ...,
        limit: int | None = ...) -> pl.LazyFrame | None: ...
    def list_jobs(self, created_by: str | None = ..., alpha_name: str | None = ...,
                  status: str | Iterable[str] | None = ..., created_from: _Time | None = ...,
                  created_to: _Time | None = ..., start: _Date | None = ...,
                  end: _Date | None = ..., limit: int = ..., offset: int = ...,
                  after: str | None = ..., **filters: Any) -> list[dict[str, Any]]: ...
    def list_jobs_page(self, created_by: str | None = ..., alpha_name: str | None = ...,
                       status: str | Iterable[str] | None = ...,
                       created_from: _Time | None = ..., created_to: _Time | None = ...,
                       start: _Date | None = ..., end: _Date | None = ..., limit: int = ...,
                       offset: int = ..., after: str | None = ...,
                       **filters: Any) -> JobsPage: ...
    def iter_jobs(self, **filters: Any) -> Iterator[dict[str, Any]]: ...
    def get_job(self, job_id: str) -> dict[str, Any]: ...
    def show(self, job_id: str) -> dict[str, Any]: ...
    def submit(self, alpha_name: str, start_date: _Date, end_date: _Date,
               weight_method: str = ..., config: Mapping[str, Any] | str | None = ...,
               created_by: str | None = ..., priority: str = ..., job_id: str | None = ...,
               job_timeout: int = ..., max_retries: int = ...,
               engine: str | None = ...) -> Submitted: ...
    def cancel(self, job_id: str) -> dict[str, Any]: ...
    def resume(self, job_id: str) -> dict[str, Any]: ...
    def pin(self, job_id: str, pinned: bool = ...) -> None: ...
    def verify(self, job_ids: Iterable[str] | None = ...) -> dict[str, Any]: ...
    def cleanup_old_results(self, retention_days: int = ..., dry_run: bool = ...) -> int: ...
    def import_result(self, source: str | os.PathLike[str] | Mapping[str, Any] | Any = ..., *,
                      alpha_name: str, start_date: _Date, end_date: _Date,
                      weight_method: str = ..., created_by: str | None = ...,
                      job_id: str | None = ..., config: Mapping[str, Any] | str | None = ...,
                      tables: Mapping[str, _Table] | None = ...,
                      metrics: Mapping[str, float | None] | None = ...,
                      snapshot_id: str | None = ...,
                      dataset_version_ids: Mapping[str, str] | None = ...,
                      walk_forward: Mapping[str, Any] | None = ...,
                      param_search: Mapping[str, Any] | None = ...) -> Submitted: ...
    def ic_panel(self, job_ids: Iterable[str] | None = ..., threads: int = ...,
                 **list_filters: Any) -> pl.DataFrame: ...
    def metrics_frame(self, **list_filters: Any) -> pl.DataFrame: ...
    def compare(self, job_ids: Iterable[str] | None = ..., **list_filters: Any) -> pl.DataFrame: ...

class Job(dict[str, Any]):
    job_id: str
    alpha_name: str
    start_date: str
    end_date: str
    weight_method: str
    attempt: int
    @property
    def config(self) -> dict[str, Any]: ...

class EngineContext:
    def progress(self, pct: float) -> None: ...
    def save_checkpoint(self, data: bytes | str) -> None: ...
    def load_checkpoint(self) -> bytes | None: ...
    def stop_requested(self) -> bool: ...
    def check(self) -> None: ...
    def sleep(self, seconds: float) -> bool: ...

class Worker:
    store: Store
    def __init__(self, store: Store,
                 engines: Mapping[str, Callable[[Job, EngineContext], Any]],
                 concurrency: int = ..., lease_seconds: float = ..., worker_id: str | None = ...,
                 poll_interval: float = ...) -> None: ...
    def run(self, until_idle: bool = ...) -> int: ...
    def stop(self) -> None: ...

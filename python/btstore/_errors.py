"""The exceptions of btstore: one class per error name of the contract, all subclasses of
`Error`, and of the built-in exceptions the platform's callers catch."""

from __future__ import annotations


class Error(Exception):
    """Base of every error btstore raises on purpose.

    `code` is the contract's name of the error (e.g. "JobNotFound"), `details` a dict of
    structured facts (job_id, path, field, ...).
    """

    def __init__(self, message: str = "", code: str | None = None,
                 details: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or type(self).__name__
        self.details = dict(details or {})

    def __reduce__(self):
        return (type(self), (self.message, self.code, self.details))


class InvalidArgument(Error, ValueError):
    """A bad argument: date, id, filter, cursor, configuration or table."""


class JobNotFound(Error, LookupError):
    """No job with that id."""


class ResultPathMissing(Error, ValueError):
    """The job has no usable bundle: not completed, a null path, missing on disk, or outside the
    artifact root."""


class InvalidTransition(Error):
    """The job's status does not allow the request (e.g. resume a completed job)."""


class InvalidResult(Error, ValueError):
    """A bundle is invalid: a Parquet file missing, corrupt or of the wrong schema; a checksum
    mismatch. `details` names the file (and the column)."""


class MissingReproducibilityMetadata(InvalidResult):
    """summary.json is missing, unreadable, or lacks snapshot_id / dataset_version_ids."""


class CatalogUnavailable(Error, ConnectionError):
    """The catalog database (or the store holding the bundles) cannot be reached."""


class Unauthenticated(Error):
    """No credentials, or bad ones (the HTTP server's)."""


class PermissionDenied(Error):
    """The credentials do not allow the request (the HTTP server's)."""


class Internal(Error):
    """Anything else: a bug, or an environment failure no other name covers (a full disk)."""


class Stopped(Exception):
    """Raised inside a Python engine (by `ctx.check()`) when its worker asked it to stop: a
    cancel, a lost lease, a shutdown. Let it propagate; the worker ends the attempt."""


__all__ = ["Error", "InvalidArgument", "JobNotFound", "ResultPathMissing", "InvalidTransition",
           "InvalidResult", "MissingReproducibilityMetadata", "CatalogUnavailable",
           "Unauthenticated", "PermissionDenied", "Internal", "Stopped"]

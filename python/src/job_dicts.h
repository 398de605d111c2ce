#pragma once
// A page of the catalog as the list of dicts `Store.list_jobs` returns, built with CPython's API
// directly: a listing is the one call where turning C++ values into Python objects costs more
// than the query.

#include <nanobind/nanobind.h>

#include <vector>

#include "btstore/model.h"

namespace btstore::python {

/// Return `jobs` as a new list of new dicts, one per job, shaped as wire::JobJson shapes a job:
/// the catalog's fields in its columns' order, dates "YYYY-MM-DD", times RFC 3339 UTC or None,
/// metrics as float or None when not finite, the JSON columns parsed as wire::JsonColumn parses
/// them. Rows share only immutable values (an equal str or number down the page); no dict or
/// list is shared between rows or with another call. Call with the GIL held; throws
/// nanobind::python_error when Python cannot allocate.
nanobind::list JobDicts(const std::vector<JobRecord>& jobs);

}  // namespace btstore::python

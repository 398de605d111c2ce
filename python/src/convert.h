#pragma once
// Conversions between the Python package's plain values (dicts of str, float and Arrow stream
// capsules, shaped by btstore/_convert.py) and the library's types.

#include <nanobind/nanobind.h>

#include "btstore/bundle.h"
#include "btstore/errors.h"
#include "btstore/lifecycle.h"
#include "btstore/model.h"

namespace btstore::python {

/// Fill `result` (which carries the identity already) from a result dict: "tables" (name ->
/// Arrow stream capsule), "metrics" (name -> float or None), "snapshot_id",
/// "dataset_version_ids" (str -> str), "json_artifacts" (name -> JSON text) and "extra_summary"
/// (JSON object text). Throws InvalidArgument naming the field that is missing or malformed.
/// Call with the GIL held.
void FillResult(nanobind::handle dict, BacktestResult& result);

/// Return a result as a dict of the same shape (tables as capsules, plus the identity,
/// "unavailable" and "extra_summary"). Call with the GIL held.
nanobind::dict ResultToDict(const BacktestResult& result);

/// Return a job spec from a dict: "job_id", "alpha_name", "start_date", "end_date" (ISO),
/// "weight_method", "config" (JSON text), "created_by", "priority", "job_timeout",
/// "max_retries", "engine"; absent or None keeps the spec's default. Throws InvalidArgument.
JobSpec SpecFromDict(nanobind::handle dict);

/// Raise the Python exception of `error` (btstore._errors, by the contract's name) with its
/// message, code and details. Call with the GIL held.
void SetPythonError(const Error& error);

}  // namespace btstore::python

#include "job_dicts.h"

#include <array>
#include <cmath>
#include <cstring>
#include <string_view>
#include <utility>

#include "json_to_python.h"

namespace nb = nanobind;

namespace btstore::python {
namespace {

// The keys of a job dict in their order; the metrics (Metrics::kNames) come after kResultPath.
enum JobKey : size_t {
  kId, kJobId, kStatus, kAlphaName, kStartDate, kEndDate, kWeightMethod, kConfigJson,
  kCreatedAt, kStartedAt, kCompletedAt, kWorkerId, kProgressPct, kJobTimeout, kResultPath,
  kSnapshotId, kDatasetVersionIds, kErrorMessage, kRetryCount, kCreatedBy, kCostConfig,
  kCostSummary, kPriority, kMaxRetries, kAttempt, kCancelRequested, kHeartbeatAt,
  kLeaseExpiresAt, kRunAfter, kCheckpointPath, kPinned, kExpiringAt, kEngine, kJobKeyCount
};
constexpr std::array<const char*, kJobKeyCount> kJobKeyNames = {
    "id", "job_id", "status", "alpha_name", "start_date", "end_date", "weight_method",
    "config_json", "created_at", "started_at", "completed_at", "worker_id", "progress_pct",
    "job_timeout", "result_path", "snapshot_id", "dataset_version_ids", "error_message",
    "retry_count", "created_by", "cost_config", "cost_summary", "priority", "max_retries",
    "attempt", "cancel_requested", "heartbeat_at", "lease_expires_at", "run_after",
    "checkpoint_path", "pinned", "expiring_at", "engine"};
constexpr size_t kMetricCount = Metrics::kNames.size();

constexpr std::array<JobStatus, 5> kStatuses = {JobStatus::kPending, JobStatus::kRunning,
                                                JobStatus::kCompleted, JobStatus::kFailed,
                                                JobStatus::kCancelled};
constexpr std::array<Priority, 3> kPriorities = {Priority::kHigh, Priority::kNormal,
                                                 Priority::kLow};

PyObject* Interned(std::string_view text) {
  PyObject* made = PyUnicode_FromStringAndSize(text.data(), static_cast<Py_ssize_t>(text.size()));
  if (made == nullptr) throw nb::python_error();
  PyUnicode_InternInPlace(&made);
  return made;
}

// The Python objects every page reuses, made once and kept for the interpreter's life: the
// interned keys; the template row, every key in order with None (False for the flags), which
// each row starts as a copy of (presized, so a copy is one block copy and filling it never
// resizes or hashes); and the names of statuses and priorities (fixed sets).
struct Constants {
  std::array<PyObject*, kJobKeyCount> keys{};
  std::array<PyObject*, kMetricCount> metric_keys{};
  PyObject* row = nullptr;
  std::array<PyObject*, kStatuses.size()> statuses{};
  std::array<PyObject*, kPriorities.size()> priorities{};

  Constants() {
    for (size_t i = 0; i < kJobKeyCount; ++i) keys[i] = Interned(kJobKeyNames[i]);
    for (size_t i = 0; i < kMetricCount; ++i) metric_keys[i] = Interned(Metrics::kNames[i]);
    row = _PyDict_NewPresized(static_cast<Py_ssize_t>(kJobKeyCount + kMetricCount));
    if (row == nullptr) throw nb::python_error();
    auto add = [this](PyObject* key) {
      PyObject* value = key == keys[kCancelRequested] || key == keys[kPinned] ? Py_False : Py_None;
      if (PyDict_SetItem(row, key, value) != 0) throw nb::python_error();
    };
    for (size_t i = 0; i <= kResultPath; ++i) add(keys[i]);
    for (PyObject* key : metric_keys) add(key);
    for (size_t i = kResultPath + 1; i < kJobKeyCount; ++i) add(keys[i]);
    for (JobStatus status : kStatuses) {
      statuses[static_cast<size_t>(status)] = Interned(ToString(status));
    }
    for (Priority priority : kPriorities) {
      priorities[static_cast<size_t>(priority)] = Interned(ToString(priority));
    }
  }
};

const Constants& Shared() {
  static const Constants constants;
  return constants;
}

// Text known to be ASCII (dates and times) as a str, written in place: no UTF-8 scan.
PyObject* AsciiStr(std::string_view text) {
  PyObject* made = PyUnicode_New(static_cast<Py_ssize_t>(text.size()), 127);
  if (made != nullptr) std::memcpy(PyUnicode_1BYTE_DATA(made), text.data(), text.size());
  return made;
}

PyObject* Str(std::string_view text) {
  return PyUnicode_FromStringAndSize(text.data(), static_cast<Py_ssize_t>(text.size()));
}

PyObject* Time(Timestamp time) { return AsciiStr(FormatTimestampText(time).view()); }

// A copy of a parsed JSON value that shares nothing mutable with it: dicts and lists are new at
// every depth, the leaves (str, int, float, bool, None) are shared.
PyObject* CopyJson(PyObject* value) {
  if (PyDict_CheckExact(value)) {
    PyObject* copy = PyDict_Copy(value);
    if (copy == nullptr) return nullptr;
    Py_ssize_t pos = 0;
    PyObject* key;
    PyObject* item;
    while (PyDict_Next(value, &pos, &key, &item)) {
      if (!PyDict_CheckExact(item) && !PyList_CheckExact(item)) continue;
      PyObject* inner = CopyJson(item);
      const bool ok = inner != nullptr && PyDict_SetItem(copy, key, inner) == 0;
      Py_XDECREF(inner);
      if (!ok) {
        Py_DECREF(copy);
        return nullptr;
      }
    }
    return copy;
  }
  if (PyList_CheckExact(value)) {
    const Py_ssize_t size = PyList_GET_SIZE(value);
    PyObject* copy = PyList_GetSlice(value, 0, size);
    if (copy == nullptr) return nullptr;
    for (Py_ssize_t i = 0; i < size; ++i) {
      PyObject* item = PyList_GET_ITEM(value, i);
      if (!PyDict_CheckExact(item) && !PyList_CheckExact(item)) continue;
      PyObject* inner = CopyJson(item);
      if (inner == nullptr) {
        Py_DECREF(copy);
        return nullptr;
      }
      PyList_SetItem(copy, i, inner);  // steals `inner`, releases the shared item
    }
    return copy;
  }
  Py_INCREF(value);
  return value;
}

// Values that repeat down a page (the same user, alpha, engine, config...) made once per page.
// Keys are views of the page's records, which outlive the page's conversion. A page whose
// values do not repeat costs a few failed comparisons per field.
class PageCache {
 public:
  PageCache() = default;
  PageCache(const PageCache&) = delete;
  PageCache& operator=(const PageCache&) = delete;
  ~PageCache() {
    for (const auto& entry : entries_) Py_DECREF(entry.second);
  }

  // Return the value kept for `text` (borrowed), or nullptr.
  PyObject* Find(std::string_view text) const {
    for (const auto& [seen, value] : entries_) {
      if (seen == text) return value;
    }
    return nullptr;
  }

  // Keep a reference to `value` as the value of `text` while there is room.
  void Keep(std::string_view text, PyObject* value) {
    if (entries_.size() == kCapacity) return;
    Py_INCREF(value);
    entries_.emplace_back(text, value);
  }

 private:
  static constexpr size_t kCapacity = 8;
  std::vector<std::pair<std::string_view, PyObject*>> entries_;
};

// Builds the rows of one page.
class PageBuilder {
 public:
  PageBuilder() : constants_(Shared()) {}

  PyObject* Row(const JobRecord& job) {
    nb::object row = nb::steal(PyDict_Copy(constants_.row));
    if (!row) throw nb::python_error();
    PyObject* d = row.ptr();
    const auto& keys = constants_.keys;
    Put(d, keys[kId], Str(job.id));
    Put(d, keys[kJobId], Str(job.job_id));
    Share(d, keys[kStatus], constants_.statuses[static_cast<size_t>(job.status)]);
    Share(d, keys[kAlphaName], text_[kAlphaName], job.alpha_name);
    Put(d, keys[kStartDate], AsciiStr(job.start_date.ToString()));
    Put(d, keys[kEndDate], AsciiStr(job.end_date.ToString()));
    Share(d, keys[kWeightMethod], text_[kWeightMethod], job.weight_method);
    PutJson(d, kConfigJson, job.config_json);
    Put(d, keys[kCreatedAt], Time(job.created_at));
    PutTime(d, kStartedAt, job.started_at);
    PutTime(d, kCompletedAt, job.completed_at);
    if (job.worker_id) Share(d, keys[kWorkerId], text_[kWorkerId], *job.worker_id);
    Put(d, keys[kProgressPct], PyLong_FromLong(job.progress_pct));
    Put(d, keys[kJobTimeout], PyLong_FromLong(job.job_timeout_seconds));
    if (job.result_path) Put(d, keys[kResultPath], Str(*job.result_path));
    for (size_t i = 0; i < kMetricCount; ++i) {
      const double value = job.metrics.At(i);
      if (std::isfinite(value)) Put(d, constants_.metric_keys[i], PyFloat_FromDouble(value));
    }
    if (job.snapshot_id) Share(d, keys[kSnapshotId], text_[kSnapshotId], *job.snapshot_id);
    if (job.dataset_version_ids_json) {
      PutJson(d, kDatasetVersionIds, *job.dataset_version_ids_json);
    }
    if (job.error_message) Put(d, keys[kErrorMessage], Str(*job.error_message));
    Put(d, keys[kRetryCount], PyLong_FromLong(job.retry_count));
    Share(d, keys[kCreatedBy], text_[kCreatedBy], job.created_by);
    if (job.cost_config_json) PutJson(d, kCostConfig, *job.cost_config_json);
    if (job.cost_summary_json) PutJson(d, kCostSummary, *job.cost_summary_json);
    Share(d, keys[kPriority], constants_.priorities[static_cast<size_t>(job.priority)]);
    Put(d, keys[kMaxRetries], PyLong_FromLong(job.max_retries));
    Put(d, keys[kAttempt], PyLong_FromLong(job.attempt));
    if (job.cancel_requested) Share(d, keys[kCancelRequested], Py_True);
    PutTime(d, kHeartbeatAt, job.heartbeat_at);
    PutTime(d, kLeaseExpiresAt, job.lease_expires_at);
    PutTime(d, kRunAfter, job.run_after);
    if (job.checkpoint_path) Put(d, keys[kCheckpointPath], Str(*job.checkpoint_path));
    if (job.pinned) Share(d, keys[kPinned], Py_True);
    PutTime(d, kExpiringAt, job.expiring_at);
    Share(d, keys[kEngine], text_[kEngine], job.engine);
    return row.release().ptr();
  }

 private:
  // Set d[key] to a new reference `value` (nullptr after a Python error), which it takes.
  static void Put(PyObject* d, PyObject* key, PyObject* value) {
    if (value == nullptr) throw nb::python_error();
    const int failed = PyDict_SetItem(d, key, value);
    Py_DECREF(value);
    if (failed != 0) throw nb::python_error();
  }

  // Set d[key] to `value`, which stays the caller's.
  static void Share(PyObject* d, PyObject* key, PyObject* value) {
    if (value == nullptr || PyDict_SetItem(d, key, value) != 0) throw nb::python_error();
  }

  // Set d[key] to a str of `text`, the one made earlier in the page for equal text if any.
  static void Share(PyObject* d, PyObject* key, PageCache& cache, std::string_view text) {
    if (PyObject* seen = cache.Find(text)) return Share(d, key, seen);
    PyObject* made = Str(text);
    if (made != nullptr) cache.Keep(text, made);
    Put(d, key, made);
  }

  void PutTime(PyObject* d, JobKey key, const std::optional<Timestamp>& time) {
    if (time) Put(d, constants_.keys[key], Time(*time));
  }

  // A JSON column's text seen before in the page is copied from its first parse rather than
  // parsed again (a copy shares no dict or list). The first parse is the first row's own value:
  // no Python code runs, so nothing changes it, before the page is complete.
  void PutJson(PyObject* d, JobKey key, std::string_view text) {
    PyObject* const key_object = constants_.keys[key];
    if (PyObject* seen = text_[key].Find(text)) return Put(d, key_object, CopyJson(seen));
    PyObject* parsed = json_.Parse(text);
    if (parsed != nullptr) text_[key].Keep(text, parsed);
    Put(d, key_object, parsed);
  }

  const Constants& constants_;
  JsonColumnParser json_;
  std::array<PageCache, kJobKeyCount> text_;  // by field; used by those whose values repeat
};

}  // namespace

nb::list JobDicts(const std::vector<JobRecord>& jobs) {
  nb::list out = nb::steal<nb::list>(PyList_New(static_cast<Py_ssize_t>(jobs.size())));
  if (!out) throw nb::python_error();
  PageBuilder page;
  for (size_t i = 0; i < jobs.size(); ++i) {
    PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i), page.Row(jobs[i]));
  }
  return out;
}

}  // namespace btstore::python

#include "job_dicts.h"

#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>
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

// Builds the rows of one page, in order. Row i starts as a copy of row i-1 (of the template for
// the first), so only the fields whose value differs from the previous job's are set; and the
// JSON columns always, as a row never shares a dict or list. Neighbouring jobs mostly share
// their status, alpha, engine, limits, absent times and the like.
class PageBuilder {
 public:
  PageBuilder() : constants_(Shared()) {}

  PyObject* Row(const JobRecord& job) {
    nb::object row = nb::steal(PyDict_Copy(previous_ ? previous_row_ : constants_.row));
    if (!row) throw nb::python_error();
    PyObject* d = row.ptr();
    const auto& keys = constants_.keys;
    Put(d, keys[kId], Str(job.id));  // unique per job, like job_id and created_at
    Put(d, keys[kJobId], Str(job.job_id));
    if (Changed(job, &JobRecord::status)) {
      Share(d, keys[kStatus], constants_.statuses[static_cast<size_t>(job.status)]);
    }
    if (Changed(job, &JobRecord::alpha_name)) Text(d, kAlphaName, job.alpha_name);
    if (Changed(job, &JobRecord::start_date)) {
      Put(d, keys[kStartDate], AsciiStr(job.start_date.ToString()));
    }
    if (Changed(job, &JobRecord::end_date)) {
      Put(d, keys[kEndDate], AsciiStr(job.end_date.ToString()));
    }
    if (Changed(job, &JobRecord::weight_method)) Text(d, kWeightMethod, job.weight_method);
    PutJson(d, kConfigJson, job.config_json);
    Put(d, keys[kCreatedAt], Time(job.created_at));
    if (Changed(job, &JobRecord::started_at)) OptionalTime(d, kStartedAt, job.started_at);
    if (Changed(job, &JobRecord::completed_at)) OptionalTime(d, kCompletedAt, job.completed_at);
    if (Changed(job, &JobRecord::worker_id)) OptionalText(d, kWorkerId, job.worker_id, true);
    if (Changed(job, &JobRecord::progress_pct)) Int(d, kProgressPct, job.progress_pct);
    if (Changed(job, &JobRecord::job_timeout_seconds)) Int(d, kJobTimeout, job.job_timeout_seconds);
    if (Changed(job, &JobRecord::result_path)) OptionalText(d, kResultPath, job.result_path, false);
    for (size_t i = 0; i < kMetricCount; ++i) {
      const double value = job.metrics.At(i);
      if (previous_ ? SameMetric(previous_->metrics.At(i), value) : !std::isfinite(value)) continue;
      if (std::isfinite(value)) {
        Put(d, constants_.metric_keys[i], PyFloat_FromDouble(value));
      } else {
        Share(d, constants_.metric_keys[i], Py_None);
      }
    }
    if (Changed(job, &JobRecord::snapshot_id)) OptionalText(d, kSnapshotId, job.snapshot_id, true);
    OptionalJson(d, kDatasetVersionIds, &JobRecord::dataset_version_ids_json, job);
    if (Changed(job, &JobRecord::error_message)) {
      OptionalText(d, kErrorMessage, job.error_message, false);
    }
    if (Changed(job, &JobRecord::retry_count)) Int(d, kRetryCount, job.retry_count);
    if (Changed(job, &JobRecord::created_by)) Text(d, kCreatedBy, job.created_by);
    OptionalJson(d, kCostConfig, &JobRecord::cost_config_json, job);
    OptionalJson(d, kCostSummary, &JobRecord::cost_summary_json, job);
    if (Changed(job, &JobRecord::priority)) {
      Share(d, keys[kPriority], constants_.priorities[static_cast<size_t>(job.priority)]);
    }
    if (Changed(job, &JobRecord::max_retries)) Int(d, kMaxRetries, job.max_retries);
    if (Changed(job, &JobRecord::attempt)) Int(d, kAttempt, job.attempt);
    if (Changed(job, &JobRecord::cancel_requested)) {
      Share(d, keys[kCancelRequested], job.cancel_requested ? Py_True : Py_False);
    }
    if (Changed(job, &JobRecord::heartbeat_at)) OptionalTime(d, kHeartbeatAt, job.heartbeat_at);
    if (Changed(job, &JobRecord::lease_expires_at)) {
      OptionalTime(d, kLeaseExpiresAt, job.lease_expires_at);
    }
    if (Changed(job, &JobRecord::run_after)) OptionalTime(d, kRunAfter, job.run_after);
    if (Changed(job, &JobRecord::checkpoint_path)) {
      OptionalText(d, kCheckpointPath, job.checkpoint_path, false);
    }
    if (Changed(job, &JobRecord::pinned)) Share(d, keys[kPinned], job.pinned ? Py_True : Py_False);
    if (Changed(job, &JobRecord::expiring_at)) OptionalTime(d, kExpiringAt, job.expiring_at);
    if (Changed(job, &JobRecord::engine)) Text(d, kEngine, job.engine);
    previous_ = &job;
    previous_row_ = d;  // the page's list holds it from now on
    return row.release().ptr();
  }

 private:
  // Whether the row copied holds another value for `field` than `job` has: the previous job's
  // value, or for the first row the template's (None, False), which only an absent optional or
  // a false flag matches.
  template <typename T>
  bool Changed(const JobRecord& job, T JobRecord::*field) const {
    if (previous_ != nullptr) return previous_->*field != job.*field;
    if constexpr (std::is_same_v<T, bool>) return job.*field;
    return true;
  }
  template <typename T>
  bool Changed(const JobRecord& job, std::optional<T> JobRecord::*field) const {
    return previous_ != nullptr ? previous_->*field != job.*field : (job.*field).has_value();
  }

  // The same metric as Python values: both None (not finite), or the same bits (0.0 is not -0.0).
  static bool SameMetric(double a, double b) {
    if (!std::isfinite(a) || !std::isfinite(b)) return !std::isfinite(a) && !std::isfinite(b);
    return std::bit_cast<uint64_t>(a) == std::bit_cast<uint64_t>(b);
  }

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

  void Int(PyObject* d, JobKey key, long value) {
    Put(d, constants_.keys[key], PyLong_FromLong(value));
  }

  // Set a str of `text`, the one made earlier in the page for equal text if any.
  void Text(PyObject* d, JobKey key, std::string_view text) {
    PyObject* const key_object = constants_.keys[key];
    if (PyObject* seen = text_[key].Find(text)) return Share(d, key_object, seen);
    PyObject* made = Str(text);
    if (made != nullptr) text_[key].Keep(text, made);
    Put(d, key_object, made);
  }

  // Set None, or the text: shared down the page when `repeats` (a user, a worker...).
  void OptionalText(PyObject* d, JobKey key, const std::optional<std::string>& text,
                    bool repeats) {
    if (!text) return Share(d, constants_.keys[key], Py_None);
    if (repeats) return Text(d, key, *text);
    Put(d, constants_.keys[key], Str(*text));
  }

  void OptionalTime(PyObject* d, JobKey key, const std::optional<Timestamp>& time) {
    if (!time) return Share(d, constants_.keys[key], Py_None);
    Put(d, constants_.keys[key], Time(*time));
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

  // Set the column's value, or None where the row copied holds the previous job's value.
  void OptionalJson(PyObject* d, JobKey key, std::optional<std::string> JobRecord::*column,
                    const JobRecord& job) {
    if (const auto& text = job.*column) return PutJson(d, key, *text);
    if (previous_ != nullptr && previous_->*column) Share(d, constants_.keys[key], Py_None);
  }

  const Constants& constants_;
  JsonColumnParser json_;
  std::array<PageCache, kJobKeyCount> text_;  // by field; used by those whose values repeat
  const JobRecord* previous_ = nullptr;
  PyObject* previous_row_ = nullptr;
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

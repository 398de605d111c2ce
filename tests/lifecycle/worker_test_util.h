#pragma once
// Fixtures of the JobService and Worker tests: a fresh migrated catalog per backend with an
// artifact root, job specs, workers running on a thread, event recording and polling.

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "btstore/catalog.h"
#include "btstore/lifecycle.h"
#include "btstore/service.h"
#include "support/backends.h"
#include "support/temp_dir.h"

namespace btstore::testing {

/// Poll `condition` every few milliseconds until it holds or `timeout` passes; return whether
/// it held.
inline bool PollUntil(const std::function<bool()>& condition,
                      std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

/// Worker events, recorded from any thread.
class EventLog {
 public:
  std::function<void(const WorkerEvent&)> Recorder() {
    return [this](const WorkerEvent& event) {
      std::lock_guard lock(mutex_);
      events_.push_back(event);
    };
  }
  std::vector<WorkerEvent> Events() {
    std::lock_guard lock(mutex_);
    return events_;
  }
  std::vector<WorkerEvent> Of(WorkerEvent::Kind kind) {
    std::vector<WorkerEvent> matching;
    for (const WorkerEvent& e : Events()) {
      if (e.kind == kind) matching.push_back(e);
    }
    return matching;
  }

 private:
  std::mutex mutex_;
  std::vector<WorkerEvent> events_;
};

/// A Worker running on its own thread until this object dies (Stop, then join), over its own
/// Service (its own catalog connections, as a worker process has).
class BackgroundWorker {
 public:
  BackgroundWorker(const std::string& url, const std::filesystem::path& root, WorkerOptions options)
      : service_(Service::Open(url, root.string())),
        worker_(service_->NewWorker(std::move(options))),
        thread_([this] { finished_ = worker_->Run(); }) {}
  ~BackgroundWorker() { Join(); }
  /// Stop the worker and wait for Run() to return; return its count of finished attempts.
  int Join() {
    if (thread_.joinable()) {
      worker_->Stop();
      thread_.join();
    }
    return finished_;
  }

 private:
  std::unique_ptr<Service> service_;
  std::unique_ptr<Worker> worker_;
  int finished_ = 0;
  std::thread thread_;
};

/// Run a worker over its own Service until nothing is left to do; return its count of finished
/// attempts.
inline int RunUntilIdle(const std::string& url, const std::filesystem::path& root,
                        WorkerOptions options) {
  options.until_idle = true;
  std::unique_ptr<Service> service = Service::Open(url, root.string());
  return service->NewWorker(std::move(options))->Run();
}

/// A service over a fresh, migrated catalog of the backend under test and an artifact root.
class LifecycleTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (auto why = SkipReason(GetParam())) GTEST_SKIP() << *why;
    url_ = NewCatalogUrl(GetParam(), dir_.path());
    app_ = Service::Open(url_, (dir_.path() / "results").string());
    catalog_ = &app_->catalog();
    service_ = &app_->jobs();
    root_ = app_->store().root();
  }

  /// A synthetic job over 2024-01-01..2024-03-29 (65 business days).
  static JobSpec Spec(const std::string& job_id, const std::string& config,
                      const std::string& method = "equal") {
    JobSpec spec;
    spec.job_id = job_id;
    spec.alpha_name = "momentum";
    spec.start_date = Date::Parse("2024-01-01");
    spec.end_date = Date::Parse("2024-03-29");
    spec.weight_method = method;
    spec.config_json = config;
    spec.created_by = "alice";
    return spec;
  }

  /// Worker options for tests: fast polling, rescue and retries.
  static WorkerOptions FastOptions(EventLog* log = nullptr) {
    WorkerOptions options;
    options.poll_interval = std::chrono::milliseconds(5);
    options.retry_base_delay = std::chrono::milliseconds(10);
    options.rescue_interval = std::chrono::milliseconds(100);
    if (log) options.on_event = log->Recorder();
    return options;
  }

  JobRecord Job(const std::string& job_id) { return catalog_->GetJob(job_id); }

  /// Names of the entries of a directory under the root (empty when it does not exist).
  std::vector<std::string> Entries(const std::filesystem::path& dir) {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
      names.push_back(entry.path().filename().string());
    }
    return names;
  }

  /// Count the regular files below a directory (0 when it does not exist): staging debris.
  int FilesUnder(const std::filesystem::path& dir) {
    int files = 0;
    std::error_code ec;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(dir, ec)) {
      if (entry.is_regular_file()) ++files;
    }
    return files;
  }

  SystemClock clock_;
  TempDir dir_;
  std::string url_;
  std::unique_ptr<Service> app_;
  Catalog* catalog_ = nullptr;
  std::filesystem::path root_;
  JobService* service_ = nullptr;
};

}  // namespace btstore::testing

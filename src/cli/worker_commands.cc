// The `worker` command: runs jobs with the built-in engines until stopped (SIGINT/SIGTERM, see
// StopOnSignals) or, with --until-idle, until nothing is left to do.

#include <iostream>
#include <map>
#include <mutex>

#include "btstore/errors.h"
#include "btstore/service.h"
#include "cli/cli.h"

namespace btstore::cli {
namespace {

// Defaults are the library's (WorkerOptions').
struct WorkerFlags {
  int concurrency = WorkerOptions{}.concurrency;
  bool until_idle = WorkerOptions{}.until_idle;
  int lease_seconds = static_cast<int>(WorkerOptions{}.lease.count());
  int poll_ms = static_cast<int>(WorkerOptions{}.poll_interval.count());
  std::string worker_id;
  std::string compression = std::string(ToString(WriteOptions{}.compression));
};

std::string_view KindName(WorkerEvent::Kind kind) {
  switch (kind) {
    case WorkerEvent::Kind::kClaimed:
      return "claimed";
    case WorkerEvent::Kind::kProgress:
      return "progress";
    case WorkerEvent::Kind::kPublished:
      return "published";
    case WorkerEvent::Kind::kCompleted:
      return "completed";
    case WorkerEvent::Kind::kFailed:
      return "failed";
    case WorkerEvent::Kind::kRetrying:
      return "retrying";
    case WorkerEvent::Kind::kCancelled:
      return "cancelled";
    case WorkerEvent::Kind::kLostLease:
      return "lost_lease";
    case WorkerEvent::Kind::kRescued:
      return "rescued";
    case WorkerEvent::Kind::kReleased:
      return "released";
  }
  return "unknown";
}

// Collects what happened for the summary and prints events as they come: lines on stdout for
// people (with a progress line for running jobs at a terminal), lines on stderr with --json.
class EventLog {
 public:
  explicit EventLog(const Context& ctx) : json_(ctx.json), interactive_(ctx.interactive()) {}

  void On(const WorkerEvent& event) {
    std::lock_guard lock(mutex_);
    std::ostream& out = json_ ? std::cerr : std::cout;
    if (event.kind == WorkerEvent::Kind::kProgress) {
      running_[event.job_id] = event.progress_pct;
      if (interactive_) DrawProgressLine();
      return;
    }
    // A step inside the completion: people see the completion (or the cancel that undid it).
    if (event.kind == WorkerEvent::Kind::kPublished) return;
    ++counts_[std::string(KindName(event.kind))];
    if (event.kind == WorkerEvent::Kind::kClaimed) {
      running_[event.job_id] = 0;
    } else if (event.kind != WorkerEvent::Kind::kRescued) {
      running_.erase(event.job_id);
    }
    // An attempt's message can hold an engine's or a database's words: no passwords, and no
    // control characters on the terminal.
    const std::string message = RedactCredentials(event.message);
    if (event.kind != WorkerEvent::Kind::kClaimed && event.kind != WorkerEvent::Kind::kRescued) {
      jobs_.push_back({{"job_id", event.job_id},
                       {"event", KindName(event.kind)},
                       {"attempt", event.attempt},
                       {"message", message}});
    }
    ClearProgressLine();
    out << KindName(event.kind) << " " << event.job_id << " (attempt " << event.attempt << ")";
    if (!message.empty()) out << ": " << Printable(message);
    out << std::endl;
    if (interactive_) DrawProgressLine();
  }

  nlohmann::json Summary(const std::string& worker_id, int finished) {
    std::lock_guard lock(mutex_);
    ClearProgressLine();
    nlohmann::json counts = nlohmann::json::object();
    for (std::string_view kind : {"claimed", "completed", "failed", "retrying", "cancelled",
                                  "lost_lease", "rescued", "released"}) {
      auto it = counts_.find(std::string(kind));
      counts[std::string(kind)] = it == counts_.end() ? 0 : it->second;
    }
    return {{"worker_id", worker_id}, {"finished", finished}, {"events", counts}, {"jobs", jobs_}};
  }

 private:
  void DrawProgressLine() {
    std::string line;
    for (const auto& [job_id, pct] : running_) {
      line += (line.empty() ? "running: " : ", ") + job_id + " " + std::to_string(pct) + "%";
    }
    ClearProgressLine();
    if (line.empty()) return;
    std::cout << line << std::flush;
    line_width_ = line.size();
  }
  void ClearProgressLine() {
    if (line_width_ == 0) return;
    std::cout << "\r" << std::string(line_width_, ' ') << "\r" << std::flush;
    line_width_ = 0;
  }

  bool json_;
  bool interactive_;
  std::mutex mutex_;
  std::map<std::string, int> running_;
  std::map<std::string, int64_t> counts_;
  nlohmann::json jobs_ = nlohmann::json::array();
  size_t line_width_ = 0;
};

}  // namespace

void RegisterWorkerCommands(CLI::App& app, Action& action) {
  auto flags = std::make_shared<WorkerFlags>();
  CLI::App* cmd = app.add_subcommand("worker", "Run pending jobs with the built-in engines");
  cmd->add_option("--concurrency", flags->concurrency, "jobs run at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  cmd->add_flag("--until-idle", flags->until_idle,
                "return once no job is pending and none of this worker's jobs runs");
  cmd->add_option("--lease-seconds", flags->lease_seconds,
                  "a running job whose worker sends no heartbeat this long is rescued")
      ->capture_default_str()
      ->check(CLI::Range(1, 86400));
  cmd->add_option("--poll-ms", flags->poll_ms, "pause between claims when nothing is pending")
      ->capture_default_str()
      ->check(CLI::Range(1, 60000));
  cmd->add_option("--worker-id", flags->worker_id,
                  "name of this worker in the catalog [default: host:pid:random]");
  cmd->add_option("--compression", flags->compression, "Parquet compression: snappy or zstd")
      ->capture_default_str();
  SetExamples(cmd,
              "  btstore worker --until-idle                 # run what is pending, then exit\n"
              "  btstore worker --concurrency 2 --lease-seconds 30   # until Ctrl-C / SIGTERM\n"
              "SIGINT or SIGTERM stops the worker: it stops its engines and gives its jobs back\n"
              "at once (pending, checkpoint kept, no retry spent); a second signal ends it at\n"
              "once. --json prints a summary at the end and the events on stderr.\n");
  cmd->callback([&action, flags] {
    action = [flags](Context& ctx) {
      WorkerOptions options;
      // Chosen here rather than by the worker so that the summary can name it.
      options.worker_id = flags->worker_id.empty() ? DefaultWorkerId() : flags->worker_id;
      options.concurrency = flags->concurrency;
      options.lease = std::chrono::seconds(flags->lease_seconds);
      options.poll_interval = std::chrono::milliseconds(flags->poll_ms);
      options.until_idle = flags->until_idle;
      options.write_options.compression = ParseCompression(flags->compression);
      EventLog log(ctx);
      options.on_event = [&log](const WorkerEvent& event) { log.On(event); };

      std::unique_ptr<Service> service = ctx.OpenService();
      std::unique_ptr<Worker> worker = service->NewWorker(options);
      int finished = 0;
      {
        StopOnSignals signals(*worker);
        if (!ctx.json) {
          std::cout << "worker started (concurrency " << flags->concurrency << ", lease "
                    << flags->lease_seconds << "s)"
                    << (flags->until_idle ? ", until idle" : ", Ctrl-C to stop") << std::endl;
        }
        finished = worker->Run();
      }
      nlohmann::json summary = log.Summary(options.worker_id, finished);
      if (ctx.json) {
        PrintJson(summary);
      } else {
        std::cout << "worker stopped: " << finished << " attempt(s) finished ("
                  << summary["events"]["completed"] << " completed, " << summary["events"]["failed"]
                  << " failed, " << summary["events"]["cancelled"] << " cancelled)\n";
      }
      return 0;
    };
  });
}

}  // namespace btstore::cli

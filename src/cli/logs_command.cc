// The `logs` command: what a command engine's program printed in one attempt of a job, whole or
// followed as it runs.

#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <thread>

#include "btstore/errors.h"
#include "btstore/service.h"
#include "cli/cli.h"

namespace btstore::cli {
namespace {

// Bytes read per call; a log is bounded (per engine, 4 MiB by default), so a whole read takes
// a few calls.
constexpr int64_t kReadChunk = int64_t{1} << 20;
// How often --follow looks for new output and whether the attempt ended.
constexpr std::chrono::milliseconds kFollowPause{200};

struct LogsFlags {
  std::string job_id;
  int attempt = 0;  // 0: the latest attempt that left logs
  bool follow = false;
};

// Where one stream was read up to.
struct Cursor {
  LogStream stream;
  int64_t offset = 0;
};

// Read what was added to the stream since the cursor; write it out when `out` is given.
std::string ReadNew(JobService& jobs, const std::string& job_id, int attempt, Cursor& cursor,
                    std::ostream* out) {
  std::string all;
  for (;;) {
    std::string chunk = jobs.ReadLog(job_id, attempt, cursor.stream, cursor.offset, kReadChunk);
    if (chunk.empty()) return all;
    cursor.offset += static_cast<int64_t>(chunk.size());
    if (out != nullptr) {
      *out << chunk << std::flush;
    } else {
      all += chunk;
    }
  }
}

}  // namespace

void RegisterLogsCommand(CLI::App& app, Action& action) {
  auto flags = std::make_shared<LogsFlags>();
  CLI::App* cmd =
      app.add_subcommand("logs", "Print what a command engine's program printed for a job");
  cmd->add_option("JOB_ID", flags->job_id, "the job")->required();
  cmd->add_option("--attempt", flags->attempt, "the attempt [default: the latest with logs]")
      ->check(CLI::Range(1, 1000000));
  cmd->add_flag("--follow", flags->follow,
                "keep printing what the program prints until its attempt ends");
  SetExamples(cmd,
              "  btstore logs my-job                  # the latest attempt's output\n"
              "  btstore logs my-job --attempt 1      # an earlier attempt\n"
              "  btstore logs my-job --follow         # as it runs, until the attempt ends\n"
              "The program's stdout goes to stdout and its stderr to stderr. Each log keeps at\n"
              "most the engine's log_limit_bytes per attempt (its first and last bytes), and\n"
              "goes with the job when retention removes it. --json prints {\"job_id\",\n"
              "\"attempt\", \"attempts\", \"stdout\", \"stderr\"}.\n");
  cmd->callback([&action, flags] {
    action = [flags](Context& ctx) {
      ValidateJobId(flags->job_id);
      if (flags->follow && ctx.json) {
        throw InvalidArgument(
            "--follow prints output as it comes and cannot be combined with --json",
            {{"field", "follow"}});
      }
      std::unique_ptr<Service> service = ctx.OpenService();
      JobService& jobs = service->jobs();
      std::vector<int> attempts = jobs.LogAttempts(flags->job_id);
      int attempt = flags->attempt;
      if (attempt == 0 && flags->follow) {
        // Follow the running attempt, or the next one of a pending job.
        const JobRecord job = jobs.GetJob(flags->job_id);
        if (job.status == JobStatus::kRunning) attempt = job.attempt;
        if (job.status == JobStatus::kPending) attempt = job.attempt + 1;
      }
      if (attempt == 0 && !attempts.empty()) {
        attempt = attempts.back();
      }
      Cursor out{LogStream::kStdout}, err{LogStream::kStderr};
      if (ctx.json) {
        nlohmann::json doc = {{"job_id", flags->job_id},
                              {"attempt", attempt > 0 ? nlohmann::json(attempt) : nullptr},
                              {"attempts", attempts}};
        doc["stdout"] = attempt > 0 ? ReadNew(jobs, flags->job_id, attempt, out, nullptr) : "";
        doc["stderr"] = attempt > 0 ? ReadNew(jobs, flags->job_id, attempt, err, nullptr) : "";
        PrintJson(doc);
        return 0;
      }
      if (attempt == 0) {
        std::cerr << "job " << flags->job_id
                  << " has no logs yet (only command engines leave logs)\n";
        return 0;
      }
      if (!flags->follow) {
        ReadNew(jobs, flags->job_id, attempt, out, &std::cout);
        ReadNew(jobs, flags->job_id, attempt, err, &std::cerr);
        return 0;
      }
      for (;;) {
        // Read the row first: output written before the attempt ended is then read below.
        const JobRecord job = jobs.GetJob(flags->job_id);
        const bool running = job.status == JobStatus::kRunning && job.attempt == attempt;
        const bool waiting = job.status == JobStatus::kPending && job.attempt < attempt;
        ReadNew(jobs, flags->job_id, attempt, out, &std::cout);
        ReadNew(jobs, flags->job_id, attempt, err, &std::cerr);
        if (!running && !waiting) return 0;
        std::this_thread::sleep_for(kFollowPause);
      }
    };
  });
}

}  // namespace btstore::cli

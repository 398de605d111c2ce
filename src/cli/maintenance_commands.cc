// Maintenance commands: cleanup (retention) and verify (bundles against manifests and rows).

#include <iostream>

#include "btstore/errors.h"
#include "btstore/service.h"
#include "btstore/wire.h"
#include "cli/cli.h"

namespace btstore::cli {
namespace {

// `verify` exits with the status of an invalid result when it finds a problem, so scripts can
// tell "all good" from "something to look at" without parsing the report.
const int kVerifyProblemsExitStatus = ExitStatus(ErrorCode::kInvalidResult);

// Defaults are the library's (RetentionOptions').
struct CleanupFlags {
  int retention_days = RetentionOptions{}.retention_days;
  bool dry_run = RetentionOptions{}.dry_run;
  int batch_size = RetentionOptions{}.batch_size;
};

void AddCleanup(CLI::App& app, Action& action) {
  auto flags = std::make_shared<CleanupFlags>();
  CLI::App* cmd = app.add_subcommand(
      "cleanup", "Remove terminal, unpinned jobs (row and bundle) that ended long ago");
  cmd->add_option("--retention-days", flags->retention_days,
                  "remove jobs that ended more than this many days ago")
      ->capture_default_str();
  cmd->add_flag("--dry-run", flags->dry_run, "only report what would be removed");
  cmd->add_option("--batch-size", flags->batch_size, "jobs removed per transaction")
      ->capture_default_str();
  SetExamples(cmd,
              "  btstore cleanup --dry-run                   # what the 90-day window removes\n"
              "  btstore cleanup --retention-days 30\n"
              "Pending and running jobs and pinned jobs are never removed.\n"
              "--json prints {\"removed\": N, \"job_ids\": [...], \"dry_run\": true|false}.\n");
  cmd->callback([&action, flags] {
    action = [flags](Context& ctx) {
      std::unique_ptr<Service> service = ctx.OpenService();
      RetentionOptions options;
      options.retention_days = flags->retention_days;
      options.dry_run = flags->dry_run;
      options.batch_size = flags->batch_size;
      ProgressBar bar(ctx.interactive() && !flags->dry_run, "removing", 0);
      options.on_progress = [&bar](int64_t done) { bar.Update(done); };
      RetentionReport report = service->Cleanup(options);
      bar.Finish();
      if (ctx.json) {
        PrintJson(wire::RetentionJson(report, flags->retention_days));
        return 0;
      }
      std::cout << (report.dry_run ? "would remove " : "removed ") << report.removed
                << " job(s) that ended more than " << flags->retention_days << " day(s) ago\n";
      for (const std::string& job_id : report.job_ids) std::cout << "  " << job_id << "\n";
      return 0;
    };
  });
}

// Defaults are the library's (VerifyOptions').
struct VerifyFlags {
  std::vector<std::string> job_ids;
  int64_t orphan_grace_seconds = VerifyOptions{}.orphan_grace.count();
};

void AddVerify(CLI::App& app, Action& action) {
  auto flags = std::make_shared<VerifyFlags>();
  CLI::App* cmd = app.add_subcommand(
      "verify", "Check bundles against their manifests; report missing and orphan bundles");
  cmd->add_option("JOB_ID", flags->job_ids, "jobs to check [default: every completed job]");
  cmd->add_option("--orphan-grace-seconds", flags->orphan_grace_seconds,
                  "report bundles no row knows only when older than this")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  SetExamples(cmd,
              "  btstore verify                  # every completed job, plus orphan bundles\n"
              "  btstore verify job-a job-b\n"
              "Exit status 0 when everything is in order, 6 when a problem was found.\n");
  cmd->callback([&action, flags] {
    action = [flags](Context& ctx) {
      for (const std::string& job_id : flags->job_ids) ValidateJobId(job_id);
      std::unique_ptr<Service> service = ctx.OpenService();
      ProgressBar bar(ctx.interactive(), "verifying", 0);
      VerifyOptions options;
      options.job_ids = flags->job_ids;
      options.orphan_grace = std::chrono::seconds(flags->orphan_grace_seconds);
      options.on_progress = [&bar](int64_t done) { bar.Update(done); };
      VerifyReport report = service->Verify(options);
      bar.Finish();
      bool ok = report.problems.empty();
      if (ctx.json) {
        PrintJson(wire::VerifyJson(report));
      } else {
        std::cout << "checked " << report.checked << " bundle(s): "
                  << (ok ? "all in order" : std::to_string(report.problems.size()) + " problem(s)")
                  << "\n";
        std::vector<std::vector<std::string>> rows;
        for (const VerifyProblem& problem : report.problems) {
          rows.push_back({std::string(wire::ProblemKindName(problem.kind)),
                          problem.job_id.empty() ? "-" : problem.job_id, problem.path,
                          problem.error_code.empty() ? "-" : problem.error_code, problem.message});
        }
        if (!rows.empty()) {
          PrintTable(std::cout, {"PROBLEM", "JOB ID", "PATH", "CODE", "MESSAGE"}, rows);
        }
      }
      return ok ? 0 : kVerifyProblemsExitStatus;
    };
  });
}

}  // namespace

void RegisterMaintenanceCommands(CLI::App& app, Action& action) {
  AddCleanup(app, action);
  AddVerify(app, action);
}

}  // namespace btstore::cli

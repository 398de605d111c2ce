// The `demo` command: an end-to-end tour on the configured catalog (the embedded SQLite file by
// default) that prints, for every step, the `btstore` command line doing the same.

#include <arrow/table.h>
#include <unistd.h>

#include <algorithm>
#include <exception>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>

#include "btstore/errors.h"
#include "btstore/service.h"
#include "cli/cli.h"

namespace btstore::cli {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;

// How often the demo re-reads a row it waits on, and how long it waits for any one step before
// it gives up (the whole tour takes well under a minute on two cores).
constexpr milliseconds kPollInterval{50};
constexpr seconds kStepTimeout{120};
constexpr int kWorkerConcurrency = 2;

struct DemoJob {
  std::string name;
  std::string alpha;
  std::string user;
  std::string start;
  std::string end;
  std::string weight_method;
  nlohmann::json extra_config;
  Priority priority = Priority::kNormal;
};

// A dozen backtests: several alphas, users, date ranges and weight methods. The first is long
// (a delay per simulated day) so that it can be cancelled while it runs; "reversal-bob" fails
// once on purpose to show an automatic retry continuing from its checkpoint.
std::vector<DemoJob> DemoJobs(bool fast) {
  nlohmann::json slow = {{"delay_ms_per_day", fast ? 8 : 15}, {"checkpoint_every_days", 10}};
  return {
      {"carry-alice", "carry", "alice", "2018-01-01", "2019-12-31", "signal", slow,
       Priority::kHigh},
      {"momentum-alice", "momentum", "alice", "2020-01-01", "2020-12-31", "signal", {}},
      {"momentum-bob", "momentum", "bob", "2020-01-01", "2020-06-30", "equal", {}},
      {"momentum-carol", "momentum", "carol", "2019-01-01", "2020-12-31", "rank", {}},
      {"value-alice", "value", "alice", "2019-01-01", "2019-12-31", "equal", {}},
      {"value-bob", "value", "bob", "2020-01-01", "2021-06-30", "signal", {}},
      {"value-carol", "value", "carol", "2021-01-01", "2021-12-31", "rank", {}},
      {"reversal-alice", "reversal", "alice", "2020-06-01", "2020-12-31", "rank", {}},
      {"reversal-bob",
       "reversal",
       "bob",
       "2018-01-01",
       "2018-12-31",
       "equal",
       {{"fail_at_day", 60}, {"checkpoint_every_days", 20}}},
      {"quality-carol", "quality", "carol", "2020-01-01", "2020-12-31", "signal", {}},
      {"quality-alice",
       "quality",
       "alice",
       "2021-01-01",
       "2021-06-30",
       "equal",
       {},
       Priority::kLow},
      {"reversal-carol", "reversal", "carol", "2019-06-01", "2020-05-31", "signal", {}},
  };
}

std::string RunId() {
  std::random_device random;
  std::ostringstream id;
  id << std::hex << (random() & 0xffffff) << std::hex << (getpid() & 0xff);
  return id.str();
}

std::string Quote(const std::string& text) { return "'" + text + "'"; }

// Runs a Worker on its own thread for the lifetime of the object; stops and joins it on
// destruction, so an error anywhere in the tour still ends the thread.
class BackgroundWorker {
 public:
  BackgroundWorker(Service& service, WorkerOptions options)
      : worker_(service.NewWorker(std::move(options))) {
    thread_ = std::thread([this] {
      try {
        worker_->Run();
      } catch (const std::exception&) {
        error_ = std::current_exception();
      }
      done_ = true;
    });
  }
  ~BackgroundWorker() { Stop(); }
  BackgroundWorker(const BackgroundWorker&) = delete;
  BackgroundWorker& operator=(const BackgroundWorker&) = delete;

  /// Rethrow the worker's error, if it ended with one.
  void Check() const {
    if (done_ && error_) std::rethrow_exception(error_);
  }
  void Stop() {
    worker_->Stop();
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::unique_ptr<Worker> worker_;
  std::thread thread_;
  std::atomic<bool> done_{false};
  std::exception_ptr error_;
};

class Demo {
 public:
  Demo(Context& ctx, bool fast)
      : ctx_(ctx),
        fast_(fast),
        out_(ctx.json ? std::cerr : std::cout),
        run_id_(RunId()),
        app_(ctx.OpenService()),
        service_(app_->jobs()) {}

  int Run();

 private:
  void Step(const std::string& title) { out_ << "\n== " << ++step_ << ". " << title << "\n"; }
  void Command(const std::string& command_line) { out_ << "$ btstore " << command_line << "\n"; }
  void Say(const std::string& text) { out_ << "  " << text << "\n"; }
  std::string JobId(const std::string& name) const { return "demo-" + run_id_ + "-" + name; }

  // Re-read a job until `done` holds; throws InternalError after kStepTimeout.
  template <typename Pred>
  JobRecord WaitForJob(const std::string& job_id, const std::string& what, Pred done);
  void WaitForAllTerminal(const std::vector<std::string>& job_ids);
  void PrintList(const std::string& command_line, const JobFilter& filter);
  nlohmann::json LoadResult(const std::string& job_id, const ReadOptions& options,
                            const std::string& command_line);

  Context& ctx_;
  bool fast_;
  std::ostream& out_;
  std::string run_id_;
  std::unique_ptr<Service> app_;
  JobService& service_;
  BackgroundWorker* worker_ = nullptr;
  int step_ = 0;
  Timestamp started_at_;
};

template <typename Pred>
JobRecord Demo::WaitForJob(const std::string& job_id, const std::string& what, Pred done) {
  const auto deadline = std::chrono::steady_clock::now() + kStepTimeout;
  while (true) {
    JobRecord job = service_.GetJob(job_id);
    if (done(job)) return job;
    if (worker_ != nullptr) worker_->Check();
    if (std::chrono::steady_clock::now() > deadline) {
      throw InternalError("demo: timed out waiting until " + what,
                          {{"job_id", job_id}, {"status", std::string(ToString(job.status))}});
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

void Demo::WaitForAllTerminal(const std::vector<std::string>& job_ids) {
  ProgressBar bar(ctx_.interactive(), "  jobs finished", static_cast<int64_t>(job_ids.size()));
  const auto deadline = std::chrono::steady_clock::now() + kStepTimeout;
  while (true) {
    int64_t finished = 0;
    for (const std::string& job_id : job_ids) {
      if (IsTerminal(service_.GetJob(job_id).status)) ++finished;
    }
    bar.Update(finished);
    if (finished == static_cast<int64_t>(job_ids.size())) break;
    worker_->Check();
    if (std::chrono::steady_clock::now() > deadline) {
      throw InternalError("demo: timed out waiting for the jobs to finish",
                          {{"finished", std::to_string(finished)}});
    }
    std::this_thread::sleep_for(kPollInterval);
  }
  bar.Finish();
}

void Demo::PrintList(const std::string& command_line, const JobFilter& filter) {
  Command(command_line);
  PageRequest page;
  page.limit = kMaxListLimit;
  JobPage result = service_.ListJobs(filter, page);
  std::vector<std::vector<std::string>> rows;
  for (const JobRecord& job : result.jobs) {
    rows.push_back({job.job_id, job.alpha_name, job.created_by, std::string(ToString(job.status)),
                    job.start_date.ToString() + ".." + job.end_date.ToString(),
                    HumanMetric(job.metrics.mean_ic), HumanMetric(job.metrics.icir),
                    HumanMetric(job.metrics.hit_rate)});
  }
  std::ostringstream table;
  PrintTable(table, {"JOB ID", "ALPHA", "USER", "STATUS", "DATES", "MEAN IC", "ICIR", "HIT RATE"},
             rows);
  std::istringstream lines(table.str());
  for (std::string line; std::getline(lines, line);) out_ << "  " << line << "\n";
  out_ << "  (" << result.jobs.size() << " job(s))\n";
}

nlohmann::json Demo::LoadResult(const std::string& job_id, const ReadOptions& options,
                                const std::string& command_line) {
  Command(command_line);
  ReadStats stats;
  BacktestResult result = service_.GetResult(job_id, options, &stats);
  auto rows = [](const std::shared_ptr<arrow::Table>& table) {
    return table ? table->num_rows() : int64_t{0};
  };
  Say("mean_ic " + HumanMetric(result.metrics.mean_ic) + ", icir " +
      HumanMetric(result.metrics.icir) + ", hit_rate " + HumanMetric(result.metrics.hit_rate) +
      ", snapshot " + result.snapshot_id);
  Say("rows: daily_signals " + std::to_string(rows(result.daily_signals)) + ", daily_weights " +
      std::to_string(rows(result.daily_weights)) + ", daily_ic " +
      std::to_string(rows(result.daily_ic)));
  Say("read " + std::to_string(stats.bytes_read) + " bytes of Parquet; row groups read " +
      std::to_string(stats.row_groups_read) + ", skipped by date statistics " +
      std::to_string(stats.row_groups_skipped));
  return {{"job_id", job_id},
          {"rows",
           {{"daily_signals", rows(result.daily_signals)},
            {"daily_weights", rows(result.daily_weights)},
            {"daily_ic", rows(result.daily_ic)}}},
          {"bytes_read", stats.bytes_read},
          {"row_groups_skipped", stats.row_groups_skipped}};
}

int Demo::Run() {
  const auto tour_start = std::chrono::steady_clock::now();
  const std::string catalog_url = RedactCredentials(ctx_.catalog_url);
  nlohmann::json report = {{"run_id", run_id_},
                           {"catalog", catalog_url},
                           {"artifact_root", ctx_.artifact_root.string()}};
  out_ << "btstore demo " << run_id_ << ": a tour of the command line.\n"
       << "Every step shows the command that does the same. They use this catalog and root:\n"
       << "  export BTSTORE_CATALOG=" << Quote(catalog_url) << "\n"
       << "  export BTSTORE_ARTIFACT_ROOT=" << Quote(ctx_.artifact_root.string()) << "\n";

  Step("Create or upgrade the catalog schema (every command also does this)");
  Command("migrate");
  Say("catalog backend: " + std::string(app_->catalog().Backend()) + ", schema up to date");

  // Listings below show only this run's jobs: they start at this instant.
  started_at_ = app_->clock().Now() - seconds(1);
  const std::string since = FormatTimestamp(started_at_);

  Step("Submit a dozen synthetic backtests");
  const int symbols = fast_ ? 60 : 250;
  const std::vector<DemoJob> jobs = DemoJobs(fast_);
  std::vector<std::string> job_ids;
  for (size_t i = 0; i < jobs.size(); ++i) {
    const DemoJob& job = jobs[i];
    nlohmann::json config = {{"engine", "synthetic"}, {"seed", 11 + i}, {"symbols", symbols}};
    for (const auto& [key, value] : job.extra_config.items()) config[key] = value;
    JobSpec spec;
    spec.job_id = JobId(job.name);
    spec.alpha_name = job.alpha;
    spec.start_date = Date::Parse(job.start);
    spec.end_date = Date::Parse(job.end);
    spec.weight_method = job.weight_method;
    spec.config_json = config.dump();
    spec.created_by = job.user;
    spec.priority = job.priority;
    std::string command_line = "submit --job-id " + spec.job_id + " --alpha " + job.alpha +
                               " --start " + job.start + " --end " + job.end + " --weight-method " +
                               job.weight_method + " --user " + job.user;
    if (job.priority != Priority::kNormal) {
      command_line += " --priority " + std::string(ToString(job.priority));
    }
    Command(command_line + " --config " + Quote(spec.config_json));
    SubmitResult submitted = service_.Submit(spec);
    job_ids.push_back(submitted.job.job_id);
  }
  Say(std::to_string(job_ids.size()) + " jobs pending. \"" + jobs[0].name +
      "\" is slow on purpose (delay_ms_per_day), so that we can cancel it while it runs.");
  {
    const DemoJob& again = jobs[1];
    Command("submit --job-id " + JobId(again.name) + " ...   # the same submission again");
    JobSpec spec;
    spec.job_id = JobId(again.name);
    spec.alpha_name = again.alpha;
    spec.start_date = Date::Parse(again.start);
    spec.end_date = Date::Parse(again.end);
    spec.weight_method = again.weight_method;
    spec.config_json =
        nlohmann::json({{"engine", "synthetic"}, {"seed", 12}, {"symbols", symbols}}).dump();
    spec.created_by = again.user;
    SubmitResult submitted = service_.Submit(spec);
    Say(std::string("created: ") + (submitted.created ? "true" : "false") +
        " (idempotent: the existing job is returned, nothing is written)");
  }

  Step("Start a worker (concurrency 2) that runs the jobs");
  Command("worker --concurrency 2 --lease-seconds 10     # here: in-process, on a thread");
  WorkerOptions options;
  options.concurrency = kWorkerConcurrency;
  options.lease = seconds(10);
  options.heartbeat_interval = milliseconds(250);
  options.poll_interval = milliseconds(100);
  options.retry_base_delay = milliseconds(200);
  options.worker_id = "demo-" + run_id_;
  BackgroundWorker worker(*app_, options);
  worker_ = &worker;

  const std::string slow_id = job_ids[0];
  Step("Cancel the slow job while it runs");
  JobRecord slow =
      WaitForJob(slow_id, "it runs and has saved a checkpoint", [](const JobRecord& j) {
        return (j.status == JobStatus::kRunning && j.checkpoint_path) || IsTerminal(j.status);
      });
  Say(slow_id + " is " + std::string(ToString(slow.status)) + " at " +
      std::to_string(slow.progress_pct) + "% with a checkpoint");
  Command("cancel " + slow_id);
  JobRecord cancel_row = service_.Cancel(slow_id);
  Say("status " + std::string(ToString(cancel_row.status)) +
      (cancel_row.cancel_requested ? ", cancel requested: the worker stops it at its next check"
                                   : ""));
  slow = WaitForJob(slow_id, "it is cancelled",
                    [](const JobRecord& j) { return IsTerminal(j.status); });
  Command("show " + slow_id);
  Say("status: " + std::string(ToString(slow.status)) +
      "  progress_pct: " + std::to_string(slow.progress_pct) +
      "  result_path: " + (slow.result_path ? *slow.result_path : "-") + " (no bundle)");
  Say("checkpoint_path: " + (slow.checkpoint_path ? *slow.checkpoint_path : "-"));
  report["cancelled"] = {
      {"job_id", slow_id}, {"status", ToString(slow.status)}, {"progress_pct", slow.progress_pct}};

  Step("Wait for the other jobs");
  std::vector<std::string> others(job_ids.begin() + 1, job_ids.end());
  WaitForAllTerminal(others);
  JobFilter mine;
  mine.created_from = started_at_;
  PrintList("list --created-from " + since, mine);
  const std::string retried_id = JobId("reversal-bob");
  JobRecord retried = service_.GetJob(retried_id);
  Say(retried_id +
      " failed once on purpose (fail_at_day) and was retried automatically: " + "retry_count " +
      std::to_string(retried.retry_count) + ", status " + std::string(ToString(retried.status)));

  Step("Resume the cancelled job: it continues from its checkpoint");
  Command("resume " + slow_id);
  JobRecord resumed = service_.Resume(slow_id);
  Say("status " + std::string(ToString(resumed.status)) + ", retry_count " +
      std::to_string(resumed.retry_count));
  ProgressBar bar(ctx_.interactive(), "  " + slow_id, 100);
  slow = WaitForJob(slow_id, "it finishes", [&bar](const JobRecord& j) {
    bar.Update(j.progress_pct);
    return IsTerminal(j.status);
  });
  bar.Finish();
  Command("show " + slow_id);
  Say("status: " + std::string(ToString(slow.status)) + "  attempt: " +
      std::to_string(slow.attempt) + "  retry_count: " + std::to_string(slow.retry_count));
  if (slow.status == JobStatus::kCompleted) {
    const std::optional<EngineReport> engine = ReadEngineReport(service_.ReadSummaryText(slow));
    if (engine) {
      auto text = [](const std::optional<int64_t>& value) {
        return value ? std::to_string(*value) : std::string("null");
      };
      Say("summary.engine: resumed at day " + text(engine->resumed_at_day) + " of " +
          text(engine->business_days) + ", computed " + text(engine->computed_days) +
          " day(s) in this attempt instead of starting over");
      report["resumed"] = {{"job_id", slow_id},
                           {"status", "completed"},
                           {"engine", nlohmann::json::parse(EngineReportJson(*engine))["engine"]}};
    }
  } else {
    report["resumed"] = {{"job_id", slow_id}, {"status", ToString(slow.status)}};
  }

  Step("Stop the worker");
  worker.Stop();
  worker.Check();
  worker_ = nullptr;
  Say("stopped (a `btstore worker` stops on Ctrl-C or SIGTERM; --until-idle exits when done)");

  Step("List jobs with filters");
  JobFilter alice = mine;
  alice.created_by = "alice";
  PrintList("list --user alice --created-from " + since, alice);
  JobFilter momentum = mine;
  momentum.alpha_name = "momentum";
  momentum.statuses = {JobStatus::kCompleted};
  PrintList("list --alpha momentum --status completed --created-from " + since, momentum);
  JobFilter range = mine;
  range.range_from = Date::Parse("2018-03-01");
  range.range_to = Date::Parse("2018-03-31");
  PrintList("list --from 2018-03-01 --to 2018-03-31 --created-from " + since +
                "    # backtests covering March 2018",
            range);

  Step("Load a result, whole and a date-range slice");
  // A two-year backtest: its files hold several row groups, so a one-month slice skips some.
  const std::string result_id = JobId("momentum-carol");
  nlohmann::json whole = LoadResult(result_id, {}, "result " + result_id);
  ReadOptions june;
  june.from = Date::Parse("2020-06-01");
  june.to = Date::Parse("2020-06-30");
  nlohmann::json slice =
      LoadResult(result_id, june, "result " + result_id + " --from 2020-06-01 --to 2020-06-30");
  report["result"] = {{"whole", whole}, {"slice", slice}};
  Say("polars reads the same files: pl.read_parquet(\"" +
      (fs::path(service_.ResolveResultPath(service_.GetJob(result_id))) / "daily_signals.parquet")
          .string() +
      "\")");

  Step("Verify bundles against their manifests");
  Command("verify");
  VerifyReport verified = app_->Verify({});
  Say("checked " + std::to_string(verified.checked) + " bundle(s), " +
      std::to_string(verified.problems.size()) + " problem(s)");
  for (const VerifyProblem& problem : verified.problems) {
    Say("  " + (problem.job_id.empty() ? problem.path : problem.job_id) + ": " + problem.message);
  }
  report["verify"] = {{"checked", verified.checked},
                      {"problems", static_cast<int64_t>(verified.problems.size())}};

  Step("Retention: pin a job, then see what cleanup would remove");
  Command("pin " + result_id);
  service_.Pin(result_id, true);
  Command("cleanup --retention-days 0 --dry-run");
  RetentionOptions retention;
  retention.retention_days = 0;
  retention.dry_run = true;
  RetentionReport would = app_->Cleanup(retention);
  int64_t ours = std::count_if(would.job_ids.begin(), would.job_ids.end(), [&](const auto& id) {
    return id.rfind("demo-" + run_id_ + "-", 0) == 0;
  });
  Say("would remove " + std::to_string(would.removed) + " job(s), " + std::to_string(ours) +
      " of them from this run; the pinned " + result_id + " is not among them: " +
      (std::find(would.job_ids.begin(), would.job_ids.end(), result_id) == would.job_ids.end()
           ? "yes"
           : "NO"));
  Command("pin " + result_id + " --off");
  service_.Pin(result_id, false);
  Say("nothing was removed (dry run); `btstore cleanup` without --dry-run removes rows and "
      "bundles");
  report["cleanup_dry_run"] = {{"would_remove", would.removed}, {"from_this_run", ours}};

  nlohmann::json final_jobs = nlohmann::json::array();
  for (const std::string& job_id : job_ids) {
    final_jobs.push_back(
        {{"job_id", job_id}, {"status", ToString(service_.GetJob(job_id).status)}});
  }
  report["jobs"] = final_jobs;
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - tour_start).count();
  report["seconds"] = elapsed;
  std::ostringstream took;
  took.precision(1);
  took << std::fixed << elapsed;
  out_ << "\nDone in " << took.str()
       << " s. Try `btstore --help` and `btstore <command> --help`.\n";
  if (ctx_.json) PrintJson(report);
  return 0;
}

}  // namespace

void RegisterDemoCommand(CLI::App& app, Action& action) {
  auto fast = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand(
      "demo", "A tour: submit, work, cancel, resume, list, result, verify, cleanup dry-run");
  cmd->add_flag("--fast", *fast, "smaller backtests (fewer symbols, shorter delays)");
  SetExamples(cmd,
              "  btstore demo                         # on the embedded catalog btstore-data/\n"
              "  btstore demo --fast\n"
              "  btstore --catalog postgresql://localhost/research --artifact-root /tmp/r demo\n"
              "Job ids are prefixed demo-<run id>-, so the demo can run again on the same\n"
              "catalog. With --json the narrative goes to stderr and a summary to stdout.\n");
  cmd->callback([&action, fast] {
    action = [fast](Context& ctx) {
      Demo demo(ctx, *fast);
      return demo.Run();
    };
  });
}

}  // namespace btstore::cli

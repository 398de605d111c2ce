// Commands on jobs: migrate, submit, import, list, show, result, cancel, resume, pin.

#include <arrow/table.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <sstream>

#include "btstore/bundle.h"
#include "btstore/errors.h"
#include "btstore/service.h"
#include "btstore/wire.h"
#include "cli/cli.h"

namespace btstore::cli {
namespace {

namespace fs = std::filesystem;

std::string DefaultUser() {
  const char* user = std::getenv("USER");
  return user != nullptr && *user != '\0' ? user : "unknown";
}

std::string RequireJobId(const std::string& job_id) {
  ValidateJobId(job_id);
  return job_id;
}

void PrintJobLines(std::ostream& out, const nlohmann::json& doc, const std::string& indent) {
  size_t width = 0;
  for (const auto& [key, value] : doc.items()) width = std::max(width, key.size());
  std::vector<std::string> keys;
  for (const std::string& key : wire::JobFieldOrder()) {
    if (doc.contains(key)) keys.push_back(key);
  }
  for (const auto& [key, value] : doc.items()) {
    if (std::find(keys.begin(), keys.end(), key) == keys.end()) keys.push_back(key);
  }
  for (const std::string& key : keys) {
    const nlohmann::json& value = doc[key];
    out << indent << Printable(key) << ":" << std::string(width - key.size() + 1, ' ');
    if (value.is_string()) {
      out << Printable(value.get<std::string>());
    } else if (value.is_null()) {
      out << "-";
    } else {
      out << Printable(value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }
    out << "\n";
  }
}

void PrintJobBrief(const JobRecord& job) {
  std::cout << job.job_id << ": " << ToString(job.status);
  if (job.cancel_requested && job.status == JobStatus::kRunning) {
    std::cout << " (cancel requested; the worker stops it shortly)";
  }
  std::cout << "\n";
}

// --- migrate ---------------------------------------------------------------------------------

void AddMigrate(CLI::App& app, Action& action) {
  CLI::App* cmd = app.add_subcommand("migrate", "Create or upgrade the catalog schema");
  SetExamples(cmd,
              "  btstore migrate\n"
              "  btstore --catalog postgresql://btstore@db/research migrate\n"
              "Running it twice changes nothing. Every other command also migrates first.\n");
  cmd->callback([&action] {
    action = [](Context& ctx) {
      std::unique_ptr<Catalog> catalog = Catalog::Open(ctx.catalog_url);
      int applied = catalog->Migrate();
      if (ctx.json) {
        PrintJson({{"applied", applied}, {"backend", catalog->Backend()}});
      } else {
        std::cout << "catalog " << catalog->Backend() << ": "
                  << (applied == 0 ? std::string("schema up to date")
                                   : std::to_string(applied) + " migration(s) applied")
                  << "\n";
      }
      return 0;
    };
  });
}

// --- submit ----------------------------------------------------------------------------------

// Defaults are the library's (JobSpec's).
// The flags that name a job, shared by submit and import.
struct JobFlags {
  std::string alpha, start, end, user, job_id;
  std::string weight_method = JobSpec{}.weight_method;
  std::string config = JobSpec{}.config_json;

  // The job spec they give (InvalidArgument naming the flag for a bad value).
  JobSpec Spec() const {
    JobSpec spec;
    spec.job_id = job_id;
    if (!spec.job_id.empty()) ValidateJobId(spec.job_id);
    spec.alpha_name = alpha;
    spec.start_date = Date::Parse(start, "--start");
    spec.end_date = Date::Parse(end, "--end");
    spec.weight_method = weight_method;
    spec.config_json = wire::ParseConfigText(config, "--config");
    spec.created_by = user.empty() ? DefaultUser() : user;
    return spec;
  }
};

struct SubmitFlags : JobFlags {
  std::string priority = std::string(ToString(JobSpec{}.priority));
  int max_retries = JobSpec{}.max_retries;
  int job_timeout = JobSpec{}.job_timeout_seconds;
};

void AddSubmit(CLI::App& app, Action& action) {
  auto flags = std::make_shared<SubmitFlags>();
  CLI::App* cmd = app.add_subcommand("submit", "Submit a backtest job (idempotent)");
  cmd->add_option("--alpha", flags->alpha, "alpha name")->required();
  cmd->add_option("--start", flags->start, "first day of the backtest (YYYY-MM-DD)")->required();
  cmd->add_option("--end", flags->end, "last day of the backtest (YYYY-MM-DD)")->required();
  cmd->add_option("--weight-method", flags->weight_method, "weighting method")
      ->capture_default_str();
  cmd->add_option("--config", flags->config,
                  "engine configuration, a JSON object, e.g. "
                  "'{\"engine\":\"synthetic\",\"seed\":7,\"symbols\":500}'")
      ->capture_default_str();
  cmd->add_option("--user", flags->user, "submitting user [default: $USER, else \"unknown\"]");
  cmd->add_option("--priority", flags->priority, "high, normal or low")->capture_default_str();
  cmd->add_option("--job-id", flags->job_id,
                  "idempotency key [default: derived from alpha, dates, method, config, user]");
  cmd->add_option("--max-retries", flags->max_retries, "automatic retries after a failure")
      ->capture_default_str();
  cmd->add_option("--job-timeout", flags->job_timeout, "seconds, 300..14400")
      ->capture_default_str();
  SetExamples(cmd,
              "  btstore submit --alpha momentum --start 2020-01-01 --end 2020-12-31\n"
              "  btstore submit --alpha value --start 2019-01-01 --end 2019-06-30 "
              "--weight-method signal \\\n"
              "      --config '{\"engine\":\"synthetic\",\"seed\":3,\"symbols\":200}' "
              "--user alice --priority high\n"
              "Submitting the same job twice returns the same job_id and creates one job.\n"
              "--json prints {\"job_id\": ..., \"created\": true|false}.\n");
  cmd->callback([&action, flags] {
    action = [flags](Context& ctx) {
      JobSpec spec = flags->Spec();
      spec.priority = ParsePriority(flags->priority);
      spec.max_retries = flags->max_retries;
      spec.job_timeout_seconds = flags->job_timeout;

      std::unique_ptr<Service> service = ctx.OpenService();
      SubmitResult result = service->jobs().Submit(std::move(spec));
      if (ctx.json) {
        PrintJson(wire::SubmitJson(result));
      } else {
        std::cout << result.job.job_id << "\n";
        std::cerr << (result.created ? "submitted" : "already submitted") << " (status "
                  << ToString(result.job.status) << ")\n";
      }
      return 0;
    };
  });
}

// --- import ----------------------------------------------------------------------------------

struct ImportFlags : JobFlags {
  std::string dir;
};

void AddImport(CLI::App& app, Action& action) {
  auto flags = std::make_shared<ImportFlags>();
  CLI::App* cmd =
      app.add_subcommand("import", "Store a bundle computed elsewhere as a completed job");
  cmd->add_option("DIR", flags->dir, "the bundle directory (e.g. written with polars)")->required();
  cmd->add_option("--alpha", flags->alpha, "alpha name")->required();
  cmd->add_option("--start", flags->start, "first day of the backtest (YYYY-MM-DD)")->required();
  cmd->add_option("--end", flags->end, "last day of the backtest (YYYY-MM-DD)")->required();
  cmd->add_option("--weight-method", flags->weight_method, "weighting method")
      ->capture_default_str();
  cmd->add_option("--config", flags->config, "the backtest's configuration, a JSON object")
      ->capture_default_str();
  cmd->add_option("--user", flags->user, "owning user [default: $USER, else \"unknown\"]");
  cmd->add_option("--job-id", flags->job_id,
                  "the job's id [default: derived from alpha, dates, method, config, user]");
  SetExamples(
      cmd,
      "  btstore import research/out/momentum --alpha momentum --start 2020-01-02 "
      "--end 2020-12-31\n"
      "  btstore --json import /tmp/b --alpha value --start 2019-01-02 --end 2019-06-28 "
      "--job-id value-h1 --user alice\n"
      "The bundle is validated and written anew (manifest, checksums); the job is\n"
      "created completed. Importing the same bundle again changes nothing; another\n"
      "bundle under an existing job_id exits with status 4.\n"
      "--json prints {\"job_id\", \"created\": true|false, \"status\", \"result_path\"}.\n");
  cmd->callback([&action, flags] {
    action = [flags](Context& ctx) {
      JobSpec spec = flags->Spec();

      std::unique_ptr<Service> service = ctx.OpenService();
      SubmitResult result = service->jobs().Import(flags->dir, std::move(spec));
      if (ctx.json) {
        PrintJson(wire::ImportJson(result));
      } else {
        std::cout << result.job.job_id << "\n";
        std::cerr << (result.created ? "imported as " : "already imported as ")
                  << result.job.result_path.value_or("") << "\n";
      }
      return 0;
    };
  });
}

// --- list ------------------------------------------------------------------------------------

// Every list flag as text, parsed by the wire layer as an HTTP query would be.
struct ListFlags {
  std::map<std::string, std::string> fields = {{"limit", std::to_string(PageRequest{}.limit)}};
};

void AddList(CLI::App& app, Action& action) {
  auto flags = std::make_shared<ListFlags>();
  CLI::App* cmd = app.add_subcommand("list", "List jobs, newest first, filtered and paginated");
  auto add = [&](const char* field, const std::string& help) {
    return cmd->add_option(wire::FlagName(field), flags->fields[field], help);
  };
  add("user", "only jobs created by this user");
  add("alpha", "only jobs of this alpha");
  add("status",
      "only jobs in these statuses, comma separated (pending,running,completed,failed,cancelled)");
  add("created_from", "created at or after: a date or an RFC 3339 timestamp (UTC without offset)");
  add("created_to", "created at or before: a date (that whole day, UTC) or an RFC 3339 timestamp");
  add("from", "backtest range overlaps [from, to] (YYYY-MM-DD)");
  add("to", "backtest range overlaps [from, to] (YYYY-MM-DD)");
  add("min_mean_ic", "only jobs with mean_ic >= this");
  add("min_icir", "only jobs with icir >= this");
  add("min_hit_rate", "only jobs with hit_rate >= this");
  add("engine", "only jobs of these engines, comma separated");
  add("limit", "rows per page, 1.." + std::to_string(kMaxListLimit))->capture_default_str();
  add("after", "cursor printed by the previous page");
  add("offset", "skip this many rows (slow on deep pages; prefer --after)");
  SetExamples(cmd,
              "  btstore list\n"
              "  btstore list --user alice --status completed,failed --limit 20\n"
              "  btstore list --alpha momentum --created-from 2026-11-01 --from 2020-01-01 "
              "--to 2020-12-31\n"
              "  btstore list --after CURSOR          # the next page\n"
              "--json prints {\"jobs\": [...], \"next\": CURSOR-or-null}.\n");
  cmd->callback([&action, flags] {
    action = [flags](Context& ctx) {
      // Bad filters are reported before the catalog is opened.
      const wire::ListRequest request = wire::ParseListRequest(flags->fields, wire::FlagName);
      std::unique_ptr<Service> service = ctx.OpenService();
      JobPage result = service->jobs().ListJobs(request.filter, request.page);
      if (ctx.json) {
        PrintJson(wire::PageJson(result));
        return 0;
      }
      std::vector<std::vector<std::string>> rows;
      for (const JobRecord& job : result.jobs) {
        rows.push_back({job.job_id, job.alpha_name, job.created_by,
                        std::string(ToString(job.status)), job.engine,
                        job.start_date.ToString() + ".." + job.end_date.ToString(),
                        HumanMetric(job.metrics.mean_ic), HumanMetric(job.metrics.icir),
                        HumanMetric(job.metrics.hit_rate), HumanTime(job.created_at)});
      }
      if (rows.empty()) {
        std::cout << "no jobs match\n";
      } else {
        PrintTable(std::cout,
                   {"JOB ID", "ALPHA", "USER", "STATUS", "ENGINE", "DATES", "MEAN IC", "ICIR",
                    "HIT RATE", "CREATED"},
                   rows);
      }
      if (result.next)
        std::cout << "\nnext page: btstore list ... --after " << *result.next << "\n";
      return 0;
    };
  });
}

// --- show ------------------------------------------------------------------------------------

void AddShow(CLI::App& app, Action& action) {
  auto job_id = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("show", "Show a job's catalog fields and its summary");
  cmd->add_option("JOB_ID", *job_id, "the job")->required();
  SetExamples(cmd,
              "  btstore show bt-4f1c...\n"
              "  btstore --json show my-job | jq .summary.snapshot_id\n");
  cmd->callback([&action, job_id] {
    action = [job_id](Context& ctx) {
      RequireJobId(*job_id);
      std::unique_ptr<Service> service = ctx.OpenService();
      const nlohmann::json doc = wire::ShowJson(service->jobs(), service->jobs().GetJob(*job_id));
      if (ctx.json) {
        PrintJson(doc);
        return 0;
      }
      nlohmann::json fields = doc;
      fields.erase("summary");
      fields.erase("summary_error");
      PrintJobLines(std::cout, fields, "");
      if (doc["status"] == "pending") {
        // A job whose engine no worker has stays pending: say what it waits for.
        const std::string engine = doc["engine"].get<std::string>();
        const std::vector<std::string> builtins = service->engines().Names();
        const bool builtin = std::find(builtins.begin(), builtins.end(), engine) != builtins.end();
        std::cout << "waiting for: a worker with engine \"" << engine << "\" (btstore worker"
                  << (builtin ? "" : " --engine " + engine + "=COMMAND") << ")\n";
      }
      if (doc.contains("summary_error")) {
        std::cout << "summary: unavailable (" << doc["summary_error"]["code"].get<std::string>()
                  << ": " << doc["summary_error"]["message"].get<std::string>() << ")\n";
      } else if (doc.contains("summary")) {
        nlohmann::json summary = doc["summary"];
        std::cout << "summary:\n";
        nlohmann::json artifacts = summary.contains("artifacts") ? summary["artifacts"] : nullptr;
        summary.erase("artifacts");
        PrintJobLines(std::cout, summary, "  ");
        if (artifacts.is_object()) {
          std::cout << "  artifacts:\n";
          for (const auto& [name, info] : artifacts.items()) {
            std::cout << "    " << Printable(name) << ": "
                      << info.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                      << "\n";
          }
        }
      }
      return 0;
    };
  });
}

// --- result ----------------------------------------------------------------------------------

struct ResultFlags {
  std::string job_id, from, to, columns, tables, table, export_dir;
};

void AddResult(CLI::App& app, Action& action) {
  auto flags = std::make_shared<ResultFlags>();
  CLI::App* cmd = app.add_subcommand("result", "Load a completed job's result (whole or a slice)");
  cmd->add_option("JOB_ID", flags->job_id, "the job")->required();
  cmd->add_option("--from", flags->from, "first day to load (YYYY-MM-DD, inclusive)");
  cmd->add_option("--to", flags->to, "last day to load (YYYY-MM-DD, inclusive)");
  cmd->add_option("--columns", flags->columns,
                  "columns to load besides date, comma separated (e.g. signal,ic)");
  cmd->add_option("--tables", flags->tables, "tables to load, comma separated [default: all]");
  cmd->add_option("--table", flags->table,
                  "load one table or JSON artifact by name (e.g. daily_portfolio_returns, "
                  "walk_forward); an artifact's document is printed");
  cmd->add_option("--export", flags->export_dir,
                  "write what was loaded as a new bundle in this (new) directory");
  SetExamples(cmd,
              "  btstore result my-job\n"
              "  btstore result my-job --from 2020-06-01 --to 2020-06-30 --columns signal,ic\n"
              "  btstore result my-job --table net_portfolio_returns --from 2020-06-01\n"
              "  btstore --json result my-job --table walk_forward | jq .artifacts.walk_forward\n"
              "  btstore result my-job --export /tmp/my-job-copy\n"
              "Exit status 3: no such job; 4: no usable bundle; 6: summary.json or a Parquet\n"
              "file is missing, corrupt or of the wrong schema.\n");
  cmd->callback([&action, flags] {
    action = [flags](Context& ctx) {
      RequireJobId(flags->job_id);
      const std::string tables =
          flags->table.empty() ? flags->tables : flags->tables + "," + flags->table;
      const ReadOptions options =
          wire::ParseReadRequest(flags->from, flags->to, flags->columns, tables, wire::FlagName);
      if (!flags->export_dir.empty()) RequireNewDirectory(flags->export_dir, "--export");
      std::unique_ptr<Service> service = ctx.OpenService();
      ReadStats stats;
      BacktestResult result = service->jobs().GetResult(flags->job_id, options, &stats);
      nlohmann::json doc = wire::ResultJson(flags->job_id, result, options, stats);
      if (!flags->export_dir.empty()) {
        RequireNothingUnavailable(result, "export the result");
        const std::string source =
            service->jobs().ResolveResultPath(service->jobs().GetJob(flags->job_id));
        WriteBundleCopy(result, source, flags->export_dir);
        doc["exported_to"] = fs::absolute(flags->export_dir).string();
      }
      if (ctx.json) {
        PrintJson(doc);
        return 0;
      }
      std::cout << "job " << flags->job_id << "  snapshot " << Printable(result.snapshot_id)
                << "\n";
      for (size_t i = 0; i < Metrics::kNames.size(); ++i) {
        std::cout << "  " << Metrics::kNames[i] << std::string(18 - Metrics::kNames[i].size(), ' ')
                  << HumanMetric(result.metrics.At(i)) << "\n";
      }
      std::vector<std::vector<std::string>> rows;
      for (const auto& [name, info] : doc["tables"].items()) {
        std::string columns;
        for (const auto& column : info["columns"]) {
          columns += (columns.empty() ? "" : ", ") + column.get<std::string>();
        }
        rows.push_back({name, std::to_string(info["rows"].get<int64_t>()), columns});
      }
      std::cout << "\n";
      if (!rows.empty()) PrintTable(std::cout, {"TABLE", "ROWS", "COLUMNS"}, rows);
      for (const auto& [name, info] : doc["artifacts"].items()) {
        if (!info["available"].get<bool>()) {
          std::cout << name << ": unavailable (" << info["error"]["message"].get<std::string>()
                    << ")\n";
        } else if (info.contains("document")) {
          std::cout << name << ":\n" << info["document"].dump(2) << "\n";
        } else {
          std::cout << name << ": available (--table " << name << " prints it)\n";
        }
      }
      std::cout << "\nread " << stats.bytes_read << " bytes of Parquet (" << stats.row_groups_read
                << " row groups read, " << stats.row_groups_skipped << " skipped)\n";
      if (doc.contains("exported_to")) {
        std::cout << "exported to " << doc["exported_to"].get<std::string>() << "\n";
      }
      return 0;
    };
  });
}

// --- cancel, resume, pin ---------------------------------------------------------------------

void AddCancelResume(CLI::App& app, Action& action) {
  auto cancel_id = std::make_shared<std::string>();
  CLI::App* cancel = app.add_subcommand("cancel", "Cancel a pending or running job");
  cancel->add_option("JOB_ID", *cancel_id, "the job")->required();
  SetExamples(cancel,
              "  btstore cancel my-job\n"
              "A pending job is cancelled at once; a running job's worker stops it within a\n"
              "heartbeat and leaves no bundle. Cancelling a finished job exits with status 4.\n");
  cancel->callback([&action, cancel_id] {
    action = [cancel_id](Context& ctx) {
      RequireJobId(*cancel_id);
      JobRecord job = ctx.OpenService()->jobs().Cancel(*cancel_id);
      if (ctx.json) {
        PrintJson(wire::JobJson(job));
      } else {
        PrintJobBrief(job);
      }
      return 0;
    };
  });

  auto resume_id = std::make_shared<std::string>();
  CLI::App* resume = app.add_subcommand("resume", "Run a failed or cancelled job again");
  resume->add_option("JOB_ID", *resume_id, "the job")->required();
  SetExamples(resume,
              "  btstore resume my-job && btstore worker --until-idle\n"
              "The next attempt continues from the last checkpoint. Resuming a job that is not\n"
              "failed or cancelled exits with status 4.\n");
  resume->callback([&action, resume_id] {
    action = [resume_id](Context& ctx) {
      RequireJobId(*resume_id);
      JobRecord job = ctx.OpenService()->jobs().Resume(*resume_id);
      if (ctx.json) {
        PrintJson(wire::JobJson(job));
      } else {
        PrintJobBrief(job);
      }
      return 0;
    };
  });

  auto pin_id = std::make_shared<std::string>();
  auto off = std::make_shared<bool>(false);
  CLI::App* pin = app.add_subcommand("pin", "Exempt a job from retention (or lift that)");
  pin->add_option("JOB_ID", *pin_id, "the job")->required();
  pin->add_flag("--off", *off, "lift the pin");
  SetExamples(pin,
              "  btstore pin my-job          # cleanup never removes it\n"
              "  btstore pin my-job --off\n");
  pin->callback([&action, pin_id, off] {
    action = [pin_id, off](Context& ctx) {
      RequireJobId(*pin_id);
      ctx.OpenService()->jobs().Pin(*pin_id, !*off);
      if (ctx.json) {
        PrintJson({{"job_id", *pin_id}, {"pinned", !*off}});
      } else {
        std::cout << *pin_id << ": " << (*off ? "unpinned" : "pinned (exempt from retention)")
                  << "\n";
      }
      return 0;
    };
  });
}

}  // namespace

void RegisterJobCommands(CLI::App& app, Action& action) {
  AddMigrate(app, action);
  AddSubmit(app, action);
  AddImport(app, action);
  AddList(app, action);
  AddShow(app, action);
  AddResult(app, action);
  AddCancelResume(app, action);
}

}  // namespace btstore::cli

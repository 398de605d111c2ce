// Commands on bundle directories: bundle sample, bundle inspect, bundle rewrite.

#include <arrow/table.h>

#include <iostream>
#include <memory>

#include "btstore/bundle.h"
#include "btstore/engine.h"
#include "btstore/errors.h"
#include "btstore/wire.h"
#include "cli/cli.h"

namespace btstore::cli {
namespace {

namespace fs = std::filesystem;

// The sample's first day: a Wednesday, so the span starts on a business day.
constexpr int kSampleYear = 2020;

// The last of `days` business days starting at `start` (a business day).
Date AfterBusinessDays(Date start, int days) {
  Date day = start;
  for (int counted = 1; counted < days;) {
    ++day.days;
    if (IsBusinessDay(day)) ++counted;
  }
  return day;
}

void PrintManifest(const std::map<std::string, ArtifactInfo>& manifest) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& [file, info] : manifest) {
    rows.push_back({file, std::to_string(info.rows), std::to_string(info.bytes), info.checksum});
  }
  PrintTable(std::cout, {"file", "rows", "bytes", "checksum"}, rows);
}

// --- bundle sample ---------------------------------------------------------------------------

struct SampleFlags {
  std::string dir;
  int days = 60;
  int symbols = 100;
  uint64_t seed = SyntheticConfig{}.seed;
  std::string compression = std::string(ToString(WriteOptions{}.compression));
};

void AddSample(CLI::App& bundle, Action& action) {
  auto flags = std::make_shared<SampleFlags>();
  CLI::App* cmd = bundle.add_subcommand("sample", "Write a synthetic, valid bundle into DIR");
  cmd->add_option("DIR", flags->dir, "new bundle directory (must not exist)")->required();
  cmd->add_option("--days", flags->days, "business days from 2020-01-01")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  cmd->add_option("--symbols", flags->symbols, "permnos per day")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  cmd->add_option("--seed", flags->seed, "random seed (same seed, same bundle)")
      ->capture_default_str();
  cmd->add_option("--compression", flags->compression, "snappy or zstd")->capture_default_str();
  SetExamples(cmd,
              "  btstore bundle sample /tmp/b\n"
              "  btstore bundle sample /tmp/big --days 252 --symbols 3000 --seed 1\n"
              "  btstore --json bundle sample /tmp/b2 --compression zstd\n");
  cmd->callback([&action, flags] {
    action = [flags](Context& ctx) {
      WriteOptions options;
      options.compression = ParseCompression(flags->compression);
      RequireNewDirectory(flags->dir, "DIR");
      fs::path dir = flags->dir;
      JobSpec spec;
      std::string name = fs::absolute(dir).filename().string();
      try {
        ValidateJobId(name);
        spec.job_id = name;
      } catch (const InvalidArgument&) {
        spec.job_id = "sample";  // the directory name need not be a job id
      }
      spec.alpha_name = "sample";
      spec.start_date = Date::FromYmd(kSampleYear, 1, 1);
      spec.end_date = AfterBusinessDays(spec.start_date, flags->days);
      spec.weight_method = "signal";
      spec.config_json = nlohmann::json{{"seed", flags->seed}, {"symbols", flags->symbols}}.dump();
      spec.created_by = "btstore";
      BacktestResult result = GenerateSyntheticResult(spec);
      auto manifest = WriteBundle(result, dir, options);
      if (ctx.json) {
        PrintJson({{"path", fs::absolute(dir).string()},
                   {"job_id", result.job_id},
                   {"start_date", spec.start_date.ToString()},
                   {"end_date", spec.end_date.ToString()},
                   {"artifacts", wire::ManifestJson(manifest)}});
      } else {
        std::cout << "wrote bundle " << dir.string() << " (" << spec.start_date.ToString() << " .. "
                  << spec.end_date.ToString() << ", " << flags->symbols << " symbols)\n";
        PrintManifest(manifest);
      }
      return 0;
    };
  });
}

// --- bundle inspect --------------------------------------------------------------------------

void AddInspect(CLI::App& bundle, Action& action) {
  auto dir = std::make_shared<std::string>();
  CLI::App* cmd = bundle.add_subcommand(
      "inspect", "Validate a bundle directory; print its summary, schemas and row counts");
  cmd->add_option("DIR", *dir, "bundle directory")->required();
  SetExamples(cmd,
              "  btstore bundle inspect btstore-data/results/JOB_ID\n"
              "  btstore --json bundle inspect /tmp/b | jq '.tables.daily_signals.rows'\n"
              "Exit status 4: no such directory; 6: summary.json or a Parquet file is missing,\n"
              "corrupt, of the wrong schema or differs from the manifest.\n");
  cmd->callback([&action, dir] {
    action = [dir](Context& ctx) {
      BundleInfo info = InspectBundle(*dir);
      const BacktestResult& s = info.summary_only;
      std::string manifest = info.has_manifest ? "verified" : "absent";
      if (ctx.json) {
        nlohmann::json tables = nlohmann::json::object();
        for (const auto& t : info.tables) {
          tables[t.name] = {{"rows", t.rows},
                            {"bytes", t.bytes},
                            {"row_groups", t.row_groups},
                            {"schema", t.schema}};
        }
        nlohmann::json doc = {{"path", fs::absolute(*dir).string()},
                              {"valid", true},
                              {"manifest", manifest},
                              {"summary", wire::SummaryJson(s)},
                              {"tables", tables}};
        PrintJson(doc);
        return 0;
      }
      // Labels padded to the longest metric name, so the values line up.
      // The values come from the bundle, which anyone may have written.
      auto line = [](const std::string& label, const std::string& value) {
        std::cout << "  " << label << ":" << std::string(19 - label.size(), ' ') << Printable(value)
                  << "\n";
      };
      std::cout << "bundle " << Printable(*dir) << ": valid\n";
      line("job_id", s.job_id.empty() ? "-" : s.job_id);
      line("alpha_name", s.alpha_name.empty() ? "-" : s.alpha_name);
      line("range", (s.start_date ? s.start_date->ToString() : "-") + " .. " +
                        (s.end_date ? s.end_date->ToString() : "-"));
      line("snapshot_id", s.snapshot_id);
      std::string versions;
      for (const auto& [name, version] : s.dataset_version_ids) {
        versions += (versions.empty() ? "" : " ") + name + "=" + version;
      }
      line("dataset_versions", versions.empty() ? "-" : versions);
      for (size_t i = 0; i < Metrics::kNames.size(); ++i) {
        line(std::string(Metrics::kNames[i]), HumanMetric(s.metrics.At(i)));
      }
      line("manifest", info.has_manifest ? "present; sizes and xxh3-128 checksums verified"
                                         : "absent (written by another tool); nothing to verify");
      std::cout << "\n";
      std::vector<std::vector<std::string>> rows;
      for (const auto& t : info.tables) {
        rows.push_back({t.name, std::to_string(t.rows), std::to_string(t.bytes),
                        std::to_string(t.row_groups), t.schema});
      }
      PrintTable(std::cout, {"table", "rows", "bytes", "row groups", "schema"}, rows);
      return 0;
    };
  });
}

// --- bundle rewrite --------------------------------------------------------------------------

struct RewriteFlags {
  std::string source;
  std::string target;
  std::string compression = std::string(ToString(WriteOptions{}.compression));
};

void AddRewrite(CLI::App& bundle, Action& action) {
  auto flags = std::make_shared<RewriteFlags>();
  CLI::App* cmd = bundle.add_subcommand(
      "rewrite", "Read and validate a bundle, then write it anew (manifest included) as DST");
  cmd->add_option("SRC", flags->source, "bundle to read (e.g. written by polars or pyarrow)")
      ->required();
  cmd->add_option("DST", flags->target, "new bundle directory (must not exist)")->required();
  cmd->add_option("--compression", flags->compression, "snappy or zstd")->capture_default_str();
  SetExamples(cmd,
              "  btstore bundle rewrite data/backtest_results/JOB_ID /tmp/JOB_ID\n"
              "  btstore --json bundle rewrite old/ new/ --compression zstd\n"
              "The tables and metrics come out identical; summary.json gains schema_version,\n"
              "written_at, writer and the artifacts manifest.\n");
  cmd->callback([&action, flags] {
    action = [flags](Context& ctx) {
      WriteOptions options;
      options.compression = ParseCompression(flags->compression);
      if (flags->source.empty()) {
        throw InvalidArgument("SRC must name a bundle directory", {{"field", "SRC"}});
      }
      RequireNewDirectory(flags->target, "DST");
      BacktestResult result = ReadBundle(flags->source);
      RequireNothingUnavailable(result, "rewrite the bundle");
      auto manifest = WriteBundleCopy(result, flags->source, flags->target, options);
      if (ctx.json) {
        PrintJson({{"source", fs::absolute(flags->source).string()},
                   {"path", fs::absolute(flags->target).string()},
                   {"artifacts", wire::ManifestJson(manifest)}});
      } else {
        std::cout << "rewrote " << flags->source << " as " << flags->target << "\n";
        PrintManifest(manifest);
      }
      return 0;
    };
  });
}

}  // namespace

void RegisterBundleCommands(CLI::App& app, Action& action) {
  CLI::App* bundle = app.add_subcommand("bundle", "Work on bundle directories directly");
  bundle->require_subcommand(1);
  SetExamples(bundle,
              "  btstore bundle sample /tmp/b && btstore bundle inspect /tmp/b\n"
              "  btstore bundle rewrite /path/from/python/tool /tmp/b2\n");
  AddSample(*bundle, action);
  AddInspect(*bundle, action);
  AddRewrite(*bundle, action);
}

}  // namespace btstore::cli

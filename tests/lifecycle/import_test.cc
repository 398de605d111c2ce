// Import (JobService::Import): a bundle computed elsewhere becomes a completed job, in one step
// that leaves nothing behind when it fails; the same import again changes nothing, another
// result under an existing job_id is refused. And the cost blocks a completed job's row copies
// from summary.json, for imports and for workers. On every backend.

#include <arrow/api.h>
#include <arrow/io/file.h>
#include <gtest/gtest.h>
#include <parquet/arrow/writer.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "btstore/errors.h"
#include "btstore/service.h"
#include "lifecycle/retention_fixture.h"
#include "support/result_compare.h"
#include "support/temp_dir.h"

namespace btstore::testing {
namespace {

namespace fs = std::filesystem;

constexpr double kNan = std::numeric_limits<double>::quiet_NaN();

void Check(const arrow::Status& status) { ASSERT_TRUE(status.ok()) << status.ToString(); }

const Date kStart = Date::FromYmd(2024, 1, 2);

// A result as another tool computes it: the three tables, portfolio returns on both bases,
// both JSON artifacts and the cost blocks in summary.json.
BacktestResult ForeignResult(double scale = 1.0) {
  BacktestResult result = SmallResult("", kStart, 8, 4);
  result.job_id.clear();
  result.alpha_name.clear();
  result.start_date.reset();
  result.end_date.reset();
  result.weight_method.clear();
  result.metrics.mean_ic = 0.1 * scale;
  result.metrics.icir = 1.0 / 3.0;
  result.metrics.hit_rate = 5e-324;
  result.metrics.coverage = kNan;
  result.snapshot_id = "snap-research";
  result.dataset_version_ids = {{"prices", "2024-02-01"}, {"universe", "u7"}};
  arrow::Date32Builder dates;
  arrow::DoubleBuilder gross, drag, net;
  for (int d = 0; d < 8; ++d) {
    Check(dates.Append(kStart.days + d));
    Check(d == 3 ? gross.Append(kNan) : gross.Append(0.001 * d * scale));
    Check(drag.Append(-0.0001));
    Check(d == 5 ? net.AppendNull() : net.Append(0.001 * d * scale - 0.0001));
  }
  auto date_array = dates.Finish().ValueOrDie();
  auto gross_array = gross.Finish().ValueOrDie();
  result.extra_tables["daily_portfolio_returns"] =
      arrow::Table::Make(arrow::schema({arrow::field("date", arrow::date32()),
                                        arrow::field("return", arrow::float64())}),
                         {date_array, gross_array});
  result.extra_tables["net_portfolio_returns"] = arrow::Table::Make(
      arrow::schema({arrow::field("date", arrow::date32()),
                     arrow::field("gross_return", arrow::float64()),
                     arrow::field("cost_drag", arrow::float64()),
                     arrow::field("net_return", arrow::float64())}),
      {date_array, gross_array, drag.Finish().ValueOrDie(), net.Finish().ValueOrDie()});
  result.json_artifacts["walk_forward"] =
      R"({"version": "1.0", "created_at": "2024-02-01T10:00:00", "windows": [{"test_ic": NaN}]})";
  result.json_artifacts["param_search"] =
      R"({"version": "1.0", "created_at": "2024-02-01T10:00:00", "combinations": []})";
  result.extra_summary_json =
      R"({"cost_config": {"commission_bps": 1.5, "impact": {"model": "sqrt", "k": 0.1}},)"
      R"( "cost_summary": {"total_cost_drag": -0.0008, "turnover": 0.30000000000000004},)"
      R"( "has_walk_forward": true, "has_param_search": true})";
  return result;
}

// An engine that returns a result with the cost blocks, as a platform engine does.
class CostlyEngine : public Engine {
 public:
  BacktestResult Run(const JobRecord& job, EngineContext& context) override {
    context.ReportProgress(100);
    BacktestResult result = ForeignResult();
    result.job_id = job.job_id;
    return result;
  }
};

class ImportTest : public StoredJobsTest {
 protected:
  void SetUp() override {
    StoredJobsTest::SetUp();
    if (IsSkipped()) return;
    engines_.Register("costly", [] { return std::make_unique<CostlyEngine>(); });
    ServiceOptions options;
    options.clock = &clock_;
    options.engines = &engines_;
    service_ = Service::Open(url_, root_.string(), options);
  }

  // Write `result` as another tool would: no manifest, no identity keys.
  fs::path Foreign(const std::string& name, const BacktestResult& result = ForeignResult()) {
    const fs::path dir = dir_.path() / "incoming" / name;
    fs::create_directories(dir.parent_path());
    WriteBundle(result, dir);
    nlohmann::json summary = nlohmann::json::parse(ReadText(dir / "summary.json"));
    for (const char* key : {"artifacts", "writer", "written_at", "schema_version"}) {
      summary.erase(key);
    }
    WriteText(dir / "summary.json", summary.dump());
    return dir;
  }

  static JobSpec ImportSpec(const std::string& job_id) {
    JobSpec spec;
    spec.job_id = job_id;
    spec.alpha_name = "research-momentum";
    spec.start_date = kStart;
    spec.end_date = Date{kStart.days + 7};
    spec.weight_method = "zscore";
    spec.config_json = R"({"lookback": 20, "source": "notebook"})";
    spec.created_by = "alice";
    return spec;
  }

  // Nothing of `job_id` anywhere: no row, no bundle, no staging debris.
  void ExpectNothingOf(const std::string& job_id) {
    EXPECT_FALSE(service_->catalog().FindJob(job_id).has_value()) << job_id;
    EXPECT_FALSE(fs::exists(root_ / job_id)) << job_id;
    std::error_code ec;
    const bool staging_empty =
        !fs::exists(root_ / ".staging") ||
        fs::directory_iterator(root_ / ".staging", ec) == fs::directory_iterator();
    EXPECT_TRUE(staging_empty) << job_id;
  }

  std::unique_ptr<Service> service_;
};

TEST_P(ImportTest, AnImportedBundleIsACompletedJobWithItsTablesMetricsAndCostBlocks) {
  const BacktestResult source = ForeignResult();
  const fs::path dir = Foreign("b", source);
  clock_.Set(TestNow() + std::chrono::minutes(3));
  SubmitResult imported = service_->jobs().Import(dir, ImportSpec("imp-1"));
  EXPECT_TRUE(imported.created);
  const JobRecord& job = imported.job;
  EXPECT_EQ(job.status, JobStatus::kCompleted);
  EXPECT_EQ(job.created_at, TestNow() + std::chrono::minutes(3));
  EXPECT_EQ(job.completed_at, job.created_at);
  EXPECT_EQ(job.alpha_name, "research-momentum");
  EXPECT_EQ(job.weight_method, "zscore");
  EXPECT_EQ(job.created_by, "alice");
  EXPECT_EQ(job.snapshot_id, "snap-research");
  EXPECT_EQ(nlohmann::json::parse(job.dataset_version_ids_json.value()),
            nlohmann::json({{"prices", "2024-02-01"}, {"universe", "u7"}}));
  EXPECT_TRUE(SameBits(job.metrics.mean_ic, 0.1));
  EXPECT_TRUE(SameBits(job.metrics.hit_rate, 5e-324));
  EXPECT_TRUE(std::isnan(job.metrics.coverage));
  ASSERT_TRUE(job.cost_config_json && job.cost_summary_json);
  const auto extra = nlohmann::json::parse(source.extra_summary_json);
  EXPECT_EQ(nlohmann::json::parse(*job.cost_config_json), extra["cost_config"]);
  EXPECT_EQ(nlohmann::json::parse(*job.cost_summary_json), extra["cost_summary"]);
  ASSERT_TRUE(job.result_path);
  EXPECT_EQ(fs::path(*job.result_path), root_ / "imp-1");

  // The stored bundle is btstore's: manifest, identity; the tables and artifacts are the same.
  const nlohmann::json summary = nlohmann::json::parse(ReadText(root_ / "imp-1" / "summary.json"));
  EXPECT_EQ(summary["job_id"], "imp-1");
  EXPECT_EQ(summary["alpha_name"], "research-momentum");
  EXPECT_EQ(summary["start_date"], "2024-01-02");
  EXPECT_EQ(summary["config_hash"], ConfigHash(ImportSpec("imp-1").config_json));
  EXPECT_EQ(summary["cost_summary"], extra["cost_summary"]);
  for (const char* file : {"daily_signals.parquet", "net_portfolio_returns.parquet",
                           "walk_forward.json", "param_search.json"}) {
    EXPECT_TRUE(summary["artifacts"].contains(file)) << file;
  }
  EXPECT_TRUE(service_->Verify({}).problems.empty());
  const BacktestResult back = service_->jobs().GetResult("imp-1");
  ExpectSameResult(source, back);
  for (const auto& [name, table] : source.extra_tables) {
    ExpectSameTable(table, back.extra_tables.at(name), name);
  }
  EXPECT_EQ(back.json_artifacts.at("walk_forward"),
            NormalizeJsonArtifact("walk_forward", source.json_artifacts.at("walk_forward")));

  // Portfolio returns by basis, through the service.
  auto net = service_->jobs().GetPortfolioReturns("imp-1", ReturnsBasis::kNet);
  ASSERT_EQ(net->num_rows(), 8);
  EXPECT_EQ(net->column(1)->null_count(), 1);
  auto gross = service_->jobs().GetPortfolioReturns("imp-1", ReturnsBasis::kGross,
                                                    Date{kStart.days + 2}, Date{kStart.days + 4});
  ASSERT_EQ(gross->num_rows(), 3);
  EXPECT_TRUE(std::isnan(
      std::static_pointer_cast<arrow::DoubleArray>(gross->column(1)->chunk(0))->Value(1)));
}

TEST_P(ImportTest, ImportingTheSameBundleAgainChangesNothing) {
  const fs::path dir = Foreign("b");
  const SubmitResult first = service_->jobs().Import(dir, ImportSpec("imp-2"));
  const std::string summary = ReadText(root_ / "imp-2" / "summary.json");
  const auto written = fs::last_write_time(root_ / "imp-2");
  // A copy elsewhere, and the original, are the same bundle.
  fs::copy(dir, dir_.path() / "copy", fs::copy_options::recursive);
  for (const fs::path& again : {dir, dir_.path() / "copy"}) {
    clock_.Set(TestNow() + std::chrono::hours(1));
    const SubmitResult second = service_->jobs().Import(again, ImportSpec("imp-2"));
    EXPECT_FALSE(second.created);
    EXPECT_EQ(second.job.id, first.job.id);
    EXPECT_EQ(second.job.created_at, first.job.created_at);
    EXPECT_EQ(second.job.result_path, first.job.result_path);
  }
  EXPECT_EQ(ReadText(root_ / "imp-2" / "summary.json"), summary);
  EXPECT_EQ(fs::last_write_time(root_ / "imp-2"), written);
  EXPECT_EQ(service_->jobs().ListJobs({}, {}).jobs.size(), 1u);

  // Without a job_id, the id is derived from the fields as for a submission: the same again.
  JobSpec derived = ImportSpec("");
  const SubmitResult a = service_->jobs().Import(dir, derived);
  EXPECT_TRUE(a.created);
  EXPECT_EQ(a.job.job_id, DeriveJobId(ImportSpec("")));
  EXPECT_FALSE(service_->jobs().Import(dir, derived).created);
}

// A result held in memory (the Python package's import_result) is imported as its bundle
// directory would be: the same job, the same bundle; the directory's import of it again is a
// no-op; bad tables are the caller's InvalidArgument and leave nothing.
TEST_P(ImportTest, AResultInMemoryIsImportedAsItsBundleDirectoryWouldBe) {
  const BacktestResult source = ForeignResult();
  const SubmitResult imported = service_->jobs().ImportResult(source, ImportSpec("mem-1"));
  EXPECT_TRUE(imported.created);
  EXPECT_EQ(imported.job.status, JobStatus::kCompleted);
  EXPECT_EQ(imported.job.snapshot_id, "snap-research");
  ASSERT_TRUE(imported.job.cost_config_json);
  EXPECT_TRUE(service_->Verify({}).problems.empty());
  const BacktestResult back = service_->jobs().GetResult("mem-1");
  ExpectSameResult(source, back);
  for (const auto& [name, table] : source.extra_tables) {
    ExpectSameTable(table, back.extra_tables.at(name), name);
  }
  EXPECT_FALSE(service_->jobs().ImportResult(source, ImportSpec("mem-1")).created);
  EXPECT_FALSE(service_->jobs().Import(Foreign("b", source), ImportSpec("mem-1")).created);

  BacktestResult unsorted = source;
  const auto& signals = unsorted.daily_signals;
  unsorted.daily_signals =
      arrow::ConcatenateTables({signals->Slice(1, 1), signals->Slice(0, 1), signals->Slice(2)})
          .ValueOrDie();
  EXPECT_THROW(service_->jobs().ImportResult(unsorted, ImportSpec("mem-2")), InvalidArgument);
  ExpectNothingOf("mem-2");
}

TEST_P(ImportTest, TwoImportsOfOneBundleAtOnceCreateOneJob) {
  const fs::path dir = Foreign("b");
  std::atomic<int> created{0};
  std::vector<std::string> errors(2);
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] {
      try {
        // Each its own service, as two processes would have.
        auto service = Service::Open(url_, root_.string());
        if (service->jobs().Import(dir, ImportSpec("imp-race")).created) ++created;
      } catch (const Error& e) {
        errors[i] = e.what();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(errors, std::vector<std::string>(2));
  EXPECT_EQ(created.load(), 1);
  ExpectSameResult(ForeignResult(), service_->jobs().GetResult("imp-race"));
  EXPECT_TRUE(service_->Verify({}).problems.empty());
}

TEST_P(ImportTest, AnotherResultOrOtherFieldsUnderAnExistingJobIdAreInvalidTransition) {
  service_->jobs().Import(Foreign("b"), ImportSpec("imp-3"));
  const std::string summary = ReadText(root_ / "imp-3" / "summary.json");
  const JobRecord before = service_->jobs().GetJob("imp-3");

  const auto refused = [&](const fs::path& dir, const JobSpec& spec) {
    try {
      service_->jobs().Import(dir, spec);
      ADD_FAILURE() << "no error";
    } catch (const InvalidTransition& e) {
      EXPECT_EQ(e.details().at("job_id"), spec.job_id);
      EXPECT_EQ(e.details().at("request"), "import");
    }
  };
  // Other cells.
  refused(Foreign("other-values", ForeignResult(2.0)), ImportSpec("imp-3"));
  // Other metadata.
  BacktestResult other_snapshot = ForeignResult();
  other_snapshot.snapshot_id = "snap-other";
  refused(Foreign("other-snapshot", other_snapshot), ImportSpec("imp-3"));
  // An artifact more or less.
  BacktestResult no_walk_forward = ForeignResult();
  no_walk_forward.json_artifacts.erase("walk_forward");
  refused(Foreign("no-walk-forward", no_walk_forward), ImportSpec("imp-3"));
  // The same bundle under other fields.
  JobSpec other_alpha = ImportSpec("imp-3");
  other_alpha.alpha_name = "another";
  refused(Foreign("b2"), other_alpha);
  // A job that was submitted, not imported.
  JobSpec submitted = ImportSpec("imp-pending");
  submitted.config_json = R"({"engine": "costly"})";
  service_->jobs().Submit(submitted);
  refused(Foreign("b3"), submitted);
  EXPECT_EQ(service_->jobs().GetJob("imp-pending").status, JobStatus::kPending);
  EXPECT_FALSE(fs::exists(root_ / "imp-pending"));

  // Nothing changed.
  EXPECT_EQ(ReadText(root_ / "imp-3" / "summary.json"), summary);
  ExpectSameResult(ForeignResult(), service_->jobs().GetResult("imp-3"));
  EXPECT_EQ(service_->jobs().GetJob("imp-3").result_path, before.result_path);
}

TEST_P(ImportTest, EveryRefusalLeavesNothingBehind) {
  struct Case {
    std::string name;
    ErrorCode code;
    std::function<fs::path()> make;
    std::string file;  // the file the error names, if any
  };
  auto summary_without = [this](const char* key) {
    const fs::path dir = Foreign(std::string("no-") + key);
    nlohmann::json summary = nlohmann::json::parse(ReadText(dir / "summary.json"));
    summary.erase(key);
    WriteText(dir / "summary.json", summary.dump());
    return dir;
  };
  auto rewritten_table = [this](const std::string& name, const std::string& table,
                                const std::function<std::shared_ptr<arrow::Table>(
                                    const std::shared_ptr<arrow::Table>&)>& change) {
    const fs::path dir = Foreign(name);
    ReadOptions options;
    options.tables = {table};
    auto original = ReadBundle(dir, options);
    std::shared_ptr<arrow::Table> data =
        table == "daily_signals" ? original.daily_signals : original.extra_tables.at(table);
    const fs::path file = dir / (table + ".parquet");
    fs::remove(file);
    auto sink = arrow::io::FileOutputStream::Open(file.string()).ValueOrDie();
    Check(parquet::arrow::WriteTable(*change(data), arrow::default_memory_pool(), sink));
    Check(sink->Close());
    return dir;
  };
  const std::vector<Case> cases = {
      {"no directory", ErrorCode::kInvalidArgument, [this] { return dir_.path() / "nowhere"; }, ""},
      {"no summary.json", ErrorCode::kMissingReproducibilityMetadata,
       [this] {
         const fs::path dir = Foreign("no-summary");
         fs::remove(dir / "summary.json");
         return dir;
       },
       "summary.json"},
      {"no snapshot_id", ErrorCode::kMissingReproducibilityMetadata,
       [&] { return summary_without("snapshot_id"); }, "summary.json"},
      {"no dataset_version_ids", ErrorCode::kMissingReproducibilityMetadata,
       [&] { return summary_without("dataset_version_ids"); }, "summary.json"},
      {"wrong dtype", ErrorCode::kInvalidResult,
       [&] {
         return rewritten_table("float32", "daily_portfolio_returns", [](const auto& t) {
           auto cast = arrow::MakeArrayFromScalar(arrow::FloatScalar(0.5f), t->num_rows());
           return t
               ->SetColumn(1, arrow::field("return", arrow::float32()),
                           std::make_shared<arrow::ChunkedArray>(cast.ValueOrDie()))
               .ValueOrDie();
         });
       },
       "daily_portfolio_returns.parquet"},
      {"unsorted rows", ErrorCode::kInvalidResult,
       [&] {
         return rewritten_table("unsorted", "daily_signals", [](const auto& t) {
           return arrow::ConcatenateTables({t->Slice(4), t->Slice(0, 4)}).ValueOrDie();
         });
       },
       "daily_signals.parquet"},
      {"corrupt walk_forward.json", ErrorCode::kInvalidResult,
       [this] {
         const fs::path dir = Foreign("bad-walk-forward");
         WriteText(dir / "walk_forward.json", R"({"version": "1.0"})");
         return dir;
       },
       "walk_forward.json"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const fs::path dir = c.make();
    try {
      service_->jobs().Import(dir, ImportSpec("refused"));
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(ErrorCodeName(e.code()), ErrorCodeName(c.code)) << e.what();
      if (!c.file.empty()) {
        EXPECT_EQ(e.details().count("file") ? e.details().at("file") : "", c.file) << e.what();
      }
    }
    ExpectNothingOf("refused");
  }
  // A bad spec: nothing is read or written.
  JobSpec backwards = ImportSpec("refused");
  backwards.end_date = Date{kStart.days - 1};
  EXPECT_THROW(service_->jobs().Import(Foreign("fine"), backwards), InvalidArgument);
  JobSpec bad_id = ImportSpec("../escape");
  EXPECT_THROW(service_->jobs().Import(Foreign("fine2"), bad_id), InvalidArgument);
  ExpectNothingOf("refused");
}

TEST_P(ImportTest, AWorkerCopiesTheCostBlocksOfItsResultOnCompletion) {
  JobSpec spec = ImportSpec("costly-1");
  spec.config_json = R"({"engine": "costly"})";
  service_->jobs().Submit(spec);
  WorkerOptions options;
  options.until_idle = true;
  options.poll_interval = std::chrono::milliseconds(5);
  ASSERT_EQ(service_->NewWorker(options)->Run(), 1);
  const JobRecord job = service_->jobs().GetJob("costly-1");
  ASSERT_EQ(job.status, JobStatus::kCompleted) << job.error_message.value_or("");
  const auto extra = nlohmann::json::parse(ForeignResult().extra_summary_json);
  ASSERT_TRUE(job.cost_config_json && job.cost_summary_json);
  EXPECT_EQ(nlohmann::json::parse(*job.cost_config_json), extra["cost_config"]);
  EXPECT_EQ(nlohmann::json::parse(*job.cost_summary_json), extra["cost_summary"]);
  // A result without them leaves the columns NULL.
  JobSpec plain = ImportSpec("plain-1");
  plain.config_json = R"({"engine": "noop"})";
  EngineRegistry builtins = EngineRegistry::Builtins();
  ServiceOptions service_options;
  service_options.engines = &builtins;
  auto builtin_service = Service::Open(url_, root_.string(), service_options);
  builtin_service->jobs().Submit(plain);
  ASSERT_EQ(builtin_service->NewWorker(options)->Run(), 1);
  EXPECT_EQ(builtin_service->jobs().GetJob("plain-1").cost_config_json, std::nullopt);
  EXPECT_EQ(builtin_service->jobs().GetJob("plain-1").cost_summary_json, std::nullopt);
}

INSTANTIATE_TEST_SUITE_P(Backends, ImportTest, ::testing::ValuesIn(AllBackends()),
                         BackendParamName());

}  // namespace
}  // namespace btstore::testing

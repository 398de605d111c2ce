#include "lifecycle/retention_fixture.h"

#include <arrow/api.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include <cmath>
#include <stdexcept>
#include <vector>

#include "btstore/errors.h"

namespace btstore::testing {

namespace fs = std::filesystem;

namespace {

void Check(const arrow::Status& status) {
  if (!status.ok()) throw std::runtime_error(status.ToString());
}

std::shared_ptr<arrow::Array> Finish(arrow::ArrayBuilder& builder) {
  std::shared_ptr<arrow::Array> array;
  Check(builder.Finish(&array));
  return array;
}

constexpr int64_t kFirstPermno = 10001;
constexpr std::chrono::minutes kRunTime{1};
constexpr std::chrono::hours kLease{1};
constexpr std::string_view kWorkerId = "retention-test-worker";

}  // namespace

Timestamp TestNow() { return ParseTimestamp("2026-06-01T12:00:00Z"); }

Timestamp DaysAgo(int days) { return TestNow() - std::chrono::days(days); }

BacktestResult SmallResult(const std::string& job_id, Date start, int days, int symbols) {
  arrow::Date32Builder signal_dates, weight_dates, ic_dates;
  arrow::Int64Builder signal_permnos, weight_permnos;
  arrow::DoubleBuilder signals, weights, ics, rank_ics;
  for (int d = 0; d < days; ++d) {
    const int32_t date = start.days + d;
    for (int s = 0; s < symbols; ++s) {
      Check(signal_dates.Append(date));
      Check(weight_dates.Append(date));
      Check(signal_permnos.Append(kFirstPermno + s));
      Check(weight_permnos.Append(kFirstPermno + s));
      Check(signals.Append(std::sin(d * 7.0 + s)));
      Check(weights.Append(1.0 / symbols));
    }
    Check(ic_dates.Append(date));
    Check(ics.Append(0.01 * std::cos(d)));
    Check(rank_ics.Append(0.02 * std::cos(d)));
  }
  BacktestResult result;
  result.job_id = job_id;
  result.alpha_name = "retention-alpha";
  result.start_date = start;
  result.end_date = Date{start.days + days - 1};
  result.weight_method = "equal";
  result.daily_signals =
      arrow::Table::Make(RequiredSchema(kSignalsTable),
                         {Finish(signal_dates), Finish(signal_permnos), Finish(signals)});
  result.daily_weights =
      arrow::Table::Make(RequiredSchema(kWeightsTable),
                         {Finish(weight_dates), Finish(weight_permnos), Finish(weights)});
  result.daily_ic = arrow::Table::Make(RequiredSchema(kIcTable),
                                       {Finish(ic_dates), Finish(ics), Finish(rank_ics)});
  result.metrics.mean_ic = 0.01;
  result.metrics.icir = 0.5;
  result.metrics.hit_rate = 0.55;
  result.snapshot_id = "snap-1";
  result.dataset_version_ids = {{"prices", "v1"}};
  return result;
}

void StoredJobsTest::SetUp() {
  if (auto why = SkipReason(GetParam())) GTEST_SKIP() << *why;
  url_ = NewCatalogUrl(GetParam(), dir_.path());
  catalog_ = Catalog::Open(url_);
  catalog_->Migrate();
  root_ = dir_.path() / "results";
  store_ = ArtifactStore::Open(root_.string());
}

std::unique_ptr<Catalog> StoredJobsTest::OpenCatalog() const { return Catalog::Open(url_); }

namespace {

JobSpec SpecFor(const std::string& job_id, Priority priority, int max_retries) {
  JobSpec spec;
  spec.job_id = job_id;
  spec.alpha_name = "retention-alpha";
  spec.start_date = Date::FromYmd(2020, 1, 1);
  spec.end_date = Date::FromYmd(2020, 3, 31);
  spec.created_by = "retention-tester";
  spec.priority = priority;
  spec.max_retries = max_retries;
  return spec;
}

}  // namespace

JobRecord StoredJobsTest::MakePending(const std::string& job_id, Timestamp created_at) {
  return catalog_->Submit(SpecFor(job_id, Priority::kNormal, kDefaultMaxRetries), created_at).job;
}

// Jobs to be claimed are submitted with high priority and claimed at once, so that a claim
// never picks one of the test's plain pending jobs instead.
JobRecord StoredJobsTest::Claim(const std::string& job_id, Timestamp at) {
  std::vector<JobRecord> claimed = catalog_->ClaimJobs(kWorkerId, 1, kLease, at);
  if (claimed.size() != 1 || claimed.front().job_id != job_id) {
    throw std::runtime_error("claiming " + job_id + " claimed something else");
  }
  return claimed.front();
}

JobRecord StoredJobsTest::MakeRunning(const std::string& job_id, Timestamp created_at) {
  catalog_->Submit(SpecFor(job_id, Priority::kHigh, kDefaultMaxRetries), created_at);
  return Claim(job_id, created_at);
}

JobRecord StoredJobsTest::MakeCompleted(const std::string& job_id, Timestamp created_at,
                                        Timestamp completed_at, const WriteOptions& write_options) {
  catalog_->Submit(SpecFor(job_id, Priority::kHigh, kDefaultMaxRetries), created_at);
  const JobRecord running = Claim(job_id, completed_at - kRunTime);
  const BacktestResult result = SmallResult(job_id, Date::FromYmd(2020, 1, 1), 10, 3);
  WriteBundle(result, BundleDir(job_id), write_options);
  CompletionRecord record;
  record.result_path = fs::canonical(BundleDir(job_id)).string();
  record.metrics = result.metrics;
  record.snapshot_id = result.snapshot_id;
  record.dataset_version_ids_json = R"({"prices":"v1"})";
  const TransitionResult done = catalog_->Complete(job_id, running.attempt, record, completed_at);
  if (!done.applied) throw std::runtime_error("completing " + job_id + " lost a race");
  return catalog_->GetJob(job_id);
}

JobRecord StoredJobsTest::MakeFailed(const std::string& job_id, Timestamp created_at,
                                     Timestamp failed_at) {
  catalog_->Submit(SpecFor(job_id, Priority::kHigh, 0), created_at);
  const JobRecord running = Claim(job_id, failed_at - kRunTime);
  const TransitionResult failed = catalog_->Fail(job_id, running.attempt, "engine failed",
                                                 std::chrono::milliseconds(0), failed_at);
  if (!failed.applied || failed.status != JobStatus::kFailed) {
    throw std::runtime_error("failing " + job_id + " did not fail it");
  }
  return catalog_->GetJob(job_id);
}

JobRecord StoredJobsTest::MakeCancelled(const std::string& job_id, Timestamp created_at,
                                        Timestamp cancelled_at) {
  MakePending(job_id, created_at);
  return catalog_->RequestCancel(job_id, cancelled_at);
}

void StoredJobsTest::SetResultPath(const std::string& job_id,
                                   const std::optional<std::string>& path) {
  if (GetParam() == Backend::kSqlite) {
    const std::string file = url_.substr(std::string_view("sqlite:").size());
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
      std::string error = sqlite3_errmsg(db);
      sqlite3_close(db);
      throw std::runtime_error("cannot open " + file + ": " + error);
    }
    sqlite3_busy_timeout(db, 10000);
    sqlite3_stmt* statement = nullptr;
    int rc = sqlite3_prepare_v2(db, "UPDATE backtest_jobs SET result_path = ?1 WHERE job_id = ?2",
                                -1, &statement, nullptr);
    if (rc == SQLITE_OK) {
      if (path) {
        sqlite3_bind_text(statement, 1, path->c_str(), -1, SQLITE_TRANSIENT);
      } else {
        sqlite3_bind_null(statement, 1);
      }
      sqlite3_bind_text(statement, 2, job_id.c_str(), -1, SQLITE_TRANSIENT);
      rc = sqlite3_step(statement);
    }
    const bool ok = rc == SQLITE_DONE && sqlite3_changes(db) == 1;
    std::string error = sqlite3_errmsg(db);
    sqlite3_finalize(statement);
    sqlite3_close(db);
    if (!ok) throw std::runtime_error("cannot set result_path of " + job_id + ": " + error);
    return;
  }
  PGconn* conn = PQconnectdb(url_.c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string error = PQerrorMessage(conn);
    PQfinish(conn);
    throw std::runtime_error("cannot connect: " + error);
  }
  const char* values[2] = {path ? path->c_str() : nullptr, job_id.c_str()};
  PGresult* result =
      PQexecParams(conn, "UPDATE backtest_jobs SET result_path = $1 WHERE job_id = $2", 2, nullptr,
                   values, nullptr, nullptr, 0);
  const bool ok =
      PQresultStatus(result) == PGRES_COMMAND_OK && std::string_view(PQcmdTuples(result)) == "1";
  std::string error = PQerrorMessage(conn);
  PQclear(result);
  PQfinish(conn);
  if (!ok) throw std::runtime_error("cannot set result_path of " + job_id + ": " + error);
}

}  // namespace btstore::testing

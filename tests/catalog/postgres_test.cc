// PostgreSQL-only behaviour: durability across server restarts with the same catalog object,
// an unreachable server, and cancel notifications (LISTEN/NOTIFY) that survive a restart.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "btstore/catalog.h"
#include "btstore/errors.h"
#include "catalog/catalog_test_util.h"
#include "support/pg_cluster.h"

namespace btstore::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class PostgresCatalogTest : public CatalogTest {
 protected:
  void TearDown() override {
    // A failed restart test must not leave the shared server down for the next test.
    if (PgCluster::SkipReason() == std::nullopt && !PgCluster::Get().running()) {
      PgCluster::Get().Start();
    }
  }

  // Write jobs in several states, with metrics that only survive bit for bit if stored exactly.
  std::vector<JobRecord> WriteJobs() {
    catalog_->Submit(Spec("pending"), At(0) + std::chrono::microseconds(1));
    SubmitAndClaim("running", 1);
    catalog_->Heartbeat("running", 1, 33, "/ck/running/1", seconds(30), At(2));
    SubmitAndClaim("completed", 3);
    CompletionRecord record;
    record.result_path = "/results/completed";
    record.metrics.mean_ic = 0.1 + 0.2;
    record.metrics.icir = -1.0 / 7.0;
    record.metrics.hit_rate = 4.9406564584124654e-324;
    record.metrics.coverage = 0.999999999999999888977697537484;
    record.snapshot_id = "snap'quote";
    record.dataset_version_ids_json = R"({"a": "1", "b": "2"})";
    catalog_->Complete("completed", 1, record, At(4) + std::chrono::microseconds(999999));
    std::vector<JobRecord> jobs;
    for (const char* id : {"pending", "running", "completed"}) jobs.push_back(catalog_->GetJob(id));
    return jobs;
  }

  void ExpectJobsUnchanged(const std::vector<JobRecord>& before) {
    for (const JobRecord& job : before) {
      SCOPED_TRACE(job.job_id);
      ExpectSameJob(catalog_->GetJob(job.job_id), job);
    }
  }
};

TEST_P(PostgresCatalogTest, CommittedJobsSurviveAFastRestartWithTheSameCatalog) {
  std::vector<JobRecord> before = WriteJobs();
  PgCluster::Get().Stop(/*immediate=*/false);
  PgCluster::Get().Start();
  ExpectJobsUnchanged(before);
  // The pool replaced its broken connections: writes work too.
  EXPECT_TRUE(catalog_->Submit(Spec("after-restart"), At(10)).created);
}

TEST_P(PostgresCatalogTest, CommittedJobsSurviveAnImmediateStopWithTheSameCatalog) {
  std::vector<JobRecord> before = WriteJobs();
  PgCluster::Get().Stop(/*immediate=*/true);
  PgCluster::Get().Start();
  ExpectJobsUnchanged(before);
  EXPECT_EQ(catalog_->ClaimJobs("w", 5, seconds(30), At(20)).size(), 1u);
}

TEST_P(PostgresCatalogTest, CallsWhileTheServerIsDownAreUnavailableThenRecover) {
  catalog_->Submit(Spec("job-1"), At(0));
  PgCluster::Get().Stop(/*immediate=*/false);
  EXPECT_THROW(catalog_->FindJob("job-1"), CatalogUnavailable);
  EXPECT_THROW(catalog_->Submit(Spec("job-2"), At(1)), CatalogUnavailable);
  PgCluster::Get().Start();
  EXPECT_TRUE(catalog_->FindJob("job-1").has_value());
}

TEST_P(PostgresCatalogTest, UnreachableServerIsReportedWithinABoundedTime) {
  CatalogOptions options;
  options.connect_timeout = milliseconds(2000);
  auto start = std::chrono::steady_clock::now();
  try {
    Catalog::Open(UnreachableDatabaseUrl(), options);
    FAIL() << "Open of an unreachable server did not throw";
  } catch (const CatalogUnavailable& error) {
    EXPECT_EQ(error.code(), ErrorCode::kCatalogUnavailable);
  }
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_LT(elapsed, seconds(10));
}

TEST_P(PostgresCatalogTest, ServerThatNeverAnswersIsUnavailableAfterTheConnectTimeout) {
  // A socket that listens but never accepts: the kernel completes the TCP handshake, and the
  // server's reply never comes, as with a hung or firewalled server.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  std::string url =
      "postgresql://postgres@127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/btstore";
  CatalogOptions options;
  options.connect_timeout = milliseconds(2000);
  auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(Catalog::Open(url, options), CatalogUnavailable);
  auto elapsed = std::chrono::steady_clock::now() - start;
  close(fd);
  EXPECT_GE(elapsed, milliseconds(1500));
  EXPECT_LT(elapsed, seconds(10));
}

TEST_P(PostgresCatalogTest, ListenerReceivesACancelOfARunningJob) {
  std::unique_ptr<CancelListener> listener = catalog_->ListenForCancels();
  ASSERT_NE(listener, nullptr);
  EXPECT_EQ(listener->Wait(milliseconds(50)), std::nullopt);
  SubmitAndClaim("job-1", 0);
  catalog_->RequestCancel("job-1", At(1));
  EXPECT_EQ(listener->Wait(seconds(10)), "job-1");
  // A pending job is cancelled at once; no worker needs waking.
  catalog_->Submit(Spec("job-2", Priority::kLow), At(2));
  catalog_->RequestCancel("job-2", At(3));
  EXPECT_EQ(listener->Wait(milliseconds(200)), std::nullopt);
}

TEST_P(PostgresCatalogTest, ListenerReconnectsAfterARestartAndSaysSo) {
  std::unique_ptr<CancelListener> listener = catalog_->ListenForCancels();
  PgCluster::Get().Stop(/*immediate=*/false);
  // While the server is away the listener keeps trying and reports nothing.
  EXPECT_EQ(listener->Wait(milliseconds(300)), std::nullopt);
  PgCluster::Get().Start();
  EXPECT_EQ(listener->Wait(seconds(10)), "");  // reconnected: re-read the rows
  SubmitAndClaim("job-1", 0);
  catalog_->RequestCancel("job-1", At(1));
  EXPECT_EQ(listener->Wait(seconds(10)), "job-1");
}

TEST_P(PostgresCatalogTest, ConcurrentRescuersRescueEachJobOnce) {
  for (int i = 0; i < 20; ++i) SubmitAndClaim("job-" + std::to_string(i), i);
  std::vector<std::unique_ptr<Catalog>> catalogs;
  for (int i = 0; i < 4; ++i) catalogs.push_back(Catalog::Open(url_));
  std::vector<size_t> rescued(catalogs.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < catalogs.size(); ++i) {
    threads.emplace_back(
        [&, i] { rescued[i] = catalogs[i]->RescueExpired(At(1000), milliseconds(0), 100).size(); });
  }
  for (std::thread& thread : threads) thread.join();
  size_t total = 0;
  for (size_t n : rescued) total += n;
  EXPECT_EQ(total, 20u);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(catalog_->GetJob("job-" + std::to_string(i)).retry_count, 1);
  }
}

INSTANTIATE_TEST_SUITE_P(Postgres, PostgresCatalogTest, ::testing::Values(Backend::kPostgres),
                         BackendParamName());

}  // namespace
}  // namespace btstore::testing

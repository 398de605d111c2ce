// A worker process for worker_kill_test and worker_hardening_test: runs btstore::Worker on a
// catalog and an artifact root until SIGTERM/SIGINT (through StopOnSignals, as `btstore worker`
// does) or, with "until-idle", until nothing is left to do, printing one line per worker event.
// Besides the built-in engines it has "stubborn", an engine that ignores stop requests for a
// minute (a worker stuck in its shutdown, for the second-signal test).
//
// usage: btstore_test_worker CATALOG_URL ARTIFACT_ROOT LEASE_SECONDS WORKER_ID [until-idle]
//        [concurrency=N]

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string_view>
#include <thread>

#include "btstore/errors.h"
#include "btstore/service.h"

namespace {

constexpr std::chrono::seconds kStubbornFor{60};

class StubbornEngine : public btstore::Engine {
 public:
  btstore::BacktestResult Run(const btstore::JobRecord&, btstore::EngineContext& context) override {
    context.ReportProgress(1);
    std::this_thread::sleep_for(kStubbornFor);
    context.ThrowIfStopped();
    throw std::runtime_error("the stubborn engine was not stopped");
  }
};

}  // namespace

int main(int argc, char** argv) {
  bool until_idle = false;
  int concurrency = 1;
  bool usage = argc < 5;
  for (int i = 5; i < argc && !usage; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "until-idle") {
      until_idle = true;
    } else if (arg.starts_with("concurrency=")) {
      concurrency = std::atoi(argv[i] + std::string_view("concurrency=").size());
    } else {
      usage = true;
    }
  }
  if (usage) {
    std::fprintf(stderr,
                 "usage: %s CATALOG_URL ARTIFACT_ROOT LEASE_SECONDS WORKER_ID [until-idle] "
                 "[concurrency=N]\n",
                 argv[0]);
    return 2;
  }
  btstore::EngineRegistry engines = btstore::EngineRegistry::Builtins();
  engines.Register("stubborn", [] { return std::make_unique<StubbornEngine>(); });
  btstore::WorkerOptions options;
  options.lease = std::chrono::seconds(std::atoi(argv[3]));
  options.worker_id = argv[4];
  options.until_idle = until_idle;
  options.concurrency = concurrency;
  options.poll_interval = std::chrono::milliseconds(20);
  options.retry_base_delay = std::chrono::milliseconds(20);
  options.on_event = [](const btstore::WorkerEvent& event) {
    if (event.kind == btstore::WorkerEvent::Kind::kProgress) return;
    std::printf("event %d %s attempt=%d %s\n", static_cast<int>(event.kind), event.job_id.c_str(),
                event.attempt, event.message.c_str());
    std::fflush(stdout);
  };
  try {
    btstore::ServiceOptions service_options;
    service_options.engines = &engines;
    std::unique_ptr<btstore::Service> service =
        btstore::Service::Open(argv[1], argv[2], service_options);
    std::unique_ptr<btstore::Worker> worker = service->NewWorker(options);
    int finished = 0;
    {
      btstore::StopOnSignals signals(*worker);
      finished = worker->Run();
    }
    std::printf("finished %d\n", finished);
    return 0;
  } catch (const btstore::Error& e) {
    std::fprintf(stderr, "%s: %s\n", std::string(btstore::ErrorCodeName(e.code())).c_str(),
                 e.what());
    return btstore::ExitStatus(e.code());
  }
}

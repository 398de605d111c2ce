// A worker process for worker_kill_test: runs btstore::Worker on a catalog and an artifact root
// until SIGTERM/SIGINT, printing one line per worker event.
//
// usage: btstore_test_worker CATALOG_URL ARTIFACT_ROOT LEASE_SECONDS WORKER_ID

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>

#include "btstore/errors.h"
#include "btstore/service.h"

namespace {

btstore::Worker* g_worker = nullptr;

extern "C" void HandleSignal(int) {
  // Worker::Stop is async-signal-safe.
  if (g_worker != nullptr) g_worker->Stop();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s CATALOG_URL ARTIFACT_ROOT LEASE_SECONDS WORKER_ID\n", argv[0]);
    return 2;
  }
  btstore::WorkerOptions options;
  options.lease = std::chrono::seconds(std::atoi(argv[3]));
  options.worker_id = argv[4];
  options.poll_interval = std::chrono::milliseconds(20);
  options.on_event = [](const btstore::WorkerEvent& event) {
    if (event.kind == btstore::WorkerEvent::Kind::kProgress) return;
    std::printf("event %d %s attempt=%d %s\n", static_cast<int>(event.kind), event.job_id.c_str(),
                event.attempt, event.message.c_str());
    std::fflush(stdout);
  };
  try {
    std::unique_ptr<btstore::Service> service = btstore::Service::Open(argv[1], argv[2]);
    std::unique_ptr<btstore::Worker> owned_worker = service->NewWorker(options);
    btstore::Worker& worker = *owned_worker;
    g_worker = &worker;
    std::signal(SIGTERM, HandleSignal);
    std::signal(SIGINT, HandleSignal);
    int finished = worker.Run();
    g_worker = nullptr;
    std::printf("finished %d\n", finished);
    return 0;
  } catch (const btstore::Error& e) {
    std::fprintf(stderr, "%s: %s\n", std::string(btstore::ErrorCodeName(e.code())).c_str(),
                 e.what());
    return btstore::ExitStatus(e.code());
  }
}

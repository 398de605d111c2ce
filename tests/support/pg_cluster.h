#pragma once
/// A private PostgreSQL 15 cluster for the tests of one process: initdb into a temporary
/// directory, started on 127.0.0.1 with a free port, stopped and removed when the process exits.

#include <mutex>
#include <optional>
#include <string>

#include "support/temp_dir.h"

namespace btstore::testing {

/// One PostgreSQL cluster per test binary, started on first use. initdb and postgres run as the
/// `postgres` user when the process is root (PostgreSQL refuses to run as root), directly
/// otherwise. The binaries are taken from $BTSTORE_PG_BINDIR, default
/// /usr/lib/postgresql/15/bin. Authentication is `trust`; fsync is off for speed, which keeps
/// committed data across a crash of the server process (only an OS crash could lose it), so
/// restart tests with Stop(true) are real.
class PgCluster {
 public:
  /// Return why PostgreSQL tests cannot run on this machine (binaries or the `postgres` user
  /// missing), to pass to GTEST_SKIP; nullopt when they can. Where the environment variable CI
  /// is "true" this always returns nullopt, so a missing PostgreSQL fails the test in Get()
  /// instead of skipping it.
  static std::optional<std::string> SkipReason();

  /// Return the cluster of this process, initialising and starting it on the first call
  /// (thread-safe). Throws std::runtime_error with the server log when it cannot start.
  static PgCluster& Get();

  PgCluster(const PgCluster&) = delete;
  PgCluster& operator=(const PgCluster&) = delete;
  /// Stop the server at once (immediate mode) and remove its files.
  ~PgCluster();

  /// Create a new, empty database with a unique name and return its libpq URL
  /// ("postgresql://postgres@127.0.0.1:PORT/NAME"). Throws std::runtime_error; the server must
  /// be running.
  std::string NewDatabaseUrl();

  /// Return the URL of the `postgres` maintenance database (superuser), for instance to
  /// terminate backends or inspect the server.
  std::string AdminUrl() const;

  /// The TCP port the server listens on (127.0.0.1); the same after Stop() and Start().
  int port() const { return port_; }

  /// Whether the server was started and not stopped since.
  bool running() const;

  /// Stop the server with `pg_ctl stop -m fast` (clients are disconnected, a checkpoint is
  /// written) or, with `immediate`, `-m immediate` (the server is killed and recovers from its
  /// WAL on the next start). Waits until it is down. Does nothing when already stopped.
  void Stop(bool immediate);

  /// Start the server again on the same port and data directory, waiting (bounded) until it
  /// accepts connections. Does nothing when running. Throws std::runtime_error.
  void Start();

 private:
  PgCluster();
  void StartLocked();
  void StopLocked(bool immediate);
  std::string UrlFor(const std::string& database) const;

  TempDir dir_;
  int port_ = 0;
  bool running_ = false;
  int next_database_ = 0;
  mutable std::mutex mutex_;
};

/// Return a PostgreSQL URL at 127.0.0.1 on a port where nothing listens (checked just before),
/// for tests of an unreachable server.
std::string UnreachableDatabaseUrl();

}  // namespace btstore::testing

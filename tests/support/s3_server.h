#pragma once
/// A private S3-compatible server for the tests of one process: moto's standalone server
/// (`python -m moto.server`, from the project venv) on 127.0.0.1 with a free port, stopped when
/// the object goes. Its objects live in its memory: a restart starts empty. The Python twin is
/// S3Server in tests/support/btstore_testing.py.

#include <sys/types.h>

#include <optional>
#include <string>

#include "support/temp_dir.h"

namespace btstore::testing {

class S3Server {
 public:
  /// The credentials the tests hand to btstore (moto accepts any).
  static constexpr const char* kAccessKey = "btstore-test-key";
  static constexpr const char* kSecretKey = "btstore-test-secret-0123456789";

  /// Return why the server cannot start here (the venv's python or moto missing), for
  /// GTEST_SKIP; nullopt when it can, and always where CI=true.
  static std::optional<std::string> SkipReason();

  /// Start the server and wait (bounded) until it accepts connections. Throws
  /// std::runtime_error with its log when it cannot.
  S3Server();
  /// Kill the server.
  ~S3Server();
  S3Server(const S3Server&) = delete;
  S3Server& operator=(const S3Server&) = delete;

  /// "http://127.0.0.1:PORT".
  std::string endpoint() const;
  int port() const { return port_; }

  /// Kill the server (connections are reset) and wait for it. Does nothing when stopped.
  void Stop();
  /// Start it again on the same port, empty. Throws std::runtime_error.
  void Start();

  /// Point btstore at this server: BTSTORE_S3_ENDPOINT and the AWS variables of this process.
  void ExportEnvironment() const;

 private:
  TempDir dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace btstore::testing

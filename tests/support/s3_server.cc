#include "support/s3_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace btstore::testing {

namespace fs = std::filesystem;

namespace {

bool InCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

fs::path Python() {
  const char* source = std::getenv("BTSTORE_SOURCE_DIR");
  return fs::path(source != nullptr ? source : ".") / ".venv" / "bin" / "python";
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket: " + std::string(std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    std::string error = std::strerror(errno);
    close(fd);
    throw std::runtime_error("cannot find a free port: " + error);
  }
  close(fd);
  return ntohs(addr.sin_port);
}

bool Accepts(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

}  // namespace

std::optional<std::string> S3Server::SkipReason() {
  if (InCi()) return std::nullopt;
  const fs::path python = Python();
  if (access(python.c_str(), X_OK) != 0) return python.string() + " missing";
  const std::string check = python.string() + " -c 'import moto.server' >/dev/null 2>&1";
  if (std::system(check.c_str()) != 0) {
    return "moto[server] is not installed in the venv (pip install -r requirements-dev.txt)";
  }
  return std::nullopt;
}

S3Server::S3Server() : dir_("btstore-s3") {
  port_ = FreePort();
  Start();
}

S3Server::~S3Server() { Stop(); }

std::string S3Server::endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }

void S3Server::Start() {
  if (pid_ > 0) return;
  const fs::path log = dir_.path() / "server.log";
  const std::string python = Python().string();
  const std::string port = std::to_string(port_);
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork: " + std::string(std::strerror(errno)));
  if (pid_ == 0) {
    // The server logs every request: into a file, which never fills up as a pipe would.
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
      close(fd);
    }
    execl(python.c_str(), python.c_str(), "-m", "moto.server", "-H", "127.0.0.1", "-p",
          port.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!Accepts(port_)) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_ || std::chrono::steady_clock::now() > deadline) {
      Stop();
      std::ifstream in(log);
      std::stringstream text;
      text << in.rdbuf();
      throw std::runtime_error("moto's S3 server did not start: " + text.str());
    }
    // The server binds its port within a second or two of starting.
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

void S3Server::Stop() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

void S3Server::ExportEnvironment() const {
  setenv("BTSTORE_S3_ENDPOINT", endpoint().c_str(), 1);
  setenv("AWS_ACCESS_KEY_ID", kAccessKey, 1);
  setenv("AWS_SECRET_ACCESS_KEY", kSecretKey, 1);
  setenv("AWS_REGION", "us-east-1", 1);
  setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
}

}  // namespace btstore::testing

#include "support/pg_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

extern char** environ;

namespace btstore::testing {
namespace {

namespace fs = std::filesystem;

constexpr const char* kDefaultBinDir = "/usr/lib/postgresql/15/bin";
constexpr const char* kRunuser = "/usr/sbin/runuser";
constexpr const char* kServerUser = "postgres";
// pg_ctl's own bound on waiting for the server to start or stop.
constexpr const char* kPgCtlWaitSeconds = "60";
// Ports are picked free but may be taken before the server binds them (tests run in parallel).
constexpr int kStartAttempts = 4;
// Enough for every test of a binary to hold a pool of connections per catalog at once.
constexpr const char* kMaxConnections = "200";

fs::path BinDir() {
  const char* dir = std::getenv("BTSTORE_PG_BINDIR");
  return dir != nullptr && *dir != '\0' ? fs::path(dir) : fs::path(kDefaultBinDir);
}

bool RunningAsRoot() { return geteuid() == 0; }

bool InCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

std::string ReadTail(const fs::path& file, std::size_t max_chars = 4000) {
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  std::string all = text.str();
  return all.size() > max_chars ? all.substr(all.size() - max_chars) : all;
}

// Run a PostgreSQL program, as the `postgres` user when root, with its output appended to `log`
// and none of our descriptors inherited (an inherited client socket would keep a connection
// open in the server after the test closed it). Returns the exit status.
int RunPgProgram(const std::string& program, const std::vector<std::string>& args,
                 const fs::path& cwd, const fs::path& log) {
  std::vector<std::string> argv;
  if (RunningAsRoot()) argv = {kRunuser, "-u", kServerUser, "--"};
  argv.push_back((BinDir() / program).string());
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> c_argv;
  for (std::string& arg : argv) c_argv.push_back(arg.data());
  c_argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str());
  posix_spawn_file_actions_addclosefrom_np(&actions, STDERR_FILENO + 1);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, c_argv[0], &actions, nullptr, c_argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("cannot run " + argv[0] + ": " + std::strerror(rc));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw std::runtime_error("waitpid: " + std::string(std::strerror(errno)));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int FreeTcpPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket: " + std::string(std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
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

void ChownToServerUser(const fs::path& path) {
  if (!RunningAsRoot()) return;
  passwd* user = getpwnam(kServerUser);
  if (user == nullptr) throw std::runtime_error("no user named postgres");
  if (chown(path.c_str(), user->pw_uid, user->pw_gid) != 0) {
    throw std::runtime_error("chown " + path.string() + ": " + std::strerror(errno));
  }
}

// Run one statement on the maintenance database; throws with the server's message.
void AdminExec(const std::string& url, const std::string& sql) {
  PGconn* conn = PQconnectdb(url.c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string error = PQerrorMessage(conn);
    PQfinish(conn);
    throw std::runtime_error("cannot connect to " + url + ": " + error);
  }
  PGresult* result = PQexec(conn, sql.c_str());
  bool ok = PQresultStatus(result) == PGRES_COMMAND_OK || PQresultStatus(result) == PGRES_TUPLES_OK;
  std::string error = ok ? "" : PQresultErrorMessage(result);
  PQclear(result);
  PQfinish(conn);
  if (!ok) throw std::runtime_error(sql + ": " + error);
}

}  // namespace

std::optional<std::string> PgCluster::SkipReason() {
  if (InCi()) return std::nullopt;
  for (const char* program : {"initdb", "pg_ctl", "postgres"}) {
    fs::path path = BinDir() / program;
    if (access(path.c_str(), X_OK) != 0) {
      return "PostgreSQL not installed: " + path.string() + " missing (set BTSTORE_PG_BINDIR)";
    }
  }
  if (RunningAsRoot()) {
    if (getpwnam(kServerUser) == nullptr)
      return std::string(
          "running as root without a user "
          "named postgres to run the server");
    if (access(kRunuser, X_OK) != 0) return std::string(kRunuser) + " missing";
  }
  return std::nullopt;
}

PgCluster& PgCluster::Get() {
  // One cluster per process, destroyed (server stopped, files removed) at exit.
  static PgCluster cluster;
  return cluster;
}

PgCluster::PgCluster() : dir_("btstore-pg") {
  ChownToServerUser(dir_.path());
  const fs::path log = dir_.path() / "commands.log";
  int rc = RunPgProgram("initdb",
                        {"-D", (dir_.path() / "data").string(), "-U", kServerUser, "--auth=trust",
                         "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"},
                        dir_.path(), log);
  if (rc != 0) {
    throw std::runtime_error("initdb failed (exit " + std::to_string(rc) + "):\n" + ReadTail(log));
  }
  std::lock_guard lock(mutex_);
  for (int attempt = 1;; ++attempt) {
    port_ = FreeTcpPort();
    try {
      StartLocked();
      break;
    } catch (const std::runtime_error&) {
      if (attempt == kStartAttempts) throw;
    }
  }
}

PgCluster::~PgCluster() {
  std::lock_guard lock(mutex_);
  if (!running_) return;
  try {
    StopLocked(/*immediate=*/true);
  } catch (const std::runtime_error&) {
    // Nothing sensible to do at exit; the temporary directory is removed either way.
  }
}

void PgCluster::StartLocked() {
  if (running_) return;
  const fs::path log = dir_.path() / "commands.log";
  // The socket directory is the private temporary directory, so parallel test binaries never
  // share a lock file; clients connect over TCP to 127.0.0.1.
  std::string server_options = "-c port=" + std::to_string(port_) +
                               " -c listen_addresses=127.0.0.1" +
                               " -c unix_socket_directories=" + dir_.path().string() +
                               " -c fsync=off -c max_connections=" + kMaxConnections;
  int rc = RunPgProgram(
      "pg_ctl",
      {"start", "-D", (dir_.path() / "data").string(), "-l", (dir_.path() / "server.log").string(),
       "-w", "-t", kPgCtlWaitSeconds, "-o", server_options},
      dir_.path(), log);
  if (rc != 0) {
    throw std::runtime_error("pg_ctl start failed (exit " + std::to_string(rc) + "):\n" +
                             ReadTail(log) + "\n--- server.log ---\n" +
                             ReadTail(dir_.path() / "server.log"));
  }
  running_ = true;
}

void PgCluster::StopLocked(bool immediate) {
  if (!running_) return;
  const fs::path log = dir_.path() / "commands.log";
  int rc = RunPgProgram("pg_ctl",
                        {"stop", "-D", (dir_.path() / "data").string(), "-m",
                         immediate ? "immediate" : "fast", "-w", "-t", kPgCtlWaitSeconds},
                        dir_.path(), log);
  if (rc != 0) {
    throw std::runtime_error("pg_ctl stop failed (exit " + std::to_string(rc) + "):\n" +
                             ReadTail(log));
  }
  running_ = false;
}

bool PgCluster::running() const {
  std::lock_guard lock(mutex_);
  return running_;
}

void PgCluster::Stop(bool immediate) {
  std::lock_guard lock(mutex_);
  StopLocked(immediate);
}

void PgCluster::Start() {
  std::lock_guard lock(mutex_);
  StartLocked();
}

std::string PgCluster::UrlFor(const std::string& database) const {
  return "postgresql://" + std::string(kServerUser) + "@127.0.0.1:" + std::to_string(port_) + "/" +
         database;
}

std::string PgCluster::AdminUrl() const { return UrlFor("postgres"); }

std::string PgCluster::NewDatabaseUrl() {
  std::string name;
  {
    std::lock_guard lock(mutex_);
    name = "btstore_test_" + std::to_string(getpid()) + "_" + std::to_string(++next_database_);
  }
  AdminExec(AdminUrl(), "CREATE DATABASE " + name);
  return UrlFor(name);
}

std::string UnreachableDatabaseUrl() {
  return "postgresql://postgres@127.0.0.1:" + std::to_string(FreeTcpPort()) + "/btstore";
}

}  // namespace btstore::testing

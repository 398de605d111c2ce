#pragma once
// `btstore serve`: the HTTP front end (contract section 9). A Server maps routes onto one
// Service: the JSON API under /api/v1 in the wire layer's shapes, tables as Arrow IPC streams,
// bearer tokens and roles, /healthz, /metrics, live progress as Server-Sent Events, and the page
// at `/` with its assets embedded in the binary.

#include <chrono>
#include <memory>
#include <ostream>
#include <string>

#include "btstore/service.h"

namespace btstore::http {

/// How the server listens and what it bounds.
struct ServerOptions {
  std::string host = "127.0.0.1";  ///< address to listen on
  int port = 8080;                 ///< 0: any free port (see Server::port)
  bool require_tokens = true;      ///< false (--auth none): every request acts as an admin
  /// Connections served at once, kept-alive idle ones included: cpp-httplib holds a thread per
  /// open connection (threads start as connections need them), and that thread wakes about 90
  /// times a second while its connection idles, until keep_alive_timeout closes it. Sized for
  /// 1,000 idle kept-alive connections beside about 100 busy ones.
  int threads = 1100;
  size_t max_body_bytes = 256u << 20;          ///< largest request body (an uploaded bundle)
  std::chrono::seconds read_timeout{30};       ///< bound on reading one request
  std::chrono::seconds write_timeout{60};      ///< bound on one write of a response
  std::chrono::seconds keep_alive_timeout{5};  ///< an idle kept-alive connection closes
  std::chrono::milliseconds event_poll_interval{250};  ///< how often live progress reads a job
  std::ostream* access_log = nullptr;                  ///< one JSON line per request; nullptr: none
};

/// Return true when `host` is a loopback address ("127.x.x.x", "::1", "localhost").
bool IsLoopback(const std::string& host);

/// The HTTP server over a service.
class Server {
 public:
  /// Make a server for `service` (which must outlive it) and bind its port. Throws
  /// InvalidArgument (bad options, or tokens not required on an address that is not loopback),
  /// InternalError (the address cannot be bound).
  static std::unique_ptr<Server> Make(Service& service, const ServerOptions& options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Return the port it listens on (the chosen one when options.port was 0).
  int port() const;
  /// Serve until Stop(): requests in flight finish, new connections are refused.
  void Run();
  /// Ask Run() to return. Thread-safe; not async-signal-safe (see RunUntilSignalled).
  void Stop();

 private:
  class Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// Run `server` until SIGTERM or SIGINT, then stop it gracefully. The signals are blocked in
/// every thread and waited for by one thread, so the stop runs outside a signal handler.
/// Call before any other thread is started so that they inherit the mask.
void RunUntilSignalled(Server& server);

}  // namespace btstore::http

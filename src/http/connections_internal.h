#pragma once
// The connection layer under the routes: the pool of connection threads, and the server class
// that serves each kept-alive connection and stops gracefully.

#include <httplib.h>

#include <cstddef>

namespace btstore::http::internal {

/// Make the pool cpp-httplib runs connections on: one thread per open connection (its model),
/// started on demand up to `max_threads`, with stacks of `stack_bytes`.
httplib::TaskQueue* NewConnectionPool(int max_threads, size_t stack_bytes);

/// cpp-httplib's server with two changes at the connection level:
/// - A kept-alive connection waits for its next request in one blocking poll (until data, the
///   keep-alive timeout, or a stop), where the library's own loop wakes every ~11 ms to check
///   its timeout: 1,000 idle connections cost it ~90,000 wake-ups a second, and nothing here.
/// - StopAccepting() is a graceful stop: the listening socket closes, so new connections are
///   refused; requests in flight finish; idle connections close at once. (The library's stop()
///   also cuts streamed answers short.)
class ConnectionServer : public httplib::Server {
 public:
  ConnectionServer();
  ~ConnectionServer() override;
  ConnectionServer(const ConnectionServer&) = delete;
  ConnectionServer& operator=(const ConnectionServer&) = delete;

  void StopAccepting();
  /// Let up to `backlog` connections wait to be accepted (once bound). cpp-httplib listens with
  /// a queue of 5: when more clients connect at once (64 reconnecting after their connection's
  /// last request), the kernel drops their SYNs and each retries after a second.
  void SetAcceptQueue(int backlog);

 protected:
  bool process_and_close_socket(socket_t sock) override;

 private:
  // Readable (by poll) once StopAccepting() was called; never read.
  int stop_fd_;
};

}  // namespace btstore::http::internal

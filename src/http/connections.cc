// The connection layer under the routes: the pool of connection threads, and the server class
// that waits on kept-alive connections without polling and stops gracefully.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <system_error>
#include <vector>

#include "http/connections_internal.h"

namespace btstore::http::internal {
namespace {

// cpp-httplib's model is one thread per connection for as long as the connection stays open
// (kept-alive idle ones included), so the pool must be as large as the connections open at once,
// or idle ones starve active ones. Threads start when connections need them, up to
// `max_threads`, with small stacks, and stay for later connections.
class ConnectionPool : public httplib::TaskQueue {
 public:
  ConnectionPool(int max_threads, size_t stack_bytes)
      : max_threads_(max_threads), stack_bytes_(stack_bytes) {}
  ~ConnectionPool() override { shutdown(); }
  ConnectionPool(const ConnectionPool&) = delete;
  ConnectionPool& operator=(const ConnectionPool&) = delete;

  void enqueue(std::function<void()> fn) override {
    std::unique_lock lock(mutex_);
    jobs_.push_back(std::move(fn));
    if (idle_ < jobs_.size() && threads_.size() < static_cast<size_t>(max_threads_)) {
      pthread_attr_t attr;
      pthread_attr_init(&attr);
      pthread_attr_setstacksize(&attr, stack_bytes_);
      pthread_t thread;
      // When no thread can be started (a limit of the system), the threads there are serve.
      if (pthread_create(&thread, &attr, &ConnectionPool::Main, this) == 0) {
        threads_.push_back(thread);
      }
      pthread_attr_destroy(&attr);
    }
    lock.unlock();
    ready_.notify_one();
  }

  void shutdown() override {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      stopping_ = true;
    }
    ready_.notify_all();
    for (pthread_t thread : threads_) pthread_join(thread, nullptr);
  }

 private:
  static void* Main(void* self) {
    static_cast<ConnectionPool*>(self)->Serve();
    return nullptr;
  }

  // Run connections until shutdown, finishing the queued ones first.
  void Serve() {
    std::unique_lock lock(mutex_);
    for (;;) {
      ++idle_;
      ready_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      --idle_;
      if (jobs_.empty()) return;
      std::function<void()> job = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      job();
      lock.lock();
    }
  }

  const int max_threads_;
  const size_t stack_bytes_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> jobs_;
  std::vector<pthread_t> threads_;
  size_t idle_ = 0;
  bool stopping_ = false;
};

int Milliseconds(time_t seconds, time_t microseconds) {
  const long long ms = static_cast<long long>(seconds) * 1000 + microseconds / 1000;
  return static_cast<int>(std::clamp<long long>(ms, 0, 24LL * 3600 * 1000));
}

// Wait up to `timeout_ms` for `events` on `fd`; return its revents, 0 on timeout, -1 on error.
int PollOne(int fd, short events, int timeout_ms) {
  pollfd p{fd, events, 0};
  for (;;) {
    const int n = ::poll(&p, 1, timeout_ms);
    if (n > 0) return p.revents;
    if (n == 0) return 0;
    if (errno != EINTR) return -1;
  }
}

void Address(const sockaddr_storage& address, std::string& ip, int& port) {
  std::array<char, INET6_ADDRSTRLEN> text{};
  if (address.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(address);
    inet_ntop(AF_INET, &in.sin_addr, text.data(), text.size());
    port = ntohs(in.sin_port);
  } else if (address.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(address);
    inet_ntop(AF_INET6, &in6.sin6_addr, text.data(), text.size());
    port = ntohs(in6.sin6_port);
  }
  ip = text.data();
}

// One connection's socket as cpp-httplib's Stream, kept for the whole connection (the library
// reads a request's head a byte at a time, so reads go through a buffer; keeping the buffer
// across requests also keeps a pipelined next request).
class SocketStream final : public httplib::Stream {
 public:
  SocketStream(int fd, int read_timeout_ms, int write_timeout_ms)
      : fd_(fd), read_timeout_ms_(read_timeout_ms), write_timeout_ms_(write_timeout_ms) {}

  bool is_readable() const override {
    if (offset_ < size_) return true;
    const int revents = PollOne(fd_, POLLIN, read_timeout_ms_);
    return revents > 0;
  }

  bool is_writable() const override {
    const int revents = PollOne(fd_, POLLOUT, write_timeout_ms_);
    return revents > 0 && (revents & (POLLERR | POLLHUP | POLLNVAL)) == 0;
  }

  ssize_t read(char* ptr, size_t size) override {
    if (offset_ == size_) {
      if (!is_readable()) return -1;
      ssize_t n;
      do {
        n = ::recv(fd_, buffer_.data(), buffer_.size(), 0);
      } while (n < 0 && errno == EINTR);
      if (n <= 0) return n;
      offset_ = 0;
      size_ = static_cast<size_t>(n);
    }
    const size_t count = std::min(size, size_ - offset_);
    std::memcpy(ptr, buffer_.data() + offset_, count);
    offset_ += count;
    return static_cast<ssize_t>(count);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (!is_writable()) return -1;
    ssize_t n;
    do {
      n = ::send(fd_, ptr, size, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage address{};
    socklen_t length = sizeof(address);
    if (::getpeername(fd_, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
      Address(address, ip, port);
    }
  }

  void get_local_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage address{};
    socklen_t length = sizeof(address);
    if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
      Address(address, ip, port);
    }
  }

  socket_t socket() const override { return fd_; }

  /// Wait, in one poll, until a next request can be read (bytes buffered or arriving, or the
  /// peer's close, which the request parser then sees), `timeout_ms` passes, or `stop_fd`
  /// becomes readable. Return true for the first.
  bool WaitForRequest(int stop_fd, int timeout_ms) const {
    if (offset_ < size_) return true;
    std::array<pollfd, 2> fds = {pollfd{fd_, POLLIN, 0}, pollfd{stop_fd, POLLIN, 0}};
    for (;;) {
      const int n = ::poll(fds.data(), fds.size(), timeout_ms);
      if (n < 0 && errno == EINTR) continue;
      return n > 0 && fds[1].revents == 0 && fds[0].revents != 0;
    }
  }

 private:
  const int fd_;
  const int read_timeout_ms_;
  const int write_timeout_ms_;
  std::array<char, 4096> buffer_{};
  size_t offset_ = 0;
  size_t size_ = 0;
};

}  // namespace

httplib::TaskQueue* NewConnectionPool(int max_threads, size_t stack_bytes) {
  return new ConnectionPool(max_threads, stack_bytes);
}

ConnectionServer::ConnectionServer() : stop_fd_(::eventfd(0, EFD_CLOEXEC)) {
  if (stop_fd_ < 0) {
    throw std::system_error(errno, std::generic_category(), "cannot create the server's eventfd");
  }
}

ConnectionServer::~ConnectionServer() { ::close(stop_fd_); }

void ConnectionServer::StopAccepting() {
  const uint64_t one = 1;
  // The eventfd wakes every idle connection; shutting the listening socket down ends the
  // accept loop, after which the pool finishes the connections it has.
  [[maybe_unused]] const ssize_t n = ::write(stop_fd_, &one, sizeof(one));
  ::shutdown(svr_sock_, SHUT_RDWR);
}

void ConnectionServer::SetAcceptQueue(int backlog) {
  // Listening again on a listening socket only changes its queue's length.
  if (::listen(svr_sock_, backlog) != 0) {
    throw std::system_error(errno, std::generic_category(), "cannot set the accept queue");
  }
}

bool ConnectionServer::process_and_close_socket(socket_t sock) {
  SocketStream stream(sock, Milliseconds(read_timeout_sec_, read_timeout_usec_),
                      Milliseconds(write_timeout_sec_, write_timeout_usec_));
  const int keep_alive_ms = Milliseconds(keep_alive_timeout_sec_, 0);
  bool ok = false;
  for (size_t left = keep_alive_max_count_; left > 0; --left) {
    if (!stream.WaitForRequest(stop_fd_, keep_alive_ms)) break;
    // The last request a connection may make, or one that arrives while the server stops,
    // is answered with "Connection: close".
    const bool last = left == 1 || PollOne(stop_fd_, POLLIN, 0) > 0;
    bool closed = false;
    ok = process_request(stream, last, closed, nullptr);
    if (!ok || closed) break;
  }
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return ok;
}

}  // namespace btstore::http::internal

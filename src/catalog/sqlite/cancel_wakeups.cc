// Cancel wake-ups of the SQLite catalog through a watched directory (cancel_wakeups_internal.h).

#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <string>
#include <system_error>

#include "btstore/errors.h"
#include "catalog/sqlite/cancel_wakeups_internal.h"

namespace btstore::internal {
namespace {

// Separates the job_id from what makes a wake-up's file name unique (job ids never hold it).
constexpr char kSeparator = '~';

[[noreturn]] void ThrowUnavailable(const std::filesystem::path& dir, const std::string& what,
                                   int err) {
  throw CatalogUnavailable("cannot watch the SQLite catalog's cancel wake-ups in " + dir.string() +
                               ": " + what + ": " + std::strerror(err),
                           {{"path", dir.string()}});
}

class InotifyCancelListener : public CancelListener {
 public:
  explicit InotifyCancelListener(std::filesystem::path dir) : dir_(std::move(dir)) {
    std::error_code error;
    std::filesystem::create_directories(dir_, error);
    if (error) ThrowUnavailable(dir_, "cannot create it", error.value());
    fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd_ < 0) ThrowUnavailable(dir_, "inotify_init1", errno);
    if (::inotify_add_watch(fd_, dir_.c_str(), IN_CREATE | IN_DELETE_SELF | IN_MOVE_SELF) < 0) {
      const int err = errno;
      ::close(fd_);
      ThrowUnavailable(dir_, "inotify_add_watch", err);
    }
  }
  ~InotifyCancelListener() override { ::close(fd_); }
  InotifyCancelListener(const InotifyCancelListener&) = delete;
  InotifyCancelListener& operator=(const InotifyCancelListener&) = delete;

  std::optional<std::string> Wait(std::chrono::milliseconds timeout) override {
    if (pending_.empty()) {
      pollfd watched{fd_, POLLIN, 0};
      const int ready = ::poll(&watched, 1, static_cast<int>(timeout.count()));
      if (ready < 0 && errno != EINTR) ThrowUnavailable(dir_, "poll", errno);
      if (ready > 0) ReadEvents();
    }
    if (pending_.empty()) return std::nullopt;
    std::string job_id = std::move(pending_.front());
    pending_.pop_front();
    return job_id;
  }

 private:
  void ReadEvents() {
    alignas(inotify_event) char buffer[16 * 1024];
    while (true) {
      const ssize_t n = ::read(fd_, buffer, sizeof buffer);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return;
        ThrowUnavailable(dir_, "read", errno);
      }
      for (ssize_t at = 0; at < n;) {
        const auto* event = reinterpret_cast<const inotify_event*>(buffer + at);
        at += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
        if (event->mask & IN_Q_OVERFLOW) {
          pending_.emplace_back();  // wake-ups were lost: re-read every row
        } else if (event->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) {
          ThrowUnavailable(dir_, "the directory went away", ENOENT);
        } else if ((event->mask & IN_CREATE) && event->len > 0) {
          std::string_view name(event->name);
          const size_t cut = name.find(kSeparator);
          if (cut != std::string_view::npos && cut > 0) pending_.emplace_back(name.substr(0, cut));
        }
      }
    }
  }

  std::filesystem::path dir_;
  int fd_ = -1;
  std::deque<std::string> pending_;
};

}  // namespace

std::filesystem::path CancelWakeupDir(const std::filesystem::path& database) {
  return std::filesystem::path(database.string() + "-cancels");
}

void SendCancelWakeup(const std::filesystem::path& dir, std::string_view job_id) noexcept {
  // Job ids are file-name safe (letters, digits, '-', '_', '.'; never a leading '.'); a row
  // written by another tool may not be, and then only its heartbeat delivers the cancel.
  if (job_id.empty() || job_id.front() == '.' ||
      job_id.find_first_of("/~") != std::string_view::npos) {
    return;
  }
  static std::atomic<unsigned long> counter{0};
  try {
    std::error_code error;
    std::filesystem::create_directories(dir, error);
    const std::string file = (dir / (std::string(job_id) + kSeparator + std::to_string(::getpid()) +
                                     "-" + std::to_string(counter.fetch_add(1))))
                                 .string();
    const int fd = ::open(file.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) return;
    ::close(fd);
    ::unlink(file.c_str());
  } catch (...) {
    // Out of memory for a path: the heartbeat delivers the cancel.
  }
}

std::unique_ptr<CancelListener> WatchCancelWakeups(const std::filesystem::path& dir) {
  return std::make_unique<InotifyCancelListener>(dir);
}

}  // namespace btstore::internal

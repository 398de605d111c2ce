// The supervised process of a command engine (see process_internal.h). Everything between fork
// and exec (or _exit) runs in a copy of a multithreaded process, so it uses only
// async-signal-safe calls and memory prepared before the fork.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "btstore/errors.h"
#include "engine/process_internal.h"

namespace btstore::internal {

namespace {

// The descriptors as the supervisor arranges them: the program's standard streams and control
// pipe, then the supervisor's own two.
constexpr int kStdinFd = 0;
constexpr int kStdoutFd = 1;
constexpr int kStderrFd = 2;
constexpr int kLifelineFd = 4;
constexpr int kStatusFd = 5;
constexpr int kArrangedFds = 6;
// Descriptors are parked at or above this while being moved into place.
constexpr int kParkingFd = 16;
// Exit status of the program when exec fails (as shells use for "command not found").
constexpr int kExecFailedStatus = 127;
// The supervisor's poll interval when the kernel has no pidfd (before Linux 5.3).
constexpr int kFallbackPollMs = 20;
// Signals whose disposition the worker may have changed and the program must get back.
constexpr int kResetSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGQUIT, SIGCHLD};

[[noreturn]] void ThrowSystemError(const std::string& what) {
  throw InternalError(what + ": " + std::strerror(errno));
}

void CloseFd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

// Write a message on the stderr pipe from between fork and exec.
void WriteRaw(int fd, const char* text) {
  ssize_t rc = ::write(fd, text, std::strlen(text));
  (void)rc;  // nothing can be done about a failed write here
}

int64_t MonotonicMs() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return int64_t{now.tv_sec} * 1000 + now.tv_nsec / 1000000;
}

void SetSignal(int signal, void (*handler)(int)) {
  struct sigaction action {};
  action.sa_handler = handler;
  sigemptyset(&action.sa_mask);
  ::sigaction(signal, &action, nullptr);
}

// Everything the two forked processes need, prepared before the fork.
struct ForkPlan {
  const char* executable;
  char* const* argv;
  char* const* envp;
  const char* working_dir;  // nullptr: stay
  int64_t grace_ms;
  int sources[kArrangedFds];  // the worker's descriptors for 0..5
};

// In the program, after the supervisor's fork: exec it in its own process group.
[[noreturn]] void ExecProgram(const ForkPlan& plan, pid_t supervisor) {
  ::setpgid(0, 0);
  ::close(kLifelineFd);
  ::close(kStatusFd);
  for (int signal : kResetSignals) SetSignal(signal, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  // Should the supervisor die (it is not meant to), the program goes with it.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != supervisor) ::_exit(kExecFailedStatus);
  if (plan.working_dir != nullptr && ::chdir(plan.working_dir) != 0) {
    WriteRaw(kStderrFd, "btstore: cannot enter the engine's working directory: ");
    WriteRaw(kStderrFd, std::strerror(errno));
    WriteRaw(kStderrFd, "\n");
    ::_exit(kExecFailedStatus);
  }
  ::execve(plan.executable, plan.argv, plan.envp);
  WriteRaw(kStderrFd, "btstore: cannot execute the engine's program: ");
  WriteRaw(kStderrFd, std::strerror(errno));
  WriteRaw(kStderrFd, "\n");
  ::_exit(kExecFailedStatus);
}

// The supervisor: fork the program, then stop its group when asked or orphaned, and report
// its wait status.
[[noreturn]] void Supervise(const ForkPlan& plan) {
  // Out of the worker's process group, so a Ctrl-C at the worker's terminal reaches only the
  // worker, which stops its engines itself; and deaf to the signals meant for the worker.
  ::setpgid(0, 0);
  for (int signal : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGQUIT}) SetSignal(signal, SIG_IGN);
  SetSignal(SIGCHLD, SIG_DFL);
  // Park every descriptor above the targets, then move each into place: no move can clobber
  // a source that is still needed.
  int parked[kArrangedFds];
  for (int i = 0; i < kArrangedFds; ++i) {
    parked[i] = ::fcntl(plan.sources[i], F_DUPFD, kParkingFd);
    if (parked[i] < 0) ::_exit(kExecFailedStatus);
  }
  for (int i = 0; i < kArrangedFds; ++i) {
    if (::dup2(parked[i], i) < 0) ::_exit(kExecFailedStatus);
  }
  // Nothing else of the worker's (other jobs' pipes, catalog sockets) stays open here.
  ::close_range(kArrangedFds, ~0U, 0);

  // Descendants the program leaves behind become the supervisor's children when their parent
  // exits, so it can reap them and tell when the whole group is gone.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  const pid_t self = ::getpid();
  const pid_t program = ::fork();
  if (program == 0) ExecProgram(plan, self);
  if (program < 0) {
    WriteRaw(kStderrFd, "btstore: cannot start the engine's program: ");
    WriteRaw(kStderrFd, std::strerror(errno));
    WriteRaw(kStderrFd, "\n");
    ::_exit(kExecFailedStatus);
  }
  ::setpgid(program, program);  // also here, so the group exists before any signal is sent
  // Only the program (and its descendants) may hold the write ends of the output pipes, so
  // the worker sees their end of file when the group is gone.
  for (int fd : {kStdinFd, kStdoutFd, kStderrFd, kControlFd}) ::close(fd);

  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, program, 0));
  bool exited = false;
  int status = 0;
  bool terminating = false;
  bool killed = false;
  int64_t kill_at = 0;
  for (;;) {
    for (;;) {
      int child_status = 0;
      const pid_t reaped = ::waitpid(-1, &child_status, WNOHANG);
      if (reaped <= 0) break;
      if (reaped == program) {
        exited = true;
        status = child_status;
      }
    }
    if (exited) {
      // A program that ended by itself takes what it left in its group along. One that was
      // asked to stop gets the grace period for its whole group (a shell wrapper dies of
      // SIGTERM at once while the real program still saves its checkpoint).
      if (!terminating) ::kill(-program, SIGKILL);
      if (::kill(-program, 0) != 0) {
        ssize_t rc = ::write(kStatusFd, &status, sizeof(status));
        (void)rc;  // the worker is gone when this fails: nobody to tell
        ::_exit(0);
      }
    }
    // Before the program exits its pidfd wakes us; after, the rest of the group is polled.
    int timeout = (pidfd >= 0 && !exited) ? -1 : kFallbackPollMs;
    if (terminating && !killed) {
      const int64_t left = kill_at - MonotonicMs();
      if (left <= 0) {
        ::kill(-program, SIGKILL);
        killed = true;
      } else {
        timeout = timeout < 0 ? static_cast<int>(left) : std::min<int>(timeout, left);
      }
    }
    pollfd fds[2] = {{exited ? -1 : pidfd, POLLIN, 0}, {terminating ? -1 : kLifelineFd, POLLIN, 0}};
    if (::poll(fds, 2, timeout) < 0 && errno != EINTR) ::_exit(kExecFailedStatus);
    if (!terminating && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      // A stop request, or the worker died (end of file): the same orderly stop.
      ::kill(-program, SIGTERM);
      terminating = true;
      kill_at = MonotonicMs() + plan.grace_ms;
    }
  }
}

// Pipes whose worker end is close-on-exec. Returns {read, write}.
std::pair<int, int> MakePipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) ThrowSystemError("cannot create a pipe for the engine");
  return {fds[0], fds[1]};
}

std::vector<char*> CStrings(const std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  pointers.reserve(strings.size() + 1);
  for (const std::string& s : strings) pointers.push_back(const_cast<char*>(s.c_str()));
  pointers.push_back(nullptr);
  return pointers;
}

}  // namespace

SupervisedProcess::SupervisedProcess(const ProcessSpec& spec) {
  std::vector<char*> argv = CStrings(spec.argv);
  std::vector<char*> envp = CStrings(spec.environment);
  int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull < 0) ThrowSystemError("cannot open /dev/null");
  auto [out_r, out_w] = MakePipe();
  auto [err_r, err_w] = MakePipe();
  auto [ctl_r, ctl_w] = MakePipe();
  int lifeline[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, lifeline) != 0) {
    ThrowSystemError("cannot create the engine's lifeline");
  }
  const int life_r = lifeline[0];
  const int life_w = lifeline[1];
  auto [status_r, status_w] = MakePipe();
  ForkPlan plan{spec.executable.c_str(),
                argv.data(),
                envp.data(),
                spec.working_dir.empty() ? nullptr : spec.working_dir.c_str(),
                spec.grace.count(),
                {devnull, out_w, err_w, ctl_w, life_r, status_w}};
  supervisor_ = ::fork();
  if (supervisor_ == 0) Supervise(plan);
  const int fork_errno = errno;
  for (int fd : {devnull, out_w, err_w, ctl_w, life_r, status_w}) ::close(fd);
  stdout_fd_ = out_r;
  stderr_fd_ = err_r;
  control_fd_ = ctl_r;
  status_fd_ = status_r;
  lifeline_fd_ = life_w;
  if (supervisor_ < 0) {
    for (int* fd : {&stdout_fd_, &stderr_fd_, &control_fd_, &status_fd_, &lifeline_fd_}) {
      CloseFd(*fd);
    }
    errno = fork_errno;
    ThrowSystemError("cannot start the engine's supervisor process");
  }
}

SupervisedProcess::~SupervisedProcess() {
  if (supervisor_ > 0) {
    Terminate();
    Reap();
  }
  for (int* fd : {&stdout_fd_, &stderr_fd_, &control_fd_, &status_fd_, &lifeline_fd_}) {
    CloseFd(*fd);
  }
}

void SupervisedProcess::Terminate() {
  if (terminated_ || lifeline_fd_ < 0) return;
  terminated_ = true;
  const char byte = 'T';
  // A socket, so that a supervisor that already exited gives EPIPE here, not a SIGPIPE.
  ssize_t rc = ::send(lifeline_fd_, &byte, 1, MSG_NOSIGNAL);
  (void)rc;  // EPIPE: the supervisor already exited, and with it the program
}

std::optional<int> SupervisedProcess::ReadStatus() {
  int status = 0;
  size_t got = 0;
  while (got < sizeof(status)) {
    ssize_t n = ::read(status_fd_, reinterpret_cast<char*>(&status) + got, sizeof(status) - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;
    got += static_cast<size_t>(n);
  }
  return status;
}

void SupervisedProcess::Reap() {
  if (supervisor_ <= 0) return;
  int status = 0;
  while (::waitpid(supervisor_, &status, 0) < 0 && errno == EINTR) {
  }
  supervisor_ = -1;
  // Only now: closing the lifeline earlier would read as "the worker died".
  CloseFd(lifeline_fd_);
}

std::optional<std::string> FindExecutable(const std::string& program,
                                          const std::string& path_variable) {
  if (program.empty()) return std::nullopt;
  if (program.find('/') != std::string::npos) return program;
  size_t begin = 0;
  while (begin <= path_variable.size()) {
    size_t end = path_variable.find(':', begin);
    if (end == std::string::npos) end = path_variable.size();
    std::string dir = path_variable.substr(begin, end - begin);
    if (dir.empty()) dir = ".";
    const std::string candidate = dir + "/" + program;
    struct stat info {};
    if (::stat(candidate.c_str(), &info) == 0 && S_ISREG(info.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    begin = end + 1;
  }
  return std::nullopt;
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int signal = WTERMSIG(status);
    const char* name = ::strsignal(signal);
    return "was killed by signal " + std::to_string(signal) +
           (name != nullptr ? " (" + std::string(name) + ")" : std::string());
  }
  return "ended with wait status " + std::to_string(status);
}

}  // namespace btstore::internal

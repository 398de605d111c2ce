#pragma once
// A program run under a supervisor process, for command engines. The worker forks a small
// supervisor (no exec: it runs only async-signal-safe calls), which forks the program into a new
// process group and watches two things: the program's exit, and a "lifeline" socket whose other
// end only the worker holds. A byte on the lifeline (a stop request) or its end of file (the
// worker died, even by SIGKILL) makes the supervisor send SIGTERM to the whole group, then
// SIGKILL after the grace period. When the program exits by itself, whatever it left in its group
// (grandchildren) is killed too; when it was asked to stop, its group gets the grace period.
// The supervisor (a child subreaper, so orphaned descendants become its children) reports the
// program's wait status on a pipe once the whole group is gone.
// So neither the program nor its descendants outlive the worker, whatever ends it.

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace btstore::internal {

/// What to run.
struct ProcessSpec {
  std::string executable;                  ///< path of the program to exec
  std::vector<std::string> argv;           ///< its arguments, argv[0] included
  std::vector<std::string> environment;    ///< "NAME=value" entries, the whole environment
  std::string working_dir;                 ///< empty: the worker's
  std::chrono::milliseconds grace{10000};  ///< SIGTERM to SIGKILL
};

/// The file descriptor the program writes its control lines to (BTSTORE_CONTROL_FD).
inline constexpr int kControlFd = 3;

/// A running supervised program and the worker's ends of its pipes (all close-on-exec).
class SupervisedProcess {
 public:
  /// Start `spec` under a supervisor. Throws InternalError when pipes or processes cannot be
  /// made.
  explicit SupervisedProcess(const ProcessSpec& spec);
  /// Stop the program (Terminate) unless it ended, and wait for the supervisor.
  ~SupervisedProcess();
  SupervisedProcess(const SupervisedProcess&) = delete;
  SupervisedProcess& operator=(const SupervisedProcess&) = delete;

  int stdout_fd() const { return stdout_fd_; }
  int stderr_fd() const { return stderr_fd_; }
  int control_fd() const { return control_fd_; }
  /// Readable once the program's wait status can be read (ReadStatus).
  int status_fd() const { return status_fd_; }

  /// Ask the supervisor to stop the program's process group: SIGTERM now, SIGKILL after the
  /// grace period. Idempotent.
  void Terminate();
  /// Read the program's wait status once status_fd() is readable: the status, or nullopt when
  /// the supervisor ended without reporting one (it was killed).
  std::optional<int> ReadStatus();
  /// Wait for the supervisor process to exit.
  void Reap();

 private:
  pid_t supervisor_ = -1;
  int stdout_fd_ = -1;
  int stderr_fd_ = -1;
  int control_fd_ = -1;
  int status_fd_ = -1;
  int lifeline_fd_ = -1;
  bool terminated_ = false;
};

/// Return the path to exec for `program`: itself when it contains a '/', else the first
/// executable file named so in the directories of `path_variable` (a PATH value). Returns
/// nullopt when there is none.
std::optional<std::string> FindExecutable(const std::string& program,
                                          const std::string& path_variable);

/// Describe a wait status for people: "exited with status 3", "was killed by signal 9 (Killed)".
std::string DescribeWaitStatus(int status);

}  // namespace btstore::internal

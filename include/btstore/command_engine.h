#pragma once
/// Command engines (contract section 8): any program is an engine. The worker runs the program
/// in its own process group with the job in its environment, reads progress and checkpoints
/// from a control pipe, logs its output (bounded) with the job, and turns the bundle it writes
/// into the attempt's result, validated like any other. docs/ENGINES.md is the protocol's full
/// reference.

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "btstore/engine.h"

namespace btstore {

/// The default pause between SIGTERM and SIGKILL when a program must stop.
inline constexpr std::chrono::milliseconds kDefaultEngineGrace{10000};
/// The default bound on each of a program's two logs per attempt.
inline constexpr int64_t kDefaultEngineLogLimit = int64_t{4} << 20;

/// How to run one command engine.
struct CommandEngineSpec {
  std::string name;               ///< what jobs name in their config ("engine": NAME)
  std::vector<std::string> argv;  ///< the program (searched in PATH without a '/') and arguments
  std::string working_dir;        ///< where it runs; empty: the worker's working directory
  /// Set in the program's environment, on top of the worker's (whose BTSTORE_* variables are
  /// left out, so that the catalog's credentials never reach the program).
  std::map<std::string, std::string> env;
  /// SIGTERM to SIGKILL on cancel, lost lease, job_timeout and worker shutdown.
  std::chrono::milliseconds grace = kDefaultEngineGrace;
  /// Each log (stdout, stderr) keeps at most this many bytes per attempt: its first three
  /// quarters as they come and its last quarter at the end, with a line saying how much was
  /// left out between them.
  int64_t log_limit_bytes = kDefaultEngineLogLimit;

  /// Check the spec: a valid name, a non-empty program, a grace of 0..1 hour, a log limit of
  /// 4 KiB..1 GiB, environment names without '='. Throws InvalidArgument naming the field.
  void Validate() const;
};

/// Parse a `--engine NAME=COMMAND` flag: COMMAND runs with `/bin/sh -c`, so it may hold
/// arguments, quotes and redirections. Throws InvalidArgument (no '=', a bad name, an empty
/// command).
CommandEngineSpec ParseEngineFlag(std::string_view flag);

/// Read an engines file: a JSON object `{"engines": [{"name", "command" | "argv",
/// "working_dir", "env", "grace_seconds", "log_limit_bytes"}, ...]}` (docs/ENGINES.md). A
/// relative working_dir is relative to the file's directory. Throws InvalidArgument naming the
/// file and the entry (unreadable, not JSON, unknown keys, wrong types, both or neither of
/// command and argv).
std::vector<CommandEngineSpec> LoadEnginesFile(const std::string& path);

/// Register a command engine in `registry` under `spec.name`. Throws InvalidArgument (see
/// CommandEngineSpec::Validate, or a name already registered).
void RegisterCommandEngine(EngineRegistry& registry, CommandEngineSpec spec);

}  // namespace btstore

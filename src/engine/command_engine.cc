// Command engines: a program run per attempt under a supervisor (process.cc), fed the job through
// its environment and files, heard through a control pipe, logged with bounds, and read back as a
// bundle that the worker then validates, stages and publishes like any engine's result.

#include "btstore/command_engine.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "btstore/errors.h"
#include "engine/engine_internal.h"
#include "engine/process_internal.h"

extern char** environ;

namespace btstore {

namespace fs = std::filesystem;

namespace {

// How often the attempt's thread looks at its stop flag while the program runs: the added
// latency of a cancel, at most.
constexpr int kStopPollMs = 20;
// After the program ended, how long its pipes may stay open (held by a descendant that left
// its process group) before the worker stops reading them.
constexpr std::chrono::seconds kPipeDrainLimit{2};
constexpr size_t kReadChunk = 64 * 1024;
// A control line longer than this is not a protocol message.
constexpr size_t kMaxControlLine = 64 * 1024;
// The end of stderr kept for error_message.
constexpr size_t kStderrTailBytes = 2000;
constexpr int kStderrTailLines = 20;
constexpr std::chrono::milliseconds kMaxGrace = std::chrono::hours(1);
constexpr int64_t kMinLogLimit = 4 * 1024;
constexpr int64_t kMaxLogLimit = int64_t{1} << 30;
// The largest checkpoint a program may hand over (it is read into memory to be stored).
constexpr int64_t kMaxCheckpointBytes = int64_t{1} << 30;

[[noreturn]] void ThrowIo(const std::string& what, const fs::path& path) {
  throw InternalError(what + " " + path.string() + ": " + std::strerror(errno),
                      {{"path", path.string()}});
}

// One output stream of the program, kept in its log file within a bound: the first three
// quarters of the bound as they come (so `logs --follow` shows them live), then the last quarter
// in a ring, written at the end after a line that says how much was left out.
class BoundedLog {
 public:
  BoundedLog(const std::string& path, int64_t limit)
      : path_(path), head_limit_(limit - limit / 4), tail_limit_(static_cast<size_t>(limit / 4)) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0) ThrowIo("cannot create the engine log", path_);
  }
  ~BoundedLog() {
    if (fd_ >= 0) ::close(fd_);
  }
  BoundedLog(const BoundedLog&) = delete;
  BoundedLog& operator=(const BoundedLog&) = delete;

  void Append(std::string_view bytes) {
    const int64_t room = std::max<int64_t>(head_limit_ - written_, 0);
    const size_t head = static_cast<size_t>(std::min<int64_t>(room, bytes.size()));
    Write(bytes.substr(0, head));
    written_ += static_cast<int64_t>(head);
    bytes.remove_prefix(head);
    if (bytes.empty()) return;
    tail_.insert(tail_.end(), bytes.begin(), bytes.end());
    if (tail_.size() > tail_limit_) {
      const size_t drop = tail_.size() - tail_limit_;
      omitted_ += static_cast<int64_t>(drop);
      tail_.erase(tail_.begin(), tail_.begin() + static_cast<std::ptrdiff_t>(drop));
    }
  }

  // Write the kept tail; called once, when the program's stream ended.
  void Finish() {
    if (omitted_ > 0) {
      Write("\n[btstore: " + std::to_string(omitted_) +
            " bytes left out here: the log keeps its first and last bytes]\n");
    }
    const std::string tail(tail_.begin(), tail_.end());
    Write(tail);
    tail_.clear();
  }

 private:
  void Write(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::write(fd_, bytes.data(), bytes.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) ThrowIo("cannot write the engine log", path_);
      bytes.remove_prefix(static_cast<size_t>(n));
    }
  }

  fs::path path_;
  int fd_ = -1;
  int64_t head_limit_;
  size_t tail_limit_;
  int64_t written_ = 0;
  int64_t omitted_ = 0;
  std::deque<char> tail_;
};

// The last lines of stderr, for error_message.
class TailKeeper {
 public:
  void Append(std::string_view bytes) {
    text_.append(bytes);
    if (text_.size() > 2 * kStderrTailBytes) text_.erase(0, text_.size() - kStderrTailBytes);
  }
  // The last kStderrTailLines lines of the last kStderrTailBytes bytes.
  std::string Lines() const {
    std::string text =
        text_.size() > kStderrTailBytes ? text_.substr(text_.size() - kStderrTailBytes) : text_;
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    size_t start = text.size();
    for (int lines = 0; lines < kStderrTailLines; ++lines) {
      const size_t newline = start == 0 ? std::string::npos : text.rfind('\n', start - 1);
      if (newline == std::string::npos) return text;
      start = newline;
    }
    return text.substr(start + 1);
  }

 private:
  std::string text_;
};

// Return the environment of the program: the worker's without its BTSTORE_* variables, then
// the engine's, then the protocol's.
std::vector<std::string> ProgramEnvironment(const CommandEngineSpec& spec,
                                            const std::map<std::string, std::string>& protocol) {
  std::map<std::string, std::string> vars;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view text(*entry);
    size_t eq = text.find('=');
    if (eq == std::string_view::npos || text.starts_with("BTSTORE_")) continue;
    vars[std::string(text.substr(0, eq))] = std::string(text.substr(eq + 1));
  }
  for (const auto& [name, value] : spec.env) vars[name] = value;
  for (const auto& [name, value] : protocol) vars[name] = value;
  std::vector<std::string> environment;
  for (const auto& [name, value] : vars) environment.push_back(name + "=" + value);
  return environment;
}

// The job as the program reads it from BTSTORE_JOB: the catalog fields it can use, the config
// parsed, and the attempt.
std::string JobFileJson(const JobRecord& job) {
  nlohmann::json doc = {
      {"job_id", job.job_id},
      {"alpha_name", job.alpha_name},
      {"start_date", job.start_date.ToString()},
      {"end_date", job.end_date.ToString()},
      {"weight_method", job.weight_method},
      {"config_json", internal::ParseConfigObject(job.config_json)},
      {"created_by", job.created_by},
      {"created_at", FormatTimestamp(job.created_at)},
      {"priority", ToString(job.priority)},
      {"job_timeout", job.job_timeout_seconds},
      {"retry_count", job.retry_count},
      {"max_retries", job.max_retries},
      {"attempt", job.attempt},
      {"engine", job.engine},
  };
  return doc.dump(2) + "\n";
}

void WriteFile(const fs::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) ThrowIo("cannot write", path);
}

class CommandEngine : public Engine {
 public:
  explicit CommandEngine(const CommandEngineSpec& spec) : spec_(spec) {}

  BacktestResult Run(const JobRecord& job, EngineContext& context) override {
    context.ThrowIfStopped();
    const fs::path dir = context.MakeAttemptDirectory();
    const fs::path output_dir = dir / "output";
    const fs::path checkpoint_dir = dir / "checkpoints";
    const fs::path job_file = dir / "job.json";
    fs::create_directory(output_dir);
    fs::create_directory(checkpoint_dir);
    WriteFile(job_file, JobFileJson(job));
    std::string previous_checkpoint;
    if (std::optional<std::string> bytes = context.LoadCheckpoint()) {
      previous_checkpoint = (dir / "previous.ckpt").string();
      WriteFile(previous_checkpoint, *bytes);
    }

    const std::map<std::string, std::string> protocol = {
        {"BTSTORE_JOB", job_file.string()},
        {"BTSTORE_JOB_ID", job.job_id},
        {"BTSTORE_OUTPUT_DIR", output_dir.string()},
        {"BTSTORE_CHECKPOINT", previous_checkpoint},
        {"BTSTORE_CHECKPOINT_DIR", checkpoint_dir.string()},
        {"BTSTORE_CONTROL_FD", std::to_string(internal::kControlFd)},
    };
    internal::ProcessSpec process;
    process.argv = spec_.argv;
    process.environment = ProgramEnvironment(spec_, protocol);
    process.working_dir = spec_.working_dir;
    process.grace = spec_.grace;
    const char* path_variable = std::getenv("PATH");
    std::optional<std::string> executable = internal::FindExecutable(
        spec_.argv.front(), path_variable != nullptr ? path_variable : "/usr/bin:/bin");
    if (!executable) {
      throw InvalidArgument(
          "engine \"" + spec_.name + "\": program \"" + spec_.argv.front() + "\" not found in PATH",
          {{"engine", spec_.name}, {"program", spec_.argv.front()}});
    }
    process.executable = *executable;

    BoundedLog out_log(context.LogLocation(LogStream::kStdout), spec_.log_limit_bytes);
    BoundedLog err_log(context.LogLocation(LogStream::kStderr), spec_.log_limit_bytes);
    TailKeeper stderr_tail;
    std::optional<int> status;
    bool stopped = false;
    {
      internal::SupervisedProcess program(process);
      status = Supervise(program, context, checkpoint_dir, out_log, err_log, stderr_tail, stopped);
    }
    out_log.Finish();
    err_log.Finish();
    if (stopped) throw JobStopped();
    if (!status) {
      throw InternalError("engine \"" + spec_.name +
                              "\": its supervisor process ended without reporting the program's "
                              "exit",
                          {{"engine", spec_.name}});
    }
    if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
      const std::string tail = stderr_tail.Lines();
      throw InvalidResult(
          "engine \"" + spec_.name + "\": the program " + internal::DescribeWaitStatus(*status) +
              (tail.empty() ? "; it wrote nothing to stderr" : "; the end of its stderr:\n" + tail),
          {{"engine", spec_.name}, {"job_id", job.job_id}});
    }
    return ReadOutput(job, output_dir);
  }

 private:
  // Run the program to its end, pumping its pipes: logs, progress, checkpoints, and a stop
  // request passed on as SIGTERM to its group. Returns its wait status; sets `stopped` when it
  // was asked to stop.
  std::optional<int> Supervise(internal::SupervisedProcess& program, EngineContext& context,
                               const fs::path& checkpoint_dir, BoundedLog& out_log,
                               BoundedLog& err_log, TailKeeper& stderr_tail, bool& stopped) {
    struct Stream {
      int fd;
      bool open = true;
    };
    Stream out{program.stdout_fd()}, err{program.stderr_fd()}, ctl{program.control_fd()},
        st{program.status_fd()};
    std::optional<int> status;
    std::optional<std::chrono::steady_clock::time_point> ended_at;
    std::string control_buffer;
    std::string chunk(kReadChunk, '\0');
    for (;;) {
      if (!stopped && context.StopRequested()) {
        program.Terminate();
        stopped = true;
      }
      const bool pipes_open = out.open || err.open || ctl.open;
      if (!st.open &&
          (!pipes_open || std::chrono::steady_clock::now() - *ended_at > kPipeDrainLimit)) {
        break;
      }
      pollfd fds[4] = {{out.open ? out.fd : -1, POLLIN, 0},
                       {err.open ? err.fd : -1, POLLIN, 0},
                       {ctl.open ? ctl.fd : -1, POLLIN, 0},
                       {st.open ? st.fd : -1, POLLIN, 0}};
      if (::poll(fds, 4, kStopPollMs) < 0 && errno != EINTR) {
        ThrowIo("cannot wait for the engine's program", "poll");
      }
      auto drain = [&](Stream& stream, short revents, auto&& sink) {
        if ((revents & (POLLIN | POLLHUP | POLLERR)) == 0) return;
        ssize_t n = ::read(stream.fd, chunk.data(), chunk.size());
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
        if (n <= 0) {
          stream.open = false;
          return;
        }
        sink(std::string_view(chunk.data(), static_cast<size_t>(n)));
      };
      drain(out, fds[0].revents, [&](std::string_view bytes) { out_log.Append(bytes); });
      drain(err, fds[1].revents, [&](std::string_view bytes) {
        err_log.Append(bytes);
        stderr_tail.Append(bytes);
      });
      drain(ctl, fds[2].revents, [&](std::string_view bytes) {
        control_buffer.append(bytes);
        HandleControlLines(control_buffer, context, checkpoint_dir, err_log);
      });
      if (st.open && (fds[3].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        status = program.ReadStatus();
        st.open = false;
        ended_at = std::chrono::steady_clock::now();
      }
    }
    program.Reap();
    return status;
  }

  // Act on every complete line in `buffer` and keep the incomplete rest. A line that is not a
  // protocol message is noted in the stderr log and otherwise ignored.
  void HandleControlLines(std::string& buffer, EngineContext& context,
                          const fs::path& checkpoint_dir, BoundedLog& err_log) {
    size_t newline;
    while ((newline = buffer.find('\n')) != std::string::npos) {
      std::string line = buffer.substr(0, newline);
      buffer.erase(0, newline + 1);
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      std::string problem = HandleControlLine(line, context, checkpoint_dir);
      if (!problem.empty()) err_log.Append("[btstore: control line ignored: " + problem + "]\n");
    }
    if (buffer.size() > kMaxControlLine) {
      err_log.Append("[btstore: control line ignored: longer than 64 KiB]\n");
      buffer.clear();
    }
  }

  // Return what is wrong with the line, or "" when it was applied.
  std::string HandleControlLine(const std::string& line, EngineContext& context,
                                const fs::path& checkpoint_dir) {
    nlohmann::json message = nlohmann::json::parse(line, nullptr, false);
    if (!message.is_object()) return "not a JSON object: " + line.substr(0, 200);
    if (auto it = message.find("progress"); it != message.end()) {
      if (!it->is_number()) return "progress is not a number";
      context.ReportProgress(static_cast<int>(std::clamp(it->get<double>(), 0.0, 100.0)));
    }
    if (auto it = message.find("checkpoint"); it != message.end()) {
      if (!it->is_string()) return "checkpoint is not a string";
      return SaveCheckpoint(it->get<std::string>(), context, checkpoint_dir);
    }
    return "";
  }

  // Store the checkpoint file the program named (relative to its checkpoint directory, or
  // absolute inside it) as this attempt's checkpoint.
  std::string SaveCheckpoint(const std::string& name, EngineContext& context,
                             const fs::path& checkpoint_dir) {
    fs::path path = fs::path(name).is_absolute() ? fs::path(name) : checkpoint_dir / name;
    std::error_code ec;
    const fs::path resolved = fs::weakly_canonical(path, ec);
    const fs::path base = fs::weakly_canonical(checkpoint_dir, ec);
    const std::string inside = base.string() + "/";
    if (ec || !resolved.string().starts_with(inside)) {
      return "checkpoint " + name + " is not inside BTSTORE_CHECKPOINT_DIR";
    }
    const auto size = fs::file_size(resolved, ec);
    if (ec) return "checkpoint " + name + " cannot be read: " + ec.message();
    if (static_cast<int64_t>(size) > kMaxCheckpointBytes) {
      return "checkpoint " + name + " is larger than 1 GiB";
    }
    std::ifstream in(resolved, std::ios::binary);
    std::ostringstream bytes;
    bytes << in.rdbuf();
    if (!in.good() && !in.eof()) return "checkpoint " + name + " cannot be read";
    context.SaveCheckpoint(bytes.str());
    return "";
  }

  // Read the program's bundle exactly as any bundle is read (schemas, summary.json's required
  // keys, the manifest when it wrote one); the worker then stages it with btstore's writer,
  // which also checks the sort order and adds the manifest.
  BacktestResult ReadOutput(const JobRecord& job, const fs::path& output_dir) {
    BacktestResult result;
    try {
      result = ReadBundle(output_dir);
    } catch (const Error& e) {
      ErrorDetails details = e.details();
      details["engine"] = spec_.name;
      throw InvalidResult(
          "engine \"" + spec_.name +
              "\": the program exited 0 but its output is not a valid bundle: " + e.what(),
          std::move(details));
    }
    SetJobIdentity(result, job.job_id, job.alpha_name, job.start_date, job.end_date,
                   job.weight_method, job.config_json);
    if (!ReadEngineReport(result.extra_summary_json)) {
      nlohmann::json extra = nlohmann::json::parse(result.extra_summary_json, nullptr, false);
      if (!extra.is_object()) extra = nlohmann::json::object();
      extra["engine"] = {{"name", spec_.name}};
      result.extra_summary_json = extra.dump();
    }
    return result;
  }

  const CommandEngineSpec& spec_;
};

class CommandEngineFactory : public EngineFactory {
 public:
  explicit CommandEngineFactory(CommandEngineSpec spec) : spec_(std::move(spec)) {}
  std::unique_ptr<Engine> Make() const override { return std::make_unique<CommandEngine>(spec_); }

 private:
  CommandEngineSpec spec_;
};

std::string Trimmed(std::string_view text) {
  const size_t begin = text.find_first_not_of(" \t");
  if (begin == std::string_view::npos) return "";
  const size_t end = text.find_last_not_of(" \t");
  return std::string(text.substr(begin, end - begin + 1));
}

}  // namespace

void CommandEngineSpec::Validate() const {
  ValidateEngineName(name);
  if (argv.empty() || argv.front().empty()) {
    throw InvalidArgument("engine \"" + name + "\" has no program to run",
                          {{"field", "command"}, {"engine", name}});
  }
  if (grace < std::chrono::milliseconds(0) || grace > kMaxGrace) {
    throw InvalidArgument("engine \"" + name + "\": the grace period must be 0 to 3600 seconds",
                          {{"field", "grace_seconds"}, {"engine", name}});
  }
  if (log_limit_bytes < kMinLogLimit || log_limit_bytes > kMaxLogLimit) {
    throw InvalidArgument("engine \"" + name + "\": log_limit_bytes must be 4096 to 1073741824",
                          {{"field", "log_limit_bytes"}, {"engine", name}});
  }
  for (const auto& [variable, value] : env) {
    if (variable.empty() || variable.find('=') != std::string::npos ||
        variable.find('\0') != std::string::npos || value.find('\0') != std::string::npos) {
      throw InvalidArgument(
          "engine \"" + name + "\": bad environment variable name \"" + variable + "\"",
          {{"field", "env"}, {"engine", name}});
    }
  }
}

CommandEngineSpec ParseEngineFlag(std::string_view flag) {
  const size_t eq = flag.find('=');
  if (eq == std::string_view::npos) {
    throw InvalidArgument("--engine takes NAME=COMMAND, got \"" + std::string(flag) + "\"",
                          {{"field", "engine"}});
  }
  CommandEngineSpec spec;
  spec.name = Trimmed(flag.substr(0, eq));
  const std::string command = Trimmed(flag.substr(eq + 1));
  if (command.empty()) {
    throw InvalidArgument("--engine " + spec.name + "=: the command is empty",
                          {{"field", "engine"}, {"engine", spec.name}});
  }
  spec.argv = {"/bin/sh", "-c", command};
  spec.Validate();
  return spec;
}

std::vector<CommandEngineSpec> LoadEnginesFile(const std::string& path) {
  auto fail = [&](const std::string& why) -> InvalidArgument {
    return InvalidArgument("engines file " + path + ": " + why,
                           {{"field", "engines"}, {"path", path}});
  };
  std::ifstream in(path, std::ios::binary);
  if (!in) throw fail(std::string("cannot be read: ") + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (JsonNestingDepth(text.str()) > kMaxJsonDepth) throw fail("nested too deeply");
  nlohmann::json doc = nlohmann::json::parse(text.str(), nullptr, false);
  if (!doc.is_object() || !doc.contains("engines") || !doc["engines"].is_array()) {
    throw fail("expected a JSON object {\"engines\": [...]}");
  }
  const fs::path base = fs::absolute(fs::path(path)).parent_path();
  std::vector<CommandEngineSpec> specs;
  for (size_t i = 0; i < doc["engines"].size(); ++i) {
    const nlohmann::json& entry = doc["engines"][i];
    const std::string where = "engine #" + std::to_string(i + 1);
    if (!entry.is_object()) throw fail(where + " is not an object");
    for (const auto& [key, value] : entry.items()) {
      static const std::vector<std::string> kKeys = {
          "name", "command", "argv", "working_dir", "env", "grace_seconds", "log_limit_bytes"};
      if (std::find(kKeys.begin(), kKeys.end(), key) == kKeys.end()) {
        throw fail(where + " has an unknown key \"" + key + "\"");
      }
    }
    CommandEngineSpec spec;
    if (!entry.contains("name") || !entry["name"].is_string()) {
      throw fail(where + " needs a string \"name\"");
    }
    spec.name = entry["name"].get<std::string>();
    const std::string named = where + " (" + spec.name + ")";
    if (entry.contains("command") == entry.contains("argv")) {
      throw fail(named + " needs exactly one of \"command\" (a shell command) and \"argv\"");
    }
    if (entry.contains("command")) {
      if (!entry["command"].is_string()) throw fail(named + ": \"command\" must be a string");
      spec.argv = {"/bin/sh", "-c", entry["command"].get<std::string>()};
    } else {
      if (!entry["argv"].is_array()) throw fail(named + ": \"argv\" must be an array of strings");
      for (const nlohmann::json& arg : entry["argv"]) {
        if (!arg.is_string()) throw fail(named + ": \"argv\" must be an array of strings");
        spec.argv.push_back(arg.get<std::string>());
      }
    }
    if (entry.contains("working_dir")) {
      if (!entry["working_dir"].is_string()) {
        throw fail(named + ": \"working_dir\" must be a string");
      }
      fs::path dir = entry["working_dir"].get<std::string>();
      spec.working_dir = (dir.is_absolute() ? dir : base / dir).lexically_normal().string();
    }
    if (entry.contains("env")) {
      if (!entry["env"].is_object()) throw fail(named + ": \"env\" must be an object of strings");
      for (const auto& [name, value] : entry["env"].items()) {
        if (!value.is_string()) throw fail(named + ": \"env\" must be an object of strings");
        spec.env[name] = value.get<std::string>();
      }
    }
    if (entry.contains("grace_seconds")) {
      if (!entry["grace_seconds"].is_number()) {
        throw fail(named + ": \"grace_seconds\" must be a number");
      }
      const double seconds = entry["grace_seconds"].get<double>();
      if (!(seconds >= 0 && seconds <= 3600)) {
        throw fail(named + ": \"grace_seconds\" must be 0 to 3600");
      }
      spec.grace = std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
    }
    if (entry.contains("log_limit_bytes")) {
      if (!entry["log_limit_bytes"].is_number_integer()) {
        throw fail(named + ": \"log_limit_bytes\" must be an integer");
      }
      spec.log_limit_bytes = entry["log_limit_bytes"].get<int64_t>();
    }
    try {
      spec.Validate();
    } catch (const InvalidArgument& e) {
      throw fail(e.what());
    }
    specs.push_back(std::move(spec));
  }
  return specs;
}

void RegisterCommandEngine(EngineRegistry& registry, CommandEngineSpec spec) {
  spec.Validate();
  std::string name = spec.name;
  registry.Register(std::move(name), std::make_unique<CommandEngineFactory>(std::move(spec)));
}

}  // namespace btstore

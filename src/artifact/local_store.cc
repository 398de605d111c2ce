// The local artifact store: a directory on a POSIX file system (see layout_internal.h for what
// lies where). Publication is staging + fsync + rename + fsync of the parent; removal goes
// through the trash; the publish lock is an flock shared by every process using the root.

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <system_error>

#include "artifact/io_internal.h"
#include "artifact/layout_internal.h"
#include "artifact/s3_store_internal.h"
#include "artifact/source_internal.h"
#include "artifact/summary_internal.h"
#include "btstore/artifact_store.h"
#include "btstore/errors.h"

namespace btstore {

namespace fs = std::filesystem;

namespace {

[[noreturn]] void ThrowIoError(const std::string& what, const fs::path& path, int err) {
  throw InternalError(what + " " + path.string() + ": " + std::strerror(err),
                      {{"path", path.string()}});
}

void WriteAll(int fd, std::string_view bytes, const fs::path& path) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      ThrowIoError("cannot write", path, errno);
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
}

// Write `bytes` to `path` atomically and durably: a temporary file, fsync, rename, fsync of the
// directory. A reader (the next attempt) sees the old checkpoint or the new one, never a part.
// A failure (a full disk) removes the temporary file: nothing but the old checkpoint remains.
void WriteFileAtomically(const fs::path& path, std::string_view bytes) {
  fs::path tmp = path;
  tmp += ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) ThrowIoError("cannot create", tmp, errno);
  int err = 0;
  std::string what;
  try {
    WriteAll(fd, bytes, tmp);
  } catch (const Error&) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::fsync(fd) != 0) {
    err = errno;
    what = "cannot flush";
  }
  // close(2) may report a deferred write error (NFS) that fsync did not.
  if (::close(fd) != 0 && err == 0) {
    err = errno;
    what = "cannot close";
  }
  if (err == 0 && ::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    what = "cannot rename";
  }
  if (err != 0) {
    ::unlink(tmp.c_str());
    ThrowIoError(what, tmp, err);
  }
  internal::SyncDirectory(path.parent_path());
}

// Whether `dir` holds a bundle that btstore wrote for `job_id`: a real directory (not a symlink)
// whose summary.json is readable (a regular file, bounded) and names this job and btstore as
// its writer. That is what a stale attempt of the job leaves; anything else there (an export, a
// user's directory) is not btstore's to remove.
bool IsOwnBundle(const fs::path& dir, std::string_view job_id) {
  std::error_code ec;
  if (!fs::is_directory(fs::symlink_status(dir, ec))) return false;
  std::string text;
  try {
    text = internal::ReadSummaryText(dir);
  } catch (const Error&) {
    return false;
  }
  const nlohmann::json summary = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!summary.is_object()) return false;
  const auto id = summary.find("job_id");
  const auto writer = summary.find("writer");
  return id != summary.end() && id->is_string() && id->get<std::string>() == job_id &&
         writer != summary.end() && writer->is_object() && writer->contains("name") &&
         (*writer)["name"] == "btstore";
}

// An exclusive flock on `<root>/.locks/<job_id>.lock`, released when the object dies. It makes
// "check ownership, publish, complete or unpublish" one critical section among the workers of
// every process sharing the root.
class JobFileLock : public JobLock {
 public:
  JobFileLock(const fs::path& root, const std::string& job_id) {
    fs::path dir = root / internal::kLocksDir;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) ThrowIoError("cannot create", dir, ec.value());
    fs::path path = dir / (job_id + ".lock");
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) ThrowIoError("cannot open lock file", path, errno);
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd_);
      ThrowIoError("cannot lock", path, err);
    }
  }
  ~JobFileLock() override { ::close(fd_); }
  JobFileLock(const JobFileLock&) = delete;
  JobFileLock& operator=(const JobFileLock&) = delete;

 private:
  int fd_ = -1;
};

// Create the artifact root if missing and return it absolute and canonical, so that result
// paths stored in the catalog (absolute, under it) compare with it by prefix.
fs::path PrepareArtifactRoot(const fs::path& root) {
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) {
    throw InternalError("cannot create the artifact root " + root.string() + ": " + ec.message(),
                        {{"path", root.string()}});
  }
  fs::path canonical = fs::canonical(root, ec);
  if (ec) {
    throw InternalError("cannot resolve the artifact root " + root.string() + ": " + ec.message(),
                        {{"path", root.string()}});
  }
  return canonical;
}

// The non-empty components of a path: "/a/b/" and "/a/b" both give {"/", "a", "b"}, so that a
// trailing separator never decides whether one path lies inside another.
std::vector<std::string> Components(const fs::path& path) {
  std::vector<std::string> parts;
  for (const fs::path& part : path) {
    if (!part.empty()) parts.push_back(part.string());
  }
  return parts;
}

// Resolve `stored` (absolute, or relative to the root as older tools registered it) against
// the canonical root `root`, following symlinks and `..`, and check that it is a directory
// strictly inside the root and not in one of the store's dot-directories (job ids never start
// with a dot, so nothing of a job lives there). With `require_directory` false, a path that is
// well placed but missing or not a directory is not a problem (retention removes what is
// there).
BundleLocation ResolveStoredPath(const fs::path& root, const std::optional<std::string>& stored,
                                 bool require_directory) {
  if (!stored || stored->empty()) return {PathProblem::kNoPath, {}, {}, {}};
  fs::path path(*stored);
  if (path.is_relative()) path = root / path;

  // weakly_canonical follows every symlink of the part that exists and folds `..` lexically in
  // the rest, so neither a symlink nor a `..` can carry the path out of the root unnoticed.
  std::error_code ec;
  fs::path resolved = fs::weakly_canonical(path, ec);
  if (ec) return {PathProblem::kUnresolvable, path.string(), {}, ec.message()};

  const std::vector<std::string> root_parts = Components(root);
  const std::vector<std::string> parts = Components(resolved);
  if (parts.size() < root_parts.size() ||
      !std::equal(root_parts.begin(), root_parts.end(), parts.begin())) {
    return {PathProblem::kOutsideRoot, resolved.string(), {}, {}};
  }
  if (parts.size() == root_parts.size()) return {PathProblem::kIsRoot, resolved.string(), {}, {}};
  const std::string& owner = parts[root_parts.size()];
  // .staging, .trash, .checkpoints, .locks: the store's own; no job_id starts with a dot.
  if (owner.starts_with('.')) return {PathProblem::kInternalDir, resolved.string(), owner, {}};

  if (require_directory) {
    fs::file_status status = fs::status(resolved, ec);
    if (ec && ec != std::errc::no_such_file_or_directory) {
      return {PathProblem::kUnresolvable, resolved.string(), owner, ec.message()};
    }
    if (!fs::exists(status)) return {PathProblem::kMissingOnDisk, resolved.string(), owner, {}};
    if (!fs::is_directory(status)) {
      return {PathProblem::kNotADirectory, resolved.string(), owner, {}};
    }
  }
  return {PathProblem::kNone, resolved.string(), owner, {}};
}

// Remove a directory entry without following it: a symlink goes alone, never its target.
// Directories are moved to the trash unflushed and their parents collected in `dirty`: the
// caller flushes each once per batch.
void RemoveEntry(const fs::path& path, const std::string& job_id, std::set<fs::path>& dirty) {
  std::error_code ec;
  const fs::file_status status = fs::symlink_status(path, ec);
  if (ec == std::errc::no_such_file_or_directory || (!ec && !fs::exists(status))) return;
  if (!ec && fs::is_directory(status)) {
    internal::RemoveBundleDir(path, /*flush_parent=*/false);
    dirty.insert(path.parent_path());
    return;
  }
  if (!ec) fs::remove(path, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) {
    throw InternalError("cannot remove " + path.string() + " of job " + job_id + ": " +
                            ec.message() + "; fix the cause and run cleanup again",
                        {{"job_id", job_id}, {"path", path.string()}});
  }
}

// Whether `name` may name a directory of the root: a valid job_id (a row from another tool may
// carry any text; only a valid id is safe as a path component).
bool IsJobIdName(std::string_view name) {
  try {
    ValidateJobId(name);
  } catch (const InvalidArgument&) {
    return false;
  }
  return true;
}

class LocalRemovalBatch : public RemovalBatch {
 public:
  explicit LocalRemovalBatch(fs::path root) : root_(std::move(root)) {}

  void RemoveBundle(const BundleLocation& where, std::string_view job_id) override {
    RemoveEntry(where.location, std::string(job_id), dirty_);
  }

  void RemoveJob(std::string_view job_id_view) override {
    if (!IsJobIdName(job_id_view)) return;
    const std::string job_id(job_id_view);
    // The bundle's default place (usually just removed by RemoveBundle, then this finds
    // nothing).
    RemoveEntry(root_ / job_id, job_id, dirty_);
    // A half-removed checkpoint directory is harmless: the row stays marked (Resume refuses it)
    // until this has succeeded, so no attempt can load from it.
    const fs::path checkpoints = root_ / internal::kCheckpointsDir / job_id;
    std::error_code ec;
    fs::remove_all(checkpoints, ec);
    if (ec && ec != std::errc::no_such_file_or_directory) {
      throw InternalError("cannot remove the checkpoints of job " + job_id + " at " +
                              checkpoints.string() + ": " + ec.message() +
                              "; fix the cause and run cleanup again",
                          {{"job_id", job_id}, {"path", checkpoints.string()}});
    }
    for (std::string_view area : {internal::kLogsDir, internal::kRunsDir}) {
      const fs::path dir = root_ / area / job_id;
      fs::remove_all(dir, ec);
      if (ec && ec != std::errc::no_such_file_or_directory) {
        throw InternalError("cannot remove " + dir.string() + " of job " + job_id + ": " +
                                ec.message() + "; fix the cause and run cleanup again",
                            {{"job_id", job_id}, {"path", dir.string()}});
      }
    }
    // The worker's publish lock would otherwise outlive every job ever run. Unlinking it is
    // safe here: no attempt of a marked, terminal job can publish any more (a stale worker that
    // still takes the lock finds that it lost its attempt), and the job_id can only be submitted
    // anew once its row is deleted, after this.
    RemoveEntry(root_ / internal::kLocksDir / (job_id + ".lock"), job_id, dirty_);
  }

  // One flush per directory and batch makes every removal above durable before any row goes,
  // so a crash never brings back a bundle whose row was deleted.
  void Commit() override {
    for (const fs::path& dir : dirty_) internal::SyncDirectory(dir);
    dirty_.clear();
  }

 private:
  fs::path root_;
  std::set<fs::path> dirty_;
};

class LocalArtifactStore : public ArtifactStore {
 public:
  explicit LocalArtifactStore(fs::path root) : root_(std::move(root)), root_text_(root_.string()) {}

  const std::string& root() const override { return root_text_; }

  StagedBundle Stage(const BacktestResult& result, const WriteOptions& options) override {
    return {internal::StageBundle(result, root_ / internal::kStagingDir, options).string()};
  }

  // A staged bundle is invisible to readers, so it goes directly (no trip through the trash,
  // which needs a new directory: impossible on a full disk, the usual reason to discard).
  void Discard(const StagedBundle& staged) override {
    std::error_code ec;
    fs::remove_all(staged.location, ec);
    if (ec) ThrowIoError("cannot remove", staged.location, ec.value());
  }

  std::unique_ptr<JobLock> LockJob(std::string_view job_id) override {
    return std::make_unique<JobFileLock>(root_, JobDirName(job_id));
  }

  std::string Publish(const StagedBundle& staged, std::string_view job_id) override {
    const fs::path final_dir = root_ / JobDirName(job_id);
    // A bundle left by an earlier, stale attempt of this job (the caller holds the lock and owns
    // the attempt, so it is not a completed job's bundle) is moved away. Anything else in that
    // place was not created by btstore for this job, and btstore never deletes that.
    std::error_code ec;
    if (fs::exists(fs::symlink_status(final_dir, ec))) {
      if (!IsOwnBundle(final_dir, job_id)) {
        throw InvalidTransition(
            final_dir.string() + " is in the place of job " + std::string(job_id) +
                "'s bundle and was not written by btstore for this job; btstore does not "
                "remove it: move it away, then resume the job",
            {{"job_id", std::string(job_id)}, {"path", final_dir.string()}});
      }
      internal::RemoveBundleDir(final_dir);
    }
    internal::PublishBundle(staged.location, final_dir);
    return final_dir.string();
  }

  void Unpublish(std::string_view job_id) override {
    internal::RemoveBundleDir(root_ / JobDirName(job_id));
  }

  std::string SaveCheckpoint(std::string_view job_id, int attempt,
                             std::string_view bytes) override {
    fs::path dir = root_ / internal::kCheckpointsDir / JobDirName(job_id);
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) ThrowIoError("cannot create", dir, ec.value());
    fs::path path = dir / ("attempt-" + std::to_string(attempt) + ".ckpt");
    WriteFileAtomically(path, bytes);
    return path.string();
  }

  std::optional<std::string> LoadCheckpoint(const std::string& location) override {
    const fs::path path(location);
    std::ifstream in(path, std::ios::binary);
    // A checkpoint removed meanwhile (retention, an operator) only means starting over.
    if (!in) return std::nullopt;
    std::ostringstream bytes;
    bytes << in.rdbuf();
    if (in.bad()) ThrowIoError("cannot read checkpoint", path, EIO);
    return bytes.str();
  }

  void RemoveCheckpoints(std::string_view job_id) override {
    if (!IsJobIdName(job_id)) return;
    std::error_code ec;
    fs::remove_all(root_ / internal::kCheckpointsDir / std::string(job_id), ec);
  }

  std::string MakeAttemptDir(std::string_view job_id, int attempt) override {
    const fs::path job_dir = root_ / internal::kRunsDir / JobDirName(job_id);
    // Earlier attempts ended (or lost their lease, and fencing keeps them from publishing).
    std::error_code ec;
    fs::remove_all(job_dir, ec);
    if (ec) ThrowIoError("cannot remove", job_dir, ec.value());
    const fs::path dir = job_dir / AttemptName(attempt);
    fs::create_directories(dir, ec);
    if (ec) ThrowIoError("cannot create", dir, ec.value());
    return dir.string();
  }

  void RemoveAttemptDir(std::string_view job_id, int attempt) override {
    if (!IsJobIdName(job_id)) return;
    const fs::path job_dir = root_ / internal::kRunsDir / std::string(job_id);
    std::error_code ec;
    fs::remove_all(job_dir / AttemptName(attempt), ec);
    fs::remove(job_dir, ec);  // only when empty: another attempt may have started meanwhile
  }

  std::string LogLocation(std::string_view job_id, int attempt, LogStream stream) override {
    const fs::path dir = root_ / internal::kLogsDir / JobDirName(job_id);
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) ThrowIoError("cannot create", dir, ec.value());
    return LogPath(dir, attempt, stream).string();
  }

  std::vector<int> LogAttempts(std::string_view job_id) override {
    std::set<int> attempts;
    const fs::path dir = root_ / internal::kLogsDir / JobDirName(job_id);
    std::error_code ec;
    fs::directory_iterator it(dir, ec);
    if (ec == std::errc::no_such_file_or_directory) return {};
    if (ec) ThrowIoError("cannot list", dir, ec.value());
    for (; it != fs::directory_iterator(); it.increment(ec)) {
      if (ec) ThrowIoError("cannot list", dir, ec.value());
      // "attempt-N.stdout" / "attempt-N.stderr"
      const std::string name = it->path().stem().string();
      constexpr std::string_view kPrefix = "attempt-";
      if (!name.starts_with(kPrefix)) continue;
      int attempt = 0;
      const char* first = name.data() + kPrefix.size();
      const char* last = name.data() + name.size();
      auto [ptr, err] = std::from_chars(first, last, attempt);
      if (err == std::errc() && ptr == last && attempt > 0) attempts.insert(attempt);
    }
    return {attempts.begin(), attempts.end()};
  }

  std::string ReadLog(std::string_view job_id, int attempt, LogStream stream, int64_t offset,
                      int64_t max_bytes) override {
    const fs::path path = LogPath(root_ / internal::kLogsDir / JobDirName(job_id), attempt, stream);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) return {};
      ThrowIoError("cannot open", path, errno);
    }
    std::string bytes(static_cast<size_t>(std::max<int64_t>(max_bytes, 0)), '\0');
    size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = ::pread(fd, bytes.data() + done, bytes.size() - done,
                          static_cast<off_t>(offset) + static_cast<off_t>(done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        int err = errno;
        ::close(fd);
        ThrowIoError("cannot read", path, err);
      }
      if (n == 0) break;
      done += static_cast<size_t>(n);
    }
    ::close(fd);
    bytes.resize(done);
    return bytes;
  }

  BundleLocation Resolve(const std::optional<std::string>& result_path,
                         bool require_bundle) const override {
    return ResolveStoredPath(root_, result_path, require_bundle);
  }

  BacktestResult Read(const BundleLocation& where, const ReadOptions& options,
                      ReadStats* stats) override {
    return ReadBundle(where.location, options, stats);
  }

  std::unique_ptr<TableStream> OpenTable(const BundleLocation& where, const std::string& name,
                                         const ReadOptions& options) override {
    return btstore::OpenTable(where.location, name, options);
  }

  std::unique_ptr<IcReader> NewIcReader() override { return internal::NewLocalIcReader(root_); }

  BundleInfo Inspect(const BundleLocation& where) override { return InspectBundle(where.location); }

  std::string ReadSummaryText(const BundleLocation& where) override {
    return btstore::ReadSummaryText(fs::path(where.location));
  }

  std::unique_ptr<RemovalBatch> BeginRemoval() override {
    return std::make_unique<LocalRemovalBatch>(root_);
  }

  std::vector<StoredBundle> ListBundles(std::chrono::seconds min_age) override {
    std::vector<StoredBundle> bundles;
    std::error_code ec;
    if (!fs::is_directory(root_, ec)) return bundles;
    const fs::file_time_type now = fs::file_time_type::clock::now();
    fs::directory_iterator it(root_, ec);
    if (ec) ThrowIoError("cannot list", root_, ec.value());
    for (; it != fs::directory_iterator(); it.increment(ec)) {
      if (ec) ThrowIoError("cannot list", root_, ec.value());
      const std::string name = it->path().filename().string();
      // .staging, .trash, .checkpoints, .locks and any other dot-directory are the store's own.
      if (name.starts_with('.')) continue;
      std::error_code entry_ec;
      if (!it->is_directory(entry_ec)) continue;
      const fs::file_time_type mtime = it->last_write_time(entry_ec);
      if (entry_ec || now - mtime < min_age) continue;
      bundles.push_back({name, it->path().string()});
    }
    return bundles;
  }

  int RemoveDebris(std::chrono::seconds min_age) override {
    std::error_code ec;
    if (!fs::exists(root_, ec)) return 0;
    return internal::RemoveStagingDebris(root_, min_age);
  }

 private:
  // The directory name of a job: its id, checked so that no id can reach outside the root.
  static std::string JobDirName(std::string_view job_id) {
    ValidateJobId(job_id);
    return std::string(job_id);
  }

  static std::string AttemptName(int attempt) { return "attempt-" + std::to_string(attempt); }

  static fs::path LogPath(const fs::path& dir, int attempt, LogStream stream) {
    return dir / (AttemptName(attempt) + "." + std::string(ToString(stream)));
  }

  fs::path root_;
  std::string root_text_;
};

}  // namespace

std::unique_ptr<ArtifactStore> ArtifactStore::Open(const std::string& root) {
  if (root.empty()) {
    throw InvalidArgument("the artifact root must not be empty", {{"field", "artifact_root"}});
  }
  if (root.starts_with(internal::kS3Scheme)) return internal::OpenS3Store(root);
  return std::make_unique<LocalArtifactStore>(PrepareArtifactRoot(root));
}

}  // namespace btstore

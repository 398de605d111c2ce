// The artifact store on S3-compatible object storage, over Arrow's S3 filesystem. Layout under
// the root s3://bucket/prefix:
//
//   <prefix>/<job_id>/a-<UTC time>-<random>/   one attempt's bundle (summary.json, *.parquet)
//   <prefix>/.checkpoints/<job_id>/attempt-N.ckpt
//   <prefix>/.logs/<job_id>/attempt-N.stdout, attempt-N.stderr   uploaded when the attempt ends
//
// There is no rename on S3, so nothing is ever moved: each attempt uploads its bundle under a
// prefix of its own that no reader is told about, and the catalog's completion transaction,
// which records that prefix as result_path, is the commit point. A losing attempt deletes its
// own prefix; a dead one's is found by `verify` and removed by `cleanup` once older than their
// grace period. Bundles are streamed to the store as the writer encodes and checksums them
// (nothing is staged locally); a command engine's working directory and the logs of a running
// attempt stay on local disk (under the temporary directory) until the attempt ends. Reads go
// through Arrow's filesystem (whole files in one request each, range requests for partial reads).

#include <arrow/buffer.h>
#include <arrow/filesystem/s3fs.h>
#include <arrow/io/interfaces.h>
#include <fcntl.h>
#include <parquet/properties.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <fstream>
#include <functional>
#include <future>
#include <iomanip>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>

#include "artifact/json_internal.h"
#include "artifact/layout_internal.h"
#include "artifact/s3_store_internal.h"
#include "artifact/source_internal.h"
#include "btstore/errors.h"

namespace btstore::internal {

std::mutex s3_state_mutex;
bool s3_finalized = false;  // guarded by s3_state_mutex: once released, S3 cannot start again

namespace {

namespace fs = std::filesystem;
namespace afs = arrow::fs;

constexpr std::string_view kSummaryFile = "summary.json";
constexpr std::string_view kAttemptPrefix = "a-";
// A whole-file read fetches a file of twice this or more in parts of about this size, in
// parallel. As large as Arrow's own coalesced ranges: against moto, eight 8 MiB ranges of a
// 62 MiB object took 2.5 times as long as one GET of it (moto reads the whole object for each
// range), and three parts 1.2 to 1.6 times; a bundle's files are fetched in parallel anyway.
constexpr int64_t kWholeReadPartBytes = int64_t{32} << 20;
// The tail of a Parquet file fetched ahead of a partial read: what Parquet's reader reads first
// to find the footer (a larger footer costs it one more request).
constexpr int64_t kFooterBytes = parquet::kDefaultFooterReadSize;
// How many bundle listings Resolve keeps for the reads that follow it, and for how long: a read
// follows its Resolve at once; an older listing may name objects removed since.
constexpr size_t kKeptListings = 8;
constexpr std::chrono::seconds kKeptListingAge{5};
// Uploads are streamed from the local file in parts of this size.
constexpr int64_t kUploadChunkBytes = int64_t{8} << 20;
// Retries of a request that failed in a way the SDK deems transient (throttling such as 503
// SlowDown, server errors, connection resets and refusals), with exponential backoff from
// kFirstRetryDelay, jittered, capped at kMaxRetryDelay: about 3 s in all before a store that
// stays unreachable is reported.
constexpr int64_t kMaxRetries = 6;
constexpr int64_t kFirstRetryDelayMs = 50;
constexpr int64_t kMaxRetryDelayMs = 1000;

// The retry policy above, through Arrow's retry hook (the AWS SDK's standard strategy waits up
// to 20 s between tries, which makes an unreachable store take minutes to report).
class BackoffRetryStrategy : public afs::S3RetryStrategy {
 public:
  bool ShouldRetry(const AWSErrorDetail& error, int64_t attempted_retries) override {
    return error.should_retry && attempted_retries < kMaxRetries;
  }
  int64_t CalculateDelayBeforeNextRetry(const AWSErrorDetail&, int64_t attempted_retries) override {
    thread_local std::mt19937_64 random{std::random_device{}()};
    const int64_t ceiling =
        std::min(kMaxRetryDelayMs, kFirstRetryDelayMs << std::min<int64_t>(attempted_retries, 10));
    // Full jitter keeps many workers throttled at once from retrying in step.
    return ceiling / 2 + static_cast<int64_t>(random() % static_cast<uint64_t>(ceiling / 2 + 1));
  }
};

// The AWS SDK's variable for when it computes request checksums ("when_supported", its default,
// or "when_required").
constexpr const char* kChecksumVariable = "AWS_REQUEST_CHECKSUM_CALCULATION";

// Whether the user chose when the AWS SDK computes request checksums: its environment variable,
// or the key in the AWS config file (any profile: a choice there is the user's to keep).
bool ChecksumChoiceMade() {
  if (std::getenv(kChecksumVariable) != nullptr) return true;
  fs::path config;
  if (const char* file = std::getenv("AWS_CONFIG_FILE")) {
    config = file;
  } else if (const char* home = std::getenv("HOME")) {
    config = fs::path(home) / ".aws" / "config";
  }
  std::ifstream in(config);
  for (std::string line; std::getline(in, line);) {
    if (line.find("request_checksum_calculation") != std::string::npos) return true;
  }
  return false;
}

// Initialise the AWS SDK once per process (FinalizeObjectStores ends it; it cannot start again).
void InitializeS3Once() {
  std::lock_guard lock(s3_state_mutex);
  if (s3_finalized) {
    throw InternalError("the S3 client library was already released in this process");
  }
  // By default the SDK sends every upload as an aws-chunked body with a CRC64 trailer, which an
  // S3-compatible server must decode and check: against moto that doubled the server's work per
  // uploaded byte and made a large result's upload 1.4x slower. The SDK computes checksums only
  // where S3 requires them unless the user chose otherwise: every object's xxh3-128 is in the
  // bundle's manifest, checked on every whole read and by `verify`, and the SDK still signs
  // each request. Read by the SDK when it makes a client, which happens after this.
  if (!ChecksumChoiceMade()) ::setenv(kChecksumVariable, "when_required", /*overwrite=*/0);
  arrow::Status status = afs::EnsureS3Initialized();
  if (!status.ok()) {
    throw InternalError("cannot initialise the S3 client: " + status.ToString());
  }
}

// Arrow's messages never carry the credentials, but a message built from a request the SDK
// echoes might (a signature mismatch can quote the credential scope, which starts with the key
// id): whatever they are, they never leave this process in an error.
std::string Scrubbed(std::string text) {
  for (const char* variable : {"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID"}) {
    const char* secret = std::getenv(variable);
    if (secret == nullptr || std::string_view(secret).size() < 4) continue;
    for (size_t at = text.find(secret); at != std::string::npos; at = text.find(secret, at)) {
      text.replace(at, std::strlen(secret), "***");
    }
  }
  return text;
}

// What a failed request says about the store, from Arrow's message: the AWS error's name when
// the reply had a body, else only "(HTTP status N)" (a HEAD reply never has one).
enum class StoreFault {
  kUnreachable,  // network, timeouts, throttling or server errors that outlasted the retries
  kCredentials,  // the store refused the credentials (unknown key, bad signature, denied)
  kOther,
};

// The N of "HTTP status N" in `message`, or 0.
int HttpStatusIn(std::string_view message) {
  constexpr std::string_view kMarker = "HTTP status ";
  const size_t at = message.find(kMarker);
  if (at == std::string_view::npos) return 0;
  int code = 0;
  const char* first = message.data() + at + kMarker.size();
  std::from_chars(first, message.data() + message.size(), code);
  return code;
}

StoreFault Classify(const arrow::Status& status) {
  const std::string& m = status.message();
  auto has_any = [&](std::initializer_list<std::string_view> markers) {
    return std::any_of(markers.begin(), markers.end(),
                       [&](std::string_view marker) { return m.find(marker) != m.npos; });
  };
  if (has_any({"INVALID_ACCESS_KEY_ID", "InvalidAccessKeyId", "SIGNATURE_DOES_NOT_MATCH",
               "SignatureDoesNotMatch", "ACCESS_DENIED", "AccessDenied", "UNRECOGNIZED_CLIENT",
               "InvalidClientTokenId"})) {
    return StoreFault::kCredentials;
  }
  if (has_any({"NETWORK_CONNECTION", "Couldn't connect", "curlCode", "Connection refused",
               "Could not resolve", "Timeout", "timed out", "SLOW_DOWN", "SlowDown",
               "SERVICE_UNAVAILABLE", "Service Unavailable", "NO_SUCH_BUCKET", "NoSuchBucket"})) {
    return StoreFault::kUnreachable;
  }
  const int http_status = HttpStatusIn(m);
  if (http_status == 401 || http_status == 403) return StoreFault::kCredentials;
  if (http_status >= 500 && http_status < 600) return StoreFault::kUnreachable;
  return StoreFault::kOther;
}

// Whether `status` says that the store could not be reached or refused to serve (network,
// timeouts, throttling that outlasted the retries, credentials it does not accept): then the
// store is unavailable, as a database that cannot be reached is.
bool IsUnavailable(const arrow::Status& status) { return Classify(status) != StoreFault::kOther; }

// A random hex string of 16 digits, for attempt prefixes nothing else can take.
std::string RandomHex() {
  thread_local std::mt19937_64 random{std::random_device{}()};
  static constexpr char kDigits[] = "0123456789abcdef";
  uint64_t value = random();
  std::string out(16, '0');
  for (char& c : out) {
    c = kDigits[value & 0xf];
    value >>= 4;
  }
  return out;
}

// "a-20261201T034501Z-<16 hex>": the time lets a sweep judge an attempt's age without asking the
// store (S3 lists no times for prefixes).
std::string NewAttemptName(std::chrono::system_clock::time_point now) {
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
  return std::string(kAttemptPrefix) + stamp + "-" + RandomHex();
}

// The time an attempt name was made, or nullopt for any other name.
std::optional<std::chrono::system_clock::time_point> AttemptTime(std::string_view name) {
  if (!name.starts_with(kAttemptPrefix) || name.size() < kAttemptPrefix.size() + 16) {
    return std::nullopt;
  }
  std::tm tm{};
  const std::string stamp(name.substr(kAttemptPrefix.size(), 16));
  std::istringstream in(stamp);
  in >> std::get_time(&tm, "%Y%m%dT%H%M%SZ");
  if (in.fail()) return std::nullopt;
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

// The components of a key, with "." dropped and ".." folded; nullopt when ".." climbs above
// the bucket.
std::optional<std::vector<std::string>> KeyComponents(std::string_view key) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= key.size()) {
    size_t end = key.find('/', start);
    if (end == std::string_view::npos) end = key.size();
    const std::string_view part = key.substr(start, end - start);
    if (part == "..") {
      if (parts.empty()) return std::nullopt;
      parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.emplace_back(part);
    }
    start = end + 1;
  }
  return parts;
}

std::string Join(const std::vector<std::string>& parts, size_t count) {
  std::string out;
  for (size_t i = 0; i < count && i < parts.size(); ++i) {
    if (i > 0) out += '/';
    out += parts[i];
  }
  return out;
}

bool IsJobIdName(std::string_view name) {
  try {
    ValidateJobId(name);
  } catch (const InvalidArgument&) {
    return false;
  }
  return true;
}

std::string ValidJobId(std::string_view job_id) {
  ValidateJobId(job_id);
  return std::string(job_id);
}

std::string AttemptFileName(int attempt) { return "attempt-" + std::to_string(attempt); }

// Held while one job's publication runs in this process; see LockJob.
class ProcessJobLock : public JobLock {
 public:
  ProcessJobLock(std::mutex& mutex, std::condition_variable& released, std::set<std::string>& held,
                 std::string job_id)
      : mutex_(mutex), released_(released), held_(held), job_id_(std::move(job_id)) {
    std::unique_lock lock(mutex_);
    released_.wait(lock, [&] { return !held_.contains(job_id_); });
    held_.insert(job_id_);
  }
  ~ProcessJobLock() override {
    {
      std::lock_guard lock(mutex_);
      held_.erase(job_id_);
    }
    released_.notify_all();
  }
  ProcessJobLock(const ProcessJobLock&) = delete;
  ProcessJobLock& operator=(const ProcessJobLock&) = delete;

 private:
  std::mutex& mutex_;
  std::condition_variable& released_;
  std::set<std::string>& held_;
  std::string job_id_;
};

class S3ArtifactStore;

// Make the S3 client for the store at `root` (named in errors), with `endpoint` ("" for AWS).
std::shared_ptr<afs::S3FileSystem> MakeS3FileSystem(const std::string& endpoint,
                                                    const std::string& root);

class S3RemovalBatch : public RemovalBatch {
 public:
  explicit S3RemovalBatch(S3ArtifactStore& store) : store_(store) {}
  void RemoveBundle(const BundleLocation& where, std::string_view job_id) override;
  void RemoveJob(std::string_view job_id) override;
  // Each removal above returned only once the store acknowledged it: nothing is left to flush.
  void Commit() override {}

 private:
  S3ArtifactStore& store_;
};

class S3ArtifactStore : public ArtifactStore {
 public:
  S3ArtifactStore(std::string base, std::string endpoint)
      : base_(std::move(base)),
        root_text_(std::string(kS3Scheme) + base_),
        endpoint_(std::move(endpoint)),
        local_(fs::temp_directory_path() / "btstore-s3") {}

  const std::string& root() const override { return root_text_; }
  void Prepare() override { Fs(); }

  // The S3 client, made on first use: starting the AWS SDK (its TLS state, which parses the
  // system's CA bundle three times, and the credential chain) costs 35-45 ms, which commands
  // that only talk to the catalog (list, show, submit, cancel...) need not pay. Throws
  // InternalError when the client cannot be set up (tried again by the next call).
  const std::shared_ptr<afs::S3FileSystem>& Fs() const {
    std::call_once(fs_made_, [this] { fs_ = MakeS3FileSystem(endpoint_, root_text_); });
    return fs_;
  }

  // --- Publishing ------------------------------------------------------------------------------

  // The bundle's files are streamed to the store as they are encoded: Arrow's output stream
  // uploads each part of a file while the writer encodes the next, and nothing is written
  // locally. A file's upload is completed as soon as the file is written, beside the others'.
  StagedBundle Stage(const BacktestResult& result, const WriteOptions& options) override {
    const std::string job_id = ValidJobId(result.job_id);
    const std::string key =
        base_ + "/" + job_id + "/" + NewAttemptName(std::chrono::system_clock::now());
    internal::StageHooks hooks;
    hooks.open = [this, &key](const std::string& file) -> std::shared_ptr<arrow::io::OutputStream> {
      auto out = Fs()->OpenOutputStream(key + "/" + file);
      if (!out.ok()) Throw(out.status(), "uploading", key + "/" + file);
      return *std::move(out);
    };
    hooks.fail = [this, &key](const arrow::Status& status, const std::string& file) {
      Throw(status, "uploading", key + "/" + file);
    };
    try {
      StageBundle(result, {}, options, hooks);
    } catch (...) {
      // What was uploaded is unreachable (no row names it); removing it now saves the sweep.
      (void)Fs()->DeleteDir(key);
      throw;
    }
    return {std::string(kS3Scheme) + key};
  }

  void Discard(const StagedBundle& staged) override {
    DeletePrefix(KeyOf(staged.location), "removing the staged bundle");
  }

  // Each attempt writes under a prefix of its own and nothing is moved, so there is no shared
  // place for workers on different hosts to race for: the catalog's completion (a CAS fenced by
  // the attempt number) decides which attempt's prefix becomes the result. This lock only
  // serializes the attempts of one process, as the local store's flock does.
  std::unique_ptr<JobLock> LockJob(std::string_view job_id) override {
    return std::make_unique<ProcessJobLock>(lock_mutex_, lock_released_, locked_jobs_,
                                            ValidJobId(job_id));
  }

  std::string Publish(const StagedBundle& staged, std::string_view job_id) override {
    const std::string id = ValidJobId(job_id);
    const std::string job_prefix = root_text_ + "/" + id + "/";
    if (!staged.location.starts_with(job_prefix)) {
      throw InternalError("the staged bundle " + staged.location + " is not one of job " + id,
                          {{"job_id", id}, {"path", staged.location}});
    }
    std::lock_guard lock(published_mutex_);
    published_[id] = staged.location;
    return staged.location;
  }

  void Unpublish(std::string_view job_id) override {
    std::string location;
    {
      std::lock_guard lock(published_mutex_);
      auto it = published_.find(std::string(job_id));
      if (it == published_.end()) return;
      location = it->second;
      published_.erase(it);
    }
    DeletePrefix(KeyOf(location), "removing the unpublished bundle");
  }

  // --- Checkpoints -----------------------------------------------------------------------------

  // A PUT replaces an object whole: a reader sees the previous checkpoint or this one.
  std::string SaveCheckpoint(std::string_view job_id, int attempt,
                             std::string_view bytes) override {
    const std::string key =
        CheckpointsKey(ValidJobId(job_id)) + "/" + AttemptFileName(attempt) + ".ckpt";
    PutObject(key, bytes, "saving the checkpoint");
    return std::string(kS3Scheme) + key;
  }

  std::optional<std::string> LoadCheckpoint(const std::string& location) override {
    const std::string key = KeyOf(location);
    return GetObject(key, "loading the checkpoint");
  }

  void RemoveCheckpoints(std::string_view job_id) override {
    if (!IsJobIdName(job_id)) return;
    (void)Fs()->DeleteDir(CheckpointsKey(std::string(job_id)));
  }

  // --- Attempt directories and logs -------------------------------------------------------------

  std::string MakeAttemptDir(std::string_view job_id, int attempt) override {
    const fs::path job_dir = local_ / kRunsDir / ValidJobId(job_id);
    std::error_code ec;
    fs::remove_all(job_dir, ec);
    if (ec) ThrowLocal("cannot remove", job_dir, ec);
    const fs::path dir = job_dir / AttemptFileName(attempt);
    fs::create_directories(dir, ec);
    if (ec) ThrowLocal("cannot create", dir, ec);
    return dir.string();
  }

  // The attempt ended: its logs go to the store (readable from any host from now on), then the
  // local copies and the working directory go. Best effort, as on the local store.
  void RemoveAttemptDir(std::string_view job_id, int attempt) override {
    if (!IsJobIdName(job_id)) return;
    const std::string id(job_id);
    for (LogStream stream : {LogStream::kStdout, LogStream::kStderr}) {
      const fs::path local = LocalLogPath(id, attempt, stream);
      std::error_code ec;
      if (!fs::exists(local, ec)) continue;
      try {
        UploadFile(local, LogKey(id, attempt, stream));
        fs::remove(local, ec);
      } catch (const Error&) {
        // Kept locally: ReadLog serves it from here on this host.
      }
    }
    const fs::path job_dir = local_ / kRunsDir / id;
    std::error_code ec;
    fs::remove_all(job_dir / AttemptFileName(attempt), ec);
    fs::remove(job_dir, ec);
  }

  std::string LogLocation(std::string_view job_id, int attempt, LogStream stream) override {
    const fs::path path = LocalLogPath(ValidJobId(job_id), attempt, stream);
    std::error_code ec;
    fs::create_directories(path.parent_path(), ec);
    if (ec) ThrowLocal("cannot create", path.parent_path(), ec);
    return path.string();
  }

  std::vector<int> LogAttempts(std::string_view job_id) override {
    const std::string id = ValidJobId(job_id);
    std::set<int> attempts;
    auto add = [&](std::string name) {
      const size_t dot = name.rfind('.');
      if (dot == std::string::npos) return;
      name.resize(dot);
      constexpr std::string_view kPrefix = "attempt-";
      if (!name.starts_with(kPrefix)) return;
      int attempt = 0;
      const char* first = name.data() + kPrefix.size();
      const char* last = name.data() + name.size();
      auto [ptr, err] = std::from_chars(first, last, attempt);
      if (err == std::errc() && ptr == last && attempt > 0) attempts.insert(attempt);
    };
    for (const afs::FileInfo& info : List(base_ + "/" + std::string(kLogsDir) + "/" + id)) {
      add(info.base_name());
    }
    std::error_code ec;
    for (fs::directory_iterator it(local_ / kLogsDir / id, ec), end; !ec && it != end;
         it.increment(ec)) {
      add(it->path().filename().string());
    }
    return {attempts.begin(), attempts.end()};
  }

  std::string ReadLog(std::string_view job_id, int attempt, LogStream stream, int64_t offset,
                      int64_t max_bytes) override {
    const std::string id = ValidJobId(job_id);
    const int64_t want = std::max<int64_t>(max_bytes, 0);
    // A running attempt on this host logs locally; an ended one's log is in the store.
    const fs::path local = LocalLogPath(id, attempt, stream);
    std::ifstream in(local, std::ios::binary);
    if (in) {
      std::string bytes(static_cast<size_t>(want), '\0');
      in.seekg(offset);
      in.read(bytes.data(), want);
      bytes.resize(static_cast<size_t>(std::max<std::streamsize>(in.gcount(), 0)));
      return bytes;
    }
    const std::string key = LogKey(id, attempt, stream);
    auto file = Fs()->OpenInputFile(key);
    if (!file.ok()) {
      if (IsNotFound(file.status(), key)) return {};
      Throw(file.status(), "reading the log", key);
    }
    auto size = (*file)->GetSize();
    if (!size.ok()) Throw(size.status(), "reading the log", key);
    if (offset >= *size || want == 0) return {};
    auto buffer = (*file)->ReadAt(offset, std::min(want, *size - offset));
    if (!buffer.ok()) Throw(buffer.status(), "reading the log", key);
    return (*buffer)->ToString();
  }

  // --- Reading ---------------------------------------------------------------------------------

  BundleLocation Resolve(const std::optional<std::string>& result_path,
                         bool require_bundle) const override {
    if (!result_path || result_path->empty()) return {PathProblem::kNoPath, {}, {}, {}};
    std::string key;
    if (result_path->starts_with(kS3Scheme)) {
      key = result_path->substr(kS3Scheme.size());
    } else if (result_path->starts_with('/') || result_path->find("://") != std::string::npos) {
      // A local path or another store's URI cannot be under an S3 root.
      return {PathProblem::kOutsideRoot, *result_path, {}, {}};
    } else {
      key = base_ + "/" + *result_path;
    }
    const std::optional<std::vector<std::string>> parts = KeyComponents(key);
    if (!parts) return {PathProblem::kOutsideRoot, *result_path, {}, {}};
    const std::vector<std::string> root_parts = *KeyComponents(base_);
    const std::string location = std::string(kS3Scheme) + Join(*parts, parts->size());
    if (parts->size() < root_parts.size() ||
        !std::equal(root_parts.begin(), root_parts.end(), parts->begin())) {
      return {PathProblem::kOutsideRoot, location, {}, {}};
    }
    if (parts->size() == root_parts.size()) return {PathProblem::kIsRoot, location, {}, {}};
    const std::string& owner = (*parts)[root_parts.size()];
    if (owner.starts_with('.')) return {PathProblem::kInternalDir, location, owner, {}};
    if (require_bundle) {
      // One listing answers whether the bundle is there, and is what a read of it lists first:
      // it is kept for that read (bundles are never changed once written, only removed).
      const std::string bundle_key = Join(*parts, parts->size());
      afs::FileSelector selector;
      selector.base_dir = bundle_key;
      selector.allow_not_found = true;
      auto listed = Fs()->GetFileInfo(selector);
      if (!listed.ok()) {
        if (IsUnavailable(listed.status())) Throw(listed.status(), "resolving", bundle_key);
        auto self = Fs()->GetFileInfo(bundle_key);
        if (self.ok() && self->type() == afs::FileType::File) {
          return {PathProblem::kNotADirectory, location, owner, {}};
        }
        return {PathProblem::kUnresolvable, location, owner, Scrubbed(listed.status().message())};
      }
      const bool has_summary = std::any_of(listed->begin(), listed->end(), [](const auto& info) {
        return info.type() == afs::FileType::File && info.base_name() == kSummaryFile;
      });
      if (!has_summary) {
        auto self = Fs()->GetFileInfo(bundle_key);
        if (!self.ok() && IsUnavailable(self.status())) {
          Throw(self.status(), "resolving", bundle_key);
        }
        if (self.ok() && self->type() == afs::FileType::File) {
          return {PathProblem::kNotADirectory, location, owner, {}};
        }
        return {PathProblem::kMissingOnDisk, location, owner, {}};
      }
      KeepListing(bundle_key, *std::move(listed));
    }
    return {PathProblem::kNone, location, owner, {}};
  }

  // The reader reads the objects through Arrow's filesystem: a whole read fetches each file
  // with one request (files in parallel), a partial read fetches the footer and then only the
  // row groups it needs, with range requests that Parquet's pre-buffering coalesces.
  BacktestResult Read(const BundleLocation& where, const ReadOptions& options,
                      ReadStats* stats) override {
    return Guarded(where.location, [&] {
      S3BundleSource source(*this, where.location);
      return ReadBundleFrom(source, options, stats);
    });
  }

  // The stream keeps its source; a failed request while it streams is reported as the file's
  // error, since the answer has started by then.
  std::unique_ptr<TableStream> OpenTable(const BundleLocation& where, const std::string& name,
                                         const ReadOptions& options) override {
    return Guarded(where.location, [&] {
      return OpenTableFrom(std::make_unique<S3BundleSource>(*this, where.location), name, options);
    });
  }

  BundleInfo Inspect(const BundleLocation& where) override {
    return Guarded(where.location, [&] {
      S3BundleSource source(*this, where.location);
      return InspectBundleFrom(source);
    });
  }

  std::string ReadSummaryText(const BundleLocation& where) override {
    const std::string bundle_key = KeyOf(where.location);
    afs::FileInfo summary(bundle_key + "/" + std::string(kSummaryFile));
    // The listing Resolve kept has the size: then reading needs no request to learn it.
    if (std::optional<std::vector<afs::FileInfo>> listing = TakeListing(bundle_key)) {
      for (const afs::FileInfo& info : *listing) {
        if (info.base_name() == kSummaryFile) summary = info;
      }
    }
    std::optional<std::string> text = GetObject(summary, "reading summary.json");
    if (!text) {
      throw MissingReproducibilityMetadata("summary.json is missing from " + where.location,
                                           {{"path", where.location}});
    }
    return *text;
  }

  // --- Maintenance -----------------------------------------------------------------------------

  std::unique_ptr<RemovalBatch> BeginRemoval() override {
    return std::make_unique<S3RemovalBatch>(*this);
  }

  // Every attempt prefix under a job's name is a bundle (or part of one); its age is the time in
  // its name (S3 has none for prefixes). Other names under a job are listed whatever their age.
  std::vector<StoredBundle> ListBundles(std::chrono::seconds min_age) override {
    const auto now = std::chrono::system_clock::now();
    std::vector<StoredBundle> bundles;
    for (const afs::FileInfo& job : List(base_)) {
      const std::string name = job.base_name();
      if (name.starts_with('.') || job.type() != afs::FileType::Directory) continue;
      for (const afs::FileInfo& attempt : List(job.path())) {
        if (attempt.type() != afs::FileType::Directory) continue;
        const auto made = AttemptTime(attempt.base_name());
        if (made && now - *made < min_age) continue;
        bundles.push_back({name, std::string(kS3Scheme) + attempt.path()});
      }
    }
    return bundles;
  }

  // Objects of dead attempts need the catalog to be judged (see verify and cleanup), and a
  // bundle is never staged locally: there is no debris to judge without the catalog.
  int RemoveDebris(std::chrono::seconds /*min_age*/) override { return 0; }

  // --- For the removal batch -------------------------------------------------------------------

  void DeletePrefix(const std::string& key, const std::string& what) {
    arrow::Status status = Fs()->DeleteDir(key);
    if (!status.ok() && !IsNotFound(status, key)) Throw(status, what, key);
  }

  std::string KeyOf(const std::string& location) const {
    if (!location.starts_with(root_text_ + "/")) {
      throw InternalError(location + " is not under the artifact root " + root_text_,
                          {{"path", location}, {"artifact_root", root_text_}});
    }
    return location.substr(kS3Scheme.size());
  }

  const std::string& base() const { return base_; }

  // The listing Resolve kept of the bundle at `key`, taken out; nullopt when none is kept.
  std::optional<std::vector<afs::FileInfo>> TakeListing(const std::string& key) const {
    std::lock_guard lock(listings_mutex_);
    const auto now = std::chrono::steady_clock::now();
    std::erase_if(listings_,
                  [&](const KeptListing& kept) { return now - kept.at > kKeptListingAge; });
    for (auto it = listings_.begin(); it != listings_.end(); ++it) {
      if (it->key == key) {
        std::vector<afs::FileInfo> listing = std::move(it->files);
        listings_.erase(it);
        return listing;
      }
    }
    return std::nullopt;
  }

 private:
  // A bundle's objects as the reader's source, listed once (one request, or none when Resolve
  // just listed them; the listing gives the sizes, so opening a file needs no request of its
  // own). Prefetch starts the reads' requests at once, each on a thread of its own: a read then
  // waits for about its slowest request instead of for the sum of them.
  class S3BundleSource : public BundleSource {
   public:
    S3BundleSource(S3ArtifactStore& store, std::string location)
        : store_(store), location_(std::move(location)), key_(store.KeyOf(location_)) {
      std::optional<std::vector<afs::FileInfo>> listed = store_.TakeListing(key_);
      for (afs::FileInfo& info : listed ? *listed : store_.List(key_)) {
        if (info.type() == afs::FileType::File) files_.emplace(info.base_name(), std::move(info));
      }
    }

    const std::string& where() const override { return location_; }
    bool Exists() override { return !files_.empty(); }

    std::vector<std::string> List() override {
      std::vector<std::string> names;
      for (const auto& [name, info] : files_) names.push_back(name);
      return names;
    }

    void Prefetch(const std::vector<std::string>& names, bool whole) override {
      for (const std::string& name : names) {
        auto it = files_.find(name);
        if (it == files_.end() || wholes_.contains(name) || tails_.contains(name)) continue;
        std::shared_ptr<arrow::io::RandomAccessFile> file = OpenFile(it->second);
        const int64_t size = it->second.size();
        if (whole) {
          wholes_.emplace(name, std::async(std::launch::async, [file, size] {
                                  return ReadWholeAt(*file, size, kWholeReadPartBytes);
                                }).share());
        } else {
          const int64_t tail = std::min(size, kFooterBytes);
          tails_.emplace(name, std::async(std::launch::async, [file, size, tail] {
                                 return file->ReadAt(size - tail, tail);
                               }).share());
        }
      }
    }

    std::optional<SourceFile> Open(const std::string& name) override {
      auto it = files_.find(name);
      if (it == files_.end()) return std::nullopt;
      std::shared_ptr<arrow::io::RandomAccessFile> file = OpenFile(it->second);
      if (auto tail = tails_.find(name); tail != tails_.end()) {
        file = std::make_shared<TailFirstFile>(std::move(file), it->second.size(), tail->second);
      }
      return SourceFile{std::move(file), it->second.size()};
    }

    std::optional<WholeFile> ReadWhole(const std::string& name) override {
      auto it = files_.find(name);
      if (it == files_.end()) return std::nullopt;
      arrow::Result<WholeFile> whole;
      if (auto fetched = wholes_.find(name); fetched != wholes_.end()) {
        whole = fetched->second.get();
      } else {
        whole = ReadWholeAt(*OpenFile(it->second), it->second.size(), kWholeReadPartBytes);
      }
      if (!whole.ok()) store_.Throw(whole.status(), "reading", it->second.path());
      return *std::move(whole);
    }

    std::optional<std::string> ReadJson(
        const std::string& name,
        const std::function<void(const std::string&)>& unreadable) override {
      auto it = files_.find(name);
      if (it == files_.end()) return std::nullopt;
      const auto size = static_cast<std::uintmax_t>(std::max<int64_t>(it->second.size(), 0));
      if (size > kMaxJsonFileBytes) {
        throw InvalidResult(
            name + " is " + std::to_string(size) + " bytes, more than the " +
                std::to_string(kMaxJsonFileBytes) + " bytes it may have",
            {{"file", name}, {"path", PathOf(name)}, {"bytes", std::to_string(size)}});
      }
      std::optional<WholeFile> whole;
      try {
        whole = ReadWholeOrGone(name, it->second);
      } catch (const InternalError& e) {
        unreadable(name + " is unreadable: " + e.what());
        throw InvalidResult(name + " is unreadable", {{"file", name}, {"path", PathOf(name)}});
      }
      if (!whole) return std::nullopt;
      return CheckJsonText(name, PathOf(name), whole->data->ToString());
    }

   private:
    // A file whose tail was fetched ahead: reads inside the tail are served from it (Parquet
    // reads its footer there first), the others go to the store.
    class TailFirstFile : public arrow::io::RandomAccessFile {
     public:
      using Tail = std::shared_future<arrow::Result<std::shared_ptr<arrow::Buffer>>>;
      TailFirstFile(std::shared_ptr<arrow::io::RandomAccessFile> inner, int64_t size, Tail tail)
          : inner_(std::move(inner)), size_(size), tail_(std::move(tail)) {}

      arrow::Status Close() override { return inner_->Close(); }
      bool closed() const override { return inner_->closed(); }
      arrow::Result<int64_t> Tell() const override { return inner_->Tell(); }
      arrow::Status Seek(int64_t position) override { return inner_->Seek(position); }
      arrow::Result<int64_t> GetSize() override { return size_; }
      arrow::Result<int64_t> Read(int64_t nbytes, void* out) override {
        return inner_->Read(nbytes, out);
      }
      arrow::Result<std::shared_ptr<arrow::Buffer>> Read(int64_t nbytes) override {
        return inner_->Read(nbytes);
      }
      arrow::Result<std::shared_ptr<arrow::Buffer>> ReadAt(int64_t position, int64_t nbytes,
                                                           bool allow_short_read) override {
        const arrow::Result<std::shared_ptr<arrow::Buffer>>& tail = tail_.get();
        if (tail.ok() && nbytes >= 0) {
          const int64_t tail_start = size_ - (*tail)->size();
          const int64_t end =
              allow_short_read ? std::min(position + nbytes, size_) : position + nbytes;
          if (position >= tail_start && position <= end && end <= size_) {
            return arrow::SliceBuffer(*tail, position - tail_start, end - position);
          }
        }
        // A failed fetch is tried again here: the request that failed ahead may succeed now.
        return inner_->ReadAt(position, nbytes, allow_short_read);
      }
      arrow::Result<std::shared_ptr<arrow::Buffer>> ReadAt(int64_t position,
                                                           int64_t nbytes) override {
        return ReadAt(position, nbytes, true);
      }
      arrow::Result<int64_t> ReadAt(int64_t position, int64_t nbytes, bool allow_short_read,
                                    void* out) override {
        ARROW_ASSIGN_OR_RAISE(auto buffer, ReadAt(position, nbytes, allow_short_read));
        std::memcpy(out, buffer->data(), static_cast<size_t>(buffer->size()));
        return buffer->size();
      }
      arrow::Result<int64_t> ReadAt(int64_t position, int64_t nbytes, void* out) override {
        return ReadAt(position, nbytes, true, out);
      }

     private:
      std::shared_ptr<arrow::io::RandomAccessFile> inner_;
      int64_t size_;
      Tail tail_;
    };

    // Open for reading without a request (the listing gave the size).
    std::shared_ptr<arrow::io::RandomAccessFile> OpenFile(const afs::FileInfo& info) {
      auto file = store_.Fs()->OpenInputFile(info);
      if (!file.ok()) store_.Throw(file.status(), "opening", info.path());
      return *std::move(file);
    }

    // The whole of a listed file; nullopt when it went since it was listed.
    std::optional<WholeFile> ReadWholeOrGone(const std::string& name, const afs::FileInfo& info) {
      arrow::Result<WholeFile> whole;
      if (auto fetched = wholes_.find(name); fetched != wholes_.end()) {
        whole = fetched->second.get();
      } else {
        whole = ReadWholeAt(*OpenFile(info), info.size());
      }
      if (whole.ok()) return *std::move(whole);
      if (store_.IsNotFound(whole.status(), info.path())) return std::nullopt;
      store_.Throw(whole.status(), "reading", info.path());
    }

    S3ArtifactStore& store_;
    std::string location_;
    std::string key_;
    std::map<std::string, afs::FileInfo> files_;
    // Fetches started by Prefetch; their tasks hold what they use, and each future's last copy
    // waits for its task.
    std::map<std::string, std::shared_future<arrow::Result<WholeFile>>> wholes_;
    std::map<std::string, TailFirstFile::Tail> tails_;
  };

  // Run `read`; an error the reader took for a corrupt file is the store's when the store
  // cannot be reached (a range request that failed inside Parquet's decoding).
  template <typename Read>
  auto Guarded(const std::string& location, Read read) -> decltype(read()) {
    try {
      return read();
    } catch (const InvalidResult&) {
      const std::string key = KeyOf(location);
      auto probe = Fs()->GetFileInfo(key);
      if (!probe.ok() && IsUnavailable(probe.status())) Throw(probe.status(), "reading", key);
      throw;
    }
  }

  [[noreturn]] static void ThrowLocal(const std::string& what, const fs::path& path,
                                      std::error_code ec) {
    throw InternalError(what + " " + path.string() + ": " + ec.message(),
                        {{"path", path.string()}});
  }

  [[noreturn]] void Throw(const arrow::Status& status, const std::string& what,
                          const std::string& key) const {
    const std::string location = std::string(kS3Scheme) + key;
    const std::string message = Scrubbed(status.message());
    const std::string endpoint = endpoint_.empty() ? "AWS S3" : endpoint_;
    switch (Classify(status)) {
      case StoreFault::kCredentials:
        // The PostgreSQL catalog refusing a password is CatalogUnavailable too: a store that
        // cannot be used, which the operator fixes (Unauthenticated is the HTTP server's).
        throw CatalogUnavailable(
            "the artifact store at " + endpoint + " refused the credentials (" + what + " " +
                location + "): " + message +
                "; check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or the AWS profile",
            {{"endpoint", endpoint}, {"path", location}, {"reason", "credentials"}});
      case StoreFault::kUnreachable:
        throw CatalogUnavailable("the artifact store at " + endpoint + " is unavailable (" + what +
                                     " " + location + "): " + message,
                                 {{"endpoint", endpoint}, {"path", location}});
      case StoreFault::kOther:
        break;
    }
    throw InternalError(what + " " + location + " failed at " + endpoint + ": " + message,
                        {{"endpoint", endpoint}, {"path", location}});
  }

  bool IsNotFound(const arrow::Status& status, const std::string& key) const {
    if (IsUnavailable(status)) return false;
    if (status.IsIOError() || status.IsInvalid()) {
      const std::string& m = status.message();
      if (m.find("does not exist") != std::string::npos ||
          m.find("NoSuchKey") != std::string::npos ||
          m.find("RESOURCE_NOT_FOUND") != std::string::npos ||
          m.find("Path does not exist") != std::string::npos) {
        return true;
      }
    }
    auto info = Fs()->GetFileInfo(key);
    return info.ok() && info->type() == afs::FileType::NotFound;
  }

  // Keep `listing` of the bundle at `key` for the read that follows its Resolve; the oldest
  // goes when kKeptListings are kept (a Resolve that no read follows).
  void KeepListing(const std::string& key, std::vector<afs::FileInfo> listing) const {
    std::lock_guard lock(listings_mutex_);
    std::erase_if(listings_, [&](const KeptListing& kept) { return kept.key == key; });
    if (listings_.size() >= kKeptListings) listings_.pop_front();
    listings_.push_back({key, std::move(listing), std::chrono::steady_clock::now()});
  }

  std::vector<afs::FileInfo> List(const std::string& key) {
    afs::FileSelector selector;
    selector.base_dir = key;
    selector.allow_not_found = true;
    auto listed = Fs()->GetFileInfo(selector);
    if (!listed.ok()) Throw(listed.status(), "listing", key);
    return *std::move(listed);
  }

  void PutObject(const std::string& key, std::string_view bytes, const std::string& what) {
    auto out = Fs()->OpenOutputStream(key);
    if (!out.ok()) Throw(out.status(), what, key);
    arrow::Status status = (*out)->Write(bytes.data(), static_cast<int64_t>(bytes.size()));
    if (status.ok()) status = (*out)->Close();
    if (!status.ok()) {
      (void)(*out)->Abort();
      Throw(status, what, key);
    }
  }

  std::optional<std::string> GetObject(const std::string& key, const std::string& what) {
    return GetObject(afs::FileInfo(key), what);
  }

  // The object `info` names; its size, when the info has it, saves the request that learns it.
  std::optional<std::string> GetObject(const afs::FileInfo& info, const std::string& what) {
    const std::string& key = info.path();
    auto file = Fs()->OpenInputFile(info);
    if (!file.ok()) {
      if (IsNotFound(file.status(), key)) return std::nullopt;
      Throw(file.status(), what, key);
    }
    auto size = (*file)->GetSize();
    if (!size.ok()) Throw(size.status(), what, key);
    auto buffer = (*file)->ReadAt(0, *size);
    if (!buffer.ok()) {
      if (IsNotFound(buffer.status(), key)) return std::nullopt;  // removed since it was listed
      Throw(buffer.status(), what, key);
    }
    return (*buffer)->ToString();
  }

  // Upload the local file `path` to `key`.
  void UploadFile(const fs::path& path, const std::string& key) {
    std::ifstream in(path, std::ios::binary);
    if (!in) ThrowLocal("cannot open", path, std::error_code(errno, std::generic_category()));
    auto out = Fs()->OpenOutputStream(key);
    if (!out.ok()) Throw(out.status(), "uploading", key);
    std::string chunk(static_cast<size_t>(kUploadChunkBytes), '\0');
    arrow::Status status;
    while (status.ok() && in) {
      in.read(chunk.data(), kUploadChunkBytes);
      const std::streamsize n = in.gcount();
      if (n > 0) status = (*out)->Write(chunk.data(), n);
    }
    if (status.ok() && in.bad()) {
      (void)(*out)->Abort();
      ThrowLocal("cannot read", path, std::error_code(EIO, std::generic_category()));
    }
    if (status.ok()) status = (*out)->Close();
    if (!status.ok()) {
      (void)(*out)->Abort();
      Throw(status, "uploading", key);
    }
  }

  std::string CheckpointsKey(const std::string& job_id) const {
    return base_ + "/" + std::string(kCheckpointsDir) + "/" + job_id;
  }

  std::string LogKey(const std::string& job_id, int attempt, LogStream stream) const {
    return base_ + "/" + std::string(kLogsDir) + "/" + job_id + "/" + AttemptFileName(attempt) +
           "." + std::string(ToString(stream));
  }

  fs::path LocalLogPath(const std::string& job_id, int attempt, LogStream stream) const {
    return local_ / kLogsDir / job_id /
           (AttemptFileName(attempt) + "." + std::string(ToString(stream)));
  }

  // The client, made on first use (see Fs).
  mutable std::once_flag fs_made_;
  mutable std::shared_ptr<afs::S3FileSystem> fs_;
  std::string base_;       // "bucket/prefix", the root as Arrow names it
  std::string root_text_;  // "s3://bucket/prefix"
  std::string endpoint_;   // as configured, for messages; empty for AWS
  fs::path local_;         // run directories and live logs of command engines

  std::mutex lock_mutex_;
  std::condition_variable lock_released_;
  std::set<std::string> locked_jobs_;

  std::mutex published_mutex_;
  std::map<std::string, std::string> published_;  // job_id -> what this process published

  struct KeptListing {
    std::string key;
    std::vector<afs::FileInfo> files;
    std::chrono::steady_clock::time_point at;
  };
  mutable std::mutex listings_mutex_;
  mutable std::deque<KeptListing> listings_;
};

void S3RemovalBatch::RemoveBundle(const BundleLocation& where, std::string_view job_id) {
  const std::string key = store_.KeyOf(where.location);
  store_.DeletePrefix(key, "removing the bundle of job " + std::string(job_id) + " at");
}

void S3RemovalBatch::RemoveJob(std::string_view job_id) {
  if (!IsJobIdName(job_id)) return;
  const std::string id(job_id);
  const std::string what = "removing the files of job " + id + " at";
  store_.DeletePrefix(store_.base() + "/" + id, what);
  for (std::string_view area : {kCheckpointsDir, kLogsDir}) {
    store_.DeletePrefix(store_.base() + "/" + std::string(area) + "/" + id, what);
  }
}

std::shared_ptr<afs::S3FileSystem> MakeS3FileSystem(const std::string& endpoint,
                                                    const std::string& root) {
  InitializeS3Once();
  afs::S3Options options = afs::S3Options::Defaults();
  if (!endpoint.empty()) {
    std::string_view host = endpoint;
    if (host.starts_with("http://")) {
      options.scheme = "http";
      host.remove_prefix(7);
    } else if (host.starts_with("https://")) {
      host.remove_prefix(8);
    }
    while (host.ends_with('/')) host.remove_suffix(1);
    options.endpoint_override = std::string(host);
  }
  // An object smaller than a part is then written with one PUT when it is closed, instead of
  // three requests of a multipart upload; failures still show, at the latest when it is closed.
  options.allow_delayed_open = true;
  options.retry_strategy = std::make_shared<BackoffRetryStrategy>();
  options.connect_timeout = 5;
  options.request_timeout = 30;
  auto fs = afs::S3FileSystem::Make(options);
  if (!fs.ok()) {
    throw InternalError("cannot set up the S3 client for " + root + ": " +
                        Scrubbed(fs.status().message()));
  }
  return *std::move(fs);
}

}  // namespace

std::unique_ptr<ArtifactStore> OpenS3Store(const std::string& root) {
  const std::optional<std::vector<std::string>> parts =
      KeyComponents(std::string_view(root).substr(kS3Scheme.size()));
  if (!parts || parts->empty()) {
    throw InvalidArgument("the artifact root " + root + " names no bucket (s3://bucket/prefix)",
                          {{"field", "artifact_root"}});
  }
  std::string endpoint;
  if (const char* value = std::getenv("BTSTORE_S3_ENDPOINT"); value != nullptr && *value) {
    endpoint = value;
  }
  // The client itself is made when the store is first used (S3ArtifactStore::Fs).
  return std::make_unique<S3ArtifactStore>(Join(*parts, parts->size()), endpoint);
}

}  // namespace btstore::internal

namespace btstore {

void FinalizeObjectStores() {
  std::lock_guard lock(internal::s3_state_mutex);
  if (internal::s3_finalized || !arrow::fs::IsS3Initialized()) return;
  internal::s3_finalized = true;
  (void)arrow::fs::FinalizeS3();
}

}  // namespace btstore

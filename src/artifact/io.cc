// The hashing output file, the counting input file, directory flushing and the translation of
// Arrow/Parquet failures into btstore errors.

#include <arrow/buffer.h>
#include <fcntl.h>
#include <parquet/exception.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <future>
#include <new>
#include <vector>

#include "artifact/io_internal.h"
#include "btstore/errors.h"

// After xxhash.h (through io_internal.h): the XXH3 calls below become the library's dispatch
// versions, which pick the AVX2 or AVX-512 code where the machine has it (the default build is
// SSE2); the same hashes, about 10% faster on checksum-bound reads and writes.
#include <xxh_x86dispatch.h>

namespace btstore::internal {
namespace {

// Large enough that the Parquet writer's many small writes (headers, page headers) become few
// system calls; small enough to stay in cache.
constexpr size_t kSinkBufferBytes = 1 << 20;

// Writes from this size up (data pages: a page of 65,536 doubles is 512 KiB) go to the kernel
// as they are instead of through the buffer, which only cost a copy of most of the file.
constexpr size_t kDirectWriteBytes = 64 << 10;

// How many written bytes accumulate before their write-back to disk is started.
constexpr int64_t kWritebackBytes = 8 << 20;

std::string Hex(const XXH128_hash_t& hash) {
  XXH128_canonical_t canonical;
  XXH128_canonicalFromHash(&canonical, hash);
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out = "xxh3-128:";
  for (unsigned char byte : canonical.digest) {
    out += kDigits[byte >> 4];
    out += kDigits[byte & 0xf];
  }
  return out;
}

arrow::Status ErrnoStatus(const std::string& what, const fs::path& path) {
  return arrow::Status::IOError(what, " ", path.string(), ": ", std::strerror(errno));
}

}  // namespace

std::shared_ptr<HashingFileSink> HashingFileSink::Create(const fs::path& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    throw InternalError("cannot create " + path.string() + ": " + std::strerror(errno),
                        {{"path", path.string()}});
  }
  return std::shared_ptr<HashingFileSink>(new HashingFileSink(path, fd, nullptr));
}

std::shared_ptr<HashingFileSink> HashingFileSink::Over(std::shared_ptr<arrow::io::OutputStream> out,
                                                       fs::path name) {
  return std::shared_ptr<HashingFileSink>(new HashingFileSink(std::move(name), -1, std::move(out)));
}

HashingFileSink::HashingFileSink(fs::path path, int fd,
                                 std::shared_ptr<arrow::io::OutputStream> out)
    : path_(std::move(path)),
      fd_(fd),
      out_(std::move(out)),
      // A stream buffers on its own (an upload in parts of megabytes).
      buffer_(out_ ? nullptr : std::make_unique_for_overwrite<uint8_t[]>(kSinkBufferBytes)),
      state_(XXH3_createState()) {
  XXH3_128bits_reset(state_);
}

HashingFileSink::~HashingFileSink() {
  if (fd_ >= 0) ::close(fd_);
  if (out_ && !finished_) (void)out_->Abort();
  XXH3_freeState(state_);
}

arrow::Status HashingFileSink::WriteOut(const uint8_t* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd_, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("cannot write", path_);
    }
    data += n;
    size -= static_cast<size_t>(n);
    flushed_ += n;
  }
  if (flushed_ - writeback_ >= kWritebackBytes) {
    // Start writing the new bytes to disk now, while the rest of the file is still being
    // encoded, so that the fsync in Close() has little left to wait for. Advice only: errors
    // surface in that fsync.
    ::sync_file_range(fd_, writeback_, flushed_ - writeback_, SYNC_FILE_RANGE_WRITE);
    writeback_ = flushed_;
  }
  return arrow::Status::OK();
}

arrow::Status HashingFileSink::Write(const void* data, int64_t nbytes) {
  if (closed_) return arrow::Status::Invalid("write to a closed file ", path_.string());
  const auto* bytes = static_cast<const uint8_t*>(data);
  auto size = static_cast<size_t>(nbytes);
  XXH3_128bits_update(state_, bytes, size);
  position_ += nbytes;
  if (out_) {
    arrow::Status status = out_->Write(data, nbytes);
    if (!status.ok() && stream_failure_.ok()) stream_failure_ = status;
    return status;
  }
  if (size < kDirectWriteBytes && used_ + size <= kSinkBufferBytes) {
    std::memcpy(buffer_.get() + used_, bytes, size);
    used_ += size;
    return arrow::Status::OK();
  }
  ARROW_RETURN_NOT_OK(Flush());
  if (size >= kDirectWriteBytes) return WriteOut(bytes, size);
  std::memcpy(buffer_.get(), bytes, size);
  used_ = size;
  return arrow::Status::OK();
}

arrow::Status HashingFileSink::Flush() {
  if (closed_ || used_ == 0) return arrow::Status::OK();
  arrow::Status status = WriteOut(buffer_.get(), used_);
  used_ = 0;
  return status;
}

arrow::Status HashingFileSink::Close() {
  if (closed_) return close_status_;
  close_status_ = Flush();
  closed_ = true;
  return close_status_;
}

arrow::Status HashingFileSink::Sync() {
  if (finished_) return arrow::Status::OK();
  arrow::Status status = Close();
  finished_ = true;
  if (out_) {
    // Closing an upload sends what it still holds and completes it; a failure aborts it.
    if (status.ok()) status = out_->Close();
    if (!status.ok()) (void)out_->Abort();
    return status;
  }
  if (status.ok() && ::fsync(fd_) != 0) status = ErrnoStatus("cannot flush", path_);
  if (::close(fd_) != 0 && status.ok()) status = ErrnoStatus("cannot close", path_);
  fd_ = -1;
  return status;
}

arrow::Status HashingFileSink::Abort() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (out_ && !finished_) (void)out_->Abort();
  finished_ = true;
  closed_ = true;
  used_ = 0;
  return arrow::Status::OK();
}

std::string HashingFileSink::Checksum() const { return Hex(XXH3_128bits_digest(state_)); }

std::string ChecksumOf(const void* data, size_t size) { return Hex(XXH3_128bits(data, size)); }

StreamingChecksum::StreamingChecksum() : state_(XXH3_createState()) {
  if (state_ == nullptr) throw std::bad_alloc();
  XXH3_128bits_reset(state_);
}

StreamingChecksum::~StreamingChecksum() { XXH3_freeState(state_); }

void StreamingChecksum::Update(const void* data, size_t size) {
  XXH3_128bits_update(state_, data, size);
}

std::string StreamingChecksum::Checksum() const { return Hex(XXH3_128bits_digest(state_)); }

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.Release();
  }
  return *this;
}

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) ::close(fd_);
}

int UniqueFd::Release() {
  int fd = fd_;
  fd_ = -1;
  return fd;
}

std::optional<BundleFile> OpenBundleFile(const fs::path& dir, const std::string& name) {
  const fs::path path = dir / name;
  auto fail = [&](const std::string& why) {
    throw InvalidResult(name + " " + why, {{"file", name}, {"path", path.string()}});
  };
  // O_NOFOLLOW refuses a symbolic link as the last component; O_NONBLOCK keeps a FIFO from
  // blocking the open (it is refused below as not a regular file).
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (fd.get() < 0) {
    int err = errno;
    if (err == ENOENT) return std::nullopt;
    if (err == ELOOP) {
      fail("is a symbolic link: the files of a bundle must be regular files inside it");
    }
    fail(std::string("cannot be opened: ") + std::strerror(err));
  }
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) fail(std::string("cannot be read: ") + std::strerror(errno));
  if (!S_ISREG(info.st_mode)) {
    fail("is not a regular file: the files of a bundle must be regular files inside it");
  }
  return BundleFile{std::move(fd), static_cast<int64_t>(info.st_size)};
}

namespace {

// Bytes read per pread: large enough that system calls cost nothing next to the copy, small
// enough that each piece is hashed while it is still in the CPU's cache.
constexpr size_t kReadChunkBytes = 1 << 20;

// Private anonymous memory owned by an Arrow buffer. It is not backed by the file, so a file
// truncated by another process cannot take the pages away (SIGBUS) while they are decoded.
class AnonymousBuffer : public arrow::Buffer {
 public:
  AnonymousBuffer(uint8_t* data, int64_t size) : arrow::Buffer(data, size) {}
  ~AnonymousBuffer() override { ::munmap(const_cast<uint8_t*>(data_), static_cast<size_t>(size_)); }
};

}  // namespace

arrow::Result<WholeFile> ReadWholeAt(arrow::io::RandomAccessFile& file, int64_t size,
                                     int64_t part_bytes) {
  if (size == 0) return WholeFile{std::make_shared<arrow::Buffer>(nullptr, 0), ChecksumOf("", 0)};
  void* memory = ::mmap(nullptr, static_cast<size_t>(size), PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) {
    return arrow::Status::OutOfMemory("cannot allocate ", size, " bytes: ", std::strerror(errno));
  }
  auto buffer = std::make_shared<AnonymousBuffer>(static_cast<uint8_t*>(memory), size);
  const int64_t parts =
      std::clamp<int64_t>(size / std::max<int64_t>(part_bytes, 1), 1, kMaxWholeReadParts);
  const int64_t step = (size + parts - 1) / parts;
  auto read_part = [&file, memory, size, step](int64_t part) -> arrow::Status {
    const int64_t offset = part * step;
    const int64_t length = std::min(step, size - offset);
    ARROW_ASSIGN_OR_RAISE(int64_t n,
                          file.ReadAt(offset, length, static_cast<uint8_t*>(memory) + offset));
    if (n != length) {
      return arrow::Status::IOError("the file was truncated while being read (", offset + n, " of ",
                                    size, " bytes)");
    }
    return arrow::Status::OK();
  };
  // RandomAccessFile::ReadAt may be called from several threads at once.
  std::vector<std::future<arrow::Status>> others;
  for (int64_t part = 1; part < parts; ++part) {
    others.push_back(std::async(std::launch::async, read_part, part));
  }
  arrow::Status status = read_part(0);
  for (auto& other : others) {
    arrow::Status part_status = other.get();
    if (status.ok()) status = std::move(part_status);
  }
  ARROW_RETURN_NOT_OK(status);
  std::string checksum = ChecksumOf(memory, static_cast<size_t>(size));
  return WholeFile{std::move(buffer), std::move(checksum)};
}

std::string ReadFileInto(int fd, int64_t size, uint8_t* data, const std::string& file) {
  std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> state(XXH3_createState(),
                                                                 &XXH3_freeState);
  XXH3_128bits_reset(state.get());
  int64_t done = 0;
  while (done < size) {
    size_t want = static_cast<size_t>(std::min<int64_t>(size - done, kReadChunkBytes));
    ssize_t n = ::pread(fd, data + done, want, done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::string reason = n == 0 ? "the file was truncated while being read (" +
                                        std::to_string(done) + " of " + std::to_string(size) +
                                        " bytes)"
                                  : std::string("cannot read: ") + std::strerror(errno);
      throw InvalidResult(file + " is corrupt or unreadable: " + reason,
                          {{"file", file}, {"reason", reason}});
    }
    XXH3_128bits_update(state.get(), data + done, static_cast<size_t>(n));
    done += n;
  }
  return Hex(XXH3_128bits_digest(state.get()));
}

WholeFile ReadWholeFile(int fd, int64_t size, const std::string& file) {
  if (size == 0) return {std::make_shared<arrow::Buffer>(nullptr, 0), ChecksumOf("", 0)};
  void* memory = ::mmap(nullptr, static_cast<size_t>(size), PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) {
    throw InternalError("cannot allocate " + std::to_string(size) + " bytes to read " + file +
                            ": " + std::strerror(errno),
                        {{"file", file}});
  }
  // Huge pages where the kernel has them: a 60 MB file takes 30 faults instead of 15,000 page
  // table entries and memory-cgroup charges (both showed in the read profile). Then every page
  // is provided in one call rather than one fault per page as pread fills them. Advice only:
  // without it the pages come one by one, as before.
  ::madvise(memory, static_cast<size_t>(size), MADV_HUGEPAGE);
  ::madvise(memory, static_cast<size_t>(size), MADV_POPULATE_WRITE);
  auto buffer = std::make_shared<AnonymousBuffer>(static_cast<uint8_t*>(memory), size);
  std::string checksum = ReadFileInto(fd, size, static_cast<uint8_t*>(memory), file);
  return {std::move(buffer), std::move(checksum)};
}

void ReleasePages(const arrow::Buffer& whole, int64_t offset, int64_t length) {
  static const auto kPage = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  auto begin = reinterpret_cast<uintptr_t>(whole.data() + std::max<int64_t>(offset, 0));
  auto end = reinterpret_cast<uintptr_t>(whole.data() + std::min(offset + length, whole.size()));
  // Only whole pages inside the range, so that neighbouring bytes stay in memory.
  begin = (begin + kPage - 1) / kPage * kPage;
  end = end / kPage * kPage;
  // Advice only: a failure leaves the pages resident, which is harmless.
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

arrow::Result<int64_t> CountingFile::Read(int64_t nbytes, void* out) {
  ARROW_ASSIGN_OR_RAISE(int64_t n, inner_->Read(nbytes, out));
  *counter_ += n;
  return n;
}

arrow::Result<std::shared_ptr<arrow::Buffer>> CountingFile::Read(int64_t nbytes) {
  ARROW_ASSIGN_OR_RAISE(auto buffer, inner_->Read(nbytes));
  *counter_ += buffer->size();
  return buffer;
}

arrow::Result<int64_t> CountingFile::ReadAt(int64_t position, int64_t nbytes, void* out) {
  ARROW_ASSIGN_OR_RAISE(int64_t n, inner_->ReadAt(position, nbytes, out));
  *counter_ += n;
  return n;
}

arrow::Result<std::shared_ptr<arrow::Buffer>> CountingFile::ReadAt(int64_t position,
                                                                   int64_t nbytes) {
  ARROW_ASSIGN_OR_RAISE(auto buffer, inner_->ReadAt(position, nbytes));
  *counter_ += buffer->size();
  return buffer;
}

arrow::Result<int64_t> CountingFile::ReadAt(int64_t position, int64_t nbytes, bool allow_short_read,
                                            void* out) {
  ARROW_ASSIGN_OR_RAISE(int64_t n, inner_->ReadAt(position, nbytes, allow_short_read, out));
  *counter_ += n;
  return n;
}

arrow::Result<std::shared_ptr<arrow::Buffer>> CountingFile::ReadAt(int64_t position, int64_t nbytes,
                                                                   bool allow_short_read) {
  ARROW_ASSIGN_OR_RAISE(auto buffer, inner_->ReadAt(position, nbytes, allow_short_read));
  *counter_ += buffer->size();
  return buffer;
}

void SyncDirectory(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    throw InternalError("cannot open directory " + dir.string() + ": " + std::strerror(errno),
                        {{"path", dir.string()}});
  }
  int rc = ::fsync(fd);
  int saved = errno;
  ::close(fd);
  if (rc != 0) {
    throw InternalError("cannot flush directory " + dir.string() + ": " + std::strerror(saved),
                        {{"path", dir.string()}});
  }
}

namespace {

bool IsSafeName(const std::string& name, size_t max_length) {
  if (name.empty() || name.size() > max_length || name.front() == '.') return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

bool IsSafeFileStem(const std::string& name) {
  constexpr size_t kMaxStem = 128;
  return IsSafeName(name, kMaxStem);
}

bool IsSafeFileName(const std::string& name) {
  constexpr size_t kMaxName = 255;  // NAME_MAX of Linux file systems
  return IsSafeName(name, kMaxName);
}

void Check(const arrow::Status& status, FailureKind kind, const std::string& file) {
  if (status.ok()) return;
  if (kind == FailureKind::kRead) {
    throw InvalidResult(file + " is corrupt or unreadable: " + status.ToString(),
                        {{"file", file}, {"reason", status.ToString()}});
  }
  throw InternalError("cannot write " + file + ": " + status.ToString(),
                      {{"file", file}, {"reason", status.ToString()}});
}

void GuardParquet(FailureKind kind, const std::string& file, const std::function<void()>& work) {
  try {
    work();
  } catch (const parquet::ParquetException& e) {
    Check(arrow::Status::IOError(e.what()), kind, file);
  }
}

}  // namespace btstore::internal

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

#include "artifact/io_internal.h"
#include "btstore/errors.h"

namespace btstore::internal {
namespace {

// Large enough that the Parquet writer's many small writes (headers, page headers) become few
// system calls; small enough to stay in cache.
constexpr size_t kSinkBufferBytes = 1 << 20;

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
  return std::shared_ptr<HashingFileSink>(new HashingFileSink(path, fd));
}

HashingFileSink::HashingFileSink(fs::path path, int fd)
    : path_(std::move(path)), fd_(fd), buffer_(kSinkBufferBytes), state_(XXH3_createState()) {
  XXH3_128bits_reset(state_);
}

HashingFileSink::~HashingFileSink() {
  if (fd_ >= 0) ::close(fd_);
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
  if (fd_ < 0) return arrow::Status::Invalid("write to a closed file ", path_.string());
  const auto* bytes = static_cast<const uint8_t*>(data);
  auto size = static_cast<size_t>(nbytes);
  XXH3_128bits_update(state_, bytes, size);
  position_ += nbytes;
  if (used_ + size <= buffer_.size()) {
    std::memcpy(buffer_.data() + used_, bytes, size);
    used_ += size;
    return arrow::Status::OK();
  }
  ARROW_RETURN_NOT_OK(Flush());
  if (size >= buffer_.size()) return WriteOut(bytes, size);
  std::memcpy(buffer_.data(), bytes, size);
  used_ = size;
  return arrow::Status::OK();
}

arrow::Status HashingFileSink::Flush() {
  if (fd_ < 0 || used_ == 0) return arrow::Status::OK();
  arrow::Status status = WriteOut(buffer_.data(), used_);
  used_ = 0;
  return status;
}

arrow::Status HashingFileSink::Close() {
  if (fd_ < 0) return arrow::Status::OK();
  arrow::Status status = Flush();
  if (status.ok() && ::fsync(fd_) != 0) status = ErrnoStatus("cannot flush", path_);
  if (::close(fd_) != 0 && status.ok()) status = ErrnoStatus("cannot close", path_);
  fd_ = -1;
  return status;
}

arrow::Status HashingFileSink::Abort() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  used_ = 0;
  return arrow::Status::OK();
}

std::string HashingFileSink::Checksum() const { return Hex(XXH3_128bits_digest(state_)); }

std::string ChecksumOf(const void* data, size_t size) { return Hex(XXH3_128bits(data, size)); }

namespace {

// A read-only file mapping owned by an Arrow buffer.
class MappedBuffer : public arrow::Buffer {
 public:
  MappedBuffer(const uint8_t* data, int64_t size) : arrow::Buffer(data, size) {}
  ~MappedBuffer() override { ::munmap(const_cast<uint8_t*>(data_), static_cast<size_t>(size_)); }
};

}  // namespace

std::shared_ptr<arrow::Buffer> MapFile(const fs::path& path, int64_t size,
                                       const std::string& file) {
  if (size == 0) return std::make_shared<arrow::Buffer>(nullptr, 0);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    Check(ErrnoStatus("cannot open", path), FailureKind::kRead, file);
  }
  // MAP_POPULATE maps the whole file in one go (the caller reads every byte anyway), which
  // costs far fewer page faults than touching it page by page.
  void* data =
      ::mmap(nullptr, static_cast<size_t>(size), PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
  arrow::Status status = data == MAP_FAILED ? ErrnoStatus("cannot map", path) : arrow::Status::OK();
  // Bytes past the end of a file that shrank since its size was taken cannot be read.
  struct stat info {};
  if (status.ok() && (::fstat(fd, &info) != 0 || info.st_size < size)) {
    status = arrow::Status::IOError("file ", path.string(), " was truncated while being read");
    ::munmap(data, static_cast<size_t>(size));
  }
  ::close(fd);
  Check(status, FailureKind::kRead, file);
  return std::make_shared<MappedBuffer>(static_cast<const uint8_t*>(data), size);
}

void ReleasePages(const arrow::Buffer& mapped, int64_t offset, int64_t length) {
  static const auto kPage = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  auto begin = reinterpret_cast<uintptr_t>(mapped.data() + std::max<int64_t>(offset, 0));
  auto end = reinterpret_cast<uintptr_t>(mapped.data() + std::min(offset + length, mapped.size()));
  // Only whole pages inside the range, so that neighbouring bytes stay mapped in.
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

bool IsSafeFileStem(const std::string& name) {
  constexpr size_t kMaxStem = 128;
  if (name.empty() || name.size() > kMaxStem || name.front() == '.') return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
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

#pragma once
// Private pieces of the artifact layer: the hashing output file, the byte-counting input file,
// directory flushing, and the one place where Arrow/Parquet errors become btstore errors.

#include <arrow/buffer.h>
#include <arrow/io/interfaces.h>
#include <arrow/result.h>
#include <arrow/status.h>
#include <arrow/table.h>
#include <parquet/properties.h>
#include <xxhash.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "btstore/bundle.h"

namespace btstore::internal {

namespace fs = std::filesystem;

/// An output file that hashes (xxh3-128) and counts the bytes as they are written, so the
/// manifest needs no second pass over the file. Its bytes go to a local file or to an output
/// stream (an object being uploaded). Close() ends writing; Sync() then finishes the file at
/// its destination (a local file: flushed to disk; a stream: closed, which completes an
/// upload), so that the files of a bundle can be finished together, on threads of their own.
class HashingFileSink : public arrow::io::OutputStream {
 public:
  /// Create the local file `path`, which must not exist; the written bytes' write-back to disk
  /// starts as they come, so that a Sync() at the end has little left to wait for. Throws
  /// InternalError.
  static std::shared_ptr<HashingFileSink> Create(const fs::path& path);
  /// Write into `out`, an open stream (named `name` in errors). A stream that is dropped before
  /// Sync() finished it is aborted: an upload that fails half-way never becomes an object.
  static std::shared_ptr<HashingFileSink> Over(std::shared_ptr<arrow::io::OutputStream> out,
                                               fs::path name);
  ~HashingFileSink() override;

  arrow::Status Write(const void* data, int64_t nbytes) override;
  arrow::Status Flush() override;
  /// Write out the buffer and end writing. A local file's descriptor stays open for Sync(), so
  /// that a write-back error the kernel records meanwhile is still reported to it.
  arrow::Status Close() override;
  /// Close() if needed, then finish the file: fsync and close a local file, close a stream.
  /// Safe to call from another thread than the writer's once writing is over.
  arrow::Status Sync();
  arrow::Status Abort() override;
  arrow::Result<int64_t> Tell() const override { return position_; }
  bool closed() const override { return closed_; }

  /// Return "xxh3-128:<32 hex digits>" of every byte written so far.
  std::string Checksum() const;
  /// Return the number of bytes written so far.
  int64_t bytes() const { return position_; }
  /// Return the path the file was created at (a stream's name).
  const fs::path& path() const { return path_; }
  /// Whether the bytes go to a stream rather than a local file.
  bool streamed() const { return out_ != nullptr; }
  /// The stream's first failed write (OK when none failed): the cause of a failed write of
  /// this file that the store may name in its own terms.
  const arrow::Status& stream_failure() const { return stream_failure_; }

 private:
  HashingFileSink(fs::path path, int fd, std::shared_ptr<arrow::io::OutputStream> out);
  arrow::Status WriteOut(const uint8_t* data, size_t size);

  fs::path path_;
  int fd_;                                        // the local file, or -1
  std::shared_ptr<arrow::io::OutputStream> out_;  // the stream, or null
  bool closed_ = false;
  bool finished_ = false;       // Sync() ended
  arrow::Status close_status_;  // of the last write, kept for Sync()
  arrow::Status stream_failure_;
  std::unique_ptr<uint8_t[]> buffer_;  // not zero-filled: only written bytes are read
  size_t used_ = 0;
  int64_t position_ = 0;
  int64_t flushed_ = 0;    // bytes handed to the kernel
  int64_t writeback_ = 0;  // bytes whose write-back to disk was started
  XXH3_state_t* state_;
};

/// A table ready for the Parquet writer with the settings of a bundle's files.
struct ParquetWrite {
  std::shared_ptr<arrow::Table> table;  // columns without nulls made non-nullable
  std::shared_ptr<parquet::WriterProperties> properties;
  std::shared_ptr<parquet::ArrowWriterProperties> arrow_properties;
};

/// Prepare `table` for writing as the bundle file `file` (named in errors): columns that hold no
/// nulls become REQUIRED (their original nullability recorded under kNullableColumnsKey),
/// permno is delta-encoded, floats get no dictionary, compression and row groups follow
/// `options`. Throws InternalError when the schema metadata cannot be extended.
ParquetWrite PrepareParquetWrite(const std::shared_ptr<arrow::Table>& table,
                                 const WriteOptions& options, const std::string& file);

/// Key of a Parquet file's key-value metadata: a JSON array of the (top-level) column indices
/// that the writer stored as REQUIRED, because they held no nulls, although the table declared
/// them nullable. The reader marks them nullable again and drops the key.
inline constexpr std::string_view kNullableColumnsKey = "btstore.nullable_columns";

/// Return "xxh3-128:<32 hex digits>" of `size` bytes at `data`.
std::string ChecksumOf(const void* data, size_t size);

/// The checksum of a file hashed piece by piece, in order (a streamed read).
class StreamingChecksum {
 public:
  StreamingChecksum();
  ~StreamingChecksum();
  StreamingChecksum(const StreamingChecksum&) = delete;
  StreamingChecksum& operator=(const StreamingChecksum&) = delete;
  /// Hash the next `size` bytes.
  void Update(const void* data, size_t size);
  /// Return "xxh3-128:<32 hex digits>" of every byte hashed so far.
  std::string Checksum() const;

 private:
  XXH3_state_t* state_;
};

/// An open file descriptor, closed when the object goes.
class UniqueFd {
 public:
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd();

  int get() const { return fd_; }
  /// Give up ownership: the caller closes the descriptor.
  int Release();

 private:
  int fd_;
};

/// A file of a bundle, open for reading.
struct BundleFile {
  UniqueFd fd;
  int64_t size = 0;  ///< when it was opened
};

/// Open the file `name` of the bundle directory `dir` for reading. It must be a regular file in
/// the directory itself: not a symbolic link (which could lead out of the bundle, to any file
/// the reader may read), nor a directory, FIFO or device. Returns std::nullopt when nothing has
/// that name. Throws InvalidResult naming the file otherwise.
std::optional<BundleFile> OpenBundleFile(const fs::path& dir, const std::string& name);

/// A whole file in memory and the checksum of its bytes.
struct WholeFile {
  std::shared_ptr<arrow::Buffer> data;
  std::string checksum;  ///< "xxh3-128:<32 hex digits>"
};

/// Read all `size` bytes of an open file into private memory with pread, hashing them as they
/// arrive: no second pass over the file. Unlike a mapping of the file, the copy cannot fault
/// when another process truncates the file meanwhile; a short read is reported instead.
/// Throws InvalidResult naming `file` (truncated while read, or unreadable).
WholeFile ReadWholeFile(int fd, int64_t size, const std::string& file);

/// Read the `size` bytes of an open file into `data` (at least `size` bytes) with pread, hashing
/// them as they arrive; return their checksum ("xxh3-128:..."). For a reader that keeps one
/// buffer from file to file. Throws InvalidResult naming `file` (truncated while read, or
/// unreadable).
std::string ReadFileInto(int fd, int64_t size, uint8_t* data, const std::string& file);

/// Read the `size` bytes of `file` into private anonymous memory (as ReadWholeFile) and checksum
/// them: for files behind a network. A file of more than `part_bytes` is read in consecutive
/// parts of about that size (at most kMaxWholeReadParts), all at once, on threads of their own:
/// one request per part, in parallel. Returns the status of a failed read; a short one is an
/// IOError.
arrow::Result<WholeFile> ReadWholeAt(arrow::io::RandomAccessFile& file, int64_t size,
                                     int64_t part_bytes = std::numeric_limits<int64_t>::max());

/// The most parts ReadWholeAt reads one file in.
inline constexpr int64_t kMaxWholeReadParts = 8;

/// Drop the pages of [offset, offset + length) of a buffer returned by ReadWholeFile from this
/// process's resident set, for good: call it only for bytes that were decoded and are not
/// needed again. This bounds the memory that a whole-file read holds at once.
void ReleasePages(const arrow::Buffer& whole, int64_t offset, int64_t length);

/// A random-access input file that counts the bytes read through it (for ReadStats).
class CountingFile : public arrow::io::RandomAccessFile {
 public:
  CountingFile(std::shared_ptr<arrow::io::RandomAccessFile> inner,
               std::shared_ptr<std::atomic<int64_t>> counter)
      : inner_(std::move(inner)), counter_(std::move(counter)) {}

  arrow::Status Close() override { return inner_->Close(); }
  arrow::Result<int64_t> Tell() const override { return inner_->Tell(); }
  bool closed() const override { return inner_->closed(); }
  arrow::Status Seek(int64_t position) override { return inner_->Seek(position); }
  arrow::Result<int64_t> GetSize() override { return inner_->GetSize(); }
  arrow::Result<int64_t> Read(int64_t nbytes, void* out) override;
  arrow::Result<std::shared_ptr<arrow::Buffer>> Read(int64_t nbytes) override;
  arrow::Result<int64_t> ReadAt(int64_t position, int64_t nbytes, void* out) override;
  arrow::Result<std::shared_ptr<arrow::Buffer>> ReadAt(int64_t position, int64_t nbytes) override;
  arrow::Result<int64_t> ReadAt(int64_t position, int64_t nbytes, bool allow_short_read,
                                void* out) override;
  arrow::Result<std::shared_ptr<arrow::Buffer>> ReadAt(int64_t position, int64_t nbytes,
                                                       bool allow_short_read) override;

 private:
  std::shared_ptr<arrow::io::RandomAccessFile> inner_;
  std::shared_ptr<std::atomic<int64_t>> counter_;
};

/// fsync a directory so that the entries created or renamed in it are durable.
/// Throws InternalError.
void SyncDirectory(const fs::path& dir);

/// Whether `name` may be the stem of a bundle file: 1-128 of letters, digits, '-', '_', '.',
/// not starting with '.'.
bool IsSafeFileStem(const std::string& name);

/// Whether `name` may name a file of a bundle (a manifest entry): a plain name inside the
/// bundle directory, 1-255 of letters, digits, '-', '_', '.', not starting with '.' (so never a
/// path, "..", or a hidden file).
bool IsSafeFileName(const std::string& name);

/// What an Arrow or Parquet failure means where it happened.
enum class FailureKind {
  kWrite,  ///< writing a bundle: an environment failure (InternalError)
  kRead,   ///< reading a bundle file: the file is corrupt (InvalidResult naming it)
};

/// Throw the btstore error for a failed Arrow status (no-op when ok).
void Check(const arrow::Status& status, FailureKind kind, const std::string& file);

/// Unwrap an Arrow result, throwing as Check does.
template <typename T>
T Unwrap(arrow::Result<T> result, FailureKind kind, const std::string& file) {
  Check(result.status(), kind, file);
  return std::move(result).ValueUnsafe();
}

/// Run `work`, translating Parquet exceptions (which its readers and writers throw besides
/// returning Status) into the btstore error for `kind`. This is the one place they are caught.
void GuardParquet(FailureKind kind, const std::string& file, const std::function<void()>& work);

}  // namespace btstore::internal

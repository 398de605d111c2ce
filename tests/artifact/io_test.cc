// The shared I/O helpers of the artifact layer (src/artifact/io.cc).

#include <arrow/io/memory.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "artifact/io_internal.h"

namespace btstore::internal {
namespace {

// A file in memory that records the ranges read from it, and can be made to return short.
class RecordingFile : public arrow::io::RandomAccessFile {
 public:
  explicit RecordingFile(std::string bytes)
      : bytes_(std::move(bytes)),
        inner_(std::make_shared<arrow::io::BufferReader>(arrow::Buffer::FromString(bytes_))) {}

  arrow::Status Close() override { return inner_->Close(); }
  bool closed() const override { return inner_->closed(); }
  arrow::Result<int64_t> Tell() const override { return inner_->Tell(); }
  arrow::Status Seek(int64_t position) override { return inner_->Seek(position); }
  arrow::Result<int64_t> GetSize() override { return inner_->GetSize(); }
  arrow::Result<int64_t> Read(int64_t nbytes, void* out) override {
    return inner_->Read(nbytes, out);
  }
  arrow::Result<std::shared_ptr<arrow::Buffer>> Read(int64_t nbytes) override {
    return inner_->Read(nbytes);
  }
  arrow::Result<int64_t> ReadAt(int64_t position, int64_t nbytes, void* out) override {
    {
      std::lock_guard lock(mutex_);
      ranges_.emplace_back(position, nbytes);
    }
    if (position + nbytes > short_from_) nbytes = std::max<int64_t>(short_from_ - position, 0);
    return inner_->ReadAt(position, nbytes, out);
  }

  std::vector<std::pair<int64_t, int64_t>> ranges() {
    std::lock_guard lock(mutex_);
    std::sort(ranges_.begin(), ranges_.end());
    return ranges_;
  }
  void ShortFrom(int64_t offset) { short_from_ = offset; }

 private:
  std::string bytes_;
  std::shared_ptr<arrow::io::BufferReader> inner_;
  std::mutex mutex_;
  std::vector<std::pair<int64_t, int64_t>> ranges_;
  int64_t short_from_ = std::numeric_limits<int64_t>::max();
};

std::string Bytes(size_t n) {
  std::string bytes(n, '\0');
  for (size_t i = 0; i < n; ++i) bytes[i] = static_cast<char>((i * 131) % 251);
  return bytes;
}

TEST(ReadWholeAt, ReadsALargeFileInParallelPartsWithTheSameBytesAndChecksum) {
  const std::string bytes = Bytes(3000);
  RecordingFile file(bytes);
  auto whole = ReadWholeAt(file, 3000, 1000);
  ASSERT_TRUE(whole.ok()) << whole.status().ToString();
  EXPECT_EQ(whole->data->ToString(), bytes);
  EXPECT_EQ(whole->checksum, ChecksumOf(bytes.data(), bytes.size()));
  EXPECT_EQ(file.ranges(),
            (std::vector<std::pair<int64_t, int64_t>>{{0, 1000}, {1000, 1000}, {2000, 1000}}));
}

TEST(ReadWholeAt, ReadsASmallFileWithOneRequestAndCapsTheParts) {
  const std::string bytes = Bytes(999);
  RecordingFile small(bytes);
  ASSERT_TRUE(ReadWholeAt(small, 999, 1000).ok());
  EXPECT_EQ(small.ranges().size(), 1u);
  RecordingFile many(bytes);
  auto whole = ReadWholeAt(many, 999, 1);
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(whole->data->ToString(), bytes);
  EXPECT_EQ(many.ranges().size(), static_cast<size_t>(kMaxWholeReadParts));
}

TEST(ReadWholeAt, AShortPartIsATruncatedFile) {
  RecordingFile file(Bytes(3000));
  file.ShortFrom(2500);
  auto whole = ReadWholeAt(file, 3000, 1000);
  ASSERT_FALSE(whole.ok());
  EXPECT_TRUE(whole.status().IsIOError());
  EXPECT_NE(whole.status().message().find("truncated"), std::string::npos);
}

// An upload in memory: keeps what is written, records whether it was completed (Close) or
// abandoned (Abort), and can be made to fail its writes.
class RecordingStream : public arrow::io::OutputStream {
 public:
  arrow::Status Write(const void* data, int64_t nbytes) override {
    if (fail_writes) return arrow::Status::IOError("connection reset");
    bytes.append(static_cast<const char*>(data), static_cast<size_t>(nbytes));
    return arrow::Status::OK();
  }
  arrow::Status Close() override {
    completed = true;
    return arrow::Status::OK();
  }
  arrow::Status Abort() override {
    aborted = true;
    return arrow::Status::OK();
  }
  bool closed() const override { return completed || aborted; }
  arrow::Result<int64_t> Tell() const override { return static_cast<int64_t>(bytes.size()); }

  std::string bytes;
  bool completed = false;
  bool aborted = false;
  bool fail_writes = false;
};

TEST(HashingFileSink, OverAStreamHashesWhatItForwardsAndCompletesItOnSync) {
  auto stream = std::make_shared<RecordingStream>();
  auto sink = HashingFileSink::Over(stream, "daily_ic.parquet");
  const std::string bytes = Bytes(5000);
  ASSERT_TRUE(sink->Write(bytes.data(), 3000).ok());
  ASSERT_TRUE(sink->Write(bytes.data() + 3000, 2000).ok());
  ASSERT_TRUE(sink->Close().ok());
  EXPECT_FALSE(stream->completed) << "Close ends writing; Sync finishes the upload";
  ASSERT_TRUE(sink->Sync().ok());
  EXPECT_TRUE(stream->completed);
  EXPECT_FALSE(stream->aborted);
  EXPECT_EQ(stream->bytes, bytes);
  EXPECT_EQ(sink->bytes(), 5000);
  EXPECT_EQ(sink->Checksum(), ChecksumOf(bytes.data(), bytes.size()));
  EXPECT_TRUE(sink->streamed());
  EXPECT_EQ(sink->path(), "daily_ic.parquet");
}

TEST(HashingFileSink, AStreamDroppedBeforeItIsFinishedIsAbortedNeverCompleted) {
  auto stream = std::make_shared<RecordingStream>();
  {
    auto sink = HashingFileSink::Over(stream, "daily_signals.parquet");
    const std::string bytes = Bytes(100);
    ASSERT_TRUE(sink->Write(bytes.data(), 100).ok());
    ASSERT_TRUE(sink->Close().ok());
  }  // a failure elsewhere: the file is never finished
  EXPECT_TRUE(stream->aborted);
  EXPECT_FALSE(stream->completed);
}

TEST(HashingFileSink, AFailedStreamWriteIsKeptForTheStoreToNameAndAbortsOnSync) {
  auto stream = std::make_shared<RecordingStream>();
  auto sink = HashingFileSink::Over(stream, "daily_weights.parquet");
  EXPECT_TRUE(sink->stream_failure().ok());
  stream->fail_writes = true;
  const std::string bytes = Bytes(10);
  const arrow::Status status = sink->Write(bytes.data(), 10);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(sink->stream_failure().message(), "connection reset");
  stream->fail_writes = false;
  // Later writes cannot mend the file: the first failure stays, and the stream is abandoned.
  ASSERT_TRUE(sink->Write(bytes.data(), 10).ok());
  EXPECT_EQ(sink->stream_failure().message(), "connection reset");
  ASSERT_TRUE(sink->Abort().ok());
  EXPECT_TRUE(stream->aborted);
  EXPECT_FALSE(stream->completed);
  EXPECT_TRUE(sink->Sync().ok()) << "an aborted file has nothing left to finish";
  EXPECT_FALSE(stream->completed);
}

}  // namespace
}  // namespace btstore::internal

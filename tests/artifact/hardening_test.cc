// Hostile and careless bundles found by trying to break btstore (issue 10): deep summaries,
// files truncated while read, symbolic links out of the bundle, manifest entries that are
// paths, unknown table names, text that is not UTF-8, the mode of published bundles, and where
// copies of a bundle are staged.

#include <arrow/api.h>
#include <arrow/io/file.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <parquet/arrow/writer.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "artifact/bundle_fixtures.h"
#include "btstore/bundle.h"
#include "btstore/errors.h"
#include "support/expect_error.h"
#include "support/temp_dir.h"

namespace btstore {
namespace {

namespace fs = std::filesystem;
using testing::DescribeDifference;
using testing::ExpectError;
using testing::MakeResult;
using testing::TempDir;
using testing::ReadText;
using testing::WriteText;

class HardeningTest : public ::testing::Test {
 protected:
  fs::path Written(const std::string& name, int days = 20, int symbols = 30) {
    fs::path dir = tmp_.path() / name;
    WriteBundle(MakeResult(days, symbols, 42), dir);
    return dir;
  }

  // Replace summary.json by the writer's one with `key` set to `value` (as JSON text).
  void SetSummaryKey(const fs::path& dir, const std::string& key, const std::string& value) {
    std::string text = ReadText(dir / "summary.json");
    size_t brace = text.rfind('}');
    WriteText(dir / "summary.json", text.substr(0, brace) + ", \"" + key + "\": " + value + "}");
  }

  TempDir tmp_{"btstore-harden"};
};

std::string Nested(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

// Item 1: 100,000 levels crashed the reader (recursion in the JSON library).
TEST_F(HardeningTest, DeeplyNestedSummaryIsInvalidResultNotACrash) {
  fs::path dir = Written("deep");
  SetSummaryKey(dir, "deep", Nested(100000));
  Error e = ExpectError(ErrorCode::kInvalidResult, [&] { ReadBundle(dir); });
  EXPECT_EQ(e.details().at("file"), "summary.json");
  EXPECT_NE(std::string(e.what()).find(std::to_string(kMaxJsonDepth)), std::string::npos);
  ExpectError(ErrorCode::kInvalidResult, [&] { InspectBundle(dir); });
  ExpectError(ErrorCode::kInvalidResult, [&] { ReadSummaryText(dir); });
}

TEST_F(HardeningTest, SummaryNestedUpToTheLimitIsReadAndRewritten) {
  fs::path dir = Written("limit");
  // The document itself is the first level.
  SetSummaryKey(dir, "nested", Nested(kMaxJsonDepth - 1));
  BacktestResult result = ReadBundle(dir);
  EXPECT_EQ(nlohmann::json::parse(result.extra_summary_json)["nested"].dump(),
            Nested(kMaxJsonDepth - 1));
  EXPECT_NO_THROW(WriteBundle(result, tmp_.path() / "rewritten"));
}

TEST_F(HardeningTest, WriterRefusesExtraSummaryNestedBeyondTheLimit) {
  BacktestResult result = MakeResult(2, 2, 1);
  result.extra_summary_json = "{\"deep\": " + Nested(100000) + "}";
  ExpectError(ErrorCode::kInvalidArgument, [&] { WriteBundle(result, tmp_.path() / "deep"); });
  EXPECT_FALSE(fs::exists(tmp_.path() / "deep"));
}

// Item 2: a file truncated by another process while it was read killed the reader (SIGBUS
// through its memory map). A reader in a child process reads the bundle again and again while
// this process truncates a file now and then and writes its tail back; the child must only ever
// get the right tables or InvalidResult, and exit by itself.
TEST_F(HardeningTest, FileTruncatedWhileReadGivesInvalidResultOrTheRightTables) {
  // At least kMinChildren readers, more (up to kMaxChildren) until one has met a truncation:
  // on a busy machine the truncations may miss the few milliseconds a read spends in the file.
  constexpr int kMinChildren = 4;
  constexpr int kMaxChildren = 40;
  constexpr int kReadsPerChild = 12;
  constexpr off_t kTruncatedSize = 1000000;
  // Exit status of a child: these bits for what its reads saw, or kExitOtherError.
  constexpr int kSawRightTables = 1;
  constexpr int kSawInvalidResult = 2;
  constexpr int kExitOtherError = 100;
  fs::path dir = Written("big", 1500, 400);
  const fs::path victim = dir / "daily_signals.parquet";
  const std::string original = ReadText(victim);
  ASSERT_GT(original.size(), static_cast<size_t>(4 * kTruncatedSize));

  std::mt19937 rng(20261201);
  int seen = 0;
  for (int child = 0; child < kMinChildren || (!(seen & kSawInvalidResult) && child < kMaxChildren);
       ++child) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int code = 0;
      for (int i = 0; i < kReadsPerChild; ++i) {
        try {
          ReadBundle(dir);  // checksums verified: a result that comes back is the right one
          code |= kSawRightTables;
        } catch (const InvalidResult&) {
          code |= kSawInvalidResult;
        } catch (...) {
          ::_exit(kExitOtherError);
        }
      }
      ::_exit(code);
    }
    int status = 0;
    while (::waitpid(pid, &status, WNOHANG) == 0) {
      // The file stays whole for a random while, so that reads start on the whole file and
      // the truncation hits them at different points: the pause picks the moment, it does not
      // wait for anything.
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20000));
      ASSERT_EQ(::truncate(victim.c_str(), kTruncatedSize), 0);
      int fd = ::open(victim.c_str(), O_WRONLY | O_CLOEXEC);
      ASSERT_GE(fd, 0);
      ssize_t tail = static_cast<ssize_t>(original.size()) - kTruncatedSize;
      EXPECT_EQ(::pwrite(fd, original.data() + kTruncatedSize, tail, kTruncatedSize), tail);
      ::close(fd);
    }
    ASSERT_TRUE(WIFEXITED(status)) << "the reader was killed by signal " << WTERMSIG(status);
    ASSERT_NE(WEXITSTATUS(status), kExitOtherError) << "the reader failed with another error";
    seen |= WEXITSTATUS(status);
  }
  EXPECT_TRUE(seen & kSawInvalidResult) << "no read overlapped a truncation: nothing was tested";
  // The file is whole again: it reads back as written.
  EXPECT_EQ(
      DescribeDifference(*MakeResult(1500, 400, 42).daily_signals, *ReadBundle(dir).daily_signals),
      "");
}

// Item 2: a whole-file read drops the file's bytes once decoded; decoded arrays must not point
// into them, also for pages stored without compression.
TEST_F(HardeningTest, WholeReadOfUncompressedFilesIsExact) {
  fs::path dir = Written("plain", 300, 200);
  BacktestResult expected = MakeResult(300, 200, 42);
  for (const auto& [name, table] :
       {std::pair{kSignalsTable, expected.daily_signals},
        std::pair{kWeightsTable, expected.daily_weights}, std::pair{kIcTable, expected.daily_ic}}) {
    fs::path path = dir / (std::string(name) + ".parquet");
    fs::remove(path);
    auto out = arrow::io::FileOutputStream::Open(path.string()).ValueOrDie();
    auto properties = parquet::WriterProperties::Builder()
                          .compression(parquet::Compression::UNCOMPRESSED)
                          ->max_row_group_length(1000)
                          ->build();
    ASSERT_TRUE(
        parquet::arrow::WriteTable(*table, arrow::default_memory_pool(), out, 1000, properties)
            .ok());
    ASSERT_TRUE(out->Close().ok());
  }
  nlohmann::json summary = nlohmann::json::parse(ReadText(dir / "summary.json"));
  summary.erase("artifacts");
  WriteText(dir / "summary.json", summary.dump());

  BacktestResult back = ReadBundle(dir);
  EXPECT_EQ(DescribeDifference(*expected.daily_signals, *back.daily_signals), "");
  EXPECT_EQ(DescribeDifference(*expected.daily_weights, *back.daily_weights), "");
  EXPECT_EQ(DescribeDifference(*expected.daily_ic, *back.daily_ic), "");
}

// Item 8: symbolic links inside a bundle were followed out of it.
TEST_F(HardeningTest, SymlinkedSummaryIsInvalidResult) {
  fs::path dir = Written("link-summary");
  fs::path secret = tmp_.path() / "secret.json";
  fs::rename(dir / "summary.json", secret);
  fs::create_symlink(secret, dir / "summary.json");
  Error e = ExpectError(ErrorCode::kInvalidResult, [&] { ReadBundle(dir); });
  EXPECT_EQ(e.details().at("file"), "summary.json");
  EXPECT_NE(std::string(e.what()).find("symbolic link"), std::string::npos) << e.what();
  ExpectError(ErrorCode::kInvalidResult, [&] { ReadSummaryText(dir); });
  ExpectError(ErrorCode::kInvalidResult, [&] { InspectBundle(dir); });
}

TEST_F(HardeningTest, SymlinkedParquetFileIsInvalidResultForWholeAndPartialReads) {
  fs::path dir = Written("link-parquet");
  fs::path outside = tmp_.path() / "outside.parquet";
  fs::rename(dir / "daily_ic.parquet", outside);
  fs::create_symlink(outside, dir / "daily_ic.parquet");
  Error e = ExpectError(ErrorCode::kInvalidResult, [&] { ReadBundle(dir); });
  EXPECT_EQ(e.details().at("file"), "daily_ic.parquet");
  ReadOptions partial;
  partial.from = Date::Parse("2020-01-05");
  ExpectError(ErrorCode::kInvalidResult, [&] { ReadBundle(dir, partial); });

  // An extra table that is a link to a file elsewhere is refused too.
  fs::path other = Written("other");
  fs::rename(outside, dir / "daily_ic.parquet");
  fs::create_symlink(other / "daily_ic.parquet", dir / "extra_ic.parquet");
  e = ExpectError(ErrorCode::kInvalidResult, [&] { ReadBundle(dir); });
  EXPECT_EQ(e.details().at("file"), "extra_ic.parquet");
}

TEST_F(HardeningTest, FifoInPlaceOfABundleFileIsInvalidResultWithoutBlocking) {
  fs::path dir = Written("fifo");
  fs::remove(dir / "summary.json");
  ASSERT_EQ(::mkfifo((dir / "summary.json").c_str(), 0644), 0);
  ExpectError(ErrorCode::kInvalidResult, [&] { ReadBundle(dir); });
}

// Item 9: manifest keys were used as paths.
TEST_F(HardeningTest, ManifestEntriesThatAreNotPlainFileNamesAreInvalidResult) {
  for (const std::string entry :
       {"../../../../etc/passwd", "/etc/shadow", "..", ".hidden", "a/b.parquet", ""}) {
    fs::path dir = Written("manifest");
    nlohmann::json summary = nlohmann::json::parse(ReadText(dir / "summary.json"));
    summary["artifacts"][entry] = {{"rows", 0}, {"bytes", 0}, {"checksum", nullptr}};
    WriteText(dir / "summary.json", summary.dump());
    Error e = ExpectError(ErrorCode::kInvalidResult, [&] { ReadBundle(dir); });
    EXPECT_EQ(e.details().at("field"), "artifacts") << entry;
    fs::remove_all(dir);
  }
}

// Item 19: a table the bundle never had is a bad request; a required one missing is a broken
// bundle.
TEST_F(HardeningTest, UnknownTableNameIsInvalidArgumentAndMissingRequiredTableInvalidResult) {
  fs::path dir = Written("tables");
  ReadOptions options;
  options.tables = {"summary"};
  Error e = ExpectError(ErrorCode::kInvalidArgument, [&] { ReadBundle(dir, options); });
  EXPECT_EQ(e.details().at("table"), "summary");
  EXPECT_NE(std::string(e.what()).find("daily_signals"), std::string::npos) << e.what();

  fs::remove(dir / "daily_ic.parquet");
  options.tables = {"daily_ic"};
  ExpectError(ErrorCode::kInvalidResult, [&] { ReadBundle(dir, options); });
}

// Item 3: text that is not UTF-8 failed inside the summary encoder (json type_error.316) after
// the tables were written; it is refused up front.
TEST_F(HardeningTest, InvalidUtf8InSummaryFieldsIsInvalidArgumentAndWritesNothing) {
  auto expect_refused = [&](BacktestResult result, const std::string& field) {
    fs::path dir = tmp_.path() / "utf8";
    Error e = ExpectError(ErrorCode::kInvalidArgument, [&] { WriteBundle(result, dir); });
    EXPECT_EQ(e.details().at("field"), field);
    EXPECT_FALSE(fs::exists(dir));
  };
  BacktestResult result = MakeResult(2, 2, 1);
  result.alpha_name = "bad\xff\xfe";
  expect_refused(result, "alpha_name");
  result = MakeResult(2, 2, 1);
  result.snapshot_id = "snap\xc3";
  expect_refused(result, "snapshot_id");
  result = MakeResult(2, 2, 1);
  result.dataset_version_ids["prices"] = "v\xff";
  expect_refused(result, "dataset_version_ids");
  fs::path staging = tmp_.path() / ".staging";
  EXPECT_TRUE(!fs::exists(staging) || fs::is_empty(staging));
}

// Item 11: published bundles were mode 0700 (mkdtemp), unreadable by other users.
TEST_F(HardeningTest, PublishedBundleDirectoriesFollowTheUmask) {
  for (mode_t mask : {mode_t{022}, mode_t{027}}) {
    mode_t previous = ::umask(mask);
    fs::path dir = Written("mode-" + std::to_string(mask));
    ::umask(previous);
    struct stat info {};
    ASSERT_EQ(::stat(dir.c_str(), &info), 0);
    EXPECT_EQ(info.st_mode & 07777, 0777 & ~mask) << "umask " << std::oct << mask;
    ASSERT_EQ(::stat((dir / "summary.json").c_str(), &info), 0);
    EXPECT_EQ(info.st_mode & 07777, 0644 & ~mask) << "umask " << std::oct << mask;
  }
}

std::vector<std::string> EntryNames(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// Item 14: `result --export DIR` and `bundle rewrite SRC DST` staged in DST's parent and left
// `.staging` there. They stage in a hidden directory next to DST that goes afterwards.
TEST_F(HardeningTest, WriteBundleLeavesNothingButTheBundleInTheParent) {
  const fs::path out = tmp_.path() / "out";
  fs::create_directories(out);
  WriteBundle(MakeResult(3, 2, 1), out / "copy");
  WriteBundle(MakeResult(3, 2, 1), out / "trailing/");
  EXPECT_EQ(EntryNames(out), (std::vector<std::string>{"copy", "trailing"}));
  // A refused write leaves nothing either.
  EXPECT_THROW(WriteBundle(MakeResult(3, 2, 1), out / "copy"), InvalidTransition);
  EXPECT_EQ(EntryNames(out), (std::vector<std::string>{"copy", "trailing"}));
}

// Item 14: `bundle rewrite base base/inner` wrote into the source bundle. A destination that is
// the source or lies inside it (also through a symlink or `..`) is InvalidArgument, and
// nothing is written anywhere.
TEST_F(HardeningTest, CopyIntoItsOwnSourceIsInvalidArgumentAndWritesNothing) {
  const fs::path base = Written("base", 3, 2);
  const BacktestResult result = ReadBundle(base);
  const std::vector<std::string> before = EntryNames(base);
  fs::create_symlink(base, tmp_.path() / "alias");
  for (const fs::path& target :
       {base, base / "inner", base / "inner" / "deeper", tmp_.path() / "alias" / "inner",
        tmp_.path() / "elsewhere" / ".." / "base" / "inner", fs::path(base.string() + "/")}) {
    ExpectError(ErrorCode::kInvalidArgument, [&] { WriteBundleCopy(result, base, target); });
  }
  EXPECT_EQ(EntryNames(base), before);
  EXPECT_EQ(EntryNames(tmp_.path()), (std::vector<std::string>{"alias", "base"}));
  // A sibling whose name merely starts with the source's is outside it.
  WriteBundleCopy(result, base, tmp_.path() / "base-2");
  EXPECT_EQ(EntryNames(tmp_.path()), (std::vector<std::string>{"alias", "base", "base-2"}));
}

}  // namespace
}  // namespace btstore

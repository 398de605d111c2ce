// The order in which btstore's durable writes reach the disk, read from the real system calls:
// durability_child performs one write (a bundle's publication, a checkpoint, a retention batch)
// under `strace -f -y`, and the test checks that data is flushed before the rename that makes it
// visible, and the parent directory after it. A reordering of those calls leaves every other test
// green (only a power cut would tell), so it is checked here directly.

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "btstore/catalog.h"
#include "btstore/engine.h"
#include "btstore/lifecycle.h"
#include "btstore/service.h"
#include "support/temp_dir.h"

namespace btstore::testing {
namespace {

namespace fs = std::filesystem;

constexpr const char* kStrace = "/usr/bin/strace";
constexpr const char* kTracedCalls =
    "openat,write,pwrite64,writev,fsync,fdatasync,rename,renameat,renameat2,unlink,unlinkat,"
    "rmdir,mkdir,mkdirat";

bool InCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

// One system call as strace printed it. `start` and `end` are the positions of the lines where
// it began and returned (different when another thread's calls came in between).
struct Call {
  std::string name;
  std::vector<std::string> paths;  // path arguments, and for descriptors the paths of `-y`
  long long result = -1;
  size_t start = 0;
  size_t end = 0;
  std::string text;
};

// Parse `strace -f -y -s 0` output: "PID name(args) = result", with calls split across lines as
// "PID name(args <unfinished ...>" and "PID <... name resumed>...) = result".
std::vector<Call> ParseTrace(const fs::path& file) {
  static const std::regex kQuoted("\"([^\"]+)\"");
  static const std::regex kDescriptorPath("[0-9]+<([^>]+)>");
  std::ifstream in(file);
  std::vector<Call> calls;
  std::map<std::string, std::pair<size_t, std::string>> unfinished;  // by pid
  std::string line;
  for (size_t index = 0; std::getline(in, line); ++index) {
    const size_t space = line.find(' ');
    if (space == std::string::npos) continue;
    const std::string pid = line.substr(0, space);
    // strace pads the pid column with spaces.
    std::string rest = line.substr(line.find_first_not_of(' ', space));
    size_t start = index;
    if (rest.starts_with("<... ")) {
      auto it = unfinished.find(pid);
      if (it == unfinished.end()) continue;
      start = it->second.first;
      rest = it->second.second + rest.substr(rest.find('>') + 1);
      unfinished.erase(it);
    } else if (const size_t cut = rest.find(" <unfinished ...>"); cut != std::string::npos) {
      unfinished[pid] = {index, rest.substr(0, cut)};
      continue;
    }
    // strace pads short calls with spaces before " = result".
    const size_t paren = rest.find('(');
    const size_t equals = rest.rfind(" = ");
    const size_t close = equals == std::string::npos ? equals : rest.rfind(')', equals);
    if (paren == std::string::npos || close == std::string::npos || close < paren) continue;
    Call call;
    call.name = rest.substr(0, paren);
    call.result = std::atoll(rest.c_str() + equals + 3);
    call.start = start;
    call.end = index;
    call.text = rest;
    const std::string args = rest.substr(paren + 1, close - paren - 1);
    // Descriptor paths and quoted strings, in the order they appear.
    std::vector<std::pair<size_t, std::string>> found;
    for (const std::regex* pattern : {&kQuoted, &kDescriptorPath}) {
      for (auto it = std::sregex_iterator(args.begin(), args.end(), *pattern);
           it != std::sregex_iterator(); ++it) {
        found.emplace_back(it->position(), (*it)[1].str());
      }
    }
    std::sort(found.begin(), found.end());
    for (auto& [position, path] : found) call.paths.push_back(path);
    calls.push_back(std::move(call));
  }
  return calls;
}

class DurabilityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access(kStrace, X_OK) != 0 && !InCi()) {
      GTEST_SKIP() << kStrace << " is missing (scripts/setup.sh installs it)";
    }
    root_ = dir_.path() / "results";
    fs::create_directories(root_);
  }

  // Run durability_child with `args` under strace; return its successful calls on paths under
  // the test's directory.
  std::vector<Call> Trace(const std::string& args) {
    const fs::path trace = dir_.path() / "trace.txt";
    // LeakSanitizer cannot run under ptrace: in a sanitizer build the traced child checks
    // everything else but leaks (which the rest of the suite checks).
    const std::string command = "ASAN_OPTIONS=\"${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0\" " +
                                std::string(kStrace) + " -f -y -qq -s 0 -e trace=" + kTracedCalls +
                                " -o " + trace.string() + " " + BTSTORE_DURABILITY_CHILD + " " +
                                args + " > " + (dir_.path() / "child.out").string() + " 2>&1";
    const int status = std::system(command.c_str());
    EXPECT_EQ(status, 0) << command << "\n" << ReadFile(dir_.path() / "child.out");
    std::vector<Call> calls;
    for (Call& call : ParseTrace(trace)) {
      if (call.result < 0) continue;
      const bool ours = std::any_of(call.paths.begin(), call.paths.end(), [&](const auto& p) {
        return p.starts_with(dir_.path().string() + "/");
      });
      if (ours) calls.push_back(std::move(call));
    }
    for (const Call& call : calls) printed_ += call.text + "\n";
    return calls;
  }

  static std::string ReadFile(const fs::path& file) {
    std::ifstream in(file);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

  // The calls named `name` whose path argument `arg` is `path`.
  static std::vector<const Call*> Find(const std::vector<Call>& calls, const std::string& name,
                                       const std::string& path, size_t arg = 0) {
    std::vector<const Call*> found;
    for (const Call& call : calls) {
      if (call.name == name && call.paths.size() > arg && call.paths[arg] == path) {
        found.push_back(&call);
      }
    }
    return found;
  }

  // The one call named `name` on `path`; fails the test otherwise.
  const Call* One(const std::vector<Call>& calls, const std::string& name, const std::string& path,
                  size_t arg = 0) {
    std::vector<const Call*> found = Find(calls, name, path, arg);
    EXPECT_EQ(found.size(), 1u) << name << " of " << path << " in\n" << printed_;
    return found.size() == 1 ? found[0] : nullptr;
  }

  // Every write to `file` returned before `flush` began.
  void ExpectWrittenBefore(const std::vector<Call>& calls, const std::string& file,
                           const Call& flush) {
    for (const std::string name : {"write", "pwrite64", "writev"}) {
      for (const Call* write : Find(calls, name, file)) {
        EXPECT_LT(write->end, flush.start) << file << " written after its flush in\n" << printed_;
      }
    }
  }

  TempDir dir_{"btstore-durability"};
  fs::path root_;
  std::string printed_;  // the calls of the last trace, for failure messages
};

TEST_F(DurabilityTest, APublishedBundlesFilesAndDirectoryAreFlushedBeforeTheRenameThenItsRoot) {
  const std::vector<Call> calls = Trace("bundle " + root_.string() + " job-1");
  const std::string final_dir = (root_ / "job-1").string();
  std::vector<const Call*> renames = Find(calls, "renameat2", final_dir, 1);
  ASSERT_EQ(renames.size(), 1u) << printed_;
  const Call& publish = *renames[0];
  const std::string staged = publish.paths[0];
  ASSERT_TRUE(staged.starts_with((root_ / ".staging").string() + "/")) << staged;

  // Every file written into the staging directory, its data flushed before the rename. The
  // files' flushes and the directory's run side by side (each file's as soon as it is written):
  // only the rename has to wait for all of them.
  const Call* staged_flush = One(calls, "fsync", staged);
  ASSERT_NE(staged_flush, nullptr);
  std::vector<std::string> files;
  for (const Call& call : calls) {
    if (call.name == "openat" && call.paths.at(0).starts_with(staged + "/")) {
      files.push_back(call.paths[0]);
    }
  }
  EXPECT_GE(files.size(), 4u) << printed_;  // three tables and summary.json
  for (const std::string& file : files) {
    SCOPED_TRACE(file);
    const Call* flush = One(calls, "fsync", file);
    ASSERT_NE(flush, nullptr);
    ExpectWrittenBefore(calls, file, *flush);
    EXPECT_LT(flush->end, publish.start) << printed_;
  }
  // The directory too, then the rename, then the root.
  EXPECT_LT(staged_flush->end, publish.start) << printed_;
  std::vector<const Call*> root_flushes = Find(calls, "fsync", root_.string());
  ASSERT_FALSE(root_flushes.empty()) << printed_;
  EXPECT_GT(root_flushes.back()->start, publish.end) << printed_;
}

TEST_F(DurabilityTest, ACheckpointIsFlushedThenRenamedThenItsDirectoryIsFlushed) {
  const std::vector<Call> calls = Trace("checkpoint " + root_.string() + " job-1");
  const fs::path dir = root_ / ".checkpoints" / "job-1";
  const std::string final_file = (dir / "attempt-1.ckpt").string();
  std::vector<const Call*> renames = Find(calls, "rename", final_file, 1);
  ASSERT_EQ(renames.size(), 1u) << printed_;
  const Call& rename = *renames[0];
  const std::string temporary = rename.paths[0];
  const Call* flush = One(calls, "fsync", temporary);
  ASSERT_NE(flush, nullptr);
  ExpectWrittenBefore(calls, temporary, *flush);
  EXPECT_FALSE(Find(calls, "write", temporary).empty()) << printed_;
  EXPECT_LT(flush->end, rename.start) << printed_;
  std::vector<const Call*> dir_flushes = Find(calls, "fsync", dir.string());
  ASSERT_FALSE(dir_flushes.empty()) << printed_;
  EXPECT_GT(dir_flushes.back()->start, rename.end) << printed_;
}

TEST_F(DurabilityTest, RetentionMovesBundlesAwayAndFlushesTheRootBeforeDeletingTheRows) {
  // An expired completed job, made in this process through the catalog's real moves.
  const std::string url = "sqlite:" + (dir_.path() / "catalog.db").string();
  {
    std::unique_ptr<Service> service = Service::Open(url, root_.string());
    const Timestamp old = Now() - std::chrono::days(200);
    JobSpec spec;
    spec.job_id = "old-1";
    spec.alpha_name = "momentum";
    spec.start_date = Date::Parse("2024-01-01");
    spec.end_date = Date::Parse("2024-01-31");
    spec.weight_method = "equal";
    spec.config_json = R"({"engine":"synthetic","symbols":5})";
    spec.created_by = "alice";
    service->catalog().Submit(spec, old);
    ASSERT_EQ(service->catalog().ClaimJobs("w", 1, std::chrono::seconds(30), old).size(), 1u);
    const BacktestResult result = GenerateSyntheticResult(spec);
    CompletionRecord completion;
    completion.result_path =
        service->store().Publish(service->store().Stage(result, {}), spec.job_id);
    completion.snapshot_id = result.snapshot_id;
    completion.dataset_version_ids_json = R"({"none":"0"})";
    ASSERT_TRUE(service->catalog().Complete("old-1", 1, completion, old).applied);
  }
  const std::vector<Call> calls = Trace("retention " + root_.string() + " " + url);
  EXPECT_FALSE(fs::exists(root_ / "old-1"));

  // The bundle leaves the root by a rename into the trash, flushed in the root before any
  // write of the catalog after it (the DELETE of the row).
  std::vector<const Call*> moves = Find(calls, "rename", (root_ / "old-1").string(), 0);
  ASSERT_EQ(moves.size(), 1u) << printed_;
  const Call& move = *moves[0];
  EXPECT_TRUE(move.paths.at(1).starts_with((root_ / ".trash").string() + "/")) << printed_;
  const Call* root_flush = nullptr;
  for (const Call* flush : Find(calls, "fsync", root_.string())) {
    if (flush->start > move.end) {
      root_flush = flush;
      break;
    }
  }
  ASSERT_NE(root_flush, nullptr) << "the root is not flushed after the move in\n" << printed_;
  const std::string catalog_file = (dir_.path() / "catalog.db").string();
  std::optional<size_t> delete_write;
  for (const Call& call : calls) {
    const bool catalog_write = (call.name == "write" || call.name == "pwrite64") &&
                               !call.paths.empty() && call.paths[0].starts_with(catalog_file);
    if (catalog_write && call.start > move.end) {
      delete_write = call.start;
      break;
    }
  }
  ASSERT_TRUE(delete_write) << "no catalog write after the move in\n" << printed_;
  EXPECT_GT(*delete_write, root_flush->end) << printed_;
}

}  // namespace
}  // namespace btstore::testing

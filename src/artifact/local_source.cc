// A local bundle directory as a source for the reader: descriptors opened without following
// symbolic links, whole files read with pread into private memory (see io_internal.h).

#include <arrow/io/file.h>

#include <system_error>

#include "artifact/source_internal.h"
#include "artifact/summary_internal.h"
#include "btstore/errors.h"

namespace btstore::internal {

namespace {

class LocalBundleSource : public BundleSource {
 public:
  explicit LocalBundleSource(fs::path dir) : dir_(std::move(dir)), where_(dir_.string()) {}

  const std::string& where() const override { return where_; }
  std::string PathOf(const std::string& name) const override { return (dir_ / name).string(); }

  bool Exists() override {
    std::error_code ec;
    return fs::is_directory(dir_, ec);
  }

  std::vector<std::string> List() override {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir_, ec)) {
      names.push_back(entry.path().filename().string());
    }
    if (ec) {
      throw InvalidResult("cannot list " + where_ + ": " + ec.message(), {{"path", where_}});
    }
    return names;
  }

  std::optional<SourceFile> Open(const std::string& name) override {
    std::optional<BundleFile> opened = OpenBundleFile(dir_, name);
    if (!opened) return std::nullopt;
    auto file =
        Unwrap(arrow::io::ReadableFile::Open(opened->fd.Release()), FailureKind::kRead, name);
    return SourceFile{std::move(file), opened->size};
  }

  std::optional<WholeFile> ReadWhole(const std::string& name) override {
    std::optional<BundleFile> opened = OpenBundleFile(dir_, name);
    if (!opened) return std::nullopt;
    return ReadWholeFile(opened->fd.get(), opened->size, name);
  }

  std::optional<std::string> ReadJson(
      const std::string& name, const std::function<void(const std::string&)>& unreadable) override {
    return ReadJsonFile(dir_, name, unreadable);
  }

 private:
  fs::path dir_;
  std::string where_;
};

}  // namespace

std::unique_ptr<BundleSource> LocalSource(const std::filesystem::path& dir) {
  return std::make_unique<LocalBundleSource>(dir);
}

}  // namespace btstore::internal

#pragma once
/// A temporary directory for one test, removed with everything in it when the object dies.

#include <filesystem>
#include <string>
#include <string_view>

namespace btstore::testing {

/// Own a fresh, uniquely named directory under /tmp (created by mkdtemp, mode 0700).
class TempDir {
 public:
  /// Create the directory, named "/tmp/<prefix>-XXXXXX". Throws std::runtime_error on failure.
  explicit TempDir(std::string_view prefix = "btstore-test");
  /// Remove the directory and its contents; errors are ignored (a test must not fail on it).
  ~TempDir();

  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  /// Take over the directory; the moved-from object owns nothing and removes nothing.
  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&& other) noexcept;

  /// The absolute path of the directory.
  const std::filesystem::path& path() const { return path_; }

 private:
  void Remove() noexcept;

  std::filesystem::path path_;
};

/// Return the bytes of the file at `path` ("" when it cannot be read).
std::string ReadText(const std::filesystem::path& path);

/// Replace the file at `path` with `text` (created when missing).
void WriteText(const std::filesystem::path& path, std::string_view text);

}  // namespace btstore::testing

#include "fuzz/fuzz_support.h"

#include <stdlib.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <typeinfo>
#include <vector>

namespace btstore::fuzz {

namespace {

// Owns the scratch directory; removes it when destroyed.
class Scratch {
 public:
  Scratch() {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern =
        std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/btstore-fuzz-XXXXXX";
    std::vector<char> buffer(pattern.begin(), pattern.end());
    buffer.push_back('\0');
    if (mkdtemp(buffer.data()) == nullptr) {
      throw std::runtime_error("fuzz harness: mkdtemp " + pattern + ": " + std::strerror(errno));
    }
    path_ = buffer.data();
  }
  ~Scratch() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace

const std::filesystem::path& ScratchDir() {
  // A function-local static: its destructor removes the directory when the process exits
  // normally (libFuzzer ends a timed run with exit()).
  static const Scratch scratch;
  return scratch.path();
}

void Finding(const std::string& what) {
  std::fprintf(stderr, "FUZZ FINDING: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

bool Expect(std::string_view what, std::initializer_list<ErrorCode> expected,
            const std::function<void()>& work) {
  try {
    work();
    return true;
  } catch (const Error& e) {
    for (ErrorCode code : expected) {
      if (e.code() == code) return false;
    }
    Finding(std::string(what) + " threw " + std::string(ErrorCodeName(e.code())) + ": " + e.what());
  } catch (const std::exception& e) {
    // Catching everything is the point of a harness: whatever escapes is the finding.
    Finding(std::string(what) + " threw a non-btstore exception " + typeid(e).name() + ": " +
            e.what());
  }
}

std::vector<std::string_view> SplitFields(std::string_view data, size_t max_fields) {
  std::vector<std::string_view> fields;
  while (!data.empty() && fields.size() + 1 < max_fields) {
    size_t end = data.find('\n');
    if (end == std::string_view::npos) break;
    fields.push_back(data.substr(0, end));
    data.remove_prefix(end + 1);
  }
  if (!data.empty() && fields.size() < max_fields) fields.push_back(data);
  return fields;
}

void WriteFile(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) throw std::runtime_error("fuzz harness: cannot write " + path.string());
}

}  // namespace btstore::fuzz

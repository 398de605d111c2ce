#pragma once
/// Helpers shared by the fuzz targets (tests/fuzz/*_fuzz.cc, see docs/TESTING.md): a private
/// directory for the files a target writes, how a target reports a finding, and how it splits
/// its input into fields.

#include <filesystem>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "btstore/errors.h"

namespace btstore::fuzz {

/// Return a directory private to this process (under $TMPDIR, default /tmp), created on first
/// use and removed with its contents at exit.
const std::filesystem::path& ScratchDir();

/// Report a finding: print `what` to stderr and abort, so that libFuzzer keeps the input as a
/// crash and a corpus replay fails on it.
[[noreturn]] void Finding(const std::string& what);

/// Run `work`. Return true when it returns normally, false when it throws a btstore::Error whose
/// code is one of `expected`. Any other btstore::Error, and any other exception, is a finding
/// that names `what`.
bool Expect(std::string_view what, std::initializer_list<ErrorCode> expected,
            const std::function<void()>& work);

/// Split `data` at '\n' into at most `max_fields` fields; the last field holds the rest of the
/// input, newlines included. An input with fewer lines gives fewer fields.
std::vector<std::string_view> SplitFields(std::string_view data, size_t max_fields);

/// Create or replace the file at `path` with `bytes`. Throws std::runtime_error (the harness's
/// own environment failed, not the code under test).
void WriteFile(const std::filesystem::path& path, std::string_view bytes);

}  // namespace btstore::fuzz

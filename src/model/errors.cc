#include "btstore/errors.h"

#include <array>

namespace btstore {
namespace {

struct CodeInfo {
  std::string_view name;
  int exit_status;
  int http_status;
};

// The one table that maps codes to the contract's names, exit statuses and HTTP statuses.
constexpr std::array<CodeInfo, 10> kCodes = {{
    {"InvalidArgument", 2, 400},
    {"JobNotFound", 3, 404},
    {"ResultPathMissing", 4, 409},
    {"InvalidTransition", 4, 409},
    {"MissingReproducibilityMetadata", 6, 422},
    {"InvalidResult", 6, 422},
    {"CatalogUnavailable", 5, 503},
    {"Unauthenticated", 7, 401},
    {"PermissionDenied", 7, 403},
    {"Internal", 1, 500},
}};

const CodeInfo& Info(ErrorCode code) { return kCodes.at(static_cast<size_t>(code)); }

constexpr std::string_view kRedacted = "***";

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// Where the URL that starts after "://" at `begin` ends: at white space, a quote or an angle
// bracket, as when a message quotes it.
size_t UrlEnd(std::string_view text, size_t begin) {
  size_t end = begin;
  while (end < text.size() && !IsSpace(text[end]) && text[end] != '"' && text[end] != '\'' &&
         text[end] != '<' && text[end] != '>') {
    ++end;
  }
  return end;
}

// Where the value of a `password=` key that starts at `begin` ends. A quoted value ends at its
// closing quote (backslash escapes, as libpq reads them); a value in a URL query at '&' or '#';
// any other at white space. A value that runs on is redacted to the end, never shown.
size_t PasswordValueEnd(std::string_view text, size_t begin, bool in_query) {
  if (begin < text.size() && (text[begin] == '\'' || text[begin] == '"')) {
    char quote = text[begin];
    for (size_t i = begin + 1; i < text.size(); ++i) {
      if (text[i] == '\\') {
        ++i;
      } else if (text[i] == quote) {
        return i + 1;
      }
    }
    return text.size();
  }
  size_t end = begin;
  while (end < text.size() && !IsSpace(text[end]) &&
         !(in_query && (text[end] == '&' || text[end] == '#'))) {
    ++end;
  }
  return end;
}

bool MatchesPasswordKey(std::string_view text, size_t i) {
  constexpr std::string_view kKey = "password";
  if (text.size() - i < kKey.size()) return false;
  for (size_t k = 0; k < kKey.size(); ++k) {
    char c = text[i + k];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != kKey[k]) return false;
  }
  return true;
}

}  // namespace

std::string RedactCredentials(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (text.compare(i, 3, "://") == 0) {
      // scheme://user:password@host...: the userinfo ends at the last '@' of the URL (a
      // careless password may hold '/' or '@' unescaped).
      size_t begin = i + 3;
      size_t end = UrlEnd(text, begin);
      size_t at = text.substr(begin, end - begin).rfind('@');
      size_t colon = at == std::string_view::npos ? at : text.substr(begin, at).find(':');
      if (colon != std::string_view::npos) {
        out.append(text.substr(i, 3 + colon + 1));
        out.append(kRedacted);
        i = begin + at;
        continue;
      }
      out.append(text.substr(i, 3));
      i = begin;
      continue;
    }
    if (MatchesPasswordKey(text, i)) {
      size_t pos = i + 8;
      while (pos < text.size() && IsSpace(text[pos])) ++pos;
      if (pos < text.size() && text[pos] == '=') {
        ++pos;
        while (pos < text.size() && IsSpace(text[pos])) ++pos;
        bool in_query = i > 0 && (text[i - 1] == '?' || text[i - 1] == '&');
        out.append(text.substr(i, pos - i));
        out.append(kRedacted);
        i = PasswordValueEnd(text, pos, in_query);
        continue;
      }
    }
    out += text[i++];
  }
  return out;
}

std::string_view ErrorCodeName(ErrorCode code) { return Info(code).name; }
int ExitStatus(ErrorCode code) { return Info(code).exit_status; }
int HttpStatus(ErrorCode code) { return Info(code).http_status; }

Error::Error(ErrorCode code, const std::string& message, ErrorDetails details)
    : std::runtime_error(message), code_(code), details_(std::move(details)) {}

JobNotFound::JobNotFound(const std::string& job_id)
    : Error(ErrorCode::kJobNotFound,
            "no job with id '" + job_id + "' (check the id with `btstore list`)",
            {{"job_id", job_id}}) {}

}  // namespace btstore

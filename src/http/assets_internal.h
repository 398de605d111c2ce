#pragma once
// The page's files, embedded at build time (EmbedAssets.cmake).

#include <functional>
#include <map>
#include <string>
#include <string_view>

namespace btstore::http::internal {

/// Return every embedded file by its lowercase name ("index.html", "chart.min.js").
const std::map<std::string, std::string_view, std::less<>>& Assets();

}  // namespace btstore::http::internal

// Output helpers shared by the command groups.

#include <cmath>
#include <iostream>

#include "btstore/errors.h"
#include "cli/cli.h"

namespace btstore::cli {

std::unique_ptr<Catalog> Context::OpenCatalog() const {
  std::unique_ptr<Catalog> catalog = Catalog::Open(catalog_url);
  catalog->Migrate();
  return catalog;
}

void PrintJson(const nlohmann::json& doc) {
  std::cout << doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
}

nlohmann::json MetricJson(double value) {
  return std::isfinite(value) ? nlohmann::json(value) : nlohmann::json(nullptr);
}

ProgressBar::ProgressBar(bool enabled, std::string label, int64_t total)
    : enabled_(enabled), label_(std::move(label)), total_(total) {}

ProgressBar::~ProgressBar() { Finish(); }

void ProgressBar::Update(int64_t done) {
  if (!enabled_ || total_ <= 0) return;
  constexpr int kWidth = 30;
  int filled = static_cast<int>(kWidth * std::min<int64_t>(done, total_) / total_);
  if (filled == last_width_) return;
  last_width_ = filled;
  std::cout << "\r" << label_ << " [" << std::string(filled, '#')
            << std::string(kWidth - filled, '.') << "] " << done << "/" << total_ << std::flush;
}

void ProgressBar::Finish() {
  if (enabled_ && last_width_ >= 0) std::cout << "\n" << std::flush;
  enabled_ = false;
}

}  // namespace btstore::cli

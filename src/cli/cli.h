#pragma once
// Shared pieces of the `btstore` command line: the global options every command sees, output
// helpers (people's text or one JSON document), and the registration functions of each command
// group. main.cc parses, runs the chosen command's action, and maps errors to exit codes.

#include <CLI/CLI.hpp>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "btstore/catalog.h"
#include "btstore/model.h"

namespace btstore::cli {

/// Global options, resolved from flags, then environment, then defaults.
struct Context {
  std::string catalog_url;               ///< --catalog / BTSTORE_CATALOG
  std::filesystem::path artifact_root;   ///< --artifact-root / BTSTORE_ARTIFACT_ROOT
  bool json = false;                     ///< --json
  bool stdout_is_terminal = false;

  /// Progress bars and colours only for people at a terminal.
  bool interactive() const { return stdout_is_terminal && !json; }
  /// Open the catalog and bring its schema up to date (a no-op when it is).
  std::unique_ptr<Catalog> OpenCatalog() const;
};

/// A command's work, run after parsing; returns the exit status (0 on success). Errors are
/// thrown as btstore::Error and mapped by main.
using Action = std::function<int(Context&)>;

/// Each command group adds its subcommands to `app`; the chosen one stores its work in `action`.
void RegisterBundleCommands(CLI::App& app, Action& action);
void RegisterJobCommands(CLI::App& app, Action& action);     // migrate submit list show result
                                                             // cancel resume pin
void RegisterWorkerCommands(CLI::App& app, Action& action);  // worker
void RegisterMaintenanceCommands(CLI::App& app, Action& action);  // cleanup verify
void RegisterDemoCommand(CLI::App& app, Action& action);     // demo

/// Print one JSON document on stdout (the only thing on stdout in --json mode).
void PrintJson(const nlohmann::json& doc);

/// A metric as JSON: a number, or null when not finite.
nlohmann::json MetricJson(double value);

/// A progress bar on stderr-free stdout for people; does nothing unless `enabled`.
class ProgressBar {
 public:
  ProgressBar(bool enabled, std::string label, int64_t total);
  ~ProgressBar();
  void Update(int64_t done);
  void Finish();

 private:
  bool enabled_;
  std::string label_;
  int64_t total_;
  int last_width_ = -1;
};

}  // namespace btstore::cli

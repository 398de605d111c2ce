#pragma once
// Shared pieces of the `btstore` command line: the global options every command sees, output
// helpers (people's text or one JSON document), and the registration functions of each command
// group. main.cc parses, runs the chosen command's action, and maps errors to exit codes.

#include <CLI/CLI.hpp>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "btstore/bundle.h"
#include "btstore/model.h"
#include "btstore/service.h"

namespace btstore::cli {

/// Global options, resolved from flags, then environment, then defaults.
struct Context {
  std::string catalog_url;              ///< --catalog / BTSTORE_CATALOG
  std::filesystem::path artifact_root;  ///< --artifact-root / BTSTORE_ARTIFACT_ROOT
  bool json = false;                    ///< --json
  bool stdout_is_terminal = false;

  /// Progress bars and colours only for people at a terminal.
  bool interactive() const { return stdout_is_terminal && !json; }
  /// Open the service over the catalog and the artifact root, bringing the catalog's schema up
  /// to date (a no-op when it is). Throws what Service::Open throws.
  std::unique_ptr<Service> OpenService() const;
};

/// A command's work, run after parsing; returns the exit status (0 on success). Errors are
/// thrown as btstore::Error and mapped by main.
using Action = std::function<int(Context&)>;

/// Each command group adds its subcommands to `app`; the chosen one stores its work in `action`.
void RegisterBundleCommands(CLI::App& app, Action& action);
void RegisterJobCommands(CLI::App& app, Action& action);          // migrate submit import list show
                                                                  // result cancel resume pin
void RegisterWorkerCommands(CLI::App& app, Action& action);       // worker
void RegisterLogsCommand(CLI::App& app, Action& action);          // logs
void RegisterMaintenanceCommands(CLI::App& app, Action& action);  // cleanup verify
void RegisterDemoCommand(CLI::App& app, Action& action);          // demo
void RegisterServeCommands(CLI::App& app, Action& action);        // serve token

/// Throw InvalidResult naming the first file of `result.unavailable`, if any: a copy of a result
/// (`result --export`, `bundle rewrite`) must not silently lose an artifact that could not be
/// read. `what` says what was refused ("export the result").
void RequireNothingUnavailable(const BacktestResult& result, std::string_view what);

/// Print one JSON document on stdout (the only thing on stdout in --json mode).
void PrintJson(const nlohmann::json& doc);

/// Return `text` safe to print for people on a terminal: control characters (C0, DEL, C1)
/// become escapes ("\n", "\t", "\x1b", "\u009b") and bytes that are not UTF-8 become "\xff",
/// so that data (an alpha name, a snapshot id, an error message) can neither move the cursor nor
/// change colours. JSON output needs none of this: its serializer escapes strings.
std::string Printable(std::string_view text);

/// Check the path of a directory that a command is to create (`what` names it in the message,
/// e.g. "--export" or "DST"): given, and nothing there yet. Throws InvalidArgument, so that a
/// user's slip is exit status 2, not the library's InvalidTransition for an existing bundle.
void RequireNewDirectory(const std::string& dir, const std::string& what);

/// Format a time for people: "2026-11-25 14:07:09 UTC".
std::string HumanTime(Timestamp ts);
/// Format a metric for people: 4 decimals, or "-" when not finite.
std::string HumanMetric(double value);

/// Print rows as a table with aligned columns under `headers`; cells go through Printable.
void PrintTable(std::ostream& out, const std::vector<std::string>& headers,
                const std::vector<std::vector<std::string>>& rows);

/// Add the "Examples:" footer shown by `--help` to a command.
void SetExamples(CLI::App* command, const std::string& examples);

/// A progress bar on stderr-free stdout for people; does nothing unless `enabled`.
class ProgressBar {
 public:
  /// Draw `label [####....] done/total`; with `total` <= 0 (unknown) draw `label: done`.
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

// The `btstore` command line: global options, dispatch to the command groups, and the single
// place where errors become messages and exit statuses (contract section 6).

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "btstore/errors.h"
#include "cli/cli.h"

namespace btstore::cli {
namespace {

constexpr const char* kDefaultCatalog = "sqlite:btstore-data/catalog.db";
constexpr const char* kDefaultArtifactRoot = "btstore-data/results";

std::string FromEnv(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value && *value ? value : fallback;
}

// Every error leaves through here: passwords of connection strings are hidden whichever layer
// put them in the message, and control characters cannot reach a terminal.
void ReportError(const Context& ctx, ErrorCode code, const std::string& message,
                 const ErrorDetails& details) {
  if (ctx.json) {
    nlohmann::json detail_json = nlohmann::json::object();
    for (const auto& [key, value] : details) detail_json[key] = RedactCredentials(value);
    PrintJson({{"error",
                {{"code", ErrorCodeName(code)},
                 {"message", RedactCredentials(message)},
                 {"details", detail_json}}}});
  } else {
    std::cerr << "error: " << ErrorCodeName(code) << ": " << Printable(RedactCredentials(message))
              << "\n";
    for (const auto& [key, value] : details) {
      std::cerr << "  " << key << ": " << Printable(RedactCredentials(value)) << "\n";
    }
  }
}

int Main(int argc, char** argv) {
  CLI::App app{"btstore: storage for alpha backtest results (catalog, Parquet bundles, jobs)",
               "btstore"};
  app.set_version_flag("--version", std::string("btstore ") + BTSTORE_VERSION);
  app.require_subcommand(1);
  app.fallthrough();

  Context ctx;
  std::string catalog, artifact_root;
  app.add_option("--catalog", catalog,
                 "catalog URL: postgresql://... (any libpq string) or sqlite:PATH\n"
                 "[env BTSTORE_CATALOG, default " + std::string(kDefaultCatalog) + "]");
  app.add_option("--artifact-root", artifact_root,
                 "directory of result bundles [env BTSTORE_ARTIFACT_ROOT, default " +
                     std::string(kDefaultArtifactRoot) + "]");
  app.add_flag("--json", ctx.json, "print one JSON document on stdout (errors too)");

  Action action;
  RegisterJobCommands(app, action);
  RegisterWorkerCommands(app, action);
  RegisterMaintenanceCommands(app, action);
  RegisterBundleCommands(app, action);
  RegisterDemoCommand(app, action);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    ReportError(ctx, ErrorCode::kInvalidArgument, e.what(), {});
    if (!ctx.json) std::cerr << "Run with --help for usage.\n";
    return ExitStatus(ErrorCode::kInvalidArgument);
  }

  ctx.catalog_url = catalog.empty() ? FromEnv("BTSTORE_CATALOG", kDefaultCatalog) : catalog;
  ctx.artifact_root =
      artifact_root.empty() ? FromEnv("BTSTORE_ARTIFACT_ROOT", kDefaultArtifactRoot) : artifact_root;
  ctx.stdout_is_terminal = isatty(STDOUT_FILENO) == 1;

  try {
    return action ? action(ctx) : 0;
  } catch (const Error& e) {
    ReportError(ctx, e.code(), e.what(), e.details());
    return ExitStatus(e.code());
  } catch (const std::exception& e) {
    ReportError(ctx, ErrorCode::kInternal, e.what(), {});
    return ExitStatus(ErrorCode::kInternal);
  }
}

}  // namespace
}  // namespace btstore::cli

int main(int argc, char** argv) { return btstore::cli::Main(argc, argv); }

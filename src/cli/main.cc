// The `btstore` command line: global options, dispatch to the command groups, and the single
// place where errors become messages and exit statuses (contract section 6).

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "btstore/artifact_store.h"
#include "btstore/errors.h"
#include "btstore/service.h"
#include "btstore/wire.h"
#include "cli/cli.h"

namespace btstore::cli {
namespace {

// Print the failure and return its exit status. People's output is escaped: control characters
// in a message cannot reach a terminal (the wire layer has already hidden passwords).
int ReportError(const Context& ctx, const wire::Failure& failure) {
  if (ctx.json) {
    PrintJson(wire::ErrorJson(failure));
  } else {
    std::cerr << "error: " << ErrorCodeName(failure.code) << ": " << Printable(failure.message)
              << "\n";
    for (const auto& [key, value] : failure.details) {
      std::cerr << "  " << key << ": " << Printable(value) << "\n";
    }
  }
  return failure.exit_status;
}

int Main(int argc, char** argv) {
  CLI::App app{"btstore: storage for alpha backtest results (catalog, Parquet bundles, jobs)",
               "btstore"};
  app.set_version_flag("--version", std::string("btstore ") + BTSTORE_VERSION);
  app.require_subcommand(1);
  app.fallthrough();

  Context ctx;
  std::string catalog, artifact_root, s3_endpoint;
  app.add_option("--catalog", catalog,
                 "catalog URL: postgresql://... (any libpq string) or sqlite:PATH\n"
                 "[env BTSTORE_CATALOG, default " +
                     std::string(kDefaultCatalogUrl) + "]");
  app.add_option(
      "--artifact-root", artifact_root,
      "directory of result bundles, or s3://bucket/prefix [env BTSTORE_ARTIFACT_ROOT, default " +
          std::string(kDefaultArtifactRoot) + "]");
  app.add_option("--s3-endpoint", s3_endpoint,
                 "endpoint of an S3-compatible service for an s3:// artifact root, e.g.\n"
                 "http://127.0.0.1:9000 [env BTSTORE_S3_ENDPOINT, default AWS S3]");
  app.add_flag("--json", ctx.json, "print one JSON document on stdout (errors too)");

  Action action;
  RegisterJobCommands(app, action);
  RegisterWorkerCommands(app, action);
  RegisterLogsCommand(app, action);
  RegisterMaintenanceCommands(app, action);
  RegisterBundleCommands(app, action);
  RegisterDemoCommand(app, action);
  RegisterServeCommands(app, action);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    const int status = ReportError(ctx, wire::MakeFailure(ErrorCode::kInvalidArgument, e.what()));
    if (!ctx.json) std::cerr << "Run with --help for usage.\n";
    return status;
  }

  ctx.catalog_url = ResolveCatalogUrl(catalog);
  ctx.artifact_root = ResolveArtifactRoot(artifact_root);
  // The store reads its endpoint where every other tool of the process (the worker's children
  // too) finds it.
  if (!s3_endpoint.empty()) ::setenv("BTSTORE_S3_ENDPOINT", s3_endpoint.c_str(), 1);
  ctx.stdout_is_terminal = isatty(STDOUT_FILENO) == 1;

  try {
    return action ? action(ctx) : 0;
  } catch (const std::exception& e) {
    return ReportError(ctx, wire::Classify(e));
  }
}

}  // namespace
}  // namespace btstore::cli

int main(int argc, char** argv) {
  const int status = btstore::cli::Main(argc, argv);
  btstore::FinalizeObjectStores();
  return status;
}

#pragma once
// The platform's optional tables and JSON artifacts: the checks the writer and the reader share
// (each reports a fault with its own error type).

#include <arrow/type_fwd.h>

#include <optional>
#include <string>
#include <string_view>

namespace btstore::internal {

/// What is wrong with a table's schema: the column at fault, what was expected there and what
/// was found, and a sentence that says so.
struct SchemaFault {
  std::string column;
  std::string expected;
  std::string found;
  std::string message;
};

/// Check the schema of the optional table `name` (OptionalTableSchema(name) must not be null):
/// its required columns first, in order, with exactly their types; for daily_returns and
/// daily_prices a `symbol` column, if any, right after them and of a string type. Other columns
/// may follow. Returns the first fault, or nullopt.
std::optional<SchemaFault> FindOptionalSchemaFault(const arrow::Schema& schema,
                                                   std::string_view name);

/// Return the file name of a JSON artifact: "<name>.json".
std::string JsonArtifactFile(std::string_view name);

}  // namespace btstore::internal

// The platform's optional tables and JSON artifacts (contract section 1): their schemas, the
// checks of a JSON artifact, and portfolio returns by basis.

#include <arrow/api.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <numeric>

#include "artifact/io_internal.h"
#include "artifact/json_internal.h"
#include "artifact/optional_internal.h"
#include "btstore/bundle.h"
#include "btstore/errors.h"

namespace btstore {
namespace {

using Json = nlohmann::ordered_json;

bool IsStringType(const arrow::DataType& type) {
  return type.id() == arrow::Type::STRING || type.id() == arrow::Type::LARGE_STRING ||
         type.id() == arrow::Type::STRING_VIEW;
}

bool HasSymbolColumn(std::string_view name) {
  return name == kDailyReturnsTable || name == kDailyPricesTable;
}

[[noreturn]] void BadArtifact(std::string_view name, const std::string& message,
                              const std::string& field = "") {
  ErrorDetails details = {{"artifact", std::string(name)},
                          {"file", internal::JsonArtifactFile(name)}};
  if (!field.empty()) details["field"] = field;
  throw InvalidArgument(internal::JsonArtifactFile(name) + ": " + message, std::move(details));
}

// Gather (date, value) rows of two concatenated columns in the order of `order`, keeping nulls
// and the bits of every double.
std::shared_ptr<arrow::Table> Gather(const arrow::Date32Array& dates,
                                     const arrow::DoubleArray& values,
                                     const std::vector<int64_t>& order) {
  arrow::Date32Builder date_builder;
  arrow::DoubleBuilder value_builder;
  auto check = [](const arrow::Status& status) {
    if (!status.ok())
      throw InternalError("cannot build the portfolio returns: " + status.ToString());
  };
  check(date_builder.Reserve(static_cast<int64_t>(order.size())));
  check(value_builder.Reserve(static_cast<int64_t>(order.size())));
  for (int64_t i : order) {
    if (dates.IsNull(i)) {
      date_builder.UnsafeAppendNull();
    } else {
      date_builder.UnsafeAppend(dates.Value(i));
    }
    if (values.IsNull(i)) {
      value_builder.UnsafeAppendNull();
    } else {
      value_builder.UnsafeAppend(values.Value(i));
    }
  }
  std::shared_ptr<arrow::Array> date_array;
  std::shared_ptr<arrow::Array> value_array;
  check(date_builder.Finish(&date_array));
  check(value_builder.Finish(&value_array));
  return arrow::Table::Make(arrow::schema({arrow::field("date", arrow::date32()),
                                           arrow::field("return", arrow::float64())}),
                            {date_array, value_array});
}

}  // namespace

namespace internal {

std::string JsonArtifactFile(std::string_view name) { return std::string(name) + ".json"; }

std::optional<SchemaFault> FindOptionalSchemaFault(const arrow::Schema& schema,
                                                   std::string_view name) {
  std::shared_ptr<arrow::Schema> expected = OptionalTableSchema(name);
  for (int i = 0; i < expected->num_fields(); ++i) {
    const auto& want = expected->field(i);
    const std::string type = want->type()->ToString();
    const std::string position = std::to_string(i + 1);
    if (i >= schema.num_fields()) {
      return SchemaFault{want->name(), type, "missing",
                         "column " + position + " must be '" + want->name() + "' (" + type +
                             "), the table has only " + std::to_string(schema.num_fields()) +
                             " columns"};
    }
    const auto& got = schema.field(i);
    if (got->name() != want->name()) {
      return SchemaFault{want->name(), want->name(), got->name(),
                         "column " + position + " must be '" + want->name() + "' (" + type +
                             "), found '" + got->name() + "' (the columns are, in this order: " +
                             expected->ToString(/*show_metadata=*/false) + ")"};
    }
    if (!got->type()->Equals(*want->type())) {
      return SchemaFault{want->name(), type, got->type()->ToString(),
                         "column '" + want->name() + "' has type " + got->type()->ToString() +
                             ", expected " + type};
    }
  }
  if (!HasSymbolColumn(name)) return std::nullopt;
  const int index = schema.GetFieldIndex(std::string(kSymbolColumn));
  if (index < 0) return std::nullopt;
  const std::string column(kSymbolColumn);
  if (index != expected->num_fields()) {
    return SchemaFault{column, "position " + std::to_string(expected->num_fields() + 1),
                       "position " + std::to_string(index + 1),
                       "column 'symbol' must come right after '" +
                           expected->field(expected->num_fields() - 1)->name() + "'"};
  }
  const auto& type = *schema.field(index)->type();
  if (!IsStringType(type)) {
    return SchemaFault{column, "string", type.ToString(),
                       "column 'symbol' has type " + type.ToString() + ", expected string"};
  }
  return std::nullopt;
}

}  // namespace internal

std::shared_ptr<arrow::Schema> OptionalTableSchema(std::string_view table_name) {
  auto date = arrow::field("date", arrow::date32());
  auto permno = arrow::field("permno", arrow::int64());
  auto f64 = [](const char* name) { return arrow::field(name, arrow::float64()); };
  if (table_name == kPortfolioReturnsTable) return arrow::schema({date, f64("return")});
  if (table_name == kDailyReturnsTable) return arrow::schema({date, permno, f64("return")});
  if (table_name == kDailyPricesTable) return arrow::schema({date, permno, f64("price")});
  if (table_name == kNetPortfolioReturnsTable) {
    return arrow::schema({date, f64("gross_return"), f64("cost_drag"), f64("net_return")});
  }
  return nullptr;
}

bool IsJsonArtifact(std::string_view name) {
  return name == kWalkForwardArtifact || name == kParamSearchArtifact;
}

std::string NormalizeJsonArtifact(std::string_view name, std::string_view text) {
  if (!IsJsonArtifact(name)) {
    throw InvalidArgument(
        "'" + std::string(name) + "' is not a JSON artifact (walk_forward, param_search)",
        {{"artifact", std::string(name)}});
  }
  if (text.size() > internal::kMaxJsonFileBytes) {
    BadArtifact(name, "is " + std::to_string(text.size()) + " bytes, more than the " +
                          std::to_string(internal::kMaxJsonFileBytes) + " bytes it may have");
  }
  if (int depth = JsonNestingDepth(text); depth > kMaxJsonDepth) {
    BadArtifact(name, "is nested " + std::to_string(depth) + " levels deep, more than the " +
                          std::to_string(kMaxJsonDepth) +
                          " levels of arrays and objects it may have");
  }
  Json doc;
  try {
    // nlohmann's lexer also rejects ill-formed UTF-8 inside strings.
    doc = Json::parse(ReplaceNonFiniteTokens(text));
  } catch (const Json::exception& e) {
    BadArtifact(name, std::string("is not valid UTF-8 JSON: ") + e.what());
  }
  if (!doc.is_object()) BadArtifact(name, "is not a JSON object");
  auto version = doc.find("version");
  if (version == doc.end() || !version->is_string() ||
      version->get<std::string>() != kJsonArtifactVersion) {
    BadArtifact(name,
                "must have \"version\": \"" + std::string(kJsonArtifactVersion) + "\", found " +
                    (version == doc.end() ? std::string("none") : version->dump()),
                "version");
  }
  auto created = doc.find("created_at");
  if (created == doc.end() || !created->is_string() || created->get<std::string>().empty()) {
    BadArtifact(name, "must have created_at, a non-empty string", "created_at");
  }
  return internal::DumpJson(doc, 2) + "\n";
}

ReturnsBasis ParseReturnsBasis(std::string_view text) {
  if (text == "net") return ReturnsBasis::kNet;
  if (text == "gross") return ReturnsBasis::kGross;
  throw InvalidArgument("unknown returns basis '" + std::string(text) + "': use net or gross",
                        {{"field", "basis"}, {"value", std::string(text)}});
}

std::string_view ToString(ReturnsBasis basis) {
  return basis == ReturnsBasis::kNet ? "net" : "gross";
}

namespace {

std::pair<std::string_view, std::string> BasisSource(ReturnsBasis basis) {
  return basis == ReturnsBasis::kNet
             ? std::pair{kNetPortfolioReturnsTable, std::string("net_return")}
             : std::pair{kPortfolioReturnsTable, std::string("return")};
}

}  // namespace

ReadOptions PortfolioReturnsReadOptions(ReturnsBasis basis, std::optional<Date> from,
                                        std::optional<Date> to) {
  const auto [table, column] = BasisSource(basis);
  ReadOptions options;
  options.from = from;
  options.to = to;
  options.tables = {std::string(table)};
  options.columns = {column};
  return options;
}

std::shared_ptr<arrow::Table> PortfolioReturns(const BacktestResult& result, ReturnsBasis basis) {
  const auto [name, column] = BasisSource(basis);
  auto it = result.extra_tables.find(std::string(name));
  if (it == result.extra_tables.end() || !it->second) {
    throw InvalidArgument("the result has no " + std::string(name) + " table, so no " +
                              std::string(ToString(basis)) + " portfolio returns",
                          {{"table", std::string(name)}, {"basis", std::string(ToString(basis))}});
  }
  const arrow::Table& table = *it->second;
  auto date_column = table.GetColumnByName("date");
  auto value_column = table.GetColumnByName(column);
  if (!date_column || !value_column || date_column->type()->id() != arrow::Type::DATE32 ||
      value_column->type()->id() != arrow::Type::DOUBLE) {
    throw InvalidArgument(std::string(name) + " was not read with its date and " + column +
                              " columns (read it with PortfolioReturnsReadOptions)",
                          {{"table", std::string(name)}, {"column", column}});
  }
  auto concat = [](const std::shared_ptr<arrow::ChunkedArray>& chunked) {
    auto array = arrow::Concatenate(chunked->chunks());
    if (!array.ok())
      throw InternalError("cannot read portfolio returns: " + array.status().ToString());
    return *array;
  };
  std::shared_ptr<arrow::Array> date_array =
      date_column->num_chunks() == 1 ? date_column->chunk(0) : concat(date_column);
  std::shared_ptr<arrow::Array> value_array =
      value_column->num_chunks() == 1 ? value_column->chunk(0) : concat(value_column);
  const auto& dates = static_cast<const arrow::Date32Array&>(*date_array);
  const auto& values = static_cast<const arrow::DoubleArray&>(*value_array);
  // Nulls last; equal dates keep their order in the file.
  auto before = [&](int64_t a, int64_t b) {
    if (dates.IsNull(a) || dates.IsNull(b)) return !dates.IsNull(a) && dates.IsNull(b);
    return dates.Value(a) < dates.Value(b);
  };
  std::vector<int64_t> order(static_cast<size_t>(dates.length()));
  std::iota(order.begin(), order.end(), int64_t{0});
  if (!std::is_sorted(order.begin(), order.end(), before)) {
    std::stable_sort(order.begin(), order.end(), before);
  }
  return Gather(dates, values, order);
}

}  // namespace btstore

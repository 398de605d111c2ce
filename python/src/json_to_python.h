#pragma once
// JSON text straight to the Python values the wire layer's parse gives, without the intermediate
// nlohmann::json tree: a page of jobs parses four JSON columns per row.

#include <Python.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace btstore::python {

/// Parse the JSON columns of the catalog (config_json, dataset_version_ids, cost_config,
/// cost_summary) into Python values. One parser serves many texts; its stacks keep their
/// capacity between them. Use with the GIL held, from one thread at a time.
class JsonColumnParser {
 public:
  JsonColumnParser() = default;
  ~JsonColumnParser();
  JsonColumnParser(const JsonColumnParser&) = delete;
  JsonColumnParser& operator=(const JsonColumnParser&) = delete;

  /// Return `text` as wire::JsonColumn reads it, as Python: the parsed value (objects as dicts
  /// whose keys are in the order nlohmann::json keeps them, sorted by their UTF-8 bytes, the
  /// last of duplicate keys winning; integers as int, other numbers as float), or the text
  /// itself as a str when it does not parse as JSON or nests deeper than kMaxJsonDepth.
  /// Returns a new reference, or nullptr with a Python exception set.
  PyObject* Parse(std::string_view text);

 private:
  struct Events;  // nlohmann's SAX interface over this parser's state

  // The containers being filled, innermost last: an array's list, or an object whose members
  // are members_[first_member...].
  struct Open {
    PyObject* list = nullptr;
    size_t first_member = 0;
  };

  // Take a finished value (a new reference, or nullptr after a Python error) into the
  // innermost open container, or as the result.
  bool Put(PyObject* value);
  bool CloseObject();
  bool CloseArray();
  void Discard();  // release what a parse that stopped part way holds

  std::vector<Open> open_;
  std::vector<std::pair<std::string, PyObject*>> members_;  // keys and values of open objects
  PyObject* result_ = nullptr;
  bool python_error_ = false;
};

}  // namespace btstore::python

#include "json_to_python.h"

#include <algorithm>
#include <cstdint>

#include "btstore/model.h"
#include "btstore/wire.h"

namespace btstore::python {

// The events of nlohmann's SAX parser, the same parser wire::JsonColumn runs (the same grammar,
// UTF-8 checks and number rules), each building its Python value at once.
struct JsonColumnParser::Events {
  JsonColumnParser& p;

  bool null() {
    Py_INCREF(Py_None);
    return p.Put(Py_None);
  }
  bool boolean(bool value) { return p.Put(PyBool_FromLong(value)); }
  bool number_integer(int64_t value) { return p.Put(PyLong_FromLongLong(value)); }
  bool number_unsigned(uint64_t value) { return p.Put(PyLong_FromUnsignedLongLong(value)); }
  bool number_float(double value, const std::string& /*text*/) {
    return p.Put(PyFloat_FromDouble(value));
  }
  bool string(std::string& value) {
    return p.Put(PyUnicode_FromStringAndSize(value.data(), static_cast<Py_ssize_t>(value.size())));
  }
  bool binary(wire::Json::binary_t& /*value*/) { return false; }  // text JSON has none
  bool start_object(std::size_t /*elements*/) {
    p.open_.push_back({nullptr, p.members_.size()});
    return true;
  }
  bool key(std::string& name) {
    p.members_.emplace_back(name, nullptr);
    return true;
  }
  bool end_object() { return p.CloseObject(); }
  bool start_array(std::size_t /*elements*/) {
    PyObject* list = PyList_New(0);
    if (list == nullptr) {
      p.python_error_ = true;
      return false;
    }
    p.open_.push_back({list, 0});
    return true;
  }
  bool end_array() { return p.CloseArray(); }
  bool parse_error(std::size_t /*position*/, const std::string& /*token*/,
                   const wire::Json::exception& /*error*/) {
    return false;
  }
};

JsonColumnParser::~JsonColumnParser() { Discard(); }

PyObject* JsonColumnParser::Parse(std::string_view text) {
  // As wire::JsonColumn: too deep for code that recurses, or not JSON, shows as the text.
  if (JsonNestingDepth(text) <= kMaxJsonDepth) {
    Events events{*this};
    python_error_ = false;
    if (wire::Json::sax_parse(text.data(), text.data() + text.size(), &events)) {
      PyObject* value = result_;
      result_ = nullptr;
      return value;
    }
    Discard();
    if (python_error_) return nullptr;
  }
  return PyUnicode_FromStringAndSize(text.data(), static_cast<Py_ssize_t>(text.size()));
}

bool JsonColumnParser::Put(PyObject* value) {
  if (value == nullptr) {
    python_error_ = true;
    return false;
  }
  if (open_.empty()) {
    result_ = value;
    return true;
  }
  if (PyObject* list = open_.back().list) {
    const int failed = PyList_Append(list, value);
    Py_DECREF(value);
    python_error_ = failed != 0;
    return !python_error_;
  }
  members_.back().second = value;  // the value of the key just read
  return true;
}

bool JsonColumnParser::CloseObject() {
  const auto first = members_.begin() + static_cast<std::ptrdiff_t>(open_.back().first_member);
  // nlohmann::json keeps an object's members in a std::map: sorted by bytes, and a repeated
  // key keeps its place with the last value. Inserting in that order into a dict does the same.
  std::stable_sort(first, members_.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  PyObject* dict = PyDict_New();
  bool ok = dict != nullptr;
  for (auto member = first; ok && member != members_.end(); ++member) {
    PyObject* key = PyUnicode_FromStringAndSize(member->first.data(),
                                                static_cast<Py_ssize_t>(member->first.size()));
    ok = key != nullptr && PyDict_SetItem(dict, key, member->second) == 0;
    Py_XDECREF(key);
  }
  for (auto member = first; member != members_.end(); ++member) Py_DECREF(member->second);
  members_.erase(first, members_.end());
  open_.pop_back();
  if (!ok) {
    Py_XDECREF(dict);
    python_error_ = true;
    return false;
  }
  return Put(dict);
}

bool JsonColumnParser::CloseArray() {
  PyObject* list = open_.back().list;
  open_.pop_back();
  return Put(list);
}

void JsonColumnParser::Discard() {
  for (const Open& open : open_) Py_XDECREF(open.list);
  open_.clear();
  for (const auto& member : members_) Py_XDECREF(member.second);
  members_.clear();
  Py_CLEAR(result_);
}

}  // namespace btstore::python

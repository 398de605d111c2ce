#include "arrow_bridge.h"

#include <arrow/c/abi.h>
#include <arrow/c/bridge.h>
#include <arrow/record_batch.h>
#include <arrow/table.h>

#include <string>

#include "btstore/errors.h"

namespace nb = nanobind;

namespace btstore::python {
namespace {

constexpr const char* kStreamCapsuleName = "arrow_array_stream";

// The capsule owns the ArrowArrayStream struct; an importer that moved the stream out left
// release null, so only an unconsumed stream is released here.
void ReleaseStreamCapsule(PyObject* capsule) {
  auto* stream = static_cast<ArrowArrayStream*>(PyCapsule_GetPointer(capsule, kStreamCapsuleName));
  if (stream == nullptr) {
    PyErr_Clear();
    return;
  }
  if (stream->release != nullptr) stream->release(stream);
  delete stream;
}

}  // namespace

nb::object TableToCapsule(const std::shared_ptr<arrow::Table>& table) {
  auto stream = std::make_unique<ArrowArrayStream>();
  auto reader = std::make_shared<arrow::TableBatchReader>(table);
  arrow::Status status = arrow::ExportRecordBatchReader(reader, stream.get());
  if (!status.ok()) {
    throw InternalError("cannot export a table to Python: " + status.ToString());
  }
  PyObject* capsule = PyCapsule_New(stream.get(), kStreamCapsuleName, &ReleaseStreamCapsule);
  if (capsule == nullptr) {
    stream->release(stream.get());
    throw nb::python_error();
  }
  stream.release();
  return nb::steal(capsule);
}

std::shared_ptr<arrow::Table> CapsuleToTable(nb::handle capsule, std::string_view what) {
  if (!PyCapsule_IsValid(capsule.ptr(), kStreamCapsuleName)) {
    throw InvalidArgument(std::string(what) +
                              " is not an Arrow stream (a polars DataFrame or a "
                              "pyarrow Table was expected)",
                          {{"field", std::string(what)}});
  }
  auto* stream =
      static_cast<ArrowArrayStream*>(PyCapsule_GetPointer(capsule.ptr(), kStreamCapsuleName));
  auto reader = arrow::ImportRecordBatchReader(stream);
  if (!reader.ok()) {
    throw InvalidArgument(std::string(what) + ": " + reader.status().ToString(),
                          {{"field", std::string(what)}});
  }
  auto table = (*reader)->ToTable();
  if (!table.ok()) {
    throw InvalidArgument(std::string(what) + ": " + table.status().ToString(),
                          {{"field", std::string(what)}});
  }
  return *table;
}

}  // namespace btstore::python

#pragma once
// Arrow tables across the Python boundary without a copy, through the Arrow C stream interface
// (a PyCapsule named "arrow_array_stream", which pyarrow imports and exports).

#include <nanobind/nanobind.h>

#include <memory>
#include <string_view>

namespace arrow {
class Table;
}  // namespace arrow

namespace btstore::python {

/// Return a PyCapsule "arrow_array_stream" over `table`'s buffers (no copy); the capsule releases
/// the stream when it is collected unless pyarrow took it. Throws InternalError when Arrow
/// cannot export the table. Call with the GIL held.
nanobind::object TableToCapsule(const std::shared_ptr<arrow::Table>& table);

/// Return the table of a PyCapsule "arrow_array_stream" (from `__arrow_c_stream__()`), taking
/// the stream over (no copy of the buffers). Throws InvalidArgument naming `what` when the
/// object is not such a capsule or its stream fails. Call with the GIL held.
std::shared_ptr<arrow::Table> CapsuleToTable(nanobind::handle capsule, std::string_view what);

}  // namespace btstore::python

# Locate Arrow C++ and Parquet.
#
# 1. A system installation (find_package(Arrow/Parquet), e.g. from Apache's packages or conda)
#    is used when present, unless BTSTORE_ARROW_FROM_PYARROW is ON.
# 2. Otherwise the headers and shared libraries shipped inside the pyarrow wheel of the
#    Python interpreter Python3_EXECUTABLE (the project venv, see scripts/setup.sh) are used.
#
# Defines the targets btstore::arrow, btstore::parquet and btstore::arrow_s3, and
# BTSTORE_ARROW_LIBRARY_DIR (the directory to put in the run path; empty for a system Arrow).
option(BTSTORE_ARROW_FROM_PYARROW "Always use the Arrow C++ libraries bundled with pyarrow" OFF)

set(BTSTORE_ARROW_LIBRARY_DIR "")
if(NOT BTSTORE_ARROW_FROM_PYARROW)
  find_package(Arrow CONFIG QUIET)
  find_package(Parquet CONFIG QUIET)
  find_package(ArrowS3 CONFIG QUIET)
endif()

if(Arrow_FOUND AND Parquet_FOUND)
  message(STATUS "btstore: using system Arrow ${Arrow_VERSION}")
  add_library(btstore::arrow INTERFACE IMPORTED)
  target_link_libraries(btstore::arrow INTERFACE Arrow::arrow_shared)
  add_library(btstore::parquet INTERFACE IMPORTED)
  target_link_libraries(btstore::parquet INTERFACE Parquet::parquet_shared)
  # Arrow's S3 filesystem, a library of its own since Arrow 22 (part of libarrow before).
  add_library(btstore::arrow_s3 INTERFACE IMPORTED)
  if(TARGET ArrowS3::arrow_s3_shared)
    target_link_libraries(btstore::arrow_s3 INTERFACE ArrowS3::arrow_s3_shared)
  endif()
else()
  if(NOT Python3_EXECUTABLE)
    set(Python3_EXECUTABLE ${CMAKE_SOURCE_DIR}/.venv/bin/python)
  endif()
  execute_process(
    COMMAND ${Python3_EXECUTABLE} -c
            "import pyarrow as pa; print(pa.__version__); print(pa.get_include()); print(pa.get_library_dirs()[0]); print(pa.cpp_build_info.so_version)"
    OUTPUT_VARIABLE _pa_out RESULT_VARIABLE _pa_rc ERROR_VARIABLE _pa_err
    OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT _pa_rc EQUAL 0)
    message(FATAL_ERROR "btstore: no system Arrow found and pyarrow is not importable from "
                        "${Python3_EXECUTABLE} (run scripts/setup.sh): ${_pa_err}")
  endif()
  string(REPLACE "\n" ";" _pa_lines "${_pa_out}")
  list(GET _pa_lines 0 _pa_version)
  list(GET _pa_lines 1 _pa_include)
  list(GET _pa_lines 2 _pa_libdir)
  list(GET _pa_lines 3 _pa_so)
  message(STATUS "btstore: using Arrow C++ ${_pa_version} from pyarrow at ${_pa_libdir}")
  # arrow_s3: Arrow's S3 filesystem (the artifact store on object storage).
  foreach(_lib arrow parquet arrow_s3)
    set(_path ${_pa_libdir}/lib${_lib}.so.${_pa_so})
    if(NOT EXISTS ${_path})
      message(FATAL_ERROR "btstore: ${_path} not found in the pyarrow wheel")
    endif()
    add_library(btstore::${_lib} SHARED IMPORTED)
    set_target_properties(btstore::${_lib} PROPERTIES IMPORTED_LOCATION ${_path}
                          INTERFACE_SYSTEM_INCLUDE_DIRECTORIES ${_pa_include}
                          INTERFACE_INCLUDE_DIRECTORIES ${_pa_include})
  endforeach()
  target_link_libraries(btstore::parquet INTERFACE btstore::arrow)
  target_link_libraries(btstore::arrow_s3 INTERFACE btstore::arrow)
  set(BTSTORE_ARROW_LIBRARY_DIR ${_pa_libdir})
endif()

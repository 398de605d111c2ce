# Run as `cmake -DOUTPUT=file.cc -DBACKENDS=postgres,sqlite -DSOURCE_DIR=dir -P
# EmbedMigrations.cmake`: write a C++ file that holds every <backend>/migrations/NNNN_name.sql
# as a string, so the library applies its migrations without looking up files at run time.
string(REPLACE "," ";" backends "${BACKENDS}")
set(body "")
foreach(backend ${backends})
  file(GLOB sql_files ${SOURCE_DIR}/${backend}/migrations/*.sql)
  list(SORT sql_files)
  string(APPEND body "const std::vector<Migration>& Migrations_${backend}() {\n")
  string(APPEND body "  static const std::vector<Migration> migrations = {\n")
  foreach(sql_file ${sql_files})
    get_filename_component(file_name ${sql_file} NAME_WE)
    if(NOT file_name MATCHES "^([0-9]+)_([a-z0-9_]+)$")
      message(FATAL_ERROR "migration ${sql_file} is not named NNNN_name.sql")
    endif()
    math(EXPR version "${CMAKE_MATCH_1}")
    set(name ${CMAKE_MATCH_2})
    file(READ ${sql_file} sql)
    if(sql MATCHES "\\)btstore_sql\"")
      message(FATAL_ERROR "${sql_file} contains the raw string delimiter")
    endif()
    string(APPEND body "      {${version}, \"${name}\", R\"btstore_sql(${sql})btstore_sql\"},\n")
  endforeach()
  string(APPEND body "  };\n  return migrations;\n}\n\n")
endforeach()
set(content "// Generated from the migrations/*.sql files by EmbedMigrations.cmake. Do not edit.
#include \"catalog/migrations_internal.h\"

namespace btstore::internal {

${body}}  // namespace btstore::internal
")
# Rewrite only on change, so an unrelated reconfigure does not rebuild the library.
if(EXISTS ${OUTPUT})
  file(READ ${OUTPUT} old_content)
endif()
if(NOT "${old_content}" STREQUAL "${content}")
  file(WRITE ${OUTPUT} "${content}")
endif()

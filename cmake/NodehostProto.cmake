# nh_protoc_c(<out-var> OUT_DIR <dir> IMPORT_DIRS <dir>... PROTOS <file>...)
#
# Generates protobuf-c sources for each .proto at build time and appends the generated .c files
# to <out-var>. A proto under one of IMPORT_DIRS is generated at its path relative to that dir,
# so "google/rpc/status.proto" becomes <OUT_DIR>/google/rpc/status.pb-c.c.
function(nh_protoc_c out_var)
  cmake_parse_arguments(P "" "OUT_DIR" "IMPORT_DIRS;PROTOS" ${ARGN})
  set(srcs)
  set(inc_args)
  foreach(d IN LISTS P_IMPORT_DIRS)
    list(APPEND inc_args -I${d})
  endforeach()
  foreach(proto IN LISTS P_PROTOS)
    set(rel "")
    foreach(d IN LISTS P_IMPORT_DIRS)
      file(RELATIVE_PATH r ${d} ${proto})
      if(NOT r MATCHES "^\\.\\.")
        set(rel ${r})
        break()
      endif()
    endforeach()
    if(rel STREQUAL "")
      message(FATAL_ERROR "nh_protoc_c: ${proto} is not under any of ${P_IMPORT_DIRS}")
    endif()
    string(REGEX REPLACE "\\.proto$" "" stem ${rel})
    set(c ${P_OUT_DIR}/${stem}.pb-c.c)
    set(h ${P_OUT_DIR}/${stem}.pb-c.h)
    add_custom_command(
      OUTPUT ${c} ${h}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${P_OUT_DIR}
      COMMAND ${PROTOC_C} ${inc_args} --c_out=${P_OUT_DIR} ${proto}
      DEPENDS ${proto}
      COMMENT "protoc-c ${rel}"
      VERBATIM)
    list(APPEND srcs ${c})
  endforeach()
  set(${out_var} ${${out_var}} ${srcs} PARENT_SCOPE)
endfunction()

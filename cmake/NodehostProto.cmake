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

# nh_protoc_nodehost(<out-var> OUT_DIR <dir> IMPORT_DIRS <dir>... PROTOS <file>...)
#
# Generates the typed nodehost stubs of each .proto (protoc-gen-nodehost: <stem>.nh.h and
# <stem>.nh.c, next to protoc-c's <stem>.pb-c.*) at build time and appends the .nh.c files to
# <out-var>. The generator is the in-tree target protoc-gen-nodehost when there is one, else
# NH_PROTOC_GEN_NODEHOST (set by the installed CMake package, or found on PATH). protoc runs
# it (protoc-c does not run plugins).
function(nh_protoc_nodehost out_var)
  cmake_parse_arguments(P "" "OUT_DIR" "IMPORT_DIRS;PROTOS" ${ARGN})
  if(NOT PROTOC)
    find_program(PROTOC protoc DOC "protoc, which runs protoc-gen-nodehost (protoc-c cannot)")
    if(NOT PROTOC)
      message(FATAL_ERROR "nh_protoc_nodehost: protoc not found (Debian: apt-get install "
                          "protobuf-compiler)")
    endif()
  endif()
  if(TARGET protoc-gen-nodehost)
    set(gen $<TARGET_FILE:protoc-gen-nodehost>)
    set(gen_dep protoc-gen-nodehost)
  else()
    if(NOT NH_PROTOC_GEN_NODEHOST)
      find_program(NH_PROTOC_GEN_NODEHOST protoc-gen-nodehost
        DOC "protoc-gen-nodehost, the generator of typed nodehost stubs")
    endif()
    if(NOT NH_PROTOC_GEN_NODEHOST)
      message(FATAL_ERROR "nh_protoc_nodehost: protoc-gen-nodehost not found (install the "
                          "nodehost SDK, or set NH_PROTOC_GEN_NODEHOST)")
    endif()
    set(gen ${NH_PROTOC_GEN_NODEHOST})
    set(gen_dep ${NH_PROTOC_GEN_NODEHOST})
  endif()
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
      message(FATAL_ERROR "nh_protoc_nodehost: ${proto} is not under any of ${P_IMPORT_DIRS}")
    endif()
    string(REGEX REPLACE "\\.proto$" "" stem ${rel})
    set(c ${P_OUT_DIR}/${stem}.nh.c)
    set(h ${P_OUT_DIR}/${stem}.nh.h)
    add_custom_command(
      OUTPUT ${c} ${h}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${P_OUT_DIR}
      COMMAND ${PROTOC} ${inc_args} --plugin=protoc-gen-nodehost=${gen}
              --nodehost_out=${P_OUT_DIR} ${proto}
      DEPENDS ${proto} ${gen_dep}
      COMMENT "protoc-gen-nodehost ${rel}"
      VERBATIM)
    list(APPEND srcs ${c})
  endforeach()
  set(${out_var} ${${out_var}} ${srcs} PARENT_SCOPE)
endfunction()

# _nh_proto_stem(<rel-var> <stem-var> <caller> <proto> <import dir>...): the proto's path
# relative to the first import dir holding it ("google/rpc/status.proto") and that path without
# ".proto" (what protoc names its outputs after).
function(_nh_proto_stem rel_var stem_var caller proto)
  foreach(d IN LISTS ARGN)
    file(RELATIVE_PATH r ${d} ${proto})
    if(NOT r MATCHES "^\\.\\.")
      string(REGEX REPLACE "\\.proto$" "" stem ${r})
      set(${rel_var} ${r} PARENT_SCOPE)
      set(${stem_var} ${stem} PARENT_SCOPE)
      return()
    endif()
  endforeach()
  message(FATAL_ERROR "${caller}: ${proto} is not under any of ${ARGN}")
endfunction()

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
    _nh_proto_stem(rel stem nh_protoc_c ${proto} ${P_IMPORT_DIRS})
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
    _nh_proto_stem(rel stem nh_protoc_nodehost ${proto} ${P_IMPORT_DIRS})
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

# nh_add_plugin(<name>
#               SOURCES <file.c>...
#               PROTOS <file.proto>...
#               [IMPORT_DIRS <dir>...]
#               [LINK <lib>...])
#
# Builds a nodehost plugin: the shared object <name>.so (no "lib" prefix), written to
# ${NH_PLUGIN_OUTPUT_DIR} (default ${CMAKE_BINARY_DIR}/plugins), that the nodehost program loads.
#
# - The .proto files are compiled with protoc-c at build time (nh_protoc_c from
#   NodehostProto.cmake). Import paths, in this order: IMPORT_DIRS, the directory of each proto,
#   then the directory holding google/protobuf/*.proto (NH_PROTOBUF_IMPORT_DIR, /usr/include on
#   Debian). A proto under an import dir is generated at its relative path: with the default
#   import dirs, plugins/x/x.proto gives "x.pb-c.h", included by the sources as such.
# - Well-known types imported by the protos (import "google/protobuf/empty.proto", ...) are
#   generated and compiled into the plugin too: libprotobuf-c ships no code for them. Every symbol
#   of the plugin except nh_plugin_entry (NH_PLUGIN_DEFINE) is hidden, so two plugins that both
#   carry google.protobuf.Empty do not clash.
# - The module links the SDK (${NH_PLUGIN_SDK_TARGET}: `nodehost` in the nodehost source tree,
#   `Nodehost::nodehost` from the installed CMake package), libprotobuf-c and LINK. Symbols the
#   host provides may stay undefined (a MODULE library is linked without -z defs).
#
# The target is called <name>; its generated sources' directory is in the target property
# NH_PLUGIN_GEN_DIR.
#
# This file is self-contained: it finds protoc-c, libprotobuf-c (PkgConfig::PROTOBUFC) and
# nh_protoc_c (NodehostProto.cmake, next to this file) when the including project has not.

include_guard(GLOBAL)

if(NOT COMMAND nh_protoc_c)
  include(${CMAKE_CURRENT_LIST_DIR}/NodehostProto.cmake)
endif()

if(NOT PROTOC_C)
  find_program(PROTOC_C protoc-c REQUIRED)
endif()

if(NOT TARGET PkgConfig::PROTOBUFC)
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(PROTOBUFC REQUIRED IMPORTED_TARGET GLOBAL libprotobuf-c)
endif()

if(NOT NH_PROTOBUF_IMPORT_DIR)
  find_path(NH_PROTOBUF_IMPORT_DIR google/protobuf/empty.proto
    HINTS /usr/include /usr/local/include
    DOC "Directory holding google/protobuf/*.proto (the protobuf well-known types)")
  if(NOT NH_PROTOBUF_IMPORT_DIR)
    message(FATAL_ERROR "nh_add_plugin: google/protobuf/empty.proto not found "
                        "(install libprotobuf-dev or set NH_PROTOBUF_IMPORT_DIR)")
  endif()
endif()

# Appends to <out_var> the well-known-type protos that the files in ARGN import, recursively
# (as absolute paths under NH_PROTOBUF_IMPORT_DIR).
function(_nh_plugin_wkt_imports out_var)
  set(found)
  set(queue ${ARGN})
  while(queue)
    list(POP_FRONT queue f)
    file(STRINGS ${f} lines REGEX "^[ \t]*import[ \t]")
    foreach(line IN LISTS lines)
      if(line MATCHES "\"(google/protobuf/[A-Za-z0-9_]+\\.proto)\"")
        set(wkt ${NH_PROTOBUF_IMPORT_DIR}/${CMAKE_MATCH_1})
        if(NOT wkt IN_LIST found AND EXISTS ${wkt})
          list(APPEND found ${wkt})
          list(APPEND queue ${wkt})
        endif()
      endif()
    endforeach()
  endwhile()
  set(${out_var} ${found} PARENT_SCOPE)
endfunction()

function(nh_add_plugin name)
  cmake_parse_arguments(P "" "" "SOURCES;PROTOS;IMPORT_DIRS;LINK" ${ARGN})
  if(P_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "nh_add_plugin(${name}): unexpected arguments: ${P_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT P_SOURCES)
    message(FATAL_ERROR "nh_add_plugin(${name}): SOURCES is required")
  endif()

  # The SDK target: the in-tree library, or the installed package's imported target.
  if(NH_PLUGIN_SDK_TARGET)
    set(sdk ${NH_PLUGIN_SDK_TARGET})
  elseif(TARGET nodehost)
    set(sdk nodehost)
  elseif(TARGET Nodehost::nodehost)
    set(sdk Nodehost::nodehost)
  else()
    message(FATAL_ERROR "nh_add_plugin(${name}): no SDK target (neither `nodehost` nor "
                        "`Nodehost::nodehost`; run find_package(Nodehost) first or set "
                        "NH_PLUGIN_SDK_TARGET)")
  endif()

  # Absolute proto paths and the import path list.
  set(protos)
  set(proto_dirs)
  foreach(p IN LISTS P_PROTOS)
    get_filename_component(abs ${p} ABSOLUTE BASE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
    list(APPEND protos ${abs})
    get_filename_component(d ${abs} DIRECTORY)
    list(APPEND proto_dirs ${d})
  endforeach()
  set(import_dirs)
  foreach(d IN LISTS P_IMPORT_DIRS)
    get_filename_component(abs ${d} ABSOLUTE BASE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
    list(APPEND import_dirs ${abs})
  endforeach()
  list(APPEND import_dirs ${proto_dirs} ${NH_PROTOBUF_IMPORT_DIR})
  list(REMOVE_DUPLICATES import_dirs)

  _nh_plugin_wkt_imports(wkts ${protos})
  list(REMOVE_ITEM wkts ${protos})

  set(gen_dir ${CMAKE_CURRENT_BINARY_DIR}/${name}_gen)
  set(gen_srcs)
  if(protos OR wkts)
    nh_protoc_c(gen_srcs OUT_DIR ${gen_dir} IMPORT_DIRS ${import_dirs} PROTOS ${protos} ${wkts})
    # protoc-c's output is not ours to keep warning-free.
    set_source_files_properties(${gen_srcs} PROPERTIES COMPILE_OPTIONS "-Wno-error;-Wno-shadow")
  endif()

  if(NOT NH_PLUGIN_OUTPUT_DIR)
    set(NH_PLUGIN_OUTPUT_DIR ${CMAKE_BINARY_DIR}/plugins)
  endif()

  add_library(${name} MODULE ${P_SOURCES} ${gen_srcs})
  target_include_directories(${name} PRIVATE ${gen_dir})
  target_link_libraries(${name} PRIVATE ${sdk} PkgConfig::PROTOBUFC ${P_LINK})
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    OUTPUT_NAME ${name}
    SUFFIX ".so"
    LIBRARY_OUTPUT_DIRECTORY ${NH_PLUGIN_OUTPUT_DIR}
    C_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    NH_PLUGIN_GEN_DIR ${gen_dir})
endfunction()

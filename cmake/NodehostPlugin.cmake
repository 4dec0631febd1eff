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
#   Debian), then NH_GORUMS_PROTO_DIR (gorums.proto). A proto under an import dir is generated
#   at its relative path: with the default import dirs, plugins/x/x.proto gives "x.pb-c.h",
#   included by the sources as such.
# - Each proto also goes through protoc-gen-nodehost (nh_protoc_nodehost, run by protoc): the
#   typed stubs <stem>.nh.h / <stem>.nh.c, compiled into the plugin. A plugin defines the
#   generated <pkg>_<service>_<method>_handler() functions and exports its descriptor with
#   NH_PLUGIN(<PKG>_<SERVICE>_NH_METHODS, .name = ..., ...) (docs/user-guide.md). Call types come
#   from gorums.proto's options (import "gorums.proto"; NH_GORUMS_PROTO_DIR is on the import
#   path): its header and descriptor.proto's are generated too (headers only: options have no
#   code).
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
# The plugin is compiled as C11 with _GNU_SOURCE (as the SDK is).
#
# This file is self-contained: it finds protoc-c, protoc, libprotobuf-c (PkgConfig::PROTOBUFC),
# gorums.proto and nh_protoc_c / nh_protoc_nodehost (NodehostProto.cmake, next to this file)
# when the including project has not; the generator is the in-tree target protoc-gen-nodehost
# or NH_PROTOC_GEN_NODEHOST (set by the installed package).

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

# gorums.proto: in the source tree, or installed next to this file's prefix.
if(NOT NH_GORUMS_PROTO_DIR)
  find_path(NH_GORUMS_PROTO_DIR gorums.proto
    HINTS ${CMAKE_CURRENT_LIST_DIR}/../sdk/proto/gorums
          ${CMAKE_CURRENT_LIST_DIR}/../../../share/nodehost/proto
          ${CMAKE_CURRENT_LIST_DIR}/../../../../share/nodehost/proto
    NO_DEFAULT_PATH
    DOC "Directory holding gorums.proto (the Gorums call-type options)")
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

# nh_target_protos(<target> PROTOS <file.proto>... [IMPORT_DIRS <dir>...])
#
# Gives any target (a plugin, a client program, a test) the protobuf-c code and the typed
# nodehost stubs of its protos: generates <stem>.pb-c.* and <stem>.nh.* (and the well-known
# types they import, and gorums.proto's header when imported) into <binary dir>/<target>_gen,
# adds the .c files to the target and that directory to its include path. Import paths as for
# nh_add_plugin. A client program: add_executable(myprog main.c), then
# nh_target_protos(myprog PROTOS my.proto) and target_link_libraries(myprog PRIVATE
# Nodehost::nodehost).
function(nh_target_protos target)
  cmake_parse_arguments(P "" "" "PROTOS;IMPORT_DIRS" ${ARGN})
  if(P_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "nh_target_protos(${target}): unexpected arguments: ${P_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT P_PROTOS)
    return()
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

  # gorums.proto (call-type options): on the import path always; a proto importing it includes
  # "gorums.pb-c.h", which includes descriptor.proto's header: both are generated, headers only
  # (the options have no code).
  if(NH_GORUMS_PROTO_DIR)
    list(APPEND import_dirs ${NH_GORUMS_PROTO_DIR})
  endif()
  list(REMOVE_DUPLICATES import_dirs)
  set(uses_gorums FALSE)
  foreach(p IN LISTS protos)
    file(STRINGS ${p} gorums_import REGEX "^[ \t]*import[ \t]+(public[ \t]+)?\"gorums\\.proto\"")
    if(gorums_import)
      set(uses_gorums TRUE)
    endif()
  endforeach()

  _nh_plugin_wkt_imports(wkts ${protos})
  list(REMOVE_ITEM wkts ${protos})

  set(gen_dir ${CMAKE_CURRENT_BINARY_DIR}/${target}_gen)
  set(gen_srcs)
  nh_protoc_c(gen_srcs OUT_DIR ${gen_dir} IMPORT_DIRS ${import_dirs} PROTOS ${protos} ${wkts})
  # protoc-c's output is not ours to keep warning-free.
  set_source_files_properties(${gen_srcs} PROPERTIES COMPILE_OPTIONS "-Wno-error;-Wno-shadow")
  # The typed stubs (protoc-gen-nodehost): <stem>.nh.h / <stem>.nh.c.
  nh_protoc_nodehost(gen_srcs OUT_DIR ${gen_dir} IMPORT_DIRS ${import_dirs} PROTOS ${protos})
  set(gen_headers)
  if(uses_gorums)
    if(NOT NH_GORUMS_PROTO_DIR OR NOT EXISTS ${NH_GORUMS_PROTO_DIR}/gorums.proto)
      message(FATAL_ERROR "nh_target_protos(${target}): a proto imports gorums.proto, but "
                          "NH_GORUMS_PROTO_DIR (${NH_GORUMS_PROTO_DIR}) does not hold it")
    endif()
    set(header_protos ${NH_GORUMS_PROTO_DIR}/gorums.proto)
    set(descriptor ${NH_PROTOBUF_IMPORT_DIR}/google/protobuf/descriptor.proto)
    if(NOT descriptor IN_LIST wkts)
      list(APPEND header_protos ${descriptor})
    endif()
    nh_protoc_c(header_srcs OUT_DIR ${gen_dir} IMPORT_DIRS ${import_dirs} PROTOS ${header_protos})
    string(REPLACE ".pb-c.c" ".pb-c.h" gen_headers "${header_srcs}")
  endif()
  target_sources(${target} PRIVATE ${gen_srcs} ${gen_headers})
  target_include_directories(${target} PRIVATE ${gen_dir})
  set_target_properties(${target} PROPERTIES NH_PLUGIN_GEN_DIR ${gen_dir})
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

  if(NOT NH_PLUGIN_OUTPUT_DIR)
    set(NH_PLUGIN_OUTPUT_DIR ${CMAKE_BINARY_DIR}/plugins)
  endif()

  add_library(${name} MODULE ${P_SOURCES})
  nh_target_protos(${name} PROTOS ${P_PROTOS} IMPORT_DIRS ${P_IMPORT_DIRS})
  # C11 with the GNU and POSIX extensions, as the SDK itself is built (asprintf, strndup, ...).
  target_compile_definitions(${name} PRIVATE _GNU_SOURCE)
  # The generated stubs carry client calls a plugin may not use: drop what nh_plugin_entry does
  # not reach.
  target_compile_options(${name} PRIVATE -ffunction-sections -fdata-sections)
  target_link_options(${name} PRIVATE -Wl,--gc-sections)
  target_link_libraries(${name} PRIVATE ${sdk} PkgConfig::PROTOBUFC ${P_LINK})
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    OUTPUT_NAME ${name}
    SUFFIX ".so"
    LIBRARY_OUTPUT_DIRECTORY ${NH_PLUGIN_OUTPUT_DIR}
    C_STANDARD 11
    C_STANDARD_REQUIRED ON
    C_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
endfunction()

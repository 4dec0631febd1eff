# Installation: `cmake --install <build> [--prefix <dir>]` gives a prefix that plugin authors build
# against, out of tree, with CMake (find_package(Nodehost) + nh_add_plugin) or with pkg-config:
#
#   bin/nodehost, bin/nodehost-demo, bin/nh-storage-client   programs (RPATH $ORIGIN/../<libdir>)
#   include/nodehost/*.h                                     the public headers
#   bin/protoc-gen-nodehost                                  the typed-stub generator (protoc plugin)
#   share/nodehost/proto/gorums.proto                        Gorums' call-type options
#   share/nodehost/proto/nodehost/admin.proto                the admin service's messages
#                          (import "nodehost/admin.proto" with -I <prefix>/share/nodehost/proto)
#   <libdir>/libnodehost.so.<version>, .so.<major>, .so      the SDK library
#   <libdir>/nodehost/plugins/{hello,benchmark,storage}.so   the bundled plugins
#   <libdir>/pkgconfig/nodehost.pc                           pkg-config (Requires: libprotobuf-c)
#   <libdir>/cmake/Nodehost/NodehostConfig.cmake             the CMake package: Nodehost::nodehost,
#                          NodehostConfigVersion.cmake       nh_add_plugin(), nh_protoc_c()
#                          NodehostTargets*.cmake
#                          NodehostPlugin.cmake, NodehostProto.cmake
#
# and the program's files (what the Debian package ships, cmake/NodehostPackage.cmake):
#
#   share/nodehost/reference.yaml                            every configuration key, annotated
#   share/nodehost/examples/*.yaml                           conf/'s examples, and cluster.yaml
#                          (a 3-node cluster for nodehost@.service, plugins from <plugindir>)
#   share/doc/nodehost/README.md, *.md                       README and docs/
#   share/man/man1/nodehost.1, man5/nodehost.yaml.5         the manual pages (docs/man/)
#   lib/systemd/system/nodehost.service, nodehost@.service   the systemd units (deploy/systemd/)
#   <sysconfdir>/nodehost/nodehost.yaml                      the default node (one node, hello
#                          plugin from <plugindir>); <sysconfdir> is /etc for the prefixes / and
#                          /usr, else <prefix>/etc; an existing file is kept
#
# <libdir> is GNUInstallDirs' CMAKE_INSTALL_LIBDIR: "lib", or lib/<multiarch> when the build was
# configured with CMAKE_INSTALL_PREFIX=/usr on Debian. Nothing here needs root: install into any
# prefix. The pkg-config file is written at install time, so it names the prefix actually
# installed to (--prefix); the CMake package is relocatable (paths relative to its own location).
# tests/install/test_install.sh checks all of it.

include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# The headers' install directory is fixed by the nodehost target's $<INSTALL_INTERFACE:include>.
set(NH_INSTALL_INCLUDEDIR include)
set(NH_INSTALL_LIBDIR ${CMAKE_INSTALL_LIBDIR})
set(NH_INSTALL_PLUGINDIR ${CMAKE_INSTALL_LIBDIR}/nodehost/plugins)
set(NH_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/Nodehost)
set(NH_INSTALL_PKGCONFIGDIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# ---- the library and its headers ----------------------------------------------------------
install(TARGETS nodehost EXPORT NodehostTargets
  LIBRARY DESTINATION ${NH_INSTALL_LIBDIR})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/sdk/include/nodehost DESTINATION ${NH_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.h")
# The messages of the admin service (<nodehost/admin.h>: Status, Reload), for clients that
# decode the responses; the package directory is kept so that the import path is the same.
install(FILES ${CMAKE_SOURCE_DIR}/host/proto/nodehost/admin.proto
  DESTINATION ${CMAKE_INSTALL_DATADIR}/nodehost/proto/nodehost)
# gorums.proto (the call-type options, import "gorums.proto") and the stub generator that reads
# them: protoc --plugin=protoc-gen-nodehost ... (on PATH as bin/protoc-gen-nodehost).
install(FILES ${CMAKE_SOURCE_DIR}/sdk/proto/gorums/gorums.proto
  DESTINATION ${CMAKE_INSTALL_DATADIR}/nodehost/proto)
if(TARGET protoc-gen-nodehost)
  install(TARGETS protoc-gen-nodehost RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

# ---- programs and bundled plugins -----------------------------------------------------------
# The programs find the installed library through their RPATH (host/ installs them to bin/).
file(RELATIVE_PATH _nh_bin_to_lib ${CMAKE_INSTALL_FULL_BINDIR} ${CMAKE_INSTALL_FULL_LIBDIR})
foreach(t IN ITEMS nodehost_exe nodehost-demo nh-storage-client)
  if(TARGET ${t})
    set_target_properties(${t} PROPERTIES INSTALL_RPATH "$ORIGIN/${_nh_bin_to_lib}")
  endif()
endforeach()
if(TARGET nh-storage-client)
  install(TARGETS nh-storage-client RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

# Plugins need libnodehost.so.0, which the host process has always loaded already; the RPATH
# only matters to tools such as ldd.
foreach(p IN ITEMS hello benchmark storage)
  if(TARGET ${p})
    set_target_properties(${p} PROPERTIES INSTALL_RPATH "$ORIGIN/../..")
    install(TARGETS ${p} LIBRARY DESTINATION ${NH_INSTALL_PLUGINDIR})
  endif()
endforeach()

# ---- pkg-config -----------------------------------------------------------------------------
# Stage 1 (now): everything but the prefix. Stage 2 (install time): the prefix installed to.
if(IS_ABSOLUTE "${NH_INSTALL_LIBDIR}")
  set(NH_PC_LIBDIR "${NH_INSTALL_LIBDIR}")
else()
  set(NH_PC_LIBDIR "\${prefix}/${NH_INSTALL_LIBDIR}")
endif()
set(NH_PC_INCLUDEDIR "\${prefix}/${NH_INSTALL_INCLUDEDIR}")
set(NH_PC_PREFIX "@NH_PC_PREFIX@") # kept for stage 2
file(STRINGS ${CMAKE_SOURCE_DIR}/sdk/include/nodehost/plugin.h _nh_abi_line
  REGEX "^#define NH_PLUGIN_ABI_VERSION ")
string(REGEX REPLACE "^#define NH_PLUGIN_ABI_VERSION ([0-9]+)u?.*" "\\1" NH_PLUGIN_ABI
  "${_nh_abi_line}")
configure_file(${CMAKE_CURRENT_LIST_DIR}/nodehost.pc.in ${CMAKE_BINARY_DIR}/nodehost.pc.stage1
  @ONLY)
install(CODE "
  file(READ \"${CMAKE_BINARY_DIR}/nodehost.pc.stage1\" _nh_pc)
  string(REPLACE \"@NH_PC_PREFIX@\" \"\${CMAKE_INSTALL_PREFIX}\" _nh_pc \"\${_nh_pc}\")
  file(WRITE \"${CMAKE_BINARY_DIR}/nodehost.pc.install\" \"\${_nh_pc}\")
")
install(FILES ${CMAKE_BINARY_DIR}/nodehost.pc.install DESTINATION ${NH_INSTALL_PKGCONFIGDIR}
  RENAME nodehost.pc)

# ---- the CMake package ----------------------------------------------------------------------
install(EXPORT NodehostTargets NAMESPACE Nodehost:: DESTINATION ${NH_INSTALL_CMAKEDIR})
set(NH_INSTALL_PROTODIR ${CMAKE_INSTALL_DATADIR}/nodehost/proto)
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/NodehostConfig.cmake.in
  ${CMAKE_BINARY_DIR}/NodehostConfig.cmake
  INSTALL_DESTINATION ${NH_INSTALL_CMAKEDIR}
  PATH_VARS NH_INSTALL_INCLUDEDIR NH_INSTALL_LIBDIR NH_INSTALL_PLUGINDIR CMAKE_INSTALL_BINDIR
  NH_INSTALL_PROTODIR)
# libnodehost.so.<major>: versions with the same major number are compatible.
write_basic_package_version_file(${CMAKE_BINARY_DIR}/NodehostConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES
  ${CMAKE_BINARY_DIR}/NodehostConfig.cmake
  ${CMAKE_BINARY_DIR}/NodehostConfigVersion.cmake
  ${CMAKE_CURRENT_LIST_DIR}/NodehostPlugin.cmake
  ${CMAKE_CURRENT_LIST_DIR}/NodehostProto.cmake
  DESTINATION ${NH_INSTALL_CMAKEDIR})

# ---- the program's files: configuration, examples, documentation, manual pages, units -------
set(NH_INSTALL_DATADIR ${CMAKE_INSTALL_DATADIR}/nodehost)
set(NH_INSTALL_UNITDIR lib/systemd/system)
install(FILES ${CMAKE_SOURCE_DIR}/conf/reference.yaml DESTINATION ${NH_INSTALL_DATADIR})
install(FILES ${CMAKE_SOURCE_DIR}/conf/single-node.yaml ${CMAKE_SOURCE_DIR}/conf/cluster-3.yaml
  ${CMAKE_SOURCE_DIR}/conf/cluster-3-tls.yaml DESTINATION ${NH_INSTALL_DATADIR}/examples)
file(GLOB _nh_docs CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/docs/*.md)
install(FILES ${CMAKE_SOURCE_DIR}/README.md ${_nh_docs} DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${CMAKE_SOURCE_DIR}/docs/man/nodehost.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${CMAKE_SOURCE_DIR}/docs/man/nodehost.yaml.5 DESTINATION ${CMAKE_INSTALL_MANDIR}/man5)
install(FILES ${CMAKE_SOURCE_DIR}/deploy/systemd/nodehost.service
  ${CMAKE_SOURCE_DIR}/deploy/systemd/nodehost@.service DESTINATION ${NH_INSTALL_UNITDIR})

# Files that name the installed plugins: filled in at install time (the prefix is known then).
# The units name /usr/bin/nodehost: they are for the package (prefix /usr).
function(_nh_install_configured template name dest conffile)
  install(CODE "
    set(NH_IC_TEMPLATE \"${template}\")
    set(NH_IC_NAME \"${name}\")
    set(NH_IC_DEST \"${dest}\")
    set(NH_IC_PLUGINDIR \"${NH_INSTALL_PLUGINDIR}\")
    set(NH_IC_DATADIR \"${NH_INSTALL_DATADIR}\")
    set(NH_IC_CONFFILE ${conffile})
    set(NH_IC_TMPDIR \"${CMAKE_BINARY_DIR}/nh-install-configured\")
    include(\"${CMAKE_CURRENT_FUNCTION_LIST_DIR}/NodehostInstallConfigured.cmake\")
  ")
endfunction()
_nh_install_configured(${CMAKE_SOURCE_DIR}/deploy/systemd/nodehost.yaml.in nodehost.yaml
  SYSCONF/nodehost ON)
_nh_install_configured(${CMAKE_SOURCE_DIR}/deploy/systemd/cluster.yaml.in cluster.yaml
  ${NH_INSTALL_DATADIR}/examples OFF)

# The Debian package (CPack's DEB generator):
#
#   cmake -S . -B build -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_BUILD_TYPE=Release
#   cmake --build build -j
#   cd build && cpack -G DEB            # nodehost_<version>_<arch>.deb
#
# One package, nodehost, installed under /usr (what `cmake --install` lays out, see
# NodehostInstall.cmake: programs, libnodehost and its SDK files, the bundled plugins, manual
# pages, documentation, systemd units) plus /etc/nodehost/nodehost.yaml, a conffile. Its
# dependencies are computed by dpkg-shlibdeps (dpkg-dev) from the ELF files when it is there,
# else they are the Debian 12 runtime libraries listed below. The maintainer scripts
# (cmake/debian/) only tell systemd about the units (daemon-reload) and stop the services on
# removal: installing or upgrading enables, starts or restarts nothing.
#
# A build configured for another prefix (/usr/local by default) packages under /usr all the same;
# its library directory is then lib/ rather than lib/<multiarch>/ (both are searched by ld.so).

set(NH_PACKAGE_MAINTAINER "nodehost maintainers <nodehost@localhost>"
  CACHE STRING "The Maintainer field of the Debian package")

set(CPACK_PACKAGE_NAME nodehost)
set(CPACK_PACKAGE_VENDOR "nodehost")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "node host for quorum-based distributed services (Gorums)")
set(CPACK_PACKAGE_DESCRIPTION "\
One nodehost process runs one node of a quorum cluster from a YAML file: it speaks the \
Gorums protocol over gRPC, loads handler plugins (shared objects) and reloads them without \
dropping connections. Bundled plugins: storage (a replicated key-value store, with \
nh-storage-client), benchmark and hello. Includes the libnodehost SDK for plugins and client \
programs (headers, pkg-config and CMake files) and systemd units.")
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES OFF)

set(CPACK_DEBIAN_PACKAGE_NAME nodehost)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${NH_PACKAGE_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# What plugin authors build with (the package carries the SDK's headers and build files;
# protoc runs bin/protoc-gen-nodehost, libprotobuf-dev has google/protobuf/*.proto).
set(CPACK_DEBIAN_PACKAGE_SUGGESTS
  "libprotobuf-c-dev, protobuf-c-compiler, protobuf-compiler, libprotobuf-dev, pkg-config, cmake")

find_program(NH_DPKG_SHLIBDEPS dpkg-shlibdeps)
mark_as_advanced(NH_DPKG_SHLIBDEPS)
if(NH_DPKG_SHLIBDEPS)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
  # libnodehost.so.0 is in the package itself: the programs and plugins find it there.
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS
    ${CMAKE_BINARY_DIR}/sdk)
else()
  set(CPACK_DEBIAN_PACKAGE_DEPENDS
    "libgrpc29, libprotobuf-c1, libuv1, libyaml-0-2, liblmdb0, libssl3, libmicrohttpd12, libsystemd0, libc6")
endif()
# The package carries a public shared library: a shlibs file (written here rather than by
# CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS, which warns about every plugin, a module without a
# soname) and an ldconfig trigger (CPack's own ldconfig calls are not made when the package has
# its own postinst and postrm).
set(NH_SOVERSION ${PROJECT_VERSION_MAJOR})
configure_file(${CMAKE_CURRENT_LIST_DIR}/debian/shlibs.in ${CMAKE_BINARY_DIR}/debian/shlibs @ONLY)

set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${CMAKE_CURRENT_LIST_DIR}/debian/conffiles
  ${CMAKE_BINARY_DIR}/debian/shlibs
  ${CMAKE_CURRENT_LIST_DIR}/debian/triggers
  ${CMAKE_CURRENT_LIST_DIR}/debian/postinst
  ${CMAKE_CURRENT_LIST_DIR}/debian/prerm
  ${CMAKE_CURRENT_LIST_DIR}/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

# `make package_source`: the sources only, never the build directories kept in the tree.
set(CPACK_SOURCE_GENERATOR TGZ)
set(CPACK_SOURCE_PACKAGE_FILE_NAME nodehost-${PROJECT_VERSION})
set(CPACK_SOURCE_IGNORE_FILES "/\\.git/" "/build[^/]*/" "/_CPack_Packages/" "\\.deb$"
  "__pycache__")

# Packages go to the directory cpack runs in, or to `cpack -B DIR`.
include(CPack)

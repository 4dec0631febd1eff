#!/usr/bin/env bash
# The installed SDK works out of tree (ctest: install.out_of_tree).
#
#   tests/install/test_install.sh BUILD_DIR SOURCE_DIR
#
# BUILD_DIR must hold a finished build (nodehost, libnodehost, the bundled plugins: tests/run.sh
# builds everything). The test
#  1. installs BUILD_DIR into a temporary prefix (cmake --install --prefix; no root, nothing
#     outside the prefix) and checks the layout: headers, libnodehost.so.0 (+ .so), bundled
#     plugins, nodehost.pc, the CMake package, the program's files (reference.yaml, manual
#     pages, units, etc/nodehost/nodehost.yaml naming this prefix's plugins and valid as
#     installed); every installed header compiles on its own;
#  2. copies plugins/hello (hello.c, hello.proto, standalone/CMakeLists.txt) to a temporary
#     directory outside the source tree and builds it against the prefix two ways:
#       a. CMake: find_package(Nodehost) + nh_add_plugin (standalone/CMakeLists.txt),
#       b. pkg-config only: protoc with protoc-gen-c and the installed protoc-gen-nodehost
#          (pkg-config variables protodir, protoc_gen_nodehost) + cc -shared -fPIC;
#     each hello.so must need libnodehost.so.0 and export nh_plugin_entry only;
#  3. for each build: nodehost --check-config passes (and rejects an empty greeting with its
#     position), a real node serves the plugin: hello.Greeter.SayHello and SayHelloQC over
#     Debian's python3-grpcio answer "<greeting>, <name>! (from node 1)", the process has one
#     libnodehost mapped (the plugin bound to the host's copy), SIGTERM stops it with exit 0.
# Exit 0 on success; otherwise 1 and the reason (with the failing command's output).
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 BUILD_DIR SOURCE_DIR" >&2
  exit 2
fi
[ -d "$1" ] || { echo "test_install: FAIL: build directory '$1' does not exist" >&2; exit 1; }
[ -d "$2/sdk/include/nodehost" ] || { echo "test_install: FAIL: '$2' is not the nodehost source tree" >&2; exit 1; }
build=$(cd "$1" && pwd -P)
src=$(cd "$2" && pwd -P)
python=${NH_PYTHON:-/usr/bin/python3}
unset DESTDIR

node_pid=""
tmp=""
cleanup() {
  if [ -n "$node_pid" ] && kill -0 "$node_pid" 2>/dev/null; then
    kill -KILL "$node_pid" 2>/dev/null || true
    wait "$node_pid" 2>/dev/null || true
  fi
  if [ -n "$tmp" ]; then rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'echo "test_install: interrupted" >&2; exit 1' INT TERM

fail() {
  echo "test_install: FAIL: $*" >&2
  exit 1
}
step() { echo "== $*"; }

# run LOG CMD...: runs CMD with its output in $tmp/LOG.log; on failure prints it and fails.
run() {
  local log=$tmp/$1.log
  shift
  if ! "$@" >"$log" 2>&1; then
    echo "---- $* (output: $log)" >&2
    tail -n 60 "$log" >&2
    fail "command failed: $*"
  fi
}

# ---- prerequisites -------------------------------------------------------------------------
nodehost=$build/host/nodehost
[ -x "$nodehost" ] || fail "$nodehost not found: build the project first (tests/run.sh)"
[ -f "$build/plugins/hello.so" ] || fail "$build/plugins/hello.so not found: build target hello"
[ -f "$build/cmake_install.cmake" ] || fail "$build is not a configured CMake build directory"
for tool in cmake pkg-config protoc-c cc readelf nm; do
  command -v "$tool" >/dev/null || fail "$tool not found"
done
[ -x "$python" ] || fail "$python not found"
"$python" -c 'import grpc' 2>/dev/null || fail "$python cannot import grpc (python3-grpcio)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/nh-install-test.XXXXXX")
tmp=$(cd "$tmp" && pwd -P)
case "$tmp/" in
  "$src"/* | "$build"/*) fail "temporary directory $tmp is inside the source or build tree" ;;
esac
prefix=$tmp/prefix

# ---- 1. install ----------------------------------------------------------------------------
step "cmake --install $build --prefix $prefix"
run install cmake --install "$build" --prefix "$prefix"
manifest=$build/install_manifest.txt
[ -s "$manifest" ] || fail "no $manifest after cmake --install"
while IFS= read -r f; do
  case "$f" in
    "$prefix"/*) ;;
    *) fail "cmake --install wrote outside the prefix: $f" ;;
  esac
done <"$manifest"

pc=$(find "$prefix" -name nodehost.pc -path '*/pkgconfig/*' | head -n 1)
[ -n "$pc" ] || fail "nodehost.pc not installed under $prefix"
libdir=$(dirname "$(dirname "$pc")")
echo "   libdir: ${libdir#"$prefix"/}"

for h in "$src"/sdk/include/nodehost/*.h; do
  [ -f "$prefix/include/nodehost/$(basename "$h")" ] || fail "header $(basename "$h") not installed"
done
for f in plugin.h conf.h log.h nodehost.h; do
  [ -f "$prefix/include/nodehost/$f" ] || fail "include/nodehost/$f not installed"
done
[ -f "$libdir/libnodehost.so.0" ] || fail "$libdir/libnodehost.so.0 not installed"
[ -L "$libdir/libnodehost.so" ] || fail "$libdir/libnodehost.so (symlink) not installed"
soname=$(readelf -d "$libdir/libnodehost.so.0" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = libnodehost.so.0 ] || fail "installed library's SONAME is '$soname'"
for p in hello benchmark storage; do
  [ -f "$libdir/nodehost/plugins/$p.so" ] || fail "bundled plugin $p.so not in $libdir/nodehost/plugins"
done
cmakedir=$libdir/cmake/Nodehost
for f in NodehostConfig.cmake NodehostConfigVersion.cmake NodehostTargets.cmake \
  NodehostPlugin.cmake NodehostProto.cmake; do
  [ -f "$cmakedir/$f" ] || fail "$cmakedir/$f not installed"
done
[ -x "$prefix/bin/nodehost" ] || fail "bin/nodehost not installed"
run installed-version "$prefix/bin/nodehost" --version

# The program's files (tests/install/test_package.sh checks them in the Debian package): the
# default configuration names the plugins of this prefix and is valid as installed.
for f in share/nodehost/reference.yaml share/nodehost/examples/cluster.yaml \
  share/man/man1/nodehost.1 share/man/man5/nodehost.yaml.5 share/doc/nodehost/README.md \
  lib/systemd/system/nodehost.service lib/systemd/system/nodehost@.service \
  etc/nodehost/nodehost.yaml; do
  [ -f "$prefix/$f" ] || fail "$f not installed"
done
grep -qF "\${NH_PLUGIN_DIR:-$libdir/nodehost/plugins}/hello.so" "$prefix/etc/nodehost/nodehost.yaml" ||
  fail "etc/nodehost/nodehost.yaml does not name $libdir/nodehost/plugins: $(grep path: "$prefix/etc/nodehost/nodehost.yaml")"
mkdir -m 700 "$tmp/etc-state"
run installed-etc-check env -u NH_PLUGIN_DIR "$prefix/bin/nodehost" \
  --config "$prefix/etc/nodehost/nodehost.yaml" --check-config --state-dir "$tmp/etc-state"

export PKG_CONFIG_PATH=$libdir/pkgconfig
version=$(pkg-config --modversion nodehost) || fail "pkg-config cannot read $pc"
expected_version=$(sed -n 's/^CMAKE_PROJECT_VERSION:[A-Z]*=//p' "$build/CMakeCache.txt")
[ -z "$expected_version" ] || [ "$version" = "$expected_version" ] ||
  fail "nodehost.pc says version $version, the build is $expected_version"
pc_cflags=$(pkg-config --cflags nodehost)
pc_libs=$(pkg-config --libs nodehost)
echo "   pkg-config nodehost $version: $pc_cflags $pc_libs"
case " $pc_cflags " in *" -I$prefix/include "*) ;; *) fail "Cflags lack -I$prefix/include: $pc_cflags" ;; esac
case " $pc_libs " in *" -lnodehost "*) ;; *) fail "Libs lack -lnodehost: $pc_libs" ;; esac
case " $pc_libs " in *" -lprotobuf-c "*) ;; *) fail "Libs lack -lprotobuf-c (Requires): $pc_libs" ;; esac

step "every installed header compiles on its own"
for h in "$prefix"/include/nodehost/*.h; do
  # shellcheck disable=SC2086
  printf '#include <nodehost/%s>\n' "$(basename "$h")" |
    cc -std=c11 -Wall -Wextra -Werror -fsyntax-only -x c - $pc_cflags >"$tmp/hdr.log" 2>&1 ||
    { cat "$tmp/hdr.log" >&2; fail "installed header $(basename "$h") does not compile alone"; }
done

# ---- 2. build hello out of tree ------------------------------------------------------------
step "copy plugins/hello to $tmp/src/hello"
mkdir -p "$tmp/src"
cp -R "$src/plugins/hello" "$tmp/src/hello"
hello_src=$tmp/src/hello
[ -f "$hello_src/standalone/CMakeLists.txt" ] || fail "plugins/hello/standalone/CMakeLists.txt missing"

# The promise of the typed stubs: hello.c in at most 40 lines of C without comments and blank
# lines, built out of tree with at most 5 lines of CMake.
c_lines=$("$python" - "$hello_src/hello.c" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
text = re.sub(r"//[^\n]*", "", text)
print(sum(1 for line in text.splitlines() if line.strip()))
PY
)
cmake_lines=$(grep -cv -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$hello_src/standalone/CMakeLists.txt")
echo "   hello.c: $c_lines lines of C; standalone/CMakeLists.txt: $cmake_lines lines of CMake"
[ "$c_lines" -le 40 ] || fail "plugins/hello/hello.c has $c_lines lines of C (at most 40)"
[ "$cmake_lines" -le 5 ] || fail "hello's standalone CMakeLists.txt has $cmake_lines lines (at most 5)"

step "(a) CMake: find_package(Nodehost) + nh_add_plugin"
run cmake-configure cmake -S "$hello_src/standalone" -B "$tmp/build-cmake" \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
run cmake-build cmake --build "$tmp/build-cmake" -j 2
found_dir=$(sed -n 's/^Nodehost_DIR:PATH=//p' "$tmp/build-cmake/CMakeCache.txt")
[ "$found_dir" = "$cmakedir" ] || fail "find_package(Nodehost) used '$found_dir', not $cmakedir"
so_cmake=$tmp/build-cmake/plugins/hello.so
[ -f "$so_cmake" ] || fail "the CMake build did not produce $so_cmake"
if grep -rqsF -e "$src/" -e "$build/" "$tmp/build-cmake" --include='*.make' --include='*.txt' \
  --include='*.ninja'; then
  fail "the out-of-tree CMake build refers to the source or build tree"
fi

step "(b) pkg-config: protoc (protoc-gen-c + protoc-gen-nodehost) + cc -shared -fPIC"
mkdir -p "$tmp/build-pc/gen"
protodir=$(pkg-config --variable=protodir nodehost)
stubgen=$(pkg-config --variable=protoc_gen_nodehost nodehost)
[ "$protodir" = "$prefix/share/nodehost/proto" ] || fail "pkg-config protodir is '$protodir'"
[ -x "$stubgen" ] || fail "pkg-config protoc_gen_nodehost '$stubgen' is not an installed program"
# gorums.proto and descriptor.proto: hello.pb-c.h includes their headers.
run protoc protoc -I"$hello_src" -I"$protodir" -I/usr/include \
  --plugin=protoc-gen-nodehost="$stubgen" --c_out="$tmp/build-pc/gen" \
  --nodehost_out="$tmp/build-pc/gen" "$hello_src/hello.proto" gorums.proto \
  google/protobuf/descriptor.proto
so_pc=$tmp/build-pc/hello.so
# shellcheck disable=SC2046
run cc cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -shared -fPIC -fvisibility=hidden \
  -Wl,-z,defs -I"$tmp/build-pc/gen" -o "$so_pc" "$hello_src/hello.c" \
  "$tmp/build-pc/gen/hello.pb-c.c" "$tmp/build-pc/gen/hello.nh.c" \
  $(pkg-config --cflags --libs nodehost)

for so in "$so_cmake" "$so_pc"; do
  grep -q 'NEEDED.*\[libnodehost\.so\.0\]' <<<"$(readelf -d "$so")" ||
    fail "$so does not need libnodehost.so.0: $(readelf -d "$so" | grep NEEDED)"
  exported=$(nm -D --defined-only "$so" | awk '$2 ~ /^[TDBR]$/ {print $3}' | sort | tr '\n' ' ')
  [ "$exported" = "nh_plugin_entry " ] ||
    fail "$so exports '$exported', expected only nh_plugin_entry"
done
echo "   both: NEEDED libnodehost.so.0, exported: nh_plugin_entry"

# ---- 3. check the configuration and serve ----------------------------------------------------
state=$tmp/state
mkdir -m 700 "$state"
greeting="Howdy"
name="out-of-tree"

write_config() { # FILE SO PORT GREETING
  cat >"$1" <<EOF
version: 1
node: { id: 1, listen: "127.0.0.1:$3" }
plugins:
  - name: hello
    path: $2
    config:
      greeting: "$4"
log: { level: info }
EOF
}

free_port() {
  "$python" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# serve LABEL SO: starts a node with SO, calls it, stops it.
serve() {
  local label=$1 so=$2 cfg=$tmp/hello-$1.yaml log=$tmp/node-$1.log port attempt
  for attempt in 1 2 3; do
    port=$(free_port)
    write_config "$cfg" "$so" "$port" "$greeting"
    "$nodehost" --config "$cfg" --state-dir "$state" >"$log" 2>&1 &
    node_pid=$!
    local waited=0
    while kill -0 "$node_pid" 2>/dev/null && ! grep -q "serving on" "$log"; do
      sleep 0.05
      waited=$((waited + 1))
      [ "$waited" -lt 300 ] || { cat "$log" >&2; fail "[$label] node not serving after 15 s"; }
    done
    if grep -q "serving on" "$log"; then break; fi
    wait "$node_pid" 2>/dev/null || true
    node_pid=""
    if grep -q "cannot serve" "$log" && [ "$attempt" -lt 3 ]; then continue; fi # lost the port
    cat "$log" >&2
    fail "[$label] nodehost exited before serving"
  done
  echo "   [$label] node $node_pid serving on 127.0.0.1:$port"

  local libs
  libs=$(grep -o '/[^ ]*libnodehost\.so[^ ]*' "/proc/$node_pid/maps" | sort -u)
  [ "$(printf '%s\n' "$libs" | wc -l)" -eq 1 ] ||
    fail "[$label] more than one libnodehost mapped in the node: $libs"
  case "$libs" in
    "$build"/*) ;;
    *) fail "[$label] the node maps $libs, expected the build tree's library" ;;
  esac

  if ! NH_SOURCE_DIR=$src "$python" "$src/tests/install/hello_client.py" "127.0.0.1:$port" \
    "$name" "$greeting" 1 >"$tmp/client-$label.log" 2>&1; then
    cat "$tmp/client-$label.log" >&2
    echo "---- node log" >&2
    cat "$log" >&2
    fail "[$label] hello.Greeter calls failed"
  fi
  sed 's/^/   ['"$label"'] /' "$tmp/client-$label.log"

  kill -TERM "$node_pid"
  local rc=0 waited=0
  while kill -0 "$node_pid" 2>/dev/null; do
    sleep 0.05
    waited=$((waited + 1))
    [ "$waited" -lt 200 ] || { cat "$log" >&2; fail "[$label] node still running 10 s after SIGTERM"; }
  done
  wait "$node_pid" || rc=$?
  node_pid=""
  [ "$rc" -eq 0 ] || { cat "$log" >&2; fail "[$label] node exited with $rc after SIGTERM"; }
  grep -q "node 1 stopped" "$log" || { cat "$log" >&2; fail "[$label] no 'node 1 stopped' in the log"; }
  echo "   [$label] SIGTERM -> exit 0"
}

for label in cmake pkgconfig; do
  if [ "$label" = cmake ]; then so=$so_cmake; else so=$so_pc; fi
  step "[$label] nodehost --check-config"
  write_config "$tmp/check-$label.yaml" "$so" 7000 "$greeting"
  run "check-$label" "$nodehost" --config "$tmp/check-$label.yaml" --check-config --state-dir "$state"
  # The installed program (RPATH $ORIGIN/../lib) accepts it too.
  run "check-installed-$label" "$prefix/bin/nodehost" --config "$tmp/check-$label.yaml" \
    --check-config --state-dir "$state"
  # The plugin's own check_config runs: an empty greeting is an error at its position.
  write_config "$tmp/bad-$label.yaml" "$so" 7000 ""
  if "$nodehost" --config "$tmp/bad-$label.yaml" --check-config --state-dir "$state" \
    >"$tmp/bad-$label.log" 2>&1; then
    fail "[$label] --check-config accepted an empty greeting"
  fi
  grep -q "bad-$label.yaml:7:[0-9]*: .*greeting.*must not be empty" "$tmp/bad-$label.log" ||
    { cat "$tmp/bad-$label.log" >&2; fail "[$label] unexpected error for an empty greeting"; }
  echo "   [$label] valid config accepted; empty greeting: $(head -n 1 "$tmp/bad-$label.log")"

  step "[$label] serve hello.Greeter and call it with grpcio"
  serve "$label" "$so"
done

echo "test_install: OK"

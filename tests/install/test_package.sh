#!/usr/bin/env bash
# The Debian package, its files, manual pages and systemd units (ctest: install.package).
#
#   tests/install/test_package.sh BUILD_DIR SOURCE_DIR
#
# BUILD_DIR must hold a finished build (tests/run.sh builds everything); any CMAKE_INSTALL_PREFIX
# (the package is always laid out under /usr). The test
#  1. runs `cpack -G DEB` on BUILD_DIR's CPackConfig.cmake, into a temporary directory (nothing
#     is installed on this machine: the package is only unpacked);
#  2. checks the package with dpkg-deb: name nodehost, the build's version, a maintainer, the
#     Debian runtime libraries in Depends, /etc/nodehost/nodehost.yaml a conffile, and the files:
#     programs, libnodehost, headers, the bundled plugins, reference.yaml and the examples, the
#     documentation, both manual pages and both systemd units, nothing outside /usr and
#     /etc/nodehost;
#  3. unpacks it (dpkg -x) into a scratch root and runs the unpacked programs from there
#     (LD_LIBRARY_PATH = the scratch root's library directory): `nodehost --version`,
#     `--check-config` of the shipped /etc/nodehost/nodehost.yaml (its plugin path is the
#     package's plugin directory, NH_PLUGIN_DIR pointing into the scratch root), of the example
#     cluster.yaml and of reference.yaml; then the shipped configuration serves (on a free port):
#     `nodehost status` answers and SIGTERM stops it with exit 0;
#  4. the manual pages render without a warning (man -l, groff -wall; skipped when man or groff
#     is missing), carry the build's version, and name every option of `nodehost --help` and
#     every configuration key the parser knows (host/config/*.c: node.id, tls.cert, metrics.listen,
#     ...);
#  5. `systemd-analyze verify` passes on both units, with ExecStart rewritten to the scratch
#     root's binary (skipped when systemd-analyze is missing).
# Exit 0 on success; otherwise 1 and the reason (with the failing command's output).
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 BUILD_DIR SOURCE_DIR" >&2
  exit 2
fi
[ -d "$1" ] || { echo "test_package: FAIL: build directory '$1' does not exist" >&2; exit 1; }
[ -f "$2/deploy/systemd/nodehost.service" ] ||
  { echo "test_package: FAIL: '$2' is not the nodehost source tree" >&2; exit 1; }
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
trap 'echo "test_package: interrupted" >&2; exit 1' INT TERM

fail() {
  echo "test_package: FAIL: $*" >&2
  exit 1
}
step() { echo "== $*"; }
skip_note() { echo "   SKIP: $*"; }

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
[ -x "$build/host/nodehost" ] || fail "$build/host/nodehost not found: build the project first"
[ -f "$build/CPackConfig.cmake" ] || fail "$build/CPackConfig.cmake not found (configure the build)"
for tool in cpack dpkg-deb dpkg; do
  command -v "$tool" >/dev/null || fail "$tool not found"
done
[ -x "$python" ] || fail "$python not found"
version=$(sed -n 's/^CMAKE_PROJECT_VERSION:[A-Z]*=//p' "$build/CMakeCache.txt")
[ -n "$version" ] || fail "no CMAKE_PROJECT_VERSION in $build/CMakeCache.txt"
arch=$(dpkg --print-architecture)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/nh-package-test.XXXXXX")
tmp=$(cd "$tmp" && pwd -P)
case "$tmp/" in
  "$src"/* | "$build"/*) fail "temporary directory $tmp is inside the source or build tree" ;;
esac
etc_before=no
[ -e /etc/nodehost ] && etc_before=yes
started=$(date +%s)

# ---- 1. cpack --------------------------------------------------------------------------------
step "cpack -G DEB ($build, into $tmp/out)"
run cpack bash -c "cd '$tmp' && cpack -G DEB --config '$build/CPackConfig.cmake' -B '$tmp/out'"
deb=$tmp/out/nodehost_${version}_${arch}.deb
[ -f "$deb" ] || { ls -l "$tmp/out" >&2; fail "no $(basename "$deb") in $tmp/out"; }
if [ "$etc_before" = no ] && [ -e /etc/nodehost ]; then
  fail "cpack wrote /etc/nodehost on this machine (the install did not honour DESTDIR)"
fi
echo "   $(basename "$deb"): $(stat -c %s "$deb") bytes"

# ---- 2. the package's fields and files -------------------------------------------------------
step "dpkg-deb -I / -c"
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = nodehost ] || fail "Package is '$(field Package)'"
[ "$(field Version)" = "$version" ] || fail "Version is '$(field Version)', the build is $version"
[ "$(field Architecture)" = "$arch" ] || fail "Architecture is '$(field Architecture)'"
maintainer=$(field Maintainer)
[[ "$maintainer" == *"<"*"@"*">" ]] || fail "Maintainer is '$maintainer'"
depends=$(field Depends)
echo "   Depends: $depends"
for dep in libgrpc29 libprotobuf-c1 libuv1 libyaml-0-2 liblmdb0 libssl3 libmicrohttpd12 libsystemd0; do
  [[ ", $depends," =~ ,\ ${dep}[\ ,] ]] || fail "Depends lacks $dep: $depends"
done
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles >"$tmp/conffiles" 2>/dev/null ||
  fail "the package has no conffiles"
grep -qx /etc/nodehost/nodehost.yaml "$tmp/conffiles" ||
  fail "/etc/nodehost/nodehost.yaml is not a conffile: $(cat "$tmp/conffiles")"

dpkg-deb -c "$deb" >"$tmp/contents"
# "./usr/bin/nodehost" for every entry (symbolic links: the link's own name).
awk '{ p = $6; sub(/^\.\//, "/", p); sub(/\/$/, "", p); if (p != "" && p != "/") print p }' \
  "$tmp/contents" | sort >"$tmp/paths"
if awk '$2 != "root/root"' "$tmp/contents" | grep -q .; then
  fail "files not owned by root/root: $(awk '$2 != "root/root"' "$tmp/contents" | head -3)"
fi
outside=$(grep -v -e '^/usr$' -e '^/usr/' -e '^/etc$' -e '^/etc/nodehost$' -e '^/etc/nodehost/' \
  "$tmp/paths" || true)
[ -z "$outside" ] || fail "files outside /usr and /etc/nodehost: $outside"
grep -q -e '^/usr/local' "$tmp/paths" && fail "files under /usr/local"
lib=$(sed -n 's|^\(/usr/lib\(/[^/]*-linux-[^/]*\)\{0,1\}\)/libnodehost\.so\.0$|\1|p' "$tmp/paths")
[ -n "$lib" ] || fail "no /usr/lib[/<multiarch>]/libnodehost.so.0 in the package"
plugindir=$lib/nodehost/plugins
echo "   library directory: $lib"
expected=(
  /usr/bin/nodehost /usr/bin/nh-storage-client /usr/bin/nodehost-demo
  "$lib/libnodehost.so" "$lib/pkgconfig/nodehost.pc" "$lib/cmake/Nodehost/NodehostConfig.cmake"
  "$plugindir/hello.so" "$plugindir/benchmark.so" "$plugindir/storage.so"
  /usr/include/nodehost/nodehost.h /usr/include/nodehost/plugin.h
  /usr/share/nodehost/reference.yaml /usr/share/nodehost/proto/nodehost/admin.proto
  /usr/share/nodehost/examples/single-node.yaml /usr/share/nodehost/examples/cluster-3.yaml
  /usr/share/nodehost/examples/cluster-3-tls.yaml /usr/share/nodehost/examples/cluster.yaml
  /usr/share/doc/nodehost/README.md /usr/share/doc/nodehost/architecture.md
  /usr/share/doc/nodehost/plugin-guide.md
  /usr/share/man/man1/nodehost.1 /usr/share/man/man5/nodehost.yaml.5
  /usr/lib/systemd/system/nodehost.service /usr/lib/systemd/system/nodehost@.service
  /etc/nodehost/nodehost.yaml
)
for f in "${expected[@]}"; do
  grep -qxF "$f" "$tmp/paths" || fail "$f is not in the package"
done
for f in "$src"/docs/*.md; do
  grep -qxF "/usr/share/doc/nodehost/$(basename "$f")" "$tmp/paths" ||
    fail "docs/$(basename "$f") is not in /usr/share/doc/nodehost"
done
echo "   $(wc -l <"$tmp/paths") entries, all expected files present"

# ---- 3. unpack and run -------------------------------------------------------------------------
root=$tmp/root
step "dpkg -x into $root; run the unpacked programs"
run unpack dpkg -x "$deb" "$root"
for u in nodehost.service nodehost@.service; do
  cmp -s "$root/usr/lib/systemd/system/$u" "$src/deploy/systemd/$u" ||
    fail "the packaged $u differs from deploy/systemd/$u"
done
# The units set MemoryDenyWriteExecute=yes: no packaged ELF file may need text relocations or an
# executable stack (both need memory made executable after mapping, which the filter refuses).
if command -v readelf >/dev/null; then
  elves=0
  while IFS= read -r f; do
    head -c 4 "$f" | grep -q $'^\x7fELF' || continue
    elves=$((elves + 1))
    ! grep -q -e TEXTREL -e 'FLAGS.*TEXTREL' <<<"$(readelf -dW "$f")" || fail "$f has text relocations"
    grep -q 'GNU_STACK.* RW  ' <<<"$(readelf -lW "$f")" ||
      fail "$f has no non-executable GNU_STACK: $(readelf -lW "$f" | grep GNU_STACK)"
  done < <(find "$root" -type f)
  [ "$elves" -ge 7 ] || fail "only $elves ELF files in the package"
  echo "   $elves ELF files: no text relocations, non-executable stacks (MemoryDenyWriteExecute)"
fi
export LD_LIBRARY_PATH=$root$lib
export NH_PLUGIN_DIR=$root$plugindir
nodehost=$root/usr/bin/nodehost
out=$("$nodehost" --version) || fail "$nodehost --version failed"
[ "$out" = "nodehost $version" ] || fail "--version says '$out', expected 'nodehost $version'"
# The unpacked program uses the unpacked library. (Output read first: `ldd | grep -q` fails
# under pipefail when grep stops reading early.)
grep -q "libnodehost.so.0 => $root$lib/libnodehost.so.0" <<<"$(ldd "$nodehost")" ||
  fail "the unpacked nodehost does not use the unpacked library: $(ldd "$nodehost" | grep nodehost)"
echo "   $out"

conf=$root/etc/nodehost/nodehost.yaml
grep -qF "\${NH_PLUGIN_DIR:-$plugindir}/hello.so" "$conf" ||
  fail "the shipped nodehost.yaml does not name $plugindir/hello.so: $(grep path: "$conf")"
grep -qF "\${NH_PLUGIN_DIR:-$plugindir}/storage.so" "$root/usr/share/nodehost/examples/cluster.yaml" ||
  fail "examples/cluster.yaml does not name $plugindir/storage.so"
state=$tmp/state
mkdir -m 700 "$state"
run check-etc "$nodehost" --config "$conf" --check-config --state-dir "$state"
echo "   $(cat "$tmp/check-etc.log")"
run check-cluster env STATE_DIRECTORY="$tmp/data" "$nodehost" \
  --config "$root/usr/share/nodehost/examples/cluster.yaml" --id 2 --check-config --state-dir "$state"
echo "   $(cat "$tmp/check-cluster.log")"
run check-reference "$nodehost" --config "$root/usr/share/nodehost/reference.yaml" \
  --check-config --state-dir "$state"
echo "   $(cat "$tmp/check-reference.log")"

free_port() {
  "$python" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
log=$tmp/node.log
for attempt in 1 2 3; do
  port=$(free_port)
  sed "s/127\.0\.0\.1:7000/127.0.0.1:$port/" "$conf" >"$tmp/serve.yaml"
  grep -q "127.0.0.1:$port" "$tmp/serve.yaml" || fail "the shipped nodehost.yaml does not listen on 127.0.0.1:7000"
  "$nodehost" --config "$tmp/serve.yaml" --state-dir "$state" >"$log" 2>&1 &
  node_pid=$!
  waited=0
  while kill -0 "$node_pid" 2>/dev/null && ! grep -q "serving on" "$log"; do
    sleep 0.05
    waited=$((waited + 1))
    [ "$waited" -lt 300 ] || { cat "$log" >&2; fail "the shipped configuration is not serving after 15 s"; }
  done
  if grep -q "serving on" "$log"; then break; fi
  wait "$node_pid" 2>/dev/null || true
  node_pid=""
  if grep -q "cannot serve" "$log" && [ "$attempt" -lt 3 ]; then continue; fi
  cat "$log" >&2
  fail "the unpacked nodehost exited before serving the shipped configuration"
done
run status "$nodehost" status "127.0.0.1:$port"
grep -q "hello" "$tmp/status.log" || { cat "$tmp/status.log" >&2; fail "nodehost status does not show the hello plugin"; }
kill -TERM "$node_pid"
rc=0
wait "$node_pid" || rc=$?
node_pid=""
[ "$rc" -eq 0 ] || { cat "$log" >&2; fail "the node exited with $rc after SIGTERM"; }
echo "   the shipped configuration served on 127.0.0.1:$port (hello), status answered, SIGTERM -> 0"

# ---- 4. manual pages -----------------------------------------------------------------------------
step "manual pages"
man1=$root/usr/share/man/man1/nodehost.1
man5=$root/usr/share/man/man5/nodehost.yaml.5
for page in "$man1" "$man5"; do
  th=$(grep -m1 '^\.TH ' "$page")
  [[ "$th" == *"\"nodehost $version\""* ]] || fail "$(basename "$page"): .TH does not say nodehost $version: $th"
done
if command -v groff >/dev/null; then
  for page in "$man1" "$man5"; do
    groff -man -Tutf8 -wall -z "$page" 2>"$tmp/groff.err" || true
    [ ! -s "$tmp/groff.err" ] || { cat "$tmp/groff.err" >&2; fail "groff warns about $(basename "$page")"; }
    groff -man -Tascii -rLL=200n "$page" 2>/dev/null | col -bx >"$tmp/$(basename "$page").txt"
  done
  if command -v man >/dev/null; then
    for page in "$man1" "$man5"; do
      LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$page" >/dev/null 2>"$tmp/man.err" ||
        { cat "$tmp/man.err" >&2; fail "man -l $(basename "$page") failed"; }
      [ ! -s "$tmp/man.err" ] || { cat "$tmp/man.err" >&2; fail "man warns about $(basename "$page")"; }
    done
    echo "   man -l and groff -wall: no warnings"
  else
    skip_note "man not installed (groff -wall: no warnings)"
  fi
  # Every option of --help is in nodehost(1).
  "$nodehost" --help | grep -o -- '--[a-z][a-z-]*' | sort -u >"$tmp/options"
  [ "$(wc -l <"$tmp/options")" -ge 10 ] || fail "--help lists only $(wc -l <"$tmp/options") options"
  while IFS= read -r opt; do
    grep -qF -- "$opt" "$tmp/nodehost.1.txt" || fail "nodehost(1) does not mention $opt (from --help)"
  done <"$tmp/options"
  for cmd in "nodehost status" "nodehost reload" SIGHUP SIGTERM READY=1 RELOADING=1 STOPPING=1 \
    NH_STATE_DIR; do
    grep -qF -- "$cmd" "$tmp/nodehost.1.txt" || fail "nodehost(1) does not mention $cmd"
  done
  # Every key the configuration parser accepts is in nodehost.yaml(5), as SECTION.KEY.
  "$python" - "$src" "$tmp/nodehost.yaml.5.txt" <<'EOF' || fail "nodehost.yaml(5) lacks configuration keys"
import re, sys
src, page = sys.argv[1], open(sys.argv[2]).read()
text = open(src + "/host/config/host_config.c").read() + open(src + "/host/config/security_config.c").read()
arrays = dict(re.findall(r"static const char \*const (\w+)_keys\[\] = \{([^}]*)\}", text))
section = {"node": "node", "peer": "peers[]", "clients": "clients", "plugin": "plugins[]",
           "limits": "limits", "reload": "reload", "keepalive": "keepalive", "log": "log",
           "metrics": "metrics", "tls": "tls", "admin": "admin"}
missing, count = [], 0
for name, body in arrays.items():
    keys = re.findall(r'"([a-z_]+)"', body)
    if name == "root":
        for k in keys:
            count += 1
            if not re.search(r"^ {3}" + re.escape(k) + r"$", page, re.M):
                missing.append(f"section {k}")
        continue
    if name not in section:
        missing.append(f"unknown key array {name}_keys (update test_package.sh)")
        continue
    for k in keys:
        count += 1
        if section[name] + "." + k not in page:
            missing.append(section[name] + "." + k)
if "root" not in arrays or len(arrays) < 10:
    missing.append(f"only {len(arrays)} key arrays found in host/config/*.c")
if missing:
    print("nodehost.yaml(5) lacks: " + ", ".join(missing), file=sys.stderr)
    sys.exit(1)
print(f"   nodehost.yaml(5) names all {count} keys and sections of host/config/*.c")
EOF
  echo "   nodehost(1) names all $(wc -l <"$tmp/options") options of --help"
else
  skip_note "groff not installed: manual pages not rendered"
fi

# ---- 5. systemd units ----------------------------------------------------------------------------
step "systemd-analyze verify"
if command -v systemd-analyze >/dev/null; then
  units=$tmp/units
  mkdir "$units"
  for u in nodehost.service nodehost@.service; do
    sed "s|^ExecStart=/usr/bin/nodehost |ExecStart=$nodehost |" \
      "$root/usr/lib/systemd/system/$u" >"$units/$u"
    grep -q "^ExecStart=$nodehost " "$units/$u" || fail "$u: ExecStart is not /usr/bin/nodehost ..."
    # Documentation=man:... is checked with man(1), which needs the pages on its path.
    if ! command -v man >/dev/null; then sed -i '/^Documentation=/d' "$units/$u"; fi
  done
  for u in nodehost.service nodehost@.service nodehost@3.service; do
    if ! (cd "$units" && MANPATH=$root/usr/share/man systemd-analyze verify "./$u") \
      >"$tmp/verify.log" 2>&1 || [ -s "$tmp/verify.log" ]; then
      cat "$tmp/verify.log" >&2
      fail "systemd-analyze verify $u"
    fi
  done
  grep -q '^Type=notify$' "$units/nodehost.service" || fail "nodehost.service is not Type=notify"
  grep -q -- '--id %i' "$units/nodehost@.service" || fail "nodehost@.service does not pass --id %i"
  echo "   nodehost.service, nodehost@.service (and instance 3): verified, no warnings"
else
  skip_note "systemd-analyze not installed"
fi

echo "test_package: OK ($(($(date +%s) - started)) s)"

#!/usr/bin/env bash
# protoc-gen-nodehost's tests (ctest: codegen.generator).
#
#   tests/codegen/run_codegen_tests.sh BUILD_DIR SOURCE_DIR
#
#  1. golden: the stubs generated for everycall.proto (every call type, a nested message, an
#     imported well-known type, doc comments) equal golden/everycall.nh.{h,c} byte for byte;
#  2. they compile with the project's warnings as errors and -Wpedantic; a plugin defining
#     every handler links as a shared object with -z defs against libnodehost, and a client
#     program that defines none links too;
#  3. gorums_style.proto, written for Go Gorums (import "gorums.proto" and its options,
#     go_package), compiles unchanged;
#  4. every bad/*.proto is refused: protoc fails, writes nothing, and its error contains the
#     file's `// expect:` text (file, line, column, method and the reason);
#  5. the program itself: --help, --version, garbage on standard input, an unknown option.
# After an intended change of the generated code, regenerate the golden files with
#   NH_CODEGEN_UPDATE_GOLDEN=1 tests/codegen/run_codegen_tests.sh build .
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 BUILD_DIR SOURCE_DIR" >&2
  exit 2
fi
build=$(cd "$1" && pwd -P)
src=$(cd "$2" && pwd -P)
here=$src/tests/codegen
gen=$build/bin/protoc-gen-nodehost
gorums_dir=$src/sdk/proto/gorums
wkt_dir=/usr/include
[ -x "$gen" ] || { echo "codegen: FAIL: $gen is not built" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() {
  echo "codegen: FAIL: $*" >&2
  exit 1
}
step() { echo "== $*"; }
CFLAGS_STRICT=(-std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes
  -Wpedantic -Wno-unused-parameter -fPIC -fvisibility=hidden)

# protoc with the generator (and protoc-gen-c for --c_out), from tests/codegen.
stubs() { # OUT_DIR PROTO... (extra -I before the defaults via IMPORT_FIRST)
  local out=$1
  shift
  (cd "$here" && protoc ${IMPORT_FIRST:+-I"$IMPORT_FIRST"} -I. -I"$gorums_dir" -I"$wkt_dir" \
    --plugin=protoc-gen-nodehost="$gen" --nodehost_out="$out" "$@")
}

step "1. golden output of everycall.proto"
mkdir -p "$tmp/golden"
stubs "$tmp/golden" everycall.proto
for f in everycall.nh.h everycall.nh.c; do
  if [ "${NH_CODEGEN_UPDATE_GOLDEN:-0}" = 1 ]; then
    cp "$tmp/golden/$f" "$here/golden/$f"
    echo "   updated golden/$f"
  elif ! diff -u "$here/golden/$f" "$tmp/golden/$f" >"$tmp/diff.txt"; then
    head -n 80 "$tmp/diff.txt" >&2
    fail "generated $f differs from tests/codegen/golden/$f (intended? NH_CODEGEN_UPDATE_GOLDEN=1)"
  fi
done
echo "   equal: golden/everycall.nh.h ($(wc -l <"$here/golden/everycall.nh.h") lines), .nh.c"

step "2. the generated code compiles and links"
mkdir -p "$tmp/c"
(cd "$here" && protoc -I. -I"$gorums_dir" -I"$wkt_dir" --c_out="$tmp/c" \
  --plugin=protoc-gen-nodehost="$gen" --nodehost_out="$tmp/c" everycall.proto gorums.proto \
  google/protobuf/descriptor.proto google/protobuf/empty.proto)
# A sanitizer build's library needs the same runtime in whatever links it.
# (The symbols are read first: `nm | grep -q` would fail under pipefail when grep stops early.)
lib_syms=$(nm -D "$build/sdk/libnodehost.so")
if grep -q __asan_init <<<"$lib_syms"; then
  CFLAGS_STRICT+=(-fsanitize=address,undefined)
elif grep -q __tsan_init <<<"$lib_syms"; then
  CFLAGS_STRICT+=(-fsanitize=thread)
fi
inc=(-I"$tmp/c" -I"$src/sdk/include")
lib=(-L"$build/sdk" -Wl,-rpath,"$build/sdk" -lnodehost -lprotobuf-c)
cc "${CFLAGS_STRICT[@]}" "${inc[@]}" -c "$tmp/c/everycall.nh.c" -o "$tmp/c/everycall.nh.o" ||
  fail "everycall.nh.c does not compile cleanly"
cc -std=c11 -D_GNU_SOURCE -fPIC -fvisibility=hidden "${inc[@]}" -c "$tmp/c/everycall.pb-c.c" -o "$tmp/c/pb.o"
cc -std=c11 -D_GNU_SOURCE -fPIC -fvisibility=hidden "${inc[@]}" -c "$tmp/c/google/protobuf/empty.pb-c.c" \
  -o "$tmp/c/empty.o"
cc "${CFLAGS_STRICT[@]}" "${inc[@]}" -shared -fvisibility=hidden -Wl,-z,defs \
  -o "$tmp/c/everycall.so" "$here/everycall_plugin.c" "$tmp/c/everycall.nh.o" "$tmp/c/pb.o" \
  "$tmp/c/empty.o" "${lib[@]}" || fail "a plugin serving every method does not link"
exported=$(nm -D --defined-only "$tmp/c/everycall.so" | awk '$2 ~ /^[TDBR]$/ {print $3}' | tr '\n' ' ')
[ "$exported" = "nh_plugin_entry " ] || fail "the plugin exports '$exported'"
cc "${CFLAGS_STRICT[@]}" "${inc[@]}" -o "$tmp/c/client" "$here/everycall_client.c" \
  "$tmp/c/everycall.nh.o" "$tmp/c/pb.o" "$tmp/c/empty.o" "${lib[@]}" ||
  fail "a client program without handlers does not link"
"$tmp/c/client" || fail "the client program does not run"
echo "   plugin (every handler, -z defs) and client (no handler) link"

step "3. a .proto written for Go Gorums compiles unchanged"
mkdir -p "$tmp/gs"
(cd "$here" && protoc -I. -I"$gorums_dir" -I"$wkt_dir" --c_out="$tmp/gs" \
  --plugin=protoc-gen-nodehost="$gen" --nodehost_out="$tmp/gs" gorums_style.proto gorums.proto \
  google/protobuf/descriptor.proto google/protobuf/empty.proto google/protobuf/timestamp.proto)
cc "${CFLAGS_STRICT[@]}" -I"$tmp/gs" -I"$src/sdk/include" -c "$tmp/gs/gorums_style.nh.c" \
  -o "$tmp/gs/gs.o" || fail "gorums_style.nh.c does not compile"
grep -q 'int storage_storage_read_qc(nh_config \*cfg' "$tmp/gs/gorums_style.nh.h" ||
  fail "gorums_style.nh.h lacks the quorum call storage_storage_read_qc over a configuration"
grep -q 'int storage_storage_write_multicast(nh_config \*cfg' "$tmp/gs/gorums_style.nh.h" ||
  fail "gorums_style.nh.h lacks the multicast storage_storage_write_multicast"
[ ! -e "$tmp/gs/gorums.nh.h" ] && [ ! -e "$tmp/gs/google/protobuf/descriptor.nh.h" ] ||
  fail "stubs were generated for gorums.proto or descriptor.proto (listed for their headers only)"
echo "   gorums_style.proto: quorum calls, multicast, unicast and RPCs generated"

step "4. bad input is refused with the file, line and method"
n=0
for proto in "$here"/bad/*.proto; do
  rel=bad/$(basename "$proto")
  expect=$(sed -n 's|^// expect: ||p' "$proto" | head -n 1)
  first=$(sed -n 's|^// import-dir: ||p' "$proto" | head -n 1)
  [ -n "$expect" ] || fail "$rel has no '// expect:' line"
  out=$tmp/bad-$(basename "$proto" .proto)
  mkdir -p "$out"
  if IMPORT_FIRST=${first:+$here/$first} stubs "$out" "$rel" >"$out.log" 2>&1; then
    fail "$rel was accepted"
  fi
  grep -qF -- "$expect" "$out.log" || { cat "$out.log" >&2; fail "$rel: expected '$expect'"; }
  [ -z "$(ls -A "$out")" ] || fail "$rel: files were written despite the error: $(ls "$out")"
  echo "   $rel: $(grep -F -- "$expect" "$out.log" | head -n 1 | cut -c1-150)"
  n=$((n + 1))
done
[ "$n" -ge 7 ] || fail "only $n bad protos"
if stubs "$tmp" --nodehost_opt=paths=source_relative everycall.proto >"$tmp/opt.log" 2>&1; then
  fail "an unknown generator option was accepted"
fi
grep -qF "unknown option 'paths=source_relative'" "$tmp/opt.log" || { cat "$tmp/opt.log" >&2; fail "unknown option message"; }
echo "   --nodehost_opt=paths=source_relative: refused"
printf 'syntax = "proto3";\nmessage M {}\nservice S { rpc A(M) returns (M); }\n' >"$tmp/nopkg.proto"
(cd "$tmp" && protoc -I. --plugin=protoc-gen-nodehost="$gen" --nodehost_out="$tmp" nopkg.proto) \
  >"$tmp/nopkg.log" 2>&1 || { cat "$tmp/nopkg.log" >&2; fail "a .proto without package failed"; }
grep -q "warning: nopkg.proto has no package" "$tmp/nopkg.log" || fail "no warning without package"
echo "   a .proto without package: generated, with a warning"

step "5. the program"
grep -q "nodehost_out" <<<"$("$gen" --help)" || fail "--help"
grep -q "protoc-gen-nodehost" <<<"$("$gen" --version)" || fail "--version"
if printf 'garbage\377\377' | "$gen" >"$tmp/g.out" 2>"$tmp/g.err"; then fail "garbage accepted"; fi
grep -q "not a CodeGeneratorRequest" "$tmp/g.err" || { cat "$tmp/g.err" >&2; fail "garbage message"; }
if "$gen" --bogus >/dev/null 2>&1; then fail "--bogus accepted"; fi
echo "   --help, --version, garbage input, unknown flag"
echo "codegen: all passed"

#!/usr/bin/env bash
# The demo scenario on an already built tree: bash deploy/demo-scenario.sh BUILD_DIR
#
# Starts three nodehost processes from conf/cluster-3.yaml (--id 1, 2, 3) and walks through:
# quorum write and read; a nested read over a node's Config; a client peer called back over
# ClientConfig; a node killed with majority calls still succeeding; the node restarted and back
# in every Config; a new build of the storage plugin hot-reloaded on every node with its data
# kept; then the same cluster with TLS (certificates from a test CA made with openssl): a client
# with a certificate writes and reads, one without admin rights is refused the admin methods, a
# plaintext client is refused. Every step checks its result; any failure prints the node logs
# and exits 1.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(cd "${1:?usage: demo-scenario.sh BUILD_DIR}" && pwd)
nodehost="$build/host/nodehost"
client="$build/plugins/storage/nh-storage-client"
work=$(mktemp -d /tmp/nodehost-demo.XXXXXX)
# The nodes load plugins from a copy of the build's plugin directory, so that step 7 can land a
# new build of storage there the way a deploy does (rename over the file).
mkdir -p "$work/state" "$work/plugins"
cp "$build"/plugins/*.so "$work/plugins/"
export NH_PLUGIN_DIR="$work/plugins" NH_STATE_DIR="$work/state"

# Three free loopback ports, starting at 7001 (or NH_DEMO_PORT).
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
p=${NH_DEMO_PORT:-7001}
ports=()
while [ ${#ports[@]} -lt 3 ]; do
  if port_free "$p"; then ports+=("$p"); fi
  p=$((p + 1))
done
export NH_PORT_1=${ports[0]} NH_PORT_2=${ports[1]} NH_PORT_3=${ports[2]}
addr() { echo "127.0.0.1:${ports[$(($1 - 1))]}"; }
nodes="$(addr 1),$(addr 2),$(addr 3)"

declare -A pid
cleanup() {
  {
    for i in 1 2 3; do
      [ -n "${pid[$i]:-}" ] && kill -9 "${pid[$i]}" && wait "${pid[$i]}"
    done
    [ -n "${listener:-}" ] && kill -9 "$listener" && wait "$listener"
  } 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "DEMO FAILED: $*" >&2
  for i in 1 2 3; do
    echo "---- node $i log (last 20 lines)" >&2
    tail -n 20 "$work/node$i.log" >&2 2>/dev/null || true
  done
  exit 1
}

step() { printf '\n== %s\n' "$*"; }
run() {  # prints the command and its output, fails the demo when it fails
  printf '$ %s\n' "${*/#$build\//}"
  "$@" || fail "command failed: $*"
}

start_node() {
  "$nodehost" --config "$root/conf/cluster-3.yaml" --id "$1" >>"$work/node$1.log" 2>&1 &
  pid[$1]=$!
  echo "   node $1: pid ${pid[$1]}, listening on $(addr "$1")"
}

# Waits until node $1's Config (from `nodehost status --json`) is exactly "$2".
wait_config() {
  local want=$2 got="" i
  for i in $(seq 1 300); do
    got=$("$nodehost" status "$(addr "$1")" --json --timeout-ms 1000 2>/dev/null |
      sed -n 's/.*"config":\[\([0-9,]*\)\].*/\1/p' || true)
    [ "$got" = "$want" ] && { echo "   node $1: Config = [${got//,/ }]"; return 0; }
    sleep 0.1
  done
  fail "node $1: Config is [$got], expected [$want]"
}

echo "nodehost demo: a 3-node storage cluster from conf/cluster-3.yaml (ports ${ports[*]})"

step "1. start three nodes (one file, identity by --id)"
for i in 1 2 3; do start_node "$i"; done
for i in 1 2 3; do wait_config "$i" "1,2,3"; done
wait_recovered() {  # an in-memory store answers reads once it caught up from its peers
  local i
  for i in $(seq 1 300); do
    grep -q 'recovered: caught up' "$work/node$1.log" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "node $1 did not catch up from its peers"
}
for i in 1 2 3; do wait_recovered "$i"; done
run "$nodehost" status "$(addr 1)"

step "2. quorum write, then quorum read (majority of 3, newest timestamp wins)"
run "$client" --nodes "$nodes" write color blue
out=$(run "$client" --nodes "$nodes" read color) && echo "$out"
grep -q 'blue' <<<"$out" || fail "read did not return blue"

step "3. nested read: node 2 runs a quorum call over its own Config and returns the newest value"
out=$(run "$client" --nodes "$nodes" nested 2 color) && echo "$out"
grep -q 'blue' <<<"$out" || fail "nested read did not return blue"

step "4. a client peer registers and is called back over ClientConfig"
"$client" --nodes "$nodes" listen --for-ms 20000 >"$work/listener.out" 2>&1 &
listener=$!
for i in $(seq 1 200); do
  st=$("$nodehost" status "$(addr 1)" --json 2>/dev/null || true)
  [[ $st == *'"client_config":['[0-9]* ]] && break
  sleep 0.1
done
run "$nodehost" status "$(addr 1)"
out=$(run "$client" --nodes "$nodes" notify 1 color green) && echo "$out"
grep -q 'acked by 1 client' <<<"$out" || fail "the client peer did not acknowledge"
for i in $(seq 1 100); do grep -q green "$work/listener.out" && break; sleep 0.1; done
echo "   the client peer printed:"; sed 's/^/     /' "$work/listener.out"
grep -q green "$work/listener.out" || fail "the client peer did not receive the notification"
kill "$listener" 2>/dev/null || true; wait "$listener" 2>/dev/null || true; listener=

step "5. kill node 3 (SIGKILL): majority calls still succeed"
kill -9 "${pid[3]}"; wait "${pid[3]}" 2>/dev/null || true; pid[3]=
echo "   node 3 killed"
wait_config 1 "1,2"
run "$client" --nodes "$nodes" write color red
out=$(run "$client" --nodes "$nodes" read color) && echo "$out"
grep -q 'red' <<<"$out" || fail "read with node 3 down did not return red"

step "6. restart node 3: it is back in every Config and a nested read on it sees the newest value"
start_node 3
for i in 1 2 3; do wait_config "$i" "1,2,3"; done
out=$(run "$client" --nodes "$nodes" nested 3 color) && echo "$out"
grep -q 'red' <<<"$out" || fail "nested read on the restarted node did not return red"
echo "   node 3 came back empty (this demo keeps the store in memory) and pulls what it missed"
echo "   from each peer that joins its Config (catch-up); info shows every node with the same keys:"
for i in $(seq 1 100); do
  out=$("$client" --nodes "$nodes" info) || true
  [ "$(sed -n 's/.*, \([0-9]*\) keys$/\1/p' <<<"$out" | sort -u | wc -l)" = 1 ] &&
    [ "$(grep -c ' keys$' <<<"$out")" = 3 ] && break
  sleep 0.1
done
printf '$ plugins/storage/nh-storage-client --nodes %s info\n%s\n' "$nodes" "$out"
[ "$(sed -n 's/.*, \([0-9]*\) keys$/\1/p' <<<"$out" | sort -u | wc -l)" = 1 ] ||
  fail "the restarted node did not catch up: the nodes hold different numbers of keys"

step "7. hot reload: a new build of storage lands; node 1 reloads by SIGHUP, nodes 2 and 3 by 'nodehost reload'"
new_build="$build/tests/plugins/storage_r2.so"
if [ -f "$new_build" ]; then
  cp "$new_build" "$work/plugins/.storage.so.new" && mv "$work/plugins/.storage.so.new" "$work/plugins/storage.so"
  kill -HUP "${pid[1]}"
  for i in 2 3; do
    printf '$ host/nodehost reload %s\n' "$(addr "$i")"
    out=$("$nodehost" reload "$(addr "$i")") || fail "nodehost reload on node $i failed"
    head -1 <<<"$out"
  done
  for i in $(seq 1 100); do
    out=$("$client" --nodes "$nodes" info) || true
    [ "$(grep -c '1.0.0+r2 generation 2' <<<"$out")" = 3 ] && break
    sleep 0.1
  done
  printf '$ plugins/storage/nh-storage-client --nodes %s info\n%s\n' "$nodes" "$out"
  [ "$(grep -c '1.0.0+r2 generation 2' <<<"$out")" = 3 ] || fail "not every node serves storage 1.0.0+r2"
  out=$(run "$client" --nodes "$nodes" read color) && echo "$out"
  grep -q 'red' <<<"$out" || fail "the data did not survive the reload"
else
  echo "   skipped: $new_build is not built (cmake --build $build --target nh_reload_plugins)"
fi

step "8. stop every node with SIGTERM (graceful: calls in flight finish)"
for i in 1 2 3; do kill -TERM "${pid[$i]}"; done
for i in 1 2 3; do
  rc=0; wait "${pid[$i]}" || rc=$?
  pid[$i]=
  [ "$rc" = 0 ] || fail "node $i exited with status $rc"
  echo "   node $i stopped (exit 0)"
done
step "9. the same cluster with TLS (conf/cluster-3-tls.yaml): node IDs proven by certificates"
tls="$work/certs"
run bash "$root/tests/tls/make_certs.sh" "$tls"
export NH_TLS_DIR="$tls"
for i in 1 2 3; do
  NH_NODE=$i "$nodehost" --config "$root/conf/cluster-3-tls.yaml" --id "$i" >>"$work/tls$i.log" 2>&1 &
  pid[$i]=$!
done
as_node1=(--tls-ca "$tls/ca.pem" --tls-cert "$tls/node1.pem" --tls-key "$tls/node1.key")
as_alice=(--tls-ca "$tls/ca.pem" --tls-cert "$tls/client.pem" --tls-key "$tls/client.key")
for i in $(seq 1 300); do
  got=$("$nodehost" status "$(addr 1)" --json --timeout-ms 1000 "${as_node1[@]}" 2>/dev/null |
    sed -n 's/.*"config":\[\([0-9,]*\)\].*/\1/p' || true)
  [ "$got" = "1,2,3" ] && break
  sleep 0.1
done
[ "$got" = "1,2,3" ] || fail "the TLS cluster did not form (Config of node 1: [$got])"
for i in 1 2 3; do
  for j in $(seq 1 300); do grep -q 'recovered: caught up' "$work/tls$i.log" && break; sleep 0.1; done
done
echo "   Config of node 1 over TLS: [1 2 3]"
run "$client" --nodes "$nodes" "${as_alice[@]}" write color violet
out=$(run "$client" --nodes "$nodes" "${as_alice[@]}" read color) && echo "$out"
grep -q 'violet' <<<"$out" || fail "TLS read did not return violet"
printf '$ host/nodehost status %s (as alice, a client certificate not in admin.allow)\n' "$(addr 1)"
if out=$("$nodehost" status "$(addr 1)" "${as_alice[@]}" 2>&1); then fail "alice was allowed the admin methods"; fi
echo "$out"
grep -q 'not allowed' <<<"$out" || fail "no PERMISSION_DENIED for alice"
printf '$ plugins/storage/nh-storage-client --nodes %s read color (plaintext)\n' "$nodes"
if out=$("$client" --nodes "$nodes" --timeout-ms 2000 read color 2>&1); then fail "a plaintext client was served"; fi
echo "$out" | cut -c1-160
for i in 1 2 3; do kill -TERM "${pid[$i]}"; done
for i in 1 2 3; do wait "${pid[$i]}" || fail "TLS node $i did not stop cleanly"; pid[$i]=; done
echo "   TLS nodes stopped"

printf '\ndemo OK\n'

#!/usr/bin/env bash
# The echo benchmark: bare gRPC C core (baseline_echo) against nodehost (rpc_bench talking to
# nh_bench_server), 64-byte payloads on loopback, ping-pong (1 in flight) and pipelined (1000
# in flight). Builds a Release tree in build-bench/ if needed, alternates baseline and nodehost
# runs so machine noise hits both, and prints a markdown table of the medians.
#
#   bash bench/run.sh
#
# Environment (all optional):
#   RUN_SECONDS=5   measured seconds per run      REPS=3        repetitions per mode and side
#   WARMUP=1        warm-up seconds per run       PAYLOAD=64    payload bytes
#   MODES="1 1000"  in-flight counts              CROSS=0       1: also run the mixed pairs
#   BUILD_DIR=<repo>/build-bench                  (baseline client -> nodehost server and
#                                                  nodehost client -> baseline server)
# Raw result lines go to stderr; the table goes to stdout.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
RUN_SECONDS=${RUN_SECONDS:-5}
REPS=${REPS:-3}
WARMUP=${WARMUP:-1}
PAYLOAD=${PAYLOAD:-64}
MODES=${MODES:-"1 1000"}
CROSS=${CROSS:-0}

log() { printf '%s\n' "$*" >&2; }

# ---- build -------------------------------------------------------------------------------------
if [[ ! -f $BUILD_DIR/CMakeCache.txt ]]; then
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DNH_BUILD_TESTS=OFF \
        -DNH_BUILD_BENCH=ON >&2
fi
cmake --build "$BUILD_DIR" -j"$(nproc)" --target baseline_echo rpc_bench nh_bench_server >&2
BIN=$BUILD_DIR/bench

WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
    if [[ -n $SERVER_PID ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# start_server <baseline|nodehost>: starts it on a free port; sets SERVER_PID and PORT.
start_server() {
    local out=$WORK/server.out
    : >"$out"
    if [[ $1 == baseline ]]; then
        "$BIN/baseline_echo" server 127.0.0.1:0 >"$out" 2>"$WORK/server.err" &
    else
        "$BIN/nh_bench_server" 127.0.0.1:0 >"$out" 2>"$WORK/server.err" &
    fi
    SERVER_PID=$!
    for _ in $(seq 200); do
        if grep -q '^listening ' "$out"; then
            PORT=$(awk '/^listening /{print $2; exit}' "$out")
            return 0
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
        sleep 0.05
    done
    log "server $1 did not start:"
    cat "$WORK/server.err" >&2
    exit 1
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

# run_pair <client side> <server side> <inflight>: prints the client's result line.
run_pair() {
    local client=$1 server=$2 inflight=$3 line
    start_server "$server"
    local args=(127.0.0.1:"$PORT" --inflight "$inflight" --seconds "$RUN_SECONDS"
        --payload "$PAYLOAD" --warmup "$WARMUP")
    if [[ $client == baseline ]]; then
        line=$("$BIN/baseline_echo" client "${args[@]}" 2>"$WORK/client.err" || true)
    else
        line=$("$BIN/rpc_bench" "${args[@]}" 2>"$WORK/client.err" || true)
    fi
    stop_server
    if [[ $line != msgs_per_s=* ]]; then
        log "client $client -> server $server failed:"
        cat "$WORK/client.err" >&2
        line="msgs_per_s=0 p50_us=0 p99_us=0 count=0 errors=1"
    fi
    printf '%s\n' "$line"
}

field() { # field <name> <line>
    local kv
    for kv in $2; do
        if [[ ${kv%%=*} == "$1" ]]; then
            printf '%s\n' "${kv#*=}"
            return
        fi
    done
}

median() {
    sort -g | awk '{v[NR] = $1}
        END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

# ---- runs --------------------------------------------------------------------------------------
PAIRS=("baseline baseline" "nodehost nodehost")
if [[ $CROSS == 1 ]]; then PAIRS+=("baseline nodehost" "nodehost baseline"); fi
RESULTS=$WORK/results
: >"$RESULTS"

log "machine: $(nproc) cores, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)"
for inflight in $MODES; do
    for rep in $(seq "$REPS"); do
        # Alternate which side goes first so slow drifts do not favour one of them.
        order=("${PAIRS[@]}")
        if ((rep % 2 == 0)); then
            order=()
            for ((i = ${#PAIRS[@]} - 1; i >= 0; i--)); do order+=("${PAIRS[$i]}"); done
        fi
        for pair in "${order[@]}"; do
            read -r client server <<<"$pair"
            line=$(run_pair "$client" "$server" "$inflight")
            log "inflight=$inflight rep=$rep client=$client server=$server $line"
            echo "$inflight $client $server $line" >>"$RESULTS"
        done
    done
done

# values <inflight> <client> <server> <field>: one value per repetition.
values() {
    awk -v m="$1" -v c="$2" -v s="$3" '$1 == m && $2 == c && $3 == s' "$RESULTS" |
        while read -r _ _ _ rest; do field "$4" "$rest"; done
}
# stat ...: the median over the repetitions; range ...: "min–max" of msgs/s in thousands.
stat() { values "$@" | median; }
range() {
    values "$@" | sort -g |
        awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%.1fk–%.1fk", lo / 1000, hi / 1000}'
}
errors() {
    awk -v m="$1" '$1 == m' "$RESULTS" | while read -r _ _ _ rest; do field errors "$rest"; done |
        awk '{s += $1} END {print s + 0}'
}
mode_name() {
    if [[ $1 == 1 ]]; then echo "ping-pong (1 in flight)"; else echo "pipelined ($1 in flight)"; fi
}

echo "Medians of $REPS runs of ${RUN_SECONDS} s, ${PAYLOAD}-byte payload; [min–max] of msgs/s."
echo
printf '| mode | baseline msgs/s | nodehost msgs/s | ratio | baseline p50 / p99 µs '
printf '| nodehost p50 / p99 µs | errors |\n'
echo "|---|---:|---:|---:|---:|---:|---:|"
for inflight in $MODES; do
    b=$(stat "$inflight" baseline baseline msgs_per_s)
    n=$(stat "$inflight" nodehost nodehost msgs_per_s)
    printf '| %s | %.0f [%s] | %.0f [%s] | %.2f | %.1f / %.1f | %.1f / %.1f | %s |\n' \
        "$(mode_name "$inflight")" "$b" "$(range "$inflight" baseline baseline msgs_per_s)" \
        "$n" "$(range "$inflight" nodehost nodehost msgs_per_s)" \
        "$(awk -v b="$b" -v n="$n" 'BEGIN {print (b > 0 ? n / b : 0)}')" \
        "$(stat "$inflight" baseline baseline p50_us)" \
        "$(stat "$inflight" baseline baseline p99_us)" \
        "$(stat "$inflight" nodehost nodehost p50_us)" \
        "$(stat "$inflight" nodehost nodehost p99_us)" \
        "$(errors "$inflight")"
done
if [[ $CROSS == 1 ]]; then
    echo
    echo "| mode | client -> server | msgs/s (median) | p50 / p99 µs |"
    echo "|---|---|---:|---:|"
    for inflight in $MODES; do
        for pair in "${PAIRS[@]}"; do
            read -r client server <<<"$pair"
            printf '| %s | %s -> %s | %.0f | %.1f / %.1f |\n' "$(mode_name "$inflight")" \
                "$client" "$server" "$(stat "$inflight" "$client" "$server" msgs_per_s)" \
                "$(stat "$inflight" "$client" "$server" p50_us)" \
                "$(stat "$inflight" "$client" "$server" p99_us)"
        done
    done
fi

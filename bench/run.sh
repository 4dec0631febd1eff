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
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

# ---- build -------------------------------------------------------------------------------------
bench_build baseline_echo rpc_bench nh_bench_server
BIN=$BUILD_DIR/bench

bench_work

# run_pair <client side> <server side> <inflight>: prints the client's result line.
run_pair() {
    local client=$1 server=$2 inflight=$3 line
    start_echo_servers "$server" 1
    local args=("$ADDRS" --inflight "$inflight" --seconds "$RUN_SECONDS"
        --payload "$PAYLOAD" --warmup "$WARMUP")
    if [[ $client == baseline ]]; then
        line=$("$BIN/baseline_echo" client "${args[@]}" 2>"$WORK/client.err" || true)
    else
        line=$("$BIN/rpc_bench" "${args[@]}" 2>"$WORK/client.err" || true)
    fi
    kill_servers
    result_line "$line" msgs_per_s= "msgs_per_s=0 p50_us=0 p99_us=0 count=0 errors=1" \
        "client $client -> server $server"
}

# ---- runs --------------------------------------------------------------------------------------
PAIRS=("baseline baseline" "nodehost nodehost")
if [[ $CROSS == 1 ]]; then PAIRS+=("baseline nodehost" "nodehost baseline"); fi
RESULTS=$WORK/results
: >"$RESULTS"

log "machine: $(machine)"
for inflight in $MODES; do
    for rep in $(seq "$REPS"); do
        # Alternate which side goes first so slow drifts do not favour one of them.
        rep_order "$rep" "${PAIRS[@]}"
        for pair in "${ORDER[@]}"; do
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
# stat ...: the median over the repetitions (lib.sh); range ...: "min–max" of msgs/s in
# thousands.
range() { values "$@" | min_max_k; }
errors() {
    awk -v m="$1" '$1 == m' "$RESULTS" | while read -r _ _ _ rest; do field errors "$rest"; done |
        sum
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

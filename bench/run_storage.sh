#!/usr/bin/env bash
# The storage plugin's durability modes: WriteQC and ReadQC quorum calls (proto.Storage, majority
# of 3) made by qc_bench --service storage against a 3-node `nodehost` cluster (one YAML cluster
# file, peers 1..3, as the host kind of bench/run_plugin.sh) that loads plugins/storage.so, once
# per store mode:
#   mem     no data_dir: the in-memory store (the baseline);
#   none    data_dir, sync: none    (committed to LMDB, no fsync before the reply);
#   batch   data_dir, sync: batch   (the reply after the next group fsync: one for all waiting);
#   always  data_dir, sync: always  (the reply after an fsync of its own).
#
#   bash bench/run_storage.sh
#
# Writes: every call a new timestamp (1 ns later than the previous call's) on one of KEYS keys in
# turn, so every write is stored (qc_bench reports replies with New = false on stderr). Reads:
# qc_bench writes the KEYS keys to all nodes first, then reads them in turn (reply: OK and the
# value). Fresh server processes and a fresh, empty data_dir (under a mktemp dir, local disk) for
# every run; modes alternated, the order reversed on every other repetition.
#
# Environment (all optional):
#   RUN_SECONDS=3  measured seconds per run     REPS=1       repetitions of every case
#   WARMUP=1       warm-up seconds per run       PAYLOAD=64   value bytes
#   INFLIGHT="1 16"    quorum calls kept in flight
#   MODES="mem none batch always"                OPS="write read"
#   KEYS=100       distinct keys
#   BUILD_DIR=<repo>/build-bench (configured Release, tests off, if it has no CMakeCache.txt)
#   NO_BUILD=1     use the binaries in BUILD_DIR as they are
#   DATA_PARENT    where the data dirs go (default: the mktemp work dir, i.e. $TMPDIR or /tmp)
# Raw result lines go to stderr; the tables go to stdout. Needs python3 (to find free ports).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
RUN_SECONDS=${RUN_SECONDS:-3}
REPS=${REPS:-1}
WARMUP=${WARMUP:-1}
PAYLOAD=${PAYLOAD:-64}
INFLIGHT=${INFLIGHT:-"1 16"}
MODES=${MODES:-"mem none batch always"}
OPS=${OPS:-"write read"}
KEYS=${KEYS:-100}
N=3
QUORUM=2
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

if [[ ${NO_BUILD:-0} != 1 ]]; then bench_build nodehost_exe storage qc_bench; fi
BIN=$BUILD_DIR/bench
NODEHOST=$BUILD_DIR/host/nodehost
PLUGIN=$BUILD_DIR/plugins/storage.so
for f in "$BIN/qc_bench" "$NODEHOST" "$PLUGIN"; do
    [[ -f $f ]] || { log "missing $f (build it, or unset NO_BUILD)"; exit 1; }
done

bench_work
DATA=${DATA_PARENT:-$WORK}/storage-data.$$

# storage_yaml <mode> <port>...: the cluster file, the storage plugin configured for the mode.
storage_yaml() {
    local mode=$1 PLUGIN_CONFIG=""
    shift
    [[ $mode != mem ]] && PLUGIN_CONFIG="{ data_dir: \"$DATA\", sync: $mode }"
    PLUGIN_CONFIG=$PLUGIN_CONFIG cluster_yaml storage "$PLUGIN" warn "$@"
}

# start_servers <mode>: 3 nodehost processes sharing one cluster file; sets SERVER_PIDS, ADDRS.
start_servers() {
    local mode=$1 i ports
    SERVER_PIDS=()
    ADDRS=""
    rm -rf "$WORK/state" "$WORK"/server*.err "$DATA"
    read -r -a ports <<<"$(free_ports $N)"
    for ((i = 0; i < N; i++)); do ADDRS+="${ADDRS:+,}127.0.0.1:${ports[$i]}"; done
    storage_yaml "$mode" "${ports[@]}" >"$WORK/cluster.yaml"
    for ((i = 0; i < N; i++)); do
        "$NODEHOST" --config "$WORK/cluster.yaml" --id $((i + 1)) --log-level warn \
            --state-dir "$WORK/state" >/dev/null 2>"$WORK/server$i.err" &
        SERVER_PIDS+=($!)
    done
    for ((i = 0; i < N; i++)); do
        wait_node "${ports[$i]}" "1 2 3" || { stop_servers; return 1; }
    done
}

stop_servers() {
    local i=0 f
    kill_servers
    for f in "$WORK"/server*.err; do
        [[ -s $f ]] && { log "server $i stderr:"; cat "$f" >&2; }
        i=$((i + 1))
    done
    rm -rf "$DATA"
}

# run_case <mode> <op> <inflight>: one run; sets LINE to qc_bench's result line.
run_case() {
    local mode=$1 op=$2 c=$3 pids
    retry_start "$mode servers" start_servers "$mode"
    pids=$(IFS=,; echo "${SERVER_PIDS[*]}")
    "$BIN/qc_bench" --servers "$ADDRS" --server-pids "$pids" --quorum-size $QUORUM \
        --concurrent "$c" --payload "$PAYLOAD" --seconds "$RUN_SECONDS" --warmup "$WARMUP" \
        --service storage --op "$op" --keys "$KEYS" \
        >"$WORK/client.out" 2>"$WORK/client.err" || true
    stop_servers
    local line
    line=$(grep '^ops_per_s=' "$WORK/client.out" || true)
    if [[ -z $line ]]; then
        log "qc_bench $mode $op c=$c failed:"
        cat "$WORK/client.err" >&2
        line="ops_per_s=0 p50_us=0 p99_us=0 cpu_us_per_op=0 srv_cpu_us_per_op=0 count=0 errors=1"
    elif [[ -s $WORK/client.err ]]; then
        cat "$WORK/client.err" >&2
    fi
    LINE=$line
}

read -r -a MODE_LIST <<<"$MODES"
read -r -a OP_LIST <<<"$OPS"
read -r -a C_LIST <<<"$INFLIGHT"
CASES=()
for op in "${OP_LIST[@]}"; do
    for c in "${C_LIST[@]}"; do
        for m in "${MODE_LIST[@]}"; do CASES+=("$m:$op:$c"); done
    done
done
RESULTS=$WORK/results
: >"$RESULTS"

LOAD_BEFORE=$(loadavg)
log "machine: $(machine); data dirs under $(dirname "$DATA") ($(df -P "$(dirname "$DATA")" |
    awk 'NR == 2 {print $1}'))"
log "load average before: $LOAD_BEFORE; case order: ${CASES[*]}"
for rep in $(seq "$REPS"); do
    rep_order "$rep" "${CASES[@]}"
    for case_ in "${ORDER[@]}"; do
        IFS=: read -r m op c <<<"$case_"
        run_case "$m" "$op" "$c"
        log "rep=$rep $case_ $LINE (load $(load1))"
        echo "$case_ $rep $LINE" >>"$RESULTS"
    done
done
LOAD_AFTER=$(loadavg)
log "load average after: $LOAD_AFTER"

# ---- tables ------------------------------------------------------------------------------------
values() { case_values "$@"; }
errors() { values "$1" errors | sum; }
ratio() {
    paste <(values "$1" "$3") <(values "$2" "$3") |
        awk '$2 > 0 {print $1 / $2}' | ratio_summary brief
}
name_of() {
    case $1 in
        mem) echo "in memory (no data_dir)" ;;
        *) echo "data_dir, sync: $1" ;;
    esac
}
has_mem=0
[[ " ${MODE_LIST[*]} " == *" mem "* ]] && has_mem=1

echo "proto.Storage WriteQC/ReadQC, 3-node nodehost cluster, quorum $QUORUM of $N," \
    "${PAYLOAD}-byte values, $KEYS keys, $REPS run(s) of ${RUN_SECONDS} s after ${WARMUP} s" \
    "of warm-up per case; medians. Load average before: $LOAD_BEFORE; after: $LOAD_AFTER."
echo
echo "| call | store | in flight | calls/s | p50 µs | p99 µs | servers CPU µs/call | errors" \
    "| calls/s ÷ mem | p50 ÷ mem |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for op in "${OP_LIST[@]}"; do
    for c in "${C_LIST[@]}"; do
        for m in "${MODE_LIST[@]}"; do
            case_="$m:$op:$c"
            r1="–" r2="–"
            if ((has_mem)); then
                r1=$(ratio "$case_" "mem:$op:$c" ops_per_s)
                r2=$(ratio "$case_" "mem:$op:$c" p50_us)
            fi
            printf '| %s | %s | %s | %.0f | %.1f | %.1f | %.1f | %s | %s | %s |\n' \
                "$([[ $op == write ]] && echo WriteQC || echo ReadQC)" "$(name_of "$m")" "$c" \
                "$(stat "$case_" ops_per_s)" "$(stat "$case_" p50_us)" \
                "$(stat "$case_" p99_us)" "$(stat "$case_" srv_cpu_us_per_op)" \
                "$(errors "$case_")" "$r1" "$r2"
        done
    done
done

#!/usr/bin/env bash
# The benchmark plugin served by real `nodehost` processes: Gorums' QuorumCall benchmark
# (benchmark.Benchmark.QuorumCall, an Echo quorum call) made by qc_bench against a 3-node
# nodehost cluster that loads plugins/benchmark.so, with the SDK-only echo server of
# bench/run_qc.sh (nh_bench_server, test.Echo.Raw) as the baseline of the same run.
#
#   bash bench/run_plugin.sh
#
# Server kinds (KINDS):
#   sdk   3 nh_bench_server processes: a runtime and nh_server_new with one raw echo handler
#         (the baseline);
#   host  3 `nodehost --config cluster.yaml --id N` processes sharing one YAML cluster file:
#         peers 1..3 dialed between the nodes (symmetric Config), the benchmark plugin loaded,
#         log level warn;
#   solo  3 nodehost processes with one single-node YAML file each (the same plugin, no peers):
#         separates the plugin host from the peer connections.
# Every kind gets the same request bytes (only the method string differs): qc_bench --service
# benchmark encodes the payload as benchmark.Echo{payload} (66 bytes for 64) and checks that
# every reply decodes to the same Echo. The nodehost kinds serve it as benchmark.Benchmark.QuorumCall; the baseline is called as
# test.Echo.Raw (--method), which echoes the bytes as they are. Same quorum (majority, 2 of 3,
# as bench/run_qc.sh), same in-flight counts, fresh server processes for every run, kinds
# alternated and the order reversed on every other repetition.
#
# Then MC_REPS runs of the one-way path on the host kind: qc_bench --call multicast keeps
# MC_INFLIGHT benchmark.Benchmark.Multicast (TimedMsg) in flight and reads the nodes'
# StopServerBenchmark results (there is no SDK-only baseline for it: nh_bench_server would
# answer every one-way message).
#
# Environment (all optional):
#   RUN_SECONDS=5  measured seconds per run     REPS=3       repetitions of every case
#   WARMUP=1       warm-up seconds per run       PAYLOAD=64   payload bytes (zeros)
#   INFLIGHT="1 16"    quorum calls kept in flight
#   CONFIG_SIZE=3      nodes the quorum calls go to: the first CONFIG_SIZE of the 3 servers
#                      (1: one node answers, the other two still run: the per-message cost of
#                      one server without the fan-out)
#   QUORUM             quorum size; default a majority of CONFIG_SIZE (2 of 3)
#   KINDS="sdk host solo"
#   MC_REPS=1      multicast runs (0: none)      MC_INFLIGHT=16
#   BUILD_DIR=<repo>/build-bench (configured Release, tests off, if it has no CMakeCache.txt)
#   NO_BUILD=1     use the binaries in BUILD_DIR as they are
# Raw result lines go to stderr; the tables go to stdout. Needs python3 (to find free ports).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
RUN_SECONDS=${RUN_SECONDS:-5}
REPS=${REPS:-3}
WARMUP=${WARMUP:-1}
PAYLOAD=${PAYLOAD:-64}
INFLIGHT=${INFLIGHT:-"1 16"}
CONFIG_SIZE=${CONFIG_SIZE:-3}
QUORUM=${QUORUM:-$((CONFIG_SIZE / 2 + 1))}
KINDS=${KINDS:-"sdk host solo"}
MC_REPS=${MC_REPS:-1}
MC_INFLIGHT=${MC_INFLIGHT:-16}
N=3
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

# ---- build -------------------------------------------------------------------------------------
if [[ ${NO_BUILD:-0} != 1 ]]; then bench_build nodehost_exe benchmark nh_bench_server qc_bench; fi
BIN=$BUILD_DIR/bench
NODEHOST=$BUILD_DIR/host/nodehost
PLUGIN=$BUILD_DIR/plugins/benchmark.so
for f in "$BIN/nh_bench_server" "$BIN/qc_bench" "$NODEHOST" "$PLUGIN"; do
    [[ -f $f ]] || { log "missing $f (build it, or unset NO_BUILD)"; exit 1; }
done

bench_work

# start_servers <kind>: starts N servers of that kind; sets SERVER_PIDS and ADDRS. Returns 1 when
# they did not come up (a port taken in the meantime: the caller retries with new ports).
start_servers() {
    local kind=$1 i port ports
    SERVER_PIDS=()
    ADDRS=""
    rm -rf "$WORK/state" "$WORK"/server*.err
    read -r -a ports <<<"$(free_ports $N)"
    for ((i = 0; i < N; i++)); do ADDRS+="${ADDRS:+,}127.0.0.1:${ports[$i]}"; done
    case $kind in
        sdk)
            for ((i = 0; i < N; i++)); do
                "$BIN/nh_bench_server" "127.0.0.1:${ports[$i]}" >/dev/null \
                    2>"$WORK/server$i.err" &
                SERVER_PIDS+=($!)
            done
            ;;
        host)
            cluster_yaml benchmark "$PLUGIN" warn "${ports[@]}" >"$WORK/cluster.yaml"
            for ((i = 0; i < N; i++)); do
                "$NODEHOST" --config "$WORK/cluster.yaml" --id $((i + 1)) --log-level warn \
                    --state-dir "$WORK/state" >/dev/null 2>"$WORK/server$i.err" &
                SERVER_PIDS+=($!)
            done
            ;;
        solo)
            for ((i = 0; i < N; i++)); do
                solo_yaml $((i + 1)) "${ports[$i]}" benchmark "$PLUGIN" warn >"$WORK/solo$i.yaml"
                "$NODEHOST" --config "$WORK/solo$i.yaml" --log-level warn \
                    --state-dir "$WORK/state" >/dev/null 2>"$WORK/server$i.err" &
                SERVER_PIDS+=($!)
            done
            ;;
    esac
    local want=""
    [[ $kind == host ]] && want="1 2 3"
    for ((i = 0; i < N; i++)); do
        if [[ $kind == sdk ]]; then
            # nh_bench_server has no status call: wait for its port to accept connections.
            local up=0
            for _ in $(seq 100); do
                if (exec 3<>"/dev/tcp/127.0.0.1/${ports[$i]}") 2>/dev/null; then up=1; break; fi
                kill -0 "${SERVER_PIDS[$i]}" 2>/dev/null || break
                sleep 0.05
            done
            ((up)) || { stop_servers; return 1; }
        elif ! wait_node "${ports[$i]}" "$want"; then
            stop_servers
            return 1
        fi
    done
    return 0
}

stop_servers() {
    local i=0
    kill_servers
    # Anything a server said at level warn or above is worth seeing.
    for f in "$WORK"/server*.err; do
        [[ -s $f ]] && { log "server $i stderr:"; cat "$f" >&2; }
        i=$((i + 1))
    done
}

# run_case <kind> <inflight> [multicast]: one run; sets LINE to qc_bench's result line (for a
# multicast run, with the nodes' median throughput and one-way latency appended). Runs in the
# script's own shell (not in $(...)), so that the EXIT trap always knows the server PIDs.
run_case() {
    local kind=$1 c=$2 mc=${3:-} pids method=()
    retry_start "$kind servers" start_servers "$kind"
    pids=$(IFS=,; echo "${SERVER_PIDS[*]}")
    [[ $kind == sdk ]] && method=(--method test.Echo.Raw)
    local call=(--call quorum)
    [[ -n $mc ]] && call=(--call multicast)
    "$BIN/qc_bench" --servers "$ADDRS" --server-pids "$pids" --config-size "$CONFIG_SIZE" \
        --quorum-size "$QUORUM" --concurrent "$c" --payload "$PAYLOAD" --seconds "$RUN_SECONDS" \
        --warmup "$WARMUP" --service benchmark "${method[@]}" "${call[@]}" \
        >"$WORK/client.out" 2>"$WORK/client.err" || true
    stop_servers
    local line
    line=$(grep '^ops_per_s=' "$WORK/client.out" || true)
    if [[ -z $line ]]; then
        log "qc_bench $kind c=$c ${mc:+multicast }failed:"
        cat "$WORK/client.err" >&2
        line="ops_per_s=0 p50_us=0 p99_us=0 cpu_us_per_op=0 srv_cpu_us_per_op=0 count=0 errors=1"
    elif [[ -s $WORK/client.err ]]; then
        cat "$WORK/client.err" >&2
    fi
    if [[ -n $mc ]]; then
        grep '^server ' "$WORK/client.out" >&2 || true
        # medians over the nodes
        local tput lat
        tput=$(grep '^server ' "$WORK/client.out" | sed 's/.* throughput=\([^ ]*\).*/\1/' | median)
        lat=$(grep '^server ' "$WORK/client.out" | sed 's/.* latency_avg_us=\([^ ]*\).*/\1/' |
            median)
        line+=" srv_ops_per_s=${tput:-0} srv_latency_avg_us=${lat:-0}"
    fi
    LINE=$line
}

# ---- runs --------------------------------------------------------------------------------------
read -r -a KIND_LIST <<<"$KINDS"
read -r -a C_LIST <<<"$INFLIGHT"
CASES=()
for c in "${C_LIST[@]}"; do
    for k in "${KIND_LIST[@]}"; do CASES+=("$k:$c"); done
done
RESULTS=$WORK/results
: >"$RESULTS"

LOAD_BEFORE=$(loadavg)
log "machine: $(machine)"
log "load average before: $LOAD_BEFORE; case order: ${CASES[*]}"
for rep in $(seq "$REPS"); do
    rep_order "$rep" "${CASES[@]}"
    for case_ in "${ORDER[@]}"; do
        run_case "${case_%%:*}" "${case_#*:}"
        log "rep=$rep $case_ $LINE (load $(load1))"
        echo "$case_ $rep $LINE" >>"$RESULTS"
    done
done
for rep in $(seq "$MC_REPS"); do
    run_case host "$MC_INFLIGHT" multicast
    log "rep=$rep mc:$MC_INFLIGHT $LINE (load $(load1))"
    echo "mc:$MC_INFLIGHT $rep $LINE" >>"$RESULTS"
done
LOAD_AFTER=$(loadavg)
log "load average after: $LOAD_AFTER"

# ---- tables ------------------------------------------------------------------------------------
values() { case_values "$@"; } # values <case> <field>: lib.sh
range() { values "$1" ops_per_s | min_max_k; }
errors() { values "$1" errors | sum; }
# ratio <caseA> <caseB> <field>: the median of A/B over the repetitions (same repetition
# paired) and its [min–max].
ratio() {
    paste <(values "$1" "$3") <(values "$2" "$3") |
        awk '$2 > 0 {print $1 / $2}' | ratio_summary full
}
has_case() { [[ " ${CASES[*]} " == *" $1 "* ]]; }
name_of() {
    case $1 in
        sdk) echo "nh_bench_server (SDK only, test.Echo.Raw)" ;;
        host) echo "nodehost + benchmark plugin, 3-node cluster file" ;;
        solo) echo "nodehost + benchmark plugin, single-node files (no peers)" ;;
    esac
}

echo "QC(n=$CONFIG_SIZE of $N servers, q=$QUORUM), ${PAYLOAD}-byte payload in a benchmark.Echo" \
    "request, $REPS runs of ${RUN_SECONDS} s after ${WARMUP} s of warm-up per case;" \
    "medians, [min–max] of calls/s. Load average before: $LOAD_BEFORE; after: $LOAD_AFTER."
echo
echo "| servers | in flight | calls/s | p50 µs | p99 µs | client CPU µs/call" \
    "| servers CPU µs/call | errors |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for c in "${C_LIST[@]}"; do
    for k in "${KIND_LIST[@]}"; do
        case_="$k:$c"
        printf '| %s | %s | %.0f [%s] | %.1f | %.1f | %.1f | %.1f | %s |\n' "$(name_of "$k")" \
            "$c" "$(stat "$case_" ops_per_s)" "$(range "$case_")" "$(stat "$case_" p50_us)" \
            "$(stat "$case_" p99_us)" "$(stat "$case_" cpu_us_per_op)" \
            "$(stat "$case_" srv_cpu_us_per_op)" "$(errors "$case_")"
    done
done
if has_case "sdk:${C_LIST[0]}"; then
    echo
    echo "Ratios to the SDK-only servers (median over the repetitions of the per-repetition" \
        "ratio, [min–max]; calls/s: above 1 is faster; p50 and CPU: above 1 is slower):"
    echo
    echo "| servers | in flight | calls/s | p50 | servers CPU/call |"
    echo "|---|---:|---:|---:|---:|"
    for c in "${C_LIST[@]}"; do
        for k in "${KIND_LIST[@]}"; do
            [[ $k == sdk ]] && continue
            printf '| %s ÷ sdk | %s | %s | %s | %s |\n' "$k" "$c" \
                "$(ratio "$k:$c" "sdk:$c" ops_per_s)" "$(ratio "$k:$c" "sdk:$c" p50_us)" \
                "$(ratio "$k:$c" "sdk:$c" srv_cpu_us_per_op)"
        done
    done
fi
if ((MC_REPS > 0)); then
    mc="mc:$MC_INFLIGHT"
    echo
    echo "Multicast (benchmark.Benchmark.Multicast, TimedMsg, one-way) on the 3-node cluster," \
        "$MC_INFLIGHT in flight, $MC_REPS run(s); client: multicasts/s whose sends to the" \
        "$CONFIG_SIZE nodes were confirmed, p50/p99 of that confirmation; nodes: StopServerBenchmark" \
        "(median node)."
    echo
    echo "| in flight | client multicasts/s | p50 µs | p99 µs | node msgs/s | node one-way latency" \
        "avg µs | client CPU µs/op | servers CPU µs/op | errors |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    printf '| %s | %.0f | %.1f | %.1f | %.0f | %.1f | %.1f | %.1f | %s |\n' "$MC_INFLIGHT" \
        "$(stat "$mc" ops_per_s)" "$(stat "$mc" p50_us)" "$(stat "$mc" p99_us)" \
        "$(stat "$mc" srv_ops_per_s)" "$(stat "$mc" srv_latency_avg_us)" \
        "$(stat "$mc" cpu_us_per_op)" "$(stat "$mc" srv_cpu_us_per_op)" "$(errors "$mc")"
fi

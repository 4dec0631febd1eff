#!/usr/bin/env bash
# The quorum-call benchmark: qc_bench (echo quorum calls with Threshold(q) through the SDK, as
# Gorums' cmd/benchmark QuorumCall) against N nh_bench_server processes on loopback, with the
# RPC baselines of the same run beside it: the bare gRPC-core baseline_echo client/server in
# ping-pong (1 in flight) and pipelined (1000 in flight), and nodehost's rpc_bench ping-pong.
# Builds a Release tree in build-bench/ if needed, alternates the cases (reversing the order on
# every other repetition) so machine noise hits all of them, and prints a markdown table of
# the medians.
#
#   bash bench/run_qc.sh
#
# Environment (all optional):
#   RUN_SECONDS=5  measured seconds per run        REPS=3      repetitions of every case
#   WARMUP=1       warm-up seconds per run          PAYLOAD=64  payload bytes (zeros for QC)
#   QC_CASES="3:2:1 3:2:16 5:3:1 5:3:16 3:1:1 3:1:16 3:2:16:t1 3:2:16:t2"   quorum calls,
#                  size:quorum:concurrency; a ":b" suffix runs that case against baseline_echo
#                  servers instead of nh_bench_server (the envelope is the same), e.g. "3:2:1:b";
#                  a ":tN" suffix runs the client and the servers with N event loops
#                  (NH_THREADS=N: nh_runtime_opts.threads) and reports its ops/s against the
#                  same case with ":t1"
#   RPC_CASES="base:1 base:1000 rpc:1 base:16 rpc:16"   RPC baselines: base = baseline_echo,
#                  rpc = rpc_bench (nodehost), each with its number of messages in flight
#   BUILD_DIR=<repo>/build-bench
# Raw result lines go to stderr; the table goes to stdout.
#
# CPU per operation: qc_bench measures its own CPU time (getrusage) and its servers' (from
# /proc/<pid>/stat) over its measured window. For the RPC baselines this script reads
# /proc/<pid>/stat of the client and the server from WARMUP+0.5 s after the client started
# until 0.5 s before its window ends, and divides by the client's reported rate.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
RUN_SECONDS=${RUN_SECONDS:-5}
REPS=${REPS:-3}
WARMUP=${WARMUP:-1}
PAYLOAD=${PAYLOAD:-64}
QC_CASES=${QC_CASES:-"3:2:1 3:2:16 5:3:1 5:3:16 3:1:1 3:1:16 3:2:16:t1 3:2:16:t2"}
RPC_CASES=${RPC_CASES:-"base:1 base:1000 rpc:1 base:16 rpc:16"}
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

# ---- build -------------------------------------------------------------------------------------
bench_build baseline_echo rpc_bench nh_bench_server qc_bench
BIN=$BUILD_DIR/bench

bench_work

# cpu_ticks <pid>...: the sum of utime + stime (clock ticks) of these processes.
cpu_ticks() {
    local p sum=0 t
    for p in "$@"; do
        t=$(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')
        sum=$((sum + t))
    done
    echo "$sum"
}

now_s() { date +%s.%N; }

# run_rpc <base|rpc> <inflight>: one RPC baseline run; prints its result line with the CPU per
# message of the client and the server appended.
run_rpc() {
    local kind=$1 inflight=$2 line c0 s0 t0 c1 s1 t1 hz
    if [[ $kind == base ]]; then
        start_echo_servers baseline 1
    else
        start_echo_servers nodehost 1
    fi
    local args=("$ADDRS" --inflight "$inflight" --seconds "$RUN_SECONDS" --payload "$PAYLOAD"
        --warmup "$WARMUP")
    if [[ $kind == base ]]; then
        "$BIN/baseline_echo" client "${args[@]}" >"$WORK/client.out" 2>"$WORK/client.err" &
    else
        "$BIN/rpc_bench" "${args[@]}" >"$WORK/client.out" 2>"$WORK/client.err" &
    fi
    CLIENT_PID=$!
    sleep "$(awk -v w="$WARMUP" 'BEGIN {print w + 0.5}')"
    c0=$(cpu_ticks "$CLIENT_PID") s0=$(cpu_ticks "${SERVER_PIDS[@]}") t0=$(now_s)
    sleep "$(awk -v s="$RUN_SECONDS" 'BEGIN {print (s > 1.5 ? s - 1 : s / 3)}')"
    c1=$(cpu_ticks "$CLIENT_PID") s1=$(cpu_ticks "${SERVER_PIDS[@]}") t1=$(now_s)
    wait "$CLIENT_PID" || true
    CLIENT_PID=""
    kill_servers
    line=$(result_line "$(cat "$WORK/client.out")" msgs_per_s= \
        "msgs_per_s=0 p50_us=0 p99_us=0 count=0 errors=1" "$kind client (inflight $inflight)")
    hz=$(getconf CLK_TCK)
    local rate
    rate=$(field msgs_per_s "$line")
    # CPU seconds per wall second divided by messages per second, in µs.
    printf '%s %s\n' "$line" "$(awk -v c0="$c0" -v c1="$c1" -v s0="$s0" -v s1="$s1" \
        -v t0="$t0" -v t1="$t1" -v hz="$hz" -v r="$rate" 'BEGIN {
            d = t1 - t0
            if (r <= 0 || d <= 0) { print "cpu_us_per_op=0 srv_cpu_us_per_op=0"; exit }
            printf "cpu_us_per_op=%.2f srv_cpu_us_per_op=%.2f",
                (c1 - c0) / hz / d / r * 1e6, (s1 - s0) / hz / d / r * 1e6 }')"
}

# run_qc <size> <quorum> <concurrency> [b|tN]: one quorum-call run (b: against baseline_echo
# servers; tN: client and servers with N event loops); prints qc_bench's result line.
run_qc() {
    local n=$1 q=$2 c=$3 line pids
    if [[ ${4:-} == t* ]]; then export NH_THREADS=${4#t}; fi
    if [[ ${4:-} == b ]]; then
        start_echo_servers baseline "$n"
    else
        start_echo_servers nodehost "$n"
    fi
    pids=$(IFS=,; echo "${SERVER_PIDS[*]}")
    line=$("$BIN/qc_bench" --servers "$ADDRS" --server-pids "$pids" --config-size "$n" \
        --quorum-size "$q" --concurrent "$c" --payload "$PAYLOAD" --seconds "$RUN_SECONDS" \
        --warmup "$WARMUP" 2>"$WORK/client.err" || true)
    kill_servers
    result_line "$line" ops_per_s= \
        "ops_per_s=0 p50_us=0 p99_us=0 cpu_us_per_op=0 srv_cpu_us_per_op=0 count=0 errors=1" \
        "qc_bench n=$n q=$q c=$c"
}

# ---- runs --------------------------------------------------------------------------------------
# Cases are interleaved: one RPC baseline, then the quorum calls, so every stretch of time has
# both. Keys: "base:<inflight>", "rpc:<inflight>", "qc:<n>:<q>:<c>".
read -r -a RPC_LIST <<<"$RPC_CASES"
read -r -a QC_LIST <<<"$QC_CASES"
CASES=()
step=$(((${#QC_LIST[@]} + ${#RPC_LIST[@]} - 1) / (${#RPC_LIST[@]} > 0 ? ${#RPC_LIST[@]} : 1)))
r=0
for ((k = 0; k < ${#QC_LIST[@]}; k++)); do
    if ((k % step == 0 && r < ${#RPC_LIST[@]})); then
        CASES+=("${RPC_LIST[$r]}")
        r=$((r + 1))
    fi
    CASES+=("qc:${QC_LIST[$k]}")
done
for (( ; r < ${#RPC_LIST[@]}; r++)); do CASES+=("${RPC_LIST[$r]}"); done
RESULTS=$WORK/results
: >"$RESULTS"

LOAD_BEFORE=$(loadavg)
log "machine: $(machine)"
log "load average before: $LOAD_BEFORE; case order: ${CASES[*]}"
for rep in $(seq "$REPS"); do
    rep_order "$rep" "${CASES[@]}"
    for case_ in "${ORDER[@]}"; do
        IFS=: read -r kind a b c d <<<"$case_"
        if [[ $kind == qc ]]; then
            line=$(run_qc "$a" "$b" "$c" "$d")
        else
            line=$(run_rpc "$kind" "$a")
            line=${line/msgs_per_s=/ops_per_s=}
        fi
        log "rep=$rep $case_ $line (load $(load1))"
        echo "$case_ $rep $line" >>"$RESULTS"
    done
done
LOAD_AFTER=$(loadavg)
log "load average after: $LOAD_AFTER"

values() { case_values "$@"; } # values <case> <field>: lib.sh
range() { values "$1" ops_per_s | min_max_k; }
errors() { values "$1" errors | sum; }
# ratio_range <caseA> <fieldA> <caseB> <fieldB>: min–max over repetitions of A/B (same rep).
ratio_range() {
    paste <(values "$1" "$2") <(values "$3" "$4") |
        awk '$2 > 0 {r = $1 / $2; if (NR == 1 || r < lo) lo = r; if (NR == 1 || r > hi) hi = r}
            END {printf "%.2f–%.2f", lo, hi}'
}
div() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }

has_case() { [[ " ${CASES[*]} " == *" $1 "* ]]; }

echo "Medians of $REPS runs of ${RUN_SECONDS} s after ${WARMUP} s of warm-up, ${PAYLOAD}-byte" \
    "payload; [min–max] of ops/s. Load average before: $LOAD_BEFORE; after: $LOAD_AFTER."
echo
echo "| workload | n | quorum | in flight | ops/s | p50 µs | p99 µs | client CPU µs/op" \
    "| servers CPU µs/op | vs the goals | errors |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"
# RPC rows first, then the quorum calls in the order given.
ordered=("${RPC_LIST[@]}")
for q in "${QC_LIST[@]}"; do ordered+=("qc:$q"); done
for case_ in "${ordered[@]}"; do
    IFS=: read -r kind a b c d <<<"$case_"
    goal="–"
    case $kind in
        base) name="baseline_echo (bare gRPC)" n=1 q=– inflight=$a ;;
        rpc) name="rpc_bench (nodehost RPC)" n=1 q=– inflight=$a ;;
        *)
            name="quorum call" n=$a q=$b inflight=$c
            if [[ $d == b ]]; then name="quorum call, baseline_echo servers"; fi
            if [[ $d == t* ]]; then name="quorum call, threads: ${d#t}"; fi
            ops=$(stat "$case_" ops_per_s) p50=$(stat "$case_" p50_us)
            one="qc:$a:$b:$c:t1"
            if [[ $d == t* && $d != t1 ]] && has_case "$one"; then
                goal="ops/s ÷ threads: 1 ops/s = $(div "$ops" "$(stat "$one" ops_per_s)")"
                goal+=" [$(ratio_range "$case_" ops_per_s "$one" ops_per_s)]"
            elif ((c == 1)); then
                goal=""
                for ref in base:1 rpc:1; do
                    has_case "$ref" || continue
                    goal+="${goal:+; }p50 ÷ ${ref%%:*} ping-pong p50 = "
                    goal+="$(div "$p50" "$(stat "$ref" p50_us)")"
                    goal+=" [$(ratio_range "$case_" p50_us "$ref" p50_us)]"
                done
            elif has_case base:1000; then
                goal="ops/s ÷ base pipelined msgs/s = $(div "$ops" "$(stat base:1000 ops_per_s)")"
                goal+=" [$(ratio_range "$case_" ops_per_s base:1000 ops_per_s)]"
            fi
            ;;
    esac
    printf '| %s | %s | %s | %s | %.0f [%s] | %.1f | %.1f | %.1f | %.1f | %s | %s |\n' \
        "$name" "$n" "$q" "$inflight" "$(stat "$case_" ops_per_s)" "$(range "$case_")" \
        "$(stat "$case_" p50_us)" "$(stat "$case_" p99_us)" \
        "$(stat "$case_" cpu_us_per_op)" "$(stat "$case_" srv_cpu_us_per_op)" "${goal:-–}" \
        "$(errors "$case_")"
done
echo
echo "Goals: at 16 in flight, QC(n=3) ops/s ≥ 1/3 of the baseline's pipelined msgs/s (ratio" \
    "≥ 0.33); at 1 in flight, QC(n=3) p50 ≤ 1.5 × the RPC ping-pong p50 (ratio ≤ 1.50)." \
    "Brackets: the ratio's range over the repetitions (same repetition paired)."

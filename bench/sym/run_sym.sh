#!/usr/bin/env bash
# Server-initiated quorum calls (the symmetric configuration), with the bare gRPC baseline of
# the same run. See docs/benchmarks-symmetric.md.
#
#   bash bench/sym/run_sym.sh
#
# Cases, each with fresh processes on free loopback ports:
#   base:1 base:1000  baseline_echo client/server (bare gRPC C core), ping-pong and pipelined
#   cfg:N             N sym_node processes that dial each other (--dial); node 1 drives quorum
#                     calls of bench.Echo over its Config (itself, dispatched in process, plus
#                     the N-1 peers): majority and all, at concurrency 1 and 16
#   cli:K             node 1 (sym_node, node_id 1, no peers) and ceil(K/STREAMS_PER_PROC)
#                     sym_clients processes holding K client-peer streams (gorums-node-id 0);
#                     node 1 drives quorum calls over its ClientConfig: all and majority, and
#                     multicasts to all (done when every send completed), at
#                     concurrency 1 (and 16 when K <= 10); node 1's VmRSS before any client and
#                     once all K are connected; the admission of the K clients: time from the
#                     first in to the K-th, node 1's CPU time meanwhile, the longest a task
#                     posted to node 1's owner thread waited meanwhile (stall), and how many
#                     ClientConfig change notifications node 1 got
#   own:K             the same with K sym_clients processes of one stream each: every client
#                     peer on its own TCP connection, as separate client programs would be
# Every case runs REPS times; the case order (and the order of the quorum-call workloads inside
# a driver) is reversed on every other repetition. Raw lines go to stderr, markdown tables of
# the medians to stdout.
#
# Environment (all optional):
#   RUN_SECONDS=5  measured seconds per workload     REPS=3         repetitions
#   WARMUP=1       warm-up seconds per workload      PAYLOAD=64     payload bytes
#   SIZES="3 5"    Config sizes ("": none)          CLIENTS="10 100 1000"  ClientConfig sizes
#   STREAMS_PER_PROC=250  client-peer streams per sym_clients process (cli:K)
#   OWN_CONN="100" ClientConfig sizes run with one process (and connection) per client
#   SYM_KEEPALIVE=TIME_MS,TIMEOUT_MS  node 1's keepalive in the cli/own cases (sym_node
#                  --keepalive); thousands of clients connecting at once can keep node 1's owner
#                  thread inside gRPC for longer than the default 2 s timeout
#   NODE_THREADS=1 event loops of node 1 in the cli/own cases (NH_THREADS of that process only;
#                  the client processes keep one loop each)
#   BUILD_DIR=<repo>/build-bench
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
RUN_SECONDS=${RUN_SECONDS:-5}
REPS=${REPS:-3}
WARMUP=${WARMUP:-1}
PAYLOAD=${PAYLOAD:-64}
SIZES=${SIZES-"3 5"}
CLIENTS=${CLIENTS:-"10 100 1000"}
STREAMS_PER_PROC=${STREAMS_PER_PROC:-250}
OWN_CONN=${OWN_CONN-100}
SYM_KEEPALIVE=${SYM_KEEPALIVE:-}
NODE_THREADS=${NODE_THREADS:-1}
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

# ---- build -------------------------------------------------------------------------------------
cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DNH_BUILD_TESTS=OFF >&2
cmake --build "$BUILD_DIR" -j"$(nproc)" --target sym_node sym_clients baseline_echo >&2
BIN=$BUILD_DIR/bench

bench_work

# wait_exit <pid> <seconds>: waits for a process to end; kills it (and fails) after the time.
wait_exit() {
    local pid=$1 i
    for ((i = 0; i < $2 * 10; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" 2>/dev/null && return 0
            return 1
        fi
        sleep 0.1
    done
    log "process $pid still running after $2 s: killed"
    kill "$pid" 2>/dev/null || true
    return 1
}

# deadline <workloads> <slack>: whole seconds a driver may take.
deadline() {
    awk -v r="$RUN_SECONDS" -v w="$WARMUP" -v n="$1" -v s="$2" \
        'BEGIN {printf "%d\n", n * (r + w + 5) + s}'
}

RESULTS=$WORK/results # "<rep> <case> <key=value ...>"
: >"$RESULTS"
FAILED=0

# ---- baseline ------------------------------------------------------------------------------------
run_base() { # run_base <rep> <inflight>
    local rep=$1 inflight=$2 out=$WORK/base.out line port
    : >"$out"
    "$BIN/baseline_echo" server 127.0.0.1:0 >"$out" 2>"$WORK/base.err" &
    SERVER_PIDS+=($!)
    if ! wait_line "$out" "${SERVER_PIDS[-1]}" '^listening ' 10; then
        log "baseline server did not start:"
        cat "$WORK/base.err" >&2
        kill_servers
        FAILED=1
        return
    fi
    port=$(listening_port "$out")
    line=$("$BIN/baseline_echo" client 127.0.0.1:"$port" --inflight "$inflight" \
        --seconds "$RUN_SECONDS" --payload "$PAYLOAD" --warmup "$WARMUP" 2>"$WORK/bclient.err" ||
        true)
    kill_servers
    if [[ $line != msgs_per_s=* ]]; then
        log "baseline client (inflight $inflight) failed:"
        cat "$WORK/bclient.err" >&2
        FAILED=1
        return
    fi
    log "rep=$rep base:$inflight $line"
    echo "$rep base:$inflight $line" >>"$RESULTS"
}

# workloads <rep> <list>: the list, reversed on even repetitions.
workloads() {
    local rep=$1 list=$2
    if ((rep % 2 == 0)); then
        tr ',' '\n' <<<"$list" | tac | paste -sd, -
    else
        printf '%s\n' "$list"
    fi
}

# linefield <line regex> <key> <file>: the value of key=value on the first matching line.
linefield() {
    awk -v re="$1" -v k="$2" '$0 ~ re {
        for (i = 1; i <= NF; i++) if (index($i, k "=") == 1) { print substr($i, length(k) + 2); exit }
    }' "$3"
}

# collect <rep> <case> <driver out>: stores the driver's result lines.
collect() {
    local rep=$1 case=$2 out=$3 extra=${4:-} line
    while read -r line; do
        log "rep=$rep $case ${line#result } $extra"
        echo "$rep $case ${line#result } $extra" >>"$RESULTS"
    done < <(grep '^result ' "$out")
}

# ---- Config: n symmetric nodes ---------------------------------------------------------------------
run_cfg() { # run_cfg <rep> <n>
    local rep=$1 n=$2 attempt i runs ports peers out
    runs=$(workloads "$rep" "majority:1,all:1,majority:16,all:16")
    for attempt in 1 2 3; do
        read -r -a ports < <("$BIN/sym/sym_node" --free-ports "$n")
        peers=()
        for ((i = 1; i <= n; i++)); do peers+=(--peer "$i=127.0.0.1:${ports[i - 1]}"); done
        local ok=1
        for ((i = 2; i <= n; i++)); do
            out=$WORK/node$i.out
            : >"$out"
            "$BIN/sym/sym_node" --id "$i" "${peers[@]}" --dial --listen "127.0.0.1:${ports[i - 1]}" \
                >"$out" 2>"$WORK/node$i.err" &
            SERVER_PIDS+=($!)
            if ! wait_line "$out" "${SERVER_PIDS[-1]}" '^listening ' 10; then ok=0; fi
        done
        out=$WORK/node1.out
        : >"$out"
        if ((ok)); then
            "$BIN/sym/sym_node" --id 1 "${peers[@]}" --dial --listen "127.0.0.1:${ports[0]}" \
                --drive config --size "$n" --runs "$runs" --seconds "$RUN_SECONDS" \
                --warmup "$WARMUP" --payload "$PAYLOAD" >"$out" 2>"$WORK/node1.err" &
            SERVER_PIDS+=($!)
            if wait_line "$out" "${SERVER_PIDS[-1]}" '^listening ' 10; then break; fi
        fi
        log "cfg:$n: a node did not start (attempt $attempt):"
        cat "$WORK"/node*.err >&2
        kill_servers
        if ((attempt == 3)); then
            FAILED=1
            return
        fi
    done
    if ! wait_exit "${SERVER_PIDS[-1]}" "$(deadline 4 120)"; then
        log "cfg:$n: the driver failed:"
        cat "$WORK/node1.err" >&2
        FAILED=1
    fi
    collect "$rep" "cfg:$n" "$out"
    kill_servers
}

# ---- ClientConfig: node 1 and K client peers ---------------------------------------------------------
run_cli() { # run_cli <rep> <k> <streams per process> <case prefix: cli or own>
    local rep=$1 k=$2 spp=$3 name=$4:$2 attempt runs port out procs per left i driver rss0 rssk heap0 heapk line f
    runs="all:1,majority:1,multicast:1"
    if ((k <= 10)); then runs="$runs,all:16,majority:16"; fi
    runs=$(workloads "$rep" "$runs")
    out=$WORK/node1.out
    for attempt in 1 2 3; do
        port=$("$BIN/sym/sym_node" --free-ports 1)
        : >"$out"
        NH_THREADS=$NODE_THREADS "$BIN/sym/sym_node" --id 1 --listen "127.0.0.1:$port" \
            --drive clients --size "$k" \
            --runs "$runs" --seconds "$RUN_SECONDS" --warmup "$WARMUP" --payload "$PAYLOAD" \
            ${SYM_KEEPALIVE:+--keepalive "$SYM_KEEPALIVE"} >"$out" 2>"$WORK/node1.err" &
        SERVER_PIDS+=($!)
        if wait_line "$out" "${SERVER_PIDS[-1]}" '^listening ' 10; then break; fi
        log "$name: node 1 did not start (attempt $attempt):"
        cat "$WORK/node1.err" >&2
        kill_servers
        if ((attempt == 3)); then
            FAILED=1
            return
        fi
    done
    driver=${SERVER_PIDS[-1]}
    procs=$(((k + spp - 1) / spp))
    left=$k
    for ((i = 0; i < procs; i++)); do
        per=$((left / (procs - i)))
        left=$((left - per))
        NH_THREADS=1 "$BIN/sym/sym_clients" "127.0.0.1:$port" --streams "$per" \
            >"$WORK/clients$i.out" \
            2>"$WORK/clients$i.err" &
        SERVER_PIDS+=($!)
    done
    if ! wait_exit "$driver" "$(deadline 4 300)"; then
        log "$name: the driver failed:"
        cat "$WORK/node1.err" "$WORK"/clients*.err >&2
        FAILED=1
    fi
    rss0=$(linefield '^listening ' rss_kb "$out")
    heap0=$(linefield '^listening ' heap_kb "$out")
    rssk=$(linefield '^ready ' rss_kb "$out")
    heapk=$(linefield '^ready ' heap_kb "$out")
    collect "$rep" "$name" "$out" "procs_clients=$procs"
    if [[ -n $rss0 && -n $rssk ]]; then
        line="rss0_kb=$rss0 rssk_kb=$rssk heap0_kb=$heap0 heapk_kb=$heapk"
        log "rep=$rep mem:$name $line"
        echo "$rep mem:$name $line" >>"$RESULTS"
    fi
    line=""
    for f in admit_ms admit_cpu_ms stall_max_ms notifications; do
        line="$line $f=$(linefield '^ready ' "$f" "$out")"
    done
    if [[ -n $(linefield '^ready ' admit_ms "$out") ]]; then
        log "rep=$rep adm:$name$line"
        echo "$rep adm:$name$line" >>"$RESULTS"
    fi
    kill_servers
}

# ---- runs ----------------------------------------------------------------------------------------
CASES=(base:1 base:1000)
for n in $SIZES; do CASES+=("cfg:$n"); done
for k in $CLIENTS; do CASES+=("cli:$k"); done
for k in $OWN_CONN; do CASES+=("own:$k"); done

log "machine: $(machine), load average $(loadavg)"
for rep in $(seq "$REPS"); do
    rep_order "$rep" "${CASES[@]}"
    for c in "${ORDER[@]}"; do
        case $c in
            base:*) run_base "$rep" "${c#base:}" ;;
            cfg:*) run_cfg "$rep" "${c#cfg:}" ;;
            cli:*) run_cli "$rep" "${c#cli:}" "$STREAMS_PER_PROC" cli ;;
            own:*) run_cli "$rep" "${c#own:}" 1 own ;;
        esac
    done
done
log "load average at the end: $(loadavg)"

# ---- tables --------------------------------------------------------------------------------------
# values <case> <field> [<quorum> <conc>]: one value per repetition.
values() {
    awk -v c="$1" -v f="$2" -v q="${3:-}" -v k="${4:-}" '
        $2 != c { next }
        {
            delete kv
            for (i = 3; i <= NF; i++) { split($i, p, "="); kv[p[1]] = p[2] }
            if (q != "" && (kv["quorum"] != q || kv["conc"] != k)) next
            if (f in kv) print kv[f]
        }' "$RESULTS"
}
range() {
    values "$@" | sort -g | awk 'NR == 1 {lo = $1} {hi = $1}
        END {if (NR == 0) print "-"; else if (hi >= 10000) printf "%.1fk–%.1fk", lo / 1000, hi / 1000;
             else printf "%.0f–%.0f", lo, hi}'
}
total() { values "$@" | sum; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}'; }

echo "Medians of $REPS repetitions of ${RUN_SECONDS} s (after ${WARMUP} s of warm-up each)," \
    "${PAYLOAD}-byte payload; [min–max] of the rate."
echo
echo "Baseline (bare gRPC C core, one stream):"
echo
echo "| mode | msgs/s | p50 / p99 µs | errors |"
echo "|---|---:|---:|---:|"
for m in 1 1000; do
    printf '| %s | %.0f [%s] | %.1f / %.1f | %s |\n' \
        "$([[ $m == 1 ]] && echo "ping-pong (1 in flight)" || echo "pipelined ($m in flight)")" \
        "$(stat "base:$m" msgs_per_s)" "$(range "base:$m" msgs_per_s)" \
        "$(stat "base:$m" p50_us)" "$(stat "base:$m" p99_us)" "$(total "base:$m" errors)"
done
PING=$(stat base:1 msgs_per_s)
PING_P50=$(stat base:1 p50_us)
PIPE=$(stat base:1000 msgs_per_s)

if [[ -n $SIZES ]]; then
    echo
    echo "Quorum calls from node 1 over its Config (node 1 itself is a member, dispatched in"
    echo "process; the other n-1 are separate processes reached over the streams they opened):"
    echo
    printf '| n | quorum | conc | ops/s | p50 / p99 µs | CPU µs/op node 1 | CPU µs/op all '
    printf '| self in Config | errors | ops/s ÷ (pipelined/n) | p50 ÷ ping-pong p50 |\n'
    echo "|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|"
    for n in $SIZES; do
        for qc in majority:1 all:1 majority:16 all:16; do
            q=${qc%:*} k=${qc#*:}
            ops=$(stat "cfg:$n" ops_per_s "$q" "$k")
            p50=$(stat "cfg:$n" p50_us "$q" "$k")
            self=$(values "cfg:$n" self_in_config "$q" "$k" | sort -u | paste -sd/ -)
            printf '| %s | %s | %s | %.0f [%s] | %.1f / %.1f | %.1f | %.1f | %s | %s | %s | %s |\n' \
                "$n" "$q" "$k" "$ops" "$(range "cfg:$n" ops_per_s "$q" "$k")" "$p50" \
                "$(stat "cfg:$n" p99_us "$q" "$k")" "$(stat "cfg:$n" cpu_self_us_per_op "$q" "$k")" \
                "$(stat "cfg:$n" cpu_all_us_per_op "$q" "$k")" \
                "$([[ $self == 1 ]] && echo yes || echo "${self:-?}")" \
                "$(total "cfg:$n" errors "$q" "$k")" \
                "$([[ $k == 16 ]] && ratio "$ops" "$(awk -v p="$PIPE" -v n="$n" 'BEGIN {print p / n}')" || echo "")" \
                "$([[ $k == 1 ]] && ratio "$p50" "$PING_P50" || echo "")"
        done
    done
fi

# client_rows: "<case> <k> <connections label>" for every ClientConfig case that ran.
client_rows() {
    local k
    for k in $CLIENTS; do echo "cli:$k $k $(((k + STREAMS_PER_PROC - 1) / STREAMS_PER_PROC))"; done
    for k in $OWN_CONN; do echo "own:$k $k $k"; done
}

if [[ -n $CLIENTS$OWN_CONN ]]; then
    echo
    echo "Quorum calls from node 1 over its ClientConfig: K client peers (gorums-node-id 0) held"
    echo "by sym_clients processes (one TCP connection each), served through nh_runtime_handle:"
    echo
    printf '| clients | connections | quorum | conc | ops/s | p50 / p99 µs | CPU µs/op node 1 '
    printf '| CPU µs/op all | node 1 CPU µs per leg | errors |\n'
    echo "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"
    while read -r cs k conns; do
        list="all:1 majority:1 multicast:1"
        if ((k <= 10)); then list="$list all:16 majority:16"; fi
        for qc in $list; do
            q=${qc%:*} c=${qc#*:}
            self=$(stat "$cs" cpu_self_us_per_op "$q" "$c")
            printf '| %s | %s | %s | %s | %.1f [%s] | %.1f / %.1f | %.1f | %.1f | %.2f | %s |\n' \
                "$k" "$conns" "$q" "$c" "$(stat "$cs" ops_per_s "$q" "$c")" \
                "$(range "$cs" ops_per_s "$q" "$c")" "$(stat "$cs" p50_us "$q" "$c")" \
                "$(stat "$cs" p99_us "$q" "$c")" "$self" \
                "$(stat "$cs" cpu_all_us_per_op "$q" "$c")" \
                "$(awk -v s="$self" -v k="$k" 'BEGIN {print s / k}')" \
                "$(total "$cs" errors "$q" "$c")"
        done
    done < <(client_rows)
    echo
    echo "Node 1's memory with 0 clients (listening, before any connection) and with K client"
    echo "peers connected (idle, 1 s after its ClientConfig reached K): VmRSS, and the malloc"
    echo "heap in use (mallinfo2):"
    echo
    printf '| clients | connections | RSS 0 clients (kB) | RSS K clients (kB) | RSS per client (kB) '
    printf '| heap 0 (kB) | heap K (kB) | heap per client (kB) |\n'
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
    while read -r cs k conns; do
        r0=$(stat "mem:$cs" rss0_kb)
        rk=$(stat "mem:$cs" rssk_kb)
        h0=$(stat "mem:$cs" heap0_kb)
        hk=$(stat "mem:$cs" heapk_kb)
        printf '| %s | %s | %.0f | %.0f | %.1f | %.0f | %.0f | %.1f |\n' "$k" "$conns" "$r0" "$rk" \
            "$(awk -v a="$r0" -v b="$rk" -v k="$k" 'BEGIN {print (b - a) / k}')" "$h0" "$hk" \
            "$(awk -v a="$h0" -v b="$hk" -v k="$k" 'BEGIN {print (b - a) / k}')"
    done < <(client_rows)
    echo
    echo "Admission of the K client peers at node 1: from the first in to the K-th (ClientConfig"
    echo "reached K), node 1's CPU time over that span (all threads), the longest a task posted to"
    echo "node 1's owner thread waited meanwhile (probed every ~1 ms), and the ClientConfig change"
    echo "notifications node 1 got until then:"
    echo
    printf '| clients | connections | admission ms | CPU ms | CPU µs per client | longest stall ms '
    printf '| notifications |\n'
    echo "|---:|---:|---:|---:|---:|---:|---:|"
    while read -r cs k conns; do
        a=$(stat "adm:$cs" admit_ms)
        c=$(stat "adm:$cs" admit_cpu_ms)
        printf '| %s | %s | %.1f | %.1f | %.1f | %.2f | %.0f |\n' "$k" "$conns" "$a" "$c" \
            "$(awk -v c="$c" -v k="$k" 'BEGIN {print c * 1000 / k}')" \
            "$(stat "adm:$cs" stall_max_ms)" "$(stat "adm:$cs" notifications)"
    done < <(client_rows)
fi
echo
echo "Baseline ping-pong ${PING} msgs/s, pipelined ${PIPE} msgs/s (medians)."
if ((FAILED)); then
    log "some runs failed (see above)"
    exit 1
fi

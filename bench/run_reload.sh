#!/usr/bin/env bash
# Hot reload of the storage plugin on a 3-node nodehost cluster (docs/benchmarks.md, "Plugin
# reload"). Two builds of plugins/storage that differ only in their version string
# (bench/plugins/storage_bench_{a,b}.so, "1.0.0+bench-a" and "1.0.0+bench-b") are renamed in turn
# over the plugin path the cluster's YAML file names (a temporary directory), and reloaded.
#
#   bash bench/run_reload.sh [--quick]
#
# 1. Trigger to new generation serving (one cluster, ROUNDS rounds per trigger; each round
#    installs the other build and reloads the 3 nodes one after the other):
#      admin   reload_bench trigger --via admin: nh_admin_reload() (nodehost.Admin.Reload) on a
#              helper thread while the main thread sends proto.Storage.Info back to back to the
#              same node; time from the call to the first Info answer with the new version, the
#              time nh_admin_reload() took, and the node's own took_ns (Admin.Status);
#      sighup  the same with kill(pid, SIGHUP) as the trigger;
#      admin-nopoll  nh_admin_reload() alone, then one Info to check (the reload without the
#              polling competing for the 2 cores).
#    Then the node logs' reload lines (info level) are summarised.
# 1b. Where one reload's time goes: a single node started under `strace -f --seccomp-bpf`
#    (stopping only at openat, rename, write, mprotect), TRACE_ROUNDS reloads; the syscalls mark
#    config re-read, SHA-256 change check, copy, dlopen, init, hand-over, switch. TRACE=0 skips
#    it (also skipped without strace).
# 2. Call latency during reloads: reload_bench load, a closed loop of proto.Storage.WriteQC
#    (64 keys, 16-byte values, quorum QUORUM of 3) with INFLIGHT calls in flight: phase A1
#    steady state, phase B the same load while every node is reloaded every RELOAD_MS ms
#    (alternating builds), phase A2 steady state, RUN_SECONDS each, after WARMUP. Fresh nodes
#    for every run, REPS runs per in-flight count, in-flight counts alternated and reversed on
#    every other repetition. Every call must succeed; failures are printed.
#
# Environment (all optional; --quick sets the values in brackets):
#   ROUNDS=30 [5]       rounds per trigger (3 reloads each)
#   RUN_SECONDS=5 [1]   seconds per phase     WARMUP=1 [0.5]   warm-up seconds per run
#   REPS=3 [1]          runs per in-flight count
#   INFLIGHT="1 16"     WriteQC calls kept in flight
#   RELOAD_MS=200       reload period in phase B
#   QUORUM=2            WriteQC quorum (threshold) of the 3 nodes
#   TRACE=1             step 1b (needs strace)   TRACE_ROUNDS=10
#   BUILD_DIR=<repo>/build-bench (configured Release, tests off, bench on, if no CMakeCache.txt)
#   NO_BUILD=1          use the binaries in BUILD_DIR as they are
# Raw lines go to stderr; the tables go to stdout. Needs python3 (to find free ports). Takes
# about 2.5 minutes (about 25 s with --quick).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUICK=0
for arg in "$@"; do
    case $arg in
        --quick) QUICK=1 ;;
        *)
            echo "usage: $0 [--quick]" >&2
            exit 2
            ;;
    esac
done
if ((QUICK)); then
    ROUNDS=${ROUNDS:-5} RUN_SECONDS=${RUN_SECONDS:-1} WARMUP=${WARMUP:-0.5} REPS=${REPS:-1}
fi
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
ROUNDS=${ROUNDS:-30}
RUN_SECONDS=${RUN_SECONDS:-5}
WARMUP=${WARMUP:-1}
REPS=${REPS:-3}
INFLIGHT=${INFLIGHT:-"1 16"}
RELOAD_MS=${RELOAD_MS:-200}
QUORUM=${QUORUM:-2}
N=3
VERSION_A=1.0.0+bench-a
VERSION_B=1.0.0+bench-b
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

# ---- build -------------------------------------------------------------------------------------
if [[ ${NO_BUILD:-0} != 1 ]]; then
    bench_build nodehost_exe reload_bench storage_bench_a storage_bench_b
fi
DRIVER=$BUILD_DIR/bench/reload_bench
NODEHOST=$BUILD_DIR/host/nodehost
BUILD_A=$BUILD_DIR/bench/plugins/storage_bench_a.so
BUILD_B=$BUILD_DIR/bench/plugins/storage_bench_b.so
for f in "$DRIVER" "$NODEHOST" "$BUILD_A" "$BUILD_B"; do
    [[ -f $f ]] || { log "missing $f (build it, or unset NO_BUILD)"; exit 1; }
done

bench_work
PLUGIN=$WORK/plugins/storage.so
mkdir -p "$WORK/plugins"

# start_cluster: 3 nodes sharing one cluster file, the plugin path holding build A; sets
# SERVER_PIDS, ADDRS and PIDS. Returns 1 when they did not come up.
start_cluster() {
    local i ports
    SERVER_PIDS=()
    ADDRS=""
    rm -rf "$WORK/state" "$WORK"/node*.log
    cp "$BUILD_A" "$PLUGIN.tmp" && mv -f "$PLUGIN.tmp" "$PLUGIN"
    read -r -a ports <<<"$(free_ports $N)"
    for ((i = 0; i < N; i++)); do ADDRS+="${ADDRS:+,}127.0.0.1:${ports[$i]}"; done
    cluster_yaml storage "$PLUGIN" info "${ports[@]}" >"$WORK/cluster.yaml"
    for ((i = 0; i < N; i++)); do
        "$NODEHOST" --config "$WORK/cluster.yaml" --id $((i + 1)) --state-dir "$WORK/state" \
            >/dev/null 2>"$WORK/node$((i + 1)).log" &
        SERVER_PIDS+=($!)
    done
    PIDS=$(IFS=,; echo "${SERVER_PIDS[*]}")
    for ((i = 0; i < N; i++)); do
        wait_node "${ports[$i]}" "1 2 3" || { stop_cluster; return 1; }
    done
}

start_cluster_retry() { retry_start nodes start_cluster; }

# stop_cluster: stops the nodes; their warnings and errors go to stderr.
stop_cluster() {
    local f
    kill_servers
    for f in "$WORK"/node*.log; do
        if grep -qE ' (WARN|ERROR|warn|error) ' "$f"; then
            log "${f##*/}:"
            grep -E ' (WARN|ERROR|warn|error) ' "$f" >&2 || true
        fi
    done
}

COMMON=(--plugin "$PLUGIN" --builds "$BUILD_A,$BUILD_B" --versions "$VERSION_A,$VERSION_B")

LOAD_BEFORE=$(loadavg)
log "machine: $(machine)"
log "load average before: $LOAD_BEFORE"
FAILED=0

# ---- 1. trigger -> serving ---------------------------------------------------------------------
start_cluster_retry
TRIGGER_LINES=()
for via in admin sighup admin-nopoll; do
    args=(--via "${via%-nopoll}")
    [[ $via == admin-nopoll ]] && args+=(--poll no)
    if ! "$DRIVER" trigger "${args[@]}" --servers "$ADDRS" --pids "$PIDS" --rounds "$ROUNDS" \
        "${COMMON[@]}" >"$WORK/trigger.out" 2>"$WORK/trigger.err"; then
        FAILED=1
        log "reload_bench trigger --via $via failed"
    fi
    cat "$WORK/trigger.err" >&2
    line=$(grep "^trigger=$via " "$WORK/trigger.out" || echo "trigger=$via count=0 errors=1")
    log "$line (load $(load1))"
    TRIGGER_LINES+=("$line")
done
# The nodes' own view: "reload N done in X ms" (info level), and when the switch happened
# within it (the "serving" line of the owner thread, millisecond timestamps).
cat "$WORK"/node*.log >"$WORK/trigger-nodes.log"
stop_cluster
DONE_MS=$(sed -n 's/.*reload [0-9]* done in \([0-9.]*\) ms.*/\1/p' "$WORK/trigger-nodes.log")
NODE_RELOADS=$(grep -c . <<<"$DONE_MS" || true)
# ms from "reload N started" to the new generation's "serving" line, and from that line to
# "reload N done", per reload (log timestamps are in whole milliseconds).
STAGES=$(awk '
    function t(s,   a) { split(substr(s, 12, 12), a, ":"); return (a[1] * 3600 + a[2] * 60 + a[3]) * 1000 }
    / reload [0-9]+ started/ { t0 = t($1) }
    / generation [0-9]+ serving / { t1 = t($1) }
    / reload [0-9]+ done in / { printf "%.0f %.0f\n", t1 - t0, t($1) - t1 }' \
    "$WORK/trigger-nodes.log")

# ---- 1b. where a reload's time goes (strace) ---------------------------------------------------
# One more node, alone (its own single-node file, log level debug), started under
# `strace -f --seccomp-bpf`, which stops it only at openat, rename, write and mprotect, and
# TRACE_ROUNDS reloads through nh_admin_reload without polling. Those syscalls mark the stages of
# each reload (the Python below). Skipped when strace is missing or TRACE=0.
TRACE=${TRACE:-1}
TRACE_ROUNDS=${TRACE_ROUNDS:-10}
TRACE_TABLE=""
if ((TRACE)) && command -v strace >/dev/null; then
    port=$(free_ports 1)
    cp "$BUILD_A" "$PLUGIN.tmp" && mv -f "$PLUGIN.tmp" "$PLUGIN"
    solo_yaml 1 "$port" storage "$PLUGIN" debug >"$WORK/solo.yaml"
    strace -f --seccomp-bpf -ttt -s 200 -e trace=openat,rename,write,mprotect \
        -o "$WORK/trace.txt" "$NODEHOST" --config "$WORK/solo.yaml" \
        --state-dir "$WORK/state-trace" >/dev/null 2>"$WORK/trace-node.log" &
    STRACE_PID=$!
    SERVER_PIDS+=("$STRACE_PID")
    traced=""
    for _ in $(seq 50); do
        traced=$(pgrep -P "$STRACE_PID" || true)
        [[ -n $traced ]] && "$NODEHOST" status "127.0.0.1:$port" --timeout-ms 500 >/dev/null \
            2>&1 && break
        sleep 0.1
    done
    [[ -n $traced ]] && SERVER_PIDS=("$traced" "${SERVER_PIDS[@]}")
    if [[ -n $traced ]] && "$DRIVER" trigger --via admin --poll no --servers "127.0.0.1:$port" \
        --rounds "$TRACE_ROUNDS" "${COMMON[@]}" >"$WORK/trace.out" 2>"$WORK/trace.err"; then
        TRACE_TABLE=$(python3 - "$WORK/trace.txt" "$PLUGIN" <<'PY'
import re, statistics, sys
trace, plugin = sys.argv[1], sys.argv[2]
line_re = re.compile(r'^(\d+)\s+(\d+\.\d+)\s+(\w+)\((.*)$')
events = []
for raw in open(trace):
    m = line_re.match(raw)
    if m:
        events.append((int(m.group(1)), float(m.group(2)) * 1e3, m.group(3), m.group(4)))
# The stages between the marks of one reload (ms), in the order they happen.
names = ["config file re-read and checked", "change check: SHA-256 of the plugin file",
         "copy into the state directory (+ SHA-256)", "dlopen (map, relocate)",
         "descriptor and config checks, init, owner thread takes over, state hand-over",
         "switch (generation, routes)",
         "reloader thread resumes, done"]
order = ['start', 'sha', 'copy', 'dlopen', 'relro', 'handover', 'serving', 'done']
rows = {n: [] for n in names}
totals, logged = [], []
i = 0
while i < len(events):
    tid, t, sc, args = events[i]
    m = re.search(r'reload (\d+) started', args) if sc == 'write' else None
    if not m:
        i += 1
        continue
    num = m.group(1)
    marks = {'start': t}
    j = i + 1
    while j < len(events):
        tj, tt, sj, aj = events[j]
        if sj == 'write' and re.search(r'reload %s done in ([0-9.]+) ms' % num, aj):
            marks['done'] = tt
            logged.append(float(re.search(r'done in ([0-9.]+) ms', aj).group(1)))
            break
        quoted = '"%s"' % plugin
        if tj == tid:
            if sj == 'openat' and 'sha' not in marks and quoted in aj and 'O_NONBLOCK' in aj:
                marks['sha'] = tt
            elif sj == 'openat' and 'sha' in marks and 'copy' not in marks and quoted in aj:
                marks['copy'] = tt
            elif sj == 'openat' and 'copy' in marks and 'dlopen' not in marks and '.so"' in aj:
                marks['dlopen'] = tt
            elif (sj == 'mprotect' and 'dlopen' in marks and 'relro' not in marks
                  and 'PROT_READ)' in aj):
                marks['relro'] = tt
        elif sj == 'write' and 'handed over' in aj and 'handover' not in marks:
            marks['handover'] = tt
        elif sj == 'write' and ' serving (was version' in aj and 'serving' not in marks:
            marks['serving'] = tt
        j += 1
    if all(k in marks for k in order):
        for n, a, b in zip(names, order, order[1:]):
            rows[n].append(marks[b] - marks[a])
        totals.append(marks['done'] - marks['start'])
    else:
        sys.stderr.write("trace: reload %s left out, no mark for: %s\n"
                         % (num, " ".join(k for k in order if k not in marks)))
    i = j + 1
if not totals:
    print("(no complete reload found in the trace)")
    sys.exit(0)
tot = statistics.median(totals)
print("| stage (one node alone, under strace --seccomp-bpf, %d reloads) | median ms | max ms "
      "| share of the median total |" % len(totals))
print("|---|---:|---:|---:|")
for n in names:
    med = statistics.median(rows[n])
    print("| %s | %.3f | %.3f | %.0f%% |" % (n, med, max(rows[n]), 100 * med / tot))
print("| **\"reload N started\" → \"reload N done\"** | **%.3f** | %.3f | |" % (tot, max(totals)))
print("| the node's \"done in X ms\" (from the request) | %.1f | %.1f | |"
      % (statistics.median(logged), max(logged)))
PY
        ) || TRACE_TABLE=""
    else
        log "trace run failed:"
        cat "$WORK/trace.err" >&2 || true
    fi
    [[ -n $traced ]] && { kill "$traced" 2>/dev/null || true; }
    wait "$STRACE_PID" 2>/dev/null || true
    SERVER_PIDS=()
fi

# ---- 2. call latency during reloads ------------------------------------------------------------
read -r -a C_LIST <<<"$INFLIGHT"
RESULTS=$WORK/results
: >"$RESULTS"
for rep in $(seq "$REPS"); do
    rep_order "$rep" "${C_LIST[@]}"
    for c in "${ORDER[@]}"; do
        start_cluster_retry
        if ! "$DRIVER" load --servers "$ADDRS" --concurrent "$c" --seconds "$RUN_SECONDS" \
            --warmup "$WARMUP" --reload-ms "$RELOAD_MS" --quorum "$QUORUM" --pids "$PIDS" \
            "${COMMON[@]}" \
            >"$WORK/load.out" 2>"$WORK/load.err"; then
            FAILED=1
            log "reload_bench load c=$c rep=$rep failed"
        fi
        stop_cluster
        cat "$WORK/load.err" >&2
        while read -r line; do
            log "rep=$rep c=$c $line"
            case $line in
                phase=*) echo "$c $rep ${line%% *} $line" | sed 's/ phase=\([^ ]*\) / \1 /' \
                    >>"$RESULTS" ;;
                reloads*) echo "$c $rep reloads $line" >>"$RESULTS" ;;
            esac
        done <"$WORK/load.out"
        log "load $(load1)"
    done
done
LOAD_AFTER=$(loadavg)
log "load average after: $LOAD_AFTER"

# ---- tables ------------------------------------------------------------------------------------
# values <c> <phase> <field>: one value per repetition (in repetition order).
values() {
    awk -v c="$1" -v p="$2" '$1 == c && $3 == p' "$RESULTS" | sort -k2,2n |
        while read -r _ _ _ rest; do field "$3" "$rest"; done
}
range() { # range <c> <phase> <field> <scale>: [min–max]
    values "$1" "$2" "$3" | sort -g | awk -v s="$4" 'NR == 1 {lo = $1} {hi = $1}
        END {if (NR) printf s == 1000 ? "%.1fk–%.1fk" : "%.0f–%.0f", lo / s, hi / s}'
}
sum_errors() { values "$1" "$2" errors | sum; }
# ratio <c> <field> <num-phase> [den-phase]: per repetition num ÷ den, where den is the mean of
# A1 and A2 unless given; median [min–max] over the repetitions.
ratio() {
    local den
    if [[ -n ${4:-} ]]; then
        den=$(values "$1" "$4" "$2")
    else
        den=$(paste <(values "$1" A1 "$2") <(values "$1" A2 "$2") | awk '{print ($1 + $2) / 2}')
    fi
    paste <(values "$1" "$3" "$2") <(echo "$den") | awk '$2 > 0 {print $1 / $2}' |
        ratio_summary brief
}

echo "Plugin reload, 3-node nodehost cluster, storage plugin. Load average before: $LOAD_BEFORE;" \
    "after: $LOAD_AFTER."
echo
echo "Trigger to new generation serving: $ROUNDS rounds × $N nodes per trigger, builds" \
    "alternated; ms, p50 / p99 / max."
echo
echo "| trigger | reloads | trigger → Info answers the new version | trigger → nh_admin_reload returns" \
    "| node's took_ns | Info polls (p50) | errors |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for line in "${TRIGGER_LINES[@]}"; do
    via=$(field trigger "$line")
    three() { printf '%.2f / %.2f / %.2f' "$(field "${1}_p50_ms" "$line")" \
        "$(field "${1}_p99_ms" "$line")" "$(field "${1}_max_ms" "$line")"; }
    serving=$(three serving) rep_col=$(three reply) polls=$(field polls_p50 "$line")
    case $via in
        admin) name="nodehost.Admin.Reload (nh_admin_reload), Info polled" ;;
        sighup) name="SIGHUP (kill), Info polled" rep_col="–" ;;
        *) name="nodehost.Admin.Reload, no polling" serving="–" polls="–" ;;
    esac
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$(field count "$line")" \
        "$serving" "$rep_col" "$(three took)" "$polls" "$(field errors "$line")"
done
echo
if [[ -n $DONE_MS ]]; then
    printf 'Node logs: %s reloads; "reload N done in X ms": p50 %s ms, max %s ms.' \
        "$NODE_RELOADS" "$(median <<<"$DONE_MS")" "$(sort -g <<<"$DONE_MS" | tail -1)"
    if [[ -n $STAGES ]]; then
        printf ' Log "started" → "serving": median %s ms; "serving" → "done": median %s ms' \
            "$(awk '{print $1}' <<<"$STAGES" | median)" "$(awk '{print $2}' <<<"$STAGES" | median)"
        printf ' (whole-millisecond timestamps).'
    fi
    echo
    echo
fi

if [[ -n $TRACE_TABLE ]]; then
    echo "Where one reload's time goes (syscall marks; bench/run_reload.sh, step 1b):"
    echo
    echo "$TRACE_TABLE"
    echo
fi
echo "Call latency during reloads: proto.Storage.WriteQC, quorum $QUORUM of $N, phases of" \
    "${RUN_SECONDS} s (A1 steady, B reload of all nodes every ${RELOAD_MS} ms, A2 steady) after" \
    "${WARMUP} s of warm-up, $REPS run(s) per row; medians over the runs, [min–max] of calls/s;" \
    "max µs is the largest of the runs."
echo
echo "| in flight | phase | calls/s | p50 µs | p99 µs | max µs | servers CPU (3 nodes), % of one core" \
    "| servers CPU µs/call | reloads in B | node took_ns p50 / max ms | errors |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for c in "${C_LIST[@]}"; do
    for ph in A1 B A2; do
        rl="" took=""
        if [[ $ph == B ]]; then
            rl="$(stat "$c" reloads rounds) × $N"
            took="$(printf '%.2f / %.2f' "$(stat "$c" reloads took_p50_ms)" \
                "$(values "$c" reloads took_max_ms | sort -g | tail -1)")"
        fi
        printf '| %s | %s | %.0f [%s] | %.1f | %.1f | %.0f | %.0f | %.1f | %s | %s | %s |\n' \
            "$c" "$ph" "$(stat "$c" "$ph" ops_per_s)" "$(range "$c" "$ph" ops_per_s 1000)" \
            "$(stat "$c" "$ph" p50_us)" "$(stat "$c" "$ph" p99_us)" \
            "$(values "$c" "$ph" max_us | sort -g | tail -1)" "$(stat "$c" "$ph" srv_cpu_pct)" \
            "$(stat "$c" "$ph" srv_cpu_us_per_op)" "$rl" "$took" \
            "$(sum_errors "$c" "$ph")"
    done
done
echo
echo "Ratios (median over the runs of each run's ratio, [min–max]; B ÷ A: A is the mean of A1" \
    "and A2 of the same run; A2 ÷ A1: drift; calls/s above 1 is faster, latencies above 1 slower):"
echo
echo "| in flight | ratio | calls/s | p50 | p99 | max | servers CPU/call |"
echo "|---:|---|---:|---:|---:|---:|---:|"
for c in "${C_LIST[@]}"; do
    printf '| %s | B ÷ A | %s | %s | %s | %s | %s |\n' "$c" "$(ratio "$c" ops_per_s B)" \
        "$(ratio "$c" p50_us B)" "$(ratio "$c" p99_us B)" "$(ratio "$c" max_us B)" \
        "$(ratio "$c" srv_cpu_us_per_op B)"
    printf '| %s | A2 ÷ A1 | %s | %s | %s | %s | %s |\n' "$c" "$(ratio "$c" ops_per_s A2 A1)" \
        "$(ratio "$c" p50_us A2 A1)" "$(ratio "$c" p99_us A2 A1)" "$(ratio "$c" max_us A2 A1)" \
        "$(ratio "$c" srv_cpu_us_per_op A2 A1)"
done
TOTAL_ERRORS=$(awk '$3 != "reloads" {for (i = 4; i <= NF; i++) if ($i ~ /^errors=/) {
    sub(/^errors=/, "", $i); s += $i}} END {print s + 0}' "$RESULTS")
echo
echo "Failed calls: $TOTAL_ERRORS."
if ((FAILED)) || ((TOTAL_ERRORS > 0)); then
    log "FAILED: a driver reported failures (see above)"
    exit 1
fi

#!/usr/bin/env bash
# Metrics on against off: proto.Storage WriteQC quorum calls (majority of 3) made by
# qc_bench --service storage against a 3-node `nodehost` cluster that loads plugins/storage.so
# with its in-memory store (no data_dir), as the mem mode of bench/run_storage.sh, once per
# setting:
#   off    no metrics section: the runtime does not count (the baseline);
#   on     the cluster file has `metrics: { listen: "127.0.0.1:${NH_METRICS_PORT}" }` (each
#          process gets its own port in its environment): every request is counted (by method
#          and code, its duration in the histogram, in flight), every stream message and its
#          bytes; and for the whole run a scraper, like one Prometheus server with a 1 s
#          scrape_interval, GETs /metrics of every node once a second (a bash loop running one
#          curl for the 3 URLs every SCRAPE_EVERY seconds, started once every node is up, so it
#          covers the warm-up and the measured window);
#   count  (not in the default SETTINGS) the metrics section without the scraper: what the
#          counting alone costs. The scraper's own CPU (a curl process a second, ~25 ms of CPU
#          each on the 2-core VM of docs/benchmarks.md) competes with the cluster on a small
#          machine; count against on separates it.
# Everything else is the same: one YAML cluster file (peers 1..3), the same plugin, the same
# calls. After an on or count run the script reads node 1's nodehost_requests_total for WriteQC
# (code OK): it must have counted the calls (a check that the counting was really on; reported
# as counted=).
#
#   bash bench/run_metrics.sh
#
# Fresh server processes for every run; the settings alternated, the order reversed on every
# other repetition. A run starts when every node reports Config 1 2 3 (its peers connected).
#
# Environment (all optional):
#   RUN_SECONDS=5  measured seconds per run     REPS=5       repetitions of every case
#   WARMUP=1       warm-up seconds per run       PAYLOAD=64   value bytes
#   INFLIGHT="1 16"    quorum calls kept in flight
#   SETTINGS="off on" (or "off count on")        KEYS=100     distinct keys
#   SCRAPE_EVERY=1 seconds between two scrapes of the same node (on)
#   BUILD_DIR=<repo>/build-bench (configured Release, tests off, if it has no CMakeCache.txt)
#   NO_BUILD=1     use the binaries in BUILD_DIR as they are
# Raw result lines go to stderr; the tables go to stdout. Needs python3 (to find free ports) and
# curl (the scraper).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
RUN_SECONDS=${RUN_SECONDS:-5}
REPS=${REPS:-5}
WARMUP=${WARMUP:-1}
PAYLOAD=${PAYLOAD:-64}
INFLIGHT=${INFLIGHT:-"1 16"}
SETTINGS=${SETTINGS:-"off on"}
KEYS=${KEYS:-100}
SCRAPE_EVERY=${SCRAPE_EVERY:-1}
N=3
QUORUM=2
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

command -v curl >/dev/null || { log "needs curl (the scraper)"; exit 1; }
if [[ ${NO_BUILD:-0} != 1 ]]; then bench_build nodehost_exe storage qc_bench; fi
BIN=$BUILD_DIR/bench
NODEHOST=$BUILD_DIR/host/nodehost
PLUGIN=$BUILD_DIR/plugins/storage.so
for f in "$BIN/qc_bench" "$NODEHOST" "$PLUGIN"; do
    [[ -f $f ]] || { log "missing $f (build it, or unset NO_BUILD)"; exit 1; }
done

bench_work
SCRAPER_PID=""
# The scraper is not a server: end it too when the script exits early.
trap 'kill_wait ${SCRAPER_PID:+"$SCRAPER_PID"}; bench_cleanup' EXIT

# metrics_yaml <setting> <port>...: the cluster file (in-memory storage plugin), with the
# metrics section for on. ${NH_METRICS_PORT} is left for nodehost to expand from each
# process's environment.
metrics_yaml() {
    local setting=$1
    shift
    cluster_yaml storage "$PLUGIN" warn "$@"
    if [[ $setting != off ]]; then
        # shellcheck disable=SC2016 # nodehost expands it, not this shell
        echo 'metrics: { listen: "127.0.0.1:${NH_METRICS_PORT}" }'
    fi
    return 0
}

# start_servers <setting>: 3 nodehost processes sharing one cluster file; sets SERVER_PIDS,
# ADDRS and (on) MPORTS.
start_servers() {
    local setting=$1 i ports all
    SERVER_PIDS=()
    ADDRS=""
    MPORTS=()
    rm -rf "$WORK/state" "$WORK"/server*.err
    read -r -a all <<<"$(free_ports $((2 * N)))"
    ports=("${all[@]:0:N}")
    MPORTS=("${all[@]:N:N}")
    for ((i = 0; i < N; i++)); do ADDRS+="${ADDRS:+,}127.0.0.1:${ports[$i]}"; done
    metrics_yaml "$setting" "${ports[@]}" >"$WORK/cluster.yaml"
    for ((i = 0; i < N; i++)); do
        NH_METRICS_PORT=${MPORTS[$i]} "$NODEHOST" --config "$WORK/cluster.yaml" --id $((i + 1)) \
            --log-level warn --state-dir "$WORK/state" >/dev/null 2>"$WORK/server$i.err" &
        SERVER_PIDS+=($!)
    done
    for ((i = 0; i < N; i++)); do
        wait_node "${ports[$i]}" "1 2 3" || { stop_servers; return 1; }
    done
    if [[ $setting != off ]]; then
        for ((i = 0; i < N; i++)); do
            curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:${MPORTS[$i]}/metrics" || {
                log "node $((i + 1)): no /metrics on port ${MPORTS[$i]}"
                stop_servers
                return 1
            }
        done
    fi
}

# start_scraper: GETs /metrics of every node every SCRAPE_EVERY seconds (one curl process for
# all the nodes, as one Prometheus server scrapes its targets), in the background (SCRAPER_PID);
# one line per scrape in $WORK/scrapes: "<URL> <HTTP code> <bytes>".
start_scraper() {
    local args=() i
    for ((i = 0; i < N; i++)); do
        args+=(-o /dev/null "http://127.0.0.1:${MPORTS[$i]}/metrics")
    done
    : >"$WORK/scrapes"
    # shellcheck disable=SC2016 # the loop's own variables
    bash -c 'trap "exit 0" TERM
        every=$1 out=$2
        shift 2
        while :; do
            curl -s --max-time 1 -w "%{url_effective} %{http_code} %{size_download}\n" \
                "$@" >>"$out" || true
            sleep "$every" &
            wait $!
        done' scraper "$SCRAPE_EVERY" "$WORK/scrapes" "${args[@]}" &
    SCRAPER_PID=$!
}

stop_scraper() {
    [[ -n $SCRAPER_PID ]] && kill_wait "$SCRAPER_PID"
    SCRAPER_PID=""
}

stop_servers() {
    local i=0 f
    kill_servers
    for f in "$WORK"/server*.err; do
        [[ -s $f ]] && { log "server $i stderr:"; cat "$f" >&2; }
        i=$((i + 1))
    done
    return 0
}

# counted: node 1's nodehost_requests_total{method="proto.Storage.WriteQC",code="OK"}.
counted() {
    curl -sf --max-time 2 "http://127.0.0.1:${MPORTS[0]}/metrics" |
        awk '/^nodehost_requests_total\{method="proto.Storage.WriteQC",code="OK"\} / {print $2}'
}

# run_case <setting> <inflight>: one run; sets LINE to qc_bench's result line (plus
# scrapes= and scrape_failures= for on, counted= for on and count).
run_case() {
    local setting=$1 c=$2 pids line extra=""
    retry_start "$setting servers" start_servers "$setting"
    pids=$(IFS=,; echo "${SERVER_PIDS[*]}")
    [[ $setting == on ]] && start_scraper
    "$BIN/qc_bench" --servers "$ADDRS" --server-pids "$pids" --quorum-size $QUORUM \
        --concurrent "$c" --payload "$PAYLOAD" --seconds "$RUN_SECONDS" --warmup "$WARMUP" \
        --service storage --op write --keys "$KEYS" \
        >"$WORK/client.out" 2>"$WORK/client.err" || true
    if [[ $setting == on ]]; then
        stop_scraper
        local scrapes fails
        scrapes=$(wc -l <"$WORK/scrapes")
        fails=$(awk '$2 != 200 || $3 == 0' "$WORK/scrapes" | wc -l)
        extra=" scrapes=$scrapes scrape_failures=$fails"
    fi
    if [[ $setting != off ]]; then
        local n
        n=$(counted || true)
        extra+=" counted=${n:-0}"
        [[ ${n:-0} -gt 0 ]] || log "$setting c=$c: node 1 counted no WriteQC call"
    fi
    stop_servers
    line=$(grep '^ops_per_s=' "$WORK/client.out" || true)
    if [[ -z $line ]]; then
        log "qc_bench $setting c=$c failed:"
        cat "$WORK/client.err" >&2
        line="ops_per_s=0 p50_us=0 p99_us=0 cpu_us_per_op=0 srv_cpu_us_per_op=0 count=0 errors=1"
    elif [[ -s $WORK/client.err ]]; then
        cat "$WORK/client.err" >&2
    fi
    LINE="$line$extra"
}

read -r -a S_LIST <<<"$SETTINGS"
read -r -a C_LIST <<<"$INFLIGHT"
CASES=()
for c in "${C_LIST[@]}"; do
    for s in "${S_LIST[@]}"; do CASES+=("$s:$c"); done
done
RESULTS=$WORK/results
: >"$RESULTS"

LOAD_BEFORE=$(loadavg)
log "machine: $(machine)"
log "load average before: $LOAD_BEFORE; case order: ${CASES[*]}"
for rep in $(seq "$REPS"); do
    rep_order "$rep" "${CASES[@]}"
    for case_ in "${ORDER[@]}"; do
        IFS=: read -r s c <<<"$case_"
        run_case "$s" "$c"
        log "rep=$rep $case_ $LINE (load $(load1))"
        echo "$case_ $rep $LINE" >>"$RESULTS"
    done
done
LOAD_AFTER=$(loadavg)
log "load average after: $LOAD_AFTER"

# ---- tables ------------------------------------------------------------------------------------
values() { case_values "$@"; }
errors() { values "$1" errors | sum; }
range() { values "$1" ops_per_s | min_max_k; }
ratio() { case_ratio "$@"; }          # lib.sh
cpu_values() { case_cpu_values "$@"; } # lib.sh
cpu_ratio() { case_cpu_ratio "$@"; }   # lib.sh
name_of() {
    case $1 in
        off) echo "off (no metrics section)" ;;
        on) echo "on, scraped every ${SCRAPE_EVERY} s" ;;
        count) echo "on, not scraped" ;;
        *) echo "$1" ;;
    esac
}
ROW_FMT='| %s | %s | %.0f [%s] | %.1f | %.1f | %.1f | %s | %s | %s | %s | %s |\n'
has_off=0
[[ " ${S_LIST[*]} " == *" off "* ]] && has_off=1

echo "proto.Storage WriteQC quorum calls, 3-node nodehost cluster (storage plugin, in-memory" \
    "store), quorum $QUORUM of $N, ${PAYLOAD}-byte values, $KEYS keys, $REPS run(s) of" \
    "${RUN_SECONDS} s after ${WARMUP} s of warm-up per case; medians, [min–max] of calls/s." \
    "Load average before: $LOAD_BEFORE; after: $LOAD_AFTER."
echo
echo "| metrics | in flight | calls/s | p50 µs | p99 µs | client + servers CPU µs/call" \
    "| errors | scrapes (failed) | calls/s ÷ off | p50 ÷ off | CPU/call ÷ off |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for c in "${C_LIST[@]}"; do
    for s in "${S_LIST[@]}"; do
        case_="$s:$c"
        r1="–" r2="–" r3="–" scr="–"
        if ((has_off)) && [[ $s != off ]]; then
            r1=$(ratio "$case_" "off:$c" ops_per_s brief)
            r2=$(ratio "$case_" "off:$c" p50_us brief)
            r3=$(cpu_ratio "$case_" "off:$c")
        fi
        if [[ $s == on ]]; then
            scr="$(values "$case_" scrapes | sum) ($(values "$case_" scrape_failures | sum))"
        fi
        # shellcheck disable=SC2059 # ROW_FMT is the format
        printf "$ROW_FMT" "$(name_of "$s")" "$c" "$(stat "$case_" ops_per_s)" \
            "$(range "$case_")" "$(stat "$case_" p50_us)" "$(stat "$case_" p99_us)" \
            "$(cpu_values "$case_" | median)" "$(errors "$case_")" "$scr" "$r1" "$r2" "$r3"
    done
done

# The goal: metrics on (counting plus a scrape a second) cost at most 3% of the throughput
# (calls/s ÷ off >= 0.97); count (no scraper) is shown beside it.
if ((has_off)) && [[ " ${S_LIST[*]} " != " off " ]]; then
    echo
    echo "| metrics | in flight | ÷ off calls/s, median [min–max] of the repetitions" \
        "| metrics cost | goal: within 3% |"
    echo "|---|---:|---:|---:|---|"
    for s in "${S_LIST[@]}"; do
        [[ $s == off ]] && continue
        for c in "${C_LIST[@]}"; do
            r=$(paste <(values "$s:$c" ops_per_s) <(values "off:$c" ops_per_s) |
                awk '$2 > 0 {print $1 / $2}' | median)
            read -r cost verdict < <(awk -v r="$r" 'BEGIN {
                if (r <= 0) { print "– –"; exit }
                printf "%+.1f%% %s\n", (1 - r) * 100, (r >= 0.97 ? "met" : "NOT met") }')
            printf '| %s | %s | %s | %s | %s |\n' "$(name_of "$s")" "$c" \
                "$(ratio "$s:$c" "off:$c" ops_per_s full)" "$cost" "$verdict"
        done
    done
    echo
    echo "Ratio: each repetition's run ÷ the same repetition's off run; median [min–max] over" \
        "the repetitions. Metrics cost: 1 − that median (negative: faster than off). CPU/call" \
        "counts the client and the 3 nodes, not the scraper. counted= in the raw lines: node" \
        "1's WriteQC count read after the run (every on or count run must have counted its" \
        "calls)."
fi

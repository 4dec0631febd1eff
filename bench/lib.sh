# shellcheck shell=bash
# Shared by the benchmark scripts (bench/run*.sh, bench/sym/run_sym.sh); sourced, not run:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Expects ROOT and BUILD_DIR to be set for bench_build, WORK (bench_work sets it) for the server
# helpers, and RESULTS plus a script-defined `values` for `stat`. Server processes are kept in
# SERVER_PIDS (and a client in CLIENT_PID): the EXIT trap bench_work installs kills them.

log() { printf '%s\n' "$*" >&2; }

# ---- build -------------------------------------------------------------------------------------
# bench_build <target>...: configures BUILD_DIR (Release, tests off, bench on) when it has no
# CMakeCache.txt, then builds the targets. Build output goes to stderr.
bench_build() {
    if [[ ! -f $BUILD_DIR/CMakeCache.txt ]]; then
        cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DNH_BUILD_TESTS=OFF \
            -DNH_BUILD_BENCH=ON >&2
    fi
    cmake --build "$BUILD_DIR" -j"$(nproc)" --target "$@" >&2
}

# ---- processes ---------------------------------------------------------------------------------
# kill_wait <pid>...: signals every process, then reaps them all.
kill_wait() {
    local p
    for p in "$@"; do kill "$p" 2>/dev/null || true; done
    for p in "$@"; do wait "$p" 2>/dev/null || true; done
}

# kill_servers: ends the processes in SERVER_PIDS and empties it.
kill_servers() {
    local pids=("${SERVER_PIDS[@]}")
    SERVER_PIDS=()
    kill_wait "${pids[@]}"
}

bench_cleanup() {
    kill_wait "${SERVER_PIDS[@]}" ${CLIENT_PID:+"$CLIENT_PID"}
    rm -rf "$WORK"
}

# bench_work: makes the temporary directory WORK and installs the traps that end the started
# processes and remove WORK on exit (and on Ctrl-C or SIGTERM).
bench_work() {
    WORK=$(mktemp -d)
    SERVER_PIDS=()
    CLIENT_PID=""
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

# wait_line <file> <pid> <regex> <seconds>: waits until a line of file matches; fails when the
# process died or the time ran out.
wait_line() {
    local file=$1 pid=$2 re=$3 i
    for ((i = 0; i < $4 * 20; i++)); do
        if grep -Eq "$re" "$file"; then return 0; fi
        if ! kill -0 "$pid" 2>/dev/null; then
            grep -Eq "$re" "$file" && return 0
            return 1
        fi
        sleep 0.05
    done
    return 1
}

# listening_port <file>: the port of the "listening <port>" line a server printed.
listening_port() { awk '/^listening /{print $2; exit}' "$1"; }

# start_echo_servers <baseline|nodehost> <count>: starts baseline_echo or nh_bench_server
# processes (from BIN) on free ports and waits until each listens; sets SERVER_PIDS and ADDRS
# (comma-separated host:port list). Exits when one does not start.
start_echo_servers() {
    local kind=$1 count=$2 i out
    SERVER_PIDS=()
    ADDRS=""
    for ((i = 0; i < count; i++)); do
        out=$WORK/server$i.out
        : >"$out"
        if [[ $kind == baseline ]]; then
            "$BIN/baseline_echo" server 127.0.0.1:0 >"$out" 2>"$WORK/server$i.err" &
        else
            "$BIN/nh_bench_server" 127.0.0.1:0 >"$out" 2>"$WORK/server$i.err" &
        fi
        SERVER_PIDS+=($!)
    done
    for ((i = 0; i < count; i++)); do
        out=$WORK/server$i.out
        if ! wait_line "$out" "${SERVER_PIDS[$i]}" '^listening ' 10; then
            log "server $kind #$i did not start:"
            cat "$WORK/server$i.err" >&2
            exit 1
        fi
        ADDRS+="${ADDRS:+,}127.0.0.1:$(listening_port "$out")"
    done
}

# result_line <line> <prefix> <failure line> <what failed>: prints line when it starts with
# prefix; otherwise says what failed, shows $WORK/client.err and prints the failure line.
result_line() {
    if [[ $1 == "$2"* ]]; then
        printf '%s\n' "$1"
        return
    fi
    log "$4 failed:"
    cat "$WORK/client.err" >&2
    printf '%s\n' "$3"
}

# free_ports <n>: n loopback ports that were free a moment ago (bound to port 0, then closed).
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# retry_start <what> <command>...: runs the command (which starts servers on new free ports) up
# to 3 times until it succeeds; exits when it never does.
retry_start() {
    local what=$1 attempt
    shift
    for attempt in 1 2 3; do
        "$@" && return 0
        log "$what did not come up (attempt $attempt); retrying with new ports"
    done
    log "giving up: $what do not start"
    exit 1
}

# wait_node <port> <want-config>: waits until `$NODEHOST status` answers on the port and, when
# want-config is set, until the node's Config is exactly that (e.g. "1 2 3": peers connected).
wait_node() {
    local port=$1 want=$2 out
    for _ in $(seq 100); do
        if out=$("$NODEHOST" status "127.0.0.1:$port" --timeout-ms 500 2>/dev/null); then
            if [[ -z $want ]] || awk -v w="$want" '/^Config:/ {
                    sub(/^Config:[ \t]*/, ""); found = ($0 == w) } END {exit !found}' <<<"$out"
            then
                return 0
            fi
        fi
        sleep 0.1
    done
    return 1
}

# cluster_yaml <plugin name> <plugin path> <log level> <port>...: a nodehost cluster file with
# peers 1..n on those loopback ports, clients accepted and the plugin loaded (with the flow-style
# map in PLUGIN_CONFIG as its config, when set).
cluster_yaml() {
    local name=$1 path=$2 level=$3 i=0 port
    shift 3
    echo "version: 1"
    echo "peers:"
    for port in "$@"; do
        i=$((i + 1))
        echo "  - { id: $i, address: \"127.0.0.1:$port\" }"
    done
    echo "clients: { accept: true }"
    echo "plugins:"
    echo "  - { name: $name, path: \"$path\"${PLUGIN_CONFIG:+, config: $PLUGIN_CONFIG} }"
    echo "log: { level: $level, format: text }"
}

# solo_yaml <id> <port> <plugin name> <plugin path> <log level>: a single-node nodehost file.
solo_yaml() {
    echo "version: 1"
    echo "node: { id: $1, listen: \"127.0.0.1:$2\" }"
    echo "clients: { accept: true }"
    echo "plugins:"
    echo "  - { name: $3, path: \"$4\" }"
    echo "log: { level: $5, format: text }"
}

# ---- runs --------------------------------------------------------------------------------------
machine() { echo "$(nproc) cores, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
load1() { cut -d' ' -f1 /proc/loadavg; }

# rep_order <rep> <item>...: sets ORDER to the items, reversed on even repetitions (so slow
# drifts do not favour the ones that go first).
rep_order() {
    local rep=$1 k
    shift
    ORDER=("$@")
    if ((rep % 2 == 0)); then
        ORDER=()
        for ((k = $#; k >= 1; k--)); do ORDER+=("${!k}"); done
    fi
}

# ---- summaries ---------------------------------------------------------------------------------
field() { # field <name> <line>: the value of name=value in a result line
    local kv
    for kv in $2; do
        if [[ ${kv%%=*} == "$1" ]]; then
            printf '%s\n' "${kv#*=}"
            return
        fi
    done
}

# case_values <case> <field>: one value per repetition (in repetition order) from RESULTS lines
# "<case> <rep> <key=value>...".
case_values() {
    awk -v k="$1" '$1 == k' "$RESULTS" | sort -k2,2n |
        while read -r _ _ rest; do field "$2" "$rest"; done
}

# median: of the numbers on stdin (one a line; empty lines skipped); 0 when there are none.
median() {
    sort -g | awk 'NF {v[++n] = $1}
        END {if (!n) {print 0; exit}; print (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2}'
}

# stat <args of the script's values>: the median of those values.
stat() { values "$@" | median; }

# min_max_k: "min–max" of the numbers on stdin, in thousands ("12.3k–14.5k").
min_max_k() {
    sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%.1fk–%.1fk", lo / 1000, hi / 1000}'
}

# sum: of the numbers on stdin.
sum() { awk '{s += $1} END {print s + 0}'; }

# ratio_summary <full|brief>: "median [min–max]" of the ratios on stdin ("–" when there are
# none); with brief, one ratio prints alone.
ratio_summary() {
    sort -g | awk -v brief="$1" '{v[NR] = $1} END {
        if (NR == 0) { print "–"; exit }
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        if (brief == "brief" && NR == 1) printf "%.2f", m; else printf "%.2f [%.2f–%.2f]", m, v[1], v[NR] }'
}

# case_ratio <caseA> <caseB> <field> <full|brief>: A/B per repetition (same repetition paired),
# median [min–max].
case_ratio() {
    paste <(case_values "$1" "$3") <(case_values "$2" "$3") |
        awk '$2 > 0 {print $1 / $2}' | ratio_summary "$4"
}

# case_cpu_values <case>: client + servers CPU µs per call, one value per repetition.
case_cpu_values() {
    paste <(case_values "$1" cpu_us_per_op) <(case_values "$1" srv_cpu_us_per_op) |
        awk '{print ($2 < 0 ? -1 : $1 + $2)}'
}

# case_cpu_ratio <caseA> <caseB>: A/B of the total CPU per call, per repetition, median [min–max].
case_cpu_ratio() {
    paste <(case_cpu_values "$1") <(case_cpu_values "$2") |
        awk '$1 > 0 && $2 > 0 {print $1 / $2}' | ratio_summary brief
}

#!/usr/bin/env bash
# TLS against plaintext: proto.Storage WriteQC quorum calls (majority of 3) made by
# qc_bench --service storage against a 3-node `nodehost` cluster that loads plugins/storage.so
# with its in-memory store (no data_dir), as the mem mode of bench/run_storage.sh, once per
# transport:
#   plain   no tls section: plaintext HTTP/2 (the baseline);
#   tls     the cluster file has `tls: { cert: "certs/node${NODE}.pem", key:
#           "certs/node${NODE}.key", ca: certs/ca.pem }` (clients: require, the default): the
#           peers' streams and the client's streams are TLS; qc_bench dials with
#           --tls-ca certs/ca.pem and presents the client certificate
#           (--tls-cert certs/client.pem --tls-key certs/client.key).
# Everything else is the same: one YAML cluster file (peers 1..3, NODE=<id> in each process's
# environment), the same plugin, the same calls. The certificates (EC P-256, made by
# tests/tls/make_certs.sh with openssl) are generated once at start into the mktemp work dir.
#
#   bash bench/run_tls.sh
#
# Fresh server processes for every run; the transports alternated, the order reversed on every
# other repetition. A run starts when every node reports Config 1 2 3 (its peers connected, over
# TLS in the tls case); qc_bench then connects (TLS handshakes happen there, before its warm-up)
# and the measured window is steady state on long-lived streams.
#
# Environment (all optional):
#   RUN_SECONDS=5  measured seconds per run     REPS=3       repetitions of every case
#   WARMUP=1       warm-up seconds per run       PAYLOAD=64   value bytes
#   INFLIGHT="1 16"    quorum calls kept in flight
#   TRANSPORTS="plain tls"                       OPS="write" (or "write read")
#   KEYS=100       distinct keys
#   BUILD_DIR=<repo>/build-bench (configured Release, tests off, if it has no CMakeCache.txt)
#   NO_BUILD=1     use the binaries in BUILD_DIR as they are
# Raw result lines go to stderr; the tables go to stdout. Needs python3 (to find free ports) and
# openssl (the certificates).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
RUN_SECONDS=${RUN_SECONDS:-5}
REPS=${REPS:-3}
WARMUP=${WARMUP:-1}
PAYLOAD=${PAYLOAD:-64}
INFLIGHT=${INFLIGHT:-"1 16"}
TRANSPORTS=${TRANSPORTS:-"plain tls"}
OPS=${OPS:-"write"}
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
CERTS=$WORK/certs
bash "$ROOT/tests/tls/make_certs.sh" "$CERTS" >&2 ||
    { log "cannot make the certificates (tests/tls/make_certs.sh)"; exit 1; }

# tls_args <transport> <who>: sets TLS_ARGS to the TLS options of `nodehost status` (who = node:
# node 1's certificate, one of the cluster's own) or of qc_bench (who = client: the client
# certificate); empty for plain.
tls_args() {
    TLS_ARGS=()
    [[ $1 == tls ]] || return 0
    local who=node1
    [[ $2 == client ]] && who=client
    TLS_ARGS=(--tls-ca "$CERTS/ca.pem" --tls-cert "$CERTS/$who.pem" --tls-key "$CERTS/$who.key")
}

# tls_yaml <transport> <port>...: the cluster file (in-memory storage plugin), with the tls
# section for tls. ${NODE} is left for nodehost to expand from each process's environment.
tls_yaml() {
    local transport=$1
    shift
    cluster_yaml storage "$PLUGIN" warn "$@"
    if [[ $transport == tls ]]; then
        # ${NODE} is nodehost's, not this shell's (a quoted here-document). In a flow mapping,
        # `tls: { cert: ... }`, the values would need quotes: { and } end a plain scalar there.
        cat <<'EOF'
tls:
  cert: certs/node${NODE}.pem
  key: certs/node${NODE}.key
  ca: certs/ca.pem
EOF
    fi
}

# wait_up <transport> <port>: waits until `nodehost status` (with TLS options for tls) answers on
# the port and the node's Config is "1 2 3" (its peers connected).
wait_up() {
    local out
    tls_args "$1" node
    for _ in $(seq 100); do
        if out=$("$NODEHOST" status "127.0.0.1:$2" --timeout-ms 500 \
            ${TLS_ARGS[@]+"${TLS_ARGS[@]}"} 2>/dev/null) && awk '/^Config:/ { sub(/^Config:[ \t]*/, "");
                found = ($0 == "1 2 3") } END {exit !found}' <<<"$out"; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# start_servers <transport>: 3 nodehost processes sharing one cluster file; sets SERVER_PIDS,
# ADDRS.
start_servers() {
    local transport=$1 i ports
    SERVER_PIDS=()
    ADDRS=""
    rm -rf "$WORK/state" "$WORK"/server*.err
    read -r -a ports <<<"$(free_ports $N)"
    for ((i = 0; i < N; i++)); do ADDRS+="${ADDRS:+,}127.0.0.1:${ports[$i]}"; done
    tls_yaml "$transport" "${ports[@]}" >"$WORK/cluster.yaml"
    for ((i = 0; i < N; i++)); do
        NODE=$((i + 1)) "$NODEHOST" --config "$WORK/cluster.yaml" --id $((i + 1)) \
            --log-level warn --state-dir "$WORK/state" >/dev/null 2>"$WORK/server$i.err" &
        SERVER_PIDS+=($!)
    done
    for ((i = 0; i < N; i++)); do
        wait_up "$transport" "${ports[$i]}" || { stop_servers; return 1; }
    done
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

# run_case <transport> <op> <inflight>: one run; sets LINE to qc_bench's result line.
run_case() {
    local transport=$1 op=$2 c=$3 pids line
    retry_start "$transport servers" start_servers "$transport"
    pids=$(IFS=,; echo "${SERVER_PIDS[*]}")
    tls_args "$transport" client
    "$BIN/qc_bench" --servers "$ADDRS" --server-pids "$pids" --quorum-size $QUORUM \
        --concurrent "$c" --payload "$PAYLOAD" --seconds "$RUN_SECONDS" --warmup "$WARMUP" \
        --service storage --op "$op" --keys "$KEYS" ${TLS_ARGS[@]+"${TLS_ARGS[@]}"} \
        >"$WORK/client.out" 2>"$WORK/client.err" || true
    stop_servers
    line=$(grep '^ops_per_s=' "$WORK/client.out" || true)
    if [[ -z $line ]]; then
        log "qc_bench $transport $op c=$c failed:"
        cat "$WORK/client.err" >&2
        line="ops_per_s=0 p50_us=0 p99_us=0 cpu_us_per_op=0 srv_cpu_us_per_op=0 count=0 errors=1"
    elif [[ -s $WORK/client.err ]]; then
        cat "$WORK/client.err" >&2
    fi
    LINE=$line
}

read -r -a T_LIST <<<"$TRANSPORTS"
read -r -a OP_LIST <<<"$OPS"
read -r -a C_LIST <<<"$INFLIGHT"
CASES=()
for op in "${OP_LIST[@]}"; do
    for c in "${C_LIST[@]}"; do
        for t in "${T_LIST[@]}"; do CASES+=("$t:$op:$c"); done
    done
done
RESULTS=$WORK/results
: >"$RESULTS"

LOAD_BEFORE=$(loadavg)
log "machine: $(machine); $(openssl version)"
log "load average before: $LOAD_BEFORE; case order: ${CASES[*]}"
for rep in $(seq "$REPS"); do
    rep_order "$rep" "${CASES[@]}"
    for case_ in "${ORDER[@]}"; do
        IFS=: read -r t op c <<<"$case_"
        run_case "$t" "$op" "$c"
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
        plain) echo "plaintext" ;;
        tls) echo "TLS (clients: require)" ;;
        *) echo "$1" ;;
    esac
}
call_of() { [[ $1 == write ]] && echo WriteQC || echo ReadQC; }
ROW_FMT='| %s | %s | %s | %.0f [%s] | %.1f | %.1f | %.1f | %.1f | %s | %s | %s | %s | %s |\n'
has_plain=0
[[ " ${T_LIST[*]} " == *" plain "* ]] && has_plain=1

echo "proto.Storage quorum calls, 3-node nodehost cluster (storage plugin, in-memory store)," \
    "quorum $QUORUM of $N, ${PAYLOAD}-byte values, $KEYS keys, $REPS run(s) of ${RUN_SECONDS} s" \
    "after ${WARMUP} s of warm-up per case; medians, [min–max] of calls/s. Load average before:" \
    "$LOAD_BEFORE; after: $LOAD_AFTER."
echo
echo "| call | transport | in flight | calls/s | p50 µs | p99 µs | client CPU µs/call" \
    "| servers CPU µs/call | errors | calls/s ÷ plain | p50 ÷ plain | p99 ÷ plain" \
    "| CPU/call ÷ plain |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for op in "${OP_LIST[@]}"; do
    for c in "${C_LIST[@]}"; do
        for t in "${T_LIST[@]}"; do
            case_="$t:$op:$c"
            r1="–" r2="–" r3="–" r4="–"
            if ((has_plain)) && [[ $t != plain ]]; then
                r1=$(ratio "$case_" "plain:$op:$c" ops_per_s brief)
                r2=$(ratio "$case_" "plain:$op:$c" p50_us brief)
                r3=$(ratio "$case_" "plain:$op:$c" p99_us brief)
                r4=$(cpu_ratio "$case_" "plain:$op:$c")
            fi
            # shellcheck disable=SC2059 # ROW_FMT is the format
            printf "$ROW_FMT" \
                "$(call_of "$op")" "$(name_of "$t")" "$c" "$(stat "$case_" ops_per_s)" \
                "$(range "$case_")" "$(stat "$case_" p50_us)" "$(stat "$case_" p99_us)" \
                "$(stat "$case_" cpu_us_per_op)" "$(stat "$case_" srv_cpu_us_per_op)" \
                "$(errors "$case_")" "$r1" "$r2" "$r3" "$r4"
        done
    done
done

# The goal: TLS costs at most 15% of the throughput (calls/s ÷ plain ≥ 0.85).
if ((has_plain)) && [[ " ${T_LIST[*]} " == *" tls "* ]]; then
    echo
    echo "| call | in flight | TLS ÷ plaintext calls/s, median [min–max] of the repetitions" \
        "| TLS costs | goal: at most 15% |"
    echo "|---|---:|---:|---:|---|"
    for op in "${OP_LIST[@]}"; do
        for c in "${C_LIST[@]}"; do
            r=$(paste <(values "tls:$op:$c" ops_per_s) <(values "plain:$op:$c" ops_per_s) |
                awk '$2 > 0 {print $1 / $2}' | median)
            read -r cost verdict < <(awk -v r="$r" 'BEGIN {
                if (r <= 0) { print "– –"; exit }
                printf "%.0f%% %s\n", (1 - r) * 100, (r >= 0.85 ? "met" : "NOT met") }')
            printf '| %s | %s | %s | %s | %s |\n' "$(call_of "$op")" "$c" \
                "$(ratio "tls:$op:$c" "plain:$op:$c" ops_per_s full)" "$cost" "$verdict"
        done
    done
    echo
    echo "Ratio: each repetition's TLS run ÷ the same repetition's plaintext run; median" \
        "[min–max] over the repetitions. TLS costs: 1 − that median. CPU/call: the client's" \
        "plus the 3 servers' CPU time per call over the measured window (where the CPU is the" \
        "limit, as on 2 cores, calls/s ÷ plain tends to 1 ÷ that ratio)."
fi

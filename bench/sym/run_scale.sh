#!/usr/bin/env bash
# Issue 15's table: node 1 with K client peers whose streams are spread over 40 connections
# (40 sym_clients processes) and held on one connection (one process), for K in CLIENTS:
# admission (time, node CPU, longest stall of node 1's owner thread), quorum call to all,
# majority and multicast to all (p50, node CPU per leg), memory per client. Each layout is a
# run of run_sym.sh (its baseline included); see docs/benchmarks-symmetric.md.
#
#   bash bench/sym/run_scale.sh
#
# Environment (all optional): CLIENTS="100 1000 10000", CONNS="40 1", REPS=1, RUN_SECONDS=3,
# SYM_KEEPALIVE=30000,60000 (node 1's keepalive: 10,000 arrivals keep it busy for seconds),
# NODE_THREADS=1 (node 1's event loops, `threads:`),
# BUILD_DIR as run_sym.sh.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CLIENTS=${CLIENTS:-"100 1000 10000"}
CONNS=${CONNS:-"40 1"}
export REPS=${REPS:-1} RUN_SECONDS=${RUN_SECONDS:-3} SYM_KEEPALIVE=${SYM_KEEPALIVE:-30000,60000}
for k in $CLIENTS; do
    for c in $CONNS; do
        spp=$(((k + c - 1) / c))
        echo
        echo "## $k client peers over $c connection(s) ($spp streams per sym_clients process)"
        SIZES="" OWN_CONN="" CLIENTS="$k" STREAMS_PER_PROC="$spp" bash "$HERE/run_sym.sh"
    done
done

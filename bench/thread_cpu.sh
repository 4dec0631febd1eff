#!/usr/bin/env bash
# CPU time per thread name of running processes over an interval: where a node's CPU goes
# between its owner loop (nh-<name>), its transport loops (nh-io<k>-...), its bridge threads and
# gRPC's own threads. Threads of one name are summed; names are grouped as gRPC's are numbered.
#
#   bash bench/thread_cpu.sh SECONDS PID...
#
# Prints one line per thread name: "<name> <CPU ms> <share of the processes' CPU %>".
set -euo pipefail
if (($# < 2)); then
    echo "usage: $0 SECONDS PID..." >&2
    exit 2
fi
secs=$1
shift
hz=$(getconf CLK_TCK)

# snapshot: "<name> <ticks>" for every thread of the given processes.
snapshot() {
    local p t
    for p in "$@"; do
        for t in /proc/"$p"/task/*; do
            [[ -r $t/stat ]] || continue
            # comm is inside parentheses and may hold spaces; fields 14 and 15 follow it.
            sed -E 's/^[0-9]+ \((.*)\) [A-Za-z] (.*)$/\1\t\2/' "$t/stat" 2>/dev/null |
                awk -F'\t' '{split($2, f, " "); n = $1; gsub(/[0-9]+$/, "#", n);
                    print n "\t" f[11] + f[12]}'
        done
    done
}

before=$(snapshot "$@")
sleep "$secs"
after=$(snapshot "$@")
awk -F'\t' -v hz="$hz" 'NR == FNR {b[$1] += $2; next} {a[$1] += $2}
    END {
        for (n in a) {d[n] = a[n] - b[n]; tot += d[n]}
        for (n in d) if (d[n] > 0)
            printf "%-20s %8.0f ms %5.1f %%\n", n, d[n] * 1000 / hz, tot ? 100 * d[n] / tot : 0
    }' <(echo "$before") <(echo "$after") | sort -k2 -n -r

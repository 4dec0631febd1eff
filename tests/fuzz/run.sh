#!/usr/bin/env bash
# Builds the libFuzzer targets with clang into build-fuzz/ and runs each for SECONDS (default 20)
# on a temporary copy of its seed corpus (new inputs never touch the tree). Fails when a target
# crashes, leaks or trips a sanitizer; the crashing input is kept and its path printed.
#
#   bash tests/fuzz/run.sh [SECONDS]
#
# Environment: NH_FUZZ_BUILD_DIR (default build-fuzz), NH_FUZZ_JOBS (build jobs, default 2),
# NH_FUZZ_TARGETS (default: every tests/fuzz/fuzz_*.c).
set -euo pipefail
SECONDS_EACH=${1:-20}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${NH_FUZZ_BUILD_DIR:-$ROOT/build-fuzz}
JOBS=${NH_FUZZ_JOBS:-2}

if ! command -v clang >/dev/null; then
  echo "run.sh: clang is needed (apt-get install clang libclang-rt-14-dev)" >&2
  exit 2
fi

if [[ -n ${NH_FUZZ_TARGETS:-} ]]; then
  read -r -a TARGETS <<<"$NH_FUZZ_TARGETS"
else
  TARGETS=()
  for src in "$ROOT"/tests/fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    TARGETS+=("${name#fuzz_}")
  done
fi

CC=clang cmake -S "$ROOT" -B "$BUILD" -DNH_FUZZ=ON -DNH_BUILD_TESTS=OFF -DNH_BUILD_BENCH=OFF \
  >"$BUILD.configure.log" 2>&1 || { cat "$BUILD.configure.log" >&2; exit 1; }
rm -f "$BUILD.configure.log"
cmake --build "$BUILD" --target fuzz -j"$JOBS"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/nh-fuzz.XXXXXX")
failed=()
for t in "${TARGETS[@]}"; do
  bin=$BUILD/tests/fuzz/fuzz_$t
  corpus=$WORK/corpus-$t
  mkdir -p "$corpus" "$WORK/artifacts-$t"
  cp -r "$ROOT/tests/fuzz/corpus/$t/." "$corpus/"
  echo "== fuzz_$t: ${SECONDS_EACH}s on $(ls "$corpus" | wc -l) seeds"
  if "$bin" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$WORK/artifacts-$t/" "$corpus" >"$WORK/$t.log" 2>&1; then
    grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|#[0-9]+[[:space:]]+DONE)' \
      "$WORK/$t.log" | sed 's/^/   /'
  else
    failed+=("$t")
    tail -n 60 "$WORK/$t.log"
    echo "== fuzz_$t FAILED; input(s): $(ls -d "$WORK/artifacts-$t"/* 2>/dev/null | tr '\n' ' ')"
  fi
done

if ((${#failed[@]})); then
  echo "fuzz: FAILED: ${failed[*]} (logs and inputs kept in $WORK)" >&2
  exit 1
fi
rm -rf "$WORK"
echo "fuzz: all ${#TARGETS[@]} targets ran ${SECONDS_EACH}s each without a crash"

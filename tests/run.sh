#!/usr/bin/env bash
# Runs the whole test suite: installs what is missing, builds, runs ctest.
#   tests/run.sh              normal build in build/
#   NH_SANITIZE=1 tests/run.sh  AddressSanitizer + UndefinedBehaviorSanitizer build in build-asan/
#   NH_TSAN=1 tests/run.sh      ThreadSanitizer build in build-tsan/
#   NH_THREADS=2 tests/run.sh   (with any of the above) every runtime with 2 event loops
# Extra arguments go to ctest (for example -R rpc, or -L unit).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/deploy/install-deps.sh"
opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DNH_BUILD_BENCH=OFF)
build=${NH_BUILD_DIR:-$root/build}
if [ "${NH_SANITIZE:-0}" = 1 ]; then
  opts+=(-DNH_SANITIZE=ON); build=${NH_BUILD_DIR:-$root/build-asan}
elif [ "${NH_TSAN:-0}" = 1 ]; then
  opts+=(-DNH_TSAN=ON); build=${NH_BUILD_DIR:-$root/build-tsan}
fi
cmake -S "$root" -B "$build" "${opts[@]}" >/dev/null
cmake --build "$build" -j"$(nproc)"
cd "$build"
ctest --output-on-failure -j2 --timeout 300 "$@"

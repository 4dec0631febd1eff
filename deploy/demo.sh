#!/usr/bin/env bash
# The main job: install what is missing, build, and run the nodehost demonstration.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/deploy/install-deps.sh"
build=${NH_BUILD_DIR:-$root/build}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target nodehost-demo >/dev/null
exec "$build/host/nodehost-demo" "$@"

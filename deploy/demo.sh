#!/usr/bin/env bash
# The main job: build nodehost, start a 3-node local cluster from conf/cluster-3.yaml with the
# storage plugin, run a client scenario that prints a readable transcript, stop everything.
#   bash deploy/demo.sh            (NH_BUILD_DIR=... to build elsewhere)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/deploy/install-deps.sh"
build=${NH_BUILD_DIR:-$root/build}
echo "== building nodehost in $build"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNH_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target nodehost_exe storage benchmark nh-storage-client nh_reload_plugins \
  >/dev/null
exec bash "$root/deploy/demo-scenario.sh" "$build"

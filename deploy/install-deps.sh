#!/usr/bin/env bash
# Installs the Debian 12 packages nodehost builds, tests and runs with, when any is missing.
# Uses apt-get as root, or through sudo when available. Safe to run repeatedly.
set -euo pipefail

NH_DEBIAN_PACKAGES=(
  build-essential cmake pkg-config
  libgrpc-dev protobuf-compiler protobuf-c-compiler libprotobuf-c-dev libprotoc-dev
  libuv1-dev libyaml-dev libcmocka-dev liblmdb-dev libssl-dev openssl libmicrohttpd-dev libsystemd-dev prometheus iproute2
  python3-grpcio python3-protobuf
)

missing=()
for p in "${NH_DEBIAN_PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  if [[ $status != *"install ok installed"* ]]; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "nodehost: installing missing Debian packages: ${missing[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then
  sudo=""
elif command -v sudo >/dev/null 2>&1; then
  sudo="sudo"
else
  echo "nodehost: these packages are missing and I am not root (no sudo): ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q "${missing[@]}"

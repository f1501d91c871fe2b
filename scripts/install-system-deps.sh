#!/usr/bin/env bash
# Installs the Debian packages the tests, the demo and the corpus script need (chromium: the browser tests;
# prometheus: its promtool checks and unit-tests the alert rules; nginx: the load balancer of the fleet test;
# faketime: libfaketime, a fleet instance whose clock is 2 s off).
# Idempotent: does nothing when every tool is already on PATH.
set -euo pipefail
declare -A tool_package=(
  [ffmpeg]=ffmpeg [ffprobe]=ffmpeg [espeak-ng]=espeak-ng [sox]=sox [age]=age [chromium]=chromium [promtool]=prometheus [nginx]=nginx [faketime]=faketime
)
missing=()
for tool in "${!tool_package[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${tool_package[$tool]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
packages=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" -ne 0 ]; then
  echo "install-system-deps: missing Debian packages: $packages (run this script as root, or: sudo apt-get install $packages)" >&2
  exit 1
fi
echo "install-system-deps: installing $packages" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $packages >/dev/null

#!/usr/bin/env bash
# Everything `npm test` and `npm run demo` need on a fresh Debian machine: the npm dependencies
# (Node 24 comes with them, as the `node` package), the Debian packages (ffmpeg, espeak-ng, sox, age,
# chromium), and the browser SDK build.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x node_modules/.bin/node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm install --no-audit --no-fund
fi
bash scripts/install-system-deps.sh
# The browser SDK the gateway serves at /sdk/ (and the pages use) is compiled from client-sdk/src.
node_modules/.bin/tsc -p client-sdk

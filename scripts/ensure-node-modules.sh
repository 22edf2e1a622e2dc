#!/usr/bin/env bash
# Installs the locked npm dependencies when node_modules is missing or older than the lockfile.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "== installing npm dependencies (npm ci; better-sqlite3 and pkcs11js build from source, about a minute)"
  npm ci --no-audit --no-fund
fi

#!/usr/bin/env bash
# Benchmarks; prints rates and their ratios to the raw bounds, measured in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-node-modules.sh
exec node --import tsx bench/run-bench.ts "$@"

#!/usr/bin/env bash
# Benchmarks; prints rates and their ratios to the raw bounds, measured in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-node-modules.sh
node --import tsx bench/run-bench.ts "$@"
# SM2 beside P-256 (issue 13): raw sign and verify, CSR verification, issuance and its ratio to the raw bound.
node --import tsx bench/sm2-bench.ts
# The agent's whole renewal on SoftHSM2 (issue 5.7), in its own process.
node --import tsx bench/agent-renewal-bench.ts
# The installed agent: executable and .deb size, cold start to /v1/hello, RSS at rest (issue 14.7).
node --import tsx bench/agent-executable-bench.ts
# OCSP on PostgreSQL at UKEY_BENCH_OCSP_PG_ROWS (10,000,000) rows, beside the small table (opt-in: UKEY_BENCH_OCSP_POSTGRES=1; bench/ocsp-bench.ts).
if [ "${UKEY_BENCH_OCSP_POSTGRES:-}" = 1 ]; then node --import tsx bench/ocsp-bench.ts postgres; fi
# The reminder scan over a million certificates (UKEY_BENCH_REMINDER_* in bench/reminder-scan-bench.ts; PostgreSQL opt-in).
exec node --expose-gc --import tsx bench/reminder-scan-bench.ts

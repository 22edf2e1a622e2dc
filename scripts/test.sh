#!/usr/bin/env bash
# The one test command: installs what is missing, then lint, typecheck and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-system-deps.sh
bash scripts/ensure-node-modules.sh
bash scripts/build-web.sh
# The software SKF key, built once here rather than by whichever test file asks first.
bash scripts/ensure-skf-softkey.sh >/dev/null
# The server and agent bundles the tests start (made once per content of the sources; a test file makes it if missing).
node scripts/test-bundle.mjs >/dev/null
# The production dependencies and the clean Debian roots, made beside lint and typecheck (cached: seconds when warm).
builds_log="$(mktemp)"
bash scripts/ensure-test-builds.sh >"$builds_log" 2>&1 & builds=$!
echo "== lint"
npx eslint .
echo "== typecheck"
npx tsc -p tsconfig.json
npx tsc -p packages/web/tsconfig.json
if ! wait "$builds"; then cat "$builds_log" >&2; rm -f "$builds_log"; exit 1; fi
cat "$builds_log"; rm -f "$builds_log"
echo "== tests"
node scripts/run-tests.mjs "$@"

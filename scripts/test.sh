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
echo "== lint"
npx eslint .
echo "== typecheck"
npx tsc -p tsconfig.json
npx tsc -p packages/web/tsconfig.json
echo "== tests"
node scripts/run-tests.mjs "$@"

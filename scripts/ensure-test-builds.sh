#!/usr/bin/env bash
# The slow, shared things the test files need, made before the tests start, so that no test file's time (and its
# 10-minute limit) includes a cold build it waits on under a lock: the production dependencies (npm ci --omit=dev,
# for the production-install and container tests) and the two clean Debian 12 roots (debootstrap: the agent's
# clean-root install and the server's container steps). Each is cached by content in ~/.cache/ukey-renew and made
# only when missing, so a warm run spends a second here. The package lists must match the tests' own
# (clean-root-install.test.ts, container-steps.test.ts): a test whose list differs still makes its root itself.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
node scripts/ensure-production-modules.mjs >"$logs/production" 2>&1 & p1=$!
bash scripts/ensure-debian-root.sh --include opensc,softhsm2 --cache-only >"$logs/root-agent" 2>&1 & p2=$!
bash scripts/ensure-debian-root.sh --include libstdc++6 --cache-only >"$logs/root-container" 2>&1 & p3=$!
failed=0
for job in "production:$p1" "root-agent:$p2" "root-container:$p3"; do
  if ! wait "${job#*:}"; then
    echo "ensure-test-builds: ${job%%:*} failed:" >&2
    cat "$logs/${job%%:*}" >&2
    failed=1
  fi
done
[ "$failed" = 0 ] || exit 1
echo "== test builds ready in $(( $(date +%s) - started )) s: $(tail -n1 "$logs/production"), $(tail -n1 "$logs/root-agent"), $(tail -n1 "$logs/root-container")"

#!/usr/bin/env bash
# Builds the portal and the operator console (packages/web) into
# packages/web/dist with Vite, only when a source is newer than the last
# build (or there is no build). `--force` builds anyway.
set -euo pipefail
cd "$(dirname "$0")/.."
# One build at a time (test files running in parallel each ask for one): the later one then finds it done.
exec 9<"scripts/build-web.sh"
flock 9
web=packages/web
stamp="$web/dist/index.html"
if [ "${1:-}" != "--force" ] && [ -f "$stamp" ]; then
  # The portal bundles the catalogue and calendar of packages/policy and the agent's protocol types.
  newer=$(find "$web/src" "$web/index.html" "$web/console" "$web/public" "$web/vite.config.ts" packages/policy/src \
    -newer "$stamp" -type f -print -quit)
  if [ -z "$newer" ]; then exit 0; fi
fi
echo "== building the portal and the console (packages/web)"
npx vite build --config "$web/vite.config.ts" --logLevel warn

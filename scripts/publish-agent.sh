#!/usr/bin/env bash
# One command for an institution: builds the agent's installers with its key
# and configuration stamped in, and publishes them at /downloads/.
#   bash scripts/publish-agent.sh --data-dir DIR
# Steps: the signed configuration (ukey-server downloads publish), the
# self-contained executables with the .deb (scripts/build-agent-installers.mjs)
# and the per-user .msi (scripts/build-agent-windows.mjs), both cached by
# content, then publish again with both in the manifest.
# It works while the server runs (the server runs the publish for it, docs/operator-cli.md).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${1:-}" = "--data-dir" ] && [ -n "${2:-}" ] || { echo "usage: bash scripts/publish-agent.sh --data-dir DIR" >&2; exit 2; }
DATA="$2"
bash scripts/ensure-node-modules.sh
bash scripts/ensure-windows-build-deps.sh
node scripts/build.mjs
ukey_server() { node packages/server/dist/ukey-server.mjs "$@"; }
ukey_server downloads publish --data-dir "$DATA" > /dev/null
downloads=$(node -e 'const c=JSON.parse(require("fs").readFileSync(process.argv[1]+"/config.json","utf8"));console.log(require("path").resolve(process.argv[1],(c.downloads&&c.downloads.dir)||"downloads"))' "$DATA")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
built=$(node scripts/build-agent-installers.mjs --institution "$downloads" --out "$out")
deb=$(node -e 'console.log(JSON.parse(process.argv[1]).deb)' "$built")
builtWin=$(node scripts/build-agent-windows.mjs --institution "$downloads" --out "$out")
msi=$(node -e 'console.log(JSON.parse(process.argv[1]).msi)' "$builtWin")
ukey_server downloads publish --data-dir "$DATA" --file "$deb" --file "$msi"

#!/usr/bin/env bash
# Makes sure SoftHSM2 (softhsm2-util, the PKCS#11 module) and OpenSC's
# pkcs11-tool are installed, installing the Debian packages when they are
# not, then prints the module's path on stdout. Safe to run any number of
# times; progress goes to stderr so callers can capture the path.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/apt-common.sh"

if ! command -v softhsm2-util >/dev/null 2>&1 || ! command -v pkcs11-tool >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-softhsm: softhsm2 and opensc are missing and apt-get is not available; install them by hand" >&2
    exit 1
  fi
  echo "ensure-softhsm: installing softhsm2 and opensc" >&2
  export DEBIAN_FRONTEND=noninteractive
  ukey_apt_get update -qq >&2
  ukey_apt_get install -y -qq --no-install-recommends softhsm2 opensc >&2
fi

for module in /usr/lib/softhsm/libsofthsm2.so \
  "/usr/lib/$(uname -m)-linux-gnu/softhsm/libsofthsm2.so" \
  /usr/local/lib/softhsm/libsofthsm2.so; do
  if [ -f "$module" ]; then
    echo "$module"
    exit 0
  fi
done
echo "ensure-softhsm: softhsm2 is installed but libsofthsm2.so was not found" >&2
exit 1

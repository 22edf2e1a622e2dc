#!/usr/bin/env bash
# Installs the Debian packages that build and check the Windows agent when they
# are missing: wixl and msitools (build the per-user .msi, read its tables with
# msiinfo) and wine64 (runs ukey.exe in the tests). Separate from
# ensure-system-deps.sh because Wine is large (about 600 MB installed) and only
# the installer tests need it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/apt-common.sh"
missing=()
command -v wixl >/dev/null || missing+=(wixl)
command -v msiinfo >/dev/null || missing+=(msitools)
command -v wine64 >/dev/null || [ -x /usr/lib/wine/wine64 ] || missing+=(wine64)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages: ${missing[*]}; run as root or install them: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "== installing Debian packages: ${missing[*]}"
  ukey_apt_get update -qq
  ukey_apt_get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

#!/usr/bin/env bash
# A clean Debian 12 (bookworm) root, as a fresh machine would have it: made
# once with debootstrap (minbase plus the packages asked for), cached as a
# tarball, and unpacked fresh into DEST for every use. No Node.js is in it.
#
# Usage: bash scripts/ensure-debian-root.sh [--include pkg,pkg,...] DEST
#        bash scripts/ensure-debian-root.sh [--include pkg,pkg,...] --cache-only
#   --include     Debian packages to add to minbase (debootstrap --include)
#   DEST          an empty (or missing) directory; the root is unpacked there
#   --cache-only  make the cached tarball if missing, unpack nothing (scripts/ensure-test-builds.sh)
#
# Cache: ${UKEY_BUILD_CACHE:-~/.cache/ukey-renew}/debian-root/<hash>.tar, the
# hash covering this script and the sorted package list. The mirror is the
# Debian one this machine's apt uses (/etc/apt/sources.list*), or
# UKEY_DEBIAN_MIRROR. debootstrap is installed when missing (needs root, like
# the chroot that uses the result). Progress on stderr; on stdout, one line:
# the tarball's path. Used by the agent's clean-root install test and meant
# for any other "install it as on a fresh machine" check.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/apt-common.sh"

include=""
dest=""
cache_only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cache-only) cache_only=1; shift ;;
    --include) include="$2"; shift 2 ;;
    --include=*) include="${1#--include=}"; shift ;;
    -*) echo "ensure-debian-root: unknown option $1" >&2; exit 2 ;;
    *) dest="$1"; shift ;;
  esac
done
if [ -z "$dest" ] && [ -z "$cache_only" ]; then
  echo "usage: bash scripts/ensure-debian-root.sh [--include pkg,pkg] DEST|--cache-only" >&2
  exit 2
fi
if [ "$(id -u)" != 0 ]; then
  echo "ensure-debian-root: debootstrap and unpacking a root need root" >&2
  exit 1
fi

# The package list, sorted and de-duplicated, so that the same set always hits the same cache entry.
packages="$(printf '%s' "$include" | tr ', ' '\n\n' | sed '/^$/d' | sort -u | paste -sd, -)"
key="$( { cat "$0"; printf '\0%s\0' "$packages"; } | sha256sum | cut -c1-16)"
cache="${UKEY_BUILD_CACHE:-$HOME/.cache/ukey-renew}/debian-root"
tarball="$cache/$key.tar"
mkdir -p "$cache"

if [ ! -f "$tarball" ]; then
  # One builder at a time per entry; a second caller waits and then finds the tarball.
  exec 9>"$tarball.lock"
  flock 9
  if [ ! -f "$tarball" ]; then
    if ! command -v debootstrap >/dev/null 2>&1; then
      echo "ensure-debian-root: installing debootstrap" >&2
      ukey_apt_get update -qq >&2
      ukey_apt_get install -y -qq --no-install-recommends debootstrap >&2
    fi
    mirror="${UKEY_DEBIAN_MIRROR:-}"
    if [ -z "$mirror" ]; then
      # The first Debian (not -security) archive apt uses here: deb822 "URIs:" or one-line "deb URL suite".
      mirror="$(set +o pipefail; cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | sed -n -e 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' -e 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\)[[:space:]]\+bookworm[[:space:]].*/\2/p' \
        | grep -v -e security -e nodesource -e google | grep '/debian/\?$' | head -n1 || true)"
    fi
    mirror="${mirror:-http://deb.debian.org/debian}"
    work="$cache/$key.tmp-$$"
    rm -rf "$work"
    mkdir -p "$work"
    trap 'rm -rf "$work" "$tarball.tmp-$$"' EXIT
    echo "ensure-debian-root: debootstrap bookworm (minbase${packages:+ + $packages}) from $mirror" >&2
    start=$(date +%s)
    debootstrap --variant=minbase ${packages:+--include="$packages"} bookworm "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
      tail -n 30 "$work/debootstrap.log" >&2
      echo "ensure-debian-root: debootstrap failed (log above)" >&2
      exit 1
    }
    # Smaller and the same every time: no downloaded .debs, no package lists.
    rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
    if [ -e "$work/root/usr/bin/node" ] || [ -e "$work/root/usr/local/bin/node" ]; then
      echo "ensure-debian-root: Node.js ended up in the root; it must not be there" >&2
      exit 1
    fi
    tar -C "$work/root" --numeric-owner -cf "$tarball.tmp-$$" .
    mv "$tarball.tmp-$$" "$tarball"
    echo "ensure-debian-root: built $tarball ($(du -m "$tarball" | cut -f1) MB) in $(( $(date +%s) - start )) s" >&2
  fi
  flock -u 9
fi

if [ -n "$cache_only" ]; then
  echo "$tarball"
  exit 0
fi
mkdir -p "$dest"
if [ -n "$(ls -A "$dest")" ]; then
  echo "ensure-debian-root: $dest is not empty" >&2
  exit 2
fi
tar -C "$dest" --numeric-owner -xf "$tarball"
echo "$tarball"

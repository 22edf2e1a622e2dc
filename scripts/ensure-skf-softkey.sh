#!/usr/bin/env bash
# Builds skf-softkey, the software SKF (GM/T 0016) key the tests use in place
# of a vendor's library (docs/skf-softkey.md), and prints the path of
# libskf-softkey.so on stdout. Beside it: libskf-softkey-noimport.so (the same
# without SKF_ImportECCKeyPair, a library lacking a function), skf-softkey-admin (makes and works
# the test keys) and skf-softkey-conformance (its own GM/T 0016 checks).
# Built once into ~/.cache/ukey-renew/skf-softkey/<hash of the sources>/;
# a later run with the same sources only prints the path. Needs gcc and
# OpenSSL 3's headers (Debian: gcc, libssl-dev), installed by
# ensure-system-deps.sh when missing. Progress goes to stderr.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/apt-common.sh"

here="$(cd "$(dirname "$0")/.." && pwd)"
self="$here/scripts/$(basename "$0")"
src="$here/native/skf-softkey"
cc="${CC:-gcc}"

missing=()
command -v "$cc" >/dev/null 2>&1 || missing+=(gcc)
[ -f /usr/include/openssl/evp.h ] || missing+=(libssl-dev)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-skf-softkey: missing ${missing[*]}; install them (apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "ensure-skf-softkey: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  ukey_apt_get update -qq >&2
  ukey_apt_get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

hash="$( (cd "$src" && find include src test -type f -name '*.[ch]' | LC_ALL=C sort | xargs sha256sum; \
  sha256sum "$self" | cut -d' ' -f1; "$cc" --version | head -1; openssl version) | sha256sum | cut -c1-16)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/ukey-renew/skf-softkey"
out="$cache/$hash"
if [ -f "$out/libskf-softkey.so" ] && [ -f "$out/libskf-softkey-noimport.so" ] && [ -x "$out/skf-softkey-admin" ] && [ -x "$out/skf-softkey-conformance" ]; then
  echo "$out/libskf-softkey.so"
  exit 0
fi

echo "ensure-skf-softkey: building into $out" >&2
mkdir -p "$cache"
tmp="$(mktemp -d "$cache/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
cflags=(-std=c11 -O2 -g -Wall -Wextra -Werror -I"$src/include")
"$cc" "${cflags[@]}" -fPIC -fvisibility=hidden -shared -Wl,-soname,libskf-softkey.so -Wl,--no-undefined \
  -o "$tmp/libskf-softkey.so" "$src/src/skf.c" "$src/src/state.c" "$src/src/crypto.c" -lcrypto -lpthread >&2
# The same library without SKF_ImportECCKeyPair: a vendor library that lacks a function the agent needs.
"$cc" "${cflags[@]}" -DSKF_SOFTKEY_WITHOUT_ECC_IMPORT -fPIC -fvisibility=hidden -shared -Wl,-soname,libskf-softkey-noimport.so \
  -Wl,--no-undefined -o "$tmp/libskf-softkey-noimport.so" "$src/src/skf.c" "$src/src/state.c" "$src/src/crypto.c" -lcrypto -lpthread >&2
"$cc" "${cflags[@]}" -o "$tmp/skf-softkey-admin" "$src/src/admin.c" "$src/src/state.c" "$src/src/crypto.c" -lcrypto >&2
"$cc" "${cflags[@]}" -o "$tmp/skf-softkey-conformance" "$src/test/conformance.c" \
  -L"$tmp" -lskf-softkey -Wl,-rpath,'$ORIGIN' -lcrypto -lpthread >&2
# Another run may have finished the same build meanwhile: keep whichever landed first.
if ! mv -T "$tmp" "$out" 2>/dev/null; then
  rm -rf "$tmp"
  [ -f "$out/libskf-softkey.so" ] || { echo "ensure-skf-softkey: cannot install into $out" >&2; exit 1; }
fi
trap - EXIT
echo "$out/libskf-softkey.so"

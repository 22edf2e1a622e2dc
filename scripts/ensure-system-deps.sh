#!/usr/bin/env bash
# Installs the Debian packages the tests need when they are missing:
# openssl and curl (clients of our endpoints), softhsm2 and opensc (a real
# PKCS#11 token), postgresql (the second storage engine), strongswan-pki
# (a third-party EST client, `pki --est`), gnutls-bin (`ocsptool`, a second OCSP client), libnss3-tools
# (`vfychain`, NSS's OCSP client), chromium, firefox-esr,
# webkit2gtk-driver and xvfb (the portal's browser tests in three engines), gcc and
# libssl-dev (the software SKF key, native/skf-softkey), nginx-light (the deployment guide's proxy).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/apt-common.sh"
missing=()
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
# systemd-analyze checks the service unit (deploy/systemd); the machine need not boot with systemd.
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v strace >/dev/null || missing+=(strace)
command -v softhsm2-util >/dev/null || missing+=(softhsm2)
command -v pkcs11-tool >/dev/null || missing+=(opensc)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v pki >/dev/null || missing+=(strongswan-pki)
# The portal's browser tests drive Debian's Chromium (headless) with playwright-core.
[ -x /usr/bin/chromium ] || missing+=(chromium)
# Chromium's zh-CN locale, so that the browser's own parts of a page (a date field's 年/月/日) are Chinese as a holder sees them.
[ -f /usr/lib/chromium/locales/zh-CN.pak ] || missing+=(chromium-l10n)
# The journeys in the two other engines (packages/web/test/support/engines.ts): Firefox ESR through
# puppeteer-core over WebDriver BiDi, and WebKitGTK's MiniBrowser through WebKitWebDriver on an Xvfb display.
[ -x /usr/bin/firefox-esr ] || missing+=(firefox-esr)
[ -x /usr/bin/WebKitWebDriver ] || missing+=(webkit2gtk-driver)
[ -x /usr/bin/Xvfb ] || missing+=(xvfb)
# A CJK font, so that the zh-CN pages Chromium renders (screenshots, the walk of the portal) show Chinese, not boxes.
[ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || missing+=(fonts-wqy-microhei)
# GnuTLS's ocsptool, a second OCSP client: it finds the responder only through a certificate in the response.
command -v ocsptool >/dev/null || missing+=(gnutls-bin)
# NSS's vfychain and certutil, a third OCSP client (vfychain -g ocsp), as Firefox and Chromium on Linux check certificates.
command -v vfychain >/dev/null || missing+=(libnss3-tools)
# pki --est fetches over HTTPS with the curl plugin and needs openssl's EC keys.
ls /usr/lib/ipsec/plugins/libstrongswan-curl.so >/dev/null 2>&1 || missing+=(libstrongswan-extra-plugins)
ls /usr/lib/ipsec/plugins/libstrongswan-openssl.so >/dev/null 2>&1 || missing+=(libstrongswan-standard-plugins)
# The software SKF key (native/skf-softkey, scripts/ensure-skf-softkey.sh) is C on OpenSSL 3.
# nginx in front of the server, as docs/deployment.md configures it (nginx-proxy.test.ts runs that site).
[ -x /usr/sbin/nginx ] || missing+=(nginx-light)
# debootstrap for the clean Debian roots (ensure-debian-root.sh), installed here once rather than by two roots made at once.
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v gcc >/dev/null || missing+=(gcc)
[ -f /usr/include/openssl/evp.h ] || missing+=(libssl-dev)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages: ${missing[*]}; run as root or install them: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "== installing Debian packages: ${missing[*]}"
  ukey_apt_get update -qq
  # No service starts from an install here (nginx would take port 80): the tests start their own.
  guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && guard=1
  fi
  ukey_apt_get install -y -qq "${missing[@]}" >/dev/null
  [ -z "$guard" ] || rm -f /usr/sbin/policy-rc.d
fi
# wixl, msitools and Wine for the Windows agent (its own script: Wine is large).
bash "$(dirname "$0")/ensure-windows-build-deps.sh"

# Sourced by the scripts that install Debian packages. The test setup runs several of them side by side
# (ensure-test-builds.sh makes two Debian roots at once) and dpkg takes one caller at a time: apt-get runs here
# under one lock of ours, and waits for anyone else's (DPkg::Lock::Timeout) instead of failing at once.
ukey_apt_get() {
  DEBIAN_FRONTEND=noninteractive flock "${TMPDIR:-/tmp}/ukey-renew-apt.lock" ${sudo:-} apt-get -o DPkg::Lock::Timeout=600 "$@"
}

# Sourced (not run) by scripts/ensure-postgres.sh and scripts/ensure-postgres-pair.sh: where Debian's PostgreSQL
# server binaries are (installing them when missing), running them as the postgres user, and a cluster directory
# that user owns.

# The newest installed PostgreSQL's bin directory (Debian keeps it out of PATH).
pg_find_bin() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$dir/initdb" ]; then echo "$dir"; return 0; fi
  done
  if command -v initdb >/dev/null 2>&1; then dirname "$(readlink -f "$(command -v initdb)")"; return 0; fi
  return 1
}

# Sets BIN to pg_find_bin's answer, installing Debian's postgresql first when there is none.
pg_require_bin() {
  if ! BIN="$(pg_find_bin)"; then
    echo "initdb not found: installing Debian's postgresql with apt-get" >&2
    source "$(dirname "${BASH_SOURCE[0]}")/apt-common.sh"
    ukey_apt_get update >&2
    ukey_apt_get install -y --no-install-recommends postgresql >&2
    BIN="$(pg_find_bin)" || { echo "postgresql installed but initdb still not found" >&2; exit 1; }
  fi
}

# Runs a command as the postgres user when we are root (PostgreSQL refuses to run as root); else as ourselves.
as_postgres() {
  if [ "$(id -u)" = "0" ]; then
    # runuser needs no password and no tty; su is the fallback.
    if command -v runuser >/dev/null 2>&1; then runuser -u postgres -- "$@"; else su postgres -s /bin/sh -c "$(printf '%q ' "$@")"; fi
  else
    "$@"
  fi
}

# As root: the postgres user exists (home DIR when it is made here) and owns DIR.
pg_own_dir() {
  if [ "$(id -u)" = "0" ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir "$1" --shell /bin/sh postgres
    chown postgres "$1"
  fi
}

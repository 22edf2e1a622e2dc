#!/usr/bin/env bash
# Makes a private PostgreSQL cluster available for tests and prints its URL
# as the last line. Idempotent, and safe to run from several test processes
# at once (one flock around everything). Never touches the machine's own
# PostgreSQL service: the cluster lives in its own directory and port.
#
#   UKEY_PG_DIR   cluster directory            (default /tmp/ukey-pg)
#   UKEY_PG_PORT  port on 127.0.0.1            (default 55432)
set -euo pipefail

PG_DIR="${UKEY_PG_DIR:-/tmp/ukey-pg}"
PG_PORT="${UKEY_PG_PORT:-55432}"
DATA="$PG_DIR/data"
LOG="$PG_DIR/postgres.log"

find_bin() {
  local dir
  # Debian keeps the server binaries out of PATH; prefer the newest version.
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$dir/initdb" ]; then echo "$dir"; return 0; fi
  done
  if command -v initdb >/dev/null 2>&1; then dirname "$(readlink -f "$(command -v initdb)")"; return 0; fi
  return 1
}

as_postgres() {
  if [ "$(id -u)" = "0" ]; then
    # runuser needs no password and no tty; su is the fallback.
    if command -v runuser >/dev/null 2>&1; then runuser -u postgres -- "$@"; else su postgres -s /bin/sh -c "$(printf '%q ' "$@")"; fi
  else
    "$@"
  fi
}

mkdir -p "$PG_DIR"
exec 9>"$PG_DIR.lock"
flock 9

if ! BIN="$(find_bin)"; then
  echo "initdb not found: installing Debian's postgresql with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update >&2
  apt-get install -y --no-install-recommends postgresql >&2
  BIN="$(find_bin)" || { echo "postgresql installed but initdb still not found" >&2; exit 1; }
fi

if [ "$(id -u)" = "0" ]; then
  id postgres >/dev/null 2>&1 || useradd --system --home-dir "$PG_DIR" --shell /bin/sh postgres
  chown postgres "$PG_DIR"
fi

if [ ! -f "$DATA/PG_VERSION" ]; then
  rm -rf "$DATA"
  as_postgres "$BIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >&2 \
    || as_postgres "$BIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C >&2
fi

if ! as_postgres "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  # The socket goes in the cluster directory so that /var/run/postgresql
  # (the machine's service) is never needed nor touched.
  # 9>&-: the server must not inherit the flock, or it would hold it forever.
  as_postgres "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c max_connections=200 -c fsync=on" start >&2 9>&- \
    || { echo "PostgreSQL failed to start; log follows" >&2; tail -n 40 "$LOG" >&2; exit 1; }
fi

for _ in $(seq 1 60); do
  if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres; then break; fi
  sleep 0.5
done
"$BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres \
  || { echo "PostgreSQL is not accepting connections on 127.0.0.1:$PG_PORT" >&2; exit 1; }

echo "postgres://postgres@127.0.0.1:$PG_PORT/postgres"

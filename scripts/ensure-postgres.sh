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

# shellcheck source=scripts/postgres-common.sh
. "$(dirname "$0")/postgres-common.sh"

mkdir -p "$PG_DIR"
exec 9>"$PG_DIR.lock"
flock 9

pg_require_bin
pg_own_dir "$PG_DIR"

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

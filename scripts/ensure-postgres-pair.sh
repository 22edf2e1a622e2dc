#!/usr/bin/env bash
# A PostgreSQL primary and a synchronous streaming standby, as two private
# clusters on 127.0.0.1 (their own directories and ports), for the failover
# test and for trying failover by hand. Never touches the machine's own
# PostgreSQL service. One flock around everything.
#
#   ensure-postgres-pair.sh start   make the pair (or keep the running one if
#                                   it is still a primary with its standby
#                                   streaming synchronously) and print, as the
#                                   last line, the two-host URL:
#                                   postgres://postgres@127.0.0.1:P,127.0.0.1:S/postgres?target_session_attrs=read-write
#   ensure-postgres-pair.sh stop    stop both clusters (immediate) and delete
#                                   their directories
#
#   UKEY_PG_PAIR_DIR           directory for both clusters (default /tmp/ukey-pg-pair)
#   UKEY_PG_PAIR_PRIMARY_PORT  the primary's port            (default 55442)
#   UKEY_PG_PAIR_STANDBY_PORT  the standby's port            (default 55443)
#
# Settings (documented in docs/postgresql.md): on the primary
# synchronous_standby_names='ukey_standby' and synchronous_commit=on, so a
# COMMIT returns only once the standby has flushed its WAL; the standby is
# a pg_basebackup -R copy whose cluster_name (its application_name towards
# the primary) is ukey_standby, with hot_standby on.
set -euo pipefail

ACTION="${1:-start}"
PAIR_DIR="${UKEY_PG_PAIR_DIR:-/tmp/ukey-pg-pair}"
P_PORT="${UKEY_PG_PAIR_PRIMARY_PORT:-55442}"
S_PORT="${UKEY_PG_PAIR_STANDBY_PORT:-55443}"
PRIMARY="$PAIR_DIR/primary"
STANDBY="$PAIR_DIR/standby"

# shellcheck source=scripts/postgres-common.sh
. "$(dirname "$0")/postgres-common.sh"

psql_at() { "$BIN/psql" -X -q -t -A -h 127.0.0.1 -p "$1" -U postgres -d postgres -c "$2" 2>/dev/null; }

stop_pair() {
  local d
  for d in "$PRIMARY" "$STANDBY"; do
    if [ -f "$d/PG_VERSION" ]; then as_postgres "$BIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true; fi
  done
  rm -rf "$PRIMARY" "$STANDBY"
}

healthy() {
  [ "$(psql_at "$P_PORT" "SELECT pg_is_in_recovery()")" = "f" ] \
    && [ "$(psql_at "$S_PORT" "SELECT pg_is_in_recovery()")" = "t" ] \
    && [ "$(psql_at "$P_PORT" "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'ukey_standby'")" = "sync" ]
}

start_cluster() {
  # 9>&-: the server must not inherit the flock.
  as_postgres "$BIN/pg_ctl" -D "$1" -l "$1.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $2 -k $PAIR_DIR -c max_connections=100 -c fsync=on $3" start >&2 9>&- \
    || { echo "PostgreSQL on port $2 failed to start; log follows" >&2; tail -n 40 "$1.log" >&2; exit 1; }
}

mkdir -p "$PAIR_DIR"
exec 9>"$PAIR_DIR.lock"
flock 9
pg_require_bin
pg_own_dir "$PAIR_DIR"

case "$ACTION" in
  stop) stop_pair; exit 0 ;;
  start) ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

if ! healthy; then
  # A half pair (after a failover, a crash, or an earlier run) is not repaired: it is made again.
  stop_pair
  as_postgres mkdir -p "$PRIMARY"
  as_postgres "$BIN/initdb" -D "$PRIMARY" -U postgres --auth=trust --encoding=UTF8 --locale=C >&2
  start_cluster "$PRIMARY" "$P_PORT" "-c wal_level=replica -c max_wal_senders=5 -c synchronous_standby_names=ukey_standby -c synchronous_commit=on"
  as_postgres "$BIN/pg_basebackup" -h 127.0.0.1 -p "$P_PORT" -U postgres -D "$STANDBY" -R -X stream -c fast >&2
  start_cluster "$STANDBY" "$S_PORT" "-c hot_standby=on -c cluster_name=ukey_standby"
  for _ in $(seq 1 120); do
    if healthy; then break; fi
    sleep 0.25
  done
  healthy || { echo "the standby on port $S_PORT is not streaming synchronously from port $P_PORT" >&2; tail -n 20 "$STANDBY.log" >&2; exit 1; }
fi

echo "postgres://postgres@127.0.0.1:$P_PORT,127.0.0.1:$S_PORT/postgres?target_session_attrs=read-write"

#!/bin/sh
# As the official image does: as root, own PGDATA and go on as postgres; as postgres, make
# the cluster (UTF8, as the official image: Tally needs it) and the database on first start,
# then run the server in the foreground.
set -eu
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql && chmod 700 "$PGDATA"
  # setpriv execs (runuser would stay as PID 1 and not pass SIGINT on to PostgreSQL)
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  user=${POSTGRES_USER:-postgres}
  printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" >/tmp/pwfile
  initdb -D "$PGDATA" -U "$user" --pwfile=/tmp/pwfile -E UTF8 --locale=C.UTF-8 --auth-local=trust \
    --auth-host=scram-sha-256 >/dev/null
  rm -f /tmp/pwfile
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  db=${POSTGRES_DB:-$user}
  [ "$db" = postgres ] || echo "CREATE DATABASE \"$db\" OWNER \"$user\"" \
    | postgres --single -D "$PGDATA" postgres >/dev/null
  echo "database $db made for $user"
fi
exec "$@" -c listen_addresses='*'

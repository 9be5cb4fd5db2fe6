#!/usr/bin/env bash
# Makes sure PostgreSQL answers at DATABASE_URL's host and port, that the
# URL's credentials work, and that its database exists. Installs PostgreSQL
# from Debian's packages and starts its cluster when nothing listens there.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

host=$(url_host "$PG_ADMIN_URL")
port=$(url_port "$PG_ADMIN_URL" 5432)

installed=
if ! port_open "$host" "$port"; then
  case "$host" in 127.0.0.1|localhost) ;; *) die "PostgreSQL at $host:$port does not answer" ;; esac
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql
    installed=yes
  fi
  # The package starts its cluster where an init system runs; start it here
  # only if it is still down.
  if ! wait_port "$host" "$port" 3; then
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    say "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null \
      || as_root pg_ctlcluster "$version" main start 2>/dev/null || true
  fi
  wait_port "$host" "$port" 30 || die "PostgreSQL did not start; see /var/log/postgresql/"
fi
command -v psql >/dev/null || apt_install postgresql-client

if ! psql "$PG_ADMIN_URL" -qtAc 'SELECT 1' >/dev/null 2>&1; then
  [ -n "$installed" ] || die "cannot log in to $PG_ADMIN_URL; set ORDO_TEST_DATABASE_URL and DATABASE_URL to credentials that work"
  # The cluster we just installed has no password for postgres: give it
  # the one the default URLs use.
  say "setting the postgres user's password for local development"
  as_root runuser -u postgres -- psql -qc "ALTER USER postgres PASSWORD 'postgres'" >/dev/null
  psql "$PG_ADMIN_URL" -qtAc 'SELECT 1' >/dev/null || die "cannot log in to $PG_ADMIN_URL"
fi

# Each service owns a database: the order service's and the processor's.
for url in "$DATABASE_URL" "$PROCESSOR_DATABASE_URL"; do
  database=$(url_database "$url")
  if [ -z "$(psql "$PG_ADMIN_URL" -qtAc "SELECT 1 FROM pg_database WHERE datname = '$database'")" ]; then
    say "creating database $database"
    psql "$PG_ADMIN_URL" -qc "CREATE DATABASE \"$database\"" >/dev/null
  fi
done

#!/usr/bin/env bash
# Drops test databases (ordo_t_<unix time>_*) that runs killed before they
# could drop their own: those older than an hour, so a test run going on
# beside this one keeps its databases. --all drops every one, templates too.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

cutoff=$(( $(date +%s) - 3600 ))
for db in $(psql "$PG_ADMIN_URL" -qtAc "SELECT datname FROM pg_database WHERE datname LIKE 'ordo\_t\_%'"); do
  if [ "${1:-}" != --all ]; then
    created=$(sed -n 's/^ordo_t_\([0-9]\{10,\}\)_.*/\1/p' <<<"$db")
    [ -n "$created" ] && [ "$created" -lt "$cutoff" ] || continue
  fi
  psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
done

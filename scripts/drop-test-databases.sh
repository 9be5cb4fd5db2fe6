#!/usr/bin/env bash
# Drops the databases earlier test runs left behind (ordo_t_*), keeping the
# migrated templates of the current and other schemas' fingerprints only
# when asked (--keep-templates).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

filter="datname LIKE 'ordo\_t\_%'"
[ "${1:-}" = --keep-templates ] && filter="$filter AND datname NOT LIKE 'ordo\_t\_template\_%'"
for db in $(psql "$PG_ADMIN_URL" -qtAc "SELECT datname FROM pg_database WHERE $filter"); do
  psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
done

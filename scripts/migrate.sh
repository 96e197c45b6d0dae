#!/usr/bin/env bash
# Applies supabase/migrations/*.sql in order to a database, each in its own transaction, and
# records it in edge_sync_schema_migrations (version, name, sha256) so a re-run applies
# nothing twice. An applied migration whose file changed is an error, never re-applied.
#
#   scripts/migrate.sh [DATABASE_URL]     (default: $DATABASE_URL, else the local edge_sync db)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

url="${1:-${DATABASE_URL:-$DEFAULT_DATABASE_URL}}"
command -v psql >/dev/null || die "psql not found (scripts/bootstrap.sh installs PostgreSQL)"
pg_answers "$url" || die "database does not answer: $(url_host "$url") (check DATABASE_URL)"

psql "$url" -qX -v ON_ERROR_STOP=1 <<'SQL'
SET client_min_messages = warning;
CREATE TABLE IF NOT EXISTS public.edge_sync_schema_migrations (
    version    text PRIMARY KEY,
    name       text NOT NULL,
    sha256     text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
SQL

applied=0
for file in "$ROOT"/supabase/migrations/*.sql; do
  base="$(basename "$file" .sql)"
  version="${base%%_*}"
  name="${base#*_}"
  sum="$(sha256sum "$file" | cut -d' ' -f1)"
  recorded="$(psql "$url" -qtAX -v v="$version" <<'SQL'
SELECT sha256 FROM public.edge_sync_schema_migrations WHERE version = :'v';
SQL
)"
  if [ -n "$recorded" ]; then
    [ "$recorded" = "$sum" ] || die "migration $base was applied with different contents; add a new migration instead of editing it"
    continue
  fi
  # One transaction: the advisory lock serialises concurrent runs, and the bookkeeping row
  # (primary key on version) makes a racing second run fail and roll back instead of
  # applying twice.
  psql "$url" -qX -1 -v ON_ERROR_STOP=1 -v v="$version" -v n="$name" -v s="$sum" \
    -c 'SET client_min_messages = warning' -c 'SELECT pg_advisory_xact_lock(727274)' \
    -f "$file" \
    -f - <<'SQL' >/dev/null
INSERT INTO public.edge_sync_schema_migrations (version, name, sha256) VALUES (:'v', :'n', :'s');
SQL
  echo "applied migration $base"
  applied=$((applied + 1))
done
echo "migrations up to date ($applied applied now)"

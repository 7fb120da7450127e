#!/usr/bin/env bash
# The demo (see README.md): build and install the extension, start a throwaway cluster,
# load a 1M-row data set, apply examples/migrations/*.sql in order as a migration tool
# would (each file through psql, stopping at its first error), print each verdict and the
# audit table, stop the cluster.
# Environment: PG_MAJOR (15, 17 or 18; default 15), PGMG_DEMO_PORT (default 55432),
# PGMG_DEMO_DIR (default /tmp/pgmg-demo).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh

./scripts/setup.sh
[ -x "$PG_CONFIG" ] || { echo "demo: PostgreSQL $PG_MAJOR is not set up (see setup's WARNING above)" >&2; exit 1; }
echo "== building and installing pg_migration_guard (release) for PostgreSQL $PG_MAJOR"
install_extension

DEMO=${PGMG_DEMO_DIR:-/tmp/pgmg-demo}
PORT=${PGMG_DEMO_PORT:-55432}
trap 'stop_cluster "$DEMO"' EXIT
echo "== starting a throwaway cluster on port $PORT (shared_preload_libraries = pg_migration_guard)"
start_cluster "$DEMO" "$PORT" pg_migration_guard
PSQL=(psql -X -q -h /tmp -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1)

echo "== loading the data set: 100k customers, 1M orders"
start=$(date +%s)
"${PSQL[@]}" -f examples/seed.sql >/dev/null
"${PSQL[@]}" -c 'CREATE EXTENSION pg_migration_guard' >/dev/null
"${PSQL[@]}" -At -c "SELECT format('   shop_order: %s rows, %s', count(*), pg_size_pretty(pg_table_size('shop_order'))) FROM shop_order"
echo "   loaded in $(( $(date +%s) - start )) s"

echo "== applying examples/migrations (mode = enforce)"
for f in examples/migrations/*.sql; do
  name=$(basename "$f")
  if out=$(PGAPPNAME=demo-migrate "${PSQL[@]}" -f "$f" 2>&1); then
    printf '\n  \033[32mAPPLIED \033[0m %s\n' "$name"
    [ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/      /'
  else
    printf '\n  \033[31mREJECTED\033[0m %s\n' "$name"
    printf '%s\n' "$out" | sed -e 's/^psql:[^ ]* //' -e 's/^/      /'
  fi
done

echo
echo "== pg_migration_guard.audit (rows of rejected migrations too; the writer inserts within about 0.1 s)"
sleep 0.5
"${PSQL[@]}" -P pager=off -c "SELECT decision, command_tag, rules, transaction_status, duration, rewrote_table,
       left(regexp_replace(statement, '\s+', ' ', 'g'), 60) AS statement
  FROM pg_migration_guard.audit WHERE application_name = 'demo-migrate' ORDER BY id"

echo "== rejections in the server log ($DEMO/server.log)"
grep -h 'LOG:  pg_migration_guard: rejected' "$DEMO/server.log" | sed -e 's/^.*LOG: */   /' | cut -c1-150 || true
echo "== stopping the cluster"

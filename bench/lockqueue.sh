#!/usr/bin/env bash
# Lock-queue benchmark. Not part of the test command: run by hand, ~1 minute.
#   ./bench/lockqueue.sh        # READER_SECONDS=6 CLIENTS=4 by default
#
# The incident: a report holds ACCESS SHARE on the 1M-row shop_order for READER_SECONDS; a
# migration (ALTER TABLE ... ADD COLUMN, no lock_timeout) arrives half a second later and
# needs ACCESS EXCLUSIVE; CLIENTS application connections keep doing point reads by primary
# key (pgbench, latency of every read logged). Printed per run: the application's worst
# and 99th-percentile read latency while the scenario ran, and the migration's outcome.
#   guard off    pg_migration_guard.mode = off (as if the guard were not installed)
#   guard on     defaults: lock_timeout_policy = auto, lock_attempt_timeout = 50ms,
#                lock_retry_budget = 10s
#   guard on, reader outlives the budget: the reader holds 2 s longer than the budget
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
READER_SECONDS=${READER_SECONDS:-6}
CLIENTS=${CLIENTS:-4}
PORT=55444
W=/tmp/pgmg-bench-lockqueue

./scripts/setup.sh
install_extension
install -d "$W"
trap 'stop_cluster "$W/c"' EXIT
start_cluster "$W/c" "$PORT" 'pg_migration_guard'
P() { psql -X -q -At -h /tmp -p "$PORT" -U postgres -d postgres "$@"; }
P -f examples/seed.sql >/dev/null
P -c 'CREATE EXTENSION pg_migration_guard'
P -c 'VACUUM ANALYZE shop_order' >/dev/null
printf '%s\n' '\set id random(1, 1000000)' 'SELECT id FROM shop_order WHERE id = :id;' >"$W/point.sql"
chmod -R a+rwx "$W"

run() { # label, reader seconds, migration GUC settings
  local label=$1 hold=$2 settings=$3
  P -c "SET pg_migration_guard.mode = off" -c "SET client_min_messages = warning" -c "ALTER TABLE shop_order DROP COLUMN IF EXISTS bench_note" >/dev/null
  rm -f "$W"/lat*
  local total=$((hold + 3))
  (cd "$W" && pgbench -n -c "$CLIENTS" -j 2 -T "$total" -f point.sql -l --log-prefix=lat \
     -h /tmp -p "$PORT" -U postgres postgres >/dev/null 2>&1) &
  local app=$!
  sleep 1
  P -c "SET application_name = 'report'" -c "BEGIN" -c "SELECT count(*) FROM shop_order" \
    -c "SELECT pg_sleep($hold)" -c "COMMIT" >/dev/null &
  local reader=$!
  sleep 0.5
  local t0 t1 outcome
  t0=$(date +%s.%N)
  if out=$(P -c "$settings" -c "ALTER TABLE shop_order ADD COLUMN bench_note text" 2>&1); then
    outcome="completed"
  else
    outcome="failed: $(echo "$out" | grep -o 'ERROR: .*' | head -1 | cut -c1-60)..."
  fi
  t1=$(date +%s.%N)
  wait "$reader" "$app" || true
  # pgbench -l: the third field of each line is the transaction's latency in microseconds.
  local stats
  stats=$(cat "$W"/lat* | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {printf "%d %.1f %.1f", NR, a[int(NR*0.99)]/1000, a[NR]/1000}')
  read -r n p99 worst <<<"$stats"
  printf '| %-42s | %6d | %8s ms | %9s ms | %-6.1f s after start: %s |\n' \
    "$label" "$n" "$p99" "$worst" "$(echo "$t1 - $t0" | bc)" "$outcome"
}

echo "pg_migration_guard lock-queue benchmark — $(date -u +%F), $(nproc) cores, $(P -c 'SHOW server_version')"
echo "reader holds ACCESS SHARE for ${READER_SECONDS}s; ${CLIENTS} clients of point reads; migration: ALTER TABLE shop_order ADD COLUMN bench_note text"
echo
echo "| run                                        |  reads | p99 read    | worst read   | migration |"
echo "|---|---|---|---|---|"
run "guard off (mode = off)" "$READER_SECONDS" "SET pg_migration_guard.mode = off"
run "guard on (defaults)" "$READER_SECONDS" "SELECT 1"
run "guard on, reader outlives the 10 s budget" 12 "SELECT 1"

#!/usr/bin/env bash
# Lock-queue benchmark. Not part of the test command: run by hand, ~2.5 minutes after the build.
#   ./bench/lockqueue.sh                      # builds and installs the extension first
#   INSTALL=0 GUARD_LIB_DIR=/dir/of/the/library PORT=55511 BENCH_DIR=/tmp/somewhere ./bench/lockqueue.sh
#
# The incident: a report holds ACCESS SHARE on the 1M-row shop_order for S seconds; 0.5 s
# after it starts, a migration (ALTER TABLE shop_order ADD COLUMN bench_note text, no
# lock_timeout) arrives and needs ACCESS EXCLUSIVE. Meanwhile CLIENTS application
# connections each read one row by primary key, wait 20 ms, and read again (a closed loop,
# from 1 s before the report starts to 2.5 s after it ends); psql's \timing measures every
# read. Runs, with S = SHORT and S = LONG:
#   no migration        the reads and the report alone: what the machine adds by itself
#   guard off           pg_migration_guard.mode = off (as if the guard were not installed)
#   guard on            defaults (lock_timeout_policy = auto, lock_attempt_timeout = 50ms,
#                       lock_retry_budget = 10s); with S = LONG the budget is LONG_BUDGET
#   guard on, the report outlives the budget (defaults, S = 12)
# Printed per run: reads, reads that took more than 10 ms, those of them that waited more
# than 10 ms for a lock (log_lock_waits of the clients' sessions), the worst read, the
# longest of those lock waits (as the server log gives it), the migration's
# attempts in the lock queue (from the guard's DEBUG1 report, or the DETAIL of its 55P03;
# builds before the DEBUG1 report give it for a 55P03 only),
# and how long after the report's commit the migration committed (both commit timestamps,
# track_commit_timestamp = on).
#
# Settings: SHORT (6), LONG (30), LONG_BUDGET (60s), CLIENTS (4), PORT (55444),
# BENCH_DIR (/tmp/pgmg-bench-lockqueue). INSTALL=0 skips scripts/setup.sh and the build:
# GUARD_LIB_DIR must then hold the pg_migration_guard.so to load, and the server's SHAREDIR
# the extension's SQL files (CREATE EXTENSION reads them; nothing is written there).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
SHORT=${SHORT:-6}
LONG=${LONG:-30}
LONG_BUDGET=${LONG_BUDGET:-60s}
CLIENTS=${CLIENTS:-4}
PORT=${PORT:-55444}
W=${BENCH_DIR:-/tmp/pgmg-bench-lockqueue}

if [ "${INSTALL:-1}" = 1 ]; then
  ./scripts/setup.sh
  install_extension
else
  [ -r "${GUARD_LIB_DIR:-}/pg_migration_guard.so" ] || { echo "INSTALL=0: set GUARD_LIB_DIR to the directory of pg_migration_guard.so" >&2; exit 1; }
fi
install -d "$W"
trap 'stop_cluster "$W/c"' EXIT
start_cluster "$W/c" "$PORT" 'pg_migration_guard'
P() { psql -X -q -At -h /tmp -p "$PORT" -U postgres -d postgres "$@"; }
# Commit timestamps (a restart setting): stop, and start again with the same options.
P -c "ALTER SYSTEM SET track_commit_timestamp = on"
as_pg "${PG_BIN}/pg_ctl" -D "$W/c/data" -w -m fast stop >/dev/null
as_pg "${PG_BIN}/pg_ctl" -D "$W/c/data" -w -l "$W/c/server.log" \
  -o "-p $PORT -k /tmp -c listen_addresses='127.0.0.1' -c shared_preload_libraries='pg_migration_guard' -c fsync=off -c dynamic_library_path='${GUARD_LIB_DIR}:\$libdir'" \
  start >/dev/null
P -f examples/seed.sql >/dev/null
P -c 'CREATE EXTENSION pg_migration_guard' -c 'CREATE EXTENSION pg_prewarm'
P -c 'VACUUM ANALYZE shop_order' -c "SELECT pg_prewarm('shop_order'), pg_prewarm('shop_order_pkey')" >/dev/null
chmod -R a+rwx "$W"

# client INDEX MILLISECONDS: the closed loop of point reads; one line per read in
# $W/lat.INDEX: its latency (ms) and when it was sent (Unix time, µs). The first read of
# the connection (catalog caches) is not counted.
client() {
  local i=$1 end line ms sent first=1
  end=$(( ${EPOCHREALTIME/./} + $2 * 1000 ))
  rm -f "$W/nap.$i" "$W/lat.$i"
  mkfifo "$W/nap.$i"
  exec 9<>"$W/nap.$i" # nothing is ever written: `read -t` on it is a sleep without a fork
  # log_lock_waits with deadlock_timeout = 10ms, for these sessions only: each read that
  # waits more than 10 ms for a lock leaves "still waiting" and "acquired ... after" lines in
  # the server log, which tell the reads held up by a lock from those the machine delayed.
  coproc PSQL { PGOPTIONS='-c log_lock_waits=on -c deadlock_timeout=10ms' psql -X -q -At -h /tmp -p "$PORT" -U postgres -d postgres 2>&1; }
  echo '\timing on' >&"${PSQL[1]}"
  while (( ${EPOCHREALTIME/./} < end )); do
    sent=${EPOCHREALTIME/./}
    echo "SELECT id FROM shop_order WHERE id = $(( (RANDOM << 15 | RANDOM) % 1000000 + 1 ));" >&"${PSQL[1]}"
    while IFS= read -r -t 60 line <&"${PSQL[0]}"; do
      if [[ $line == Time:* ]]; then
        ms=${line#Time: }
        [ "$first" = 1 ] || echo "${ms%% ms*} $sent" >>"$W/lat.$i"
        first=0
        break
      fi
    done
    read -r -t 0.02 -u 9 || true
  done
  exec {PSQL[1]}>&-
  wait "$PSQL_PID" 2>/dev/null || true
}

# run LABEL READER_SECONDS MIGRATION_SETTINGS (empty: no migration)
run() {
  local label=$1 hold=$2 settings=$3 pids=() i rxid out outcome attempts after stats
  P -c "SET pg_migration_guard.mode = off" -c "SET client_min_messages = warning" -c "ALTER TABLE shop_order DROP COLUMN IF EXISTS bench_note"
  rm -f "$W"/lat.* "$W/times" "$W/migration.out"
  local log_from lock_waits longest_lock_wait
  log_from=$(stat -c %s "$W/c/server.log")
  for ((i = 0; i < CLIENTS; i++)); do
    client "$i" $((hold * 1000 + 3500)) &
    pids+=($!)
  done
  sleep 1
  P -c "SET application_name = 'report'" -c "BEGIN" -c "SELECT count(*) FROM shop_order" \
    -c "SELECT pg_current_xact_id()" -c "SELECT pg_sleep($hold)" -c "COMMIT" >"$W/reader.out" &
  local reader=$!
  sleep 0.5
  outcome="-" attempts="-" after="-"
  if [ -n "$settings" ]; then
    echo "migration sent ${EPOCHREALTIME/./}" >"$W/times"
    if out=$(P -c "$settings" -c "SET client_min_messages = debug1" -c "ALTER TABLE shop_order ADD COLUMN bench_note text" 2>&1); then
      outcome="completed"
    else
      outcome="failed: $(echo "$out" | grep -o 'ERROR: .*' | head -1 | cut -c9-60)..."
    fi
    attempts=$(echo "$out" | sed -n -e 's/.*took the locks of this ALTER TABLE after \([0-9]*\) attempt.*/\1/p' \
      -e 's/.*ALTER TABLE waited \([0-9]*\) times\{0,1\} \(in the lock queue \)\{0,1\}for .*/\1/p' | head -1)
    attempts=${attempts:--}
    echo "migration returned ${EPOCHREALTIME/./}" >>"$W/times"
    echo "$out" >"$W/migration.out"
  fi
  wait "$reader"
  for p in "${pids[@]}"; do wait "$p"; done
  rxid=$(sed -n 2p "$W/reader.out")
  P -c "SELECT 'report committed ' || (extract(epoch FROM pg_xact_commit_timestamp('$rxid'::xid)) * 1e6)::int8" >>"$W/times"
  if [ "$outcome" = completed ]; then
    after=$(P -c "SELECT round((extract(epoch FROM pg_xact_commit_timestamp(xmin) - pg_xact_commit_timestamp('$rxid'::xid)) * 1000)::numeric, 1)
                  FROM pg_attribute WHERE attrelid = 'shop_order'::regclass AND attname = 'bench_note'")" ms"
  fi
  stats=$(cat "$W"/lat.* | awk '{n++; if ($1 > 10) d++; if ($1 > w) w = $1} END {printf "%d %d %.1f", n, d, w}')
  read -r n delayed worst <<<"$stats"
  tail -c +$((log_from + 1)) "$W/c/server.log" >"$W/server.log.run"
  lock_waits=$(grep -c 'acquired AccessShareLock on relation' "$W/server.log.run" || true)
  longest_lock_wait=$(sed -n 's/.*acquired AccessShareLock on relation .* after \([0-9.]*\) ms.*/\1/p' "$W/server.log.run" |
    sort -n | tail -1)
  # Every run's raw data stays in $W/runs/N/ (reads, report, migration output, times).
  RUN_NO=$((${RUN_NO:-0} + 1))
  rm -rf "$W/runs/$RUN_NO" && mkdir -p "$W/runs/$RUN_NO"
  cp "$W"/lat.* "$W/reader.out" "$W/server.log.run" "$W/runs/$RUN_NO/" && { cp "$W/times" "$W/migration.out" "$W/runs/$RUN_NO/" 2>/dev/null || true; }
  printf '| %-44s | %5d | %4d | %4d | %8s ms | %10s | %8s | %9s | %s |\n' "$label" "$n" "$delayed" "$lock_waits" "$worst" \
    "${longest_lock_wait:+$longest_lock_wait ms}" "$attempts" "$after" "$outcome"
}

sum=$(sha256sum "$GUARD_LIB_DIR/pg_migration_guard.so" | cut -c1-12)
echo "pg_migration_guard lock-queue benchmark — $(date -u '+%F %H:%MZ'), $(nproc) cores, PostgreSQL $(P -c 'SHOW server_version'), library sha256 $sum..."
echo "report holds ACCESS SHARE on shop_order; ${CLIENTS} clients: point read, 20 ms pause, again; migration: ALTER TABLE shop_order ADD COLUMN bench_note text"
echo
echo "| run | reads | > 10 ms | waited > 10 ms for a lock | worst read | longest lock wait | attempts | migration committed after the report | migration |"
echo "|---|---|---|---|---|---|---|---|---|"
run "no migration, ${SHORT} s report" "$SHORT" ""
run "guard off, ${SHORT} s report" "$SHORT" "SET pg_migration_guard.mode = off"
run "guard on, ${SHORT} s report" "$SHORT" "SELECT 1"
run "guard off, ${LONG} s report" "$LONG" "SET pg_migration_guard.mode = off"
run "guard on, ${LONG} s report, budget ${LONG_BUDGET}" "$LONG" "SET pg_migration_guard.lock_retry_budget = '${LONG_BUDGET}'"
run "guard on, 12 s report outlives the 10 s budget" 12 "SELECT 1"

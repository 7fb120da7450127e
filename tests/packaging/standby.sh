#!/usr/bin/env bash
# The guard on a physical hot standby: a primary preloading the guard, a standby made with
# pg_basebackup -R (streaming), preloading it too.
#  - the standby starts no audit launcher or writer (they start when recovery finishes) and
#    logs no audit error and no worker restart;
#  - audit rows written on the primary arrive on the standby by replication;
#  - pg_migration_guard.lock_targets(), judge_timing() and audit_queue_status() work there;
#  - DDL sent to the standby fails with PostgreSQL's own read-only error (ALTER SYSTEM runs);
#    the guard logs its decision there and queues no record (no writer can write it);
#  - after promotion the audit launcher starts and the new primary's DDL is audited.
#
# Usage: tests/packaging/standby.sh   (installs the extension with install_extension)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/common.sh
source tests/packaging/lib.sh

PDIR=$PKG_WORK/primary
SDIR=$PKG_WORK/standby
PPORT=$((PKG_PORT_BASE + 6))
SPORT=$((PKG_PORT_BASE + 7))
SHAREDIR_EXT=$("$PG_CONFIG" --sharedir)/extension
VERSION=$(sed -n '/^\[package\]/,/^\[/{s/^version *= *"\([^"]*\)".*/\1/p}' Cargo.toml | head -1)
for f in pg_migration_guard.control "pg_migration_guard--$VERSION.sql" $(cd sql && ls pg_migration_guard--*--*.sql); do
  save_shared "$SHAREDIR_EXT/$f"
done
cleanup() { cluster_stop "$SDIR"; cluster_stop "$PDIR"; restore_shared; }
trap cleanup EXIT
install_extension
GUARD=("shared_preload_libraries = 'pg_migration_guard'" "dynamic_library_path = '$GUARD_LIB_DIR:\$libdir'")
count() { q "$1" postgres "SELECT count(*) FROM pg_migration_guard.audit_log"; }

step "primary"
cluster_init "$PDIR" "$PG_BIN"
cluster_start "$PDIR" "$PPORT" "${GUARD[@]}" "wal_level = replica" "hot_standby = on"
q "$PPORT" postgres "CREATE EXTENSION pg_migration_guard" \
  "CREATE TABLE big (id integer PRIMARY KEY, payload text)" \
  "INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 50000) g" "ANALYZE big"
expect_error "$PPORT" postgres "CREATE INDEX big_payload_idx ON big (payload)" require-concurrent-index-creation >/dev/null
wait_audit "$PPORT" postgres "decision = 'rejected'" 1 >/dev/null
ok "primary: $(count "$PPORT") audit rows"

step "standby: pg_basebackup -R -X stream, hot_standby, preloading the guard"
cluster_stop "$SDIR" "$PG_BIN"; rm -rf "$SDIR"; install -d -o postgres "$SDIR"
echo "$PG_BIN" >"$SDIR/bindir"
as_pg "$PG_BIN/pg_basebackup" -h /tmp -p "$PPORT" -U postgres -D "$SDIR/data" -R -X stream -c fast
cluster_start "$SDIR" "$SPORT" "${GUARD[@]}" "hot_standby = on"
expect_eq "standby in recovery" "$(q "$SPORT" postgres "SELECT pg_is_in_recovery()")" "t"
for i in $(seq 1 100); do
  [ "$(q "$PPORT" postgres "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")" = 1 ] && break; sleep 0.1
done
expect_eq "streaming" "$(q "$PPORT" postgres "SELECT state FROM pg_stat_replication")" "streaming"

step "DDL on the primary, rows arrive on the standby"
before=$(count "$PPORT")
q "$PPORT" postgres "ALTER TABLE big ADD COLUMN note text" "CREATE INDEX CONCURRENTLY big_payload_idx ON big (payload)"
expect_error "$PPORT" postgres "ALTER TABLE big ALTER COLUMN id TYPE bigint" changing-column-type >/dev/null
want=$(wait_audit "$PPORT" postgres "true" $((before + 3)))
for i in $(seq 1 150); do [ "$(count "$SPORT")" -ge "$want" ] && break; sleep 0.1; done
expect_eq "audit rows on the standby = on the primary" "$(count "$SPORT")" "$want"
expect_eq "the same rows" \
  "$(q "$SPORT" postgres "SELECT md5(string_agg(row_to_json(l)::text, E'\n' ORDER BY id)) FROM pg_migration_guard.audit_log l")" \
  "$(q "$PPORT" postgres "SELECT md5(string_agg(row_to_json(l)::text, E'\n' ORDER BY id)) FROM pg_migration_guard.audit_log l")"

step "the guard's functions on the standby"
expect_eq "lock_targets()" \
  "$(q "$SPORT" postgres "SELECT string_agg(relation || ' ' || mode || ' ' || blocks_reads_or_writes, ', ') FROM pg_migration_guard.lock_targets('ALTER TABLE big ADD COLUMN x integer')")" \
  "public.big ACCESS EXCLUSIVE true"
expect_eq "judge_timing()" "$(q "$SPORT" postgres "SELECT decision || ' ' || array_to_string(rules, ',') FROM pg_migration_guard.judge_timing('CREATE INDEX ON big (note)', 3)")" \
  "rejected require-concurrent-index-creation"
expect_eq "audit_queue_status(): nothing pending or dropped, no writer" \
  "$(q "$SPORT" postgres "SELECT pending_records || ' ' || dropped_records || ' ' || cardinality(writers) FROM pg_migration_guard.audit_queue_status()")" "0 0 0"
expect_eq "no audit launcher or writer on the standby" \
  "$(q "$SPORT" postgres "SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'pg_migration_guard%'")" "0"
ok "DDL on the standby: $(expect_error "$SPORT" postgres "CREATE TABLE t_on_standby (id integer)" "cannot execute CREATE TABLE in a read-only transaction")"
q "$SPORT" postgres "ALTER SYSTEM SET work_mem = '8MB'" "ALTER SYSTEM RESET work_mem"
grep -q 'pg_migration_guard: allowed ALTER SYSTEM; statement: ALTER SYSTEM RESET work_mem' "$SDIR/server.log" || fail "no LOG line for ALTER SYSTEM on the standby"
expect_eq "DDL on the standby (read-only error; ALTER SYSTEM runs): LOG lines only, nothing queued" \
  "$(q "$SPORT" postgres "SELECT pending_records || ' ' || dropped_records FROM pg_migration_guard.audit_queue_status()")" "0 0"

step "a while later: no audit error or worker restart in the standby's log"
sleep 3
before=$(count "$PPORT")
q "$PPORT" postgres "ALTER TABLE big ADD COLUMN note2 text"
want=$(wait_audit "$PPORT" postgres "true" $((before + 1)))
for i in $(seq 1 150); do [ "$(count "$SPORT")" -ge "$want" ] && break; sleep 0.1; done
expect_eq "rows keep arriving" "$(count "$SPORT")" "$want"
if grep -E 'pg_migration_guard audit|audit writer|audit launcher|background worker .* exited|PANIC|FATAL|could not judge' "$SDIR/server.log" \
     | grep -v 'the database system is starting up'; then
  fail "the standby's log has audit worker lines or errors (above)"
fi
ok "standby log: no audit launcher/writer line, no worker exit, no FATAL/PANIC"

step "promotion: the launcher starts, DDL is audited on the new primary"
as_pg "$PG_BIN/pg_ctl" -D "$SDIR/data" -w promote >/dev/null
expect_eq "promoted" "$(q "$SPORT" postgres "SELECT pg_is_in_recovery()")" "f"
before=$(count "$SPORT")
expect_error "$SPORT" postgres "CREATE INDEX big_note_idx ON big (note)" require-concurrent-index-creation >/dev/null
wait_audit "$SPORT" postgres "true" $((before + 1)) >/dev/null
ok "the promoted server audits its DDL ($(count "$SPORT") rows)"
grep -E 'PANIC|terminated by signal|could not judge' "$SDIR/server.log" "$PDIR/server.log" && fail "server logs"
echo "standby: passed"

#!/usr/bin/env bash
# The guard beside the tools DBAs run, each on a cluster preloading it (the system's server
# programs, /usr/lib/postgresql/15/bin, so that the Debian packages' libraries are in
# $libdir; the guard from install_extension's private copy, first in dynamic_library_path):
#
#  1. pg_repack (postgresql-15-repack) of the 1M-row shop_order (examples/seed.sql) while
#     rows are inserted: without an exemption the guard rejects pg_repack's CREATE UNIQUE
#     INDEX on its own copy table (repack.table_<oid>, filled in an earlier transaction of
#     the same session) and pg_repack stops and cleans up; with pg_repack run by a role
#     exempted through pg_migration_guard.exempt_roles (docs/operations.md), it completes
#     and every statement it sent is audited as `exempt`.
#  2. pg_partman (postgresql-15-partman): create_parent, run_maintenance() and the
#     pg_partman_bgw background worker create and attach partitions; each statement is
#     judged (allowed) and audited, none is rejected.
#  3. pg_cron (postgresql-15-cron): jobs scheduled by a non-superuser run DDL; the guard
#     judges it under the job's role (rejected CREATE INDEX, allowed ALTER TABLE), audit rows
#     name that role, cron.job_run_details has the guard's ERROR.
#  4. pgaudit (postgresql-15-pgaudit, pgaudit.log = 'ddl'), preloaded before and after the
#     guard: every DDL statement that runs has both a pgaudit AUDIT line and a guard LOG line
#     and audit row; a rejected statement never runs, so only the guard logs it (pgaudit
#     logs a statement when it completes, as for any statement that fails).
#  5. auto_explain and pg_stat_statements (contrib, track = all, nested statements logged):
#     the same workload (tests/packaging/workload.sql) run by the same role gives the same
#     pg_stat_statements entries and the same auto_explain plans with and without the guard.
#
# Usage: tests/packaging/tools.sh [repack] [partman] [cron] [pgaudit] [stats]   (default: all)
# Installs the Debian packages it needs (idempotent).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
source scripts/common.sh
source tests/packaging/lib.sh

want() { [ "$#" -eq 0 ] && return 0; local w; for w in "${PARTS[@]}"; do [ "$w" = "$1" ] && return 0; done; return 1; }
PARTS=("$@"); [ "${#PARTS[@]}" -gt 0 ] || PARTS=(repack partman cron pgaudit stats)

apt_install "postgresql-$PG_MAJOR-repack" "postgresql-$PG_MAJOR-partman" "postgresql-$PG_MAJOR-cron" "postgresql-$PG_MAJOR-pgaudit"
SHAREDIR_EXT=$("$PG_CONFIG" --sharedir)/extension
VERSION=$(sed -n '/^\[package\]/,/^\[/{s/^version *= *"\([^"]*\)".*/\1/p}' Cargo.toml | head -1)
for f in pg_migration_guard.control "pg_migration_guard--$VERSION.sql" $(cd sql && ls pg_migration_guard--*--*.sql); do
  save_shared "$SHAREDIR_EXT/$f"
done
install_extension
GUARD_PATH="dynamic_library_path = '$GUARD_LIB_DIR:\$libdir'"
DIR=$PKG_WORK/tools
PDIR=$PKG_WORK/pgaudit
SDIR=$PKG_WORK/stats
PORT=$((PKG_PORT_BASE + 3))
PPORT=$((PKG_PORT_BASE + 4))
SPORT=$((PKG_PORT_BASE + 5))
cleanup() {
  [ -n "${writer_pid:-}" ] && kill "$writer_pid" 2>/dev/null
  cluster_stop "$DIR"; cluster_stop "$PDIR"; cluster_stop "$SDIR"; restore_shared
}
trap cleanup EXIT
psql_as() { local role=$1 port=$2 db=$3; shift 3; "$PSQL_BIN" -X -q -At -v ON_ERROR_STOP=1 -h /tmp -p "$port" -U "$role" -d "$db" "$@"; }

if want repack || want partman || want cron; then
  step "a cluster preloading pg_cron, pg_partman_bgw, pg_migration_guard"
  cluster_init "$DIR" "$SYSTEM_PG_BIN"
  # pg_partman_bgw starts its first maintenance run at server start, as its role: the role
  # must exist by then (else the worker exits and comes back only after its restart delay).
  cluster_start "$DIR" "$PORT" "$GUARD_PATH"
  q "$PORT" postgres "CREATE ROLE partman_maint LOGIN"
  cluster_restart "$DIR" "$PORT" "shared_preload_libraries = 'pg_cron,pg_partman_bgw,pg_migration_guard'" "$GUARD_PATH" \
    "cron.database_name = 'postgres'" "cron.host = '/tmp'" \
    "pg_partman_bgw.dbname = 'postgres'" "pg_partman_bgw.role = 'partman_maint'" "pg_partman_bgw.interval = 2"
  q "$PORT" postgres "CREATE EXTENSION pg_migration_guard"
fi

# --- pg_cron first: its jobs run at the next minute, while the others run ---------------
if want cron; then
  step "3. pg_cron: jobs of a non-superuser run DDL (checked below, after the next minute)"
  q "$PORT" postgres "CREATE EXTENSION pg_cron" "CREATE ROLE app_owner LOGIN" "GRANT USAGE ON SCHEMA cron TO app_owner" \
    "CREATE TABLE cron_target (id integer, payload text)" \
    "INSERT INTO cron_target SELECT g, md5(g::text) FROM generate_series(1, 50000) g" "ANALYZE cron_target" \
    "ALTER TABLE cron_target OWNER TO app_owner"
  psql_as app_owner "$PORT" postgres \
    -c "SELECT cron.schedule('guarded-index', '* * * * *', 'CREATE INDEX cron_target_payload_idx ON cron_target (payload)')" \
    -c "SELECT cron.schedule('guarded-column', '* * * * *', 'ALTER TABLE cron_target ADD COLUMN IF NOT EXISTS note text')" >/dev/null
  ok "scheduled at $(date -u +%T): CREATE INDEX (to be rejected) and ALTER TABLE ADD COLUMN (allowed), as app_owner"
fi

if want repack; then
  step "1. pg_repack"
  q "$PORT" postgres "CREATE EXTENSION pg_repack" \
    "CREATE TABLE repack_probe (id integer PRIMARY KEY, payload text)" \
    "INSERT INTO repack_probe SELECT g, md5(g::text) FROM generate_series(1, 50000) g" "ANALYZE repack_probe"
  start=$(date +%s)
  "$PSQL_BIN" -X -q -v ON_ERROR_STOP=1 -h /tmp -p "$PORT" -U postgres -d postgres -f examples/seed.sql >/dev/null
  ok "seed: $(q "$PORT" postgres "SELECT count(*) || ' rows, ' || pg_size_pretty(pg_table_size('shop_order')) FROM shop_order") in shop_order ($(( $(date +%s) - start )) s)"

  # Without an exemption: the guard stops pg_repack's index build on its copy table.
  if out=$("$SYSTEM_PG_BIN/pg_repack" -h /tmp -p "$PORT" -U postgres -d postgres --table=public.repack_probe 2>&1); then
    fail "pg_repack without an exemption succeeded; the guard was expected to reject its CREATE INDEX"
  fi
  grep -Eq 'require-concurrent-index-creation: CREATE INDEX would block writes to repack\.table_[0-9]+' <<<"$out" \
    || fail "pg_repack failed otherwise: $out"
  expect_eq "without an exemption pg_repack stops at CREATE UNIQUE INDEX on repack.table_<oid>, and cleans up" \
    "$(q "$PORT" postgres "SELECT count(*) FROM pg_class WHERE relnamespace = 'repack'::regnamespace AND relkind = 'r'")|$(q "$PORT" postgres "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'repack_probe'::regclass")" "0|0"

  # The exemption: a NOLOGIN group role listed in exempt_roles, granted by a superuser to
  # the role pg_repack logs in as.
  q "$PORT" postgres "CREATE ROLE guard_maintenance NOLOGIN" "CREATE ROLE repack_runner LOGIN SUPERUSER" \
    "GRANT guard_maintenance TO repack_runner" \
    "ALTER SYSTEM SET pg_migration_guard.exempt_roles = 'guard_maintenance'" "SELECT pg_reload_conf()" >/dev/null
  sleep 1
  expect_eq "exempt_roles after reload" "$(q "$PORT" postgres "SHOW pg_migration_guard.exempt_roles")" "guard_maintenance"
  read -r filenode_before rows_before < <(q "$PORT" postgres "SELECT pg_relation_filenode('shop_order'), count(*) FROM shop_order" | tr '|' ' ')
  indexes_before=$(q "$PORT" postgres "SELECT string_agg(indexrelid::regclass::text, ',' ORDER BY indexrelid::regclass::text) FROM pg_index WHERE indrelid = 'shop_order'::regclass")
  # The application keeps writing while pg_repack runs (its trigger logs the changes); the
  # writer stops between two inserts when told to, so that its count is exact.
  rm -f "$DIR/inserted" "$DIR/stop-writer"
  (
    set +e
    while [ ! -e "$DIR/stop-writer" ]; do
      "$PSQL_BIN" -X -q -h /tmp -p "$PORT" -U postgres -d postgres -c \
        "INSERT INTO shop_order (customer_id, status, quantity, total, placed_at) VALUES (1, 'new', 1, 9.99, now())" >/dev/null 2>&1 \
        && echo x >>"$DIR/inserted"
      sleep 0.05
    done
  ) & writer_pid=$!
  start=$(date +%s)
  "$SYSTEM_PG_BIN/pg_repack" -h /tmp -p "$PORT" -U repack_runner -d postgres --table=public.shop_order >"$DIR/pg_repack.log" 2>&1 \
    || { cat "$DIR/pg_repack.log" >&2; fail "pg_repack by an exempt role"; }
  touch "$DIR/stop-writer"; wait "$writer_pid"; writer_pid=
  inserted=$(wc -l <"$DIR/inserted" 2>/dev/null || echo 0)
  ok "pg_repack --table=public.shop_order as repack_runner completed in $(( $(date +%s) - start )) s, $inserted rows inserted meanwhile"
  read -r filenode_after rows_after < <(q "$PORT" postgres "SELECT pg_relation_filenode('shop_order'), count(*) FROM shop_order" | tr '|' ' ')
  [ "$filenode_after" != "$filenode_before" ] || fail "shop_order was not rewritten (filenode $filenode_after)"
  expect_eq "rows after repack (before + inserted meanwhile)" "$rows_after" "$((rows_before + inserted))"
  expect_eq "indexes after repack (same, all valid)" \
    "$(q "$PORT" postgres "SELECT string_agg(indexrelid::regclass::text, ',' ORDER BY indexrelid::regclass::text) FROM pg_index WHERE indrelid = 'shop_order'::regclass AND indisvalid")" "$indexes_before"
  wait_audit "$PORT" postgres "session_role = 'repack_runner' AND statement LIKE 'DROP TABLE IF EXISTS repack.table_%'" 1 >/dev/null
  expect_eq "pg_repack's statements audited as exempt (by statement kind)" \
    "$(q "$PORT" postgres "SELECT string_agg(DISTINCT decision || ' ' || command_tag, ', ') FROM pg_migration_guard.audit_log WHERE session_role = 'repack_runner'")" \
    "exempt ALTER TABLE, exempt CREATE INDEX, exempt CREATE TABLE, exempt CREATE TABLE AS, exempt CREATE TRIGGER, exempt CREATE TYPE, exempt DROP TABLE, exempt DROP TRIGGER, exempt DROP TYPE"
  ok "e.g. $(q "$PORT" postgres "SELECT decision || ': ' || statement || ' -- ' || message FROM pg_migration_guard.audit_log WHERE session_role = 'repack_runner' AND command_tag = 'CREATE INDEX' ORDER BY id LIMIT 1")"
fi

if want partman; then
  step "2. pg_partman: create_parent, run_maintenance(), pg_partman_bgw"
  q "$PORT" postgres "CREATE SCHEMA partman" "CREATE EXTENSION pg_partman SCHEMA partman" \
    "GRANT ALL ON SCHEMA partman TO partman_maint" "GRANT ALL ON ALL TABLES IN SCHEMA partman TO partman_maint" \
    "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA partman TO partman_maint" "GRANT EXECUTE ON ALL PROCEDURES IN SCHEMA partman TO partman_maint" \
    "GRANT CREATE ON SCHEMA public TO partman_maint"
  psql_as partman_maint "$PORT" postgres \
    -c "CREATE TABLE events (id bigint, created_at timestamptz NOT NULL, payload text) PARTITION BY RANGE (created_at)" \
    -c "CREATE INDEX events_created_at_idx ON events (created_at)" \
    -c "SELECT partman.create_parent('public.events', 'created_at', 'native', 'daily', p_premake := 2)" \
    -c "INSERT INTO events SELECT g, now() - interval '1 day' + g * interval '1 second', md5(g::text) FROM generate_series(1, 100000) g" >/dev/null
  parts() { q "$PORT" postgres "SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass"; }
  n0=$(parts)
  psql_as partman_maint "$PORT" postgres -c "UPDATE partman.part_config SET premake = 4 WHERE parent_table = 'public.events'" \
    -c "SELECT partman.run_maintenance('public.events')" >/dev/null
  n1=$(parts)
  [ "$n1" -eq $((n0 + 2)) ] || fail "run_maintenance(): $n0 -> $n1 partitions, want +2"
  ok "create_parent: $n0 partitions (default included); run_maintenance() with premake 4: $n1"
  psql_as partman_maint "$PORT" postgres -c "UPDATE partman.part_config SET premake = 6 WHERE parent_table = 'public.events'" >/dev/null
  for i in $(seq 1 100); do [ "$(parts)" -ge $((n1 + 2)) ] && break; sleep 0.2; done
  n2=$(parts)
  [ "$n2" -eq $((n1 + 2)) ] || fail "pg_partman_bgw: $n1 -> $n2 partitions after 20 s, want +2"
  ok "pg_partman_bgw (every 2 s, as partman_maint) with premake 6: $n2"
  wait_audit "$PORT" postgres "statement LIKE 'ALTER TABLE public.events ATTACH PARTITION%'" $((n2 - 0)) >/dev/null
  expect_eq "partman's statements: judged and audited, none rejected" \
    "$(q "$PORT" postgres "SELECT string_agg(DISTINCT decision || ' ' || command_tag, ', ') FROM pg_migration_guard.audit_log WHERE session_role = 'partman_maint' AND (statement LIKE '%public.events_p%' OR statement LIKE '%public.events_default%' OR statement LIKE '%template_public_events%')")" \
    "allowed ALTER TABLE, allowed CREATE TABLE"
  expect_eq "ATTACH PARTITION rows (one per partition)" \
    "$(q "$PORT" postgres "SELECT count(*) FROM pg_migration_guard.audit_log WHERE statement LIKE 'ALTER TABLE public.events ATTACH PARTITION%' AND decision = 'allowed'")" "$n2"
  grep -E 'could not judge|ERROR: .*partman' "$DIR/server.log" && fail "errors in the server log"
  ok "no judging error, no partman error in the server log"
fi

if want cron; then
  step "3. pg_cron: the jobs' runs"
  for i in $(seq 1 90); do
    [ "$(q "$PORT" postgres "SELECT count(DISTINCT jobid) FROM cron.job_run_details WHERE status IN ('succeeded', 'failed')")" -ge 2 ] && break
    sleep 1
  done
  expect_eq "cron.job_run_details" \
    "$(q "$PORT" postgres "SELECT string_agg(j.jobname || ' ' || d.username || ' ' || d.status || ' ' || coalesce(substring(d.return_message from 'ERROR:  ([a-z-]+):'), '-'), ', ' ORDER BY j.jobname) FROM (SELECT DISTINCT ON (jobid) * FROM cron.job_run_details ORDER BY jobid, runid) d JOIN cron.job j USING (jobid)")" \
    "guarded-column app_owner succeeded -, guarded-index app_owner failed require-concurrent-index-creation"
  wait_audit "$PORT" postgres "application_name = 'pg_cron'" 2 >/dev/null
  expect_eq "audit rows of the jobs (session role, effective role, decision, rules)" \
    "$(q "$PORT" postgres "SELECT string_agg(DISTINCT session_role || ' ' || effective_role || ' ' || decision || ' ' || command_tag || ' ' || array_to_string(rules, ','), ', ') FROM pg_migration_guard.audit_log WHERE application_name = 'pg_cron'")" \
    "app_owner app_owner allowed ALTER TABLE , app_owner app_owner rejected CREATE INDEX require-concurrent-index-creation"
  q "$PORT" postgres "SELECT cron.unschedule(jobid) FROM cron.job" >/dev/null
fi
if want repack || want partman || want cron; then
  expect_eq "audit queue: nothing dropped" "$(q "$PORT" postgres "SELECT dropped_records FROM pg_migration_guard.audit_queue_status()")" "0"
  cluster_stop "$DIR"
  grep -E 'PANIC|terminated by signal' "$DIR/server.log" && fail "server log"
fi

# --- pgaudit ------------------------------------------------------------------------------
if want pgaudit; then
  step "4. pgaudit (pgaudit.log = 'ddl') and the guard, both preload orders"
  cluster_init "$PDIR" "$SYSTEM_PG_BIN"
  # statement|guard decision; pgaudit logs it exactly when it ran (not rejected, no error).
  ddl=(
    "CREATE TABLE pa_small (id integer)|allowed"
    "ALTER TABLE pa_small ADD COLUMN note text|allowed"
    "ALTER TABLE pa_small RENAME COLUMN note TO remark|warned"
    "CREATE INDEX pa_big_payload_idx ON pa_big (payload)|rejected"
    "CREATE INDEX CONCURRENTLY pa_big_payload_idx ON pa_big (payload)|allowed"
    "CREATE TABLE pa_big (id integer)|allowed:error"
    "DROP TABLE pa_small|warned"
  )
  n=0
  for order in 'pgaudit,pg_migration_guard' 'pg_migration_guard,pgaudit'; do
    n=$((n + 1)); db=pa$n
    if [ "$n" = 1 ]; then
      cluster_start "$PDIR" "$PPORT" "shared_preload_libraries = '$order'" "$GUARD_PATH" "pgaudit.log = 'ddl'"
    else
      cluster_restart "$PDIR" "$PPORT" "shared_preload_libraries = '$order'"
    fi
    q "$PPORT" postgres "CREATE DATABASE $db"
    q "$PPORT" "$db" "CREATE EXTENSION pgaudit" "CREATE EXTENSION pg_migration_guard" \
      "CREATE TABLE pa_big (id integer, payload text)" "INSERT INTO pa_big SELECT g, md5(g::text) FROM generate_series(1, 50000) g" "ANALYZE pa_big"
    offset=$(stat -c %s "$PDIR/server.log")
    for entry in "${ddl[@]}"; do
      stmt=${entry%|*}
      "$PSQL_BIN" -X -q -h /tmp -p "$PPORT" -U postgres -d "$db" -c "$stmt" >/dev/null 2>&1 || true
    done
    # The same DDL from a DO block (dynamic EXECUTE): both see the nested statement.
    q "$PPORT" "$db" "DO \$\$BEGIN EXECUTE 'CREATE TABLE pa_from_do (id integer)'; END\$\$"
    wait_audit "$PPORT" "$db" "statement = 'CREATE TABLE pa_from_do (id integer)'" 1 >/dev/null
    log=$(tail -c +"$((offset + 1))" "$PDIR/server.log")
    for entry in "${ddl[@]}" "CREATE TABLE pa_from_do (id integer)|allowed"; do
      stmt=${entry%|*}; decision=${entry##*|}; ran=1
      case $decision in *:error) decision=${decision%:error}; ran=0 ;; rejected) ran=0 ;; esac
      guard_lines=$(grep -F "; statement: $stmt" <<<"$log" | grep -cF "pg_migration_guard: $decision " || true)
      [ "$guard_lines" -ge 1 ] || fail "[$order] no guard LOG line '$decision' for: $stmt"
      rows=$(q "$PPORT" "$db" "SELECT count(*) FROM pg_migration_guard.audit_log WHERE statement = \$q\$$stmt\$q\$ AND decision = '$decision'")
      [ "$rows" -ge 1 ] || fail "[$order] no audit row '$decision' for: $stmt"
      audit_lines=$(grep -F "AUDIT: SESSION," <<<"$log" | grep -cF ",$stmt,<not logged>" || true)
      if [ "$ran" = 1 ]; then
        [ "$audit_lines" -ge 1 ] || fail "[$order] no pgaudit AUDIT line for: $stmt"
      else
        [ "$audit_lines" -eq 0 ] || fail "[$order] pgaudit logged a statement that did not run: $stmt"
      fi
    done
    ok "$order: ${#ddl[@]} + 1 DDL statements: guard LOG line and audit row for each; pgaudit AUDIT line for each that ran (not for the rejected one, nor for the one that failed by itself)"
  done
  cluster_stop "$PDIR"
  grep -E 'PANIC|terminated by signal|could not judge' "$PDIR/server.log" && fail "server log"
fi

# --- auto_explain and pg_stat_statements --------------------------------------------------
if want stats; then
  step "5. auto_explain and pg_stat_statements see the same statements with and without the guard"
  cluster_init "$SDIR" "$SYSTEM_PG_BIN"
  common=("$GUARD_PATH" "pg_stat_statements.track = all" "pg_stat_statements.track_utility = on"
          "auto_explain.log_min_duration = 0" "auto_explain.log_nested_statements = on" "auto_explain.log_format = text")
  for run in without with; do
    if [ "$run" = without ]; then
      cluster_start "$SDIR" "$SPORT" "shared_preload_libraries = 'pg_stat_statements,auto_explain'" "${common[@]}"
      q "$SPORT" postgres "CREATE EXTENSION pg_stat_statements" "CREATE ROLE app LOGIN"
    else
      cluster_restart "$SDIR" "$SPORT" "shared_preload_libraries = 'pg_stat_statements,auto_explain,pg_migration_guard'"
    fi
    if [ "$run" = with ]; then q "$SPORT" postgres "DROP DATABASE wl"; fi
    q "$SPORT" postgres "CREATE DATABASE wl OWNER app"
    if [ "$run" = with ]; then q "$SPORT" wl "CREATE EXTENSION pg_migration_guard"; fi
    q "$SPORT" postgres "SELECT pg_stat_statements_reset()" >/dev/null
    offset=$(stat -c %s "$SDIR/server.log")
    psql_as app "$SPORT" wl -f tests/packaging/workload.sql >/dev/null 2>&1
    sleep 1
    q "$SPORT" postgres "SELECT s.toplevel, s.calls, s.rows, s.query FROM pg_stat_statements s
                          WHERE s.userid = 'app'::regrole AND s.dbid = (SELECT oid FROM pg_database WHERE datname = 'wl')
                          ORDER BY s.query, s.toplevel" >"$SDIR/pss-$run.txt"
    tail -c +"$((offset + 1))" "$SDIR/server.log" \
      | awk '/ app@wl LOG:  duration: .* plan:/ { want = 1; next } want && /^\tQuery Text:/ { print; want = 0 }' >"$SDIR/explain-$run.txt"
    if [ "$run" = with ]; then
      others=$(q "$SPORT" postgres "SELECT count(*) || ' entries: ' || coalesce(string_agg(DISTINCT left(query, 60), ' | '), '') FROM pg_stat_statements
                                    WHERE userid <> 'app'::regrole AND dbid = (SELECT oid FROM pg_database WHERE datname = 'wl')")
    fi
  done
  [ -s "$SDIR/pss-with.txt" ] && [ -s "$SDIR/explain-with.txt" ] || fail "nothing recorded"
  diff -u "$SDIR/pss-without.txt" "$SDIR/pss-with.txt" >&2 || fail "pg_stat_statements differs with the guard (- without, + with)"
  ok "pg_stat_statements (track = all, track_utility): the same $(wc -l <"$SDIR/pss-with.txt") entries (query, calls, rows, toplevel) for the workload's role"
  diff -u "$SDIR/explain-without.txt" "$SDIR/explain-with.txt" >&2 || fail "auto_explain differs with the guard (- without, + with)"
  ok "auto_explain (every plan, nested included): the same $(wc -l <"$SDIR/explain-with.txt") plans logged for the workload's role"
  ok "other roles' statements in that database with the guard (its audit writer): $others"
  cluster_stop "$SDIR"
  grep -E 'PANIC|terminated by signal|could not judge' "$SDIR/server.log" && fail "server log"
fi
echo "tools: passed"

#!/usr/bin/env bash
# Upgrade from the previous release, the way a DBA does it (docs/operations.md, "Upgrade"),
# then dump and restore.
#
#  1. A cluster runs the previous release: its library (built from the release's commit,
#     cached under GUARD_LIB_ROOT) and its SQL (sql/pg_migration_guard--0.1.0.sql); audit
#     rows are written, a reader role is granted migration_guard_reader.
#  2. The library file is replaced by the new one (written beside it, renamed over it) while
#     the server runs, then the server restarts: until ALTER EXTENSION ... UPDATE the new
#     library runs with the previous version's SQL objects; DDL is judged and audited, the
#     SQL functions work.
#  3. ALTER EXTENSION pg_migration_guard UPDATE TO the new version (through each upgrade
#     script: 0.1.0 -> 0.2.0 -> 0.3.0): check() works; the rows, the reader's
#     privileges, the absence of PUBLIC privileges on audit_log and the
#     pg_extension_config_dump entry survive; the objects are those of a fresh install of the
#     new version (tests/packaging/extension_objects.sql, compared line by line); DDL is
#     judged and audited.
#  4. pg_dump of that database, pg_restore into a cluster that preloads the guard: without
#     `PGOPTIONS='-c pg_migration_guard.mode=off'` the guard stops the restore's index and
#     primary key builds (as README says); with it, the restore is clean and keeps every
#     audit row.
#  5. Rolling the library back (the previous release's file, restart) with the new
#     version's SQL objects in place: DDL is judged and audited; check() and
#     relations_size(), which 0.3.0 added, fail with PostgreSQL's "could not find function"
#     (sql/pg_migration_guard--0.2.0--0.3.0.sql).
#
# Usage: tests/packaging/upgrade.sh   (builds and installs the extension with install_extension)
# Environment: PGMG_OLD_LIB=/path/to/pg_migration_guard.so of the previous release, instead
# of building it (the first build takes several minutes; later runs reuse it).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
source scripts/common.sh
source tests/packaging/lib.sh

OLD_VERSION=0.1.0
OLD_COMMIT=2c46610
NEW_VERSION=$(sed -n '/^\[package\]/,/^\[/{s/^version *= *"\([^"]*\)".*/\1/p}' Cargo.toml | head -1)
DIR=$PKG_WORK/upgrade
RDIR=$PKG_WORK/restore
LIB=$PKG_WORK/upgrade-lib        # the "DBA's" library directory: dynamic_library_path
PORT=$((PKG_PORT_BASE + 1))
RPORT=$((PKG_PORT_BASE + 2))
SHAREDIR_EXT=$("$PG_CONFIG" --sharedir)/extension
OBJECTS_SQL=$ROOT/tests/packaging/extension_objects.sql
GUARD_SETTINGS=("shared_preload_libraries = 'pg_migration_guard'" "dynamic_library_path = '$LIB:\$libdir'")

cleanup() { cluster_stop "$DIR"; cluster_stop "$RDIR"; restore_shared; }
trap cleanup EXIT

# The previous release's library: built once from its commit, in a target directory of its
# own (its crate has the same name as the new one), cached content-addressed.
old_library() {
  if [ -n "${PGMG_OLD_LIB:-}" ]; then OLD_SO=$PGMG_OLD_LIB; return 0; fi
  local cache=$GUARD_LIB_ROOT/release-$OLD_VERSION-$OLD_COMMIT src=$PKG_WORK/src-$OLD_VERSION
  OLD_SO=$cache/pg_migration_guard.so
  [ -f "$OLD_SO" ] && return 0
  echo "building the $OLD_VERSION library from commit $OLD_COMMIT (once; several minutes)" >&2
  rm -rf "$src" && mkdir -p "$src"
  git archive "$OLD_COMMIT" | tar -x -C "$src"
  (cd "$src" && CARGO_TARGET_DIR=$ROOT/target/v$OLD_VERSION \
     cargo build --lib --release --features "pg$PG_MAJOR" --no-default-features >"$PKG_WORK/build-$OLD_VERSION.log" 2>&1) \
    || { tail -20 "$PKG_WORK/build-$OLD_VERSION.log" >&2; fail "building $OLD_VERSION"; }
  install -d -m 755 "$cache"
  install_atomically "$ROOT/target/v$OLD_VERSION/release/libpg_migration_guard.so" "$OLD_SO" 755
  rm -rf "$src"
}

# expect_library FILE WHAT: the postmaster of DIR has LIB/pg_migration_guard.so mapped, the
# file now at that path (same inode), and that file has FILE's contents.
expect_library() {
  local want=$1 what=$2 got inode
  got=$(mapped_guard_library "$DIR")
  [ "$got" = "$LIB/pg_migration_guard.so" ] || fail "$what: the server mapped [$got]"
  inode=$(awk -v p="$got" '$6 == p { print $5; exit }' "/proc/$(postmaster_pid "$DIR")/maps")
  [ "$inode" = "$(stat -c %i "$LIB/pg_migration_guard.so")" ] || fail "$what: the server mapped another file than $got"
  cmp -s "$want" "$LIB/pg_migration_guard.so" || fail "$what: $got is not $want"
  ok "$what"
}

audit_digest() {  # audit_digest PORT DB WHERE: rows and an md5 of their full contents
  q "$1" "$2" "SELECT count(*) || ' rows, md5 ' || md5(coalesce(string_agg(row_to_json(l)::text, E'\n' ORDER BY id), ''))
                 FROM pg_migration_guard.audit_log l WHERE $3"
}

privileges() {  # privileges PORT DB: who may do what on the audit table and view
  q "$1" "$2" "SELECT string_agg(format('%s %s: %s', c.relname, coalesce(nullif(a.grantee::regrole::text, '-'), 'PUBLIC'), a.privilege_type), '; ' ORDER BY c.relname, a.grantee::regrole::text, a.privilege_type)
                 FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
                WHERE c.oid IN ('pg_migration_guard.audit_log'::regclass, 'pg_migration_guard.audit'::regclass)
                  AND a.grantee <> c.relowner"
}

step "libraries: $NEW_VERSION (install_extension) and $OLD_VERSION"
# install_extension writes the control file and scripts into SHAREDIR/extension, shared with
# every other tree of the project: put back what was there at the end.
# The update goes through every sql/pg_migration_guard--<from>--<to>.sql from OLD_VERSION on
# (0.1.0 -> 0.2.0 -> 0.3.0).
UPDATE_SCRIPTS=$(cd sql && ls pg_migration_guard--*--*.sql)
for f in pg_migration_guard.control "pg_migration_guard--$NEW_VERSION.sql" $UPDATE_SCRIPTS "pg_migration_guard--$OLD_VERSION.sql" "pg_migration_guard--0.2.0.sql"; do
  save_shared "$SHAREDIR_EXT/$f"
done
install_extension
NEW_SO=$GUARD_LIB_DIR/pg_migration_guard.so
old_library
put_shared sql/pg_migration_guard--$OLD_VERSION.sql "$SHAREDIR_EXT/pg_migration_guard--$OLD_VERSION.sql"
# 0.2.0's install script too: a database created at 0.2.0 is updated to the new version below.
put_shared sql/pg_migration_guard--0.2.0.sql "$SHAREDIR_EXT/pg_migration_guard--0.2.0.sql"
for f in $UPDATE_SCRIPTS; do
  [ -f "$SHAREDIR_EXT/$f" ] || fail "install_extension did not install the upgrade script $f"
done
ok "old $OLD_SO, new $NEW_SO"

step "1. the cluster runs $OLD_VERSION (library and SQL)"
rm -rf "$LIB"; install -d -m 755 "$LIB"
install_atomically "$OLD_SO" "$LIB/pg_migration_guard.so" 755
cluster_init "$DIR" "$PG_BIN"
cluster_start "$DIR" "$PORT" "${GUARD_SETTINGS[@]}"
expect_library "$OLD_SO" "the server runs the $OLD_VERSION library"
q "$PORT" postgres "CREATE EXTENSION pg_migration_guard VERSION '$OLD_VERSION'" \
  "CREATE TABLE big (id integer PRIMARY KEY, payload text)" \
  "INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 50000) g" "ANALYZE big" \
  "CREATE ROLE auditor LOGIN" "GRANT migration_guard_reader TO auditor" "CREATE ROLE app LOGIN"
expect_error "$PORT" postgres "CREATE INDEX big_payload_idx ON big (payload)" require-concurrent-index-creation >/dev/null
q "$PORT" postgres "ALTER TABLE big ADD COLUMN note text" "ALTER TABLE big RENAME COLUMN note TO remark" 2>/dev/null
wait_audit "$PORT" postgres "true" 7 >/dev/null
expect_eq "decisions of $OLD_VERSION" "$(q "$PORT" postgres "SELECT string_agg(decision || ' ' || command_tag, ', ' ORDER BY id) FROM pg_migration_guard.audit_log")" \
  "allowed CREATE TABLE, allowed CREATE ROLE, allowed GRANT ROLE, allowed CREATE ROLE, rejected CREATE INDEX, allowed ALTER TABLE, warned ALTER TABLE"
max_old=$(q "$PORT" postgres "SELECT max(id) FROM pg_migration_guard.audit_log")
rows_old=$(audit_digest "$PORT" postgres "id <= $max_old")
privs_old=$(privileges "$PORT" postgres)
ok "$rows_old; privileges: $privs_old"

step "2. the library is replaced (rename over the file) while the server runs, then a restart"
install_atomically "$NEW_SO" "$LIB/pg_migration_guard.so" 755
expect_error "$PORT" postgres "CREATE INDEX big_payload_idx ON big (payload)" require-concurrent-index-creation >/dev/null
ok "before the restart the running server still judges with its copy: $(mapped_guard_library "$DIR")"
wait_audit "$PORT" postgres "true" 8 >/dev/null   # a fast shutdown loses records still queued
cluster_restart "$DIR" "$PORT"
expect_library "$NEW_SO" "after the restart the server runs the $NEW_VERSION library"
expect_eq "extension version before UPDATE" "$(q "$PORT" postgres "SELECT extversion FROM pg_extension WHERE extname = 'pg_migration_guard'")" "$OLD_VERSION"
before=$(q "$PORT" postgres "SELECT count(*) FROM pg_migration_guard.audit_log")
expect_error "$PORT" postgres "ALTER TABLE big ALTER COLUMN id TYPE bigint" changing-column-type >/dev/null
q "$PORT" postgres "CREATE INDEX CONCURRENTLY big_payload_idx ON big (payload)"
wait_audit "$PORT" postgres "true" $((before + 2)) >/dev/null
expect_eq "new library, $OLD_VERSION SQL: DDL judged and audited" \
  "$(q "$PORT" postgres "SELECT string_agg(decision || ' ' || command_tag, ', ' ORDER BY id) FROM (SELECT * FROM pg_migration_guard.audit_log ORDER BY id DESC LIMIT 2) l")" \
  "rejected ALTER TABLE, allowed CREATE INDEX"
expect_eq "new library, $OLD_VERSION SQL: functions" \
  "$(q "$PORT" postgres "SELECT pg_migration_guard.is_preloaded()" \
       "SELECT string_agg(relation || ' ' || mode, ', ') FROM pg_migration_guard.lock_targets('ALTER TABLE big ADD COLUMN x integer')" \
       "SELECT dropped_records FROM pg_migration_guard.audit_queue_status()" \
       "SELECT decision FROM pg_migration_guard.judge_timing('CREATE INDEX ON big (remark)', 1)" | paste -sd'|')" \
  "t|public.big ACCESS EXCLUSIVE|0|rejected"

step "3. ALTER EXTENSION pg_migration_guard UPDATE TO '$NEW_VERSION'"
q "$PORT" postgres "ALTER EXTENSION pg_migration_guard UPDATE TO '$NEW_VERSION'"
expect_eq "extension version" "$(q "$PORT" postgres "SELECT extversion FROM pg_extension WHERE extname = 'pg_migration_guard'")" "$NEW_VERSION"
expect_eq "the $OLD_VERSION rows are intact" "$(audit_digest "$PORT" postgres "id <= $max_old")" "$rows_old"
expect_eq "privileges on audit_log and audit" "$(privileges "$PORT" postgres)" "$privs_old"
expect_eq "no PUBLIC privilege on audit_log or audit" "$(q "$PORT" postgres "SELECT count(*) FROM pg_class c, aclexplode(c.relacl) a WHERE c.relnamespace = 'pg_migration_guard'::regnamespace AND c.relname IN ('audit_log', 'audit') AND a.grantee = 0")" "0"
expect_eq "migration_guard_reader's members read, others do not, nobody else writes" \
  "$(q "$PORT" postgres "SELECT has_table_privilege('auditor', 'pg_migration_guard.audit_log', 'SELECT'), has_table_privilege('auditor', 'pg_migration_guard.audit', 'SELECT'), has_table_privilege('auditor', 'pg_migration_guard.audit_log', 'INSERT,UPDATE,DELETE,TRUNCATE'), has_table_privilege('app', 'pg_migration_guard.audit_log', 'SELECT')" )" \
  "t|t|f|f"
expect_eq "pg_extension_config_dump entry" "$(q "$PORT" postgres "SELECT extconfig::regclass[]::text || ' ' || extcondition::text FROM pg_extension WHERE extname = 'pg_migration_guard'")" '{pg_migration_guard.audit_log} {""}'
q "$PORT" postgres "CREATE DATABASE fresh"
q "$PORT" fresh "CREATE EXTENSION pg_migration_guard VERSION '$NEW_VERSION'"
"$PSQL_BIN" -X -q -At -v ON_ERROR_STOP=1 -h /tmp -p "$PORT" -U postgres -d postgres -f "$OBJECTS_SQL" >"$DIR/objects-updated.txt"
"$PSQL_BIN" -X -q -At -v ON_ERROR_STOP=1 -h /tmp -p "$PORT" -U postgres -d fresh -f "$OBJECTS_SQL" >"$DIR/objects-fresh.txt"
diff -u "$DIR/objects-fresh.txt" "$DIR/objects-updated.txt" >&2 || fail "updated objects differ from a fresh $NEW_VERSION install (- fresh, + updated)"
ok "updated objects = a fresh $NEW_VERSION install ($(wc -l <"$DIR/objects-fresh.txt") lines: members, definitions, comments, privileges, config)"
q "$PORT" postgres "CREATE DATABASE from020"
q "$PORT" from020 "CREATE EXTENSION pg_migration_guard VERSION '0.2.0'" "ALTER EXTENSION pg_migration_guard UPDATE TO '$NEW_VERSION'"
"$PSQL_BIN" -X -q -At -v ON_ERROR_STOP=1 -h /tmp -p "$PORT" -U postgres -d from020 -f "$OBJECTS_SQL" >"$DIR/objects-from020.txt"
diff -u "$DIR/objects-fresh.txt" "$DIR/objects-from020.txt" >&2 || fail "objects updated from 0.2.0 differ from a fresh $NEW_VERSION install (- fresh, + updated)"
ok "a database created at 0.2.0 and updated has the objects of a fresh $NEW_VERSION install"
before=$(q "$PORT" postgres "SELECT count(*) FROM pg_migration_guard.audit_log")
expect_error "$PORT" postgres "ALTER TABLE big ADD CONSTRAINT big_payload_check CHECK (payload <> '')" constraint-missing-not-valid >/dev/null
q "$PORT" postgres "ALTER TABLE big ADD CONSTRAINT big_payload_check CHECK (payload <> '') NOT VALID"
wait_audit "$PORT" postgres "true" $((before + 2)) >/dev/null
expect_eq "after UPDATE: DDL judged and audited, the reader reads the view" \
  "$("$PSQL_BIN" -X -At -h /tmp -p "$PORT" -U auditor -d postgres -c "SELECT string_agg(decision || ' ' || coalesce(transaction_status, '-'), ', ' ORDER BY id) FROM (SELECT * FROM pg_migration_guard.audit ORDER BY id DESC LIMIT 2) l")" \
  "rejected aborted, allowed committed"
expect_eq "purge_audit_log" "$(q "$PORT" postgres "SELECT pg_migration_guard.purge_audit_log('100 years')")" "0"
expect_eq "after UPDATE: check() (added in 0.3.0) judges a script, as another role too" \
  "$("$PSQL_BIN" -X -At -h /tmp -p "$PORT" -U app -d postgres -c "SELECT string_agg(decision, ',' ORDER BY statement_no) FROM pg_migration_guard.check('CREATE TABLE t (id int); CREATE INDEX ON t (id)')")|$(q "$PORT" postgres "SELECT decision || ' ' || array_to_string(rules, ',') FROM pg_migration_guard.check('CREATE INDEX ON big (remark)')")" \
  "allowed,allowed|rejected require-concurrent-index-creation"
grep -E 'PANIC|terminated by signal|could not judge' "$DIR/server.log" && fail "server log of the upgraded cluster"

step "4. pg_dump, pg_restore into a cluster that preloads the guard"
rows_all=$(audit_digest "$PORT" postgres "true")
as_pg "$PG_BIN/pg_dump" -h /tmp -p "$PORT" -U postgres -Fc -f "$DIR/postgres.dump" postgres
cluster_init "$RDIR" "$PG_BIN"
cluster_start "$RDIR" "$RPORT" "${GUARD_SETTINGS[@]}"
q "$RPORT" postgres "CREATE DATABASE plain" "CREATE DATABASE restored"
if out=$(as_pg "$PG_BIN/pg_restore" -h /tmp -p "$RPORT" -U postgres -d plain "$DIR/postgres.dump" 2>&1); then
  fail "pg_restore with the guard on succeeded; README says the guard stops its index builds"
fi
grep -q 'disallowed-unique-constraint' <<<"$out" && grep -q 'require-concurrent-index-creation' <<<"$out" \
  || fail "pg_restore with the guard on failed otherwise: $out"
ok "with the guard on, pg_restore's PRIMARY KEY and CREATE INDEX on the filled table are rejected ($(grep -c 'ERROR:' <<<"$out") errors)"
as_pg env PGOPTIONS='-c pg_migration_guard.mode=off' "$PG_BIN/pg_restore" -h /tmp -p "$RPORT" -U postgres -d restored --exit-on-error "$DIR/postgres.dump"
ok "PGOPTIONS='-c pg_migration_guard.mode=off' pg_restore: no error"
expect_eq "restored audit rows" "$(audit_digest "$RPORT" restored "true")" "$rows_all"
expect_eq "restored extension version and config entry" "$(q "$RPORT" restored "SELECT extversion || ' ' || extconfig::regclass[]::text FROM pg_extension WHERE extname = 'pg_migration_guard'")" "$NEW_VERSION {pg_migration_guard.audit_log}"
expect_eq "restored: no PUBLIC privilege" "$(q "$RPORT" restored "SELECT count(*) FROM pg_class c, aclexplode(c.relacl) a WHERE c.relnamespace = 'pg_migration_guard'::regnamespace AND a.grantee = 0")" "0"
n=$(q "$RPORT" restored "SELECT count(*) FROM pg_migration_guard.audit_log")
expect_error "$RPORT" restored "CREATE INDEX big_payload2_idx ON big (payload)" require-concurrent-index-creation >/dev/null
wait_audit "$RPORT" restored "true" $((n + 1)) >/dev/null
ok "the restored database's DDL is judged and appended to the restored audit table"
grep -E 'PANIC|terminated by signal' "$RDIR/server.log" && fail "server log of the restore cluster"

step "5. roll back the library: $OLD_VERSION's library with the $NEW_VERSION SQL objects"
install_atomically "$OLD_SO" "$LIB/pg_migration_guard.so" 755
cluster_restart "$DIR" "$PORT"
expect_library "$OLD_SO" "after the restart the server runs the $OLD_VERSION library again"
before=$(q "$PORT" postgres "SELECT count(*) FROM pg_migration_guard.audit_log")
expect_error "$PORT" postgres "CREATE INDEX big_remark_idx ON big (remark)" require-concurrent-index-creation >/dev/null
q "$PORT" postgres "ALTER TABLE big ADD COLUMN rolled_back boolean"
wait_audit "$PORT" postgres "true" $((before + 2)) >/dev/null
expect_eq "$OLD_VERSION library, $NEW_VERSION SQL: DDL judged and audited, functions work" \
  "$(q "$PORT" postgres "SELECT string_agg(decision || ' ' || command_tag, ', ' ORDER BY id) FROM (SELECT * FROM pg_migration_guard.audit_log ORDER BY id DESC LIMIT 2) l" \
       "SELECT count(*) FROM pg_migration_guard.lock_targets('ALTER TABLE big ADD COLUMN y integer')" | paste -sd'|')" \
  "rejected CREATE INDEX, allowed ALTER TABLE|1"
# check() came with 0.3.0: the older library has no check_wrapper, and says so.
ok "check() with the $OLD_VERSION library: $(expect_error "$PORT" postgres "SELECT * FROM pg_migration_guard.check('SELECT 1')" 'could not find function "check_wrapper"')"
grep -E 'PANIC|terminated by signal|could not judge' "$DIR/server.log" && fail "server log after the rollback"
echo "upgrade: passed"

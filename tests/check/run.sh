#!/usr/bin/env bash
# pg_migration_guard.check() and its client, pg-migration-guard check, against real servers:
# a primary loaded with examples/seed.sql (shop_order: 1M rows) and a streaming hot standby
# made from it with pg_basebackup -R. The client runs against the standby, the way a CI job
# checks a migration directory against a replica:
#  - the 1M-row table's plain CREATE INDEX is rejected, with the primary's sizes;
#  - a script that creates a table and indexes it in one transaction is allowed;
#  - NOT VALID + VALIDATE in one transaction is flagged, CREATE INDEX CONCURRENTLY inside a
#    transaction block gets PostgreSQL's own error (25001);
#  - the reporters: text (ERROR/DETAIL/HINT), json, gcc (file:line:col: error: rule: message),
#    github (::error file=...);
#  - a bad DSN, a missing file, no file at all: a clear message and exit status 2;
#  - check() writes nothing and assigns no transaction id (on the primary: no audit row, no
#    xid, no lock left but ACCESS SHARE), and shows a role without privileges no sizes.
#
# Usage: tests/check/run.sh   (scripts/test.sh runs it; alone it builds and installs the
# extension with install_extension unless GUARD_LIB_DIR is set)
# Environment: PGMG_CHECK_PORT_PRIMARY (default 55560), PGMG_CHECK_PORT_STANDBY (55561),
# PGMG_CHECK_WORK (default /tmp/pgmg-check-test): ports and directory of the two clusters.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
source scripts/common.sh

PPORT=${PGMG_CHECK_PORT_PRIMARY:-55560}
SPORT=${PGMG_CHECK_PORT_STANDBY:-55561}
WORK=${PGMG_CHECK_WORK:-/tmp/pgmg-check-test}
PDIR=$WORK/primary
SDIR=$WORK/standby
install -d "$WORK"

fail() { echo "check: FAIL: $*" >&2; exit 1; }
ok() { echo "check: ok: $*"; }
q() { local port=$1; shift; psql -X -q -At -v ON_ERROR_STOP=1 -h /tmp -p "$port" -U postgres -d postgres "$@"; }
expect_eq() { [ "$2" = "$3" ] || fail "$1: got [$2], want [$3]"; ok "$1"; }

cleanup() { stop_cluster "$SDIR"; stop_cluster "$PDIR"; }
trap cleanup EXIT

[ -n "${GUARD_LIB_DIR:-}" ] || install_extension
cargo build --release -q -p pg-migration-guard
CLI=$ROOT/target/release/pg-migration-guard

echo "== primary (port $PPORT): examples/seed.sql, the extension"
start_cluster "$PDIR" "$PPORT" pg_migration_guard "-c wal_level=replica -c max_wal_senders=4"
q "$PPORT" -f examples/seed.sql >/dev/null
q "$PPORT" -c "CREATE EXTENSION pg_migration_guard" -c "CREATE ROLE app LOGIN" -c "CREATE TABLE app_note (id bigint, body text)" \
  -c "ALTER TABLE app_note OWNER TO app" -c "CHECKPOINT" >/dev/null

echo "== standby (port $SPORT): pg_basebackup -R -X stream, hot_standby"
stop_cluster "$SDIR"; rm -rf "$SDIR"; install -d -o postgres "$SDIR"
as_pg "$PG_BIN/pg_basebackup" -h /tmp -p "$PPORT" -U postgres -D "$SDIR/data" -R -X stream -c fast
libpath=''
[ -n "${GUARD_LIB_DIR:-}" ] && libpath="-c dynamic_library_path='${GUARD_LIB_DIR}:\$libdir'"
as_pg "$PG_BIN/pg_ctl" -D "$SDIR/data" -w -l "$SDIR/server.log" \
  -o "-p $SPORT -k /tmp -c listen_addresses='127.0.0.1' -c shared_preload_libraries='pg_migration_guard' -c hot_standby=on $libpath" start >/dev/null
expect_eq "the standby is in recovery" "$(q "$SPORT" -c "SELECT pg_is_in_recovery()")" "t"
for _ in $(seq 1 100); do
  [ "$(q "$PPORT" -c "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")" = 1 ] && break; sleep 0.1
done
expect_eq "it streams from the primary" "$(q "$PPORT" -c "SELECT state FROM pg_stat_replication")" "streaming"

STANDBY="host=/tmp port=$SPORT user=postgres dbname=postgres"
MIG=$WORK/migrations
rm -rf "$MIG"; mkdir -p "$MIG"
cat >"$MIG/0001_index_orders.sql" <<'SQL'
-- a plain index build on the 1M-row table
CREATE INDEX shop_order_total_idx ON shop_order (total);
SQL
cat >"$MIG/0002_coupons.sql" <<'SQL'
BEGIN;
CREATE TABLE shop_coupon (id bigint PRIMARY KEY, code text NOT NULL, order_id bigint);
CREATE INDEX shop_coupon_code_idx ON shop_coupon (code);
ALTER TABLE shop_coupon ADD CONSTRAINT shop_coupon_order_fk FOREIGN KEY (order_id) REFERENCES shop_order (id);
COMMIT;
SQL
cat >"$MIG/0003_fk.sql" <<'SQL'
BEGIN;
ALTER TABLE shop_order ADD CONSTRAINT shop_order_customer_fk FOREIGN KEY (customer_id) REFERENCES shop_customer (id) NOT VALID;
ALTER TABLE shop_order VALIDATE CONSTRAINT shop_order_customer_fk;
CREATE INDEX CONCURRENTLY shop_order_quantity_idx ON shop_order (quantity);
COMMIT;
SQL

echo "== the client against the standby"
set +e
out=$("$CLI" check --dsn "$STANDBY" --reporter json "$MIG/0001_index_orders.sql"); status=$?
set -e
expect_eq "a plain CREATE INDEX on the 1M-row table: exit 1" "$status" "1"
expect_eq "... rejected by require-concurrent-index-creation at 0001:2:1" \
  "$(jq -r '.[0] | "\(.decision) \(.rules | join(",")) \(.line):\(.column)"' <<<"$out")" "rejected require-concurrent-index-creation 2:1"
primary_bytes=$(q "$PPORT" -c "SELECT pg_relation_size('shop_order') + coalesce(pg_relation_size(reltoastrelid), 0) FROM pg_class WHERE oid = 'shop_order'::regclass")
expect_eq "... with the primary's size of shop_order ($primary_bytes bytes) and row estimate" \
  "$(jq -r '.[0].sizes[0] | "\(.relation) \(.bytes) \(.estimated_rows)"' <<<"$out")" \
  "public.shop_order $primary_bytes $(q "$PPORT" -c "SELECT reltuples::bigint FROM pg_class WHERE oid = 'shop_order'::regclass")"
expect_eq "... the same verdict and sizes as check() on the primary" \
  "$(jq -S -c '.[0] | [.decision, .message, .detail, .hint, .locks, .sizes]' <<<"$out")" \
  "$(q "$PPORT" -c "SELECT json_build_array(decision, message, detail, hint, locks, sizes) FROM pg_migration_guard.check(\$\$$(sed 1d "$MIG/0001_index_orders.sql")\$\$)" | jq -S -c .)"

out=$("$CLI" check --dsn "$STANDBY" "$MIG/0002_coupons.sql") || fail "a new table indexed in its own transaction: exit $?: $out"
expect_eq "a table created and indexed (and given a foreign key) in one transaction: allowed, exit 0" \
  "$(tail -1 <<<"$out")" "5 statements in 1 file: 0 rejected, 0 warned, 0 overridden, 0 unknown"

set +e
out=$("$CLI" check --dsn "$STANDBY" --reporter gcc "$MIG"); status=$?
set -e
expect_eq "the directory, gcc reporter: exit 1" "$status" "1"
expect_eq "... file:line:col: error: rule: message, one line each" "$out" "$MIG/0001_index_orders.sql:2:1: error: require-concurrent-index-creation: CREATE INDEX would block writes to public.shop_order
$MIG/0003_fk.sql:3:1: error: constraint-missing-not-valid: validating constraint shop_order_customer_fk would scan public.shop_order while this transaction holds a SHARE ROW EXCLUSIVE lock on it
$MIG/0003_fk.sql:4:1: error: postgres-25001: CREATE INDEX CONCURRENTLY cannot run inside a transaction block"

set +e
out=$("$CLI" check --dsn "$STANDBY" "$MIG"); status=$?
set -e
expect_eq "text reporter: exit 1" "$status" "1"
grep -q '^ERROR:  require-concurrent-index-creation: CREATE INDEX would block writes to public.shop_order$' <<<"$out" || fail "text: no ERROR line: $out"
grep -q '^DETAIL:  CREATE INDEX takes a SHARE lock on public.shop_order (71 MB, about 1000000 rows)' <<<"$out" || fail "text: no DETAIL: $out"
grep -q '^HINT:  ' <<<"$out" || fail "text: no HINT: $out"
expect_eq "... and a summary" "$(tail -1 <<<"$out")" "11 statements in 3 files: 3 rejected, 0 warned, 0 overridden, 0 unknown"

set +e
out=$("$CLI" check --dsn "$STANDBY" --reporter github "$MIG/0003_fk.sql"); status=$?
set -e
expect_eq "github reporter: workflow commands" "$(awk -F'::' '{ print $2 "::" substr($3, 1, 28) }' <<<"$out")" "error file=$MIG/0003_fk.sql,line=3,col=1,title=constraint-missing-not-valid::constraint-missing-not-valid
error file=$MIG/0003_fk.sql,line=4,col=1,title=postgres-25001::CREATE INDEX CONCURRENTLY ca"
grep -q '%0ADETAIL: VALIDATE CONSTRAINT itself needs only SHARE UPDATE EXCLUSIVE' <<<"$out" || fail "github: DETAIL not in the annotation: $out"

echo "== errors: exit status 2 and a clear message"
expect_exit2() {  # expect_exit2 WHAT PATTERN ARGS...
  local what=$1 pattern=$2 err status; shift 2
  set +e; err=$("$CLI" "$@" 2>&1 >/dev/null); status=$?; set -e
  [ "$status" = 2 ] || fail "$what: exit $status, want 2 ($err)"
  grep -Eq -- "$pattern" <<<"$err" || fail "$what: message [$err] does not match [$pattern]"
  ok "$what: exit 2: $err"
}
expect_exit2 "a DSN nobody listens on" "^pg-migration-guard: cannot connect to the server: error connecting to server: .*No such file or directory" check --dsn "host=/tmp port=1 user=postgres" "$MIG"
expect_exit2 "a malformed DSN" "^pg-migration-guard: invalid connection string: .*port" check --dsn "host=/tmp port=notaport" "$MIG"
expect_exit2 "a file that does not exist" "^pg-migration-guard: cannot read $WORK/none.sql: " check --dsn "$STANDBY" "$WORK/none.sql"
rm -f "$WORK/secret.sql"; touch "$WORK/secret.sql"; chmod 000 "$WORK/secret.sql"
# root reads any file: the unreadable file is tried as the postgres OS user.
expect_exit2_as() {  # expect_exit2_as USER WHAT PATTERN ARGS...
  local user=$1 what=$2 pattern=$3 err status; shift 3
  set +e; err=$(sudo -u "$user" "$CLI" "$@" 2>&1 >/dev/null); status=$?; set -e
  [ "$status" = 2 ] || fail "$what: exit $status, want 2 ($err)"
  grep -Eq -- "$pattern" <<<"$err" || fail "$what: message [$err] does not match [$pattern]"
  ok "$what: exit 2: $err"
}
if [ "$(id -u)" = 0 ]; then
  expect_exit2_as postgres "an unreadable file" "^pg-migration-guard: cannot read $WORK/secret.sql: Permission denied" check --dsn "$STANDBY" "$WORK/secret.sql"
else
  expect_exit2 "an unreadable file" "^pg-migration-guard: cannot read $WORK/secret.sql: Permission denied" check --dsn "$STANDBY" "$WORK/secret.sql"
fi
printf 'SELECT 1;\n\377\376\n' >"$WORK/binary.sql"
expect_exit2 "a file that is not text (UTF-8)" "^pg-migration-guard: cannot read $WORK/binary.sql: stream did not contain valid UTF-8" check --dsn "$STANDBY" "$WORK/binary.sql"
expect_exit2 "a directory that does not exist" "^pg-migration-guard: cannot read " check --dsn "$STANDBY" "$WORK/nodir/"
expect_exit2 "no file" "FILES" check --dsn "$STANDBY"
expect_exit2 "a database without the extension" "has no usable pg_migration_guard.check" check --dsn "host=/tmp port=$SPORT user=postgres dbname=template1" "$MIG"
printf 'SELECT 1;\nCREATE INDEX ON shop_order (total;\n' >"$WORK/broken.sql"
set +e; out=$("$CLI" check --dsn "$STANDBY" --reporter gcc "$MIG/0001_index_orders.sql" "$WORK/broken.sql"); status=$?; set -e
expect_eq "a syntax error: PostgreSQL's, at its place, exit 1" "$status:$out" "1:$WORK/broken.sql:2:34: error: postgres-42601: syntax error at or near \";\""

echo "== check() on the primary: nothing written, no xid, no lock kept; privileges"
audit_before=$(q "$PPORT" -c "SELECT count(*) FROM pg_migration_guard.audit_log")
expect_eq "in a read-only transaction: no xid, only ACCESS SHARE locks held afterwards" \
  "$(q "$PPORT" -c "BEGIN READ ONLY" -c "SELECT count(*) FROM pg_migration_guard.check(\$\$$(cat "$MIG"/*.sql)\$\$)" \
        -c "SELECT pg_current_xact_id_if_assigned() IS NULL, count(*) FILTER (WHERE locktype = 'relation' AND mode <> 'AccessShareLock') FROM pg_locks WHERE pid = pg_backend_pid()" -c "COMMIT" | paste -sd' ')" \
  "11 t|0"
sleep 1
expect_eq "no audit row, no log line" "$(q "$PPORT" -c "SELECT count(*) FROM pg_migration_guard.audit_log")|$(grep -c 'pg_migration_guard: .*shop_order_total_idx' "$PDIR/server.log" || true)" "$audit_before|0"
as_app() { psql -X -q -At -v ON_ERROR_STOP=1 -h /tmp -p "$PPORT" -U app -d postgres -c "$1"; }
expect_eq "a role without privileges on shop_order: unknown, no size, no message of the guard" \
  "$(as_app "SELECT decision || ' ' || sqlstate || ' ' || sizes::text || ' ' || message FROM pg_migration_guard.check('CREATE INDEX ON shop_order (total)')")" \
  "unknown 42501 [] permission denied for table public.shop_order: check() describes only relations the current role may use"
expect_eq "... its own table is judged" \
  "$(as_app "SELECT decision || ' ' || (sizes->0->>'bytes') FROM pg_migration_guard.check('CREATE INDEX ON app_note (body)')")" "allowed 0"
grep -E 'PANIC|terminated by signal' "$PDIR/server.log" "$SDIR/server.log" && fail "server logs"
echo "check: passed"

#!/usr/bin/env bash
# check() on a 10,000-statement migration script: how long pg_migration_guard.check()
# takes to judge it, server-side, and pg-migration-guard check end to end. Not part of the
# test command; the result is in docs/benchmarks.md ("check() of a long script").
#
#   ./bench/check.sh                  # builds and installs the extension (install_extension)
#   GUARD_LIB_DIR=/var/tmp/pgmg/lib/<sha256 prefix> ./bench/check.sh   # a build installed earlier
# Environment: PGMG_CHECK_BENCH_PORT (default 55562), PGMG_CHECK_BENCH_DIR
# (/tmp/pgmg-check-bench), ROUNDS (5), BLOCKS (1000 blocks of 10 statements).
#
# The script, against examples/seed.sql (shop_order: 1M rows): per block a transaction
# that creates a table, indexes it and adds a column (BEGIN ... COMMIT), a plain CREATE
# INDEX on shop_order (rejected, sizes measured), an ADD COLUMN on shop_customer, an ADD
# FOREIGN KEY ... NOT VALID and its VALIDATE, and a SELECT.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
PORT=${PGMG_CHECK_BENCH_PORT:-55562}
DIR=${PGMG_CHECK_BENCH_DIR:-/tmp/pgmg-check-bench}
ROUNDS=${ROUNDS:-5}
BLOCKS=${BLOCKS:-1000}
[ -n "${GUARD_LIB_DIR:-}" ] || install_extension
cargo build --release -q -p pg-migration-guard
trap 'stop_cluster "$DIR"' EXIT
start_cluster "$DIR" "$PORT" pg_migration_guard
q() { psql -X -q -At -v ON_ERROR_STOP=1 -h /tmp -p "$PORT" -U postgres -d postgres "$@"; }
q -f examples/seed.sql >/dev/null
q -c "CREATE EXTENSION pg_migration_guard"

SCRIPT=$DIR/migration.sql
for i in $(seq 1 "$BLOCKS"); do
  cat <<SQL
BEGIN;
CREATE TABLE bench_t$i (id bigint PRIMARY KEY, v text);
CREATE INDEX bench_t${i}_v_idx ON bench_t$i (v);
ALTER TABLE bench_t$i ADD COLUMN w integer;
COMMIT;
CREATE INDEX ON shop_order (total);
ALTER TABLE shop_customer ADD COLUMN c$i text;
ALTER TABLE shop_order ADD CONSTRAINT shop_order_fk$i FOREIGN KEY (customer_id) REFERENCES shop_customer (id) NOT VALID;
ALTER TABLE shop_order VALIDATE CONSTRAINT shop_order_fk$i;
SELECT $i;
SQL
done >"$SCRIPT"
chmod 644 "$SCRIPT"
echo "script: $(grep -c ';$' "$SCRIPT") statements, $(wc -c <"$SCRIPT") bytes; library $GUARD_LIB_DIR" >&2
q -c "SELECT decision, count(*) FROM pg_migration_guard.check(pg_read_file('$SCRIPT')) GROUP BY 1 ORDER BY 1" >&2

server_ms() {
  q -c "DO \$\$ DECLARE t0 timestamptz := clock_timestamp(); n bigint; BEGIN
          SELECT count(*) INTO n FROM pg_migration_guard.check(pg_read_file('$SCRIPT'));
          RAISE NOTICE '%', round(extract(epoch FROM clock_timestamp() - t0) * 1000); END \$\$" 2>&1 | sed -n 's/^NOTICE:  //p'
}
client_ms() {
  local t0 t1
  t0=$(date +%s%N)
  target/release/pg-migration-guard check --dsn "host=/tmp port=$PORT user=postgres dbname=postgres" --reporter json "$SCRIPT" >/dev/null || [ $? = 1 ]
  t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000000))
}
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
s=(); c=()
for _ in $(seq 1 "$ROUNDS"); do s+=("$(server_ms)"); c+=("$(client_ms)"); done
echo "check() server-side, ms: ${s[*]} (median $(printf '%s\n' "${s[@]}" | median))"
echo "pg-migration-guard check end to end, ms: ${c[*]} (median $(printf '%s\n' "${c[@]}" | median))"

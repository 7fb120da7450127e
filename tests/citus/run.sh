#!/usr/bin/env bash
# The guard on a Citus cluster (docs/citus.md), by hand: a coordinator and two workers, all
# preloading 'citus,pg_migration_guard' with pg_migration_guard.citus_internal = trust, and a
# distributed table `orders` of PGMG_CITUS_ROWS rows (default 1000000) in 32 shards. Checks:
#   1. sizes: the coordinator judges the distributed table with its shards' size and row
#      estimate ("... MB over 32 shards"), and its HINT names the user's table, not a shard;
#   2. policy: mode warn set on the coordinator decides; the workers trust Citus' shard DDL
#      and audit it as exempt with the coordinator's global pid; the coordinator audits the
#      statement once, with the decision it enforced; an annotation works on the coordinator;
#   3. trust boundary: a session that claims an internal application_name is still judged
#      on anything that is not a shard, and run_command_on_* connections are never trusted;
#   4. shard moves (citus_move_shard_placement, block_writes: the ADD PRIMARY KEY on the
#      copied shard) and the rebalancer (logical replication) work;
#   5. lock queue: with a conflicting lock held on a shard on a worker, the coordinator's
#      ALTER TABLE fails with 55P03 naming the shard and the holder's global pid, and reads
#      through the coordinator are not held up meanwhile;
#   6. the guard alone (no Citus in shared_preload_libraries) behaves as before;
#   7. a worker that does not preload the guard refuses the CREATE EXTENSION Citus propagates;
#      the guard on the coordinator alone judges the shards' size as unknown (fails closed).
#
# Needs a Citus installation in a PostgreSQL tree of its own (PGMG_CITUS_TREE, default
# /var/tmp/pgmg/pg15-citus: bin/ with PostgreSQL 15's programs, citus.so in its pkglibdir,
# citus.control in its sharedir; docs/citus.md says how to build one). Exits 77 when there is
# none. Ports PGMG_CITUS_PORT_BASE (default 55580) .. +5; data in PGMG_CITUS_WORK (default
# /tmp/pgmg-citus-run), left in place after a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/common.sh

CITUS_TREE=${PGMG_CITUS_TREE:-/var/tmp/pgmg/pg15-citus}
WORK=${PGMG_CITUS_WORK:-/tmp/pgmg-citus-run}
BASE=${PGMG_CITUS_PORT_BASE:-55580}
ROWS=${PGMG_CITUS_ROWS:-1000000}
C=$BASE W1=$((BASE + 1)) W2=$((BASE + 2)) ALONE=$((BASE + 3)) C2=$((BASE + 4)) W3=$((BASE + 5))

if ! [ -x "$CITUS_TREE/bin/pg_config" ] || ! [ -f "$("$CITUS_TREE/bin/pg_config" --pkglibdir)/citus.so" ]; then
  echo "tests/citus: no Citus installation in $CITUS_TREE (set PGMG_CITUS_TREE): skipped"
  exit 77
fi

# The guard: built as for the other tests (cargo pgrx package against the private tree's
# pg_config, so nothing is rebuilt), the library in a content-addressed directory never
# rewritten (GUARD_LIB_ROOT/<sha256 prefix>/, first in dynamic_library_path), the control file
# and SQL scripts copied into the Citus tree's sharedir only (not into the shared tree's,
# which other test runs install into). A caller that built it already sets GUARD_LIB_DIR
# (the library's directory) and PGMG_GUARD_PACKAGE (the package directory).
out=${PGMG_GUARD_PACKAGE:-target/release/pg_migration_guard-pg${PG_MAJOR}}
if [ -z "${GUARD_LIB_DIR:-}" ]; then
  cargo pgrx package --pg-config "${PG_CONFIG}" >/dev/null
  so=$(find "$out" -name pg_migration_guard.so | head -1)
  [ -n "$so" ] || { echo "tests/citus: no pg_migration_guard.so under $out" >&2; exit 1; }
  GUARD_LIB_DIR=$GUARD_LIB_ROOT/$(sha256sum "$so" | cut -c1-12)
  install -d -m 755 "$GUARD_LIB_DIR"
  [ -f "$GUARD_LIB_DIR/pg_migration_guard.so" ] || install_atomically "$so" "$GUARD_LIB_DIR/pg_migration_guard.so" 755
  export GUARD_LIB_DIR
fi
citus_share=$("$CITUS_TREE/bin/pg_config" --sharedir)
while IFS= read -r f; do
  install_atomically "$f" "$citus_share/extension/$(basename "$f")"
done < <(find "$out" -path '*/extension/*' -type f)
PG_BIN=$CITUS_TREE/bin

failures=0
pass() { echo "ok   - $*"; }
fail() { echo "FAIL - $*"; failures=$((failures + 1)); }
# q PORT [psql options...] SQL: one statement, unaligned tuples only, errors as text.
q() { local port=$1; shift; psql -X -q -At -h /tmp -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@" 2>&1; }
# expect NAME TEXT PATTERN: TEXT matches the extended regex PATTERN.
expect() { if grep -Eq -- "$3" <<<"$2"; then pass "$1"; else fail "$1"; echo "     expected /$3/ in:"; sed 's/^/     | /' <<<"$2"; fi; }
expect_not() { if grep -Eq -- "$3" <<<"$2"; then fail "$1"; echo "     unexpected /$3/ in:"; sed 's/^/     | /' <<<"$2"; else pass "$1"; fi; }
# The audit writers insert asynchronously: wait until every node's queue is empty.
audit_settled() {
  for port in "$@"; do
    for _ in $(seq 1 100); do
      [ "$(q "$port" -c 'SELECT pending_records FROM pg_migration_guard.audit_queue_status()')" = 0 ] && break
      sleep 0.1
    done
  done
}

cleanup() { for d in c w1 w2 alone c2 w3; do stop_cluster "$WORK/$d"; done; }
# PGMG_CITUS_KEEP=1 leaves the clusters running at the end (to look around).
[ -n "${PGMG_CITUS_KEEP:-}" ] || trap cleanup EXIT
install -d "$WORK"

citus_opts="-c wal_level=logical -c max_wal_senders=20 -c max_replication_slots=20 -c citus.local_hostname=127.0.0.1 \
-c pg_migration_guard.citus_internal=trust -c max_connections=200"
echo "== starting a coordinator ($C) and two workers ($W1, $W2): 'citus,pg_migration_guard'"
start_cluster "$WORK/c" "$C" 'citus,pg_migration_guard' "$citus_opts"
start_cluster "$WORK/w1" "$W1" 'citus,pg_migration_guard' "$citus_opts"
start_cluster "$WORK/w2" "$W2" 'citus,pg_migration_guard' "$citus_opts"
for port in "$C" "$W1" "$W2"; do q "$port" -c 'CREATE EXTENSION citus' >/dev/null; done
q "$C" -c "SELECT citus_set_coordinator_host('127.0.0.1', $C)" >/dev/null
q "$C" -c "SELECT citus_add_node('127.0.0.1', $W1)" -c "SELECT citus_add_node('127.0.0.1', $W2)" >/dev/null
# Citus propagates CREATE EXTENSION to the workers.
q "$C" -c 'CREATE EXTENSION pg_migration_guard' >/dev/null
for port in "$W1" "$W2"; do
  expect "CREATE EXTENSION reached the worker on $port" "$(q "$port" -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_migration_guard'")" '^[0-9]'
done

echo "== a distributed table of $ROWS rows in 32 shards"
t0=$(date +%s)
q "$C" -c "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL, placed_at timestamptz NOT NULL, \
status text NOT NULL, note text)" -c "SELECT create_distributed_table('orders', 'id', shard_count := 32)" >/dev/null
q "$C" -c "INSERT INTO orders SELECT g, g % 100000, now() - g * interval '1 second', \
(ARRAY['new','paid','shipped'])[1 + g % 3], 'order note ' || g FROM generate_series(1, $ROWS) g" >/dev/null
q "$C" -c 'ANALYZE orders' >/dev/null
echo "   loaded in $(( $(date +%s) - t0 )) s; citus_table_size: $(q "$C" -c "SELECT pg_size_pretty(citus_table_size('orders'))")"
shard=$(q "$C" -c "SELECT shardid FROM pg_dist_shard WHERE logicalrelid = 'orders'::regclass ORDER BY shardid LIMIT 1")
shard_node=$(q "$C" -c "SELECT nodeport FROM pg_dist_shard_placement WHERE shardid = $shard")
other_node=$([ "$shard_node" = "$W1" ] && echo "$W2" || echo "$W1")

echo "== 1. sizes over the shards, HINT on the user's table"
out=$(q "$C" -c 'CREATE INDEX orders_placed_at_idx ON orders (placed_at)' || true)
expect "CREATE INDEX rejected on the coordinator" "$out" 'ERROR:  require-concurrent-index-creation'
expect "DETAIL: the distributed size over 32 shards" "$out" 'public\.orders \([0-9]+ MB over 32 shards, about [0-9]+ rows\)'
expect "HINT names the user's table" "$out" 'CREATE INDEX CONCURRENTLY orders_placed_at_idx ON orders \(placed_at\)'
expect_not "no shard named in the message" "$out" 'orders_[0-9]{6}'
echo "$out" | sed -n '1,2p' | sed 's/^/     /'
# The guard's hook, installed after Citus', runs first: the rejected statement never reached
# a worker.
expect_not "the rejected statement never reached the workers" "$(cat "$WORK/w1/server.log" "$WORK/w2/server.log")" 'orders_placed_at_idx'
echo "   judging time of that CREATE INDEX on the coordinator (shards measured on the workers): median $(q "$C" -c \
  "SELECT round(median_us) || ' us, p99 ' || round(p99_us) || ' us' FROM pg_migration_guard.judge_timing('CREATE INDEX orders_placed_at_idx ON orders (placed_at)', 50)")"
out=$(q "$C" -c 'CREATE INDEX CONCURRENTLY orders_placed_at_idx ON orders (placed_at)' || true)
expect_not "CREATE INDEX CONCURRENTLY runs on every shard" "$out" 'ERROR|WARNING'
expect "the index exists on the shards" "$(q "$shard_node" -c "SELECT to_regclass('orders_placed_at_idx_$shard') IS NOT NULL")" '^t$'

echo "== 2. one policy, one audit"
q "$C" -c 'TRUNCATE pg_migration_guard.audit_log' >/dev/null
for port in "$W1" "$W2"; do q "$port" -c 'TRUNCATE pg_migration_guard.audit_log' >/dev/null; done
out=$(q "$C" -c 'SET pg_migration_guard.mode = warn' -c 'CREATE INDEX orders_status_idx ON orders (status)' || true)
expect "mode warn on the coordinator: a WARNING" "$out" 'WARNING:  require-concurrent-index-creation'
expect_not "... and the statement runs on every shard" "$out" 'ERROR'
expect "the index exists on the shards" "$(q "$shard_node" -c "SELECT to_regclass('orders_status_idx_$shard') IS NOT NULL")" '^t$'
out=$(q "$C" -c "CREATE INDEX orders_customer_idx ON orders (customer_id) -- pg_migration_guard:allow require-concurrent-index-creation reason=\"maintenance window\"" || true)
expect_not "an annotation on the coordinator lets the statement through" "$out" 'ERROR'
audit_settled "$C" "$W1" "$W2"
expect "the coordinator audits each statement once, with the decision it enforced" \
  "$(q "$C" -c "SELECT string_agg(decision || ' ' || command_tag, ', ' ORDER BY id) FROM pg_migration_guard.audit_log WHERE statement ~ 'orders_(status|customer)_idx'")" \
  '^warned CREATE INDEX, overridden CREATE INDEX$'
w_audit=$(q "$shard_node" -c "SELECT count(*) || ' ' || string_agg(DISTINCT decision, ',') || ' ' || bool_and(message ~ 'global pid [0-9]+') \
  FROM pg_migration_guard.audit_log WHERE statement ~ 'orders_status_idx'")
expect "the workers record Citus' shard DDL as exempt, with the coordinator's global pid" "$w_audit" '^[0-9]+ exempt true$'
gpid_ok=$(q "$shard_node" -c "SELECT bool_and(application_name ~ '^citus_internal gpid=[0-9]+$') FROM pg_migration_guard.audit_log WHERE decision = 'exempt'")
expect "... sent from citus_internal connections" "$gpid_ok" '^t$'

# A reference table has a placement on the coordinator too (it is in the metadata): Citus
# changes it from the coordinator's own backend, inside the user's statement.
q "$C" -c 'CREATE TABLE ref (id int PRIMARY KEY, v text)' -c "SELECT create_reference_table('ref')" \
  -c "INSERT INTO ref SELECT g, repeat('x', 50) || g FROM generate_series(1, 50000) g" -c 'ANALYZE ref' >/dev/null
out=$(q "$C" -c 'SET pg_migration_guard.mode = warn' -c 'CREATE INDEX ref_v_idx ON ref (v)' || true)
expect "a reference table: judged with its shard's size" "$out" 'public\.ref \([0-9]+ kB over 1 shard, about 50000 rows\)'
expect "... once: one WARNING, none for the coordinator's own placement" "$(grep -c '^WARNING' <<<"$out")" '^1$'
audit_settled "$C"
expect "... audited once" "$(q "$C" -c "SELECT count(*) FROM pg_migration_guard.audit_log WHERE statement ~ 'ref_v_idx'")" '^1$'

echo "== 3. the trust boundary"
q "$shard_node" -c "CREATE TABLE local_big AS SELECT g AS id, repeat('x', 100) AS pad FROM generate_series(1, 50000) g" >/dev/null
out=$(PGAPPNAME="citus_internal gpid=10000000001" q "$shard_node" -c 'CREATE INDEX local_big_pad_idx ON local_big (pad)' || true)
expect "an 'internal' application_name is judged on a table that is not a shard" "$out" 'ERROR:  require-concurrent-index-creation'
out=$(PGAPPNAME="citus_run_command gpid=10000000001" q "$shard_node" -c "CREATE INDEX orders_note_idx_x ON orders_$shard (note)" || true)
expect "run_command_on_* connections are judged, even on a shard" "$out" 'ERROR:  require-concurrent-index-creation'
out=$(PGAPPNAME="citus_internal gpid=10000000001" q "$shard_node" -c 'SET pg_migration_guard.citus_internal = judge' -c "CREATE INDEX orders_note_idx_x ON orders_$shard (note)" || true)
expect "citus_internal = judge: shard DDL is judged" "$out" 'ERROR:  require-concurrent-index-creation'
q "$shard_node" -c 'SET citus.enable_ddl_propagation = off' -c 'CREATE ROLE mallory LOGIN' >/dev/null
out=$(psql -X -q -At -h /tmp -p "$shard_node" -U mallory -d postgres -c 'SET pg_migration_guard.citus_internal = trust' 2>&1 || true)
expect "only a superuser can set citus_internal" "$out" 'permission denied'

echo "== 4. shard moves and the rebalancer"
out=$(q "$C" -c "SELECT citus_move_shard_placement($shard, '127.0.0.1', $shard_node, '127.0.0.1', $other_node, 'block_writes')" 2>&1 || true)
expect_not "citus_move_shard_placement (block_writes) succeeds" "$out" 'ERROR'
expect "the shard is on the other worker" "$(q "$C" -c "SELECT nodeport FROM pg_dist_shard_placement WHERE shardid = $shard")" "^$other_node\$"
expect "its primary key was rebuilt there" "$(q "$other_node" -c "SELECT count(*) FROM pg_constraint WHERE conname = 'orders_pkey_$shard' AND contype = 'p'")" '^1$'
# Two more shards onto the same worker, with logical replication, so that the rebalancer
# has something to do.
for s in $(q "$C" -c "SELECT shardid FROM pg_dist_shard_placement JOIN pg_dist_shard USING (shardid) \
    WHERE logicalrelid = 'orders'::regclass AND nodeport = $shard_node ORDER BY shardid LIMIT 2"); do
  out=$(q "$C" -c "SELECT citus_move_shard_placement($s, '127.0.0.1', $shard_node, '127.0.0.1', $other_node, 'force_logical')" 2>&1 || true)
  expect_not "citus_move_shard_placement (force_logical) of shard $s succeeds" "$out" 'ERROR'
done
planned=$(q "$C" -c "SELECT count(*) FROM get_rebalance_table_shards_plan('orders', rebalance_strategy := 'by_shard_count')")
expect "the rebalancer has moves to make" "$planned" '^[1-9]'
out=$(q "$C" -c "SELECT rebalance_table_shards('orders', rebalance_strategy := 'by_shard_count', shard_transfer_mode := 'force_logical')" 2>&1 || true)
expect_not "rebalance_table_shards (logical replication) succeeds" "$out" 'ERROR'
expect "the shards are balanced again" "$(q "$C" -c "SELECT string_agg(n::text, ',' ORDER BY nodeport) FROM (SELECT nodeport, count(*) n FROM pg_dist_shard_placement JOIN pg_dist_shard USING (shardid) WHERE logicalrelid = 'orders'::regclass GROUP BY nodeport) s")" '^16,16$'
expect "the table answers from every shard" "$(q "$C" -c 'SELECT count(*) FROM orders')" "^$ROWS\$"

echo "== 5. lock queue: a conflicting lock held on a shard"
shard=$(q "$C" -c "SELECT shardid FROM pg_dist_shard WHERE logicalrelid = 'orders'::regclass ORDER BY shardid LIMIT 1")
shard_node=$(q "$C" -c "SELECT nodeport FROM pg_dist_shard_placement WHERE shardid = $shard")
# The same reads with nothing else running, for comparison (a figure, not a check).
for _ in $(seq 1 10); do
  s=$(date +%s%N); q "$C" -c 'SELECT count(*) FROM orders WHERE id = 7' >/dev/null; echo $(( ($(date +%s%N) - s) / 1000000 ))
done >"$WORK/reads-idle.ms"
echo "   reads through the coordinator with no DDL running, slowest: $(sort -n "$WORK/reads-idle.ms" | tail -1) ms"
# A session on the worker that read the shard and left its transaction open (idle in
# transaction) for 8 s.
{ echo "BEGIN; SELECT count(*) FROM orders_$shard;"; sleep 8; echo "COMMIT;"; } | q "$shard_node" >"$WORK/holder.out" 2>&1 &
holder=$!
sleep 1
# Reads through the coordinator meanwhile, each timed: none waits behind the ALTER.
(for _ in $(seq 1 20); do
   s=$(date +%s%N); q "$C" -c 'SELECT count(*) FROM orders WHERE id = 7' >/dev/null; echo $(( ($(date +%s%N) - s) / 1000000 ))
   sleep 0.1
 done) >"$WORK/reads.ms" &
reader=$!
out=$(q "$C" -c "SET pg_migration_guard.lock_retry_budget = '3s'" -c 'ALTER TABLE orders ADD COLUMN gift boolean' || true)
wait "$reader"
expect "55P03 on the coordinator" "$out" 'could not obtain an ACCESS EXCLUSIVE lock on public.orders within 3s'
expect "DETAIL names the shard and the holder's node" "$out" "holds AccessShareLock on public\\.orders_$shard\\)"
expect "HINT ends the holder by its global pid" "$out" 'pg_terminate_backend\([0-9]{11,}\)'
echo "$out" | sed 's/^/     /'
echo "   reads through the coordinator meanwhile (ms): $(sort -n "$WORK/reads.ms" | tr '\n' ' ')"
echo "   slowest read: $(sort -n "$WORK/reads.ms" | tail -1) ms"
# The HINT's SQL, run on the coordinator as shown, ends the holder on its worker.
hint_sql=$(sed -n 's/^HINT:.*end them: \(SELECT .*;\)$/\1/p' <<<"$out")
expect "the HINT's SQL runs on the coordinator" "$(q "$C" -c "$hint_sql")" '^t$'
wait "$holder" || true
expect "... and ended the holder's session on the worker" "$(cat "$WORK/holder.out")" 'terminating connection|server closed the connection'
# The same without the guard's lock-queue protection, for comparison (a figure, not a check).
{ echo "BEGIN; SELECT count(*) FROM orders_$shard;"; sleep 5; echo "COMMIT;"; } | q "$shard_node" >/dev/null 2>&1 &
holder=$!
sleep 1
(for _ in $(seq 1 10); do
   s=$(date +%s%N); q "$C" -c 'SELECT count(*) FROM orders WHERE id = 7' >/dev/null; echo $(( ($(date +%s%N) - s) / 1000000 ))
   sleep 0.1
 done) >"$WORK/reads-unprotected.ms" &
reader=$!
q "$C" -c "SET pg_migration_guard.lock_timeout_policy = off" -c 'ALTER TABLE orders ADD COLUMN unprotected boolean' >/dev/null 2>&1 || true
wait "$reader" "$holder" || true
echo "   without the protection (lock_timeout_policy = off), slowest read: $(sort -n "$WORK/reads-unprotected.ms" | tail -1) ms"
out=$(q "$C" -c 'ALTER TABLE orders ADD COLUMN gift boolean' || true)
expect_not "once the shard lock is released the ALTER runs" "$out" 'ERROR'
# The locks this transaction's own statements hold on the shards (through Citus' connections,
# which carry this session's global pid) are not in the way.
out=$(q "$C" -c 'BEGIN' -c "UPDATE orders SET note = 'gift' WHERE id = 7" -c 'ALTER TABLE orders ADD COLUMN gift_note text' -c 'COMMIT' || true)
expect_not "... also after the same transaction wrote to a shard" "$out" 'ERROR'

echo "== 6. the guard alone (no Citus) behaves as before"
start_cluster "$WORK/alone" "$ALONE" 'pg_migration_guard' '-c pg_migration_guard.citus_internal=trust'
q "$ALONE" -c 'CREATE EXTENSION pg_migration_guard' >/dev/null
q "$ALONE" -c "CREATE TABLE orders AS SELECT g AS id, 'order note ' || g AS note FROM generate_series(1, 100000) g" -c 'ANALYZE orders' >/dev/null
out=$(q "$ALONE" -c 'CREATE INDEX orders_note_idx ON orders (note)' || true)
expect "a plain table is judged with its own size" "$out" 'public\.orders \([0-9]+ (kB|MB), about 100000 rows\)'
expect_not "... no shards" "$out" 'shard'
echo "   judging time of that CREATE INDEX without Citus: median $(q "$ALONE" -c \
  "SELECT round(median_us) || ' us, p99 ' || round(p99_us) || ' us' FROM pg_migration_guard.judge_timing('CREATE INDEX orders_note_idx ON orders (note)', 50)")"
out=$(PGAPPNAME="citus_internal gpid=10000000001" q "$ALONE" -c 'CREATE INDEX orders_note_idx ON orders (note)' || true)
expect "an 'internal' application_name means nothing without Citus" "$out" 'ERROR:  require-concurrent-index-creation'
expect "relations_size measures without Citus too" "$(q "$ALONE" -c "SELECT found, bytes > 0 FROM pg_migration_guard.relations_size(ARRAY['public.orders', 'public.nothing'])")" '^1\|t$'

echo "== 7. a worker that does not preload the guard"
start_cluster "$WORK/c2" "$C2" 'citus,pg_migration_guard' "$citus_opts"
start_cluster "$WORK/w3" "$W3" 'citus' "$citus_opts"
for port in "$C2" "$W3"; do q "$port" -c 'CREATE EXTENSION citus' >/dev/null; done
q "$C2" -c "SELECT citus_set_coordinator_host('127.0.0.1', $C2)" -c "SELECT citus_add_node('127.0.0.1', $W3)" >/dev/null
out=$(q "$C2" -c 'CREATE EXTENSION pg_migration_guard' || true)
expect "Citus propagates CREATE EXTENSION, which the worker refuses" "$out" 'must be loaded via shared_preload_libraries'
# The guard on the coordinator alone: it cannot measure the shards, and fails closed.
q "$C2" -c 'SET citus.enable_ddl_propagation = off' -c 'CREATE EXTENSION pg_migration_guard' >/dev/null
q "$C2" -c 'CREATE TABLE t (id bigint PRIMARY KEY, v text)' -c "SELECT create_distributed_table('t', 'id', shard_count := 4)" \
  -c "INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 1000) g" >/dev/null
out=$(q "$C2" -c 'CREATE INDEX t_v_idx ON t (v)' || true)
expect "... the shards' size is unknown, judged as large" "$out" 'public\.t \(size unknown over 4 shards\)'

if [ "$failures" -gt 0 ]; then
  echo "== tests/citus: $failures check(s) failed; clusters' logs in $WORK/*/server.log"
  exit 1
fi
echo "== tests/citus: all checks passed"

#!/usr/bin/env bash
# Overhead benchmark. Not part of the test command: run by hand, ~30 minutes.
#   ./bench/run.sh            # row 3: DDL_ROUNDS=12, clusters in BENCH_DIR=/dev/shm/pgmg-bench
#                             # rows 1-2: TPS_ROUNDS=6 TPS_SECONDS=30 CLIENTS=4 SCALE=10 PIN=1
#   GUARD_LIB_DIR=/var/tmp/pgmg/lib/<sha256 prefix> INSTALL=0 ./bench/run.sh
#                             # measure a build installed earlier (no cargo pgrx package);
#                             # without GUARD_LIB_DIR bench/tps.sh finds no library, and the
#                             # row 3-4 clusters load pg_migration_guard from $libdir
#   TPS=0 ./bench/run.sh      # rows 3-4 only (rows 1-2 take ~25 minutes of the run)
# Prints one table: each row measured with and without the guard in the same run,
# changing the order every round (rows 1-2: ABBA; row 3: none, guard and pgaudit in
# rotation), medians and spread (min..max) over the rounds.
#   1. pgbench TPC-B-like and select-only (-S)       TPS ratio guard/none    (bench/tps.sh:
#   2. utility-heavy script (BEGIN; SET LOCAL; SHOW; SELECT 1; COMMIT)   TPS ratio   one
#      cluster restarted with and without the preload, ABBA, pinned client and server)
#   3. DDL-heavy migration (3000 allowed DDL statements)   wall-time ratio guard/none and
#      pgaudit (pgaudit.log = 'ddl')/none
#   4. decision latency of one ALTER TABLE (pg_migration_guard.judge_timing), median and p99
# Instruction counts for rows 1-2 (repeatable on a busy machine): bench/callgrind.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
CLIENTS=${CLIENTS:-4}
SCALE=${SCALE:-10}

./scripts/setup.sh
dpkg-query -W -f='${Status}' postgresql-15-pgaudit 2>/dev/null | grep -q "install ok installed" \
  || { apt-get install -y -qq postgresql-15-pgaudit >/dev/null; }
[ "${INSTALL:-1}" = 0 ] || install_extension

if [ "${TPS:-1}" != 0 ]; then
  echo "== 1/2: bench/tps.sh" >&2
  ROUNDS=${TPS_ROUNDS:-6} SECONDS_PER_RUN=${TPS_SECONDS:-30} CLIENTS=$CLIENTS SCALE=$SCALE ./bench/tps.sh >&2
fi
# The clusters of rows 3-4 live on tmpfs (BENCH_DIR): on ext4, creating a file costs more
# the more files were deleted in the last minute (ext4's inode allocator skips
# recently deleted inodes, fs/ext4/ialloc.c recently_deleted(); perf showed it at 30 % of
# a run), so each round's DROP of 600 tables made the next rounds 2-2.5x slower.
W=${BENCH_DIR:-/dev/shm/pgmg-bench}
install -d "$W"
trap 'for c in none guard pgaudit; do stop_cluster "$W/$c"; done' EXIT
start_cluster "$W/none" 55441 ''
start_cluster "$W/guard" 55442 'pg_migration_guard'
start_cluster "$W/pgaudit" 55443 'pgaudit'
port() { case $1 in none) echo 55441;; guard) echo 55442;; pgaudit) echo 55443;; esac; }
psql_c() { psql -X -q -h /tmp -p "$(port "$1")" -U postgres -d postgres "${@:2}"; }
psql_c guard -c 'CREATE EXTENSION pg_migration_guard'
psql_c pgaudit -c "ALTER SYSTEM SET pgaudit.log = 'ddl'" -c 'SELECT pg_reload_conf()' >/dev/null
# Row 3 runs with autovacuum off in all three clusters (each round's reset VACUUMs
# instead): an autovacuum of pg_attribute landing inside one configuration's timed run
# moved it by 50 % in the first version of this script.
for c in none guard pgaudit; do
  psql_c $c -c 'ALTER SYSTEM SET autovacuum = off' -c 'SELECT pg_reload_conf()' >/dev/null
done
stats() { # [DECIMALS, default 1]: prints "median min max" of the numbers on stdin
  sort -g | awk -v d="${1:-1}" '{a[NR]=$1} END{m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; f="%." d "f"; printf f " " f " " f, m, a[1], a[NR]}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", a/b}'; }

declare -A R
echo "== 3: DDL-heavy migration" >&2
python3 - > "$W/ddl.sql" <<'PY'
print("SET client_min_messages = warning;")
for i in range(600):
    t = f"bench_ddl.t{i}"
    print(f"CREATE TABLE {t} (id bigint PRIMARY KEY, name text);")
    print(f"ALTER TABLE {t} ADD COLUMN created_at timestamptz DEFAULT now();")
    print(f"CREATE INDEX t{i}_name_idx ON {t} (name);")
    print(f"COMMENT ON TABLE {t} IS 'table {i}';")
    print(f"ALTER TABLE {t} ADD COLUMN note varchar(40);")
PY
# Untimed before every run: drop the previous run's 600 tables, CHECKPOINT so no
# checkpoint lands inside a timed run, and on the guard cluster wait until the audit
# writer has inserted every queued record, so its work never spills into the next
# configuration's timed run (the writer's own time is what a migration leaves behind on
# a busy server, not part of the migration's wall time: docs/benchmarks.md).
ddl_reset() {
  psql_c "$1" -c 'SET client_min_messages = warning' \
    -c 'DROP SCHEMA IF EXISTS bench_ddl CASCADE' -c 'CREATE SCHEMA bench_ddl' \
    -c 'VACUUM' -c 'CHECKPOINT'
  [ "$1" != guard ] || drain_audit_queue
}
# cluster_cpu CONFIG: CPU milliseconds (user + system) used so far by the cluster's
# processes: the postmaster's own and its reaped children's (cutime, cstime: backends and
# audit writers that have exited) plus its live children's (proc(5), /proc/PID/stat
# fields 14-17). Counts the audit writer's work, which wall time on 2 cores only shows
# when it competes with the migration.
cluster_cpu() {
  local pm
  pm=$(head -1 "$W/$1/data/postmaster.pid")
  { cat "/proc/$pm/stat"; for c in $(cat "/proc/$pm/task/$pm/children"); do cat "/proc/$c/stat" 2>/dev/null || true; done; } |
    sed 's/^.*) //' | awk -v pm="$pm" -v hz="$(getconf CLK_TCK)" '
      NR == 1 { t += $12 + $13 + $14 + $15; next }   # fields 14-17, counted after "(comm) "
      { t += $12 + $13 }
      END { printf "%d", t * 1000 / hz }'
}
drain_audit_queue() {
  local i
  for i in $(seq 1 600); do
    [ "$(psql_c guard -At -c 'SELECT pending_records FROM pg_migration_guard.audit_queue_status()')" = 0 ] && return
    sleep 0.1
  done
  echo "audit queue not drained after 60 s" >&2; exit 1
}
ddl_time() { # config -> "wall_ms cpu_ms": the migration's wall time, and the cluster's
  local s e c0 c1       # CPU time until the audit writer has inserted its records
  ddl_reset "$1"
  c0=$(cluster_cpu "$1")
  s=$(date +%s%N)
  psql_c "$1" -v ON_ERROR_STOP=1 -f "$W/ddl.sql" >/dev/null
  e=$(date +%s%N)
  [ "$1" != guard ] || drain_audit_queue
  sleep 0.2   # the postmaster reaps the backend
  c1=$(cluster_cpu "$1")
  echo "$(( (e - s) / 1000000 )) $(( c1 - c0 ))"
}
DDL_ROUNDS=${DDL_ROUNDS:-12}
dn="" dg="" da="" rg="" ra="" cg="" ca=""
for r in $(seq 1 "$DDL_ROUNDS"); do
  case $(( r % 3 )) in 1) order="none guard pgaudit";; 2) order="guard pgaudit none";; *) order="pgaudit none guard";; esac
  declare -A t=() u=()
  for c in $order; do read -r t[$c] u[$c] < <(ddl_time "$c"); done
  dn+="${t[none]}"$'\n' dg+="${t[guard]}"$'\n' da+="${t[pgaudit]}"$'\n'
  # paired per-round ratios: each round's three runs are seconds apart, so a
  # slow phase of the machine moves numerator and denominator together
  rg+=$(ratio "${t[guard]}" "${t[none]}")$'\n' ra+=$(ratio "${t[pgaudit]}" "${t[none]}")$'\n'
  cg+=$(ratio "${u[guard]}" "${u[none]}")$'\n' ca+=$(ratio "${u[pgaudit]}" "${u[none]}")$'\n'
  echo "round $r: wall none ${t[none]} ms, guard ${t[guard]} ms, pgaudit ${t[pgaudit]} ms;" \
    "server CPU none ${u[none]} ms, guard ${u[guard]} ms, pgaudit ${u[pgaudit]} ms" >&2
done
R[ddl.none]=$(printf '%s' "$dn" | stats)
R[ddl.guard]=$(printf '%s' "$dg" | stats)
R[ddl.pgaudit]=$(printf '%s' "$da" | stats)
R[ddl.rg]=$(printf '%s' "$rg" | stats 3)
R[ddl.ra]=$(printf '%s' "$ra" | stats 3)
R[ddl.cg]=$(printf '%s' "$cg" | stats 3)
R[ddl.ca]=$(printf '%s' "$ca" | stats 3)
psql_c guard -At -c "SELECT 'audit rows in the guard cluster: ' || count(*) FROM pg_migration_guard.audit_log" >&2

echo "== 4: decision latency" >&2
psql_c guard -c 'CREATE TABLE IF NOT EXISTS bench_orders AS SELECT g AS id, g % 7 AS qty FROM generate_series(1, 200000) g' >/dev/null
lat=$(psql_c guard -At -F ' ' -c "SELECT round(median_us::numeric, 1), round(p99_us::numeric, 1), decision
  FROM pg_migration_guard.judge_timing('ALTER TABLE bench_orders ADD COLUMN note text', 20000)")
lat2=$(psql_c guard -At -F ' ' -c "SELECT round(median_us::numeric, 1), round(p99_us::numeric, 1), decision
  FROM pg_migration_guard.judge_timing('ALTER TABLE bench_orders ALTER COLUMN qty TYPE bigint', 20000)")

med() { echo "$1" | cut -d' ' -f1; }
spread() { echo "$1" | awk '{printf "%s..%s", $2, $3}'; }
echo
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo)  $(psql_c none -At -c 'SHOW server_version')"
echo
echo "| row | workload | none (median, min..max) | guard (median, min..max) | ratio guard/none | target |"
echo "|---|---|---|---|---|---|"
# bench/tps.sh's summary: workload, none median min max, guard median min max, per-round
# ratio median min max, mean, 95 % confidence half-width.
while IFS=$'\t' read -r k nm nlo nhi gm glo ghi rm rlo rhi rmean rci; do
  case $k in tpcb) n=1; name="pgbench TPC-B-like (TPS)";; select) n=1; name="pgbench select-only (TPS)";; *) n=2; name="utility-heavy script (TPS)";; esac
  echo "| $n | $name | $nm ($nlo..$nhi) | $gm ($glo..$ghi) | $rm (per round $rlo..$rhi; mean $rmean ± $rci) | >= 0.99 |"
done < <([ "${TPS:-1}" = 0 ] || cat /tmp/pgmg-bench-tps/result.tsv)
echo "| 3 | 3000 DDL statements (wall ms) | $(med "${R[ddl.none]}") ($(spread "${R[ddl.none]}")) | $(med "${R[ddl.guard]}") ($(spread "${R[ddl.guard]}")) | $(med "${R[ddl.rg]}") (per round $(spread "${R[ddl.rg]}")); pgaudit/none $(med "${R[ddl.ra]}") (per round $(spread "${R[ddl.ra]}"); pgaudit $(med "${R[ddl.pgaudit]}") ms) | <= 1.05 and <= pgaudit |"
echo "| 3 | the same, server CPU (backend + audit writer, ms) | | | $(med "${R[ddl.cg]}") (per round $(spread "${R[ddl.cg]}")); pgaudit/none $(med "${R[ddl.ca]}") (per round $(spread "${R[ddl.ca]}")) | |"
echo "| 4 | judge one ALTER TABLE ADD COLUMN (µs) | | median $(echo $lat | cut -d' ' -f1), p99 $(echo $lat | cut -d' ' -f2) ($(echo $lat | cut -d' ' -f3)) | | median <= 20 µs |"
echo "| 4 | judge one ALTER COLUMN TYPE bigint (µs) | | median $(echo $lat2 | cut -d' ' -f1), p99 $(echo $lat2 | cut -d' ' -f2) ($(echo $lat2 | cut -d' ' -f3)) | | |"

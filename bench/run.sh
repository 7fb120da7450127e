#!/usr/bin/env bash
# Overhead benchmark. Not part of the test command: run by hand, ~40 minutes (rows 3-5:
# ~15 minutes on a quiet machine).
#   ./bench/run.sh            # rows 1-2: TPS_ROUNDS=6 TPS_SECONDS=30 CLIENTS=4 SCALE=10 PIN=1
#                             # rows 3-5: clusters in BENCH_DIR=/dev/shm/pgmg-bench, ports
#                             # PORT_BASE=55441.., DDL_TABLES=4200 DDL_ROUNDS=4,
#                             # SCALE_PARTITIONS=2000 SCALE_STATEMENTS=10 SCALE_ROUNDS=8
#   GUARD_LIB_DIR=/var/tmp/pgmg/lib/<sha256 prefix> INSTALL=0 ./bench/run.sh
#                             # measure a build installed earlier (no cargo pgrx package);
#                             # without GUARD_LIB_DIR bench/tps.sh finds no library, and the
#                             # row 3-5 clusters load pg_migration_guard from $libdir
#   TPS=0 ./bench/run.sh      # rows 3-5 only (rows 1-2 take ~25 minutes of the run)
#   CONFIGS="none guard pgaudit evtrig flagged before" BEFORE_LIB_DIR=<dir> TPS=0 ./bench/run.sh
#                             # also the guard with log_decisions = flagged, and an earlier
#                             # build of the library, in the same rounds
# Prints one table: each row measured with and without the guard in the same run,
# changing the order every round (rows 1-2: ABBA; rows 3 and 5: the configurations in
# rotation, each starting a round in turn), medians and spread (min..max) over the rounds;
# then rows 3 and 5 side by side, one line per configuration, with the machine's load.
#   1. pgbench TPC-B-like and select-only (-S)       TPS ratio guard/none    (bench/tps.sh:
#   2. utility-heavy script (BEGIN; SET LOCAL; SHOW; SELECT 1; COMMIT)   TPS ratio   one
#      cluster restarted with and without the preload, ABBA, pinned client and server)
#   3. DDL-heavy migration (DDL_TABLES x 5 allowed DDL statements): wall time, CPU time of
#      the migration's backend and of the whole cluster, each as a ratio to none, for
#      none (nothing preloaded), guard (defaults), pgaudit (pgaudit.log = 'ddl') and evtrig
#      (the event-trigger audit of bench/evtrig.sql)
#   4. decision latency of one ALTER TABLE (pg_migration_guard.judge_timing), median and p99
#   5. ALTER TABLE on a parent of SCALE_PARTITIONS partitions (SET STATISTICS and ADD
#      COLUMN, which recurse to every partition), the same four configurations
# Instruction counts (repeatable on a busy machine): bench/callgrind.sh, rows 1-2 and,
# with WORKLOADS=ddl, row 3.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
CLIENTS=${CLIENTS:-4}
SCALE=${SCALE:-10}

./scripts/setup.sh
# pgaudit for the pgaudit configuration of rows 3 and 5 (Debian's package for 15), once;
# the package lists are refreshed only when the first attempt fails.
if ! dpkg-query -W -f='${Status}' postgresql-15-pgaudit 2>/dev/null | grep -q "install ok installed"; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq postgresql-15-pgaudit >/dev/null \
    || { apt-get update -qq && apt-get install -y -qq postgresql-15-pgaudit >/dev/null; }
fi
[ "${INSTALL:-1}" = 0 ] || install_extension

if [ "${TPS:-1}" != 0 ]; then
  echo "== 1/2: bench/tps.sh" >&2
  ROUNDS=${TPS_ROUNDS:-6} SECONDS_PER_RUN=${TPS_SECONDS:-30} CLIENTS=$CLIENTS SCALE=$SCALE ./bench/tps.sh >&2
fi
# The clusters of rows 3-5 live on tmpfs (BENCH_DIR): on ext4, creating a file costs more
# the more files were deleted in the last minute (ext4's inode allocator skips
# recently deleted inodes, fs/ext4/ialloc.c recently_deleted(); perf showed it at 30 % of
# a run), so each round's DROP of the migration's tables made the next rounds 2-2.5x slower.
W=${BENCH_DIR:-/dev/shm/pgmg-bench}
# Ports PORT_BASE .. PORT_BASE+5: none, guard, pgaudit, evtrig, flagged, before. CONFIGS
# selects them (none must be first: the base of the ratios). Not measured by default:
# flagged, the guard with pg_migration_guard.log_decisions = flagged, and before, the guard
# library in BEFORE_LIB_DIR (an earlier build, to compare two builds in one run).
PORT_BASE=${PORT_BASE:-55441}
CONFIGS=${CONFIGS:-none guard pgaudit evtrig}
install -d "$W"
trap 'for c in $CONFIGS; do stop_cluster "$W/$c"; done' EXIT
# max_locks_per_transaction: each round's reset drops the migration's tables in one
# transaction (five relations per table), which the default 64 cannot hold.
opts="-c max_locks_per_transaction=1024"
port() { case $1 in none) echo $((PORT_BASE));; guard) echo $((PORT_BASE + 1));; pgaudit) echo $((PORT_BASE + 2));; evtrig) echo $((PORT_BASE + 3));; flagged) echo $((PORT_BASE + 4));; before) echo $((PORT_BASE + 5));; esac; }
psql_c() { psql -X -q -h /tmp -p "$(port "$1")" -U postgres -d postgres "${@:2}"; }
for c in $CONFIGS; do
  case $c in
    none|evtrig) start_cluster "$W/$c" "$(port $c)" '' "$opts";;
    guard) start_cluster "$W/$c" "$(port $c)" 'pg_migration_guard' "$opts ${GUARD_OPTIONS:-}";;
    flagged) start_cluster "$W/$c" "$(port $c)" 'pg_migration_guard' "$opts -c pg_migration_guard.log_decisions=flagged ${GUARD_OPTIONS:-}";;
    before) GUARD_LIB_DIR=$BEFORE_LIB_DIR start_cluster "$W/$c" "$(port $c)" 'pg_migration_guard' "$opts ${GUARD_OPTIONS:-}";;
    pgaudit) start_cluster "$W/$c" "$(port $c)" 'pgaudit' "$opts";;
    *) echo "unknown configuration $c" >&2; exit 1;;
  esac
done
is_guard() { [ "$1" = guard ] || [ "$1" = flagged ] || [ "$1" = before ]; }
has() { case " $CONFIGS " in *" $1 "*) return 0;; esac; return 1; }
for c in guard flagged before; do ! has $c || psql_c $c -c 'CREATE EXTENSION pg_migration_guard'; done
! has pgaudit || psql_c pgaudit -c "ALTER SYSTEM SET pgaudit.log = 'ddl'" -c 'SELECT pg_reload_conf()' >/dev/null
# evtrig: the do-it-yourself DDL audit many teams deploy instead of an extension
# (bench/evtrig.sql): an event trigger inserting a row per DDL command into a table.
! has evtrig || psql_c evtrig -v ON_ERROR_STOP=1 -f bench/evtrig.sql >/dev/null
# Rows 3 and 5 run with autovacuum off in all the clusters (each round's reset VACUUMs
# instead): an autovacuum of pg_attribute landing inside one configuration's timed run
# moved it by 50 % in the first version of this script.
for c in $CONFIGS; do
  psql_c $c -c 'ALTER SYSTEM SET autovacuum = off' -c 'SELECT pg_reload_conf()' >/dev/null
done
stats() { # [DECIMALS, default 1]: prints "median min max" of the numbers on stdin
  sort -g | awk -v d="${1:-1}" '{a[NR]=$1} END{m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; f="%." d "f"; printf f " " f " " f, m, a[1], a[NR]}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", a/b}'; }
# rotation R: the configurations in the order of round R (each starts a round in turn)
rotation() { local a=($CONFIGS) i; for i in "${!a[@]}"; do printf '%s ' "${a[$(( (i + $1) % ${#a[@]} ))]}"; done; }
loadavg() { cut -d' ' -f1 /proc/loadavg; }

declare -A R
DDL_TABLES=${DDL_TABLES:-4200}
echo "== 3: DDL-heavy migration ($((DDL_TABLES * 5)) statements)" >&2
python3 - "$DDL_TABLES" > "$W/ddl.sql" <<'PY'
import sys
print("SET client_min_messages = warning;")
for i in range(int(sys.argv[1])):
    t = f"bench_ddl.t{i}"
    print(f"CREATE TABLE {t} (id bigint PRIMARY KEY, name text);")
    print(f"ALTER TABLE {t} ADD COLUMN created_at timestamptz DEFAULT now();")
    print(f"CREATE INDEX t{i}_name_idx ON {t} (name);")
    print(f"COMMENT ON TABLE {t} IS 'table {i}';")
    print(f"ALTER TABLE {t} ADD COLUMN note varchar(40);")
PY
# Untimed before every run: drop the previous run's tables, CHECKPOINT so no
# checkpoint lands inside a timed run, and on the guard cluster wait until the audit
# writer has inserted every queued record, so its work never spills into the next
# configuration's timed run (the writer's own time is what a migration leaves behind on
# a busy server, not part of the migration's wall time: docs/benchmarks.md).
ddl_reset() {
  psql_c "$1" -c 'SET client_min_messages = warning' \
    -c 'DROP SCHEMA IF EXISTS bench_ddl CASCADE' -c 'CREATE SCHEMA bench_ddl' \
    -c 'VACUUM' -c 'CHECKPOINT'
  ! is_guard "$1" || drain_audit_queue "$1"
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
drain_audit_queue() { # CONFIG
  local i
  for i in $(seq 1 1200); do
    [ "$(psql_c "$1" -At -c 'SELECT pending_records FROM pg_migration_guard.audit_queue_status()')" = 0 ] && return
    sleep 0.1
  done
  echo "audit queue not drained after 120 s" >&2; exit 1
}
# The migration's own backend: its pid (first) and, at the end, its CPU time in clock
# ticks (utime + stime, proc(5) fields 14-15, counted after "(comm) "), printed by psql.
printf '%s\n' 'SELECT pg_backend_pid() AS bench_pid \gset' > "$W/head.sql"
printf '%s\n' '\setenv BENCH_PID :bench_pid' \
  '\! sed "s/^.*) //" /proc/$BENCH_PID/stat | awk "{print \"backend-ticks\", \$12 + \$13}"' > "$W/tail.sql"
ddl_time() { # config file reset -> "wall_ms cpu_ms backend_ms": the run's wall time, the
  local s e c0 c1 out   # cluster's CPU time until the audit writer has inserted its
  "$3" "$1"             # records, and the CPU time of the migration's backend alone
  sleep 0.3   # the postmaster reaps the reset's backend, whose CPU time (the DROP of the
              # previous run's tables) must not count in this run's
  c0=$(cluster_cpu "$1")
  s=$(date +%s%N)
  out=$(psql_c "$1" -v ON_ERROR_STOP=1 -f "$W/head.sql" -f "$2" -f "$W/tail.sql")
  e=$(date +%s%N)
  ! is_guard "$1" || drain_audit_queue "$1"
  sleep 0.2   # the postmaster reaps the backend
  c1=$(cluster_cpu "$1")
  echo "$(( (e - s) / 1000000 )) $(( c1 - c0 )) $(echo "$out" | awk -v hz="$(getconf CLK_TCK)" '$1 == "backend-ticks" {printf "%d", $2 * 1000 / hz}')"
}
# measure ROWKEY FILE RESET ROUNDS: runs FILE on every configuration ROUNDS times in
# rotating order (RESET CONFIG before each run, untimed) and stores in R[ROWKEY.*] the
# median (min..max) of each configuration's wall time and of its per-round ratios to none.
measure() {
  local key=$1 file=$2 reset=$3 rounds=$4 r c
  declare -A tw=() rw=() rc=() rb=()
  local loads=""
  for r in $(seq 1 "$rounds"); do
    declare -A t=() u=() b=()
    loads+="$(loadavg)"$'\n'
    for c in $(rotation "$r"); do read -r t[$c] u[$c] b[$c] < <(ddl_time "$c" "$file" "$reset"); done
    local line="round $r ($(rotation "$r")): wall"
    for c in $CONFIGS; do
      tw[$c]+="${t[$c]}"$'\n'
      # paired per-round ratios: each round's runs are seconds apart, so a slow phase of
      # the machine moves numerator and denominator together
      rw[$c]+=$(ratio "${t[$c]}" "${t[none]}")$'\n'
      rc[$c]+=$(ratio "${u[$c]}" "${u[none]}")$'\n'
      rb[$c]+=$(ratio "${b[$c]}" "${b[none]}")$'\n'
      line+=" $c ${t[$c]} ms"
    done
    line+="; server CPU"; for c in $CONFIGS; do line+=" $c ${u[$c]} ms"; done
    line+="; backend CPU"; for c in $CONFIGS; do line+=" $c ${b[$c]} ms"; done
    echo "$line; load average $(loadavg)" >&2
  done
  loads+="$(loadavg)"$'\n'
  for c in $CONFIGS; do
    R[$key.$c]=$(printf '%s' "${tw[$c]}" | stats)
    R[$key.r.$c]=$(printf '%s' "${rw[$c]}" | stats 3)
    R[$key.c.$c]=$(printf '%s' "${rc[$c]}" | stats 3)
    R[$key.b.$c]=$(printf '%s' "${rb[$c]}" | stats 3)
  done
  R[$key.load]=$(printf '%s' "$loads" | stats 2)
}
measure ddl "$W/ddl.sql" ddl_reset "${DDL_ROUNDS:-4}"
psql_c guard -At -c "SELECT 'audit rows in the guard cluster: ' || count(*) FROM pg_migration_guard.audit_log" >&2
! has evtrig || psql_c evtrig -At -c "SELECT 'rows in the event trigger''s table: ' || count(*) FROM ddl_audit" >&2

# Row 5: the same cheap DDL on a partitioned table with SCALE_PARTITIONS partitions, which
# PostgreSQL applies to every partition (ATSimpleRecursion, and ATExecAddColumn's
# recursion): SET STATISTICS SCALE_STATEMENTS times, then one nullable ADD COLUMN (a new
# column each run). The guard predicts and takes ahead a lock on every partition.
SCALE_PARTITIONS=${SCALE_PARTITIONS:-2000}
SCALE_STATEMENTS=${SCALE_STATEMENTS:-10}
if [ "$SCALE_PARTITIONS" -gt 0 ]; then
echo "== 5: ALTER TABLE on a parent with $SCALE_PARTITIONS partitions" >&2
for c in $CONFIGS; do
  psql_c "$c" -c 'SET client_min_messages = warning' -c 'DROP SCHEMA IF EXISTS bench_ddl CASCADE' \
    -c 'CREATE SCHEMA bench_scale' -c 'CREATE TABLE bench_scale.parent (id int, v int) PARTITION BY RANGE (id)' >/dev/null
  python3 -c "
import sys
for i in range(int(sys.argv[1])):
    print(f'CREATE TABLE bench_scale.p{i} PARTITION OF bench_scale.parent FOR VALUES FROM ({i * 1000}) TO ({(i + 1) * 1000});')
" "$SCALE_PARTITIONS" | psql_c "$c" -v ON_ERROR_STOP=1 >/dev/null
  psql_c "$c" -c 'VACUUM' -c 'CHECKPOINT'
done
scale_reset() { # writes the next run's statements (a fresh column name each run; the
  local scale_run  # counter is a file: ddl_time runs in a subshell)
  scale_run=$(( $(cat "$W/scale.n" 2>/dev/null || echo 0) + 1 ))
  echo "$scale_run" > "$W/scale.n"
  { for i in $(seq 1 "$SCALE_STATEMENTS"); do
      echo "ALTER TABLE bench_scale.parent ALTER COLUMN v SET STATISTICS $((100 + i % 2));"
    done
    echo "ALTER TABLE bench_scale.parent ADD COLUMN c$scale_run int;"
  } > "$W/scale.sql"
  psql_c "$1" -c 'CHECKPOINT'
  ! is_guard "$1" || drain_audit_queue "$1"
}
rm -f "$W/scale.n"
measure scale "$W/scale.sql" scale_reset "${SCALE_ROUNDS:-8}"
fi

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
ms() { echo "$(med "$1") ($(spread "$1"))"; }
cell() { echo "$(med "${R[$1.r.$2]}") ($(spread "${R[$1.r.$2]}"))"; }
echo "| 3 | $((DDL_TABLES * 5)) DDL statements (wall ms) | $(ms "${R[ddl.none]}") | $(ms "${R[ddl.guard]}") | $(cell ddl guard); pgaudit/none $(cell ddl pgaudit); evtrig/none $(cell ddl evtrig) | <= evtrig/none (stretch 1.10) |"
echo "| 3 | the same, server CPU (backend + audit writer, ms) | | | $(med "${R[ddl.c.guard]}") ($(spread "${R[ddl.c.guard]}")); pgaudit/none $(med "${R[ddl.c.pgaudit]}"); evtrig/none $(med "${R[ddl.c.evtrig]}") | |"
echo "| 4 | judge one ALTER TABLE ADD COLUMN (µs) | | median $(echo $lat | cut -d' ' -f1), p99 $(echo $lat | cut -d' ' -f2) ($(echo $lat | cut -d' ' -f3)) | | median <= 20 µs |"
echo "| 4 | judge one ALTER COLUMN TYPE bigint (µs) | | median $(echo $lat2 | cut -d' ' -f1), p99 $(echo $lat2 | cut -d' ' -f2) ($(echo $lat2 | cut -d' ' -f3)) | | |"
echo "| 5 | ALTER TABLE on a parent of $SCALE_PARTITIONS partitions, $((SCALE_STATEMENTS + 1)) statements (wall ms) | $(ms "${R[scale.none]}") | $(ms "${R[scale.guard]}") | $(cell scale guard); pgaudit/none $(cell scale pgaudit); evtrig/none $(cell scale evtrig) | within noise of 1 |"
echo
echo "Row 3 side by side: $((DDL_TABLES * 5)) DDL statements, ${DDL_ROUNDS:-4} rounds in rotating order; row 5: ${SCALE_ROUNDS:-8} rounds;"
echo "load average (1 min) at the rounds' starts: row 3 median $(med "${R[ddl.load]}") (max $(echo "${R[ddl.load]}" | cut -d' ' -f3)), row 5 median $(med "${R[scale.load]}") (max $(echo "${R[scale.load]}" | cut -d' ' -f3))"
echo
echo "| configuration | row 3 wall ms, median (min..max) | row 3 wall ratio to none, per round | row 3 backend CPU ratio, per round | row 3 server CPU ratio (with the audit writer) | row 5 wall ms | row 5 wall ratio to none, per round | row 5 backend CPU ratio, per round |"
echo "|---|---|---|---|---|---|---|---|"
for c in $CONFIGS; do
  case $c in
    none) name="none (nothing preloaded)";; guard) name="guard (pg_migration_guard, defaults)";;
    pgaudit) name="pgaudit (pgaudit.log = 'ddl')";; flagged) name="guard with log_decisions = flagged";; before) name="guard, library in BEFORE_LIB_DIR";; evtrig) name="evtrig (ddl_command_end event trigger inserting into a table)";;
  esac
  echo "| $name | $(ms "${R[ddl.$c]}") | $(cell ddl "$c") | $(med "${R[ddl.b.$c]}") ($(spread "${R[ddl.b.$c]}")) | $(med "${R[ddl.c.$c]}") | $(ms "${R[scale.$c]}") | $(cell scale "$c") | $(med "${R[scale.b.$c]}") ($(spread "${R[scale.b.$c]}")) |"
done

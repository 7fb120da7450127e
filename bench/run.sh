#!/usr/bin/env bash
# Overhead benchmark (issue 7). Not part of the test command: run by hand, ~30 minutes.
#   ./bench/run.sh            # rows 3-4: ROUNDS=4 by default
#                             # rows 1-2: TPS_ROUNDS=6 TPS_SECONDS=30 CLIENTS=4 SCALE=10 PIN=1
#   INSTALL=0 ./bench/run.sh  # measure the build already installed (no cargo pgrx install)
# Prints one table: each row measured with and without the guard in the same run,
# alternating A/B order every round, medians and spread (min..max) over the rounds.
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
ROUNDS=${ROUNDS:-4}
CLIENTS=${CLIENTS:-4}
SCALE=${SCALE:-10}

./scripts/setup.sh
dpkg-query -W -f='${Status}' postgresql-15-pgaudit 2>/dev/null | grep -q "install ok installed" \
  || { apt-get install -y -qq postgresql-15-pgaudit >/dev/null; }
[ "${INSTALL:-1}" = 0 ] || install_extension

echo "== 1/2: bench/tps.sh" >&2
ROUNDS=${TPS_ROUNDS:-6} SECONDS_PER_RUN=${TPS_SECONDS:-30} CLIENTS=$CLIENTS SCALE=$SCALE ./bench/tps.sh >&2
W=/tmp/pgmg-bench
install -d "$W"
trap 'for c in none guard pgaudit; do stop_cluster "$W/$c"; done' EXIT
start_cluster "$W/none" 55441 ''
start_cluster "$W/guard" 55442 'pg_migration_guard'
start_cluster "$W/pgaudit" 55443 'pgaudit'
port() { case $1 in none) echo 55441;; guard) echo 55442;; pgaudit) echo 55443;; esac; }
psql_c() { psql -X -q -h /tmp -p "$(port "$1")" -U postgres -d postgres "${@:2}"; }
psql_c guard -c 'CREATE EXTENSION pg_migration_guard'
psql_c pgaudit -c "ALTER SYSTEM SET pgaudit.log = 'ddl'" -c 'SELECT pg_reload_conf()' >/dev/null
stats() { # prints "median min max" of the numbers on stdin
  sort -g | awk '{a[NR]=$1} END{m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.1f %.1f %.1f", m, a[1], a[NR]}'
}

declare -A R
echo "== 3: DDL-heavy migration" >&2
python3 - > "$W/ddl.sql" <<'PY'
print("SET client_min_messages = warning;")
print("DROP SCHEMA IF EXISTS bench_ddl CASCADE; CREATE SCHEMA bench_ddl;")
for i in range(600):
    t = f"bench_ddl.t{i}"
    print(f"CREATE TABLE {t} (id bigint PRIMARY KEY, name text);")
    print(f"ALTER TABLE {t} ADD COLUMN created_at timestamptz DEFAULT now();")
    print(f"CREATE INDEX t{i}_name_idx ON {t} (name);")
    print(f"COMMENT ON TABLE {t} IS 'table {i}';")
    print(f"ALTER TABLE {t} ADD COLUMN note varchar(40);")
PY
ddl_time() { # config -> seconds
  local s e
  s=$(date +%s.%N)
  psql_c "$1" -v ON_ERROR_STOP=1 -f "$W/ddl.sql" >/dev/null
  e=$(date +%s.%N)
  echo "$e - $s" | bc -l
}
dn="" dg="" da=""
for r in $(seq 1 "$ROUNDS"); do
  case $(( r % 3 )) in 1) order="none guard pgaudit";; 2) order="guard pgaudit none";; *) order="pgaudit none guard";; esac
  for c in $order; do
    v=$(ddl_time "$c")
    case $c in none) dn+="$v"$'\n';; guard) dg+="$v"$'\n';; pgaudit) da+="$v"$'\n';; esac
  done
done
R[ddl.none]=$(printf '%s' "$dn" | awk '{print $1*1000}' | stats)
R[ddl.guard]=$(printf '%s' "$dg" | awk '{print $1*1000}' | stats)
R[ddl.pgaudit]=$(printf '%s' "$da" | awk '{print $1*1000}' | stats)

echo "== 4: decision latency" >&2
psql_c guard -c 'CREATE TABLE IF NOT EXISTS bench_orders AS SELECT g AS id, g % 7 AS qty FROM generate_series(1, 200000) g' >/dev/null
lat=$(psql_c guard -At -F ' ' -c "SELECT round(median_us::numeric, 1), round(p99_us::numeric, 1), decision
  FROM pg_migration_guard.judge_timing('ALTER TABLE bench_orders ADD COLUMN note text', 20000)")
lat2=$(psql_c guard -At -F ' ' -c "SELECT round(median_us::numeric, 1), round(p99_us::numeric, 1), decision
  FROM pg_migration_guard.judge_timing('ALTER TABLE bench_orders ALTER COLUMN qty TYPE bigint', 20000)")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", a/b}'; }
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
done < /tmp/pgmg-bench-tps/result.tsv
echo "| 3 | 3000 DDL statements (wall ms) | $(med "${R[ddl.none]}") ($(spread "${R[ddl.none]}")) | $(med "${R[ddl.guard]}") ($(spread "${R[ddl.guard]}")) | $(ratio "$(med "${R[ddl.guard]}")" "$(med "${R[ddl.none]}")") (pgaudit: $(ratio "$(med "${R[ddl.pgaudit]}")" "$(med "${R[ddl.none]}")"), $(med "${R[ddl.pgaudit]}") ms) | <= 1.05 and <= pgaudit |"
echo "| 4 | judge one ALTER TABLE ADD COLUMN (µs) | | median $(echo $lat | cut -d' ' -f1), p99 $(echo $lat | cut -d' ' -f2) ($(echo $lat | cut -d' ' -f3)) | | median <= 20 µs |"
echo "| 4 | judge one ALTER COLUMN TYPE bigint (µs) | | median $(echo $lat2 | cut -d' ' -f1), p99 $(echo $lat2 | cut -d' ' -f2) ($(echo $lat2 | cut -d' ' -f3)) | | |"

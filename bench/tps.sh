#!/usr/bin/env bash
# Rows 1-2 of the overhead benchmark: pgbench TPS with and without the guard, on
# ONE cluster restarted between rounds with and without the guard in
# shared_preload_libraries. Not part of the test command; bench/run.sh calls it.
#   GUARD_SO=/path/to/pg_migration_guard.so ./bench/tps.sh   # ROUNDS=6 SECONDS_PER_RUN=30 CLIENTS=4 SCALE=10 PIN=1
#   ROUNDS=2 SECONDS_PER_RUN=5 GUARD_SO=... ./bench/tps.sh   # quick check, ~2 minutes
# Run alone it needs GUARD_SO (or GUARD_LIB_DIR, which install_extension exports: bench/run.sh
# passes the build it installed).
#
# Method:
# - one data directory (/tmp/pgmg-bench-tps/data, port 55444), initialised once with
#   pgbench -i -s $SCALE, nothing preloaded;
# - every round starts the server twice, once with shared_preload_libraries = '' and once
#   preloading a private copy of the guard library (bench/guardlib.sh: GUARD_SO, default
#   the installed one; default settings; the hook is active when preloaded, no CREATE
#   EXTENSION), in ABBA order: odd rounds none then guard, even rounds guard then none;
# - after each start: pg_prewarm of the pgbench tables and indexes, a discarded
#   $WARMUP_SECONDS s select-only run, then each workload for $SECONDS_PER_RUN s:
#     tpcb     pgbench built-in TPC-B-like (pgbench vacuums and truncates history first)
#     select   pgbench -S (plain SELECTs: never reach ProcessUtility)
#     utility  bench/utility.sql (BEGIN; SET LOCAL; SHOW; SELECT 1; COMMIT)
# - PIN=1: the server (postmaster, so every backend) runs on CPU $SERVER_CPU and pgbench on
#   CPU $CLIENT_CPU (taskset); PIN=0: both float over all CPUs;
# - server settings: fsync=off, autovacuum=off, shared_buffers=1GB, max_wal_size=8GB,
#   checkpoint_timeout=1h (no checkpoint inside a run: each start follows a shutdown
#   checkpoint);
# - for every run, the share of all CPUs that other processes used meanwhile (/proc/stat
#   busy ticks minus the cluster's and pgbench's own); a round in which it exceeded
#   MAX_FOREIGN % (default 5) is run again, up to RETRIES (default 2) times, then kept;
# - calibration: CONTROL=aa starts the second configuration exactly like the first (an
#   A/A test: how far from 1.000 the ratio strays with no difference at all);
#   CONTROL=<library> preloads that library (e.g. pg_prewarm) instead of the guard.
# Prints a table: per configuration median and min..max TPS over the rounds; per round
# the ratio guard/none of the two runs of that round (adjacent in time), with the median,
# min..max and mean +- 95 % confidence half-width of those ratios; the CPU share others
# used. Raw runs are in $W/runs.tsv, the summary (read by bench/run.sh) in $W/result.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
source bench/guardlib.sh
ROUNDS=${ROUNDS:-6}
SECS=${SECONDS_PER_RUN:-30}
WARMUP=${WARMUP_SECONDS:-5}
CLIENTS=${CLIENTS:-4}
JOBS=${JOBS:-2}
SCALE=${SCALE:-10}
PIN=${PIN:-1}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
WORKLOADS=${WORKLOADS:-tpcb select utility}
MAX_FOREIGN=${MAX_FOREIGN:-5}
CONTROL=${CONTROL:-}
RETRIES=${RETRIES:-2}
PORT=${TPS_PORT:-55444}
W=${TPS_DIR:-/tmp/pgmg-bench-tps}
case $W in /tmp/pgmg-bench*) ;; *) echo "TPS_DIR must be under /tmp/pgmg-bench*" >&2; exit 1;; esac
(( ROUNDS % 2 == 0 )) || echo "warning: ROUNDS=$ROUNDS is odd: ABBA order is balanced for even counts" >&2

guard_lib_copy

server_pin=() client_pin=()
if [ "$PIN" = 1 ]; then
  server_pin=(taskset -c "$SERVER_CPU")
  client_pin=(taskset -c "$CLIENT_CPU")
fi

server_start() { # none | guard
  local preload="-c shared_preload_libraries=''"
  if [ "$1" = guard ]; then
    case $CONTROL in
      '') preload=$(printf '%q ' "${GUARD_OPTS[@]}") ;;
      aa) ;;
      *) preload="-c shared_preload_libraries=$CONTROL" ;;
    esac
  fi
  as_pg "${server_pin[@]}" "$PG_BIN/pg_ctl" -D "$W/data" -w -l "$W/server.log" \
    -o "-p $PORT -k /tmp -c listen_addresses='' $preload -c fsync=off \
        -c autovacuum=off -c shared_buffers=1GB -c max_wal_size=8GB -c checkpoint_timeout=1h" \
    start >/dev/null
}
server_stop() {
  [ -f "$W/data/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$W/data" -m fast -w stop >/dev/null
  return 0
}
psql_t() { psql -X -q -At -h /tmp -p "$PORT" -U postgres -d postgres "$@"; }

server_stop
rm -rf "$W"
install -d -o postgres "$W"
trap server_stop EXIT
as_pg "$PG_BIN/initdb" -D "$W/data" --auth=trust -U postgres >/dev/null
server_start none
echo "== tps: pgbench -i -s $SCALE" >&2
pgbench -q -i -s "$SCALE" -h /tmp -p "$PORT" -U postgres postgres >/dev/null 2>&1
psql_t -c 'CREATE EXTENSION pg_prewarm' -c 'VACUUM ANALYZE'
VERSION=$(psql_t -c 'SHOW server_version')
server_stop

# CPU accounting, to tell how much of the machine something else used during a run:
# all CPUs' busy ticks (/proc/stat) minus the cluster's (the postmaster's own and reaped
# children's ticks, /proc/PID/stat fields 14-17) minus pgbench's.
cpu_ticks() { awk '/^cpu /{b=$2+$3+$4+$7+$8+$9; t=b+$5+$6; print b, t; exit}' /proc/stat; }
pm_ticks() { awk '{print $14+$15+$16+$17}' "/proc/$(head -1 "$W/data/postmaster.pid")/stat"; }

run_pgbench() { # workload -> "tps foreign%" (foreign%: share of all CPUs used by others)
  local args=()
  case $1 in
    tpcb) args=() ;;
    select) args=(-n -S) ;;
    utility) args=(-n -f bench/utility.sql) ;;
    warmup) args=(-n -S) ;;
    *) echo "unknown workload $1" >&2; return 1 ;;
  esac
  local secs=$SECS
  [ "$1" = warmup ] && secs=$WARMUP
  local c0 c1 p0 p1 client
  c0=$(cpu_ticks); p0=$(pm_ticks)
  # In the subshell, pgbench's ticks are the subshell's reaped-children ticks.
  client=$( ( "${client_pin[@]}" pgbench -c "$CLIENTS" -j "$JOBS" -T "$secs" -h /tmp -p "$PORT" -U postgres \
                "${args[@]}" postgres > "$W/pgbench.out" 2>>"$W/pgbench.log"
              awk '{print $16+$17}' "/proc/$BASHPID/stat" ) )
  sleep 0.2 # the postmaster reaps the backends
  c1=$(cpu_ticks); p1=$(pm_ticks)
  local t
  t=$(awk '/^tps = /{print $3}' "$W/pgbench.out")
  [ -n "$t" ] || { echo "pgbench $1 failed, see $W/pgbench.log" >&2; return 1; }
  echo "$c0 $c1 $p0 $p1 $client" | awk -v t="$t" \
    '{busy=$3-$1; total=$4-$2; f=(busy-($6-$5)-$7)/total*100; if (f<0) f=0; printf "%s %.1f\n", t, f}'
}

# One configuration's runs of one round, appended to $1.
run_config() { # file round config
  server_start "$3"
  # The guard's GUCs exist only when its library is loaded: check the configuration.
  local mode aff v
  mode=$(psql_t -c "SELECT current_setting('pg_migration_guard.mode', true)")
  local loaded=no
  if [ "$3" = guard ] && [ -z "$CONTROL" ]; then loaded=yes; fi
  if { [ $loaded = yes ] && [ -z "$mode" ]; } || { [ $loaded = no ] && [ -n "$mode" ]; }; then
    echo "configuration $3: pg_migration_guard.mode = '$mode', unexpected" >&2; exit 1
  fi
  if [ "$PIN" = 1 ]; then
    aff=$(taskset -cp "$(head -1 "$W/data/postmaster.pid")" | awk '{print $NF}')
    [ "$aff" = "$SERVER_CPU" ] || { echo "postmaster affinity $aff, expected $SERVER_CPU" >&2; exit 1; }
  fi
  psql_t -c "SELECT sum(pg_prewarm(c.oid)) FROM pg_class c WHERE c.relname LIKE 'pgbench%' AND c.relkind IN ('r', 'i')" >/dev/null
  run_pgbench warmup >/dev/null
  for wl in $WORKLOADS; do
    v=$(run_pgbench "$wl")
    printf '%s\t%s\t%s\t%s\t%s\n' "$2" "$3" "$wl" ${v} >> "$1"
    echo "   round $2 $3 $wl: ${v% *} tps, others used ${v#* } % of the CPUs" >&2
  done
  server_stop
}

printf 'round\tconfig\tworkload\ttps\tforeign_cpu_pct\n' > "$W/runs.tsv"
echo "== tps: $ROUNDS rounds (ABBA) x {$WORKLOADS} x ${SECS}s, $CLIENTS clients, $JOBS threads, PIN=$PIN" >&2
noisy=0
for r in $(seq 1 "$ROUNDS"); do
  if (( r % 2 )); then order="none guard"; else order="guard none"; fi
  # A round during which other processes used more than MAX_FOREIGN % of the CPUs is run
  # again, up to RETRIES times; then it is kept (and counted in the summary).
  for attempt in $(seq 0 "$RETRIES"); do
    : > "$W/round.tsv"
    for c in $order; do run_config "$W/round.tsv" "$r" "$c"; done
    worst=$(awk -F'\t' 'BEGIN{m=0} $5>m{m=$5} END{print m}' "$W/round.tsv")
    if awk -v w="$worst" -v m="$MAX_FOREIGN" 'BEGIN{exit !(w <= m)}'; then break; fi
    if (( attempt < RETRIES )); then
      echo "   round $r: others used up to $worst % of the CPUs (> $MAX_FOREIGN): again" >&2
    else
      noisy=$((noisy + 1))
    fi
  done
  cat "$W/round.tsv" >> "$W/runs.tsv"
done

echo
echo "rows 1-2 (bench/tps.sh): $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, PostgreSQL $VERSION,"
echo "one cluster restarted per configuration, $ROUNDS rounds ABBA, ${SECS}s per run, $CLIENTS clients, $JOBS threads, scale $SCALE,"
if [ "$PIN" = 1 ]; then echo -n "server on CPU $SERVER_CPU, pgbench on CPU $CLIENT_CPU (taskset)"; else echo -n "not pinned"; fi
echo "; rounds where other processes used > $MAX_FOREIGN % of the CPUs rerun up to $RETRIES times, $noisy kept anyway"
case $CONTROL in
  '') echo "guard: $GUARD_LIB_DESC" ;;
  aa) echo "CONTROL=aa: an A/A calibration, the column 'guard' is a second configuration without any preload" ;;
  *) echo "CONTROL=$CONTROL: the column 'guard' preloads $CONTROL instead of the guard" ;;
esac
echo
python3 - "$W/runs.tsv" "$W/result.tsv" "$WORKLOADS" <<'PY'
import statistics as st, sys
runs, out, workloads = sys.argv[1], sys.argv[2], sys.argv[3].split()
# Student t quantiles (0.975) for df = 1..30.
T = [12.71, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
     2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
     2.052, 2.048, 2.045, 2.042]
v, foreign = {}, {}
for line in open(runs).read().splitlines()[1:]:
    r, c, w, t, f = line.split("\t")
    v[(int(r), c, w)] = float(t)
    foreign[(int(r), c, w)] = float(f)
names = {"tpcb": "1 | pgbench TPC-B-like (TPS)", "select": "1 | pgbench select-only (TPS)",
         "utility": "2 | utility-heavy script (TPS)"}
print("| row | workload | none median (min..max) | guard median (min..max) | ratio of medians "
      "| per-round ratio median (min..max) | per-round ratio mean ± 95% CI | spread none / guard "
      "| CPU used by others, median (max) | target |")
print("|---|---|---|---|---|---|---|---|---|---|")
with open(out, "w") as f:
    for w in workloads:
        rounds = sorted({r for (r, c, ww) in v if ww == w})
        none = [v[(r, "none", w)] for r in rounds]
        guard = [v[(r, "guard", w)] for r in rounds]
        ratios = [g / n for g, n in zip(guard, none)]
        fo = [foreign[(r, c, w)] for r in rounds for c in ("none", "guard")]
        mean = st.mean(ratios)
        ci = T[min(len(ratios) - 2, 29)] * st.stdev(ratios) / len(ratios) ** 0.5 if len(ratios) > 1 else float("nan")
        spread = lambda xs: (max(xs) - min(xs)) / st.median(xs) * 100
        print(f"| {names[w]} | {st.median(none):.1f} ({min(none):.1f}..{max(none):.1f}) "
              f"| {st.median(guard):.1f} ({min(guard):.1f}..{max(guard):.1f}) "
              f"| {st.median(guard) / st.median(none):.3f} "
              f"| {st.median(ratios):.3f} ({min(ratios):.3f}..{max(ratios):.3f}) "
              f"| {mean:.3f} ± {ci:.3f} | {spread(none):.1f} % / {spread(guard):.1f} % "
              f"| {st.median(fo):.1f} % ({max(fo):.1f} %) | >= 0.99 |")
        f.write("\t".join([w] + [f"{x:.1f}" for x in (st.median(none), min(none), max(none),
                                                        st.median(guard), min(guard), max(guard))]
                          + [f"{x:.3f}" for x in (st.median(ratios), min(ratios), max(ratios), mean, ci)]) + "\n")
PY

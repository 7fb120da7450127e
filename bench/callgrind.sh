#!/usr/bin/env bash
# Instruction counts of the guard on the statements applications send all the time (rows
# 1-2 of bench/run.sh), with valgrind --tool=callgrind: repeatable where TPS on a shared machine is
# not. Not part of the test command; run by hand (~5 minutes).
#   GUARD_SO=/path/to/pg_migration_guard.so ./bench/callgrind.sh
#       # REPS=2000 WORKLOADS="utility select tpcb" MODES="single backend" SCALE=1
#       # PORT=55445 (template cluster; PORT2=PORT+1 for backend mode) CG_DIR=/tmp/pgmg-bench-cg
#       # GUARD_SETTINGS="-c name=value ..." (more options for the guard configuration)
#   GUARD_SO=... WORKLOADS=scale MODES=backend REPS=20 ./bench/callgrind.sh
#       # bench/run.sh row 5: ALTER TABLE ... SET STATISTICS on a parent of SCALE_PARTITIONS
#       # (2000) partitions, instructions per statement
#   GUARD_SO=... WORKLOADS=ddl MODES=backend REPS=200 PEERS="pgaudit evtrig" ./bench/callgrind.sh
#       # the DDL migration of bench/run.sh row 3: instructions per table (five statements);
#       # PEERS adds bench/run.sh's peers (pgaudit with pgaudit.log = ddl; evtrig, the event
#       # trigger of bench/evtrig.sql), backend mode only; also flagged (the guard with
#       # log_decisions = flagged) and before (the library BEFORE_SO, an earlier build)
# Without GUARD_SO it copies $GUARD_LIB_DIR/pg_migration_guard.so (set by install_extension),
# so run alone it needs one of the two.
#
# Method: a template data directory with pgbench tables (scale $SCALE, default 1). For each
# mode, configuration (none: nothing preloaded; guard: a private copy of the guard library
# preloaded, see bench/guardlib.sh, default settings; no CREATE EXTENSION needed, the hook
# is active when preloaded) and workload,
# one backend on a fresh copy of the template runs N transactions under callgrind, once
# with N = REPS/2 and once with N = REPS; the difference of the two profiles divided by
# REPS/2 is the cost of one transaction, with backend startup (dynamic linking, _PG_init,
# relcache initialisation) and exit cancelled out. Modes:
#   single   postgres --single -D DIR -c shared_preload_libraries=pg_migration_guard \
#              -c dynamic_library_path=/tmp/pgmg-bench-lib/<sha>:'$libdir' postgres < script
#            under valgrind --tool=callgrind (no protocol, no client)
#   backend  the postmaster under callgrind (its forked backends are profiled, one file
#            per process) and one psql connection sending the script as pgbench does
#            (simple query protocol, one statement per message): what a pgbench backend
#            executes in user space (the kernel's share of a round trip is not counted)
# Workloads (one statement per line):
#   utility  bench/utility.sql: BEGIN; SET LOCAL work_mem; SHOW work_mem; SELECT 1; COMMIT
#   select   pgbench -S's statement: SELECT abalance FROM pgbench_accounts WHERE aid = ?
#   tpcb     pgbench's TPC-B-like transaction (BEGIN; 3 UPDATE; SELECT; INSERT; END)
#   ddl      bench/run.sh's DDL migration, one "transaction" per table (CREATE TABLE with a
#            primary key, ADD COLUMN with a default, CREATE INDEX, COMMENT, ADD COLUMN), in a
#            schema of the backend's own (so the warm-up run and both measured runs create
#            their tables afresh); backend mode only is meaningful: WORKLOADS=ddl MODES=backend
#            REPS=600 measures 300 more tables, 1500 statements
# Prints Ir per transaction for both configurations, the guard's functions (calls, self and
# inclusive Ir per call) and the functions whose own cost differs between the two.
# Profiles stay in /tmp/pgmg-bench-cg/out/MODE/WORKLOAD.CONFIG.N.cg (callgrind_annotate them
# further, e.g. callgrind_annotate --inclusive=yes --tree=caller FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
source bench/guardlib.sh
REPS=${REPS:-2000}
SCALE=${SCALE:-1}
WORKLOADS=${WORKLOADS:-utility select tpcb}
MODES=${MODES:-single backend}
W=${CG_DIR:-/tmp/pgmg-bench-cg}
# Ports of the template cluster and of the postmaster under callgrind (backend mode).
PORT=${PORT:-55445}
PORT2=${PORT2:-$((PORT + 1))}
N1=$(( REPS / 2 ))
N2=$REPS

# PEERS may name "before": the library BEFORE_SO (an earlier build), preloaded the same way.
case " ${PEERS:-} " in
  *" before "*) GUARD_SO=$BEFORE_SO guard_lib_copy; BEFORE_OPTS=("${GUARD_OPTS[@]}"); BEFORE_DESC=$GUARD_LIB_DESC;;
esac
guard_lib_copy

stop_cluster "$W/template"
rm -rf "$W"
install -d -o postgres "$W" "$W/out"
trap 'stop_cluster "$W/template"' EXIT
start_cluster "$W/template" "$PORT" ''
pgbench -q -i -s "$SCALE" -h /tmp -p "$PORT" -U postgres postgres >/dev/null 2>&1
# The scale workload's table: a parent of SCALE_PARTITIONS (2000) range partitions.
case " $WORKLOADS " in
  *" scale "*)
    { echo "CREATE SCHEMA bench_scale; CREATE TABLE bench_scale.parent (id int, v int) PARTITION BY RANGE (id);"
      for i in $(seq 0 $(( ${SCALE_PARTITIONS:-2000} - 1 ))); do
        echo "CREATE TABLE bench_scale.p$i PARTITION OF bench_scale.parent FOR VALUES FROM ($((i * 1000))) TO ($(((i + 1) * 1000)));"
      done; } | psql -X -q -h /tmp -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 >/dev/null;;
esac
# The ddl workload audits its decisions as a migration does: the extension (its audit
# table) exists in the template, so the guard configuration queues every record for its
# audit writer. For the none configuration it is catalog rows nothing uses.
# (CREATE EXTENSION needs the library preloaded: the template restarts with it once.)
case " $WORKLOADS " in
  *" ddl "*)
    as_pg "$PG_BIN/pg_ctl" -D "$W/template/data" -m fast -w stop >/dev/null
    as_pg "$PG_BIN/pg_ctl" -D "$W/template/data" -w -l "$W/template/server.log" \
      -o "-p $PORT -k /tmp -c listen_addresses= -c shared_preload_libraries=pg_migration_guard -c dynamic_library_path='$GUARD_LIB_DIR:\$libdir'" start >/dev/null
    psql -X -q -h /tmp -p "$PORT" -U postgres -d postgres -c 'CREATE EXTENSION pg_migration_guard';;
esac
psql -X -q -h /tmp -p "$PORT" -U postgres -d postgres -c 'VACUUM ANALYZE'
VERSION=$(psql -X -At -h /tmp -p "$PORT" -U postgres -d postgres -c 'SHOW server_version')
stop_cluster "$W/template"

python3 - "$W" "$N1" "$N2" "$SCALE" bench/utility.sql <<'PY'
import sys
w, n1, n2, scale, utility = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
util = [l.strip() for l in open(utility) if l.strip() and not l.strip().startswith("--")]
accounts, seed = 100000 * scale, 12345
def rnd(n):  # deterministic, so that every run executes the same statements
    global seed
    seed = (seed * 1103515245 + 12345) % 2**31
    return seed % n + 1
def txn(kind):
    if kind == "utility":
        return util
    a = rnd(accounts)
    if kind == "select":
        return [f"SELECT abalance FROM pgbench_accounts WHERE aid = {a};"]
    t, b, d = rnd(10 * scale), rnd(scale), rnd(10001) - 5001
    return ["BEGIN;",
            f"UPDATE pgbench_accounts SET abalance = abalance + {d} WHERE aid = {a};",
            f"SELECT abalance FROM pgbench_accounts WHERE aid = {a};",
            f"UPDATE pgbench_tellers SET tbalance = tbalance + {d} WHERE tid = {t};",
            f"UPDATE pgbench_branches SET bbalance = bbalance + {d} WHERE bid = {b};",
            f"INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ({t}, {b}, {a}, {d}, CURRENT_TIMESTAMP);",
            "END;"]
def ddl(i):
    return [f"CREATE TABLE t{i} (id bigint PRIMARY KEY, name text);",
            f"ALTER TABLE t{i} ADD COLUMN created_at timestamptz DEFAULT now();",
            f"CREATE INDEX t{i}_name_idx ON t{i} (name);",
            f"COMMENT ON TABLE t{i} IS 'table {i}';",
            f"ALTER TABLE t{i} ADD COLUMN note varchar(40);"]
for kind in ("utility", "select", "tpcb", "ddl", "scale"):
    seed = 12345
    if kind == "ddl":
        # A schema named after the backend, created by a DO block (its CREATE SCHEMA is
        # judged like any other statement): the same constant work in every run.
        head = ["SET client_min_messages = warning;",
                "DO $$BEGIN EXECUTE format('CREATE SCHEMA ddl_%s', pg_backend_pid()); END$$;",
                "SELECT set_config('search_path', 'ddl_' || pg_backend_pid(), false);"]
        lines = [head] + [ddl(i) for i in range(n2)]
        for n in (n1, n2):
            with open(f"{w}/{kind}.{n}.sql", "w") as f:
                for t in lines[:n + 1]:
                    f.write("\n".join(t) + "\n")
        continue
    if kind == "scale":
        lines = [[f"ALTER TABLE bench_scale.parent ALTER COLUMN v SET STATISTICS {100 + i % 2};"] for i in range(n2)]
    else:
        lines = [txn(kind) for _ in range(n2)]
    for n in (n1, n2):
        with open(f"{w}/{kind}.{n}.sql", "w") as f:
            for t in lines[:n]:
                f.write("\n".join(t) + "\n")
PY
chmod 644 "$W"/*.sql

# single: a single-user backend reads the script on stdin, one statement per line.
run_single() { # workload n outfile (server options in pre)
  rm -rf "$W/run"
  cp -a "$W/template/data" "$W/run"
  as_pg valgrind --tool=callgrind --callgrind-out-file="$3.cg" \
    "$PG_BIN/postgres" --single -D "$W/run" "${pre[@]}" -c fsync=off postgres \
    < "$W/$1.$2.sql" > "$3.stdout" 2> "$3.log"
}
# backend: a postmaster runs under callgrind (its forked children are profiled too, one
# file per process); psql sends the script over one connection, the way pgbench does
# (simple query protocol, one statement per message); the profile of its backend is
# cg.<pg_backend_pid()>. Each workload runs once before it is measured.
backend_start() { # (server options in pre)
  rm -rf "$W/run"
  cp -a "$W/template/data" "$W/run"
  install -d -o postgres "$W/pm"
  rm -f "$W/pm"/*
  as_pg bash -c 'cd /tmp; log=$1; shift; "$@" > "$log" 2>&1 &' - "$W/pm.log" \
    valgrind --tool=callgrind --callgrind-out-file="$W/pm/cg.%p" \
    "$PG_BIN/postgres" -D "$W/run" -p "$PORT2" -k /tmp -c listen_addresses= -c fsync=off -c autovacuum=off "${pre[@]}"
  for _ in $(seq 1 120); do pg_isready -q -h /tmp -p "$PORT2" -U postgres && return 0; sleep 1; done
  echo "postmaster under valgrind did not start, see $W/pm.log" >&2; return 1
}
backend_stop() {
  [ -f "$W/run/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$W/run" -m fast -w -t 300 stop >/dev/null 2>&1
  return 0
}
run_backend() { # workload n outfile
  psql -X -q -At -h /tmp -p "$PORT2" -U postgres -d postgres -v ON_ERROR_STOP=1 \
    -c 'SELECT pg_backend_pid()' -f "$W/$1.$2.sql" > "$3.stdout" 2> "$3.log"
  local pid
  pid=$(head -1 "$3.stdout")
  for _ in $(seq 1 120); do # the backend writes its profile when it exits, after psql returned
    if grep -q '^totals:' "$W/pm/cg.$pid" 2>/dev/null; then
      mv "$W/pm/cg.$pid" "$3.cg"; return 0
    fi
    sleep 1
  done
  echo "no profile $W/pm/cg.$pid from the backend of psql" >&2; return 1
}
trap 'backend_stop; stop_cluster "$W/template"' EXIT

for mode in $MODES; do
  install -d -o postgres "$W/out/$mode"
  echo "== callgrind $mode: {$WORKLOADS} x {none, guard} x {$N1, $N2} transactions" >&2
  for c in none guard ${PEERS:-}; do
    pre=(-c shared_preload_libraries=)
    [ "$c" != pgaudit ] || pre=(-c shared_preload_libraries=pgaudit -c pgaudit.log=ddl)
    [ "$c" != before ] || pre=("${BEFORE_OPTS[@]}" ${GUARD_SETTINGS:-})
    [ "$c" != flagged ] || pre=("${GUARD_OPTS[@]}" ${GUARD_SETTINGS:-} -c pg_migration_guard.log_decisions=flagged)
    # GUARD_SETTINGS: more server options for the guard configuration, e.g.
    # GUARD_SETTINGS="-c pg_migration_guard.log_decisions=flagged"
    if [ "$c" = guard ]; then pre=("${GUARD_OPTS[@]}" ${GUARD_SETTINGS:-}); fi
    if [ "$mode" = backend ]; then backend_start; fi
    if [ "$c" = evtrig ]; then
      psql -X -q -h /tmp -p "$PORT2" -U postgres -d postgres -v ON_ERROR_STOP=1 -f bench/evtrig.sql >/dev/null
    fi
    for wl in $WORKLOADS; do
      # The backends share one cluster: a first, discarded run pays its one-off costs
      # (first reads of the tables, hint bits, relcache init file).
      if [ "$mode" = backend ]; then run_backend "$wl" "$N1" "$W/warmup"; rm -f "$W/warmup".*; fi
      for n in $N1 $N2; do
        f=$W/out/$mode/$wl.$c.$n
        "run_$mode" "$wl" "$n" "$f"
        if grep -q -E '(ERROR|FATAL|PANIC):' "$f.log"; then
          echo "errors in $f.log" >&2; grep -E 'ERROR|FATAL|PANIC' "$f.log" | head -5 >&2; exit 1
        fi
        echo "   $mode $wl $c $n: $(awk '/^summary:|^totals:/{print $2; exit}' "$f.cg") Ir" >&2
      done
    done
    if [ "$mode" = backend ]; then backend_stop; fi
  done
done
rm -rf "$W/run" "$W/pm"

echo
echo "callgrind (bench/callgrind.sh): $(date -u +%Y-%m-%dT%H:%MZ), $(valgrind --version), PostgreSQL $VERSION,"
echo "fsync=off, pgbench scale $SCALE, REPS=$REPS"
echo "guard: $GUARD_LIB_DESC"
[ -z "${BEFORE_DESC:-}" ] || echo "before: $BEFORE_DESC"
for mode in $MODES; do
  echo
  case $mode in
    single) echo "### single-user backend (postgres --single, script on stdin)";;
    backend) echo "### normal backend (postmaster under callgrind, one psql connection, simple query protocol)";;
  esac
  echo
  PEERS="${PEERS:-}" python3 bench/cgstat.py "$W/out/$mode" "$N1" "$N2" $WORKLOADS
done

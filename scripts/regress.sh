#!/usr/bin/env bash
# PostgreSQL's own regression suite (src/test/regress, parallel_schedule) proves that the
# guard changes nothing PostgreSQL does. It runs, at the same time, against three throwaway
# clusters of the private tree's server:
#   a: no guard
#   b: the guard preloaded, every rule off (pg_migration_guard.rule_levels = '<each rule>:off'),
#      everything else at its default (mode enforce, lock_timeout_policy auto): the results
#      files must be identical to a's
#   c: the guard preloaded, pg_migration_guard.mode = warn, every rule at its default level:
#      every difference from a's results must be an added guard WARNING block
#      (scripts/regress-compare.pl)
# b and c are compared with a, not with the suite's expected files: the suite comes from the
# newest PostgreSQL 15 source package Debian's mirror has, which may be an older point
# release than the installed server (15.18 against 15.20: rules and alter_table differ from
# their expected files, identically in all three runs). Those tests are listed; more than
# PGMG_REGRESS_MAX_SKEW of them (default 10) fails the run, as the suite then did not run
# as designed.
#
# Built once and cached in PGMG_REGRESS_CACHE (default /var/tmp/pgmg/regress-15,
# world-readable: the server, as the postgres OS user, loads regress.so from it and reads
# its data files): Debian's source package (deb-src entry in
# /etc/apt/sources.list.d/pgmg-src.sources), then pg_regress, regress.so (with refint.so and
# autoinc.so) and a psql with its libpq from that same source; not the server. Delete the
# directory to rebuild.
#
# Needs the guard installed: uses GUARD_LIB_DIR (set by install_extension, as
# scripts/test.sh does before calling this) or, when it is not set, runs scripts/setup.sh
# and install_extension itself.
# Environment: PGMG_REGRESS_PORT (default 55470: uses it and the next two),
# PGMG_REGRESS_WORK (default /tmp/pgmg-regress: clusters, results, logs).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
umask 022

CACHE=${PGMG_REGRESS_CACHE:-/var/tmp/pgmg/regress-${PG_MAJOR}}
WORK=${PGMG_REGRESS_WORK:-/tmp/pgmg-regress}
PORT=${PGMG_REGRESS_PORT:-55470}
MAX_SKEW=${PGMG_REGRESS_MAX_SKEW:-10}

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
started=$(date +%s)

if [ -z "${GUARD_LIB_DIR:-}" ]; then
  ./scripts/setup.sh
  install_extension
fi
[ -f "${GUARD_LIB_DIR}/pg_migration_guard.so" ] || {
  echo "regress: no pg_migration_guard.so in GUARD_LIB_DIR=${GUARD_LIB_DIR}" >&2
  exit 1
}

# Builds the cache: CACHE/bin/psql, CACHE/lib/libpq.so*, CACHE/regress/ (pg_regress, the
# C modules, the schedule, sql/, expected/, data/), CACHE/VERSION last.
build_suite() {
  local pkgs=() p build tarball version tree
  for p in build-essential bzip2; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || pkgs+=("$p")
  done
  if [ ${#pkgs[@]} -gt 0 ]; then
    echo "regress: installing ${pkgs[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${pkgs[@]}" >/dev/null
  fi
  ensure_deb_src "postgresql-${PG_MAJOR}"
  $SUDO rm -rf "$CACHE"
  $SUDO install -d -m 755 -o "$(id -u)" "$CACHE"
  build=$CACHE/build
  mkdir "$build"
  # The newest source the mirror has (Debian's bookworm may lag the installed point release).
  (cd "$build" && apt-get source --download-only -qq "postgresql-${PG_MAJOR}" 2>&1 |
    grep -v "Download is performed unsandboxed" >&2 || true)
  tarball=$(ls "$build"/postgresql-${PG_MAJOR}_*.orig.tar.* 2>/dev/null | head -1)
  [ -n "$tarball" ] || { echo "regress: apt-get source postgresql-${PG_MAJOR} gave no upstream tarball" >&2; exit 1; }
  version=$(basename "$tarball" | sed -E "s/^postgresql-${PG_MAJOR}_(.*)\.orig\.tar\..*$/\1/")
  echo "regress: building the PostgreSQL ${version} regression suite into $CACHE" >&2
  tar -C "$build" -xf "$tarball"
  tree=$build/postgresql-$version
  # The minimum: the client programs need none of ICU, readline or zlib.
  (cd "$tree" && ./configure --prefix="$CACHE" --without-icu --without-readline --without-zlib) \
    >"$build/configure.log" 2>&1 || { tail -30 "$build/configure.log" >&2; exit 1; }
  {
    make -j2 -C "$tree/src/test/regress" &&
      make -j2 -C "$tree/src/interfaces/libpq" install &&
      make -j2 -C "$tree/src/bin/psql" install
  } >"$build/make.log" 2>&1 || { tail -30 "$build/make.log" >&2; exit 1; }
  mkdir "$CACHE/regress"
  (cd "$tree/src/test/regress" &&
    cp -R pg_regress regress.so refint.so autoinc.so parallel_schedule resultmap sql expected data "$CACHE/regress/")
  rm -rf "$build"
  chmod -R a+rX "$CACHE"
  echo "$version" >"$CACHE/VERSION"
}

build_started=$(date +%s)
install -d -m 755 "$(dirname "$CACHE")"
exec 9>"${CACHE}.lock"
flock 9
if [ ! -f "$CACHE/VERSION" ]; then
  build_suite
fi
flock -u 9
VERSION=$(cat "$CACHE/VERSION")
build_secs=$(($(date +%s) - build_started))
SUITE=$CACHE/regress

# Every rule, off: the rule ids, one "## <id>" section each in docs/rules.md (a unit test
# keeps that file and the rule table in core/src/rules/mod.rs the same). A value the guard
# refuses leaves the setting at its default with a WARNING in the server log: checked below
# by SHOW.
RULES=$(sed -n 's/^## \([a-z][a-z-]*\)$/\1/p' docs/rules.md)
[ "$(echo "$RULES" | wc -l)" -ge 17 ] || { echo "regress: rule ids not found in docs/rules.md" >&2; exit 1; }
ALL_OFF=$(echo "$RULES" | sed 's/$/:off/' | paste -sd, -)

install -d "$WORK"
cleanup() { for c in a b c; do stop_cluster "$WORK/$c"; done; }
trap cleanup EXIT
# (side by side: initdb takes seconds each)
starting=()
start_cluster "$WORK/a" "$PORT" '' &
starting+=($!)
start_cluster "$WORK/b" "$((PORT + 1))" 'pg_migration_guard' "-c pg_migration_guard.rule_levels='$ALL_OFF'" &
starting+=($!)
start_cluster "$WORK/c" "$((PORT + 2))" 'pg_migration_guard' "-c pg_migration_guard.mode=warn" &
starting+=($!)
started_all=1
for p in "${starting[@]}"; do wait "$p" || started_all=0; done
[ "$started_all" -eq 1 ] || { echo "regress: a cluster did not start (server logs in $WORK/*/server.log)" >&2; exit 1; }

show() { "${PG_BIN}/psql" -X -At -h /tmp -p "$1" -U postgres -d postgres -c "SHOW $2"; }
[ -z "$(show "$PORT" shared_preload_libraries)" ] || { echo "regress: cluster a preloads a library" >&2; exit 1; }
[ "$(show "$((PORT + 1))" pg_migration_guard.mode)" = enforce ] &&
  [ "$(show "$((PORT + 1))" pg_migration_guard.rule_levels)" = "$ALL_OFF" ] &&
  [ "$(show "$((PORT + 1))" pg_migration_guard.lock_timeout_policy)" = auto ] &&
  [ "$(show "$((PORT + 2))" pg_migration_guard.mode)" = warn ] &&
  [ -z "$(show "$((PORT + 2))" pg_migration_guard.rule_levels)" ] &&
  [ "$(show "$((PORT + 2))" pg_migration_guard.lock_timeout_policy)" = auto ] ||
  { echo "regress: the guard's settings in clusters b and c are not the intended ones" >&2; exit 1; }

# The suite, installcheck-style (what `make installcheck-parallel` runs), as the postgres OS
# user: the server writes files into the output directory (COPY ... TO).
run_suite() {
  local c=$1 port=$2
  install -d -o postgres "$WORK/$c/out"
  set +e
  (cd "$SUITE" && as_pg ./pg_regress --inputdir="$SUITE" --outputdir="$WORK/$c/out" \
    --bindir="$CACHE/bin" --dlpath="$SUITE" --host=/tmp --port="$port" \
    --max-concurrent-tests=20 --schedule="$SUITE/parallel_schedule") >"$WORK/$c/pg_regress.log" 2>&1
  echo $? >"$WORK/$c/pg_regress.status"
  set -e
}
echo "regress: PostgreSQL ${VERSION} regression suite against server $(show "$PORT" server_version): a (no guard), b (guard, every rule off), c (guard, mode warn)" >&2
suite_started=$(date +%s)
run_suite a "$PORT" &
run_suite b "$((PORT + 1))" &
run_suite c "$((PORT + 2))" &
wait
suite_secs=$(($(date +%s) - suite_started))
cleanup

fail=0
# The suite ran whole in each cluster: pg_regress finished (status 0: all passed, 1: some
# differ from their expected files; 2: could not run), reported the schedule's number of
# tests, and each test left its results file.
expected_tests=$(sed -n 's/^test: *//p' "$SUITE/parallel_schedule" | wc -w)
for c in a b c; do
  status=$(cat "$WORK/$c/pg_regress.status")
  ran=$(grep -cE '^( {5}|test )[a-z0-9_.]+ +\.\.\. ' "$WORK/$c/pg_regress.log" || true)
  missing=0
  for t in $(sed -n 's/^test: *//p' "$SUITE/parallel_schedule"); do
    [ -s "$WORK/$c/out/results/$t.out" ] || missing=$((missing + 1))
  done
  if [ "$status" -gt 1 ] || [ "$ran" -ne "$expected_tests" ] || [ "$missing" -ne 0 ]; then
    echo "regress: run $c: pg_regress exit status $status, $ran tests reported, $missing results files missing, $expected_tests tests in the schedule" >&2
    tail -30 "$WORK/$c/pg_regress.log" >&2
    fail=1
  fi
done
[ "$fail" -eq 0 ] || exit 1

# The tests that differ from their expected files without the guard: the point-release skew.
skew=$(sed -nE 's/^( {5}|test )([a-z0-9_.]+) +\.\.\. FAILED.*/\2/p' "$WORK/a/pg_regress.log")
skew_count=$(echo -n "$skew" | grep -c . || true)
echo "regress: $expected_tests tests ran in each cluster; without the guard $skew_count differ from the ${VERSION} expected files (version skew, compared with run a instead):" $skew >&2
if [ "$skew_count" -gt "$MAX_SKEW" ]; then
  echo "regress: more than $MAX_SKEW tests differ from their expected files without the guard: the suite did not run as designed" >&2
  sed -n '1,200p' "$WORK/a/out/regression.diffs" >&2
  exit 1
fi

# The hook judged the suite's statements in b and c (the server log has a LOG line for each
# decision), and in b never warned or rejected.
judged_b=$(grep -c 'LOG:  pg_migration_guard: allowed ' "$WORK/b/server.log" || true)
other_b=$(grep -cE 'LOG:  pg_migration_guard: (warned|rejected|overridden) ' "$WORK/b/server.log" || true)
warned_c=$(grep -c 'LOG:  pg_migration_guard: warned ' "$WORK/c/server.log" || true)
if grep -q 'pg_migration_guard' "$WORK/a/server.log" || [ "$judged_b" -eq 0 ] || [ "$other_b" -ne 0 ] || [ "$warned_c" -eq 0 ]; then
  echo "regress: server logs: a mentions the guard: $(grep -c pg_migration_guard "$WORK/a/server.log" || true); b: $judged_b statements allowed, $other_b others; c: $warned_c warned" >&2
  fail=1
fi

echo "== b (guard, every rule off) against a (no guard): results must be identical" >&2
perl scripts/regress-compare.pl identical "$WORK/a/out/results" "$WORK/b/out/results" || fail=1
echo "== c (guard, mode warn) against a (no guard): only added guard WARNING blocks" >&2
# shellcheck disable=SC2086
perl scripts/regress-compare.pl warnings "$WORK/a/out/results" "$WORK/c/out/results" $RULES || fail=1

echo "regress: build ${build_secs}s, suite ${suite_secs}s, total $(($(date +%s) - started))s" >&2
if [ "$fail" -ne 0 ]; then
  echo "regress: FAILED (clusters, results and server logs in $WORK)" >&2
  exit 1
fi
echo "regress: the guard changed nothing in PostgreSQL's regression suite" >&2

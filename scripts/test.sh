#!/usr/bin/env bash
# The test command (see README.md). Installs what it needs, then runs, once:
#   the format and lint checks (cargo fmt --check, cargo clippy -D warnings);
#   unit tests of the pure core (plain cargo test);
# for each PostgreSQL version of PGMG_TEST_MAJORS (default "15 17 18"):
#   1. unit tests of the extension and #[pg_test] tests of the hook (cargo pgrx test pgNN);
#   2. integration tests over real connections against throwaway clusters:
#      A: shared_preload_libraries = 'pg_stat_statements,pg_migration_guard', 1M-row data set
#      B: shared_preload_libraries = 'pg_migration_guard,pg_stat_statements'
#      C: not preloaded (CREATE EXTENSION must refuse)
#   3. check() and its command-line client against a primary and a streaming hot standby
#      (tests/check/run.sh);
#   4. the client acceptance suite (tests/clients/run.sh);
# and on PostgreSQL 15 (when it is among PGMG_TEST_MAJORS):
#   5. PostgreSQL's own regression suite without the guard, with it (every rule off: identical
#      results) and with it in mode warn (only added guard WARNINGs): scripts/regress.sh;
#   6. packaging and operations tests (tests/packaging/run.sh): the Debian package, upgrade
#      and dump/restore, the tools DBAs run beside the guard, a physical standby;
#   7. the Citus tests (tests/citus/run.sh, ports 55580-55585) when a Citus installation
#      exists (PGMG_CITUS_TREE, default /var/tmp/pgmg/pg15-citus; docs/citus.md); otherwise
#      they are skipped, and the last lines say so.
# A version whose server scripts/setup.sh could not set up (its source package was not
# served) is skipped, and the last lines say so.
# Environment: PGMG_TEST_MAJORS; PGMG_TEST_PORT (cluster A's port, default 55433; B and C
# use the next two), PGMG_TEST_DIR (default /tmp/pgmg-test), PGMG_PGRX_PGDATA (default
# /tmp/pgrx-pgdata; -NN is appended for versions other than 15), and tests/clients/run.sh's
# PGMG_CLIENTS_PORT, PGMG_CLIENTS_DIR, and tests/check/run.sh's PGMG_CHECK_PORT_PRIMARY and
# PGMG_CHECK_PORT_STANDBY (default 55560, 55561), PGMG_CHECK_WORK.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source scripts/common.sh

MAJORS=${PGMG_TEST_MAJORS:-15 17 18}
PORT_A=${PGMG_TEST_PORT:-55433}
PORT_B=$((PORT_A + 1))
PORT_C=$((PORT_A + 2))
WORK=${PGMG_TEST_DIR:-/tmp/pgmg-test}

PGMG_MAJORS="$MAJORS" ./scripts/setup.sh

echo "== format and lints (cargo fmt --check, cargo clippy -D warnings)"
cargo fmt --all -- --check
(cd tests/integration && cargo fmt -- --check)
cargo clippy --features "pg15 pg_test" --tests -p pg_migration_guard -p pg_migration_guard_core -p pg-migration-guard -- -D warnings

echo "== unit tests of the pure core and of the client (cargo test: no PostgreSQL needed)"
cargo test -p pg_migration_guard_core -p pg-migration-guard

install -d "$WORK"
cleanup() { for c in a b c; do stop_cluster "$WORK/$c"; done; }
trap cleanup EXIT

# All tests on the version select_pg_major chose.
test_version() {
  echo "== PostgreSQL ${PG_MAJOR}: unit tests of the extension and #[pg_test] tests (cargo pgrx test pg${PG_MAJOR})"
  local pgdata=${PGMG_PGRX_PGDATA:-/tmp/pgrx-pgdata}
  [ "$PG_MAJOR" = 15 ] || pgdata=$pgdata-$PG_MAJOR
  install -d -o postgres "$pgdata"
  # One test at a time: each #[pg_test] holds the locks its statements took on the shared
  # fixture tables until its transaction ends, so tests run side by side can deadlock.
  RUST_TEST_THREADS=1 cargo pgrx test "pg${PG_MAJOR}" --runas postgres --pgdata "$pgdata"

  echo "== PostgreSQL ${PG_MAJOR}: integration tests over real connections"
  install_extension
  start_cluster "$WORK/a" "$PORT_A" 'pg_stat_statements,pg_migration_guard'
  start_cluster "$WORK/b" "$PORT_B" 'pg_migration_guard,pg_stat_statements'
  start_cluster "$WORK/c" "$PORT_C" ''
  psql -X -q -v ON_ERROR_STOP=1 -h /tmp -p "$PORT_A" -U postgres -d postgres -f examples/seed.sql >/dev/null
  psql -X -q -v ON_ERROR_STOP=1 -h /tmp -p "$PORT_A" -U postgres -d postgres -c 'CREATE EXTENSION pg_migration_guard' >/dev/null
  PGMG_PORT_A=$PORT_A PGMG_PORT_B=$PORT_B PGMG_PORT_C=$PORT_C PGMG_LOG_A="$WORK/a/server.log" \
    bash -c 'cd tests/integration && cargo test --release -- --test-threads=1'
  cleanup

  echo "== PostgreSQL ${PG_MAJOR}: check() and pg-migration-guard check against a primary and its hot standby (tests/check/run.sh)"
  PG_MAJOR=$PG_MAJOR tests/check/run.sh

  echo "== PostgreSQL ${PG_MAJOR}: client acceptance suite: Django, Alembic, node-pg-migrate, Knex (tests/clients)"
  PG_MAJOR=$PG_MAJOR tests/clients/run.sh

  if [ "$PG_MAJOR" = 15 ]; then
    echo "== PostgreSQL 15: PostgreSQL's regression suite: no guard, guard with every rule off, guard in mode warn (scripts/regress.sh)"
    PG_MAJOR=15 ./scripts/regress.sh

    echo "== PostgreSQL 15: packaging: Debian package, upgrade and restore, DBA tools, standby (tests/packaging)"
    PG_MAJOR=15 tests/packaging/run.sh

    echo "== PostgreSQL 15: Citus: a coordinator and two workers (tests/citus/run.sh)"
    local citus_rc=0
    PG_MAJOR=15 tests/citus/run.sh || citus_rc=$?
    if [ "$citus_rc" = 77 ]; then
      citus_summary="Citus: SKIPPED (no Citus installation in ${PGMG_CITUS_TREE:-/var/tmp/pgmg/pg15-citus}; docs/citus.md says how to build one)"
      echo "== $citus_summary"
    elif [ "$citus_rc" != 0 ]; then
      exit "$citus_rc"
    else
      citus_summary="Citus (tests/citus/run.sh): passed"
    fi
  fi
}

summary=()
citus_summary=''
for major in $MAJORS; do
  select_pg_major "$major"
  if [ ! -x "$PG_CONFIG" ]; then
    summary+=("PostgreSQL $major: SKIPPED (not set up: see setup's WARNING)")
    continue
  fi
  started=$(date +%s)
  test_version
  summary+=("PostgreSQL $major ($("$PG_CONFIG" --version | cut -d' ' -f2)): passed in $(( $(date +%s) - started )) s")
done
[ -z "$citus_summary" ] || summary+=("$citus_summary")
echo "== all tests passed"
printf '   %s\n' "${summary[@]}"

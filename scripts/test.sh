#!/usr/bin/env bash
# The test command (see README.md). Installs what it needs, checks the format (cargo fmt)
# and the lints (cargo clippy -D warnings), then runs:
#   1. unit tests of the pure core (plain cargo test), unit tests of the extension and
#      #[pg_test] tests of the hook (cargo pgrx test, pg15);
#   2. integration tests over real connections against throwaway clusters:
#      A: shared_preload_libraries = 'pg_stat_statements,pg_migration_guard', 1M-row data set
#      B: shared_preload_libraries = 'pg_migration_guard,pg_stat_statements'
#      C: not preloaded (CREATE EXTENSION must refuse)
#   2b. the Citus tests (tests/citus/run.sh) when a Citus installation exists (PGMG_CITUS_TREE);
#      otherwise a line says they were skipped;
#   3. PostgreSQL's own regression suite without the guard, with it (every rule off: identical
#      results) and with it in mode warn (only added guard WARNINGs): scripts/regress.sh;
#   4. the client acceptance suite (tests/clients/run.sh);
#   5. packaging and operations tests (tests/packaging/run.sh): the Debian package, upgrade
#      and dump/restore, the tools DBAs run beside the guard, a physical standby.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source scripts/common.sh

./scripts/setup.sh

echo "== format and lints (cargo fmt --check, cargo clippy -D warnings)"
cargo fmt --all -- --check
(cd tests/integration && cargo fmt -- --check)
cargo clippy --features "pg15 pg_test" --tests -p pg_migration_guard -p pg_migration_guard_core -- -D warnings

echo "== unit tests of the pure core (cargo test -p pg_migration_guard_core: no PostgreSQL needed)"
cargo test -p pg_migration_guard_core

echo "== unit tests of the extension and #[pg_test] tests (cargo pgrx test pg15)"
PGRX_PGDATA=/tmp/pgrx-pgdata
install -d -o postgres "$PGRX_PGDATA"
# One test at a time: each #[pg_test] holds the locks its statements took on the shared
# fixture tables until its transaction ends, so tests run side by side can deadlock.
RUST_TEST_THREADS=1 cargo pgrx test pg15 --runas postgres --pgdata "$PGRX_PGDATA"

echo "== integration tests over real connections"
install_extension
WORK=/tmp/pgmg-test
install -d "$WORK"
cleanup() { for c in a b c; do stop_cluster "$WORK/$c"; done; }
trap cleanup EXIT
start_cluster "$WORK/a" 55433 'pg_stat_statements,pg_migration_guard'
start_cluster "$WORK/b" 55434 'pg_migration_guard,pg_stat_statements'
start_cluster "$WORK/c" 55435 ''
psql -X -q -v ON_ERROR_STOP=1 -h /tmp -p 55433 -U postgres -d postgres -f examples/seed.sql >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -h /tmp -p 55433 -U postgres -d postgres -c 'CREATE EXTENSION pg_migration_guard' >/dev/null

export PGMG_PORT_A=55433 PGMG_PORT_B=55434 PGMG_PORT_C=55435 PGMG_LOG_A="$WORK/a/server.log"
(cd tests/integration && cargo test --release -- --test-threads=1)

echo "== Citus: a coordinator and two workers (tests/citus/run.sh, ports 55580-55583)"
citus_rc=0
tests/citus/run.sh || citus_rc=$?
if [ "$citus_rc" = 77 ]; then
  echo "== Citus: SKIPPED, no Citus installation in ${PGMG_CITUS_TREE:-/var/tmp/pgmg/pg15-citus} (docs/citus.md says how to build one)"
elif [ "$citus_rc" != 0 ]; then
  exit "$citus_rc"
fi

echo "== PostgreSQL's regression suite: no guard, guard with every rule off, guard in mode warn (scripts/regress.sh)"
./scripts/regress.sh

echo "== client acceptance suite: Django, Alembic, node-pg-migrate, Knex (tests/clients)"
tests/clients/run.sh

echo "== packaging: Debian package, upgrade and restore, DBA tools, standby (tests/packaging)"
tests/packaging/run.sh
echo "== all tests passed"

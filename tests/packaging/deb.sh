#!/usr/bin/env bash
# The Debian package on a clean cluster, as a DBA would use it:
#   dpkg -i postgresql-15-pg-migration-guard_*.deb; a new cluster run by the system's own
#   server programs (/usr/lib/postgresql/15/bin) preloading pg_migration_guard from
#   Debian's library directory; CREATE EXTENSION; a rejected and an allowed statement and
#   their audit rows; then the cluster stops and dpkg -r removes the package.
#
# Usage: tests/packaging/deb.sh [DEB]   (default: builds it with scripts/package.sh)
# Refuses to run when the package is installed already (it would remove it). Files of the
# guard that were in the system's directories without a package (another tree's
# install_extension writes SHAREDIR/extension) are put back after dpkg -r.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/common.sh
source tests/packaging/lib.sh

PKG=postgresql-${PG_MAJOR}-pg-migration-guard
DIR=$PKG_WORK/deb
PORT=$PKG_PORT_BASE
DEB=${1:-}
if [ -z "$DEB" ]; then
  install -d "$PKG_WORK"
  DEB=$(scripts/package.sh "$PG_MAJOR" 2>"$PKG_WORK/package.log" | tail -1) \
    || { cat "$PKG_WORK/package.log" >&2; fail "scripts/package.sh $PG_MAJOR"; }
fi
[ -f "$DEB" ] || fail "no package $DEB"
VERSION=$(dpkg-deb -f "$DEB" Version); VERSION=${VERSION%-*}

if dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q "ok installed"; then
  fail "$PKG is installed already; this test installs and removes it"
fi

installed=0
cleanup() {
  cluster_stop "$DIR" "$SYSTEM_PG_BIN"
  if [ "$installed" = 1 ]; then dpkg_retry -r "$PKG" >/dev/null || echo "could not remove $PKG" >&2; fi
  restore_shared
}
trap cleanup EXIT

step "package fields ($DEB)"
expect_eq "Package" "$(dpkg-deb -f "$DEB" Package)" "$PKG"
expect_eq "Architecture" "$(dpkg-deb -f "$DEB" Architecture)" "$(dpkg --print-architecture)"
expect_eq "Section" "$(dpkg-deb -f "$DEB" Section)" "database"
dpkg-deb -f "$DEB" Depends | grep -Eq "(^|, )postgresql-$PG_MAJOR(,|$)" || fail "Depends lacks postgresql-$PG_MAJOR"
ok "Depends: $(dpkg-deb -f "$DEB" Depends)"
[ -n "$(dpkg-deb -f "$DEB" Maintainer)" ] && [ -n "$(dpkg-deb -f "$DEB" Description)" ] || fail "no Maintainer or Description"
ok "Maintainer, Description, Version $(dpkg-deb -f "$DEB" Version)"
expected_files="./usr/lib/postgresql/$PG_MAJOR/lib/pg_migration_guard.so
./usr/share/postgresql/$PG_MAJOR/extension/pg_migration_guard--$VERSION.sql
./usr/share/postgresql/$PG_MAJOR/extension/pg_migration_guard.control"
for f in sql/pg_migration_guard--*--*.sql; do
  expected_files+="
./usr/share/postgresql/$PG_MAJOR/extension/$(basename "$f")"
done
got_files=$(dpkg-deb --fsys-tarfile "$DEB" | tar -t | grep -E '\.(so|sql|control)$' | sort)
expect_eq "library, control file, install and upgrade scripts at Debian's paths" "$got_files" "$(sort <<<"$expected_files")"

step "dpkg -i"
# Remember the guard's files that are in the system's directories without a package, to put
# them back after dpkg -r (dpkg replaces such files without asking, and removes them).
for f in $(dpkg-deb --fsys-tarfile "$DEB" | tar -t | grep -E '\.(so|sql|control)$' | sed 's/^\.//'); do
  save_shared "$f"
done
installed=1
dpkg_retry -i "$DEB" >/dev/null
expect_eq "dpkg status" "$(dpkg-query -W -f='${Status} ${Version}' "$PKG")" "install ok installed $(dpkg-deb -f "$DEB" Version)"
dpkg-query -L "$PKG" | grep -qx "$LIBDIR_SYSTEM/pg_migration_guard.so" || fail "dpkg -L lacks the library"
ok "dpkg -L: $LIBDIR_SYSTEM/pg_migration_guard.so, $EXTDIR_SYSTEM/pg_migration_guard.control"

step "a clean cluster run by $SYSTEM_PG_BIN, shared_preload_libraries = pg_migration_guard"
cluster_init "$DIR" "$SYSTEM_PG_BIN"
cluster_start "$DIR" "$PORT" "shared_preload_libraries = 'pg_migration_guard'"
expect_eq "library the server mapped" "$(mapped_guard_library "$DIR")" "$LIBDIR_SYSTEM/pg_migration_guard.so"
q "$PORT" postgres "CREATE EXTENSION pg_migration_guard"
expect_eq "installed version (control file default)" "$(q "$PORT" postgres "SELECT extversion FROM pg_extension WHERE extname = 'pg_migration_guard'")" "$VERSION"

step "a rejected and an allowed statement"
q "$PORT" postgres "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS payload FROM generate_series(1, 50000) g" \
  "ANALYZE big"
out=$(q_err "$PORT" postgres "CREATE INDEX big_payload_idx ON big (payload)")
grep -q "require-concurrent-index-creation" <<<"$out" || fail "unexpected rejection: $out"
ok "CREATE INDEX rejected: $(head -1 <<<"$out")"
q "$PORT" postgres "CREATE INDEX CONCURRENTLY big_payload_idx ON big (payload)"
ok "CREATE INDEX CONCURRENTLY ran"
wait_audit "$PORT" postgres "command_tag = 'CREATE INDEX'" 2 >/dev/null
expect_eq "audit rows" "$(q "$PORT" postgres "SELECT string_agg(decision || ' ' || array_to_string(rules, ',') || ' ' || statement, ' | ' ORDER BY id) FROM pg_migration_guard.audit_log WHERE command_tag = 'CREATE INDEX'")" \
  "rejected require-concurrent-index-creation CREATE INDEX big_payload_idx ON big (payload) | allowed  CREATE INDEX CONCURRENTLY big_payload_idx ON big (payload)"
expect_eq "audit queue: no dropped record, writers ran" "$(q "$PORT" postgres "SELECT dropped_records, pending_records FROM pg_migration_guard.audit_queue_status()")" "0|0"

step "stop, dpkg -r"
cluster_stop "$DIR" "$SYSTEM_PG_BIN"
grep -E 'PANIC|FATAL|terminated by signal' "$DIR/server.log" && fail "server log has errors"
dpkg_retry -r "$PKG" >/dev/null
installed=0
[ ! -e "$LIBDIR_SYSTEM/pg_migration_guard.so" ] || fail "the library is still there after dpkg -r"
dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q "ok installed" && fail "still installed"
ok "removed: $(dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null || echo 'not known to dpkg')"
echo "deb: passed"

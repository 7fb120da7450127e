# Sourced by bench/tps.sh and bench/callgrind.sh (after scripts/common.sh).
#
# guard_lib_copy: makes a private copy of the guard library and sets GUARD_LIB to its
# absolute path, /tmp/pgmg-bench-lib/pg_migration_guard-<first 12 hex of its sha256>.so.
# The benchmarks preload that copy by absolute path
# (shared_preload_libraries = '/tmp/pgmg-bench-lib/pg_migration_guard-....so'), so that
# reinstalling the extension while they run neither changes what they measure nor
# rewrites a file a running server has mapped. Preloading is enough for rows 1-2: the
# hook is installed by _PG_init, no CREATE EXTENSION is needed.
#   GUARD_SO=/path/to/pg_migration_guard.so   library to copy (default: the installed one,
#                                             $(pg_config --pkglibdir)/pg_migration_guard.so)
guard_lib_copy() {
  local src=${GUARD_SO:-$("${PG_CONFIG}" --pkglibdir)/pg_migration_guard.so}
  [ -r "$src" ] || { echo "guard library not found: $src (set GUARD_SO)" >&2; return 1; }
  local sum
  sum=$(sha256sum "$src" | cut -c1-12)
  install -d -m 755 /tmp/pgmg-bench-lib
  GUARD_LIB=/tmp/pgmg-bench-lib/pg_migration_guard-$sum.so
  # install(1) writes a new file and renames it: never rewrites a mapped library in place.
  [ -f "$GUARD_LIB" ] || install -m 755 "$src" "$GUARD_LIB"
  GUARD_LIB_DESC="$src, sha256 $sum, $(date -u -r "$src" +%Y-%m-%dT%H:%MZ), copied to $GUARD_LIB"
  echo "guard library: $GUARD_LIB_DESC" >&2
}

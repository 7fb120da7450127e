# Sourced by bench/tps.sh and bench/callgrind.sh (after scripts/common.sh).
#
# guard_lib_copy: makes a private copy of the guard library,
#   /tmp/pgmg-bench-lib/<first 12 hex digits of its sha256>/pg_migration_guard.so,
# so that reinstalling the extension while a benchmark runs neither changes what it
# measures nor rewrites a file a running server has mapped, and sets
#   GUARD_LIB_DIR   that directory
#   GUARD_OPTS      the server options that preload the copy (an array):
#                   -c dynamic_library_path=GUARD_LIB_DIR:$libdir
#                   -c shared_preload_libraries=pg_migration_guard
#   GUARD_LIB_DESC  one line naming the copy's source, checksum and date
# The copy is preloaded by name through dynamic_library_path, not by absolute path: the
# library registers its audit background worker by the name "pg_migration_guard", which
# resolves through dynamic_library_path too; with an absolute path in
# shared_preload_libraries the worker would load the installed library as a second
# copy. Preloading is enough for rows 1-2: the hook is installed by _PG_init, no CREATE
# EXTENSION is needed.
#   GUARD_SO=/path/to/pg_migration_guard.so   library to copy (default: the one
#                                             install_extension installed, $GUARD_LIB_DIR)
#   GUARD_LIB_COPIES=/tmp/pgmg-bench-lib      where the copies go
guard_lib_copy() {
  local src=${GUARD_SO:-${GUARD_LIB_DIR:-}/pg_migration_guard.so}
  [ -r "$src" ] || { echo "guard library not found: $src (set GUARD_SO)" >&2; return 1; }
  local tmp sum
  local root=${GUARD_LIB_COPIES:-/tmp/pgmg-bench-lib}
  install -d -m 755 "$root"
  # Copy first, then checksum the copy: the source may be rewritten at any moment.
  tmp=$(mktemp "$root/copy.XXXXXX")
  cp -p "$src" "$tmp"
  sum=$(sha256sum "$tmp" | cut -c1-12)
  GUARD_LIB_DIR=$root/$sum
  install -d -m 755 "$GUARD_LIB_DIR"
  if [ -f "$GUARD_LIB_DIR/pg_migration_guard.so" ]; then
    rm -f "$tmp"
  else
    chmod 755 "$tmp"
    mv "$tmp" "$GUARD_LIB_DIR/pg_migration_guard.so"
  fi
  GUARD_OPTS=(-c "dynamic_library_path=$GUARD_LIB_DIR:\$libdir" -c shared_preload_libraries=pg_migration_guard)
  GUARD_LIB_DESC="$src, sha256 $sum..., built $(date -u -r "$GUARD_LIB_DIR/pg_migration_guard.so" +%Y-%m-%dT%H:%MZ), copied to $GUARD_LIB_DIR/pg_migration_guard.so"
  echo "guard library: $GUARD_LIB_DESC" >&2
}

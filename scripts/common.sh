# Shared helpers for scripts/demo.sh, scripts/test.sh, tests/clients/run.sh and bench/
# (sourced, not run).
#
# Never touch a running server's files: the project never writes into the system's
# PostgreSQL library directory. Its servers run the system's PostgreSQL programs from a
# private tree (PG_TREE, built by scripts/setup.sh: the programs copied, the libraries
# linked), whose pg_config reports the tree's own lib/ as PKGLIBDIR, so `cargo pgrx test`
# installs its test build there; and the clusters the scripts start load the guard library
# from a content-addressed directory (install_extension), never rewritten once written.
#
# PG_MAJOR (default 15) selects the server: 15 is Debian's packaged server, its programs in
# the private tree /var/tmp/pgmg/pg15; 17 and 18 are built by scripts/setup.sh from
# Debian's source packages into /var/tmp/pgmg/pg17 and /var/tmp/pgmg/pg18, each with its
# own SHAREDIR. PGMG_TREES (default /var/tmp/pgmg) moves all trees.
PG_MAJORS_SUPPORTED="15 17 18"
pg_tree_of() { echo "${PGMG_TREES:-/var/tmp/pgmg}/pg$1"; }
# select_pg_major N: points PG_MAJOR, PG_TREE, PG_BIN and PG_CONFIG at version N.
select_pg_major() {
  case " $PG_MAJORS_SUPPORTED " in
    *" $1 "*) ;;
    *) echo "PG_MAJOR=$1: supported versions are $PG_MAJORS_SUPPORTED" >&2; return 1 ;;
  esac
  PG_MAJOR=$1
  PG_TREE=$(pg_tree_of "$PG_MAJOR")
  PG_BIN=${PG_TREE}/bin
  PG_CONFIG=${PG_BIN}/pg_config
}
select_pg_major "${PG_MAJOR:-15}" || return 1
# Debian's PostgreSQL 15 programs, which scripts/setup.sh copies into the 15 tree.
SYSTEM_PG_BIN=/usr/lib/postgresql/15/bin
# Where install_extension puts each build of the library: <dir>/<sha256 prefix>/.
GUARD_LIB_ROOT=${PGMG_LIB_ROOT:-/var/tmp/pgmg/lib}

# Run a command as the postgres OS user: PostgreSQL refuses to run as root.
as_pg() {
  if [ "$(id -un)" = postgres ]; then "$@"; else sudo -u postgres "$@"; fi
}

# start_cluster DIR PORT PRELOAD [OPTIONS]: a throwaway cluster in DIR, listening only on the
# Unix socket in /tmp, with shared_preload_libraries = PRELOAD (may be empty) and OPTIONS,
# more server options (`-c name=value ...`, through a shell: quote values with spaces in
# single quotes). When install_extension ran, the guard is loaded from its private copy
# (dynamic_library_path).
start_cluster() {
  local dir=$1 port=$2 preload=$3 options=${4:-}
  stop_cluster "$dir"
  rm -rf "$dir"
  install -d -o postgres "$dir"
  as_pg "${PG_BIN}/initdb" -D "$dir/data" --auth=trust -U postgres >/dev/null
  local libpath=''
  # single-quoted: pg_ctl starts the server through a shell, which would expand $libdir
  [ -n "${GUARD_LIB_DIR:-}" ] && libpath="-c dynamic_library_path='${GUARD_LIB_DIR}:\$libdir'"
  as_pg "${PG_BIN}/pg_ctl" -D "$dir/data" -w -l "$dir/server.log" \
    -o "-p $port -k /tmp -c listen_addresses='127.0.0.1' -c shared_preload_libraries='$preload' -c fsync=off $libpath $options" \
    start >/dev/null
}

stop_cluster() {
  local dir=$1
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_pg "${PG_BIN}/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

# install_atomically SRC DEST [MODE]: writes DEST as a new file beside it, then renames it
# over DEST, so that a process that has DEST open or mapped keeps the old file intact.
install_atomically() {
  local src=$1 dest=$2 mode=${3:-644} tmp
  tmp=$(mktemp "$(dirname "$dest")/.$(basename "$dest").XXXXXX")
  cp "$src" "$tmp" && chmod "$mode" "$tmp" && mv -f "$tmp" "$dest"
}

# Builds the extension in release mode (cargo pgrx package) and installs it without
# touching a running server's files:
#   - the library into GUARD_LIB_ROOT/<first 12 hex digits of its sha256>/, written once
#     and never rewritten; GUARD_LIB_DIR is set to that directory, and start_cluster puts it
#     first in dynamic_library_path (the library is preloaded by name);
#   - the control file and SQL scripts into the server's SHAREDIR/extension (read by
#     CREATE/ALTER EXTENSION only, never mapped), each replaced by a rename.
install_extension() {
  cargo pgrx package --pg-config "${PG_CONFIG}" >/dev/null
  local out=target/release/pg_migration_guard-pg${PG_MAJOR} so sum f sharedir
  so=$(find "$out" -name pg_migration_guard.so | head -1)
  [ -n "$so" ] || { echo "install_extension: no pg_migration_guard.so under $out" >&2; return 1; }
  sum=$(sha256sum "$so" | cut -c1-12)
  GUARD_LIB_DIR=$GUARD_LIB_ROOT/$sum
  install -d -m 755 "$GUARD_LIB_DIR"
  [ -f "$GUARD_LIB_DIR/pg_migration_guard.so" ] || install_atomically "$so" "$GUARD_LIB_DIR/pg_migration_guard.so" 755
  sharedir=$("${PG_CONFIG}" --sharedir)
  while IFS= read -r f; do
    install_atomically "$f" "$sharedir/extension/$(basename "$f")"
  done < <(find "$out" -path '*/extension/*' -type f)
  export GUARD_LIB_DIR
  echo "install_extension: library $GUARD_LIB_DIR/pg_migration_guard.so" >&2
}

# The deb-src-only apt source through which scripts/setup.sh (PostgreSQL 17/18) and
# scripts/regress.sh (the regression suite of 15) get Debian's source packages: sources
# only, so no binary package of another Debian release enters this system.
SRC_LIST=/etc/apt/sources.list.d/pgmg-src.sources
SRC_LIST_CONTENT='Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm trixie sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg'
# ensure_deb_src PACKAGE: apt knows PACKAGE's source package (writes SRC_LIST and runs
# apt-get update when needed).
ensure_deb_src() {
  local sudo='' updated=0
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  if [ "$(cat "$SRC_LIST" 2>/dev/null)" != "$SRC_LIST_CONTENT" ]; then
    echo "adding $SRC_LIST (deb-src only)" >&2
    printf '%s\n' "$SRC_LIST_CONTENT" | $sudo tee "$SRC_LIST.new" >/dev/null
    $sudo mv -f "$SRC_LIST.new" "$SRC_LIST"
    $sudo apt-get update -qq
    updated=1
  fi
  if ! apt-cache showsrc "$1" 2>/dev/null | grep -q '^Package:'; then
    [ "$updated" -eq 1 ] || $sudo apt-get update -qq
  fi
}

# Helpers of the packaging tests (tests/packaging/*.sh), sourced after scripts/common.sh.
#
# Clusters: throwaway, owned by the postgres OS user, under PKG_WORK, listening on the Unix
# socket in /tmp and 127.0.0.1, with fsync off. Settings are written into the cluster's
# postgresql.conf (no quoting through pg_ctl's shell).
#
# Environment:
#   PGMG_PKG_WORK        work directory (default /tmp/pgmg-packaging)
#   PGMG_PKG_PORT_BASE   first of the ports the tests use (default 55540; they use base..base+9)

PKG_WORK=${PGMG_PKG_WORK:-/tmp/pgmg-packaging}
PKG_PORT_BASE=${PGMG_PKG_PORT_BASE:-55540}
EXTDIR_SYSTEM=/usr/share/postgresql/${PG_MAJOR}/extension
LIBDIR_SYSTEM=/usr/lib/postgresql/${PG_MAJOR}/lib
PSQL_BIN=${SYSTEM_PG_BIN}/psql

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "  ok: $*"; }
step() { echo "-- $*"; }

# q PORT DB SQL...: runs SQL (each argument one -c) as postgres, unaligned, tuples only;
# stops at the first error.
q() {
  local port=$1 db=$2; shift 2
  local args=()
  for s in "$@"; do args+=(-c "$s"); done
  "$PSQL_BIN" -X -q -At -v ON_ERROR_STOP=1 -h /tmp -p "$port" -U postgres -d "$db" "${args[@]}"
}

# q_err PORT DB SQL: runs SQL that must fail; prints its error output (stderr), fails when
# the statement succeeded.
q_err() {
  local port=$1 db=$2 sql=$3 out
  if out=$("$PSQL_BIN" -X -q -At -v ON_ERROR_STOP=1 -h /tmp -p "$port" -U postgres -d "$db" -c "$sql" 2>&1); then
    fail "expected an error from: $sql (got: $out)"
  fi
  printf '%s\n' "$out"
}

# expect_error PORT DB SQL PATTERN: SQL must fail with an error output matching PATTERN
# (grep -E); prints the first line of the error.
expect_error() {
  local out
  out=$(q_err "$1" "$2" "$3")
  grep -Eq -- "$4" <<<"$out" || fail "error of [$3] does not match [$4]: $out"
  head -1 <<<"$out"
}

# expect_eq WHAT GOT WANT
expect_eq() {
  [ "$2" = "$3" ] || fail "$1: got [$2], want [$3]"
  ok "$1"
}

# cluster_init DIR BINDIR: a new data directory DIR/data (initdb as the postgres OS user).
cluster_init() {
  local dir=$1 bin=$2
  cluster_stop "$dir" "$bin"
  rm -rf "$dir"
  install -d -o postgres "$dir"
  as_pg "$bin/initdb" -D "$dir/data" --auth=trust -U postgres >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; fail "initdb $dir"; }
  echo "$bin" >"$dir/bindir"
}

# cluster_conf DIR SETTING...: appends lines ("name = value") to DIR/data/postgresql.conf.
cluster_conf() {
  local dir=$1; shift
  printf '%s\n' "$@" | as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
}

# cluster_start DIR PORT SETTING...: starts the cluster of DIR on PORT with the settings
# appended to its postgresql.conf (later lines win, so a restart can change them).
cluster_start() {
  local dir=$1 port=$2; shift 2
  local bin; bin=$(cat "$dir/bindir")
  cluster_conf "$dir" "port = $port" "unix_socket_directories = '/tmp'" "listen_addresses = '127.0.0.1'" \
    "fsync = off" "log_line_prefix = '%m [%p] %b %q%u@%d '" "$@"
  as_pg "$bin/pg_ctl" -D "$dir/data" -w -t 60 -l "$dir/server.log" start >/dev/null \
    || { tail -20 "$dir/server.log" >&2; fail "cluster $dir did not start"; }
}

cluster_stop() {
  local dir=$1 bin=${2:-}
  [ -n "$bin" ] || bin=$(cat "$dir/bindir" 2>/dev/null || echo "$PG_BIN")
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

cluster_restart() {
  local dir=$1 port=$2; shift 2
  cluster_stop "$dir"
  cluster_start "$dir" "$port" "$@"
}

# postmaster_pid DIR
postmaster_pid() { head -1 "$1/data/postmaster.pid"; }

# mapped_guard_library DIR: the path of the pg_migration_guard library the postmaster of DIR
# has mapped, with " (deleted)" when the file was replaced since.
mapped_guard_library() {
  awk '$6 ~ /pg_migration_guard[^\/]*\.so/ { $1=$2=$3=$4=$5=""; sub(/^ +/, ""); print; exit }' \
    "/proc/$(postmaster_pid "$1")/maps"
}

# wait_audit PORT DB WHERE N: waits (up to 15 s) until audit_log has at least N rows
# matching WHERE; prints the count.
wait_audit() {
  local port=$1 db=$2 where=$3 n=$4 got=0 i
  for i in $(seq 1 150); do
    got=$(q "$port" "$db" "SELECT count(*) FROM pg_migration_guard.audit_log WHERE $where")
    [ "$got" -ge "$n" ] && { echo "$got"; return 0; }
    sleep 0.1
  done
  fail "audit_log of $db: $got rows WHERE $where after 15 s, want $n"
}

# Files in the system's shared directories (SHAREDIR/extension is shared by every tree
# the project uses, and other worktrees' install_extension writes the guard's files there):
# put_shared SRC DEST records what DEST was (a copy, or that it did not exist) the first
# time, then installs SRC over it by rename; restore_shared puts every recorded file back
# the same way (or removes it when it did not exist).
SHARED_BACKUP=$PKG_WORK/shared-backup
save_shared() {
  local dest=$1 key
  key=$(printf '%s' "$dest" | sha256sum | cut -c1-16)
  install -d "$SHARED_BACKUP"
  [ -e "$SHARED_BACKUP/$key.path" ] && return 0
  if [ -e "$dest" ]; then cp -p "$dest" "$SHARED_BACKUP/$key.orig"; fi
  printf '%s\n' "$dest" >"$SHARED_BACKUP/$key.path"
}
put_shared() {
  save_shared "$2"
  install_atomically "$1" "$2" "${3:-644}"
}
restore_shared() {
  local p dest orig
  [ -d "$SHARED_BACKUP" ] || return 0
  for p in "$SHARED_BACKUP"/*.path; do
    [ -e "$p" ] || continue
    dest=$(cat "$p"); orig=${p%.path}.orig
    if [ -e "$orig" ]; then
      # as install_atomically, keeping the original's mode and times
      local tmp; tmp=$(mktemp "$(dirname "$dest")/.$(basename "$dest").XXXXXX")
      cp -p "$orig" "$tmp" && mv -f "$tmp" "$dest"
    else
      rm -f "$dest"
    fi
    rm -f "$p" "$orig"
  done
}

# dpkg_retry ARGS...: dpkg, waiting (up to 10 minutes) while another dpkg or apt holds the lock.
dpkg_retry() {
  local out i
  for i in $(seq 1 120); do
    if out=$(dpkg "$@" 2>&1); then printf '%s\n' "$out"; return 0; fi
    case $out in *lock*) sleep 5 ;; *) printf '%s\n' "$out" >&2; return 1 ;; esac
  done
  printf '%s\n' "$out" >&2
  return 1
}

# apt_install PKG...: installs the Debian packages that are missing (idempotent), waiting
# for the dpkg lock.
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  echo "installing Debian packages: ${missing[*]}" >&2
  local SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null \
    || { DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq \
         && DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null; }
}

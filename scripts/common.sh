# Shared helpers for scripts/demo.sh and scripts/test.sh (sourced, not run).
PG_MAJOR=15
PG_BIN=/usr/lib/postgresql/${PG_MAJOR}/bin
PG_CONFIG=${PG_BIN}/pg_config

# Run a command as the postgres OS user: PostgreSQL refuses to run as root.
as_pg() {
  if [ "$(id -un)" = postgres ]; then "$@"; else sudo -u postgres "$@"; fi
}

# start_cluster DIR PORT PRELOAD: a throwaway cluster in DIR, listening only on the Unix
# socket in /tmp, with shared_preload_libraries = PRELOAD (may be empty).
start_cluster() {
  local dir=$1 port=$2 preload=$3
  stop_cluster "$dir"
  rm -rf "$dir"
  install -d -o postgres "$dir"
  as_pg "${PG_BIN}/initdb" -D "$dir/data" --auth=trust -U postgres >/dev/null
  as_pg "${PG_BIN}/pg_ctl" -D "$dir/data" -w -l "$dir/server.log" \
    -o "-p $port -k /tmp -c listen_addresses='127.0.0.1' -c shared_preload_libraries='$preload' -c fsync=off" \
    start >/dev/null
}

stop_cluster() {
  local dir=$1
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_pg "${PG_BIN}/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

# Build the extension in release mode and install it into the system PostgreSQL.
install_extension() {
  cargo pgrx install --release --pg-config "${PG_CONFIG}" >/dev/null
}

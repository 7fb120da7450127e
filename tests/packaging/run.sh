#!/usr/bin/env bash
# Packaging and operations tests, each a script of its own (see its header):
#   deb      the Debian package (scripts/package.sh) installed with dpkg on a clean cluster
#            run by the system's server, then removed with dpkg -r
#   upgrade  0.1.0 -> current: library replaced, restart, ALTER EXTENSION UPDATE; pg_dump /
#            pg_restore into a guarded cluster; library rolled back
#   tools    pg_repack, pg_partman, pg_cron, pgaudit, auto_explain, pg_stat_statements
#   standby  a physical hot standby preloading the guard
#
# Usage: tests/packaging/run.sh [deb] [upgrade] [tools] [standby]   (default: all, in this order)
# Environment: PGMG_PKG_WORK (default /tmp/pgmg-packaging), PGMG_PKG_PORT_BASE (default
# 55540; ports base .. base+7). Installs the Debian packages it needs; installs the guard's
# package only for the deb test and removes it after.
set -euo pipefail
cd "$(dirname "$0")/../.."
parts=("$@")
[ "${#parts[@]}" -gt 0 ] || parts=(deb upgrade tools standby)
for p in "${parts[@]}"; do
  [ -x "tests/packaging/$p.sh" ] || { echo "unknown part: $p" >&2; exit 2; }
  echo "== packaging: $p"
  start=$(date +%s)
  "tests/packaging/$p.sh"
  echo "== packaging: $p passed in $(( $(date +%s) - start )) s"
done

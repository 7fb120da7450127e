#!/usr/bin/env bash
# Idempotent toolchain setup for a fresh Debian 12 machine (see README.md).
#  1. apt: PostgreSQL 15 server + headers (same command, so versions match), clang, sudo
#  2. cargo-pgrx 0.18.0 (skipped when already installed)
#  3. the project's private PostgreSQL tree (PG_TREE, see scripts/common.sh): the system's
#     programs copied, its libraries linked, so that pg_config there reports the tree's own
#     lib/ and nothing the project builds is ever written into the system's library directory
#  4. cargo pgrx init against the private tree's pg_config (no download)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh

PGRX_VERSION=0.18.0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need_apt=0
for pkg in postgresql-${PG_MAJOR} postgresql-server-dev-${PG_MAJOR} libclang-dev clang sudo; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    need_apt=1
  fi
done
if [ "$need_apt" -eq 1 ]; then
  echo "setup: installing Debian packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq postgresql-${PG_MAJOR} postgresql-server-dev-${PG_MAJOR} libclang-dev clang sudo jq >/dev/null
fi

if ! cargo pgrx --version 2>/dev/null | grep -q "${PGRX_VERSION}"; then
  echo "setup: installing cargo-pgrx ${PGRX_VERSION} (about 5 minutes)" >&2
  cargo install cargo-pgrx --version "${PGRX_VERSION}" --locked
fi

# The private tree. Debian's programs find their libraries relative to their own location
# (pg_config --pkglibdir of a copied pg_config is <copy>/../lib) and the shared files at the
# fixed SHAREDIR. Programs are replaced by rename (a running server keeps its copy), and
# refreshed when the system's differ (a point-release upgrade).
install -d -m 755 "${PG_TREE}/bin" "${PG_TREE}/lib" "${GUARD_LIB_ROOT}"
for f in "${SYSTEM_PG_BIN}"/*; do
  name=$(basename "$f")
  cmp -s "$f" "${PG_TREE}/bin/$name" || install_atomically "$f" "${PG_TREE}/bin/$name" 755
done
for f in /usr/lib/postgresql/${PG_MAJOR}/lib/*; do
  name=$(basename "$f")
  case $name in pg_migration_guard*) continue ;; esac
  [ "$(readlink "${PG_TREE}/lib/$name")" = "$f" ] || ln -sfn "$f" "${PG_TREE}/lib/$name"
done
[ "$("${PG_CONFIG}" --pkglibdir)" = "${PG_TREE}/lib" ] || {
  echo "setup: ${PG_CONFIG} reports pkglibdir $("${PG_CONFIG}" --pkglibdir), expected ${PG_TREE}/lib" >&2
  exit 1
}

PGRX_HOME="${PGRX_HOME:-$HOME/.pgrx}"
if ! grep -qs "^pg${PG_MAJOR} = \"${PG_CONFIG}\"" "${PGRX_HOME}/config.toml"; then
  echo "setup: cargo pgrx init --pg${PG_MAJOR} ${PG_CONFIG}" >&2
  cargo pgrx init --pg${PG_MAJOR} "${PG_CONFIG}"
fi
echo "setup: toolchain ready" >&2

#!/usr/bin/env bash
# Idempotent toolchain setup for a fresh Debian 12 machine (see README.md).
#  1. apt: PostgreSQL 15 server + headers (same command, so versions match), clang, sudo
#  2. cargo-pgrx 0.18.0 (skipped when already installed)
#  3. cargo pgrx init against the system PostgreSQL 15 (no download)
set -euo pipefail

PG_MAJOR=15
PG_CONFIG=/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config
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
  $SUDO apt-get install -y -qq postgresql-${PG_MAJOR} postgresql-server-dev-${PG_MAJOR} libclang-dev clang sudo >/dev/null
fi

if ! cargo pgrx --version 2>/dev/null | grep -q "${PGRX_VERSION}"; then
  echo "setup: installing cargo-pgrx ${PGRX_VERSION} (about 5 minutes)" >&2
  cargo install cargo-pgrx --version "${PGRX_VERSION}" --locked
fi

PGRX_HOME="${PGRX_HOME:-$HOME/.pgrx}"
if ! grep -qs "pg${PG_MAJOR}" "${PGRX_HOME}/config.toml"; then
  echo "setup: cargo pgrx init --pg${PG_MAJOR} ${PG_CONFIG}" >&2
  cargo pgrx init --pg${PG_MAJOR} "${PG_CONFIG}"
fi
echo "setup: toolchain ready" >&2

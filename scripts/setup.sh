#!/usr/bin/env bash
# Idempotent toolchain setup for a fresh Debian 12 machine (see README.md).
#  1. apt: PostgreSQL 15 server + headers (same command, so versions match), clang, sudo
#  2. cargo-pgrx 0.18.0 (skipped when already installed)
#  3. the project's private PostgreSQL 15 tree (see scripts/common.sh): the system's
#     programs copied, its libraries linked, so that pg_config there reports the tree's own
#     lib/ and nothing the project builds is ever written into the system's library directory
#  4. PostgreSQL 17 / 18, when PG_MAJOR or PGMG_MAJORS (e.g. "15 17 18") asks for them:
#     built from Debian's source packages (trixie / sid; sources only, no binary package
#     of another release enters this system) into /var/tmp/pgmg/pg17, /var/tmp/pgmg/pg18,
#     with contrib; skipped when already built with the same recipe (about 10-15 minutes
#     each on 2 cores)
#  5. cargo pgrx init against every tree's pg_config (no download)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh

PGRX_VERSION=0.18.0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# The versions to prepare: 15 always (Debian's server; pgrx's config keeps it), PG_MAJOR,
# and PGMG_MAJORS.
MAJORS=15
for m in ${PG_MAJOR} ${PGMG_MAJORS:-}; do
  case " $PG_MAJORS_SUPPORTED " in
    *" $m "*) ;;
    *) echo "setup: PostgreSQL $m is not supported (only $PG_MAJORS_SUPPORTED)" >&2; exit 1 ;;
  esac
  case " $MAJORS " in *" $m "*) ;; *) MAJORS="$MAJORS $m" ;; esac
done
SOURCE_MAJORS=${MAJORS#15}

# jq: tests/check/run.sh reads the client's JSON report with it.
APT_PACKAGES="postgresql-15 postgresql-server-dev-15 libclang-dev clang sudo jq"
# What building PostgreSQL from a source tarball needs (17+ tarballs ship no generated
# parser files: bison and flex are required), all from bookworm.
[ -n "${SOURCE_MAJORS// /}" ] && APT_PACKAGES="$APT_PACKAGES build-essential bison flex perl pkg-config libreadline-dev zlib1g-dev bzip2 xz-utils dpkg-dev"
need_apt=0
for pkg in $APT_PACKAGES; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    need_apt=1
  fi
done
if [ "$need_apt" -eq 1 ]; then
  echo "setup: installing Debian packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq $APT_PACKAGES >/dev/null
fi

if ! cargo pgrx --version 2>/dev/null | grep -q "${PGRX_VERSION}"; then
  echo "setup: installing cargo-pgrx ${PGRX_VERSION} (about 5 minutes)" >&2
  cargo install cargo-pgrx --version "${PGRX_VERSION}" --locked
fi

# The private 15 tree. Debian's programs find their libraries relative to their own
# location (pg_config --pkglibdir of a copied pg_config is <copy>/../lib) and the shared
# files at the fixed SHAREDIR. Programs are replaced by rename (a running server keeps its
# copy), and refreshed when the system's differ (a point-release upgrade).
PG15_TREE=$(pg_tree_of 15)
install -d -m 755 "${PG15_TREE}/bin" "${PG15_TREE}/lib" "${GUARD_LIB_ROOT}"
for f in "${SYSTEM_PG_BIN}"/*; do
  name=$(basename "$f")
  cmp -s "$f" "${PG15_TREE}/bin/$name" || install_atomically "$f" "${PG15_TREE}/bin/$name" 755
done
for f in /usr/lib/postgresql/15/lib/*; do
  name=$(basename "$f")
  case $name in pg_migration_guard*) continue ;; esac
  [ "$(readlink "${PG15_TREE}/lib/$name")" = "$f" ] || ln -sfn "$f" "${PG15_TREE}/lib/$name"
done
[ "$("${PG15_TREE}/bin/pg_config" --pkglibdir)" = "${PG15_TREE}/lib" ] || {
  echo "setup: ${PG15_TREE}/bin/pg_config reports pkglibdir $("${PG15_TREE}/bin/pg_config" --pkglibdir), expected ${PG15_TREE}/lib" >&2
  exit 1
}

# PostgreSQL 17 and 18 from Debian's source packages: a deb-src-only apt source (the same
# file serves other source packages), the upstream tarball (the .orig.tar.* of
# `apt-get source --download-only`), configure/make/make install into the tree.
# The recipe: a tree built with another recipe is rebuilt.
SOURCE_CONFIGURE="--without-icu"
SOURCE_RECIPE="configure $SOURCE_CONFIGURE; make; make -C contrib; install both"
source_built() {  # source_built MAJOR: the tree holds a build of this recipe
  local tree
  tree=$(pg_tree_of "$1")
  [ -x "$tree/bin/pg_config" ] && [ "$(sed -n 2p "$tree/.pgmg-build" 2>/dev/null)" = "$SOURCE_RECIPE" ]
}
source_tarball() {  # source_tarball MAJOR: the upstream tarball in the cache, if any
  find "$(pg_tree_of "$1")/.src" -maxdepth 1 -name "postgresql-$1_*.orig.tar.*" 2>/dev/null | sort -V | tail -1
}
fetch_source() {  # fetch_source MAJOR: downloads the source package unless cached; fails if it cannot
  local src
  src=$(pg_tree_of "$1")/.src
  [ -n "$(source_tarball "$1")" ] && return 0
  install -d -m 755 "$src" || return 1
  ensure_deb_src "postgresql-$1" || return 1
  echo "setup: apt-get source --download-only postgresql-$1" >&2
  # as root, apt would hand the download to its _apt user, who cannot write here
  (cd "$src" && apt-get source -qq --download-only $([ "$(id -u)" -eq 0 ] && echo -o APT::Sandbox::User=root) \
     "postgresql-$1" >/dev/null) || return 1
  [ -n "$(source_tarball "$1")" ]
}
build_from_source() {  # build_from_source MAJOR (after fetch_source)
  local major=$1 tree src tarball version log
  tree=$(pg_tree_of "$major")
  src=$tree/.src
  exec 9>"$src/lock"
  flock 9
  if source_built "$major"; then
    exec 9>&-
    return 0
  fi
  tarball=$(source_tarball "$major")
  version=$(basename "$tarball" | sed -E 's/^postgresql-[0-9]+_([^.]+\.[^.]+)\.orig\..*$/\1/')
  log=$src/build.log
  echo "setup: building PostgreSQL $version into $tree (log: $log)" >&2
  rm -rf "$src/build" "$tree/bin" "$tree/lib" "$tree/include" "$tree/share" "$tree/.pgmg-build"
  mkdir "$src/build"
  tar -xf "$tarball" -C "$src/build" --strip-components=1
  # world-readable: the postgres OS user runs these programs
  if ! (umask 022 && cd "$src/build" &&
        # shellcheck disable=SC2086
        ./configure --prefix="$tree" $SOURCE_CONFIGURE &&
        make -j2 && make -C contrib -j2 &&
        make install && make -C contrib install) >"$log" 2>&1; then
    tail -30 "$log" >&2
    echo "setup: building PostgreSQL $version failed (log: $log)" >&2
    exit 1
  fi
  rm -rf "$src/build"
  printf '%s\n%s\n' "$version" "$SOURCE_RECIPE" > "$tree/.pgmg-build"
  exec 9>&-
}
# A version whose source package the mirror does not serve is left out, loudly: the
# scripts then skip it (scripts/test.sh says so in its last line). A failed build stops.
for m in $SOURCE_MAJORS; do
  if source_built "$m" || fetch_source "$m"; then
    build_from_source "$m"
  else
    echo "setup: WARNING: the source package postgresql-$m could not be downloaded (see above): PostgreSQL $m is not set up" >&2
  fi
done

# pgrx keeps one pg_config per version in its config.toml and `init` rewrites the whole
# file: pass every tree that is there, so that no version drops out of it.
PGRX_HOME="${PGRX_HOME:-$HOME/.pgrx}"
init_args=()
need_init=0
for m in $PG_MAJORS_SUPPORTED; do
  cfg=$(pg_tree_of "$m")/bin/pg_config
  [ -x "$cfg" ] || continue
  init_args+=("--pg$m" "$cfg")
  grep -qs "^pg$m = \"$cfg\"" "${PGRX_HOME}/config.toml" || need_init=1
done
if [ "$need_init" -eq 1 ]; then
  echo "setup: cargo pgrx init ${init_args[*]}" >&2
  cargo pgrx init "${init_args[@]}"
fi
echo "setup: toolchain ready" >&2

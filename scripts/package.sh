#!/usr/bin/env bash
# Builds the Debian package of pg_migration_guard for one PostgreSQL major version:
#
#   scripts/package.sh [MAJOR]        (default: $PG_MAJOR, else 15)
#
# Output: target/debian/postgresql-MAJOR-pg-migration-guard_VERSION-REVISION_ARCH.deb (the
# path is printed on the last line), named and laid out as Debian names and lays out
# extension packages (postgresql-15-pgaudit, postgresql-15-repack, ...):
#
#   /usr/lib/postgresql/MAJOR/lib/pg_migration_guard.so
#   /usr/share/postgresql/MAJOR/extension/pg_migration_guard.control
#   /usr/share/postgresql/MAJOR/extension/pg_migration_guard--VERSION.sql
#   /usr/share/postgresql/MAJOR/extension/pg_migration_guard--FROM--TO.sql  (every upgrade script)
#   /usr/share/doc/postgresql-MAJOR-pg-migration-guard/{copyright,changelog.Debian.gz,...}
#
# The files come from `cargo pgrx package` run against the project's private tree for that
# major (PG_TREE in scripts/common.sh: /var/tmp/pgmg/pgMAJOR/bin/pg_config, PGMG_PG_TREE
# overrides), whose pkglibdir and sharedir are not Debian's (/var/tmp/pgmg/pg15/lib, or
# <prefix>/lib/postgresql and <prefix>/share/postgresql for a tree built from source): the
# library and the extension directory's files are found by name in pgrx's output and mapped
# to Debian's paths. Depends: postgresql-MAJOR, plus the shared libraries dpkg-shlibdeps
# finds (libc6, libgcc-s1).
#
# Environment:
#   PGMG_DEB_REVISION   Debian revision (default 1): version VERSION-REVISION, VERSION from Cargo.toml
#   DEBFULLNAME, DEBEMAIL   Maintainer (as dch reads them; default: the project's maintainers)
#   PGMG_PACKAGE_OUT    output directory (default target/debian)
# Needs dpkg-deb and dpkg-shlibdeps (dpkg-dev), which scripts/setup.sh does not install:
# this script installs dpkg-dev when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PG_MAJOR=${1:-${PG_MAJOR:-15}}
case $PG_MAJOR in ''|*[!0-9]*) echo "usage: $0 [MAJOR]   (e.g. 15)" >&2; exit 2 ;; esac
source scripts/common.sh

EXT=pg_migration_guard
PKG=postgresql-${PG_MAJOR}-pg-migration-guard
SOURCE=pg-migration-guard
REVISION=${PGMG_DEB_REVISION:-1}
MAINTAINER="${DEBFULLNAME:-pg_migration_guard maintainers} <${DEBEMAIL:-maintainers@users.noreply.b-seed-ef3284c0.example}>"
OUT=${PGMG_PACKAGE_OUT:-$ROOT/target/debian}

die() { echo "package: $*" >&2; exit 1; }

[ -x "$PG_CONFIG" ] || die "no pg_config at $PG_CONFIG (run scripts/setup.sh, or set PGMG_PG_TREE)"
server_major=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
[ "$server_major" = "$PG_MAJOR" ] || die "$PG_CONFIG is PostgreSQL $server_major, not $PG_MAJOR"
if ! command -v dpkg-shlibdeps >/dev/null || ! command -v dpkg-deb >/dev/null; then
  echo "package: installing dpkg-dev" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dpkg-dev >/dev/null
fi

# The [package] version of Cargo.toml (the first `version =` line, before any other table).
VERSION=$(sed -n '/^\[package\]/,/^\[/{s/^version *= *"\([^"]*\)".*/\1/p}' Cargo.toml | head -1)
[ -n "$VERSION" ] || die "no version in Cargo.toml"
DEB_VERSION=$VERSION-$REVISION
ARCH=$(dpkg --print-architecture)
WORK=$OUT/work-pg$PG_MAJOR
STAGE=$WORK/root
PGRX_OUT=$WORK/pgrx
DEB=$OUT/${PKG}_${DEB_VERSION}_${ARCH}.deb

echo "package: building $EXT $VERSION for PostgreSQL $PG_MAJOR ($PG_CONFIG)" >&2
rm -rf "$WORK"
mkdir -p "$PGRX_OUT"
cargo pgrx package --pg-config "$PG_CONFIG" --out-dir "$PGRX_OUT" >"$WORK/cargo-pgrx-package.log" 2>&1 \
  || { tail -30 "$WORK/cargo-pgrx-package.log" >&2; die "cargo pgrx package failed (log: $WORK/cargo-pgrx-package.log)"; }

# pgrx lays its output out under the tree's own pkglibdir and sharedir: find the files by
# name, never by those paths.
mapfile -t sos < <(find "$PGRX_OUT" -type f -name "$EXT.so")
[ "${#sos[@]}" -eq 1 ] || die "expected one $EXT.so under $PGRX_OUT, found ${#sos[@]}"
mapfile -t extfiles < <(find "$PGRX_OUT" -type f -path '*/extension/*' | sort)
LIBDIR=$STAGE/usr/lib/postgresql/$PG_MAJOR/lib
EXTDIR=$STAGE/usr/share/postgresql/$PG_MAJOR/extension
DOCDIR=$STAGE/usr/share/doc/$PKG
install -d -m 755 "$LIBDIR" "$EXTDIR" "$DOCDIR" "$STAGE/DEBIAN"
install -m 644 "${sos[0]}" "$LIBDIR/$EXT.so"
# As dh_strip does: the symbol table and notes go, the dynamic symbols PostgreSQL looks up
# (Pg_magic_func, _PG_init, the functions' *_wrapper) stay.
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$LIBDIR/$EXT.so"
for f in "${extfiles[@]}"; do install -m 644 "$f" "$EXTDIR/$(basename "$f")"; done

# What must be there: the control file, this version's install script, every upgrade script
# of sql/ (cargo pgrx package copies sql/<ext>--<from>--<to>.sql).
[ -f "$EXTDIR/$EXT.control" ] || die "no $EXT.control in pgrx's output"
grep -q "^default_version = '$VERSION'" "$EXTDIR/$EXT.control" || die "$EXT.control's default_version is not $VERSION"
[ -f "$EXTDIR/$EXT--$VERSION.sql" ] || die "no $EXT--$VERSION.sql in pgrx's output"
for f in sql/"$EXT"--*--*.sql; do
  [ -e "$f" ] || continue
  [ -f "$EXTDIR/$(basename "$f")" ] || die "upgrade script $(basename "$f") missing from pgrx's output"
done
ls "$EXTDIR"/"$EXT"--*--"$VERSION".sql >/dev/null 2>&1 || echo "package: warning: no upgrade script to $VERSION" >&2

# Documentation: Debian policy wants copyright and changelog.Debian.gz in every package.
install -m 644 README.md "$DOCDIR/README.md"
[ -f docs/operations.md ] && install -m 644 docs/operations.md "$DOCDIR/operations.md"
gzip -9n "$DOCDIR"/*.md
DATE=$(git log -1 --format=%cD 2>/dev/null || date -R)
EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s)
{
  echo "$SOURCE ($DEB_VERSION) unstable; urgency=medium"
  echo
  echo "  * pg_migration_guard $VERSION for PostgreSQL $PG_MAJOR, built by scripts/package.sh"
  echo "    from commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
  echo
  echo " -- $MAINTAINER  $DATE"
} | gzip -9n >"$DOCDIR/changelog.Debian.gz"
{
  cat <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: pg_migration_guard
Comment: The library also contains the Rust crates it is built from, each under its own
 license (cargo tree -e normal, at packaging time):
EOF
  cargo tree -p "$EXT" -e normal --prefix none -f '{p} {l}' --offline 2>/dev/null \
    | grep -v -e '(proc-macro)' -e '(\*)' -e "^$EXT " -e "^${EXT}_core " | sort -u | sed 's/^/ /'
  cat <<'EOF'

Files: *
Copyright: the pg_migration_guard authors
License: PostgreSQL

License: PostgreSQL
 Permission to use, copy, modify, and distribute this software and its
 documentation for any purpose, without fee, and without a written agreement is
 hereby granted, provided that the above copyright notice and this paragraph and
 the following two paragraphs appear in all copies.
 .
 IN NO EVENT SHALL THE AUTHORS BE LIABLE TO ANY PARTY FOR DIRECT, INDIRECT,
 SPECIAL, INCIDENTAL, OR CONSEQUENTIAL DAMAGES, INCLUDING LOST PROFITS, ARISING
 OUT OF THE USE OF THIS SOFTWARE AND ITS DOCUMENTATION, EVEN IF THE AUTHORS HAVE
 BEEN ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.
 .
 THE AUTHORS SPECIFICALLY DISCLAIM ANY WARRANTIES, INCLUDING, BUT NOT LIMITED TO,
 THE IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE.
 THE SOFTWARE PROVIDED HEREUNDER IS ON AN "AS IS" BASIS, AND THE AUTHORS HAVE NO
 OBLIGATIONS TO PROVIDE MAINTENANCE, SUPPORT, UPDATES, ENHANCEMENTS, OR
 MODIFICATIONS.
EOF
} >"$DOCDIR/copyright"
chmod 644 "$DOCDIR/copyright" "$DOCDIR/changelog.Debian.gz"

# Shared-library dependencies, as ${shlibs:Depends}. The server's own symbols the library
# uses are resolved from the postgres executable at load time, hence --warnings=0.
mkdir -p "$WORK/shlibdeps/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$SOURCE" "$PKG" >"$WORK/shlibdeps/debian/control"
shlibs=$(cd "$WORK/shlibdeps" && dpkg-shlibdeps --warnings=0 -O "$LIBDIR/$EXT.so" | sed -n 's/^shlibs:Depends=//p')
DEPENDS="postgresql-$PG_MAJOR${shlibs:+, $shlibs}"

INSTALLED_SIZE=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
cat >"$STAGE/DEBIAN/control" <<EOF
Package: $PKG
Source: $SOURCE
Version: $DEB_VERSION
Architecture: $ARCH
Maintainer: $MAINTAINER
Installed-Size: $INSTALLED_SIZE
Depends: $DEPENDS
Section: database
Priority: optional
Description: PostgreSQL $PG_MAJOR extension that judges every DDL statement before it runs
 pg_migration_guard is a PostgreSQL extension (preloaded through
 shared_preload_libraries) that sees every DDL statement before it runs,
 whatever client sent it, judges it against the live catalog, and rejects or
 warns on the statements that would take dangerous locks or rewrite or scan
 big tables: CREATE INDEX without CONCURRENTLY, constraints validated under an
 exclusive lock, column type changes that rewrite the table, and more.
 .
 It takes the locks an allowed statement needs in bounded, retried waits, so
 that a migration never queues ahead of the application, and records every
 decision in an audit table written outside the statement's transaction.
 .
 This package contains the extension for PostgreSQL $PG_MAJOR.
EOF
(cd "$STAGE" && find usr -type f -print0 | sort -z | xargs -0 md5sum) >"$STAGE/DEBIAN/md5sums"
chmod 644 "$STAGE/DEBIAN/control" "$STAGE/DEBIAN/md5sums"
find "$STAGE" -exec touch -h -d "@$EPOCH" {} +

rm -f "$DEB"
SOURCE_DATE_EPOCH=$EPOCH dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >/dev/null
dpkg-deb --info "$DEB" >&2
dpkg-deb --contents "$DEB" >&2
echo "$DEB"

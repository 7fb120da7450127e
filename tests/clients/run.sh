#!/usr/bin/env bash
# Client acceptance suite: real migration tools, unmodified, from their registries, apply
# a small real project's migrations to a guarded cluster holding tables of 200k rows.
#
#   Django 5.2 (psycopg 3)  manage.py migrate, plain and with django-pg-zero-downtime-migrations
#   Alembic (SQLAlchemy 2)  alembic upgrade
#   node-pg-migrate         node-pg-migrate up
#   Knex                    knex migrate:latest / migrate:up
#
# Each project lives in tests/clients/<tool>/ with its migrations as the tool generated
# them; <tool>/fixes/ holds the migrations rewritten the safe way after the guard stopped
# them. The suite copies each project to a scratch directory, runs the tool, asserts the
# stop (exit status, the rule and the safe SQL in the text the tool prints, nothing
# applied), puts the fixed migration in place, runs the tool again and asserts the pass
# and the resulting schema.
#
# Assumes the extension is installed (scripts/test.sh installs it first). Installs the
# tools itself: Python packages (requirements.txt) into a virtual environment and npm
# packages (package-lock.json) with the machine's Node.js, both in a cache directory
# outside the repository, skipped when already installed for the same lock files.
#
# Usage: tests/clients/run.sh [django] [alembic] [node-pg-migrate] [knex]   (default: all)
# Environment: PGMG_CLIENTS_CACHE (default ~/.cache/pg_migration_guard/clients),
# PGMG_CLIENTS_PORT (default 55460), PGMG_CLIENTS_DIR (cluster and logs, default
# /tmp/pgmg-clients). PG_MAJOR selects the server (scripts/common.sh).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
source scripts/common.sh

CLIENTS=$ROOT/tests/clients
PORT=${PGMG_CLIENTS_PORT:-55460}
DIR=${PGMG_CLIENTS_DIR:-/tmp/pgmg-clients}
WORK=$DIR/work
LOGS=$DIR/logs
CACHE=${PGMG_CLIENTS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pg_migration_guard/clients}
VENV=$CACHE/venv
NODE_DIR=$CACHE/node

started=$(date +%s)
passed=0
failed=0
failures=()

say() { echo "clients: $*"; }

# ---------------------------------------------------------------------------------------
# Tools, installed once per lock file into the cache.

stamp_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

install_python_tools() {
  local want
  want="$(stamp_of "$CLIENTS/requirements.txt") $(python3 --version 2>&1)"
  if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.installed" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  say "installing Python tools into $VENV (requirements.txt)"
  rm -rf "$VENV"
  mkdir -p "$CACHE"
  python3 -m venv "$VENV" || return 1
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$CLIENTS/requirements.txt" || return 1
  echo "$want" > "$VENV/.installed"
}

install_node_tools() {
  local want
  want="$(stamp_of "$CLIENTS/package.json" "$CLIENTS/package-lock.json") $(node --version)"
  if [ -d "$NODE_DIR/node_modules" ] && [ "$(cat "$NODE_DIR/.installed" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  say "installing Node.js tools into $NODE_DIR (package-lock.json)"
  rm -rf "$NODE_DIR"
  mkdir -p "$NODE_DIR"
  cp "$CLIENTS/package.json" "$CLIENTS/package-lock.json" "$NODE_DIR/"
  (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error) || return 1
  echo "$want" > "$NODE_DIR/.installed"
}

# ---------------------------------------------------------------------------------------
# Database helpers.

psql_db() { local db=$1; shift; psql -X -q -v ON_ERROR_STOP=1 -h /tmp -p "$PORT" -U postgres -d "$db" "$@"; }
# q DB SQL: one value
q() { psql -X -q -At -v ON_ERROR_STOP=1 -h /tmp -p "$PORT" -U postgres -d "$1" -c "$2"; }

new_database() {
  local db=$1
  psql_db postgres -c "CREATE DATABASE $db" >/dev/null &&
    psql_db "$db" -c 'CREATE EXTENSION pg_migration_guard' >/dev/null
}

# ---------------------------------------------------------------------------------------
# Cases. Each runs one tool command, keeps its output in $LOGS/<n>-<slug>.log, and prints
# one PASS or FAIL line.

case_no=0
CASE_LOG=""
CASE_FAIL=""

begin_case() {
  case_no=$((case_no + 1))
  CASE_NAME=$1
  CASE_FAIL=""
  local slug
  slug=$(echo "$1" | tr 'A-Z' 'a-z' | tr -c 'a-z0-9\n' '-' | tr -s '-' | cut -c1-60)
  CASE_LOG=$(printf '%s/%02d-%s.log' "$LOGS" "$case_no" "${slug%-}")
}

# run_tool DIR CMD...: run in DIR, output to the case log, exit status in $TOOL_RC
run_tool() {
  local dir=$1; shift
  { echo "\$ (cd ${dir#"$WORK/"} && $*)"; } > "$CASE_LOG"
  (cd "$dir" && "$@") >> "$CASE_LOG" 2>&1
  TOOL_RC=$?
  echo "[exit status $TOOL_RC]" >> "$CASE_LOG"
}

fail_check() { CASE_FAIL="${CASE_FAIL:+$CASE_FAIL; }$*"; }

# expect_output TEXT...: each TEXT appears literally in what the tool printed
expect_output() {
  local t
  for t in "$@"; do
    grep -qF -- "$t" "$CASE_LOG" || fail_check "output lacks: $t"
  done
}

# expect_no_output TEXT...
expect_no_output() {
  local t
  for t in "$@"; do
    ! grep -qF -- "$t" "$CASE_LOG" || fail_check "output has: $t"
  done
}

# expect_sql DB SQL WANT: the query's one value is WANT
expect_sql() {
  local got
  got=$(q "$1" "$2" 2>&1)
  [ "$got" = "$3" ] || fail_check "$2 -> '$got', expected '$3'"
}

expect_stopped() {  # RULE: non-zero exit and the rule's message
  [ "$TOOL_RC" -ne 0 ] || fail_check "tool exited 0, expected a failure"
  expect_output "$1: "
}

expect_passed() {
  [ "$TOOL_RC" -eq 0 ] || fail_check "tool exited $TOOL_RC, expected 0"
  expect_no_output "ObjectNotInPrerequisiteState" "would block" "would rewrite" "would scan"
}

end_case() {
  if [ -z "$CASE_FAIL" ]; then
    passed=$((passed + 1))
    echo "PASS  $CASE_NAME"
  else
    failed=$((failed + 1))
    failures+=("$CASE_NAME")
    echo "FAIL  $CASE_NAME"
    echo "      $CASE_FAIL"
    echo "      tool output: $CASE_LOG (last lines below)"
    tail -n 15 "$CASE_LOG" | sed 's/^/      | /'
  fi
}

# setup_step DESCRIPTION CMD...: a step that must work for the tool's cases to mean anything
setup_step() {
  local what=$1; shift
  if ! "$@"; then
    failed=$((failed + 1))
    failures+=("$what")
    echo "FAIL  $what"
    return 1
  fi
}

# use_fix TOOLDIR RELPATH: put the fixed migration in place of the generated one
use_fix() { cp "$CLIENTS/$(basename "$1")/fixes/$2" "$1/$2"; }

# ---------------------------------------------------------------------------------------
# Django

PLAIN=django.db.backends.postgresql
ZDM=django_zero_downtime_migrations.backends.postgres

django_suite() {
  local d=$WORK/django db=django_shop
  cp -r "$CLIENTS/django" "$d" && rm -rf "$d/fixes"
  setup_step "django: database" new_database $db || return
  export PGDATABASE=$db
  local py="$VENV/bin/python"

  begin_case "django: migrate 0001_initial creates shop_order"
  DB_ENGINE=$PLAIN run_tool "$d" "$py" manage.py migrate shop 0001
  expect_passed
  end_case
  setup_step "django: load 200k orders" psql_db $db -c "
    INSERT INTO shop_order (reference, status, quantity, placed_at)
    SELECT 'ORD-' || lpad(g::text, 8, '0'), (ARRAY['new','paid','shipped','cancelled'])[1 + g % 4],
           1 + g % 9, timestamptz '2026-01-01' + g * interval '1 minute'
    FROM generate_series(1, 200000) g" || return

  begin_case "django: AddIndex (Meta.indexes) stopped with plain Django"
  DB_ENGINE=$PLAIN run_tool "$d" "$py" manage.py migrate
  expect_stopped require-concurrent-index-creation
  expect_output "psycopg.errors.ObjectNotInPrerequisiteState" "Applying shop.0002_order_placed_at_idx..." \
    'HINT:  Build the index without blocking writes' \
    'CREATE INDEX CONCURRENTLY "shop_order_placed_at_idx" ON "shop_order" ("placed_at");'
  expect_sql $db "SELECT count(*) FROM django_migrations WHERE name LIKE '0002%'" 0
  expect_sql $db "SELECT to_regclass('shop_order_placed_at_idx') IS NULL" t
  end_case

  begin_case "django: AddIndex passes with django-pg-zero-downtime-migrations (CONCURRENTLY)"
  DB_ENGINE=$ZDM run_tool "$d" "$py" manage.py migrate shop 0002
  expect_passed
  expect_output "Applying shop.0002_order_placed_at_idx... OK"
  expect_sql $db "SELECT indisvalid FROM pg_index WHERE indexrelid = 'shop_order_placed_at_idx'::regclass" t
  end_case

  begin_case "django: AlterField db_index=True stopped with plain Django"
  DB_ENGINE=$PLAIN run_tool "$d" "$py" manage.py migrate
  expect_stopped require-concurrent-index-creation
  expect_output "Applying shop.0003_order_status_db_index..." \
    'CREATE INDEX CONCURRENTLY "shop_order_status_16691b37" ON "shop_order" ("status");'
  expect_sql $db "SELECT count(*) FROM django_migrations WHERE name LIKE '0003%'" 0
  end_case

  begin_case "django: db_index=True passes with django-pg-zero-downtime-migrations"
  DB_ENGINE=$ZDM run_tool "$d" "$py" manage.py migrate shop 0003
  expect_passed
  expect_sql $db "SELECT count(*) FROM pg_index WHERE indrelid = 'shop_order'::regclass AND indisvalid
                  AND indexrelid::regclass::text LIKE 'shop_order_status_16691b37%'" 2
  end_case

  # The nullable new column's inline REFERENCES is validated without a scan (every row is
  # NULL): the constraint passes; the index Django adds for the foreign key is stopped.
  begin_case "django: ForeignKey added to Order stopped with plain Django (its index)"
  DB_ENGINE=$PLAIN run_tool "$d" "$py" manage.py migrate
  expect_stopped require-concurrent-index-creation
  expect_output "Applying shop.0004_customer_order_customer..." \
    "CREATE INDEX would block writes to public.shop_order" \
    'CREATE INDEX CONCURRENTLY "shop_order_customer_id_f638df20" ON "shop_order" ("customer_id");'
  expect_sql $db "SELECT to_regclass('shop_customer') IS NULL" t
  end_case

  begin_case "django: ForeignKey passes with django-pg-zero-downtime-migrations (NOT VALID + VALIDATE)"
  DB_ENGINE=$ZDM run_tool "$d" "$py" manage.py migrate shop 0004
  expect_passed
  expect_sql $db "SELECT convalidated FROM pg_constraint
                  WHERE conname = 'shop_order_customer_id_f638df20_fk_shop_customer_id'" t
  end_case

  begin_case "django: AddField null=False with a constant default passes with plain Django"
  DB_ENGINE=$PLAIN run_tool "$d" "$py" manage.py migrate shop 0005
  expect_passed
  expect_output "Applying shop.0005_order_gift_wrap_currency... OK"
  expect_sql $db "SELECT count(*) FROM shop_order WHERE currency = 'EUR' AND NOT gift_wrap" 200000
  end_case

  begin_case "django: AlterField IntegerField -> BigIntegerField stopped with plain Django"
  DB_ENGINE=$PLAIN run_tool "$d" "$py" manage.py migrate
  expect_stopped changing-column-type
  expect_output "Applying shop.0006_alter_order_quantity..." \
    "changing the type of public.shop_order.quantity to bigint would rewrite the table" \
    "ALTER TABLE public.shop_order ADD COLUMN quantity_new bigint;" \
    "ALTER TABLE public.shop_order RENAME COLUMN quantity_new TO quantity;"
  expect_sql $db "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                  WHERE attrelid = 'shop_order'::regclass AND attname = 'quantity'" integer
  end_case

  # django-pg-zero-downtime-migrations sends the same ALTER COLUMN TYPE (it only adds
  # lock_timeout/statement_timeout and a warning): the guard stops it too.
  begin_case "django: AlterField to BigIntegerField stopped with django-pg-zero-downtime-migrations too"
  DB_ENGINE=$ZDM run_tool "$d" "$py" manage.py migrate
  expect_stopped changing-column-type
  expect_output "ALTER COLUMN TYPE is unsafe operation" \
    "ALTER TABLE public.shop_order ADD COLUMN quantity_new bigint;"
  end_case

  begin_case "django: AlterField rewritten as add/backfill/swap passes with plain Django"
  use_fix "$d" shop/migrations/0006_alter_order_quantity.py
  DB_ENGINE=$PLAIN run_tool "$d" "$py" manage.py migrate
  expect_passed
  expect_output "Applying shop.0006_alter_order_quantity... OK"
  expect_sql $db "SELECT format_type(atttypid, atttypmod) || ' ' || attnotnull FROM pg_attribute
                  WHERE attrelid = 'shop_order'::regclass AND attname = 'quantity'" "bigint true"
  expect_sql $db "SELECT count(*) FROM shop_order WHERE quantity = quantity_old" 200000
  end_case
}

# ---------------------------------------------------------------------------------------
# Alembic

alembic_suite() {
  local d=$WORK/alembic db=alembic_billing
  cp -r "$CLIENTS/alembic" "$d" && rm -rf "$d/fixes"
  setup_step "alembic: database" new_database $db || return
  export PGDATABASE=$db DATABASE_URL="postgresql+psycopg://postgres@/$db?host=/tmp&port=$PORT"
  local alembic="$VENV/bin/alembic"

  begin_case "alembic: upgrade to the first revision creates account and invoice"
  run_tool "$d" "$alembic" upgrade 446c9f304a57
  expect_passed
  end_case
  setup_step "alembic: load 20k accounts and 200k invoices" psql_db $db -c "
    INSERT INTO account (email) SELECT 'user' || g || '@example.com' FROM generate_series(1, 20000) g;
    INSERT INTO invoice (account_id, amount, issued_at)
    SELECT 1 + g % 20000, (g % 100000) / 100.0, timestamptz '2026-01-01' + g * interval '1 minute'
    FROM generate_series(1, 200000) g" || return

  begin_case "alembic: op.create_index stopped"
  run_tool "$d" "$alembic" upgrade head
  expect_stopped require-concurrent-index-creation
  expect_output "sqlalchemy.exc.OperationalError: (psycopg.errors.ObjectNotInPrerequisiteState)" \
    "CREATE INDEX CONCURRENTLY ix_invoice_issued_at ON invoice (issued_at);" \
    "[SQL: CREATE INDEX ix_invoice_issued_at ON invoice (issued_at)]"
  expect_sql $db "SELECT version_num FROM alembic_version" 446c9f304a57
  end_case

  begin_case "alembic: op.create_index(postgresql_concurrently=True) in autocommit_block() passes"
  use_fix "$d" migrations/versions/8b8ef15fd251_index_invoice_issued_at.py
  run_tool "$d" "$alembic" upgrade 8b8ef15fd251
  expect_passed
  expect_sql $db "SELECT version_num FROM alembic_version" 8b8ef15fd251
  expect_sql $db "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_invoice_issued_at'::regclass" t
  end_case

  begin_case "alembic: op.create_foreign_key stopped"
  run_tool "$d" "$alembic" upgrade head
  expect_stopped constraint-missing-not-valid
  expect_output "adding foreign key invoice_account_id_fkey would scan public.invoice while blocking writes" \
    "ALTER TABLE public.invoice ADD CONSTRAINT invoice_account_id_fkey FOREIGN KEY(account_id) REFERENCES account (id) NOT VALID;" \
    "ALTER TABLE public.invoice VALIDATE CONSTRAINT invoice_account_id_fkey;"
  expect_sql $db "SELECT count(*) FROM pg_constraint WHERE conname = 'invoice_account_id_fkey'" 0
  end_case

  begin_case "alembic: NOT VALID via op.execute, VALIDATE in autocommit_block() passes"
  use_fix "$d" migrations/versions/143a7c818c43_invoice_account_foreign_key.py
  run_tool "$d" "$alembic" upgrade head
  expect_passed
  expect_sql $db "SELECT version_num FROM alembic_version" 143a7c818c43
  expect_sql $db "SELECT convalidated FROM pg_constraint WHERE conname = 'invoice_account_id_fkey'" t
  end_case
  unset DATABASE_URL
}

# ---------------------------------------------------------------------------------------
# node-pg-migrate

node_pg_migrate_suite() {
  local d=$WORK/node-pg-migrate db=npm_events
  cp -r "$CLIENTS/node-pg-migrate" "$d" && rm -rf "$d/fixes"
  ln -s "$NODE_DIR/node_modules" "$d/node_modules"
  setup_step "node-pg-migrate: database" new_database $db || return
  export PGDATABASE=$db DATABASE_URL="postgres://postgres@%2Ftmp:$PORT/$db"
  local npm_migrate="$d/node_modules/.bin/node-pg-migrate"

  begin_case "node-pg-migrate: up 1 creates event"
  run_tool "$d" "$npm_migrate" up 1
  expect_passed
  end_case
  setup_step "node-pg-migrate: load 200k events" psql_db $db -c "
    INSERT INTO event (kind, payload, created_at)
    SELECT (ARRAY['signup','login','purchase'])[1 + g % 3], jsonb_build_object('n', g),
           timestamptz '2026-01-01' + g * interval '1 minute'
    FROM generate_series(1, 200000) g" || return

  begin_case "node-pg-migrate: pgm.createIndex stopped"
  run_tool "$d" "$npm_migrate" up
  expect_stopped require-concurrent-index-creation
  expect_output "code: '55000'" "> Rolling back attempted migration ..." \
    "'CREATE INDEX CONCURRENTLY \"event_created_at_index\" ON \"event\" (\"created_at\");'"
  expect_sql $db "SELECT count(*) FROM pgmigrations" 1
  end_case

  begin_case "node-pg-migrate: pgm.createIndex({ concurrently: true }) with pgm.noTransaction() passes"
  use_fix "$d" migrations/1795251083306_index-event-created-at.js
  run_tool "$d" "$npm_migrate" up 1
  expect_passed
  expect_output "Migrations complete!"
  expect_sql $db "SELECT indisvalid FROM pg_index WHERE indexrelid = 'event_created_at_index'::regclass" t
  end_case

  begin_case "node-pg-migrate: pgm.addColumn with a volatile default stopped"
  run_tool "$d" "$npm_migrate" up
  expect_stopped adding-field-with-default
  expect_output "adding column token would rewrite public.event" "code: '55000'" \
    "'ALTER TABLE public.event ADD COLUMN token uuid;"
  expect_sql $db "SELECT count(*) FROM pg_attribute WHERE attrelid = 'event'::regclass AND attname = 'token'" 0
  end_case

  begin_case "node-pg-migrate: add bare column, default, batched backfill, CHECK route to NOT NULL passes"
  use_fix "$d" migrations/1795251083655_add-event-token.js
  run_tool "$d" "$npm_migrate" up
  expect_passed
  expect_output "Migrations complete!"
  expect_sql $db "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'event'::regclass AND attname = 'token'" t
  expect_sql $db "SELECT count(DISTINCT token) FROM event" 200000
  end_case
  unset DATABASE_URL
}

# ---------------------------------------------------------------------------------------
# Knex

knex_suite() {
  local d=$WORK/knex db=knex_payments
  cp -r "$CLIENTS/knex" "$d" && rm -rf "$d/fixes"
  ln -s "$NODE_DIR/node_modules" "$d/node_modules"
  setup_step "knex: database" new_database $db || return
  export PGDATABASE=$db
  local knex="$d/node_modules/.bin/knex"

  begin_case "knex: migrate:up creates payment"
  run_tool "$d" "$knex" --env production migrate:up
  expect_passed
  end_case
  setup_step "knex: load 200k payments" psql_db $db -c "
    INSERT INTO payment (account_id, amount, status, created_at)
    SELECT 1 + g % 5000, (g % 10000) / 100.0, (ARRAY['pending','settled','refunded'])[1 + g % 3],
           timestamptz '2026-01-01' + g * interval '1 minute'
    FROM generate_series(1, 200000) g" || return

  begin_case "knex: table.index() stopped"
  run_tool "$d" "$knex" --env production migrate:latest
  expect_stopped require-concurrent-index-creation
  expect_output 'migration file "20261121085205_index_payment_status.js" failed' \
    'create index "payment_status_index" on "payment" ("status") - require-concurrent-index-creation: CREATE INDEX would block writes to public.payment'
  expect_sql $db "SELECT count(*) FROM knex_migrations" 1
  end_case

  begin_case "knex: raw CREATE INDEX CONCURRENTLY with config.transaction = false passes"
  use_fix "$d" migrations/20261121085205_index_payment_status.js
  run_tool "$d" "$knex" --env production migrate:up
  expect_passed
  expect_sql $db "SELECT indisvalid FROM pg_index WHERE indexrelid = 'payment_status_index'::regclass" t
  end_case

  begin_case "knex: NOT NULL column with a constant default passes"
  run_tool "$d" "$knex" --env production migrate:latest
  expect_passed
  expect_sql $db "SELECT count(*) FROM payment WHERE NOT refundable" 200000
  end_case
}

# ---------------------------------------------------------------------------------------

cleanup() { stop_cluster "$DIR"; }
trap cleanup EXIT

say "tools"
install_python_tools || { echo "FAIL  installing the Python tools"; exit 1; }
install_node_tools || { echo "FAIL  installing the Node.js tools"; exit 1; }
say "$("$VENV/bin/python" -c 'import django, alembic, sqlalchemy, psycopg; print(f"Django {django.__version__}, Alembic {alembic.__version__}, SQLAlchemy {sqlalchemy.__version__}, psycopg {psycopg.__version__}")')"
say "$(cd "$NODE_DIR" && node -p '["knex","node-pg-migrate","pg"].map(n => n + " " + require(n + "/package.json").version).join(", ")'), Node.js $(node --version)"

# `cargo pgrx test` installs a test build into the same PostgreSQL; its CREATE EXTENSION
# script also creates the #[pg_test] fixtures, a cluster-wide role among them, so only the
# first database would get the extension.
if grep -qs guard_fixture "$("$PG_CONFIG" --sharedir)"/extension/pg_migration_guard--*.sql; then
  say "WARNING: the installed pg_migration_guard is a pg_test build (cargo pgrx test installs one);"
  say "WARNING: install the release build first: cargo pgrx install --release --pg-config $PG_CONFIG"
fi

say "cluster in $DIR, port $PORT, shared_preload_libraries = 'pg_migration_guard'"
start_cluster "$DIR" "$PORT" pg_migration_guard || { echo "FAIL  starting the cluster"; exit 1; }
# every statement the tools send, for reading verdicts afterwards
psql_db postgres -c "ALTER SYSTEM SET log_statement = 'all'" -c "ALTER SYSTEM SET log_autovacuum_min_duration = 0" \
  -c "SELECT pg_reload_conf()" >/dev/null
mkdir -p "$WORK" "$LOGS"

export PGHOST=/tmp PGPORT=$PORT PGUSER=postgres PYTHONDONTWRITEBYTECODE=1 NO_COLOR=1 FORCE_COLOR=0
unset PGOPTIONS PGSERVICE DATABASE_URL DB_ENGINE NODE_ENV

tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=(django alembic node-pg-migrate knex)
for tool in "${tools[@]}"; do
  case $tool in
    django) django_suite ;;
    alembic) alembic_suite ;;
    node-pg-migrate) node_pg_migrate_suite ;;
    knex) knex_suite ;;
    *) echo "FAIL  unknown tool: $tool"; failed=$((failed + 1)); failures+=("unknown tool $tool") ;;
  esac
done

elapsed=$(( $(date +%s) - started ))
echo "clients: tool output in $LOGS, server log (log_statement = all) in $DIR/server.log; ${elapsed}s"
if [ "$failed" -gt 0 ]; then
  printf 'clients: failed: %s\n' "${failures[@]}"
fi
echo "clients: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

// `#[pg_test]` tests of the hook inside a real backend (`cargo pgrx test`).
//
// Each test runs in one transaction that is rolled back, so the tables they judge must
// exist before it: the fixture below is created with the extension (a transaction of its
// own), which makes `guard_fixture.orders` an existing, non-empty table like any other.
// Statements that must cross transactions are in tests/integration.

use pgrx::prelude::*;

extension_sql!(
    r#"
CREATE SCHEMA guard_fixture;
CREATE TABLE guard_fixture.customers (id bigint PRIMARY KEY, email varchar(50) NOT NULL);
INSERT INTO guard_fixture.customers SELECT g, 'c' || g || '@example.com' FROM generate_series(1, 2000) g;
CREATE TABLE guard_fixture.orders (
    id          bigint PRIMARY KEY,
    customer_id bigint,
    quantity    integer,
    status      text,
    note        varchar(50),
    amount      numeric(10, 2),
    placed_at   timestamp
);
INSERT INTO guard_fixture.orders
SELECT g, 1 + g % 2000, g % 7, 'new', 'n' || g, g / 100.0, '2026-01-01'::timestamp + g * interval '1 minute'
FROM generate_series(1, 50000) g;
CREATE INDEX orders_status_idx ON guard_fixture.orders (status);
CREATE UNIQUE INDEX orders_note_key_idx ON guard_fixture.orders (note);
CREATE TABLE guard_fixture.order_lines (order_id bigint REFERENCES guard_fixture.orders (id), qty int);
CREATE MATERIALIZED VIEW guard_fixture.sales_by_status AS
    SELECT o.status, count(*) AS n, o.id % 1000 AS bucket FROM guard_fixture.orders o, generate_series(1, 20) GROUP BY 1, 3;
CREATE UNIQUE INDEX ON guard_fixture.sales_by_status (status, bucket);
-- A small heap whose data lives in its TOAST table (400 uncompressed 3.2 kB values).
CREATE TABLE guard_fixture.documents (id int PRIMARY KEY, body text);
ALTER TABLE guard_fixture.documents ALTER COLUMN body SET STORAGE EXTERNAL;
INSERT INTO guard_fixture.documents SELECT g, repeat(md5(g::text), 100) FROM generate_series(1, 400) g;
CREATE DOMAIN guard_fixture.positive_int AS integer CHECK (VALUE > 0);
CREATE DOMAIN guard_fixture.plain_int AS integer;
-- A partitioned table and a table to attach to it (99 rows).
CREATE TABLE guard_fixture.parts (id bigint NOT NULL, v text) PARTITION BY RANGE (id);
CREATE TABLE guard_fixture.parts_1 (id bigint NOT NULL, v text);
INSERT INTO guard_fixture.parts_1 SELECT g, 'v' FROM generate_series(1, 99) g;
CREATE ROLE guard_app_user NOLOGIN;
GRANT USAGE, CREATE ON SCHEMA guard_fixture TO guard_app_user;
"#,
    name = "test_fixture",
    requires = ["audit_log"]
);

/// What running one statement did, as a client would see it.
#[derive(Debug)]
struct Failure {
    sqlstate: PgSqlErrorCode,
    message: String,
    detail: String,
    hint: String,
}

/// Runs `sql` in a subtransaction, so a rejected statement can be inspected and the test
/// can carry on.
fn run(sql: &str) -> Result<(), Failure> {
    let result = unsafe { crate::subxact::run(crate::subxact::OnSuccess::Keep, || Spi::run(sql).expect("SPI")) };
    result.map_err(|e| {
        let r = crate::subxact::report(&e);
        Failure {
            sqlstate: r.sql_error_code(),
            message: r.message().to_string(),
            detail: r.detail().unwrap_or_default().to_string(),
            hint: r.hint().unwrap_or_default().to_string(),
        }
    })
}

fn rejected(sql: &str, rule: &str) -> Failure {
    let f = run(sql).expect_err(&format!("expected rejection of: {sql}"));
    assert_eq!(f.sqlstate, PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, "{f:?}");
    assert!(f.message.starts_with(&format!("{rule}: ")), "{f:?}");
    f
}

fn allowed(sql: &str) {
    if let Err(f) = run(sql) {
        panic!("expected {sql} to run, got {f:?}");
    }
}

#[pg_test]
fn plain_create_index_is_rejected_with_concurrent_hint() {
    let f = rejected(
        "CREATE INDEX orders_customer_id_idx ON guard_fixture.orders (customer_id)",
        "require-concurrent-index-creation",
    );
    assert!(f.message.contains("guard_fixture.orders"), "{f:?}");
    assert!(f.detail.contains("SHARE lock on guard_fixture.orders ("), "{f:?}");
    assert!(f.detail.contains("blocks INSERT, UPDATE and DELETE"), "{f:?}");
    assert!(
        f.hint.contains("CREATE INDEX CONCURRENTLY orders_customer_id_idx ON guard_fixture.orders (customer_id);"),
        "{f:?}"
    );
    // The statement did not run.
    let exists = Spi::get_one::<bool>("SELECT to_regclass('guard_fixture.orders_customer_id_idx') IS NOT NULL");
    assert_eq!(exists, Ok(Some(false)));
}

#[pg_test]
fn create_index_from_do_block_function_and_procedure_is_rejected() {
    rejected(
        "DO $$ BEGIN EXECUTE 'CREATE INDEX ON guard_fixture.orders (quantity)'; END $$",
        "require-concurrent-index-creation",
    );
    allowed(
        "CREATE FUNCTION guard_fixture.migrate() RETURNS void LANGUAGE plpgsql AS \
         $$ BEGIN CREATE INDEX ON guard_fixture.orders (quantity); END $$",
    );
    rejected("SELECT guard_fixture.migrate()", "require-concurrent-index-creation");
    allowed(
        "CREATE PROCEDURE guard_fixture.migrate_proc() LANGUAGE plpgsql AS \
         $$ BEGIN CREATE INDEX ON guard_fixture.orders (quantity); END $$",
    );
    rejected("CALL guard_fixture.migrate_proc()", "require-concurrent-index-creation");
}

#[pg_test]
fn drop_index_is_rejected_unless_concurrent_or_new() {
    let f = rejected("DROP INDEX guard_fixture.orders_status_idx", "require-concurrent-index-deletion");
    assert!(f.detail.contains("ACCESS EXCLUSIVE lock on guard_fixture.orders"), "{f:?}");
    assert!(f.hint.contains("DROP INDEX CONCURRENTLY guard_fixture.orders_status_idx;"), "{f:?}");
    // An index created in this transaction can be dropped: nobody else can see it.
    allowed("SET LOCAL pg_migration_guard.mode = warn");
    allowed("CREATE INDEX orders_note_idx ON guard_fixture.orders (note)");
    allowed("SET LOCAL pg_migration_guard.mode = enforce");
    allowed("DROP INDEX guard_fixture.orders_note_idx");
}

#[pg_test]
fn validating_foreign_key_is_rejected_and_not_valid_pair_runs() {
    let f = rejected(
        "ALTER TABLE guard_fixture.orders ADD CONSTRAINT orders_customer_fk \
         FOREIGN KEY (customer_id) REFERENCES guard_fixture.customers (id)",
        "constraint-missing-not-valid",
    );
    assert!(f.detail.contains("SHARE ROW EXCLUSIVE lock on guard_fixture.orders ("), "{f:?}");
    assert!(f.detail.contains("guard_fixture.customers ("), "{f:?}");
    assert!(
        f.hint.contains(
            "ALTER TABLE guard_fixture.orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) \
             REFERENCES guard_fixture.customers (id) NOT VALID;"
        ),
        "{f:?}"
    );
    assert!(f.hint.contains("ALTER TABLE guard_fixture.orders VALIDATE CONSTRAINT orders_customer_fk;"), "{f:?}");
    allowed(
        "ALTER TABLE guard_fixture.orders ADD CONSTRAINT orders_customer_fk \
         FOREIGN KEY (customer_id) REFERENCES guard_fixture.customers (id) NOT VALID",
    );
    // The test's single transaction still holds the ADD's SHARE ROW EXCLUSIVE lock: in
    // production VALIDATE runs in a transaction of its own, here it is (rightly) flagged.
    rejected("ALTER TABLE guard_fixture.orders VALIDATE CONSTRAINT orders_customer_fk", "constraint-missing-not-valid");
}

#[pg_test]
fn unnamed_foreign_key_hint_names_the_constraint() {
    let f = rejected(
        "ALTER TABLE guard_fixture.orders ADD FOREIGN KEY (customer_id) REFERENCES guard_fixture.customers",
        "constraint-missing-not-valid",
    );
    assert!(
        f.hint.contains(
            "ADD CONSTRAINT orders_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES guard_fixture.customers NOT VALID;"
        ),
        "{f:?}"
    );
}

#[pg_test]
fn validating_check_is_rejected_and_not_valid_runs() {
    let f = rejected(
        "ALTER TABLE guard_fixture.orders ADD CONSTRAINT quantity_positive CHECK (quantity >= 0)",
        "constraint-missing-not-valid",
    );
    assert!(f.detail.contains("ACCESS EXCLUSIVE lock"), "{f:?}");
    assert!(f.hint.contains("ADD CONSTRAINT quantity_positive CHECK (quantity >= 0) NOT VALID;"), "{f:?}");
    allowed("ALTER TABLE guard_fixture.orders ADD CONSTRAINT quantity_positive CHECK (quantity >= 0) NOT VALID");
}

#[pg_test]
fn set_not_null_scans_unless_a_validated_check_proves_it() {
    let f = rejected("ALTER TABLE guard_fixture.orders ALTER COLUMN status SET NOT NULL", "adding-not-nullable-field");
    #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16", feature = "pg17"))]
    assert!(f.hint.contains("CHECK (status IS NOT NULL) NOT VALID;"), "{f:?}");
    // PostgreSQL 18's HINT takes the not-null constraint route (see the pg18_ tests); the
    // CHECK route below still works there.
    #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16", feature = "pg17")))]
    assert!(f.hint.contains("NOT NULL status NOT VALID;"), "{f:?}");
    // The safe recipe from the hint runs, step by step, and SET NOT NULL is then instant.
    allowed("ALTER TABLE guard_fixture.orders ADD CONSTRAINT orders_status_not_null CHECK (status IS NOT NULL) NOT VALID");
    // A NOT VALID check proves nothing yet.
    rejected("ALTER TABLE guard_fixture.orders ALTER COLUMN status SET NOT NULL", "adding-not-nullable-field");
    // In production VALIDATE runs in a transaction of its own; the test's single
    // transaction still holds the ADD's lock, which the guard (rightly) flags, so the
    // rule is lowered for this one step.
    allowed("SET LOCAL pg_migration_guard.rule_levels = 'constraint-missing-not-valid:off'");
    allowed("ALTER TABLE guard_fixture.orders VALIDATE CONSTRAINT orders_status_not_null");
    allowed("RESET pg_migration_guard.rule_levels");
    allowed("ALTER TABLE guard_fixture.orders ALTER COLUMN status SET NOT NULL");
    allowed("ALTER TABLE guard_fixture.orders DROP CONSTRAINT orders_status_not_null");
    // Already NOT NULL: nothing to do.
    allowed("ALTER TABLE guard_fixture.customers ALTER COLUMN email SET NOT NULL");
}

#[pg_test]
fn column_type_changes_are_judged_by_postgres_rewrite_test() {
    for (sql, rewrites) in [
        ("ALTER TABLE guard_fixture.orders ALTER COLUMN quantity TYPE bigint", true),
        ("ALTER TABLE guard_fixture.orders ALTER COLUMN note TYPE varchar(100)", false),
        ("ALTER TABLE guard_fixture.orders ALTER COLUMN note TYPE text", false),
        ("ALTER TABLE guard_fixture.orders ALTER COLUMN note TYPE varchar(10)", true),
        ("ALTER TABLE guard_fixture.orders ALTER COLUMN amount TYPE numeric(12, 2)", false),
        ("ALTER TABLE guard_fixture.orders ALTER COLUMN amount TYPE numeric(12, 4)", true),
        ("ALTER TABLE guard_fixture.orders ALTER COLUMN amount TYPE numeric(8, 2)", true),
        ("ALTER TABLE guard_fixture.orders ALTER COLUMN status TYPE varchar(20)", true),
        ("ALTER TABLE guard_fixture.orders ALTER COLUMN quantity TYPE integer USING quantity", false),
        ("ALTER TABLE guard_fixture.orders ALTER COLUMN quantity TYPE integer USING quantity + 1", true),
    ] {
        if rewrites {
            let f = rejected(sql, "changing-column-type");
            assert!(f.detail.contains("rewrites every row"), "{f:?}");
        } else {
            allowed(sql);
        }
    }
}

#[pg_test]
fn timestamp_to_timestamptz_rewrites_unless_session_timezone_is_utc() {
    allowed("SET LOCAL TimeZone = 'UTC'");
    allowed("ALTER TABLE guard_fixture.orders ALTER COLUMN placed_at TYPE timestamptz");
    allowed("SET LOCAL TimeZone = 'America/New_York'");
    rejected("ALTER TABLE guard_fixture.orders ALTER COLUMN placed_at TYPE timestamp", "changing-column-type");
}

#[pg_test]
fn table_created_in_this_transaction_is_never_flagged() {
    allowed("CREATE TABLE guard_fixture.fresh AS SELECT * FROM guard_fixture.orders");
    allowed("CREATE INDEX ON guard_fixture.fresh (customer_id)");
    allowed("ALTER TABLE guard_fixture.fresh ADD FOREIGN KEY (customer_id) REFERENCES guard_fixture.customers (id)");
    allowed("ALTER TABLE guard_fixture.fresh ADD CHECK (quantity >= 0)");
    allowed("ALTER TABLE guard_fixture.fresh ALTER COLUMN status SET NOT NULL");
    allowed("ALTER TABLE guard_fixture.fresh ALTER COLUMN quantity TYPE bigint");
    allowed("DROP INDEX guard_fixture.fresh_customer_id_idx");
}

#[pg_test]
fn several_subcommands_are_judged_together() {
    let f = rejected(
        "ALTER TABLE guard_fixture.orders ALTER COLUMN quantity TYPE bigint, ADD CHECK (amount > 0)",
        "constraint-missing-not-valid",
    );
    assert!(f.message.ends_with("(and 1 more finding)"), "{f:?}");
    assert!(f.detail.contains("changing-column-type: "), "{f:?}");
    // The strongest lock of the two subcommands is reported.
    assert!(f.detail.contains("ACCESS EXCLUSIVE"), "{f:?}");
}

#[pg_test]
fn warn_mode_runs_the_statement_and_records_warned() {
    allowed("SET LOCAL pg_migration_guard.mode = warn");
    allowed("CREATE INDEX orders_quantity_idx ON guard_fixture.orders (quantity)");
    let exists = Spi::get_one::<bool>("SELECT to_regclass('guard_fixture.orders_quantity_idx') IS NOT NULL");
    assert_eq!(exists, Ok(Some(true)));
}

// Audit rows are written by the audit writer in transactions of their own, which a
// #[pg_test] (one rolled-back transaction) cannot see: the audit is tested over real
// connections in tests/integration/tests/audit.rs.

#[pg_test]
fn off_mode_runs_what_enforce_rejects() {
    allowed("SET LOCAL pg_migration_guard.mode = off");
    allowed("CREATE INDEX orders_quantity_idx ON guard_fixture.orders (quantity)");
}

#[pg_test]
fn non_superuser_cannot_change_mode_or_read_the_audit() {
    allowed("SET LOCAL ROLE guard_app_user");
    let f = run("SET pg_migration_guard.mode = off").expect_err("non-superuser SET must fail");
    assert_eq!(f.sqlstate, PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE, "{f:?}");
    assert!(f.message.contains("pg_migration_guard.mode"), "{f:?}");
    // Its DDL is judged although it has no privilege on the audit table.
    allowed("CREATE TABLE guard_fixture.app_table (id int)");
    for sql in ["SELECT count(*) FROM pg_migration_guard.audit_log", "SELECT count(*) FROM pg_migration_guard.audit"] {
        let f = run(sql).expect_err("no read access");
        assert_eq!(f.sqlstate, PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE, "{sql}");
    }
    let f = run("SELECT * FROM pg_migration_guard.audit_queue_status()").expect_err("superusers only");
    assert_eq!(f.sqlstate, PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE);
    allowed("RESET ROLE");
}

#[pg_test]
fn mode_guc_is_visible_in_pg_settings() {
    let (setting, context) = Spi::get_two::<String, String>(
        "SELECT setting, context FROM pg_settings WHERE name = 'pg_migration_guard.mode'",
    )
    .unwrap();
    assert_eq!(setting.as_deref(), Some("enforce"));
    assert_eq!(context.as_deref(), Some("superuser"));
    let values = Spi::get_one::<Vec<String>>("SELECT enumvals FROM pg_settings WHERE name = 'pg_migration_guard.mode'");
    assert_eq!(values, Ok(Some(vec!["off".into(), "warn".into(), "enforce".into()])));
    let desc = Spi::get_one::<String>("SELECT short_desc FROM pg_settings WHERE name = 'pg_migration_guard.mode'");
    assert!(desc.unwrap().unwrap().contains("off, warn or enforce"));
}

#[pg_test]
fn reindex_without_concurrently_is_rejected() {
    let f = rejected("REINDEX TABLE guard_fixture.orders", "require-concurrent-reindex");
    assert!(f.hint.contains("REINDEX TABLE CONCURRENTLY guard_fixture.orders;"), "{f:?}");
    rejected("REINDEX INDEX guard_fixture.orders_status_idx", "require-concurrent-reindex");
}

#[pg_test]
fn unique_and_primary_key_constraints_need_using_index() {
    let f = rejected(
        "ALTER TABLE guard_fixture.orders ADD CONSTRAINT orders_note_key UNIQUE (note)",
        "disallowed-unique-constraint",
    );
    assert!(f.hint.contains("CREATE UNIQUE INDEX CONCURRENTLY orders_note_key ON guard_fixture.orders (note);"), "{f:?}");
    assert!(f.hint.contains("ADD CONSTRAINT orders_note_key UNIQUE USING INDEX orders_note_key;"), "{f:?}");
    // The safe form from the hint: attach an existing unique index.
    allowed("ALTER TABLE guard_fixture.orders ADD CONSTRAINT orders_note_key UNIQUE USING INDEX orders_note_key_idx");
    // order_lines is empty: judge it anyway.
    allowed("SET LOCAL pg_migration_guard.small_table_threshold = 0");
    let f = rejected("ALTER TABLE guard_fixture.order_lines ADD PRIMARY KEY (order_id)", "disallowed-unique-constraint");
    assert!(f.detail.contains("NOT NULL"), "{f:?}");
}

#[pg_test]
fn exclusion_constraint_is_rejected() {
    rejected(
        "ALTER TABLE guard_fixture.orders ADD CONSTRAINT one_per_id EXCLUDE USING btree (id WITH =)",
        "ban-exclusion-constraint",
    );
}

#[pg_test]
fn add_column_rewrites_are_decided_by_volatility_from_the_catalog() {
    for (def, rewrites) in [
        ("uuid DEFAULT gen_random_uuid()", true),
        ("timestamptz DEFAULT clock_timestamp()", true),
        ("float8 DEFAULT random()", true),
        ("bigserial", true),
        ("bigint GENERATED ALWAYS AS IDENTITY", true),
        ("numeric GENERATED ALWAYS AS (amount * 2) STORED", true),
        ("guard_fixture.positive_int", true),
        ("guard_fixture.plain_int DEFAULT 1", false),
        ("timestamptz DEFAULT now()", false),
        ("timestamptz DEFAULT CURRENT_TIMESTAMP", false),
        ("integer NOT NULL DEFAULT 0", false),
        ("integer[] DEFAULT ARRAY[1, 2, 3]", false),
        ("text DEFAULT lower('ABC') || 'x'", false),
        ("jsonb DEFAULT '{}'", false),
        ("text", false),
    ] {
        let sql = format!("ALTER TABLE guard_fixture.orders ADD COLUMN c_new {def}");
        if rewrites {
            let f = rejected(&sql, "adding-field-with-default");
            assert!(f.detail.contains("rewrites every row"), "{def}: {f:?}");
        } else {
            allowed(&sql);
            allowed("ALTER TABLE guard_fixture.orders DROP COLUMN c_new");
        }
    }
}

#[pg_test]
fn required_column_without_default_is_rejected_on_a_table_with_rows() {
    let f = rejected("ALTER TABLE guard_fixture.orders ADD COLUMN region text NOT NULL", "adding-required-field");
    assert!(f.hint.contains("NOT NULL DEFAULT <constant>"), "{f:?}");
    allowed("ALTER TABLE guard_fixture.orders ADD COLUMN region text NOT NULL DEFAULT 'eu'");
    allowed("CREATE TABLE guard_fixture.empty_one (a int)");
    allowed("ALTER TABLE guard_fixture.empty_one ADD COLUMN b int NOT NULL");
}

#[pg_test]
fn table_rewrites_are_rejected() {
    rejected("VACUUM FULL guard_fixture.orders", "table-rewrite");
    rejected("CLUSTER guard_fixture.orders USING orders_pkey", "table-rewrite");
    let f = rejected("ALTER TABLE guard_fixture.orders SET UNLOGGED", "table-rewrite");
    assert!(f.hint.contains("pg_repack"), "{f:?}");
    // Already logged / already in that tablespace: PostgreSQL does nothing.
    allowed("ALTER TABLE guard_fixture.orders SET LOGGED");
    allowed("ALTER TABLE guard_fixture.orders SET TABLESPACE pg_default");
    // Plain VACUUM and VACUUM (FULL false) are not judged at all: PostgreSQL's own error.
    let f = run("VACUUM (FULL false) guard_fixture.orders").expect_err("VACUUM cannot run in the test transaction");
    assert_eq!(f.sqlstate, PgSqlErrorCode::ERRCODE_ACTIVE_SQL_TRANSACTION, "{f:?}");
}

#[pg_test]
fn refresh_of_populated_view_needs_concurrently() {
    allowed("SET LOCAL pg_migration_guard.small_table_threshold = 0");
    let f = rejected("REFRESH MATERIALIZED VIEW guard_fixture.sales_by_status", "require-concurrent-refresh");
    assert!(f.hint.contains("REFRESH MATERIALIZED VIEW CONCURRENTLY guard_fixture.sales_by_status;"), "{f:?}");
    allowed("REFRESH MATERIALIZED VIEW CONCURRENTLY guard_fixture.sales_by_status");
}

#[pg_test]
fn breaking_changes_warn_and_run_unless_raised_to_error() {
    // Each is judged `warned` (judge_timing runs the hook's judging path) and then runs.
    let mut warned = Vec::new();
    for sql in [
        "ALTER TABLE guard_fixture.orders RENAME COLUMN note TO remark",
        "ALTER TABLE guard_fixture.orders DROP COLUMN remark",
        "ALTER TABLE guard_fixture.order_lines RENAME TO lines",
        "TRUNCATE guard_fixture.customers CASCADE",
        // (fixture tables belong to the extension; release this one so it can be dropped)
        "ALTER EXTENSION pg_migration_guard DROP TABLE guard_fixture.lines",
        "DROP TABLE guard_fixture.lines",
    ] {
        let (decision, rules) = Spi::get_two_with_args::<String, Vec<String>>(
            "SELECT decision, rules FROM pg_migration_guard.judge_timing($1, 1)",
            &[sql.into()],
        )
        .unwrap();
        if decision.as_deref() == Some("warned") {
            warned.extend(rules.unwrap());
        }
        allowed(sql);
    }
    warned.sort();
    assert_eq!(warned, vec!["ban-drop-column", "ban-drop-table", "ban-truncate-cascade", "renaming-column", "renaming-table"]);
    allowed("SET LOCAL pg_migration_guard.rule_levels = 'renaming-column:error, ban-drop-column:off'");
    rejected("ALTER TABLE guard_fixture.orders RENAME COLUMN status TO state", "renaming-column");
}

#[pg_test]
fn rule_levels_are_validated_when_set() {
    for (value, detail) in [
        ("no-such-rule:error", "unknown rule \"no-such-rule\""),
        ("renaming-column:fatal", "unknown level \"fatal\""),
        ("renaming-column", "rule-id:level"),
    ] {
        let f = run(&format!("SET pg_migration_guard.rule_levels = '{value}'")).expect_err(value);
        assert_eq!(f.sqlstate, PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "{f:?}");
        assert!(f.detail.contains(detail), "{f:?}");
    }
    allowed("SET LOCAL pg_migration_guard.rule_levels = 'require-concurrent-index-creation:off'");
    allowed("CREATE INDEX ON guard_fixture.orders (quantity)");
    allowed("SET LOCAL pg_migration_guard.rule_levels = 'require-concurrent-index-creation:warning'");
    allowed("CREATE INDEX ON guard_fixture.orders (quantity)");
}

#[pg_test]
fn small_table_threshold_exempts_rewrites_of_small_tables_only() {
    // customers is a few hundred kB: under the default 1MB threshold.
    allowed("CREATE INDEX ON guard_fixture.customers (email)");
    allowed("SET LOCAL pg_migration_guard.small_table_threshold = 0");
    rejected("CREATE INDEX ON guard_fixture.customers (email)", "require-concurrent-index-creation");
    allowed("SET LOCAL pg_migration_guard.small_table_threshold = '1GB'");
    allowed("CREATE INDEX ON guard_fixture.orders (quantity)");
    // DROP INDEX is about the lock queue, not the size: still judged.
    rejected("DROP INDEX guard_fixture.orders_status_idx", "require-concurrent-index-deletion");
}

// A table's size includes its TOAST table, measured from its files like pg_relation_size.
#[pg_test]
fn toast_table_counts_in_the_table_size() {
    let (heap, toast) = Spi::get_two::<i64, i64>(
        "SELECT pg_relation_size(oid), pg_relation_size(reltoastrelid) FROM pg_class WHERE oid = 'guard_fixture.documents'::regclass",
    )
    .unwrap();
    let (heap, toast) = (heap.unwrap(), toast.unwrap());
    assert!(heap < 1024 * 1024 && heap + toast > 1024 * 1024, "fixture: heap {heap}, TOAST {toast}");
    let toast_oid = Spi::get_one::<pg_sys::Oid>("SELECT reltoastrelid FROM pg_class WHERE oid = 'guard_fixture.documents'::regclass")
        .unwrap()
        .unwrap();
    assert_eq!(unsafe { crate::judging::facts::main_fork_bytes_by_path(toast_oid) }, Some(toast as u64));
    // A view has no files.
    let view = Spi::get_one::<pg_sys::Oid>("SELECT 'pg_catalog.pg_tables'::regclass::oid").unwrap().unwrap();
    assert_eq!(unsafe { crate::judging::facts::main_fork_bytes_by_path(view) }, None);
    let f = rejected("CREATE INDEX ON guard_fixture.documents (id)", "require-concurrent-index-creation");
    let size = Spi::get_one::<String>(&format!("SELECT pg_size_pretty({}::bigint)", heap + toast)).unwrap().unwrap();
    assert!(f.detail.contains(&size), "{size}: {f:?}");
}

#[pg_test]
fn temporary_tables_are_never_flagged() {
    allowed("SET LOCAL pg_migration_guard.small_table_threshold = 0");
    allowed("CREATE TEMP TABLE tmp_orders AS SELECT * FROM guard_fixture.orders");
    allowed("CREATE INDEX ON tmp_orders (quantity)");
    allowed("ALTER TABLE tmp_orders ALTER COLUMN quantity TYPE bigint");
}

#[pg_test]
fn judge_timing_reports_the_verdict_without_running_the_statement() {
    let (decision, rules) = Spi::get_two::<String, Vec<String>>(
        "SELECT decision, rules FROM pg_migration_guard.judge_timing('CREATE INDEX t_idx ON guard_fixture.orders (quantity)', 20)",
    )
    .unwrap();
    assert_eq!(decision.as_deref(), Some("rejected"));
    assert_eq!(rules, Some(vec!["require-concurrent-index-creation".to_string()]));
    let median = Spi::get_one::<f64>(
        "SELECT median_us FROM pg_migration_guard.judge_timing('ALTER TABLE guard_fixture.orders ADD COLUMN x int', 50)",
    )
    .unwrap()
    .unwrap();
    assert!(median > 0.0);
    assert_eq!(Spi::get_one::<bool>("SELECT to_regclass('guard_fixture.t_idx') IS NULL"), Ok(Some(true)));
    let f = run("SELECT * FROM pg_migration_guard.judge_timing('SELECT 1', 0)").expect_err("iterations 0");
    assert_eq!(f.sqlstate, PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "{f:?}");
    let f = run("SELECT * FROM pg_migration_guard.judge_timing('SELECT 1', 5)").expect_err("not DDL");
    assert_eq!(f.sqlstate, PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "{f:?}");
    // Not for everybody.
    allowed("SET LOCAL ROLE guard_app_user");
    let f = run("SELECT * FROM pg_migration_guard.judge_timing('DROP TABLE x', 1)").expect_err("no EXECUTE");
    assert_eq!(f.sqlstate, PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE, "{f:?}");
}

#[pg_test]
fn library_reports_it_is_preloaded() {
    assert_eq!(Spi::get_one::<bool>("SELECT pg_migration_guard.is_preloaded()"), Ok(Some(true)));
}

/// The strong locks (SHARE and above) the statement holds on relations of the fixture
/// schema once it ran, as `relation mode` lines (`mode` as lock_targets() names it), run in
/// a subtransaction that is rolled back so that nothing accumulates.
fn strong_locks_taken(sql: &str) -> Vec<String> {
    let result = unsafe {
        crate::subxact::run(crate::subxact::OnSuccess::RollBack, || {
            Spi::run(sql).expect("statement");
            Spi::connect(|c| {
                c.select(
                    "SELECT name FROM (SELECT DISTINCT ON (c.oid) c.oid::regclass::text || ' ' || CASE l.mode \
                        WHEN 'ShareLock' THEN 'SHARE' WHEN 'ShareRowExclusiveLock' THEN 'SHARE ROW EXCLUSIVE' \
                        WHEN 'ExclusiveLock' THEN 'EXCLUSIVE' ELSE 'ACCESS EXCLUSIVE' END AS name \
                     FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
                     WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted \
                       AND c.relnamespace = 'guard_fixture'::regnamespace AND c.relkind IN ('r', 'p', 'm') \
                       AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock') \
                       AND c.relname <> 'lt_new' \
                     ORDER BY c.oid, array_position(ARRAY['AccessExclusiveLock', 'ExclusiveLock', 'ShareRowExclusiveLock', 'ShareLock'], l.mode)) s \
                     ORDER BY 1",
                    None,
                    &[],
                )
                .unwrap()
                .map(|r| r.get::<String>(1).unwrap().unwrap())
                .collect()
            })
        })
    };
    result.unwrap_or_else(|e| panic!("{sql}: {}", crate::subxact::report(&e).message()))
}

fn predicted_locks(sql: &str) -> Vec<String> {
    Spi::connect(|c| {
        c.select(
            "SELECT relation || ' ' || mode FROM pg_migration_guard.lock_targets($1) t \
             JOIN pg_class c ON c.oid = t.relid WHERE blocks_reads_or_writes AND c.relkind IN ('r', 'p', 'm') ORDER BY 1",
            None,
            &[sql.into()],
        )
        .unwrap()
        .map(|r| r.get::<String>(1).unwrap().unwrap())
        .collect()
    })
}

// lock_targets() predicts exactly the strong table locks PostgreSQL takes (pg_locks after
// the statement ran), including the second table of a foreign key, the referenced table
// of a dropped foreign key, and what a rename or policy takes. (The fixture's tables belong
// to the extension and cannot be dropped; DROP TABLE is covered by tests/integration.)
#[pg_test]
fn lock_targets_match_the_locks_postgres_takes() {
    Spi::run("SET LOCAL pg_migration_guard.mode = warn").unwrap();
    Spi::run("SET LOCAL pg_migration_guard.lock_timeout_policy = off").unwrap();
    Spi::run("SET LOCAL client_min_messages = error").unwrap();
    let cases = [
        "ALTER TABLE guard_fixture.orders ADD COLUMN lt_x text",
        "ALTER TABLE guard_fixture.order_lines ADD CONSTRAINT lt_fk FOREIGN KEY (order_id) REFERENCES guard_fixture.orders (id) NOT VALID",
        "ALTER TABLE guard_fixture.order_lines DROP CONSTRAINT order_lines_order_id_fkey",
        "ALTER TABLE guard_fixture.order_lines ADD COLUMN lt_c bigint REFERENCES guard_fixture.customers (id)",
        "CREATE INDEX lt_idx ON guard_fixture.orders (quantity)",
        "CREATE TABLE guard_fixture.lt_new (o bigint REFERENCES guard_fixture.orders (id))",
        "REINDEX TABLE guard_fixture.customers",
        "REFRESH MATERIALIZED VIEW guard_fixture.sales_by_status",
        "REFRESH MATERIALIZED VIEW CONCURRENTLY guard_fixture.sales_by_status",
        "ALTER TABLE guard_fixture.orders RENAME COLUMN note TO lt_note",
        "CREATE POLICY lt_p ON guard_fixture.orders USING (true)",
        "ALTER TABLE guard_fixture.orders VALIDATE CONSTRAINT orders_pkey",
        "CREATE INDEX CONCURRENTLY lt_cidx ON guard_fixture.orders (quantity)",
    ];
    for sql in cases {
        let predicted = predicted_locks(sql);
        if sql.contains("CONCURRENTLY lt_cidx") || sql.contains("VALIDATE") {
            // Not runnable here (CONCURRENTLY needs its own transactions; orders_pkey is not a
            // foreign key or check), but nothing that blocks reads or writes is predicted.
            assert!(predicted.is_empty(), "{sql}: {predicted:?}");
            continue;
        }
        let taken = strong_locks_taken(sql);
        // One line per relation, with the strongest mode held.
        assert_eq!(predicted, taken, "{sql}");
    }
}

// NOT VALID then VALIDATE in one transaction: the ADD's SHARE ROW EXCLUSIVE lock is still
// held during the validating scan, so the "safe" pair is as blocking as the plain ADD.
#[pg_test]
fn validate_in_the_same_transaction_as_not_valid_is_rejected() {
    allowed(
        "ALTER TABLE guard_fixture.orders ADD CONSTRAINT v_customer_fk FOREIGN KEY (customer_id) \
         REFERENCES guard_fixture.customers (id) NOT VALID",
    );
    let f = rejected("ALTER TABLE guard_fixture.orders VALIDATE CONSTRAINT v_customer_fk", "constraint-missing-not-valid");
    assert!(f.message.contains("while this transaction holds a SHARE ROW EXCLUSIVE lock on it"), "{f:?}");
    assert!(f.hint.ends_with("ALTER TABLE guard_fixture.orders VALIDATE CONSTRAINT v_customer_fk;"), "{f:?}");
}

// A new column with an inline, deferrable REFERENCES and a default: every row is checked.
// The DETAIL names each table's own lock; the HINT adds the column (with its default) before
// NOT VALID. Without a default (Django's AddField of a nullable ForeignKey) every row is NULL
// and PostgreSQL marks the constraint valid without a scan: it passes.
#[pg_test]
fn inline_foreign_key_on_a_new_column_hint_adds_the_column_first() {
    allowed(
        "ALTER TABLE guard_fixture.orders ADD COLUMN buyer_id bigint NULL CONSTRAINT orders_buyer_fk \
         REFERENCES guard_fixture.customers (id) DEFERRABLE INITIALLY DEFERRED",
    );
    let validated = Spi::get_one::<bool>("SELECT convalidated FROM pg_constraint WHERE conname = 'orders_buyer_fk'");
    assert_eq!(validated, Ok(Some(true)), "PostgreSQL marks it valid without a scan");
    let f = rejected(
        "ALTER TABLE guard_fixture.orders ADD COLUMN seller_id bigint NULL DEFAULT 1 CONSTRAINT orders_seller_fk \
         REFERENCES guard_fixture.customers (id) DEFERRABLE INITIALLY DEFERRED",
        "constraint-missing-not-valid",
    );
    assert!(f.detail.contains("an ACCESS EXCLUSIVE lock on guard_fixture.orders ("), "{f:?}");
    assert!(f.detail.contains("a SHARE ROW EXCLUSIVE lock on guard_fixture.customers ("), "{f:?}");
    let steps: Vec<&str> = f.hint.lines().skip(1).collect();
    assert_eq!(steps[0], "ALTER TABLE guard_fixture.orders ADD COLUMN seller_id bigint DEFAULT 1;", "{f:?}");
    assert_eq!(
        steps[1],
        "ALTER TABLE guard_fixture.orders ADD CONSTRAINT orders_seller_fk FOREIGN KEY (seller_id) \
         REFERENCES guard_fixture.customers (id) DEFERRABLE INITIALLY DEFERRED NOT VALID;",
        "{f:?}"
    );
    // The steps run (VALIDATE belongs in its own transaction; not repeated here).
    allowed(steps[0]);
    allowed(steps[1]);
}

// The volatile-default HINT shows the default as PostgreSQL stores it, not a placeholder.
#[pg_test]
fn volatile_default_hint_shows_the_real_expression() {
    let f = rejected(
        "ALTER TABLE guard_fixture.orders ADD COLUMN token uuid DEFAULT gen_random_uuid() NOT NULL",
        "adding-field-with-default",
    );
    assert!(f.hint.contains("ALTER TABLE guard_fixture.orders ALTER COLUMN token SET DEFAULT gen_random_uuid();"), "{f:?}");
    assert!(f.hint.contains("ALTER TABLE guard_fixture.orders ALTER COLUMN token SET NOT NULL;"), "{f:?}");
}

/// Judging never runs a user's function: an IMMUTABLE function with a side effect (a
/// sequence advanced on each call) used in an ADD COLUMN default and in a USING expression
/// is not called by the guard; PostgreSQL calls it when the statement runs. The statement
/// is judged conservatively: a default calling a user's function is tested for volatility
/// unplanned (IMMUTABLE: no rewrite), and a USING that calls one counts as a rewrite.
#[pg_test]
fn judging_never_runs_user_functions() {
    Spi::run(
        "CREATE SEQUENCE guard_fixture.calls; \
         CREATE FUNCTION guard_fixture.counted() RETURNS int LANGUAGE plpgsql IMMUTABLE AS \
         $$BEGIN PERFORM nextval('guard_fixture.calls'); RETURN 0; END$$",
    )
    .unwrap();
    let calls = || Spi::get_one::<i64>("SELECT last_value - 1 + CASE WHEN is_called THEN 1 ELSE 0 END FROM guard_fixture.calls").unwrap().unwrap();
    assert_eq!(calls(), 0);
    let decision = Spi::get_one::<String>(
        "SELECT decision FROM pg_migration_guard.judge_timing('ALTER TABLE guard_fixture.orders ADD COLUMN junk int DEFAULT guard_fixture.counted()', 3)",
    )
    .unwrap();
    assert_eq!(decision.as_deref(), Some("allowed"));
    let rules = Spi::get_one::<Vec<String>>(
        "SELECT rules FROM pg_migration_guard.judge_timing('ALTER TABLE guard_fixture.orders ALTER COLUMN quantity TYPE bigint USING quantity + guard_fixture.counted()', 3)",
    )
    .unwrap()
    .unwrap_or_default();
    assert_eq!(rules, vec!["changing-column-type".to_string()]);
    assert_eq!(calls(), 0, "the guard called the user's function while judging");
    // PostgreSQL itself evaluates the immutable default once, when the statement runs.
    allowed("ALTER TABLE guard_fixture.orders ADD COLUMN junk int DEFAULT guard_fixture.counted()");
    assert!(calls() >= 1, "PostgreSQL did not evaluate the default");
}

/// Built-in functions are still planned, so constant folding decides as PostgreSQL does:
/// a STABLE now() default and an IMMUTABLE built-in expression store a missing value (no
/// rewrite), a volatile one rewrites; varchar widening stays binary-coercible.
#[pg_test]
fn builtin_expressions_are_still_folded_as_postgres_folds_them() {
    allowed("ALTER TABLE guard_fixture.orders ADD COLUMN created_at timestamptz DEFAULT now()");
    allowed("ALTER TABLE guard_fixture.orders ADD COLUMN code text DEFAULT upper('a' || 'b')");
    allowed("ALTER TABLE guard_fixture.orders ADD COLUMN flag int DEFAULT CASE WHEN false THEN (random() * 10)::int ELSE 1 END");
    rejected("ALTER TABLE guard_fixture.orders ADD COLUMN r float8 DEFAULT random()", "adding-field-with-default");
    allowed("ALTER TABLE guard_fixture.orders ALTER COLUMN note TYPE varchar(80)");
}

/// A statement the guard cannot judge is rejected by default with the cause's SQLSTATE and
/// the setting in the HINT (here: the stack depth limit, reached while the guard walks a
/// deep default expression), and runs with a WARNING when on_judging_error = allow.
#[pg_test]
fn a_statement_that_cannot_be_judged_is_rejected_unless_allowed() {
    Spi::run("SET max_stack_depth = '200kB'").unwrap();
    let deep = format!("ALTER TABLE guard_fixture.orders ADD COLUMN deep int DEFAULT {}", vec!["1"; 3000].join("+"));
    let f = run(&deep).expect_err("a statement the guard cannot judge must be refused");
    assert_eq!(f.sqlstate, PgSqlErrorCode::ERRCODE_STATEMENT_TOO_COMPLEX, "{f:?}");
    assert!(f.message.starts_with("pg_migration_guard could not judge this ALTER TABLE statement: stack depth limit exceeded"), "{f:?}");
    assert!(f.detail.contains("on_judging_error is reject"), "{f:?}");
    assert!(f.hint.contains("SET pg_migration_guard.on_judging_error = allow;"), "{f:?}");
    // With allow, the guard lets it run: the error is now PostgreSQL's own, from its own
    // analysis of the same default.
    Spi::run("SET pg_migration_guard.on_judging_error = allow").unwrap();
    let f = run(&deep).expect_err("PostgreSQL itself cannot analyze the default within 200kB of stack");
    assert_eq!(f.sqlstate, PgSqlErrorCode::ERRCODE_STATEMENT_TOO_COMPLEX, "{f:?}");
    assert_eq!(f.message, "stack depth limit exceeded", "{f:?}");
}

// ---------------------------------------------------------------------------------------
// Break-glass annotations: what is a comment is decided by PostgreSQL's lexer
// (crate::judging::scanner). guard_fixture.orders is above the small-table threshold, so a plain
// CREATE INDEX on it is rejected unless an annotation is honoured.
// ---------------------------------------------------------------------------------------

/// An annotation letting the rule that rejects `CREATE INDEX` on guard_fixture.orders through.
const ALLOW_INDEX: &str = "pg_migration_guard:allow require-concurrent-index-creation reason=\"night window\"";

/// The comment bodies crate::judging::scanner finds in `sql`, with the session's settings.
fn comments_of(sql: &str) -> Vec<String> {
    unsafe { crate::judging::scanner::comments(sql.as_bytes()) }.unwrap_or_else(|e| panic!("scanning {sql:?}: {e}"))
}

fn orders_index_count() -> i64 {
    Spi::get_one::<i64>("SELECT count(*) FROM pg_index WHERE indrelid = 'guard_fixture.orders'::regclass")
        .unwrap()
        .unwrap()
}

fn orders_index_exists(name: &str) -> bool {
    Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT FROM pg_class WHERE relname = $1 AND relnamespace = 'guard_fixture'::regnamespace)",
        &[name.into()],
    )
    .unwrap()
    .unwrap()
}

#[pg_test]
fn scanner_finds_every_comment_form() {
    assert_eq!(
        comments_of("-- lead\nCREATE /* inline */ INDEX i ON t (c) -- trail\n/* last */"),
        vec![" lead", " inline ", " trail", " last "]
    );
    // A -- comment at the very end of the text, without a newline.
    assert_eq!(comments_of("CREATE INDEX i ON t (c) -- end"), vec![" end"]);
    assert_eq!(comments_of("CREATE INDEX i ON t (c)--"), vec![""]);
    // Nested block comments are one comment, the inner one part of its body.
    assert_eq!(comments_of("SELECT /* a /* b */ c */ 1 /* d */"), vec![" a /* b */ c ", " d "]);
    // Right after tokens of every kind; an operator stops where a comment starts.
    assert_eq!(
        comments_of("SELECT 'x'/*1*/, E'y'--2\n, $$z$$/*3*/, \"q\"/*4*/, 1.5/*5*/, $1/*6*/, 1 +/*7*/ 2, B'01'/*8*/"),
        vec!["1", "2", "3", "4", "5", "6", "7", "8"]
    );
    assert!(comments_of("SELECT 1").is_empty());
}

#[pg_test]
fn scanner_sees_no_comment_inside_literals_or_quoted_names() {
    for sql in [
        "SELECT '-- not /* a */ comment'",
        "SELECT 'it''s -- not a comment'",
        "SELECT E'\\' /* not a comment */ '",
        "SELECT e'\\\\\\' -- not a comment'",
        "SELECT $$ /* not */ -- either $$",
        "SELECT $body$ $x$ /* not */ $x$ $body$",
        "SELECT \"/* not */ -- either\"",
        "SELECT \"a\"\"/* still the identifier */\"",
        "SELECT U&'/* not */ \\0041'",
    ] {
        assert!(comments_of(sql).is_empty(), "{sql}: {:?}", comments_of(sql));
    }
}

// `a$q$` is one identifier (scan.l: `ident_cont` includes `$`), so `$q$` opens no dollar
// quote there and the string literal after it holds no comment.
#[pg_test]
fn dollar_sign_inside_an_identifier_opens_no_dollar_quote() {
    assert!(comments_of(&format!("CREATE INDEX a$q$ ON t (c) WHERE c <> '$q$ /* {ALLOW_INDEX} */'")).is_empty());
    let before = orders_index_count();
    rejected(
        &format!("CREATE INDEX a$q$ ON guard_fixture.orders (status) WHERE status <> '$q$ /* {ALLOW_INDEX} */'"),
        "require-concurrent-index-creation",
    );
    assert_eq!(orders_index_count(), before);
    // The same statement with the annotation in a real comment is let through.
    allowed(&format!("CREATE INDEX a$q$ ON guard_fixture.orders (status) WHERE status <> '$q$' /* {ALLOW_INDEX} */"));
    assert!(orders_index_exists("a$q$"));
}

// With standard_conforming_strings off, '...' treats a backslash as an escape (scan.l:
// `xqstart` begins state `xe`): `'\' /* ... */ '` is one string literal.
#[pg_test]
fn backslash_escaped_quote_with_standard_conforming_strings_off() {
    Spi::run("SET LOCAL standard_conforming_strings = off").unwrap();
    let fake = format!("CREATE INDEX orders_sco_idx ON guard_fixture.orders (status) WHERE status <> '\\' /* {ALLOW_INDEX} */ '");
    assert!(comments_of(&fake).is_empty());
    rejected(&fake, "require-concurrent-index-creation");
    assert!(!orders_index_exists("orders_sco_idx"));
    // '\'' is one quote when a backslash escapes: the comment after it is real.
    let genuine = format!("CREATE INDEX orders_sco_idx ON guard_fixture.orders (status) WHERE status <> '\\'' /* {ALLOW_INDEX} */");
    assert_eq!(comments_of(&genuine), vec![format!(" {ALLOW_INDEX} ")]);
    allowed(&genuine);
    assert!(orders_index_exists("orders_sco_idx"));
}

// A text whose comments depend on standard_conforming_strings: under on, `'\'` is a string,
// then a comment, then `' -- '`; under off, `'\' /* ... */ '` is a string, then `-- '`.
// A statement is parsed with the value of its parse time, which is not always the value when
// it runs: SPI, like the simple-query protocol, parses a whole multi-statement string
// before running its first statement. Only what is a comment either way counts.
#[pg_test]
fn comment_that_depends_on_standard_conforming_strings_is_not_honoured() {
    let text = format!("CREATE INDEX orders_flip_idx ON guard_fixture.orders (status) WHERE status <> '\\' /* {ALLOW_INDEX} */ ' -- '");
    Spi::run("SET LOCAL standard_conforming_strings = on").unwrap();
    assert!(comments_of(&text).is_empty());
    Spi::run("SET LOCAL standard_conforming_strings = off").unwrap();
    assert!(comments_of(&text).is_empty());
    // Parsed with off, judged after the SET turned it on.
    rejected(&format!("SET LOCAL standard_conforming_strings = on; {text}"), "require-concurrent-index-creation");
    assert!(!orders_index_exists("orders_flip_idx"));
}

// U&'...' is an ERROR with standard_conforming_strings off: a text that only lexes under
// on was parsed under on, whatever the setting is when it is judged.
#[pg_test]
fn scanner_uses_the_setting_under_which_the_text_lexes() {
    Spi::run("SET LOCAL standard_conforming_strings = off").unwrap();
    assert_eq!(comments_of("SELECT U&'x' /* c */"), vec![" c "]);
}

#[pg_test]
fn annotation_like_text_in_literals_and_quoted_names_is_not_honoured() {
    let before = orders_index_count();
    for sql in [
        format!("CREATE INDEX orders_e_idx ON guard_fixture.orders (status) WHERE status <> E'\\' /* {ALLOW_INDEX} */ '"),
        format!("CREATE INDEX orders_dq_idx ON guard_fixture.orders (status) WHERE status <> $x$ -- {ALLOW_INDEX}\n$x$"),
        format!("CREATE INDEX orders_lit_idx ON guard_fixture.orders (status) WHERE status <> '/* {}'", ALLOW_INDEX.replace('\'', "''")),
        format!("CREATE INDEX \"/* {} */\" ON guard_fixture.orders (status)", ALLOW_INDEX.replace('"', "\"\"")),
    ] {
        rejected(&sql, "require-concurrent-index-creation");
    }
    assert_eq!(orders_index_count(), before);
}

#[pg_test]
fn genuine_annotation_in_each_comment_form_is_honoured() {
    for (i, sql) in [
        format!("-- {ALLOW_INDEX}\nCREATE INDEX orders_form0_idx ON guard_fixture.orders (status)"),
        format!("CREATE -- {ALLOW_INDEX}\nINDEX orders_form1_idx ON guard_fixture.orders (status)"),
        format!("CREATE INDEX orders_form2_idx /* {ALLOW_INDEX} */ ON guard_fixture.orders (status)"),
        format!("CREATE INDEX orders_form3_idx ON guard_fixture.orders (status) /* outer /* nested */ {ALLOW_INDEX} */"),
        format!("CREATE INDEX orders_form4_idx ON guard_fixture.orders (status) -- {ALLOW_INDEX}"),
        format!("CREATE INDEX orders_form5_idx ON guard_fixture.orders (status) WHERE status <> E'\\'' /* {ALLOW_INDEX} */"),
        format!("CREATE INDEX orders_form6_idx ON guard_fixture.orders (status) WHERE status <> $$ -- $$ -- {ALLOW_INDEX}"),
    ]
    .iter()
    .enumerate()
    {
        allowed(sql);
        assert!(orders_index_exists(&format!("orders_form{i}_idx")), "{sql}");
    }
}

// A text the lexer refuses is an Err (the hook then judges the statement as unannotated),
// not an ERROR, and the message levels the scan raised are back.
#[pg_test]
fn scanner_failure_is_returned_and_leaves_the_session_as_it_was() {
    Spi::run("SET LOCAL client_min_messages = notice").unwrap();
    let levels = || unsafe { (pg_sys::client_min_messages, pg_sys::log_min_messages) };
    let before = levels();
    let e = unsafe { crate::judging::scanner::comments(b"SELECT 'unterminated /* x */") }.unwrap_err();
    assert!(e.contains("unterminated quoted string"), "{e}");
    assert_eq!(levels(), before);
    assert_eq!(Spi::get_one::<i32>("SELECT 1"), Ok(Some(1)));
}

// ---------------------------------------------------------------------------------------
// exempt_roles: only memberships every link of which a superuser granted (guc::exemption)
// ---------------------------------------------------------------------------------------

fn exemption_reason() -> Option<String> {
    unsafe { crate::guc::exemption() }
}

/// Revokes the membership in g_listed that g_creator granted the session user: on
/// PostgreSQL 16 and later a REVOKE removes only the grant of the grantor it names (the
/// bootstrap superuser by default, for a superuser).
#[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
const REVOKE_FROM_SESSION_USER_GRANTED_BY_CREATOR: &str = "REVOKE g_listed FROM SESSION_USER";
#[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15")))]
const REVOKE_FROM_SESSION_USER_GRANTED_BY_CREATOR: &str = "REVOKE g_listed FROM SESSION_USER GRANTED BY g_creator";

#[pg_test]
fn exempt_roles_count_only_memberships_granted_by_superusers() {
    Spi::run(
        "CREATE ROLE g_listed NOLOGIN; CREATE ROLE g_creator NOLOGIN CREATEROLE; \
         SET LOCAL pg_migration_guard.exempt_roles = 'g_listed'",
    )
    .unwrap();
    assert_eq!(exemption_reason(), None, "not a member");
    // PostgreSQL 16 and later record a grantor only if it holds ADMIN OPTION on the role
    // (check_role_grantor in user.c); a CREATEROLE role no longer may grant any role.
    #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15")))]
    Spi::run("GRANT g_listed TO g_creator WITH ADMIN OPTION").unwrap();
    // What a CREATEROLE role's GRANT g_listed TO itself records: itself as grantor.
    Spi::run("GRANT g_listed TO SESSION_USER GRANTED BY g_creator").unwrap();
    assert_eq!(exemption_reason(), None, "a membership a non-superuser granted");
    Spi::run(REVOKE_FROM_SESSION_USER_GRANTED_BY_CREATOR).unwrap();
    Spi::run("GRANT g_listed TO SESSION_USER").unwrap();
    let reason = exemption_reason().expect("a membership the superuser granted exempts");
    assert!(reason.contains("\"g_listed\""), "{reason}");
}

#[pg_test]
fn exempt_roles_follow_chains_of_superuser_grants_only() {
    Spi::run("CREATE ROLE g_listed NOLOGIN; CREATE ROLE g_team NOLOGIN; CREATE ROLE g_creator NOLOGIN CREATEROLE").unwrap();
    // PostgreSQL 16 and later: a recorded grantor needs ADMIN OPTION (check_role_grantor).
    #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15")))]
    Spi::run("GRANT g_listed, g_team TO g_creator WITH ADMIN OPTION").unwrap();
    Spi::run(
        "GRANT g_listed TO g_team; GRANT g_team TO SESSION_USER GRANTED BY g_creator; \
         SET LOCAL pg_migration_guard.exempt_roles = 'g_listed'",
    )
    .unwrap();
    assert_eq!(exemption_reason(), None, "the first link granted by a non-superuser");
    #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
    Spi::run("REVOKE g_team FROM SESSION_USER").unwrap();
    #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15")))]
    Spi::run("REVOKE g_team FROM SESSION_USER GRANTED BY g_creator").unwrap();
    Spi::run("GRANT g_team TO SESSION_USER").unwrap();
    assert!(exemption_reason().is_some(), "every link granted by a superuser");
    Spi::run("REVOKE g_listed FROM g_team; GRANT g_listed TO g_team GRANTED BY g_creator").unwrap();
    assert_eq!(exemption_reason(), None, "the second link granted by a non-superuser");
}

#[pg_test]
fn exempt_roles_judge_the_grantor_as_it_is_now() {
    Spi::run("CREATE ROLE g_listed NOLOGIN; CREATE ROLE g_admin NOLOGIN SUPERUSER").unwrap();
    // PostgreSQL 16 and later: a recorded grantor needs ADMIN OPTION, superuser or not.
    #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15")))]
    Spi::run("GRANT g_listed TO g_admin WITH ADMIN OPTION").unwrap();
    Spi::run(
        "GRANT g_listed TO SESSION_USER GRANTED BY g_admin; \
         SET LOCAL pg_migration_guard.exempt_roles = 'g_listed'",
    )
    .unwrap();
    assert!(exemption_reason().is_some(), "granted by a superuser");
    Spi::run("ALTER ROLE g_admin NOSUPERUSER").unwrap();
    assert_eq!(exemption_reason(), None, "the grantor is no longer a superuser");
    Spi::run("ALTER ROLE g_admin SUPERUSER").unwrap();
    assert!(exemption_reason().is_some(), "the grantor is a superuser again");
    // PostgreSQL 15 keeps the membership, naming a grantor that no longer exists. 16 and
    // later refuse to drop a role that granted memberships (DropRole in user.c).
    #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
    {
        Spi::run("DROP ROLE g_admin").unwrap();
        assert_eq!(exemption_reason(), None, "the grantor was dropped");
    }
}

/// PostgreSQL 16 and later: a CREATEROLE role that creates a role gets ADMIN OPTION on it,
/// recorded as granted by the bootstrap superuser without INHERIT or SET, and, with
/// `createrole_self_grant`, a membership it granted itself (CreateRole in user.c). It is
/// then a member as far as PostgreSQL is concerned, but neither row exempts it: creating
/// a listed role that does not exist yet is no way out of the guard.
#[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15")))]
#[pg_test]
fn exempt_roles_ignore_what_createrole_gives_the_creator_of_a_listed_role() {
    Spi::run(
        "CREATE ROLE g_creator NOLOGIN CREATEROLE; SET LOCAL createrole_self_grant = 'set, inherit'; \
         SET LOCAL ROLE g_creator; CREATE ROLE g_listed NOLOGIN; RESET ROLE",
    )
    .unwrap();
    let oid = |name: &str| Spi::get_one::<pg_sys::Oid>(&format!("SELECT '{name}'::regrole::oid")).unwrap().unwrap();
    assert_eq!(Spi::get_one::<bool>("SELECT pg_has_role('g_creator', 'g_listed', 'MEMBER')"), Ok(Some(true)));
    assert_eq!(
        Spi::get_one::<i64>("SELECT count(*) FROM pg_auth_members WHERE roleid = 'g_listed'::regrole AND member = 'g_creator'::regrole"),
        Ok(Some(2))
    );
    assert_eq!(unsafe { crate::guc::exempting_role(oid("g_creator"), &[oid("g_listed")]) }, None);
}

#[pg_test]
fn logging_in_as_a_listed_role_does_not_exempt() {
    let me = Spi::get_one::<String>("SELECT quote_ident(session_user)").unwrap().unwrap();
    Spi::run(&format!("SET LOCAL pg_migration_guard.exempt_roles = '{me}'")).unwrap();
    assert_eq!(exemption_reason(), None);
}

#[pg_test]
fn exempt_roles_follow_at_most_max_membership_depth_memberships() {
    let depth = crate::guc::MAX_MEMBERSHIP_DEPTH;
    // g_chain_k is k + 1 memberships away from the session user.
    let mut sql = String::from("CREATE ROLE g_chain_0 NOLOGIN; GRANT g_chain_0 TO SESSION_USER;");
    for k in 1..=depth {
        sql += &format!("CREATE ROLE g_chain_{k} NOLOGIN; GRANT g_chain_{k} TO g_chain_{};", k - 1);
    }
    Spi::run(&sql).unwrap();
    Spi::run(&format!("SET LOCAL pg_migration_guard.exempt_roles = 'g_chain_{}'", depth - 1)).unwrap();
    assert!(exemption_reason().is_some(), "{depth} memberships away");
    Spi::run(&format!("SET LOCAL pg_migration_guard.exempt_roles = 'g_chain_{depth}'")).unwrap();
    assert_eq!(exemption_reason(), None, "{} memberships away", depth + 1);
}

#[pg_test]
fn exempt_roles_that_do_not_exist_are_reported_and_ignored() {
    Spi::run(
        "CREATE ROLE g_listed NOLOGIN; GRANT g_listed TO SESSION_USER; \
         SET LOCAL pg_migration_guard.exempt_roles = 'g_nobody, g_listed, \"G Nobody\"'",
    )
    .unwrap();
    assert_eq!(unsafe { crate::guc::missing_exempt_roles() }, vec!["g_nobody".to_string(), "G Nobody".to_string()]);
    assert!(exemption_reason().is_some_and(|r| r.contains("\"g_listed\"")));
    // Logs one WARNING per missing role and raises nothing.
    unsafe { crate::guc::warn_missing_exempt_roles() };
}

/// The writer's column list is the table's: same columns in the same order, all but
/// `database` (filled by its DEFAULT), as sql/audit_log.sql creates it.
#[pg_test]
fn the_column_list_matches_the_audit_table() {
    let sql = include_str!("../sql/audit_log.sql");
    let start = sql.find("CREATE TABLE pg_migration_guard.audit_log (").expect("CREATE TABLE in sql/audit_log.sql");
    let body = &sql[start..];
    let body = &body[body.find('(').unwrap() + 1..body.find("\n);").expect("end of CREATE TABLE")];
    let table: Vec<&str> = body.lines().filter_map(|l| l.split_whitespace().next()).filter(|c| *c != "database").collect();
    let ours: Vec<&str> = crate::audit::writer::COLUMNS.iter().map(|c| c.name).collect();
    assert_eq!(ours, table);
    let sql = crate::audit::writer::insert_sql();
    assert!(sql.contains("r.c19") && !sql.contains("r.c20") && sql.contains("($19)"), "{sql}");
    assert!(sql.contains("timestamptz '2000-01-01 00:00:00+00' + r.c2 * interval '1 microsecond'"), "{sql}");
}

// Tables for the recursion and ownership tests below: an empty inheritance parent whose
// child holds about 2 MB (over the default 1MB small_table_threshold), a partitioned table,
// and a table owned by guard_app_user that references orders.
extension_sql!(
    r#"
CREATE TABLE guard_fixture.inh_parent (a int, b int, pad text);
CREATE TABLE guard_fixture.inh_child () INHERITS (guard_fixture.inh_parent);
INSERT INTO guard_fixture.inh_child SELECT g, g, repeat('x', 80) FROM generate_series(1, 20000) g;
CREATE TABLE guard_fixture.parted (k int, v text) PARTITION BY RANGE (k);
CREATE TABLE guard_fixture.parted_1 PARTITION OF guard_fixture.parted FOR VALUES FROM (0) TO (100);
CREATE TABLE guard_fixture.parted_2 PARTITION OF guard_fixture.parted FOR VALUES FROM (100) TO (200);
CREATE TABLE guard_fixture.app_lines (order_id bigint);
ALTER TABLE guard_fixture.app_lines OWNER TO guard_app_user;
GRANT REFERENCES ON guard_fixture.orders TO guard_app_user;
"#,
    name = "lock_recursion_fixture",
    requires = ["test_fixture"]
);

/// `relation lock` lines of lock_targets(sql), in its order.
fn all_predicted(sql: &str) -> Vec<String> {
    Spi::connect(|c| {
        c.select("SELECT relation || ' ' || mode FROM pg_migration_guard.lock_targets($1)", None, &[sql.into()])
            .unwrap()
            .map(|r| r.get::<String>(1).unwrap().unwrap())
            .collect()
    })
}

// PostgreSQL recurses per statement and subcommand, not whenever ONLY is absent: CREATE
// INDEX on an inheritance parent indexes the parent alone (DefineIndex recurses for
// partitioned tables only), ENABLE ROW LEVEL SECURITY and REPLICA IDENTITY never recurse,
// DETACH PARTITION locks the parent and the partition, not its siblings.
#[pg_test]
fn lock_targets_follow_postgres_recursion_rules() {
    assert_eq!(all_predicted("CREATE INDEX ON guard_fixture.inh_parent (b)"), ["guard_fixture.inh_parent SHARE"]);
    assert_eq!(
        all_predicted("ALTER TABLE guard_fixture.inh_parent ADD COLUMN c int"),
        ["guard_fixture.inh_parent ACCESS EXCLUSIVE", "guard_fixture.inh_child ACCESS EXCLUSIVE"]
    );
    assert_eq!(
        all_predicted("ALTER TABLE guard_fixture.inh_parent ENABLE ROW LEVEL SECURITY"),
        ["guard_fixture.inh_parent ACCESS EXCLUSIVE"]
    );
    assert_eq!(
        all_predicted("ALTER TABLE guard_fixture.parted REPLICA IDENTITY FULL"),
        ["guard_fixture.parted ACCESS EXCLUSIVE"]
    );
    assert_eq!(
        all_predicted("CREATE INDEX ON guard_fixture.parted (v)"),
        ["guard_fixture.parted SHARE", "guard_fixture.parted_1 SHARE", "guard_fixture.parted_2 SHARE"]
    );
    assert_eq!(all_predicted("CREATE INDEX ON ONLY guard_fixture.parted (v)"), ["guard_fixture.parted SHARE"]);
    assert_eq!(
        all_predicted("ALTER TABLE guard_fixture.parted DETACH PARTITION guard_fixture.parted_2"),
        ["guard_fixture.parted ACCESS EXCLUSIVE", "guard_fixture.parted_2 ACCESS EXCLUSIVE"]
    );
    // What PostgreSQL takes, strong modes, on the fixture's inheritance tables.
    Spi::run("SET LOCAL pg_migration_guard.mode = warn").unwrap();
    Spi::run("SET LOCAL pg_migration_guard.lock_timeout_policy = off").unwrap();
    Spi::run("SET LOCAL client_min_messages = error").unwrap();
    let taken = unsafe {
        crate::subxact::run(crate::subxact::OnSuccess::RollBack, || {
            Spi::run("CREATE INDEX lt_inh_idx ON guard_fixture.inh_parent (b)").expect("statement");
            Spi::get_one::<i64>(
                "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'relation' \
                 AND relation = 'guard_fixture.inh_child'::regclass",
            )
        })
    };
    assert_eq!(taken.map_err(|_| ()).and_then(|r| r.map_err(|_| ())), Ok(Some(0)), "CREATE INDEX on the parent locked the child");
}

// Sizes count only what the statement processes: an empty inheritance parent is small
// (exempt under small_table_threshold) although its child is not, for CREATE INDEX, which
// indexes the parent alone; ALTER TABLE ... ADD COLUMN with a volatile default rewrites the
// child too and counts it.
#[pg_test]
fn an_inheritance_parent_is_as_big_as_the_children_the_statement_reaches() {
    allowed("CREATE INDEX lt_inh_parent_b_idx ON guard_fixture.inh_parent (b)");
    rejected("CREATE INDEX lt_inh_child_b_idx ON guard_fixture.inh_child (b)", "require-concurrent-index-creation");
    let f = rejected("ALTER TABLE guard_fixture.inh_parent ADD COLUMN r float8 DEFAULT random()", "adding-field-with-default");
    assert!(!f.detail.contains("guard_fixture.inh_parent (0 bytes"), "{f:?}");
}

// taken_ahead tells what the guard does: a foreign key from a table the user owns to a
// table of another owner takes SHARE ROW EXCLUSIVE on both; the guard takes the lock on
// the user's own table ahead, never the other owner's.
#[pg_test]
fn taken_ahead_excludes_strong_locks_on_tables_of_other_owners() {
    Spi::run("SET LOCAL ROLE guard_app_user").unwrap();
    let rows: Vec<String> = Spi::connect(|c| {
        c.select(
            "SELECT relation || ' ' || mode || ' ' || taken_ahead FROM pg_migration_guard.lock_targets($1)",
            None,
            &["ALTER TABLE guard_fixture.app_lines ADD FOREIGN KEY (order_id) REFERENCES guard_fixture.orders (id)".into()],
        )
        .unwrap()
        .map(|r| r.get::<String>(1).unwrap().unwrap())
        .collect()
    });
    assert_eq!(rows, ["guard_fixture.app_lines SHARE ROW EXCLUSIVE true", "guard_fixture.orders SHARE ROW EXCLUSIVE false"]);
}

// ---------------------------------------------------------------------------------------
// Catalog facts behind the accuracy of the rules: each read as PostgreSQL reads it, and,
// where the transaction allows, compared with what PostgreSQL then does.
// ---------------------------------------------------------------------------------------

/// The facts the guard reads for one statement, with measured sizes.
fn facts_of(sql: &str) -> crate::model::Statement {
    use crate::judging::facts::{statement_facts, Sizes, StatementText};
    let c = std::ffi::CString::new(sql).unwrap();
    unsafe {
        let list = pg_sys::raw_parser(c.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        let raw = pgrx::PgList::<pg_sys::RawStmt>::from_pg(list).get_ptr(0).expect("one statement");
        let text = StatementText { text: sql, offset: 0 };
        crate::subxact::in_subtransaction(|| statement_facts((*raw).stmt, &text, Sizes::Measured))
            .unwrap_or_else(|e| panic!("facts of {sql}: {e}"))
    }
}

/// Statements judged without a subtransaction (`judging::reads_catalog` false) have no facts
/// and no lock targets, so judging them without reading the catalog decides what reading it
/// would; a CREATE TABLE that names another relation or type reads it.
#[pg_test]
fn catalog_free_statements_have_no_facts_and_no_locks() {
    let parse = |sql: &str| {
        let c = std::ffi::CString::new(sql).unwrap();
        unsafe {
            let list = pg_sys::raw_parser(c.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
            (*pgrx::PgList::<pg_sys::RawStmt>::from_pg(list).get_ptr(0).expect("one statement")).stmt
        }
    };
    for sql in [
        "CREATE TABLE guard_fixture.plain (id bigint PRIMARY KEY, name text UNIQUE, n int CHECK (n > 0) DEFAULT 1)",
        "CREATE TABLE guard_fixture.orders (id int)",
        "CREATE SCHEMA guard_other",
        "CREATE VIEW guard_fixture.v AS SELECT * FROM guard_fixture.orders",
        "CREATE FUNCTION guard_fixture.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE SEQUENCE guard_fixture.s",
        "ALTER SEQUENCE guard_fixture.s RESTART",
        "CREATE TYPE guard_fixture.t AS (a int)",
        "GRANT SELECT ON guard_fixture.orders TO guard_app_user",
        "CREATE EXTENSION IF NOT EXISTS plpgsql",
        "CREATE MATERIALIZED VIEW guard_fixture.mv AS SELECT 1",
        "ALTER TYPE guard_fixture.positive_int OWNER TO guard_app_user",
    ] {
        let node = parse(sql);
        assert!(!unsafe { crate::judging::reads_catalog(node) }, "{sql}");
        assert!(matches!(facts_of(sql), crate::model::Statement::Other), "{sql}");
        let targets = unsafe { crate::subxact::in_subtransaction(|| crate::judging::lock_targets::lock_targets(node)) }.unwrap();
        assert!(targets.is_empty(), "{sql}: {targets:?}");
    }
    for sql in [
        "CREATE TABLE guard_fixture.p2 PARTITION OF guard_fixture.parts FOR VALUES FROM (100) TO (200)",
        "CREATE TABLE guard_fixture.child () INHERITS (guard_fixture.orders)",
        "CREATE TABLE guard_fixture.l (LIKE guard_fixture.orders)",
        "CREATE TABLE guard_fixture.fk (o bigint REFERENCES guard_fixture.orders)",
        "CREATE TABLE guard_fixture.fk2 (o bigint, FOREIGN KEY (o) REFERENCES guard_fixture.orders)",
        "COMMENT ON TABLE guard_fixture.orders IS 'x'",
        "ALTER TABLE guard_fixture.orders ADD COLUMN x int",
    ] {
        assert!(unsafe { crate::judging::reads_catalog(parse(sql)) }, "{sql}");
    }
}

/// The subcommands of an ALTER TABLE's facts.
fn alter_commands(sql: &str) -> Vec<crate::model::AlterTableCmd> {
    match facts_of(sql) {
        crate::model::Statement::AlterTable(at) => at.commands,
        other => panic!("{sql}: {other:?}"),
    }
}

/// The relfilenode of a relation, to tell whether a statement rebuilt it.
fn relfilenode_of(rel: &str) -> u32 {
    Spi::get_one::<pg_sys::Oid>(&format!("SELECT relfilenode FROM pg_class WHERE oid = '{rel}'::regclass")).unwrap().unwrap().to_u32()
}

// ADD PRIMARY KEY USING INDEX on a nullable column sets it NOT NULL with a scan, although the
// index exists; a validated CHECK (col IS NOT NULL) lets PostgreSQL skip it, and the guard then
// passes the statement.
#[pg_test]
fn primary_key_using_index_on_a_nullable_column_scans_unless_a_check_proves_it() {
    allowed("ALTER TABLE guard_fixture.orders DROP CONSTRAINT orders_pkey CASCADE");
    let using_index = "ALTER TABLE guard_fixture.orders ADD CONSTRAINT orders_note_pkey PRIMARY KEY USING INDEX orders_note_key_idx";
    let f = rejected(using_index, "adding-not-nullable-field");
    assert!(f.message.contains("adding PRIMARY KEY orders_note_pkey would scan guard_fixture.orders"), "{f:?}");
    assert!(f.message.ends_with("to set note NOT NULL"), "{f:?}");
    // The route to NOT NULL without a blocking scan: a validated CHECK, or from PostgreSQL 18 on
    // a NOT NULL constraint added NOT VALID and validated.
    let route = if pg_sys::PG_VERSION_NUM >= 180000 {
        "ADD CONSTRAINT orders_note_not_null NOT NULL note NOT VALID;"
    } else {
        "ADD CONSTRAINT orders_note_not_null CHECK (note IS NOT NULL) NOT VALID;"
    };
    assert!(f.hint.contains(route), "{f:?}");
    // ADD PRIMARY KEY (note): the index build, and the same implicit SET NOT NULL.
    let f = rejected("ALTER TABLE guard_fixture.orders ADD PRIMARY KEY (note)", "disallowed-unique-constraint");
    assert!(f.message.ends_with("(and 1 more finding)"), "{f:?}");
    assert!(f.detail.contains("adding-not-nullable-field: ALTER TABLE takes an ACCESS EXCLUSIVE lock"), "{f:?}");
    allowed("SET LOCAL pg_migration_guard.rule_levels = 'disallowed-unique-constraint:warning'");
    rejected("ALTER TABLE guard_fixture.orders ADD PRIMARY KEY (note)", "adding-not-nullable-field");
    // The CHECK route (VALIDATE in the test's own transaction is flagged: lowered here).
    allowed("SET LOCAL pg_migration_guard.rule_levels = 'constraint-missing-not-valid:off'");
    allowed("ALTER TABLE guard_fixture.orders ADD CONSTRAINT orders_note_not_null CHECK (note IS NOT NULL) NOT VALID");
    allowed("ALTER TABLE guard_fixture.orders VALIDATE CONSTRAINT orders_note_not_null");
    allowed("RESET pg_migration_guard.rule_levels");
    allowed(using_index);
    assert_eq!(
        Spi::get_one::<bool>("SELECT attnotnull FROM pg_attribute WHERE attrelid = 'guard_fixture.orders'::regclass AND attname = 'note'"),
        Ok(Some(true))
    );
}

// ATTACH PARTITION and CREATE TABLE ... PARTITION OF: the relations PostgreSQL scans, and the
// partition constraint as it checks it; a CHECK equal to it, validated, spares the scan.
#[pg_test]
fn partition_scans_follow_postgres_proof() {
    use crate::model::{AlterTableCmd, Statement};
    // guard_fixture.parts and parts_1 come from the fixture: the facts of an ALTER TABLE on a
    // table created in this transaction are not read (no rule applies to it).
    let attach = "ALTER TABLE guard_fixture.parts ATTACH PARTITION guard_fixture.parts_1 FOR VALUES FROM (1) TO (100)";
    let attach_facts = || match alter_commands(attach).pop() {
        Some(AlterTableCmd::AttachPartition(a)) => a,
        other => panic!("{other:?}"),
    };
    let a = attach_facts();
    assert_eq!(a.partition, "guard_fixture.parts_1");
    assert_eq!(a.scans.len(), 1, "{a:?}");
    assert_eq!(a.scans[0].relation.name, "guard_fixture.parts_1");
    let constraint = a.scans[0].constraint_sql.clone().unwrap();
    assert_eq!(constraint, "((id IS NOT NULL) AND (id >= '1'::bigint) AND (id < '100'::bigint))");
    assert!(a.default_scans.is_empty());
    // The HINT's CHECK, validated: PostgreSQL's proof holds and nothing is scanned.
    Spi::run(&format!("ALTER TABLE guard_fixture.parts_1 ADD CONSTRAINT parts_1_check CHECK ({constraint})")).unwrap();
    assert!(attach_facts().scans.is_empty());
    Spi::run("ALTER TABLE guard_fixture.parts_1 DROP CONSTRAINT parts_1_check").unwrap();
    // A NOT VALID one proves nothing.
    Spi::run("ALTER TABLE guard_fixture.parts_1 ADD CONSTRAINT parts_1_check CHECK (id >= 1 AND id < 100) NOT VALID").unwrap();
    assert_eq!(attach_facts().scans.len(), 1);
    // With a DEFAULT partition, both statements scan it for rows of the new bound.
    Spi::run("CREATE TABLE guard_fixture.parts_default PARTITION OF guard_fixture.parts DEFAULT").unwrap();
    let a = attach_facts();
    assert_eq!(a.default_scans.len(), 1, "{a:?}");
    assert_eq!(a.default_scans[0].relation.name, "guard_fixture.parts_default");
    let create = "CREATE TABLE guard_fixture.parts_2 PARTITION OF guard_fixture.parts FOR VALUES FROM (100) TO (200)";
    match facts_of(create) {
        Statement::CreatePartition(cp) => {
            assert_eq!(cp.default_scans.len(), 1, "{cp:?}");
            let proof = cp.default_scans[0].constraint_sql.clone().unwrap();
            Spi::run(&format!("ALTER TABLE guard_fixture.parts_default ADD CONSTRAINT parts_default_check CHECK ({proof})")).unwrap();
        }
        other => panic!("{other:?}"),
    }
    match facts_of(create) {
        Statement::CreatePartition(cp) => assert!(cp.default_scans.is_empty(), "{cp:?}"),
        other => panic!("{other:?}"),
    }
    // No DEFAULT partition to scan: not judged at all.
    Spi::run("CREATE TABLE guard_fixture.other_parts (id int) PARTITION BY LIST (id)").unwrap();
    assert_eq!(facts_of("CREATE TABLE guard_fixture.other_parts_1 PARTITION OF guard_fixture.other_parts FOR VALUES IN (1)"), Statement::Other);
    // A bound the guard cannot transform without calling a user's function is judged as
    // scanned (no constraint shown), and the function is not called.
    Spi::run(
        "CREATE SEQUENCE guard_fixture.bound_calls; \
         CREATE FUNCTION guard_fixture.bound() RETURNS bigint LANGUAGE plpgsql IMMUTABLE AS \
         $$BEGIN PERFORM nextval('guard_fixture.bound_calls'); RETURN 100; END$$",
    )
    .unwrap();
    let a = match alter_commands(
        "ALTER TABLE guard_fixture.parts ATTACH PARTITION guard_fixture.parts_1 FOR VALUES FROM (1) TO (guard_fixture.bound())",
    )
    .pop()
    {
        Some(AlterTableCmd::AttachPartition(a)) => a,
        other => panic!("{other:?}"),
    };
    assert_eq!(a.scans.len(), 1);
    assert_eq!(a.scans[0].constraint_sql, None);
    assert_eq!(Spi::get_one::<bool>("SELECT is_called FROM guard_fixture.bound_calls"), Ok(Some(false)));
    // A table that does not exist, or an invalid bound, is PostgreSQL's error.
    assert!(alter_commands("ALTER TABLE guard_fixture.parts ATTACH PARTITION guard_fixture.no_such FOR VALUES FROM (1) TO (2)").is_empty());
    assert!(alter_commands("ALTER TABLE guard_fixture.parts ATTACH PARTITION guard_fixture.parts_1 FOR VALUES IN (1)").is_empty());
}

// ALTER DOMAIN reads every column of the domain, and of domains over it, in tables and
// materialized views (get_rels_with_domain); a constraint or domain that does not exist is
// PostgreSQL's error.
#[pg_test]
fn alter_domain_reaches_every_column_of_the_domain() {
    use crate::model::{DomainAction, Statement};
    Spi::run(
        "CREATE DOMAIN guard_fixture.qty AS integer; \
         CREATE DOMAIN guard_fixture.small_qty AS guard_fixture.qty; \
         CREATE TABLE guard_fixture.lines_a (a guard_fixture.qty, b int); \
         CREATE TABLE guard_fixture.lines_b (c guard_fixture.small_qty, d guard_fixture.qty); \
         CREATE VIEW guard_fixture.lines_v AS SELECT a FROM guard_fixture.lines_a; \
         ALTER DOMAIN guard_fixture.qty ADD CONSTRAINT qty_positive CHECK (VALUE > 0) NOT VALID",
    )
    .unwrap();
    let uses = |sql: &str| match facts_of(sql) {
        Statement::AlterDomain(d) => {
            let mut u: Vec<String> = d
                .uses
                .iter()
                .map(|u| {
                    let mut columns = u.columns.clone();
                    columns.sort();
                    format!("{} {}", u.table.name, columns.join(","))
                })
                .collect();
            u.sort();
            (d.action, u)
        }
        other => panic!("{sql}: {other:?}"),
    };
    let (action, u) = uses("ALTER DOMAIN guard_fixture.qty ADD CONSTRAINT qty_small CHECK (VALUE < 100)");
    // (columns in the order pg_depend lists them, sorted here)
    assert!(matches!(action, DomainAction::AddCheck { validates: true, .. }), "{action:?}");
    assert_eq!(u, ["guard_fixture.lines_a a", "guard_fixture.lines_b c,d"]);
    let (action, _) = uses("ALTER DOMAIN guard_fixture.qty ADD CONSTRAINT qty_small CHECK (VALUE < 100) NOT VALID");
    assert!(matches!(action, DomainAction::AddCheck { validates: false, .. }), "{action:?}");
    assert!(matches!(uses("ALTER DOMAIN guard_fixture.qty SET NOT NULL").0, DomainAction::SetNotNull));
    assert!(matches!(uses("ALTER DOMAIN guard_fixture.qty VALIDATE CONSTRAINT qty_positive").0, DomainAction::ValidateConstraint { .. }));
    assert_eq!(facts_of("ALTER DOMAIN guard_fixture.qty VALIDATE CONSTRAINT no_such"), Statement::Other);
    assert_eq!(facts_of("ALTER DOMAIN guard_fixture.no_such SET NOT NULL"), Statement::Other);
    assert_eq!(facts_of("ALTER DOMAIN guard_fixture.qty DROP NOT NULL"), Statement::Other);
    // The rules on a big table: the fixture's positive_int is not stored anywhere; orders is.
    allowed("ALTER TABLE guard_fixture.orders ADD COLUMN boxes guard_fixture.plain_int");
    rejected("ALTER DOMAIN guard_fixture.plain_int ADD CONSTRAINT plain_positive CHECK (VALUE > 0)", "constraint-missing-not-valid");
    rejected("ALTER DOMAIN guard_fixture.plain_int SET NOT NULL", "adding-not-nullable-field");
    allowed("ALTER DOMAIN guard_fixture.plain_int ADD CONSTRAINT plain_positive CHECK (VALUE > 0) NOT VALID");
    rejected("ALTER DOMAIN guard_fixture.plain_int VALIDATE CONSTRAINT plain_positive", "constraint-missing-not-valid");
}

// ALTER TYPE ... ALTER ATTRIBUTE ... TYPE ... CASCADE changes the column of every typed table,
// with PostgreSQL's rewrite test on each.
#[pg_test]
fn alter_type_cascade_is_judged_on_each_typed_table() {
    use crate::model::{AlterTableCmd, Statement};
    Spi::run(
        "CREATE TYPE guard_fixture.line AS (order_id bigint, qty integer); \
         CREATE TABLE guard_fixture.typed_lines OF guard_fixture.line",
    )
    .unwrap();
    match facts_of("ALTER TYPE guard_fixture.line ALTER ATTRIBUTE qty TYPE bigint CASCADE") {
        Statement::AlterCompositeType { type_name, tables } => {
            assert_eq!(type_name, "guard_fixture.line");
            assert_eq!(tables.len(), 1);
            assert_eq!(tables[0].table.name, "guard_fixture.typed_lines");
            assert!(matches!(tables[0].commands[..], [AlterTableCmd::AlterColumnType { rewrite: Some(true), .. }]), "{tables:?}");
        }
        other => panic!("{other:?}"),
    }
    // Without CASCADE PostgreSQL refuses it (typed tables exist): not judged.
    assert_eq!(facts_of("ALTER TYPE guard_fixture.line ALTER ATTRIBUTE qty TYPE bigint"), Statement::Other);
}

// Without a rewrite, PostgreSQL rebuilds the indexes whose collation or operator class changes
// with the column (CheckIndexCompatible). The guard's prediction is compared with what
// PostgreSQL does: a rebuilt index gets a new relfilenode.
#[pg_test]
fn index_rebuilds_without_a_rewrite_are_predicted_as_postgres_does_them() {
    use crate::model::AlterTableCmd;
    allowed("SET LOCAL pg_migration_guard.mode = warn");
    allowed("SET LOCAL client_min_messages = error");
    // The fixture's materialized view reads status: PostgreSQL refuses to change its type
    // (the view is a member of the extension, released first; all rolled back).
    allowed("ALTER EXTENSION pg_migration_guard DROP MATERIALIZED VIEW guard_fixture.sales_by_status");
    allowed("DROP MATERIALIZED VIEW guard_fixture.sales_by_status");
    allowed("CREATE INDEX orders_status_upper_idx ON guard_fixture.orders (upper(status))");
    let cases = [
        // (statement, predicted rebuilds)
        ("ALTER TABLE guard_fixture.orders ALTER COLUMN note TYPE varchar(60)", vec![]),
        ("ALTER TABLE guard_fixture.orders ALTER COLUMN note TYPE text", vec![]),
        (
            "ALTER TABLE guard_fixture.orders ALTER COLUMN status TYPE text COLLATE \"C\"",
            vec!["guard_fixture.orders_status_idx", "guard_fixture.orders_status_upper_idx"],
        ),
        ("ALTER TABLE guard_fixture.orders ALTER COLUMN note TYPE text COLLATE \"C\"", vec!["guard_fixture.orders_note_key_idx"]),
    ];
    for (sql, expected) in cases {
        let predicted = match alter_commands(sql).pop() {
            Some(AlterTableCmd::AlterColumnType { rewrite: Some(false), rebuilt_indexes, .. }) => rebuilt_indexes,
            other => panic!("{sql}: {other:?}"),
        };
        let mut sorted = predicted.clone();
        sorted.sort();
        assert_eq!(sorted, expected, "{sql}");
        let indexes = ["guard_fixture.orders_status_idx", "guard_fixture.orders_status_upper_idx", "guard_fixture.orders_note_key_idx"];
        let before: Vec<u32> = indexes.iter().map(|i| relfilenode_of(i)).collect();
        allowed(sql);
        for (i, b) in indexes.iter().zip(before) {
            assert_eq!(relfilenode_of(i) != b, predicted.iter().any(|p| p == i), "{sql}: {i}");
        }
    }
    // The rule: an index rebuild under ACCESS EXCLUSIVE on a big table.
    allowed("SET LOCAL pg_migration_guard.mode = enforce");
    let f = rejected("ALTER TABLE guard_fixture.orders ALTER COLUMN status TYPE text COLLATE \"POSIX\"", "changing-column-type");
    assert!(f.message.contains("would rebuild indexes"), "{f:?}");
}

// What a column has, read for the expand/contract HINT: NOT NULL, default, CHECK and FOREIGN
// KEY constraints, indexes, the foreign keys that reference it, the key to batch by.
#[pg_test]
fn column_facts_name_everything_the_column_has() {
    use crate::model::AlterTableCmd;
    Spi::run(
        "SET LOCAL pg_migration_guard.mode = warn; SET LOCAL client_min_messages = error; \
         ALTER TABLE guard_fixture.orders ALTER COLUMN customer_id SET DEFAULT 0; \
         ALTER TABLE guard_fixture.orders ADD CONSTRAINT orders_customer_positive CHECK (customer_id >= 0) NOT VALID; \
         ALTER TABLE guard_fixture.orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES guard_fixture.customers (id) NOT VALID; \
         CREATE INDEX orders_customer_idx ON guard_fixture.orders (customer_id); \
         RESET pg_migration_guard.mode",
    )
    .unwrap();
    let current = |sql: &str| match alter_commands(sql).pop() {
        Some(AlterTableCmd::AlterColumnType { current: Some(c), .. }) => *c,
        other => panic!("{sql}: {other:?}"),
    };
    let c = current("ALTER TABLE guard_fixture.orders ALTER COLUMN customer_id TYPE integer");
    assert_eq!(c.type_name, "bigint");
    assert!(!c.not_null);
    assert_eq!(c.default_sql.as_deref(), Some("0"));
    assert_eq!(c.batch_key, "id");
    // The assignment cast is implicit: the deparsed transform is the column itself.
    assert_eq!(c.new_value_sql.as_deref(), Some("customer_id"));
    let names: Vec<&str> = c.constraints.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["orders_customer_positive", "orders_customer_fk"], "{c:?}");
    assert_eq!(c.constraints[0].1, "CHECK ((customer_id >= 0))");
    // (pg_get_constraintdef's " NOT VALID" dropped: the route adds the copy NOT VALID)
    assert_eq!(c.constraints[1].1, "FOREIGN KEY (customer_id) REFERENCES guard_fixture.customers(id)");
    assert_eq!(c.indexes.len(), 1, "{c:?}");
    assert_eq!(c.indexes[0].definition, "CREATE INDEX orders_customer_idx ON guard_fixture.orders USING btree (customer_id)");
    let id = current("ALTER TABLE guard_fixture.orders ALTER COLUMN id TYPE integer");
    assert!(id.not_null);
    assert!(id.referenced_by.iter().any(|r| r == "guard_fixture.order_lines.order_lines_order_id_fkey"), "{id:?}");
    assert_eq!(id.indexes[0].constraint, Some(("orders_pkey".to_string(), "PRIMARY KEY")));
    // The HINT carries them over.
    let f = rejected("ALTER TABLE guard_fixture.orders ALTER COLUMN customer_id TYPE integer", "changing-column-type");
    for step in [
        "ALTER TABLE guard_fixture.orders ALTER COLUMN customer_id_new SET DEFAULT 0;",
        "ADD CONSTRAINT orders_customer_positive_new CHECK ((customer_id_new >= 0)) NOT VALID;",
        "CREATE INDEX CONCURRENTLY orders_customer_idx_new ON guard_fixture.orders USING btree (customer_id_new);",
        "ALTER TABLE guard_fixture.orders RENAME COLUMN customer_id_new TO customer_id;",
    ] {
        assert!(f.hint.contains(step), "{step}: {f:?}");
    }
}

// A column dropped earlier in the transaction and added back under the same name loses every
// value; the guard finds the drop in the catalog (the pg_attribute row versions of the
// transaction). A column added in the transaction itself held no committed value.
#[pg_test]
fn a_column_dropped_and_added_back_in_one_transaction_is_found() {
    use crate::model::AlterTableCmd;
    allowed("SET LOCAL pg_migration_guard.mode = warn");
    allowed("SET LOCAL client_min_messages = error");
    // The fixture's materialized view reads status: PostgreSQL refuses to drop it (the view
    // is a member of the extension, released first; all rolled back).
    allowed("ALTER EXTENSION pg_migration_guard DROP MATERIALIZED VIEW guard_fixture.sales_by_status");
    allowed("DROP MATERIALIZED VIEW guard_fixture.sales_by_status");
    allowed("ALTER TABLE guard_fixture.orders DROP COLUMN note");
    allowed("ALTER TABLE guard_fixture.orders ADD COLUMN fresh text");
    allowed("ALTER TABLE guard_fixture.orders DROP COLUMN fresh");
    let replaces = |sql: &str| match alter_commands(sql).into_iter().next() {
        Some(AlterTableCmd::AddColumn { replaces, .. }) => replaces,
        other => panic!("{sql}: {other:?}"),
    };
    let r = replaces("ALTER TABLE guard_fixture.orders ADD COLUMN note varchar(100)").expect("note was dropped in this transaction");
    assert_eq!(r.type_name, "character varying(50)");
    assert!(!r.same_statement);
    assert_eq!(replaces("ALTER TABLE guard_fixture.orders ADD COLUMN fresh text"), None);
    assert_eq!(replaces("ALTER TABLE guard_fixture.orders ADD COLUMN other text"), None);
    // Both subcommands in one ALTER TABLE.
    let cmds = alter_commands("ALTER TABLE guard_fixture.orders DROP COLUMN quantity, ADD COLUMN quantity bigint");
    assert!(matches!(&cmds[1], AlterTableCmd::AddColumn { replaces: Some(r), .. } if r.same_statement && r.type_name == "integer"), "{cmds:?}");
    // A drop rolled back (here in a subtransaction, as ROLLBACK TO SAVEPOINT does) is no drop.
    let dropped = unsafe {
        crate::subxact::run(crate::subxact::OnSuccess::RollBack, || Spi::run("ALTER TABLE guard_fixture.orders DROP COLUMN status").expect("drop"))
    };
    assert!(dropped.is_ok());
    // The column is still there: adding it again is PostgreSQL's own error, not a replacement.
    let again = alter_commands("ALTER TABLE guard_fixture.orders ADD COLUMN status text");
    assert!(matches!(again.as_slice(), [AlterTableCmd::Other]), "{again:?}");
    allowed("SET LOCAL pg_migration_guard.mode = enforce");
    let f = rejected("ALTER TABLE guard_fixture.orders ADD COLUMN note varchar(100)", "changing-column-type");
    assert!(f.message.contains("would lose every value of the note dropped earlier in this transaction"), "{f:?}");
}

// REFRESH ... WITH NO DATA then REFRESH in one transaction: the view is unpopulated only for
// this transaction; readers wait for the rebuild.
#[pg_test]
fn refresh_after_with_no_data_in_the_same_transaction_is_rejected() {
    allowed("REFRESH MATERIALIZED VIEW guard_fixture.sales_by_status WITH NO DATA");
    let f = rejected("REFRESH MATERIALIZED VIEW guard_fixture.sales_by_status", "require-concurrent-refresh");
    assert!(f.detail.contains("unpopulated only in this transaction"), "{f:?}");
}

// Statements whose objects do not exist, or that PostgreSQL refuses, are not judged, so that
// PostgreSQL's own error reaches the client; renames and drops of what is not a table column
// are not flagged.
#[pg_test]
fn what_postgres_refuses_or_does_not_touch_is_not_judged() {
    use crate::model::{AlterTableCmd, Statement};
    assert_eq!(facts_of("REINDEX SCHEMA no_such_schema"), Statement::Other);
    assert_eq!(facts_of("REINDEX DATABASE template1"), Statement::Other);
    assert_eq!(facts_of("ALTER TABLE guard_fixture.orders_status_idx RENAME TO orders_status_idx2"), Statement::Other);
    assert_eq!(facts_of("ALTER TABLE guard_fixture.sales_by_status RENAME TO sales"), Statement::Other);
    assert_eq!(facts_of("ALTER TABLE guard_fixture.orders RENAME COLUMN no_such TO x"), Statement::Other);
    assert!(matches!(facts_of("ALTER TABLE guard_fixture.orders RENAME TO orders2"), Statement::RenameTable { .. }));
    for sql in [
        "ALTER TABLE guard_fixture.orders DROP COLUMN IF EXISTS no_such",
        "ALTER TABLE guard_fixture.orders DROP COLUMN xmin",
        "ALTER TABLE guard_fixture.sales_by_status DROP COLUMN n",
        "ALTER TABLE guard_fixture.orders SET TABLESPACE no_such_tablespace",
        "ALTER TABLE guard_fixture.orders SET TABLESPACE pg_global",
    ] {
        assert!(alter_commands(sql).iter().all(|c| *c == AlterTableCmd::Other), "{sql}");
    }
    for sql in [
        "ALTER TABLE guard_fixture.orders ADD CONSTRAINT x_fk FOREIGN KEY (customer_id) REFERENCES guard_fixture.no_such (id)",
        "ALTER TABLE guard_fixture.orders ADD CONSTRAINT x_fk FOREIGN KEY (no_such) REFERENCES guard_fixture.customers (id)",
        "ALTER TABLE guard_fixture.orders ADD CONSTRAINT x_key UNIQUE (no_such)",
        "ALTER TABLE guard_fixture.orders ADD COLUMN x guard_fixture.no_such_type",
        "ALTER TABLE guard_fixture.orders ADD COLUMN status text DEFAULT random()::text",
        "ALTER TABLE guard_fixture.orders ALTER COLUMN quantity TYPE guard_fixture.no_such_type",
    ] {
        assert!(alter_commands(sql).iter().all(|c| *c == AlterTableCmd::Other), "{sql}");
    }
    // A key on a column the same statement adds is judged.
    assert!(alter_commands("ALTER TABLE guard_fixture.orders ADD COLUMN code text, ADD CONSTRAINT code_key UNIQUE (code)")
        .iter()
        .any(|c| matches!(c, AlterTableCmd::AddUnique { .. })));
    assert_eq!(facts_of("CREATE INDEX orders_x_idx ON guard_fixture.orders (no_such)"), Statement::Other);
    assert_eq!(facts_of("CREATE INDEX orders_status_idx ON guard_fixture.orders (quantity)"), Statement::Other);
    assert_eq!(facts_of("CLUSTER guard_fixture.orders USING no_such_idx"), Statement::Other);
    assert_eq!(facts_of("CLUSTER guard_fixture.orders"), Statement::Other);
    assert_eq!(facts_of("DROP INDEX guard_fixture.orders_status_idx, guard_fixture.no_such_idx"), Statement::Other);
    // Drops of other objects are not read as relation names.
    assert_eq!(facts_of("DROP SCHEMA IF EXISTS no_such_schema, guard_fixture CASCADE"), Statement::Other);
    assert_eq!(facts_of("DROP TYPE IF EXISTS guard_fixture.no_such_type"), Statement::Other);
    assert!(matches!(facts_of("DROP INDEX IF EXISTS guard_fixture.orders_status_idx, guard_fixture.no_such_idx"), Statement::DropIndex(_)));
    assert_eq!(facts_of("ALTER INDEX ALL IN TABLESPACE pg_default SET TABLESPACE pg_global"), Statement::Other);
    assert_eq!(facts_of("ALTER TABLE ALL IN TABLESPACE pg_default SET TABLESPACE pg_default"), Statement::Other);
    // In mode warn: PostgreSQL's own error, no WARNING of the guard.
    allowed("SET LOCAL pg_migration_guard.mode = warn");
    let f = run("ALTER TABLE guard_fixture.orders DROP COLUMN no_such").expect_err("no such column");
    assert_eq!(f.sqlstate, PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN, "{f:?}");
    let f = run("ALTER TABLE guard_fixture.orders DROP COLUMN xmin").expect_err("system column");
    assert_eq!(f.sqlstate, PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED, "{f:?}");
}

// REINDEX SCHEMA / DATABASE and a bare CLUSTER reach the tables PostgreSQL processes, each
// judged by its own size.
#[pg_test]
fn multi_table_reindex_and_cluster_list_their_tables() {
    use crate::model::Statement;
    let names = |tables: &[crate::model::Relation]| {
        let mut n: Vec<String> = tables.iter().map(|t| t.name.clone()).collect();
        n.sort();
        n
    };
    match facts_of("REINDEX SCHEMA guard_fixture") {
        // Tables and materialized views; not the partitioned guard_fixture.parts and
        // guard_fixture.parted (their partitions are tables of their own).
        Statement::Reindex(r) => assert_eq!(
            names(&r.tables),
            [
                "guard_fixture.app_lines",
                "guard_fixture.customers",
                "guard_fixture.documents",
                "guard_fixture.inh_child",
                "guard_fixture.inh_parent",
                "guard_fixture.order_lines",
                "guard_fixture.orders",
                "guard_fixture.parted_1",
                "guard_fixture.parted_2",
                "guard_fixture.parts_1",
                "guard_fixture.sales_by_status"
            ]
        ),
        other => panic!("{other:?}"),
    }
    assert!(matches!(facts_of("CLUSTER"), Statement::Cluster { table: None, clustered } if clustered.is_empty()));
    allowed("ALTER TABLE guard_fixture.customers CLUSTER ON customers_pkey");
    match facts_of("CLUSTER") {
        Statement::Cluster { table: None, clustered } => assert_eq!(names(&clustered), ["guard_fixture.customers"]),
        other => panic!("{other:?}"),
    }
}

// small_table_threshold accepts what the README documents: up to 2147483647kB; '2TB' is 1 kB
// too much.
#[pg_test]
fn small_table_threshold_range_is_the_documented_one() {
    allowed("SET LOCAL pg_migration_guard.small_table_threshold = '2147483647kB'");
    allowed("SET LOCAL pg_migration_guard.small_table_threshold = '2047GB'");
    let f = run("SET LOCAL pg_migration_guard.small_table_threshold = '2TB'").expect_err("2TB is out of range");
    assert_eq!(f.sqlstate, PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "{f:?}");
}

// ---------------------------------------------------------------------------------------
// check(): a script judged without running it
// ---------------------------------------------------------------------------------------

/// check(script) as `decision[:first rule][@line:col]` per statement, in order.
fn checked(script: &str) -> Vec<String> {
    Spi::connect(|c| {
        c.select(
            "SELECT decision || coalesce(':' || rules[1], '') || coalesce(':' || sqlstate, '') || '@' || line || ':' || col \
             FROM pg_migration_guard.check($1) ORDER BY statement_no",
            None,
            &[script.into()],
        )
        .unwrap()
        .map(|r| r.get::<String>(1).unwrap().unwrap())
        .collect()
    })
}

/// check() runs nothing: the judged statements leave no trace.
#[pg_test]
fn check_judges_without_running() {
    let script = "CREATE TABLE guard_fixture.new_t (id int);\nCREATE INDEX ON guard_fixture.orders (note);\n\
                  ALTER TABLE guard_fixture.orders ADD COLUMN added int;";
    let xid = || Spi::get_one::<String>("SELECT pg_current_xact_id_if_assigned()::text").unwrap();
    let xid_before = xid();
    assert_eq!(
        checked(script),
        ["allowed@1:1", "rejected:require-concurrent-index-creation:55000@2:1", "allowed@3:1"]
    );
    let exists = Spi::get_one::<bool>("SELECT to_regclass('guard_fixture.new_t') IS NOT NULL").unwrap().unwrap();
    let added = Spi::get_one::<i64>("SELECT count(*) FROM pg_attribute WHERE attrelid = 'guard_fixture.orders'::regclass AND attname = 'added'")
        .unwrap()
        .unwrap();
    assert!(!exists && added == 0);
    // No transaction id: where the test's transaction has none yet (on 18 the test
    // framework's transaction already has one). tests/check/run.sh proves it on every
    // version on a hot standby, where assigning one is an error.
    assert_eq!(xid(), xid_before, "check() assigned a transaction id");
}

/// A table the script creates is new for the statements after it, in its transaction; a
/// column it adds is known; the catalog's sizes apply to the others.
#[pg_test]
fn check_models_created_relations_and_added_columns() {
    assert_eq!(
        checked("BEGIN;\nCREATE TABLE guard_fixture.t2 (id int);\nCREATE INDEX ON guard_fixture.t2 (id);\nALTER TABLE guard_fixture.t2 DROP COLUMN id;\nCOMMIT;"),
        ["allowed@1:1", "allowed@2:1", "allowed@3:1", "allowed@4:1", "allowed@5:1"]
    );
    // Committed (autocommit) and empty: rewrite rules exempt it, breaking changes do not.
    assert_eq!(
        checked("CREATE TABLE guard_fixture.t3 (id int, v text);\nCREATE INDEX ON guard_fixture.t3 (v);\nALTER TABLE guard_fixture.t3 DROP COLUMN v;"),
        ["allowed@1:1", "allowed@2:1", "warned:ban-drop-column@3:1"]
    );
    // An index on a column added earlier: judged on the big table as live.
    assert_eq!(
        checked("ALTER TABLE guard_fixture.orders ADD COLUMN code text;\nCREATE INDEX ON guard_fixture.orders (code);"),
        ["allowed@1:1", "rejected:require-concurrent-index-creation:55000@2:1"]
    );
    // SET NOT NULL of a column added earlier: its facts are not in the catalog.
    let rows = checked("ALTER TABLE guard_fixture.orders ADD COLUMN code text;\nALTER TABLE guard_fixture.orders ALTER COLUMN code SET NOT NULL;");
    assert_eq!(rows[1], "unknown:0A000@2:1");
}

/// BEGIN/COMMIT delimit transactions: NOT VALID + VALIDATE in one is flagged, in two it is
/// not; CREATE INDEX CONCURRENTLY in a block is PostgreSQL's error.
#[pg_test]
fn check_models_transactions() {
    let add = "ALTER TABLE guard_fixture.orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) \
               REFERENCES guard_fixture.customers (id) NOT VALID;";
    let validate = "ALTER TABLE guard_fixture.orders VALIDATE CONSTRAINT orders_customer_fk;";
    assert_eq!(
        checked(&format!("BEGIN;\n{add}\n{validate}\nCOMMIT;")),
        ["allowed@1:1", "allowed@2:1", "rejected:constraint-missing-not-valid:55000@3:1", "allowed@4:1"]
    );
    assert_eq!(checked(&format!("{add}\n{validate}")), ["allowed@1:1", "allowed@2:1"]);
    assert_eq!(
        checked("BEGIN;\nCREATE INDEX CONCURRENTLY ON guard_fixture.orders (note);\nROLLBACK;\nCREATE INDEX CONCURRENTLY ON guard_fixture.orders (note);"),
        ["allowed@1:1", "rejected:25001@2:1", "allowed@3:1", "allowed@4:1"]
    );
}

/// SET in the script applies to what follows (and is reverted afterwards); an annotation is
/// honoured; a name that leads nowhere is PostgreSQL's error; DO is unknown.
#[pg_test]
fn check_settings_annotations_and_unknowns() {
    assert_eq!(
        checked("SET pg_migration_guard.rule_levels = 'require-concurrent-index-creation:warning';\nCREATE INDEX ON guard_fixture.orders (note);"),
        ["allowed@1:1", "warned:require-concurrent-index-creation@2:1"]
    );
    let levels = Spi::get_one::<String>("SELECT current_setting('pg_migration_guard.rule_levels')").unwrap().unwrap_or_default();
    assert_eq!(levels, "", "check() left the script's SET behind");
    assert_eq!(
        checked("-- pg_migration_guard:allow require-concurrent-index-creation reason=\"off-peak\"\nCREATE INDEX ON guard_fixture.orders (note);"),
        ["overridden:require-concurrent-index-creation@2:1"]
    );
    assert_eq!(checked("CREATE INDEX ON guard_fixture.no_such_table (id);"), ["rejected:42P01@1:1"]);
    assert_eq!(checked("DROP TABLE IF EXISTS guard_fixture.no_such_table;"), ["allowed@1:1"]);
    assert_eq!(checked("DO $$ BEGIN END $$;\nCREATE INDEX ON guard_fixture.no_such_table (id);"), ["unknown@1:1", "unknown@2:1"]);
}

// ---------------------------------------------------------------------------------------
// Facts that depend on the PostgreSQL version, each tested on the versions where it holds.
// ---------------------------------------------------------------------------------------

/// PostgreSQL 18: a generated column is VIRTUAL unless STORED is written; adding one is a
/// catalog change, adding a STORED one still rewrites the table.
#[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16", feature = "pg17")))]
#[pg_test]
fn pg18_adding_a_virtual_generated_column_is_instant_a_stored_one_rewrites() {
    allowed("ALTER TABLE guard_fixture.orders ADD COLUMN q_virtual integer GENERATED ALWAYS AS (quantity * 2)");
    allowed("ALTER TABLE guard_fixture.orders ADD COLUMN q_virtual2 integer GENERATED ALWAYS AS (quantity * 3) VIRTUAL");
    rejected(
        "ALTER TABLE guard_fixture.orders ADD COLUMN q_stored integer GENERATED ALWAYS AS (quantity * 2) STORED",
        "adding-field-with-default",
    );
}

/// PostgreSQL 18: ADD CONSTRAINT ... NOT NULL scans like SET NOT NULL; with NOT VALID it does
/// not, and the HINT gives that route; SET NOT NULL on a column whose not-null constraint is
/// NOT VALID validates it (a scan); once VALIDATE CONSTRAINT ran, SET NOT NULL is a no-op.
#[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16", feature = "pg17")))]
#[pg_test]
fn pg18_not_null_constraints_not_valid_then_validate_is_the_safe_route() {
    let f = rejected("ALTER TABLE guard_fixture.orders ADD CONSTRAINT orders_status_nn NOT NULL status", "adding-not-nullable-field");
    assert!(f.hint.contains("ADD CONSTRAINT orders_status_not_null NOT NULL status NOT VALID;"), "{f:?}");
    let f = rejected("ALTER TABLE guard_fixture.orders ALTER COLUMN status SET NOT NULL", "adding-not-nullable-field");
    assert!(f.hint.contains("VALIDATE CONSTRAINT orders_status_not_null;"), "{f:?}");
    allowed("ALTER TABLE guard_fixture.orders ADD CONSTRAINT orders_status_nn NOT NULL status NOT VALID");
    rejected("ALTER TABLE guard_fixture.orders ALTER COLUMN status SET NOT NULL", "adding-not-nullable-field");
    // VALIDATE in the same transaction as the ADD would scan under the ADD's lock: the
    // guard flags that; here it only sets the stage.
    Spi::run("SET LOCAL pg_migration_guard.mode = off; ALTER TABLE guard_fixture.orders VALIDATE CONSTRAINT orders_status_nn; \
              RESET pg_migration_guard.mode")
        .unwrap();
    allowed("ALTER TABLE guard_fixture.orders ALTER COLUMN status SET NOT NULL");
}

/// PostgreSQL 17+: ALTER COLUMN ... SET EXPRESSION rewrites the table for a stored generated
/// column (and, on 18, only changes the catalog for a virtual one).
#[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16")))]
#[pg_test]
fn pg17_set_expression_rewrites_a_stored_generated_column() {
    Spi::run(
        "SET LOCAL pg_migration_guard.mode = off; \
         ALTER TABLE guard_fixture.orders ADD COLUMN q_stored integer GENERATED ALWAYS AS (quantity * 2) STORED; \
         RESET pg_migration_guard.mode",
    )
    .unwrap();
    rejected("ALTER TABLE guard_fixture.orders ALTER COLUMN q_stored SET EXPRESSION AS (quantity * 4)", "table-rewrite");
    #[cfg(not(feature = "pg17"))]
    {
        allowed("ALTER TABLE guard_fixture.orders ADD COLUMN q_virtual integer GENERATED ALWAYS AS (quantity * 2) VIRTUAL");
        allowed("ALTER TABLE guard_fixture.orders ALTER COLUMN q_virtual SET EXPRESSION AS (quantity * 4)");
    }
}

/// PostgreSQL 17+: a role holding MAINTAIN on a table it does not own may VACUUM, CLUSTER,
/// REINDEX or REFRESH it; the lock-queue protection then takes the statement's locks ahead
/// as it does for the owner, and still not those of a statement MAINTAIN does not allow.
#[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16")))]
#[pg_test]
fn pg17_maintain_holders_get_lock_queue_protection_for_what_maintain_allows() {
    let ahead = |sql: &str| -> Vec<String> {
        Spi::connect(|c| {
            c.select(
                "SELECT relation || ' ' || mode || ' ' || taken_ahead FROM pg_migration_guard.lock_targets($1)",
                None,
                &[sql.into()],
            )
            .unwrap()
            .map(|r| r.get::<String>(1).unwrap().unwrap())
            .collect()
        })
    };
    Spi::run("SET LOCAL ROLE guard_app_user").unwrap();
    assert_eq!(ahead("VACUUM FULL guard_fixture.orders"), ["guard_fixture.orders ACCESS EXCLUSIVE false"]);
    Spi::run("RESET ROLE; GRANT MAINTAIN ON guard_fixture.orders TO guard_app_user; SET LOCAL ROLE guard_app_user").unwrap();
    assert_eq!(ahead("VACUUM FULL guard_fixture.orders"), ["guard_fixture.orders ACCESS EXCLUSIVE true"]);
    assert!(ahead("REINDEX TABLE guard_fixture.orders").iter().all(|l| l.ends_with(" true")));
    assert_eq!(ahead("ALTER TABLE guard_fixture.orders ADD COLUMN z integer"), ["guard_fixture.orders ACCESS EXCLUSIVE false"]);
}

/// PostgreSQL 18: ALTER CONSTRAINT ... ENFORCED on a NOT ENFORCED foreign key checks every
/// row under ACCESS EXCLUSIVE; the HINT replaces it by a NOT VALID constraint. Altering an
/// enforced one (its deferrability) scans nothing.
#[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16", feature = "pg17")))]
#[pg_test]
fn pg18_enforcing_a_not_enforced_foreign_key_is_a_scan() {
    Spi::run(
        "SET LOCAL pg_migration_guard.mode = off; \
         ALTER TABLE guard_fixture.orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) \
         REFERENCES guard_fixture.customers (id) NOT ENFORCED; \
         RESET pg_migration_guard.mode",
    )
    .unwrap();
    let f = rejected("ALTER TABLE guard_fixture.orders ALTER CONSTRAINT orders_customer_fk ENFORCED", "constraint-missing-not-valid");
    assert!(f.detail.contains("ACCESS EXCLUSIVE lock on guard_fixture.orders ("), "{f:?}");
    assert!(
        f.hint.contains(
            "ALTER TABLE guard_fixture.orders DROP CONSTRAINT orders_customer_fk, ADD CONSTRAINT orders_customer_fk \
             FOREIGN KEY (customer_id) REFERENCES guard_fixture.customers(id) NOT VALID;"
        ),
        "{f:?}"
    );
    allowed("ALTER TABLE guard_fixture.orders ALTER CONSTRAINT orders_customer_fk NOT ENFORCED");
}

/// PostgreSQL 17+: SET ACCESS METHOD naming the access method the table has, or DEFAULT when
/// that is the default, changes nothing (ATPrepSetAccessMethod), and on a partitioned table it
/// only changes the catalog: the guard passes them. Another access method rewrites the table.
#[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16")))]
#[pg_test]
fn pg17_set_access_method_rewrites_only_when_the_access_method_changes() {
    Spi::run("SET LOCAL pg_migration_guard.small_table_threshold = 0").unwrap();
    let before = relfilenode_of("guard_fixture.orders");
    allowed("ALTER TABLE guard_fixture.orders SET ACCESS METHOD heap");
    allowed("ALTER TABLE guard_fixture.orders SET ACCESS METHOD DEFAULT");
    assert_eq!(relfilenode_of("guard_fixture.orders"), before, "no rewrite");
    allowed("ALTER TABLE guard_fixture.parted SET ACCESS METHOD heap");
    Spi::run("CREATE ACCESS METHOD guard_heap2 TYPE TABLE HANDLER heap_tableam_handler").unwrap();
    rejected("ALTER TABLE guard_fixture.orders SET ACCESS METHOD guard_heap2", "table-rewrite");
}

/// PostgreSQL 18: VACUUM FULL of an inheritance parent rewrites its children too, unless ONLY
/// is written: the parent is as big as what it processes.
#[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16", feature = "pg17")))]
#[pg_test]
fn pg18_vacuum_full_of_an_inheritance_parent_counts_its_children() {
    let size = |sql: &str| match facts_of(sql) {
        crate::model::Statement::VacuumFull { tables, .. } => tables[0].size_bytes,
        other => panic!("{sql}: {other:?}"),
    };
    assert!(size("VACUUM FULL guard_fixture.inh_parent") > 1024 * 1024);
    assert_eq!(size("VACUUM FULL ONLY guard_fixture.inh_parent"), 0);
}

/// PostgreSQL 18: a virtual generated column stores nothing, so changing its type rewrites
/// nothing; a key WITHOUT OVERLAPS is built as an exclusion constraint's GiST index, which no
/// CREATE UNIQUE INDEX can build for USING INDEX: ban-exclusion-constraint flags it, not
/// disallowed-unique-constraint (whose route would give a plain btree key).
#[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16", feature = "pg17")))]
#[pg_test]
fn pg18_virtual_columns_change_type_in_place_and_temporal_keys_are_exclusion_constraints() {
    Spi::run(
        "SET LOCAL pg_migration_guard.mode = off; \
         ALTER TABLE guard_fixture.orders ADD COLUMN q_virtual integer GENERATED ALWAYS AS (quantity * 2) VIRTUAL, \
         ADD COLUMN during tsrange; \
         RESET pg_migration_guard.mode",
    )
    .unwrap();
    let before = relfilenode_of("guard_fixture.orders");
    allowed("ALTER TABLE guard_fixture.orders ALTER COLUMN q_virtual TYPE bigint");
    assert_eq!(relfilenode_of("guard_fixture.orders"), before, "no rewrite");
    let f = rejected(
        "ALTER TABLE guard_fixture.orders ADD CONSTRAINT orders_during_key UNIQUE (id, during WITHOUT OVERLAPS)",
        "ban-exclusion-constraint",
    );
    assert!(!f.hint.contains("CREATE UNIQUE INDEX"), "{f:?}");
}

/// PostgreSQL 18: lock_targets() predicts the strong locks of the new ALTER CONSTRAINT forms
/// as pg_locks shows them: [NO] INHERIT locks the direct children (also under ONLY); ENFORCED
/// creates a foreign key's triggers (SHARE ROW EXCLUSIVE on the referenced table), NOT
/// ENFORCED drops them (ACCESS EXCLUSIVE on it); on a partitioned table every partition is
/// locked too, as for DEFERRABLE and (17+) ADD GENERATED AS IDENTITY. VALIDATE of a NOT VALID
/// not-null constraint reaches the partitions.
#[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16", feature = "pg17")))]
#[pg_test]
fn pg18_alter_constraint_lock_targets_match_the_locks_postgres_takes() {
    Spi::run("SET LOCAL pg_migration_guard.lock_timeout_policy = off").unwrap();
    Spi::run("SET LOCAL client_min_messages = error").unwrap();
    Spi::run(
        "SET LOCAL pg_migration_guard.mode = off; \
         ALTER TABLE ONLY guard_fixture.inh_parent ADD CONSTRAINT inh_parent_a_nn NOT NULL a NO INHERIT; \
         ALTER TABLE guard_fixture.orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) \
         REFERENCES guard_fixture.customers (id) NOT ENFORCED; \
         ALTER TABLE guard_fixture.parted ADD CONSTRAINT parted_k_fk FOREIGN KEY (k) REFERENCES guard_fixture.customers (id); \
         ALTER TABLE guard_fixture.parted ADD CONSTRAINT parted_v_nn NOT NULL v NOT VALID; \
         ALTER TABLE guard_fixture.parted ALTER COLUMN k SET NOT NULL",
    )
    .unwrap();
    // The locks PostgreSQL 18.6 takes for each (read from pg_locks after the statement, with
    // the setup above committed beforehand: inside this test's one transaction the setup's
    // own locks would hide them).
    let f = |names: &[&str]| names.iter().map(|n| format!("guard_fixture.{n}")).collect::<Vec<_>>();
    let cases: [(&str, Vec<String>); 7] = [
        (
            "ALTER TABLE guard_fixture.inh_parent ALTER CONSTRAINT inh_parent_a_nn INHERIT",
            f(&["inh_child ACCESS EXCLUSIVE", "inh_parent ACCESS EXCLUSIVE"]),
        ),
        (
            "ALTER TABLE ONLY guard_fixture.inh_parent ALTER CONSTRAINT inh_parent_a_nn INHERIT",
            f(&["inh_child ACCESS EXCLUSIVE", "inh_parent ACCESS EXCLUSIVE"]),
        ),
        (
            "ALTER TABLE guard_fixture.orders ALTER CONSTRAINT orders_customer_fk ENFORCED",
            f(&["customers SHARE ROW EXCLUSIVE", "orders ACCESS EXCLUSIVE"]),
        ),
        ("ALTER TABLE guard_fixture.orders ALTER CONSTRAINT orders_customer_fk NOT ENFORCED", f(&["orders ACCESS EXCLUSIVE"])),
        (
            "ALTER TABLE guard_fixture.parted ALTER CONSTRAINT parted_k_fk NOT ENFORCED",
            f(&["customers ACCESS EXCLUSIVE", "parted ACCESS EXCLUSIVE", "parted_1 ACCESS EXCLUSIVE", "parted_2 ACCESS EXCLUSIVE"]),
        ),
        (
            "ALTER TABLE guard_fixture.parted ALTER CONSTRAINT parted_k_fk DEFERRABLE",
            f(&["parted ACCESS EXCLUSIVE", "parted_1 ACCESS EXCLUSIVE", "parted_2 ACCESS EXCLUSIVE"]),
        ),
        (
            "ALTER TABLE guard_fixture.parted ALTER COLUMN k ADD GENERATED ALWAYS AS IDENTITY",
            f(&["parted ACCESS EXCLUSIVE", "parted_1 ACCESS EXCLUSIVE", "parted_2 ACCESS EXCLUSIVE"]),
        ),
    ];
    for (sql, taken) in cases {
        assert_eq!(predicted_locks(sql), taken, "{sql}");
    }
    assert_eq!(
        all_predicted("ALTER TABLE guard_fixture.parted VALIDATE CONSTRAINT parted_v_nn"),
        [
            "guard_fixture.parted SHARE UPDATE EXCLUSIVE",
            "guard_fixture.parted_1 SHARE UPDATE EXCLUSIVE",
            "guard_fixture.parted_2 SHARE UPDATE EXCLUSIVE"
        ]
    );
}

/// PostgreSQL 16+: REINDEX DATABASE leaves the system catalogs out (REINDEX SYSTEM does them),
/// so the guard measures only the tables it reindexes.
#[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15")))]
#[pg_test]
fn pg16_reindex_database_leaves_the_system_catalogs_out() {
    let names = |sql: &str| match facts_of(sql) {
        crate::model::Statement::Reindex(r) => r.tables.iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
        other => panic!("{sql}: {other:?}"),
    };
    let database = names("REINDEX DATABASE");
    assert!(database.iter().any(|n| n == "guard_fixture.orders"), "{database:?}");
    assert!(!database.iter().any(|n| n.starts_with("pg_catalog.")), "{database:?}");
    assert!(names("REINDEX SYSTEM").iter().any(|n| n == "pg_catalog.pg_class"));
}

#[pg_test]
fn relations_size_measures_like_the_judging_and_skips_missing_names() {
    let (found, bytes, rows) = Spi::get_three::<i32, i64, f64>(
        "SELECT found, bytes, estimated_rows FROM pg_migration_guard.relations_size(\
         ARRAY['guard_fixture.orders', 'guard_fixture.documents', 'guard_fixture.no_such_table'])",
    )
    .expect("SPI");
    assert_eq!(found, Some(2));
    // Main fork plus TOAST, as pg_relation_size of each fork: what the guard judges.
    let expected = Spi::get_one::<i64>(
        "SELECT sum(pg_relation_size(c.oid) + COALESCE(pg_relation_size(NULLIF(c.reltoastrelid, 0)), 0))::int8 \
         FROM pg_class c WHERE c.oid IN ('guard_fixture.orders'::regclass, 'guard_fixture.documents'::regclass)",
    );
    assert_eq!(bytes, expected.expect("SPI"));
    let reltuples = Spi::get_one::<f64>(
        "SELECT sum(greatest(reltuples, 0))::float8 FROM pg_class \
         WHERE oid IN ('guard_fixture.orders'::regclass, 'guard_fixture.documents'::regclass) AND reltuples >= 0",
    )
    .expect("SPI");
    assert_eq!(rows, reltuples);
    assert_eq!(Spi::get_one::<i32>("SELECT found FROM pg_migration_guard.relations_size('{}')"), Ok(Some(0)));
}

/// Without Citus installed, citus_internal = trust changes nothing: a session that calls
/// itself `citus_internal gpid=N` is judged as any other, and sizes are the local ones.
#[pg_test]
fn without_citus_an_internal_application_name_is_judged_as_any_other() {
    allowed("SET LOCAL pg_migration_guard.citus_internal = trust");
    allowed("SET LOCAL application_name = 'citus_internal gpid=10000000001'");
    let f = rejected("CREATE INDEX orders_quantity_idx ON guard_fixture.orders (quantity)", "require-concurrent-index-creation");
    assert!(!f.detail.contains("shard"), "{f:?}");
    allowed("SET LOCAL application_name = 'citus_rebalancer gpid=10000000001'");
    rejected("CREATE INDEX orders_quantity_idx ON guard_fixture.orders (quantity)", "require-concurrent-index-creation");
}

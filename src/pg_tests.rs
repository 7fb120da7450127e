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
FROM generate_series(1, 20000) g;
CREATE INDEX orders_status_idx ON guard_fixture.orders (status);
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
    unsafe {
        let oldcxt = pg_sys::CurrentMemoryContext;
        let oldowner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(oldcxt);
        let result = PgTryBuilder::new(|| {
            Spi::run(sql).expect("SPI");
            Ok(())
        })
        .catch_others(|e| match e {
            pg_sys::panic::CaughtError::PostgresError(r)
            | pg_sys::panic::CaughtError::ErrorReport(r)
            | pg_sys::panic::CaughtError::RustPanic { ereport: r, .. } => Err(Failure {
                sqlstate: r.sql_error_code(),
                message: r.message().to_string(),
                detail: r.detail().unwrap_or_default().to_string(),
                hint: r.hint().unwrap_or_default().to_string(),
            }),
        })
        .execute();
        pg_sys::MemoryContextSwitchTo(oldcxt);
        if result.is_ok() {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(oldcxt);
        pg_sys::CurrentResourceOwner = oldowner;
        result
    }
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

fn audit_rows(decision: &str) -> i64 {
    Spi::get_one_with_args::<i64>(
        "SELECT count(*) FROM pg_migration_guard.audit_log WHERE decision = $1",
        &[decision.into()],
    )
    .unwrap()
    .unwrap()
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
    allowed("ALTER TABLE guard_fixture.orders VALIDATE CONSTRAINT orders_customer_fk");
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
    assert!(f.hint.contains("CHECK (status IS NOT NULL) NOT VALID;"), "{f:?}");
    // The safe recipe from the hint runs, step by step, and SET NOT NULL is then instant.
    allowed("ALTER TABLE guard_fixture.orders ADD CONSTRAINT orders_status_not_null CHECK (status IS NOT NULL) NOT VALID");
    // A NOT VALID check proves nothing yet.
    rejected("ALTER TABLE guard_fixture.orders ALTER COLUMN status SET NOT NULL", "adding-not-nullable-field");
    allowed("ALTER TABLE guard_fixture.orders VALIDATE CONSTRAINT orders_status_not_null");
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
    assert_eq!(audit_rows("rejected"), 0);
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
    let row = Spi::get_two::<String, Vec<String>>(
        "SELECT command_tag, rules FROM pg_migration_guard.audit_log WHERE decision = 'warned' ORDER BY id DESC LIMIT 1",
    )
    .unwrap();
    assert_eq!(row.0.as_deref(), Some("CREATE INDEX"));
    assert_eq!(row.1, Some(vec!["require-concurrent-index-creation".to_string()]));
}

#[pg_test]
fn off_mode_runs_unjudged_and_unaudited() {
    allowed("SET LOCAL pg_migration_guard.mode = off");
    let before = Spi::get_one::<i64>("SELECT count(*) FROM pg_migration_guard.audit_log").unwrap().unwrap();
    allowed("CREATE INDEX orders_quantity_idx ON guard_fixture.orders (quantity)");
    let after = Spi::get_one::<i64>("SELECT count(*) FROM pg_migration_guard.audit_log").unwrap().unwrap();
    assert_eq!(before, after);
}

#[pg_test]
fn allowed_ddl_is_audited_and_non_ddl_is_not() {
    let before = Spi::get_one::<i64>("SELECT count(*) FROM pg_migration_guard.audit_log").unwrap().unwrap();
    allowed("SET LOCAL application_name = 'guard-test'");
    allowed("ALTER TABLE guard_fixture.orders ADD COLUMN shipped_at timestamptz");
    allowed("SHOW pg_migration_guard.mode");
    allowed("SELECT 1");
    let after = Spi::get_one::<i64>("SELECT count(*) FROM pg_migration_guard.audit_log").unwrap().unwrap();
    assert_eq!(after, before + 1);
    let (stmt, tag) = Spi::get_two::<String, String>(
        "SELECT statement, command_tag FROM pg_migration_guard.audit_log ORDER BY id DESC LIMIT 1",
    )
    .unwrap();
    assert_eq!(stmt.as_deref(), Some("ALTER TABLE guard_fixture.orders ADD COLUMN shipped_at timestamptz"));
    assert_eq!(tag.as_deref(), Some("ALTER TABLE"));
    let (decision, app) = Spi::get_two::<String, String>(
        "SELECT decision, application_name FROM pg_migration_guard.audit_log ORDER BY id DESC LIMIT 1",
    )
    .unwrap();
    assert_eq!(decision.as_deref(), Some("allowed"));
    assert_eq!(app.as_deref(), Some("guard-test"));
}

#[pg_test]
fn non_superuser_cannot_change_mode_but_is_still_audited() {
    allowed("SET LOCAL ROLE guard_app_user");
    let f = run("SET pg_migration_guard.mode = off").expect_err("non-superuser SET must fail");
    assert_eq!(f.sqlstate, PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE, "{f:?}");
    assert!(f.message.contains("pg_migration_guard.mode"), "{f:?}");
    // Its DDL is judged and recorded although it has no privilege on the audit table.
    allowed("CREATE TABLE guard_fixture.app_table (id int)");
    let f = run("SELECT count(*) FROM pg_migration_guard.audit_log").expect_err("no read access");
    assert_eq!(f.sqlstate, PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE);
    allowed("RESET ROLE");
    let role = Spi::get_one::<String>("SELECT session_role::text FROM pg_migration_guard.audit_log ORDER BY id DESC LIMIT 1");
    assert!(role.unwrap().is_some());
    let stmt = Spi::get_one::<String>("SELECT statement FROM pg_migration_guard.audit_log ORDER BY id DESC LIMIT 1");
    assert_eq!(stmt, Ok(Some("CREATE TABLE guard_fixture.app_table (id int)".to_string())));
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
fn library_reports_it_is_preloaded() {
    assert_eq!(Spi::get_one::<bool>("SELECT pg_migration_guard.is_preloaded()"), Ok(Some(true)));
}

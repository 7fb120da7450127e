//! The guard on a real cluster, over real connections: the acceptance scenarios on the
//! 1M-row `shop_order` table (examples/seed.sql), statements that cross transactions
//! (CREATE INDEX CONCURRENTLY), multi-statement query strings, the server log, and
//! coexistence with pg_stat_statements in both preload orders.

use pg_migration_guard_integration::*;

fn audit_count(c: &mut Client, statement: &str, decision: &str) -> i64 {
    c.query_one("SELECT count(*) FROM pg_migration_guard.audit_log WHERE statement = $1 AND decision = $2", &[&statement, &decision])
        .unwrap()
        .get(0)
}

#[test]
fn million_row_table_is_protected_and_safe_forms_run() {
    let mut c = connect("A");
    let rows: i64 = c.query_one("SELECT count(*) FROM shop_order", &[]).unwrap().get(0);
    assert!(rows >= 1_000_000, "the data set must have at least 1M orders, has {rows}");
    c.batch_execute(
        "DROP INDEX IF EXISTS acc_placed_at_idx; \
         ALTER TABLE shop_order DROP CONSTRAINT IF EXISTS acc_customer_fk; \
         ALTER TABLE shop_order DROP COLUMN IF EXISTS acc_note",
    )
    .unwrap();

    // Plain CREATE INDEX: rejected, with the CONCURRENTLY form in the HINT.
    let e = expect_db_error(c.execute("CREATE INDEX acc_placed_at_idx ON shop_order (placed_at)", &[]));
    assert_eq!(e.code(), &REJECTED);
    assert!(e.message().starts_with("require-concurrent-index-creation: "), "{e:?}");
    assert!(e.detail().unwrap().contains("SHARE lock on public.shop_order ("), "{e:?}");
    assert!(e.detail().unwrap().contains("MB, about 1000000 rows)"), "{e:?}");
    assert_eq!(e.hint().unwrap().lines().last(), Some("CREATE INDEX CONCURRENTLY acc_placed_at_idx ON shop_order (placed_at);"));

    // CREATE INDEX CONCURRENTLY runs (it commits internally: needs a real connection) and
    // its audit row is committed with it.
    let cic = "CREATE INDEX CONCURRENTLY acc_placed_at_idx ON shop_order (placed_at)";
    let before = audit_count(&mut c, cic, "allowed");
    c.batch_execute(cic).unwrap();
    let valid: bool = c.query_one("SELECT indisvalid FROM pg_index WHERE indexrelid = 'acc_placed_at_idx'::regclass", &[]).unwrap().get(0);
    assert!(valid);
    // (rows are written by the audit writer, asynchronously)
    wait_for_count(
        &mut c,
        "SELECT count(*) FROM pg_migration_guard.audit_log WHERE statement = $1 AND decision = 'allowed'",
        &[&cic],
        before + 1,
        std::time::Duration::from_secs(30),
    );

    // A validating foreign key: rejected. The NOT VALID + VALIDATE pair from the HINT runs.
    let e = expect_db_error(
        c.execute("ALTER TABLE shop_order ADD CONSTRAINT acc_customer_fk FOREIGN KEY (customer_id) REFERENCES shop_customer (id)", &[]),
    );
    assert_eq!(e.code(), &REJECTED);
    assert!(e.message().starts_with("constraint-missing-not-valid: "), "{e:?}");
    let hint = e.hint().unwrap().to_string();
    let steps: Vec<&str> = hint.lines().filter(|l| l.starts_with("ALTER TABLE")).collect();
    assert_eq!(steps.len(), 2, "{hint}");
    assert!(steps[0].ends_with("NOT VALID;"), "{hint}");
    assert!(steps[1].contains("VALIDATE CONSTRAINT acc_customer_fk"), "{hint}");
    for step in steps {
        c.batch_execute(step).unwrap();
    }
    let validated: bool = c.query_one("SELECT convalidated FROM pg_constraint WHERE conname = 'acc_customer_fk'", &[]).unwrap().get(0);
    assert!(validated);

    // A nullable column: instant, allowed.
    c.batch_execute("ALTER TABLE shop_order ADD COLUMN acc_note text").unwrap();

    // Every unsafe statement runs on a table created earlier in the same transaction.
    let mut tx = c.transaction().unwrap();
    tx.batch_execute(
        "CREATE TABLE acc_orders_copy AS SELECT * FROM shop_order WHERE id <= 50000; \
         CREATE INDEX ON acc_orders_copy (placed_at); \
         ALTER TABLE acc_orders_copy ADD FOREIGN KEY (customer_id) REFERENCES shop_customer (id); \
         ALTER TABLE acc_orders_copy ADD CHECK (quantity > 0); \
         ALTER TABLE acc_orders_copy ALTER COLUMN status SET NOT NULL; \
         ALTER TABLE acc_orders_copy ALTER COLUMN quantity TYPE bigint; \
         DROP INDEX acc_orders_copy_placed_at_idx",
    )
    .unwrap();
    tx.rollback().unwrap();

    // The same CREATE INDEX sent through DO ... EXECUTE is rejected too.
    let e = expect_db_error(c.batch_execute("DO $$ BEGIN EXECUTE 'CREATE INDEX acc_placed_at_idx2 ON shop_order (placed_at)'; END $$"));
    assert_eq!(e.code(), &REJECTED);
    assert!(e.message().starts_with("require-concurrent-index-creation: "), "{e:?}");

    // (DROP INDEX CONCURRENTLY cannot share a query string with other statements.)
    c.batch_execute("DROP INDEX CONCURRENTLY acc_placed_at_idx").unwrap();
    c.batch_execute("ALTER TABLE shop_order DROP CONSTRAINT acc_customer_fk, DROP COLUMN acc_note").unwrap();
}

#[test]
fn warn_mode_prints_a_warning_and_runs_off_mode_is_silent() {
    let (mut c, notices) = connect_as("A", "postgres", "integration-test");
    let mut tx = c.transaction().unwrap();
    tx.batch_execute("SET LOCAL pg_migration_guard.mode = warn; CREATE INDEX warn_idx ON shop_customer (name)").unwrap();
    let exists: bool = tx.query_one("SELECT to_regclass('warn_idx') IS NOT NULL", &[]).unwrap().get(0);
    assert!(exists);
    {
        let n = notices.lock().unwrap();
        let w = n.iter().find(|n| n.severity() == "WARNING").expect("a WARNING");
        assert!(w.message().starts_with("require-concurrent-index-creation: "), "{w:?}");
        assert!(w.hint().unwrap().contains("CREATE INDEX CONCURRENTLY warn_idx ON shop_customer (name);"));
    }
    tx.rollback().unwrap();
    notices.lock().unwrap().clear();

    let mut tx = c.transaction().unwrap();
    tx.batch_execute("SET LOCAL pg_migration_guard.mode = off; CREATE INDEX off_idx ON shop_customer (name)").unwrap();
    tx.rollback().unwrap();
    assert!(notices.lock().unwrap().is_empty(), "off mode must be silent: {:?}", notices.lock().unwrap());
}

#[test]
fn non_superuser_cannot_turn_the_guard_off() {
    let mut admin = connect("A");
    admin
        .batch_execute(
            "DO $$ BEGIN CREATE ROLE app_user LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
             GRANT CREATE ON SCHEMA public TO app_user",
        )
        .unwrap();
    let (mut app, _) = connect_as("A", "app_user", "app");
    for sql in [
        "SET pg_migration_guard.mode = off",
        "SET pg_migration_guard.mode = warn",
        "SELECT set_config('pg_migration_guard.mode', 'off', false)",
    ] {
        let e = expect_db_error(app.batch_execute(sql));
        assert_eq!(e.code(), &SqlState::INSUFFICIENT_PRIVILEGE, "{sql}: {e:?}");
    }
    // PGOPTIONS at connection time is refused as well.
    let err = Config::new()
        .host("/tmp")
        .port(port("A"))
        .user("app_user")
        .dbname("postgres")
        .options("-c pg_migration_guard.mode=off")
        .connect(NoTls)
        .err()
        .expect("connection with -c pg_migration_guard.mode=off must fail for a non-superuser");
    assert_eq!(err.as_db_error().map(|e| e.code()), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
}

#[test]
fn multi_statement_strings_are_judged_and_recorded_statement_by_statement() {
    let (mut c, _) = connect_as("A", "postgres", "multi-statement-test");
    c.batch_execute("DROP TABLE IF EXISTS ms_probe").unwrap();
    // One simple-protocol query string, three statements, one implicit transaction.
    c.batch_execute("CREATE TABLE ms_probe (a int); CREATE INDEX ms_probe_a_idx ON ms_probe (a); ALTER TABLE ms_probe ADD COLUMN b text")
        .unwrap();
    // DROP TABLE IF EXISTS and the three statements (rows arrive asynchronously).
    wait_for_count(
        &mut c,
        "SELECT count(*) FROM pg_migration_guard.audit_log WHERE application_name = 'multi-statement-test'",
        &[],
        4,
        std::time::Duration::from_secs(30),
    );
    let rows = c
        .query(
            "SELECT statement, command_tag, decision FROM pg_migration_guard.audit_log \
             WHERE application_name = 'multi-statement-test' ORDER BY id DESC LIMIT 3",
            &[],
        )
        .unwrap();
    let got: Vec<(String, String, String)> = rows.iter().rev().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(
        got,
        vec![
            ("CREATE TABLE ms_probe (a int)".into(), "CREATE TABLE".into(), "allowed".into()),
            ("CREATE INDEX ms_probe_a_idx ON ms_probe (a)".into(), "CREATE INDEX".into(), "allowed".into()),
            ("ALTER TABLE ms_probe ADD COLUMN b text".into(), "ALTER TABLE".into(), "allowed".into()),
        ]
    );

    // Second statement rejected: the whole implicit transaction rolls back, the first
    // statement's change with it.
    let e = expect_db_error(
        c.batch_execute("ALTER TABLE shop_order ADD COLUMN ms_flag int; CREATE INDEX ms_flag_idx ON shop_order (ms_flag); SELECT 1"),
    );
    assert_eq!(e.code(), &REJECTED);
    let has_col: bool = c
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_attribute WHERE attrelid = 'shop_order'::regclass AND attname = 'ms_flag' AND NOT attisdropped)",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(!has_col);
    c.batch_execute("DROP TABLE ms_probe").unwrap();
}

#[test]
fn rejections_are_written_to_the_server_log() {
    let mut c = connect("A");
    let marker = format!("log_probe_{}", std::process::id());
    let sql = format!("CREATE INDEX {marker} ON shop_order (total)");
    // Sent with a statement before it: the line carries just the rejected statement.
    expect_db_error(c.batch_execute(&format!("SELECT 1; {sql}")));
    let entries = server_log_entries("A");
    let entry = entries
        .iter()
        .find(|e| {
            e.head.starts_with("LOG:  pg_migration_guard: rejected CREATE INDEX: require-concurrent-index-creation: ")
                && e.text.contains(&marker)
        })
        .unwrap_or_else(|| panic!("no LOG line for the rejection of {sql}"));
    assert!(entry.head.ends_with(&format!("; statement: {sql}")), "{}", entry.text);
    // One line: no DETAIL.
    assert!(!entry.text.contains("DETAIL:"), "{}", entry.text);
    // One copy of the statement: no STATEMENT line with the whole query string (the ERROR
    // that follows has one, as every ERROR does).
    assert!(!entry.text.contains("STATEMENT:"), "{}", entry.text);
}

#[test]
fn pg_stat_statements_and_the_guard_work_in_both_preload_orders() {
    for cluster in ["A", "B"] {
        let mut c = connect(cluster);
        c.batch_execute(
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; \
             CREATE EXTENSION IF NOT EXISTS pg_migration_guard; \
             DROP TABLE IF EXISTS pgss_probe; \
             SELECT pg_stat_statements_reset()",
        )
        .unwrap();
        c.batch_execute("CREATE TABLE pgss_probe (a int)").unwrap();
        c.batch_execute("INSERT INTO pgss_probe SELECT generate_series(1, 1000)").unwrap();
        c.batch_execute("ALTER TABLE pgss_probe ADD COLUMN b int").unwrap();
        c.batch_execute("ALTER TABLE pgss_probe ADD COLUMN c int").unwrap();
        // The guard still judges: pgss_probe now exists outside this transaction (and is
        // judged whatever its size with the threshold at 0).
        c.batch_execute("SET pg_migration_guard.small_table_threshold = 0").unwrap();
        let e = expect_db_error(c.batch_execute("CREATE INDEX pgss_probe_idx ON pgss_probe (a)"));
        assert_eq!(e.code(), &REJECTED, "cluster {cluster}");
        // pg_stat_statements still counts utility statements.
        let calls: i64 = c
            .query_one(
                "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements WHERE query LIKE 'ALTER TABLE pgss_probe ADD COLUMN%'",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(calls, 2, "cluster {cluster}");
        let created: i64 = c
            .query_one(
                "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements WHERE query = 'CREATE TABLE pgss_probe (a int)'",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(created, 1, "cluster {cluster}");
        c.batch_execute("DROP TABLE pgss_probe").unwrap();
    }
}

#[test]
fn create_extension_without_preload_fails_with_a_hint() {
    let mut c = connect("C");
    let e = expect_db_error(c.batch_execute("CREATE EXTENSION pg_migration_guard"));
    assert_eq!(e.code(), &SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE, "{e:?}");
    assert!(e.message().contains("shared_preload_libraries"), "{e:?}");
    assert!(e.hint().unwrap().contains("shared_preload_libraries"), "{e:?}");
    // Nothing was left behind.
    let n: i64 = c.query_one("SELECT count(*) FROM pg_namespace WHERE nspname = 'pg_migration_guard'", &[]).unwrap().get(0);
    assert_eq!(n, 0);
}

#[test]
fn errors_of_utility_statements_keep_their_context_and_position() {
    // Every utility statement passes through the hook; its errors must reach the client
    // exactly as PostgreSQL raised them.
    let mut c = connect("A");
    let e = expect_db_error(c.batch_execute("DO $$ BEGIN PERFORM 1 / 0; END $$"));
    assert_eq!(e.code(), &SqlState::DIVISION_BY_ZERO);
    assert!(e.where_().is_some_and(|w| w.contains("PL/pgSQL")), "CONTEXT lost: {e:?}");
    c.batch_execute("DROP TABLE IF EXISTS ctx_probe; CREATE TABLE ctx_probe (a int CHECK (a > 0))").unwrap();
    let e = expect_db_error(c.batch_execute("COPY ctx_probe FROM PROGRAM 'printf \"1\\n2\\n-3\\n\"'"));
    assert_eq!(e.code(), &SqlState::CHECK_VIOLATION);
    assert_eq!(e.constraint(), Some("ctx_probe_a_check"), "{e:?}");
    assert!(e.where_().is_some_and(|w| w.contains("line 3")), "COPY context lost: {e:?}");
    c.batch_execute("DROP TABLE ctx_probe").unwrap();
}

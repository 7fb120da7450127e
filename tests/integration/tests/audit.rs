//! The durable audit over real connections: every decision lands in
//! `pg_migration_guard.audit_log` — written asynchronously by the audit writer, outside the
//! statement's transaction, so rejected statements and aborted transactions are recorded
//! too — with who sent it, from where, in which transaction, and what it actually did
//! (rewrite, locks, its own error). The `audit` view adds the transaction's fate. Every
//! decision is also one LOG line. Under load (32 sessions) and when the writer is killed,
//! no acknowledged statement loses or duplicates its row.
//!
//! The cluster is shared with the other test files: each test works in schema `audit_t`
//! (recreated at its start) and finds its rows by unique application names or statement
//! texts, never assuming the audit table is otherwise empty.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use pg_migration_guard_integration::*;

const INDEX_RULE: &str = "require-concurrent-index-creation";

/// Recreates schema `audit_t` with the guard off for this one setup string: `audit_t.big`
/// (60000 rows, about 2 MB: above the 1 MB small-table threshold, so `CREATE INDEX` on it is
/// rejected) and `audit_t.small` (10 rows: size-based rules never fire on it).
fn setup(admin: &mut Client) {
    admin
        .batch_execute(
            "SET pg_migration_guard.mode = off; \
             DROP SCHEMA IF EXISTS audit_t CASCADE; \
             CREATE SCHEMA audit_t; \
             CREATE TABLE audit_t.big AS SELECT g AS id, g % 100 AS v FROM generate_series(1, 60000) g; \
             CREATE TABLE audit_t.small (a int, v int); \
             INSERT INTO audit_t.small SELECT g, g FROM generate_series(1, 10) g; \
             RESET pg_migration_guard.mode",
        )
        .unwrap();
    let size: i64 = admin.query_one("SELECT pg_relation_size('audit_t.big')", &[]).unwrap().get(0);
    assert!(size > 1024 * 1024, "audit_t.big must be above the 1MB small-table threshold, is {size} bytes");
}

fn table_exists(c: &mut Client, name: &str) -> bool {
    c.query_one("SELECT to_regclass($1) IS NOT NULL", &[&name]).unwrap().get(0)
}

/// A rejected statement's row survives the ROLLBACK of its transaction, and so does the row
/// of the allowed statement before it; the view shows both transactions as aborted. A
/// rejected statement sent on its own (no transaction id yet) still gets an xid.
#[test]
fn rejected_statement_is_audited_after_its_transaction_aborted() {
    let mut admin = connect("A");
    setup(&mut admin);
    let tag = unique_tag();
    let app = format!("audit-abort-{tag}");
    let (mut c, _) = connect_as("A", "postgres", &app);
    let pid = backend_pid(&mut c);

    let create = format!("CREATE TABLE audit_t.abort_{tag} (a int)");
    let index = format!("CREATE INDEX abort_{tag}_idx ON audit_t.big (v)");
    let mut tx = c.transaction().unwrap();
    tx.batch_execute(&create).unwrap();
    let e = expect_rejected(tx.batch_execute(&index), INDEX_RULE);
    tx.rollback().unwrap();
    assert!(!table_exists(&mut admin, &format!("audit_t.abort_{tag}")), "the ROLLBACK must undo the CREATE TABLE");

    let rows = wait_for_audit(&mut admin, "application_name = $1", &[&app], 2);
    let created = row_for(&rows, &create);
    let rejected = row_for(&rows, &index);
    assert_eq!(created.decision, "allowed", "{created:#?}");
    assert_eq!(created.command_tag, "CREATE TABLE");
    assert_eq!(created.transaction_status.as_deref(), Some("aborted"), "{created:#?}");

    assert_eq!(rejected.decision, "rejected", "{rejected:#?}");
    assert_eq!(rejected.command_tag, "CREATE INDEX");
    assert_eq!(rejected.rules(), vec![INDEX_RULE.to_string()]);
    assert_eq!(rejected.message.as_deref(), Some(e.message()), "the row must carry the message the client saw");
    assert_eq!(rejected.transaction_status.as_deref(), Some("aborted"), "{rejected:#?}");
    assert!(rejected.xid.is_some(), "{rejected:#?}");
    assert_eq!(rejected.xid, created.xid, "both statements ran in one transaction");
    assert_eq!(rejected.rewrote_table, None, "a rejected statement did not complete: {rejected:#?}");
    assert_eq!(rejected.locks, None, "a rejected statement did not complete: {rejected:#?}");
    assert_eq!(rejected.error_sqlstate, None, "the statement itself did not fail, the guard stopped it");
    for r in [created, rejected] {
        assert_eq!(r.backend_pid, pid);
        assert_eq!(r.session_role, "postgres");
        assert_eq!(r.effective_role, "postgres");
        assert_eq!(r.database, "postgres");
    }

    // Alone, in autocommit: no transaction id had been assigned before the guard stopped it.
    let alone = format!("CREATE INDEX alone_{tag}_idx ON audit_t.big (v)");
    expect_rejected(c.batch_execute(&alone), INDEX_RULE);
    let rows = wait_for_audit(&mut admin, "application_name = $1 AND statement = $2", &[&app, &alone], 1);
    assert_eq!(rows[0].decision, "rejected");
    assert!(rows[0].xid.is_some(), "the guard assigns an xid to a rejected statement: {:#?}", rows[0]);
    assert_eq!(rows[0].transaction_status.as_deref(), Some("aborted"));
    assert_ne!(rows[0].xid, rejected.xid);
}

/// One simple-protocol query string of three statements, the third rejected: three rows,
/// each with its own statement text and decision (allowed, allowed, rejected), all in the
/// same transaction, which aborted — the first two statements' changes are gone.
#[test]
fn multi_statement_string_with_the_third_rejected_records_three_decisions() {
    let mut admin = connect("A");
    setup(&mut admin);
    let tag = unique_tag();
    let app = format!("audit-multi-{tag}");
    let (mut c, _) = connect_as("A", "postgres", &app);

    let first = format!("CREATE TABLE audit_t.ms_{tag} (a int)");
    let second = format!("COMMENT ON TABLE audit_t.ms_{tag} IS 'second of three statements'");
    let third = format!("CREATE INDEX ms_{tag}_idx ON audit_t.big (v)");
    let e = expect_rejected(c.batch_execute(&format!("{first}; {second}; {third}")), INDEX_RULE);
    assert!(!table_exists(&mut admin, &format!("audit_t.ms_{tag}")), "the implicit transaction must have rolled back");

    let rows = wait_for_audit(&mut admin, "application_name = $1", &[&app], 3);
    let expected = [(&first, "CREATE TABLE", "allowed"), (&second, "COMMENT", "allowed"), (&third, "CREATE INDEX", "rejected")];
    for (statement, command_tag, decision) in expected {
        let r = row_for(&rows, statement);
        assert_eq!((r.command_tag.as_str(), r.decision.as_str()), (command_tag, decision), "{r:#?}");
        assert_eq!(r.transaction_status.as_deref(), Some("aborted"), "{r:#?}");
        assert!(r.xid.is_some(), "{r:#?}");
        assert_eq!(r.xid, rows[0].xid, "one implicit transaction for the whole string: {rows:#?}");
    }
    let r = row_for(&rows, &third);
    assert_eq!(r.rules(), vec![INDEX_RULE.to_string()]);
    assert_eq!(r.message.as_deref(), Some(e.message()));
    assert!(row_for(&rows, &first).rules().is_empty());
}

/// Rows are written outside the statement's transaction, so they are visible while it is
/// still open ('in progress', with the transaction's own xid), and the view follows the
/// transaction's fate: 'committed' after COMMIT, 'aborted' after ROLLBACK.
#[test]
fn rows_land_while_the_transaction_is_open_and_the_view_follows_its_fate() {
    let mut admin = connect("A");
    setup(&mut admin);
    let tag = unique_tag();
    let app = format!("audit-fate-{tag}");
    let (mut c, _) = connect_as("A", "postgres", &app);

    let kept = format!("CREATE TABLE audit_t.kept_{tag} (a int)");
    let mut tx = c.transaction().unwrap();
    tx.batch_execute(&kept).unwrap();
    let xid: String = tx.query_one("SELECT pg_current_xact_id()::text", &[]).unwrap().get(0);
    let rows = wait_for_audit(&mut admin, "application_name = $1 AND statement = $2", &[&app, &kept], 1);
    assert_eq!(rows[0].xid.as_deref(), Some(xid.as_str()), "{:#?}", rows[0]);
    assert_eq!(rows[0].transaction_status.as_deref(), Some("in progress"), "{:#?}", rows[0]);
    tx.commit().unwrap();
    let rows = audit_rows(&mut admin, "application_name = $1 AND statement = $2", &[&app, &kept]);
    assert_eq!(rows.len(), 1, "committing must not add a row: {rows:#?}");
    assert_eq!(rows[0].transaction_status.as_deref(), Some("committed"));

    let dropped = format!("CREATE TABLE audit_t.dropped_{tag} (a int)");
    let mut tx = c.transaction().unwrap();
    tx.batch_execute(&dropped).unwrap();
    tx.rollback().unwrap();
    let rows = wait_for_audit(&mut admin, "application_name = $1 AND statement = $2", &[&app, &dropped], 1);
    assert_eq!(rows[0].decision, "allowed");
    assert_eq!(rows[0].transaction_status.as_deref(), Some("aborted"));
    assert_ne!(rows[0].xid.as_deref(), Some(xid.as_str()));
}

/// `session_role` is who logged in, `effective_role` the role the statement ran as: they
/// differ after SET ROLE and inside a SECURITY DEFINER function.
#[test]
fn effective_role_differs_from_session_role_after_set_role_and_in_security_definer_functions() {
    let mut admin = connect("A");
    setup(&mut admin);
    ensure_role(&mut admin, "audit_role", "NOLOGIN");
    let tag = unique_tag();
    let app = format!("audit-roles-{tag}");
    admin
        .batch_execute(&format!(
            "GRANT USAGE, CREATE ON SCHEMA audit_t TO audit_role; \
             CREATE FUNCTION audit_t.make_table_{tag}() RETURNS void LANGUAGE plpgsql SECURITY DEFINER \
             AS $f$BEGIN CREATE TABLE audit_t.definer_{tag} (a int); END$f$; \
             ALTER FUNCTION audit_t.make_table_{tag}() OWNER TO audit_role"
        ))
        .unwrap();
    let (mut c, _) = connect_as("A", "postgres", &app);

    let plain = format!("CREATE TABLE audit_t.plain_{tag} (a int)");
    let set_role = format!("CREATE TABLE audit_t.setrole_{tag} (a int)");
    let definer = format!("CREATE TABLE audit_t.definer_{tag} (a int)");
    c.batch_execute(&plain).unwrap();
    c.batch_execute("SET ROLE audit_role").unwrap();
    c.batch_execute(&set_role).unwrap();
    c.batch_execute("RESET ROLE").unwrap();
    c.batch_execute(&format!("SELECT audit_t.make_table_{tag}()")).unwrap();
    let owner: String = admin
        .query_one("SELECT relowner::regrole::text FROM pg_class WHERE oid = $1::text::regclass", &[&format!("audit_t.definer_{tag}")])
        .unwrap()
        .get(0);
    assert_eq!(owner, "audit_role", "the function must have run as its owner");

    let rows = wait_for_audit(&mut admin, "application_name = $1 AND command_tag = 'CREATE TABLE'", &[&app], 3);
    let roles = |s: &str| {
        let r = row_for(&rows, s);
        (r.session_role.clone(), r.effective_role.clone(), r.decision.clone())
    };
    assert_eq!(roles(&plain), ("postgres".into(), "postgres".into(), "allowed".into()));
    assert_eq!(roles(&set_role), ("postgres".into(), "audit_role".into(), "allowed".into()));
    assert_eq!(roles(&definer), ("postgres".into(), "audit_role".into(), "allowed".into()));
}

/// `client_addr` is the client's address over TCP and NULL over the Unix socket.
#[test]
fn client_addr_is_set_over_tcp_and_null_over_the_unix_socket() {
    let mut admin = connect("A");
    setup(&mut admin);
    let tag = unique_tag();
    let app_tcp = format!("audit-tcp-{tag}");
    let app_unix = format!("audit-unix-{tag}");
    let (mut tcp, _) = connect_tcp_as("A", "postgres", &app_tcp);
    let (mut unix, _) = connect_as("A", "postgres", &app_unix);
    let addr: Option<String> = tcp.query_one("SELECT host(inet_client_addr())", &[]).unwrap().get(0);
    assert_eq!(addr.as_deref(), Some("127.0.0.1"), "the TCP test connection must come from 127.0.0.1");

    let over_tcp = format!("CREATE TABLE audit_t.tcp_{tag} (a int)");
    let over_unix = format!("CREATE TABLE audit_t.unix_{tag} (a int)");
    tcp.batch_execute(&over_tcp).unwrap();
    unix.batch_execute(&over_unix).unwrap();

    let rows = wait_for_audit(&mut admin, "application_name = $1 AND statement = $2", &[&app_tcp, &over_tcp], 1);
    assert_eq!(rows[0].client_addr.as_deref(), Some("127.0.0.1"), "{:#?}", rows[0]);
    let rows = wait_for_audit(&mut admin, "application_name = $1 AND statement = $2", &[&app_unix, &over_unix], 1);
    assert_eq!(rows[0].client_addr, None, "{:#?}", rows[0]);
}

/// Whether `locks` (jsonb) of audit row `id` contains `element` (a jsonb array).
fn locks_contain(c: &mut Client, id: i64, element: &str) -> bool {
    c.query_one("SELECT coalesce(locks @> $2::text::jsonb, false) FROM pg_migration_guard.audit_log WHERE id = $1", &[&id, &element])
        .unwrap()
        .get(0)
}

fn filenode(c: &mut Client, rel: &str) -> i64 {
    c.query_one("SELECT pg_relation_filenode($1::text::regclass)::bigint", &[&rel]).unwrap().get(0)
}

/// What the statement actually did: an ALTER COLUMN TYPE that rewrites the (small, so
/// allowed) table has `rewrote_table` true and an ACCESS EXCLUSIVE lock marked rewritten in
/// `locks`; ADD COLUMN without default has `rewrote_table` false. Both committed, with an
/// xid and a positive duration.
#[test]
fn rewrote_table_and_locks_record_what_the_statement_did() {
    let mut admin = connect("A");
    setup(&mut admin);
    let tag = unique_tag();
    let app = format!("audit-rewrite-{tag}");
    let (mut c, _) = connect_as("A", "postgres", &app);

    let retype = "ALTER TABLE audit_t.small ALTER COLUMN v TYPE bigint";
    let add = "ALTER TABLE audit_t.small ADD COLUMN w text";
    let before = filenode(&mut admin, "audit_t.small");
    c.batch_execute(retype).unwrap();
    let after_retype = filenode(&mut admin, "audit_t.small");
    assert_ne!(before, after_retype, "int -> bigint must rewrite the table");
    c.batch_execute(add).unwrap();
    assert_eq!(filenode(&mut admin, "audit_t.small"), after_retype, "ADD COLUMN without default must not rewrite");

    let rows = wait_for_audit(&mut admin, "application_name = $1", &[&app], 2);
    let r = row_for(&rows, retype);
    assert_eq!(r.decision, "allowed", "{r:#?}");
    assert_eq!(r.command_tag, "ALTER TABLE");
    assert_eq!(r.rewrote_table, Some(true), "{r:#?}");
    assert!(
        locks_contain(&mut admin, r.id, r#"[{"relation": "audit_t.small", "mode": "ACCESS EXCLUSIVE", "rewritten": true}]"#),
        "locks must show ACCESS EXCLUSIVE on audit_t.small, rewritten: {r:#?}"
    );
    assert_eq!(r.positive_duration, Some(true), "{r:#?}");
    assert!(r.xid.is_some(), "{r:#?}");
    assert_eq!(r.transaction_status.as_deref(), Some("committed"));
    assert_eq!(r.error_sqlstate, None);

    let r = row_for(&rows, add);
    assert_eq!(r.decision, "allowed", "{r:#?}");
    assert_eq!(r.rewrote_table, Some(false), "{r:#?}");
    assert!(
        locks_contain(&mut admin, r.id, r#"[{"relation": "audit_t.small", "mode": "ACCESS EXCLUSIVE", "rewritten": false}]"#),
        "locks must show ACCESS EXCLUSIVE on audit_t.small, not rewritten: {r:#?}"
    );
    assert!(
        !locks_contain(&mut admin, r.id, r#"[{"relation": "audit_t.small", "rewritten": true}]"#),
        "ADD COLUMN did not rewrite audit_t.small: {r:#?}"
    );
    assert_eq!(r.positive_duration, Some(true), "{r:#?}");
    assert_eq!(r.transaction_status.as_deref(), Some("committed"));
}

/// An allowed statement that then fails on its own records PostgreSQL's SQLSTATE, and
/// neither a rewrite nor locks (it did not complete).
#[test]
fn error_sqlstate_records_the_failure_of_an_allowed_statement() {
    let mut admin = connect("A");
    setup(&mut admin);
    let tag = unique_tag();
    let app = format!("audit-failing-{tag}");
    let (mut c, _) = connect_as("A", "postgres", &app);

    let duplicate = "CREATE TABLE audit_t.small (a int)";
    let e = expect_db_error(c.batch_execute(duplicate));
    assert_eq!(e.code(), &SqlState::DUPLICATE_TABLE);
    let bad_column = format!("COMMENT ON COLUMN audit_t.small.no_such_column_{tag} IS 'x'");
    let e = expect_db_error(c.batch_execute(&bad_column));
    assert_eq!(e.code(), &SqlState::UNDEFINED_COLUMN);

    let rows = wait_for_audit(&mut admin, "application_name = $1", &[&app], 2);
    for (statement, sqlstate) in [(duplicate, "42P07"), (bad_column.as_str(), "42703")] {
        let r = row_for(&rows, statement);
        assert_eq!(r.decision, "allowed", "{r:#?}");
        assert_eq!(r.error_sqlstate.as_deref(), Some(sqlstate), "{r:#?}");
        assert_eq!(r.rewrote_table, None, "{r:#?}");
        assert_eq!(r.locks, None, "{r:#?}");
        assert_ne!(r.transaction_status.as_deref(), Some("committed"), "{r:#?}");
    }
}

/// Every decision — allowed, warned, rejected, overridden, exempt — is one audit row and one
/// `LOG:  pg_migration_guard: <decision> <command tag>[: message]; statement: <statement>`
/// line, without DETAIL.
#[test]
fn every_decision_is_one_audit_row_and_one_log_line() {
    let mut admin = connect("A");
    setup(&mut admin);
    let tag = unique_tag();
    let app = format!("audit-log-{tag}");
    let (mut c, notices) = connect_as("A", "postgres", &app);

    let allowed = format!("logmark_al_{tag}");
    c.batch_execute(&format!("CREATE TABLE audit_t.{allowed} (a int)")).unwrap();

    let warned = format!("logmark_wa_{tag}");
    c.batch_execute(&format!("ALTER TABLE audit_t.small RENAME COLUMN a TO {warned}")).unwrap();
    assert!(
        notices.lock().unwrap().iter().any(|n| n.severity() == "WARNING" && n.message().starts_with("renaming-column: ")),
        "RENAME COLUMN must be warned about: {:?}",
        notices.lock().unwrap()
    );

    let rejected = format!("logmark_re_{tag}");
    expect_rejected(c.batch_execute(&format!("CREATE INDEX {rejected} ON audit_t.big (v)")), INDEX_RULE);

    let overridden = format!("logmark_ov_{tag}");
    c.batch_execute(&format!(
        "/* pg_migration_guard:allow {INDEX_RULE} reason=\"log line test\" */ CREATE INDEX {overridden} ON audit_t.big (v)"
    ))
    .unwrap();

    // A session the application_name pattern does not select is exempt (superuser SET).
    let exempt = format!("logmark_ex_{tag}");
    c.batch_execute("SET pg_migration_guard.application_name_pattern = '^no-session-is-named-this$'").unwrap();
    c.batch_execute(&format!("CREATE TABLE audit_t.{exempt} (a int)")).unwrap();
    c.batch_execute("RESET pg_migration_guard.application_name_pattern").unwrap();

    let cases = [
        (&allowed, "allowed", "CREATE TABLE"),
        (&warned, "warned", "ALTER TABLE"),
        (&rejected, "rejected", "CREATE INDEX"),
        (&overridden, "overridden", "CREATE INDEX"),
        (&exempt, "exempt", "CREATE TABLE"),
    ];
    for (marker, decision, command_tag) in cases {
        let pattern = format!("%{marker}%");
        let rows = wait_for_audit(&mut admin, "application_name = $1 AND statement LIKE $2", &[&app, &pattern], 1);
        assert_eq!((rows[0].decision.as_str(), rows[0].command_tag.as_str()), (decision, command_tag), "{:#?}", rows[0]);

        // `LOG:  pg_migration_guard: <decision> <command tag>[: message]; statement: <statement>`
        let head = format!("LOG:  pg_migration_guard: {decision} {command_tag}");
        let (plain, with_message) = (format!("{head}; statement: "), format!("{head}: "));
        let matching = |entries: &[LogEntry]| {
            entries
                .iter()
                .filter(|e| {
                    (e.head.starts_with(&plain) || e.head.starts_with(&with_message))
                        && e.head.contains("; statement: ")
                        && e.head.contains(marker.as_str())
                        && !e.text.contains("DETAIL:")
                })
                .count()
        };
        let start = Instant::now();
        while matching(&server_log_entries("A")) == 0 && start.elapsed() < Duration::from_secs(10) {
            thread::sleep(Duration::from_millis(100));
        }
        thread::sleep(Duration::from_millis(200));
        let n = matching(&server_log_entries("A"));
        assert_eq!(n, 1, "expected exactly one server log message starting {head:?} and naming {marker}, found {n}");
    }
}

/// The LOG lines of cluster A's server log that name `marker` and start with
/// `LOG:  pg_migration_guard: <decision> `, counted after the writer had time to insert and
/// the log to be written.
fn guard_log_lines(decision: &str, marker: &str) -> usize {
    let head = format!("LOG:  pg_migration_guard: {decision} ");
    server_log_entries("A").iter().filter(|e| e.head.starts_with(&head) && e.head.contains(marker)).count()
}

/// With `log_decisions = flagged`, an allowed statement has its audit row and no LOG line;
/// a warned and a rejected one have both. In a database without the audit table, an allowed
/// statement is logged after all (nothing else would record it). Only superusers may set it.
#[test]
fn log_decisions_flagged_leaves_allowed_decisions_to_the_audit_table() {
    let mut admin = connect("A");
    setup(&mut admin);
    let tag = unique_tag();
    let app = format!("audit-flagged-{tag}");
    let (mut c, _) = connect_as("A", "postgres", &app);
    c.batch_execute("SET pg_migration_guard.log_decisions = flagged").unwrap();

    let allowed = format!("flagmark_al_{tag}");
    c.batch_execute(&format!("CREATE TABLE audit_t.{allowed} (a int)")).unwrap();
    let warned = format!("flagmark_wa_{tag}");
    c.batch_execute(&format!("ALTER TABLE audit_t.small RENAME COLUMN a TO {warned}")).unwrap();
    let rejected = format!("flagmark_re_{tag}");
    expect_rejected(c.batch_execute(&format!("CREATE INDEX {rejected} ON audit_t.big (v)")), INDEX_RULE);

    for (marker, decision) in [(&allowed, "allowed"), (&warned, "warned"), (&rejected, "rejected")] {
        let pattern = format!("%{marker}%");
        let rows = wait_for_audit(&mut admin, "application_name = $1 AND statement LIKE $2", &[&app, &pattern], 1);
        assert_eq!(rows[0].decision, decision, "{:#?}", rows[0]);
    }
    let start = Instant::now();
    while guard_log_lines("rejected", &rejected) == 0 && start.elapsed() < Duration::from_secs(10) {
        thread::sleep(Duration::from_millis(100));
    }
    thread::sleep(Duration::from_millis(300));
    assert_eq!(guard_log_lines("allowed", &allowed), 0, "flagged: an allowed decision goes to the audit table only");
    assert_eq!(guard_log_lines("warned", &warned), 1);
    assert_eq!(guard_log_lines("rejected", &rejected), 1);

    // The same session with the default setting logs its allowed decisions.
    c.batch_execute("RESET pg_migration_guard.log_decisions").unwrap();
    let logged = format!("flagmark_all_{tag}");
    c.batch_execute(&format!("CREATE TABLE audit_t.{logged} (a int)")).unwrap();
    let start = Instant::now();
    while guard_log_lines("allowed", &logged) == 0 && start.elapsed() < Duration::from_secs(10) {
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(guard_log_lines("allowed", &logged), 1, "log_decisions = all (the default) logs every decision");

    // A database without the extension has no audit table: the line is the only record.
    let db = format!("audit_noext_{tag}");
    admin.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
    let mut cleanup = Cleanup::new("A");
    cleanup.push(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    {
        let (mut other, _) = connect_db("A", &db, "postgres", &app);
        other.batch_execute("SET pg_migration_guard.log_decisions = flagged").unwrap();
        let unaudited = format!("flagmark_noext_{tag}");
        other.batch_execute(&format!("CREATE TABLE {unaudited} (a int)")).unwrap();
        let start = Instant::now();
        while guard_log_lines("allowed", &unaudited) == 0 && start.elapsed() < Duration::from_secs(10) {
            thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(guard_log_lines("allowed", &unaudited), 1, "without an audit table the allowed decision is logged after all");
    }

    // SUSET: a role without superuser cannot change it.
    ensure_role(&mut admin, "audit_flag_nosuper", "NOLOGIN");
    c.batch_execute("SET ROLE audit_flag_nosuper").unwrap();
    let e = expect_db_error(c.batch_execute("SET pg_migration_guard.log_decisions = flagged"));
    assert_eq!(e.code(), &SqlState::INSUFFICIENT_PRIVILEGE, "{e:?}");
    c.batch_execute("RESET ROLE").unwrap();
}

/// `purge_audit_log(older_than)` deletes exactly the rows logged before now() - older_than,
/// returns how many it deleted, and keeps newer rows.
#[test]
fn purge_audit_log_deletes_only_rows_older_than_the_interval() {
    let mut admin = connect("A");
    setup(&mut admin);
    let tag = unique_tag();
    let app = format!("audit-purge-{tag}");
    let (mut c, _) = connect_as("A", "postgres", &app);
    for k in 0..3 {
        c.batch_execute(&format!("CREATE TABLE audit_t.purge_old_{tag}_{k} (a int)")).unwrap();
    }
    let recent = format!("CREATE TABLE audit_t.purge_new_{tag} (a int)");
    c.batch_execute(&recent).unwrap();
    wait_for_audit(&mut admin, "application_name = $1", &[&app], 4);

    // Age three of the rows by 400 days (superusers own the table).
    let aged = admin
        .execute(
            "UPDATE pg_migration_guard.audit_log SET logged_at = logged_at - interval '400 days' \
             WHERE application_name = $1 AND statement <> $2",
            &[&app, &recent],
        )
        .unwrap();
    assert_eq!(aged, 3);

    let mut tx = admin.transaction().unwrap();
    let older: i64 = tx
        .query_one("SELECT count(*) FROM pg_migration_guard.audit_log WHERE logged_at < now() - interval '365 days'", &[])
        .unwrap()
        .get(0);
    let purged: i64 = tx.query_one("SELECT pg_migration_guard.purge_audit_log(interval '365 days')", &[]).unwrap().get(0);
    tx.commit().unwrap();
    assert!(older >= 3, "the three aged rows are older than 365 days");
    assert_eq!(purged, older, "purge_audit_log must return the number of rows it deleted");

    let left = audit_rows(&mut admin, "application_name = $1", &[&app]);
    assert_eq!(left.iter().map(|r| r.statement.as_str()).collect::<Vec<_>>(), vec![recent.as_str()]);
    let still_old: i64 = admin
        .query_one("SELECT count(*) FROM pg_migration_guard.audit_log WHERE logged_at < now() - interval '365 days'", &[])
        .unwrap()
        .get(0);
    assert_eq!(still_old, 0);
    // Nothing newer than the interval is old enough: a second purge deletes nothing.
    let purged: i64 = admin.query_one("SELECT pg_migration_guard.purge_audit_log(interval '1 day')", &[]).unwrap().get(0);
    assert_eq!(purged, 0);
}

/// What one session of the load and writer-kill tests did.
struct SessionReport {
    app: String,
    pid: i32,
    /// Every acknowledged statement, with the decision the session saw.
    done: Vec<(String, &'static str)>,
    /// Anything but success or a guard rejection, and rejections of allowed statements.
    unexpected: Vec<String>,
    warnings: Vec<String>,
}

/// Statement `i` of session `n`: three allowed statements on the session's own small table
/// for each CREATE INDEX on audit_t.big (rejected). `with_columns` adds one ADD COLUMN per
/// four statements (bounded runs only: a table has at most 1600 columns).
fn load_statement(tag: &str, n: usize, i: usize, with_columns: bool) -> (String, &'static str) {
    let table = format!("audit_t.load_{tag}_{n}");
    match i % 4 {
        0 if with_columns => (format!("ALTER TABLE {table} ADD COLUMN c{i} int"), "allowed"),
        0 | 1 => (format!("COMMENT ON TABLE {table} IS 'session {n} statement {i}'"), "allowed"),
        2 => (format!("COMMENT ON COLUMN {table}.a IS 'session {n} statement {i}'"), "allowed"),
        _ => (format!("CREATE INDEX load_{tag}_{n}_{i} ON audit_t.big (v)"), "rejected"),
    }
}

/// Runs statements `next(i)` in a new session named `app` until `next` returns None.
fn run_session(app: String, mut next: impl FnMut(usize) -> Option<(String, &'static str)>) -> SessionReport {
    let (mut c, notices) = connect_as("A", "postgres", &app);
    c.batch_execute("SET statement_timeout = '60s'").unwrap();
    let pid = backend_pid(&mut c);
    let mut report = SessionReport { app, pid, done: Vec::new(), unexpected: Vec::new(), warnings: Vec::new() };
    let mut i = 0;
    while let Some((sql, expected)) = next(i) {
        i += 1;
        let seen = match c.batch_execute(&sql) {
            Ok(()) => "allowed",
            Err(e) if e.code() == Some(&REJECTED) => "rejected",
            Err(e) => {
                report.unexpected.push(format!("{sql}: {e}"));
                continue;
            }
        };
        if seen != expected {
            report.unexpected.push(format!("{sql}: {seen}, expected {expected}"));
        }
        report.done.push((sql, seen));
    }
    report.warnings = warning_messages(&notices);
    report
}

/// Collects the reports of `n` sessions from `rx`, failing when one does not finish within
/// `timeout` (a deadlock or a hang) or panicked.
fn collect_reports(rx: mpsc::Receiver<thread::Result<SessionReport>>, n: usize, timeout: Duration) -> Vec<SessionReport> {
    let deadline = Instant::now() + timeout;
    (0..n)
        .map(|k| {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Ok(report)) => report,
                Ok(Err(_)) => panic!("a session thread panicked (see its output above)"),
                Err(_) => panic!("only {k} of {n} sessions finished within {timeout:?}: deadlock or hang"),
            }
        })
        .collect()
}

/// Checks that the audit rows of application names starting with `prefix` are exactly the
/// statements the sessions had acknowledged: one row each, from the session's pid, with the
/// decision the session saw — zero lost, zero duplicated.
fn assert_one_row_per_acknowledged_statement(admin: &mut Client, prefix: &str, reports: &[SessionReport], timeout: Duration) {
    for r in reports {
        assert!(r.unexpected.is_empty(), "session {} had unexpected results: {:#?}", r.app, r.unexpected);
        assert!(r.warnings.is_empty(), "session {} received warnings: {:#?}", r.app, r.warnings);
    }
    let total: usize = reports.iter().map(|r| r.done.len()).sum();
    wait_for_count(
        admin,
        "SELECT count(*) FROM pg_migration_guard.audit_log WHERE starts_with(application_name, $1)",
        &[&prefix],
        total as i64,
        timeout,
    );

    let mut expected: HashMap<(String, String), (i32, &str)> = HashMap::new();
    for r in reports {
        for (sql, decision) in &r.done {
            assert!(expected.insert((r.app.clone(), sql.clone()), (r.pid, decision)).is_none(), "statement texts must be unique");
        }
    }
    let rows = admin
        .query(
            "SELECT application_name, statement, backend_pid, decision FROM pg_migration_guard.audit_log \
             WHERE starts_with(application_name, $1)",
            &[&prefix],
        )
        .unwrap();
    let mut problems = Vec::new();
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for row in &rows {
        let key: (String, String) = (row.get(0), row.get(1));
        let (pid, decision): (i32, String) = (row.get(2), row.get(3));
        *seen.entry(key.clone()).or_default() += 1;
        match expected.get(&key) {
            None => problems.push(format!("row for a statement no session acknowledged: {key:?}")),
            Some(&(p, d)) if (p, d) != (pid, decision.as_str()) => {
                problems.push(format!("{key:?}: row says pid {pid} {decision}, the session was pid {p} and saw {d}"))
            }
            _ => {}
        }
    }
    for (key, n) in &seen {
        if *n > 1 {
            problems.push(format!("{n} rows for {key:?}"));
        }
    }
    for key in expected.keys() {
        if !seen.contains_key(key) {
            problems.push(format!("no row for {key:?}"));
        }
    }
    problems.truncate(20);
    assert!(problems.is_empty(), "audit rows do not match the acknowledged statements: {problems:#?}");
}

/// One table per load session, audit_t.load_<tag>_<n>, created unjudged.
fn create_load_tables(admin: &mut Client, tag: &str, sessions: usize) {
    let mut create = String::from("SET pg_migration_guard.mode = off;");
    for n in 0..sessions {
        create.push_str(&format!("CREATE TABLE audit_t.load_{tag}_{n} (a int);"));
    }
    create.push_str("RESET pg_migration_guard.mode");
    admin.batch_execute(&create).unwrap();
}

/// Load: 32 concurrent sessions each issue 200 DDL statements (150 allowed on their own
/// table, 50 rejected CREATE INDEX on audit_t.big). Every session completes (no deadlock)
/// without any error but the rejections and without any warning, and the audit holds
/// exactly one row per statement with the decision the session saw.
#[test]
fn thirty_two_concurrent_sessions_leave_exactly_one_row_per_statement() {
    const SESSIONS: usize = 32;
    const STATEMENTS: usize = 200;
    let mut admin = connect("A");
    setup(&mut admin);
    let tag = unique_tag();
    create_load_tables(&mut admin, &tag, SESSIONS);

    let prefix = format!("load-{tag}-");
    let (tx, rx) = mpsc::channel();
    for n in 0..SESSIONS {
        let (tx, tag, app) = (tx.clone(), tag.clone(), format!("{prefix}{n}"));
        thread::spawn(move || {
            let report = std::panic::catch_unwind(move || run_session(app, |i| (i < STATEMENTS).then(|| load_statement(&tag, n, i, true))));
            let _ = tx.send(report);
        });
    }
    let reports = collect_reports(rx, SESSIONS, Duration::from_secs(600));
    for r in &reports {
        let rejected = r.done.iter().filter(|(_, d)| *d == "rejected").count();
        assert_eq!((r.done.len(), rejected), (STATEMENTS, STATEMENTS / 4), "session {}", r.app);
    }
    assert_one_row_per_acknowledged_statement(&mut admin, &prefix, &reports, Duration::from_secs(120));
}

/// Sets its flags when dropped, also when the test panics.
struct StopOnDrop(Vec<Arc<AtomicBool>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        for flag in &self.0 {
            flag.store(true, Ordering::SeqCst);
        }
    }
}

/// The audit writer is killed (pg_terminate_backend) while four sessions keep issuing DDL:
/// the sessions see no error, a new writer process appears, and every statement
/// acknowledged before or after the kill has exactly one row.
#[test]
fn killing_the_audit_writer_loses_no_acknowledged_statement_and_it_comes_back() {
    const SESSIONS: usize = 4;
    const AFTER_KILL: usize = 100;
    let mut admin = connect("A");
    setup(&mut admin);
    let tag = unique_tag();
    create_load_tables(&mut admin, &tag, SESSIONS);

    let prefix = format!("writer-kill-{tag}-");
    let killed = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    // If this thread panics, the sessions still stop (after AFTER_KILL more statements).
    let _stop_sessions = StopOnDrop(vec![killed.clone(), stop.clone()]);
    let (tx, rx) = mpsc::channel();
    for n in 0..SESSIONS {
        let (tx, tag, app) = (tx.clone(), tag.clone(), format!("{prefix}{n}"));
        let (killed, stop) = (killed.clone(), stop.clone());
        thread::spawn(move || {
            let report = std::panic::catch_unwind(move || {
                let mut after_kill = 0;
                run_session(app, |i| {
                    if killed.load(Ordering::SeqCst) {
                        after_kill += 1;
                    }
                    // Runs until told to stop and at least AFTER_KILL statements followed the
                    // kill (bounded in case the test fails elsewhere).
                    let done = stop.load(Ordering::SeqCst) && after_kill > AFTER_KILL;
                    (!done && i < 50_000).then(|| load_statement(&tag, n, i, false))
                })
            });
            let _ = tx.send(report);
        });
    }

    // Rows are landing: the writer is at work.
    let start = Instant::now();
    loop {
        let n: i64 = admin
            .query_one("SELECT count(*) FROM pg_migration_guard.audit_log WHERE starts_with(application_name, $1)", &[&prefix])
            .unwrap()
            .get(0);
        if n >= 40 {
            break;
        }
        assert!(start.elapsed() < AUDIT_TIMEOUT, "no audit rows from the sessions after {AUDIT_TIMEOUT:?}");
        thread::sleep(Duration::from_millis(50));
    }

    // Kill it (it may be between two runs: retry until one was terminated).
    let start = Instant::now();
    let victims: Vec<i32> = loop {
        // Two steps: in one query the planner could call pg_terminate_backend() before
        // filtering on backend_type.
        let writers: Vec<i32> = admin
            .query("SELECT pid FROM pg_stat_activity WHERE backend_type = $1", &[&AUDIT_WRITER])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut victims = Vec::new();
        for pid in writers {
            let terminated: bool = admin.query_one("SELECT pg_terminate_backend($1)", &[&pid]).unwrap().get(0);
            if terminated {
                victims.push(pid);
            }
        }
        if !victims.is_empty() {
            break victims;
        }
        assert!(start.elapsed() < AUDIT_TIMEOUT, "no process with backend_type '{AUDIT_WRITER}' to terminate");
        thread::sleep(Duration::from_millis(20));
    };
    killed.store(true, Ordering::SeqCst);

    // A writer comes back while the sessions keep going.
    let start = Instant::now();
    loop {
        let n: i64 = admin
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE backend_type = $1 AND pid <> ALL ($2)", &[&AUDIT_WRITER, &victims])
            .unwrap()
            .get(0);
        if n > 0 {
            break;
        }
        assert!(start.elapsed() < AUDIT_TIMEOUT, "no new audit writer within {AUDIT_TIMEOUT:?} of killing {victims:?}");
        thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::SeqCst);

    let reports = collect_reports(rx, SESSIONS, Duration::from_secs(300));
    assert_one_row_per_acknowledged_statement(&mut admin, &prefix, &reports, Duration::from_secs(60));
}

//! The audit trail against a non-superuser who owns its database: `adv_app` (LOGIN, no
//! superuser) owns database `advdb` and its table `public.big` (60000 rows, about 2 MB:
//! `CREATE INDEX` on it is rejected by require-concurrent-index-creation). What the owner
//! can set for its database (`ALTER DATABASE ... SET`, `ALTER ROLE ... IN DATABASE ... SET`,
//! `ALLOW_CONNECTIONS false`) must not silence the audit writer; a database whose writer
//! cannot deliver must not hold up another database's statements or rows; oversized fields
//! must not cost a decision its row; a reason with newlines must not split the LOG line.
//!
//! Every test restarts advdb's audit writer after changing a setting (settings are read
//! when a process connects), and undoes what it set with a [`Cleanup`] guard, also on
//! failure. The tests share advdb and run one at a time.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use pg_migration_guard_integration::*;

const DB: &str = "advdb";
const APP_ROLE: &str = "adv_app";
const INDEX_RULE: &str = "require-concurrent-index-creation";

/// One test at a time: they change settings of the same database.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Role adv_app, database advdb owned by it with the extension, and advdb's `public.big`
/// owned by adv_app; any setting an interrupted earlier run left is reset. Returns a
/// superuser connection to advdb (opened before the test changes anything, so that the
/// settings under test do not apply to it).
fn setup() -> Client {
    let mut admin = connect("A");
    ensure_role(&mut admin, APP_ROLE, "LOGIN");
    let exists: bool = admin.query_one("SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", &[&DB]).unwrap().get(0);
    if !exists {
        admin.batch_execute(&format!("CREATE DATABASE {DB} OWNER {APP_ROLE}")).unwrap();
    }
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {DB} ALLOW_CONNECTIONS true; ALTER DATABASE {DB} RESET ALL; \
             ALTER ROLE {APP_ROLE} IN DATABASE {DB} RESET ALL; ALTER ROLE {APP_ROLE} RESET ALL"
        ))
        .unwrap();
    let (mut su, _) = connect_db("A", DB, "postgres", "adv-setup");
    su.batch_execute(&format!(
        "CREATE EXTENSION IF NOT EXISTS pg_migration_guard; \
         SET pg_migration_guard.mode = off; \
         CREATE TABLE IF NOT EXISTS public.big AS SELECT g AS id, g % 100 AS v FROM generate_series(1, 60000) g; \
         ALTER TABLE public.big OWNER TO {APP_ROLE}; \
         RESET pg_migration_guard.mode"
    ))
    .unwrap();
    let size: i64 = su.query_one("SELECT pg_relation_size('public.big')", &[]).unwrap().get(0);
    assert!(size > 1024 * 1024, "advdb's public.big must be above the 1MB small-table threshold, is {size} bytes");
    su
}

/// Undoes every setting the tests make on advdb.
fn cleanup() -> Cleanup {
    let mut c = Cleanup::new("A");
    c.push(format!("ALTER DATABASE {DB} ALLOW_CONNECTIONS true"));
    c.push(format!("ALTER DATABASE {DB} RESET ALL"));
    c.push(format!("ALTER ROLE {APP_ROLE} IN DATABASE {DB} RESET ALL"));
    c
}

/// A session of adv_app in advdb. It reads the database's and its role's settings when it
/// connects.
fn app_session(app: &str) -> (Client, std::sync::Arc<Mutex<Vec<postgres::error::DbError>>>) {
    connect_db("A", DB, APP_ROLE, app)
}

/// Terminates advdb's audit writers and waits until they are gone, so that the next record
/// starts a writer that reads the settings in force now.
fn restart_writers(su: &mut Client) {
    let sql = format!("SELECT count(*) FROM pg_stat_activity WHERE backend_type = '{AUDIT_WRITER}' AND datname = '{DB}'");
    su.batch_execute(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = '{AUDIT_WRITER}' AND datname = '{DB}'"
    ))
    .unwrap();
    let start = Instant::now();
    while su.query_one(&sql, &[]).unwrap().get::<_, i64>(0) > 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "advdb's audit writer did not exit after pg_terminate_backend");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn index_exists(su: &mut Client, index: &str) -> bool {
    su.query_one("SELECT to_regclass($1) IS NOT NULL", &[&format!("public.{index}")]).unwrap().get(0)
}

/// `CREATE INDEX` on advdb's big table through `c` (a session of adv_app named `app`) is
/// rejected, the index does not exist, and the rejection has exactly one audit row.
fn assert_rejected_and_audited(su: &mut Client, c: &mut Client, app: &str) {
    let index = format!("adv_idx_{}", unique_tag());
    let sql = format!("CREATE INDEX {index} ON public.big (v)");
    expect_rejected(c.batch_execute(&sql), INDEX_RULE);
    assert!(!index_exists(su, &index), "the rejected statement created {index}");
    let rows = wait_for_audit(su, "application_name = $1 AND statement = $2", &[&app, &sql], 1);
    let row = &rows[0];
    assert_eq!(
        (row.decision.as_str(), row.rules(), row.session_role.as_str(), row.database.as_str()),
        ("rejected", vec![INDEX_RULE.to_string()], APP_ROLE, DB),
        "{row:#?}"
    );
}

// ---------------------------------------------------------------------------------------
// The database owner's settings do not reach the writer
// ---------------------------------------------------------------------------------------

/// `ALTER DATABASE advdb SET default_transaction_read_only = on` (the owner keeps its own
/// sessions writable with a role setting) made every audit insert fail.
#[test]
fn read_only_database_setting_does_not_silence_the_audit() {
    let _serial = serial();
    let mut su = setup();
    let _cleanup = cleanup();
    let tag = unique_tag();
    let (mut owner, _) = app_session(&format!("adv-ro-setup-{tag}"));
    owner
        .batch_execute(&format!(
            "ALTER DATABASE {DB} SET default_transaction_read_only = on; \
             ALTER ROLE {APP_ROLE} IN DATABASE {DB} SET default_transaction_read_only = off"
        ))
        .unwrap();
    restart_writers(&mut su);
    let app = format!("adv-ro-{tag}");
    let (mut c, _) = app_session(&app);
    assert_rejected_and_audited(&mut su, &mut c, &app);
}

/// `ALTER DATABASE advdb SET role = 'adv_app'` made the writer insert as adv_app, which has
/// no privilege on the audit table.
#[test]
fn role_database_setting_does_not_silence_the_audit() {
    let _serial = serial();
    let mut su = setup();
    let _cleanup = cleanup();
    let tag = unique_tag();
    let (mut owner, _) = app_session(&format!("adv-role-setup-{tag}"));
    owner.batch_execute(&format!("ALTER DATABASE {DB} SET role = '{APP_ROLE}'")).unwrap();
    restart_writers(&mut su);
    let app = format!("adv-role-{tag}");
    let (mut c, _) = app_session(&app);
    assert_rejected_and_audited(&mut su, &mut c, &app);
}

/// `exit_on_error = on` on top of a read-only database turned every failed insert into a
/// FATAL, and the writer into a restart loop holding the records.
#[test]
fn exit_on_error_database_setting_does_not_silence_the_audit() {
    let _serial = serial();
    let mut su = setup();
    let _cleanup = cleanup();
    let tag = unique_tag();
    let (mut owner, _) = app_session(&format!("adv-exit-setup-{tag}"));
    owner
        .batch_execute(&format!(
            "ALTER DATABASE {DB} SET default_transaction_read_only = on; \
             ALTER DATABASE {DB} SET exit_on_error = on; \
             ALTER ROLE {APP_ROLE} IN DATABASE {DB} SET default_transaction_read_only = off; \
             ALTER ROLE {APP_ROLE} IN DATABASE {DB} SET exit_on_error = off"
        ))
        .unwrap();
    restart_writers(&mut su);
    let app = format!("adv-exit-{tag}");
    let (mut c, _) = app_session(&app);
    assert_rejected_and_audited(&mut su, &mut c, &app);
}

/// `ALTER DATABASE advdb SET session_authorization = 'adv_app'` made the writer's session
/// user adv_app (a background worker's authenticated user is a superuser, which may take
/// any session authorization), with no privilege on the audit table.
#[test]
fn session_authorization_database_setting_does_not_silence_the_audit() {
    let _serial = serial();
    let mut su = setup();
    let _cleanup = cleanup();
    let tag = unique_tag();
    let (mut owner, _) = app_session(&format!("adv-sessauth-setup-{tag}"));
    owner.batch_execute(&format!("ALTER DATABASE {DB} SET session_authorization = '{APP_ROLE}'")).unwrap();
    restart_writers(&mut su);
    let app = format!("adv-sessauth-{tag}");
    let (mut c, _) = app_session(&app);
    assert_rejected_and_audited(&mut su, &mut c, &app);
}

/// `ALTER DATABASE advdb ALLOW_CONNECTIONS false` (run by the owner from another database:
/// PostgreSQL refuses it for the current one) kept the writer out, a FATAL per attempt,
/// restarted without pause. Sessions opened before keep working, and so must the audit.
#[test]
fn allow_connections_false_does_not_silence_the_audit() {
    let _serial = serial();
    let mut su = setup();
    let _cleanup = cleanup();
    let tag = unique_tag();
    let app = format!("adv-conn-{tag}");
    let (mut c, _) = app_session(&app);
    let (mut owner, _) = connect_as("A", APP_ROLE, &format!("adv-conn-setup-{tag}"));
    owner.batch_execute(&format!("ALTER DATABASE {DB} ALLOW_CONNECTIONS false")).unwrap();
    restart_writers(&mut su);
    assert_rejected_and_audited(&mut su, &mut c, &app);
}

// ---------------------------------------------------------------------------------------
// A stalled database does not hold up the others
// ---------------------------------------------------------------------------------------

/// Fills the audit queue with records of database `adv_stall`, whose audit writer cannot
/// deliver (`stall` makes it so, through the superuser connection to `postgres` and the
/// one to adv_stall), then checks that a statement in advdb — with a record as large as
/// theirs, a quarter of the queue — neither waits for space nor loses its row: the oldest
/// records of adv_stall make room, with a LOG line saying so.
fn assert_stalled_database_does_not_hold_up_advdb(what: &str, stall: impl FnOnce(&mut Client, &mut Client)) {
    let _serial = serial();
    let mut su = setup();
    let mut cleanup = cleanup();
    let tag = unique_tag();
    let mut admin = connect("A");
    admin.batch_execute("DROP DATABASE IF EXISTS adv_stall WITH (FORCE)").unwrap();
    admin.batch_execute("CREATE DATABASE adv_stall").unwrap();
    cleanup.push("DROP DATABASE IF EXISTS adv_stall WITH (FORCE)");
    let stall_oid: u32 = admin.query_one("SELECT oid FROM pg_database WHERE datname = 'adv_stall'", &[]).unwrap().get::<_, postgres::types::Oid>(0);
    let (mut filler, filler_notices) = connect_db("A", "adv_stall", "postgres", &format!("adv-stall-{what}-{tag}"));
    filler.batch_execute("CREATE EXTENSION pg_migration_guard").unwrap();
    stall(&mut admin, &mut filler);

    // Records of about a quarter of the queue each (their statements are cut to fit): after
    // six, there is no room for another one. Neither do these statements wait for room: the
    // oldest records of their own, stalled, database make it.
    let (size, dropped_before): (i64, i64) = {
        let r = su.query_one("SELECT size_bytes, dropped_records FROM pg_migration_guard.audit_queue_status()", &[]).unwrap();
        (r.get(0), r.get(1))
    };
    let padding = "x".repeat(size as usize / 3);
    for k in 0..6 {
        let started = Instant::now();
        filler.batch_execute(&format!("CREATE TABLE adv_stall_{k}_{tag} (a int) -- {padding}")).unwrap();
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "statement {k} in adv_stall waited {took:?} for space in the queue");
    }
    assert_eq!(warning_messages(&filler_notices), Vec::<String>::new(), "records of adv_stall were not queued");
    let used: i64 = su.query_one("SELECT used_bytes FROM pg_migration_guard.audit_queue_status()", &[]).unwrap().get(0);
    assert!(size - used < size / 4, "the queue should be full of adv_stall's records: {used} of {size} bytes in use");

    // advdb's statement takes the place of adv_stall's oldest record at once.
    let app = format!("adv-stalled-{what}-{tag}");
    let (mut c, notices) = app_session(&app);
    let started = Instant::now();
    let index = format!("adv_idx_{}", unique_tag());
    let sql = format!("CREATE INDEX {index} ON public.big (v) -- {padding}");
    expect_rejected(c.batch_execute(&sql), INDEX_RULE);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "the statement in {DB} waited {took:?} for space in the queue");
    assert_eq!(warning_messages(&notices), Vec::<String>::new(), "the record of the statement in {DB} was not queued");
    let rows = wait_for_audit(&mut su, "application_name = $1", &[&app], 1);
    assert_eq!(rows[0].decision, "rejected");
    assert!(rows[0].statement.starts_with(&format!("CREATE INDEX {index} ON public.big (v) -- xxx")), "{}", &rows[0].statement[..80]);

    let dropped_after: i64 = su.query_one("SELECT dropped_records FROM pg_migration_guard.audit_queue_status()", &[]).unwrap().get(0);
    assert!(dropped_after > dropped_before, "no record was discarded: dropped_records stayed {dropped_before}");
    let discard_line = format!("of database with OID {stall_oid} to make room in the full audit queue");
    let start = Instant::now();
    while !server_log_entries("A").iter().any(|e| e.head.starts_with("LOG:  pg_migration_guard: discarded ") && e.head.contains(&discard_line)) {
        assert!(start.elapsed() < Duration::from_secs(10), "no LOG line saying that records of adv_stall were discarded");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// adv_stall is marked invalid (as an interrupted DROP DATABASE leaves a database): its
/// writer fails at every start, and the launcher marks the database stalled while it
/// backs off.
#[test]
fn a_database_whose_writer_cannot_start_does_not_hold_up_another() {
    assert_stalled_database_does_not_hold_up_advdb("invalid", |admin, _| {
        admin.batch_execute("UPDATE pg_database SET datconnlimit = -2 WHERE datname = 'adv_stall'").unwrap();
    });
}

/// A session of adv_stall holds an ACCESS EXCLUSIVE lock on its audit table (what a
/// database owner's VACUUM FULL of it takes): the writer's insert times out, it hands the
/// batch back and marks the database stalled.
#[test]
fn a_database_whose_audit_table_is_locked_does_not_hold_up_another() {
    let holder = std::sync::Arc::new(Mutex::new(None::<Client>));
    let keep = holder.clone();
    assert_stalled_database_does_not_hold_up_advdb("locked", move |_, _| {
        let (mut h, _) = connect_db("A", "adv_stall", "postgres", "adv-stall-lock-holder");
        h.batch_execute("BEGIN; LOCK TABLE pg_migration_guard.audit_log IN ACCESS EXCLUSIVE MODE").unwrap();
        *keep.lock().unwrap() = Some(h);
    });
    drop(holder);
}

// ---------------------------------------------------------------------------------------
// Oversized fields and log injection
// ---------------------------------------------------------------------------------------

fn marker(total: usize) -> String {
    format!(" [truncated by pg_migration_guard: {total} bytes in all]")
}

/// A 300 kB override reason lets the statement through (overridden) and its row exists,
/// with the reason cut to 2048 bytes and marked.
#[test]
fn a_300_kb_override_reason_gets_a_row() {
    let _serial = serial();
    let mut su = setup();
    let tag = unique_tag();
    let app = format!("adv-reason-{tag}");
    let (mut c, _) = app_session(&app);
    let reason = "r".repeat(300_000);
    let index = format!("adv_idx_{tag}");
    let sql = format!("-- pg_migration_guard:allow {INDEX_RULE} reason=\"{reason}\"\nCREATE INDEX {index} ON public.big (v)");
    c.batch_execute(&sql).unwrap();
    assert!(index_exists(&mut su, &index));
    su.batch_execute(&format!("SET pg_migration_guard.mode = off; DROP INDEX public.{index}; RESET pg_migration_guard.mode")).unwrap();
    let rows = wait_for_audit(&mut su, "application_name = $1", &[&app], 1);
    let row = &rows[0];
    assert_eq!((row.decision.as_str(), row.overridden_rules.clone()), ("overridden", Some(vec![INDEX_RULE.to_string()])), "{row:#?}");
    let kept = row.override_reason.as_deref().unwrap();
    assert_eq!(kept.len(), 2048);
    assert!(kept.starts_with("rrrr") && kept.ends_with(&marker(300_000)), "{}", &kept[kept.len() - 80..]);
    assert!(row.statement.starts_with("-- pg_migration_guard:allow") && row.statement.ends_with(&marker(sql.len())));
}

/// An annotation naming a 300 kB rule id is rejected (22023, the message quotes the id) and
/// the rejection has its row, with the message cut to 2048 bytes and marked.
#[test]
fn a_300_kb_bogus_rule_id_gets_a_row() {
    let _serial = serial();
    let mut su = setup();
    let tag = unique_tag();
    let app = format!("adv-ruleid-{tag}");
    let (mut c, _) = app_session(&app);
    let index = format!("adv_idx_{tag}");
    let bogus = "x".repeat(300_000);
    let sql = format!("-- pg_migration_guard:allow {bogus} reason=\"r\"\nCREATE INDEX {index} ON public.big (v)");
    let e = expect_db_error(c.batch_execute(&sql));
    assert_eq!(e.code(), &SqlState::INVALID_PARAMETER_VALUE, "{}", e.message().chars().take(200).collect::<String>());
    assert!(!index_exists(&mut su, &index));
    let rows = wait_for_audit(&mut su, "application_name = $1", &[&app], 1);
    let row = &rows[0];
    assert_eq!(row.decision, "rejected");
    let message = row.message.as_deref().unwrap();
    assert_eq!(message.len(), 2048);
    assert!(message.starts_with("unknown rule \"xxxx") && message.ends_with(&marker(e.message().len())), "{}", &message[message.len() - 80..]);
}

/// A reason with a newline followed by what looks like another log line stays inside the
/// decision's LOG line, escaped: the line is one line.
#[test]
fn a_reason_with_newlines_stays_on_one_log_line() {
    let _serial = serial();
    let mut su = setup();
    let tag = unique_tag();
    let app = format!("adv-newline-{tag}");
    let (mut c, _) = app_session(&app);
    let index = format!("adv_idx_{tag}");
    let forged = format!("2026-01-01 00:00:00.000 UTC [1] LOG:  forged_{tag}");
    let sql = format!("/* pg_migration_guard:allow {INDEX_RULE} reason=\"maintenance\r\n{forged}\tend\" */ CREATE INDEX {index} ON public.big (v)");
    c.batch_execute(&sql).unwrap();
    su.batch_execute(&format!("SET pg_migration_guard.mode = off; DROP INDEX public.{index}; RESET pg_migration_guard.mode")).unwrap();
    let head = format!("LOG:  pg_migration_guard: overridden CREATE INDEX: {INDEX_RULE} overridden: ");
    let escaped = format!("reason=\"maintenance\\r\\n{forged}\\tend\" */ CREATE INDEX {index} ON public.big (v)");
    let start = Instant::now();
    let entry = loop {
        let found = server_log_entries("A").into_iter().find(|e| e.head.starts_with(&head) && e.head.contains(&index));
        if let Some(e) = found {
            break e;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no LOG line for {sql:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!entry.text.contains('\n') && !entry.text.contains('\r'), "the LOG line spans several lines:\n{}", entry.text);
    assert!(entry.head.ends_with(&escaped), "{}", entry.head);
}

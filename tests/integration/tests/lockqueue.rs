//! Lock-queue protection over real connections: a long reader holds ACCESS SHARE on
//! the 1M-row `shop_order`, a migration that needs ACCESS EXCLUSIVE arrives, and the
//! application keeps reading. The assertions are about ordering — which statement completes
//! while which lock is still held — never about wall-clock thresholds.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use pg_migration_guard_integration::*;

fn app(name: &str) -> Client {
    connect_as("A", "postgres", name).0
}

fn pid(c: &mut Client) -> i32 {
    c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0)
}

/// A session that holds ACCESS SHARE on shop_order until it commits: the "long report".
fn start_reader(name: &str) -> (Client, i32) {
    let mut r = app(name);
    let p = pid(&mut r);
    r.batch_execute("BEGIN; SELECT count(*) FROM shop_order WHERE id < 1000").unwrap();
    (r, p)
}

/// Polls pg_stat_activity until `pred` holds for the session `pid` (ordering, not timing:
/// the loop only waits for a state the other session must reach).
fn wait_for_state(c: &mut Client, pid: i32, what: &str, sql_condition: &str) {
    let sql = format!("SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND {sql_condition}");
    for _ in 0..3000 {
        let n: i64 = c.query_one(&sql, &[&pid]).unwrap().get(0);
        if n > 0 {
            return;
        }
        thread::sleep(Duration::from_millis(5));
    }
    panic!("session {pid} never reached: {what}");
}

fn reset_columns(c: &mut Client) {
    c.batch_execute(
        "SET pg_migration_guard.mode = off; \
         ALTER TABLE shop_order DROP COLUMN IF EXISTS lq_note; \
         DROP TABLE IF EXISTS lq_a, lq_b; \
         RESET pg_migration_guard.mode",
    )
    .unwrap();
}

/// Runs `sql` on a new connection in a thread; the result comes back on the channel.
fn spawn_migration(name: &'static str, setup: &'static str, sql: &'static str) -> (i32, mpsc::Receiver<Result<(), postgres::Error>>) {
    let (tx, rx) = mpsc::channel();
    let (ptx, prx) = mpsc::channel();
    thread::spawn(move || {
        let mut m = app(name);
        ptx.send(pid(&mut m)).unwrap();
        m.batch_execute(setup).unwrap();
        let _ = tx.send(m.batch_execute(sql));
    });
    (prx.recv().unwrap(), rx)
}

#[test]
fn application_reads_are_not_stalled_and_the_migration_runs_when_the_reader_ends() {
    let mut admin = connect("A");
    reset_columns(&mut admin);
    let (mut reader, _reader_pid) = start_reader("lq-report");

    let (mig_pid, done) = spawn_migration("lq-migration", "SELECT 1", "ALTER TABLE shop_order ADD COLUMN lq_note text");
    // The migration is retrying: it is seen waiting for its lock at least once.
    wait_for_state(&mut admin, mig_pid, "waiting for a lock", "wait_event_type = 'Lock'");

    // Four application connections keep issuing point reads while the reader holds its
    // lock and the migration retries. Every one of them completes before the reader ends.
    let readers: Vec<_> = (0..4)
        .map(|i| {
            thread::spawn(move || {
                let mut c = app(&format!("lq-app-{i}"));
                for n in 0..50i64 {
                    let id = 1 + (n * 7919 + i) % 1_000_000;
                    c.query_one("SELECT id FROM shop_order WHERE id = $1", &[&id]).unwrap();
                    thread::sleep(Duration::from_millis(10));
                }
            })
        })
        .collect();
    for r in readers {
        r.join().expect("application reads failed");
    }
    assert!(done.try_recv().is_err(), "the migration must not finish while the reader holds its lock");
    wait_for_state(&mut admin, mig_pid, "still running the ALTER", "state = 'active'");

    // The reader ends; the migration completes within its budget.
    reader.batch_execute("COMMIT").unwrap();
    done.recv().unwrap().expect("the migration should succeed once the reader ended");
    let n: i64 = admin
        .query_one("SELECT count(*) FROM pg_attribute WHERE attrelid = 'shop_order'::regclass AND attname = 'lq_note'", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    reset_columns(&mut admin);
}

#[test]
fn without_protection_reads_queue_behind_the_waiting_migration() {
    let mut admin = connect("A");
    reset_columns(&mut admin);
    let (mut reader, _) = start_reader("lq-report");
    let (mig_pid, done) = spawn_migration(
        "lq-migration",
        "SET pg_migration_guard.lock_timeout_policy = off",
        "ALTER TABLE shop_order ADD COLUMN lq_note text",
    );
    wait_for_state(&mut admin, mig_pid, "waiting for a lock", "wait_event_type = 'Lock'");

    // A point read issued now queues behind the migration's ACCESS EXCLUSIVE request.
    let (tx, read_done) = mpsc::channel();
    let (ptx, prx) = mpsc::channel();
    thread::spawn(move || {
        let mut c = app("lq-app");
        ptx.send(pid(&mut c)).unwrap();
        c.query_one("SELECT id FROM shop_order WHERE id = 42", &[]).unwrap();
        tx.send(()).unwrap();
    });
    let app_pid = prx.recv().unwrap();
    wait_for_state(&mut admin, app_pid, "blocked behind the migration", "wait_event_type = 'Lock'");
    let blocked_by: Vec<i32> = admin.query_one("SELECT pg_blocking_pids($1)", &[&app_pid]).unwrap().get(0);
    assert!(blocked_by.contains(&mig_pid), "the read should wait for the migration, waits for {blocked_by:?}");
    assert!(read_done.try_recv().is_err());

    reader.batch_execute("COMMIT").unwrap();
    read_done.recv().unwrap();
    done.recv().unwrap().unwrap();
    reset_columns(&mut admin);
}

#[test]
fn a_reader_that_outlives_the_budget_fails_the_migration_with_55p03_naming_it() {
    let mut admin = connect("A");
    reset_columns(&mut admin);
    let (mut reader, reader_pid) = start_reader("lq-report");

    let mut m = app("lq-migration");
    m.batch_execute("SET pg_migration_guard.lock_retry_budget = '1s'").unwrap();
    let e = expect_db_error(m.batch_execute("ALTER TABLE shop_order ADD COLUMN lq_note text"));
    assert_eq!(e.code(), &SqlState::LOCK_NOT_AVAILABLE, "{e:?}");
    assert_eq!(
        e.message(),
        "could not obtain an ACCESS EXCLUSIVE lock on public.shop_order within 1s (pg_migration_guard.lock_retry_budget)"
    );
    let detail = e.detail().unwrap();
    assert!(detail.contains(&format!("pid {reader_pid} (application_name \"lq-report\", state idle in transaction")), "{detail}");
    assert!(detail.contains("holds AccessShareLock): BEGIN; SELECT count(*) FROM shop_order WHERE id < 1000"), "{detail}");
    assert_eq!(e.hint().unwrap().lines().last().unwrap().split("SELECT ").last(), Some(format!("pg_terminate_backend({reader_pid});").as_str()));

    // The session is unchanged and usable; the reader was never disturbed.
    let lt: String = m.query_one("SHOW lock_timeout", &[]).unwrap().get(0);
    assert_eq!(lt, "0");
    reader.query_one("SELECT count(*) FROM shop_order WHERE id < 10", &[]).unwrap();
    reader.batch_execute("COMMIT").unwrap();
    m.batch_execute("ALTER TABLE shop_order ADD COLUMN lq_note text").unwrap();
    reset_columns(&mut admin);
}

#[test]
fn a_session_lock_timeout_bounds_the_whole_wait() {
    let mut admin = connect("A");
    reset_columns(&mut admin);
    let (mut reader, _) = start_reader("lq-report");
    let mut m = app("lq-migration");
    m.batch_execute("SET lock_timeout = '300ms'").unwrap();
    let e = expect_db_error(m.batch_execute("ALTER TABLE shop_order ADD COLUMN lq_note text"));
    assert_eq!(e.code(), &SqlState::LOCK_NOT_AVAILABLE);
    assert!(e.message().ends_with("within 300ms (the session's lock_timeout)"), "{e:?}");
    let lt: String = m.query_one("SHOW lock_timeout", &[]).unwrap().get(0);
    assert_eq!(lt, "300ms");
    reader.batch_execute("COMMIT").unwrap();
}

#[test]
fn inside_a_transaction_only_the_lock_is_retried_and_earlier_work_is_kept() {
    let mut admin = connect("A");
    reset_columns(&mut admin);
    admin.batch_execute("CREATE TABLE lq_a (id int)").unwrap();
    let (mut reader, _) = start_reader("lq-report");
    let (mig_pid, done) = spawn_migration(
        "lq-migration",
        "BEGIN; ALTER TABLE lq_a ADD COLUMN note text",
        "ALTER TABLE shop_order ADD COLUMN lq_note text; COMMIT",
    );
    wait_for_state(&mut admin, mig_pid, "waiting for a lock", "wait_event_type = 'Lock'");
    // The lock the transaction already holds on lq_a is kept while it retries.
    let held: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE pid = $1 AND relation = 'lq_a'::regclass AND mode = 'AccessExclusiveLock' AND granted",
            &[&mig_pid],
        )
        .unwrap()
        .get(0);
    assert_eq!(held, 1);
    reader.batch_execute("COMMIT").unwrap();
    done.recv().unwrap().unwrap();
    // Both statements of the transaction took effect, the first one once.
    let cols: Vec<String> = admin
        .query(
            "SELECT attrelid::regclass::text || '.' || attname FROM pg_attribute \
             WHERE attname IN ('note', 'lq_note') AND attrelid IN ('lq_a'::regclass, 'shop_order'::regclass) ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(cols, ["lq_a.note", "shop_order.lq_note"]);
    reset_columns(&mut admin);
}

#[test]
fn require_policy_rejects_without_a_bounded_lock_timeout() {
    let mut admin = connect("A");
    reset_columns(&mut admin);
    let mut m = app("lq-migration");
    m.batch_execute("SET pg_migration_guard.lock_timeout_policy = require").unwrap();
    let e = expect_db_error(m.batch_execute("ALTER TABLE shop_order ADD COLUMN lq_note text"));
    assert_eq!(e.code(), &SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE);
    assert_eq!(
        e.message(),
        "require-lock-timeout: statement could wait for an ACCESS EXCLUSIVE lock on public.shop_order with no lock_timeout"
    );
    assert!(e.hint().unwrap().contains("SET lock_timeout = '2s';"), "{e:?}");
    m.batch_execute("SET lock_timeout = '10s'").unwrap();
    let e = expect_db_error(m.batch_execute("ALTER TABLE shop_order ADD COLUMN lq_note text"));
    assert!(e.message().contains("longer than pg_migration_guard.max_lock_timeout (2s)"), "{e:?}");
    // Within the maximum: runs. A lock that blocks neither reads nor writes never needs one.
    m.batch_execute("SET lock_timeout = '1s'; ALTER TABLE shop_order ADD COLUMN lq_note text").unwrap();
    m.batch_execute("RESET lock_timeout; ALTER TABLE shop_order SET (autovacuum_enabled = true)").unwrap();
    reset_columns(&mut admin);
}

/// Runs `sql` in the session's open transaction, then COMMIT (or ROLLBACK when it failed);
/// returns "committed" or the SQLSTATE that ended it.
fn run_and_commit(mut m: Client, sql: &str) -> Result<&'static str, Option<SqlState>> {
    let fate = match m.batch_execute(sql) {
        Ok(()) => m.batch_execute("COMMIT").map(|_| "committed"),
        Err(e) => {
            m.batch_execute("ROLLBACK").unwrap();
            Err(e)
        }
    };
    fate.map_err(|e| e.code().cloned())
}

#[test]
fn two_migrations_on_different_tables_do_not_deadlock() {
    let mut admin = connect("A");
    reset_columns(&mut admin);
    admin.batch_execute("CREATE TABLE lq_a (id int); CREATE TABLE lq_b (id int)").unwrap();

    // Different tables at once: both run.
    let mut m1 = app("lq-m1");
    let mut m2 = app("lq-m2");
    m1.batch_execute("BEGIN; ALTER TABLE lq_a ADD COLUMN x int").unwrap();
    m2.batch_execute("BEGIN; ALTER TABLE lq_b ADD COLUMN x int").unwrap();

    // Then each reaches for the other's table: a lock cycle. The guard's waits are
    // shorter than deadlock_timeout, so it detects the cycle itself: one transaction fails
    // with 40P01, the other completes as soon as that one has rolled back.
    let h1 = thread::spawn(move || run_and_commit(m1, "ALTER TABLE lq_b ADD COLUMN y int"));
    let h2 = thread::spawn(move || run_and_commit(m2, "ALTER TABLE lq_a ADD COLUMN y int"));
    let results = [h1.join().unwrap(), h2.join().unwrap()];
    let committed = results.iter().filter(|r| r.is_ok()).count();
    let deadlocks = results.iter().filter(|r| matches!(r, Err(Some(c)) if *c == SqlState::T_R_DEADLOCK_DETECTED)).count();
    assert_eq!((committed, deadlocks), (1, 1), "{results:?}");
    reset_columns(&mut admin);
}

#[test]
fn dropping_a_table_locks_the_table_its_foreign_key_references() {
    let mut c = connect("A");
    c.batch_execute(
        "SET pg_migration_guard.mode = off; DROP TABLE IF EXISTS lq_child, lq_parent; \
         CREATE TABLE lq_parent (id int PRIMARY KEY); CREATE TABLE lq_child (p int REFERENCES lq_parent); \
         RESET pg_migration_guard.mode",
    )
    .unwrap();
    let predicted: Vec<String> = c
        .query("SELECT relation || ' ' || mode FROM pg_migration_guard.lock_targets('DROP TABLE lq_child') ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(predicted, ["public.lq_child ACCESS EXCLUSIVE", "public.lq_parent ACCESS EXCLUSIVE"]);
    // What PostgreSQL takes: ACCESS EXCLUSIVE on the referenced table too (its RI triggers go).
    c.batch_execute("SET pg_migration_guard.mode = warn; BEGIN; DROP TABLE lq_child").unwrap();
    let held: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND relation = 'lq_parent'::regclass \
             AND mode = 'AccessExclusiveLock' AND granted",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(held, 1);
    c.batch_execute("ROLLBACK; SET pg_migration_guard.mode = off; DROP TABLE lq_child, lq_parent").unwrap();
}

#[test]
fn a_blocking_autovacuum_is_cancelled_as_postgres_would() {
    // PostgreSQL cancels an autovacuum that blocks a lock request once the request has
    // waited deadlock_timeout; the guard's waits are shorter, so it does the same itself.
    let mut c = connect("A");
    c.batch_execute("ALTER SYSTEM SET autovacuum_naptime = '1s'").unwrap();
    c.batch_execute(
        "SELECT pg_reload_conf(); SET pg_migration_guard.mode = off; DROP TABLE IF EXISTS lq_av; \
         CREATE TABLE lq_av (id int, v text) WITH (autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1, \
             autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0); \
         INSERT INTO lq_av SELECT g, 'x' FROM generate_series(1, 200000) g; \
         DELETE FROM lq_av WHERE id % 2 = 0; RESET pg_migration_guard.mode",
    )
    .unwrap();
    // Wait (for a state, not a time) until an autovacuum worker is working on the table:
    // with a cost limit of 1 it sleeps 100 ms per page, so it stays there.
    let mut seen = 0;
    for _ in 0..600 {
        seen = c
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' AND query LIKE '%lq_av%'",
                &[],
            )
            .unwrap()
            .get::<_, i64>(0);
        if seen > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(seen, 1, "autovacuum never started on lq_av");
    c.batch_execute("SET pg_migration_guard.lock_retry_budget = '60s'; ALTER TABLE lq_av ADD COLUMN x int").unwrap();
    let vacuuming: i64 = c
        .query_one("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' AND query LIKE '%lq_av%'", &[])
        .unwrap()
        .get(0);
    assert_eq!(vacuuming, 0, "the autovacuum of lq_av should have been cancelled");
    if let Ok(log) = std::env::var("PGMG_LOG_A") {
        let text = String::from_utf8_lossy(&std::fs::read(log).unwrap()).into_owned();
        assert!(text.contains("pg_migration_guard: sending cancel to blocking autovacuum PID"));
    }
    c.batch_execute("ALTER SYSTEM RESET autovacuum_naptime").unwrap();
    c.batch_execute("SELECT pg_reload_conf(); SET pg_migration_guard.mode = off; DROP TABLE lq_av").unwrap();
}

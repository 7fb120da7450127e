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
    assert_eq!(
        e.hint().unwrap().lines().last().unwrap().split("SELECT ").last(),
        Some(format!("pg_terminate_backend({reader_pid});").as_str())
    );

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
    // With a naptime of 1 s the launcher starts a new worker on the table about every
    // second: after the cancel the guard must stay queued until the cancelled worker is
    // gone, or a new worker takes the lock again between two attempts.
    let mut c = connect("A");
    let mut cleanup = Cleanup::new("A");
    cleanup.push("ALTER SYSTEM RESET autovacuum_naptime");
    cleanup.push("SELECT pg_reload_conf()");
    cleanup.push("SET pg_migration_guard.mode = off; DROP TABLE IF EXISTS lq_av");
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
    let worker_sql = "SELECT pid FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' AND query LIKE '%lq_av%'";
    let mut worker: Option<i32> = None;
    for _ in 0..1200 {
        worker = c.query(worker_sql, &[]).unwrap().first().map(|r| r.get(0));
        if worker.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let worker = worker.expect("autovacuum never started on lq_av");
    c.batch_execute("SET pg_migration_guard.lock_retry_budget = '60s'; ALTER TABLE lq_av ADD COLUMN x int")
        .expect("the ALTER must get its lock once the autovacuum is cancelled");
    // The worker that held the lock was cancelled by the guard, not merely outlived: its
    // vacuum of lq_av would have taken minutes.
    let log = std::env::var("PGMG_LOG_A").expect("PGMG_LOG_A");
    let text = String::from_utf8_lossy(&std::fs::read(log).unwrap()).into_owned();
    assert!(
        text.contains(&format!("pg_migration_guard: sending cancel to blocking autovacuum PID {worker}")),
        "no cancel sent to autovacuum worker {worker}"
    );
}

/// Creates the tables of a two-session reproduction with the guard off (DDL on new tables).
fn setup(c: &mut Client, sql: &str) {
    c.batch_execute(&format!("SET pg_migration_guard.mode = off; {sql}; RESET pg_migration_guard.mode")).unwrap();
}

/// Waits until session `pid` is retrying its locks: after a first attempt timed out, the
/// guard advertises what it wants with an advisory lock (`objsubid` 19783) until it holds
/// everything. Reached only by a statement whose wait the guard bounds and retries.
fn wait_for_retry(c: &mut Client, pid: i32) {
    let sql = "SELECT count(*) FROM pg_locks WHERE pid = $1 AND locktype = 'advisory' AND objsubid = 19783";
    for _ in 0..3000 {
        if c.query_one(sql, &[&pid]).unwrap().get::<_, i64>(0) > 0 {
            return;
        }
        thread::sleep(Duration::from_millis(5));
    }
    panic!("session {pid} never retried its locks");
}

/// Whether session `pid` still has a transaction open (the "while" of a reproduction).
fn in_transaction(c: &mut Client, pid: i32) -> bool {
    c.query_one("SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND xact_start IS NOT NULL", &[&pid]).unwrap().get::<_, i64>(0) == 1
}

#[test]
fn create_index_on_an_inheritance_parent_does_not_wait_for_a_child_being_written() {
    // PostgreSQL's DefineIndex builds the index on the parent alone (only a partitioned
    // table's index recurses): the guard must not take SHARE on the children.
    let mut admin = connect("A");
    let mut cleanup = Cleanup::new("A");
    cleanup.push("SET pg_migration_guard.mode = off; DROP TABLE IF EXISTS lq_inh_parent CASCADE");
    setup(
        &mut admin,
        "DROP TABLE IF EXISTS lq_inh_parent CASCADE; CREATE TABLE lq_inh_parent (a int, b int); \
                       CREATE TABLE lq_inh_child1 () INHERITS (lq_inh_parent)",
    );
    let (mut writer, writer_pid) = {
        let mut w = app("lq-writer");
        let p = pid(&mut w);
        (w, p)
    };
    writer.batch_execute("BEGIN; INSERT INTO lq_inh_child1 VALUES (9, 9)").unwrap();
    let mut m = app("lq-migration");
    m.batch_execute("SET pg_migration_guard.mode = warn; SET pg_migration_guard.lock_retry_budget = '5s'").unwrap();
    m.batch_execute("CREATE INDEX lq_inh_parent_b_idx ON lq_inh_parent (b)")
        .expect("CREATE INDEX on the parent runs while a child is written, as in PostgreSQL");
    assert!(in_transaction(&mut admin, writer_pid), "the writer's transaction was open all along");
    writer.batch_execute("COMMIT").unwrap();
}

#[test]
fn detach_and_row_level_security_do_not_wait_for_a_sibling_partition_being_read() {
    // ATExecDetachPartition locks the parent, the partition and the default partition;
    // ENABLE ROW LEVEL SECURITY never recurses. Neither touches the other partitions.
    let mut admin = connect("A");
    let mut cleanup = Cleanup::new("A");
    cleanup.push("SET pg_migration_guard.mode = off; DROP TABLE IF EXISTS lq_part, lq_part_2");
    setup(
        &mut admin,
        "DROP TABLE IF EXISTS lq_part, lq_part_2; CREATE TABLE lq_part (k int) PARTITION BY RANGE (k); \
                       CREATE TABLE lq_part_1 PARTITION OF lq_part FOR VALUES FROM (0) TO (100); \
                       CREATE TABLE lq_part_2 PARTITION OF lq_part FOR VALUES FROM (100) TO (200)",
    );
    let (mut reader, reader_pid) = {
        let mut r = app("lq-report");
        let p = pid(&mut r);
        (r, p)
    };
    reader.batch_execute("BEGIN; SELECT count(*) FROM lq_part_1").unwrap();
    let mut m = app("lq-migration");
    m.batch_execute("SET pg_migration_guard.mode = warn; SET pg_migration_guard.lock_retry_budget = '5s'").unwrap();
    m.batch_execute("ALTER TABLE lq_part ENABLE ROW LEVEL SECURITY").expect("ENABLE ROW LEVEL SECURITY while a sibling is read");
    m.batch_execute("ALTER TABLE lq_part DETACH PARTITION lq_part_2").expect("DETACH PARTITION while a sibling is read");
    assert!(in_transaction(&mut admin, reader_pid), "the reader's transaction was open all along");
    reader.batch_execute("COMMIT").unwrap();
}

#[test]
fn refresh_waits_for_a_locked_base_table_without_blocking_readers_of_the_view() {
    // PostgreSQL's REFRESH takes ACCESS EXCLUSIVE on the view, then ACCESS SHARE on the
    // tables its query reads, waiting as long as needed. With the guard the base table's
    // lock is predicted and taken ahead in bounded, retried waits: the statement completes
    // once the other session releases the table (within the budget), and the view stays
    // readable meanwhile.
    let mut admin = connect("A");
    let mut cleanup = Cleanup::new("A");
    cleanup.push("SET pg_migration_guard.mode = off; DROP TABLE IF EXISTS lq_mv_base CASCADE");
    setup(
        &mut admin,
        "DROP TABLE IF EXISTS lq_mv_base CASCADE; CREATE TABLE lq_mv_base (id int); \
                       INSERT INTO lq_mv_base SELECT generate_series(1, 10); \
                       CREATE MATERIALIZED VIEW lq_mv AS SELECT count(*) AS n FROM lq_mv_base",
    );
    let mut locker = app("lq-locker");
    locker.batch_execute("BEGIN; LOCK TABLE lq_mv_base IN ACCESS EXCLUSIVE MODE").unwrap();
    let (mig_pid, done) = spawn_migration("lq-migration", "SET pg_migration_guard.mode = warn", "REFRESH MATERIALIZED VIEW lq_mv");
    wait_for_retry(&mut admin, mig_pid);
    // Readers of the view are not queued behind the REFRESH for longer than one attempt.
    let mut reader = app("lq-app");
    let n: i64 = reader.query_one("SELECT n FROM lq_mv", &[]).unwrap().get(0);
    assert_eq!(n, 10);
    assert!(done.try_recv().is_err(), "the REFRESH must not finish while the base table is locked");
    locker.batch_execute("COMMIT").unwrap();
    done.recv().unwrap().expect("the REFRESH completes once the base table is released, as in PostgreSQL");
}

#[test]
fn dropping_a_referencing_column_waits_for_the_referenced_table_as_postgres_does() {
    // DROP COLUMN drops the column's foreign key, whose RI triggers live on the referenced
    // table: ACCESS EXCLUSIVE there. PostgreSQL waits for the readers of that table; so
    // does the guard (bounded, retried waits) instead of failing on a lock timeout.
    let mut admin = connect("A");
    let mut cleanup = Cleanup::new("A");
    cleanup.push("SET pg_migration_guard.mode = off; DROP TABLE IF EXISTS lq_fk_child, lq_fk_parent");
    setup(
        &mut admin,
        "DROP TABLE IF EXISTS lq_fk_child, lq_fk_parent; CREATE TABLE lq_fk_parent (id int PRIMARY KEY); \
                       CREATE TABLE lq_fk_child (id int, pid int REFERENCES lq_fk_parent)",
    );
    let mut reader = app("lq-report");
    reader.batch_execute("BEGIN; SELECT count(*) FROM lq_fk_parent").unwrap();
    let (mig_pid, done) = spawn_migration("lq-migration", "SET pg_migration_guard.mode = warn", "ALTER TABLE lq_fk_child DROP COLUMN pid");
    wait_for_retry(&mut admin, mig_pid);
    assert!(done.try_recv().is_err(), "the ALTER must not finish while the referenced table is read");
    reader.batch_execute("COMMIT").unwrap();
    done.recv().unwrap().expect("the ALTER completes once the reader ended, as in PostgreSQL");
}

#[test]
fn event_triggers_and_the_statement_see_the_sessions_lock_timeout() {
    // The guard bounds only its own waits (LockTimeout for each attempt, restored after):
    // while the statement runs, lock_timeout is what the session set.
    let mut admin = connect("A");
    let mut cleanup = Cleanup::new("A");
    cleanup.push("SET pg_migration_guard.mode = off; DROP EVENT TRIGGER IF EXISTS lq_show_lock_timeout");
    cleanup.push("SET pg_migration_guard.mode = off; DROP FUNCTION IF EXISTS lq_show_lock_timeout(); DROP TABLE IF EXISTS lq_et");
    setup(
        &mut admin,
        "DROP TABLE IF EXISTS lq_et; CREATE TABLE lq_et (id int); \
         CREATE OR REPLACE FUNCTION lq_show_lock_timeout() RETURNS event_trigger LANGUAGE plpgsql AS \
         $$BEGIN RAISE WARNING 'lq_show_lock_timeout: %', current_setting('lock_timeout'); END$$; \
         DROP EVENT TRIGGER IF EXISTS lq_show_lock_timeout; \
         CREATE EVENT TRIGGER lq_show_lock_timeout ON ddl_command_end EXECUTE FUNCTION lq_show_lock_timeout()",
    );
    let (mut m, notices) = connect_as("A", "postgres", "lq-migration");
    m.batch_execute("ALTER TABLE lq_et ADD COLUMN x int").unwrap();
    m.batch_execute("SET lock_timeout = '7s'; ALTER TABLE lq_et ADD COLUMN y int").unwrap();
    let seen: Vec<String> = warning_messages(&notices).into_iter().filter(|w| w.starts_with("lq_show_lock_timeout: ")).collect();
    assert_eq!(seen, ["lq_show_lock_timeout: 0", "lq_show_lock_timeout: 7s"]);
}

/// The primary messages and details of the guard's DEBUG1 "took the locks" reports.
fn took_the_locks(notices: &std::sync::Mutex<Vec<postgres::error::DbError>>) -> Vec<(String, String)> {
    notices
        .lock()
        .unwrap()
        .iter()
        .filter(|n| n.severity() == "DEBUG" && n.message().starts_with("pg_migration_guard took the locks of this "))
        .map(|n| (n.message().to_string(), n.detail().unwrap_or_default().to_string()))
        .collect()
}

/// The N of "... after N attempt(s)".
fn attempts_in(message: &str) -> u32 {
    let tail = message.rsplit(" after ").next().unwrap();
    tail.split(' ').next().unwrap().parse().unwrap_or_else(|_| panic!("no attempt count in {message:?}"))
}

#[test]
fn a_migration_behind_a_reader_that_holds_its_lock_for_five_seconds_attempts_at_most_twice() {
    // Between attempts the guard waits for the reader's transaction to end, outside the
    // table's lock queue, instead of queueing again on a timer: one attempt before the
    // wait, one after it, however long the reader runs. (It used to attempt every 0.5 s
    // or so, about ten times in 5 s.)
    let mut admin = connect("A");
    reset_columns(&mut admin);
    let (mut reader, reader_pid) = start_reader("lq-report");
    let (tx, done) = mpsc::channel();
    let (ptx, prx) = mpsc::channel();
    thread::spawn(move || {
        let (mut m, notices) = connect_as("A", "postgres", "lq-migration");
        ptx.send(pid(&mut m)).unwrap();
        m.batch_execute("SET client_min_messages = debug1").unwrap();
        let result = m.batch_execute("ALTER TABLE shop_order ADD COLUMN lq_note text");
        tx.send((result, took_the_locks(&notices))).unwrap();
    });
    let mig_pid = prx.recv().unwrap();
    wait_for_state(&mut admin, mig_pid, "waiting for the reader's transaction to end", "wait_event = 'virtualxid'");
    // That wait is on the reader's virtual transaction, not in the table's lock queue: the
    // migration requests no lock on the table, and nothing waits for it.
    let waits: Vec<String> = admin
        .query("SELECT locktype FROM pg_locks WHERE pid = $1 AND NOT granted", &[&mig_pid])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(waits, ["virtualxid"]);
    let blocked_by: Vec<i32> = admin.query_one("SELECT pg_blocking_pids($1)", &[&mig_pid]).unwrap().get(0);
    assert_eq!(blocked_by, [reader_pid]);
    thread::sleep(Duration::from_secs(5));
    assert!(done.try_recv().is_err(), "the migration must not finish while the reader holds its lock");
    reader.batch_execute("COMMIT").unwrap();
    let (result, reports) = done.recv().unwrap();
    result.expect("the migration should succeed once the reader ended");
    assert_eq!(reports.len(), 1, "{reports:?}");
    let (message, detail) = &reports[0];
    assert!(message.starts_with("pg_migration_guard took the locks of this ALTER TABLE after "), "{message}");
    let attempts = attempts_in(message);
    assert!((1..=2).contains(&attempts), "{attempts} attempts: {message} {detail}");
    assert!(detail.starts_with("Each attempt waited at most 50ms in the lock queue; "), "{detail}");
    reset_columns(&mut admin);
}

#[test]
fn a_reader_that_outlives_the_budget_costs_the_migration_one_attempt() {
    // The first attempt times out; the rest of the budget is spent waiting for the reader's
    // transaction, outside the queue; the 55P03 says so.
    let mut admin = connect("A");
    reset_columns(&mut admin);
    let (mut reader, _) = start_reader("lq-report");
    let mut m = app("lq-migration");
    m.batch_execute("SET pg_migration_guard.lock_retry_budget = '2s'").unwrap();
    let e = expect_db_error(m.batch_execute("ALTER TABLE shop_order ADD COLUMN lq_note text"));
    assert_eq!(e.code(), &SqlState::LOCK_NOT_AVAILABLE, "{e:?}");
    let detail = e.detail().unwrap();
    assert!(
        detail.starts_with(
            "ALTER TABLE waited 1 time in the lock queue for an ACCESS EXCLUSIVE lock on public.shop_order (blocks every \
             read and write, plain SELECT included), at most 50ms each time so that queries arriving behind it waited no \
             longer than that, and between those waited outside the queue for the transactions holding conflicting locks \
             to end; "
        ),
        "{detail}"
    );
    assert!(detail.contains("application_name \"lq-report\""), "{detail}");
    reader.batch_execute("COMMIT").unwrap();
    reset_columns(&mut admin);
}

#[test]
fn the_deadlock_detector_sees_the_wait_for_a_blocking_transaction() {
    // The migration holds lq_a (an earlier statement of its transaction) and waits for the
    // transaction holding lq_b to end. That transaction then asks for lq_a: a cycle formed
    // after the guard's own check, which only PostgreSQL's detector can see — and does,
    // because the guard's wait is a lock wait in the lock manager (ShareLock on the other's
    // virtual transaction). With deadlock_timeout of 1 h for the migration, the other
    // session's detector finds the cycle (after its 1 s) and makes that session the victim;
    // the migration then completes.
    let mut admin = connect("A");
    reset_columns(&mut admin);
    admin.batch_execute("CREATE TABLE lq_a (id int); CREATE TABLE lq_b (id int)").unwrap();
    let mut other = app("lq-other");
    other.batch_execute("SET lock_timeout = '60s'; BEGIN; LOCK TABLE lq_b IN ACCESS SHARE MODE").unwrap();
    let (mig_pid, done) = spawn_migration(
        "lq-migration",
        "SET deadlock_timeout = '1h'; SET pg_migration_guard.lock_retry_budget = '60s'; BEGIN; ALTER TABLE lq_a ADD COLUMN x int",
        "ALTER TABLE lq_b ADD COLUMN y int; COMMIT",
    );
    wait_for_state(&mut admin, mig_pid, "waiting for the other transaction to end", "wait_event = 'virtualxid'");
    let e = expect_db_error(other.batch_execute("LOCK TABLE lq_a IN ACCESS SHARE MODE"));
    assert_eq!(e.code(), &SqlState::T_R_DEADLOCK_DETECTED, "{e:?}");
    let detail = e.detail().unwrap_or_default();
    assert!(detail.contains(&format!("Process {mig_pid} waits for ShareLock on virtual transaction")), "{detail}");
    other.batch_execute("ROLLBACK").unwrap();
    done.recv().unwrap().expect("the migration completes once the other transaction is gone");
    let cols: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_attribute WHERE attrelid IN ('lq_a'::regclass, 'lq_b'::regclass) AND attname IN ('x', 'y')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(cols, 2);
    reset_columns(&mut admin);
}

#[test]
fn a_migration_that_would_wait_for_one_waiting_for_it_backs_off() {
    // m1 holds lq_a and waits for m2's transaction (which holds lq_b) to end. m2 then wants
    // lq_a: its attempt times out, and before waiting for m1 it finds m1 waiting for its own
    // transaction — a cycle, which m1 cannot leave before deadlock_timeout. m2 is the victim
    // whichever pid is higher; m1 completes.
    let mut admin = connect("A");
    reset_columns(&mut admin);
    admin.batch_execute("CREATE TABLE lq_a (id int); CREATE TABLE lq_b (id int)").unwrap();
    let mut m2 = app("lq-m2");
    let m2_pid = pid(&mut m2);
    m2.batch_execute("SET deadlock_timeout = '1h'; BEGIN; ALTER TABLE lq_b ADD COLUMN x int").unwrap();
    let (m1_pid, m1_done) = spawn_migration(
        "lq-m1",
        "SET deadlock_timeout = '1h'; BEGIN; ALTER TABLE lq_a ADD COLUMN x int",
        "ALTER TABLE lq_b ADD COLUMN y int; COMMIT",
    );
    wait_for_state(&mut admin, m1_pid, "waiting for m2's transaction to end", "wait_event = 'virtualxid'");
    let blocked_by: Vec<i32> = admin.query_one("SELECT pg_blocking_pids($1)", &[&m1_pid]).unwrap().get(0);
    assert_eq!(blocked_by, [m2_pid]);
    let e = expect_db_error(m2.batch_execute("ALTER TABLE lq_a ADD COLUMN y int"));
    assert_eq!(e.code(), &SqlState::T_R_DEADLOCK_DETECTED, "{e:?}");
    assert_eq!(
        e.detail().unwrap_or_default(),
        format!(
            "ALTER TABLE waits for an ACCESS EXCLUSIVE lock on public.lq_a, held by process {m1_pid}, which waits for this \
             transaction to end."
        )
    );
    m2.batch_execute("ROLLBACK").unwrap();
    m1_done.recv().unwrap().expect("m1 completes once m2 has rolled back");
    reset_columns(&mut admin);
}

//! Helpers for the integration tests: connections to the clusters scripts/test.sh starts.

use std::sync::{Arc, Mutex};

pub use postgres::{error::SqlState, Client, Config, NoTls};

/// The port of cluster `name` ("A", "B" or "C") from `PGMG_PORT_<name>`.
pub fn port(name: &str) -> u16 {
    let var = format!("PGMG_PORT_{name}");
    std::env::var(&var)
        .unwrap_or_else(|_| panic!("{var} is not set: run these tests through scripts/test.sh"))
        .parse()
        .expect("port number")
}

/// A connection as `user` to cluster `name` over the Unix socket, collecting every
/// NOTICE/WARNING it receives.
pub fn connect_as(name: &str, user: &str, app: &str) -> (Client, Arc<Mutex<Vec<postgres::error::DbError>>>) {
    connect_via("/tmp", name, user, app)
}

/// A connection as `user` to database `db` of cluster `name` over the Unix socket,
/// collecting every NOTICE/WARNING it receives.
pub fn connect_db(name: &str, db: &str, user: &str, app: &str) -> (Client, Arc<Mutex<Vec<postgres::error::DbError>>>) {
    connect_to("/tmp", name, db, user, app)
}

/// A connection to database `postgres` of cluster `name` through `host` (a socket
/// directory or an address).
fn connect_via(host: &str, name: &str, user: &str, app: &str) -> (Client, Arc<Mutex<Vec<postgres::error::DbError>>>) {
    connect_to(host, name, "postgres", user, app)
}

fn connect_to(host: &str, name: &str, db: &str, user: &str, app: &str) -> (Client, Arc<Mutex<Vec<postgres::error::DbError>>>) {
    let notices = Arc::new(Mutex::new(Vec::new()));
    let sink = notices.clone();
    let client = Config::new()
        .host(host)
        .port(port(name))
        .user(user)
        .dbname(db)
        .application_name(app)
        .notice_callback(move |n| sink.lock().unwrap().push(n))
        .connect(NoTls)
        .unwrap_or_else(|e| panic!("connect through {host} to database {db} of cluster {name} as {user}: {e}"));
    (client, notices)
}

/// The primary messages of the WARNINGs among `notices`, in the order they came.
pub fn warning_messages(notices: &Mutex<Vec<postgres::error::DbError>>) -> Vec<String> {
    notices.lock().unwrap().iter().filter(|n| n.severity() == "WARNING").map(|n| n.message().to_string()).collect()
}

pub fn connect(name: &str) -> Client {
    connect_as(name, "postgres", "integration-test").0
}

/// The server's `server_version_num` (150000 and up for 15, 180000 for 18), for the tests
/// whose expectations follow PostgreSQL's version.
pub fn server_version_num(c: &mut Client) -> i32 {
    let v: String = c.query_one("SHOW server_version_num", &[]).unwrap().get(0);
    v.parse().unwrap()
}

/// The server's error for a statement that must fail.
pub fn expect_db_error(result: Result<impl std::fmt::Debug, postgres::Error>) -> postgres::error::DbError {
    match result {
        Ok(v) => panic!("statement was expected to fail, it returned {v:?}"),
        Err(e) => e.as_db_error().cloned().unwrap_or_else(|| panic!("not a server error: {e}")),
    }
}

// ---------------------------------------------------------------------------------------
// Helpers for the audit and security tests.
// ---------------------------------------------------------------------------------------

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use postgres::types::ToSql;

/// SQLSTATE of a guard rejection.
pub const REJECTED: SqlState = SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE;

/// `pg_stat_activity.backend_type` of the background worker that writes the audit rows.
pub const AUDIT_WRITER: &str = "pg_migration_guard audit writer";

/// How long an audit row may take to land (the writer is asynchronous).
pub const AUDIT_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection as `user` over TCP (host 127.0.0.1) instead of the Unix socket, collecting
/// every NOTICE/WARNING it receives: the only kind of session whose `client_addr` is set.
pub fn connect_tcp_as(name: &str, user: &str, app: &str) -> (Client, Arc<Mutex<Vec<postgres::error::DbError>>>) {
    connect_via("127.0.0.1", name, user, app)
}

/// The server's error for a statement the guard must reject: SQLSTATE 55000 and a primary
/// message starting with `<rule>: `.
pub fn expect_rejected(result: Result<impl std::fmt::Debug, postgres::Error>, rule: &str) -> postgres::error::DbError {
    let e = expect_db_error(result);
    assert_eq!(e.code(), &REJECTED, "expected a rejection by {rule}, got {e:?}");
    assert!(e.message().starts_with(&format!("{rule}: ")), "expected a rejection by {rule}, got {e:?}");
    e
}

/// A fresh suffix for object names, application names and statement texts, so that a test
/// finds its own audit rows and log lines among everybody else's (lower case, digits, `_`).
pub fn unique_tag() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{}_{}_{}", std::process::id(), nanos % 100_000, N.fetch_add(1, Ordering::SeqCst))
}

/// The process id of the session behind `c`.
pub fn backend_pid(c: &mut Client) -> i32 {
    c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0)
}

/// Polls `count_sql` (a query returning one bigint) every 50 ms until it returns exactly
/// `expected`, for at most `timeout`; then waits 500 ms more and checks the count is still
/// exactly `expected`. Panics at once when the count exceeds `expected` (a duplicated or
/// foreign row), and on timeout (a lost row).
pub fn wait_for_count(c: &mut Client, count_sql: &str, params: &[&(dyn ToSql + Sync)], expected: i64, timeout: Duration) {
    let start = Instant::now();
    loop {
        let n: i64 = c.query_one(count_sql, params).unwrap().get(0);
        if n > expected {
            panic!("{count_sql} with {params:?} counts {n}, expected exactly {expected} (a duplicated row?)");
        }
        if n == expected {
            break;
        }
        if start.elapsed() > timeout {
            panic!("{count_sql} with {params:?} counts {n} after {timeout:?}, expected {expected} (a lost row?)");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let n: i64 = c.query_one(count_sql, params).unwrap().get(0);
    assert_eq!(n, expected, "{count_sql} with {params:?} reached {expected}, then changed to {n} (a late duplicate?)");
}

/// One row of the `pg_migration_guard.audit` view (every column of `audit_log` plus
/// `transaction_status`), with the types the tests compare: `client_addr` as `host()`,
/// `xid` and `locks` as text, `duration > 0` as a boolean.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub id: i64,
    pub database: String,
    pub session_role: String,
    pub effective_role: String,
    pub application_name: String,
    pub client_addr: Option<String>,
    pub backend_pid: i32,
    pub xid: Option<String>,
    pub statement: String,
    pub command_tag: String,
    pub decision: String,
    pub rules: Option<Vec<String>>,
    pub message: Option<String>,
    pub overridden_rules: Option<Vec<String>>,
    pub override_reason: Option<String>,
    pub positive_duration: Option<bool>,
    pub rewrote_table: Option<bool>,
    pub locks: Option<String>,
    pub error_sqlstate: Option<String>,
    pub transaction_status: Option<String>,
}

impl AuditRow {
    /// The rule ids that fired (an absent array counts as none).
    pub fn rules(&self) -> Vec<String> {
        self.rules.clone().unwrap_or_default()
    }
}

const AUDIT_COLUMNS: &str = "id, database::text AS database, session_role::text AS session_role, \
    effective_role::text AS effective_role, application_name, host(client_addr) AS client_addr, backend_pid, \
    xid::text AS xid, statement, command_tag, decision, rules, message, overridden_rules, override_reason, \
    duration > interval '0' AS positive_duration, rewrote_table, locks::text AS locks, error_sqlstate, \
    transaction_status";

/// The rows of `pg_migration_guard.audit` matching `where_sql`, in `id` order.
pub fn audit_rows(c: &mut Client, where_sql: &str, params: &[&(dyn ToSql + Sync)]) -> Vec<AuditRow> {
    let sql = format!("SELECT {AUDIT_COLUMNS} FROM pg_migration_guard.audit WHERE {where_sql} ORDER BY id");
    c.query(&sql, params)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| AuditRow {
            id: r.get("id"),
            database: r.get("database"),
            session_role: r.get("session_role"),
            effective_role: r.get("effective_role"),
            application_name: r.get("application_name"),
            client_addr: r.get("client_addr"),
            backend_pid: r.get("backend_pid"),
            xid: r.get("xid"),
            statement: r.get("statement"),
            command_tag: r.get("command_tag"),
            decision: r.get("decision"),
            rules: r.get("rules"),
            message: r.get("message"),
            overridden_rules: r.get("overridden_rules"),
            override_reason: r.get("override_reason"),
            positive_duration: r.get("positive_duration"),
            rewrote_table: r.get("rewrote_table"),
            locks: r.get("locks"),
            error_sqlstate: r.get("error_sqlstate"),
            transaction_status: r.get("transaction_status"),
        })
        .collect()
}

/// Waits until exactly `expected` rows of `pg_migration_guard.audit_log` match `where_sql`
/// (see [`wait_for_count`]), then returns them from the `audit` view, in `id` order.
pub fn wait_for_audit(c: &mut Client, where_sql: &str, params: &[&(dyn ToSql + Sync)], expected: usize) -> Vec<AuditRow> {
    let count_sql = format!("SELECT count(*) FROM pg_migration_guard.audit_log WHERE {where_sql}");
    wait_for_count(c, &count_sql, params, expected as i64, AUDIT_TIMEOUT);
    audit_rows(c, where_sql, params)
}

/// The one row of `rows` whose statement text is exactly `statement`.
pub fn row_for<'a>(rows: &'a [AuditRow], statement: &str) -> &'a AuditRow {
    let found: Vec<&AuditRow> = rows.iter().filter(|r| r.statement == statement).collect();
    assert_eq!(found.len(), 1, "expected exactly one audit row with statement {statement:?}, rows: {rows:#?}");
    found[0]
}

/// Polls `current_setting(name)` in session `c` until it is `expected` (a configuration
/// reload reaches a session between two of its queries).
pub fn wait_for_setting(c: &mut Client, name: &str, expected: &str) {
    let start = Instant::now();
    loop {
        let v: String = c.query_one("SELECT current_setting($1)", &[&name]).unwrap().get(0);
        if v == expected {
            return;
        }
        if start.elapsed() > Duration::from_secs(30) {
            panic!("{name} is {v:?} in the session after 30 s, expected {expected:?} (configuration not reloaded?)");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Creates role `name` with `options` (e.g. `LOGIN`) unless it exists.
pub fn ensure_role(c: &mut Client, name: &str, options: &str) {
    c.batch_execute(&format!("DO $$ BEGIN CREATE ROLE {name} {options}; EXCEPTION WHEN duplicate_object THEN NULL; END $$")).unwrap();
}

/// Statements run as superuser on a cluster when dropped — also when the test panics — to
/// undo global state a test changed (ALTER SYSTEM, ALTER ROLE ... SET, grants) for the tests
/// that share the cluster. Each runs on its own (ALTER SYSTEM cannot share a transaction),
/// in the order pushed; failures are printed, not raised.
pub struct Cleanup {
    cluster: &'static str,
    sql: Vec<String>,
}

impl Cleanup {
    pub fn new(cluster: &'static str) -> Self {
        Cleanup { cluster, sql: Vec::new() }
    }

    pub fn push(&mut self, sql: impl Into<String>) {
        self.sql.push(sql.into());
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let mut c = match Config::new()
            .host("/tmp")
            .port(port(self.cluster))
            .user("postgres")
            .dbname("postgres")
            .application_name("integration-test-cleanup")
            .connect(NoTls)
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("cleanup: cannot connect to cluster {}: {e}", self.cluster);
                return;
            }
        };
        for sql in &self.sql {
            if let Err(e) = c.batch_execute(sql) {
                eprintln!("cleanup: {sql}: {e}");
            }
        }
    }
}

/// One message of a server log written with the default `log_line_prefix` (`%m [%p] `):
/// `head` is its first line after the prefix (e.g. `LOG:  pg_migration_guard: ...`), `text`
/// all of its lines (its DETAIL, HINT, CONTEXT, STATEMENT lines and continuation lines).
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub head: String,
    pub text: String,
}

/// The messages of cluster `name`'s server log (path in `PGMG_LOG_<name>`).
pub fn server_log_entries(name: &str) -> Vec<LogEntry> {
    let var = format!("PGMG_LOG_{name}");
    let path = std::env::var(&var).unwrap_or_else(|_| panic!("{var} is not set: run these tests through scripts/test.sh"));
    let log = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let log = String::from_utf8_lossy(&log);
    let mut entries: Vec<LogEntry> = Vec::new();
    for line in log.lines() {
        let prefixed = line.starts_with(|ch: char| ch.is_ascii_digit()) && line.contains("] ");
        let rest = if prefixed { &line[line.find("] ").unwrap() + 2..] } else { "" };
        let continuation =
            !prefixed || ["DETAIL:", "HINT:", "CONTEXT:", "STATEMENT:", "QUERY:", "LOCATION:"].iter().any(|k| rest.starts_with(k));
        match entries.last_mut() {
            Some(last) if continuation => {
                last.text.push('\n');
                last.text.push_str(line);
            }
            _ => entries.push(LogEntry { head: rest.to_string(), text: line.to_string() }),
        }
    }
    entries
}

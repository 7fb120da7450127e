//! The background workers that move audit records from the shared-memory queue
//! (`crate::audit::queue`) into `pg_migration_guard.audit_log`.
//!
//! - The launcher ("pg_migration_guard audit launcher", one per server, static, restarted by
//!   the postmaster 1 s after it exits) connects to no database. It starts one writer per
//!   database that has queued records, restarts it when it died with records still queued
//!   (handing its unfinished records back first), and discards the records of a database
//!   that was dropped. A writer that fails to start, or exits before it delivered anything
//!   while records are queued, is a *failure*: the launcher waits before the next attempt
//!   ([`backoff`]: 1 s, doubling to 60 s, per database, forgotten when a writer of the
//!   database delivers), marks the database stalled meanwhile (backends then discard its
//!   oldest records rather than wait when the queue is full, `audit_queue`), and after
//!   [`DISCARD_AFTER_FAILURES`] failures in a row discards the database's queued records
//!   with a LOG line (and again after each further failure).
//! - A writer ("pg_migration_guard audit writer", a dynamic worker) connects to its
//!   database as the bootstrap superuser, inserts records in batches of up to 500, one
//!   transaction per batch, and exits after 1 s without work so that it never holds up
//!   DROP DATABASE. `pg_terminate_backend()` on a writer makes it finish the batch at hand
//!   and exit; the launcher starts a new one if records are queued.
//!
//! Nothing the database's owner or users can configure changes what a writer does:
//! - it connects with BGWORKER_BYPASS_ALLOWCONN (src/include/postmaster/bgworker.h), so
//!   `ALTER DATABASE ... ALLOW_CONNECTIONS false` does not keep it out (InitPostgres checks
//!   `datallowconn` unless `override_allow_connections`, src/backend/utils/init/postinit.c);
//! - InitPostgres applies the settings of `ALTER DATABASE ... SET` and `ALTER ROLE ... SET`
//!   (pg_db_role_setting, through process_settings) to background workers too; right after
//!   connecting, the writer sets every setting that could change or stop its insert back
//!   at PGC_S_OVERRIDE, which no later source can change (`session_authorization` and
//!   [`FORCED_SETTINGS`]);
//! - each insert runs as the bootstrap superuser in a security-restricted operation
//!   (SetUserIdAndSecContext with SECURITY_LOCAL_USERID_CHANGE |
//!   SECURITY_RESTRICTED_OPERATION, as PostgreSQL's own maintenance commands switch to a
//!   table's owner, e.g. src/backend/commands/vacuum.c), whatever `role` or
//!   `session_authorization` were set to;
//! - it waits for a lock on the audit table at most [`WRITER_LOCK_TIMEOUT`] (VACUUM FULL
//!   and REINDEX DATABASE are allowed to a database's owner in PostgreSQL 15); an insert
//!   that fails for a reason that may pass ([`may_pass`]) hands its batch back, marks the
//!   database stalled and is retried with [`backoff`], instead of pinning the queue or
//!   losing the batch.
//!
//! Both show up in `pg_stat_activity` with those names as `backend_type`.

use std::ffi::CStr;
use std::time::{Duration, Instant};

use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, BgWorkerStartTime, DynamicBackgroundWorker, SignalWakeFlags,
};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{PgLogLevel, PgOid, PgSqlErrorCode};

use crate::audit::queue;
use crate::audit::QueuedRecord;

const LAUNCHER: &str = "pg_migration_guard audit launcher";
const WRITER: &str = "pg_migration_guard audit writer";
const BATCH: usize = 500;
const IDLE_EXIT: Duration = Duration::from_secs(1);
/// After a wake-up, let records gather this long before the next transaction: one insert of
/// many rows instead of one transaction per DDL statement, so rows land within ~0.1 s. A
/// batch costs a transaction and an executor start (about the price of 15 rows): 10 ms made
/// 190 transactions of a 3000-statement migration, 100 ms makes ~20 (docs/benchmarks.md).
const GATHER: Duration = Duration::from_millis(100);

/// The first wait after a failure (a writer that failed to start or delivered nothing, an
/// insert that failed for a reason that may pass): 1 s.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// The longest wait between two attempts: 60 s.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Failed writer starts in a row after which the launcher discards the database's queued
/// records (5: about 15 s after the first failure, with [`backoff`]).
pub const DISCARD_AFTER_FAILURES: u32 = 5;
/// The writer's `lock_timeout` (1 s): how long its insert waits for a lock on the audit
/// table before the batch is handed back and retried later.
pub const WRITER_LOCK_TIMEOUT: &CStr = c"1s";

/// How long to wait after the `failures`-th failure in a row (1 or more): BACKOFF_MIN,
/// doubling per failure, at most BACKOFF_MAX.
pub fn backoff(failures: u32) -> Duration {
    BACKOFF_MIN.saturating_mul(1 << (failures.clamp(1, 8) - 1)).min(BACKOFF_MAX)
}

/// The settings a writer forces right after it connected, at PGC_S_OVERRIDE (the highest
/// source: nothing set later through ALTER DATABASE/ROLE, a reload or a function's SET
/// clause overrides it), with the values they have unless someone set them — except
/// `lock_timeout`, bounded so that a lock on the audit table cannot pin the queue
/// ([`WRITER_LOCK_TIMEOUT`]), and `search_path`, which holds only pg_catalog so that
/// nothing the database's users created resolves in the insert. Each could otherwise make
/// the insert fail, wait for ever, run as another role, skip a constraint, or commit less
/// durably than the server's default (`synchronous_commit = off` set for one database).
pub const FORCED_SETTINGS: &[(&CStr, &CStr)] = &[
    (c"default_transaction_read_only", c"off"),
    (c"default_transaction_isolation", c"read committed"),
    (c"default_transaction_deferrable", c"off"),
    (c"statement_timeout", c"0"),
    (c"lock_timeout", WRITER_LOCK_TIMEOUT),
    (c"idle_in_transaction_session_timeout", c"0"),
    (c"exit_on_error", c"off"),
    (c"session_replication_role", c"origin"),
    (c"row_security", c"on"),
    (c"synchronous_commit", c"on"),
    (c"role", c"none"),
    (c"search_path", c"pg_catalog, pg_temp"),
];

/// Sets `session_authorization` back to the bootstrap superuser (a database's owner can
/// set it for the database: `ALTER DATABASE ... SET session_authorization`, which
/// process_settings applies to a background worker too, since the worker's authenticated
/// user is a superuser), then every one of [`FORCED_SETTINGS`], all at PGC_S_OVERRIDE. In
/// a transaction of its own: the role names are looked up in the catalog.
///
/// # Safety
/// In a writer, once connected to its database, outside a transaction.
unsafe fn force_settings() {
    unsafe {
        pg_sys::StartTransactionCommand();
        let bootstrap = pg_sys::GetUserNameFromId(pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID), false);
        let (context, source) = (pg_sys::GucContext::PGC_SUSET, pg_sys::GucSource::PGC_S_OVERRIDE);
        pg_sys::SetConfigOption(c"session_authorization".as_ptr(), bootstrap, context, source);
        for (name, value) in FORCED_SETTINGS {
            pg_sys::SetConfigOption(name.as_ptr(), value.as_ptr(), context, source);
        }
        pg_sys::CommitTransactionCommand();
    }
}

/// Registers the launcher. Called from `_PG_init` while shared_preload_libraries is
/// processed.
pub fn register_launcher() {
    BackgroundWorkerBuilder::new(LAUNCHER)
        .set_type(LAUNCHER)
        .set_library("pg_migration_guard")
        .set_function("pg_migration_guard_audit_launcher")
        .enable_shmem_access(None)
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(1)))
        .load();
}

/// Whether SIGTERM arrived (server shutdown, pg_terminate_backend). Sticky, unlike
/// `BackgroundWorker::sigterm_received`, which resets the flag it reads (and which
/// `BackgroundWorker::wait_latch` reads too).
fn stop_requested() -> bool {
    unsafe { std::ptr::read_volatile(&raw const pg_sys::ShutdownRequestPending) != 0 }
}

/// Sleeps on the latch; false when the postmaster died (exit at once, as every process
/// does).
fn sleep(ms: u64) -> bool {
    BackgroundWorker::wait_latch(Some(Duration::from_millis(ms))) || stop_requested()
}

/// Sleeps for `d` whatever sets the latch meanwhile; false when the worker must exit
/// (SIGTERM, postmaster death).
fn sleep_for(d: Duration) -> bool {
    let until = Instant::now() + d;
    while !stop_requested() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        if !sleep((left.as_millis() as u64).max(1)) {
            return false;
        }
    }
    false
}

fn log(level: PgLogLevel, message: String) {
    pgrx::pg_sys::panic::ErrorReport::new(PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION, message, "pg_migration_guard").report(level);
}

fn log_detail(level: PgLogLevel, message: String, detail: String) {
    pgrx::pg_sys::panic::ErrorReport::new(PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION, message, "pg_migration_guard")
        .set_detail(detail)
        .report(level);
}

/// A database whose writer keeps failing, as the launcher tracks it.
struct Failing {
    db: pg_sys::Oid,
    /// Failures in a row.
    failures: u32,
    /// No new writer before this.
    retry_at: Instant,
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_migration_guard_audit_launcher(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(None, None);
    unsafe {
        queue::reset_writers();
        queue::set_launcher_latch(pg_sys::MyLatch);
    }
    warn_missing_exempt_roles();
    let mut writers: Vec<(pg_sys::Oid, DynamicBackgroundWorker)> = Vec::new();
    let mut failing: Vec<Failing> = Vec::new();
    while !stop_requested() {
        // pg_reload_conf() / SIGHUP: read the configuration again, check exempt_roles again.
        if unsafe { std::ptr::read_volatile(&raw const pg_sys::ConfigReloadPending) } != 0 {
            unsafe {
                std::ptr::write_volatile(&raw mut pg_sys::ConfigReloadPending, 0);
                pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
            }
            warn_missing_exempt_roles();
        }
        // Writers that exited: hand back what they had claimed; a writer that neither
        // delivered nor left for lack of work, while records are queued, failed.
        let mut exited = Vec::new();
        writers.retain(|(db, handle)| match handle.pid() {
            Ok(_) | Err(BackgroundWorkerStatus::NotYetStarted) => true,
            Err(_) => {
                exited.push(*db);
                false
            }
        });
        for db in exited {
            let end = unsafe { queue::writer_exited(db) };
            if end.clean {
                failing.retain(|f| f.db != db);
            } else if end.pending {
                failed(&mut failing, db, "its audit writer exited before it inserted anything");
            }
            if !failing.iter().any(|f| f.db == db) {
                unsafe { queue::release_writer(db) };
            }
        }
        let now = Instant::now();
        let pending = unsafe { queue::pending_databases() };
        // A failing database with nothing queued for a while is forgotten (its slot freed):
        // a later record starts over with the shortest wait.
        failing.retain(|f| {
            let keep = pending.contains(&f.db) || writers.iter().any(|(d, _)| *d == f.db) || now < f.retry_at + BACKOFF_MAX;
            if !keep {
                unsafe { queue::release_writer(f.db) };
            }
            keep
        });
        for db in pending {
            if writers.iter().any(|(d, _)| *d == db) {
                continue;
            }
            if !database_exists(db) {
                let n = unsafe { queue::discard(db, false) };
                failing.retain(|f| f.db != db);
                unsafe { queue::release_writer(db) };
                log(
                    PgLogLevel::LOG,
                    format!(
                        "pg_migration_guard: discarded {n} audit record{} of dropped database {}",
                        if n == 1 { "" } else { "s" },
                        db.to_u32()
                    ),
                );
                continue;
            }
            if failing.iter().any(|f| f.db == db && now < f.retry_at) {
                continue; // backing off
            }
            if !unsafe { queue::reserve_writer(db) } {
                continue; // every slot busy: retried on the next round
            }
            let started = BackgroundWorkerBuilder::new(&format!("{WRITER} for database {}", db.to_u32()))
                .set_type(WRITER)
                .set_library("pg_migration_guard")
                .set_function("pg_migration_guard_audit_writer")
                .enable_spi_access()
                .set_start_time(BgWorkerStartTime::RecoveryFinished)
                .set_restart_time(None)
                .set_argument(Some(pg_sys::Datum::from(db.to_u32())))
                .set_notify_pid(unsafe { pg_sys::MyProcPid })
                .load_dynamic();
            match started {
                Ok(handle) => writers.push((db, handle)),
                Err(_) => failed(&mut failing, db, "no background worker slot was free to start its audit writer (max_worker_processes)"),
            }
        }
        // Woken at once by a backend that queued a record for a database without a writer,
        // and by the postmaster when a writer started or exited (bgw_notify_pid); else at
        // the end of the shortest backoff, and every 2 s as a safety net.
        let now = Instant::now();
        let timeout = failing
            .iter()
            .map(|f| f.retry_at.saturating_duration_since(now))
            .filter(|d| !d.is_zero())
            .min()
            .unwrap_or(Duration::from_secs(2));
        if !sleep((timeout.min(Duration::from_secs(2)).as_millis() as u64).max(10)) {
            break;
        }
    }
    unsafe { queue::set_launcher_latch(std::ptr::null_mut()) };
}

/// A WARNING in the server log for each role `exempt_roles` lists that does not exist
/// (`guc::warn_missing_exempt_roles`; pg_authid is a shared catalog, readable without a
/// database connection).
fn warn_missing_exempt_roles() {
    unsafe {
        pg_sys::StartTransactionCommand();
        crate::guc::warn_missing_exempt_roles();
        pg_sys::CommitTransactionCommand();
    }
}

/// Counts a failure of `db`'s writer: the next attempt waits [`backoff`], the database is
/// stalled meanwhile, and from the DISCARD_AFTER_FAILURES-th failure in a row on its queued
/// records are discarded. The database's writer slot is reserved (and stays so while it
/// is failing).
fn failed(failing: &mut Vec<Failing>, db: pg_sys::Oid, cause: &str) {
    let i = match failing.iter().position(|f| f.db == db) {
        Some(i) => i,
        None => {
            failing.push(Failing { db, failures: 0, retry_at: Instant::now() });
            failing.len() - 1
        }
    };
    let f = &mut failing[i];
    f.failures += 1;
    let wait = backoff(f.failures);
    f.retry_at = Instant::now() + wait;
    unsafe { queue::set_stall(db, queue::Stall::WriterFailing) };
    if f.failures >= DISCARD_AFTER_FAILURES {
        let n = unsafe { queue::discard(db, true) };
        if n > 0 {
            log_detail(
                PgLogLevel::LOG,
                format!(
                    "pg_migration_guard: discarded {n} audit record{} of database with OID {}: {cause}, {} times in a row",
                    if n == 1 { "" } else { "s" },
                    db.to_u32(),
                    f.failures
                ),
                format!("Their decisions are in the server log only. The next attempt to start the writer is in {} s.", wait.as_secs()),
            );
            return;
        }
    }
    log(
        PgLogLevel::LOG,
        format!(
            "pg_migration_guard: audit records of database with OID {} are stalled: {cause} (failure {} in a row); next attempt in {} s",
            db.to_u32(),
            f.failures,
            wait.as_secs()
        ),
    );
}

fn database_exists(db: pg_sys::Oid) -> bool {
    unsafe {
        pg_sys::StartTransactionCommand();
        let exists = pg_sys::SearchSysCacheExists(
            pg_sys::SysCacheIdentifier::DATABASEOID as i32,
            pg_sys::Datum::from(db.to_u32()),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
        );
        pg_sys::CommitTransactionCommand();
        exists
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_migration_guard_audit_writer(arg: pg_sys::Datum) {
    let db = pg_sys::Oid::from(arg.value() as u32);
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    unsafe {
        // pgrx's connect_worker_to_spi_by_oid passes no flags; BGWORKER_BYPASS_ALLOWCONN lets
        // the writer into a database whose owner set ALLOW_CONNECTIONS false.
        pg_sys::BackgroundWorkerInitializeConnectionByOid(db, pg_sys::InvalidOid, pg_sys::BGWORKER_BYPASS_ALLOWCONN);
        force_settings();
        queue::writer_started(db, pg_sys::MyLatch, pg_sys::MyProcPid);
    }
    let mut idle_since = Instant::now();
    let mut failures = 0u32;
    loop {
        let batch = unsafe { queue::claim(db, BATCH) };
        if batch.is_empty() {
            if stop_requested() || (idle_since.elapsed() >= IDLE_EXIT && unsafe { queue::writer_may_exit(db) }) {
                break;
            }
            if !sleep(200) {
                break;
            }
            std::thread::sleep(GATHER);
            continue;
        }
        match write_batch(&batch) {
            Written::Done => unsafe {
                queue::done(&batch);
                queue::delivered(db);
                failures = 0;
            },
            Written::Retry(cause) => {
                // Back in the queue, where backends may discard them if it fills up while
                // the database is stalled.
                unsafe { queue::hand_back(db, &batch) };
                failures += 1;
                let wait = backoff(failures);
                log(
                    PgLogLevel::LOG,
                    format!(
                        "pg_migration_guard audit writer could not insert {} records, retrying in {} s: {cause}",
                        batch.len(),
                        wait.as_secs()
                    ),
                );
                if !sleep_for(wait) {
                    break; // the next writer the launcher starts takes them
                }
            }
        }
        idle_since = Instant::now();
        if stop_requested() {
            break; // what is still queued goes to the next writer the launcher starts
        }
        if batch.len() < BATCH {
            std::thread::sleep(GATHER);
        }
    }
}

/// What became of a batch.
enum Written {
    /// Inserted, or discarded for good with a WARNING (the audit table is gone or rejects
    /// the rows): its records are DONE.
    Done,
    /// The insert failed for a reason that may pass: hand the batch back and retry later.
    Retry(String),
}

/// Whether an error with this SQLSTATE may pass if the insert is retried later: a lock
/// wait that timed out (55P03), a cancel (57014), a deadlock or serialization failure
/// (40P01, 40001), a read-only transaction (25006), insufficient resources (class 53: disk
/// full, out of memory) or a system error (class 58: I/O). Anything else (the table was
/// dropped or altered, a constraint a superuser added) would fail the same way again.
pub fn may_pass(sqlstate: &str) -> bool {
    matches!(sqlstate, "55P03" | "57014" | "40P01" | "40001" | "25006") || sqlstate.starts_with("53") || sqlstate.starts_with("58")
}

/// Why an insert failed: the SQLSTATE (when PostgreSQL raised an error) and the message.
struct Failure {
    sqlstate: Option<String>,
    message: String,
}

impl Failure {
    fn may_pass(&self) -> bool {
        self.sqlstate.as_deref().is_some_and(may_pass)
    }
}

/// Inserts one batch in one transaction, as the bootstrap superuser in a
/// security-restricted operation. A batch holding a record that was handed back after its
/// writer died is inserted with `ON CONFLICT (id) DO NOTHING`, which skips the rows that
/// writer had committed; other batches take the plain INSERT (speculative insertion costs
/// about half as much again per row), and should one fail anyway for a reason that would
/// not pass, it is tried once more the deduplicating way. A failure that may pass
/// ([`may_pass`]: a lock wait, out of memory) is `Retry`; any other (the extension was
/// dropped, the table altered) is logged and the batch discarded: its decisions are in the
/// server log.
fn write_batch(batch: &[queue::Claimed]) -> Written {
    let rows = parse_batch(batch);
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        // Whatever `role` or `session_authorization` a database or role setting chose,
        // the insert runs as the bootstrap superuser, and nothing it calls can change that
        // (SET ROLE and the like fail in a security-restricted operation). An error inside
        // the transaction restores both at its abort (AbortTransaction).
        let mut saved_user = pg_sys::InvalidOid;
        let mut saved_context = 0;
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
        pg_sys::SetUserIdAndSecContext(
            pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID),
            saved_context | (pg_sys::SECURITY_LOCAL_USERID_CHANGE | pg_sys::SECURITY_RESTRICTED_OPERATION) as i32,
        );
        let outcome = if crate::audit::audit_table().is_none() {
            Err(Failure {
                sqlstate: None,
                message: "pg_migration_guard.audit_log does not exist in this database (extension dropped)".to_string(),
            })
        } else {
            let mut dedup = batch.iter().any(|r| r.handed_back);
            loop {
                match insert(&rows, dedup) {
                    Err(f) if !dedup && !f.may_pass() => dedup = true,
                    outcome => break outcome,
                }
            }
        };
        pg_sys::SetUserIdAndSecContext(saved_user, saved_context);
        pg_sys::PopActiveSnapshot();
        pg_sys::CommitTransactionCommand();
        match outcome {
            Ok(()) => Written::Done,
            Err(f) if f.may_pass() => Written::Retry(f.message),
            Err(f) => {
                log(PgLogLevel::WARNING, format!("pg_migration_guard audit writer discarded {} records: {}", batch.len(), f.message));
                Written::Done
            }
        }
    }
}

/// Runs one of the two inserts on `rows` in a subtransaction (rolled back on failure).
///
/// # Safety
/// Inside a transaction with an active snapshot.
unsafe fn insert(rows: &[(i64, QueuedRecord)], dedup: bool) -> Result<(), Failure> {
    // Each parsed and planned once per writer (SPI_keepplan); the plan cache re-plans it
    // when the table changes, and a failure drops it.
    let plan = unsafe { &mut *std::ptr::addr_of_mut!(INSERT_PLANS) }.get_mut(usize::from(dedup)).unwrap();
    let result = unsafe {
        crate::subxact::run(crate::subxact::OnSuccess::Keep, || {
            Spi::connect_mut(|client| {
                // The arrays are allocated here, in the batch's transaction.
                let args = insert_args(rows);
                if plan.is_none() {
                    let types: Vec<PgOid> = args.iter().map(|a| PgOid::from(a.oid())).collect();
                    let sql = if dedup { format!("{} ON CONFLICT (id) DO NOTHING", insert_sql()) } else { insert_sql() };
                    *plan = Some(client.prepare_mut(&sql, &types)?.keep());
                }
                client.update(plan.as_ref().unwrap(), None, &args).map(|_| ())
            })
        })
    };
    let outcome = match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Failure { sqlstate: None, message: e.to_string() }),
        Err(e) => {
            let report = crate::subxact::report(&e);
            Err(Failure {
                sqlstate: Some(crate::audit::unpack_sql_state(report.sql_error_code() as i32)),
                message: report.message().to_string(),
            })
        }
    };
    if outcome.is_err() {
        *plan = None;
    }
    outcome
}

/// The plain insert's plan, and the `ON CONFLICT (id) DO NOTHING` one's.
static mut INSERT_PLANS: [Option<pgrx::spi::OwnedPreparedStatement>; 2] = [None, None];

/// The records of one batch, decoded, with their queue ids.
type Rows = [(i64, QueuedRecord)];

/// One column of `pg_migration_guard.audit_log` the writer fills: its name, the SQL that
/// makes the column's value from the parameter of one row (`{}` in `value`), and the
/// parameter array built from the batch. **The one list of the audit columns**: the insert
/// and its parameters are both built from it (`insert_sql`, `insert_args`), and a unit test
/// checks it against the table in sql/audit_log.sql (a #[pg_test]: the list holds
/// functions that call PostgreSQL) (every column but `database`, which
/// its DEFAULT fills). Adding a column: a field in `audit::Record`/`QueuedRecord`, an entry
/// here, the column in the SQL.
pub(crate) struct Column {
    pub(crate) name: &'static str,
    /// The value for one row from `{}`, the row's element of the parameter array. Text
    /// where a type has no array type pgrx can build (name, inet, xid8, text[], jsonb),
    /// converted by a cast per row.
    value: &'static str,
    array: fn(&Rows) -> pgrx::datum::DatumWithOid<'static>,
}

/// One parameter array: `f` of every row.
fn column<'a, T: IntoDatum>(rows: &'a Rows, f: impl FnMut(&'a (i64, QueuedRecord)) -> T) -> pgrx::datum::DatumWithOid<'static> {
    rows.iter().map(f).collect::<Vec<T>>().into()
}

/// Microseconds since 2000-01-01 00:00 UTC (PostgreSQL's epoch) as a timestamptz.
const FROM_PG_EPOCH_US: &str = "timestamptz '2000-01-01 00:00:00+00' + {} * interval '1 microsecond'";

pub(crate) static COLUMNS: [Column; 19] = [
    Column { name: "id", value: "{}", array: |rows| column(rows, |(id, _)| *id) },
    Column { name: "logged_at", value: FROM_PG_EPOCH_US, array: |rows| column(rows, |(_, q)| q.logged_at_us) },
    Column { name: "session_role", value: "{}", array: |rows| column(rows, |(_, q)| q.session.session_role.as_str()) },
    Column { name: "effective_role", value: "{}", array: |rows| column(rows, |(_, q)| q.session.effective_role.as_str()) },
    Column { name: "application_name", value: "{}", array: |rows| column(rows, |(_, q)| q.session.application_name.as_str()) },
    Column { name: "client_addr", value: "{}::inet", array: |rows| column(rows, |(_, q)| q.session.client_addr.as_deref()) },
    Column { name: "backend_pid", value: "{}", array: |rows| column(rows, |(_, q)| q.session.backend_pid) },
    Column { name: "xid", value: "{}::xid8", array: |rows| column(rows, |(_, q)| q.xid.map(|x| x.to_string())) },
    Column { name: "statement", value: "{}", array: |rows| column(rows, |(_, q)| q.statement.as_str()) },
    Column { name: "command_tag", value: "{}", array: |rows| column(rows, |(_, q)| q.command_tag.as_str()) },
    Column { name: "decision", value: "{}", array: |rows| column(rows, |(_, q)| q.decision.as_str()) },
    Column { name: "rules", value: "{}::text[]", array: |rows| column(rows, |(_, q)| array_literal(&q.rules)) },
    Column { name: "message", value: "{}", array: |rows| column(rows, |(_, q)| q.message.as_deref()) },
    Column { name: "overridden_rules", value: "{}::text[]", array: |rows| column(rows, |(_, q)| array_literal(&q.overridden_rules)) },
    Column { name: "override_reason", value: "{}", array: |rows| column(rows, |(_, q)| q.override_reason.as_deref()) },
    Column { name: "duration", value: "{} * interval '1 microsecond'", array: |rows| column(rows, |(_, q)| q.duration_us) },
    Column { name: "rewrote_table", value: "{}", array: |rows| column(rows, |(_, q)| q.rewrote_table) },
    Column {
        name: "locks",
        value: "{}::jsonb",
        array: |rows| column(rows, |(_, q)| q.locks.as_ref().and_then(|l| serde_json::to_string(l).ok())),
    },
    Column { name: "error_sqlstate", value: "{}", array: |rows| column(rows, |(_, q)| q.error_sqlstate.as_deref()) },
];

/// The insert of one batch: one typed array per column ([`COLUMNS`]), zipped by `ROWS FROM
/// (unnest($1), unnest($2), ...)` (multi-argument `unnest` is that, but only unqualified).
/// 3000 records: 11 ms this way, 35 ms through `json_to_recordset`, 55 ms through
/// `jsonb_to_recordset` (docs/benchmarks.md).
pub(crate) fn insert_sql() -> String {
    let names: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
    let values: Vec<String> = (1..=COLUMNS.len()).zip(&COLUMNS).map(|(i, c)| c.value.replace("{}", &format!("r.c{i}"))).collect();
    let unnests: Vec<String> = (1..=COLUMNS.len()).map(|i| format!("pg_catalog.unnest(${i})")).collect();
    let aliases: Vec<String> = (1..=COLUMNS.len()).map(|i| format!("c{i}")).collect();
    format!(
        "INSERT INTO pg_migration_guard.audit_log ({}) SELECT {} FROM ROWS FROM ({}) AS r({})",
        names.join(", "),
        values.join(", "),
        unnests.join(", "),
        aliases.join(", ")
    )
}

/// The batch's records, decoded; a record that does not decode (a bug: the backend wrote
/// it) is left out with a WARNING, its decision is in the server log.
fn parse_batch(batch: &[queue::Claimed]) -> Vec<(i64, QueuedRecord)> {
    batch
        .iter()
        .filter_map(|r| match postcard::from_bytes::<QueuedRecord>(&r.payload) {
            Ok(q) => Some((r.id as i64, q)),
            Err(e) => {
                log(PgLogLevel::WARNING, format!("pg_migration_guard audit writer discarded record {}: {e}", r.id));
                None
            }
        })
        .collect()
}

/// The parameters of [`insert_sql`]: one array per column of [`COLUMNS`], in its order,
/// built from `rows` (borrowed: a retry builds them again). Allocated in the current memory
/// context.
fn insert_args(rows: &Rows) -> Vec<pgrx::datum::DatumWithOid<'static>> {
    COLUMNS.iter().map(|c| (c.array)(rows)).collect()
}

/// `items` as a text[] literal for array_in: every element double-quoted, `"` and `\`
/// backslash-escaped (PostgreSQL documentation, "Array Value Input").
fn array_literal(items: &[String]) -> String {
    let mut s = String::from("{");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push('"');
        for ch in item.chars() {
            if ch == '"' || ch == '\\' {
                s.push('\\');
            }
            s.push(ch);
        }
        s.push('"');
    }
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_a_minute() {
        let waits: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(0), BACKOFF_MIN);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
        // The launcher's discard comes after 1 + 2 + 4 + 8 s of waiting.
        assert_eq!((1..DISCARD_AFTER_FAILURES).map(|n| backoff(n).as_secs()).sum::<u64>(), 15);
    }

    #[test]
    fn the_forced_settings_cover_what_could_change_the_insert() {
        let forced: Vec<&str> = FORCED_SETTINGS.iter().map(|(n, _)| n.to_str().unwrap()).collect();
        for name in [
            "default_transaction_read_only",
            "default_transaction_isolation",
            "default_transaction_deferrable",
            "statement_timeout",
            "lock_timeout",
            "idle_in_transaction_session_timeout",
            "exit_on_error",
            "session_replication_role",
            "row_security",
            "role",
            "search_path",
        ] {
            assert!(forced.contains(&name), "{name} is not forced");
        }
    }

    #[test]
    fn errors_that_may_pass_are_retried_others_are_not() {
        for code in ["55P03", "57014", "40P01", "40001", "25006", "53100", "53200", "58030"] {
            assert!(may_pass(code), "{code}");
        }
        for code in ["42P01", "42703", "42501", "23505", "23514", "22P02", "XX000"] {
            assert!(!may_pass(code), "{code}");
        }
    }

    #[test]
    fn array_literals_quote_every_element() {
        assert_eq!(array_literal(&[]), "{}");
        assert_eq!(
            array_literal(&["changing-column-type".into(), "NULL".into(), "a,b".into(), "{x}".into()]),
            r#"{"changing-column-type","NULL","a,b","{x}"}"#
        );
        assert_eq!(array_literal(&[r#"say "hi"\now"#.into()]), r#"{"say \"hi\"\\now"}"#);
    }
}

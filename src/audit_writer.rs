//! The background workers that move audit records from the shared-memory queue
//! (`crate::audit_queue`) into `pg_migration_guard.audit_log`.
//!
//! - The launcher ("pg_migration_guard audit launcher", one per server, static, restarted by
//!   the postmaster 1 s after it exits) connects to no database. It starts one writer per
//!   database that has queued records, restarts it when it died with records still queued
//!   (handing its unfinished records back first), and discards the records of a database
//!   that was dropped.
//! - A writer ("pg_migration_guard audit writer", a dynamic worker) connects to its
//!   database as the bootstrap superuser, inserts records in batches of up to 500, one
//!   transaction per batch, and exits after 1 s without work so that it never holds up
//!   DROP DATABASE. `pg_terminate_backend()` on a writer makes it finish the batch at hand
//!   and exit; the launcher starts a new one if records are queued.
//!
//! Both show up in `pg_stat_activity` with those names as `backend_type`.

use std::time::{Duration, Instant};

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, BgWorkerStartTime, DynamicBackgroundWorker, SignalWakeFlags};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{PgLogLevel, PgOid, PgSqlErrorCode};

use crate::audit::QueuedRecord;
use crate::audit_queue as queue;

const LAUNCHER: &str = "pg_migration_guard audit launcher";
const WRITER: &str = "pg_migration_guard audit writer";
const BATCH: usize = 500;
const IDLE_EXIT: Duration = Duration::from_secs(1);
/// After a wake-up, let records gather this long before the next transaction: one insert of
/// many rows instead of one transaction per DDL statement, so rows land within ~0.1 s. A
/// batch costs a transaction and an executor start (about the price of 15 rows): 10 ms made
/// 190 transactions of a 3000-statement migration, 100 ms makes ~20 (docs/benchmarks.md).
const GATHER: Duration = Duration::from_millis(100);

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

fn log(level: PgLogLevel, message: String) {
    pgrx::pg_sys::panic::ErrorReport::new(PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION, message, "pg_migration_guard").report(level);
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_migration_guard_audit_launcher(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(None, None);
    unsafe { queue::set_launcher_latch(pg_sys::MyLatch) };
    warn_missing_exempt_roles();
    let mut writers: Vec<(pg_sys::Oid, DynamicBackgroundWorker)> = Vec::new();
    while !stop_requested() {
        // pg_reload_conf() / SIGHUP: read the configuration again, check exempt_roles again.
        if unsafe { std::ptr::read_volatile(&raw const pg_sys::ConfigReloadPending) } != 0 {
            unsafe {
                std::ptr::write_volatile(&raw mut pg_sys::ConfigReloadPending, 0);
                pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
            }
            warn_missing_exempt_roles();
        }
        // Writers that exited: hand back what they had claimed, free their slot.
        writers.retain(|(db, handle)| match handle.pid() {
            Ok(_) | Err(BackgroundWorkerStatus::NotYetStarted) => true,
            Err(_) => unsafe {
                queue::unclaim(*db);
                queue::release_writer(*db);
                false
            },
        });
        for db in unsafe { queue::pending_databases() } {
            if writers.iter().any(|(d, _)| *d == db) {
                continue;
            }
            if !database_exists(db) {
                let n = unsafe { queue::discard(db) };
                log(PgLogLevel::LOG, format!("pg_migration_guard: discarded {n} audit records of dropped database {}", db.to_u32()));
                continue;
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
                Err(_) => {
                    unsafe { queue::release_writer(db) };
                    log(
                        PgLogLevel::WARNING,
                        format!("pg_migration_guard could not start an audit writer for database {}: no free background worker slot (max_worker_processes)", db.to_u32()),
                    );
                }
            }
        }
        // Woken at once by a backend that queued a record for a database without a writer,
        // and by the postmaster when a writer started or exited (bgw_notify_pid); the
        // timeout is only a safety net.
        if !sleep(2000) {
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
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(db), None);
    unsafe {
        // Nothing the database's users created can run with the writer's rights.
        pg_sys::SetConfigOption(c"search_path".as_ptr(), c"pg_catalog, pg_temp".as_ptr(), pg_sys::GucContext::PGC_SUSET, pg_sys::GucSource::PGC_S_OVERRIDE);
        queue::writer_started(db, pg_sys::MyLatch, pg_sys::MyProcPid);
    }
    let mut idle_since = Instant::now();
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
        write_batch(&batch);
        unsafe { queue::done(&batch) };
        idle_since = Instant::now();
        if stop_requested() {
            break; // what is still queued goes to the next writer the launcher starts
        }
        if batch.len() < BATCH {
            std::thread::sleep(GATHER);
        }
    }
}

/// Inserts one batch in one transaction. A batch holding a record that was handed back
/// after its writer died is inserted with `ON CONFLICT (id) DO NOTHING`, which skips the
/// rows that writer had committed; other batches take the plain INSERT (speculative
/// insertion costs about half as much again per row), and should one fail anyway, it is
/// tried once more the deduplicating way before the batch is given up. A failure (the
/// extension was dropped, the table altered) is logged and the batch discarded: its
/// decisions are in the server log.
fn write_batch(batch: &[queue::Claimed]) {
    let rows = parse_batch(batch);
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        let outcome = if crate::audit::audit_table().is_none() {
            Err("pg_migration_guard.audit_log does not exist in this database (extension dropped)".to_string())
        } else {
            let mut dedup = batch.iter().any(|r| r.handed_back);
            loop {
                match insert(&rows, dedup) {
                    Err(_) if !dedup => dedup = true,
                    outcome => break outcome,
                }
            }
        };
        pg_sys::PopActiveSnapshot();
        pg_sys::CommitTransactionCommand();
        if let Err(cause) = outcome {
            log(PgLogLevel::WARNING, format!("pg_migration_guard audit writer discarded {} records: {cause}", batch.len()));
        }
    }
}

/// Runs one of the two inserts on `rows` in a subtransaction (rolled back on failure).
///
/// # Safety
/// Inside a transaction with an active snapshot.
unsafe fn insert(rows: &[(i64, QueuedRecord)], dedup: bool) -> Result<(), String> {
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
                    let sql = if dedup { format!("{INSERT_SQL} ON CONFLICT (id) DO NOTHING") } else { INSERT_SQL.to_string() };
                    *plan = Some(client.prepare_mut(&sql, &types)?.keep());
                }
                client.update(plan.as_ref().unwrap(), None, &args).map(|_| ())
            })
        })
    };
    let outcome = match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(crate::subxact::report(&e).message().to_string()),
    };
    if outcome.is_err() {
        *plan = None;
    }
    outcome
}

/// The plain insert's plan, and the `ON CONFLICT (id) DO NOTHING` one's.
static mut INSERT_PLANS: [Option<pgrx::spi::OwnedPreparedStatement>; 2] = [None, None];

/// The insert of one batch: one typed array per column, zipped by `ROWS FROM (unnest(...),
/// ...)` (multi-argument `unnest` is that, but only unqualified; text where a
/// type has no array type pgrx can build: name, inet, xid8, text[], jsonb, converted by
/// the cast per row). 3000 records: 11 ms this way, 35 ms through `json_to_recordset`,
/// 55 ms through `jsonb_to_recordset` (docs/benchmarks.md).
const INSERT_SQL: &str = "\
INSERT INTO pg_migration_guard.audit_log (id, logged_at, session_role, effective_role, application_name, client_addr, \
backend_pid, xid, statement, command_tag, decision, rules, message, overridden_rules, override_reason, duration, \
rewrote_table, locks, error_sqlstate) \
SELECT r.id, timestamptz '2000-01-01 00:00:00+00' + r.logged_at_us * interval '1 microsecond', r.session_role, \
r.effective_role, r.application_name, r.client_addr::inet, r.backend_pid, r.xid::xid8, r.statement, r.command_tag, \
r.decision, r.rules::text[], r.message, r.overridden_rules::text[], r.override_reason, \
r.duration_us * interval '1 microsecond', r.rewrote_table, r.locks::jsonb, r.error_sqlstate \
FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4), \
pg_catalog.unnest($5), pg_catalog.unnest($6), pg_catalog.unnest($7), pg_catalog.unnest($8), \
pg_catalog.unnest($9), pg_catalog.unnest($10), pg_catalog.unnest($11), pg_catalog.unnest($12), \
pg_catalog.unnest($13), pg_catalog.unnest($14), pg_catalog.unnest($15), pg_catalog.unnest($16), \
pg_catalog.unnest($17), pg_catalog.unnest($18), pg_catalog.unnest($19)) \
AS r(id, logged_at_us, session_role, effective_role, application_name, client_addr, backend_pid, xid, statement, \
command_tag, decision, rules, message, overridden_rules, override_reason, duration_us, rewrote_table, locks, \
error_sqlstate)";

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

/// The parameters of `INSERT_SQL`: one array per column, in its order, built from
/// `rows` (borrowed: a retry builds them again). Allocated in the current memory context.
fn insert_args(rows: &[(i64, QueuedRecord)]) -> Vec<pgrx::datum::DatumWithOid<'static>> {
    fn column<'a, T: IntoDatum>(rows: &'a [(i64, QueuedRecord)], f: impl FnMut(&'a (i64, QueuedRecord)) -> T) -> pgrx::datum::DatumWithOid<'static> {
        rows.iter().map(f).collect::<Vec<T>>().into()
    }
    vec![
        column(rows, |(id, _)| *id),
        column(rows, |(_, q)| q.logged_at_us),
        column(rows, |(_, q)| q.session.session_role.as_str()),
        column(rows, |(_, q)| q.session.effective_role.as_str()),
        column(rows, |(_, q)| q.session.application_name.as_str()),
        column(rows, |(_, q)| q.session.client_addr.as_deref()),
        column(rows, |(_, q)| q.session.backend_pid),
        column(rows, |(_, q)| q.xid.map(|x| x.to_string())),
        column(rows, |(_, q)| q.statement.as_str()),
        column(rows, |(_, q)| q.command_tag.as_str()),
        column(rows, |(_, q)| q.decision.as_str()),
        column(rows, |(_, q)| array_literal(&q.rules)),
        column(rows, |(_, q)| q.message.as_deref()),
        column(rows, |(_, q)| array_literal(&q.overridden_rules)),
        column(rows, |(_, q)| q.override_reason.as_deref()),
        column(rows, |(_, q)| q.duration_us),
        column(rows, |(_, q)| q.rewrote_table),
        column(rows, |(_, q)| q.locks.as_ref().and_then(|l| serde_json::to_string(l).ok())),
        column(rows, |(_, q)| q.error_sqlstate.as_deref()),
    ]
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
    use super::array_literal;

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

//! The audit trail: one row in `pg_migration_guard.audit_log` per judged DDL statement,
//! written after the statement ran, and one server-log line per warning or rejection.
//!
//! What is recorded where (and what can be lost):
//! - allowed and warned statements: a row inserted in the statement's own transaction, so
//!   the row commits or rolls back with the change it describes;
//! - rejected statements: their transaction is aborted by the ERROR, which would roll back
//!   any row written in it, so they are recorded as a LOG line in the server log (written
//!   before the ERROR is raised); rows for them are a later addition;
//! - databases without `CREATE EXTENSION pg_migration_guard`: judged, but no rows (there is
//!   no table); LOG lines still are written.

use pgrx::datum::DatumWithOid;
use pgrx::pg_sys;
use pgrx::{PgLogLevel, PgSqlErrorCode, Spi};

use crate::hook::{in_subtransaction, Judgement, Reentrancy};

/// Writes the LOG line for a warning or rejection. LOG lines go to the server log only
/// (not to the client) under the default `log_min_messages` and `client_min_messages`.
pub fn log_line(j: &Judgement) {
    let message = j.verdict.report.as_ref().map(|r| r.message.as_str()).unwrap_or("");
    pgrx::pg_sys::panic::ErrorReport::new(
        PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
        format!("pg_migration_guard: {} {}: {}", j.verdict.decision.as_str(), j.command_tag, message),
        "pg_migration_guard",
    )
    .set_detail(format!("statement: {}", j.statement))
    .report(PgLogLevel::LOG);
}

/// Inserts the audit row. A failure here (the table was dropped, a full disk, ...) is
/// reported as a WARNING and never fails the statement that was already executed.
///
/// # Safety
/// Must be called from the ProcessUtility hook, after the statement ran.
pub unsafe fn record(j: &Judgement) {
    unsafe {
        if !pg_sys::IsTransactionState() || pg_sys::IsAbortedTransactionBlockState() {
            return;
        }
        if let Err(cause) = in_subtransaction(|| insert(j)) {
            pgrx::pg_sys::panic::ErrorReport::new(
                PgSqlErrorCode::ERRCODE_WARNING,
                "pg_migration_guard could not record this statement in pg_migration_guard.audit_log",
                "pg_migration_guard",
            )
            .set_detail(cause)
            .report(PgLogLevel::WARNING);
        }
    }
}

/// Switches to the bootstrap superuser for the insert (SECURITY_LOCAL_USERID_CHANGE, as
/// PostgreSQL does for its own maintenance work), so that roles with no privilege on the
/// audit table still get their statements recorded. Restored on drop, and by PostgreSQL
/// itself when the subtransaction aborts.
struct AsSuperuser {
    userid: pg_sys::Oid,
    sec_context: i32,
}

impl AsSuperuser {
    unsafe fn enter() -> AsSuperuser {
        let mut userid = pg_sys::InvalidOid;
        let mut sec_context = 0;
        unsafe {
            pg_sys::GetUserIdAndSecContext(&mut userid, &mut sec_context);
            pg_sys::SetUserIdAndSecContext(
                pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID),
                sec_context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
            );
        }
        AsSuperuser { userid, sec_context }
    }
}

impl Drop for AsSuperuser {
    fn drop(&mut self) {
        unsafe { pg_sys::SetUserIdAndSecContext(self.userid, self.sec_context) }
    }
}

unsafe fn audit_table_exists() -> bool {
    unsafe {
        let nsp = pg_sys::get_namespace_oid(c"pg_migration_guard".as_ptr(), true);
        nsp != pg_sys::InvalidOid && pg_sys::get_relname_relid(c"audit_log".as_ptr(), nsp) != pg_sys::InvalidOid
    }
}

unsafe fn insert(j: &Judgement) {
    if !unsafe { audit_table_exists() } {
        return;
    }
    let _reentrancy = Reentrancy::enter();
    let _superuser = unsafe { AsSuperuser::enter() };
    let rules: Vec<String> = j.verdict.rules.iter().map(|r| r.to_string()).collect();
    let message: Option<String> = j.verdict.report.as_ref().map(|r| r.message.clone());
    let args: [DatumWithOid; 5] = [
        j.statement.as_str().into(),
        j.command_tag.as_str().into(),
        j.verdict.decision.as_str().into(),
        rules.into(),
        message.into(),
    ];
    if let Err(e) = Spi::run_with_args(
        "INSERT INTO pg_migration_guard.audit_log (statement, command_tag, decision, rules, message) \
         VALUES ($1, $2, $3, $4, $5)",
        &args,
    ) {
        pgrx::error!("{e}");
    }
}

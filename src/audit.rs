//! The audit trail: one row in `pg_migration_guard.audit_log` per judged DDL statement,
//! written after the statement ran, and one server-log line per warning or rejection.
//!
//! What is recorded where (and what can be lost):
//! - allowed and warned statements: a row inserted in the statement's own transaction, so
//!   the row commits or rolls back with the change it describes. The insert runs without a
//!   subtransaction (a subtransaction that writes takes an xid, and more than 64 of them in
//!   one transaction overflow every snapshot's subxid cache, cluster-wide); it is skipped,
//!   with the LOG line as the only record, in read-only transactions, on a standby, and when
//!   the audit table is locked by someone else (the guard never waits on its own table);
//! - rejected statements: their transaction is aborted by the ERROR, which would roll back
//!   any row written in it, so they are recorded as a LOG line in the server log (written
//!   before the ERROR is raised); rows for them are a later addition;
//! - databases without `CREATE EXTENSION pg_migration_guard`: judged, but no rows (there is
//!   no table); LOG lines still are written.

use pgrx::datum::DatumWithOid;
use pgrx::pg_sys;
use pgrx::spi::OwnedPreparedStatement;
use pgrx::{PgBuiltInOids, PgLogLevel, PgOid, PgSqlErrorCode, Spi};

use crate::hook::{Judgement, Reentrancy};

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

/// Inserts the audit row, when it can be written without waiting and without failing.
///
/// # Safety
/// Must be called from the ProcessUtility hook, after the statement ran.
pub unsafe fn record(j: &Judgement) {
    unsafe {
        if !pg_sys::IsTransactionState() || pg_sys::IsAbortedTransactionBlockState() {
            return;
        }
        let Some(audit) = audit_table() else { return };
        if pg_sys::XactReadOnly || pg_sys::RecoveryInProgress() {
            return;
        }
        if !pg_sys::ConditionalLockRelationOid(audit, pg_sys::RowExclusiveLock as _) {
            log_line(j);
            pgrx::pg_sys::panic::ErrorReport::new(
                PgSqlErrorCode::ERRCODE_WARNING,
                "pg_migration_guard.audit_log is locked by another session; this decision is in the server log only",
                "pg_migration_guard",
            )
            .report(PgLogLevel::WARNING);
            return;
        }
        insert(j, audit);
    }
}

/// The audit table's oid, when the extension is installed in this database.
unsafe fn audit_table() -> Option<pg_sys::Oid> {
    unsafe {
        let nsp = pg_sys::get_namespace_oid(c"pg_migration_guard".as_ptr(), true);
        if nsp == pg_sys::InvalidOid {
            return None;
        }
        let rel = pg_sys::get_relname_relid(c"audit_log".as_ptr(), nsp);
        (rel != pg_sys::InvalidOid).then_some(rel)
    }
}

/// Runs as the audit table's owner in a security-restricted operation with
/// `search_path = pg_catalog, pg_temp` (as PostgreSQL does for maintenance commands run on
/// a user's behalf), so every role's statements get recorded and nothing the session set
/// up (search_path objects, role settings) runs with the owner's rights. Restored on drop,
/// and by PostgreSQL itself when the transaction aborts.
struct AsOwner {
    userid: pg_sys::Oid,
    sec_context: i32,
    nest_level: i32,
}

impl AsOwner {
    unsafe fn enter(table: pg_sys::Oid) -> AsOwner {
        let mut userid = pg_sys::InvalidOid;
        let mut sec_context = 0;
        unsafe {
            let rel = pg_sys::RelationIdGetRelation(table);
            let owner = (*(*rel).rd_rel).relowner;
            pg_sys::RelationClose(rel);
            pg_sys::GetUserIdAndSecContext(&mut userid, &mut sec_context);
            pg_sys::SetUserIdAndSecContext(
                owner,
                sec_context | (pg_sys::SECURITY_LOCAL_USERID_CHANGE | pg_sys::SECURITY_RESTRICTED_OPERATION) as i32,
            );
            let nest_level = crate::guc::set_in_new_nest_level(c"search_path", c"pg_catalog, pg_temp");
            AsOwner { userid, sec_context, nest_level }
        }
    }
}

impl Drop for AsOwner {
    fn drop(&mut self) {
        unsafe {
            pg_sys::AtEOXact_GUC(true, self.nest_level);
            pg_sys::SetUserIdAndSecContext(self.userid, self.sec_context);
        }
    }
}

unsafe fn insert(j: &Judgement, table: pg_sys::Oid) {
    let _reentrancy = Reentrancy::enter();
    let _owner = unsafe { AsOwner::enter(table) };
    let rules: Vec<String> = j.verdict.rules.iter().map(|r| r.to_string()).collect();
    let message: Option<String> = j.verdict.report.as_ref().map(|r| r.message.clone());
    let args: [DatumWithOid; 5] = [
        j.statement.as_str().into(),
        j.command_tag.as_str().into(),
        j.verdict.decision.as_str().into(),
        rules.into(),
        message.into(),
    ];
    let result = Spi::connect_mut(|client| {
        // Parsed and planned once per backend (SPI_keepplan); the plan cache re-plans it if
        // the table changes.
        let plan = unsafe { &mut *std::ptr::addr_of_mut!(AUDIT_PLAN) };
        if plan.is_none() {
            let text = PgOid::BuiltIn(PgBuiltInOids::TEXTOID);
            let prepared = client.prepare_mut(INSERT_SQL, &[text, text, text, PgOid::BuiltIn(PgBuiltInOids::TEXTARRAYOID), text])?;
            *plan = Some(prepared.keep());
        }
        client.update(plan.as_ref().unwrap(), None, &args).map(|_| ())
    });
    if let Err(e) = result {
        pgrx::error!("pg_migration_guard could not write its audit row: {e}");
    }
}

const INSERT_SQL: &str = "INSERT INTO pg_migration_guard.audit_log (statement, command_tag, decision, rules, message) \
                          VALUES ($1, $2, $3, $4, $5)";

static mut AUDIT_PLAN: Option<OwnedPreparedStatement> = None;

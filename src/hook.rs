//! The ProcessUtility hook: the only entry point of the guard.
//!
//! For every utility statement PostgreSQL runs — sent by a client at top level
//! (PROCESS_UTILITY_TOPLEVEL), or from PL/pgSQL, a DO block, a function or a procedure
//! (PROCESS_UTILITY_QUERY, PROCESS_UTILITY_QUERY_NONATOMIC) — the hook:
//! 1. takes the fast path for anything that is not DDL (BEGIN, COMMIT, SET, SHOW, ...):
//!    a GUC read and a node-tag test, no allocation, no catalog access;
//! 2. skips PROCESS_UTILITY_SUBCOMMAND re-entries (CREATE TABLE / ALTER TABLE expanding
//!    into further statements): the parent statement was judged already;
//! 3. judges the statement before anything runs (no lock has been taken yet), and rejects
//!    it or warns;
//! 4. always chains to the previous hook or standard_ProcessUtility;
//! 5. records the decision in the audit table after the statement ran.

use std::ffi::CStr;

use pgrx::pg_sys;
use pgrx::{PgLogLevel, PgSqlErrorCode};

use crate::decision::{self, Decision, Verdict};
use crate::{audit, facts, guc, rules, sqltext};

static mut PREV_PROCESS_UTILITY: pg_sys::ProcessUtility_hook_type = None;

/// Installs the hook, keeping the previous one to chain to. Called from `_PG_init` while
/// shared_preload_libraries is processed, so every backend inherits it.
pub unsafe fn install() {
    unsafe {
        PREV_PROCESS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(guard_process_utility);
    }
}

#[cfg(not(feature = "pg13"))]
#[pgrx::pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn guard_process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    let chain = || unsafe {
        match PREV_PROCESS_UTILITY {
            Some(prev) => pg_sys::ffi::pg_guard_ffi_boundary(|| {
                prev(pstmt, query_string, read_only_tree, context, params, query_env, dest, qc)
            }),
            None => pg_sys::standard_ProcessUtility(
                pstmt,
                query_string,
                read_only_tree,
                context,
                params,
                query_env,
                dest,
                qc,
            ),
        }
    };
    unsafe { process(pstmt, query_string, context, chain) }
}

#[cfg(feature = "pg13")]
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn guard_process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    let chain = || unsafe {
        match PREV_PROCESS_UTILITY {
            Some(prev) => pg_sys::ffi::pg_guard_ffi_boundary(|| prev(pstmt, query_string, context, params, query_env, dest, qc)),
            None => pg_sys::standard_ProcessUtility(pstmt, query_string, context, params, query_env, dest, qc),
        }
    };
    unsafe { process(pstmt, query_string, context, chain) }
}

/// Set while the guard runs its own SPI (the audit insert), so nothing it does is judged.
static mut IN_GUARD: bool = false;

/// RAII flag for [`IN_GUARD`].
pub struct Reentrancy;

impl Reentrancy {
    pub fn enter() -> Reentrancy {
        unsafe { IN_GUARD = true };
        Reentrancy
    }
}

impl Drop for Reentrancy {
    fn drop(&mut self) {
        unsafe { IN_GUARD = false };
    }
}

/// The outcome of judging one statement; the audit layer records it.
pub struct Judgement {
    pub statement: String,
    pub command_tag: String,
    pub verdict: Verdict,
}

unsafe fn process(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    context: pg_sys::ProcessUtilityContext::Type,
    chain: impl FnOnce(),
) {
    let node = unsafe { (*pstmt).utilityStmt };
    if !unsafe { should_judge(node, context) } {
        chain();
        return;
    }
    let judgement = unsafe { judge(pstmt, query_string) };
    act(&judgement);
    chain();
    unsafe { audit::record(&judgement) };
}

/// The fast path: is this a statement the guard judges at all?
#[inline]
unsafe fn should_judge(node: *mut pg_sys::Node, context: pg_sys::ProcessUtilityContext::Type) -> bool {
    use pg_sys::NodeTag::*;
    if guc::MODE.get() == guc::GuardMode::Off || context == pg_sys::ProcessUtilityContext::PROCESS_UTILITY_SUBCOMMAND {
        return false;
    }
    unsafe {
        if IN_GUARD || node.is_null() {
            return false;
        }
        // The statements every application sends all the time: decided by tag alone.
        match (*node).type_ {
            T_TransactionStmt | T_VariableSetStmt | T_VariableShowStmt | T_DiscardStmt | T_DeclareCursorStmt
            | T_ClosePortalStmt | T_FetchStmt | T_PrepareStmt | T_ExecuteStmt | T_DeallocateStmt | T_NotifyStmt
            | T_ListenStmt | T_UnlistenStmt | T_LockStmt | T_CopyStmt | T_DoStmt | T_CallStmt | T_ExplainStmt
            | T_CheckPointStmt | T_LoadStmt | T_VacuumStmt | T_ConstraintsSetStmt => return false,
            _ => {}
        }
        if pg_sys::GetCommandLogLevel(node) != pg_sys::LogStmtLevel::LOGSTMT_DDL {
            return false;
        }
        // Never during CREATE/ALTER EXTENSION scripts, pg_upgrade, or in parallel workers;
        // never in a transaction that can no longer run anything.
        !(pg_sys::creating_extension
            || pg_sys::IsBinaryUpgrade
            || pg_sys::ParallelWorkerNumber >= 0
            || !pg_sys::IsTransactionState()
            || pg_sys::IsAbortedTransactionBlockState())
    }
}

unsafe fn judge(pstmt: *mut pg_sys::PlannedStmt, query_string: *const std::ffi::c_char) -> Judgement {
    unsafe {
        let node = (*pstmt).utilityStmt;
        let full: &[u8] = if query_string.is_null() { b"" } else { CStr::from_ptr(query_string).to_bytes() };
        let (start, end) = sqltext::clean_query_bounds(full, (*pstmt).stmt_location, (*pstmt).stmt_len);
        let statement = String::from_utf8_lossy(&full[start..end]).into_owned();
        let command_tag = CStr::from_ptr(pg_sys::GetCommandTagName(pg_sys::CreateCommandTag(node)))
            .to_string_lossy()
            .into_owned();
        let text = facts::StatementText { text: &statement, offset: start };
        let verdict = match in_subtransaction(|| facts::statement_facts(node, &text)) {
            Ok(stmt) => decision::decide(guc::mode(), rules::check(&stmt)),
            Err(cause) => {
                // The guard's own failure must not block the statement: let it run, say so.
                pgrx::pg_sys::panic::ErrorReport::new(
                    PgSqlErrorCode::ERRCODE_WARNING,
                    format!("pg_migration_guard could not judge this {command_tag} statement; it runs unjudged"),
                    "pg_migration_guard",
                )
                .set_detail(cause)
                .report(PgLogLevel::WARNING);
                Verdict { decision: Decision::Allowed, rules: vec![], report: None }
            }
        };
        Judgement { statement, command_tag, verdict }
    }
}

/// Reports the verdict: ERROR for a rejection (after a LOG line that survives the
/// rollback), WARNING for a warning, nothing otherwise.
fn act(j: &Judgement) {
    let Some(report) = &j.verdict.report else { return };
    match j.verdict.decision {
        Decision::Rejected => {
            audit::log_line(j);
            pgrx::pg_sys::panic::ErrorReport::new(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                report.message.clone(),
                "pg_migration_guard",
            )
            .set_detail(report.detail.clone())
            .set_hint(report.hint.clone())
            .report(PgLogLevel::ERROR);
        }
        Decision::Warned => {
            audit::log_line(j);
            pgrx::pg_sys::panic::ErrorReport::new(PgSqlErrorCode::ERRCODE_WARNING, report.message.clone(), "pg_migration_guard")
                .set_detail(report.detail.clone())
                .set_hint(report.hint.clone())
                .report(PgLogLevel::WARNING);
        }
        Decision::Allowed => {}
    }
}

/// Runs `f` inside an internal subtransaction (the way PL/pgSQL runs an EXCEPTION block),
/// so that any PostgreSQL error or Rust panic in the guard's own work is caught, rolled back
/// cleanly (locks, buffer pins, relcache references, memory) and returned as text.
pub unsafe fn in_subtransaction<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    unsafe {
        let oldcxt = pg_sys::CurrentMemoryContext;
        let oldowner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(oldcxt);
        let f = std::panic::AssertUnwindSafe(f);
        let result = pgrx::PgTryBuilder::new(move || Ok(f()))
            .catch_others(|e| {
                Err(match e {
                    pg_sys::panic::CaughtError::PostgresError(r)
                    | pg_sys::panic::CaughtError::ErrorReport(r)
                    | pg_sys::panic::CaughtError::RustPanic { ereport: r, .. } => r.message().to_string(),
                })
            })
            .execute();
        pg_sys::MemoryContextSwitchTo(oldcxt);
        if result.is_ok() {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(oldcxt);
        pg_sys::CurrentResourceOwner = oldowner;
        result
    }
}

//! The ProcessUtility hook: the only entry point of the guard.
//!
//! For every utility statement PostgreSQL runs — sent by a client at top level
//! (PROCESS_UTILITY_TOPLEVEL), or from PL/pgSQL, a DO block, a function or a procedure
//! (PROCESS_UTILITY_QUERY, PROCESS_UTILITY_QUERY_NONATOMIC) — the hook:
//! 1. takes the fast path for anything that is not DDL (BEGIN, COMMIT, SET, SHOW, ...):
//!    a GUC read and a node-tag test, no allocation, no catalog access;
//! 2. skips PROCESS_UTILITY_SUBCOMMAND re-entries (CREATE TABLE / ALTER TABLE expanding
//!    into further statements): the parent statement was judged already;
//! 3. unless the session is exempt (`exempt_roles`, `application_name_pattern`), judges the
//!    statement before anything runs (no lock has been taken yet), honouring a
//!    `pg_migration_guard:allow` annotation (`crate::overrides`), and rejects it or warns;
//!    every decision is written to the server log as it is made;
//! 4. with `lock_timeout_policy = auto`, takes the statement's locks in short, retried
//!    waits so that it never stalls the queries queued behind it (`crate::lockqueue`);
//! 5. always chains to the previous hook or standard_ProcessUtility;
//! 6. queues the audit record (`crate::audit`) once the outcome is known: before a
//!    rejection's ERROR, after the statement completed, or when the (sub)transaction it
//!    failed in aborts, with the SQLSTATE seen by an error context callback pushed for the
//!    statement's run.

use std::ffi::CStr;

use pgrx::pg_sys;
use pgrx::{PgLogLevel, PgSqlErrorCode};

use crate::audit::{Outcome, Session};
use crate::decision::{self, Decision, JudgingFailure, Overrides, Verdict};
use crate::judging::lock_targets as locks;
use crate::judging::{self, facts, scanner};
use crate::{audit, citus, guc, lockqueue, overrides, sqltext, subxact};

static mut PREV_PROCESS_UTILITY: pg_sys::ProcessUtility_hook_type = None;

// standard_ProcessUtility declared directly, not through pgrx's binding: pgrx wraps every
// binding in a guard that turns a PostgreSQL ERROR into a Rust panic and re-raises it
// with only its code, message, detail and hint, which would strip CONTEXT, cursor
// position and object names from the errors of every utility statement (COPY line
// numbers, PL/pgSQL context). Called from a frame with nothing to drop, an ERROR's
// longjmp passes through untouched (a "plain old frame", Rust RFC 2945).
unsafe extern "C-unwind" {
    #[cfg(not(feature = "pg13"))]
    #[link_name = "standard_ProcessUtility"]
    fn standard_process_utility_raw(
        pstmt: *mut pg_sys::PlannedStmt,
        query_string: *const std::ffi::c_char,
        read_only_tree: bool,
        context: pg_sys::ProcessUtilityContext::Type,
        params: pg_sys::ParamListInfo,
        query_env: *mut pg_sys::QueryEnvironment,
        dest: *mut pg_sys::DestReceiver,
        qc: *mut pg_sys::QueryCompletion,
    );
    #[cfg(feature = "pg13")]
    #[link_name = "standard_ProcessUtility"]
    fn standard_process_utility_raw(
        pstmt: *mut pg_sys::PlannedStmt,
        query_string: *const std::ffi::c_char,
        context: pg_sys::ProcessUtilityContext::Type,
        params: pg_sys::ParamListInfo,
        query_env: *mut pg_sys::QueryEnvironment,
        dest: *mut pg_sys::DestReceiver,
        qc: *mut pg_sys::QueryCompletion,
    );
}

/// Installs the hook, keeping the previous one to chain to, and the transaction callbacks
/// that free the records of statements an ERROR interrupted. Called from `_PG_init` while
/// shared_preload_libraries is processed, so every backend inherits it.
pub unsafe fn install() {
    // SAFETY: called once, from _PG_init while shared_preload_libraries is processed, before
    // any backend runs a statement: nothing reads the hook variables concurrently.
    unsafe {
        PREV_PROCESS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(guard_process_utility);
        pg_sys::RegisterXactCallback(Some(xact_callback), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(subxact_callback), std::ptr::null_mut());
    }
}

/// The hook. Deliberately not `#[pg_guard]` and holding no value with a destructor across
/// the chained call (see `standard_process_utility_raw`): the judging before and the audit
/// after run in their own guarded functions.
#[cfg(not(feature = "pg13"))]
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
    // SAFETY: PostgreSQL calls the hook with valid arguments; they are passed on unchanged.
    // `pending` is a raw pointer (no destructor), so an ERROR from the chained call may
    // longjmp over this frame.
    unsafe {
        let pending = if cheap_skip(pstmt, context) { std::ptr::null_mut() } else { before(pstmt, query_string) };
        match PREV_PROCESS_UTILITY {
            Some(prev) => prev(pstmt, query_string, read_only_tree, context, params, query_env, dest, qc),
            None => standard_process_utility_raw(pstmt, query_string, read_only_tree, context, params, query_env, dest, qc),
        }
        if !pending.is_null() {
            after(pending);
        }
    }
}

#[cfg(feature = "pg13")]
unsafe extern "C-unwind" fn guard_process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    // SAFETY: PostgreSQL calls the hook with valid arguments; they are passed on unchanged.
    // `pending` is a raw pointer (no destructor), so an ERROR from the chained call may
    // longjmp over this frame.
    unsafe {
        let pending = if cheap_skip(pstmt, context) { std::ptr::null_mut() } else { before(pstmt, query_string) };
        match PREV_PROCESS_UTILITY {
            Some(prev) => prev(pstmt, query_string, context, params, query_env, dest, qc),
            None => standard_process_utility_raw(pstmt, query_string, context, params, query_env, dest, qc),
        }
        if !pending.is_null() {
            after(pending);
        }
    }
}

/// The statements that are running: pushed by `before`, popped by `after`.
/// An ERROR in the statement skips `after`; the (sub)transaction abort callbacks free
/// the records that belonged to the aborted (sub)transaction.
static mut PENDING: Vec<(pg_sys::SubTransactionId, *mut Pending)> = Vec::new();

/// Judges the statement and acts on the verdict (ERROR or WARNING). Returns the record to
/// audit after the statement ran, or null when the statement is not judged.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn before(pstmt: *mut pg_sys::PlannedStmt, query_string: *const std::ffi::c_char) -> *mut Pending {
    // SAFETY: `pstmt` is the hook's valid planned statement, inside a transaction
    // (should_judge checks the state). `p` comes from Box::into_raw and is owned by PENDING
    // until `after`, `record_failed` or the abort callbacks take it back; its error context
    // lives in that box, so the pointer on error_context_stack stays valid until it is popped.
    unsafe {
        if !should_judge((*pstmt).utilityStmt) {
            return std::ptr::null_mut();
        }
        // On a Citus node holding placements itself (a reference table's shard on the
        // coordinator), Citus runs the shard's copy of a statement in this backend while the
        // statement runs: judged and audited with the statement already.
        if let Some((_, outer)) = (*std::ptr::addr_of!(PENDING)).last() {
            let outer: Vec<pg_sys::Oid> = (**outer).event.locks.iter().map(|t| t.oid).collect();
            if citus::local_placement_of((*pstmt).utilityStmt, &outer) {
                return std::ptr::null_mut();
            }
        }
        let started_at = pg_sys::GetCurrentTimestamp();
        // Exempt sessions; then, on a Citus node, the shard DDL Citus itself sends for a
        // statement its coordinator judged (`pg_migration_guard.citus_internal = trust`).
        let exemption = guc::exemption().or_else(|| citus::internal_exemption((*pstmt).utilityStmt));
        let mut pending = judge(pstmt, query_string, exemption);
        pending.event.started_at = started_at;
        audit::log_decision(&mut pending.event);
        if pending.event.verdict.decision == Decision::Rejected {
            // The rejection aborts the transaction (unless an exception block catches it):
            // give it an xid so the audit view can tell which.
            if !pg_sys::RecoveryInProgress() {
                pg_sys::GetTopTransactionId();
            }
            audit::record(&pending.event, Outcome::NotRun, true);
        }
        act(&pending);
        let exempt = pending.event.verdict.decision == Decision::Exempt;
        let p = Box::into_raw(Box::new(pending));
        (*std::ptr::addr_of_mut!(PENDING)).push((pg_sys::GetCurrentSubTransactionId(), p));
        // From here on an ERROR (the lock queue's 55P03, the statement's own) leaves its
        // SQLSTATE in the record, which the abort callbacks queue.
        (*p).error_context =
            pg_sys::ErrorContextCallback { previous: pg_sys::error_context_stack, callback: Some(error_seen), arg: p.cast() };
        pg_sys::error_context_stack = &raw mut (*p).error_context;
        // VACUUM runs each table in a transaction of its own: locks taken here would be
        // released before it starts.
        let own_transactions = (*(*pstmt).utilityStmt).type_ == pg_sys::NodeTag::T_VacuumStmt;
        if !exempt && guc::LOCK_TIMEOUT_POLICY.get() == guc::LockTimeoutPolicy::Auto && !own_transactions {
            lockqueue::take_locks(&(*p).event.locks, &(*p).event.command_tag);
        }
        (*p).relfilenodes = (*p).event.locks.iter().map(|t| facts::relfilenode(t.oid)).collect();
        p
    }
}

/// Error context callback pushed while a judged statement runs: PostgreSQL calls it for
/// every message reported in that time (errfinish), before an ERROR unwinds. Keeps the
/// SQLSTATE of the last error-class message (not 00 success, 01 warning, 02 no data).
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn error_seen(arg: *mut std::ffi::c_void) {
    // SAFETY: `arg` is the Pending this callback was pushed with; it stays allocated while the
    // callback is on error_context_stack (popped before the box is freed, or unwound with the
    // stack by the ERROR).
    unsafe {
        let code = pg_sys::geterrcode();
        let class = code & 0xFFF;
        if class != 0 && class != 1 << 6 && class != 2 << 6 {
            (*(arg as *mut Pending)).error_sqlstate = Some(code);
        }
    }
}

/// Takes the statement's error context callback off the stack, when it is on top (after a
/// normal return it is; after an ERROR the catching code restored the stack already).
unsafe fn pop_error_context(j: *mut Pending) {
    // SAFETY: `j` points to a live Pending (the caller holds it).
    unsafe {
        if std::ptr::eq(pg_sys::error_context_stack, &raw mut (*j).error_context) {
            pg_sys::error_context_stack = (*j).error_context.previous;
        }
    }
}

/// Records the decision once the statement ran.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn after(p: *mut Pending) {
    // SAFETY: `p` was pushed on PENDING by `before`; it is freed only here, after it is
    // removed from PENDING, so no abort callback can free it twice.
    unsafe {
        let pending = &mut *std::ptr::addr_of_mut!(PENDING);
        if let Some(i) = pending.iter().rposition(|(_, q)| *q == p) {
            pending.remove(i);
            pop_error_context(p);
            let pending = Box::from_raw(p);
            let rewritten = pending
                .event
                .locks
                .iter()
                .zip(&pending.relfilenodes)
                .map(|(t, before)| matches!((before, facts::relfilenode(t.oid)), (Some(b), Some(a)) if a != *b))
                .collect();
            audit::record(&pending.event, Outcome::Completed { rewritten }, true);
        }
    }
}

/// Queues the record of a statement its (sub)transaction's abort interrupted.
unsafe fn record_failed(p: *mut Pending) {
    // SAFETY: `p` was just removed from PENDING by the caller: this is its only owner.
    unsafe {
        let pending = Box::from_raw(p);
        audit::record(&pending.event, Outcome::Failed { sqlstate: pending.error_sqlstate }, false);
    }
}

/// The part of the fast path that needs no PostgreSQL call, tested before entering the
/// pg_guard-wrapped `before` (whose wrapper alone costs more than this test): mode off, a
/// subcommand, or a statement tag applications send all the time (BEGIN, SET, SHOW, ...).
#[inline(always)]
unsafe fn cheap_skip(pstmt: *mut pg_sys::PlannedStmt, context: pg_sys::ProcessUtilityContext::Type) -> bool {
    if guc::MODE.get() == guc::GuardMode::Off || context == pg_sys::ProcessUtilityContext::PROCESS_UTILITY_SUBCOMMAND {
        return true;
    }
    // SAFETY: `pstmt` is the hook's valid planned statement; its utility node is read only
    // when non-null.
    unsafe {
        let node = (*pstmt).utilityStmt;
        node.is_null() || judging::is_everyday_statement((*node).type_)
    }
}

/// Transaction callback, called at every transaction event of every transaction: returns
/// before the pg_guard-wrapped body when no judged statement is pending (nearly always).
unsafe extern "C-unwind" fn xact_callback(event: pg_sys::XactEvent::Type, arg: *mut std::ffi::c_void) {
    // SAFETY: PENDING is only touched by this backend's main thread.
    unsafe {
        if (*std::ptr::addr_of!(PENDING)).is_empty() {
            return;
        }
        xact_callback_guarded(event, arg);
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn xact_callback_guarded(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    // SAFETY: PENDING is only touched by this backend's main thread; each entry is a live box,
    // drained once.
    unsafe {
        match event {
            XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => {
                for (_, p) in (*std::ptr::addr_of_mut!(PENDING)).drain(..).rev() {
                    record_failed(p);
                }
            }
            _ => {}
        }
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn subxact_callback(
    event: pg_sys::SubXactEvent::Type,
    my_subid: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        // SAFETY: PENDING is only touched by this backend's main thread; entries are removed
        // before their box is freed.
        unsafe {
            // Subtransaction ids grow within a transaction: everything pushed at or below
            // the aborted subtransaction has an id >= its own.
            let pending = &mut *std::ptr::addr_of_mut!(PENDING);
            let mut i = pending.len();
            while i > 0 {
                i -= 1;
                if pending[i].0 >= my_subid {
                    let (_, p) = pending.remove(i);
                    record_failed(p);
                }
            }
        }
    }
}

/// The hook's bookkeeping for one judged statement while it runs (pgaudit's
/// `AuditEventStackItem`): the audit event, and what the hook needs to complete it.
struct Pending {
    /// What the audit records (`crate::audit::Event`).
    event: audit::Event,
    /// The SQLSTATE of the error that kept the guard from judging the statement, if one did.
    failure_code: Option<PgSqlErrorCode>,
    /// relfilenode of each of `event.locks` before the statement ran.
    relfilenodes: Vec<Option<u32>>,
    /// The SQLSTATE of the last error reported while the statement ran.
    error_sqlstate: Option<i32>,
    /// On PostgreSQL's error_context_stack while the statement runs (see `error_seen`).
    error_context: pg_sys::ErrorContextCallback,
}

/// The rest of the fast path, for what `cheap_skip` let through (not mode off, not a
/// subcommand, a non-null node): is this a statement the guard judges, now?
#[inline]
unsafe fn should_judge(node: *mut pg_sys::Node) -> bool {
    // SAFETY: `node` is a valid, non-null utility parse tree (cheap_skip tested it); the
    // globals read are this backend's.
    unsafe {
        if !judging::is_judged_statement(node) {
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

/// The text of the statement being run: its own bytes within the query string (bounds as
/// `CleanQuerytext` computes them) and their offset in it. Reads only the statement's own
/// part of the string when PostgreSQL gave its length, so that judging each statement of a
/// long multi-statement string costs the length of that statement, not of the whole string.
unsafe fn statement_bounds<'a>(pstmt: *mut pg_sys::PlannedStmt, query_string: *const std::ffi::c_char) -> (&'a [u8], usize) {
    // SAFETY: `query_string` is the NUL-terminated source text of `pstmt`; the parser's
    // stmt_location and stmt_len lie within it, so the slice stays inside the string.
    unsafe {
        if query_string.is_null() {
            return (b"", 0);
        }
        let (location, len) = ((*pstmt).stmt_location, (*pstmt).stmt_len);
        let (location, len) = match usize::try_from(location) {
            Ok(at) if at > 0 => {
                crate::judging::statement_with_leading_comments(std::slice::from_raw_parts(query_string.cast::<u8>(), at), len)
            }
            _ => (location, len),
        };
        // The window of the query string that holds the statement: from its location, and
        // `len` bytes long when known (the parser's locations lie within the string);
        // otherwise to the end of the string (the last statement, or a single one).
        let base = usize::try_from(location).unwrap_or(0);
        let window: &[u8] = match usize::try_from(len) {
            Ok(l) if l > 0 && location >= 0 => std::slice::from_raw_parts(query_string.add(base).cast::<u8>(), l),
            _ => CStr::from_ptr(query_string.add(base)).to_bytes(),
        };
        let (start, end) = sqltext::clean_query_bounds(window, 0, window.len() as i32);
        (&window[start..end], base + start)
    }
}

unsafe fn judge(pstmt: *mut pg_sys::PlannedStmt, query_string: *const std::ffi::c_char, exemption: Option<String>) -> Pending {
    // SAFETY: `pstmt` is the hook's valid planned statement, inside a valid transaction.
    unsafe {
        let node = (*pstmt).utilityStmt;
        let (text_bytes, start) = statement_bounds(pstmt, query_string);
        let statement = audit::lossy(text_bytes);
        let command_tag = audit::lossy(CStr::from_ptr(pg_sys::GetCommandTagName(pg_sys::CreateCommandTag(node))).to_bytes());
        let mut j = Pending {
            event: audit::Event {
                statement,
                command_tag,
                verdict: Verdict::allowed(),
                exemption: None,
                locks: vec![],
                session: Session::current(),
                // A hot standby has no audit writer (it starts when recovery ends) and
                // cannot write the table: its decisions are in its server log only, and a
                // record queued there would wait in shared memory until promotion.
                audited: !pg_sys::RecoveryInProgress() && audit::audit_table().is_some(),
                started_at: 0,
                logged: false,
            },
            failure_code: None,
            relfilenodes: vec![],
            error_sqlstate: None,
            error_context: pg_sys::ErrorContextCallback { previous: std::ptr::null_mut(), callback: None, arg: std::ptr::null_mut() },
        };
        if let Some(reason) = exemption {
            // Not judged; the locks are still looked up, for the audit row.
            j.event.locks = subxact::in_subtransaction(|| locks::lock_targets(node)).unwrap_or_default();
            j.event.verdict.decision = Decision::Exempt;
            j.event.exemption = Some(reason);
            return j;
        }
        // The statement's comments as PostgreSQL's lexer finds them, looked for only when
        // the text mentions the marker. When they cannot be found the statement is judged
        // as if it had no annotation: a failure here must not let it through unjudged.
        let comments = if overrides::mentions_marker(&j.event.statement) {
            scanner::comments(text_bytes).unwrap_or_else(|cause| {
                pgrx::pg_sys::panic::ErrorReport::new(
                    PgSqlErrorCode::ERRCODE_WARNING,
                    format!(
                        "pg_migration_guard could not find the comments of this {} statement; it is judged as if it had no annotation",
                        j.event.command_tag
                    ),
                    "pg_migration_guard",
                )
                .set_detail(format!("PostgreSQL's scanner failed on the statement's text: {cause}."))
                .report(PgLogLevel::WARNING);
                Vec::new()
            })
        } else {
            Vec::new()
        };
        let annotation = match overrides::parse(comments.iter().map(String::as_str)) {
            Ok(a) => a,
            Err(message) => {
                // A malformed annotation is the user's error, reported as such (22023).
                j.event.verdict = Verdict { decision: Decision::Rejected, ..Verdict::allowed() };
                j.event.exemption = Some(message.clone());
                audit::log_decision(&mut j.event);
                if !pg_sys::RecoveryInProgress() {
                    pg_sys::GetTopTransactionId();
                }
                audit::record(&j.event, Outcome::NotRun, true);
                pgrx::pg_sys::panic::ErrorReport::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, message, "pg_migration_guard")
                    .set_hint(overrides::syntax_hint())
                    .report(PgLogLevel::ERROR);
                unreachable!();
            }
        };
        let policy = Overrides { annotation, allowed: guc::ALLOW_OVERRIDES.get() };
        let text = facts::StatementText { text: &j.event.statement, offset: start };
        match judging::verdict_for(node, &text, &policy) {
            Ok((verdict, locks)) => {
                j.event.verdict = verdict;
                j.event.locks = locks;
            }
            Err(caught) => {
                // Fail closed (on_judging_error = reject, the default): the statement is
                // refused with the cause. Its locks are still looked up, so that a statement
                // let through unjudged has the right `locks` and `rewrote_table` in its row.
                let failure = JudgingFailure { cause: caught.message, hint: caught.hint };
                j.event.verdict = decision::undecided(guc::mode(), guc::on_judging_error(), &j.event.command_tag, &failure);
                j.failure_code = Some(caught.code);
                j.event.locks = subxact::in_subtransaction(|| locks::lock_targets(node)).unwrap_or_default();
            }
        }
        j
    }
}

/// Reports the verdict to the client: ERROR for a rejection, WARNING for a warning or an
/// override, nothing otherwise. (The LOG line and, for a rejection, the audit record were
/// written before.)
fn act(j: &Pending) {
    let Some(report) = &j.event.verdict.report else { return };
    let (code, level) = match j.event.verdict.decision {
        // A statement the guard could not judge is refused with its cause's SQLSTATE.
        Decision::Rejected => (j.failure_code.unwrap_or(PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE), PgLogLevel::ERROR),
        Decision::Warned | Decision::Overridden => (PgSqlErrorCode::ERRCODE_WARNING, PgLogLevel::WARNING),
        Decision::Allowed | Decision::Exempt => return,
    };
    let mut e = pgrx::pg_sys::panic::ErrorReport::new(code, report.message.clone(), "pg_migration_guard").set_detail(report.detail.clone());
    if !report.hint.is_empty() {
        e = e.set_hint(report.hint.clone());
    }
    e.report(level);
}

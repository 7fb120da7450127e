//! Internal subtransactions, the way PL/pgSQL runs a block with an EXCEPTION clause
//! (src/pl/plpgsql/src/pl_exec.c, exec_stmt_block): the one mechanism behind judging
//! (always rolled back), the lock rounds of `lockqueue` (kept when they succeed) and the
//! #[pg_test] helpers.

use pgrx::pg_sys;
use pgrx::pg_sys::panic::{CaughtError, ErrorReportWithLevel};
use pgrx::PgSqlErrorCode;

/// What to do with the subtransaction when `f` returned normally.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OnSuccess {
    /// ReleaseCurrentSubTransaction: what it did (locks taken, rows written) becomes part
    /// of the enclosing transaction.
    Keep,
    /// RollbackAndReleaseCurrentSubTransaction: everything it took or wrote is released.
    RollBack,
}

/// Runs `f` in an internal subtransaction. A PostgreSQL error or Rust panic inside is
/// caught, the subtransaction rolled back, and the error returned for the caller to
/// inspect or rethrow. The caller's memory context and resource owner are restored in
/// every case.
///
/// # Safety
/// Must be called inside a transaction, from a backend's main thread.
// pgrx's CaughtError is large (a whole error report); it is built only on the error path.
#[allow(clippy::result_large_err)]
pub unsafe fn run<R>(on_success: OnSuccess, f: impl FnOnce() -> R) -> Result<R, CaughtError> {
    unsafe {
        let oldcxt = pg_sys::CurrentMemoryContext;
        let oldowner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(oldcxt);
        let f = std::panic::AssertUnwindSafe(f);
        let result = pgrx::PgTryBuilder::new(move || Ok(f())).catch_others(Err).execute();
        pg_sys::MemoryContextSwitchTo(oldcxt);
        if result.is_ok() && on_success == OnSuccess::Keep {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(oldcxt);
        pg_sys::CurrentResourceOwner = oldowner;
        result
    }
}

/// The error report a caught error carries, whichever way it was raised.
pub fn report(e: &CaughtError) -> &ErrorReportWithLevel {
    match e {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) | CaughtError::RustPanic { ereport: r, .. } => r,
    }
}

/// An error caught by [`in_subtransaction`]: PostgreSQL's (or a Rust panic's) message,
/// SQLSTATE and hint.
#[derive(Debug, Clone)]
pub struct Caught {
    pub message: String,
    pub code: PgSqlErrorCode,
    pub hint: Option<String>,
}

impl std::fmt::Display for Caught {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Runs `f` inside an internal subtransaction (the way PL/pgSQL runs an EXCEPTION block) and
/// always rolls it back: the callers only read, and the rollback releases anything `f` took
/// (a conditional lock, buffer pins, relcache references, GUC nest levels). A PostgreSQL
/// error or Rust panic inside is caught and returned, except a query cancel
/// (statement_timeout, pg_cancel_backend) and an administrator's shutdown request, which
/// are raised again after the rollback, as PL/pgSQL's OTHERS does not catch them either.
///
/// # Safety
/// Must be called inside a transaction, from a backend's main thread.
pub unsafe fn in_subtransaction<R>(f: impl FnOnce() -> R) -> Result<R, Caught> {
    match unsafe { run(OnSuccess::RollBack, f) } {
        Ok(v) => Ok(v),
        Err(e) => {
            let r = report(&e);
            let code = r.sql_error_code();
            if matches!(code, PgSqlErrorCode::ERRCODE_QUERY_CANCELED | PgSqlErrorCode::ERRCODE_ADMIN_SHUTDOWN) {
                e.rethrow();
            }
            // A Rust panic carries no SQLSTATE of its own: the guard's internal error.
            let code = if matches!(e, CaughtError::RustPanic { .. }) { PgSqlErrorCode::ERRCODE_INTERNAL_ERROR } else { code };
            Err(Caught { message: r.message().to_string(), code, hint: r.hint().map(str::to_string) })
        }
    }
}

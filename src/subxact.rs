//! Internal subtransactions, the way PL/pgSQL runs a block with an EXCEPTION clause
//! (src/pl/plpgsql/src/pl_exec.c, exec_stmt_block): the one mechanism behind judging
//! (always rolled back), the lock rounds of `lockqueue` (kept when they succeed) and the
//! #[pg_test] helpers.

use pgrx::pg_sys;
use pgrx::pg_sys::panic::{CaughtError, ErrorReportWithLevel};

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

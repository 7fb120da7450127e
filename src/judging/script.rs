//! What the facts layer must know about a migration script that `pg_migration_guard.check()`
//! judges without running it: the state earlier statements of the script would have left
//! in this transaction, which the catalog does not show yet.
//!
//! The live path reads the same facts from the catalog and the lock manager: the locks this
//! transaction holds (`CheckRelationLockedByMe`, for VALIDATE CONSTRAINT after ADD ...
//! NOT VALID), the columns a relation has (`pg_attribute`), the columns this transaction
//! dropped (`columns::dropped_in_this_transaction`). While `check()` judges a statement it
//! installs a [`View`] of the script's simulated state, and those decision points consult it
//! besides the catalog; outside `check()` there is no view and nothing changes.

use std::cell::RefCell;
use std::collections::HashMap;

use pgrx::pg_sys;

use crate::model::LockMode;

/// The script's state as the facts layer sees it, for relations that exist in the catalog.
#[derive(Default, Clone, Debug)]
pub struct View {
    /// The strongest lock the script's current transaction holds on each relation: what the
    /// statements before this one in the same transaction would have taken.
    pub held: HashMap<pg_sys::Oid, LockMode>,
    /// Columns added by earlier statements of the script (name bytes).
    pub added: HashMap<pg_sys::Oid, Vec<Vec<u8>>>,
    /// Columns dropped by earlier statements of the script: name bytes, and whether the drop
    /// is in the script's current transaction.
    pub dropped: HashMap<pg_sys::Oid, Vec<(Vec<u8>, bool)>>,
}

thread_local! {
    static VIEW: RefCell<Option<View>> = const { RefCell::new(None) };
}

/// Installs `view` while `f` runs (also when `f` unwinds).
pub fn with_view<R>(view: View, f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            VIEW.with(|v| v.borrow_mut().take());
        }
    }
    VIEW.with(|v| *v.borrow_mut() = Some(view));
    let _reset = Reset;
    f()
}

/// Whether a script is being judged (`check()`), not a statement being run.
pub fn active() -> bool {
    VIEW.with(|v| v.borrow().is_some())
}

/// The strongest lock the script's current transaction holds on `oid`, if any.
pub fn held(oid: pg_sys::Oid) -> Option<LockMode> {
    VIEW.with(|v| v.borrow().as_ref().and_then(|v| v.held.get(&oid).copied()))
}

/// Whether an earlier statement of the script adds column `name` to `oid` (and no later
/// one drops it again).
pub fn column_added(oid: pg_sys::Oid, name: &[u8]) -> bool {
    VIEW.with(|v| v.borrow().as_ref().is_some_and(|v| v.added.get(&oid).is_some_and(|a| a.iter().any(|n| n == name))))
}

/// `Some(in_current_transaction)` when an earlier statement of the script drops column
/// `name` of `oid` (and no later one adds it back).
pub fn column_dropped(oid: pg_sys::Oid, name: &[u8]) -> Option<bool> {
    VIEW.with(|v| {
        v.borrow().as_ref().and_then(|v| v.dropped.get(&oid).and_then(|d| d.iter().find(|(n, _)| n == name).map(|(_, now)| *now)))
    })
}

/// Raises the error that makes `check()` answer `unknown`: the statement needs a fact of
/// the script's own making that the catalog cannot describe yet (SQLSTATE 0A000).
pub fn unknown(reason: String) -> ! {
    pgrx::pg_sys::panic::ErrorReport::new(pgrx::PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED, reason, "pg_migration_guard")
        .report(pgrx::PgLogLevel::ERROR);
    unreachable!()
}

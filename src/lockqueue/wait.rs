//! Waiting for the transactions that hold conflicting locks to end, between two attempts,
//! without entering the relation's lock queue.
//!
//! This is how CREATE INDEX CONCURRENTLY waits for the holders of conflicting locks
//! (src/backend/storage/lmgr/lmgr.c, WaitForLockersMultiple): find them with
//! `GetLockConflicts`, then `VirtualXactLock(vxid, true)` on each. VirtualXactLock
//! (src/backend/storage/lmgr/lock.c) requests ShareLock on the holder's virtual-transaction
//! lock, which every backend holds in ExclusiveLock from the start to the end of each of its
//! transactions (moved from its fast-path slot into the main lock table first, so that the
//! waiter can sleep on it). The wait is an ordinary lock wait (ProcSleep in
//! src/backend/storage/lmgr/proc.c, shown as wait event `Lock`/`virtualxid`), on a lock
//! that only its holder holds and only waiters of this kind request: the relation's lock
//! queue is untouched, so no query queues behind it. When the virtual transaction has ended
//! and `max_prepared_transactions` > 0, VirtualXactLock goes on to wait for a prepared
//! transaction it may have become (XactLockForVirtualXact: ShareLock on its xid, as
//! XactLockTableWait in lmgr.c does): a second lock wait inside the same call.

use std::ffi::{c_int, c_uint};
use std::time::Duration;

use pgrx::{pg_sys, PgSqlErrorCode};

use crate::subxact::{self, OnSuccess};

/// `LOCK_TIMEOUT` in `enum TimeoutId` (src/include/utils/timeout.h): the third of the
/// predefined timeout reasons, after STARTUP_PACKET_TIMEOUT and DEADLOCK_TIMEOUT (checked
/// in the headers of 15 and 18).
const LOCK_TIMEOUT: c_uint = 2;

// Functions of src/include/utils/timeout.h, which pgrx does not bind, called through
// `pg_guard_ffi_boundary` like every binding pgrx generates.
unsafe extern "C-unwind" {
    #[link_name = "enable_timeout_after"]
    fn enable_timeout_after_raw(id: c_uint, delay_ms: c_int);
    #[link_name = "disable_timeout"]
    fn disable_timeout_raw(id: c_uint, keep_indicator: bool);
}

/// How a wait ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Waited {
    /// Every transaction waited for has ended (committed, rolled back or prepared and then
    /// resolved).
    Ended,
    /// `limit` passed first.
    LimitReached,
}

/// Waits until each transaction in `vxids` (as `GetLockConflicts` returns them) has ended,
/// for at most `limit` in all. Returns [`Waited::LimitReached`] when the limit passes first;
/// raises again a query cancel (`statement_timeout`, `pg_cancel_backend`), a termination,
/// and the deadlock error of PostgreSQL's deadlock detector.
///
/// **The bound.** ProcSleep arms PostgreSQL's `LOCK_TIMEOUT` timer for each lock wait when
/// `LockTimeout` (the `lock_timeout` setting) is above zero, and disarms it when the wait
/// ends; setting `LockTimeout`, as an attempt does, would bound each of VirtualXactLock's two
/// waits (and each holder's) separately. Instead `LockTimeout` is 0 for the duration and
/// the guard arms that timer itself, once, at the deadline: ProcSleep then leaves it alone
/// (it only arms and disarms `DEADLOCK_TIMEOUT`), and when it fires its handler
/// (LockTimeoutHandler in src/backend/utils/init/postinit.c) sends the query-cancel signal
/// that ProcessInterrupts (src/backend/tcop/postgres.c) reports as SQLSTATE 55P03
/// "canceling statement due to lock timeout" — in ProcSleep's loop, which also removes the
/// request from the wait queue (LockErrorCleanup), or at the next CHECK_FOR_INTERRUPTS. The
/// waits run in an internal subtransaction that catches that error. Inside it, once the last
/// wait has ended, the timer is disarmed keeping its indicator (as ProcSleep and
/// LockErrorCleanup do) and interrupts are processed, so that a deadline that passes just as
/// the wait ends is reported there, as a lock timeout, and never later as a user cancel.
/// After any other error the timer is disarmed the same way, and the error raised again.
///
/// **Deadlocks.** Being an ordinary lock wait, it is seen by PostgreSQL's deadlock detector
/// (src/backend/storage/lmgr/deadlock.c), which ProcSleep runs once the wait has lasted
/// `deadlock_timeout`: a cycle through it (this session waits for a transaction that waits
/// for a lock this one holds) is broken by PostgreSQL as any other, and when this session is
/// the one chosen its SQLSTATE 40P01 is raised here. The same check cancels an autovacuum
/// worker (not anti-wraparound) this session waits for, as for any lock request.
///
/// # Safety
/// Inside a transaction, from the backend's main thread, in a regular backend (one whose
/// `LOCK_TIMEOUT` handler is registered by InitPostgres).
pub(super) unsafe fn for_transactions(vxids: &[pg_sys::VirtualTransactionId], limit: Duration) -> Waited {
    if vxids.is_empty() {
        return Waited::Ended;
    }
    if limit.is_zero() {
        return Waited::LimitReached;
    }
    let delay_ms = limit.as_millis().clamp(1, c_int::MAX as u128) as c_int;
    unsafe {
        let saved_lock_timeout = pg_sys::LockTimeout;
        pg_sys::LockTimeout = 0;
        pg_sys::ffi::pg_guard_ffi_boundary(|| enable_timeout_after_raw(LOCK_TIMEOUT, delay_ms));
        let result = subxact::run(OnSuccess::RollBack, || {
            for vxid in vxids {
                pg_sys::VirtualXactLock(*vxid, true);
            }
            pg_sys::ffi::pg_guard_ffi_boundary(|| disable_timeout_raw(LOCK_TIMEOUT, true));
            pg_sys::check_for_interrupts!();
        });
        pg_sys::ffi::pg_guard_ffi_boundary(|| disable_timeout_raw(LOCK_TIMEOUT, true));
        pg_sys::LockTimeout = saved_lock_timeout;
        match result {
            Ok(()) => Waited::Ended,
            Err(e) if subxact::report(&e).sql_error_code() == PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE => Waited::LimitReached,
            Err(e) => e.rethrow(),
        }
    }
}

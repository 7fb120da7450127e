//! Lock-queue protection, `pg_migration_guard.lock_timeout_policy = auto`.
//!
//! PostgreSQL's lock queue is fair: a request that waits makes every later request that
//! conflicts with it wait too. An ALTER TABLE that waits for ACCESS EXCLUSIVE behind a
//! long report therefore stops every query on the table until the report ends, although
//! the ALTER itself would take milliseconds.
//!
//! Before the statement runs, the guard takes the locks it will need (`crate::judging::lock_targets`) in
//! rounds — for a statement that needs at least one lock that blocks reads or writes, all
//! of its predicted locks, the weak ones included, so that the statement never waits for a
//! lock while holding a strong one ([`taken_ahead`] says which). Each round (an attempt)
//! runs in an internal subtransaction and waits for each lock at most `lock_attempt_timeout`
//! (PostgreSQL's own lock wait, bounded by setting `LockTimeout` for that one request, as
//! `lock_timeout` does). A round that times out is rolled back, which releases whatever it
//! had taken and lets the queries queued behind it run.
//!
//! Between two attempts the guard does not queue: it waits for the transactions that hold
//! conflicting locks to end, as CREATE INDEX CONCURRENTLY waits for them (lmgr.c,
//! WaitForLockers: `GetLockConflicts`, then `VirtualXactLock` on each; see [`wait`]). That
//! wait is in the lock manager, on each holder's virtual-transaction lock, not in the
//! relation's queue: no query waits behind it, and it ends as soon as the last holder
//! commits or rolls back. Then the guard attempts again at once. Only the attempts ever make
//! other sessions wait — at most `lock_attempt_timeout` each, usually one or two attempts
//! per statement (one more for each new transaction that took a conflicting lock while the
//! guard waited, and for each transaction of a holder that keeps its lock from one
//! transaction to the next: CREATE INDEX CONCURRENTLY's session lock). If an attempt times out with nobody holding a conflicting lock (it queued
//! behind another waiting request, which GetLockConflicts does not report), the guard
//! attempts once more at once and, if that fails the same way, pauses as it did before it
//! could wait — the first pause about as long as one attempt, doubling up to 500 ms, each
//! randomised by ±50% — so that the queue ahead can move.
//!
//! Attempts, waits and pauses together last at most `lock_retry_budget`; then the guard
//! raises SQLSTATE 55P03 naming the sessions that hold conflicting locks and saying how
//! many attempts it made. A round that succeeds is committed into the statement's
//! transaction: the statement then finds its locks already held and runs at once; a DEBUG1
//! message says after how many attempts.
//!
//! Locks the guard does not predict (see `crate::judging::lock_targets`) are left to the statement: it
//! waits for them as it would without the guard, with the session's own `lock_timeout`.
//! The guard never shortens that wait, so it never fails a statement PostgreSQL would have
//! run, except when the budget for the locks it takes ahead runs out.
//!
//! A session `lock_timeout` keeps its meaning — the longest the statement waits for its
//! locks: attempts and budget are both capped by it, and so are the waits between attempts.
//!
//! Nothing else of the statement is retried: locks the transaction already holds stay
//! held, the work of earlier statements stays done, and on failure the statement has not
//! started.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use pgrx::{pg_sys, PgLogLevel, PgSqlErrorCode, Spi};

use crate::guc;
use crate::judging::lock_targets::Target;
use crate::model::{format_ms, LockMode};
use crate::subxact::{self, OnSuccess};
use wait::Waited;

mod wait;

/// The longest pause between two rounds when there is nobody to wait for (see the module
/// documentation).
const MAX_PAUSE: Duration = Duration::from_millis(500);

/// Where the limits of one run come from, for the error message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Bound {
    Budget,
    SessionLockTimeout,
}

/// The attempt length and total budget, from `lock_attempt_timeout` and
/// `lock_retry_budget` (ms), both capped by the session's `lock_timeout` when it is set.
fn limits(attempt_ms: i32, budget_ms: i32, session_lock_timeout_ms: i32) -> (Duration, Duration, Bound) {
    let attempt = attempt_ms.max(1) as u64;
    let budget = budget_ms.max(0) as u64;
    if session_lock_timeout_ms > 0 {
        let session = session_lock_timeout_ms as u64;
        let bound = if session < budget { Bound::SessionLockTimeout } else { Bound::Budget };
        (Duration::from_millis(attempt.min(session)), Duration::from_millis(budget.min(session)), bound)
    } else {
        (Duration::from_millis(attempt), Duration::from_millis(budget), Bound::Budget)
    }
}

/// A uniformly random factor in [0.5, 1.5), from the standard library's per-process
/// random hash keys (jitter needs no more).
fn jitter() -> f64 {
    // Each RandomState gets fresh keys; hashing a constant with them is a random draw.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x9e37_79b9_7f4a_7c15);
    0.5 + (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// How one round ended.
enum Round {
    Acquired,
    /// The lock on `targets[i]` was not granted within the attempt (lock timeout, or the
    /// deadlock detector chose this session).
    TimedOut(usize),
    /// Any other error: the guard's own failure.
    Failed(String),
    /// Sessions on other nodes of a Citus cluster hold conflicting locks on the shards of
    /// `targets[i]`: nothing was taken.
    ShardsBusy(usize, Vec<crate::citus::ShardBlocker>),
}

/// Which of `targets` the guard takes ahead of the statement (`pg_migration_guard.lock_targets`
/// reports the same in `taken_ahead`). Nothing when no target blocks reads or writes of
/// others (SHARE or stronger on a relation that existed before the transaction, owned by
/// the current user): such a statement cannot stall the application while it waits, and
/// waits as PostgreSQL makes it (CREATE INDEX CONCURRENTLY and the other SHARE UPDATE
/// EXCLUSIVE statements). Otherwise every target on a relation that existed before the
/// transaction, in PostgreSQL's order, the weak modes included — so that the statement,
/// once it holds its strong locks, never queues for a weak one — when either
/// - the current user has the privileges of the relation's owner: PostgreSQL checks
///   ownership before it takes such a lock (RangeVarCallbackForAlterRelation and friends),
///   and the guard must not let a role queue for, or hold, a strong lock on someone else's
///   table (the audit table included); on PostgreSQL 17 and later, for the statements the
///   MAINTAIN privilege allows (`facts::maintain_allowed`), holding MAINTAIN counts as
///   owning, as it does for PostgreSQL's own check; or
/// - the mode is ACCESS SHARE or ROW SHARE, which PostgreSQL lets any role take on any
///   relation: parse analysis locks a query's relations in these modes before any
///   privilege is checked (addRangeTableEntry, then ExecCheckRTPerms at executor start).
///
/// The others (a strong lock on a table owned by another role, such as the SHARE ROW
/// EXCLUSIVE a foreign key takes on a referenced table the user only has REFERENCES on) are
/// taken by the statement itself, with PostgreSQL's own wait.
///
/// # Safety
/// Inside a transaction.
pub unsafe fn taken_ahead(targets: &[Target], command_tag: &str) -> Vec<bool> {
    use crate::judging::facts::{maintain_allowed, owned_by_current_user};
    let owned: Vec<bool> =
        targets.iter().map(|t| unsafe { owned_by_current_user(t.oid) || maintain_allowed(t.oid, command_tag) }).collect();
    let protected = targets.iter().zip(&owned).any(|(t, owned)| *owned && t.request.can_stall_others());
    targets
        .iter()
        .zip(owned)
        .map(|(t, owned)| protected && !t.request.invisible_to_others && (owned || t.request.mode <= LockMode::RowShare))
        .collect()
}

/// Takes the locks [`taken_ahead`] selects, as described in the module documentation.
/// Returns normally once they are held, or when protection had to be skipped (WARNING);
/// raises 55P03 when the budget runs out, 40P01 on a lock cycle, and re-raises a query
/// cancel.
///
/// # Safety
/// Called from the ProcessUtility hook, inside a transaction, before the statement runs.
pub unsafe fn take_locks(targets: &[Target], command_tag: &str) {
    let ahead = unsafe { taken_ahead(targets, command_tag) };
    let chosen: Vec<&Target> = targets.iter().zip(ahead).filter(|(_, a)| *a).map(|(t, _)| t).collect();
    if chosen.is_empty() {
        return;
    }
    // On a Citus coordinator: the shards of the distributed tables among the targets, whose
    // locks each attempt also checks (`crate::citus::ShardWatch`). None elsewhere.
    // Checked before each attempt, while this session holds no lock of the statement, so that
    // the check (a round trip to every node) never holds up the table's readers.
    let mut watch = unsafe { crate::citus::ShardWatch::new(&chosen) };
    let shards_busy = match &watch {
        None => false,
        Some(w) => match unsafe { w.conflicts() } {
            Ok(found) => !found.is_empty(),
            Err(cause) => {
                shards_unchecked(cause);
                watch = None;
                false
            }
        },
    };
    if !shards_busy && unsafe { take_without_waiting(&chosen) } {
        return;
    }
    let session_lock_timeout = unsafe { pg_sys::LockTimeout };
    let (attempt, budget, bound) = limits(guc::LOCK_ATTEMPT_TIMEOUT_MS.get(), guc::LOCK_RETRY_BUDGET_MS.get(), session_lock_timeout);
    let start = Instant::now();
    let mut pause = attempt.min(MAX_PAUSE);
    let mut attempts = 0u32;
    // The transactions waited for between attempts.
    let mut waited: Vec<pg_sys::VirtualTransactionId> = Vec::new();
    // The previous attempt also failed with nobody holding a conflicting lock.
    let mut nobody_before = false;
    // Declared before the first attempt, so that another guard session that finds this one
    // in the lock queue knows it will back off (see fail_on_cycle).
    let intent = unsafe { Intent::declare(&chosen) };
    let mut cancelled = Cancelled::default();
    loop {
        attempts += 1;
        match unsafe { round(&chosen, attempt, watch.as_ref()) } {
            Round::ShardsBusy(i, found) => {
                // Sessions on other nodes hold conflicting locks on the shards: the round took
                // nothing, rather than hold the distributed table's lock while Citus' shard
                // DDL waits. Nothing to wait for here: pause and attempt again.
                let elapsed = start.elapsed();
                if elapsed >= budget {
                    unsafe { exhausted(chosen[i], command_tag, attempts, attempt, elapsed, budget, bound, &found) };
                }
                let sleep = pause.mul_f64(jitter()).min(budget.saturating_sub(elapsed));
                unsafe { wait(sleep) };
                pause = (pause * 2).min(MAX_PAUSE.max(attempt));
            }
            Round::Acquired => {
                unsafe { intent.withdraw() };
                report_taken(command_tag, attempts, attempt, waited.len(), start.elapsed());
                return;
            }
            Round::Failed(cause) => {
                unsafe { intent.withdraw() };
                unprotected(command_tag, cause);
                return;
            }
            Round::TimedOut(i) => {
                let holders = unsafe { cancel_blocking_autovacuum(chosen[i], &mut cancelled) };
                let elapsed = start.elapsed();
                if elapsed >= budget {
                    unsafe { exhausted(chosen[i], command_tag, attempts, attempt, elapsed, budget, bound, &[]) };
                }
                if holders.only_cancelled_autovacuum() && cancelled.recent() {
                    // Only autovacuum workers that have just been sent a cancel hold the
                    // lock: queue again at once and wait there for them to go, as
                    // PostgreSQL's own cancel leaves the requester queued (ProcSleep). A
                    // wait outside the queue would let a new worker take the lock between
                    // the cancelled one and this session.
                    continue;
                }
                let to_wait = unsafe { transactions_to_wait_for(&chosen, &cancelled) };
                // Before waiting for anyone: the lock the attempt failed on, then every
                // other lock with a holder to wait for, each once.
                let mut checked = vec![i];
                unsafe { fail_on_cycle(chosen[i], command_tag) };
                for (j, _) in &to_wait {
                    if !checked.contains(j) {
                        checked.push(*j);
                        unsafe { fail_on_cycle(chosen[*j], command_tag) };
                    }
                }
                // Each transaction once. One already waited for is left out: it has ended
                // (VirtualXactLock said so), and a holder with the same virtual transaction id
                // cannot hold a lock any more; waiting for it again would return at once and
                // leave nothing between two attempts.
                let mut vxids: Vec<pg_sys::VirtualTransactionId> = Vec::with_capacity(to_wait.len());
                for (_, h) in &to_wait {
                    if !vxids.iter().chain(&waited).any(|v| same_vxid(v, &h.vxid)) {
                        vxids.push(h.vxid);
                    }
                }
                if vxids.is_empty() {
                    // Nobody holds a conflicting lock: the holder ended between the timeout
                    // and the look (attempt again at once), or the attempt queued behind
                    // another waiting request, which GetLockConflicts does not report. When
                    // that happens twice in a row, pause as before waiting existed, so that
                    // the queue ahead can move.
                    if nobody_before {
                        let sleep = pause.mul_f64(jitter()).min(budget.saturating_sub(start.elapsed()));
                        unsafe { wait(sleep) };
                        pause = (pause * 2).min(MAX_PAUSE.max(attempt));
                    }
                    nobody_before = true;
                    continue;
                }
                nobody_before = false;
                waited.extend_from_slice(&vxids);
                let left = budget.saturating_sub(start.elapsed());
                if unsafe { wait::for_transactions(&vxids, left) } == Waited::LimitReached {
                    // Name a lock that is still held by someone: the one the attempt failed
                    // on, unless its holders have ended and another's have not.
                    let elapsed = start.elapsed();
                    let named = std::iter::once(i)
                        .chain(to_wait.iter().map(|(j, _)| *j))
                        .find(|j| !unsafe { lock_holders(chosen[*j]) }.is_empty())
                        .unwrap_or(i);
                    unsafe { exhausted(chosen[named], command_tag, attempts, attempt, elapsed, budget, bound, &[]) };
                }
            }
        }
    }
}

/// WARNING: the statement runs without (full) lock-queue protection, because of `cause`.
fn unprotected(command_tag: &str, cause: String) {
    pgrx::pg_sys::panic::ErrorReport::new(
        PgSqlErrorCode::ERRCODE_WARNING,
        format!("pg_migration_guard could not take the locks of this {command_tag} ahead of it; it runs without lock-queue protection"),
        "pg_migration_guard",
    )
    .set_detail(cause)
    .report(PgLogLevel::WARNING);
}

/// WARNING: the locks held on the shards could not be listed.
fn shards_unchecked(cause: String) {
    pgrx::pg_sys::panic::ErrorReport::new(
        PgSqlErrorCode::ERRCODE_WARNING,
        "pg_migration_guard could not list the locks held on the shards; the statement runs without lock-queue protection on the other nodes",
        "pg_migration_guard",
    )
    .set_detail(cause)
    .report(PgLogLevel::WARNING);
}

/// DEBUG1, once the locks are held after at least one attempt in the queue: how many
/// attempts it took (the count the 55P03 DETAIL gives when the budget runs out), how many
/// transactions the guard waited for in between, and the time it all took.
fn report_taken(command_tag: &str, attempts: u32, attempt: Duration, waited_for: usize, elapsed: Duration) {
    pgrx::pg_sys::panic::ErrorReport::new(
        PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
        format!(
            "pg_migration_guard took the locks of this {command_tag} after {attempts} attempt{}",
            if attempts == 1 { "" } else { "s" }
        ),
        "pg_migration_guard",
    )
    .set_detail(format!(
        "Each attempt waited at most {} in the lock queue; between attempts the guard waited outside the queue for {waited_for} transaction{} holding conflicting locks to end; {:.3} s in all.",
        format_ms(attempt.as_millis() as u32),
        if waited_for == 1 { "" } else { "s" },
        elapsed.as_secs_f64()
    ))
    .report(PgLogLevel::DEBUG1);
}

/// One round: every lock in order, each wait bounded by `attempt`, in an internal
/// subtransaction that is committed when all were granted and rolled back otherwise. With
/// `watch` (a Citus coordinator), the round first checks the locks held on the shards and
/// takes nothing while a conflicting one is held there.
unsafe fn round(targets: &[&Target], attempt: Duration, watch: Option<&crate::citus::ShardWatch>) -> Round {
    unsafe {
        if let Some(w) = watch {
            match w.conflicts() {
                Ok(found) if !found.is_empty() => return Round::ShardsBusy(found[0].target, found),
                Ok(_) => {}
                Err(cause) => shards_unchecked(cause),
            }
        }
        let saved_lock_timeout = pg_sys::LockTimeout;
        let mut current = 0usize;
        let result = subxact::run(OnSuccess::Keep, || {
            for (i, t) in targets.iter().enumerate() {
                current = i;
                // Read by ProcSleep when the wait starts (the lock_timeout GUC's variable).
                pg_sys::LockTimeout = attempt.as_millis().clamp(1, i32::MAX as u128) as i32;
                pg_sys::LockRelationOid(t.oid, t.request.mode as pg_sys::LOCKMODE);
            }
        });
        pg_sys::LockTimeout = saved_lock_timeout;
        match result {
            Ok(()) => Round::Acquired,
            Err(e) => {
                let report = subxact::report(&e);
                match report.sql_error_code() {
                    PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE | PgSqlErrorCode::ERRCODE_T_R_DEADLOCK_DETECTED => Round::TimedOut(current),
                    PgSqlErrorCode::ERRCODE_QUERY_CANCELED | PgSqlErrorCode::ERRCODE_ADMIN_SHUTDOWN => e.rethrow(),
                    _ => Round::Failed(report.message().to_string()),
                }
            }
        }
    }
}

/// The common case, without a subtransaction: every lock is free, so take them all with
/// ConditionalLockRelationOid (which, like LockRelationOid, accepts invalidation messages
/// when a lock is newly acquired). If one is not free, the ones just taken are released
/// again (UnlockRelationOid drops exactly the count taken here) and the rounds take over.
unsafe fn take_without_waiting(targets: &[&Target]) -> bool {
    unsafe {
        for (i, t) in targets.iter().enumerate() {
            if !pg_sys::ConditionalLockRelationOid(t.oid, t.request.mode as pg_sys::LOCKMODE) {
                for taken in targets[..i].iter().rev() {
                    pg_sys::UnlockRelationOid(taken.oid, taken.request.mode as pg_sys::LOCKMODE);
                }
                return false;
            }
        }
        true
    }
}

/// Sleeps on the process latch, so a cancel or a postmaster death ends the pause.
unsafe fn wait(d: Duration) {
    if d.is_zero() {
        return;
    }
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            d.as_millis().max(1) as std::ffi::c_long,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
        pg_sys::check_for_interrupts!();
    }
}

/// A session holding a lock that conflicts with the one the guard could not get.
#[derive(Debug)]
pub struct Blocker {
    /// `None` for a prepared transaction.
    pub pid: Option<i32>,
    pub application_name: String,
    pub state: String,
    pub transaction_age_s: Option<f64>,
    pub query: String,
    pub mode: String,
}

impl Blocker {
    /// `pid 4242 (application_name "report", state active, transaction open 6.0 s, holds
    /// AccessShareLock): SELECT ...`, the query cut at 200 characters.
    pub fn describe(&self) -> String {
        let Some(pid) = self.pid else { return format!("a prepared transaction (holds {})", self.mode) };
        let mut query: String = self.query.split_whitespace().collect::<Vec<_>>().join(" ");
        query.truncate(query.trim_end_matches([';', ' ']).len());
        if query.chars().count() > 200 {
            query = query.chars().take(200).collect::<String>() + "...";
        }
        let age = self.transaction_age_s.map_or(String::new(), |s| format!(", transaction open {s:.1} s"));
        format!(
            "pid {pid} (application_name \"{}\", state {}{age}, holds {}): {query}",
            self.application_name,
            if self.state.is_empty() { "unknown" } else { &self.state },
            self.mode
        )
    }
}

/// The sessions holding locks on `target` that conflict with the requested mode, oldest
/// transaction first, read from pg_locks and pg_stat_activity with the session's own
/// privileges (another role's query shows as `<insufficient privilege>` unless the user
/// has pg_read_all_stats).
unsafe fn blockers(target: &Target) -> Result<Vec<Blocker>, String> {
    let sql = format!(
        "SELECT l.pid, coalesce(a.application_name, ''), coalesce(a.state, ''), \
                extract(epoch FROM pg_catalog.clock_timestamp() - a.xact_start)::float8, coalesce(a.query, ''), l.mode \
         FROM pg_catalog.pg_locks l LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid \
         WHERE {} ORDER BY a.xact_start NULLS FIRST, l.pid LIMIT 10",
        conflicting_holders(target)
    );
    unsafe {
        internal_query(|| {
            Spi::connect(|client| {
                let mut out = Vec::new();
                for row in client.select(&sql, None, &[])? {
                    out.push(Blocker {
                        pid: row.get::<i32>(1)?,
                        application_name: row.get::<String>(2)?.unwrap_or_default(),
                        state: row.get::<String>(3)?.unwrap_or_default(),
                        transaction_age_s: row.get::<f64>(4)?,
                        query: row.get::<String>(5)?.unwrap_or_default(),
                        mode: row.get::<String>(6)?.unwrap_or_default(),
                    });
                }
                Ok::<_, pgrx::spi::Error>(out)
            })
        })
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
    }
}

/// Runs one of the guard's internal queries (`f`, using SPI) so that the session cannot
/// influence it: inside a rolled-back internal subtransaction, with `search_path` set to
/// `pg_catalog, pg_temp` for its duration (operators and functions are then found in
/// pg_catalog only: pg_temp is never searched for them, PostgreSQL documentation,
/// "search_path"), as PostgreSQL's own internal queries do (ri_triggers.c qualifies every
/// name; SECURITY DEFINER functions are advised to set it the same way). The queries name
/// relations and functions with `pg_catalog.` too. They run with the session's privileges:
/// what they show about other sessions is what the session may see.
///
/// # Safety
/// Inside a transaction.
pub(crate) unsafe fn internal_query<R>(f: impl FnOnce() -> R) -> Result<R, crate::subxact::Caught> {
    unsafe {
        crate::subxact::in_subtransaction(|| {
            // Popped by the subtransaction's rollback (AtEOSubXact_GUC).
            guc::set_in_new_nest_level(c"search_path", c"pg_catalog, pg_temp");
            f()
        })
    }
}

/// The SQL condition selecting granted locks on `target` that conflict with its mode,
/// held by other sessions of this database (`l` is pg_locks).
fn conflicting_holders(target: &Target) -> String {
    let modes: Vec<String> = target.request.mode.conflicting_modes().map(|m| format!("'{}'", m.pg_locks_name())).collect();
    format!(
        "l.locktype = 'relation' AND l.relation = {oid} AND l.granted \
         AND l.database IN (0, (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())) \
         AND l.pid IS DISTINCT FROM pg_catalog.pg_backend_pid() AND l.mode IN ({modes})",
        oid = u32::from(target.oid),
        modes = modes.join(", ")
    )
}

/// `pg_locks.objsubid` of the guard's intent markers ("MG"): distinct from the values
/// PostgreSQL's advisory-lock functions use (1 for bigint keys, 2 for integer pairs), so no
/// `pg_advisory_lock` call can take or wait for one.
const INTENT_MARKER: u16 = 0x4D47;

/// From its first attempt until it holds its locks, a statement holds one advisory lock per
/// relation it wants (database, relation oid, wanted lock mode, [`INTENT_MARKER`]), so that
/// another session can see what it wants between attempts, when it is not in the
/// relation's lock queue, and knows, when it finds it in the queue, that it will back off
/// ([`fail_on_cycle`]). Taken in the current (sub)transaction: released explicitly once the
/// locks are taken, and by the abort when the statement fails.
struct Intent(Vec<pg_sys::LOCKTAG>);

impl Intent {
    unsafe fn declare(targets: &[&Target]) -> Intent {
        let tags: Vec<pg_sys::LOCKTAG> = targets
            .iter()
            .map(|t| pg_sys::LOCKTAG {
                locktag_field1: unsafe { u32::from(pg_sys::MyDatabaseId) },
                locktag_field2: u32::from(t.oid),
                locktag_field3: t.request.mode as u32,
                locktag_field4: INTENT_MARKER,
                locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
                locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
            })
            .collect();
        for tag in &tags {
            // ACCESS SHARE never conflicts with another marker: no wait, ever.
            unsafe { pg_sys::LockAcquire(tag, pg_sys::AccessShareLock as _, false, true) };
        }
        Intent(tags)
    }

    unsafe fn withdraw(self) {
        for tag in &self.0 {
            unsafe { pg_sys::LockRelease(tag, pg_sys::AccessShareLock as _, false) };
        }
    }
}

/// A lock cycle: a session holding the lock we wait for wants a lock this transaction
/// holds, or waits for this transaction to end (two migrations taking the same tables in
/// opposite orders; a CREATE INDEX CONCURRENTLY waiting for this transaction). Checked
/// before each wait for the holders ([`wait::for_transactions`]) so that the guard does not
/// start a wait that can only end in a deadlock. PostgreSQL's deadlock detector sees that
/// wait (a lock wait in the lock manager), but only once it has lasted `deadlock_timeout`,
/// and never the attempts, which are shorter; this check finds the cycles it can see at
/// once. The holder "wants" a lock when it holds an intent marker for it (a guard session
/// between its first attempt and its last) or is waiting for this session in the lock
/// manager: queued for a lock this transaction holds, or waiting for this transaction to
/// end (`pg_blocking_pids`).
///
/// One victim per cycle, as with the detector: between two guard sessions that are both
/// attempting, the one with the higher pid raises 40P01 and the other goes on (each checks
/// after its attempt times out); a holder that is waiting for this session and will not
/// check again before its wait ends — outside the guard, or in the guard's wait for this
/// transaction to end (`virtualxid`, or `transactionid` for a prepared transaction or a row
/// lock) — cannot back off, so this session does. A cycle that forms after the check (the
/// holder starts waiting for this session while this session waits for it) is left to
/// PostgreSQL's detector.
unsafe fn fail_on_cycle(target: &Target, command_tag: &str) {
    let pairs: Vec<String> = LockMode::ALL
        .iter()
        .flat_map(|wanted| wanted.conflicting_modes().map(move |held| format!("({}::int8, '{}')", *wanted as i32, held.pg_locks_name())))
        .collect();
    let sql = format!(
        "WITH holders AS (SELECT DISTINCT l.pid FROM pg_catalog.pg_locks l WHERE {holders}), \
         cycle AS (SELECT h.pid, EXISTS ( \
             SELECT 1 FROM pg_catalog.pg_locks w JOIN pg_catalog.pg_locks mine \
               ON mine.locktype = 'relation' AND mine.relation = w.classid AND mine.database = w.database \
              AND mine.pid = pg_catalog.pg_backend_pid() AND mine.granted \
             WHERE w.locktype = 'advisory' AND w.objsubid = {marker} AND w.pid = h.pid AND w.granted \
               AND (w.objid::int8, mine.mode) IN (VALUES {pairs})) AS marked, \
             pg_catalog.pg_backend_pid() = ANY (pg_catalog.pg_blocking_pids(h.pid)) AS waiting, \
             EXISTS (SELECT 1 FROM pg_catalog.pg_locks x WHERE x.pid = h.pid AND NOT x.granted \
                       AND x.locktype IN ('virtualxid', 'transactionid')) AS for_transaction \
           FROM holders h) \
         SELECT pid, waiting AND for_transaction FROM cycle \
         WHERE (marked AND pg_catalog.pg_backend_pid() > pid) OR (waiting AND (NOT marked OR for_transaction)) \
         ORDER BY 2 DESC LIMIT 1",
        holders = conflicting_holders(target),
        marker = INTENT_MARKER,
        pairs = pairs.join(", ")
    );
    let found = unsafe {
        internal_query(|| {
            Spi::connect(|client| {
                if let Some(row) = client.select(&sql, Some(1), &[])?.next() {
                    if let Some(pid) = row.get::<i32>(1)? {
                        return Ok::<_, pgrx::spi::Error>(Some((pid, row.get::<bool>(2)?.unwrap_or(false))));
                    }
                }
                Ok(None)
            })
        })
    };
    let Ok(Ok(Some((pid, for_this_transaction)))) = found else { return };
    let mode = target.request.mode;
    let what = if for_this_transaction { "waits for this transaction to end" } else { "wants a lock this transaction holds" };
    pgrx::pg_sys::panic::ErrorReport::new(PgSqlErrorCode::ERRCODE_T_R_DEADLOCK_DETECTED, "deadlock detected", "pg_migration_guard")
        .set_detail(format!(
            "{command_tag} waits for {} lock on {}, held by process {pid}, which {what}.",
            mode.with_article(),
            target.request.relation
        ))
        .set_hint("Run the migrations one after the other, or have them lock the tables in the same order; then retry this transaction.")
        .report(PgLogLevel::ERROR);
}

/// Who holds the locks that conflict with the one the guard could not get, as
/// [`cancel_blocking_autovacuum`] found them.
struct Holders {
    /// Autovacuum workers (not anti-wraparound) holding a conflicting lock, all of which
    /// have been sent a cancel (now or in an earlier round).
    autovacuum: usize,
    /// Every other holder (sessions, anti-wraparound autovacuum, prepared transactions).
    others: usize,
}

impl Holders {
    fn only_cancelled_autovacuum(&self) -> bool {
        self.autovacuum > 0 && self.others == 0
    }
}

/// The autovacuum transactions the guard has sent a cancel, as (pid, local transaction id),
/// and when it sent the last one.
#[derive(Default)]
struct Cancelled {
    sent: Vec<(i32, u32)>,
    last: Option<Instant>,
}

impl Cancelled {
    /// Whether the last cancel went out less than `deadlock_timeout` ago: a cancelled worker
    /// ends within milliseconds; one that is still there after the time PostgreSQL itself
    /// waits before cancelling is waited for like any other holder.
    fn recent(&self) -> bool {
        let limit = Duration::from_millis(unsafe { pg_sys::DeadlockTimeout }.max(1) as u64);
        self.last.is_some_and(|t| t.elapsed() < limit)
    }
}

/// Cancels autovacuum workers that hold a conflicting lock on `target`, as PostgreSQL
/// itself does for a lock request that has waited `deadlock_timeout` behind one (ProcSleep
/// in src/backend/storage/lmgr/proc.c: "sending cancel to blocking autovacuum PID"). The
/// guard's attempts are shorter than `deadlock_timeout`, so PostgreSQL never does it for
/// them; the guard does it after the first attempt that times out, rather than wait for the
/// worker's vacuum of the table to end.
///
/// Decided from PostgreSQL's own state, never from SQL the session could influence: the
/// holders come from [`lock_holders`] (the lock manager and the PGPROCs, ProcSleep's own
/// test). The signal is SIGINT to that pid, as ProcSleep sends it: the
/// server's decision, which needs no privilege of the session. Each worker's transaction
/// (pid, local transaction id, kept in `cancelled`) is signalled once: a worker that has
/// been cancelled moves on to its next table, where a second signal would cancel work
/// that blocks no one.
unsafe fn cancel_blocking_autovacuum(target: &Target, cancelled: &mut Cancelled) -> Holders {
    let holders = unsafe { lock_holders(target) };
    let workers: Vec<(i32, u32)> = holders.iter().filter(|h| h.cancellable_autovacuum).filter_map(|h| h.backend).collect();
    for &(pid, lxid) in &workers {
        if cancelled.sent.contains(&(pid, lxid)) {
            continue;
        }
        cancelled.sent.push((pid, lxid));
        cancelled.last = Some(Instant::now());
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
            format!("pg_migration_guard: sending cancel to blocking autovacuum PID {pid}"),
            "pg_migration_guard",
        )
        .set_detail(format!("Process {} waits for {} on {}.", unsafe { pg_sys::MyProcPid }, target.request.mode, target.request.relation))
        .report(PgLogLevel::LOG);
        unsafe { libc::kill(pid, libc::SIGINT) };
    }
    Holders { autovacuum: workers.len(), others: holders.len() - workers.len() }
}

/// The transactions to wait for before the next attempt: every transaction holding a lock
/// that conflicts with one of `targets`, with the index of that target — except autovacuum
/// workers that have just been sent a cancel ([`Cancelled::recent`]): they end within
/// milliseconds, and the next attempt queues for them as PostgreSQL's own request would.
/// A transaction appears once per target it blocks.
///
/// # Safety
/// Inside a transaction, in a backend with a PGPROC.
unsafe fn transactions_to_wait_for(targets: &[&Target], cancelled: &Cancelled) -> Vec<(usize, Holder)> {
    let mut out = Vec::new();
    for (j, t) in targets.iter().enumerate() {
        for h in unsafe { lock_holders(t) } {
            let just_cancelled = h.cancellable_autovacuum && cancelled.recent() && h.backend.is_some_and(|b| cancelled.sent.contains(&b));
            if !just_cancelled {
                out.push((j, h));
            }
        }
    }
    out
}

fn same_vxid(a: &pg_sys::VirtualTransactionId, b: &pg_sys::VirtualTransactionId) -> bool {
    vxid_proc_number(a) == vxid_proc_number(b) && a.localTransactionId == b.localTransactionId
}

/// `ProcArrayLock`'s place in `MainLWLockArray` (src/include/storage/lwlocknames.h, generated
/// from lwlocknames.txt: the same on every supported version).
const PROC_ARRAY_LOCK: usize = 4;

/// A transaction holding a lock that conflicts with a lock the guard wants, as the lock
/// manager reports it.
#[derive(Clone, Copy, Debug)]
struct Holder {
    /// Its virtual transaction id, as `GetLockConflicts` returns it: what
    /// [`wait::for_transactions`] waits on.
    vxid: pg_sys::VirtualTransactionId,
    /// The pid and local transaction id of the backend running it; `None` for a prepared
    /// transaction (no backend runs it) or one that ended meanwhile.
    backend: Option<(i32, u32)>,
    /// An autovacuum worker that is not preventing wraparound: one PostgreSQL would cancel.
    cancellable_autovacuum: bool,
}

/// The transactions, other than this backend's, holding a lock on `target` that conflicts
/// with the mode it wants: found by the lock manager (`GetLockConflicts`, as
/// `WaitForLockers` finds them, fast-path locks included), each matched under ProcArrayLock
/// with the PGPROC that still runs that virtual transaction, whose status flags say whether
/// it is an autovacuum worker (`PROC_IS_AUTOVACUUM`) not preventing wraparound
/// (`PROC_VACUUM_FOR_WRAPAROUND`) — ProcSleep's own test. Only sessions of this database hold
/// locks on its relations (shared catalogs aside, looked up with database 0 as PostgreSQL
/// locks them); a prepared transaction's locks are held on behalf of a dummy PGPROC whose
/// virtual transaction id is the one it had before PREPARE TRANSACTION (twophase.c,
/// MarkAsPreparingGuts), which VirtualXactLock resolves to its xid.
///
/// # Safety
/// Inside a transaction, in a backend with a PGPROC.
unsafe fn lock_holders(target: &Target) -> Vec<Holder> {
    unsafe {
        let db = if pg_sys::IsSharedRelation(target.oid) { pg_sys::InvalidOid } else { pg_sys::MyDatabaseId };
        let tag = pg_sys::LOCKTAG {
            locktag_field1: u32::from(db),
            locktag_field2: u32::from(target.oid),
            locktag_field3: 0,
            locktag_field4: 0,
            locktag_type: pg_sys::LockTagType::LOCKTAG_RELATION as u8,
            locktag_lockmethodid: pg_sys::DEFAULT_LOCKMETHOD as u8,
        };
        let mut count: std::ffi::c_int = 0;
        // Holders of conflicting locks other than this backend, as virtual transaction ids,
        // ended by an invalid one (palloc'd in the current memory context).
        let vxids = pg_sys::GetLockConflicts(&tag, target.request.mode as pg_sys::LOCKMODE, &mut count);
        let mut holders: Vec<Holder> =
            (0..count.max(0) as usize).map(|i| Holder { vxid: *vxids.add(i), backend: None, cancellable_autovacuum: false }).collect();
        if holders.is_empty() {
            return holders;
        }
        let lock = &raw mut (*pg_sys::MainLWLockArray.add(PROC_ARRAY_LOCK)).lock;
        pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_SHARED);
        let procs = (*pg_sys::ProcGlobal).allProcs;
        for i in 0..(*pg_sys::ProcGlobal).allProcCount as usize {
            let proc = &*procs.add(i);
            let (proc_number, lxid) = proc_vxid(proc);
            if proc.pid == 0 || lxid == 0 {
                continue;
            }
            let Some(h) = holders.iter_mut().find(|h| vxid_proc_number(&h.vxid) == proc_number && h.vxid.localTransactionId == lxid) else {
                continue;
            };
            h.backend = Some((proc.pid, lxid));
            let flags = u32::from(proc.statusFlags);
            h.cancellable_autovacuum = flags & pg_sys::PROC_IS_AUTOVACUUM != 0 && flags & pg_sys::PROC_VACUUM_FOR_WRAPAROUND == 0;
        }
        pg_sys::LWLockRelease(lock);
        holders
    }
}

/// The virtual transaction a PGPROC runs, as (backend id or proc number, local
/// transaction id). PostgreSQL 17 moved both into `PGPROC.vxid` and renamed the backend id
/// the proc number (src/include/storage/proc.h).
fn proc_vxid(proc: &pg_sys::PGPROC) -> (i32, u32) {
    #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16"))]
    return (proc.backendId, proc.lxid);
    #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16")))]
    return (proc.vxid.procNumber, proc.vxid.lxid);
}

/// A `VirtualTransactionId`'s backend id (proc number on PostgreSQL 17 and later).
fn vxid_proc_number(vxid: &pg_sys::VirtualTransactionId) -> i32 {
    #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16"))]
    return vxid.backendId;
    #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16")))]
    return vxid.procNumber;
}

/// ERROR 55P03 once the budget is spent, naming the blocking sessions; on a Citus
/// coordinator also those holding conflicting locks on the shards (`on_shards`, with the
/// global pids Citus' `pg_cancel_backend(bigint)` accepts).
#[allow(clippy::too_many_arguments)]
unsafe fn exhausted(
    target: &Target,
    command_tag: &str,
    attempts: u32,
    attempt: Duration,
    elapsed: Duration,
    budget: Duration,
    bound: Bound,
    on_shards: &[crate::citus::ShardBlocker],
) -> ! {
    let found = unsafe { blockers(target) };
    let limit = match bound {
        Bound::Budget => format!("{} (pg_migration_guard.lock_retry_budget)", format_ms(budget.as_millis() as u32)),
        Bound::SessionLockTimeout => format!("{} (the session's lock_timeout)", format_ms(budget.as_millis() as u32)),
    };
    let mode = target.request.mode;
    let message = format!("could not obtain {} lock on {} within {limit}", mode.with_article(), target.request.relation);
    let held_by = match &found {
        Ok(b) if b.is_empty() && !on_shards.is_empty() => String::new(),
        Ok(b) if b.is_empty() => "No session holds a conflicting lock any more: the last one ended as the budget ran out.".to_string(),
        Ok(b) => format!("Conflicting locks held by: {}.", b.iter().map(Blocker::describe).collect::<Vec<_>>().join("; ")),
        Err(cause) => format!("The sessions holding conflicting locks could not be listed: {cause}."),
    };
    let detail = if on_shards.is_empty() {
        format!(
            "{command_tag} waited {attempts} time{} in the lock queue for {} lock on {} ({}), at most {} each time so that \
             queries arriving behind it waited no longer than that, and between those waited outside the queue for the \
             transactions holding conflicting locks to end; {:.1} s in all. {held_by}",
            if attempts == 1 { "" } else { "s" },
            mode.with_article(),
            target.request.relation,
            mode.effect(),
            format_ms(attempt.as_millis() as u32),
            elapsed.as_secs_f64(),
        )
    } else {
        let mut shown: Vec<String> = on_shards.iter().take(10).map(crate::citus::ShardBlocker::describe).collect();
        if on_shards.len() > 10 {
            shown.push(format!("{} more", on_shards.len() - 10));
        }
        format!(
            "{command_tag} attempted {attempts} time{} to take {} lock on {} ({}); each time sessions on the Citus nodes held \
             conflicting locks on its shards, which Citus would have waited for while holding the lock on {}, so the guard \
             did not take it; {:.1} s in all. Conflicting locks on its shards held by: {}.{}{held_by}",
            if attempts == 1 { "" } else { "s" },
            mode.with_article(),
            target.request.relation,
            mode.effect(),
            target.request.relation,
            elapsed.as_secs_f64(),
            shown.join("; "),
            if held_by.is_empty() { "" } else { " " },
        )
    };
    let mut pids: Vec<String> = match &found {
        Ok(b) => b
            .iter()
            .filter_map(|b| {
                let pid = b.pid?;
                Some(if b.state.starts_with("idle in transaction") {
                    format!("pg_terminate_backend({pid})")
                } else {
                    format!("pg_cancel_backend({pid})")
                })
            })
            .collect(),
        Err(_) => vec![],
    };
    // Citus' pg_cancel_backend(bigint) and pg_terminate_backend(bigint) take a global pid.
    for call in on_shards.iter().filter_map(crate::citus::ShardBlocker::ending_call) {
        if !pids.contains(&call) {
            pids.push(call);
        }
    }
    let hint = if pids.is_empty() {
        "Run the statement again when the blocking transactions have ended.".to_string()
    } else {
        format!("Run the statement again when the blocking transactions have ended, or end them: SELECT {};", pids.join(", "))
    };
    pgrx::pg_sys::panic::ErrorReport::new(PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE, message, "pg_migration_guard")
        .set_detail(detail)
        .set_hint(hint)
        .report(PgLogLevel::ERROR);
    unreachable!("ERROR returned")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_lock_timeout_caps_attempts_and_budget() {
        let ms = Duration::from_millis;
        assert_eq!(limits(50, 10_000, 0), (ms(50), ms(10_000), Bound::Budget));
        assert_eq!(limits(50, 10_000, 3_000), (ms(50), ms(3_000), Bound::SessionLockTimeout));
        assert_eq!(limits(50, 10_000, 20), (ms(20), ms(20), Bound::SessionLockTimeout));
        assert_eq!(limits(50, 1_000, 60_000), (ms(50), ms(1_000), Bound::Budget));
        assert_eq!(limits(50, 0, 0), (ms(50), ms(0), Bound::Budget));
    }

    #[test]
    fn only_cancelled_autovacuum_workers_holding_the_lock_means_queue_again_at_once() {
        assert!(Holders { autovacuum: 1, others: 0 }.only_cancelled_autovacuum());
        assert!(Holders { autovacuum: 2, others: 0 }.only_cancelled_autovacuum());
        assert!(!Holders { autovacuum: 1, others: 1 }.only_cancelled_autovacuum());
        assert!(!Holders { autovacuum: 0, others: 1 }.only_cancelled_autovacuum());
        // Nobody any more (the holder ended between the timeout and the look): not a case
        // for queueing again at once; take_locks attempts again, or pauses, as for any holder
        // that is gone.
        assert!(!Holders { autovacuum: 0, others: 0 }.only_cancelled_autovacuum());
    }

    #[test]
    fn jitter_is_random() {
        let draws: Vec<f64> = (0..100).map(|_| jitter()).collect();
        assert!(draws.iter().any(|d| *d != draws[0]));
    }

    #[test]
    fn jitter_stays_within_half_and_one_and_a_half() {
        for _ in 0..1000 {
            let j = jitter();
            assert!((0.5..1.5).contains(&j), "{j}");
        }
    }

    #[test]
    fn blocker_description_names_pid_application_state_age_and_query() {
        let b = Blocker {
            pid: Some(4242),
            application_name: "report".into(),
            state: "active".into(),
            transaction_age_s: Some(6.04),
            query: "SELECT count(*)\n  FROM shop_order".into(),
            mode: "AccessShareLock".into(),
        };
        assert_eq!(
            b.describe(),
            "pid 4242 (application_name \"report\", state active, transaction open 6.0 s, holds AccessShareLock): \
             SELECT count(*) FROM shop_order"
        );
        let long = Blocker { query: "x".repeat(500), ..b };
        assert!(long.describe().ends_with(&format!("{}...", "x".repeat(200))));
        let prepared = Blocker { pid: None, ..long };
        assert_eq!(prepared.describe(), "a prepared transaction (holds AccessShareLock)");
    }
}

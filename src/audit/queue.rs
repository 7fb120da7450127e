//! The audit queue: a ring buffer in shared memory that carries audit records from the
//! backends that judged a statement to the audit writers (`crate::audit::writer`), which
//! insert them into `pg_migration_guard.audit_log` of the statement's database in
//! transactions of their own. This is how a rejected statement's row survives the abort
//! of its transaction, and why the statement itself never waits for a table insert.
//!
//! Layout: a header (`QueueHeader`) followed by `size` bytes of ring. Records are
//! variable-length, 32-byte aligned, never split at the end of the ring (a padding record
//! fills the rest); `head` and `tail` are byte offsets that only grow. A record is
//! PENDING when enqueued, CLAIMED while a writer inserts it, DONE once that insert
//! committed; `head` moves over DONE records. One named LWLock protects all of it; a
//! condition variable wakes backends waiting for space.
//!
//! Delivery: at least once into the table, exactly once in it. A writer that dies after
//! claiming records leaves them CLAIMED; the launcher hands them back (PENDING) before it
//! starts the next writer for that database, marked as handed back, and the writer inserts
//! a batch holding such a record with `INSERT ... ON CONFLICT (id) DO NOTHING`, which drops
//! the copy of a record whose first insert did commit (other batches take the plain INSERT:
//! speculative insertion costs about half as much again per row).
//!
//! Stalled databases: a database whose records cannot be delivered at the moment is
//! *stalled* — its writer keeps failing to start or dies before inserting anything (the
//! launcher marks it while it backs off, `audit_writer`), or its writer's insert keeps
//! failing for a reason that may pass (a lock wait that timed out, out of memory: the
//! writer marks it, hands its batch back and retries with backoff). The mark is cleared
//! when a writer of the database delivers. Because `head` only moves over DONE records, a
//! stalled database's records would otherwise pin the whole ring and make every other
//! database's statements wait for space; so a backend that finds the queue full first
//! discards the oldest PENDING records of stalled databases at the head of the ring (never
//! CLAIMED ones: a writer holds those), as many as it needs, and writes a LOG line saying
//! how many records of which database it discarded and why. Only if that is not enough
//! (the head holds records of a database whose writer is working) does it wait.
//!
//! What can be lost: the queue lives in shared memory, so records still in it when the
//! server stops or restarts after a crash are not in the table (they are in the server log,
//! where every decision is written when it is made). Records of a stalled database are
//! discarded when the queue is full, and by the launcher when the database's writer failed
//! to start `audit_writer::DISCARD_AFTER_FAILURES` times in a row. A record that finds the
//! queue full for `ENQUEUE_WAIT_MS` of records no stalled database holds is not queued
//! either; the backend says so with a WARNING. Each of these is counted in `dropped`.

use std::ffi::CStr;
use std::sync::atomic::{AtomicU64, Ordering};

use pgrx::pg_sys;

/// Record header bytes; records are aligned to this size, so a padding record always fits.
const RECORD_HEADER: usize = 32;
/// The smallest ring, in bytes: `pg_migration_guard.audit_queue_size`'s minimum (64 kB).
/// The bounds of the record's fields (`crate::audit`) are chosen so that a record fits
/// `max_payload_for(MIN_QUEUE_BYTES)`.
pub const MIN_QUEUE_BYTES: usize = 64 * 1024;
/// Databases that can have an audit writer at the same time.
pub const MAX_WRITERS: usize = 64;
/// How long a backend waits for space in a full queue before giving up on the record.
pub const ENQUEUE_WAIT_MS: i64 = 10_000;

const STATE_PENDING: u32 = 1;
const STATE_CLAIMED: u32 = 2;
const STATE_DONE: u32 = 3;
const STATE_PAD: u32 = 4;

const LWLOCK_TRANCHE: &CStr = c"pg_migration_guard";
const SHMEM_NAME: &CStr = c"pg_migration_guard audit queue";

#[repr(C)]
struct RecordHeader {
    /// Total bytes of this record, header included, a multiple of RECORD_HEADER.
    len: u32,
    state: u32,
    dboid: u32,
    payload_len: u32,
    id: u64,
    /// 1 once `unclaim` handed the record back: its first insert may have committed.
    handed_back: u32,
    _reserved: u32,
}

const _: () = assert!(std::mem::size_of::<RecordHeader>() == RECORD_HEADER);

/// Why a database is stalled (`WriterSlot::stall`): its records cannot be delivered now.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stall {
    /// Not stalled.
    No = 0,
    /// Its writer failed to start, or exited before it inserted anything, and the launcher
    /// waits before the next attempt (set by the launcher).
    WriterFailing = 1,
    /// Its writer's insert failed for a reason that may pass (a lock wait longer than
    /// `audit_writer::WRITER_LOCK_TIMEOUT`, out of memory, ...); the writer handed the
    /// batch back and retries with backoff (set by the writer).
    InsertFailing = 2,
}

impl Stall {
    fn from_u32(v: u32) -> Stall {
        match v {
            1 => Stall::WriterFailing,
            2 => Stall::InsertFailing,
            _ => Stall::No,
        }
    }

    /// Why the records are discarded, for the DETAIL of the LOG line that says so.
    pub fn explanation(self) -> &'static str {
        match self {
            Stall::No => "The database's audit writer is not stalled.",
            Stall::WriterFailing => {
                "The database's audit writer keeps failing to start or exits before it inserts anything; the launcher retries with backoff."
            }
            Stall::InsertFailing => {
                "The database's audit writer cannot insert into pg_migration_guard.audit_log at the moment (a lock wait timed out, or another error that may pass); it retries with backoff."
            }
        }
    }
}

/// What the backends and the launcher know about a database's writer.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct WriterSlot {
    /// The database; InvalidOid when the slot is free. The launcher keeps the slot of a
    /// database whose writer keeps failing while it backs off, with `stall` set.
    pub dboid: pg_sys::Oid,
    /// The writer's latch once it runs, null before.
    pub latch: *mut pg_sys::Latch,
    pub pid: i32,
    /// A `Stall` (as u32): whether backends may discard this database's PENDING records
    /// to make room.
    pub stall: u32,
    /// Batches the current writer delivered (inserted, or discarded for good with a
    /// WARNING) since the launcher started it.
    pub delivered: u64,
    /// 1 once the current writer left because it had nothing to do (`writer_may_exit`).
    /// The launcher counts a writer that exits otherwise, having delivered nothing, with
    /// records still queued, as a failure.
    pub idle_exit: u32,
}

const FREE_SLOT: WriterSlot =
    WriterSlot { dboid: pg_sys::InvalidOid, latch: std::ptr::null_mut(), pid: 0, stall: Stall::No as u32, delivered: 0, idle_exit: 0 };

#[repr(C)]
struct QueueHeader {
    size: u64,
    head: u64,
    tail: u64,
    next_id: u64,
    /// Records that will have no row: not queued because the queue stayed full (each also
    /// got a WARNING), or discarded because their database was stalled (each discard is a
    /// LOG line).
    dropped: u64,
    space: pg_sys::ConditionVariable,
    launcher_latch: *mut pg_sys::Latch,
    writers: [WriterSlot; MAX_WRITERS],
}

/// `AddinShmemInitLock`'s place in `MainLWLockArray` (src/include/storage/lwlocknames.h,
/// generated from src/backend/storage/lmgr/lwlocknames.txt: 21 on every supported version),
/// the lock extensions hold while they initialise their shared memory (PostgreSQL
/// documentation, "Shared Memory and LWLocks"). pgrx has no binding for the macro.
const ADDIN_SHMEM_INIT_LOCK: usize = 21;

/// The queue in shared memory. Set by `shmem_startup` in the postmaster before any backend
/// starts (and again in each process that attaches, with the same address) and never
/// changed after; everything it points to is read and written only while holding `LOCK`
/// (a [`Locked`] guard), except `size`, which is fixed at initialisation. Every unsafe
/// block of this module relies on that.
static mut QUEUE: *mut QueueHeader = std::ptr::null_mut();
static mut LOCK: *mut pg_sys::LWLock = std::ptr::null_mut();
static mut PREV_SHMEM_REQUEST: Option<unsafe extern "C-unwind" fn()> = None;
static mut PREV_SHMEM_STARTUP: Option<unsafe extern "C-unwind" fn()> = None;
/// Set from `audit_queue_size` in `_PG_init`, before shared memory is sized.
static QUEUE_BYTES: AtomicU64 = AtomicU64::new(0);

fn align(n: usize) -> usize {
    n.div_ceil(RECORD_HEADER) * RECORD_HEADER
}

fn shmem_size() -> usize {
    std::mem::size_of::<QueueHeader>() + QUEUE_BYTES.load(Ordering::Relaxed) as usize
}

/// Requests the shared memory and the LWLock. Called from `_PG_init` while
/// shared_preload_libraries is processed.
pub unsafe fn install(queue_kb: i32) {
    QUEUE_BYTES.store(align((queue_kb.max(0) as usize * 1024).max(MIN_QUEUE_BYTES)) as u64, Ordering::Relaxed);
    unsafe {
        #[cfg(any(feature = "pg13", feature = "pg14"))]
        request_shmem();
        #[cfg(not(any(feature = "pg13", feature = "pg14")))]
        {
            PREV_SHMEM_REQUEST = pg_sys::shmem_request_hook;
            pg_sys::shmem_request_hook = Some(shmem_request);
        }
        PREV_SHMEM_STARTUP = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(shmem_startup);
    }
}

unsafe fn request_shmem() {
    unsafe {
        pg_sys::RequestAddinShmemSpace(shmem_size());
        pg_sys::RequestNamedLWLockTranche(LWLOCK_TRANCHE.as_ptr(), 1);
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn shmem_request() {
    unsafe {
        if let Some(prev) = PREV_SHMEM_REQUEST {
            prev();
        }
        request_shmem();
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn shmem_startup() {
    unsafe {
        if let Some(prev) = PREV_SHMEM_STARTUP {
            prev();
        }
        let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(ADDIN_SHMEM_INIT_LOCK)).lock;
        pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let mut found = false;
        let q = pg_sys::ShmemInitStruct(SHMEM_NAME.as_ptr(), shmem_size(), &mut found) as *mut QueueHeader;
        if !found {
            std::ptr::write_bytes(q as *mut u8, 0, std::mem::size_of::<QueueHeader>());
            (*q).size = QUEUE_BYTES.load(Ordering::Relaxed);
            // Record ids are unique per server start; seeded from the clock (microseconds
            // since 2000-01-01) so they also keep growing across restarts.
            (*q).next_id = pg_sys::GetCurrentTimestamp().max(1) as u64;
            pg_sys::ConditionVariableInit(&raw mut (*q).space);
        }
        QUEUE = q;
        LOCK = &raw mut (*pg_sys::GetNamedLWLockTranche(LWLOCK_TRANCHE.as_ptr())).lock;
        pg_sys::LWLockRelease(init_lock);
    }
}

/// Holds the queue's LWLock; released on drop (also when a Rust panic unwinds; an ERROR's
/// longjmp is covered by LWLockReleaseAll in the abort).
struct Locked;

impl Locked {
    unsafe fn acquire() -> Locked {
        unsafe { pg_sys::LWLockAcquire(LOCK, pg_sys::LWLockMode::LW_EXCLUSIVE) };
        Locked
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        unsafe { pg_sys::LWLockRelease(LOCK) };
    }
}

/// The record header at ring offset `offset` (offsets only grow; the ring wraps).
unsafe fn record_at(q: *mut QueueHeader, offset: u64) -> *mut RecordHeader {
    // SAFETY: `offset % size` lies within the ring, which follows the header in the same
    // shared-memory allocation (shmem_size); records are 32-byte aligned and never split at
    // the end of the ring, so a whole header fits at every record offset.
    unsafe {
        let base = (q as *mut u8).add(std::mem::size_of::<QueueHeader>());
        base.add((offset % (*q).size) as usize) as *mut RecordHeader
    }
}

/// The records between `head` and `tail`, oldest first, as (offset, header). The caller
/// holds the queue lock for as long as it uses them.
unsafe fn records(q: *mut QueueHeader) -> impl Iterator<Item = (u64, *mut RecordHeader)> {
    let (mut off, tail) = unsafe { ((*q).head, (*q).tail) };
    std::iter::from_fn(move || {
        (off < tail).then(|| {
            let h = unsafe { record_at(q, off) };
            let at = off;
            off += unsafe { (*h).len } as u64;
            (at, h)
        })
    })
}

/// Why a record was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum EnqueueError {
    /// The library is not preloaded: there is no queue.
    NoQueue,
    /// The record is larger than a quarter of the queue.
    TooLarge,
    /// The queue stayed full for the whole wait.
    Full,
}

/// The largest payload `enqueue` accepts: a quarter of the ring, less a record header
/// (16352 bytes at the smallest queue, 262112 at the default 1 MB).
pub fn max_payload() -> usize {
    max_payload_for(QUEUE_BYTES.load(Ordering::Relaxed) as usize)
}

/// The largest payload of a ring of `queue_bytes` bytes.
pub const fn max_payload_for(queue_bytes: usize) -> usize {
    (queue_bytes / 4).saturating_sub(RECORD_HEADER)
}

/// Whether a record of `total` bytes (header included, aligned) fits behind `tail` now,
/// with the padding record that would fill the end of the ring before it.
unsafe fn fits(q: *const QueueHeader, total: u64) -> bool {
    unsafe {
        let size = (*q).size;
        let pos = (*q).tail % size;
        let pad = if pos + total > size { size - pos } else { 0 };
        (*q).tail + pad + total - (*q).head <= size
    }
}

/// Appends a PENDING record for `dboid` when it fits (with a padding record first when it
/// would cross the end of the ring). Returns its id. The caller holds the queue lock.
unsafe fn append(q: *mut QueueHeader, dboid: u32, payload: &[u8]) -> Option<u64> {
    unsafe {
        let total = align(RECORD_HEADER + payload.len()) as u64;
        if !fits(q, total) {
            return None;
        }
        let size = (*q).size;
        let pos = (*q).tail % size;
        if pos + total > size {
            let h = record_at(q, (*q).tail);
            (*h).len = (size - pos) as u32;
            (*h).state = STATE_PAD;
            (*q).tail += size - pos;
        }
        let h = record_at(q, (*q).tail);
        let id = (*q).next_id;
        (*q).next_id += 1;
        (*h).len = total as u32;
        (*h).dboid = dboid;
        (*h).payload_len = payload.len() as u32;
        (*h).id = id;
        (*h).handed_back = 0;
        std::ptr::copy_nonoverlapping(payload.as_ptr(), (h as *mut u8).add(RECORD_HEADER), payload.len());
        (*h).state = STATE_PENDING;
        (*q).tail += total;
        Some(id)
    }
}

/// Moves `head` over the DONE and padding records at the front of the ring.
unsafe fn advance_head(q: *mut QueueHeader) {
    unsafe {
        while (*q).head < (*q).tail {
            let h = record_at(q, (*q).head);
            if (*h).state != STATE_DONE && (*h).state != STATE_PAD {
                break;
            }
            (*q).head += (*h).len as u64;
        }
    }
}

/// The stall mark of `dboid`'s writer slot (`Stall::No` without a slot).
unsafe fn stall_of(q: *const QueueHeader, dboid: u32) -> Stall {
    unsafe { (*q).writers.iter().find(|w| w.dboid.to_u32() == dboid).map_or(Stall::No, |w| Stall::from_u32(w.stall)) }
}

/// Records of one database that `make_room` discarded.
#[derive(Debug, PartialEq, Eq)]
pub struct Discarded {
    pub dboid: u32,
    pub records: u64,
    pub why: Stall,
}

/// Makes room for a record of `total` bytes by discarding, oldest first, the PENDING
/// records of stalled databases at the front of the ring (marked DONE, counted in
/// `dropped`), moving `head` over them and over DONE records; stops as soon as the record
/// fits, or at the first record it may not discard (a healthy database's, or a CLAIMED
/// one). Returns what it discarded, per database. The caller holds the queue lock.
unsafe fn make_room(q: *mut QueueHeader, total: u64) -> Vec<Discarded> {
    let mut out: Vec<Discarded> = Vec::new();
    unsafe {
        while !fits(q, total) && (*q).head < (*q).tail {
            let h = record_at(q, (*q).head);
            match (*h).state {
                STATE_DONE | STATE_PAD => {}
                STATE_PENDING => {
                    let why = stall_of(q, (*h).dboid);
                    if why == Stall::No {
                        break;
                    }
                    (*h).state = STATE_DONE;
                    (*q).dropped += 1;
                    match out.iter_mut().find(|d| d.dboid == (*h).dboid) {
                        Some(d) => d.records += 1,
                        None => out.push(Discarded { dboid: (*h).dboid, records: 1, why }),
                    }
                }
                _ => break,
            }
            (*q).head += (*h).len as u64;
        }
    }
    out
}

/// The LOG line for records `make_room` discarded.
fn log_discarded(d: &Discarded) {
    pgrx::pg_sys::panic::ErrorReport::new(
        pgrx::PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
        format!(
            "pg_migration_guard: discarded {} audit record{} of database with OID {} to make room in the full audit queue",
            d.records,
            if d.records == 1 { "" } else { "s" },
            d.dboid
        ),
        "pg_migration_guard",
    )
    .set_detail(format!("{} Their decisions are in the server log only.", d.why.explanation()))
    .report(pgrx::PgLogLevel::LOG);
}

/// Puts one record (`payload`, an encoded `audit::Record`) for database `dboid` in the
/// queue and wakes the database's writer, or the launcher when it has none. Returns the
/// record id. When the queue is full, first discards the oldest records of stalled
/// databases (`make_room`, a LOG line per database); if that is not enough, with `wait`,
/// waits up to ENQUEUE_WAIT_MS for space (interruptible by a query cancel), trying again
/// whenever space is freed or a writer hands a batch back; without it (in abort callbacks)
/// fails at once.
///
/// # Safety
/// Backend main thread; not while holding the queue lock.
pub unsafe fn enqueue(dboid: pg_sys::Oid, payload: &[u8], wait: bool) -> Result<u64, EnqueueError> {
    unsafe {
        if QUEUE.is_null() || LOCK.is_null() {
            return Err(EnqueueError::NoQueue);
        }
        let q = QUEUE;
        let total = align(RECORD_HEADER + payload.len()) as u64;
        if payload.len() > max_payload() {
            return Err(EnqueueError::TooLarge);
        }
        let deadline = pg_sys::GetCurrentTimestamp() + ENQUEUE_WAIT_MS * 1000;
        let mut sleeping = false;
        let result = loop {
            let lock = Locked::acquire();
            let discarded = if fits(q, total) { Vec::new() } else { make_room(q, total) };
            if let Some(id) = append(q, dboid.to_u32(), payload) {
                let latch = match (*q).writers.iter().find(|w| w.dboid == dboid) {
                    Some(w) if !w.latch.is_null() => w.latch,
                    _ => (*q).launcher_latch,
                };
                drop(lock);
                if !latch.is_null() {
                    pg_sys::SetLatch(latch);
                }
                discarded.iter().for_each(log_discarded);
                break Ok(id);
            }
            let remaining_ms = (deadline - pg_sys::GetCurrentTimestamp()) / 1000;
            // No launcher (not started yet, or restarting): nobody will make room soon.
            if !wait || remaining_ms <= 0 || (*q).launcher_latch.is_null() {
                (*q).dropped += 1;
                drop(lock);
                discarded.iter().for_each(log_discarded);
                break Err(EnqueueError::Full);
            }
            // Wake the writers: they may be idle with work that only now became urgent.
            let latch = (*q).launcher_latch;
            drop(lock);
            discarded.iter().for_each(log_discarded);
            if !latch.is_null() {
                pg_sys::SetLatch(latch);
            }
            if !sleeping {
                pg_sys::ConditionVariablePrepareToSleep(&raw mut (*q).space);
                sleeping = true;
                continue;
            }
            pg_sys::ConditionVariableTimedSleep(&raw mut (*q).space, remaining_ms.min(100), pg_sys::PG_WAIT_EXTENSION);
        };
        if sleeping {
            pg_sys::ConditionVariableCancelSleep();
        }
        result
    }
}

/// A record a writer took from the queue.
pub struct Claimed {
    offset: u64,
    pub id: u64,
    pub payload: Vec<u8>,
    /// Handed back after its writer died: a row with its id may be in the table already.
    pub handed_back: bool,
}

/// Takes up to `max_records` PENDING records of `dboid` (oldest first) and marks them
/// CLAIMED.
pub unsafe fn claim(dboid: pg_sys::Oid, max_records: usize) -> Vec<Claimed> {
    let mut out = Vec::new();
    unsafe {
        let q = QUEUE;
        let _lock = Locked::acquire();
        for (off, h) in records(q) {
            if out.len() >= max_records {
                break;
            }
            if (*h).state == STATE_PENDING && (*h).dboid == dboid.to_u32() {
                let p = std::slice::from_raw_parts((h as *const u8).add(RECORD_HEADER), (*h).payload_len as usize);
                out.push(Claimed { offset: off, id: (*h).id, payload: p.to_vec(), handed_back: (*h).handed_back != 0 });
                (*h).state = STATE_CLAIMED;
            }
        }
    }
    out
}

/// Marks claimed records DONE (their insert committed, or they were discarded), frees the
/// space they and any DONE records before them held, and wakes backends waiting for it.
pub unsafe fn done(records: &[Claimed]) {
    unsafe {
        let q = QUEUE;
        let freed = {
            let _lock = Locked::acquire();
            for r in records.iter().filter(|r| r.offset >= (*q).head) {
                (*record_at(q, r.offset)).state = STATE_DONE;
            }
            let before = (*q).head;
            advance_head(q);
            (*q).head != before
        };
        if freed {
            pg_sys::ConditionVariableBroadcast(&raw mut (*q).space);
        }
    }
}

/// The writer of `dboid` gives claimed records back (PENDING, their `handed_back` flag
/// unchanged) because its insert failed for a reason that may pass, and marks the database
/// stalled (`Stall::InsertFailing`) until it delivers again; wakes backends waiting for
/// space, which may now discard them.
pub unsafe fn hand_back(dboid: pg_sys::Oid, records: &[Claimed]) {
    unsafe {
        let q = QUEUE;
        {
            let _lock = Locked::acquire();
            for r in records.iter().filter(|r| r.offset >= (*q).head) {
                let h = record_at(q, r.offset);
                if (*h).state == STATE_CLAIMED {
                    (*h).state = STATE_PENDING;
                }
            }
            if let Some(w) = (*q).writers.iter_mut().find(|w| w.dboid == dboid) {
                w.stall = Stall::InsertFailing as u32;
            }
        }
        pg_sys::ConditionVariableBroadcast(&raw mut (*q).space);
    }
}

/// The writer of `dboid` delivered a batch (inserted, or discarded for good with a
/// WARNING): counted for the launcher, and the database is no longer stalled.
pub unsafe fn delivered(dboid: pg_sys::Oid) {
    unsafe {
        let _lock = Locked::acquire();
        if let Some(w) = (*QUEUE).writers.iter_mut().find(|w| w.dboid == dboid) {
            w.delivered += 1;
            w.stall = Stall::No as u32;
        }
    }
}

/// Marks `dboid` stalled for `why` (launcher: `Stall::WriterFailing` while it backs off).
/// Wakes backends waiting for space, which may now discard its records. False when the
/// database has no writer slot.
pub unsafe fn set_stall(dboid: pg_sys::Oid, why: Stall) -> bool {
    unsafe {
        let q = QUEUE;
        let marked = {
            let _lock = Locked::acquire();
            match (*q).writers.iter_mut().find(|w| w.dboid == dboid) {
                Some(w) => {
                    w.stall = why as u32;
                    true
                }
                None => false,
            }
        };
        pg_sys::ConditionVariableBroadcast(&raw mut (*q).space);
        marked
    }
}

/// How a writer ended, as the launcher sees it.
pub struct WriterEnd {
    /// It delivered a batch, or left because it had nothing to do.
    pub clean: bool,
    /// Records of its database are queued.
    pub pending: bool,
}

/// The launcher saw the writer of `dboid` exit: hands back (PENDING) the records it had
/// claimed but not marked DONE, withdraws its latch and pid from the slot (which the
/// launcher may keep while the database is failing), and says how it ended.
pub unsafe fn writer_exited(dboid: pg_sys::Oid) -> WriterEnd {
    unsafe {
        let q = QUEUE;
        let _lock = Locked::acquire();
        let mut pending = false;
        for (_, h) in records(q) {
            if (*h).dboid != dboid.to_u32() {
                continue;
            }
            if (*h).state == STATE_CLAIMED {
                (*h).state = STATE_PENDING;
                (*h).handed_back = 1;
            }
            pending |= (*h).state == STATE_PENDING;
        }
        let mut clean = false;
        if let Some(w) = (*q).writers.iter_mut().find(|w| w.dboid == dboid) {
            clean = w.delivered > 0 || w.idle_exit != 0;
            w.latch = std::ptr::null_mut();
            w.pid = 0;
        }
        WriterEnd { clean, pending }
    }
}

/// Databases with PENDING records, without duplicates.
pub unsafe fn pending_databases() -> Vec<pg_sys::Oid> {
    let mut out: Vec<pg_sys::Oid> = Vec::new();
    unsafe {
        let q = QUEUE;
        let _lock = Locked::acquire();
        for (_, h) in records(q) {
            if (*h).state == STATE_PENDING && !out.iter().any(|d| d.to_u32() == (*h).dboid) {
                out.push(pg_sys::Oid::from((*h).dboid));
            }
        }
    }
    out
}

/// Marks every PENDING record of `dboid` DONE without writing it (the database is gone,
/// or its writer keeps failing), counted in `dropped` when `count_dropped`. Returns how
/// many.
pub unsafe fn discard(dboid: pg_sys::Oid, count_dropped: bool) -> usize {
    let claimed = unsafe { claim(dboid, usize::MAX) };
    unsafe {
        if count_dropped {
            let _lock = Locked::acquire();
            (*QUEUE).dropped += claimed.len() as u64;
        }
        done(&claimed)
    };
    claimed.len()
}

/// Registers the calling process as the launcher (its latch is set for new records of a
/// database without a writer).
pub unsafe fn set_launcher_latch(latch: *mut pg_sys::Latch) {
    unsafe {
        let _lock = Locked::acquire();
        (*QUEUE).launcher_latch = latch;
    }
}

/// Reserves the writer slot for `dboid` before the launcher starts a writer, with the
/// delivery count and the idle-exit flag at 0 (a slot kept while the database is stalled
/// keeps its mark). False when every slot is taken.
pub unsafe fn reserve_writer(dboid: pg_sys::Oid) -> bool {
    unsafe {
        let q = QUEUE;
        let _lock = Locked::acquire();
        if let Some(w) = (*q).writers.iter_mut().find(|w| w.dboid == dboid) {
            w.delivered = 0;
            w.idle_exit = 0;
            return true;
        }
        match (*q).writers.iter_mut().find(|w| w.dboid == pg_sys::InvalidOid) {
            Some(w) => {
                *w = WriterSlot { dboid, ..FREE_SLOT };
                true
            }
            None => false,
        }
    }
}

/// Frees the writer slot of `dboid` (launcher, after the writer exited, unless the
/// database is stalled).
pub unsafe fn release_writer(dboid: pg_sys::Oid) {
    unsafe {
        let _lock = Locked::acquire();
        for w in (*QUEUE).writers.iter_mut().filter(|w| w.dboid == dboid) {
            *w = FREE_SLOT;
        }
    }
}

/// Frees every slot and clears every stall mark: a launcher that starts knows of no
/// writer (one that restarted after an exit lost its predecessor's state).
pub unsafe fn reset_writers() {
    unsafe {
        let _lock = Locked::acquire();
        (*QUEUE).writers = [FREE_SLOT; MAX_WRITERS];
    }
}

/// The writer announces itself: backends set its latch from now on.
pub unsafe fn writer_started(dboid: pg_sys::Oid, latch: *mut pg_sys::Latch, pid: i32) {
    unsafe {
        let _lock = Locked::acquire();
        if let Some(w) = (*QUEUE).writers.iter_mut().find(|w| w.dboid == dboid) {
            w.latch = latch;
            w.pid = pid;
        }
    }
}

/// The idle writer asks to leave: true (its latch withdrawn, its slot marked as left idle)
/// when no record of its database is pending, so a backend that queues one afterwards
/// wakes the launcher instead.
pub unsafe fn writer_may_exit(dboid: pg_sys::Oid) -> bool {
    unsafe {
        let q = QUEUE;
        let _lock = Locked::acquire();
        if records(q).any(|(_, h)| (*h).state == STATE_PENDING && (*h).dboid == dboid.to_u32()) {
            return false;
        }
        if let Some(w) = (*q).writers.iter_mut().find(|w| w.dboid == dboid) {
            w.latch = std::ptr::null_mut();
            w.idle_exit = 1;
        }
        true
    }
}

/// Queue figures for `pg_migration_guard.audit_queue_status()`.
pub struct Status {
    pub size_bytes: u64,
    pub used_bytes: u64,
    pub pending_records: u64,
    pub dropped_records: u64,
    pub writers: Vec<(pg_sys::Oid, i32)>,
}

pub unsafe fn status() -> Option<Status> {
    unsafe {
        if QUEUE.is_null() {
            return None;
        }
        let q = QUEUE;
        let _lock = Locked::acquire();
        let pending = records(q).filter(|(_, h)| (**h).state == STATE_PENDING || (**h).state == STATE_CLAIMED).count() as u64;
        Some(Status {
            size_bytes: (*q).size,
            used_bytes: (*q).tail - (*q).head,
            pending_records: pending,
            dropped_records: (*q).dropped,
            writers: (*q).writers.iter().filter(|w| w.dboid != pg_sys::InvalidOid).map(|w| (w.dboid, w.pid)).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring of `size` bytes in process memory (no lock: the functions under test are the
    /// ones that run while the caller holds it).
    struct Ring {
        mem: Vec<u64>,
    }

    impl Ring {
        fn new(size: usize) -> Ring {
            let mut r = Ring { mem: vec![0u64; (std::mem::size_of::<QueueHeader>() + size) / 8 + 1] };
            unsafe {
                (*r.q()).size = size as u64;
                (*r.q()).next_id = 1;
            }
            r
        }
        fn q(&mut self) -> *mut QueueHeader {
            self.mem.as_mut_ptr() as *mut QueueHeader
        }
        fn stall(&mut self, slot: usize, dboid: u32, why: Stall) {
            unsafe { (*self.q()).writers[slot] = WriterSlot { dboid: pg_sys::Oid::from(dboid), stall: why as u32, ..FREE_SLOT } };
        }
        /// Appends a record of `dboid` with a 100-byte payload (160 bytes in the ring).
        fn push(&mut self, dboid: u32) -> Option<u64> {
            unsafe { append(self.q(), dboid, &[7u8; 100]) }
        }
        /// (dboid, state) of each record between head and tail, padding left out.
        fn contents(&mut self) -> Vec<(u32, u32)> {
            unsafe { records(self.q()).filter(|(_, h)| (**h).state != STATE_PAD).map(|(_, h)| ((*h).dboid, (*h).state)).collect() }
        }
        fn set_state(&mut self, index: usize, state: u32) {
            let q = self.q();
            let (_, h) = unsafe { records(q).filter(|(_, h)| (**h).state != STATE_PAD).nth(index).unwrap() };
            unsafe { (*h).state = state };
        }
        fn make_room(&mut self) -> Vec<Discarded> {
            unsafe { make_room(self.q(), 160) }
        }
        fn dropped(&mut self) -> u64 {
            unsafe { (*self.q()).dropped }
        }
    }

    const P: u32 = STATE_PENDING;
    const C: u32 = STATE_CLAIMED;

    #[test]
    fn max_payload_is_a_quarter_of_the_ring_less_a_header() {
        assert_eq!(max_payload_for(MIN_QUEUE_BYTES), 16 * 1024 - 32);
        assert_eq!(max_payload_for(1024 * 1024), 256 * 1024 - 32);
    }

    /// The stalled database's oldest records make room, only as many as needed; healthy
    /// databases' records and claimed records stay, and stop the discarding.
    #[test]
    fn a_full_ring_discards_the_oldest_records_of_stalled_databases_only() {
        let mut r = Ring::new(1024);
        r.stall(0, 1, Stall::WriterFailing);
        r.stall(1, 2, Stall::No);
        for db in [1, 2, 1, 1, 1, 1] {
            assert!(r.push(db).is_some());
        }
        assert_eq!(r.push(3), None, "six records of 160 bytes fill 1024 bytes");

        // The oldest record, database 1's, goes; one is enough (the new record goes behind a
        // padding record at the end of the ring).
        assert_eq!(r.make_room(), vec![Discarded { dboid: 1, records: 1, why: Stall::WriterFailing }]);
        assert!(r.push(3).is_some());
        assert_eq!(r.contents(), vec![(2, P), (1, P), (1, P), (1, P), (1, P), (3, P)]);
        assert_eq!(r.dropped(), 1);

        // The head is database 2's record: nothing may go; the caller waits for its writer.
        assert_eq!(r.push(3), None);
        assert_eq!(r.make_room(), vec![]);
        // Its writer claimed it: still nothing (never discard what a writer holds).
        r.set_state(0, C);
        assert_eq!(r.make_room(), vec![]);
        // It delivered: the DONE record is passed over, which is room enough.
        r.set_state(0, STATE_DONE);
        assert_eq!(r.make_room(), vec![]);
        assert!(r.push(3).is_some());
        assert_eq!(r.contents(), vec![(1, P), (1, P), (1, P), (1, P), (3, P), (3, P)]);

        // Full again: the next oldest of database 1 goes.
        assert_eq!(r.push(3), None);
        assert_eq!(r.make_room(), vec![Discarded { dboid: 1, records: 1, why: Stall::WriterFailing }]);
        assert!(r.push(3).is_some());
        assert_eq!(r.contents(), vec![(1, P), (1, P), (1, P), (3, P), (3, P), (3, P)]);
        assert_eq!(r.dropped(), 2);
    }

    #[test]
    fn claimed_records_of_a_stalled_database_stay() {
        let mut r = Ring::new(1024);
        r.stall(0, 1, Stall::InsertFailing);
        for _ in 0..6 {
            r.push(1).unwrap();
        }
        r.set_state(0, C);
        assert_eq!(r.make_room(), vec![]);
        assert_eq!(r.push(1), None);
        assert_eq!(r.dropped(), 0);
        // Handed back (PENDING again): now it may go.
        r.set_state(0, P);
        assert_eq!(r.make_room(), vec![Discarded { dboid: 1, records: 1, why: Stall::InsertFailing }]);
        assert!(r.push(1).is_some());
        assert_eq!(r.dropped(), 1);
    }

    #[test]
    fn nothing_is_discarded_while_the_record_fits_or_no_database_is_stalled() {
        let mut r = Ring::new(1024);
        r.stall(0, 1, Stall::WriterFailing);
        r.push(1).unwrap();
        assert_eq!(r.make_room(), vec![], "the record fits: nothing to discard");
        let mut r = Ring::new(1024);
        for _ in 0..6 {
            r.push(1).unwrap();
        }
        assert_eq!(r.make_room(), vec![], "database 1 has no slot, so it is not stalled");
        assert_eq!(r.contents().len(), 6);
    }
}

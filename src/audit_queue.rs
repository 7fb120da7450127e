//! The audit queue: a ring buffer in shared memory that carries audit records from the
//! backends that judged a statement to the audit writers (`crate::audit_writer`), which
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
//! What can be lost: the queue lives in shared memory, so records still in it when the
//! server stops or restarts after a crash are not in the table (they are in the server log,
//! where every decision is written when it is made). A record that finds the queue full
//! for `ENQUEUE_WAIT_MS` is not queued either; the backend says so with a WARNING.

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

/// What the backends and the launcher know about a database's writer.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct WriterSlot {
    /// The database; InvalidOid when the slot is free.
    pub dboid: pg_sys::Oid,
    /// The writer's latch once it runs, null before.
    pub latch: *mut pg_sys::Latch,
    pub pid: i32,
}

#[repr(C)]
struct QueueHeader {
    size: u64,
    head: u64,
    tail: u64,
    next_id: u64,
    /// Records not queued because the queue stayed full (each also got a WARNING).
    dropped: u64,
    space: pg_sys::ConditionVariable,
    launcher_latch: *mut pg_sys::Latch,
    writers: [WriterSlot; MAX_WRITERS],
}

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
        let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock; // AddinShmemInitLock
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

unsafe fn record_at(q: *mut QueueHeader, offset: u64) -> *mut RecordHeader {
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

/// Puts one record (`payload`, an encoded `audit::Record`) for database `dboid` in the queue and wakes
/// the database's writer, or the launcher when it has none. Returns the record id. With
/// `wait`, waits up to ENQUEUE_WAIT_MS for space (interruptible by a query cancel);
/// without it (in abort callbacks) fails at once when the queue is full.
///
/// # Safety
/// Backend main thread; not while holding the queue lock.
pub unsafe fn enqueue(dboid: pg_sys::Oid, payload: &[u8], wait: bool) -> Result<u64, EnqueueError> {
    unsafe {
        if QUEUE.is_null() || LOCK.is_null() {
            return Err(EnqueueError::NoQueue);
        }
        let q = QUEUE;
        let total = align(RECORD_HEADER + payload.len());
        if payload.len() > max_payload() {
            return Err(EnqueueError::TooLarge);
        }
        let deadline = pg_sys::GetCurrentTimestamp() + ENQUEUE_WAIT_MS * 1000;
        let mut sleeping = false;
        let result = loop {
            let lock = Locked::acquire();
            let size = (*q).size;
            let pos = (*q).tail % size;
            let pad = if pos as usize + total > size as usize { size - pos } else { 0 };
            if (*q).tail + pad + total as u64 - (*q).head <= size {
                if pad > 0 {
                    let h = record_at(q, (*q).tail);
                    (*h).len = pad as u32;
                    (*h).state = STATE_PAD;
                    (*q).tail += pad;
                }
                let h = record_at(q, (*q).tail);
                let id = (*q).next_id;
                (*q).next_id += 1;
                (*h).len = total as u32;
                (*h).dboid = dboid.to_u32();
                (*h).payload_len = payload.len() as u32;
                (*h).id = id;
                (*h).handed_back = 0;
                std::ptr::copy_nonoverlapping(payload.as_ptr(), (h as *mut u8).add(RECORD_HEADER), payload.len());
                (*h).state = STATE_PENDING;
                (*q).tail += total as u64;
                let latch = match (*q).writers.iter().find(|w| w.dboid == dboid) {
                    Some(w) if !w.latch.is_null() => w.latch,
                    _ => (*q).launcher_latch,
                };
                drop(lock);
                if !latch.is_null() {
                    pg_sys::SetLatch(latch);
                }
                break Ok(id);
            }
            let remaining_ms = (deadline - pg_sys::GetCurrentTimestamp()) / 1000;
            // No launcher (not started yet, or restarting): nobody will make room soon.
            if !wait || remaining_ms <= 0 || (*q).launcher_latch.is_null() {
                (*q).dropped += 1;
                break Err(EnqueueError::Full);
            }
            // Wake the writers: they may be idle with work that only now became urgent.
            let latch = (*q).launcher_latch;
            drop(lock);
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
            for r in records {
                (*record_at(q, r.offset)).state = STATE_DONE;
            }
            let before = (*q).head;
            while (*q).head < (*q).tail {
                let h = record_at(q, (*q).head);
                if (*h).state != STATE_DONE && (*h).state != STATE_PAD {
                    break;
                }
                (*q).head += (*h).len as u64;
            }
            (*q).head != before
        };
        if freed {
            pg_sys::ConditionVariableBroadcast(&raw mut (*q).space);
        }
    }
}

/// Hands CLAIMED records of `dboid` back (PENDING): their writer died before it marked
/// them DONE. Called by the launcher when it sees the writer gone.
pub unsafe fn unclaim(dboid: pg_sys::Oid) {
    unsafe {
        let q = QUEUE;
        let _lock = Locked::acquire();
        for (_, h) in records(q) {
            if (*h).state == STATE_CLAIMED && (*h).dboid == dboid.to_u32() {
                (*h).state = STATE_PENDING;
                (*h).handed_back = 1;
            }
        }
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

/// Marks every PENDING record of `dboid` DONE without writing it (the database is gone).
/// Returns how many.
pub unsafe fn discard(dboid: pg_sys::Oid) -> usize {
    let claimed = unsafe { claim(dboid, usize::MAX) };
    unsafe { done(&claimed) };
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

/// Reserves the writer slot for `dboid` (launcher). False when every slot is taken.
pub unsafe fn reserve_writer(dboid: pg_sys::Oid) -> bool {
    unsafe {
        let q = QUEUE;
        let _lock = Locked::acquire();
        if (*q).writers.iter().any(|w| w.dboid == dboid) {
            return true;
        }
        match (*q).writers.iter_mut().find(|w| w.dboid == pg_sys::InvalidOid) {
            Some(w) => {
                *w = WriterSlot { dboid, latch: std::ptr::null_mut(), pid: 0 };
                true
            }
            None => false,
        }
    }
}

/// Frees the writer slot of `dboid` (launcher, after the writer exited or failed to start).
pub unsafe fn release_writer(dboid: pg_sys::Oid) {
    unsafe {
        let _lock = Locked::acquire();
        for w in (*QUEUE).writers.iter_mut().filter(|w| w.dboid == dboid) {
            *w = WriterSlot { dboid: pg_sys::InvalidOid, latch: std::ptr::null_mut(), pid: 0 };
        }
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

/// The idle writer asks to leave: true (and its latch withdrawn) when no record of its
/// database is pending, so a backend that queues one afterwards wakes the launcher instead.
pub unsafe fn writer_may_exit(dboid: pg_sys::Oid) -> bool {
    unsafe {
        let q = QUEUE;
        let _lock = Locked::acquire();
        if records(q).any(|(_, h)| (*h).state == STATE_PENDING && (*h).dboid == dboid.to_u32()) {
            return false;
        }
        if let Some(w) = (*q).writers.iter_mut().find(|w| w.dboid == dboid) {
            w.latch = std::ptr::null_mut();
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

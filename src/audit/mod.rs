//! The audit trail: every decision on a judged statement is
//! 1. one LOG line in the server log, written when the decision is made (before the
//!    statement runs, and before the ERROR of a rejection), and
//! 2. one row in `pg_migration_guard.audit_log` of the statement's database, written by the
//!    database's audit writer (`crate::audit::writer`) in a transaction of its own from a
//!    record this backend puts in the shared-memory queue (`crate::audit::queue`) when the
//!    outcome is known: right before a rejection's ERROR, after the statement completed, or
//!    in the (sub)transaction abort that a failed statement caused.
//!
//! So the row exists whether the statement's transaction commits or aborts; the
//! `pg_migration_guard.audit` view adds the transaction's fate from the row's xid.
//!
//! Every variable-length field of a record has a bound (the `*_MAX` constants below; the
//! statement takes the room the others leave), and a longer value is cut at a character
//! boundary and ends with ` [truncated by pg_migration_guard: N bytes in all]`, so that a
//! record always fits the queue (`queue::max_payload`): a decision never loses its
//! row to its own size. The LOG line carries every field in full, with control characters
//! escaped (`escape_log_text`) so that it stays one line.
//!
//! What can be lost (everything below is still in the server log):
//! - rows of records in the queue when the server stops, or when it restarts after a
//!   crash (shared memory is reinitialised); a writer inserts them within about 0.1 s;
//! - records of a database whose writer cannot deliver them (it keeps failing to start, or
//!   to insert for a reason that may pass: the database is *stalled*, `audit_queue`): they
//!   are discarded, oldest first, when the queue is full, and all of them once the writer
//!   failed to start `audit_writer::DISCARD_AFTER_FAILURES` times in a row; each discard is
//!   a LOG line;
//! - the record of a statement that found the queue full for 10 s of records of databases
//!   that are not stalled (their writers are behind, or more than `queue::MAX_WRITERS`
//!   databases wait for a writer): the backend then reports a WARNING;
//! - records of a database that was dropped, or whose audit table is gone or altered so
//!   that the insert fails (the writer discards the batch with a WARNING);
//! - in databases without `CREATE EXTENSION pg_migration_guard` there is no table: the
//!   statements are judged and logged, not queued.

use std::borrow::Cow;
use std::fmt::Write;

use pgrx::pg_sys;
use pgrx::{PgLogLevel, PgSqlErrorCode};
use serde::{Deserialize, Serialize};

use self::queue::EnqueueError;

pub mod queue;
pub mod writer;
use crate::decision::Verdict;
use crate::judging::lock_targets::Target;

/// One decision as the audit records it (pgaudit's `AuditEvent`): the statement, who sent
/// it, the guard's verdict, and the locks the statement takes. The hook builds it when it
/// judges the statement and hands it to [`log_line`] and [`record`].
pub struct Event {
    pub statement: String,
    pub command_tag: String,
    pub verdict: Verdict,
    /// Why the session is exempt (decision `exempt`), or why an annotation was refused.
    pub exemption: Option<String>,
    /// The table-level locks the statement takes (`crate::judging::lock_targets`).
    pub locks: Vec<Target>,
    /// Who sent it.
    pub session: Session,
    /// Whether this database has the audit table (decided while the catalog is readable).
    pub audited: bool,
    /// When judging started (GetCurrentTimestamp).
    pub started_at: pg_sys::TimestampTz,
    /// Whether its LOG line was written ([`log_decision`]).
    pub logged: bool,
}

impl Event {
    /// The message the audit row and the LOG line carry.
    pub fn message(&self) -> Option<&str> {
        self.verdict.report.as_ref().map(|r| r.message.as_str()).or(self.exemption.as_deref())
    }
}

/// Writes the decision's LOG line ([`log_line`]) unless `pg_migration_guard.log_decisions`
/// is `flagged` and the decision is an allowed one with no message whose audit record will
/// be queued (`audited`): with `flagged`, such a decision is in the audit table only, and
/// [`record`] writes its line after all if the record cannot be queued.
pub fn log_decision(j: &mut Event) {
    let quiet = crate::guc::LOG_DECISIONS.get() == crate::guc::LogDecisions::Flagged
        && j.audited
        && j.verdict.decision == crate::decision::Decision::Allowed
        && j.message().is_none();
    if !quiet {
        log_line(j);
        j.logged = true;
    }
}

/// Writes the decision's LOG line. LOG lines go to the server log only (not to the
/// client) under the default `log_min_messages` and `client_min_messages`. One message,
/// no DETAIL — each further field would cost PostgreSQL another `log_line_prefix` (about
/// a third of the line's price, docs/benchmarks.md):
///
/// ```text
/// LOG:  pg_migration_guard: allowed ALTER TABLE; statement: ALTER TABLE orders ADD COLUMN note text
/// LOG:  pg_migration_guard: rejected CREATE INDEX: require-concurrent-index-creation: CREATE INDEX would block writes to public.orders; statement: CREATE INDEX ON orders (total)
/// ```
///
/// The line carries this statement alone; the `STATEMENT:` line PostgreSQL would add
/// (the whole query string, which the line already has for a single statement) is
/// suppressed with `errhidestmt`, as pgaudit does; a statement run inside a function keeps
/// its CONTEXT line. The message is not translated (`errmsg_internal`): it is
/// machine-readable (src/backend/utils/error/elog.c).
///
/// The whole line goes through [`escape_log_text`]: a newline in the statement, the
/// message or an override reason is written as `\n`, so the line is one line of the
/// server log and cannot imitate the lines that follow it.
pub fn log_line(j: &Event) {
    let decision = j.verdict.decision.as_str();
    let message = j.message().filter(|m| !m.is_empty());
    // The line built in one buffer, NUL-terminated, in the order it reads.
    let mut line = String::with_capacity(64 + j.command_tag.len() + message.map_or(0, str::len) + j.statement.len());
    line.push_str("pg_migration_guard: ");
    line.push_str(decision);
    line.push(' ');
    line.push_str(&j.command_tag);
    if let Some(message) = message {
        line.push_str(": ");
        line.push_str(message);
    }
    line.push_str("; statement: ");
    line.push_str(&j.statement);
    if let Cow::Owned(escaped) = escape_log_text(&line) {
        line = escaped;
    }
    // (an interior NUL, impossible in statement text PostgreSQL received as a C string,
    // would end the line there)
    line.push('\0');
    // ereport() by hand: errstart and errfinish are not in pgrx's bindings, and pgrx's
    // ErrorReport has no errhidestmt. No value with a destructor is live while PostgreSQL's
    // functions run: an ERROR inside errfinish (out of memory) would longjmp over this
    // frame (the line is then leaked, not freed).
    unsafe extern "C-unwind" {
        fn errstart(elevel: std::ffi::c_int, domain: *const std::ffi::c_char) -> bool;
        fn errfinish(filename: *const std::ffi::c_char, lineno: std::ffi::c_int, funcname: *const std::ffi::c_char);
    }
    let line = std::mem::ManuallyDrop::new(line);
    unsafe {
        if errstart(pg_sys::LOG as _, c"pg_migration_guard".as_ptr()) {
            pg_sys::errmsg_internal(c"%s".as_ptr(), line.as_ptr());
            pg_sys::errhidestmt(true);
            errfinish(c"src/audit.rs".as_ptr(), line!() as _, c"log_line".as_ptr());
        }
    }
    drop(std::mem::ManuallyDrop::into_inner(line));
}

/// `text` with the characters that could end a server-log line or forge another escaped,
/// for the decision's LOG line ([`log_line`]): backslash as `\\` (so that the escaping
/// is unambiguous), newline, carriage return and tab as `\n`, `\r`, `\t`, the other C0
/// controls and DEL as `\xNN` (two lowercase hex digits), the C1 controls (U+0080 to
/// U+009F, among them NEL) and the Unicode line and paragraph separators (U+2028, U+2029)
/// as `\uNNNN`. Everything else is kept. Borrowed (no copy) when nothing needs escaping,
/// which is the common case: the check is one pass over the bytes.
pub fn escape_log_text(text: &str) -> Cow<'_, str> {
    if !needs_escape(text.as_bytes()) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for ch in text.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0}'..='\u{1f}' | '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", ch as u32);
            }
            '\u{80}'..='\u{9f}' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", ch as u32);
            }
            _ => out.push(ch),
        }
    }
    Cow::Owned(out)
}

/// Whether [`escape_log_text`] changes `b` (UTF-8): a C0 control, DEL or backslash, a C1
/// control (0xC2 0x80..0x9F) or U+2028/U+2029 (0xE2 0x80 0xA8/0xA9).
fn needs_escape(b: &[u8]) -> bool {
    // Printable ASCII other than backslash, nearly every statement: one branch-free pass.
    if b.iter().fold(true, |plain, &c| plain & (0x20..0x7f).contains(&c) & (c != b'\\')) {
        return false;
    }
    b.iter().enumerate().any(|(i, &c)| match c {
        0..=0x1f | 0x7f | b'\\' => true,
        0xc2 => matches!(b.get(i + 1), Some(0x80..=0x9f)),
        0xe2 => b.get(i + 1) == Some(&0x80) && matches!(b.get(i + 2), Some(0xa8 | 0xa9)),
        _ => false,
    })
}

/// The audit table's oid, when the extension is installed in this database.
///
/// Looked up by name (`pg_migration_guard.audit_log`) once and kept for the backend until an
/// invalidation could change the answer ([`lookups`]): any relcache invalidation while no
/// table is known (a CREATE TABLE sends one for the new relation), one of the table itself
/// (dropped, renamed, moved to another schema), any change to a schema (renamed, dropped),
/// or a cache reset. These are processed exactly when the catalog caches the lookup reads
/// are refreshed, so the answer is the one the lookup would give.
///
/// # Safety
/// Inside a valid transaction (syscache lookups).
pub unsafe fn audit_table() -> Option<pg_sys::Oid> {
    unsafe {
        lookups::register();
        if let Some(known) = lookups::AUDIT_TABLE {
            return known;
        }
        let found = audit_table_by_name();
        lookups::AUDIT_TABLE = Some(found);
        found
    }
}

unsafe fn audit_table_by_name() -> Option<pg_sys::Oid> {
    unsafe {
        let nsp = pg_sys::get_namespace_oid(c"pg_migration_guard".as_ptr(), true);
        if nsp == pg_sys::InvalidOid {
            return None;
        }
        let rel = pg_sys::get_relname_relid(c"audit_log".as_ptr(), nsp);
        (rel != pg_sys::InvalidOid).then_some(rel)
    }
}

/// A role's name, as `GetUserNameFromId(oid, true)` gives it, or `oid N` for a role that
/// does not exist; the names of the last two roles asked for are kept until a change to
/// pg_authid invalidates them ([`lookups`]).
///
/// # Safety
/// Inside a valid transaction.
unsafe fn role_name(oid: pg_sys::Oid) -> String {
    unsafe {
        lookups::register();
        let cache = &mut *std::ptr::addr_of_mut!(lookups::ROLE_NAMES);
        if let Some((_, name)) = cache.iter().find(|(o, _)| *o == oid) {
            return name.clone();
        }
        let p = pg_sys::GetUserNameFromId(oid, true);
        let name = if p.is_null() { format!("oid {}", oid.to_u32()) } else { lossy(std::ffi::CStr::from_ptr(p).to_bytes()) };
        if cache.len() >= 2 {
            cache.remove(0);
        }
        cache.push((oid, name.clone()));
        name
    }
}

/// `bytes` as a String, invalid UTF-8 replaced (String::from_utf8_lossy), checked with the
/// faster `str::from_utf8` first: names and statements are nearly always valid.
pub fn lossy(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Per-backend results of catalog lookups made for every judged statement, and the cache
/// invalidation callbacks (src/backend/utils/cache/inval.c) that forget them.
mod lookups {
    use pgrx::pg_sys;

    /// `Some(answer)` once looked up; `None` when unknown.
    pub(super) static mut AUDIT_TABLE: Option<Option<pg_sys::Oid>> = None;
    /// (role oid, name) of the last roles looked up, at most two.
    pub(super) static mut ROLE_NAMES: Vec<(pg_sys::Oid, String)> = Vec::new();
    static mut REGISTERED: bool = false;

    /// Registers the callbacks, once per process (PostgreSQL keeps them for its life).
    pub(super) unsafe fn register() {
        unsafe {
            if REGISTERED {
                return;
            }
            REGISTERED = true;
            pg_sys::CacheRegisterRelcacheCallback(Some(relcache_changed), pg_sys::Datum::from(0));
            pg_sys::CacheRegisterSyscacheCallback(
                pg_sys::SysCacheIdentifier::NAMESPACEOID as i32,
                Some(schema_changed),
                pg_sys::Datum::from(0),
            );
            pg_sys::CacheRegisterSyscacheCallback(pg_sys::SysCacheIdentifier::AUTHOID as i32, Some(role_changed), pg_sys::Datum::from(0));
        }
    }

    /// A relation's relcache entry was invalidated (`relid`), or all of them (InvalidOid).
    unsafe extern "C-unwind" fn relcache_changed(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
        unsafe {
            match AUDIT_TABLE {
                Some(Some(oid)) if oid != relid && relid != pg_sys::InvalidOid => {}
                _ => AUDIT_TABLE = None,
            }
        }
    }

    unsafe extern "C-unwind" fn schema_changed(_arg: pg_sys::Datum, _cacheid: std::ffi::c_int, _hash: u32) {
        unsafe { AUDIT_TABLE = None }
    }

    unsafe extern "C-unwind" fn role_changed(_arg: pg_sys::Datum, _cacheid: std::ffi::c_int, _hash: u32) {
        unsafe { (*std::ptr::addr_of_mut!(ROLE_NAMES)).clear() }
    }
}

/// Who sent the statement, captured when it is judged (role names need the catalog, which
/// an aborting transaction can no longer read).
#[derive(Serialize, Deserialize, Clone, Default, Debug, PartialEq)]
pub struct Session {
    pub session_role: String,
    pub effective_role: String,
    pub application_name: String,
    pub client_addr: Option<String>,
    pub backend_pid: i32,
}

impl Session {
    /// # Safety
    /// Inside a valid transaction.
    pub unsafe fn current() -> Session {
        unsafe {
            // The client address cannot change during a connection: looked up once.
            thread_local! {
                static CLIENT_ADDR: std::cell::OnceCell<Option<String>> = const { std::cell::OnceCell::new() };
            }
            let client_addr = CLIENT_ADDR.with(|c| c.get_or_init(|| client_addr()).clone());
            Session {
                session_role: role_name(pg_sys::GetSessionUserId()),
                effective_role: role_name(pg_sys::GetUserId()),
                application_name: if pg_sys::application_name.is_null() {
                    String::new()
                } else {
                    lossy(std::ffi::CStr::from_ptr(pg_sys::application_name).to_bytes())
                },
                client_addr,
                backend_pid: pg_sys::MyProcPid,
            }
        }
    }
}

/// The client's IP address, as `inet_client_addr()` reports it (NULL for Unix-socket
/// connections and background workers).
unsafe fn client_addr() -> Option<String> {
    unsafe {
        let addr = pgrx::direct_function_call_as_datum(|f| pg_sys::inet_client_addr(f), &[])?;
        pgrx::direct_function_call::<&std::ffi::CStr>(|f| pg_sys::inet_out(f), &[Some(addr)]).map(|c| c.to_string_lossy().into_owned())
    }
}

// ---------------------------------------------------------------------------------------
// Bounds of the record's fields. Each is in bytes of UTF-8 and includes the truncation
// marker; a value within its bound is stored as it is. Together they leave the statement
// at least STATEMENT_MIN bytes at the smallest queue (`records_fit_the_smallest_queue`).
// ---------------------------------------------------------------------------------------

/// `session_role`, `effective_role`: 63 bytes. A role name is at most NAMEDATALEN - 1 =
/// 63 bytes (src/include/pg_config_manual.h; `name` input truncates to it), so a real
/// name is never cut.
pub const ROLE_NAME_MAX: usize = 63;
/// `application_name`: 256 bytes. PostgreSQL keeps the whole setting (only
/// `pg_stat_activity` cuts it to 63 bytes); a client may send any length.
pub const APPLICATION_NAME_MAX: usize = 256;
/// `client_addr`: 64 bytes. `inet_out` of a client address is at most 43 bytes (IPv6 with
/// `/128`); a longer text, which cannot occur, would be stored as NULL rather than cut,
/// since a cut address is not a valid `inet`.
pub const CLIENT_ADDR_MAX: usize = 64;
/// `command_tag`: 64 bytes (PostgreSQL's longest tag, `ALTER TEXT SEARCH CONFIGURATION`,
/// has 31).
pub const COMMAND_TAG_MAX: usize = 64;
/// Each id in `rules` and `overridden_rules`: 64 bytes (the longest rule id has 33).
pub const RULE_ID_MAX: usize = 64;
/// Ids in `rules` and in `overridden_rules` (one per finding, so an id can repeat): 32
/// each. Beyond that, the first 31 are kept and the 32nd is
/// `[truncated by pg_migration_guard: N rule ids in all]`.
pub const RULE_IDS_MAX: usize = 32;
/// `message`: 2048 bytes. The primary message names relations and rule ids; the message
/// of a malformed annotation quotes what was written, which can be anything.
pub const MESSAGE_MAX: usize = 2048;
/// `override_reason`: 2048 bytes, the reason of a `pg_migration_guard:allow` annotation.
pub const OVERRIDE_REASON_MAX: usize = 2048;
/// `relation` of each entry of `locks`: 256 bytes (a schema-qualified name with both
/// parts quoted and every character a doubled quote has 257).
pub const RELATION_NAME_MAX: usize = 256;
/// Entries of `locks`: 16. Beyond that, the first 15 are kept and the 16th is
/// `{"relation": "[truncated by pg_migration_guard: N relations in all]", "mode": "",
/// "rewritten": false}`; `rewrote_table` still covers every relation.
pub const LOCKS_MAX: usize = 16;
/// `statement` takes the room the other fields leave in the largest record the queue
/// takes (`queue::max_payload`: a quarter of `audit_queue_size`, less 32 bytes):
/// at least this many bytes (2 kB) at the smallest queue (64 kB); about 250 kB at the
/// default 1 MB.
pub const STATEMENT_MIN: usize = 2048;

/// The most bytes the fields other than the statement take in a record, counted the way
/// postcard encodes them (a string: a varint length, at most 3 bytes below 2 MB, then its
/// bytes; an integer: at most 10 bytes; an option or a list: 1 more byte).
const OTHER_FIELDS_MAX: usize = 10 // logged_at_us
    + 2 * (3 + ROLE_NAME_MAX)
    + (3 + APPLICATION_NAME_MAX)
    + (1 + 3 + CLIENT_ADDR_MAX)
    + 5 // backend_pid
    + (1 + 10) // xid
    + (3 + COMMAND_TAG_MAX)
    + (3 + 10) // decision
    + 2 * (3 + RULE_IDS_MAX * (3 + RULE_ID_MAX)) // rules, overridden_rules
    + (1 + 3 + MESSAGE_MAX)
    + (1 + 3 + OVERRIDE_REASON_MAX)
    + (1 + 10) // duration_us
    + 2 // rewrote_table
    + (1 + 3 + LOCKS_MAX * ((3 + RELATION_NAME_MAX) + (3 + 32) + 1)) // locks (a mode name has at most 22 bytes)
    + (1 + 3 + 5); // error_sqlstate

const _: () = assert!(OTHER_FIELDS_MAX + 4 + STATEMENT_MIN <= queue::max_payload_for(queue::MIN_QUEUE_BYTES));

/// Cuts `text` to at most `max` bytes: the longest prefix that ends at a character
/// boundary and leaves room for ` [truncated by pg_migration_guard: N bytes in all]` (N:
/// the length of `text`), then that marker. Borrowed when `text` fits. A bound too small
/// for the marker (none of the `*_MAX` above) gets a plain cut.
pub fn truncate_text(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let marker = format!(" [truncated by pg_migration_guard: {} bytes in all]", text.len());
    let marked = marker.len() <= max;
    let mut cut = if marked { max - marker.len() } else { max };
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    if !marked {
        return Cow::Owned(text[..cut].to_string());
    }
    Cow::Owned(format!("{}{marker}", &text[..cut]))
}

/// `ids` bounded: at most RULE_IDS_MAX ids of at most RULE_ID_MAX bytes each.
fn bound_rule_ids<'a>(ids: &[&'a str]) -> Vec<Cow<'a, str>> {
    let keep = if ids.len() > RULE_IDS_MAX { RULE_IDS_MAX - 1 } else { ids.len() };
    let mut out: Vec<Cow<'a, str>> = ids[..keep].iter().map(|id| truncate_text(id, RULE_ID_MAX)).collect();
    if ids.len() > keep {
        out.push(Cow::Owned(format!("[truncated by pg_migration_guard: {} rule ids in all]", ids.len())));
    }
    out
}

/// `locks` bounded: at most LOCKS_MAX entries, relation names of at most RELATION_NAME_MAX
/// bytes.
fn bound_locks(mut locks: Vec<LockJson<'_>>) -> Vec<LockJson<'_>> {
    let total = locks.len();
    if total > LOCKS_MAX {
        locks.truncate(LOCKS_MAX - 1);
    }
    for l in &mut locks {
        if l.relation.len() > RELATION_NAME_MAX {
            l.relation = Cow::Owned(truncate_text(&l.relation, RELATION_NAME_MAX).into_owned());
        }
    }
    if total > locks.len() {
        locks.push(LockJson {
            relation: Cow::Owned(format!("[truncated by pg_migration_guard: {total} relations in all]")),
            mode: "",
            rewritten: false,
        });
    }
    locks
}

/// One relation's lock, as stored in `audit_log.locks`.
#[derive(Serialize, Clone, Debug)]
struct LockJson<'a> {
    relation: Cow<'a, str>,
    mode: &'static str,
    rewritten: bool,
}

/// The session fields of a [`Record`], bounded; encoded as a [`Session`] is.
#[derive(Serialize)]
struct RecordSession<'a> {
    session_role: Cow<'a, str>,
    effective_role: Cow<'a, str>,
    application_name: Cow<'a, str>,
    client_addr: Option<&'a str>,
    backend_pid: i32,
}

impl<'a> RecordSession<'a> {
    fn bounded(s: &'a Session) -> Self {
        RecordSession {
            session_role: truncate_text(&s.session_role, ROLE_NAME_MAX),
            effective_role: truncate_text(&s.effective_role, ROLE_NAME_MAX),
            application_name: truncate_text(&s.application_name, APPLICATION_NAME_MAX),
            client_addr: s.client_addr.as_deref().filter(|a| a.len() <= CLIENT_ADDR_MAX),
            backend_pid: s.backend_pid,
        }
    }
}

/// The record the writer turns into a row (column names of audit_log; `_us` fields are
/// converted by the writer's INSERT), every field within its bound. Encoded with postcard
/// (serde's compact binary format, fields in declaration order): a few hundred
/// instructions per record where JSON took ~8 k; the LOG line is the human-readable copy.
#[derive(Serialize)]
struct Record<'a> {
    logged_at_us: i64,
    session: RecordSession<'a>,
    xid: Option<u64>,
    statement: Cow<'a, str>,
    command_tag: Cow<'a, str>,
    decision: &'static str,
    rules: Vec<Cow<'a, str>>,
    message: Option<Cow<'a, str>>,
    overridden_rules: Vec<Cow<'a, str>>,
    override_reason: Option<Cow<'a, str>>,
    duration_us: Option<i64>,
    rewrote_table: Option<bool>,
    locks: Option<Vec<LockJson<'a>>>,
    error_sqlstate: Option<String>,
}

/// A record's fields as the judgement has them, before the bounds are applied.
struct Unbounded<'a> {
    logged_at_us: i64,
    session: &'a Session,
    xid: Option<u64>,
    statement: &'a str,
    command_tag: &'a str,
    decision: &'static str,
    rules: &'a [&'static str],
    message: Option<&'a str>,
    overridden_rules: &'a [&'static str],
    override_reason: Option<&'a str>,
    duration_us: Option<i64>,
    rewrote_table: Option<bool>,
    locks: Option<Vec<LockJson<'a>>>,
    error_sqlstate: Option<String>,
}

/// The encoded record of `u`, at most `max_payload` bytes: every field cut to its bound,
/// then the statement to the room the others leave. `None` only when `max_payload` is
/// too small for the other fields (below the smallest queue's).
fn encode_record(u: Unbounded<'_>, max_payload: usize) -> Option<Vec<u8>> {
    let mut rec = Record {
        logged_at_us: u.logged_at_us,
        session: RecordSession::bounded(u.session),
        xid: u.xid,
        statement: Cow::Borrowed(u.statement),
        command_tag: truncate_text(u.command_tag, COMMAND_TAG_MAX),
        decision: u.decision,
        rules: bound_rule_ids(u.rules),
        message: u.message.map(|m| truncate_text(m, MESSAGE_MAX)),
        overridden_rules: bound_rule_ids(u.overridden_rules),
        override_reason: u.override_reason.map(|r| truncate_text(r, OVERRIDE_REASON_MAX)),
        duration_us: u.duration_us,
        rewrote_table: u.rewrote_table,
        locks: u.locks.map(bound_locks),
        error_sqlstate: u.error_sqlstate,
    };
    // Sized for the record at once: postcard's to_allocvec grows its vector as it goes.
    let capacity = 512 + u.statement.len() + rec.message.as_ref().map_or(0, |m| m.len()) + rec.locks.as_ref().map_or(0, |l| 64 * l.len());
    let payload = postcard::to_extend(&rec, Vec::with_capacity(capacity.min(max_payload + 64))).ok()?;
    if payload.len() <= max_payload {
        return Some(payload);
    }
    // The statement's length prefix (a varint) has 1 byte when empty and at most 4 for
    // any length below 256 MB: 3 bytes more than in the measurement.
    rec.statement = Cow::Borrowed("");
    let others = postcard::to_allocvec(&rec).ok()?.len();
    let room = max_payload.checked_sub(others + 3)?;
    rec.statement = truncate_text(u.statement, room);
    let payload = postcard::to_allocvec(&rec).ok()?;
    (payload.len() <= max_payload).then_some(payload)
}

/// A [`Record`] as the audit writer decodes it from the queue: the other end of the same
/// encoding, owned. postcard is not self-describing — fields are matched by position, not
/// name — so this must list the same fields in the same order with the same types; kept
/// beside `Record` so that the two change together, and
/// `records_decode_as_they_were_encoded` checks they agree.
#[derive(Deserialize, Debug, PartialEq)]
pub struct QueuedRecord {
    pub logged_at_us: i64,
    pub session: Session,
    pub xid: Option<u64>,
    pub statement: String,
    pub command_tag: String,
    pub decision: String,
    pub rules: Vec<String>,
    pub message: Option<String>,
    pub overridden_rules: Vec<String>,
    pub override_reason: Option<String>,
    pub duration_us: Option<i64>,
    pub rewrote_table: Option<bool>,
    pub locks: Option<Vec<QueuedLock>>,
    pub error_sqlstate: Option<String>,
}

/// A [`LockJson`] as the writer decodes it, and serializes again as JSON for the `locks`
/// column.
#[derive(Deserialize, Serialize, Debug, PartialEq)]
pub struct QueuedLock {
    pub relation: String,
    pub mode: String,
    pub rewritten: bool,
}

/// How the statement ended, for the record.
pub enum Outcome {
    /// Rejected by the guard: it never ran.
    NotRun,
    /// Ran to completion; relfilenodes after it, to compare with those before.
    Completed { rewritten: Vec<bool> },
    /// Failed (its (sub)transaction is aborting), with the SQLSTATE when one was seen.
    Failed { sqlstate: Option<i32> },
}

/// Queues the audit record of `j`, its fields cut to their bounds (see [`encode_record`]).
/// `wait`: may wait for space (not in abort callbacks).
///
/// # Safety
/// Backend main thread. With `wait`, inside a valid transaction.
pub unsafe fn record(j: &Event, outcome: Outcome, wait: bool) {
    if !j.audited {
        return;
    }
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    let xid = unsafe { pg_sys::GetTopFullTransactionIdIfAny() }.value;
    let (rewrote_table, locks, error_sqlstate) = match &outcome {
        Outcome::NotRun => (None, None, None),
        Outcome::Completed { rewritten } => (
            Some(rewritten.iter().any(|r| *r)),
            Some::<Vec<LockJson>>(
                j.locks
                    .iter()
                    .zip(rewritten.iter().chain(std::iter::repeat(&false)))
                    .map(|(t, r)| LockJson { relation: Cow::Borrowed(&t.request.relation), mode: t.request.mode.name(), rewritten: *r })
                    .collect(),
            ),
            None,
        ),
        Outcome::Failed { sqlstate } => (None, None, sqlstate.map(unpack_sql_state)),
    };
    let fields = Unbounded {
        logged_at_us: now,
        session: &j.session,
        xid: (xid != 0).then_some(xid),
        statement: &j.statement,
        command_tag: &j.command_tag,
        decision: j.verdict.decision.as_str(),
        rules: &j.verdict.rules,
        message: j.message(),
        overridden_rules: &j.verdict.overridden,
        override_reason: j.verdict.override_reason.as_deref(),
        duration_us: Some((now - j.started_at).max(0)),
        rewrote_table,
        locks,
        error_sqlstate,
    };
    let outcome = match encode_record(fields, queue::max_payload()) {
        Some(payload) => unsafe { queue::enqueue(pg_sys::MyDatabaseId, &payload, wait) }.map(|_| ()),
        None => Err(EnqueueError::TooLarge),
    };
    if outcome.is_err() && !j.logged {
        // log_decisions = flagged left this decision to the audit table, which will not
        // have it: the server log gets it after all.
        log_line(j);
    }
    let detail = match outcome {
        Ok(()) | Err(EnqueueError::NoQueue) => return,
        Err(EnqueueError::Full) => {
            "The audit queue stayed full (pg_migration_guard.audit_queue_size): the audit writers are behind or not running."
        }
        Err(EnqueueError::TooLarge) => "The record did not fit the audit queue even with its fields truncated.",
    };
    pgrx::pg_sys::panic::ErrorReport::new(
        PgSqlErrorCode::ERRCODE_WARNING,
        "pg_migration_guard could not queue this statement's audit record; the decision is in the server log only",
        "pg_migration_guard",
    )
    .set_detail(detail)
    .report(PgLogLevel::WARNING);
}

/// PostgreSQL's packed SQLSTATE (MAKE_SQLSTATE) as its five characters.
pub fn unpack_sql_state(code: i32) -> String {
    (0..5).map(|i| (((code >> (6 * i)) & 0x3F) as u8 + b'0') as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::queue::{max_payload_for, MIN_QUEUE_BYTES};

    fn session() -> Session {
        Session {
            session_role: "alice".into(),
            effective_role: "app_owner".into(),
            application_name: "alembic".into(),
            client_addr: Some("10.0.0.7".into()),
            backend_pid: 4242,
        }
    }

    /// An ordinary record's fields, to be changed by each test.
    fn fields<'a>(session: &'a Session, statement: &'a str) -> Unbounded<'a> {
        Unbounded {
            logged_at_us: 817_000_000_000_000,
            session,
            xid: Some(1 << 33),
            statement,
            command_tag: "ALTER TABLE",
            decision: "overridden",
            rules: &["changing-column-type"],
            message: Some("changing-column-type: would rewrite"),
            overridden_rules: &["changing-column-type"],
            override_reason: Some(r#"ticket "42" \ nightly"#),
            duration_us: Some(1234),
            rewrote_table: Some(true),
            locks: Some(vec![LockJson { relation: Cow::Borrowed("public.orders"), mode: "ACCESS EXCLUSIVE", rewritten: true }]),
            error_sqlstate: None,
        }
    }

    fn decode(payload: &[u8]) -> QueuedRecord {
        postcard::from_bytes(payload).unwrap()
    }

    const DEFAULT_QUEUE_BYTES: usize = 1024 * 1024;

    #[test]
    fn records_decode_as_they_were_encoded() {
        let session = session();
        let statement = "ALTER TABLE orders ALTER total TYPE numeric";
        let payload = encode_record(fields(&session, statement), max_payload_for(DEFAULT_QUEUE_BYTES)).unwrap();
        assert_eq!(
            decode(&payload),
            QueuedRecord {
                logged_at_us: 817_000_000_000_000,
                session: session.clone(),
                xid: Some(1 << 33),
                statement: statement.into(),
                command_tag: "ALTER TABLE".into(),
                decision: "overridden".into(),
                rules: vec!["changing-column-type".into()],
                message: Some("changing-column-type: would rewrite".into()),
                overridden_rules: vec!["changing-column-type".into()],
                override_reason: Some(r#"ticket "42" \ nightly"#.into()),
                duration_us: Some(1234),
                rewrote_table: Some(true),
                locks: Some(vec![QueuedLock { relation: "public.orders".into(), mode: "ACCESS EXCLUSIVE".into(), rewritten: true }]),
                error_sqlstate: None,
            }
        );
    }

    fn marker(total: usize) -> String {
        format!(" [truncated by pg_migration_guard: {total} bytes in all]")
    }

    #[test]
    fn text_within_its_bound_is_kept_as_it_is() {
        assert!(matches!(truncate_text("", 0), Cow::Borrowed("")));
        assert!(matches!(truncate_text("abc", 3), Cow::Borrowed("abc")));
        let exact = "é".repeat(100);
        assert!(matches!(truncate_text(&exact, 200), Cow::Borrowed(_)));
    }

    #[test]
    fn text_over_its_bound_is_cut_at_a_character_boundary_and_marked() {
        let text = "x".repeat(300_000);
        let cut = truncate_text(&text, 2048);
        assert_eq!(cut.len(), 2048);
        assert_eq!(cut, format!("{}{}", "x".repeat(2048 - marker(300_000).len()), marker(300_000)));

        // Two-byte characters: the cut never splits one, and the result stays within the bound.
        let text = "é".repeat(1000);
        for max in 60..120 {
            let cut = truncate_text(&text, max);
            assert!(cut.len() <= max, "{max}: {} bytes", cut.len());
            assert!(cut.ends_with(&marker(2000)), "{cut}");
            let kept = &cut[..cut.len() - marker(2000).len()];
            assert!(kept.chars().all(|c| c == 'é'), "{kept:?}");
            assert!(max - cut.len() <= 1, "{max}: wasted {} bytes", max - cut.len());
        }
        // Four-byte characters.
        let text = "🦀".repeat(100);
        for max in marker(400).len()..marker(400).len() + 12 {
            let cut = truncate_text(&text, max);
            assert!(cut.len() <= max && max - cut.len() <= 3 && cut.ends_with(&marker(400)), "{max}: {cut}");
            assert_eq!(cut[..cut.len() - marker(400).len()], "🦀".repeat((max - marker(400).len()) / 4));
        }

        // A bound too small for the marker: a plain cut, still at a boundary.
        assert_eq!(truncate_text("ééééé", 5), "éé");
    }

    #[test]
    fn every_rule_id_is_within_its_bound() {
        for rule in crate::rules::RULES {
            assert!(rule.id.len() <= RULE_ID_MAX, "{} has {} bytes", rule.id, rule.id.len());
        }
    }

    #[test]
    fn lists_over_their_bound_end_with_a_marker_entry() {
        let ids: Vec<&str> = std::iter::repeat_n("ban-drop-column", 100).collect();
        let bounded = bound_rule_ids(&ids);
        assert_eq!(bounded.len(), RULE_IDS_MAX);
        assert!(bounded[..RULE_IDS_MAX - 1].iter().all(|id| id == "ban-drop-column"));
        assert_eq!(bounded[RULE_IDS_MAX - 1], "[truncated by pg_migration_guard: 100 rule ids in all]");
        assert_eq!(bound_rule_ids(&ids[..RULE_IDS_MAX]).len(), RULE_IDS_MAX);
        assert!(bound_rule_ids(&ids[..RULE_IDS_MAX]).iter().all(|id| id == "ban-drop-column"));

        let names: Vec<String> = (0..40).map(|i| format!("public.t{i}")).collect();
        let locks = names.iter().map(|n| LockJson { relation: Cow::Borrowed(n), mode: "ACCESS EXCLUSIVE", rewritten: false }).collect();
        let bounded = bound_locks(locks);
        assert_eq!(bounded.len(), LOCKS_MAX);
        assert_eq!(bounded[LOCKS_MAX - 2].relation, format!("public.t{}", LOCKS_MAX - 2));
        assert_eq!(bounded[LOCKS_MAX - 1].relation, "[truncated by pg_migration_guard: 40 relations in all]");
        assert_eq!(bounded[LOCKS_MAX - 1].mode, "");
    }

    /// The decisive property: whatever a session sends, its record fits the smallest queue
    /// the setting allows, with at least STATEMENT_MIN bytes of statement, and every field
    /// within its bound.
    #[test]
    fn records_fit_the_smallest_queue() {
        let huge = "\u{e9}x\n".repeat(100_000); // 300 kB, multi-byte characters and newlines
        let session = Session {
            session_role: huge.clone(),
            effective_role: huge.clone(),
            application_name: huge.clone(),
            client_addr: Some(huge.clone()),
            backend_pid: i32::MAX,
        };
        let ids: Vec<&'static str> = vec!["require-concurrent-index-creation"; 10_000];
        let locks = (0..10_000)
            .map(|_| LockJson { relation: Cow::Borrowed(huge.as_str()), mode: "SHARE UPDATE EXCLUSIVE", rewritten: true })
            .collect();
        let u = Unbounded {
            logged_at_us: i64::MIN,
            session: &session,
            xid: Some(u64::MAX),
            statement: &huge,
            command_tag: &huge,
            decision: "overridden",
            rules: &ids,
            message: Some(&huge),
            overridden_rules: &ids,
            override_reason: Some(&huge),
            duration_us: Some(i64::MIN),
            rewrote_table: Some(true),
            locks: Some(locks),
            error_sqlstate: Some("XX000".into()),
        };
        let max = max_payload_for(MIN_QUEUE_BYTES);
        let payload = encode_record(u, max).expect("a record must always fit");
        assert!(payload.len() <= max, "{} > {max}", payload.len());
        let r = decode(&payload);
        let m = marker(huge.len());
        for (field, value, bound) in [
            ("statement", &r.statement, usize::MAX),
            ("session_role", &r.session.session_role, ROLE_NAME_MAX),
            ("effective_role", &r.session.effective_role, ROLE_NAME_MAX),
            ("application_name", &r.session.application_name, APPLICATION_NAME_MAX),
            ("command_tag", &r.command_tag, COMMAND_TAG_MAX),
            ("message", r.message.as_ref().unwrap(), MESSAGE_MAX),
            ("override_reason", r.override_reason.as_ref().unwrap(), OVERRIDE_REASON_MAX),
        ] {
            assert!(value.len() <= bound, "{field}: {} bytes", value.len());
            assert!(value.ends_with(&m), "{field} has no marker");
        }
        assert!(r.statement.len() >= STATEMENT_MIN, "statement kept {} bytes", r.statement.len());
        assert_eq!(r.session.client_addr, None);
        assert_eq!((r.rules.len(), r.overridden_rules.len()), (RULE_IDS_MAX, RULE_IDS_MAX));
        let locks = r.locks.unwrap();
        assert_eq!(locks.len(), LOCKS_MAX);
        assert!(locks.iter().all(|l| l.relation.len() <= RELATION_NAME_MAX), "{locks:?}");

        // At the default queue size the statement keeps much more.
        let u = Unbounded { statement: &huge, ..fields(&session, "") };
        let r = decode(&encode_record(u, max_payload_for(DEFAULT_QUEUE_BYTES)).unwrap());
        assert!(r.statement.len() > 240_000 && r.statement.ends_with(&m), "{}", r.statement.len());
    }

    /// A 300 kB override reason, or a 300 kB message (the rejection of an annotation naming a
    /// 300 kB rule id), is cut to its bound; the rest of the record is kept.
    #[test]
    fn a_huge_reason_or_message_is_cut_and_the_record_kept() {
        let session = session();
        let reason = "r".repeat(300_000);
        let statement = format!("-- pg_migration_guard:allow changing-column-type reason=\"{reason}\"\nALTER TABLE t ALTER a TYPE bigint");
        let u = Unbounded { override_reason: Some(&reason), ..fields(&session, &statement) };
        let r = decode(&encode_record(u, max_payload_for(DEFAULT_QUEUE_BYTES)).unwrap());
        let reason_kept = r.override_reason.unwrap();
        assert_eq!(reason_kept.len(), OVERRIDE_REASON_MAX);
        assert!(reason_kept.starts_with("rrr") && reason_kept.ends_with(&marker(300_000)), "{reason_kept}");
        assert!(r.statement.ends_with(&marker(statement.len())));
        assert_eq!((r.decision.as_str(), r.rules, r.session), ("overridden", vec!["changing-column-type".to_string()], session.clone()));

        let message = format!("unknown rule \"{}\" in the pg_migration_guard:allow annotation", "x".repeat(300_000));
        let u = Unbounded { decision: "rejected", message: Some(&message), ..fields(&session, &statement) };
        let r = decode(&encode_record(u, max_payload_for(MIN_QUEUE_BYTES)).unwrap());
        let message_kept = r.message.unwrap();
        assert_eq!(message_kept.len(), MESSAGE_MAX);
        assert!(message_kept.starts_with("unknown rule \"xxx") && message_kept.ends_with(&marker(message.len())));
        assert_eq!(r.decision, "rejected");
    }

    #[test]
    fn log_text_escapes_what_could_end_or_forge_a_line() {
        for plain in ["CREATE INDEX ON t (a) -- café ✓ \u{a0}\u{2013}\u{2027}\u{202a}", ""] {
            assert!(matches!(escape_log_text(plain), Cow::Borrowed(_)), "{plain:?}");
        }
        assert_eq!(
            escape_log_text("reason=\"a\n2026-01-01 00:00:00 UTC [1] LOG:  forged\""),
            "reason=\"a\\n2026-01-01 00:00:00 UTC [1] LOG:  forged\""
        );
        assert_eq!(escape_log_text("a\r\nb\tc"), "a\\r\\nb\\tc");
        assert_eq!(escape_log_text("\u{0}\u{1}\u{1b}[31m\u{1f}\u{7f}"), "\\x00\\x01\\x1b[31m\\x1f\\x7f");
        assert_eq!(escape_log_text("a\u{85}b\u{2028}c\u{2029}d\u{9f}"), "a\\u0085b\\u2028c\\u2029d\\u009f");
        // Backslash is escaped too, so the escaped text reads back unambiguously: a literal
        // backslash-n in the statement is not mistaken for an escaped newline.
        assert_eq!(escape_log_text("E'\\n' \\\\"), "E'\\\\n' \\\\\\\\");
        assert_ne!(escape_log_text("\\n"), escape_log_text("\n"));
        // Characters that share the lead bytes 0xC2 and 0xE2 but are not controls are kept.
        assert_eq!(escape_log_text("\u{a0}é\u{2013}→\n"), "\u{a0}é\u{2013}→\\n");
        // One line whatever comes in.
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        let escaped = escape_log_text(&all);
        assert!(!escaped.chars().any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}'));
        assert_eq!(escaped.lines().count(), 1);
    }

    #[test]
    fn sql_states_unpack_like_unpack_sql_state() {
        let pack = |s: &str| s.bytes().enumerate().fold(0i32, |acc, (i, c)| acc | (((c - b'0') as i32 & 0x3F) << (6 * i)));
        for s in ["42P07", "55P03", "40P01", "22023", "XX000"] {
            assert_eq!(unpack_sql_state(pack(s)), s);
        }
    }
}

//! The audit trail: every decision on a judged statement is
//! 1. one LOG line in the server log, written when the decision is made (before the
//!    statement runs, and before the ERROR of a rejection), and
//! 2. one row in `pg_migration_guard.audit_log` of the statement's database, written by the
//!    database's audit writer (`crate::audit_writer`) in a transaction of its own from a
//!    record this backend puts in the shared-memory queue (`crate::audit_queue`) when the
//!    outcome is known: right before a rejection's ERROR, after the statement completed, or
//!    in the (sub)transaction abort that a failed statement caused.
//!
//! So the row exists whether the statement's transaction commits or aborts; the
//! `pg_migration_guard.audit` view adds the transaction's fate from the row's xid.
//!
//! What can be lost (everything below is still in the server log):
//! - rows of records in the queue when the server stops, or when it restarts after a
//!   crash (shared memory is reinitialised); a writer inserts them within about 0.1 s;
//! - the record of a statement that found the queue full for 10 s (the backend then
//!   reports a WARNING), or whose database has no free writer slot or worker process;
//! - in databases without `CREATE EXTENSION pg_migration_guard` there is no table: the
//!   statements are judged and logged, not queued.
//!
//! Statement text longer than a quarter of `audit_queue_size` is truncated in the row
//! (the LOG line has all of it).

use std::borrow::Cow;
use std::fmt::Write;

use pgrx::pg_sys;
use pgrx::pg_sys::AsPgCStr;
use pgrx::{PgLogLevel, PgSqlErrorCode};
use serde::{Deserialize, Serialize};

use crate::audit_queue::{self, EnqueueError};
use crate::hook::Judgement;

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
pub fn log_line(j: &Judgement) {
    let decision = j.verdict.decision.as_str();
    let line = match j.message() {
        Some(message) if !message.is_empty() => {
            format!("pg_migration_guard: {decision} {}: {message}; statement: {}", j.command_tag, j.statement)
        }
        _ => format!("pg_migration_guard: {decision} {}; statement: {}", j.command_tag, j.statement),
    };
    let line = match escape_log_text(&line) {
        Cow::Borrowed(_) => line,
        Cow::Owned(escaped) => escaped,
    };
    // ereport() by hand: errstart and errfinish are not in pgrx's bindings, and pgrx's
    // ErrorReport has no errhidestmt. Only raw pointers to palloc'd copies are live while
    // PostgreSQL's functions run: an ERROR inside errfinish (out of memory) would longjmp
    // over this frame, which must then own nothing with a destructor.
    unsafe extern "C-unwind" {
        fn errstart(elevel: std::ffi::c_int, domain: *const std::ffi::c_char) -> bool;
        fn errfinish(filename: *const std::ffi::c_char, lineno: std::ffi::c_int, funcname: *const std::ffi::c_char);
    }
    unsafe {
        // (an interior NUL, impossible in statement text PostgreSQL received as a C
        // string, would end the copy)
        let line_c = line.as_pg_cstr();
        drop(line);
        if errstart(pg_sys::LOG as _, c"pg_migration_guard".as_ptr()) {
            pg_sys::errmsg_internal(c"%s".as_ptr(), line_c);
            pg_sys::errhidestmt(true);
            errfinish(c"src/audit.rs".as_ptr(), line!() as _, c"log_line".as_ptr());
        }
        pg_sys::pfree(line_c.cast());
    }
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
    b.iter().enumerate().any(|(i, &c)| match c {
        0..=0x1f | 0x7f | b'\\' => true,
        0xc2 => matches!(b.get(i + 1), Some(0x80..=0x9f)),
        0xe2 => b.get(i + 1) == Some(&0x80) && matches!(b.get(i + 2), Some(0xa8 | 0xa9)),
        _ => false,
    })
}

/// The audit table's oid, when the extension is installed in this database.
///
/// # Safety
/// Inside a valid transaction (syscache lookups).
pub unsafe fn audit_table() -> Option<pg_sys::Oid> {
    unsafe {
        let nsp = pg_sys::get_namespace_oid(c"pg_migration_guard".as_ptr(), true);
        if nsp == pg_sys::InvalidOid {
            return None;
        }
        let rel = pg_sys::get_relname_relid(c"audit_log".as_ptr(), nsp);
        (rel != pg_sys::InvalidOid).then_some(rel)
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
            let name = |oid: pg_sys::Oid| {
                let p = pg_sys::GetUserNameFromId(oid, true);
                if p.is_null() {
                    format!("oid {}", oid.to_u32())
                } else {
                    std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
                }
            };
            // The client address cannot change during a connection: looked up once.
            thread_local! {
                static CLIENT_ADDR: std::cell::OnceCell<Option<String>> = const { std::cell::OnceCell::new() };
            }
            let client_addr = CLIENT_ADDR.with(|c| c.get_or_init(|| client_addr()).clone());
            Session {
                session_role: name(pg_sys::GetSessionUserId()),
                effective_role: name(pg_sys::GetUserId()),
                application_name: if pg_sys::application_name.is_null() {
                    String::new()
                } else {
                    std::ffi::CStr::from_ptr(pg_sys::application_name).to_string_lossy().into_owned()
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

/// One relation's lock, as stored in `audit_log.locks`.
#[derive(Serialize)]
struct LockJson<'a> {
    relation: &'a str,
    mode: &'static str,
    rewritten: bool,
}

/// The record the writer turns into a row (column names of audit_log; `_us` fields are
/// converted by the writer's INSERT). Encoded with postcard (serde's compact binary
/// format, fields in declaration order): a few hundred instructions per record where JSON
/// took ~8 k; the LOG line is the human-readable copy.
#[derive(Serialize)]
struct Record<'a> {
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
    locks: Option<&'a [LockJson<'a>]>,
    error_sqlstate: Option<String>,
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

/// Queues the audit record of `j`. `wait`: may wait for space (not in abort callbacks).
///
/// # Safety
/// Backend main thread. With `wait`, inside a valid transaction.
pub unsafe fn record(j: &Judgement, outcome: Outcome, wait: bool) {
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
                    .map(|(t, r)| LockJson { relation: &t.request.relation, mode: t.request.mode.name(), rewritten: *r })
                    .collect(),
            ),
            None,
        ),
        Outcome::Failed { sqlstate } => (None, None, sqlstate.map(unpack_sql_state)),
    };
    let mut statement: &str = &j.statement;
    let mut truncated = String::new();
    loop {
        let rec = Record {
            logged_at_us: now,
            session: &j.session,
            xid: (xid != 0).then_some(xid),
            statement,
            command_tag: &j.command_tag,
            decision: j.verdict.decision.as_str(),
            rules: &j.verdict.rules,
            message: j.message(),
            overridden_rules: &j.verdict.overridden,
            override_reason: j.verdict.override_reason.as_deref(),
            duration_us: Some((now - j.started_at).max(0)),
            rewrote_table,
            locks: locks.as_deref(),
            error_sqlstate: error_sqlstate.clone(),
        };
        let payload = match postcard::to_allocvec(&rec) {
            Ok(p) => p,
            Err(_) => return,
        };
        match unsafe { audit_queue::enqueue(pg_sys::MyDatabaseId, &payload, wait) } {
            Ok(_) | Err(EnqueueError::NoQueue) => return,
            Err(EnqueueError::TooLarge) if truncated.is_empty() => {
                let keep = audit_queue::max_payload().saturating_sub(payload.len() - statement.len() + 200);
                let mut cut = keep.min(statement.len());
                while !statement.is_char_boundary(cut) {
                    cut -= 1;
                }
                truncated = format!("{} [truncated by pg_migration_guard: {} bytes in all]", &statement[..cut], j.statement.len());
                statement = &truncated;
            }
            Err(_) => {
                pgrx::pg_sys::panic::ErrorReport::new(
                    PgSqlErrorCode::ERRCODE_WARNING,
                    "pg_migration_guard could not queue this statement's audit record; the decision is in the server log only",
                    "pg_migration_guard",
                )
                .set_detail("The audit queue stayed full (pg_migration_guard.audit_queue_size): the audit writers are behind or not running.")
                .report(PgLogLevel::WARNING);
                return;
            }
        }
    }
}

/// PostgreSQL's packed SQLSTATE (MAKE_SQLSTATE) as its five characters.
pub fn unpack_sql_state(code: i32) -> String {
    (0..5).map(|i| (((code >> (6 * i)) & 0x3F) as u8 + b'0') as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_decode_as_they_were_encoded() {
        let session = Session {
            session_role: "alice".into(),
            effective_role: "app_owner".into(),
            application_name: "alembic".into(),
            client_addr: Some("10.0.0.7".into()),
            backend_pid: 4242,
        };
        let locks = [LockJson { relation: "public.orders", mode: "ACCESS EXCLUSIVE", rewritten: true }];
        let rec = Record {
            logged_at_us: 817_000_000_000_000,
            session: &session,
            xid: Some(1 << 33),
            statement: "ALTER TABLE orders ALTER total TYPE numeric",
            command_tag: "ALTER TABLE",
            decision: "overridden",
            rules: &["changing-column-type"],
            message: Some("changing-column-type: would rewrite"),
            overridden_rules: &["changing-column-type"],
            override_reason: Some(r#"ticket "42" \ nightly"#),
            duration_us: Some(1234),
            rewrote_table: Some(true),
            locks: Some(&locks),
            error_sqlstate: None,
        };
        let decoded: QueuedRecord = postcard::from_bytes(&postcard::to_allocvec(&rec).unwrap()).unwrap();
        assert_eq!(
            decoded,
            QueuedRecord {
                logged_at_us: 817_000_000_000_000,
                session: session.clone(),
                xid: Some(1 << 33),
                statement: "ALTER TABLE orders ALTER total TYPE numeric".into(),
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

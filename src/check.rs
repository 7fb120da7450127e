//! `pg_migration_guard.check(script)`: judges every statement of a migration script the way
//! enforce mode would judge it live, without running any of them.
//!
//! The script is parsed with PostgreSQL's raw parser (`raw_parser`, as `pg_parse_query`);
//! each statement is judged by the live path (`judging::judge_fully`: facts and lock targets
//! in a rolled-back subtransaction, the rules, the decision) while a [`script::View`] of what
//! the earlier statements would have done is installed for the facts layer. What the
//! catalog cannot show yet is modelled here:
//! - transactions: `BEGIN` / `START TRANSACTION` open one, `COMMIT` / `END` / `PREPARE
//!   TRANSACTION` end it, `ROLLBACK` ends it and forgets what it did; every statement outside
//!   a block is a transaction of its own (psql's autocommit). The locks a transaction's
//!   statements take are held until it ends (VALIDATE after ADD ... NOT VALID), and the
//!   statements PostgreSQL refuses inside a block (`PreventInTransactionBlock`: CREATE INDEX
//!   CONCURRENTLY, VACUUM, ...) get PostgreSQL's own error;
//! - relations the script creates: a statement on one is judged on a relation the facts
//!   describe from the script (no other session can see it while its transaction is open;
//!   once committed it is empty unless the script filled it), through the same rules and
//!   decision;
//! - columns the script adds or drops; constraints, indexes and other changes it makes;
//!   rows it writes: a statement whose verdict depends on them is `unknown`, with the reason;
//! - `SET` of the guard's settings, `lock_timeout`, `search_path` and `TimeZone`: applied
//!   for the statements after them (reverted when `check()` returns), as live.
//!
//! It writes nothing (no audit row, no log line), assigns no transaction id and takes no
//! lock beyond the judging path's conditional ACCESS SHARE: it runs in a read-only
//! transaction and on a hot standby.

use std::collections::HashMap;
use std::ffi::{CStr, CString};

use pgrx::{is_a, pg_sys, PgList, PgSqlErrorCode};
use serde_json::{json, Value};

use crate::decision::{self, Decision, Mode, Overrides, Verdict};
use crate::judging::facts::{self, StatementText};
use crate::judging::{self, lock_targets as locks, scanner, script};
use crate::model::{
    AlterTable, AlterTableCmd, CreateIndex, CreatePartition, DropIndex, DroppedIndex, LockMode, LockRequest, Reindex, ReindexTarget,
    RelKind, Relation, Statement, UNMEASURED,
};
use crate::subxact::{self, Caught, OnSuccess};
use crate::{guc, overrides, rules, sqltext};

/// One row of `check()`.
pub struct Row {
    pub statement_no: i32,
    pub line: i32,
    pub col: i32,
    pub statement: String,
    pub command_tag: String,
    pub decision: String,
    pub rules: Vec<String>,
    pub sqlstate: Option<String>,
    pub message: Option<String>,
    pub detail: Option<String>,
    pub hint: Option<String>,
    pub locks: Value,
    pub sizes: Value,
}

/// What a statement's judgement came to, before it becomes a row.
struct Outcome {
    decision: &'static str,
    rules: Vec<String>,
    sqlstate: Option<String>,
    message: Option<String>,
    detail: Option<String>,
    hint: Option<String>,
    locks: Vec<LockRequest>,
    sizes: Vec<Relation>,
}

impl Outcome {
    fn allowed() -> Outcome {
        Outcome {
            decision: "allowed",
            rules: vec![],
            sqlstate: None,
            message: None,
            detail: None,
            hint: None,
            locks: vec![],
            sizes: vec![],
        }
    }

    fn unknown(reason: String) -> Outcome {
        Outcome { decision: "unknown", message: Some(reason), ..Outcome::allowed() }
    }

    fn caught(c: Caught) -> Outcome {
        Outcome {
            decision: "unknown",
            sqlstate: Some(sqlstate_text(c.code as i32)),
            message: Some(c.message),
            hint: c.hint,
            ..Outcome::allowed()
        }
    }

    /// PostgreSQL's own error: the guard would let the statement through and PostgreSQL
    /// refuse it.
    fn postgres_error(code: PgSqlErrorCode, message: String) -> Outcome {
        Outcome { decision: "rejected", sqlstate: Some(sqlstate_text(code as i32)), message: Some(message), ..Outcome::allowed() }
    }

    fn from_verdict(v: Verdict, locks: Vec<LockRequest>, sizes: Vec<Relation>) -> Outcome {
        let decision = match v.decision {
            Decision::Allowed | Decision::Exempt => "allowed",
            Decision::Warned => "warned",
            Decision::Rejected => "rejected",
            Decision::Overridden => "overridden",
        };
        let (message, detail, hint) = match v.report {
            Some(r) => (Some(r.message), Some(r.detail).filter(|d| !d.is_empty()), Some(r.hint).filter(|h| !h.is_empty())),
            None => (None, None, None),
        };
        let sqlstate = (decision == "rejected").then(|| "55000".to_string());
        Outcome { decision, rules: v.rules.iter().map(|r| r.to_string()).collect(), sqlstate, message, detail, hint, locks, sizes }
    }
}

/// A SQLSTATE from PostgreSQL's packed form (MAKE_SQLSTATE).
fn sqlstate_text(code: i32) -> String {
    (0..5).map(|i| (((code >> (6 * i)) & 0x3F) as u8 + b'0') as char).collect()
}

/// What kind of relation the script creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Table,
    PartitionedTable,
    MaterializedView,
    Index,
    /// Views, sequences, foreign tables, types and domains: nothing the rules size.
    Other,
}

/// A relation (or type) created by an earlier statement of the script.
#[derive(Clone, Debug)]
struct Created {
    /// The schema written, or the creation schema of the search path at that point.
    schema: Option<String>,
    name: String,
    kind: Kind,
    /// The script transaction that created it.
    txn: u32,
    temporary: bool,
    /// Rows may have been written into it (CREATE TABLE AS, INSERT, COPY, ...).
    filled: bool,
    /// A materialized view created WITH NO DATA is not populated.
    populated: bool,
    /// For an index: its table.
    table: Option<Box<Resolved>>,
    /// For a partition: it is its parent's DEFAULT partition (the parent's name).
    default_of: Option<String>,
    dropped: bool,
    line: usize,
}

impl Created {
    fn qualified(&self) -> String {
        match &self.schema {
            Some(s) => format!("{}.{}", facts::quote_ident(s), facts::quote_ident(&self.name)),
            None => facts::quote_ident(&self.name),
        }
    }
}

/// What the script changed of a relation that exists in the catalog, by line.
#[derive(Clone, Debug, Default)]
struct Changed {
    /// Constraints or NOT NULL markings added, validated or dropped; partitions attached.
    constraints: Option<usize>,
    /// Indexes created on it.
    indexes: Option<usize>,
    /// Its structure otherwise (column types, persistence, storage, clustering, ...).
    structure: Option<(usize, String)>,
    /// Rows written, or the table truncated.
    rows: Option<usize>,
    /// Dropped or renamed: its name no longer leads to it.
    gone: Option<usize>,
}

/// A name a statement uses, resolved against the script and the catalog.
#[derive(Clone, Debug)]
enum Resolved {
    Catalog(pg_sys::Oid),
    Script(usize),
}

/// Why a name could not be resolved.
struct Unresolved {
    reason: String,
    /// No relation of that name exists, in the catalog or in the script: PostgreSQL's
    /// "does not exist".
    missing: bool,
}

impl Unresolved {
    fn missing(reason: String) -> Unresolved {
        Unresolved { reason, missing: true }
    }
}

/// PostgreSQL's error for a name that leads nowhere: `table "x" does not exist` (42P01) for
/// DROP TABLE, `index "x" does not exist` (42704) for DROP INDEX (RemoveRelations,
/// DropErrorMsgNonExistent), `relation "x" does not exist` (42P01) for a RangeVar lookup
/// (RangeVarGetRelidExtended).
unsafe fn does_not_exist(node: *mut pg_sys::Node, rv: *mut pg_sys::RangeVar) -> (PgSqlErrorCode, String) {
    unsafe {
        let (schema, name) = rv_name(rv);
        let shown = match &schema {
            Some(s) => format!("{s}.{name}"),
            None => name,
        };
        if is_a(node, pg_sys::NodeTag::T_DropStmt) {
            match (*(node as *mut pg_sys::DropStmt)).removeType {
                pg_sys::ObjectType::OBJECT_INDEX => {
                    return (PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, format!("index \"{shown}\" does not exist"))
                }
                pg_sys::ObjectType::OBJECT_TABLE => {
                    return (PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE, format!("table \"{shown}\" does not exist"))
                }
                _ => {}
            }
        }
        (PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE, format!("relation \"{shown}\" does not exist"))
    }
}

/// The script's simulated state.
#[derive(Clone, Default)]
struct Sim {
    created: Vec<Created>,
    changed: HashMap<pg_sys::Oid, Changed>,
    view: script::View,
    /// The first line where the script created, changed or filled any relation.
    anything: Option<usize>,
    /// Names relations of the catalog get from the script (RENAME TO, SET SCHEMA): schema
    /// (None: unchanged or unknown), name, line.
    renamed_to: Vec<(Option<String>, String, usize)>,
}

struct Checker {
    txn: u32,
    in_block: bool,
    sim: Sim,
    /// The state when the current transaction block began (ROLLBACK restores it).
    saved: Option<Sim>,
    /// The mode the script set (pg_migration_guard.mode), else enforce.
    mode: Option<Mode>,
    /// The first line where the script runs code check() cannot follow (DO, CALL).
    opaque: Option<usize>,
}

/// The first line and column (1-based, in characters) of each offset.
struct Lines<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Lines<'a> {
        let mut starts = vec![0];
        starts.extend(text.bytes().enumerate().filter(|(_, b)| *b == b'\n').map(|(i, _)| i + 1));
        Lines { text, starts }
    }

    fn position(&self, offset: usize) -> (usize, usize) {
        let line = self.starts.partition_point(|s| *s <= offset) - 1;
        let start = self.starts[line];
        let col = self.text.get(start..offset).map_or(offset - start, |s| s.chars().count());
        (line + 1, col + 1)
    }
}

/// Offset of the first token at or after `from`: skips whitespace and comments.
fn first_token(text: &[u8], mut i: usize) -> usize {
    loop {
        while i < text.len() && text[i].is_ascii_whitespace() {
            i += 1;
        }
        if text[i..].starts_with(b"--") {
            while i < text.len() && text[i] != b'\n' {
                i += 1;
            }
        } else if text[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < text.len() {
                if text[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if text[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else {
            return i.min(text.len());
        }
    }
}

fn invalid(message: String) -> ! {
    pgrx::pg_sys::panic::ErrorReport::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, message, "check")
        .report(pgrx::PgLogLevel::ERROR);
    unreachable!()
}

/// The cursor position of the error being reported, kept by [`keep_position`].
static mut ERROR_POSITION: i32 = 0;

/// Error context callback around the parser: keeps the error's cursor position (1-based,
/// in characters of the script), which the error loses on its way through pgrx.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn keep_position(_arg: *mut std::ffi::c_void) {
    unsafe {
        ERROR_POSITION = pg_sys::geterrposition();
    }
}

/// The script's raw parse trees. A syntax error is raised again as PostgreSQL reported it,
/// with its place in DETAIL: `at character N of the script (line L, column C)`.
// pgrx's CaughtError is large (a whole error report); it is built only on the error path.
#[allow(clippy::result_large_err)]
unsafe fn parse(c: &CString, lines: &Lines) -> *mut pg_sys::List {
    unsafe {
        ERROR_POSITION = 0;
        let mut callback = pg_sys::ErrorContextCallback {
            previous: pg_sys::error_context_stack,
            callback: Some(keep_position),
            arg: std::ptr::null_mut(),
        };
        pg_sys::error_context_stack = &raw mut callback;
        let ptr = c.as_ptr();
        let result = pgrx::PgTryBuilder::new(|| {
            #[cfg(feature = "pg13")]
            let parsed = pg_sys::raw_parser(ptr);
            #[cfg(not(feature = "pg13"))]
            let parsed = pg_sys::raw_parser(ptr, pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
            Ok(parsed)
        })
        .catch_others(Err)
        .execute();
        pg_sys::error_context_stack = callback.previous;
        match result {
            Ok(parsed) => parsed,
            Err(e) => {
                let r = subxact::report(&e);
                let position = ERROR_POSITION;
                if position <= 0 {
                    e.rethrow();
                }
                let offset = lines.text.char_indices().nth(position as usize - 1).map_or(lines.text.len(), |(b, _)| b);
                let (line, col) = lines.position(offset);
                let mut report = pgrx::pg_sys::panic::ErrorReport::new(r.sql_error_code(), r.message().to_string(), "check")
                    .set_detail(format!("at character {position} of the script (line {line}, column {col})"));
                if let Some(h) = r.hint() {
                    report = report.set_hint(h.to_string());
                }
                report.report(pgrx::PgLogLevel::ERROR);
                unreachable!()
            }
        }
    }
}

/// `check(script)`: one row per statement, in order.
pub fn check(script_text: &str) -> Vec<Row> {
    let Ok(c) = CString::new(script_text) else { invalid("script contains a NUL byte".into()) };
    unsafe {
        let lines = Lines::new(script_text);
        let stmts = PgList::<pg_sys::RawStmt>::from_pg(parse(&c, &lines));
        let bytes = script_text.as_bytes();
        // SET statements of the script apply in a GUC nest level of their own, reverted at
        // the end (as a function's SET clause is).
        let nest_level = pg_sys::NewGUCNestLevel();
        let per_statement = pg_sys::AllocSetContextCreateInternal(
            pg_sys::CurrentMemoryContext,
            c"pg_migration_guard check".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as _,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as _,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as _,
        );
        let mut checker = Checker { txn: 0, in_block: false, sim: Sim::default(), saved: None, mode: None, opaque: None };
        let mut rows = Vec::with_capacity(stmts.len());
        for (i, raw) in stmts.iter_ptr().enumerate() {
            let location = usize::try_from((*raw).stmt_location).unwrap_or(0).min(bytes.len());
            // The comments before the statement are part of it, as the hook reads it.
            let (location, len) = crate::judging::statement_with_leading_comments(&bytes[..location], (*raw).stmt_len);
            let location = usize::try_from(location).unwrap_or(0);
            let end = match usize::try_from(len) {
                Ok(l) if l > 0 => (location + l).min(bytes.len()),
                _ => bytes.len(),
            };
            let window = &bytes[location..end];
            let (s, e) = sqltext::clean_query_bounds(window, 0, window.len() as i32);
            let text = String::from_utf8_lossy(&window[s..e]).into_owned();
            let start = location + s;
            let (line, col) = lines.position(first_token(bytes, start).min(end.max(start)));
            let node = (*raw).stmt;
            let command_tag = CStr::from_ptr(pg_sys::GetCommandTagName(pg_sys::CreateCommandTag(node))).to_string_lossy().into_owned();
            let old = pg_sys::MemoryContextSwitchTo(per_statement);
            let outcome = checker.statement(node, &text, start, line);
            pg_sys::MemoryContextSwitchTo(old);
            pg_sys::MemoryContextReset(per_statement);
            rows.push(Row {
                statement_no: i as i32 + 1,
                line: line as i32,
                col: col as i32,
                statement: text,
                command_tag,
                decision: outcome.decision.to_string(),
                rules: outcome.rules,
                sqlstate: outcome.sqlstate,
                message: outcome.message,
                detail: outcome.detail,
                hint: outcome.hint,
                locks: Value::Array(outcome.locks.iter().map(|l| json!({"relation": l.relation, "mode": l.mode.name()})).collect()),
                sizes: Value::Array(
                    outcome
                        .sizes
                        .iter()
                        .map(|r| {
                            json!({
                                "relation": r.name,
                                "bytes": (r.size_bytes != UNMEASURED).then_some(r.size_bytes),
                                "estimated_rows": r.estimated_rows,
                            })
                        })
                        .collect(),
                ),
            });
        }
        pg_sys::MemoryContextDelete(per_statement);
        pg_sys::AtEOXact_GUC(false, nest_level);
        rows
    }
}

/// The named relations of a statement that decide how it is judged: the `primary` ones it
/// acts on, and the `other` ones it also uses (a foreign key's referenced table, an
/// attached partition, an index named by USING INDEX).
struct Names {
    primary: Vec<*mut pg_sys::RangeVar>,
    other: Vec<*mut pg_sys::RangeVar>,
    /// IF EXISTS: a missing name is not an error.
    missing_ok: bool,
}

#[allow(non_upper_case_globals)]
unsafe fn names(node: *mut pg_sys::Node) -> Names {
    use pg_sys::NodeTag::*;
    let mut n = Names { primary: vec![], other: vec![], missing_ok: false };
    unsafe {
        match (*node).type_ {
            T_IndexStmt => n.primary.push((*(node as *mut pg_sys::IndexStmt)).relation),
            T_AlterTableStmt => {
                let stmt = node as *mut pg_sys::AlterTableStmt;
                n.primary.push((*stmt).relation);
                n.missing_ok = (*stmt).missing_ok;
                for cmd in PgList::<pg_sys::AlterTableCmd>::from_pg((*stmt).cmds).iter_ptr() {
                    let def = (*cmd).def;
                    if def.is_null() {
                        continue;
                    }
                    if is_a(def, T_Constraint) {
                        constraint_names(def.cast(), &mut n);
                    } else if is_a(def, T_ColumnDef) {
                        for con in PgList::<pg_sys::Constraint>::from_pg((*(def as *mut pg_sys::ColumnDef)).constraints).iter_ptr() {
                            constraint_names(con, &mut n);
                        }
                    } else if is_a(def, T_PartitionCmd) {
                        n.other.push((*(def as *mut pg_sys::PartitionCmd)).name);
                    }
                }
            }
            T_DropStmt => {
                let stmt = node as *mut pg_sys::DropStmt;
                use pg_sys::ObjectType::*;
                if matches!(
                    (*stmt).removeType,
                    OBJECT_TABLE | OBJECT_INDEX | OBJECT_MATVIEW | OBJECT_VIEW | OBJECT_SEQUENCE | OBJECT_FOREIGN_TABLE
                ) {
                    for names in PgList::<pg_sys::List>::from_pg((*stmt).objects).iter_ptr() {
                        n.primary.push(pg_sys::makeRangeVarFromNameList(names));
                    }
                }
                n.missing_ok = (*stmt).missing_ok;
            }
            T_RenameStmt => {
                let stmt = node as *mut pg_sys::RenameStmt;
                if !(*stmt).relation.is_null() {
                    n.primary.push((*stmt).relation);
                }
                n.missing_ok = (*stmt).missing_ok;
            }
            T_RefreshMatViewStmt => n.primary.push((*(node as *mut pg_sys::RefreshMatViewStmt)).relation),
            T_TruncateStmt => {
                n.primary.extend(PgList::<pg_sys::RangeVar>::from_pg((*(node as *mut pg_sys::TruncateStmt)).relations).iter_ptr())
            }
            T_VacuumStmt => {
                for vr in PgList::<pg_sys::VacuumRelation>::from_pg((*(node as *mut pg_sys::VacuumStmt)).rels).iter_ptr() {
                    n.primary.push((*vr).relation);
                }
            }
            T_ClusterStmt => n.primary.push((*(node as *mut pg_sys::ClusterStmt)).relation),
            T_ReindexStmt => n.primary.push((*(node as *mut pg_sys::ReindexStmt)).relation),
            T_CreateStmt => {
                let stmt = node as *mut pg_sys::CreateStmt;
                if !(*stmt).partbound.is_null() {
                    n.primary.extend(PgList::<pg_sys::RangeVar>::from_pg((*stmt).inhRelations).iter_ptr());
                }
            }
            T_CreateTrigStmt => n.primary.push((*(node as *mut pg_sys::CreateTrigStmt)).relation),
            T_CreatePolicyStmt => n.primary.push((*(node as *mut pg_sys::CreatePolicyStmt)).table),
            T_AlterPolicyStmt => n.primary.push((*(node as *mut pg_sys::AlterPolicyStmt)).table),
            T_RuleStmt => n.primary.push((*(node as *mut pg_sys::RuleStmt)).relation),
            _ => {}
        }
    }
    n.primary.retain(|rv| !rv.is_null());
    n.other.retain(|rv| !rv.is_null());
    n
}

unsafe fn constraint_names(con: *mut pg_sys::Constraint, n: &mut Names) {
    unsafe {
        if !(*con).pktable.is_null() {
            n.other.push((*con).pktable);
        }
        if !(*con).indexname.is_null() {
            // The index lives in its table's schema; the name alone is what can be matched.
            n.other.push(pg_sys::makeRangeVar(std::ptr::null_mut(), (*con).indexname as *mut _, -1));
        }
    }
}

unsafe fn rv_name(rv: *mut pg_sys::RangeVar) -> (Option<String>, String) {
    unsafe {
        let schema = (!(*rv).schemaname.is_null()).then(|| facts::cstr((*rv).schemaname));
        (schema, facts::cstr((*rv).relname))
    }
}

fn show_name(schema: &Option<String>, name: &str) -> String {
    match schema {
        Some(s) => format!("{}.{}", facts::quote_ident(s), facts::quote_ident(name)),
        None => facts::quote_ident(name),
    }
}

/// The schema a new relation named without one goes to: the first schema of the search
/// path that exists (namespace.c, RangeVarGetCreationNamespace).
unsafe fn creation_schema() -> Option<String> {
    unsafe {
        let path = PgList::<std::ffi::c_void>::from_pg(pg_sys::fetch_search_path(false));
        let first = path.iter_oid().next()?;
        let name = pg_sys::get_namespace_name(first);
        (!name.is_null()).then(|| facts::cstr(name))
    }
}

/// The mode with which a statement is locked, for a relation the script created.
#[allow(non_upper_case_globals)]
unsafe fn synthetic_lock(node: *mut pg_sys::Node) -> LockMode {
    use pg_sys::NodeTag::*;
    use LockMode::*;
    unsafe {
        match (*node).type_ {
            T_IndexStmt if (*(node as *mut pg_sys::IndexStmt)).concurrent => ShareUpdateExclusive,
            T_IndexStmt | T_ReindexStmt => Share,
            T_AlterTableStmt => {
                let cmds = (*(node as *mut pg_sys::AlterTableStmt)).cmds;
                subxact::in_subtransaction(|| LockMode::from_pg(pg_sys::AlterTableGetLockLevel(cmds)))
                    .ok()
                    .flatten()
                    .unwrap_or(AccessExclusive)
            }
            T_RefreshMatViewStmt if (*(node as *mut pg_sys::RefreshMatViewStmt)).concurrent => Exclusive,
            T_CreateTrigStmt => ShareRowExclusive,
            T_DropStmt if (*(node as *mut pg_sys::DropStmt)).concurrent => ShareUpdateExclusive,
            _ => AccessExclusive,
        }
    }
}

/// Whether the statement's verdict rests on the relation's constraints (proofs that a scan
/// can be skipped: SET NOT NULL, ADD PRIMARY KEY, ATTACH PARTITION, PARTITION OF). ALTER
/// COLUMN TYPE only lists the column's constraints in its HINT.
#[allow(non_upper_case_globals)]
unsafe fn reads_constraints(node: *mut pg_sys::Node) -> bool {
    use pg_sys::AlterTableType::*;
    unsafe {
        if is_a(node, pg_sys::NodeTag::T_CreateStmt) {
            return !(*(node as *mut pg_sys::CreateStmt)).partbound.is_null();
        }
        if !is_a(node, pg_sys::NodeTag::T_AlterTableStmt) {
            return false;
        }
        PgList::<pg_sys::AlterTableCmd>::from_pg((*(node as *mut pg_sys::AlterTableStmt)).cmds).iter_ptr().any(|c| {
            matches!((*c).subtype, AT_SetNotNull | AT_AttachPartition | AT_AddIndexConstraint | AT_AlterConstraint)
                || ((*c).subtype == AT_AddConstraint
                    && is_a((*c).def, pg_sys::NodeTag::T_Constraint)
                    && (*((*c).def as *mut pg_sys::Constraint)).contype == pg_sys::ConstrType::CONSTR_PRIMARY)
        })
    }
}

/// Whether the statement's verdict rests on the relation's columns, storage or indexes: not
/// for DROP, TRUNCATE, RENAME TO and the like, whose verdict depends only on the relation
/// and its size.
#[allow(non_upper_case_globals)]
unsafe fn reads_structure(node: *mut pg_sys::Node) -> bool {
    use pg_sys::NodeTag::*;
    unsafe {
        match (*node).type_ {
            T_AlterTableStmt | T_IndexStmt | T_ClusterStmt | T_ReindexStmt | T_VacuumStmt | T_RefreshMatViewStmt | T_AlterDomainStmt => {
                true
            }
            T_CreateStmt => !(*(node as *mut pg_sys::CreateStmt)).partbound.is_null(),
            T_RenameStmt => (*(node as *mut pg_sys::RenameStmt)).renameType == pg_sys::ObjectType::OBJECT_COLUMN,
            _ => false,
        }
    }
}

/// Whether the statement's facts read the relation's indexes.
#[allow(non_upper_case_globals)]
unsafe fn reads_indexes(node: *mut pg_sys::Node) -> bool {
    use pg_sys::AlterTableType::*;
    unsafe {
        match (*node).type_ {
            pg_sys::NodeTag::T_ReindexStmt | pg_sys::NodeTag::T_ClusterStmt => true,
            pg_sys::NodeTag::T_AlterTableStmt => PgList::<pg_sys::AlterTableCmd>::from_pg((*(node as *mut pg_sys::AlterTableStmt)).cmds)
                .iter_ptr()
                .any(|c| matches!((*c).subtype, AT_AlterColumnType | AT_AddIndexConstraint | AT_ClusterOn)),
            _ => false,
        }
    }
}

/// Statements that act on every relation of a kind rather than on the ones they name.
#[allow(non_upper_case_globals)]
unsafe fn acts_on_many(node: *mut pg_sys::Node) -> bool {
    use pg_sys::NodeTag::*;
    unsafe {
        match (*node).type_ {
            T_ClusterStmt => (*(node as *mut pg_sys::ClusterStmt)).relation.is_null(),
            T_VacuumStmt => PgList::<pg_sys::VacuumRelation>::from_pg((*(node as *mut pg_sys::VacuumStmt)).rels).is_empty(),
            T_ReindexStmt => (*(node as *mut pg_sys::ReindexStmt)).relation.is_null(),
            T_AlterTableMoveAllStmt => true,
            _ => false,
        }
    }
}

/// The statement PostgreSQL refuses inside a transaction block (PreventInTransactionBlock),
/// named as its error names it.
#[allow(non_upper_case_globals)]
unsafe fn prevented_in_block(node: *mut pg_sys::Node) -> Option<&'static str> {
    use pg_sys::NodeTag::*;
    unsafe {
        match (*node).type_ {
            T_IndexStmt if (*(node as *mut pg_sys::IndexStmt)).concurrent => Some("CREATE INDEX CONCURRENTLY"),
            T_DropStmt if (*(node as *mut pg_sys::DropStmt)).concurrent => Some("DROP INDEX CONCURRENTLY"),
            T_ReindexStmt => {
                let stmt = node as *mut pg_sys::ReindexStmt;
                if facts::reindex_is_concurrent(stmt) {
                    return Some("REINDEX CONCURRENTLY");
                }
                match (*stmt).kind {
                    pg_sys::ReindexObjectType::REINDEX_OBJECT_SCHEMA => Some("REINDEX SCHEMA"),
                    pg_sys::ReindexObjectType::REINDEX_OBJECT_SYSTEM => Some("REINDEX SYSTEM"),
                    pg_sys::ReindexObjectType::REINDEX_OBJECT_DATABASE => Some("REINDEX DATABASE"),
                    _ => None,
                }
            }
            T_VacuumStmt if (*(node as *mut pg_sys::VacuumStmt)).is_vacuumcmd => Some("VACUUM"),
            T_ClusterStmt if (*(node as *mut pg_sys::ClusterStmt)).relation.is_null() => Some("CLUSTER"),
            T_CreatedbStmt => Some("CREATE DATABASE"),
            T_DropdbStmt => Some("DROP DATABASE"),
            T_CreateTableSpaceStmt => Some("CREATE TABLESPACE"),
            T_DropTableSpaceStmt => Some("DROP TABLESPACE"),
            T_AlterSystemStmt => Some("ALTER SYSTEM"),
            T_AlterTableStmt => PgList::<pg_sys::AlterTableCmd>::from_pg((*(node as *mut pg_sys::AlterTableStmt)).cmds)
                .iter_ptr()
                .any(|c| {
                    (*c).subtype == pg_sys::AlterTableType::AT_DetachPartition
                        && is_a((*c).def, T_PartitionCmd)
                        && (*((*c).def as *mut pg_sys::PartitionCmd)).concurrent
                })
                .then_some("ALTER TABLE ... DETACH CONCURRENTLY"),
            _ => None,
        }
    }
}

/// Settings a script may SET for the statements after it: those the judging reads.
fn applied_setting(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.starts_with("pg_migration_guard.") || matches!(name.as_str(), "lock_timeout" | "search_path" | "timezone")
}

/// Whether the current role has any privilege on the relation (MAINTAIN included, from
/// PostgreSQL 17 on, which pg_maintain's members hold on every relation) or owns it:
/// `check()` describes only such relations (see docs/check.md, "Privileges").
unsafe fn may_describe(oid: pg_sys::Oid) -> bool {
    const TABLE_PRIVILEGES: u32 = pg_sys::ACL_INSERT
        | pg_sys::ACL_SELECT
        | pg_sys::ACL_UPDATE
        | pg_sys::ACL_DELETE
        | pg_sys::ACL_TRUNCATE
        | pg_sys::ACL_REFERENCES
        | pg_sys::ACL_TRIGGER;
    #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16"))]
    const ANY: u32 = TABLE_PRIVILEGES;
    #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16")))]
    const ANY: u32 = TABLE_PRIVILEGES | pg_sys::ACL_MAINTAIN;
    unsafe {
        subxact::in_subtransaction(|| {
            pg_sys::pg_class_aclmask(oid, pg_sys::GetUserId(), ANY as _, pg_sys::AclMaskHow::ACLMASK_ANY) != 0
                || facts::owned_by_current_user(oid)
        })
        .unwrap_or(false)
    }
}

unsafe fn relation_name(oid: pg_sys::Oid) -> String {
    unsafe { facts::OpenRel::new(oid).map_or_else(|| format!("relation {}", oid.to_u32()), |r| r.qualified_name()) }
}

impl Checker {
    fn mode(&self) -> Mode {
        self.mode.unwrap_or(Mode::Enforce)
    }

    /// A new transaction starts (a statement outside a block, or BEGIN).
    fn new_transaction(&mut self) {
        self.txn += 1;
        self.sim.view.held.clear();
        for cols in self.sim.view.dropped.values_mut() {
            for c in cols.iter_mut() {
                c.1 = false;
            }
        }
    }

    fn mark(&mut self, line: usize) {
        self.sim.anything.get_or_insert(line);
    }

    fn changed(&mut self, oid: pg_sys::Oid) -> &mut Changed {
        self.sim.changed.entry(oid).or_default()
    }

    /// Resolves a name: the latest relation of that name the script created (and did not
    /// drop), else the catalog's, unless the script dropped or renamed it. `Err` holds the
    /// reason the name cannot be resolved.
    unsafe fn resolve(&self, rv: *mut pg_sys::RangeVar) -> Result<Resolved, String> {
        unsafe { self.resolve_or_missing(rv).map_err(|e| e.reason) }
    }

    /// [`Checker::resolve`], telling a name that leads nowhere (`missing`) from a lookup that
    /// failed (a schema the role may not use, ...).
    unsafe fn resolve_or_missing(&self, rv: *mut pg_sys::RangeVar) -> Result<Resolved, Unresolved> {
        unsafe {
            let (schema, name) = rv_name(rv);
            let found = self
                .sim
                .created
                .iter()
                .rposition(|c| !c.dropped && c.name == name && (schema.is_none() || c.schema.is_none() || c.schema == schema));
            if let Some(i) = found {
                return Ok(Resolved::Script(i));
            }
            match subxact::in_subtransaction(|| facts::lookup(rv)) {
                Ok(Some(oid)) => match self.sim.changed.get(&oid).and_then(|c| c.gone) {
                    // Renamed or moved to a name that leads back to it (SET SCHEMA to its own
                    // schema, say): the name is the script's.
                    Some(_)
                        if self.sim.renamed_to.iter().any(|(s, n, _)| *n == name && (schema.is_none() || s.is_none() || *s == schema)) =>
                    {
                        Err(Unresolved {
                            reason: format!(
                                "{} is a name the script gives a relation: the catalog cannot describe it yet",
                                show_name(&schema, &name)
                            ),
                            missing: false,
                        })
                    }
                    Some(line) => Err(Unresolved::missing(format!(
                        "relation {} is dropped or renamed by the statement at line {line}",
                        show_name(&schema, &name)
                    ))),
                    None => Ok(Resolved::Catalog(oid)),
                },
                Ok(None) => {
                    if let Some((_, _, line)) =
                        self.sim.renamed_to.iter().rev().find(|(s, n, _)| *n == name && (schema.is_none() || s.is_none() || *s == schema))
                    {
                        Err(Unresolved {
                            reason: format!(
                                "{} is the new name the statement at line {line} gives a relation: the catalog cannot describe it yet",
                                show_name(&schema, &name)
                            ),
                            missing: false,
                        })
                    } else if self.sim.created.iter().any(|c| c.dropped && c.name == name) {
                        Err(Unresolved::missing(format!("relation {} is dropped earlier in the script", show_name(&schema, &name))))
                    } else {
                        Err(Unresolved::missing(format!(
                            "relation {} does not exist and is not created earlier in the script",
                            show_name(&schema, &name)
                        )))
                    }
                }
                Err(c) => Err(Unresolved { reason: c.message, missing: false }),
            }
        }
    }

    /// The relation the rules see for one the script created.
    fn relation_of(&self, c: &Created, size: u64) -> Relation {
        Relation {
            name: c.qualified(),
            kind: match c.kind {
                Kind::Table => RelKind::Table,
                Kind::PartitionedTable => RelKind::PartitionedTable,
                Kind::MaterializedView => RelKind::MaterializedView,
                Kind::Index => RelKind::Index,
                Kind::Other => RelKind::Other,
            },
            invisible_to_others: c.temporary || c.txn == self.txn,
            size_bytes: if c.filled { size } else { 0 },
            estimated_rows: None,
            // Created by the script: its data is on this server.
            shards: None,
        }
    }

    /// Judges one statement and records what it would change.
    unsafe fn statement(&mut self, node: *mut pg_sys::Node, text: &str, offset: usize, line: usize) -> Outcome {
        use pg_sys::NodeTag::*;
        unsafe {
            if is_a(node, T_TransactionStmt) {
                self.transaction(node.cast());
                return Outcome::allowed();
            }
            if !self.in_block {
                self.new_transaction();
            }
            if is_a(node, T_VariableSetStmt) {
                return self.set(node.cast());
            }
            if is_a(node, T_DoStmt) || is_a(node, T_CallStmt) {
                self.opaque.get_or_insert(line);
            }
            let mut outcome = if is_a(node, T_DoStmt) || is_a(node, T_CallStmt) {
                Outcome::unknown(
                    "the guard judges the statements a DO block or a procedure runs only when they run: check() cannot see them".into(),
                )
            } else if judging::is_judged_statement(node) {
                self.judge(node, text, offset)
            } else {
                Outcome::allowed()
            };
            if outcome.decision != "rejected" && self.in_block {
                if let Some(what) = prevented_in_block(node) {
                    outcome = Outcome::postgres_error(
                        PgSqlErrorCode::ERRCODE_ACTIVE_SQL_TRANSACTION,
                        format!("{what} cannot run inside a transaction block"),
                    );
                    return outcome;
                }
            }
            // A rejected statement does not run: the statements after it see the state before it,
            // as they would live.
            if outcome.decision == "rejected" {
                return outcome;
            }
            // Locks are held until the transaction ends.
            for oid in self.sim_targets(node) {
                let held = self.sim.view.held.entry(oid.0).or_insert(oid.1);
                *held = (*held).max(oid.1);
            }
            self.effects(node, line);
            outcome
        }
    }

    /// The catalog relations the statement locks, for the held-locks model (computed again,
    /// cheaply, only inside a transaction block where it matters).
    unsafe fn sim_targets(&self, node: *mut pg_sys::Node) -> Vec<(pg_sys::Oid, LockMode)> {
        unsafe {
            if !self.in_block || !judging::is_judged_statement(node) {
                return vec![];
            }
            subxact::in_subtransaction(|| locks::lock_targets(node))
                .map(|t| t.into_iter().map(|t| (t.oid, t.request.mode)).collect())
                .unwrap_or_default()
        }
    }

    unsafe fn transaction(&mut self, stmt: *mut pg_sys::TransactionStmt) {
        use pg_sys::TransactionStmtKind::*;
        unsafe {
            match (*stmt).kind {
                // BEGIN inside a block: PostgreSQL warns and stays in it.
                TRANS_STMT_BEGIN | TRANS_STMT_START if !self.in_block => {
                    self.in_block = true;
                    self.new_transaction();
                    self.saved = Some(self.sim.clone());
                }
                TRANS_STMT_COMMIT | TRANS_STMT_PREPARE => {
                    self.in_block = (*stmt).chain && (*stmt).kind == TRANS_STMT_COMMIT && self.in_block;
                    self.saved = None;
                    self.new_transaction();
                    if self.in_block {
                        self.saved = Some(self.sim.clone());
                    }
                }
                TRANS_STMT_ROLLBACK => {
                    if let Some(saved) = self.saved.take() {
                        self.sim = saved;
                    }
                    self.in_block = (*stmt).chain && self.in_block;
                    self.new_transaction();
                    if self.in_block {
                        self.saved = Some(self.sim.clone());
                    }
                }
                _ => {}
            }
        }
    }

    unsafe fn set(&mut self, stmt: *mut pg_sys::VariableSetStmt) -> Outcome {
        use pg_sys::VariableSetKind::*;
        unsafe {
            let name = facts::cstr((*stmt).name);
            let applies = matches!((*stmt).kind, VAR_SET_VALUE | VAR_SET_DEFAULT | VAR_RESET) && applied_setting(&name);
            // SET LOCAL outside a transaction block has no effect (PostgreSQL warns).
            if !applies || ((*stmt).is_local && !self.in_block) {
                return Outcome::allowed();
            }
            match subxact::run(OnSuccess::Keep, || pg_sys::ExecSetVariableStmt(stmt, false)) {
                Ok(()) => {
                    if name.eq_ignore_ascii_case("pg_migration_guard.mode") {
                        self.mode = Some(guc::mode());
                    }
                    Outcome::allowed()
                }
                Err(e) => {
                    let r = subxact::report(&e);
                    Outcome::postgres_error(r.sql_error_code(), r.message().to_string())
                }
            }
        }
    }

    /// The statement's annotation, as the hook reads it.
    unsafe fn overrides(&self, text: &str) -> Result<Overrides, Box<Outcome>> {
        unsafe {
            let comments = if overrides::mentions_marker(text) { scanner::comments(text.as_bytes()).unwrap_or_default() } else { vec![] };
            match overrides::parse(comments.iter().map(String::as_str)) {
                Ok(annotation) => Ok(Overrides { annotation, allowed: guc::ALLOW_OVERRIDES.get() }),
                Err(message) => Err(Box::new(Outcome {
                    hint: Some(overrides::syntax_hint()),
                    ..Outcome::postgres_error(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, message)
                })),
            }
        }
    }

    unsafe fn judge(&mut self, node: *mut pg_sys::Node, text: &str, offset: usize) -> Outcome {
        unsafe {
            let overrides = match self.overrides(text) {
                Ok(o) => o,
                Err(outcome) => return *outcome,
            };
            if acts_on_many(node) {
                if let Some(first) = self.sim.anything {
                    return Outcome::unknown(format!(
                        "the statement acts on every relation of a kind, and the script creates or changes relations before it \
                         (at line {first}): the catalog cannot describe them yet"
                    ));
                }
            }
            let names = names(node);
            let mut primary = Vec::new();
            let mut other = Vec::new();
            for (i, rv) in names.primary.iter().chain(&names.other).enumerate() {
                let is_primary = i < names.primary.len();
                match self.resolve_or_missing(*rv) {
                    Ok(r) if is_primary => primary.push((*rv, r)),
                    Ok(r) => other.push(r),
                    Err(u) if u.missing && is_primary && names.missing_ok => {}
                    // Nothing of that name: PostgreSQL refuses the statement, unless code the
                    // script ran that check() cannot see created it.
                    Err(u) if u.missing && self.opaque.is_none() => {
                        let (code, message) = does_not_exist(node, *rv);
                        return Outcome { detail: Some(format!("check(): {}.", u.reason)), ..Outcome::postgres_error(code, message) };
                    }
                    Err(u) => return Outcome::unknown(u.reason),
                }
            }
            let script_primary: Vec<usize> =
                primary.iter().filter_map(|(_, r)| if let Resolved::Script(i) = r { Some(*i) } else { None }).collect();
            let script_other = other.iter().find_map(|r| if let Resolved::Script(i) = r { Some(*i) } else { None });
            let catalog: Vec<pg_sys::Oid> = primary
                .iter()
                .map(|(_, r)| r)
                .chain(&other)
                .filter_map(|r| if let Resolved::Catalog(o) = r { Some(*o) } else { None })
                .collect();
            if !script_primary.is_empty() {
                if script_primary.len() != primary.len() {
                    return Outcome::unknown(format!(
                        "the statement names both relations the script creates ({}) and relations of the catalog: \
                         check() judges such a statement only when all of them are the script's",
                        self.sim.created[script_primary[0]].qualified()
                    ));
                }
                return self.synthesized(node, text, &script_primary, &catalog, &overrides);
            }
            if let Some(i) = script_other {
                let c = &self.sim.created[i];
                return Outcome::unknown(format!(
                    "the statement uses {}, which the script creates at line {}: the catalog cannot describe it yet",
                    c.qualified(),
                    c.line
                ));
            }
            let view = self.sim.view.clone();
            let st = StatementText { text, offset };
            let judged = script::with_view(view, || judging::judge_fully(node, &st, &overrides, self.mode()));
            let judged = match judged {
                Ok(j) => j,
                Err(c) => return Outcome::caught(c),
            };
            let oids: Vec<pg_sys::Oid> = catalog.iter().copied().chain(judged.targets.iter().map(|t| t.oid)).collect();
            if let Some(reason) = self.depends_on_script(node, &oids, judged.size_dependent) {
                return Outcome::unknown(reason);
            }
            if let Some(oid) = oids.iter().find(|o| !may_describe(**o)) {
                // The role cannot be told more: no sizes, DETAIL or HINT.
                return Outcome {
                    sqlstate: Some(sqlstate_text(PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE as i32)),
                    hint: Some("Run check() as a role with a privilege on each relation the statement uses, such as its owner.".into()),
                    ..Outcome::unknown(format!(
                        "permission denied for table {}: check() describes only relations the current role may use",
                        relation_name(*oid)
                    ))
                };
            }
            let sizes = judged.stmt.relations().into_iter().cloned().collect();
            Outcome::from_verdict(judged.verdict, judged.targets.into_iter().map(|t| t.request).collect(), sizes)
        }
    }

    /// Why the verdict depends on what the script did before the statement, if it does.
    unsafe fn depends_on_script(&self, node: *mut pg_sys::Node, oids: &[pg_sys::Oid], size_dependent: bool) -> Option<String> {
        unsafe {
            for oid in oids {
                let Some(c) = self.sim.changed.get(oid) else { continue };
                let name = || relation_name(*oid);
                if let Some((line, what)) = c.structure.as_ref().filter(|_| reads_structure(node)) {
                    return Some(format!(
                        "{} is changed by the statement at line {line} ({what}): the catalog cannot describe it yet",
                        name()
                    ));
                }
                if let Some(line) = c.constraints.filter(|_| reads_constraints(node)) {
                    return Some(format!(
                        "the verdict depends on the constraints of {}, which the statement at line {line} changes: \
                         the catalog cannot describe them yet",
                        name()
                    ));
                }
                if let Some(line) = c.indexes.filter(|_| reads_indexes(node)) {
                    return Some(format!(
                        "the verdict depends on the indexes of {}, which the statement at line {line} creates: \
                         the catalog cannot describe them yet",
                        name()
                    ));
                }
                if let Some(line) = c.rows.filter(|_| size_dependent) {
                    return Some(format!("the verdict depends on the size of {}, whose rows the statement at line {line} changes", name()));
                }
            }
            None
        }
    }

    /// A statement on relations the script creates: facts built from the script, judged by
    /// the same rules and decision.
    unsafe fn synthesized(
        &self,
        node: *mut pg_sys::Node,
        text: &str,
        rels: &[usize],
        catalog_other: &[pg_sys::Oid],
        overrides: &Overrides,
    ) -> Outcome {
        unsafe {
            let lock = synthetic_lock(node);
            let created: Vec<&Created> = rels.iter().map(|i| &self.sim.created[*i]).collect();
            let mut requests: Vec<LockRequest> = created
                .iter()
                .map(|c| {
                    let rel = self.relation_of(c, 0);
                    LockRequest { relation: rel.name, mode: lock, invisible_to_others: rel.invisible_to_others }
                })
                .collect();
            for oid in catalog_other {
                let name = relation_name(*oid);
                requests.push(LockRequest { relation: name, mode: LockMode::ShareRowExclusive, invisible_to_others: false });
            }
            let build = |size: u64| -> Result<Statement, String> { self.synthesized_facts(node, text, &created, size) };
            let stmt = match build(0) {
                Ok(s) => s,
                Err(reason) => return Outcome::unknown(reason),
            };
            let ctx = guc::context();
            let levels = guc::rule_levels();
            let mode = self.mode();
            let decide =
                |stmt: &Statement| judging::pure(|| decision::decide(mode, &levels, rules::check_all(stmt, &requests, &ctx), overrides));
            let verdict = match decide(&stmt) {
                Ok(v) => v,
                Err(c) => return Outcome::caught(c),
            };
            if let Some(filled) = created.iter().find(|c| c.filled && !(c.temporary || c.txn == self.txn)) {
                let largest = build(UNMEASURED).ok().and_then(|s| decide(&s).ok());
                if largest.is_none_or(|v| v.rules != verdict.rules) {
                    return Outcome::unknown(format!(
                        "the verdict depends on the size of {}, which the script creates and fills (at line {})",
                        filled.qualified(),
                        filled.line
                    ));
                }
            }
            let sizes = stmt.relations().into_iter().cloned().collect();
            Outcome::from_verdict(verdict, requests, sizes)
        }
    }

    /// The facts of a statement on relations the script creates (all of them `created`).
    #[allow(non_upper_case_globals)]
    unsafe fn synthesized_facts(&self, node: *mut pg_sys::Node, text: &str, created: &[&Created], size: u64) -> Result<Statement, String> {
        use pg_sys::NodeTag::*;
        unsafe {
            let first = created[0];
            let rel = self.relation_of(first, size);
            let tables = || created.iter().map(|c| self.relation_of(c, size)).collect::<Vec<_>>();
            let not_a_table = || !matches!(first.kind, Kind::Table | Kind::PartitionedTable);
            Ok(match (*node).type_ {
                T_IndexStmt => {
                    let stmt = node as *mut pg_sys::IndexStmt;
                    if (not_a_table() && first.kind != Kind::MaterializedView)
                        || (first.kind == Kind::PartitionedTable && !(*(*stmt).relation).inh)
                    {
                        Statement::Other
                    } else {
                        Statement::CreateIndex(CreateIndex {
                            table: rel,
                            concurrent: (*stmt).concurrent,
                            concurrent_sql: sqltext::add_concurrently(text),
                        })
                    }
                }
                T_AlterTableStmt => {
                    let stmt = node as *mut pg_sys::AlterTableStmt;
                    let mut commands = Vec::new();
                    if !rel.invisible_to_others {
                        if first.filled {
                            return Err(format!(
                                "{} is created and filled earlier in the script (at line {}), in a transaction that commits before \
                                 this statement: the catalog cannot describe its columns and constraints yet",
                                first.qualified(),
                                first.line
                            ));
                        }
                        // An empty table: only what does not depend on its size can be found.
                        for cmd in PgList::<pg_sys::AlterTableCmd>::from_pg((*stmt).cmds).iter_ptr() {
                            commands.push(if (*cmd).subtype == pg_sys::AlterTableType::AT_DropColumn && !not_a_table() {
                                AlterTableCmd::DropColumn { column: facts::quote_ident(&facts::cstr((*cmd).name)) }
                            } else {
                                AlterTableCmd::Other
                            });
                        }
                    }
                    Statement::AlterTable(AlterTable { table: rel, lock: synthetic_lock(node), commands })
                }
                T_DropStmt => {
                    let stmt = node as *mut pg_sys::DropStmt;
                    match (*stmt).removeType {
                        pg_sys::ObjectType::OBJECT_TABLE => {
                            Statement::DropTable { tables: tables(), cascade: (*stmt).behavior == pg_sys::DropBehavior::DROP_CASCADE }
                        }
                        pg_sys::ObjectType::OBJECT_INDEX => {
                            let mut indexes = Vec::new();
                            for c in created {
                                let table = match c.table.as_deref() {
                                    Some(Resolved::Script(t)) => self.relation_of(&self.sim.created[*t], size),
                                    Some(Resolved::Catalog(oid)) => subxact::in_subtransaction(|| facts::relation_model(*oid))
                                        .ok()
                                        .flatten()
                                        .ok_or_else(|| format!("the table of index {} cannot be described", c.qualified()))?,
                                    None => return Err(format!("the table of index {} is not known", c.qualified())),
                                };
                                indexes.push(DroppedIndex {
                                    name: c.qualified(),
                                    partitioned: table.kind == RelKind::PartitionedTable,
                                    created_in_transaction: c.txn == self.txn,
                                    table,
                                });
                            }
                            Statement::DropIndex(DropIndex {
                                concurrent: (*stmt).concurrent,
                                if_exists: (*stmt).missing_ok,
                                cascade: (*stmt).behavior == pg_sys::DropBehavior::DROP_CASCADE,
                                indexes,
                            })
                        }
                        _ => Statement::Other,
                    }
                }
                T_RenameStmt => {
                    let stmt = node as *mut pg_sys::RenameStmt;
                    let new_name = facts::quote_ident(&facts::cstr((*stmt).newname));
                    match ((*stmt).renameType, (*stmt).relationType) {
                        _ if not_a_table() => Statement::Other,
                        (pg_sys::ObjectType::OBJECT_COLUMN, pg_sys::ObjectType::OBJECT_TABLE) => {
                            Statement::RenameColumn { table: rel, column: facts::quote_ident(&facts::cstr((*stmt).subname)), new_name }
                        }
                        (pg_sys::ObjectType::OBJECT_TABLE, _) => Statement::RenameTable { table: rel, new_name },
                        _ => Statement::Other,
                    }
                }
                T_RefreshMatViewStmt if first.kind == Kind::MaterializedView => {
                    let stmt = node as *mut pg_sys::RefreshMatViewStmt;
                    Statement::RefreshMatView {
                        view: rel,
                        concurrent: (*stmt).concurrent,
                        populated: first.populated,
                        with_no_data: (*stmt).skipData,
                        written_in_transaction: false,
                    }
                }
                T_TruncateStmt if (*(node as *mut pg_sys::TruncateStmt)).behavior == pg_sys::DropBehavior::DROP_CASCADE => {
                    Statement::TruncateCascade { tables: tables() }
                }
                T_VacuumStmt if facts::vacuum_is_full(node.cast()) => Statement::VacuumFull { tables: tables(), whole_database: false },
                T_ClusterStmt => Statement::Cluster { table: Some(rel), clustered: vec![] },
                T_ReindexStmt => {
                    let stmt = node as *mut pg_sys::ReindexStmt;
                    let (target, table) = match (*stmt).kind {
                        pg_sys::ReindexObjectType::REINDEX_OBJECT_INDEX => (
                            ReindexTarget::Index,
                            match first.table.as_deref() {
                                Some(Resolved::Script(t)) => self.relation_of(&self.sim.created[*t], size),
                                _ => {
                                    return Err(format!("index {} is on a table of the catalog that the script changes", first.qualified()))
                                }
                            },
                        ),
                        _ => (ReindexTarget::Table, rel),
                    };
                    Statement::Reindex(Reindex {
                        target,
                        concurrent: facts::reindex_is_concurrent(stmt),
                        table: Some(table),
                        tables: vec![],
                        concurrent_sql: sqltext::add_reindex_concurrently(text),
                    })
                }
                T_CreateStmt => {
                    let stmt = node as *mut pg_sys::CreateStmt;
                    let parent = first.qualified();
                    if let Some(d) = self.sim.created.iter().find(|c| !c.dropped && c.default_of.as_deref() == Some(parent.as_str())) {
                        if d.filled && !(*(*stmt).partbound).is_default {
                            return Err(format!(
                                "the DEFAULT partition {} of {parent} is created and filled earlier in the script (at line {}): \
                                 whether it must be scanned depends on its rows and constraints",
                                d.qualified(),
                                d.line
                            ));
                        }
                    }
                    let (schema, name) = rv_name((*stmt).relation);
                    Statement::CreatePartition(CreatePartition {
                        parent: rel,
                        partition: show_name(&schema, &name),
                        default_scans: vec![],
                        statement_sql: sqltext::trim_statement(text).to_string(),
                    })
                }
                _ => Statement::Other,
            })
        }
    }

    /// Records what the statement would change, for the statements after it.
    #[allow(non_upper_case_globals)]
    unsafe fn effects(&mut self, node: *mut pg_sys::Node, line: usize) {
        use pg_sys::NodeTag::*;
        unsafe {
            match (*node).type_ {
                T_CreateStmt => {
                    let stmt = node as *mut pg_sys::CreateStmt;
                    let kind = if (*stmt).partspec.is_null() { Kind::Table } else { Kind::PartitionedTable };
                    let default_of = if !(*stmt).partbound.is_null() && (*(*stmt).partbound).is_default {
                        PgList::<pg_sys::RangeVar>::from_pg((*stmt).inhRelations).get_ptr(0).and_then(|p| match self.resolve(p) {
                            Ok(Resolved::Script(i)) => Some(self.sim.created[i].qualified()),
                            _ => None,
                        })
                    } else {
                        None
                    };
                    self.create((*stmt).relation, kind, false, true, None, default_of, line);
                }
                T_CreateForeignTableStmt => {
                    self.create((*(node as *mut pg_sys::CreateStmt)).relation, Kind::Other, false, true, None, None, line)
                }
                T_CreateTableAsStmt => {
                    let stmt = node as *mut pg_sys::CreateTableAsStmt;
                    let into = (*stmt).into;
                    let kind = if (*stmt).objtype == pg_sys::ObjectType::OBJECT_MATVIEW { Kind::MaterializedView } else { Kind::Table };
                    self.create((*into).rel, kind, !(*into).skipData, !(*into).skipData, None, None, line);
                }
                T_SelectStmt => {
                    let into = (*(node as *mut pg_sys::SelectStmt)).intoClause;
                    if !into.is_null() {
                        self.create((*into).rel, Kind::Table, true, true, None, None, line);
                    }
                }
                T_ViewStmt => self.create((*(node as *mut pg_sys::ViewStmt)).view, Kind::Other, false, true, None, None, line),
                T_CreateSeqStmt => {
                    self.create((*(node as *mut pg_sys::CreateSeqStmt)).sequence, Kind::Other, false, true, None, None, line)
                }
                T_IndexStmt => {
                    let stmt = node as *mut pg_sys::IndexStmt;
                    let table = self.resolve((*stmt).relation).ok();
                    if let Some(Resolved::Catalog(oid)) = &table {
                        let oid = *oid;
                        self.changed(oid).indexes.get_or_insert(line);
                    }
                    if !(*stmt).idxname.is_null() {
                        let schema = (*(*stmt).relation).schemaname;
                        let rv = pg_sys::makeRangeVar(schema, (*stmt).idxname, -1);
                        self.create(rv, Kind::Index, false, true, table.map(Box::new), None, line);
                    }
                    self.mark(line);
                }
                T_DropStmt => {
                    for rv in names(node).primary {
                        match self.resolve(rv) {
                            Ok(Resolved::Script(i)) => self.sim.created[i].dropped = true,
                            Ok(Resolved::Catalog(oid)) => {
                                self.changed(oid).gone.get_or_insert(line);
                            }
                            Err(_) => {}
                        }
                    }
                    self.mark(line);
                }
                T_RenameStmt => {
                    let stmt = node as *mut pg_sys::RenameStmt;
                    if (*stmt).relation.is_null() {
                        return;
                    }
                    let new_name = facts::cstr((*stmt).newname);
                    match (self.resolve((*stmt).relation), (*stmt).renameType) {
                        // The script's own relations are described without their columns.
                        (Ok(Resolved::Script(_)), pg_sys::ObjectType::OBJECT_COLUMN) => {}
                        (Ok(Resolved::Script(i)), pg_sys::ObjectType::OBJECT_TABLE)
                        | (Ok(Resolved::Script(i)), pg_sys::ObjectType::OBJECT_INDEX)
                        | (Ok(Resolved::Script(i)), pg_sys::ObjectType::OBJECT_VIEW)
                        | (Ok(Resolved::Script(i)), pg_sys::ObjectType::OBJECT_MATVIEW)
                        | (Ok(Resolved::Script(i)), pg_sys::ObjectType::OBJECT_SEQUENCE)
                        | (Ok(Resolved::Script(i)), pg_sys::ObjectType::OBJECT_FOREIGN_TABLE) => self.sim.created[i].name = new_name,
                        (Ok(Resolved::Catalog(oid)), pg_sys::ObjectType::OBJECT_COLUMN) => {
                            let old = facts::cstr((*stmt).subname).into_bytes();
                            self.drop_column(oid, old);
                            self.add_column(oid, new_name.into_bytes());
                        }
                        (Ok(Resolved::Catalog(oid)), pg_sys::ObjectType::OBJECT_TABLE)
                        | (Ok(Resolved::Catalog(oid)), pg_sys::ObjectType::OBJECT_INDEX)
                        | (Ok(Resolved::Catalog(oid)), pg_sys::ObjectType::OBJECT_VIEW)
                        | (Ok(Resolved::Catalog(oid)), pg_sys::ObjectType::OBJECT_MATVIEW)
                        | (Ok(Resolved::Catalog(oid)), pg_sys::ObjectType::OBJECT_SEQUENCE)
                        | (Ok(Resolved::Catalog(oid)), pg_sys::ObjectType::OBJECT_FOREIGN_TABLE) => {
                            self.changed(oid).gone.get_or_insert(line);
                            let schema = rv_name((*stmt).relation).0;
                            self.sim.renamed_to.push((schema, new_name, line));
                        }
                        _ => {}
                    }
                    self.mark(line);
                }
                T_AlterTableStmt => self.alter_table(node.cast(), line),
                T_AlterObjectSchemaStmt => {
                    let stmt = node as *mut pg_sys::AlterObjectSchemaStmt;
                    if (*stmt).relation.is_null() {
                        return;
                    }
                    match self.resolve((*stmt).relation) {
                        Ok(Resolved::Script(i)) => self.sim.created[i].schema = Some(facts::cstr((*stmt).newschema)),
                        Ok(Resolved::Catalog(oid)) => {
                            self.changed(oid).gone.get_or_insert(line);
                            let name = rv_name((*stmt).relation).1;
                            self.sim.renamed_to.push((Some(facts::cstr((*stmt).newschema)), name, line));
                        }
                        Err(_) => {}
                    }
                    self.mark(line);
                }
                T_InsertStmt | T_UpdateStmt | T_DeleteStmt | T_TruncateStmt | T_CopyStmt => self.rows_written(node, line),
                #[cfg(not(any(feature = "pg13", feature = "pg14")))]
                T_MergeStmt => self.rows_written(node, line),
                T_RefreshMatViewStmt => {
                    let stmt = node as *mut pg_sys::RefreshMatViewStmt;
                    match self.resolve((*stmt).relation) {
                        Ok(Resolved::Script(i)) => {
                            self.sim.created[i].filled = !(*stmt).skipData;
                            self.sim.created[i].populated = !(*stmt).skipData;
                        }
                        Ok(Resolved::Catalog(oid)) => {
                            self.changed(oid).structure.get_or_insert((line, "REFRESH MATERIALIZED VIEW".into()));
                        }
                        Err(_) => {}
                    }
                    self.mark(line);
                }
                T_CreateDomainStmt | T_CompositeTypeStmt | T_CreateEnumStmt | T_CreateSchemaStmt | T_CreateFunctionStmt => self.mark(line),
                _ => {}
            }
        }
    }

    /// Rows written into relations (INSERT, UPDATE, DELETE, MERGE, COPY FROM, TRUNCATE): their
    /// size is no longer the catalog's.
    #[allow(non_upper_case_globals)]
    unsafe fn rows_written(&mut self, node: *mut pg_sys::Node, line: usize) {
        use pg_sys::NodeTag::*;
        unsafe {
            let rvs: Vec<*mut pg_sys::RangeVar> = match (*node).type_ {
                T_InsertStmt => vec![(*(node as *mut pg_sys::InsertStmt)).relation],
                T_UpdateStmt => vec![(*(node as *mut pg_sys::UpdateStmt)).relation],
                T_DeleteStmt => vec![(*(node as *mut pg_sys::DeleteStmt)).relation],
                #[cfg(not(any(feature = "pg13", feature = "pg14")))]
                T_MergeStmt => vec![(*(node as *mut pg_sys::MergeStmt)).relation],
                T_TruncateStmt => {
                    PgList::<pg_sys::RangeVar>::from_pg((*(node as *mut pg_sys::TruncateStmt)).relations).iter_ptr().collect()
                }
                T_CopyStmt if (*(node as *mut pg_sys::CopyStmt)).is_from => vec![(*(node as *mut pg_sys::CopyStmt)).relation],
                _ => vec![],
            };
            for rv in rvs.into_iter().filter(|rv| !rv.is_null()) {
                match self.resolve(rv) {
                    Ok(Resolved::Script(i)) => self.sim.created[i].filled = true,
                    Ok(Resolved::Catalog(oid)) => {
                        self.changed(oid).rows.get_or_insert(line);
                    }
                    Err(_) => {}
                }
                self.mark(line);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    unsafe fn create(
        &mut self,
        rv: *mut pg_sys::RangeVar,
        kind: Kind,
        filled: bool,
        populated: bool,
        table: Option<Box<Resolved>>,
        default_of: Option<String>,
        line: usize,
    ) {
        unsafe {
            if rv.is_null() {
                return;
            }
            // CREATE ... of a name the catalog has: PostgreSQL refuses it (or skips it with IF
            // NOT EXISTS); nothing is created.
            if let Ok(Resolved::Catalog(_)) = self.resolve(rv) {
                return;
            }
            let (schema, name) = rv_name(rv);
            let temporary = (*rv).relpersistence as u8 == pg_sys::RELPERSISTENCE_TEMP;
            let schema = if temporary { None } else { schema.or_else(|| creation_schema()) };
            self.sim.created.push(Created {
                schema,
                name,
                kind,
                txn: self.txn,
                temporary,
                filled,
                populated,
                table,
                default_of,
                dropped: false,
                line,
            });
            self.mark(line);
        }
    }

    fn add_column(&mut self, oid: pg_sys::Oid, name: Vec<u8>) {
        if let Some(d) = self.sim.view.dropped.get_mut(&oid) {
            d.retain(|(n, _)| *n != name);
        }
        self.sim.view.added.entry(oid).or_default().push(name);
    }

    fn drop_column(&mut self, oid: pg_sys::Oid, name: Vec<u8>) {
        if let Some(a) = self.sim.view.added.get_mut(&oid) {
            a.retain(|n| *n != name);
        }
        self.sim.view.dropped.entry(oid).or_default().push((name, true));
    }

    #[allow(non_upper_case_globals)]
    unsafe fn alter_table(&mut self, stmt: *mut pg_sys::AlterTableStmt, line: usize) {
        use pg_sys::AlterTableType::*;
        unsafe {
            let target = match self.resolve((*stmt).relation) {
                Ok(Resolved::Catalog(oid)) => Some(oid),
                _ => None,
            };
            self.mark(line);
            for cmd in PgList::<pg_sys::AlterTableCmd>::from_pg((*stmt).cmds).iter_ptr() {
                let def = (*cmd).def;
                if (*cmd).subtype == AT_AttachPartition || (*cmd).subtype == AT_DetachPartition {
                    if let Ok(Resolved::Catalog(p)) = self.resolve((*(def as *mut pg_sys::PartitionCmd)).name) {
                        self.changed(p).structure.get_or_insert((line, "ATTACH or DETACH PARTITION".into()));
                    }
                }
                let Some(oid) = target else { continue };
                match (*cmd).subtype {
                    AT_AddColumn if is_a(def, pg_sys::NodeTag::T_ColumnDef) => {
                        self.add_column(oid, CStr::from_ptr((*(def as *mut pg_sys::ColumnDef)).colname).to_bytes().to_vec());
                        let cons = PgList::<pg_sys::Constraint>::from_pg((*(def as *mut pg_sys::ColumnDef)).constraints);
                        if !cons.is_empty() {
                            self.changed(oid).constraints.get_or_insert(line);
                        }
                    }
                    AT_DropColumn => self.drop_column(oid, CStr::from_ptr((*cmd).name).to_bytes().to_vec()),
                    AT_AddConstraint
                    | AT_ValidateConstraint
                    | AT_DropConstraint
                    | AT_SetNotNull
                    | AT_DropNotNull
                    | AT_AttachPartition
                    | AT_DetachPartition
                    | AT_AddIndexConstraint => {
                        self.changed(oid).constraints.get_or_insert(line);
                    }
                    AT_AlterColumnType => {
                        self.changed(oid).structure.get_or_insert((line, "ALTER COLUMN TYPE".into()));
                    }
                    AT_SetLogged | AT_SetUnLogged => {
                        self.changed(oid).structure.get_or_insert((line, "SET LOGGED or UNLOGGED".into()));
                    }
                    AT_SetTableSpace => {
                        self.changed(oid).structure.get_or_insert((line, "SET TABLESPACE".into()));
                    }
                    AT_ClusterOn | AT_DropCluster => {
                        self.changed(oid).structure.get_or_insert((line, "CLUSTER ON".into()));
                    }
                    AT_AddInherit | AT_DropInherit | AT_AddOf | AT_DropOf => {
                        self.changed(oid).structure.get_or_insert((line, "INHERIT or OF".into()));
                    }
                    _ =>
                    {
                        #[cfg(not(any(feature = "pg13", feature = "pg14")))]
                        if (*cmd).subtype == AT_SetAccessMethod {
                            self.changed(oid).structure.get_or_insert((line, "SET ACCESS METHOD".into()));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{first_token, sqlstate_text, Lines};

    #[test]
    fn positions_are_lines_and_characters() {
        let text = "SELECT 1;\n  CREATE INDEX é;\n\nx";
        let l = Lines::new(text);
        assert_eq!(l.position(0), (1, 1));
        assert_eq!(l.position(12), (2, 3));
        assert_eq!(l.position(text.len() - 1), (4, 1));
        let i = text.find('x').unwrap();
        assert_eq!(l.position(i), (4, 1));
    }

    #[test]
    fn first_token_skips_comments() {
        let t = b"  -- a\n /* b /* c */ */ SELECT";
        assert_eq!(&t[first_token(t, 0)..], b"SELECT");
        assert_eq!(first_token(b"   ", 0), 3);
    }

    #[test]
    fn sqlstates_unpack() {
        // MAKE_SQLSTATE('5','5','0','0','0')
        let code = (5) | (5 << 6);
        assert_eq!(sqlstate_text(code), "55000");
    }
}

//! Facts layer: parse node + live catalog → plain Rust values ([`crate::model`]).
//!
//! Reads what the rules need from the parse tree and the live catalog. Relations are looked
//! up without taking locks (`NoLock`): the guard must not queue behind anyone before
//! PostgreSQL does, and must not upgrade a lock the statement is about to take. The caller
//! runs all of this inside an internal subtransaction: an error here is caught there and
//! becomes a judging failure, which `pg_migration_guard.on_judging_error` decides (reject
//! by default).
//!
//! Judging never runs a user's code: expressions are planned (constant-folded) only when
//! they call nothing but built-in functions (`calls_only_builtin_functions`). Names from the
//! catalog are bytes in the database encoding (`name_bytes`), never assumed to be UTF-8.

use std::ffi::{c_char, c_void, CStr, CString};

use pgrx::pg_sys;
use pgrx::{is_a, PgList, PgTupleDesc};

use crate::judging::script;
use crate::model::*;
use crate::sqltext;

mod catalog;
mod columns;
mod domains;
mod partitions;

// `find_all_inheritors` (src/include/catalog/pg_inherits.h) is not in pgrx's bindings;
// it is called through `pg_guard_ffi_boundary` like every binding pgrx generates.
unsafe extern "C-unwind" {
    #[link_name = "find_all_inheritors"]
    fn find_all_inheritors_raw(parent: pg_sys::Oid, lockmode: pg_sys::LOCKMODE, numparents: *mut *mut pg_sys::List) -> *mut pg_sys::List;
}

pub(crate) unsafe fn find_all_inheritors(parent: pg_sys::Oid) -> *mut pg_sys::List {
    unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| find_all_inheritors_raw(parent, pg_sys::NoLock as _, std::ptr::null_mut())) }
}

/// The statement being judged: its own text (one statement of a possibly multi-statement
/// query string) and the offset of that text in the full query string, so that parse-node
/// locations can be mapped into it.
pub struct StatementText<'a> {
    pub text: &'a str,
    pub offset: usize,
}

impl StatementText<'_> {
    /// Maps a parse-node `location` (offset in the full query string) into `text`.
    fn local(&self, location: i32) -> Option<usize> {
        let loc = usize::try_from(location).ok()?;
        loc.checked_sub(self.offset).filter(|l| *l < self.text.len())
    }
}

/// Whether [`statement_facts`] measures relation sizes. Measuring one costs an `lseek` of
/// its main fork and a pg_class lookup and `stat` for its TOAST table, and only rules that
/// might fire use it, so the hook judges in two passes (`crate::hook::verdict_for`): first with
/// `Unmeasured` sizes, then, only when that pass found something, again with `Measured`.
///
/// `Unmeasured` reports every size as [`UNMEASURED`] (`u64::MAX`), the largest there is.
/// Sound because every rule is monotonic in size: a bigger relation never takes a
/// finding away (`Context::exempt` exempts only relations *below* the threshold,
/// `adding-required-field` fires only *above* 0 bytes), so a statement with no finding at
/// the largest size has none at its real size
/// (`rules::tests::findings_only_grow_with_size`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sizes {
    Measured,
    Unmeasured,
}

impl Sizes {
    /// `rel`'s main fork plus its TOAST table's, or [`UNMEASURED`].
    fn of(self, rel: &OpenRel) -> u64 {
        match self {
            Sizes::Measured => rel.size_with_toast(),
            Sizes::Unmeasured => UNMEASURED,
        }
    }
}

/// Builds the facts for one utility statement.
///
/// # Safety
/// `node` must be a valid utility parse tree, called inside a transaction.
pub unsafe fn statement_facts(node: *mut pg_sys::Node, text: &StatementText, sizes: Sizes) -> Statement {
    unsafe {
        if is_a(node, pg_sys::NodeTag::T_IndexStmt) {
            create_index(node.cast(), text, sizes).map_or(Statement::Other, Statement::CreateIndex)
        } else if is_a(node, pg_sys::NodeTag::T_DropStmt) {
            drop_stmt(node.cast(), sizes).unwrap_or(Statement::Other)
        } else if is_a(node, pg_sys::NodeTag::T_AlterTableStmt) {
            let stmt = node as *mut pg_sys::AlterTableStmt;
            if (*stmt).objtype == pg_sys::ObjectType::OBJECT_TYPE {
                catalog::alter_composite_type(stmt, sizes)
            } else {
                alter_table(stmt, text, sizes).map_or(Statement::Other, Statement::AlterTable)
            }
        } else if is_a(node, pg_sys::NodeTag::T_ReindexStmt) {
            reindex(node.cast(), text, sizes).map_or(Statement::Other, Statement::Reindex)
        } else if is_a(node, pg_sys::NodeTag::T_VacuumStmt) {
            vacuum_full(node.cast(), sizes)
        } else if is_a(node, pg_sys::NodeTag::T_ClusterStmt) {
            let rv = (*(node as *mut pg_sys::ClusterStmt)).relation;
            if rv.is_null() {
                Statement::Cluster { table: None, clustered: catalog::clustered_tables(sizes) }
            } else if !catalog::cluster_index_exists(rv, (*(node as *mut pg_sys::ClusterStmt)).indexname) {
                // No such index, or no clustered index to use: PostgreSQL's error.
                Statement::Other
            } else {
                lookup(rv)
                    .and_then(|oid| relation(oid, Reach::Partitions, sizes))
                    .map_or(Statement::Other, |t| Statement::Cluster { table: Some(t), clustered: vec![] })
            }
        } else if is_a(node, pg_sys::NodeTag::T_AlterDomainStmt) {
            domains::alter_domain(node.cast(), text, sizes)
        } else if is_a(node, pg_sys::NodeTag::T_CreateStmt) {
            partitions::create_partition(node.cast(), text, sizes)
        } else if is_a(node, pg_sys::NodeTag::T_AlterTableMoveAllStmt) {
            catalog::move_all(node.cast(), sizes)
        } else if is_a(node, pg_sys::NodeTag::T_RefreshMatViewStmt) {
            refresh(node.cast(), sizes)
        } else if is_a(node, pg_sys::NodeTag::T_RenameStmt) {
            rename(node.cast(), sizes)
        } else if is_a(node, pg_sys::NodeTag::T_TruncateStmt) {
            let stmt = node as *mut pg_sys::TruncateStmt;
            let tables: Vec<Relation> = PgList::<pg_sys::RangeVar>::from_pg((*stmt).relations)
                .iter_ptr()
                .filter_map(|rv| lookup(rv).and_then(|oid| relation(oid, if (*rv).inh { Reach::Inheritors } else { Reach::Itself }, sizes)))
                .collect();
            if (*stmt).behavior == pg_sys::DropBehavior::DROP_CASCADE && !tables.is_empty() {
                Statement::TruncateCascade { tables }
            } else {
                Statement::Other
            }
        } else {
            Statement::Other
        }
    }
}

/// The bytes of a catalog name up to its terminating NUL. Names are bytes in the database
/// encoding, not necessarily UTF-8 (an SQL_ASCII database accepts any byte), so they are
/// compared as bytes and shown lossily, never converted with a check that could fail.
pub(crate) fn name_bytes(n: &pg_sys::NameData) -> &[u8] {
    let data: &[c_char] = &n.data;
    // SAFETY: c_char and u8 have the same size and alignment.
    let bytes = unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), data.len()) };
    bytes.iter().position(|b| *b == 0).map_or(bytes, |end| &bytes[..end])
}

/// The bytes of a C string (empty for null).
unsafe fn cstr_bytes<'a>(p: *const c_char) -> &'a [u8] {
    if p.is_null() {
        b""
    } else {
        unsafe { CStr::from_ptr(p) }.to_bytes()
    }
}

pub(crate) unsafe fn cstr(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// `quote_identifier`, PostgreSQL's own rule for when a name needs double quotes.
pub fn quote_ident(name: &str) -> String {
    let Ok(c) = CString::new(name) else { return format!("\"{}\"", name.replace('"', "\"\"")) };
    unsafe { cstr(pg_sys::quote_identifier(c.as_ptr())) }
}

/// An identifier built from parts, truncated to NAMEDATALEN-1 bytes like PostgreSQL does.
fn make_name(parts: &[&str], suffix: &str) -> String {
    let mut base = parts.join("_");
    let max = pg_sys::NAMEDATALEN as usize - 1 - suffix.len() - 1;
    while base.len() > max {
        base.pop();
    }
    quote_ident(&format!("{base}_{suffix}"))
}

/// Resolves a RangeVar without locking; `None` when the relation does not exist.
pub(crate) unsafe fn lookup(rv: *mut pg_sys::RangeVar) -> Option<pg_sys::Oid> {
    if rv.is_null() {
        return None;
    }
    let oid = unsafe {
        pg_sys::RangeVarGetRelidExtended(
            rv,
            pg_sys::NoLock as pg_sys::LOCKMODE,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        )
    };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// A relcache reference, released on drop (also when an error unwinds through it).
pub(crate) struct OpenRel(pub(crate) pg_sys::Relation);

impl OpenRel {
    pub(crate) unsafe fn new(oid: pg_sys::Oid) -> Option<OpenRel> {
        let rel = unsafe { pg_sys::RelationIdGetRelation(oid) };
        (!rel.is_null()).then_some(OpenRel(rel))
    }
    pub(crate) fn form(&self) -> &pg_sys::FormData_pg_class {
        unsafe { &*(*self.0).rd_rel }
    }
    /// The relation's name for messages (bytes that are not UTF-8 shown as U+FFFD).
    fn relname(&self) -> String {
        String::from_utf8_lossy(name_bytes(&self.form().relname)).into_owned()
    }
    pub(crate) fn qualified_name(&self) -> String {
        unsafe {
            let nsp = pg_sys::get_namespace_name(self.form().relnamespace);
            cstr(pg_sys::quote_qualified_identifier(nsp, self.form().relname.data.as_ptr()))
        }
    }
    fn kind(&self) -> RelKind {
        match self.form().relkind as u8 {
            pg_sys::RELKIND_RELATION => RelKind::Table,
            pg_sys::RELKIND_PARTITIONED_TABLE => RelKind::PartitionedTable,
            pg_sys::RELKIND_MATVIEW => RelKind::MaterializedView,
            pg_sys::RELKIND_INDEX | pg_sys::RELKIND_PARTITIONED_INDEX => RelKind::Index,
            _ => RelKind::Other,
        }
    }
    fn temporary(&self) -> bool {
        self.form().relpersistence as u8 == pg_sys::RELPERSISTENCE_TEMP
    }
    fn created_in_transaction(&self) -> bool {
        // 0 is InvalidSubTransactionId
        unsafe { (*self.0).rd_createSubid != 0 }
    }
    /// Created in this transaction, or temporary: no other session can see it, so nothing
    /// done to it can block anyone (`Relation::invisible_to_others` in the model).
    pub(crate) fn invisible_to_others(&self) -> bool {
        self.created_in_transaction() || self.temporary()
    }
    /// Main-fork bytes, from the actual block count (0 for relations without storage).
    fn size_bytes(&self) -> u64 {
        let k = self.form().relkind as u8;
        let has_storage =
            matches!(k, pg_sys::RELKIND_RELATION | pg_sys::RELKIND_MATVIEW | pg_sys::RELKIND_TOASTVALUE | pg_sys::RELKIND_INDEX);
        if !has_storage {
            return 0;
        }
        let blocks = unsafe { pg_sys::RelationGetNumberOfBlocksInFork(self.0, pg_sys::ForkNumber::MAIN_FORKNUM) };
        blocks as u64 * pg_sys::BLCKSZ as u64
    }
    /// Main fork plus the TOAST table's main fork. The TOAST table is measured by its files
    /// (`main_fork_bytes_by_path`), which needs its pg_class row only, not a relcache
    /// entry: building one cost ~33 k instructions per measured statement, and nothing else
    /// of the guard or of most statements needs it.
    fn size_with_toast(&self) -> u64 {
        let toast = self.form().reltoastrelid;
        let toast_bytes = if toast != pg_sys::InvalidOid {
            unsafe { main_fork_bytes_by_path(toast) }.or_else(|| unsafe { OpenRel::new(toast) }.map(|t| t.size_bytes())).unwrap_or(0)
        } else {
            0
        };
        self.size_bytes() + toast_bytes
    }
    fn reltuples(&self) -> Option<f64> {
        let t = self.form().reltuples as f64;
        (t >= 0.0).then_some(t)
    }
}

/// Main-fork bytes of relation `oid` measured the way `pg_relation_size` does
/// (src/backend/utils/adt/dbsize.c, `calculate_relation_size`: the sum of the sizes of the
/// fork's 1 GB segment files `path`, `path.1`, ...; see `segmented_file_bytes`), with the path
/// from `pg_relation_filepath` (the same file, same function: it reads the pg_class row
/// through the syscache and builds no relcache entry). Paths are relative to the data
/// directory, the backend's working directory. `None` when the relation has no file
/// path (no storage) or its first segment is missing — a rewrite committed since the
/// catalog snapshot — so the caller measures through the relcache instead.
pub(crate) unsafe fn main_fork_bytes_by_path(oid: pg_sys::Oid) -> Option<u64> {
    // text palloc'd in the current memory context, read at once
    let path = unsafe { pgrx::direct_function_call::<&str>(|f| pg_sys::pg_relation_filepath(f), &[Some(pg_sys::Datum::from(oid))]) }?;
    segmented_file_bytes(path, pg_sys::RELSEG_SIZE as u64 * pg_sys::BLCKSZ as u64, |file| std::fs::metadata(file).ok().map(|m| m.len()))
}

/// The size of a fork stored as segments `path`, `path.1`, ... of `segment_bytes` each,
/// with `size_of` giving a file's size (`None`: missing). Stops at the first segment short
/// of `segment_bytes`, as md.c's `mdnblocks` counts; `None` when `path` itself is missing.
fn segmented_file_bytes(path: &str, segment_bytes: u64, size_of: impl Fn(&str) -> Option<u64>) -> Option<u64> {
    let mut total = size_of(path)?;
    let mut segment = 1u64;
    while total >= segment * segment_bytes {
        match size_of(&format!("{path}.{segment}")) {
            Some(len) => total += len,
            None => break,
        }
        segment += 1;
    }
    Some(total)
}

impl Drop for OpenRel {
    fn drop(&mut self) {
        unsafe { pg_sys::RelationClose(self.0) }
    }
}

/// Which of a relation's partitions and inheritance children a statement processes along
/// with it, so that their sizes count: the same relations PostgreSQL recurses to for that
/// statement, never more (an empty inheritance parent is not as big as its children when
/// the statement does not reach them).
#[derive(Clone, Copy)]
pub(super) enum Reach {
    /// The relation alone.
    Itself,
    /// Every partition at every level when the relation is a partitioned table; nothing for
    /// an inheritance parent (DefineIndex, cluster_rel, ReindexPartitions, expand_vacuum_rel).
    Partitions,
    /// Every partition and inheritance child (find_all_inheritors: ExecuteTruncate).
    Inheritors,
    /// The children the statement locks, as `crate::judging::lock_targets` predicts them from PostgreSQL's
    /// recursion rules per subcommand (ALTER TABLE).
    Locked(*mut pg_sys::Node),
}

/// The relation as the rules see it. Sizes and row estimates are summed over the
/// partitions and inheritance children `reach` selects.
unsafe fn relation(oid: pg_sys::Oid, reach: Reach, sizes: Sizes) -> Option<Relation> {
    let rel = unsafe { OpenRel::new(oid) }?;
    Some(unsafe { relation_of(&rel, reach, sizes) })
}

/// The relation as the rules see it, measured, without its children (`check()` describes
/// the table of an index the script creates this way).
///
/// # Safety
/// Inside a transaction.
pub(crate) unsafe fn relation_model(oid: pg_sys::Oid) -> Option<Relation> {
    unsafe { relation(oid, Reach::Itself, Sizes::Measured) }
}

/// [`relation`] for a relation the caller has open already.
unsafe fn relation_of(rel: &OpenRel, reach: Reach, sizes: Sizes) -> Relation {
    let oid = unsafe { (*rel.0).rd_id };
    let (size_bytes, estimated_rows, shards) = unsafe { measure(rel, sizes) };
    let mut out = Relation {
        name: rel.qualified_name(),
        kind: rel.kind(),
        invisible_to_others: rel.invisible_to_others(),
        size_bytes,
        estimated_rows,
        shards,
    };
    if out.kind == RelKind::PartitionedTable {
        out.estimated_rows = None;
    }
    if !rel.form().relhassubclass {
        return out;
    }
    let children: Vec<pg_sys::Oid> = match reach {
        Reach::Itself => vec![],
        Reach::Partitions if out.kind != RelKind::PartitionedTable => vec![],
        Reach::Partitions | Reach::Inheritors => {
            unsafe { PgList::<c_void>::from_pg(find_all_inheritors(oid)) }.iter_oid().filter(|c| *c != oid).collect()
        }
        Reach::Locked(node) => unsafe { crate::judging::lock_targets::reached_inheritors(node, oid) },
    };
    for child in children {
        if let Some(crel) = unsafe { OpenRel::new(child) } {
            let (bytes, rows, shards) = unsafe { measure(&crel, sizes) };
            out.size_bytes = out.size_bytes.saturating_add(bytes);
            // Exempt only when every relation the statement reaches is new: a partition
            // attached from an old table is as visible as ever.
            out.invisible_to_others &= crel.invisible_to_others();
            if let Some(t) = rows {
                *out.estimated_rows.get_or_insert(0.0) += t;
            }
            if let Some(n) = shards {
                *out.shards.get_or_insert(0) += n;
            }
        }
    }
    out
}

/// A relation's size, row estimate and, for a Citus table measured on the coordinator, its
/// number of shards. With `Sizes::Measured`, a Citus table (`crate::citus::distributed_size`)
/// counts its shards, measured on the nodes that hold them, on top of its local (shell)
/// table; when they cannot all be measured its size is [`UNMEASURED`]: unknown, judged as
/// large.
unsafe fn measure(rel: &OpenRel, sizes: Sizes) -> (u64, Option<f64>, Option<u32>) {
    let local = sizes.of(rel);
    if sizes == Sizes::Measured {
        if let Some(d) = unsafe { crate::citus::distributed_size((*rel.0).rd_id) } {
            return match d.bytes {
                Some(bytes) => (local.saturating_add(bytes), d.rows, Some(d.shards)),
                None => (UNMEASURED, None, Some(d.shards)),
            };
        }
    }
    (local, rel.reltuples(), None)
}

/// Main fork and TOAST bytes and `reltuples` (`None` when never analyzed) of relation
/// `oid`, measured as the guard measures a judged relation: no lock taken. `None` when it
/// does not exist.
///
/// # Safety
/// Inside a transaction.
pub(crate) unsafe fn local_size(oid: pg_sys::Oid) -> Option<(u64, Option<f64>)> {
    let rel = unsafe { OpenRel::new(oid) }?;
    Some((rel.size_with_toast(), rel.reltuples()))
}

unsafe fn create_index(stmt: *mut pg_sys::IndexStmt, text: &StatementText, sizes: Sizes) -> Option<CreateIndex> {
    unsafe {
        let rv = (*stmt).relation;
        let oid = lookup(rv)?;
        let table = relation(oid, if (*rv).inh { Reach::Partitions } else { Reach::Itself }, sizes)?;
        if table.kind == RelKind::PartitionedTable && !(*rv).inh {
            // CREATE INDEX ... ON ONLY parent: an invalid index on the parent, nothing built.
            return None;
        }
        // What PostgreSQL skips (IF NOT EXISTS) or refuses, it reports itself: a name in use,
        // a column that does not exist.
        let rel = OpenRel::new(oid)?;
        if !(*stmt).idxname.is_null() && pg_sys::get_relname_relid((*stmt).idxname, rel.form().relnamespace) != pg_sys::InvalidOid {
            return None;
        }
        let params = PgList::<pg_sys::IndexElem>::from_pg((*stmt).indexParams);
        if params.iter_ptr().any(|e| !(*e).name.is_null() && !column_known(&rel, cstr_bytes((*e).name))) {
            return None;
        }
        Some(CreateIndex { table, concurrent: (*stmt).concurrent, concurrent_sql: sqltext::add_concurrently(text.text) })
    }
}

unsafe fn drop_stmt(stmt: *mut pg_sys::DropStmt, sizes: Sizes) -> Option<Statement> {
    unsafe {
        if !matches!((*stmt).removeType, pg_sys::ObjectType::OBJECT_TABLE | pg_sys::ObjectType::OBJECT_INDEX) {
            return None;
        }
        // Without IF EXISTS, a name that does not exist makes PostgreSQL refuse the whole
        // statement with its own error: not judged.
        let objects = PgList::<pg_sys::List>::from_pg((*stmt).objects);
        let oids: Vec<Option<pg_sys::Oid>> = objects.iter_ptr().map(|names| lookup(pg_sys::makeRangeVarFromNameList(names))).collect();
        if !(*stmt).missing_ok && oids.iter().any(Option::is_none) {
            return None;
        }
        if (*stmt).removeType == pg_sys::ObjectType::OBJECT_TABLE {
            let tables: Vec<Relation> = oids.iter().flatten().filter_map(|oid| relation(*oid, Reach::Itself, sizes)).collect();
            if tables.is_empty() {
                return None;
            }
            return Some(Statement::DropTable { tables, cascade: (*stmt).behavior == pg_sys::DropBehavior::DROP_CASCADE });
        }
        let mut indexes = Vec::new();
        for index_oid in oids.into_iter().flatten() {
            let Some(index) = OpenRel::new(index_oid) else { continue };
            let table_oid = pg_sys::IndexGetRelation(index_oid, true);
            if table_oid == pg_sys::InvalidOid {
                continue;
            }
            let Some(table) = relation(table_oid, Reach::Itself, sizes) else { continue };
            indexes.push(DroppedIndex {
                name: index.qualified_name(),
                partitioned: index.form().relkind as u8 == pg_sys::RELKIND_PARTITIONED_INDEX,
                created_in_transaction: index.created_in_transaction(),
                table,
            });
        }
        Some(Statement::DropIndex(DropIndex {
            concurrent: (*stmt).concurrent,
            if_exists: (*stmt).missing_ok,
            cascade: (*stmt).behavior == pg_sys::DropBehavior::DROP_CASCADE,
            indexes,
        }))
    }
}

/// What the subcommands of one ALTER TABLE need to know about the others.
struct AlterContext {
    /// What `AlterTableGetLockLevel` says the statement takes.
    lock: LockMode,
    /// transformAlterTableStmt's `skipValidation` (src/backend/parser/parse_utilcmd.c): true
    /// when no ADD COLUMN of the statement has a default (written, serial's nextval, or a
    /// generation expression) and the statement adds no table-level foreign key. Foreign keys
    /// written inline in ADD COLUMN are then marked valid without a scan
    /// (transformFKConstraints): every row has NULL in the new column.
    fk_skip_validation: bool,
    /// Columns the statement's DROP COLUMN subcommands drop: name and attribute number
    /// (PostgreSQL drops them before it adds columns, whatever the order written).
    dropped: Vec<(Vec<u8>, pg_sys::AttrNumber)>,
    /// Columns the statement's ADD COLUMN subcommands add (PostgreSQL adds them before it
    /// adds constraints, whatever the order written).
    added: Vec<Vec<u8>>,
}

impl AlterContext {
    /// Whether `name` is a column of `rel` or one the statement adds: otherwise a constraint
    /// or index on it makes PostgreSQL refuse the statement with its own error.
    unsafe fn has_column(&self, rel: &OpenRel, name: &[u8]) -> bool {
        column_known(rel, name) || self.added.iter().any(|a| a.as_slice() == name)
    }
}

/// ALTER TABLE, ALTER INDEX and ALTER MATERIALIZED VIEW (and ALTER TABLE naming an index or a
/// view). For a relation that is not a table only the subcommands that copy it are judged
/// (SET TABLESPACE, SET ACCESS METHOD).
unsafe fn alter_table(stmt: *mut pg_sys::AlterTableStmt, text: &StatementText, sizes: Sizes) -> Option<AlterTable> {
    use pg_sys::ObjectType::*;
    unsafe {
        if !matches!((*stmt).objtype, OBJECT_TABLE | OBJECT_INDEX | OBJECT_MATVIEW) {
            return None;
        }
        let rv = (*stmt).relation;
        let oid = lookup(rv)?;
        let rel = OpenRel::new(oid)?;
        let table = relation_of(&rel, Reach::Locked(stmt.cast()), sizes);
        let lock = LockMode::from_pg(pg_sys::AlterTableGetLockLevel((*stmt).cmds)).unwrap_or(LockMode::AccessExclusive);
        let mut commands = Vec::new();
        if !table.invisible_to_others {
            let cmds = PgList::<pg_sys::AlterTableCmd>::from_pg((*stmt).cmds);
            let added = cmds
                .iter_ptr()
                .filter(|c| (*(*c)).subtype == pg_sys::AlterTableType::AT_AddColumn && is_a((*(*c)).def, pg_sys::NodeTag::T_ColumnDef))
                .map(|c| cstr_bytes((*((*c).def as *mut pg_sys::ColumnDef)).colname).to_vec())
                .collect();
            let dropped = cmds
                .iter_ptr()
                .filter(|c| (*(*c)).subtype == pg_sys::AlterTableType::AT_DropColumn)
                .filter_map(|c| columns::droppable_column(&rel, (*c).name))
                .map(|att| (name_bytes(&att.attname).to_vec(), att.attnum))
                .collect();
            let mut ctx = AlterContext { lock, fk_skip_validation: fk_skip_validation(&cmds), dropped, added };
            let is_table = matches!(rel.kind(), RelKind::Table | RelKind::PartitionedTable);
            for cmd in cmds.iter_ptr() {
                if is_table || is_storage_subcommand((*cmd).subtype) {
                    commands.extend(alter_table_cmd(&rel, cmd, text, sizes, &mut ctx));
                }
            }
        }
        Some(AlterTable { table, lock, commands })
    }
}

/// The subcommands that copy a relation of any kind into new storage.
fn is_storage_subcommand(subtype: pg_sys::AlterTableType::Type) -> bool {
    use pg_sys::AlterTableType::*;
    #[cfg(not(any(feature = "pg13", feature = "pg14")))]
    if subtype == AT_SetAccessMethod {
        return true;
    }
    subtype == AT_SetTableSpace
}

/// transformAlterTableStmt's `skipValidation` for the statement's subcommands (see
/// [`AlterContext::fk_skip_validation`]).
#[allow(non_upper_case_globals)]
unsafe fn fk_skip_validation(cmds: &PgList<pg_sys::AlterTableCmd>) -> bool {
    use pg_sys::AlterTableType::*;
    use pg_sys::ConstrType::*;
    unsafe {
        for cmd in cmds.iter_ptr() {
            let def = (*cmd).def;
            match (*cmd).subtype {
                AT_AddColumn if is_a(def, pg_sys::NodeTag::T_ColumnDef) => {
                    let col = def as *mut pg_sys::ColumnDef;
                    let parts = type_name_parts((*col).typeName);
                    let serial = parts.len() == 1
                        && matches!(parts[0].as_str(), "smallserial" | "serial2" | "serial" | "serial4" | "bigserial" | "serial8");
                    // transformColumnDefinition moves DEFAULT and GENERATED expressions, and a
                    // serial's nextval(), into raw_default.
                    let has_default = !(*col).raw_default.is_null()
                        || serial
                        || PgList::<pg_sys::Constraint>::from_pg((*col).constraints)
                            .iter_ptr()
                            .any(|c| matches!((*c).contype, CONSTR_DEFAULT | CONSTR_GENERATED));
                    if has_default {
                        return false;
                    }
                }
                AT_AddConstraint
                    if is_a(def, pg_sys::NodeTag::T_Constraint) && (*(def as *mut pg_sys::Constraint)).contype == CONSTR_FOREIGN =>
                {
                    return false;
                }
                _ => {}
            }
        }
        true
    }
}

/// `strVal()` of a String (PostgreSQL 15+) or Value (13, 14) node.
pub(crate) unsafe fn str_val(node: *mut pg_sys::Node) -> String {
    unsafe {
        #[cfg(any(feature = "pg13", feature = "pg14"))]
        {
            cstr((*(node as *mut pg_sys::Value)).val.str_)
        }
        #[cfg(not(any(feature = "pg13", feature = "pg14")))]
        {
            cstr((*(node as *mut pg_sys::String)).sval)
        }
    }
}

#[allow(non_upper_case_globals)]
unsafe fn alter_table_cmd(
    rel: &OpenRel,
    cmd: *mut pg_sys::AlterTableCmd,
    text: &StatementText,
    sizes: Sizes,
    ctx: &mut AlterContext,
) -> Vec<AlterTableCmd> {
    use pg_sys::AlterTableType::*;
    unsafe {
        let def = (*cmd).def;
        match (*cmd).subtype {
            AT_AddConstraint if is_a(def, pg_sys::NodeTag::T_Constraint) => add_constraint(rel, def.cast(), None, text, sizes, ctx),
            AT_AddColumn if is_a(def, pg_sys::NodeTag::T_ColumnDef) => add_column(rel, def.cast(), text, sizes, ctx),
            AT_DropColumn => match columns::droppable_column(rel, (*cmd).name) {
                Some(_) => vec![AlterTableCmd::DropColumn { column: quote_ident(&cstr((*cmd).name)) }],
                // No such column (IF EXISTS), or one PostgreSQL refuses to drop: its own
                // NOTICE or ERROR says so.
                None => vec![AlterTableCmd::Other],
            },
            AT_ValidateConstraint => {
                use LockMode::*;
                let held = [AccessExclusive, Exclusive, ShareRowExclusive, Share]
                    .into_iter()
                    .find(|m| pg_sys::CheckRelationLockedByMe(rel.0, *m as pg_sys::LOCKMODE, false))
                    // check(): what the script's earlier statements in its current transaction
                    // would hold.
                    .max(script::held((*rel.0).rd_id).filter(|m| *m >= Share));
                // The scan runs under the strongest of what this transaction holds and what
                // this statement takes for all of its subcommands.
                let (held_lock, held_by) = match held {
                    Some(h) if h >= ctx.lock => (Some(h), LockHolder::Transaction),
                    _ if ctx.lock.blocks_reads_or_writes() => (Some(ctx.lock), LockHolder::ThisStatement),
                    h => (h, LockHolder::Transaction),
                };
                vec![AlterTableCmd::ValidateConstraint { constraint: quote_ident(&cstr((*cmd).name)), held_lock, held_by }]
            }
            AT_SetNotNull => match attribute(rel, cstr_bytes((*cmd).name)) {
                Some(att) => vec![set_not_null(rel, att, None)],
                None => vec![AlterTableCmd::Other],
            },
            AT_AlterColumnType if is_a(def, pg_sys::NodeTag::T_ColumnDef) => vec![alter_column_type(rel, (*cmd).name, def.cast())],
            AT_AttachPartition if is_a(def, pg_sys::NodeTag::T_PartitionCmd) => partitions::attach_partition(rel, def.cast(), text, sizes)
                .map_or_else(Vec::new, |a| vec![AlterTableCmd::AttachPartition(a)]),
            // Changing persistence to the one the table has already is a no-op (ATPrepChangePersistence).
            // A partitioned table has no storage: up to 17 the command changes nothing, 18
            // refuses it.
            AT_SetLogged
                if rel.form().relpersistence as u8 != pg_sys::RELPERSISTENCE_PERMANENT && rel.kind() != RelKind::PartitionedTable =>
            {
                vec![AlterTableCmd::Rewrite { action: "SET LOGGED" }]
            }
            AT_SetUnLogged
                if rel.form().relpersistence as u8 != pg_sys::RELPERSISTENCE_UNLOGGED && rel.kind() != RelKind::PartitionedTable =>
            {
                vec![AlterTableCmd::Rewrite { action: "SET UNLOGGED" }]
            }
            // Moving to the tablespace the table is in already does nothing (ATExecSetTableSpace);
            // a tablespace that does not exist, or pg_global, is PostgreSQL's error to report.
            AT_SetTableSpace => {
                let target = pg_sys::get_tablespace_oid((*cmd).name, true);
                // pg_class stores the database's default tablespace as 0.
                let current = match rel.form().reltablespace {
                    t if t == pg_sys::InvalidOid => pg_sys::MyDatabaseTableSpace,
                    t => t,
                };
                if target == current || target == pg_sys::InvalidOid || target == pg_sys::GLOBALTABLESPACE_OID {
                    vec![AlterTableCmd::Other]
                } else {
                    vec![AlterTableCmd::Rewrite { action: "SET TABLESPACE" }]
                }
            }
            #[cfg(not(any(feature = "pg13", feature = "pg14")))]
            AT_SetAccessMethod if set_access_method_rewrites(rel, (*cmd).name) => {
                vec![AlterTableCmd::Rewrite { action: "SET ACCESS METHOD" }]
            }
            #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16", feature = "pg17")))]
            AT_AlterConstraint if is_a(def, pg_sys::NodeTag::T_ATAlterConstraint) => {
                vec![enforce_foreign_key(rel, def.cast(), sizes)]
            }
            // ALTER COLUMN ... SET EXPRESSION (PostgreSQL 17+) recomputes a stored generated
            // column by rewriting the table (ATExecSetExpression: AT_REWRITE_COLUMN_REWRITE);
            // a virtual one (18+) only changes the catalog.
            #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16")))]
            AT_SetExpression
                if attribute(rel, cstr_bytes((*cmd).name)).is_some_and(|a| a.attgenerated as u8 == pg_sys::ATTRIBUTE_GENERATED_STORED) =>
            {
                vec![AlterTableCmd::Rewrite { action: "ALTER COLUMN ... SET EXPRESSION" }]
            }
            _ => vec![AlterTableCmd::Other],
        }
    }
}

/// Whether ALTER TABLE ... SET ACCESS METHOD rewrites the relation (ATPrepSetAccessMethod):
/// not when the target is the access method it has already (with `DEFAULT`, PostgreSQL 17+,
/// the target is `default_table_access_method`), nor on a partitioned table, which has no
/// storage (17+ changes only its catalog entry, ATExecSetAccessMethodNoStorage; 15 and 16
/// refuse the statement). An unknown access method is PostgreSQL's error to report.
#[cfg(not(any(feature = "pg13", feature = "pg14")))]
unsafe fn set_access_method_rewrites(rel: &OpenRel, amname: *const c_char) -> bool {
    if rel.kind() == RelKind::PartitionedTable {
        return false;
    }
    unsafe {
        let name = if amname.is_null() { pg_sys::default_table_access_method as *const c_char } else { amname };
        if name.is_null() {
            return false;
        }
        let target = pg_sys::get_table_am_oid(name, true);
        target != pg_sys::InvalidOid && target != rel.form().relam
    }
}

/// The parts of `ColumnDef.typeName` as written, lowercased (`serial`, or `pg_catalog.int4`).
unsafe fn type_name_parts(tn: *mut pg_sys::TypeName) -> Vec<String> {
    if tn.is_null() {
        return vec![];
    }
    unsafe { PgList::<pg_sys::Node>::from_pg((*tn).names).iter_ptr().map(|n| str_val(n).to_ascii_lowercase()).collect() }
}

/// ADD COLUMN: decides whether ATExecAddColumn will rewrite the table (its default cannot
/// be stored as the attribute's missing value) and collects the column's inline
/// constraints (REFERENCES, CHECK, UNIQUE, PRIMARY KEY) as their own commands.
unsafe fn add_column(
    rel: &OpenRel,
    def: *mut pg_sys::ColumnDef,
    text: &StatementText,
    sizes: Sizes,
    ctx: &mut AlterContext,
) -> Vec<AlterTableCmd> {
    use pg_sys::ConstrType::*;
    unsafe {
        // A column of that name exists (and is not dropped by this statement first), or the
        // type does not exist: PostgreSQL skips (IF NOT EXISTS) or refuses the statement.
        let name = cstr_bytes((*def).colname);
        let exists = attribute(rel, name).is_some() && !ctx.dropped.iter().any(|(d, _)| d.as_slice() == name);
        let serial_or_known = {
            let parts = type_name_parts((*def).typeName);
            (parts.len() == 1 && parts[0].contains("serial"))
                || pg_sys::LookupTypeNameOid(std::ptr::null_mut(), (*def).typeName, true) != pg_sys::InvalidOid
        };
        if exists || !serial_or_known {
            return vec![AlterTableCmd::Other];
        }
        let colname = cstr((*def).colname);
        let column = quote_ident(&colname);
        let mut out = Vec::new();
        let mut raw_default: *mut pg_sys::Node = (*def).raw_default;
        let mut not_null = (*def).is_not_null;
        let mut identity = (*def).identity != 0;
        let mut generated = (*def).generated != 0;
        // A generated column is written into every row only when STORED: always before
        // PostgreSQL 18, where VIRTUAL is the default (computed when read, no rewrite).
        let mut stored = generated;
        for con in PgList::<pg_sys::Constraint>::from_pg((*def).constraints).iter_ptr() {
            match (*con).contype {
                CONSTR_DEFAULT => raw_default = (*con).raw_expr,
                CONSTR_NOTNULL => not_null = true,
                CONSTR_IDENTITY => identity = true,
                CONSTR_GENERATED => {
                    generated = true;
                    stored = generated_stored(con);
                }
                CONSTR_FOREIGN | CONSTR_CHECK | CONSTR_PRIMARY | CONSTR_UNIQUE | CONSTR_EXCLUSION => {
                    out.extend(add_constraint(rel, con, Some(&colname), text, sizes, ctx))
                }
                _ => {}
            }
        }
        let mut default_sql = None;
        let parts = type_name_parts((*def).typeName);
        let serial =
            parts.len() == 1 && matches!(parts[0].as_str(), "smallserial" | "serial2" | "serial" | "serial4" | "bigserial" | "serial8");
        let (type_name, rewrite) = if serial {
            (
                match parts[0].as_str() {
                    "smallserial" | "serial2" => "smallint",
                    "serial" | "serial4" => "integer",
                    _ => "bigint",
                }
                .to_string(),
                Some(AddColumnRewrite::Serial),
            )
        } else {
            let mut typid = pg_sys::InvalidOid;
            let mut typmod: i32 = -1;
            pg_sys::typenameTypeIdAndMod(std::ptr::null_mut(), (*def).typeName, &mut typid, &mut typmod);
            let type_name = cstr(pg_sys::format_type_with_typemod(typid, typmod));
            let rewrite = if identity {
                Some(AddColumnRewrite::Identity)
            } else if stored {
                Some(AddColumnRewrite::GeneratedStored)
            } else if pg_sys::DomainHasConstraints(typid) {
                Some(AddColumnRewrite::DomainWithConstraints)
            } else if !raw_default.is_null() && {
                let (volatile, sql) = cooked_default(raw_default, typid, typmod, &colname);
                default_sql = sql;
                volatile
            } {
                Some(AddColumnRewrite::VolatileDefault)
            } else {
                None
            };
            (type_name, rewrite)
        };
        let has_default = !raw_default.is_null() || serial || identity || generated;
        // A PRIMARY KEY written on the new column makes it NOT NULL (transformIndexConstraint
        // sets is_not_null on a column defined in the same statement).
        let not_null =
            not_null || PgList::<pg_sys::Constraint>::from_pg((*def).constraints).iter_ptr().any(|c| (*c).contype == CONSTR_PRIMARY);
        // The dropped column is still there while the statement is judged: its facts are
        // read now, only when it is added back.
        let dropped_here = ctx.dropped.iter().position(|(name, _)| name.as_slice() == cstr_bytes((*def).colname));
        let replaces = match dropped_here.map(|i| ctx.dropped.remove(i)) {
            Some((_, attnum)) => PgTupleDesc::from_pg_unchecked((*rel.0).rd_att).get(attnum as usize - 1).map(|att| {
                let att = &*(att as *const pg_sys::FormData_pg_attribute);
                DroppedColumn {
                    type_name: cstr(pg_sys::format_type_with_typemod(att.atttypid, att.atttypmod)),
                    same_statement: true,
                    current: Some(Box::new(columns::column_facts(rel, att, &[]))),
                }
            }),
            None => match script::column_dropped((*rel.0).rd_id, cstr_bytes((*def).colname)) {
                // check(): dropped by an earlier statement of the script's current transaction;
                // the catalog still has the column as it was.
                Some(true) => catalog_attribute(rel, cstr_bytes((*def).colname)).map(|att| DroppedColumn {
                    type_name: cstr(pg_sys::format_type_with_typemod(att.atttypid, att.atttypmod)),
                    same_statement: false,
                    current: None,
                }),
                Some(false) => None,
                None => columns::dropped_in_this_transaction(rel, cstr_bytes((*def).colname)),
            },
        };
        out.insert(
            0,
            AlterTableCmd::AddColumn {
                column,
                type_name,
                rewrite,
                not_null_without_default: not_null && !has_default,
                default_sql,
                not_null,
                replaces,
            },
        );
        out
    }
}

/// Whether a `GENERATED ALWAYS AS (...)` column is stored: PostgreSQL 18 adds VIRTUAL
/// columns and makes them the default (gram.y `opt_virtual_or_stored`); before 18 every
/// generated column is stored.
unsafe fn generated_stored(con: *mut pg_sys::Constraint) -> bool {
    #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16", feature = "pg17"))]
    let _ = con;
    #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16", feature = "pg17"))]
    return true;
    #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16", feature = "pg17")))]
    return unsafe { (*con).generated_kind as u8 } == pg_sys::ATTRIBUTE_GENERATED_STORED;
}

/// Cooks the default the way ALTER TABLE will (cookDefault: transformExpr as a column
/// default, coercion to the column type, collations) and asks contain_volatile_functions —
/// ATExecAddColumn's own test for the missing-value fast path (StoreAttrDefault), which
/// PostgreSQL runs on the planned expression. Planning (`expression_planner`) folds
/// constants, which runs every immutable function with constant arguments: the guard plans
/// only expressions that call nothing but PostgreSQL's built-in functions
/// ([`calls_only_builtin_functions`]); an expression that calls a user's function is tested
/// unplanned — folding only ever removes function calls, so it is volatile planned only if
/// it is volatile unplanned, and a false alarm can only come from a volatile call that
/// constant folding would have removed (`CASE WHEN false THEN random() ...` beside a user's
/// function). Also returns the cooked default as SQL (`deparse_expression`), for the HINT.
unsafe fn cooked_default(raw: *mut pg_sys::Node, typid: pg_sys::Oid, typmod: i32, colname: &str) -> (bool, Option<String>) {
    unsafe {
        let pstate = pg_sys::make_parsestate(std::ptr::null_mut());
        let name = CString::new(colname).unwrap_or_default();
        let raw = pg_sys::copyObjectImpl(raw.cast()).cast();
        let cooked = pg_sys::cookDefault(pstate, raw, typid, typmod, name.as_ptr(), 0);
        if cooked.is_null() {
            return (false, None);
        }
        let sql = cstr(pg_sys::deparse_expression(cooked, std::ptr::null_mut(), false, false));
        let tested: *mut pg_sys::Node =
            if calls_only_builtin_functions(cooked) { pg_sys::expression_planner(cooked.cast()).cast() } else { cooked };
        (pg_sys::contain_volatile_functions(tested), Some(sql))
    }
}

/// Whether `expr` calls only functions built into PostgreSQL (created by initdb: oid below
/// FirstNormalObjectId), counting operators' functions, casts, type input/output functions
/// of I/O coercions and aggregates (`check_functions_in_node`, the test
/// contain_volatile_functions uses). Only then may the guard plan it: planning evaluates
/// immutable functions with constant arguments (eval_const_expressions), and judging must
/// never run a user's code — a function that fails or behaves differently the first time
/// would decide the verdict.
///
/// # Safety
/// `expr` is an analyzed expression tree, inside a transaction.
pub(crate) unsafe fn calls_only_builtin_functions(expr: *mut pg_sys::Node) -> bool {
    // One guarded boundary around the whole walk: an ERROR deep inside it (the stack depth
    // limit) longjmps straight back here, through walker frames that own nothing, and
    // becomes a Rust panic that the judging subtransaction catches. (A guard per level
    // would re-raise the error once per level, all the way down the stack.)
    unsafe { !pg_sys::ffi::pg_guard_ffi_boundary(|| raw::user_function_walker(expr, std::ptr::null_mut())) }
}

/// The walk behind [`calls_only_builtin_functions`], on PostgreSQL's functions declared
/// directly rather than through pgrx's guarded bindings: the walker is called back by
/// `expression_tree_walker` once per tree level, and its frames must hold nothing that
/// needs dropping, so that an ERROR may pass through them (plain old frames, Rust RFC 2945).
mod raw {
    use std::ffi::c_void;

    use pgrx::pg_sys::{Node, Oid};

    type Walker = Option<unsafe extern "C-unwind" fn(*mut Node, *mut c_void) -> bool>;
    type Checker = Option<unsafe extern "C-unwind" fn(Oid, *mut c_void) -> bool>;

    unsafe extern "C-unwind" {
        fn check_stack_depth();
        fn check_functions_in_node(node: *mut Node, checker: Checker, context: *mut c_void) -> bool;
        #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
        fn expression_tree_walker(node: *mut Node, walker: Walker, context: *mut c_void) -> bool;
        #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15")))]
        #[link_name = "expression_tree_walker_impl"]
        fn expression_tree_walker(node: *mut Node, walker: Walker, context: *mut c_void) -> bool;
    }

    unsafe extern "C-unwind" fn is_user_function(func: Oid, _context: *mut c_void) -> bool {
        u32::from(func) >= pgrx::pg_sys::FirstNormalObjectId
    }

    pub(super) unsafe extern "C-unwind" fn user_function_walker(node: *mut Node, context: *mut c_void) -> bool {
        unsafe {
            if node.is_null() {
                return false;
            }
            // As PostgreSQL's own walkers: a deep tree ends in "stack depth limit exceeded".
            check_stack_depth();
            if check_functions_in_node(node, Some(is_user_function), std::ptr::null_mut()) {
                return true;
            }
            expression_tree_walker(node, Some(user_function_walker), context)
        }
    }
}

unsafe fn add_constraint(
    rel: &OpenRel,
    con: *mut pg_sys::Constraint,
    inline_column: Option<&str>,
    text: &StatementText,
    sizes: Sizes,
    ctx: &AlterContext,
) -> Vec<AlterTableCmd> {
    use pg_sys::ConstrType::*;
    unsafe {
        let contype = (*con).contype;
        let relname = rel.relname();
        let named = !(*con).conname.is_null();
        // Key columns as written: the constraint's own list, or the inline column.
        let key_list = |list: *mut pg_sys::List| -> Vec<String> {
            match inline_column {
                Some(c) => vec![c.to_string()],
                None => PgList::<pg_sys::Node>::from_pg(list).iter_ptr().map(|n| str_val(n)).collect(),
            }
        };
        let suggested = |cols: &[String], suffix: &str| {
            let mut parts = vec![relname.as_str()];
            parts.extend(cols.iter().map(String::as_str));
            make_name(&parts, suffix)
        };
        let name_for = |cols: &[String], suffix: &str| {
            if named {
                quote_ident(&cstr((*con).conname))
            } else {
                suggested(cols, suffix)
            }
        };
        // The definition as written; an inline REFERENCES becomes a table constraint.
        let written = text.local((*con).location).and_then(|start| sqltext::constraint_clause(text.text, start)).map(|(_, d)| d);
        match contype {
            CONSTR_FOREIGN => {
                let cols = key_list((*con).fk_attrs);
                // A referenced table or a column that does not exist: PostgreSQL's error.
                let Some(pk_oid) = lookup((*con).pktable) else { return vec![AlterTableCmd::Other] };
                let pk_rel = OpenRel::new(pk_oid);
                let pk_cols_exist = PgList::<pg_sys::Node>::from_pg((*con).pk_attrs)
                    .iter_ptr()
                    .all(|n| pk_rel.as_ref().is_some_and(|r| attribute(r, str_val(n).as_bytes()).is_some()));
                if !pk_cols_exist || (inline_column.is_none() && !cols.iter().all(|c| ctx.has_column(rel, c.as_bytes()))) {
                    return vec![AlterTableCmd::Other];
                }
                let definition = match inline_column {
                    Some(c) => written.map(|d| format!("FOREIGN KEY ({}) {d}", quote_ident(c))),
                    None => written,
                };
                let constraint = NewConstraint { name: name_for(&cols, "fkey"), named, definition };
                let referenced = lookup((*con).pktable).and_then(|oid| relation(oid, Reach::Itself, sizes));
                // An inline REFERENCES on a new column that every row has NULL in is marked
                // valid without a scan (transformFKConstraints).
                let skipped = inline_column.is_some() && ctx.fk_skip_validation;
                vec![AlterTableCmd::AddForeignKey {
                    constraint,
                    referenced,
                    validates: !(*con).skip_validation && !skipped,
                    inline_column: inline_column.map(quote_ident),
                }]
            }
            CONSTR_CHECK => {
                let cols: Vec<String> = inline_column.map(|c| vec![c.to_string()]).unwrap_or_default();
                let constraint = NewConstraint { name: name_for(&cols, "check"), named, definition: written };
                vec![AlterTableCmd::AddCheck { constraint, validates: !(*con).skip_validation }]
            }
            CONSTR_PRIMARY | CONSTR_UNIQUE if (*con).indexname.is_null() => {
                let primary = contype == CONSTR_PRIMARY;
                let cols = key_list((*con).keys);
                if inline_column.is_none() && !cols.iter().all(|c| ctx.has_column(rel, c.as_bytes())) {
                    return vec![AlterTableCmd::Other];
                }
                let name = name_for(&cols, if primary { "pkey" } else { "key" });
                // transformIndexConstraint: a PRIMARY KEY adds SET NOT NULL for each key column
                // of the table that is not NOT NULL (an inline one is made NOT NULL by its ADD
                // COLUMN instead).
                let implicit: Vec<AlterTableCmd> = if primary && inline_column.is_none() {
                    cols.iter()
                        .filter_map(|c| attribute(rel, c.as_bytes()))
                        .map(|att| set_not_null(rel, att, Some(&name)))
                        .filter(|cmd| matches!(cmd, AlterTableCmd::SetNotNull { already_not_null: false, .. }))
                        .collect()
                } else {
                    vec![]
                };
                // Key columns PostgreSQL scans to set NOT NULL that no other finding reports: the
                // inline column and those the statement adds. (The table's own nullable key
                // columns get their implicit SET NOT NULL above, for adding-not-nullable-field.)
                let nullable_columns = if primary {
                    cols.iter()
                        .filter(|c| inline_column.is_some() || attribute(rel, c.as_bytes()).is_none())
                        .map(|c| quote_ident(c))
                        .collect()
                } else {
                    vec![]
                };
                // PostgreSQL 18: a key WITHOUT OVERLAPS (temporal PRIMARY KEY / UNIQUE) is
                // backed by a GiST index that is an exclusion constraint's (indisexclusion):
                // CREATE UNIQUE INDEX cannot build one (GiST has no unique indexes) and USING
                // INDEX cannot attach one, so it has the exclusion constraint's lack of an
                // online form.
                #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16", feature = "pg17")))]
                if (*con).without_overlaps {
                    let mut out = vec![AlterTableCmd::AddExclusion { constraint: NewConstraint { name, named, definition: written } }];
                    out.extend(implicit);
                    return out;
                }
                let columns = format!("({})", cols.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", "));
                let constraint = NewConstraint { name, named, definition: written };
                let mut out = vec![AlterTableCmd::AddUnique { constraint, primary, nullable_columns, columns }];
                out.extend(implicit);
                out
            }
            CONSTR_PRIMARY if !(*con).indexname.is_null() => {
                // ADD PRIMARY KEY USING INDEX: the key columns are the index's
                // (transformIndexConstraint), each set NOT NULL as above. A missing or
                // unsuitable index is PostgreSQL's error to report.
                let index_oid = pg_sys::get_relname_relid((*con).indexname, rel.form().relnamespace);
                let Some(index) = (index_oid != pg_sys::InvalidOid).then(|| OpenRel::new(index_oid)).flatten() else {
                    return vec![AlterTableCmd::Other];
                };
                if index.kind() != RelKind::Index || (*index.0).rd_index.is_null() {
                    return vec![AlterTableCmd::Other];
                }
                let name = if named { quote_ident(&cstr((*con).conname)) } else { quote_ident(&cstr((*con).indexname)) };
                let ix = &*(*index.0).rd_index;
                let keys = std::slice::from_raw_parts(ix.indkey.values.as_ptr(), ix.indnkeyatts.max(0) as usize);
                let desc = PgTupleDesc::from_pg_unchecked((*rel.0).rd_att);
                keys.iter()
                    .filter(|k| **k > 0)
                    .filter_map(|k| desc.get(*k as usize - 1))
                    .filter(|att| !att.attisdropped)
                    .map(|att| set_not_null(rel, &*(att as *const pg_sys::FormData_pg_attribute), Some(&name)))
                    .filter(|cmd| matches!(cmd, AlterTableCmd::SetNotNull { already_not_null: false, .. }))
                    .collect()
            }
            CONSTR_EXCLUSION => {
                let constraint = NewConstraint { name: name_for(&[], "excl"), named, definition: written };
                vec![AlterTableCmd::AddExclusion { constraint }]
            }
            // PostgreSQL 18: ADD [CONSTRAINT name] NOT NULL col scans the table for NULLs as
            // SET NOT NULL does (set_attnotnull, NotNullImpliedByRelConstraints); NOT VALID
            // skips the scan, VALIDATE CONSTRAINT then scans under SHARE UPDATE EXCLUSIVE.
            #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16", feature = "pg17")))]
            CONSTR_NOTNULL if inline_column.is_none() && !(*con).skip_validation => {
                match PgList::<pg_sys::String>::from_pg((*con).keys).get_ptr(0).and_then(|key| attribute(rel, cstr_bytes((*key).sval))) {
                    Some(att) => vec![set_not_null(rel, att, None)],
                    None => vec![AlterTableCmd::Other],
                }
            }
            _ => vec![AlterTableCmd::Other],
        }
    }
}

unsafe fn reindex(stmt: *mut pg_sys::ReindexStmt, text: &StatementText, sizes: Sizes) -> Option<Reindex> {
    use pg_sys::ReindexObjectType::*;
    unsafe {
        let target = match (*stmt).kind {
            REINDEX_OBJECT_INDEX => ReindexTarget::Index,
            REINDEX_OBJECT_TABLE => ReindexTarget::Table,
            REINDEX_OBJECT_SCHEMA => ReindexTarget::Schema,
            REINDEX_OBJECT_SYSTEM => ReindexTarget::System,
            _ => ReindexTarget::Database,
        };
        let concurrent = reindex_is_concurrent(stmt);
        let table = match target {
            ReindexTarget::Index => {
                let oid = lookup((*stmt).relation)?;
                let table_oid = pg_sys::IndexGetRelation(oid, true);
                (table_oid != pg_sys::InvalidOid).then(|| relation(table_oid, Reach::Partitions, sizes)).flatten()
            }
            ReindexTarget::Table => lookup((*stmt).relation).and_then(|oid| relation(oid, Reach::Partitions, sizes)),
            _ => None,
        };
        // SCHEMA, DATABASE, SYSTEM: the tables ReindexMultipleTables selects. A schema that
        // does not exist, or a database other than the current one, is PostgreSQL's error
        // (3F000, 0A000) to report: not judged.
        let tables = match target {
            ReindexTarget::Schema | ReindexTarget::Database | ReindexTarget::System if !concurrent => {
                catalog::reindexed_tables(target, (*stmt).name, sizes)?
            }
            _ => Vec::new(),
        };
        Some(Reindex { target, concurrent, table, tables, concurrent_sql: sqltext::add_reindex_concurrently(text.text) })
    }
}

/// `REINDEX (CONCURRENTLY)` / `REINDEX ... CONCURRENTLY` (an option DefElem since 14).
///
/// # Safety
/// `stmt` must be a valid ReindexStmt.
pub(crate) unsafe fn reindex_is_concurrent(stmt: *mut pg_sys::ReindexStmt) -> bool {
    unsafe {
        #[cfg(feature = "pg13")]
        {
            (*stmt).concurrent
        }
        #[cfg(not(feature = "pg13"))]
        {
            PgList::<pg_sys::DefElem>::from_pg((*stmt).params)
                .iter_ptr()
                .any(|d| cstr((*d).defname) == "concurrently" && pg_sys::defGetBoolean(d))
        }
    }
}

/// VACUUM with the FULL option; anything else is not judged.
unsafe fn vacuum_full(stmt: *mut pg_sys::VacuumStmt, sizes: Sizes) -> Statement {
    unsafe {
        if !vacuum_is_full(stmt) {
            return Statement::Other;
        }
        let rels = PgList::<pg_sys::VacuumRelation>::from_pg((*stmt).rels);
        if rels.is_empty() {
            return Statement::VacuumFull { tables: vec![], whole_database: true };
        }
        // Before PostgreSQL 18, VACUUM of a partitioned table processes its partitions and an
        // inheritance parent is processed alone; 18 processes every partition and inheritance
        // child unless ONLY is written (expand_vacuum_rel: include_children = relation->inh).
        #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16", feature = "pg17"))]
        let reach = |_: *mut pg_sys::RangeVar| Reach::Partitions;
        #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16", feature = "pg17")))]
        let reach = |rv: *mut pg_sys::RangeVar| if (*rv).inh { Reach::Inheritors } else { Reach::Itself };
        let tables =
            rels.iter_ptr().filter_map(|vr| lookup((*vr).relation).and_then(|oid| relation(oid, reach((*vr).relation), sizes))).collect();
        Statement::VacuumFull { tables, whole_database: false }
    }
}

/// `VACUUM (FULL [true])` / `VACUUM FULL`: the parser turns both into a DefElem "full".
///
/// # Safety
/// `stmt` must be a valid VacuumStmt.
pub unsafe fn vacuum_is_full(stmt: *mut pg_sys::VacuumStmt) -> bool {
    unsafe {
        (*stmt).is_vacuumcmd
            && PgList::<pg_sys::DefElem>::from_pg((*stmt).options)
                .iter_ptr()
                .any(|d| CStr::from_ptr((*d).defname).to_bytes() == b"full" && pg_sys::defGetBoolean(d))
    }
}

unsafe fn refresh(stmt: *mut pg_sys::RefreshMatViewStmt, sizes: Sizes) -> Statement {
    unsafe {
        let Some(oid) = lookup((*stmt).relation) else { return Statement::Other };
        let Some(rel) = OpenRel::new(oid) else { return Statement::Other };
        let populated = rel.form().relispopulated;
        let view = relation_of(&rel, Reach::Itself, sizes);
        let written_in_transaction = catalog::pg_class_row_written_in_transaction(oid);
        Statement::RefreshMatView {
            view,
            concurrent: (*stmt).concurrent,
            populated,
            with_no_data: (*stmt).skipData,
            written_in_transaction,
        }
    }
}

unsafe fn rename(stmt: *mut pg_sys::RenameStmt, sizes: Sizes) -> Statement {
    use pg_sys::ObjectType::*;
    unsafe {
        let new_name = quote_ident(&cstr((*stmt).newname));
        // Only tables are judged, whatever the statement's keyword: ALTER TABLE accepts an
        // index, a view or a sequence too (RangeVarCallbackForAlterRelation), and renaming one
        // of those is not flagged when ALTER INDEX / VIEW / SEQUENCE does it either. A column
        // that does not exist is PostgreSQL's error to report.
        let Some(rel) = lookup((*stmt).relation).and_then(|oid| OpenRel::new(oid)) else { return Statement::Other };
        if !matches!(rel.kind(), RelKind::Table | RelKind::PartitionedTable) {
            return Statement::Other;
        }
        match ((*stmt).renameType, (*stmt).relationType) {
            (OBJECT_COLUMN, OBJECT_TABLE) if attribute(&rel, cstr_bytes((*stmt).subname)).is_some() => Statement::RenameColumn {
                table: relation_of(&rel, Reach::Itself, sizes),
                column: quote_ident(&cstr((*stmt).subname)),
                new_name,
            },
            (OBJECT_TABLE, _) => Statement::RenameTable { table: relation_of(&rel, Reach::Itself, sizes), new_name },
            _ => Statement::Other,
        }
    }
}

/// The live attribute named `name` (its bytes, as the parser left them), if any.
///
/// While `check()` judges a script ([`crate::judging::script`]): a column an earlier
/// statement of the script drops is not there, and one it adds cannot be described (its
/// type, default and constraints are not in the catalog yet): the statement's verdict is
/// then `unknown`.
fn attribute<'a>(rel: &'a OpenRel, name: &[u8]) -> Option<&'a pg_sys::FormData_pg_attribute> {
    if script::active() {
        let oid = unsafe { (*rel.0).rd_id };
        if script::column_added(oid, name) {
            script::unknown(format!(
                "column {} of {} is added earlier in the script; the catalog cannot describe it yet",
                quote_ident(&String::from_utf8_lossy(name)),
                rel.qualified_name()
            ));
        }
        if script::column_dropped(oid, name).is_some() {
            return None;
        }
    }
    catalog_attribute(rel, name)
}

/// Whether `name` is a column of `rel`, in the catalog or added by an earlier statement of
/// the script `check()` judges (for the tests that only ask whether a statement's columns
/// exist, so that PostgreSQL would not refuse it).
fn column_known(rel: &OpenRel, name: &[u8]) -> bool {
    let oid = unsafe { (*rel.0).rd_id };
    script::column_added(oid, name) || (script::column_dropped(oid, name).is_none() && catalog_attribute(rel, name).is_some())
}

/// The attribute as the catalog has it.
fn catalog_attribute<'a>(rel: &'a OpenRel, name: &[u8]) -> Option<&'a pg_sys::FormData_pg_attribute> {
    let desc = unsafe { PgTupleDesc::from_pg_unchecked((*rel.0).rd_att) };
    let found = desc.iter().find(|a| !a.attisdropped && name_bytes(&a.attname) == name)?;
    // The descriptor belongs to the relcache entry, which outlives `desc`.
    Some(unsafe { &*(found as *const pg_sys::FormData_pg_attribute) })
}

unsafe fn make_column_var(att: &pg_sys::FormData_pg_attribute) -> *mut pg_sys::Var {
    unsafe { pg_sys::makeVar(1 as _, att.attnum, att.atttypid, att.atttypmod, att.attcollation, 0) }
}

/// SET NOT NULL of `att`, written (`primary_key` None) or implied by ADD PRIMARY KEY
/// `primary_key`: whether PostgreSQL will scan for NULLs (ATExecSetNotNull).
unsafe fn set_not_null(rel: &OpenRel, att: &pg_sys::FormData_pg_attribute, primary_key: Option<&str>) -> AlterTableCmd {
    unsafe {
        let column = String::from_utf8_lossy(name_bytes(&att.attname)).into_owned();
        let already_not_null = att.attnotnull && not_null_constraint_valid(rel, att);
        // NotNullImpliedByRelConstraints (tablecmds.c): does a valid CHECK constraint prove
        // "col IS NOT NULL"? PartConstraintImpliedByRelConstraint runs the same predicate
        // proof (ConstraintImpliedByRelConstraint) over the relation's valid constraints.
        let proven_by_check = !already_not_null && {
            let nt = pg_sys::palloc0(std::mem::size_of::<pg_sys::NullTest>()) as *mut pg_sys::NullTest;
            (*nt).xpr.type_ = pg_sys::NodeTag::T_NullTest;
            (*nt).arg = make_column_var(att).cast();
            (*nt).nulltesttype = pg_sys::NullTestType::IS_NOT_NULL;
            (*nt).argisrow = false;
            (*nt).location = -1;
            let list = pg_sys::lappend(std::ptr::null_mut(), nt.cast());
            pg_sys::PartConstraintImpliedByRelConstraint(rel.0, list)
        };
        AlterTableCmd::SetNotNull {
            column: quote_ident(&column),
            primary_key: primary_key.map(str::to_string),
            suggested_constraint: make_name(&[&rel.relname(), &column], "not_null"),
            already_not_null,
            proven_by_check,
        }
    }
}

/// ALTER CONSTRAINT name ENFORCED (PostgreSQL 18): on a foreign key that is NOT ENFORCED
/// now, PostgreSQL checks every existing row (ATExecAlterFKConstrEnforceability queues the
/// constraint for phase 3); anything else is `Other`.
#[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16", feature = "pg17")))]
unsafe fn enforce_foreign_key(rel: &OpenRel, alter: *mut pg_sys::ATAlterConstraint, sizes: Sizes) -> AlterTableCmd {
    unsafe {
        if !(*alter).alterEnforceability || !(*alter).is_enforced || (*alter).conname.is_null() {
            return AlterTableCmd::Other;
        }
        let name = cstr((*alter).conname);
        let relid = (*rel.0).rd_id;
        let found = crate::lockqueue::internal_query(|| {
            pgrx::Spi::connect(|client| {
                let rows = client.select(
                    &format!(
                        "SELECT confrelid, pg_catalog.pg_get_constraintdef(oid) FROM pg_catalog.pg_constraint \
                         WHERE conrelid = {} AND conname = $1 AND contype = 'f' AND NOT conenforced",
                        u32::from(relid)
                    ),
                    None,
                    &[name.as_str().into()],
                )?;
                let mut out = None;
                for row in rows {
                    out = Some((row.get::<pg_sys::Oid>(1)?, row.get::<String>(2)?));
                }
                Ok::<_, pgrx::spi::Error>(out)
            })
        });
        let Ok(Ok(Some((Some(confrelid), definition)))) = found else { return AlterTableCmd::Other };
        AlterTableCmd::EnforceForeignKey {
            constraint: quote_ident(&name),
            definition: definition.map(|d| d.replace(" NOT ENFORCED", "")),
            referenced: relation(confrelid, Reach::Itself, sizes),
        }
    }
}

/// Whether the not-null constraint of a column whose `attnotnull` is set is valid. Always
/// before PostgreSQL 18; from 18 on, `attnotnull` is set for a NOT VALID one too
/// (pg_attribute.h), SET NOT NULL then validates it with a scan (ATExecSetNotNull →
/// ATExecValidateConstraint), and the relcache tells which (CompactAttribute
/// `attnullability`, set by CheckNNConstraintFetch).
unsafe fn not_null_constraint_valid(rel: &OpenRel, att: &pg_sys::FormData_pg_attribute) -> bool {
    #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16", feature = "pg17"))]
    let _ = (rel, att);
    #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16", feature = "pg17"))]
    return true;
    #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16", feature = "pg17")))]
    unsafe {
        let desc = (*rel.0).rd_att;
        let i = usize::try_from(att.attnum - 1).unwrap_or(usize::MAX);
        if i >= usize::try_from((*desc).natts).unwrap_or(0) {
            return true;
        }
        (*(*desc).compact_attrs.as_ptr().add(i)).attnullability as u8 != pg_sys::ATTNULLABLE_INVALID
    }
}

/// `ALTER COLUMN col TYPE ... [USING ...]`: the new type and whether PostgreSQL rewrites the
/// table for it ([`type_change_rewrites`]).
unsafe fn alter_column_type(rel: &OpenRel, colname: *mut c_char, def: *mut pg_sys::ColumnDef) -> AlterTableCmd {
    unsafe {
        let column = cstr(colname);
        let Some(att) = attribute(rel, cstr_bytes(colname)) else { return AlterTableCmd::Other };
        if pg_sys::LookupTypeNameOid(std::ptr::null_mut(), (*def).typeName, true) == pg_sys::InvalidOid {
            // PostgreSQL's error: the type does not exist.
            return AlterTableCmd::Other;
        }
        let mut typid = pg_sys::InvalidOid;
        let mut typmod: i32 = -1;
        pg_sys::typenameTypeIdAndMod(std::ptr::null_mut(), (*def).typeName, &mut typid, &mut typmod);
        let mut new_type = cstr(pg_sys::format_type_with_typemod(typid, typmod));
        // ATPrepAlterColumnType: the column's new collation, the one written or the type's.
        let collation = pg_sys::GetColumnDefCollation(std::ptr::null_mut(), def, typid);
        if !(*def).collClause.is_null() && collation != pg_sys::InvalidOid {
            new_type = format!("{new_type} COLLATE {}", quote_ident(&cstr(pg_sys::get_collation_name(collation))));
        }

        // PostgreSQL 18: a virtual generated column stores no values, so changing its type
        // rewrites nothing (ATPrepAlterColumnType leaves tab->rewrite alone for it).
        #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16", feature = "pg17")))]
        let virtual_column = att.attgenerated as u8 == pg_sys::ATTRIBUTE_GENERATED_VIRTUAL;
        #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16", feature = "pg17"))]
        let virtual_column = false;
        let (rewrite, new_value_sql) = match rel.kind() {
            _ if virtual_column => (Some(false), None),
            RelKind::Table | RelKind::PartitionedTable => type_change_rewrites(rel, att, (*def).raw_default, typid, typmod),
            _ => (Some(false), None),
        };
        let rebuilt = if rewrite == Some(false) { columns::rebuilt_indexes(rel, att, typid, collation) } else { Vec::new() };
        let current = (rewrite == Some(true) || !rebuilt.is_empty()).then(|| {
            let oids: Vec<pg_sys::Oid> = rebuilt.iter().map(|(oid, _)| *oid).collect();
            let mut facts = columns::column_facts(rel, att, &oids);
            facts.new_value_sql = new_value_sql;
            Box::new(facts)
        });
        let rebuilt_indexes = rebuilt.into_iter().map(|(_, name)| name).collect();
        AlterTableCmd::AlterColumnType {
            column: quote_ident(&column),
            new_type,
            rewrite,
            suggested_new_column: make_name(&[&column], "new"),
            suggested_old_column: make_name(&[&column], "old"),
            rebuilt_indexes,
            current,
        }
    }
}

/// Builds the transform PostgreSQL builds (ATPrepAlterColumnType: the USING expression or
/// a Var of the column, coerce_to_target_type with COERCION_ASSIGNMENT, expression_planner)
/// and runs ATColumnChangeRequiresRewrite's test on it. `None` when the column cannot be
/// cast (PostgreSQL will refuse the statement with its own error).
///
/// A transform that calls a user's function is not planned (planning would run it, see
/// [`calls_only_builtin_functions`]) and counts as a rewrite: only a chain of relabelings
/// around the column itself is not one, and a user's function is not a relabeling.
///
/// Raises 55P03 when USING must be analyzed and another session holds a lock on the table
/// that conflicts with ACCESS SHARE: the guard does not queue for it, and without the
/// analysis the rewrite cannot be decided (a judging failure, `on_judging_error`).
unsafe fn type_change_rewrites(
    rel: &OpenRel,
    att: &pg_sys::FormData_pg_attribute,
    using: *mut pg_sys::Node,
    typid: pg_sys::Oid,
    typmod: i32,
) -> (Option<bool>, Option<String>) {
    unsafe {
        let pstate = pg_sys::make_parsestate(std::ptr::null_mut());
        let mut transform: *mut pg_sys::Node = if using.is_null() {
            make_column_var(att).cast()
        } else {
            // transformAlterTableStmt: the USING expression sees the table as range table
            // entry 1. Transform a copy: the parse tree may be read-only. The range table
            // entry wants the relation locked; take ACCESS SHARE only if it is free right now
            // (never queue), inside the judging subtransaction, whose rollback releases it.
            if !pg_sys::ConditionalLockRelationOid((*rel.0).rd_id, pg_sys::AccessShareLock as _) {
                pgrx::pg_sys::panic::ErrorReport::new(
                    pgrx::PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
                    format!(
                        "another session holds a lock on {} that keeps the USING expression from being analyzed without waiting",
                        rel.qualified_name()
                    ),
                    "pg_migration_guard",
                )
                .set_hint("Run the statement again when the other session's transaction has ended.")
                .report(pgrx::PgLogLevel::ERROR);
            }
            let nsitem =
                pg_sys::addRangeTableEntryForRelation(pstate, rel.0, pg_sys::AccessShareLock as _, std::ptr::null_mut(), false, true);
            pg_sys::addNSItemToQuery(pstate, nsitem, false, true, true);
            let raw = pg_sys::copyObjectImpl(using.cast()).cast();
            pg_sys::transformExpr(pstate, raw, pg_sys::ParseExprKind::EXPR_KIND_ALTER_COL_TRANSFORM)
        };
        transform = pg_sys::coerce_to_target_type(
            pstate,
            transform,
            pg_sys::exprType(transform),
            typid,
            typmod,
            pg_sys::CoercionContext::COERCION_ASSIGNMENT,
            pg_sys::CoercionForm::COERCE_IMPLICIT_CAST,
            -1,
        );
        if transform.is_null() {
            // PostgreSQL will refuse the statement ("cannot be cast automatically").
            return (None, None);
        }
        pg_sys::assign_expr_collations(pstate, transform);
        // The new value as SQL over the table's columns, for the HINT's backfill.
        let context = pg_sys::deparse_context_for(rel.form().relname.data.as_ptr(), (*rel.0).rd_id);
        let sql = Some(cstr(pg_sys::deparse_expression(transform, context, false, false)));
        if !calls_only_builtin_functions(transform) {
            return (Some(true), sql);
        }
        let planned = pg_sys::expression_planner(transform.cast()).cast();
        (Some(column_change_requires_rewrite(planned, att.attnum)), sql)
    }
}

/// ATColumnChangeRequiresRewrite (src/backend/commands/tablecmds.c), which is static
/// there: walks down the planned transform; only relabelings, coercions to domains without
/// constraints and timestamp<->timestamptz at UTC (12+) leave the stored bytes untouched.
unsafe fn column_change_requires_rewrite(mut expr: *mut pg_sys::Node, attnum: pg_sys::AttrNumber) -> bool {
    unsafe {
        loop {
            if expr.is_null() {
                return true;
            }
            if is_a(expr, pg_sys::NodeTag::T_Var) && (*(expr as *mut pg_sys::Var)).varattno == attnum {
                return false;
            } else if is_a(expr, pg_sys::NodeTag::T_RelabelType) {
                expr = (*(expr as *mut pg_sys::RelabelType)).arg.cast();
            } else if is_a(expr, pg_sys::NodeTag::T_CoerceToDomain) {
                let d = expr as *mut pg_sys::CoerceToDomain;
                if pg_sys::DomainHasConstraints((*d).resulttype) {
                    return true;
                }
                expr = (*d).arg.cast();
            } else if is_a(expr, pg_sys::NodeTag::T_FuncExpr) {
                let f = expr as *mut pg_sys::FuncExpr;
                let funcid = u32::from((*f).funcid);
                if funcid == pg_sys::F_TIMESTAMPTZ_TIMESTAMP || funcid == pg_sys::F_TIMESTAMP_TIMESTAMPTZ {
                    if pg_sys::TimestampTimestampTzRequiresRewrite() {
                        return true;
                    }
                    let args = PgList::<pg_sys::Node>::from_pg((*f).args);
                    match args.get_ptr(0) {
                        Some(a) => expr = a,
                        None => return true,
                    }
                } else {
                    return true;
                }
            } else {
                return true;
            }
        }
    }
}

/// The relation's relfilenode (its storage file), or `None` when it does not exist (any
/// more) or has no storage of its own (partitioned tables, views). A statement that
/// changed it rewrote the relation into a new file (table_relation_set_new_filelocator:
/// ALTER TABLE rewrites, VACUUM FULL, CLUSTER, TRUNCATE, REINDEX).
///
/// # Safety
/// Inside a valid transaction.
pub unsafe fn relfilenode(oid: pg_sys::Oid) -> Option<u32> {
    unsafe {
        let tuple = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::RELOID as i32, pg_sys::Datum::from(oid.to_u32()));
        if tuple.is_null() {
            return None;
        }
        let form = pg_sys::GETSTRUCT(tuple) as *const pg_sys::FormData_pg_class;
        let node = (*form).relfilenode.to_u32();
        pg_sys::ReleaseSysCache(tuple);
        (node != 0).then_some(node)
    }
}

/// Whether the current user has the privileges of the relation's owner (the test behind
/// PostgreSQL's "must be owner of table": object_ownercheck / pg_class_ownercheck;
/// superusers pass).
///
/// # Safety
/// Inside a valid transaction.
pub unsafe fn owned_by_current_user(oid: pg_sys::Oid) -> bool {
    unsafe {
        let tuple = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::RELOID as i32, pg_sys::Datum::from(oid.to_u32()));
        if tuple.is_null() {
            return false;
        }
        let owner = (*(pg_sys::GETSTRUCT(tuple) as *const pg_sys::FormData_pg_class)).relowner;
        pg_sys::ReleaseSysCache(tuple);
        pg_sys::has_privs_of_role(pg_sys::GetUserId(), owner)
    }
}

/// Whether the current user may run `command_tag` on the relation through the MAINTAIN
/// privilege without owning it: PostgreSQL 17 and later check MAINTAIN (pg_class_aclcheck
/// with ACL_MAINTAIN, which also grants it to pg_maintain's members) instead of ownership
/// for VACUUM, ANALYZE, CLUSTER, REINDEX, REFRESH MATERIALIZED VIEW and LOCK TABLE; for an
/// index, on its table (RangeVarCallbackForReindexIndex). Always false before 17.
///
/// # Safety
/// Inside a valid transaction.
pub unsafe fn maintain_allowed(oid: pg_sys::Oid, command_tag: &str) -> bool {
    #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16"))]
    let _ = (oid, command_tag);
    #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16"))]
    return false;
    #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16")))]
    unsafe {
        if !matches!(command_tag, "VACUUM" | "ANALYZE" | "CLUSTER" | "REINDEX" | "REFRESH MATERIALIZED VIEW" | "LOCK TABLE") {
            return false;
        }
        let table = match pg_sys::IndexGetRelation(oid, true) {
            t if t == pg_sys::InvalidOid => oid,
            t => t,
        };
        pg_sys::pg_class_aclcheck(table, pg_sys::GetUserId(), pg_sys::ACL_MAINTAIN as pg_sys::AclMode) == pg_sys::AclResult::ACLCHECK_OK
    }
}

#[cfg(test)]
mod tests {
    use super::segmented_file_bytes;

    /// A fork's files: their sizes by name (`None`: no such file).
    fn fork<'a>(files: &'a [(&'a str, u64)]) -> impl Fn(&str) -> Option<u64> + 'a {
        move |name| files.iter().find(|(n, _)| *n == name).map(|(_, len)| *len)
    }

    #[test]
    fn segments_are_summed_up_to_the_first_short_one() {
        assert_eq!(segmented_file_bytes("base/1/2", 10, fork(&[("base/1/2", 7)])), Some(7));
        assert_eq!(segmented_file_bytes("base/1/2", 10, fork(&[("base/1/2", 10), ("base/1/2.1", 10), ("base/1/2.2", 3)])), Some(23));
        // A full last segment: the next one is looked for and missing.
        assert_eq!(segmented_file_bytes("base/1/2", 10, fork(&[("base/1/2", 10), ("base/1/2.1", 10)])), Some(20));
        // Empty segments left behind a truncation (mdtruncate) end the count, as in mdnblocks.
        assert_eq!(segmented_file_bytes("base/1/2", 10, fork(&[("base/1/2", 10), ("base/1/2.1", 0), ("base/1/2.2", 0)])), Some(10));
        assert_eq!(segmented_file_bytes("base/1/2", 10, fork(&[("base/1/2", 0)])), Some(0));
    }

    #[test]
    fn a_missing_first_segment_is_unknown_not_zero() {
        assert_eq!(segmented_file_bytes("base/1/2", 10, fork(&[("base/1/2.1", 10)])), None);
    }
}

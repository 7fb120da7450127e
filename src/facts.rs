//! Facts layer: parse node + live catalog → plain Rust values ([`crate::model`]).
//!
//! Every `pg_sys` touch of the judging path lives here. Relations are looked up without
//! taking locks (`NoLock`): the guard must not queue behind anyone before PostgreSQL does,
//! and must not upgrade a lock the statement is about to take. The caller runs all of this
//! inside an internal subtransaction, so a catalog error (a relation dropped concurrently,
//! an unknown type) is caught there and never blocks the statement.

use std::ffi::{c_char, c_void, CStr, CString};

use pgrx::pg_sys;
use pgrx::{is_a, PgList, PgTupleDesc};

use crate::model::*;
use crate::sqltext;

// `find_all_inheritors` (src/include/catalog/pg_inherits.h) is not in pgrx's bindings;
// it is called through `pg_guard_ffi_boundary` like every binding pgrx generates.
unsafe extern "C-unwind" {
    #[link_name = "find_all_inheritors"]
    fn find_all_inheritors_raw(
        parent: pg_sys::Oid,
        lockmode: pg_sys::LOCKMODE,
        numparents: *mut *mut pg_sys::List,
    ) -> *mut pg_sys::List;
}

unsafe fn find_all_inheritors(parent: pg_sys::Oid) -> *mut pg_sys::List {
    unsafe {
        pg_sys::ffi::pg_guard_ffi_boundary(|| {
            find_all_inheritors_raw(parent, pg_sys::NoLock as _, std::ptr::null_mut())
        })
    }
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

/// Builds the facts for one utility statement.
///
/// # Safety
/// `node` must be a valid utility parse tree, called inside a transaction.
pub unsafe fn statement_facts(node: *mut pg_sys::Node, text: &StatementText) -> Statement {
    unsafe {
        if is_a(node, pg_sys::NodeTag::T_IndexStmt) {
            create_index(node.cast(), text).map_or(Statement::Other, Statement::CreateIndex)
        } else if is_a(node, pg_sys::NodeTag::T_DropStmt) {
            drop_index(node.cast()).map_or(Statement::Other, Statement::DropIndex)
        } else if is_a(node, pg_sys::NodeTag::T_AlterTableStmt) {
            alter_table(node.cast(), text).map_or(Statement::Other, Statement::AlterTable)
        } else {
            Statement::Other
        }
    }
}

unsafe fn cstr(p: *const c_char) -> String {
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
unsafe fn lookup(rv: *mut pg_sys::RangeVar) -> Option<pg_sys::Oid> {
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
struct OpenRel(pg_sys::Relation);

impl OpenRel {
    unsafe fn new(oid: pg_sys::Oid) -> Option<OpenRel> {
        let rel = unsafe { pg_sys::RelationIdGetRelation(oid) };
        (!rel.is_null()).then_some(OpenRel(rel))
    }
    fn form(&self) -> &pg_sys::FormData_pg_class {
        unsafe { &*(*self.0).rd_rel }
    }
    fn relname(&self) -> String {
        pgrx::name_data_to_str(&self.form().relname).to_string()
    }
    fn qualified_name(&self) -> String {
        unsafe {
            let nsp = pg_sys::get_namespace_name(self.form().relnamespace);
            let name = CString::new(self.relname()).unwrap_or_default();
            cstr(pg_sys::quote_qualified_identifier(nsp, name.as_ptr()))
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
    fn created_in_transaction(&self) -> bool {
        // 0 is InvalidSubTransactionId
        unsafe { (*self.0).rd_createSubid != 0 }
    }
    /// Main-fork bytes, from the actual block count (0 for relations without storage).
    fn size_bytes(&self) -> u64 {
        let k = self.form().relkind as u8;
        let has_storage = matches!(
            k,
            pg_sys::RELKIND_RELATION | pg_sys::RELKIND_MATVIEW | pg_sys::RELKIND_TOASTVALUE | pg_sys::RELKIND_INDEX
        );
        if !has_storage {
            return 0;
        }
        let blocks = unsafe { pg_sys::RelationGetNumberOfBlocksInFork(self.0, pg_sys::ForkNumber::MAIN_FORKNUM) };
        blocks as u64 * pg_sys::BLCKSZ as u64
    }
    fn reltuples(&self) -> Option<f64> {
        let t = self.form().reltuples as f64;
        (t >= 0.0).then_some(t)
    }
}

impl Drop for OpenRel {
    fn drop(&mut self) {
        unsafe { pg_sys::RelationClose(self.0) }
    }
}

/// The relation as the rules see it. With `recurse`, sizes and row estimates are summed
/// over every partition and inheritance child the statement will also process.
unsafe fn relation(oid: pg_sys::Oid, recurse: bool) -> Option<Relation> {
    let rel = unsafe { OpenRel::new(oid) }?;
    let mut out = Relation {
        name: rel.qualified_name(),
        kind: rel.kind(),
        created_in_transaction: rel.created_in_transaction(),
        size_bytes: rel.size_bytes(),
        estimated_rows: rel.reltuples(),
    };
    if recurse && rel.form().relhassubclass {
        let children = unsafe {
            PgList::<c_void>::from_pg(find_all_inheritors(oid))
        };
        for child in children.iter_oid().filter(|c| *c != oid) {
            if let Some(crel) = unsafe { OpenRel::new(child) } {
                out.size_bytes += crel.size_bytes();
                if let Some(t) = crel.reltuples() {
                    *out.estimated_rows.get_or_insert(0.0) += t;
                }
            }
        }
    }
    Some(out)
}

unsafe fn create_index(stmt: *mut pg_sys::IndexStmt, text: &StatementText) -> Option<CreateIndex> {
    unsafe {
        let rv = (*stmt).relation;
        let oid = lookup(rv)?;
        let table = relation(oid, (*rv).inh)?;
        Some(CreateIndex {
            table,
            concurrent: (*stmt).concurrent,
            concurrent_sql: sqltext::add_concurrently(text.text),
        })
    }
}

unsafe fn drop_index(stmt: *mut pg_sys::DropStmt) -> Option<DropIndex> {
    unsafe {
        if (*stmt).removeType != pg_sys::ObjectType::OBJECT_INDEX {
            return None;
        }
        let mut indexes = Vec::new();
        let objects = PgList::<pg_sys::List>::from_pg((*stmt).objects);
        for names in objects.iter_ptr() {
            let rv = pg_sys::makeRangeVarFromNameList(names);
            let Some(index_oid) = lookup(rv) else { continue };
            let Some(index) = OpenRel::new(index_oid) else { continue };
            let table_oid = pg_sys::IndexGetRelation(index_oid, true);
            if table_oid == pg_sys::InvalidOid {
                continue;
            }
            let Some(table) = relation(table_oid, false) else { continue };
            indexes.push(DroppedIndex {
                name: index.qualified_name(),
                created_in_transaction: index.created_in_transaction(),
                table,
            });
        }
        Some(DropIndex {
            concurrent: (*stmt).concurrent,
            if_exists: (*stmt).missing_ok,
            cascade: (*stmt).behavior == pg_sys::DropBehavior::DROP_CASCADE,
            indexes,
        })
    }
}

unsafe fn alter_table(stmt: *mut pg_sys::AlterTableStmt, text: &StatementText) -> Option<AlterTable> {
    unsafe {
        if (*stmt).objtype != pg_sys::ObjectType::OBJECT_TABLE {
            return None;
        }
        let rv = (*stmt).relation;
        let oid = lookup(rv)?;
        let rel = OpenRel::new(oid)?;
        let table = relation(oid, (*rv).inh)?;
        let lock = LockMode::from_pg(pg_sys::AlterTableGetLockLevel((*stmt).cmds)).unwrap_or(LockMode::AccessExclusive);
        let mut commands = Vec::new();
        if !table.created_in_transaction {
            for cmd in PgList::<pg_sys::AlterTableCmd>::from_pg((*stmt).cmds).iter_ptr() {
                commands.push(alter_table_cmd(&rel, cmd, text));
            }
        }
        Some(AlterTable { table, lock, commands })
    }
}

/// `strVal()` of a String (PostgreSQL 15+) or Value (13, 14) node.
unsafe fn str_val(node: *mut pg_sys::Node) -> String {
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

unsafe fn alter_table_cmd(rel: &OpenRel, cmd: *mut pg_sys::AlterTableCmd, text: &StatementText) -> AlterTableCmd {
    unsafe {
        match (*cmd).subtype {
            pg_sys::AlterTableType::AT_AddConstraint if is_a((*cmd).def, pg_sys::NodeTag::T_Constraint) => {
                add_constraint(rel, (*cmd).def.cast(), text)
            }
            pg_sys::AlterTableType::AT_SetNotNull => set_not_null(rel, (*cmd).name),
            pg_sys::AlterTableType::AT_AlterColumnType if is_a((*cmd).def, pg_sys::NodeTag::T_ColumnDef) => {
                alter_column_type(rel, (*cmd).name, (*cmd).def.cast())
            }
            _ => AlterTableCmd::Other,
        }
    }
}

unsafe fn add_constraint(rel: &OpenRel, con: *mut pg_sys::Constraint, text: &StatementText) -> AlterTableCmd {
    unsafe {
        let contype = (*con).contype;
        let is_fk = contype == pg_sys::ConstrType::CONSTR_FOREIGN;
        if !is_fk && contype != pg_sys::ConstrType::CONSTR_CHECK {
            return AlterTableCmd::Other;
        }
        let relname = rel.relname();
        let named = !(*con).conname.is_null();
        let name = if named {
            quote_ident(&cstr((*con).conname))
        } else if is_fk {
            let cols: Vec<String> = PgList::<pg_sys::Node>::from_pg((*con).fk_attrs).iter_ptr().map(|n| str_val(n)).collect();
            let mut parts = vec![relname.as_str()];
            parts.extend(cols.iter().map(String::as_str));
            make_name(&parts, "fkey")
        } else {
            make_name(&[&relname], "check")
        };
        let definition = text
            .local((*con).location)
            .and_then(|start| sqltext::constraint_clause(text.text, start))
            .map(|(_, def)| def);
        let constraint = NewConstraint { name, named, definition };
        let validates = !(*con).skip_validation;
        if is_fk {
            let referenced = lookup((*con).pktable).and_then(|oid| relation(oid, false));
            AlterTableCmd::AddForeignKey { constraint, referenced, validates }
        } else {
            AlterTableCmd::AddCheck { constraint, validates }
        }
    }
}

/// The live attribute named `name`, if any.
fn attribute<'a>(rel: &'a OpenRel, name: &str) -> Option<&'a pg_sys::FormData_pg_attribute> {
    let desc = unsafe { PgTupleDesc::from_pg_unchecked((*rel.0).rd_att) };
    let found = desc.iter().find(|a| !a.attisdropped && pgrx::name_data_to_str(&a.attname) == name)?;
    // The descriptor belongs to the relcache entry, which outlives `desc`.
    Some(unsafe { &*(found as *const pg_sys::FormData_pg_attribute) })
}

unsafe fn make_column_var(att: &pg_sys::FormData_pg_attribute) -> *mut pg_sys::Var {
    unsafe { pg_sys::makeVar(1 as _, att.attnum, att.atttypid, att.atttypmod, att.attcollation, 0) }
}

unsafe fn set_not_null(rel: &OpenRel, colname: *mut c_char) -> AlterTableCmd {
    unsafe {
        let column = cstr(colname);
        let Some(att) = attribute(rel, &column) else { return AlterTableCmd::Other };
        let already_not_null = att.attnotnull;
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
            suggested_constraint: make_name(&[&rel.relname(), &column], "not_null"),
            already_not_null,
            proven_by_check,
        }
    }
}

/// Decides whether `ALTER COLUMN col TYPE ... [USING ...]` rewrites the table by building
/// the same transform expression PostgreSQL builds (ATPrepAlterColumnType: the USING
/// expression or a Var of the column, coerce_to_target_type with COERCION_ASSIGNMENT,
/// expression_planner) and running ATColumnChangeRequiresRewrite's test on it.
unsafe fn alter_column_type(rel: &OpenRel, colname: *mut c_char, def: *mut pg_sys::ColumnDef) -> AlterTableCmd {
    unsafe {
        let column = cstr(colname);
        let Some(att) = attribute(rel, &column) else { return AlterTableCmd::Other };
        let mut typid = pg_sys::InvalidOid;
        let mut typmod: i32 = -1;
        pg_sys::typenameTypeIdAndMod(std::ptr::null_mut(), (*def).typeName, &mut typid, &mut typmod);
        let new_type = cstr(pg_sys::format_type_with_typemod(typid, typmod));

        let rewrite = match rel.kind() {
            RelKind::Table | RelKind::PartitionedTable => {
                let pstate = pg_sys::make_parsestate(std::ptr::null_mut());
                let mut transform: *mut pg_sys::Node = if (*def).raw_default.is_null() {
                    make_column_var(att).cast()
                } else {
                    // transformAlterTableStmt: the USING expression sees the table as range
                    // table entry 1. Transform a copy: the parse tree may be read-only.
                    let nsitem = pg_sys::addRangeTableEntryForRelation(
                        pstate,
                        rel.0,
                        pg_sys::AccessShareLock as _,
                        std::ptr::null_mut(),
                        false,
                        true,
                    );
                    pg_sys::addNSItemToQuery(pstate, nsitem, false, true, true);
                    let raw = pg_sys::copyObjectImpl((*def).raw_default.cast()).cast();
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
                    None
                } else {
                    pg_sys::assign_expr_collations(pstate, transform);
                    let planned = pg_sys::expression_planner(transform.cast()).cast();
                    Some(column_change_requires_rewrite(planned, att.attnum))
                }
            }
            _ => Some(false),
        };
        AlterTableCmd::AlterColumnType {
            column: quote_ident(&column),
            new_type,
            rewrite,
            suggested_new_column: make_name(&[&column], "new"),
            suggested_old_column: make_name(&[&column], "old"),
        }
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

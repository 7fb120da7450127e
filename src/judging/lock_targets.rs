//! Which table-level locks a statement will take: the relations and modes PostgreSQL's own
//! code takes for it, looked up without locking (`NoLock`), so the lock-queue protection
//! (`crate::lockqueue`) can take them first, and `require-lock-timeout` can judge them.
//!
//! The modes follow PostgreSQL 15's source (they are the same in 13–18 for these
//! statements) and the documentation's "Explicit Locking" / per-command pages:
//! - ALTER TABLE: `AlterTableGetLockLevel` (tablecmds.c) for the relation, and for the
//!   partitions and inheritance children it recurses to (unless ONLY); FOREIGN KEY: SHARE ROW
//!   EXCLUSIVE on the referenced table (ATAddForeignKeyConstraint); ATTACH PARTITION:
//!   ACCESS EXCLUSIVE on the partition; DETACH PARTITION: ACCESS EXCLUSIVE on the partition,
//!   SHARE UPDATE EXCLUSIVE with CONCURRENTLY; DROP CONSTRAINT of a foreign key: ACCESS
//!   EXCLUSIVE on the referenced table (its RI triggers are dropped, RemoveTriggerById).
//! - CREATE INDEX: SHARE on the table and each partition, SHARE UPDATE EXCLUSIVE with
//!   CONCURRENTLY (DefineIndex).
//! - DROP INDEX: ACCESS EXCLUSIVE on the table and the index, SHARE UPDATE EXCLUSIVE with
//!   CONCURRENTLY (RangeVarCallbackForDropRelation).
//! - DROP TABLE / VIEW / MATERIALIZED VIEW / FOREIGN TABLE / SEQUENCE: ACCESS EXCLUSIVE on the
//!   relation, its partitions, and the tables its foreign keys reference (their RI triggers
//!   are dropped). DROP TRIGGER / POLICY / RULE: ACCESS EXCLUSIVE on the table.
//! - RENAME: ACCESS EXCLUSIVE (an index: SHARE UPDATE EXCLUSIVE, RenameRelation); RENAME
//!   COLUMN also on the children it recurses to.
//! - CREATE TRIGGER: SHARE ROW EXCLUSIVE (and on each partition); CREATE/ALTER POLICY, CREATE
//!   RULE: ACCESS EXCLUSIVE.
//! - CREATE TABLE ... PARTITION OF: ACCESS EXCLUSIVE on the parent; INHERITS: SHARE UPDATE
//!   EXCLUSIVE on the parents; REFERENCES: SHARE ROW EXCLUSIVE on the referenced table.
//! - REINDEX INDEX: SHARE on the table, ACCESS EXCLUSIVE on the index; REINDEX TABLE: SHARE on
//!   the table and ACCESS EXCLUSIVE on each of its indexes; nothing that blocks reads or
//!   writes with CONCURRENTLY.
//! - VACUUM FULL, CLUSTER, REFRESH MATERIALIZED VIEW, TRUNCATE: ACCESS EXCLUSIVE (REFRESH ...
//!   CONCURRENTLY: EXCLUSIVE).
//!
//! Locks PostgreSQL takes that are not listed here (a default partition on ATTACH, tables
//! reached by CASCADE, catalogs) are not taken in advance; see `crate::lockqueue` for how
//! their waits are bounded.

use std::ffi::c_void;

use pgrx::pg_sys;
use pgrx::{is_a, PgList};

use crate::judging::facts::{cstr, find_all_inheritors, lookup, reindex_is_concurrent, vacuum_is_full, OpenRel};
use crate::model::{LockMode, LockRequest};

/// One lock the statement will take: the relation's oid and what the rules see.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub oid: pg_sys::Oid,
    pub request: LockRequest,
}

/// The targets in the order PostgreSQL takes them; one entry per relation, with the
/// strongest mode asked for.
#[derive(Default)]
struct Targets(Vec<Target>);

impl Targets {
    unsafe fn add(&mut self, oid: pg_sys::Oid, mode: LockMode) {
        if let Some(t) = self.0.iter_mut().find(|t| t.oid == oid) {
            t.request.mode = t.request.mode.max(mode);
            return;
        }
        let Some(rel) = (unsafe { OpenRel::new(oid) }) else { return };
        let request = LockRequest {
            relation: rel.qualified_name(),
            mode,
            created_in_transaction: rel.invisible_to_others(),
        };
        self.0.push(Target { oid, request });
    }

    /// Adds the relation and, when the statement recurses (`inh`, no ONLY), every partition
    /// and inheritance child, as `find_all_inheritors` lists them.
    unsafe fn add_tree(&mut self, oid: pg_sys::Oid, mode: LockMode, recurse: bool) {
        unsafe {
            self.add(oid, mode);
            let has_children = OpenRel::new(oid).is_some_and(|r| r.form().relhassubclass);
            if recurse && has_children {
                for child in PgList::<c_void>::from_pg(find_all_inheritors(oid)).iter_oid() {
                    self.add(child, mode);
                }
            }
        }
    }

    unsafe fn add_rv(&mut self, rv: *mut pg_sys::RangeVar, mode: LockMode, recurse: bool) -> Option<pg_sys::Oid> {
        unsafe {
            let oid = lookup(rv)?;
            self.add_tree(oid, mode, recurse && (*rv).inh);
            Some(oid)
        }
    }

    /// SHARE ROW EXCLUSIVE on the table a FOREIGN KEY constraint references.
    unsafe fn add_references(&mut self, con: *mut pg_sys::Constraint) {
        unsafe {
            if (*con).contype == pg_sys::ConstrType::CONSTR_FOREIGN {
                self.add_rv((*con).pktable, LockMode::ShareRowExclusive, false);
            }
        }
    }

    unsafe fn add_column_references(&mut self, def: *mut pg_sys::ColumnDef) {
        unsafe {
            for con in PgList::<pg_sys::Constraint>::from_pg((*def).constraints).iter_ptr() {
                self.add_references(con);
            }
        }
    }

    /// ACCESS EXCLUSIVE on the tables the relation's foreign keys reference (`drop_fk`:
    /// only the constraint of that name), whose RI triggers a DROP removes.
    unsafe fn add_fk_referenced(&mut self, oid: pg_sys::Oid, drop_fk: Option<&str>) {
        unsafe {
            let Some(rel) = OpenRel::new(oid) else { return };
            let fks = PgList::<pg_sys::ForeignKeyCacheInfo>::from_pg(pg_sys::RelationGetFKeyList(rel.0));
            let referenced: Vec<pg_sys::Oid> = fks
                .iter_ptr()
                .filter(|fk| (**fk).confrelid != oid)
                .filter(|fk| drop_fk.is_none_or(|name| cstr(pg_sys::get_constraint_name((**fk).conoid)) == name))
                .map(|fk| (*fk).confrelid)
                .collect();
            drop(rel);
            for r in referenced {
                self.add(r, LockMode::AccessExclusive);
            }
        }
    }
}

/// The table-level locks `node` will take, strongest mode per relation, in the order
/// PostgreSQL takes them. Relations that do not exist are left out (the statement itself
/// reports them).
///
/// # Safety
/// `node` must be a valid utility parse tree; called inside a transaction.
pub unsafe fn lock_targets(node: *mut pg_sys::Node) -> Vec<Target> {
    use pg_sys::NodeTag::*;
    use LockMode::*;
    let mut t = Targets::default();
    unsafe {
        match (*node).type_ {
            T_AlterTableStmt => alter_table(&mut t, node.cast()),
            T_IndexStmt => {
                let stmt = node as *mut pg_sys::IndexStmt;
                let mode = if (*stmt).concurrent { ShareUpdateExclusive } else { Share };
                t.add_rv((*stmt).relation, mode, true);
            }
            T_DropStmt => drop_stmt(&mut t, node.cast()),
            T_RenameStmt => rename(&mut t, node.cast()),
            T_CreateTrigStmt => {
                t.add_rv((*(node as *mut pg_sys::CreateTrigStmt)).relation, ShareRowExclusive, true);
            }
            T_CreatePolicyStmt => {
                t.add_rv((*(node as *mut pg_sys::CreatePolicyStmt)).table, AccessExclusive, false);
            }
            T_AlterPolicyStmt => {
                t.add_rv((*(node as *mut pg_sys::AlterPolicyStmt)).table, AccessExclusive, false);
            }
            T_RuleStmt => {
                t.add_rv((*(node as *mut pg_sys::RuleStmt)).relation, AccessExclusive, false);
            }
            T_CreateStmt => create_table(&mut t, node.cast()),
            T_ReindexStmt => reindex(&mut t, node.cast()),
            T_VacuumStmt if vacuum_is_full(node.cast()) => {
                for vr in PgList::<pg_sys::VacuumRelation>::from_pg((*(node as *mut pg_sys::VacuumStmt)).rels).iter_ptr() {
                    t.add_rv((*vr).relation, AccessExclusive, false);
                }
            }
            T_ClusterStmt => {
                let rv = (*(node as *mut pg_sys::ClusterStmt)).relation;
                if !rv.is_null() {
                    t.add_rv(rv, AccessExclusive, false);
                }
            }
            T_RefreshMatViewStmt => {
                let stmt = node as *mut pg_sys::RefreshMatViewStmt;
                t.add_rv((*stmt).relation, if (*stmt).concurrent { Exclusive } else { AccessExclusive }, false);
            }
            T_TruncateStmt => {
                for rv in PgList::<pg_sys::RangeVar>::from_pg((*(node as *mut pg_sys::TruncateStmt)).relations).iter_ptr() {
                    t.add_rv(rv, AccessExclusive, true);
                }
            }
            _ => {}
        }
    }
    t.0
}

#[allow(non_upper_case_globals)] // bindgen constants: AT_AttachPartition, ...
unsafe fn alter_table(t: &mut Targets, stmt: *mut pg_sys::AlterTableStmt) {
    use pg_sys::AlterTableType::*;
    unsafe {
        let mode = LockMode::from_pg(pg_sys::AlterTableGetLockLevel((*stmt).cmds)).unwrap_or(LockMode::AccessExclusive);
        let Some(oid) = t.add_rv((*stmt).relation, mode, true) else { return };
        for cmd in PgList::<pg_sys::AlterTableCmd>::from_pg((*stmt).cmds).iter_ptr() {
            let def = (*cmd).def;
            match (*cmd).subtype {
                AT_AttachPartition if !def.is_null() => {
                    t.add_rv((*(def as *mut pg_sys::PartitionCmd)).name, LockMode::AccessExclusive, false);
                }
                AT_DetachPartition if !def.is_null() => {
                    #[cfg(feature = "pg13")]
                    let concurrent = false;
                    #[cfg(not(feature = "pg13"))]
                    let concurrent = (*(def as *mut pg_sys::PartitionCmd)).concurrent;
                    let mode = if concurrent { LockMode::ShareUpdateExclusive } else { LockMode::AccessExclusive };
                    t.add_rv((*(def as *mut pg_sys::PartitionCmd)).name, mode, false);
                }
                AT_DropConstraint if !(*cmd).name.is_null() => {
                    t.add_fk_referenced(oid, Some(&cstr((*cmd).name)));
                }
                _ if def.is_null() => {}
                _ if is_a(def, pg_sys::NodeTag::T_Constraint) => t.add_references(def.cast()),
                _ if is_a(def, pg_sys::NodeTag::T_ColumnDef) => t.add_column_references(def.cast()),
                _ => {}
            }
        }
    }
}

unsafe fn drop_stmt(t: &mut Targets, stmt: *mut pg_sys::DropStmt) {
    use pg_sys::ObjectType::*;
    unsafe {
        let objects = PgList::<pg_sys::List>::from_pg((*stmt).objects);
        match (*stmt).removeType {
            OBJECT_INDEX => {
                let mode = if (*stmt).concurrent { LockMode::ShareUpdateExclusive } else { LockMode::AccessExclusive };
                for names in objects.iter_ptr() {
                    let Some(index) = lookup(pg_sys::makeRangeVarFromNameList(names)) else { continue };
                    let table = pg_sys::IndexGetRelation(index, true);
                    if table != pg_sys::InvalidOid {
                        t.add(table, mode);
                    }
                    t.add(index, mode);
                }
            }
            OBJECT_TABLE | OBJECT_VIEW | OBJECT_MATVIEW | OBJECT_FOREIGN_TABLE | OBJECT_SEQUENCE => {
                for names in objects.iter_ptr() {
                    let Some(oid) = lookup(pg_sys::makeRangeVarFromNameList(names)) else { continue };
                    let partitioned = pg_sys::get_rel_relkind(oid) as u8 == pg_sys::RELKIND_PARTITIONED_TABLE;
                    t.add_tree(oid, LockMode::AccessExclusive, partitioned);
                    t.add_fk_referenced(oid, None);
                }
            }
            OBJECT_TRIGGER | OBJECT_POLICY | OBJECT_RULE => {
                // Each object is the table's name list followed by the object's name.
                for names in objects.iter_ptr() {
                    let n = PgList::<c_void>::from_pg(names).len();
                    if n < 2 {
                        continue;
                    }
                    let table = pg_sys::list_truncate(pg_sys::list_copy(names), (n - 1) as i32);
                    t.add_rv(pg_sys::makeRangeVarFromNameList(table), LockMode::AccessExclusive, false);
                }
            }
            _ => {}
        }
    }
}

unsafe fn rename(t: &mut Targets, stmt: *mut pg_sys::RenameStmt) {
    use pg_sys::ObjectType::*;
    unsafe {
        let rv = (*stmt).relation;
        if rv.is_null() {
            return;
        }
        match (*stmt).renameType {
            OBJECT_INDEX => {
                t.add_rv(rv, LockMode::ShareUpdateExclusive, false);
            }
            OBJECT_TABLE | OBJECT_VIEW | OBJECT_MATVIEW | OBJECT_FOREIGN_TABLE | OBJECT_SEQUENCE | OBJECT_TABCONSTRAINT
            | OBJECT_TRIGGER | OBJECT_POLICY | OBJECT_RULE => {
                t.add_rv(rv, LockMode::AccessExclusive, false);
            }
            OBJECT_COLUMN | OBJECT_ATTRIBUTE => {
                t.add_rv(rv, LockMode::AccessExclusive, true);
            }
            _ => {}
        }
    }
}

unsafe fn create_table(t: &mut Targets, stmt: *mut pg_sys::CreateStmt) {
    unsafe {
        let parent_mode = if (*stmt).partbound.is_null() { LockMode::ShareUpdateExclusive } else { LockMode::AccessExclusive };
        for parent in PgList::<pg_sys::RangeVar>::from_pg((*stmt).inhRelations).iter_ptr() {
            t.add_rv(parent, parent_mode, false);
        }
        for elt in PgList::<pg_sys::Node>::from_pg((*stmt).tableElts)
            .iter_ptr()
            .chain(PgList::<pg_sys::Node>::from_pg((*stmt).constraints).iter_ptr())
        {
            if is_a(elt, pg_sys::NodeTag::T_Constraint) {
                t.add_references(elt.cast());
            } else if is_a(elt, pg_sys::NodeTag::T_ColumnDef) {
                t.add_column_references(elt.cast());
            }
        }
    }
}

unsafe fn reindex(t: &mut Targets, stmt: *mut pg_sys::ReindexStmt) {
    use pg_sys::ReindexObjectType::*;
    unsafe {
        if reindex_is_concurrent(stmt) {
            return;
        }
        match (*stmt).kind {
            REINDEX_OBJECT_INDEX => {
                let Some(index) = lookup((*stmt).relation) else { return };
                let table = pg_sys::IndexGetRelation(index, true);
                if table != pg_sys::InvalidOid {
                    t.add(table, LockMode::Share);
                }
                t.add(index, LockMode::AccessExclusive);
            }
            REINDEX_OBJECT_TABLE => {
                let Some(table) = t.add_rv((*stmt).relation, LockMode::Share, false) else { return };
                let Some(rel) = OpenRel::new(table) else { return };
                let indexes: Vec<pg_sys::Oid> = PgList::<c_void>::from_pg(pg_sys::RelationGetIndexList(rel.0)).iter_oid().collect();
                drop(rel);
                for index in indexes {
                    t.add(index, LockMode::AccessExclusive);
                }
            }
            _ => {}
        }
    }
}

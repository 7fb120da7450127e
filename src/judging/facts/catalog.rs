//! Facts that need a scan of a catalog: the tables a REINDEX SCHEMA / DATABASE / SYSTEM, a
//! bare CLUSTER or an ALL IN TABLESPACE move reaches, the typed tables of a composite type,
//! and whether this transaction wrote a relation's pg_class row. Each scan mirrors the one
//! PostgreSQL runs for the statement, without taking its locks.

use std::ffi::c_char;

use pgrx::pg_sys;
use pgrx::PgList;

use super::{alter_column_type, cstr, lookup, relation, relation_of, OpenRel, Reach, Sizes};
use crate::model::{AlterTable, AlterTableCmd, LockMode, ReindexTarget, Relation, Statement};

/// Calls `each` on every row of catalog `catalog` that matches the equality `keys`
/// (attribute number of the catalog, equality function, value), through `index` when one is
/// given, with `snapshot` (null: the catalog snapshot) — `systable_beginscan`, as
/// PostgreSQL's own catalog lookups read them (src/backend/access/index/genam.c; it maps
/// the catalog's attribute numbers to the index's columns itself).
pub(super) unsafe fn scan_catalog(
    catalog: pg_sys::Oid,
    index: Option<pg_sys::Oid>,
    snapshot: pg_sys::Snapshot,
    keys: &[(u32, u32, pg_sys::Datum)],
    mut each: impl FnMut(pg_sys::HeapTuple),
) {
    unsafe {
        let rel = pg_sys::table_open(catalog, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let mut scan_keys: Vec<pg_sys::ScanKeyData> = keys
            .iter()
            .map(|(attnum, proc_, value)| {
                let mut k = pg_sys::ScanKeyData::default();
                pg_sys::ScanKeyInit(
                    &mut k,
                    *attnum as pg_sys::AttrNumber,
                    pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
                    pg_sys::Oid::from(*proc_),
                    *value,
                );
                k
            })
            .collect();
        let scan = pg_sys::systable_beginscan(
            rel,
            index.unwrap_or(pg_sys::InvalidOid),
            index.is_some(),
            snapshot,
            scan_keys.len() as i32,
            scan_keys.as_mut_ptr(),
        );
        loop {
            let tuple = pg_sys::systable_getnext(scan);
            if tuple.is_null() {
                break;
            }
            each(tuple);
        }
        pg_sys::systable_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
    }
}

/// The pg_class rows matching `keys` (see [`scan_catalog`]): oid and the fixed columns.
unsafe fn pg_class_rows(keys: &[(u32, u32, pg_sys::Datum)]) -> Vec<pg_sys::FormData_pg_class> {
    let mut rows = Vec::new();
    unsafe {
        scan_catalog(pg_sys::RelationRelationId, None, std::ptr::null_mut(), keys, |t| {
            rows.push(*(pg_sys::GETSTRUCT(t) as *const pg_sys::FormData_pg_class))
        });
    }
    rows
}

/// REINDEX SCHEMA / DATABASE / SYSTEM `name`: the tables and materialized views
/// ReindexMultipleTables (src/backend/commands/indexcmds.c) selects, without its permission
/// checks: relkind r or m, not another session's temporary table, for SYSTEM only system
/// catalogs (IsSystemClass), for DATABASE no system catalogs from PostgreSQL 16 on, a shared
/// catalog only for its owner. `None` when PostgreSQL will
/// refuse the statement itself: a schema that does not exist (3F000), a database other than
/// the current one (0A000).
///
/// # Safety
/// Inside a transaction; `name` a valid C string or null.
pub(super) unsafe fn reindexed_tables(target: ReindexTarget, name: *const c_char, sizes: Sizes) -> Option<Vec<Relation>> {
    unsafe {
        let keys = match target {
            ReindexTarget::Schema => {
                let nsp = pg_sys::get_namespace_oid(name, true);
                if nsp == pg_sys::InvalidOid {
                    return None;
                }
                vec![(pg_sys::Anum_pg_class_relnamespace, pg_sys::F_OIDEQ, pg_sys::Datum::from(nsp))]
            }
            _ => {
                let current = pg_sys::get_database_name(pg_sys::MyDatabaseId);
                if !name.is_null() && !current.is_null() && cstr(name) != cstr(current) {
                    return None;
                }
                vec![]
            }
        };
        let user = pg_sys::GetUserId();
        let mut out = Vec::new();
        for row in pg_class_rows(&keys) {
            let kind = row.relkind as u8;
            if kind != pg_sys::RELKIND_RELATION && kind != pg_sys::RELKIND_MATVIEW {
                continue;
            }
            if row.relpersistence as u8 == pg_sys::RELPERSISTENCE_TEMP && !pg_sys::isTempNamespace(row.relnamespace) {
                continue;
            }
            let mut form = row;
            if target == ReindexTarget::System && !pg_sys::IsSystemClass(row.oid, &mut form) {
                continue;
            }
            // REINDEX DATABASE leaves the system catalogs out since PostgreSQL 16
            // (ReindexMultipleTables: IsCatalogRelationOid); REINDEX SYSTEM does them.
            #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15")))]
            if target == ReindexTarget::Database && pg_sys::IsCatalogRelationOid(row.oid) {
                continue;
            }
            if row.relisshared && !may_maintain(row.oid, user) {
                continue;
            }
            out.extend(relation(row.oid, Reach::Itself, sizes));
        }
        Some(out)
    }
}

/// Whether `user` may CLUSTER or REINDEX the relation as one of many that a bare CLUSTER or a
/// REINDEX SCHEMA/DATABASE/SYSTEM lists: the relation's owner up to PostgreSQL 16
/// (pg_class_ownercheck, object_ownercheck from 16), a holder of the MAINTAIN privilege from
/// 17 on (src/backend/commands/cluster.c, cluster_is_permitted_for_relation;
/// src/backend/commands/indexcmds.c, ReindexMultipleTables).
///
/// # Safety
/// Inside a transaction.
unsafe fn may_maintain(oid: pg_sys::Oid, user: pg_sys::Oid) -> bool {
    #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
    return unsafe { pg_sys::pg_class_ownercheck(oid, user) };
    #[cfg(feature = "pg16")]
    return unsafe { pg_sys::object_ownercheck(pg_sys::RelationRelationId, oid, user) };
    #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16")))]
    return unsafe { pg_sys::pg_class_aclcheck(oid, user, pg_sys::ACL_MAINTAIN as pg_sys::AclMode) == pg_sys::AclResult::ACLCHECK_OK };
}

/// A bare CLUSTER: the tables it reclusters, each with an index marked clustered that the
/// user may maintain ([`may_maintain`]; src/backend/commands/cluster.c, get_tables_to_cluster).
///
/// # Safety
/// Inside a transaction.
pub(super) unsafe fn clustered_tables(sizes: Sizes) -> Vec<Relation> {
    unsafe {
        let mut tables = Vec::new();
        scan_catalog(
            pg_sys::IndexRelationId,
            None,
            std::ptr::null_mut(),
            &[(pg_sys::Anum_pg_index_indisclustered, pg_sys::F_BOOLEQ, pg_sys::Datum::from(true))],
            |t| tables.push((*(pg_sys::GETSTRUCT(t) as *const pg_sys::FormData_pg_index)).indrelid),
        );
        let user = pg_sys::GetUserId();
        tables.into_iter().filter(|oid| may_maintain(*oid, user)).filter_map(|oid| relation(oid, Reach::Itself, sizes)).collect()
    }
}

/// CLUSTER table [USING index]: whether the index PostgreSQL will use exists — the one named
/// (in the table's schema), or, without USING, an index of the table marked clustered
/// (cluster.c: "there is no previously clustered index for table").
///
/// # Safety
/// `rv` a valid RangeVar, `indexname` a valid C string or null, inside a transaction.
pub(super) unsafe fn cluster_index_exists(rv: *mut pg_sys::RangeVar, indexname: *const c_char) -> bool {
    unsafe {
        let Some(table) = lookup(rv).and_then(|oid| OpenRel::new(oid)) else { return false };
        if !indexname.is_null() {
            return pg_sys::get_relname_relid(indexname, table.form().relnamespace) != pg_sys::InvalidOid;
        }
        PgList::<std::ffi::c_void>::from_pg(pg_sys::RelationGetIndexList(table.0))
            .iter_oid()
            .filter_map(|oid| OpenRel::new(oid))
            .any(|i| (*i.0).rd_index.as_ref().is_some_and(|ix| ix.indisclustered))
    }
}

/// ALTER TABLE / INDEX / MATERIALIZED VIEW ALL IN TABLESPACE a [OWNED BY ...] SET
/// TABLESPACE b: the relations AlterTableMoveAll (src/backend/commands/tablecmds.c) moves —
/// in tablespace a, of the statement's kind, not in pg_catalog, not shared, not temporary, not
/// TOAST, owned by one of the roles when OWNED BY is given. Not judged when PostgreSQL refuses
/// the statement (a tablespace that does not exist, pg_global) or does nothing (a equals b).
///
/// # Safety
/// `stmt` must be a valid AlterTableMoveAllStmt, inside a transaction.
pub(super) unsafe fn move_all(stmt: *mut pg_sys::AlterTableMoveAllStmt, sizes: Sizes) -> Statement {
    use pg_sys::ObjectType::*;
    unsafe {
        let (kind, relkinds): (&'static str, &[u8]) = match (*stmt).objtype {
            OBJECT_TABLE => ("TABLE", &[pg_sys::RELKIND_RELATION, pg_sys::RELKIND_PARTITIONED_TABLE]),
            OBJECT_INDEX => ("INDEX", &[pg_sys::RELKIND_INDEX, pg_sys::RELKIND_PARTITIONED_INDEX]),
            OBJECT_MATVIEW => ("MATERIALIZED VIEW", &[pg_sys::RELKIND_MATVIEW]),
            _ => return Statement::Other,
        };
        let orig = pg_sys::get_tablespace_oid((*stmt).orig_tablespacename, true);
        let new = pg_sys::get_tablespace_oid((*stmt).new_tablespacename, true);
        if orig == pg_sys::InvalidOid
            || new == pg_sys::InvalidOid
            || orig == pg_sys::GLOBALTABLESPACE_OID
            || new == pg_sys::GLOBALTABLESPACE_OID
        {
            return Statement::Other;
        }
        // pg_class stores the database's default tablespace as 0.
        let stored = |t: pg_sys::Oid| if t == pg_sys::MyDatabaseTableSpace { pg_sys::InvalidOid } else { t };
        let (orig, new) = (stored(orig), stored(new));
        if orig == new {
            return Statement::Other;
        }
        let mut roles = Vec::new();
        for spec in PgList::<pg_sys::RoleSpec>::from_pg((*stmt).roles).iter_ptr() {
            match pg_sys::get_rolespec_oid(spec, true) {
                r if r == pg_sys::InvalidOid => return Statement::Other,
                r => roles.push(r),
            }
        }
        let relations = pg_class_rows(&[(pg_sys::Anum_pg_class_reltablespace, pg_sys::F_OIDEQ, pg_sys::Datum::from(orig))])
            .into_iter()
            .filter(|row| {
                !pg_sys::IsCatalogNamespace(row.relnamespace)
                    && !row.relisshared
                    && !pg_sys::isAnyTempNamespace(row.relnamespace)
                    && !pg_sys::IsToastNamespace(row.relnamespace)
                    && relkinds.contains(&(row.relkind as u8))
                    && (roles.is_empty() || roles.contains(&row.relowner))
            })
            .filter_map(|row| relation(row.oid, Reach::Itself, sizes))
            .collect();
        Statement::MoveAllToTablespace { kind, relations }
    }
}

/// ALTER TYPE composite ALTER ATTRIBUTE a TYPE t CASCADE: an ALTER COLUMN TYPE on every typed
/// table of the type (ATTypedTableRecursion, with find_typed_table_dependencies' scan of
/// pg_class by reloftype), under ACCESS EXCLUSIVE. Without CASCADE PostgreSQL refuses the
/// statement when typed tables exist; other subcommands are not judged.
///
/// # Safety
/// `stmt` must be a valid AlterTableStmt on OBJECT_TYPE, inside a transaction.
pub(super) unsafe fn alter_composite_type(stmt: *mut pg_sys::AlterTableStmt, sizes: Sizes) -> Statement {
    use pg_sys::AlterTableType::*;
    unsafe {
        let Some(ty) = lookup((*stmt).relation).and_then(|oid| OpenRel::new(oid)) else { return Statement::Other };
        if ty.form().relkind as u8 != pg_sys::RELKIND_COMPOSITE_TYPE {
            return Statement::Other;
        }
        let cmds: Vec<*mut pg_sys::AlterTableCmd> = PgList::<pg_sys::AlterTableCmd>::from_pg((*stmt).cmds)
            .iter_ptr()
            .filter(|c| {
                (**c).subtype == AT_AlterColumnType
                    && (**c).behavior == pg_sys::DropBehavior::DROP_CASCADE
                    && pgrx::is_a((**c).def, pg_sys::NodeTag::T_ColumnDef)
            })
            .collect();
        if cmds.is_empty() {
            return Statement::Other;
        }
        let typed = pg_class_rows(&[(pg_sys::Anum_pg_class_reloftype, pg_sys::F_OIDEQ, pg_sys::Datum::from(ty.form().reltype))]);
        let mut tables = Vec::new();
        for row in typed {
            let Some(rel) = OpenRel::new(row.oid) else { continue };
            let commands: Vec<AlterTableCmd> = cmds.iter().map(|c| alter_column_type(&rel, (**c).name, (**c).def.cast())).collect();
            tables.push(AlterTable { table: relation_of(&rel, Reach::Itself, sizes), lock: LockMode::AccessExclusive, commands });
        }
        Statement::AlterCompositeType { type_name: ty.qualified_name(), tables }
    }
}

/// Whether this transaction wrote relation `oid`'s pg_class row: the row version it sees has
/// one of the transaction's ids as xmin (REFRESH ... WITH NO DATA, ALTER, ... earlier in it).
/// Other sessions still see the committed version.
///
/// # Safety
/// Inside a transaction.
pub(super) unsafe fn pg_class_row_written_in_transaction(oid: pg_sys::Oid) -> bool {
    unsafe {
        let tuple = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::RELOID as i32, pg_sys::Datum::from(oid));
        if tuple.is_null() {
            return false;
        }
        let written = pg_sys::TransactionIdIsCurrentTransactionId((*(*tuple).t_data).t_choice.t_heap.t_xmin);
        pg_sys::ReleaseSysCache(tuple);
        written
    }
}

//! Facts about one column: what it has (for the expand/contract HINT), which indexes an
//! ALTER COLUMN TYPE without a rewrite still rebuilds, whether PostgreSQL will drop it, and
//! whether a column of a given name was dropped earlier in this transaction.

use std::ffi::{c_char, c_void};

use pgrx::pg_sys;
use pgrx::{PgList, PgTupleDesc};

use super::{attribute, cstr, cstr_bytes, name_bytes, quote_ident, OpenRel};
use crate::model::{ColumnFacts, DroppedColumn, IndexFacts, RelKind};

// `has_partition_attrs` (src/include/catalog/partition.h) is not in pgrx's bindings.
unsafe extern "C-unwind" {
    #[link_name = "has_partition_attrs"]
    fn has_partition_attrs_raw(rel: pg_sys::Relation, attnums: *mut pg_sys::Bitmapset, used_in_expr: *mut bool) -> bool;
}

/// The attribute number as a member of a Bitmapset of attribute numbers (offset by
/// FirstLowInvalidHeapAttributeNumber, as pull_varattnos and has_partition_attrs use).
fn bms_attnum(attnum: pg_sys::AttrNumber) -> i32 {
    i32::from(attnum) - pg_sys::FirstLowInvalidHeapAttributeNumber
}

/// The column `name` when ALTER TABLE ... DROP COLUMN will drop it: it exists, and none of
/// ATExecDropColumn's refusals applies (src/backend/commands/tablecmds.c: only tables, not a
/// typed table's column, not an inherited column, not a partition key column). `None` leaves
/// the statement to PostgreSQL's own NOTICE (IF EXISTS) or ERROR.
///
/// # Safety
/// Inside a transaction; `name` a valid C string or null.
pub(super) unsafe fn droppable_column(rel: &OpenRel, name: *mut c_char) -> Option<&pg_sys::FormData_pg_attribute> {
    unsafe {
        if !matches!(rel.kind(), RelKind::Table | RelKind::PartitionedTable) || rel.form().reloftype != pg_sys::InvalidOid {
            return None;
        }
        let att = attribute(rel, cstr_bytes(name))?;
        if att.attinhcount > 0 {
            return None;
        }
        if rel.kind() == RelKind::PartitionedTable {
            let attrs = pg_sys::bms_make_singleton(bms_attnum(att.attnum));
            let in_key = pg_sys::ffi::pg_guard_ffi_boundary(|| has_partition_attrs_raw(rel.0, attrs, std::ptr::null_mut()));
            if in_key {
                return None;
            }
        }
        Some(att)
    }
}

/// `pg_get_indexdef(index)` / `pg_get_constraintdef(constraint)`: the SQL-callable functions,
/// called directly.
unsafe fn definition(f: unsafe fn(pg_sys::FunctionCallInfo) -> pg_sys::Datum, oid: pg_sys::Oid) -> Option<String> {
    unsafe { pgrx::direct_function_call::<String>(f, &[Some(pg_sys::Datum::from(oid))]) }
}

/// Deparses a stored expression (`pg_node_tree` text: a default's adbin, a CHECK's ccbin)
/// over the relation's columns, as pg_get_expr does.
unsafe fn deparse_stored(rel: &OpenRel, stored: *const c_char) -> String {
    unsafe {
        let node = pg_sys::stringToNode(stored);
        let context = pg_sys::deparse_context_for(rel.form().relname.data.as_ptr(), (*rel.0).rd_id);
        cstr(pg_sys::deparse_expression(node.cast(), context, false, false))
    }
}

/// Whether `expr` (an expression over varno 1) uses attribute `attnum`.
unsafe fn uses_attnum(expr: *mut pg_sys::Node, attnum: pg_sys::AttrNumber) -> bool {
    unsafe {
        if expr.is_null() {
            return false;
        }
        let mut attrs: *mut pg_sys::Bitmapset = std::ptr::null_mut();
        pg_sys::pull_varattnos(expr, 1, &mut attrs);
        pg_sys::bms_is_member(bms_attnum(attnum), attrs)
    }
}

/// The indexes of `rel` that use column `attnum` (key or INCLUDE column, expression or
/// predicate), open, with whether they have expressions or a predicate.
unsafe fn indexes_using(rel: &OpenRel, attnum: pg_sys::AttrNumber) -> Vec<(OpenRel, bool)> {
    unsafe {
        let mut out = Vec::new();
        for oid in PgList::<c_void>::from_pg(pg_sys::RelationGetIndexList(rel.0)).iter_oid() {
            let Some(index) = OpenRel::new(oid) else { continue };
            if (*index.0).rd_index.is_null() {
                continue;
            }
            let ix = &*(*index.0).rd_index;
            let keys = std::slice::from_raw_parts(ix.indkey.values.as_ptr(), ix.indnatts.max(0) as usize);
            let exprs = pg_sys::RelationGetIndexExpressions(index.0);
            let pred = pg_sys::RelationGetIndexPredicate(index.0);
            let has_exprs = !exprs.is_null() || !pred.is_null();
            if keys.contains(&attnum) || uses_attnum(exprs.cast(), attnum) || uses_attnum(pred.cast(), attnum) {
                out.push((index, has_exprs));
            }
        }
        out
    }
}

/// What column `att` of `rel` has, read from the catalog through the relcache: NOT NULL, the
/// default, the indexes and the CHECK and FOREIGN KEY constraints that use it, the foreign
/// keys of other tables that reference it, and a column to batch a backfill by.
///
/// # Safety
/// Inside a transaction; `att` an attribute of `rel`.
pub(super) unsafe fn column_facts(rel: &OpenRel, att: &pg_sys::FormData_pg_attribute, rebuilt: &[pg_sys::Oid]) -> ColumnFacts {
    unsafe {
        let relid = (*rel.0).rd_id;
        let attnum = att.attnum;
        let mut facts = ColumnFacts {
            type_name: cstr(pg_sys::format_type_with_typemod(att.atttypid, att.atttypmod)),
            not_null: att.attnotnull,
            batch_key: "ctid".to_string(),
            ..ColumnFacts::default()
        };
        let constr = (*(*rel.0).rd_att).constr;
        if !constr.is_null() {
            let c = &*constr;
            if !c.defval.is_null() {
                for d in std::slice::from_raw_parts(c.defval, c.num_defval as usize) {
                    if d.adnum == attnum && !d.adbin.is_null() {
                        facts.default_sql = Some(deparse_stored(rel, d.adbin));
                    }
                }
            }
            if !c.check.is_null() {
                for check in std::slice::from_raw_parts(c.check, c.num_check as usize) {
                    if !check.ccbin.is_null() && uses_attnum(pg_sys::stringToNode(check.ccbin).cast(), attnum) {
                        facts.constraints.push((quote_ident(&cstr(check.ccname)), format!("CHECK ({})", deparse_stored(rel, check.ccbin))));
                    }
                }
            }
        }
        for fk in PgList::<pg_sys::ForeignKeyCacheInfo>::from_pg(pg_sys::RelationGetFKeyList(rel.0)).iter_ptr() {
            let fk = &*fk;
            if fk.conkey[..fk.nkeys.max(0) as usize].contains(&attnum) {
                if let Some(def) = definition(pg_sys::pg_get_constraintdef, fk.conoid) {
                    // A constraint not validated yet is written with NOT VALID: the route adds
                    // it NOT VALID itself.
                    let def = def.strip_suffix(" NOT VALID").map(str::to_string).unwrap_or(def);
                    facts.constraints.push((quote_ident(&cstr(pg_sys::get_constraint_name(fk.conoid))), def));
                }
            }
        }
        for (index, has_expressions) in indexes_using(rel, attnum) {
            let ix = &*(*index.0).rd_index;
            let oid = (*index.0).rd_id;
            let constraint_oid = pg_sys::get_index_constraint(oid);
            let constraint = if constraint_oid == pg_sys::InvalidOid || ix.indisexclusion {
                None
            } else {
                let kind = if ix.indisprimary { "PRIMARY KEY" } else { "UNIQUE" };
                Some((quote_ident(&cstr(pg_sys::get_constraint_name(constraint_oid))), kind))
            };
            if let Some(def) = definition(pg_sys::pg_get_indexdef, oid) {
                facts.indexes.push(IndexFacts {
                    name: quote_ident(&index.relname()),
                    qualified_name: index.qualified_name(),
                    definition: def,
                    constraint,
                    has_expressions,
                    rebuilt: rebuilt.contains(&oid),
                });
            }
        }
        // The single-column primary key, to batch by.
        for oid in PgList::<c_void>::from_pg(pg_sys::RelationGetIndexList(rel.0)).iter_oid() {
            let Some(index) = OpenRel::new(oid) else { continue };
            let Some(ix) = (*index.0).rd_index.as_ref() else { continue };
            if ix.indisprimary && ix.indnkeyatts == 1 {
                let key = *ix.indkey.values.as_ptr();
                let desc = PgTupleDesc::from_pg_unchecked((*rel.0).rd_att);
                if let Some(k) = (key > 0).then(|| desc.get(key as usize - 1)).flatten() {
                    facts.batch_key = quote_ident(&String::from_utf8_lossy(name_bytes(&k.attname)));
                }
            }
        }
        // Foreign keys of other tables (and of this one) that reference the column.
        let referencing = pg_sys::heap_truncate_find_FKs(pg_sys::lappend_oid(std::ptr::null_mut(), relid));
        for other in PgList::<c_void>::from_pg(referencing).iter_oid() {
            let Some(orel) = OpenRel::new(other) else { continue };
            for fk in PgList::<pg_sys::ForeignKeyCacheInfo>::from_pg(pg_sys::RelationGetFKeyList(orel.0)).iter_ptr() {
                let fk = &*fk;
                if fk.confrelid == relid && fk.confkey[..fk.nkeys.max(0) as usize].contains(&attnum) {
                    facts.referenced_by.push(format!(
                        "{}.{}",
                        orel.qualified_name(),
                        quote_ident(&cstr(pg_sys::get_constraint_name(fk.conoid)))
                    ));
                }
            }
        }
        facts
    }
}

/// IsPolymorphicType (src/include/catalog/pg_type.h).
fn is_polymorphic(t: pg_sys::Oid) -> bool {
    use pg_sys::*;
    [
        ANYELEMENTOID,
        ANYARRAYOID,
        ANYNONARRAYOID,
        ANYENUMOID,
        ANYRANGEOID,
        ANYMULTIRANGEOID,
        ANYCOMPATIBLEOID,
        ANYCOMPATIBLEARRAYOID,
        ANYCOMPATIBLENONARRAYOID,
        ANYCOMPATIBLERANGEOID,
        ANYCOMPATIBLEMULTIRANGEOID,
    ]
    .contains(&t)
}

/// The indexes (oid, qualified name) that ALTER COLUMN TYPE without a rewrite rebuilds: every
/// index that uses the column is re-created from its definition (ATPostAlterTypeCleanup)
/// and keeps its storage only when CheckIndexCompatible (src/backend/commands/indexcmds.c)
/// accepts it (TryReuseIndex). Mirrored here on the catalog as it is before the change:
/// - an index with expressions or a predicate, or an invalid one, is rebuilt;
/// - each key column that is this column gets the operator class and collation the re-created
///   definition gives it: pg_get_indexdef writes the operator class only when it is not the
///   default for the old type (get_opclass_name), and COLLATE only when it differs from the
///   old column's collation, so an unwritten one becomes the new type's default operator
///   class (GetDefaultOpClass) and the new column's collation (ComputeIndexAttrs);
/// - a different operator class or collation, or a polymorphic operator class whose stored
///   type changes, means a rebuild.
///
/// # Safety
/// Inside a transaction; `att` an attribute of `rel`.
pub(super) unsafe fn rebuilt_indexes(
    rel: &OpenRel,
    att: &pg_sys::FormData_pg_attribute,
    new_type: pg_sys::Oid,
    new_collation: pg_sys::Oid,
) -> Vec<(pg_sys::Oid, String)> {
    unsafe {
        let mut out = Vec::new();
        for (index, has_exprs) in indexes_using(rel, att.attnum) {
            let ix = &*(*index.0).rd_index;
            let rebuilt = has_exprs || !ix.indisvalid || {
                let mut isnull = false;
                let d = pg_sys::SysCacheGetAttr(
                    pg_sys::SysCacheIdentifier::INDEXRELID as i32,
                    (*index.0).rd_indextuple,
                    pg_sys::Anum_pg_index_indclass as pg_sys::AttrNumber,
                    &mut isnull,
                );
                let nkeys = ix.indnkeyatts.max(0) as usize;
                let keys = std::slice::from_raw_parts(ix.indkey.values.as_ptr(), nkeys);
                let classes = if isnull {
                    &[][..]
                } else {
                    std::slice::from_raw_parts((*(d.cast_mut_ptr::<pg_sys::oidvector>())).values.as_ptr(), nkeys)
                };
                let collations = std::slice::from_raw_parts((*index.0).rd_indcollation, nkeys);
                let am = index.form().relam;
                let index_desc = PgTupleDesc::from_pg_unchecked((*index.0).rd_att);
                isnull
                    || keys.iter().enumerate().any(|(i, k)| {
                        if *k != att.attnum {
                            return false;
                        }
                        let old_class = classes[i];
                        let new_class = if pg_sys::GetDefaultOpClass(att.atttypid, am) == old_class {
                            pg_sys::GetDefaultOpClass(new_type, am)
                        } else {
                            old_class
                        };
                        let old_coll = collations[i];
                        let new_coll = if old_coll == att.attcollation { new_collation } else { old_coll };
                        let polymorphic_change = new_class != pg_sys::InvalidOid
                            && is_polymorphic(pg_sys::get_opclass_input_type(new_class))
                            && index_desc.get(i).is_none_or(|a| a.atttypid != new_type);
                        new_class != old_class || new_coll != old_coll || polymorphic_change
                    })
            };
            if rebuilt {
                out.push(((*index.0).rd_id, index.qualified_name()));
            }
        }
        out
    }
}

/// A column named `name` that existed before this transaction and was dropped in it: the
/// relation has a dropped attribute whose current pg_attribute row this transaction wrote
/// (its xmin is one of the transaction's ids), and among the row versions of that attribute
/// number (read with SnapshotAny: the versions a drop replaces stay until the transaction
/// ends) one is not dropped, was replaced by this transaction (xmax), was written before it
/// (xmin not one of its ids: the attribute existed, committed, before), and bears `name`.
/// An attribute number is never reused while its dropped attribute exists, so these
/// versions all describe the same column.
///
/// # Safety
/// Inside a transaction.
pub(super) unsafe fn dropped_in_this_transaction(rel: &OpenRel, name: &[u8]) -> Option<DroppedColumn> {
    unsafe {
        let relid = (*rel.0).rd_id;
        let desc = PgTupleDesc::from_pg_unchecked((*rel.0).rd_att);
        let dropped: Vec<pg_sys::AttrNumber> = desc.iter().filter(|a| a.attisdropped).map(|a| a.attnum).collect();
        for attnum in dropped {
            let tuple =
                pg_sys::SearchSysCache2(pg_sys::SysCacheIdentifier::ATTNUM as i32, pg_sys::Datum::from(relid), pg_sys::Datum::from(attnum));
            if tuple.is_null() {
                continue;
            }
            let dropped_now = pg_sys::TransactionIdIsCurrentTransactionId(xmin(tuple));
            pg_sys::ReleaseSysCache(tuple);
            if !dropped_now {
                continue;
            }
            if let Some(type_name) = version_before_drop(relid, attnum, name) {
                return Some(DroppedColumn { type_name, same_statement: false, current: None });
            }
        }
        None
    }
}

/// The raw xmin of a heap tuple.
unsafe fn xmin(tuple: pg_sys::HeapTuple) -> pg_sys::TransactionId {
    unsafe { (*(*tuple).t_data).t_choice.t_heap.t_xmin }
}

/// The type (`format_type`) of the version of attribute `attnum` of `relid` described in
/// [`dropped_in_this_transaction`] when its name is `name`.
unsafe fn version_before_drop(relid: pg_sys::Oid, attnum: pg_sys::AttrNumber, name: &[u8]) -> Option<String> {
    unsafe {
        let mut found = None;
        super::catalog::scan_catalog(
            pg_sys::AttributeRelationId,
            Some(pg_sys::Oid::from(pg_sys::AttributeRelidNumIndexId)),
            &raw mut pg_sys::SnapshotAnyData,
            &[
                (pg_sys::Anum_pg_attribute_attrelid, pg_sys::F_OIDEQ, pg_sys::Datum::from(relid)),
                (pg_sys::Anum_pg_attribute_attnum, pg_sys::F_INT2EQ, pg_sys::Datum::from(attnum)),
            ],
            |tuple| {
                let header = &*(*tuple).t_data;
                let form = &*(pg_sys::GETSTRUCT(tuple) as *const pg_sys::FormData_pg_attribute);
                let infomask = u32::from(header.t_infomask);
                if form.attisdropped || infomask & (pg_sys::HEAP_XMAX_IS_MULTI | pg_sys::HEAP_XMAX_LOCK_ONLY) != 0 {
                    return;
                }
                let (xmin, xmax) = (header.t_choice.t_heap.t_xmin, header.t_choice.t_heap.t_xmax);
                if pg_sys::TransactionIdIsCurrentTransactionId(xmax)
                    && !pg_sys::TransactionIdIsCurrentTransactionId(xmin)
                    && name_bytes(&form.attname) == name
                {
                    found = Some(cstr(pg_sys::format_type_with_typemod(form.atttypid, form.atttypmod)));
                }
            },
        );
        found
    }
}

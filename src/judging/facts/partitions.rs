//! ATTACH PARTITION and CREATE TABLE ... PARTITION OF: which relations PostgreSQL scans to
//! check a partition constraint, decided with its own functions and its own proof
//! (src/backend/commands/tablecmds.c ATExecAttachPartition and
//! QueuePartitionConstraintValidation; src/backend/partitioning/partbounds.c
//! check_default_partition_contents; PartConstraintImpliedByRelConstraint).

use std::ffi::c_void;

use pgrx::pg_sys;
use pgrx::{is_a, PgList, PgTupleDesc};

use super::{cstr, lookup, make_name, relation, relation_of, OpenRel, Reach, Sizes, StatementText};
use crate::model::{AttachPartition, CreatePartition, PartitionScan, RelKind, Statement};
use crate::sqltext;
use crate::subxact;

// Not in pgrx's bindings (src/include/parser/parse_utilcmd.h, partitioning/partbounds.h,
// catalog/partition.h, utils/partcache.h); called through pg_guard_ffi_boundary like every
// binding pgrx generates.
unsafe extern "C-unwind" {
    #[link_name = "transformPartitionBound"]
    fn transform_partition_bound_raw(
        pstate: *mut pg_sys::ParseState,
        parent: pg_sys::Relation,
        spec: *mut pg_sys::PartitionBoundSpec,
    ) -> *mut pg_sys::PartitionBoundSpec;
    #[link_name = "get_proposed_default_constraint"]
    fn get_proposed_default_constraint_raw(new_part_constraints: *mut pg_sys::List) -> *mut pg_sys::List;
    #[link_name = "map_partition_varattnos"]
    fn map_partition_varattnos_raw(
        expr: *mut pg_sys::List,
        fromrel_varno: i32,
        to_rel: pg_sys::Relation,
        from_rel: pg_sys::Relation,
    ) -> *mut pg_sys::List;
    #[link_name = "RelationGetPartitionQual"]
    fn relation_get_partition_qual_raw(rel: pg_sys::Relation) -> *mut pg_sys::List;
}

unsafe fn map_varattnos(expr: *mut pg_sys::List, to: &OpenRel, from: &OpenRel) -> *mut pg_sys::List {
    unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| map_partition_varattnos_raw(expr, 1, to.0, from.0)) }
}

/// pg_partitioned_table's columns partattrs, partclass and partexprs
/// (src/include/catalog/pg_partitioned_table.h): not in pgrx's bindings.
const ANUM_PG_PARTITIONED_TABLE_PARTATTRS: i16 = 5;
const ANUM_PG_PARTITIONED_TABLE_PARTCLASS: i16 = 6;
const ANUM_PG_PARTITIONED_TABLE_PARTEXPRS: i16 = 8;

/// A partition bound as the statement will use it.
enum Bound {
    /// Transformed (transformPartitionBound) by PostgreSQL's own code.
    Ready(*mut pg_sys::PartitionBoundSpec),
    /// Transforming it, or proving a constraint on it, could run code other than
    /// PostgreSQL's built-in functions (see [`bound`]): judged as if nothing proved it.
    Undecided,
    /// PostgreSQL will refuse it with an error of its own: not judged.
    Invalid,
}

/// Whether a type's values are read and compared by built-in functions only: a built-in base
/// type, or an enum (enum_in, enum_cmp).
unsafe fn builtin_type(t: pg_sys::Oid) -> bool {
    unsafe {
        let kind = pg_sys::get_typtype(t) as u8;
        (kind == pg_sys::TYPTYPE_BASE && u32::from(t) < pg_sys::FirstNormalObjectId) || kind == pg_sys::TYPTYPE_ENUM
    }
}

/// Whether the parent's partition key is plain columns of built-in types (or enums) with
/// built-in operator classes: then transforming a literal bound (input and cast functions)
/// and the predicate proof (which evaluates the key's comparison operators on constants,
/// predtest.c operator_predicate_proof) run only PostgreSQL's built-in functions.
unsafe fn builtin_partition_key(parent: &OpenRel) -> bool {
    unsafe {
        let tuple = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::PARTRELID as i32, pg_sys::Datum::from((*parent.0).rd_id));
        if tuple.is_null() {
            return false;
        }
        let get = |attnum: i16| {
            let mut isnull = false;
            let d = pg_sys::SysCacheGetAttr(pg_sys::SysCacheIdentifier::PARTRELID as i32, tuple, attnum, &mut isnull);
            (!isnull).then_some(d)
        };
        let ok = (|| {
            if get(ANUM_PG_PARTITIONED_TABLE_PARTEXPRS).is_some() {
                return false;
            }
            let (Some(attrs), Some(classes)) = (get(ANUM_PG_PARTITIONED_TABLE_PARTATTRS), get(ANUM_PG_PARTITIONED_TABLE_PARTCLASS)) else {
                return false;
            };
            let attrs = &*attrs.cast_mut_ptr::<pg_sys::int2vector>();
            let classes = &*classes.cast_mut_ptr::<pg_sys::oidvector>();
            let attrs = std::slice::from_raw_parts(attrs.values.as_ptr(), attrs.dim1.max(0) as usize);
            let classes = std::slice::from_raw_parts(classes.values.as_ptr(), classes.dim1.max(0) as usize);
            let desc = PgTupleDesc::from_pg_unchecked((*parent.0).rd_att);
            classes.iter().all(|c| u32::from(*c) < pg_sys::FirstNormalObjectId)
                && attrs.iter().all(|a| *a > 0 && desc.get(*a as usize - 1).is_some_and(|att| builtin_type(att.atttypid)))
        })();
        pg_sys::ReleaseSysCache(tuple);
        ok
    }
}

/// Whether a raw bound value is a literal: a constant, a cast of one to a built-in type, or
/// MINVALUE / MAXVALUE (a one-name ColumnRef).
unsafe fn literal(node: *mut pg_sys::Node) -> bool {
    unsafe {
        if is_a(node, pg_sys::NodeTag::T_A_Const) {
            return true;
        }
        if is_a(node, pg_sys::NodeTag::T_ColumnRef) {
            return PgList::<pg_sys::Node>::from_pg((*(node as *mut pg_sys::ColumnRef)).fields).len() == 1;
        }
        if is_a(node, pg_sys::NodeTag::T_TypeCast) {
            let cast = node as *mut pg_sys::TypeCast;
            let t = pg_sys::LookupTypeNameOid(std::ptr::null_mut(), (*cast).typeName, true);
            return t != pg_sys::InvalidOid && builtin_type(t) && literal((*cast).arg);
        }
        false
    }
}

/// The bound of `spec` for partitioned table `parent`, transformed by transformPartitionBound
/// when that runs only built-in functions (literal values, a built-in key). An error while
/// transforming it is PostgreSQL's to report when it runs the statement.
unsafe fn bound(parent: &OpenRel, spec: *mut pg_sys::PartitionBoundSpec) -> Bound {
    unsafe {
        if spec.is_null() {
            return Bound::Invalid;
        }
        if !(*spec).is_default {
            let values = [(*spec).listdatums, (*spec).lowerdatums, (*spec).upperdatums];
            let all_literal = values.iter().all(|list| {
                PgList::<pg_sys::Node>::from_pg(*list).iter_ptr().all(|v| {
                    if is_a(v, pg_sys::NodeTag::T_PartitionRangeDatum) {
                        let d = v as *mut pg_sys::PartitionRangeDatum;
                        (*d).value.is_null() || literal((*d).value)
                    } else {
                        literal(v)
                    }
                })
            });
            if !all_literal {
                return Bound::Undecided;
            }
        }
        if !builtin_partition_key(parent) {
            return Bound::Undecided;
        }
        let parent_rel = parent.0;
        match subxact::in_subtransaction(|| {
            let pstate = pg_sys::make_parsestate(std::ptr::null_mut());
            pg_sys::ffi::pg_guard_ffi_boundary(|| transform_partition_bound_raw(pstate, parent_rel, spec)) as usize
        }) {
            Ok(b) if b != 0 => Bound::Ready(b as *mut pg_sys::PartitionBoundSpec),
            _ => Bound::Invalid,
        }
    }
}

/// The relations QueuePartitionConstraintValidation would queue for a scan: `scanrel` unless
/// its own constraints imply `constraint` (PartConstraintImpliedByRelConstraint); for a
/// partitioned table, each partition in turn, with the constraint mapped to its columns.
unsafe fn queue_validation(scanrel: &OpenRel, constraint: *mut pg_sys::List, sizes: Sizes, out: &mut Vec<PartitionScan>) {
    unsafe {
        if pg_sys::PartConstraintImpliedByRelConstraint(scanrel.0, constraint) {
            return;
        }
        match scanrel.kind() {
            RelKind::Table => out.push(scan_of(scanrel, constraint, sizes)),
            RelKind::PartitionedTable => {
                let desc = pg_sys::RelationGetPartitionDesc(scanrel.0, true);
                if desc.is_null() {
                    return;
                }
                let oids = std::slice::from_raw_parts((*desc).oids, (*desc).nparts.max(0) as usize).to_vec();
                for oid in oids {
                    let Some(part) = OpenRel::new(oid) else { continue };
                    let mapped = map_varattnos(constraint, &part, scanrel);
                    queue_validation(&part, mapped, sizes, out);
                }
            }
            _ => {}
        }
    }
}

/// A scan of `rel` against `constraint` (implicit-AND list), with the constraint as SQL over
/// its columns (pg_get_partition_constraintdef's deparse).
unsafe fn scan_of(rel: &OpenRel, constraint: *mut pg_sys::List, sizes: Sizes) -> PartitionScan {
    unsafe {
        let expr = pg_sys::make_ands_explicit(constraint);
        let context = pg_sys::deparse_context_for(rel.form().relname.data.as_ptr(), (*rel.0).rd_id);
        PartitionScan {
            relation: relation_of(rel, Reach::Itself, sizes),
            constraint_sql: Some(cstr(pg_sys::deparse_expression(expr.cast(), context, false, false))),
            suggested_constraint: make_name(&[&rel.relname()], "partition_check"),
        }
    }
}

/// A scan of `oid` (and its partitions) that could not be decided: no constraint to show.
unsafe fn undecided_scan(oid: pg_sys::Oid, sizes: Sizes) -> Vec<PartitionScan> {
    unsafe {
        let Some(rel) = OpenRel::new(oid) else { return Vec::new() };
        vec![PartitionScan {
            relation: relation(oid, Reach::Partitions, sizes).unwrap_or_else(|| relation_of(&rel, Reach::Itself, sizes)),
            constraint_sql: None,
            suggested_constraint: make_name(&[&rel.relname()], "partition_check"),
        }]
    }
}

/// The parent's DEFAULT partition, if it has one.
unsafe fn default_partition(parent: &OpenRel) -> Option<OpenRel> {
    unsafe {
        let desc = pg_sys::RelationGetPartitionDesc(parent.0, true);
        if desc.is_null() {
            return None;
        }
        let oid = pg_sys::get_default_oid_from_partdesc(desc);
        (oid != pg_sys::InvalidOid).then(|| OpenRel::new(oid)).flatten()
    }
}

/// ALTER TABLE parent ATTACH PARTITION name bound (ATExecAttachPartition): the attached table
/// is checked against the new bound's constraint plus the parent's own partition constraint,
/// and the parent's DEFAULT partition (when attaching another one) against the negation of
/// the new bound (get_proposed_default_constraint), each through
/// QueuePartitionConstraintValidation. `None` when PostgreSQL will refuse the statement:
/// the table does not exist, the parent is not partitioned, the bound is invalid.
///
/// # Safety
/// `cmd` must be a valid PartitionCmd, inside a transaction.
pub(super) unsafe fn attach_partition(
    parent: &OpenRel,
    cmd: *mut pg_sys::PartitionCmd,
    text: &StatementText,
    sizes: Sizes,
) -> Option<AttachPartition> {
    unsafe {
        if parent.kind() != RelKind::PartitionedTable {
            return None;
        }
        let oid = lookup((*cmd).name)?;
        let attached = OpenRel::new(oid)?;
        if !same_columns(parent, &attached) {
            // PostgreSQL refuses the statement with its own error ("cannot attach a typed
            // table as partition", "child table is missing column", "table contains column
            // not found in parent", "child table has different type for column"): not judged.
            return None;
        }
        let default = default_partition(parent);
        let mut scans = Vec::new();
        let mut default_scans = Vec::new();
        match bound(parent, (*cmd).bound) {
            Bound::Invalid => return None,
            Bound::Undecided => {
                scans = undecided_scan(oid, sizes);
                if let Some(d) = default.as_ref().filter(|_| !(*(*cmd).bound).is_default) {
                    default_scans = undecided_scan((*d.0).rd_id, sizes);
                }
            }
            Bound::Ready(spec) => {
                let bound_constraint = pg_sys::get_qual_from_partbound(parent.0, spec);
                let qual = pg_sys::ffi::pg_guard_ffi_boundary(|| relation_get_partition_qual_raw(parent.0));
                let constraint = pg_sys::list_concat(pg_sys::list_copy(bound_constraint), qual);
                if !constraint.is_null() {
                    let constraint = pg_sys::eval_const_expressions(std::ptr::null_mut(), constraint.cast()) as *mut pg_sys::List;
                    let constraint = pg_sys::lappend(std::ptr::null_mut(), pg_sys::make_ands_explicit(constraint).cast());
                    let constraint = map_varattnos(constraint, &attached, parent);
                    queue_validation(&attached, constraint, sizes, &mut scans);
                }
                if let Some(d) = default.as_ref().filter(|_| !(*spec).is_default) {
                    let proposed = pg_sys::ffi::pg_guard_ffi_boundary(|| get_proposed_default_constraint_raw(bound_constraint));
                    let proposed = map_varattnos(proposed, d, parent);
                    queue_validation(d, proposed, sizes, &mut default_scans);
                }
            }
        }
        Some(AttachPartition {
            partition: attached.qualified_name(),
            scans,
            default_scans,
            statement_sql: sqltext::trim_statement(text.text).to_string(),
        })
    }
}

/// Whether `attached` can become a partition of `parent` as far as its columns go, the
/// checks ATExecAttachPartition makes before it maps anything (tablecmds.c: not a typed
/// table; MergeAttributesIntoExisting: every column of the parent, by name, with the same
/// type, typmod and collation; no column the parent lacks). Only then can the partition
/// constraint be mapped to its columns (map_partition_varattnos, which otherwise fails with
/// "could not convert row type").
unsafe fn same_columns(parent: &OpenRel, attached: &OpenRel) -> bool {
    if attached.form().reloftype != pg_sys::InvalidOid {
        return false;
    }
    let columns = |rel: &OpenRel| -> Vec<(Vec<u8>, u32, i32, u32)> {
        let desc = unsafe { PgTupleDesc::from_pg_unchecked((*rel.0).rd_att) };
        let mut v: Vec<_> = desc
            .iter()
            .filter(|a| !a.attisdropped)
            .map(|a| (super::name_bytes(&a.attname).to_vec(), a.atttypid.to_u32(), a.atttypmod, a.attcollation.to_u32()))
            .collect();
        v.sort();
        v
    };
    columns(parent) == columns(attached)
}

/// CREATE TABLE name PARTITION OF parent bound, on a parent with a DEFAULT partition:
/// check_default_partition_contents, with its proof on the default partition and, when that
/// is partitioned, on each of its partitions (with the constraint as it maps it). Not judged
/// without a default partition (nothing is scanned), or when PostgreSQL will refuse the
/// statement.
///
/// # Safety
/// `stmt` must be a valid CreateStmt, inside a transaction.
pub(super) unsafe fn create_partition(stmt: *mut pg_sys::CreateStmt, text: &StatementText, sizes: Sizes) -> Statement {
    unsafe {
        // A table of that name exists already: PostgreSQL skips the statement (IF NOT EXISTS)
        // or refuses it.
        if (*stmt).partbound.is_null() || lookup((*stmt).relation).is_some() {
            return Statement::Other;
        }
        let parents = PgList::<pg_sys::RangeVar>::from_pg((*stmt).inhRelations);
        let Some(parent) = parents.get_ptr(0).and_then(|rv| lookup(rv)).and_then(|oid| OpenRel::new(oid)) else {
            return Statement::Other;
        };
        if parent.kind() != RelKind::PartitionedTable || (*(*stmt).partbound).is_default {
            return Statement::Other;
        }
        let Some(default) = default_partition(&parent) else { return Statement::Other };
        let default_scans = match bound(&parent, (*stmt).partbound) {
            Bound::Invalid => return Statement::Other,
            Bound::Undecided => undecided_scan((*default.0).rd_id, sizes),
            Bound::Ready(spec) => {
                let new_constraint = pg_sys::get_qual_from_partbound(parent.0, spec);
                let proposed = pg_sys::ffi::pg_guard_ffi_boundary(|| get_proposed_default_constraint_raw(new_constraint));
                let proposed = map_varattnos(proposed, &default, &parent);
                let mut scans = Vec::new();
                if !pg_sys::PartConstraintImpliedByRelConstraint(default.0, proposed) {
                    if default.kind() == RelKind::PartitionedTable {
                        for oid in PgList::<c_void>::from_pg(super::find_all_inheritors((*default.0).rd_id)).iter_oid() {
                            let Some(part) = OpenRel::new(oid) else { continue };
                            // check_default_partition_contents proves each partition with the
                            // default partition's constraint as is, and scans it mapped.
                            if oid == (*default.0).rd_id
                                || part.kind() != RelKind::Table
                                || pg_sys::PartConstraintImpliedByRelConstraint(part.0, proposed)
                            {
                                continue;
                            }
                            scans.push(scan_of(&part, map_varattnos(proposed, &part, &default), sizes));
                        }
                    } else if default.kind() == RelKind::Table {
                        scans.push(scan_of(&default, proposed, sizes));
                    }
                }
                scans
            }
        };
        let partition = super::quote_ident(&cstr((*(*stmt).relation).relname));
        Statement::CreatePartition(CreatePartition {
            parent: relation_of(&parent, Reach::Itself, sizes),
            partition,
            default_scans,
            statement_sql: sqltext::trim_statement(text.text).to_string(),
        })
    }
}

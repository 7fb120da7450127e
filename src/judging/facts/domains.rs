//! ALTER DOMAIN: which stored values ADD CHECK, SET NOT NULL and VALIDATE CONSTRAINT read,
//! found as PostgreSQL finds them (src/backend/commands/typecmds.c, get_rels_with_domain).

use std::ffi::c_char;

use pgrx::pg_sys;

use super::{cstr, make_name, name_bytes, quote_ident, relation_of, OpenRel, Reach, Sizes, StatementText};
use crate::model::{AlterDomain, DomainAction, DomainUse, NewConstraint, Statement};
use crate::sqltext;

// Not in pgrx's bindings: get_domain_constraint_oid (src/include/catalog/pg_constraint.h).
unsafe extern "C-unwind" {
    #[link_name = "get_domain_constraint_oid"]
    fn get_domain_constraint_oid_raw(typid: pg_sys::Oid, conname: *const c_char, missing_ok: bool) -> pg_sys::Oid;
}

/// pg_depend (src/include/catalog/pg_depend.h): its oid, the oid of its index on
/// (refclassid, refobjid, refobjsubid), the numbers of those two key columns, and the fixed
/// part of a row. Not in pgrx's bindings; the layout is the same in every supported version.
const DEPEND_RELATION_ID: u32 = 2608;
const DEPEND_REFERENCE_INDEX_ID: u32 = 2674;
const ANUM_PG_DEPEND_REFCLASSID: u32 = 4;
const ANUM_PG_DEPEND_REFOBJID: u32 = 5;

#[repr(C)]
struct FormDataPgDepend {
    classid: pg_sys::Oid,
    objid: pg_sys::Oid,
    objsubid: i32,
    refclassid: pg_sys::Oid,
    refobjid: pg_sys::Oid,
    refobjsubid: i32,
    deptype: c_char,
}

/// ALTER DOMAIN ... ADD CHECK / SET NOT NULL / VALIDATE CONSTRAINT: the action and the
/// tables whose columns it reads. Not judged: other forms, a domain or a constraint that does
/// not exist (PostgreSQL's error), SET NOT NULL on a domain that is NOT NULL already
/// (AlterDomainNotNull does nothing).
///
/// # Safety
/// `stmt` must be a valid AlterDomainStmt, inside a transaction.
pub(super) unsafe fn alter_domain(stmt: *mut pg_sys::AlterDomainStmt, text: &StatementText, sizes: Sizes) -> Statement {
    unsafe {
        let type_name = pg_sys::makeTypeNameFromNameList((*stmt).typeName);
        let domain = pg_sys::LookupTypeNameOid(std::ptr::null_mut(), type_name, true);
        if domain == pg_sys::InvalidOid || pg_sys::get_typtype(domain) as u8 != pg_sys::TYPTYPE_DOMAIN {
            return Statement::Other;
        }
        let tuple = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::TYPEOID as i32, pg_sys::Datum::from(domain));
        if tuple.is_null() {
            return Statement::Other;
        }
        let form = &*(pg_sys::GETSTRUCT(tuple) as *const pg_sys::FormData_pg_type);
        let (typname, not_null) = (String::from_utf8_lossy(name_bytes(&form.typname)).into_owned(), form.typnotnull);
        pg_sys::ReleaseSysCache(tuple);
        let action = match (*stmt).subtype as u8 {
            b'C' if pgrx::is_a((*stmt).def, pg_sys::NodeTag::T_Constraint) => {
                let con = (*stmt).def as *mut pg_sys::Constraint;
                if (*con).contype != pg_sys::ConstrType::CONSTR_CHECK {
                    return Statement::Other;
                }
                let named = !(*con).conname.is_null();
                // domainAddConstraint names an unnamed one <domain>_check (ChooseConstraintName).
                let name = if named { quote_ident(&cstr((*con).conname)) } else { make_name(&[&typname], "check") };
                let definition = text.local((*con).location).and_then(|start| sqltext::constraint_clause(text.text, start)).map(|(_, d)| d);
                DomainAction::AddCheck { constraint: NewConstraint { name, named, definition }, validates: !(*con).skip_validation }
            }
            b'O' if !not_null => DomainAction::SetNotNull,
            b'V' if !(*stmt).name.is_null() => {
                let exists = pg_sys::ffi::pg_guard_ffi_boundary(|| get_domain_constraint_oid_raw(domain, (*stmt).name, true));
                if exists == pg_sys::InvalidOid {
                    return Statement::Other;
                }
                DomainAction::ValidateConstraint { constraint: quote_ident(&cstr((*stmt).name)) }
            }
            _ => return Statement::Other,
        };
        let mut uses = Vec::new();
        domain_uses(domain, sizes, &mut uses, &mut Vec::new());
        Statement::AlterDomain(AlterDomain { domain: cstr(pg_sys::format_type_be_qualified(domain)), action, uses })
    }
}

/// get_rels_with_domain without its locks: every user column of a table or materialized view
/// whose type is `domain`, or (recursively) a domain over it, found through pg_depend.
/// Container types (arrays, composites) over the domain are left out: PostgreSQL refuses the
/// statement when a column stores one (find_composite_type_dependencies).
unsafe fn domain_uses(domain: pg_sys::Oid, sizes: Sizes, out: &mut Vec<DomainUse>, seen: &mut Vec<pg_sys::Oid>) {
    unsafe {
        if seen.contains(&domain) {
            return;
        }
        seen.push(domain);
        pgrx::check_for_interrupts!();
        let mut deps: Vec<(pg_sys::Oid, pg_sys::Oid, i32)> = Vec::new();
        super::catalog::scan_catalog(
            pg_sys::Oid::from(DEPEND_RELATION_ID),
            Some(pg_sys::Oid::from(DEPEND_REFERENCE_INDEX_ID)),
            std::ptr::null_mut(),
            &[
                (ANUM_PG_DEPEND_REFCLASSID, pg_sys::F_OIDEQ, pg_sys::Datum::from(pg_sys::TypeRelationId)),
                (ANUM_PG_DEPEND_REFOBJID, pg_sys::F_OIDEQ, pg_sys::Datum::from(domain)),
            ],
            |tuple| {
                let d = &*(pg_sys::GETSTRUCT(tuple) as *const FormDataPgDepend);
                deps.push((d.classid, d.objid, d.objsubid));
            },
        );

        for (classid, objid, objsubid) in deps {
            if classid == pg_sys::TypeRelationId {
                if pg_sys::get_typtype(objid) as u8 == pg_sys::TYPTYPE_DOMAIN {
                    domain_uses(objid, sizes, out, seen);
                }
                continue;
            }
            if classid != pg_sys::RelationRelationId || objsubid <= 0 {
                continue;
            }
            let Some(rel) = OpenRel::new(objid) else { continue };
            let kind = rel.form().relkind as u8;
            if kind != pg_sys::RELKIND_RELATION && kind != pg_sys::RELKIND_MATVIEW {
                continue;
            }
            let desc = pgrx::PgTupleDesc::from_pg_unchecked((*rel.0).rd_att);
            let Some(att) = desc.get(objsubid as usize - 1) else { continue };
            if att.attisdropped || att.atttypid != domain {
                continue;
            }
            let column = quote_ident(&String::from_utf8_lossy(name_bytes(&att.attname)));
            match out.iter_mut().find(|u| u.table.name == rel.qualified_name()) {
                Some(u) => u.columns.push(column),
                None => out.push(DomainUse { table: relation_of(&rel, Reach::Itself, sizes), columns: vec![column] }),
            }
        }
    }
}

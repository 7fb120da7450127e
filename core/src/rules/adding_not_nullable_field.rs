//! `adding-not-nullable-field`: SET NOT NULL that scans for NULLs: on a column, the one ADD
//! PRIMARY KEY implies for its key columns, and on a domain.
//!
//! PostgreSQL facts (documentation: ALTER TABLE "SET/DROP NOT NULL", "ADD
//! table_constraint_using_index"; ALTER DOMAIN "SET/DROP NOT NULL"):
//! - SET NOT NULL takes ACCESS EXCLUSIVE and scans the table for NULLs, unless the column
//!   is already NOT NULL or a valid CHECK constraint proves it has none
//!   (src/backend/commands/tablecmds.c, ATExecSetNotNull and NotNullImpliedByRelConstraints,
//!   PostgreSQL 12+).
//! - ADD PRIMARY KEY, with or without USING INDEX, adds a SET NOT NULL for every key column
//!   that is not NOT NULL yet (src/backend/parser/parse_utilcmd.c, transformIndexConstraint:
//!   `notnullcmds`); it runs as above, under the ALTER TABLE's ACCESS EXCLUSIVE lock, even
//!   when the unique index exists already.
//! - ALTER DOMAIN ... SET NOT NULL reads every column of the domain in every table, holding
//!   SHARE locks on those tables (src/backend/commands/typecmds.c, AlterDomainNotNull and
//!   get_rels_with_domain); there is no CHECK that lets it skip the scan.
//! - PostgreSQL 18 catalogues not-null constraints: `ADD CONSTRAINT name NOT NULL col NOT
//!   VALID` takes its lock without a scan, and `VALIDATE CONSTRAINT name` then scans under
//!   SHARE UPDATE EXCLUSIVE, which blocks neither reads nor writes; the validated constraint
//!   makes the column NOT NULL. `ADD CONSTRAINT ... NOT NULL` without NOT VALID scans as SET
//!   NOT NULL does (the facts give it as a SET NOT NULL), and SET NOT NULL on a column whose
//!   not-null constraint is NOT VALID validates it, a scan under ACCESS EXCLUSIVE.

use super::{lock_detail, Context, Finding, ADDING_NOT_NULLABLE_FIELD};
use crate::model::{AlterDomain, AlterTable, AlterTableCmd, DomainAction, LockMode, Statement};

/// Flags a SET NOT NULL subcommand (written, or implied by ADD PRIMARY KEY) that scans a table
/// that is neither small nor created in this transaction; the hint proves the column has no
/// NULLs with a CHECK validated without blocking.
pub fn adding_not_nullable_field(at: &AlterTable, cmd: &AlterTableCmd, ctx: &Context, out: &mut Vec<Finding>) {
    let AlterTableCmd::SetNotNull { column, primary_key, suggested_constraint: c, already_not_null: false, proven_by_check: false } = cmd
    else {
        return;
    };
    if ctx.exempt(&ADDING_NOT_NULLABLE_FIELD, &at.table) {
        return;
    }
    let t = &at.table.name;
    // PostgreSQL 18 catalogues not-null constraints: one NOT VALID + VALIDATE pair makes the
    // column NOT NULL. Before 18, a validated CHECK lets SET NOT NULL skip its scan.
    let v18 = ctx.server_version_num >= 180000;
    let recipe = if v18 {
        format!(
            "ALTER TABLE {t} ADD CONSTRAINT {c} NOT NULL {column} NOT VALID;\n\
             ALTER TABLE {t} VALIDATE CONSTRAINT {c};"
        )
    } else {
        format!(
            "ALTER TABLE {t} ADD CONSTRAINT {c} CHECK ({column} IS NOT NULL) NOT VALID;\n\
             ALTER TABLE {t} VALIDATE CONSTRAINT {c};\n\
             ALTER TABLE {t} ALTER COLUMN {column} SET NOT NULL;\n\
             ALTER TABLE {t} DROP CONSTRAINT {c};"
        )
    };
    const NOT_NULL_ROUTE: &str = "a NOT NULL constraint added NOT VALID and validated under a SHARE UPDATE EXCLUSIVE lock, which \
                                  blocks neither reads nor writes (the validated constraint makes the column NOT NULL, PostgreSQL 18+)";
    let (message, activity, hint) = match primary_key {
        None => (
            format!("SET NOT NULL on {t}.{column} would scan the table under {} lock", at.lock.with_article()),
            format!("it scans every row for NULLs in {column}"),
            format!(
                "Prove there are no NULLs with {}. Run the ADD in its own transaction: VALIDATE in the same one would scan \
                 under the ADD's lock.\n{recipe}",
                if v18 {
                    NOT_NULL_ROUTE
                } else {
                    "a CHECK constraint validated without blocking; SET NOT NULL then skips the scan (PostgreSQL 12+)"
                }
            ),
        ),
        Some(pk) => (
            format!("adding PRIMARY KEY {pk} would scan {t} under {} lock to set {column} NOT NULL", at.lock.with_article()),
            format!("it scans every row for NULLs in {column}: a primary key sets its columns NOT NULL, even USING INDEX"),
            format!(
                "Make {column} NOT NULL first, through {}, each statement in its own transaction, then add the primary key:\n{recipe}",
                if v18 {
                    NOT_NULL_ROUTE
                } else {
                    "a CHECK constraint validated without blocking (SET NOT NULL then skips the scan, PostgreSQL 12+)"
                }
            ),
        ),
    };
    out.push(Finding {
        rule: &ADDING_NOT_NULLABLE_FIELD,
        message,
        detail: lock_detail("ALTER TABLE", at.lock, &at.table.describe(), &activity),
        hint,
    });
}

/// Flags ALTER DOMAIN ... SET NOT NULL when a table that stores the domain is neither small
/// nor created in this transaction.
pub fn on_domain(stmt: &Statement, ctx: &Context, out: &mut Vec<Finding>) {
    let Statement::AlterDomain(AlterDomain { domain, action: DomainAction::SetNotNull, uses }) = stmt else { return };
    let scanned: Vec<_> = uses.iter().filter(|u| !ctx.exempt(&ADDING_NOT_NULLABLE_FIELD, &u.table)).collect();
    if scanned.is_empty() {
        return;
    }
    let targets = super::domain_targets(&scanned);
    out.push(Finding {
        rule: &ADDING_NOT_NULLABLE_FIELD,
        message: format!("ALTER DOMAIN {domain} SET NOT NULL would scan every table that stores it while blocking writes"),
        detail: lock_detail(
            "ALTER DOMAIN ... SET NOT NULL",
            LockMode::Share,
            &targets,
            &format!("it reads every value of {domain} in them for NULLs"),
        ),
        hint: "A domain's NOT NULL has no online form: PostgreSQL always scans every column of the domain. Make each column \
               NOT NULL instead, without a scan under a blocking lock: for each of them, ADD CONSTRAINT ... CHECK (col IS NOT \
               NULL) NOT VALID, VALIDATE CONSTRAINT in its own transaction, then ALTER COLUMN col SET NOT NULL. Or run this in \
               a maintenance window."
            .to_string(),
    });
}

#[cfg(test)]
mod tests {
    use crate::model::*;
    use crate::rules::testutil::*;

    fn set_not_null(already: bool, proven: bool) -> AlterTableCmd {
        AlterTableCmd::SetNotNull {
            column: "status".into(),
            primary_key: None,
            suggested_constraint: "orders_status_not_null".into(),
            already_not_null: already,
            proven_by_check: proven,
        }
    }

    #[test]
    fn set_not_null_that_scans_is_flagged_with_check_recipe() {
        let f = check(&alter(table("public.orders", 68), LockMode::AccessExclusive, vec![set_not_null(false, false)]));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule.id, "adding-not-nullable-field");
        assert!(f[0].detail.contains("ACCESS EXCLUSIVE lock on public.orders (68 MB"));
        assert!(f[0]
            .hint
            .contains("ALTER TABLE public.orders ADD CONSTRAINT orders_status_not_null CHECK (status IS NOT NULL) NOT VALID;"));
        assert!(f[0].hint.contains("VALIDATE CONSTRAINT orders_status_not_null;"));
    }

    #[test]
    fn on_postgresql_18_the_hint_adds_a_not_valid_not_null_constraint() {
        let ctx = crate::rules::Context { server_version_num: 180006, ..Default::default() };
        let f = crate::rules::check(&alter(table("public.orders", 68), LockMode::AccessExclusive, vec![set_not_null(false, false)]), &ctx);
        assert_eq!(f.len(), 1);
        assert!(
            f[0].hint.contains(
                "ALTER TABLE public.orders ADD CONSTRAINT orders_status_not_null NOT NULL status NOT VALID;\n\
             ALTER TABLE public.orders VALIDATE CONSTRAINT orders_status_not_null;"
            ),
            "{}",
            f[0].hint
        );
        assert!(!f[0].hint.contains("CHECK"), "{}", f[0].hint);
    }

    #[test]
    fn set_not_null_proven_by_validated_check_or_already_not_null_passes() {
        let t = table("public.orders", 68);
        assert!(check(&alter(t.clone(), LockMode::AccessExclusive, vec![set_not_null(false, true)])).is_empty());
        assert!(check(&alter(t, LockMode::AccessExclusive, vec![set_not_null(true, false)])).is_empty());
    }

    #[test]
    fn set_not_null_on_small_tables_or_tables_created_in_transaction_passes() {
        assert!(check(&alter(table("public.tiny", 0), LockMode::AccessExclusive, vec![set_not_null(false, false)])).is_empty());
        assert!(check(&alter(new_table("public.fresh"), LockMode::AccessExclusive, vec![set_not_null(false, false)])).is_empty());
    }

    #[test]
    fn primary_key_on_a_nullable_column_is_flagged_as_its_set_not_null() {
        let implicit = |proven| AlterTableCmd::SetNotNull {
            column: "code".into(),
            primary_key: Some("coupons_pkey".into()),
            suggested_constraint: "coupons_code_not_null".into(),
            already_not_null: false,
            proven_by_check: proven,
        };
        let f = check(&alter(table("public.coupons", 68), LockMode::AccessExclusive, vec![implicit(false)]));
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].message,
            "adding PRIMARY KEY coupons_pkey would scan public.coupons under an ACCESS EXCLUSIVE lock to set code NOT NULL"
        );
        assert!(f[0].detail.contains("even USING INDEX"), "{}", f[0].detail);
        assert!(f[0].hint.contains("ALTER TABLE public.coupons ALTER COLUMN code SET NOT NULL;"));
        // The safe route: a validated CHECK proves it, and PostgreSQL skips the scan.
        assert!(check(&alter(table("public.coupons", 68), LockMode::AccessExclusive, vec![implicit(true)])).is_empty());
    }

    fn domain_set_not_null(uses: Vec<DomainUse>) -> Statement {
        Statement::AlterDomain(AlterDomain { domain: "public.email".into(), action: DomainAction::SetNotNull, uses })
    }

    #[test]
    fn domain_set_not_null_is_flagged_when_a_big_table_stores_the_domain() {
        let f = check(&domain_set_not_null(vec![
            DomainUse { table: table("public.customers", 12), columns: vec!["email".into()] },
            DomainUse { table: table("public.tiny", 0), columns: vec!["e".into()] },
        ]));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule.id, "adding-not-nullable-field");
        assert!(f[0].detail.contains("SHARE lock on public.customers (12 MB, about 1000000 rows) (column email)"), "{}", f[0].detail);
        assert!(!f[0].detail.contains("public.tiny"), "{}", f[0].detail);
        assert!(check(&domain_set_not_null(vec![DomainUse { table: table("public.tiny", 0), columns: vec!["e".into()] }])).is_empty());
        assert!(check(&domain_set_not_null(vec![])).is_empty());
    }
}

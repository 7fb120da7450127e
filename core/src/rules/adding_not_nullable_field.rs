//! `adding-not-nullable-field`: SET NOT NULL that scans the table.
//!
//! PostgreSQL facts (documentation: ALTER TABLE "SET/DROP NOT NULL";
//! src/backend/commands/tablecmds.c):
//! - SET NOT NULL takes ACCESS EXCLUSIVE and scans the table for NULLs, unless the column
//!   is already NOT NULL or a valid CHECK constraint proves it has none
//!   (NotNullImpliedByRelConstraints, PostgreSQL 12+).
//! - PostgreSQL 18 catalogues not-null constraints: `ADD CONSTRAINT name NOT NULL col NOT
//!   VALID` takes its lock without a scan, and `VALIDATE CONSTRAINT name` then scans under
//!   SHARE UPDATE EXCLUSIVE, which blocks neither reads nor writes; the validated constraint
//!   makes the column NOT NULL. `ADD CONSTRAINT ... NOT NULL` without NOT VALID scans as SET
//!   NOT NULL does (the facts give it as a SET NOT NULL), and SET NOT NULL on a column whose
//!   not-null constraint is NOT VALID validates it, a scan under ACCESS EXCLUSIVE.

use super::{lock_detail, Context, Finding, ADDING_NOT_NULLABLE_FIELD};
use crate::model::{AlterTable, AlterTableCmd};

/// Flags a SET NOT NULL subcommand that scans a table that is neither small nor created in
/// this transaction; the hint proves the column has no NULLs with a CHECK validated without
/// blocking.
pub fn adding_not_nullable_field(at: &AlterTable, cmd: &AlterTableCmd, ctx: &Context, out: &mut Vec<Finding>) {
    let AlterTableCmd::SetNotNull { column, suggested_constraint: c, already_not_null: false, proven_by_check: false } = cmd else {
        return;
    };
    if ctx.exempt(&ADDING_NOT_NULLABLE_FIELD, &at.table) {
        return;
    }
    let t = &at.table.name;
    out.push(Finding {
        rule: &ADDING_NOT_NULLABLE_FIELD,
        message: format!("SET NOT NULL on {t}.{column} would scan the table under {} lock", at.lock.with_article()),
        detail: lock_detail("ALTER TABLE", at.lock, &at.table.describe(), &format!("it scans every row for NULLs in {column}")),
        hint: if ctx.server_version_num >= 180000 {
            format!(
                "Add the NOT NULL constraint without checking existing rows, then validate it under a SHARE UPDATE \
                 EXCLUSIVE lock, which blocks neither reads nor writes; the validated constraint makes {column} NOT NULL \
                 (PostgreSQL 18+). Run the ADD in its own transaction: VALIDATE in the same one would scan under the \
                 ADD's lock.\n\
                 ALTER TABLE {t} ADD CONSTRAINT {c} NOT NULL {column} NOT VALID;\n\
                 ALTER TABLE {t} VALIDATE CONSTRAINT {c};"
            )
        } else {
            format!(
                "Prove there are no NULLs with a CHECK constraint validated without blocking; \
                 SET NOT NULL then skips the scan (PostgreSQL 12+). Run the ADD in its own \
                 transaction: VALIDATE in the same one would scan under the ADD's lock.\n\
                 ALTER TABLE {t} ADD CONSTRAINT {c} CHECK ({column} IS NOT NULL) NOT VALID;\n\
                 ALTER TABLE {t} VALIDATE CONSTRAINT {c};\n\
                 ALTER TABLE {t} ALTER COLUMN {column} SET NOT NULL;\n\
                 ALTER TABLE {t} DROP CONSTRAINT {c};"
            )
        },
    });
}

#[cfg(test)]
mod tests {
    use crate::model::*;
    use crate::rules::testutil::*;

    fn set_not_null(already: bool, proven: bool) -> AlterTableCmd {
        AlterTableCmd::SetNotNull {
            column: "status".into(),
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
        let f = crate::rules::check(
            &alter(table("public.orders", 68), LockMode::AccessExclusive, vec![set_not_null(false, false)]),
            &ctx,
        );
        assert_eq!(f.len(), 1);
        assert!(f[0].hint.contains(
            "ALTER TABLE public.orders ADD CONSTRAINT orders_status_not_null NOT NULL status NOT VALID;\n\
             ALTER TABLE public.orders VALIDATE CONSTRAINT orders_status_not_null;"
        ), "{}", f[0].hint);
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
}

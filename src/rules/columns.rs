//! Column rules: `adding-not-nullable-field`, `changing-column-type`.
//!
//! PostgreSQL facts (documentation: ALTER TABLE "SET/DROP NOT NULL", "SET DATA TYPE" and
//! its Notes; src/backend/commands/tablecmds.c):
//! - SET NOT NULL takes ACCESS EXCLUSIVE and scans the table for NULLs, unless the column
//!   is already NOT NULL or a valid CHECK constraint proves it has none
//!   (NotNullImpliedByRelConstraints, PostgreSQL 12+).
//! - ALTER COLUMN TYPE takes ACCESS EXCLUSIVE and rewrites the table and its indexes unless
//!   the old type is binary coercible to the new one and the new typmod accepts every old
//!   value (ATColumnChangeRequiresRewrite): varchar(n) -> varchar(m >= n), varchar -> text,
//!   numeric(p,s) -> numeric(p2 >= p, s), timestamp -> timestamptz with TimeZone UTC (12+).
//!   The facts layer runs PostgreSQL's own test; this rule only reads its outcome.

use super::{Finding, ADDING_NOT_NULLABLE_FIELD, CHANGING_COLUMN_TYPE};
use crate::model::{AlterTable, AlterTableCmd};

pub fn check_alter_table(at: &AlterTable, out: &mut Vec<Finding>) {
    let t = &at.table.name;
    for cmd in &at.commands {
        match cmd {
            AlterTableCmd::SetNotNull { column, suggested_constraint: c, already_not_null: false, proven_by_check: false } => {
                out.push(Finding {
                    rule: &ADDING_NOT_NULLABLE_FIELD,
                    message: format!("SET NOT NULL on {t}.{column} would scan the table under an {} lock", at.lock),
                    detail: format!(
                        "ALTER TABLE takes an {} lock on {}, which {}, while it scans every row for NULLs in {column}.",
                        at.lock,
                        at.table.describe(),
                        at.lock.effect()
                    ),
                    hint: format!(
                        "Prove there are no NULLs with a CHECK constraint validated without blocking; \
                         SET NOT NULL then skips the scan (PostgreSQL 12+):\n\
                         ALTER TABLE {t} ADD CONSTRAINT {c} CHECK ({column} IS NOT NULL) NOT VALID;\n\
                         ALTER TABLE {t} VALIDATE CONSTRAINT {c};\n\
                         ALTER TABLE {t} ALTER COLUMN {column} SET NOT NULL;\n\
                         ALTER TABLE {t} DROP CONSTRAINT {c};"
                    ),
                });
            }
            AlterTableCmd::AlterColumnType {
                column,
                new_type,
                rewrite: Some(true),
                suggested_new_column: n,
                suggested_old_column: o,
            } => {
                out.push(Finding {
                    rule: &CHANGING_COLUMN_TYPE,
                    message: format!("changing the type of {t}.{column} to {new_type} would rewrite the table"),
                    detail: format!(
                        "ALTER COLUMN TYPE takes an {} lock on {}, which {}, while it rewrites every row and rebuilds the table's indexes.",
                        at.lock,
                        at.table.describe(),
                        at.lock.effect()
                    ),
                    hint: format!(
                        "Add a new column, backfill it in batches (keeping new writes in sync, e.g. with a trigger), \
                         then swap the names in one short transaction:\n\
                         ALTER TABLE {t} ADD COLUMN {n} {new_type};\n\
                         UPDATE {t} SET {n} = {column} WHERE ... ; -- in batches\n\
                         ALTER TABLE {t} RENAME COLUMN {column} TO {o};\n\
                         ALTER TABLE {t} RENAME COLUMN {n} TO {column};"
                    ),
                });
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::model::*;
    use crate::rules::check;
    use crate::rules::testutil::*;

    fn set_not_null(already: bool, proven: bool) -> AlterTableCmd {
        AlterTableCmd::SetNotNull {
            column: "status".into(),
            suggested_constraint: "orders_status_not_null".into(),
            already_not_null: already,
            proven_by_check: proven,
        }
    }

    fn alter_type(rewrite: Option<bool>) -> AlterTableCmd {
        AlterTableCmd::AlterColumnType {
            column: "quantity".into(),
            new_type: "bigint".into(),
            rewrite,
            suggested_new_column: "quantity_new".into(),
            suggested_old_column: "quantity_old".into(),
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
    fn set_not_null_proven_by_validated_check_or_already_not_null_passes() {
        let t = table("public.orders", 68);
        assert!(check(&alter(t.clone(), LockMode::AccessExclusive, vec![set_not_null(false, true)])).is_empty());
        assert!(check(&alter(t, LockMode::AccessExclusive, vec![set_not_null(true, false)])).is_empty());
    }

    #[test]
    fn type_change_that_rewrites_is_flagged() {
        let f = check(&alter(table("public.orders", 68), LockMode::AccessExclusive, vec![alter_type(Some(true))]));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule.id, "changing-column-type");
        assert!(f[0].message.contains("public.orders.quantity to bigint"));
        assert!(f[0].hint.contains("ADD COLUMN quantity_new bigint;"));
    }

    #[test]
    fn binary_coercible_or_undecided_type_change_passes() {
        let t = table("public.orders", 68);
        assert!(check(&alter(t.clone(), LockMode::AccessExclusive, vec![alter_type(Some(false))])).is_empty());
        assert!(check(&alter(t, LockMode::AccessExclusive, vec![alter_type(None)])).is_empty());
    }

    #[test]
    fn column_changes_on_table_created_in_transaction_pass() {
        let f = check(&alter(
            new_table("public.fresh"),
            LockMode::AccessExclusive,
            vec![set_not_null(false, false), alter_type(Some(true))],
        ));
        assert!(f.is_empty());
    }
}

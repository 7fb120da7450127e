//! `changing-column-type`: ALTER COLUMN TYPE that rewrites the table.
//!
//! PostgreSQL facts (documentation: ALTER TABLE "SET DATA TYPE" and its Notes;
//! src/backend/commands/tablecmds.c):
//! - ALTER COLUMN TYPE takes ACCESS EXCLUSIVE and rewrites the table and its indexes unless
//!   the old type is binary coercible to the new one and the new typmod accepts every old
//!   value (ATColumnChangeRequiresRewrite): varchar(n) -> varchar(m >= n), varchar -> text,
//!   numeric(p,s) -> numeric(p2 >= p, s), timestamp -> timestamptz with TimeZone UTC (12+).
//!   The facts layer runs PostgreSQL's own test; this rule only reads its outcome.

use super::{lock_detail, Context, Finding, CHANGING_COLUMN_TYPE};
use crate::model::{AlterTable, AlterTableCmd};

/// Flags an ALTER COLUMN TYPE subcommand that PostgreSQL implements with a rewrite, on a
/// table that is neither small nor created in this transaction (an undecided rewrite,
/// `None`, is not flagged); the hint is the add-backfill-swap recipe.
pub fn changing_column_type(at: &AlterTable, cmd: &AlterTableCmd, ctx: &Context, out: &mut Vec<Finding>) {
    let AlterTableCmd::AlterColumnType { column, new_type, rewrite: Some(true), suggested_new_column: n, suggested_old_column: o } = cmd
    else {
        return;
    };
    if ctx.exempt(&CHANGING_COLUMN_TYPE, &at.table) {
        return;
    }
    let t = &at.table.name;
    out.push(Finding {
        rule: &CHANGING_COLUMN_TYPE,
        message: format!("changing the type of {t}.{column} to {new_type} would rewrite the table"),
        detail: lock_detail("ALTER COLUMN TYPE", at.lock, &at.table.describe(), "it rewrites every row and rebuilds the table's indexes"),
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

#[cfg(test)]
mod tests {
    use crate::model::*;
    use crate::rules::testutil::*;

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
    fn type_change_on_small_tables_or_tables_created_in_transaction_passes() {
        assert!(check(&alter(table("public.tiny", 0), LockMode::AccessExclusive, vec![alter_type(Some(true))])).is_empty());
        assert!(check(&alter(new_table("public.fresh"), LockMode::AccessExclusive, vec![alter_type(Some(true))])).is_empty());
    }
}

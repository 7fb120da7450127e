//! `adding-required-field`: ADD COLUMN ... NOT NULL without a default on a table that has
//! rows.
//!
//! PostgreSQL facts (documentation: ALTER TABLE "ADD COLUMN"; src/backend/commands/tablecmds.c,
//! ATRewriteTable):
//! - ADD COLUMN ... NOT NULL with no default fails ("contains null values") on a table
//!   that has rows, after scanning it.
//! - A constant default is stored in the catalog (PostgreSQL 11+): NOT NULL DEFAULT
//!   <constant> neither fails nor rewrites.

use super::{adding_field_with_default, Context, Finding, ADDING_REQUIRED_FIELD};
use crate::model::{AlterTable, AlterTableCmd};

/// Flags an ADD COLUMN ... NOT NULL without a default on a table that is not created in this
/// transaction and may have rows (any size but 0 bytes, unless its row estimate is 0). Silent
/// when `adding-field-with-default` reports the same column (a domain with constraints).
pub fn adding_required_field(at: &AlterTable, cmd: &AlterTableCmd, ctx: &Context, out: &mut Vec<Finding>) {
    let AlterTableCmd::AddColumn { column, type_name, not_null_without_default: true, .. } = cmd else { return };
    if adding_field_with_default::reports(at, cmd, ctx)
        || ctx.exempt(&ADDING_REQUIRED_FIELD, &at.table)
        || at.table.size_bytes == 0
        || at.table.estimated_rows == Some(0.0)
    {
        return;
    }
    let t = &at.table.name;
    out.push(Finding {
        rule: &ADDING_REQUIRED_FIELD,
        message: format!("adding NOT NULL column {column} without a default to {t}, which has rows, would fail"),
        detail: format!(
            "ALTER TABLE takes {} lock on {}, scans it, and fails with \"column contains null values\" at the first row.",
            at.lock.with_article(),
            at.table.describe()
        ),
        hint: format!(
            "Give the column a constant default (stored in the catalog, no rewrite, PostgreSQL 11+):\n\
             ALTER TABLE {t} ADD COLUMN {column} {type_name} NOT NULL DEFAULT <constant>;\n\
             or add it nullable, backfill in batches, then SET NOT NULL through a validated CHECK (col IS NOT NULL)."
        ),
    });
}

#[cfg(test)]
mod tests {
    use crate::model::*;
    use crate::rules::testutil::*;

    fn add_column(rewrite: Option<AddColumnRewrite>, required: bool) -> AlterTableCmd {
        AlterTableCmd::AddColumn {
            column: "token".into(),
            type_name: "uuid".into(),
            rewrite,
            not_null_without_default: required,
            default_sql: None,
            not_null: required,
            replaces: None,
        }
    }

    #[test]
    fn required_column_is_flagged_only_on_tables_with_rows() {
        let f = check(&alter(table("public.orders", 68), LockMode::AccessExclusive, vec![add_column(None, true)]));
        assert_eq!(f[0].rule.id, "adding-required-field");
        assert!(f[0].hint.contains("NOT NULL DEFAULT <constant>"));
        // small but non-empty: it would still fail
        let mut small = table("public.small", 0);
        small.size_bytes = 8192;
        assert_eq!(check(&alter(small, LockMode::AccessExclusive, vec![add_column(None, true)])).len(), 1);
        // empty: fine
        let mut empty = table("public.empty", 0);
        empty.estimated_rows = Some(0.0);
        assert!(check(&alter(empty, LockMode::AccessExclusive, vec![add_column(None, true)])).is_empty());
    }

    /// A NOT NULL column of a domain with constraints is rewritten and has no default: when
    /// adding-field-with-default reports it, adding-required-field stays silent; on a small
    /// table that has rows, where the rewrite is harmless, the failure is still reported.
    #[test]
    fn required_field_is_not_reported_twice_with_the_rewrite() {
        let cmd = || add_column(Some(AddColumnRewrite::DomainWithConstraints), true);
        let f = check(&alter(table("public.orders", 68), LockMode::AccessExclusive, vec![cmd()]));
        let ids: Vec<&str> = f.iter().map(|f| f.rule.id).collect();
        assert_eq!(ids, ["adding-field-with-default"]);
        let mut small = table("public.small", 0);
        small.size_bytes = 8192;
        let f = check(&alter(small, LockMode::AccessExclusive, vec![cmd()]));
        let ids: Vec<&str> = f.iter().map(|f| f.rule.id).collect();
        assert_eq!(ids, ["adding-required-field"]);
    }
}

//! `ban-drop-column`: ALTER TABLE ... DROP COLUMN. Default level: warning.
//!
//! PostgreSQL facts (documentation: ALTER TABLE "DROP COLUMN" and its Notes): DROP COLUMN
//! only marks the column dropped (no rewrite, a brief ACCESS EXCLUSIVE lock), but
//! application code that is already running and still reads or writes the column fails at
//! once, and its data is gone. Size is irrelevant; relations created in this transaction
//! are exempt (no running code can know them).

use super::hints::EXPAND_CONTRACT;
use super::{Context, Finding, BAN_DROP_COLUMN};
use crate::model::{AlterTable, AlterTableCmd};

/// Flags a DROP COLUMN subcommand on a table not created in this transaction, whatever its
/// size.
pub fn ban_drop_column(at: &AlterTable, cmd: &AlterTableCmd, ctx: &Context, out: &mut Vec<Finding>) {
    let AlterTableCmd::DropColumn { column } = cmd else { return };
    if ctx.exempt(&BAN_DROP_COLUMN, &at.table) {
        return;
    }
    out.push(Finding {
        rule: &BAN_DROP_COLUMN,
        message: format!("dropping column {}.{column} breaks code that still uses it", at.table.name),
        detail: format!(
            "DROP COLUMN is quick (the column is only marked dropped), but queries that name {column}, and INSERTs that list it, \
             fail from the moment it commits, and its data cannot be recovered."
        ),
        hint: EXPAND_CONTRACT.to_string(),
    });
}

#[cfg(test)]
mod tests {
    use crate::model::*;
    use crate::rules::testutil::*;
    use crate::rules::Level;

    fn drop_column(table: Relation) -> Statement {
        alter(table, LockMode::AccessExclusive, vec![AlterTableCmd::DropColumn { column: "a".into() }])
    }

    #[test]
    fn dropping_a_column_is_a_warning_regardless_of_size() {
        let f = check(&drop_column(table("public.tiny", 0)));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule.id, "ban-drop-column");
        assert_eq!(f[0].rule.default_level, Level::Warning);
    }

    #[test]
    fn dropping_a_column_of_a_table_created_in_transaction_passes() {
        assert!(check(&drop_column(new_table("public.n"))).is_empty());
    }
}

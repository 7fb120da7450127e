//! `renaming-column`: RENAME COLUMN. Default level: warning.
//!
//! PostgreSQL facts (documentation: ALTER TABLE "RENAME"): the rename is a catalog change
//! under a brief ACCESS EXCLUSIVE lock, but application code that is already running and
//! still uses the old name fails at once. Size is irrelevant; relations created in this
//! transaction are exempt (no running code can know them).

use super::hints::EXPAND_CONTRACT;
use super::{Context, Finding, RENAMING_COLUMN};
use crate::model::Statement;

/// Flags a RENAME COLUMN on a table not created in this transaction, whatever its size.
pub fn renaming_column(stmt: &Statement, ctx: &Context, out: &mut Vec<Finding>) {
    let Statement::RenameColumn { table, column, new_name } = stmt else { return };
    if ctx.exempt(&RENAMING_COLUMN, table) {
        return;
    }
    out.push(Finding {
        rule: &RENAMING_COLUMN,
        message: format!("renaming column {}.{column} to {new_name} breaks code that uses the old name", table.name),
        detail: "RENAME COLUMN is quick, but every running query, view-less client and prepared statement that names the old column fails from the moment it commits.".to_string(),
        hint: format!(
            "Add the new column, write to both and backfill, switch readers, then drop the old one; \
             or keep the old name readable through a view for the transition. {EXPAND_CONTRACT}"
        ),
    });
}

#[cfg(test)]
mod tests {
    use crate::model::*;
    use crate::rules::testutil::*;
    use crate::rules::Level;

    fn rename(table: Relation) -> Statement {
        Statement::RenameColumn { table, column: "a".into(), new_name: "b".into() }
    }

    #[test]
    fn renaming_a_column_is_a_warning_regardless_of_size() {
        let f = check(&rename(table("public.tiny", 0)));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule.id, "renaming-column");
        assert_eq!(f[0].rule.default_level, Level::Warning);
    }

    #[test]
    fn renaming_a_column_of_a_table_created_in_transaction_passes() {
        assert!(check(&rename(new_table("public.n"))).is_empty());
    }
}

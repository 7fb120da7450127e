//! `renaming-table`: ALTER TABLE ... RENAME TO. Default level: warning.
//!
//! PostgreSQL facts (documentation: ALTER TABLE "RENAME"): the rename is a catalog change
//! under a brief ACCESS EXCLUSIVE lock, but application code that is already running and
//! still uses the old name fails at once. Size is irrelevant; relations created in this
//! transaction are exempt (no running code can know them).

use super::hints::EXPAND_CONTRACT;
use super::{Context, Finding, RENAMING_TABLE};
use crate::model::Statement;

/// Flags a RENAME TO of a table not created in this transaction, whatever its size.
pub fn renaming_table(stmt: &Statement, ctx: &Context, out: &mut Vec<Finding>) {
    let Statement::RenameTable { table, new_name } = stmt else { return };
    if ctx.exempt(&RENAMING_TABLE, table) {
        return;
    }
    out.push(Finding {
        rule: &RENAMING_TABLE,
        message: format!("renaming table {} to {new_name} breaks code that uses the old name", table.name),
        detail: "ALTER TABLE ... RENAME TO is quick, but every running query that names the old table fails from the moment it commits."
            .to_string(),
        hint: format!(
            "Rename, then create a view with the old name (CREATE VIEW <old name> AS SELECT * FROM <new name>) in the same transaction, \
             and drop the view once no code uses the old name. {EXPAND_CONTRACT}"
        ),
    });
}

#[cfg(test)]
mod tests {
    use crate::model::*;
    use crate::rules::testutil::*;
    use crate::rules::Level;

    #[test]
    fn renaming_a_table_is_a_warning_regardless_of_size() {
        let f = check(&Statement::RenameTable { table: table("public.tiny", 0), new_name: "tiny2".into() });
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule.id, "renaming-table");
        assert_eq!(f[0].rule.default_level, Level::Warning);
        assert!(check(&Statement::RenameTable { table: new_table("public.n"), new_name: "n2".into() }).is_empty());
    }
}

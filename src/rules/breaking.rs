//! Breaking changes: `renaming-column`, `renaming-table`, `ban-drop-column`,
//! `ban-drop-table`, `ban-truncate-cascade`. Default level: warning.
//!
//! These statements are quick (a catalog change under a brief ACCESS EXCLUSIVE lock), but
//! application code that is already running and still uses the old name or the dropped
//! object fails at once, and dropped data is gone. Size is irrelevant; relations created
//! in this transaction are exempt (no running code can know them).

use super::{Context, Finding, BAN_DROP_COLUMN, BAN_DROP_TABLE, BAN_TRUNCATE_CASCADE, RENAMING_COLUMN, RENAMING_TABLE};
use crate::model::{AlterTable, AlterTableCmd, Relation};

const EXPAND_CONTRACT: &str = "Expand and contract: deploy code that no longer uses it first, then run this statement in a later migration.";

pub fn check_alter_table(at: &AlterTable, ctx: &Context, out: &mut Vec<Finding>) {
    for cmd in &at.commands {
        if let AlterTableCmd::DropColumn { column } = cmd {
            if ctx.exempt(&BAN_DROP_COLUMN, &at.table) {
                continue;
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
    }
}

pub fn check_rename_column(table: &Relation, column: &str, new_name: &str, ctx: &Context, out: &mut Vec<Finding>) {
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

pub fn check_rename_table(table: &Relation, new_name: &str, ctx: &Context, out: &mut Vec<Finding>) {
    if ctx.exempt(&RENAMING_TABLE, table) {
        return;
    }
    out.push(Finding {
        rule: &RENAMING_TABLE,
        message: format!("renaming table {} to {new_name} breaks code that uses the old name", table.name),
        detail: "ALTER TABLE ... RENAME TO is quick, but every running query that names the old table fails from the moment it commits.".to_string(),
        hint: format!(
            "Rename, then create a view with the old name (CREATE VIEW <old name> AS SELECT * FROM <new name>) in the same transaction, \
             and drop the view once no code uses the old name. {EXPAND_CONTRACT}"
        ),
    });
}

pub fn check_drop_table(tables: &[Relation], cascade: bool, ctx: &Context, out: &mut Vec<Finding>) {
    let old: Vec<&Relation> = tables.iter().filter(|t| !ctx.exempt(&BAN_DROP_TABLE, t)).collect();
    if old.is_empty() {
        return;
    }
    let names: Vec<String> = old.iter().map(|t| t.describe()).collect();
    out.push(Finding {
        rule: &BAN_DROP_TABLE,
        message: format!("dropping {} breaks code that still uses it and deletes its data", old.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")),
        detail: format!(
            "DROP TABLE removes {}{} for good; running queries that use it fail from the moment it commits.",
            names.join(", "),
            if cascade { ", and with CASCADE every view and foreign key that depends on it" } else { "" }
        ),
        hint: format!("Rename it first (e.g. to <name>_deprecated) and drop it in a later migration once nothing breaks. {EXPAND_CONTRACT}"),
    });
}

pub fn check_truncate_cascade(tables: &[Relation], ctx: &Context, out: &mut Vec<Finding>) {
    let old: Vec<&Relation> = tables.iter().filter(|t| !ctx.exempt(&BAN_TRUNCATE_CASCADE, t)).collect();
    if old.is_empty() {
        return;
    }
    let names: Vec<&str> = old.iter().map(|t| t.name.as_str()).collect();
    out.push(Finding {
        rule: &BAN_TRUNCATE_CASCADE,
        message: format!("TRUNCATE ... CASCADE also empties every table that references {}", names.join(", ")),
        detail: "CASCADE truncates every table with a foreign key to the named tables, recursively, under ACCESS EXCLUSIVE locks; \
                 the list is decided by the catalog at run time, not by the statement."
            .to_string(),
        hint: "Name every table to empty explicitly and drop CASCADE, so that the statement fails instead of emptying a table nobody listed.".to_string(),
    });
}

#[cfg(test)]
mod tests {
    use crate::model::*;
    use crate::rules::testutil::*;
    use crate::rules::Level;

    #[test]
    fn breaking_changes_are_warnings_regardless_of_size() {
        let tiny = table("public.tiny", 0);
        let cases = vec![
            Statement::RenameColumn { table: tiny.clone(), column: "a".into(), new_name: "b".into() },
            Statement::RenameTable { table: tiny.clone(), new_name: "tiny2".into() },
            Statement::DropTable { tables: vec![tiny.clone()], cascade: false },
            Statement::TruncateCascade { tables: vec![tiny.clone()] },
            alter(tiny.clone(), LockMode::AccessExclusive, vec![AlterTableCmd::DropColumn { column: "a".into() }]),
        ];
        let ids = ["renaming-column", "renaming-table", "ban-drop-table", "ban-truncate-cascade", "ban-drop-column"];
        for (stmt, id) in cases.iter().zip(ids) {
            let f = check(stmt);
            assert_eq!(f.len(), 1, "{id}");
            assert_eq!(f[0].rule.id, id);
            assert_eq!(f[0].rule.default_level, Level::Warning);
        }
    }

    #[test]
    fn breaking_changes_on_tables_created_in_transaction_pass() {
        let n = new_table("public.n");
        assert!(check(&Statement::RenameColumn { table: n.clone(), column: "a".into(), new_name: "b".into() }).is_empty());
        assert!(check(&Statement::DropTable { tables: vec![n.clone()], cascade: true }).is_empty());
        assert!(check(&alter(n, LockMode::AccessExclusive, vec![AlterTableCmd::DropColumn { column: "a".into() }])).is_empty());
    }

    #[test]
    fn drop_table_cascade_mentions_dependents() {
        let f = check(&Statement::DropTable { tables: vec![table("public.orders", 68)], cascade: true });
        assert!(f[0].detail.contains("CASCADE"));
    }
}

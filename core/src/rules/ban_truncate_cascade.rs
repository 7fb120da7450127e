//! `ban-truncate-cascade`: TRUNCATE ... CASCADE. Default level: warning.
//!
//! PostgreSQL facts (documentation: TRUNCATE): CASCADE also truncates every table that has
//! a foreign key to a named table, recursively, under ACCESS EXCLUSIVE locks; which tables
//! that is depends on the catalog when the statement runs, not on its text. Size is
//! irrelevant; tables created in this transaction are exempt (no running code can know them).

use super::{Context, Finding, BAN_TRUNCATE_CASCADE};
use crate::model::{Relation, Statement};

/// Flags a TRUNCATE ... CASCADE of tables not created in this transaction, whatever their
/// size.
pub fn ban_truncate_cascade(stmt: &Statement, ctx: &Context, out: &mut Vec<Finding>) {
    let Statement::TruncateCascade { tables } = stmt else { return };
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
        hint:
            "Name every table to empty explicitly and drop CASCADE, so that the statement fails instead of emptying a table nobody listed."
                .to_string(),
    });
}

#[cfg(test)]
mod tests {
    use crate::model::*;
    use crate::rules::testutil::*;
    use crate::rules::Level;

    #[test]
    fn truncate_cascade_is_a_warning_regardless_of_size() {
        let f = check(&Statement::TruncateCascade { tables: vec![table("public.tiny", 0)] });
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule.id, "ban-truncate-cascade");
        assert_eq!(f[0].rule.default_level, Level::Warning);
        assert!(check(&Statement::TruncateCascade { tables: vec![new_table("public.n")] }).is_empty());
    }
}

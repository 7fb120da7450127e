//! `ban-drop-table`: DROP TABLE. Default level: warning.
//!
//! PostgreSQL facts (documentation: DROP TABLE): the drop is quick, but application code
//! that is already running and still uses the table fails at once, and its data is gone;
//! with CASCADE, the views and foreign keys that depend on it go too. Size is irrelevant;
//! tables created in this transaction are exempt (no running code can know them).

use super::hints::EXPAND_CONTRACT;
use super::{Context, Finding, BAN_DROP_TABLE};
use crate::model::{Relation, Statement};

/// Flags a DROP TABLE of tables not created in this transaction, whatever their size, in
/// one finding naming them all.
pub fn ban_drop_table(stmt: &Statement, ctx: &Context, out: &mut Vec<Finding>) {
    let Statement::DropTable { tables, cascade } = stmt else { return };
    let old: Vec<&Relation> = tables.iter().filter(|t| !ctx.exempt(&BAN_DROP_TABLE, t)).collect();
    if old.is_empty() {
        return;
    }
    let names: Vec<String> = old.iter().map(|t| t.describe()).collect();
    out.push(Finding {
        rule: &BAN_DROP_TABLE,
        message: format!(
            "dropping {} breaks code that still uses it and deletes its data",
            old.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
        ),
        detail: format!(
            "DROP TABLE removes {}{} for good; running queries that use it fail from the moment it commits.",
            names.join(", "),
            if *cascade { ", and with CASCADE every view and foreign key that depends on it" } else { "" }
        ),
        hint: format!(
            "Rename it first (e.g. to <name>_deprecated) and drop it in a later migration once nothing breaks. {EXPAND_CONTRACT}"
        ),
    });
}

#[cfg(test)]
mod tests {
    use crate::model::*;
    use crate::rules::testutil::*;
    use crate::rules::Level;

    #[test]
    fn dropping_a_table_is_a_warning_regardless_of_size() {
        let f = check(&Statement::DropTable { tables: vec![table("public.tiny", 0)], cascade: false });
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule.id, "ban-drop-table");
        assert_eq!(f[0].rule.default_level, Level::Warning);
    }

    #[test]
    fn dropping_a_table_created_in_transaction_passes() {
        assert!(check(&Statement::DropTable { tables: vec![new_table("public.n")], cascade: true }).is_empty());
    }

    #[test]
    fn drop_table_cascade_mentions_dependents() {
        let f = check(&Statement::DropTable { tables: vec![table("public.orders", 68)], cascade: true });
        assert!(f[0].detail.contains("CASCADE"));
    }
}

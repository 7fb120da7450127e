//! `ban-exclusion-constraint`: ADD EXCLUDE on an existing table.
//!
//! PostgreSQL facts (documentation: ALTER TABLE, "ADD table_constraint" and CREATE TABLE
//! "EXCLUDE"; src/backend/commands/tablecmds.c):
//! - ADD EXCLUDE builds its index under ACCESS EXCLUSIVE, and there is no USING INDEX form
//!   (and no NOT VALID form: NOT VALID is for foreign keys and CHECK constraints only).

use super::{lock_detail, Context, Finding, BAN_EXCLUSION_CONSTRAINT};
use crate::model::{AlterTable, AlterTableCmd};

/// Flags an ADD EXCLUDE subcommand on a table that is neither small nor created in this
/// transaction. There is no online form to suggest: the hint names the alternatives.
pub fn ban_exclusion_constraint(at: &AlterTable, cmd: &AlterTableCmd, ctx: &Context, out: &mut Vec<Finding>) {
    let AlterTableCmd::AddExclusion { constraint } = cmd else { return };
    if ctx.exempt(&BAN_EXCLUSION_CONSTRAINT, &at.table) {
        return;
    }
    out.push(Finding {
        rule: &BAN_EXCLUSION_CONSTRAINT,
        message: format!(
            "adding exclusion constraint {} would build an index on {} under {} lock",
            constraint.name,
            at.table.name,
            at.lock.with_article()
        ),
        detail: lock_detail(
            "ALTER TABLE",
            at.lock,
            &at.table.describe(),
            "it builds the constraint's index and checks every row; \
             PostgreSQL has no USING INDEX or NOT VALID form for exclusion constraints",
        ),
        hint: "There is no online way to add an exclusion constraint to an existing table. Add it in a \
             maintenance window, or create a new table with the constraint, copy the rows in batches, and swap the names. \
             If it must run now, set pg_migration_guard.rule_levels = 'ban-exclusion-constraint:warning' for this session (superuser)."
            .to_string(),
    });
}

#[cfg(test)]
mod tests {
    use crate::model::*;
    use crate::rules::testutil::*;

    #[test]
    fn exclusion_constraint_is_flagged_unless_new_or_small() {
        let ex = || AlterTableCmd::AddExclusion { constraint: NewConstraint { name: "no_overlap".into(), named: true, definition: None } };
        let f = check(&alter(table("public.bookings", 68), LockMode::AccessExclusive, vec![ex()]));
        assert_eq!(f[0].rule.id, "ban-exclusion-constraint");
        assert!(check(&alter(table("public.bookings", 0), LockMode::AccessExclusive, vec![ex()])).is_empty());
    }
}

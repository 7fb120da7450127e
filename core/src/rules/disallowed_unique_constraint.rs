//! `disallowed-unique-constraint`: ADD UNIQUE or PRIMARY KEY that builds its index under the
//! ALTER TABLE's lock.
//!
//! PostgreSQL facts (documentation: ALTER TABLE, "ADD table_constraint_using_index";
//! src/backend/commands/tablecmds.c):
//! - ADD UNIQUE / PRIMARY KEY builds the index under the ALTER TABLE's ACCESS EXCLUSIVE
//!   lock; a PRIMARY KEY on nullable columns also sets them NOT NULL, with a scan. The
//!   online form is CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... USING INDEX.

use super::{lock_detail, Context, Finding, DISALLOWED_UNIQUE_CONSTRAINT};
use crate::model::{AlterTable, AlterTableCmd};

/// Flags an ADD UNIQUE or ADD PRIMARY KEY subcommand (without USING INDEX) on a table that
/// is neither small nor created in this transaction; the hint builds the index concurrently
/// and attaches it.
pub fn disallowed_unique_constraint(at: &AlterTable, cmd: &AlterTableCmd, ctx: &Context, out: &mut Vec<Finding>) {
    let AlterTableCmd::AddUnique { constraint, primary, nullable_columns, columns } = cmd else { return };
    if ctx.exempt(&DISALLOWED_UNIQUE_CONSTRAINT, &at.table) {
        return;
    }
    let kind = if *primary { "PRIMARY KEY" } else { "UNIQUE" };
    let t = &at.table.name;
    let c = &constraint.name;
    let mut hint = format!(
        "Build the index without blocking writes, then attach it as the constraint (a short ACCESS EXCLUSIVE lock, no build):\n\
         CREATE UNIQUE INDEX CONCURRENTLY {c} ON {t} {columns};\n\
         ALTER TABLE {t} ADD CONSTRAINT {c} {kind} USING INDEX {c};"
    );
    if *primary && !nullable_columns.is_empty() {
        hint.push_str(&format!(
            "\nBefore that, make {} NOT NULL without a scan under ACCESS EXCLUSIVE: \
             ADD CONSTRAINT ... CHECK (col IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT, then SET NOT NULL.",
            nullable_columns.join(", ")
        ));
    }
    let scan = if *primary && !nullable_columns.is_empty() {
        format!(", and scans it to set {} NOT NULL", nullable_columns.join(", "))
    } else {
        String::new()
    };
    out.push(Finding {
        rule: &DISALLOWED_UNIQUE_CONSTRAINT,
        message: format!("adding {kind} constraint {c} would build an index on {t} under {} lock", at.lock.with_article()),
        detail: lock_detail("ALTER TABLE", at.lock, &at.table.describe(), &format!("it builds the constraint's unique index{scan}")),
        hint,
    });
}

#[cfg(test)]
mod tests {
    use crate::model::*;
    use crate::rules::testutil::*;

    fn unique(primary: bool, nullable: Vec<String>) -> AlterTableCmd {
        AlterTableCmd::AddUnique {
            constraint: NewConstraint { name: "orders_email_key".into(), named: false, definition: None },
            primary,
            nullable_columns: nullable,
            columns: "(email)".into(),
        }
    }

    #[test]
    fn unique_constraint_is_flagged_with_using_index_recipe() {
        let f = check(&alter(table("public.orders", 68), LockMode::AccessExclusive, vec![unique(false, vec![])]));
        assert_eq!(f[0].rule.id, "disallowed-unique-constraint");
        assert!(f[0].hint.contains("CREATE UNIQUE INDEX CONCURRENTLY orders_email_key ON public.orders (email);"));
        assert!(f[0].hint.contains("ALTER TABLE public.orders ADD CONSTRAINT orders_email_key UNIQUE USING INDEX orders_email_key;"));
        assert!(!f[0].detail.contains("NOT NULL"));
    }

    #[test]
    fn primary_key_on_nullable_column_mentions_the_not_null_scan() {
        let f = check(&alter(table("public.orders", 68), LockMode::AccessExclusive, vec![unique(true, vec!["email".into()])]));
        assert!(f[0].message.contains("PRIMARY KEY"));
        assert!(f[0].detail.contains("scans it to set email NOT NULL"));
        assert!(f[0].hint.contains("PRIMARY KEY USING INDEX"));
        assert!(f[0].hint.contains("make email NOT NULL"));
    }
}

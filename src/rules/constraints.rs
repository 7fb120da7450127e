//! Constraint rules: `constraint-missing-not-valid`.
//!
//! PostgreSQL facts (documentation: ALTER TABLE, "ADD table_constraint [ NOT VALID ]" and
//! "VALIDATE CONSTRAINT"; src/backend/commands/tablecmds.c):
//! - ADD FOREIGN KEY takes SHARE ROW EXCLUSIVE on the table and on the referenced table,
//!   then checks every existing row (RI_Initial_Check) while holding them.
//! - ADD CHECK takes ACCESS EXCLUSIVE and scans every row.
//! - With NOT VALID the existing rows are not checked; ALTER TABLE ... VALIDATE CONSTRAINT
//!   later checks them under SHARE UPDATE EXCLUSIVE, which blocks neither reads nor writes
//!   (and only ROW SHARE on the referenced table).

use super::{Finding, CONSTRAINT_MISSING_NOT_VALID};
use crate::model::{AlterTable, AlterTableCmd, NewConstraint};

pub fn check_alter_table(at: &AlterTable, out: &mut Vec<Finding>) {
    for cmd in &at.commands {
        match cmd {
            AlterTableCmd::AddForeignKey { constraint, referenced, validates: true } => {
                let both = match referenced {
                    Some(r) if r.name != at.table.name => {
                        format!("{} and on {}, blocking INSERT, UPDATE and DELETE on both,", at.table.describe(), r.describe())
                    }
                    _ => format!("{}, which {},", at.table.describe(), at.lock.effect()),
                };
                out.push(Finding {
                    rule: &CONSTRAINT_MISSING_NOT_VALID,
                    message: format!(
                        "adding foreign key {} would scan {} while blocking writes",
                        constraint.name, at.table.name
                    ),
                    detail: format!(
                        "ALTER TABLE takes a {} lock on {both} while it checks every existing row of {} against the referenced table.",
                        at.lock, at.table.name
                    ),
                    hint: not_valid_hint(&at.table.name, constraint),
                });
            }
            AlterTableCmd::AddCheck { constraint, validates: true } => {
                out.push(Finding {
                    rule: &CONSTRAINT_MISSING_NOT_VALID,
                    message: format!(
                        "adding check constraint {} would scan {} under an {} lock",
                        constraint.name, at.table.name, at.lock
                    ),
                    detail: format!(
                        "ALTER TABLE takes an {} lock on {}, which {}, while it checks every existing row.",
                        at.lock,
                        at.table.describe(),
                        at.lock.effect()
                    ),
                    hint: not_valid_hint(&at.table.name, constraint),
                });
            }
            _ => {}
        }
    }
}

/// The two-step form: add NOT VALID (no scan), then VALIDATE CONSTRAINT (a scan under
/// SHARE UPDATE EXCLUSIVE that blocks neither reads nor writes).
fn not_valid_hint(table: &str, c: &NewConstraint) -> String {
    let add = match &c.definition {
        Some(def) => format!("ALTER TABLE {table} ADD CONSTRAINT {} {def} NOT VALID;", c.name),
        None => format!("ALTER TABLE {table} ADD CONSTRAINT {} ... NOT VALID;", c.name),
    };
    format!(
        "Add the constraint without checking existing rows, then validate it in a separate \
         transaction under a SHARE UPDATE EXCLUSIVE lock, which blocks neither reads nor writes:\n\
         {add}\nALTER TABLE {table} VALIDATE CONSTRAINT {};",
        c.name
    )
}

#[cfg(test)]
mod tests {
    use crate::model::*;
    use crate::rules::check;
    use crate::rules::testutil::*;

    fn fk(validates: bool, named: bool) -> AlterTableCmd {
        AlterTableCmd::AddForeignKey {
            constraint: NewConstraint {
                name: "orders_customer_id_fkey".into(),
                named,
                definition: Some("FOREIGN KEY (customer_id) REFERENCES customers (id)".into()),
            },
            referenced: Some(table("public.customers", 50)),
            validates,
        }
    }

    fn check_cmd(validates: bool) -> AlterTableCmd {
        AlterTableCmd::AddCheck {
            constraint: NewConstraint {
                name: "orders_amount_check".into(),
                named: false,
                definition: Some("CHECK (amount > 0)".into()),
            },
            validates,
        }
    }

    #[test]
    fn validating_foreign_key_is_flagged_with_not_valid_pair() {
        let f = check(&alter(table("public.orders", 68), LockMode::ShareRowExclusive, vec![fk(true, false)]));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule.id, "constraint-missing-not-valid");
        assert!(f[0].detail.contains("SHARE ROW EXCLUSIVE lock on public.orders (68 MB"), "{}", f[0].detail);
        assert!(f[0].detail.contains("public.customers (50 MB"));
        assert!(f[0].hint.contains(
            "ALTER TABLE public.orders ADD CONSTRAINT orders_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES customers (id) NOT VALID;"
        ));
        assert!(f[0].hint.contains("ALTER TABLE public.orders VALIDATE CONSTRAINT orders_customer_id_fkey;"));
    }

    #[test]
    fn not_valid_foreign_key_passes() {
        assert!(check(&alter(table("public.orders", 68), LockMode::ShareRowExclusive, vec![fk(false, true)])).is_empty());
    }

    #[test]
    fn validating_check_is_flagged_and_not_valid_check_passes() {
        let f = check(&alter(table("public.orders", 68), LockMode::AccessExclusive, vec![check_cmd(true)]));
        assert_eq!(f.len(), 1);
        assert!(f[0].message.contains("ACCESS EXCLUSIVE"));
        assert!(f[0].hint.contains("ADD CONSTRAINT orders_amount_check CHECK (amount > 0) NOT VALID;"));
        assert!(check(&alter(table("public.orders", 68), LockMode::AccessExclusive, vec![check_cmd(false)])).is_empty());
    }

    #[test]
    fn constraints_on_table_created_in_transaction_pass() {
        let f = check(&alter(new_table("public.fresh"), LockMode::AccessExclusive, vec![fk(true, false), check_cmd(true)]));
        assert!(f.is_empty());
    }

    #[test]
    fn several_subcommands_each_reported() {
        let f = check(&alter(table("public.orders", 68), LockMode::AccessExclusive, vec![fk(true, false), check_cmd(true)]));
        assert_eq!(f.len(), 2);
    }
}

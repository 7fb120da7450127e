//! `constraint-missing-not-valid`: ADD FOREIGN KEY or CHECK that checks every existing row
//! while writes are blocked, and VALIDATE CONSTRAINT in the transaction that added the
//! constraint NOT VALID.
//!
//! PostgreSQL facts (documentation: ALTER TABLE, "ADD table_constraint [ NOT VALID ]" and
//! "VALIDATE CONSTRAINT"; src/backend/commands/tablecmds.c):
//! - ADD FOREIGN KEY takes SHARE ROW EXCLUSIVE on the table and on the referenced table,
//!   then checks every existing row (RI_Initial_Check) while holding them.
//! - ADD CHECK takes ACCESS EXCLUSIVE and scans every row.
//! - With NOT VALID the existing rows are not checked; ALTER TABLE ... VALIDATE CONSTRAINT
//!   later checks them under SHARE UPDATE EXCLUSIVE, which blocks neither reads nor writes
//!   (and only ROW SHARE on the referenced table).
//! - PostgreSQL 15 refuses NOT VALID foreign keys on partitioned tables: the route there is
//!   NOT VALID + VALIDATE on each partition, then the constraint on the parent, which
//!   attaches the validated ones.
//! - VALIDATE CONSTRAINT in the transaction that added the constraint NOT VALID scans while
//!   the ADD's lock (SHARE ROW EXCLUSIVE for a foreign key, ACCESS EXCLUSIVE for a CHECK) is
//!   still held: locks are kept until the transaction ends (squawk's
//!   constraint-missing-not-valid flags the same pattern). The same holds when ADD ... NOT
//!   VALID and VALIDATE CONSTRAINT are subcommands of one ALTER TABLE: AlterTableGetLockLevel
//!   takes the strongest lock any subcommand needs, and VALIDATE scans under it.
//! - A foreign key written inline in ADD COLUMN is not validated when no ADD COLUMN of the
//!   statement has a default and the statement adds no table-level foreign key: the new
//!   column is all NULL, and PostgreSQL marks the constraint valid without a scan
//!   (src/backend/parser/parse_utilcmd.c, transformAlterTableStmt `skipValidation` and
//!   transformFKConstraints). The facts layer decides it (`validates`).
//! - ALTER DOMAIN ... ADD CHECK without NOT VALID, and ALTER DOMAIN ... VALIDATE CONSTRAINT,
//!   check every stored value of the domain, in every table that has a column of it, while
//!   holding SHARE locks on those tables (src/backend/commands/typecmds.c,
//!   AlterDomainAddConstraint, AlterDomainValidateConstraint, validateDomainConstraint and
//!   get_rels_with_domain): a domain constraint has no validation that lets writes go on.
//! - PostgreSQL 18: ALTER CONSTRAINT ... ENFORCED on a NOT ENFORCED foreign key checks every
//!   existing row under the ALTER TABLE's ACCESS EXCLUSIVE lock (there is no NOT VALID form
//!   of it); the route is to replace the constraint by a NOT VALID one and validate that.

use super::{lock_detail, Context, Finding, CONSTRAINT_MISSING_NOT_VALID};
use crate::model::{AlterDomain, AlterTable, AlterTableCmd, DomainAction, LockHolder, LockMode, NewConstraint, RelKind, Statement};

/// Flags, in one ALTER TABLE subcommand on a table that is neither small nor created in this
/// transaction: ADD FOREIGN KEY or ADD CHECK without NOT VALID, and VALIDATE CONSTRAINT while
/// this transaction holds a lock that blocks writes on the table.
pub fn constraint_missing_not_valid(at: &AlterTable, cmd: &AlterTableCmd, ctx: &Context, out: &mut Vec<Finding>) {
    if ctx.exempt(&CONSTRAINT_MISSING_NOT_VALID, &at.table) {
        return;
    }
    match cmd {
        AlterTableCmd::EnforceForeignKey { constraint, definition, referenced } => {
            let t = &at.table.name;
            let against = referenced.as_ref().map_or("the referenced table".to_string(), |r| r.name.clone());
            let definition = definition.as_deref().unwrap_or("FOREIGN KEY (...) REFERENCES ...");
            out.push(Finding {
                rule: &CONSTRAINT_MISSING_NOT_VALID,
                message: format!("ALTER CONSTRAINT {constraint} ENFORCED would check every row of {t} while blocking reads and writes"),
                detail: lock_detail(
                    "ALTER CONSTRAINT ... ENFORCED",
                    at.lock,
                    &at.table.describe(),
                    &format!("it checks every existing row of {t} against {against}"),
                ),
                hint: format!(
                    "Enforcing a NOT ENFORCED foreign key checks every row under the ALTER TABLE's lock. Replace it by a \
                     NOT VALID constraint instead, then validate that under a SHARE UPDATE EXCLUSIVE lock, which blocks \
                     neither reads nor writes, in a transaction of its own:\n\
                     ALTER TABLE {t} DROP CONSTRAINT {constraint}, ADD CONSTRAINT {constraint} {definition} NOT VALID;\n\
                     ALTER TABLE {t} VALIDATE CONSTRAINT {constraint};"
                ),
            });
        }
        AlterTableCmd::AddForeignKey { constraint, referenced, validates: true, inline_column } => {
            let partitioned = at.table.kind == RelKind::PartitionedTable;
            // The referenced table gets SHARE ROW EXCLUSIVE (ATAddForeignKeyConstraint),
            // whatever the ALTER TABLE takes on its own table.
            let referenced_lock = LockMode::ShareRowExclusive;
            let both = match referenced {
                Some(r) if r.name != at.table.name && at.lock == referenced_lock => {
                    format!("{} and on {}, blocking INSERT, UPDATE and DELETE on both,", at.table.describe(), r.describe())
                }
                Some(r) if r.name != at.table.name => format!(
                    "{}, which {}, and {} lock on {}, which {},",
                    at.table.describe(),
                    at.lock.effect(),
                    referenced_lock.with_article(),
                    r.describe(),
                    referenced_lock.effect()
                ),
                _ => format!("{}, which {},", at.table.describe(), at.lock.effect()),
            };
            // ADD COLUMN c ... REFERENCES t: the column must exist before the NOT VALID step.
            let add_column = inline_column.as_ref().and_then(|col| {
                at.commands.iter().find_map(|c| match c {
                    AlterTableCmd::AddColumn { column, type_name, default_sql, .. } if column == col => {
                        let default = default_sql.as_ref().map(|d| format!(" DEFAULT {d}")).unwrap_or_default();
                        Some(format!("ALTER TABLE {} ADD COLUMN {column} {type_name}{default};\n", at.table.name))
                    }
                    _ => None,
                })
            });
            out.push(Finding {
                rule: &CONSTRAINT_MISSING_NOT_VALID,
                message: format!("adding foreign key {} would scan {} while blocking writes", constraint.name, at.table.name),
                detail: format!(
                    "ALTER TABLE takes {} lock on {both} while it checks every existing row of {} against the referenced table.",
                    at.lock.with_article(),
                    at.table.name
                ),
                hint: if partitioned {
                    format!(
                        "PostgreSQL cannot add a NOT VALID foreign key to a partitioned table: add it to each \
                         partition with NOT VALID, run VALIDATE CONSTRAINT on each, then add it to {} \
                         (PostgreSQL attaches the validated partition constraints instead of scanning).",
                        at.table.name
                    )
                } else {
                    let hint = not_valid_hint(&at.table.name, constraint);
                    match add_column {
                        Some(add) => hint.replacen(":\n", &format!(":\n{add}"), 1),
                        None => hint,
                    }
                },
            });
        }
        AlterTableCmd::ValidateConstraint { constraint, held_lock: Some(held), held_by: LockHolder::Transaction } => {
            let t = &at.table.name;
            out.push(Finding {
                rule: &CONSTRAINT_MISSING_NOT_VALID,
                message: format!(
                    "validating constraint {constraint} would scan {t} while this transaction holds {} lock on it",
                    held.with_article()
                ),
                detail: format!(
                    "VALIDATE CONSTRAINT itself needs only SHARE UPDATE EXCLUSIVE, but this transaction already holds {} \
                     lock on {}, which {}, and keeps it while every existing row is checked: NOT VALID and VALIDATE \
                     in one transaction are as blocking as adding the constraint directly.",
                    held.with_article(),
                    at.table.describe(),
                    held.effect()
                ),
                hint: format!(
                    "Commit after ADD CONSTRAINT ... NOT VALID and run the validation in a transaction of its own \
                     (a separate migration, or a non-transactional step of the migration tool):\n\
                     ALTER TABLE {t} VALIDATE CONSTRAINT {constraint};"
                ),
            });
        }
        AlterTableCmd::ValidateConstraint { constraint, held_lock: Some(held), held_by: LockHolder::ThisStatement } => {
            let t = &at.table.name;
            out.push(Finding {
                rule: &CONSTRAINT_MISSING_NOT_VALID,
                message: format!(
                    "validating constraint {constraint} would scan {t} under the {} lock this ALTER TABLE takes for its other subcommands",
                    held.name()
                ),
                detail: format!(
                    "VALIDATE CONSTRAINT alone needs only SHARE UPDATE EXCLUSIVE, but one ALTER TABLE takes the strongest lock \
                     any of its subcommands needs: {} lock on {}, which {}, held while every existing row is checked.",
                    held.with_article(),
                    at.table.describe(),
                    held.effect()
                ),
                hint: format!(
                    "Run the other subcommands, commit, then validate in a statement and a transaction of its own:\n\
                     ALTER TABLE {t} VALIDATE CONSTRAINT {constraint};"
                ),
            });
        }
        AlterTableCmd::AddCheck { constraint, validates: true } => {
            out.push(Finding {
                rule: &CONSTRAINT_MISSING_NOT_VALID,
                message: format!(
                    "adding check constraint {} would scan {} under {} lock",
                    constraint.name,
                    at.table.name,
                    at.lock.with_article()
                ),
                detail: lock_detail("ALTER TABLE", at.lock, &at.table.describe(), "it checks every existing row"),
                hint: not_valid_hint(&at.table.name, constraint),
            });
        }
        _ => {}
    }
}

/// Flags ALTER DOMAIN ... ADD CHECK without NOT VALID, and ALTER DOMAIN ... VALIDATE
/// CONSTRAINT, when a table that stores the domain is neither small nor created in this
/// transaction.
pub fn on_domain(stmt: &Statement, ctx: &Context, out: &mut Vec<Finding>) {
    let Statement::AlterDomain(AlterDomain { domain, action, uses }) = stmt else { return };
    let scanned: Vec<_> = uses.iter().filter(|u| !ctx.exempt(&CONSTRAINT_MISSING_NOT_VALID, &u.table)).collect();
    if scanned.is_empty() {
        return;
    }
    let targets = super::domain_targets(&scanned);
    let per_column = "Domain constraints have no online validation. To check existing rows without blocking writes, put the \
                      check on each column instead (ALTER TABLE ... ADD CONSTRAINT ... CHECK (...) NOT VALID, then VALIDATE \
                      CONSTRAINT in its own transaction), or validate in a maintenance window.";
    let (message, command, hint) = match action {
        DomainAction::AddCheck { constraint, validates: true } => {
            let add = match &constraint.definition {
                Some(def) => format!("ALTER DOMAIN {domain} ADD CONSTRAINT {} {def} NOT VALID;", constraint.name),
                None => format!("ALTER DOMAIN {domain} ADD CONSTRAINT {} ... NOT VALID;", constraint.name),
            };
            (
                format!(
                    "adding check constraint {} to domain {domain} would scan every table that stores it while blocking writes",
                    constraint.name
                ),
                "ALTER DOMAIN ... ADD CONSTRAINT",
                format!(
                    "Add it without checking existing values (new and updated values are checked at once):\n{add}\n\
                     ALTER DOMAIN ... VALIDATE CONSTRAINT holds the same SHARE locks while it scans. {per_column}"
                ),
            )
        }
        DomainAction::ValidateConstraint { constraint } => (
            format!("validating constraint {constraint} of domain {domain} would scan every table that stores it while blocking writes"),
            "ALTER DOMAIN ... VALIDATE CONSTRAINT",
            format!("Unlike ALTER TABLE ... VALIDATE CONSTRAINT, the domain form blocks writes. {per_column}"),
        ),
        _ => return,
    };
    out.push(Finding {
        rule: &CONSTRAINT_MISSING_NOT_VALID,
        message,
        detail: lock_detail(command, LockMode::Share, &targets, &format!("it checks every value of {domain} in them")),
        hint,
    });
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
    use crate::rules::testutil::*;

    #[test]
    fn validate_in_the_transaction_that_holds_a_write_lock_is_flagged() {
        let validate = |held_lock| AlterTableCmd::ValidateConstraint {
            constraint: "orders_customer_fk".into(),
            held_lock,
            held_by: LockHolder::Transaction,
        };
        let f =
            check(&alter(table("public.orders", 70), LockMode::ShareUpdateExclusive, vec![validate(Some(LockMode::ShareRowExclusive))]));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule.id, "constraint-missing-not-valid");
        assert_eq!(
            f[0].message,
            "validating constraint orders_customer_fk would scan public.orders while this transaction holds a SHARE ROW EXCLUSIVE lock on it"
        );
        assert!(f[0].hint.ends_with("ALTER TABLE public.orders VALIDATE CONSTRAINT orders_customer_fk;"), "{}", f[0].hint);
        // In a transaction of its own: SHARE UPDATE EXCLUSIVE only, nothing to flag.
        assert!(check(&alter(table("public.orders", 70), LockMode::ShareUpdateExclusive, vec![validate(None)])).is_empty());
        // Small tables are exempt like the other scan rules.
        assert!(check(&alter(table("public.orders", 0), LockMode::ShareUpdateExclusive, vec![validate(Some(LockMode::AccessExclusive))]))
            .is_empty());
    }

    fn fk(validates: bool, named: bool) -> AlterTableCmd {
        AlterTableCmd::AddForeignKey {
            constraint: NewConstraint {
                name: "orders_customer_id_fkey".into(),
                named,
                definition: Some("FOREIGN KEY (customer_id) REFERENCES customers (id)".into()),
            },
            referenced: Some(table("public.customers", 50)),
            validates,
            inline_column: None,
        }
    }

    #[test]
    fn inline_foreign_key_on_a_new_column_names_each_lock_and_adds_the_column_first() {
        let add = AlterTableCmd::AddColumn {
            column: "customer_id".into(),
            type_name: "bigint".into(),
            rewrite: None,
            not_null_without_default: false,
            default_sql: Some("1".into()),
            not_null: false,
            replaces: None,
        };
        let fk = AlterTableCmd::AddForeignKey {
            constraint: NewConstraint {
                name: "orders_customer_id_fkey".into(),
                named: false,
                definition: Some("FOREIGN KEY (customer_id) REFERENCES customers (id)".into()),
            },
            referenced: Some(table("public.customers", 50)),
            validates: true,
            inline_column: Some("customer_id".into()),
        };
        let f = check(&alter(table("public.orders", 68), LockMode::AccessExclusive, vec![add, fk]));
        assert_eq!(f.len(), 1);
        assert!(f[0].detail.contains("ACCESS EXCLUSIVE lock on public.orders (68 MB"), "{}", f[0].detail);
        assert!(f[0].detail.contains("which blocks every read and write"), "{}", f[0].detail);
        assert!(f[0].detail.contains("a SHARE ROW EXCLUSIVE lock on public.customers (50 MB"), "{}", f[0].detail);
        let steps: Vec<&str> = f[0].hint.lines().skip(1).collect();
        assert_eq!(steps, [
            "ALTER TABLE public.orders ADD COLUMN customer_id bigint DEFAULT 1;",
            "ALTER TABLE public.orders ADD CONSTRAINT orders_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES customers (id) NOT VALID;",
            "ALTER TABLE public.orders VALIDATE CONSTRAINT orders_customer_id_fkey;",
        ]);
    }

    fn check_cmd(validates: bool) -> AlterTableCmd {
        AlterTableCmd::AddCheck {
            constraint: NewConstraint { name: "orders_amount_check".into(), named: false, definition: Some("CHECK (amount > 0)".into()) },
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
    fn constraints_on_small_tables_pass() {
        assert!(check(&alter(table("public.tiny", 0), LockMode::AccessExclusive, vec![fk(true, false), check_cmd(true)])).is_empty());
    }

    #[test]
    fn partitioned_table_foreign_key_hint_does_not_suggest_refused_not_valid() {
        let mut t = table("public.events", 100);
        t.kind = RelKind::PartitionedTable;
        let f = check(&alter(t, LockMode::ShareRowExclusive, vec![fk(true, false)]));
        assert!(f[0].hint.contains("cannot add a NOT VALID foreign key to a partitioned table"));
    }

    #[test]
    fn validate_in_the_same_alter_table_as_a_stronger_subcommand_is_flagged() {
        let add = AlterTableCmd::AddCheck {
            constraint: NewConstraint { name: "orders_amount_check".into(), named: true, definition: Some("CHECK (amount > 0)".into()) },
            validates: false,
        };
        let validate = AlterTableCmd::ValidateConstraint {
            constraint: "orders_amount_check".into(),
            held_lock: Some(LockMode::AccessExclusive),
            held_by: LockHolder::ThisStatement,
        };
        let f = check(&alter(table("public.orders", 68), LockMode::AccessExclusive, vec![add, validate]));
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].message,
            "validating constraint orders_amount_check would scan public.orders under the ACCESS EXCLUSIVE lock this ALTER TABLE takes for its other subcommands"
        );
        assert!(f[0].hint.ends_with("ALTER TABLE public.orders VALIDATE CONSTRAINT orders_amount_check;"));
    }

    fn domain(action: DomainAction, mb: u64) -> Statement {
        Statement::AlterDomain(AlterDomain {
            domain: "public.positive_int".into(),
            action,
            uses: vec![DomainUse { table: table("public.orders", mb), columns: vec!["boxes".into(), "\"Crates\"".into()] }],
        })
    }

    #[test]
    fn domain_check_that_validates_and_domain_validate_are_flagged() {
        let add = |validates| DomainAction::AddCheck {
            constraint: NewConstraint { name: "positive_int_check".into(), named: false, definition: Some("CHECK (VALUE > 0)".into()) },
            validates,
        };
        let f = check(&domain(add(true), 68));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule.id, "constraint-missing-not-valid");
        assert!(f[0].detail.starts_with("ALTER DOMAIN ... ADD CONSTRAINT takes a SHARE lock on public.orders (68 MB, about 1000000 rows) (columns boxes, \"Crates\")"), "{}", f[0].detail);
        assert!(f[0].hint.contains("ALTER DOMAIN public.positive_int ADD CONSTRAINT positive_int_check CHECK (VALUE > 0) NOT VALID;"));
        assert!(check(&domain(add(false), 68)).is_empty(), "NOT VALID passes");
        assert!(check(&domain(add(true), 0)).is_empty(), "small tables are exempt");
        let f = check(&domain(DomainAction::ValidateConstraint { constraint: "positive_int_check".into() }, 68));
        assert_eq!(f.len(), 1);
        assert!(f[0].message.starts_with("validating constraint positive_int_check of domain public.positive_int"));
    }

    #[test]
    fn several_subcommands_each_reported() {
        let f = check(&alter(table("public.orders", 68), LockMode::AccessExclusive, vec![fk(true, false), check_cmd(true)]));
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn enforcing_a_not_enforced_foreign_key_is_flagged_with_the_not_valid_route() {
        let cmd = AlterTableCmd::EnforceForeignKey {
            constraint: "orders_customer_fk".into(),
            definition: Some("FOREIGN KEY (customer_id) REFERENCES customers(id)".into()),
            referenced: Some(table("public.customers", 9)),
        };
        let f = check(&alter(table("public.orders", 68), LockMode::AccessExclusive, vec![cmd.clone()]));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule.id, "constraint-missing-not-valid");
        assert!(f[0].detail.contains("ACCESS EXCLUSIVE lock on public.orders (68 MB"), "{}", f[0].detail);
        assert!(
            f[0].hint.contains(
                "ALTER TABLE public.orders DROP CONSTRAINT orders_customer_fk, ADD CONSTRAINT orders_customer_fk \
             FOREIGN KEY (customer_id) REFERENCES customers(id) NOT VALID;\n\
             ALTER TABLE public.orders VALIDATE CONSTRAINT orders_customer_fk;"
            ),
            "{}",
            f[0].hint
        );
        assert!(check(&alter(table("public.tiny", 0), LockMode::AccessExclusive, vec![cmd])).is_empty());
    }
}

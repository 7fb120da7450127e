//! `table-rewrite`: VACUUM FULL, CLUSTER, and the ALTER TABLE forms that rewrite or copy the
//! whole table.
//!
//! PostgreSQL facts (documentation: VACUUM, CLUSTER, ALTER TABLE;
//! src/backend/commands/cluster.c, tablecmds.c):
//! - VACUUM FULL and CLUSTER copy the table into a new relfilenode and rebuild its indexes
//!   under ACCESS EXCLUSIVE: no reads, no writes for the duration.
//! - ALTER TABLE SET LOGGED / SET UNLOGGED / SET ACCESS METHOD rewrite the table, and
//!   SET TABLESPACE copies its files, all under ACCESS EXCLUSIVE.
//!   Online alternatives: pg_repack, pg_squeeze.

use super::{lock_detail, Context, Finding, TABLE_REWRITE};
use crate::model::{AlterTableCmd, LockMode, Statement};

const ONLINE: &str = "Rebuild the table online with pg_repack (pg_repack --table=<table>) or pg_squeeze, \
which copy it while reads and writes continue and take ACCESS EXCLUSIVE only briefly at the end; \
or run this in a maintenance window.";

/// Flags VACUUM FULL (of the whole database, or of tables that are neither small nor
/// created in this transaction), CLUSTER (bare, or of such a table), and each rewriting
/// subcommand of an ALTER TABLE on such a table (`AlterTableCmd::Rewrite`).
pub fn table_rewrite(stmt: &Statement, ctx: &Context, out: &mut Vec<Finding>) {
    match stmt {
        Statement::AlterTable(at) => {
            if ctx.exempt(&TABLE_REWRITE, &at.table) {
                return;
            }
            for cmd in &at.commands {
                if let AlterTableCmd::Rewrite { action } = cmd {
                    let hint = (*action == "SET UNLOGGED" || *action == "SET LOGGED").then(|| {
                        "Changing persistence always rewrites the table (and SET LOGGED writes all of it to WAL).".to_string()
                    });
                    rewrite_finding(&format!("ALTER TABLE ... {action}"), at.table.describe(), out, hint);
                }
            }
        }
        Statement::VacuumFull { tables, whole_database } => {
            if *whole_database {
                rewrite_finding("VACUUM FULL", "every table of the database".into(), out, None);
                return;
            }
            let big: Vec<String> = tables.iter().filter(|t| !ctx.exempt(&TABLE_REWRITE, t)).map(|t| t.describe()).collect();
            if !big.is_empty() {
                rewrite_finding(
                    "VACUUM FULL",
                    big.join(", "),
                    out,
                    Some("Plain VACUUM (without FULL) reclaims space for reuse without blocking reads or writes.".into()),
                );
            }
        }
        Statement::Cluster { table } => match table {
            None => rewrite_finding("CLUSTER", "every previously clustered table of the database".into(), out, None),
            Some(t) if !ctx.exempt(&TABLE_REWRITE, t) => rewrite_finding("CLUSTER", t.describe(), out, None),
            Some(_) => {}
        },
        _ => {}
    }
}

/// One `table-rewrite` finding for `what` (the command) on `target` (what it rewrites),
/// with the pg_repack / pg_squeeze hint after `extra_hint`.
fn rewrite_finding(what: &str, target: String, out: &mut Vec<Finding>, extra_hint: Option<String>) {
    let lock = LockMode::AccessExclusive;
    let mut hint = ONLINE.to_string();
    if let Some(h) = extra_hint {
        hint = format!("{h}\n{hint}");
    }
    out.push(Finding {
        rule: &TABLE_REWRITE,
        message: format!("{what} would rewrite {target}"),
        detail: lock_detail(what, lock, &target, "it rewrites the table"),
        hint,
    });
}

#[cfg(test)]
mod tests {
    use crate::model::*;
    use crate::rules::testutil::*;

    #[test]
    fn alter_table_rewrites_are_flagged_with_pg_repack_hint() {
        for action in ["SET LOGGED", "SET UNLOGGED", "SET TABLESPACE", "SET ACCESS METHOD"] {
            let f = check(&alter(table("public.orders", 68), LockMode::AccessExclusive, vec![AlterTableCmd::Rewrite { action }]));
            assert_eq!(f.len(), 1, "{action}");
            assert_eq!(f[0].rule.id, "table-rewrite");
            assert!(f[0].hint.contains("pg_repack"));
            assert!(f[0].hint.contains("pg_squeeze"));
        }
    }

    #[test]
    fn vacuum_full_and_cluster_are_flagged_unless_small() {
        let f = check(&Statement::VacuumFull { tables: vec![table("public.orders", 68)], whole_database: false });
        assert!(f[0].detail.contains("ACCESS EXCLUSIVE lock on public.orders (68 MB"));
        assert!(f[0].hint.contains("Plain VACUUM"));
        assert!(check(&Statement::VacuumFull { tables: vec![table("public.tiny", 0)], whole_database: false }).is_empty());
        assert_eq!(check(&Statement::VacuumFull { tables: vec![], whole_database: true }).len(), 1);
        assert_eq!(check(&Statement::Cluster { table: Some(table("public.orders", 68)) }).len(), 1);
        assert_eq!(check(&Statement::Cluster { table: None }).len(), 1);
        assert!(check(&Statement::Cluster { table: Some(new_table("public.n")) }).is_empty());
    }
}

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
//! - ALTER INDEX ... SET TABLESPACE and ALTER MATERIALIZED VIEW ... SET TABLESPACE copy the
//!   index or the view block by block under ACCESS EXCLUSIVE on it (ATExecSetTableSpace); an
//!   index locked that way also stops every query that plans against its table (the planner
//!   opens all of a table's indexes, plancat.c get_relation_info) and every write (which
//!   updates them). ALTER ... ALL IN TABLESPACE ... SET TABLESPACE locks every relation it
//!   moves first, then copies them one by one, all in one transaction (AlterTableMoveAll).
//! - A bare CLUSTER reclusters every table with an index marked clustered that the user owns,
//!   each in a transaction of its own (cluster.c, get_tables_to_cluster).

use super::{lock_detail, Context, Finding, TABLE_REWRITE};
use crate::model::{AlterTableCmd, LockMode, RelKind, Relation, Statement};

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
                    let hint = (*action == "SET UNLOGGED" || *action == "SET LOGGED")
                        .then(|| "Changing persistence always rewrites the table (and SET LOGGED writes all of it to WAL).".to_string());
                    match at.table.kind {
                        RelKind::Index => copy_finding(
                            &format!("ALTER INDEX ... {action}"),
                            at.table.describe(),
                            "it copies the index; every query that plans against its table, and every write to it, waits for \
                             the index's lock",
                            out,
                            Some(
                                "Build a copy in the new tablespace without blocking (CREATE INDEX CONCURRENTLY ... \
                                  TABLESPACE ...), then drop the old index with DROP INDEX CONCURRENTLY.",
                            ),
                        ),
                        RelKind::MaterializedView => copy_finding(
                            &format!("ALTER MATERIALIZED VIEW ... {action}"),
                            at.table.describe(),
                            "it copies the view",
                            out,
                            Some(
                                "Create a new materialized view in the new tablespace (CREATE MATERIALIZED VIEW ... \
                                  TABLESPACE ... AS ...), then swap the names in one short transaction.",
                            ),
                        ),
                        _ => rewrite_finding(&format!("ALTER TABLE ... {action}"), at.table.describe(), out, hint),
                    }
                }
            }
        }
        Statement::MoveAllToTablespace { kind, relations } => {
            let big: Vec<&Relation> = relations.iter().filter(|r| !ctx.exempt(&TABLE_REWRITE, r)).collect();
            if !big.is_empty() {
                copy_finding(
                    &format!("ALTER {kind} ALL IN TABLESPACE ... SET TABLESPACE"),
                    super::relation_list(&big),
                    "it copies each of them, holding every lock until the transaction ends",
                    out,
                    Some(
                        "Move the relations one at a time, the big ones online (pg_repack --tablespace, or CREATE INDEX \
                          CONCURRENTLY ... TABLESPACE ... for an index).",
                    ),
                );
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
        Statement::Cluster { table, clustered } => match table {
            None => {
                let big: Vec<&Relation> = clustered.iter().filter(|t| !ctx.exempt(&TABLE_REWRITE, t)).collect();
                if !big.is_empty() {
                    rewrite_finding("CLUSTER", super::relation_list(&big), out, None);
                }
            }
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

/// A `table-rewrite` finding for a copy (SET TABLESPACE of an index or a materialized view,
/// ALL IN TABLESPACE): `what` copies `target` under ACCESS EXCLUSIVE while `activity`.
fn copy_finding(what: &str, target: String, activity: &str, out: &mut Vec<Finding>, hint: Option<&str>) {
    let lock = LockMode::AccessExclusive;
    out.push(Finding {
        rule: &TABLE_REWRITE,
        message: format!("{what} would copy {target}"),
        detail: lock_detail(what, lock, &target, activity),
        hint: match hint {
            Some(h) => format!("{h}\n{ONLINE}"),
            None => ONLINE.to_string(),
        },
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
        assert_eq!(check(&Statement::Cluster { table: Some(table("public.orders", 68)), clustered: vec![] }).len(), 1);
        assert!(check(&Statement::Cluster { table: Some(new_table("public.n")), clustered: vec![] }).is_empty());
    }

    #[test]
    fn bare_cluster_is_flagged_only_for_big_clustered_tables() {
        let bare = |clustered| Statement::Cluster { table: None, clustered };
        let f = check(&bare(vec![table("public.orders", 68), table("public.tiny", 0)]));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].message, "CLUSTER would rewrite public.orders (68 MB, about 1000000 rows)");
        assert!(check(&bare(vec![table("public.tiny", 0)])).is_empty());
        assert!(check(&bare(vec![])).is_empty());
    }

    #[test]
    fn moving_an_index_or_a_view_to_another_tablespace_is_a_copy() {
        let mut index = table("public.orders_pkey", 20);
        index.kind = RelKind::Index;
        let f = check(&alter(index, LockMode::AccessExclusive, vec![AlterTableCmd::Rewrite { action: "SET TABLESPACE" }]));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].message, "ALTER INDEX ... SET TABLESPACE would copy public.orders_pkey (20 MB, about 1000000 rows)");
        assert!(f[0].hint.starts_with("Build a copy in the new tablespace"), "{}", f[0].hint);
        let mut view = table("public.daily", 20);
        view.kind = RelKind::MaterializedView;
        let f = check(&alter(view, LockMode::AccessExclusive, vec![AlterTableCmd::Rewrite { action: "SET TABLESPACE" }]));
        assert!(f[0].message.starts_with("ALTER MATERIALIZED VIEW ... SET TABLESPACE would copy public.daily"));
        let all = |relations| Statement::MoveAllToTablespace { kind: "INDEX", relations };
        let f = check(&all(vec![table("public.a", 0), table("public.b", 30)]));
        assert_eq!(f.len(), 1);
        assert!(
            f[0].message.starts_with("ALTER INDEX ALL IN TABLESPACE ... SET TABLESPACE would copy public.b (30 MB"),
            "{}",
            f[0].message
        );
        assert!(check(&all(vec![table("public.a", 0)])).is_empty());
    }
}

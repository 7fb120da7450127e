//! Whole-table rewrites: `table-rewrite`, `require-concurrent-refresh`.
//!
//! PostgreSQL facts (documentation: VACUUM, CLUSTER, ALTER TABLE, REFRESH MATERIALIZED
//! VIEW; src/backend/commands/cluster.c, tablecmds.c, matview.c):
//! - VACUUM FULL and CLUSTER copy the table into a new relfilenode and rebuild its indexes
//!   under ACCESS EXCLUSIVE: no reads, no writes for the duration.
//! - ALTER TABLE SET LOGGED / SET UNLOGGED / SET ACCESS METHOD rewrite the table, and
//!   SET TABLESPACE copies its files, all under ACCESS EXCLUSIVE.
//!   Online alternatives: pg_repack, pg_squeeze.
//! - REFRESH MATERIALIZED VIEW takes ACCESS EXCLUSIVE on the view (reads wait);
//!   CONCURRENTLY (needs a unique index, and a populated view) takes EXCLUSIVE, reads go on.

use super::{lock_detail, Context, Finding, REQUIRE_CONCURRENT_REFRESH, TABLE_REWRITE};
use crate::model::{AlterTable, AlterTableCmd, LockMode, Relation};

const ONLINE: &str = "Rebuild the table online with pg_repack (pg_repack --table=<table>) or pg_squeeze, \
which copy it while reads and writes continue and take ACCESS EXCLUSIVE only briefly at the end; \
or run this in a maintenance window.";

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

pub fn check_alter_table(at: &AlterTable, ctx: &Context, out: &mut Vec<Finding>) {
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

pub fn check_vacuum_full(tables: &[Relation], whole_database: bool, ctx: &Context, out: &mut Vec<Finding>) {
    if whole_database {
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

pub fn check_cluster(table: Option<&Relation>, ctx: &Context, out: &mut Vec<Finding>) {
    match table {
        None => rewrite_finding("CLUSTER", "every previously clustered table of the database".into(), out, None),
        Some(t) if !ctx.exempt(&TABLE_REWRITE, t) => rewrite_finding("CLUSTER", t.describe(), out, None),
        Some(_) => {}
    }
}

pub fn check_refresh(view: &Relation, concurrent: bool, populated: bool, with_no_data: bool, ctx: &Context, out: &mut Vec<Finding>) {
    let rule = &REQUIRE_CONCURRENT_REFRESH;
    if concurrent || !populated || with_no_data || ctx.exempt(rule, view) {
        return;
    }
    let lock = LockMode::AccessExclusive;
    out.push(Finding {
        rule,
        message: format!("REFRESH MATERIALIZED VIEW would block reads of {}", view.name),
        detail: lock_detail("REFRESH MATERIALIZED VIEW", lock, &view.describe(), "it recomputes the whole view"),
        hint: format!(
            "Refresh without blocking reads (needs a unique index on the view covering all rows):\n\
             REFRESH MATERIALIZED VIEW CONCURRENTLY {};",
            view.name
        ),
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

    fn refresh(concurrent: bool, populated: bool) -> Statement {
        let mut v = table("public.daily_sales", 20);
        v.kind = RelKind::MaterializedView;
        Statement::RefreshMatView { view: v, concurrent, populated, with_no_data: false }
    }

    #[test]
    fn refresh_of_populated_view_without_concurrently_is_flagged() {
        let f = check(&refresh(false, true));
        assert_eq!(f[0].rule.id, "require-concurrent-refresh");
        assert!(f[0].hint.contains("REFRESH MATERIALIZED VIEW CONCURRENTLY public.daily_sales;"));
        assert!(check(&refresh(true, true)).is_empty());
        // The first refresh of an unpopulated view cannot be concurrent, and nobody can read it yet.
        assert!(check(&refresh(false, false)).is_empty());
    }
}

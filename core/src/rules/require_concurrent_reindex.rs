//! `require-concurrent-reindex`: REINDEX without CONCURRENTLY.
//!
//! PostgreSQL facts (documentation: REINDEX "Rebuilding Indexes Concurrently";
//! src/backend/commands/indexcmds.c):
//! - REINDEX takes SHARE on the table (writes wait) and ACCESS EXCLUSIVE on each index
//!   (reads that would use it wait); REINDEX CONCURRENTLY (PostgreSQL 12+) takes SHARE UPDATE
//!   EXCLUSIVE; REINDEX SYSTEM has no concurrent form.
//! - REINDEX SCHEMA, DATABASE and SYSTEM reindex each table and materialized view they
//!   select (ReindexMultipleTables) in a transaction of its own: each table is blocked for
//!   its own rebuild only, so each is judged by its own size.

use super::{Context, Finding, REQUIRE_CONCURRENT_REINDEX};
use crate::model::{LockMode, ReindexTarget, Relation, Statement};

/// Flags a REINDEX without CONCURRENTLY of an index or a table, or of a schema, a database or
/// the system catalogs that reaches a table, that is neither small nor created in this
/// transaction.
pub fn require_concurrent_reindex(stmt: &Statement, ctx: &Context, out: &mut Vec<Finding>) {
    let Statement::Reindex(ri) = stmt else { return };
    let rule = &REQUIRE_CONCURRENT_REINDEX;
    if ri.concurrent {
        return;
    }
    let what = match (&ri.target, &ri.table) {
        (ReindexTarget::Index | ReindexTarget::Table, Some(t)) => {
            if ctx.exempt(rule, t) {
                return;
            }
            t.describe()
        }
        (ReindexTarget::Index | ReindexTarget::Table, None) => return,
        (ReindexTarget::Schema | ReindexTarget::Database | ReindexTarget::System, _) => {
            let big: Vec<&Relation> = ri.tables.iter().filter(|t| !ctx.exempt(rule, t)).collect();
            if big.is_empty() {
                return;
            }
            super::relation_list(&big)
        }
    };
    let hint = match (&ri.target, &ri.concurrent_sql) {
        (ReindexTarget::System, _) => "REINDEX SYSTEM has no concurrent form: run it in a maintenance window.".to_string(),
        (_, Some(sql)) => {
            format!("Rebuild without blocking writes (REINDEX CONCURRENTLY, PostgreSQL 12+, outside a transaction block):\n{sql};")
        }
        (_, None) => "Add CONCURRENTLY after REINDEX INDEX|TABLE|SCHEMA|DATABASE and run it outside a transaction block.".to_string(),
    };
    out.push(Finding {
        rule,
        message: format!(
            "REINDEX would block writes to {}",
            match (&ri.table, ri.target) {
                (Some(t), _) => t.name.clone(),
                (None, ReindexTarget::Schema) => "tables of the schema".to_string(),
                (None, ReindexTarget::Database) => "tables of the database".to_string(),
                (None, _) => "system catalogs".to_string(),
            }
        ),
        detail: format!(
            "REINDEX takes a SHARE lock on {what}, which {}, and an ACCESS EXCLUSIVE lock on each index it rebuilds, \
             so queries that would use the index wait as well, for the whole rebuild{}.",
            LockMode::Share.effect(),
            if ri.table.is_none() { " of each table (one transaction per table)" } else { "" }
        ),
        hint,
    });
}

#[cfg(test)]
mod tests {
    use crate::model::*;
    use crate::rules::testutil::*;

    fn reindex(target: ReindexTarget, concurrent: bool, table: Option<Relation>) -> Statement {
        Statement::Reindex(Reindex {
            target,
            concurrent,
            table,
            tables: vec![],
            concurrent_sql: Some("REINDEX TABLE CONCURRENTLY orders".into()),
        })
    }

    fn reindex_many(target: ReindexTarget, tables: Vec<Relation>) -> Statement {
        Statement::Reindex(Reindex { target, concurrent: false, table: None, tables, concurrent_sql: None })
    }

    #[test]
    fn reindex_without_concurrently_is_flagged() {
        let f = check(&reindex(ReindexTarget::Table, false, Some(table("public.orders", 68))));
        assert_eq!(f[0].rule.id, "require-concurrent-reindex");
        assert!(f[0].hint.contains("REINDEX TABLE CONCURRENTLY orders;"));
        let f = check(&reindex_many(ReindexTarget::Database, vec![table("public.orders", 68), table("public.tiny", 0)]));
        assert_eq!(f[0].message, "REINDEX would block writes to tables of the database");
        assert!(f[0].detail.contains("SHARE lock on public.orders (68 MB, about 1000000 rows), which"), "{}", f[0].detail);
        let f = check(&reindex_many(ReindexTarget::System, vec![table("pg_catalog.pg_class", 2)]));
        assert!(f[0].hint.contains("no concurrent form"));
    }

    #[test]
    fn reindex_of_a_schema_or_database_of_small_tables_passes() {
        assert!(check(&reindex_many(ReindexTarget::Schema, vec![table("s.tiny", 0), new_table("s.n")])).is_empty());
        assert!(check(&reindex_many(ReindexTarget::Database, vec![])).is_empty());
    }

    #[test]
    fn concurrent_small_or_new_reindex_passes() {
        assert!(check(&reindex(ReindexTarget::Table, true, Some(table("public.orders", 68)))).is_empty());
        assert!(check(&reindex(ReindexTarget::Index, false, Some(table("public.tiny", 0)))).is_empty());
        assert!(check(&reindex(ReindexTarget::Table, false, Some(new_table("public.n")))).is_empty());
    }
}

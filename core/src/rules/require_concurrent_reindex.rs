//! `require-concurrent-reindex`: REINDEX without CONCURRENTLY.
//!
//! PostgreSQL facts (documentation: REINDEX "Rebuilding Indexes Concurrently";
//! src/backend/commands/indexcmds.c):
//! - REINDEX takes SHARE on the table (writes wait) and ACCESS EXCLUSIVE on each index
//!   (reads that would use it wait); REINDEX CONCURRENTLY (PostgreSQL 12+) takes SHARE UPDATE
//!   EXCLUSIVE; REINDEX SYSTEM has no concurrent form.

use super::{Context, Finding, REQUIRE_CONCURRENT_REINDEX};
use crate::model::{LockMode, ReindexTarget, Statement};

/// Flags a REINDEX without CONCURRENTLY: of an index or a table that is neither small nor
/// created in this transaction, and always of a schema, a database or the system catalogs.
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
        (ReindexTarget::Schema, _) => "every table of the schema".to_string(),
        (ReindexTarget::Database, _) => "every table of the database".to_string(),
        (ReindexTarget::System, _) => "every system catalog".to_string(),
    };
    let hint = match (&ri.target, &ri.concurrent_sql) {
        (ReindexTarget::System, _) => "REINDEX SYSTEM has no concurrent form: run it in a maintenance window.".to_string(),
        (_, Some(sql)) => format!(
            "Rebuild without blocking writes (REINDEX CONCURRENTLY, PostgreSQL 12+, outside a transaction block):\n{sql};"
        ),
        (_, None) => "Add CONCURRENTLY after REINDEX INDEX|TABLE|SCHEMA|DATABASE and run it outside a transaction block.".to_string(),
    };
    out.push(Finding {
        rule,
        message: format!("REINDEX would block writes to {}", ri.table.as_ref().map_or(what.as_str(), |t| t.name.as_str())),
        detail: format!(
            "REINDEX takes a SHARE lock on {what}, which {}, and an ACCESS EXCLUSIVE lock on each index it rebuilds, \
             so queries that would use the index wait as well, for the whole rebuild.",
            LockMode::Share.effect()
        ),
        hint,
    });
}

#[cfg(test)]
mod tests {
    use crate::model::*;
    use crate::rules::testutil::*;

    fn reindex(target: ReindexTarget, concurrent: bool, table: Option<Relation>) -> Statement {
        Statement::Reindex(Reindex { target, concurrent, table, concurrent_sql: Some("REINDEX TABLE CONCURRENTLY orders".into()) })
    }

    #[test]
    fn reindex_without_concurrently_is_flagged() {
        let f = check(&reindex(ReindexTarget::Table, false, Some(table("public.orders", 68))));
        assert_eq!(f[0].rule.id, "require-concurrent-reindex");
        assert!(f[0].hint.contains("REINDEX TABLE CONCURRENTLY orders;"));
        let f = check(&reindex(ReindexTarget::Database, false, None));
        assert!(f[0].detail.contains("every table of the database"));
        let f = check(&reindex(ReindexTarget::System, false, None));
        assert!(f[0].hint.contains("no concurrent form"));
    }

    #[test]
    fn concurrent_small_or_new_reindex_passes() {
        assert!(check(&reindex(ReindexTarget::Table, true, Some(table("public.orders", 68)))).is_empty());
        assert!(check(&reindex(ReindexTarget::Index, false, Some(table("public.tiny", 0)))).is_empty());
        assert!(check(&reindex(ReindexTarget::Table, false, Some(new_table("public.n")))).is_empty());
    }
}

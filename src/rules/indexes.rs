//! Index rules: `require-concurrent-index-creation`, `require-concurrent-index-deletion`,
//! `require-concurrent-reindex`.
//!
//! PostgreSQL facts (documentation: CREATE INDEX "Building Indexes Concurrently",
//! DROP INDEX, REINDEX "Rebuilding Indexes Concurrently"; src/backend/commands/indexcmds.c):
//! - CREATE INDEX holds a SHARE lock on the table for the whole build: reads continue,
//!   INSERT/UPDATE/DELETE wait. CONCURRENTLY takes SHARE UPDATE EXCLUSIVE instead, cannot
//!   run inside a transaction block, and is not supported on partitioned tables (up to
//!   PostgreSQL 18); `CREATE INDEX ... ON ONLY parent` builds nothing.
//! - DROP INDEX takes ACCESS EXCLUSIVE on the index's table; DROP INDEX CONCURRENTLY waits
//!   for conflicting transactions instead, one index per statement, no CASCADE, and not for
//!   an index on a partitioned table.
//! - REINDEX takes SHARE on the table (writes wait) and ACCESS EXCLUSIVE on each index
//!   (reads that would use it wait); REINDEX CONCURRENTLY (PostgreSQL 12+) takes SHARE UPDATE
//!   EXCLUSIVE; REINDEX SYSTEM has no concurrent form.

use super::{Context, Finding, REQUIRE_CONCURRENT_INDEX_CREATION, REQUIRE_CONCURRENT_INDEX_DELETION, REQUIRE_CONCURRENT_REINDEX};
use crate::model::{CreateIndex, DropIndex, LockMode, RelKind, Reindex, ReindexTarget};

pub fn check_create_index(ci: &CreateIndex, ctx: &Context, out: &mut Vec<Finding>) {
    let rule = &REQUIRE_CONCURRENT_INDEX_CREATION;
    if ci.concurrent || ctx.exempt(rule, &ci.table) {
        return;
    }
    let lock = LockMode::Share;
    let hint = if ci.table.kind == RelKind::PartitionedTable {
        format!(
            "CREATE INDEX CONCURRENTLY is not supported on a partitioned table. Create the index \
             on the parent only (CREATE INDEX ... ON ONLY {t} ...), build each partition's index \
             with CREATE INDEX CONCURRENTLY, then attach each one with ALTER INDEX ... ATTACH PARTITION.",
            t = ci.table.name
        )
    } else {
        match &ci.concurrent_sql {
            Some(sql) => format!(
                "Build the index without blocking writes (CONCURRENTLY cannot run inside a transaction block):\n{sql};"
            ),
            None => "Add CONCURRENTLY after CREATE [UNIQUE] INDEX and run it outside a transaction block.".to_string(),
        }
    };
    out.push(Finding {
        rule,
        message: format!("CREATE INDEX would block writes to {}", ci.table.name),
        detail: format!(
            "CREATE INDEX takes {} lock on {}, which {} for the whole index build.",
            lock.with_article(),
            ci.table.describe(),
            lock.effect()
        ),
        hint,
    });
}

pub fn check_drop_index(di: &DropIndex, ctx: &Context, out: &mut Vec<Finding>) {
    let rule = &REQUIRE_CONCURRENT_INDEX_DELETION;
    if di.concurrent {
        return;
    }
    let risky: Vec<_> = di
        .indexes
        .iter()
        .filter(|ix| !ix.created_in_transaction && !ctx.exempt(rule, &ix.table))
        .collect();
    let Some(first) = risky.first() else { return };
    let lock = LockMode::AccessExclusive;
    let mut tables: Vec<String> = risky.iter().map(|ix| ix.table.describe()).collect();
    tables.dedup();
    let if_exists = if di.if_exists { "IF EXISTS " } else { "" };
    let mut hint = String::from(
        "Drop the index without blocking reads and writes, one index per statement, outside a transaction block:",
    );
    for ix in &risky {
        if ix.partitioned {
            hint.push_str(&format!(
                "\n{} is an index on a partitioned table, which cannot be dropped CONCURRENTLY: \
                 drop it with a short lock_timeout and retry, at a quiet time.",
                ix.name
            ));
        } else {
            hint.push_str(&format!("\nDROP INDEX CONCURRENTLY {if_exists}{};", ix.name));
        }
    }
    if di.cascade {
        hint.push_str("\nDROP INDEX CONCURRENTLY does not support CASCADE: drop the dependent objects first.");
    }
    out.push(Finding {
        rule,
        message: format!("DROP INDEX would block reads and writes on {}", first.table.name),
        detail: format!(
            "DROP INDEX takes {} lock on {}, which {}; while it waits for the lock, every later query on the table queues behind it.",
            lock.with_article(),
            tables.join(" and "),
            lock.effect()
        ),
        hint,
    });
}

pub fn check_reindex(ri: &Reindex, ctx: &Context, out: &mut Vec<Finding>) {
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
    use crate::rules::REQUIRE_CONCURRENT_INDEX_CREATION;

    fn create(table: Relation, concurrent: bool) -> Statement {
        Statement::CreateIndex(CreateIndex {
            table,
            concurrent,
            concurrent_sql: Some("CREATE INDEX CONCURRENTLY orders_c_idx ON orders (c)".into()),
        })
    }

    #[test]
    fn plain_create_index_on_existing_table_is_flagged_with_concurrent_hint() {
        let f = check(&create(table("public.orders", 68), false));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule, &REQUIRE_CONCURRENT_INDEX_CREATION);
        assert!(f[0].detail.contains("SHARE lock on public.orders (68 MB"), "{}", f[0].detail);
        assert!(f[0].detail.contains("blocks INSERT, UPDATE and DELETE"));
        assert!(f[0].hint.contains("CREATE INDEX CONCURRENTLY orders_c_idx ON orders (c);"));
    }

    #[test]
    fn concurrent_create_index_passes() {
        assert!(check(&create(table("public.orders", 68), true)).is_empty());
    }

    #[test]
    fn create_index_on_table_created_in_transaction_or_small_passes() {
        assert!(check(&create(new_table("public.fresh"), false)).is_empty());
        assert!(check(&create(table("public.tiny", 0), false)).is_empty());
    }

    #[test]
    fn partitioned_table_hint_explains_on_only_recipe() {
        let mut t = table("public.events", 500);
        t.kind = RelKind::PartitionedTable;
        let f = check(&create(t, false));
        assert!(f[0].hint.contains("ON ONLY public.events"));
        assert!(f[0].hint.contains("ATTACH PARTITION"));
    }

    fn drop(concurrent: bool, cascade: bool, new: bool, partitioned: bool) -> Statement {
        Statement::DropIndex(DropIndex {
            concurrent,
            if_exists: true,
            cascade,
            indexes: vec![DroppedIndex {
                name: "public.orders_c_idx".into(),
                partitioned,
                created_in_transaction: new,
                table: table("public.orders", 68),
            }],
        })
    }

    #[test]
    fn plain_drop_index_is_flagged_with_concurrent_hint() {
        let f = check(&drop(false, false, false, false));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule.id, "require-concurrent-index-deletion");
        assert!(f[0].detail.contains("ACCESS EXCLUSIVE lock on public.orders"));
        assert!(f[0].hint.contains("DROP INDEX CONCURRENTLY IF EXISTS public.orders_c_idx;"));
        assert!(!f[0].hint.contains("CASCADE"));
    }

    #[test]
    fn drop_index_hints_respect_postgres_limits() {
        let f = check(&drop(false, true, false, false));
        assert!(f[0].hint.contains("does not support CASCADE"));
        let f = check(&drop(false, false, false, true));
        assert!(f[0].hint.contains("cannot be dropped CONCURRENTLY"));
        assert!(!f[0].hint.contains("DROP INDEX CONCURRENTLY IF EXISTS"));
    }

    #[test]
    fn drop_index_on_small_table_is_still_flagged_lock_queue_does_not_care_about_size() {
        let mut s = drop(false, false, false, false);
        if let Statement::DropIndex(d) = &mut s {
            d.indexes[0].table.size_bytes = 8192;
        }
        assert_eq!(check(&s).len(), 1);
    }

    #[test]
    fn concurrent_drop_and_drop_of_new_index_pass() {
        assert!(check(&drop(true, false, false, false)).is_empty());
        assert!(check(&drop(false, false, true, false)).is_empty());
    }

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

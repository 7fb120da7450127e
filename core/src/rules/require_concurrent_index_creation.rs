//! `require-concurrent-index-creation`: CREATE INDEX without CONCURRENTLY on a table other
//! sessions use.
//!
//! PostgreSQL facts (documentation: CREATE INDEX "Building Indexes Concurrently";
//! src/backend/commands/indexcmds.c):
//! - CREATE INDEX holds a SHARE lock on the table for the whole build: reads continue,
//!   INSERT/UPDATE/DELETE wait. CONCURRENTLY takes SHARE UPDATE EXCLUSIVE instead, cannot
//!   run inside a transaction block, and is not supported on partitioned tables (up to
//!   PostgreSQL 18); `CREATE INDEX ... ON ONLY parent` builds nothing.

use super::{Context, Finding, REQUIRE_CONCURRENT_INDEX_CREATION};
use crate::model::{LockMode, RelKind, Statement};

/// Flags a CREATE INDEX without CONCURRENTLY on a table that is neither small nor created in
/// this transaction; the hint is the CONCURRENTLY form of the statement, or the ON ONLY
/// recipe for a partitioned table.
pub fn require_concurrent_index_creation(stmt: &Statement, ctx: &Context, out: &mut Vec<Finding>) {
    let Statement::CreateIndex(ci) = stmt else { return };
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
            Some(sql) => format!("Build the index without blocking writes (CONCURRENTLY cannot run inside a transaction block):\n{sql};"),
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
}

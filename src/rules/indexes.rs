//! Index rules: `require-concurrent-index-creation`, `require-concurrent-index-deletion`.
//!
//! PostgreSQL facts (documentation: CREATE INDEX "Building Indexes Concurrently",
//! DROP INDEX; src/backend/commands/indexcmds.c):
//! - CREATE INDEX holds a SHARE lock on the table for the whole build: reads continue,
//!   INSERT/UPDATE/DELETE wait. CONCURRENTLY takes SHARE UPDATE EXCLUSIVE instead, cannot
//!   run inside a transaction block, and is not supported on partitioned tables (up to
//!   PostgreSQL 18).
//! - DROP INDEX takes ACCESS EXCLUSIVE on the index's table; DROP INDEX CONCURRENTLY waits
//!   for conflicting transactions instead, one index per statement, no CASCADE.

use super::{Finding, REQUIRE_CONCURRENT_INDEX_CREATION, REQUIRE_CONCURRENT_INDEX_DELETION};
use crate::model::{CreateIndex, DropIndex, LockMode, RelKind};

pub fn check_create_index(ci: &CreateIndex, out: &mut Vec<Finding>) {
    if ci.concurrent || ci.table.created_in_transaction {
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
        rule: &REQUIRE_CONCURRENT_INDEX_CREATION,
        message: format!("CREATE INDEX would block writes to {}", ci.table.name),
        detail: format!(
            "CREATE INDEX takes a {lock} lock on {}, which {} for the whole index build.",
            ci.table.describe(),
            lock.effect()
        ),
        hint,
    });
}

pub fn check_drop_index(di: &DropIndex, out: &mut Vec<Finding>) {
    if di.concurrent {
        return;
    }
    let risky: Vec<_> = di
        .indexes
        .iter()
        .filter(|ix| !ix.created_in_transaction && !ix.table.created_in_transaction)
        .collect();
    let Some(first) = risky.first() else { return };
    let lock = LockMode::AccessExclusive;
    let tables: Vec<String> = {
        let mut t: Vec<String> = risky.iter().map(|ix| ix.table.describe()).collect();
        t.dedup();
        t
    };
    let if_exists = if di.if_exists { "IF EXISTS " } else { "" };
    let mut hint = String::from(
        "Drop the index without blocking reads and writes, one index per statement, outside a transaction block:",
    );
    for ix in &risky {
        hint.push_str(&format!("\nDROP INDEX CONCURRENTLY {if_exists}{};", ix.name));
    }
    if di.cascade {
        hint.push_str("\nDROP INDEX CONCURRENTLY does not support CASCADE: drop the dependent objects first.");
    }
    out.push(Finding {
        rule: &REQUIRE_CONCURRENT_INDEX_DELETION,
        message: format!("DROP INDEX would block reads and writes on {}", first.table.name),
        detail: format!(
            "DROP INDEX takes an {lock} lock on {}, which {}; while it waits for the lock, every later query on the table queues behind it.",
            tables.join(" and "),
            lock.effect()
        ),
        hint,
    });
}

#[cfg(test)]
mod tests {
    use crate::model::*;
    use crate::rules::testutil::*;
    use crate::rules::{check, REQUIRE_CONCURRENT_INDEX_CREATION};

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
    fn create_index_on_table_created_in_transaction_passes() {
        assert!(check(&create(new_table("public.fresh"), false)).is_empty());
    }

    #[test]
    fn partitioned_table_hint_explains_on_only_recipe() {
        let mut t = table("public.events", 500);
        t.kind = RelKind::PartitionedTable;
        let f = check(&create(t, false));
        assert!(f[0].hint.contains("ON ONLY public.events"));
        assert!(f[0].hint.contains("ATTACH PARTITION"));
    }

    fn drop(concurrent: bool, cascade: bool, new: bool) -> Statement {
        Statement::DropIndex(DropIndex {
            concurrent,
            if_exists: true,
            cascade,
            indexes: vec![DroppedIndex {
                name: "public.orders_c_idx".into(),
                created_in_transaction: new,
                table: table("public.orders", 68),
            }],
        })
    }

    #[test]
    fn plain_drop_index_is_flagged_with_concurrent_hint() {
        let f = check(&drop(false, false, false));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule.id, "require-concurrent-index-deletion");
        assert!(f[0].detail.contains("ACCESS EXCLUSIVE lock on public.orders"));
        assert!(f[0].hint.contains("DROP INDEX CONCURRENTLY IF EXISTS public.orders_c_idx;"));
        assert!(!f[0].hint.contains("CASCADE"));
    }

    #[test]
    fn drop_index_cascade_hint_mentions_cascade_limit() {
        let f = check(&drop(false, true, false));
        assert!(f[0].hint.contains("does not support CASCADE"));
    }

    #[test]
    fn concurrent_drop_and_drop_of_new_index_pass() {
        assert!(check(&drop(true, false, false)).is_empty());
        assert!(check(&drop(false, false, true)).is_empty());
    }
}

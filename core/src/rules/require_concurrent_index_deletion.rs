//! `require-concurrent-index-deletion`: DROP INDEX without CONCURRENTLY.
//!
//! PostgreSQL facts (documentation: DROP INDEX; src/backend/commands/tablecmds.c,
//! RangeVarCallbackForDropRelation):
//! - DROP INDEX takes ACCESS EXCLUSIVE on the index's table; DROP INDEX CONCURRENTLY waits
//!   for conflicting transactions instead, one index per statement, no CASCADE, and not for
//!   an index on a partitioned table.
//! - The drop itself is quick; the danger is the lock queue, so the table's size does not
//!   matter (family `Lock`).

use super::{Context, Finding, REQUIRE_CONCURRENT_INDEX_DELETION};
use crate::model::{LockMode, Statement};

/// Flags a DROP INDEX without CONCURRENTLY of an index that was not created in this
/// transaction, whatever the table's size; the hint has one DROP INDEX CONCURRENTLY per
/// index and says which of PostgreSQL's limits (CASCADE, partitioned tables) apply.
pub fn require_concurrent_index_deletion(stmt: &Statement, ctx: &Context, out: &mut Vec<Finding>) {
    let Statement::DropIndex(di) = stmt else { return };
    let rule = &REQUIRE_CONCURRENT_INDEX_DELETION;
    if di.concurrent {
        return;
    }
    let risky: Vec<_> = di.indexes.iter().filter(|ix| !ix.created_in_transaction && !ctx.exempt(rule, &ix.table)).collect();
    let Some(first) = risky.first() else { return };
    let lock = LockMode::AccessExclusive;
    let mut tables: Vec<String> = risky.iter().map(|ix| ix.table.describe()).collect();
    tables.dedup();
    let if_exists = if di.if_exists { "IF EXISTS " } else { "" };
    let mut hint = String::from("Drop the index without blocking reads and writes, one index per statement, outside a transaction block:");
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

#[cfg(test)]
mod tests {
    use crate::model::*;
    use crate::rules::testutil::*;

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
}

//! `require-concurrent-refresh`: REFRESH MATERIALIZED VIEW without CONCURRENTLY on a
//! populated view.
//!
//! PostgreSQL facts (documentation: REFRESH MATERIALIZED VIEW;
//! src/backend/commands/matview.c):
//! - REFRESH MATERIALIZED VIEW takes ACCESS EXCLUSIVE on the view (reads wait);
//!   CONCURRENTLY (needs a unique index, and a populated view) takes EXCLUSIVE, reads go on.

use super::{lock_detail, Context, Finding, REQUIRE_CONCURRENT_REFRESH};
use crate::model::{LockMode, Statement};

/// Flags a REFRESH MATERIALIZED VIEW without CONCURRENTLY (and without WITH NO DATA) of a
/// populated view that is neither small nor created in this transaction: the first refresh
/// of an unpopulated view cannot be concurrent, and nobody can read that view yet.
pub fn require_concurrent_refresh(stmt: &Statement, ctx: &Context, out: &mut Vec<Finding>) {
    let Statement::RefreshMatView { view, concurrent, populated, with_no_data } = stmt else { return };
    let rule = &REQUIRE_CONCURRENT_REFRESH;
    if *concurrent || !*populated || *with_no_data || ctx.exempt(rule, view) {
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

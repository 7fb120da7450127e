//! `require-concurrent-refresh`: REFRESH MATERIALIZED VIEW without CONCURRENTLY on a
//! populated view.
//!
//! PostgreSQL facts (documentation: REFRESH MATERIALIZED VIEW;
//! src/backend/commands/matview.c):
//! - REFRESH MATERIALIZED VIEW takes ACCESS EXCLUSIVE on the view (reads wait);
//!   CONCURRENTLY (needs a unique index, and a populated view) takes EXCLUSIVE, reads go on.
//! - REFRESH ... WITH NO DATA marks the view unpopulated (relispopulated, matview.c
//!   SetMatViewPopulatedState) in the refreshing transaction only; other sessions read the
//!   committed, populated view, and wait for the ACCESS EXCLUSIVE lock that transaction holds.
//!   A plain REFRESH later in that transaction rebuilds the view while they wait.

use super::{lock_detail, Context, Finding, REQUIRE_CONCURRENT_REFRESH};
use crate::model::{LockMode, Statement};

/// Flags a REFRESH MATERIALIZED VIEW without CONCURRENTLY (and without WITH NO DATA) of a
/// view that is neither small nor created in this transaction, and populated for other
/// sessions: populated now, or unpopulated only by this transaction (its pg_class row was
/// written by it). The first refresh of a view that was committed unpopulated cannot be
/// concurrent, and nobody can read that view yet.
pub fn require_concurrent_refresh(stmt: &Statement, ctx: &Context, out: &mut Vec<Finding>) {
    let Statement::RefreshMatView { view, concurrent, populated, with_no_data, written_in_transaction } = stmt else { return };
    let rule = &REQUIRE_CONCURRENT_REFRESH;
    if *concurrent || !(*populated || *written_in_transaction) || *with_no_data {
        return;
    }
    // Emptied earlier in this transaction, the view's size here (0) says nothing about what
    // the refresh computes: only a view created in this transaction is exempt then.
    let exempt = if *populated { ctx.exempt(rule, view) } else { view.invisible_to_others };
    if exempt {
        return;
    }
    let lock = LockMode::AccessExclusive;
    let (target, activity) = if *populated {
        (view.describe(), "it recomputes the whole view".to_string())
    } else {
        (
            view.name.clone(),
            "it recomputes the whole view: it is unpopulated only in this transaction (REFRESH ... WITH NO DATA earlier in \
             it), other sessions still read the committed view and wait"
                .to_string(),
        )
    };
    out.push(Finding {
        rule,
        message: format!("REFRESH MATERIALIZED VIEW would block reads of {}", view.name),
        detail: lock_detail("REFRESH MATERIALIZED VIEW", lock, &target, &activity),
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
        Statement::RefreshMatView { view: v, concurrent, populated, with_no_data: false, written_in_transaction: false }
    }

    #[test]
    fn refresh_after_with_no_data_in_the_same_transaction_is_flagged() {
        let mut stmt = refresh(false, false);
        if let Statement::RefreshMatView { written_in_transaction, .. } = &mut stmt {
            *written_in_transaction = true;
        }
        let f = check(&stmt);
        assert_eq!(f.len(), 1);
        assert!(f[0].detail.contains("unpopulated only in this transaction"), "{}", f[0].detail);
        // WITH NO DATA left it empty: its size now is no reason to exempt it.
        if let Statement::RefreshMatView { view, .. } = &mut stmt {
            view.size_bytes = 0;
        }
        assert_eq!(check(&stmt).len(), 1);
        if let Statement::RefreshMatView { view, .. } = &mut stmt {
            view.invisible_to_others = true;
        }
        assert!(check(&stmt).is_empty());
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

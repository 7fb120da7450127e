//! `require-lock-timeout`: with `pg_migration_guard.lock_timeout_policy = require`, a
//! statement that may wait behind another session's lock while later queries queue behind
//! it.
//!
//! PostgreSQL facts (documentation: "Explicit Locking", table 13.2 "Conflicting Lock Modes",
//! and the `lock_timeout` setting; src/backend/storage/lmgr/lock.c, the `waitMask` test in
//! LockAcquireExtended): a lock request waits in the lock's queue, and a later request
//! that conflicts with the waiting one queues behind it even when the lock's holder would
//! let it through; `lock_timeout` bounds the wait and fails the statement with SQLSTATE
//! 55P03.
//! Unlike the statement rules, this one reads the locks the statement will take (the
//! [`LockRequest`]s the extension computes for it), not its shape.

use super::{Context, Finding, REQUIRE_LOCK_TIMEOUT};
use crate::model::{format_ms, LockRequest};

/// With the `require` policy, flags a statement whose locks can hold up other sessions'
/// reads or writes unless it runs with a `lock_timeout` between 1 ms and
/// `pg_migration_guard.max_lock_timeout`; the finding names the strongest such lock.
pub fn require_lock_timeout(locks: &[LockRequest], ctx: &Context, out: &mut Vec<Finding>) {
    let Some(policy) = ctx.require_lock_timeout else { return };
    if policy.session_lock_timeout_ms > 0 && policy.session_lock_timeout_ms <= policy.max_lock_timeout_ms {
        return;
    }
    let stalling: Vec<&LockRequest> = locks.iter().filter(|l| l.can_stall_others()).collect();
    let Some(strongest) = stalling.iter().max_by_key(|l| l.mode) else { return };
    let max = format_ms(policy.max_lock_timeout_ms);
    let message = if policy.session_lock_timeout_ms == 0 {
        format!("statement could wait for {} lock on {} with no lock_timeout", strongest.mode.with_article(), strongest.relation)
    } else {
        format!(
            "statement could wait {} for {} lock on {}, longer than pg_migration_guard.max_lock_timeout ({max})",
            format_ms(policy.session_lock_timeout_ms),
            strongest.mode.with_article(),
            strongest.relation
        )
    };
    let each: Vec<String> = stalling.iter().map(|l| format!("{} on {} ({})", l.mode, l.relation, l.mode.effect())).collect();
    let detail = format!(
        "While the statement waits for a lock another session holds, every later query that conflicts with the \
         requested lock queues behind it: {}. pg_migration_guard.lock_timeout_policy is require.",
        each.join("; ")
    );
    let hint = format!(
        "Run SET lock_timeout = '{max}'; before the statement (SET LOCAL inside a transaction block) and retry the \
         statement when it fails with SQLSTATE 55P03."
    );
    out.push(Finding { rule: &REQUIRE_LOCK_TIMEOUT, message, detail, hint });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LockMode;
    use crate::rules::RequireLockTimeout;

    fn req(mode: LockMode, new: bool) -> LockRequest {
        LockRequest { relation: "public.shop_order".into(), mode, invisible_to_others: new }
    }

    fn ctx(session_ms: u32) -> Context {
        Context {
            require_lock_timeout: Some(RequireLockTimeout { session_lock_timeout_ms: session_ms, max_lock_timeout_ms: 2000 }),
            ..Context::default()
        }
    }

    fn run(locks: &[LockRequest], ctx: &Context) -> Vec<Finding> {
        let mut out = vec![];
        require_lock_timeout(locks, ctx, &mut out);
        out
    }

    #[test]
    fn no_lock_timeout_is_flagged_with_the_set_to_add() {
        let f = run(&[req(LockMode::AccessExclusive, false)], &ctx(0));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].message, "statement could wait for an ACCESS EXCLUSIVE lock on public.shop_order with no lock_timeout");
        assert!(f[0].hint.starts_with("Run SET lock_timeout = '2s';"), "{}", f[0].hint);
        assert!(f[0].detail.contains("blocks every read and write"), "{}", f[0].detail);
    }

    #[test]
    fn lock_timeout_above_the_maximum_is_flagged() {
        let f = run(&[req(LockMode::Share, false)], &ctx(30_000));
        assert_eq!(f.len(), 1);
        assert!(f[0].message.contains("could wait 30s for a SHARE lock"), "{}", f[0].message);
        assert!(f[0].message.ends_with("max_lock_timeout (2s)"), "{}", f[0].message);
    }

    #[test]
    fn lock_timeout_within_the_maximum_passes() {
        assert!(run(&[req(LockMode::AccessExclusive, false)], &ctx(2000)).is_empty());
        assert!(run(&[req(LockMode::AccessExclusive, false)], &ctx(1)).is_empty());
    }

    #[test]
    fn locks_that_cannot_stall_anyone_pass() {
        // SHARE UPDATE EXCLUSIVE (CREATE INDEX CONCURRENTLY, VALIDATE CONSTRAINT) does not
        // conflict with reads or writes; a table created in this transaction is invisible.
        assert!(run(&[req(LockMode::ShareUpdateExclusive, false)], &ctx(0)).is_empty());
        assert!(run(&[req(LockMode::AccessExclusive, true)], &ctx(0)).is_empty());
        assert!(run(&[], &ctx(0)).is_empty());
    }

    #[test]
    fn other_policies_never_flag() {
        assert!(run(&[req(LockMode::AccessExclusive, false)], &Context::default()).is_empty());
    }

    #[test]
    fn the_strongest_lock_is_named() {
        let locks = [
            LockRequest { relation: "public.shop_customer".into(), mode: LockMode::ShareRowExclusive, invisible_to_others: false },
            req(LockMode::AccessExclusive, false),
        ];
        let f = run(&locks, &ctx(0));
        assert!(f[0].message.contains("ACCESS EXCLUSIVE lock on public.shop_order"), "{}", f[0].message);
        assert!(f[0].detail.contains("SHARE ROW EXCLUSIVE on public.shop_customer"), "{}", f[0].detail);
    }
}

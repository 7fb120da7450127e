//! Judging: from a utility statement's parse tree and the live catalog to a verdict, without
//! acting on it. `facts` reads what the rules need, `lock_targets` which relations and lock
//! modes the statement will take, `scanner` its comments as PostgreSQL's lexer finds them;
//! the rules and the decision are in the pure core (`pg_migration_guard_core`).

pub mod facts;
pub mod lock_targets;
pub mod scanner;
pub mod script;

use pgrx::pg_sys;
use pgrx::PgSqlErrorCode;

use crate::decision::{self, Overrides, Verdict};
use crate::subxact::{self, Caught};
use crate::{guc, rules};
use lock_targets::Target;

/// Statements applications send all the time, never judged: decided by their tag alone.
#[inline(always)]
pub fn is_everyday_statement(tag: pg_sys::NodeTag) -> bool {
    use pg_sys::NodeTag::*;
    matches!(
        tag,
        T_TransactionStmt
            | T_VariableSetStmt
            | T_VariableShowStmt
            | T_DiscardStmt
            | T_DeclareCursorStmt
            | T_ClosePortalStmt
            | T_FetchStmt
            | T_PrepareStmt
            | T_ExecuteStmt
            | T_DeallocateStmt
            | T_NotifyStmt
            | T_ListenStmt
            | T_UnlistenStmt
            | T_LockStmt
            | T_CopyStmt
            | T_DoStmt
            | T_CallStmt
            | T_ExplainStmt
            | T_CheckPointStmt
            | T_LoadStmt
            | T_ConstraintsSetStmt
    )
}

/// Whether `node` is a statement the guard judges at all: DDL by PostgreSQL's log level
/// (`GetCommandLogLevel` = LOGSTMT_DDL, the class `log_statement = ddl` uses), plus
/// VACUUM FULL, CLUSTER, REINDEX and TRUNCATE ... CASCADE, which rewrite, rebuild or reach
/// beyond the tables named. The statements applications send all the time are decided by
/// their tag alone.
///
/// # Safety
/// `node` must be a valid, non-null utility parse tree.
pub unsafe fn is_judged_statement(node: *mut pg_sys::Node) -> bool {
    use pg_sys::NodeTag::*;
    unsafe {
        match (*node).type_ {
            tag if is_everyday_statement(tag) => false,
            T_VacuumStmt => facts::vacuum_is_full(node.cast()),
            T_ClusterStmt | T_ReindexStmt => true,
            T_TruncateStmt => (*(node as *mut pg_sys::TruncateStmt)).behavior == pg_sys::DropBehavior::DROP_CASCADE,
            _ => pg_sys::GetCommandLogLevel(node) == pg_sys::LogStmtLevel::LOGSTMT_DDL,
        }
    }
}

/// Whether judging `node` reads the catalog: whether [`facts::statement_facts`] or
/// [`lock_targets::lock_targets`] looks anything up for it. False for the statements neither
/// dispatches on (CREATE SCHEMA, CREATE FUNCTION, CREATE VIEW, GRANT, ...: their facts are
/// `Statement::Other` and they have no lock targets) and for a CREATE TABLE that names no
/// other relation or type (no PARTITION OF, INHERITS, OF, LIKE or FOREIGN KEY): for those,
/// judging cannot raise a PostgreSQL error and takes nothing, so [`verdict_for`] runs it
/// without a subtransaction. Must name every tag the two dispatchers handle
/// (`pg_tests::catalog_free_statements_have_no_facts_and_no_locks`).
///
/// # Safety
/// `node` must be a valid utility parse tree.
pub unsafe fn reads_catalog(node: *mut pg_sys::Node) -> bool {
    use pg_sys::NodeTag::*;
    unsafe {
        match (*node).type_ {
            T_CreateStmt => !create_table_is_self_contained(node.cast()),
            T_AlterTableStmt
            | T_IndexStmt
            | T_DropStmt
            | T_RenameStmt
            | T_CreateTrigStmt
            | T_CreatePolicyStmt
            | T_AlterPolicyStmt
            | T_RuleStmt
            | T_ReindexStmt
            | T_VacuumStmt
            | T_ClusterStmt
            | T_RefreshMatViewStmt
            | T_TruncateStmt
            | T_AlterDomainStmt
            | T_AlterObjectSchemaStmt
            | T_CommentStmt
            | T_AlterTableMoveAllStmt => true,
            _ => false,
        }
    }
}

/// A CREATE TABLE that names no other relation or type: not a partition, no INHERITS, no
/// OF type, no LIKE, no FOREIGN KEY (column or table constraint). `facts::statement_facts`
/// looks up only partitions, and `lock_targets` only what these name.
unsafe fn create_table_is_self_contained(stmt: *mut pg_sys::CreateStmt) -> bool {
    use pgrx::{is_a, PgList};
    unsafe {
        if !(*stmt).partbound.is_null() || !(*stmt).inhRelations.is_null() || !(*stmt).ofTypename.is_null() {
            return false;
        }
        let foreign = |con: *mut pg_sys::Constraint| (*con).contype == pg_sys::ConstrType::CONSTR_FOREIGN;
        for elt in PgList::<pg_sys::Node>::from_pg((*stmt).tableElts)
            .iter_ptr()
            .chain(PgList::<pg_sys::Node>::from_pg((*stmt).constraints).iter_ptr())
        {
            if is_a(elt, pg_sys::NodeTag::T_Constraint) {
                if foreign(elt.cast()) {
                    return false;
                }
            } else if is_a(elt, pg_sys::NodeTag::T_ColumnDef) {
                if PgList::<pg_sys::Constraint>::from_pg((*(elt as *mut pg_sys::ColumnDef)).constraints).iter_ptr().any(foreign) {
                    return false;
                }
            } else {
                // TableLikeClause, or anything else: judged the general way.
                return false;
            }
        }
        true
    }
}

/// The judging path without acting on the verdict or auditing it: facts and lock targets
/// (in a rolled-back subtransaction, unless the statement's judging reads no catalog:
/// [`reads_catalog`]), rules, decision. `Err` carries why the statement could not be
/// judged: an error while its facts were read (PostgreSQL's message and SQLSTATE), a fact
/// that could not be decided without waiting, or a panic of the guard's own code.
///
/// # Safety
/// `node` must be a valid utility parse tree; called inside a transaction.
pub unsafe fn verdict_for(
    node: *mut pg_sys::Node,
    text: &facts::StatementText,
    overrides: &Overrides,
) -> Result<(Verdict, Vec<Target>), Caught> {
    unsafe {
        let ctx = guc::context();
        let (findings, targets) = if reads_catalog(node) {
            // Catalog lookups take no lock: read the invalidations other sessions committed.
            pg_sys::AcceptInvalidationMessages();
            // One subtransaction for both passes: the first without sizes (the largest size
            // makes every size-dependent rule fire, facts::Sizes); only when something fired,
            // a second with the real sizes.
            subxact::in_subtransaction(|| -> Result<_, Caught> {
                // Lock targets computed once for the facts (partitions reached) and for
                // the lock-queue protection.
                let _memo = lock_targets::Memo::new(node);
                let stmt = facts::statement_facts(node, text, facts::Sizes::Unmeasured);
                let targets = lock_targets::lock_targets(node);
                let requests: Vec<_> = targets.iter().map(|t| t.request.clone()).collect();
                let mut findings = pure(|| rules::check_all(&stmt, &requests, &ctx))?;
                if !findings.is_empty() {
                    let stmt = facts::statement_facts(node, text, facts::Sizes::Measured);
                    findings = pure(|| rules::check_all(&stmt, &requests, &ctx))?;
                }
                Ok((findings, targets))
            })??
        } else {
            (pure(|| rules::check_all(&crate::model::Statement::Other, &[], &ctx))?, Vec::new())
        };
        let (mode, levels) = (guc::mode(), guc::rule_levels());
        let verdict = pure(move || decision::decide(mode, &levels, findings, overrides))?;
        Ok((verdict, targets))
    }
}

/// Everything [`judge_fully`] found out about one statement.
pub struct Judged {
    pub verdict: Verdict,
    pub targets: Vec<Target>,
    /// The facts with measured sizes (what the `sizes` of `check()` report).
    pub stmt: crate::model::Statement,
    /// Whether the findings at the relations' measured sizes differ from those at the
    /// largest size: the verdict depends on how big the relations are.
    pub size_dependent: bool,
}

/// The judging path of [`verdict_for`] with the mode given, always measuring sizes and
/// also reporting whether the verdict depends on them (`pg_migration_guard.check()`):
/// both fact passes and the lock targets run in one rolled-back subtransaction.
///
/// # Safety
/// `node` must be a valid utility parse tree; called inside a transaction.
pub unsafe fn judge_fully(
    node: *mut pg_sys::Node,
    text: &facts::StatementText,
    overrides: &Overrides,
    mode: decision::Mode,
) -> Result<Judged, Caught> {
    unsafe {
        pg_sys::AcceptInvalidationMessages();
        let (largest, stmt, targets) = subxact::in_subtransaction(|| {
            let _memo = lock_targets::Memo::new(node);
            (
                facts::statement_facts(node, text, facts::Sizes::Unmeasured),
                facts::statement_facts(node, text, facts::Sizes::Measured),
                lock_targets::lock_targets(node),
            )
        })?;
        let requests: Vec<_> = targets.iter().map(|t| t.request.clone()).collect();
        let ctx = guc::context();
        let at_largest = pure(|| rules::check_all(&largest, &requests, &ctx))?;
        let findings = pure(|| rules::check_all(&stmt, &requests, &ctx))?;
        let ids = |f: &[rules::Finding]| f.iter().map(|f| f.rule.id).collect::<Vec<_>>();
        let size_dependent = ids(&at_largest) != ids(&findings);
        let levels = guc::rule_levels();
        let verdict = pure(move || decision::decide(mode, &levels, findings, overrides))?;
        Ok(Judged { verdict, targets, stmt, size_dependent })
    }
}

/// Runs a pure (no PostgreSQL call) step of judging, turning a panic of the guard's own
/// code into a judging failure instead of an ERROR that would leave the statement
/// unaudited.
pub(crate) fn pure<R>(f: impl FnOnce() -> R) -> Result<R, Caught> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|panic| Caught {
        message: format!(
            "internal error: {}",
            panic.downcast_ref::<String>().map(String::as_str).or_else(|| panic.downcast_ref::<&str>().copied()).unwrap_or("panic")
        ),
        code: PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        hint: None,
    })
}

/// A statement's bounds (`stmt_location`, `stmt_len`) as PostgreSQL 17 and earlier give
/// them, from the query text before its location (`before`, `stmt_location` bytes long) and
/// its length. PostgreSQL 18 starts a statement at its first token; the comments before it
/// (where an annotation usually is) belong to it as on earlier versions
/// ([`crate::sqltext::start_after_previous_statement`]). Earlier versions: unchanged.
pub fn statement_with_leading_comments(before: &[u8], len: i32) -> (i32, i32) {
    let at = before.len();
    #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16", feature = "pg17"))]
    return (at as i32, len);
    #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16", feature = "pg17")))]
    {
        let start = crate::sqltext::start_after_previous_statement(before, at);
        (start as i32, if len > 0 { len + (at - start) as i32 } else { len })
    }
}

//! The rule engine: pure functions from typed facts ([`crate::model`]) to findings.
//!
//! No `pg_sys` here. Every rule is listed once in [`RULES`] with its id (squawk's name
//! where squawk has the rule), default level and one-line summary; the code and the
//! documentation both come from that table.
//!
//! Each rule lives in the file named after its id (`src/rules/<id with _>.rs`): one public
//! function of the same name, the PostgreSQL facts it rests on, and its unit tests. A rule
//! on a whole statement takes the [`Statement`]; a rule on one ALTER TABLE subcommand takes
//! the [`AlterTable`] and the subcommand. [`check`] and [`check_all`] call them all.

pub mod hints;

pub mod adding_field_with_default;
pub mod adding_not_nullable_field;
pub mod adding_required_field;
pub mod ban_drop_column;
pub mod ban_drop_table;
pub mod ban_exclusion_constraint;
pub mod ban_truncate_cascade;
pub mod changing_column_type;
pub mod constraint_missing_not_valid;
pub mod disallowed_unique_constraint;
pub mod partition_constraint_scan;
pub mod renaming_column;
pub mod renaming_table;
pub mod require_concurrent_index_creation;
pub mod require_concurrent_index_deletion;
pub mod require_concurrent_refresh;
pub mod require_concurrent_reindex;
pub mod require_lock_timeout;
pub mod table_rewrite;

use adding_field_with_default::adding_field_with_default;
use adding_not_nullable_field::adding_not_nullable_field;
use adding_required_field::adding_required_field;
use ban_drop_column::ban_drop_column;
use ban_drop_table::ban_drop_table;
use ban_exclusion_constraint::ban_exclusion_constraint;
use ban_truncate_cascade::ban_truncate_cascade;
use changing_column_type::changing_column_type;
use constraint_missing_not_valid::constraint_missing_not_valid;
use disallowed_unique_constraint::disallowed_unique_constraint;
use partition_constraint_scan::partition_constraint_scan;
use renaming_column::renaming_column;
use renaming_table::renaming_table;
use require_concurrent_index_creation::require_concurrent_index_creation;
use require_concurrent_index_deletion::require_concurrent_index_deletion;
use require_concurrent_refresh::require_concurrent_refresh;
use require_concurrent_reindex::require_concurrent_reindex;
use require_lock_timeout::require_lock_timeout;
use table_rewrite::table_rewrite;

use crate::model::{AlterTable, LockMode, LockRequest, Relation, Statement};

/// How seriously a rule's finding is taken before the session's mode applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// The rule is not evaluated.
    Off,
    /// Reported as a WARNING; the statement runs.
    Warning,
    /// Rejects the statement in `enforce` mode; a WARNING in `warn` mode.
    Error,
}

impl Level {
    /// The level's name in `pg_migration_guard.rule_levels` and docs/rules.md.
    pub fn name(self) -> &'static str {
        match self {
            Level::Off => "off",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }

    /// Parses a level name, case-insensitively; `warn` is accepted for `warning`.
    pub fn parse(s: &str) -> Option<Level> {
        match s.to_ascii_lowercase().as_str() {
            "off" => Some(Level::Off),
            "warning" | "warn" => Some(Level::Warning),
            "error" => Some(Level::Error),
            _ => None,
        }
    }
}

/// What kind of hazard a rule is about, which decides its exemptions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// A lock held during a rewrite, a scan or an index build: exempt for relations created
    /// in this transaction and for relations below `small_table_threshold`.
    Rewrite,
    /// A strong lock that is short once granted (its danger is the lock queue): exempt for
    /// relations created in this transaction only.
    Lock,
    /// Quick, but running code breaks or data is lost: exempt for relations created in this
    /// transaction only; size is irrelevant.
    Breaking,
}

/// One entry of the rule table.
#[derive(Debug, PartialEq, Eq)]
pub struct Rule {
    /// Stable identifier, squawk's name where squawk has the rule.
    pub id: &'static str,
    /// The level when `pg_migration_guard.rule_levels` does not name the rule.
    pub default_level: Level,
    /// The hazard, which decides the exemptions ([`Context::exempt`]).
    pub family: Family,
    /// One line: what the rule catches.
    pub summary: &'static str,
}

macro_rules! rule {
    ($name:ident, $id:literal, $level:ident, $family:ident, $summary:literal) => {
        #[doc = concat!("`", $id, "`: ", $summary, ".")]
        pub const $name: Rule = Rule { id: $id, default_level: Level::$level, family: Family::$family, summary: $summary };
    };
}

rule!(
    REQUIRE_CONCURRENT_INDEX_CREATION,
    "require-concurrent-index-creation",
    Error,
    Rewrite,
    "CREATE INDEX without CONCURRENTLY: a SHARE lock blocks writes for the whole build"
);
rule!(
    REQUIRE_CONCURRENT_INDEX_DELETION,
    "require-concurrent-index-deletion",
    Error,
    Lock,
    "DROP INDEX without CONCURRENTLY: an ACCESS EXCLUSIVE lock on the table blocks reads and writes"
);
rule!(
    REQUIRE_CONCURRENT_REINDEX,
    "require-concurrent-reindex",
    Error,
    Rewrite,
    "REINDEX without CONCURRENTLY: writes (and reads through the index) wait for the rebuild"
);
rule!(CONSTRAINT_MISSING_NOT_VALID, "constraint-missing-not-valid", Error, Rewrite,
    "ADD FOREIGN KEY or CHECK (to a table or a domain) without NOT VALID, or VALIDATE under a lock that blocks writes: every row is checked while writes are blocked");
rule!(
    DISALLOWED_UNIQUE_CONSTRAINT,
    "disallowed-unique-constraint",
    Error,
    Rewrite,
    "ADD UNIQUE or PRIMARY KEY without USING INDEX: the index is built under ACCESS EXCLUSIVE"
);
rule!(
    BAN_EXCLUSION_CONSTRAINT,
    "ban-exclusion-constraint",
    Error,
    Rewrite,
    "ADD EXCLUDE on an existing table: index build under ACCESS EXCLUSIVE, with no online form"
);
rule!(
    ADDING_FIELD_WITH_DEFAULT,
    "adding-field-with-default",
    Error,
    Rewrite,
    "ADD COLUMN whose value must be written into every row (volatile default, serial, identity, stored generated, constrained domain)"
);
rule!(
    ADDING_REQUIRED_FIELD,
    "adding-required-field",
    Error,
    Lock,
    "ADD COLUMN NOT NULL without a default on a non-empty table: fails after a scan"
);
rule!(
    ADDING_NOT_NULLABLE_FIELD,
    "adding-not-nullable-field",
    Error,
    Rewrite,
    "SET NOT NULL (written, implied by ADD PRIMARY KEY, or on a domain) that scans for NULLs while writes are blocked"
);
rule!(CHANGING_COLUMN_TYPE, "changing-column-type", Error, Rewrite,
    "ALTER COLUMN TYPE that rewrites the table or rebuilds its indexes under ACCESS EXCLUSIVE, or a column dropped and added back, which loses its values");
rule!(PARTITION_CONSTRAINT_SCAN, "partition-constraint-scan", Error, Rewrite,
    "ATTACH PARTITION or CREATE TABLE ... PARTITION OF that scans a table or the DEFAULT partition under ACCESS EXCLUSIVE: no validated CHECK implies the bound");
rule!(TABLE_REWRITE, "table-rewrite", Error, Rewrite,
    "VACUUM FULL, CLUSTER, SET LOGGED/UNLOGGED, SET TABLESPACE (of a table, an index or a materialized view), SET ACCESS METHOD: the relation is rewritten or copied under ACCESS EXCLUSIVE");
rule!(
    REQUIRE_CONCURRENT_REFRESH,
    "require-concurrent-refresh",
    Error,
    Rewrite,
    "REFRESH MATERIALIZED VIEW without CONCURRENTLY on a populated view: reads of the view wait"
);
rule!(REQUIRE_LOCK_TIMEOUT, "require-lock-timeout", Error, Lock,
    "With lock_timeout_policy = require: a statement that may queue for a lock blocking reads or writes, with no lock_timeout or one above max_lock_timeout");
rule!(RENAMING_COLUMN, "renaming-column", Warning, Breaking, "RENAME COLUMN: running code that uses the old name fails");
rule!(RENAMING_TABLE, "renaming-table", Warning, Breaking, "RENAME TO on a table: running code that uses the old name fails");
rule!(
    BAN_DROP_COLUMN,
    "ban-drop-column",
    Warning,
    Breaking,
    "DROP COLUMN: running code that reads or writes it fails, and its data is gone"
);
rule!(BAN_DROP_TABLE, "ban-drop-table", Warning, Breaking, "DROP TABLE: running code that uses it fails, and its data is gone");
rule!(
    BAN_TRUNCATE_CASCADE,
    "ban-truncate-cascade",
    Warning,
    Breaking,
    "TRUNCATE ... CASCADE: also empties every table that references it, recursively"
);

/// Every rule, in documentation order.
pub static RULES: &[&Rule] = &[
    &REQUIRE_CONCURRENT_INDEX_CREATION,
    &REQUIRE_CONCURRENT_INDEX_DELETION,
    &REQUIRE_CONCURRENT_REINDEX,
    &CONSTRAINT_MISSING_NOT_VALID,
    &DISALLOWED_UNIQUE_CONSTRAINT,
    &BAN_EXCLUSION_CONSTRAINT,
    &ADDING_FIELD_WITH_DEFAULT,
    &ADDING_REQUIRED_FIELD,
    &ADDING_NOT_NULLABLE_FIELD,
    &CHANGING_COLUMN_TYPE,
    &PARTITION_CONSTRAINT_SCAN,
    &TABLE_REWRITE,
    &REQUIRE_CONCURRENT_REFRESH,
    &REQUIRE_LOCK_TIMEOUT,
    &RENAMING_COLUMN,
    &RENAMING_TABLE,
    &BAN_DROP_COLUMN,
    &BAN_DROP_TABLE,
    &BAN_TRUNCATE_CASCADE,
];

/// Looks a rule up by id.
pub fn rule_by_id(id: &str) -> Option<&'static Rule> {
    RULES.iter().copied().find(|r| r.id == id)
}

/// What one rule found in one statement.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    /// The rule that found it.
    pub rule: &'static Rule,
    /// Primary message without the rule id: short, lowercase, no final period.
    pub message: String,
    /// What PostgreSQL would do: lock mode, rewrite or scan, relation size.
    pub detail: String,
    /// The safe SQL to run instead, with the statement's real names.
    pub hint: String,
}

/// The DETAIL most findings share:
/// `<command> takes <a|an> <LOCK> lock on <target>, which <effect>, while <activity>.`
pub fn lock_detail(command: &str, lock: LockMode, target: &str, activity: &str) -> String {
    format!("{command} takes {} lock on {target}, which {}, while {activity}.", lock.with_article(), lock.effect())
}

/// How many relations a finding names before `and N more`.
const LISTED_RELATIONS: usize = 5;

/// `b (2 MB) and a (1 MB)`: the relations, biggest first (then by name), or the first
/// [`LISTED_RELATIONS`] of them and `N more`.
pub fn relation_list(rels: &[&Relation]) -> String {
    let mut rels = rels.to_vec();
    rels.sort_by(|a, b| b.size_bytes.cmp(&a.size_bytes).then_with(|| a.name.cmp(&b.name)));
    let mut s: Vec<String> = rels.iter().take(LISTED_RELATIONS).map(|r| r.describe()).collect();
    if rels.len() > LISTED_RELATIONS {
        s.push(format!("{} more", rels.len() - LISTED_RELATIONS));
    }
    join_and(&s)
}

/// The tables that store a domain, each with its columns of the domain, as for
/// [`relation_list`]: `public.t (8 MB, about 1000 rows) (columns a, b)`.
pub fn domain_targets(uses: &[&crate::model::DomainUse]) -> String {
    let mut uses = uses.to_vec();
    uses.sort_by(|a, b| b.table.size_bytes.cmp(&a.table.size_bytes).then_with(|| a.table.name.cmp(&b.table.name)));
    let mut s: Vec<String> = uses
        .iter()
        .take(LISTED_RELATIONS)
        .map(|u| {
            let noun = if u.columns.len() == 1 { "column" } else { "columns" };
            format!("{} ({noun} {})", u.table.describe(), u.columns.join(", "))
        })
        .collect();
    if uses.len() > LISTED_RELATIONS {
        s.push(format!("{} more tables", uses.len() - LISTED_RELATIONS));
    }
    join_and(&s)
}

/// `a`, `a and b`, `a, b and c`.
fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Server state the rules need besides the statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    /// `pg_migration_guard.small_table_threshold` in bytes: relations smaller than this are
    /// exempt from the rewrite/scan/build rules.
    pub small_table_bytes: u64,
    /// Set when `pg_migration_guard.lock_timeout_policy = require`.
    pub require_lock_timeout: Option<RequireLockTimeout>,
    /// The server's `server_version_num` (e.g. 180006), for the facts that depend on the
    /// version; 0 when unknown, read as the oldest behaviour.
    pub server_version_num: u32,
}

/// The settings `require-lock-timeout` compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequireLockTimeout {
    /// The session's `lock_timeout` in milliseconds; 0 means none.
    pub session_lock_timeout_ms: u32,
    /// `pg_migration_guard.max_lock_timeout` in milliseconds.
    pub max_lock_timeout_ms: u32,
}

impl Default for Context {
    fn default() -> Self {
        Context { small_table_bytes: 1024 * 1024, require_lock_timeout: None, server_version_num: 0 }
    }
}

impl Context {
    /// Whether `rule` does not apply to `rel`: created in this transaction (invisible to
    /// every other session), or, for rewrite/scan/build rules, smaller than the threshold.
    pub fn exempt(&self, rule: &Rule, rel: &Relation) -> bool {
        rel.invisible_to_others || (rule.family == Family::Rewrite && rel.size_bytes < self.small_table_bytes)
    }
}

/// Runs every rule on one statement and the locks it will take (see `crate::locks`): the
/// statement rules ([`check`]), then `require-lock-timeout`.
pub fn check_all(stmt: &Statement, locks: &[LockRequest], ctx: &Context) -> Vec<Finding> {
    let mut findings = check(stmt, ctx);
    require_lock_timeout(locks, ctx, &mut findings);
    findings
}

/// Runs every statement rule on one statement.
///
/// The order of the findings is part of the output (the audit row lists the rules in that
/// order; the first error-level finding is the ERROR). Each statement but ALTER TABLE has
/// one rule (ALTER DOMAIN: constraint-missing-not-valid, then adding-not-nullable-field); an
/// ALTER TABLE gets the constraint and partition rules, then the column rules, each group in
/// subcommand order, then `table-rewrite`, then `ban-drop-column`.
pub fn check(stmt: &Statement, ctx: &Context) -> Vec<Finding> {
    let mut findings = Vec::new();
    let out = &mut findings;
    match stmt {
        Statement::CreateIndex(_) => require_concurrent_index_creation(stmt, ctx, out),
        Statement::DropIndex(_) => require_concurrent_index_deletion(stmt, ctx, out),
        Statement::Reindex(_) => require_concurrent_reindex(stmt, ctx, out),
        Statement::AlterTable(at) => {
            if !at.table.invisible_to_others {
                for_each_subcommand(
                    at,
                    &[constraint_missing_not_valid, disallowed_unique_constraint, ban_exclusion_constraint, partition_constraint_scan],
                    ctx,
                    out,
                );
                for_each_subcommand(
                    at,
                    &[adding_field_with_default, adding_required_field, adding_not_nullable_field, changing_column_type],
                    ctx,
                    out,
                );
                table_rewrite(stmt, ctx, out);
                for_each_subcommand(at, &[ban_drop_column], ctx, out);
            }
        }
        Statement::VacuumFull { .. } | Statement::Cluster { .. } | Statement::MoveAllToTablespace { .. } => table_rewrite(stmt, ctx, out),
        Statement::AlterDomain(_) => {
            constraint_missing_not_valid::on_domain(stmt, ctx, out);
            adding_not_nullable_field::on_domain(stmt, ctx, out);
        }
        Statement::CreatePartition(_) => partition_constraint_scan::on_create_partition(stmt, ctx, out),
        Statement::AlterCompositeType { .. } => changing_column_type::on_composite_type(stmt, ctx, out),
        Statement::RefreshMatView { .. } => require_concurrent_refresh(stmt, ctx, out),
        Statement::RenameColumn { .. } => renaming_column(stmt, ctx, out),
        Statement::RenameTable { .. } => renaming_table(stmt, ctx, out),
        Statement::DropTable { .. } => ban_drop_table(stmt, ctx, out),
        Statement::TruncateCascade { .. } => ban_truncate_cascade(stmt, ctx, out),
        Statement::Other => {}
    }
    findings
}

/// A rule on one ALTER TABLE subcommand.
type SubcommandRule = fn(&AlterTable, &crate::model::AlterTableCmd, &Context, &mut Vec<Finding>);

/// Runs `rules` on each subcommand of `at`, subcommand by subcommand.
fn for_each_subcommand(at: &AlterTable, rules: &[SubcommandRule], ctx: &Context, out: &mut Vec<Finding>) {
    for cmd in &at.commands {
        for rule in rules {
            rule(at, cmd, ctx, out);
        }
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use crate::model::*;

    pub fn table(name: &str, mb: u64) -> Relation {
        Relation {
            name: name.to_string(),
            kind: RelKind::Table,
            invisible_to_others: false,
            size_bytes: mb * 1024 * 1024,
            estimated_rows: Some(1_000_000.0),
            shards: None,
        }
    }

    pub fn new_table(name: &str) -> Relation {
        Relation { invisible_to_others: true, size_bytes: 0, estimated_rows: None, ..table(name, 0) }
    }

    pub fn alter(table: Relation, lock: LockMode, commands: Vec<AlterTableCmd>) -> Statement {
        Statement::AlterTable(AlterTable { table, lock, commands })
    }

    /// `rules::check` with the default context (1 MB threshold).
    pub fn check(stmt: &Statement) -> Vec<crate::rules::Finding> {
        crate::rules::check(stmt, &crate::rules::Context::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids_are_unique_and_kebab_case() {
        let mut ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
        for id in &ids {
            assert!(id.chars().all(|c| c.is_ascii_lowercase() || c == '-'), "{id}");
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), RULES.len());
    }

    #[test]
    fn rule_lookup_by_id() {
        assert_eq!(rule_by_id("changing-column-type"), Some(&CHANGING_COLUMN_TYPE));
        assert_eq!(rule_by_id("no-such-rule"), None);
    }

    #[test]
    fn other_statements_are_never_flagged() {
        assert!(check(&Statement::Other, &Context::default()).is_empty());
    }

    #[test]
    fn small_relations_are_exempt_from_rewrite_rules_only() {
        let ctx = Context { small_table_bytes: 1024 * 1024, ..Context::default() };
        let small = testutil::table("public.t", 0);
        let big = testutil::table("public.t", 2);
        assert!(ctx.exempt(&CHANGING_COLUMN_TYPE, &small));
        assert!(!ctx.exempt(&CHANGING_COLUMN_TYPE, &big));
        assert!(!ctx.exempt(&BAN_DROP_COLUMN, &small));
        assert!(!ctx.exempt(&REQUIRE_CONCURRENT_INDEX_DELETION, &small));
        assert!(ctx.exempt(&BAN_DROP_COLUMN, &testutil::new_table("public.n")));
    }

    /// docs/rules.md and the rule table must not drift: same rules, same order, and each
    /// section states the summary, default level and family the code has.
    #[test]
    fn docs_rules_md_matches_the_rule_table() {
        let doc = include_str!("../../../docs/rules.md");
        let sections: Vec<(&str, &str)> = doc
            .split("\n## ")
            .skip(1)
            .map(|sec| {
                let (head, body) = sec.split_once('\n').unwrap_or((sec, ""));
                (head.trim(), body)
            })
            // Sections that are not rules (the PostgreSQL version notes) are not headed by a
            // rule id.
            .filter(|(head, _)| head.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
            .collect();
        assert!(doc.contains("\n## PostgreSQL 16, 17 and 18: DDL changes checked\n"), "version notes section");
        let ids: Vec<&str> = sections.iter().map(|(h, _)| *h).collect();
        let expected: Vec<&str> = RULES.iter().map(|r| r.id).collect();
        assert_eq!(ids, expected, "docs/rules.md sections differ from RULES");
        for ((_, body), rule) in sections.iter().zip(RULES) {
            assert!(body.contains(&format!("> {}", rule.summary)), "{}: summary differs", rule.id);
            let family = match rule.family {
                Family::Rewrite => "rewrite",
                Family::Lock => "lock",
                Family::Breaking => "breaking",
            };
            assert!(
                body.contains(&format!("Default level: **{}** · Family: {family}", rule.default_level.name())),
                "{}: level or family differs",
                rule.id
            );
            for sub in
                ["### What it catches", "### Why", "### Safe migration", "### PostgreSQL versions", "### Examples", "Triggers:", "Passes:"]
            {
                assert!(body.contains(sub), "{}: missing {sub}", rule.id);
            }
        }
    }

    /// Every relation a statement's facts hold.
    fn relations_mut(stmt: &mut Statement) -> Vec<&mut Relation> {
        match stmt {
            Statement::CreateIndex(ci) => vec![&mut ci.table],
            Statement::DropIndex(di) => di.indexes.iter_mut().map(|i| &mut i.table).collect(),
            Statement::AlterTable(at) => alter_relations_mut(at),
            Statement::AlterCompositeType { tables, .. } => tables.iter_mut().flat_map(alter_relations_mut).collect(),
            Statement::Reindex(ri) => ri.table.iter_mut().chain(ri.tables.iter_mut()).collect(),
            Statement::VacuumFull { tables, .. } | Statement::DropTable { tables, .. } | Statement::TruncateCascade { tables } => {
                tables.iter_mut().collect()
            }
            Statement::MoveAllToTablespace { relations, .. } => relations.iter_mut().collect(),
            Statement::Cluster { table, clustered } => table.iter_mut().chain(clustered.iter_mut()).collect(),
            Statement::RefreshMatView { view, .. } => vec![view],
            Statement::RenameColumn { table, .. } | Statement::RenameTable { table, .. } => {
                vec![table]
            }
            Statement::AlterDomain(d) => d.uses.iter_mut().map(|u| &mut u.table).collect(),
            Statement::CreatePartition(cp) => {
                std::iter::once(&mut cp.parent).chain(cp.default_scans.iter_mut().map(|s| &mut s.relation)).collect()
            }
            Statement::Other => vec![],
        }
    }

    fn alter_relations_mut(at: &mut AlterTable) -> Vec<&mut Relation> {
        use crate::model::AlterTableCmd;
        let mut v = vec![&mut at.table];
        for c in &mut at.commands {
            match c {
                AlterTableCmd::AddForeignKey { referenced: Some(r), .. } => v.push(r),
                AlterTableCmd::AttachPartition(a) => {
                    v.extend(a.scans.iter_mut().chain(a.default_scans.iter_mut()).map(|s| &mut s.relation))
                }
                _ => {}
            }
        }
        v
    }

    /// One statement of every shape the rules know, on 5 MB tables: together they reach
    /// every statement rule.
    fn every_statement_shape() -> Vec<Statement> {
        use crate::model::*;
        use testutil::*;
        let constraint = |def: &str| NewConstraint { name: "c".into(), named: true, definition: Some(def.into()) };
        let commands = vec![
            AlterTableCmd::AddForeignKey {
                constraint: constraint("FOREIGN KEY (a) REFERENCES r (id)"),
                referenced: Some(table("public.r", 5)),
                inline_column: None,
                validates: true,
            },
            AlterTableCmd::AddCheck { constraint: constraint("CHECK (a > 0)"), validates: true },
            AlterTableCmd::SetNotNull {
                column: "a".into(),
                primary_key: None,
                suggested_constraint: "a_not_null".into(),
                already_not_null: false,
                proven_by_check: false,
            },
            AlterTableCmd::SetNotNull {
                column: "a".into(),
                primary_key: Some("t_pkey".into()),
                suggested_constraint: "a_not_null".into(),
                already_not_null: false,
                proven_by_check: false,
            },
            AlterTableCmd::AlterColumnType {
                column: "a".into(),
                suggested_new_column: "a_new".into(),
                suggested_old_column: "a_old".into(),
                new_type: "bigint".into(),
                rewrite: Some(true),
                rebuilt_indexes: vec![],
                current: Some(Box::new(ColumnFacts { batch_key: "ctid".into(), not_null: true, ..ColumnFacts::default() })),
            },
            AlterTableCmd::AlterColumnType {
                column: "a".into(),
                suggested_new_column: "a_new".into(),
                suggested_old_column: "a_old".into(),
                new_type: "text".into(),
                rewrite: None,
                rebuilt_indexes: vec![],
                current: None,
            },
            AlterTableCmd::AlterColumnType {
                column: "a".into(),
                suggested_new_column: "a_new".into(),
                suggested_old_column: "a_old".into(),
                new_type: "text COLLATE \"C\"".into(),
                rewrite: Some(false),
                rebuilt_indexes: vec!["public.t_a_idx".into()],
                current: None,
            },
            AlterTableCmd::AttachPartition(AttachPartition {
                partition: "public.p".into(),
                scans: vec![PartitionScan { relation: table("public.p", 5), constraint_sql: None, suggested_constraint: "p_check".into() }],
                default_scans: vec![PartitionScan {
                    relation: table("public.d", 5),
                    constraint_sql: None,
                    suggested_constraint: "d_check".into(),
                }],
                statement_sql: "ALTER TABLE t ATTACH PARTITION p FOR VALUES IN (1)".into(),
            }),
            AlterTableCmd::AddUnique {
                constraint: constraint("UNIQUE (a)"),
                primary: true,
                nullable_columns: vec!["a".into()],
                columns: "(a)".into(),
            },
            AlterTableCmd::AddExclusion { constraint: constraint("EXCLUDE USING gist (a WITH &&)") },
            AlterTableCmd::ValidateConstraint {
                constraint: "c".into(),
                held_lock: Some(LockMode::AccessExclusive),
                held_by: LockHolder::Transaction,
            },
            AlterTableCmd::ValidateConstraint {
                constraint: "c".into(),
                held_lock: Some(LockMode::AccessExclusive),
                held_by: LockHolder::ThisStatement,
            },
            AlterTableCmd::AddColumn {
                column: "a".into(),
                type_name: "integer".into(),
                rewrite: Some(AddColumnRewrite::VolatileDefault),
                not_null_without_default: false,
                default_sql: Some("random()".into()),
                not_null: false,
                replaces: None,
            },
            AlterTableCmd::AddColumn {
                column: "a".into(),
                type_name: "integer".into(),
                rewrite: None,
                not_null_without_default: true,
                default_sql: None,
                not_null: true,
                replaces: None,
            },
            AlterTableCmd::AddColumn {
                column: "a".into(),
                type_name: "bigint".into(),
                rewrite: None,
                not_null_without_default: false,
                default_sql: None,
                not_null: false,
                replaces: Some(DroppedColumn { type_name: "integer".into(), same_statement: false, current: None }),
            },
            AlterTableCmd::DropColumn { column: "a".into() },
            AlterTableCmd::Rewrite { action: "SET TABLESPACE" },
        ];
        let t = || table("public.t", 5);
        let mut statements = vec![
            Statement::CreateIndex(CreateIndex { table: t(), concurrent: false, concurrent_sql: None }),
            Statement::DropIndex(DropIndex {
                concurrent: false,
                if_exists: false,
                cascade: false,
                indexes: vec![DroppedIndex { name: "public.i".into(), partitioned: false, created_in_transaction: false, table: t() }],
            }),
            Statement::Reindex(Reindex {
                target: ReindexTarget::Table,
                concurrent: false,
                table: Some(t()),
                tables: vec![],
                concurrent_sql: None,
            }),
            Statement::Reindex(Reindex {
                target: ReindexTarget::Schema,
                concurrent: false,
                table: None,
                tables: vec![t(), table("public.u", 5)],
                concurrent_sql: None,
            }),
            Statement::VacuumFull { tables: vec![t()], whole_database: false },
            Statement::Cluster { table: Some(t()), clustered: vec![] },
            Statement::Cluster { table: None, clustered: vec![t()] },
            Statement::MoveAllToTablespace { kind: "TABLE", relations: vec![t()] },
            Statement::RefreshMatView { view: t(), concurrent: false, populated: true, with_no_data: false, written_in_transaction: false },
            Statement::RefreshMatView { view: t(), concurrent: false, populated: false, with_no_data: false, written_in_transaction: true },
            Statement::AlterDomain(AlterDomain {
                domain: "public.d".into(),
                action: DomainAction::AddCheck { constraint: constraint("CHECK (VALUE > 0)"), validates: true },
                uses: vec![DomainUse { table: t(), columns: vec!["a".into()] }],
            }),
            Statement::AlterDomain(AlterDomain {
                domain: "public.d".into(),
                action: DomainAction::ValidateConstraint { constraint: "c".into() },
                uses: vec![DomainUse { table: t(), columns: vec!["a".into()] }],
            }),
            Statement::AlterDomain(AlterDomain {
                domain: "public.d".into(),
                action: DomainAction::SetNotNull,
                uses: vec![DomainUse { table: t(), columns: vec!["a".into()] }],
            }),
            Statement::CreatePartition(CreatePartition {
                parent: t(),
                partition: "p".into(),
                default_scans: vec![PartitionScan {
                    relation: table("public.d", 5),
                    constraint_sql: None,
                    suggested_constraint: "d_check".into(),
                }],
                statement_sql: "CREATE TABLE p PARTITION OF t FOR VALUES IN (1)".into(),
            }),
            Statement::RenameColumn { table: t(), column: "a".into(), new_name: "b".into() },
            Statement::RenameTable { table: t(), new_name: "u".into() },
            Statement::DropTable { tables: vec![t()], cascade: true },
            Statement::TruncateCascade { tables: vec![t()] },
        ];
        for lock in [LockMode::AccessExclusive, LockMode::ShareRowExclusive, LockMode::ShareUpdateExclusive] {
            for c in &commands {
                statements.push(alter(t(), lock, vec![c.clone()]));
            }
        }
        statements.push(Statement::AlterCompositeType {
            type_name: "public.ty".into(),
            tables: vec![AlterTable { table: t(), lock: LockMode::AccessExclusive, commands: commands.clone() }],
        });
        statements
    }

    /// The two-pass judging of `hook::verdict_for` (facts::Sizes) is sound only if a
    /// statement without findings at the largest size has none at any size: every rule
    /// must be monotonic in `size_bytes`. Checked on every statement shape the rules
    /// know, at sizes on both sides of the threshold and of 0, with and without row
    /// estimates.
    #[test]
    fn findings_only_grow_with_size() {
        use crate::model::*;
        use testutil::*;
        let statements = every_statement_shape();
        let ids = |s: &Statement| -> Vec<&str> { check(s).iter().map(|f| f.rule.id).collect() };
        for stmt in &statements {
            for size in [0, 8192, 1024 * 1024 - 1, 1024 * 1024, 64 << 20] {
                for rows in [None, Some(0.0), Some(1e6)] {
                    let mut real = stmt.clone();
                    let mut unmeasured = stmt.clone();
                    for r in relations_mut(&mut real) {
                        (r.size_bytes, r.estimated_rows) = (size, rows);
                    }
                    for r in relations_mut(&mut unmeasured) {
                        (r.size_bytes, r.estimated_rows) = (UNMEASURED, rows);
                    }
                    let (at_size, at_largest) = (ids(&real), ids(&unmeasured));
                    assert!(
                        at_size.iter().all(|id| at_largest.contains(id)),
                        "{stmt:?} at {size} bytes, {rows:?} rows: {at_size:?} not within {at_largest:?}"
                    );
                }
            }
        }
        // The corpus reaches the size-dependent rules: a small table passes where an
        // unmeasured one does not.
        let index = &statements[0];
        let mut small = index.clone();
        relations_mut(&mut small)[0].size_bytes = 8192;
        assert!(ids(&small).is_empty());
        assert_eq!(ids(index), ["require-concurrent-index-creation"]);
    }

    /// `check` and `check_all` call every rule: each id of [`RULES`] comes out of some
    /// statement shape (the statement rules) or of a lock request (`require-lock-timeout`).
    #[test]
    fn every_rule_is_reached() {
        use crate::model::*;
        let ctx = Context {
            require_lock_timeout: Some(RequireLockTimeout { session_lock_timeout_ms: 0, max_lock_timeout_ms: 2000 }),
            ..Context::default()
        };
        let lock = [LockRequest { relation: "public.t".into(), mode: LockMode::AccessExclusive, invisible_to_others: false }];
        let mut reached: Vec<&str> = every_statement_shape().iter().flat_map(|s| check_all(s, &lock, &ctx)).map(|f| f.rule.id).collect();
        reached.sort();
        reached.dedup();
        let mut ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
        ids.sort();
        assert_eq!(reached, ids);
    }

    /// A rule is found by its id: `src/rules/<id with _>.rs` defines `pub fn <id with _>(`,
    /// and src/rules/ holds nothing else but mod.rs and hints.rs (a file left behind by a
    /// rename fails too). Read from the crate's own directory, wherever the crate lives.
    #[test]
    fn every_rule_has_a_file_named_after_its_id() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/rules");
        let mut expected: Vec<String> = vec!["hints.rs".into(), "mod.rs".into()];
        for rule in RULES {
            let name = rule.id.replace('-', "_");
            let path = dir.join(format!("{name}.rs"));
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(text.contains(&format!("\npub fn {name}(")), "{} does not define pub fn {name}", path.display());
            assert!(text.starts_with(&format!("//! `{}`", rule.id)), "{} does not start with the rule id", path.display());
            expected.push(format!("{name}.rs"));
        }
        expected.sort();
        let mut found: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        found.sort();
        assert_eq!(found, expected, "files in {}", dir.display());
    }

    /// The order of the findings is part of the output: the audit row lists the rules in
    /// it, and the first error-level finding is the one the ERROR reports. An ALTER TABLE
    /// reports the constraint and partition rules, then the column rules (each group in
    /// subcommand order), then table-rewrite, then ban-drop-column.
    #[test]
    fn alter_table_findings_come_group_by_group_in_subcommand_order() {
        use crate::model::*;
        use testutil::*;
        let constraint = |def: &str| NewConstraint { name: "c".into(), named: true, definition: Some(def.into()) };
        let commands = vec![
            AlterTableCmd::DropColumn { column: "old".into() },
            AlterTableCmd::Rewrite { action: "SET TABLESPACE" },
            AlterTableCmd::AlterColumnType {
                column: "a".into(),
                suggested_new_column: "a_new".into(),
                suggested_old_column: "a_old".into(),
                new_type: "bigint".into(),
                rewrite: Some(true),
                rebuilt_indexes: vec![],
                current: None,
            },
            AlterTableCmd::AddColumn {
                column: "b".into(),
                type_name: "uuid".into(),
                rewrite: Some(AddColumnRewrite::VolatileDefault),
                not_null_without_default: false,
                default_sql: Some("gen_random_uuid()".into()),
                not_null: false,
                replaces: None,
            },
            AlterTableCmd::AttachPartition(AttachPartition {
                partition: "public.p".into(),
                scans: vec![PartitionScan { relation: table("public.p", 5), constraint_sql: None, suggested_constraint: "p_check".into() }],
                default_scans: vec![],
                statement_sql: "ALTER TABLE t ATTACH PARTITION p FOR VALUES IN (1)".into(),
            }),
            AlterTableCmd::AddExclusion { constraint: constraint("EXCLUDE USING gist (a WITH &&)") },
            AlterTableCmd::AddUnique {
                constraint: constraint("UNIQUE (a)"),
                primary: false,
                nullable_columns: vec![],
                columns: "(a)".into(),
            },
            AlterTableCmd::AddCheck { constraint: constraint("CHECK (a > 0)"), validates: true },
            AlterTableCmd::SetNotNull {
                column: "a".into(),
                primary_key: None,
                suggested_constraint: "a_not_null".into(),
                already_not_null: false,
                proven_by_check: false,
            },
        ];
        let ids: Vec<&str> = check(&alter(table("public.t", 5), LockMode::AccessExclusive, commands)).iter().map(|f| f.rule.id).collect();
        assert_eq!(
            ids,
            [
                "partition-constraint-scan",
                "ban-exclusion-constraint",
                "disallowed-unique-constraint",
                "constraint-missing-not-valid",
                "changing-column-type",
                "adding-field-with-default",
                "adding-not-nullable-field",
                "table-rewrite",
                "ban-drop-column",
            ]
        );
    }

    #[test]
    fn lock_detail_uses_the_right_article() {
        assert_eq!(
            lock_detail("VACUUM FULL", LockMode::AccessExclusive, "t", "it rewrites the table"),
            "VACUUM FULL takes an ACCESS EXCLUSIVE lock on t, which blocks every read and write, plain SELECT included, \
             while it rewrites the table."
        );
        assert!(
            lock_detail("ALTER TABLE", LockMode::ShareRowExclusive, "t", "x").starts_with("ALTER TABLE takes a SHARE ROW EXCLUSIVE lock")
        );
        assert_eq!(LockMode::Exclusive.with_article(), "an EXCLUSIVE");
    }

    #[test]
    fn relation_lists_name_the_biggest_first_and_count_the_rest() {
        let rels: Vec<Relation> = (1..=7).map(|i| testutil::table(&format!("public.t{i}"), i)).collect();
        let refs: Vec<&Relation> = rels.iter().collect();
        let list = relation_list(&refs);
        assert!(list.starts_with("public.t7 (7168 kB, about 1000000 rows), public.t6"), "{list}");
        assert!(list.ends_with("public.t3 (3072 kB, about 1000000 rows) and 2 more"), "{list}");
        assert_eq!(relation_list(&refs[..1]), "public.t1 (1024 kB, about 1000000 rows)");
        assert_eq!(relation_list(&refs[..2]), "public.t2 (2048 kB, about 1000000 rows) and public.t1 (1024 kB, about 1000000 rows)");
    }

    #[test]
    fn level_names_parse() {
        assert_eq!(Level::parse("ERROR"), Some(Level::Error));
        assert_eq!(Level::parse("warning"), Some(Level::Warning));
        assert_eq!(Level::parse("off"), Some(Level::Off));
        assert_eq!(Level::parse("fatal"), None);
    }
}

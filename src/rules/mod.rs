//! The rule engine: pure functions from typed facts ([`crate::model`]) to findings.
//!
//! No `pg_sys` here. Every rule is listed once in [`RULES`] with its id (squawk's name
//! where squawk has the rule), default level and one-line summary; the code and the
//! documentation both come from that table.

pub mod columns;
pub mod constraints;
pub mod indexes;

use crate::model::Statement;

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
    pub fn name(self) -> &'static str {
        match self {
            Level::Off => "off",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

/// One entry of the rule table.
#[derive(Debug, PartialEq, Eq)]
pub struct Rule {
    /// Stable identifier, e.g. `require-concurrent-index-creation`.
    pub id: &'static str,
    pub default_level: Level,
    /// One line: what the rule catches.
    pub summary: &'static str,
}

pub const REQUIRE_CONCURRENT_INDEX_CREATION: Rule = Rule {
    id: "require-concurrent-index-creation",
    default_level: Level::Error,
    summary: "CREATE INDEX without CONCURRENTLY on an existing table: SHARE lock blocks writes for the whole build",
};

pub const REQUIRE_CONCURRENT_INDEX_DELETION: Rule = Rule {
    id: "require-concurrent-index-deletion",
    default_level: Level::Error,
    summary: "DROP INDEX without CONCURRENTLY: ACCESS EXCLUSIVE lock on the table blocks reads and writes",
};

pub const CONSTRAINT_MISSING_NOT_VALID: Rule = Rule {
    id: "constraint-missing-not-valid",
    default_level: Level::Error,
    summary: "ADD FOREIGN KEY or CHECK without NOT VALID: validating scan of every row while writes are blocked",
};

pub const ADDING_NOT_NULLABLE_FIELD: Rule = Rule {
    id: "adding-not-nullable-field",
    default_level: Level::Error,
    summary: "SET NOT NULL without a validated CHECK (col IS NOT NULL): full scan under ACCESS EXCLUSIVE",
};

pub const CHANGING_COLUMN_TYPE: Rule = Rule {
    id: "changing-column-type",
    default_level: Level::Error,
    summary: "ALTER COLUMN TYPE that PostgreSQL will implement by rewriting the table under ACCESS EXCLUSIVE",
};

/// Every rule, in documentation order.
pub static RULES: &[&Rule] = &[
    &REQUIRE_CONCURRENT_INDEX_CREATION,
    &REQUIRE_CONCURRENT_INDEX_DELETION,
    &CONSTRAINT_MISSING_NOT_VALID,
    &ADDING_NOT_NULLABLE_FIELD,
    &CHANGING_COLUMN_TYPE,
];

/// Looks a rule up by id.
pub fn rule_by_id(id: &str) -> Option<&'static Rule> {
    RULES.iter().copied().find(|r| r.id == id)
}

/// What one rule found in one statement.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub rule: &'static Rule,
    /// Primary message without the rule id: short, lowercase, no final period.
    pub message: String,
    /// What PostgreSQL would do: lock mode, rewrite or scan, relation size.
    pub detail: String,
    /// The safe SQL to run instead, with the statement's real names.
    pub hint: String,
}

/// Runs every rule on one statement. Relations created in the current transaction are
/// exempt inside each rule (nobody else can see them, so nothing can block).
pub fn check(stmt: &Statement) -> Vec<Finding> {
    let mut findings = Vec::new();
    match stmt {
        Statement::CreateIndex(ci) => indexes::check_create_index(ci, &mut findings),
        Statement::DropIndex(di) => indexes::check_drop_index(di, &mut findings),
        Statement::AlterTable(at) => {
            if at.table.created_in_transaction {
                return findings;
            }
            constraints::check_alter_table(at, &mut findings);
            columns::check_alter_table(at, &mut findings);
        }
        Statement::Other => {}
    }
    findings
}

#[cfg(test)]
pub(crate) mod testutil {
    use crate::model::*;

    pub fn table(name: &str, mb: u64) -> Relation {
        Relation {
            name: name.to_string(),
            kind: RelKind::Table,
            created_in_transaction: false,
            size_bytes: mb * 1024 * 1024,
            estimated_rows: Some(1_000_000.0),
        }
    }

    pub fn new_table(name: &str) -> Relation {
        Relation { created_in_transaction: true, size_bytes: 0, estimated_rows: None, ..table(name, 0) }
    }

    pub fn alter(table: Relation, lock: LockMode, commands: Vec<AlterTableCmd>) -> Statement {
        Statement::AlterTable(AlterTable { table, lock, commands })
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
        assert!(check(&Statement::Other).is_empty());
    }
}

//! Typed facts about one DDL statement: plain Rust values, no `pg_sys`.
//!
//! The facts layer (`facts.rs`) builds these from the parse tree and the live catalog;
//! the rules (`rules/`) read them. Keeping them free of PostgreSQL types lets the rules
//! be unit-tested with plain `cargo test` and read like the documentation.

use std::fmt;

/// PostgreSQL's table-level lock modes, weakest first (src/include/storage/lockdefs.h;
/// documentation: "Explicit Locking", table 13.2 "Conflicting Lock Modes").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LockMode {
    AccessShare = 1,
    RowShare = 2,
    RowExclusive = 3,
    ShareUpdateExclusive = 4,
    Share = 5,
    ShareRowExclusive = 6,
    Exclusive = 7,
    AccessExclusive = 8,
}

impl LockMode {
    /// Maps PostgreSQL's `LOCKMODE` integer (1..=8) to the enum.
    pub fn from_pg(mode: i32) -> Option<LockMode> {
        use LockMode::*;
        Some(match mode {
            1 => AccessShare,
            2 => RowShare,
            3 => RowExclusive,
            4 => ShareUpdateExclusive,
            5 => Share,
            6 => ShareRowExclusive,
            7 => Exclusive,
            8 => AccessExclusive,
            _ => return None,
        })
    }

    /// The name PostgreSQL's documentation uses, e.g. `ACCESS EXCLUSIVE`.
    pub fn name(self) -> &'static str {
        use LockMode::*;
        match self {
            AccessShare => "ACCESS SHARE",
            RowShare => "ROW SHARE",
            RowExclusive => "ROW EXCLUSIVE",
            ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            Share => "SHARE",
            ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            Exclusive => "EXCLUSIVE",
            AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }

    /// What the application notices while the lock is held or queued.
    pub fn effect(self) -> &'static str {
        use LockMode::*;
        match self {
            AccessShare | RowShare | RowExclusive => "does not block reads or writes",
            ShareUpdateExclusive => "blocks other schema changes and VACUUM, not reads or writes",
            Share | ShareRowExclusive => "blocks INSERT, UPDATE and DELETE",
            Exclusive => "blocks all writes and every read except plain SELECT",
            AccessExclusive => "blocks every read and write, plain SELECT included",
        }
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What kind of relation a statement touches (pg_class.relkind).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelKind {
    Table,
    PartitionedTable,
    MaterializedView,
    Index,
    Other,
}

/// One relation as the guard sees it in the catalog right now.
#[derive(Clone, Debug, PartialEq)]
pub struct Relation {
    /// Schema-qualified name, quoted where SQL needs it (`quote_qualified_identifier`).
    pub name: String,
    pub kind: RelKind,
    /// `RelationData.rd_createSubid` is set: created in the current transaction, so no
    /// other session can see it yet and nothing done to it can block anyone.
    pub created_in_transaction: bool,
    /// Main-fork size in bytes from the relation's actual block count
    /// (`RelationGetNumberOfBlocks` × BLCKSZ), summed over partitions and inheritance
    /// children the statement recurses to; indexes and TOAST excluded.
    pub size_bytes: u64,
    /// `pg_class.reltuples` (summed like `size_bytes`); `None` when never analyzed.
    pub estimated_rows: Option<f64>,
}

impl Relation {
    /// `public.orders (68 MB, about 1000000 rows)`
    pub fn describe(&self) -> String {
        match self.estimated_rows {
            Some(rows) if rows >= 0.0 => format!(
                "{} ({}, about {} rows)",
                self.name,
                pretty_size(self.size_bytes),
                rows.round() as u64
            ),
            _ => format!("{} ({})", self.name, pretty_size(self.size_bytes)),
        }
    }
}

/// Formats bytes in the style of `pg_size_pretty`: bytes, kB, MB, GB, TB, switching to the
/// next unit once the value reaches 10240 of the current one, rounding half up.
pub fn pretty_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "kB", "MB", "GB", "TB"];
    let mut size = bytes;
    let mut unit = 0;
    // pg_size_pretty: keep the unit while size < 10 * 1024 (limit = 10 * 1024).
    while size >= 10 * 1024 && unit < UNITS.len() - 1 {
        // round half up, as pg_size_pretty's half_rounded()
        size = (size + 512) / 1024;
        unit += 1;
    }
    format!("{} {}", size, UNITS[unit])
}

/// A statement the rules can judge. Anything else is `Other` and always allowed.
#[derive(Clone, Debug, PartialEq)]
pub enum Statement {
    CreateIndex(CreateIndex),
    DropIndex(DropIndex),
    AlterTable(AlterTable),
    Other,
}

/// `CREATE [UNIQUE] INDEX [CONCURRENTLY] ... ON table ...` (IndexStmt).
#[derive(Clone, Debug, PartialEq)]
pub struct CreateIndex {
    pub table: Relation,
    pub concurrent: bool,
    /// The same statement with CONCURRENTLY added, when the text could be rewritten.
    pub concurrent_sql: Option<String>,
}

/// `DROP INDEX [CONCURRENTLY] name [, ...]` (DropStmt with removeType = OBJECT_INDEX).
#[derive(Clone, Debug, PartialEq)]
pub struct DropIndex {
    pub concurrent: bool,
    pub if_exists: bool,
    pub cascade: bool,
    pub indexes: Vec<DroppedIndex>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DroppedIndex {
    /// Quoted, schema-qualified index name.
    pub name: String,
    pub created_in_transaction: bool,
    /// The table the index belongs to.
    pub table: Relation,
}

/// `ALTER TABLE table cmd [, cmd ...]` (AlterTableStmt).
#[derive(Clone, Debug, PartialEq)]
pub struct AlterTable {
    pub table: Relation,
    /// What `AlterTableGetLockLevel` says PostgreSQL will take on the table for all of
    /// the subcommands together.
    pub lock: LockMode,
    pub commands: Vec<AlterTableCmd>,
}

/// A constraint being added, with enough text to show the safe SQL for it.
#[derive(Clone, Debug, PartialEq)]
pub struct NewConstraint {
    /// Quoted constraint name: the one given, or one we suggest when it was unnamed.
    pub name: String,
    /// Whether the statement named the constraint itself.
    pub named: bool,
    /// The constraint's definition as written, without `CONSTRAINT name`,
    /// e.g. `FOREIGN KEY (customer_id) REFERENCES customers (id)`.
    pub definition: Option<String>,
}

/// One AlterTableCmd, reduced to what the rules need.
#[derive(Clone, Debug, PartialEq)]
pub enum AlterTableCmd {
    /// ADD [CONSTRAINT name] FOREIGN KEY ... (AT_AddConstraint, CONSTR_FOREIGN).
    AddForeignKey {
        constraint: NewConstraint,
        /// The referenced table, when it exists.
        referenced: Option<Relation>,
        /// false when NOT VALID was given: no validating scan.
        validates: bool,
    },
    /// ADD [CONSTRAINT name] CHECK (...) (AT_AddConstraint, CONSTR_CHECK).
    AddCheck { constraint: NewConstraint, validates: bool },
    /// ALTER COLUMN c SET NOT NULL (AT_SetNotNull).
    SetNotNull {
        /// Quoted column name.
        column: String,
        /// Quoted name for the helper CHECK constraint the safe recipe adds.
        suggested_constraint: String,
        /// The column is already NOT NULL: PostgreSQL does nothing.
        already_not_null: bool,
        /// A validated CHECK constraint proves the column has no NULLs, so PostgreSQL
        /// skips the scan (NotNullImpliedByRelConstraints, PostgreSQL 12+).
        proven_by_check: bool,
    },
    /// ALTER COLUMN c TYPE t [USING expr] (AT_AlterColumnType).
    AlterColumnType {
        /// Quoted column name.
        column: String,
        /// Quoted names for the safe recipe's new column and the renamed old one.
        suggested_new_column: String,
        suggested_old_column: String,
        /// `format_type` of the new type with its typmod, e.g. `character varying(200)`.
        new_type: String,
        /// Outcome of PostgreSQL's own test (ATColumnChangeRequiresRewrite): true when the
        /// table will be rewritten; None when the guard could not decide.
        rewrite: Option<bool>,
    },
    /// Any other subcommand: not judged by the current rules.
    Other,
}

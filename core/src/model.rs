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

    /// The name with its article, for prose: `an ACCESS EXCLUSIVE`, `a SHARE`.
    pub fn with_article(self) -> String {
        let article = if self.name().starts_with(['A', 'E']) { "an" } else { "a" };
        format!("{article} {}", self.name())
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

impl LockMode {
    /// Whether a request for `self` conflicts with `other` held or queued by another
    /// transaction (documentation: "Explicit Locking", table 13.2 "Conflicting Lock
    /// Modes"; src/backend/storage/lmgr/lock.c, LockConflicts). The relation is symmetric.
    pub fn conflicts_with(self, other: LockMode) -> bool {
        use LockMode::*;
        let (a, b) = if self <= other { (self, other) } else { (other, self) };
        match a {
            AccessShare => b == AccessExclusive,
            RowShare => b >= Exclusive,
            RowExclusive => b >= Share,
            ShareUpdateExclusive => b >= ShareUpdateExclusive,
            Share => b != Share && b >= ShareUpdateExclusive,
            ShareRowExclusive | Exclusive | AccessExclusive => true,
        }
    }

    /// Whether the lock, held or merely queued, holds up the application's INSERT, UPDATE,
    /// DELETE or SELECT (ROW EXCLUSIVE or ACCESS SHARE requests): SHARE and stronger.
    /// A queued request counts because PostgreSQL's lock queue is fair: a later request
    /// that conflicts with a waiting one waits behind it.
    pub fn blocks_reads_or_writes(self) -> bool {
        self.conflicts_with(LockMode::RowExclusive) || self.conflicts_with(LockMode::AccessShare)
    }

    /// Every mode, weakest first.
    pub const ALL: [LockMode; 8] = {
        use LockMode::*;
        [AccessShare, RowShare, RowExclusive, ShareUpdateExclusive, Share, ShareRowExclusive, Exclusive, AccessExclusive]
    };

    /// Every mode that conflicts with `self`, weakest first.
    pub fn conflicting_modes(self) -> impl Iterator<Item = LockMode> {
        Self::ALL.into_iter().filter(move |m| self.conflicts_with(*m))
    }

    /// The mode's name as `pg_locks.mode` spells it, e.g. `AccessExclusiveLock`.
    pub fn pg_locks_name(self) -> &'static str {
        use LockMode::*;
        match self {
            AccessShare => "AccessShareLock",
            RowShare => "RowShareLock",
            RowExclusive => "RowExclusiveLock",
            ShareUpdateExclusive => "ShareUpdateExclusiveLock",
            Share => "ShareLock",
            ShareRowExclusive => "ShareRowExclusiveLock",
            Exclusive => "ExclusiveLock",
            AccessExclusive => "AccessExclusiveLock",
        }
    }
}

/// One table-level lock a statement will take, as PostgreSQL itself takes it.
#[derive(Clone, Debug, PartialEq)]
pub struct LockRequest {
    /// Schema-qualified, quoted where SQL needs it.
    pub relation: String,
    pub mode: LockMode,
    /// Created in this transaction or temporary: nobody else can be waiting for it.
    pub invisible_to_others: bool,
}

impl LockRequest {
    /// Whether waiting for this lock could hold up other sessions' reads or writes.
    pub fn can_stall_others(&self) -> bool {
        !self.invisible_to_others && self.mode.blocks_reads_or_writes()
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

/// `Relation::size_bytes` of a relation whose size was not measured: the largest size, so
/// that every size-dependent rule fires (see `facts::Sizes`).
pub const UNMEASURED: u64 = u64::MAX;

/// One relation as the guard sees it in the catalog right now.
#[derive(Clone, Debug, PartialEq)]
pub struct Relation {
    /// Schema-qualified name, quoted where SQL needs it (`quote_qualified_identifier`).
    pub name: String,
    pub kind: RelKind,
    /// Created in the current transaction (`RelationData.rd_createSubid` set, for the
    /// relation and every partition or child the statement recurses to), or a temporary
    /// table: no other session can see it, so nothing done to it can block anyone.
    pub invisible_to_others: bool,
    /// Size in bytes of the main fork (`RelationGetNumberOfBlocks` × BLCKSZ) and of the
    /// TOAST table's main fork (its files' sizes, as `pg_relation_size`), summed over the
    /// partitions and inheritance children the statement recurses to; indexes excluded.
    /// [`UNMEASURED`] when the facts were built without sizes (`facts::Sizes::Unmeasured`).
    pub size_bytes: u64,
    /// `pg_class.reltuples` (summed like `size_bytes`); `None` when never analyzed.
    pub estimated_rows: Option<f64>,
    /// For a Citus distributed table (or one of its partitions, or a reference table) judged
    /// on the coordinator: how many shards `size_bytes` and `estimated_rows` are summed over
    /// (one placement of each shard, measured on the node that holds it; see `docs/citus.md`).
    /// `None` for a relation whose data is all on this server.
    pub shards: Option<u32>,
}

impl Relation {
    /// `public.orders (68 MB, about 1000000 rows)`; for a distributed table
    /// `public.orders (90 MB over 32 shards, about 1000000 rows)`, and
    /// `public.orders (size unknown over 32 shards)` when its shards could not be measured
    /// (`(size of its shards unknown)` when not even their number could be read).
    pub fn describe(&self) -> String {
        let size = match self.shards {
            Some(0) if self.size_bytes == UNMEASURED => return format!("{} (size of its shards unknown)", self.name),
            Some(n) if self.size_bytes == UNMEASURED => {
                return format!("{} (size unknown over {n} shard{})", self.name, if n == 1 { "" } else { "s" });
            }
            Some(n) => format!("{} over {n} shard{}", pretty_size(self.size_bytes), if n == 1 { "" } else { "s" }),
            None => pretty_size(self.size_bytes),
        };
        match self.estimated_rows {
            Some(rows) if rows >= 0.0 => {
                let rows = rows.round() as u64;
                format!("{} ({size}, about {rows} row{})", self.name, if rows == 1 { "" } else { "s" })
            }
            _ => format!("{} ({size})", self.name),
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
        // round half up, as pg_size_pretty's half_rounded() ((size + 512) / 1024, written
        // so that it cannot overflow near u64::MAX)
        size = size / 1024 + u64::from(size % 1024 >= 512);
        unit += 1;
    }
    format!("{} {}", size, UNITS[unit])
}

/// Formats milliseconds the way a `SET lock_timeout` would be written: `2s`, `150ms`.
pub fn format_ms(ms: u32) -> String {
    if ms >= 1000 && ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A statement the rules can judge. Anything else is `Other` and always allowed.
#[derive(Clone, Debug, PartialEq)]
pub enum Statement {
    CreateIndex(CreateIndex),
    DropIndex(DropIndex),
    AlterTable(AlterTable),
    Reindex(Reindex),
    /// VACUUM FULL (VacuumStmt with the FULL option): rewrites each table under ACCESS EXCLUSIVE.
    VacuumFull {
        tables: Vec<Relation>,
        whole_database: bool,
    },
    /// CLUSTER (ClusterStmt): rewrites the table in index order under ACCESS EXCLUSIVE.
    /// `table` is None for a bare CLUSTER, which rewrites `clustered`: every table with an
    /// index marked clustered that the user may cluster (cluster.c, get_tables_to_cluster),
    /// each in a transaction of its own.
    Cluster {
        table: Option<Relation>,
        clustered: Vec<Relation>,
    },
    /// REFRESH MATERIALIZED VIEW (RefreshMatViewStmt).
    RefreshMatView {
        view: Relation,
        concurrent: bool,
        /// `pg_class.relispopulated` as this transaction sees it.
        populated: bool,
        with_no_data: bool,
        /// The view's pg_class row was written by this transaction (its xmin is one of the
        /// transaction's ids: a `REFRESH ... WITH NO DATA` earlier in it, typically). Other
        /// sessions still see the committed row, and so a populated view whose reads wait.
        written_in_transaction: bool,
    },
    /// ALTER TABLE ... RENAME COLUMN (RenameStmt, OBJECT_COLUMN).
    RenameColumn {
        table: Relation,
        column: String,
        new_name: String,
    },
    /// ALTER TABLE ... RENAME TO (RenameStmt, OBJECT_TABLE).
    RenameTable {
        table: Relation,
        new_name: String,
    },
    /// DROP TABLE (DropStmt, OBJECT_TABLE).
    DropTable {
        tables: Vec<Relation>,
        cascade: bool,
    },
    /// TRUNCATE ... CASCADE (TruncateStmt with DROP_CASCADE); `tables` as named.
    TruncateCascade {
        tables: Vec<Relation>,
    },
    /// ALTER DOMAIN ... ADD CONSTRAINT / SET NOT NULL / VALIDATE CONSTRAINT (AlterDomainStmt).
    AlterDomain(AlterDomain),
    /// CREATE TABLE ... PARTITION OF parent (CreateStmt with a partition bound).
    CreatePartition(CreatePartition),
    /// ALTER TYPE composite ALTER ATTRIBUTE a TYPE t CASCADE (AlterTableStmt on OBJECT_TYPE):
    /// the column of every typed table of the type (CREATE TABLE ... OF type) changes type
    /// with it (ATTypedTableRecursion), one ALTER COLUMN TYPE per typed table.
    AlterCompositeType {
        type_name: String,
        tables: Vec<AlterTable>,
    },
    /// ALTER TABLE / INDEX / MATERIALIZED VIEW ALL IN TABLESPACE a SET TABLESPACE b
    /// (AlterTableMoveAllStmt): `relations` are the ones AlterTableMoveAll moves, each
    /// copied under ACCESS EXCLUSIVE, all locked until the transaction ends.
    MoveAllToTablespace {
        kind: &'static str,
        relations: Vec<Relation>,
    },
    Other,
}

impl Statement {
    /// Every relation the facts describe, with the size and row estimate the rules used,
    /// in the order the facts list them (a relation named twice, once). What
    /// `pg_migration_guard.check()` reports in its `sizes` column.
    pub fn relations(&self) -> Vec<&Relation> {
        let mut out: Vec<&Relation> = Vec::new();
        fn add<'a>(out: &mut Vec<&'a Relation>, r: &'a Relation) {
            if !out.iter().any(|o| o.name == r.name) {
                out.push(r);
            }
        }
        fn alter<'a>(out: &mut Vec<&'a Relation>, at: &'a AlterTable) {
            add(out, &at.table);
            for cmd in &at.commands {
                match cmd {
                    AlterTableCmd::AddForeignKey { referenced: Some(r), .. } => add(out, r),
                    AlterTableCmd::AttachPartition(a) => {
                        for s in a.scans.iter().chain(&a.default_scans) {
                            add(out, &s.relation);
                        }
                    }
                    _ => {}
                }
            }
        }
        match self {
            Statement::CreateIndex(ci) => add(&mut out, &ci.table),
            Statement::DropIndex(di) => di.indexes.iter().for_each(|i| add(&mut out, &i.table)),
            Statement::AlterTable(at) => alter(&mut out, at),
            Statement::Reindex(r) => r.table.iter().chain(&r.tables).for_each(|t| add(&mut out, t)),
            Statement::VacuumFull { tables, .. } | Statement::DropTable { tables, .. } | Statement::TruncateCascade { tables } => {
                tables.iter().for_each(|t| add(&mut out, t))
            }
            Statement::Cluster { table, clustered } => table.iter().chain(clustered).for_each(|t| add(&mut out, t)),
            Statement::RefreshMatView { view, .. } => add(&mut out, view),
            Statement::RenameColumn { table, .. } | Statement::RenameTable { table, .. } => add(&mut out, table),
            Statement::AlterDomain(d) => d.uses.iter().for_each(|u| add(&mut out, &u.table)),
            Statement::CreatePartition(cp) => {
                add(&mut out, &cp.parent);
                cp.default_scans.iter().for_each(|s| add(&mut out, &s.relation));
            }
            Statement::AlterCompositeType { tables, .. } => tables.iter().for_each(|at| alter(&mut out, at)),
            Statement::MoveAllToTablespace { relations, .. } => relations.iter().for_each(|r| add(&mut out, r)),
            Statement::Other => {}
        }
        out
    }
}

/// `ALTER DOMAIN name { ADD CHECK ... | SET NOT NULL | VALIDATE CONSTRAINT c }`: each checks
/// every stored value of the domain (typecmds.c, validateDomainConstraint and
/// AlterDomainNotNull) while holding SHARE locks on the tables that store them.
#[derive(Clone, Debug, PartialEq)]
pub struct AlterDomain {
    /// Quoted, schema-qualified domain name.
    pub domain: String,
    pub action: DomainAction,
    /// The tables (and materialized views) with columns of the domain or of a domain over
    /// it, as get_rels_with_domain finds them, with those columns (quoted).
    pub uses: Vec<DomainUse>,
}

/// What an ALTER DOMAIN does that scans.
#[derive(Clone, Debug, PartialEq)]
pub enum DomainAction {
    /// ADD [CONSTRAINT name] CHECK (...) [NOT VALID].
    AddCheck { constraint: NewConstraint, validates: bool },
    /// SET NOT NULL (only when the domain is not NOT NULL already).
    SetNotNull,
    /// VALIDATE CONSTRAINT name (quoted).
    ValidateConstraint { constraint: String },
}

/// One relation that stores values of a domain.
#[derive(Clone, Debug, PartialEq)]
pub struct DomainUse {
    pub table: Relation,
    /// Quoted names of its columns of the domain.
    pub columns: Vec<String>,
}

/// One relation that ATTACH PARTITION or CREATE TABLE ... PARTITION OF will scan to check a
/// partition constraint, because no validated constraint of its own implies it
/// (PartConstraintImpliedByRelConstraint).
#[derive(Clone, Debug, PartialEq)]
pub struct PartitionScan {
    pub relation: Relation,
    /// The constraint its rows are checked against, as SQL over its own columns
    /// (deparsed as pg_get_partition_constraintdef does), for the CHECK of the HINT.
    pub constraint_sql: Option<String>,
    /// Quoted name for that CHECK constraint.
    pub suggested_constraint: String,
}

/// `CREATE TABLE name PARTITION OF parent FOR VALUES ...` on a parent with a DEFAULT
/// partition: the default partition is scanned for rows of the new bound
/// (partbounds.c, check_default_partition_contents) under ACCESS EXCLUSIVE, with ACCESS
/// EXCLUSIVE on the parent too (DefineRelation).
#[derive(Clone, Debug, PartialEq)]
pub struct CreatePartition {
    pub parent: Relation,
    /// Quoted name of the new partition.
    pub partition: String,
    /// The default partition (or its leaf partitions) that will be scanned.
    pub default_scans: Vec<PartitionScan>,
    /// The statement as written (trimmed), for the HINT.
    pub statement_sql: String,
}

/// What a REINDEX names (ReindexObjectType).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReindexTarget {
    Index,
    Table,
    Schema,
    Database,
    System,
}

/// `REINDEX [ (options) ] { INDEX | TABLE | SCHEMA | DATABASE | SYSTEM } [ CONCURRENTLY ] name`.
#[derive(Clone, Debug, PartialEq)]
pub struct Reindex {
    pub target: ReindexTarget,
    pub concurrent: bool,
    /// The table (for INDEX: the index's table), when one relation is named.
    pub table: Option<Relation>,
    /// For SCHEMA, DATABASE and SYSTEM: the tables and materialized views it will reindex
    /// (indexcmds.c, ReindexMultipleTables), each in a transaction of its own.
    pub tables: Vec<Relation>,
    /// The same statement with CONCURRENTLY added, when the text could be rewritten.
    pub concurrent_sql: Option<String>,
}

/// Why PostgreSQL must rewrite the table to add a column (ATExecAddColumn: the default
/// cannot be stored as a "missing value" in pg_attribute).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddColumnRewrite {
    /// The default expression contains a volatile function (`contain_volatile_functions`).
    VolatileDefault,
    /// serial / bigserial / smallserial: a nextval() default.
    Serial,
    /// GENERATED ... AS IDENTITY.
    Identity,
    /// GENERATED ALWAYS AS (...) STORED.
    GeneratedStored,
    /// A domain type with constraints: each row's value must be checked.
    DomainWithConstraints,
}

impl AddColumnRewrite {
    pub fn describe(&self) -> &'static str {
        match self {
            AddColumnRewrite::VolatileDefault => "its default is volatile, so each row gets its own value",
            AddColumnRewrite::Serial => "a serial column's default is nextval(), which is volatile",
            AddColumnRewrite::Identity => "an identity column takes a new sequence value for every row",
            AddColumnRewrite::GeneratedStored => "a stored generated column is computed and written for every row",
            AddColumnRewrite::DomainWithConstraints => "its type is a domain with constraints, checked against every row",
        }
    }
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
    /// An index on a partitioned table: PostgreSQL cannot drop it CONCURRENTLY.
    pub partitioned: bool,
    /// Created in this transaction (`rd_createSubid`): dropping it blocks nobody.
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

/// Who holds the lock a VALIDATE CONSTRAINT scans under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockHolder {
    /// This transaction, from an earlier statement (locks are held until it ends).
    Transaction,
    /// The same ALTER TABLE, for another of its subcommands (AlterTableGetLockLevel takes
    /// the strongest lock any subcommand needs, for all of them).
    ThisStatement,
}

/// `ALTER TABLE parent ATTACH PARTITION name { FOR VALUES ... | DEFAULT }`
/// (tablecmds.c, ATExecAttachPartition): ACCESS EXCLUSIVE on the attached table and on the
/// parent's DEFAULT partition; the attached table is scanned for rows outside the bound, and
/// the default partition for rows inside it, unless a validated constraint proves each
/// check (QueuePartitionConstraintValidation).
#[derive(Clone, Debug, PartialEq)]
pub struct AttachPartition {
    /// Quoted, qualified name of the attached table.
    pub partition: String,
    /// The attached table, or its leaf partitions, that will be scanned.
    pub scans: Vec<PartitionScan>,
    /// The parent's DEFAULT partition (or its leaf partitions) that will be scanned.
    pub default_scans: Vec<PartitionScan>,
    /// The statement as written (trimmed), for the HINT.
    pub statement_sql: String,
}

/// A column dropped earlier in this transaction (or by the same ALTER TABLE) that an ADD
/// COLUMN of the same name replaces.
#[derive(Clone, Debug, PartialEq)]
pub struct DroppedColumn {
    /// `format_type` of its type, with typmod.
    pub type_name: String,
    /// Dropped by this same ALTER TABLE (a subcommand before the ADD), not by an earlier
    /// statement.
    pub same_statement: bool,
    /// What it had (known when it is dropped by this same statement).
    pub current: Option<Box<ColumnFacts>>,
}

/// What an existing column has that an expand/contract type change must recreate on the new
/// column: read from the catalog (pg_attribute, pg_attrdef, pg_index, pg_constraint).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ColumnFacts {
    /// `format_type` of its type now.
    pub type_name: String,
    pub not_null: bool,
    /// The default (`pg_get_expr` of pg_attrdef.adbin).
    pub default_sql: Option<String>,
    /// Indexes of the table whose key, INCLUDE columns, expressions or predicate use the
    /// column.
    pub indexes: Vec<IndexFacts>,
    /// CHECK and FOREIGN KEY constraints of the table on the column: (quoted name,
    /// `pg_get_constraintdef`).
    pub constraints: Vec<(String, String)>,
    /// Foreign keys of other tables that reference the column, as `<table>.<constraint>`.
    pub referenced_by: Vec<String>,
    /// The column to batch the backfill by: the single-column primary key, else `ctid`.
    pub batch_key: String,
    /// How to compute the new value from the old row: the column as ALTER COLUMN TYPE
    /// would convert it (the USING expression or the column, coerced), as SQL.
    pub new_value_sql: Option<String>,
}

/// An index that uses a column.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexFacts {
    /// Quoted index name (unqualified: indexes live in their table's schema).
    pub name: String,
    /// Quoted, schema-qualified name.
    pub qualified_name: String,
    /// It has expressions or a predicate (PostgreSQL never keeps such an index through a
    /// type change).
    pub has_expressions: bool,
    /// The ALTER COLUMN TYPE being judged rebuilds it without a table rewrite.
    pub rebuilt: bool,
    /// `pg_get_indexdef`.
    pub definition: String,
    /// When the index is a PRIMARY KEY or UNIQUE constraint's: its quoted name and kind.
    pub constraint: Option<(String, &'static str)>,
}

/// One AlterTableCmd, reduced to what the rules need.
#[derive(Clone, Debug, PartialEq)]
pub enum AlterTableCmd {
    /// ADD [CONSTRAINT name] FOREIGN KEY ... (AT_AddConstraint, CONSTR_FOREIGN).
    AddForeignKey {
        constraint: NewConstraint,
        /// The referenced table, when it exists.
        referenced: Option<Relation>,
        /// Quoted column name when the constraint is written inline in `ADD COLUMN`
        /// (`ADD COLUMN c bigint REFERENCES t`): the safe route must add the column first.
        inline_column: Option<String>,
        /// false when NOT VALID was given: no validating scan.
        validates: bool,
    },
    /// ADD [CONSTRAINT name] CHECK (...) (AT_AddConstraint, CONSTR_CHECK).
    AddCheck { constraint: NewConstraint, validates: bool },
    /// ALTER COLUMN c SET NOT NULL (AT_SetNotNull), or the one ADD PRIMARY KEY implies for
    /// each key column that is not NOT NULL yet (transformIndexConstraint).
    SetNotNull {
        /// Quoted column name.
        column: String,
        /// Quoted name of the PRIMARY KEY constraint whose implicit SET NOT NULL this is.
        primary_key: Option<String>,
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
        /// Without a rewrite: the indexes (quoted, qualified names) PostgreSQL rebuilds
        /// anyway because their collation or operator class changes with the column
        /// (ATPostAlterTypeParse, TryReuseIndex, CheckIndexCompatible).
        rebuilt_indexes: Vec<String>,
        /// What the column has that the safe route must carry over, when known.
        current: Option<Box<ColumnFacts>>,
    },
    /// ADD [CONSTRAINT name] UNIQUE / PRIMARY KEY (...) without USING INDEX.
    AddUnique {
        constraint: NewConstraint,
        primary: bool,
        /// Key columns (quoted) of a PRIMARY KEY that the statement itself adds (inline, or in
        /// an ADD COLUMN of the same statement): set NOT NULL with a scan. The table's existing
        /// nullable key columns are separate SetNotNull subcommands.
        nullable_columns: Vec<String>,
        /// Quoted key column list as written, e.g. `(email)`, for the CREATE INDEX hint.
        columns: String,
    },
    /// ADD [CONSTRAINT name] EXCLUDE ... (CONSTR_EXCLUSION).
    AddExclusion { constraint: NewConstraint },
    /// VALIDATE CONSTRAINT (AT_ValidateConstraint): the scan runs under SHARE UPDATE
    /// EXCLUSIVE — unless this transaction already holds a stronger lock on the table
    /// (typically from the ADD CONSTRAINT ... NOT VALID just before it), or the same ALTER
    /// TABLE takes one for another subcommand: that lock is then held for the whole scan.
    ValidateConstraint {
        /// Quoted constraint name.
        constraint: String,
        /// The strongest lock that blocks writes (SHARE or stronger) held during the scan,
        /// if any, and who takes it.
        held_lock: Option<LockMode>,
        held_by: LockHolder,
    },
    /// ATTACH PARTITION (AT_AttachPartition).
    AttachPartition(AttachPartition),
    /// ADD COLUMN (AT_AddColumn).
    AddColumn {
        /// Quoted column name.
        column: String,
        /// `format_type` of the column's type as PostgreSQL will store it, when known.
        type_name: String,
        /// Why the table must be rewritten, if it must.
        rewrite: Option<AddColumnRewrite>,
        /// NOT NULL with no default: fails on a non-empty table after a scan.
        not_null_without_default: bool,
        /// The default as PostgreSQL would store it (`deparse_expression` of the cooked
        /// default), e.g. `gen_random_uuid()`, for the HINT; None without a default or for
        /// serial types (whose sequence does not exist yet).
        default_sql: Option<String>,
        /// Declared NOT NULL.
        not_null: bool,
        /// A column of the same name that existed before this transaction was dropped in it
        /// (or is dropped by this same ALTER TABLE): this ADD COLUMN is a type change that
        /// throws every value away.
        replaces: Option<DroppedColumn>,
    },
    /// DROP COLUMN (AT_DropColumn).
    DropColumn { column: String },
    /// SET LOGGED / SET UNLOGGED / SET TABLESPACE / SET ACCESS METHOD: the whole table is
    /// copied into a new relfilenode under ACCESS EXCLUSIVE.
    Rewrite { action: &'static str },
    /// ALTER CONSTRAINT name ENFORCED on a NOT ENFORCED foreign key (PostgreSQL 18,
    /// ATExecAlterFKConstrEnforceability): PostgreSQL creates its triggers and checks every
    /// existing row (ALTER TABLE phase 3) under the statement's lock.
    EnforceForeignKey {
        /// Quoted constraint name.
        constraint: String,
        /// Its definition as pg_get_constraintdef gives it, without NOT ENFORCED.
        definition: Option<String>,
        /// The referenced table.
        referenced: Option<Relation>,
    },
    /// Any other subcommand: not judged by the current rules.
    Other,
}

#[cfg(test)]
mod tests {
    use super::LockMode::{self, *};

    /// Table 13.2 "Conflicting Lock Modes" of the PostgreSQL documentation, row by row
    /// ('X' = conflicts), columns in the order of `LockMode::ALL`.
    const TABLE_13_2: [&str; 8] = [
        ".......X", // ACCESS SHARE
        "......XX", // ROW SHARE
        "....XXXX", // ROW EXCLUSIVE
        "...XXXXX", // SHARE UPDATE EXCLUSIVE
        "..XX.XXX", // SHARE
        "..XXXXXX", // SHARE ROW EXCLUSIVE
        ".XXXXXXX", // EXCLUSIVE
        "XXXXXXXX", // ACCESS EXCLUSIVE
    ];

    #[test]
    fn a_relation_of_one_row_is_described_in_the_singular() {
        let rel = |rows| super::Relation {
            name: "public.t".into(),
            kind: super::RelKind::Table,
            invisible_to_others: false,
            size_bytes: 8192,
            estimated_rows: Some(rows),
            shards: None,
        };
        assert_eq!(rel(1.0).describe(), "public.t (8192 bytes, about 1 row)");
        assert_eq!(rel(2.0).describe(), "public.t (8192 bytes, about 2 rows)");
        assert_eq!(rel(0.0).describe(), "public.t (8192 bytes, about 0 rows)");
    }

    #[test]
    fn a_distributed_table_is_described_with_its_shards() {
        let rel = |size_bytes, rows, shards| super::Relation {
            name: "public.orders".into(),
            kind: super::RelKind::Table,
            invisible_to_others: false,
            size_bytes,
            estimated_rows: rows,
            shards: Some(shards),
        };
        assert_eq!(rel(94_371_840, Some(1e6), 32).describe(), "public.orders (90 MB over 32 shards, about 1000000 rows)");
        assert_eq!(rel(8192, None, 1).describe(), "public.orders (8192 bytes over 1 shard)");
        assert_eq!(rel(super::UNMEASURED, None, 32).describe(), "public.orders (size unknown over 32 shards)");
        // Citus' catalog could not be read: not even the number of shards is known.
        assert_eq!(rel(super::UNMEASURED, None, 0).describe(), "public.orders (size of its shards unknown)");
    }

    /// Values as PostgreSQL 15's pg_size_pretty(bigint) prints them.
    #[test]
    fn pretty_size_matches_pg_size_pretty() {
        use super::{pretty_size, UNMEASURED};
        assert_eq!(pretty_size(0), "0 bytes");
        assert_eq!(pretty_size(10239), "10239 bytes");
        assert_eq!(pretty_size(10240), "10 kB");
        assert_eq!(pretty_size(10485248), "10 MB");
        assert_eq!(pretty_size(71303168), "68 MB");
        // No overflow at the largest size (an unmeasured relation's).
        assert_eq!(pretty_size(UNMEASURED), "16777216 TB");
    }

    #[test]
    fn milliseconds_format_like_a_set() {
        use super::format_ms;
        assert_eq!(format_ms(2000), "2s");
        assert_eq!(format_ms(150), "150ms");
        assert_eq!(format_ms(1500), "1500ms");
    }

    #[test]
    fn conflicts_follow_the_documented_table() {
        for (i, requested) in LockMode::ALL.iter().enumerate() {
            for (j, held) in LockMode::ALL.iter().enumerate() {
                let expected = TABLE_13_2[i].as_bytes()[j] == b'X';
                assert_eq!(requested.conflicts_with(*held), expected, "{requested} vs {held}");
            }
        }
    }

    #[test]
    fn share_and_stronger_block_reads_or_writes() {
        let blocking: Vec<LockMode> = LockMode::ALL.into_iter().filter(|m| m.blocks_reads_or_writes()).collect();
        assert_eq!(blocking, vec![Share, ShareRowExclusive, Exclusive, AccessExclusive]);
        assert_eq!(AccessExclusive.conflicting_modes().count(), 8);
        assert_eq!(
            Share.conflicting_modes().map(|m| m.pg_locks_name()).collect::<Vec<_>>(),
            ["RowExclusiveLock", "ShareUpdateExclusiveLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"]
        );
    }
}

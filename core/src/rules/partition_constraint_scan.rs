//! `partition-constraint-scan`: ATTACH PARTITION and CREATE TABLE ... PARTITION OF that scan a
//! table under ACCESS EXCLUSIVE to check a partition constraint no validated CHECK implies.
//!
//! PostgreSQL facts (documentation: ALTER TABLE "ATTACH PARTITION", CREATE TABLE "PARTITION
//! OF", "Table Partitioning" 5.11.2.2; src/backend/commands/tablecmds.c, partbounds.c):
//! - ATTACH PARTITION takes ACCESS EXCLUSIVE on the attached table and on the parent's DEFAULT
//!   partition (ATExecAttachPartition; the parent itself gets SHARE UPDATE EXCLUSIVE). It
//!   scans the attached table for rows outside the new bound, unless the table's valid
//!   CHECK constraints and NOT NULL columns imply the partition constraint
//!   (QueuePartitionConstraintValidation, PartConstraintImpliedByRelConstraint); for a
//!   partitioned table, each partition is proven or scanned on its own. Attaching a table as
//!   the DEFAULT partition checks it against the negation of every other partition's bound.
//! - When the parent has a DEFAULT partition, attaching or creating another partition scans
//!   the default partition for rows that belong to the new bound, unless its constraints
//!   imply they cannot exist (ATExecAttachPartition; DefineRelation and
//!   check_default_partition_contents for CREATE TABLE ... PARTITION OF, which also holds
//!   ACCESS EXCLUSIVE on the parent).
//! - The online route: a CHECK constraint equal to the partition constraint, added NOT VALID
//!   and validated under SHARE UPDATE EXCLUSIVE; the scan is then skipped.
//!   The facts layer runs PostgreSQL's own proof; this rule only reads what will be scanned.

use super::{lock_detail, Context, Finding, PARTITION_CONSTRAINT_SCAN};
use crate::model::{AlterTable, AlterTableCmd, LockMode, PartitionScan, Statement};
use crate::sqltext;

/// Flags, in an ALTER TABLE ... ATTACH PARTITION, the scan of the attached table (or of its
/// partitions) and the scan of the parent's DEFAULT partition, each when a scanned relation
/// is neither small nor created in this transaction.
pub fn partition_constraint_scan(at: &AlterTable, cmd: &AlterTableCmd, ctx: &Context, out: &mut Vec<Finding>) {
    let AlterTableCmd::AttachPartition(attach) = cmd else { return };
    let scans = scanned(&attach.scans, ctx);
    if !scans.is_empty() {
        out.push(Finding {
            rule: &PARTITION_CONSTRAINT_SCAN,
            message: format!(
                "attaching {} to {} would scan it under an ACCESS EXCLUSIVE lock to check the partition bound",
                attach.partition, at.table.name
            ),
            detail: lock_detail(
                "ATTACH PARTITION",
                LockMode::AccessExclusive,
                &relations(&scans),
                "it checks every row against the partition constraint, which no validated CHECK constraint implies",
            ),
            hint: check_route(
                "Prove the partition constraint with a CHECK constraint validated without blocking; ATTACH PARTITION then \
                 skips the scan:",
                &scans,
                &attach.statement_sql,
            ),
        });
    }
    let defaults = scanned(&attach.default_scans, ctx);
    if !defaults.is_empty() {
        out.push(default_finding("ATTACH PARTITION", &at.table.name, &defaults, &attach.statement_sql, None));
    }
}

/// Flags CREATE TABLE ... PARTITION OF when it scans the parent's DEFAULT partition and that
/// is neither small nor created in this transaction.
pub fn on_create_partition(stmt: &Statement, ctx: &Context, out: &mut Vec<Finding>) {
    let Statement::CreatePartition(cp) = stmt else { return };
    let defaults = scanned(&cp.default_scans, ctx);
    if !defaults.is_empty() {
        out.push(default_finding("CREATE TABLE ... PARTITION OF", &cp.parent.name, &defaults, &cp.statement_sql, Some(&cp.parent.name)));
    }
}

fn scanned<'a>(scans: &'a [PartitionScan], ctx: &Context) -> Vec<&'a PartitionScan> {
    scans.iter().filter(|s| !ctx.exempt(&PARTITION_CONSTRAINT_SCAN, &s.relation)).collect()
}

fn relations(scans: &[&PartitionScan]) -> String {
    super::relation_list(&scans.iter().map(|s| &s.relation).collect::<Vec<_>>())
}

/// The finding for the scan of a DEFAULT partition; `parent_locked` when the statement also
/// holds ACCESS EXCLUSIVE on the parent meanwhile (CREATE TABLE ... PARTITION OF).
fn default_finding(command: &str, parent: &str, defaults: &[&PartitionScan], statement: &str, parent_locked: Option<&str>) -> Finding {
    let targets = relations(defaults);
    let mut detail = lock_detail(
        command,
        LockMode::AccessExclusive,
        &targets,
        "it checks that the DEFAULT partition has no row that belongs to the new partition",
    );
    if let Some(p) = parent_locked {
        detail.push_str(&format!(" It holds an ACCESS EXCLUSIVE lock on {p} as well, so the whole partitioned table is blocked."));
    }
    Finding {
        rule: &PARTITION_CONSTRAINT_SCAN,
        message: format!("{command} would scan the default partition of {parent} under an ACCESS EXCLUSIVE lock"),
        detail,
        hint: check_route(
            "Prove the default partition has no row of the new bound with a CHECK constraint validated without blocking; \
             the scan is then skipped:",
            defaults,
            statement,
        ),
    }
}

/// The CHECK route: for each scanned relation, ADD CONSTRAINT ... CHECK (<constraint>) NOT
/// VALID and VALIDATE CONSTRAINT (each in its own transaction), then the statement, then the
/// helper constraints dropped.
fn check_route(intro: &str, scans: &[&PartitionScan], statement: &str) -> String {
    let mut lines = vec![intro.to_string()];
    for s in scans {
        let r = &s.relation.name;
        let c = &s.suggested_constraint;
        let check = match s.constraint_sql.as_deref() {
            // PostgreSQL deparses the constraint in parentheses already.
            Some(expr) if sqltext::is_parenthesized(expr) => format!("CHECK {expr}"),
            Some(expr) => format!("CHECK ({expr})"),
            None => "CHECK (<partition constraint>)".to_string(),
        };
        lines.push(format!("ALTER TABLE {r} ADD CONSTRAINT {c} {check} NOT VALID;"));
        lines.push(format!("ALTER TABLE {r} VALIDATE CONSTRAINT {c};"));
    }
    lines.push(format!("{statement};"));
    for s in scans {
        lines.push(format!("ALTER TABLE {} DROP CONSTRAINT {};", s.relation.name, s.suggested_constraint));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use crate::model::*;
    use crate::rules::testutil::*;

    fn scan(name: &str, mb: u64) -> PartitionScan {
        PartitionScan {
            relation: table(name, mb),
            constraint_sql: Some("(placed_at IS NOT NULL) AND (placed_at >= '2026-01-01') AND (placed_at < '2026-02-01')".into()),
            suggested_constraint: "orders_2026_01_partition_check".into(),
        }
    }

    fn attach(scans: Vec<PartitionScan>, default_scans: Vec<PartitionScan>) -> Statement {
        let mut parent = table("public.orders", 100);
        parent.kind = RelKind::PartitionedTable;
        alter(
            parent,
            LockMode::ShareUpdateExclusive,
            vec![AlterTableCmd::AttachPartition(AttachPartition {
                partition: "public.orders_2026_01".into(),
                scans,
                default_scans,
                statement_sql: "ALTER TABLE orders ATTACH PARTITION orders_2026_01 FOR VALUES FROM ('2026-01-01') TO ('2026-02-01')".into(),
            })],
        )
    }

    #[test]
    fn attaching_a_table_that_must_be_scanned_is_flagged_with_the_check_route() {
        let f = check(&attach(vec![scan("public.orders_2026_01", 68)], vec![]));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule.id, "partition-constraint-scan");
        assert_eq!(
            f[0].message,
            "attaching public.orders_2026_01 to public.orders would scan it under an ACCESS EXCLUSIVE lock to check the partition bound"
        );
        let steps: Vec<&str> = f[0].hint.lines().skip(1).collect();
        assert_eq!(steps, [
            "ALTER TABLE public.orders_2026_01 ADD CONSTRAINT orders_2026_01_partition_check CHECK ((placed_at IS NOT NULL) AND (placed_at >= '2026-01-01') AND (placed_at < '2026-02-01')) NOT VALID;",
            "ALTER TABLE public.orders_2026_01 VALIDATE CONSTRAINT orders_2026_01_partition_check;",
            "ALTER TABLE orders ATTACH PARTITION orders_2026_01 FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');",
            "ALTER TABLE public.orders_2026_01 DROP CONSTRAINT orders_2026_01_partition_check;",
        ]);
    }

    #[test]
    fn proven_small_or_new_attached_tables_pass() {
        assert!(check(&attach(vec![], vec![])).is_empty());
        assert!(check(&attach(vec![scan("public.orders_2026_01", 0)], vec![])).is_empty());
        let mut s = scan("public.orders_2026_01", 68);
        s.relation.invisible_to_others = true;
        assert!(check(&attach(vec![s], vec![])).is_empty());
    }

    #[test]
    fn the_default_partition_scan_is_flagged_on_attach_and_on_create() {
        let f = check(&attach(vec![], vec![scan("public.orders_default", 68)]));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].message, "ATTACH PARTITION would scan the default partition of public.orders under an ACCESS EXCLUSIVE lock");
        let mut parent = table("public.orders", 100);
        parent.kind = RelKind::PartitionedTable;
        let create = |default_scans| {
            Statement::CreatePartition(CreatePartition {
                parent: parent.clone(),
                partition: "orders_2026_02".into(),
                default_scans,
                statement_sql: "CREATE TABLE orders_2026_02 PARTITION OF orders FOR VALUES FROM ('2026-02-01') TO ('2026-03-01')".into(),
            })
        };
        let f = check(&create(vec![scan("public.orders_default", 68)]));
        assert_eq!(f.len(), 1);
        assert!(f[0]
            .detail
            .ends_with("It holds an ACCESS EXCLUSIVE lock on public.orders as well, so the whole partitioned table is blocked."));
        assert!(check(&create(vec![scan("public.orders_default", 0)])).is_empty());
        assert!(check(&create(vec![])).is_empty());
    }
}

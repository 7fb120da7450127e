//! `changing-column-type`: ALTER COLUMN TYPE that rewrites the table or rebuilds its indexes,
//! the same change made through a composite type, and a column dropped and added back under
//! the same name in one transaction (an ORM's "change column"), which loses every value.
//!
//! PostgreSQL facts (documentation: ALTER TABLE "SET DATA TYPE" and its Notes, ALTER TYPE
//! "ALTER ATTRIBUTE"; src/backend/commands/tablecmds.c):
//! - ALTER COLUMN TYPE takes ACCESS EXCLUSIVE and rewrites the table and its indexes unless
//!   the old type is binary coercible to the new one and the new typmod accepts every old
//!   value (ATColumnChangeRequiresRewrite): varchar(n) -> varchar(m >= n), varchar -> text,
//!   numeric(p,s) -> numeric(p2 >= p, s), timestamp -> timestamptz with TimeZone UTC (12+).
//!   The facts layer runs PostgreSQL's own test; this rule only reads its outcome.
//! - Without a rewrite, every index that uses the column is re-created from its definition
//!   (ATPostAlterTypeCleanup, ATPostAlterTypeParse); it keeps its storage only when
//!   CheckIndexCompatible (indexcmds.c) finds the same operator classes and collations and no
//!   expression or predicate (TryReuseIndex). Otherwise it is built again, under the ALTER
//!   TABLE's ACCESS EXCLUSIVE lock: `TYPE text COLLATE "C"` on an indexed text column does
//!   not rewrite the table but rebuilds its indexes.
//! - ALTER TYPE ... ALTER ATTRIBUTE ... TYPE ... CASCADE changes the column of every typed
//!   table of the composite type the same way (ATTypedTableRecursion).
//! - DROP COLUMN c then ADD COLUMN c <type> is not a type change to PostgreSQL: the new column
//!   is empty (NULL, or its default) in every row. TypeORM's changeColumn does this for a
//!   length or int -> bigint change.

use super::{lock_detail, Context, Finding, CHANGING_COLUMN_TYPE};
use crate::model::{AlterTable, AlterTableCmd, ColumnFacts, RelKind, Statement};
use crate::sqltext;

/// Flags, in one ALTER TABLE subcommand on a table that is neither small nor created in this
/// transaction: an ALTER COLUMN TYPE that PostgreSQL implements with a rewrite or with an
/// index rebuild (an undecided rewrite, `None`, is not flagged); and, on such a table that
/// has rows whatever its size, an ADD COLUMN that replaces a column of the same name dropped
/// in this transaction. The hint is the expand/contract route for the real column.
pub fn changing_column_type(at: &AlterTable, cmd: &AlterTableCmd, ctx: &Context, out: &mut Vec<Finding>) {
    let t = &at.table.name;
    match cmd {
        AlterTableCmd::AlterColumnType {
            column,
            new_type,
            rewrite: Some(rewrite),
            suggested_new_column: n,
            suggested_old_column: o,
            rebuilt_indexes,
            current,
        } if *rewrite || !rebuilt_indexes.is_empty() => {
            if ctx.exempt(&CHANGING_COLUMN_TYPE, &at.table) {
                return;
            }
            let route = expand_contract(at, column, n, o, new_type, current.as_deref());
            let (message, activity) = if *rewrite {
                (
                    format!("changing the type of {t}.{column} to {new_type} would rewrite the table"),
                    "it rewrites every row and rebuilds the table's indexes".to_string(),
                )
            } else {
                (
                    format!("changing the type of {t}.{column} to {new_type} would rebuild {}", index_list(rebuilt_indexes)),
                    format!(
                        "it rebuilds {} (the table is not rewritten, but the index's collation or operator class changes with the column)",
                        index_list(rebuilt_indexes)
                    ),
                )
            };
            let hint = if *rewrite {
                route
            } else {
                match current.as_deref().and_then(|c| replace_indexes_route(at, column, new_type, c)) {
                    Some(replace) => format!("{replace}\nOr take the expand/contract route:\n{route}"),
                    None => route,
                }
            };
            out.push(Finding {
                rule: &CHANGING_COLUMN_TYPE,
                message,
                detail: lock_detail("ALTER COLUMN TYPE", at.lock, &at.table.describe(), &activity),
                hint,
            });
        }
        AlterTableCmd::AddColumn { column, type_name, replaces: Some(dropped), .. } => {
            if at.table.invisible_to_others || !has_rows(at) {
                return;
            }
            let o = sqltext::suffixed_identifier(column, "_old");
            let when = if dropped.same_statement { "by this same ALTER TABLE" } else { "earlier in this transaction" };
            let route = match &dropped.current {
                Some(current) => expand_contract(at, column, &sqltext::suffixed_identifier(column, "_new"), &o, type_name, Some(current)),
                None => format!(
                    "Roll back: the dropped column's values, constraints and indexes come back with it. Then change its type \
                     the expand/contract way, with what the column has.\n{}",
                    expand_contract(at, column, &sqltext::suffixed_identifier(column, "_new"), &o, type_name, None)
                ),
            };
            out.push(Finding {
                rule: &CHANGING_COLUMN_TYPE,
                message: format!("adding column {column} back to {t} as {type_name} would lose every value of the {column} dropped {when}"),
                detail: format!(
                    "{column} ({}) is dropped {when} and added back as a new, empty column: PostgreSQL does not carry values \
                     over from a dropped column, so every row of {} gets NULL (or the new default) once this commits. This is how \
                     some ORMs (TypeORM's changeColumn) change a column's type or length.",
                    dropped.type_name,
                    at.table.describe()
                ),
                hint: route,
            });
        }
        _ => {}
    }
}

/// The findings of ALTER TYPE ... ALTER ATTRIBUTE ... TYPE ... CASCADE: one ALTER COLUMN TYPE
/// per typed table of the type. A typed table cannot get a column of its own (the route's ADD
/// COLUMN): the HINT first detaches it from the type (ALTER TABLE ... NOT OF).
pub fn on_composite_type(stmt: &Statement, ctx: &Context, out: &mut Vec<Finding>) {
    let Statement::AlterCompositeType { type_name, tables } = stmt else { return };
    for at in tables.iter().filter(|at| !at.table.invisible_to_others) {
        for cmd in &at.commands {
            let before = out.len();
            changing_column_type(at, cmd, ctx, out);
            for f in &mut out[before..] {
                f.hint = format!(
                    "{} is a typed table of {type_name}: its columns follow the type, and it cannot get a column of its own. \
                     Detach it from the type first (its columns stay), then change the column on the table:\n\
                     ALTER TABLE {} NOT OF;\n{}",
                    at.table.name, at.table.name, f.hint
                );
            }
        }
    }
}

/// Whether the table may have rows: it has a block (main fork or TOAST) and its row estimate
/// is not 0 (never analyzed counts as having rows). Monotonic in size, like the size rules.
fn has_rows(at: &AlterTable) -> bool {
    at.table.size_bytes > 0 && at.table.estimated_rows != Some(0.0)
}

/// `index a`, `indexes a, b`.
fn index_list(names: &[String]) -> String {
    match names {
        [one] => format!("index {one}"),
        many => format!("indexes {}", many.join(", ")),
    }
}

/// For a type change that rewrites nothing but rebuilds indexes: replace those indexes without
/// blocking first, so that the ALTER keeps or has none to rebuild. An index whose only change
/// is the collation (a COLLATE clause, no expression or predicate) is rebuilt concurrently with
/// the new collation under a new name, the old one dropped concurrently, and the new one
/// renamed: the ALTER then finds its collation unchanged (pg_get_indexdef writes it, as it
/// differs from the old column's) and keeps it. Any other rebuilt index is dropped
/// concurrently before the ALTER and built again concurrently after it. `None` when a PRIMARY
/// KEY or UNIQUE constraint's index is rebuilt (its index cannot be swapped that way).
fn replace_indexes_route(at: &AlterTable, column: &str, new_type: &str, c: &ColumnFacts) -> Option<String> {
    let rebuilt: Vec<_> = c.indexes.iter().filter(|i| i.rebuilt).collect();
    if rebuilt.is_empty() || rebuilt.iter().any(|i| i.constraint.is_some()) {
        return None;
    }
    let collation = new_type.split_once(" COLLATE ").map(|(_, c)| c);
    let mut before = Vec::new();
    let mut after = Vec::new();
    for index in rebuilt {
        let new_name = sqltext::suffixed_identifier(&index.name, "_new");
        let with_collation = match (collation, index.has_expressions) {
            (Some(coll), false) => sqltext::index_definition_on(&index.definition, &new_name, column, &format!("{column} COLLATE {coll}")),
            _ => None,
        };
        match with_collation {
            Some(def) => {
                before.push(format!("{def};"));
                before.push(format!("DROP INDEX CONCURRENTLY {};", index.qualified_name));
                let schema = index.qualified_name.strip_suffix(&index.name).unwrap_or("");
                before.push(format!("ALTER INDEX {schema}{new_name} RENAME TO {};", index.name));
            }
            None => {
                before.push(format!("DROP INDEX CONCURRENTLY {};", index.qualified_name));
                match sqltext::add_concurrently(&index.definition) {
                    Some(def) => after.push(format!("{def};")),
                    None => after.push(format!("{};", index.definition)),
                }
            }
        }
    }
    let mut lines = vec!["PostgreSQL keeps an index through the change only when its collation and operator class stay the same: replace \
         the others first without blocking (an index dropped here is missing until it is built again after the change)."
        .to_string()];
    lines.extend(before);
    lines.push(format!("ALTER TABLE {} ALTER COLUMN {column} TYPE {new_type};", at.table.name));
    lines.extend(after);
    Some(lines.join("\n"))
}

/// The expand/contract route for changing `column` of `at.table` to `new_type`: add a new
/// column, keep it in sync with a trigger, backfill in batches, recreate the column's NOT NULL,
/// CHECK and FOREIGN KEY constraints NOT VALID + VALIDATE and its indexes CONCURRENTLY, then
/// swap the names in one short transaction. With `current` (what the column has, from the
/// catalog) every step names the real objects; without it the route is shown in outline.
pub fn expand_contract(at: &AlterTable, column: &str, n: &str, o: &str, new_type: &str, current: Option<&ColumnFacts>) -> String {
    let t = &at.table.name;
    let Some(c) = current else {
        return format!(
            "Add a new column, backfill it in batches (keeping new writes in sync, e.g. with a trigger), \
             then swap the names in one short transaction:\n\
             ALTER TABLE {t} ADD COLUMN {n} {new_type};\n\
             UPDATE {t} SET {n} = {column} WHERE ... ; -- in batches\n\
             ALTER TABLE {t} RENAME COLUMN {column} TO {o};\n\
             ALTER TABLE {t} RENAME COLUMN {n} TO {column};"
        );
    };
    let bare_table = t.rsplit('.').next().unwrap_or(t).trim_matches('"');
    let bare_column = column.trim_matches('"');
    let sync = sqltext::suffixed_identifier(&sqltext::quote_if_needed(&format!("{bare_table}_{bare_column}")), "_sync");
    let value = c.new_value_sql.clone().unwrap_or_else(|| column.to_string());
    let new_value = sqltext::replace_identifier(&value, 0..value.len(), column, &format!("NEW.{column}"));
    let key = &c.batch_key;
    let mut lines = vec![
        "Change the type without a rewrite under ACCESS EXCLUSIVE: add a new column, keep it in sync with a trigger, backfill \
         it in batches (one transaction per batch), recreate what the column has on the new one without blocking, then swap \
         the names in one short transaction:"
            .to_string(),
        format!("ALTER TABLE {t} ADD COLUMN {n} {new_type};"),
    ];
    if let Some(d) = &c.default_sql {
        lines.push(format!("ALTER TABLE {t} ALTER COLUMN {n} SET DEFAULT {d};"));
    }
    lines.push(format!("CREATE FUNCTION {sync}() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN NEW.{n} := {new_value}; RETURN NEW; END$$;"));
    lines.push(format!("CREATE TRIGGER {sync} BEFORE INSERT OR UPDATE ON {t} FOR EACH ROW EXECUTE FUNCTION {sync}();"));
    lines.push(format!(
        "UPDATE {t} SET {n} = {value} WHERE {key} IN (SELECT {key} FROM {t} WHERE {n} IS NULL AND {column} IS NOT NULL LIMIT 10000); \
         -- repeat until it updates no row"
    ));
    let not_null = sqltext::suffixed_identifier(&sqltext::quote_if_needed(&format!("{bare_table}_{}", n.trim_matches('"'))), "_not_null");
    if c.not_null {
        lines.push(format!("ALTER TABLE {t} ADD CONSTRAINT {not_null} CHECK ({n} IS NOT NULL) NOT VALID;"));
        lines.push(format!("ALTER TABLE {t} VALIDATE CONSTRAINT {not_null};"));
    }
    for (name, def) in &c.constraints {
        let end = def.find(" REFERENCES ").unwrap_or(def.len());
        let def = sqltext::replace_identifier(def, 0..end, column, n);
        let new_name = sqltext::suffixed_identifier(name, "_new");
        lines.push(format!("ALTER TABLE {t} ADD CONSTRAINT {new_name} {def} NOT VALID;"));
        lines.push(format!("ALTER TABLE {t} VALIDATE CONSTRAINT {new_name};"));
    }
    let mut swap_constraints = Vec::new();
    for index in &c.indexes {
        let new_name = sqltext::suffixed_identifier(&index.name, "_new");
        match sqltext::index_definition_on(&index.definition, &new_name, column, n) {
            Some(def) => lines.push(format!("{def};")),
            None => lines.push(format!("-- recreate index {} on {n} with CREATE INDEX CONCURRENTLY", index.name)),
        }
        if let Some((constraint, kind)) = &index.constraint {
            swap_constraints
                .push(format!("ALTER TABLE {t} DROP CONSTRAINT {constraint}, ADD CONSTRAINT {constraint} {kind} USING INDEX {new_name};"));
        }
    }
    if at.table.kind == RelKind::PartitionedTable && !c.indexes.is_empty() {
        lines.push(
            "-- on a partitioned table, build each partition's index CONCURRENTLY and attach it (see require-concurrent-index-creation)"
                .to_string(),
        );
    }
    lines.push("BEGIN;".to_string());
    if c.not_null {
        lines.push(format!("ALTER TABLE {t} ALTER COLUMN {n} SET NOT NULL;"));
        lines.push(format!("ALTER TABLE {t} DROP CONSTRAINT {not_null};"));
        lines.push(format!("ALTER TABLE {t} ALTER COLUMN {column} DROP NOT NULL;"));
    }
    lines.push(format!("DROP TRIGGER {sync} ON {t};"));
    lines.push(format!("DROP FUNCTION {sync}();"));
    if !c.referenced_by.is_empty() && !swap_constraints.is_empty() {
        lines.push(format!(
            "-- {} reference {column}: drop them here and add them back NOT VALID against the new key (then VALIDATE), \
             their own columns changed the same way first",
            c.referenced_by.join(", ")
        ));
    }
    lines.extend(swap_constraints);
    lines.push(format!("ALTER TABLE {t} RENAME COLUMN {column} TO {o};"));
    lines.push(format!("ALTER TABLE {t} RENAME COLUMN {n} TO {column};"));
    lines.push("COMMIT;".to_string());
    lines.push(format!("-- once no code uses it: ALTER TABLE {t} DROP COLUMN {o};"));
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use crate::model::*;
    use crate::rules::testutil::*;

    fn alter_type(rewrite: Option<bool>) -> AlterTableCmd {
        AlterTableCmd::AlterColumnType {
            column: "quantity".into(),
            new_type: "bigint".into(),
            rewrite,
            suggested_new_column: "quantity_new".into(),
            suggested_old_column: "quantity_old".into(),
            rebuilt_indexes: vec![],
            current: None,
        }
    }

    #[test]
    fn type_change_that_rewrites_is_flagged() {
        let f = check(&alter(table("public.orders", 68), LockMode::AccessExclusive, vec![alter_type(Some(true))]));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule.id, "changing-column-type");
        assert!(f[0].message.contains("public.orders.quantity to bigint"));
        assert!(f[0].hint.contains("ADD COLUMN quantity_new bigint;"));
    }

    #[test]
    fn binary_coercible_or_undecided_type_change_passes() {
        let t = table("public.orders", 68);
        assert!(check(&alter(t.clone(), LockMode::AccessExclusive, vec![alter_type(Some(false))])).is_empty());
        assert!(check(&alter(t, LockMode::AccessExclusive, vec![alter_type(None)])).is_empty());
    }

    #[test]
    fn type_change_on_small_tables_or_tables_created_in_transaction_passes() {
        assert!(check(&alter(table("public.tiny", 0), LockMode::AccessExclusive, vec![alter_type(Some(true))])).is_empty());
        assert!(check(&alter(new_table("public.fresh"), LockMode::AccessExclusive, vec![alter_type(Some(true))])).is_empty());
    }

    #[test]
    fn collation_change_that_rebuilds_an_index_is_flagged() {
        let mut cmd = alter_type(Some(false));
        if let AlterTableCmd::AlterColumnType { rebuilt_indexes, new_type, .. } = &mut cmd {
            *rebuilt_indexes = vec!["public.orders_status_idx".into()];
            *new_type = "text COLLATE \"C\"".into();
        }
        let f = check(&alter(table("public.orders", 68), LockMode::AccessExclusive, vec![cmd]));
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].message,
            "changing the type of public.orders.quantity to text COLLATE \"C\" would rebuild index public.orders_status_idx"
        );
        assert!(f[0].detail.contains("ACCESS EXCLUSIVE lock on public.orders (68 MB"), "{}", f[0].detail);
    }

    #[test]
    fn a_collation_change_hint_replaces_the_indexes_first() {
        let index = |name: &str, def: &str, has_expressions: bool| IndexFacts {
            name: name.into(),
            qualified_name: format!("public.{name}"),
            definition: def.into(),
            constraint: None,
            has_expressions,
            rebuilt: true,
        };
        let current = ColumnFacts {
            type_name: "text".into(),
            batch_key: "id".into(),
            indexes: vec![
                index("orders_status_idx", "CREATE INDEX orders_status_idx ON public.orders USING btree (status)", false),
                index("orders_status_upper_idx", "CREATE INDEX orders_status_upper_idx ON public.orders USING btree (upper(status))", true),
            ],
            ..ColumnFacts::default()
        };
        let cmd = AlterTableCmd::AlterColumnType {
            column: "status".into(),
            new_type: "text COLLATE \"C\"".into(),
            rewrite: Some(false),
            suggested_new_column: "status_new".into(),
            suggested_old_column: "status_old".into(),
            rebuilt_indexes: vec!["public.orders_status_idx".into(), "public.orders_status_upper_idx".into()],
            current: Some(Box::new(current)),
        };
        let f = check(&alter(table("public.orders", 68), LockMode::AccessExclusive, vec![cmd]));
        let steps: Vec<&str> = f[0].hint.lines().skip(1).take(6).collect();
        assert_eq!(
            steps,
            [
                "CREATE INDEX CONCURRENTLY orders_status_idx_new ON public.orders USING btree (status COLLATE \"C\");",
                "DROP INDEX CONCURRENTLY public.orders_status_idx;",
                "ALTER INDEX public.orders_status_idx_new RENAME TO orders_status_idx;",
                "DROP INDEX CONCURRENTLY public.orders_status_upper_idx;",
                "ALTER TABLE public.orders ALTER COLUMN status TYPE text COLLATE \"C\";",
                "CREATE INDEX CONCURRENTLY orders_status_upper_idx ON public.orders USING btree (upper(status));",
            ]
        );
        assert!(f[0].hint.contains("Or take the expand/contract route:"), "{}", f[0].hint);
    }

    fn facts() -> ColumnFacts {
        ColumnFacts {
            type_name: "integer".into(),
            not_null: true,
            default_sql: Some("0".into()),
            indexes: vec![
                IndexFacts {
                    name: "orders_quantity_idx".into(),
                    qualified_name: "public.orders_quantity_idx".into(),
                    definition: "CREATE INDEX orders_quantity_idx ON public.orders USING btree (quantity)".into(),
                    constraint: None,
                    has_expressions: false,
                    rebuilt: false,
                },
                IndexFacts {
                    name: "orders_quantity_key".into(),
                    qualified_name: "public.orders_quantity_key".into(),
                    definition: "CREATE UNIQUE INDEX orders_quantity_key ON public.orders USING btree (quantity, id)".into(),
                    constraint: Some(("orders_quantity_key".into(), "UNIQUE")),
                    has_expressions: false,
                    rebuilt: false,
                },
            ],
            constraints: vec![
                ("orders_quantity_check".into(), "CHECK ((quantity > 0))".into()),
                ("orders_quantity_fkey".into(), "FOREIGN KEY (quantity) REFERENCES sizes(quantity)".into()),
            ],
            referenced_by: vec![],
            batch_key: "id".into(),
            new_value_sql: Some("(quantity)::bigint".into()),
        }
    }

    #[test]
    fn the_route_carries_over_everything_the_column_has() {
        let mut cmd = alter_type(Some(true));
        if let AlterTableCmd::AlterColumnType { current, .. } = &mut cmd {
            *current = Some(Box::new(facts()));
        }
        let f = check(&alter(table("public.orders", 68), LockMode::AccessExclusive, vec![cmd]));
        let steps: Vec<&str> = f[0].hint.lines().skip(1).collect();
        assert_eq!(steps, [
            "ALTER TABLE public.orders ADD COLUMN quantity_new bigint;",
            "ALTER TABLE public.orders ALTER COLUMN quantity_new SET DEFAULT 0;",
            "CREATE FUNCTION orders_quantity_sync() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN NEW.quantity_new := (NEW.quantity)::bigint; RETURN NEW; END$$;",
            "CREATE TRIGGER orders_quantity_sync BEFORE INSERT OR UPDATE ON public.orders FOR EACH ROW EXECUTE FUNCTION orders_quantity_sync();",
            "UPDATE public.orders SET quantity_new = (quantity)::bigint WHERE id IN (SELECT id FROM public.orders WHERE quantity_new IS NULL AND quantity IS NOT NULL LIMIT 10000); -- repeat until it updates no row",
            "ALTER TABLE public.orders ADD CONSTRAINT orders_quantity_new_not_null CHECK (quantity_new IS NOT NULL) NOT VALID;",
            "ALTER TABLE public.orders VALIDATE CONSTRAINT orders_quantity_new_not_null;",
            "ALTER TABLE public.orders ADD CONSTRAINT orders_quantity_check_new CHECK ((quantity_new > 0)) NOT VALID;",
            "ALTER TABLE public.orders VALIDATE CONSTRAINT orders_quantity_check_new;",
            "ALTER TABLE public.orders ADD CONSTRAINT orders_quantity_fkey_new FOREIGN KEY (quantity_new) REFERENCES sizes(quantity) NOT VALID;",
            "ALTER TABLE public.orders VALIDATE CONSTRAINT orders_quantity_fkey_new;",
            "CREATE INDEX CONCURRENTLY orders_quantity_idx_new ON public.orders USING btree (quantity_new);",
            "CREATE UNIQUE INDEX CONCURRENTLY orders_quantity_key_new ON public.orders USING btree (quantity_new, id);",
            "BEGIN;",
            "ALTER TABLE public.orders ALTER COLUMN quantity_new SET NOT NULL;",
            "ALTER TABLE public.orders DROP CONSTRAINT orders_quantity_new_not_null;",
            "ALTER TABLE public.orders ALTER COLUMN quantity DROP NOT NULL;",
            "DROP TRIGGER orders_quantity_sync ON public.orders;",
            "DROP FUNCTION orders_quantity_sync();",
            "ALTER TABLE public.orders DROP CONSTRAINT orders_quantity_key, ADD CONSTRAINT orders_quantity_key UNIQUE USING INDEX orders_quantity_key_new;",
            "ALTER TABLE public.orders RENAME COLUMN quantity TO quantity_old;",
            "ALTER TABLE public.orders RENAME COLUMN quantity_new TO quantity;",
            "COMMIT;",
            "-- once no code uses it: ALTER TABLE public.orders DROP COLUMN quantity_old;",
        ]);
    }

    fn re_add(same_statement: bool) -> AlterTableCmd {
        AlterTableCmd::AddColumn {
            column: "quantity".into(),
            type_name: "bigint".into(),
            rewrite: None,
            not_null_without_default: false,
            default_sql: None,
            not_null: false,
            replaces: Some(DroppedColumn { type_name: "integer".into(), same_statement, current: None }),
        }
    }

    #[test]
    fn a_column_dropped_and_added_back_in_one_transaction_is_flagged_on_any_table_with_rows() {
        let f = check(&alter(table("public.orders", 68), LockMode::AccessExclusive, vec![re_add(false)]));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule.id, "changing-column-type");
        assert_eq!(
            f[0].message,
            "adding column quantity back to public.orders as bigint would lose every value of the quantity dropped earlier in this transaction"
        );
        assert!(f[0].hint.contains("ADD COLUMN quantity_new bigint;"), "{}", f[0].hint);
        // Size does not matter, rows do.
        let mut small = table("public.tiny", 0);
        small.size_bytes = 8192;
        assert_eq!(check(&alter(small.clone(), LockMode::AccessExclusive, vec![re_add(true)])).len(), 1);
        small.estimated_rows = Some(0.0);
        assert!(check(&alter(small, LockMode::AccessExclusive, vec![re_add(true)])).is_empty());
        assert!(check(&alter(table("public.empty", 0), LockMode::AccessExclusive, vec![re_add(true)])).is_empty());
        assert!(check(&alter(new_table("public.fresh"), LockMode::AccessExclusive, vec![re_add(true)])).is_empty());
    }

    #[test]
    fn a_composite_type_change_is_judged_on_each_typed_table() {
        let stmt = Statement::AlterCompositeType {
            type_name: "public.line".into(),
            tables: vec![
                AlterTable { table: table("public.lines_a", 68), lock: LockMode::AccessExclusive, commands: vec![alter_type(Some(true))] },
                AlterTable { table: table("public.lines_b", 0), lock: LockMode::AccessExclusive, commands: vec![alter_type(Some(true))] },
            ],
        };
        let f = check(&stmt);
        assert_eq!(f.len(), 1);
        assert!(f[0].message.contains("public.lines_a.quantity"), "{}", f[0].message);
        assert!(f[0].hint.contains("\nALTER TABLE public.lines_a NOT OF;\n"), "{}", f[0].hint);
    }
}

//! Differential lock test: for each DDL statement of [`CASES`], the relation locks a
//! transaction holds right after it are the same with the guard (`lock_timeout_policy =
//! auto`, mode `warn`, so every statement is judged and runs) as without it (mode `off`:
//! PostgreSQL alone), and `pg_migration_guard.lock_targets(statement)` predicts them.
//!
//! Locks are read from `pg_locks` (this backend, `locktype = 'relation'`, relations with an
//! oid of at least 16384: no catalog). Each statement runs in a transaction that is rolled
//! back, so every case starts from the same fixture (schema `lockdiff`).
//!
//! What "predicts" means, per relation that existed before the statement:
//! - every predicted relation is held, and the strongest mode held on it is the predicted
//!   mode (lock_targets lists the strongest mode per relation);
//! - every held relation is predicted, except
//!   - indexes the statement does not name (`lock_targets` lists an index only where the
//!     statement names it): PostgreSQL reaches them through their table, after the table's
//!     own lock;
//!   - TOAST tables and their indexes: reached through their table the same way;
//!   - the relations a case lists in `unpredicted`, each with the reason.
//!
//! Relations the statement creates (new indexes, tables, partitions, the transient heap of a
//! rewrite) are never predicted: no other session can see them before commit. They still
//! count in the comparison of the guard's locks with PostgreSQL's (by name, or as
//! "transient" when the statement dropped them again).

use std::collections::{BTreeMap, BTreeSet};

use pg_migration_guard_integration::*;

const FIXTURE: &str = r#"
SET pg_migration_guard.mode = off;
DROP SCHEMA IF EXISTS lockdiff CASCADE;
DROP SCHEMA IF EXISTS lockdiff2 CASCADE;
DO $$ BEGIN CREATE ROLE lockdiff_other NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
CREATE SCHEMA lockdiff;
CREATE SCHEMA lockdiff2;
SET search_path = lockdiff;
CREATE FUNCTION trg() RETURNS trigger LANGUAGE plpgsql AS $f$BEGIN RETURN NEW; END$f$;
-- plain tables
CREATE TABLE plain (id int PRIMARY KEY, a int, b text, c int);
CREATE INDEX plain_a_idx ON plain (a);
INSERT INTO plain SELECT g, g, 'x', g FROM generate_series(1, 100) g;
CREATE TRIGGER plain_trg BEFORE INSERT ON plain FOR EACH ROW EXECUTE FUNCTION trg();
CREATE TABLE lone (id int);
CREATE TABLE withseq (id serial PRIMARY KEY, v int);
-- foreign keys
CREATE TABLE ref_parent (id int PRIMARY KEY, label text);
INSERT INTO ref_parent SELECT g, 'p' FROM generate_series(1, 100) g;
CREATE TABLE ref_child (id int PRIMARY KEY, pid int CONSTRAINT ref_child_pid_fkey REFERENCES ref_parent, x int);
INSERT INTO ref_child SELECT g, g, g FROM generate_series(1, 50) g;
ALTER TABLE ref_child ADD CONSTRAINT ref_child_x_fkey FOREIGN KEY (x) REFERENCES ref_parent NOT VALID;
-- partitioned tables: a sub-partitioned partition, a default partition, a row trigger
CREATE TABLE part (id int, k int, v text, CONSTRAINT part_v_check CHECK (v <> '')) PARTITION BY RANGE (k);
CREATE TABLE part_1 PARTITION OF part FOR VALUES FROM (0) TO (100);
CREATE TABLE part_2 PARTITION OF part FOR VALUES FROM (100) TO (200);
CREATE TABLE part_3 PARTITION OF part FOR VALUES FROM (200) TO (300) PARTITION BY RANGE (k);
CREATE TABLE part_3a PARTITION OF part_3 FOR VALUES FROM (200) TO (250);
CREATE TABLE part_def PARTITION OF part DEFAULT;
CREATE INDEX part_k_idx ON part (k);
CREATE TRIGGER part_trg AFTER INSERT ON part FOR EACH ROW EXECUTE FUNCTION trg();
INSERT INTO part SELECT g, g % 250, 'v' FROM generate_series(1, 300) g;
CREATE TABLE part_new (id int, k int, v text, CONSTRAINT part_v_check CHECK (v <> ''));
-- a partitioned table a foreign key references, and tables that reference
CREATE TABLE pref (id int PRIMARY KEY) PARTITION BY RANGE (id);
CREATE TABLE pref_1 PARTITION OF pref FOR VALUES FROM (0) TO (100);
CREATE TABLE pref_2 PARTITION OF pref FOR VALUES FROM (100) TO (200);
INSERT INTO pref SELECT g FROM generate_series(1, 150) g;
CREATE TABLE pref_child (id int, pid int CONSTRAINT pref_child_pid_fkey REFERENCES pref);
CREATE TABLE pfk (id int, pid int);
CREATE TABLE pfk_part (id int, pid int) PARTITION BY RANGE (id);
CREATE TABLE pfk_part_1 PARTITION OF pfk_part FOR VALUES FROM (0) TO (100);
CREATE TABLE fkpart (id int, pid int CONSTRAINT fkpart_pid_fkey REFERENCES ref_parent) PARTITION BY RANGE (id);
CREATE TABLE fkpart_1 PARTITION OF fkpart FOR VALUES FROM (0) TO (100);
CREATE TABLE fkpart_new (id int, pid int);
-- inheritance
CREATE TABLE inh_parent (a int, b int, CONSTRAINT inh_parent_a_check CHECK (a > -1000));
CREATE TABLE inh_child1 () INHERITS (inh_parent);
CREATE TABLE inh_child2 () INHERITS (inh_parent);
CREATE TABLE inh_grandchild () INHERITS (inh_child1);
ALTER TABLE inh_parent ADD CONSTRAINT inh_nv CHECK (b > -1000) NOT VALID;
INSERT INTO inh_child1 VALUES (1, 1);
CREATE TABLE inh_loner (a int, b int, CONSTRAINT inh_parent_a_check CHECK (a > -1000), CONSTRAINT inh_nv CHECK (b > -1000));
-- views and materialized views
CREATE TABLE mv_base (id int PRIMARY KEY, w int);
INSERT INTO mv_base SELECT g, g FROM generate_series(1, 100) g;
CREATE MATERIALIZED VIEW mv AS SELECT p.id, count(*) AS n FROM plain p JOIN mv_base m ON m.id = p.id GROUP BY p.id;
CREATE UNIQUE INDEX mv_id_idx ON mv (id);
CREATE VIEW v AS SELECT id, w FROM mv_base;
CREATE MATERIALIZED VIEW mv_view AS SELECT * FROM v;
CREATE MATERIALIZED VIEW mv_inh AS SELECT a FROM inh_parent;
CREATE MATERIALIZED VIEW mv_only AS SELECT a FROM ONLY inh_parent;
CREATE MATERIALIZED VIEW mv_part AS SELECT id, k FROM part;
-- typed tables
CREATE TYPE comp AS (x int, y text);
CREATE TABLE typed1 OF comp;
CREATE TABLE typed2 OF comp;
CREATE TABLE typed1_child () INHERITS (typed1);
CREATE TABLE comp_cand (x int, y text);
-- domains
CREATE DOMAIN dint AS int;
CREATE DOMAIN dint2 AS dint;
CREATE DOMAIN dint_nv AS int;
ALTER DOMAIN dint_nv ADD CONSTRAINT dint_nv_check CHECK (VALUE > 0) NOT VALID;
CREATE TABLE dom_use (id int, d dint);
CREATE TABLE dom_use2 (id int, d dint2);
CREATE TABLE dom_nv_use (d dint_nv);
CREATE VIEW dom_view AS SELECT id FROM dom_use;
"#;

/// One statement and the locks on pre-existing relations (other than unnamed indexes and
/// TOAST) that lock_targets() does not predict, each with the reason.
struct Case {
    sql: &'static str,
    unpredicted: &'static [(&'static str, &'static str)],
}

const fn case(sql: &'static str) -> Case {
    Case { sql, unpredicted: &[] }
}

const READ_BY_QUERY: &str = "read by the new relation's query: lock_targets() does not analyze the query of CREATE VIEW / \
                             CREATE MATERIALIZED VIEW (the parser locks what it reads)";
const PRUNED_PARTITIONS: &str = "a partition the materialized view's query reads: the planner locks only the partitions \
                                 partition pruning keeps (expand_partitioned_rtentry), which lock_targets() does not model";

const CASES: &[Case] = &[
    // plain table
    case("ALTER TABLE plain ADD COLUMN z int"),
    case("ALTER TABLE plain ADD COLUMN z int DEFAULT random()::int"),
    case("ALTER TABLE plain DROP COLUMN c"),
    case("ALTER TABLE plain ALTER COLUMN c TYPE bigint"),
    case("ALTER TABLE plain ALTER COLUMN b TYPE varchar(10)"),
    case("ALTER TABLE plain ALTER COLUMN c SET DEFAULT 1"),
    case("ALTER TABLE plain ALTER COLUMN c SET NOT NULL"),
    case("ALTER TABLE plain ALTER COLUMN c SET STATISTICS 100"),
    case("ALTER TABLE plain ALTER COLUMN b SET STORAGE EXTERNAL"),
    case("ALTER TABLE plain ALTER COLUMN b SET COMPRESSION pglz"),
    case("ALTER TABLE plain ADD COLUMN r int REFERENCES pref"),
    case("ALTER TRIGGER plain_trg ON plain RENAME TO plain_trg2"),
    case("COMMENT ON INDEX plain_a_idx IS 'x'"),
    case("ALTER TABLE plain ADD CONSTRAINT plain_c_check CHECK (c > 0)"),
    case("ALTER TABLE plain ADD CONSTRAINT plain_c_key UNIQUE (c)"),
    case("ALTER TABLE plain SET (fillfactor = 90)"),
    case("ALTER TABLE plain SET UNLOGGED"),
    case("ALTER TABLE plain CLUSTER ON plain_pkey"),
    case("ALTER TABLE plain REPLICA IDENTITY FULL"),
    case("ALTER TABLE plain OWNER TO lockdiff_other"),
    case("ALTER TABLE plain ENABLE ROW LEVEL SECURITY"),
    case("ALTER TABLE plain DISABLE TRIGGER ALL"),
    case("ALTER TABLE plain RENAME COLUMN b TO bb"),
    case("ALTER TABLE plain RENAME TO plain2"),
    case("ALTER TABLE plain RENAME CONSTRAINT plain_pkey TO plain_pk"),
    case("ALTER INDEX plain_a_idx RENAME TO plain_a_idx2"),
    case("ALTER INDEX plain_a_idx SET (fillfactor = 80)"),
    case("CREATE INDEX ON plain (b)"),
    case("DROP INDEX plain_a_idx"),
    case("CREATE TRIGGER t2 AFTER UPDATE ON plain FOR EACH ROW EXECUTE FUNCTION trg()"),
    case("DROP TRIGGER plain_trg ON plain"),
    case("CREATE POLICY p1 ON plain USING (true)"),
    case("CREATE RULE r1 AS ON INSERT TO plain DO ALSO NOTIFY plain"),
    case("COMMENT ON TABLE plain IS 'x'"),
    case("COMMENT ON COLUMN plain.b IS 'x'"),
    case("REINDEX TABLE plain"),
    case("REINDEX INDEX plain_a_idx"),
    case("CLUSTER plain USING plain_pkey"),
    case("TRUNCATE plain CASCADE"),
    case("DROP TABLE lone"),
    case("ALTER TABLE withseq OWNER TO lockdiff_other"),
    case("ALTER TABLE withseq SET SCHEMA lockdiff2"),
    case("TRUNCATE withseq RESTART IDENTITY CASCADE"),
    case("DROP TABLE withseq"),
    // foreign keys
    case("ALTER TABLE ref_child ADD CONSTRAINT fk2 FOREIGN KEY (x) REFERENCES ref_parent (id)"),
    case("ALTER TABLE ref_child ADD CONSTRAINT fk2 FOREIGN KEY (x) REFERENCES ref_parent (id) NOT VALID"),
    case("ALTER TABLE ref_child VALIDATE CONSTRAINT ref_child_x_fkey"),
    case("ALTER TABLE ref_child VALIDATE CONSTRAINT ref_child_pid_fkey"),
    case("ALTER TABLE ref_child DROP CONSTRAINT ref_child_pid_fkey"),
    case("ALTER TABLE ref_child DROP COLUMN pid"),
    case("ALTER TABLE ref_child ALTER COLUMN pid TYPE bigint"),
    case("ALTER TABLE ref_parent ALTER COLUMN id TYPE bigint"),
    case("ALTER TABLE ref_parent DROP COLUMN id CASCADE"),
    case("ALTER TABLE ref_child ADD COLUMN q int REFERENCES ref_parent"),
    case("ALTER TABLE ref_child RENAME CONSTRAINT ref_child_pid_fkey TO fk_renamed"),
    case("DROP TABLE ref_child"),
    case("DROP TABLE ref_parent CASCADE"),
    case("TRUNCATE ref_parent CASCADE"),
    case("CREATE TABLE newt (id int REFERENCES ref_parent)"),
    case("CREATE TABLE like_t (LIKE plain)"),
    // partitioned tables
    case("ALTER TABLE part ADD COLUMN z int"),
    case("ALTER TABLE part DROP COLUMN v"),
    case("ALTER TABLE part ALTER COLUMN v SET NOT NULL"),
    case("ALTER TABLE part ALTER COLUMN v TYPE varchar(20)"),
    case("ALTER TABLE part ADD CONSTRAINT part_k_check CHECK (k >= 0)"),
    case("ALTER TABLE part ADD CONSTRAINT part_id_k_key UNIQUE (id, k)"),
    case("ALTER TABLE part ADD PRIMARY KEY (id, k)"),
    case("ALTER TABLE part DETACH PARTITION part_3"),
    case("REINDEX INDEX part_1_k_idx"),
    case("ALTER TABLE part DROP CONSTRAINT part_v_check"),
    case("ALTER TABLE part DETACH PARTITION part_2"),
    case("ALTER TABLE part ATTACH PARTITION part_new FOR VALUES FROM (300) TO (400)"),
    case("ALTER TABLE part REPLICA IDENTITY FULL"),
    case("ALTER TABLE part OWNER TO lockdiff_other"),
    case("ALTER TABLE part ENABLE ROW LEVEL SECURITY"),
    case("ALTER TABLE part DISABLE TRIGGER ALL"),
    case("ALTER TABLE part DISABLE TRIGGER USER"),
    case("ALTER TABLE ONLY part DISABLE TRIGGER ALL"),
    case("ALTER TABLE part RENAME COLUMN v TO vv"),
    case("ALTER TABLE part ALTER COLUMN v SET STATISTICS 100"),
    case("ALTER TABLE part ALTER COLUMN v SET DEFAULT 'x'"),
    case("ALTER TABLE ONLY part ALTER COLUMN v SET DEFAULT 'x'"),
    case("ALTER TABLE part_1 SET (fillfactor = 70)"),
    case("CREATE INDEX ON part (v)"),
    case("CREATE INDEX ON ONLY part (v)"),
    case("CREATE TRIGGER t3 AFTER INSERT ON part FOR EACH ROW EXECUTE FUNCTION trg()"),
    case("CREATE TRIGGER t4 AFTER INSERT ON part FOR EACH STATEMENT EXECUTE FUNCTION trg()"),
    case("DROP TRIGGER part_trg ON part"),
    case("ALTER TRIGGER part_trg ON part RENAME TO part_trg2"),
    case("DROP TABLE part_2"),
    case("DROP TABLE part_3a"),
    case("DROP TABLE part CASCADE"),
    case("TRUNCATE part CASCADE"),
    case("CREATE TABLE part_4 PARTITION OF part FOR VALUES FROM (400) TO (500)"),
    case("DROP INDEX part_k_idx"),
    case("ALTER TABLE pfk ADD CONSTRAINT pfk_pid_fkey FOREIGN KEY (pid) REFERENCES pref (id)"),
    case("ALTER TABLE pfk_part ADD CONSTRAINT pfk_part_pid_fkey FOREIGN KEY (pid) REFERENCES ref_parent (id)"),
    case("ALTER TABLE pref_child DROP CONSTRAINT pref_child_pid_fkey"),
    case("ALTER TABLE pref DISABLE TRIGGER ALL"),
    case("CREATE TABLE pref_3 PARTITION OF pref FOR VALUES FROM (200) TO (300)"),
    case("ALTER TABLE pref DETACH PARTITION pref_2"),
    case("DROP TABLE pref CASCADE"),
    case("ALTER TABLE fkpart ATTACH PARTITION fkpart_new FOR VALUES FROM (100) TO (200)"),
    case("CREATE TABLE fkpart_2 PARTITION OF fkpart FOR VALUES FROM (200) TO (300)"),
    case("ALTER TABLE fkpart DETACH PARTITION fkpart_1"),
    // inheritance
    case("ALTER TABLE inh_parent ADD COLUMN z int"),
    case("ALTER TABLE inh_parent ADD COLUMN IF NOT EXISTS b int"),
    case("ALTER TABLE inh_parent ADD COLUMN IF NOT EXISTS z int"),
    case("ALTER TABLE inh_parent DROP COLUMN IF EXISTS nosuch"),
    case("ALTER TABLE inh_parent ADD CONSTRAINT c1 CHECK (a > 0)"),
    case("ALTER TABLE inh_parent ADD CONSTRAINT c1 CHECK (a > 0) NO INHERIT"),
    case("ALTER TABLE ONLY inh_parent DROP CONSTRAINT inh_parent_a_check"),
    case("ALTER TABLE inh_parent ALTER COLUMN a SET STORAGE PLAIN"),
    case("ALTER TABLE inh_parent DROP COLUMN b"),
    case("ALTER TABLE ONLY inh_parent DROP COLUMN b"),
    case("ALTER TABLE inh_parent ALTER COLUMN b SET NOT NULL"),
    case("ALTER TABLE inh_parent ALTER COLUMN b TYPE bigint"),
    case("ALTER TABLE inh_parent ALTER COLUMN b SET DEFAULT 1"),
    case("ALTER TABLE ONLY inh_parent ALTER COLUMN b SET DEFAULT 1"),
    case("ALTER TABLE inh_parent SET UNLOGGED"),
    case("ALTER TABLE inh_parent ADD UNIQUE (a)"),
    case("ALTER TABLE inh_parent ADD PRIMARY KEY (a)"),
    case("ALTER TABLE inh_parent REPLICA IDENTITY FULL"),
    case("ALTER TABLE inh_parent OWNER TO lockdiff_other"),
    case("ALTER TABLE inh_parent ENABLE ROW LEVEL SECURITY"),
    case("ALTER TABLE inh_parent DISABLE TRIGGER ALL"),
    case("ALTER TABLE inh_parent RENAME COLUMN b TO bb"),
    case("ALTER TABLE inh_parent DROP CONSTRAINT inh_parent_a_check"),
    case("ALTER TABLE inh_parent VALIDATE CONSTRAINT inh_nv"),
    case("ALTER TABLE inh_parent RENAME CONSTRAINT inh_parent_a_check TO inh_ck2"),
    case("ALTER TABLE inh_child2 NO INHERIT inh_parent"),
    case("ALTER TABLE inh_loner INHERIT inh_parent"),
    case("CREATE INDEX ON inh_parent (b)"),
    case("CREATE TABLE inh_child3 () INHERITS (inh_parent)"),
    case("DROP TABLE inh_parent CASCADE"),
    case("DROP TABLE inh_child2"),
    case("TRUNCATE inh_parent CASCADE"),
    case("TRUNCATE ONLY inh_parent CASCADE"),
    // materialized views and views
    case("REFRESH MATERIALIZED VIEW mv"),
    case("REFRESH MATERIALIZED VIEW CONCURRENTLY mv"),
    case("REFRESH MATERIALIZED VIEW mv WITH NO DATA"),
    case("REFRESH MATERIALIZED VIEW mv_view"),
    case("REFRESH MATERIALIZED VIEW mv_inh"),
    case("REFRESH MATERIALIZED VIEW mv_only"),
    Case {
        sql: "REFRESH MATERIALIZED VIEW mv_part",
        unpredicted: &[
            ("lockdiff.part_1", PRUNED_PARTITIONS),
            ("lockdiff.part_2", PRUNED_PARTITIONS),
            ("lockdiff.part_3", PRUNED_PARTITIONS),
            ("lockdiff.part_3a", PRUNED_PARTITIONS),
            ("lockdiff.part_def", PRUNED_PARTITIONS),
        ],
    },
    case("ALTER MATERIALIZED VIEW mv RENAME TO mv2"),
    case("DROP MATERIALIZED VIEW mv"),
    case("CREATE INDEX ON mv (n)"),
    case("DROP TABLE mv_base CASCADE"),
    Case { sql: "CREATE MATERIALIZED VIEW mv3 AS SELECT * FROM plain", unpredicted: &[("lockdiff.plain", READ_BY_QUERY)] },
    Case {
        sql: "CREATE OR REPLACE VIEW v AS SELECT id, w FROM mv_base",
        unpredicted: &[("lockdiff.v", READ_BY_QUERY), ("lockdiff.mv_base", READ_BY_QUERY)],
    },
    case("DROP VIEW v CASCADE"),
    // typed tables
    case("ALTER TYPE comp ADD ATTRIBUTE z int CASCADE"),
    case("ALTER TYPE comp DROP ATTRIBUTE y CASCADE"),
    case("ALTER TYPE comp ALTER ATTRIBUTE x TYPE bigint CASCADE"),
    case("ALTER TYPE comp RENAME ATTRIBUTE x TO xx CASCADE"),
    case("ALTER TABLE typed1 NOT OF"),
    case("ALTER TABLE typed1 ALTER COLUMN x SET DEFAULT 1"),
    case("ALTER TABLE comp_cand OF comp"),
    case("CREATE TABLE typed3 OF comp"),
    // domains
    case("ALTER DOMAIN dint ADD CONSTRAINT dpos CHECK (VALUE > 0)"),
    case("ALTER DOMAIN dint ADD CONSTRAINT dpos CHECK (VALUE > 0) NOT VALID"),
    case("ALTER DOMAIN dint SET NOT NULL"),
    case("ALTER DOMAIN dint DROP NOT NULL"),
    case("ALTER DOMAIN dint SET DEFAULT 1"),
    case("ALTER DOMAIN dint_nv VALIDATE CONSTRAINT dint_nv_check"),
    case("DROP DOMAIN dint CASCADE"),
    case("ALTER TABLE dom_use ALTER COLUMN d TYPE int"),
    case("ALTER TABLE dom_use ADD COLUMN e dint"),
];

/// A relation as it was before the statement.
#[derive(Clone, Debug)]
struct Rel {
    name: String,
    relkind: String,
    toast: bool,
}

/// pg_locks' mode names, weakest first.
const MODES: [&str; 8] = [
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
];

/// lock_targets()' mode names, in the same order.
const NAMES: [&str; 8] = [
    "ACCESS SHARE",
    "ROW SHARE",
    "ROW EXCLUSIVE",
    "SHARE UPDATE EXCLUSIVE",
    "SHARE",
    "SHARE ROW EXCLUSIVE",
    "EXCLUSIVE",
    "ACCESS EXCLUSIVE",
];

fn rank_of_lock(mode: &str) -> usize {
    MODES.iter().position(|m| *m == mode).unwrap_or_else(|| panic!("unknown pg_locks mode {mode}"))
}

fn rank_of_name(name: &str) -> usize {
    NAMES.iter().position(|m| *m == name).unwrap_or_else(|| panic!("unknown lock_targets mode {name}"))
}

/// Every user relation (oid ≥ 16384) that exists now.
fn snapshot(c: &mut Client) -> BTreeMap<u32, Rel> {
    c.query(
        "SELECT c.oid, c.relnamespace::regnamespace::text || '.' || c.relname, c.relkind::text, \
                c.relnamespace = 'pg_toast'::regnamespace \
         FROM pg_class c WHERE c.oid >= 16384",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get::<_, u32>(0), Rel { name: r.get(1), relkind: r.get(2), toast: r.get(3) }))
    .collect()
}

/// Runs `sql` in a transaction with the given guard settings and returns the relation locks
/// the transaction holds right after it: (oid, pg_locks mode, the relation's name now if it
/// still exists), then rolls back.
fn held_after(c: &mut Client, settings: &str, sql: &str) -> Result<Vec<(u32, String, Option<String>)>, String> {
    c.batch_execute(settings).unwrap();
    c.batch_execute("BEGIN").unwrap();
    if let Err(e) = c.batch_execute(sql) {
        c.batch_execute("ROLLBACK").unwrap();
        return Err(e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string()));
    }
    let rows = c
        .query(
            "SELECT l.relation, l.mode, c.relnamespace::regnamespace::text || '.' || c.relname \
             FROM (SELECT DISTINCT relation, mode FROM pg_locks \
                   WHERE pid = pg_backend_pid() AND locktype = 'relation' AND granted AND relation >= 16384) l \
             LEFT JOIN pg_class c ON c.oid = l.relation",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, u32>(0), r.get::<_, String>(1), r.get::<_, Option<String>>(2)))
        .collect();
    c.batch_execute("ROLLBACK").unwrap();
    Ok(rows)
}

/// The held locks as comparable keys: a relation that existed before by its name then; a
/// new one by its name now (a new TOAST table's name carries its oid: "new TOAST"); one the
/// statement created and dropped again as "transient".
fn keys(held: &[(u32, String, Option<String>)], before: &BTreeMap<u32, Rel>) -> Vec<String> {
    let mut out: Vec<String> = held
        .iter()
        .map(|(oid, mode, now)| match (before.get(oid), now) {
            (Some(rel), _) => format!("{}:{mode}", rel.name),
            (None, Some(name)) if name.starts_with("pg_toast.") => format!("new TOAST relation:{mode}"),
            (None, Some(name)) => format!("new {name}:{mode}"),
            (None, None) => format!("transient:{mode}"),
        })
        .collect();
    out.sort();
    out
}

/// Checks one case; returns the problems found, and a one-line summary.
fn check(c: &mut Client, case: &Case) -> (Vec<String>, String) {
    let mut problems = Vec::new();
    let before = snapshot(c);
    let predicted: Vec<(u32, String, String)> = c
        .query("SELECT relid, relation, mode FROM pg_migration_guard.lock_targets($1)", &[&case.sql])
        .unwrap_or_else(|e| panic!("lock_targets({}): {e}", case.sql))
        .iter()
        .map(|r| (r.get::<_, u32>(0), r.get::<_, String>(1), r.get::<_, String>(2)))
        .collect();
    let without = held_after(c, "SET pg_migration_guard.mode = off; SET pg_migration_guard.lock_timeout_policy = off", case.sql);
    let with = held_after(c, "SET pg_migration_guard.mode = warn; SET pg_migration_guard.lock_timeout_policy = auto", case.sql);
    let (without, with) = match (without, with) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => {
            problems.push(format!("the statement failed: without the guard {a:?}, with the guard {b:?}"));
            return (problems, String::new());
        }
    };
    let (k_without, k_with) = (keys(&without, &before), keys(&with, &before));
    if k_without != k_with {
        let a: BTreeSet<&String> = k_without.iter().collect();
        let b: BTreeSet<&String> = k_with.iter().collect();
        problems.push(format!(
            "locks differ: only without the guard {:?}, only with the guard {:?}",
            a.difference(&b).collect::<Vec<_>>(),
            b.difference(&a).collect::<Vec<_>>()
        ));
    }
    // Strongest mode held per pre-existing relation.
    let mut strongest: BTreeMap<u32, usize> = BTreeMap::new();
    for (oid, mode, _) in &with {
        if before.contains_key(oid) {
            let r = rank_of_lock(mode);
            let e = strongest.entry(*oid).or_insert(r);
            *e = (*e).max(r);
        }
    }
    let mut listed_and_seen = BTreeSet::new();
    for (oid, relation, mode) in &predicted {
        match strongest.get(oid) {
            None => problems.push(format!("predicted {mode} on {relation}, not held")),
            Some(r) if *r != rank_of_name(mode) => problems.push(format!("predicted {mode} on {relation}, strongest held {}", NAMES[*r])),
            Some(_) => {}
        }
    }
    for (oid, r) in &strongest {
        if predicted.iter().any(|(p, _, _)| p == oid) {
            continue;
        }
        let rel = &before[oid];
        if rel.toast || rel.relkind == "i" || rel.relkind == "I" {
            continue; // an index the statement does not name, a TOAST relation
        }
        match case.unpredicted.iter().find(|(name, _)| *name == rel.name) {
            Some(_) => {
                listed_and_seen.insert(rel.name.clone());
            }
            None => problems.push(format!("held {} on {} ({}), not predicted", NAMES[*r], rel.name, rel.relkind)),
        }
    }
    for (name, _) in case.unpredicted {
        if !listed_and_seen.contains(*name) {
            problems.push(format!("{name} is listed as not predicted, but is predicted or not held"));
        }
    }
    let summary = predicted.iter().map(|(_, rel, mode)| format!("{rel} {mode}")).collect::<Vec<_>>().join(", ");
    (problems, summary)
}

#[test]
fn lock_targets_predicts_what_postgres_locks_and_the_guard_adds_nothing() {
    let mut c = connect("A");
    let mut cleanup = Cleanup::new("A");
    cleanup.push("SET pg_migration_guard.mode = off; DROP SCHEMA IF EXISTS lockdiff CASCADE; DROP SCHEMA IF EXISTS lockdiff2 CASCADE");
    cleanup.push("DROP ROLE IF EXISTS lockdiff_other");
    c.batch_execute(FIXTURE).unwrap();
    c.batch_execute("SET search_path = lockdiff; SET client_min_messages = error").unwrap();
    assert!(CASES.len() >= 80, "{} cases", CASES.len());
    let mut failures = Vec::new();
    for case in CASES {
        let (problems, summary) = check(&mut c, case);
        println!("{}\n    predicted: {summary}", case.sql);
        for p in &problems {
            println!("    PROBLEM: {p}");
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}", case.sql, problems.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{} of {} statements:\n{}", failures.len(), CASES.len(), failures.join("\n"));
}

/// `taken_ahead` tells what the guard does: a statement that needs a lock that blocks reads
/// or writes on a table the user owns is protected; the SHARE ROW EXCLUSIVE a foreign key
/// takes on a referenced table of another owner is left to the statement (the guard does
/// not queue for a strong lock on someone else's table), while the locks on the user's own
/// tables are taken ahead.
#[test]
fn taken_ahead_is_false_for_a_strong_lock_on_another_owners_table() {
    let mut c = connect("A");
    let mut cleanup = Cleanup::new("A");
    cleanup.push("SET pg_migration_guard.mode = off; DROP SCHEMA IF EXISTS lockdiff_own CASCADE");
    cleanup.push("DROP ROLE IF EXISTS lockdiff_app");
    c.batch_execute(
        "SET pg_migration_guard.mode = off; DROP SCHEMA IF EXISTS lockdiff_own CASCADE; \
         DO $$ BEGIN CREATE ROLE lockdiff_app NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
         CREATE SCHEMA lockdiff_own; GRANT USAGE ON SCHEMA lockdiff_own TO lockdiff_app; \
         CREATE TABLE lockdiff_own.theirs (id int PRIMARY KEY); \
         GRANT REFERENCES ON lockdiff_own.theirs TO lockdiff_app; \
         CREATE TABLE lockdiff_own.mine (pid int); ALTER TABLE lockdiff_own.mine OWNER TO lockdiff_app; \
         RESET pg_migration_guard.mode",
    )
    .unwrap();
    let rows = |c: &mut Client, sql: &str| -> Vec<String> {
        c.query("SELECT relation || ' ' || mode || ' ' || taken_ahead FROM pg_migration_guard.lock_targets($1)", &[&sql])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let fk = "ALTER TABLE lockdiff_own.mine ADD FOREIGN KEY (pid) REFERENCES lockdiff_own.theirs";
    c.batch_execute("SET ROLE lockdiff_app").unwrap();
    assert_eq!(rows(&mut c, fk), ["lockdiff_own.mine SHARE ROW EXCLUSIVE true", "lockdiff_own.theirs SHARE ROW EXCLUSIVE false"]);
    // A statement with no lock that blocks reads or writes is not protected at all.
    assert_eq!(
        rows(&mut c, "ALTER TABLE lockdiff_own.mine SET (autovacuum_enabled = false)"),
        ["lockdiff_own.mine SHARE UPDATE EXCLUSIVE false"]
    );
    // The table's owner (here a superuser) gets both taken ahead.
    c.batch_execute("RESET ROLE").unwrap();
    assert_eq!(rows(&mut c, fk), ["lockdiff_own.mine SHARE ROW EXCLUSIVE true", "lockdiff_own.theirs SHARE ROW EXCLUSIVE true"]);
}

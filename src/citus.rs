//! Citus support, looked up at run time (`docs/citus.md`). The guard neither links to Citus
//! nor needs it: everything here starts by asking whether this database has Citus'
//! metadata catalog (`pg_catalog.pg_dist_partition`, a syscache lookup of pg_class by name
//! that PostgreSQL caches, negative answers included), and does nothing more when it has
//! not.
//!
//! - On the coordinator, a distributed table's shell is empty: its data is in shards on the
//!   workers. [`distributed_size`] measures one placement of each shard where it lives, so
//!   that the rules judge the table's real size, once, where the user's statement arrives.
//! - On the workers, the shard DDL Citus sends for a statement the coordinator judged
//!   already (and the index and constraint builds of a shard move) is recognised by
//!   [`internal_exemption`] and trusted when `pg_migration_guard.citus_internal = trust`.
//! - The lock-queue protection of the coordinator also looks at the locks held on the
//!   shards ([`ShardWatch`]), so that it never holds the shell table's lock while the
//!   workers' shard DDL waits.
//!
//! Every query here runs through `lockqueue::internal_query` (SPI, search_path
//! `pg_catalog, pg_temp`, rolled back) and names Citus' catalog tables and functions with
//! `pg_catalog.`, where Citus creates them.

use std::ffi::CStr;

use pgrx::{pg_sys, Spi};

use crate::citus_core::{self as core, NodeSizes};
use crate::guc;
use crate::judging::lock_targets::Target;
use crate::lockqueue::internal_query;

/// Whether this database has Citus' metadata (the citus extension is installed):
/// `pg_catalog.pg_dist_partition` exists.
///
/// # Safety
/// Inside a transaction.
pub unsafe fn catalog_present() -> bool {
    unsafe {
        pg_sys::get_relname_relid(c"pg_dist_partition".as_ptr(), pg_sys::Oid::from(pg_sys::PG_CATALOG_NAMESPACE)) != pg_sys::InvalidOid
    }
}

/// A distributed table's data as measured on the nodes holding its shards.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DistributedSize {
    /// 0 when Citus' catalog could not be read.
    pub shards: u32,
    /// `None`: the shards could not all be measured (a node unreachable, a shard missing, the
    /// guard missing on a node); the rules treat the size as unknown, that is large.
    pub bytes: Option<u64>,
    pub rows: Option<f64>,
}

/// A literal for SQL text sent to another node: `E'...'` with backslashes and quotes escaped,
/// whatever that node's `standard_conforming_strings`.
fn literal(s: &str) -> String {
    format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Where one shard of a relation is measured: its schema-qualified name as `to_regclass`
/// reads it on the node holding it (Citus' `shard_name`, which leaves out `public.`), and
/// that node (one active placement per shard, the first by placement id; `None` when no
/// active primary node holds one).
struct Shard {
    name: String,
    node: Option<(String, i32)>,
}

/// The shards of `relid` when it is a Citus table (`pg_dist_partition`), else `None`.
unsafe fn shards_of(relid: pg_sys::Oid) -> Result<Option<Vec<Shard>>, String> {
    let sql = "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition WHERE logicalrelid = $1), \
                      CASE WHEN n.nspname = 'public' THEN 'public.' ELSE '' END || pg_catalog.shard_name(s.logicalrelid, s.shardid), \
                      p.nodename, p.nodeport \
               FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
               LEFT JOIN pg_catalog.pg_dist_shard s ON s.logicalrelid = c.oid \
               LEFT JOIN LATERAL (SELECT d.nodename, d.nodeport FROM pg_catalog.pg_dist_placement pl \
                                  JOIN pg_catalog.pg_dist_node d ON d.groupid = pl.groupid AND d.isactive AND d.noderole = 'primary' \
                                  WHERE pl.shardid = s.shardid AND pl.shardstate = 1 ORDER BY pl.placementid LIMIT 1) p ON true \
               WHERE c.oid = $1 ORDER BY s.shardid";
    let rows = unsafe {
        internal_query(|| {
            Spi::connect(|client| {
                let mut distributed = false;
                let mut out = Vec::new();
                for row in client.select(sql, None, &[relid.into()])? {
                    distributed = row.get::<bool>(1)?.unwrap_or(false);
                    if let Some(name) = row.get::<String>(2)? {
                        let node = match (row.get::<String>(3)?, row.get::<i32>(4)?) {
                            (Some(host), Some(port)) => Some((host, port)),
                            _ => None,
                        };
                        out.push(Shard { name, node });
                    }
                }
                Ok::<_, pgrx::spi::Error>(distributed.then_some(out))
            })
        })
    };
    match rows {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.message),
    }
}

/// The size of `relid`'s shards when it is a Citus table with shards, measured on the nodes
/// that hold them: `pg_migration_guard.relations_size` there (the guard's own measure: main
/// fork and TOAST by their files, no lock taken), sent through Citus'
/// `master_run_on_worker` (new connections outside the transaction, as the session's user;
/// each node once, in parallel; `citus.node_connection_timeout` set to 2 s for it). `None` when
/// Citus is not installed or `relid` is not one of its tables.
///
/// # Safety
/// Inside a transaction (the judging subtransaction).
pub unsafe fn distributed_size(relid: pg_sys::Oid) -> Option<DistributedSize> {
    unsafe {
        if !catalog_present() {
            return None;
        }
        let shards = match shards_of(relid) {
            Ok(Some(s)) if !s.is_empty() => s,
            Ok(_) => return None,
            // Citus' catalog is there but could not be read: whether `relid` is one of its
            // tables is unknown, so its size is too (judged as large).
            Err(_) => return Some(DistributedSize { shards: 0, bytes: None, rows: None }),
        };
        let count = shards.len() as u32;
        let unknown = DistributedSize { shards: count, bytes: None, rows: None };
        if shards.iter().any(|s| s.node.is_none()) {
            return Some(unknown);
        }
        // One command per node, listing the shards measured there.
        let mut nodes: Vec<((String, i32), Vec<&str>)> = Vec::new();
        for s in &shards {
            let node = s.node.as_ref().expect("checked above");
            match nodes.iter_mut().find(|(n, _)| n == node) {
                Some((_, names)) => names.push(&s.name),
                None => nodes.push((node.clone(), vec![&s.name])),
            }
        }
        let hosts: Vec<String> = nodes.iter().map(|((h, _), _)| h.clone()).collect();
        let ports: Vec<i32> = nodes.iter().map(|((_, p), _)| *p).collect();
        let commands: Vec<String> = nodes
            .iter()
            .map(|(_, names)| {
                format!(
                    "SELECT pg_catalog.format('%s %s %s', found, bytes, COALESCE(estimated_rows::pg_catalog.text, '-')) \
                     FROM pg_migration_guard.relations_size(ARRAY[{}]::pg_catalog.text[])",
                    names.iter().map(|n| literal(n)).collect::<Vec<_>>().join(", ")
                )
            })
            .collect();
        let results = internal_query(|| {
            guc::set_in_new_nest_level(c"citus.node_connection_timeout", c"2000");
            Spi::connect(|client| {
                let mut out = Vec::new();
                for row in client.select(
                    "SELECT success, result FROM pg_catalog.master_run_on_worker($1, $2, $3, true)",
                    None,
                    &[hosts.clone().into(), ports.clone().into(), commands.clone().into()],
                )? {
                    out.push((row.get::<bool>(1)?.unwrap_or(false), row.get::<String>(2)?.unwrap_or_default()));
                }
                Ok::<_, pgrx::spi::Error>(out)
            })
        });
        let Ok(Ok(results)) = results else { return Some(unknown) };
        let mut total = NodeSizes { found: 0, bytes: 0, rows: None };
        for (ok, text) in &results {
            let Some(s) = ok.then(|| core::parse_node_sizes(text)).flatten() else { return Some(unknown) };
            total.found += s.found;
            total.bytes = total.bytes.saturating_add(s.bytes);
            if let Some(r) = s.rows {
                *total.rows.get_or_insert(0.0) += r;
            }
        }
        if results.len() != nodes.len() || total.found != count {
            return Some(unknown);
        }
        Some(DistributedSize { shards: count, bytes: Some(total.bytes), rows: total.rows })
    }
}

/// Why the statement, sent by Citus, is not judged on this node, or `None` when it is
/// judged as any other. All must hold:
/// 1. `pg_migration_guard.citus_internal = trust` (superuser-only, default `judge`);
/// 2. `application_name` is one Citus gives its own connections (`citus_internal gpid=N`,
///    `citus_rebalancer gpid=N`: `crate::citus_core::internal_gpid`, as Citus'
///    `IsCitusInternalBackend`);
/// 3. this database has Citus' metadata;
/// 4. the statement takes locks (`lock_targets`), and every relation it locks is a known
///    shard (a `pg_dist_shard` row whose `shard_name` is the relation's name, in the same
///    schema as its distributed table) or, on a node other than the coordinator, a table in
///    `pg_dist_partition` (the node's copy of a distributed table); an index counts as its
///    table.
///
/// # Safety
/// Inside a transaction; `node` a valid utility parse tree.
pub unsafe fn internal_exemption(node: *mut pg_sys::Node) -> Option<String> {
    unsafe {
        if guc::CITUS_INTERNAL.get() != guc::CitusInternal::Trust || pg_sys::application_name.is_null() {
            return None;
        }
        let app = CStr::from_ptr(pg_sys::application_name).to_string_lossy();
        let gpid = core::internal_gpid(&app)?;
        if !catalog_present() {
            return None;
        }
        let targets = crate::subxact::in_subtransaction(|| crate::judging::lock_targets::lock_targets(node)).ok()?;
        if targets.is_empty() {
            return None;
        }
        let oids: Vec<pg_sys::Oid> = targets.iter().map(|t| t.oid).collect();
        let known = identify(&oids)?;
        if !known.iter().all(|k| k.shard_of.is_some() || k.distributed_copy) {
            return None;
        }
        Some(format!(
            "sent by Citus for the statement of global pid {gpid} (application_name \"{app}\"), on shards or distributed tables only; \
             pg_migration_guard.citus_internal is trust"
        ))
    }
}

/// What Citus' metadata says about one relation a statement locks.
struct Known {
    /// The distributed table whose shard the relation (or the index's table) is: a
    /// `pg_dist_shard` row whose shard id ends the relation's name, whose `shard_name` is the
    /// relation's name, in the same schema as its distributed table (Citus'
    /// `RelationIsAKnownShard` asks the same).
    shard_of: Option<pg_sys::Oid>,
    /// The relation is in `pg_dist_partition` and this node is not the coordinator
    /// (`pg_dist_local_group.groupid` ≠ 0): a worker's copy of a distributed table.
    distributed_copy: bool,
}

/// [`Known`] for each of `oids`, in order; `None` when the catalog could not be read.
/// The relations' names come from the syscache, not from a query of pg_class, where Citus
/// hides shards from sessions that are not its own (`citus.override_table_visibility`).
unsafe fn identify(oids: &[pg_sys::Oid]) -> Option<Vec<Known>> {
    let (mut tables, mut names, mut schemas, mut namespaces) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for oid in oids {
        unsafe {
            let table =
                if pg_sys::get_rel_relkind(*oid) as u8 == pg_sys::RELKIND_INDEX { pg_sys::IndexGetRelation(*oid, true) } else { *oid };
            let name = pg_sys::get_rel_name(table);
            let namespace = pg_sys::get_rel_namespace(table);
            let schema = pg_sys::get_namespace_name(namespace);
            if name.is_null() || schema.is_null() {
                return None;
            }
            tables.push(table);
            names.push(CStr::from_ptr(name).to_string_lossy().into_owned());
            schemas.push(CStr::from_ptr(schema).to_string_lossy().into_owned());
            namespaces.push(namespace);
        }
    }
    let sql = "SELECT (SELECT s.logicalrelid FROM pg_catalog.pg_dist_shard s JOIN pg_catalog.pg_class l ON l.oid = s.logicalrelid \
                       WHERE s.shardid = pg_catalog.substring(x.relname, '_([0-9]{1,18})$')::pg_catalog.int8 \
                         AND l.relnamespace = x.nsp \
                         AND pg_catalog.shard_name(s.logicalrelid, s.shardid) IN \
                             (pg_catalog.quote_ident(x.relname), pg_catalog.quote_ident(x.nspname) || '.' || pg_catalog.quote_ident(x.relname))), \
                      EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = x.tableoid) \
                        AND (SELECT groupid FROM pg_catalog.pg_dist_local_group) <> 0 \
               FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.oid[]), pg_catalog.unnest($2::pg_catalog.text[]), \
                               pg_catalog.unnest($3::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.oid[])) \
                    WITH ORDINALITY AS x(tableoid, relname, nspname, nsp, n) \
               ORDER BY x.n";
    let rows = unsafe {
        internal_query(|| {
            Spi::connect(|client| {
                let mut out = Vec::new();
                for row in client.select(
                    sql,
                    None,
                    &[tables.clone().into(), names.clone().into(), schemas.clone().into(), namespaces.clone().into()],
                )? {
                    out.push(Known { shard_of: row.get::<pg_sys::Oid>(1)?, distributed_copy: row.get::<bool>(2)?.unwrap_or(false) });
                }
                Ok::<_, pgrx::spi::Error>(out)
            })
        })
    };
    match rows {
        Ok(Ok(r)) if r.len() == oids.len() => Some(r),
        _ => None,
    }
}

/// Whether the statement is Citus changing this node's own placements (a reference table's
/// or a Citus local table's shard on the coordinator, Citus' "local execution") for the
/// statement the guard is judging in this backend already: every relation it locks is a
/// shard of one of the relations `outer` (the running statement's lock targets) locks.
/// Such a statement is neither judged nor audited again: it is part of the one that was.
///
/// # Safety
/// Inside a transaction; `node` a valid utility parse tree.
pub unsafe fn local_placement_of(node: *mut pg_sys::Node, outer: &[pg_sys::Oid]) -> bool {
    unsafe {
        if outer.is_empty() || !catalog_present() {
            return false;
        }
        let Ok(targets) = crate::subxact::in_subtransaction(|| crate::judging::lock_targets::lock_targets(node)) else { return false };
        if targets.is_empty() {
            return false;
        }
        let oids: Vec<pg_sys::Oid> = targets.iter().map(|t| t.oid).collect();
        identify(&oids).is_some_and(|known| known.iter().all(|k| k.shard_of.is_some_and(|table| outer.contains(&table))))
    }
}

/// A lock held on a shard (or on a worker's copy of the table) that conflicts with the lock
/// the statement takes on its distributed table, which Citus will take on the shard.
#[derive(Debug, Clone)]
pub struct ShardBlocker {
    /// Index into the targets given to [`ShardWatch::new`].
    pub target: usize,
    pub relation: String,
    pub mode: String,
    pub pid: Option<i32>,
    /// Citus' global pid (node id × 10^10 + pid), which `pg_cancel_backend(bigint)` accepts
    /// on any node.
    pub global_pid: Option<i64>,
    /// `pg_stat_activity.state` on its node, as the session's role may see it (empty when
    /// unknown).
    pub state: String,
    pub node: String,
}

impl ShardBlocker {
    /// `global pid 20000012345 (pid 12345 on localhost:55581, state active, holds
    /// AccessShareLock on public.orders_102009)`
    pub fn describe(&self) -> String {
        let who = match (self.global_pid, self.pid) {
            (Some(g), Some(p)) => format!("global pid {g} (pid {p} on {}, ", self.node),
            (None, Some(p)) => format!("pid {p} on {} (", self.node),
            _ => format!("a prepared transaction on {} (", self.node),
        };
        let state = if self.state.is_empty() { String::new() } else { format!("state {}, ", self.state) };
        format!("{who}{state}holds {} on {})", self.mode, self.relation)
    }

    /// The call that ends the holder's hold from any node (Citus' `pg_cancel_backend(bigint)`
    /// and `pg_terminate_backend(bigint)` take a global pid): a cancel, or a terminate for a
    /// session idle in its transaction, whose lock a cancel does not release.
    pub fn ending_call(&self) -> Option<String> {
        let g = self.global_pid?;
        Some(if self.state.starts_with("idle in transaction") {
            format!("pg_terminate_backend({g})")
        } else {
            format!("pg_cancel_backend({g})")
        })
    }
}

/// The shards of the distributed tables among a statement's targets, with the lock modes
/// that conflict with what the statement takes on each.
pub struct ShardWatch {
    /// (target index, shard or table name, conflicting modes as pg_locks names)
    names: Vec<(usize, String, Vec<&'static str>)>,
}

impl ShardWatch {
    /// `None` when Citus is not installed or no target is a Citus table with shards.
    ///
    /// # Safety
    /// Inside a transaction.
    pub unsafe fn new(targets: &[&Target]) -> Option<ShardWatch> {
        unsafe {
            if !catalog_present() {
                return None;
            }
            let mut names = Vec::new();
            for (i, t) in targets.iter().enumerate() {
                let Ok(Some(shards)) = shards_of(t.oid) else { continue };
                if shards.is_empty() {
                    continue;
                }
                let modes: Vec<&'static str> = t.request.mode.conflicting_modes().map(|m| m.pg_locks_name()).collect();
                for s in shards {
                    names.push((i, s.name, modes.clone()));
                }
                // The workers' copies of the table, which Citus' DDL also locks there.
                names.push((i, qualified_name(t.oid), modes));
            }
            (!names.is_empty()).then_some(ShardWatch { names })
        }
    }

    /// The conflicting locks held now on the shards, on every node (the data
    /// `pg_catalog.citus_locks` shows: each node's pg_locks with Citus' global pid from
    /// `get_all_active_transactions`, here filtered on each node to this database and the
    /// watched relations, found with `to_regclass`, which takes no lock), leaving out this
    /// distributed transaction's own backends. Sent with Citus' `run_command_on_all_nodes`.
    ///
    /// # Safety
    /// Inside a transaction.
    pub unsafe fn conflicts(&self) -> Result<Vec<ShardBlocker>, String> {
        let values: Vec<String> =
            self.names.iter().map(|(i, name, modes)| format!("({i}, {}, {})", literal(name), literal(&modes.join(",")))).collect();
        let command_prefix = format!(
            "SELECT COALESCE(pg_catalog.json_agg(pg_catalog.json_build_array(w.i, w.name, l.mode, l.pid, t.global_pid, a.state))::pg_catalog.text, '[]') \
             FROM (VALUES {}) AS w(i, name, modes) \
             JOIN pg_catalog.pg_locks l ON l.locktype = 'relation' AND l.granted \
               AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()) \
               AND l.relation = pg_catalog.to_regclass(w.name) \
               AND l.mode = ANY (pg_catalog.string_to_array(w.modes, ',')) \
             LEFT JOIN pg_catalog.get_all_active_transactions() t ON t.process_id = l.pid \
             LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid \
             WHERE t.global_pid IS DISTINCT FROM ",
            values.join(", ")
        );
        let sql = "SELECT r.success, r.result, COALESCE(n.nodename || ':' || n.nodeport, 'node ' || r.nodeid) \
                   FROM pg_catalog.run_command_on_all_nodes($1 || pg_catalog.citus_backend_gpid()) r \
                   LEFT JOIN pg_catalog.pg_dist_node n ON n.nodeid = r.nodeid";
        let rows = unsafe {
            internal_query(|| {
                guc::set_in_new_nest_level(c"citus.node_connection_timeout", c"2000");
                Spi::connect(|client| {
                    let mut out = Vec::new();
                    for row in client.select(sql, None, &[command_prefix.clone().into()])? {
                        out.push((
                            row.get::<bool>(1)?.unwrap_or(false),
                            row.get::<String>(2)?.unwrap_or_default(),
                            row.get::<String>(3)?.unwrap_or_default(),
                        ));
                    }
                    Ok::<_, pgrx::spi::Error>(out)
                })
            })
        };
        let rows = match rows {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(e) => return Err(e.message),
        };
        let mut out = Vec::new();
        for (ok, result, node) in rows {
            if !ok {
                return Err(format!("the locks on {node} could not be listed: {result}"));
            }
            let parsed: serde_json::Value = serde_json::from_str(&result).map_err(|e| format!("unexpected answer from {node}: {e}"))?;
            for e in parsed.as_array().into_iter().flatten() {
                let Some(a) = e.as_array() else { continue };
                out.push(ShardBlocker {
                    target: a.first().and_then(|v| v.as_u64()).unwrap_or(0) as usize,
                    relation: a.get(1).and_then(|v| v.as_str()).unwrap_or_default().to_string(),
                    mode: a.get(2).and_then(|v| v.as_str()).unwrap_or_default().to_string(),
                    pid: a.get(3).and_then(|v| v.as_i64()).map(|p| p as i32),
                    global_pid: a.get(4).and_then(|v| v.as_i64()),
                    state: a.get(5).and_then(|v| v.as_str()).unwrap_or_default().to_string(),
                    node: node.clone(),
                });
            }
        }
        Ok(out)
    }
}

/// `schema.name`, quoted where SQL needs it.
fn qualified_name(oid: pg_sys::Oid) -> String {
    unsafe {
        let name = pg_sys::get_rel_name(oid);
        let nsp = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(oid));
        if name.is_null() || nsp.is_null() {
            return String::new();
        }
        CStr::from_ptr(pg_sys::quote_qualified_identifier(nsp, name)).to_string_lossy().into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_survive_any_standard_conforming_strings() {
        assert_eq!(literal("public.orders_102008"), "E'public.orders_102008'");
        assert_eq!(literal(r#"s."o'd\x""#), r#"E's."o\'d\\x"'"#);
    }

    #[test]
    fn a_shard_blocker_names_its_global_pid_node_and_shard() {
        let b = ShardBlocker {
            target: 0,
            relation: "public.orders_102009".into(),
            mode: "AccessShareLock".into(),
            pid: Some(12345),
            global_pid: Some(20_000_012_345),
            state: "active".into(),
            node: "localhost:55581".into(),
        };
        assert_eq!(
            b.describe(),
            "global pid 20000012345 (pid 12345 on localhost:55581, state active, holds AccessShareLock on public.orders_102009)"
        );
        assert_eq!(b.ending_call().as_deref(), Some("pg_cancel_backend(20000012345)"));
        let idle = ShardBlocker { state: "idle in transaction".into(), ..b.clone() };
        assert_eq!(idle.ending_call().as_deref(), Some("pg_terminate_backend(20000012345)"));
        let unknown = ShardBlocker { state: String::new(), global_pid: None, ..b };
        assert_eq!(unknown.describe(), "pid 12345 on localhost:55581 (holds AccessShareLock on public.orders_102009)");
        assert_eq!(unknown.ending_call(), None);
    }
}

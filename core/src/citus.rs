//! The pure parts of the guard's support for Citus (see `docs/citus.md`): recognising the
//! connections Citus opens between its nodes, and reading the sizes a worker reports.

/// The `application_name` prefixes of the connections Citus opens for its own work, each
/// followed by the global pid of the backend that opened them (Citus 13
/// `src/include/distributed/connection_management.h`: `CITUS_APPLICATION_NAME_PREFIX`,
/// `CITUS_REBALANCER_APPLICATION_NAME_PREFIX`). `citus_run_command gpid=` (the third
/// prefix Citus knows) is deliberately absent: `run_command_on_workers` and friends send
/// whatever text a user gave them through such connections.
pub const INTERNAL_PREFIXES: [&str; 2] = ["citus_internal gpid=", "citus_rebalancer gpid="];

/// The global pid of the backend that opened this connection when `application_name` is one
/// Citus gives its internal connections (`backend_data.c`, `IsCitusInternalBackend` and
/// `IsRebalancerInternalBackend` through `ExtractGlobalPID`): a prefix of
/// [`INTERNAL_PREFIXES`], then the decimal global pid, nothing else, not 0. Stricter than
/// Citus' `strtoul`, which also accepts a sign, blanks or trailing text: Citus itself
/// always writes the bare number (`connection_configuration.c`, `GetConnParams`).
pub fn internal_gpid(application_name: &str) -> Option<u64> {
    INTERNAL_PREFIXES.iter().find_map(|prefix| {
        let digits = application_name.strip_prefix(prefix)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse::<u64>().ok().filter(|gpid| *gpid != 0)
    })
}

/// What one node reported for the shards measured there: how many of them it found, their
/// summed bytes (main fork and TOAST, as the guard measures a local table) and summed row
/// estimates (`None` when none was ever analyzed).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NodeSizes {
    pub found: u32,
    pub bytes: u64,
    pub rows: Option<f64>,
}

/// Parses the text `pg_migration_guard.relations_size` results are sent back as:
/// `<found> <bytes> <rows or ->`.
pub fn parse_node_sizes(text: &str) -> Option<NodeSizes> {
    let mut parts = text.split_ascii_whitespace();
    let found = parts.next()?.parse().ok()?;
    let bytes = parts.next()?.parse().ok()?;
    let rows = match parts.next()? {
        "-" => None,
        r => Some(r.parse::<f64>().ok().filter(|r| r.is_finite() && *r >= 0.0)?),
    };
    if parts.next().is_some() {
        return None;
    }
    Some(NodeSizes { found, bytes, rows })
}

/// Formats [`NodeSizes`] for [`parse_node_sizes`].
pub fn format_node_sizes(s: &NodeSizes) -> String {
    match s.rows {
        Some(r) => format!("{} {} {}", s.found, s.bytes, r),
        None => format!("{} {} -", s.found, s.bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_citus_internal_and_rebalancer_connections_with_a_global_pid_are_internal() {
        assert_eq!(internal_gpid("citus_internal gpid=10000012345"), Some(10_000_012_345));
        assert_eq!(internal_gpid("citus_rebalancer gpid=20000000042"), Some(20_000_000_042));
        // run_command_on_* connections carry user text: never internal
        assert_eq!(internal_gpid("citus_run_command gpid=10000012345"), None);
        assert_eq!(internal_gpid("citus_internal gpid=0"), None);
        assert_eq!(internal_gpid("citus_internal gpid="), None);
        assert_eq!(internal_gpid("citus_internal gpid=-1"), None);
        assert_eq!(internal_gpid("citus_internal gpid= 12"), None);
        assert_eq!(internal_gpid("citus_internal gpid=12 x"), None);
        assert_eq!(internal_gpid("citus_internal gpid=99999999999999999999999"), None);
        assert_eq!(internal_gpid("psql"), None);
        assert_eq!(internal_gpid(" citus_internal gpid=12"), None);
    }

    #[test]
    fn node_sizes_round_trip() {
        for s in [NodeSizes { found: 16, bytes: 47_185_920, rows: Some(500_000.0) }, NodeSizes { found: 0, bytes: 0, rows: None }] {
            assert_eq!(parse_node_sizes(&format_node_sizes(&s)), Some(s));
        }
        assert_eq!(parse_node_sizes("1 2"), None);
        assert_eq!(parse_node_sizes("1 2 x"), None);
        assert_eq!(parse_node_sizes("1 2 3 4"), None);
        assert_eq!(parse_node_sizes("-1 2 3"), None);
        assert_eq!(parse_node_sizes("1 2 NaN"), None);
    }
}

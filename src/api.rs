//! SQL functions over the judging path: `judge_timing()`, the decision latency benchmark
//! (bench/run.sh), and `lock_targets()`.

use std::ffi::CString;
use std::time::Instant;

use pgrx::{pg_sys, PgList, PgSqlErrorCode};

use crate::judging;
use crate::judging::{facts, lock_targets as locks};

fn invalid(message: String) -> ! {
    pgrx::pg_sys::panic::ErrorReport::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, message, "judge_timing")
        .report(pgrx::PgLogLevel::ERROR);
    unreachable!()
}

/// Parses `statement` (exactly one utility statement the guard judges) into its raw
/// parse tree, in the current memory context. Errors: 22023, or a syntax error.
pub(crate) fn parse_judged(statement: &str) -> *mut pg_sys::Node {
    let Ok(c) = CString::new(statement) else { invalid("statement contains a NUL byte".into()) };
    unsafe {
        #[cfg(feature = "pg13")]
        let parsed = pg_sys::raw_parser(c.as_ptr());
        #[cfg(not(feature = "pg13"))]
        let parsed = pg_sys::raw_parser(c.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        let stmts = PgList::<pg_sys::RawStmt>::from_pg(parsed);
        if stmts.len() != 1 {
            invalid(format!("expected one statement, got {}", stmts.len()));
        }
        let raw = stmts.get_ptr(0).unwrap();
        let node = (*raw).stmt;
        if !judging::is_judged_statement(node) {
            invalid("the statement is not one the guard judges (DDL, REINDEX, VACUUM FULL, CLUSTER, TRUNCATE ... CASCADE)".into());
        }
        node
    }
}

pub fn judge_timing(statement: &str, iterations: i32) -> (String, Vec<String>, f64, f64, i32) {
    if iterations < 1 {
        invalid(format!("iterations must be at least 1, not {iterations}"));
    }
    let node = parse_judged(statement);
    unsafe {
        let text = facts::StatementText { text: statement, offset: 0 };
        let mut samples = Vec::with_capacity(iterations as usize);
        let mut last = None;
        for _ in 0..iterations {
            let t0 = Instant::now();
            let v = judging::verdict_for(node, &text, &crate::decision::Overrides::default());
            samples.push(t0.elapsed().as_secs_f64() * 1e6);
            last = Some(v);
        }
        let verdict = match last.unwrap() {
            Ok((v, _)) => v,
            Err(cause) => invalid(format!("the guard could not judge the statement: {cause}")),
        };
        samples.sort_by(|a, b| a.total_cmp(b));
        let pick = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
        (verdict.decision.as_str().to_string(), verdict.rules.iter().map(|r| r.to_string()).collect(), pick(0.5), pick(0.99), iterations)
    }
}

/// `lock_targets()`: the locks the statement would take, without taking them.
pub fn lock_targets(statement: &str) -> Vec<(pg_sys::Oid, String, String, bool, bool)> {
    let node = parse_judged(statement);
    let targets = match unsafe { crate::subxact::in_subtransaction(|| locks::lock_targets(node)) } {
        Ok(t) => t,
        Err(cause) => invalid(format!("the guard could not list the locks: {cause}")),
    };
    let command_tag = unsafe { std::ffi::CStr::from_ptr(pg_sys::GetCommandTagName(pg_sys::CreateCommandTag(node))) };
    let ahead = unsafe { crate::lockqueue::taken_ahead(&targets, &command_tag.to_string_lossy()) };
    targets
        .into_iter()
        .zip(ahead)
        .map(|(t, ahead)| {
            let r = t.request;
            (t.oid, r.relation.clone(), r.mode.name().to_string(), r.mode.blocks_reads_or_writes(), ahead)
        })
        .collect()
}

/// `pg_migration_guard.relations_size(relations text[])`: how many of the named relations
/// exist, their summed main fork and TOAST bytes, and their summed `reltuples` (`None` when
/// none was ever analyzed), each measured as the guard measures a judged relation: by its
/// files, without taking a lock. Names are resolved as `to_regclass` does (no lock, a
/// missing relation is skipped). The coordinator of a Citus cluster calls it on the nodes
/// holding a distributed table's shards (`crate::citus::distributed_size`).
pub fn relations_size(relations: &[Option<String>]) -> (i32, i64, Option<f64>) {
    use pgrx::IntoDatum;
    let (mut found, mut bytes, mut rows) = (0i32, 0u64, None::<f64>);
    for name in relations.iter().flatten() {
        // to_regclass: stringToQualifiedNameList, then RangeVarGetRelid with NoLock
        let oid = unsafe { pgrx::direct_function_call::<pg_sys::Oid>(pg_sys::to_regclass, &[name.as_str().into_datum()]) };
        let Some(oid) = oid.filter(|o| *o != pg_sys::InvalidOid) else { continue };
        if let Some((b, r)) = unsafe { facts::local_size(oid) } {
            found += 1;
            bytes = bytes.saturating_add(b);
            if let Some(r) = r {
                *rows.get_or_insert(0.0) += r;
            }
        }
    }
    (found, i64::try_from(bytes).unwrap_or(i64::MAX), rows)
}

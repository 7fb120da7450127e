//! The rule corpus (tests/corpus/*.sql) on the 1M-row data set: every case must get exactly
//! the verdict written above it. Zero wrong verdicts, in both directions: a missed rewrite
//! and a false alarm both fail.

use pg_migration_guard_integration::*;

#[derive(Debug, PartialEq)]
enum Expect {
    Allowed,
    Warned(String),
    Rejected(String),
}

struct Case {
    line: usize,
    expect: Expect,
    autocommit: bool,
    statements: Vec<String>,
    cleanup: Vec<String>,
}

fn parse(text: &str) -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    let mut current: Option<Case> = None;
    for (i, line) in text.lines().enumerate() {
        if let Some(rest) = line.strip_prefix("-- expect: ") {
            if let Some(c) = current.take() {
                cases.push(c);
            }
            let words: Vec<&str> = rest.split_whitespace().collect();
            let autocommit = words.contains(&"autocommit");
            let expect = match words[0] {
                "allowed" => Expect::Allowed,
                "warned" => Expect::Warned(words[1].to_string()),
                "rejected" => Expect::Rejected(words[1].to_string()),
                other => panic!("line {}: unknown verdict {other}", i + 1),
            };
            current = Some(Case { line: i + 1, expect, autocommit, statements: vec![], cleanup: vec![] });
        } else if let Some(rest) = line.strip_prefix("-- then: ") {
            current.as_mut().expect("-- then: outside a case").cleanup.push(rest.to_string());
        } else if line.starts_with("--") || line.trim().is_empty() {
            continue;
        } else if let Some(c) = current.as_mut() {
            c.statements.push(line.trim_end().trim_end_matches(';').to_string());
        }
    }
    cases.extend(current);
    cases
}

#[test]
fn corpus_verdicts_are_all_right() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../corpus/shop.sql")).unwrap();
    let cases = parse(&text);
    assert!(cases.len() >= 60, "corpus too small: {}", cases.len());
    let (mut c, notices) = connect_as("A", "postgres", "corpus");
    let rows: i64 = c.query_one("SELECT count(*) FROM shop_order", &[]).unwrap().get(0);
    assert!(rows >= 1_000_000);
    let mut wrong = Vec::new();
    for case in &cases {
        notices.lock().unwrap().clear();
        if !case.autocommit {
            c.batch_execute("BEGIN").unwrap();
        }
        let (last, setup) = case.statements.split_last().expect("empty case");
        let mut outcome: Result<(), String> = Ok(());
        for stmt in setup {
            if let Err(e) = c.batch_execute(stmt) {
                outcome = Err(format!("setup statement failed: {stmt}: {e}"));
                break;
            }
        }
        let result = if outcome.is_ok() { Some(c.batch_execute(last)) } else { None };
        let warnings = warning_messages(&notices);
        let verdict_ok = match (&outcome, &result, &case.expect) {
            (Err(e), _, _) => Err(e.clone()),
            (_, Some(Ok(())), Expect::Allowed) if warnings.is_empty() => Ok(()),
            (_, Some(Ok(())), Expect::Warned(rule)) if warnings.iter().any(|w| w.starts_with(&format!("{rule}: "))) => Ok(()),
            (_, Some(Err(e)), Expect::Rejected(rule))
                if e.code() == Some(&SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE)
                    && e.as_db_error().is_some_and(|d| d.message().starts_with(&format!("{rule}: "))) =>
            {
                Ok(())
            }
            (_, Some(r), _) => Err(format!(
                "got {:?} with warnings {warnings:?}",
                r.as_ref().map_err(|e| e.as_db_error().map_or(e.to_string(), |d| d.message().to_string()))
            )),
            (_, None, _) => unreachable!(),
        };
        if let Err(why) = verdict_ok {
            wrong.push(format!("line {}: expected {:?}: {}: {why}", case.line, case.expect, last));
        }
        if !case.autocommit {
            c.batch_execute("ROLLBACK").unwrap();
        }
        for stmt in &case.cleanup {
            c.batch_execute(stmt).unwrap_or_else(|e| panic!("cleanup {stmt}: {e}"));
        }
    }
    assert!(wrong.is_empty(), "{} wrong verdicts out of {}:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
}

#[test]
fn corpus_parser_reads_cases() {
    let cases = parse("-- expect: rejected r\nA;\n-- expect: allowed autocommit\nB;\nC;\n-- then: D\n");
    assert_eq!(cases.len(), 2);
    assert_eq!(cases[0].expect, Expect::Rejected("r".into()));
    assert!(cases[1].autocommit);
    assert_eq!(cases[1].statements, vec!["B", "C"]);
    assert_eq!(cases[1].cleanup, vec!["D"]);
}

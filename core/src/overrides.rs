//! Break-glass annotations: a SQL comment in a statement's own text that lets that one
//! statement through for the rules it names.
//!
//! ```sql
//! -- pg_migration_guard:allow changing-column-type reason="table is write-idle during the maintenance window"
//! ALTER TABLE orders ALTER COLUMN qty TYPE bigint;
//!
//! ALTER TABLE orders /* pg_migration_guard:allow changing-column-type,ban-drop-column reason="..." */ ...;
//! ```
//!
//! Syntax, after the marker `pg_migration_guard:allow`: one or more rule ids separated by
//! commas (whitespace around them allowed), then `reason="..."` (required, non-empty;
//! `\"` and `\\` escape a quote and a backslash).
//!
//! This module parses annotations out of comment bodies; it does not decide what a comment
//! is. That is PostgreSQL's lexer's job: `crate::scanner` finds the comments of the
//! statement's text with the server's own scanner and passes their bodies here. Pure
//! Rust, no `pg_sys`.

use crate::rules::{rule_by_id, Rule, RULES};

/// The HINT for a malformed annotation: its syntax and the rule ids.
pub fn syntax_hint() -> String {
    format!(
        "Write it as: -- {MARKER} rule-id[, rule-id] reason=\"why this is safe now\"\nRules: {}.",
        RULES.iter().map(|r| r.id).collect::<Vec<_>>().join(", ")
    )
}

pub const MARKER: &str = "pg_migration_guard:allow";

/// A parsed annotation.
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    pub rules: Vec<&'static Rule>,
    pub reason: String,
}

impl Override {
    pub fn covers(&self, rule: &Rule) -> bool {
        self.rules.iter().any(|r| r.id == rule.id)
    }
}

/// The annotation among `comment_bodies` (the text of each comment of one statement,
/// without its `--`, `/*` or `*/`), if any. A comment that does not contain the marker is
/// ignored; in one that does, what follows the marker is the annotation, to the end of the
/// comment. `Err` (a message for SQLSTATE 22023) when an annotation is malformed: no rule,
/// an unknown rule, no reason, or two annotations in the statement.
pub fn parse<'a>(comment_bodies: impl IntoIterator<Item = &'a str>) -> Result<Option<Override>, String> {
    let mut found: Option<Override> = None;
    for comment in comment_bodies {
        let Some(at) = comment.find(MARKER) else { continue };
        let parsed = parse_body(&comment[at + MARKER.len()..])?;
        if found.is_some() {
            return Err(format!("a statement may carry only one {MARKER} annotation"));
        }
        found = Some(parsed);
    }
    Ok(found)
}

/// Whether `text` mentions the marker at all: when it does not, no comment of it can hold
/// an annotation and the scanner need not run.
pub fn mentions_marker(text: &str) -> bool {
    text.contains(MARKER)
}

fn parse_body(body: &str) -> Result<Override, String> {
    let Some(reason_at) = body.find("reason=") else {
        return Err(format!("the {MARKER} annotation needs a reason: {MARKER} rule-id reason=\"why this is safe now\""));
    };
    let mut rules = Vec::new();
    for id in body[..reason_at].split(',').map(str::trim) {
        if id.is_empty() {
            continue;
        }
        match rule_by_id(id) {
            Some(rule) => {
                if !rules.iter().any(|r: &&Rule| r.id == rule.id) {
                    rules.push(rule);
                }
            }
            None => return Err(format!("unknown rule \"{id}\" in the {MARKER} annotation")),
        }
    }
    if rules.is_empty() {
        return Err(format!("the {MARKER} annotation names no rule: {MARKER} rule-id reason=\"...\""));
    }
    let rest = &body[reason_at + "reason=".len()..];
    let mut chars = rest.chars();
    if chars.next() != Some('"') {
        return Err(format!("the {MARKER} annotation's reason must be in double quotes: reason=\"...\""));
    }
    let mut reason = String::new();
    let mut closed = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e) => reason.push(e),
                None => break,
            },
            '"' => {
                closed = true;
                break;
            }
            c => reason.push(c),
        }
    }
    if !closed {
        return Err(format!("the {MARKER} annotation's reason has no closing double quote"));
    }
    if reason.trim().is_empty() {
        return Err(format!("the {MARKER} annotation needs a non-empty reason"));
    }
    Ok(Override { rules, reason: reason.trim().to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The comment bodies crate::scanner would pass for a statement with these comments.
    fn one(body: &str) -> Result<Option<Override>, String> {
        parse([body])
    }

    #[test]
    fn line_comment_annotation_is_parsed() {
        let o = one(" pg_migration_guard:allow changing-column-type reason=\"write-idle in the window\"").unwrap().unwrap();
        assert_eq!(o.rules.iter().map(|r| r.id).collect::<Vec<_>>(), vec!["changing-column-type"]);
        assert_eq!(o.reason, "write-idle in the window");
    }

    #[test]
    fn block_comment_with_several_rules_and_escapes() {
        let o = one(" pg_migration_guard:allow changing-column-type , ban-drop-column reason=\"say \\\"ok\\\"\" ").unwrap().unwrap();
        assert_eq!(o.rules.len(), 2);
        assert!(o.covers(&crate::rules::BAN_DROP_COLUMN));
        assert!(!o.covers(&crate::rules::RENAMING_COLUMN));
        assert_eq!(o.reason, "say \"ok\"");
    }

    #[test]
    fn text_before_the_marker_and_after_the_reason_is_ignored() {
        let o = one(" deploy 42: pg_migration_guard:allow ban-drop-column reason=\"column unused since v3\" (ticket) ").unwrap().unwrap();
        assert_eq!(o.rules.iter().map(|r| r.id).collect::<Vec<_>>(), vec!["ban-drop-column"]);
        assert_eq!(o.reason, "column unused since v3");
    }

    #[test]
    fn no_annotation_is_none() {
        assert_eq!(one(" just a comment").unwrap(), None);
        assert_eq!(parse([]).unwrap(), None);
        assert_eq!(parse([" first", " second: pg_migration_guard is great"]).unwrap(), None);
    }

    #[test]
    fn mentions_marker_finds_the_marker_anywhere_in_the_text() {
        // The cheap test before the scanner runs: true for the marker in a literal too (the
        // scanner then decides), false only when no comment can hold an annotation.
        assert!(mentions_marker("COMMENT ON TABLE t IS 'pg_migration_guard:allow'"));
        assert!(mentions_marker("CREATE INDEX i ON t (c) -- pg_migration_guard:allow"));
        assert!(!mentions_marker("CREATE INDEX i ON t (c) -- pg_migration_guard: allow"));
        assert!(!mentions_marker("CREATE INDEX i ON t (c) -- PG_MIGRATION_GUARD:ALLOW"));
    }

    #[test]
    fn unknown_rule_is_an_error_naming_it() {
        let e = one(" pg_migration_guard:allow no-such-rule reason=\"x\"").unwrap_err();
        assert!(e.contains("unknown rule \"no-such-rule\""), "{e}");
    }

    #[test]
    fn reason_is_required_and_quoted() {
        assert!(one(" pg_migration_guard:allow ban-drop-column").unwrap_err().contains("needs a reason"));
        assert!(one(" pg_migration_guard:allow ban-drop-column reason=\"  \"").unwrap_err().contains("non-empty reason"));
        assert!(one(" pg_migration_guard:allow ban-drop-column reason=now").unwrap_err().contains("double quotes"));
        assert!(one(" pg_migration_guard:allow ban-drop-column reason=\"unclosed").unwrap_err().contains("no closing double quote"));
        assert!(one(" pg_migration_guard:allow reason=\"x\"").unwrap_err().contains("names no rule"));
    }

    #[test]
    fn two_annotations_are_an_error() {
        let bodies = [" pg_migration_guard:allow ban-drop-column reason=\"a\"", " pg_migration_guard:allow renaming-column reason=\"b\""];
        assert!(parse(bodies).unwrap_err().contains("only one"));
    }

    #[test]
    fn a_malformed_annotation_is_an_error_even_beside_a_valid_one() {
        let bodies = [" pg_migration_guard:allow ban-drop-column reason=\"a\"", " pg_migration_guard:allow nope reason=\"b\""];
        assert!(parse(bodies).unwrap_err().contains("unknown rule \"nope\""));
    }
}

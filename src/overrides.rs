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
//! `\"` and `\\` escape a quote and a backslash). The annotation must be in a comment
//! (`--` to the end of the line, or `/* ... */`, nested as PostgreSQL nests them) that is
//! part of the statement's text: for a multi-statement string, a comment written after a
//! statement's semicolon belongs to the next statement. Text in string literals, quoted
//! identifiers and dollar-quoted bodies is not a comment. Pure Rust, no `pg_sys`.

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

/// The annotation in `statement`, if any. `Err` (a message for SQLSTATE 22023) when an
/// annotation is malformed: no rule, an unknown rule, no reason, or two annotations.
pub fn parse(statement: &str) -> Result<Option<Override>, String> {
    let mut found: Option<Override> = None;
    for comment in comments(statement) {
        let Some(at) = comment.find(MARKER) else { continue };
        let parsed = parse_body(&comment[at + MARKER.len()..])?;
        if found.is_some() {
            return Err(format!("a statement may carry only one {MARKER} annotation"));
        }
        found = Some(parsed);
    }
    Ok(found)
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

/// The bodies of the comments in `sql`, skipping literals and quoted identifiers.
fn comments(sql: &str) -> Vec<&str> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                let end = b[i..].iter().position(|&c| c == b'\n').map_or(b.len(), |p| i + p);
                out.push(&sql[i + 2..end]);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let start = i + 2;
                let mut depth = 1;
                i += 2;
                while i < b.len() && depth > 0 {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
                let end = if depth == 0 { i - 2 } else { b.len() };
                out.push(&sql[start..end]);
            }
            b'\'' => {
                // E'...' allows backslash escapes; '' is a quote in every string form.
                let escapes = i > 0 && (b[i - 1] == b'E' || b[i - 1] == b'e');
                i += 1;
                while i < b.len() {
                    if escapes && b[i] == b'\\' {
                        i += 2;
                    } else if b[i] == b'\'' {
                        if b.get(i + 1) == Some(&b'\'') {
                            i += 2;
                        } else {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                i += 1;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += 1;
                }
                i += 1;
            }
            b'$' => match dollar_tag(&b[i..]) {
                Some(tag_len) => {
                    let tag = &sql[i..i + tag_len];
                    let body = i + tag_len;
                    i = sql[body..].find(tag).map_or(b.len(), |p| body + p + tag_len);
                }
                None => i += 1,
            },
            _ => i += 1,
        }
    }
    out
}

/// Length of a dollar-quote opening tag (`$$`, `$body$`) at the start of `b`.
fn dollar_tag(b: &[u8]) -> Option<usize> {
    let mut j = 1;
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] >= 0x80) {
        if j == 1 && b[j].is_ascii_digit() {
            return None; // $1 is a parameter
        }
        j += 1;
    }
    (b.get(j) == Some(&b'$')).then_some(j + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_comment_annotation_is_parsed() {
        let o = parse("-- pg_migration_guard:allow changing-column-type reason=\"write-idle in the window\"\nALTER TABLE t ALTER COLUMN c TYPE bigint")
            .unwrap()
            .unwrap();
        assert_eq!(o.rules.iter().map(|r| r.id).collect::<Vec<_>>(), vec!["changing-column-type"]);
        assert_eq!(o.reason, "write-idle in the window");
    }

    #[test]
    fn block_comment_with_several_rules_and_escapes() {
        let o = parse("ALTER TABLE t /* pg_migration_guard:allow changing-column-type , ban-drop-column reason=\"say \\\"ok\\\"\" */ DROP COLUMN a")
            .unwrap()
            .unwrap();
        assert_eq!(o.rules.len(), 2);
        assert!(o.covers(&crate::rules::BAN_DROP_COLUMN));
        assert!(!o.covers(&crate::rules::RENAMING_COLUMN));
        assert_eq!(o.reason, "say \"ok\"");
    }

    #[test]
    fn no_annotation_is_none() {
        assert_eq!(parse("ALTER TABLE t ADD COLUMN c int -- just a comment").unwrap(), None);
        assert_eq!(parse("CREATE INDEX i ON t (c)").unwrap(), None);
    }

    #[test]
    fn marker_inside_literals_is_not_an_annotation() {
        let sql = "COMMENT ON TABLE t IS '-- pg_migration_guard:allow ban-drop-column reason=\"x\"'";
        assert_eq!(parse(sql).unwrap(), None);
        let sql = "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 /* pg_migration_guard:allow ban-drop-column reason=\"x\" */ $$";
        assert_eq!(parse(sql).unwrap(), None);
        let sql = "ALTER TABLE \"-- pg_migration_guard:allow ban-drop-column reason=\"\"x\"\"\" ADD COLUMN c int";
        assert_eq!(parse(sql).unwrap(), None);
    }

    #[test]
    fn unknown_rule_is_an_error_naming_it() {
        let e = parse("-- pg_migration_guard:allow no-such-rule reason=\"x\"\nDROP TABLE t").unwrap_err();
        assert!(e.contains("unknown rule \"no-such-rule\""), "{e}");
    }

    #[test]
    fn reason_is_required_and_quoted() {
        assert!(parse("-- pg_migration_guard:allow ban-drop-column\nALTER TABLE t DROP COLUMN c").unwrap_err().contains("needs a reason"));
        assert!(parse("-- pg_migration_guard:allow ban-drop-column reason=\"  \"\nALTER TABLE t DROP COLUMN c")
            .unwrap_err()
            .contains("non-empty reason"));
        assert!(parse("-- pg_migration_guard:allow ban-drop-column reason=now\nALTER TABLE t DROP COLUMN c")
            .unwrap_err()
            .contains("double quotes"));
        assert!(parse("-- pg_migration_guard:allow reason=\"x\"\nALTER TABLE t DROP COLUMN c").unwrap_err().contains("names no rule"));
    }

    #[test]
    fn two_annotations_are_an_error() {
        let sql = "-- pg_migration_guard:allow ban-drop-column reason=\"a\"\n-- pg_migration_guard:allow renaming-column reason=\"b\"\nALTER TABLE t DROP COLUMN c";
        assert!(parse(sql).unwrap_err().contains("only one"));
    }
}

//! From findings and policy to a decision and the text the user sees. Pure Rust.

use crate::rules::{rule_by_id, Finding, Level, Rule};

/// `pg_migration_guard.mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The hook passes every statement straight through: no judging, no audit row.
    Off,
    /// Findings are reported as WARNINGs and the statement runs.
    Warn,
    /// Findings at level `error` reject the statement; `warning` findings are WARNINGs.
    Enforce,
}

/// What the guard did with a statement, as stored in `audit_log.decision`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Warned,
    Rejected,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Warned => "warned",
            Decision::Rejected => "rejected",
        }
    }
}

/// A finding with the level the policy gave it.
#[derive(Clone, Debug, PartialEq)]
pub struct Judged {
    pub finding: Finding,
    pub level: Level,
}

/// The text of one report (ERROR or WARNING), following PostgreSQL's message style guide.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub message: String,
    pub detail: String,
    pub hint: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub decision: Decision,
    /// Rule ids of every finding reported, in order.
    pub rules: Vec<&'static str>,
    /// `None` when nothing was found.
    pub report: Option<Report>,
}

/// Per-rule levels from `pg_migration_guard.rule_levels`; rules not listed keep their
/// default level.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleLevels(Vec<(&'static Rule, Level)>);

impl RuleLevels {
    /// Parses `rule-id:level[, rule-id:level ...]` (levels: off, warning, error; whitespace
    /// and an empty string allowed). Unknown rules and levels are errors, so a typo is
    /// caught when the setting is made, not silently ignored.
    pub fn parse(s: &str) -> Result<RuleLevels, String> {
        let mut out = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let Some((id, level)) = item.split_once(':') else {
                return Err(format!("\"{item}\" is not of the form rule-id:level"));
            };
            let (id, level) = (id.trim(), level.trim());
            let rule = rule_by_id(id).ok_or_else(|| format!("unknown rule \"{id}\""))?;
            let level = Level::parse(level).ok_or_else(|| format!("unknown level \"{level}\" for rule \"{id}\" (use off, warning or error)"))?;
            out.retain(|(r, _): &(&Rule, Level)| r.id != rule.id);
            out.push((rule, level));
        }
        Ok(RuleLevels(out))
    }

    /// The level `rule` runs at.
    pub fn level(&self, rule: &Rule) -> Level {
        self.0.iter().rev().find(|(r, _)| r.id == rule.id).map_or(rule.default_level, |(_, l)| *l)
    }
}

/// Applies the per-rule levels and the mode to the findings.
pub fn decide(mode: Mode, levels: &RuleLevels, findings: Vec<Finding>) -> Verdict {
    let judged: Vec<Judged> = findings
        .into_iter()
        .map(|f| {
            let level = levels.level(f.rule);
            Judged { finding: f, level }
        })
        .filter(|j| j.level != Level::Off)
        .collect();
    if judged.is_empty() || mode == Mode::Off {
        return Verdict { decision: Decision::Allowed, rules: vec![], report: None };
    }
    let rejects = mode == Mode::Enforce && judged.iter().any(|j| j.level == Level::Error);
    Verdict {
        decision: if rejects { Decision::Rejected } else { Decision::Warned },
        rules: judged.iter().map(|j| j.finding.rule.id).collect(),
        report: Some(render(&judged, mode)),
    }
}

/// One report for all findings: the first finding's message, every finding's detail and
/// hint, and a last DETAIL line saying which policy produced it.
fn render(judged: &[Judged], mode: Mode) -> Report {
    let first = &judged[0].finding;
    let mut message = format!("{}: {}", first.rule.id, first.message);
    if judged.len() > 1 {
        message.push_str(&format!(" (and {} more finding{})", judged.len() - 1, if judged.len() > 2 { "s" } else { "" }));
    }
    let mut detail = String::new();
    let mut hint = String::new();
    for (i, j) in judged.iter().enumerate() {
        if i > 0 {
            detail.push('\n');
            hint.push('\n');
        }
        if judged.len() > 1 {
            detail.push_str(&format!("{}: ", j.finding.rule.id));
        }
        detail.push_str(&j.finding.detail);
        hint.push_str(&j.finding.hint);
    }
    let mode_name = match mode {
        Mode::Enforce => "enforce",
        Mode::Warn => "warn",
        Mode::Off => "off",
    };
    detail.push_str(&format!("\npg_migration_guard.mode is {mode_name}."));
    Report { message, detail, hint }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{ADDING_NOT_NULLABLE_FIELD, REQUIRE_CONCURRENT_INDEX_CREATION};

    fn finding(rule: &'static crate::rules::Rule) -> Finding {
        Finding { rule, message: "m".into(), detail: "d".into(), hint: "h".into() }
    }

    #[test]
    fn no_findings_is_allowed_in_every_mode() {
        for mode in [Mode::Off, Mode::Warn, Mode::Enforce] {
            let v = decide(mode, &RuleLevels::default(), vec![]);
            assert_eq!(v.decision, Decision::Allowed);
            assert!(v.report.is_none());
        }
    }

    #[test]
    fn error_finding_rejects_in_enforce_and_warns_in_warn() {
        let v = decide(Mode::Enforce, &RuleLevels::default(), vec![finding(&REQUIRE_CONCURRENT_INDEX_CREATION)]);
        assert_eq!(v.decision, Decision::Rejected);
        assert_eq!(v.rules, vec!["require-concurrent-index-creation"]);
        let r = v.report.unwrap();
        assert_eq!(r.message, "require-concurrent-index-creation: m");
        assert!(r.detail.ends_with("pg_migration_guard.mode is enforce."));
        let v = decide(Mode::Warn, &RuleLevels::default(), vec![finding(&REQUIRE_CONCURRENT_INDEX_CREATION)]);
        assert_eq!(v.decision, Decision::Warned);
        assert_eq!(v.report.unwrap().message, "require-concurrent-index-creation: m");
    }

    #[test]
    fn off_mode_is_silent() {
        let v = decide(Mode::Off, &RuleLevels::default(), vec![finding(&REQUIRE_CONCURRENT_INDEX_CREATION)]);
        assert_eq!(v.decision, Decision::Allowed);
        assert!(v.report.is_none());
    }

    #[test]
    fn rule_levels_parse_and_apply() {
        let levels = RuleLevels::parse(" renaming-column:error , ban-drop-column:off,").unwrap();
        assert_eq!(levels.level(&crate::rules::RENAMING_COLUMN), Level::Error);
        assert_eq!(levels.level(&crate::rules::BAN_DROP_COLUMN), Level::Off);
        assert_eq!(levels.level(&REQUIRE_CONCURRENT_INDEX_CREATION), Level::Error);
        assert_eq!(RuleLevels::parse("").unwrap(), RuleLevels::default());
        assert!(RuleLevels::parse("no-such-rule:error").unwrap_err().contains("unknown rule \"no-such-rule\""));
        assert!(RuleLevels::parse("renaming-column:fatal").unwrap_err().contains("unknown level \"fatal\""));
        assert!(RuleLevels::parse("renaming-column").unwrap_err().contains("rule-id:level"));
        let v = decide(Mode::Enforce, &levels, vec![finding(&crate::rules::RENAMING_COLUMN)]);
        assert_eq!(v.decision, Decision::Rejected);
        let v = decide(Mode::Enforce, &levels, vec![finding(&crate::rules::BAN_DROP_COLUMN)]);
        assert_eq!(v.decision, Decision::Allowed);
        let lowered = RuleLevels::parse("require-concurrent-index-creation:warning").unwrap();
        let v = decide(Mode::Enforce, &lowered, vec![finding(&REQUIRE_CONCURRENT_INDEX_CREATION)]);
        assert_eq!(v.decision, Decision::Warned);
    }

    #[test]
    fn warning_level_rules_warn_in_enforce_mode() {
        let v = decide(Mode::Enforce, &RuleLevels::default(), vec![finding(&crate::rules::RENAMING_TABLE)]);
        assert_eq!(v.decision, Decision::Warned);
    }

    #[test]
    fn several_findings_are_all_reported() {
        let v = decide(Mode::Enforce, &RuleLevels::default(), vec![finding(&ADDING_NOT_NULLABLE_FIELD), finding(&REQUIRE_CONCURRENT_INDEX_CREATION)]);
        assert_eq!(v.rules.len(), 2);
        let r = v.report.unwrap();
        assert!(r.message.ends_with("(and 1 more finding)"));
        assert!(r.detail.contains("adding-not-nullable-field: d\nrequire-concurrent-index-creation: d"));
        assert_eq!(r.hint, "h\nh");
    }
}

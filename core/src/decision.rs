//! From findings and policy to a decision and the text the user sees. Pure Rust.

use crate::overrides::Override;
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
    /// Findings a `pg_migration_guard:allow` annotation named were let through
    /// (`crate::overrides`); nothing else rejected the statement.
    Overridden,
    /// The session is exempt (`exempt_roles`, `application_name_pattern`): not judged.
    Exempt,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Warned => "warned",
            Decision::Rejected => "rejected",
            Decision::Overridden => "overridden",
            Decision::Exempt => "exempt",
        }
    }
}

/// A finding with the level the policy gave it.
#[derive(Clone, Debug, PartialEq)]
pub struct LeveledFinding {
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
    /// Rule ids an annotation let through (a subset of `rules`).
    pub overridden: Vec<&'static str>,
    /// The annotation's reason, when it was honoured.
    pub override_reason: Option<String>,
}

impl Verdict {
    /// Nothing found (or nothing judged).
    pub fn allowed() -> Verdict {
        Verdict { decision: Decision::Allowed, rules: vec![], report: None, overridden: vec![], override_reason: None }
    }
}

/// A statement's `pg_migration_guard:allow` annotation and whether policy honours it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overrides {
    pub annotation: Option<Override>,
    /// `pg_migration_guard.allow_overrides`.
    pub allowed: bool,
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
            let level =
                Level::parse(level).ok_or_else(|| format!("unknown level \"{level}\" for rule \"{id}\" (use off, warning or error)"))?;
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

/// Applies the per-rule levels, the mode and the statement's override annotation to the
/// findings. A finding the annotation names (when `allow_overrides` is on) neither rejects
/// nor warns; the statement is `overridden` unless another finding rejects it.
pub fn decide(mode: Mode, levels: &RuleLevels, findings: Vec<Finding>, overrides: &Overrides) -> Verdict {
    let leveled: Vec<LeveledFinding> = findings
        .into_iter()
        .map(|f| {
            let level = levels.level(f.rule);
            LeveledFinding { finding: f, level }
        })
        .filter(|j| j.level != Level::Off)
        .collect();
    if leveled.is_empty() || mode == Mode::Off {
        return Verdict::allowed();
    }
    let honoured = overrides.annotation.as_ref().filter(|_| overrides.allowed);
    let (overridden, remaining): (Vec<&LeveledFinding>, Vec<&LeveledFinding>) =
        leveled.iter().partition(|j| honoured.is_some_and(|o| o.covers(j.finding.rule)));
    let rejects = mode == Mode::Enforce && remaining.iter().any(|j| j.level == Level::Error);
    let decision = match (rejects, overridden.is_empty()) {
        (true, _) => Decision::Rejected,
        (false, false) => Decision::Overridden,
        (false, true) => Decision::Warned,
    };
    let mut report = if remaining.is_empty() {
        let first = &overridden[0].finding;
        let mut detail = overridden.iter().map(|j| format!("{}: {}", j.finding.rule.id, j.finding.detail)).collect::<Vec<_>>().join("\n");
        detail.push_str(&format!(
            "\nLet through by its pg_migration_guard:allow annotation, reason: \"{}\".",
            honoured.map(|o| o.reason.as_str()).unwrap_or_default()
        ));
        Report {
            message: format!(
                "{} overridden: {}",
                overridden.iter().map(|j| j.finding.rule.id).collect::<Vec<_>>().join(", "),
                first.message
            ),
            detail,
            hint: String::new(),
        }
    } else {
        // A rejection names a rule that rejects: the error-level findings come first, each
        // group in the rules' order.
        let mut remaining = remaining;
        if rejects {
            remaining.sort_by_key(|j| j.level != Level::Error);
        }
        let mut r = render(&remaining, mode);
        if !overridden.is_empty() {
            r.detail.push_str(&format!(
                "\nOverridden by its pg_migration_guard:allow annotation: {}.",
                overridden.iter().map(|j| j.finding.rule.id).collect::<Vec<_>>().join(", ")
            ));
        }
        r
    };
    if overrides.annotation.is_some() && !overrides.allowed {
        report
            .detail
            .push_str("\nThe statement's pg_migration_guard:allow annotation was not honoured: pg_migration_guard.allow_overrides is off.");
    }
    Verdict {
        decision,
        rules: leveled.iter().map(|j| j.finding.rule.id).collect(),
        report: Some(report),
        overridden: overridden.iter().map(|j| j.finding.rule.id).collect(),
        override_reason: honoured.filter(|_| !overridden.is_empty()).map(|o| o.reason.clone()),
    }
}

/// Why the guard could not judge a statement: an error while it read the statement's facts
/// (the cause is PostgreSQL's or the guard's own message), or a fact it could not decide
/// without waiting for another session.
#[derive(Clone, Debug, PartialEq)]
pub struct JudgingFailure {
    pub cause: String,
    /// What the user can do about this cause, when there is something specific.
    pub hint: Option<String>,
}

/// `pg_migration_guard.on_judging_error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnJudgingError {
    Reject,
    Allow,
}

/// The verdict on a statement the guard could not judge. Fail closed: in mode `enforce`
/// with `on_judging_error = reject` it is rejected, naming the cause and the setting; with
/// `allow`, or in mode `warn`, it runs unjudged with a WARNING naming the cause (decision
/// `warned`). No rule fired, so `rules` is empty; the cause is in the message, which the
/// audit row keeps.
pub fn undecided(mode: Mode, on_error: OnJudgingError, command_tag: &str, failure: &JudgingFailure) -> Verdict {
    if mode == Mode::Off {
        return Verdict::allowed();
    }
    let reject = mode == Mode::Enforce && on_error == OnJudgingError::Reject;
    let message = format!("pg_migration_guard could not judge this {command_tag} statement: {}", failure.cause);
    let (outcome, setting) = if reject {
        ("The statement was not run.", "reject")
    } else {
        ("The statement runs unjudged: no rule was checked and no lock was taken ahead.", "allow")
    };
    let policy = if mode == Mode::Warn {
        "pg_migration_guard.mode is warn.".to_string()
    } else {
        format!("pg_migration_guard.on_judging_error is {setting}.")
    };
    let detail = format!("{outcome}\n{policy}");
    let hint = if reject {
        let mut h = failure.hint.clone().unwrap_or_else(|| "Run the statement again.".to_string());
        h.push_str(
            " If the guard cannot judge it at all and it is known to be safe, a superuser can let statements the guard \
             cannot judge run unjudged: SET pg_migration_guard.on_judging_error = allow;",
        );
        h
    } else {
        String::new()
    };
    Verdict {
        decision: if reject { Decision::Rejected } else { Decision::Warned },
        rules: vec![],
        report: Some(Report { message, detail, hint }),
        overridden: vec![],
        override_reason: None,
    }
}

/// One report for all findings: the first finding's message, every finding's detail and
/// hint, and a last DETAIL line saying which policy produced it.
fn render(leveled: &[&LeveledFinding], mode: Mode) -> Report {
    let first = &leveled[0].finding;
    let mut message = format!("{}: {}", first.rule.id, first.message);
    if leveled.len() > 1 {
        message.push_str(&format!(" (and {} more finding{})", leveled.len() - 1, if leveled.len() > 2 { "s" } else { "" }));
    }
    let mut detail = String::new();
    let mut hint = String::new();
    for (i, j) in leveled.iter().enumerate() {
        if i > 0 {
            detail.push('\n');
            hint.push('\n');
        }
        if leveled.len() > 1 {
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
            let v = decide(mode, &RuleLevels::default(), vec![], &Overrides::default());
            assert_eq!(v.decision, Decision::Allowed);
            assert!(v.report.is_none());
        }
    }

    #[test]
    fn error_finding_rejects_in_enforce_and_warns_in_warn() {
        let v = decide(Mode::Enforce, &RuleLevels::default(), vec![finding(&REQUIRE_CONCURRENT_INDEX_CREATION)], &Overrides::default());
        assert_eq!(v.decision, Decision::Rejected);
        assert_eq!(v.rules, vec!["require-concurrent-index-creation"]);
        let r = v.report.unwrap();
        assert_eq!(r.message, "require-concurrent-index-creation: m");
        assert!(r.detail.ends_with("pg_migration_guard.mode is enforce."));
        let v = decide(Mode::Warn, &RuleLevels::default(), vec![finding(&REQUIRE_CONCURRENT_INDEX_CREATION)], &Overrides::default());
        assert_eq!(v.decision, Decision::Warned);
        assert_eq!(v.report.unwrap().message, "require-concurrent-index-creation: m");
    }

    #[test]
    fn off_mode_is_silent() {
        let v = decide(Mode::Off, &RuleLevels::default(), vec![finding(&REQUIRE_CONCURRENT_INDEX_CREATION)], &Overrides::default());
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
        let v = decide(Mode::Enforce, &levels, vec![finding(&crate::rules::RENAMING_COLUMN)], &Overrides::default());
        assert_eq!(v.decision, Decision::Rejected);
        let v = decide(Mode::Enforce, &levels, vec![finding(&crate::rules::BAN_DROP_COLUMN)], &Overrides::default());
        assert_eq!(v.decision, Decision::Allowed);
        let lowered = RuleLevels::parse("require-concurrent-index-creation:warning").unwrap();
        let v = decide(Mode::Enforce, &lowered, vec![finding(&REQUIRE_CONCURRENT_INDEX_CREATION)], &Overrides::default());
        assert_eq!(v.decision, Decision::Warned);
    }

    #[test]
    fn warning_level_rules_warn_in_enforce_mode() {
        let v = decide(Mode::Enforce, &RuleLevels::default(), vec![finding(&crate::rules::RENAMING_TABLE)], &Overrides::default());
        assert_eq!(v.decision, Decision::Warned);
    }

    #[test]
    fn several_findings_are_all_reported() {
        let v = decide(
            Mode::Enforce,
            &RuleLevels::default(),
            vec![finding(&ADDING_NOT_NULLABLE_FIELD), finding(&REQUIRE_CONCURRENT_INDEX_CREATION)],
            &Overrides::default(),
        );
        assert_eq!(v.rules.len(), 2);
        let r = v.report.unwrap();
        assert!(r.message.ends_with("(and 1 more finding)"));
        assert!(r.detail.contains("adding-not-nullable-field: d\nrequire-concurrent-index-creation: d"));
        assert_eq!(r.hint, "h\nh");
    }

    #[test]
    fn a_rejection_names_the_rule_that_rejects_first() {
        let levels = RuleLevels::parse("adding-not-nullable-field:warning").unwrap();
        let findings = vec![finding(&ADDING_NOT_NULLABLE_FIELD), finding(&REQUIRE_CONCURRENT_INDEX_CREATION)];
        let v = decide(Mode::Enforce, &levels, findings.clone(), &Overrides::default());
        assert_eq!(v.decision, Decision::Rejected);
        assert!(v.report.unwrap().message.starts_with("require-concurrent-index-creation: m (and 1 more finding)"));
        // The audit keeps the rules' order; a warning keeps it too.
        assert_eq!(v.rules, ["adding-not-nullable-field", "require-concurrent-index-creation"]);
        let v = decide(Mode::Warn, &levels, findings, &Overrides::default());
        assert!(v.report.unwrap().message.starts_with("adding-not-nullable-field: m"));
    }

    fn annotation(rules: &[&'static crate::rules::Rule], allowed: bool) -> Overrides {
        Overrides { annotation: Some(Override { rules: rules.to_vec(), reason: "window".into() }), allowed }
    }

    #[test]
    fn honoured_annotation_overrides_only_the_rules_it_names() {
        let o = annotation(&[&REQUIRE_CONCURRENT_INDEX_CREATION], true);
        let v = decide(Mode::Enforce, &RuleLevels::default(), vec![finding(&REQUIRE_CONCURRENT_INDEX_CREATION)], &o);
        assert_eq!(v.decision, Decision::Overridden);
        assert_eq!(v.overridden, vec!["require-concurrent-index-creation"]);
        assert_eq!(v.override_reason.as_deref(), Some("window"));
        let r = v.report.unwrap();
        assert!(r.message.starts_with("require-concurrent-index-creation overridden: "), "{}", r.message);
        assert!(r.detail.contains("reason: \"window\""), "{}", r.detail);
        // Another rule still rejects; the overridden one is named in the DETAIL.
        let v = decide(
            Mode::Enforce,
            &RuleLevels::default(),
            vec![finding(&REQUIRE_CONCURRENT_INDEX_CREATION), finding(&ADDING_NOT_NULLABLE_FIELD)],
            &o,
        );
        assert_eq!(v.decision, Decision::Rejected);
        assert_eq!(v.overridden, vec!["require-concurrent-index-creation"]);
        let r = v.report.unwrap();
        assert!(r.message.starts_with("adding-not-nullable-field: "), "{}", r.message);
        assert!(r.detail.contains("Overridden by its pg_migration_guard:allow annotation: require-concurrent-index-creation."));
    }

    #[test]
    fn annotation_is_ignored_when_overrides_are_not_allowed() {
        let o = annotation(&[&REQUIRE_CONCURRENT_INDEX_CREATION], false);
        let v = decide(Mode::Enforce, &RuleLevels::default(), vec![finding(&REQUIRE_CONCURRENT_INDEX_CREATION)], &o);
        assert_eq!(v.decision, Decision::Rejected);
        assert!(v.overridden.is_empty());
        assert_eq!(v.override_reason, None);
        assert!(v.report.unwrap().detail.contains("allow_overrides is off"));
    }

    #[test]
    fn a_statement_that_could_not_be_judged_is_rejected_by_default() {
        let failure = JudgingFailure { cause: "stack depth limit exceeded".into(), hint: None };
        let v = undecided(Mode::Enforce, OnJudgingError::Reject, "ALTER TABLE", &failure);
        assert_eq!(v.decision, Decision::Rejected);
        assert!(v.rules.is_empty());
        let r = v.report.unwrap();
        assert_eq!(r.message, "pg_migration_guard could not judge this ALTER TABLE statement: stack depth limit exceeded");
        assert!(r.detail.starts_with("The statement was not run."), "{}", r.detail);
        assert!(r.detail.ends_with("pg_migration_guard.on_judging_error is reject."), "{}", r.detail);
        assert!(r.hint.contains("SET pg_migration_guard.on_judging_error = allow;"), "{}", r.hint);
    }

    #[test]
    fn a_statement_that_could_not_be_judged_runs_with_a_warning_when_allowed_or_in_warn_mode() {
        let failure = JudgingFailure { cause: "boom".into(), hint: Some("Wait.".into()) };
        for (mode, policy) in [(Mode::Enforce, "on_judging_error is allow."), (Mode::Warn, "mode is warn.")] {
            let on_error = if mode == Mode::Warn { OnJudgingError::Reject } else { OnJudgingError::Allow };
            let v = undecided(mode, on_error, "CREATE INDEX", &failure);
            assert_eq!(v.decision, Decision::Warned);
            let r = v.report.unwrap();
            assert!(r.message.ends_with("CREATE INDEX statement: boom"), "{}", r.message);
            assert!(r.detail.starts_with("The statement runs unjudged"), "{}", r.detail);
            assert!(r.detail.ends_with(policy), "{}", r.detail);
        }
        let v = undecided(Mode::Enforce, OnJudgingError::Reject, "CREATE INDEX", &failure);
        assert!(v.report.unwrap().hint.starts_with("Wait. "));
        assert_eq!(undecided(Mode::Off, OnJudgingError::Reject, "CREATE INDEX", &failure), Verdict::allowed());
    }

    #[test]
    fn annotation_without_findings_is_allowed() {
        let o = annotation(&[&REQUIRE_CONCURRENT_INDEX_CREATION], true);
        let v = decide(Mode::Enforce, &RuleLevels::default(), vec![], &o);
        assert_eq!(v.decision, Decision::Allowed);
        assert_eq!(v.override_reason, None);
    }
}

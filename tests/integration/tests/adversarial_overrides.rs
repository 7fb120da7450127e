//! Adversarial routes around break-glass annotations and `exempt_roles`, over real
//! connections, as `adv_app`: a non-superuser with LOGIN and CREATEROLE that owns its
//! database `advdb` (the extension created there by the superuser) and the table
//! `adv.big` (60000 rows, above the 1 MB small-table threshold: a plain `CREATE INDEX` on
//! it is rejected by require-concurrent-index-creation).
//!
//! 1. Annotation-like text the server does not treat as a comment — inside a string literal
//!    after the identifier `a$q$`, inside a `'...\'...'` literal with
//!    `standard_conforming_strings = off`, and inside a literal whose extent depends on that
//!    setting when the setting changes between parsing and running — is not honoured: the
//!    statement is rejected, the index does not exist, the audit row says `rejected`. The
//!    same statements with a real comment are let through (`overridden`).
//! 2. `exempt_roles` (set for `advdb` as 'adv_migrator, adv_future, adv_future_group'): a
//!    membership adv_app grants itself, a listed role it creates and grants itself, and a
//!    listed role it creates with LOGIN and logs in as, do not exempt; a membership the
//!    superuser granted does (`exempt`), also through a NOLOGIN team role, unless a link of
//!    the chain was granted by adv_app.
//!
//! The database, its table and the roles are made once per run of this file (`setup`);
//! each test finds its rows by unique application names. Memberships a test grants are
//! revoked by a [`Cleanup`] guard, also on failure.

use std::sync::OnceLock;

use pg_migration_guard_integration::*;

const DB: &str = "advdb";
const INDEX_RULE: &str = "require-concurrent-index-creation";
/// Annotation text for the rule that rejects `CREATE INDEX` on adv.big, placed where the
/// server does not see a comment.
const FAKE: &str = "pg_migration_guard:allow require-concurrent-index-creation reason=\"not a comment\"";
/// The same annotation, placed in a real comment.
const GENUINE: &str = "pg_migration_guard:allow require-concurrent-index-creation reason=\"adversarial test\"";
const EXEMPT_ROLES: &str = "adv_migrator, adv_future, adv_future_group";

/// Role `adv_app` (LOGIN CREATEROLE), `adv_migrator` and `adv_team` (NOLOGIN); database
/// `advdb` owned by adv_app, with the extension and `exempt_roles` set for it; schema `adv`
/// and table `adv.big (id, v, s text, a$q$ text)` owned by adv_app. Roles a previous run
/// created through adv_app (`adv_future`, `adv_future_group`) are dropped first.
fn setup() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let mut su = connect("A");
        // One statement per call: DROP/CREATE DATABASE cannot run in the implicit
        // transaction block of a multi-statement string.
        let run = |su: &mut Client, sql: &str| su.batch_execute(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        run(&mut su, &format!("DROP DATABASE IF EXISTS {DB} WITH (FORCE)"));
        run(&mut su, "DROP ROLE IF EXISTS adv_future");
        run(&mut su, "DROP ROLE IF EXISTS adv_future_group");
        ensure_role(&mut su, "adv_app", "LOGIN CREATEROLE");
        ensure_role(&mut su, "adv_migrator", "NOLOGIN");
        ensure_role(&mut su, "adv_team", "NOLOGIN");
        run(
            &mut su,
            "ALTER ROLE adv_app NOSUPERUSER LOGIN CREATEROLE; ALTER ROLE adv_migrator NOLOGIN; \
             REVOKE adv_migrator FROM adv_app; REVOKE adv_team FROM adv_app; REVOKE adv_migrator FROM adv_team",
        );
        run(&mut su, &format!("CREATE DATABASE {DB} OWNER adv_app"));
        run(&mut su, &format!("ALTER DATABASE {DB} SET pg_migration_guard.exempt_roles = '{EXEMPT_ROLES}'"));
        let mut admin = admin();
        admin
            .batch_execute(
                "CREATE EXTENSION pg_migration_guard; \
                 SET pg_migration_guard.mode = off; \
                 CREATE SCHEMA adv AUTHORIZATION adv_app; \
                 CREATE TABLE adv.big AS SELECT g AS id, g % 100 AS v, (g % 7)::text AS s, (g % 5)::text AS a$q$ \
                 FROM generate_series(1, 60000) g; \
                 ALTER TABLE adv.big OWNER TO adv_app; \
                 RESET pg_migration_guard.mode",
            )
            .unwrap();
        let size: i64 = admin.query_one("SELECT pg_relation_size('adv.big')", &[]).unwrap().get(0);
        assert!(size > 1024 * 1024, "adv.big must be above the 1MB small-table threshold, is {size} bytes");
    });
}

/// A superuser connection to advdb (where the audit rows land).
fn admin() -> Client {
    connect_db("A", DB, "postgres", "adv-admin").0
}

/// A new adv_app session in advdb, checked to have the database's exempt_roles.
fn adv_app(app: &str) -> Client {
    let mut c = connect_db("A", DB, "adv_app", app).0;
    let roles: String = c.query_one("SELECT current_setting('pg_migration_guard.exempt_roles')", &[]).unwrap().get(0);
    assert_eq!(roles, EXEMPT_ROLES, "the session must run with advdb's exempt_roles");
    c
}

fn index_exists(admin: &mut Client, index: &str) -> bool {
    admin.query_one("SELECT to_regclass('adv.' || $1) IS NOT NULL", &[&index]).unwrap().get(0)
}

/// `result` (a `CREATE INDEX <index>` sent by session `app`) must be the guard's rejection;
/// the index must not exist; the audit must hold exactly one CREATE INDEX row for the
/// session: `statement`, rejected by the rule, nothing overridden, run by `session_role`.
fn assert_rejected_and_audited(
    result: Result<impl std::fmt::Debug, postgres::Error>,
    app: &str,
    index: &str,
    statement: &str,
    session_role: &str,
) {
    let e = expect_rejected(result, INDEX_RULE);
    let mut admin = admin();
    assert!(!index_exists(&mut admin, index), "the index {index} must not have been built");
    let rows = wait_for_audit(&mut admin, "application_name = $1 AND command_tag = 'CREATE INDEX'", &[&app], 1);
    let r = &rows[0];
    assert_eq!(r.statement, statement, "{r:#?}");
    assert_eq!(r.decision, "rejected", "{r:#?}");
    assert_eq!(r.rules(), vec![INDEX_RULE.to_string()], "{r:#?}");
    assert!(r.overridden_rules.clone().unwrap_or_default().is_empty(), "{r:#?}");
    assert_eq!(r.override_reason, None, "{r:#?}");
    assert_eq!(r.message.as_deref(), Some(e.message()), "{r:#?}");
    assert_eq!(r.session_role, session_role, "{r:#?}");
}

/// `sql` (a `CREATE INDEX <index>`) ran for session `app` and is audited with `decision`.
fn assert_ran_and_audited(app: &str, index: &str, decision: &str) -> AuditRow {
    let mut admin = admin();
    assert!(index_exists(&mut admin, index), "the index {index} must have been built");
    let rows = wait_for_audit(&mut admin, "application_name = $1 AND command_tag = 'CREATE INDEX'", &[&app], 1);
    assert_eq!(rows[0].decision, decision, "{:#?}", rows[0]);
    rows[0].clone()
}

// ---------------------------------------------------------------------------------------
// 1. Annotation-like text that is not a comment
// ---------------------------------------------------------------------------------------

/// `a$q$` is one identifier (scan.l: `ident_cont` includes `$`): `$q$` opens no dollar
/// quote, and the marker after it is inside the string literal `'$q$ /* ... */'`.
#[test]
fn annotation_in_a_literal_after_a_dollar_identifier_is_not_honoured() {
    setup();
    let tag = unique_tag();
    let app = format!("adv-dollar-{tag}");
    let index = format!("adv_dollar_{tag}");
    let sql = format!("CREATE INDEX {index} ON adv.big (v) WHERE a$q$ <> '$q$ /* {FAKE} */'");
    let mut c = adv_app(&app);
    assert_rejected_and_audited(c.batch_execute(&sql), &app, &index, &sql, "adv_app");
}

/// With standard_conforming_strings off, `\'` escapes a quote in `'...'`:
/// `'\' /* ... */ '` is one string literal.
#[test]
fn annotation_in_a_backslash_escaped_literal_is_not_honoured() {
    setup();
    let tag = unique_tag();
    let app = format!("adv-backslash-{tag}");
    let index = format!("adv_backslash_{tag}");
    let sql = format!("CREATE INDEX {index} ON adv.big (v) WHERE s <> '\\' /* {FAKE} */ '");
    let mut c = adv_app(&app);
    c.batch_execute("SET standard_conforming_strings = off").unwrap();
    assert_rejected_and_audited(c.batch_execute(&sql), &app, &index, &sql, "adv_app");
}

/// The simple-query protocol parses the whole string before running its first statement,
/// so the CREATE INDEX is parsed with standard_conforming_strings off (one literal
/// `'\' /* ... */ '`, then the comment `-- '`) and runs after the SET turned it on (under
/// which `/* ... */` would be a comment between the literals `'\'` and `' -- '`).
#[test]
fn annotation_that_is_a_comment_only_under_the_changed_setting_is_not_honoured() {
    setup();
    let tag = unique_tag();
    let app = format!("adv-flip-{tag}");
    let index = format!("adv_flip_{tag}");
    let create = format!("CREATE INDEX {index} ON adv.big (v) WHERE s <> '\\' /* {FAKE} */ ' -- '");
    let mut c = adv_app(&app);
    c.batch_execute("SET standard_conforming_strings = off").unwrap();
    assert_rejected_and_audited(
        c.batch_execute(&format!("SET standard_conforming_strings = on; {create}")),
        &app,
        &index,
        &create,
        "adv_app",
    );
}

/// The statements of the routes above, with the annotation in a real comment, are let
/// through: the rejections above are not a failure to read annotations at all.
#[test]
fn genuine_annotations_next_to_the_same_literals_are_honoured() {
    setup();
    let tag = unique_tag();
    let cases = [
        ("dollar", format!("WHERE a$q$ <> '$q$' /* {GENUINE} */"), "on"),
        ("backslash", format!("WHERE s <> '\\'' /* {GENUINE} */"), "off"),
        ("e_string", format!("WHERE s <> E'\\' ' -- {GENUINE}"), "on"),
    ];
    for (name, tail, standard_conforming_strings) in cases {
        let app = format!("adv-genuine-{name}-{tag}");
        let index = format!("adv_genuine_{name}_{tag}");
        let mut c = adv_app(&app);
        c.batch_execute(&format!("SET standard_conforming_strings = {standard_conforming_strings}")).unwrap();
        c.batch_execute(&format!("CREATE INDEX {index} ON adv.big (v) {tail}"))
            .unwrap_or_else(|e| panic!("{name}: the annotated statement must run: {e:?}"));
        let r = assert_ran_and_audited(&app, &index, "overridden");
        assert_eq!(r.overridden_rules, Some(vec![INDEX_RULE.to_string()]), "{r:#?}");
        assert_eq!(r.override_reason.as_deref(), Some("adversarial test"), "{r:#?}");
    }
}

// ---------------------------------------------------------------------------------------
// 2. exempt_roles: self-made memberships
// ---------------------------------------------------------------------------------------

/// The grantor PostgreSQL recorded for `member`'s membership in `role`.
fn grantor(admin: &mut Client, role: &str, member: &str) -> String {
    admin
        .query_one(
            "SELECT grantor::regrole::text FROM pg_auth_members WHERE roleid = $1::text::regrole AND member = $2::text::regrole",
            &[&role, &member],
        )
        .unwrap_or_else(|e| panic!("membership of {member} in {role}: {e}"))
        .get(0)
}

/// adv_app (CREATEROLE) grants itself the listed adv_migrator: PostgreSQL counts it as a
/// member, the guard does not, because adv_app is the grantor.
#[test]
fn self_granted_membership_in_a_listed_role_does_not_exempt() {
    setup();
    let mut cleanup = Cleanup::new("A");
    cleanup.push("REVOKE adv_migrator FROM adv_app");
    let tag = unique_tag();
    adv_app(&format!("adv-selfgrant-setup-{tag}")).batch_execute("GRANT adv_migrator TO adv_app").unwrap();
    let mut admin = admin();
    assert_eq!(grantor(&mut admin, "adv_migrator", "adv_app"), "adv_app");
    let member: bool = admin.query_one("SELECT pg_has_role('adv_app', 'adv_migrator', 'MEMBER')", &[]).unwrap().get(0);
    assert!(member, "PostgreSQL counts adv_app as a member of adv_migrator");

    let app = format!("adv-selfgrant-{tag}");
    let index = format!("adv_selfgrant_{tag}");
    let sql = format!("CREATE INDEX {index} ON adv.big (v)");
    assert_rejected_and_audited(adv_app(&app).batch_execute(&sql), &app, &index, &sql, "adv_app");
}

/// adv_app creates adv_future_group, listed but not existing yet, and grants it to itself.
#[test]
fn created_and_self_granted_listed_role_does_not_exempt() {
    setup();
    let mut cleanup = Cleanup::new("A");
    cleanup.push("DROP ROLE IF EXISTS adv_future_group");
    let tag = unique_tag();
    adv_app(&format!("adv-futuregroup-setup-{tag}"))
        .batch_execute("CREATE ROLE adv_future_group NOLOGIN; GRANT adv_future_group TO adv_app")
        .unwrap();
    assert_eq!(grantor(&mut admin(), "adv_future_group", "adv_app"), "adv_app");

    let app = format!("adv-futuregroup-{tag}");
    let index = format!("adv_futuregroup_{tag}");
    let sql = format!("CREATE INDEX {index} ON adv.big (v)");
    assert_rejected_and_audited(adv_app(&app).batch_execute(&sql), &app, &index, &sql, "adv_app");
}

/// adv_app creates adv_future, listed but not existing yet, as a LOGIN role, lets it
/// create a table, and logs in as it: a session of a listed role itself is not exempt.
#[test]
fn created_listed_role_logging_in_as_itself_is_not_exempt() {
    setup();
    let tag = unique_tag();
    adv_app(&format!("adv-future-setup-{tag}"))
        .batch_execute("CREATE ROLE adv_future LOGIN; GRANT USAGE, CREATE ON SCHEMA adv TO adv_future")
        .unwrap();
    let app = format!("adv-future-{tag}");
    let (mut f, _) = connect_db("A", DB, "adv_future", &app);
    let table = format!("adv.future_{tag}");
    f.batch_execute(&format!("CREATE TABLE {table} AS SELECT g AS id, g % 100 AS v FROM generate_series(1, 60000) g"))
        .unwrap();
    let index = format!("adv_future_{tag}");
    let sql = format!("CREATE INDEX {index} ON {table} (v)");
    assert_rejected_and_audited(f.batch_execute(&sql), &app, &index, &sql, "adv_future");
    // (adv_future owns a table in advdb; the next run's setup drops the database, then it.)
}

// ---------------------------------------------------------------------------------------
// 2. exempt_roles: memberships the superuser granted
// ---------------------------------------------------------------------------------------

/// The superuser grants adv_migrator to adv_app: adv_app's sessions are exempt.
#[test]
fn superuser_granted_membership_exempts() {
    setup();
    let mut cleanup = Cleanup::new("A");
    cleanup.push("REVOKE adv_migrator FROM adv_app");
    let mut admin = admin();
    // A membership adv_app granted itself would stay as it is (PostgreSQL 15 keeps the
    // existing row and its grantor): start from none.
    admin.batch_execute("REVOKE adv_migrator FROM adv_app; GRANT adv_migrator TO adv_app").unwrap();
    assert_eq!(grantor(&mut admin, "adv_migrator", "adv_app"), "postgres");

    let tag = unique_tag();
    let app = format!("adv-granted-{tag}");
    let index = format!("adv_granted_{tag}");
    adv_app(&app).batch_execute(&format!("CREATE INDEX {index} ON adv.big (v)")).unwrap();
    let r = assert_ran_and_audited(&app, &index, "exempt");
    assert_eq!(r.session_role, "adv_app", "{r:#?}");
}

/// Through a NOLOGIN team role: exempt when the superuser granted both memberships
/// (adv_app -> adv_team -> adv_migrator), judged when adv_app granted itself adv_team.
#[test]
fn chain_of_memberships_exempts_only_when_the_superuser_granted_every_link() {
    setup();
    let mut cleanup = Cleanup::new("A");
    cleanup.push("REVOKE adv_team FROM adv_app");
    cleanup.push("REVOKE adv_migrator FROM adv_team");
    let mut admin = admin();
    admin.batch_execute("REVOKE adv_team FROM adv_app; GRANT adv_migrator TO adv_team").unwrap();
    let tag = unique_tag();

    adv_app(&format!("adv-chain-setup-{tag}")).batch_execute("GRANT adv_team TO adv_app").unwrap();
    assert_eq!(grantor(&mut admin, "adv_team", "adv_app"), "adv_app");
    let app = format!("adv-chain-self-{tag}");
    let index = format!("adv_chain_self_{tag}");
    let sql = format!("CREATE INDEX {index} ON adv.big (v)");
    assert_rejected_and_audited(adv_app(&app).batch_execute(&sql), &app, &index, &sql, "adv_app");

    admin.batch_execute("REVOKE adv_team FROM adv_app; GRANT adv_team TO adv_app").unwrap();
    assert_eq!(grantor(&mut admin, "adv_team", "adv_app"), "postgres");
    let app = format!("adv-chain-granted-{tag}");
    let index = format!("adv_chain_granted_{tag}");
    adv_app(&app).batch_execute(&format!("CREATE INDEX {index} ON adv.big (v)")).unwrap();
    assert_ran_and_audited(&app, &index, "exempt");
}

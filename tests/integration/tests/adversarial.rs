//! The guard against a determined session: an application role that owns its database and
//! its tables, with no superuser privilege, trying to get unsafe DDL past the guard or to
//! silence its audit. One scenario per route; each asserts that the unsafe statement did
//! not run and that its decision has an audit row.
//!
//! The role is `adv_app` (LOGIN, CREATEROLE, owner of database `advdb`, where the superuser
//! installed the extension, and of `adv.big` and `public.big`, both ~2 MB: above the 1 MB
//! small-table threshold, so a plain CREATE INDEX is rejected, and a type change that
//! rewrites them too). Routes tried:
//!
//! 1. Judging fails closed: a user function that fails while judged, a default too deep to
//!    analyze, a fact that cannot be decided without waiting, a name that is not UTF-8.
//! 2. The guard's internal queries cannot be hijacked by the session's own operators.
//! 3. A long multi-statement string is judged in linear time.
//! 4. The server maps a private copy of the library, never the system's.
//! 5. Annotation-like text the server does not treat as a comment — inside a string literal
//!    after the identifier `a$q$`, inside a `'...\'...'` literal with
//!    `standard_conforming_strings = off`, and inside a literal whose extent depends on that
//!    setting when the setting changes between parsing and running — is not honoured. The
//!    same statements with a real comment are let through (`overridden`).
//! 6. `exempt_roles` (set for `advdb` as 'adv_migrator, adv_future, adv_future_group'): a
//!    membership adv_app grants itself, a listed role it creates and grants itself, and a
//!    listed role it creates with LOGIN and logs in as, do not exempt; a membership the
//!    superuser granted does (`exempt`), also through a NOLOGIN team role, unless a link of
//!    the chain was granted by adv_app.
//! 7. The audit: the database owner's settings (read-only, `role`, `session_authorization`,
//!    `exit_on_error`, `ALLOW_CONNECTIONS false`) do not silence the audit writer; a
//!    database whose writer cannot deliver holds up no other database; 300 kB fields keep
//!    their decision's row; a reason with newlines stays on one LOG line.
//!
//! The database, its tables and the roles are made once per run of this file (`setup`);
//! each test finds its rows by unique application names. Global state a test changes is
//! undone by a [`Cleanup`] guard, also on failure.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use pg_migration_guard_integration::*;

const DB: &str = "advdb";
const APP_ROLE: &str = "adv_app";
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
/// created through adv_app (`adv_future`, `adv_future_group`) are dropped first. Also
/// `public.big (id, x)`, ~2 MB, owned by adv_app.
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
        // The table of the judging and lock-queue scenarios, in schema public.
        admin
            .batch_execute(
                "SET pg_migration_guard.mode = off; \
                 CREATE TABLE public.big AS SELECT g AS id, g % 100 AS x FROM generate_series(1, 60000) g; \
                 ALTER TABLE public.big OWNER TO adv_app; \
                 RESET pg_migration_guard.mode",
            )
            .unwrap();
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

/// A session of the application role in its database (judged: adv_app is a member of no
/// listed role outside the exempt_roles tests, which revoke what they grant).
fn app(application_name: &str) -> Client {
    setup();
    connect_db("A", DB, APP_ROLE, application_name).0
}

fn column_type(c: &mut Client, table: &str, column: &str) -> String {
    c.query_one(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = $1::text::regclass AND attname = $2",
        &[&table, &column],
    )
    .unwrap()
    .get(0)
}

fn relfilenode(c: &mut Client, table: &str) -> u32 {
    c.query_one("SELECT relfilenode FROM pg_class WHERE oid = $1::text::regclass", &[&table]).unwrap().get(0)
}

fn column_exists(c: &mut Client, table: &str, column: &str) -> bool {
    c.query_one(
        "SELECT EXISTS (SELECT FROM pg_attribute WHERE attrelid = $1::text::regclass AND attname = $2 AND NOT attisdropped)",
        &[&table, &column],
    )
    .unwrap()
    .get(0)
}

/// The one audit row of the session named `app` (waits for the writer).
fn audit_of(app: &str) -> AuditRow {
    let mut a = admin();
    wait_for_audit(&mut a, "application_name = $1", &[&app], 1).remove(0)
}

// ---------------------------------------------------------------------------------------
// 1. Judging fails closed
// ---------------------------------------------------------------------------------------

/// An IMMUTABLE function that fails every other call, in an ADD COLUMN default beside a
/// type change that rewrites the table: the guard used to run it while judging (constant
/// folding), fail, and let the statement through unjudged. Judging never calls it now: the
/// type change is judged and rejected, the table is not rewritten, the row says why.
#[test]
fn a_user_function_that_fails_while_judged_cannot_open_the_guard() {
    let tag = format!("adv_boom_{}", unique_tag());
    let mut setup = app(&format!("{tag}_setup"));
    setup
        .batch_execute(
            "DROP FUNCTION IF EXISTS boom(); DROP SEQUENCE IF EXISTS boom_calls; CREATE SEQUENCE boom_calls; \
         CREATE FUNCTION boom() RETURNS int LANGUAGE plpgsql IMMUTABLE AS \
         $$BEGIN IF nextval('boom_calls') % 2 = 1 THEN RAISE EXCEPTION 'boom'; END IF; RETURN 0; END$$",
        )
        .unwrap();
    let mut c = app(&tag);
    let before = relfilenode(&mut c, "big");
    let e = expect_rejected(
        c.batch_execute("ALTER TABLE big ADD COLUMN junk int DEFAULT boom(), ALTER COLUMN x TYPE bigint"),
        "changing-column-type",
    );
    assert!(e.detail().unwrap_or_default().contains("rewrite"), "{e:?}");
    assert_eq!(relfilenode(&mut c, "big"), before, "the table was rewritten");
    assert_eq!(column_type(&mut c, "big", "x"), "integer");
    assert!(!column_exists(&mut c, "big", "junk"));
    let calls: i64 = c.query_one("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM boom_calls", &[]).unwrap().get(0);
    assert_eq!(calls, 0, "the guard called the user's function while judging");
    let row = audit_of(&tag);
    assert_eq!(row.decision, "rejected");
    assert!(row.rules().contains(&"changing-column-type".to_string()), "{row:?}");
    assert_eq!(row.session_role, APP_ROLE);
}

/// A default of thousands of terms makes the guard's analysis reach the stack depth limit
/// (checked as PostgreSQL checks it, check_stack_depth) before PostgreSQL's own would;
/// whichever way it goes, the type change beside it must not run unjudged.
#[test]
fn a_default_too_deep_to_analyze_cannot_open_the_guard() {
    let tag = format!("adv_deep_{}", unique_tag());
    let mut c = app(&tag);
    let before = relfilenode(&mut c, "big");
    let terms = vec!["1"; 4080].join("+");
    let e = expect_db_error(c.batch_execute(&format!("ALTER TABLE big ADD COLUMN deep int DEFAULT {terms}, ALTER COLUMN x TYPE bigint")));
    assert!(
        e.message().starts_with("changing-column-type: ")
            || e.message().starts_with("pg_migration_guard could not judge this ALTER TABLE statement"),
        "{e:?}"
    );
    assert_eq!(relfilenode(&mut c, "big"), before, "the table was rewritten");
    assert_eq!(column_type(&mut c, "big", "x"), "integer");
    let row = audit_of(&tag);
    assert_eq!(row.decision, "rejected", "{row:?}");
}

/// While another session holds ACCESS EXCLUSIVE on the table, a `TYPE ... USING` cannot be
/// analyzed without queueing for the lock: the guard used to call that "undecided" and let
/// the rewrite through. It is now a judging failure: refused at once with 55P03 naming the
/// cause and the setting, audited as rejected; the table is not rewritten afterwards.
#[test]
fn a_fact_that_cannot_be_decided_without_waiting_rejects_the_statement() {
    let tag = format!("adv_using_{}", unique_tag());
    let mut holder = app(&format!("{tag}_holder"));
    let mut c = app(&tag);
    let before = relfilenode(&mut c, "big");
    holder.batch_execute("BEGIN; LOCK TABLE big IN ACCESS EXCLUSIVE MODE").unwrap();
    let started = Instant::now();
    let e = expect_db_error(c.batch_execute("ALTER TABLE big ALTER COLUMN x TYPE bigint USING x::bigint"));
    holder.batch_execute("COMMIT").unwrap();
    assert_eq!(e.code(), &SqlState::LOCK_NOT_AVAILABLE, "{e:?}");
    assert!(e.message().starts_with("pg_migration_guard could not judge this ALTER TABLE statement: "), "{e:?}");
    assert!(e.detail().unwrap_or_default().contains("on_judging_error is reject"), "{e:?}");
    assert!(e.hint().unwrap_or_default().contains("on_judging_error = allow"), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "the guard waited for the lock: {:?}", started.elapsed());
    assert_eq!(relfilenode(&mut c, "big"), before, "the table was rewritten");
    assert_eq!(column_type(&mut c, "big", "x"), "integer");
    let row = audit_of(&tag);
    assert_eq!(row.decision, "rejected");
    assert!(row.message.as_deref().unwrap_or_default().contains("could not judge"), "{row:?}");
}

/// A table whose name is not valid UTF-8 (an SQL_ASCII database stores any byte) used to
/// make the guard panic on the name and let the statement through. Names are bytes now:
/// CREATE INDEX on it is judged and rejected like any other, and audited. The statements go
/// through psql with client_encoding SQL_ASCII (the bytes then pass unchanged both ways);
/// the checks read nothing but counts and the audit row, whose texts the guard stored as
/// valid UTF-8.
#[test]
fn a_name_that_is_not_utf8_is_judged_like_any_other() {
    setup();
    let mut root = connect("A");
    let exists: bool = root.query_one("SELECT EXISTS (SELECT FROM pg_database WHERE datname = 'advdb_ascii')", &[]).unwrap().get(0);
    if !exists {
        root.batch_execute(&format!(
            "CREATE DATABASE advdb_ascii OWNER {APP_ROLE} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
        ))
        .unwrap();
    }
    let (mut su, _) = connect_db("A", "advdb_ascii", "postgres", "adversarial-setup");
    su.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_migration_guard").unwrap();
    let tag = format!("adv_ascii_{}", unique_tag());
    // "caf" + the byte 0xE9 ("café" in Latin-1, invalid as UTF-8) + a unique suffix.
    let mut name = b"caf\xe9_".to_vec();
    name.extend_from_slice(tag.as_bytes());
    let psql = |app: &str, sql: &[u8]| {
        let mut script = b"\\set ON_ERROR_STOP 1\n".to_vec();
        script.extend_from_slice(sql);
        let mut child = std::process::Command::new("psql")
            .args(["-X", "-q", "-h", "/tmp", "-p", &port("A").to_string(), "-U", APP_ROLE, "-d", "advdb_ascii"])
            .env("PGCLIENTENCODING", "SQL_ASCII")
            .env("PGAPPNAME", app)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run psql");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&script).unwrap();
        child.wait_with_output().unwrap()
    };
    let mut create = b"CREATE TABLE \"".to_vec();
    create.extend_from_slice(&name);
    create.extend_from_slice(b"\" AS SELECT g AS id, g % 100 AS x FROM generate_series(1, 60000) g;\n");
    let out = psql(&format!("{tag}_setup"), &create);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut index = b"CREATE INDEX ON \"".to_vec();
    index.extend_from_slice(&name);
    index.extend_from_slice(b"\" (x);\n");
    let out = psql(&tag, &index);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "CREATE INDEX ran");
    assert!(stderr.contains("ERROR:  require-concurrent-index-creation: "), "{stderr}");
    let indexes: i64 = su
        .query_one(
            "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relname::text LIKE $1",
            &[&format!("%{tag}")],
        )
        .unwrap()
        .get(0);
    assert_eq!(indexes, 0, "the index was built");
    let rows = wait_for_audit(&mut su, "application_name = $1", &[&tag], 1);
    assert_eq!(rows[0].decision, "rejected");
    assert_eq!(rows[0].rules(), vec!["require-concurrent-index-creation".to_string()]);
}

// ---------------------------------------------------------------------------------------
// 2. The guard's internal queries cannot be hijacked
// ---------------------------------------------------------------------------------------

/// With `=` operators of its own for (text,text), (oid,integer) and (oid,oid) that are
/// always true, in a schema first on its search_path, the role used to make the guard's
/// "cancel the blocking autovacuum" query select every backend holding a relation lock in
/// the cluster and send it a cancel. The guard now decides from PostgreSQL's own process
/// state, and its queries resolve operators in pg_catalog only: a superuser's query in
/// another database and the role's own reader run undisturbed; the ALTER fails with 55P03
/// once its budget is spent, naming the reader; its row exists.
#[test]
fn own_operators_on_the_search_path_cannot_hijack_the_guards_queries() {
    let tag = format!("adv_ops_{}", unique_tag());
    let mut cleanup = Cleanup::new("A");
    cleanup.push(format!("ALTER ROLE {APP_ROLE} IN DATABASE {DB} RESET pg_migration_guard.lock_retry_budget"));
    let mut root = connect("A");
    root.batch_execute(&format!("ALTER ROLE {APP_ROLE} IN DATABASE {DB} SET pg_migration_guard.lock_retry_budget = '1s'")).unwrap();
    let mut setup = app(&format!("{tag}_setup"));
    setup
        .batch_execute(
            "DROP SCHEMA IF EXISTS evil CASCADE; CREATE SCHEMA evil; \
         CREATE FUNCTION evil.t(text, text) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true'; \
         CREATE FUNCTION evil.t(oid, integer) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true'; \
         CREATE FUNCTION evil.t(oid, oid) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true'; \
         CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.t); \
         CREATE OPERATOR evil.= (LEFTARG = oid, RIGHTARG = integer, FUNCTION = evil.t); \
         CREATE OPERATOR evil.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = evil.t)",
        )
        .unwrap();
    let mut c = app(&tag);
    c.batch_execute("SET search_path = evil, pg_catalog, public").unwrap();
    // The operators are the ones the session's queries now resolve.
    let hijacked: bool = c.query_one("SELECT 'a'::text = 'b'::text", &[]).unwrap().get(0);
    assert!(hijacked, "the session's own = operator is not in effect");
    // A superuser's query in another database, holding a relation lock.
    let mut bystander = connect_as("A", "postgres", &format!("{tag}_bystander")).0;
    let bystander_pid = backend_pid(&mut bystander);
    bystander.batch_execute("CREATE TABLE IF NOT EXISTS adv_bystander (a int)").unwrap();
    let bystander_thread = std::thread::spawn(move || {
        bystander.batch_execute("BEGIN; LOCK TABLE adv_bystander IN ACCESS SHARE MODE; SELECT pg_sleep(4); COMMIT")
    });
    // The role's own reader, holding ACCESS SHARE on the table the ALTER wants.
    let mut reader = app(&format!("{tag}_reader"));
    let reader_pid = backend_pid(&mut reader);
    reader.batch_execute("BEGIN; SELECT count(*) FROM public.big").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let e = expect_db_error(c.batch_execute("ALTER TABLE public.big ADD COLUMN hijack int"));
    assert_eq!(e.code(), &SqlState::LOCK_NOT_AVAILABLE, "{e:?}");
    assert!(e.detail().unwrap_or_default().contains(&format!("{tag}_reader")), "the blocker list is missing the reader: {e:?}");
    // Neither was cancelled: the reader's transaction is still usable, the bystander's
    // sleep finished normally.
    reader.batch_execute("SELECT 1; COMMIT").expect("the reader was cancelled");
    bystander_thread.join().unwrap().expect("the superuser's query in another database was cancelled");
    assert!(!column_exists(&mut c, "public.big", "hijack"));
    let row = audit_of(&tag);
    assert_eq!(row.error_sqlstate.as_deref(), Some("55P03"), "{row:?}");
    let log = std::fs::read(std::env::var("PGMG_LOG_A").expect("PGMG_LOG_A")).expect("read the server log");
    let log = String::from_utf8_lossy(&log);
    for pid in [reader_pid, bystander_pid] {
        assert!(!log.contains(&format!("sending cancel to blocking autovacuum PID {pid}\n")), "the guard signalled pid {pid}");
    }
    drop(cleanup);
}

// ---------------------------------------------------------------------------------------
// 3. Long query strings
// ---------------------------------------------------------------------------------------

/// Judging each statement of a multi-statement string reads that statement only, not the
/// rest of the string: 3,000 judged statements followed by a 20 MB comment take about as
/// long with the guard as without it (it used to measure the whole remaining string for
/// every statement: seconds instead of a fraction of one). A ratio, not a time: the same
/// string in the same session with the guard on and off.
#[test]
fn a_long_multi_statement_string_is_judged_in_linear_time() {
    setup();
    let (mut c, _) = connect_db("A", DB, "postgres", &format!("adv_long_{}", unique_tag()));
    c.batch_execute("CREATE TABLE IF NOT EXISTS long_target (a int)").unwrap();
    let mut sql = "COMMENT ON TABLE long_target IS 'x';\n".repeat(3000);
    sql.push_str("/*");
    sql.push_str(&"x".repeat(20 * 1024 * 1024));
    sql.push_str("*/");
    let time = |c: &mut Client, mode: &str| {
        c.batch_execute(&format!("SET pg_migration_guard.mode = {mode}")).unwrap();
        let t = Instant::now();
        c.batch_execute(&sql).unwrap();
        t.elapsed()
    };
    time(&mut c, "off"); // warm-up
    let off = time(&mut c, "off");
    let on = time(&mut c, "enforce");
    assert!(on < off * 5 + Duration::from_secs(2), "guard {on:?} vs none {off:?}: judging is not linear in the string's length");
}

// ---------------------------------------------------------------------------------------
// 4. The library a server loads is never rewritten
// ---------------------------------------------------------------------------------------

/// The test clusters load the guard from a private, content-addressed copy (placed first in
/// dynamic_library_path by scripts/common.sh), never from the system's library directory,
/// which the project never writes: installing a new build cannot rewrite a file a running
/// server has mapped.
#[test]
fn the_server_maps_a_private_copy_of_the_library() {
    let mut c = connect("A");
    let pid = backend_pid(&mut c);
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("read the backend's memory map (run as root)");
    let mapped: Vec<&str> =
        maps.lines().filter_map(|l| l.split_whitespace().nth(5)).filter(|p| p.ends_with("/pg_migration_guard.so")).collect();
    assert!(!mapped.is_empty(), "pg_migration_guard.so is not mapped by backend {pid}");
    for path in &mapped {
        assert!(!path.starts_with("/usr/lib/postgresql/"), "the server maps the system's copy: {path}");
    }
    let libpath: String = c.query_one("SHOW dynamic_library_path", &[]).unwrap().get(0);
    let dir = std::path::Path::new(mapped[0]).parent().unwrap().to_str().unwrap().to_string();
    assert!(libpath.starts_with(&dir), "dynamic_library_path {libpath} does not start with {dir}");
}

// ---------------------------------------------------------------------------------------
// 5. Annotation-like text that is not a comment
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
// 6. exempt_roles: self-made memberships
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

/// The grantors PostgreSQL recorded for `member`'s memberships in `role`, sorted: on
/// PostgreSQL 16 and later a membership may have several rows, one per grantor.
fn grantors(admin: &mut Client, role: &str, member: &str) -> Vec<String> {
    admin
        .query(
            "SELECT grantor::regrole::text FROM pg_auth_members WHERE roleid = $1::text::regrole AND member = $2::text::regrole \
             ORDER BY 1",
            &[&role, &member],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// On PostgreSQL 16 and later a CREATEROLE role may grant only the roles it holds ADMIN
/// OPTION on (check_role_membership_authorization in src/backend/commands/user.c).
fn createrole_grants_any_role(admin: &mut Client) -> bool {
    server_version_num(admin) < 160000
}

/// adv_app (CREATEROLE) grants itself the listed adv_migrator: PostgreSQL 15 counts it as a
/// member, the guard does not, because adv_app is the grantor. PostgreSQL 16 and later
/// refuse the GRANT.
#[test]
fn self_granted_membership_in_a_listed_role_does_not_exempt() {
    setup();
    let mut cleanup = Cleanup::new("A");
    cleanup.push("REVOKE adv_migrator FROM adv_app");
    let tag = unique_tag();
    let mut admin = admin();
    let grant = adv_app(&format!("adv-selfgrant-setup-{tag}")).batch_execute("GRANT adv_migrator TO adv_app");
    if createrole_grants_any_role(&mut admin) {
        grant.unwrap();
        assert_eq!(grantor(&mut admin, "adv_migrator", "adv_app"), "adv_app");
        let member: bool = admin.query_one("SELECT pg_has_role('adv_app', 'adv_migrator', 'MEMBER')", &[]).unwrap().get(0);
        assert!(member, "PostgreSQL counts adv_app as a member of adv_migrator");
    } else {
        assert_eq!(expect_db_error(grant).code(), &SqlState::INSUFFICIENT_PRIVILEGE);
        assert_eq!(grantors(&mut admin, "adv_migrator", "adv_app"), Vec::<String>::new());
    }

    let app = format!("adv-selfgrant-{tag}");
    let index = format!("adv_selfgrant_{tag}");
    let sql = format!("CREATE INDEX {index} ON adv.big (v)");
    assert_rejected_and_audited(adv_app(&app).batch_execute(&sql), &app, &index, &sql, "adv_app");
}

/// adv_app creates adv_future_group, listed but not existing yet, and grants it to itself.
/// On PostgreSQL 16 and later CREATE ROLE also gave adv_app ADMIN OPTION on it, recorded as
/// granted by the bootstrap superuser but without INHERIT or SET: that row does not exempt
/// either.
#[test]
fn created_and_self_granted_listed_role_does_not_exempt() {
    setup();
    let mut cleanup = Cleanup::new("A");
    cleanup.push("DROP ROLE IF EXISTS adv_future_group");
    let tag = unique_tag();
    adv_app(&format!("adv-futuregroup-setup-{tag}"))
        .batch_execute("CREATE ROLE adv_future_group NOLOGIN; GRANT adv_future_group TO adv_app")
        .unwrap();
    let mut admin = admin();
    if createrole_grants_any_role(&mut admin) {
        assert_eq!(grantor(&mut admin, "adv_future_group", "adv_app"), "adv_app");
    } else {
        assert_eq!(grantors(&mut admin, "adv_future_group", "adv_app"), ["adv_app", "postgres"]);
    }

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
    f.batch_execute(&format!("CREATE TABLE {table} AS SELECT g AS id, g % 100 AS v FROM generate_series(1, 60000) g")).unwrap();
    let index = format!("adv_future_{tag}");
    let sql = format!("CREATE INDEX {index} ON {table} (v)");
    assert_rejected_and_audited(f.batch_execute(&sql), &app, &index, &sql, "adv_future");
    // (adv_future owns a table in advdb; the next run's setup drops the database, then it.)
}

// ---------------------------------------------------------------------------------------
// 6. exempt_roles: memberships the superuser granted
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

    let grant = adv_app(&format!("adv-chain-setup-{tag}")).batch_execute("GRANT adv_team TO adv_app");
    if createrole_grants_any_role(&mut admin) {
        grant.unwrap();
        assert_eq!(grantor(&mut admin, "adv_team", "adv_app"), "adv_app");
        let app = format!("adv-chain-self-{tag}");
        let index = format!("adv_chain_self_{tag}");
        let sql = format!("CREATE INDEX {index} ON adv.big (v)");
        assert_rejected_and_audited(adv_app(&app).batch_execute(&sql), &app, &index, &sql, "adv_app");
    } else {
        // PostgreSQL 16 and later refuse the self-grant; the pg_test
        // exempt_roles_follow_chains_of_superuser_grants_only covers a link granted by a
        // non-superuser holding ADMIN OPTION.
        assert_eq!(expect_db_error(grant).code(), &SqlState::INSUFFICIENT_PRIVILEGE);
    }

    admin.batch_execute("REVOKE adv_team FROM adv_app; GRANT adv_team TO adv_app").unwrap();
    assert_eq!(grantor(&mut admin, "adv_team", "adv_app"), "postgres");
    let app = format!("adv-chain-granted-{tag}");
    let index = format!("adv_chain_granted_{tag}");
    adv_app(&app).batch_execute(&format!("CREATE INDEX {index} ON adv.big (v)")).unwrap();
    assert_ran_and_audited(&app, &index, "exempt");
}

// =======================================================================================
// 7. The audit cannot be silenced or lose a decision
// =======================================================================================
//
// What the owner can set for its database (`ALTER DATABASE ... SET`, `ALTER ROLE ... IN
// DATABASE ... SET`, `ALLOW_CONNECTIONS false`) must not silence the audit writer; a
// database whose writer cannot deliver must not hold up another database's statements or
// rows; oversized fields must not cost a decision its row; a reason with newlines must not
// split the LOG line. Every test restarts advdb's audit writer after changing a setting
// (settings are read when a process connects), and undoes what it set with a [`Cleanup`]
// guard, also on failure.

/// One test at a time: they change settings of the same database.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The shared setup, then any setting an interrupted earlier run of these tests left on
/// advdb reset (the database's exempt_roles set again). Returns a superuser connection to
/// advdb (opened before the test changes anything, so that the settings under test do not
/// apply to it).
fn audit_setup() -> Client {
    setup();
    let mut admin = connect("A");
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {DB} ALLOW_CONNECTIONS true; ALTER DATABASE {DB} RESET ALL; \
             ALTER DATABASE {DB} SET pg_migration_guard.exempt_roles = '{EXEMPT_ROLES}'; \
             ALTER ROLE {APP_ROLE} IN DATABASE {DB} RESET ALL; ALTER ROLE {APP_ROLE} RESET ALL"
        ))
        .unwrap();
    connect_db("A", DB, "postgres", "adv-setup").0
}

/// Undoes every setting the tests make on advdb.
fn cleanup() -> Cleanup {
    let mut c = Cleanup::new("A");
    c.push(format!("ALTER DATABASE {DB} ALLOW_CONNECTIONS true"));
    c.push(format!("ALTER DATABASE {DB} RESET ALL"));
    c.push(format!("ALTER DATABASE {DB} SET pg_migration_guard.exempt_roles = '{EXEMPT_ROLES}'"));
    c.push(format!("ALTER ROLE {APP_ROLE} IN DATABASE {DB} RESET ALL"));
    c
}

/// A session of adv_app in advdb. It reads the database's and its role's settings when it
/// connects.
fn app_session(app: &str) -> (Client, std::sync::Arc<Mutex<Vec<postgres::error::DbError>>>) {
    connect_db("A", DB, APP_ROLE, app)
}

/// Terminates advdb's audit writers and waits until they are gone, so that the next record
/// starts a writer that reads the settings in force now.
fn restart_writers(su: &mut Client) {
    let sql = format!("SELECT count(*) FROM pg_stat_activity WHERE backend_type = '{AUDIT_WRITER}' AND datname = '{DB}'");
    su.batch_execute(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = '{AUDIT_WRITER}' AND datname = '{DB}'"
    ))
    .unwrap();
    let start = Instant::now();
    while su.query_one(&sql, &[]).unwrap().get::<_, i64>(0) > 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "advdb's audit writer did not exit after pg_terminate_backend");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn public_index_exists(su: &mut Client, index: &str) -> bool {
    su.query_one("SELECT to_regclass($1) IS NOT NULL", &[&format!("public.{index}")]).unwrap().get(0)
}

/// `CREATE INDEX` on advdb's big table through `c` (a session of adv_app named `app`) is
/// rejected, the index does not exist, and the rejection has exactly one audit row.
fn assert_index_rejected_and_audited(su: &mut Client, c: &mut Client, app: &str) {
    let index = format!("adv_idx_{}", unique_tag());
    let sql = format!("CREATE INDEX {index} ON public.big (x)");
    expect_rejected(c.batch_execute(&sql), INDEX_RULE);
    assert!(!public_index_exists(su, &index), "the rejected statement created {index}");
    let rows = wait_for_audit(su, "application_name = $1 AND statement = $2", &[&app, &sql], 1);
    let row = &rows[0];
    assert_eq!(
        (row.decision.as_str(), row.rules(), row.session_role.as_str(), row.database.as_str()),
        ("rejected", vec![INDEX_RULE.to_string()], APP_ROLE, DB),
        "{row:#?}"
    );
}

// ---------------------------------------------------------------------------------------
// The database owner's settings do not reach the writer
// ---------------------------------------------------------------------------------------

/// `ALTER DATABASE advdb SET default_transaction_read_only = on` (the owner keeps its own
/// sessions writable with a role setting) made every audit insert fail.
#[test]
fn read_only_database_setting_does_not_silence_the_audit() {
    let _serial = serial();
    let mut su = audit_setup();
    let _cleanup = cleanup();
    let tag = unique_tag();
    let (mut owner, _) = app_session(&format!("adv-ro-setup-{tag}"));
    owner
        .batch_execute(&format!(
            "ALTER DATABASE {DB} SET default_transaction_read_only = on; \
             ALTER ROLE {APP_ROLE} IN DATABASE {DB} SET default_transaction_read_only = off"
        ))
        .unwrap();
    restart_writers(&mut su);
    let app = format!("adv-ro-{tag}");
    let (mut c, _) = app_session(&app);
    assert_index_rejected_and_audited(&mut su, &mut c, &app);
}

/// `ALTER DATABASE advdb SET role = 'adv_app'` made the writer insert as adv_app, which has
/// no privilege on the audit table.
#[test]
fn role_database_setting_does_not_silence_the_audit() {
    let _serial = serial();
    let mut su = audit_setup();
    let _cleanup = cleanup();
    let tag = unique_tag();
    let (mut owner, _) = app_session(&format!("adv-role-setup-{tag}"));
    owner.batch_execute(&format!("ALTER DATABASE {DB} SET role = '{APP_ROLE}'")).unwrap();
    restart_writers(&mut su);
    let app = format!("adv-role-{tag}");
    let (mut c, _) = app_session(&app);
    assert_index_rejected_and_audited(&mut su, &mut c, &app);
}

/// `exit_on_error = on` on top of a read-only database turned every failed insert into a
/// FATAL, and the writer into a restart loop holding the records.
#[test]
fn exit_on_error_database_setting_does_not_silence_the_audit() {
    let _serial = serial();
    let mut su = audit_setup();
    let _cleanup = cleanup();
    let tag = unique_tag();
    let (mut owner, _) = app_session(&format!("adv-exit-setup-{tag}"));
    owner
        .batch_execute(&format!(
            "ALTER DATABASE {DB} SET default_transaction_read_only = on; \
             ALTER DATABASE {DB} SET exit_on_error = on; \
             ALTER ROLE {APP_ROLE} IN DATABASE {DB} SET default_transaction_read_only = off; \
             ALTER ROLE {APP_ROLE} IN DATABASE {DB} SET exit_on_error = off"
        ))
        .unwrap();
    restart_writers(&mut su);
    let app = format!("adv-exit-{tag}");
    let (mut c, _) = app_session(&app);
    assert_index_rejected_and_audited(&mut su, &mut c, &app);
}

/// `ALTER DATABASE advdb SET session_authorization = 'adv_app'` made the writer's session
/// user adv_app (a background worker's authenticated user is a superuser, which may take
/// any session authorization), with no privilege on the audit table.
#[test]
fn session_authorization_database_setting_does_not_silence_the_audit() {
    let _serial = serial();
    let mut su = audit_setup();
    let _cleanup = cleanup();
    let tag = unique_tag();
    let (mut owner, _) = app_session(&format!("adv-sessauth-setup-{tag}"));
    owner.batch_execute(&format!("ALTER DATABASE {DB} SET session_authorization = '{APP_ROLE}'")).unwrap();
    restart_writers(&mut su);
    let app = format!("adv-sessauth-{tag}");
    let (mut c, _) = app_session(&app);
    assert_index_rejected_and_audited(&mut su, &mut c, &app);
}

/// `ALTER DATABASE advdb ALLOW_CONNECTIONS false` (run by the owner from another database:
/// PostgreSQL refuses it for the current one) kept the writer out, a FATAL per attempt,
/// restarted without pause. Sessions opened before keep working, and so must the audit.
#[test]
fn allow_connections_false_does_not_silence_the_audit() {
    let _serial = serial();
    let mut su = audit_setup();
    let _cleanup = cleanup();
    let tag = unique_tag();
    let app = format!("adv-conn-{tag}");
    let (mut c, _) = app_session(&app);
    let (mut owner, _) = connect_as("A", APP_ROLE, &format!("adv-conn-setup-{tag}"));
    owner.batch_execute(&format!("ALTER DATABASE {DB} ALLOW_CONNECTIONS false")).unwrap();
    restart_writers(&mut su);
    assert_index_rejected_and_audited(&mut su, &mut c, &app);
}

// ---------------------------------------------------------------------------------------
// A stalled database does not hold up the others
// ---------------------------------------------------------------------------------------

/// Fills the audit queue with records of database `adv_stall`, whose audit writer cannot
/// deliver (`stall` makes it so, through the superuser connection to `postgres` and the
/// one to adv_stall), then checks that a statement in advdb — with a record as large as
/// theirs, a quarter of the queue — neither waits for space nor loses its row: the oldest
/// records of adv_stall make room, with a LOG line saying so.
fn assert_stalled_database_does_not_hold_up_advdb(what: &str, stall: impl FnOnce(&mut Client, &mut Client)) {
    let _serial = serial();
    let mut su = audit_setup();
    let mut cleanup = cleanup();
    let tag = unique_tag();
    let mut admin = connect("A");
    admin.batch_execute("DROP DATABASE IF EXISTS adv_stall WITH (FORCE)").unwrap();
    admin.batch_execute("CREATE DATABASE adv_stall").unwrap();
    cleanup.push("DROP DATABASE IF EXISTS adv_stall WITH (FORCE)");
    let stall_oid: u32 =
        admin.query_one("SELECT oid FROM pg_database WHERE datname = 'adv_stall'", &[]).unwrap().get::<_, postgres::types::Oid>(0);
    let (mut filler, filler_notices) = connect_db("A", "adv_stall", "postgres", &format!("adv-stall-{what}-{tag}"));
    filler.batch_execute("CREATE EXTENSION pg_migration_guard").unwrap();
    stall(&mut admin, &mut filler);

    // Records of about a quarter of the queue each (their statements are cut to fit): after
    // six, there is no room for another one. Neither do these statements wait for room: the
    // oldest records of their own, stalled, database make it.
    let (size, dropped_before): (i64, i64) = {
        let r = su.query_one("SELECT size_bytes, dropped_records FROM pg_migration_guard.audit_queue_status()", &[]).unwrap();
        (r.get(0), r.get(1))
    };
    let padding = "x".repeat(size as usize / 3);
    for k in 0..6 {
        let started = Instant::now();
        filler.batch_execute(&format!("CREATE TABLE adv_stall_{k}_{tag} (a int) -- {padding}")).unwrap();
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "statement {k} in adv_stall waited {took:?} for space in the queue");
    }
    assert_eq!(warning_messages(&filler_notices), Vec::<String>::new(), "records of adv_stall were not queued");
    let used: i64 = su.query_one("SELECT used_bytes FROM pg_migration_guard.audit_queue_status()", &[]).unwrap().get(0);
    assert!(size - used < size / 4, "the queue should be full of adv_stall's records: {used} of {size} bytes in use");

    // advdb's statement takes the place of adv_stall's oldest record at once.
    let app = format!("adv-stalled-{what}-{tag}");
    let (mut c, notices) = app_session(&app);
    let started = Instant::now();
    let index = format!("adv_idx_{}", unique_tag());
    let sql = format!("CREATE INDEX {index} ON public.big (x) -- {padding}");
    expect_rejected(c.batch_execute(&sql), INDEX_RULE);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "the statement in {DB} waited {took:?} for space in the queue");
    assert_eq!(warning_messages(&notices), Vec::<String>::new(), "the record of the statement in {DB} was not queued");
    let rows = wait_for_audit(&mut su, "application_name = $1", &[&app], 1);
    assert_eq!(rows[0].decision, "rejected");
    assert!(rows[0].statement.starts_with(&format!("CREATE INDEX {index} ON public.big (x) -- xxx")), "{}", &rows[0].statement[..80]);

    let dropped_after: i64 = su.query_one("SELECT dropped_records FROM pg_migration_guard.audit_queue_status()", &[]).unwrap().get(0);
    assert!(dropped_after > dropped_before, "no record was discarded: dropped_records stayed {dropped_before}");
    let discard_line = format!("of database with OID {stall_oid} to make room in the full audit queue");
    let start = Instant::now();
    while !server_log_entries("A")
        .iter()
        .any(|e| e.head.starts_with("LOG:  pg_migration_guard: discarded ") && e.head.contains(&discard_line))
    {
        assert!(start.elapsed() < Duration::from_secs(10), "no LOG line saying that records of adv_stall were discarded");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// adv_stall is marked invalid (as an interrupted DROP DATABASE leaves a database): its
/// writer fails at every start, and the launcher marks the database stalled while it
/// backs off.
#[test]
fn a_database_whose_writer_cannot_start_does_not_hold_up_another() {
    assert_stalled_database_does_not_hold_up_advdb("invalid", |admin, _| {
        admin.batch_execute("UPDATE pg_database SET datconnlimit = -2 WHERE datname = 'adv_stall'").unwrap();
    });
}

/// A session of adv_stall holds an ACCESS EXCLUSIVE lock on its audit table (what a
/// database owner's VACUUM FULL of it takes): the writer's insert times out, it hands the
/// batch back and marks the database stalled.
#[test]
fn a_database_whose_audit_table_is_locked_does_not_hold_up_another() {
    let holder = std::sync::Arc::new(Mutex::new(None::<Client>));
    let keep = holder.clone();
    assert_stalled_database_does_not_hold_up_advdb("locked", move |_, _| {
        let (mut h, _) = connect_db("A", "adv_stall", "postgres", "adv-stall-lock-holder");
        h.batch_execute("BEGIN; LOCK TABLE pg_migration_guard.audit_log IN ACCESS EXCLUSIVE MODE").unwrap();
        *keep.lock().unwrap() = Some(h);
    });
    drop(holder);
}

// ---------------------------------------------------------------------------------------
// Oversized fields and log injection
// ---------------------------------------------------------------------------------------

fn marker(total: usize) -> String {
    format!(" [truncated by pg_migration_guard: {total} bytes in all]")
}

/// A 300 kB override reason lets the statement through (overridden) and its row exists,
/// with the reason cut to 2048 bytes and marked.
#[test]
fn a_300_kb_override_reason_gets_a_row() {
    let _serial = serial();
    let mut su = audit_setup();
    let tag = unique_tag();
    let app = format!("adv-reason-{tag}");
    let (mut c, _) = app_session(&app);
    let reason = "r".repeat(300_000);
    let index = format!("adv_idx_{tag}");
    let sql = format!("-- pg_migration_guard:allow {INDEX_RULE} reason=\"{reason}\"\nCREATE INDEX {index} ON public.big (x)");
    c.batch_execute(&sql).unwrap();
    assert!(public_index_exists(&mut su, &index));
    su.batch_execute(&format!("SET pg_migration_guard.mode = off; DROP INDEX public.{index}; RESET pg_migration_guard.mode")).unwrap();
    let rows = wait_for_audit(&mut su, "application_name = $1", &[&app], 1);
    let row = &rows[0];
    assert_eq!((row.decision.as_str(), row.overridden_rules.clone()), ("overridden", Some(vec![INDEX_RULE.to_string()])), "{row:#?}");
    let kept = row.override_reason.as_deref().unwrap();
    assert_eq!(kept.len(), 2048);
    assert!(kept.starts_with("rrrr") && kept.ends_with(&marker(300_000)), "{}", &kept[kept.len() - 80..]);
    assert!(row.statement.starts_with("-- pg_migration_guard:allow") && row.statement.ends_with(&marker(sql.len())));
}

/// An annotation naming a 300 kB rule id is rejected (22023, the message quotes the id) and
/// the rejection has its row, with the message cut to 2048 bytes and marked.
#[test]
fn a_300_kb_bogus_rule_id_gets_a_row() {
    let _serial = serial();
    let mut su = audit_setup();
    let tag = unique_tag();
    let app = format!("adv-ruleid-{tag}");
    let (mut c, _) = app_session(&app);
    let index = format!("adv_idx_{tag}");
    let bogus = "x".repeat(300_000);
    let sql = format!("-- pg_migration_guard:allow {bogus} reason=\"r\"\nCREATE INDEX {index} ON public.big (x)");
    let e = expect_db_error(c.batch_execute(&sql));
    assert_eq!(e.code(), &SqlState::INVALID_PARAMETER_VALUE, "{}", e.message().chars().take(200).collect::<String>());
    assert!(!public_index_exists(&mut su, &index));
    let rows = wait_for_audit(&mut su, "application_name = $1", &[&app], 1);
    let row = &rows[0];
    assert_eq!(row.decision, "rejected");
    let message = row.message.as_deref().unwrap();
    assert_eq!(message.len(), 2048);
    assert!(
        message.starts_with("unknown rule \"xxxx") && message.ends_with(&marker(e.message().len())),
        "{}",
        &message[message.len() - 80..]
    );
}

/// A reason with a newline followed by what looks like another log line stays inside the
/// decision's LOG line, escaped: the line is one line.
#[test]
fn a_reason_with_newlines_stays_on_one_log_line() {
    let _serial = serial();
    let mut su = audit_setup();
    let tag = unique_tag();
    let app = format!("adv-newline-{tag}");
    let (mut c, _) = app_session(&app);
    let index = format!("adv_idx_{tag}");
    let forged = format!("2026-01-01 00:00:00.000 UTC [1] LOG:  forged_{tag}");
    let sql = format!(
        "/* pg_migration_guard:allow {INDEX_RULE} reason=\"maintenance\r\n{forged}\tend\" */ CREATE INDEX {index} ON public.big (x)"
    );
    c.batch_execute(&sql).unwrap();
    su.batch_execute(&format!("SET pg_migration_guard.mode = off; DROP INDEX public.{index}; RESET pg_migration_guard.mode")).unwrap();
    let head = format!("LOG:  pg_migration_guard: overridden CREATE INDEX: {INDEX_RULE} overridden: ");
    let escaped = format!("reason=\"maintenance\\r\\n{forged}\\tend\" */ CREATE INDEX {index} ON public.big (x)");
    let start = Instant::now();
    let entry = loop {
        let found = server_log_entries("A").into_iter().find(|e| e.head.starts_with(&head) && e.head.contains(&index));
        if let Some(e) = found {
            break e;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no LOG line for {sql:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!entry.text.contains('\n') && !entry.text.contains('\r'), "the LOG line spans several lines:\n{}", entry.text);
    assert!(entry.head.ends_with(&escaped), "{}", entry.head);
}

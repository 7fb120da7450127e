//! Security of the guard over real connections, as the non-superuser `sec_app`:
//! the audit table cannot be written, read (except through `migration_guard_reader`) or
//! dropped; no policy setting can be changed and the hook cannot be unloaded; the guard's
//! privileged functions cannot be called; DDL is judged whichever route it takes (DO,
//! functions, SECURITY DEFINER, procedures, SQL functions, dynamic EXECUTE, triggers,
//! multi-statement strings, the extended protocol, a prepared statement); break-glass
//! overrides; exemptions by role (evaluated for the session user) and by application_name.
//!
//! Each test recreates schema `sec_t` (owned by `sec_app`) with `sec_t.big` (60000 rows,
//! about 2 MB: `CREATE INDEX` on it is rejected) and finds its audit rows by unique
//! application names and statement texts. Global state a test changes (ALTER SYSTEM,
//! ALTER ROLE ... SET, role grants) is undone by a [`Cleanup`] guard, also on failure.

use pg_migration_guard_integration::*;

const INDEX_RULE: &str = "require-concurrent-index-creation";
const TYPE_RULE: &str = "changing-column-type";
const DENIED: SqlState = SqlState::INSUFFICIENT_PRIVILEGE;
const INVALID_VALUE: SqlState = SqlState::INVALID_PARAMETER_VALUE;

/// Roles `sec_app` (LOGIN, the application), `sec_migrator` (NOLOGIN, the role listed in
/// exempt_roles), `sec_auditor` (LOGIN, made a reader by the reader test); schema
/// `sec_t` owned by sec_app with `sec_t.big` (~2 MB) and `sec_t.tiny`, both owned by sec_app.
fn setup() -> Client {
    let mut admin = connect("A");
    ensure_role(&mut admin, "sec_app", "LOGIN");
    ensure_role(&mut admin, "sec_migrator", "NOLOGIN");
    ensure_role(&mut admin, "sec_auditor", "LOGIN");
    admin
        .batch_execute(
            "SET pg_migration_guard.mode = off; \
             DROP SCHEMA IF EXISTS sec_t CASCADE; \
             CREATE SCHEMA sec_t AUTHORIZATION sec_app; \
             CREATE TABLE sec_t.big AS SELECT g AS id, g % 100 AS v FROM generate_series(1, 60000) g; \
             CREATE TABLE sec_t.tiny (a int); \
             ALTER TABLE sec_t.big OWNER TO sec_app; \
             ALTER TABLE sec_t.tiny OWNER TO sec_app; \
             ALTER ROLE sec_app RESET ALL; \
             REVOKE sec_migrator FROM sec_app; \
             RESET pg_migration_guard.mode",
        )
        .unwrap();
    let size: i64 = admin.query_one("SELECT pg_relation_size('sec_t.big')", &[]).unwrap().get(0);
    assert!(size > 1024 * 1024, "sec_t.big must be above the 1MB small-table threshold, is {size} bytes");
    admin
}

fn sec_app(app: &str) -> Client {
    connect_as("A", "sec_app", app).0
}

fn index_sql(index: &str) -> String {
    format!("CREATE INDEX {index} ON sec_t.big (v)")
}

fn exists(c: &mut Client, relation: &str) -> bool {
    c.query_one("SELECT to_regclass($1) IS NOT NULL", &[&relation]).unwrap().get(0)
}

fn column_type(c: &mut Client) -> String {
    c.query_one("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'sec_t.big'::regclass AND attname = 'v'", &[])
        .unwrap()
        .get(0)
}

fn expect_code(result: Result<impl std::fmt::Debug, postgres::Error>, code: &SqlState, what: &str) -> postgres::error::DbError {
    let e = expect_db_error(result);
    assert_eq!(e.code(), code, "{what}: {e:?}");
    e
}

// ---------------------------------------------------------------------------------------
// The audit table
// ---------------------------------------------------------------------------------------

/// A write the role has no privilege for must fail: 42501 on the table; on the view, 42501
/// or — when PostgreSQL cannot update the view at all, which its rewriter reports before
/// the privilege check — 0A000.
fn expect_write_refused(c: &mut Client, sql: &str) {
    let e = expect_db_error(c.batch_execute(sql));
    let on_view = !sql.contains("audit_log") && ["INSERT", "UPDATE", "DELETE"].iter().any(|dml| sql.starts_with(dml));
    assert!(e.code() == &DENIED || (on_view && e.code() == &SqlState::FEATURE_NOT_SUPPORTED), "{sql}: {e:?}");
}

fn forged_rows(admin: &mut Client, tag: &str) -> i64 {
    admin.query_one("SELECT count(*) FROM pg_migration_guard.audit_log WHERE statement = $1", &[&format!("forged {tag}")]).unwrap().get(0)
}

/// A role without a grant can neither write the audit (INSERT, UPDATE, DELETE, TRUNCATE,
/// through the table or the view) nor read it, nor drop or alter the table.
#[test]
fn non_superuser_cannot_write_read_or_drop_the_audit_table() {
    let mut admin = setup();
    let tag = unique_tag();
    let mut c = sec_app(&format!("sec-table-{tag}"));
    for sql in [
        format!("INSERT INTO pg_migration_guard.audit_log (statement, command_tag, decision) VALUES ('forged {tag}', 'CREATE TABLE', 'allowed')"),
        format!("INSERT INTO pg_migration_guard.audit (statement, command_tag, decision) VALUES ('forged {tag}', 'CREATE TABLE', 'allowed')"),
        "UPDATE pg_migration_guard.audit_log SET decision = 'allowed' WHERE decision = 'rejected'".to_string(),
        "UPDATE pg_migration_guard.audit SET decision = 'allowed' WHERE decision = 'rejected'".to_string(),
        "DELETE FROM pg_migration_guard.audit_log".to_string(),
        "DELETE FROM pg_migration_guard.audit".to_string(),
        "TRUNCATE pg_migration_guard.audit_log".to_string(),
        "SELECT count(*) FROM pg_migration_guard.audit_log".to_string(),
        "SELECT count(*) FROM pg_migration_guard.audit".to_string(),
        "DROP TABLE pg_migration_guard.audit_log".to_string(),
        "ALTER TABLE pg_migration_guard.audit_log DISABLE TRIGGER ALL".to_string(),
        "DROP VIEW pg_migration_guard.audit".to_string(),
    ] {
        expect_write_refused(&mut c, &sql);
    }
    assert_eq!(forged_rows(&mut admin, &tag), 0);
}

/// Who holds privileges on the audit: only its (superuser) owner and
/// `migration_guard_reader` (NOLOGIN), which has SELECT and nothing else, on the table and
/// on the view; no column-level grants. (The reader role cannot be called
/// `pg_migration_guard_reader`: role names starting with `pg_` are reserved.)
#[test]
fn only_the_reader_role_has_a_privilege_on_the_audit() {
    let mut admin = setup();
    let can_login: bool = admin.query_one("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'migration_guard_reader'", &[]).unwrap().get(0);
    assert!(!can_login, "migration_guard_reader must be NOLOGIN");
    for relation in ["pg_migration_guard.audit_log", "pg_migration_guard.audit"] {
        let owner_is_superuser: bool = admin
            .query_one(
                "SELECT r.rolsuper FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE c.oid = $1::text::regclass",
                &[&relation],
            )
            .unwrap()
            .get(0);
        assert!(owner_is_superuser, "{relation} must be owned by a superuser");
        let grants: Vec<(String, String)> = admin
            .query(
                "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END, a.privilege_type \
                 FROM pg_class c, aclexplode(c.relacl) a \
                 WHERE c.oid = $1::text::regclass AND a.grantee <> c.relowner ORDER BY 1, 2",
                &[&relation],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(grants, vec![("migration_guard_reader".to_string(), "SELECT".to_string())], "grants on {relation}");
        let column_grants: i64 = admin
            .query_one("SELECT count(*) FROM pg_attribute WHERE attrelid = $1::text::regclass AND attacl IS NOT NULL", &[&relation])
            .unwrap()
            .get(0);
        assert_eq!(column_grants, 0, "column-level grants on {relation}");
    }
}

/// A member of `migration_guard_reader` reads every session's rows through the table and
/// the view, and can neither write them nor purge them.
#[test]
fn reader_role_member_can_read_the_audit_but_not_write_it() {
    let mut admin = setup();
    let tag = unique_tag();
    let app = format!("sec-reader-{tag}");
    let index = format!("sec_reader_{tag}");
    expect_rejected(sec_app(&app).batch_execute(&index_sql(&index)), INDEX_RULE);
    wait_for_audit(&mut admin, "application_name = $1", &[&app], 1);

    admin.batch_execute("GRANT migration_guard_reader TO sec_auditor").unwrap();
    let (mut auditor, _) = connect_as("A", "sec_auditor", &format!("sec-auditor-{tag}"));
    for relation in ["pg_migration_guard.audit_log", "pg_migration_guard.audit"] {
        let rows = auditor
            .query(
                &format!("SELECT decision, session_role::text FROM {relation} WHERE application_name = $1 AND statement = $2"),
                &[&app, &index_sql(&index)],
            )
            .unwrap_or_else(|e| panic!("the reader must be able to read {relation}: {e}"));
        let got: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(got, vec![("rejected".to_string(), "sec_app".to_string())], "{relation}");
    }
    let status: Option<String> =
        auditor.query_one("SELECT transaction_status FROM pg_migration_guard.audit WHERE application_name = $1", &[&app]).unwrap().get(0);
    assert_eq!(status.as_deref(), Some("aborted"));

    for sql in [
        format!("INSERT INTO pg_migration_guard.audit_log (statement, command_tag, decision) VALUES ('forged {tag}', 'CREATE TABLE', 'allowed')"),
        format!("INSERT INTO pg_migration_guard.audit (statement, command_tag, decision) VALUES ('forged {tag}', 'CREATE TABLE', 'allowed')"),
        format!("UPDATE pg_migration_guard.audit_log SET decision = 'allowed' WHERE application_name = '{app}'"),
        format!("UPDATE pg_migration_guard.audit SET decision = 'allowed' WHERE application_name = '{app}'"),
        format!("DELETE FROM pg_migration_guard.audit_log WHERE application_name = '{app}'"),
        format!("DELETE FROM pg_migration_guard.audit WHERE application_name = '{app}'"),
        "TRUNCATE pg_migration_guard.audit_log".to_string(),
        "SELECT pg_migration_guard.purge_audit_log(interval '0')".to_string(),
    ] {
        expect_write_refused(&mut auditor, &sql);
    }
    assert_eq!(forged_rows(&mut admin, &tag), 0);
    // The row is untouched.
    let rows = audit_rows(&mut admin, "application_name = $1", &[&app]);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].decision, "rejected");
}

// ---------------------------------------------------------------------------------------
// Settings, the hook, the guard's functions
// ---------------------------------------------------------------------------------------

/// Every `pg_migration_guard.*` setting (including exempt_roles, application_name_pattern
/// and allow_overrides) is refused to a non-superuser whichever way it tries: SET, SET
/// LOCAL, set_config(), ALTER ROLE itself SET, a function's SET clause (CREATE and ALTER
/// FUNCTION), and connection options. The guard still rejects afterwards.
#[test]
fn non_superuser_cannot_change_any_guard_setting() {
    let mut admin = setup();
    let settings: Vec<(String, String)> = admin
        .query(
            // (the server-start-only audit_queue_size cannot be changed by anyone: 55P02)
            "SELECT name, current_setting(name) FROM pg_settings WHERE starts_with(name, 'pg_migration_guard.') \
             AND context <> 'postmaster' ORDER BY name",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let names: Vec<&str> = settings.iter().map(|(n, _)| n.as_str()).collect();
    for required in [
        "pg_migration_guard.mode",
        "pg_migration_guard.rule_levels",
        "pg_migration_guard.lock_timeout_policy",
        "pg_migration_guard.small_table_threshold",
        "pg_migration_guard.exempt_roles",
        "pg_migration_guard.application_name_pattern",
        "pg_migration_guard.allow_overrides",
    ] {
        assert!(names.contains(&required), "setting {required} missing from {names:?}");
    }
    let contexts: Vec<(String, String)> = admin
        .query(
            // audit_queue_size sizes shared memory: server start only (postgresql.conf), which
            // no session can change at all.
            "SELECT name, context FROM pg_settings WHERE starts_with(name, 'pg_migration_guard.') \
             AND context NOT IN ('superuser', 'postmaster')",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(contexts.is_empty(), "every guard setting must be PGC_SUSET (or server start only): {contexts:?}");

    let tag = unique_tag();
    let mut c = sec_app(&format!("sec-settings-{tag}"));
    for (name, value) in &settings {
        let value = value.replace('\'', "''");
        for sql in [
            format!("SET {name} TO '{value}'"),
            format!("BEGIN; SET LOCAL {name} TO '{value}'"),
            format!("SELECT set_config('{name}', '{value}', false)"),
            format!("ALTER ROLE sec_app SET {name} TO '{value}'"),
        ] {
            let e = expect_code(c.batch_execute(&sql), &DENIED, &sql);
            assert!(e.message().contains(name.as_str()), "{sql}: {e:?}");
            c.batch_execute("ROLLBACK").unwrap();
        }
    }
    let e = expect_code(
        c.batch_execute(&format!(
            "CREATE FUNCTION sec_t.sneaky_{tag}() RETURNS void LANGUAGE sql SET pg_migration_guard.mode = off AS $f$SELECT 1$f$"
        )),
        &DENIED,
        "CREATE FUNCTION ... SET pg_migration_guard.mode = off",
    );
    assert!(e.message().contains("pg_migration_guard.mode"), "{e:?}");
    c.batch_execute(&format!("CREATE FUNCTION sec_t.plain_{tag}() RETURNS void LANGUAGE sql AS $f$SELECT 1$f$")).unwrap();
    expect_code(
        c.batch_execute(&format!("ALTER FUNCTION sec_t.plain_{tag}() SET pg_migration_guard.mode = off")),
        &DENIED,
        "ALTER FUNCTION ... SET pg_migration_guard.mode = off",
    );
    let role_settings: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_db_role_setting WHERE setrole = 'sec_app'::regrole \
             AND EXISTS (SELECT FROM unnest(setconfig) s WHERE starts_with(s, 'pg_migration_guard.'))",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(role_settings, 0, "no guard setting may have been stored for sec_app");

    for option in [
        "-c pg_migration_guard.mode=off",
        "-c pg_migration_guard.exempt_roles=sec_app",
        "-c pg_migration_guard.application_name_pattern=nothing",
        "-c pg_migration_guard.allow_overrides=on",
    ] {
        let err = Config::new()
            .host("/tmp")
            .port(port("A"))
            .user("sec_app")
            .dbname("postgres")
            .options(option)
            .connect(NoTls)
            .err()
            .unwrap_or_else(|| panic!("a sec_app connection with {option} must fail"));
        assert_eq!(err.as_db_error().map(|e| e.code()), Some(&DENIED), "{option}: {err}");
    }

    expect_rejected(c.batch_execute(&index_sql(&format!("sec_settings_{tag}"))), INDEX_RULE);
}

/// A non-superuser cannot take the hook away: session_preload_libraries (SET and connection
/// option), LOAD of the library (from $libdir or $libdir/plugins), ALTER SYSTEM, DROP
/// EXTENSION all fail, and a dangerous statement is still rejected and audited afterwards.
#[test]
fn non_superuser_cannot_disable_the_hook() {
    let mut admin = setup();
    let tag = unique_tag();
    let app = format!("sec-hook-{tag}");
    let mut c = sec_app(&app);
    for sql in [
        "SET session_preload_libraries = 'pg_stat_statements'",
        "SET session_preload_libraries = ''",
        "LOAD 'pg_migration_guard'",
        "ALTER SYSTEM SET pg_migration_guard.mode = off",
        "ALTER SYSTEM SET shared_preload_libraries = ''",
        "DROP EXTENSION pg_migration_guard",
    ] {
        expect_code(c.batch_execute(sql), &DENIED, sql);
    }
    // Not installed there, so it fails too (undefined file); either way nothing changes.
    expect_db_error(c.batch_execute("LOAD '$libdir/plugins/pg_migration_guard'"));

    let err = Config::new()
        .host("/tmp")
        .port(port("A"))
        .user("sec_app")
        .dbname("postgres")
        .options("-c session_preload_libraries=pg_stat_statements")
        .connect(NoTls)
        .err()
        .expect("a sec_app connection with -c session_preload_libraries must fail");
    assert_eq!(err.as_db_error().map(|e| e.code()), Some(&DENIED), "{err}");

    let index = format!("sec_hook_{tag}");
    expect_rejected(c.batch_execute(&index_sql(&index)), INDEX_RULE);
    let rows = wait_for_audit(&mut admin, "application_name = $1 AND command_tag = 'CREATE INDEX'", &[&app], 1);
    assert_eq!(rows[0].decision, "rejected");
    assert!(!exists(&mut admin, &format!("sec_t.{index}")));
    let extension: i64 = admin.query_one("SELECT count(*) FROM pg_extension WHERE extname = 'pg_migration_guard'", &[]).unwrap().get(0);
    assert_eq!(extension, 1);
}

/// The guard must not lock a table for a role that may not alter it: PostgreSQL checks
/// ownership before it locks (RangeVarCallbackForAlterRelation), so a non-owner's ALTER
/// TABLE fails at once with 42501 even while another session reads the table. If the
/// guard's lock-queue protection took the statement's ACCESS EXCLUSIVE lock ahead first,
/// any role could queue for (and briefly hold) exclusive locks on any table, the audit
/// table included; here that would end in 55P03 after the session's 2 s lock_timeout.
#[test]
fn non_owner_ddl_takes_no_lock_on_another_roles_table() {
    let _admin = setup();
    let mut reader = connect("A");
    reader.batch_execute("BEGIN; SELECT count(*) FROM pg_migration_guard.audit_log WHERE id < 0").unwrap();
    let mut c = sec_app("sec-non-owner");
    c.batch_execute("SET lock_timeout = '2s'").unwrap();
    let e = expect_code(
        c.batch_execute("ALTER TABLE pg_migration_guard.audit_log ADD COLUMN forged text"),
        &DENIED,
        "a non-owner's ALTER TABLE of the audit table",
    );
    assert!(e.message().contains("must be owner"), "{e:?}");
    reader.batch_execute("COMMIT").unwrap();
}

/// judge_timing() and purge_audit_log() are refused to a non-superuser, and no other
/// function of the guard it may execute could write (no route to forge or erase rows).
#[test]
fn non_superuser_cannot_execute_the_guards_privileged_functions() {
    let mut admin = setup();
    let mut c = sec_app("sec-functions");
    for sql in [
        "SELECT * FROM pg_migration_guard.judge_timing('CREATE INDEX x ON sec_t.big (v)', 1)",
        "SELECT pg_migration_guard.purge_audit_log(interval '0')",
        "SELECT pg_migration_guard.purge_audit_log(interval '100 years')",
    ] {
        expect_code(c.batch_execute(sql), &DENIED, sql);
    }
    // The functions of the guard sec_app may run that could write: volatile ones that are
    // SECURITY DEFINER or written in C (a C function is not bound by table privileges and
    // could feed the audit writer directly). Only lock_targets() (it takes no lock and runs
    // nothing) and relations_size() (it reads relation sizes and reltuples through the
    // relcache and the files' sizes, takes no lock, writes nothing; the coordinator of a
    // Citus cluster calls it on the workers as the migration's own role) and check() (it
    // judges a script without running it, in subtransactions it rolls back; it writes no
    // audit row and assigns no transaction id, and a relation the role has no privilege on
    // is `unknown` without its sizes) are expected; a new one must be reviewed before it is
    // added here.
    let executable: Vec<String> = admin
        .query(
            "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang \
             WHERE p.pronamespace = 'pg_migration_guard'::regnamespace \
             AND has_function_privilege('sec_app', p.oid, 'EXECUTE') \
             AND p.provolatile = 'v' AND (p.prosecdef OR l.lanname IN ('c', 'internal')) ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let unexpected: Vec<&String> = executable
        .iter()
        .filter(|f| {
            !["pg_migration_guard.lock_targets(", "pg_migration_guard.relations_size(", "pg_migration_guard.\"check\"("]
                .iter()
                .any(|allowed| f.starts_with(allowed))
        })
        .collect();
    assert!(unexpected.is_empty(), "functions of the guard executable by any role: {unexpected:?}");
}

// ---------------------------------------------------------------------------------------
// No bypass: every route to a DDL statement is judged
// ---------------------------------------------------------------------------------------

/// Runs `attempt` in a new sec_app session named `app`; it must end in the guard's
/// rejection of `CREATE INDEX <index> ON sec_t.big (v)`, the index must not exist, and the
/// audit must hold exactly one CREATE INDEX row for the session: that statement's own text,
/// rejected, the rule and message the client saw, run by sec_app as `effective_role`, in an
/// aborted transaction.
fn assert_route_rejected(app: &str, index: &str, effective_role: &str, attempt: impl FnOnce(&mut Client) -> Result<(), postgres::Error>) {
    let mut admin = connect("A");
    let mut c = sec_app(app);
    let e = expect_rejected(attempt(&mut c), INDEX_RULE);
    assert!(!exists(&mut admin, &format!("sec_t.{index}")), "the index must not have been built");
    let rows = wait_for_audit(&mut admin, "application_name = $1 AND command_tag = 'CREATE INDEX'", &[&app], 1);
    let r = &rows[0];
    assert_eq!(r.statement, index_sql(index), "{r:#?}");
    assert_eq!(r.decision, "rejected", "{r:#?}");
    assert_eq!(r.rules(), vec![INDEX_RULE.to_string()], "{r:#?}");
    assert_eq!(r.message.as_deref(), Some(e.message()), "{r:#?}");
    assert_eq!((r.session_role.as_str(), r.effective_role.as_str()), ("sec_app", effective_role), "{r:#?}");
    assert_eq!(r.transaction_status.as_deref(), Some("aborted"), "{r:#?}");
}

/// DO block.
#[test]
fn route_do_block_is_judged() {
    setup();
    let tag = unique_tag();
    let index = format!("sec_do_{tag}");
    assert_route_rejected(&format!("sec-do-{tag}"), &index, "sec_app", |c| {
        c.batch_execute(&format!("DO $d$BEGIN {}; END$d$", index_sql(&index)))
    });
}

/// PL/pgSQL function.
#[test]
fn route_plpgsql_function_is_judged() {
    setup();
    let tag = unique_tag();
    let index = format!("sec_fn_{tag}");
    assert_route_rejected(&format!("sec-fn-{tag}"), &index, "sec_app", |c| {
        c.batch_execute(&format!(
            "CREATE FUNCTION sec_t.fn_{tag}() RETURNS void LANGUAGE plpgsql AS $f$BEGIN {}; END$f$",
            index_sql(&index)
        ))
        .unwrap();
        c.batch_execute(&format!("SELECT sec_t.fn_{tag}()"))
    });
}

/// SECURITY DEFINER function owned by a superuser, called by sec_app: judged, and recorded
/// with the function owner as effective role.
#[test]
fn route_security_definer_function_is_judged() {
    let mut admin = setup();
    let tag = unique_tag();
    let index = format!("sec_definer_{tag}");
    admin
        .batch_execute(&format!(
            "CREATE FUNCTION sec_t.definer_{tag}() RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $f$BEGIN {}; END$f$",
            index_sql(&index)
        ))
        .unwrap();
    assert_route_rejected(&format!("sec-definer-{tag}"), &index, "postgres", |c| c.batch_execute(&format!("SELECT sec_t.definer_{tag}()")));
}

/// LANGUAGE sql function whose body is the DDL statement.
#[test]
fn route_sql_function_is_judged() {
    setup();
    let tag = unique_tag();
    let index = format!("sec_sqlfn_{tag}");
    assert_route_rejected(&format!("sec-sqlfn-{tag}"), &index, "sec_app", |c| {
        c.batch_execute(&format!("CREATE FUNCTION sec_t.sqlfn_{tag}() RETURNS void LANGUAGE sql AS $f${}$f$", index_sql(&index))).unwrap();
        c.batch_execute(&format!("SELECT sec_t.sqlfn_{tag}()"))
    });
}

/// PL/pgSQL dynamic SQL: EXECUTE of a statement built at run time.
#[test]
fn route_dynamic_execute_is_judged() {
    setup();
    let tag = unique_tag();
    let index = format!("sec_dyn_{tag}");
    assert_route_rejected(&format!("sec-dyn-{tag}"), &index, "sec_app", |c| {
        c.batch_execute(&format!("DO $d$BEGIN EXECUTE format('CREATE INDEX %I ON sec_t.big (v)', '{index}'); END$d$"))
    });
}

/// Extended protocol (Parse/Bind/Execute of the statement text).
#[test]
fn route_extended_protocol_is_judged() {
    setup();
    let tag = unique_tag();
    let index = format!("sec_ext_{tag}");
    assert_route_rejected(&format!("sec-ext-{tag}"), &index, "sec_app", |c| c.execute(&index_sql(&index), &[]).map(|_| ()));
}

/// A trigger function running DDL when a row is inserted.
#[test]
fn route_trigger_function_is_judged() {
    let mut admin = setup();
    let tag = unique_tag();
    let index = format!("sec_trg_{tag}");
    assert_route_rejected(&format!("sec-trg-{tag}"), &index, "sec_app", |c| {
        c.batch_execute(&format!(
            "CREATE FUNCTION sec_t.trg_{tag}() RETURNS trigger LANGUAGE plpgsql AS $f$BEGIN {}; RETURN NEW; END$f$; \
             CREATE TRIGGER trg_{tag} BEFORE INSERT ON sec_t.tiny FOR EACH ROW EXECUTE FUNCTION sec_t.trg_{tag}()",
            index_sql(&index)
        ))
        .unwrap();
        c.batch_execute("INSERT INTO sec_t.tiny VALUES (1)")
    });
    let rows: i64 = admin.query_one("SELECT count(*) FROM sec_t.tiny", &[]).unwrap().get(0);
    assert_eq!(rows, 0, "the INSERT failed with its trigger");
}

/// A procedure that commits between statements (CALL, non-atomic context): the statement
/// before the COMMIT is committed and recorded as such, the rejected one after it is
/// judged, recorded, and its transaction aborted.
#[test]
fn route_procedure_is_judged_across_its_own_commits() {
    let mut admin = setup();
    let tag = unique_tag();
    let app = format!("sec-proc-{tag}");
    let index = format!("sec_proc_{tag}");
    let create = format!("CREATE TABLE sec_t.proc_made_{tag} (a int)");
    let mut c = sec_app(&app);
    c.batch_execute(&format!(
        "CREATE PROCEDURE sec_t.proc_{tag}() LANGUAGE plpgsql AS $p$BEGIN {create}; COMMIT; {}; END$p$",
        index_sql(&index)
    ))
    .unwrap();
    let e = expect_rejected(c.batch_execute(&format!("CALL sec_t.proc_{tag}()")), INDEX_RULE);
    assert!(exists(&mut admin, &format!("sec_t.proc_made_{tag}")), "the procedure's first transaction committed");
    assert!(!exists(&mut admin, &format!("sec_t.{index}")));

    let rows = wait_for_audit(&mut admin, "application_name = $1 AND command_tag IN ('CREATE TABLE', 'CREATE INDEX')", &[&app], 2);
    let made = row_for(&rows, &create);
    assert_eq!(made.decision, "allowed");
    assert_eq!(made.transaction_status.as_deref(), Some("committed"), "{made:#?}");
    let rejected = row_for(&rows, &index_sql(&index));
    assert_eq!(rejected.decision, "rejected");
    assert_eq!(rejected.message.as_deref(), Some(e.message()));
    assert_eq!(rejected.transaction_status.as_deref(), Some("aborted"), "{rejected:#?}");
    assert_ne!(made.xid, rejected.xid, "the COMMIT started a new transaction");
}

/// A multi-statement simple-protocol string: the statement before the rejected one is
/// recorded (aborted with it), the rejected one is recorded, the one after never ran and has
/// no row.
#[test]
fn route_multi_statement_string_is_judged_statement_by_statement() {
    let mut admin = setup();
    let tag = unique_tag();
    let app = format!("sec-multi-{tag}");
    let index = format!("sec_multi_{tag}");
    let before = format!("CREATE TABLE sec_t.multi_a_{tag} (a int)");
    let after = format!("CREATE TABLE sec_t.multi_b_{tag} (a int)");
    let mut c = sec_app(&app);
    let e = expect_rejected(c.batch_execute(&format!("{before}; {}; {after}", index_sql(&index))), INDEX_RULE);
    assert!(!exists(&mut admin, &format!("sec_t.multi_a_{tag}")));
    assert!(!exists(&mut admin, &format!("sec_t.multi_b_{tag}")));

    let rows = wait_for_audit(&mut admin, "application_name = $1", &[&app], 2);
    let first = row_for(&rows, &before);
    assert_eq!((first.decision.as_str(), first.transaction_status.as_deref()), ("allowed", Some("aborted")), "{first:#?}");
    let rejected = row_for(&rows, &index_sql(&index));
    assert_eq!(rejected.decision, "rejected");
    assert_eq!(rejected.message.as_deref(), Some(e.message()));
    assert_eq!(rejected.transaction_status.as_deref(), Some("aborted"));
    assert!(rows.iter().all(|r| r.statement != after), "the statement after the rejection never ran: {rows:#?}");
}

/// A named prepared statement (extended protocol) executed twice: judged at each execution,
/// two rows, each in its own aborted transaction.
#[test]
fn route_prepared_statement_is_judged_at_every_execution() {
    let mut admin = setup();
    let tag = unique_tag();
    let app = format!("sec-prepared-{tag}");
    let index = format!("sec_prepared_{tag}");
    let mut c = sec_app(&app);
    let statement = c.prepare(&index_sql(&index)).unwrap();
    let first = expect_rejected(c.execute(&statement, &[]), INDEX_RULE);
    let second = expect_rejected(c.execute(&statement, &[]), INDEX_RULE);
    assert_eq!(first.message(), second.message());
    assert!(!exists(&mut admin, &format!("sec_t.{index}")));

    let rows = wait_for_audit(&mut admin, "application_name = $1 AND command_tag = 'CREATE INDEX'", &[&app], 2);
    for r in &rows {
        assert_eq!(r.statement, index_sql(&index), "{r:#?}");
        assert_eq!(r.decision, "rejected", "{r:#?}");
        assert_eq!(r.transaction_status.as_deref(), Some("aborted"), "{r:#?}");
    }
    assert_ne!(rows[0].xid, rows[1].xid, "two executions, two transactions: {rows:#?}");
}

// ---------------------------------------------------------------------------------------
// Break-glass overrides
// ---------------------------------------------------------------------------------------

/// An annotation naming the rule lets that statement through: a line comment before the
/// statement, and a block comment inside it naming a list of rules. The client is warned
/// that the rule was overridden; the audit row says 'overridden' with the rules and the
/// reason. Any role may use it while allow_overrides is on (the default).
#[test]
fn override_annotation_lets_the_named_rule_through_and_is_audited() {
    let mut admin = setup();
    let tag = unique_tag();
    let app = format!("sec-override-{tag}");
    let (mut c, notices) = connect_as("A", "sec_app", &app);

    let retype = "-- pg_migration_guard:allow changing-column-type reason=\"maintenance window\"\n\
                  ALTER TABLE sec_t.big ALTER COLUMN v TYPE bigint";
    c.batch_execute(retype).unwrap();
    assert_eq!(column_type(&mut admin), "bigint");
    {
        let n = notices.lock().unwrap();
        let warned = n.iter().any(|w| {
            let text = format!("{} {} {}", w.message(), w.detail().unwrap_or(""), w.hint().unwrap_or("")).to_lowercase();
            w.severity() == "WARNING" && text.contains("overrid") && text.contains(TYPE_RULE)
        });
        assert!(warned, "the client must be warned that {TYPE_RULE} was overridden: {n:?}");
    }

    let index = format!("sec_override_{tag}");
    c.batch_execute(&format!(
        "CREATE INDEX {index} /* pg_migration_guard:allow {INDEX_RULE},{TYPE_RULE} reason=\"index build during the night\" */ ON sec_t.big (v)"
    ))
    .unwrap();
    assert!(exists(&mut admin, &format!("sec_t.{index}")));

    let rows = wait_for_audit(&mut admin, "application_name = $1 AND command_tag IN ('ALTER TABLE', 'CREATE INDEX')", &[&app], 2);
    let r = rows.iter().find(|r| r.command_tag == "ALTER TABLE").unwrap();
    assert_eq!(r.decision, "overridden", "{r:#?}");
    assert!(r.rules().contains(&TYPE_RULE.to_string()), "{r:#?}");
    assert_eq!(r.overridden_rules, Some(vec![TYPE_RULE.to_string()]), "{r:#?}");
    assert_eq!(r.override_reason.as_deref(), Some("maintenance window"), "{r:#?}");
    assert_eq!(r.session_role, "sec_app");
    assert_eq!(r.rewrote_table, Some(true), "the overridden statement ran and rewrote sec_t.big: {r:#?}");
    assert_eq!(r.transaction_status.as_deref(), Some("committed"));

    let r = rows.iter().find(|r| r.command_tag == "CREATE INDEX").unwrap();
    assert_eq!(r.decision, "overridden", "{r:#?}");
    let overridden = r.overridden_rules.clone().unwrap_or_default();
    assert!(overridden.contains(&INDEX_RULE.to_string()), "{r:#?}");
    assert!(overridden.iter().all(|o| o == INDEX_RULE || o == TYPE_RULE), "only named rules: {r:#?}");
    assert_eq!(r.override_reason.as_deref(), Some("index build during the night"), "{r:#?}");
    assert_eq!(r.transaction_status.as_deref(), Some("committed"));
}

/// An annotation does not cover a rule it does not name: the statement is rejected by that
/// rule and audited as rejected.
#[test]
fn override_does_not_cover_rules_it_does_not_name() {
    let mut admin = setup();
    let tag = unique_tag();
    let app = format!("sec-override-other-{tag}");
    let mut c = sec_app(&app);
    let sql =
        format!("/* pg_migration_guard:allow {INDEX_RULE} reason=\"wrong rule named\" */ ALTER TABLE sec_t.big ALTER COLUMN v TYPE bigint");
    let e = expect_rejected(c.batch_execute(&sql), TYPE_RULE);
    assert_eq!(column_type(&mut admin), "integer");
    let rows = wait_for_audit(&mut admin, "application_name = $1 AND command_tag = 'ALTER TABLE'", &[&app], 1);
    assert_eq!(rows[0].decision, "rejected", "{:#?}", rows[0]);
    assert_eq!(rows[0].message.as_deref(), Some(e.message()));
    assert!(rows[0].overridden_rules.clone().unwrap_or_default().is_empty(), "{:#?}", rows[0]);
}

/// An annotation with an unknown rule name, or without a reason, is an error (22023) and
/// the statement does not run.
#[test]
fn override_with_an_unknown_rule_or_without_a_reason_is_an_error() {
    let mut admin = setup();
    let mut c = sec_app("sec-override-invalid");
    let typo = "-- pg_migration_guard:allow changing-colum-type reason=\"typo in the rule name\"\n\
                ALTER TABLE sec_t.big ALTER COLUMN v TYPE bigint";
    let e = expect_code(c.batch_execute(typo), &INVALID_VALUE, "unknown rule in the annotation");
    assert!(
        format!("{} {}", e.message(), e.detail().unwrap_or("")).contains("changing-colum-type"),
        "the error must name the unknown rule: {e:?}"
    );
    let no_reason = "-- pg_migration_guard:allow changing-column-type\nALTER TABLE sec_t.big ALTER COLUMN v TYPE bigint";
    expect_code(c.batch_execute(no_reason), &INVALID_VALUE, "annotation without a reason");
    assert_eq!(column_type(&mut admin), "integer");
}

/// With allow_overrides off — SET by a superuser in its session, or ALTER ROLE ... SET for
/// the application role — the annotation is ignored: the statement is rejected as usual,
/// with a DETAIL naming allow_overrides, and sec_app cannot turn it back on.
#[test]
fn override_is_not_honoured_when_allow_overrides_is_off() {
    let mut admin = setup();
    let mut cleanup = Cleanup::new("A");
    cleanup.push("ALTER ROLE sec_app RESET pg_migration_guard.allow_overrides");
    let tag = unique_tag();
    let annotated = "-- pg_migration_guard:allow changing-column-type reason=\"maintenance window\"\n\
                     ALTER TABLE sec_t.big ALTER COLUMN v TYPE bigint";

    let su_app = format!("sec-no-override-su-{tag}");
    // (sec_migrator needs USAGE on the schema for the statement to be looked up at all.)
    admin.batch_execute("GRANT USAGE ON SCHEMA sec_t TO sec_migrator").unwrap();
    cleanup.push("REVOKE USAGE ON SCHEMA sec_t FROM sec_migrator");
    let (mut su, _) = connect_as("A", "postgres", &su_app);
    su.batch_execute("SET pg_migration_guard.allow_overrides = off").unwrap();
    let e = expect_rejected(su.batch_execute(annotated), TYPE_RULE);
    assert!(e.detail().is_some_and(|d| d.contains("allow_overrides")), "DETAIL must mention allow_overrides: {e:?}");
    assert_eq!(column_type(&mut admin), "integer");
    let rows = wait_for_audit(&mut admin, "application_name = $1 AND command_tag = 'ALTER TABLE'", &[&su_app], 1);
    assert_eq!(rows[0].decision, "rejected", "{:#?}", rows[0]);

    admin.batch_execute("ALTER ROLE sec_app SET pg_migration_guard.allow_overrides = off").unwrap();
    let app = format!("sec-no-override-{tag}");
    let mut c = sec_app(&app);
    let e = expect_rejected(c.batch_execute(annotated), TYPE_RULE);
    assert!(e.detail().is_some_and(|d| d.contains("allow_overrides")), "DETAIL must mention allow_overrides: {e:?}");
    expect_code(c.batch_execute("SET pg_migration_guard.allow_overrides = on"), &DENIED, "sec_app turning overrides back on");
    expect_rejected(c.batch_execute(annotated), TYPE_RULE);
    assert_eq!(column_type(&mut admin), "integer");
    let rows = wait_for_audit(&mut admin, "application_name = $1 AND command_tag = 'ALTER TABLE'", &[&app], 2);
    assert!(rows.iter().all(|r| r.decision == "rejected"), "{rows:#?}");
}

// ---------------------------------------------------------------------------------------
// Exemptions
// ---------------------------------------------------------------------------------------

/// exempt_roles set in the configuration (ALTER SYSTEM) takes effect on reload, for new
/// sessions and for one already open: a session whose user is a member of a listed role is
/// not judged — its dangerous statement runs and is audited as 'exempt'. Before the setting
/// and after it is reset, the same role is judged.
#[test]
fn exempt_roles_from_the_configuration_exempt_members_after_a_reload() {
    let mut admin = setup();
    let mut cleanup = Cleanup::new("A");
    cleanup.push("ALTER SYSTEM RESET pg_migration_guard.exempt_roles");
    cleanup.push("SELECT pg_reload_conf()");
    cleanup.push("REVOKE sec_migrator FROM sec_app");
    let tag = unique_tag();
    admin.batch_execute("GRANT sec_migrator TO sec_app").unwrap();

    let early_app = format!("sec-exempt-early-{tag}");
    let mut early = sec_app(&early_app);
    let judged = format!("sec_exempt_before_{tag}");
    expect_rejected(early.batch_execute(&index_sql(&judged)), INDEX_RULE);

    admin.batch_execute("ALTER SYSTEM SET pg_migration_guard.exempt_roles = 'sec_migrator'").unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    // Once a session sees the new value the postmaster has reloaded and signalled every
    // backend (PostgreSQL 15 reloads inside the postmaster's SIGHUP handler).
    wait_for_setting(&mut admin, "pg_migration_guard.exempt_roles", "sec_migrator");
    std::thread::sleep(std::time::Duration::from_millis(200));

    let app = format!("sec-exempt-{tag}");
    let mut c = sec_app(&app);
    let exempt_new = format!("sec_exempt_new_{tag}");
    c.batch_execute(&index_sql(&exempt_new)).unwrap();
    let exempt_early = format!("sec_exempt_early_{tag}");
    early.batch_execute(&index_sql(&exempt_early)).unwrap();
    assert!(exists(&mut admin, &format!("sec_t.{exempt_new}")));
    assert!(exists(&mut admin, &format!("sec_t.{exempt_early}")));

    admin.batch_execute("ALTER SYSTEM RESET pg_migration_guard.exempt_roles").unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    wait_for_setting(&mut admin, "pg_migration_guard.exempt_roles", "");
    let late_app = format!("sec-exempt-late-{tag}");
    let judged_again = format!("sec_exempt_after_{tag}");
    expect_rejected(sec_app(&late_app).batch_execute(&index_sql(&judged_again)), INDEX_RULE);

    let apps = vec![early_app, app, late_app];
    let rows = wait_for_audit(&mut admin, "application_name = ANY ($1) AND command_tag = 'CREATE INDEX'", &[&apps], 4);
    for (index, decision) in [(judged, "rejected"), (exempt_new, "exempt"), (exempt_early, "exempt"), (judged_again, "rejected")] {
        let r = row_for(&rows, &index_sql(&index));
        assert_eq!(r.decision, decision, "{r:#?}");
        assert_eq!(r.session_role, "sec_app");
    }
}

/// Exemption follows the SESSION user, not the current user. With exempt_roles =
/// 'sec_migrator,postgres' for sec_app's sessions: a SECURITY DEFINER function owned by the
/// listed superuser `postgres`, called by sec_app (not a member), is judged; once sec_app is
/// a member of sec_migrator, its sessions are exempt, inside the function too. A superuser
/// session (postgres, not a member of sec_migrator — superuser status does not count as
/// membership) that does SET ROLE sec_migrator is still judged.
#[test]
fn exempt_roles_is_evaluated_for_the_session_user_not_the_current_user() {
    let mut admin = setup();
    let mut cleanup = Cleanup::new("A");
    cleanup.push("ALTER ROLE sec_app RESET pg_migration_guard.exempt_roles");
    cleanup.push("REVOKE sec_migrator FROM sec_app");
    let tag = unique_tag();
    admin
        .batch_execute(&format!(
            "CREATE FUNCTION sec_t.definer_{tag}(index_name text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER \
             AS $f$BEGIN EXECUTE format('CREATE INDEX %I ON sec_t.big (v)', index_name); END$f$; \
             ALTER ROLE sec_app SET pg_migration_guard.exempt_roles = 'sec_migrator,postgres'"
        ))
        .unwrap();

    // sec_app is not a member of a listed role: judged, although the function runs as postgres.
    let app = format!("sec-definer-judged-{tag}");
    let judged = format!("sec_definer_judged_{tag}");
    expect_rejected(sec_app(&app).query(&format!("SELECT sec_t.definer_{tag}($1)"), &[&judged]), INDEX_RULE);
    assert!(!exists(&mut admin, &format!("sec_t.{judged}")));

    // Now a member: exempt, at top level and inside the function.
    admin.batch_execute("GRANT sec_migrator TO sec_app").unwrap();
    let member_app = format!("sec-member-{tag}");
    let mut member = sec_app(&member_app);
    let direct = format!("sec_member_direct_{tag}");
    member.batch_execute(&index_sql(&direct)).unwrap();
    let via_definer = format!("sec_member_definer_{tag}");
    member.query(&format!("SELECT sec_t.definer_{tag}($1)"), &[&via_definer]).unwrap();
    assert!(exists(&mut admin, &format!("sec_t.{direct}")));
    assert!(exists(&mut admin, &format!("sec_t.{via_definer}")));

    // SET ROLE to a listed role does not exempt a session whose user is not a member.
    let su_app = format!("sec-set-role-{tag}");
    // (sec_migrator needs USAGE on the schema for the statement to be looked up at all.)
    admin.batch_execute("GRANT USAGE ON SCHEMA sec_t TO sec_migrator").unwrap();
    cleanup.push("REVOKE USAGE ON SCHEMA sec_t FROM sec_migrator");
    let (mut su, _) = connect_as("A", "postgres", &su_app);
    su.batch_execute("SET pg_migration_guard.exempt_roles = 'sec_migrator'").unwrap();
    let su_plain = format!("sec_su_plain_{tag}");
    match su.batch_execute(&index_sql(&su_plain)) {
        Err(e) if e.code() == Some(&REJECTED) => {}
        other => panic!(
            "a superuser session that is not a member of sec_migrator must be judged \
             (superuser status is not membership), got {other:?}"
        ),
    }
    su.batch_execute("SET ROLE sec_migrator").unwrap();
    let su_set_role = format!("sec_su_set_role_{tag}");
    expect_rejected(su.batch_execute(&index_sql(&su_set_role)), INDEX_RULE);
    su.batch_execute("RESET ROLE").unwrap();

    let judged_rows = wait_for_audit(&mut admin, "application_name = $1 AND command_tag = 'CREATE INDEX'", &[&app], 1);
    let r = &judged_rows[0];
    assert_eq!((r.decision.as_str(), r.session_role.as_str(), r.effective_role.as_str()), ("rejected", "sec_app", "postgres"), "{r:#?}");
    let member_rows = wait_for_audit(&mut admin, "application_name = $1 AND command_tag = 'CREATE INDEX'", &[&member_app], 2);
    assert_eq!(row_for(&member_rows, &index_sql(&direct)).decision, "exempt");
    let r = row_for(&member_rows, &index_sql(&via_definer));
    assert_eq!((r.decision.as_str(), r.effective_role.as_str()), ("exempt", "postgres"), "{r:#?}");
    let su_rows = wait_for_audit(&mut admin, "application_name = $1 AND command_tag = 'CREATE INDEX'", &[&su_app], 2);
    let r = row_for(&su_rows, &index_sql(&su_set_role));
    assert_eq!(
        (r.decision.as_str(), r.session_role.as_str(), r.effective_role.as_str()),
        ("rejected", "postgres", "sec_migrator"),
        "{r:#?}"
    );
}

/// application_name_pattern selects the sessions the guard applies to: with
/// '^(alembic|flyway)$' the migration tool's session is judged, the web application's is
/// not (its statement runs and is audited as 'exempt').
#[test]
fn application_name_pattern_selects_the_sessions_that_are_judged() {
    let mut admin = setup();
    let mut cleanup = Cleanup::new("A");
    cleanup.push("ALTER ROLE sec_app RESET pg_migration_guard.application_name_pattern");
    let tag = unique_tag();
    admin.batch_execute("ALTER ROLE sec_app SET pg_migration_guard.application_name_pattern = '^(alembic|flyway)$'").unwrap();

    let judged = format!("sec_alembic_{tag}");
    expect_rejected(sec_app("alembic").batch_execute(&index_sql(&judged)), INDEX_RULE);
    let exempt = format!("sec_web_{tag}");
    sec_app("web").batch_execute(&index_sql(&exempt)).unwrap();
    assert!(!exists(&mut admin, &format!("sec_t.{judged}")));
    assert!(exists(&mut admin, &format!("sec_t.{exempt}")));

    let rows = wait_for_audit(&mut admin, "statement = $1", &[&index_sql(&judged)], 1);
    assert_eq!((rows[0].decision.as_str(), rows[0].application_name.as_str()), ("rejected", "alembic"), "{:#?}", rows[0]);
    let rows = wait_for_audit(&mut admin, "statement = $1", &[&index_sql(&exempt)], 1);
    assert_eq!((rows[0].decision.as_str(), rows[0].application_name.as_str()), ("exempt", "web"), "{:#?}", rows[0]);
}

/// An application_name_pattern that is not a valid regular expression is refused when set
/// (22023), in a session and with ALTER SYSTEM, and the setting keeps its value.
#[test]
fn invalid_application_name_pattern_is_rejected_when_set() {
    let _admin = setup();
    let mut cleanup = Cleanup::new("A");
    cleanup.push("ALTER SYSTEM RESET pg_migration_guard.application_name_pattern");
    cleanup.push("SELECT pg_reload_conf()");
    let mut su = connect("A");
    su.batch_execute("SET pg_migration_guard.application_name_pattern = '^alembic'").unwrap();
    expect_code(
        su.batch_execute("SET pg_migration_guard.application_name_pattern = '(unclosed'"),
        &INVALID_VALUE,
        "SET to an invalid regular expression",
    );
    wait_for_setting(&mut su, "pg_migration_guard.application_name_pattern", "^alembic");
    expect_code(
        su.batch_execute("ALTER SYSTEM SET pg_migration_guard.application_name_pattern = 'a{2,1}'"),
        &INVALID_VALUE,
        "ALTER SYSTEM to an invalid regular expression",
    );
    let stored: i64 = su
        .query_one("SELECT count(*) FROM pg_file_settings WHERE name = 'pg_migration_guard.application_name_pattern'", &[])
        .unwrap()
        .get(0);
    assert_eq!(stored, 0, "nothing may have been written to postgresql.auto.conf");
}

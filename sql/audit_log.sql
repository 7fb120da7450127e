-- Objects of pg_migration_guard (schema pg_migration_guard, set by the control file).

-- The hook is only active in every backend when the library is preloaded; refuse to
-- install the SQL objects otherwise, with a HINT saying how to preload it.
DO $preload$
BEGIN
    IF NOT pg_migration_guard.is_preloaded() THEN
        RAISE EXCEPTION 'pg_migration_guard must be loaded via shared_preload_libraries'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'The guard judges DDL from a ProcessUtility hook, which is only installed in every backend when the library is preloaded at server start.',
                  HINT = 'Add pg_migration_guard to shared_preload_libraries in postgresql.conf (or ALTER SYSTEM SET shared_preload_libraries = ''pg_migration_guard''), restart the server, then run CREATE EXTENSION pg_migration_guard again.';
    END IF;
END
$preload$;

-- One row per judged DDL statement, inserted by the database's audit writer (a background
-- worker) in a transaction of its own. See README.md "Audit".
CREATE TABLE pg_migration_guard.audit_log (
    id               bigint PRIMARY KEY,
    logged_at        timestamptz NOT NULL,
    database         name NOT NULL DEFAULT current_database(),
    session_role     name NOT NULL,
    effective_role   name NOT NULL,
    application_name text NOT NULL,
    client_addr      inet,
    backend_pid      integer NOT NULL,
    xid              xid8,
    statement        text NOT NULL,
    command_tag      text NOT NULL,
    decision         text NOT NULL CHECK (decision IN ('allowed', 'warned', 'rejected', 'overridden', 'exempt')),
    rules            text[] NOT NULL DEFAULT '{}',
    message          text,
    overridden_rules text[] NOT NULL DEFAULT '{}',
    override_reason  text,
    duration         interval,
    rewrote_table    boolean,
    locks            jsonb,
    error_sqlstate   text
);

COMMENT ON TABLE pg_migration_guard.audit_log IS
    'One row per DDL statement judged by pg_migration_guard, written outside the statement''s transaction (rows exist for rejected statements and aborted transactions too; see the view pg_migration_guard.audit for the transaction''s fate).';
COMMENT ON COLUMN pg_migration_guard.audit_log.id IS
    'Record id, assigned when the decision was queued: unique, increasing in queue order (seeded from the clock at server start).';
COMMENT ON COLUMN pg_migration_guard.audit_log.logged_at IS
    'When the outcome was known: the rejection, the end of the statement, or the abort that interrupted it.';
COMMENT ON COLUMN pg_migration_guard.audit_log.session_role IS
    'session_user: the role that logged in. Policy (exempt_roles) is evaluated for this role.';
COMMENT ON COLUMN pg_migration_guard.audit_log.effective_role IS
    'current_user when the statement ran (differs inside SECURITY DEFINER functions and after SET ROLE). Not named current_role: that is a reserved word, and an unquoted current_role in a query returns the reader''s own role.';
COMMENT ON COLUMN pg_migration_guard.audit_log.client_addr IS
    'Client IP address; NULL for Unix-socket connections and background workers.';
COMMENT ON COLUMN pg_migration_guard.audit_log.xid IS
    'The top-level transaction''s id, when it had one (the guard assigns one to a transaction whose statement it rejects).';
COMMENT ON COLUMN pg_migration_guard.audit_log.statement IS
    'This statement only, as isolated from a multi-statement query string (CleanQuerytext).';
COMMENT ON COLUMN pg_migration_guard.audit_log.decision IS
    'allowed: no finding; warned: findings reported as WARNING, statement ran; rejected: statement stopped with an ERROR; overridden: a pg_migration_guard:allow annotation let findings through; exempt: session not judged (exempt_roles, application_name_pattern).';
COMMENT ON COLUMN pg_migration_guard.audit_log.duration IS
    'From the start of judging to the outcome: judging, taking locks ahead, and the statement itself.';
COMMENT ON COLUMN pg_migration_guard.audit_log.rewrote_table IS
    'true when the relfilenode of a relation the statement locks changed (a rewrite); NULL when the statement did not complete.';
COMMENT ON COLUMN pg_migration_guard.audit_log.locks IS
    'Table-level locks the statement took, [{"relation", "mode", "rewritten"}], strongest mode per relation; NULL when it did not complete.';
COMMENT ON COLUMN pg_migration_guard.audit_log.error_sqlstate IS
    'SQLSTATE of the error that made the statement itself fail (after the guard let it run); NULL otherwise.';

CREATE INDEX audit_log_logged_at_idx ON pg_migration_guard.audit_log (logged_at);

-- The fate of each row's transaction (pg_xact_status: NULL without an xid, or when the xid
-- is too old for the commit log).
CREATE VIEW pg_migration_guard.audit AS
SELECT l.*,
       CASE WHEN l.xid IS NOT NULL THEN pg_catalog.pg_xact_status(l.xid) END AS transaction_status
  FROM pg_migration_guard.audit_log l;

COMMENT ON VIEW pg_migration_guard.audit IS
    'audit_log plus transaction_status: committed, aborted, in progress, or NULL (no xid, or too old to tell).';

-- Retention.
CREATE FUNCTION pg_migration_guard.purge_audit_log(older_than interval)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH gone AS (
        DELETE FROM pg_migration_guard.audit_log WHERE logged_at < now() - older_than RETURNING 1
    )
    SELECT count(*) FROM gone
$$;

COMMENT ON FUNCTION pg_migration_guard.purge_audit_log(interval) IS
    'Deletes audit rows logged more than older_than ago; returns how many. Superusers only. Schedule it (cron, pg_cron) for retention.';

REVOKE ALL ON FUNCTION pg_migration_guard.purge_audit_log(interval) FROM PUBLIC;

-- Extension member tables are not dumped by pg_dump unless marked as configuration.
SELECT pg_catalog.pg_extension_config_dump('pg_migration_guard.audit_log', '');

-- Only the audit writer (the bootstrap superuser) writes; nobody gets privileges by
-- default. Members of migration_guard_reader (cluster-wide, created if missing, not
-- dropped with the extension) can read. (Not pg_migration_guard_reader: role names
-- starting with pg_ are reserved, CREATE ROLE refuses them even to superusers.)
REVOKE ALL ON pg_migration_guard.audit_log FROM PUBLIC;
REVOKE ALL ON pg_migration_guard.audit FROM PUBLIC;
DO $reader$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'migration_guard_reader') THEN
        CREATE ROLE migration_guard_reader NOLOGIN;
    END IF;
END
$reader$;
GRANT SELECT ON pg_migration_guard.audit_log, pg_migration_guard.audit TO migration_guard_reader;
GRANT USAGE ON SCHEMA pg_migration_guard TO PUBLIC;

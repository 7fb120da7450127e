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

-- One row per judged DDL statement. See README.md "Audit".
CREATE TABLE pg_migration_guard.audit_log (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    logged_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    database         name NOT NULL DEFAULT current_database(),
    session_role     name NOT NULL DEFAULT session_user,
    application_name text NOT NULL DEFAULT current_setting('application_name'),
    backend_pid      integer NOT NULL DEFAULT pg_backend_pid(),
    statement        text NOT NULL,
    command_tag      text NOT NULL,
    decision         text NOT NULL CHECK (decision IN ('allowed', 'warned', 'rejected')),
    rules            text[] NOT NULL DEFAULT '{}',
    message          text
);

COMMENT ON TABLE pg_migration_guard.audit_log IS
    'One row per DDL statement judged by pg_migration_guard: what ran, who sent it, the decision (allowed, warned, rejected), the rules that fired and the message shown.';
COMMENT ON COLUMN pg_migration_guard.audit_log.statement IS
    'This statement only, as isolated from a multi-statement query string (CleanQuerytext).';
COMMENT ON COLUMN pg_migration_guard.audit_log.decision IS
    'allowed: no finding; warned: findings reported as WARNING, statement ran; rejected: statement stopped with an ERROR.';

CREATE INDEX audit_log_logged_at_idx ON pg_migration_guard.audit_log (logged_at);

-- Extension member tables are not dumped by pg_dump unless marked as configuration.
SELECT pg_catalog.pg_extension_config_dump('pg_migration_guard.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('pg_migration_guard.audit_log', 'id')::regclass, '');

-- Only the hook writes (as the bootstrap superuser); nobody else gets privileges by default.
REVOKE ALL ON pg_migration_guard.audit_log FROM PUBLIC;
GRANT USAGE ON SCHEMA pg_migration_guard TO PUBLIC;

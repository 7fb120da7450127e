-- pg_migration_guard 0.1.0 -> 0.2.0
-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_migration_guard UPDATE TO '0.2.0'" to load this file. \quit

-- No SQL object changed between 0.1.0 and 0.2.0. The install scripts `cargo pgrx schema
-- pg15` generates for both (sql/pg_migration_guard--0.1.0.sql and the 0.2.0 one that
-- `cargo pgrx package` writes) define the same schema, the same four functions (names,
-- arguments, result columns, volatility, parallel safety and C symbols), the same audit
-- table, index, view, retention function, comments and privileges, and the same
-- pg_extension_config_dump entry; only the order pgrx writes them in differs.
--
-- 0.2.0 changes the library only. Install it, restart the server (the hook and the audit
-- workers come from shared_preload_libraries), then run
-- ALTER EXTENSION pg_migration_guard UPDATE in each database that has the extension: this
-- script then only moves the recorded version (docs/operations.md, "Upgrade").
--
-- tests/packaging/upgrade.sh checks that a database updated from 0.1.0 has the same
-- objects, definitions, comments, privileges and configuration entries as a fresh 0.2.0
-- install. A change to an SQL object in a later version needs its own
-- sql/pg_migration_guard--0.2.0--<next>.sql.

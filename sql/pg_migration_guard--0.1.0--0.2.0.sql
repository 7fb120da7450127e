-- pg_migration_guard 0.1.0 -> 0.2.0
-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_migration_guard UPDATE TO '0.2.0'" to load this file. \quit

-- One SQL object is new in 0.2.0: pg_migration_guard.relations_size(text[]), which the
-- coordinator of a Citus cluster calls on the nodes holding a distributed table's shards
-- (docs/citus.md). Otherwise the install scripts `cargo pgrx schema pg15` generates for both
-- (sql/pg_migration_guard--0.1.0.sql and the 0.2.0 one that `cargo pgrx package` writes)
-- define the same schema, the same other four functions (names, arguments, result columns,
-- volatility, parallel safety and C symbols), the same audit table, index, view, retention
-- function, comments and privileges, and the same pg_extension_config_dump entry; only the
-- order pgrx writes them in differs.
--
-- Install the 0.2.0 library, restart the server (the hook and the audit workers come from
-- shared_preload_libraries), then run ALTER EXTENSION pg_migration_guard UPDATE in each
-- database that has the extension (docs/operations.md, "Upgrade").
--
-- tests/packaging/upgrade.sh checks that a database updated from 0.1.0 has the same
-- objects, definitions, comments, privileges and configuration entries as a fresh 0.2.0
-- install. A change to an SQL object in a later version needs its own
-- sql/pg_migration_guard--0.2.0--<next>.sql.

-- As `cargo pgrx package` writes it into the 0.2.0 install script (src/lib.rs).
CREATE  FUNCTION pg_migration_guard."relations_size"(
	"relations" TEXT[] /* Vec < Option < String > > */
) RETURNS TABLE (
	"found" INT,  /* i32 */
	"bytes" bigint,  /* i64 */
	"estimated_rows" double precision  /* Option < f64 > */
)
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'relations_size_wrapper';

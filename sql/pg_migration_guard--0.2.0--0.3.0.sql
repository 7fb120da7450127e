-- pg_migration_guard 0.2.0 -> 0.3.0
-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_migration_guard UPDATE TO '0.3.0'" to load this file. \quit

-- 0.3.0 adds two SQL objects: pg_migration_guard.check(script text), which judges every
-- statement of a migration script without running it (docs/check.md), and
-- pg_migration_guard.relations_size(relations text[]), which the coordinator of a Citus
-- cluster calls on the nodes holding a distributed table's shards (docs/citus.md). The
-- definitions below are the ones `cargo pgrx schema pg15` generates for a fresh 0.3.0
-- install; nothing else changed (tests/packaging/upgrade.sh compares an updated database
-- with a fresh install).
-- Like every function the extension defines, EXECUTE stays granted to PUBLIC: any role may
-- check a script, and sees only the relations it has a privilege on.
--
-- Install the 0.3.0 library first (the functions' C symbols, check_wrapper and
-- relations_size_wrapper, are in it), then
-- run ALTER EXTENSION pg_migration_guard UPDATE in each database that has the extension.

CREATE FUNCTION pg_migration_guard."check"(
	"script" TEXT /* & str */
) RETURNS TABLE (
	"statement_no" INT,  /* i32 */
	"line" INT,  /* i32 */
	"col" INT,  /* i32 */
	"statement" TEXT,  /* String */
	"command_tag" TEXT,  /* String */
	"decision" TEXT,  /* String */
	"rules" TEXT[],  /* Vec < String > */
	"sqlstate" TEXT,  /* Option < String > */
	"message" TEXT,  /* Option < String > */
	"detail" TEXT,  /* Option < String > */
	"hint" TEXT,  /* Option < String > */
	"locks" jsonb,  /* pgrx :: JsonB */
	"sizes" jsonb  /* pgrx :: JsonB */
)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'check_wrapper';

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

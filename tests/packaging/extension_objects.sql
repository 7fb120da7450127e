-- Describes every SQL object of pg_migration_guard in the current database, one line each,
-- in a stable order and without oids: tests/packaging/upgrade.sh compares this output
-- between a database updated from an older version and a fresh install of the new one.
-- (extversion is left out: the caller checks it.)
WITH ext AS (
    SELECT oid, extname, extnamespace, extrelocatable, extconfig, extcondition
      FROM pg_catalog.pg_extension WHERE extname = 'pg_migration_guard'
), members AS (
    SELECT d.classid, d.objid, d.objsubid
      FROM pg_catalog.pg_depend d JOIN ext ON d.refobjid = ext.oid
     WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
), nsp AS (
    SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'pg_migration_guard'
)
SELECT line FROM (
    -- the member list
    SELECT 'member: ' || pg_catalog.pg_describe_object(classid, objid, objsubid) AS line FROM members
    -- the extension's own properties
    UNION ALL
    SELECT 'extension: schema=' || extnamespace::regnamespace || ' relocatable=' || extrelocatable
           || ' config=' || coalesce((SELECT string_agg(c::regclass::text || ' where ' || quote_literal(w), ', ' ORDER BY c::regclass::text)
                                        FROM unnest(extconfig, extcondition) AS u(c, w)), '')
      FROM ext
    -- the schema
    UNION ALL
    SELECT 'schema: acl=' || coalesce(n.nspacl::text, '') || ' owner=' || n.nspowner::regrole
           || ' comment=' || coalesce(pg_catalog.obj_description(n.oid, 'pg_namespace'), '')
      FROM pg_catalog.pg_namespace n JOIN nsp ON n.oid = nsp.oid
    -- functions: full definition, privileges, comment
    UNION ALL
    SELECT 'function: ' || p.oid::regprocedure || E'\n' || pg_catalog.pg_get_functiondef(p.oid)
           || 'acl=' || coalesce(p.proacl::text, '') || ' comment=' || coalesce(pg_catalog.obj_description(p.oid, 'pg_proc'), '')
      FROM pg_catalog.pg_proc p JOIN nsp ON p.pronamespace = nsp.oid
    -- relations: kind, privileges, options, comment, view definition
    UNION ALL
    SELECT 'relation: ' || c.relname || ' kind=' || c.relkind::text || ' persistence=' || c.relpersistence::text
           || ' acl=' || coalesce(c.relacl::text, '') || ' options=' || coalesce(c.reloptions::text, '')
           || ' owner=' || c.relowner::regrole
           || ' comment=' || coalesce(pg_catalog.obj_description(c.oid, 'pg_class'), '')
           || CASE WHEN c.relkind = 'v' THEN E'\n' || pg_catalog.pg_get_viewdef(c.oid) ELSE '' END
           || CASE WHEN c.relkind = 'i' THEN E'\n' || pg_catalog.pg_get_indexdef(c.oid) ELSE '' END
      FROM pg_catalog.pg_class c JOIN nsp ON c.relnamespace = nsp.oid
    -- columns
    UNION ALL
    SELECT 'column: ' || c.relname || '.' || a.attname || ' #' || a.attnum || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod)
           || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
           || coalesce(' default ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid), '')
           || ' acl=' || coalesce(a.attacl::text, '')
           || ' comment=' || coalesce(pg_catalog.col_description(c.oid, a.attnum), '')
      FROM pg_catalog.pg_class c JOIN nsp ON c.relnamespace = nsp.oid
      JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
    -- constraints
    UNION ALL
    SELECT 'constraint: ' || c.relname || '.' || k.conname || ' ' || pg_catalog.pg_get_constraintdef(k.oid)
      FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class c ON k.conrelid = c.oid JOIN nsp ON c.relnamespace = nsp.oid
    -- triggers, rules, policies on the extension's relations
    UNION ALL
    SELECT 'trigger: ' || pg_catalog.pg_get_triggerdef(t.oid)
      FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON t.tgrelid = c.oid JOIN nsp ON c.relnamespace = nsp.oid
     WHERE NOT t.tgisinternal
    UNION ALL
    SELECT 'policy: ' || c.relname || '.' || pol.polname || ' ' || coalesce(pg_catalog.pg_get_expr(pol.polqual, pol.polrelid), '')
      FROM pg_catalog.pg_policy pol JOIN pg_catalog.pg_class c ON pol.polrelid = c.oid JOIN nsp ON c.relnamespace = nsp.oid
    UNION ALL
    SELECT 'row security: ' || c.relname || ' ' || c.relrowsecurity || ' ' || c.relforcerowsecurity
      FROM pg_catalog.pg_class c JOIN nsp ON c.relnamespace = nsp.oid WHERE c.relkind IN ('r', 'p')
    -- types the extension defines
    UNION ALL
    SELECT 'type: ' || t.oid::regtype || ' ' || t.typtype::text
      FROM pg_catalog.pg_type t JOIN nsp ON t.typnamespace = nsp.oid
    -- the reader role
    UNION ALL
    SELECT 'role: ' || rolname || ' login=' || rolcanlogin || ' superuser=' || rolsuper
      FROM pg_catalog.pg_roles WHERE rolname = 'migration_guard_reader'
) lines
ORDER BY line;

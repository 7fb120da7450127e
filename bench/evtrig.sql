-- The do-it-yourself DDL audit many teams deploy instead of an extension, the evtrig
-- configuration of bench/run.sh and bench/callgrind.sh: an event trigger at
-- ddl_command_end that inserts one row per pg_event_trigger_ddl_commands() entry (a CREATE
-- TABLE with a primary key has two: the table and its index) with the statement's text
-- (current_query()) into a table. Names are schema-qualified: the
-- statements may run with any search_path.
CREATE TABLE public.ddl_audit (
  id bigserial PRIMARY KEY,
  logged_at timestamptz NOT NULL DEFAULT now(),
  session_role text NOT NULL DEFAULT session_user,
  command_tag text, object_type text, schema_name text, object_identity text,
  in_extension boolean, query text);
CREATE FUNCTION public.ddl_audit_log() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
  FOR r IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
    INSERT INTO public.ddl_audit (command_tag, object_type, schema_name, object_identity, in_extension, query)
    VALUES (r.command_tag, r.object_type, r.schema_name, r.object_identity, r.in_extension, current_query());
  END LOOP;
END $$;
CREATE EVENT TRIGGER ddl_audit ON ddl_command_end EXECUTE FUNCTION public.ddl_audit_log();

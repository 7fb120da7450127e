/**
 * @type {import('node-pg-migrate').ColumnDefinitions | undefined}
 */
export const shorthands = undefined;

/**
 * Fixed after pg_migration_guard stopped the addColumn with a volatile default
 * (adding-field-with-default: gen_random_uuid() is evaluated per row, so PostgreSQL
 * rewrites the whole table under ACCESS EXCLUSIVE). Instead:
 *   1. add the column bare (a catalog change only),
 *   2. give it the default for new rows,
 *   3. backfill existing rows in batches, one transaction each (hence noTransaction),
 *   4. make it NOT NULL through a validated CHECK, so SET NOT NULL does not scan.
 *
 * @param pgm {import('node-pg-migrate').MigrationBuilder}
 * @param run {() => void | undefined}
 * @returns {Promise<void> | void}
 */
export const up = (pgm) => {
  pgm.noTransaction();
  pgm.addColumn('event', { token: { type: 'uuid' } });
  pgm.alterColumn('event', 'token', { default: pgm.func('gen_random_uuid()') });
  pgm.sql(`
    DO $$
    BEGIN
      LOOP
        UPDATE event SET token = gen_random_uuid()
        WHERE id IN (SELECT id FROM event WHERE token IS NULL LIMIT 10000);
        EXIT WHEN NOT FOUND;
        COMMIT;
      END LOOP;
    END
    $$`);
  // node-pg-migrate has no NOT VALID option: pass the constraint as SQL.
  pgm.addConstraint('event', 'event_token_not_null', 'CHECK (token IS NOT NULL) NOT VALID');
  pgm.sql('ALTER TABLE event VALIDATE CONSTRAINT event_token_not_null');
  pgm.alterColumn('event', 'token', { notNull: true });
  pgm.dropConstraint('event', 'event_token_not_null');
};

/**
 * @param pgm {import('node-pg-migrate').MigrationBuilder}
 * @param run {() => void | undefined}
 * @returns {Promise<void> | void}
 */
export const down = (pgm) => {
  pgm.dropColumn('event', 'token');
};

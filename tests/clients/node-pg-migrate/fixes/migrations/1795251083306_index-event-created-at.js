/**
 * @type {import('node-pg-migrate').ColumnDefinitions | undefined}
 */
export const shorthands = undefined;

/**
 * Fixed after pg_migration_guard stopped the plain createIndex
 * (require-concurrent-index-creation): build the index CONCURRENTLY, which cannot run
 * inside a transaction block, so this migration runs without one.
 *
 * @param pgm {import('node-pg-migrate').MigrationBuilder}
 * @param run {() => void | undefined}
 * @returns {Promise<void> | void}
 */
export const up = (pgm) => {
  pgm.noTransaction();
  pgm.createIndex('event', 'created_at', { concurrently: true });
};

/**
 * @param pgm {import('node-pg-migrate').MigrationBuilder}
 * @param run {() => void | undefined}
 * @returns {Promise<void> | void}
 */
export const down = (pgm) => {
  pgm.noTransaction();
  pgm.dropIndex('event', 'created_at', { concurrently: true });
};

// Fixed after pg_migration_guard stopped table.index() (require-concurrent-index-creation).
// Knex's schema builder has no CONCURRENTLY option, so the index is built with raw SQL,
// and CONCURRENTLY cannot run inside a transaction block, so this migration runs
// without the transaction Knex would otherwise open for it.
exports.config = { transaction: false };

/**
 * @param { import("knex").Knex } knex
 * @returns { Promise<void> }
 */
exports.up = function(knex) {
  return knex.raw('CREATE INDEX CONCURRENTLY IF NOT EXISTS payment_status_index ON payment (status)');
};

/**
 * @param { import("knex").Knex } knex
 * @returns { Promise<void> }
 */
exports.down = function(knex) {
  return knex.raw('DROP INDEX CONCURRENTLY IF EXISTS payment_status_index');
};

// Knex configuration of the small payments service the client suite migrates
// (tests/clients/run.sh). The database comes from the libpq environment (PGHOST,
// PGPORT, PGDATABASE, PGUSER), as a deployment would pass it.

/**
 * @type { Object.<string, import("knex").Knex.Config> }
 */
module.exports = {
  production: {
    client: 'pg',
    connection: {
      host: process.env.PGHOST || '/tmp',
      port: Number(process.env.PGPORT || 5432),
      database: process.env.PGDATABASE || 'payments',
      user: process.env.PGUSER || 'postgres',
    },
    pool: { min: 1, max: 2 },
    migrations: {
      directory: './migrations',
      tableName: 'knex_migrations',
    },
  },
};

//! The pure core of pg_migration_guard: everything between the facts the extension reads
//! from PostgreSQL and the text a user reads, with no PostgreSQL call.
//!
//! - [`model`]: the typed facts of a statement (relations, sizes, subcommands, lock modes);
//! - [`rules`]: one function per rule, from facts to findings, and the rule table;
//! - [`decision`]: mode, per-rule levels and overrides applied to the findings, and the
//!   ERROR/WARNING text;
//! - [`overrides`]: the syntax of `pg_migration_guard:allow` annotations;
//! - [`sqltext`]: statement bounds and the text edits behind the HINTs.

pub mod decision;
pub mod model;
pub mod overrides;
pub mod rules;
pub mod sqltext;

//! The pure core of pg_migration_guard: everything between the facts the extension reads
//! from PostgreSQL and the text a user reads, with no PostgreSQL call.
//!
//! - [`citus`]: recognising Citus' internal connections, reading the sizes workers report;
//! - [`model`]: the typed facts of a statement (relations, sizes, subcommands, lock modes);
//! - [`rules`]: one function per rule, from facts to findings, and the rule table;
//! - [`decision`]: mode, per-rule levels and overrides applied to the findings, and the
//!   ERROR/WARNING text;
//! - [`overrides`]: the syntax of `pg_migration_guard:allow` annotations;
//! - [`sqltext`]: statement bounds and the text edits behind the HINTs.

pub mod citus;
pub mod decision;
pub mod model;
pub mod overrides;
pub mod rules;
pub mod sqltext;

// Words, one meaning each:
// - a *finding* (`rules::Finding`) is what one rule found in one statement;
// - a *leveled finding* (`decision::LeveledFinding`) is a finding with the level policy gave it;
// - a *verdict* (`decision::Verdict`) is what the guard concluded about a statement: its
//   decision, the rules that fired, the report the user sees;
// - a *decision* (`decision::Decision`) is what the guard did with it: allowed, warned,
//   rejected, overridden or exempt — the `decision` column of the audit log.

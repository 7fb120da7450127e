//! Judging: from a utility statement's parse tree and the live catalog to a verdict, without
//! acting on it. `facts` reads what the rules need, `lock_targets` which relations and lock
//! modes the statement will take, `scanner` its comments as PostgreSQL's lexer finds them;
//! the rules and the decision are in the pure core (`pg_migration_guard_core`).

pub mod facts;
pub mod lock_targets;
pub mod scanner;

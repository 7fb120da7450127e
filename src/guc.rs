//! Configuration parameters (GUCs). All policy parameters are PGC_SUSET: only superusers
//! (or roles granted SET on them, PostgreSQL 15+) can change them, in postgresql.conf,
//! ALTER SYSTEM, ALTER DATABASE/ROLE ... SET, or SET.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};

use crate::decision::Mode;

/// `pg_migration_guard.mode`: what the guard does with a finding.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum GuardMode {
    #[name = c"off"]
    Off,
    #[name = c"warn"]
    Warn,
    #[name = c"enforce"]
    Enforce,
}

pub static MODE: GucSetting<GuardMode> = GucSetting::<GuardMode>::new(GuardMode::Enforce);

/// The current mode as the decision layer's type.
pub fn mode() -> Mode {
    match MODE.get() {
        GuardMode::Off => Mode::Off,
        GuardMode::Warn => Mode::Warn,
        GuardMode::Enforce => Mode::Enforce,
    }
}

pub fn register() {
    GucRegistry::define_enum_guc(
        c"pg_migration_guard.mode",
        c"What pg_migration_guard does with DDL that would block or rewrite a live table: off, warn or enforce.",
        c"enforce rejects the statement with an ERROR (SQLSTATE 55000) that names the rule and shows the safe SQL; \
warn reports the same text as a WARNING and lets the statement run; off passes every statement through \
unjudged and unaudited. Only superusers can change it.",
        &MODE,
        GucContext::Suset,
        GucFlags::default(),
    );
    let prefix = c"pg_migration_guard";
    unsafe {
        #[cfg(any(feature = "pg13", feature = "pg14"))]
        pgrx::pg_sys::EmitWarningsOnPlaceholders(prefix.as_ptr());
        #[cfg(not(any(feature = "pg13", feature = "pg14")))]
        pgrx::pg_sys::MarkGUCPrefixReserved(prefix.as_ptr());
    }
}

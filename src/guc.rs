//! Configuration parameters (GUCs). All policy parameters are PGC_SUSET: only superusers
//! (or roles granted SET on them, PostgreSQL 15+) can change them, in postgresql.conf,
//! ALTER SYSTEM, ALTER DATABASE/ROLE ... SET, or SET.

use std::ffi::{c_char, c_void, CStr, CString};

use pgrx::{pg_sys, GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};

use crate::decision::{Mode, RuleLevels};
use crate::rules::{Context, RequireLockTimeout};

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

/// `pg_migration_guard.lock_timeout_policy`: what the guard does about the lock queue.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum LockTimeoutPolicy {
    #[name = c"off"]
    Off,
    #[name = c"require"]
    Require,
    #[name = c"auto"]
    Auto,
}

pub static LOCK_TIMEOUT_POLICY: GucSetting<LockTimeoutPolicy> = GucSetting::<LockTimeoutPolicy>::new(LockTimeoutPolicy::Auto);

/// `pg_migration_guard.on_judging_error`: what happens to a statement the guard could not
/// judge (an error while reading its facts, a fact that cannot be decided without waiting).
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum JudgingErrorPolicy {
    /// Refuse the statement with an ERROR naming the cause (fail closed).
    #[name = c"reject"]
    Reject,
    /// Let it run unjudged, with a WARNING naming the cause.
    #[name = c"allow"]
    Allow,
}

pub static ON_JUDGING_ERROR: GucSetting<JudgingErrorPolicy> = GucSetting::<JudgingErrorPolicy>::new(JudgingErrorPolicy::Reject);

/// The current `on_judging_error` as the decision layer's type.
pub fn on_judging_error() -> crate::decision::OnJudgingError {
    match ON_JUDGING_ERROR.get() {
        JudgingErrorPolicy::Reject => crate::decision::OnJudgingError::Reject,
        JudgingErrorPolicy::Allow => crate::decision::OnJudgingError::Allow,
    }
}

/// `pg_migration_guard.log_decisions`: which decisions get a LOG line in the server log.
/// The audit table records every decision whatever the setting.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum LogDecisions {
    /// Every decision (the default): the server log alone reconstructs every decision,
    /// as pgaudit's log does every DDL statement.
    #[name = c"all"]
    All,
    /// Warned, rejected, overridden and exempt decisions; an allowed one only when its
    /// audit record cannot be queued (no audit table in the database, a hot standby, the
    /// queue full), so that every decision is in the audit table or the server log.
    #[name = c"flagged"]
    Flagged,
}

pub static LOG_DECISIONS: GucSetting<LogDecisions> = GucSetting::<LogDecisions>::new(LogDecisions::All);

/// `pg_migration_guard.lock_attempt_timeout`, in ms: the longest single wait in the lock queue.
pub static LOCK_ATTEMPT_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(50);

/// `pg_migration_guard.lock_retry_budget`, in ms: how long to keep retrying in all.
pub static LOCK_RETRY_BUDGET_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);

/// `pg_migration_guard.max_lock_timeout`, in ms: the largest lock_timeout `require` accepts.
pub static MAX_LOCK_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(2_000);

/// `pg_migration_guard.rule_levels`: per-rule level overrides, `rule-id:level, ...`.
pub static RULE_LEVELS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));

/// `pg_migration_guard.small_table_threshold`, in kB (GUC_UNIT_KB): default 1MB, range
/// 0 ..= i32::MAX kB (an int GUC): 1 kB less than 2TB, so `'2TB'` is out of range and
/// `'2047GB'` is the largest value in GB (README, Configuration).
pub static SMALL_TABLE_THRESHOLD_KB: GucSetting<i32> = GucSetting::<i32>::new(1024);

/// `pg_migration_guard.allow_overrides`: whether `pg_migration_guard:allow` annotations are honoured.
pub static ALLOW_OVERRIDES: GucSetting<bool> = GucSetting::<bool>::new(true);

/// `pg_migration_guard.exempt_roles`: roles whose members' sessions are not judged
/// (membership as `exempting_role` defines it). Default `''`.
pub static EXEMPT_ROLES: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));

/// `pg_migration_guard.application_name_pattern`: the sessions the guard applies to.
pub static APPLICATION_NAME_PATTERN: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));

/// `pg_migration_guard.citus_internal`: whether the shard DDL Citus sends to a node for a
/// statement its coordinator judged is judged again there (`judge`, the default) or trusted
/// (`trust`; see `crate::citus::internal_exemption` and docs/citus.md).
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum CitusInternal {
    #[name = c"judge"]
    Judge,
    #[name = c"trust"]
    Trust,
}

pub static CITUS_INTERNAL: GucSetting<CitusInternal> = GucSetting::<CitusInternal>::new(CitusInternal::Judge);

/// `pg_migration_guard.audit_queue_size`, in kB: shared memory for audit records in transit.
pub static AUDIT_QUEUE_SIZE_KB: GucSetting<i32> = GucSetting::<i32>::new(1024);

/// Why the current session is exempt from judging, or `None` when the guard applies.
///
/// `exempt_roles`: the session is exempt when its session user reaches a listed role
/// through a chain of memberships each of which a superuser granted (see
/// `exempting_role`). Evaluated for the session user (the role that logged in, or that a
/// superuser's SET SESSION AUTHORIZATION chose), never for the current user: SET ROLE,
/// SECURITY DEFINER functions and procedures change the current user, and none of them may
/// switch the guard off for the session that calls them.
///
/// # Safety
/// Inside a transaction (role lookups read the catalog).
pub unsafe fn exemption() -> Option<String> {
    unsafe {
        if let Some(roles) = current_str(&EXEMPT_ROLES).filter(|r| !r.to_bytes().is_empty()) {
            if let Some(reason) = exempt_by_role(roles) {
                return Some(reason);
            }
        }
        if let Some(pattern) = current_str(&APPLICATION_NAME_PATTERN).filter(|p| !p.to_bytes().is_empty()) {
            let pattern = pattern.to_string_lossy();
            let app = if pg_sys::application_name.is_null() {
                String::new()
            } else {
                CStr::from_ptr(pg_sys::application_name).to_string_lossy().into_owned()
            };
            if !application_name_matches(&pattern, &app) {
                return Some(format!("application_name \"{app}\" does not match pg_migration_guard.application_name_pattern"));
            }
        }
        None
    }
}

/// The current value of a string setting, read in place (`GucSetting::get` copies it).
fn current_str(setting: &GucSetting<Option<CString>>) -> Option<&CStr> {
    // SAFETY: the setting's variable points to PostgreSQL's current value (or is null); it
    // is replaced, never modified, when the setting changes, and read here before anything
    // can change it.
    unsafe {
        let p = *setting.as_ptr();
        (!p.is_null()).then(|| CStr::from_ptr(p))
    }
}

/// The `exempt_roles` part of [`exemption`]: why the session user is exempt through a role
/// of `roles` (the setting's value), or `None`. The answer is kept for the backend, keyed by
/// the value and the session user, until a change to pg_authid (a role created, dropped,
/// renamed, or its superuser status changed) or pg_auth_members (a membership granted or
/// revoked) invalidates it (`exemption_cache`): the lookups it saves read those two
/// catalogs only, through the same catalog caches whose invalidations clear it.
unsafe fn exempt_by_role(roles: &CStr) -> Option<String> {
    unsafe {
        exemption_cache::register();
        let session_user = pg_sys::GetSessionUserId();
        let cache = &mut *std::ptr::addr_of_mut!(exemption_cache::CACHE);
        if let Some((value, user, answer)) = cache.as_ref() {
            if *user == session_user && value.as_c_str() == roles {
                return answer.clone();
            }
        }
        let listed: Vec<(String, pg_sys::Oid)> =
            split_identifiers(roles).into_iter().filter_map(|name| role_oid(&name).map(|oid| (name, oid))).collect();
        let answer = exempting_role(session_user, &listed.iter().map(|(_, oid)| *oid).collect::<Vec<_>>()).map(|role| {
            let name = listed.iter().find(|(_, oid)| *oid == role).map_or("", |(n, _)| n.as_str());
            format!("the session user is a member of \"{name}\", listed in pg_migration_guard.exempt_roles, through grants by superusers")
        });
        *cache = Some((roles.to_owned(), session_user, answer.clone()));
        answer
    }
}

/// The last answer of [`exempt_by_role`] and the syscache invalidation callbacks
/// (src/backend/utils/cache/inval.c) that forget it.
mod exemption_cache {
    use std::ffi::CString;

    use pgrx::pg_sys;

    /// (exempt_roles value, session user, answer).
    pub(super) static mut CACHE: Option<(CString, pg_sys::Oid, Option<String>)> = None;
    static mut REGISTERED: bool = false;

    pub(super) unsafe fn register() {
        unsafe {
            if REGISTERED {
                return;
            }
            REGISTERED = true;
            for cache in [
                pg_sys::SysCacheIdentifier::AUTHOID,
                pg_sys::SysCacheIdentifier::AUTHMEMMEMROLE,
                pg_sys::SysCacheIdentifier::AUTHMEMROLEMEM,
            ] {
                pg_sys::CacheRegisterSyscacheCallback(cache as i32, Some(forget), pg_sys::Datum::from(0));
            }
        }
    }

    unsafe extern "C-unwind" fn forget(_arg: pg_sys::Datum, _cacheid: std::ffi::c_int, _hash: u32) {
        unsafe { *std::ptr::addr_of_mut!(CACHE) = None }
    }
}

/// The OID of role `name`, or `None` when no such role exists.
unsafe fn role_oid(name: &str) -> Option<pg_sys::Oid> {
    let cname = CString::new(name).ok()?;
    let oid = unsafe { pg_sys::get_role_oid(cname.as_ptr(), true) };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// The longest chain of memberships `exempting_role` follows (levels of pg_auth_members
/// from the session user); a listed role reached only through a longer chain does not
/// exempt.
pub const MAX_MEMBERSHIP_DEPTH: usize = 32;

/// The first role of `listed` that `member` reaches through a chain of memberships
/// (rows of pg_auth_members: `member` -> `roleid`) every one of which was granted by a
/// role that is a superuser now (`grantor` -> `pg_authid.rolsuper`, via `superuser_arg`,
/// which also answers false for a grantor that no longer exists), at most
/// `MAX_MEMBERSHIP_DEPTH` memberships long. `member` itself does not count: logging in as
/// a listed role does not exempt.
///
/// Why the grantor: on PostgreSQL 15 and before, a role with CREATEROLE may grant any
/// non-superuser role to anyone, itself included, but the row it writes names itself as
/// grantor: only a superuser may record another grantor ("must be superuser to set
/// grantor", AddRoleMems in src/backend/commands/user.c). A membership granted by a
/// superuser is therefore one a superuser made. PostgreSQL's own membership test
/// (roles_is_member_of in src/backend/utils/adt/acl.c) follows every row whoever granted
/// it, and also counts the implicit membership of a database owner in pg_database_owner,
/// which has no row and does not count here.
///
/// On PostgreSQL 16 and later, CREATE ROLE run by a non-superuser records the creator's
/// ADMIN membership in the new role with the bootstrap superuser as grantor, with INHERIT
/// and SET false (CreateRole in user.c); such a row does not count here either: on those
/// versions a membership counts only with INHERIT or SET.
///
/// Memberships are read from the catalog cache (`AUTHMEMMEMROLE`: the rows whose `member`
/// is a given role, through pg_auth_members' (member, roleid) index), level by level;
/// each role is visited once, so a cycle (which PostgreSQL refuses to create) cannot loop.
///
/// # Safety
/// Inside a transaction.
pub unsafe fn exempting_role(member: pg_sys::Oid, listed: &[pg_sys::Oid]) -> Option<pg_sys::Oid> {
    if listed.is_empty() {
        return None;
    }
    let mut seen = std::collections::HashSet::from([member]);
    let mut level = vec![member];
    for _ in 0..MAX_MEMBERSHIP_DEPTH {
        let mut next = Vec::new();
        for role in level {
            for granted in unsafe { memberships_granted_by_superusers(role) } {
                if seen.insert(granted) {
                    if listed.contains(&granted) {
                        return Some(granted);
                    }
                    next.push(granted);
                }
            }
        }
        if next.is_empty() {
            break;
        }
        level = next;
    }
    None
}

/// One row of pg_auth_members, as laid out in the catalog (src/include/catalog/
/// pg_auth_members.h): PostgreSQL 16 added `oid` first and `inherit_option`,
/// `set_option` last.
#[repr(C)]
struct AuthMembersRow {
    #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15")))]
    _oid: pg_sys::Oid,
    roleid: pg_sys::Oid,
    _member: pg_sys::Oid,
    grantor: pg_sys::Oid,
    _admin_option: bool,
    #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15")))]
    inherit_option: bool,
    #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15")))]
    set_option: bool,
}

impl AuthMembersRow {
    /// Whether the membership can be used at all: on PostgreSQL 16 and later, only with
    /// INHERIT or SET (see `exempting_role`); before, always.
    fn usable(&self) -> bool {
        #[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15")))]
        return self.inherit_option || self.set_option;
        #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
        return true;
    }
}

/// The roles `member` is directly a member of through a membership that counts (see
/// `exempting_role`), read through the catalog cache list of `AUTHMEMMEMROLE`
/// (SearchSysCacheList1, as roles_is_member_of does).
unsafe fn memberships_granted_by_superusers(member: pg_sys::Oid) -> Vec<pg_sys::Oid> {
    let mut rows: Vec<(pg_sys::Oid, pg_sys::Oid, bool)> = Vec::new();
    unsafe {
        let list = pg_sys::SearchSysCacheList(
            pg_sys::SysCacheIdentifier::AUTHMEMMEMROLE as i32,
            1,
            pg_sys::Datum::from(member.to_u32()),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
        );
        let n = usize::try_from((*list).n_members).unwrap_or(0);
        for &entry in (*list).members.as_slice(n) {
            let row = &*(pg_sys::GETSTRUCT(&raw mut (*entry).tuple) as *const AuthMembersRow);
            rows.push((row.roleid, row.grantor, row.usable()));
        }
        pg_sys::ReleaseCatCacheList(list);
        // superuser_arg reads pg_authid (AUTHOID) and is false for a role that does not exist.
        rows.into_iter().filter(|&(_, grantor, usable)| usable && pg_sys::superuser_arg(grantor)).map(|(role, _, _)| role).collect()
    }
}

/// The names listed in `exempt_roles` that no role has, in the order listed.
///
/// # Safety
/// Inside a transaction. Reads only pg_authid, a shared catalog: works in a process
/// connected to no database (the audit launcher).
pub unsafe fn missing_exempt_roles() -> Vec<String> {
    let Some(roles) = EXEMPT_ROLES.get() else { return Vec::new() };
    split_identifiers(&roles).into_iter().filter(|name| unsafe { role_oid(name) }.is_none()).collect()
}

/// Logs a WARNING for each name listed in `exempt_roles` that no role has. Called by the
/// audit launcher at start and after each configuration reload, so the server log names a
/// misspelt or not yet created role (which exempts nobody; a role created under that name
/// later exempts only members a superuser granted it to).
///
/// # Safety
/// Inside a transaction (see `missing_exempt_roles`).
pub unsafe fn warn_missing_exempt_roles() {
    for name in unsafe { missing_exempt_roles() } {
        pgrx::pg_sys::panic::ErrorReport::new(
            pgrx::PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("role \"{name}\" listed in pg_migration_guard.exempt_roles does not exist"),
            "pg_migration_guard",
        )
        .set_detail("No session is exempt through it.")
        .set_hint("Create it as a NOLOGIN role and, as a superuser, grant it to the roles to exempt, or remove it from the list.")
        .report(pgrx::PgLogLevel::WARNING);
    }
}

/// Whether `app` matches `pattern` (compiled once per pattern per backend).
fn application_name_matches(pattern: &str, app: &str) -> bool {
    thread_local! {
        static COMPILED: std::cell::RefCell<Option<(String, Option<regex::Regex>)>> = const { std::cell::RefCell::new(None) };
    }
    COMPILED.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().is_none_or(|(p, _)| p != pattern) {
            *c = Some((pattern.to_string(), regex::Regex::new(pattern).ok()));
        }
        // The check hook refused invalid patterns; fail closed (judge) if one got through.
        c.as_ref().and_then(|(_, r)| r.as_ref()).is_none_or(|r| r.is_match(app))
    })
}

/// A GUC list of identifiers as PostgreSQL reads search_path and similar settings
/// (SplitIdentifierString: comma-separated, unquoted names folded to lower case).
fn split_identifiers(list: &CStr) -> Vec<String> {
    let mut out = Vec::new();
    unsafe {
        let copy = pg_sys::pstrdup(list.as_ptr());
        let mut names: *mut pg_sys::List = std::ptr::null_mut();
        if pg_sys::SplitIdentifierString(copy, b',' as c_char, &mut names) && !names.is_null() {
            for i in 0..(*names).length as usize {
                let p = (*(*names).elements.add(i)).ptr_value as *const c_char;
                out.push(CStr::from_ptr(p).to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// The current per-rule levels. The value was validated when it was set. Parsed once per
/// value: the last value and its levels are kept for the backend and compared with the
/// current value (a few bytes) on each call.
pub fn rule_levels() -> RuleLevels {
    thread_local! {
        static PARSED: std::cell::RefCell<Option<(CString, RuleLevels)>> = const { std::cell::RefCell::new(None) };
    }
    let Some(value) = current_str(&RULE_LEVELS) else { return RuleLevels::default() };
    PARSED.with(|p| {
        let mut p = p.borrow_mut();
        if let Some((v, levels)) = p.as_ref() {
            if v.as_c_str() == value {
                return levels.clone();
            }
        }
        let levels = value.to_str().ok().and_then(|s| RuleLevels::parse(s).ok()).unwrap_or_default();
        *p = Some((value.to_owned(), levels.clone()));
        levels
    })
}

/// The rules' context from the current settings.
pub fn context() -> Context {
    let require_lock_timeout = (LOCK_TIMEOUT_POLICY.get() == LockTimeoutPolicy::Require).then(|| RequireLockTimeout {
        // SAFETY: the backing variable of the lock_timeout GUC, read in the backend's own thread.
        session_lock_timeout_ms: unsafe { pg_sys::LockTimeout }.max(0) as u32,
        max_lock_timeout_ms: MAX_LOCK_TIMEOUT_MS.get().max(1) as u32,
    });
    Context {
        small_table_bytes: SMALL_TABLE_THRESHOLD_KB.get().max(0) as u64 * 1024,
        require_lock_timeout,
        // The version the library was built for: it only loads into a server of that major.
        server_version_num: pg_sys::PG_VERSION_NUM,
    }
}

/// Opens a GUC nest level and sets `name = value` in it (GUC_ACTION_SAVE), as a function's
/// SET clause does (fmgr_security_definer in src/backend/utils/fmgr/fmgr.c): the previous
/// value comes back with `AtEOXact_GUC(true, level)`, or with the (sub)transaction's abort.
/// Returns the level.
///
/// # Safety
/// Called inside a transaction; the caller must pop the level (or let an abort do it).
pub unsafe fn set_in_new_nest_level(name: &CStr, value: &CStr) -> i32 {
    unsafe {
        let nest_level = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        nest_level
    }
}

/// GUC check hook: rejects an unknown rule or level when the value is set (SET, ALTER
/// SYSTEM, postgresql.conf reload), with the reason in the error's DETAIL.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_rule_levels(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    unsafe {
        if newval.is_null() || (*newval).is_null() {
            return true;
        }
        let value = CStr::from_ptr(*newval).to_string_lossy();
        match RuleLevels::parse(&value) {
            Ok(_) => true,
            Err(reason) => {
                let detail = CString::new(reason).unwrap_or_default();
                pg_sys::GUC_check_errdetail_string = pg_sys::pstrdup(detail.as_ptr());
                let hint = CString::new(format!(
                    "Rules: {}. Levels: off, warning, error.",
                    crate::rules::RULES.iter().map(|r| r.id).collect::<Vec<_>>().join(", ")
                ))
                .unwrap_or_default();
                pg_sys::GUC_check_errhint_string = pg_sys::pstrdup(hint.as_ptr());
                false
            }
        }
    }
}

/// GUC check hook of exempt_roles: the value must be a list of role names.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_exempt_roles(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    unsafe {
        if newval.is_null() || (*newval).is_null() {
            return true;
        }
        let copy = pg_sys::pstrdup(*newval);
        let mut names: *mut pg_sys::List = std::ptr::null_mut();
        if pg_sys::SplitIdentifierString(copy, b',' as c_char, &mut names) {
            return true;
        }
        pg_sys::GUC_check_errdetail_string = pg_sys::pstrdup(c"List syntax is invalid: expected role names separated by commas.".as_ptr());
        false
    }
}

/// GUC check hook of application_name_pattern: the value must be a valid regular expression.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_application_name_pattern(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    unsafe {
        if newval.is_null() || (*newval).is_null() {
            return true;
        }
        let value = CStr::from_ptr(*newval).to_string_lossy();
        match regex::Regex::new(&value) {
            Ok(_) => true,
            Err(e) => {
                let detail =
                    CString::new(format!("Invalid regular expression: {}", e.to_string().lines().last().unwrap_or(""))).unwrap_or_default();
                pg_sys::GUC_check_errdetail_string = pg_sys::pstrdup(detail.as_ptr());
                false
            }
        }
    }
}

pub fn register() {
    // A PGC_POSTMASTER setting can only be defined while shared_preload_libraries is
    // processed ("cannot create PGC_POSTMASTER variables after startup" is FATAL).
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        GucRegistry::define_int_guc(
            c"pg_migration_guard.audit_queue_size",
            c"Shared memory for audit records on their way to the audit writers.",
            c"Records wait here until the database's audit writer has inserted them into pg_migration_guard.audit_log. \
    When it is full, a DDL statement waits up to 10 s for space, then its record is only in the server log. \
    Can only be set at server start.",
            &AUDIT_QUEUE_SIZE_KB,
            64,
            1024 * 1024,
            GucContext::Postmaster,
            GucFlags::UNIT_KB,
        );
    }
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
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"pg_migration_guard.rule_levels",
            c"Per-rule levels overriding the defaults, as 'rule-id:level, ...' with levels off, warning, error.",
            c"Example: 'renaming-column:error, ban-drop-column:off'. Rules not listed keep their default level \
(error for lock/rewrite/scan rules, warning for breaking changes). An unknown rule or level is an error \
when the value is set. Only superusers can change it.",
            &RULE_LEVELS,
            GucContext::Suset,
            GucFlags::default(),
            Some(check_rule_levels),
            None,
            None,
        );
    }
    GucRegistry::define_enum_guc(
        c"pg_migration_guard.on_judging_error",
        c"What pg_migration_guard does with a DDL statement it could not judge: reject or allow.",
        c"reject (default) refuses the statement with an ERROR that names the cause (the guard failed while \
reading the catalog, or a fact could not be decided without waiting for another session's lock) and audits it \
as rejected; allow lets it run unjudged with a WARNING naming the cause and audits it as allowed. \
In mode warn a statement that could not be judged always runs, with the WARNING. Only superusers can change it.",
        &ON_JUDGING_ERROR,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"pg_migration_guard.log_decisions",
        c"Which of pg_migration_guard's decisions are written to the server log: all or flagged.",
        c"all (default) writes one LOG line per decision, as pgaudit does per DDL statement. flagged writes the lines of \
warned, rejected, overridden and exempt decisions only; an allowed decision then goes to the audit table only \
(pg_migration_guard.audit_log), unless its record cannot be queued there (no audit table in the database, a hot \
standby, the audit queue full), in which case its line is written after all. Only superusers can change it.",
        &LOG_DECISIONS,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_migration_guard.small_table_threshold",
        c"Relations smaller than this are exempt from the rewrite, scan and index-build rules.",
        c"Measured from the relation's actual block count (main fork and TOAST, summed over the partitions \
the statement reaches; indexes excluded). 0 judges every relation. Lock-only rules \
(require-concurrent-index-deletion, adding-required-field) and breaking-change rules ignore size.",
        &SMALL_TABLE_THRESHOLD_KB,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_KB,
    );
    GucRegistry::define_enum_guc(
        c"pg_migration_guard.lock_timeout_policy",
        c"How pg_migration_guard keeps a DDL statement that waits for a lock from stalling other sessions: off, require or auto.",
        c"auto (default): the guard takes the statement's locks itself in short waits of lock_attempt_timeout, \
and between two attempts waits outside the lock queue for the transactions holding conflicting locks to end, \
so queries queued behind it run; for up to lock_retry_budget, then fails with SQLSTATE 55P03 \
naming the blocking sessions. require: a statement that needs a lock blocking reads or writes is rejected \
(rule require-lock-timeout) unless lock_timeout is between 1ms and max_lock_timeout. off: no lock-queue protection. \
Only superusers can change it.",
        &LOCK_TIMEOUT_POLICY,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_migration_guard.lock_attempt_timeout",
        c"Longest single wait in the lock queue when lock_timeout_policy is auto.",
        c"Queries that arrive while the statement waits queue behind it for at most this long. A session lock_timeout \
below it is used instead. Only superusers can change it.",
        &LOCK_ATTEMPT_TIMEOUT_MS,
        1,
        60_000,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_migration_guard.lock_retry_budget",
        c"How long, in all, lock_timeout_policy = auto keeps trying to take a statement's locks before failing with SQLSTATE 55P03.",
        c"Counted from the first attempt, waits and pauses included. A session lock_timeout below it is used instead. \
0 means a single attempt. Only superusers can change it.",
        &LOCK_RETRY_BUDGET_MS,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_migration_guard.max_lock_timeout",
        c"Largest lock_timeout lock_timeout_policy = require accepts for a statement whose locks block reads or writes.",
        c"Only superusers can change it.",
        &MAX_LOCK_TIMEOUT_MS,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_bool_guc(
        c"pg_migration_guard.allow_overrides",
        c"Whether a statement's pg_migration_guard:allow annotation may let it through for the rules it names.",
        c"When off, annotations are still checked (an unknown rule or a missing reason is an error) but not honoured: \
the statement is judged as if it had none, and the error says so. Only superusers can change it.",
        &ALLOW_OVERRIDES,
        GucContext::Suset,
        GucFlags::default(),
    );
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"pg_migration_guard.exempt_roles",
            c"Roles whose members' sessions are not judged (their statements run and are audited as exempt).",
            c"A comma-separated list of role names, as in search_path. A session is exempt when its session user \
(SET ROLE and SECURITY DEFINER functions do not change it) is a member of a listed role through memberships \
every one of which a superuser granted; logging in as a listed role, superuser status and memberships granted \
by other roles do not count. List NOLOGIN group roles. Names of roles that do not exist are ignored (the audit \
launcher logs a WARNING for each at server start and reload). Only superusers can change it; reloaded with the \
configuration.",
            &EXEMPT_ROLES,
            GucContext::Suset,
            GucFlags::default(),
            Some(check_exempt_roles),
            None,
            None,
        );
        GucRegistry::define_string_guc_with_hooks(
            c"pg_migration_guard.application_name_pattern",
            c"Regular expression selecting, by application_name, the sessions the guard judges; empty judges every session.",
            c"Sessions whose application_name does not match are not judged (their statements are audited as exempt). \
Rust regex syntax (like PostgreSQL's ~ operator for ordinary patterns), unanchored: use ^...$ for a whole-name match. \
A session can change its own application_name, so this selects whom the guard watches; it is not an access control \
(use exempt_roles for that). Validated when set. Only superusers can change it.",
            &APPLICATION_NAME_PATTERN,
            GucContext::Suset,
            GucFlags::default(),
            Some(check_application_name_pattern),
            None,
            None,
        );
    }
    GucRegistry::define_enum_guc(
        c"pg_migration_guard.citus_internal",
        c"On a Citus node: judge (default) or trust the shard DDL Citus itself sends for statements its coordinator judged.",
        c"trust: a statement is not judged, and is audited as exempt with the coordinator's global pid, when the \
session's application_name is one Citus gives its internal connections ('citus_internal gpid=N' or \
'citus_rebalancer gpid=N', as Citus' IsCitusInternalBackend) and every relation the statement locks is a known \
shard or, on a worker, a distributed table's copy. This is what lets the coordinator judge each statement once \
with the table's real size, and lets shard moves and the rebalancer rebuild indexes and constraints on the shards \
they copy. A session can set its own application_name: trust extends to any session that claims to be Citus, as \
far as shards and distributed tables go, which is the boundary Citus itself relies on (docs/citus.md). Set it on \
every node of a Citus cluster. Without Citus installed it has no effect. Only superusers can change it.",
        &CITUS_INTERNAL,
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

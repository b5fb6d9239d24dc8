//! Applies the plan's Landlock rules to the app, just before its seccomp filter and exec
//! (after no_new_privs, which Landlock needs). Best effort: a kernel with an older Landlock
//! enforces what it knows, one without Landlock none; the result says which.

use landlock::{
    ABI, Access, AccessFs, BitFlags, CompatLevel, Compatible, LandlockStatus, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};

use super::SetupError;
use crate::plan::landlock::{FsAccess, FsRule};

/// The newest Landlock ABI this code knows; older kernels get the part they support.
const ABI_WANTED: ABI = ABI::V10;

fn rights(access: FsAccess) -> BitFlags<AccessFs> {
    let all = AccessFs::from_all(ABI_WANTED);
    match access {
        FsAccess::List => AccessFs::ReadDir.into(),
        // Connecting to a Unix socket by path is a "write" right to Landlock (ABI 9); a
        // read-only mount allows it, so the rule does too.
        FsAccess::Read => AccessFs::from_read(ABI_WANTED) | AccessFs::ResolveUnix,
        FsAccess::ReadWrite => all,
        FsAccess::Device => {
            AccessFs::ReadFile
                | AccessFs::WriteFile
                | AccessFs::ReadDir
                | AccessFs::IoctlDev
                | AccessFs::Truncate
        }
        // Writes to /proc files open them with O_TRUNC (`echo 500 > /proc/self/oom_score_adj`).
        FsAccess::Proc => {
            AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::ReadDir | AccessFs::Truncate
        }
    }
}

/// Restricts this process (the app, before exec) to `rules`; returns how far the kernel
/// enforces them, in words.
pub fn apply(rules: &[FsRule]) -> Result<String, SetupError> {
    let err = |what: &str| {
        let what = what.to_owned();
        move |e: landlock::RulesetError| SetupError::new(format!("landlock: {what}"), e)
    };
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(ABI_WANTED))
        .map_err(err("handle file access"))?
        // Signals and abstract Unix sockets stop at the sandbox too (pid and network
        // namespaces already do that; this holds even if they did not).
        .scope(Scope::from_all(ABI_WANTED))
        .map_err(err("scope signals and abstract sockets"))?
        .create()
        .map_err(err("create the ruleset"))?;
    let mut applied = 0;
    for rule in rules {
        // A path the root does not have (an optional system folder) needs no rule.
        let Ok(fd) = PathFd::new(&rule.path) else {
            continue;
        };
        let is_dir =
            nix::sys::stat::fstat(&fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
        let mut access = rights(rule.access);
        if !is_dir {
            access &= AccessFs::from_file(ABI_WANTED);
        }
        if access.is_empty() {
            continue;
        }
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, access))
            .map_err(err(&format!("allow {}", rule.path.display())))?;
        applied += 1;
    }
    let status = ruleset.restrict_self().map_err(err("restrict the app"))?;
    Ok(describe(status.ruleset, status.landlock, applied))
}

/// The outcome in words, for `hutch inspect` and the window's anatomy view.
fn describe(ruleset: RulesetStatus, kernel: LandlockStatus, applied: usize) -> String {
    match (ruleset, kernel) {
        (RulesetStatus::NotEnforced, LandlockStatus::NotEnabled) => {
            "not enforced: this kernel has Landlock but it is off (add landlock to the lsm= boot \
             option)"
                .to_owned()
        }
        (RulesetStatus::NotEnforced, _) => "not enforced: this kernel has no Landlock".to_owned(),
        (full, LandlockStatus::Available { effective_abi, .. }) => format!(
            "enforced: {applied} paths granted (Landlock ABI {}{})",
            effective_abi as i32,
            if full == RulesetStatus::FullyEnforced {
                ""
            } else {
                "; rights of newer ABIs are not in this kernel"
            }
        ),
        (_, _) => format!("enforced: {applied} paths granted"),
    }
}

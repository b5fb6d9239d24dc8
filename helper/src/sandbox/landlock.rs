//! Applies the plan's Landlock rules to the app, just before its last seccomp filter and exec
//! (after no_new_privs, which Landlock needs). Best effort: a kernel with an older Landlock
//! enforces what it knows, one without Landlock none; the result says which.
//!
//! The ruleset is made ahead ([`begin`]), while the sandbox is prepared, with the rules of the
//! base mounts (most of them); the launch adds the rest ([`Pending::finish`]).

use landlock::{
    ABI, Access, AccessFs, BitFlags, CompatLevel, Compatible, LandlockStatus, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope,
};

use std::path::{Path, PathBuf};

use super::SetupError;
use crate::plan::landlock::{FsAccess, FsRule};

/// The newest Landlock ABI this code knows; older kernels get the part they support.
const ABI_WANTED: ABI = ABI::V10;

fn rights(access: FsAccess, sockets: bool) -> BitFlags<AccessFs> {
    // Connecting to a Unix socket by path (ABI 9) only where the rule says so: a socket in a
    // shared folder would let the app make what listens there act for it.
    let all = AccessFs::from_all(ABI_WANTED) & !AccessFs::ResolveUnix;
    let connect = if sockets {
        BitFlags::from(AccessFs::ResolveUnix)
    } else {
        BitFlags::empty()
    };
    connect
        | match access {
            FsAccess::List => AccessFs::ReadDir.into(),
            FsAccess::Read => AccessFs::from_read(ABI_WANTED),
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

/// A ruleset made ahead, while the sandbox is prepared, with the rules of its base mounts.
#[derive(Debug)]
pub struct Pending {
    ruleset: RulesetCreated,
    /// The rules added so far.
    added: Vec<FsRule>,
    /// How many of them the kernel took (paths that exist).
    applied: usize,
    /// The paths of the rules taken.
    applied_paths: Vec<PathBuf>,
}

fn landlock_err(what: &str) -> impl FnOnce(landlock::RulesetError) -> SetupError {
    let what = what.to_owned();
    move |e| SetupError::new(format!("landlock: {what}"), e)
}

/// Makes the ruleset and adds `rules`, their paths looked up under `root` (the prepared root,
/// before pivot_root: a rule holds the inode it was made on, which the pivot does not change).
pub fn begin(root: &Path, rules: &[FsRule]) -> Result<Pending, SetupError> {
    let ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(ABI_WANTED))
        .map_err(landlock_err("handle file access"))?
        // Signals and abstract Unix sockets stop at the sandbox too (pid and network
        // namespaces already do that; this holds even if they did not).
        .scope(Scope::from_all(ABI_WANTED))
        .map_err(landlock_err("scope signals and abstract sockets"))?
        .create()
        .map_err(landlock_err("create the ruleset"))?;
    let mut pending = Pending {
        ruleset,
        added: Vec::new(),
        applied: 0,
        applied_paths: Vec::new(),
    };
    pending.add(root, rules)?;
    Ok(pending)
}

impl Pending {
    fn add(&mut self, root: &Path, rules: &[FsRule]) -> Result<(), SetupError> {
        for rule in rules {
            self.added.push(rule.clone());
            let path = root.join(rule.path.strip_prefix("/").unwrap_or(&rule.path));
            // A path the root does not have (an optional system folder) needs no rule.
            let Ok(fd) = PathFd::new(&path) else {
                continue;
            };
            let is_dir = nix::sys::stat::fstat(&fd)
                .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
            let mut access = rights(rule.access, rule.sockets);
            if !is_dir {
                access &= AccessFs::from_file(ABI_WANTED);
            }
            if access.is_empty() {
                continue;
            }
            (&mut self.ruleset)
                .add_rule(PathBeneath::new(fd, access))
                .map_err(landlock_err(&format!("allow {}", rule.path.display())))?;
            self.applied += 1;
            self.applied_paths.push(rule.path.clone());
        }
        Ok(())
    }

    /// Whether a rule made ahead on `path` is hidden now: at or beneath a file system the
    /// launch mounted (a share over a base tmpfs, say). Landlock skips a hidden mount point
    /// when it walks a path, so such a rule grants nothing: it is made again on what the path
    /// shows now.
    fn hidden(path: &Path, mounted: &[PathBuf]) -> bool {
        mounted.iter().any(|m| path.starts_with(m))
    }

    /// Whether these rules may stand for `rules` made afresh: every rule made ahead that is
    /// still in effect (not hidden by a launch mount) is among `rules`, or no rule of `rules`
    /// names its path (a base rule the full list drops because a broader one covers it).
    pub fn fits(&self, rules: &[FsRule], mounted: &[PathBuf]) -> bool {
        self.added.iter().all(|ahead| {
            Self::hidden(&ahead.path, mounted)
                || rules.iter().all(|r| r.path != ahead.path || r == ahead)
        })
    }

    /// Adds the rest of `rules` (paths as the app sees them now, with `mounted` the launch's
    /// mount points) and restricts this process; returns how far the kernel enforces them,
    /// in words.
    pub fn finish(mut self, rules: &[FsRule], mounted: &[PathBuf]) -> Result<String, SetupError> {
        let rest: Vec<FsRule> = rules
            .iter()
            .filter(|r| !self.added.contains(r) || Self::hidden(&r.path, mounted))
            .cloned()
            .collect();
        // Rules made ahead that a launch mount hides are not counted as granted.
        let hidden = self
            .applied_paths
            .iter()
            .filter(|p| Self::hidden(p, mounted))
            .count();
        self.applied -= hidden;
        self.add(Path::new("/"), &rest)?;
        let status = self
            .ruleset
            .restrict_self()
            .map_err(landlock_err("restrict the app"))?;
        Ok(describe(status.ruleset, status.landlock, self.applied))
    }
}

/// Restricts this process (the app, before exec) to `rules`; returns how far the kernel
/// enforces them, in words.
pub fn apply(rules: &[FsRule]) -> Result<String, SetupError> {
    begin(Path::new("/"), &[])?.finish(rules, &[])
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(path: &str, access: FsAccess) -> FsRule {
        FsRule {
            path: path.into(),
            access,
            sockets: access == FsAccess::ReadWrite,
        }
    }

    #[test]
    fn connecting_to_unix_sockets_is_granted_only_where_a_rule_says_so() {
        for access in [FsAccess::Read, FsAccess::ReadWrite, FsAccess::List] {
            assert!(
                !rights(access, false).contains(AccessFs::ResolveUnix),
                "{access:?}"
            );
            assert!(
                rights(access, true).contains(AccessFs::ResolveUnix),
                "{access:?}"
            );
        }
        // The rest of a right is the same either way.
        assert_eq!(
            rights(FsAccess::ReadWrite, true) & !AccessFs::ResolveUnix,
            rights(FsAccess::ReadWrite, false)
        );
        assert!(rights(FsAccess::ReadWrite, false).contains(AccessFs::MakeSock));
    }

    #[test]
    fn rules_made_ahead_fit_unless_a_path_now_has_other_rights() {
        let root = std::env::temp_dir().join(format!("hutch-landlock-{}", std::process::id()));
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        std::fs::create_dir_all(root.join("usr")).unwrap();
        let ahead = [
            rule("/usr", FsAccess::Read),
            rule("/tmp", FsAccess::ReadWrite),
        ];
        // Made on the real kernel (Landlock or not: best effort either way).
        let pending = begin(&root, &ahead).unwrap();
        assert_eq!(pending.applied, 2, "both paths exist under the root");
        // The launch's list has them and more, or leaves one out: fits.
        let more = [
            rule("/usr", FsAccess::Read),
            rule("/tmp", FsAccess::ReadWrite),
            rule("/home/alice", FsAccess::ReadWrite),
        ];
        assert!(pending.fits(&more, &[]));
        assert!(pending.fits(&[rule("/usr", FsAccess::Read)], &[]));
        // /tmp with other rights and no mount over it: only a fresh ruleset is right.
        let other = [rule("/usr", FsAccess::Read), rule("/tmp", FsAccess::Read)];
        assert!(!pending.fits(&other, &[]));
        // A share mounted over the base tmpfs hides the rule made ahead: fits, and the rule
        // is made again (whatever its rights) on what /tmp shows now.
        assert!(pending.fits(&other, &["/tmp".into()]));
        assert!(Pending::hidden(Path::new("/tmp"), &["/tmp".into()]));
        assert!(Pending::hidden(Path::new("/tmp/x"), &["/tmp".into()]));
        assert!(!Pending::hidden(Path::new("/tmpx"), &["/tmp".into()]));
        assert!(!Pending::hidden(Path::new("/"), &["/tmp".into()]));
        std::fs::remove_dir_all(&root).unwrap();
    }
}

//! The sandbox's seccomp filter, in the spirit of Flatpak's denylist, built with `seccompiler`.
//!
//! Filters are stacked (the kernel applies the strictest answer), all built ahead
//! ([`Filters`]). The base ones are the same for every sandbox, so the app's process installs
//! them while the sandbox is prepared:
//! 1. calls that fail with `EPERM`: kernel keyrings, ptrace, perf events, module loading, kexec,
//!    bpf, userfaultfd, io_uring, the mount calls (the root is built already), TIOCSTI/TIOCLINUX
//!    ioctls (compared on the low 32 bits, as the kernel does: CVE-2019-10063), unusual socket
//!    families, personality changes;
//! 2. calls that fail with `ENOSYS`, so libc falls back to a call the first filter can inspect:
//!    `clone3` (its flags are in memory a filter cannot read) and the new mount API;
//! 3. on x86_64, every x32-ABI call (`ENOSYS`): a filter keyed on x86_64 numbers would not see
//!    them (Firejail's x32 hole). Calls from other ABIs (i386 `int 0x80`) do not match the
//!    filters' architecture and kill the process.
//!
//! The profile's part ([`Filters::for_policy`]) comes with the launch: new user namespaces fail with
//! `EPERM` unless the profile allows them.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op,
    SeccompCondition as Cond, SeccompFilter, SeccompRule, TargetArch,
};

/// What the filter may let through.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    pub allow_user_namespaces: bool,
}

/// A filter could not be built or installed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("unsupported architecture {0} for the seccomp filter")]
    Arch(String),
    #[error("cannot build the seccomp filter: {0}")]
    Build(seccompiler::BackendError),
    #[error("cannot install the seccomp filter: {0}")]
    Install(seccompiler::Error),
}

impl From<seccompiler::BackendError> for SeccompError {
    fn from(e: seccompiler::BackendError) -> Self {
        Self::Build(e)
    }
}

impl From<seccompiler::Error> for SeccompError {
    fn from(e: seccompiler::Error) -> Self {
        Self::Install(e)
    }
}

/// Calls that fail with `EPERM` in every sandbox: Flatpak's denylist (`flatpak-run.c`,
/// `setup_seccomp`) and the calls that widen what the kernel exposes. Each entry's reason is in
/// SECURITY.md; `tests/escape/try_syscall.py` calls each inside and outside a sandbox.
pub const DENIED: &[libc::c_long] = &[
    libc::SYS_acct,
    libc::SYS_add_key,
    libc::SYS_bpf,
    libc::SYS_clock_adjtime,
    libc::SYS_clock_settime,
    libc::SYS_delete_module,
    libc::SYS_fanotify_init,
    libc::SYS_finit_module,
    libc::SYS_init_module,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_io_uring_setup,
    libc::SYS_kexec_file_load,
    libc::SYS_kexec_load,
    libc::SYS_keyctl,
    libc::SYS_mbind,
    libc::SYS_get_mempolicy,
    libc::SYS_set_mempolicy,
    libc::SYS_migrate_pages,
    libc::SYS_move_pages,
    libc::SYS_mount,
    libc::SYS_name_to_handle_at,
    libc::SYS_open_by_handle_at,
    libc::SYS_perf_event_open,
    libc::SYS_pivot_root,
    libc::SYS_pidfd_getfd,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_ptrace,
    libc::SYS_quotactl,
    libc::SYS_reboot,
    libc::SYS_request_key,
    libc::SYS_setns,
    libc::SYS_settimeofday,
    libc::SYS_swapoff,
    libc::SYS_swapon,
    libc::SYS_syslog,
    libc::SYS_umount2,
    libc::SYS_userfaultfd,
    libc::SYS_vhangup,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_adjtimex,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_uselib,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_lookup_dcookie,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_modify_ldt,
];

/// Calls that fail with `EPERM` unless the profile lets the app make namespaces of its own (a
/// browser's sandbox): `unshare` (all of it, as Flatpak), `clone` with `CLONE_NEWUSER`, and
/// `chroot`.
pub const NAMESPACE_CALLS: &[libc::c_long] = &[libc::SYS_unshare, libc::SYS_chroot];

pub const NOT_IMPLEMENTED: &[libc::c_long] = &[
    libc::SYS_clone3,
    #[cfg(target_arch = "x86_64")]
    SYS_OPEN_TREE_ATTR,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fsopen,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
];

/// `open_tree_attr` (Linux 6.15), which the libc crate does not name yet.
#[cfg(target_arch = "x86_64")]
const SYS_OPEN_TREE_ATTR: libc::c_long = 467;

/// Terminal ioctls that inject input or read the console (CVE-2017-5226, CVE-2023-28100), and
/// that leave a terminal the app was handed (the caller's, without `-t`) broken after it:
/// another line discipline (`TIOCSETD`, also a way into the kernel's rarely used line
/// disciplines) and exclusive mode (`TIOCEXCL`: the user's own programs can no longer open it).
pub const DENIED_IOCTLS: &[u64] = &[
    libc::TIOCSTI,
    libc::TIOCLINUX,
    libc::TIOCSETD,
    libc::TIOCEXCL,
];

/// Socket families allowed: AF_UNSPEC, AF_UNIX, AF_INET, AF_INET6, AF_NETLINK.
const ALLOWED_FAMILIES: &[u64] = &[0, 1, 2, 10, 16];

fn arch() -> Result<TargetArch, SeccompError> {
    std::env::consts::ARCH
        .try_into()
        .map_err(|_| SeccompError::Arch(std::env::consts::ARCH.to_owned()))
}

fn cond(arg: u8, len: Len, op: Op, value: u64) -> Result<Cond, SeccompError> {
    Ok(Cond::new(arg, len, op, value)?)
}

/// Rules matching `socket(domain, ...)` for every domain outside [`ALLOWED_FAMILIES`].
fn unusual_families() -> Result<Vec<SeccompRule>, SeccompError> {
    let mut rules = Vec::new();
    let mut low = 0;
    for &allowed in ALLOWED_FAMILIES {
        if allowed > low {
            rules.push(SeccompRule::new(vec![
                cond(0, Len::Dword, Op::Ge, low)?,
                cond(0, Len::Dword, Op::Lt, allowed)?,
            ])?);
        }
        low = allowed + 1;
    }
    rules.push(SeccompRule::new(vec![cond(0, Len::Dword, Op::Ge, low)?])?);
    Ok(rules)
}

/// A program that fails the calls `rules` match with `errno` and allows the rest.
fn failing_with(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    errno: i32,
) -> Result<BpfProgram, SeccompError> {
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        arch()?,
    )?;
    Ok(filter.try_into()?)
}

/// The `EPERM` filter.
pub fn deny_filter() -> Result<BpfProgram, SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|&nr| (nr, Vec::new())).collect();
    let ioctls = DENIED_IOCTLS
        .iter()
        .map(|&req| Ok(SeccompRule::new(vec![cond(1, Len::Dword, Op::Eq, req)?])?))
        .collect::<Result<Vec<_>, SeccompError>>()?;
    rules.insert(libc::SYS_ioctl, ioctls);
    rules.insert(libc::SYS_socket, unusual_families()?);
    // personality(): only PER_LINUX, PER_LINUX32 and the 0xffffffff query.
    rules.insert(
        libc::SYS_personality,
        vec![SeccompRule::new(vec![
            cond(0, Len::Dword, Op::Ne, 0)?,
            cond(0, Len::Dword, Op::Ne, 0x0008)?,
            cond(0, Len::Dword, Op::Ne, 0xffff_ffff)?,
        ])?],
    );
    failing_with(rules, libc::EPERM)
}

/// The `EPERM` filter for namespaces of the app's own ([`NAMESPACE_CALLS`], and `clone` with
/// `CLONE_NEWUSER`).
pub fn user_namespace_filter() -> Result<BpfProgram, SeccompError> {
    let newuser = libc::CLONE_NEWUSER as u64;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        NAMESPACE_CALLS.iter().map(|&nr| (nr, Vec::new())).collect();
    rules.insert(
        libc::SYS_clone,
        vec![SeccompRule::new(vec![cond(
            0,
            Len::Dword,
            Op::MaskedEq(newuser),
            newuser,
        )?])?],
    );
    failing_with(rules, libc::EPERM)
}

/// The `ENOSYS` filter.
pub fn enosys_filter() -> Result<BpfProgram, SeccompError> {
    let rules = NOT_IMPLEMENTED.iter().map(|&nr| (nr, Vec::new())).collect();
    failing_with(rules, libc::ENOSYS)
}

/// On x86_64, a filter that fails every x32-ABI call (numbers with bit 30 set) with ENOSYS.
///
/// seccompiler keys rules on exact syscall numbers, so the whole x32 range is covered by this
/// five-instruction program instead of hundreds of rules.
#[cfg(target_arch = "x86_64")]
pub fn x32_filter() -> BpfProgram {
    const LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS
    const JEQ_K: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
    const JGE_K: u16 = 0x05 | 0x30; // BPF_JMP | BPF_JGE | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    let insn = |code, jt, jf, k| seccompiler::sock_filter { code, jt, jf, k };
    vec![
        insn(LD_W_ABS, 0, 0, 4),              // A = seccomp_data.arch
        insn(JEQ_K, 0, 3, AUDIT_ARCH_X86_64), // not x86_64: allow (filter 1 kills it)
        insn(LD_W_ABS, 0, 0, 0),              // A = seccomp_data.nr
        insn(JGE_K, 0, 1, X32_SYSCALL_BIT),   // x32 call?
        insn(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        insn(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ]
}

/// Every filter a sandbox may get, built ahead (before installing any, so a build error leaves
/// nothing half-applied): the base ones, installed while the sandbox is prepared, and the ones a
/// profile's policy adds, installed at the launch.
#[derive(Debug)]
pub struct Filters {
    pub base: Vec<BpfProgram>,
    no_user_namespaces: Vec<BpfProgram>,
}

impl Filters {
    pub fn build() -> Result<Self, SeccompError> {
        #[allow(unused_mut)]
        let mut base = vec![deny_filter()?, enosys_filter()?];
        #[cfg(target_arch = "x86_64")]
        base.push(x32_filter());
        Ok(Self {
            base,
            no_user_namespaces: vec![user_namespace_filter()?],
        })
    }

    /// What `policy` adds to the base filters.
    pub fn for_policy(&self, policy: Policy) -> &[BpfProgram] {
        if policy.allow_user_namespaces {
            &[]
        } else {
            &self.no_user_namespaces
        }
    }
}

/// Installs the filters on the calling thread. Needs no_new_privs (or CAP_SYS_ADMIN).
pub fn install(programs: &[BpfProgram]) -> Result<(), SeccompError> {
    for program in programs {
        seccompiler::apply_filter(program)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_build_for_both_policies() {
        let filters = Filters::build().unwrap();
        assert!(filters.base.iter().all(|p| !p.is_empty() && p.len() < 4096));
        // Only a profile that forbids user namespaces adds a filter.
        let strict = filters.for_policy(Policy {
            allow_user_namespaces: false,
        });
        let loose = filters.for_policy(Policy {
            allow_user_namespaces: true,
        });
        assert_eq!((strict.len(), loose.len()), (1, 0));
        assert!(strict[0].len() < filters.base[0].len());
    }

    #[test]
    fn family_rules_cover_exactly_the_gaps() {
        // 0, 1, 2, 10, 16 allowed: gaps [3,10), [11,16), [17,..) -> three rules.
        assert_eq!(unusual_families().unwrap().len(), 3);
    }
}

//! The seccomp filter, call by call: `tests/escape/try_syscall.py` calls every system call the
//! filter denies, with harmless invalid arguments (as Flatpak's tests/try-syscall.c does).
//! Outside a sandbox the kernel answers each (as the user, or as root of a throwaway user
//! namespace); inside, the filter does: `EPERM`, or `ENOSYS` where libc must fall back.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use hutch_helper::sandbox::seccomp::{DENIED, DENIED_IOCTLS, NAMESPACE_CALLS, NOT_IMPLEMENTED};
use hutch_tests::{TestEnv, env_or_skip, ok};

/// What the kernel refuses an unprivileged user before it looks at any argument (a capability
/// of the host's own user namespace: `EPERM` outside too), or lacks where it was built without
/// it (`ENOSYS`): shown blocked inside, never reachable without root anywhere.
const PRIVILEGED: &[&str] = &[
    "acct",
    "reboot",
    "swapon",
    "swapoff",
    "syslog",
    "vhangup",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
];

/// Answered `ENOSYS` inside, so libc falls back to a call the filter can look at.
const FALLBACK: &[&str] = &[
    "clone3",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "open_tree",
    "move_mount",
    "mount_setattr",
    "open_tree_attr",
];

/// Denied only when the profile does not let the app make namespaces of its own.
const NAMESPACES: &[&str] = &["unshare", "chroot", "clone(CLONE_NEWUSER)"];

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("escape/try_syscall.py")
}

type Results = BTreeMap<String, (i64, String)>;

fn parse(text: &str, what: &str) -> Results {
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("{what}: no result in {text}"));
    let value: BTreeMap<String, (i64, String)> =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{what}: {e}: {line}"));
    value
}

fn outside(env: &TestEnv, wrapper: &[&str]) -> Results {
    let script = script();
    let mut argv: Vec<&str> = wrapper.to_vec();
    argv.extend(["/usr/bin/python3", script.to_str().unwrap()]);
    let mut cmd = Command::new(argv[0]);
    env.apply(&mut cmd);
    cmd.args(&argv[1..]).stdin(Stdio::null());
    let out = hutch_tests::run_with_timeout(cmd, Duration::from_secs(60));
    parse(&ok(&out), &format!("outside {wrapper:?}"))
}

fn inside(env: &TestEnv, opts: &[&str]) -> Results {
    let script = script();
    let mut args = vec!["run"];
    args.extend_from_slice(opts);
    args.extend(["--share", script.to_str().unwrap()]);
    args.extend(["--", "/usr/bin/python3", script.to_str().unwrap()]);
    parse(&ok(&env.hutch(&args)), "inside")
}

#[test]
fn every_denied_call_is_blocked_inside_and_reaches_the_kernel_outside() {
    let env = env_or_skip!();
    let user = outside(&env, &[]);
    let userns = outside(&env, &["unshare", "-U", "-r", "-m"]);
    let sandboxed = inside(&env, &[]);
    if sandboxed.contains_key("error") {
        hutch_tests::skip_or_fail("the probe knows x86_64 numbers only");
        return;
    }
    // The probe calls everything the filter lists.
    let probed: Vec<i64> = sandboxed.values().map(|(nr, _)| *nr).collect();
    for nr in DENIED.iter().chain(NOT_IMPLEMENTED).chain(NAMESPACE_CALLS) {
        assert!(
            probed.contains(nr),
            "system call {nr} is filtered but not probed"
        );
    }
    assert_eq!(
        sandboxed.keys().filter(|k| k.starts_with("ioctl(")).count(),
        DENIED_IOCTLS.len(),
        "every denied terminal ioctl is probed"
    );
    let mut table = String::from(
        "| call | outside | outside, root of its own user namespace | inside |\n|---|---|---|---|\n",
    );
    for (name, (_, inner)) in &sandboxed {
        let (out, ns) = (&user[name].1, &userns[name].1);
        table.push_str(&format!("| {name} | {out} | {ns} | {inner} |\n"));
        let want = if FALLBACK.contains(&name.as_str()) {
            "ENOSYS"
        } else {
            "EPERM"
        };
        assert_eq!(inner, want, "{name} inside");
        if !PRIVILEGED.contains(&name.as_str()) {
            assert!(
                out != inner || ns != inner,
                "{name}: outside the kernel answered {out} / {ns}, the same as the filter: \
                 the probe cannot tell them apart"
            );
        }
    }
    println!("{table}");
    // With namespaces allowed (a browser's own sandbox), those calls reach the kernel inside.
    env.write_profile("nested", "allow_user_namespaces = true\n");
    let allowed = inside(&env, &["--profile", "nested"]);
    for name in NAMESPACES {
        assert_ne!(allowed[*name].1, "EPERM", "{name} with namespaces allowed");
        assert_eq!(
            allowed[*name].1, user[*name].1,
            "{name}: the kernel's answer"
        );
    }
    assert_eq!(allowed["mount"].1, "EPERM", "everything else stays denied");
}

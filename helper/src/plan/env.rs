//! The sandboxed app's environment: a documented allowlist, never the caller's whole
//! environment (which may hold tokens, agent sockets and the helper's own variables).

use std::collections::BTreeMap;

/// Variables copied from the caller when set: terminal and locale only.
pub const PASSED_THROUGH: &[&str] = &["TERM", "COLORTERM", "NO_COLOR", "LANG", "LANGUAGE", "TZ"];

/// `PATH` inside the sandbox.
pub const SANDBOX_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";

/// Whether a caller variable is passed through: [`PASSED_THROUGH`] and the `LC_*` family.
pub fn passes(name: &str) -> bool {
    PASSED_THROUGH.contains(&name)
        || (name.starts_with("LC_")
            && name[3..]
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b == b'_'))
}

/// Identity of the user inside.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    pub user: &'a str,
    pub home: &'a str,
    pub shell: &'a str,
    pub hostname: &'a str,
}

/// Builds the environment: fixed identity variables, the allowed caller variables, then the
/// profile's own `env` table (which wins).
pub fn build(
    caller: &BTreeMap<String, String>,
    who: Identity<'_>,
    profile_env: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut env = BTreeMap::new();
    for (k, v) in caller {
        if passes(k) && !v.contains('\0') {
            env.insert(k.clone(), v.clone());
        }
    }
    env.insert("PATH".into(), SANDBOX_PATH.into());
    env.insert("HOME".into(), who.home.into());
    env.insert("USER".into(), who.user.into());
    env.insert("LOGNAME".into(), who.user.into());
    env.insert("SHELL".into(), who.shell.into());
    env.insert("HOSTNAME".into(), who.hostname.into());
    env.insert("HUTCH_SANDBOX".into(), "1".into());
    // GSettings (GTK apps' preferences) in a file of the app's own home
    // (`~/.config/glib-2.0/settings/keyfile`), kept with a kept home: never the user's dconf
    // database, which only the session bus reaches.
    env.insert("GSETTINGS_BACKEND".into(), "keyfile".into());
    for (k, v) in profile_env {
        env.insert(k.clone(), v.clone());
    }
    env.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_allowlist_passes() {
        let caller: BTreeMap<String, String> = [
            ("TERM", "xterm"),
            ("LC_ALL", "C.UTF-8"),
            ("LC_lower", "x"),
            ("SSH_AUTH_SOCK", "/tmp/agent"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
            ("PATH", "/home/u/bin:/usr/bin"),
            ("HUTCH_SOCKET", "/run/x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let who = Identity {
            user: "u",
            home: "/home/u",
            shell: "/bin/sh",
            hostname: "h",
        };
        let profile: BTreeMap<String, String> = [("EDITOR".to_owned(), "vi".to_owned())].into();
        let env: BTreeMap<_, _> = build(&caller, who, &profile).into_iter().collect();
        assert_eq!(env["TERM"], "xterm");
        assert_eq!(env["LC_ALL"], "C.UTF-8");
        assert_eq!(env["PATH"], SANDBOX_PATH);
        assert_eq!(env["HOME"], "/home/u");
        assert_eq!(env["EDITOR"], "vi");
        assert_eq!(env["GSETTINGS_BACKEND"], "keyfile");
        for hidden in [
            "SSH_AUTH_SOCK",
            "AWS_SECRET_ACCESS_KEY",
            "HUTCH_SOCKET",
            "LC_lower",
        ] {
            assert!(!env.contains_key(hidden), "{hidden} leaked");
        }
    }
}

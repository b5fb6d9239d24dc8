//! `hutch inspect`: what a sandbox is made of, grouped by kernel feature, each part with a note.

use std::process::ExitCode;

use anyhow::bail;
use hutch_core::anatomy::Anatomy;
use hutch_core::network::NetworkMode;
use hutch_core::protocol::{IdMapKind, Request, Response};

use super::{InspectArgs, connect};

/// The anatomy as text; lines that expose the host start with `!`.
pub fn render(a: &Anatomy) -> String {
    let mut out = format!("sandbox {} (app pid {})\n", a.id, a.pid);
    out.push_str("\nnamespaces (what the app can see)\n");
    for ns in &a.namespaces {
        let mark = if ns.new { " " } else { "!" };
        out.push_str(&format!(
            "{mark} {:<7} {:>12}  {}\n",
            ns.kind, ns.inode, ns.note
        ));
    }
    out.push_str("\nids\n");
    let tool = match a.id_map {
        IdMapKind::SubordinateRange => {
            "written by newuidmap/newgidmap from /etc/subuid, /etc/subgid"
        }
        IdMapKind::SingleId => "a single id, written directly (no subordinate range)",
    };
    out.push_str(&format!("  {tool}\n"));
    for (name, map) in [("uid", &a.uid_map), ("gid", &a.gid_map)] {
        for [inside, outside, count] in map {
            out.push_str(&format!(
                "  {name} {inside}-{} inside = {outside}-{} on the host\n",
                inside + count - 1,
                outside + count - 1
            ));
        }
    }
    out.push_str("\nfiles (mount namespace: only these exist inside)\n");
    for m in &a.mounts {
        let (mark, note) = match (m.from_host, m.read_only) {
            (true, false) if !m.path.starts_with("/dev/") => ("!", "host files, read-write"),
            (true, false) => (" ", "device node"),
            (true, true) => (" ", "host files, read-only"),
            (false, true) => (" ", "fresh, read-only"),
            (false, false) => (" ", "fresh, private to the sandbox"),
        };
        let source = if m.from_host && m.source != m.path {
            format!(" <- {}", m.source)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{mark} {:<28} {:<8} {note}{source}\n",
            m.path, m.fs_type
        ));
    }
    out.push_str("\nresources (cgroup: what the app can use)\n");
    match &a.cgroup {
        Some(cg) => {
            out.push_str(&format!("  {}\n", cg.path));
            for (file, value) in &cg.files {
                out.push_str(&format!("  {file:<18} {value}\n"));
            }
        }
        None => out.push_str("  no cgroup of its own (degraded mode: no limits)\n"),
    }
    out.push_str("\nnetwork\n");
    match (a.network.mode, &a.network.backend) {
        (NetworkMode::None, _) => {
            out.push_str("  none: loopback only, nothing outside is reachable\n")
        }
        (NetworkMode::User, backend) => {
            let state = if a.network.up { "up" } else { "DOWN" };
            out.push_str(&format!(
                "  user-mode stack: {} ({state})\n",
                backend.as_deref().unwrap_or("?")
            ));
            let mark = if a.network.host_loopback { "!" } else { " " };
            out.push_str(&format!(
                "{mark} host loopback: {}\n",
                if a.network.host_loopback {
                    "reachable at 10.0.2.2"
                } else {
                    "closed"
                }
            ));
            for p in &a.network.publish {
                out.push_str(&format!("! published: {p}\n"));
            }
        }
    }
    out.push_str(&format!("  addresses: {}\n", a.addresses.join(", ")));
    for r in &a.routes {
        out.push_str(&format!("  route: {r}\n"));
    }
    let s = &a.security;
    out.push_str("\nprocess confinement\n");
    out.push_str(&format!(
        "  seccomp: {} ({} filter(s)): calls that could escape fail\n",
        match s.seccomp_mode {
            2 => "filter",
            1 => "strict",
            _ => "off",
        },
        s.seccomp_filters
    ));
    out.push_str(&format!(
        "  no_new_privs: {}: setuid programs gain nothing\n",
        if s.no_new_privs { "yes" } else { "no" }
    ));
    out.push_str(&format!(
        "  capabilities: effective {}, bounding {}: {}\n",
        s.cap_effective,
        s.cap_bounding,
        if s.cap_effective.trim_start_matches('0').is_empty()
            && s.cap_bounding.trim_start_matches('0').is_empty()
        {
            "none at all"
        } else {
            "some kept"
        }
    ));
    out.push_str(&format!("  landlock: {}\n", s.landlock));
    out.push_str(&format!("  user namespaces: {}\n", s.user_namespaces));
    out
}

pub fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect()?;
    let anatomy = match client.request(&Request::Inspect { id: args.id }, &[])? {
        Response::Anatomy { anatomy } => anatomy,
        Response::Error { message, .. } => bail!("{message}"),
        other => bail!("unexpected answer from the helper: {other:?}"),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&anatomy)?);
    } else {
        // Read from the app's /proc (its process names, mount paths): no control character
        // of the app's reaches the terminal.
        print!("{}", hutch_core::text::escape_controls(&render(&anatomy)));
    }
    Ok(ExitCode::SUCCESS)
}

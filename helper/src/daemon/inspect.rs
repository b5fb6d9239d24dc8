//! `Inspect`: what a running sandbox is made of, read from the live system through the app's
//! /proc (pid 1 is not dumpable, so its links are closed even to us).

use std::path::Path;

use hutch_core::anatomy::{Anatomy, CgroupAnatomy, Mount, Namespace, Security, namespace_note};
use hutch_core::protocol::{IdMapKind, NetworkInfo};

const NAMESPACES: &[&str] = &["user", "mnt", "pid", "ipc", "uts", "net", "cgroup"];

/// Cgroup files shown, when present.
const CGROUP_FILES: &[&str] = &[
    "memory.max",
    "memory.high",
    "memory.swap.max",
    "memory.oom.group",
    "cpu.max",
    "cpu.weight",
    "pids.max",
    "io.weight",
    "memory.current",
    "pids.current",
];

/// Filesystems made fresh for the sandbox (not host files).
const FRESH: &[&str] = &["tmpfs", "proc", "devpts", "mqueue", "sysfs", "cgroup2"];

fn ns_inode(link: &Path) -> Option<u64> {
    let target = std::fs::read_link(link).ok()?;
    let text = target.to_string_lossy();
    text.split_once('[')?.1.trim_end_matches(']').parse().ok()
}

fn namespaces(pid: u32) -> Vec<Namespace> {
    NAMESPACES
        .iter()
        .filter_map(|kind| {
            let inode = ns_inode(Path::new(&format!("/proc/{pid}/ns/{kind}")))?;
            let ours = ns_inode(Path::new(&format!("/proc/self/ns/{kind}")));
            let new = ours != Some(inode);
            Some(Namespace {
                kind: (*kind).into(),
                inode,
                new,
                note: namespace_note(kind, new),
            })
        })
        .collect()
}

/// uid_map / gid_map text: inside outside count per line.
pub fn parse_map(text: &str) -> Vec<[u64; 3]> {
    text.lines()
        .filter_map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect();
            (v.len() == 3).then(|| [v[0], v[1], v[2]])
        })
        .collect()
}

/// mountinfo lines summarised.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split_whitespace().collect();
            let r: Vec<&str> = right.split_whitespace().collect();
            let (root, path, options) = (l.get(3)?, l.get(4)?, l.get(5)?);
            let fs_type = r.first()?.to_string();
            let from_host = !FRESH.contains(&fs_type.as_str());
            Some(Mount {
                path: unescape(path),
                source: if from_host {
                    unescape(root)
                } else {
                    r.get(1).unwrap_or(&"").to_string()
                },
                read_only: options.split(',').any(|o| o == "ro"),
                fs_type,
                from_host,
            })
        })
        .collect()
}

/// mountinfo escapes spaces and the like as `\040`.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let code: String = chars.by_ref().take(3).collect();
            match u8::from_str_radix(&code, 8) {
                Ok(b) => out.push(b as char),
                Err(_) => {
                    out.push('\\');
                    out.push_str(&code);
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// /proc/net/route: "default via GW dev IF" and "NET/MASK dev IF".
pub fn parse_routes(text: &str) -> Vec<String> {
    let ip = |hex: &str| {
        let v = u32::from_str_radix(hex, 16).ok()?;
        Some(std::net::Ipv4Addr::from(v.swap_bytes()))
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (dev, dest, gw, mask) =
                (f.first()?, ip(f.get(1)?)?, ip(f.get(2)?)?, ip(f.get(7)?)?);
            Some(if dest.is_unspecified() && mask.is_unspecified() {
                format!("default via {gw} dev {dev}")
            } else {
                format!("{dest}/{} dev {dev}", u32::from(mask).count_ones())
            })
        })
        .collect()
}

/// /proc/net/fib_trie: the local (host) addresses.
pub fn parse_local_addresses(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut last_ip: Option<String> = None;
    for line in text.lines() {
        let t = line.trim_start_matches([' ', '|', '-', '+']);
        if t.starts_with("/32 host LOCAL") {
            if let Some(ip) = last_ip.take()
                && !out.contains(&ip)
            {
                out.push(ip);
            }
        } else if t.parse::<std::net::Ipv4Addr>().is_ok() {
            last_ip = Some(t.to_owned());
        }
    }
    out
}

fn security(status: &str) -> Security {
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    Security {
        seccomp_mode: field("Seccomp:").parse().unwrap_or(0),
        seccomp_filters: field("Seccomp_filters:").parse().unwrap_or(0),
        no_new_privs: field("NoNewPrivs:") == "1",
        cap_effective: field("CapEff:"),
        cap_permitted: field("CapPrm:"),
        cap_bounding: field("CapBnd:"),
        cap_ambient: field("CapAmb:"),
        landlock: "not used".into(),
        user_namespaces: String::new(),
    }
}

/// Reads the anatomy of sandbox `id` from its app's /proc.
pub fn inspect(
    id: &str,
    app_pid: u32,
    id_map: IdMapKind,
    network: NetworkInfo,
    cgroup: Option<&Path>,
) -> std::io::Result<Anatomy> {
    let read = |f: &str| std::fs::read_to_string(format!("/proc/{app_pid}/{f}"));
    let status = read("status")?;
    let cgroup = cgroup.map(|dir| CgroupAnatomy {
        path: dir.display().to_string(),
        files: CGROUP_FILES
            .iter()
            .filter_map(|f| {
                let v = std::fs::read_to_string(dir.join(f)).ok()?;
                Some(((*f).to_owned(), v.trim().to_owned()))
            })
            .collect(),
    });
    Ok(Anatomy {
        id: id.to_owned(),
        pid: app_pid,
        namespaces: namespaces(app_pid),
        id_map,
        uid_map: parse_map(&read("uid_map").unwrap_or_default()),
        gid_map: parse_map(&read("gid_map").unwrap_or_default()),
        mounts: parse_mountinfo(&read("mountinfo")?),
        cgroup,
        network,
        addresses: parse_local_addresses(&read("net/fib_trie").unwrap_or_default()),
        routes: parse_routes(&read("net/route").unwrap_or_default()),
        security: security(&status),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_summarise() {
        let text = "\
100 99 0:50 / / ro,nosuid,nodev - tmpfs tmpfs ro\n\
101 100 254:1 /usr /usr ro,nosuid,nodev,relatime - ext4 /dev/vda rw\n\
102 100 254:1 /home/u/My\\040Docs /home/u/My\\040Docs rw,nosuid,nodev - ext4 /dev/vda rw\n\
103 100 0:51 / /proc rw,nosuid,nodev,noexec - proc proc rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 4);
        assert!(!m[0].from_host && m[0].read_only);
        assert!(m[1].from_host && m[1].read_only && m[1].source == "/usr");
        assert_eq!(m[2].path, "/home/u/My Docs");
        assert!(m[2].from_host && !m[2].read_only);
        assert_eq!(m[3].fs_type, "proc");
    }

    #[test]
    fn routes_and_addresses_parse() {
        let route = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
tap0\t00000000\t0202000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
tap0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(
            parse_routes(route),
            ["default via 10.0.2.2 dev tap0", "10.0.2.0/24 dev tap0"]
        );
        let trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 10.0.2.100\n        /32 host LOCAL\n     |-- 127.0.0.1\n        /32 host LOCAL\nLocal:\n     |-- 10.0.2.100\n        /32 host LOCAL\n";
        assert_eq!(parse_local_addresses(trie), ["10.0.2.100", "127.0.0.1"]);
    }

    #[test]
    fn id_maps_parse() {
        assert_eq!(
            parse_map("         0     100000       1000\n      1000       1000          1\n"),
            [[0, 100000, 1000], [1000, 1000, 1]]
        );
    }
}

//! Network settings of a sandbox: the mode, the user-mode stack, published ports.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Network access.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// An empty network namespace: loopback only.
    #[default]
    None,
    /// A user-mode network stack (slirp4netns or pasta) to the outside world.
    User,
}

impl std::str::FromStr for NetworkMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "user" => Ok(Self::User),
            other => Err(format!("unknown network mode `{other}` (use none or user)")),
        }
    }
}

/// Which user-mode network stack runs a `user` network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetBackend {
    /// pasta when installed, else slirp4netns.
    #[default]
    Auto,
    Slirp4netns,
    Pasta,
}

impl std::str::FromStr for NetBackend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "slirp4netns" => Ok(Self::Slirp4netns),
            "pasta" => Ok(Self::Pasta),
            other => Err(format!(
                "unknown network backend `{other}` (use auto, slirp4netns or pasta)"
            )),
        }
    }
}

/// A host TCP port forwarded into the sandbox: `[ADDR:]HOSTPORT:SANDBOXPORT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortForward {
    /// Host address the port is bound to (127.0.0.1 unless given).
    pub host_addr: IpAddr,
    pub host_port: u16,
    pub sandbox_port: u16,
}

fn port(text: &str, what: &str, spec: &str) -> Result<u16, String> {
    match text.parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        Ok(n) => Err(format!("publish `{spec}`: {what} {n} is outside 1-65535")),
        Err(_) => Err(format!(
            "publish `{spec}`: {what} `{text}` is not a port number"
        )),
    }
}

impl PortForward {
    /// Parses `HOSTPORT:SANDBOXPORT` or `ADDR:HOSTPORT:SANDBOXPORT` (IPv6 as `[ADDR]`).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (rest, sandbox) = spec
            .rsplit_once(':')
            .ok_or_else(|| format!("publish `{spec}`: use [ADDR:]HOSTPORT:SANDBOXPORT"))?;
        let (addr, host) = match rest.rsplit_once(':') {
            Some((addr, host)) => (Some(addr), host),
            None => (None, rest),
        };
        let host_addr = match addr {
            None => IpAddr::from([127, 0, 0, 1]),
            Some(a) => a
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| format!("publish `{spec}`: `{a}` is not an IP address"))?,
        };
        Ok(Self {
            host_addr,
            host_port: port(host, "host port", spec)?,
            sandbox_port: port(sandbox, "sandbox port", spec)?,
        })
    }
}

impl std::fmt::Display for PortForward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.host_addr {
            IpAddr::V6(a) => write!(f, "[{a}]:{}:{}", self.host_port, self.sandbox_port),
            IpAddr::V4(a) => write!(f, "{a}:{}:{}", self.host_port, self.sandbox_port),
        }
    }
}

/// A sandbox's network, as running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkInfo {
    pub mode: NetworkMode,
    /// `slirp4netns` or `pasta` for a user network.
    #[serde(default)]
    pub backend: Option<String>,
    /// False once the user-mode stack has died.
    pub up: bool,
    #[serde(default)]
    pub publish: Vec<PortForward>,
    pub host_loopback: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_specs_parse() {
        let p = PortForward::parse("8080:80").unwrap();
        assert_eq!(p.host_addr, IpAddr::from([127, 0, 0, 1]));
        assert_eq!((p.host_port, p.sandbox_port), (8080, 80));
        let p = PortForward::parse("0.0.0.0:2222:22").unwrap();
        assert_eq!(p.host_addr, IpAddr::from([0, 0, 0, 0]));
        let p = PortForward::parse("[::1]:8443:443").unwrap();
        assert!(p.host_addr.is_ipv6());
        assert_eq!(p.to_string(), "[::1]:8443:443");
        assert_eq!(
            PortForward::parse("8080:80").unwrap().to_string(),
            "127.0.0.1:8080:80"
        );
    }

    #[test]
    fn bad_publish_specs_say_why() {
        for (spec, want) in [
            ("80", "use [ADDR:]HOSTPORT:SANDBOXPORT"),
            ("0:80", "host port 0 is outside 1-65535"),
            ("8080:70000", "sandbox port 70000 is outside 1-65535"),
            ("x:80", "`x` is not a port number"),
            ("nohost:1:2", "`nohost` is not an IP address"),
        ] {
            let err = PortForward::parse(spec).unwrap_err();
            assert!(err.contains(want), "{spec}: {err}");
        }
    }

    #[test]
    fn modes_and_backends_parse() {
        assert_eq!("user".parse::<NetworkMode>().unwrap(), NetworkMode::User);
        assert!(
            "bridge"
                .parse::<NetworkMode>()
                .unwrap_err()
                .contains("none or user")
        );
        assert_eq!("pasta".parse::<NetBackend>().unwrap(), NetBackend::Pasta);
        assert!("vde".parse::<NetBackend>().is_err());
    }
}

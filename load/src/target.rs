//! The `--target` URL. Load tests must only ever hit this machine: a load
//! generator pointed at someone else's server is a denial-of-service tool, so
//! anything that is not a loopback address is refused before a single packet
//! is sent.

use std::net::{IpAddr, SocketAddr};

use anyhow::{bail, Context};

/// Longest `--target` accepted; a URL longer than this is a typo or an attack.
const TARGET_LENGTH_MAX: usize = 256;

/// A validated loopback target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Where to connect.
    pub address: SocketAddr,
    /// The `Host` header value, as the user wrote it (`localhost:8080`).
    pub host_header: String,
}

/// Parses `http://HOST[:PORT][/]` and refuses any host that is not
/// `127.0.0.0/8`, `::1` or `localhost`. `https` is not supported: loopback
/// load has no use for TLS and its cost would distort the numbers.
pub fn parse_target(url: &str) -> anyhow::Result<Target> {
    if url.len() > TARGET_LENGTH_MAX {
        bail!("--target is longer than {TARGET_LENGTH_MAX} characters");
    }
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("--target must start with http:// (got {url:?})");
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('/') || authority.contains('@') || authority.is_empty() {
        bail!("--target must be http://HOST:PORT with no path or credentials (got {url:?})");
    }
    let (host, port) = split_host_port(authority)?;
    let ip = loopback_ip(host).with_context(|| format!("refusing --target {url:?}"))?;
    Ok(Target {
        address: SocketAddr::new(ip, port),
        host_header: authority.to_string(),
    })
}

/// Splits `host:port`, `[v6]:port`, `host` or `[v6]` (port 80 by default).
fn split_host_port(authority: &str) -> anyhow::Result<(&str, u16)> {
    let (host, port_text) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((host, after)) = v6.split_once(']') else {
            bail!("unclosed '[' in {authority:?}");
        };
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => bail!("garbage after ']' in {authority:?}"),
            },
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port_text {
        None => 80,
        Some(text) => text
            .parse::<u16>()
            .with_context(|| format!("bad port {text:?}"))?,
    };
    Ok((host, port))
}

/// The loopback address `host` names, or an error if it names anything else.
/// `localhost` is mapped to 127.0.0.1 without asking a resolver, because a
/// resolver (or /etc/hosts) could point it elsewhere.
fn loopback_ip(host: &str) -> anyhow::Result<IpAddr> {
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::from([127, 0, 0, 1]));
    }
    let ip: IpAddr = host
        .parse()
        .with_context(|| format!("host {host:?} is not an IP address or localhost"))?;
    if !ip.is_loopback() {
        bail!("host {ip} is not a loopback address (127.0.0.0/8, ::1 or localhost)");
    }
    Ok(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_are_accepted() {
        let target = parse_target("http://127.0.0.1:8080").expect("loopback v4");
        assert_eq!(target.address, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(target.host_header, "127.0.0.1:8080");
        let target = parse_target("http://127.1.2.3:9/").expect("all of 127/8");
        assert_eq!(target.address.port(), 9);
        let target = parse_target("http://[::1]:8080").expect("loopback v6");
        assert_eq!(target.address, "[::1]:8080".parse().expect("addr"));
        let target = parse_target("http://LocalHost").expect("localhost");
        assert_eq!(target.address, "127.0.0.1:80".parse().expect("addr"));
    }

    #[test]
    fn remote_targets_are_refused() {
        for url in [
            "http://10.0.0.1:8080",
            "http://0.0.0.0:8080",
            "http://192.168.1.1",
            "http://[::]:80",
            "http://[2001:db8::1]:80",
            "http://example.com:8080",
            "http://localhost.example.com",
            "http://127.0.0.1.example.com",
            "http://user@127.0.0.1:80@evil.com",
            "https://127.0.0.1:8080",
            "127.0.0.1:8080",
            "http://127.0.0.1:8080/path",
            "http://127.0.0.1:99999",
            "http://",
        ] {
            assert!(parse_target(url).is_err(), "{url} must be refused");
        }
    }
}

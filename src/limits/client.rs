//! The client address a request is counted against: the TCP peer's, or,
//! when the peer is a trusted proxy, the right-most address of
//! `X-Forwarded-For` that is not a trusted proxy.
//!
//! Why right-most: every proxy appends the address it got the request
//! from, so the entries left of the last trusted hop were written by the
//! client and can say anything. Walking from the right and stopping at the
//! first untrusted address takes exactly the address our own proxies saw.
//! A peer that is not trusted cannot move its requests to another address:
//! its header is ignored.
//!
//! Promises: at most `FORWARDED_HOPS_MAX` entries are read from the right;
//! an entry that is not an address ends the walk (the hop that passed it
//! on is then the client); if every entry read is a trusted proxy, the
//! left-most of them is the client.

use std::net::{IpAddr, SocketAddr};

use actix_web::http::header::HeaderMap;
use ipnet::IpNet;

/// Trusted proxies a server accepts (`--trusted-proxies`).
pub const TRUSTED_PROXIES_MAX: usize = 64;
/// `X-Forwarded-For` entries read from the right: more proxies than any
/// real deployment chains.
pub const FORWARDED_HOPS_MAX: usize = 16;

/// The networks whose peers may say who the client is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
}

impl TrustedProxies {
    /// `networks` as given; the command line caps their number.
    pub fn new(networks: Vec<IpNet>) -> TrustedProxies {
        TrustedProxies { networks }
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.networks.iter().any(|net| net.contains(&address))
    }

    /// The client of a request from `peer` carrying `headers`.
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = canonical(peer);
        if !self.contains(client) {
            return client;
        }
        let entries = headers
            .get_all("x-forwarded-for")
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .flat_map(|value| value.to_str().unwrap_or("").rsplit(','))
            .take(FORWARDED_HOPS_MAX);
        for entry in entries {
            let Some(address) = parse_entry(entry) else {
                return client;
            };
            client = address;
            if !self.contains(address) {
                return address;
            }
        }
        client
    }
}

/// An IPv4 address mapped into IPv6 counts as the IPv4 address.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

/// An address, with or without a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let address = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))?;
    Some(canonical(address))
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|n| n.parse().unwrap()).collect())
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                HeaderName::from_static("x-forwarded-for"),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_cannot_name_another_client() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let headers = forwarded(&["1.2.3.4"]);
        assert_eq!(
            trusted.client_address(ip("5.6.7.8"), &headers),
            ip("5.6.7.8")
        );
        let nobody = TrustedProxies::default();
        assert_eq!(
            nobody.client_address(ip("10.0.0.1"), &headers),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn a_client_cannot_hide_behind_addresses_it_prepends() {
        let trusted = proxies(&["10.0.0.0/8", "127.0.0.1/32"]);
        let headers = forwarded(&["9.9.9.9, 1.2.3.4", "10.0.0.2"]);
        assert_eq!(
            trusted.client_address(ip("127.0.0.1"), &headers),
            ip("1.2.3.4")
        );
    }

    #[test]
    fn garbage_ends_the_walk_at_the_hop_that_passed_it() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let headers = forwarded(&["1.2.3.4, not-an-address, 10.0.0.3"]);
        assert_eq!(
            trusted.client_address(ip("10.0.0.1"), &headers),
            ip("10.0.0.3")
        );
    }

    #[test]
    fn only_trusted_hops_make_the_left_most_the_client_and_ports_are_dropped() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let headers = forwarded(&["10.0.0.7:4000, 10.0.0.3"]);
        assert_eq!(
            trusted.client_address(ip("10.0.0.1"), &headers),
            ip("10.0.0.7")
        );
        let headers = forwarded(&["[2001:db8::1]:80"]);
        assert_eq!(
            trusted.client_address(ip("10.0.0.1"), &headers),
            ip("2001:db8::1")
        );
        assert_eq!(
            trusted.client_address(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn a_mapped_ipv4_peer_is_its_ipv4_address() {
        let trusted = proxies(&["127.0.0.1/32"]);
        let headers = forwarded(&["1.2.3.4"]);
        assert_eq!(
            trusted.client_address(ip("::ffff:127.0.0.1"), &headers),
            ip("1.2.3.4")
        );
    }
}

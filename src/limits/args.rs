//! The command-line flags of the limits under floods (SPEC "Limits under
//! floods"), flattened into `serve`'s flags by `config::ServeArgs`.

use clap::Args;
use ipnet::IpNet;

use super::client::TRUSTED_PROXIES_MAX;
use crate::engine::{USERS_PER_SALE_MAX_DEFAULT, USERS_PER_SALE_MAX_LARGEST};

/// Default of `--user-writes-per-second`.
pub const USER_WRITES_PER_SECOND_DEFAULT: u32 = 10;
/// Largest accepted rate of either limiter.
pub const REQUESTS_PER_SECOND_MAX: u32 = 1_000_000;

/// `--trusted-proxies`: networks, comma-separated, at most
/// `TRUSTED_PROXIES_MAX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyList(pub Vec<IpNet>);

impl std::str::FromStr for ProxyList {
    type Err = String;

    fn from_str(text: &str) -> Result<ProxyList, String> {
        let parts: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        if parts.len() > TRUSTED_PROXIES_MAX {
            return Err(format!(
                "at most {TRUSTED_PROXIES_MAX} networks, got {}",
                parts.len()
            ));
        }
        let networks = parts
            .iter()
            .map(|part| part.parse::<IpNet>().map_err(|e| format!("{part:?}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ProxyList(networks))
    }
}

#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Checkouts and purchases per second per user (bursts of twice that);
    /// beyond it, 429 rate_limited. 0: off.
    #[arg(long, env = "FLASHSALE_USER_WRITES_PER_SECOND",
          default_value_t = USER_WRITES_PER_SECOND_DEFAULT,
          value_parser = clap::value_parser!(u32).range(0..=i64::from(REQUESTS_PER_SECOND_MAX)))]
    pub user_writes_per_second: u32,

    /// Requests of any kind per second per client address (bursts of twice
    /// that); beyond it, 429 rate_limited. 0: off.
    #[arg(long, env = "FLASHSALE_CLIENT_REQUESTS_PER_SECOND", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=i64::from(REQUESTS_PER_SECOND_MAX)))]
    pub client_requests_per_second: u32,

    /// Proxies (CIDR, comma-separated, at most 64) whose X-Forwarded-For
    /// names the client; requests from other peers count against the peer.
    #[arg(long, env = "FLASHSALE_TRUSTED_PROXIES", value_name = "CIDR[,CIDR...]")]
    pub trusted_proxies: Option<ProxyList>,

    /// Distinct users one sale admits; a new user beyond it gets 409
    /// sale_full while users already in keep buying.
    #[arg(long, env = "FLASHSALE_USERS_PER_SALE_MAX",
          default_value_t = USERS_PER_SALE_MAX_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(USERS_PER_SALE_MAX_LARGEST)))]
    pub users_per_sale_max: u32,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::config::{Cli, Command};

    fn parse(flags: &[&str]) -> Result<super::LimitArgs, clap::Error> {
        let argv = ["flashsale", "serve"].iter().chain(flags);
        match Cli::try_parse_from(argv)?.command {
            Command::Serve(args) => Ok(args.limits),
            Command::Export(_) | Command::Snapshot(_) => panic!("not serve"),
        }
    }

    #[test]
    fn defaults_are_the_contracts() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.user_writes_per_second, 10);
        assert_eq!(args.client_requests_per_second, 0);
        assert_eq!(args.trusted_proxies, None);
        assert_eq!(args.users_per_sale_max, 2_000_000);
    }

    #[test]
    fn trusted_proxies_are_cidrs_comma_separated() {
        let args = parse(&["--trusted-proxies", "127.0.0.1/32,10.0.0.0/8,::1/128"]).unwrap();
        assert_eq!(args.trusted_proxies.map(|list| list.0.len()), Some(3));
    }

    #[test]
    fn bad_limits_are_refused_at_start() {
        let many = vec!["10.0.0.0/8"; super::TRUSTED_PROXIES_MAX + 1].join(",");
        for bad in [
            vec!["--trusted-proxies", "not-a-network"],
            vec!["--trusted-proxies", many.as_str()],
            vec!["--users-per-sale-max", "0"],
            vec!["--users-per-sale-max", "16777217"],
            vec!["--user-writes-per-second", "1000001"],
            vec!["--client-requests-per-second", "-1"],
        ] {
            assert!(parse(&bad).is_err(), "{bad:?}");
        }
    }
}

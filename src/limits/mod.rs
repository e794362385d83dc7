//! Limits under floods: how many writes one user, and how many requests one
//! client address, may send per second (SPEC "Limits under floods").
//! The bound on users per sale is the engine's (`Rejection::SaleFull`).
//!
//! Why here and not in the engine: a refused request must cost nothing
//! but the check. It is answered 429 before it reaches the service, leaves
//! no log record and no engine state, and adds no key to a limiter.
//!
//! How it composes: the HTTP layer asks `check_client` for every request
//! (a middleware) and `check_user` once it knows the acting user of a
//! checkout or purchase; whoever resolves the user (a query parameter, a
//! cart's owner, a signed token's subject) calls the same function.
//!
//! Memory: each limiter holds at most `*_KEYS_MAX` keys of 16 bytes plus
//! the map's slack (`keyed`), and a cleaner task drops idle keys every
//! `LIMITER_CLEAN_INTERVAL`. A flood of distinct users or addresses thus
//! costs at most about `KEYS_MAX × 40` bytes per limiter (16 MB at the
//! defaults); past the cap, requests of new keys get 429 until keys go
//! idle, while keys already held are served as before.

mod args;
mod client;
mod keyed;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Weak};
use std::time::Duration;

use actix_web::http::header::HeaderMap;

pub use args::{LimitArgs, ProxyList, REQUESTS_PER_SECOND_MAX, USER_WRITES_PER_SECOND_DEFAULT};
pub use client::{TrustedProxies, FORWARDED_HOPS_MAX, TRUSTED_PROXIES_MAX};
pub use keyed::{KeyedLimiter, Refusal};

use crate::config::RETRY_AFTER_SECONDS;
use crate::domain::UserId;

/// Users the per-user limiter tracks at once: far more than write within
/// one burst window at the server's peak rate.
pub const USER_KEYS_MAX: usize = 400_000;
/// Client addresses the per-client limiter tracks at once.
pub const CLIENT_KEYS_MAX: usize = 400_000;
/// How often idle keys are dropped.
pub const LIMITER_CLEAN_INTERVAL: Duration = Duration::from_secs(1);

/// Why a request was refused with 429 `rate_limited`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Throttled {
    #[error("user {user} sends more than {per_second} checkouts and purchases per second")]
    User { user: String, per_second: u32 },
    #[error("client {address} sends more than {per_second} requests per second")]
    Client { address: IpAddr, per_second: u32 },
    #[error("more than {keys_max} distinct {what} sent requests in the last seconds")]
    KeysFull { what: &'static str, keys_max: usize },
}

impl Throttled {
    /// Seconds the client should wait: a cell comes back after 1/rate
    /// seconds (at most one), and idle keys are dropped every second.
    pub fn retry_after_seconds(&self) -> u32 {
        RETRY_AFTER_SECONDS
    }
}

/// The settings as `Limits` takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSettings {
    /// 0: off.
    pub user_writes_per_second: u32,
    /// 0: off.
    pub client_requests_per_second: u32,
    pub trusted_proxies: TrustedProxies,
    pub user_keys_max: usize,
    pub client_keys_max: usize,
}

impl LimitSettings {
    pub fn from_args(args: &LimitArgs) -> LimitSettings {
        LimitSettings {
            user_writes_per_second: args.user_writes_per_second,
            client_requests_per_second: args.client_requests_per_second,
            trusted_proxies: TrustedProxies::new(
                args.trusted_proxies
                    .clone()
                    .map(|list| list.0)
                    .unwrap_or_default(),
            ),
            user_keys_max: USER_KEYS_MAX,
            client_keys_max: CLIENT_KEYS_MAX,
        }
    }

    /// Every limit off (tests and embedders that limit elsewhere).
    pub fn off() -> LimitSettings {
        LimitSettings {
            user_writes_per_second: 0,
            client_requests_per_second: 0,
            trusted_proxies: TrustedProxies::default(),
            user_keys_max: 0,
            client_keys_max: 0,
        }
    }
}

/// A limiter with its rate, if the limit is on.
struct Limit {
    limiter: KeyedLimiter,
    per_second: u32,
}

impl Limit {
    fn new(per_second: u32, keys_max: usize) -> Option<Limit> {
        let rate = NonZeroU32::new(per_second)?;
        Some(Limit {
            limiter: KeyedLimiter::new(rate, keys_max),
            per_second,
        })
    }
}

/// The per-user and per-client limiters. `Send + Sync`: share behind an
/// `Arc`.
pub struct Limits {
    users: Option<Limit>,
    clients: Option<Limit>,
    trusted_proxies: TrustedProxies,
}

impl Limits {
    pub fn new(settings: &LimitSettings) -> Limits {
        Limits {
            users: Limit::new(settings.user_writes_per_second, settings.user_keys_max),
            clients: Limit::new(
                settings.client_requests_per_second,
                settings.client_keys_max,
            ),
            trusted_proxies: settings.trusted_proxies.clone(),
        }
    }

    pub fn off() -> Limits {
        Limits::new(&LimitSettings::off())
    }

    /// Takes one of `user`'s writes for this second.
    pub fn check_user(&self, user: &UserId) -> Result<(), Throttled> {
        let Some(limit) = &self.users else {
            return Ok(());
        };
        limit
            .limiter
            .check(user.as_str())
            .map_err(|refusal| match refusal {
                Refusal::OverRate { .. } => Throttled::User {
                    user: user.to_string(),
                    per_second: limit.per_second,
                },
                Refusal::KeysFull => Throttled::KeysFull {
                    what: "users",
                    keys_max: limit.limiter.keys_max(),
                },
            })
    }

    /// Whether the user limit is on (callers skip finding the user when
    /// not).
    pub fn limits_users(&self) -> bool {
        self.users.is_some()
    }

    /// Whether the client limit is on (the middleware skips the address
    /// resolution when not).
    pub fn limits_clients(&self) -> bool {
        self.clients.is_some()
    }

    /// The address a request from `peer` with `headers` is counted against.
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        self.trusted_proxies.client_address(peer, headers)
    }

    /// Takes one of `address`'s requests for this second.
    pub fn check_client(&self, address: IpAddr) -> Result<(), Throttled> {
        let Some(limit) = &self.clients else {
            return Ok(());
        };
        limit
            .limiter
            .check(&address)
            .map_err(|refusal| match refusal {
                Refusal::OverRate { .. } => Throttled::Client {
                    address,
                    per_second: limit.per_second,
                },
                Refusal::KeysFull => Throttled::KeysFull {
                    what: "client addresses",
                    keys_max: limit.limiter.keys_max(),
                },
            })
    }

    /// Keys held now: (users, client addresses).
    pub fn keys(&self) -> (usize, usize) {
        let keys = |limit: &Option<Limit>| limit.as_ref().map_or(0, |l| l.limiter.keys());
        (keys(&self.users), keys(&self.clients))
    }

    /// Drops idle keys of both limiters.
    pub fn clean(&self) {
        for limit in [&self.users, &self.clients].into_iter().flatten() {
            limit.limiter.clean();
        }
    }

    /// Cleans every `LIMITER_CLEAN_INTERVAL` on the current tokio runtime
    /// until `limits` is dropped.
    pub fn spawn_cleaner(limits: &Arc<Limits>) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Limits> = Arc::downgrade(limits);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(LIMITER_CLEAN_INTERVAL);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let Some(limits) = weak.upgrade() else { return };
                limits.clean();
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserId {
        UserId::parse(name).unwrap()
    }

    #[test]
    fn one_user_over_its_rate_is_throttled_while_others_are_served() {
        let limits = Limits::new(&LimitSettings {
            user_writes_per_second: 1,
            user_keys_max: 10,
            ..LimitSettings::off()
        });
        assert!(limits.check_user(&user("alice")).is_ok());
        assert!(limits.check_user(&user("alice")).is_ok());
        let refused = limits.check_user(&user("alice")).unwrap_err();
        assert!(matches!(refused, Throttled::User { per_second: 1, .. }));
        assert_eq!(refused.retry_after_seconds(), 1);
        assert!(limits.check_user(&user("bob")).is_ok());
        assert!(
            limits.check_client("1.2.3.4".parse().unwrap()).is_ok(),
            "off by default"
        );
    }

    #[test]
    fn limits_that_are_off_hold_no_keys() {
        let limits = Limits::off();
        for n in 0..1000 {
            assert!(limits.check_user(&user(&format!("u{n}"))).is_ok());
        }
        assert_eq!(limits.keys(), (0, 0));
    }
}

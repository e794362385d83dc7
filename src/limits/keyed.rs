//! A keyed rate limiter whose number of keys is bounded: `governor`'s GCRA
//! limiter on a `DashMap` store that this module shares, so it can refuse
//! a new key once the store holds `keys_max` keys.
//!
//! Why: governor's keyed store grows by one entry per new key and only
//! shrinks when told (`retain_recent`); a flood of distinct users or
//! addresses would otherwise grow it without bound between two cleanings.
//!
//! Promises:
//! - a key costs one entry of 16 bytes (a `u64` key and governor's `u64`
//!   state) plus the map's slack; keys are 64-bit hashes made with a
//!   per-process random seed, so clients cannot choose colliding keys;
//! - a new key is refused (`Refusal::KeysFull`) while the store holds
//!   `keys_max` keys; only checks racing on distinct new keys can pass the
//!   bound together, so the store holds at most `keys_max` plus the number
//!   of threads checking at once;
//! - a refused check (over the rate, or keys full) adds no key;
//! - `clean` drops every key whose state is indistinguishable from a fresh
//!   one (idle for its burst window: two seconds with a burst of twice the
//!   rate) and returns the memory to the allocator.

use std::hash::{BuildHasher, Hash, RandomState};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::StateStore;
use governor::{Quota, RateLimiter};

/// The store, shared between the limiter and the key bound.
#[derive(Debug, Default)]
struct SharedStore(Arc<DashMapStateStore<u64>>);

impl StateStore for SharedStore {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        StateStore::measure_and_replace(&*self.0, key, f)
    }
}

impl ShrinkableKeyedStateStore<u64> for SharedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::retain_recent(&*self.0, drop_below);
    }

    fn shrink_to_fit(&self) {
        self.0.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Why a check did not pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The key is over its rate; a cell is free again after `wait`.
    OverRate { wait: Duration },
    /// The key is new and the store holds `keys_max` keys already.
    KeysFull,
}

/// `rate_per_second` cells per second per key, bursts of twice that, at
/// most `keys_max` keys.
pub struct KeyedLimiter<C: Clock = DefaultClock> {
    limiter: RateLimiter<u64, SharedStore, C, NoOpMiddleware<C::Instant>>,
    store: Arc<DashMapStateStore<u64>>,
    hasher: RandomState,
    keys_max: usize,
}

impl KeyedLimiter<DefaultClock> {
    pub fn new(rate_per_second: NonZeroU32, keys_max: usize) -> KeyedLimiter {
        KeyedLimiter::with_clock(rate_per_second, keys_max, DefaultClock::default())
    }
}

impl<C: Clock> KeyedLimiter<C> {
    pub fn with_clock(rate_per_second: NonZeroU32, keys_max: usize, clock: C) -> KeyedLimiter<C> {
        let burst = rate_per_second.saturating_mul(NonZeroU32::MIN.saturating_add(1));
        let quota = Quota::per_second(rate_per_second).allow_burst(burst);
        let store = SharedStore::default();
        let shared = Arc::clone(&store.0);
        KeyedLimiter {
            limiter: RateLimiter::new(quota, store, clock),
            store: shared,
            hasher: RandomState::new(),
            keys_max,
        }
    }

    /// Takes one cell of `key`'s budget, or says why not.
    pub fn check(&self, key: &(impl Hash + ?Sized)) -> Result<(), Refusal> {
        let key = self.hasher.hash_one(key);
        if !self.store.contains_key(&key) && self.store.len() >= self.keys_max {
            return Err(Refusal::KeysFull);
        }
        self.limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.limiter.clock().now());
            Refusal::OverRate { wait }
        })
    }

    /// Drops the keys that are as good as fresh and frees their memory.
    pub fn clean(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Keys held now.
    pub fn keys(&self) -> usize {
        self.store.len()
    }

    pub fn keys_max(&self) -> usize {
        self.keys_max
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn limiter(rate: u32, keys_max: usize) -> (KeyedLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let rate = NonZeroU32::new(rate).unwrap();
        (
            KeyedLimiter::with_clock(rate, keys_max, clock.clone()),
            clock,
        )
    }

    #[test]
    fn a_key_over_its_rate_waits_at_most_one_cell_and_others_pass() {
        let (limiter, clock) = limiter(10, 100);
        for _ in 0..20 {
            assert_eq!(limiter.check("alice"), Ok(()), "a burst of twice the rate");
        }
        let Err(Refusal::OverRate { wait }) = limiter.check("alice") else {
            panic!("alice is over her rate");
        };
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100));
        assert_eq!(limiter.check("bob"), Ok(()), "other keys are served");
        clock.advance(Duration::from_millis(100));
        assert_eq!(limiter.check("alice"), Ok(()), "one cell back per 1/rate s");
    }

    #[test]
    fn key_count_stays_under_its_cap_under_100000_distinct_keys() {
        let (limiter, clock) = limiter(10, 1000);
        let mut refused = 0;
        for n in 0..100_000u32 {
            match limiter.check(&n) {
                Ok(()) => {}
                Err(Refusal::KeysFull) => refused += 1,
                Err(other) => panic!("a new key is never over its rate: {other:?}"),
            }
            assert!(limiter.keys() <= 1000);
            if n % 10_000 == 9_999 {
                clock.advance(Duration::from_secs(3));
                limiter.clean();
                assert_eq!(limiter.keys(), 0, "idle keys are dropped");
            }
        }
        assert_eq!(refused, 100_000 - 10 * 1000, "only new keys past the cap");
    }

    #[test]
    fn refused_checks_add_no_key() {
        let (limiter, _clock) = limiter(1, 1);
        assert_eq!(limiter.check("alice"), Ok(()));
        assert_eq!(limiter.check("alice"), Ok(()));
        assert!(matches!(
            limiter.check("alice"),
            Err(Refusal::OverRate { .. })
        ));
        assert_eq!(limiter.check("bob"), Err(Refusal::KeysFull));
        assert_eq!(limiter.keys(), 1);
    }

    #[test]
    fn a_key_in_use_survives_cleaning() {
        let (limiter, clock) = limiter(1, 10);
        assert_eq!(limiter.check("alice"), Ok(()));
        assert_eq!(limiter.check("alice"), Ok(()));
        limiter.clean();
        assert_eq!(limiter.keys(), 1);
        assert!(limiter.check("alice").is_err(), "cleaning forgives nothing");
        clock.advance(Duration::from_secs(3));
        limiter.clean();
        assert_eq!(limiter.keys(), 0);
    }
}

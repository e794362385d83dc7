//! A bounded cache of verified tokens, so that a client reusing its token
//! pays for one signature check, not one per request.
//!
//! Promises:
//! - Keyed by the SHA-256 of the token, never the token itself: the cache
//!   holds no credential a memory dump could replay.
//! - An entry answers only until its token expires (`exp` plus the
//!   leeway), and only for the key set generation that verified it: after
//!   a reload, every token is verified again against the new set.
//! - At most `entries_max` entries. Each of `SHARDS` shards keeps two
//!   generations of at most `entries_max / SHARDS / 2` entries; when the
//!   current one is full it becomes the previous one and the old previous
//!   one is dropped whole. Eviction is O(1) per insert on average, and a
//!   token found in the previous generation moves to the current one, so
//!   tokens in use stay.

use std::collections::HashMap;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::domain::UserId;

/// Default bound of the cache, in entries.
pub const TOKEN_CACHE_ENTRIES_MAX: usize = 100_000;
/// Shards: requests on different workers rarely wait for each other.
const SHARDS: usize = 16;

/// The SHA-256 of a token.
pub type TokenDigest = [u8; 32];

pub fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

#[derive(Clone)]
struct Entry {
    user: UserId,
    valid_until_unix_seconds: u64,
    generation: u64,
}

#[derive(Default)]
struct Shard {
    current: HashMap<TokenDigest, Entry>,
    previous: HashMap<TokenDigest, Entry>,
}

pub struct TokenCache {
    shards: Vec<Mutex<Shard>>,
    /// Most entries of one generation of one shard.
    generation_entries_max: usize,
}

impl TokenCache {
    /// A cache of at most `entries_max` entries (at least one per shard
    /// generation).
    pub fn new(entries_max: usize) -> TokenCache {
        TokenCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            generation_entries_max: (entries_max / SHARDS / 2).max(1),
        }
    }

    /// Most entries the cache may hold.
    pub fn entries_max(&self) -> usize {
        self.generation_entries_max * 2 * SHARDS
    }

    fn shard(&self, digest: &TokenDigest) -> &Mutex<Shard> {
        &self.shards[usize::from(digest[0]) % SHARDS]
    }

    /// The user of a token verified by key set `generation`, if its entry
    /// is still valid at `now_unix_seconds`.
    pub fn get(
        &self,
        digest: &TokenDigest,
        now_unix_seconds: u64,
        generation: u64,
    ) -> Option<UserId> {
        let usable = |entry: &Entry| {
            entry.generation == generation && now_unix_seconds <= entry.valid_until_unix_seconds
        };
        let mut shard = self.shard(digest).lock();
        if let Some(entry) = shard.current.get(digest) {
            if usable(entry) {
                return Some(entry.user.clone());
            }
            shard.current.remove(digest);
            return None;
        }
        let entry = shard.previous.remove(digest)?;
        if !usable(&entry) {
            return None;
        }
        let user = entry.user.clone();
        self.insert_locked(&mut shard, *digest, entry);
        Some(user)
    }

    /// Remembers that the token with `digest` names `user` until
    /// `valid_until_unix_seconds`, for key set `generation`.
    pub fn insert(
        &self,
        digest: TokenDigest,
        user: UserId,
        valid_until_unix_seconds: u64,
        generation: u64,
    ) {
        let entry = Entry {
            user,
            valid_until_unix_seconds,
            generation,
        };
        let mut shard = self.shard(&digest).lock();
        self.insert_locked(&mut shard, digest, entry);
    }

    fn insert_locked(&self, shard: &mut Shard, digest: TokenDigest, entry: Entry) {
        if shard.current.len() >= self.generation_entries_max
            && !shard.current.contains_key(&digest)
        {
            shard.previous = std::mem::take(&mut shard.current);
            shard.current.reserve(self.generation_entries_max);
        }
        shard.current.insert(digest, entry);
    }

    /// Entries held now (expired ones included until they are met).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let shard = shard.lock();
                shard.current.len() + shard.previous.len()
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: usize) -> UserId {
        UserId::parse(&format!("user-{n}")).unwrap()
    }

    #[test]
    fn the_cache_never_holds_more_than_its_bound() {
        let cache = TokenCache::new(320);
        for n in 0..10_000 {
            cache.insert(digest(&format!("token {n}")), user(n), u64::MAX, 1);
            assert!(cache.len() <= cache.entries_max(), "{}", cache.len());
        }
        assert_eq!(cache.entries_max(), 320);
        let last = digest("token 9999");
        assert_eq!(cache.get(&last, 0, 1), Some(user(9999)));
    }

    #[test]
    fn an_entry_expires_with_its_token() {
        let cache = TokenCache::new(1000);
        let token = digest("token");
        cache.insert(token, user(1), 100, 1);
        assert_eq!(cache.get(&token, 100, 1), Some(user(1)));
        assert_eq!(cache.get(&token, 101, 1), None);
        assert_eq!(
            cache.get(&token, 50, 1),
            None,
            "an expired entry is dropped"
        );
    }

    #[test]
    fn an_entry_of_an_older_key_set_is_not_used() {
        let cache = TokenCache::new(1000);
        let token = digest("token");
        cache.insert(token, user(1), u64::MAX, 1);
        assert_eq!(cache.get(&token, 0, 2), None);
    }

    #[test]
    fn a_token_in_use_survives_a_generation_change() {
        let cache = TokenCache::new(32);
        let hot = digest("hot");
        cache.insert(hot, user(0), u64::MAX, 1);
        for n in 0..1000 {
            cache.insert(digest(&format!("cold {n}")), user(n), u64::MAX, 1);
            assert_eq!(cache.get(&hot, 0, 1), Some(user(0)), "lost after {n}");
        }
    }
}

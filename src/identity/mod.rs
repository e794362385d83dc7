//! Identity (optional): who may act as which user.
//!
//! With `--auth-jwks FILE`, `POST /checkout` and `POST /purchase` need a
//! bearer JWT signed by a key of the JSON Web Key Set in FILE, and the
//! acting user is the token's `sub`. Without it, any client may name any
//! user (the server says so in its log at start).
//!
//! Parts: `keys` (the key set file and the one algorithm of each key),
//! `verify` (one token against a set), `cache` (verified tokens by hash,
//! bounded, expiring with the token). `Identity` ties them together and
//! swaps the set on SIGHUP: a set that cannot be read or checked is
//! reported in the log and the old one stays in force.
//!
//! Promises: a token is believed only if a key of the set in force
//! verifies it (a cached verification counts only for the set that made
//! it); `verify` never blocks on the file system.

mod cache;
mod keys;
mod verify;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::RwLock;

pub use cache::{TokenCache, TOKEN_CACHE_ENTRIES_MAX};
pub use keys::{KeySet, KeySetError, KEYS_PER_SET_MAX};
pub use verify::{Rules, TokenError, Verified, LEEWAY_SECONDS, TOKEN_BYTES_MAX};

use crate::config::AuthArgs;
use crate::domain::UserId;

/// Why identity could not be turned on at start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    #[error(transparent)]
    KeySet(#[from] KeySetError),
    #[error("cannot listen for SIGHUP (key set reloads)")]
    Signal(#[source] std::io::Error),
}

/// The key set in force and its generation (1 at start, +1 per reload).
struct InForce {
    keys: Arc<KeySet>,
    generation: u64,
}

/// The key set in force for `/health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityStatus {
    pub keys: usize,
    pub loaded_at: DateTime<Utc>,
}

pub struct Identity {
    jwks_path: PathBuf,
    rules: Rules,
    in_force: RwLock<InForce>,
    cache: TokenCache,
}

impl Identity {
    /// Loads the key set in `jwks_path`; tokens must also satisfy `rules`.
    pub fn load(
        jwks_path: PathBuf,
        rules: Rules,
        cache_entries_max: usize,
    ) -> Result<Identity, KeySetError> {
        let keys = Arc::new(KeySet::load(&jwks_path)?);
        Ok(Identity {
            jwks_path,
            rules,
            in_force: RwLock::new(InForce {
                keys,
                generation: 1,
            }),
            cache: TokenCache::new(cache_entries_max),
        })
    }

    /// Reads the key set file again. On success the new set is in force
    /// (and tokens verified by the old one are verified again); on failure
    /// the old set stays in force.
    pub fn reload(&self) -> Result<IdentityStatus, KeySetError> {
        let keys = Arc::new(KeySet::load(&self.jwks_path)?);
        let mut in_force = self.in_force.write();
        in_force.keys = keys;
        in_force.generation += 1;
        Ok(status_of(&in_force.keys))
    }

    /// The user a bearer token names, if a key of the set in force signed
    /// it and it is valid now.
    pub fn verify(&self, token: &str) -> Result<UserId, TokenError> {
        if token.len() > TOKEN_BYTES_MAX {
            return Err(TokenError::TooLong);
        }
        let digest = cache::digest(token);
        let (keys, generation) = {
            let in_force = self.in_force.read();
            (Arc::clone(&in_force.keys), in_force.generation)
        };
        if let Some(user) = self.cache.get(&digest, unix_now_seconds(), generation) {
            return Ok(user);
        }
        let verified = verify::verify(&keys, &self.rules, token)?;
        let valid_until = verified
            .expires_at_unix_seconds
            .saturating_add(LEEWAY_SECONDS);
        self.cache
            .insert(digest, verified.user.clone(), valid_until, generation);
        Ok(verified.user)
    }

    pub fn status(&self) -> IdentityStatus {
        status_of(&self.in_force.read().keys)
    }

    /// Verified tokens held in the cache now.
    pub fn cached_tokens(&self) -> usize {
        self.cache.len()
    }
}

fn status_of(keys: &KeySet) -> IdentityStatus {
    IdentityStatus {
        keys: keys.len(),
        loaded_at: keys.loaded_at,
    }
}

fn unix_now_seconds() -> u64 {
    u64::try_from(Utc::now().timestamp()).unwrap_or(0)
}

/// Identity as the flags say: `None` (with a warning in the log) without
/// `--auth-jwks`; otherwise the loaded key set, reloaded on every SIGHUP.
/// Must run inside the Tokio runtime.
pub fn start(args: &AuthArgs) -> Result<Option<Arc<Identity>>, IdentityError> {
    let Some(path) = &args.auth_jwks else {
        tracing::warn!(
            "identity is off (no --auth-jwks): any client can check out and buy as any user"
        );
        return Ok(None);
    };
    let rules = Rules {
        issuer: args.auth_issuer.clone(),
        audience: args.auth_audience.clone(),
    };
    let identity = Arc::new(Identity::load(
        path.clone(),
        rules,
        TOKEN_CACHE_ENTRIES_MAX,
    )?);
    reload_on_hangup(Arc::clone(&identity)).map_err(IdentityError::Signal)?;
    let status = identity.status();
    tracing::info!(keys = status.keys, jwks = %path.display(), "identity is on");
    Ok(Some(identity))
}

/// Reloads the key set on every SIGHUP, logging the outcome.
fn reload_on_hangup(identity: Arc<Identity>) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match identity.reload() {
                Ok(status) => tracing::info!(keys = status.keys, "SIGHUP: key set reloaded"),
                Err(error) => tracing::error!(
                    error = %crate::error_chain(&error),
                    "SIGHUP: key set not reloaded; the old set stays in force"
                ),
            }
        }
    });
    Ok(())
}

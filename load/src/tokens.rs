//! Bearer tokens for servers with identity on (`--auth-jwks`): one JWT per
//! simulated user, minted from a key file, signed once and reused for that
//! user's requests (as a real client reuses its token).
//!
//! Keys: an HS256 secret (the file's bytes without trailing whitespace) or
//! an Ed25519 private key in PKCS#8 PEM (EdDSA). Tokens carry `sub` (the
//! user label), `exp` (now + `TOKEN_LIFETIME_SECONDS`), and `iss`/`aud`
//! when given.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context};
use clap::ValueEnum;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::api::UserLabel;

/// Lifetime of a minted token: longer than any run.
const TOKEN_LIFETIME_SECONDS: i64 = 2 * 3600;
/// Tokens kept per connection; users beyond share slots (and re-mint).
const TOKEN_SLOTS_PER_CONNECTION: usize = 1024;

/// How tokens are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TokenAlgorithm {
    Hs256,
    Eddsa,
}

/// Signs a token per user.
pub struct TokenMinter {
    key: EncodingKey,
    header: Header,
    issuer: Option<String>,
    audience: Option<String>,
}

impl std::fmt::Debug for TokenMinter {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TokenMinter")
            .field("alg", &self.header.alg)
            .field("kid", &self.header.kid)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

impl TokenMinter {
    /// A minter signing with the key in `key_file`.
    pub fn from_file(
        key_file: &Path,
        algorithm: TokenAlgorithm,
        kid: Option<String>,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> anyhow::Result<TokenMinter> {
        let bytes = std::fs::read(key_file)
            .with_context(|| format!("read the token key {}", key_file.display()))?;
        let (key, alg) = match algorithm {
            TokenAlgorithm::Hs256 => {
                let secret = bytes.trim_ascii_end();
                if secret.len() < 32 {
                    bail!("an HS256 secret needs at least 32 bytes");
                }
                let key = EncodingKey::from_secret(secret).context("HS256 secret")?;
                (key, Algorithm::HS256)
            }
            TokenAlgorithm::Eddsa => {
                let key = EncodingKey::from_ed_pem(&bytes)
                    .context("the token key is not an Ed25519 PKCS#8 PEM private key")?;
                (key, Algorithm::EdDSA)
            }
        };
        let mut header = Header::new(alg);
        header.kid = kid;
        Ok(TokenMinter {
            key,
            header,
            issuer,
            audience,
        })
    }

    /// A fresh token for `user`.
    pub fn mint(&self, user: &str) -> anyhow::Result<String> {
        let claims = Claims {
            sub: user,
            exp: chrono::Utc::now().timestamp() + TOKEN_LIFETIME_SECONDS,
            iss: self.issuer.as_deref(),
            aud: self.audience.as_deref(),
        };
        jsonwebtoken::encode(&self.header, &claims, &self.key).context("sign a token")
    }
}

/// Largest `--token-premint-users`: tokens minted per connection before a run.
pub const PREMINT_USERS_PER_CONNECTION_MAX: u64 = 4096;

/// Tokens minted before the timed run starts, so that signing (Ed25519
/// costs about as much to sign as the server spends to verify) does not
/// take CPU from the server on a shared machine: real clients sign on their
/// own machines.
#[derive(Debug, Default)]
pub struct PremintedTokens {
    tokens: HashMap<UserLabel, String>,
}

impl PremintedTokens {
    /// Tokens for every label in `labels`.
    pub fn mint(
        minter: &TokenMinter,
        labels: impl Iterator<Item = UserLabel>,
    ) -> anyhow::Result<PremintedTokens> {
        let mut tokens = HashMap::new();
        for label in labels {
            tokens.insert(label, minter.mint(&label.to_string())?);
        }
        Ok(PremintedTokens { tokens })
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// A connection's tokens, one slot per user (bounded; a user whose slot
/// another took gets a new token).
#[derive(Debug, Default)]
pub struct UserTokens {
    slots: Vec<Option<(UserLabel, String)>>,
    /// Tokens minted, for the report.
    pub minted_count: u64,
}

impl UserTokens {
    /// `user`'s token: preminted, or minted on first use.
    pub fn get<'a>(
        &'a mut self,
        minter: &TokenMinter,
        preminted: &'a PremintedTokens,
        user: UserLabel,
    ) -> Option<&'a str> {
        if let Some(token) = preminted.tokens.get(&user) {
            return Some(token.as_str());
        }
        if self.slots.is_empty() {
            self.slots = vec![None; TOKEN_SLOTS_PER_CONNECTION];
        }
        let index = usize::try_from(user.number).unwrap_or(0) % TOKEN_SLOTS_PER_CONNECTION;
        let slot = &mut self.slots[index];
        if slot.as_ref().is_none_or(|(holder, _)| *holder != user) {
            let token = minter.mint(&user.to_string()).ok()?;
            self.minted_count += 1;
            *slot = Some((user, token));
        }
        slot.as_ref().map(|(_, token)| token.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_minted_once_per_user_and_reused() {
        let dir = tempfile_dir();
        let path = dir.join("secret");
        std::fs::write(&path, "0123456789abcdef0123456789abcdef\n").unwrap();
        let minter =
            TokenMinter::from_file(&path, TokenAlgorithm::Hs256, None, None, None).expect("minter");
        let mut tokens = UserTokens::default();
        let alice = UserLabel {
            run_id: 1,
            number: 7,
        };
        let none = PremintedTokens::default();
        let first = tokens.get(&minter, &none, alice).unwrap().to_string();
        assert_eq!(tokens.get(&minter, &none, alice).unwrap(), first);
        assert_eq!(tokens.minted_count, 1);
        let bob = UserLabel {
            run_id: 1,
            number: 8,
        };
        let preminted = PremintedTokens::mint(&minter, [bob].into_iter()).unwrap();
        let bob_token = tokens.get(&minter, &preminted, bob).unwrap().to_string();
        assert_eq!(bob_token.split('.').count(), 3);
        assert_eq!(
            tokens.minted_count, 1,
            "a preminted token is not minted again"
        );
        assert_eq!(first.split('.').count(), 3);
        std::fs::write(&path, "short").unwrap();
        assert!(TokenMinter::from_file(&path, TokenAlgorithm::Hs256, None, None, None).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("flashsale-load-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

//! Verification of one bearer token against a key set.
//!
//! Promises:
//! - The algorithm is the key's, never the token's: the token's `alg` only
//!   has to equal it. `alg: none` is not an algorithm here (it does not
//!   parse), and an HS256 token can never be checked with an RSA public
//!   key as its HMAC secret.
//! - With a `kid`, only the key with that `kid` is tried; without one,
//!   only the keys whose algorithm is the token's `alg` (at most
//!   `KEYS_PER_SET_MAX`).
//! - `exp` is required and must be in the future, `nbf` if present in the
//!   past, each with `LEEWAY_SECONDS`; `iss` and `aud` must match when
//!   the server is told what to expect; `sub` must be a valid user id.
//! - Tokens with a `crit` header are refused: no extension is understood.
//! - Errors say why in a few words, never with key material or library
//!   error text.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use super::keys::{KeySet, VerifyingKey};
use crate::domain::UserId;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECONDS: u64 = 60;
/// Longest bearer token accepted, in bytes.
pub const TOKEN_BYTES_MAX: usize = 8 * 1024;

/// Why a bearer token is not accepted (all answer 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("a bearer token is required (Authorization: Bearer TOKEN)")]
    Missing,
    #[error("the bearer token is longer than {TOKEN_BYTES_MAX} bytes")]
    TooLong,
    #[error("the bearer token is not a well-formed signed JWT")]
    Malformed,
    #[error("no key of the set has the token's kid")]
    UnknownKey,
    #[error("no key of the set is for the token's algorithm")]
    NoKeyForAlgorithm,
    #[error("the token's algorithm is not its key's")]
    AlgorithmMismatch,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    #[error("the token's audience is not accepted")]
    WrongAudience,
    #[error("the token lacks a required claim (exp, sub, and iss or aud when required)")]
    MissingClaim,
    #[error("the token's sub is not a valid user id")]
    InvalidSubject,
}

/// What a token must say besides being signed.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

/// A verified token: its user, and until when it may be believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub user: UserId,
    pub expires_at_unix_seconds: u64,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: Option<u64>,
}

impl Rules {
    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &self.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        validation
    }
}

/// Verifies `token` with the keys of `set` it may be signed with.
pub fn verify(set: &KeySet, rules: &Rules, token: &str) -> Result<Verified, TokenError> {
    if token.len() > TOKEN_BYTES_MAX {
        return Err(TokenError::TooLong);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
    if header.crit.is_some() {
        return Err(TokenError::Malformed);
    }
    let candidates: Vec<&VerifyingKey> = match &header.kid {
        Some(kid) => {
            let key = set
                .keys
                .iter()
                .find(|key| key.kid.as_deref() == Some(kid.as_str()))
                .ok_or(TokenError::UnknownKey)?;
            if key.algorithm != header.alg {
                return Err(TokenError::AlgorithmMismatch);
            }
            vec![key]
        }
        None => set
            .keys
            .iter()
            .filter(|key| key.algorithm == header.alg)
            .collect(),
    };
    let mut outcome = Err(TokenError::NoKeyForAlgorithm);
    for key in candidates {
        outcome = verify_with(key, rules, token);
        if outcome != Err(TokenError::BadSignature) {
            break;
        }
    }
    outcome
}

fn verify_with(key: &VerifyingKey, rules: &Rules, token: &str) -> Result<Verified, TokenError> {
    let validation = rules.validation(key.algorithm);
    let data = jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
        .map_err(|error| classify(error.kind()))?;
    let (Some(sub), Some(exp)) = (data.claims.sub, data.claims.exp) else {
        return Err(TokenError::MissingClaim);
    };
    let user = UserId::parse(&sub).map_err(|_| TokenError::InvalidSubject)?;
    Ok(Verified {
        user,
        expires_at_unix_seconds: exp,
    })
}

fn classify(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => TokenError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => TokenError::AlgorithmMismatch,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::MissingRequiredClaim(_) => TokenError::MissingClaim,
        _ => TokenError::Malformed,
    }
}

//! The key set: a JSON Web Key Set (RFC 7517) read from a file, each key
//! turned into a verifying key with the one algorithm it may be used with.
//!
//! Promises:
//! - A key's algorithm comes from the key (`kty`, `crv`, and `alg` when
//!   present), never from a token: `oct` is HS256, `RSA` is RS256, `EC`
//!   P-256 is ES256, `OKP` Ed25519 is EdDSA. A key whose `alg` says
//!   otherwise, or of another type or curve, makes the whole set invalid
//!   (an operator learns at load, not from failing tokens).
//! - Weak keys are refused: HMAC secrets under 32 bytes, RSA moduli under
//!   2048 bits, curve points of the wrong length.
//! - A set has 1 to `KEYS_PER_SET_MAX` keys and no `kid` twice, so a token
//!   is tried against a bounded number of keys.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Most keys in one set (rotation needs two or three).
pub const KEYS_PER_SET_MAX: usize = 32;
/// Largest key set file read, in bytes.
pub const KEY_SET_FILE_BYTES_MAX: u64 = 1024 * 1024;
/// Shortest HMAC secret accepted (RFC 7518 3.2: at least the hash size).
const HMAC_SECRET_BYTES_MIN: usize = 32;
/// Shortest RSA modulus accepted.
const RSA_MODULUS_BYTES_MIN: usize = 256;

/// Why a key set file cannot be used. Messages name the file and the key,
/// never key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeySetError {
    #[error("cannot read the key set {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the key set {} is larger than {KEY_SET_FILE_BYTES_MAX} bytes", path.display())]
    TooLarge { path: PathBuf },
    #[error("the key set {} is not a JSON Web Key Set", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the key set {} has no keys", path.display())]
    Empty { path: PathBuf },
    #[error("the key set {} has more than {KEYS_PER_SET_MAX} keys", path.display())]
    TooMany { path: PathBuf },
    #[error("key {index} (kid {kid:?}) of {}: {reason}", path.display())]
    Key {
        path: PathBuf,
        index: usize,
        kid: Option<String>,
        reason: &'static str,
    },
}

/// One key of the set with the one algorithm it verifies.
pub(crate) struct VerifyingKey {
    pub kid: Option<String>,
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

/// A loaded key set.
pub struct KeySet {
    pub(crate) keys: Vec<VerifyingKey>,
    pub loaded_at: DateTime<Utc>,
}

impl KeySet {
    /// Reads and checks the key set in `path`.
    pub fn load(path: &Path) -> Result<KeySet, KeySetError> {
        let read_error = |source| KeySetError::Read {
            path: path.to_path_buf(),
            source,
        };
        let length = std::fs::metadata(path).map_err(read_error)?.len();
        if length > KEY_SET_FILE_BYTES_MAX {
            return Err(KeySetError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        let text = std::fs::read(path).map_err(read_error)?;
        KeySet::parse(path, &text)
    }

    /// Checks the key set `text`; `path` only names it in errors.
    pub fn parse(path: &Path, text: &[u8]) -> Result<KeySet, KeySetError> {
        let set: JwkSet = serde_json::from_slice(text).map_err(|source| KeySetError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        if set.keys.is_empty() {
            return Err(KeySetError::Empty {
                path: path.to_path_buf(),
            });
        }
        if set.keys.len() > KEYS_PER_SET_MAX {
            return Err(KeySetError::TooMany {
                path: path.to_path_buf(),
            });
        }
        let mut keys: Vec<VerifyingKey> = Vec::with_capacity(set.keys.len());
        for (index, jwk) in set.keys.iter().enumerate() {
            let kid = jwk.common.key_id.clone();
            let key_error = |reason| KeySetError::Key {
                path: path.to_path_buf(),
                index,
                kid: kid.clone(),
                reason,
            };
            if kid.is_some() && keys.iter().any(|key| key.kid == kid) {
                return Err(key_error("another key of the set has the same kid"));
            }
            let (algorithm, key) = verifying_key(jwk).map_err(key_error)?;
            keys.push(VerifyingKey {
                kid: kid.clone(),
                algorithm,
                key,
            });
        }
        Ok(KeySet {
            keys,
            loaded_at: Utc::now(),
        })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The algorithm `jwk` is for, and its verifying key.
fn verifying_key(jwk: &Jwk) -> Result<(Algorithm, DecodingKey), &'static str> {
    let (algorithm, expected) = match &jwk.algorithm {
        AlgorithmParameters::OctetKey(params) => {
            let secret = base64url(&params.value)?;
            if secret.len() < HMAC_SECRET_BYTES_MIN {
                return Err("an HMAC secret needs at least 32 bytes");
            }
            (Algorithm::HS256, KeyAlgorithm::HS256)
        }
        AlgorithmParameters::RSA(params) => {
            let modulus = base64url(&params.n)?;
            let significant = modulus.iter().skip_while(|&&b| b == 0).count();
            if significant < RSA_MODULUS_BYTES_MIN {
                return Err("an RSA modulus needs at least 2048 bits");
            }
            (Algorithm::RS256, KeyAlgorithm::RS256)
        }
        AlgorithmParameters::EllipticCurve(params) => {
            if params.curve != EllipticCurve::P256 {
                return Err("the only supported EC curve is P-256");
            }
            if base64url(&params.x)?.len() != 32 || base64url(&params.y)?.len() != 32 {
                return Err("a P-256 point has 32-byte coordinates");
            }
            (Algorithm::ES256, KeyAlgorithm::ES256)
        }
        AlgorithmParameters::OctetKeyPair(params) => {
            if params.curve != EllipticCurve::Ed25519 {
                return Err("the only supported OKP curve is Ed25519");
            }
            if base64url(&params.x)?.len() != 32 {
                return Err("an Ed25519 public key has 32 bytes");
            }
            (Algorithm::EdDSA, KeyAlgorithm::EdDSA)
        }
        _ => return Err("unsupported key type (supported: oct, RSA, EC P-256, OKP Ed25519)"),
    };
    if let Some(declared) = jwk.common.key_algorithm {
        if declared != expected {
            return Err("its alg does not match its key type (oct: HS256, RSA: RS256, EC: ES256, OKP: EdDSA)");
        }
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| "its parameters are not a valid key")?;
    Ok((algorithm, key))
}

/// Base64url without padding (RFC 7515 section 2), as JWKs carry it;
/// trailing padding is tolerated.
fn base64url(text: &str) -> Result<Vec<u8>, &'static str> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| "a parameter is not base64url")
}

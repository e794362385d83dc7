//! What identity costs per request, without HTTP: `Identity::verify` of a
//! token seen for the first time (a signature check, then a cache insert)
//! and of a token already verified (SHA-256 of the token and a cache
//! lookup), for each algorithm. Keys: the test-only keys of `tests/keys/`.
//!
//! Run: `cargo bench --bench identity` (seconds). The HTTP-level figure
//! (durable checkouts with identity on and off) is `benches/identity.sh`;
//! both are in `docs/benchmarks.md`.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use flashsale::identity::{Identity, Rules};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

/// Distinct tokens (users) per algorithm.
const TOKENS: usize = 2_000;
/// Cached verifications timed per algorithm.
const HITS: usize = 200_000;

fn key(algorithm: Algorithm) -> EncodingKey {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys");
    let read = |name: &str| std::fs::read(dir.join(name)).expect("test key");
    match algorithm {
        Algorithm::HS256 => {
            let secret = String::from_utf8(read("hs256.secret")).expect("utf-8");
            EncodingKey::from_secret(secret.trim().as_bytes()).expect("secret")
        }
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&read("rsa.pem")).expect("rsa"),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&read("ec.pem")).expect("ec"),
        _ => EncodingKey::from_ed_pem(&read("ed25519.pem")).expect("ed25519"),
    }
}

fn main() {
    let algorithms = [
        Algorithm::HS256,
        Algorithm::EdDSA,
        Algorithm::ES256,
        Algorithm::RS256,
    ];
    let keys: Vec<Jwk> = algorithms
        .iter()
        .map(|&algorithm| {
            let mut jwk = Jwk::from_encoding_key(&key(algorithm), algorithm).expect("jwk");
            jwk.common.key_id = Some(format!("{algorithm:?}"));
            jwk
        })
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("keys.jwks");
    std::fs::write(&path, serde_json::to_vec(&JwkSet { keys }).expect("json")).expect("write");
    let exp = chrono::Utc::now().timestamp() + 3600;
    println!("algorithm | first verification (signature) | cached verification");
    for algorithm in algorithms {
        let identity = Identity::load(path.clone(), Rules::default(), 100_000).expect("load");
        let mut header = Header::new(algorithm);
        header.kid = Some(format!("{algorithm:?}"));
        let signing = key(algorithm);
        let tokens: Vec<String> = (0..TOKENS)
            .map(|n| {
                let claims = serde_json::json!({ "sub": format!("user-{n}"), "exp": exp });
                jsonwebtoken::encode(&header, &claims, &signing).expect("sign")
            })
            .collect();
        let started = Instant::now();
        for token in &tokens {
            black_box(identity.verify(token).expect("valid"));
        }
        let first_us = started.elapsed().as_secs_f64() * 1e6 / TOKENS as f64;
        let started = Instant::now();
        for n in 0..HITS {
            black_box(identity.verify(&tokens[n % TOKENS]).expect("valid"));
        }
        let cached_us = started.elapsed().as_secs_f64() * 1e6 / HITS as f64;
        println!("{algorithm:?} | {first_us:.1} us | {cached_us:.2} us");
    }
}

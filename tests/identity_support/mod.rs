//! Keys, tokens and requests for `tests/e2e_identity.rs`: the test-only
//! keys of `tests/keys/` (see the README there), tokens signed with them,
//! and a server started with identity on.

use std::path::Path;

use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::common::{mid_hour_clock_offset_seconds, Server};

pub const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");
pub const ISSUER: &str = "https://issuer.test";
pub const AUDIENCE: &str = "flashsale";

pub fn key_file(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(KEYS).join(name)).expect("test key")
}

pub fn signing_key(algorithm: Algorithm, other: bool) -> EncodingKey {
    match (algorithm, other) {
        (Algorithm::HS256, _) => {
            let secret = String::from_utf8(key_file("hs256.secret")).unwrap();
            EncodingKey::from_secret(secret.trim().as_bytes()).unwrap()
        }
        (Algorithm::RS256, _) => EncodingKey::from_rsa_pem(&key_file("rsa.pem")).unwrap(),
        (Algorithm::ES256, _) => EncodingKey::from_ec_pem(&key_file("ec.pem")).unwrap(),
        (Algorithm::EdDSA, false) => EncodingKey::from_ed_pem(&key_file("ed25519.pem")).unwrap(),
        (Algorithm::EdDSA, true) => {
            EncodingKey::from_ed_pem(&key_file("ed25519-other.pem")).unwrap()
        }
        (other, _) => panic!("no test key for {other:?}"),
    }
}

/// A public JWK (the HMAC one is the secret) named `kid`.
pub fn jwk(algorithm: Algorithm, other: bool, kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(&signing_key(algorithm, other), algorithm).unwrap();
    jwk.common.key_id = Some(kid.to_string());
    jwk
}

pub fn write_set(path: &Path, keys: Vec<Jwk>) {
    std::fs::write(path, serde_json::to_vec(&JwkSet { keys }).unwrap()).unwrap();
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub fn claims(sub: &str) -> Value {
    json!({ "sub": sub, "exp": now() + 600, "iss": ISSUER, "aud": AUDIENCE })
}

pub fn sign_with(key: &EncodingKey, algorithm: Algorithm, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

pub fn sign(algorithm: Algorithm, kid: &str, claims: &Value) -> String {
    sign_with(&signing_key(algorithm, false), algorithm, kid, claims)
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// POSTs `path` with `authorization` (a header value) if any.
pub async fn post(
    server: &Server,
    path: &str,
    authorization: Option<&str>,
) -> (u16, Option<String>, Value) {
    let mut request = server.client.post(server.url(path));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    (status, challenge, response.json().await.expect("JSON body"))
}

pub async fn post_as(server: &Server, path: &str, token: &str) -> (u16, Value) {
    let (status, _, body) = post(server, path, Some(&format!("Bearer {token}"))).await;
    (status, body)
}

/// A server with identity on: the four test keys, issuer and audience.
pub fn start_on(dir: &Path, jwks: &Path) -> Server {
    let offset = mid_hour_clock_offset_seconds().to_string();
    let jwks = jwks.to_str().unwrap();
    let args = [
        "--clock-offset-seconds",
        &offset,
        "--items-per-sale",
        "100",
        "--auth-jwks",
        jwks,
        "--auth-issuer",
        ISSUER,
        "--auth-audience",
        AUDIENCE,
    ];
    Server::start(dir, &args)
}

pub fn all_keys() -> Vec<Jwk> {
    vec![
        jwk(Algorithm::HS256, false, "hs"),
        jwk(Algorithm::RS256, false, "rsa"),
        jwk(Algorithm::ES256, false, "ec"),
        jwk(Algorithm::EdDSA, false, "ed"),
    ]
}

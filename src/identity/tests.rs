//! Unit tests of identity: keys from `tests/keys/` (test-only keys, see
//! the README there), tokens minted here.

use std::path::Path;

use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;

const RSA_PEM: &str = include_str!("../../tests/keys/rsa.pem");
const EC_PEM: &str = include_str!("../../tests/keys/ec.pem");
const ED_PEM: &str = include_str!("../../tests/keys/ed25519.pem");
const ED_OTHER_PEM: &str = include_str!("../../tests/keys/ed25519-other.pem");
const HS_SECRET: &str = include_str!("../../tests/keys/hs256.secret");

fn signing_key(algorithm: Algorithm) -> EncodingKey {
    match algorithm {
        Algorithm::HS256 => EncodingKey::from_secret(HS_SECRET.trim().as_bytes()).unwrap(),
        Algorithm::RS256 => EncodingKey::from_rsa_pem(RSA_PEM.as_bytes()).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(EC_PEM.as_bytes()).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(ED_PEM.as_bytes()).unwrap(),
        other => panic!("no test key for {other:?}"),
    }
}

fn jwk(algorithm: Algorithm, kid: Option<&str>) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(&signing_key(algorithm), algorithm).unwrap();
    jwk.common.key_id = kid.map(str::to_string);
    jwk
}

fn set_text(keys: Vec<Jwk>) -> Vec<u8> {
    serde_json::to_vec(&JwkSet { keys }).unwrap()
}

fn key_set(keys: Vec<Jwk>) -> KeySet {
    KeySet::parse(Path::new("test.jwks"), &set_text(keys)).unwrap()
}

fn now() -> i64 {
    Utc::now().timestamp()
}

fn claims(sub: &str) -> Value {
    json!({ "sub": sub, "exp": now() + 600 })
}

fn sign(algorithm: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &signing_key(algorithm)).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An HS256 token signed with `secret` as the HMAC key.
fn hmac_token(kid: Option<&str>, claims: &Value, secret: &[u8]) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_string);
    let key = EncodingKey::from_secret(secret).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn user(text: &str) -> UserId {
    UserId::parse(text).unwrap()
}

fn check(set: &KeySet, token: &str) -> Result<UserId, TokenError> {
    verify::verify(set, &Rules::default(), token).map(|verified| verified.user)
}

const ALL: [Algorithm; 4] = [
    Algorithm::HS256,
    Algorithm::RS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

#[test]
fn a_token_of_each_algorithm_verifies_with_and_without_kid() {
    let set = key_set(
        ALL.iter()
            .map(|&a| jwk(a, Some(&format!("{a:?}"))))
            .collect(),
    );
    let no_kids = key_set(ALL.iter().map(|&a| jwk(a, None)).collect());
    for algorithm in ALL {
        let kid = format!("{algorithm:?}");
        let token = sign(algorithm, Some(&kid), &claims("alice"));
        assert_eq!(check(&set, &token), Ok(user("alice")), "{algorithm:?}");
        let token = sign(algorithm, None, &claims("bob"));
        assert_eq!(check(&no_kids, &token), Ok(user("bob")), "{algorithm:?}");
    }
}

#[test]
fn alg_none_is_refused() {
    let set = key_set(vec![jwk(Algorithm::HS256, Some("hs"))]);
    for header in [
        json!({ "alg": "none", "typ": "JWT" }),
        json!({ "alg": "none", "kid": "hs" }),
        json!({ "alg": "None" }),
    ] {
        let token = format!(
            "{}.{}.",
            b64(header.to_string().as_bytes()),
            b64(claims("alice").to_string().as_bytes())
        );
        assert_eq!(check(&set, &token), Err(TokenError::Malformed), "{header}");
    }
}

#[test]
fn an_hs256_token_signed_with_the_rsa_public_key_is_refused() {
    let rsa = jwk(Algorithm::RS256, Some("rsa"));
    let set = key_set(vec![rsa.clone()]);
    let jsonwebtoken::jwk::AlgorithmParameters::RSA(params) = &rsa.algorithm else {
        panic!("not RSA")
    };
    let modulus = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&params.n)
        .unwrap();
    for secret in [modulus.as_slice(), params.n.as_bytes()] {
        let token = hmac_token(Some("rsa"), &claims("mallory"), secret);
        assert_eq!(check(&set, &token), Err(TokenError::AlgorithmMismatch));
        let token = hmac_token(None, &claims("mallory"), secret);
        assert_eq!(check(&set, &token), Err(TokenError::NoKeyForAlgorithm));
    }
}

#[test]
fn a_token_whose_alg_is_not_its_keys_is_refused() {
    let set = key_set(vec![jwk(Algorithm::ES256, Some("ec"))]);
    let token = sign(Algorithm::RS256, Some("ec"), &claims("alice"));
    assert_eq!(check(&set, &token), Err(TokenError::AlgorithmMismatch));
}

#[test]
fn an_unknown_kid_or_another_key_is_refused() {
    let set = key_set(vec![jwk(Algorithm::EdDSA, Some("current"))]);
    let token = sign(Algorithm::EdDSA, Some("retired"), &claims("alice"));
    assert_eq!(check(&set, &token), Err(TokenError::UnknownKey));
    let other = EncodingKey::from_ed_pem(ED_OTHER_PEM.as_bytes()).unwrap();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("current".into());
    let forged = jsonwebtoken::encode(&header, &claims("alice"), &other).unwrap();
    assert_eq!(check(&set, &forged), Err(TokenError::BadSignature));
}

#[test]
fn a_tampered_payload_is_refused() {
    let set = key_set(vec![jwk(Algorithm::HS256, None)]);
    let token = sign(Algorithm::HS256, None, &claims("alice"));
    let parts: Vec<&str> = token.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(claims("mallory").to_string().as_bytes()),
        parts[2]
    );
    assert_eq!(check(&set, &tampered), Err(TokenError::BadSignature));
}

#[test]
fn exp_and_nbf_are_enforced_with_the_leeway() {
    let set = key_set(vec![jwk(Algorithm::HS256, None)]);
    let at = |exp: i64, nbf: Option<i64>| {
        let mut claims = json!({ "sub": "alice", "exp": now() + exp });
        if let Some(nbf) = nbf {
            claims["nbf"] = json!(now() + nbf);
        }
        check(&set, &sign(Algorithm::HS256, None, &claims))
    };
    assert_eq!(at(-120, None), Err(TokenError::Expired));
    assert_eq!(at(-30, None), Ok(user("alice")), "within the leeway");
    assert_eq!(at(600, Some(120)), Err(TokenError::NotYetValid));
    assert_eq!(at(600, Some(30)), Ok(user("alice")), "within the leeway");
    let no_exp = sign(Algorithm::HS256, None, &json!({ "sub": "alice" }));
    assert_eq!(check(&set, &no_exp), Err(TokenError::MissingClaim));
}

#[test]
fn issuer_and_audience_must_match_when_required() {
    let set = key_set(vec![jwk(Algorithm::HS256, None)]);
    let rules = Rules {
        issuer: Some("https://issuer.test".into()),
        audience: Some("flashsale".into()),
    };
    let token = |iss: Option<&str>, aud: Option<&str>| {
        let mut claims = claims("alice");
        if let Some(iss) = iss {
            claims["iss"] = json!(iss);
        }
        if let Some(aud) = aud {
            claims["aud"] = json!(aud);
        }
        let token = sign(Algorithm::HS256, None, &claims);
        verify::verify(&set, &rules, &token).map(|verified| verified.user)
    };
    let (good_iss, good_aud) = (Some("https://issuer.test"), Some("flashsale"));
    assert_eq!(token(good_iss, good_aud), Ok(user("alice")));
    assert_eq!(
        token(Some("https://evil.test"), good_aud),
        Err(TokenError::WrongIssuer)
    );
    assert_eq!(
        token(good_iss, Some("other")),
        Err(TokenError::WrongAudience)
    );
    assert_eq!(token(None, good_aud), Err(TokenError::MissingClaim));
    assert_eq!(token(good_iss, None), Err(TokenError::MissingClaim));
}

#[test]
fn a_sub_that_is_not_a_user_id_is_refused() {
    let set = key_set(vec![jwk(Algorithm::HS256, None)]);
    for sub in ["", "has space", "é"] {
        let token = sign(Algorithm::HS256, None, &claims(sub));
        assert_eq!(
            check(&set, &token),
            Err(TokenError::InvalidSubject),
            "{sub:?}"
        );
    }
}

#[test]
fn weak_or_mislabelled_keys_make_the_set_invalid() {
    let parse = |keys: Value| KeySet::parse(Path::new("t"), keys.to_string().as_bytes());
    let short = b64(b"short secret");
    assert!(parse(json!({ "keys": [{ "kty": "oct", "k": short }] })).is_err());
    let mut hs = jwk(Algorithm::HS256, Some("a"));
    assert!(parse(json!({ "keys": [hs, hs] })).is_err(), "duplicate kid");
    hs.common.key_algorithm = Some(jsonwebtoken::jwk::KeyAlgorithm::RS256);
    assert!(
        parse(json!({ "keys": [hs] })).is_err(),
        "oct labelled RS256"
    );
    assert!(parse(json!({ "keys": [] })).is_err());
    assert!(parse(json!({ "keys": [{ "kty": "oct", "k": short, "alg": "none" }] })).is_err());
    assert!(parse(json!({ "not": "a set" })).is_err());
    let mut ec = serde_json::to_value(jwk(Algorithm::ES256, None)).unwrap();
    ec["crv"] = json!("P-384");
    assert!(
        parse(json!({ "keys": [ec] })).is_err(),
        "P-384 is not ES256"
    );
}

fn write_set(path: &Path, keys: Vec<Jwk>) {
    std::fs::write(path, set_text(keys)).unwrap();
}

#[test]
fn a_reload_replaces_the_set_and_a_bad_file_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.jwks");
    write_set(&path, vec![jwk(Algorithm::HS256, Some("old"))]);
    let identity = Identity::load(path.clone(), Rules::default(), 1000).unwrap();
    let old_token = sign(Algorithm::HS256, Some("old"), &claims("alice"));
    assert_eq!(identity.verify(&old_token), Ok(user("alice")));
    assert_eq!(identity.cached_tokens(), 1);

    std::fs::write(&path, b"{ not json").unwrap();
    assert!(identity.reload().is_err());
    assert_eq!(
        identity.verify(&old_token),
        Ok(user("alice")),
        "old set kept"
    );

    write_set(&path, vec![jwk(Algorithm::EdDSA, Some("new"))]);
    assert_eq!(identity.reload().unwrap().keys, 1);
    assert_eq!(
        identity.verify(&old_token),
        Err(TokenError::UnknownKey),
        "a cached token of a removed key is refused"
    );
    let new_token = sign(Algorithm::EdDSA, Some("new"), &claims("bob"));
    assert_eq!(identity.verify(&new_token), Ok(user("bob")));
}

#[test]
fn the_identity_cache_stays_within_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.jwks");
    write_set(&path, vec![jwk(Algorithm::HS256, None)]);
    let identity = Identity::load(path, Rules::default(), 64).unwrap();
    for n in 0..500 {
        let token = sign(Algorithm::HS256, None, &claims(&format!("user-{n}")));
        assert_eq!(identity.verify(&token), Ok(user(&format!("user-{n}"))));
        assert!(identity.cached_tokens() <= 64);
    }
    let long = "a".repeat(TOKEN_BYTES_MAX + 1);
    assert_eq!(identity.verify(&long), Err(TokenError::TooLong));
}

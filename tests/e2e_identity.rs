//! Identity (signed user tokens) against the real binary: every way a
//! token can be refused answers 401 with `WWW-Authenticate: Bearer`,
//! another user's `user_id` 403, another user's code 404 exactly like an
//! unknown code; key rotation by SIGHUP; identity off changes nothing.
//! Keys: the test-only keys of `tests/keys/` (see the README there).

mod common;
mod identity_support;

use std::time::{Duration, Instant};

use common::{mid_hour_clock_offset_seconds, Server};
use identity_support::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

/// Every way a token can be wrong, named.
fn refused_tokens() -> Vec<(&'static str, String)> {
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = claims("alice");
        change(&mut claims);
        sign(Algorithm::EdDSA, "ed", &claims)
    };
    let good = sign(Algorithm::EdDSA, "ed", &claims("alice"));
    let parts: Vec<&str> = good.split('.').collect();
    let mallory = b64(claims("mallory").to_string().as_bytes());
    let none_header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let rsa = jwk(Algorithm::RS256, false, "rsa");
    let jsonwebtoken::jwk::AlgorithmParameters::RSA(rsa_params) = &rsa.algorithm else {
        panic!("not RSA")
    };
    let confusion_key = EncodingKey::from_secret(rsa_params.n.as_bytes()).unwrap();
    let other_ed = signing_key(Algorithm::EdDSA, true);
    vec![
        ("expired", with(&|c| c["exp"] = json!(now() - 120))),
        ("not yet valid", with(&|c| c["nbf"] = json!(now() + 120))),
        (
            "wrong issuer",
            with(&|c| c["iss"] = json!("https://evil.test")),
        ),
        ("wrong audience", with(&|c| c["aud"] = json!("elsewhere"))),
        (
            "no issuer",
            with(&|c| {
                c.as_object_mut().unwrap().remove("iss");
            }),
        ),
        (
            "sub not a user id",
            with(&|c| c["sub"] = json!("not a user")),
        ),
        (
            "unknown kid",
            sign(Algorithm::EdDSA, "retired", &claims("alice")),
        ),
        (
            "another key",
            sign_with(&other_ed, Algorithm::EdDSA, "ed", &claims("alice")),
        ),
        (
            "tampered payload",
            format!("{}.{mallory}.{}", parts[0], parts[2]),
        ),
        ("alg none", format!("{none_header}.{mallory}.")),
        (
            "HS256 with the RSA key",
            sign_with(&confusion_key, Algorithm::HS256, "rsa", &claims("mallory")),
        ),
        ("garbage", "not.a.jwt".to_string()),
    ]
}

#[tokio::test]
async fn every_bad_or_missing_token_answers_401_with_a_bearer_challenge() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("keys.jwks");
    write_set(&jwks, all_keys());
    let server = start_on(&dir.path().join("data"), &jwks);
    let sale = server.active_sale_id().await;
    let checkout = format!("/checkout?id={sale}-1");
    let purchase = "/purchase?code=00000000000000000000000000000000";
    let mut headers: Vec<(String, Option<String>)> = vec![
        ("no header".into(), None),
        ("basic".into(), Some("Basic YWxpY2U6c2VjcmV0".into())),
        ("empty bearer".into(), Some("Bearer ".into())),
    ];
    for (name, token) in refused_tokens() {
        headers.push((name.to_string(), Some(format!("Bearer {token}"))));
    }
    for (name, header) in &headers {
        for path in [checkout.as_str(), purchase] {
            let (status, challenge, body) = post(&server, path, header.as_deref()).await;
            assert_eq!(
                (status, body["error"].as_str()),
                (401, Some("unauthorized")),
                "{name}: {body}"
            );
            assert_eq!(challenge.as_deref(), Some("Bearer"), "{name}");
            let message = body["message"].as_str().unwrap();
            assert!(
                message.len() < 120 && !message.contains("Error"),
                "{name}: {message}"
            );
        }
    }
    let (status, _) = server.get(&format!("/sales/{sale}/items?limit=1")).await;
    assert_eq!(status, 200, "reads stay public");
    let (status, health) = server.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            health["identity"].as_str(),
            health["identity_keys"].as_u64()
        ),
        (Some("on"), Some(4))
    );
    assert!(health["identity_loaded_at"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
}

#[tokio::test]
async fn a_token_of_each_algorithm_acts_as_its_sub() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("keys.jwks");
    write_set(&jwks, all_keys());
    let server = start_on(&dir.path().join("data"), &jwks);
    let sale = server.active_sale_id().await;
    let algorithms = [
        (Algorithm::HS256, "hs"),
        (Algorithm::RS256, "rsa"),
        (Algorithm::ES256, "ec"),
        (Algorithm::EdDSA, "ed"),
    ];
    for (n, (algorithm, kid)) in algorithms.into_iter().enumerate() {
        let user = format!("user-{kid}");
        let token = sign(algorithm, kid, &claims(&user));
        let (status, cart) = post_as(&server, &format!("/checkout?id={sale}-{n}"), &token).await;
        assert_eq!(
            (status, cart["user_id"].as_str()),
            (200, Some(user.as_str())),
            "{cart}"
        );
        let code = cart["code"].as_str().unwrap();
        let path = format!("/purchase?code={code}&user_id={user}");
        let (status, bought) = post_as(&server, &path, &token).await;
        assert_eq!(
            (status, bought["success"].as_bool()),
            (200, Some(true)),
            "{bought}"
        );
    }
}

/// POSTs `path` with `token` and checks the answer is 403 `forbidden`.
async fn assert_forbidden(server: &Server, path: &str, token: &str) {
    let (status, body) = post_as(server, path, token).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("forbidden")),
        "{path}: {body}"
    );
}

#[tokio::test]
async fn another_users_id_is_403_and_another_users_code_is_404_like_an_unknown_code() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("keys.jwks");
    write_set(&jwks, all_keys());
    let server = start_on(&dir.path().join("data"), &jwks);
    let sale = server.active_sale_id().await;
    let alice = sign(Algorithm::HS256, "hs", &claims("alice"));
    let mallory = sign(Algorithm::HS256, "hs", &claims("mallory"));

    let naming_bob = format!("/checkout?user_id=bob&id={sale}-1");
    assert_forbidden(&server, &naming_bob, &alice).await;
    let (status, cart) = post_as(
        &server,
        &format!("/checkout?user_id=alice&id={sale}-1"),
        &alice,
    )
    .await;
    assert_eq!(status, 200, "{cart}");
    let code = cart["code"].as_str().unwrap().to_string();
    let naming_bob = format!("/purchase?code={code}&user_id=bob");
    assert_forbidden(&server, &naming_bob, &alice).await;

    let last_seq = |health: &Value| health["log"]["last_seq"].as_u64().unwrap();
    let unknown = "0123456789abcdef0123456789abcdef";
    let seq_before = last_seq(&server.get("/health").await.1);
    let (unknown_status, unknown_body) =
        post_as(&server, &format!("/purchase?code={unknown}"), &mallory).await;
    let seq_between = last_seq(&server.get("/health").await.1);
    let (stolen_status, stolen_body) =
        post_as(&server, &format!("/purchase?code={code}"), &mallory).await;
    let seq_after = last_seq(&server.get("/health").await.1);
    assert_eq!((unknown_status, stolen_status), (404, 404));
    assert_eq!(unknown_body["error"], "checkout_not_found");
    let shape = |body: &Value, code: &str| body.to_string().replace(code, "CODE");
    assert_eq!(shape(&stolen_body, &code), shape(&unknown_body, unknown));
    assert_eq!(seq_between - seq_before, 1, "an unknown code is recorded");
    assert_eq!(
        seq_after - seq_between,
        1,
        "another user's code is recorded the same way"
    );

    let (status, bought) = post_as(&server, &format!("/purchase?code={code}"), &alice).await;
    assert_eq!(
        (status, bought["total_purchased"].as_u64()),
        (200, Some(1)),
        "the cart was untouched: {bought}"
    );
}

/// Waits until `/health` shows `keys` keys in the set.
async fn wait_for_keys(server: &Server, keys: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, health) = server.get("/health").await;
        if health["identity_keys"].as_u64() == Some(keys) {
            return;
        }
        assert!(Instant::now() < deadline, "key set not reloaded: {health}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn hangup(server: &Server) {
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

#[tokio::test]
async fn keys_rotate_on_sighup_and_a_bad_new_set_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("keys.jwks");
    let (old_key, new_key) = (
        jwk(Algorithm::EdDSA, false, "2026-old"),
        jwk(Algorithm::EdDSA, true, "2026-new"),
    );
    write_set(&jwks, vec![old_key.clone()]);
    let server = start_on(&dir.path().join("data"), &jwks);
    let sale = server.active_sale_id().await;
    let old = sign(Algorithm::EdDSA, "2026-old", &claims("alice"));
    let new = sign_with(
        &signing_key(Algorithm::EdDSA, true),
        Algorithm::EdDSA,
        "2026-new",
        &claims("bob"),
    );
    let checkout = |n: u32| format!("/checkout?id={sale}-{n}");
    assert_eq!(post_as(&server, &checkout(1), &old).await.0, 200);
    assert_eq!(post_as(&server, &checkout(2), &new).await.0, 401);

    write_set(&jwks, vec![old_key, new_key.clone()]);
    hangup(&server);
    wait_for_keys(&server, 2).await;
    assert_eq!(
        post_as(&server, &checkout(3), &old).await.0,
        200,
        "old key still in the set"
    );
    assert_eq!(post_as(&server, &checkout(4), &new).await.0, 200);

    write_set(&jwks, vec![new_key]);
    hangup(&server);
    wait_for_keys(&server, 1).await;
    assert_eq!(
        post_as(&server, &checkout(5), &old).await.0,
        401,
        "the old key left the set"
    );
    assert_eq!(post_as(&server, &checkout(6), &new).await.0, 200);

    std::fs::write(
        &jwks,
        b"{\"keys\": [{\"kty\": \"oct\", \"k\": \"c2hvcnQ\"}]}",
    )
    .unwrap();
    hangup(&server);
    tokio::time::sleep(Duration::from_millis(500)).await;
    wait_for_keys(&server, 1).await;
    assert_eq!(
        post_as(&server, &checkout(7), &new).await.0,
        200,
        "the bad set was not taken"
    );
    assert_eq!(post_as(&server, &checkout(8), &old).await.0, 401);
}

#[tokio::test]
async fn identity_off_says_so_and_anyone_acts_as_named() {
    let dir = tempfile::tempdir().unwrap();
    let offset = mid_hour_clock_offset_seconds().to_string();
    let server = Server::start(dir.path(), &["--clock-offset-seconds", &offset]);
    let (status, health) = server.get("/health").await;
    assert_eq!((status, health["identity"].as_str()), (200, Some("off")));
    assert!(health.get("identity_keys").is_none());
    let sale = server.active_sale_id().await;
    let (status, cart) = server
        .post(&format!("/checkout?user_id=carol&id={sale}-1"))
        .await;
    assert_eq!((status, cart["user_id"].as_str()), (200, Some("carol")));
    let code = cart["code"].as_str().unwrap();
    let (status, bought) = server.post(&format!("/purchase?code={code}")).await;
    assert_eq!((status, bought["success"].as_bool()), (200, Some(true)));
    let (status, _) = server.post(&format!("/checkout?id={sale}-2")).await;
    assert_eq!(status, 400, "user_id is still required with identity off");
}

#[tokio::test]
async fn a_bad_key_set_stops_the_start_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("keys.jwks");
    for content in [
        None,
        Some(&b"{ not json"[..]),
        Some(&br#"{"keys": []}"#[..]),
    ] {
        if let Some(content) = content {
            std::fs::write(&jwks, content).unwrap();
        }
        let args = ["--auth-jwks", jwks.to_str().unwrap()];
        let failure = Server::try_start(&dir.path().join("data"), &args)
            .err()
            .expect("start refused");
        assert_ne!(failure.status.map(|s| s.success()), Some(true));
        let stderr = failure.stderr.trim();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("key set"), "{stderr}");
    }
}

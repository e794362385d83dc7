//! Limits under floods, over real HTTP against the real binary: one user
//! over its write rate is throttled while others are served; the client
//! address comes from X-Forwarded-For only when the peer is a trusted
//! proxy; a sale admits `--users-per-sale-max` users, refuses the next with
//! a recorded 409 `sale_full`, and lets the users in keep buying.

mod common;

use common::{mid_hour_clock_offset_seconds, Server};
use serde_json::Value;

/// Attempts that surely exceed a burst of twice a rate of 2 per second,
/// even on a slow disk (each checkout waits for its fsync).
const FLOOD_REQUESTS: usize = 40;

fn start(dir: &tempfile::TempDir, extra: &[&str]) -> Server {
    let offset = mid_hour_clock_offset_seconds().to_string();
    let mut args = vec!["--clock-offset-seconds", offset.as_str()];
    args.extend_from_slice(extra);
    Server::start(dir.path(), &args)
}

/// Sends `method path` with `X-Forwarded-For: forwarded` if given; returns
/// the status, the Retry-After header and the body.
async fn send(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    forwarded: Option<&str>,
) -> (u16, Option<String>, Value) {
    let mut request = server.client.request(method, server.url(path));
    if let Some(forwarded) = forwarded {
        request = request.header("x-forwarded-for", forwarded);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body: Value = response.json().await.expect("JSON body");
    (status, retry_after, body)
}

fn assert_rate_limited(answer: &(u16, Option<String>, Value)) {
    let (status, retry_after, body) = answer;
    assert_eq!(*status, 429, "{body}");
    assert_eq!(body["error"], "rate_limited", "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    let seconds: u32 = retry_after
        .as_deref()
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(seconds >= 1, "Retry-After {seconds}");
}

/// Sends GET /sales/active until one answer is 429 (at most
/// `FLOOD_REQUESTS`); returns that answer.
async fn flood(server: &Server, forwarded: Option<&str>) -> Option<(u16, Option<String>, Value)> {
    for _ in 0..FLOOD_REQUESTS {
        let answer = send(server, reqwest::Method::GET, "/sales/active", forwarded).await;
        if answer.0 == 429 {
            return Some(answer);
        }
        assert_eq!(answer.0, 200, "{}", answer.2);
    }
    None
}

#[tokio::test]
async fn one_user_over_its_rate_gets_429_with_retry_after_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &["--user-writes-per-second", "2"]);
    let sale = server.active_sale_id().await;
    let checkout = format!("/checkout?user_id=alice&id={sale}-1");
    let (status, cart) = server.post(&checkout).await;
    assert_eq!(status, 200, "{cart}");
    let code = cart["code"].as_str().unwrap().to_string();
    let mut throttled = None;
    for _ in 0..FLOOD_REQUESTS {
        let answer = send(&server, reqwest::Method::POST, &checkout, None).await;
        if answer.0 == 429 {
            throttled = Some(answer);
            break;
        }
        assert_eq!(answer.0, 200, "{}", answer.2);
    }
    assert_rate_limited(&throttled.expect("alice is throttled"));
    // Her purchase counts against her too: the code names her cart.
    let purchase = format!("/purchase?code={code}");
    let answer = send(&server, reqwest::Method::POST, &purchase, None).await;
    assert_rate_limited(&answer);
    // Others are served meanwhile.
    let (status, body) = server
        .post(&format!("/checkout?user_id=bob&id={sale}-2"))
        .await;
    assert_eq!(status, 200, "{body}");
    // The per-user limiter holds their two keys, and operators can see it.
    let user_keys = metric(&server, "flashsale_limiter_keys{limiter=\"user\"}").await;
    assert_eq!(
        user_keys, 2,
        "alice and bob are the per-user limiter's keys"
    );
    // And alice is served again once her budget refills.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, body) = server.post(&purchase).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn forwarded_for_names_the_client_only_behind_a_trusted_proxy() {
    let limits = ["--client-requests-per-second", "2"];
    let dir = tempfile::tempdir().unwrap();
    let trusting = start(
        &dir,
        &[&limits[..], &["--trusted-proxies", "127.0.0.1/32"]].concat(),
    );
    assert_rate_limited(
        &flood(&trusting, Some("203.0.113.1"))
            .await
            .expect("throttled"),
    );
    // Another forwarded client is another address...
    let (status, _, body) = send(
        &trusting,
        reqwest::Method::GET,
        "/sales/active",
        Some("203.0.113.2"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // ...and a client cannot escape by prepending addresses of its own.
    let (status, _, body) = send(
        &trusting,
        reqwest::Method::GET,
        "/sales/active",
        Some("198.51.100.7, 203.0.113.1"),
    )
    .await;
    assert_eq!(status, 429, "{body}");
    drop(trusting);

    let dir = tempfile::tempdir().unwrap();
    let untrusting = start(&dir, &limits);
    assert_rate_limited(
        &flood(&untrusting, Some("203.0.113.3"))
            .await
            .expect("throttled"),
    );
    // The peer (127.0.0.1) is not trusted: its header is ignored, and
    // every request counts against the peer.
    let (status, _, body) = send(
        &untrusting,
        reqwest::Method::GET,
        "/health",
        Some("203.0.113.4"),
    )
    .await;
    assert_eq!(status, 429, "{body}");
}

async fn metric(server: &Server, line_start: &str) -> u64 {
    let text = server.metrics_text().await;
    text.lines()
        .find(|line| line.starts_with(line_start))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_full_sale_refuses_only_new_users_with_a_recorded_sale_full() {
    const USERS_MAX: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--users-per-sale-max", "5", "--user-writes-per-second", "0"];
    let server = start(&dir, &flags);
    let sale = server.active_sale_id().await;
    let mut codes = Vec::new();
    for n in 0..USERS_MAX {
        let (status, cart) = server
            .post(&format!("/checkout?user_id=user{n}&id={sale}-{n}"))
            .await;
        assert_eq!(status, 200, "user {n} of {USERS_MAX}: {cart}");
        codes.push(cart["code"].as_str().unwrap().to_string());
    }
    let late = format!("/checkout?user_id=late&id={sale}-9");
    let (status, body) = server.post(&late).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("sale_full")),
        "{body}"
    );
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    let refused = metric(
        &server,
        "flashsale_checkout_outcomes_total{outcome=\"sale_full\"}",
    )
    .await;
    assert_eq!(refused, 1, "counted once its record is durable");

    // Users already in keep buying.
    let (status, cart) = server
        .post(&format!("/checkout?user_id=user0&id={sale}-7"))
        .await;
    assert_eq!(status, 200, "{cart}");
    let (status, bought) = server.post(&format!("/purchase?code={}", codes[0])).await;
    assert_eq!(
        (status, bought["total_purchased"].as_u64()),
        (200, Some(2)),
        "{bought}"
    );

    // After a restart the sale still holds its five users and no more.
    assert!(server.terminate().success());
    let server = start(&dir, &flags);
    let (status, body) = server.post(&late).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("sale_full")),
        "{body}"
    );
    let (status, bought) = server.post(&format!("/purchase?code={}", codes[1])).await;
    assert_eq!(status, 200, "{bought}");
}

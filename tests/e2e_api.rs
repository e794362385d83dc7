//! Every route and every error code of the contract, over HTTP, against the
//! real binary.

mod common;

use common::{mid_hour_clock_offset_seconds, Server};

fn start(dir: &tempfile::TempDir, extra: &[&str]) -> Server {
    let offset = mid_hour_clock_offset_seconds().to_string();
    let mut args = vec!["--clock-offset-seconds", offset.as_str()];
    args.extend_from_slice(extra);
    Server::start(dir.path(), &args)
}

/// POSTs `path` and checks the answer is the contract's error `code` with
/// HTTP `status`; returns the body.
async fn post_refused(server: &Server, path: &str, status: u16, code: &str) -> serde_json::Value {
    let (found, body) = server.post(path).await;
    assert_eq!(
        (found, body["error"].as_str()),
        (status, Some(code)),
        "POST {path}: {body}"
    );
    body
}

/// The id of the sale an hour after `sale` (`YYYYMMDDHH`).
fn next_sale_id(sale: &str) -> String {
    let start =
        chrono::NaiveDateTime::parse_from_str(&format!("{sale}0000"), "%Y%m%d%H%M%S").unwrap();
    (start + chrono::Duration::hours(1))
        .format("%Y%m%d%H")
        .to_string()
}

/// Sends `method path` and checks the contract's error shape: `status`,
/// a request id, the error `code` and a message.
async fn assert_error_answer(server: &Server, method: &str, path: &str, status: u16, code: &str) {
    let request = server
        .client
        .request(method.parse().unwrap(), server.url(path));
    let response = request.send().await.unwrap();
    assert_eq!(response.status().as_u16(), status, "{method} {path}");
    assert!(response.headers().contains_key("x-request-id"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], code, "{method} {path}: {body}");
    assert!(!body["message"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn checkout_and_purchase_follow_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &["--items-per-sale", "100", "--user-limit", "3"]);
    let sale = server.active_sale_id().await;
    let code = fill_alices_cart(&server, &sale).await;
    alice_buys_what_bob_left(&server, &sale, &code).await;
    sold_items_and_a_spent_limit_are_refused(&server, &sale, &code).await;
    sale_and_item_pages_count_the_sold_items(&server, &sale).await;
}

/// Alice's cart grows to the user limit of 3 under one code; returns it.
async fn fill_alices_cart(server: &Server, sale: &str) -> String {
    let (status, cart) = server
        .post(&format!("/checkout?user_id=alice&id={sale}-1"))
        .await;
    assert_eq!(status, 200, "{cart}");
    let code = cart["code"].as_str().unwrap().to_string();
    assert!(code.len() >= 24 && code.len() <= 64, "{code}");
    assert!(code
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(cart["sale_id"], sale);
    assert_eq!(cart["user_id"], "alice");
    assert_eq!(cart["items"], serde_json::json!([format!("{sale}-1")]));
    assert_eq!(cart["items_count"], 1);
    assert!(cart["sale_ends_at"].as_str().unwrap().ends_with("Z"));

    // Same cart, same code; repeating an item changes nothing.
    let (_, again) = server
        .post(&format!("/checkout?user_id=alice&id={sale}-2"))
        .await;
    assert_eq!(again["code"], code.as_str());
    let (status, same) = server
        .post(&format!("/checkout?user_id=alice&id={sale}-2"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(same["items_count"], 2);
    let (_, full) = server
        .post(&format!("/checkout?user_id=alice&id={sale}-3"))
        .await;
    assert_eq!(full["items_count"], 3);
    let path = format!("/checkout?user_id=alice&id={sale}-4");
    post_refused(server, &path, 409, "user_limit_reached").await;
    let (status, _) = server
        .post(&format!("/checkout?user_id=alice&id={sale}-3"))
        .await;
    assert_eq!(
        status, 200,
        "an item already in a full cart still answers 200"
    );
    code
}

/// Bob buys item 2 first: alice's purchase reports it sold out, and the
/// same purchase again gives the same answer.
async fn alice_buys_what_bob_left(server: &Server, sale: &str, code: &str) {
    let (_, bob) = server
        .post(&format!("/checkout?user_id=bob&id={sale}-2"))
        .await;
    let (status, bought) = server
        .post(&format!("/purchase?code={}", bob["code"].as_str().unwrap()))
        .await;
    assert_eq!(status, 200, "{bought}");
    assert_eq!(bought["success"], true);
    assert_eq!(bought["total_purchased"], 1);

    let (status, receipt) = server.post(&format!("/purchase?code={code}")).await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["success"], true);
    assert_eq!(receipt["code"], code);
    assert_eq!(receipt["user_id"], "alice");
    assert_eq!(receipt["total_purchased"], 2);
    assert_eq!(receipt["failed_count"], 1);
    assert_eq!(
        receipt["failed_items"],
        serde_json::json!([{ "id": format!("{sale}-2"), "reason": "sold_out" }])
    );
    let names: Vec<&str> = receipt["purchased_items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2);

    // The same purchase again: the same status and body, nothing bought twice.
    let (status, repeat) = server.post(&format!("/purchase?code={code}")).await;
    assert_eq!(status, 200);
    assert_eq!(repeat, receipt);
}

/// A sold item is refused to others; alice, having bought 2 of 3, gets a
/// new cart with room for one item.
async fn sold_items_and_a_spent_limit_are_refused(server: &Server, sale: &str, code: &str) {
    let path = format!("/checkout?user_id=carol&id={sale}-1");
    let error = post_refused(server, &path, 409, "item_sold_out").await;
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains(&format!("{sale}-1")));

    let (status, next) = server
        .post(&format!("/checkout?user_id=alice&id={sale}-10"))
        .await;
    assert_eq!(status, 200);
    assert_ne!(next["code"], code);
    let path = format!("/checkout?user_id=alice&id={sale}-11");
    post_refused(server, &path, 409, "user_limit_reached").await;
}

/// The sale and its item pages show the 3 items sold of 100.
async fn sale_and_item_pages_count_the_sold_items(server: &Server, sale: &str) {
    let (status, sale_body) = server.get("/sales/active").await;
    assert_eq!(status, 200);
    assert_eq!(sale_body["total_items"], 100);
    assert_eq!(sale_body["items_sold"], 3);
    assert_eq!(sale_body["items_available"], 97);
    assert_eq!(sale_body["user_limit"], 3);
    assert_eq!(sale_body["status"], "active");
    let (_, by_id) = server.get(&format!("/sales/{sale}")).await;
    assert_eq!(by_id, sale_body);
    let next = next_sale_id(sale);
    let (status, upcoming) = server.get(&format!("/sales/{next}")).await;
    assert_eq!(status, 200, "{upcoming}");
    assert_eq!(upcoming["status"], "upcoming");
    assert_eq!(
        (&upcoming["items_sold"], &upcoming["total_items"]),
        (&serde_json::json!(0), &serde_json::json!(100))
    );
    let (status, _) = server
        .post(&format!("/checkout?user_id=carol@example.com&id={sale}-50"))
        .await;
    assert_eq!(status, 200, "an e-mail address is a user id");

    let (status, page) = server
        .get(&format!("/sales/{sale}/items?offset=0&limit=5"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["total"], 100);
    assert_eq!(page["limit"], 5);
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    assert_eq!(items[1]["id"], format!("{sale}-1").as_str());
    assert_eq!(items[1]["sold"], true);
    assert_eq!(items[0]["sold"], false);
    assert!(items[0]["image_url"]
        .as_str()
        .unwrap()
        .starts_with("https://"));
    let (_, available) = server
        .get(&format!("/sales/{sale}/items?available=true&limit=1000"))
        .await;
    assert_eq!(available["total"], 97);
    assert!(available["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["sold"] == false));
}

/// A server whose sale has 10 items: `{sale}-10` does not exist.
fn start_ten_items(dir: &tempfile::TempDir) -> Server {
    start(dir, &["--items-per-sale", "10"])
}

#[tokio::test]
async fn malformed_requests_are_invalid_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_ten_items(&dir);
    let sale = server.active_sale_id().await;
    let long_user = "u".repeat(65);
    let posts = [
        "/checkout?id=x".to_string(),
        format!("/checkout?user_id=&id={sale}-1"),
        format!("/checkout?user_id={long_user}&id={sale}-1"),
        format!("/checkout?user_id=a%20b&id={sale}-1"),
        format!("/checkout?user_id=a%ZZ&id={sale}-1"),
        "/checkout?user_id=a&id=nonsense".to_string(),
        format!("/checkout?user_id=a&id={sale}-01"),
        format!("/checkout?user_id=a&id={sale}-1000000"),
        "/purchase".to_string(),
        "/purchase?code=a%20b".to_string(),
        format!("/purchase?code={}", "f".repeat(65)),
    ];
    let gets = [
        "/sales/notasale".to_string(),
        format!("/sales/{sale}/items?limit=0"),
        format!("/sales/{sale}/items?limit=1001"),
        format!("/sales/{sale}/items?offset=-1"),
        format!("/sales/{sale}/items?available=maybe"),
    ];
    let requests = posts.iter().map(|path| ("POST", path));
    for (method, path) in requests.chain(gets.iter().map(|path| ("GET", path))) {
        assert_error_answer(&server, method, path, 400, "invalid_request").await;
    }
}

#[tokio::test]
async fn unknown_items_codes_sales_and_routes_are_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_ten_items(&dir);
    let sale = server.active_sale_id().await;
    let cases = [
        (
            "POST",
            format!("/checkout?user_id=a&id={sale}-10"),
            "item_not_found",
        ),
        (
            "POST",
            "/checkout?user_id=a&id=2001010100-1".into(),
            "item_not_found",
        ),
        (
            "POST",
            format!("/purchase?code={}", "0".repeat(32)),
            "checkout_not_found",
        ),
        // Well-formed but never issued, whatever its shape.
        ("POST", "/purchase?code=short".into(), "checkout_not_found"),
        (
            "POST",
            format!("/checkout?user_id=a&id={sale}-999999"),
            "item_not_found",
        ),
        ("GET", "/nowhere".into(), "not_found"),
        ("GET", "/sales/2001010100".into(), "sale_not_found"),
        ("GET", "/sales/2001010100/items".into(), "sale_not_found"),
    ];
    for (method, path, code) in cases {
        assert_error_answer(&server, method, &path, 404, code).await;
    }
}

#[tokio::test]
async fn wrong_methods_are_method_not_allowed_and_big_bodies_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_ten_items(&dir);
    for (method, path) in [
        ("GET", "/checkout?user_id=a&id=x"),
        ("DELETE", "/sales/active"),
    ] {
        assert_error_answer(&server, method, path, 405, "method_not_allowed").await;
    }

    let big_body = vec![b'x'; 64 * 1024];
    let response = server
        .client
        .post(server.url("/checkout?user_id=a&id=x"))
        .body(big_body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "payload_too_large");
}

/// Sell out the whole sale: the next checkout reports the sale sold out.
#[tokio::test]
async fn a_sold_out_sale_refuses_checkouts() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_ten_items(&dir);
    let sale = server.active_sale_id().await;
    for n in 0..10 {
        let (_, cart) = server
            .post(&format!("/checkout?user_id=buyer{n}&id={sale}-{n}"))
            .await;
        let (status, _) = server
            .post(&format!(
                "/purchase?code={}",
                cart["code"].as_str().unwrap()
            ))
            .await;
        assert_eq!(status, 200);
    }
    let path = format!("/checkout?user_id=late&id={sale}-3");
    post_refused(&server, &path, 409, "sale_sold_out").await;
}

#[tokio::test]
async fn request_ids_are_echoed_and_health_and_metrics_answer() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &[]);
    let response = server
        .client
        .get(server.url("/health"))
        .header("x-request-id", "req-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["x-request-id"], "req-42");
    let health: serde_json::Value = response.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["log"]["state"], "ok");
    assert_eq!(health["exporter"]["state"], "disabled");
    assert!(health["active_sale"]["id"].is_string());

    let sale = server.active_sale_id().await;
    server
        .post(&format!("/checkout?user_id=m&id={sale}-5"))
        .await;
    let text = server.metrics_text().await;
    for name in [
        "flashsale_http_requests_total",
        "flashsale_http_request_duration_seconds",
        "flashsale_checkout_outcomes_total",
        "flashsale_active_sale_items_sold",
        "flashsale_wal_appends_total",
        "flashsale_wal_batch_records",
        "flashsale_wal_fsync_latency_seconds",
        "flashsale_wal_failed",
    ] {
        assert!(text.contains(name), "metric {name} missing");
    }
    assert!(text.contains("route=\"/checkout\""));
}

#[tokio::test]
async fn a_cart_of_an_ended_sale_cannot_be_bought() {
    let dir = tempfile::tempdir().unwrap();
    let offset = mid_hour_clock_offset_seconds();
    let server = Server::start(dir.path(), &["--clock-offset-seconds", &offset.to_string()]);
    let sale = server.active_sale_id().await;
    let (_, cart) = server
        .post(&format!("/checkout?user_id=slow&id={sale}-1"))
        .await;
    let code = cart["code"].as_str().unwrap().to_string();
    assert_eq!(server.terminate().code(), Some(0));

    // One hour later: a new sale is active, the old one is past but known.
    let later = (offset + 3600).to_string();
    let server = Server::start(dir.path(), &["--clock-offset-seconds", &later]);
    assert_ne!(server.active_sale_id().await, sale);
    let purchase = format!("/purchase?code={code}");
    post_refused(&server, &purchase, 409, "sale_not_active").await;
    let checkout = format!("/checkout?user_id=slow&id={sale}-2");
    post_refused(&server, &checkout, 409, "sale_not_active").await;
    let (status, past) = server.get(&format!("/sales/{sale}")).await;
    assert_eq!(status, 200);
    assert_eq!(past["items_sold"], 0);
}

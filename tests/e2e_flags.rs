//! Flags changed across restarts of the real binary, in the middle of a
//! sale: a sale's settings are fixed when it opens (recorded in the log),
//! so raising or lowering `--items-per-sale` or `--user-limit` neither
//! refuses the start nor reopens, resizes or re-limits the sale.

mod common;

use common::{mid_hour_clock_offset_seconds, Server};

const SALE_ITEMS: &str = "3";
const SALE_USER_LIMIT: &str = "2";

fn start(dir: &tempfile::TempDir, items: &str, limit: &str, offset: &str) -> Server {
    Server::start(
        dir.path(),
        &[
            "--items-per-sale",
            items,
            "--user-limit",
            limit,
            "--clock-offset-seconds",
            offset,
        ],
    )
}

/// Sells every item: alice buys items 0 and 1 (her limit), bob item 2.
/// Returns both codes with the purchase bodies.
async fn sell_out(server: &Server, sale: &str) -> Vec<(String, serde_json::Value)> {
    let mut bought = Vec::new();
    for (user, items) in [("alice", &[0, 1][..]), ("bob", &[2][..])] {
        let mut code = String::new();
        for item in items {
            let (status, cart) = server
                .post(&format!("/checkout?user_id={user}&id={sale}-{item}"))
                .await;
            assert_eq!(status, 200, "{cart}");
            code = cart["code"].as_str().unwrap().to_string();
        }
        let (status, purchase) = server.post(&format!("/purchase?code={code}")).await;
        assert_eq!(status, 200, "{purchase}");
        bought.push((code, purchase));
    }
    bought
}

#[tokio::test]
async fn raising_and_lowering_flags_mid_sale_leaves_the_open_sale_as_it_opened() {
    let dir = tempfile::tempdir().unwrap();
    let offset = mid_hour_clock_offset_seconds().to_string();
    let server = start(&dir, SALE_ITEMS, SALE_USER_LIMIT, &offset);
    let sale = server.active_sale_id().await;
    let bought = sell_out(&server, &sale).await;
    assert!(server.terminate().success());

    for (items, limit) in [("20000", "1000"), ("1", "1"), ("10000", "10")] {
        let server = start(&dir, items, limit, &offset);
        let (status, view) = server.get(&format!("/sales/{sale}")).await;
        assert_eq!(status, 200, "{view}");
        assert_eq!(view["total_items"], 3, "flags {items}/{limit}: {view}");
        assert_eq!(view["user_limit"], 2, "flags {items}/{limit}: {view}");
        assert_eq!(
            (&view["items_sold"], &view["items_available"]),
            (&3.into(), &0.into())
        );
        let (status, refused) = server
            .post(&format!("/checkout?user_id=carol&id={sale}-1"))
            .await;
        assert_eq!((status, &refused["error"]), (409, &"sale_sold_out".into()));
        let (status, refused) = server
            .post(&format!("/checkout?user_id=carol&id={sale}-5"))
            .await;
        assert_eq!((status, &refused["error"]), (404, &"item_not_found".into()));
        for (code, first) in &bought {
            let (status, again) = server.post(&format!("/purchase?code={code}")).await;
            assert_eq!((status, &again), (200, first), "flags {items}/{limit}");
        }
        let (_, health) = server.get("/health").await;
        assert_eq!(health["status"], "ok", "{health}");
        assert!(server.terminate().success());
    }
}

//! What clients were told, kept by the crash tests: clients check out and
//! buy against a server that is killed under them; after a restart every
//! acknowledged answer must still hold (`verify`), and no purchase ever
//! acknowledged may break the sale's rules (`audit`).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Server;

/// What clients were told, answer by answer.
#[derive(Default, Clone)]
pub struct Ledger {
    /// code -> the body of the acknowledged purchase.
    pub purchases: BTreeMap<String, Value>,
    /// code -> items acknowledged in that cart.
    pub carts: BTreeMap<String, BTreeSet<String>>,
}

/// Who checks out what: users `user0..users`, items `1..items` of the sale.
#[derive(Clone, Copy)]
pub struct LoadShape {
    pub users: u64,
    pub items: u64,
}

/// Checkouts (and a purchase after one in three) until `deadline` or until
/// the server stops answering, noting every acknowledgement in `ledger`.
pub async fn client_loop(
    url: String,
    sale: String,
    seed: u64,
    deadline: Instant,
    shape: LoadShape,
    ledger: Arc<parking_lot::Mutex<Ledger>>,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut next = super::numbers_below(seed);
    while Instant::now() < deadline {
        let user = format!("user{}", next(shape.users));
        let item = format!("{sale}-{}", next(shape.items));
        let path = format!("{url}/checkout?user_id={user}&id={item}");
        let Ok(response) = client.post(path).send().await else {
            return;
        };
        if response.status() != 200 {
            continue;
        }
        let Ok(cart) = response.json::<Value>().await else {
            return;
        };
        let code = cart["code"].as_str().unwrap().to_string();
        let items = cart["items"].as_array().unwrap().iter();
        let items = items.map(|i| i.as_str().unwrap().to_string());
        ledger
            .lock()
            .carts
            .entry(code.clone())
            .or_default()
            .extend(items);
        if next(3) == 0 {
            let path = format!("{url}/purchase?code={code}");
            let Ok(response) = client.post(path).send().await else {
                return;
            };
            if response.status() == 200 {
                let Ok(body) = response.json::<Value>().await else {
                    return;
                };
                ledger.lock().purchases.insert(code, body);
            }
        }
    }
}

impl Ledger {
    /// Adds what `other` holds: its purchases (a code acknowledged in both
    /// must have had the same answer) and its carts' items.
    pub fn merge(&mut self, other: Ledger) {
        for (code, body) in other.purchases {
            if let Some(before) = self.purchases.get(&code) {
                assert_eq!(before, &body, "purchase {code} answered differently");
            }
            self.purchases.insert(code, body);
        }
        for (code, items) in other.carts {
            self.carts.entry(code).or_default().extend(items);
        }
    }

    /// Items bought across every purchase held.
    pub fn items_bought(&self) -> usize {
        let bought = self.purchases.values();
        bought
            .map(|body| body["purchased_items"].as_array().map_or(0, Vec::len))
            .sum()
    }
}

/// Every acknowledged purchase answers identically; every acknowledged
/// cart still holds at least its acknowledged items.
pub async fn verify(server: &Server, ledger: &Ledger) {
    verify_returning_receipts(server, ledger).await;
}

/// `verify`, returning the receipts (code -> body) of the acknowledged
/// carts it bought to see their items: purchases the server answered, which
/// a caller adds to what it audits and checks again later.
pub async fn verify_returning_receipts(
    server: &Server,
    ledger: &Ledger,
) -> BTreeMap<String, Value> {
    let mut receipts = BTreeMap::new();
    for (code, body) in &ledger.purchases {
        let (status, again) = server.post(&format!("/purchase?code={code}")).await;
        assert_eq!(status, 200, "acknowledged purchase {code} lost: {again}");
        assert_eq!(&again, body, "purchase {code} answers differently");
    }
    for (code, items) in &ledger.carts {
        if ledger.purchases.contains_key(code) {
            continue;
        }
        // Buying the cart now (or replaying a purchase that was durable but
        // never acknowledged) shows which items the cart held.
        let (status, receipt) = server.post(&format!("/purchase?code={code}")).await;
        assert_eq!(status, 200, "acknowledged cart {code} lost: {receipt}");
        let mut held = BTreeSet::new();
        for key in ["purchased_items", "failed_items"] {
            for item in receipt[key].as_array().unwrap() {
                held.insert(item["id"].as_str().unwrap().to_string());
            }
        }
        assert!(
            items.is_subset(&held),
            "cart {code} lost items: acknowledged {items:?}, now {held:?}"
        );
        receipts.insert(code.clone(), receipt);
    }
    receipts
}

/// `verify_returning_receipts` with `tasks` checks in flight at once (a
/// durable server makes concurrent writes share a flush): for ledgers of
/// many thousand answers, as the kill -9 soak keeps.
pub async fn verify_concurrently(
    server: &Server,
    ledger: &Ledger,
    tasks: usize,
) -> BTreeMap<String, Value> {
    // A code's cart and purchase go to the same part: a part holding the
    // cart alone would buy it again.
    let mut parts = vec![Ledger::default(); tasks.max(1)];
    let count = parts.len();
    let codes = ledger.carts.keys().chain(ledger.purchases.keys());
    let codes: BTreeSet<&String> = codes.collect();
    for (n, code) in codes.into_iter().enumerate() {
        let part = &mut parts[n % count];
        if let Some(items) = ledger.carts.get(code) {
            part.carts.insert(code.clone(), items.clone());
        }
        if let Some(body) = ledger.purchases.get(code) {
            part.purchases.insert(code.clone(), body.clone());
        }
    }
    let checks = parts
        .iter()
        .map(|part| verify_returning_receipts(server, part));
    let mut receipts = BTreeMap::new();
    for part in join_all(checks.collect()).await {
        receipts.extend(part);
    }
    receipts
}

/// Runs `futures` concurrently on the current task; their outputs in order.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|context| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(context) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}

/// No item has two owners and no user is over the limit, across every
/// purchase ever acknowledged.
pub fn audit(ledger: &Ledger, user_limit: usize) {
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    let mut per_user: BTreeMap<String, usize> = BTreeMap::new();
    for body in ledger.purchases.values() {
        let user = body["user_id"].as_str().unwrap().to_string();
        for item in body["purchased_items"].as_array().unwrap() {
            let id = item["id"].as_str().unwrap().to_string();
            if let Some(other) = owners.insert(id.clone(), user.clone()) {
                panic!("item {id} sold to {other} and {user}");
            }
            *per_user.entry(user.clone()).or_default() += 1;
        }
    }
    for (user, count) in per_user {
        assert!(count <= user_limit, "user {user} bought {count} items");
    }
}

//! A fresh PostgreSQL database per test, dropped at the end. PostgreSQL is
//! required: an unreachable server fails the test with a clear message,
//! never skips it.

use tokio_postgres::{Client, NoTls};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub struct TestDatabase {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        let admin_url =
            std::env::var("FLASHSALE_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.into());
        let name = format!("flashsale_t_{:016x}", getrandom::u64().expect("random"));
        let admin = connect_or_fail(&admin_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let url = url_with_database(&admin_url, &name);
        TestDatabase {
            name,
            url,
            admin_url,
        }
    }

    pub async fn client(&self) -> Client {
        connect_or_fail(&self.url).await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime: use a thread with its own.
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                if let Ok((client, connection)) = tokio_postgres::connect(&admin_url, NoTls).await {
                    tokio::spawn(connection);
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    if let Err(error) = client.batch_execute(&sql).await {
                        eprintln!("cannot drop test database {name}: {error}");
                    }
                }
            });
        });
        let _ = dropper.join();
    }
}

pub async fn connect_or_fail(url: &str) -> Client {
    match tokio_postgres::connect(url, NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            client
        }
        Err(error) => panic!(
            "PostgreSQL is required for the export tests and is unreachable at {url}: {error}. \
             Start it or set FLASHSALE_TEST_DATABASE_URL."
        ),
    }
}

/// `url` naming database `name` instead of its own.
pub fn url_with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{base}/{name}{query}")
}

/// Every table and view as JSON lines, in a fixed order, for comparing two
/// databases row by row.
pub async fn dump(client: &Client) -> Vec<String> {
    let queries = [
        "SELECT to_jsonb(t)::text FROM sales t ORDER BY sale_id",
        "SELECT to_jsonb(t)::text FROM items t ORDER BY item_id",
        "SELECT to_jsonb(t)::text FROM checkout_attempts t ORDER BY seq",
        "SELECT to_jsonb(t)::text FROM purchases t ORDER BY seq",
        "SELECT to_jsonb(t)::text FROM purchase_items t ORDER BY purchase_seq, item_id",
        "SELECT to_jsonb(t)::text FROM sale_summary t ORDER BY sale_id",
        "SELECT to_jsonb(t)::text FROM checkout_funnel t ORDER BY sale_id",
        "SELECT last_seq::text FROM export_cursor",
    ];
    let mut lines = Vec::new();
    for sql in queries {
        for row in client.query(sql, &[]).await.expect("dump query") {
            lines.push(row.get::<_, String>(0));
        }
    }
    lines
}

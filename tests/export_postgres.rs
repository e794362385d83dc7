//! The exporter against a real PostgreSQL (never a mock): rows equal
//! records, exactly once across failures at every point of a batch, resumed
//! from the cursor, the same tables offline and live.
//!
//! Needs PostgreSQL at `FLASHSALE_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) with the right to create
//! databases. Every test works in its own fresh database, so tests run in
//! parallel. An unreachable PostgreSQL fails the tests, it never skips them.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::postgres::{dump, TestDatabase};
use flashsale::domain::{CheckoutCode, ItemId, SaleId};
use flashsale::engine::{
    CheckoutOutcome, CheckoutRecord, ItemOutcome, PurchaseItem, PurchaseOutcome, PurchaseRecord,
    Record, Rejection, SaleOpenedRecord,
};
use flashsale::export::schema::{migrate, MIGRATIONS};
use flashsale::export::{
    export_once, spawn_exporter, ExportConfig, ExportError, ExportStatus, MemorySource,
    RecordSource, RunningExporter, SourceError, WalSource,
};
use flashsale::journal;
use flashsale::shutdown::Shutdown;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

const ITEMS_PER_SALE: u32 = 50;
const SALE_A: u32 = 2026112120;
const SALE_B: u32 = 2026112121;

/// The exporter's settings for tests: small batches, short pauses.
fn config(db: &TestDatabase) -> ExportConfig {
    ExportConfig {
        batch_records_max: 500,
        items_per_sale: ITEMS_PER_SALE,
        interval: Duration::from_millis(50),
        retry_backoff_initial: Duration::from_millis(10),
        retry_backoff_max: Duration::from_millis(200),
        postgres_timeout: Duration::from_secs(30),
        ..ExportConfig::new(db.url.clone())
    }
}

// ---------------------------------------------------------------------------
// Records of every variant, deterministic.

struct Generator {
    state: u64,
    seq: u64,
}

impl Generator {
    fn new(seed: u64) -> Generator {
        Generator {
            state: seed | 1,
            seq: 0,
        }
    }

    fn next_u64(&mut self) -> u64 {
        // xorshift64: deterministic and good enough to mix variants.
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    fn record(&mut self) -> Record {
        let draw = self.draw();
        match draw.r % 12 {
            0..=7 => draw.checkout(),
            _ => draw.purchase(),
        }
    }

    fn draw(&mut self) -> Draw {
        self.seq += 1;
        let r = self.next_u64();
        let sale = if self.seq % 1000 < 700 {
            SALE_A
        } else {
            SALE_B
        };
        let sale_start_ms = SaleId::from_number(sale)
            .unwrap()
            .starts_at()
            .timestamp_millis();
        Draw {
            r,
            at_unix_ms: sale_start_ms + (self.seq % 3_000_000) as i64,
            sale,
            user: format!("user-{}", r % 40),
            index: (r >> 8) as u32 % ITEMS_PER_SALE,
            code: u128::from(r) << 64 | u128::from(self.seq),
        }
    }

    fn records(&mut self, count: usize) -> Vec<Record> {
        (0..count).map(|_| self.record()).collect()
    }
}

/// What one record draws from the generator, whatever its variant; `r % 12`
/// picks the variant.
struct Draw {
    r: u64,
    at_unix_ms: i64,
    sale: u32,
    user: String,
    index: u32,
    code: u128,
}

impl Draw {
    /// Variants 0 to 7: checkouts of every outcome.
    fn checkout(self) -> Record {
        let Draw {
            r,
            at_unix_ms,
            sale,
            user,
            index,
            code,
        } = self;
        match r % 12 {
            0..=3 => checkout(at_unix_ms, sale, user, index, Some(code), {
                CheckoutOutcome::Added {
                    opened_cart: r.is_multiple_of(2),
                }
            }),
            4 => checkout(at_unix_ms, sale, user, index, Some(code), {
                CheckoutOutcome::AlreadyInCart
            }),
            5 => {
                let mut record = checkout(at_unix_ms, sale, user, 0, None, {
                    CheckoutOutcome::Rejected(Rejection::ItemNotFound)
                });
                if let Record::Checkout(c) = &mut record {
                    // Raw client text, once in a while with a NUL byte.
                    c.item_id = if r.is_multiple_of(7) {
                        "bad\0id".into()
                    } else {
                        "nope".into()
                    };
                }
                record
            }
            6 => checkout(at_unix_ms, 1999010100, user, 5, None, {
                CheckoutOutcome::Rejected(Rejection::SaleNotActive)
            }),
            _ => {
                let rejection = [
                    Rejection::ItemSoldOut,
                    Rejection::SaleSoldOut,
                    Rejection::UserLimitReached,
                ][(r >> 20) as usize % 3];
                checkout(at_unix_ms, sale, user, index, Some(code), {
                    CheckoutOutcome::Rejected(rejection)
                })
            }
        }
    }

    /// Variants 8 to 11: purchases of every outcome, one of an unknown code.
    fn purchase(self) -> Record {
        let outcome = match self.r % 12 {
            8 | 9 => PurchaseOutcome::Completed,
            10 => PurchaseOutcome::Replayed,
            _ if self.r.is_multiple_of(2) => PurchaseOutcome::Rejected(Rejection::SaleNotActive),
            _ => {
                return Record::Purchase(PurchaseRecord {
                    at_unix_ms: self.at_unix_ms,
                    sale_id: None,
                    user_id: None,
                    code: self.code,
                    outcome: PurchaseOutcome::Rejected(Rejection::CheckoutNotFound),
                    items: vec![],
                })
            }
        };
        purchase(
            self.at_unix_ms,
            Some(self.sale),
            self.user,
            self.code,
            outcome,
            self.r,
        )
    }
}

fn checkout(
    at_unix_ms: i64,
    sale: u32,
    user_id: String,
    index: u32,
    code: Option<u128>,
    outcome: CheckoutOutcome,
) -> Record {
    Record::Checkout(CheckoutRecord {
        at_unix_ms,
        sale_id: sale,
        user_id,
        item_id: format!("{sale:010}-{index}"),
        code,
        outcome,
    })
}

fn purchase(
    at_unix_ms: i64,
    sale: Option<u32>,
    user: String,
    code: u128,
    outcome: PurchaseOutcome,
    r: u64,
) -> Record {
    let items = match outcome {
        PurchaseOutcome::Rejected(_) => vec![],
        _ => (0..1 + r % 4)
            .map(|k| PurchaseItem {
                item_index: ((r >> 12) as u32 + k as u32 * 7) % ITEMS_PER_SALE,
                outcome: [
                    ItemOutcome::Bought,
                    ItemOutcome::SoldOut,
                    ItemOutcome::UserLimit,
                ][((r >> (30 + k)) % 3) as usize],
            })
            .collect(),
    };
    Record::Purchase(PurchaseRecord {
        at_unix_ms,
        sale_id: sale,
        user_id: Some(user),
        code,
        outcome,
        items,
    })
}

// ---------------------------------------------------------------------------
// Expected rows, computed from the records independently of `rows.rs`.

type CheckoutTuple = (i64, i64, String, String, String, Option<String>, String);
type PurchaseTuple = (
    i64,
    i64,
    Option<String>,
    Option<String>,
    String,
    String,
    i32,
    i32,
);

/// The contract's error codes, spelled out here rather than taken from
/// `Rejection::code`, so a change there shows up as a failing test.
fn rejection_code(rejection: Rejection) -> String {
    match rejection {
        Rejection::ItemNotFound => "item_not_found",
        Rejection::SaleNotActive => "sale_not_active",
        Rejection::ItemSoldOut => "item_sold_out",
        Rejection::SaleSoldOut => "sale_sold_out",
        Rejection::UserLimitReached => "user_limit_reached",
        Rejection::CheckoutNotFound => "checkout_not_found",
        Rejection::SaleFull => "sale_full",
    }
    .to_string()
}

fn expected_checkouts(records: &[Record]) -> Vec<CheckoutTuple> {
    let mut rows = Vec::new();
    for (index, record) in records.iter().enumerate() {
        if let Record::Checkout(c) = record {
            let outcome = match c.outcome {
                CheckoutOutcome::Added { .. } | CheckoutOutcome::AlreadyInCart => "ok".into(),
                CheckoutOutcome::Rejected(rejection) => rejection_code(rejection),
            };
            rows.push((
                index as i64 + 1,
                c.at_unix_ms,
                format!("{:010}", c.sale_id),
                c.user_id.clone(),
                c.item_id.replace('\0', "\u{FFFD}"),
                c.code.map(|code| format!("{code:032x}")),
                outcome,
            ));
        }
    }
    rows
}

fn expected_purchases(records: &[Record]) -> (Vec<PurchaseTuple>, Vec<(i64, String, String)>) {
    let (mut purchases, mut items) = (Vec::new(), Vec::new());
    for (index, record) in records.iter().enumerate() {
        let Record::Purchase(p) = record else {
            continue;
        };
        let seq = index as i64 + 1;
        let outcome = match p.outcome {
            PurchaseOutcome::Completed => "ok".into(),
            PurchaseOutcome::Replayed => "replayed".into(),
            PurchaseOutcome::Rejected(rejection) => rejection_code(rejection),
        };
        // A replayed purchase acted on nothing: no counts, no items.
        let acted_on: &[PurchaseItem] = match p.outcome {
            PurchaseOutcome::Replayed => &[],
            _ => &p.items,
        };
        let mut seen = BTreeSet::new();
        let distinct: Vec<&PurchaseItem> = acted_on
            .iter()
            .filter(|i| seen.insert(i.item_index))
            .collect();
        let bought = acted_on
            .iter()
            .filter(|i| i.outcome == ItemOutcome::Bought)
            .count();
        purchases.push((
            seq,
            p.at_unix_ms,
            p.sale_id.map(|s| format!("{s:010}")),
            p.user_id.clone(),
            CheckoutCode::from_u128(p.code).to_string(),
            outcome,
            bought as i32,
            (acted_on.len() - bought) as i32,
        ));
        for item in distinct {
            let sale = p.sale_id.unwrap();
            items.push((
                seq,
                format!("{sale:010}-{}", item.item_index),
                item.outcome.as_str().into(),
            ));
        }
    }
    items.sort();
    (purchases, items)
}

async fn checkout_rows(client: &Client) -> Vec<CheckoutTuple> {
    let sql = "SELECT seq, (extract(epoch FROM at) * 1000)::bigint, sale_id, user_id, item_id,
                      code, outcome
               FROM checkout_attempts ORDER BY seq";
    let rows = client.query(sql, &[]).await.unwrap();
    rows.iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
            )
        })
        .collect()
}

async fn purchase_rows(client: &Client) -> Vec<PurchaseTuple> {
    let sql = "SELECT seq, (extract(epoch FROM at) * 1000)::bigint, sale_id, user_id, code,
                      outcome, total_purchased, failed_count
               FROM purchases ORDER BY seq";
    let rows = client.query(sql, &[]).await.unwrap();
    rows.iter()
        .map(|r| {
            let t = (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
            );
            (t.0, t.1, t.2, t.3, t.4, t.5, t.6, r.get(7))
        })
        .collect()
}

async fn purchase_item_rows(client: &Client) -> Vec<(i64, String, String)> {
    let sql = "SELECT purchase_seq, item_id, outcome FROM purchase_items
               ORDER BY purchase_seq, item_id";
    let rows = client.query(sql, &[]).await.unwrap();
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

async fn cursor(client: &Client) -> i64 {
    client
        .query_one(
            "SELECT last_seq FROM export_cursor WHERE stream = 'log'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

async fn sale_opening_seqs(client: &Client) -> Vec<i64> {
    let rows = client
        .query("SELECT seq FROM sale_openings ORDER BY seq", &[])
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// Every table holds exactly the rows of `records`: no duplicate, no gap,
/// nothing else.
/// Every record the source holds, in log order.
fn all_records(source: &MemorySource) -> Vec<Record> {
    let numbered = source.clone().read_batch(0, usize::MAX).unwrap();
    numbered.into_iter().map(|(_, record)| record).collect()
}

async fn assert_tables_match(client: &Client, records: &[Record]) {
    assert_eq!(cursor(client).await, records.len() as i64);
    let checkouts = checkout_rows(client).await;
    let purchases = purchase_rows(client).await;
    let openings = sale_opening_seqs(client).await;
    assert_eq!(
        checkouts.len() + purchases.len() + openings.len(),
        records.len()
    );
    let mut seqs: Vec<i64> = checkouts.iter().map(|r| r.0).collect();
    seqs.extend(purchases.iter().map(|r| r.0));
    seqs.extend(openings);
    seqs.sort_unstable();
    assert!(
        seqs.iter().enumerate().all(|(i, seq)| *seq == i as i64 + 1),
        "seq must run 1..=n without gap or duplicate"
    );
    assert_eq!(checkouts, expected_checkouts(records));
    let (expected_purchases, expected_items) = expected_purchases(records);
    assert_eq!(purchases, expected_purchases);
    assert_eq!(purchase_item_rows(client).await, expected_items);
    assert_sales_and_items(client, records).await;
}

async fn assert_sales_and_items(client: &Client, records: &[Record]) {
    let mut expected: BTreeSet<String> = BTreeSet::new();
    for record in records {
        match record {
            Record::Checkout(c)
                if c.outcome != CheckoutOutcome::Rejected(Rejection::SaleNotActive) =>
            {
                expected.insert(format!("{:010}", c.sale_id));
            }
            Record::Purchase(PurchaseRecord {
                sale_id: Some(s), ..
            }) => {
                expected.insert(format!("{s:010}"));
            }
            _ => {}
        }
    }
    let rows = client
        .query(
            "SELECT sale_id, starts_at, ends_at, total_items FROM sales ORDER BY sale_id",
            &[],
        )
        .await
        .unwrap();
    let found: BTreeSet<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(found, expected);
    for row in &rows {
        let sale = SaleId::parse(row.get(0)).unwrap();
        let starts_at: chrono::DateTime<chrono::Utc> = row.get(1);
        assert_eq!(starts_at, sale.starts_at());
        assert_eq!(row.get::<_, i32>(3), ITEMS_PER_SALE as i32);
    }
    let items: i64 = client
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(items, expected.len() as i64 * i64::from(ITEMS_PER_SALE));
    let item = ItemId {
        sale: SaleId::from_number(SALE_A).unwrap(),
        index: 7,
    };
    let row = client
        .query_one(
            "SELECT name, image_url, item_index FROM items WHERE item_id = $1",
            &[&item.to_string()],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), item.name());
    assert_eq!(row.get::<_, String>(1), item.image_url());
    assert_eq!(row.get::<_, i32>(2), 7);
}

/// An exporter on its own task, with the `Shutdown` that stops it.
struct Spawned {
    handle: JoinHandle<Result<(), ExportError>>,
    status: ExportStatus,
    shutdown: Shutdown,
}

impl Spawned {
    fn start(config: ExportConfig, source: &MemorySource, registry: &prometheus::Registry) -> Self {
        let shutdown = Shutdown::new();
        let source = Box::new(source.clone());
        let (handle, status) = spawn_exporter(config, source, registry, shutdown.clone()).unwrap();
        Spawned {
            handle,
            status,
            shutdown,
        }
    }

    /// Begins the shutdown and waits until the exporter has stopped.
    async fn stop(self) {
        self.shutdown.begin();
        self.handle.await.unwrap().unwrap();
    }

    /// Kills the task wherever it is (as kill -9 would); returns the cursor
    /// it had reached.
    async fn abort(self) -> u64 {
        self.handle.abort();
        let _ = self.handle.await;
        self.status.last_exported_seq()
    }
}

async fn wait_until_exported(status: &ExportStatus, seq: u64, limit: Duration) {
    let started = Instant::now();
    while status.last_exported_seq() < seq {
        assert!(
            started.elapsed() < limit,
            "export stalled at {} of {seq}: {:?}",
            status.last_exported_seq(),
            status.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_equal_records_after_a_load() {
    let db = TestDatabase::create().await;
    let records = Generator::new(1).records(3_000);
    let report = export_once(config(&db), Box::new(MemorySource::new(records.clone())))
        .await
        .unwrap();
    assert_eq!(report.cursor_before, 0);
    assert_eq!(report.last_exported_seq, 3_000);
    assert_eq!(report.records, 3_000);
    assert_eq!(report.batches, 6);
    let client = db.client().await;
    assert_tables_match(&client, &records).await;
    // A second run finds nothing to do.
    let again = export_once(config(&db), Box::new(MemorySource::new(records.clone())))
        .await
        .unwrap();
    assert_eq!((again.records, again.batches), (0, 0));
    assert_tables_match(&client, &records).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_twice_are_harmless() {
    let db = TestDatabase::create().await;
    let (mut first, mut second) = (db.client().await, db.client().await);
    let (a, b) = tokio::join!(migrate(&mut first), migrate(&mut second));
    let mut applied = a.unwrap();
    applied.extend(b.unwrap());
    applied.sort_unstable();
    assert_eq!(
        applied,
        [1, 2, 3, 4, 5, 6],
        "each migration applied exactly once"
    );
    let records = Generator::new(2).records(700);
    export_once(config(&db), Box::new(MemorySource::new(records.clone())))
        .await
        .unwrap();
    assert!(migrate(&mut first).await.unwrap().is_empty());
    let versions: i64 = first
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions, 6);
    assert_tables_match(&first, &records).await;
    // A schema from the future is refused, not written to.
    first
        .batch_execute("INSERT INTO schema_migrations VALUES (99, now())")
        .await
        .unwrap();
    let error = export_once(config(&db), Box::new(MemorySource::new(records)))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("newer"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_when_connections_are_terminated_mid_export() {
    let db = TestDatabase::create().await;
    let config = ExportConfig {
        batch_records_max: 300,
        ..config(&db)
    };
    let mut generator = Generator::new(3);
    let source = MemorySource::new(generator.records(10_000));
    let registry = prometheus::Registry::new();
    let exporter = Spawned::start(config, &source, &registry);

    // Records keep arriving while connections are killed.
    let killer = db.client().await;
    let terminated = Arc::new(AtomicU64::new(0));
    for round in 0..60 {
        if round % 3 == 0 {
            for record in generator.records(200) {
                source.push(record);
            }
        }
        let killed = killer
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = $1 AND application_name = 'flashsale-export'",
                &[&db.name],
            )
            .await
            .unwrap()
            .len();
        terminated.fetch_add(killed as u64, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(25 + (round % 4) * 10)).await;
    }
    let total = source.durable_seq();
    wait_until_exported(&exporter.status, total, Duration::from_secs(120)).await;
    exporter.stop().await;

    assert!(
        terminated.load(Ordering::Relaxed) >= 10,
        "connections were terminated"
    );
    let records = all_records(&source);
    assert_tables_match(&db.client().await, &records).await;
    let families = registry.gather();
    let rows_total: f64 = families
        .iter()
        .filter(|f| f.name() == "flashsale_export_rows_total")
        .flat_map(|f| f.get_metric())
        .map(|m| m.get_counter().get_value())
        .sum();
    assert!(rows_total >= records.len() as f64);
}

/// Failpoints inside PostgreSQL: a trigger fails the cursor update (after
/// the COPYs, before COMMIT), then a deferred trigger fails the COMMIT
/// itself. Either way nothing of the batch remains, and once the fault is
/// gone the export resumes with no gap and no duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_when_a_batch_fails_after_copy_or_at_commit() {
    let db = TestDatabase::create().await;
    let client = db.client().await;
    let records = Generator::new(4).records(3_000);
    let source = MemorySource::new(records[..1_000].to_vec());
    export_once(config(&db), Box::new(source.clone()))
        .await
        .unwrap();
    client
        .batch_execute(
            "CREATE FUNCTION fail_export() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'failpoint %', TG_NAME; END $$;
             CREATE TRIGGER before_cursor_update BEFORE UPDATE ON export_cursor
             FOR EACH ROW EXECUTE FUNCTION fail_export();",
        )
        .await
        .unwrap();
    for record in &records[1_000..2_000] {
        source.push(record.clone());
    }
    let exporter = Spawned::start(config(&db), &source, &prometheus::Registry::new());
    let status = exporter.status.clone();
    wait_for_state(&status, "failpoint before_cursor_update").await;
    assert_eq!(status.last_exported_seq(), 1_000);
    assert_eq!(status.lag_records(), 1_000);
    assert_tables_match(&client, &records[..1_000]).await;

    client
        .batch_execute(
            "DROP TRIGGER before_cursor_update ON export_cursor;
             CREATE CONSTRAINT TRIGGER at_commit AFTER UPDATE ON export_cursor
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_export();",
        )
        .await
        .unwrap();
    wait_for_state(&status, "failpoint at_commit").await;
    assert_tables_match(&client, &records[..1_000]).await;

    client
        .batch_execute("DROP TRIGGER at_commit ON export_cursor")
        .await
        .unwrap();
    for record in &records[2_000..] {
        source.push(record.clone());
    }
    wait_until_exported(&status, 3_000, Duration::from_secs(60)).await;
    exporter.stop().await;
    assert_tables_match(&client, &records).await;
    assert_eq!(status.snapshot().state, "running");
}

async fn wait_for_state(status: &ExportStatus, error_part: &str) {
    let started = Instant::now();
    loop {
        let snapshot = status.snapshot();
        if snapshot
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains(error_part))
        {
            assert_eq!(snapshot.state, "retrying");
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{snapshot:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Aborting the exporter's task at random points (the in-process analogue
/// of kill -9: the connection drops mid-transaction) and starting a new one
/// resumes from the committed cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_exporter_resumes_from_the_cursor() {
    let db = TestDatabase::create().await;
    let records = Generator::new(5).records(12_000);
    let source = MemorySource::new(records[..1_500].to_vec());
    let first = export_once(config(&db), Box::new(source.clone()))
        .await
        .unwrap();
    assert_eq!(first.last_exported_seq, 1_500);
    for record in &records[1_500..] {
        source.push(record.clone());
    }
    let config = ExportConfig {
        batch_records_max: 400,
        ..config(&db)
    };
    let mut cursors = Vec::new();
    for attempt in 0..8u64 {
        let exporter = Spawned::start(config.clone(), &source, &prometheus::Registry::new());
        tokio::time::sleep(Duration::from_millis(40 + attempt * 17)).await;
        cursors.push(exporter.abort().await);
    }
    // An exporter aborted before it read the cursor (a slow connect on a
    // busy machine) reports 0: it knows nothing. Every one that read it
    // must have started at or after the previous one's progress.
    let known: Vec<u64> = cursors.iter().copied().filter(|&seq| seq > 0).collect();
    assert!(known.iter().all(|&seq| seq >= 1_500), "{cursors:?}");
    assert!(known.windows(2).all(|w| w[0] <= w[1]), "{cursors:?}");
    let last = export_once(config, Box::new(source)).await.unwrap();
    assert_eq!(last.cursor_before + last.records, 12_000);
    assert_eq!(last.last_exported_seq, 12_000);
    assert_tables_match(&db.client().await, &records).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_export_gives_the_same_tables_as_the_running_exporter() {
    let (live_db, offline_db) = (TestDatabase::create().await, TestDatabase::create().await);
    let mut generator = Generator::new(6);
    let source = MemorySource::default();
    let exporter = Spawned::start(config(&live_db), &source, &prometheus::Registry::new());
    for _ in 0..20 {
        for record in generator.records(250) {
            source.push(record);
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    wait_until_exported(&exporter.status, 5_000, Duration::from_secs(60)).await;
    exporter.stop().await;
    let offline_config = ExportConfig {
        batch_records_max: 1_234,
        ..config(&offline_db)
    };
    export_once(offline_config, Box::new(source.clone()))
        .await
        .unwrap();
    let live = dump(&live_db.client().await).await;
    let offline = dump(&offline_db.client().await).await;
    assert!(live.len() > 5_000);
    assert_eq!(live, offline);
}

/// Two exporters on one database: the cursor lock lets only one advance
/// each batch; together they still export every record exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_exporters_never_export_a_record_twice() {
    let db = TestDatabase::create().await;
    let records = Generator::new(7).records(6_000);
    let source = MemorySource::new(records.clone());
    let config = ExportConfig {
        batch_records_max: 200,
        ..config(&db)
    };
    let (a, b) = tokio::join!(
        export_once(config.clone(), Box::new(source.clone())),
        export_once(config.clone(), Box::new(source.clone())),
    );
    // One of them may have lost a race for the cursor; rerun both to finish.
    for result in [a, b] {
        if let Err(error) = result {
            assert!(matches!(error, ExportError::CursorMoved { .. }), "{error}");
        }
    }
    export_once(config, Box::new(source)).await.unwrap();
    assert_tables_match(&db.client().await, &records).await;
}

/// A gap in the log and a log shorter than PostgreSQL's cursor are refused
/// before anything is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gaps_and_a_cursor_ahead_of_the_log_are_refused() {
    struct GappySource(Vec<Record>);
    impl RecordSource for GappySource {
        fn read_batch(
            &mut self,
            after: u64,
            max: usize,
        ) -> Result<Vec<(u64, Record)>, SourceError> {
            // Skips record 101.
            Ok((after + 1..=self.durable_seq())
                .filter(|seq| *seq != 101)
                .take(max)
                .map(|seq| (seq, self.0[seq as usize - 1].clone()))
                .collect())
        }
        fn durable_seq(&self) -> u64 {
            self.0.len() as u64
        }
        fn log_id(&self) -> u128 {
            MemorySource::DEFAULT_LOG_ID
        }
    }
    let db = TestDatabase::create().await;
    let records = Generator::new(8).records(400);
    let config = ExportConfig {
        batch_records_max: 100,
        ..config(&db)
    };
    let error = export_once(config.clone(), Box::new(GappySource(records.clone())))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ExportError::Gap {
                expected: 101,
                found: Some(102)
            }
        ),
        "{error}"
    );
    let client = db.client().await;
    assert_tables_match(&client, &records[..100]).await;
    let error = export_once(config, Box::new(MemorySource::new(records[..50].to_vec())))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ExportError::CursorAhead {
                cursor: 100,
                durable: 50
            }
        ),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_postgres_is_retried_and_the_lag_grows() {
    let config = ExportConfig {
        // Port 1: nothing listens there.
        database_url: "postgres://postgres@127.0.0.1:1/none".into(),
        retry_backoff_initial: Duration::from_millis(5),
        retry_backoff_max: Duration::from_millis(20),
        ..ExportConfig::new("")
    };
    let source = MemorySource::new(Generator::new(9).records(10));
    let registry = prometheus::Registry::new();
    let exporter = Spawned::start(config, &source, &registry);
    let status = exporter.status.clone();
    wait_for_state(&status, "").await;
    for record in Generator::new(10).records(5) {
        source.push(record);
    }
    let started = Instant::now();
    while status.lag_records() < 15 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            status.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status.last_exported_seq(), 0);
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["state"], "retrying");
    assert!(counter_total(&registry, "flashsale_export_errors_total") >= 1.0);
    exporter.stop().await;
}

/// The real log as the source: what the server appends is what analysts get.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_from_a_real_log_directory_are_exported() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let records = Generator::new(11).records(2_000);
    let wal =
        Arc::new(flashsale_wal::Wal::open(flashsale_wal::WalConfig::new(dir.path())).unwrap());
    for record in &records {
        wal.append(&journal::encode(record).unwrap()).unwrap();
    }
    wal.wait_durable(records.len() as u64).unwrap();
    let report = export_once(config(&db), Box::new(WalSource::new(Arc::clone(&wal))))
        .await
        .unwrap();
    assert_eq!(report.last_exported_seq, 2_000);
    assert_tables_match(&db.client().await, &records).await;
    wal.close();
}

/// The example queries of docs/analytics.md run on exported data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_queries_run() {
    let db = TestDatabase::create().await;
    let records = Generator::new(12).records(2_000);
    export_once(config(&db), Box::new(MemorySource::new(records)))
        .await
        .unwrap();
    let client = db.client().await;
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/analytics.md"))
        .expect("docs/analytics.md");
    let queries: Vec<&str> = docs
        .split("```sql")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .collect();
    assert!(
        queries.len() >= 5,
        "docs/analytics.md has its example queries"
    );
    for query in queries {
        let rows = client
            .simple_query(query)
            .await
            .unwrap_or_else(|e| panic!("documented query fails: {e}\n{query}"));
        assert!(!rows.is_empty(), "{query}");
    }
    let summary = client
        .query_one(
            "SELECT items_sold, purchases FROM sale_summary WHERE sale_id = '2026112120'",
            &[],
        )
        .await
        .unwrap();
    let sold: i64 = summary.get(0);
    assert!(sold > 0);
}

// ---------------------------------------------------------------------------
// One database, one log.

const LOG_A: u128 = 0xaaaa_0000_0000_0000_0000_0000_0000_0001;
const LOG_B: u128 = 0xbbbb_0000_0000_0000_0000_0000_0000_0002;

async fn cursor_log_id(client: &Client) -> Option<String> {
    client
        .query_one("SELECT log_id FROM export_cursor", &[])
        .await
        .unwrap()
        .get(0)
}

fn refusals_total(registry: &prometheus::Registry) -> f64 {
    counter_total(registry, "flashsale_export_refusals_total")
}

/// The sum of the counter `name` over its labels.
fn counter_total(registry: &prometheus::Registry, name: &str) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric())
        .map(|m| m.get_counter().get_value())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_logs_records_never_mix_into_the_export() {
    let db = TestDatabase::create().await;
    let client = db.client().await;
    let records = Generator::new(20).records(600);
    let log_a = MemorySource::new(records[..300].to_vec()).with_log_id(LOG_A);
    export_once(config(&db), Box::new(log_a)).await.unwrap();
    assert_eq!(cursor_log_id(&client).await, Some(format!("{LOG_A:032x}")));

    // Log B is longer, so without the identity it would be appended.
    let log_b = MemorySource::new(records.clone()).with_log_id(LOG_B);
    let error = export_once(config(&db), Box::new(log_b.clone()))
        .await
        .unwrap_err();
    let ExportError::OtherLog {
        database_log_id,
        log_id,
    } = &error
    else {
        panic!("{error}");
    };
    assert_eq!(
        (database_log_id.as_str(), log_id.as_str()),
        (
            "aaaa0000000000000000000000000001",
            "bbbb0000000000000000000000000002"
        )
    );
    assert!(error.to_string().contains("aaaa0000"), "{error}");
    assert!(error.to_string().contains("bbbb0000"), "{error}");
    assert_tables_match(&client, &records[..300]).await;

    // The running exporter stops instead of retrying, and says why.
    let registry = prometheus::Registry::new();
    let exporter = Spawned::start(config(&db), &log_b, &registry);
    let ended = tokio::time::timeout(Duration::from_secs(30), exporter.handle)
        .await
        .expect("a refused exporter stops by itself")
        .unwrap();
    assert!(
        matches!(ended, Err(ExportError::OtherLog { .. })),
        "{ended:?}"
    );
    let snapshot = exporter.status.snapshot();
    assert_eq!(snapshot.state, "refused");
    let reason = snapshot.last_error.unwrap();
    assert!(
        reason.contains("another log") || reason.contains("mix"),
        "{reason}"
    );
    assert_eq!(refusals_total(&registry), 1.0);
    assert_eq!(
        counter_total(&registry, "flashsale_export_errors_total"),
        1.0
    );
    assert_tables_match(&client, &records[..300]).await;
}

/// A database exported before log identities existed: its cursor has no
/// identity, its replayed purchases repeat their items. The first export
/// after the upgrade migrates it, adopts the log it reads, and refuses any
/// other log afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_before_log_identities_adopts_the_first_log() {
    let db = TestDatabase::create().await;
    let client = db.client().await;
    for migration in &MIGRATIONS[..3] {
        client.batch_execute(migration.sql).await.unwrap();
    }
    client
        .batch_execute(
            "CREATE TABLE schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL);
             INSERT INTO schema_migrations VALUES (1, now()), (2, now()), (3, now());",
        )
        .await
        .unwrap();
    let records = cart_bought_twice(0xc0de);
    // What the exporter of version 3 wrote for the first three records.
    client
        .batch_execute(
            "INSERT INTO sales VALUES ('2026112120', '2026-11-21 20:00+00', '2026-11-21 21:00+00', 50, 10);
             INSERT INTO checkout_attempts VALUES
               (1, '2026-11-21 20:00:01+00', '2026112120', 'alice', '2026112120-1',
                '0000000000000000000000000000c0de', 'ok');
             INSERT INTO purchases VALUES
               (2, '2026-11-21 20:00:02+00', '2026112120', 'alice',
                '0000000000000000000000000000c0de', 'ok', 2, 1),
               (3, '2026-11-21 20:00:03+00', '2026112120', 'alice',
                '0000000000000000000000000000c0de', 'replayed', 2, 1);
             INSERT INTO purchase_items VALUES
               (2, '2026112120-1', 'bought'), (2, '2026112120-2', 'bought'),
               (2, '2026112120-3', 'sold_out'),
               (3, '2026112120-1', 'bought'), (3, '2026112120-2', 'bought'),
               (3, '2026112120-3', 'sold_out');
             UPDATE export_cursor SET last_seq = 3;",
        )
        .await
        .unwrap();
    let log = MemorySource::new(records.clone()).with_log_id(LOG_A);
    let report = export_once(config(&db), Box::new(log)).await.unwrap();
    assert_eq!((report.cursor_before, report.last_exported_seq), (3, 4));
    assert_eq!(cursor_log_id(&client).await, Some(format!("{LOG_A:032x}")));
    assert_eq!(bought_items(&client).await, 2);
    assert_eq!(replays_of(&client).await, [(3, Some(2)), (4, Some(2))]);

    let other = MemorySource::new(records).with_log_id(LOG_B);
    let error = export_once(config(&db), Box::new(other)).await.unwrap_err();
    assert!(matches!(error, ExportError::OtherLog { .. }), "{error}");
}

// ---------------------------------------------------------------------------
// Replayed purchases.

/// A checkout, its purchase (2 items bought, 1 sold out) and two repeats of
/// that purchase.
fn cart_bought_twice(code: u128) -> Vec<Record> {
    let at = SaleId::from_number(SALE_A)
        .unwrap()
        .starts_at()
        .timestamp_millis();
    let items = vec![
        PurchaseItem {
            item_index: 1,
            outcome: ItemOutcome::Bought,
        },
        PurchaseItem {
            item_index: 2,
            outcome: ItemOutcome::Bought,
        },
        PurchaseItem {
            item_index: 3,
            outcome: ItemOutcome::SoldOut,
        },
    ];
    let purchase = |at_unix_ms, outcome| {
        Record::Purchase(PurchaseRecord {
            at_unix_ms,
            sale_id: Some(SALE_A),
            user_id: Some("alice".into()),
            code,
            outcome,
            items: items.clone(),
        })
    };
    vec![
        checkout(at + 1_000, SALE_A, "alice".into(), 1, Some(code), {
            CheckoutOutcome::Added { opened_cart: true }
        }),
        purchase(at + 2_000, PurchaseOutcome::Completed),
        purchase(at + 3_000, PurchaseOutcome::Replayed),
        purchase(at + 4_000, PurchaseOutcome::Replayed),
    ]
}

async fn bought_items(client: &Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM purchase_items WHERE outcome = 'bought'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

async fn replays_of(client: &Client) -> Vec<(i64, Option<i64>)> {
    client
        .query(
            "SELECT seq, replay_of FROM purchases WHERE outcome = 'replayed' ORDER BY seq",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// One record per batch, so the repeat and its original never share one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_made_twice_counts_its_bought_items_once() {
    let db = TestDatabase::create().await;
    let records = cart_bought_twice(0xc0de);
    let config = ExportConfig {
        batch_records_max: 1,
        ..config(&db)
    };
    export_once(config, Box::new(MemorySource::new(records.clone())))
        .await
        .unwrap();
    let client = db.client().await;
    assert_eq!(bought_items(&client).await, 2);
    assert_eq!(replays_of(&client).await, [(3, Some(2)), (4, Some(2))]);
    let summary = client
        .query_one(
            "SELECT items_sold, purchases FROM sale_summary WHERE sale_id = '2026112120'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((summary.get::<_, i64>(0), summary.get::<_, i64>(1)), (2, 1));
    let sold: i64 = client
        .query_one("SELECT sum(total_purchased) FROM purchases", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sold, 2);
    assert_tables_match(&client, &records).await;
}

// ---------------------------------------------------------------------------
// Sale settings.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_takes_its_settings_from_its_log_and_not_from_the_flags() {
    let db = TestDatabase::create().await;
    let at = SaleId::from_number(SALE_A)
        .unwrap()
        .starts_at()
        .timestamp_millis();
    let records = vec![
        Record::SaleOpened(SaleOpenedRecord {
            at_unix_ms: at,
            sale_id: SALE_A,
            items_per_sale: 5,
            user_limit: 2,
        }),
        checkout(at + 1, SALE_A, "alice".into(), 4, Some(9), {
            CheckoutOutcome::Added { opened_cart: true }
        }),
        // Sale B comes from a log written before sales were opened.
        checkout(at + 2, SALE_B, "bob".into(), 7, Some(10), {
            CheckoutOutcome::Added { opened_cart: true }
        }),
    ];
    let config = ExportConfig {
        batch_records_max: 1,
        user_limit: 10,
        ..config(&db)
    };
    export_once(config, Box::new(MemorySource::new(records.clone())))
        .await
        .unwrap();
    let client = db.client().await;
    let sales: Vec<(String, i32, i32, Option<i64>)> = client
        .query(
            "SELECT sale_id, total_items, user_limit, opened_seq FROM sales ORDER BY sale_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        sales,
        [
            ("2026112120".to_string(), 5, 2, Some(1)),
            ("2026112121".to_string(), ITEMS_PER_SALE as i32, 10, None),
        ]
    );
    let items: Vec<(String, i64)> = client
        .query(
            "SELECT sale_id, count(*) FROM items GROUP BY sale_id ORDER BY sale_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        items,
        [
            ("2026112120".to_string(), 5),
            ("2026112121".to_string(), i64::from(ITEMS_PER_SALE)),
        ]
    );
    assert_eq!(sale_opening_seqs(&client).await, [1]);
    assert_eq!(cursor(&client).await, 3);
}

// ---------------------------------------------------------------------------
// Shutdown.

/// Records appended while the exporter sleeps between two runs are all in
/// PostgreSQL once `join` returns: nothing durable is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_no_durable_record_unexported() {
    let db = TestDatabase::create().await;
    let mut generator = Generator::new(21);
    let source = MemorySource::new(generator.records(1_000));
    let config = ExportConfig {
        interval: Duration::from_secs(3600),
        ..config(&db)
    };
    let shutdown = Shutdown::new();
    let exporter = RunningExporter::start(
        config,
        Box::new(source.clone()),
        &prometheus::Registry::new(),
        shutdown.clone(),
    )
    .unwrap();
    let status = exporter.status();
    wait_until_exported(&status, 1_000, Duration::from_secs(60)).await;
    for record in generator.records(14_000) {
        source.push(record);
    }
    shutdown.begin();
    exporter.join().await;
    assert_eq!(status.last_exported_seq(), 15_000);
    assert_eq!(status.lag_records(), 0);
    assert_tables_match(&db.client().await, &all_records(&source)).await;
}

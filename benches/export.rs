//! Export throughput: binary COPY (what the exporter uses) against batched
//! multi-row INSERT (the obvious alternative), in the same run, into the
//! real `checkout_attempts` table of a fresh database.
//!
//! Goal: COPY at least 300,000 rows/s and at least 10x batched INSERT.
//! Needs PostgreSQL at `FLASHSALE_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); fails if it is unreachable.
//!
//! Run: `cargo bench --bench export`. Criterion reports `thrpt` in rows/s
//! (elements/s); each measured iteration writes `ROWS` rows in one
//! transaction into an empty table (the truncate is not timed). Also
//! measured: the client's share of COPY (encoding only, no PostgreSQL) and,
//! for scale, one INSERT statement per row on `SINGLE_ROW_INSERT_ROWS` rows.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use flashsale::export::copy::{copy_rows, CopyEncoder, CopyRow};
use flashsale::export::rows::CheckoutAttemptRow;
use flashsale::export::schema::migrate;
use tokio::runtime::Runtime;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Statement};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Rows written per measured iteration.
const ROWS: usize = 200_000;
/// Rows per INSERT statement: 7 parameters each, well below PostgreSQL's
/// 65,535 parameters per statement.
const INSERT_ROWS_PER_STATEMENT: usize = 1_000;
/// Rows per measured iteration of the one-row-per-statement baseline.
const SINGLE_ROW_INSERT_ROWS: usize = 10_000;

fn checkout_rows() -> Vec<CheckoutAttemptRow> {
    let sale_start_ms = 1_795_291_200_000;
    (0..ROWS)
        .map(|i| CheckoutAttemptRow {
            seq: i as i64 + 1,
            at_unix_ms: sale_start_ms + i as i64 / 50,
            sale_id: "2026112120".into(),
            user_id: format!("user-{}", i % 50_000),
            item_id: format!("2026112120-{}", i % 10_000),
            code: (i % 5 != 0).then(|| format!("{:032x}", i as u128 * 0x9e37_79b9_7f4a_7c15)),
            outcome: if i % 5 == 0 { "item_sold_out" } else { "ok" },
        })
        .collect()
}

struct BenchDatabase {
    admin: Client,
    name: String,
    client: Client,
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|error| panic!("the export bench needs PostgreSQL at {url}: {error}"));
    tokio::spawn(connection);
    client
}

impl BenchDatabase {
    async fn create() -> BenchDatabase {
        let url =
            std::env::var("FLASHSALE_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.into());
        let admin = connect(&url).await;
        let name = format!("flashsale_bench_{}", std::process::id());
        // Two statements: DROP/CREATE DATABASE refuse to share a transaction.
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            admin
                .batch_execute(&sql)
                .await
                .expect("create the bench database");
        }
        let (base, _) = url.rsplit_once('/').expect("URL with a database name");
        let mut client = connect(&format!("{base}/{name}")).await;
        migrate(&mut client).await.expect("migrate");
        BenchDatabase {
            admin,
            name,
            client,
        }
    }

    async fn drop_database(self) {
        drop(self.client);
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        self.admin.batch_execute(&sql).await.expect("drop");
    }
}

async fn truncate(client: &Client) {
    client
        .batch_execute("TRUNCATE checkout_attempts")
        .await
        .expect("truncate");
}

async fn write_with_copy(client: &mut Client, rows: &[CheckoutAttemptRow]) {
    let transaction = client.transaction().await.expect("begin");
    let written = copy_rows(&transaction, rows).await.expect("copy");
    assert_eq!(written, rows.len() as u64);
    transaction.commit().await.expect("commit");
}

fn insert_statement_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|row| {
            let p = row * 7;
            format!(
                "(${},${},${},${},${},${},${})",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                p + 6,
                p + 7
            )
        })
        .collect();
    format!(
        "INSERT INTO checkout_attempts (seq, at, sale_id, user_id, item_id, code, outcome) VALUES {}",
        values.join(",")
    )
}

async fn write_with_insert_statement(
    client: &mut Client,
    statement: &Statement,
    rows_per_statement: usize,
    rows: &[CheckoutAttemptRow],
    ats: &[DateTime<Utc>],
) {
    let transaction = client.transaction().await.expect("begin");
    for (chunk, chunk_ats) in rows
        .chunks(rows_per_statement)
        .zip(ats.chunks(rows_per_statement))
    {
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(chunk.len() * 7);
        for (row, at) in chunk.iter().zip(chunk_ats) {
            params.extend_from_slice(&[
                &row.seq,
                at,
                &row.sale_id,
                &row.user_id,
                &row.item_id,
                &row.code,
                &row.outcome,
            ]);
        }
        transaction
            .execute(statement, &params)
            .await
            .expect("insert");
    }
    transaction.commit().await.expect("commit");
}

/// How one measured iteration writes its rows.
#[derive(Clone, Copy)]
enum Method<'a> {
    Copy,
    Insert {
        statement: &'a Statement,
        rows_per_statement: usize,
    },
}

/// Time spent writing `rows` `iterations` times into an emptied table (the
/// TRUNCATE before each write is not measured).
fn time_writes(
    runtime: &Runtime,
    client: &mut Client,
    method: Method<'_>,
    rows: &[CheckoutAttemptRow],
    ats: &[DateTime<Utc>],
    iterations: u64,
) -> Duration {
    runtime.block_on(async {
        let mut measured = Duration::ZERO;
        for _ in 0..iterations {
            truncate(client).await;
            let started = Instant::now();
            match method {
                Method::Copy => write_with_copy(client, rows).await,
                Method::Insert {
                    statement,
                    rows_per_statement,
                } => {
                    write_with_insert_statement(client, statement, rows_per_statement, rows, ats)
                        .await
                }
            }
            measured += started.elapsed();
        }
        measured
    })
}

/// Short, flat sampling: each iteration writes many rows already.
fn configure(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rows: usize,
) {
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(rows as u64));
}

fn export_throughput(c: &mut Criterion) {
    assert_eq!(ROWS % INSERT_ROWS_PER_STATEMENT, 0);
    let runtime = Runtime::new().expect("runtime");
    let mut db = runtime.block_on(BenchDatabase::create());
    let rows = checkout_rows();
    let ats: Vec<DateTime<Utc>> = rows
        .iter()
        .map(|row| DateTime::from_timestamp_millis(row.at_unix_ms).expect("valid time"))
        .collect();
    let insert = runtime
        .block_on(
            db.client
                .prepare(&insert_statement_sql(INSERT_ROWS_PER_STATEMENT)),
        )
        .expect("prepare");

    let mut group = c.benchmark_group("export_checkout_rows");
    configure(&mut group, ROWS);
    group.bench_function("binary_copy", |b| {
        b.iter_custom(|n| time_writes(&runtime, &mut db.client, Method::Copy, &rows, &ats, n))
    });
    // The client's share of the COPY: encoding alone, no PostgreSQL.
    group.bench_function("binary_copy_encode_only", |b| {
        b.iter(|| {
            let mut encoder = CopyEncoder::new(CheckoutAttemptRow::COLUMNS.len());
            let mut bytes = 0;
            for row in &rows {
                encoder.push(row);
                if let Some(chunk) = encoder.take_full_chunk() {
                    bytes += chunk.len();
                }
            }
            bytes + encoder.finish().0.len()
        })
    });
    let batched = Method::Insert {
        statement: &insert,
        rows_per_statement: INSERT_ROWS_PER_STATEMENT,
    };
    group.bench_function("batched_insert_1000_rows", |b| {
        b.iter_custom(|n| time_writes(&runtime, &mut db.client, batched, &rows, &ats, n))
    });
    group.finish();

    // The naive exporter for scale: one INSERT statement per row (prepared,
    // one transaction), on fewer rows so the run stays short.
    let single = runtime
        .block_on(db.client.prepare(&insert_statement_sql(1)))
        .expect("prepare");
    let single_row = Method::Insert {
        statement: &single,
        rows_per_statement: 1,
    };
    let few_rows = &rows[..SINGLE_ROW_INSERT_ROWS];
    let mut group = c.benchmark_group("export_checkout_rows_single");
    configure(&mut group, SINGLE_ROW_INSERT_ROWS);
    group.bench_function("single_row_insert", |b| {
        b.iter_custom(|n| time_writes(&runtime, &mut db.client, single_row, few_rows, &ats, n))
    });
    group.finish();
    runtime.block_on(db.drop_database());
}

criterion_group!(benches, export_throughput);
criterion_main!(benches);

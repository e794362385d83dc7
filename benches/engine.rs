//! Engine benchmarks without HTTP or disk: the claim alone (one `fetch_or`
//! per item, two threads on the same words), then whole checkouts and
//! purchases against a journal that only counts. Before them, resident
//! memory per user at several user counts: the memory budget is a promise
//! about a whole sale, so it must hold at every size, not at one lucky
//! point of the hash tables' growth.
//!
//! Run: `cargo bench --bench engine` (a few minutes);
//! `FLASHSALE_BENCH_MEMORY_ONLY=1 cargo bench --bench engine` for the
//! memory report alone.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use criterion::{Criterion, Throughput};
use flashsale::domain::{Clock, ItemId, SaleId, UserId};
use flashsale::engine::{Engine, EngineConfig, Inventory};
use flashsale::engine::{Journal, JournalError, Record};

/// Items per inventory (and per sale): the largest the config allows.
const ITEMS: u32 = 1_000_000;
/// Distinct users the engine benchmarks cycle through.
const USERS: u32 = 100_000;
/// User counts of the memory report. Each is measured in a fresh process:
/// memory freed by a previous count would otherwise be reused and hide
/// what the next one needs.
const MEMORY_USERS_COUNTS: [u32; 4] = [500_000, 1_000_000, 1_500_000, 2_000_000];
/// Set in a child process: measure this many users, print, exit.
const MEMORY_USERS_ENV: &str = "FLASHSALE_BENCH_MEMORY_USERS";
/// Set (to anything) to skip the timed benchmarks.
const MEMORY_ONLY_ENV: &str = "FLASHSALE_BENCH_MEMORY_ONLY";

/// A journal that numbers records and forgets them.
#[derive(Default)]
struct CountingJournal {
    appended: AtomicU64,
}

impl Journal for CountingJournal {
    fn append(&self, _record: &Record) -> Result<u64, JournalError> {
        Ok(self.appended.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn durable_seq(&self) -> u64 {
        self.appended.load(Ordering::Relaxed)
    }
}

/// A clock stopped in the middle of a sale (no lock, unlike ManualClock).
struct FixedClock(DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

fn engine(users_per_sale_max: u32) -> (Engine, SaleId) {
    let now = Utc.with_ymd_and_hms(2026, 11, 21, 20, 30, 0).unwrap();
    let config = EngineConfig {
        items_per_sale: ITEMS,
        user_limit: 1000,
        users_per_sale_max,
        ..EngineConfig::default()
    };
    let engine = Engine::new(
        config,
        Arc::new(FixedClock(now)),
        Arc::new(CountingJournal::default()),
    )
    .unwrap();
    (engine, SaleId::containing(now))
}

fn users(count: u32) -> Vec<UserId> {
    (0..count)
        .map(|n| UserId::parse(&format!("user-{n:07}")).unwrap())
        .collect()
}

/// Two threads claim every item of fresh inventories, interleaved so that
/// they fight over the same words. One iteration is one claim attempt.
fn claim_two_threads(iterations: u64) -> Duration {
    let mut elapsed = Duration::ZERO;
    let mut remaining = iterations;
    while remaining > 0 {
        let claims = remaining.min(u64::from(ITEMS)) as u32;
        let inventory = Inventory::new(ITEMS);
        let started = Instant::now();
        std::thread::scope(|scope| {
            for thread in 0..2u32 {
                let inventory = &inventory;
                scope.spawn(move || {
                    let mut won = 0u32;
                    for index in (thread..claims).step_by(2) {
                        won += u32::from(inventory.try_claim(index));
                    }
                    black_box(won)
                });
            }
        });
        elapsed += started.elapsed();
        remaining -= u64::from(claims);
    }
    elapsed
}

/// Checkouts of distinct items by `USERS` users (carts grow to at most
/// ten items per million checkouts). One iteration is one checkout.
fn checkouts(iterations: u64, users: &[UserId]) -> Duration {
    let mut elapsed = Duration::ZERO;
    let mut remaining = iterations;
    while remaining > 0 {
        let count = remaining.min(u64::from(ITEMS)) as u32;
        let (engine, sale) = engine(USERS);
        let started = Instant::now();
        for index in 0..count {
            let user = &users[(index % USERS) as usize];
            let decided = engine.checkout(user, ItemId { sale, index }).unwrap();
            debug_assert!(decided.answer.is_ok());
            black_box(decided);
        }
        elapsed += started.elapsed();
        remaining -= u64::from(count);
    }
    elapsed
}

/// Purchases of one-item carts (the checkouts are not timed). One
/// iteration is one purchase that buys one item.
fn purchases(iterations: u64, users: &[UserId]) -> Duration {
    let mut elapsed = Duration::ZERO;
    let mut remaining = iterations;
    let (mut engine, sale) = engine(USERS);
    let mut next_item = 0u32;
    while remaining > 0 {
        let count = remaining.min(u64::from(USERS)) as u32;
        if next_item + count > ITEMS {
            (engine, _) = self::engine(USERS);
            next_item = 0;
        }
        let codes: Vec<_> = users[..count as usize]
            .iter()
            .map(|user| {
                let item = ItemId {
                    sale,
                    index: next_item,
                };
                next_item += 1;
                engine.checkout(user, item).unwrap().answer.unwrap().code
            })
            .collect();
        let started = Instant::now();
        for code in codes {
            let decided = engine.purchase(code).unwrap();
            debug_assert_eq!(decided.answer.as_ref().map(|v| v.total_purchased()), Ok(1));
            black_box(decided);
        }
        elapsed += started.elapsed();
        remaining -= u64::from(count);
    }
    elapsed
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Resident memory added by `users_count` users with a one-item cart each,
/// then by each of them purchasing it (users past `ITEMS` find their item
/// sold, so some purchases buy and some fail: both are stored results).
fn measure_memory(users_count: u32) {
    let user_ids = users(users_count);
    let (engine, sale) = engine(users_count);
    let before = resident_bytes();
    let codes: Vec<_> = user_ids
        .iter()
        .enumerate()
        .map(|(n, user)| {
            let item = ItemId {
                sale,
                index: n as u32 % ITEMS,
            };
            engine.checkout(user, item).unwrap().answer.unwrap().code
        })
        .collect();
    // The codes' own vector is the bench's, not the engine's.
    let codes_bytes = (codes.capacity() * std::mem::size_of_val(&codes[0])) as u64;
    let carts = resident_bytes().saturating_sub(before + codes_bytes);
    for code in codes.iter().copied() {
        engine.purchase(code).unwrap().answer.unwrap();
    }
    let purchased = resident_bytes().saturating_sub(before + codes_bytes);
    let per_user = |bytes: u64| bytes / u64::from(users_count);
    println!(
        "memory: {users_count:>9} users: one-item carts {:>4} MiB = {:>3} bytes/user; \
         after purchasing them {:>4} MiB = {:>3} bytes/user",
        carts >> 20,
        per_user(carts),
        purchased >> 20,
        per_user(purchased),
    );
    drop(engine);
}

/// Runs `measure_memory` for every count, each in a child process.
fn report_memory_per_user() {
    let exe = std::env::current_exe().expect("the bench knows its own path");
    for users_count in MEMORY_USERS_COUNTS {
        let output = std::process::Command::new(&exe)
            .env(MEMORY_USERS_ENV, users_count.to_string())
            .output()
            .expect("the bench can run itself");
        assert!(output.status.success(), "memory child failed: {output:?}");
        print!("{}", String::from_utf8_lossy(&output.stdout));
    }
}

fn main() {
    if let Ok(users_count) = std::env::var(MEMORY_USERS_ENV) {
        measure_memory(users_count.parse().expect("a user count"));
        return;
    }
    report_memory_per_user();
    if std::env::var_os(MEMORY_ONLY_ENV).is_some() {
        return;
    }
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let mut group = criterion.benchmark_group("engine");
    group.throughput(Throughput::Elements(1));
    group.bench_function("claim_fetch_or_2_threads", |b| {
        b.iter_custom(claim_two_threads)
    });
    let user_ids = users(USERS);
    group.bench_function("checkout", |b| b.iter_custom(|n| checkouts(n, &user_ids)));
    group.bench_function("purchase", |b| b.iter_custom(|n| purchases(n, &user_ids)));
    group.finish();
    criterion.final_summary();
}

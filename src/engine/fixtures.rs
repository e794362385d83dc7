//! Test helpers: an engine on a manual clock with a journal that tests can
//! make fail or hold, and replay of what it recorded into a fresh engine.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use parking_lot::Mutex;

use crate::domain::{CheckoutCode, ItemId, ManualClock, SaleId, UserId};
use crate::engine::{Journal, JournalError, PurchaseOutcome, Record};

use super::{CartView, Decided, Engine, EngineConfig, PurchaseView};

/// 2026-11-21T20:00:00Z plus `minutes`.
pub fn at_minutes(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 20, 0, 0).unwrap() + chrono::Duration::minutes(minutes)
}

pub fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

/// Holds the next `Completed` purchase append until released.
struct Gate {
    entered: Sender<()>,
    release: Receiver<bool>,
}

/// A journal in memory (numbered from 1) that can fail or hold appends.
pub struct TestJournal {
    records: Mutex<Vec<Record>>,
    /// Records above this are not durable yet (`u64::MAX`: all are).
    durable_limit: AtomicU64,
    failing: AtomicBool,
    gate: Mutex<Option<Gate>>,
}

impl Default for TestJournal {
    fn default() -> TestJournal {
        TestJournal {
            records: Mutex::default(),
            durable_limit: AtomicU64::new(u64::MAX),
            failing: AtomicBool::default(),
            gate: Mutex::default(),
        }
    }
}

impl TestJournal {
    pub fn records(&self) -> Vec<Record> {
        self.records.lock().clone()
    }

    pub fn last(&self) -> Record {
        self.records.lock().last().cloned().unwrap()
    }

    /// From now on only records up to `seq` count as durable (`None`:
    /// every record, the default).
    pub fn set_durable_limit(&self, seq: Option<u64>) {
        self.durable_limit
            .store(seq.unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// The next completed purchase signals `entered` (returned), then
    /// waits for a message on the returned sender: `true` fails it.
    pub fn hold_next_purchase(&self) -> (Receiver<()>, Sender<bool>) {
        let (entered, entered_rx) = channel();
        let (release_tx, release) = channel();
        *self.gate.lock() = Some(Gate { entered, release });
        (entered_rx, release_tx)
    }

    /// `(seq, record)` pairs, as a log reader yields them.
    pub fn numbered(&self) -> Vec<Result<(u64, Record), String>> {
        self.records()
            .into_iter()
            .enumerate()
            .map(|(i, r)| Ok((i as u64 + 1, r)))
            .collect()
    }
}

impl Journal for TestJournal {
    fn append(&self, record: &Record) -> Result<u64, JournalError> {
        let completed =
            matches!(record, Record::Purchase(p) if p.outcome == PurchaseOutcome::Completed);
        let gate = if completed {
            self.gate.lock().take()
        } else {
            None
        };
        if let Some(gate) = gate {
            gate.entered.send(()).unwrap();
            if gate.release.recv().unwrap_or(false) {
                return Err(JournalError::new("held append failed"));
            }
        }
        if self.failing.load(Ordering::SeqCst) {
            return Err(JournalError::new("test journal is failing"));
        }
        let mut records = self.records.lock();
        records.push(record.clone());
        Ok(records.len() as u64)
    }

    fn durable_seq(&self) -> u64 {
        let appended = self.records.lock().len() as u64;
        appended.min(self.durable_limit.load(Ordering::SeqCst))
    }
}

/// The default config with a sale of `items_per_sale` items and a limit
/// of `user_limit` items per user.
pub fn sale_config(items_per_sale: u32, user_limit: u32) -> EngineConfig {
    EngineConfig {
        items_per_sale,
        user_limit,
        ..EngineConfig::default()
    }
}

/// Runs `work` on a fixture shared with a new thread (concurrency tests).
pub fn in_thread<T: Send + 'static>(
    f: &Arc<Fixture>,
    work: impl FnOnce(&Fixture) -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let f = Arc::clone(f);
    std::thread::spawn(move || work(&f))
}

/// An engine, its clock and its journal.
pub struct Fixture {
    pub engine: Engine,
    pub clock: Arc<ManualClock>,
    pub journal: Arc<TestJournal>,
}

impl Fixture {
    pub fn new(config: EngineConfig) -> Fixture {
        let clock = Arc::new(ManualClock::new(at_minutes(0)));
        let journal = Arc::new(TestJournal::default());
        let engine = Engine::new(config, clock.clone(), journal.clone()).unwrap();
        Fixture {
            engine,
            clock,
            journal,
        }
    }

    /// A small sale: 8 items, limit 3.
    pub fn small() -> Fixture {
        Fixture::new(sale_config(8, 3))
    }

    pub fn sale(&self) -> SaleId {
        self.engine.active_sale().id
    }

    pub fn item(&self, index: u32) -> ItemId {
        ItemId {
            sale: self.sale(),
            index,
        }
    }

    pub fn checkout(&self, name: &str, index: u32) -> Decided<CartView> {
        self.engine.checkout(&user(name), self.item(index)).unwrap()
    }

    pub fn cart(&self, name: &str, index: u32) -> CartView {
        self.checkout(name, index).answer.unwrap()
    }

    pub fn purchase(&self, code: CheckoutCode) -> Decided<PurchaseView> {
        self.engine.purchase(code).unwrap()
    }

    /// A fresh engine on the same clock, rebuilt from the journal.
    pub fn replayed(&self) -> Engine {
        self.replay_into(self.restarted_with(self.engine.config().clone()))
    }

    /// A fresh engine on the same clock with `config` (the flags of a
    /// restart), nothing replayed yet.
    pub fn restarted_with(&self, config: EngineConfig) -> Engine {
        Engine::new(config, self.clock.clone(), Arc::new(TestJournal::default())).unwrap()
    }

    /// `engine` rebuilt from the journal: the engine's own half of
    /// recovery (the log reading is not the engine's), apply every record,
    /// then audit.
    pub fn replay_into(&self, engine: Engine) -> Engine {
        for numbered in self.journal.numbered() {
            let (seq, record) = numbered.unwrap();
            engine.apply(seq, &record).unwrap();
        }
        engine.audit().unwrap();
        engine
    }
}

//! The items of one sale: one sold bit per item, claimed with a single
//! `fetch_or`, and per item the log sequence number of the record that
//! sold it.
//!
//! Why two arrays: the bit decides who wins an item (lock-free, one atomic
//! instruction), the sequence number says which record sold it. A claim is
//! "published" once its record has a sequence number; until then other
//! requests that see the bit must not answer "sold out" (the claim might not
//! survive a crash), so they wait for the number and then wait for it to be
//! durable. Promises:
//! - a bit, once set, is never cleared (also not when the claimer's append
//!   fails: the slot then holds `CLAIM_FAILED` and the log is broken anyway);
//! - `items_sold` counts published claims only, so a reader never counts a
//!   claim that has no record yet;
//! - `claim_seq_max` covers every published claim, which is what a
//!   "sale sold out" answer must wait for;
//! - readers see an item sold only once its record is durable
//!   (`durable_sold`, settled with the log's durable sequence number).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::durable_sold::DurableSold;

/// Slot value of an item that no published claim has sold (yet).
const CLAIM_UNPUBLISHED: u64 = 0;
/// Slot value of an item whose claimer could not append its record.
const CLAIM_FAILED: u64 = u64::MAX;

/// Busy-wait rounds before yielding the thread while a claim is in flight.
const CLAIM_WAIT_SPINS_MAX: u32 = 128;
/// `yield_now` rounds before sleeping while a claim is in flight.
const CLAIM_WAIT_YIELDS_MAX: u32 = 256;
/// Sleep between checks once spinning and yielding did not suffice.
const CLAIM_WAIT_SLEEP: Duration = Duration::from_micros(100);
/// Longest wait for a claimer to publish. A claimer only has to append one
/// record (the log assigns numbers at once and syncs later), so this is only
/// reached when the log is stuck; the waiter then answers 503.
pub const CLAIM_WAIT_MAX: Duration = Duration::from_secs(2);

/// Why a claim's sequence number could not be learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClaimWaitError {
    #[error("the record of the claim on item index {index} could not be appended")]
    ClaimerFailed { index: u32 },
    #[error("the claim on item index {index} was not recorded within {CLAIM_WAIT_MAX:?}")]
    TimedOut { index: u32 },
}

/// The sold bitset and claim sequence numbers of one sale.
#[derive(Debug)]
pub struct Inventory {
    words: Box<[AtomicU64]>,
    claim_seqs: Box<[AtomicU64]>,
    items_total: u32,
    items_sold: AtomicU32,
    claim_seq_max: AtomicU64,
    durable: DurableSold,
}

impl Inventory {
    /// An inventory of `items_total` unsold items (`items_total >= 1`).
    pub fn new(items_total: u32) -> Inventory {
        assert!(items_total >= 1, "a sale has at least one item");
        let words_count = items_total.div_ceil(64) as usize;
        Inventory {
            words: (0..words_count).map(|_| AtomicU64::new(0)).collect(),
            claim_seqs: (0..items_total)
                .map(|_| AtomicU64::new(CLAIM_UNPUBLISHED))
                .collect(),
            items_total,
            items_sold: AtomicU32::new(0),
            claim_seq_max: AtomicU64::new(0),
            durable: DurableSold::new(items_total),
        }
    }

    pub fn items_total(&self) -> u32 {
        self.items_total
    }

    /// Items whose claim is published (has a record).
    pub fn items_sold(&self) -> u32 {
        self.items_sold.load(Ordering::Acquire)
    }

    /// True when every item's claim is published.
    pub fn all_sold(&self) -> bool {
        self.items_sold() == self.items_total
    }

    /// Largest sequence number of a published claim (0 if none).
    pub fn claim_seq_max(&self) -> u64 {
        self.claim_seq_max.load(Ordering::Acquire)
    }

    fn word_and_mask(&self, index: u32) -> (&AtomicU64, u64) {
        // Debug-only: as a release assert this compare took the claim
        // from 4.5 to 7.0 ns (`cargo bench --bench engine`,
        // claim_fetch_or_2_threads, medians of 3 runs; docs/benchmarks.md).
        // Every index is checked against `items_per_sale` where it enters
        // the engine (`checkout::is_known_item`, `replay`), the slice index
        // below still panics past the last word, and the audit counts bits.
        debug_assert!(index < self.items_total);
        (&self.words[(index / 64) as usize], 1u64 << (index % 64))
    }

    /// Tries to claim the item: true if this call set its bit. The winner
    /// must later call `publish` or `fail` for the item.
    #[inline]
    pub fn try_claim(&self, index: u32) -> bool {
        let (word, mask) = self.word_and_mask(index);
        let before = word.fetch_or(mask, Ordering::AcqRel);
        before & mask == 0
    }

    /// Whether the item's bit is set (published or still in flight).
    #[inline]
    pub fn is_claimed(&self, index: u32) -> bool {
        let (word, mask) = self.word_and_mask(index);
        word.load(Ordering::Acquire) & mask != 0
    }

    /// Whether the item is sold by a published claim.
    pub fn is_sold(&self, index: u32) -> bool {
        self.published_seq(index).is_some()
    }

    /// The sequence number of the record that sold the item, if published.
    pub fn published_seq(&self, index: u32) -> Option<u64> {
        match self.claim_seqs[index as usize].load(Ordering::Acquire) {
            CLAIM_UNPUBLISHED | CLAIM_FAILED => None,
            seq => Some(seq),
        }
    }

    /// Records that the claims won by `try_claim` are in the log at `seq`;
    /// readers see them once a settle is told that `seq` is durable
    /// (`durable_seq`, the log's durable end now, settles at once).
    pub fn publish(&self, indices: &[u32], seq: u64, durable_seq: u64) {
        for &index in indices {
            self.record_claim(index, seq);
        }
        self.durable.published(indices, seq, durable_seq);
    }

    /// Readers' view: every published claim whose record is at or below
    /// `durable_seq` now shows as sold.
    pub fn settle(&self, durable_seq: u64) {
        self.durable.settle(durable_seq);
    }

    /// Items sold by a durable record (as of the last `settle`).
    pub fn items_sold_durable(&self) -> u32 {
        self.durable.count()
    }

    /// Whether a durable record sold the item (as of the last `settle`).
    pub fn is_sold_durable(&self, index: u32) -> bool {
        self.durable.is_sold(index)
    }

    /// A page of item indices in the readers' view (see
    /// `DurableSold::page`).
    pub fn page(&self, offset: u32, limit: u32, available_only: bool) -> Vec<u32> {
        self.durable.page(offset, limit, available_only)
    }

    fn record_claim(&self, index: u32, seq: u64) {
        assert!(seq != CLAIM_UNPUBLISHED && seq != CLAIM_FAILED);
        assert!(self.is_claimed(index), "publish without a claim");
        let before = self.claim_seqs[index as usize].swap(seq, Ordering::AcqRel);
        assert_eq!(before, CLAIM_UNPUBLISHED, "item {index} published twice");
        self.claim_seq_max.fetch_max(seq, Ordering::AcqRel);
        let sold_before = self.items_sold.fetch_add(1, Ordering::AcqRel);
        assert!(sold_before < self.items_total);
    }

    /// Records that the claim won by `try_claim` has no record: waiters
    /// give up with an error instead of waiting forever.
    pub fn fail(&self, index: u32) {
        assert!(self.is_claimed(index), "fail without a claim");
        self.claim_seqs[index as usize].store(CLAIM_FAILED, Ordering::Release);
    }

    /// The sequence number of the record that claimed the item, waiting
    /// (bounded) while the claimer is still appending. The item's bit must
    /// be set. Never call this while holding a lock a claimer may need.
    pub fn wait_claim_seq(&self, index: u32) -> Result<u64, ClaimWaitError> {
        assert!(self.is_claimed(index), "waiting for an unclaimed item");
        let slot = &self.claim_seqs[index as usize];
        let started = Instant::now();
        let mut round: u32 = 0;
        loop {
            match slot.load(Ordering::Acquire) {
                CLAIM_FAILED => return Err(ClaimWaitError::ClaimerFailed { index }),
                CLAIM_UNPUBLISHED => {}
                seq => return Ok(seq),
            }
            if round < CLAIM_WAIT_SPINS_MAX {
                std::hint::spin_loop();
            } else if round < CLAIM_WAIT_SPINS_MAX + CLAIM_WAIT_YIELDS_MAX {
                std::thread::yield_now();
            } else if started.elapsed() < CLAIM_WAIT_MAX {
                std::thread::sleep(CLAIM_WAIT_SLEEP);
            } else {
                return Err(ClaimWaitError::TimedOut { index });
            }
            round = round.saturating_add(1);
        }
    }

    /// Replay: marks the item sold by the record `seq`. Returns the seq of
    /// the earlier claim if the item was sold already.
    pub fn claim_for_replay(&self, index: u32, seq: u64) -> Result<(), u64> {
        if !self.try_claim(index) {
            let earlier = self.claim_seqs[index as usize].load(Ordering::Acquire);
            return Err(earlier);
        }
        self.record_claim(index, seq);
        self.durable.durable(index);
        Ok(())
    }

    /// Restore: marks the item sold by record `seq` as `claim_for_replay`
    /// does, but leaves the counts to `count_restored`: the restoring
    /// threads would otherwise contend on them for every item (a profile
    /// of a start of 10^6 users showed it as 6% of the start's CPU).
    pub fn claim_for_restore(&self, index: u32, seq: u64) -> Result<(), u64> {
        assert!(seq != CLAIM_UNPUBLISHED && seq != CLAIM_FAILED);
        if !self.try_claim(index) {
            return Err(self.claim_seqs[index as usize].load(Ordering::Acquire));
        }
        let before = self.claim_seqs[index as usize].swap(seq, Ordering::AcqRel);
        assert_eq!(before, CLAIM_UNPUBLISHED, "item {index} published twice");
        self.durable.restore(index);
        Ok(())
    }

    /// After a restore into an empty sale (only `claim_for_restore` set
    /// bits): the counts from the bits and the claims.
    pub fn count_restored(&self) {
        let sold = self.bits_set();
        assert!(sold <= self.items_total);
        self.items_sold.store(sold, Ordering::Release);
        let seq_max = self
            .claim_seqs
            .iter()
            .map(|seq| seq.load(Ordering::Acquire))
            .filter(|&seq| seq != CLAIM_FAILED)
            .max()
            .unwrap_or(0);
        self.claim_seq_max.fetch_max(seq_max, Ordering::AcqRel);
        self.durable.count_restored();
    }

    /// Items whose bit is set, counted from the bitset.
    pub fn bits_set(&self) -> u32 {
        self.words
            .iter()
            .map(|w| w.load(Ordering::Acquire).count_ones())
            .sum()
    }

    /// Every item index whose bit is set, with its published seq (`None`
    /// if unpublished or failed). For the audit and snapshots.
    pub fn claims(&self) -> Vec<(u32, Option<u64>)> {
        (0..self.items_total)
            .filter(|&index| self.is_claimed(index))
            .map(|index| (index, self.published_seq(index)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn claim_is_won_once_and_published() {
        let inventory = Inventory::new(130);
        assert!(inventory.try_claim(129));
        assert!(!inventory.try_claim(129));
        assert!(inventory.is_claimed(129));
        assert!(!inventory.is_sold(129), "unpublished claim is not sold yet");
        assert_eq!(inventory.items_sold(), 0);
        inventory.publish(&[129], 7, 0);
        assert_eq!(inventory.wait_claim_seq(129), Ok(7));
        assert_eq!(inventory.items_sold(), 1);
        assert_eq!(inventory.bits_set(), 1);
        assert_eq!(inventory.claim_seq_max(), 7);
        assert_eq!(inventory.claims(), vec![(129, Some(7))]);
        assert!(!inventory.all_sold());
    }

    #[test]
    fn waiter_sees_failed_claimer() {
        let inventory = Inventory::new(1);
        assert!(inventory.try_claim(0));
        inventory.fail(0);
        assert_eq!(
            inventory.wait_claim_seq(0),
            Err(ClaimWaitError::ClaimerFailed { index: 0 })
        );
        assert_eq!(inventory.items_sold(), 0);
    }

    #[test]
    fn waiter_waits_for_in_flight_claim() {
        let inventory = Arc::new(Inventory::new(64));
        assert!(inventory.try_claim(5));
        let waiter = {
            let inventory = Arc::clone(&inventory);
            std::thread::spawn(move || inventory.wait_claim_seq(5))
        };
        std::thread::sleep(Duration::from_millis(20));
        inventory.publish(&[5], 42, 0);
        assert_eq!(waiter.join().unwrap(), Ok(42));
    }

    #[test]
    fn replay_claim_refuses_a_second_sale_of_an_item() {
        let inventory = Inventory::new(3);
        assert_eq!(inventory.claim_for_replay(2, 10), Ok(()));
        assert_eq!(inventory.claim_for_replay(2, 11), Err(10));
        assert_eq!(inventory.items_sold(), 1);
    }

    #[test]
    fn two_threads_never_win_the_same_item() {
        let inventory = Arc::new(Inventory::new(10_000));
        let wins: Vec<Vec<u32>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let inventory = &inventory;
                    scope.spawn(move || {
                        (0..10_000)
                            .filter(|&i| inventory.try_claim(i))
                            .collect::<Vec<u32>>()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all: Vec<u32> = wins.concat();
        all.sort_unstable();
        assert_eq!(all, (0..10_000).collect::<Vec<u32>>());
    }
}

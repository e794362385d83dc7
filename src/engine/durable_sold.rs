//! What readers may call sold: an item shows as sold once the record that
//! sold it is durable (the contract's reads never show what a crash could
//! take back).
//!
//! The claim bitset (`inventory`) decides who wins an item the moment its
//! `fetch_or` lands, long before the record is on disk. This is a second
//! bitset, set only for claims whose record is known durable: published
//! claims wait in `pending` (bounded by the writes in flight) until a
//! caller reports a durable sequence number at or past theirs (`settle`).
//! Counting and paging work on whole words (popcounts), so finding the
//! start of a page never walks over items.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use parking_lot::Mutex;

/// Durably sold items of one sale.
#[derive(Debug)]
pub struct DurableSold {
    words: Box<[AtomicU64]>,
    items_total: u32,
    count: AtomicU32,
    /// Published claims (record seq, item index) not yet known durable.
    pending: Mutex<Vec<(u64, u32)>>,
}

impl DurableSold {
    pub fn new(items_total: u32) -> DurableSold {
        DurableSold {
            words: (0..items_total.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
            items_total,
            count: AtomicU32::new(0),
            pending: Mutex::new(Vec::new()),
        }
    }

    /// Claims published at `seq`: sold for readers once `seq` is durable.
    /// Settles what `durable_seq` covers under the same lock, which keeps
    /// the pending list bounded by the writes in flight.
    pub fn published(&self, indices: &[u32], seq: u64, durable_seq: u64) {
        let mut pending = self.pending.lock();
        pending.extend(indices.iter().map(|&index| (seq, index)));
        self.settle_locked(&mut pending, durable_seq);
    }

    /// A claim whose record is durable already (replay reads only what is
    /// on disk).
    pub fn durable(&self, index: u32) {
        self.restore(index);
        let count_before = self.count.fetch_add(1, Ordering::AcqRel);
        assert!(
            count_before < self.items_total,
            "more items sold than exist"
        );
    }

    /// Restore: marks `index` durably sold, leaving the count to
    /// `count_restored` (restoring threads would contend on it).
    pub fn restore(&self, index: u32) {
        let mask = 1u64 << (index % 64);
        let before = self.words[(index / 64) as usize].fetch_or(mask, Ordering::AcqRel);
        assert_eq!(before & mask, 0, "item {index} durably sold twice");
    }

    /// After a restore into an empty sale: the count from the bits.
    pub fn count_restored(&self) {
        let count: u32 = self
            .words
            .iter()
            .map(|w| w.load(Ordering::Acquire).count_ones())
            .sum();
        assert!(count <= self.items_total, "more items sold than exist");
        self.count.store(count, Ordering::Release);
    }

    /// Moves every pending claim whose record is at or below
    /// `durable_seq` into the sold bits.
    pub fn settle(&self, durable_seq: u64) {
        self.settle_locked(&mut self.pending.lock(), durable_seq);
    }

    fn settle_locked(&self, pending: &mut Vec<(u64, u32)>, durable_seq: u64) {
        if pending.is_empty() {
            return;
        }
        pending.retain(|&(seq, index)| {
            let settled = seq <= durable_seq;
            if settled {
                self.durable(index);
            }
            !settled
        });
    }

    /// Claims published but not yet known durable.
    #[cfg(test)]
    pub fn pending_count(&self) -> usize {
        self.pending.lock().len()
    }

    pub fn count(&self) -> u32 {
        self.count.load(Ordering::Acquire)
    }

    pub fn is_sold(&self, index: u32) -> bool {
        let word = self.words[(index / 64) as usize].load(Ordering::Acquire);
        word & (1u64 << (index % 64)) != 0
    }

    /// Up to `limit` item indices from the `offset`-th one on (counting
    /// only unsold items when `available_only`). The start is found by
    /// popcounts over whole words; the page itself takes at most `limit`
    /// items plus the words it skips.
    pub fn page(&self, offset: u32, limit: u32, available_only: bool) -> Vec<u32> {
        if !available_only {
            let end = offset.saturating_add(limit).min(self.items_total);
            return (offset.min(end)..end).collect();
        }
        let mut items = Vec::with_capacity(limit.min(self.items_total) as usize);
        let mut skip = u64::from(offset);
        for (word_index, word) in self.words.iter().enumerate() {
            if items.len() >= limit as usize {
                break;
            }
            let first = word_index as u32 * 64;
            let mut unsold = !word.load(Ordering::Acquire) & self.valid_mask(first);
            let unsold_count = u64::from(unsold.count_ones());
            if skip >= unsold_count {
                skip -= unsold_count;
                continue;
            }
            while unsold != 0 && items.len() < limit as usize {
                let bit = unsold.trailing_zeros();
                unsold &= unsold - 1;
                if skip > 0 {
                    skip -= 1;
                } else {
                    items.push(first + bit);
                }
            }
        }
        items
    }

    /// The bits of the word starting at item `first` that name items.
    fn valid_mask(&self, first: u32) -> u64 {
        let items_in_word = (self.items_total - first).min(64);
        if items_in_word == 64 {
            u64::MAX
        } else {
            (1u64 << items_in_word) - 1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_is_not_sold_for_readers_before_its_record_is_durable() {
        let sold = DurableSold::new(10);
        sold.published(&[3], 7, 6);
        assert!(!sold.is_sold(3));
        assert_eq!(sold.count(), 0);
        sold.settle(6);
        assert!(!sold.is_sold(3), "record 7 is not durable at 6");
        sold.settle(7);
        assert!(sold.is_sold(3));
        assert_eq!((sold.count(), sold.pending_count()), (1, 0));
    }

    #[test]
    fn pages_of_available_items_skip_sold_ones_across_words() {
        let sold = DurableSold::new(200);
        for index in (0..200).filter(|i| i % 3 == 0) {
            sold.durable(index);
        }
        let unsold: Vec<u32> = (0..200).filter(|i| i % 3 != 0).collect();
        for (offset, limit) in [(0, 10), (5, 100), (60, 7), (130, 50), (133, 5), (500, 5)] {
            let expected: Vec<u32> = unsold
                .iter()
                .copied()
                .skip(offset as usize)
                .take(limit as usize)
                .collect();
            assert_eq!(sold.page(offset, limit, true), expected, "{offset} {limit}");
        }
        assert_eq!(sold.page(195, 10, false), vec![195, 196, 197, 198, 199]);
        assert_eq!(sold.page(300, 10, false), Vec::<u32>::new());
    }
}

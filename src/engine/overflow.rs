//! The rarely needed parts of a user (cart items past the inline ones,
//! stored purchase results), packed into one allocation of 4-byte words.
//!
//! Why packed: in a flash sale most of a million users end up with one
//! stored purchase (mostly "sold out"), and boxed structures cost three
//! allocations (about 140 bytes) for it; packed, it is one allocation of
//! 28 bytes plus 4 per item. A user without either part allocates nothing.
//! Changes rebuild the allocation; they are rare (one per spilled cart item
//! or purchase) and a user's words are few (bounded by the user limit and
//! the user's purchases).
//!
//! Layout, when not empty:
//!
//! ```text
//! [spilled_len, spilled item indices.., purchase, purchase, ..]
//! purchase = [secret (3 words), seq low, seq high, items_len, items..]
//! item     = item_index << 2 | outcome (0 bought, 1 sold out, 2 user limit)
//! ```

use super::outcome::{ItemOutcome, PurchaseItem};

use super::codes::{CodeSecret, StoredPurchase};

/// Words of a stored purchase before its items.
const PURCHASE_HEADER_WORDS: usize = 6;
/// Item indices must fit the 30 bits left next to the outcome (items per
/// sale are at most 1,000,000, validated before anything is stored).
const ITEM_INDEX_MAX: u32 = (1 << 30) - 1;

/// A user's spilled cart items and stored purchases.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UserExtra {
    words: Box<[u32]>,
}

/// A stored purchase, read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurchaseWords<'a> {
    pub secret: CodeSecret,
    pub seq: u64,
    items: &'a [u32],
}

impl PurchaseWords<'_> {
    pub fn items(&self) -> impl Iterator<Item = PurchaseItem> + '_ {
        self.items.iter().map(|&word| decode_item(word))
    }

    #[cfg(test)]
    pub fn to_stored(self) -> StoredPurchase {
        StoredPurchase {
            secret: self.secret,
            items: self.items().collect(),
            seq: self.seq,
        }
    }
}

fn encode_item(item: PurchaseItem) -> u32 {
    assert!(item.item_index <= ITEM_INDEX_MAX, "item index fits 30 bits");
    let outcome = match item.outcome {
        ItemOutcome::Bought => 0,
        ItemOutcome::SoldOut => 1,
        ItemOutcome::UserLimit => 2,
    };
    item.item_index << 2 | outcome
}

fn decode_item(word: u32) -> PurchaseItem {
    let outcome = match word & 3 {
        0 => ItemOutcome::Bought,
        1 => ItemOutcome::SoldOut,
        _ => ItemOutcome::UserLimit,
    };
    PurchaseItem {
        item_index: word >> 2,
        outcome,
    }
}

impl UserExtra {
    fn spilled_len(&self) -> usize {
        self.words.first().map_or(0, |&len| len as usize)
    }

    /// Cart items past the inline ones, in insertion order.
    pub fn cart_spilled(&self) -> &[u32] {
        self.words.get(1..1 + self.spilled_len()).unwrap_or(&[])
    }

    fn purchase_words(&self) -> &[u32] {
        self.words.get(1 + self.spilled_len()..).unwrap_or(&[])
    }

    /// Rebuilds the words as `spilled` followed by the purchases' words
    /// and `appended`.
    fn rebuild(&mut self, spilled: &[u32], appended: &[u32]) {
        let purchases = self.purchase_words();
        if spilled.is_empty() && purchases.is_empty() && appended.is_empty() {
            self.words = Box::default();
            return;
        }
        let mut words = Vec::with_capacity(1 + spilled.len() + purchases.len() + appended.len());
        words.push(spilled.len() as u32);
        words.extend_from_slice(spilled);
        words.extend_from_slice(purchases);
        words.extend_from_slice(appended);
        self.words = words.into_boxed_slice();
    }

    pub fn push_cart_item(&mut self, index: u32) {
        let mut spilled = self.cart_spilled().to_vec();
        spilled.push(index);
        self.rebuild(&spilled, &[]);
    }

    pub fn clear_cart(&mut self) {
        if self.spilled_len() == 0 {
            return;
        }
        self.rebuild(&[], &[]);
    }

    pub fn push_purchase(&mut self, purchase: &StoredPurchase) {
        let [low, middle, high] = purchase.secret.words();
        let mut words = vec![low, middle, high];
        words.extend([purchase.seq as u32, (purchase.seq >> 32) as u32]);
        words.push(purchase.items.len() as u32);
        words.extend(purchase.items.iter().copied().map(encode_item));
        let spilled = self.cart_spilled().to_vec();
        self.rebuild(&spilled, &words);
    }

    /// The stored purchases, oldest first.
    pub fn purchases(&self) -> impl Iterator<Item = PurchaseWords<'_>> {
        let mut rest = self.purchase_words();
        std::iter::from_fn(move || {
            let (header, after) = rest.split_at_checked(PURCHASE_HEADER_WORDS)?;
            let items_len = header[5] as usize;
            let (items, after) = after.split_at_checked(items_len)?;
            rest = after;
            Some(PurchaseWords {
                secret: CodeSecret::from_words([header[0], header[1], header[2]]),
                seq: u64::from(header[3]) | u64::from(header[4]) << 32,
                items,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(item_index: u32, outcome: ItemOutcome) -> PurchaseItem {
        PurchaseItem {
            item_index,
            outcome,
        }
    }

    #[test]
    fn cart_items_and_purchases_live_side_by_side() {
        let mut extra = UserExtra::default();
        assert!(extra.words.is_empty() && extra.purchases().next().is_none());
        extra.push_cart_item(7);
        extra.push_cart_item(999_999);
        assert_eq!(extra.cart_spilled(), &[7, 999_999]);
        let first = StoredPurchase {
            secret: CodeSecret::from_words([1, 2, u32::MAX]),
            items: vec![
                item(ITEM_INDEX_MAX, ItemOutcome::Bought),
                item(0, ItemOutcome::SoldOut),
                item(5, ItemOutcome::UserLimit),
            ]
            .into(),
            seq: u64::MAX - 1,
        };
        extra.clear_cart();
        extra.push_purchase(&first);
        extra.push_cart_item(3);
        let second = StoredPurchase {
            secret: CodeSecret::from_words([4, 5, 6]),
            items: Box::default(),
            seq: 3,
        };
        extra.push_purchase(&second);
        assert_eq!(extra.cart_spilled(), &[3]);
        let stored: Vec<StoredPurchase> = extra.purchases().map(PurchaseWords::to_stored).collect();
        assert_eq!(stored, vec![first, second]);
        extra.clear_cart();
        assert_eq!(extra.purchases().count(), 2);
        assert_eq!(extra.words.len(), 1 + 6 + 3 + 6);
    }

    #[test]
    fn an_empty_extra_allocates_nothing() {
        let mut extra = UserExtra::default();
        extra.push_cart_item(1);
        extra.clear_cart();
        assert!(extra.words.is_empty());
        assert_eq!(std::mem::size_of::<UserExtra>(), 16);
    }
}

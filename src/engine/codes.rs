//! The checkout codes of one sale: which user's cart a code names, and for a
//! purchased cart the stored result, so that a repeated purchase gets the
//! same answer (also after a restart: replay stores it again).
//!
//! Striped by the code's low bits (codes are random, so stripes fill
//! evenly). Lock order: a user stripe may be held while a code stripe is
//! taken, never the other way round.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::domain::CheckoutCode;
use crate::journal::PurchaseItem;

/// Stripes of the code index per sale.
pub const CODE_STRIPES: usize = 64;

/// A purchase as it was answered: repeated verbatim for the same code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPurchase {
    pub items: Box<[PurchaseItem]>,
    /// Sequence number of the `Completed` record.
    pub seq: u64,
}

/// What a code names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeEntry {
    pub user: Arc<str>,
    /// `None` while the cart is open.
    pub purchase: Option<Box<StoredPurchase>>,
}

/// One stripe: code (as two words) to entry.
type CodeStripe = Mutex<HashMap<[u64; 2], CodeEntry>>;

/// The codes of one sale.
#[derive(Debug)]
pub struct CodeIndex {
    stripes: Box<[CodeStripe]>,
}

/// The map key: the code as two words (keeps entries 8-byte aligned).
fn key(code: CheckoutCode) -> [u64; 2] {
    let bits = code.as_u128();
    [bits as u64, (bits >> 64) as u64]
}

fn code_of(key: [u64; 2]) -> CheckoutCode {
    CheckoutCode::from_u128(u128::from(key[0]) | u128::from(key[1]) << 64)
}

impl Default for CodeIndex {
    fn default() -> CodeIndex {
        CodeIndex {
            stripes: (0..CODE_STRIPES).map(|_| Mutex::default()).collect(),
        }
    }
}

impl CodeIndex {
    fn stripe(&self, code: CheckoutCode) -> &CodeStripe {
        &self.stripes[code.as_u128() as usize % CODE_STRIPES]
    }

    pub fn get(&self, code: CheckoutCode) -> Option<CodeEntry> {
        self.stripe(code).lock().get(&key(code)).cloned()
    }

    /// Registers the code of a newly opened cart. Returns false (and
    /// changes nothing) if the code is taken already.
    pub fn insert_open(&self, code: CheckoutCode, user: Arc<str>) -> bool {
        let mut stripe = self.stripe(code).lock();
        if stripe.contains_key(&key(code)) {
            return false;
        }
        let entry = CodeEntry {
            user,
            purchase: None,
        };
        stripe.insert(key(code), entry);
        true
    }

    /// Whether `code` is registered here (open or purchased).
    pub fn contains(&self, code: CheckoutCode) -> bool {
        self.stripe(code).lock().contains_key(&key(code))
    }

    /// Stores the purchase of an open cart's code. False if the code is
    /// unknown or purchased already.
    pub fn store_purchase(&self, code: CheckoutCode, purchase: StoredPurchase) -> bool {
        let mut stripe = self.stripe(code).lock();
        match stripe.get_mut(&key(code)) {
            Some(entry) if entry.purchase.is_none() => {
                entry.purchase = Some(Box::new(purchase));
                true
            }
            _ => false,
        }
    }

    /// Calls `visit` for every code, one stripe locked at a time.
    pub fn for_each(&self, mut visit: impl FnMut(CheckoutCode, &CodeEntry)) {
        for stripe in self.stripes.iter() {
            for (key, entry) in stripe.lock().iter() {
                visit(code_of(*key), entry);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::ItemOutcome;

    #[test]
    fn code_goes_from_open_to_purchased_once() {
        let index = CodeIndex::default();
        let code = CheckoutCode::from_u128(u128::MAX - 1);
        let user: Arc<str> = Arc::from("alice");
        assert!(index.insert_open(code, Arc::clone(&user)));
        assert!(!index.insert_open(code, Arc::clone(&user)), "code reused");
        assert_eq!(index.get(code).and_then(|e| e.purchase), None);
        let stored = StoredPurchase {
            items: vec![PurchaseItem {
                item_index: 3,
                outcome: ItemOutcome::Bought,
            }]
            .into(),
            seq: 9,
        };
        assert!(index.store_purchase(code, stored.clone()));
        assert!(!index.store_purchase(code, stored.clone()));
        assert_eq!(
            index.get(code).and_then(|e| e.purchase),
            Some(Box::new(stored))
        );
        let mut seen = Vec::new();
        index.for_each(|code, _| seen.push(code));
        assert_eq!(seen, vec![code]);
        assert!(!index.contains(CheckoutCode::from_u128(1)));
    }
}

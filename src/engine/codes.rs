//! Checkout codes: what the 128 bits of a code mean, and the stored results
//! of purchased codes.
//!
//! A code is 96 secret bits from the operating system's secure random
//! source (`CheckoutCode::generate`; the contract asks for at least 96
//! unguessable bits) and 32 locator bits naming the cart owner's place in
//! the sale's user table: the stripe and the slot in it. So a purchase finds
//! the owner without a separate code index (which cost 40 bytes per user),
//! and the secret bits are what make the code unguessable: a purchase
//! succeeds only if all 128 bits equal a code the owner holds.
//!
//! Layout, most significant bits first:
//!
//! ```text
//! | secret: 96 bits | stripe: 8 bits | slot: 24 bits |
//! ```
//!
//! The layout is part of the log's meaning (records carry codes, and replay
//! checks that each code's locator is the slot it rebuilds), so it must
//! never change. The locator reveals roughly how many users a stripe held
//! when the cart was opened; nothing else about other users.

use super::outcome::PurchaseItem;
use crate::domain::CheckoutCode;

/// Bits of a code that name the slot in its stripe.
const SLOT_BITS: u32 = 24;
/// Bits of a code that name the stripe.
const STRIPE_BITS: u32 = 8;
/// Bits of a code that locate the owner (stripe and slot).
const LOCATOR_BITS: u32 = STRIPE_BITS + SLOT_BITS;
/// Stripes a code can name.
pub const STRIPES_ADDRESSABLE: usize = 1 << STRIPE_BITS;
/// Slots a code can name in one stripe: a stripe holds at most this many
/// users.
pub const SLOTS_PER_STRIPE_MAX: u32 = 1 << SLOT_BITS;

/// The 96 secret bits of a code, as three words: 4-byte alignment keeps the
/// user's slot free of padding (a `u128` would align it to 16 bytes).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CodeSecret([u32; 3]);

impl CodeSecret {
    /// 96 fresh bits from the secure random source.
    pub fn generate() -> Result<CodeSecret, getrandom::Error> {
        let random = CheckoutCode::generate()?.as_u128();
        Ok(CodeSecret::from_bits(random >> LOCATOR_BITS))
    }

    pub fn from_words(words: [u32; 3]) -> CodeSecret {
        CodeSecret(words)
    }

    pub fn words(self) -> [u32; 3] {
        self.0
    }

    /// The low 96 bits of `bits`.
    fn from_bits(bits: u128) -> CodeSecret {
        CodeSecret([bits as u32, (bits >> 32) as u32, (bits >> 64) as u32])
    }

    fn bits(self) -> u128 {
        let [low, middle, high] = self.0.map(u128::from);
        low | middle << 32 | high << 64
    }
}

/// Where a code's owner lives in its sale: stripe and slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Locator {
    pub stripe: usize,
    pub slot: u32,
}

impl std::fmt::Display for Locator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stripe {} slot {}", self.stripe, self.slot)
    }
}

/// The code made of `secret` and `locator`.
pub fn compose(secret: CodeSecret, locator: Locator) -> CheckoutCode {
    assert!(locator.stripe < STRIPES_ADDRESSABLE);
    assert!(locator.slot < SLOTS_PER_STRIPE_MAX);
    let locator_bits = (locator.stripe as u128) << SLOT_BITS | u128::from(locator.slot);
    CheckoutCode::from_u128(secret.bits() << LOCATOR_BITS | locator_bits)
}

/// The parts of any code (every 128-bit value splits; whether a cart has
/// it is for the user table to say).
pub fn split(code: CheckoutCode) -> (CodeSecret, Locator) {
    let bits = code.as_u128();
    let locator = Locator {
        stripe: (bits >> SLOT_BITS) as usize % STRIPES_ADDRESSABLE,
        slot: bits as u32 % SLOTS_PER_STRIPE_MAX,
    };
    (CodeSecret::from_bits(bits >> LOCATOR_BITS), locator)
}

/// A purchase as it was answered: repeated verbatim for the same code. The
/// code's locator is the owner's, so only the secret is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPurchase {
    pub secret: CodeSecret,
    pub items: Box<[PurchaseItem]>,
    /// Sequence number of the `Completed` record.
    pub seq: u64,
}

impl StoredPurchase {
    /// Items this purchase bought (saturating: a foreign log may claim
    /// more; the audit then refuses it).
    pub fn bought_count(&self) -> u16 {
        let bought = self.items.iter().filter(|i| i.is_bought());
        u16::try_from(bought.count()).unwrap_or(u16::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_splits_into_the_parts_it_was_composed_of() {
        let secret = CodeSecret::from_bits((1 << 96) - 3);
        let locator = Locator {
            stripe: 255,
            slot: SLOTS_PER_STRIPE_MAX - 1,
        };
        let code = compose(secret, locator);
        assert_eq!(split(code), (secret, locator));
        let small = Locator { stripe: 1, slot: 2 };
        assert_eq!(split(compose(CodeSecret::default(), small)).1, small);
    }

    #[test]
    fn the_code_layout_never_changes() {
        // Codes in old logs must keep naming the same slots.
        let secret = CodeSecret::from_bits(0x0123_4567_89ab_cdef_0011_2233);
        let code = compose(
            secret,
            Locator {
                stripe: 0xab,
                slot: 0x12_3456,
            },
        );
        assert_eq!(code.to_string(), "0123456789abcdef00112233ab123456");
    }

    #[test]
    fn generated_secrets_differ() {
        let a = CodeSecret::generate().unwrap();
        let b = CodeSecret::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.bits() >> 96, 0, "96 bits only");
    }

    #[test]
    fn stored_purchase_is_compact() {
        assert!(std::mem::size_of::<StoredPurchase>() <= 40);
    }
}

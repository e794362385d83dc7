//! Answers that depend on other users' claims ("sold out") must not leave
//! before the records of those claims are durable, or a crash could take
//! back the claim while the answer stands. The decision names the claims
//! it depends on; they are resolved here, after the user's lock is
//! released (a claimer never needs that lock, so waiting cannot deadlock).

use super::sales::SaleState;
use super::views::Decided;
use super::{Engine, EngineError};

/// Claims an answer depends on, resolved after the user's lock is released
/// (a claimer never needs that lock, so waiting cannot deadlock).
#[derive(Debug)]
pub(super) enum ClaimWait {
    Nothing,
    /// The claims of these items (skipping items nobody claimed).
    Items(Vec<u32>),
    /// Every claim of the sale (it is sold out).
    AllItems,
}

impl Engine {
    /// Raises `wait_seq` to the claims the answer depends on, waiting for
    /// claims still in flight (no lock held here).
    pub(super) fn resolve_wait<T>(
        &self,
        sale: &SaleState,
        mut decided: Decided<T>,
        wait: ClaimWait,
    ) -> Result<Decided<T>, EngineError> {
        let inventory = &sale.inventory;
        let claims_seq = match wait {
            ClaimWait::Nothing => 0,
            ClaimWait::AllItems => inventory.claim_seq_max(),
            ClaimWait::Items(indices) => {
                let mut seq_max = 0;
                for index in indices.into_iter().filter(|&i| inventory.is_claimed(i)) {
                    let seq = inventory.wait_claim_seq(index).map_err(|source| {
                        EngineError::ClaimNotRecorded {
                            sale: sale.id,
                            source,
                        }
                    })?;
                    seq_max = seq_max.max(seq);
                }
                seq_max
            }
        };
        decided.wait_seq = decided.wait_seq.max(claims_seq);
        assert!(
            decided.wait_seq >= decided.seq,
            "an answer waits for its own record"
        );
        Ok(decided)
    }
}

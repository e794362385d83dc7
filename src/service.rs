//! The write path: admit the request, let the engine decide (it appends the
//! decision's record to the log), wait until that record is durable, answer.
//!
//! This is where the contract's durability promise is kept: no answer other
//! than 400, 429 or 503 leaves before `wait_seq` (the request's own record
//! and every claim its answer depends on) is on disk. If the log fails, the
//! answer is 503 and the client knows nothing was promised.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use flashsale_wal::Wal;

use crate::domain::{CheckoutCode, ItemId, UserId};
use crate::engine::{CartView, Decided, Engine, EngineError, PurchaseView};
use crate::journal::Rejection;
use crate::metrics::Metrics;

/// Why a write was not carried out: the client may retry later.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("too many requests in flight")]
    RateLimited,
    #[error("{0}")]
    Unavailable(String),
}

pub struct Service {
    engine: Arc<Engine>,
    wal: Arc<Wal>,
    metrics: Arc<Metrics>,
    writes_in_flight: AtomicUsize,
    writes_in_flight_max: usize,
    shutting_down: AtomicBool,
}

/// Holds one of the `writes_in_flight_max` places until dropped.
struct WritePermit<'a> {
    service: &'a Service,
}

impl Drop for WritePermit<'_> {
    fn drop(&mut self) {
        self.service.writes_in_flight.fetch_sub(1, Ordering::AcqRel);
        self.service.metrics.write_requests_in_flight.dec();
    }
}

impl Service {
    pub fn new(
        engine: Arc<Engine>,
        wal: Arc<Wal>,
        metrics: Arc<Metrics>,
        writes_in_flight_max: usize,
    ) -> Service {
        assert!(writes_in_flight_max > 0);
        Service {
            engine,
            wal,
            metrics,
            writes_in_flight: AtomicUsize::new(0),
            writes_in_flight_max,
            shutting_down: AtomicBool::new(false),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// From now on writes answer 503; requests already admitted finish.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Why writes are refused now, if they are.
    pub fn unavailable_reason(&self) -> Option<String> {
        if let Some(reason) = self.wal.failure() {
            return Some(format!("the log cannot make writes durable: {reason}"));
        }
        if self.is_shutting_down() {
            return Some("the server is shutting down".to_string());
        }
        None
    }

    pub async fn checkout(
        &self,
        user: &UserId,
        item: ItemId,
    ) -> Result<Result<CartView, Rejection>, ServiceError> {
        let _permit = self.admit()?;
        let decided = self.engine.checkout(user, item).map_err(unavailable)?;
        let outcome = decided.answer.as_ref().map_or_else(|r| r.code(), |_| "ok");
        self.make_durable(&decided).await?;
        self.metrics
            .checkout_outcomes_total
            .with_label_values(&[outcome])
            .inc();
        Ok(decided.answer)
    }

    pub async fn purchase(
        &self,
        code: CheckoutCode,
    ) -> Result<Result<PurchaseView, Rejection>, ServiceError> {
        let _permit = self.admit()?;
        let decided = self.engine.purchase(code).map_err(unavailable)?;
        let outcome = decided.answer.as_ref().map_or_else(|r| r.code(), |_| "ok");
        self.make_durable(&decided).await?;
        self.metrics
            .purchase_outcomes_total
            .with_label_values(&[outcome])
            .inc();
        Ok(decided.answer)
    }

    fn admit(&self) -> Result<WritePermit<'_>, ServiceError> {
        if let Some(reason) = self.unavailable_reason() {
            return Err(ServiceError::Unavailable(reason));
        }
        let before = self.writes_in_flight.fetch_add(1, Ordering::AcqRel);
        let permit = WritePermit { service: self };
        self.metrics.write_requests_in_flight.inc();
        if before >= self.writes_in_flight_max {
            return Err(ServiceError::RateLimited);
        }
        Ok(permit)
    }

    async fn make_durable<T>(&self, decided: &Decided<T>) -> Result<(), ServiceError> {
        debug_assert!(decided.wait_seq >= decided.seq);
        self.wal
            .wait_durable_async(decided.wait_seq)
            .await
            .map_err(|error| ServiceError::Unavailable(format!("the log failed: {error}")))
    }
}

fn unavailable(error: EngineError) -> ServiceError {
    ServiceError::Unavailable(error.to_string())
}

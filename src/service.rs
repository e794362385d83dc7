//! The service: what the HTTP layer may ask. Writes are admitted, decided
//! by the engine (which appends the decision's record through the
//! journal), and answered only once their records are durable; reads and
//! the health report go to the engine and the journal without a lock.
//!
//! This is where the contract's durability promise is kept: no answer other
//! than 400, 429 or 503 leaves before `wait_seq` (the request's own record
//! and every claim its answer depends on) is on disk. If the log fails, the
//! answer is 503 and the client knows nothing was promised.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use flashsale_wal::{SyncMode, WalError};

use crate::domain::{ItemId, PurchaseCode, SaleId, UserId};
use crate::engine::{
    CartView, Decided, Engine, EngineError, ItemsPage, PurchaseView, Rejection, SaleView,
};
use crate::journal::WalJournal;
use crate::metrics::Metrics;
use crate::replication::gate::{GateError, GateHealth};
use crate::shutdown::Shutdown;
use crate::snapshot::{SnapshotHealth, SnapshotStatus};

/// Why a write was not carried out: the client may retry later.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    #[error("too many requests in flight")]
    RateLimited,
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The log failed earlier; it accepts nothing until a restart.
    #[error("the log cannot make writes durable: {reason}")]
    LogFailed { reason: String },
    /// The log failed while this request waited for its record.
    #[error("the log failed")]
    NotDurable(#[source] WalError),
    /// Replication on: this node does not own the writes, or the stream
    /// did not take the record.
    #[error("replication refused the write")]
    Replication(#[from] GateError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// The log as `/health` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogHealth {
    /// The log's identity, as 32 lowercase hex digits.
    pub id: String,
    /// Why the log refuses writes, once a write or fsync failed.
    pub failure: Option<String>,
    pub durable_seq: u64,
    pub last_seq: u64,
    /// How records are made durable: `fdatasync`, or `none` under
    /// `--unsafe-no-fsync`.
    pub sync_mode: &'static str,
}

/// What `/health` reports of the write path.
#[derive(Debug)]
pub struct Health {
    /// Why writes are refused now, if they are.
    pub unavailable: Option<ServiceError>,
    pub log: LogHealth,
    pub active_sale: SaleView,
    /// The newest snapshot (`None`: the service was built without one).
    pub snapshot: Option<SnapshotHealth>,
    /// Replication (`None`: off).
    pub replication: Option<GateHealth>,
    /// Whether this node owns the writes and can take them now
    /// (`/health/primary`).
    pub primary: bool,
}

pub struct Service {
    engine: Arc<Engine>,
    journal: Arc<WalJournal>,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    writes_in_flight: AtomicUsize,
    writes_in_flight_max: usize,
    sync_mode: SyncMode,
    snapshots: Option<Arc<SnapshotStatus>>,
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

/// The answer to a write: the engine's view, or the contract's rejection.
pub type Answer<T> = Result<Result<T, Rejection>, ServiceError>;

impl Service {
    /// `engine` must append to `journal`: the service waits on it for the
    /// records the engine appended.
    pub fn new(
        engine: Arc<Engine>,
        journal: Arc<WalJournal>,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
        writes_in_flight_max: usize,
    ) -> Service {
        assert!(writes_in_flight_max > 0);
        Service {
            engine,
            journal,
            metrics,
            shutdown,
            writes_in_flight: AtomicUsize::new(0),
            writes_in_flight_max,
            sync_mode: SyncMode::Fdatasync,
            snapshots: None,
        }
    }

    /// The same service, reporting `sync_mode` (the log's) in `/health`.
    pub fn with_sync_mode(self, sync_mode: SyncMode) -> Service {
        Service { sync_mode, ..self }
    }

    /// `/health` also reports the snapshots' `status`.
    pub fn with_snapshots(mut self, status: Arc<SnapshotStatus>) -> Service {
        self.snapshots = Some(status);
        self
    }

    pub async fn checkout(&self, user: &UserId, item: ItemId) -> Answer<CartView> {
        let outcomes = &self.metrics.checkout_outcomes_total;
        self.write(outcomes, || self.engine.checkout(user, item))
            .await
    }

    pub async fn purchase(&self, code: &PurchaseCode) -> Answer<PurchaseView> {
        self.purchase_as(code, None).await
    }

    /// `purchase` by `acting` (identity on): another user's cart answers
    /// `CheckoutNotFound`, like an unknown code.
    pub async fn purchase_as(
        &self,
        code: &PurchaseCode,
        acting: Option<&UserId>,
    ) -> Answer<PurchaseView> {
        let outcomes = &self.metrics.purchase_outcomes_total;
        self.write(outcomes, || match code {
            PurchaseCode::Issued(code) => self.engine.purchase_as(*code, acting),
            PurchaseCode::Foreign(text) => self.engine.purchase_foreign(text),
        })
        .await
    }

    /// Admits a write, lets the engine decide, waits until the decision
    /// (and every claim its answer depends on) is durable, counts the
    /// outcome.
    async fn write<T>(
        &self,
        outcomes: &prometheus::IntCounterVec,
        decide: impl FnOnce() -> Result<Decided<T>, EngineError>,
    ) -> Answer<T> {
        let _permit = self.admit()?;
        let decided = decide()?;
        assert!(
            decided.wait_seq >= decided.seq,
            "an answer waits for its own record"
        );
        self.journal
            .wait_durable(decided.wait_seq)
            .await
            .map_err(ServiceError::NotDurable)?;
        if let Some(gate) = self.journal.gate() {
            gate.wait_replicated(decided.wait_seq).await?;
        }
        let outcome = decided.answer.as_ref().map_or_else(|r| r.code(), |_| "ok");
        outcomes.with_label_values(&[outcome]).inc();
        Ok(decided.answer)
    }

    fn admit(&self) -> Result<WritePermit<'_>, ServiceError> {
        if let Some(refused) = self.refusal() {
            return Err(refused);
        }
        let before = self.writes_in_flight.fetch_add(1, Ordering::AcqRel);
        let permit = WritePermit { service: self };
        self.metrics.write_requests_in_flight.inc();
        if before >= self.writes_in_flight_max {
            return Err(ServiceError::RateLimited);
        }
        Ok(permit)
    }

    /// Why every write is refused now, if it is.
    fn refusal(&self) -> Option<ServiceError> {
        if let Some(reason) = self.journal.failure() {
            return Some(ServiceError::LogFailed { reason });
        }
        if self.shutdown.is_begun() {
            return Some(ServiceError::ShuttingDown);
        }
        let gate = self.journal.gate()?;
        gate.refusal().map(ServiceError::Replication)
    }

    /// Why this node does not do its part now, if it does not: take
    /// writes (alone or as the owner) or follow the stream (a standby).
    fn unhealthy(&self) -> Option<ServiceError> {
        let refused = self.refusal()?;
        match (&refused, self.journal.gate()) {
            (ServiceError::Replication(_), Some(gate)) if gate.is_healthy() => None,
            _ => Some(refused),
        }
    }

    /// The owner of the cart `code` names in the active sale, if any (for
    /// the per-user rate limit of purchases; decides nothing).
    pub fn purchase_owner(&self, code: &PurchaseCode) -> Option<UserId> {
        match code {
            PurchaseCode::Issued(code) => self.engine.owner_in_active_sale(*code),
            PurchaseCode::Foreign(_) => None,
        }
    }

    pub fn user_limit(&self) -> u32 {
        self.engine.user_limit()
    }

    pub fn active_sale(&self) -> SaleView {
        self.engine.active_sale()
    }

    /// The active sale or a retained past one; `None` for any other.
    pub fn sale(&self, id: SaleId) -> Option<SaleView> {
        self.engine.sale(id)
    }

    /// A page of a readable sale's items; `None` for any other sale.
    pub fn items(
        &self,
        id: SaleId,
        offset: u32,
        limit: u32,
        available_only: bool,
    ) -> Option<ItemsPage> {
        self.engine.items(id, offset, limit, available_only)
    }

    pub fn health(&self) -> Health {
        Health {
            unavailable: self.unhealthy(),
            primary: self.refusal().is_none(),
            replication: self.journal.gate().map(|gate| gate.health()),
            log: LogHealth {
                id: format!("{:032x}", self.journal.log_id()),
                failure: self.journal.failure(),
                durable_seq: self.journal.durable_seq(),
                last_seq: self.journal.last_seq(),
                sync_mode: match self.sync_mode {
                    SyncMode::UnsafeNoSync => "none",
                    SyncMode::Fdatasync => "fdatasync",
                },
            },
            active_sale: self.engine.active_sale(),
            snapshot: self
                .snapshots
                .as_ref()
                .map(|status| status.health(chrono::Utc::now().timestamp_millis())),
        }
    }
}

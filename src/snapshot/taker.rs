//! Taking snapshots without stopping writes, and retention.
//!
//! A snapshot is built off the request path: a private engine starts from
//! the newest snapshot file (or empty, while the log still starts at its
//! first record), replays the durable log records after it up to the
//! durable end with the same replay code a start uses, and its image is
//! written out; then the private engine is dropped. The serving engine is
//! never locked or walked, so requests never pause for a snapshot; the
//! cost is CPU and, during a build, the memory of a second engine. And
//! what is written is, by construction, what a start from the log would
//! rebuild.
//!
//! After a snapshot is written, log segments wholly before the older kept
//! snapshot are deleted (through `Wal::delete_segments_before`, which
//! raises the log's start durably first), never one holding a record the
//! exporter has not exported yet.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flashsale_wal::{Storage, Wal, WalError};

use super::format::{self, BodyMeta, BodyReader};
use super::start::{StartError, UsedSnapshot};
use super::status::{SnapshotMetrics, SnapshotStatus};
use super::store::{self, StoreError};
use crate::domain::Clock;
use crate::engine::{
    AuditError, Engine, EngineConfig, EngineConfigError, MemoryJournal, ReplayError,
};
use crate::export::ExportStatus;
use crate::journal::WalJournal;
use crate::recovery::{self, RecoveryError};

/// Why a snapshot was not taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TakeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot rebuild the state to snapshot")]
    Start(#[from] StartError),
    #[error("cannot replay the log into the snapshot's state")]
    Replay(#[from] RecoveryError),
    #[error("the snapshot's state breaks an invariant")]
    Audit(#[from] AuditError),
    #[error("snapshot {name} does not rebuild")]
    Restore {
        name: String,
        #[source]
        source: ReplayError,
    },
    #[error("cannot delete log segments before the older snapshot")]
    Retention(#[source] WalError),
    #[error("invalid engine settings")]
    EngineConfig(#[from] EngineConfigError),
}

impl TakeError {
    /// A short fixed name, for `/health`.
    pub fn kind(&self) -> &'static str {
        match self {
            TakeError::Store(error) => error.kind(),
            TakeError::Start(_) | TakeError::Replay(_) => "replay",
            TakeError::Audit(_) | TakeError::Restore { .. } | TakeError::EngineConfig(_) => "state",
            TakeError::Retention(_) => "retention",
        }
    }
}

/// What the snapshot thread needs.
pub struct Snapshotter {
    pub wal: Arc<Wal>,
    pub journal: Arc<WalJournal>,
    pub storage: Arc<dyn Storage>,
    pub dir: PathBuf,
    pub engine_config: EngineConfig,
    pub clock: Arc<dyn Clock>,
    pub status: Arc<SnapshotStatus>,
    pub metrics: SnapshotMetrics,
    /// With the exporter on: what it has exported (no segment holding a
    /// later record is deleted).
    pub exported: Option<ExportStatus>,
}

/// What one `take` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub seq: u64,
    pub path: PathBuf,
    pub file_bytes: u64,
    pub segments_deleted: usize,
}

impl Snapshotter {
    fn private_engine(&self) -> Result<Engine, TakeError> {
        let journal = Arc::new(MemoryJournal::default());
        Ok(Engine::new(
            self.engine_config.clone(),
            self.clock.clone(),
            journal,
        )?)
    }

    /// The newest valid snapshot restored into a private engine, or an
    /// empty one if there is none and the log starts at record 1.
    fn base(&self) -> Result<(Engine, Option<UsedSnapshot>), TakeError> {
        let found = store::list(self.storage.as_ref(), &self.dir)?;
        for (_, path) in found.iter().rev() {
            let Ok(bytes) = store::read_checked(self.storage.as_ref(), path) else {
                continue;
            };
            let Ok((meta, _)) = BodyReader::new(&bytes) else {
                continue;
            };
            if meta.log_id != self.journal.log_id()
                || meta.seq.saturating_add(1) < self.journal.first_seq()
            {
                continue;
            }
            let engine = self.private_engine()?;
            let name = path.display().to_string();
            // One thread: the serving engine needs the other cores.
            super::start::restore(&engine, &bytes, meta.seq, 1)
                .map_err(|source| TakeError::Restore { name, source })?;
            let used = UsedSnapshot {
                file_name: String::new(),
                seq: meta.seq,
                written_unix_ms: meta.written_unix_ms,
            };
            return Ok((engine, Some(used)));
        }
        if self.journal.first_seq() > 1 {
            return Err(StartError::Missing {
                log_start_seq: self.journal.first_seq(),
                newest_valid_covers: None,
            }
            .into());
        }
        Ok((self.private_engine()?, None))
    }

    /// Builds and writes a snapshot of every durable record, if there are
    /// records after the newest snapshot; then applies retention.
    pub fn take(&self) -> Result<Option<Taken>, TakeError> {
        let target_seq = self.journal.durable_seq();
        if target_seq <= self.status.seq() {
            return Ok(None);
        }
        let started = Instant::now();
        let (engine, base) = self.base()?;
        let after_seq = base.map_or(0, |used| used.seq);
        let records = self
            .journal
            .read_after(after_seq)
            .map_err(|error| RecoveryError::Read {
                after_seq,
                source: Box::new(error),
            })?
            .take_while(|item| item.as_ref().map_or(true, |(seq, _)| *seq <= target_seq));
        let replayed = recovery::replay_after(&engine, after_seq, records)?;
        engine.audit()?;
        let taken = self.write(&engine, replayed.last_seq, started)?;
        Ok(Some(taken))
    }

    /// At a start, before anything is served: writes a snapshot of the
    /// engine the start just rebuilt, if at least `interval_records`
    /// records follow the newest snapshot. Rebuilding one in the snapshot
    /// thread restarts from the previous snapshot and replays the log, so
    /// a server that keeps crashing sooner than that takes would never
    /// write one (its log, and each start, would keep growing); the
    /// started engine is the state at the log's end already, and encoding
    /// it costs a fraction of the start.
    pub fn take_of_started(
        &self,
        engine: &Engine,
        interval_records: u64,
    ) -> Result<Option<Taken>, TakeError> {
        let durable_seq = self.journal.durable_seq();
        // Only the state of exactly the durable log may be written.
        if self.records_since_snapshot() < interval_records
            || self.journal.last_seq() != durable_seq
        {
            return Ok(None);
        }
        let taken = self.write(engine, durable_seq, Instant::now())?;
        Ok(Some(taken))
    }

    /// Encodes `engine` (the state after record `seq`, which nobody else
    /// writes to) as the newest snapshot, then applies retention.
    fn write(&self, engine: &Engine, seq: u64, started: Instant) -> Result<Taken, TakeError> {
        let body = BodyMeta {
            log_id: self.journal.log_id(),
            seq,
            written_unix_ms: chrono::Utc::now().timestamp_millis(),
        };
        let bytes = format::encode_engine(&body, engine).map_err(StoreError::from)?;
        let written = store::write_bytes(self.storage.as_ref(), &self.dir, body.seq, &bytes)?;
        drop(bytes);
        let file = store::file_name(body.seq);
        self.status.set_newest(body.seq, file, body.written_unix_ms);
        self.metrics.snapshots_written_total.inc();
        self.metrics.observe_duration(started.elapsed());
        let segments_deleted = self.retain()?;
        Ok(Taken {
            seq: body.seq,
            path: written.path,
            file_bytes: written.file_bytes,
            segments_deleted,
        })
    }

    /// Deletes the log segments wholly before the older kept snapshot,
    /// before the first record not yet exported and before the first one
    /// not yet in the replicated stream.
    fn retain(&self) -> Result<usize, TakeError> {
        let found = store::list(self.storage.as_ref(), &self.dir)?;
        if found.len() < store::SNAPSHOTS_KEPT {
            return Ok(0);
        }
        let (older_seq, older) = &found[found.len() - store::SNAPSHOTS_KEPT];
        if let Err(error) = store::check(self.storage.as_ref(), older) {
            // A damaged older snapshot covers nothing: a start could not
            // fall back to it, so the log it covers must stay.
            let error = crate::error_chain(&error);
            tracing::warn!(%error, "older snapshot damaged; no log segment deleted");
            return Ok(0);
        }
        let older_seq = *older_seq;
        let mut below_seq = older_seq.saturating_add(1);
        if let Some(exported) = &self.exported {
            below_seq = below_seq.min(exported.last_exported_seq().saturating_add(1));
        }
        // Replication on: the owner publishes from its local log, so a
        // record not yet in the stream must stay.
        if let Some(gate) = self.journal.gate() {
            below_seq = below_seq.min(gate.replicated_seq().saturating_add(1));
        }
        self.wal
            .delete_segments_before(below_seq)
            .map_err(TakeError::Retention)
    }

    /// Durable records after the newest snapshot.
    pub fn records_since_snapshot(&self) -> u64 {
        self.journal.durable_seq().saturating_sub(self.status.seq())
    }

    /// Logs what a take (`what` names which) did; a failure is also
    /// counted and shown in `/health`, wherever the take ran. True if it
    /// failed.
    pub fn report(&self, what: &str, taken: Result<Option<Taken>, TakeError>) -> bool {
        match taken {
            Ok(Some(taken)) => {
                tracing::info!(
                    seq = taken.seq,
                    file_bytes = taken.file_bytes,
                    segments_deleted = taken.segments_deleted,
                    "{what} written"
                );
                false
            }
            Ok(None) => false,
            Err(error) => {
                self.metrics.snapshot_failures_total.inc();
                self.status.set_failure(error.kind());
                let error = crate::error_chain(&error);
                tracing::error!(%error, "{what} failed");
                true
            }
        }
    }

    /// Refreshes the gauges: disk use, the snapshot's age, records since.
    pub fn refresh_gauges(&self) {
        let m = &self.metrics;
        m.snapshot_seq.set(clamp(self.status.seq()));
        m.records_since_snapshot
            .set(clamp(self.records_since_snapshot()));
        let now_unix_ms = chrono::Utc::now().timestamp_millis();
        let age = self.status.written_unix_ms().map_or(0, |written| {
            now_unix_ms.saturating_sub(written).max(0) / 1000
        });
        m.snapshot_age_seconds.set(age);
        // The log's bytes are `metrics::Metrics::log_disk_bytes`, read at
        // each scrape.
        m.snapshot_disk_bytes
            .set(clamp(store::disk_bytes(self.storage.as_ref(), &self.dir)));
    }
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// How often the snapshot thread looks at the log.
pub const SNAPSHOT_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long the snapshot thread waits after a failure before trying again.
pub const SNAPSHOT_RETRY_INTERVAL: Duration = Duration::from_secs(10);

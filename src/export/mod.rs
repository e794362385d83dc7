//! The exactly-once export of log records to PostgreSQL, for analysts.
//!
//! Why it exists: analysts query PostgreSQL, not our files. The export runs
//! beside the HTTP path, never on it: it reads records that are already
//! durable and writes them in bounded batches on its own task, so a slow or
//! absent PostgreSQL only makes the export late, never a request slow.
//!
//! What it promises:
//! - Every durable record becomes its rows exactly once, in log order: each
//!   batch is copied (binary COPY) and the cursor `export_cursor.last_seq`
//!   moves in the same transaction, so a crash of either side at any point
//!   leaves either the whole batch with its cursor or neither. The next run
//!   resumes from the committed cursor.
//! - A gap in the log is an error, never skipped; a cursor that does not
//!   match the one this exporter expects (another exporter, a restored
//!   database) stops the batch before anything is written.
//! - One database holds the export of one log: the cursor carries the log's
//!   identity (`RecordSource::log_id`), and a database holding another
//!   log's export is refused (`ExportError::OtherLog`), never mixed into;
//!   the running exporter then stops and says so (`ExportState::Refused`).
//! - At shutdown the running exporter makes one last pass: everything
//!   durable when the shutdown begins is exported before it stops (within
//!   `launch::STOP_GRACE` in the server).
//! - Memory is bounded by `batch_records_max` records and their rows.
//! - PostgreSQL down or slow: retries with exponential backoff, the lag
//!   grows, nothing is lost. `ExportStatus::last_exported_seq` tells the
//!   server which log segments may be deleted.
//!
//! Layout: `source` (where records come from; `wal_source` reads the
//! write-ahead log), `rows` (records as rows), `copy` (binary COPY
//! writer), `schema` (versioned migrations), `batch` (one batch = one
//! transaction), `exporter` (the loop: cursor, backoff, refusal, last
//! pass, status; `backoff` its pauses), `status` (status for `/health`,
//! metrics), `launch` (how `serve` and `export` start it and stop it).

mod backoff;
pub mod batch;
pub mod copy;
pub mod exporter;
pub mod launch;
pub mod rows;
pub mod schema;
pub mod source;
pub mod status;
pub mod wal_source;

use std::path::PathBuf;
use std::time::Duration;

pub use exporter::{export_once, spawn_exporter, ExportReport};
pub use launch::{run_offline, start_in_server, RunningExporter};
pub use source::{MemorySource, RecordSource, SourceError};
pub use status::{ExportState, ExportStatus, ExportStatusSnapshot};
pub use wal_source::WalSource;

/// Largest accepted `batch_records_max`: a batch lives in memory whole.
pub const BATCH_RECORDS_MAX_LIMIT: usize = 1_000_000;

/// Settings of the exporter, with their units in their names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportConfig {
    /// `postgres://user@host:port/database` (libpq URL or key=value form).
    pub database_url: String,
    /// Pause between two catch-ups when the last one succeeded.
    pub interval: Duration,
    /// Records per batch (per transaction); bounds the exporter's memory.
    pub batch_records_max: usize,
    /// Written to `sales.total_items`; `items` gets this many rows per sale.
    pub items_per_sale: u32,
    /// Written to `sales.user_limit`.
    pub user_limit: u32,
    /// First pause after a failure; doubles on each further failure.
    pub retry_backoff_initial: Duration,
    pub retry_backoff_max: Duration,
    /// Longest wait for PostgreSQL: to connect, and to write one batch. A
    /// hung connection is dropped after it, and the batch retried.
    pub postgres_timeout: Duration,
}

impl ExportConfig {
    /// The defaults: every 5 s, batches of 50,000 records, backoff from
    /// 100 ms to 10 s, 60 s PostgreSQL timeout.
    pub fn new(database_url: impl Into<String>) -> ExportConfig {
        ExportConfig {
            database_url: database_url.into(),
            interval: Duration::from_secs(5),
            batch_records_max: 50_000,
            items_per_sale: 10_000,
            user_limit: 10,
            retry_backoff_initial: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(10),
            postgres_timeout: Duration::from_secs(60),
        }
    }

    pub fn validate(&self) -> Result<(), ExportError> {
        let invalid = |why: &str| Err(ExportError::Config(why.to_string()));
        self.database_url
            .parse::<tokio_postgres::Config>()
            .map_err(ExportError::DatabaseUrl)?;
        if self.batch_records_max == 0 || self.batch_records_max > BATCH_RECORDS_MAX_LIMIT {
            return invalid("batch_records_max must be 1 to 1,000,000");
        }
        if self.items_per_sale == 0 || i32::try_from(self.items_per_sale).is_err() {
            return invalid("items_per_sale must be 1 to 2^31-1");
        }
        if i32::try_from(self.user_limit).is_err() {
            return invalid("user_limit must be below 2^31");
        }
        if self.interval.is_zero() || self.retry_backoff_initial.is_zero() {
            return invalid("interval and retry_backoff_initial must be above zero");
        }
        if self.retry_backoff_max < self.retry_backoff_initial {
            return invalid("retry_backoff_max must be at least retry_backoff_initial");
        }
        if self.postgres_timeout.is_zero() {
            return invalid("postgres_timeout must be above zero");
        }
        Ok(())
    }
}

/// Why an export attempt failed. Everything but `Config`, `DatabaseUrl`,
/// `Metrics` and the refusals (`is_refusal`: `OtherLog`) is retried by the
/// running exporter; `NoLogDirectory`, `OpenLog` and `ExporterTask` come
/// only from `flashsale export`.
///
/// The texts of the variants read alone (in `/health`'s `last_error`)
/// carry their cause; those only `flashsale export` reports leave it to
/// the cause chain, which `main` prints.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// A setting out of its range (see `ExportConfig::validate`).
    #[error("invalid export configuration: {0}")]
    Config(String),
    #[error("invalid export configuration: database URL: {0}")]
    DatabaseUrl(#[source] tokio_postgres::Error),
    #[error("cannot register export metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("no tokio runtime to run the exporter on")]
    NoRuntime,
    #[error("no log directory at {}", .dir.display())]
    NoLogDirectory { dir: PathBuf },
    #[error("cannot open the log in {}", .dir.display())]
    OpenLog {
        dir: PathBuf,
        #[source]
        source: flashsale_wal::WalError,
    },
    #[error("PostgreSQL: {}", postgres_error_text(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("PostgreSQL did not answer within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Migration(#[from] schema::MigrationError),
    #[error(transparent)]
    Copy(#[from] copy::CopyError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    SeqOutOfRange(#[from] rows::SeqOutOfRange),
    /// The blocking thread reading the log panicked or was cancelled.
    #[error("the log reader thread failed: {0}")]
    ReaderThread(#[source] tokio::task::JoinError),
    /// A read panicked earlier and took the reader with it.
    #[error("the log reader was lost when an earlier read panicked")]
    ReaderLost,
    /// The exporter's task of `flashsale export` panicked.
    #[error("the exporter task failed")]
    ExporterTask(#[source] tokio::task::JoinError),
    #[error("log gap: expected record {expected}, the log gave {found:?}")]
    Gap { expected: u64, found: Option<u64> },
    #[error(
        "PostgreSQL has records up to {cursor} but the log ends at {durable}: wrong database or data directory?"
    )]
    CursorAhead { cursor: u64, durable: u64 },
    #[error("export cursor is {found:?}, expected {expected}: is another exporter running?")]
    CursorMoved { expected: u64, found: Option<i64> },
    /// The database holds the export of another log (`export_cursor.log_id`):
    /// exporting this one would mix two logs' records under one cursor.
    #[error(
        "PostgreSQL holds the export of log {database_log_id}, this log is {log_id}: refusing to mix two logs (wrong database or data directory?)"
    )]
    OtherLog {
        database_log_id: String,
        log_id: String,
    },
}

impl ExportError {
    /// Errors no retry can cure: the running exporter stops on them
    /// instead of backing off and trying again.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            ExportError::OtherLog { .. } | ExportError::Source(SourceError::NotRetained { .. })
        )
    }
}

/// A PostgreSQL error with its causes: `tokio_postgres::Error` displays only
/// its kind ("db error"), and the server's message is what an operator
/// reading `/health` needs.
pub fn postgres_error_text(error: &tokio_postgres::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    // Cause chains are short; the bound only guards against a cycle.
    for _ in 0..8 {
        let Some(cause) = source else {
            break;
        };
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_limits_are_checked() {
        let config = ExportConfig::new("postgres://postgres@127.0.0.1:5432/test");
        assert!(config.validate().is_ok());
        let bad = [
            ExportConfig {
                batch_records_max: 0,
                ..config.clone()
            },
            ExportConfig {
                items_per_sale: u32::MAX,
                ..config.clone()
            },
            ExportConfig {
                retry_backoff_max: Duration::from_millis(1),
                ..config.clone()
            },
        ];
        for config in bad {
            assert!(
                matches!(config.validate(), Err(ExportError::Config(_))),
                "{config:?}"
            );
        }
    }

    #[test]
    fn a_bad_database_url_keeps_the_parser_error_as_its_cause() {
        let config = ExportConfig::new("postgres://host:notaport/db");
        let error = config.validate().unwrap_err();
        assert!(matches!(error, ExportError::DatabaseUrl(_)), "{error}");
        assert!(error.to_string().contains("database URL"), "{error}");
        assert!(std::error::Error::source(&error).is_some());
    }
}

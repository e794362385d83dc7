//! The exporter: connect, migrate, read the cursor, then copy every durable
//! record in bounded batches; on any failure drop the connection, back off
//! and start again from the cursor PostgreSQL has committed.
//!
//! Why the cursor is re-read after every reconnection: a failure during
//! COMMIT leaves it unknown whether the last batch landed. PostgreSQL's
//! cursor is the only truth, so the in-memory copy is thrown away with the
//! connection and never trusted across one.
//!
//! Why a refusal ends the loop: a database that holds another log's export
//! stays so whatever the exporter waits for; retrying it would only hide,
//! behind a `retrying` state, that nothing will ever be exported.
//!
//! Why a last pass at shutdown: the records written since the last
//! interval would otherwise wait for the next start (or, if the log is
//! then moved elsewhere, for ever); exporting them takes seconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::Registry;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

use crate::engine::Record;
use crate::export::backoff::Backoff;
use crate::export::batch::{claim_cursor, write_batch, CursorMove, SaleSettings, TableRows};
use crate::export::rows::RowBatch;
use crate::export::schema::migrate;
use crate::export::status::{ExportMetrics, ExportState, ExportStatus};
use crate::export::{ExportConfig, ExportError, RecordSource};
use crate::shutdown::Shutdown;

/// `application_name` of the exporter's connections (unless the URL sets
/// one), so operators can find them in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "flashsale-export";

/// What one catch-up did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// The committed cursor when the catch-up started.
    pub cursor_before: u64,
    /// The committed cursor when it ended: every record up to it is in
    /// PostgreSQL.
    pub last_exported_seq: u64,
    pub records: u64,
    pub batches: u64,
    pub rows: TableRows,
}

/// Passes of the last catch-up at shutdown: a pass exports what was
/// durable when it began; another follows only if records became durable
/// meanwhile (requests admitted before the shutdown finishing).
const LAST_PASSES_MAX: usize = 3;

/// Starts the exporter on the current tokio runtime. It exports every
/// `config.interval` and retries failures with backoff. Once `shutdown`
/// begins it stops between two batches, exports everything durable at that
/// moment in a last pass, and ends with `Ok` (aborting the task is safe as
/// well: an unfinished batch rolls back). It ends early with the error
/// when the database refuses this log (`ExportError::is_refusal`), its
/// status then `Refused`.
pub fn spawn_exporter(
    config: ExportConfig,
    source: Box<dyn RecordSource>,
    registry: &Registry,
    shutdown: Shutdown,
) -> Result<(JoinHandle<Result<(), ExportError>>, ExportStatus), ExportError> {
    config.validate()?;
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| ExportError::NoRuntime)?;
    let metrics = ExportMetrics::register(registry)?;
    let status = ExportStatus::new(ExportState::Starting);
    let exporter = Exporter::new(config, source, status.clone(), metrics);
    let handle = runtime.spawn(exporter.run(shutdown));
    Ok((handle, status))
}

/// Exports everything durable when called, then returns: one attempt, no
/// retry (for `flashsale export --once`; running it again resumes from the
/// cursor, so a failed backfill is simply restarted).
pub async fn export_once(
    config: ExportConfig,
    source: Box<dyn RecordSource>,
) -> Result<ExportReport, ExportError> {
    config.validate()?;
    let metrics = ExportMetrics::register(&Registry::new())?;
    let status = ExportStatus::new(ExportState::Starting);
    let mut exporter = Exporter::new(config, source, status, metrics);
    exporter.catch_up(None).await
}

struct Exporter {
    config: ExportConfig,
    /// The source's `log_id`, read once: the identity of a log never
    /// changes.
    log_id: u128,
    /// `None` only while a blocking read holds it, or after that read
    /// panicked.
    source: Option<Box<dyn RecordSource>>,
    connection: Option<Connection>,
    status: ExportStatus,
    metrics: ExportMetrics,
}

struct Connection {
    client: Client,
    /// The cursor as committed in PostgreSQL, valid on this connection only.
    cursor: u64,
}

impl Exporter {
    fn new(
        config: ExportConfig,
        source: Box<dyn RecordSource>,
        status: ExportStatus,
        metrics: ExportMetrics,
    ) -> Exporter {
        Exporter {
            config,
            log_id: source.log_id(),
            source: Some(source),
            connection: None,
            status,
            metrics,
        }
    }

    async fn run(mut self, shutdown: Shutdown) -> Result<(), ExportError> {
        let mut backoff = Backoff::new(
            self.config.retry_backoff_initial,
            self.config.retry_backoff_max,
        );
        while !shutdown.is_begun() {
            let pause = match self.catch_up(Some(&shutdown)).await {
                Ok(_) => {
                    backoff.reset();
                    self.config.interval
                }
                Err(error) if error.is_refusal() => return Err(self.refuse(error)),
                Err(error) => {
                    self.metrics.count_error();
                    let pause = backoff.next_pause();
                    tracing::warn!(%error, retry_in_ms = pause.as_millis() as u64, "export failed");
                    self.status.set_state(ExportState::Retrying {
                        last_error: error.to_string(),
                    });
                    pause
                }
            };
            if sleep_unless_shutdown(&shutdown, pause).await {
                break;
            }
        }
        self.last_pass().await?;
        tracing::info!(
            last_exported_seq = self.status.last_exported_seq(),
            lag_records = self.status.lag_records(),
            "exporter stopped"
        );
        Ok(())
    }

    /// Exports what is durable now, once the shutdown has begun: one
    /// attempt, no retry (the server's grace bounds it anyway).
    async fn last_pass(&mut self) -> Result<(), ExportError> {
        for _ in 0..LAST_PASSES_MAX {
            let exported = match self.catch_up(None).await {
                Ok(report) => report.last_exported_seq,
                Err(error) if error.is_refusal() => return Err(self.refuse(error)),
                Err(error) => {
                    self.metrics.count_error();
                    tracing::warn!(%error, "the last export before stopping failed");
                    return Ok(());
                }
            };
            if self
                .durable_seq()
                .map_or(true, |durable| durable <= exported)
            {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Stops for good: says why in the status, the log and the metrics.
    fn refuse(&self, error: ExportError) -> ExportError {
        self.metrics.count_error();
        tracing::error!(%error, "export refused: the exporter stops");
        self.metrics.count_refusal();
        self.status.set_state(ExportState::Refused {
            reason: error.to_string(),
        });
        error
    }

    /// Exports every record durable at the start, batch by batch. Any error
    /// drops the connection, so the next attempt re-reads the cursor.
    async fn catch_up(&mut self, shutdown: Option<&Shutdown>) -> Result<ExportReport, ExportError> {
        let result = self.catch_up_connected(shutdown).await;
        match &result {
            Ok(_) => self.mark_success(),
            Err(_) => {
                self.connection = None;
                if let Ok(durable) = self.durable_seq() {
                    self.set_lag(durable, self.status.last_exported_seq());
                }
            }
        }
        result
    }

    async fn catch_up_connected(
        &mut self,
        shutdown: Option<&Shutdown>,
    ) -> Result<ExportReport, ExportError> {
        let target = self.durable_seq()?;
        let mut cursor = self.ensure_connected().await?;
        if cursor > target {
            return Err(ExportError::CursorAhead {
                cursor,
                durable: target,
            });
        }
        self.set_lag(target, cursor);
        let mut report = ExportReport {
            cursor_before: cursor,
            last_exported_seq: cursor,
            ..ExportReport::default()
        };
        while cursor < target && !shutdown.is_some_and(Shutdown::is_begun) {
            let (last_seq, rows) = self.export_batch(cursor).await?;
            report.records += last_seq - cursor;
            report.batches += 1;
            report.rows.add(rows);
            report.last_exported_seq = last_seq;
            cursor = last_seq;
            self.set_lag(self.durable_seq()?, cursor);
        }
        Ok(report)
    }

    /// Reads, maps and commits the records after `cursor`; returns the new
    /// cursor.
    async fn export_batch(&mut self, cursor: u64) -> Result<(u64, TableRows), ExportError> {
        let records = self.read_batch(cursor).await?;
        let last_seq = check_contiguous(cursor, &records)?;
        let rows = RowBatch::from_records(&records)?;
        drop(records);
        let settings = SaleSettings {
            items_per_sale: self.config.items_per_sale,
            user_limit: self.config.user_limit,
        };
        let timeout = self.config.postgres_timeout;
        let Some(connection) = self.connection.as_mut() else {
            unreachable!("catch_up connects before the first batch");
        };
        let cursor_move = CursorMove {
            log_id: self.log_id,
            from: cursor,
            to: last_seq,
        };
        let write = write_batch(&mut connection.client, cursor_move, &rows, settings);
        let written = tokio::time::timeout(timeout, write)
            .await
            .map_err(|_| ExportError::Timeout(timeout))??;
        connection.cursor = last_seq;
        self.status.set_last_exported_seq(last_seq);
        for (table, count) in written.by_table() {
            self.metrics.add_rows(table, count);
        }
        tracing::debug!(
            from_seq = cursor + 1,
            last_seq,
            rows = written.total(),
            "exported batch"
        );
        Ok((last_seq, written))
    }

    /// The live connection's cursor, connecting and migrating first if
    /// there is no live connection.
    async fn ensure_connected(&mut self) -> Result<u64, ExportError> {
        if let Some(connection) = &self.connection {
            if !connection.client.is_closed() {
                return Ok(connection.cursor);
            }
        }
        self.connection = None;
        let timeout = self.config.postgres_timeout;
        let log_id = self.log_id;
        let setup = async {
            let mut client = connect(&self.config.database_url, timeout).await?;
            migrate(&mut client).await?;
            let cursor = claim_cursor(&client, log_id).await?;
            Ok::<_, ExportError>((client, cursor))
        };
        let (client, cursor) = tokio::time::timeout(timeout, setup)
            .await
            .map_err(|_| ExportError::Timeout(timeout))??;
        tracing::info!(cursor, "export connected to PostgreSQL");
        self.status.set_last_exported_seq(cursor);
        self.connection = Some(Connection { client, cursor });
        Ok(cursor)
    }

    /// Reads on a blocking thread: the source may read files.
    async fn read_batch(&mut self, cursor: u64) -> Result<Vec<(u64, Record)>, ExportError> {
        let mut source = self.source.take().ok_or(ExportError::ReaderLost)?;
        let records_max = self.config.batch_records_max;
        let (source, result) = tokio::task::spawn_blocking(move || {
            let result = source.read_batch(cursor, records_max);
            (source, result)
        })
        .await
        .map_err(ExportError::ReaderThread)?;
        self.source = Some(source);
        Ok(result?)
    }

    fn durable_seq(&self) -> Result<u64, ExportError> {
        let source = self.source.as_ref().ok_or(ExportError::ReaderLost)?;
        Ok(source.durable_seq())
    }

    fn set_lag(&self, durable: u64, cursor: u64) {
        let lag = durable.saturating_sub(cursor);
        self.status.set_lag_records(lag);
        self.metrics.set_lag_records(lag);
    }

    fn mark_success(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs() as i64);
        self.status.set_last_success_unix_seconds(now);
        self.metrics.set_last_success_unix_seconds(now);
        self.status.set_state(ExportState::Running);
    }
}

/// The last sequence number of `records`, if they continue `cursor`
/// without a gap.
fn check_contiguous(cursor: u64, records: &[(u64, Record)]) -> Result<u64, ExportError> {
    let mut expected = cursor + 1;
    for (seq, _) in records {
        if *seq != expected {
            return Err(ExportError::Gap {
                expected,
                found: Some(*seq),
            });
        }
        expected += 1;
    }
    if records.is_empty() {
        return Err(ExportError::Gap {
            expected,
            found: None,
        });
    }
    Ok(expected - 1)
}

async fn connect(database_url: &str, timeout: Duration) -> Result<Client, ExportError> {
    let mut config: tokio_postgres::Config =
        database_url.parse().map_err(ExportError::DatabaseUrl)?;
    if config.get_application_name().is_none() {
        config.application_name(APPLICATION_NAME);
    }
    config.connect_timeout(timeout);
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "export connection closed");
        }
    });
    Ok(client)
}

/// Sleeps for `pause`; returns true, early, once `shutdown` has begun.
async fn sleep_unless_shutdown(shutdown: &Shutdown, pause: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(pause) => false,
        () = shutdown.wait() => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::source::unknown_code_purchase;

    fn records(seqs: &[u64]) -> Vec<(u64, Record)> {
        let record = unknown_code_purchase(1);
        seqs.iter().map(|seq| (*seq, record.clone())).collect()
    }

    #[test]
    fn batches_must_continue_the_cursor_without_gaps() {
        assert_eq!(check_contiguous(4, &records(&[5, 6, 7])).unwrap(), 7);
        assert!(matches!(
            check_contiguous(4, &records(&[6, 7])),
            Err(ExportError::Gap {
                expected: 5,
                found: Some(6)
            })
        ));
        assert!(matches!(
            check_contiguous(4, &records(&[5, 7])),
            Err(ExportError::Gap {
                expected: 6,
                found: Some(7)
            })
        ));
        assert!(matches!(
            check_contiguous(4, &records(&[])),
            Err(ExportError::Gap {
                expected: 5,
                found: None
            })
        ));
    }

    #[tokio::test]
    async fn sleep_ends_early_on_shutdown() {
        let shutdown = Shutdown::new();
        let sleeper = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { sleep_unless_shutdown(&shutdown, Duration::from_secs(3600)).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        shutdown.begin();
        assert!(sleeper.await.unwrap());
    }

    #[tokio::test]
    async fn sleep_ends_at_its_pause_without_shutdown() {
        let shutdown = Shutdown::new();
        assert!(!sleep_unless_shutdown(&shutdown, Duration::from_millis(1)).await);
    }
}

//! The exporter as the two commands launch it: beside the HTTP server
//! (`flashsale serve --database-url`) and offline (`flashsale export`).
//!
//! This is the only part of `export` that knows the command-line settings
//! and the write-ahead log's directory; everything else sees an
//! `ExportConfig` and a `RecordSource`.
//!
//! What it promises: the exporter beside the server stops when the server's
//! one `Shutdown` begins, after a last pass that exports everything durable
//! at that moment (`RunningExporter::join` waits for that, `STOP_GRACE` at
//! most); the offline command closes the log it opened whatever the outcome
//! of the export, and fails (non-zero exit) when the database refuses the
//! log.

use std::sync::Arc;
use std::time::Duration;

use flashsale_wal::{Wal, WalConfig};
use prometheus::Registry;
use tokio::task::JoinHandle;

use crate::config::{ExportArgs, ServeArgs, StoreArgs};
use crate::export::{
    export_once, spawn_exporter, ExportConfig, ExportError, ExportStatus, RecordSource, WalSource,
};
use crate::shutdown::{self, Shutdown};

/// How long `join` lets the exporter's last pass run before aborting it (an
/// aborted batch rolls back; its records stay in the log and are exported
/// at the next start). The last pass exports what accumulated since the
/// previous pass: one `--export-interval` of records (5 s by default), a
/// few tens of thousands under a flash sale's load, which binary COPY
/// writes in a few seconds. 20 s leaves room for a slow PostgreSQL while
/// the whole stop stays within a 30 s termination grace of an orchestrator
/// when requests drain fast.
pub const STOP_GRACE: Duration = Duration::from_secs(20);

/// The exporter running on its own task beside the server.
pub struct RunningExporter {
    handle: JoinHandle<Result<(), ExportError>>,
    status: ExportStatus,
}

impl RunningExporter {
    /// Starts `source`'s exporter on the current runtime; it stops once
    /// `shutdown` begins (after its last pass) or when the database
    /// refuses the log.
    pub fn start(
        config: ExportConfig,
        source: Box<dyn RecordSource>,
        registry: &Registry,
        shutdown: Shutdown,
    ) -> Result<RunningExporter, ExportError> {
        let (handle, status) = spawn_exporter(config, source, registry, shutdown)?;
        Ok(RunningExporter { handle, status })
    }

    /// Progress, for `/health` and for deciding which log segments may go:
    /// only segments whose records are all at or below
    /// `status().last_exported_seq()` are exported.
    pub fn status(&self) -> ExportStatus {
        self.status.clone()
    }

    /// The status as JSON, for `/health`.
    pub fn status_fn(&self) -> Arc<dyn Fn() -> serde_json::Value + Send + Sync> {
        let status = self.status.clone();
        Arc::new(move || serde_json::to_value(status.snapshot()).unwrap_or_default())
    }

    /// Waits for the exporter to stop, which it does after its last pass
    /// once the `Shutdown` given to `start_in_server` has begun (the caller
    /// begins it; `join` signals nothing), or at once if it was refused.
    /// Aborts the task after `STOP_GRACE`.
    pub async fn join(self) {
        let RunningExporter { mut handle, .. } = self;
        match tokio::time::timeout(STOP_GRACE, &mut handle).await {
            Ok(Ok(Ok(()))) => {}
            // Logged, counted and shown in the status when it happened.
            Ok(Ok(Err(error))) => tracing::info!(%error, "the exporter had stopped"),
            Ok(Err(error)) => tracing::error!(%error, "the exporter task failed"),
            Err(_elapsed) => {
                tracing::warn!("exporter did not stop in time; aborting its batch");
                handle.abort();
            }
        }
    }
}

fn export_config(database_url: &str, store: &StoreArgs, interval_seconds: u64) -> ExportConfig {
    ExportConfig {
        interval: Duration::from_secs(interval_seconds),
        items_per_sale: store.items_per_sale,
        user_limit: store.user_limit,
        ..ExportConfig::new(database_url)
    }
}

/// Starts the exporter of the server's log on the current runtime; it stops
/// once `shutdown` begins.
pub fn start_in_server(
    database_url: &str,
    args: &ServeArgs,
    wal: Arc<Wal>,
    registry: &Registry,
    shutdown: Shutdown,
) -> Result<RunningExporter, ExportError> {
    let config = export_config(database_url, &args.store, args.export_interval);
    let source = Box::new(WalSource::new(wal));
    let exporter = RunningExporter::start(config, source, registry, shutdown)?;
    tracing::info!(interval_seconds = args.export_interval, "exporter started");
    Ok(exporter)
}

/// `flashsale export`: exports the log in `DATA_DIR/wal/` of a stopped
/// server. With `--once`, exports what is there and returns; otherwise
/// follows the log until SIGINT/SIGTERM.
pub async fn run_offline(args: ExportArgs) -> Result<(), ExportError> {
    let dir = args.store.wal_dir();
    if !dir.is_dir() {
        return Err(ExportError::NoLogDirectory { dir });
    }
    let wal =
        Wal::open(WalConfig::new(&dir)).map_err(|source| ExportError::OpenLog { dir, source })?;
    let wal = Arc::new(wal);
    let config = export_config(&args.database_url, &args.store, args.export_interval);
    let result = if args.once {
        export_log_once(config, Arc::clone(&wal)).await
    } else {
        follow_log(config, Arc::clone(&wal)).await
    };
    wal.close();
    result
}

async fn export_log_once(config: ExportConfig, wal: Arc<Wal>) -> Result<(), ExportError> {
    let report = export_once(config, Box::new(WalSource::new(wal))).await?;
    tracing::info!(
        from_seq = report.cursor_before + 1,
        last_exported_seq = report.last_exported_seq,
        records = report.records,
        rows = report.rows.total(),
        "export done"
    );
    Ok(())
}

/// Exports as the log grows, until SIGINT/SIGTERM; then lets the last pass
/// finish, however long it takes. A refusal ends it at once, with the error.
async fn follow_log(config: ExportConfig, wal: Arc<Wal>) -> Result<(), ExportError> {
    let stop = shutdown::signal();
    let shutdown = Shutdown::new();
    let source = Box::new(WalSource::new(wal));
    let (mut handle, status) = spawn_exporter(config, source, &Registry::new(), shutdown.clone())?;
    let ended = tokio::select! {
        () = stop => None,
        ended = &mut handle => Some(ended),
    };
    let ended = match ended {
        Some(ended) => ended,
        None => {
            tracing::info!("signal received: stopping the export");
            shutdown.begin();
            handle.await
        }
    };
    ended.map_err(ExportError::ExporterTask)??;
    tracing::info!(
        last_exported_seq = status.last_exported_seq(),
        "export stopped"
    );
    Ok(())
}

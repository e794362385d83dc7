//! The exporter as the two commands launch it: beside the HTTP server
//! (`flashsale serve --database-url`) and offline (`flashsale export`).
//!
//! This is the only part of `export` that knows the command-line settings
//! and the write-ahead log's directory; everything else sees an
//! `ExportConfig` and a `RecordSource`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use flashsale_wal::{Wal, WalConfig};
use prometheus::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{ExportArgs, ServeArgs, StoreArgs};
use crate::export::{
    export_once, spawn_exporter, ExportConfig, ExportError, ExportStatus, WalSource,
};

/// How long `stop` lets a batch in flight finish before aborting it (an
/// aborted batch rolls back and is exported again next time).
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// The exporter running on its own task beside the server.
pub struct RunningExporter {
    handle: JoinHandle<()>,
    status: ExportStatus,
    shutdown: watch::Sender<bool>,
}

impl RunningExporter {
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

    /// Stops between two batches; aborts after `STOP_GRACE`.
    pub async fn stop(self) {
        let RunningExporter {
            mut handle,
            shutdown,
            ..
        } = self;
        // The receiver lives in the task; if it is gone, so is the task.
        let _ = shutdown.send(true);
        if tokio::time::timeout(STOP_GRACE, &mut handle).await.is_err() {
            tracing::warn!("exporter did not stop in time; aborting its batch");
            handle.abort();
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

/// Starts the exporter of the server's log on the current runtime.
pub fn start_in_server(
    database_url: &str,
    args: &ServeArgs,
    wal: Arc<Wal>,
    registry: &Registry,
) -> Result<RunningExporter, ExportError> {
    let config = export_config(database_url, &args.store, args.export_interval);
    let (shutdown, receiver) = watch::channel(false);
    let source = Box::new(WalSource::new(wal));
    let (handle, status) = spawn_exporter(config, source, registry, receiver)?;
    tracing::info!(interval_seconds = args.export_interval, "exporter started");
    Ok(RunningExporter {
        handle,
        status,
        shutdown,
    })
}

/// `flashsale export`: exports the log in `DATA_DIR/wal/` of a stopped
/// server. With `--once`, exports what is there and returns; otherwise
/// follows the log until SIGINT/SIGTERM.
pub async fn run_offline(args: ExportArgs) -> anyhow::Result<()> {
    let dir = args.store.wal_dir();
    anyhow::ensure!(dir.is_dir(), "no log directory at {}", dir.display());
    let wal = Wal::open(WalConfig::new(&dir))
        .with_context(|| format!("cannot open the log in {}", dir.display()))?;
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

async fn export_log_once(config: ExportConfig, wal: Arc<Wal>) -> anyhow::Result<()> {
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

async fn follow_log(config: ExportConfig, wal: Arc<Wal>) -> anyhow::Result<()> {
    let (shutdown, receiver) = watch::channel(false);
    let source = Box::new(WalSource::new(wal));
    let (handle, status) = spawn_exporter(config, source, &Registry::new(), receiver)?;
    wait_for_signal().await?;
    tracing::info!("signal received: stopping the export");
    let _ = shutdown.send(true);
    handle.await.context("the exporter task failed")?;
    tracing::info!(
        last_exported_seq = status.last_exported_seq(),
        "export stopped"
    );
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot listen for SIGINT"),
        _ = terminate.recv() => Ok(()),
    }
}

//! Start and stop of `flashsale serve`: open the log, replay it into a new
//! engine, audit, start the exporter and the HTTP server; on SIGTERM or
//! SIGINT stop accepting, finish requests in flight, make the log durable.
//!
//! `Application::build` binds before it returns, so tests can ask for port
//! 0 and read the real port with `Application::port`.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use flashsale_wal::{FsStorage, Storage, SyncMode, Wal, WalConfig};

use crate::config::{ServeArgs, StoreArgs, PAST_SALES_RETAINED_HOURS};
use crate::domain::SystemClock;
use crate::engine::{Engine, EngineConfig};
use crate::http::{self, AppState};
use crate::journal::WalJournal;
use crate::metrics::Metrics;
use crate::recovery;
use crate::service::Service;

pub struct Application {
    server: actix_web::dev::Server,
    port: u16,
    service: Arc<Service>,
    exporter: Option<crate::export::RunningExporter>,
    shutdown: crate::shutdown::Shutdown,
}

/// The engine's settings from the command line.
fn engine_config(store: &StoreArgs) -> EngineConfig {
    EngineConfig {
        items_per_sale: store.items_per_sale,
        user_limit: store.user_limit,
        past_sales_retained_hours: PAST_SALES_RETAINED_HOURS,
        ..EngineConfig::default()
    }
}

/// Opens the log in `DATA_DIR/wal/` (creating it) on `storage`, with the
/// log's metrics when given.
fn open_wal(
    store: &StoreArgs,
    sync_mode: SyncMode,
    storage: Arc<dyn Storage>,
    metrics: Option<&Arc<Metrics>>,
) -> anyhow::Result<Arc<Wal>> {
    let dir = store.wal_dir();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create log directory {}", dir.display()))?;
    let mut config = WalConfig::new(&dir);
    config.sync_mode = sync_mode;
    config.observer = metrics.map(|m| m.wal.clone() as Arc<dyn flashsale_wal::WalObserver>);
    let wal = Wal::open_with_storage(config, storage)
        .with_context(|| format!("cannot open the log in {}", dir.display()))?;
    Ok(Arc::new(wal))
}

impl Application {
    pub async fn build(args: ServeArgs) -> anyhow::Result<Application> {
        Application::build_on_storage(args, Arc::new(FsStorage)).await
    }

    /// `build` with the log on the given file layer: the real one, or in
    /// tests one that fails writes on purpose.
    pub async fn build_on_storage(
        args: ServeArgs,
        storage: Arc<dyn Storage>,
    ) -> anyhow::Result<Application> {
        let metrics = Arc::new(Metrics::new().context("cannot register metrics")?);
        let sync_mode = if args.unsafe_no_fsync {
            tracing::warn!(
                "--unsafe-no-fsync: acknowledged records can be lost on a crash (benchmarks only)"
            );
            SyncMode::UnsafeNoSync
        } else {
            SyncMode::Fdatasync
        };
        let wal = open_wal(&args.store, sync_mode, storage, Some(&metrics))?;
        let clock = Arc::new(SystemClock {
            offset_seconds: args.clock_offset_seconds,
        });
        let journal = Arc::new(WalJournal::new(wal.clone()));
        let engine = Arc::new(Engine::new(engine_config(&args.store), clock, journal)?);
        replay(&engine, &wal)?;

        let service = Arc::new(Service::new(
            engine,
            wal.clone(),
            metrics.clone(),
            args.write_requests_in_flight_max as usize,
        ));
        let shutdown = crate::shutdown::Shutdown::new();
        let exporter = match &args.database_url {
            Some(url) => Some(crate::export::start_in_server(
                url,
                &args,
                wal.clone(),
                &metrics.registry,
                shutdown.clone(),
            )?),
            None => None,
        };
        let export_status = exporter.as_ref().map(|e| e.status_fn());
        let state = Arc::new(AppState::new(service.clone(), metrics, export_status));

        let listener = TcpListener::bind(args.listen)
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let port = listener.local_addr()?.port();
        let workers = match args.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => usize::from(n),
        };
        let server = http::serve(listener, state, workers)?;
        tracing::info!(address = %args.listen, port, workers, "serving");
        Ok(Application {
            server,
            port,
            service,
            exporter,
            shutdown,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let service = self.service.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received: refusing new writes, finishing requests in flight");
            service.begin_shutdown();
            handle.stop(true).await;
        });
        self.server.await.context("HTTP server failed")?;
        if let Some(exporter) = self.exporter {
            self.shutdown.begin();
            exporter.join().await;
        }
        let wal = self.service.wal();
        wal.close();
        if let Some(reason) = wal.failure() {
            anyhow::bail!("the log failed before shutdown: {reason}");
        }
        tracing::info!(
            durable_seq = wal.durable_seq(),
            "stopped; the log is durable"
        );
        Ok(())
    }
}

/// Rebuilds the engine from every record in the log, then audits it.
fn replay(engine: &Engine, wal: &Wal) -> anyhow::Result<()> {
    let started = Instant::now();
    let records = wal
        .read_from(wal.first_seq())
        .context("cannot read the log")?
        .map(|item| {
            let item = item.map_err(|error| anyhow::anyhow!("{error}"))?;
            let seq = item.seq;
            let record = crate::journal::decode(&item.payload)
                .with_context(|| format!("log record {seq} cannot be decoded"))?;
            Ok::<_, anyhow::Error>((seq, record))
        });
    let report = recovery::replay(engine, records).context("replay of the log failed")?;
    let audit = engine
        .audit()
        .context("the replayed state breaks an invariant; refusing to start")?;
    tracing::info!(
        records = report.records,
        elapsed_ms = started.elapsed().as_millis() as u64,
        ?audit,
        "log replayed and audited"
    );
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

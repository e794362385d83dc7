//! Start and stop of `flashsale serve`: open the log, recover the engine
//! from it, start the exporter and the HTTP server; when the shutdown
//! future completes, stop the parts in the order that keeps every promise.
//!
//! `Application::build` binds before it returns, so tests can ask for port
//! 0 and read the real port with `Application::port`.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use flashsale_wal::{FsStorage, Storage, SyncMode, Wal, WalConfig, WalError};

use crate::config::{ReplicationArgs, ServeArgs, StoreArgs};
use crate::domain::{Clock, SystemClock};
use crate::engine::{Engine, EngineConfig, EngineConfigError};
use crate::export::{ExportError, RunningExporter};
use crate::http::{self, AppState};
use crate::journal::WalJournal;
use crate::limits::{LimitSettings, Limits};
use crate::metrics::Metrics;
use crate::recovery::RecoveryError;
use crate::replication::gate::CommitGate;
use crate::replication::node::{self, NodeHandle, NodeParts, NodeSettings};
use crate::service::Service;
use crate::shutdown::Shutdown;
use crate::snapshot::{SnapshotMetrics, SnapshotStatus, SnapshotThread, Snapshotter, StartError};

/// Why the server could not start, or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    #[error("cannot register metrics")]
    Metrics(#[source] prometheus::Error),
    #[error("cannot create log directory {}", dir.display())]
    CreateLogDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the log in {}", dir.display())]
    OpenLog {
        dir: PathBuf,
        #[source]
        source: WalError,
    },
    #[error("invalid engine settings")]
    EngineConfig(#[from] EngineConfigError),
    #[error("cannot recover the engine from the log")]
    Recovery(#[from] RecoveryError),
    #[error("cannot start from the snapshots and the log")]
    Start(#[from] StartError),
    #[error("cannot start the snapshot thread")]
    SnapshotThread(#[source] std::io::Error),
    #[error("cannot start the replication thread")]
    ReplicationThread(#[source] std::io::Error),
    #[error("cannot start the exporter")]
    Export(#[from] ExportError),
    #[error("cannot turn identity on")]
    Identity(#[from] crate::identity::IdentityError),
    #[error("cannot listen on {address}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP server failed")]
    Http(#[source] std::io::Error),
    #[error("the log failed before shutdown: {reason}")]
    LogFailed { reason: String },
}

pub struct Application {
    server: actix_web::dev::Server,
    port: u16,
    journal: Arc<WalJournal>,
    exporter: Option<RunningExporter>,
    shutdown: Shutdown,
    unsafe_no_fsync: bool,
    snapshotter: Arc<Snapshotter>,
    snapshot_thread: SnapshotThread,
    replication_node: Option<NodeHandle>,
}

/// The engine's settings from the command line; the rest are the engine's
/// defaults (one definition, in `engine::config`).
fn engine_config(store: &StoreArgs) -> EngineConfig {
    EngineConfig {
        items_per_sale: store.items_per_sale,
        user_limit: store.user_limit,
        ..EngineConfig::default()
    }
}

/// Opens the log in `DATA_DIR/wal/` (creating it) on `storage`, reporting
/// to the log's metrics.
fn open_wal(
    store: &StoreArgs,
    sync_mode: SyncMode,
    segment_bytes: u64,
    commit_delay_max: Duration,
    storage: Arc<dyn Storage>,
    metrics: &Metrics,
) -> Result<Arc<Wal>, ServerError> {
    let dir = store.wal_dir();
    std::fs::create_dir_all(&dir).map_err(|source| ServerError::CreateLogDir {
        dir: dir.clone(),
        source,
    })?;
    let mut config = WalConfig::new(&dir);
    config.sync_mode = sync_mode;
    set_segment_bytes(&mut config, segment_bytes);
    config.commit_delay_max = commit_delay_max;
    config.observer = Some(metrics.wal.clone() as Arc<dyn flashsale_wal::WalObserver>);
    let wal = Wal::open_with_storage(config, storage)
        .map_err(|source| ServerError::OpenLog { dir, source })?;
    Ok(Arc::new(wal))
}

fn sync_mode_of(args: &ServeArgs) -> SyncMode {
    if args.unsafe_no_fsync {
        SyncMode::UnsafeNoSync
    } else {
        SyncMode::Fdatasync
    }
}

/// `sync_mode_of`, warning once at start when it is unsafe.
fn sync_mode(args: &ServeArgs) -> SyncMode {
    if args.unsafe_no_fsync {
        tracing::warn!(
            "--unsafe-no-fsync: acknowledged records can be lost on a crash (benchmarks only)"
        );
    }
    sync_mode_of(args)
}

/// `--log-segment-bytes`: a small segment (retention at small volumes)
/// also gets smaller batches, which must fit in it; records are at most
/// `RECORD_BYTES_MAX` anyway.
fn set_segment_bytes(config: &mut WalConfig, segment_bytes: u64) {
    config.segment_size_max_bytes = segment_bytes;
    let batch_fit_bytes = usize::try_from(segment_bytes / 4).unwrap_or(usize::MAX);
    if batch_fit_bytes < config.batch_bytes_max {
        config.batch_bytes_max = batch_fit_bytes;
        config.record_size_max_bytes = crate::journal::RECORD_BYTES_MAX as u32;
    }
}

/// The log, its journal, the engine recovered from them, and what the
/// snapshot thread needs.
struct Recovered {
    wal: Arc<Wal>,
    journal: Arc<WalJournal>,
    engine: Arc<Engine>,
    config: EngineConfig,
    clock: Arc<dyn Clock>,
    status: Arc<SnapshotStatus>,
}

fn recover_engine(
    args: &ServeArgs,
    storage: Arc<dyn Storage>,
    metrics: &Metrics,
    gate: Option<Arc<CommitGate>>,
) -> Result<Recovered, ServerError> {
    let wal = open_wal(
        &args.store,
        sync_mode(args),
        args.log_segment_bytes,
        Duration::from_micros(args.commit_delay_max_us),
        Arc::clone(&storage),
        metrics,
    )?;
    let journal = Arc::new(WalJournal::with_gate(Arc::clone(&wal), gate));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock {
        offset_seconds: args.clock_offset_seconds,
    });
    let config = EngineConfig {
        users_per_sale_max: args.limits.users_per_sale_max,
        ..engine_config(&args.store)
    };
    let new_engine = || Engine::new(config.clone(), clock.clone(), journal.clone());
    let dir = crate::snapshot::dir_in(&args.store.data_dir);
    let started = crate::snapshot::start(&new_engine, &journal, storage.as_ref(), &dir)?;
    tracing::info!(
        snapshot = started.snapshot.as_ref().map_or("none", |used| used.file_name.as_str()),
        snapshot_seq = started.snapshot.as_ref().map_or(0, |used| used.seq),
        skipped = ?started.skipped,
        records = started.tail.records,
        elapsed_ms = started.elapsed.as_millis() as u64,
        snapshot_load_ms = started.phases.snapshot_load.as_millis() as u64,
        restore_ms = started.phases.restore.as_millis() as u64,
        tail_replay_ms = started.phases.tail_replay.as_millis() as u64,
        audit_ms = started.phases.audit.as_millis() as u64,
        audit_sales = started.audited.sales,
        audit_items_sold = started.audited.items_sold,
        audit_users = started.audited.users,
        audit_open_carts = started.audited.open_carts,
        audit_purchases = started.audited.purchases,
        "state rebuilt from the newest valid snapshot (if any) and the log after it; audited"
    );
    let status = Arc::new(SnapshotStatus::default());
    if let Some(used) = &started.snapshot {
        status.set_newest(used.seq, used.file_name.clone(), used.written_unix_ms);
    }
    Ok(Recovered {
        wal,
        journal,
        engine: Arc::new(started.engine),
        config,
        clock,
        status,
    })
}

impl Application {
    pub async fn build(args: ServeArgs) -> Result<Application, ServerError> {
        Application::build_on_storage(args, Arc::new(FsStorage)).await
    }

    /// `build` with the log on the given file layer: the real one, or in
    /// tests one that fails writes on purpose.
    pub async fn build_on_storage(
        args: ServeArgs,
        storage: Arc<dyn Storage>,
    ) -> Result<Application, ServerError> {
        let metrics = Arc::new(Metrics::new().map_err(ServerError::Metrics)?);
        metrics.set_log(&args.store.wal_dir(), args.unsafe_no_fsync);
        let identity = crate::identity::start(&args.auth)?;
        let replication = replication_settings(&args.replication);
        let gate = replication.as_ref().map(|settings| {
            Arc::new(CommitGate::new(
                settings.node_id.clone(),
                settings.stream.clone(),
            ))
        });
        let recovered = recover_engine(&args, Arc::clone(&storage), &metrics, gate.clone())?;
        let journal = Arc::clone(&recovered.journal);
        let shutdown = Shutdown::new();
        let service = Arc::new(
            Service::new(
                Arc::clone(&recovered.engine),
                journal.clone(),
                metrics.clone(),
                shutdown.clone(),
                args.write_requests_in_flight_max as usize,
            )
            .with_sync_mode(sync_mode_of(&args))
            .with_snapshots(Arc::clone(&recovered.status)),
        );
        let exporter = match &args.database_url {
            Some(url) => Some(crate::export::start_in_server(
                url,
                &args,
                Arc::clone(&recovered.wal),
                &metrics.registry,
                shutdown.clone(),
            )?),
            None => None,
        };
        let export_status = exporter.as_ref().map(RunningExporter::status_fn);
        let (snapshotter, snapshot_thread) =
            start_snapshots(&recovered, storage, &args, &metrics, exporter.as_ref())?;
        let replication_node = start_replication(replication, gate, &recovered)?;
        let limits = Arc::new(Limits::new(&LimitSettings::from_args(&args.limits)));
        Limits::spawn_cleaner(&limits);
        let state = Arc::new(
            AppState::new(service, metrics, export_status)
                .with_limits(limits)
                .with_identity(identity),
        );
        let listen_error = |source| ServerError::Listen {
            address: args.listen,
            source,
        };
        let listener = TcpListener::bind(args.listen).map_err(listen_error)?;
        let port = listener.local_addr().map_err(listen_error)?.port();
        let workers = match args.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => usize::from(n),
        };
        let server = http::serve(listener, state, workers).map_err(listen_error)?;
        tracing::info!(address = %args.listen, port, workers, "serving");
        Ok(Application {
            server,
            port,
            journal,
            exporter,
            shutdown,
            unsafe_no_fsync: args.unsafe_no_fsync,
            snapshotter,
            snapshot_thread,
            replication_node,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `stop` completes (or the server fails), then stops the
    /// parts in order: refuse new writes; let admitted requests finish and
    /// be answered (within the grace period); let the exporter finish its
    /// batch; make the log durable and close it.
    pub async fn run(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let Application {
            server,
            journal,
            exporter,
            shutdown,
            unsafe_no_fsync,
            snapshotter,
            snapshot_thread,
            replication_node,
            ..
        } = self;
        let handle = server.handle();
        let stopper = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                tokio::select! {
                    () = stop => {}
                    () = shutdown.wait() => {}
                }
                tracing::info!("stopping: refusing new writes, finishing requests in flight");
                shutdown.begin();
                handle.stop(true).await;
            }
        });
        let served = server.await;
        shutdown.begin();
        stopper.abort();
        if let Some(exporter) = exporter {
            exporter.join().await;
        }
        // Answers in flight waited for the stream; now nothing waits.
        if let Some(node) = replication_node {
            node.stop();
        }
        journal.close();
        snapshot_thread.stop();
        take_final_snapshot(&snapshotter);
        served.map_err(ServerError::Http)?;
        if let Some(reason) = journal.failure() {
            return Err(ServerError::LogFailed { reason });
        }
        if unsafe_no_fsync {
            tracing::warn!(
                last_seq = journal.last_seq(),
                "stopped; the log was never fsynced (--unsafe-no-fsync): a power loss can still lose records"
            );
        } else {
            tracing::info!(
                durable_seq = journal.durable_seq(),
                "stopped; the log is durable"
            );
        }
        Ok(())
    }
}

/// The replication thread, when replication is on.
fn start_replication(
    settings: Option<NodeSettings>,
    gate: Option<Arc<CommitGate>>,
    recovered: &Recovered,
) -> Result<Option<NodeHandle>, ServerError> {
    let (Some(settings), Some(gate)) = (settings, gate) else {
        return Ok(None);
    };
    tracing::info!(node_id = %settings.node_id, stream = %settings.stream,
        "replication on: following the stream until this node owns the writes");
    let parts = NodeParts {
        wal: Arc::clone(&recovered.wal),
        engine: Arc::clone(&recovered.engine),
        gate,
    };
    let handle = node::start(settings, parts).map_err(ServerError::ReplicationThread)?;
    Ok(Some(handle))
}

/// The replication thread's settings, when `--replicate-to` is given.
fn replication_settings(args: &ReplicationArgs) -> Option<NodeSettings> {
    if args.replicate_to.is_empty() {
        return None;
    }
    Some(NodeSettings {
        urls: args.replicate_to.clone(),
        node_id: args.node_id.clone().unwrap_or_else(host_name),
        stream: args.stream.clone(),
        replicas: usize::from(args.stream_replicas),
        lease: Duration::from_secs(u64::from(args.lease_seconds)),
    })
}

/// The host name as a node id (`--node-id`'s default): only the
/// characters a node id may hold; `flashsale` if there is none.
fn host_name() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = name
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(crate::config::REPLICATION_NAME_BYTES_MAX)
        .collect();
    if name.is_empty() {
        "flashsale".to_string()
    } else {
        name
    }
}

/// The snapshot thread, on the recovered log and engine settings.
fn start_snapshots(
    recovered: &Recovered,
    storage: Arc<dyn Storage>,
    args: &ServeArgs,
    metrics: &Metrics,
    exporter: Option<&RunningExporter>,
) -> Result<(Arc<Snapshotter>, SnapshotThread), ServerError> {
    let snapshotter = Arc::new(Snapshotter {
        wal: Arc::clone(&recovered.wal),
        journal: Arc::clone(&recovered.journal),
        storage,
        dir: crate::snapshot::dir_in(&args.store.data_dir),
        engine_config: recovered.config.clone(),
        clock: Arc::clone(&recovered.clock),
        status: Arc::clone(&recovered.status),
        metrics: SnapshotMetrics::register(&metrics.registry).map_err(ServerError::Metrics)?,
        exported: exporter.map(RunningExporter::status),
    });
    // Nothing is served yet: the started engine is the log's state. On
    // failure the snapshot thread tries again.
    let taken = snapshotter.take_of_started(&recovered.engine, args.snapshot_interval_records);
    snapshotter.report("snapshot of the started state", taken);
    let thread = SnapshotThread::spawn(Arc::clone(&snapshotter), args.snapshot_interval_records)
        .map_err(ServerError::SnapshotThread)?;
    Ok((snapshotter, thread))
}

/// The shutdown snapshot, once the log is closed (so it covers every
/// record): the next start replays nothing. A failure is logged only; the
/// log holds everything.
fn take_final_snapshot(snapshotter: &Snapshotter) {
    snapshotter.report("shutdown snapshot", snapshotter.take());
}

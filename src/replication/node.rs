//! The replication thread of a server run with `--replicate-to`: it
//! connects to NATS, follows the stream as a standby, takes the lease
//! when the owner falls silent, takes over (catch-up, then the takeover
//! record) and then publishes the log as the owner, until it is fenced or
//! the server stops. The service only reads the `CommitGate` it moves.
//!
//! It runs on its own thread with its own single-threaded runtime, so a
//! busy HTTP worker never delays a publish, and a stalled NATS never
//! blocks an HTTP worker.

use std::sync::Arc;
use std::time::Duration;

use flashsale_wal::Wal;
use tokio::sync::watch;

use super::apply::{Applier, ApplyError};
use super::follow::Follower;
use super::gate::{CommitGate, Role};
use super::lease::{Acquire, Lease, LeaseError, LeaseSettings};
use super::stream::{OpenError, ReplicatedStream, StreamSettings};
use super::{connect, ConnectError, ConnectSettings};
use crate::engine::Engine;

/// Pause between attempts to reach NATS at start.
const CONNECT_RETRY_PAUSE: Duration = Duration::from_secs(1);
/// Pause after a follower failed (a lost connection) before a new one.
const FOLLOW_RETRY_PAUSE: Duration = Duration::from_millis(200);
/// Longest wait of a standby for the next batch before it looks at the
/// lease again.
const FOLLOW_POLL_MAX: Duration = Duration::from_millis(250);

/// What `--replicate-to` and its sibling flags say.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub urls: Vec<String>,
    pub node_id: String,
    pub stream: String,
    pub replicas: usize,
    pub lease: Duration,
}

/// What the thread works on: the local log, the engine it applies to and
/// the gate it moves.
pub struct NodeParts {
    pub wal: Arc<Wal>,
    pub engine: Arc<Engine>,
    pub gate: Arc<CommitGate>,
}

/// Why the node stopped following or owning (shown in `/health`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Stream(#[from] OpenError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("cannot read record {seq} of the local log to publish it")]
    ReadLog {
        seq: u64,
        #[source]
        source: flashsale_wal::WalError,
    },
    #[error("cannot encode the takeover record")]
    EncodeTakeover(#[source] crate::journal::CodecError),
    #[error("the stream refused a batch for good")]
    Refused(#[source] super::stream::PublishFailure),
    #[error("cannot start the runtime of the replication thread")]
    Runtime(#[source] std::io::Error),
}

/// The running thread; `stop` ends it.
pub struct NodeHandle {
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NodeHandle {
    /// Stops the thread (after its current step) and waits for it.
    pub fn stop(mut self) {
        self.stop.send_replace(true);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the replication thread panicked");
            }
        }
    }
}

/// Starts the replication thread.
pub fn start(settings: NodeSettings, parts: NodeParts) -> std::io::Result<NodeHandle> {
    let (stop, stopped) = watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("replication".into())
        .spawn(move || {
            let gate = Arc::clone(&parts.gate);
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(NodeError::Runtime)
                .and_then(|runtime| runtime.block_on(run(settings, parts, stopped)));
            if let Err(error) = result {
                let reason = crate::error_chain(&error);
                tracing::error!(%reason, "replication stopped; restart the node");
                gate.set_problem(Some(reason));
                gate.set_role(Role::Stopped);
            }
        })?;
    Ok(NodeHandle {
        stop,
        thread: Some(thread),
    })
}

async fn run(
    settings: NodeSettings,
    parts: NodeParts,
    mut stopped: watch::Receiver<bool>,
) -> Result<(), NodeError> {
    let Some((stream, lease)) = open(&settings, &parts.gate, &mut stopped).await? else {
        return Ok(());
    };
    let mut node = Node {
        applier: Applier::new(Arc::clone(&parts.wal), Arc::clone(&parts.engine)),
        parts,
        stream,
        lease,
        follower: None,
        lease_poll: settings.lease / 4,
        node_id: settings.node_id,
        next_batch_number: 0,
    };
    let Some(epoch) = node.follow_until_lease(&mut stopped).await? else {
        return Ok(());
    };
    if !node.take_over(epoch, &mut stopped).await? {
        return Ok(());
    }
    node.own(epoch, &mut stopped).await
}

/// Connects and opens the stream and the lease bucket, retrying while NATS
/// cannot be reached; `None` if the server stopped first.
async fn open(
    settings: &NodeSettings,
    gate: &CommitGate,
    stopped: &mut watch::Receiver<bool>,
) -> Result<Option<(ReplicatedStream, Lease)>, NodeError> {
    let connect_settings = ConnectSettings::new(settings.urls.clone(), settings.node_id.clone());
    let stream_settings = StreamSettings {
        stream_name: settings.stream.clone(),
        replicas: settings.replicas,
    };
    let lease_settings = LeaseSettings {
        stream_name: settings.stream.clone(),
        node_id: settings.node_id.clone(),
        lease_ms: settings.lease.as_millis() as u64,
        replicas: settings.replicas,
    };
    loop {
        if *stopped.borrow() {
            return Ok(None);
        }
        let opened = async {
            let jetstream = connect(&connect_settings).await?;
            let stream = ReplicatedStream::open(jetstream.clone(), &stream_settings).await?;
            let lease = Lease::open(&jetstream, &lease_settings).await?;
            Ok::<_, NodeError>((stream, lease))
        };
        match opened.await {
            Ok(opened) => {
                gate.set_problem(None);
                return Ok(Some(opened));
            }
            Err(NodeError::Stream(error @ OpenError::Mismatch { .. })) => {
                return Err(NodeError::Stream(error))
            }
            Err(error) => {
                let reason = crate::error_chain(&error);
                tracing::warn!(%reason, "cannot reach the replicated stream yet; retrying");
                gate.set_problem(Some(reason));
                sleep_or_stop(CONNECT_RETRY_PAUSE, stopped).await;
            }
        }
    }
}

/// Sleeps for `pause`, or less if the server stops meanwhile.
pub(super) async fn sleep_or_stop(pause: Duration, stopped: &mut watch::Receiver<bool>) {
    let _ = tokio::time::timeout(pause, stopped.wait_for(|stop| *stop)).await;
}

pub(super) struct Node {
    pub(super) parts: NodeParts,
    pub(super) applier: Applier,
    pub(super) stream: ReplicatedStream,
    pub(super) lease: Lease,
    pub(super) follower: Option<Follower>,
    pub(super) lease_poll: Duration,
    pub(super) node_id: String,
    /// The next batch number of this node's epoch.
    pub(super) next_batch_number: u64,
}

impl Node {
    /// Follows the stream as a standby until this node acquires the lease
    /// (its epoch), or `None` once the server stops.
    async fn follow_until_lease(
        &mut self,
        stopped: &mut watch::Receiver<bool>,
    ) -> Result<Option<u64>, NodeError> {
        self.parts.gate.set_role(Role::Standby);
        loop {
            if *stopped.borrow() {
                return Ok(None);
            }
            match self.lease.acquire().await {
                Ok(Acquire::Acquired { epoch }) => return Ok(Some(epoch)),
                Ok(Acquire::HeldByOther { .. }) => {}
                Err(error) => {
                    tracing::warn!(reason = %crate::error_chain(&error), "cannot read the lease")
                }
            }
            self.follow_for(self.lease_poll.min(FOLLOW_POLL_MAX), stopped)
                .await?;
        }
    }

    /// Applies the batches that arrive within `wait` (at least one wait).
    pub(super) async fn follow_for(
        &mut self,
        wait: Duration,
        stopped: &mut watch::Receiver<bool>,
    ) -> Result<(), NodeError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let follower = match self.follower.as_mut() {
                Some(follower) => follower,
                None => {
                    let from = self.applier.stream_seq() + 1;
                    match Follower::start(&self.stream, from).await {
                        Ok(follower) => self.follower.insert(follower),
                        Err(error) => {
                            tracing::warn!(reason = %crate::error_chain(&error), "cannot follow the stream yet");
                            sleep_or_stop(FOLLOW_RETRY_PAUSE, stopped).await;
                            return Ok(());
                        }
                    }
                }
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match follower.next(left).await {
                Ok(Some(followed)) => {
                    self.applier.apply(&followed)?;
                    self.parts.gate.set_replicated(self.applier.log_seq());
                }
                Ok(None) => return Ok(()),
                Err(error) => {
                    tracing::warn!(reason = %crate::error_chain(&error), "following the stream failed; following again");
                    self.follower = None;
                    sleep_or_stop(FOLLOW_RETRY_PAUSE, stopped).await;
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(());
            }
        }
    }
}

//! Replication of the log to NATS JetStream: the service-layer parts that
//! a hot standby and failover are built from (docs/replication.md).
//!
//! Why it exists: a dead machine must not be a dead sale. The records
//! are appended to a Raft-replicated JetStream stream (one message per
//! group-commit batch), and exactly one node extends that stream at a
//! time. We rely on NATS for consensus and build none of our own.
//!
//! What it promises (each part says more):
//! - `batch`: a batch as bytes with its own CRC and version; decoding
//!   never panics.
//! - `stream`: a publish is compare-and-append on the stream's last
//!   sequence, de-duplicated by a message id; its outcome is typed
//!   (appended, duplicate, fenced, indeterminate, unavailable, refused),
//!   and every wait is bounded.
//! - `lease`: who should write, in a key-value bucket, for liveness only:
//!   safety never rests on the lease or on clocks, only on the stream's
//!   compare-and-append.
//! - `follow`: the stream read back in order, as decoded batches.
//! - `gate`: what the service waits on (role, replicated sequence).
//! - `node`, `apply`, `owner`: the replication thread of a server run
//!   with `--replicate-to`: a standby applying the stream through the
//!   engine's replay, the takeover, the owner publishing its log.
//!
//! The engine knows nothing of NATS: it gets records to apply and a
//! journal whose durable sequence includes the stream's confirmation.

mod apply;
pub mod batch;
pub mod follow;
pub mod gate;
pub mod lease;
pub mod node;
mod owner;
pub mod stream;
mod stream_config;

use std::future::Future;
use std::time::{Duration, Instant};

use async_nats::jetstream;

/// How long a connection to the first reachable server may take.
pub const CONNECT_TIMEOUT_MS: u64 = 2_000;
/// How long a JetStream request or a publish acknowledgment may take
/// before it counts as lost (indeterminate, for a publish).
pub const REQUEST_TIMEOUT_MS: u64 = 2_000;

/// How long opening the stream or the lease bucket keeps trying: their
/// creation is a Raft round with an fsync on every replica, which can take
/// longer than one request timeout on a loaded machine.
pub const OPEN_TIMEOUT_MS: u64 = 15_000;
const OPEN_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Where and how to reach NATS.
#[derive(Debug, Clone)]
pub struct ConnectSettings {
    /// `nats://host:port` URLs; any reachable one will do, the client
    /// learns the rest of the cluster from it.
    pub urls: Vec<String>,
    /// Names the connection in the server's monitoring (the node id).
    pub client_name: String,
    pub connect_timeout_ms: u64,
    pub request_timeout_ms: u64,
}

impl ConnectSettings {
    pub fn new(urls: Vec<String>, client_name: impl Into<String>) -> ConnectSettings {
        ConnectSettings {
            urls,
            client_name: client_name.into(),
            connect_timeout_ms: CONNECT_TIMEOUT_MS,
            request_timeout_ms: REQUEST_TIMEOUT_MS,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("no NATS server URL given")]
    NoUrls,
    #[error("cannot connect to NATS at {urls}")]
    Connect {
        urls: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("no NATS server at {urls} answered within {timeout_ms} ms")]
    TimedOut { urls: String, timeout_ms: u64 },
}

/// A JetStream context on a new connection, with every request and
/// acknowledgment bounded by `settings.request_timeout_ms`. The client
/// reconnects by itself after a lost connection; meanwhile requests time
/// out.
pub async fn connect(settings: &ConnectSettings) -> Result<jetstream::Context, ConnectError> {
    if settings.urls.is_empty() {
        return Err(ConnectError::NoUrls);
    }
    let urls = settings.urls.join(",");
    let connect_timeout = Duration::from_millis(settings.connect_timeout_ms);
    let request_timeout = Duration::from_millis(settings.request_timeout_ms);
    let connecting = async_nats::ConnectOptions::new()
        .name(&settings.client_name)
        .connection_timeout(connect_timeout)
        .request_timeout(Some(request_timeout))
        .connect(settings.urls.as_slice());
    let client = match tokio::time::timeout(connect_timeout, connecting).await {
        Ok(Ok(client)) => client,
        Ok(Err(source)) => return Err(ConnectError::Connect { urls, source }),
        Err(_elapsed) => {
            return Err(ConnectError::TimedOut {
                urls,
                timeout_ms: settings.connect_timeout_ms,
            })
        }
    };
    Ok(jetstream::ContextBuilder::new()
        .timeout(request_timeout)
        .ack_timeout(request_timeout)
        .build(client))
}

/// Runs `attempt` again after a `retryable` error until it succeeds, fails
/// otherwise, or `budget_ms` have passed (plus at most one attempt, which
/// its own request timeout bounds); the last error if none succeeded.
pub(crate) async fn retry_for<T, E, Fut>(
    budget_ms: u64,
    mut attempt: impl FnMut() -> Fut,
    retryable: impl Fn(&E) -> bool,
) -> Result<T, E>
where
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + Duration::from_millis(budget_ms);
    loop {
        match attempt().await {
            Err(error) if retryable(&error) && Instant::now() + OPEN_RETRY_PAUSE < deadline => {
                tokio::time::sleep(OPEN_RETRY_PAUSE).await;
            }
            answer => return answer,
        }
    }
}

//! Who should write: a lease in a JetStream key-value bucket, for
//! liveness only.
//!
//! Why: when the owner dies, one standby must notice and take over, and
//! the others must leave it alone. Safety does not rest on this: two nodes
//! that both believe they own the lease still cannot both extend the
//! stream (compare-and-append, `stream`). So the lease may be wrong for a
//! while (a paused owner, a slow network); it only decides who tries.
//!
//! Promises:
//! - One key, `owner`, holds `{node_id, epoch}`. Every write is a
//!   compare-and-set at the revision last seen; a refused write changes
//!   nothing.
//! - A node takes the lease when the key is absent (or deleted), or when
//!   the revision it saw has not changed for `lease_ms` on its own
//!   monotonic clock (`Instant`). Clocks of different machines are never
//!   compared: NATS timestamps are not read.
//! - Epochs grow with every takeover and never repeat: a takeover writes
//!   epoch = (the revision it replaced) + 1, and a revision can be replaced
//!   once only, by the compare-and-set, while later takeovers replace later
//!   revisions. (This holds while the bucket is not deleted and recreated.)
//! - A write whose answer was lost is recognised afterwards: an entry
//!   holding this node's id and the epoch this instance wrote is its own.
//!   A restarted node is a new instance: it waits out the lease like any
//!   standby and takes a new epoch.
//! - A read may be served by any replica of the bucket and be stale: a
//!   takeover decided on a stale read is refused by the compare-and-set.
//! - Node ids must differ between nodes.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv, stream::StorageType};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{retry_for, OPEN_TIMEOUT_MS};

/// The key that holds the owner.
pub const LEASE_KEY: &str = "owner";

/// The bucket of stream `stream_name`'s lease.
pub fn bucket_name(stream_name: &str) -> String {
    format!("{stream_name}-lease")
}

#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub stream_name: String,
    /// This node (`--node-id`); unique among the nodes.
    pub node_id: String,
    /// How long the owner's silence must last before a takeover
    /// (`--lease-seconds`, in milliseconds here).
    pub lease_ms: u64,
    /// Copies of the bucket (`--stream-replicas`).
    pub replicas: usize,
}

/// The value of the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub node_id: String,
    pub epoch: u64,
}

/// What `acquire` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquire {
    /// This node owns the lease at `epoch`.
    Acquired { epoch: u64 },
    /// Another node does (`holder` is `None` if its value is unreadable, or
    /// not read: another node won the race for a takeover just now),
    /// and has been silent for `silent_ms` as far as this node has seen.
    HeldByOther {
        holder: Option<Holder>,
        silent_ms: u64,
    },
}

/// What `renew` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    Renewed,
    /// Another node took the lease, or this node never held it.
    Lost,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("cannot create or open the lease bucket {bucket}")]
    Bucket {
        bucket: String,
        #[source]
        source: jetstream::context::CreateKeyValueError,
    },
    #[error("cannot read the lease")]
    Read(#[source] kv::EntryError),
    #[error("no definite answer to a lease write (it may have been applied)")]
    Write(#[source] kv::UpdateError),
    #[error("cannot encode the lease value")]
    Encode(#[source] serde_json::Error),
}

/// This node's view of the lease.
pub struct Lease {
    store: kv::Store,
    node_id: String,
    lease_duration: Duration,
    held: Option<Held>,
    /// The epoch of this instance's last takeover write, answered or not.
    written_epoch: Option<u64>,
    observed: Option<Observed>,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    epoch: u64,
    revision: u64,
}

/// A revision of somebody else's entry and when this node first saw it.
#[derive(Debug, Clone, Copy)]
struct Observed {
    revision: u64,
    since: Instant,
}

impl Lease {
    /// Opens the bucket, creating it if needed; keeps trying for
    /// `OPEN_TIMEOUT_MS` while NATS does not answer.
    pub async fn open(
        jetstream: &jetstream::Context,
        settings: &LeaseSettings,
    ) -> Result<Lease, LeaseError> {
        let bucket = bucket_name(&settings.stream_name);
        let config = kv::Config {
            bucket: bucket.clone(),
            description: "flashsale: who owns the writes of the stream".into(),
            history: 1,
            storage: StorageType::File,
            num_replicas: settings.replicas,
            ..Default::default()
        };
        let store = retry_for(
            OPEN_TIMEOUT_MS,
            || open_bucket(jetstream, &config),
            |_| true,
        )
        .await?;
        Ok(Lease {
            store,
            node_id: settings.node_id.clone(),
            lease_duration: Duration::from_millis(settings.lease_ms),
            held: None,
            written_epoch: None,
            observed: None,
        })
    }

    /// The epoch this node holds the lease at, as of its last read or write.
    pub fn epoch(&self) -> Option<u64> {
        self.held.map(|held| held.epoch)
    }

    /// Reads the lease; takes it if it is free or its holder has been
    /// silent for the lease duration.
    pub async fn acquire(&mut self) -> Result<Acquire, LeaseError> {
        let entry = self
            .store
            .entry(LEASE_KEY)
            .await
            .map_err(LeaseError::Read)?;
        let Some(entry) = entry else {
            return self.take(0).await;
        };
        if matches!(
            entry.operation,
            kv::Operation::Delete | kv::Operation::Purge
        ) {
            return self.take(entry.revision).await;
        }
        let holder = serde_json::from_slice::<Holder>(&entry.value).ok();
        if let Some(epoch) = self.own_epoch(holder.as_ref()) {
            self.held = Some(Held {
                epoch,
                revision: entry.revision,
            });
            return Ok(Acquire::Acquired { epoch });
        }
        self.held = None;
        let now = Instant::now();
        let observed = match self.observed {
            Some(seen) if seen.revision == entry.revision => seen,
            _ => Observed {
                revision: entry.revision,
                since: now,
            },
        };
        self.observed = Some(observed);
        let silent = now.duration_since(observed.since);
        if silent >= self.lease_duration {
            return self.take(entry.revision).await;
        }
        Ok(Acquire::HeldByOther {
            holder,
            silent_ms: duration_ms(silent),
        })
    }

    /// Extends this node's ownership; `Lost` if another node took it.
    pub async fn renew(&mut self) -> Result<Renewal, LeaseError> {
        let Some(held) = self.held else {
            return Ok(Renewal::Lost);
        };
        let value = self.value(held.epoch)?;
        match self.store.update(LEASE_KEY, value, held.revision).await {
            Ok(revision) => {
                self.held = Some(Held { revision, ..held });
                Ok(Renewal::Renewed)
            }
            Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                // Refused: either an earlier renewal of ours landed though
                // its answer was lost, or another node took over.
                let entry = self
                    .store
                    .entry(LEASE_KEY)
                    .await
                    .map_err(LeaseError::Read)?;
                let ours = entry.filter(|e| {
                    e.operation == kv::Operation::Put
                        && serde_json::from_slice::<Holder>(&e.value).ok()
                            == Some(self.holder(held.epoch))
                });
                match ours {
                    Some(entry) => {
                        self.held = Some(Held {
                            revision: entry.revision,
                            ..held
                        });
                        Ok(Renewal::Renewed)
                    }
                    None => {
                        self.held = None;
                        Ok(Renewal::Lost)
                    }
                }
            }
            Err(error) => Err(LeaseError::Write(error)),
        }
    }

    /// Writes this node as the holder in place of `base_revision`.
    async fn take(&mut self, base_revision: u64) -> Result<Acquire, LeaseError> {
        let epoch = base_revision.saturating_add(1);
        let value = self.value(epoch)?;
        self.written_epoch = Some(epoch);
        match self.store.update(LEASE_KEY, value, base_revision).await {
            Ok(revision) => {
                self.held = Some(Held { epoch, revision });
                self.observed = None;
                Ok(Acquire::Acquired { epoch })
            }
            Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                // Another node wrote first: its entry starts a new silence.
                self.held = None;
                self.observed = None;
                Ok(Acquire::HeldByOther {
                    holder: None,
                    silent_ms: 0,
                })
            }
            Err(error) => Err(LeaseError::Write(error)),
        }
    }

    /// The epoch of `holder` if this instance wrote it (its last takeover,
    /// whose answer may have been lost). The same node id at another epoch
    /// is an earlier life of this node: another holder, whose epoch must
    /// not be reused (message ids would repeat).
    fn own_epoch(&self, holder: Option<&Holder>) -> Option<u64> {
        let holder = holder?;
        let ours = holder.node_id == self.node_id && Some(holder.epoch) == self.written_epoch;
        ours.then_some(holder.epoch)
    }

    fn holder(&self, epoch: u64) -> Holder {
        Holder {
            node_id: self.node_id.clone(),
            epoch,
        }
    }

    fn value(&self, epoch: u64) -> Result<Bytes, LeaseError> {
        let bytes = serde_json::to_vec(&self.holder(epoch)).map_err(LeaseError::Encode)?;
        Ok(Bytes::from(bytes))
    }
}

/// The bucket, created if there is none (or opened as another node
/// created it, meanwhile or with another description).
async fn open_bucket(
    jetstream: &jetstream::Context,
    config: &kv::Config,
) -> Result<kv::Store, LeaseError> {
    match jetstream.create_key_value(config.clone()).await {
        Ok(store) => Ok(store),
        Err(source) => match jetstream.get_key_value(&config.bucket).await {
            Ok(store) => Ok(store),
            Err(_) => Err(LeaseError::Bucket {
                bucket: config.bucket.clone(),
                source,
            }),
        },
    }
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

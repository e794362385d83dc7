//! What the write path asks of replication: may this node take writes
//! now, and is a record in the stream yet. The replication thread moves
//! the gate (role, replicated sequence, why the stream refuses); the
//! service reads it before a write and waits on it after the local fsync.
//!
//! Promises: an answer waits until its record is in the stream or fails;
//! no write is admitted unless this node owns the writes; once fenced, a
//! node never admits or releases a write again (until a restart); every
//! wait is bounded by `REPLICATION_WAIT_MAX`. It knows nothing of NATS.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;

/// Longest wait of an answer for its record to reach the stream; then
/// 503 (nothing promised; the record may still reach the stream later).
pub const REPLICATION_WAIT_MAX: Duration = Duration::from_secs(5);

/// This node's part in replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Connecting, or checking the local log against the stream.
    Starting,
    /// Follows the stream and applies it; refuses writes.
    Standby,
    /// Holds the lease and is catching up before its takeover record.
    TakingOver,
    /// Owns the writes.
    Owner,
    /// Another node extended the stream: refuses everything until a
    /// restart (its state may hold records the stream refused).
    Fenced,
    /// The local log and the stream disagree, or applying failed: the
    /// node stopped following (the reason says why).
    Stopped,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Starting => "starting",
            Role::Standby => "standby",
            Role::TakingOver => "taking_over",
            Role::Owner => "owner",
            Role::Fenced => "fenced",
            Role::Stopped => "stopped",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GateState {
    role: Role,
    /// Every log record up to this one is in the stream.
    replicated_seq: u64,
}

/// Why a write is refused or was not confirmed by the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GateError {
    #[error("this node does not own the writes (it is {role})")]
    NotOwner { role: &'static str },
    #[error("another node took over the writes; this node refuses everything until a restart")]
    Fenced,
    #[error("the replicated stream does not take writes: {reason}")]
    Unavailable { reason: String },
    #[error("the replicated stream did not confirm the record within {waited_ms} ms")]
    TimedOut { waited_ms: u64 },
}

/// What `/health` shows of replication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateHealth {
    pub role: &'static str,
    pub node_id: String,
    pub stream: String,
    pub epoch: Option<u64>,
    pub replicated_seq: u64,
    /// Why the stream refuses writes, or why the node stopped following.
    pub problem: Option<String>,
}

pub struct CommitGate {
    state: watch::Sender<GateState>,
    /// Whether `problem` is set: read on every write without the lock.
    has_problem: AtomicBool,
    problem: Mutex<Option<String>>,
    epoch: Mutex<Option<u64>>,
    node_id: String,
    stream: String,
}

impl CommitGate {
    pub fn new(node_id: String, stream: String) -> CommitGate {
        let (state, _) = watch::channel(GateState {
            role: Role::Starting,
            replicated_seq: 0,
        });
        CommitGate {
            state,
            has_problem: AtomicBool::new(false),
            problem: Mutex::new(None),
            epoch: Mutex::new(None),
            node_id,
            stream,
        }
    }

    pub fn role(&self) -> Role {
        self.state.borrow().role
    }

    pub fn replicated_seq(&self) -> u64 {
        self.state.borrow().replicated_seq
    }

    /// Why a write is refused now, if it is.
    pub fn refusal(&self) -> Option<GateError> {
        match self.role() {
            Role::Owner => self
                .problem()
                .map(|reason| GateError::Unavailable { reason }),
            Role::Fenced => Some(GateError::Fenced),
            role => Some(GateError::NotOwner { role: role.name() }),
        }
    }

    /// Whether the node does its part: owns the writes and can write, or
    /// follows the stream.
    pub fn is_healthy(&self) -> bool {
        match self.role() {
            Role::Owner | Role::Standby | Role::TakingOver => {
                !self.has_problem.load(Ordering::Acquire)
            }
            Role::Starting | Role::Fenced | Role::Stopped => false,
        }
    }

    /// Completes once every record up to `seq` is in the stream; fails
    /// when the node is fenced or after `REPLICATION_WAIT_MAX`.
    pub async fn wait_replicated(&self, seq: u64) -> Result<(), GateError> {
        let mut receiver = self.state.subscribe();
        let reached = receiver.wait_for(|state| {
            state.replicated_seq >= seq || state.role == Role::Fenced || state.role == Role::Stopped
        });
        let state = match tokio::time::timeout(REPLICATION_WAIT_MAX, reached).await {
            Ok(Ok(state)) => *state,
            // The sender lives as long as the gate: a closed channel means
            // the gate is being dropped; nothing was confirmed.
            Ok(Err(_)) | Err(_) => {
                return Err(match self.problem() {
                    Some(reason) => GateError::Unavailable { reason },
                    None => GateError::TimedOut {
                        waited_ms: REPLICATION_WAIT_MAX.as_millis() as u64,
                    },
                })
            }
        };
        match state.role {
            Role::Owner if state.replicated_seq >= seq => Ok(()),
            Role::Fenced => Err(GateError::Fenced),
            role => Err(GateError::NotOwner { role: role.name() }),
        }
    }

    /// Every record up to `seq` is in the stream (and, on a standby,
    /// applied). Never moves back.
    pub fn set_replicated(&self, seq: u64) {
        self.state.send_if_modified(|state| {
            let moved = seq > state.replicated_seq;
            state.replicated_seq = state.replicated_seq.max(seq);
            moved
        });
    }

    pub fn set_role(&self, role: Role) {
        self.state.send_if_modified(|state| {
            // Fenced and stopped are final for this process.
            if matches!(state.role, Role::Fenced | Role::Stopped) || state.role == role {
                return false;
            }
            state.role = role;
            true
        });
    }

    pub fn set_epoch(&self, epoch: u64) {
        *self.epoch.lock() = Some(epoch);
    }

    /// The stream refuses writes (`Some`), or takes them again (`None`).
    pub fn set_problem(&self, problem: Option<String>) {
        let mut held = self.problem.lock();
        self.has_problem.store(problem.is_some(), Ordering::Release);
        *held = problem;
    }

    /// Why the stream refuses writes now, if it does (the lock only then).
    fn problem(&self) -> Option<String> {
        if !self.has_problem.load(Ordering::Acquire) {
            return None;
        }
        self.problem.lock().clone()
    }

    pub fn health(&self) -> GateHealth {
        let state = *self.state.borrow();
        GateHealth {
            role: state.role.name(),
            node_id: self.node_id.clone(),
            stream: self.stream.clone(),
            epoch: *self.epoch.lock(),
            replicated_seq: state.replicated_seq,
            problem: self.problem(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> CommitGate {
        let gate = CommitGate::new("a".into(), "s".into());
        gate.set_role(Role::Owner);
        gate
    }

    #[test]
    fn a_standby_refuses_writes_and_an_owner_takes_them() {
        let gate = CommitGate::new("a".into(), "s".into());
        assert!(matches!(
            gate.refusal(),
            Some(GateError::NotOwner { role: "starting" })
        ));
        gate.set_role(Role::Standby);
        assert!(matches!(
            gate.refusal(),
            Some(GateError::NotOwner { role: "standby" })
        ));
        gate.set_role(Role::Owner);
        assert_eq!(gate.refusal(), None);
        gate.set_problem(Some("no quorum".into()));
        assert!(matches!(
            gate.refusal(),
            Some(GateError::Unavailable { .. })
        ));
    }

    #[test]
    fn a_fenced_node_never_becomes_owner_again() {
        let gate = owner();
        gate.set_role(Role::Fenced);
        gate.set_role(Role::Owner);
        assert_eq!(gate.role(), Role::Fenced);
        assert_eq!(gate.refusal(), Some(GateError::Fenced));
    }

    #[test]
    fn the_replicated_sequence_never_moves_back() {
        let gate = owner();
        gate.set_replicated(10);
        gate.set_replicated(4);
        assert_eq!(gate.replicated_seq(), 10);
    }

    #[tokio::test]
    async fn an_answer_waits_for_its_record_to_reach_the_stream() {
        let gate = std::sync::Arc::new(owner());
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.wait_replicated(3).await }
        });
        tokio::task::yield_now().await;
        gate.set_replicated(2);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        gate.set_replicated(3);
        assert_eq!(waiter.await.unwrap(), Ok(()));
    }

    #[tokio::test]
    async fn a_fence_fails_every_waiting_answer() {
        let gate = std::sync::Arc::new(owner());
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.wait_replicated(3).await }
        });
        tokio::task::yield_now().await;
        gate.set_role(Role::Fenced);
        gate.set_replicated(5);
        assert_eq!(waiter.await.unwrap(), Err(GateError::Fenced));
    }
}

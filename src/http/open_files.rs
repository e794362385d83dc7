//! The open-file limit decides how many connections the server can hold:
//! every connection is a descriptor, and when `accept` fails with "Too many
//! open files" nobody new gets in while `/health` still says ok. So at
//! start the soft limit is raised to the hard one, and the connection cap is
//! derived from it, below it, keeping a reserve for the log, snapshots,
//! PostgreSQL and the runtime.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

use crate::config::{CONNECTIONS_NEAR_CAP_PERCENT, CONNECTIONS_PER_WORKER_MAX, OPEN_FILES_RESERVE};

/// How many connections the server holds, derived from the open-file limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCaps {
    /// The soft open-file limit after raising it.
    pub open_files_max: u64,
    /// Connections of all workers together.
    pub connections_max: usize,
    /// `connections_max` divided by the workers (actix's per-worker cap).
    pub connections_per_worker_max: usize,
    /// From this count on, idle connections are closed to make room.
    pub connections_near_cap: usize,
}

/// Raises the soft open-file limit to the hard limit (as far as the kernel
/// allows) and returns the limit in force afterwards.
pub fn raise_open_files_limit() -> u64 {
    let limit = getrlimit(Resource::Nofile);
    let Some(hard) = limit.maximum else {
        // Unlimited hard limit: ask for a large, finite soft limit.
        return raise_to(limit, 1 << 20);
    };
    raise_to(limit, hard)
}

fn raise_to(limit: Rlimit, wanted: u64) -> u64 {
    let current = limit.current.unwrap_or(u64::MAX);
    if current >= wanted {
        return current;
    }
    let raised = Rlimit {
        current: Some(wanted),
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => wanted,
        Err(error) => {
            tracing::warn!(%error, current, wanted, "cannot raise the open-file limit");
            current
        }
    }
}

/// The caps for `workers` workers under `open_files_max` descriptors.
pub fn connection_caps(open_files_max: u64, workers: usize) -> ConnectionCaps {
    let workers = workers.max(1);
    let usable = open_files_max
        .saturating_sub(OPEN_FILES_RESERVE)
        .max(workers as u64);
    let configured = CONNECTIONS_PER_WORKER_MAX.saturating_mul(workers);
    let connections_max = usize::try_from(usable)
        .unwrap_or(usize::MAX)
        .min(configured);
    let connections_per_worker_max = (connections_max / workers).max(1);
    let connections_max = connections_per_worker_max * workers;
    ConnectionCaps {
        open_files_max,
        connections_max,
        connections_per_worker_max,
        connections_near_cap: connections_max * CONNECTIONS_NEAR_CAP_PERCENT / 100,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stays_below_a_low_open_file_limit() {
        let caps = connection_caps(1024, 2);
        assert_eq!(caps.connections_max, 768);
        assert_eq!(caps.connections_per_worker_max, 384);
        assert!(caps.connections_near_cap < caps.connections_max);
    }

    #[test]
    fn a_high_open_file_limit_is_capped_by_the_configured_maximum() {
        let caps = connection_caps(1 << 20, 2);
        assert_eq!(caps.connections_per_worker_max, CONNECTIONS_PER_WORKER_MAX);
    }

    #[test]
    fn a_tiny_limit_still_leaves_one_connection_per_worker() {
        let caps = connection_caps(10, 4);
        assert_eq!(caps.connections_per_worker_max, 1);
    }

    #[test]
    fn raising_the_limit_never_lowers_it() {
        let before = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
        assert!(raise_open_files_limit() >= before);
    }
}

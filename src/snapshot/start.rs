//! The start with snapshots: the newest valid snapshot, then the log
//! after it, then the audit; or the whole log when no snapshot is usable
//! and the log still starts at its first record.
//!
//! A snapshot is skipped (with a log line naming it) when it is damaged
//! (checksum, version, truncation), belongs to another log, or does not
//! rebuild; the next older one is tried. The start refuses only when no
//! usable snapshot and the log together hold every record: the log's
//! start lies past what every valid snapshot covers. It also refuses a
//! snapshot that covers records the log does not hold (the log lost its
//! tail, which a disk that honours fsync never does).

use std::path::Path;
use std::time::{Duration, Instant};

use flashsale_wal::Storage;

use super::format::{BodyMeta, BodyReader, SnapshotDamage};
use super::store::{self, StoreError};
use crate::engine::{AuditReport, Engine, EngineConfigError, ReplayError};
use crate::journal::WalJournal;
use crate::recovery::{self, RecoveryError, ReplayReport};

/// Why the start cannot proceed from the snapshots and the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("cannot list the snapshots")]
    List(#[source] StoreError),
    #[error(
        "records are missing: the log starts at record {log_start_seq} but {}",
        covered_text(*.newest_valid_covers)
    )]
    Missing {
        log_start_seq: u64,
        newest_valid_covers: Option<u64>,
    },
    #[error(
        "snapshot {name} covers up to record {snapshot_seq}, but the log ends at record {log_end_seq}"
    )]
    BeyondLog {
        name: String,
        snapshot_seq: u64,
        log_end_seq: u64,
    },
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
    #[error("invalid engine settings")]
    EngineConfig(#[from] EngineConfigError),
}

fn covered_text(covers: Option<u64>) -> String {
    match covers {
        Some(seq) => format!("the newest valid snapshot covers only up to record {seq}"),
        None => "there is no valid snapshot".to_string(),
    }
}

/// The snapshot a start used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedSnapshot {
    pub file_name: String,
    pub seq: u64,
    pub written_unix_ms: i64,
}

/// What a start did.
#[derive(Debug)]
pub struct Started {
    pub engine: Engine,
    pub snapshot: Option<UsedSnapshot>,
    /// Snapshots skipped, with why (file name: reason).
    pub skipped: Vec<String>,
    pub tail: ReplayReport,
    /// The audit after the start, snapshot or not.
    pub audited: AuditReport,
    pub elapsed: Duration,
    /// Where the time went, for the start line.
    pub phases: StartPhases,
}

/// The parts of a start's time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StartPhases {
    /// Reading, checking and decoding snapshot files (also skipped ones).
    pub snapshot_load: Duration,
    /// Rebuilding the engine from the snapshot used.
    pub restore: Duration,
    pub tail_replay: Duration,
    pub audit: Duration,
}

fn file_name_of(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |name| name.to_string_lossy().into_owned())
}

/// Starts an engine (each attempt on a fresh one from `new_engine`) from
/// the newest usable snapshot in `dir` and the log after it; audits.
pub fn start(
    new_engine: &dyn Fn() -> Result<Engine, EngineConfigError>,
    journal: &WalJournal,
    storage: &dyn Storage,
    dir: &Path,
) -> Result<Started, StartError> {
    let started = Instant::now();
    let log_start_seq = journal.first_seq();
    let log_end_seq = journal.durable_seq();
    let mut skipped = Vec::new();
    let mut newest_valid_covers = None;
    let mut phases = StartPhases::default();
    let found = store::list(storage, dir).map_err(StartError::List)?;
    for (_, path) in found.iter().rev() {
        let name = file_name_of(path);
        let loading = Instant::now();
        let bytes = usable(storage, path, journal.log_id(), &mut skipped);
        phases.snapshot_load += loading.elapsed();
        let Some((bytes, meta)) = bytes else {
            continue;
        };
        newest_valid_covers = newest_valid_covers.max(Some(meta.seq));
        if meta.seq > log_end_seq {
            return Err(StartError::BeyondLog {
                name,
                snapshot_seq: meta.seq,
                log_end_seq,
            });
        }
        if meta.seq.saturating_add(1) < log_start_seq {
            tracing::warn!(snapshot = %name, covers = meta.seq, log_start_seq, "snapshot skipped: the log after it was deleted");
            skipped.push(format!("{name}: the log after it was deleted"));
            continue;
        }
        let engine = new_engine()?;
        let restoring = Instant::now();
        let restored = restore(&engine, &bytes, meta.seq, crate::engine::start_threads());
        // Freeing the file's bytes need not delay the start (if no thread
        // can be made, the failed spawn drops them here).
        let _ = std::thread::Builder::new()
            .name("snapshot-free".to_string())
            .spawn(move || drop(bytes));
        phases.restore += restoring.elapsed();
        if let Err(error) = restored {
            skip_unfit(&name, &error, &mut skipped);
            continue;
        }
        let used = UsedSnapshot {
            file_name: name,
            seq: meta.seq,
            written_unix_ms: meta.written_unix_ms,
        };
        return finish(engine, Some(used), skipped, journal, (started, phases));
    }
    if log_start_seq > 1 {
        return Err(StartError::Missing {
            log_start_seq,
            newest_valid_covers,
        });
    }
    finish(new_engine()?, None, skipped, journal, (started, phases))
}

/// The checked bytes and the body's own fields of the snapshot at
/// `path`, if it is valid and of this log; else notes why not in
/// `skipped` and the server log.
fn usable(
    storage: &dyn Storage,
    path: &Path,
    log_id: u128,
    skipped: &mut Vec<String>,
) -> Option<(Vec<u8>, BodyMeta)> {
    let name = file_name_of(path);
    let read = store::read_checked(storage, path).and_then(|bytes| {
        let meta = BodyReader::new(&bytes)
            .map(|(meta, _)| meta)
            .map_err(|damage| StoreError::Damaged {
                path: path.to_path_buf(),
                damage,
            })?;
        Ok((bytes, meta))
    });
    match read {
        Err(error) => {
            let why = crate::error_chain(&error);
            tracing::warn!(snapshot = %name, error = %why, "damaged snapshot skipped");
            skipped.push(format!("{name}: {}", error.kind()));
            None
        }
        Ok((_, meta)) if meta.log_id != log_id => {
            tracing::warn!(snapshot = %name, "snapshot of another log skipped");
            skipped.push(format!("{name}: another log's"));
            None
        }
        Ok(read) => Some(read),
    }
}

/// Rebuilds the snapshot file `bytes` (checked) into `engine`, decoding
/// as it goes, with up to `threads` threads restoring (a start has the
/// machine to itself; the snapshot thread leaves it to requests).
pub(super) fn restore(
    engine: &Engine,
    bytes: &[u8],
    covered_seq: u64,
    threads: usize,
) -> Result<(), ReplayError> {
    let damaged = |damage: SnapshotDamage| ReplayError {
        seq: covered_seq,
        why: damage.to_string(),
    };
    let (_, mut reader) = BodyReader::new(bytes).map_err(damaged)?;
    engine.restore_from(&mut reader, covered_seq, threads)?;
    reader.finish().map_err(damaged)
}

fn skip_unfit(name: &str, error: &ReplayError, skipped: &mut Vec<String>) {
    tracing::error!(snapshot = %name, %error, "snapshot does not rebuild; skipped");
    skipped.push(format!("{name}: does not rebuild"));
}

fn finish(
    engine: Engine,
    snapshot: Option<UsedSnapshot>,
    skipped: Vec<String>,
    journal: &WalJournal,
    (started, mut phases): (Instant, StartPhases),
) -> Result<Started, StartError> {
    let after_seq = snapshot.as_ref().map_or(0, |used| used.seq);
    let records = journal
        .read_after(after_seq)
        .map_err(|error| RecoveryError::Read {
            after_seq,
            source: Box::new(error),
        })?;
    let replaying = Instant::now();
    let tail = recovery::replay_after(&engine, after_seq, records)?;
    phases.tail_replay = replaying.elapsed();
    let auditing = Instant::now();
    let threads = crate::engine::start_threads();
    let audited = engine
        .audit_with_threads(threads)
        .map_err(RecoveryError::from)?;
    phases.audit = auditing.elapsed();
    Ok(Started {
        engine,
        snapshot,
        skipped,
        tail,
        audited,
        elapsed: started.elapsed(),
        phases,
    })
}

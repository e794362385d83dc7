//! Opening a log: checking every segment and repairing what a crash can
//! legitimately leave behind, and nothing else.
//!
//! The decision table (also in `docs/wal-format.md`):
//! - newest segment shorter than a header, header invalid: a crash during
//!   rotation; the header is rewritten.
//! - newest segment ends in damage an interrupted append can leave (short
//!   record, bad checksum, absurd length) with no valid record after it: a
//!   torn write; the tail is copied to a side file, then cut off.
//! - anything else (older segment damaged, damage followed by a valid record,
//!   a sequence gap, a wrong header): `WalError::Corrupt` naming the file and
//!   byte offset. Nothing is dropped silently.
//!
//! - the start rule (module `start`): segments wholly before the start kept
//!   in `LOG_META` are deleted (an interrupted deletion, finished); an
//!   oldest segment that starts after the start, a newest that ends before
//!   it, or a metadata file without segments is an error.
//! - no metadata file but segments: a log written before `LOG_META`
//!   existed; it gets one (fresh identity, start = its oldest segment's
//!   first sequence number) once its segments passed the checks.
//!
//! Every file is read as it is on the disk: its cached pages are dropped
//! first (`ReadFile::drop_cached_pages`), so that data a failed `fsync` left
//! in the page cache, but never wrote, is not taken for durable.
//!
//! Promise: after `recover` returns, everything a reader can replay is
//! durable (the newest segment and the directory have been synced).

use std::path::{Path, PathBuf};

use crate::config::{Preallocation, WalConfig};
use crate::error::WalError;
use crate::format::{
    nonzero_end, scan_segment, DamageKind, LogMeta, SEGMENT_FIRST_SEQ_OFFSET, SEGMENT_HEADER_SIZE,
};
use crate::log_meta::{new_log_id, read_log_meta, write_log_meta};
use crate::segment::{create_segment, parse_segment_file_name, SegmentMeta};
use crate::start::{check_end, check_start, finish_deletion};
use crate::storage::{FileWindow, Storage, WriteFile};
use crate::torn::{check_torn_reach, cut_torn_tail, save_torn_tail};

/// Read chunk of scans and replays.
pub(crate) const READ_CHUNK_BYTES: usize = 256 * 1024;

/// The state of a log after recovery, ready for the writer.
pub(crate) struct Recovered {
    pub segments: Vec<SegmentMeta>,
    pub active: Box<dyn WriteFile>,
    pub active_len_bytes: u64,
    /// The active segment is zero-filled to its full size.
    pub active_preallocated: bool,
    /// Last valid sequence number, `first_seq - 1` if the log is empty.
    pub last_seq: u64,
    /// The log's identity and start, as `LOG_META` holds them now.
    pub meta: LogMeta,
}

/// What one segment's check found.
enum SegmentCheck {
    /// Valid records up to `len_bytes`, then nothing or only zeros.
    Intact {
        last_seq: u64,
        len_bytes: u64,
        file_len_bytes: u64,
    },
    /// Valid records up to `valid_len_bytes`, then what a torn write left,
    /// up to `torn_end_bytes` (its last non-zero byte), then zeros, if the
    /// segment was preallocated, up to `file_len_bytes`.
    TornTail {
        last_seq: u64,
        valid_len_bytes: u64,
        torn_end_bytes: u64,
        file_len_bytes: u64,
    },
    /// Newest segment without a complete header: a crash during rotation.
    HeaderTorn,
}

/// Reads the log's metadata, checks every segment of `config.dir` against
/// it (creating a new log in an empty directory, finishing an interrupted
/// deletion), repairs what a crash can leave in the newest segment, and
/// makes the result durable.
pub(crate) fn recover(config: &WalConfig, storage: &dyn Storage) -> Result<Recovered, WalError> {
    let dir = &config.dir;
    storage
        .create_dir_all(dir)
        .map_err(|e| WalError::io("create dir", dir, e))?;
    let stored = read_log_meta(storage, dir)?;
    let found = list_segments(storage, dir)?;
    let Some(&(oldest_seq, _)) = found.first() else {
        return match stored {
            Some(meta) => Err(WalError::SegmentsMissing {
                dir: dir.clone(),
                start_seq: meta.start_seq,
            }),
            None => start_empty_log(config, storage),
        };
    };
    // A log written before `LOG_META` existed starts where its oldest
    // segment does; it gets its identity now (the upgrade path).
    let (meta, upgrade) = match stored {
        Some(meta) => (meta, false),
        None => {
            let log_id = new_log_id(dir)?;
            let start_seq = oldest_seq.max(1);
            (LogMeta { log_id, start_seq }, true)
        }
    };
    let found = finish_deletion(storage, dir, meta.start_seq, found)?;
    let recovered = recover_segments(config, storage, &found, meta)?;
    if upgrade {
        write_log_meta(storage, dir, &meta)?;
    }
    Ok(recovered)
}

/// Checks the segments `found` (sorted, none wholly before the start) of a
/// log with metadata `meta`, and makes what a reader can replay durable.
fn recover_segments(
    config: &WalConfig,
    storage: &dyn Storage,
    found: &[(u64, PathBuf)],
    meta: LogMeta,
) -> Result<Recovered, WalError> {
    let dir = &config.dir;
    let Some(((newest_seq, newest_path), older)) = found.split_last() else {
        unreachable!("the caller found at least one segment")
    };
    check_start(meta.start_seq, &found[0])?;
    let prev_last = check_older_segments(storage, config, older)?;
    let check = check_segment(storage, config, newest_path, *newest_seq, prev_last, true)?;
    let newest = open_newest(storage, config, *newest_seq, newest_path, check)?;
    let last_seq = newest.last_seq;
    check_end(meta.start_seq, last_seq, newest_path)?;
    let mut recovered = Recovered {
        segments: found
            .iter()
            .map(|(first_seq, path)| SegmentMeta {
                first_seq: *first_seq,
                path: path.clone(),
            })
            .collect(),
        active: newest.file,
        active_len_bytes: newest.len_bytes,
        active_preallocated: newest.preallocated,
        last_seq,
        meta,
    };
    // What a reader replays must not be taken back by a later crash, even if
    // it was written by a process that died before syncing it.
    recovered
        .active
        .sync_data()
        .map_err(|e| WalError::io("fdatasync", newest_path, e))?;
    storage
        .sync_dir(dir)
        .map_err(|e| WalError::io("fsync dir", dir, e))?;
    Ok(recovered)
}

/// A directory without segments or metadata: a new log, starting at
/// sequence number 1 with a fresh identity. Segment 1 is durable before the
/// metadata file is written, so a metadata file without segments is never
/// what a crash leaves behind.
fn start_empty_log(config: &WalConfig, storage: &dyn Storage) -> Result<Recovered, WalError> {
    let preallocate_bytes = inline_preallocation(config);
    let (segment, active) =
        create_segment(storage, &config.dir, 1, config.sync_mode, preallocate_bytes)?;
    let meta = LogMeta {
        log_id: new_log_id(&config.dir)?,
        start_seq: 1,
    };
    write_log_meta(storage, &config.dir, &meta)?;
    Ok(Recovered {
        segments: vec![segment],
        active,
        active_len_bytes: SEGMENT_HEADER_SIZE as u64,
        active_preallocated: preallocate_bytes.is_some(),
        last_seq: 0,
        meta,
    })
}

/// Checks every segment but the newest, which must all be intact and
/// contiguous; returns the last sequence number of the last one, `None` if
/// there are none.
fn check_older_segments(
    storage: &dyn Storage,
    config: &WalConfig,
    older: &[(u64, PathBuf)],
) -> Result<Option<u64>, WalError> {
    let mut prev_last: Option<u64> = None;
    for (name_seq, path) in older {
        let check = check_segment(storage, config, path, *name_seq, prev_last, false)?;
        let SegmentCheck::Intact { last_seq, .. } = check else {
            unreachable!("an older segment is either intact or an error")
        };
        prev_last = Some(last_seq);
    }
    Ok(prev_last)
}

/// The size to zero-fill a segment to when recovery creates one: with
/// [`Preallocation::Inline`] only. With `Ahead` a plain segment is created
/// at once (no zero-fill at open) and left as soon as the preparer has a
/// zero-filled one ready.
fn inline_preallocation(config: &WalConfig) -> Option<u64> {
    (config.preallocation == Preallocation::Inline).then_some(config.segment_size_max_bytes)
}

/// The newest segment, open for the writer.
struct Newest {
    file: Box<dyn WriteFile>,
    /// Where the next record goes.
    len_bytes: u64,
    preallocated: bool,
    last_seq: u64,
}

/// Applies the newest segment's check: opens it for writing after cutting
/// off (and keeping) a torn tail, or rewrites a torn header.
fn open_newest(
    storage: &dyn Storage,
    config: &WalConfig,
    newest_seq: u64,
    newest_path: &Path,
    check: SegmentCheck,
) -> Result<Newest, WalError> {
    let preallocated = |file_len_bytes: u64| file_len_bytes >= config.segment_size_max_bytes;
    match check {
        SegmentCheck::Intact {
            last_seq,
            len_bytes,
            file_len_bytes,
        } => Ok(Newest {
            file: open_active(storage, newest_path)?,
            len_bytes,
            preallocated: preallocated(file_len_bytes),
            last_seq,
        }),
        SegmentCheck::TornTail {
            last_seq,
            valid_len_bytes,
            torn_end_bytes,
            file_len_bytes,
        } => {
            save_torn_tail(storage, newest_path, valid_len_bytes, torn_end_bytes)?;
            let mut file = open_active(storage, newest_path)?;
            cut_torn_tail(
                &mut *file,
                newest_path,
                valid_len_bytes,
                torn_end_bytes,
                file_len_bytes,
            )?;
            Ok(Newest {
                file,
                len_bytes: valid_len_bytes,
                preallocated: preallocated(file_len_bytes),
                last_seq,
            })
        }
        SegmentCheck::HeaderTorn => {
            let preallocate_bytes = inline_preallocation(config);
            let (_, file) = create_segment(
                storage,
                &config.dir,
                newest_seq,
                config.sync_mode,
                preallocate_bytes,
            )?;
            Ok(Newest {
                file,
                len_bytes: SEGMENT_HEADER_SIZE as u64,
                preallocated: preallocate_bytes.is_some(),
                last_seq: newest_seq.wrapping_sub(1),
            })
        }
    }
}

/// Segment files of `dir`, sorted in log order. Other files are ignored.
fn list_segments(storage: &dyn Storage, dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let names = storage
        .list_dir(dir)
        .map_err(|e| WalError::io("list dir", dir, e))?;
    let mut found: Vec<(u64, PathBuf)> = names
        .iter()
        .filter_map(|name| parse_segment_file_name(name).map(|seq| (seq, dir.join(name))))
        .collect();
    found.sort_unstable_by_key(|(seq, _)| *seq);
    Ok(found)
}

/// Opens the newest segment for appending after its valid prefix.
fn open_active(storage: &dyn Storage, path: &Path) -> Result<Box<dyn WriteFile>, WalError> {
    storage
        .open_write(path)
        .map_err(|e| WalError::io("open for writing", path, e))
}

/// Checks one segment: its name continues the log after `prev_last`, its
/// header matches its name, and it holds no damage but (in the `newest`
/// segment only) a torn tail or a torn header.
fn check_segment(
    storage: &dyn Storage,
    config: &WalConfig,
    path: &Path,
    name_seq: u64,
    prev_last: Option<u64>,
    newest: bool,
) -> Result<SegmentCheck, WalError> {
    let corrupt = |offset: u64, kind: DamageKind| WalError::Corrupt {
        segment: path.to_path_buf(),
        offset,
        kind,
    };
    let expected_first = prev_last.map_or(name_seq.max(1), |last| last.wrapping_add(1));
    if name_seq != expected_first {
        let kind = DamageKind::SegmentSeqGap {
            expected: expected_first,
            found: name_seq,
        };
        return Err(corrupt(SEGMENT_FIRST_SEQ_OFFSET as u64, kind));
    }
    let file = storage
        .open_read(path)
        .map_err(|e| WalError::io("open", path, e))?;
    // Read what is on the disk, not what a failed fsync left in the cache.
    file.drop_cached_pages()
        .map_err(|e| WalError::io("drop cached pages of", path, e))?;
    let mut window = FileWindow::new(file, READ_CHUNK_BYTES);
    let file_len_bytes = window
        .len_bytes()
        .map_err(|e| WalError::io("stat", path, e))?;
    let scan = scan_segment(
        &mut window,
        file_len_bytes,
        config.record_size_max_bytes,
        |_, _, _| {},
    )
    .map_err(|e| WalError::io("read", path, e))?;
    let scan = match scan {
        Err(_) if newest && file_len_bytes <= SEGMENT_HEADER_SIZE as u64 => {
            return Ok(SegmentCheck::HeaderTorn)
        }
        Err(damage) => return Err(corrupt(damage.offset, damage.kind)),
        Ok(scan) => scan,
    };
    if scan.header.first_seq != name_seq {
        let kind = DamageKind::FirstSeqMismatch {
            name_seq,
            header_seq: scan.header.first_seq,
        };
        return Err(corrupt(SEGMENT_FIRST_SEQ_OFFSET as u64, kind));
    }
    assert!(
        scan.valid_len_bytes <= file_len_bytes,
        "scan went past the end of {}",
        path.display()
    );
    match scan.damage {
        None => Ok(SegmentCheck::Intact {
            last_seq: scan.last_seq,
            len_bytes: scan.valid_len_bytes,
            file_len_bytes,
        }),
        Some(damage) if newest && damage.is_torn_tail() => {
            let torn_end_bytes = nonzero_end(&mut window, scan.valid_len_bytes, file_len_bytes)
                .map_err(|e| WalError::io("read", path, e))?
                .max(scan.valid_len_bytes);
            check_torn_reach(config, scan.valid_len_bytes, torn_end_bytes, damage)
                .map_err(|damage| corrupt(damage.offset, damage.kind))?;
            Ok(SegmentCheck::TornTail {
                last_seq: scan.last_seq,
                valid_len_bytes: scan.valid_len_bytes,
                torn_end_bytes,
                file_len_bytes,
            })
        }
        Some(damage) => Err(corrupt(damage.offset, damage.kind)),
    }
}

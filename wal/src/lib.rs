//! A segmented, group-committed, crash-safe write-ahead log of opaque
//! byte payloads under contiguous sequence numbers.
//!
//! The log knows nothing of what its payloads mean. It promises: a record is
//! acknowledged (`wait_durable` returns `Ok`) only after it was written and
//! `fdatasync`ed together with the directory entry of its segment; after a
//! crash every acknowledged record is replayed exactly once, in order, and
//! nothing that was never appended appears; a torn tail of the newest
//! segment is cut off (and kept in a side file), any other damage stops
//! `open` with an error naming the segment file and byte offset; after a
//! failed write or sync the log refuses everything until it is reopened.
//!
//! The log also keeps the truth about itself in a small metadata file,
//! `DIR/LOG_META`: an identity ([`Wal::log_id`], 128 random bits created with
//! the log, the same after every reopen) and its start ([`Wal::start_seq`],
//! the first record it must hold: 1 for a new log, raised durably by
//! [`Wal::delete_segments_before`] before any segment is deleted). So a lost
//! oldest segment stops `open` ([`WalError::StartMissing`]) instead of
//! silently shortening the log, an interrupted deletion is finished at the
//! next open, and no reader is handed a record before the start. A log
//! written before the file existed gets one at its next open (a fresh
//! identity; its oldest segment's first record as the start).
//!
//! Recovery reads what is on the disk, not what is in the page cache: it
//! drops each file's cached pages first (`posix_fadvise(DONTNEED)` through
//! [`ReadFile::drop_cached_pages`]), because after a failed `fsync` Linux
//! may keep data that never reached the disk in the cache, marked clean, and
//! a restart reading it would take it for durable.
//!
//! # Layout
//!
//! - `config`: [`WalConfig`], every limit as a named, validated value.
//! - `error`: [`WalError`], the one error type.
//! - [`format`](mod@format): the byte layout, pure encode/decode
//!   ([`decode_segment`] is the fuzz target); split into header, record
//!   framing, segment scan and in-memory decoding.
//! - `segment`: segment file names and durable creation (plain, or
//!   preallocated: zero-filled at full size, then given a header and a name).
//! - `preparer`: the thread that preallocates the next segment ahead.
//! - `log_meta`: reading and atomically replacing `LOG_META` (its byte
//!   layout is in [`format`](mod@format)).
//! - `start`: the start rule applied at open (finish an interrupted
//!   deletion, refuse a missing start).
//! - [`storage`]: the small file-system trait crash tests plug into.
//! - `recovery`: the decision table applied by [`Wal::open`].
//! - `torn`: a torn tail's reach, its side file and its removal.
//! - `commit_queue`: the bounded queue of appends, sequence numbers and
//!   durability waiting.
//! - `writer`: the one writer thread doing group commit.
//! - `reader`: [`WalReader`], in-order reads up to the durable end.
//! - `wal`: [`Wal`], the handle tying these together.
//!
//! # What this is not
//!
//! Not a database: no index, no random reads by key, no compaction; records
//! are deleted only as whole segments. Not for disks that lie about
//! `fdatasync`. Not a replication log: one process owns a directory (there
//! is no sharing: `Wal::open` takes an exclusive `flock` on `DIR/LOCK`, so a
//! second process opening the same log gets `WalError::Locked`).
//! `SyncMode::UnsafeNoSync` gives up durability and exists for benchmarks.
//!
//! The byte layout and recovery rules are specified in `docs/wal-format.md`.

#![forbid(unsafe_code)]

mod commit_queue;
mod config;
mod error;
pub mod format;
mod log_meta;
mod preparer;
mod reader;
mod recovery;
mod segment;
mod start;
pub mod storage;
mod torn;
mod wal;
mod writer;

pub use config::{
    Preallocation, SyncMode, WalConfig, WalObserver, BATCH_BYTES_MAX_DEFAULT,
    COMMIT_DELAY_MAX_DEFAULT, COMMIT_DELAY_MAX_LIMIT, QUEUE_BYTES_MAX_DEFAULT,
    RECORD_SIZE_MAX_BYTES_DEFAULT, SEGMENT_SIZE_MAX_BYTES_DEFAULT,
};
pub use error::WalError;
pub use format::{
    decode_segment, DamageKind, DecodedRecord, DecodedSegment, LogMetaDamage, SegmentDamage,
};
pub use log_meta::{LOG_META_FILE_NAME, LOG_META_TMP_FILE_NAME};
pub use reader::{Record, WalReader};
pub use segment::{parse_segment_file_name, segment_file_name, PREPARED_SEGMENT_FILE_NAME};
pub use storage::{DirLock, FsStorage, ReadFile, Storage, WriteFile, LOCK_FILE_NAME};
pub use wal::Wal;

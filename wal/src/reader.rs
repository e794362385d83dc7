//! Reading the log in order, from any retained sequence number up to the
//! durable one, across segments, while appends go on.
//!
//! It exists for two readers: replay at start-up and the exporter that
//! follows the log. Memory is bounded by one read window per reader.
//!
//! Promise: every record returned had a valid checksum and exactly the
//! expected sequence number; records are returned in order without gaps;
//! nothing above `durable_seq`, and nothing below the log's start, is ever
//! returned. Any mismatch is a
//! `WalError::Corrupt` naming the segment file and byte offset.

use std::path::PathBuf;
use std::sync::Arc;

use crate::commit_queue::CommitQueue;
use crate::error::WalError;
use crate::format::{decode_segment_header, read_record_at, ByteSource, DamageKind, RecordAt};
use crate::format::{RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE};
use crate::recovery::READ_CHUNK_BYTES;
use crate::storage::{FileWindow, Storage};

/// One record, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The record's sequence number.
    pub seq: u64,
    /// The payload exactly as it was appended.
    pub payload: Vec<u8>,
}

struct Cursor {
    path: PathBuf,
    first_seq: u64,
    window: FileWindow,
    /// Byte offset of the next record in the segment.
    offset: u64,
    /// Sequence number of the record at `offset`.
    seq_at_offset: u64,
}

/// Follows the log from a sequence number. As an [`Iterator`] it yields
/// `None` at the current durable end, and yields again once more records
/// become durable (it is deliberately not fused), so the exporter can keep
/// one reader and poll it. After an error it yields `None` for good.
pub struct WalReader {
    shared: Arc<CommitQueue>,
    storage: Arc<dyn Storage>,
    next_seq: u64,
    cursor: Option<Cursor>,
    errored: bool,
}

impl WalReader {
    pub(crate) fn new(
        shared: Arc<CommitQueue>,
        storage: Arc<dyn Storage>,
        from_seq: u64,
    ) -> Result<Self, WalError> {
        let next_seq = from_seq.max(1);
        let first_seq = shared.first_retained_seq();
        if next_seq < first_seq {
            return Err(WalError::NotRetained {
                seq: next_seq,
                first_seq,
            });
        }
        Ok(WalReader {
            shared,
            storage,
            next_seq,
            cursor: None,
            errored: false,
        })
    }

    /// The sequence number the next record will have.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The next durable record, borrowed from the read window (no copy), or
    /// `None` at the current durable end.
    pub fn next_record(&mut self) -> Result<Option<(u64, &[u8])>, WalError> {
        if self.next_seq > self.shared.durable_seq() {
            return Ok(None);
        }
        let total_bytes = self.locate_next()?;
        let seq = self.next_seq;
        let Some(cursor) = self.cursor.as_mut() else {
            unreachable!("locate_next leaves a cursor")
        };
        let offset = cursor.offset;
        let bytes = cursor
            .window
            .bytes_at(offset, total_bytes)
            .map_err(|e| WalError::io("read", &cursor.path, e))?;
        // A short read here would return a cut payload as a whole record.
        assert_eq!(
            bytes.len(),
            total_bytes,
            "the record checked at byte offset {offset} of {} must still be whole",
            cursor.path.display()
        );
        cursor.offset += total_bytes as u64;
        cursor.seq_at_offset += 1;
        self.next_seq += 1;
        Ok(Some((seq, &bytes[RECORD_HEADER_SIZE..])))
    }

    /// Positions the cursor on the record `next_seq` (known to be durable)
    /// and returns its framed length.
    fn locate_next(&mut self) -> Result<usize, WalError> {
        // The window may hold bytes read before the record was written (the
        // zeros of a preallocated segment, or a batch being written): those
        // are read again once before they count as the end or as damage.
        let mut reread = false;
        // Bounded: every iteration skips a record, moves to a later segment,
        // or re-reads the window (once per record).
        loop {
            if self.cursor.is_none() {
                self.cursor = Some(self.open_segment(self.next_seq)?);
            }
            let Some(cursor) = self.cursor.as_mut() else {
                unreachable!("a cursor was just opened")
            };
            let record_size_max_bytes = self.shared.config.record_size_max_bytes;
            let at = read_record_at(&mut cursor.window, cursor.offset, record_size_max_bytes)
                .map_err(|e| WalError::io("read", &cursor.path, e))?;
            let expected = cursor.seq_at_offset;
            let cursor_first_seq = cursor.first_seq;
            let stale_suspect = !matches!(at, RecordAt::Valid { .. });
            if stale_suspect && !reread {
                reread = true;
                cursor.window.invalidate();
                continue;
            }
            reread = false;
            let kind = match at {
                RecordAt::Valid {
                    seq, total_bytes, ..
                } if seq == expected && seq == self.next_seq => {
                    return Ok(total_bytes);
                }
                RecordAt::Valid {
                    seq, total_bytes, ..
                } if seq == expected && seq < self.next_seq => {
                    cursor.offset += total_bytes as u64;
                    cursor.seq_at_offset += 1;
                    continue;
                }
                RecordAt::Valid { seq, .. } => DamageKind::UnexpectedSeq {
                    expected,
                    found: seq,
                },
                RecordAt::End | RecordAt::Zeros => {
                    match self.next_segment_after(cursor_first_seq) {
                        Some(next_first) if next_first == expected && expected == self.next_seq => {
                            self.cursor = Some(self.open_segment(self.next_seq)?);
                            continue;
                        }
                        Some(next_first) => DamageKind::SegmentSeqGap {
                            expected,
                            found: next_first,
                        },
                        None => DamageKind::RecordTruncated,
                    }
                }
                RecordAt::Damaged(kind) => kind,
            };
            let Some(cursor) = self.cursor.as_ref() else {
                unreachable!("the cursor is still there")
            };
            return Err(WalError::Corrupt {
                segment: cursor.path.clone(),
                offset: cursor.offset,
                kind,
            });
        }
    }

    fn next_segment_after(&self, first_seq: u64) -> Option<u64> {
        let segments = self.shared.segments.lock();
        segments
            .iter()
            .map(|segment| segment.first_seq)
            .find(|&seq| seq > first_seq)
    }

    /// Opens the segment that holds `seq` and checks its header.
    fn open_segment(&self, seq: u64) -> Result<Cursor, WalError> {
        let first_seq = self.shared.first_retained_seq();
        if seq < first_seq {
            return Err(WalError::NotRetained { seq, first_seq });
        }
        let segment = {
            let segments = self.shared.segments.lock();
            match segments
                .iter()
                .rev()
                .find(|segment| segment.first_seq <= seq)
            {
                Some(segment) => segment.clone(),
                None => return Err(WalError::NotRetained { seq, first_seq }),
            }
        };
        let path = segment.path;
        let file = self
            .storage
            .open_read(&path)
            .map_err(|e| WalError::io("open", &path, e))?;
        let mut window = FileWindow::new(file, READ_CHUNK_BYTES);
        let header_bytes = window
            .bytes_at(0, SEGMENT_HEADER_SIZE)
            .map_err(|e| WalError::io("read", &path, e))?;
        let header = match decode_segment_header(header_bytes) {
            Ok(header) => header,
            Err(kind) => {
                return Err(WalError::Corrupt {
                    segment: path,
                    offset: 0,
                    kind,
                })
            }
        };
        if header.first_seq != segment.first_seq {
            let kind = DamageKind::FirstSeqMismatch {
                name_seq: segment.first_seq,
                header_seq: header.first_seq,
            };
            return Err(WalError::Corrupt {
                segment: path,
                offset: 0,
                kind,
            });
        }
        Ok(Cursor {
            path,
            first_seq: segment.first_seq,
            window,
            offset: SEGMENT_HEADER_SIZE as u64,
            seq_at_offset: segment.first_seq,
        })
    }
}

impl Iterator for WalReader {
    type Item = Result<Record, WalError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.errored {
            return None;
        }
        match self.next_record() {
            Ok(Some((seq, payload))) => Some(Ok(Record {
                seq,
                payload: payload.to_vec(),
            })),
            Ok(None) => None,
            Err(error) => {
                self.errored = true;
                Some(Err(error))
            }
        }
    }
}

//! One group-commit batch as one stream message: our own versioned format
//! with a CRC-32 inside, so that a standby checks what it applies without
//! trusting the transport, and so that the format can change under a
//! version number.
//!
//! Promises: `decode` never panics and never allocates more than the input
//! holds, whatever the bytes; every single damaged byte and every
//! truncation is refused; `decode(encode(b)) == b`.
//!
//! Layout (little-endian; offsets are the constants below):
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `FSRB` |
//! | 2 | format version (1) |
//! | 2 | flags, 0 (reserved) |
//! | 8 | epoch of the owner that wrote the batch |
//! | 8 | batch number within that epoch |
//! | 8 | sequence number of the first record in the log (at least 1) |
//! | 4 | record count (at least 1) |
//! | ... | each record: length (4 bytes) then its bytes, as the log stores them |
//! | 4 | CRC-32 (crc32fast) of every byte before it |

pub const MAGIC: [u8; 4] = *b"FSRB";
pub const FORMAT_VERSION: u16 = 1;

const MAGIC_OFFSET: usize = 0;
const VERSION_OFFSET: usize = MAGIC_OFFSET + 4;
const FLAGS_OFFSET: usize = VERSION_OFFSET + 2;
const EPOCH_OFFSET: usize = FLAGS_OFFSET + 2;
const BATCH_NUMBER_OFFSET: usize = EPOCH_OFFSET + 8;
const FIRST_SEQ_OFFSET: usize = BATCH_NUMBER_OFFSET + 8;
const RECORD_COUNT_OFFSET: usize = FIRST_SEQ_OFFSET + 8;
/// Bytes before the first record.
pub const HEADER_BYTES: usize = RECORD_COUNT_OFFSET + 4;
const RECORD_LENGTH_BYTES: usize = 4;
const CRC_BYTES: usize = 4;
/// The smallest batch: a header, one empty record, the CRC.
pub const BATCH_BYTES_MIN: usize = HEADER_BYTES + RECORD_LENGTH_BYTES + CRC_BYTES;

/// The records of one group commit, written by the owner of `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub epoch: u64,
    /// Counts the batches of one epoch; with the epoch it names the batch
    /// (`msg_id`), so that a re-publish is recognised as the same batch.
    pub batch_number: u64,
    /// The log sequence number of `records[0]`; the others follow it.
    pub first_seq: u64,
    /// Each record's bytes as the log stores them (opaque here).
    pub records: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EncodeError {
    #[error("a batch holds at least one record")]
    Empty,
    #[error("a batch's first record sequence number is at least 1")]
    FirstSeqZero,
    #[error("records {first_seq}.. ({count} of them) run past the largest sequence number")]
    SeqOverflow { first_seq: u64, count: usize },
    #[error("record of {record_bytes} bytes is longer than a batch can say")]
    RecordTooLong { record_bytes: usize },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("{len_bytes} bytes are fewer than the smallest batch ({BATCH_BYTES_MIN})")]
    TooShort { len_bytes: usize },
    #[error("not a batch (magic {found:02x?})")]
    Magic { found: [u8; 4] },
    #[error("checksum mismatch: stored {stored:08x}, computed {computed:08x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("batch format version {0} is not known (this build reads {FORMAT_VERSION})")]
    Version(u16),
    #[error("reserved flags {0:#06x} are set")]
    Flags(u16),
    #[error(transparent)]
    Invalid(#[from] EncodeError),
    #[error("record {index} runs past the end of the batch")]
    Truncated { index: u32 },
    #[error("{0} bytes after the last record")]
    TrailingBytes(usize),
}

impl Batch {
    /// The `Nats-Msg-Id` of this batch: the same for every re-publish of
    /// it, different for every other batch (epochs never repeat, batch
    /// numbers never repeat within an epoch).
    pub fn msg_id(&self) -> String {
        msg_id(self.epoch, self.batch_number)
    }

    /// The log sequence number of the last record.
    pub fn last_seq(&self) -> u64 {
        let count = u64::try_from(self.records.len()).unwrap_or(u64::MAX);
        self.first_seq.saturating_add(count.saturating_sub(1))
    }

    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let count = self.check()?;
        let records_bytes: usize = self
            .records
            .iter()
            .map(|record| RECORD_LENGTH_BYTES + record.len())
            .sum();
        let mut out = Vec::with_capacity(HEADER_BYTES + records_bytes + CRC_BYTES);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&self.batch_number.to_le_bytes());
        out.extend_from_slice(&self.first_seq.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        for record in &self.records {
            let record_bytes =
                u32::try_from(record.len()).map_err(|_| EncodeError::RecordTooLong {
                    record_bytes: record.len(),
                })?;
            out.extend_from_slice(&record_bytes.to_le_bytes());
            out.extend_from_slice(record);
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    /// The record count as stored, once the batch is known to be valid.
    fn check(&self) -> Result<u32, EncodeError> {
        let count = self.records.len();
        if count == 0 {
            return Err(EncodeError::Empty);
        }
        if self.first_seq == 0 {
            return Err(EncodeError::FirstSeqZero);
        }
        let overflow = EncodeError::SeqOverflow {
            first_seq: self.first_seq,
            count,
        };
        let stored = u32::try_from(count).map_err(|_| overflow.clone())?;
        self.first_seq
            .checked_add(u64::from(stored) - 1)
            .ok_or(overflow)?;
        Ok(stored)
    }

    pub fn decode(bytes: &[u8]) -> Result<Batch, DecodeError> {
        if bytes.len() < BATCH_BYTES_MIN {
            return Err(DecodeError::TooShort {
                len_bytes: bytes.len(),
            });
        }
        let magic = array::<4>(bytes, MAGIC_OFFSET);
        if magic != MAGIC {
            return Err(DecodeError::Magic { found: magic });
        }
        let (body, crc) = bytes.split_at(bytes.len() - CRC_BYTES);
        let stored = u32::from_le_bytes(array::<4>(crc, 0));
        let computed = crc32fast::hash(body);
        if stored != computed {
            return Err(DecodeError::Checksum { stored, computed });
        }
        let version = u16::from_le_bytes(array::<2>(body, VERSION_OFFSET));
        if version != FORMAT_VERSION {
            return Err(DecodeError::Version(version));
        }
        let flags = u16::from_le_bytes(array::<2>(body, FLAGS_OFFSET));
        if flags != 0 {
            return Err(DecodeError::Flags(flags));
        }
        let batch = Batch {
            epoch: u64::from_le_bytes(array::<8>(body, EPOCH_OFFSET)),
            batch_number: u64::from_le_bytes(array::<8>(body, BATCH_NUMBER_OFFSET)),
            first_seq: u64::from_le_bytes(array::<8>(body, FIRST_SEQ_OFFSET)),
            records: decode_records(body)?,
        };
        batch.check()?;
        Ok(batch)
    }
}

/// `e<epoch>-b<batch number>`.
pub fn msg_id(epoch: u64, batch_number: u64) -> String {
    format!("e{epoch}-b{batch_number}")
}

/// The records of a checked body (header and records, CRC removed).
fn decode_records(body: &[u8]) -> Result<Vec<Vec<u8>>, DecodeError> {
    let count = u32::from_le_bytes(array::<4>(body, RECORD_COUNT_OFFSET));
    let mut rest = &body[HEADER_BYTES..];
    // Each record takes at least its length field: a count that the bytes
    // cannot hold is refused before anything is allocated for it.
    let possible = rest.len() / RECORD_LENGTH_BYTES;
    let mut records = Vec::with_capacity(possible.min(count as usize));
    for index in 0..count {
        if rest.len() < RECORD_LENGTH_BYTES {
            return Err(DecodeError::Truncated { index });
        }
        let (length, after) = rest.split_at(RECORD_LENGTH_BYTES);
        let record_bytes = u32::from_le_bytes(array::<4>(length, 0)) as usize;
        if after.len() < record_bytes {
            return Err(DecodeError::Truncated { index });
        }
        let (record, after) = after.split_at(record_bytes);
        records.push(record.to_vec());
        rest = after;
    }
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok(records)
}

/// `N` bytes at `offset`; callers have checked that they are there.
fn array<const N: usize>(bytes: &[u8], offset: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(slice) = bytes.get(offset..offset + N) {
        out.copy_from_slice(slice);
    }
    out
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;

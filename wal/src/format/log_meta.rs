//! The log's metadata file (`LOG_META`): its identity and where it starts.
//!
//! It exists so that a log can say what it is (128 random bits created with
//! it) and which record is its first (`start_seq`), so that a lost oldest
//! segment is noticed instead of silently shortening the log. Segment files
//! do not change; this is a separate, fixed-size file of 40 bytes.
//!
//! Promise: [`decode_log_meta`] accepts exactly the bytes
//! [`encode_log_meta`] produces (right length, magic, version, checksum, a
//! start of at least 1) and never panics on anything else.

use std::fmt;

use super::{read_u32, read_u64};

/// First bytes of the metadata file.
pub const LOG_META_MAGIC: [u8; 8] = *b"FSWALMET";
/// The only metadata format this crate reads and writes.
pub const LOG_META_VERSION: u32 = 1;

/// Metadata: magic.
pub const LOG_META_MAGIC_OFFSET: usize = 0;
pub const LOG_META_MAGIC_SIZE: usize = 8;
/// Metadata: format version, u32 little-endian.
pub const LOG_META_VERSION_OFFSET: usize = LOG_META_MAGIC_OFFSET + LOG_META_MAGIC_SIZE;
pub const LOG_META_VERSION_SIZE: usize = 4;
/// Metadata: the log's identity, u128 little-endian.
pub const LOG_META_ID_OFFSET: usize = LOG_META_VERSION_OFFSET + LOG_META_VERSION_SIZE;
pub const LOG_META_ID_SIZE: usize = 16;
/// Metadata: sequence number of the log's first record, u64 little-endian.
pub const LOG_META_START_SEQ_OFFSET: usize = LOG_META_ID_OFFSET + LOG_META_ID_SIZE;
pub const LOG_META_START_SEQ_SIZE: usize = 8;
/// Metadata: CRC-32 (IEEE) of all bytes before it, u32 little-endian.
pub const LOG_META_CRC_OFFSET: usize = LOG_META_START_SEQ_OFFSET + LOG_META_START_SEQ_SIZE;
pub const LOG_META_CRC_SIZE: usize = 4;
/// Total size of the metadata file.
pub const LOG_META_SIZE: usize = LOG_META_CRC_OFFSET + LOG_META_CRC_SIZE;

const _: () = assert!(LOG_META_SIZE == 40);

/// What the metadata file says about its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogMeta {
    /// 128 random bits created with the log; never changes.
    pub log_id: u128,
    /// Sequence number of the log's first record (1 for a new log); only
    /// grows, when whole segments are deleted.
    pub start_seq: u64,
}

/// Why a metadata file cannot be trusted. Non-exhaustive like
/// [`crate::WalError`], which carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogMetaDamage {
    /// The file is not exactly [`LOG_META_SIZE`] bytes long.
    WrongLength { len_bytes: u64 },
    /// The file does not start with [`LOG_META_MAGIC`].
    BadMagic,
    /// The checksum does not match.
    ChecksumMismatch,
    /// A format version this crate does not know.
    UnsupportedVersion { version: u32 },
    /// A start of 0: sequence numbers begin at 1.
    ZeroStartSeq,
}

impl fmt::Display for LogMetaDamage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogMetaDamage::WrongLength { len_bytes } => {
                write!(f, "{len_bytes} bytes long, not {LOG_META_SIZE}")
            }
            LogMetaDamage::BadMagic => write!(f, "bad magic (not a wal metadata file)"),
            LogMetaDamage::ChecksumMismatch => write!(f, "checksum mismatch"),
            LogMetaDamage::UnsupportedVersion { version } => {
                write!(f, "unsupported metadata format version {version}")
            }
            LogMetaDamage::ZeroStartSeq => write!(f, "start sequence number 0"),
        }
    }
}

/// Encodes the metadata file's whole contents.
pub fn encode_log_meta(meta: &LogMeta) -> [u8; LOG_META_SIZE] {
    let mut bytes = [0u8; LOG_META_SIZE];
    bytes[LOG_META_MAGIC_OFFSET..][..LOG_META_MAGIC_SIZE].copy_from_slice(&LOG_META_MAGIC);
    bytes[LOG_META_VERSION_OFFSET..][..LOG_META_VERSION_SIZE]
        .copy_from_slice(&LOG_META_VERSION.to_le_bytes());
    bytes[LOG_META_ID_OFFSET..][..LOG_META_ID_SIZE].copy_from_slice(&meta.log_id.to_le_bytes());
    bytes[LOG_META_START_SEQ_OFFSET..][..LOG_META_START_SEQ_SIZE]
        .copy_from_slice(&meta.start_seq.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..LOG_META_CRC_OFFSET]);
    bytes[LOG_META_CRC_OFFSET..][..LOG_META_CRC_SIZE].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// Decodes the metadata file's whole contents.
pub fn decode_log_meta(bytes: &[u8]) -> Result<LogMeta, LogMetaDamage> {
    if bytes.len() != LOG_META_SIZE {
        return Err(LogMetaDamage::WrongLength {
            len_bytes: bytes.len() as u64,
        });
    }
    if bytes[LOG_META_MAGIC_OFFSET..][..LOG_META_MAGIC_SIZE] != LOG_META_MAGIC {
        return Err(LogMetaDamage::BadMagic);
    }
    if crc32fast::hash(&bytes[..LOG_META_CRC_OFFSET]) != read_u32(bytes, LOG_META_CRC_OFFSET) {
        return Err(LogMetaDamage::ChecksumMismatch);
    }
    let version = read_u32(bytes, LOG_META_VERSION_OFFSET);
    if version != LOG_META_VERSION {
        return Err(LogMetaDamage::UnsupportedVersion { version });
    }
    let mut id = [0u8; LOG_META_ID_SIZE];
    id.copy_from_slice(&bytes[LOG_META_ID_OFFSET..][..LOG_META_ID_SIZE]);
    let start_seq = read_u64(bytes, LOG_META_START_SEQ_OFFSET);
    if start_seq == 0 {
        return Err(LogMetaDamage::ZeroStartSeq);
    }
    Ok(LogMeta {
        log_id: u128::from_le_bytes(id),
        start_seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_and_every_single_byte_flip_is_detected() {
        let meta = LogMeta {
            log_id: 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
            start_seq: 4097,
        };
        let bytes = encode_log_meta(&meta);
        assert_eq!(decode_log_meta(&bytes), Ok(meta));
        for i in 0..bytes.len() {
            let mut flipped = bytes;
            flipped[i] ^= 0x40;
            assert!(decode_log_meta(&flipped).is_err(), "flip at byte {i}");
        }
        for len in 0..bytes.len() {
            assert_eq!(
                decode_log_meta(&bytes[..len]),
                Err(LogMetaDamage::WrongLength {
                    len_bytes: len as u64
                })
            );
        }
    }

    #[test]
    fn a_zero_start_is_refused_even_with_a_valid_checksum() {
        let bytes = encode_log_meta(&LogMeta {
            log_id: 7,
            start_seq: 0,
        });
        assert_eq!(decode_log_meta(&bytes), Err(LogMetaDamage::ZeroStartSeq));
    }
}

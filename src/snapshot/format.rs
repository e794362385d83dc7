//! A snapshot file's bytes: a fixed header, then the body in bincode 2.0.1
//! (standard configuration, like the log's records), pinned by the golden
//! file `tests/golden/snapshot-v1.hex`.
//!
//! Header (24 bytes, little-endian): magic `FSSNAPv1` (8), format version
//! (u32), CRC-32 of the body (u32), body length in bytes (u64). Body:
//! [`SnapshotBody`]. The header lets a start tell a damaged file (wrong
//! magic, a version it does not know, a truncated or overlong body, a
//! checksum mismatch) from a valid one before it decodes anything.
//!
//! Promise: [`decode`] never panics on any bytes, and allocates at most
//! [`SNAPSHOT_BODY_BYTES_MAX`] for a body whose checksum matched.

use bincode::{Decode, Encode};

use crate::engine::{Engine, EngineImage, ImagePart, ImageSource, SaleHeader, UserImage};

/// First 8 bytes of every snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"FSSNAPv1";
/// The format version this build writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;
/// Header bytes before the body.
pub const SNAPSHOT_HEADER_BYTES: usize = 24;
/// Largest body accepted (and written): about 10^7 users' carts and
/// purchases fit with room to spare.
pub const SNAPSHOT_BODY_BYTES_MAX: usize = 2 * 1024 * 1024 * 1024;

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<SNAPSHOT_BODY_BYTES_MAX>()
}

/// What a snapshot holds: the engine's state after every record up to
/// `seq` of the log `log_id`. Field order is part of the format.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct SnapshotBody {
    pub log_id: u128,
    /// The last record the state includes; the log after it is replayed.
    pub seq: u64,
    /// When it was written (milliseconds since the Unix epoch), for its age.
    pub written_unix_ms: i64,
    pub image: EngineImage,
}

/// Why bytes are not a valid snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotDamage {
    #[error("{len_bytes} bytes: shorter than the {SNAPSHOT_HEADER_BYTES}-byte header")]
    TooShort { len_bytes: usize },
    #[error("not a snapshot file (wrong magic)")]
    BadMagic,
    #[error("format version {version}, this build reads version {SNAPSHOT_VERSION}")]
    UnsupportedVersion { version: u32 },
    #[error("truncated: the header announces {expected_bytes} body bytes, {found_bytes} follow")]
    Truncated {
        expected_bytes: u64,
        found_bytes: u64,
    },
    #[error("{extra_bytes} bytes after the announced body")]
    TrailingBytes { extra_bytes: u64 },
    #[error("body of {body_bytes} bytes is over the limit of {SNAPSHOT_BODY_BYTES_MAX}")]
    TooLarge { body_bytes: u64 },
    #[error("checksum mismatch: header says {expected:08x}, body has {found:08x}")]
    Checksum { expected: u32, found: u32 },
    #[error("body cannot be decoded: {0}")]
    Undecodable(String),
}

impl SnapshotDamage {
    /// A short fixed name of the damage, for `/health` and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            SnapshotDamage::TooShort { .. } | SnapshotDamage::Truncated { .. } => "truncated",
            SnapshotDamage::BadMagic => "bad_magic",
            SnapshotDamage::UnsupportedVersion { .. } => "unsupported_version",
            SnapshotDamage::TrailingBytes { .. } | SnapshotDamage::TooLarge { .. } => "bad_length",
            SnapshotDamage::Checksum { .. } => "checksum",
            SnapshotDamage::Undecodable(_) => "undecodable",
        }
    }
}

/// Why a snapshot could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("cannot encode the snapshot body")]
    Bincode(#[from] bincode::error::EncodeError),
}

/// The body's own fields, before the image. Field order is part of the
/// format (those of [`SnapshotBody`] before `image`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct BodyMeta {
    pub log_id: u128,
    pub seq: u64,
    pub written_unix_ms: i64,
}

/// The file's bytes for `body`.
pub fn encode(body: &SnapshotBody) -> Result<Vec<u8>, EncodeError> {
    let mut bytes = vec![0u8; SNAPSHOT_HEADER_BYTES];
    bincode::encode_into_std_write(body, &mut bytes, bincode_config())?;
    Ok(seal(bytes))
}

/// The file's bytes for a snapshot of `engine` (which nobody else writes
/// to), encoded straight from it one user at a time: the same bytes as
/// [`encode`] of its image, without the image in memory.
pub fn encode_engine(meta: &BodyMeta, engine: &Engine) -> Result<Vec<u8>, EncodeError> {
    let mut bytes = vec![0u8; SNAPSHOT_HEADER_BYTES];
    let config = bincode_config();
    bincode::encode_into_std_write(meta, &mut bytes, config)?;
    engine.image_parts(|part| {
        match part {
            ImagePart::Start {
                time_floor_unix_ms,
                sales,
            } => bincode::encode_into_std_write((time_floor_unix_ms, sales), &mut bytes, config),
            ImagePart::Sale { header, users } => {
                bincode::encode_into_std_write((header, users), &mut bytes, config)
            }
            ImagePart::User(user) => bincode::encode_into_std_write(user, &mut bytes, config),
        }
        .map(|_| ())
    })?;
    Ok(seal(bytes))
}

/// Fills in the header of `bytes` (header space, then the body).
fn seal(mut bytes: Vec<u8>) -> Vec<u8> {
    let body_bytes = (bytes.len() - SNAPSHOT_HEADER_BYTES) as u64;
    let crc = crc32fast::hash(&bytes[SNAPSHOT_HEADER_BYTES..]);
    bytes[..8].copy_from_slice(&SNAPSHOT_MAGIC);
    bytes[8..12].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    bytes[12..16].copy_from_slice(&crc.to_le_bytes());
    bytes[16..24].copy_from_slice(&body_bytes.to_le_bytes());
    bytes
}

/// A checked snapshot's body being decoded piece by piece: its fields,
/// then the image as an [`ImageSource`].
pub struct BodyReader<'a> {
    rest: &'a [u8],
}

impl<'a> BodyReader<'a> {
    /// Decodes the body's own fields of the file `bytes`, whose header
    /// and checksum were checked ([`check`]; this skips the header); the
    /// image follows in the reader.
    pub fn new(bytes: &'a [u8]) -> Result<(BodyMeta, BodyReader<'a>), SnapshotDamage> {
        let mut reader = BodyReader {
            rest: bytes.get(SNAPSHOT_HEADER_BYTES..).unwrap_or_default(),
        };
        let meta = reader.next().map_err(SnapshotDamage::Undecodable)?;
        Ok((meta, reader))
    }

    fn next<T: Decode<()>>(&mut self) -> Result<T, String> {
        let (value, used) =
            bincode::decode_from_slice(self.rest, bincode_config()).map_err(|e| e.to_string())?;
        self.rest = self.rest.get(used..).unwrap_or_default();
        Ok(value)
    }

    /// After the image: nothing may follow it.
    pub fn finish(&self) -> Result<(), SnapshotDamage> {
        if self.rest.is_empty() {
            return Ok(());
        }
        Err(SnapshotDamage::Undecodable(format!(
            "{} bytes after the body's end",
            self.rest.len()
        )))
    }
}

impl ImageSource for BodyReader<'_> {
    fn start(&mut self) -> Result<(i64, u64), String> {
        self.next()
    }

    fn sale(&mut self) -> Result<(SaleHeader, u64), String> {
        self.next()
    }

    fn user(&mut self) -> Result<UserImage, String> {
        self.next()
    }
}

/// The checked header: the body's expected checksum and length.
struct Header {
    crc: u32,
    body_bytes: u64,
}

fn decode_header(bytes: &[u8]) -> Result<Header, SnapshotDamage> {
    let Some(header) = bytes.get(..SNAPSHOT_HEADER_BYTES) else {
        return Err(SnapshotDamage::TooShort {
            len_bytes: bytes.len(),
        });
    };
    let u32_at = |at: usize| {
        let mut word = [0u8; 4];
        word.copy_from_slice(&header[at..at + 4]);
        u32::from_le_bytes(word)
    };
    if header[..8] != SNAPSHOT_MAGIC {
        return Err(SnapshotDamage::BadMagic);
    }
    let version = u32_at(8);
    if version != SNAPSHOT_VERSION {
        return Err(SnapshotDamage::UnsupportedVersion { version });
    }
    let mut length = [0u8; 8];
    length.copy_from_slice(&header[16..24]);
    Ok(Header {
        crc: u32_at(12),
        body_bytes: u64::from_le_bytes(length),
    })
}

/// Checks the header (magic, version, length, checksum) and decodes the
/// body. Never panics.
pub fn decode(bytes: &[u8]) -> Result<SnapshotBody, SnapshotDamage> {
    check(bytes)?;
    decode_body(&bytes[SNAPSHOT_HEADER_BYTES..], bincode_config())
}

/// Checks the header (magic, version, length) and the body's checksum,
/// without decoding the body.
pub fn check(bytes: &[u8]) -> Result<(), SnapshotDamage> {
    let header = decode_header(bytes)?;
    let found_bytes = (bytes.len() - SNAPSHOT_HEADER_BYTES) as u64;
    if header.body_bytes > SNAPSHOT_BODY_BYTES_MAX as u64 {
        return Err(SnapshotDamage::TooLarge {
            body_bytes: header.body_bytes,
        });
    }
    if found_bytes < header.body_bytes {
        return Err(SnapshotDamage::Truncated {
            expected_bytes: header.body_bytes,
            found_bytes,
        });
    }
    if found_bytes > header.body_bytes {
        return Err(SnapshotDamage::TrailingBytes {
            extra_bytes: found_bytes - header.body_bytes,
        });
    }
    let body = &bytes[SNAPSHOT_HEADER_BYTES..];
    let found = crc32fast::hash(body);
    if found != header.crc {
        return Err(SnapshotDamage::Checksum {
            expected: header.crc,
            found,
        });
    }
    Ok(())
}

/// The body alone, under `config`'s limit on what it may claim.
fn decode_body(
    body: &[u8],
    config: impl bincode::config::Config,
) -> Result<SnapshotBody, SnapshotDamage> {
    let (decoded, used) = bincode::decode_from_slice(body, config)
        .map_err(|error| SnapshotDamage::Undecodable(error.to_string()))?;
    if used != body.len() {
        return Err(SnapshotDamage::Undecodable(format!(
            "{} bytes after the body's end",
            body.len() - used
        )));
    }
    Ok(decoded)
}

/// What the fuzz target lets a body claim: small, so that arbitrary
/// lengths in arbitrary bytes cannot make it allocate gigabytes.
pub const FUZZ_BODY_BYTES_MAX: usize = 1024 * 1024;

/// The fuzz target's function. `data` is tried twice: as a whole file
/// (header checks, checksum, body), and as a body alone (a checksum in the
/// way would keep a fuzzer from ever reaching the body decoder). A body
/// that decodes must re-encode to the same value and, rebuilt into an
/// engine, may be refused but must not panic.
pub fn fuzz_decode_snapshot(data: &[u8]) {
    let as_file = decode(data).ok();
    let fuzz_config = bincode::config::standard().with_limit::<FUZZ_BODY_BYTES_MAX>();
    let as_body = decode_body(data, fuzz_config).ok();
    for body in as_file.iter().chain(as_body.iter()) {
        let again = encode(body).ok().and_then(|bytes| decode(&bytes).ok());
        assert_eq!(again.as_ref(), Some(body), "a valid snapshot round-trips");
        fuzz_restore(body);
    }
    // The start's path: decoded piece by piece straight into an engine,
    // header unchecked, so that any bytes reach the piecewise decoder.
    let mut header = vec![0u8; SNAPSHOT_HEADER_BYTES];
    header.extend_from_slice(data);
    if let Ok((meta, mut reader)) = BodyReader::new(&header) {
        if let Some(engine) = fuzz_engine() {
            if engine.restore_from(&mut reader, meta.seq, 1).is_ok() {
                let _ = reader.finish();
                let _ = engine.audit();
            }
        }
    }
}

fn fuzz_engine() -> Option<crate::engine::Engine> {
    use std::sync::Arc;
    let clock = Arc::new(crate::domain::ManualClock::new(
        chrono::DateTime::UNIX_EPOCH,
    ));
    let journal = Arc::new(crate::engine::MemoryJournal::default());
    crate::engine::Engine::new(crate::engine::EngineConfig::default(), clock, journal).ok()
}

fn fuzz_restore(body: &SnapshotBody) {
    if let Some(engine) = fuzz_engine() {
        if engine.restore(&body.image, body.seq).is_ok() {
            // Whatever it says, it must say it without panicking.
            let _ = engine.audit();
        }
    }
}

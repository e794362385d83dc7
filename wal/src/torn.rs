//! A torn tail of the newest segment: how far it may reach, keeping its
//! bytes in a side file, and removing it.
//!
//! It exists so that recovery's one repair is in one place. Promise: no
//! byte is removed before it is durable in `<segment>.torn-<offset>`; a
//! preallocated segment keeps its size (its torn bytes become zeros again);
//! damage reaching further than one unsynced batch is never taken for a
//! torn write.

use std::path::Path;

use crate::config::WalConfig;
use crate::error::WalError;
use crate::format::{ByteSource, DamageKind, SegmentDamage};
use crate::recovery::READ_CHUNK_BYTES;
use crate::storage::{FileWindow, Storage, WriteFile};

/// A torn write may garble the rest of the page its last byte lands in.
const TORN_PAGE_BYTES: u64 = 4096;

/// Only one batch is ever unsynced (invariant 3): a torn write cannot
/// reach further than one batch (and the rest of its last page) past the
/// records that are whole. Damage that does is refused.
pub(crate) fn check_torn_reach(
    config: &WalConfig,
    valid_len_bytes: u64,
    torn_end_bytes: u64,
    damage: SegmentDamage,
) -> Result<(), SegmentDamage> {
    let reach_max = valid_len_bytes + config.batch_bytes_max as u64 + TORN_PAGE_BYTES;
    if torn_end_bytes <= reach_max {
        return Ok(());
    }
    Err(SegmentDamage {
        offset: damage.offset,
        kind: DamageKind::BeyondOneBatch {
            damage: Box::new(damage.kind),
            end_offset: torn_end_bytes,
        },
    })
}

/// Removes a torn tail (already saved): truncates the file when the tail
/// reaches its end; overwrites the tail with zeros when zeros follow it (a
/// preallocated segment keeps its size, and zeros are its end of log).
pub(crate) fn cut_torn_tail(
    file: &mut dyn WriteFile,
    path: &Path,
    valid_len_bytes: u64,
    torn_end_bytes: u64,
    file_len_bytes: u64,
) -> Result<(), WalError> {
    if torn_end_bytes >= file_len_bytes {
        return file
            .set_len(valid_len_bytes)
            .map_err(|e| WalError::io("truncate", path, e));
    }
    let zeros = vec![0u8; (torn_end_bytes - valid_len_bytes) as usize];
    file.write_all_at(valid_len_bytes, &zeros)
        .map_err(|e| WalError::io("zero torn tail of", path, e))
}

/// Copies the torn tail (up to `torn_end_bytes`; only zeros follow it) to
/// `<segment>.torn-<offset>` and makes the copy durable before the caller
/// cuts it off, so that no byte is ever lost without a trace.
pub(crate) fn save_torn_tail(
    storage: &dyn Storage,
    path: &Path,
    valid_len_bytes: u64,
    torn_end_bytes: u64,
) -> Result<(), WalError> {
    let mut side_name = path.file_name().unwrap_or_default().to_os_string();
    side_name.push(format!(".torn-{valid_len_bytes:020}"));
    let side = path.with_file_name(side_name);
    let file = storage
        .open_read(path)
        .map_err(|e| WalError::io("open", path, e))?;
    let mut window = FileWindow::new(file, READ_CHUNK_BYTES);
    let mut out = storage
        .create(&side)
        .map_err(|e| WalError::io("create", &side, e))?;
    let mut offset = valid_len_bytes;
    // Bounded by the file length: every iteration copies at least one byte.
    while offset < torn_end_bytes {
        let want = (torn_end_bytes - offset).min(READ_CHUNK_BYTES as u64) as usize;
        let chunk = window
            .bytes_at(offset, want)
            .map_err(|e| WalError::io("read", path, e))?;
        if chunk.is_empty() {
            break;
        }
        out.write_all_at(offset - valid_len_bytes, chunk)
            .map_err(|e| WalError::io("write", &side, e))?;
        offset += chunk.len() as u64;
    }
    out.sync_data()
        .map_err(|e| WalError::io("fdatasync", &side, e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    storage
        .sync_dir(dir)
        .map_err(|e| WalError::io("fsync dir", dir, e))
}

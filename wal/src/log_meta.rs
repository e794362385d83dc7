//! Reading and replacing the metadata file `DIR/LOG_META` (the log's
//! identity and start; byte layout in [`crate::format`]).
//!
//! It exists so that the file is only ever replaced whole: the new contents
//! go to `LOG_META.tmp`, which is `fdatasync`ed, renamed over `LOG_META`,
//! and the directory is `fsync`ed. A crash at any point leaves either the
//! old file or the new one, never a mix; a leftover `LOG_META.tmp` is
//! ignored and overwritten by the next replacement.
//!
//! Promise: [`read_log_meta`] reads what is on the disk (it drops the
//! file's cached pages first) and reports a damaged file as
//! `WalError::MetaCorrupt` naming it.

use std::io;
use std::path::{Path, PathBuf};

use crate::error::WalError;
use crate::format::{decode_log_meta, encode_log_meta, LogMeta, LogMetaDamage, LOG_META_SIZE};
use crate::storage::Storage;

/// Name of the metadata file in the log directory.
pub const LOG_META_FILE_NAME: &str = "LOG_META";
/// Name of the file a new metadata file is written to before its rename.
pub const LOG_META_TMP_FILE_NAME: &str = "LOG_META.tmp";

/// The metadata file of the log in `dir`.
pub(crate) fn log_meta_path(dir: &Path) -> PathBuf {
    dir.join(LOG_META_FILE_NAME)
}

/// The metadata of the log in `dir`, read from the disk; `None` if there is
/// no metadata file (a new log, or one written before the file existed).
pub(crate) fn read_log_meta(
    storage: &dyn Storage,
    dir: &Path,
) -> Result<Option<LogMeta>, WalError> {
    let path = log_meta_path(dir);
    let file = match storage.open_read(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(WalError::io("open", &path, error)),
    };
    file.drop_cached_pages()
        .map_err(|e| WalError::io("drop cached pages of", &path, e))?;
    let len_bytes = file
        .len_bytes()
        .map_err(|e| WalError::io("stat", &path, e))?;
    let damaged = |kind| WalError::MetaCorrupt {
        path: path.clone(),
        kind,
    };
    if len_bytes != LOG_META_SIZE as u64 {
        return Err(damaged(LogMetaDamage::WrongLength { len_bytes }));
    }
    let mut bytes = [0u8; LOG_META_SIZE];
    let mut filled = 0;
    // Bounded: every iteration reads at least one byte or stops.
    while filled < bytes.len() {
        let n = file
            .read_at(filled as u64, &mut bytes[filled..])
            .map_err(|e| WalError::io("read", &path, e))?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    let meta = decode_log_meta(&bytes[..filled]).map_err(damaged)?;
    Ok(Some(meta))
}

/// Replaces the metadata file of the log in `dir` with `meta`, durably and
/// atomically (temporary file, `fdatasync`, rename, directory `fsync`).
pub(crate) fn write_log_meta(
    storage: &dyn Storage,
    dir: &Path,
    meta: &LogMeta,
) -> Result<(), WalError> {
    let tmp = dir.join(LOG_META_TMP_FILE_NAME);
    let path = log_meta_path(dir);
    let mut file = storage
        .create(&tmp)
        .map_err(|e| WalError::io("create", &tmp, e))?;
    file.write_all_at(0, &encode_log_meta(meta))
        .map_err(|e| WalError::io("write", &tmp, e))?;
    file.sync_data()
        .map_err(|e| WalError::io("fdatasync", &tmp, e))?;
    drop(file);
    storage
        .rename(&tmp, &path)
        .map_err(|e| WalError::io("rename to LOG_META", &tmp, e))?;
    storage
        .sync_dir(dir)
        .map_err(|e| WalError::io("fsync dir", dir, e))
}

/// 128 random bits from the operating system: a new log's identity.
pub(crate) fn new_log_id(dir: &Path) -> Result<u128, WalError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| WalError::io("generate the identity of the log in", dir, e.into()))?;
    Ok(u128::from_le_bytes(bytes))
}

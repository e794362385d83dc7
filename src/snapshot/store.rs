//! Snapshot files in `DATA_DIR/snapshots/`: named by the sequence number
//! they cover (`snapshot-<seq, 20 digits>.snap`, so names sort in log
//! order), written whole or not at all, at most two kept.
//!
//! Everything goes through `flashsale_wal::Storage`, the file layer the
//! log uses, so the crash tests' simulated file system covers snapshots
//! too. A new snapshot is written to `<name>.tmp`, `fdatasync`ed, renamed,
//! and the directory `fsync`ed; only then are older files removed (the
//! oldest beyond two, and leftover temporary files). A crash at any point
//! leaves the previous snapshots whole; a leftover temporary file is never
//! read.

use std::io;
use std::path::{Path, PathBuf};

use flashsale_wal::Storage;

use super::format::{self, SnapshotBody, SnapshotDamage, SNAPSHOT_HEADER_BYTES};

/// Snapshots kept: the newest, and one to fall back to.
pub const SNAPSHOTS_KEPT: usize = 2;
const PREFIX: &str = "snapshot-";
const SUFFIX: &str = ".snap";
const TMP_SUFFIX: &str = ".tmp";

/// The file name of the snapshot covering up to `seq`.
pub fn file_name(seq: u64) -> String {
    format!("{PREFIX}{seq:020}{SUFFIX}")
}

/// The `seq` of a snapshot file name; `None` for any other name.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Why a snapshot file could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("snapshot {} is damaged", path.display())]
    Damaged {
        path: PathBuf,
        #[source]
        damage: SnapshotDamage,
    },
    #[error("cannot encode the snapshot")]
    Encode(#[from] format::EncodeError),
}

impl StoreError {
    /// A short fixed name of the failure, for `/health`.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Io { .. } => "io",
            StoreError::Damaged { damage, .. } => damage.kind(),
            StoreError::Encode(_) => "encode",
        }
    }
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The snapshot files in `dir` as (seq, path), oldest first; none if the
/// directory does not exist.
pub fn list(storage: &dyn Storage, dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let names = match storage.list_dir(dir) {
        Ok(names) => names,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io_error("list", dir)(error)),
    };
    let mut found: Vec<(u64, PathBuf)> = names
        .iter()
        .filter_map(|name| Some((parse_file_name(name)?, dir.join(name))))
        .collect();
    found.sort();
    Ok(found)
}

/// What a write left on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub path: PathBuf,
    pub file_bytes: u64,
    /// Snapshots removed because more than `SNAPSHOTS_KEPT` were on disk.
    pub removed: usize,
}

/// Writes `body` durably as the newest snapshot, then removes the ones
/// beyond the newest `SNAPSHOTS_KEPT` and leftover temporary files.
pub fn write(
    storage: &dyn Storage,
    dir: &Path,
    body: &SnapshotBody,
) -> Result<Written, StoreError> {
    let bytes = format::encode(body)?;
    write_bytes(storage, dir, body.seq, &bytes)
}

/// Writes the encoded snapshot `bytes` of record `seq` durably as the
/// newest snapshot, then removes the ones beyond the newest
/// `SNAPSHOTS_KEPT` and leftover temporary files.
pub fn write_bytes(
    storage: &dyn Storage,
    dir: &Path,
    seq: u64,
    bytes: &[u8],
) -> Result<Written, StoreError> {
    storage
        .create_dir_all(dir)
        .map_err(io_error("create directory", dir))?;
    let path = dir.join(file_name(seq));
    let tmp = dir.join(format!("{}{TMP_SUFFIX}", file_name(seq)));
    let mut file = storage.create(&tmp).map_err(io_error("create", &tmp))?;
    file.write_all_at(0, bytes)
        .map_err(io_error("write", &tmp))?;
    file.sync_data().map_err(io_error("fdatasync", &tmp))?;
    drop(file);
    storage
        .rename(&tmp, &path)
        .map_err(io_error("rename", &tmp))?;
    storage
        .sync_dir(dir)
        .map_err(io_error("fsync directory", dir))?;
    let removed = remove_old(storage, dir)?;
    Ok(Written {
        path,
        file_bytes: bytes.len() as u64,
        removed,
    })
}

/// Removes snapshots beyond the newest `SNAPSHOTS_KEPT` and temporary
/// files, then makes the removal durable.
fn remove_old(storage: &dyn Storage, dir: &Path) -> Result<usize, StoreError> {
    let found = list(storage, dir)?;
    let surplus = found.len().saturating_sub(SNAPSHOTS_KEPT);
    let mut victims: Vec<PathBuf> = found.into_iter().take(surplus).map(|(_, p)| p).collect();
    let names = storage.list_dir(dir).map_err(io_error("list", dir))?;
    victims.extend(
        names
            .iter()
            .filter(|name| name.starts_with(PREFIX) && name.ends_with(TMP_SUFFIX))
            .map(|name| dir.join(name)),
    );
    if victims.is_empty() {
        return Ok(0);
    }
    for victim in &victims {
        storage
            .remove_file(victim)
            .map_err(io_error("remove", victim))?;
    }
    storage
        .sync_dir(dir)
        .map_err(io_error("fsync directory", dir))?;
    Ok(surplus)
}

/// Reads and checks the snapshot at `path` (from the disk, not the page
/// cache).
pub fn read(storage: &dyn Storage, path: &Path) -> Result<SnapshotBody, StoreError> {
    let bytes = read_bytes(storage, path)?;
    format::decode(&bytes).map_err(|damage| StoreError::Damaged {
        path: path.to_path_buf(),
        damage,
    })
}

/// Checks the snapshot at `path` (header and checksum) without decoding
/// it: retention trusts only a snapshot a start could use.
pub fn check(storage: &dyn Storage, path: &Path) -> Result<(), StoreError> {
    read_checked(storage, path).map(drop)
}

/// The bytes of the snapshot at `path` (from the disk, not the page
/// cache), its header and checksum checked, for [`format::BodyReader`].
pub fn read_checked(storage: &dyn Storage, path: &Path) -> Result<Vec<u8>, StoreError> {
    let bytes = read_bytes(storage, path)?;
    format::check(&bytes).map_err(|damage| StoreError::Damaged {
        path: path.to_path_buf(),
        damage,
    })?;
    Ok(bytes)
}

fn read_bytes(storage: &dyn Storage, path: &Path) -> Result<Vec<u8>, StoreError> {
    let file = storage.open_read(path).map_err(io_error("open", path))?;
    file.drop_cached_pages()
        .map_err(io_error("drop cached pages of", path))?;
    let len_bytes = file.len_bytes().map_err(io_error("stat", path))?;
    let damaged = |damage| StoreError::Damaged {
        path: path.to_path_buf(),
        damage,
    };
    let limit = (format::SNAPSHOT_BODY_BYTES_MAX + SNAPSHOT_HEADER_BYTES) as u64;
    if len_bytes > limit {
        return Err(damaged(SnapshotDamage::TooLarge {
            body_bytes: len_bytes - SNAPSHOT_HEADER_BYTES as u64,
        }));
    }
    let mut bytes = vec![0u8; len_bytes as usize];
    let mut filled = 0;
    // Bounded: every iteration reads at least one byte or stops.
    while filled < bytes.len() {
        let n = file
            .read_at(filled as u64, &mut bytes[filled..])
            .map_err(io_error("read", path))?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    bytes.truncate(filled);
    Ok(bytes)
}

/// Bytes of the snapshot files in `dir` (0 if there is none).
pub fn disk_bytes(storage: &dyn Storage, dir: &Path) -> u64 {
    let Ok(found) = list(storage, dir) else {
        return 0;
    };
    found
        .iter()
        .filter_map(|(_, path)| storage.open_read(path).ok()?.len_bytes().ok())
        .sum()
}

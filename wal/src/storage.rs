//! The file-system seam: the few operations the log performs on files.
//!
//! This module exists so that crash and fault tests can run the real log
//! code against a file layer that keeps unsynced writes in memory and drops
//! or tears them at a chosen crash point, or fails a chosen write or sync.
//! [`FsStorage`] is the real implementation on `std::fs`.
//!
//! Promise of every implementation: `WriteFile::sync_data` makes the file's
//! data (and its length) durable; `Storage::sync_dir` makes the directory's
//! entries (created, renamed and removed names) durable. Nothing else is
//! durable. `ReadFile::drop_cached_pages` makes later reads of the file come
//! from the disk, not from what a failed sync left in the page cache.

use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A file-system as the log uses it.
pub trait Storage: Send + Sync + Debug {
    /// Creates `dir` and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the entries of `dir` (file names only, any order).
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Opens an existing file for positional reads.
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadFile>>;
    /// Creates `path`, or truncates it if it exists, for positional writes.
    fn create(&self, path: &Path) -> io::Result<Box<dyn WriteFile>>;
    /// Opens an existing file for positional writes.
    fn open_write(&self, path: &Path) -> io::Result<Box<dyn WriteFile>>;
    /// Removes a file's directory entry.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries of `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Atomically gives the file `from` the name `to`, replacing a file
    /// named `to`; durable only after `sync_dir`. The default renames on the
    /// real file system (right for a layer that wraps [`FsStorage`]); a
    /// layer that keeps files elsewhere must override it.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    /// Takes an exclusive lock on the log in `dir`, held until the guard is
    /// dropped, so that no second process (a second server, an offline
    /// exporter) opens a log that is being written. `Ok(None)`: this layer
    /// has no other processes to keep out (test layers in memory).
    fn lock_dir(&self, dir: &Path) -> io::Result<Option<DirLock>> {
        let _ = dir;
        Ok(None)
    }
}

/// Name of the lock file in the log directory.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// An exclusive advisory lock (`flock`) on the log directory's lock file;
/// the operating system releases it when the guard is dropped or the
/// process dies, so a crash never leaves a stale lock behind.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// A file open for positional reads; may grow while it is read.
pub trait ReadFile: Send {
    /// Reads at `offset`; returns 0 only at the end of the file.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// The current length of the file.
    fn len_bytes(&self) -> io::Result<u64>;
    /// Drops the file's clean pages from the page cache
    /// (`posix_fadvise(POSIX_FADV_DONTNEED)`), so that later reads come from
    /// the disk. After a failed `fsync`, Linux may keep the data that never
    /// reached the disk in the cache, marked clean; recovery calls this
    /// before reading a file so that a restart cannot take that data for
    /// durable. Dirty pages are not dropped (their writeback starts).
    fn drop_cached_pages(&self) -> io::Result<()>;
}

/// A file open for positional writes. A segment is written in place: it may
/// have been created at its full size (zero-filled), so writes do not go to
/// the file's end but to where the previous record ended.
pub trait WriteFile: Send {
    /// Writes all of `bytes` at `offset_bytes`, extending the file if it
    /// ends before.
    fn write_all_at(&mut self, offset_bytes: u64, bytes: &[u8]) -> io::Result<()>;
    /// Makes the data written so far, and the file length, durable
    /// (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Truncates (or extends with zeros) the file.
    fn set_len(&mut self, len_bytes: u64) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsStorage;

impl Storage for FsStorage {
    fn lock_dir(&self, dir: &Path) -> io::Result<Option<DirLock>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE_NAME))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(DirLock { _file: file })),
            Err(fs::TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "another process has this log open",
            )),
            Err(fs::TryLockError::Error(error)) => Err(error),
        }
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadFile>> {
        Ok(Box::new(FsReadFile(File::open(path)?)))
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(FsWriteFile(file)))
    }

    fn open_write(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        Ok(Box::new(FsWriteFile(
            OpenOptions::new().write(true).open(path)?,
        )))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
}

struct FsReadFile(File);

impl ReadFile for FsReadFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.0.read_at(buf, offset) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => return result,
            }
        }
    }

    fn len_bytes(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn drop_cached_pages(&self) -> io::Result<()> {
        // Offset 0, no length: the whole file, however long it grows.
        rustix::fs::fadvise(&self.0, 0, None, rustix::fs::Advice::DontNeed)?;
        Ok(())
    }
}

struct FsWriteFile(File);

impl WriteFile for FsWriteFile {
    fn write_all_at(&mut self, offset_bytes: u64, bytes: &[u8]) -> io::Result<()> {
        // `FileExt::write_all_at` retries short writes and EINTR.
        self.0.write_all_at(bytes, offset_bytes)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn set_len(&mut self, len_bytes: u64) -> io::Result<()> {
        self.0.set_len(len_bytes)
    }
}

/// A read window over a [`ReadFile`]: buffers one chunk so that scanning
/// costs one `pread` per chunk, not per record. Memory is bounded by the
/// larger of the chunk size and the largest single request.
pub(crate) struct FileWindow {
    file: Box<dyn ReadFile>,
    /// Allocated once (grown only for a larger request); `filled` of it hold
    /// file bytes from `buf_start`.
    buf: Vec<u8>,
    filled: usize,
    buf_start: u64,
    chunk_bytes: usize,
}

impl FileWindow {
    pub(crate) fn new(file: Box<dyn ReadFile>, chunk_bytes: usize) -> Self {
        FileWindow {
            file,
            buf: Vec::new(),
            filled: 0,
            buf_start: 0,
            chunk_bytes,
        }
    }

    pub(crate) fn len_bytes(&self) -> io::Result<u64> {
        self.file.len_bytes()
    }

    /// Forgets the buffered bytes: the next request reads the file again
    /// (it may have been written since, in place).
    pub(crate) fn invalidate(&mut self) {
        self.filled = 0;
    }

    fn refill(&mut self, offset: u64, len: usize) -> io::Result<()> {
        let want = len.max(self.chunk_bytes);
        if self.buf.len() < want {
            // `vec!` zeroes through the allocator (calloc), not byte by byte.
            self.buf = vec![0u8; want];
        }
        self.buf_start = offset;
        self.filled = 0;
        // Bounded: every iteration reads at least one byte or stops.
        while self.filled < want {
            let n = self.file.read_at(
                offset + self.filled as u64,
                &mut self.buf[self.filled..want],
            )?;
            if n == 0 {
                break;
            }
            self.filled += n;
        }
        Ok(())
    }
}

impl crate::format::ByteSource for FileWindow {
    fn bytes_at(&mut self, offset: u64, len: usize) -> io::Result<&[u8]> {
        let end = offset.saturating_add(len as u64);
        let buf_end = self.buf_start + self.filled as u64;
        if offset < self.buf_start || end > buf_end {
            self.refill(offset, len)?;
        }
        let start = (offset - self.buf_start) as usize;
        let stop = (start + len).min(self.filled);
        Ok(&self.buf[start.min(stop)..stop])
    }
}

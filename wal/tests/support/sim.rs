//! A simulated file system for power-loss and fault tests.
//!
//! Writes land in a volatile copy of each file; `sync_data` copies it to the
//! durable copy; directory entries become durable only at `sync_dir`. At a
//! crash point every later operation fails, and `crash_image` builds the
//! file system a reboot would find: durable state plus, for unsynced state,
//! a random choice of what reached the disk (a prefix of the unsynced
//! bytes, possibly with a garbled last sector, over what the disk held
//! there: zeros of a preallocated file stay zeros past the prefix; unsynced
//! entries kept or lost).
//! Removed-but-open files keep working, as with POSIX inodes; a rename is
//! atomic and, like any entry change, durable only at `sync_dir`.
//!
//! A file has two views: `data` is the page cache (what reads see) and
//! `durable` the disk. A failed sync models Linux: the pages it could not
//! write are marked clean and dropped from writeback, so they never reach
//! the disk (not even at a later successful sync), yet reads through the
//! cache still see them, in this process and in a restarted one
//! ([`SimStorage::restart_image`]), until `ReadFile::drop_cached_pages`
//! makes reads come from the disk again.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flashsale_wal::{ReadFile, Storage, WriteFile};
use parking_lot::Mutex;

use super::Rng;
use inode::{crashed_contents, Inode};

mod inode;

type InodeRef = Arc<Mutex<Inode>>;

#[derive(Debug, Default)]
struct State {
    entries: BTreeMap<PathBuf, InodeRef>,
    durable_entries: BTreeMap<PathBuf, InodeRef>,
    ops: u64,
    crash_at_op: Option<u64>,
    dead: bool,
    writes: u64,
    syncs: u64,
    fail_write_number: Option<u64>,
    fail_sync_number: Option<u64>,
    seed: u64,
}

/// What happens to the operation at the crash point.
enum OpFate {
    Run,
    /// The crash point: the op may partly happen, then fails.
    Crash(u64),
}

#[derive(Debug, Clone, Default)]
pub struct SimStorage {
    state: Arc<Mutex<State>>,
}

fn dead_error() -> io::Error {
    io::Error::other("simulated power loss")
}

impl SimStorage {
    pub fn new() -> Self {
        SimStorage::default()
    }

    /// The `op`-th mutating operation from now (1-based) is the crash point.
    pub fn arm_crash_at_op(&self, op: u64, seed: u64) {
        let mut state = self.state.lock();
        state.crash_at_op = Some(state.ops + op);
        state.seed = seed;
    }

    /// Pulls the plug now.
    pub fn crash_now(&self) {
        self.state.lock().dead = true;
    }

    /// The `n`-th write from now (1-based) fails with EIO, writing nothing.
    pub fn fail_write_number(&self, n: u64) {
        let mut state = self.state.lock();
        state.fail_write_number = Some(state.writes + n);
    }

    /// The `n`-th data sync from now (1-based) fails with EIO.
    pub fn fail_sync_number(&self, n: u64) {
        let mut state = self.state.lock();
        state.fail_sync_number = Some(state.syncs + n);
    }

    pub fn ops(&self) -> u64 {
        self.state.lock().ops
    }

    fn begin_op(&self) -> io::Result<OpFate> {
        let mut state = self.state.lock();
        if state.dead {
            return Err(dead_error());
        }
        state.ops += 1;
        if state.crash_at_op == Some(state.ops) {
            state.dead = true;
            return Ok(OpFate::Crash(state.seed ^ state.ops));
        }
        Ok(OpFate::Run)
    }

    /// The file system after a reboot at this moment (or, one time in 8,
    /// after the process alone was killed).
    pub fn crash_image(&self, rng: &mut Rng) -> SimStorage {
        let process_kill_only = rng.chance(8);
        self.image(rng, process_kill_only)
    }

    /// The file system a restarted process finds when only the process died
    /// (`kill -9`): the page cache survives, with whatever a failed sync
    /// left in it that never reached the disk.
    pub fn restart_image(&self) -> SimStorage {
        self.image(&mut Rng::new(0), true)
    }

    fn image(&self, rng: &mut Rng, process_kill_only: bool) -> SimStorage {
        let state = self.state.lock();
        let mut image = State::default();
        let paths: Vec<&PathBuf> = state
            .entries
            .keys()
            .chain(state.durable_entries.keys())
            .collect();
        for path in paths {
            if image.entries.contains_key(path) {
                continue;
            }
            let current = state.entries.get(path);
            let durable = state.durable_entries.get(path);
            let inode = match (current, durable) {
                _ if process_kill_only => current,
                (Some(c), Some(d)) if Arc::ptr_eq(c, d) => Some(c),
                // A name that exists before and after (a rename over it):
                // the old file or the new one, never neither.
                (Some(c), Some(d)) => Some(if rng.chance(2) { c } else { d }),
                (Some(c), _) if rng.chance(2) => Some(c),
                (_, Some(d)) if rng.chance(2) => Some(d),
                _ => None,
            };
            let Some(inode) = inode else { continue };
            let inode = inode.lock();
            let data = crashed_contents(&inode, rng, process_kill_only);
            let (durable, dropped) = match &inode.dropped {
                // The cache survived, and with it the difference to the disk.
                Some(range) if process_kill_only => (inode.durable.clone(), Some(range.clone())),
                _ => (data.clone(), None),
            };
            let inode = Arc::new(Mutex::new(Inode {
                durable,
                data,
                dropped,
            }));
            image.entries.insert(path.clone(), Arc::clone(&inode));
            image.durable_entries.insert(path.clone(), inode);
        }
        SimStorage {
            state: Arc::new(Mutex::new(image)),
        }
    }

    /// Names and contents of every file (for debugging failures).
    pub fn dump(&self) -> Vec<(PathBuf, usize)> {
        let state = self.state.lock();
        state
            .entries
            .iter()
            .map(|(p, i)| (p.clone(), i.lock().data.len()))
            .collect()
    }

    /// Current (volatile) contents of a file.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state.lock();
        state
            .entries
            .get(path)
            .map(|inode| inode.lock().data.clone())
    }
}

impl Storage for SimStorage {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.state.lock();
        Ok(state
            .entries
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name()?.to_str().map(str::to_string))
            .collect())
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadFile>> {
        let state = self.state.lock();
        let inode = state
            .entries
            .get(path)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(Box::new(SimFile {
            storage: self.clone(),
            inode: Arc::clone(inode),
        }))
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        let fate = self.begin_op()?;
        if let OpFate::Crash(seed) = fate {
            if Rng::new(seed).chance(2) {
                return Err(dead_error());
            }
        }
        let mut state = self.state.lock();
        let inode = Arc::clone(state.entries.entry(path.to_path_buf()).or_default());
        inode.lock().resize(0);
        if matches!(fate, OpFate::Crash(_)) {
            return Err(dead_error());
        }
        Ok(Box::new(SimFile {
            storage: self.clone(),
            inode,
        }))
    }

    fn open_write(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
        let state = self.state.lock();
        if state.dead {
            return Err(dead_error());
        }
        let inode = state
            .entries
            .get(path)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(Box::new(SimFile {
            storage: self.clone(),
            inode: Arc::clone(inode),
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        if let OpFate::Crash(seed) = self.begin_op()? {
            if Rng::new(seed).chance(2) {
                self.state.lock().entries.remove(path);
            }
            return Err(dead_error());
        }
        let removed = self.state.lock().entries.remove(path);
        removed
            .map(|_| ())
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        let fate = self.begin_op()?;
        let mut state = self.state.lock();
        if let OpFate::Crash(seed) = fate {
            if Rng::new(seed).chance(2) {
                state.durable_entries = state.entries.clone();
            }
            return Err(dead_error());
        }
        state.durable_entries = state.entries.clone();
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let fate = self.begin_op()?;
        let mut state = self.state.lock();
        if let OpFate::Crash(seed) = fate {
            if Rng::new(seed).chance(2) {
                if let Some(inode) = state.entries.remove(from) {
                    state.entries.insert(to.to_path_buf(), inode);
                }
            }
            return Err(dead_error());
        }
        let inode = state
            .entries
            .remove(from)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        state.entries.insert(to.to_path_buf(), inode);
        Ok(())
    }
}

struct SimFile {
    storage: SimStorage,
    inode: InodeRef,
}

impl ReadFile for SimFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let inode = self.inode.lock();
        let start = (offset as usize).min(inode.data.len());
        let n = buf.len().min(inode.data.len() - start);
        buf[..n].copy_from_slice(&inode.data[start..start + n]);
        Ok(n)
    }

    fn len_bytes(&self) -> io::Result<u64> {
        Ok(self.inode.lock().data.len() as u64)
    }

    fn drop_cached_pages(&self) -> io::Result<()> {
        let mut inode = self.inode.lock();
        // Only the clean pages go; the file keeps its length (the inode's
        // size is not a cached page), so dropped bytes read as the disk's.
        if inode.dropped.is_some() {
            inode.data = inode.disk_view();
            inode.dropped = None;
        }
        Ok(())
    }
}

impl WriteFile for SimFile {
    fn write_all_at(&mut self, offset_bytes: u64, bytes: &[u8]) -> io::Result<()> {
        let fate = self.storage.begin_op()?;
        {
            let mut state = self.storage.state.lock();
            state.writes += 1;
            if state.fail_write_number == Some(state.writes) {
                return Err(io::Error::other("injected write failure"));
            }
        }
        let mut inode = self.inode.lock();
        if let OpFate::Crash(seed) = fate {
            let keep = Rng::new(seed).below(bytes.len() as u64 + 1) as usize;
            inode.write_at(offset_bytes as usize, &bytes[..keep]);
            return Err(dead_error());
        }
        inode.write_at(offset_bytes as usize, bytes);
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let fate = self.storage.begin_op()?;
        {
            let mut state = self.storage.state.lock();
            state.syncs += 1;
            if state.fail_sync_number == Some(state.syncs) {
                self.inode.lock().drop_unsynced();
                return Err(io::Error::other("injected fsync failure"));
            }
        }
        let mut inode = self.inode.lock();
        if let OpFate::Crash(seed) = fate {
            if Rng::new(seed).chance(2) {
                inode.sync();
            }
            return Err(dead_error());
        }
        inode.sync();
        Ok(())
    }

    fn set_len(&mut self, len_bytes: u64) -> io::Result<()> {
        let fate = self.storage.begin_op()?;
        if let OpFate::Crash(_) = fate {
            return Err(dead_error());
        }
        self.inode.lock().resize(len_bytes as usize);
        Ok(())
    }
}

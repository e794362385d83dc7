//! A simulated file system for power-loss and fault tests.
//!
//! Writes land in a volatile copy of each file; `sync_data` copies it to the
//! durable copy; directory entries become durable only at `sync_dir`. At a
//! crash point every later operation fails, and `crash_image` builds the
//! file system a reboot would find: durable state plus, for unsynced state,
//! a random choice of what reached the disk (a prefix of unsynced appends,
//! possibly with a garbled last sector; unsynced entries kept or lost).
//! Removed-but-open files keep working, as with POSIX inodes.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flashsale_wal::{ReadFile, Storage, WriteFile};
use parking_lot::Mutex;

use super::Rng;

#[derive(Debug, Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
}

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

    /// The file system after a reboot at this moment.
    pub fn crash_image(&self, rng: &mut Rng) -> SimStorage {
        let state = self.state.lock();
        let process_kill_only = rng.chance(8);
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
                (Some(c), _) if rng.chance(2) => Some(c),
                (_, Some(d)) if rng.chance(2) => Some(d),
                _ => None,
            };
            let Some(inode) = inode else { continue };
            let data = crashed_contents(&inode.lock(), rng, process_kill_only);
            let inode = Arc::new(Mutex::new(Inode {
                durable: data.clone(),
                data,
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

/// What a file holds after a power loss: its durable bytes, or a prefix of
/// what was written since, the unsynced part of which may end in garbage.
fn crashed_contents(inode: &Inode, rng: &mut Rng, process_kill_only: bool) -> Vec<u8> {
    if process_kill_only {
        return inode.data.clone();
    }
    let common = inode
        .data
        .iter()
        .zip(&inode.durable)
        .take_while(|(a, b)| a == b)
        .count();
    if inode.data.len() == common && inode.durable.len() == common {
        return inode.data.clone();
    }
    if inode.durable.len() > common && rng.chance(2) {
        return inode.durable.clone();
    }
    let unsynced = (inode.data.len() - common) as u64;
    let keep = common + rng.below(unsynced + 1) as usize;
    let mut data = inode.data[..keep].to_vec();
    if keep > common && rng.chance(3) {
        let garbled = 1 + rng.below((keep - common).min(64) as u64) as usize;
        for byte in &mut data[keep - garbled..] {
            *byte = rng.next_u64() as u8;
        }
    }
    data
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
        inode.lock().data.clear();
        if matches!(fate, OpFate::Crash(_)) {
            return Err(dead_error());
        }
        Ok(Box::new(SimFile {
            storage: self.clone(),
            inode,
        }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WriteFile>> {
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
}

impl WriteFile for SimFile {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
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
            inode.data.extend_from_slice(&bytes[..keep]);
            return Err(dead_error());
        }
        inode.data.extend_from_slice(bytes);
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let fate = self.storage.begin_op()?;
        {
            let mut state = self.storage.state.lock();
            state.syncs += 1;
            if state.fail_sync_number == Some(state.syncs) {
                return Err(io::Error::other("injected fsync failure"));
            }
        }
        let mut inode = self.inode.lock();
        if let OpFate::Crash(seed) = fate {
            if Rng::new(seed).chance(2) {
                inode.durable = inode.data.clone();
            }
            return Err(dead_error());
        }
        inode.durable = inode.data.clone();
        Ok(())
    }

    fn set_len(&mut self, len_bytes: u64) -> io::Result<()> {
        let fate = self.storage.begin_op()?;
        if let OpFate::Crash(_) = fate {
            return Err(dead_error());
        }
        self.inode.lock().data.resize(len_bytes as usize, 0);
        Ok(())
    }
}

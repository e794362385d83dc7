//! The simulated file's two views, page cache and disk, and what a power
//! loss or a failed sync does to them.

use std::ops::Range;

use super::super::Rng;

#[derive(Debug, Default)]
pub(super) struct Inode {
    /// The page cache: what reads see.
    pub data: Vec<u8>,
    /// The disk.
    pub durable: Vec<u8>,
    /// Bytes of `data` a failed sync marked clean without writing them: they
    /// never reach the disk, where the old bytes (zeros past its end) stay.
    pub dropped: Option<Range<usize>>,
}

impl Inode {
    /// A failed sync: whatever was not on the disk yet never will be.
    pub(super) fn drop_unsynced(&mut self) {
        let common = common_prefix_len(&self.data, &self.durable);
        if common == self.data.len() {
            return;
        }
        let start = self
            .dropped
            .as_ref()
            .map_or(common, |r| r.start.min(common));
        self.dropped = Some(start..self.data.len());
    }

    /// What reading the file from the disk gives: the cache, except the
    /// dropped bytes, which are what the disk holds there.
    pub(super) fn disk_view(&self) -> Vec<u8> {
        let mut bytes = self.data.clone();
        if let Some(range) = &self.dropped {
            let end = range.end.min(bytes.len());
            for (i, byte) in bytes.iter_mut().enumerate().take(end).skip(range.start) {
                *byte = self.durable.get(i).copied().unwrap_or(0);
            }
        }
        bytes
    }

    /// A successful sync: everything but the dropped bytes reaches the disk.
    pub(super) fn sync(&mut self) {
        self.durable = self.disk_view();
    }

    /// A write in place, extending the file (with zeros up to `offset`) if
    /// it ends before.
    pub(super) fn write_at(&mut self, offset: usize, bytes: &[u8]) {
        let end = offset + bytes.len();
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[offset..end].copy_from_slice(bytes);
    }

    /// Truncation (or extension) in the cache; dropped pages past the new
    /// end are gone with it.
    pub(super) fn resize(&mut self, len: usize) {
        self.data.resize(len, 0);
        self.dropped = match self.dropped.take() {
            Some(range) if range.start < len => Some(range.start..range.end.min(len)),
            _ => None,
        };
    }
}

fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// What a file holds after a power loss: its durable bytes, or a prefix of
/// what was written since, the unsynced part of which may end in garbage,
/// followed by what the disk holds past that prefix (the zeros of a
/// preallocated file, written in place, survive past the prefix; a length
/// that was never synced does not).
pub(super) fn crashed_contents(inode: &Inode, rng: &mut Rng, process_kill_only: bool) -> Vec<u8> {
    if process_kill_only {
        return inode.data.clone();
    }
    if inode.dropped.is_some() {
        // Writeback of this file failed: nothing unsynced reached the disk.
        return inode.durable.clone();
    }
    let common = common_prefix_len(&inode.data, &inode.durable);
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
    let disk_end = inode.durable.len().min(inode.data.len());
    if disk_end > keep {
        data.extend_from_slice(&inode.durable[keep..disk_end]);
    }
    data
}

//! The keyspace's buckets, kept in a shallow tree of shared nodes so that a
//! checkpoint can freeze all of them at once and a later write copies little.
//!
//! Shape: a root of 4 middles, each of 64 leaves, each of 64 buckets —
//! [`BUCKET_COUNT`] = 2¹⁴ buckets, every node behind an `Arc`.
//! * **The cut is one pointer copy.** [`Buckets::clone`] shares the root;
//!   nothing is visited, whatever the dataset size.
//! * **A write copies a path, not a table.** [`Buckets::make_mut`] goes
//!   through `Arc::make_mut` at each level: a node still shared with a
//!   snapshot is copied first (the root's 4 pointers, a middle's or a
//!   leaf's 64, the bucket's own entries at the bottom: about 61 keys per
//!   million keys).
//! * **Why 2¹⁴.** More, smaller buckets would make that copy cheaper, but
//!   every lookup reads a bucket's pointer, and the pointers of 2¹⁶ buckets
//!   (512 KB) no longer stay in a core's cache: `GET` at `-P 16` over 100,000
//!   random keys lost 15% of its throughput (the leaf load became the
//!   hottest instruction of the lookup), 2¹⁸ buckets lost 10–20% over a
//!   million keys. With 2¹⁴ the lookup costs what a flat array of buckets did
//!   (within 2%), and the cut is still one pointer copy.
//! * **Empty is shared.** A new tree is one empty bucket, one leaf and one
//!   middle, shared along the whole width; writes copy their paths on first
//!   use, so an empty or small keyspace costs kilobytes, not 2¹⁴ tables.
//!
//! A key's bucket is `crc32c(key) mod BUCKET_COUNT`, a function of its bytes
//! alone, so bucket numbers mean the same in every process; checkpoint files
//! record bucket numbers (and the count they were written with).

use std::sync::Arc;

use super::value::{Entry, Hasher, Key};

const FANOUT_BITS: u32 = 6;
/// Children of each middle node and leaf.
const FANOUT: usize = 1 << FANOUT_BITS;
const MASK: usize = FANOUT - 1;
const ROOT_BITS: u32 = 2;
/// Children of the root.
const ROOT_FANOUT: usize = 1 << ROOT_BITS;
/// How many buckets the keyspace has (a power of two).
pub const BUCKET_COUNT: usize = ROOT_FANOUT * FANOUT * FANOUT;
/// How many leaves the tree has; the keyspace keeps counts per leaf.
pub const LEAF_COUNT: usize = BUCKET_COUNT / FANOUT;
/// Buckets under one leaf.
pub const BUCKETS_PER_LEAF: usize = FANOUT;

/// The bucket a key belongs to: stable across processes and versions.
pub fn bucket_of(key: &[u8]) -> usize {
    bucket_among(key, BUCKET_COUNT)
}

/// The bucket a key belongs to among `total` buckets (a power of two): how a
/// checkpoint written with another bucket count numbered it.
pub fn bucket_among(key: &[u8], total: usize) -> usize {
    debug_assert!(total.is_power_of_two());
    crc32c::crc32c(key) as usize & (total - 1)
}

/// The leaf that holds bucket `index`.
pub fn leaf_of(index: usize) -> usize {
    index >> FANOUT_BITS
}

pub(super) type Map = hashbrown::HashMap<Key, Entry, Hasher>;

/// One bucket of keys.
#[derive(Debug, Default)]
pub struct Bucket {
    /// The keys of this bucket.
    pub(super) entries: Map,
    /// How many of `entries` have an expiry deadline.
    pub(super) expiring: u32,
    /// The keyspace generation of this bucket's last write: an incremental
    /// checkpoint holds the buckets written after its base's generation.
    pub(super) generation: u64,
}

impl Clone for Bucket {
    /// The copy a write pays when a snapshot holds the bucket. The values it
    /// clones are usually cold; reading one byte of each first lets their
    /// cache misses overlap (the reads do not depend on each other), where
    /// the clone loop alone would take them one at a time between its
    /// allocations.
    fn clone(&self) -> Bucket {
        let touched = self.entries.values().fold(0u8, |touched, entry| touched ^ entry.value.first_byte());
        std::hint::black_box(touched);
        Bucket { entries: self.entries.clone(), expiring: self.expiring, generation: self.generation }
    }
}

impl Bucket {
    /// The entries of this bucket.
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &Entry)> {
        self.entries.iter().map(|(key, entry)| (&key[..], entry))
    }

    /// A bucket holding `entries` (checkpoint restore); the caller checked
    /// that each key belongs to this bucket.
    pub fn from_entries(entries: impl IntoIterator<Item = (Key, Entry)>) -> Bucket {
        let entries: Map = entries.into_iter().collect();
        let expiring = entries.values().filter(|entry| entry.expire_at_ms != 0).count() as u32;
        Bucket { entries, expiring, generation: 0 }
    }

    /// Number of keys in this bucket.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the bucket holds no key.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Splits a bucket numbered `index` among `total` buckets (a smaller
    /// power of two than [`BUCKET_COUNT`], from an older checkpoint) into the
    /// buckets of this build that cover it: `index`, `index + total`, … —
    /// all of them, empty ones included, so that replacing them all replaces
    /// the old bucket whole.
    pub fn split(self, index: usize, total: usize) -> Vec<(usize, Bucket)> {
        assert!(total.is_power_of_two() && total <= BUCKET_COUNT && index < total);
        let mut parts: Vec<Vec<(Key, Entry)>> = (0..BUCKET_COUNT / total).map(|_| Vec::new()).collect();
        for (key, entry) in self.entries {
            parts[bucket_of(&key) / total].push((key, entry));
        }
        parts
            .into_iter()
            .enumerate()
            .map(|(part, entries)| (index + part * total, Bucket::from_entries(entries)))
            .collect()
    }
}

type Leaf = [Arc<Bucket>; FANOUT];
type Middle = [Arc<Leaf>; FANOUT];
type Root = [Arc<Middle>; ROOT_FANOUT];

/// All buckets; cloning shares them (see the module comment).
#[derive(Clone)]
pub struct Buckets {
    root: Arc<Root>,
}

impl Buckets {
    /// Every bucket empty, stamped with `generation`.
    pub fn empty(generation: u64) -> Buckets {
        let bucket = Arc::new(Bucket { generation, ..Bucket::default() });
        let leaf: Arc<Leaf> = Arc::new(std::array::from_fn(|_| Arc::clone(&bucket)));
        let middle: Arc<Middle> = Arc::new(std::array::from_fn(|_| Arc::clone(&leaf)));
        Buckets { root: Arc::new(std::array::from_fn(|_| Arc::clone(&middle))) }
    }

    /// Bucket `index`.
    pub fn get(&self, index: usize) -> &Bucket {
        self.shared(index)
    }

    fn shared(&self, index: usize) -> &Arc<Bucket> {
        &self.root[index >> (2 * FANOUT_BITS)][(index >> FANOUT_BITS) & MASK][index & MASK]
    }

    /// The buckets of leaf `leaf`, in order.
    pub fn leaf(&self, leaf: usize) -> impl Iterator<Item = &Bucket> {
        self.root[leaf >> FANOUT_BITS][leaf & MASK].iter().map(|bucket| &**bucket)
    }

    /// Bucket `index` for changing, stamped with `generation`; copies the
    /// nodes on its path that a snapshot still shares.
    pub fn make_mut(&mut self, index: usize, generation: u64) -> &mut Bucket {
        let bucket = Arc::make_mut(self.slot(index));
        bucket.generation = generation;
        bucket
    }

    /// Replaces bucket `index` whole.
    pub fn replace(&mut self, index: usize, bucket: Bucket) {
        *self.slot(index) = Arc::new(bucket);
    }

    fn slot(&mut self, index: usize) -> &mut Arc<Bucket> {
        let root = Arc::make_mut(&mut self.root);
        let middle = Arc::make_mut(&mut root[index >> (2 * FANOUT_BITS)]);
        let leaf = Arc::make_mut(&mut middle[(index >> FANOUT_BITS) & MASK]);
        &mut leaf[index & MASK]
    }

    /// Every bucket, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Bucket> {
        self.all().map(|bucket| &**bucket)
    }

    fn all(&self) -> impl Iterator<Item = &Arc<Bucket>> {
        self.root.iter().flat_map(|middle| middle.iter()).flat_map(|leaf| leaf.iter())
    }

    /// The buckets that `keep` accepts, with their numbers, in order; shared,
    /// not copied.
    fn select(&self, mut keep: impl FnMut(&Bucket) -> bool) -> Vec<(u32, Arc<Bucket>)> {
        self.all()
            .enumerate()
            .filter(|(_, bucket)| keep(bucket))
            .map(|(index, bucket)| (index as u32, Arc::clone(bucket)))
            .collect()
    }
}

/// A frozen view of the whole keyspace, cheap to take, for checkpoints.
#[derive(Clone)]
pub struct Snapshot {
    buckets: Buckets,
    key_count: usize,
}

impl Snapshot {
    pub(super) fn new(buckets: Buckets, key_count: usize) -> Snapshot {
        Snapshot { buckets, key_count }
    }

    /// The number of keys in the snapshot (expired ones included).
    pub fn key_count(&self) -> usize {
        self.key_count
    }

    /// Bucket `index`.
    pub fn bucket(&self, index: usize) -> &Bucket {
        self.buckets.get(index)
    }

    /// Every bucket, in order.
    pub fn buckets(&self) -> impl Iterator<Item = &Bucket> {
        self.buckets.iter()
    }

    /// The buckets a checkpoint writes, with their numbers, ascending: for a
    /// full one (`changed_since` `None`) every bucket holding a key; for an
    /// incremental every bucket written after generation `changed_since`,
    /// empty ones included (their keys were deleted). The tree is released
    /// on return, so writes no longer copy its nodes, nor the buckets left out.
    pub fn into_selected(self, changed_since: Option<u64>) -> Vec<(u32, Arc<Bucket>)> {
        match changed_since {
            None => self.buckets.select(|bucket| !bucket.is_empty()),
            Some(base) => self.buckets.select(|bucket| bucket.generation > base),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::value::Value;

    fn bucket_with(keys: &[&[u8]]) -> Bucket {
        Bucket::from_entries(
            keys.iter()
                .map(|key| (Key::from(*key), Entry { value: Value::String(Box::from(&b"v"[..])), expire_at_ms: 0 })),
        )
    }

    #[test]
    fn a_write_copies_only_what_a_snapshot_shares() {
        let mut buckets = Buckets::empty(0);
        buckets.make_mut(5, 1).entries = bucket_with(&[b"a"]).entries;
        let frozen = buckets.clone();
        buckets.make_mut(5, 2).entries.clear();
        buckets.make_mut(BUCKET_COUNT - 1, 2).entries = bucket_with(&[b"b"]).entries;
        assert_eq!(frozen.get(5).len(), 1);
        assert_eq!(frozen.get(5).generation, 1);
        assert!(frozen.get(BUCKET_COUNT - 1).is_empty());
        assert!(buckets.get(5).is_empty());
        assert_eq!(buckets.get(BUCKET_COUNT - 1).len(), 1);
        // Untouched buckets are still the same allocations on both sides.
        assert!(Arc::ptr_eq(frozen.shared(6), buckets.shared(6)));
        assert!(!Arc::ptr_eq(frozen.shared(5), buckets.shared(5)));
        assert_eq!(buckets.iter().count(), BUCKET_COUNT);
    }

    #[test]
    fn a_selection_is_ascending_and_releases_the_tree() {
        let mut buckets = Buckets::empty(0);
        for index in [9, 3, 12_000] {
            buckets.make_mut(index, 4).entries = bucket_with(&[b"k"]).entries;
        }
        buckets.make_mut(12, 5).entries.clear();
        let snapshot = Snapshot::new(buckets.clone(), 3);
        let full: Vec<u32> = snapshot.clone().into_selected(None).into_iter().map(|(index, _)| index).collect();
        assert_eq!(full, [3, 9, 12_000]);
        let since: Vec<u32> = snapshot.clone().into_selected(Some(4)).into_iter().map(|(index, _)| index).collect();
        assert_eq!(since, [12]);
        let selected = snapshot.into_selected(Some(4));
        assert_eq!(Arc::strong_count(&buckets.root), 1, "the snapshot's tree is released");
        assert_eq!(Arc::strong_count(&selected[0].1), 2, "the selected bucket is shared until written");
    }

    #[test]
    fn splitting_covers_every_bucket_of_the_old_number() {
        let keys: Vec<Vec<u8>> = (0..2000).map(|index| format!("key:{index}").into_bytes()).collect();
        let total = 1 << 14;
        let old = keys.iter().find(|key| bucket_among(key, total) == bucket_among(&keys[0], total)).unwrap();
        let index = bucket_among(old, total);
        let members: Vec<&[u8]> =
            keys.iter().filter(|key| bucket_among(key, total) == index).map(|key| &key[..]).collect();
        let parts = bucket_with(&members).split(index, total);
        assert_eq!(parts.len(), BUCKET_COUNT / total);
        assert_eq!(parts.iter().map(|(_, part)| part.len()).sum::<usize>(), members.len());
        for (new_index, part) in &parts {
            assert_eq!(new_index % total, index);
            assert!(part.entries().all(|(key, _)| bucket_of(key) == *new_index));
        }
    }
}

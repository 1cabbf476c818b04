//! The keyspace's buckets, kept in a shallow tree of shared nodes so that a
//! checkpoint can freeze all of them at once and a later write copies little.
//!
//! Shape: a root of 4 middles, each of 64 leaves, each of 64 buckets —
//! [`BUCKET_COUNT`] = 2¹⁴ buckets, every node behind an `Arc`.
//! * **The cut is one pointer copy.** [`Buckets::freeze`] shares the root;
//!   nothing is visited, whatever the dataset size.
//! * **A write copies a path, not a table.** [`Buckets::make_mut`] goes
//!   through `Arc::make_mut` at each level: a node still shared with a
//!   snapshot is copied first (the root's 4 pointers, a middle's or a
//!   leaf's 64). A shared bucket at the bottom is not copied: the live
//!   bucket becomes a layer over it (see [`Bucket`]), merged back once the
//!   snapshot lets go of it.
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

use super::value::{prefetch_read, Entry, Hasher, Key};

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
type KeySet = hashbrown::HashSet<Key, Hasher>;

/// One bucket of keys.
///
/// **Layers.** A write to a bucket that a checkpoint still holds does not
/// copy it: the live bucket becomes a *layer* over the held one, now frozen
/// (`Bucket::over`). The layer's `own` map holds the keys written since;
/// `shadowed` names the frozen keys written or deleted since, whose frozen
/// entries no longer show. A write to a frozen key copies that one entry up.
/// Once the checkpoint has written the frozen bucket and let go of it, the
/// layer folds it back in (`Bucket::merge_if_released`), moving only what
/// changed. Invariants (asserted by `Bucket::check_layer`, which
/// `Keyspace::check_counts` runs on every bucket):
/// * a frozen bucket is never itself a layer (one level at most);
/// * `shadowed` ⊆ the frozen keys, and every own key the frozen bucket also
///   holds is shadowed, so the merged view holds each key once.
///
/// Why: a copy costs a cache miss per entry, the entries being cold; at 5M
/// keys (305 a bucket) that was 80–120 µs per first write to a bucket during
/// a 2-second checkpoint, paid by the client whose write it was.
#[derive(Debug, Default)]
pub struct Bucket {
    /// The keys of this bucket; in a layer, those written since its base froze.
    own: Map,
    /// What a layer is over; `None` for a plain bucket.
    base: Option<Box<Base>>,
    /// How many keys of the merged view have an expiry deadline.
    pub(super) expiring: u32,
    /// The keyspace generation of this bucket's last write: an incremental
    /// checkpoint holds the buckets written after its base's generation.
    pub(super) generation: u64,
}

/// The frozen bucket under a layer.
#[derive(Debug)]
struct Base {
    /// The bucket as a checkpoint holds it; never a layer itself.
    frozen: Arc<Bucket>,
    /// Keys of `frozen` written or deleted since it froze.
    shadowed: KeySet,
}

impl Base {
    /// The frozen entry of `key`, unless it was written or deleted since.
    fn get(&self, key: &[u8]) -> Option<&Entry> {
        let entry = self.frozen.own.get(key)?;
        (!self.shadowed.contains(key)).then_some(entry)
    }

    /// Shadows `key` if its frozen entry shows; returns that entry.
    fn shadow(&mut self, key: &[u8]) -> Option<&Entry> {
        let entry = self.frozen.own.get(key)?;
        self.shadowed.insert(Key::from(key)).then_some(entry)
    }

    /// The frozen entries that still show.
    fn visible(&self) -> impl Iterator<Item = (&Key, &Entry)> {
        self.frozen.own.iter().filter(|(key, _)| !self.shadowed.contains(&key[..]))
    }
}

impl Bucket {
    /// The entries of this bucket.
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &Entry)> {
        self.iter().map(|(key, entry)| (&key[..], entry))
    }

    /// The entries of this bucket, with their stored keys.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&Key, &Entry)> {
        self.own.iter().chain(self.base.iter().flat_map(|base| base.visible()))
    }

    /// A bucket holding `entries` (checkpoint restore); the caller checked
    /// that each key belongs to this bucket.
    pub fn from_entries(entries: impl IntoIterator<Item = (Key, Entry)>) -> Bucket {
        let own: Map = entries.into_iter().collect();
        let expiring = own.values().filter(|entry| entry.expire_at_ms != 0).count() as u32;
        Bucket { own, base: None, expiring, generation: 0 }
    }

    /// Number of keys in this bucket.
    pub fn len(&self) -> usize {
        self.own.len() + self.base.as_ref().map_or(0, |base| base.frozen.own.len() - base.shadowed.len())
    }

    /// Whether the bucket holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Asks for the table slots where `key` may be, without waiting for
    /// them: the probe reads this bucket's control bytes (the one miss it
    /// waits for) and hands each candidate slot to the match function, which
    /// asks for the slot's cache lines and declines it. The slot layout is
    /// hashbrown's `(K, V)` tuple; a wrong guess costs a useless hint, never
    /// a wrong answer. A layer's frozen keys are not asked for (a lookup
    /// finds them in the next pass; layers live only during checkpoints).
    pub(super) fn prefetch_entry(&self, key: &[u8]) {
        use std::hash::BuildHasher;
        const KEY_OFFSET: usize = std::mem::offset_of!((Key, Entry), 0);
        const SLOT_BYTES: usize = std::mem::size_of::<(Key, Entry)>();
        let hash = self.own.hasher().hash_one(key);
        let never = self.own.raw_entry().from_hash(hash, |candidate| {
            let slot = (candidate as *const Key).cast::<u8>().wrapping_sub(KEY_OFFSET);
            prefetch_read(slot);
            prefetch_read(slot.wrapping_add(SLOT_BYTES - 1));
            false
        });
        debug_assert!(never.is_none());
    }

    /// The entry of `key`.
    #[inline]
    pub(super) fn get(&self, key: &[u8]) -> Option<&Entry> {
        match self.own.get(key) {
            Some(entry) => Some(entry),
            None => self.base.as_ref()?.get(key),
        }
    }

    /// The entry of `key` for changing (in a layer, a frozen entry is copied
    /// up first).
    pub(super) fn get_mut(&mut self, key: &[u8]) -> Option<&mut Entry> {
        if let Some(base) = self.base.as_mut() {
            if !self.own.contains_key(key) {
                let entry = base.shadow(key)?.clone();
                self.own.insert(Key::from(key), entry);
            }
        }
        self.own.get_mut(key)
    }

    /// Stores `entry` under `key`; returns the deadline of the entry it
    /// replaced (`Some(0)`: one without a deadline), `None` if it is new.
    pub(super) fn insert(&mut self, key: &[u8], entry: Entry) -> Option<u64> {
        // Overwriting keeps the stored key: no allocation, no second hash.
        if let Some(slot) = self.own.get_mut(key) {
            return Some(std::mem::replace(slot, entry).expire_at_ms);
        }
        let previous = self.base.as_mut().and_then(|base| base.shadow(key)).map(|old| old.expire_at_ms);
        self.own.insert(Key::from(key), entry);
        previous
    }

    /// Removes `key`; returns its entry.
    pub(super) fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        match self.own.remove(key) {
            Some(entry) => Some(entry), // a frozen one under it is shadowed already
            None => self.base.as_mut()?.shadow(key).cloned(),
        }
    }

    /// Whether this bucket is a layer over a frozen one.
    pub fn is_layer(&self) -> bool {
        self.base.is_some()
    }

    /// The live bucket that takes over from `held`, which a snapshot shares:
    /// a layer over it (over its base, if `held` is itself a layer: that
    /// copies only what `held` changed). Nothing of `held` is copied.
    pub(super) fn over(held: &Arc<Bucket>) -> Bucket {
        let (own, base) = match &held.base {
            None => (Map::default(), Base { frozen: Arc::clone(held), shadowed: KeySet::default() }),
            Some(base) => {
                (held.own.clone(), Base { frozen: Arc::clone(&base.frozen), shadowed: base.shadowed.clone() })
            }
        };
        Bucket { own, base: Some(Box::new(base)), expiring: held.expiring, generation: held.generation }
    }

    /// A plain copy of this bucket's merged view.
    fn copy(&self) -> Bucket {
        let own: Map = self.iter().map(|(key, entry)| (key.clone(), entry.clone())).collect();
        Bucket { own, base: None, expiring: self.expiring, generation: self.generation }
    }

    /// Folds a layer's base back in once no snapshot holds it any more,
    /// moving only what changed. Returns whether the bucket is plain now.
    pub(super) fn merge_if_released(&mut self) -> bool {
        let Some(base) = self.base.take() else { return true };
        let Base { frozen, shadowed } = *base;
        match Arc::try_unwrap(frozen) {
            Ok(frozen) => {
                let mut all = frozen.own;
                if all.len() >= self.own.len() {
                    for key in &shadowed {
                        all.remove(&key[..]);
                    }
                    all.extend(self.own.drain());
                    self.own = all;
                } else {
                    self.own.extend(all.into_iter().filter(|(key, _)| !shadowed.contains(&key[..])));
                }
                true
            }
            Err(frozen) => {
                self.base = Some(Box::new(Base { frozen, shadowed }));
                false
            }
        }
    }

    /// Checks the layer invariants listed on [`Bucket`].
    pub(super) fn check_layer(&self) {
        assert_eq!(self.iter().count(), self.len(), "a bucket's length is its entries'");
        let Some(base) = &self.base else { return };
        assert!(base.frozen.base.is_none(), "a frozen bucket is itself a layer");
        for key in &base.shadowed {
            assert!(base.frozen.own.contains_key(&key[..]), "a shadowed key the frozen bucket lacks");
        }
        for key in self.own.keys() {
            if base.frozen.own.contains_key(&key[..]) {
                assert!(base.shadowed.contains(&key[..]), "an own key over a frozen one not shadowed");
            }
        }
    }

    /// Splits a bucket numbered `index` among `total` buckets (a smaller
    /// power of two than [`BUCKET_COUNT`], from an older checkpoint) into the
    /// buckets of this build that cover it: `index`, `index + total`, … —
    /// all of them, empty ones included, so that replacing them all replaces
    /// the old bucket whole.
    pub fn split(self, index: usize, total: usize) -> Vec<(usize, Bucket)> {
        assert!(total.is_power_of_two() && total <= BUCKET_COUNT && index < total);
        assert!(self.base.is_none(), "only a restored (plain) bucket is split");
        let mut parts: Vec<Vec<(Key, Entry)>> = (0..BUCKET_COUNT / total).map(|_| Vec::new()).collect();
        for (key, entry) in self.own {
            parts[bucket_of(&key) / total].push((key, entry));
        }
        parts
            .into_iter()
            .enumerate()
            .map(|(part, entries)| (index + part * total, Bucket::from_entries(entries)))
            .collect()
    }
}

/// A shared bucket with at most this many keys is copied, not layered over:
/// the copy costs less than a layer's bookkeeping (and an empty tree's
/// buckets, all one shared empty bucket, are simply replaced).
const COPY_ENTRIES_MAX: usize = 8;

type Leaf = [Arc<Bucket>; FANOUT];
type Middle = [Arc<Leaf>; FANOUT];
type Root = [Arc<Middle>; ROOT_FANOUT];

/// All buckets; [`Buckets::freeze`] shares them (see the module comment).
pub struct Buckets {
    root: Arc<Root>,
    /// Buckets that may be layers (see [`Bucket`]), each listed once, for
    /// [`Buckets::merge_released`]; a frozen copy has none.
    layers: Layers,
    /// Layers made since the tree was made (INFO's `checkpoint_layers_created`).
    layers_created: u64,
}

/// A list of bucket numbers without repeats (a bit per bucket says which
/// are listed); allocated on first use.
#[derive(Default)]
struct Layers {
    listed: Vec<u64>,
    order: std::collections::VecDeque<u32>,
}

impl Layers {
    fn add(&mut self, index: usize) {
        if self.listed.is_empty() {
            self.listed = vec![0; BUCKET_COUNT / 64];
        }
        let (word, bit) = (index / 64, 1u64 << (index % 64));
        if self.listed[word] & bit == 0 {
            self.listed[word] |= bit;
            self.order.push_back(index as u32);
        }
    }

    /// Takes the first listed bucket off the list.
    fn take(&mut self) -> Option<usize> {
        let index = self.order.pop_front()? as usize;
        self.listed[index / 64] &= !(1u64 << (index % 64));
        Some(index)
    }

    fn len(&self) -> usize {
        self.order.len()
    }
}

impl Buckets {
    /// Every bucket empty, stamped with `generation`.
    pub fn empty(generation: u64) -> Buckets {
        let bucket = Arc::new(Bucket { generation, ..Bucket::default() });
        let leaf: Arc<Leaf> = Arc::new(std::array::from_fn(|_| Arc::clone(&bucket)));
        let middle: Arc<Middle> = Arc::new(std::array::from_fn(|_| Arc::clone(&leaf)));
        Buckets {
            root: Arc::new(std::array::from_fn(|_| Arc::clone(&middle))),
            layers: Layers::default(),
            layers_created: 0,
        }
    }

    /// A frozen copy: shares the whole tree (one pointer copy).
    pub fn freeze(&self) -> Buckets {
        Buckets { root: Arc::clone(&self.root), layers: Layers::default(), layers_created: 0 }
    }

    /// Bucket `index`.
    pub fn get(&self, index: usize) -> &Bucket {
        self.shared(index)
    }

    /// Bucket `index`, whose first cache lines (the reference counts a write
    /// checks, the table's fields a lookup reads) are asked for but not
    /// waited for; see `Keyspace::prefetch`.
    pub fn get_prefetched(&self, index: usize) -> &Bucket {
        let bucket = self.shared(index);
        // `Arc`'s two counts come right before the bucket.
        let counts = Arc::as_ptr(bucket).cast::<u8>().wrapping_sub(2 * std::mem::size_of::<usize>());
        prefetch_read(counts);
        prefetch_read(Arc::as_ptr(bucket).cast());
        bucket
    }

    fn shared(&self, index: usize) -> &Arc<Bucket> {
        &self.root[index >> (2 * FANOUT_BITS)][(index >> FANOUT_BITS) & MASK][index & MASK]
    }

    /// The buckets of leaf `leaf`, in order.
    pub fn leaf(&self, leaf: usize) -> impl Iterator<Item = &Bucket> {
        self.root[leaf >> FANOUT_BITS][leaf & MASK].iter().map(|bucket| &**bucket)
    }

    /// Bucket `index` for changing, stamped with `generation`. The nodes on
    /// its path that a snapshot still shares are copied (64 pointers each);
    /// the bucket itself, if shared, is not: the live one becomes a layer
    /// over it (a small one is copied, which is cheaper). A layer whose base
    /// is no longer held is merged first.
    pub fn make_mut(&mut self, index: usize, generation: u64) -> &mut Bucket {
        let slot = bucket_slot(&mut self.root, index);
        if Arc::get_mut(slot).is_none() {
            let taking_over = if slot.len() <= COPY_ENTRIES_MAX { slot.copy() } else { Bucket::over(slot) };
            if taking_over.is_layer() {
                self.layers.add(index);
                self.layers_created += 1;
            }
            *slot = Arc::new(taking_over);
        }
        let bucket = Arc::get_mut(slot).expect("the slot holds the only reference now");
        if bucket.is_layer() {
            bucket.merge_if_released();
        }
        bucket.generation = generation;
        bucket
    }

    /// Empties every bucket, stamped with `generation` (`FLUSHALL`); the
    /// count of layers made goes on.
    pub fn clear(&mut self, generation: u64) {
        let layers_created = self.layers_created;
        *self = Buckets { layers_created, ..Buckets::empty(generation) };
    }

    /// Layers made so far, and how many buckets may still be layers.
    pub fn layer_counts(&self) -> (u64, usize) {
        (self.layers_created, self.layers.len())
    }

    /// Merges up to `budget` layers whose base no snapshot holds any more;
    /// returns how many layers may remain (to call again later).
    pub fn merge_released(&mut self, budget: usize) -> usize {
        let mut still_held = Vec::new();
        for _ in 0..budget {
            let Some(index) = self.layers.take() else { break };
            let slot = bucket_slot(&mut self.root, index);
            let plain = match Arc::get_mut(slot) {
                Some(bucket) => bucket.merge_if_released(),
                None => !slot.is_layer(), // a newer snapshot holds it: not yet
            };
            if !plain {
                still_held.push(index);
            }
        }
        for index in still_held {
            self.layers.add(index);
        }
        self.layers.len()
    }

    /// Replaces bucket `index` whole.
    pub fn replace(&mut self, index: usize, bucket: Bucket) {
        *bucket_slot(&mut self.root, index) = Arc::new(bucket);
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

/// The slot of bucket `index`, copying the path's nodes a snapshot shares.
fn bucket_slot(root: &mut Arc<Root>, index: usize) -> &mut Arc<Bucket> {
    let root = Arc::make_mut(root);
    let middle = Arc::make_mut(&mut root[index >> (2 * FANOUT_BITS)]);
    let leaf = Arc::make_mut(&mut middle[(index >> FANOUT_BITS) & MASK]);
    &mut leaf[index & MASK]
}

/// A frozen view of the whole keyspace, cheap to take, for checkpoints.
pub struct Snapshot {
    buckets: Buckets,
    key_count: usize,
}

impl Clone for Snapshot {
    fn clone(&self) -> Snapshot {
        Snapshot { buckets: self.buckets.freeze(), key_count: self.key_count }
    }
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

    /// A tree whose one non-empty bucket holds `count` keys, each `value`
    /// (at generation 1); returns it, the bucket's number and the keys.
    fn one_bucket_of(count: usize, value: &[u8]) -> (Buckets, usize, Vec<Vec<u8>>) {
        let index = bucket_of(b"key:0");
        let keys: Vec<Vec<u8>> = (0..)
            .map(|number| format!("key:{number}").into_bytes())
            .filter(|key| bucket_of(key) == index)
            .take(count)
            .collect();
        let mut buckets = Buckets::empty(0);
        for key in &keys {
            buckets.make_mut(index, 1).insert(key, entry(value));
        }
        (buckets, index, keys)
    }

    fn entry(value: &[u8]) -> Entry {
        Entry { value: Value::String(Box::from(value)), expire_at_ms: 0 }
    }

    fn value_of<'a>(bucket: &'a Bucket, key: &[u8]) -> Option<&'a [u8]> {
        match &bucket.get(key)?.value {
            Value::String(bytes) => Some(bytes),
            _ => None,
        }
    }

    #[test]
    fn a_write_to_a_held_bucket_layers_over_it_and_merges_once_released() {
        let (mut buckets, index, keys) = one_bucket_of(3 * COPY_ENTRIES_MAX, b"old");
        let frozen = buckets.freeze();
        let bucket = buckets.make_mut(index, 2);
        assert!(bucket.is_layer(), "a held bucket of more than a few keys is not copied");
        bucket.insert(&keys[0], entry(b"new"));
        bucket.remove(&keys[1]);
        bucket.get_mut(&keys[2]).unwrap().expire_at_ms = 7;
        bucket.insert(b"key:fresh", entry(b"fresh"));
        bucket.remove(&keys[1]);
        bucket.check_layer();
        assert_eq!(bucket.len(), keys.len());
        assert!(
            Arc::ptr_eq(&bucket.base.as_ref().unwrap().frozen, frozen.shared(index)),
            "the base is the held bucket"
        );
        // The frozen bucket is as it was; the live one shows the writes.
        let held = frozen.get(index);
        assert_eq!((held.len(), held.generation), (keys.len(), 1));
        assert_eq!(value_of(held, &keys[0]), Some(&b"old"[..]));
        assert_eq!(value_of(held, &keys[1]), Some(&b"old"[..]));
        assert_eq!(held.get(&keys[2]).unwrap().expire_at_ms, 0);
        let live = buckets.get(index);
        assert_eq!(value_of(live, &keys[0]), Some(&b"new"[..]));
        assert_eq!(live.get(&keys[1]), None);
        assert_eq!(live.get(&keys[2]).unwrap().expire_at_ms, 7);
        assert_eq!(value_of(live, b"key:fresh"), Some(&b"fresh"[..]));
        assert_eq!(live.generation, 2);
        // Held: not merged yet. Released: merged, with the same view.
        assert_eq!(buckets.merge_released(10), 1);
        let before: Vec<(Vec<u8>, Entry)> = live_entries(&buckets, index);
        drop(frozen);
        assert_eq!(buckets.merge_released(10), 0);
        assert!(!buckets.get(index).is_layer());
        buckets.get(index).check_layer();
        assert_eq!(live_entries(&buckets, index), before);
    }

    fn live_entries(buckets: &Buckets, index: usize) -> Vec<(Vec<u8>, Entry)> {
        let mut entries: Vec<(Vec<u8>, Entry)> =
            buckets.get(index).entries().map(|(key, entry)| (key.to_vec(), entry.clone())).collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries
    }

    #[test]
    fn a_layer_held_by_a_newer_snapshot_is_layered_over_the_same_base() {
        let (mut buckets, index, keys) = one_bucket_of(2 * COPY_ENTRIES_MAX, b"v1");
        let first = buckets.freeze();
        buckets.make_mut(index, 2).insert(&keys[0], entry(b"v2"));
        let second = buckets.freeze();
        let bucket = buckets.make_mut(index, 3);
        bucket.insert(&keys[1], entry(b"v3"));
        bucket.check_layer();
        let base = &bucket.base.as_ref().unwrap().frozen;
        assert!(Arc::ptr_eq(base, first.shared(index)), "one level: the first snapshot's bucket is the base");
        assert_eq!(value_of(second.get(index), &keys[0]), Some(&b"v2"[..]));
        assert_eq!(value_of(second.get(index), &keys[1]), Some(&b"v1"[..]));
        assert_eq!(value_of(first.get(index), &keys[0]), Some(&b"v1"[..]));
        drop(first);
        assert_eq!(buckets.merge_released(10), 1, "the second snapshot still holds the base through its layer");
        drop(second);
        assert_eq!(buckets.merge_released(10), 0);
        let live = buckets.get(index);
        assert!(!live.is_layer());
        assert_eq!((value_of(live, &keys[0]), value_of(live, &keys[1])), (Some(&b"v2"[..]), Some(&b"v3"[..])));
        assert_eq!(live.len(), keys.len());
    }

    #[test]
    fn a_write_copies_only_what_a_snapshot_shares() {
        let mut buckets = Buckets::empty(0);
        buckets.make_mut(5, 1).own = bucket_with(&[b"a"]).own;
        let frozen = buckets.freeze();
        buckets.make_mut(5, 2).remove(b"a");
        buckets.make_mut(BUCKET_COUNT - 1, 2).own = bucket_with(&[b"b"]).own;
        assert_eq!(frozen.get(5).len(), 1);
        assert_eq!(frozen.get(5).generation, 1);
        assert!(frozen.get(BUCKET_COUNT - 1).is_empty());
        assert!(buckets.get(5).is_empty());
        assert!(!buckets.get(5).is_layer(), "a small bucket is copied");
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
            buckets.make_mut(index, 4).own = bucket_with(&[b"k"]).own;
        }
        buckets.make_mut(12, 5).own.clear();
        let snapshot = Snapshot::new(buckets.freeze(), 3);
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

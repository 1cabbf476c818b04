//! The keyspace: every key, split into fixed buckets that a checkpoint can
//! share instead of copy.
//!
//! Invariants (asserted in `check_counts`, run by tests and debug builds):
//! * `key_count` equals the number of entries in all buckets, and each
//!   leaf's count those of its buckets;
//! * `expiring_count` equals the number of entries with a deadline, and each
//!   bucket's and leaf's `expiring` counts its own;
//! * no key holds an empty aggregate (Redis deletes those keys);
//! * a key lives in bucket `bucket_of(key)`, a function of the key's bytes
//!   alone (CRC32C), so bucket numbers mean the same in every process and
//!   every version — checkpoints rely on it.
//!
//! The buckets live in a tree of shared nodes ([`super::buckets`]):
//! [`Keyspace::snapshot`] shares it (one pointer copy, for any dataset size),
//! and a later write copies the path to its bucket if a snapshot still holds
//! it, and layers the bucket over the held one instead of copying it (see
//! [`Bucket`]). That is the copy-before-write that lets a checkpoint cut the
//! state without stalling clients, at the cost of one entry per written key.
//!
//! Incremental checkpoints: every bucket write stamps the bucket with the
//! current *generation*; [`Keyspace::cut`] closes a generation, so the
//! buckets changed since an earlier cut are those stamped after its
//! generation. Stamps only grow, so a failed checkpoint loses nothing: the
//! next incremental, based on the last *successful* cut, includes its buckets.
//!
//! Per-leaf key and expiry counts (64 buckets a leaf) let the walks that
//! look for something — `SCAN`, `RANDOMKEY`, active expiry — skip empty
//! stretches of the 2¹⁴ buckets without visiting them.

use std::sync::Arc;

use bytes::Bytes;
use rand::Rng;

pub use super::buckets::{bucket_of, Bucket, Snapshot, BUCKET_COUNT};
use super::buckets::{leaf_of, Buckets, BUCKETS_PER_LEAF, LEAF_COUNT};
use super::effect::{Effect, Ttl};
use super::glob;
use super::value::{Blob, Entry, HashValue, Key, ListValue, SetValue, SortedSet, Value};
use crate::limits;

/// A consistent cut for a checkpoint: the frozen state, its generation, and
/// for an incremental the base generation it holds the changes since.
pub struct Cut {
    /// The state at the cut.
    pub snapshot: Snapshot,
    /// The generation this cut closed; the base of a later incremental.
    pub generation: u64,
    /// For an incremental, the base cut's generation: the checkpoint holds
    /// the buckets written after it; `None` for a full cut.
    pub changed_since: Option<u64>,
}

impl Cut {
    /// The buckets this cut's checkpoint writes (see [`Snapshot::into_selected`]).
    pub fn into_buckets(self) -> Vec<(u32, Arc<Bucket>)> {
        self.snapshot.into_selected(self.changed_since)
    }
}

/// Key and expiry counts, in total and per leaf.
struct Counts {
    keys: usize,
    expiring: usize,
    leaf_keys: Vec<u32>,
    leaf_expiring: Vec<u32>,
}

impl Counts {
    fn new() -> Counts {
        Counts { keys: 0, expiring: 0, leaf_keys: vec![0; LEAF_COUNT], leaf_expiring: vec![0; LEAF_COUNT] }
    }

    fn add_key(&mut self, bucket: usize) {
        self.keys += 1;
        self.leaf_keys[leaf_of(bucket)] += 1;
    }

    fn remove_key(&mut self, bucket: usize) {
        self.keys -= 1;
        self.leaf_keys[leaf_of(bucket)] -= 1;
    }

    /// Counts a deadline set (`true`) or cleared (`false`) in `bucket`.
    fn change_expiring(&mut self, bucket: usize, set: bool) {
        let leaf = &mut self.leaf_expiring[leaf_of(bucket)];
        if set {
            self.expiring += 1;
            *leaf += 1;
        } else {
            self.expiring -= 1;
            *leaf -= 1;
        }
    }

    /// Counts bucket `index` going from `old` to `new` (keys, expiring).
    fn replace(&mut self, index: usize, old: (usize, u32), new: (usize, u32)) {
        let leaf = leaf_of(index);
        self.keys = self.keys - old.0 + new.0;
        self.expiring = self.expiring - old.1 as usize + new.1 as usize;
        self.leaf_keys[leaf] = self.leaf_keys[leaf] - old.0 as u32 + new.0 as u32;
        self.leaf_expiring[leaf] = self.leaf_expiring[leaf] - old.1 + new.1;
    }
}

/// All keys and values of the node.
pub struct Keyspace {
    /// The buckets; see the module comment.
    buckets: Buckets,
    /// Keys (expired-but-not-yet-deleted ones included) and keys with a deadline.
    counts: Counts,
    /// Keys some client `WATCH`es → (watchers, modification version).
    /// Empty almost always, so the write path pays one `is_empty` check.
    watched: hashbrown::HashMap<Bytes, (u32, u64), super::value::Hasher>,
    /// Next bucket the active-expiry pass looks at.
    expiry_cursor: usize,
    /// The generation writes are stamped with now; `cut` closes it.
    generation: u64,
}

impl Default for Keyspace {
    fn default() -> Self {
        Keyspace::new()
    }
}

fn blob(bytes: &[u8]) -> Blob {
    Box::from(bytes)
}

impl Keyspace {
    /// An empty keyspace.
    pub fn new() -> Keyspace {
        Keyspace {
            buckets: Buckets::empty(0),
            counts: Counts::new(),
            watched: Default::default(),
            expiry_cursor: 0,
            generation: 0,
        }
    }

    /// Number of keys, including expired ones not yet deleted (like Redis `DBSIZE`).
    pub fn len(&self) -> usize {
        self.counts.keys
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.counts.keys == 0
    }

    /// Number of keys with an expiry.
    pub fn expiring_len(&self) -> usize {
        self.counts.expiring
    }

    /// The live entry under `key` at `now_ms` (an expired key reads as absent).
    pub fn get(&self, key: &[u8], now_ms: u64) -> Option<&Entry> {
        self.get_including_expired(key).filter(|entry| !entry.is_expired(now_ms))
    }

    /// The entry under `key` even if its deadline passed (the write path
    /// uses this to delete it through an effect first).
    pub fn get_including_expired(&self, key: &[u8]) -> Option<&Entry> {
        self.buckets.get(bucket_of(key)).get(key)
    }

    /// Brings the entries of `keys` into the cache, for nothing but the
    /// cache: the commands of a pipeline (or a standby's replicated records)
    /// that follow then find their entries cached. A lookup is a chain of
    /// cache misses, each needing the one before (the bucket, its table's
    /// control bytes, the entry, the value); one command after another would
    /// take the chains in turn. Here a group of keys goes through the chain a
    /// link at a time, so that the group's misses at each link overlap:
    /// 1. each key's bucket is found (its pointer, in a leaf that is
    ///    usually cached) and its first lines are asked for;
    /// 2. each bucket's table is probed for the key: the control bytes are
    ///    read and the entries they point to asked for;
    /// 3. each key is looked up in full and its value's memory asked for.
    ///
    /// A load asked for (`prefetcht0`) is not waited for. Against one pass
    /// of plain lookups that read each value's first byte, this cut the CPU
    /// of a `SET` at `-P 16` over 100,000 keys by a quarter, in a single node
    /// and in a sync cluster (whose standby applies the same way); see the
    /// README's throughput section.
    pub fn prefetch<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) {
        let mut keys = keys.into_iter();
        loop {
            let mut group: [Option<(&[u8], &Bucket)>; limits::PREFETCH_GROUP] = [None; limits::PREFETCH_GROUP];
            let mut count = 0;
            for (slot, key) in group.iter_mut().zip(keys.by_ref()) {
                *slot = Some((key, self.buckets.get_prefetched(bucket_of(key))));
                count += 1;
            }
            let group = &group[..count];
            for (key, bucket) in group.iter().flatten() {
                bucket.prefetch_entry(key);
            }
            for (key, bucket) in group.iter().flatten() {
                if let Some(entry) = bucket.get(key) {
                    entry.value.prefetch();
                }
            }
            if count < limits::PREFETCH_GROUP {
                break;
            }
        }
    }

    /// A frozen view of the current state; see the module comment.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::new(self.buckets.freeze(), self.counts.keys)
    }

    /// Takes a checkpoint's cut: the snapshot, for an incremental based on
    /// the cut that closed generation `changed_since`; then opens the next
    /// generation. Cost: one pointer copy, whatever the data size; which
    /// buckets changed is read from the frozen snapshot later, off the lock.
    pub fn cut(&mut self, changed_since: Option<u64>) -> Cut {
        let snapshot = self.snapshot();
        let generation = self.advance_generation();
        Cut { snapshot, generation, changed_since }
    }

    /// Merges up to `budget` checkpoint layers whose frozen bucket the
    /// checkpoint has let go of (see [`Bucket`]); returns how many layers
    /// may remain. A write to a layer merges it too; this catches the rest,
    /// whose reads would otherwise look in two maps.
    pub fn merge_released_layers(&mut self, budget: usize) -> usize {
        self.buckets.merge_released(budget)
    }

    /// Checkpoint layers made so far, and how many buckets may still be
    /// layers (listed for merging; see [`Bucket`]).
    pub fn layer_counts(&self) -> (u64, usize) {
        self.buckets.layer_counts()
    }

    /// Closes the current generation and returns it (after a restore, the
    /// restored state is the closed generation: the base of the next incremental).
    pub fn advance_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation - 1
    }

    /// Replaces bucket `index` whole (checkpoint restore; an incremental's
    /// bucket also removes the keys deleted since its base).
    pub fn replace_bucket(&mut self, index: usize, mut bucket: Bucket) {
        let old = self.buckets.get(index);
        self.counts.replace(index, (old.len(), old.expiring), (bucket.len(), bucket.expiring));
        bucket.generation = self.generation;
        self.buckets.replace(index, bucket);
    }

    fn insert(&mut self, key: &[u8], entry: Entry) {
        let expiring = entry.expire_at_ms != 0;
        let index = bucket_of(key);
        let bucket = self.buckets.make_mut(index, self.generation);
        let previous = bucket.insert(key, entry);
        let was_expiring = previous.is_some_and(|deadline| deadline != 0);
        if was_expiring != expiring {
            if expiring {
                bucket.expiring += 1;
            } else {
                bucket.expiring -= 1;
            }
            self.counts.change_expiring(index, expiring);
        }
        if previous.is_none() {
            self.counts.add_key(index);
        }
    }

    fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let index = bucket_of(key);
        // Absent: no write, so no copy of a held bucket's path.
        self.buckets.get(index).get(key)?;
        let bucket = self.buckets.make_mut(index, self.generation);
        let removed = bucket.remove(key)?;
        if removed.expire_at_ms != 0 {
            bucket.expiring -= 1;
            self.counts.change_expiring(index, false);
        }
        self.counts.remove_key(index);
        Some(removed)
    }

    fn set_expiry(&mut self, key: &[u8], at_ms: u64) {
        let index = bucket_of(key);
        if self.buckets.get(index).get(key).is_none() {
            return;
        }
        let bucket = self.buckets.make_mut(index, self.generation);
        let entry = bucket.get_mut(key).expect("checked above");
        let before = entry.expire_at_ms != 0;
        entry.expire_at_ms = at_ms;
        if before != (at_ms != 0) {
            if before {
                bucket.expiring -= 1;
            } else {
                bucket.expiring += 1;
            }
            self.counts.change_expiring(index, !before);
        }
    }

    /// The aggregate under `key` for changing, created by `make` when absent.
    /// Panics if the key holds another type: effects are emitted only after
    /// the command checked the type, so that is a bug, not an input error.
    fn value_mut(&mut self, key: &[u8], make: fn() -> Value) -> &mut Value {
        if self.get_including_expired(key).is_none() {
            self.insert(key, Entry { value: make(), expire_at_ms: 0 });
        }
        let entry = self.buckets.make_mut(bucket_of(key), self.generation).get_mut(key).expect("inserted above");
        &mut entry.value
    }

    /// Deletes `key` if it holds an empty aggregate.
    fn drop_if_empty(&mut self, key: &[u8]) {
        if self.get_including_expired(key).is_some_and(|entry| entry.value.is_empty_aggregate()) {
            self.remove(key);
        }
    }

    fn touch_watched(&mut self, effect: &Effect) {
        if self.watched.is_empty() {
            return;
        }
        if matches!(effect, Effect::FlushAll) {
            self.watched.values_mut().for_each(|(_, version)| *version += 1);
            return;
        }
        let (first, second) = effect.keys();
        for key in [first, second].into_iter().flatten() {
            if let Some((_, version)) = self.watched.get_mut(key) {
                *version += 1;
            }
        }
    }

    /// Applies one effect: the single code path that changes the keyspace.
    pub fn apply(&mut self, effect: &Effect) {
        self.touch_watched(effect);
        match effect {
            Effect::Set { key, value, ttl } => {
                let expire_at_ms = match ttl {
                    Ttl::Clear => 0,
                    Ttl::At(at_ms) => *at_ms,
                    Ttl::Keep => self.get_including_expired(key).map_or(0, |entry| entry.expire_at_ms),
                };
                self.insert(key, Entry { value: Value::String(blob(value)), expire_at_ms });
            }
            Effect::Append { key, value } => {
                self.update_string(key, |old| [old.unwrap_or_default(), &value[..]].concat());
            }
            Effect::SetRange { key, offset, value } => {
                self.update_string(key, |old| {
                    let mut new = old.unwrap_or_default().to_vec();
                    let offset = *offset as usize;
                    if new.len() < offset + value.len() {
                        new.resize(offset + value.len(), 0);
                    }
                    new[offset..offset + value.len()].copy_from_slice(value);
                    new
                });
            }
            Effect::IncrBy { key, delta } => {
                self.update_string(key, |old| {
                    let current = old.map_or(0, parse_stored_integer);
                    let next = current.checked_add(*delta).expect("INCRBY overflow was refused before the effect");
                    next.to_string().into_bytes()
                });
            }
            Effect::Delete { key } => {
                self.remove(key);
            }
            Effect::ExpireAt { key, at_ms } => self.set_expiry(key, *at_ms),
            Effect::Persist { key } => self.set_expiry(key, 0),
            Effect::Rename { from, to } => {
                if let Some(entry) = self.remove(from) {
                    self.remove(to);
                    self.insert(to, entry);
                }
            }
            Effect::FlushAll => self.flush(),
            aggregate => self.apply_aggregate(aggregate),
        }
    }

    fn update_string(&mut self, key: &[u8], change: impl FnOnce(Option<&[u8]>) -> Vec<u8>) {
        let (old, expire_at_ms) = match self.get_including_expired(key) {
            Some(Entry { value: Value::String(old), expire_at_ms }) => (Some(&old[..]), *expire_at_ms),
            Some(other) => panic!("string effect on a {} key", other.value.type_name()),
            None => (None, 0),
        };
        let new = change(old).into_boxed_slice();
        self.insert(key, Entry { value: Value::String(new), expire_at_ms });
    }

    fn apply_aggregate(&mut self, effect: &Effect) {
        match effect {
            Effect::HashSet { key, pairs } => {
                let hash = hash_mut(self.value_mut(key, new_hash));
                for (field, value) in pairs {
                    hash.insert(Key::from(&field[..]), blob(value));
                }
            }
            Effect::HashDelete { key, fields } => {
                if self.get_including_expired(key).is_some() {
                    let hash = hash_mut(self.value_mut(key, new_hash));
                    for field in fields {
                        hash.remove(&field[..]);
                    }
                    self.drop_if_empty(key);
                }
            }
            Effect::HashIncrBy { key, field, delta } => {
                let hash = hash_mut(self.value_mut(key, new_hash));
                let current = hash.get(&field[..]).map_or(0, |old| parse_stored_integer(old));
                let next = current.checked_add(*delta).expect("HINCRBY overflow was refused before the effect");
                hash.insert(Key::from(&field[..]), next.to_string().into_bytes().into_boxed_slice());
            }
            Effect::SetAdd { key, members } => {
                let set = set_mut(self.value_mut(key, new_set));
                for member in members {
                    set.insert(Key::from(&member[..]));
                }
            }
            Effect::SetRemove { key, members } => {
                if self.get_including_expired(key).is_some() {
                    let set = set_mut(self.value_mut(key, new_set));
                    for member in members {
                        set.remove(&member[..]);
                    }
                    self.drop_if_empty(key);
                }
            }
            Effect::SortedSetAdd { key, members } => {
                let zset = sorted_set_mut(self.value_mut(key, new_sorted_set));
                for (member, score) in members {
                    zset.insert(member, *score);
                }
            }
            Effect::SortedSetRemove { key, members } => {
                if self.get_including_expired(key).is_some() {
                    let zset = sorted_set_mut(self.value_mut(key, new_sorted_set));
                    for member in members {
                        zset.remove(member);
                    }
                    self.drop_if_empty(key);
                }
            }
            list_effect => self.apply_list(list_effect),
        }
    }

    fn apply_list(&mut self, effect: &Effect) {
        match effect {
            Effect::ListPush { key, left, values } => {
                let list = list_mut(self.value_mut(key, new_list));
                for value in values {
                    if *left {
                        list.push_front(blob(value));
                    } else {
                        list.push_back(blob(value));
                    }
                }
            }
            Effect::ListPop { key, left, count } => {
                if self.get_including_expired(key).is_some() {
                    let list = list_mut(self.value_mut(key, new_list));
                    let count = (*count as usize).min(list.len());
                    if *left {
                        list.drain(..count);
                    } else {
                        list.truncate(list.len() - count);
                    }
                    self.drop_if_empty(key);
                }
            }
            Effect::ListSet { key, index, value } => {
                let list = list_mut(self.value_mut(key, new_list));
                let slot = list.get_mut(*index as usize).expect("LSET index was checked before the effect");
                *slot = blob(value);
            }
            Effect::ListRemove { key, count, value } => {
                if self.get_including_expired(key).is_some() {
                    let list = list_mut(self.value_mut(key, new_list));
                    remove_matching(list, *count, value);
                    self.drop_if_empty(key);
                }
            }
            Effect::ListTrim { key, start, stop, keep_none } => {
                if self.get_including_expired(key).is_some() {
                    let list = list_mut(self.value_mut(key, new_list));
                    if *keep_none {
                        list.clear();
                    } else {
                        list.truncate(*stop as usize + 1);
                        list.drain(..(*start as usize).min(list.len()));
                    }
                    self.drop_if_empty(key);
                }
            }
            other => unreachable!("not a list effect: {other:?}"),
        }
    }

    fn flush(&mut self) {
        // Every bucket is stamped: the next incremental records them all, emptied.
        self.buckets.clear(self.generation);
        self.counts = Counts::new();
    }

    /// Starts tracking modifications of `key` for a `WATCH`; returns its current version.
    pub fn watch(&mut self, key: &Bytes) -> u64 {
        let slot = self.watched.entry(key.clone()).or_insert((0, 0));
        slot.0 += 1;
        slot.1
    }

    /// Stops one watcher's tracking of `key`.
    pub fn unwatch(&mut self, key: &Bytes) {
        if let Some(slot) = self.watched.get_mut(key) {
            slot.0 -= 1;
            if slot.0 == 0 {
                self.watched.remove(key);
            }
        }
    }

    /// The modification version of a watched key (0 if nobody watches it).
    pub fn watch_version(&self, key: &Bytes) -> u64 {
        self.watched.get(key).map_or(0, |slot| slot.1)
    }

    /// Keys in buckets `cursor..` until about `count` keys were seen;
    /// returns the next cursor (0 when the scan is complete) and the keys that
    /// pass `keep`. Every key present for the whole scan is returned once,
    /// because buckets are fixed and each is visited whole. Leaves without
    /// keys are skipped whole, so a sparse keyspace scans in few calls.
    pub fn scan(&self, cursor: u64, count: usize, mut keep: impl FnMut(&[u8], &Entry) -> bool) -> (u64, Vec<Bytes>) {
        let mut found = Vec::new();
        let mut seen = 0;
        let mut bucket_index = cursor as usize;
        while bucket_index < BUCKET_COUNT && seen < count {
            if bucket_index.is_multiple_of(BUCKETS_PER_LEAF) && self.counts.leaf_keys[leaf_of(bucket_index)] == 0 {
                bucket_index += BUCKETS_PER_LEAF;
                continue;
            }
            for (key, entry) in self.buckets.get(bucket_index).iter() {
                seen += 1;
                if keep(key, entry) {
                    found.push(Bytes::copy_from_slice(key));
                }
            }
            bucket_index += 1;
        }
        let next = if bucket_index >= BUCKET_COUNT { 0 } else { bucket_index as u64 };
        (next, found)
    }

    /// Every live key matching a glob pattern (`KEYS`).
    pub fn keys_matching(&self, pattern: &[u8], now_ms: u64) -> Vec<Bytes> {
        let match_all = pattern == b"*";
        self.live_entries(now_ms)
            .filter(|(key, _)| match_all || glob::matches(pattern, key))
            .map(|(key, _)| Bytes::copy_from_slice(key))
            .collect()
    }

    /// Every live entry, leaf by leaf, skipping leaves without keys.
    fn live_entries(&self, now_ms: u64) -> impl Iterator<Item = (&Key, &Entry)> {
        (0..LEAF_COUNT)
            .filter(|&leaf| self.counts.leaf_keys[leaf] != 0)
            .flat_map(|leaf| self.buckets.leaf(leaf))
            .flat_map(|bucket| bucket.iter())
            .filter(move |(_, entry)| !entry.is_expired(now_ms))
    }

    /// A random live key, or `None` when there is none. Each key, expired
    /// ones included, is drawn with the same chance (through the per-leaf
    /// counts); after a few expired draws, one of the live keys is chosen.
    pub fn random_key(&self, now_ms: u64, rng: &mut impl Rng) -> Option<Bytes> {
        if self.counts.keys == 0 {
            return None;
        }
        for _ in 0..16 {
            let (key, entry) = self.nth_key(rng.gen_range(0..self.counts.keys));
            if !entry.is_expired(now_ms) {
                return Some(Bytes::copy_from_slice(key));
            }
        }
        let live: Vec<&Key> = self.live_entries(now_ms).map(|(key, _)| key).collect();
        (!live.is_empty()).then(|| Bytes::copy_from_slice(live[rng.gen_range(0..live.len())]))
    }

    /// The `n`th key in bucket order (`n` < the key count).
    fn nth_key(&self, mut n: usize) -> (&Key, &Entry) {
        for (leaf, &keys) in self.counts.leaf_keys.iter().enumerate() {
            if n >= keys as usize {
                n -= keys as usize;
                continue;
            }
            for bucket in self.buckets.leaf(leaf) {
                if n < bucket.len() {
                    return bucket.iter().nth(n).expect("n < len");
                }
                n -= bucket.len();
            }
        }
        unreachable!("the leaf counts add up to the key count")
    }

    /// Expired keys found by examining up to `budget` keys of buckets with
    /// expiring keys, resuming where the previous pass stopped (leaves
    /// without deadlines are skipped whole). The caller deletes them through
    /// `Effect::Delete` so that the log records it.
    pub fn expired_keys(&mut self, now_ms: u64, budget: usize) -> Vec<Bytes> {
        let mut expired = Vec::new();
        if self.counts.expiring == 0 {
            return expired;
        }
        let mut examined = 0;
        let mut buckets_visited = 0;
        while examined < budget && buckets_visited < BUCKET_COUNT {
            let at = self.expiry_cursor;
            if at.is_multiple_of(BUCKETS_PER_LEAF) && self.counts.leaf_expiring[leaf_of(at)] == 0 {
                self.expiry_cursor = (at + BUCKETS_PER_LEAF) % BUCKET_COUNT;
                buckets_visited += BUCKETS_PER_LEAF;
                continue;
            }
            let bucket = self.buckets.get(at);
            if bucket.expiring > 0 {
                for (key, entry) in bucket.iter() {
                    examined += 1;
                    if entry.is_expired(now_ms) {
                        expired.push(Bytes::copy_from_slice(key));
                    }
                }
            }
            self.expiry_cursor = (at + 1) % BUCKET_COUNT;
            buckets_visited += 1;
        }
        expired
    }

    /// An order-independent digest of the whole state, to compare two
    /// keyspaces (replay vs restore, two replicas).
    pub fn digest(&self) -> u64 {
        self.buckets
            .iter()
            .flat_map(|bucket| bucket.iter())
            .map(|(key, entry)| entry_digest(key, entry))
            .fold(0u64, u64::wrapping_add)
    }

    /// Checks the counting invariants listed at the top of this module.
    pub fn check_counts(&self) {
        let mut keys = 0;
        let mut expiring = 0;
        let mut leaf_keys = vec![0u32; LEAF_COUNT];
        let mut leaf_expiring = vec![0u32; LEAF_COUNT];
        for (index, bucket) in self.buckets.iter().enumerate() {
            bucket.check_layer();
            let bucket_expiring = bucket.iter().filter(|(_, entry)| entry.expire_at_ms != 0).count();
            assert_eq!(bucket.expiring as usize, bucket_expiring, "bucket {index} expiring count");
            for (key, entry) in bucket.iter() {
                assert_eq!(bucket_of(key), index, "key in the wrong bucket");
                assert!(!entry.value.is_empty_aggregate(), "empty aggregate stored");
            }
            keys += bucket.len();
            expiring += bucket_expiring;
            leaf_keys[leaf_of(index)] += bucket.len() as u32;
            leaf_expiring[leaf_of(index)] += bucket_expiring as u32;
        }
        assert_eq!(self.counts.keys, keys, "key count");
        assert_eq!(self.counts.expiring, expiring, "expiring count");
        assert!(self.counts.leaf_keys == leaf_keys, "per-leaf key counts");
        assert!(self.counts.leaf_expiring == leaf_expiring, "per-leaf expiring counts");
    }
}

fn entry_digest(key: &[u8], entry: &Entry) -> u64 {
    let mut value_crc = crc32c::crc32c(entry.value.type_name().as_bytes());
    value_crc = crc32c::crc32c_append(value_crc, &entry.expire_at_ms.to_le_bytes());
    match &entry.value {
        Value::String(bytes) => value_crc = crc32c::crc32c_append(value_crc, bytes),
        Value::List(list) => {
            for item in list.iter() {
                value_crc = crc32c::crc32c_append(value_crc, &(item.len() as u64).to_le_bytes());
                value_crc = crc32c::crc32c_append(value_crc, item);
            }
        }
        Value::Set(set) => {
            let sum = set.iter().map(|member| crc32c::crc32c(member) as u64).fold(0u64, u64::wrapping_add);
            value_crc = crc32c::crc32c_append(value_crc, &sum.to_le_bytes());
        }
        Value::SortedSet(zset) => {
            let sum = zset
                .unordered()
                .map(|(member, score)| {
                    let member_crc = crc32c::crc32c(member);
                    (member_crc as u64) << 32 | crc32c::crc32c_append(member_crc, &score.to_bits().to_le_bytes()) as u64
                })
                .fold(0u64, u64::wrapping_add);
            value_crc = crc32c::crc32c_append(value_crc, &sum.to_le_bytes());
        }
        Value::Hash(hash) => {
            let sum = hash
                .iter()
                .map(|(field, value)| {
                    let field_crc = crc32c::crc32c(field);
                    (field_crc as u64) << 32 | crc32c::crc32c_append(field_crc, value) as u64
                })
                .fold(0u64, u64::wrapping_add);
            value_crc = crc32c::crc32c_append(value_crc, &sum.to_le_bytes());
        }
    }
    (crc32c::crc32c(key) as u64) << 32 | value_crc as u64
}

/// Parses an integer that a command already validated before emitting the effect.
fn parse_stored_integer(bytes: &[u8]) -> i64 {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.parse().ok())
        .expect("integer effects are emitted only on integer values")
}

fn remove_matching(list: &mut ListValue, count: i64, value: &[u8]) {
    let limit = if count == 0 { usize::MAX } else { count.unsigned_abs() as usize };
    let mut removed = 0;
    if count >= 0 {
        list.retain(|item| {
            if removed < limit && &item[..] == value {
                removed += 1;
                false
            } else {
                true
            }
        });
    } else {
        let mut index = list.len();
        while index > 0 && removed < limit {
            index -= 1;
            if &list[index][..] == value {
                list.remove(index);
                removed += 1;
            }
        }
    }
}

fn new_hash() -> Value {
    Value::Hash(Arc::new(HashValue::default()))
}
fn new_set() -> Value {
    Value::Set(Arc::new(SetValue::default()))
}
fn new_list() -> Value {
    Value::List(Arc::new(ListValue::new()))
}
fn new_sorted_set() -> Value {
    Value::SortedSet(Arc::new(SortedSet::default()))
}

fn hash_mut(value: &mut Value) -> &mut HashValue {
    match value {
        Value::Hash(hash) => Arc::make_mut(hash),
        other => panic!("hash effect on a {} key", other.type_name()),
    }
}
fn set_mut(value: &mut Value) -> &mut SetValue {
    match value {
        Value::Set(set) => Arc::make_mut(set),
        other => panic!("set effect on a {} key", other.type_name()),
    }
}
fn sorted_set_mut(value: &mut Value) -> &mut SortedSet {
    match value {
        Value::SortedSet(zset) => Arc::make_mut(zset),
        other => panic!("sorted set effect on a {} key", other.type_name()),
    }
}
fn list_mut(value: &mut Value) -> &mut ListValue {
    match value {
        Value::List(list) => Arc::make_mut(list),
        other => panic!("list effect on a {} key", other.type_name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{any, prop_oneof, Just, Strategy};

    fn b(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    #[test]
    fn snapshot_is_unchanged_by_later_writes() {
        let mut keyspace = Keyspace::new();
        keyspace.apply(&Effect::Set { key: b("a"), value: b("1"), ttl: Ttl::Clear });
        let snapshot = keyspace.snapshot();
        keyspace.apply(&Effect::Set { key: b("a"), value: b("2"), ttl: Ttl::Clear });
        keyspace.apply(&Effect::ListPush { key: b("l"), left: true, values: vec![b("x")] });
        let bucket = snapshot.bucket(bucket_of(b"a"));
        let (_, entry) = bucket.entries().find(|(key, _)| *key == b"a").unwrap();
        assert_eq!(entry.value, Value::String(blob(b"1")));
        assert_eq!(snapshot.key_count(), 1);
        assert_eq!(keyspace.len(), 2);
        keyspace.check_counts();
    }

    #[test]
    fn prefetching_any_keys_changes_nothing() {
        let mut keyspace = Keyspace::new();
        for index in 0..500 {
            keyspace.apply(&Effect::Set { key: b(&format!("k{index}")), value: b("v"), ttl: Ttl::Clear });
        }
        keyspace.apply(&Effect::HashSet { key: b("h"), pairs: vec![(b("f"), b("v"))] });
        // Layers too: a held snapshot, then writes over it.
        let snapshot = keyspace.snapshot();
        for index in 0..100 {
            keyspace.apply(&Effect::Set { key: b(&format!("k{index}")), value: b("w"), ttl: Ttl::Clear });
        }
        let before = keyspace.digest();
        // Present and absent keys, more than a group and not a multiple of one; none at all.
        let keys: Vec<Bytes> = (0..limits::PREFETCH_GROUP * 3 + 5).map(|index| b(&format!("k{}", index * 7))).collect();
        keyspace.prefetch(keys.iter().map(|key| &key[..]).chain([&b"h"[..], b"absent"]));
        keyspace.prefetch(std::iter::empty());
        assert_eq!(keyspace.digest(), before);
        keyspace.check_counts();
        drop(snapshot);
    }

    fn selected(cut: Cut) -> Vec<u32> {
        cut.into_buckets().into_iter().map(|(index, _)| index).collect()
    }

    #[test]
    fn a_cut_lists_exactly_the_buckets_written_since_the_base() {
        let mut keyspace = Keyspace::new();
        keyspace.apply(&Effect::Set { key: b("a"), value: b("1"), ttl: Ttl::Clear });
        let full = keyspace.cut(None);
        let full_generation = full.generation;
        assert_eq!(selected(full), [bucket_of(b"a") as u32], "a full cut holds the buckets holding keys");
        let unchanged = keyspace.cut(Some(full_generation));
        let unchanged_generation = unchanged.generation;
        assert_eq!(selected(unchanged), [] as [u32; 0]);
        keyspace.apply(&Effect::Set { key: b("b"), value: b("2"), ttl: Ttl::Clear });
        keyspace.apply(&Effect::Delete { key: b("a") });
        keyspace.apply(&Effect::Delete { key: b("never-there") });
        keyspace.apply(&Effect::Persist { key: b("never-there") });
        let mut expected = vec![bucket_of(b"a") as u32, bucket_of(b"b") as u32];
        expected.sort();
        expected.dedup();
        // Relative to the full cut (as after a failed checkpoint), and to the latest one.
        let incremental = keyspace.cut(Some(full_generation));
        let incremental_generation = incremental.generation;
        assert_eq!(selected(incremental), expected);
        assert_eq!(selected(keyspace.cut(Some(unchanged_generation))), expected);
        let latest = keyspace.cut(Some(incremental_generation));
        let latest_generation = latest.generation;
        assert_eq!(selected(latest), [] as [u32; 0]);
        keyspace.apply(&Effect::FlushAll);
        assert_eq!(selected(keyspace.cut(Some(latest_generation))).len(), BUCKET_COUNT, "a flush empties every bucket");
        assert_eq!(selected(keyspace.cut(None)), [] as [u32; 0]);
    }

    #[test]
    fn the_cut_shares_the_state_and_writes_copy_only_their_own_buckets() {
        let mut keyspace = Keyspace::new();
        for index in 0..1000 {
            keyspace.apply(&Effect::Set { key: b(&format!("k{index}")), value: b("old"), ttl: Ttl::Clear });
        }
        let cut = keyspace.cut(None);
        keyspace.apply(&Effect::Set { key: b("k1"), value: b("new"), ttl: Ttl::Clear });
        let buckets = cut.into_buckets();
        let frozen = &buckets.iter().find(|(index, _)| *index as usize == bucket_of(b"k1")).unwrap().1;
        let (_, entry) = frozen.entries().find(|(key, _)| *key == b"k1").unwrap();
        assert_eq!(entry.value, Value::String(blob(b"old")));
        let untouched = buckets.iter().find(|(index, _)| *index as usize != bucket_of(b"k1")).unwrap();
        assert!(std::ptr::eq(&*untouched.1, keyspace.snapshot().bucket(untouched.0 as usize)), "not copied");
        assert_eq!(buckets.iter().map(|(_, bucket)| bucket.len()).sum::<usize>(), 1000);
    }

    #[test]
    fn replacing_buckets_keeps_the_counts() {
        let mut source = Keyspace::new();
        for index in 0..300 {
            let ttl = if index % 3 == 0 { Ttl::At(1_000 + index) } else { Ttl::Clear };
            source.apply(&Effect::Set { key: b(&format!("k{index}")), value: b("v"), ttl });
        }
        let snapshot = source.snapshot();
        let mut copy = Keyspace::new();
        copy.apply(&Effect::Set { key: b("stale"), value: b("x"), ttl: Ttl::At(5) });
        for (index, bucket) in snapshot.buckets().enumerate() {
            let entries = bucket.entries().map(|(name, entry)| (Key::from(name), entry.clone()));
            copy.replace_bucket(index, Bucket::from_entries(entries));
        }
        copy.check_counts();
        assert_eq!(copy.digest(), source.digest());
        assert_eq!(copy.expiring_len(), source.expiring_len());
    }

    #[test]
    fn counters_and_appends_start_from_an_absent_key() {
        let mut keyspace = Keyspace::new();
        keyspace.apply(&Effect::IncrBy { key: b("n"), delta: 5 });
        keyspace.apply(&Effect::Append { key: b("s"), value: b("ab") });
        keyspace.apply(&Effect::SetRange { key: b("r"), offset: 2, value: b("x") });
        assert_eq!(keyspace.get(b"n", 0).unwrap().value, Value::String(blob(b"5")));
        assert_eq!(keyspace.get(b"s", 0).unwrap().value, Value::String(blob(b"ab")));
        assert_eq!(keyspace.get(b"r", 0).unwrap().value, Value::String(blob(b"\0\0x")));
    }

    #[test]
    fn counts_follow_every_effect() {
        let mut keyspace = Keyspace::new();
        keyspace.apply(&Effect::Set { key: b("a"), value: b("1"), ttl: Ttl::At(10) });
        keyspace.apply(&Effect::Set { key: b("a"), value: b("2"), ttl: Ttl::Keep });
        assert_eq!(keyspace.expiring_len(), 1);
        keyspace.apply(&Effect::Rename { from: b("a"), to: b("b") });
        keyspace.apply(&Effect::SetAdd { key: b("s"), members: vec![b("m")] });
        keyspace.apply(&Effect::SetRemove { key: b("s"), members: vec![b("m")] });
        keyspace.check_counts();
        assert_eq!(keyspace.len(), 1);
        assert!(keyspace.get(b"b", 5).is_some());
        assert!(keyspace.get(b"b", 10).is_none());
        keyspace.apply(&Effect::Persist { key: b("b") });
        assert_eq!(keyspace.expiring_len(), 0);
        keyspace.check_counts();
    }

    #[test]
    fn scan_visits_every_key_once() {
        let mut keyspace = Keyspace::new();
        for index in 0..5000 {
            keyspace.apply(&Effect::Set { key: b(&format!("key:{index}")), value: b("v"), ttl: Ttl::Clear });
        }
        let mut cursor = 0;
        let mut seen = std::collections::HashSet::new();
        loop {
            let (next, keys) = keyspace.scan(cursor, 100, |_, _| true);
            for key in keys {
                assert!(seen.insert(key), "key returned twice");
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        assert_eq!(seen.len(), 5000);
    }

    /// A few keys among 2¹⁴ buckets: the walks skip empty leaves instead of
    /// visiting every bucket, and still find every key.
    #[test]
    fn sparse_keyspaces_are_walked_by_their_leaf_counts() {
        use rand::SeedableRng;
        let mut keyspace = Keyspace::new();
        let names = ["a", "b", "c", "d", "e"];
        for name in names {
            let ttl = if name == "e" { Ttl::At(50) } else { Ttl::Clear };
            keyspace.apply(&Effect::Set { key: b(name), value: b("v"), ttl });
        }
        let (next, keys) = keyspace.scan(0, 10, |_, _| true);
        assert_eq!((next, keys.len()), (0, 5), "one call scans a sparse keyspace whole");

        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut drawn = std::collections::HashMap::new();
        for _ in 0..2_000 {
            *drawn.entry(keyspace.random_key(100, &mut rng).unwrap()).or_insert(0) += 1;
        }
        assert_eq!(drawn.len(), 4, "every live key is drawn, the expired one never: {drawn:?}");
        assert!(drawn.values().all(|&count| count > 350), "draws are even: {drawn:?}");

        assert!(keyspace.expired_keys(40, 100).is_empty());
        assert_eq!(keyspace.expired_keys(100, 100), [b("e")], "one pass finds the expired key");
        keyspace.apply(&Effect::Delete { key: b("e") });
        for name in &names[..4] {
            keyspace.apply(&Effect::Delete { key: b(name) });
        }
        keyspace.check_counts();
        assert_eq!(keyspace.random_key(100, &mut rng), None);
        assert_eq!(keyspace.scan(0, 10, |_, _| true), (0, vec![]));
    }

    #[test]
    fn list_trim_and_remove_match_redis() {
        let mut keyspace = Keyspace::new();
        let values = ["a", "b", "a", "c", "a"].map(b).to_vec();
        keyspace.apply(&Effect::ListPush { key: b("l"), left: false, values });
        keyspace.apply(&Effect::ListRemove { key: b("l"), count: -2, value: b("a") });
        let list = |keyspace: &Keyspace| match &keyspace.get(b"l", 0).unwrap().value {
            Value::List(list) => list.iter().map(|item| String::from_utf8(item.to_vec()).unwrap()).collect::<Vec<_>>(),
            _ => unreachable!(),
        };
        assert_eq!(list(&keyspace), ["a", "b", "c"]);
        keyspace.apply(&Effect::ListTrim { key: b("l"), start: 1, stop: 1, keep_none: false });
        assert_eq!(list(&keyspace), ["b"]);
        keyspace.apply(&Effect::ListTrim { key: b("l"), start: 0, stop: 0, keep_none: true });
        assert!(keyspace.get(b"l", 0).is_none());
        keyspace.check_counts();
    }

    /// An operation of the layering property test.
    #[derive(Debug, Clone)]
    enum LayerOp {
        Set(usize, u8),
        Append(usize, u8),
        Delete(usize),
        Expire(usize, u64),
        Rename(usize, usize),
        HashSet(usize, u8),
        Freeze,
        Release(usize),
        Merge,
    }

    /// Keys that all fall into one bucket: strings first, then hash keys.
    fn one_bucket_keys() -> Vec<Bytes> {
        let target = bucket_of(b"p:0");
        (0..).map(|index| b(&format!("p:{index}"))).filter(|key| bucket_of(key) == target).take(24).collect()
    }
    const STRING_KEYS: usize = 20;

    fn layer_op() -> impl Strategy<Value = LayerOp> {
        let key = 0..STRING_KEYS;
        prop_oneof![
            4 => (key.clone(), any::<u8>()).prop_map(|(key, value)| LayerOp::Set(key, value)),
            1 => (key.clone(), any::<u8>()).prop_map(|(key, value)| LayerOp::Append(key, value)),
            2 => key.clone().prop_map(LayerOp::Delete),
            1 => (key.clone(), 1..1000u64).prop_map(|(key, at)| LayerOp::Expire(key, at)),
            1 => (key.clone(), key).prop_map(|(from, to)| LayerOp::Rename(from, to)),
            1 => (STRING_KEYS..24, any::<u8>()).prop_map(|(key, field)| LayerOp::HashSet(key, field)),
            1 => Just(LayerOp::Freeze),
            1 => any::<usize>().prop_map(LayerOp::Release),
            1 => Just(LayerOp::Merge),
        ]
    }

    type Model = std::collections::BTreeMap<Vec<u8>, Entry>;

    fn apply_to_model(model: &mut Model, effect: &Effect) {
        match effect {
            Effect::Set { key, value, .. } => {
                model.insert(key.to_vec(), Entry { value: Value::String(blob(value)), expire_at_ms: 0 });
            }
            Effect::Append { key, value } => {
                let entry =
                    model.entry(key.to_vec()).or_insert(Entry { value: Value::String(blob(b"")), expire_at_ms: 0 });
                let Value::String(old) = &entry.value else { unreachable!("string keys only") };
                entry.value = Value::String([&old[..], &value[..]].concat().into_boxed_slice());
            }
            Effect::Delete { key } => {
                model.remove(&key[..]);
            }
            Effect::ExpireAt { key, at_ms } => {
                if let Some(entry) = model.get_mut(&key[..]) {
                    entry.expire_at_ms = *at_ms;
                }
            }
            Effect::Rename { from, to } => {
                if let Some(entry) = model.remove(&from[..]) {
                    model.insert(to.to_vec(), entry);
                }
            }
            Effect::HashSet { key, pairs } => {
                let entry = model.entry(key.to_vec()).or_insert(Entry { value: new_hash(), expire_at_ms: 0 });
                let Value::Hash(hash) = &mut entry.value else { unreachable!("hash keys only") };
                for (field, value) in pairs {
                    Arc::make_mut(hash).insert(Key::from(&field[..]), blob(value));
                }
            }
            other => unreachable!("not generated: {other:?}"),
        }
    }

    fn live_view(keyspace: &Keyspace) -> Model {
        let (_, keys) = keyspace.scan(0, usize::MAX, |_, _| true);
        keys.iter().map(|key| (key.to_vec(), keyspace.get_including_expired(key).unwrap().clone())).collect()
    }

    fn frozen_view(snapshot: &Snapshot) -> Model {
        snapshot
            .buckets()
            .flat_map(|bucket| bucket.entries())
            .map(|(key, entry)| (key.to_vec(), entry.clone()))
            .collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]

        /// Writes during snapshots (layers over held buckets, merged when
        /// released or written) leave every snapshot as it was cut and the
        /// live state as a plain map says; the counts stay exact throughout.
        #[test]
        fn layered_buckets_keep_every_snapshot_and_the_live_state(
            ops in proptest::collection::vec(layer_op(), 1..160),
        ) {
            let keys = one_bucket_keys();
            let mut keyspace = Keyspace::new();
            let mut model = Model::new();
            let mut held: Vec<(Snapshot, Model)> = Vec::new();
            for key in &keys[..STRING_KEYS] {
                let effect = Effect::Set { key: key.clone(), value: b("seed"), ttl: Ttl::Clear };
                keyspace.apply(&effect);
                apply_to_model(&mut model, &effect);
            }
            for op in ops {
                let effect = match op {
                    LayerOp::Set(key, value) => Some(Effect::Set { key: keys[key].clone(), value: Bytes::from(vec![value]), ttl: Ttl::Clear }),
                    LayerOp::Append(key, value) => Some(Effect::Append { key: keys[key].clone(), value: Bytes::from(vec![value]) }),
                    LayerOp::Delete(key) => Some(Effect::Delete { key: keys[key].clone() }),
                    LayerOp::Expire(key, at_ms) => Some(Effect::ExpireAt { key: keys[key].clone(), at_ms }),
                    LayerOp::Rename(from, to) => Some(Effect::Rename { from: keys[from].clone(), to: keys[to].clone() }),
                    LayerOp::HashSet(key, field) => Some(Effect::HashSet { key: keys[key].clone(), pairs: vec![(Bytes::from(vec![field]), b("v"))] }),
                    LayerOp::Freeze => {
                        held.push((keyspace.snapshot(), model.clone()));
                        None
                    }
                    LayerOp::Release(which) => {
                        if !held.is_empty() {
                            let (snapshot, expected) = held.remove(which % held.len());
                            proptest::prop_assert_eq!(frozen_view(&snapshot), expected);
                        }
                        None
                    }
                    LayerOp::Merge => {
                        let left = keyspace.merge_released_layers(usize::MAX);
                        proptest::prop_assert!(left <= held.len(), "only held buckets stay layers");
                        None
                    }
                };
                if let Some(effect) = effect {
                    keyspace.apply(&effect);
                    apply_to_model(&mut model, &effect);
                }
                keyspace.check_counts();
                proptest::prop_assert_eq!(live_view(&keyspace), model.clone());
            }
            for (snapshot, expected) in &held {
                proptest::prop_assert_eq!(frozen_view(snapshot), expected.clone());
            }
            drop(held);
            proptest::prop_assert_eq!(keyspace.merge_released_layers(usize::MAX), 0);
            proptest::prop_assert!(!keyspace.buckets.get(bucket_of(&keys[0])).is_layer());
            proptest::prop_assert_eq!(live_view(&keyspace), model);
        }
    }
}

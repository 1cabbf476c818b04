//! The keyspace: every key, split into fixed buckets that a checkpoint can
//! share instead of copy.
//!
//! Invariants (asserted in `check_counts`, run by tests and debug builds):
//! * `key_count` equals the number of entries in all buckets;
//! * `expiring_count` equals the number of entries with a deadline, and each
//!   bucket's `expiring` counts its own;
//! * no key holds an empty aggregate (Redis deletes those keys);
//! * a key lives in bucket `bucket_of(key)`, a function of the key's bytes
//!   alone (CRC32C), so bucket numbers mean the same in every process and
//!   every version — checkpoints rely on it.
//!
//! Why buckets behind `Arc`: [`Keyspace::snapshot`] clones the bucket
//! pointers only (microseconds for any dataset size); a later write to a
//! bucket the snapshot still holds copies that one bucket first
//! (`Arc::make_mut`). That is the copy-before-write at bucket level that
//! lets a checkpoint cut the state without stalling clients.
//!
//! Incremental checkpoints: every bucket write stamps the bucket with the
//! current *generation*; [`Keyspace::cut`] closes a generation, so the
//! buckets changed since an earlier cut are those stamped after its
//! generation. Stamps only grow, so a failed checkpoint loses nothing: the
//! next incremental, based on the last *successful* cut, includes its buckets.

use std::sync::Arc;

use bytes::Bytes;
use rand::Rng;

use super::effect::{Effect, Ttl};
use super::glob;
use super::value::{Blob, Entry, HashValue, Hasher, Key, ListValue, SetValue, Value};

/// How many buckets the keyspace has (a power of two).
pub const BUCKET_COUNT: usize = 1 << 14;

type Map = hashbrown::HashMap<Key, Entry, Hasher>;

/// One bucket of keys.
#[derive(Debug, Clone, Default)]
pub struct Bucket {
    /// The keys of this bucket.
    entries: Map,
    /// How many of `entries` have an expiry deadline.
    expiring: u32,
}

impl Bucket {
    /// The entries of this bucket.
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &Entry)> {
        self.entries.iter().map(|(key, entry)| (&key[..], entry))
    }
}

impl Bucket {
    /// A bucket holding `entries` (checkpoint restore); the caller checked
    /// that each key belongs to this bucket.
    pub fn from_entries(entries: impl IntoIterator<Item = (Key, Entry)>) -> Bucket {
        let entries: Map = entries.into_iter().collect();
        let expiring = entries.values().filter(|entry| entry.expire_at_ms != 0).count() as u32;
        Bucket { entries, expiring }
    }

    /// Number of keys in this bucket.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the bucket holds no key.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A consistent cut for a checkpoint: the frozen state, its generation, and
/// (for an incremental) the buckets changed since the base cut.
pub struct Cut {
    /// The state at the cut.
    pub snapshot: Snapshot,
    /// The generation this cut closed; the base of a later incremental.
    pub generation: u64,
    /// Buckets written since the base generation, ascending; `None` for a full cut.
    pub changed: Option<Vec<u32>>,
}

/// A frozen view of the whole keyspace, cheap to take, for checkpoints.
#[derive(Clone)]
pub struct Snapshot {
    buckets: Vec<Arc<Bucket>>,
    key_count: usize,
}

impl Snapshot {
    /// The number of keys in the snapshot (expired ones included).
    pub fn key_count(&self) -> usize {
        self.key_count
    }

    /// The buckets, in bucket order.
    pub fn buckets(&self) -> &[Arc<Bucket>] {
        &self.buckets
    }

    /// The buckets a checkpoint writes, with their numbers: all of them, or
    /// only `selected` (ascending). The others are released at once, so
    /// writes to them no longer copy them.
    pub fn into_selected(self, selected: Option<&[u32]>) -> Vec<(u32, Arc<Bucket>)> {
        let numbered = self.buckets.into_iter().enumerate().map(|(index, bucket)| (index as u32, bucket));
        match selected {
            None => numbered.collect(),
            Some(selected) => {
                let mut wanted = selected.iter().peekable();
                numbered.filter(|(index, _)| wanted.next_if_eq(&index).is_some()).collect()
            }
        }
    }
}

/// All keys and values of the node.
pub struct Keyspace {
    /// Fixed number of buckets; see the module comment for why `Arc`.
    buckets: Vec<Arc<Bucket>>,
    /// Number of keys (expired-but-not-yet-deleted ones included).
    key_count: usize,
    /// Number of keys with an expiry deadline.
    expiring_count: usize,
    /// Keys some client `WATCH`es → (watchers, modification version).
    /// Empty almost always, so the write path pays one `is_empty` check.
    watched: hashbrown::HashMap<Bytes, (u32, u64), Hasher>,
    /// Next bucket the active-expiry pass looks at.
    expiry_cursor: usize,
    /// The generation writes are stamped with now; `cut` closes it.
    generation: u64,
    /// Per bucket, the generation of its last write.
    stamps: Vec<u64>,
}

impl Default for Keyspace {
    fn default() -> Self {
        Keyspace::new()
    }
}

/// The bucket a key belongs to: stable across processes and versions.
pub fn bucket_of(key: &[u8]) -> usize {
    crc32c::crc32c(key) as usize & (BUCKET_COUNT - 1)
}

fn blob(bytes: &[u8]) -> Blob {
    Box::from(bytes)
}

impl Keyspace {
    /// An empty keyspace.
    pub fn new() -> Keyspace {
        Keyspace {
            buckets: (0..BUCKET_COUNT).map(|_| Arc::new(Bucket::default())).collect(),
            key_count: 0,
            expiring_count: 0,
            watched: Default::default(),
            expiry_cursor: 0,
            generation: 0,
            stamps: vec![0; BUCKET_COUNT],
        }
    }

    /// Number of keys, including expired ones not yet deleted (like Redis `DBSIZE`).
    pub fn len(&self) -> usize {
        self.key_count
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.key_count == 0
    }

    /// Number of keys with an expiry.
    pub fn expiring_len(&self) -> usize {
        self.expiring_count
    }

    /// The live entry under `key` at `now_ms` (an expired key reads as absent).
    pub fn get(&self, key: &[u8], now_ms: u64) -> Option<&Entry> {
        self.get_including_expired(key).filter(|entry| !entry.is_expired(now_ms))
    }

    /// The entry under `key` even if its deadline passed (the write path
    /// uses this to delete it through an effect first).
    pub fn get_including_expired(&self, key: &[u8]) -> Option<&Entry> {
        self.buckets[bucket_of(key)].entries.get(key)
    }

    /// A frozen view of the current state; see the module comment.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot { buckets: self.buckets.clone(), key_count: self.key_count }
    }

    /// Takes a checkpoint's cut: the snapshot, and for an incremental the
    /// buckets written after generation `changed_since` (the base cut's);
    /// then opens the next generation. Cost: cloning the bucket pointers and
    /// one pass over the stamps — independent of the data size.
    pub fn cut(&mut self, changed_since: Option<u64>) -> Cut {
        let snapshot = self.snapshot();
        let changed = changed_since
            .map(|base| (0..BUCKET_COUNT as u32).filter(|&bucket| self.stamps[bucket as usize] > base).collect());
        let generation = self.advance_generation();
        Cut { snapshot, generation, changed }
    }

    /// Closes the current generation and returns it (after a restore, the
    /// restored state is the closed generation: the base of the next incremental).
    pub fn advance_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation - 1
    }

    /// Replaces bucket `index` whole (checkpoint restore; an incremental's
    /// bucket also removes the keys deleted since its base).
    pub fn replace_bucket(&mut self, index: usize, bucket: Bucket) {
        let old = &self.buckets[index];
        self.key_count = self.key_count - old.entries.len() + bucket.entries.len();
        self.expiring_count = self.expiring_count - old.expiring as usize + bucket.expiring as usize;
        self.buckets[index] = Arc::new(bucket);
        self.stamps[index] = self.generation;
    }

    fn bucket_mut(&mut self, key: &[u8]) -> &mut Bucket {
        let index = bucket_of(key);
        self.stamps[index] = self.generation;
        Arc::make_mut(&mut self.buckets[index])
    }

    fn insert(&mut self, key: &[u8], entry: Entry) {
        let expiring = entry.expire_at_ms != 0;
        let bucket = self.bucket_mut(key);
        // Overwriting keeps the stored key: no allocation, no second hash.
        let previous = match bucket.entries.get_mut(key) {
            Some(slot) => Some(std::mem::replace(slot, entry)),
            None => bucket.entries.insert(Key::from(key), entry),
        };
        let was_expiring = previous.as_ref().is_some_and(|old| old.expire_at_ms != 0);
        match (was_expiring, expiring) {
            (false, true) => bucket.expiring += 1,
            (true, false) => bucket.expiring -= 1,
            _ => {}
        }
        match (was_expiring, expiring) {
            (false, true) => self.expiring_count += 1,
            (true, false) => self.expiring_count -= 1,
            _ => {}
        }
        if previous.is_none() {
            self.key_count += 1;
        }
    }

    fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        if !self.buckets[bucket_of(key)].entries.contains_key(key) {
            return None;
        }
        let bucket = self.bucket_mut(key);
        let removed = bucket.entries.remove(key)?;
        if removed.expire_at_ms != 0 {
            bucket.expiring -= 1;
            self.expiring_count -= 1;
        }
        self.key_count -= 1;
        Some(removed)
    }

    fn set_expiry(&mut self, key: &[u8], at_ms: u64) {
        let bucket = self.bucket_mut(key);
        let Some(entry) = bucket.entries.get_mut(key) else { return };
        let before = entry.expire_at_ms != 0;
        entry.expire_at_ms = at_ms;
        match (before, at_ms != 0) {
            (false, true) => {
                bucket.expiring += 1;
                self.expiring_count += 1;
            }
            (true, false) => {
                bucket.expiring -= 1;
                self.expiring_count -= 1;
            }
            _ => {}
        }
    }

    /// The aggregate under `key` for changing, created by `make` when absent.
    /// Panics if the key holds another type: effects are emitted only after
    /// the command checked the type, so that is a bug, not an input error.
    fn value_mut(&mut self, key: &[u8], make: fn() -> Value) -> &mut Value {
        if self.get_including_expired(key).is_none() {
            self.insert(key, Entry { value: make(), expire_at_ms: 0 });
        }
        let entry = self.bucket_mut(key).entries.get_mut(key).expect("inserted above");
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
        self.buckets = (0..BUCKET_COUNT).map(|_| Arc::new(Bucket::default())).collect();
        self.stamps.fill(self.generation);
        self.key_count = 0;
        self.expiring_count = 0;
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
    /// because buckets are fixed and each is visited whole.
    pub fn scan(&self, cursor: u64, count: usize, mut keep: impl FnMut(&[u8], &Entry) -> bool) -> (u64, Vec<Bytes>) {
        let mut found = Vec::new();
        let mut seen = 0;
        let mut bucket_index = cursor as usize;
        while bucket_index < BUCKET_COUNT && seen < count {
            for (key, entry) in self.buckets[bucket_index].entries.iter() {
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
        self.buckets
            .iter()
            .flat_map(|bucket| bucket.entries.iter())
            .filter(|(key, entry)| !entry.is_expired(now_ms) && (match_all || glob::matches(pattern, key)))
            .map(|(key, _)| Bytes::copy_from_slice(key))
            .collect()
    }

    /// A random live key, or `None` when there is none.
    pub fn random_key(&self, now_ms: u64, rng: &mut impl Rng) -> Option<Bytes> {
        if self.key_count == 0 {
            return None;
        }
        // Sample non-empty buckets; bounded, then fall back to a full walk.
        for _ in 0..256 {
            let bucket = &self.buckets[rng.gen_range(0..BUCKET_COUNT)];
            if bucket.entries.is_empty() {
                continue;
            }
            let skip = rng.gen_range(0..bucket.entries.len());
            let (key, entry) = bucket.entries.iter().nth(skip).expect("skip < len");
            if !entry.is_expired(now_ms) {
                return Some(Bytes::copy_from_slice(key));
            }
        }
        let live: Vec<&Key> = self
            .buckets
            .iter()
            .flat_map(|bucket| bucket.entries.iter())
            .filter(|(_, entry)| !entry.is_expired(now_ms))
            .map(|(key, _)| key)
            .collect();
        (!live.is_empty()).then(|| Bytes::copy_from_slice(live[rng.gen_range(0..live.len())]))
    }

    /// Expired keys found by examining up to `budget` keys of buckets with
    /// expiring keys, resuming where the previous pass stopped. The caller
    /// deletes them through `Effect::Delete` so that the log records it.
    pub fn expired_keys(&mut self, now_ms: u64, budget: usize) -> Vec<Bytes> {
        let mut expired = Vec::new();
        if self.expiring_count == 0 {
            return expired;
        }
        let mut examined = 0;
        let mut buckets_visited = 0;
        while examined < budget && buckets_visited < BUCKET_COUNT {
            let bucket = &self.buckets[self.expiry_cursor];
            if bucket.expiring > 0 {
                for (key, entry) in bucket.entries.iter() {
                    examined += 1;
                    if entry.is_expired(now_ms) {
                        expired.push(Bytes::copy_from_slice(key));
                    }
                }
            }
            self.expiry_cursor = (self.expiry_cursor + 1) % BUCKET_COUNT;
            buckets_visited += 1;
        }
        expired
    }

    /// An order-independent digest of the whole state, to compare two
    /// keyspaces (replay vs restore, two replicas).
    pub fn digest(&self) -> u64 {
        self.buckets
            .iter()
            .flat_map(|bucket| bucket.entries.iter())
            .map(|(key, entry)| entry_digest(key, entry))
            .fold(0u64, u64::wrapping_add)
    }

    /// Checks the counting invariants listed at the top of this module.
    pub fn check_counts(&self) {
        let mut keys = 0;
        let mut expiring = 0;
        for (index, bucket) in self.buckets.iter().enumerate() {
            let bucket_expiring = bucket.entries.values().filter(|entry| entry.expire_at_ms != 0).count();
            assert_eq!(bucket.expiring as usize, bucket_expiring, "bucket {index} expiring count");
            for (key, entry) in bucket.entries.iter() {
                assert_eq!(bucket_of(key), index, "key in the wrong bucket");
                assert!(!entry.value.is_empty_aggregate(), "empty aggregate stored");
            }
            keys += bucket.entries.len();
            expiring += bucket_expiring;
        }
        assert_eq!(self.key_count, keys, "key count");
        assert_eq!(self.expiring_count, expiring, "expiring count");
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
fn list_mut(value: &mut Value) -> &mut ListValue {
    match value {
        Value::List(list) => Arc::make_mut(list),
        other => panic!("list effect on a {} key", other.type_name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let bucket = &snapshot.buckets()[bucket_of(b"a")];
        let (_, entry) = bucket.entries().find(|(key, _)| *key == b"a").unwrap();
        assert_eq!(entry.value, Value::String(blob(b"1")));
        assert_eq!(snapshot.key_count(), 1);
        assert_eq!(keyspace.len(), 2);
        keyspace.check_counts();
    }

    #[test]
    fn a_cut_lists_exactly_the_buckets_written_since_the_base() {
        let mut keyspace = Keyspace::new();
        keyspace.apply(&Effect::Set { key: b("a"), value: b("1"), ttl: Ttl::Clear });
        let full = keyspace.cut(None);
        assert!(full.changed.is_none());
        let unchanged = keyspace.cut(Some(full.generation));
        assert_eq!(unchanged.changed, Some(vec![]));
        keyspace.apply(&Effect::Set { key: b("b"), value: b("2"), ttl: Ttl::Clear });
        keyspace.apply(&Effect::Delete { key: b("a") });
        keyspace.apply(&Effect::Delete { key: b("never-there") });
        let mut expected = vec![bucket_of(b"a") as u32, bucket_of(b"b") as u32];
        expected.sort();
        expected.dedup();
        // Relative to the full cut (as after a failed checkpoint), and to the latest one.
        let incremental = keyspace.cut(Some(full.generation));
        assert_eq!(incremental.changed.as_ref(), Some(&expected));
        assert_eq!(keyspace.cut(Some(unchanged.generation)).changed.as_ref(), Some(&expected));
        let latest = keyspace.cut(Some(incremental.generation));
        assert_eq!(latest.changed, Some(vec![]));
        keyspace.apply(&Effect::FlushAll);
        assert_eq!(keyspace.cut(Some(latest.generation)).changed.unwrap().len(), BUCKET_COUNT);
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
        for (index, bucket) in snapshot.buckets().iter().enumerate() {
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
}

//! Values stored under a key.

use std::collections::VecDeque;
use std::sync::Arc;

/// Bytes of a string value or list element, stored without spare capacity.
pub type Blob = Box<[u8]>;

/// Longest key kept inline in a [`Key`].
pub const KEY_INLINE_BYTES_MAX: usize = 22;

/// A key (also a hash field or set member): short ones, the common case, sit
/// inline in the hash table's slot, so a lookup compares bytes without
/// chasing a pointer and storing one allocates nothing; longer ones go to the
/// heap. Hashes, compares and borrows exactly as its bytes (`[u8]`), so maps
/// are queried with plain byte slices.
#[derive(Clone)]
pub struct Key(KeyBytes);

#[derive(Clone)]
enum KeyBytes {
    Inline { length: u8, bytes: [u8; KEY_INLINE_BYTES_MAX] },
    Heap(Box<[u8]>),
}

const _: () = assert!(std::mem::size_of::<Key>() == 24);

impl Key {
    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            KeyBytes::Inline { length, bytes } => &bytes[..*length as usize],
            KeyBytes::Heap(bytes) => bytes,
        }
    }
}

impl From<&[u8]> for Key {
    fn from(source: &[u8]) -> Key {
        if source.len() <= KEY_INLINE_BYTES_MAX {
            let mut bytes = [0u8; KEY_INLINE_BYTES_MAX];
            bytes[..source.len()].copy_from_slice(source);
            Key(KeyBytes::Inline { length: source.len() as u8, bytes })
        } else {
            Key(KeyBytes::Heap(Box::from(source)))
        }
    }
}

impl std::ops::Deref for Key {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::borrow::Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    /// By bytes, as `memcmp` orders them (Redis's order for equal scores).
    fn cmp(&self, other: &Key) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl std::hash::Hash for Key {
    // Must hash exactly as `[u8]` does, for `Borrow<[u8]>` lookups.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state)
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// The hasher of the collections inside values (fast, randomly seeded per process).
pub type Hasher = foldhash::fast::RandomState;

/// A hash value: field → value.
pub type HashValue = hashbrown::HashMap<Key, Blob, Hasher>;
/// A set value.
pub type SetValue = hashbrown::HashSet<Key, Hasher>;
/// A list value.
pub type ListValue = VecDeque<Blob>;
pub use super::sorted_set::SortedSet;

/// A value of one of the Redis types tandem supports.
///
/// Aggregates sit behind an `Arc` so that a checkpoint's copy of a bucket
/// shares them; a write to a shared one copies it first (`Arc::make_mut`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A string (also integers and floats, kept as their text).
    String(Blob),
    /// A hash.
    Hash(Arc<HashValue>),
    /// A set.
    Set(Arc<SetValue>),
    /// A list.
    List(Arc<ListValue>),
    /// A sorted set.
    SortedSet(Arc<SortedSet>),
}

impl Value {
    /// The name `TYPE` reports.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::String(_) => "string",
            Value::Hash(_) => "hash",
            Value::Set(_) => "set",
            Value::List(_) => "list",
            Value::SortedSet(_) => "zset",
        }
    }

    /// Asks the CPU to start loading the value's own memory into the cache,
    /// without waiting for it: a reader going through many entries (a
    /// checkpoint's writer, `Keyspace::prefetch`) calls this ahead, so that their
    /// cache misses, each value being its own allocation somewhere on the
    /// heap, overlap instead of coming one after another.
    pub fn prefetch(&self) {
        match self {
            Value::String(bytes) => {
                // The first four cache lines: a long value's rest streams in anyway.
                for offset in (0..bytes.len().min(256)).step_by(64) {
                    prefetch_read(bytes[offset..].as_ptr());
                }
            }
            Value::Hash(hash) => prefetch_read(Arc::as_ptr(hash).cast()),
            Value::Set(set) => prefetch_read(Arc::as_ptr(set).cast()),
            Value::List(list) => prefetch_read(Arc::as_ptr(list).cast()),
            Value::SortedSet(zset) => prefetch_read(Arc::as_ptr(zset).cast()),
        }
    }

    /// Whether the value is an empty aggregate (Redis deletes those keys).
    pub fn is_empty_aggregate(&self) -> bool {
        match self {
            Value::String(_) => false,
            Value::Hash(hash) => hash.is_empty(),
            Value::Set(set) => set.is_empty(),
            Value::List(list) => list.is_empty(),
            Value::SortedSet(zset) => zset.is_empty(),
        }
    }
}

/// A hint to load the cache line at `address`; never reads it, so never faults.
#[inline(always)]
pub(super) fn prefetch_read(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` is a hint that cannot fault whatever the address, and
    // SSE, which it belongs to, is part of every x86-64 CPU.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

/// What is stored under a key: the value and its expiry deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The value.
    pub value: Value,
    /// Absolute deadline in Unix milliseconds; 0 means no expiry.
    pub expire_at_ms: u64,
}

impl Entry {
    /// Whether the key is logically gone at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expire_at_ms != 0 && self.expire_at_ms <= now_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_every_length_hash_and_compare_as_their_bytes() {
        use std::hash::BuildHasher;
        let state = foldhash::fast::FixedState::with_seed(1);
        for length in [0, 1, KEY_INLINE_BYTES_MAX - 1, KEY_INLINE_BYTES_MAX, KEY_INLINE_BYTES_MAX + 1, 300] {
            let bytes: Vec<u8> = (0..length).map(|index| index as u8).collect();
            let key = Key::from(&bytes[..]);
            assert_eq!(key.as_bytes(), &bytes[..]);
            assert_eq!(state.hash_one(&key), state.hash_one(&bytes[..]), "length {length}");
            assert_eq!(key, key.clone());
        }
        let mut set = SetValue::default();
        set.insert(Key::from(&b"member"[..]));
        assert!(set.contains(&b"member"[..]));
        assert!(!set.contains(&b"other"[..]));
    }
}

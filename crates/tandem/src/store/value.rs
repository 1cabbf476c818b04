//! Values stored under a key.

use std::collections::VecDeque;
use std::sync::Arc;

/// Bytes of a key or a string value, stored without spare capacity.
pub type Blob = Box<[u8]>;

/// The hasher of the collections inside values (fast, randomly seeded per process).
pub type Hasher = foldhash::fast::RandomState;

/// A hash value: field → value.
pub type HashValue = hashbrown::HashMap<Blob, Blob, Hasher>;
/// A set value.
pub type SetValue = hashbrown::HashSet<Blob, Hasher>;
/// A list value.
pub type ListValue = VecDeque<Blob>;

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
}

impl Value {
    /// The name `TYPE` reports.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::String(_) => "string",
            Value::Hash(_) => "hash",
            Value::Set(_) => "set",
            Value::List(_) => "list",
        }
    }

    /// Whether the value is an empty aggregate (Redis deletes those keys).
    pub fn is_empty_aggregate(&self) -> bool {
        match self {
            Value::String(_) => false,
            Value::Hash(hash) => hash.is_empty(),
            Value::Set(set) => set.is_empty(),
            Value::List(list) => list.is_empty(),
        }
    }
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

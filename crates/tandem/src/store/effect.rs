//! Effects: the deterministic state changes that the log stores.
//!
//! A command becomes effects once, on the node that runs it: an `EXPIRE`
//! becomes an absolute deadline, `SPOP` the members it removed, `INCR` a
//! delta. Replaying effects never reads a clock or a random number, so
//! replay, replication and restore reach the same state as the original.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// How a string write treats an existing expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ttl {
    /// Remove any expiry.
    Clear,
    /// Keep the key's current expiry (`KEEPTTL`, `INCR`, `APPEND`, …).
    Keep,
    /// Expire at this Unix time in milliseconds.
    At(u64),
}

/// One state change. Effects are only emitted after the command checked
/// types and arguments, so applying one never fails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Effect {
    /// Store a string, replacing any value of any type.
    Set { key: Bytes, value: Bytes, ttl: Ttl },
    /// Append to a string (created if absent); the expiry is kept.
    Append { key: Bytes, value: Bytes },
    /// Overwrite part of a string at `offset`, zero-padding; expiry kept.
    SetRange { key: Bytes, offset: u64, value: Bytes },
    /// Add `delta` to an integer string (absent = 0); expiry kept.
    IncrBy { key: Bytes, delta: i64 },
    /// Remove a key (also how an expired key is deleted).
    Delete { key: Bytes },
    /// Set the expiry deadline of an existing key (Unix milliseconds).
    ExpireAt { key: Bytes, at_ms: u64 },
    /// Remove the expiry of a key.
    Persist { key: Bytes },
    /// Move a key's value and expiry to another name, replacing it.
    Rename { from: Bytes, to: Bytes },
    /// Set hash fields (hash created if absent).
    HashSet { key: Bytes, pairs: Vec<(Bytes, Bytes)> },
    /// Remove hash fields; the key goes when the hash is empty.
    HashDelete { key: Bytes, fields: Vec<Bytes> },
    /// Add `delta` to an integer hash field (absent = 0).
    HashIncrBy { key: Bytes, field: Bytes, delta: i64 },
    /// Add set members (set created if absent).
    SetAdd { key: Bytes, members: Vec<Bytes> },
    /// Remove set members; the key goes when the set is empty.
    SetRemove { key: Bytes, members: Vec<Bytes> },
    /// Push values at the head (`left`) or tail of a list, in order.
    ListPush { key: Bytes, left: bool, values: Vec<Bytes> },
    /// Pop `count` values from the head (`left`) or tail of a list.
    ListPop { key: Bytes, left: bool, count: u64 },
    /// Replace the element at a (normalised, in-range) index.
    ListSet { key: Bytes, index: u64, value: Bytes },
    /// Remove elements equal to `value`, like `LREM key count value`.
    ListRemove { key: Bytes, count: i64, value: Bytes },
    /// Keep only the elements in `start..=stop` (normalised, may be empty).
    ListTrim { key: Bytes, start: u64, stop: u64, keep_none: bool },
    /// Remove every key.
    FlushAll,
    /// Set sorted set members' scores (set created if absent). A score is
    /// the final one, never a delta: `ZINCRBY` records the sum. Never NaN.
    SortedSetAdd { key: Bytes, members: Vec<(Bytes, f64)> },
    /// Remove sorted set members; the key goes when the set is empty.
    SortedSetRemove { key: Bytes, members: Vec<Bytes> },
}

impl Effect {
    /// The key this effect changes, if it changes exactly one (for WATCH).
    pub fn keys(&self) -> (Option<&Bytes>, Option<&Bytes>) {
        match self {
            Effect::Set { key, .. }
            | Effect::Append { key, .. }
            | Effect::SetRange { key, .. }
            | Effect::IncrBy { key, .. }
            | Effect::Delete { key }
            | Effect::ExpireAt { key, .. }
            | Effect::Persist { key }
            | Effect::HashSet { key, .. }
            | Effect::HashDelete { key, .. }
            | Effect::HashIncrBy { key, .. }
            | Effect::SetAdd { key, .. }
            | Effect::SetRemove { key, .. }
            | Effect::ListPush { key, .. }
            | Effect::ListPop { key, .. }
            | Effect::ListSet { key, .. }
            | Effect::ListRemove { key, .. }
            | Effect::ListTrim { key, .. }
            | Effect::SortedSetAdd { key, .. }
            | Effect::SortedSetRemove { key, .. } => (Some(key), None),
            Effect::Rename { from, to } => (Some(from), Some(to)),
            Effect::FlushAll => (None, None),
        }
    }
}

/// Room an encoded byte string needs beyond its bytes (postcard's varint length prefix).
const LENGTH_PREFIX_BYTES_MAX: u64 = 10;
/// Room a score takes (postcard writes an `f64` as its 8 bytes).
const SCORE_BYTES: u64 = 8;
/// Room an effect's tag and fixed-size fields need at most.
const FIXED_FIELDS_BYTES_MAX: u64 = 64;

impl Effect {
    /// At least as many bytes as this effect encodes to: what `Database` checks a write's
    /// effects against before they reach the log, where a record has a size limit.
    pub fn encoded_bytes_bound(&self) -> u64 {
        let one = |bytes: &Bytes| bytes.len() as u64 + LENGTH_PREFIX_BYTES_MAX;
        let all = |list: &[Bytes]| list.iter().map(one).sum::<u64>() + LENGTH_PREFIX_BYTES_MAX;
        FIXED_FIELDS_BYTES_MAX
            + match self {
                Effect::Set { key, value, .. }
                | Effect::Append { key, value }
                | Effect::SetRange { key, value, .. }
                | Effect::ListSet { key, value, .. }
                | Effect::ListRemove { key, value, .. } => one(key) + one(value),
                Effect::HashIncrBy { key, field, .. } => one(key) + one(field),
                Effect::Rename { from, to } => one(from) + one(to),
                Effect::IncrBy { key, .. }
                | Effect::Delete { key }
                | Effect::ExpireAt { key, .. }
                | Effect::Persist { key }
                | Effect::ListPop { key, .. }
                | Effect::ListTrim { key, .. } => one(key),
                Effect::HashSet { key, pairs } => {
                    one(key) + pairs.iter().map(|(field, value)| one(field) + one(value)).sum::<u64>()
                }
                Effect::HashDelete { key, fields } => one(key) + all(fields),
                Effect::SetAdd { key, members }
                | Effect::SetRemove { key, members }
                | Effect::SortedSetRemove { key, members } => one(key) + all(members),
                Effect::SortedSetAdd { key, members } => {
                    one(key) + members.iter().map(|(member, _)| one(member) + SCORE_BYTES).sum::<u64>()
                }
                Effect::ListPush { key, values, .. } => one(key) + all(values),
                Effect::FlushAll => 0,
            }
    }
}

/// Encodes a record's effects as a log payload (postcard), appending to `out`.
pub fn encode(effects: &[Effect], out: &mut Vec<u8>) {
    let encoded = postcard::to_extend(effects, std::mem::take(out))
        .expect("effects always serialize: no maps with non-string keys, no unsupported types");
    *out = encoded;
}

/// Decodes a log payload back into effects.
pub fn decode(payload: &[u8]) -> Result<Vec<Effect>, postcard::Error> {
    postcard::from_bytes(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effects_roundtrip_through_the_payload_encoding() {
        let effects = vec![
            Effect::Set { key: Bytes::from_static(b"k"), value: Bytes::from_static(b"v"), ttl: Ttl::At(42) },
            Effect::IncrBy { key: Bytes::from_static(b"n"), delta: -7 },
            Effect::ListTrim { key: Bytes::from_static(b"l"), start: 1, stop: 3, keep_none: false },
            Effect::FlushAll,
            Effect::SortedSetAdd { key: Bytes::from_static(b"z"), members: vec![(Bytes::from_static(b"m"), -0.5)] },
            Effect::SortedSetRemove { key: Bytes::from_static(b"z"), members: vec![Bytes::from_static(b"m")] },
        ];
        let mut out = Vec::new();
        encode(&effects, &mut out);
        assert_eq!(decode(&out).unwrap(), effects);
        assert!(decode(&out[..out.len() - 1]).is_err());
    }

    #[test]
    fn the_encoded_size_bound_is_never_below_the_encoding() {
        let b = |text: &str| Bytes::copy_from_slice(text.as_bytes());
        let long = Bytes::from(vec![7u8; 100_000]);
        let many: Vec<Bytes> = (0..1000).map(|index| b(&format!("m{index}"))).collect();
        let many_scored = many.iter().map(|member| (member.clone(), f64::MIN_POSITIVE)).collect();
        let long_member = long.clone();
        let effects = [
            Effect::Set { key: b("k"), value: long.clone(), ttl: Ttl::At(u64::MAX) },
            Effect::SetRange { key: b("k"), offset: u64::MAX, value: b("v") },
            Effect::HashSet { key: b("h"), pairs: vec![(b("f"), long.clone()), (long.clone(), b(""))] },
            Effect::SetAdd { key: b("s"), members: many.clone() },
            Effect::ListPush { key: b("l"), left: true, values: many },
            Effect::ListRemove { key: b("l"), count: i64::MIN, value: long },
            Effect::ListTrim { key: b("l"), start: u64::MAX, stop: u64::MAX, keep_none: true },
            Effect::FlushAll,
            Effect::SortedSetAdd { key: b("z"), members: many_scored },
            Effect::SortedSetRemove { key: b("z"), members: vec![long_member] },
        ];
        for effect in effects {
            let mut out = Vec::new();
            encode(std::slice::from_ref(&effect), &mut out);
            assert!(out.len() as u64 <= effect.encoded_bytes_bound(), "{} > bound", out.len());
        }
    }
}

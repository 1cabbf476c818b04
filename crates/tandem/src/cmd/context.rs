//! The context a data command runs in: the keyspace under its lock, the
//! clock and random source fixed for the command, and the effects it emits.

use bytes::Bytes;
use rand::rngs::SmallRng;

use super::CommandError;
use crate::store::value::{HashValue, ListValue, SetValue, SortedSet};
use crate::store::{Effect, Entry, Keyspace, Value};

/// Everything a data command may use. Commands read through it and change
/// state only through [`DataContext::emit`].
pub struct DataContext<'a> {
    keyspace: &'a mut Keyspace,
    effects: &'a mut Vec<Effect>,
    /// The command's time in Unix milliseconds (one value per command, so a
    /// command sees one consistent instant).
    pub now_ms: u64,
    /// Random source for `SPOP`, `SRANDMEMBER`, `RANDOMKEY`; what it picks is
    /// recorded in the effects, so replay never needs it.
    pub rng: &'a mut SmallRng,
}

impl<'a> DataContext<'a> {
    /// A context over `keyspace`, collecting effects into `effects`.
    pub fn new(keyspace: &'a mut Keyspace, effects: &'a mut Vec<Effect>, now_ms: u64, rng: &'a mut SmallRng) -> Self {
        DataContext { keyspace, effects, now_ms, rng }
    }

    /// The keyspace, read-only.
    pub fn keyspace(&self) -> &Keyspace {
        self.keyspace
    }

    /// Applies an effect and records it for the log.
    pub fn emit(&mut self, effect: Effect) {
        self.keyspace.apply(&effect);
        self.effects.push(effect);
    }

    /// Refuses a write whose effects, with `adding` more bytes, could outgrow one log
    /// record. Commands whose effects carry more than their arguments (a `STORE` of a
    /// large result) call it before they emit: the arguments' own limit does not cover them.
    pub fn check_room(&self, adding: u64) -> Result<(), CommandError> {
        let emitted: u64 = self.effects.iter().map(Effect::encoded_bytes_bound).sum();
        record_room(emitted, adding, RECORD_EFFECTS_BYTES_MAX)
    }

    /// A `STORE` form's write: replaces `destination` (of any type, its expiry dropped)
    /// with what `replacement` creates, or deletes it when there is no replacement (an
    /// empty result). Refused before anything changes if the result could outgrow a log
    /// record: it can be far larger than the command's arguments.
    pub fn replace_key(&mut self, destination: &Bytes, replacement: Option<Effect>) -> Result<(), CommandError> {
        let delete = Effect::Delete { key: destination.clone() };
        self.check_room(delete.encoded_bytes_bound() + replacement.as_ref().map_or(0, Effect::encoded_bytes_bound))?;
        if self.entry(destination).is_some() {
            self.emit(delete);
        }
        if let Some(replacement) = replacement {
            self.emit(replacement);
        }
        Ok(())
    }

    /// Deletes `key` through an effect if its deadline passed, so that the
    /// log (and a replica) sees the expiry before the write that follows.
    pub fn purge_if_expired(&mut self, key: &Bytes) {
        let expired = self.keyspace.get_including_expired(key).is_some_and(|entry| entry.is_expired(self.now_ms));
        if expired {
            self.emit(Effect::Delete { key: key.clone() });
        }
    }

    /// The live entry under `key`.
    pub fn entry(&self, key: &[u8]) -> Option<&Entry> {
        self.keyspace.get(key, self.now_ms)
    }

    /// The string under `key`; `WRONGTYPE` if it holds another type.
    pub fn string(&self, key: &[u8]) -> Result<Option<&[u8]>, CommandError> {
        match self.entry(key) {
            None => Ok(None),
            Some(Entry { value: Value::String(bytes), .. }) => Ok(Some(bytes)),
            Some(_) => Err(CommandError::WrongType),
        }
    }

    /// The hash under `key`; `WRONGTYPE` if it holds another type.
    pub fn hash(&self, key: &[u8]) -> Result<Option<&HashValue>, CommandError> {
        match self.entry(key) {
            None => Ok(None),
            Some(Entry { value: Value::Hash(hash), .. }) => Ok(Some(hash)),
            Some(_) => Err(CommandError::WrongType),
        }
    }

    /// The set under `key`; `WRONGTYPE` if it holds another type.
    pub fn set(&self, key: &[u8]) -> Result<Option<&SetValue>, CommandError> {
        match self.entry(key) {
            None => Ok(None),
            Some(Entry { value: Value::Set(set), .. }) => Ok(Some(set)),
            Some(_) => Err(CommandError::WrongType),
        }
    }

    /// The sorted set under `key`; `WRONGTYPE` if it holds another type.
    pub fn sorted_set(&self, key: &[u8]) -> Result<Option<&SortedSet>, CommandError> {
        match self.entry(key) {
            None => Ok(None),
            Some(Entry { value: Value::SortedSet(zset), .. }) => Ok(Some(zset)),
            Some(_) => Err(CommandError::WrongType),
        }
    }

    /// The list under `key`; `WRONGTYPE` if it holds another type.
    pub fn list(&self, key: &[u8]) -> Result<Option<&ListValue>, CommandError> {
        match self.entry(key) {
            None => Ok(None),
            Some(Entry { value: Value::List(list), .. }) => Ok(Some(list)),
            Some(_) => Err(CommandError::WrongType),
        }
    }
}

/// The most effect bytes one log record holds (its payload limit, less the effect list's
/// length prefix).
const RECORD_EFFECTS_BYTES_MAX: u64 = crate::limits::LOG_RECORD_BYTES_MAX as u64 - 16;

fn record_room(emitted: u64, adding: u64, limit: u64) -> Result<(), CommandError> {
    let total = emitted.saturating_add(adding);
    if total > limit {
        return Err(CommandError::err(format!(
            "write too large: its effects need up to {total} bytes, at most {limit} fit in one log record"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_takes_effects_up_to_its_limit_and_not_beyond() {
        assert!(record_room(60, 40, 100).is_ok());
        let refused = record_room(60, 41, 100).unwrap_err().to_string();
        assert_eq!(refused, "ERR write too large: its effects need up to 101 bytes, at most 100 fit in one log record");
        assert!(record_room(u64::MAX, 1, 100).is_err(), "no overflow");
    }
}

//! The context a data command runs in: the keyspace under its lock, the
//! clock and random source fixed for the command, and the effects it emits.

use bytes::Bytes;
use rand::rngs::SmallRng;

use super::CommandError;
use crate::store::value::{HashValue, ListValue, SetValue};
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

    /// The list under `key`; `WRONGTYPE` if it holds another type.
    pub fn list(&self, key: &[u8]) -> Result<Option<&ListValue>, CommandError> {
        match self.entry(key) {
            None => Ok(None),
            Some(Entry { value: Value::List(list), .. }) => Ok(Some(list)),
            Some(_) => Err(CommandError::WrongType),
        }
    }
}

//! `COPY source destination [DB db] [REPLACE]`: a second key with the same
//! value and expiry; and `MOVE key db`, which a server of one database (see
//! `SELECT`) answers as Redis configured with `databases 1` does.
//!
//! The copy is written as the effects that build the value from nothing —
//! `Set` for a string (with its deadline), `HashSet`, `ListPush`, `SetAdd` or
//! `SortedSetAdd` for an aggregate, then `ExpireAt` — after a `Delete` of a
//! replaced destination. So replay, a standby and a checkpoint see an
//! ordinary write, and a copy too large for one log record is refused before
//! anything changes (`DataContext::check_room`).

use bytes::Bytes;
use tandem_resp::Frame;

use super::args::is;
use super::table::{spec, CommandSpec, Flags};
use super::{CommandError, DataContext, Reply};
use crate::store::effect::{Effect, Ttl};
use crate::store::{Entry, Value};

/// COPY and MOVE.
pub const SPECS: &[CommandSpec] = &[
    spec("copy", -3, Flags::WRITE.with(Flags::DENYOOM), (1, 2, 1), copy),
    spec("move", 3, Flags::WRITE.with(Flags::FAST), (1, 1, 1), move_key),
];

fn copied(bytes: &[u8]) -> Bytes {
    Bytes::copy_from_slice(bytes)
}

/// The effects that build `entry`'s value under `key`, then its expiry.
pub(super) fn rebuild(key: &Bytes, entry: &Entry) -> Vec<Effect> {
    let mut effects = vec![match &entry.value {
        Value::String(bytes) => {
            let ttl = if entry.expire_at_ms == 0 { Ttl::Clear } else { Ttl::At(entry.expire_at_ms) };
            return vec![Effect::Set { key: key.clone(), value: copied(bytes), ttl }];
        }
        Value::Hash(hash) => Effect::HashSet {
            key: key.clone(),
            pairs: hash.iter().map(|(field, value)| (copied(field), copied(value))).collect(),
        },
        Value::List(list) => {
            Effect::ListPush { key: key.clone(), left: false, values: list.iter().map(|item| copied(item)).collect() }
        }
        Value::Set(set) => {
            Effect::SetAdd { key: key.clone(), members: set.iter().map(|member| copied(member)).collect() }
        }
        Value::SortedSet(zset) => Effect::SortedSetAdd {
            key: key.clone(),
            members: zset.iter(false).map(|(member, score)| (copied(member), score)).collect(),
        },
    }];
    if entry.expire_at_ms != 0 {
        effects.push(Effect::ExpireAt { key: key.clone(), at_ms: entry.expire_at_ms });
    }
    effects
}

/// `COPY source destination [DB db] [REPLACE]` — 1 if copied; 0 if `source` is
/// missing or `destination` exists and `REPLACE` was not given.
fn copy(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let (source, destination) = (&args[1], &args[2]);
    let mut replace = false;
    let mut options = args[3..].iter();
    while let Some(option) = options.next() {
        if is(option, "replace") {
            replace = true;
        } else if is(option, "db") {
            super::args::database_index(options.next().ok_or(CommandError::Syntax)?)?;
        } else {
            return Err(CommandError::Syntax);
        }
    }
    if source == destination {
        return Err(CommandError::err("source and destination objects are the same"));
    }
    let Some(entry) = context.entry(source) else {
        return Ok(Frame::Integer(0));
    };
    let effects = rebuild(destination, entry);
    let exists = context.entry(destination).is_some();
    if exists && !replace {
        return Ok(Frame::Integer(0));
    }
    context.check_room(effects.iter().map(Effect::encoded_bytes_bound).sum::<u64>() + 64 + destination.len() as u64)?;
    if exists {
        context.emit(Effect::Delete { key: destination.clone() });
    }
    for effect in effects {
        context.emit(effect);
    }
    Ok(Frame::Integer(1))
}

/// `MOVE key db`. The only database is 0, which is also the source: Redis
/// with `databases 1` refuses every call, a bad index as `SELECT` does, then
/// the move to itself.
fn move_key(_context: &mut DataContext, args: &[Bytes]) -> Reply {
    super::args::database_index(&args[2])?;
    Err(CommandError::err("source and destination objects are the same"))
}

#[cfg(test)]
mod tests {
    use crate::cmd::harness::Harness;
    use tandem_resp::Frame;

    #[test]
    fn every_type_copies_with_its_expiry_and_replay_agrees() {
        let mut h = Harness::new();
        h.ok("set s text");
        h.ok("pexpire s 5000");
        h.ok("rpush l a b c");
        h.ok("hset h f v");
        h.ok("sadd set m");
        h.ok("zadd z 2 two 1 one");
        h.ok("expire z 100");
        for key in ["s", "l", "h", "set", "z"] {
            assert_eq!(h.ok(&format!("copy {key} {key}:copy")), Frame::Integer(1), "{key}");
            let original = h.keyspace.get(key.as_bytes(), h.now_ms).unwrap().clone();
            let copy = h.keyspace.get(format!("{key}:copy").as_bytes(), h.now_ms).unwrap().clone();
            assert_eq!(copy, original, "{key}");
        }
        assert_eq!(h.ok("copy s l"), Frame::Integer(0), "an existing destination without REPLACE");
        assert_eq!(h.ok("copy s l REPLACE DB 0"), Frame::Integer(1));
        let replaced = h.keyspace.get(b"l", h.now_ms).unwrap();
        assert_eq!((replaced.value.type_name(), replaced.expire_at_ms), ("string", h.now_ms + 5000));
        assert_eq!(h.ok("copy missing x"), Frame::Integer(0));
        assert_eq!(h.error("copy s s"), "ERR source and destination objects are the same");
        assert_eq!(h.error("copy s x DB 1"), "ERR DB index is out of range");
        assert_eq!(h.error("copy s x FOO"), "ERR syntax error");
        h.assert_replay_matches();
    }

    #[test]
    fn move_answers_as_redis_with_one_database() {
        let mut h = Harness::new();
        h.ok("set k v");
        assert_eq!(h.error("move k 0"), "ERR source and destination objects are the same");
        assert_eq!(h.error("move missing 0"), "ERR source and destination objects are the same");
        for db in ["1", "-1", "16", "2147483647"] {
            assert_eq!(h.error(&format!("move k {db}")), "ERR DB index is out of range", "{db}");
        }
        for db in ["x", "1.5", ""] {
            assert_eq!(h.error(&format!("move k {db}")), "ERR value is not an integer or out of range", "{db}");
        }
        for db in ["2147483648", "-2147483649"] {
            let expected = "ERR value is out of range, value must between -2147483648 and 2147483647";
            assert_eq!(h.error(&format!("move k {db}")), expected, "{db}");
            assert_eq!(h.error(&format!("copy k k2 db {db}")), expected, "{db}");
        }
        assert_eq!(h.ok("get k"), Frame::Bulk("v".as_bytes().to_vec().into()), "nothing changed");
        h.assert_replay_matches();
    }
}

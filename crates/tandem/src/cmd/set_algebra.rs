//! Commands over several sets: SINTER, SUNION, SDIFF, their `STORE` forms,
//! SINTERCARD, and SMOVE.
//!
//! A missing key is an empty set; a key of another type is `WRONGTYPE`,
//! checked for every key named before anything is computed (as Redis 7 does).
//! A `STORE` form computes the result first, then replaces the destination
//! (of any type, its expiry dropped) through `Effect::Delete` and
//! `Effect::SetAdd`, so the destination may also be one of the sources; an
//! empty result deletes it. Results are built in memory: each is at most as
//! large as the sets it came from. A stored result must fit in one log record
//! with the rest of its transaction (`DataContext::check_room`), or the
//! command is refused before it changes anything.

use std::collections::HashSet;

use bytes::Bytes;
use tandem_resp::Frame;

use super::args;
use super::table::{spec, CommandSpec, Flags};
use super::{CommandError, DataContext, Reply};
use crate::store::effect::Effect;
use crate::store::value::SetValue;

const EVERY_KEY: (i32, i32, i32) = (1, -1, 1);
const STORE: Flags = Flags::WRITE.with(Flags::DENYOOM);

/// The set-algebra commands.
pub const SPECS: &[CommandSpec] = &[
    spec("sinter", -2, Flags::READONLY, EVERY_KEY, sinter),
    spec("sunion", -2, Flags::READONLY, EVERY_KEY, sunion),
    spec("sdiff", -2, Flags::READONLY, EVERY_KEY, sdiff),
    spec("sinterstore", -3, STORE, EVERY_KEY, sinterstore),
    spec("sunionstore", -3, STORE, EVERY_KEY, sunionstore),
    spec("sdiffstore", -3, STORE, EVERY_KEY, sdiffstore),
    // Its keys follow a count, as in Redis, where `COMMAND INFO` shows no fixed key range.
    spec("sintercard", -3, Flags::READONLY, (0, 0, 0), sintercard),
    spec("smove", 4, Flags::WRITE.with(Flags::FAST), (1, 2, 1), smove),
];

#[derive(Clone, Copy)]
enum Operation {
    Intersection,
    Union,
    Difference,
}

/// The sets under `keys`, `None` for a missing key; `WRONGTYPE` if any holds another type.
fn sets_of<'a>(context: &'a DataContext, keys: &[Bytes]) -> Result<Vec<Option<&'a SetValue>>, CommandError> {
    keys.iter().map(|key| context.set(key)).collect()
}

/// The members of `operation` over `keys`, in no particular order.
fn combine(context: &DataContext, operation: Operation, keys: &[Bytes]) -> Result<Vec<Bytes>, CommandError> {
    let sets = sets_of(context, keys)?;
    let copy = |member: &[u8]| Bytes::copy_from_slice(member);
    Ok(match operation {
        Operation::Intersection => common_members(sets).map(|common| common.map(copy).collect()).unwrap_or_default(),
        Operation::Union => {
            let mut seen: HashSet<&[u8]> = HashSet::new();
            let every = sets.into_iter().flatten().flat_map(|set| set.iter()).map(|member| &member[..]);
            every.filter(|member| seen.insert(member)).map(copy).collect()
        }
        Operation::Difference => {
            let Some(first) = sets[0] else { return Ok(Vec::new()) };
            let others: Vec<&SetValue> = sets[1..].iter().flatten().copied().collect();
            let remaining = first.iter().map(|member| &member[..]);
            remaining.filter(|member| !others.iter().any(|set| set.contains(*member))).map(copy).collect()
        }
    })
}

/// The members every set holds, found by walking the smallest and probing
/// the others; `None` when a key is missing (an empty intersection).
fn common_members(sets: Vec<Option<&SetValue>>) -> Option<impl Iterator<Item = &[u8]>> {
    let mut present: Vec<&SetValue> = sets.into_iter().collect::<Option<_>>()?;
    let at = (0..present.len()).min_by_key(|&index| present[index].len()).expect("at least one key");
    let smallest = present.swap_remove(at);
    let members = smallest.iter().map(|member| &member[..]);
    Some(members.filter(move |member| present.iter().all(|set| set.contains(*member))))
}

fn members_reply(members: Vec<Bytes>) -> Reply {
    Ok(Frame::Set(members.into_iter().map(Frame::Bulk).collect()))
}

/// Replaces `destination` with a set of `members` (deletes it when there are none);
/// replies the new set's size.
fn store(context: &mut DataContext, destination: &Bytes, members: Vec<Bytes>) -> Reply {
    let size = members.len() as i64;
    let replacement = (size > 0).then(|| Effect::SetAdd { key: destination.clone(), members });
    context.replace_key(destination, replacement)?;
    Ok(Frame::Integer(size))
}

/// `SINTER key [key ...]`
fn sinter(context: &mut DataContext, args: &[Bytes]) -> Reply {
    members_reply(combine(context, Operation::Intersection, &args[1..])?)
}

/// `SUNION key [key ...]`
fn sunion(context: &mut DataContext, args: &[Bytes]) -> Reply {
    members_reply(combine(context, Operation::Union, &args[1..])?)
}

/// `SDIFF key [key ...]` — the first set without the members of the others.
fn sdiff(context: &mut DataContext, args: &[Bytes]) -> Reply {
    members_reply(combine(context, Operation::Difference, &args[1..])?)
}

/// `SINTERSTORE destination key [key ...]`
fn sinterstore(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let members = combine(context, Operation::Intersection, &args[2..])?;
    store(context, &args[1], members)
}

/// `SUNIONSTORE destination key [key ...]`
fn sunionstore(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let members = combine(context, Operation::Union, &args[2..])?;
    store(context, &args[1], members)
}

/// `SDIFFSTORE destination key [key ...]`
fn sdiffstore(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let members = combine(context, Operation::Difference, &args[2..])?;
    store(context, &args[1], members)
}

/// `SINTERCARD numkeys key [key ...] [LIMIT limit]` — the intersection's size,
/// counting stopped at `limit` when it is above 0.
fn sintercard(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let numkeys_error = || CommandError::err("numkeys should be greater than 0");
    let numkeys = args::parse_integer(&args[1]).filter(|&count| count > 0).ok_or_else(numkeys_error)? as u64;
    if numkeys > (args.len() - 2) as u64 {
        return Err(CommandError::err("Number of keys can't be greater than number of args"));
    }
    let keys = &args[2..2 + numkeys as usize];
    let mut limit = 0u64;
    let mut rest = args[2 + numkeys as usize..].iter();
    while let Some(option) = rest.next() {
        if !args::is(option, "limit") {
            return Err(CommandError::Syntax);
        }
        let value = rest.next().ok_or(CommandError::Syntax)?;
        limit = args::non_negative(value, CommandError::err("LIMIT can't be negative"))?;
    }
    let Some(common) = common_members(sets_of(context, keys)?) else {
        return Ok(Frame::Integer(0));
    };
    let count = match limit {
        0 => common.count(),
        limit => common.take(limit.min(usize::MAX as u64) as usize).count(),
    };
    Ok(Frame::Integer(count as i64))
}

/// `SMOVE source destination member` — 1 if `member` moved (or is already in a
/// `source` that is also the destination), 0 if `source` does not hold it.
fn smove(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let (source, destination, member) = (&args[1], &args[2], &args[3]);
    let Some(from) = context.set(source)? else {
        return Ok(Frame::Integer(0));
    };
    let had = from.contains(&member[..]);
    let into = context.set(destination)?;
    if source == destination || !had {
        return Ok(Frame::Integer(had as i64));
    }
    let already = into.is_some_and(|set| set.contains(&member[..]));
    context.emit(Effect::SetRemove { key: source.clone(), members: vec![member.clone()] });
    if !already {
        context.emit(Effect::SetAdd { key: destination.clone(), members: vec![member.clone()] });
    }
    Ok(Frame::Integer(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::harness::{sorted, Harness};

    fn seeded() -> Harness {
        let mut h = Harness::new();
        h.ok("sadd a 1 2 3 4");
        h.ok("sadd b 3 4 5");
        h.ok("sadd c 4 5 6");
        h.ok("set text x");
        h
    }

    #[test]
    fn intersection_union_and_difference() {
        let mut h = seeded();
        assert_eq!(sorted(&h.ok("sinter a b")), ["3", "4"]);
        assert_eq!(sorted(&h.ok("sinter a b c")), ["4"]);
        assert_eq!(sorted(&h.ok("sinter a")), ["1", "2", "3", "4"]);
        assert_eq!(sorted(&h.ok("sinter a missing")), Vec::<String>::new());
        assert_eq!(sorted(&h.ok("sunion a b c missing")), ["1", "2", "3", "4", "5", "6"]);
        assert_eq!(sorted(&h.ok("sdiff a b")), ["1", "2"]);
        assert_eq!(sorted(&h.ok("sdiff a missing c")), ["1", "2", "3"]);
        assert_eq!(sorted(&h.ok("sdiff missing a")), Vec::<String>::new());
        assert!(matches!(h.ok("sinter a b"), Frame::Set(_)), "a set in RESP3, as Redis replies");
    }

    #[test]
    fn a_key_of_another_type_is_wrongtype_wherever_it_is_named() {
        let mut h = seeded();
        for line in ["sinter a text", "sinter missing text", "sunion text a", "sdiff a text", "sinterstore d a text"] {
            assert!(h.error(line).starts_with("WRONGTYPE"), "{line}");
        }
        assert!(h.error("sintercard 2 missing text").starts_with("WRONGTYPE"));
    }

    #[test]
    fn store_forms_replace_the_destination_and_replay() {
        let mut h = seeded();
        h.ok("expire text 100");
        assert_eq!(h.ok("sinterstore text a b"), Frame::Integer(2), "a string destination is replaced");
        assert_eq!(sorted(&h.ok("smembers text")), ["3", "4"]);
        assert_eq!(h.ok("ttl text"), Frame::Integer(-1), "the old expiry goes with the old value");
        assert_eq!(h.ok("sunionstore a a c"), Frame::Integer(6), "a source may be the destination");
        assert_eq!(sorted(&h.ok("smembers a")), ["1", "2", "3", "4", "5", "6"]);
        assert_eq!(h.ok("sdiffstore d b c"), Frame::Integer(1));
        assert_eq!(sorted(&h.ok("smembers d")), ["3"]);
        let effects = h.effects.len();
        assert_eq!(h.ok("sinterstore nothing a missing"), Frame::Integer(0));
        assert_eq!(h.effects.len(), effects, "an empty result over an absent destination changes nothing");
        assert_eq!(h.ok("sdiffstore d b b"), Frame::Integer(0));
        assert_eq!(h.ok("exists d"), Frame::Integer(0), "an empty result deletes the destination");
        h.assert_replay_matches();
    }

    #[test]
    fn sintercard_counts_up_to_its_limit() {
        let mut h = seeded();
        assert_eq!(h.ok("sintercard 2 a b"), Frame::Integer(2));
        assert_eq!(h.ok("sintercard 1 a"), Frame::Integer(4));
        assert_eq!(h.ok("sintercard 1 a LIMIT 3"), Frame::Integer(3));
        assert_eq!(h.ok("sintercard 1 a limit 0"), Frame::Integer(4), "0 is no limit");
        assert_eq!(h.ok("sintercard 2 a missing"), Frame::Integer(0));
        assert_eq!(h.error("sintercard 0 a"), "ERR numkeys should be greater than 0");
        assert_eq!(h.error("sintercard x a"), "ERR numkeys should be greater than 0");
        assert_eq!(h.error("sintercard 3 a b"), "ERR Number of keys can't be greater than number of args");
        assert_eq!(h.error("sintercard 1 a LIMIT -1"), "ERR LIMIT can't be negative");
        assert_eq!(h.error("sintercard 1 a LIMIT"), "ERR syntax error");
        assert_eq!(h.error("sintercard 1 a COUNT 1"), "ERR syntax error");
    }

    #[test]
    fn smove_moves_one_member_and_replays() {
        let mut h = seeded();
        assert_eq!(h.ok("smove a b 1"), Frame::Integer(1));
        assert_eq!(sorted(&h.ok("smembers a")), ["2", "3", "4"]);
        assert_eq!(sorted(&h.ok("smembers b")), ["1", "3", "4", "5"]);
        assert_eq!(h.ok("smove a b 3"), Frame::Integer(1), "already in the destination: removed from the source");
        assert_eq!(sorted(&h.ok("smembers a")), ["2", "4"]);
        assert_eq!(h.ok("smove a b nope"), Frame::Integer(0));
        assert_eq!(h.ok("smove missing b 1"), Frame::Integer(0));
        assert_eq!(h.ok("smove missing text 1"), Frame::Integer(0), "a missing source answers before types");
        assert!(h.error("smove a text 2").starts_with("WRONGTYPE"));
        assert!(h.error("smove text a x").starts_with("WRONGTYPE"));
        assert_eq!(h.ok("smove a a 2"), Frame::Integer(1), "source and destination the same: no change");
        assert_eq!(h.ok("smove a a 9"), Frame::Integer(0));
        h.ok("smove a new 2");
        h.ok("smove a new 4");
        assert_eq!(h.ok("exists a"), Frame::Integer(0), "the emptied source is gone");
        assert_eq!(sorted(&h.ok("smembers new")), ["2", "4"]);
        h.assert_replay_matches();
    }
}

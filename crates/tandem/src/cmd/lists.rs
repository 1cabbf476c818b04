//! List commands: pushes and pops at both ends, ranges, LSET, LREM, LTRIM,
//! LINSERT and LPOS.
//!
//! Every write here turns into `Effect::ListPush`, `ListPop`, `ListSet`,
//! `ListRemove` or `ListTrim`, with indices already normalised; the reply is
//! computed from the state before the effect, exactly as Redis replies. A
//! write emits an effect exactly when Redis would signal the key as modified.

use bytes::Bytes;
use tandem_resp::Frame;

use super::args::{self, is};
use super::table::{spec, CommandSpec, Flags};
use super::{CommandError, DataContext, Reply};
use crate::store::effect::Effect;
use crate::store::value::ListValue;

const READ: Flags = Flags::READONLY.with(Flags::FAST);
const WRITE: Flags = Flags::WRITE.with(Flags::DENYOOM);
const WRITE_FAST: Flags = WRITE.with(Flags::FAST);
const ONE_KEY: (i32, i32, i32) = (1, 1, 1);

/// The list family's commands.
pub const SPECS: &[CommandSpec] = &[
    spec("lpush", -3, WRITE_FAST, ONE_KEY, lpush),
    spec("rpush", -3, WRITE_FAST, ONE_KEY, rpush),
    spec("lpushx", -3, WRITE_FAST, ONE_KEY, lpushx),
    spec("rpushx", -3, WRITE_FAST, ONE_KEY, rpushx),
    spec("lpop", -2, Flags::WRITE.with(Flags::FAST), ONE_KEY, lpop),
    spec("rpop", -2, Flags::WRITE.with(Flags::FAST), ONE_KEY, rpop),
    spec("llen", 2, READ, ONE_KEY, llen),
    spec("lrange", 4, Flags::READONLY, ONE_KEY, lrange),
    spec("lindex", 3, Flags::READONLY, ONE_KEY, lindex),
    spec("lset", 4, WRITE, ONE_KEY, lset),
    spec("lrem", 4, Flags::WRITE, ONE_KEY, lrem),
    spec("ltrim", 4, Flags::WRITE, ONE_KEY, ltrim),
    spec("linsert", 5, WRITE, ONE_KEY, linsert),
    spec("lpos", -3, Flags::READONLY, ONE_KEY, lpos),
];

fn bulk(bytes: &[u8]) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(bytes))
}

/// A Redis list index (negative from the end) as a position inside `len`.
fn position(index: i64, len: usize) -> Option<usize> {
    let position = if index < 0 { index.checked_add(len as i64)? } else { index };
    usize::try_from(position).ok().filter(|position| *position < len)
}

fn push(context: &mut DataContext, args: &[Bytes], left: bool, only_if_exists: bool) -> Reply {
    let length = match context.list(&args[1])? {
        Some(list) => list.len(),
        None if only_if_exists => return Ok(Frame::Integer(0)),
        None => 0,
    };
    let values = args[2..].to_vec();
    let pushed = values.len();
    context.emit(Effect::ListPush { key: args[1].clone(), left, values });
    Ok(Frame::Integer((length + pushed) as i64))
}

/// `LPUSH key element [element ...]`
fn lpush(context: &mut DataContext, args: &[Bytes]) -> Reply {
    push(context, args, true, false)
}

/// `RPUSH key element [element ...]`
fn rpush(context: &mut DataContext, args: &[Bytes]) -> Reply {
    push(context, args, false, false)
}

/// `LPUSHX key element [element ...]`
fn lpushx(context: &mut DataContext, args: &[Bytes]) -> Reply {
    push(context, args, true, true)
}

/// `RPUSHX key element [element ...]`
fn rpushx(context: &mut DataContext, args: &[Bytes]) -> Reply {
    push(context, args, false, true)
}

/// The first `count` elements from one end, in the order a pop takes them.
fn from_end(list: &ListValue, left: bool, count: usize) -> Vec<Frame> {
    if left {
        list.iter().take(count).map(|item| bulk(item)).collect()
    } else {
        list.iter().rev().take(count).map(|item| bulk(item)).collect()
    }
}

/// Pops up to `count` elements from one end of the list under `key`; `None`
/// when there is no list there. LPOP, RPOP and the multi-key and blocking pops.
pub(super) fn pop_elements(
    context: &mut DataContext,
    key: &Bytes,
    left: bool,
    count: u64,
) -> Result<Option<Vec<Frame>>, CommandError> {
    let Some(list) = context.list(key)? else {
        return Ok(None);
    };
    let taken = count.min(list.len() as u64);
    let values = from_end(list, left, taken as usize);
    context.emit(Effect::ListPop { key: key.clone(), left, count: taken });
    Ok(Some(values))
}

/// LPOP/RPOP: without a count a bulk string or nil; with one an array, or
/// a null array when the key is absent.
fn pop(context: &mut DataContext, args: &[Bytes], left: bool, name: &str) -> Reply {
    if args.len() > 3 {
        return Err(CommandError::WrongArity(name.to_string()));
    }
    let count = match args.get(2) {
        Some(arg) => Some(args::non_negative(arg, CommandError::err("value is out of range, must be positive"))?),
        None => None,
    };
    if count == Some(0) {
        return Ok(match context.list(&args[1])? {
            Some(_) => Frame::Array(Vec::new()),
            None => Frame::NullArray,
        });
    }
    let Some(mut values) = pop_elements(context, &args[1], left, count.unwrap_or(1))? else {
        return Ok(if count.is_some() { Frame::NullArray } else { Frame::Null });
    };
    Ok(match count {
        Some(_) => Frame::Array(values),
        None => values.remove(0),
    })
}

/// `LPOP key [count]`
fn lpop(context: &mut DataContext, args: &[Bytes]) -> Reply {
    pop(context, args, true, "lpop")
}

/// `RPOP key [count]`
fn rpop(context: &mut DataContext, args: &[Bytes]) -> Reply {
    pop(context, args, false, "rpop")
}

/// `LLEN key`
fn llen(context: &mut DataContext, args: &[Bytes]) -> Reply {
    Ok(Frame::Integer(context.list(&args[1])?.map_or(0, ListValue::len) as i64))
}

/// `LRANGE key start stop`
fn lrange(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let start = args::integer(&args[2])?;
    let stop = args::integer(&args[3])?;
    let Some(list) = context.list(&args[1])? else {
        return Ok(Frame::Array(Vec::new()));
    };
    Ok(Frame::Array(match args::normalize_range(start, stop, list.len()) {
        Some((from, to)) => list.range(from..=to).map(|item| bulk(item)).collect(),
        None => Vec::new(),
    }))
}

/// `LINDEX key index` — the key is looked up before the index is parsed, as in Redis.
fn lindex(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let Some(list) = context.list(&args[1])? else {
        return Ok(Frame::Null);
    };
    let index = args::integer(&args[2])?;
    Ok(position(index, list.len()).map_or(Frame::Null, |at| bulk(&list[at])))
}

/// `LSET key index element`
fn lset(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let list = context.list(&args[1])?.ok_or(CommandError::NoSuchKey)?;
    let index = args::integer(&args[2])?;
    let at = position(index, list.len()).ok_or(CommandError::IndexOutOfRange)?;
    context.emit(Effect::ListSet { key: args[1].clone(), index: at as u64, value: args[3].clone() });
    Ok(Frame::ok())
}

/// `LREM key count element` — count > 0 from the head, < 0 from the tail, 0 all.
fn lrem(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let count = args::integer(&args[2])?;
    let Some(list) = context.list(&args[1])? else {
        return Ok(Frame::Integer(0));
    };
    let matching = list.iter().filter(|item| item[..] == args[3][..]).count() as u64;
    let removed = if count == 0 { matching } else { matching.min(count.unsigned_abs()) };
    if removed > 0 {
        context.emit(Effect::ListRemove { key: args[1].clone(), count, value: args[3].clone() });
    }
    Ok(Frame::Integer(removed as i64))
}

/// `LTRIM key start stop` — an existing key is always logged as modified, as
/// Redis signals it even when nothing is trimmed.
fn ltrim(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let start = args::integer(&args[2])?;
    let stop = args::integer(&args[3])?;
    let Some(list) = context.list(&args[1])? else {
        return Ok(Frame::ok());
    };
    let effect = match args::normalize_range(start, stop, list.len()) {
        Some((from, to)) => {
            Effect::ListTrim { key: args[1].clone(), start: from as u64, stop: to as u64, keep_none: false }
        }
        None => Effect::ListTrim { key: args[1].clone(), start: 0, stop: 0, keep_none: true },
    };
    context.emit(effect);
    Ok(Frame::ok())
}

/// `LINSERT key BEFORE|AFTER pivot element` — replies the new length, -1
/// when the pivot is absent, 0 when the key is.
///
/// There is no insert effect, so the insertion is logged as popping the
/// elements between the insertion point and the nearer end and pushing them
/// back with the new element: deterministic, and the log carries at most
/// half the list. The pop never empties the list (the nearer end is at most
/// half of a non-empty list away), so the key and its expiry stay.
fn linsert(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let before = if is(&args[2], "before") {
        true
    } else if is(&args[2], "after") {
        false
    } else {
        return Err(CommandError::Syntax);
    };
    let Some(list) = context.list(&args[1])? else {
        return Ok(Frame::Integer(0));
    };
    let Some(pivot) = list.iter().position(|item| item[..] == args[3][..]) else {
        return Ok(Frame::Integer(-1));
    };
    let insert_at = if before { pivot } else { pivot + 1 };
    let length = list.len();
    let left = insert_at <= length - insert_at;
    let (moved, mut values): (usize, Vec<Bytes>) = if left {
        // Pushed one by one at the head, so the element goes first and the head in reverse.
        (insert_at, list.range(..insert_at).rev().map(|item| Bytes::copy_from_slice(item)).collect())
    } else {
        (length - insert_at, list.range(insert_at..).map(|item| Bytes::copy_from_slice(item)).collect())
    };
    values.insert(0, args[4].clone());
    let key = args[1].clone();
    if moved > 0 {
        context.emit(Effect::ListPop { key: key.clone(), left, count: moved as u64 });
    }
    context.emit(Effect::ListPush { key, left, values });
    Ok(Frame::Integer(length as i64 + 1))
}

/// The options of LPOS.
struct PositionOptions {
    /// Which match to start from: 1 the first, -1 the first from the tail.
    rank: i64,
    /// How many matches to reply (0: all); `None` replies one index, not an array.
    count: Option<u64>,
    /// How many elements to compare at most (0: all).
    max_length: u64,
}

fn position_options(args: &[Bytes]) -> Result<PositionOptions, CommandError> {
    let mut options = PositionOptions { rank: 1, count: None, max_length: 0 };
    let mut at = 3;
    while at < args.len() {
        let Some(value) = args.get(at + 1) else {
            return Err(CommandError::Syntax);
        };
        if is(&args[at], "rank") {
            options.rank = args::integer(value)?;
            if options.rank == 0 {
                return Err(CommandError::err(
                    "RANK can't be zero: use 1 to start from the first match, 2 from the second ... \
                     or use negative to start from the end of the list",
                ));
            }
            if options.rank == i64::MIN {
                return Err(CommandError::err(format!(
                    "value is out of range, value must between {} and {}",
                    -i64::MAX,
                    i64::MAX
                )));
            }
        } else if is(&args[at], "count") {
            options.count = Some(args::non_negative(value, CommandError::err("COUNT can't be negative"))?);
        } else if is(&args[at], "maxlen") {
            options.max_length = args::non_negative(value, CommandError::err("MAXLEN can't be negative"))?;
        } else {
            return Err(CommandError::Syntax);
        }
        at += 2;
    }
    Ok(options)
}

/// `LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len]`
fn lpos(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let options = position_options(args)?;
    let Some(list) = context.list(&args[1])? else {
        return Ok(if options.count.is_some() { Frame::Array(Vec::new()) } else { Frame::Null });
    };
    let element = &args[2][..];
    let compared = match options.max_length {
        0 => list.len(),
        max_length => list.len().min(usize::try_from(max_length).unwrap_or(usize::MAX)),
    };
    let from_head = options.rank > 0;
    let last = list.len() - 1;
    let indices = (0..list.len()).map(|step| if from_head { step } else { last - step });
    let skip = options.rank.unsigned_abs() - 1;
    let wanted = match options.count {
        None => 1,
        Some(0) => u64::MAX,
        Some(count) => count,
    };
    let found: Vec<Frame> = indices
        .take(compared)
        .filter(|&index| &list[index][..] == element)
        .skip(usize::try_from(skip).unwrap_or(usize::MAX))
        .take(usize::try_from(wanted).unwrap_or(usize::MAX))
        .map(|index| Frame::Integer(index as i64))
        .collect();
    Ok(match options.count {
        Some(_) => Frame::Array(found),
        None => found.into_iter().next().unwrap_or(Frame::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::harness::{b, bulk_text, Harness};
    use crate::store::effect::Ttl;

    fn array(texts: &[&str]) -> Frame {
        Frame::Array(texts.iter().map(|text| bulk_text(text)).collect())
    }

    fn integers(values: &[i64]) -> Frame {
        Frame::Array(values.iter().map(|value| Frame::Integer(*value)).collect())
    }

    #[test]
    fn pushes_build_the_list_in_redis_order() {
        let mut h = Harness::new();
        assert_eq!(h.ok("rpush l a b"), Frame::Integer(2));
        assert_eq!(h.ok("lpush l y z"), Frame::Integer(4));
        assert_eq!(h.list("l"), ["z", "y", "a", "b"]);
        assert_eq!(h.ok("lpushx missing a"), Frame::Integer(0));
        assert_eq!(h.ok("rpushx missing a"), Frame::Integer(0));
        assert!(h.keyspace.get(b"missing", h.now_ms).is_none());
        assert_eq!(h.ok("rpushx l c"), Frame::Integer(5));
        assert_eq!(h.ok("lpushx l x"), Frame::Integer(6));
        assert_eq!(h.list("l"), ["x", "z", "y", "a", "b", "c"]);
        assert_eq!(h.ok("llen l"), Frame::Integer(6));
        assert_eq!(h.ok("llen missing"), Frame::Integer(0));
        h.assert_replay_matches();
    }

    #[test]
    fn pops_with_and_without_count() {
        let mut h = Harness::new();
        h.ok("rpush l a b c d e");
        assert_eq!(h.ok("lpop l"), bulk_text("a"));
        assert_eq!(h.ok("rpop l"), bulk_text("e"));
        assert_eq!(h.ok("rpop l 2"), array(&["d", "c"]));
        assert_eq!(h.ok("lpop l 0"), Frame::Array(Vec::new()));
        assert_eq!(h.list("l"), ["b"]);
        assert_eq!(h.ok("lpop l 10"), array(&["b"]));
        assert!(h.keyspace.is_empty(), "an emptied list is deleted");
        assert_eq!(h.ok("lpop l"), Frame::Null);
        assert_eq!(h.ok("rpop l 2"), Frame::NullArray);
        assert_eq!(h.ok("lpop l 0"), Frame::NullArray);
        h.assert_replay_matches();
    }

    #[test]
    fn pop_argument_errors() {
        let mut h = Harness::new();
        h.ok("rpush l a");
        let positive = "ERR value is out of range, must be positive";
        assert_eq!(h.run("lpop l -1").unwrap_err().to_string(), positive);
        assert_eq!(h.run("rpop l x").unwrap_err().to_string(), positive);
        assert_eq!(h.run("lpop missing x").unwrap_err().to_string(), positive, "count checked before the key");
        assert_eq!(h.run("lpop l 1 2").unwrap_err().to_string(), "ERR wrong number of arguments for 'lpop' command");
        assert_eq!(h.run("rpop l 1 2"), Err(CommandError::WrongArity("rpop".into())));
        assert_eq!(h.list("l"), ["a"]);
    }

    #[test]
    fn every_command_refuses_another_type() {
        let mut h = Harness::new();
        h.seed(Effect::Set { key: b("k"), value: b("x"), ttl: Ttl::Clear });
        for line in [
            "lpush k a",
            "rpush k a",
            "lpushx k a",
            "rpushx k a",
            "lpop k",
            "rpop k 1",
            "llen k",
            "lrange k 0 -1",
            "lindex k 0",
            "lset k 0 a",
            "lrem k 0 a",
            "ltrim k 0 1",
            "linsert k before a b",
            "lpos k a",
        ] {
            assert_eq!(h.run(line), Err(CommandError::WrongType), "{line}");
        }
        assert_eq!(h.effects.len(), 1);
    }

    #[test]
    fn ranges_and_indexes() {
        let mut h = Harness::new();
        h.ok("rpush l a b c d");
        assert_eq!(h.ok("lrange l 0 -1"), array(&["a", "b", "c", "d"]));
        assert_eq!(h.ok("lrange l -2 100"), array(&["c", "d"]));
        assert_eq!(h.ok("lrange l -100 0"), array(&["a"]));
        assert_eq!(h.ok("lrange l 3 1"), array(&[]));
        assert_eq!(h.ok("lrange missing 0 -1"), array(&[]));
        assert_eq!(h.run("lrange l x 1"), Err(CommandError::NotInteger));
        assert_eq!(h.run("lrange missing 0 x"), Err(CommandError::NotInteger));
        assert_eq!(h.ok("lindex l 0"), bulk_text("a"));
        assert_eq!(h.ok("lindex l -1"), bulk_text("d"));
        assert_eq!(h.ok("lindex l 4"), Frame::Null);
        assert_eq!(h.ok("lindex l -5"), Frame::Null);
        assert_eq!(h.ok("lindex l -9223372036854775808"), Frame::Null);
        assert_eq!(h.ok("lindex missing x"), Frame::Null, "the key is looked up first");
        assert_eq!(h.run("lindex l x"), Err(CommandError::NotInteger));
    }

    #[test]
    fn lset_replaces_or_refuses() {
        let mut h = Harness::new();
        h.ok("rpush l a b c");
        assert_eq!(h.ok("lset l -1 z"), Frame::ok());
        assert_eq!(h.ok("lset l 0 y"), Frame::ok());
        assert_eq!(h.list("l"), ["y", "b", "z"]);
        assert_eq!(h.run("lset l 3 q").unwrap_err().to_string(), "ERR index out of range");
        assert_eq!(h.run("lset missing 0 q").unwrap_err().to_string(), "ERR no such key");
        assert_eq!(h.run("lset l x q"), Err(CommandError::NotInteger));
        h.assert_replay_matches();
    }

    #[test]
    fn lrem_counts_like_redis() {
        let mut h = Harness::new();
        h.ok("rpush l a b a c a a");
        assert_eq!(h.ok("lrem l -2 a"), Frame::Integer(2));
        assert_eq!(h.list("l"), ["a", "b", "a", "c"]);
        assert_eq!(h.ok("lrem l 1 a"), Frame::Integer(1));
        assert_eq!(h.list("l"), ["b", "a", "c"]);
        let effects_before = h.effects.len();
        assert_eq!(h.ok("lrem l 0 nope"), Frame::Integer(0));
        assert_eq!(h.ok("lrem missing 0 a"), Frame::Integer(0));
        assert_eq!(h.effects.len(), effects_before, "nothing removed, nothing logged");
        assert_eq!(h.run("lrem l x a"), Err(CommandError::NotInteger));
        assert_eq!(h.ok("lrem l 5 a"), Frame::Integer(1));
        assert_eq!(h.ok("lrem l 0 b"), Frame::Integer(1));
        assert_eq!(h.ok("lrem l -1 c"), Frame::Integer(1));
        assert!(h.keyspace.is_empty());
        h.assert_replay_matches();
    }

    #[test]
    fn ltrim_normalises_and_deletes_when_empty() {
        let mut h = Harness::new();
        h.ok("rpush l a b c d e");
        assert_eq!(h.ok("ltrim l 1 -2"), Frame::ok());
        assert_eq!(h.list("l"), ["b", "c", "d"]);
        assert_eq!(h.effects.last(), Some(&Effect::ListTrim { key: b("l"), start: 1, stop: 3, keep_none: false }));
        assert_eq!(h.ok("ltrim l -100 100"), Frame::ok());
        assert_eq!(h.list("l"), ["b", "c", "d"]);
        assert_eq!(h.ok("ltrim missing 0 1"), Frame::ok());
        assert_eq!(h.run("ltrim l 0 x"), Err(CommandError::NotInteger));
        assert_eq!(h.ok("ltrim l 2 1"), Frame::ok());
        assert_eq!(h.effects.last(), Some(&Effect::ListTrim { key: b("l"), start: 0, stop: 0, keep_none: true }));
        assert!(h.keyspace.is_empty());
        h.assert_replay_matches();
    }

    #[test]
    fn linsert_keeps_order_expiry_and_replays() {
        let mut h = Harness::new();
        h.ok("rpush l a b c d e");
        let deadline_ms = h.now_ms + 60_000;
        h.seed(Effect::ExpireAt { key: b("l"), at_ms: deadline_ms });
        assert_eq!(h.ok("linsert l before a x"), Frame::Integer(6));
        assert_eq!(h.ok("linsert l after e y"), Frame::Integer(7));
        assert_eq!(h.ok("linsert l AFTER b m"), Frame::Integer(8));
        assert_eq!(h.ok("linsert l before d n"), Frame::Integer(9));
        assert_eq!(h.list("l"), ["x", "a", "b", "m", "c", "n", "d", "e", "y"]);
        assert_eq!(h.keyspace.get(b"l", h.now_ms).unwrap().expire_at_ms, deadline_ms);
        assert_eq!(h.ok("linsert l before nope z"), Frame::Integer(-1));
        assert_eq!(h.ok("linsert missing before a z"), Frame::Integer(0));
        assert_eq!(h.run("linsert l middle a z"), Err(CommandError::Syntax));
        h.ok("rpush one a");
        assert_eq!(h.ok("linsert one after a b"), Frame::Integer(2));
        assert_eq!(h.ok("linsert one before a z"), Frame::Integer(3));
        assert_eq!(h.list("one"), ["z", "a", "b"]);
        h.assert_replay_matches();
    }

    #[test]
    fn lpos_options() {
        let mut h = Harness::new();
        h.ok("rpush l a b c 1 2 3 c c");
        assert_eq!(h.ok("lpos l c"), Frame::Integer(2));
        assert_eq!(h.ok("lpos l z"), Frame::Null);
        assert_eq!(h.ok("lpos l c RANK 2"), Frame::Integer(6));
        assert_eq!(h.ok("lpos l c RANK -1"), Frame::Integer(7));
        assert_eq!(h.ok("lpos l c COUNT 2"), integers(&[2, 6]));
        assert_eq!(h.ok("lpos l c COUNT 0"), integers(&[2, 6, 7]));
        assert_eq!(h.ok("lpos l c RANK -2 COUNT 0"), integers(&[6, 2]));
        assert_eq!(h.ok("lpos l c COUNT 0 MAXLEN 7"), integers(&[2, 6]));
        assert_eq!(h.ok("lpos l c RANK -1 MAXLEN 1"), Frame::Integer(7));
        assert_eq!(h.ok("lpos l z COUNT 1"), integers(&[]));
        assert_eq!(h.ok("lpos missing c"), Frame::Null);
        assert_eq!(h.ok("lpos missing c COUNT 1"), integers(&[]));
        assert!(h.run("lpos l c RANK 0").unwrap_err().to_string().starts_with("ERR RANK can't be zero"));
        assert_eq!(h.run("lpos l c COUNT -1").unwrap_err().to_string(), "ERR COUNT can't be negative");
        assert_eq!(h.run("lpos l c MAXLEN x").unwrap_err().to_string(), "ERR MAXLEN can't be negative");
        assert_eq!(h.run("lpos l c RANK x"), Err(CommandError::NotInteger));
        assert_eq!(h.run("lpos l c RANK"), Err(CommandError::Syntax));
        assert_eq!(h.run("lpos l c bogus 1"), Err(CommandError::Syntax));
    }

    #[test]
    fn write_purges_an_expired_list_first() {
        let mut h = Harness::new();
        h.ok("rpush l a b");
        h.seed(Effect::ExpireAt { key: b("l"), at_ms: h.now_ms - 1 });
        assert_eq!(h.ok("lrange l 0 -1"), array(&[]));
        assert_eq!(h.ok("lpushx l z"), Frame::Integer(0));
        assert_eq!(h.ok("rpush l c"), Frame::Integer(1));
        assert_eq!(h.list("l"), ["c"]);
        h.assert_replay_matches();
    }
}

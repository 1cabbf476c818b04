//! Sorted set commands on one key: ZADD, ZINCRBY, ZREM, scores and ranks,
//! counts, pops (ZPOPMIN, ZPOPMAX, ZMPOP), ZRANDMEMBER and ZSCAN. Ranges are
//! in `sorted_ranges`, commands over several keys in `sorted_algebra`.
//!
//! Every write becomes `Effect::SortedSetAdd` (members with their final
//! scores: `ZINCRBY` records the sum it computed), `SortedSetRemove`
//! (naming the exact members, so a pop or a random pick is made once, on
//! the node that runs it) or `Delete`. A score is a 64-bit float, never
//! NaN: a command whose result would be NaN is refused before it emits.
//! Replies follow Redis 7: scores are doubles (bulk strings in RESP2), and
//! member–score pairs nest in RESP3 (`Frame::Pairs`).

use std::collections::HashMap;

use bytes::Bytes;
use tandem_resp::{format_double, Frame};

use super::args::{self, is};
use super::hashes::{scan_cursor, scan_options, scan_reply, scan_step};
use super::random_picks::Picks;
use super::table::{spec, CommandSpec, Flags};
use super::{CommandError, DataContext, Reply};
use crate::store::effect::Effect;
use crate::store::sorted_set::stored_score;
use crate::store::value::SortedSet;

const READ: Flags = Flags::READONLY.with(Flags::FAST);
const WRITE_FAST: Flags = Flags::WRITE.with(Flags::FAST);
const ONE_KEY: (i32, i32, i32) = (1, 1, 1);

/// The sorted set family's single-key commands.
pub const SPECS: &[CommandSpec] = &[
    spec("zadd", -4, WRITE_FAST.with(Flags::DENYOOM), ONE_KEY, zadd),
    spec("zincrby", 4, WRITE_FAST.with(Flags::DENYOOM), ONE_KEY, zincrby),
    spec("zrem", -3, WRITE_FAST, ONE_KEY, zrem),
    spec("zcard", 2, READ, ONE_KEY, zcard),
    spec("zscore", 3, READ, ONE_KEY, zscore),
    spec("zmscore", -3, READ, ONE_KEY, zmscore),
    spec("zrank", -3, READ, ONE_KEY, zrank),
    spec("zrevrank", -3, READ, ONE_KEY, zrevrank),
    spec("zpopmin", -2, WRITE_FAST, ONE_KEY, zpopmin),
    spec("zpopmax", -2, WRITE_FAST, ONE_KEY, zpopmax),
    // Its keys follow a count, as in Redis, where `COMMAND INFO` shows no fixed key range.
    spec("zmpop", -4, Flags::WRITE, (0, 0, 0), zmpop),
    spec("zrandmember", -2, Flags::READONLY, ONE_KEY, zrandmember),
    spec("zscan", -3, Flags::READONLY, ONE_KEY, zscan),
];

pub(super) fn bulk(bytes: &[u8]) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(bytes))
}

/// Members with their scores: pairs in `WITHSCORES` form, else the members alone.
pub(super) fn members_reply(members: &[(&[u8], f64)], with_scores: bool) -> Frame {
    if with_scores {
        Frame::Pairs(members.iter().map(|(member, score)| (bulk(member), Frame::Double(*score))).collect())
    } else {
        Frame::Array(members.iter().map(|(member, _)| bulk(member)).collect())
    }
}

/// The error of a sum that is not a number (`inf + -inf`).
fn nan_error() -> CommandError {
    CommandError::err("resulting score is not a number (NaN)")
}

/// ZADD's options.
#[derive(Default)]
struct AddOptions {
    /// `NX`: only add new members.
    nx: bool,
    /// `XX`: only update existing members.
    xx: bool,
    /// `GT`: update only to a greater score.
    gt: bool,
    /// `LT`: update only to a lower score.
    lt: bool,
    /// `CH`: count changed members as well as added ones.
    ch: bool,
    /// `INCR`: add to the score, reply the new score.
    incr: bool,
}

/// `ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]`
fn zadd(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let mut options = AddOptions::default();
    let mut at = 2;
    while let Some(word) = args.get(at) {
        let flag = match word.to_ascii_lowercase().as_slice() {
            b"nx" => &mut options.nx,
            b"xx" => &mut options.xx,
            b"gt" => &mut options.gt,
            b"lt" => &mut options.lt,
            b"ch" => &mut options.ch,
            b"incr" => &mut options.incr,
            _ => break,
        };
        *flag = true;
        at += 1;
    }
    let pairs = &args[at..];
    if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
        return Err(CommandError::Syntax);
    }
    if options.nx && options.xx {
        return Err(CommandError::err("XX and NX options at the same time are not compatible"));
    }
    if [options.gt, options.lt, options.nx].into_iter().filter(|set| *set).count() > 1 {
        return Err(CommandError::err("GT, LT, and/or NX options at the same time are not compatible"));
    }
    if options.incr && pairs.len() > 2 {
        return Err(CommandError::err("INCR option supports a single increment-element pair"));
    }
    let scores: Vec<f64> = pairs.iter().step_by(2).map(|score| args::float(score)).collect::<Result<_, _>>()?;
    let zset = context.sorted_set(&args[1])?;
    let mut pending: HashMap<&[u8], f64> = HashMap::new();
    let (mut added, mut changed, mut last_score) = (0, 0, None);
    for (score, member) in scores.into_iter().zip(pairs.iter().skip(1).step_by(2)) {
        let current = pending.get(&member[..]).copied().or_else(|| zset.and_then(|zset| zset.score(member)));
        let Some(current) = current else {
            if !options.xx {
                pending.insert(member, score);
                added += 1;
                last_score = Some(score);
            }
            continue;
        };
        if options.nx {
            continue;
        }
        let score = if options.incr { current + score } else { score };
        if score.is_nan() {
            return Err(nan_error());
        }
        if (options.lt && score >= current) || (options.gt && score <= current) {
            continue;
        }
        last_score = Some(score);
        // As in Redis, an equal score (`0` for `-0` too) leaves the member as it is.
        if score != current {
            pending.insert(member, score);
            changed += 1;
        }
    }
    let reply = if options.incr {
        last_score.map_or(Frame::Null, |score| Frame::Double(stored_score(score)))
    } else {
        Frame::Integer(if options.ch { added + changed } else { added })
    };
    if !pending.is_empty() {
        // In argument order, each member once, so the effect reads like the command.
        let mut members: Vec<(Bytes, f64)> = Vec::with_capacity(pending.len());
        for member in pairs.iter().skip(1).step_by(2) {
            if let Some(score) = pending.remove(&member[..]) {
                members.push((member.clone(), score));
            }
        }
        context.emit(Effect::SortedSetAdd { key: args[1].clone(), members });
    }
    Ok(reply)
}

/// `ZINCRBY key increment member` — replies the new score.
fn zincrby(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let increment = args::float(&args[2])?;
    let current = context.sorted_set(&args[1])?.and_then(|zset| zset.score(&args[3]));
    let score = current.map_or(increment, |current| current + increment);
    if score.is_nan() {
        return Err(nan_error());
    }
    if current != Some(score) {
        context.emit(Effect::SortedSetAdd { key: args[1].clone(), members: vec![(args[3].clone(), score)] });
    }
    Ok(Frame::Double(stored_score(score)))
}

/// `ZREM key member [member ...]` — replies how many members were removed.
fn zrem(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let Some(zset) = context.sorted_set(&args[1])? else {
        return Ok(Frame::Integer(0));
    };
    let mut members: Vec<Bytes> = args[2..].iter().filter(|member| zset.score(member).is_some()).cloned().collect();
    members.sort_unstable();
    members.dedup();
    let removed = members.len() as i64;
    if removed > 0 {
        context.emit(Effect::SortedSetRemove { key: args[1].clone(), members });
    }
    Ok(Frame::Integer(removed))
}

/// `ZCARD key`
fn zcard(context: &mut DataContext, args: &[Bytes]) -> Reply {
    Ok(Frame::Integer(context.sorted_set(&args[1])?.map_or(0, SortedSet::len) as i64))
}

fn score_frame(score: Option<f64>) -> Frame {
    score.map_or(Frame::Null, Frame::Double)
}

/// `ZSCORE key member`
fn zscore(context: &mut DataContext, args: &[Bytes]) -> Reply {
    Ok(score_frame(context.sorted_set(&args[1])?.and_then(|zset| zset.score(&args[2]))))
}

/// `ZMSCORE key member [member ...]`
fn zmscore(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let zset = context.sorted_set(&args[1])?;
    let scores = args[2..].iter().map(|member| score_frame(zset.and_then(|zset| zset.score(member))));
    Ok(Frame::Array(scores.collect()))
}

/// `ZRANK key member [WITHSCORE]`
fn zrank(context: &mut DataContext, args: &[Bytes]) -> Reply {
    rank(context, args, false)
}

/// `ZREVRANK key member [WITHSCORE]`
fn zrevrank(context: &mut DataContext, args: &[Bytes]) -> Reply {
    rank(context, args, true)
}

fn rank(context: &mut DataContext, args: &[Bytes], reverse: bool) -> Reply {
    let with_score = match &args[3..] {
        [] => false,
        [option] if is(option, "withscore") => true,
        _ => return Err(CommandError::Syntax),
    };
    let zset = context.sorted_set(&args[1])?;
    let found = zset.and_then(|zset| Some((zset.rank(&args[2], reverse)?, zset.score(&args[2])?)));
    Ok(match (found, with_score) {
        (None, false) => Frame::Null,
        (None, true) => Frame::NullArray,
        (Some((rank, _)), false) => Frame::Integer(rank as i64),
        (Some((rank, score)), true) => Frame::Array(vec![Frame::Integer(rank as i64), Frame::Double(score)]),
    })
}

/// Removes and returns up to `count` members from the low (`max` false) or high end.
pub(super) fn pop(
    context: &mut DataContext,
    key: &Bytes,
    count: usize,
    max: bool,
) -> Result<Vec<(Bytes, f64)>, CommandError> {
    let Some(zset) = context.sorted_set(key)? else {
        return Ok(Vec::new());
    };
    let popped: Vec<(Bytes, f64)> =
        zset.iter(max).take(count).map(|(member, score)| (Bytes::copy_from_slice(member), score)).collect();
    if !popped.is_empty() {
        let members = popped.iter().map(|(member, _)| member.clone()).collect();
        let effect = Effect::SortedSetRemove { key: key.clone(), members };
        // A large count names more members than the command's arguments hold.
        context.check_room(effect.encoded_bytes_bound())?;
        context.emit(effect);
    }
    Ok(popped)
}

/// `ZPOPMIN key [count]`
fn zpopmin(context: &mut DataContext, args: &[Bytes]) -> Reply {
    pop_command(context, args, false)
}

/// `ZPOPMAX key [count]`
fn zpopmax(context: &mut DataContext, args: &[Bytes]) -> Reply {
    pop_command(context, args, true)
}

fn pop_command(context: &mut DataContext, args: &[Bytes], max: bool) -> Reply {
    let count = match &args[2..] {
        [] => None,
        [count] => {
            Some(args::non_negative(count, CommandError::err("value is out of range, must be positive"))? as usize)
        }
        _ => return Err(CommandError::Syntax),
    };
    let popped = pop(context, &args[1], count.unwrap_or(1), max)?;
    let pairs = popped.into_iter().map(|(member, score)| (Frame::Bulk(member), Frame::Double(score)));
    Ok(match count {
        // Without a count the reply is one flat pair, in RESP3 too.
        None => Frame::Array(pairs.flat_map(|(member, score)| [member, score]).collect()),
        Some(_) => Frame::Pairs(pairs.collect()),
    })
}

/// `ZMPOP numkeys key [key ...] MIN|MAX [COUNT count]` — pops from the first
/// key that holds members; replies that key and the members, or a null.
pub(super) fn zmpop(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let (keys, rest) = args::counted_keys(args, 1)?;
    let max = match rest.first() {
        Some(word) if is(word, "min") => false,
        Some(word) if is(word, "max") => true,
        _ => return Err(CommandError::Syntax),
    };
    let count = args::pop_count_option(&rest[1..])?;
    for key in keys {
        let popped = pop(context, key, count, max)?;
        if !popped.is_empty() {
            let pairs =
                popped.into_iter().map(|(member, score)| Frame::Array(vec![Frame::Bulk(member), Frame::Double(score)]));
            return Ok(Frame::Array(vec![Frame::Bulk(key.clone()), Frame::Array(pairs.collect())]));
        }
    }
    Ok(Frame::NullArray)
}

/// `ZRANDMEMBER key [count [WITHSCORES]]`
fn zrandmember(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let with_scores = match &args[2..] {
        [] => false,
        [_] => false,
        [_, option] if is(option, "withscores") => true,
        _ => return Err(CommandError::Syntax),
    };
    let count = args.get(2).map(|count| args::integer(count)).transpose()?;
    let Some(size) = context.sorted_set(&args[1])?.map(SortedSet::len) else {
        return Ok(if count.is_some() { Frame::Array(Vec::new()) } else { Frame::Null });
    };
    let picks = Picks::draw(size, count.unwrap_or(1), context.rng)?;
    let zset = context.sorted_set(&args[1])?.expect("seen above");
    let picked = picks.read(zset.unordered());
    match count {
        None => Ok(bulk(picked[0].0)),
        Some(_) => Ok(members_reply(&picked, with_scores)),
    }
}

/// `ZSCAN key cursor [MATCH pattern] [COUNT count]` — members and their
/// scores (as strings, in both protocols); see
/// [`scan_step`](super::hashes::scan_step) for how the cursor works.
fn zscan(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let cursor = scan_cursor(&args[2])?;
    let Some(zset) = context.sorted_set(&args[1])? else {
        return Ok(scan_reply(0, Vec::new()));
    };
    let options = scan_options(args, false)?;
    let (next, batch) = scan_step(zset.unordered(), cursor, options.count);
    let mut elements = Vec::new();
    for (member, score) in batch.into_iter().filter(|(member, _)| options.keeps(member)) {
        elements.push(bulk(member));
        elements.push(Frame::Bulk(Bytes::from(format_double(score))));
    }
    Ok(scan_reply(next, elements))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::harness::{b, Harness};
    use crate::store::Value;

    impl Harness {
        /// The sorted set under `key` in order, as `member=score` texts (empty when absent).
        pub fn scored(&self, key: &str) -> Vec<String> {
            match self.keyspace.get(key.as_bytes(), self.now_ms).map(|entry| &entry.value) {
                None => Vec::new(),
                Some(Value::SortedSet(zset)) => zset
                    .iter(false)
                    .map(|(member, score)| format!("{}={}", String::from_utf8_lossy(member), format_double(score)))
                    .collect(),
                Some(other) => panic!("not a sorted set: {other:?}"),
            }
        }
    }

    #[test]
    fn zadd_applies_pairs_in_order_and_records_final_scores() {
        let mut h = Harness::new();
        // The same member twice: the later score wins, and it counts as added once.
        assert_eq!(h.ok("zadd z 1 a 2 a 3 b"), Frame::Integer(2));
        assert_eq!(h.scored("z"), ["a=2", "b=3"]);
        let Effect::SortedSetAdd { members, .. } = h.effects.last().unwrap() else { panic!("one SortedSetAdd") };
        assert_eq!(members, &[(b("a"), 2.0), (b("b"), 3.0)]);
        // NX sees the member added earlier in the same command.
        assert_eq!(h.ok("zadd z NX 5 c 6 c"), Frame::Integer(1));
        assert_eq!(h.ok("zadd z LT CH 1 a 9 b 0 d"), Frame::Integer(2));
        assert_eq!(h.scored("z"), ["d=0", "a=1", "b=3", "c=5"]);
        // Nothing changes: no effect.
        let before = h.effects.len();
        assert_eq!(h.ok("zadd z CH 1 a"), Frame::Integer(0), "the same score");
        assert_eq!(h.ok("zadd z GT 0 a"), Frame::Integer(0));
        assert_eq!(h.ok("zadd z XX 7 nope"), Frame::Integer(0));
        assert_eq!(h.effects.len(), before);
        assert_eq!(h.error("zadd z 1 a XX"), "ERR syntax error", "flags come first");
        assert_eq!(h.ok("zadd z INCR -1 a"), Frame::Double(0.0));
        assert_eq!(h.ok("zadd z INCR GT -1 a"), Frame::Null);
        assert_eq!(h.ok("zadd z -0 negative"), Frame::Integer(1));
        assert!(h.scored("z").contains(&"negative=0".to_string()));
        h.assert_replay_matches();
    }

    #[test]
    fn a_nan_result_is_refused_before_any_effect() {
        let mut h = Harness::new();
        h.ok("zadd z inf a");
        let before = h.effects.len();
        assert_eq!(h.error("zincrby z -inf a"), "ERR resulting score is not a number (NaN)");
        assert_eq!(h.error("zadd z INCR -inf a"), "ERR resulting score is not a number (NaN)");
        assert_eq!(h.error("zadd z nan b"), "ERR value is not a valid float");
        assert_eq!(h.effects.len(), before);
        assert_eq!(h.scored("z"), ["a=inf"]);
    }

    #[test]
    fn pops_remove_exactly_what_they_reply() {
        let mut h = Harness::new();
        h.ok("zadd z 1 a 2 b 3 c 4 d");
        assert_eq!(
            h.ok("zpopmax z 2"),
            Frame::Pairs(vec![(bulk(b"d"), Frame::Double(4.0)), (bulk(b"c"), Frame::Double(3.0))])
        );
        assert_eq!(h.ok("zpopmin z 0"), Frame::Pairs(Vec::new()));
        assert_eq!(
            h.ok("zmpop 2 none z MIN COUNT 9"),
            Frame::Array(vec![
                Frame::Bulk(b("z")),
                Frame::Array(vec![
                    Frame::Array(vec![bulk(b"a"), Frame::Double(1.0)]),
                    Frame::Array(vec![bulk(b"b"), Frame::Double(2.0)]),
                ]),
            ])
        );
        assert!(h.keyspace.get(b"z", h.now_ms).is_none(), "emptied, so gone");
        assert_eq!(h.ok("zpopmin z"), Frame::Array(Vec::new()));
        assert_eq!(h.ok("zmpop 1 z MAX"), Frame::NullArray);
        assert_eq!(h.error("zmpop 1 z MAX COUNT 0"), "ERR count should be greater than 0");
        assert_eq!(h.error("zmpop 0 z MAX"), "ERR numkeys should be greater than 0");
        h.assert_replay_matches();
    }

    #[test]
    fn random_members_are_members_and_change_nothing() {
        let mut h = Harness::new();
        h.ok("zadd z 1 a 2 b 3 c");
        let Frame::Bulk(one) = h.ok("zrandmember z") else { panic!("a bulk member") };
        assert!([b("a"), b("b"), b("c")].contains(&one));
        let Frame::Pairs(picked) = h.ok("zrandmember z 10 WITHSCORES") else { panic!("pairs") };
        assert_eq!(picked.len(), 3, "distinct, at most the set");
        let Frame::Array(repeated) = h.ok("zrandmember z -7") else { panic!("an array") };
        assert_eq!(repeated.len(), 7);
        assert_eq!(h.ok("zrandmember missing 3"), Frame::Array(Vec::new()));
        assert_eq!(h.run("zrandmember z 1 withscores extra"), Err(CommandError::Syntax));
        assert_eq!(h.effects.len(), 1, "only the ZADD");
    }
}

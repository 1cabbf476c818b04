//! Sorted set ranges: by position, by score and by member (`BYLEX`) — ZRANGE
//! and its older forms, ZRANGESTORE, ZCOUNT, ZLEXCOUNT and the ZREMRANGEBY
//! commands.
//!
//! Every range command parses as Redis's `zrangeGenericCommand` does: the
//! options first, then the range (errors in that order), then the key. The
//! older commands are ZRANGE with the kind and direction fixed, so `REV` or
//! `BYSCORE` after them is a syntax error, and the reversed ones take their
//! score or member range as `max min`.

use bytes::Bytes;
use tandem_resp::Frame;

use super::args::{self, is};
use super::sorted_sets::members_reply;
use super::table::{spec, CommandSpec, Flags};
use super::{CommandError, DataContext, Reply};
use crate::store::effect::Effect;
use crate::store::sorted_set::{LexBound, ScoreBound};
use crate::store::value::SortedSet;

const READ: Flags = Flags::READONLY.with(Flags::FAST);
const ONE_KEY: (i32, i32, i32) = (1, 1, 1);

/// The sorted set range commands.
pub const SPECS: &[CommandSpec] = &[
    spec("zrange", -4, Flags::READONLY, ONE_KEY, zrange),
    spec("zrangestore", -5, Flags::WRITE.with(Flags::DENYOOM), (1, 2, 1), zrangestore),
    spec("zrevrange", -4, Flags::READONLY, ONE_KEY, zrevrange),
    spec("zrangebyscore", -4, Flags::READONLY, ONE_KEY, zrangebyscore),
    spec("zrevrangebyscore", -4, Flags::READONLY, ONE_KEY, zrevrangebyscore),
    spec("zrangebylex", -4, Flags::READONLY, ONE_KEY, zrangebylex),
    spec("zrevrangebylex", -4, Flags::READONLY, ONE_KEY, zrevrangebylex),
    spec("zcount", 4, READ, ONE_KEY, zcount),
    spec("zlexcount", 4, READ, ONE_KEY, zlexcount),
    spec("zremrangebyrank", 4, Flags::WRITE, ONE_KEY, zremrangebyrank),
    spec("zremrangebyscore", 4, Flags::WRITE, ONE_KEY, zremrangebyscore),
    spec("zremrangebylex", 4, Flags::WRITE, ONE_KEY, zremrangebylex),
];

/// What a range selects by.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rank,
    Score,
    Lex,
}

/// A parsed range.
enum Range {
    Rank { start: i64, stop: i64 },
    Score { min: ScoreBound, max: ScoreBound },
    Lex { min: LexBound, max: LexBound },
}

/// A range request: what to select, in which direction, how many.
struct Request {
    range: Range,
    reverse: bool,
    offset: i64,
    /// `LIMIT`'s count; negative means all.
    limit: i64,
    with_scores: bool,
}

/// Parses `min max [options]` from `args[at..]`. `kind` and `reverse` are
/// fixed by the older commands, chosen by options (`None`) in ZRANGE and
/// ZRANGESTORE; `store` refuses `WITHSCORES`.
fn parse(
    args: &[Bytes],
    at: usize,
    kind: Option<Kind>,
    reverse: Option<bool>,
    store: bool,
) -> Result<Request, CommandError> {
    let (mut kind_chosen, mut reverse_chosen) = (kind, reverse);
    let (mut with_scores, mut offset, mut limit) = (false, 0, -1);
    let mut limit_given = false;
    let mut index = at + 2;
    while index < args.len() {
        let word = &args[index];
        let left = args.len() - index - 1;
        if is(word, "withscores") && !store {
            with_scores = true;
        } else if is(word, "limit") && left >= 2 {
            offset = args::integer(&args[index + 1])?;
            limit = args::integer(&args[index + 2])?;
            limit_given = true;
            index += 2;
        } else if reverse_chosen.is_none() && is(word, "rev") {
            reverse_chosen = Some(true);
        } else if kind_chosen.is_none() && is(word, "bylex") {
            kind_chosen = Some(Kind::Lex);
        } else if kind_chosen.is_none() && is(word, "byscore") {
            kind_chosen = Some(Kind::Score);
        } else {
            return Err(CommandError::Syntax);
        }
        index += 1;
    }
    let kind = kind_chosen.unwrap_or(Kind::Rank);
    let reverse = reverse_chosen.unwrap_or(false);
    if limit_given && kind == Kind::Rank {
        return Err(CommandError::err(
            "syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if with_scores && kind == Kind::Lex {
        return Err(CommandError::err("syntax error, WITHSCORES not supported in combination with BYLEX"));
    }
    // Reversed score and member ranges are written `max min`; positions are not.
    let (low, high) =
        if reverse && kind != Kind::Rank { (&args[at + 1], &args[at]) } else { (&args[at], &args[at + 1]) };
    let range = match kind {
        Kind::Rank => Range::Rank { start: args::integer(low)?, stop: args::integer(high)? },
        Kind::Score => score_range(low, high)?,
        Kind::Lex => lex_range(low, high)?,
    };
    Ok(Request { range, reverse, offset, limit, with_scores })
}

/// `min max` of a score range: `1.5`, `(1.5` (exclusive), `-inf`, `+inf`.
fn score_range(min: &[u8], max: &[u8]) -> Result<Range, CommandError> {
    let bound = |arg: &[u8]| match arg.strip_prefix(b"(") {
        Some(rest) => args::parse_float(rest).map(ScoreBound::Exclusive),
        None => args::parse_float(arg).map(ScoreBound::Inclusive),
    };
    match (bound(min), bound(max)) {
        (Some(min), Some(max)) => Ok(Range::Score { min, max }),
        _ => Err(CommandError::err("min or max is not a float")),
    }
}

/// `min max` of a member range: `[a` (inclusive), `(a` (exclusive), `-`, `+`.
fn lex_range(min: &[u8], max: &[u8]) -> Result<Range, CommandError> {
    let bound = |arg: &[u8]| match arg {
        b"-" => Some(LexBound::Lowest),
        b"+" => Some(LexBound::Highest),
        [b'[', rest @ ..] => Some(LexBound::Inclusive(rest.to_vec())),
        [b'(', rest @ ..] => Some(LexBound::Exclusive(rest.to_vec())),
        _ => None,
    };
    match (bound(min), bound(max)) {
        (Some(min), Some(max)) => Ok(Range::Lex { min, max }),
        _ => Err(CommandError::err("min or max not valid string range item")),
    }
}

/// The members a request selects, with their scores, in reply order.
fn select<'a>(zset: &'a SortedSet, request: &Request) -> Vec<(&'a [u8], f64)> {
    // Redis: a negative offset selects nothing, a negative count everything after it.
    let Ok(offset) = usize::try_from(request.offset) else {
        return Vec::new();
    };
    let limit = usize::try_from(request.limit).ok();
    match &request.range {
        Range::Rank { start, stop } => match args::normalize_range(*start, *stop, zset.len()) {
            Some((start, stop)) => zset.by_rank(start, stop, request.reverse),
            None => Vec::new(),
        },
        Range::Score { min, max } => zset.by_score(*min, *max, request.reverse, offset, limit),
        Range::Lex { min, max } => zset.by_lex(min, max, request.reverse, offset, limit),
    }
}

fn range_reply(context: &DataContext, args: &[Bytes], kind: Option<Kind>, reverse: Option<bool>) -> Reply {
    let request = parse(args, 2, kind, reverse, false)?;
    let Some(zset) = context.sorted_set(&args[1])? else {
        return Ok(Frame::Array(Vec::new()));
    };
    Ok(members_reply(&select(zset, &request), request.with_scores))
}

/// `ZRANGE key start stop [BYSCORE|BYLEX] [REV] [LIMIT offset count] [WITHSCORES]`
fn zrange(context: &mut DataContext, args: &[Bytes]) -> Reply {
    range_reply(context, args, None, None)
}

/// `ZREVRANGE key start stop [WITHSCORES]`
fn zrevrange(context: &mut DataContext, args: &[Bytes]) -> Reply {
    range_reply(context, args, Some(Kind::Rank), Some(true))
}

/// `ZRANGEBYSCORE key min max [WITHSCORES] [LIMIT offset count]`
fn zrangebyscore(context: &mut DataContext, args: &[Bytes]) -> Reply {
    range_reply(context, args, Some(Kind::Score), Some(false))
}

/// `ZREVRANGEBYSCORE key max min [WITHSCORES] [LIMIT offset count]`
fn zrevrangebyscore(context: &mut DataContext, args: &[Bytes]) -> Reply {
    range_reply(context, args, Some(Kind::Score), Some(true))
}

/// `ZRANGEBYLEX key min max [LIMIT offset count]`
fn zrangebylex(context: &mut DataContext, args: &[Bytes]) -> Reply {
    range_reply(context, args, Some(Kind::Lex), Some(false))
}

/// `ZREVRANGEBYLEX key max min [LIMIT offset count]`
fn zrevrangebylex(context: &mut DataContext, args: &[Bytes]) -> Reply {
    range_reply(context, args, Some(Kind::Lex), Some(true))
}

/// `ZRANGESTORE destination source min max [BYSCORE|BYLEX] [REV] [LIMIT offset count]`
/// — stores the selection (replacing `destination`); replies its size.
fn zrangestore(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let request = parse(&args[1..], 2, None, None, true)?;
    let members = match context.sorted_set(&args[2])? {
        Some(zset) => copied(&select(zset, &request)),
        None => Vec::new(),
    };
    replace(context, &args[1], members)
}

/// Owned copies of selected members.
pub(super) fn copied(members: &[(&[u8], f64)]) -> Vec<(Bytes, f64)> {
    members.iter().map(|(member, score)| (Bytes::copy_from_slice(member), *score)).collect()
}

/// Replaces `destination` with a sorted set of `members` (deletes it when there
/// are none); replies the new size. The result must fit in one log record.
pub(super) fn replace(context: &mut DataContext, destination: &Bytes, members: Vec<(Bytes, f64)>) -> Reply {
    let size = members.len() as i64;
    let replacement = (size > 0).then(|| Effect::SortedSetAdd { key: destination.clone(), members });
    context.replace_key(destination, replacement)?;
    Ok(Frame::Integer(size))
}

/// `ZCOUNT key min max`
fn zcount(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let Range::Score { min, max } = score_range(&args[2], &args[3])? else { unreachable!("a score range") };
    Ok(Frame::Integer(context.sorted_set(&args[1])?.map_or(0, |zset| zset.count_by_score(min, max)) as i64))
}

/// `ZLEXCOUNT key min max`
fn zlexcount(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let Range::Lex { min, max } = lex_range(&args[2], &args[3])? else { unreachable!("a member range") };
    Ok(Frame::Integer(context.sorted_set(&args[1])?.map_or(0, |zset| zset.count_by_lex(&min, &max)) as i64))
}

/// Removes the members `range` selects; replies how many.
fn remove_range(context: &mut DataContext, key: &Bytes, range: Range) -> Reply {
    let request = Request { range, reverse: false, offset: 0, limit: -1, with_scores: false };
    let Some(zset) = context.sorted_set(key)? else {
        return Ok(Frame::Integer(0));
    };
    let members: Vec<Bytes> = select(zset, &request).iter().map(|(member, _)| Bytes::copy_from_slice(member)).collect();
    let removed = members.len() as i64;
    if removed > 0 {
        let effect = Effect::SortedSetRemove { key: key.clone(), members };
        // The members removed can be far more than the command's arguments.
        context.check_room(effect.encoded_bytes_bound())?;
        context.emit(effect);
    }
    Ok(Frame::Integer(removed))
}

/// `ZREMRANGEBYRANK key start stop`
fn zremrangebyrank(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let range = Range::Rank { start: args::integer(&args[2])?, stop: args::integer(&args[3])? };
    remove_range(context, &args[1], range)
}

/// `ZREMRANGEBYSCORE key min max`
fn zremrangebyscore(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let range = score_range(&args[2], &args[3])?;
    remove_range(context, &args[1], range)
}

/// `ZREMRANGEBYLEX key min max`
fn zremrangebylex(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let range = lex_range(&args[2], &args[3])?;
    remove_range(context, &args[1], range)
}

#[cfg(test)]
mod tests {
    use crate::cmd::harness::Harness;
    use tandem_resp::Frame;

    #[test]
    fn stored_and_removed_ranges_replay_to_the_same_state() {
        let mut h = Harness::new();
        h.ok("zadd z 1 a 2 b 3 c 4 d 5 e");
        assert_eq!(h.ok("zrangestore dst z (1 4 BYSCORE LIMIT 1 5"), Frame::Integer(2));
        assert_eq!(h.scored("dst"), ["c=3", "d=4"]);
        assert_eq!(h.ok("zrangestore dst z 0 0 REV"), Frame::Integer(1));
        assert_eq!(h.scored("dst"), ["e=5"]);
        h.ok("set text x");
        assert_eq!(h.ok("zrangestore text z [a [b BYLEX"), Frame::Integer(2), "replaces any type");
        assert_eq!(h.ok("zrangestore dst missing 0 -1"), Frame::Integer(0));
        assert!(h.keyspace.get(b"dst", h.now_ms).is_none(), "an empty result deletes the destination");
        assert_eq!(h.error("zrangestore dst z 0 -1 WITHSCORES"), "ERR syntax error");
        assert_eq!(h.ok("zremrangebyscore z (4 +inf"), Frame::Integer(1));
        assert_eq!(h.ok("zremrangebyrank z -2 -1"), Frame::Integer(2));
        assert_eq!(h.ok("zremrangebylex z - +"), Frame::Integer(2));
        assert!(h.keyspace.get(b"z", h.now_ms).is_none());
        h.assert_replay_matches();
    }

    #[test]
    fn option_errors_come_in_redis_order() {
        let mut h = Harness::new();
        h.ok("zadd z 1 a");
        assert_eq!(h.error("zrangebyscore z 0 1 REV"), "ERR syntax error");
        assert_eq!(
            h.error("zrangebylex z - + WITHSCORES"),
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX"
        );
        assert_eq!(h.error("zrange z x 1 BYSCORE"), "ERR min or max is not a float");
        assert_eq!(h.error("zrange z 0 1 LIMIT 0 x BYSCORE"), "ERR value is not an integer or out of range");
        assert_eq!(h.error("zcount z 0 (x"), "ERR min or max is not a float");
        assert_eq!(h.error("zlexcount z a +"), "ERR min or max not valid string range item");
        assert_eq!(
            h.ok("zrange z 0 -1 BYSCORE LIMIT -1 5"),
            Frame::Array(Vec::new()),
            "a negative offset selects nothing"
        );
    }
}

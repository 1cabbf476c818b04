//! Sorted set commands over several keys: ZUNION, ZINTER, ZDIFF, their
//! `STORE` forms, and ZINTERCARD.
//!
//! As in Redis, a plain set is an input too (each member scored 1), a
//! missing key is empty, and any other type is `WRONGTYPE`, checked for every
//! key before the options are parsed. Sources are combined smallest first,
//! as Redis does, so a sum of three or more scores rounds the same way; a
//! product or sum that is not a number (`0 × inf`, `inf + -inf`) counts as 0.
//! Results are ordered by score, then member. A `STORE` form replaces its
//! destination through `Delete` and `SortedSetAdd`, so the destination may
//! also be a source.

use std::collections::HashMap;

use bytes::Bytes;
use tandem_resp::Frame;

use super::args::{self, is};
use super::sorted_ranges::replace;
use super::sorted_sets::members_reply;
use super::table::{spec, CommandSpec, Flags};
use super::{CommandError, DataContext, Reply};
use crate::store::value::{SetValue, SortedSet};
use crate::store::{Entry, Value};

const STORE: Flags = Flags::WRITE.with(Flags::DENYOOM);
/// The keys follow a count, as in Redis, where `COMMAND INFO` shows no fixed key range
/// (the `STORE` forms list their destination).
const COUNTED_KEYS: (i32, i32, i32) = (0, 0, 0);

/// The sorted set algebra commands.
pub const SPECS: &[CommandSpec] = &[
    spec("zunion", -3, Flags::READONLY, COUNTED_KEYS, zunion),
    spec("zinter", -3, Flags::READONLY, COUNTED_KEYS, zinter),
    spec("zdiff", -3, Flags::READONLY, COUNTED_KEYS, zdiff),
    spec("zunionstore", -4, STORE, (1, 1, 1), zunionstore),
    spec("zinterstore", -4, STORE, (1, 1, 1), zinterstore),
    spec("zdiffstore", -4, STORE, (1, 1, 1), zdiffstore),
    spec("zintercard", -3, Flags::READONLY, COUNTED_KEYS, zintercard),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Operation {
    Union,
    Intersection,
    Difference,
}

#[derive(Clone, Copy)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

impl Aggregate {
    fn combine(self, current: f64, score: f64) -> f64 {
        match self {
            Aggregate::Sum => not_nan(current + score),
            Aggregate::Min => current.min(score),
            Aggregate::Max => current.max(score),
        }
    }
}

/// Redis counts a NaN produced by combining scores as 0.
fn not_nan(score: f64) -> f64 {
    if score.is_nan() {
        0.0
    } else {
        score
    }
}

/// One input: a sorted set or a plain set (every member scored 1).
#[derive(Clone, Copy)]
enum Source<'a> {
    Sorted(&'a SortedSet),
    Plain(&'a SetValue),
    Missing,
}

impl<'a> Source<'a> {
    fn len(self) -> usize {
        match self {
            Source::Sorted(zset) => zset.len(),
            Source::Plain(set) => set.len(),
            Source::Missing => 0,
        }
    }

    fn score(self, member: &[u8]) -> Option<f64> {
        match self {
            Source::Sorted(zset) => zset.score(member),
            Source::Plain(set) => set.contains(member).then_some(1.0),
            Source::Missing => None,
        }
    }

    fn members(self) -> Box<dyn Iterator<Item = (&'a [u8], f64)> + 'a> {
        match self {
            Source::Sorted(zset) => Box::new(zset.unordered()),
            Source::Plain(set) => Box::new(set.iter().map(|member| (&member[..], 1.0))),
            Source::Missing => Box::new(std::iter::empty()),
        }
    }
}

/// A parsed command: its sources with weights, and how scores combine.
struct Inputs<'a> {
    sources: Vec<(Source<'a>, f64)>,
    aggregate: Aggregate,
    with_scores: bool,
    /// ZINTERCARD's `LIMIT` (0: none).
    limit: u64,
}

/// Which options a command takes after its keys.
#[derive(Clone, Copy)]
struct Accepts {
    weights: bool,
    with_scores: bool,
    limit: bool,
}

/// Parses `numkeys key [key ...]` at `args[at..]`, then the options `accepts` allows.
fn parse<'a>(
    context: &'a DataContext,
    args: &[Bytes],
    at: usize,
    accepts: Accepts,
) -> Result<Inputs<'a>, CommandError> {
    let command = String::from_utf8_lossy(&args[0]).to_lowercase();
    let numkeys = args::integer(&args[at])?;
    if numkeys < 1 {
        return Err(CommandError::err(format!("at least 1 input key is needed for '{command}' command")));
    }
    if numkeys as u64 > (args.len() - at - 1) as u64 {
        return Err(CommandError::Syntax);
    }
    let keys = &args[at + 1..at + 1 + numkeys as usize];
    let mut sources = Vec::with_capacity(keys.len());
    for key in keys {
        let source = match context.entry(key) {
            None => Source::Missing,
            Some(Entry { value: Value::SortedSet(zset), .. }) => Source::Sorted(zset),
            Some(Entry { value: Value::Set(set), .. }) => Source::Plain(set),
            Some(_) => return Err(CommandError::WrongType),
        };
        sources.push((source, 1.0));
    }
    let mut inputs = Inputs { sources, aggregate: Aggregate::Sum, with_scores: false, limit: 0 };
    let mut rest = &args[at + 1 + keys.len()..];
    while let Some(word) = rest.first() {
        if accepts.weights && is(word, "weights") && rest.len() > keys.len() {
            for (index, weight) in rest[1..=keys.len()].iter().enumerate() {
                let weight =
                    args::parse_float(weight).ok_or_else(|| CommandError::err("weight value is not a float"))?;
                inputs.sources[index].1 = weight;
            }
            rest = &rest[keys.len() + 1..];
        } else if accepts.weights && is(word, "aggregate") && rest.len() >= 2 {
            inputs.aggregate = match rest[1].to_ascii_lowercase().as_slice() {
                b"sum" => Aggregate::Sum,
                b"min" => Aggregate::Min,
                b"max" => Aggregate::Max,
                _ => return Err(CommandError::Syntax),
            };
            rest = &rest[2..];
        } else if accepts.with_scores && is(word, "withscores") {
            inputs.with_scores = true;
            rest = &rest[1..];
        } else if accepts.limit && is(word, "limit") && rest.len() >= 2 {
            inputs.limit = args::non_negative(&rest[1], CommandError::err("LIMIT can't be negative"))?;
            rest = &rest[2..];
        } else {
            return Err(CommandError::Syntax);
        }
    }
    Ok(inputs)
}

/// The members and scores of `operation` over the inputs, ordered by score then member.
fn combine<'a>(inputs: &Inputs<'a>, operation: Operation) -> Vec<(&'a [u8], f64)> {
    let weighted = |score: f64, weight: f64| not_nan(score * weight);
    let mut result: Vec<(&'a [u8], f64)> = match operation {
        Operation::Difference => {
            let (first, others) = inputs.sources.split_first().expect("at least one key");
            let remaining = first.0.members();
            remaining.filter(|(member, _)| others.iter().all(|(source, _)| source.score(member).is_none())).collect()
        }
        Operation::Intersection => {
            let mut sources = inputs.sources.clone();
            sources.sort_by_key(|(source, _)| source.len());
            let (smallest, others) = sources.split_first().expect("at least one key");
            let mut common = Vec::new();
            'members: for (member, score) in smallest.0.members() {
                let mut total = weighted(score, smallest.1);
                for (source, weight) in others {
                    let Some(score) = source.score(member) else { continue 'members };
                    total = inputs.aggregate.combine(total, weighted(score, *weight));
                }
                common.push((member, total));
            }
            common
        }
        Operation::Union => {
            let mut sources = inputs.sources.clone();
            sources.sort_by_key(|(source, _)| source.len());
            let mut totals: HashMap<&'a [u8], f64> = HashMap::new();
            for (source, weight) in sources {
                for (member, score) in source.members() {
                    let score = weighted(score, weight);
                    totals
                        .entry(member)
                        .and_modify(|total| *total = inputs.aggregate.combine(*total, score))
                        .or_insert(score);
                }
            }
            totals.into_iter().collect()
        }
    };
    // Not `total_cmp`, which puts -0 before 0: Redis ties them and orders by member.
    result.sort_by(|left, right| left.1.partial_cmp(&right.1).expect("never NaN").then_with(|| left.0.cmp(right.0)));
    result
}

const READ_WITH_WEIGHTS: Accepts = Accepts { weights: true, with_scores: true, limit: false };
const STORE_WITH_WEIGHTS: Accepts = Accepts { weights: true, with_scores: false, limit: false };

fn read(context: &mut DataContext, args: &[Bytes], operation: Operation, accepts: Accepts) -> Reply {
    let inputs = parse(context, args, 1, accepts)?;
    Ok(members_reply(&combine(&inputs, operation), inputs.with_scores))
}

fn store(context: &mut DataContext, args: &[Bytes], operation: Operation, accepts: Accepts) -> Reply {
    let members = {
        let inputs = parse(context, args, 2, accepts)?;
        super::sorted_ranges::copied(&combine(&inputs, operation))
    };
    replace(context, &args[1], members)
}

/// `ZUNION numkeys key [key ...] [WEIGHTS weight ...] [AGGREGATE SUM|MIN|MAX] [WITHSCORES]`
fn zunion(context: &mut DataContext, args: &[Bytes]) -> Reply {
    read(context, args, Operation::Union, READ_WITH_WEIGHTS)
}

/// `ZINTER numkeys key [key ...] [WEIGHTS weight ...] [AGGREGATE SUM|MIN|MAX] [WITHSCORES]`
fn zinter(context: &mut DataContext, args: &[Bytes]) -> Reply {
    read(context, args, Operation::Intersection, READ_WITH_WEIGHTS)
}

/// `ZDIFF numkeys key [key ...] [WITHSCORES]` — the first input without the
/// members of the others, with its scores.
fn zdiff(context: &mut DataContext, args: &[Bytes]) -> Reply {
    read(context, args, Operation::Difference, Accepts { weights: false, with_scores: true, limit: false })
}

/// `ZUNIONSTORE destination numkeys key [key ...] [WEIGHTS weight ...] [AGGREGATE SUM|MIN|MAX]`
fn zunionstore(context: &mut DataContext, args: &[Bytes]) -> Reply {
    store(context, args, Operation::Union, STORE_WITH_WEIGHTS)
}

/// `ZINTERSTORE destination numkeys key [key ...] [WEIGHTS weight ...] [AGGREGATE SUM|MIN|MAX]`
fn zinterstore(context: &mut DataContext, args: &[Bytes]) -> Reply {
    store(context, args, Operation::Intersection, STORE_WITH_WEIGHTS)
}

/// `ZDIFFSTORE destination numkeys key [key ...]`
fn zdiffstore(context: &mut DataContext, args: &[Bytes]) -> Reply {
    store(context, args, Operation::Difference, Accepts { weights: false, with_scores: false, limit: false })
}

/// `ZINTERCARD numkeys key [key ...] [LIMIT limit]` — the intersection's size,
/// counting stopped at `limit` when it is above 0.
fn zintercard(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let inputs = parse(context, args, 1, Accepts { weights: false, with_scores: false, limit: true })?;
    let mut sources = inputs.sources.clone();
    sources.sort_by_key(|(source, _)| source.len());
    let (smallest, others) = sources.split_first().expect("at least one key");
    let common =
        smallest.0.members().filter(|(member, _)| others.iter().all(|(source, _)| source.score(member).is_some()));
    let count = match inputs.limit {
        0 => common.count(),
        limit => common.take(limit.min(usize::MAX as u64) as usize).count(),
    };
    Ok(Frame::Integer(count as i64))
}

#[cfg(test)]
mod tests {
    use crate::cmd::harness::Harness;
    use tandem_resp::Frame;

    #[test]
    fn weights_aggregates_and_plain_sets_combine_like_redis() {
        let mut h = Harness::new();
        h.ok("zadd a 1 x 2 y inf z");
        h.ok("zadd b 3 y -inf z");
        h.ok("sadd plain x y");
        assert_eq!(h.ok("zunionstore u 2 a b WEIGHTS 2 1"), Frame::Integer(3));
        // inf + -inf is NaN, which counts as 0.
        assert_eq!(h.scored("u"), ["z=0", "x=2", "y=7"]);
        assert_eq!(h.ok("zinterstore i 2 a plain AGGREGATE MIN"), Frame::Integer(2));
        assert_eq!(h.scored("i"), ["x=1", "y=1"]);
        // 0 × inf is NaN, which counts as 0.
        assert_eq!(h.ok("zunionstore w 1 a WEIGHTS 0"), Frame::Integer(3));
        assert_eq!(h.scored("w"), ["x=0", "y=0", "z=0"]);
        assert_eq!(h.ok("zdiffstore d 2 a b"), Frame::Integer(1));
        assert_eq!(h.scored("d"), ["x=1"]);
        assert_eq!(h.ok("zintercard 3 a b plain LIMIT 0"), Frame::Integer(1));
        assert_eq!(h.error("zintercard 1 a LIMIT -1"), "ERR LIMIT can't be negative");
        assert_eq!(h.error("zdiff 2 a b WEIGHTS 1 1"), "ERR syntax error");
        assert_eq!(h.error("zunion 2 a b AGGREGATE avg"), "ERR syntax error");
        h.assert_replay_matches();
    }
}

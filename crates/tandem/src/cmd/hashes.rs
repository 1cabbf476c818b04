//! Hash commands: HSET, HGET and friends, HINCRBY family, HSCAN.
//!
//! Every write here turns into `Effect::HashSet`, `HashDelete` or
//! `HashIncrBy`; the reply is computed from the state before the effect,
//! exactly as Redis replies. A write emits an effect exactly when Redis
//! would signal the key as modified (so `WATCH` sees the same changes).
//!
//! This file also holds the cursor walk that `HSCAN` and `SSCAN` share
//! (`scan_step`), because both walk a `hashbrown` collection the same way.

use std::collections::HashSet;

use bytes::Bytes;
use tandem_resp::Frame;

use super::args::{self, is};
use super::random_picks::Picks;
use super::table::{spec, CommandSpec, Flags};
use super::{CommandError, DataContext, Reply};
use crate::store::effect::Effect;
use crate::store::glob;
use crate::store::value::HashValue;

const READ: Flags = Flags::READONLY.with(Flags::FAST);
const WRITE: Flags = Flags::WRITE.with(Flags::DENYOOM);
const WRITE_FAST: Flags = WRITE.with(Flags::FAST);
const ONE_KEY: (i32, i32, i32) = (1, 1, 1);

/// The hash family's commands.
pub const SPECS: &[CommandSpec] = &[
    spec("hset", -4, WRITE_FAST, ONE_KEY, hset),
    spec("hmset", -4, WRITE_FAST, ONE_KEY, hmset),
    spec("hsetnx", 4, WRITE_FAST, ONE_KEY, hsetnx),
    spec("hget", 3, READ, ONE_KEY, hget),
    spec("hmget", -3, READ, ONE_KEY, hmget),
    spec("hdel", -3, Flags::WRITE.with(Flags::FAST), ONE_KEY, hdel),
    spec("hgetall", 2, Flags::READONLY, ONE_KEY, hgetall),
    spec("hlen", 2, READ, ONE_KEY, hlen),
    spec("hexists", 3, READ, ONE_KEY, hexists),
    spec("hincrby", 4, WRITE_FAST, ONE_KEY, hincrby),
    spec("hincrbyfloat", 4, WRITE_FAST, ONE_KEY, hincrbyfloat),
    spec("hkeys", 2, Flags::READONLY, ONE_KEY, hkeys),
    spec("hvals", 2, Flags::READONLY, ONE_KEY, hvals),
    spec("hstrlen", 3, READ, ONE_KEY, hstrlen),
    spec("hscan", -3, Flags::READONLY, ONE_KEY, hscan),
    spec("hrandfield", -2, Flags::READONLY, ONE_KEY, hrandfield),
];

fn bulk(bytes: &[u8]) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(bytes))
}

fn field_value<'a>(hash: Option<&'a HashValue>, field: &[u8]) -> Option<&'a [u8]> {
    hash.and_then(|hash| hash.get(field)).map(|value| &value[..])
}

/// The field/value pairs of an HSET/HMSET; an odd count is an arity error
/// that only the handler can see.
fn field_pairs(args: &[Bytes], name: &str) -> Result<Vec<(Bytes, Bytes)>, CommandError> {
    if args.len() % 2 == 1 {
        return Err(CommandError::WrongArity(name.to_string()));
    }
    Ok(args[2..].chunks_exact(2).map(|pair| (pair[0].clone(), pair[1].clone())).collect())
}

/// How many distinct fields of `pairs` the hash does not hold yet.
fn new_field_count(hash: Option<&HashValue>, pairs: &[(Bytes, Bytes)]) -> i64 {
    let mut seen = HashSet::new();
    let is_new = |field: &Bytes| field_value(hash, field).is_none();
    pairs.iter().filter(|(field, _)| is_new(field) && seen.insert(field)).count() as i64
}

/// `HSET key field value [field value ...]` — replies how many fields are new.
fn hset(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let pairs = field_pairs(args, "hset")?;
    let added = new_field_count(context.hash(&args[1])?, &pairs);
    context.emit(Effect::HashSet { key: args[1].clone(), pairs });
    Ok(Frame::Integer(added))
}

/// `HMSET key field value [field value ...]`
fn hmset(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let pairs = field_pairs(args, "hmset")?;
    // Read only to refuse another type: the effect would assume a hash.
    context.hash(&args[1])?;
    context.emit(Effect::HashSet { key: args[1].clone(), pairs });
    Ok(Frame::ok())
}

/// `HSETNX key field value`
fn hsetnx(context: &mut DataContext, args: &[Bytes]) -> Reply {
    if field_value(context.hash(&args[1])?, &args[2]).is_some() {
        return Ok(Frame::Integer(0));
    }
    let pairs = vec![(args[2].clone(), args[3].clone())];
    context.emit(Effect::HashSet { key: args[1].clone(), pairs });
    Ok(Frame::Integer(1))
}

/// `HGET key field`
fn hget(context: &mut DataContext, args: &[Bytes]) -> Reply {
    Ok(field_value(context.hash(&args[1])?, &args[2]).map_or(Frame::Null, bulk))
}

/// `HMGET key field [field ...]`
fn hmget(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let hash = context.hash(&args[1])?;
    let values = args[2..].iter().map(|field| field_value(hash, field).map_or(Frame::Null, bulk)).collect();
    Ok(Frame::Array(values))
}

/// `HDEL key field [field ...]` — replies how many fields were removed.
fn hdel(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let hash = context.hash(&args[1])?;
    let mut fields: Vec<Bytes> = args[2..].iter().filter(|field| field_value(hash, field).is_some()).cloned().collect();
    fields.sort_unstable();
    fields.dedup();
    let removed = fields.len() as i64;
    if removed > 0 {
        context.emit(Effect::HashDelete { key: args[1].clone(), fields });
    }
    Ok(Frame::Integer(removed))
}

/// `HGETALL key` — a map in RESP3 (the encoder flattens it for RESP2).
fn hgetall(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let pairs = context.hash(&args[1])?.into_iter().flatten();
    Ok(Frame::Map(pairs.map(|(field, value)| (bulk(field), bulk(value))).collect()))
}

/// `HLEN key`
fn hlen(context: &mut DataContext, args: &[Bytes]) -> Reply {
    Ok(Frame::Integer(context.hash(&args[1])?.map_or(0, HashValue::len) as i64))
}

/// `HEXISTS key field`
fn hexists(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let exists = field_value(context.hash(&args[1])?, &args[2]).is_some();
    Ok(Frame::Integer(exists as i64))
}

/// `HINCRBY key field increment`
fn hincrby(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let delta = args::integer(&args[3])?;
    let current = match field_value(context.hash(&args[1])?, &args[2]) {
        None => 0,
        Some(value) => args::parse_integer(value).ok_or(CommandError::HashNotInteger)?,
    };
    let next = current.checked_add(delta).ok_or(CommandError::Overflow)?;
    context.emit(Effect::HashIncrBy { key: args[1].clone(), field: args[2].clone(), delta });
    Ok(Frame::Integer(next))
}

/// `HINCRBYFLOAT key field increment` — the result is stored as text
/// (`Effect::HashSet`), so replay does not depend on floating-point rounding.
fn hincrbyfloat(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let delta = args::float(&args[3])?;
    if !delta.is_finite() {
        return Err(CommandError::err("value is NaN or Infinity"));
    }
    let current = field_value(context.hash(&args[1])?, &args[2]).unwrap_or(b"0");
    let not_float = CommandError::err("hash value is not a float");
    let text = Bytes::from(super::float_text::add_float_texts(current, &args[3], not_float)?);
    context.emit(Effect::HashSet { key: args[1].clone(), pairs: vec![(args[2].clone(), text.clone())] });
    Ok(Frame::Bulk(text))
}

/// `HKEYS key`
fn hkeys(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let fields = context.hash(&args[1])?.into_iter().flat_map(|hash| hash.keys());
    Ok(Frame::Array(fields.map(|field| bulk(field)).collect()))
}

/// `HVALS key`
fn hvals(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let values = context.hash(&args[1])?.into_iter().flat_map(|hash| hash.values());
    Ok(Frame::Array(values.map(|value| bulk(value)).collect()))
}

/// `HSTRLEN key field`
fn hstrlen(context: &mut DataContext, args: &[Bytes]) -> Reply {
    Ok(Frame::Integer(field_value(context.hash(&args[1])?, &args[2]).map_or(0, <[u8]>::len) as i64))
}

/// `HRANDFIELD key [count [WITHVALUES]]` — random fields (see
/// [`random_picks`](super::random_picks) for the count); with `WITHVALUES`,
/// field–value pairs (nested in RESP3, as Redis 7 replies).
fn hrandfield(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let with_values = match &args[2..] {
        [] | [_] => false,
        [_, option] if is(option, "withvalues") => true,
        _ => return Err(CommandError::Syntax),
    };
    let count = args.get(2).map(|count| args::integer(count)).transpose()?;
    let Some(size) = context.hash(&args[1])?.map(HashValue::len) else {
        return Ok(if count.is_some() { Frame::Array(Vec::new()) } else { Frame::Null });
    };
    let picks = Picks::draw(size, count.unwrap_or(1), context.rng)?;
    let hash = context.hash(&args[1])?.expect("seen above");
    let picked = picks.read(hash.iter().map(|(field, value)| (&field[..], &value[..])));
    Ok(match count {
        None => bulk(picked[0].0),
        Some(_) if with_values => {
            Frame::Pairs(picked.iter().map(|(field, value)| (bulk(field), bulk(value))).collect())
        }
        Some(_) => Frame::Array(picked.iter().map(|(field, _)| bulk(field)).collect()),
    })
}

/// `HSCAN key cursor [MATCH pattern] [COUNT count] [NOVALUES]`
fn hscan(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let cursor = scan_cursor(&args[2])?;
    let Some(hash) = context.hash(&args[1])? else {
        return Ok(scan_reply(0, Vec::new()));
    };
    let options = scan_options(args, true)?;
    let (next, batch) = scan_step(hash.iter().map(|(field, value)| (&field[..], &value[..])), cursor, options.count);
    let mut elements = Vec::new();
    for (field, value) in batch.into_iter().filter(|(field, _)| options.keeps(field)) {
        elements.push(bulk(field));
        if !options.no_values {
            elements.push(bulk(value));
        }
    }
    Ok(scan_reply(next, elements))
}

/// The options of HSCAN/SSCAN that follow the cursor.
pub(super) struct ScanOptions<'a> {
    /// `MATCH` pattern; `None` when absent or `*`.
    pub pattern: Option<&'a [u8]>,
    /// `COUNT`: a hint of how many elements to examine, at least 1.
    pub count: usize,
    /// `NOVALUES` (HSCAN only): reply fields without their values.
    pub no_values: bool,
}

impl ScanOptions<'_> {
    /// Whether an element passes the `MATCH` pattern.
    pub fn keeps(&self, element: &[u8]) -> bool {
        match self.pattern {
            None => true,
            Some(pattern) => glob::matches(pattern, element),
        }
    }
}

/// A SCAN-family cursor: an unsigned decimal, else `ERR invalid cursor`.
pub(super) fn scan_cursor(arg: &[u8]) -> Result<u64, CommandError> {
    let cursor = std::str::from_utf8(arg).ok().and_then(|text| text.parse::<u64>().ok());
    cursor.ok_or_else(|| CommandError::err("invalid cursor"))
}

/// Parses `[MATCH pattern] [COUNT count] [NOVALUES]` from `args[3..]`, with
/// Redis's errors: a `COUNT` below 1 is a syntax error.
pub(super) fn scan_options(args: &[Bytes], is_hash: bool) -> Result<ScanOptions<'_>, CommandError> {
    let mut options = ScanOptions { pattern: None, count: 10, no_values: false };
    let mut at = 3;
    while at < args.len() {
        let has_value = at + 1 < args.len();
        if is(&args[at], "count") && has_value {
            let count = args::integer(&args[at + 1])?;
            options.count = usize::try_from(count).ok().filter(|count| *count >= 1).ok_or(CommandError::Syntax)?;
            at += 2;
        } else if is(&args[at], "match") && has_value {
            let pattern = &args[at + 1][..];
            options.pattern = (pattern != b"*").then_some(pattern);
            at += 2;
        } else if is(&args[at], "novalues") {
            if !is_hash {
                return Err(CommandError::err("NOVALUES option can only be used in HSCAN"));
            }
            options.no_values = true;
            at += 1;
        } else {
            return Err(CommandError::Syntax);
        }
    }
    Ok(options)
}

/// The reply of a SCAN-family call: the next cursor (as a string) and the elements.
pub(super) fn scan_reply(next: u64, elements: Vec<Frame>) -> Frame {
    Frame::Array(vec![Frame::Bulk(Bytes::from(next.to_string())), Frame::Array(elements)])
}

/// Collections up to this size answer a scan whole in one call, cursor 0,
/// as Redis does for its compact (listpack) encodings.
const SCAN_WHOLE_MAX: usize = 512;
/// A scan of a larger collection takes about this many calls at the most,
/// whatever `COUNT` says, because each call costs one pass over it.
const SCAN_CALLS_MAX: usize = 16;

/// One step of a scan over a collection whose iteration order is not stable
/// (a `hashbrown` table reorders when it grows, so Redis's reverse-binary
/// cursor over bucket positions does not apply).
///
/// Elements are ordered by the CRC32C of their bytes, which depends on
/// nothing but the element (so a cursor even survives a failover to the
/// peer), and the cursor is the next CRC value still to visit. A step returns
/// every element whose CRC lies in `cursor..next`, never splitting elements
/// that share a CRC; the steps' ranges tile `0..2^32`, so every element
/// present for the whole scan is returned exactly once, and elements added or
/// removed meanwhile at most once. The final step returns cursor 0.
///
/// Cost: each step examines the whole collection (O(n)), so a step returns
/// at least n/[`SCAN_CALLS_MAX`] elements, keeping a full scan O(n) passes
/// bounded; `COUNT` is a hint in Redis too and may be exceeded.
pub(super) fn scan_step<'a, T>(
    items: impl ExactSizeIterator<Item = (&'a [u8], T)>,
    cursor: u64,
    count: usize,
) -> (u64, Vec<(&'a [u8], T)>) {
    let batch = count.max(SCAN_WHOLE_MAX).max(items.len().div_ceil(SCAN_CALLS_MAX));
    if cursor == 0 && items.len() <= batch {
        return (0, items.collect());
    }
    let mut pending: Vec<(u32, (&'a [u8], T))> =
        items.map(|item| (crc32c::crc32c(item.0), item)).filter(|(order, _)| u64::from(*order) >= cursor).collect();
    if pending.len() <= batch {
        return (0, pending.into_iter().map(|(_, item)| item).collect());
    }
    pending.select_nth_unstable_by_key(batch - 1, |(order, _)| *order);
    let boundary = pending[batch - 1].0;
    let rest = pending.split_off(batch);
    let mut taken: Vec<(&'a [u8], T)> = pending.into_iter().map(|(_, item)| item).collect();
    let mut more = false;
    for (order, item) in rest {
        if order == boundary {
            taken.push(item);
        } else {
            more = true;
        }
    }
    (if more { u64::from(boundary) + 1 } else { 0 }, taken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::harness::{b, bulk_text, sorted, text, Harness};
    use crate::store::effect::Ttl;

    #[test]
    fn hrandfield_picks_fields_with_or_without_values() {
        let mut h = Harness::new();
        h.ok("hset h a 1 b 2 c 3");
        let one = text(&h.ok("hrandfield h"));
        assert!(["a", "b", "c"].contains(&one.as_str()));
        assert_eq!(sorted(&h.ok("hrandfield h 10")), ["a", "b", "c"], "distinct, at most every field");
        let Frame::Pairs(pairs) = h.ok("hrandfield h -5 WITHVALUES") else { panic!("pairs with values") };
        assert_eq!(pairs.len(), 5);
        for (field, value) in &pairs {
            let expected = match text(field).as_str() {
                "a" => "1",
                "b" => "2",
                "c" => "3",
                other => panic!("not a field: {other}"),
            };
            assert_eq!(text(value), expected);
        }
        assert_eq!(h.ok("hrandfield missing"), Frame::Null);
        assert_eq!(h.ok("hrandfield missing 2"), Frame::Array(Vec::new()));
        assert_eq!(h.ok("hrandfield h 0"), Frame::Array(Vec::new()));
        assert_eq!(h.run("hrandfield h 1 WITHSCORES"), Err(CommandError::Syntax));
        assert_eq!(h.run("hrandfield h x"), Err(CommandError::NotInteger));
        assert_eq!(h.effects.len(), 1, "reads only");
    }

    #[test]
    fn hset_counts_new_fields_and_hget_reads_them() {
        let mut h = Harness::new();
        assert_eq!(h.ok("hset h a 1 b 2 a 3"), Frame::Integer(2));
        assert_eq!(h.ok("hset h b 20 c 30"), Frame::Integer(1));
        assert_eq!(h.ok("hget h a"), bulk_text("3"));
        assert_eq!(h.ok("hget h b"), bulk_text("20"));
        assert_eq!(h.ok("hget h nope"), Frame::Null);
        assert_eq!(h.ok("hget missing a"), Frame::Null);
        assert_eq!(h.ok("hmset h d 4 e 5"), Frame::ok());
        assert_eq!(h.ok("hlen h"), Frame::Integer(5));
        assert_eq!(h.ok("hlen missing"), Frame::Integer(0));
        assert_eq!(h.ok("hmget h a nope e"), Frame::Array(vec![bulk_text("3"), Frame::Null, bulk_text("5")]));
        assert_eq!(h.ok("hmget missing a"), Frame::Array(vec![Frame::Null]));
        assert_eq!(h.ok("hexists h a"), Frame::Integer(1));
        assert_eq!(h.ok("hexists h z"), Frame::Integer(0));
        assert_eq!(h.ok("hstrlen h b"), Frame::Integer(2));
        assert_eq!(h.ok("hstrlen h z"), Frame::Integer(0));
        assert_eq!(h.ok("hsetnx h a 9"), Frame::Integer(0));
        assert_eq!(h.ok("hsetnx h f 6"), Frame::Integer(1));
        assert_eq!(h.ok("hget h f"), bulk_text("6"));
        h.assert_replay_matches();
    }

    #[test]
    fn pair_count_errors_come_from_the_handler() {
        let mut h = Harness::new();
        assert_eq!(h.run("hset h a 1 b"), Err(CommandError::WrongArity("hset".into())));
        assert_eq!(h.run("hset h a 1 b").unwrap_err().to_string(), "ERR wrong number of arguments for 'hset' command");
        assert_eq!(h.run("hmset h a 1 b"), Err(CommandError::WrongArity("hmset".into())));
        assert_eq!(h.run("hset h a"), Err(CommandError::WrongArity("hset".into())));
        assert!(h.keyspace.is_empty());
        assert!(h.effects.is_empty());
    }

    #[test]
    fn every_command_refuses_another_type() {
        let mut h = Harness::new();
        h.seed(Effect::Set { key: b("s"), value: b("x"), ttl: Ttl::Clear });
        for line in [
            "hset s a 1",
            "hmset s a 1",
            "hsetnx s a 1",
            "hget s a",
            "hmget s a",
            "hdel s a",
            "hgetall s",
            "hlen s",
            "hexists s a",
            "hincrby s a 1",
            "hincrbyfloat s a 1",
            "hkeys s",
            "hvals s",
            "hstrlen s a",
            "hscan s 0",
        ] {
            assert_eq!(h.run(line), Err(CommandError::WrongType), "{line}");
        }
        assert_eq!(h.effects.len(), 1);
    }

    #[test]
    fn hdel_counts_distinct_fields_and_deletes_the_emptied_key() {
        let mut h = Harness::new();
        h.ok("hset h a 1 b 2 c 3");
        assert_eq!(h.ok("hdel h a a nope"), Frame::Integer(1));
        assert_eq!(h.ok("hdel h nope"), Frame::Integer(0));
        assert_eq!(h.ok("hdel missing a"), Frame::Integer(0));
        let effects_before = h.effects.len();
        assert_eq!(h.ok("hdel h nope"), Frame::Integer(0));
        assert_eq!(h.effects.len(), effects_before, "nothing removed, nothing logged");
        assert_eq!(h.ok("hdel h b c"), Frame::Integer(2));
        assert!(h.keyspace.get(b"h", h.now_ms).is_none());
        assert_eq!(h.ok("hgetall h"), Frame::Map(Vec::new()));
        h.assert_replay_matches();
    }

    #[test]
    fn whole_hash_readers() {
        let mut h = Harness::new();
        h.ok("hset h a 1 b 2");
        assert_eq!(sorted(&h.ok("hgetall h")), ["1", "2", "a", "b"]);
        let Frame::Map(pairs) = h.ok("hgetall h") else { panic!("HGETALL is a map") };
        assert!(pairs.contains(&(bulk_text("a"), bulk_text("1"))));
        assert_eq!(sorted(&h.ok("hkeys h")), ["a", "b"]);
        assert_eq!(sorted(&h.ok("hvals h")), ["1", "2"]);
        assert_eq!(h.ok("hkeys missing"), Frame::Array(Vec::new()));
        assert_eq!(h.ok("hvals missing"), Frame::Array(Vec::new()));
    }

    #[test]
    fn hincrby_checks_integers_and_overflow() {
        let mut h = Harness::new();
        assert_eq!(h.ok("hincrby h n 5"), Frame::Integer(5));
        assert_eq!(h.ok("hincrby h n -7"), Frame::Integer(-2));
        assert_eq!(h.run("hincrby h n x"), Err(CommandError::NotInteger));
        assert_eq!(h.run("hincrby h n 1.5"), Err(CommandError::NotInteger));
        h.ok("hset h text abc big 9223372036854775806 spaced 01");
        assert_eq!(h.run("hincrby h text 1"), Err(CommandError::HashNotInteger));
        assert_eq!(h.run("hincrby h spaced 1").unwrap_err().to_string(), "ERR hash value is not an integer");
        assert_eq!(h.ok("hincrby h big 1"), Frame::Integer(i64::MAX));
        assert_eq!(h.run("hincrby h big 1"), Err(CommandError::Overflow));
        assert_eq!(h.ok("hget h big"), bulk_text("9223372036854775807"));
        assert_eq!(h.ok("hget h n"), bulk_text("-2"));
        h.assert_replay_matches();
    }

    #[test]
    fn hincrbyfloat_stores_text() {
        let mut h = Harness::new();
        assert_eq!(h.ok("hincrbyfloat h f 10.5"), bulk_text("10.5"));
        assert_eq!(h.ok("hincrbyfloat h f 0.25"), bulk_text("10.75"));
        assert_eq!(h.ok("hget h f"), bulk_text("10.75"));
        assert_eq!(h.ok("hincrbyfloat h f -10.75"), bulk_text("0"));
        assert_eq!(h.run("hincrbyfloat h f abc"), Err(CommandError::NotFloat));
        assert_eq!(h.run("hincrbyfloat h f inf").unwrap_err().to_string(), "ERR value is NaN or Infinity");
        h.ok("hset h text abc huge 1e308");
        assert_eq!(h.run("hincrbyfloat h text 1").unwrap_err().to_string(), "ERR hash value is not a float");
        assert_eq!(
            h.run("hincrbyfloat h huge 1e308").unwrap_err().to_string(),
            "ERR increment would produce NaN or Infinity"
        );
        assert_eq!(h.ok("hincrby h f 1"), Frame::Integer(1), "HINCRBYFLOAT leaves an integer as integer text");
        h.assert_replay_matches();
    }

    #[test]
    fn write_purges_an_expired_hash_first() {
        let mut h = Harness::new();
        h.ok("hset h a 1");
        h.seed(Effect::ExpireAt { key: b("h"), at_ms: h.now_ms - 1 });
        assert_eq!(h.ok("hget h a"), Frame::Null);
        assert_eq!(h.ok("hset h b 2"), Frame::Integer(1));
        assert_eq!(sorted(&h.ok("hgetall h")), ["2", "b"]);
        assert_eq!(h.keyspace.get(b"h", h.now_ms).unwrap().expire_at_ms, 0);
        h.assert_replay_matches();
    }

    /// Runs a whole HSCAN with `options`, returning the elements of every step.
    fn full_scan(h: &mut Harness, key: &str, options: &str) -> (usize, Vec<String>) {
        let mut cursor = "0".to_string();
        let mut elements = Vec::new();
        let mut calls = 0;
        loop {
            let reply = h.ok(&format!("hscan {key} {cursor}{options}"));
            calls += 1;
            let Frame::Array(parts) = reply else { panic!("HSCAN replies an array") };
            let Frame::Array(items) = &parts[1] else { panic!("elements are an array") };
            elements.extend(items.iter().map(text));
            cursor = text(&parts[0]);
            if cursor == "0" {
                return (calls, elements);
            }
        }
    }

    #[test]
    fn hscan_returns_a_small_hash_whole() {
        let mut h = Harness::new();
        h.ok("hset h a 1 b 2 c 3");
        let (calls, mut elements) = full_scan(&mut h, "h", "");
        elements.sort();
        assert_eq!((calls, elements), (1, ["1", "2", "3", "a", "b", "c"].map(String::from).to_vec()));
        let (_, mut fields) = full_scan(&mut h, "h", " MATCH [ab] COUNT 1 NOVALUES");
        fields.sort();
        assert_eq!(fields, ["a", "b"]);
        assert_eq!(h.ok("hscan missing 0 COUNT 0"), scan_reply(0, Vec::new()));
    }

    #[test]
    fn hscan_option_errors() {
        let mut h = Harness::new();
        h.ok("hset h a 1");
        assert_eq!(h.run("hscan h x").unwrap_err().to_string(), "ERR invalid cursor");
        assert_eq!(h.run("hscan h -1").unwrap_err().to_string(), "ERR invalid cursor");
        assert_eq!(h.run("hscan h 0 COUNT 0"), Err(CommandError::Syntax));
        assert_eq!(h.run("hscan h 0 COUNT x"), Err(CommandError::NotInteger));
        assert_eq!(h.run("hscan h 0 COUNT"), Err(CommandError::Syntax));
        assert_eq!(h.run("hscan h 0 MATCH"), Err(CommandError::Syntax));
        assert_eq!(h.run("hscan h 0 bogus"), Err(CommandError::Syntax));
    }

    #[test]
    fn hscan_of_a_large_hash_returns_every_stable_field_despite_changes() {
        let mut h = Harness::new();
        let pairs: Vec<(Bytes, Bytes)> = (0..3000).map(|index| (b(&format!("f{index}")), b("v"))).collect();
        h.seed(Effect::HashSet { key: b("h"), pairs });
        let mut cursor = "0".to_string();
        let mut seen = Vec::new();
        let mut calls = 0;
        loop {
            let Frame::Array(parts) = h.ok(&format!("hscan h {cursor} COUNT 10 NOVALUES")) else { panic!() };
            let Frame::Array(items) = &parts[1] else { panic!() };
            seen.extend(items.iter().map(text));
            cursor = text(&parts[0]);
            calls += 1;
            // Churn between steps: fields f0..f99 go, new ones arrive.
            h.ok(&format!("hdel h f{calls}"));
            h.ok(&format!("hset h new{calls} v"));
            if cursor == "0" {
                break;
            }
        }
        assert!(calls > 1 && calls <= SCAN_CALLS_MAX + 1, "{calls} calls");
        let distinct: HashSet<&String> = seen.iter().collect();
        assert_eq!(distinct.len(), seen.len(), "no field returned twice");
        let deleted = 1..=calls;
        for index in (0..3000).filter(|index| !deleted.contains(index)) {
            assert!(distinct.contains(&format!("f{index}")), "f{index} missed");
        }
    }

    #[test]
    fn scan_steps_tile_the_order_exactly() {
        let members: Vec<String> = (0..5000).map(|index| format!("m{index}")).collect();
        let mut cursor = 0;
        let mut seen = HashSet::new();
        loop {
            let (next, batch) = scan_step(members.iter().map(|member| (member.as_bytes(), ())), cursor, 700);
            assert!(batch.len() >= 700 || next == 0);
            for (member, ()) in batch {
                assert!(seen.insert(member), "returned twice");
            }
            if next == 0 {
                break;
            }
            assert!(next > cursor);
            cursor = next;
        }
        assert_eq!(seen.len(), members.len());
    }
}

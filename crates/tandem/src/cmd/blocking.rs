//! Blocking pops — BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN,
//! BZPOPMAX, BZMPOP — and LMPOP, the list pop over several keys that BLMPOP
//! blocks on.
//!
//! Each blocking command here is one attempt: it pops if one of its keys
//! holds something, and otherwise replies the null that tells the
//! connection to block ([`would_block`]). The connection then waits on the
//! keys [`wait_plan`] names and runs the command again whenever a write
//! changes one of them, until it pops or its timeout passes (see
//! `server::blocking`). A pop is an ordinary write: its effects are logged
//! and replicated like an `LPOP`'s, and nothing is logged while a client
//! waits. Inside `MULTI` the attempt is all there is: an empty key replies
//! the null at once, as in Redis.

use bytes::Bytes;
use tandem_resp::Frame;

use super::args;
use super::list_move::{move_one, side};
use super::lists::pop_elements;
use super::sorted_sets::{pop, zmpop};
use super::table::{spec, CommandSpec, Flags};
use super::{CommandError, DataContext, Reply};

const BLOCKING_WRITE: Flags = Flags::WRITE.with(Flags::BLOCKING);
/// Every argument but the last (the timeout) is a key.
const KEYS_BEFORE_TIMEOUT: (i32, i32, i32) = (1, -2, 1);
/// The keys follow a count, as in Redis, where `COMMAND INFO` shows no fixed key range.
const COUNTED_KEYS: (i32, i32, i32) = (0, 0, 0);

/// The blocking commands, and LMPOP.
pub const SPECS: &[CommandSpec] = &[
    spec("blpop", -3, BLOCKING_WRITE, KEYS_BEFORE_TIMEOUT, blpop),
    spec("brpop", -3, BLOCKING_WRITE, KEYS_BEFORE_TIMEOUT, brpop),
    spec("blmove", 6, BLOCKING_WRITE.with(Flags::DENYOOM), (1, 2, 1), blmove),
    spec("brpoplpush", 4, BLOCKING_WRITE.with(Flags::DENYOOM), (1, 2, 1), brpoplpush),
    spec("lmpop", -4, Flags::WRITE, COUNTED_KEYS, lmpop),
    spec("blmpop", -5, BLOCKING_WRITE, COUNTED_KEYS, blmpop),
    spec("bzpopmin", -3, BLOCKING_WRITE.with(Flags::FAST), KEYS_BEFORE_TIMEOUT, bzpopmin),
    spec("bzpopmax", -3, BLOCKING_WRITE.with(Flags::FAST), KEYS_BEFORE_TIMEOUT, bzpopmax),
    spec("bzmpop", -5, BLOCKING_WRITE, COUNTED_KEYS, bzmpop),
];

/// Whether a blocking command's reply says that nothing could be popped yet.
pub fn would_block(reply: &Frame) -> bool {
    matches!(reply, Frame::Null | Frame::NullArray)
}

/// What a blocked command waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitPlan {
    /// The keys whose change may let it pop.
    pub keys: Vec<Bytes>,
    /// How long to wait, in milliseconds; `None`: without end (a timeout of 0).
    pub timeout_ms: Option<u64>,
}

/// The keys and timeout of a blocking command whose arguments already passed
/// its handler (so they parse).
pub fn wait_plan(args: &[Bytes]) -> Result<WaitPlan, CommandError> {
    let name = args[0].to_ascii_lowercase();
    let (keys, timeout) = match name.as_slice() {
        b"blmove" | b"brpoplpush" => (&args[1..2], &args[args.len() - 1]),
        b"blmpop" | b"bzmpop" => (args::counted_keys(args, 2)?.0, &args[1]),
        _ => (&args[1..args.len() - 1], &args[args.len() - 1]),
    };
    let timeout_ms = timeout_ms(timeout)?;
    Ok(WaitPlan { keys: keys.to_vec(), timeout_ms: (timeout_ms > 0).then_some(timeout_ms) })
}

/// Most a timeout may be: Redis's limit, about 292 million years.
const TIMEOUT_MS_MAX: f64 = i64::MAX as f64;

/// A timeout in seconds (fractions allowed), as milliseconds; 0 blocks without end.
/// The errors are Redis 7.2's: `inf` and `1e300` are out of range (7.0 let the
/// conversion overflow and called them negative).
fn timeout_ms(arg: &[u8]) -> Result<u64, CommandError> {
    let not_float = || CommandError::err("timeout is not a float or out of range");
    let seconds = args::parse_float(arg).ok_or_else(not_float)?;
    if seconds < 0.0 {
        return Err(CommandError::err("timeout is negative"));
    }
    let milliseconds = (seconds * 1000.0).ceil();
    if milliseconds > TIMEOUT_MS_MAX {
        return Err(CommandError::err("timeout is out of range"));
    }
    Ok(milliseconds as u64)
}

/// Pops one element from the first of `keys` that holds a list; `[key, element]`.
fn pop_first(context: &mut DataContext, args: &[Bytes], left: bool) -> Reply {
    timeout_ms(&args[args.len() - 1])?;
    for key in &args[1..args.len() - 1] {
        if let Some(mut popped) = pop_elements(context, key, left, 1)? {
            return Ok(Frame::Array(vec![Frame::Bulk(key.clone()), popped.remove(0)]));
        }
    }
    Ok(Frame::NullArray)
}

/// `BLPOP key [key ...] timeout`
fn blpop(context: &mut DataContext, args: &[Bytes]) -> Reply {
    pop_first(context, args, true)
}

/// `BRPOP key [key ...] timeout`
fn brpop(context: &mut DataContext, args: &[Bytes]) -> Reply {
    pop_first(context, args, false)
}

/// `BLMOVE source destination LEFT|RIGHT LEFT|RIGHT timeout`
fn blmove(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let (from_left, to_left) = (side(&args[3])?, side(&args[4])?);
    timeout_ms(&args[5])?;
    move_one(context, &args[1], &args[2], from_left, to_left)
}

/// `BRPOPLPUSH source destination timeout`
fn brpoplpush(context: &mut DataContext, args: &[Bytes]) -> Reply {
    timeout_ms(&args[3])?;
    move_one(context, &args[1], &args[2], false, true)
}

/// `LMPOP numkeys key [key ...] LEFT|RIGHT [COUNT count]` — pops up to
/// `count` elements from the first key that holds a list: `[key, [elements]]`.
fn lmpop(context: &mut DataContext, args: &[Bytes]) -> Reply {
    list_mpop(context, args, 1)
}

/// `BLMPOP timeout numkeys key [key ...] LEFT|RIGHT [COUNT count]`
fn blmpop(context: &mut DataContext, args: &[Bytes]) -> Reply {
    timeout_ms(&args[1])?;
    list_mpop(context, args, 2)
}

fn list_mpop(context: &mut DataContext, args: &[Bytes], numkeys_at: usize) -> Reply {
    let (keys, rest) = args::counted_keys(args, numkeys_at)?;
    let left = side(rest.first().ok_or(CommandError::Syntax)?)?;
    let count = args::pop_count_option(&rest[1..])? as u64;
    for key in keys {
        if let Some(elements) = pop_elements(context, key, left, count)? {
            return Ok(Frame::Array(vec![Frame::Bulk(key.clone()), Frame::Array(elements)]));
        }
    }
    Ok(Frame::NullArray)
}

/// Pops the lowest (or highest) member of the first of `keys` that holds a
/// sorted set: `[key, member, score]`.
fn zpop_first(context: &mut DataContext, args: &[Bytes], max: bool) -> Reply {
    timeout_ms(&args[args.len() - 1])?;
    for key in &args[1..args.len() - 1] {
        if let Some((member, score)) = pop(context, key, 1, max)?.pop() {
            return Ok(Frame::Array(vec![Frame::Bulk(key.clone()), Frame::Bulk(member), Frame::Double(score)]));
        }
    }
    Ok(Frame::NullArray)
}

/// `BZPOPMIN key [key ...] timeout`
fn bzpopmin(context: &mut DataContext, args: &[Bytes]) -> Reply {
    zpop_first(context, args, false)
}

/// `BZPOPMAX key [key ...] timeout`
fn bzpopmax(context: &mut DataContext, args: &[Bytes]) -> Reply {
    zpop_first(context, args, true)
}

/// `BZMPOP timeout numkeys key [key ...] MIN|MAX [COUNT count]` — ZMPOP after the timeout.
fn bzmpop(context: &mut DataContext, args: &[Bytes]) -> Reply {
    timeout_ms(&args[1])?;
    let without_timeout: Vec<Bytes> = std::iter::once(args[0].clone()).chain(args[2..].iter().cloned()).collect();
    zmpop(context, &without_timeout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::harness::{b, Harness};

    #[test]
    fn an_attempt_pops_from_the_first_key_that_holds_something() {
        let mut h = Harness::new();
        h.ok("rpush second a b c");
        assert_eq!(h.ok("blpop first second 0"), Frame::Array(vec![Frame::Bulk(b("second")), Frame::Bulk(b("a"))]));
        assert_eq!(h.ok("brpop first second 1.5"), Frame::Array(vec![Frame::Bulk(b("second")), Frame::Bulk(b("c"))]));
        assert_eq!(h.ok("blmove second dest RIGHT LEFT 0"), Frame::Bulk(b("b")));
        assert!(would_block(&h.ok("blpop first second 0")), "both empty now");
        assert!(would_block(&h.ok("brpoplpush second dest 0")));
        h.ok("zadd z 1 low 2 high");
        let popped = h.ok("bzpopmax none z 0");
        assert_eq!(popped, Frame::Array(vec![Frame::Bulk(b("z")), Frame::Bulk(b("high")), Frame::Double(2.0)]));
        assert!(matches!(h.ok("bzmpop 0 1 z MIN COUNT 5"), Frame::Array(_)));
        assert!(would_block(&h.ok("bzpopmin z 0")));
        h.assert_replay_matches();
    }

    #[test]
    fn lmpop_takes_up_to_count_from_either_end() {
        let mut h = Harness::new();
        h.ok("rpush l 1 2 3 4");
        let reply = |key: &str, elements: &[&str]| {
            Frame::Array(vec![Frame::Bulk(b(key)), Frame::Array(elements.iter().map(|e| Frame::Bulk(b(e))).collect())])
        };
        assert_eq!(h.ok("lmpop 2 none l RIGHT COUNT 3"), reply("l", &["4", "3", "2"]));
        assert_eq!(h.ok("blmpop 0 1 l LEFT COUNT 9"), reply("l", &["1"]));
        assert_eq!(h.ok("lmpop 1 l LEFT"), Frame::NullArray);
        assert_eq!(h.error("lmpop 0 l LEFT"), "ERR numkeys should be greater than 0");
        assert_eq!(h.error("lmpop 1 l MIDDLE"), "ERR syntax error");
        assert_eq!(h.error("lmpop 1 l LEFT COUNT 0"), "ERR count should be greater than 0");
        assert_eq!(h.error("lmpop 3 l LEFT"), "ERR syntax error");
        h.assert_replay_matches();
    }

    #[test]
    fn timeouts_are_seconds_and_checked_before_anything_else() {
        let mut h = Harness::new();
        h.ok("rpush l x");
        assert_eq!(h.error("blpop l -1"), "ERR timeout is negative");
        assert_eq!(h.error("blpop l soon"), "ERR timeout is not a float or out of range");
        assert_eq!(h.error("blpop l nan"), "ERR timeout is not a float or out of range");
        assert_eq!(h.error("blpop l inf"), "ERR timeout is out of range");
        assert_eq!(h.error("blpop l -inf"), "ERR timeout is negative");
        assert_eq!(h.error("blmpop 1e300 1 l LEFT"), "ERR timeout is out of range");
        assert_eq!(h.list("l"), ["x"], "nothing popped by a refused command");
        let plan = |line: &str| wait_plan(&line.split(' ').map(b).collect::<Vec<_>>()).unwrap();
        assert_eq!(plan("blpop a b 0.25"), WaitPlan { keys: vec![b("a"), b("b")], timeout_ms: Some(250) });
        assert_eq!(plan("blmove a b LEFT RIGHT 0"), WaitPlan { keys: vec![b("a")], timeout_ms: None });
        assert_eq!(plan("bzmpop 2 2 x y MAX"), WaitPlan { keys: vec![b("x"), b("y")], timeout_ms: Some(2000) });
        assert_eq!(
            plan("brpop a 0.0001"),
            WaitPlan { keys: vec![b("a")], timeout_ms: Some(1) },
            "never 0: that is forever"
        );
    }
}

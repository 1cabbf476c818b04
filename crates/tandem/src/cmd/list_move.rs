//! Moving an element between lists: LMOVE and RPOPLPUSH (their blocking
//! forms are in `blocking`).
//!
//! A move is `Effect::ListPop` from the source and `Effect::ListPush` to the
//! destination. When both are the same key the push comes first: popping the
//! only element of a list deletes the key, and its expiry with it, where
//! Redis rotates the list in place and keeps the expiry.

use bytes::Bytes;
use tandem_resp::Frame;

use super::args::is;
use super::table::{spec, CommandSpec, Flags};
use super::{CommandError, DataContext, Reply};
use crate::store::effect::Effect;

const MOVE: Flags = Flags::WRITE.with(Flags::DENYOOM);
const TWO_KEYS: (i32, i32, i32) = (1, 2, 1);

/// The list-moving commands.
pub const SPECS: &[CommandSpec] =
    &[spec("lmove", 5, MOVE, TWO_KEYS, lmove), spec("rpoplpush", 3, MOVE, TWO_KEYS, rpoplpush)];

/// `LEFT` (true) or `RIGHT` (false).
pub(super) fn side(arg: &[u8]) -> Result<bool, CommandError> {
    if is(arg, "left") {
        Ok(true)
    } else if is(arg, "right") {
        Ok(false)
    } else {
        Err(CommandError::Syntax)
    }
}

/// `LMOVE source destination LEFT|RIGHT LEFT|RIGHT`
fn lmove(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let (from_left, to_left) = (side(&args[3])?, side(&args[4])?);
    move_one(context, &args[1], &args[2], from_left, to_left)
}

/// `RPOPLPUSH source destination` — `LMOVE source destination RIGHT LEFT`.
fn rpoplpush(context: &mut DataContext, args: &[Bytes]) -> Reply {
    move_one(context, &args[1], &args[2], false, true)
}

/// Moves the element at one end of `source` to one end of `destination`;
/// replies it, or nil when `source` is missing.
pub(super) fn move_one(
    context: &mut DataContext,
    source: &Bytes,
    destination: &Bytes,
    from_left: bool,
    to_left: bool,
) -> Reply {
    let Some(list) = context.list(source)? else {
        return Ok(Frame::Null);
    };
    let end = if from_left { list.front() } else { list.back() };
    let value = Bytes::copy_from_slice(end.expect("a stored list is never empty"));
    context.list(destination)?; // WRONGTYPE before any change
    let pop = Effect::ListPop { key: source.clone(), left: from_left, count: 1 };
    let push = Effect::ListPush { key: destination.clone(), left: to_left, values: vec![value.clone()] };
    let (first, second) = if source == destination { (push, pop) } else { (pop, push) };
    context.emit(first);
    context.emit(second);
    Ok(Frame::Bulk(value))
}

#[cfg(test)]
mod tests {
    use crate::cmd::harness::{bulk_text, Harness};
    use tandem_resp::Frame;

    #[test]
    fn lmove_takes_from_either_end_and_puts_at_either_end() {
        let mut h = Harness::new();
        h.ok("rpush src a b c");
        assert_eq!(h.ok("lmove src dst LEFT RIGHT"), bulk_text("a"));
        assert_eq!(h.ok("lmove src dst right left"), bulk_text("c"));
        assert_eq!(h.list("src"), ["b"]);
        assert_eq!(h.list("dst"), ["c", "a"]);
        assert_eq!(h.ok("rpoplpush src dst"), bulk_text("b"));
        assert_eq!(h.ok("exists src"), Frame::Integer(0), "the emptied source is gone");
        assert_eq!(h.list("dst"), ["b", "c", "a"]);
        assert_eq!(h.ok("lmove src dst left left"), Frame::Null, "a missing source moves nothing");
        h.assert_replay_matches();
    }

    #[test]
    fn moving_within_one_list_rotates_it_and_keeps_its_expiry() {
        let mut h = Harness::new();
        h.ok("rpush l a b c");
        assert_eq!(h.ok("lmove l l left right"), bulk_text("a"));
        assert_eq!(h.list("l"), ["b", "c", "a"]);
        assert_eq!(h.ok("rpoplpush l l"), bulk_text("a"));
        assert_eq!(h.list("l"), ["a", "b", "c"]);
        h.ok("rpush one x");
        h.ok("expire one 100");
        assert_eq!(h.ok("lmove one one left right"), bulk_text("x"));
        assert_eq!(h.list("one"), ["x"]);
        assert_eq!(h.ok("ttl one"), Frame::Integer(100), "a one-element list keeps its expiry, as in Redis");
        h.assert_replay_matches();
    }

    #[test]
    fn wrong_types_and_sides_are_refused_without_a_change() {
        let mut h = Harness::new();
        h.ok("rpush l a");
        h.ok("set s x");
        let effects = h.effects.len();
        assert!(h.error("lmove l s left left").starts_with("WRONGTYPE"));
        assert!(h.error("lmove s l left left").starts_with("WRONGTYPE"));
        assert!(h.error("rpoplpush l s").starts_with("WRONGTYPE"));
        assert_eq!(h.error("lmove l d up left"), "ERR syntax error");
        assert_eq!(h.ok("lmove missing s left left"), Frame::Null, "a missing source answers before types");
        assert_eq!(h.effects.len(), effects);
        assert_eq!(h.list("l"), ["a"]);
    }
}

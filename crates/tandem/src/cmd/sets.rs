//! Set commands: SADD, SREM, membership, SPOP and SRANDMEMBER, SSCAN.
//!
//! Every write here turns into `Effect::SetAdd`, `SetRemove` or `Delete`,
//! naming the exact members, so a random choice (`SPOP`) is made once, on
//! the node that runs the command, and replay never draws a random number.
//! A write emits an effect exactly when Redis would signal the key as
//! modified.
//!
//! Random picks draw positions first and read the members afterwards: the
//! set is borrowed from the context, and so is its random source.

use std::collections::HashSet;

use bytes::Bytes;
use rand::seq::SliceRandom;
use rand::Rng;
use tandem_resp::Frame;

use super::args;
use super::hashes::{scan_cursor, scan_options, scan_reply, scan_step};
use super::table::{spec, CommandSpec, Flags};
use super::{CommandError, DataContext, Reply};
use crate::store::effect::Effect;
use crate::store::value::SetValue;

const READ: Flags = Flags::READONLY.with(Flags::FAST);
const WRITE_FAST: Flags = Flags::WRITE.with(Flags::FAST);
const ONE_KEY: (i32, i32, i32) = (1, 1, 1);

/// Most members one `SRANDMEMBER key -count` replies: with repeats the reply
/// does not shrink to the set's size, and tandem builds a reply whole in
/// memory (Redis streams it), so a huge count must not exhaust memory.
const RANDOM_REPEATS_MAX: u64 = super::random_picks::REPEATS_MAX;

/// The set family's commands.
pub const SPECS: &[CommandSpec] = &[
    spec("sadd", -3, WRITE_FAST.with(Flags::DENYOOM), ONE_KEY, sadd),
    spec("srem", -3, WRITE_FAST, ONE_KEY, srem),
    spec("smembers", 2, Flags::READONLY, ONE_KEY, smembers),
    spec("sismember", 3, READ, ONE_KEY, sismember),
    spec("smismember", -3, READ, ONE_KEY, smismember),
    spec("scard", 2, READ, ONE_KEY, scard),
    spec("spop", -2, WRITE_FAST, ONE_KEY, spop),
    spec("srandmember", -2, Flags::READONLY, ONE_KEY, srandmember),
    spec("sscan", -3, Flags::READONLY, ONE_KEY, sscan),
];

fn bulk(bytes: &[u8]) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(bytes))
}

fn contains(set: Option<&SetValue>, member: &[u8]) -> bool {
    set.is_some_and(|set| set.contains(member))
}

/// The distinct `members` whose presence in `set` is `present`.
fn distinct_where(set: Option<&SetValue>, members: &[Bytes], present: bool) -> Vec<Bytes> {
    let mut seen = HashSet::new();
    members.iter().filter(|member| contains(set, member) == present && seen.insert(*member)).cloned().collect()
}

/// `SADD key member [member ...]` — replies how many members are new.
fn sadd(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let members = distinct_where(context.set(&args[1])?, &args[2..], false);
    let added = members.len() as i64;
    if added > 0 {
        context.emit(Effect::SetAdd { key: args[1].clone(), members });
    }
    Ok(Frame::Integer(added))
}

/// `SREM key member [member ...]` — replies how many members were removed.
fn srem(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let members = distinct_where(context.set(&args[1])?, &args[2..], true);
    let removed = members.len() as i64;
    if removed > 0 {
        context.emit(Effect::SetRemove { key: args[1].clone(), members });
    }
    Ok(Frame::Integer(removed))
}

/// `SMEMBERS key` — a set in RESP3 (the encoder makes it an array for RESP2).
fn smembers(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let members = context.set(&args[1])?.into_iter().flatten();
    Ok(Frame::Set(members.map(|member| bulk(member)).collect()))
}

/// `SISMEMBER key member`
fn sismember(context: &mut DataContext, args: &[Bytes]) -> Reply {
    Ok(Frame::Integer(contains(context.set(&args[1])?, &args[2]) as i64))
}

/// `SMISMEMBER key member [member ...]`
fn smismember(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let set = context.set(&args[1])?;
    Ok(Frame::Array(args[2..].iter().map(|member| Frame::Integer(contains(set, member) as i64)).collect()))
}

/// `SCARD key`
fn scard(context: &mut DataContext, args: &[Bytes]) -> Reply {
    Ok(Frame::Integer(context.set(&args[1])?.map_or(0, SetValue::len) as i64))
}

/// The members at the given iteration positions (ascending, repeats allowed), copied.
fn members_at(set: &SetValue, positions: &[usize]) -> Vec<Bytes> {
    debug_assert!(positions.windows(2).all(|pair| pair[0] <= pair[1]));
    let mut found = Vec::with_capacity(positions.len());
    let mut wanted = positions.iter().copied().peekable();
    for (position, member) in set.iter().enumerate() {
        match wanted.peek() {
            None => break,
            Some(&next) if next == position => {
                let copy = Bytes::copy_from_slice(member);
                while wanted.next_if_eq(&position).is_some() {
                    found.push(copy.clone());
                }
            }
            Some(_) => {}
        }
    }
    assert_eq!(found.len(), positions.len(), "positions are below the set's size");
    found
}

/// `count` distinct random members of the set under `key` (which has more than `count`).
fn random_distinct(
    context: &mut DataContext,
    key: &[u8],
    size: usize,
    count: usize,
) -> Result<Vec<Bytes>, CommandError> {
    let mut positions = rand::seq::index::sample(context.rng, size, count).into_vec();
    positions.sort_unstable();
    let set = context.set(key)?.expect("the caller saw the set");
    Ok(members_at(set, &positions))
}

/// The set's size, or `None` when the key is absent.
fn set_size(context: &DataContext, key: &[u8]) -> Result<Option<usize>, CommandError> {
    Ok(context.set(key)?.map(SetValue::len))
}

/// Every member of the set under `key`, copied.
fn all_members(context: &DataContext, key: &[u8]) -> Result<Vec<Bytes>, CommandError> {
    Ok(context.set(key)?.into_iter().flatten().map(|member| Bytes::copy_from_slice(member)).collect())
}

/// `SPOP key [count]`
fn spop(context: &mut DataContext, args: &[Bytes]) -> Reply {
    match args.len() {
        2 => spop_one(context, &args[1]),
        3 => spop_count(context, args),
        _ => Err(CommandError::Syntax),
    }
}

fn spop_one(context: &mut DataContext, key: &Bytes) -> Reply {
    let Some(size) = set_size(context, key)? else {
        return Ok(Frame::Null);
    };
    let position = context.rng.gen_range(0..size);
    let member = members_at(context.set(key)?.expect("seen above"), &[position]).remove(0);
    context.emit(Effect::SetRemove { key: key.clone(), members: vec![member.clone()] });
    Ok(Frame::Bulk(member))
}

fn spop_count(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let count = args::non_negative(&args[2], CommandError::err("value is out of range, must be positive"))?;
    let key = &args[1];
    let Some(size) = set_size(context, key)? else {
        return Ok(Frame::Set(Vec::new()));
    };
    if count == 0 {
        return Ok(Frame::Set(Vec::new()));
    }
    let members = if count >= size as u64 {
        let members = all_members(context, key)?;
        context.emit(Effect::Delete { key: key.clone() });
        members
    } else {
        let members = random_distinct(context, key, size, count as usize)?;
        let removal = Effect::SetRemove { key: key.clone(), members: members.clone() };
        context.check_room(removal.encoded_bytes_bound())?; // names up to a whole set's members
        context.emit(removal);
        members
    };
    Ok(Frame::Set(members.into_iter().map(Frame::Bulk).collect()))
}

/// `SRANDMEMBER key [count]` — a negative count allows repeats.
fn srandmember(context: &mut DataContext, args: &[Bytes]) -> Reply {
    match args.len() {
        2 => srandmember_one(context, &args[1]),
        3 => srandmember_count(context, args),
        _ => Err(CommandError::Syntax),
    }
}

fn srandmember_one(context: &mut DataContext, key: &Bytes) -> Reply {
    let Some(size) = set_size(context, key)? else {
        return Ok(Frame::Null);
    };
    let position = context.rng.gen_range(0..size);
    let set = context.set(key)?.expect("seen above");
    Ok(Frame::Bulk(members_at(set, &[position]).remove(0)))
}

fn srandmember_count(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let count = args::integer(&args[2])?;
    if count == i64::MIN {
        return Err(CommandError::err(format!(
            "value is out of range, value must between {} and {}",
            -i64::MAX,
            i64::MAX
        )));
    }
    let Some(size) = set_size(context, &args[1])? else {
        return Ok(Frame::Array(Vec::new()));
    };
    let members = if count >= 0 {
        let count = count as usize;
        if count >= size {
            all_members(context, &args[1])?
        } else {
            random_distinct(context, &args[1], size, count)?
        }
    } else {
        if count.unsigned_abs() > RANDOM_REPEATS_MAX {
            let bound = RANDOM_REPEATS_MAX;
            return Err(CommandError::err(format!("value is out of range, value must between -{bound} and {bound}")));
        }
        let mut positions: Vec<usize> = (0..count.unsigned_abs()).map(|_| context.rng.gen_range(0..size)).collect();
        positions.sort_unstable();
        let mut members = members_at(context.set(&args[1])?.expect("seen above"), &positions);
        // Positions were sorted to read the set in one pass; restore a random order.
        members.shuffle(context.rng);
        members
    };
    Ok(Frame::Array(members.into_iter().map(Frame::Bulk).collect()))
}

/// `SSCAN key cursor [MATCH pattern] [COUNT count]` — see
/// [`scan_step`](super::hashes::scan_step) for how the cursor works.
fn sscan(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let cursor = scan_cursor(&args[2])?;
    let Some(set) = context.set(&args[1])? else {
        return Ok(scan_reply(0, Vec::new()));
    };
    let options = scan_options(args, false)?;
    let (next, batch) = scan_step(set.iter().map(|member| (&member[..], ())), cursor, options.count);
    let members = batch.into_iter().filter(|(member, ())| options.keeps(member)).map(|(member, ())| bulk(member));
    Ok(scan_reply(next, members.collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::harness::{b, sorted, text, Harness};
    use crate::store::effect::Ttl;

    impl Harness {
        /// The members of the set under `key`, sorted (empty when absent).
        fn members(&self, key: &str) -> Vec<String> {
            match self.keyspace.get(key.as_bytes(), self.now_ms).map(|entry| &entry.value) {
                None => Vec::new(),
                Some(crate::store::Value::Set(set)) => {
                    let mut members: Vec<String> =
                        set.iter().map(|member| String::from_utf8(member.to_vec()).unwrap()).collect();
                    members.sort();
                    members
                }
                Some(other) => panic!("not a set: {other:?}"),
            }
        }
    }

    fn seed_members(h: &mut Harness, key: &str, count: usize) {
        let members = (0..count).map(|index| b(&format!("m{index}"))).collect();
        h.seed(Effect::SetAdd { key: b(key), members });
    }

    #[test]
    fn sadd_and_srem_count_distinct_changes() {
        let mut h = Harness::new();
        assert_eq!(h.ok("sadd s a b a c"), Frame::Integer(3));
        assert_eq!(h.ok("sadd s a d"), Frame::Integer(1));
        let effects_before = h.effects.len();
        assert_eq!(h.ok("sadd s a b"), Frame::Integer(0));
        assert_eq!(h.ok("srem s x y"), Frame::Integer(0));
        assert_eq!(h.ok("srem missing x"), Frame::Integer(0));
        assert_eq!(h.effects.len(), effects_before, "no change, nothing logged");
        assert_eq!(h.ok("srem s a a x"), Frame::Integer(1));
        assert_eq!(h.members("s"), ["b", "c", "d"]);
        assert_eq!(h.ok("scard s"), Frame::Integer(3));
        assert_eq!(h.ok("scard missing"), Frame::Integer(0));
        assert_eq!(h.ok("srem s b c d"), Frame::Integer(3));
        assert!(h.keyspace.is_empty(), "an emptied set is deleted");
        h.assert_replay_matches();
    }

    #[test]
    fn membership_readers() {
        let mut h = Harness::new();
        h.ok("sadd s a b");
        assert_eq!(sorted(&h.ok("smembers s")), ["a", "b"]);
        assert!(matches!(h.ok("smembers s"), Frame::Set(_)), "SMEMBERS is a RESP3 set");
        assert_eq!(h.ok("smembers missing"), Frame::Set(Vec::new()));
        assert_eq!(h.ok("sismember s a"), Frame::Integer(1));
        assert_eq!(h.ok("sismember s z"), Frame::Integer(0));
        assert_eq!(h.ok("sismember missing a"), Frame::Integer(0));
        assert_eq!(
            h.ok("smismember s a z b"),
            Frame::Array(vec![Frame::Integer(1), Frame::Integer(0), Frame::Integer(1)])
        );
        assert_eq!(h.ok("smismember missing a"), Frame::Array(vec![Frame::Integer(0)]));
    }

    #[test]
    fn every_command_refuses_another_type() {
        let mut h = Harness::new();
        h.seed(Effect::Set { key: b("k"), value: b("x"), ttl: Ttl::Clear });
        for line in [
            "sadd k a",
            "srem k a",
            "smembers k",
            "sismember k a",
            "smismember k a",
            "scard k",
            "spop k",
            "spop k 2",
            "srandmember k",
            "srandmember k -2",
            "sscan k 0",
        ] {
            assert_eq!(h.run(line), Err(CommandError::WrongType), "{line}");
        }
        assert_eq!(h.effects.len(), 1);
    }

    #[test]
    fn spop_removes_what_it_replies_and_replays_the_same() {
        let mut h = Harness::new();
        seed_members(&mut h, "s", 20);
        let popped = text(&h.ok("spop s"));
        assert!(!h.members("s").contains(&popped));
        let Frame::Set(three) = h.ok("spop s 3") else { panic!("SPOP with a count replies a set") };
        let three: Vec<String> = three.iter().map(text).collect();
        assert_eq!(three.iter().collect::<HashSet<_>>().len(), 3, "distinct members");
        assert!(three.iter().all(|member| !h.members("s").contains(member) && *member != popped));
        assert_eq!(h.members("s").len(), 16);
        h.assert_replay_matches();
        assert_eq!(sorted(&h.ok("spop s 100")).len(), 16);
        assert!(h.keyspace.is_empty(), "popping every member deletes the key");
        h.assert_replay_matches();
    }

    #[test]
    fn spop_edge_cases() {
        let mut h = Harness::new();
        assert_eq!(h.ok("spop missing"), Frame::Null);
        assert_eq!(h.ok("spop missing 3"), Frame::Set(Vec::new()));
        h.ok("sadd s only");
        assert_eq!(h.ok("spop s 0"), Frame::Set(Vec::new()));
        let positive = "ERR value is out of range, must be positive";
        assert_eq!(h.run("spop s -1").unwrap_err().to_string(), positive);
        assert_eq!(h.run("spop s x").unwrap_err().to_string(), positive);
        assert_eq!(h.run("spop s 1 2"), Err(CommandError::Syntax));
        assert_eq!(h.ok("spop s"), Frame::Bulk(b("only")));
        assert!(h.keyspace.is_empty());
        h.assert_replay_matches();
    }

    #[test]
    fn srandmember_reads_without_changing() {
        let mut h = Harness::new();
        seed_members(&mut h, "s", 10);
        let all = h.members("s");
        assert!(all.contains(&text(&h.ok("srandmember s"))));
        let Frame::Array(five) = h.ok("srandmember s 5") else { panic!("SRANDMEMBER with a count replies an array") };
        let five: HashSet<String> = five.iter().map(text).collect();
        assert_eq!(five.len(), 5);
        assert!(five.iter().all(|member| all.contains(member)));
        assert_eq!(sorted(&h.ok("srandmember s 50")), all);
        let repeats = sorted(&h.ok("srandmember s -50"));
        assert_eq!(repeats.len(), 50);
        assert!(repeats.iter().all(|member| all.contains(member)));
        assert_eq!(h.ok("srandmember s 0"), Frame::Array(Vec::new()));
        assert_eq!(h.ok("srandmember missing"), Frame::Null);
        assert_eq!(h.ok("srandmember missing -3"), Frame::Array(Vec::new()));
        assert_eq!(h.run("srandmember s x"), Err(CommandError::NotInteger));
        assert_eq!(
            h.run("srandmember s -9223372036854775808").unwrap_err().to_string(),
            "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807"
        );
        assert!(h.run("srandmember s -9223372036854775807").is_err(), "bounded reply size");
        assert_eq!(h.run("srandmember s 1 2"), Err(CommandError::Syntax));
        assert_eq!(h.effects.len(), 1, "only the seed");
    }

    #[test]
    fn sscan_walks_small_and_large_sets() {
        let mut h = Harness::new();
        h.ok("sadd small a b c");
        let Frame::Array(parts) = h.ok("sscan small 0 MATCH [ab]") else { panic!("SSCAN replies an array") };
        assert_eq!(parts[0], Frame::Bulk(b("0")));
        assert_eq!(sorted(&parts[1]), ["a", "b"]);
        assert_eq!(
            h.run("sscan small 0 NOVALUES").unwrap_err().to_string(),
            "ERR NOVALUES option can only be used in HSCAN"
        );
        assert_eq!(h.ok("sscan missing 0"), scan_reply(0, Vec::new()));
        seed_members(&mut h, "large", 2000);
        let mut cursor = "0".to_string();
        let mut seen = Vec::new();
        loop {
            let Frame::Array(parts) = h.ok(&format!("sscan large {cursor} COUNT 5")) else { panic!() };
            let Frame::Array(items) = &parts[1] else { panic!() };
            seen.extend(items.iter().map(text));
            cursor = text(&parts[0]);
            if cursor == "0" {
                break;
            }
        }
        seen.sort();
        assert_eq!(seen, h.members("large"));
    }

    #[test]
    fn write_purges_an_expired_set_first() {
        let mut h = Harness::new();
        h.ok("sadd s a b");
        h.seed(Effect::ExpireAt { key: b("s"), at_ms: h.now_ms });
        assert_eq!(h.ok("scard s"), Frame::Integer(0));
        assert_eq!(h.ok("spop s"), Frame::Null);
        assert_eq!(h.ok("sadd s c"), Frame::Integer(1));
        assert_eq!(h.members("s"), ["c"]);
        h.assert_replay_matches();
    }
}

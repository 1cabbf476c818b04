//! Generic key commands: DEL, EXISTS, TYPE, the EXPIRE family, TTL, SCAN,
//! RENAME, FLUSHALL and friends.
//!
//! Every write here turns into `Effect::Delete`, `ExpireAt`, `Persist`,
//! `Rename` or `FlushAll`. An expiry is resolved once, against the command's
//! `now_ms`, into an absolute deadline, so replay never reads a clock; a
//! deadline that is already past deletes the key, as Redis does.

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tandem_resp::Frame;

use super::args::{self, is};
use super::error::printable;
use super::table::{spec, CommandSpec, Flags};
use super::{CommandError, DataContext, Reply};
use crate::limits;
use crate::store::glob;
use crate::store::{Effect, Entry};

const READ_FAST: Flags = Flags::READONLY.with(Flags::FAST);
const WRITE_FAST: Flags = Flags::WRITE.with(Flags::FAST);
// Redis 7 marks the flushes `write` + `@dangerous`; tandem's `ADMIN` is that class.
const FLUSH: Flags = Flags::WRITE.with(Flags::ADMIN);
const NO_KEYS: (i32, i32, i32) = (0, 0, 0);
const ONE_KEY: (i32, i32, i32) = (1, 1, 1);
const EVERY_KEY: (i32, i32, i32) = (1, -1, 1);
// Both names: the dispatcher purges an expired destination before the rename.
const SOURCE_AND_DESTINATION: (i32, i32, i32) = (1, 2, 1);
/// Characters of a client's bad option quoted back in an error reply.
const QUOTED_OPTION_CHARS_MAX: usize = 128;

/// The keys family's commands.
pub const SPECS: &[CommandSpec] = &[
    spec("del", -2, Flags::WRITE, EVERY_KEY, del),
    spec("unlink", -2, WRITE_FAST, EVERY_KEY, del),
    spec("exists", -2, READ_FAST, EVERY_KEY, exists),
    spec("touch", -2, READ_FAST, EVERY_KEY, exists),
    spec("type", 2, READ_FAST, ONE_KEY, type_of),
    spec("expire", -3, WRITE_FAST, ONE_KEY, expire),
    spec("pexpire", -3, WRITE_FAST, ONE_KEY, pexpire),
    spec("expireat", -3, WRITE_FAST, ONE_KEY, expireat),
    spec("pexpireat", -3, WRITE_FAST, ONE_KEY, pexpireat),
    spec("ttl", 2, READ_FAST, ONE_KEY, ttl),
    spec("pttl", 2, READ_FAST, ONE_KEY, pttl),
    spec("expiretime", 2, READ_FAST, ONE_KEY, expiretime),
    spec("pexpiretime", 2, READ_FAST, ONE_KEY, pexpiretime),
    spec("persist", 2, WRITE_FAST, ONE_KEY, persist),
    spec("keys", 2, Flags::READONLY, NO_KEYS, keys),
    spec("scan", -2, Flags::READONLY, NO_KEYS, scan),
    spec("randomkey", 1, Flags::READONLY, NO_KEYS, randomkey),
    spec("dbsize", 1, READ_FAST, NO_KEYS, dbsize),
    spec("rename", 3, Flags::WRITE, SOURCE_AND_DESTINATION, rename),
    spec("renamenx", 3, WRITE_FAST, SOURCE_AND_DESTINATION, renamenx),
    spec("flushall", -1, FLUSH, NO_KEYS, flushall),
    spec("flushdb", -1, FLUSH, NO_KEYS, flushall),
];

/// `DEL key [key ...]` and `UNLINK key [key ...]` — a repeated key counts once.
fn del(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let mut deleted = 0;
    for key in &args[1..] {
        if context.entry(key).is_some() {
            context.emit(Effect::Delete { key: key.clone() });
            deleted += 1;
        }
    }
    Ok(Frame::Integer(deleted))
}

/// `EXISTS key [key ...]` and `TOUCH key [key ...]` — a repeated key counts
/// each time. TOUCH has nothing else to do: tandem keeps no access times.
fn exists(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let found = args[1..].iter().filter(|key| context.entry(key).is_some()).count();
    Ok(Frame::Integer(found as i64))
}

/// `TYPE key`
fn type_of(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let name = context.entry(&args[1]).map_or("none", |entry| entry.value.type_name());
    Ok(Frame::simple(name))
}

/// The Redis 7 conditions of the EXPIRE family (`NX`, `XX`, `GT`, `LT`).
#[derive(Default)]
struct ExpireConditions {
    /// `NX`: only a key without an expiry.
    only_without_expiry: bool,
    /// `XX`: only a key with an expiry.
    only_with_expiry: bool,
    /// `GT`: only a later deadline (no expiry counts as infinitely late).
    only_later: bool,
    /// `LT`: only an earlier deadline (no expiry counts as infinitely late).
    only_earlier: bool,
}

impl ExpireConditions {
    /// Parses the options after `key amount`, with Redis's texts and order of checks.
    fn parse(options: &[Bytes]) -> Result<ExpireConditions, CommandError> {
        let mut conditions = ExpireConditions::default();
        for option in options {
            let flag = if is(option, "nx") {
                &mut conditions.only_without_expiry
            } else if is(option, "xx") {
                &mut conditions.only_with_expiry
            } else if is(option, "gt") {
                &mut conditions.only_later
            } else if is(option, "lt") {
                &mut conditions.only_earlier
            } else {
                return Err(CommandError::err(format!(
                    "Unsupported option {}",
                    printable(option, QUOTED_OPTION_CHARS_MAX)
                )));
            };
            *flag = true;
        }
        let other_than_nx = conditions.only_with_expiry || conditions.only_later || conditions.only_earlier;
        if conditions.only_without_expiry && other_than_nx {
            return Err(CommandError::err("NX and XX, GT or LT options at the same time are not compatible"));
        }
        if conditions.only_later && conditions.only_earlier {
            return Err(CommandError::err("GT and LT options at the same time are not compatible"));
        }
        Ok(conditions)
    }

    /// Whether deadline `new_ms` may replace `current_ms` (`None`: no expiry).
    fn allow(&self, current_ms: Option<i64>, new_ms: i64) -> bool {
        let refused = match current_ms {
            None => self.only_with_expiry || self.only_later,
            Some(current_ms) => {
                self.only_without_expiry
                    || (self.only_later && new_ms <= current_ms)
                    || (self.only_earlier && new_ms >= current_ms)
            }
        };
        !refused
    }
}

/// The absolute deadline an EXPIRE-family `amount` means, refused on
/// overflow exactly where Redis refuses it. It may be past, even negative.
fn expire_deadline(command: &str, amount: i64, unit_ms: i64, base_ms: i64) -> Result<i64, CommandError> {
    let invalid = || CommandError::err(format!("invalid expire time in '{command}' command"));
    let amount_ms = amount.checked_mul(unit_ms).ok_or_else(invalid)?;
    if amount_ms > i64::MAX - base_ms {
        return Err(invalid());
    }
    Ok(amount_ms + base_ms)
}

/// The EXPIRE family: `relative` counts from now, else from the Unix epoch.
fn expire_generic(context: &mut DataContext, args: &[Bytes], command: &str, unit_ms: i64, relative: bool) -> Reply {
    let conditions = ExpireConditions::parse(&args[3..])?;
    let amount = args::integer(&args[2])?;
    let now_ms = context.now_ms as i64;
    let deadline_ms = expire_deadline(command, amount, unit_ms, if relative { now_ms } else { 0 })?;
    let key = &args[1];
    let Some(entry) = context.entry(key) else {
        return Ok(Frame::Integer(0));
    };
    let current_ms = (entry.expire_at_ms != 0).then_some(entry.expire_at_ms as i64);
    if !conditions.allow(current_ms, deadline_ms) {
        return Ok(Frame::Integer(0));
    }
    if deadline_ms <= now_ms {
        context.emit(Effect::Delete { key: key.clone() });
    } else {
        context.emit(Effect::ExpireAt { key: key.clone(), at_ms: deadline_ms as u64 });
    }
    Ok(Frame::Integer(1))
}

/// `EXPIRE key seconds [NX|XX|GT|LT]`
fn expire(context: &mut DataContext, args: &[Bytes]) -> Reply {
    expire_generic(context, args, "expire", 1000, true)
}

/// `PEXPIRE key milliseconds [NX|XX|GT|LT]`
fn pexpire(context: &mut DataContext, args: &[Bytes]) -> Reply {
    expire_generic(context, args, "pexpire", 1, true)
}

/// `EXPIREAT key unix-time-seconds [NX|XX|GT|LT]`
fn expireat(context: &mut DataContext, args: &[Bytes]) -> Reply {
    expire_generic(context, args, "expireat", 1000, false)
}

/// `PEXPIREAT key unix-time-milliseconds [NX|XX|GT|LT]`
fn pexpireat(context: &mut DataContext, args: &[Bytes]) -> Reply {
    expire_generic(context, args, "pexpireat", 1, false)
}

/// TTL and EXPIRETIME in `unit_ms` units, rounded to nearest as Redis does
/// (`(ms + 500) / 1000` for seconds); -2 for a missing key, -1 without expiry.
fn expiry_report(context: &DataContext, key: &[u8], unit_ms: u64, absolute: bool) -> Reply {
    let Some(entry) = context.entry(key) else {
        return Ok(Frame::Integer(-2));
    };
    if entry.expire_at_ms == 0 {
        return Ok(Frame::Integer(-1));
    }
    let ms = if absolute { entry.expire_at_ms } else { entry.expire_at_ms.saturating_sub(context.now_ms) };
    Ok(Frame::Integer(((ms + unit_ms / 2) / unit_ms) as i64))
}

/// `TTL key`
fn ttl(context: &mut DataContext, args: &[Bytes]) -> Reply {
    expiry_report(context, &args[1], 1000, false)
}

/// `PTTL key`
fn pttl(context: &mut DataContext, args: &[Bytes]) -> Reply {
    expiry_report(context, &args[1], 1, false)
}

/// `EXPIRETIME key`
fn expiretime(context: &mut DataContext, args: &[Bytes]) -> Reply {
    expiry_report(context, &args[1], 1000, true)
}

/// `PEXPIRETIME key`
fn pexpiretime(context: &mut DataContext, args: &[Bytes]) -> Reply {
    expiry_report(context, &args[1], 1, true)
}

/// `PERSIST key`
fn persist(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let key = &args[1];
    let has_expiry = context.entry(key).is_some_and(|entry| entry.expire_at_ms != 0);
    if !has_expiry {
        return Ok(Frame::Integer(0));
    }
    context.emit(Effect::Persist { key: key.clone() });
    Ok(Frame::Integer(1))
}

fn key_array(keys: Vec<Bytes>) -> Frame {
    Frame::Array(keys.into_iter().map(Frame::Bulk).collect())
}

/// `KEYS pattern`
fn keys(context: &mut DataContext, args: &[Bytes]) -> Reply {
    Ok(key_array(context.keyspace().keys_matching(&args[1], context.now_ms)))
}

/// The options of one `SCAN` call.
struct ScanOptions {
    /// `MATCH`; `None` also for `*`, which matches everything.
    pattern: Option<Bytes>,
    /// `TYPE`, compared case-insensitively; an unknown name matches nothing.
    type_name: Option<Bytes>,
    /// `COUNT`: keys to examine, capped at [`limits::SCAN_COUNT_MAX`].
    count: usize,
}

impl ScanOptions {
    /// Parses the options after the cursor, like Redis 7 (the last one wins).
    fn parse(options: &[Bytes]) -> Result<ScanOptions, CommandError> {
        let mut parsed = ScanOptions { pattern: None, type_name: None, count: 10 };
        for pair in options.chunks(2) {
            let [option, value] = pair else {
                return Err(CommandError::Syntax);
            };
            if is(option, "count") {
                let count = args::integer(value)?;
                if count < 1 {
                    return Err(CommandError::Syntax);
                }
                parsed.count = (count as u64).min(limits::SCAN_COUNT_MAX as u64) as usize;
            } else if is(option, "match") {
                parsed.pattern = (&value[..] != b"*").then(|| value.clone());
            } else if is(option, "type") {
                parsed.type_name = Some(value.clone());
            } else {
                return Err(CommandError::Syntax);
            }
        }
        Ok(parsed)
    }

    /// Whether SCAN returns this key at `now_ms`.
    fn keeps(&self, key: &[u8], entry: &Entry, now_ms: u64) -> bool {
        let pattern_ok = match &self.pattern {
            Some(pattern) => glob::matches(pattern, key),
            None => true,
        };
        let type_ok = match &self.type_name {
            Some(name) => name.eq_ignore_ascii_case(entry.value.type_name().as_bytes()),
            None => true,
        };
        !entry.is_expired(now_ms) && pattern_ok && type_ok
    }
}

/// A SCAN cursor: an unsigned 64-bit integer, as Redis's `string2ull` reads it.
fn scan_cursor(arg: &[u8]) -> Result<u64, CommandError> {
    let cursor = std::str::from_utf8(arg).ok().and_then(|text| text.parse().ok());
    cursor.ok_or_else(|| CommandError::err("invalid cursor"))
}

/// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`
fn scan(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let cursor = scan_cursor(&args[1])?;
    let options = ScanOptions::parse(&args[2..])?;
    let now_ms = context.now_ms;
    let (next, found) = context.keyspace().scan(cursor, options.count, |key, entry| options.keeps(key, entry, now_ms));
    Ok(Frame::Array(vec![Frame::Bulk(Bytes::from(next.to_string())), key_array(found)]))
}

/// `RANDOMKEY`
fn randomkey(context: &mut DataContext, _args: &[Bytes]) -> Reply {
    // `keyspace()` borrows the whole context, so `rng` cannot be lent beside
    // it: draw a seed from it instead (still one deterministic stream).
    let mut rng = SmallRng::seed_from_u64(context.rng.gen());
    let key = context.keyspace().random_key(context.now_ms, &mut rng);
    Ok(key.map_or(Frame::Null, Frame::Bulk))
}

/// `DBSIZE` — counts keys whose deadline passed but that were not deleted
/// yet, as Redis does.
fn dbsize(context: &mut DataContext, _args: &[Bytes]) -> Reply {
    Ok(Frame::Integer(context.keyspace().len() as i64))
}

/// RENAME and RENAMENX: the value moves with its expiry.
fn rename_generic(context: &mut DataContext, args: &[Bytes], only_if_new: bool) -> Reply {
    let (from, to) = (&args[1], &args[2]);
    if context.entry(from).is_none() {
        return Err(CommandError::NoSuchKey);
    }
    let refused = if only_if_new { Frame::Integer(0) } else { Frame::ok() };
    if from == to {
        return Ok(refused);
    }
    if only_if_new && context.entry(to).is_some() {
        return Ok(refused);
    }
    context.emit(Effect::Rename { from: from.clone(), to: to.clone() });
    Ok(if only_if_new { Frame::Integer(1) } else { Frame::ok() })
}

/// `RENAME key newkey`
fn rename(context: &mut DataContext, args: &[Bytes]) -> Reply {
    rename_generic(context, args, false)
}

/// `RENAMENX key newkey`
fn renamenx(context: &mut DataContext, args: &[Bytes]) -> Reply {
    rename_generic(context, args, true)
}

/// `FLUSHALL [ASYNC|SYNC]` and `FLUSHDB [ASYNC|SYNC]` — one database, so
/// both flush everything. Dropping the buckets is cheap either way, so
/// `ASYNC` and `SYNC` behave alike.
fn flushall(context: &mut DataContext, args: &[Bytes]) -> Reply {
    match &args[1..] {
        [] => {}
        [mode] if is(mode, "async") || is(mode, "sync") => {}
        _ => return Err(CommandError::Syntax),
    }
    context.emit(Effect::FlushAll);
    Ok(Frame::ok())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::cmd::harness::Harness;
    use crate::store::effect::Ttl;
    use crate::store::Value;

    /// The instant the tests run at, in Unix milliseconds.
    const NOW_MS: u64 = 1_700_000_000_000;

    fn b(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    /// One node's state and the effects it emitted, to replay (the shared
    /// harness at a fixed instant, with word-list helpers).
    struct Node(Harness);

    impl std::ops::Deref for Node {
        type Target = Harness;
        fn deref(&self) -> &Harness {
            &self.0
        }
    }

    impl std::ops::DerefMut for Node {
        fn deref_mut(&mut self) -> &mut Harness {
            &mut self.0
        }
    }

    impl Node {
        fn new() -> Node {
            let mut harness = Harness::new();
            harness.now_ms = NOW_MS;
            Node(harness)
        }

        /// Stores a string; `expire_at_ms` 0 means no expiry.
        fn set(&mut self, key: &str, value: &str, expire_at_ms: u64) {
            let ttl = if expire_at_ms == 0 { Ttl::Clear } else { Ttl::At(expire_at_ms) };
            self.seed(Effect::Set { key: b(key), value: b(value), ttl });
        }

        /// Runs a command given as words.
        fn run(&mut self, words: &[&str]) -> Reply {
            let args: Vec<Bytes> = words.iter().map(|word| b(word)).collect();
            self.0.run_args(&args)
        }

        fn reply(&mut self, words: &[&str]) -> Frame {
            self.run(words).unwrap_or_else(|error| panic!("{words:?}: {error}"))
        }

        fn integer(&mut self, words: &[&str]) -> i64 {
            match self.reply(words) {
                Frame::Integer(value) => value,
                other => panic!("{words:?}: not an integer: {other:?}"),
            }
        }

        fn error(&mut self, words: &[&str]) -> String {
            self.run(words).expect_err("an error reply").to_string()
        }

        /// The stored deadline of `key` (0: none), expired keys included.
        fn deadline(&self, key: &str) -> Option<u64> {
            self.keyspace.get_including_expired(key.as_bytes()).map(|entry| entry.expire_at_ms)
        }
    }

    fn bulk_strings(frame: &Frame) -> Vec<Bytes> {
        match frame {
            Frame::Array(items) => items
                .iter()
                .map(|item| match item {
                    Frame::Bulk(bytes) => bytes.clone(),
                    other => panic!("not a bulk string: {other:?}"),
                })
                .collect(),
            other => panic!("not an array: {other:?}"),
        }
    }

    /// Runs a whole SCAN iteration; panics if a key comes back twice.
    fn scan_all(node: &mut Node, options: &[&str]) -> HashSet<Bytes> {
        let mut seen = HashSet::new();
        let mut cursor = "0".to_string();
        for _ in 0..=crate::store::keyspace::BUCKET_COUNT {
            let words: Vec<&str> = ["scan", cursor.as_str()].into_iter().chain(options.iter().copied()).collect();
            let Frame::Array(parts) = node.reply(&words) else { panic!("SCAN replies with an array") };
            for key in bulk_strings(&parts[1]) {
                assert!(seen.insert(key.clone()), "SCAN returned {key:?} twice");
            }
            let Frame::Bulk(next) = &parts[0] else { panic!("the cursor is a bulk string") };
            cursor = String::from_utf8(next.to_vec()).unwrap();
            if cursor == "0" {
                return seen;
            }
        }
        panic!("SCAN never finished");
    }

    #[test]
    fn del_and_exists_count_like_redis() {
        let mut node = Node::new();
        node.set("a", "1", 0);
        node.set("b", "2", 0);
        node.seed(Effect::HashSet { key: b("h"), pairs: vec![(b("f"), b("v"))] });
        assert_eq!(node.integer(&["exists", "a", "a", "b", "missing"]), 3);
        assert_eq!(node.integer(&["touch", "a", "missing"]), 1);
        assert_eq!(node.integer(&["del", "a", "a", "missing"]), 1);
        assert_eq!(node.integer(&["exists", "a"]), 0);
        assert_eq!(node.integer(&["UNLINK", "b", "h"]), 2);
        assert_eq!(node.integer(&["dbsize"]), 0);
        assert_eq!(node.error(&["del"]), "ERR wrong number of arguments for 'del' command");
        node.assert_replay_matches();
    }

    #[test]
    fn type_names_every_value_and_none() {
        let mut node = Node::new();
        node.set("s", "v", 0);
        node.seed(Effect::HashSet { key: b("h"), pairs: vec![(b("f"), b("v"))] });
        node.seed(Effect::SetAdd { key: b("set"), members: vec![b("m")] });
        node.seed(Effect::ListPush { key: b("l"), left: true, values: vec![b("x")] });
        for (key, name) in [("s", "string"), ("h", "hash"), ("set", "set"), ("l", "list"), ("nothing", "none")] {
            assert_eq!(node.reply(&["type", key]), Frame::simple(name), "{key}");
        }
    }

    #[test]
    fn expire_conditions_follow_the_redis_7_matrix() {
        let current_ms = NOW_MS + 100_000;
        // (deadline before, options, new TTL in seconds, reply)
        let cases: &[(u64, &[&str], i64, i64)] = &[
            (0, &[], 10, 1),
            (0, &["NX"], 10, 1),
            (0, &["XX"], 10, 0),
            (0, &["GT"], 10, 0),
            (0, &["LT"], 10, 1),
            (current_ms, &[], 10, 1),
            (current_ms, &["nx"], 10, 0),
            (current_ms, &["xx"], 10, 1),
            (current_ms, &["gt"], 200, 1),
            (current_ms, &["gt"], 100, 0),
            (current_ms, &["gt"], 50, 0),
            (current_ms, &["lt"], 50, 1),
            (current_ms, &["lt"], 100, 0),
            (current_ms, &["lt"], 200, 0),
            (current_ms, &["XX", "GT"], 200, 1),
            (current_ms, &["XX", "LT"], 200, 0),
            (current_ms, &["GT", "gt"], 200, 1),
        ];
        for &(before_ms, options, seconds, expected) in cases {
            let mut node = Node::new();
            node.set("k", "v", before_ms);
            let amount = seconds.to_string();
            let words: Vec<&str> =
                ["expire", "k", amount.as_str()].into_iter().chain(options.iter().copied()).collect();
            assert_eq!(node.integer(&words), expected, "{words:?} with deadline {before_ms}");
            let after_ms = if expected == 1 { NOW_MS + seconds as u64 * 1000 } else { before_ms };
            assert_eq!(node.deadline("k"), Some(after_ms), "{words:?}");
            node.assert_replay_matches();
        }
    }

    #[test]
    fn expire_refuses_bad_options_before_the_amount() {
        let mut node = Node::new();
        node.set("k", "v", 0);
        let not_with_nx = "ERR NX and XX, GT or LT options at the same time are not compatible";
        let gt_and_lt = "ERR GT and LT options at the same time are not compatible";
        let cases: [(&[&str], &str); 6] = [
            (&["NX", "XX"], not_with_nx),
            (&["nx", "gt"], not_with_nx),
            (&["NX", "LT"], not_with_nx),
            (&["NX", "GT", "LT"], not_with_nx),
            (&["GT", "LT"], gt_and_lt),
            (&["XX", "maybe"], "ERR Unsupported option maybe"),
        ];
        for (options, text) in cases {
            let words: Vec<&str> = ["pexpire", "k", "notanumber"].into_iter().chain(options.iter().copied()).collect();
            assert_eq!(node.error(&words), text, "{words:?}");
        }
        assert_eq!(node.error(&["expire", "k", "ten"]), "ERR value is not an integer or out of range");
        assert_eq!(node.error(&["expire", "k"]), "ERR wrong number of arguments for 'expire' command");
        assert!(node.effects.len() == 1 && node.deadline("k") == Some(0));
    }

    #[test]
    fn expire_overflow_is_an_invalid_expire_time() {
        let mut node = Node::new();
        node.set("k", "v", 0);
        for (words, command) in [
            (["expire", "k", "9223372036854776"], "expire"),
            (["expire", "k", "-9223372036854776"], "expire"),
            (["expire", "k", "9223372036854775"], "expire"),
            (["pexpire", "k", "9223372036854775807"], "pexpire"),
            (["expireat", "k", "9223372036854776"], "expireat"),
            (["expire", "missing", "9223372036854776"], "expire"),
        ] {
            assert_eq!(node.error(&words), format!("ERR invalid expire time in '{command}' command"), "{words:?}");
        }
        assert_eq!(
            node.error(&["pexpireat", "k", "9223372036854775808"]),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(node.integer(&["expireat", "k", "9223372036854775"]), 1);
        assert_eq!(node.deadline("k"), Some(9_223_372_036_854_775_000));
        assert_eq!(node.integer(&["pexpireat", "k", "9223372036854775807"]), 1);
        assert_eq!(node.deadline("k"), Some(i64::MAX as u64));
        node.assert_replay_matches();
    }

    #[test]
    fn a_deadline_in_the_past_deletes_the_key() {
        let mut node = Node::new();
        let now = NOW_MS.to_string();
        let commands: [&[&str]; 5] = [
            &["expire", "k", "-1"],
            &["pexpire", "k", "0"],
            &["expireat", "k", "0"],
            &["pexpireat", "k", now.as_str()],
            &["expire", "k", "-5", "LT"],
        ];
        for words in commands {
            node.set("k", "v", 0);
            assert_eq!(node.integer(words), 1, "{words:?}");
            assert_eq!(node.deadline("k"), None, "{words:?}");
            assert_eq!(node.effects.last(), Some(&Effect::Delete { key: b("k") }));
        }
        let emitted = node.effects.len();
        assert_eq!(node.integer(&["expire", "k", "-1"]), 0);
        assert_eq!(node.effects.len(), emitted, "a missing key emits nothing");
        node.assert_replay_matches();
    }

    #[test]
    fn ttl_rounds_to_the_nearest_second_like_redis() {
        let mut node = Node::new();
        for (remaining_ms, seconds) in [(1, 0), (499, 0), (500, 1), (1499, 1), (1500, 2), (100_000, 100)] {
            node.set("k", "v", NOW_MS + remaining_ms);
            assert_eq!(node.integer(&["ttl", "k"]), seconds, "{remaining_ms} ms");
            assert_eq!(node.integer(&["pttl", "k"]), remaining_ms as i64);
            assert_eq!(node.integer(&["pexpiretime", "k"]), (NOW_MS + remaining_ms) as i64);
            assert_eq!(node.integer(&["expiretime", "k"]), ((NOW_MS + remaining_ms + 500) / 1000) as i64);
        }
        assert_eq!(node.integer(&["pexpire", "k", "1499"]), 1);
        assert_eq!(node.integer(&["ttl", "k"]), 1);
        node.set("forever", "v", 0);
        for command in ["ttl", "pttl", "expiretime", "pexpiretime"] {
            assert_eq!(node.integer(&[command, "forever"]), -1, "{command}");
            assert_eq!(node.integer(&[command, "missing"]), -2, "{command}");
        }
    }

    #[test]
    fn persist_removes_only_an_existing_expiry() {
        let mut node = Node::new();
        node.set("k", "v", NOW_MS + 5000);
        node.set("forever", "v", 0);
        assert_eq!(node.integer(&["persist", "k"]), 1);
        assert_eq!(node.integer(&["ttl", "k"]), -1);
        assert_eq!(node.integer(&["persist", "k"]), 0);
        assert_eq!(node.integer(&["persist", "forever"]), 0);
        assert_eq!(node.integer(&["persist", "missing"]), 0);
        node.assert_replay_matches();
    }

    #[test]
    fn expired_keys_are_invisible() {
        let mut node = Node::new();
        node.set("live", "v", 0);
        node.set("gone", "v", NOW_MS + 10);
        node.now_ms = NOW_MS + 10;
        assert_eq!(node.integer(&["exists", "gone", "live"]), 1);
        assert_eq!(node.reply(&["type", "gone"]), Frame::simple("none"));
        assert_eq!(node.integer(&["ttl", "gone"]), -2);
        assert_eq!(bulk_strings(&node.reply(&["keys", "*"])), [b("live")]);
        assert_eq!(scan_all(&mut node, &[]), HashSet::from([b("live")]));
        for _ in 0..20 {
            assert_eq!(node.reply(&["randomkey"]), Frame::Bulk(b("live")));
        }
        // Like Redis, DBSIZE counts a key whose deadline passed until it is deleted.
        assert_eq!(node.integer(&["dbsize"]), 2);
        assert_eq!(node.integer(&["expire", "gone", "100"]), 0);
        assert_eq!(node.effects.last(), Some(&Effect::Delete { key: b("gone") }), "the write purged it");
        assert_eq!(node.integer(&["dbsize"]), 1);
        assert_eq!(node.integer(&["del", "live"]), 1);
        node.set("gone too", "v", NOW_MS);
        assert_eq!(node.reply(&["randomkey"]), Frame::Null);
        node.assert_replay_matches();
    }

    #[test]
    fn keys_filters_by_pattern() {
        let mut node = Node::new();
        for key in ["user:1", "user:2", "session:1"] {
            node.set(key, "v", 0);
        }
        let mut users = bulk_strings(&node.reply(&["keys", "user:*"]));
        users.sort();
        assert_eq!(users, [b("user:1"), b("user:2")]);
        assert_eq!(bulk_strings(&node.reply(&["keys", "*:1"])).len(), 2);
        assert!(bulk_strings(&node.reply(&["keys", "nothing*"])).is_empty());
    }

    #[test]
    fn scan_visits_ten_thousand_keys_exactly_once() {
        let mut node = Node::new();
        let mut strings = HashSet::new();
        let mut sets = HashSet::new();
        for index in 0..10_000 {
            let key = format!("key:{index}");
            if index % 4 == 0 {
                node.seed(Effect::SetAdd { key: b(&key), members: vec![b("m")] });
                sets.insert(b(&key));
            } else {
                node.set(&key, "v", 0);
                strings.insert(b(&key));
            }
        }
        for index in 0..100 {
            node.set(&format!("old:{index}"), "v", NOW_MS - 1);
        }
        let every: HashSet<Bytes> = strings.union(&sets).cloned().collect();
        assert_eq!(scan_all(&mut node, &["COUNT", "100"]), every);
        assert_eq!(scan_all(&mut node, &["match", "*"]), every);
        assert_eq!(scan_all(&mut node, &["TYPE", "SET", "count", "7"]), sets);
        assert_eq!(scan_all(&mut node, &["type", "string"]), strings);
        assert!(scan_all(&mut node, &["type", "zset"]).is_empty());
        let ones: HashSet<Bytes> = sets.iter().filter(|key| key.starts_with(b"key:1")).cloned().collect();
        assert_eq!(scan_all(&mut node, &["MATCH", "key:1*", "TYPE", "set", "COUNT", "1000"]), ones);
        let Frame::Array(parts) = node.reply(&["scan", "0", "count", "9223372036854775807"]) else { panic!() };
        assert_eq!(parts[0], Frame::Bulk(b("0")), "one call examines all 10,100 keys: the cap is higher");
        assert_eq!(bulk_strings(&parts[1]).len(), 10_000);
    }

    #[test]
    fn scan_refuses_bad_cursors_and_options() {
        let mut node = Node::new();
        node.set("k", "v", 0);
        for cursor in ["abc", "-1", "1.5", "", "18446744073709551616"] {
            assert_eq!(node.error(&["scan", cursor]), "ERR invalid cursor", "{cursor:?}");
        }
        let syntax = "ERR syntax error";
        let commands: [&[&str]; 5] = [
            &["scan", "0", "count", "0"],
            &["scan", "0", "count", "-3"],
            &["scan", "0", "match"],
            &["scan", "0", "color", "red"],
            &["scan", "0", "count", "5", "type"],
        ];
        for words in commands {
            assert_eq!(node.error(words), syntax, "{words:?}");
        }
        assert_eq!(node.error(&["scan", "0", "count", "many"]), "ERR value is not an integer or out of range");
        let past_the_end = node.reply(&["scan", "18446744073709551615"]);
        assert_eq!(past_the_end, Frame::Array(vec![Frame::Bulk(b("0")), Frame::Array(vec![])]));
    }

    #[test]
    fn rename_moves_the_value_and_its_expiry() {
        let mut node = Node::new();
        node.set("a", "1", NOW_MS + 5000);
        node.set("b", "2", 0);
        assert_eq!(node.reply(&["rename", "a", "b"]), Frame::ok());
        assert_eq!(node.deadline("a"), None);
        let entry = node.keyspace.get(b"b", NOW_MS).expect("renamed");
        assert_eq!((&entry.value, entry.expire_at_ms), (&Value::String(Box::from(&b"1"[..])), NOW_MS + 5000));
        assert_eq!(node.integer(&["pttl", "b"]), 5000);

        let emitted = node.effects.len();
        assert_eq!(node.reply(&["rename", "b", "b"]), Frame::ok());
        assert_eq!(node.integer(&["renamenx", "b", "b"]), 0);
        assert_eq!(node.effects.len(), emitted, "renaming to itself changes nothing");

        assert_eq!(node.error(&["rename", "missing", "x"]), "ERR no such key");
        assert_eq!(node.error(&["renamenx", "missing", "x"]), "ERR no such key");
        assert_eq!(node.error(&["rename", "missing", "missing"]), "ERR no such key");
        node.set("c", "3", 0);
        assert_eq!(node.integer(&["renamenx", "b", "c"]), 0);
        assert_eq!(node.integer(&["renamenx", "b", "d"]), 1);
        assert_eq!(node.deadline("d"), Some(NOW_MS + 5000));
        node.assert_replay_matches();
    }

    #[test]
    fn rename_around_expired_keys() {
        let mut node = Node::new();
        node.set("stale source", "v", NOW_MS);
        node.set("stale target", "old", NOW_MS);
        node.set("fresh", "new", 0);
        assert_eq!(node.error(&["rename", "stale source", "x"]), "ERR no such key");
        assert_eq!(node.deadline("stale source"), None, "the dispatcher's purge deleted it");
        assert_eq!(node.integer(&["renamenx", "fresh", "stale target"]), 1);
        let entry = node.keyspace.get(b"stale target", NOW_MS).expect("renamed");
        assert_eq!((&entry.value, entry.expire_at_ms), (&Value::String(Box::from(&b"new"[..])), 0));
        node.assert_replay_matches();
    }

    #[test]
    fn spec_of_rename_names_both_keys() {
        let rename = SPECS.iter().find(|spec| spec.name == "rename").unwrap();
        let args = [b("rename"), b("from"), b("to")];
        assert_eq!(rename.keys(&args).collect::<Vec<_>>(), [&args[1], &args[2]]);
        let del = SPECS.iter().find(|spec| spec.name == "del").unwrap();
        let args = [b("del"), b("a"), b("b"), b("c")];
        assert_eq!(del.keys(&args).count(), 3);
    }

    #[test]
    fn randomkey_picks_live_keys() {
        let mut node = Node::new();
        assert_eq!(node.reply(&["randomkey"]), Frame::Null);
        let keys: HashSet<Bytes> = ["x", "y", "z"].into_iter().map(b).collect();
        for key in &keys {
            node.seed(Effect::Set { key: key.clone(), value: b("v"), ttl: Ttl::Clear });
        }
        let mut picked = HashSet::new();
        for _ in 0..100 {
            let Frame::Bulk(key) = node.reply(&["randomkey"]) else { panic!("a bulk string") };
            assert!(keys.contains(&key));
            picked.insert(key);
        }
        assert!(picked.len() > 1, "draws advance the random stream");
    }

    #[test]
    fn flushall_and_flushdb_empty_the_keyspace() {
        let mut node = Node::new();
        let commands: [&[&str]; 4] = [&["flushall"], &["FLUSHALL", "ASYNC"], &["flushdb", "sync"], &["flushdb"]];
        for words in commands {
            node.set("a", "1", NOW_MS + 1000);
            node.seed(Effect::ListPush { key: b("l"), left: false, values: vec![b("x")] });
            assert_eq!(node.reply(words), Frame::ok(), "{words:?}");
            assert_eq!(node.integer(&["dbsize"]), 0);
            assert!(node.keyspace.is_empty() && node.keyspace.expiring_len() == 0);
        }
        node.set("a", "1", 0);
        assert_eq!(node.error(&["flushall", "later"]), "ERR syntax error");
        assert_eq!(node.error(&["flushall", "async", "sync"]), "ERR syntax error");
        assert_eq!(node.integer(&["dbsize"]), 1);
        node.assert_replay_matches();
    }
}

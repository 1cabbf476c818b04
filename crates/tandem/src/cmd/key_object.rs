//! `OBJECT ENCODING | REFCOUNT | IDLETIME | FREQ | HELP`: what Redis reports
//! about how a key's value is stored.
//!
//! tandem stores each type one way, so `ENCODING` names the encoding Redis 7.0
//! gives a value of this type, shape and size under its default limits (the
//! same that `redis-server` 7.0 answers for a value built by plain writes):
//! strings `int` (an integer of at most 20 characters, as `INCR` reads them),
//! `embstr` (up to 44 bytes) or `raw`; lists `quicklist`; hashes `listpack` (at
//! most 128 fields, every field and value at most 64 bytes) or `hashtable`; sets
//! `intset` (at most 512 members, all integers) or `hashtable`; sorted sets
//! `listpack` (at most 128 members of at most 64 bytes) or `skiplist`. Redis keeps
//! an encoding it converted to when the value shrinks again, and stores a string
//! changed by `APPEND` or `SETRANGE` as `raw`: tandem answers from the value as it
//! is now.
//!
//! `REFCOUNT` is 1: a value belongs to one key. tandem keeps no per-key access
//! clock or counter, so `IDLETIME` and `FREQ` are refused with a message saying
//! so (`FREQ`'s is Redis's own, for a server without an LFU policy).

use bytes::Bytes;
use tandem_resp::Frame;

use super::args::parse_integer;
use super::error::printable;
use super::table::{spec, CommandSpec, Flags};
use super::{CommandError, DataContext, Reply};
use crate::store::{Entry, Value};

/// OBJECT.
pub const SPECS: &[CommandSpec] = &[spec("object", -2, Flags::READONLY, (2, 2, 1), object)];

/// Redis 7.0's defaults for the compact encodings.
const EMBSTR_BYTES_MAX: usize = 44;
const LISTPACK_ENTRIES_MAX: usize = 128;
const LISTPACK_VALUE_BYTES_MAX: usize = 64;
const INTSET_ENTRIES_MAX: usize = 512;

const HELP: &[&str] = &[
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
];

/// `OBJECT subcommand [key]`.
fn object(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let sub = &args[1];
    let name = String::from_utf8_lossy(sub).to_ascii_lowercase();
    let arity = match name.as_str() {
        "help" => 2,
        "encoding" | "refcount" | "idletime" | "freq" => 3,
        _ => return Err(CommandError::err(format!("unknown subcommand '{}'. Try OBJECT HELP.", printable(sub, 64)))),
    };
    if args.len() != arity {
        return Err(CommandError::WrongArity(format!("object|{name}")));
    }
    if name == "help" {
        return Ok(Frame::Array(HELP.iter().map(|line| Frame::Simple(Bytes::from_static(line.as_bytes()))).collect()));
    }
    let Some(Entry { value, .. }) = context.entry(&args[2]) else {
        return Ok(Frame::Null);
    };
    match name.as_str() {
        "encoding" => Ok(Frame::Bulk(Bytes::from_static(encoding(value).as_bytes()))),
        "refcount" => Ok(Frame::Integer(1)),
        "idletime" => Err(CommandError::err("idle time not tracked: tandem keeps no per-key access clock")),
        _ => Err(CommandError::err(
            "An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching \
             between policies at runtime LRU and LFU data will take some time to adjust.",
        )),
    }
}

/// The encoding Redis 7.0 reports for a value of this type, shape and size.
fn encoding(value: &Value) -> &'static str {
    let compact = |bytes: &[u8]| bytes.len() <= LISTPACK_VALUE_BYTES_MAX;
    match value {
        Value::String(bytes) if parse_integer(bytes).is_some() => "int",
        Value::String(bytes) if bytes.len() <= EMBSTR_BYTES_MAX => "embstr",
        Value::String(_) => "raw",
        Value::List(_) => "quicklist",
        Value::Hash(hash)
            if hash.len() <= LISTPACK_ENTRIES_MAX
                && hash.iter().all(|(field, value)| compact(field) && compact(value)) =>
        {
            "listpack"
        }
        Value::Hash(_) => "hashtable",
        Value::Set(set)
            if set.len() <= INTSET_ENTRIES_MAX && set.iter().all(|member| parse_integer(member).is_some()) =>
        {
            "intset"
        }
        Value::Set(_) => "hashtable",
        Value::SortedSet(zset)
            if zset.len() <= LISTPACK_ENTRIES_MAX && zset.iter(false).all(|(member, _)| compact(member)) =>
        {
            "listpack"
        }
        Value::SortedSet(_) => "skiplist",
    }
}

#[cfg(test)]
mod tests {
    use crate::cmd::harness::Harness;
    use tandem_resp::Frame;

    fn encoding(h: &mut Harness, key: &str) -> Frame {
        h.ok(&format!("object encoding {key}"))
    }

    fn bulk(text: &str) -> Frame {
        Frame::Bulk(text.as_bytes().to_vec().into())
    }

    #[test]
    fn encodings_follow_redis_7_0_for_each_type_shape_and_size() {
        let mut h = Harness::new();
        let long = "x".repeat(45);
        let field = "f".repeat(65);
        for (setup, key, expected) in [
            ("set int 100".to_string(), "int", "int"),
            ("set negative -5".to_string(), "negative", "int"),
            ("set digits21 123456789012345678901".to_string(), "digits21", "embstr"),
            ("set padded 05".to_string(), "padded", "embstr"),
            (format!("set edge {}", "y".repeat(44)), "edge", "embstr"),
            (format!("set long {long}"), "long", "raw"),
            ("rpush list a".to_string(), "list", "quicklist"),
            ("hset small f v".to_string(), "small", "listpack"),
            (format!("hset widefield {field} v"), "widefield", "hashtable"),
            (format!("hset widevalue f {field}"), "widevalue", "hashtable"),
            ("sadd ints 1 2 -3".to_string(), "ints", "intset"),
            ("sadd words 1 a".to_string(), "words", "hashtable"),
            ("zadd zsmall 1 m".to_string(), "zsmall", "listpack"),
            (format!("zadd zwide 1 {field}"), "zwide", "skiplist"),
        ] {
            h.ok(&setup);
            assert_eq!(encoding(&mut h, key), bulk(expected), "{setup}");
        }
        let members: Vec<String> = (0..129).map(|member| member.to_string()).collect();
        h.ok(&format!("hset hbig {}", members.iter().map(|m| format!("{m} v")).collect::<Vec<_>>().join(" ")));
        h.ok(&format!("zadd zbig {}", members.iter().map(|m| format!("1 {m}")).collect::<Vec<_>>().join(" ")));
        h.ok(&format!("sadd sets512 {}", (0..512).map(|m| m.to_string()).collect::<Vec<_>>().join(" ")));
        h.ok(&format!("sadd sets513 {}", (0..513).map(|m| m.to_string()).collect::<Vec<_>>().join(" ")));
        for (key, expected) in
            [("hbig", "hashtable"), ("zbig", "skiplist"), ("sets512", "intset"), ("sets513", "hashtable")]
        {
            assert_eq!(encoding(&mut h, key), bulk(expected), "{key}");
        }
    }

    #[test]
    fn missing_keys_are_nil_and_the_rest_answers_as_redis_does() {
        let mut h = Harness::new();
        for sub in ["encoding", "refcount", "idletime", "freq"] {
            assert_eq!(h.ok(&format!("object {sub} missing")), Frame::Null, "{sub}");
        }
        h.ok("set k v");
        assert_eq!(h.ok("object refcount k"), Frame::Integer(1));
        assert_eq!(h.error("object idletime k"), "ERR idle time not tracked: tandem keeps no per-key access clock");
        assert!(h.error("object freq k").starts_with("ERR An LFU maxmemory policy is not selected"));
        assert_eq!(h.error("object foo k"), "ERR unknown subcommand 'foo'. Try OBJECT HELP.");
        assert_eq!(h.error("object encoding"), "ERR wrong number of arguments for 'object|encoding' command");
        assert_eq!(h.error("object ENCODING a b"), "ERR wrong number of arguments for 'object|encoding' command");
        assert_eq!(h.error("object help x"), "ERR wrong number of arguments for 'object|help' command");
        let Frame::Array(lines) = h.ok("object help") else { panic!("OBJECT HELP is an array") };
        assert_eq!(lines.len(), 15);
        assert_eq!(
            lines[0],
            Frame::Simple("OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:".as_bytes().to_vec().into())
        );
        h.ok("pexpire k 1");
        h.now_ms += 2;
        assert_eq!(encoding(&mut h, "k"), Frame::Null, "an expired key is missing");
    }
}

//! `DUMP key` and `RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f]`:
//! a key's value as an opaque string, and a key made from one.
//!
//! The payload is tandem's own, not Redis's RDB encoding: the value as a checkpoint
//! records it (`docs/checkpoint-format.md`, "Values"), then a 2-byte format version and a
//! CRC32C of everything before it (little-endian). So a payload moves between tandem
//! nodes and versions that read this format; a Redis payload, or a damaged one, is
//! refused with Redis's own error (`DUMP payload version or checksum are wrong`), never
//! loaded. A payload whose checksum holds but whose contents do not parse gets Redis's
//! `Bad data format`.
//!
//! `RESTORE` writes the effects that build the value (as `COPY` does), after a `Delete`
//! of a replaced key. `IDLETIME` and `FREQ` are checked as Redis checks them and then
//! have nothing to set: tandem keeps no per-key access clock or counter.

use bytes::Bytes;
use tandem_resp::Frame;

use super::args::{integer, is};
use super::key_copy::rebuild;
use super::table::{spec, CommandSpec, Flags};
use super::{CommandError, DataContext, Reply};
use crate::checkpoint::format::{value_bytes, value_from_bytes};
use crate::store::effect::Effect;
use crate::store::Entry;

/// DUMP and RESTORE.
pub const SPECS: &[CommandSpec] = &[
    spec("dump", 2, Flags::READONLY, (1, 1, 1), dump),
    spec("restore", -4, Flags::WRITE.with(Flags::DENYOOM), (1, 1, 1), restore),
];

/// The payload format's version; a payload of another version is refused.
const DUMP_VERSION: u16 = 1;
/// Version and checksum after the value.
const TRAILER_BYTES: usize = 2 + 4;

fn bad_payload() -> CommandError {
    CommandError::err("DUMP payload version or checksum are wrong")
}

/// `DUMP key` — the payload, or nil for a missing key.
fn dump(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let Some(entry) = context.entry(&args[1]) else {
        return Ok(Frame::Null);
    };
    Ok(Frame::Bulk(sealed(value_bytes(&entry.value)).into()))
}

/// A payload: the value's bytes, then the version and the checksum of both.
fn sealed(mut payload: Vec<u8>) -> Vec<u8> {
    payload.extend_from_slice(&DUMP_VERSION.to_le_bytes());
    let checksum = crc32c::crc32c(&payload);
    payload.extend_from_slice(&checksum.to_le_bytes());
    payload
}

/// The value bytes of a payload whose version and checksum hold.
fn verified(payload: &[u8]) -> Result<&[u8], CommandError> {
    let body_end = payload.len().checked_sub(TRAILER_BYTES).ok_or_else(bad_payload)?;
    let (checked, checksum) = payload.split_at(body_end + 2);
    let version = u16::from_le_bytes([checked[body_end], checked[body_end + 1]]);
    let checksum = u32::from_le_bytes(checksum.try_into().expect("4 bytes"));
    if version != DUMP_VERSION || crc32c::crc32c(checked) != checksum {
        return Err(bad_payload());
    }
    Ok(&payload[..body_end])
}

/// `RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME seconds] [FREQ frequency]` — OK.
fn restore(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let key = &args[1];
    let (mut replace, mut absolute, mut idle_given, mut frequency_given) = (false, false, false, false);
    let mut at = 4;
    while at < args.len() {
        let has_value = at + 1 < args.len();
        if is(&args[at], "replace") {
            replace = true;
        } else if is(&args[at], "absttl") {
            absolute = true;
        } else if is(&args[at], "idletime") && has_value && !frequency_given {
            if integer(&args[at + 1])? < 0 {
                return Err(CommandError::err("Invalid IDLETIME value, must be >= 0"));
            }
            idle_given = true;
            at += 1;
        } else if is(&args[at], "freq") && has_value && !idle_given {
            if !(0..=255).contains(&integer(&args[at + 1])?) {
                return Err(CommandError::err("Invalid FREQ value, must be >= 0 and <= 255"));
            }
            frequency_given = true;
            at += 1;
        } else {
            return Err(CommandError::Syntax);
        }
        at += 1;
    }
    context.purge_if_expired(key);
    let exists = context.entry(key).is_some();
    if exists && !replace {
        return Err(CommandError::Other("BUSYKEY Target key name already exists.".into()));
    }
    let ttl = integer(&args[2])?;
    if ttl < 0 {
        return Err(CommandError::err("Invalid TTL value, must be >= 0"));
    }
    let value = value_from_bytes(verified(&args[3])?).map_err(|_| CommandError::err("Bad data format"))?;
    let expire_at_ms = match (ttl as u64, absolute) {
        (0, _) => 0,
        (deadline, true) => deadline,
        (ttl, false) => context.now_ms.saturating_add(ttl),
    };
    let effects = rebuild(key, &Entry { value, expire_at_ms });
    context.check_room(effects.iter().map(Effect::encoded_bytes_bound).sum::<u64>() + 64 + key.len() as u64)?;
    if exists {
        context.emit(Effect::Delete { key: key.clone() });
    }
    // A deadline already past: the old key is gone (if replaced), the new one never shows.
    if expire_at_ms != 0 && expire_at_ms <= context.now_ms {
        return Ok(Frame::ok());
    }
    for effect in effects {
        context.emit(effect);
    }
    Ok(Frame::ok())
}

#[cfg(test)]
mod tests {
    use crate::cmd::harness::Harness;
    use bytes::Bytes;
    use tandem_resp::Frame;

    fn args(parts: Vec<Vec<u8>>) -> Vec<Bytes> {
        parts.into_iter().map(Bytes::from).collect()
    }

    fn payload(frame: Frame) -> Vec<u8> {
        match frame {
            Frame::Bulk(bytes) => bytes.to_vec(),
            other => panic!("not a payload: {other:?}"),
        }
    }

    #[test]
    fn every_type_round_trips_with_its_deadline_and_replay_agrees() {
        let mut h = Harness::new();
        h.ok("set s text");
        h.ok("rpush l a b c");
        h.ok("hset h f v g w");
        h.ok("sadd set m n");
        h.ok("zadd z 2 two 1 one -0 zero");
        for key in ["s", "l", "h", "set", "z"] {
            let dumped = payload(h.ok(&format!("dump {key}")));
            let target = format!("{key}:restored");
            let restored = h.run_args(&args(vec![
                b"restore".to_vec(),
                target.clone().into_bytes(),
                b"0".to_vec(),
                dumped.clone(),
            ]));
            assert_eq!(restored, Ok(Frame::ok()), "{key}");
            let original = h.keyspace.get(key.as_bytes(), h.now_ms).unwrap().clone();
            let copy = h.keyspace.get(target.as_bytes(), h.now_ms).unwrap().clone();
            assert_eq!(copy, original, "{key}");
            let with_ttl = args(vec![
                b"restore".to_vec(),
                target.clone().into_bytes(),
                b"5000".to_vec(),
                dumped,
                b"REPLACE".to_vec(),
            ]);
            assert_eq!(h.run_args(&with_ttl), Ok(Frame::ok()));
            assert_eq!(h.keyspace.get(target.as_bytes(), h.now_ms).unwrap().expire_at_ms, h.now_ms + 5000, "{key}");
        }
        assert_eq!(h.ok("dump missing"), Frame::Null);
        h.assert_replay_matches();
    }

    #[test]
    fn restore_checks_its_arguments_as_redis_does() {
        let mut h = Harness::new();
        h.ok("set s text");
        let dumped = payload(h.ok("dump s"));
        let run = |h: &mut Harness, key: &str, ttl: &str, payload: &[u8], options: &[&str]| {
            let mut parts =
                vec![b"restore".to_vec(), key.as_bytes().to_vec(), ttl.as_bytes().to_vec(), payload.to_vec()];
            parts.extend(options.iter().map(|option| option.as_bytes().to_vec()));
            h.run_args(&args(parts)).map_err(|error| error.to_string())
        };
        assert_eq!(run(&mut h, "s", "0", &dumped, &[]).unwrap_err(), "BUSYKEY Target key name already exists.");
        assert_eq!(run(&mut h, "t", "-1", &dumped, &[]).unwrap_err(), "ERR Invalid TTL value, must be >= 0");
        assert_eq!(run(&mut h, "t", "x", &dumped, &[]).unwrap_err(), "ERR value is not an integer or out of range");
        assert_eq!(
            run(&mut h, "t", "0", &dumped, &["IDLETIME", "-1"]).unwrap_err(),
            "ERR Invalid IDLETIME value, must be >= 0"
        );
        assert_eq!(
            run(&mut h, "t", "0", &dumped, &["FREQ", "256"]).unwrap_err(),
            "ERR Invalid FREQ value, must be >= 0 and <= 255"
        );
        assert_eq!(run(&mut h, "t", "0", &dumped, &["IDLETIME", "1", "FREQ", "1"]).unwrap_err(), "ERR syntax error");
        assert_eq!(run(&mut h, "t", "0", &dumped, &["FOO"]).unwrap_err(), "ERR syntax error");
        assert_eq!(run(&mut h, "t", "0", &dumped, &["IDLETIME", "10"]), Ok(Frame::ok()), "accepted, nothing to set");

        let wrong = "ERR DUMP payload version or checksum are wrong";
        for damaged in [&dumped[..3], &dumped[..dumped.len() - 1], &[][..]] {
            assert_eq!(run(&mut h, "u", "0", damaged, &[]).unwrap_err(), wrong);
        }
        let mut flipped = dumped.clone();
        flipped[1] ^= 1;
        assert_eq!(run(&mut h, "u", "0", &flipped, &[]).unwrap_err(), wrong, "a flipped byte");
        // Redis 7.0.15's DUMP of the string "text": its RDB encoding and CRC64 are refused.
        let redis = b"\x00\x04text\x0a\x00\x7c\xf3\x26\x6d\xca\xb5\xa5\x31";
        assert_eq!(run(&mut h, "u", "0", redis, &[]).unwrap_err(), wrong);
        // The checksum holds, the contents do not parse: an unknown type byte.
        let bad = super::sealed(vec![9u8, 0]);
        assert_eq!(run(&mut h, "u", "0", &bad, &[]).unwrap_err(), "ERR Bad data format");
        // A set (type 2) of two members, both "m": the checksum holds, the value cannot be.
        let twice = super::sealed(vec![2u8, 2, 1, b'm', 1, b'm']);
        assert_eq!(run(&mut h, "u", "0", &twice, &[]).unwrap_err(), "ERR Bad data format");
        assert!(h.keyspace.get(b"u", h.now_ms).is_none(), "nothing half-loaded");
    }

    #[test]
    fn an_absolute_deadline_already_past_replaces_and_leaves_nothing() {
        let mut h = Harness::new();
        h.ok("set s text");
        let dumped = payload(h.ok("dump s"));
        let restore = args(vec![
            b"restore".to_vec(),
            b"s".to_vec(),
            b"1".to_vec(),
            dumped,
            b"REPLACE".to_vec(),
            b"ABSTTL".to_vec(),
        ]);
        assert_eq!(h.run_args(&restore), Ok(Frame::ok()));
        assert!(h.keyspace.get(b"s", h.now_ms).is_none());
        h.assert_replay_matches();
    }
}

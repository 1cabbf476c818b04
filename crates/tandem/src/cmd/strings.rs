//! String and counter commands: GET, SET and friends, INCR family.
//!
//! Every write here turns into `Effect::Set`, `Append`, `SetRange`,
//! `IncrBy` or `Delete`; the reply is computed from the state before the
//! effect, exactly as Redis replies.

use bytes::Bytes;
use tandem_resp::Frame;

use super::args::{self, is};
use super::float_text;
use super::table::{spec, CommandSpec, Flags};
use super::{CommandError, DataContext, Reply};
use crate::limits;
use crate::store::effect::{Effect, Ttl};

const READ: Flags = Flags::READONLY.with(Flags::FAST);
const WRITE: Flags = Flags::WRITE.with(Flags::DENYOOM);
const WRITE_FAST: Flags = WRITE.with(Flags::FAST);
const ONE_KEY: (i32, i32, i32) = (1, 1, 1);

/// The string family's commands.
pub const SPECS: &[CommandSpec] = &[
    spec("get", 2, READ, ONE_KEY, get),
    spec("set", -3, WRITE, ONE_KEY, set),
    spec("setnx", 3, WRITE_FAST, ONE_KEY, setnx),
    spec("setex", 4, WRITE, ONE_KEY, setex),
    spec("psetex", 4, WRITE, ONE_KEY, psetex),
    spec("getset", 3, WRITE_FAST, ONE_KEY, getset),
    spec("getdel", 2, Flags::WRITE.with(Flags::FAST), ONE_KEY, getdel),
    spec("getex", -2, Flags::WRITE.with(Flags::FAST), ONE_KEY, getex),
    spec("mget", -2, READ, (1, -1, 1), mget),
    spec("mset", -3, WRITE, (1, -1, 2), mset),
    spec("msetnx", -3, WRITE, (1, -1, 2), msetnx),
    spec("append", 3, WRITE_FAST, ONE_KEY, append),
    spec("strlen", 2, READ, ONE_KEY, strlen),
    spec("getrange", 4, Flags::READONLY, ONE_KEY, getrange),
    spec("substr", 4, Flags::READONLY, ONE_KEY, getrange),
    spec("setrange", 4, WRITE, ONE_KEY, setrange),
    spec("incr", 2, WRITE_FAST, ONE_KEY, incr),
    spec("decr", 2, WRITE_FAST, ONE_KEY, decr),
    spec("incrby", 3, WRITE_FAST, ONE_KEY, incrby),
    spec("decrby", 3, WRITE_FAST, ONE_KEY, decrby),
    spec("incrbyfloat", 3, WRITE_FAST, ONE_KEY, incrbyfloat),
];

fn bulk_or_null(value: Option<&[u8]>) -> Frame {
    match value {
        Some(bytes) => Frame::Bulk(Bytes::copy_from_slice(bytes)),
        None => Frame::Null,
    }
}

/// `GET key`
fn get(context: &mut DataContext, args: &[Bytes]) -> Reply {
    Ok(bulk_or_null(context.string(&args[1])?))
}

/// An expiry option of SET/GETEX, resolved to an absolute deadline.
fn deadline(command: &str, unit_ms: u64, absolute: bool, arg: &[u8], now_ms: u64) -> Result<u64, CommandError> {
    let invalid = || CommandError::err(format!("invalid expire time in '{command}' command"));
    let amount = args::integer(arg)?;
    if amount <= 0 {
        return Err(invalid());
    }
    let ms = (amount as u64).checked_mul(unit_ms).ok_or_else(invalid)?;
    let at = if absolute { ms } else { now_ms.checked_add(ms).ok_or_else(invalid)? };
    if at > i64::MAX as u64 {
        return Err(invalid());
    }
    Ok(at)
}

#[derive(Default)]
struct SetOptions {
    only_if_absent: bool,
    only_if_present: bool,
    get: bool,
    ttl: Option<Ttl>,
}

fn parse_set_options(context: &DataContext, args: &[Bytes]) -> Result<SetOptions, CommandError> {
    let mut options = SetOptions::default();
    let mut at = 3;
    while at < args.len() {
        let arg = &args[at];
        let expiry = [("ex", 1000, false), ("px", 1, false), ("exat", 1000, true), ("pxat", 1, true)]
            .into_iter()
            .find(|(word, _, _)| is(arg, word));
        if is(arg, "nx") && !options.only_if_present {
            options.only_if_absent = true;
        } else if is(arg, "xx") && !options.only_if_absent {
            options.only_if_present = true;
        } else if is(arg, "get") {
            options.get = true;
        } else if is(arg, "keepttl") && options.ttl.is_none() {
            options.ttl = Some(Ttl::Keep);
        } else if let (Some((_, unit_ms, absolute)), None) = (expiry, options.ttl) {
            let value = args::option_value(args, at + 1)?;
            options.ttl = Some(Ttl::At(deadline("set", unit_ms, absolute, value, context.now_ms)?));
            at += 1;
        } else {
            return Err(CommandError::Syntax);
        }
        at += 1;
    }
    Ok(options)
}

/// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT ts|PXAT ts-ms|KEEPTTL]`
fn set(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let options = parse_set_options(context, args)?;
    let key = &args[1];
    let old = if options.get { context.string(key)?.map(Bytes::copy_from_slice) } else { None };
    let exists = context.entry(key).is_some();
    let refused = (options.only_if_absent && exists) || (options.only_if_present && !exists);
    if !refused {
        let ttl = options.ttl.unwrap_or(Ttl::Clear);
        context.emit(Effect::Set { key: key.clone(), value: args[2].clone(), ttl });
    }
    Ok(match (options.get, refused) {
        (true, _) => old.map_or(Frame::Null, Frame::Bulk),
        (false, true) => Frame::Null,
        (false, false) => Frame::ok(),
    })
}

/// `SETNX key value`
fn setnx(context: &mut DataContext, args: &[Bytes]) -> Reply {
    if context.entry(&args[1]).is_some() {
        return Ok(Frame::Integer(0));
    }
    context.emit(Effect::Set { key: args[1].clone(), value: args[2].clone(), ttl: Ttl::Clear });
    Ok(Frame::Integer(1))
}

fn set_with_expiry(context: &mut DataContext, args: &[Bytes], command: &str, unit_ms: u64) -> Reply {
    let at = deadline(command, unit_ms, false, &args[2], context.now_ms)?;
    context.emit(Effect::Set { key: args[1].clone(), value: args[3].clone(), ttl: Ttl::At(at) });
    Ok(Frame::ok())
}

/// `SETEX key seconds value`
fn setex(context: &mut DataContext, args: &[Bytes]) -> Reply {
    set_with_expiry(context, args, "setex", 1000)
}

/// `PSETEX key milliseconds value`
fn psetex(context: &mut DataContext, args: &[Bytes]) -> Reply {
    set_with_expiry(context, args, "psetex", 1)
}

/// `GETSET key value`
fn getset(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let old = context.string(&args[1])?.map(Bytes::copy_from_slice);
    context.emit(Effect::Set { key: args[1].clone(), value: args[2].clone(), ttl: Ttl::Clear });
    Ok(old.map_or(Frame::Null, Frame::Bulk))
}

/// `GETDEL key`
fn getdel(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let old = context.string(&args[1])?.map(Bytes::copy_from_slice);
    if old.is_some() {
        context.emit(Effect::Delete { key: args[1].clone() });
    }
    Ok(old.map_or(Frame::Null, Frame::Bulk))
}

/// `GETEX key [EX s|PX ms|EXAT ts|PXAT ts-ms|PERSIST]`
fn getex(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let key = &args[1];
    enum Change {
        None,
        At(u64),
        Persist,
    }
    let change = match args.len() {
        2 => Change::None,
        3 if is(&args[2], "persist") => Change::Persist,
        4 => {
            let units = [("ex", 1000, false), ("px", 1, false), ("exat", 1000, true), ("pxat", 1, true)];
            let (_, unit_ms, absolute) =
                units.into_iter().find(|(word, _, _)| is(&args[2], word)).ok_or(CommandError::Syntax)?;
            Change::At(deadline("getex", unit_ms, absolute, &args[3], context.now_ms)?)
        }
        _ => return Err(CommandError::Syntax),
    };
    let Some(value) = context.string(key)?.map(Bytes::copy_from_slice) else {
        return Ok(Frame::Null);
    };
    match change {
        Change::None => {}
        Change::At(at_ms) if at_ms <= context.now_ms => context.emit(Effect::Delete { key: key.clone() }),
        Change::At(at_ms) => context.emit(Effect::ExpireAt { key: key.clone(), at_ms }),
        Change::Persist => {
            if context.entry(key).is_some_and(|entry| entry.expire_at_ms != 0) {
                context.emit(Effect::Persist { key: key.clone() });
            }
        }
    }
    Ok(Frame::Bulk(value))
}

/// `MGET key [key ...]` — a key of another type reads as nil, like Redis.
fn mget(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let values = args[1..].iter().map(|key| bulk_or_null(context.string(key).ok().flatten())).collect();
    Ok(Frame::Array(values))
}

fn pairs_or_arity(args: &[Bytes], name: &str) -> Result<(), CommandError> {
    if args.len().is_multiple_of(2) {
        return Err(CommandError::WrongArity(name.to_string()));
    }
    Ok(())
}

/// `MSET key value [key value ...]`
fn mset(context: &mut DataContext, args: &[Bytes]) -> Reply {
    pairs_or_arity(args, "mset")?;
    for pair in args[1..].chunks_exact(2) {
        context.emit(Effect::Set { key: pair[0].clone(), value: pair[1].clone(), ttl: Ttl::Clear });
    }
    Ok(Frame::ok())
}

/// `MSETNX key value [key value ...]` — all or nothing.
fn msetnx(context: &mut DataContext, args: &[Bytes]) -> Reply {
    pairs_or_arity(args, "msetnx")?;
    if args[1..].chunks_exact(2).any(|pair| context.entry(&pair[0]).is_some()) {
        return Ok(Frame::Integer(0));
    }
    mset(context, args)?;
    Ok(Frame::Integer(1))
}

fn check_string_size(size: u64) -> Result<(), CommandError> {
    if size > limits::STRING_BYTES_MAX {
        return Err(CommandError::err("string exceeds maximum allowed size (proto-max-bulk-len)"));
    }
    Ok(())
}

/// `APPEND key value`
fn append(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let current = context.string(&args[1])?.map_or(0, <[u8]>::len);
    let length = current as u64 + args[2].len() as u64;
    check_string_size(length)?;
    context.emit(Effect::Append { key: args[1].clone(), value: args[2].clone() });
    Ok(Frame::Integer(length as i64))
}

/// `STRLEN key`
fn strlen(context: &mut DataContext, args: &[Bytes]) -> Reply {
    Ok(Frame::Integer(context.string(&args[1])?.map_or(0, <[u8]>::len) as i64))
}

/// `GETRANGE key start end`
fn getrange(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let start = args::integer(&args[2])?;
    let end = args::integer(&args[3])?;
    let value = context.string(&args[1])?.unwrap_or_default();
    let length = value.len() as i64;
    // Redis's getrangeCommand: negative indexes count from the end, then both
    // clamp to the string (unlike LRANGE, an end before the start clamps to 0).
    if start < 0 && end < 0 && start > end {
        return Ok(Frame::Bulk(Bytes::new()));
    }
    let start = if start < 0 { (length + start).max(0) } else { start };
    let end = if end < 0 { (length + end).max(0) } else { end.min(length - 1) };
    if length == 0 || start > end {
        return Ok(Frame::Bulk(Bytes::new()));
    }
    Ok(Frame::Bulk(Bytes::copy_from_slice(&value[start as usize..=end as usize])))
}

/// `SETRANGE key offset value`
fn setrange(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let offset = args::non_negative(&args[2], CommandError::err("offset is out of range"))?;
    let current = context.string(&args[1])?.map_or(0, <[u8]>::len) as u64;
    let value = &args[3];
    if value.is_empty() {
        return Ok(Frame::Integer(current as i64));
    }
    let end = offset.checked_add(value.len() as u64).ok_or(CommandError::err("offset is out of range"))?;
    check_string_size(end)?;
    context.emit(Effect::SetRange { key: args[1].clone(), offset, value: value.clone() });
    Ok(Frame::Integer(current.max(end) as i64))
}

fn increment(context: &mut DataContext, key: &Bytes, delta: i64) -> Reply {
    let current = match context.string(key)? {
        None => 0,
        Some(bytes) => args::integer(bytes)?,
    };
    let next = current.checked_add(delta).ok_or(CommandError::Overflow)?;
    context.emit(Effect::IncrBy { key: key.clone(), delta });
    Ok(Frame::Integer(next))
}

/// `INCR key`
fn incr(context: &mut DataContext, args: &[Bytes]) -> Reply {
    increment(context, &args[1], 1)
}

/// `DECR key`
fn decr(context: &mut DataContext, args: &[Bytes]) -> Reply {
    increment(context, &args[1], -1)
}

/// `INCRBY key increment`
fn incrby(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let delta = args::integer(&args[2])?;
    increment(context, &args[1], delta)
}

/// `DECRBY key decrement`
fn decrby(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let delta = args::integer(&args[2])?;
    let negated = delta.checked_neg().ok_or(CommandError::err("decrement would overflow"))?;
    increment(context, &args[1], negated)
}

/// `INCRBYFLOAT key increment` — the result is stored as text, so replay
/// does not depend on floating-point rounding.
fn incrbyfloat(context: &mut DataContext, args: &[Bytes]) -> Reply {
    let current = context.string(&args[1])?.unwrap_or(b"0");
    let text = Bytes::from(float_text::add_float_texts(current, &args[2], CommandError::NotFloat)?);
    context.emit(Effect::Set { key: args[1].clone(), value: text.clone(), ttl: Ttl::Keep });
    Ok(Frame::Bulk(text))
}

//! `SORT` and `SORT_RO`: the elements of a list, set or sorted set, sorted
//! as numbers (or as bytes with `ALPHA`), optionally by the values of other
//! keys (`BY weight_*`, `BY obj_*->field`), cut with `LIMIT`, replaced by
//! other keys' values (`GET`), and stored as a list (`STORE`).
//!
//! As in Redis: a `BY` pattern without `*` skips sorting (the collection's
//! own order, which `DESC` reverses), a `BY` key that is missing counts as 0 (or sorts first with
//! `ALPHA`), equal weights fall back to comparing the elements, a value that
//! is not a number fails the whole command, a `GET` that finds nothing gives
//! a nil (an empty string once stored). Only `STORE` writes: `Delete` and
//! `ListPush` of the result, which must fit in one log record.

use std::cmp::Ordering;

use bytes::Bytes;
use tandem_resp::Frame;

use super::args::{self, is};
use super::table::{spec, CommandSpec, Flags};
use super::{CommandError, DataContext, Reply};
use crate::store::effect::Effect;
use crate::store::{Entry, Value};

/// SORT and SORT_RO.
pub const SPECS: &[CommandSpec] = &[
    spec("sort", -2, Flags::WRITE.with(Flags::DENYOOM), (1, 1, 1), sort),
    spec("sort_ro", -2, Flags::READONLY, (1, 1, 1), sort_ro),
];

/// A parsed SORT.
#[derive(Default)]
struct Options<'a> {
    by: Option<&'a [u8]>,
    sort: bool,
    limit: Option<(i64, i64)>,
    get: Vec<&'a [u8]>,
    descending: bool,
    alpha: bool,
    store: Option<&'a Bytes>,
}

fn parse(args: &[Bytes], read_only: bool) -> Result<Options<'_>, CommandError> {
    let mut options = Options { sort: true, ..Options::default() };
    let mut at = 2;
    while at < args.len() {
        let word = &args[at];
        let left = args.len() - at - 1;
        if is(word, "asc") {
            options.descending = false;
        } else if is(word, "desc") {
            options.descending = true;
        } else if is(word, "alpha") {
            options.alpha = true;
        } else if is(word, "limit") && left >= 2 {
            options.limit = Some((args::integer(&args[at + 1])?, args::integer(&args[at + 2])?));
            at += 2;
        } else if is(word, "store") && left >= 1 && !read_only {
            options.store = Some(&args[at + 1]);
            at += 1;
        } else if is(word, "by") && left >= 1 {
            let pattern = &args[at + 1][..];
            // A pattern that names no element's key means: do not sort.
            options.sort = pattern.contains(&b'*');
            options.by = Some(pattern);
            at += 1;
        } else if is(word, "get") && left >= 1 {
            options.get.push(&args[at + 1]);
            at += 1;
        } else {
            return Err(CommandError::Syntax);
        }
        at += 1;
    }
    Ok(options)
}

/// The value a pattern names for `element`: `#` is the element itself, the
/// first `*` is replaced by it, and `->field` after the `*` reads a hash field.
fn lookup<'c>(context: &'c DataContext, pattern: &[u8], element: &'c [u8]) -> Option<&'c [u8]> {
    if pattern == b"#" {
        return Some(element);
    }
    let star = pattern.iter().position(|&byte| byte == b'*')?;
    let after = &pattern[star + 1..];
    let (suffix, field) = match after.windows(2).position(|pair| pair == b"->") {
        Some(arrow) if arrow + 2 < after.len() => (&after[..arrow], Some(&after[arrow + 2..])),
        _ => (after, None),
    };
    let key = [&pattern[..star], element, suffix].concat();
    match (context.entry(&key), field) {
        (Some(Entry { value: Value::String(bytes), .. }), None) => Some(bytes),
        (Some(Entry { value: Value::Hash(hash), .. }), Some(field)) => hash.get(field).map(|value| &value[..]),
        _ => None,
    }
}

/// The elements of the collection under `key`, in its own order.
fn elements<'c>(context: &'c DataContext, key: &[u8]) -> Result<Vec<&'c [u8]>, CommandError> {
    Ok(match context.entry(key) {
        None => Vec::new(),
        Some(Entry { value: Value::List(list), .. }) => list.iter().map(|item| &item[..]).collect(),
        Some(Entry { value: Value::Set(set), .. }) => set.iter().map(|member| &member[..]).collect(),
        Some(Entry { value: Value::SortedSet(zset), .. }) => zset.iter(false).map(|(member, _)| member).collect(),
        Some(_) => return Err(CommandError::WrongType),
    })
}

/// What an element sorts by.
enum Weight<'c> {
    Number(f64),
    Bytes(Option<&'c [u8]>),
}

/// Sorts (unless told not to), cuts and looks up: the reply's values.
fn sorted<'c>(context: &'c DataContext, key: &[u8], options: &Options) -> Result<Vec<Option<&'c [u8]>>, CommandError> {
    let mut elements = elements(context, key)?;
    if options.sort {
        let mut weighted = Vec::with_capacity(elements.len());
        for element in elements {
            let by = match options.by {
                Some(pattern) => lookup(context, pattern, element),
                None => Some(element),
            };
            let weight = if options.alpha {
                Weight::Bytes(by)
            } else {
                let number = match by {
                    None => 0.0,
                    Some(text) => args::parse_float(text)
                        .ok_or_else(|| CommandError::err("One or more scores can't be converted into double"))?,
                };
                Weight::Number(number)
            };
            weighted.push((element, weight));
        }
        weighted.sort_by(|(left, left_weight), (right, right_weight)| {
            let order = match (left_weight, right_weight) {
                (Weight::Number(left), Weight::Number(right)) => left.partial_cmp(right).unwrap_or(Ordering::Equal),
                (Weight::Bytes(left), Weight::Bytes(right)) => left.cmp(right),
                _ => Ordering::Equal,
            };
            let order = order.then_with(|| left.cmp(right));
            if options.descending {
                order.reverse()
            } else {
                order
            }
        });
        elements = weighted.into_iter().map(|(element, _)| element).collect();
    } else if options.descending {
        elements.reverse();
    }
    if let Some((offset, count)) = options.limit {
        let start = offset.max(0) as usize;
        let taken = if count < 0 { usize::MAX } else { count as usize };
        elements = elements.into_iter().skip(start).take(taken).collect();
    }
    if options.get.is_empty() {
        return Ok(elements.into_iter().map(Some).collect());
    }
    let mut values = Vec::with_capacity(elements.len() * options.get.len());
    for element in elements {
        values.extend(options.get.iter().map(|pattern| lookup(context, pattern, element)));
    }
    Ok(values)
}

fn run(context: &mut DataContext, args: &[Bytes], read_only: bool) -> Reply {
    let options = parse(args, read_only)?;
    let values: Vec<Option<Bytes>> =
        sorted(context, &args[1], &options)?.into_iter().map(|value| value.map(Bytes::copy_from_slice)).collect();
    let Some(destination) = options.store else {
        return Ok(Frame::Array(values.into_iter().map(|value| value.map_or(Frame::Null, Frame::Bulk)).collect()));
    };
    let destination = destination.clone();
    let size = values.len() as i64;
    context.purge_if_expired(&destination);
    let stored = values.into_iter().map(Option::unwrap_or_default).collect();
    let replacement = (size > 0).then(|| Effect::ListPush { key: destination.clone(), left: false, values: stored });
    context.replace_key(&destination, replacement)?;
    Ok(Frame::Integer(size))
}

/// `SORT key [BY pattern] [LIMIT offset count] [GET pattern ...] [ASC|DESC] [ALPHA] [STORE destination]`
fn sort(context: &mut DataContext, args: &[Bytes]) -> Reply {
    run(context, args, false)
}

/// `SORT_RO key [BY pattern] [LIMIT offset count] [GET pattern ...] [ASC|DESC] [ALPHA]`
fn sort_ro(context: &mut DataContext, args: &[Bytes]) -> Reply {
    run(context, args, true)
}

#[cfg(test)]
mod tests {
    use crate::cmd::harness::{bulk_text, Harness};
    use tandem_resp::Frame;

    fn texts(items: &[&str]) -> Frame {
        Frame::Array(items.iter().map(|item| if *item == "nil" { Frame::Null } else { bulk_text(item) }).collect())
    }

    #[test]
    fn numbers_bytes_weights_limits_and_lookups() {
        let mut h = Harness::new();
        h.ok("rpush l 3 10 2 1.5");
        assert_eq!(h.ok("sort l"), texts(&["1.5", "2", "3", "10"]));
        assert_eq!(h.ok("sort l DESC LIMIT 1 2"), texts(&["3", "2"]));
        assert_eq!(h.ok("sort l ALPHA"), texts(&["1.5", "10", "2", "3"]));
        assert_eq!(h.ok("sort l LIMIT -5 -1"), texts(&["1.5", "2", "3", "10"]));
        h.ok("rpush users 1 2 3");
        h.ok("set weight_1 30");
        h.ok("set weight_2 10");
        h.ok("hset user:1 name ada");
        h.ok("hset user:3 name grace");
        assert_eq!(h.ok("sort users BY weight_*"), texts(&["3", "2", "1"]), "user 3 has no weight: 0");
        assert_eq!(h.ok("sort users BY nosort GET # GET user:*->name"), texts(&["1", "ada", "2", "nil", "3", "grace"]));
        assert_eq!(h.ok("sort users BY user:*->name ALPHA GET user:*->name"), texts(&["nil", "ada", "grace"]));
        h.ok("sadd words b a c");
        assert_eq!(h.ok("sort words ALPHA DESC"), texts(&["c", "b", "a"]));
        h.ok("zadd z 3 x 1 y 2 w");
        assert_eq!(h.ok("sort z BY nosort"), texts(&["y", "w", "x"]), "a sorted set's own order");
        assert_eq!(h.ok("sort l BY nosort DESC"), texts(&["1.5", "2", "10", "3"]), "the list's order, reversed");
        assert_eq!(h.error("sort words"), "ERR One or more scores can't be converted into double");
        assert_eq!(h.ok("sort missing"), texts(&[]));
        h.ok("set text x");
        assert_eq!(h.error("sort text"), "WRONGTYPE Operation against a key holding the wrong kind of value");
        assert_eq!(h.error("sort l LIMIT 1"), "ERR syntax error");
        assert_eq!(h.error("sort_ro l STORE dest"), "ERR syntax error");
        assert_eq!(h.effects.len(), 9, "only the seeding writes");
    }

    #[test]
    fn store_replaces_the_destination_with_a_list() {
        let mut h = Harness::new();
        h.ok("rpush l 3 1 2");
        h.ok("set dest old");
        assert_eq!(h.ok("sort l STORE dest GET # GET nothing_*"), Frame::Integer(6));
        assert_eq!(h.list("dest"), ["1", "", "2", "", "3", ""]);
        assert_eq!(h.ok("sort missing STORE dest"), Frame::Integer(0));
        assert!(h.keyspace.get(b"dest", h.now_ms).is_none(), "an empty result deletes the destination");
        h.assert_replay_matches();
    }
}

//! String commands through a real client library (the `redis` crate)
//! against a real `tandem` process: values, SET options, expiry, counters,
//! and the exact error replies Redis clients rely on.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{poll_until, query_error, TestServer};
use redis::{cmd, Value};

fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn set_and_get_round_trip_binary_values() {
    let server = TestServer::start();
    let mut con = server.connection();
    let binary: Vec<u8> = (0..=255u8).chain(*b"\r\n\0 end").collect();
    let _: () = cmd("SET").arg("bin").arg(&binary).query(&mut con).unwrap();
    let back: Vec<u8> = cmd("GET").arg("bin").query(&mut con).unwrap();
    assert_eq!(back, binary);
    let empty: Vec<u8> = {
        let _: () = cmd("SET").arg("empty").arg("").query(&mut con).unwrap();
        cmd("GET").arg("empty").query(&mut con).unwrap()
    };
    assert!(empty.is_empty());
    assert_eq!(cmd("GET").arg("missing").query::<Value>(&mut con).unwrap(), Value::Nil);
    assert_eq!(cmd("STRLEN").arg("bin").query::<i64>(&mut con).unwrap(), binary.len() as i64);
    assert_eq!(cmd("STRLEN").arg("missing").query::<i64>(&mut con).unwrap(), 0);
}

#[test]
fn a_multi_megabyte_value_round_trips() {
    let server = TestServer::start();
    let mut con = server.connection();
    let value: Vec<u8> = (0..5 * 1024 * 1024).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let _: () = cmd("SET").arg("large").arg(&value).query(&mut con).unwrap();
    assert_eq!(cmd("STRLEN").arg("large").query::<usize>(&mut con).unwrap(), value.len());
    assert!(cmd("GET").arg("large").query::<Vec<u8>>(&mut con).unwrap() == value, "the value came back changed");
    assert_eq!(cmd("APPEND").arg("large").arg("!").query::<usize>(&mut con).unwrap(), value.len() + 1);
}

#[test]
fn mset_mget_and_msetnx_work_on_many_keys() {
    let server = TestServer::start();
    let mut con = server.connection();
    let _: () = cmd("MSET").arg("a").arg("1").arg("b").arg("2").arg("c").arg("3").query(&mut con).unwrap();
    let values: Vec<Option<String>> = cmd("MGET").arg("a").arg("missing").arg("c").query(&mut con).unwrap();
    assert_eq!(values, [Some("1".to_string()), None, Some("3".to_string())]);
    // MSETNX sets nothing when any key exists.
    assert_eq!(cmd("MSETNX").arg("new").arg("x").arg("a").arg("y").query::<i64>(&mut con).unwrap(), 0);
    assert_eq!(cmd("EXISTS").arg("new").query::<i64>(&mut con).unwrap(), 0);
    assert_eq!(cmd("GET").arg("a").query::<String>(&mut con).unwrap(), "1");
    assert_eq!(cmd("MSETNX").arg("new").arg("x").arg("other").arg("y").query::<i64>(&mut con).unwrap(), 1);
    assert_eq!(cmd("MGET").arg("new").arg("other").query::<Vec<String>>(&mut con).unwrap(), ["x", "y"]);
    assert_eq!(
        query_error(&mut con, cmd("MSET").arg("a").arg("1").arg("b")),
        "ERR wrong number of arguments for 'mset' command"
    );
}

#[test]
fn append_getrange_setrange_edit_strings_in_place() {
    let server = TestServer::start();
    let mut con = server.connection();
    assert_eq!(cmd("APPEND").arg("s").arg("Hello").query::<i64>(&mut con).unwrap(), 5);
    assert_eq!(cmd("APPEND").arg("s").arg(" World").query::<i64>(&mut con).unwrap(), 11);
    assert_eq!(cmd("GETRANGE").arg("s").arg(0).arg(4).query::<String>(&mut con).unwrap(), "Hello");
    assert_eq!(cmd("GETRANGE").arg("s").arg(-5).arg(-1).query::<String>(&mut con).unwrap(), "World");
    assert_eq!(cmd("GETRANGE").arg("s").arg(20).arg(30).query::<String>(&mut con).unwrap(), "");
    assert_eq!(cmd("SETRANGE").arg("s").arg(6).arg("Redis").query::<i64>(&mut con).unwrap(), 11);
    assert_eq!(cmd("GET").arg("s").query::<String>(&mut con).unwrap(), "Hello Redis");
    // SETRANGE past the end pads with zero bytes.
    assert_eq!(cmd("SETRANGE").arg("pad").arg(3).arg("x").query::<i64>(&mut con).unwrap(), 4);
    assert_eq!(cmd("GET").arg("pad").query::<Vec<u8>>(&mut con).unwrap(), b"\0\0\0x");
    assert_eq!(query_error(&mut con, cmd("SETRANGE").arg("s").arg(-1).arg("x")), "ERR offset is out of range");
}

#[test]
fn getset_getdel_and_setnx_return_the_old_state() {
    let server = TestServer::start();
    let mut con = server.connection();
    assert_eq!(cmd("SETNX").arg("k").arg("first").query::<i64>(&mut con).unwrap(), 1);
    assert_eq!(cmd("SETNX").arg("k").arg("second").query::<i64>(&mut con).unwrap(), 0);
    assert_eq!(cmd("GETSET").arg("k").arg("third").query::<String>(&mut con).unwrap(), "first");
    assert_eq!(cmd("GETDEL").arg("k").query::<String>(&mut con).unwrap(), "third");
    assert_eq!(cmd("GETDEL").arg("k").query::<Value>(&mut con).unwrap(), Value::Nil);
    assert_eq!(cmd("EXISTS").arg("k").query::<i64>(&mut con).unwrap(), 0);
}

#[test]
fn set_nx_xx_get_and_keepttl_options_behave_like_redis() {
    let server = TestServer::start();
    let mut con = server.connection();
    assert_eq!(cmd("SET").arg("k").arg("v1").arg("NX").query::<Value>(&mut con).unwrap(), Value::Okay);
    assert_eq!(cmd("SET").arg("k").arg("v2").arg("NX").query::<Value>(&mut con).unwrap(), Value::Nil);
    assert_eq!(cmd("GET").arg("k").query::<String>(&mut con).unwrap(), "v1");
    assert_eq!(cmd("SET").arg("absent").arg("v").arg("XX").query::<Value>(&mut con).unwrap(), Value::Nil);
    assert_eq!(cmd("EXISTS").arg("absent").query::<i64>(&mut con).unwrap(), 0);
    assert_eq!(cmd("SET").arg("k").arg("v3").arg("XX").query::<Value>(&mut con).unwrap(), Value::Okay);
    // GET returns the old value (nil when there was none) and still sets.
    assert_eq!(cmd("SET").arg("k").arg("v4").arg("GET").query::<String>(&mut con).unwrap(), "v3");
    assert_eq!(cmd("SET").arg("fresh").arg("v").arg("GET").query::<Value>(&mut con).unwrap(), Value::Nil);
    assert_eq!(cmd("GET").arg("fresh").query::<String>(&mut con).unwrap(), "v");
    // KEEPTTL keeps the deadline; a plain SET clears it.
    let _: () = cmd("SET").arg("t").arg("a").arg("EX").arg(1000).query(&mut con).unwrap();
    let _: () = cmd("SET").arg("t").arg("b").arg("KEEPTTL").query(&mut con).unwrap();
    let ttl: i64 = cmd("TTL").arg("t").query(&mut con).unwrap();
    assert!((990..=1000).contains(&ttl), "TTL after KEEPTTL: {ttl}");
    let _: () = cmd("SET").arg("t").arg("c").query(&mut con).unwrap();
    assert_eq!(cmd("TTL").arg("t").query::<i64>(&mut con).unwrap(), -1);
    assert_eq!(cmd("GET").arg("t").query::<String>(&mut con).unwrap(), "c");
}

#[test]
fn set_refuses_conflicting_or_malformed_options() {
    let server = TestServer::start();
    let mut con = server.connection();
    let syntax = "ERR syntax error";
    assert_eq!(query_error(&mut con, cmd("SET").arg("k").arg("v").arg("NX").arg("XX")), syntax);
    assert_eq!(query_error(&mut con, cmd("SET").arg("k").arg("v").arg("EX").arg(10).arg("PX").arg(10)), syntax);
    assert_eq!(query_error(&mut con, cmd("SET").arg("k").arg("v").arg("EX").arg(10).arg("KEEPTTL")), syntax);
    assert_eq!(query_error(&mut con, cmd("SET").arg("k").arg("v").arg("EX")), syntax);
    assert_eq!(query_error(&mut con, cmd("SET").arg("k").arg("v").arg("BOGUS")), syntax);
    assert_eq!(
        query_error(&mut con, cmd("SET").arg("k").arg("v").arg("EX").arg("ten")),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        query_error(&mut con, cmd("SET").arg("k").arg("v").arg("EX").arg(0)),
        "ERR invalid expire time in 'set' command"
    );
    assert_eq!(
        query_error(&mut con, cmd("SET").arg("k").arg("v").arg("PX").arg(-5)),
        "ERR invalid expire time in 'set' command"
    );
    // Nothing was written by the refused commands.
    assert_eq!(cmd("EXISTS").arg("k").query::<i64>(&mut con).unwrap(), 0);
}

#[test]
fn set_expiry_options_px_exat_pxat_setex_psetex_set_the_deadline() {
    let server = TestServer::start();
    let mut con = server.connection();
    let _: () = cmd("SET").arg("px").arg("v").arg("PX").arg(100_000).query(&mut con).unwrap();
    let pttl: i64 = cmd("PTTL").arg("px").query(&mut con).unwrap();
    assert!((90_000..=100_000).contains(&pttl), "PTTL after PX 100000: {pttl}");

    let at = unix_seconds() + 500;
    let _: () = cmd("SET").arg("exat").arg("v").arg("EXAT").arg(at).query(&mut con).unwrap();
    assert_eq!(cmd("EXPIRETIME").arg("exat").query::<u64>(&mut con).unwrap(), at);
    let ttl: i64 = cmd("TTL").arg("exat").query(&mut con).unwrap();
    assert!((490..=501).contains(&ttl), "TTL after EXAT now+500: {ttl}");

    let at_ms = (unix_seconds() + 600) * 1000 + 123;
    let _: () = cmd("SET").arg("pxat").arg("v").arg("PXAT").arg(at_ms).query(&mut con).unwrap();
    assert_eq!(cmd("PEXPIRETIME").arg("pxat").query::<u64>(&mut con).unwrap(), at_ms);

    let _: () = cmd("SETEX").arg("setex").arg(300).arg("v").query(&mut con).unwrap();
    let ttl: i64 = cmd("TTL").arg("setex").query(&mut con).unwrap();
    assert!((290..=300).contains(&ttl), "TTL after SETEX 300: {ttl}");
    let _: () = cmd("PSETEX").arg("psetex").arg(300_000).arg("v").query(&mut con).unwrap();
    let pttl: i64 = cmd("PTTL").arg("psetex").query(&mut con).unwrap();
    assert!((290_000..=300_000).contains(&pttl), "PTTL after PSETEX 300000: {pttl}");
    assert_eq!(
        query_error(&mut con, cmd("SETEX").arg("setex").arg(0).arg("v")),
        "ERR invalid expire time in 'setex' command"
    );
}

#[test]
fn a_key_set_with_a_short_px_disappears_after_its_deadline() {
    let server = TestServer::start();
    let mut con = server.connection();
    let _: () = cmd("SET").arg("brief").arg("v").arg("PX").arg(150).query(&mut con).unwrap();
    let _: () = cmd("SET").arg("lasting").arg("v").query(&mut con).unwrap();
    poll_until(Duration::from_secs(10), "the key set with PX 150 expires", || {
        cmd("GET").arg("brief").query::<Value>(&mut con).unwrap() == Value::Nil
    });
    assert_eq!(cmd("TTL").arg("brief").query::<i64>(&mut con).unwrap(), -2);
    assert_eq!(cmd("PTTL").arg("brief").query::<i64>(&mut con).unwrap(), -2);
    assert_eq!(cmd("EXISTS").arg("brief").query::<i64>(&mut con).unwrap(), 0);
    assert_eq!(cmd("GET").arg("lasting").query::<String>(&mut con).unwrap(), "v");
}

#[test]
fn getex_sets_and_clears_the_deadline() {
    let server = TestServer::start();
    let mut con = server.connection();
    let _: () = cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    assert_eq!(cmd("GETEX").arg("k").arg("EX").arg(100).query::<String>(&mut con).unwrap(), "v");
    let ttl: i64 = cmd("TTL").arg("k").query(&mut con).unwrap();
    assert!((90..=100).contains(&ttl), "TTL after GETEX EX 100: {ttl}");
    assert_eq!(cmd("GETEX").arg("k").arg("PERSIST").query::<String>(&mut con).unwrap(), "v");
    assert_eq!(cmd("TTL").arg("k").query::<i64>(&mut con).unwrap(), -1);
    assert_eq!(cmd("GETEX").arg("missing").arg("EX").arg(100).query::<Value>(&mut con).unwrap(), Value::Nil);
    assert_eq!(query_error(&mut con, cmd("GETEX").arg("k").arg("EX")), "ERR syntax error");
}

#[test]
fn incr_family_counts_and_refuses_non_integers_and_overflow() {
    let server = TestServer::start();
    let mut con = server.connection();
    assert_eq!(cmd("INCR").arg("n").query::<i64>(&mut con).unwrap(), 1);
    assert_eq!(cmd("INCRBY").arg("n").arg(41).query::<i64>(&mut con).unwrap(), 42);
    assert_eq!(cmd("DECR").arg("n").query::<i64>(&mut con).unwrap(), 41);
    assert_eq!(cmd("DECRBY").arg("n").arg(50).query::<i64>(&mut con).unwrap(), -9);
    assert_eq!(cmd("GET").arg("n").query::<String>(&mut con).unwrap(), "-9");
    assert_eq!(cmd("INCRBYFLOAT").arg("f").arg("1.5").query::<String>(&mut con).unwrap(), "1.5");
    assert_eq!(cmd("INCRBYFLOAT").arg("f").arg("-0.25").query::<String>(&mut con).unwrap(), "1.25");

    let not_integer = "ERR value is not an integer or out of range";
    let _: () = cmd("SET").arg("word").arg("abc").query(&mut con).unwrap();
    assert_eq!(query_error(&mut con, cmd("INCR").arg("word")), not_integer);
    assert_eq!(query_error(&mut con, cmd("INCRBY").arg("n").arg("1.5")), not_integer);
    assert_eq!(query_error(&mut con, cmd("INCRBY").arg("n").arg("nine")), not_integer);
    let _: () = cmd("SET").arg("spaced").arg(" 1").query(&mut con).unwrap();
    assert_eq!(query_error(&mut con, cmd("INCR").arg("spaced")), not_integer);
    assert_eq!(query_error(&mut con, cmd("INCRBYFLOAT").arg("word").arg("1")), "ERR value is not a valid float");

    let _: () = cmd("SET").arg("max").arg(i64::MAX).query(&mut con).unwrap();
    assert_eq!(query_error(&mut con, cmd("INCR").arg("max")), "ERR increment or decrement would overflow");
    assert_eq!(cmd("GET").arg("max").query::<i64>(&mut con).unwrap(), i64::MAX);
}

#[test]
fn string_commands_on_a_list_reply_wrongtype() {
    let server = TestServer::start();
    let mut con = server.connection();
    let _: () = cmd("RPUSH").arg("list").arg("x").query(&mut con).unwrap();
    let wrongtype = "WRONGTYPE Operation against a key holding the wrong kind of value";
    assert_eq!(query_error(&mut con, cmd("GET").arg("list")), wrongtype);
    assert_eq!(query_error(&mut con, cmd("INCR").arg("list")), wrongtype);
    assert_eq!(query_error(&mut con, cmd("APPEND").arg("list").arg("y")), wrongtype);
    assert_eq!(query_error(&mut con, cmd("STRLEN").arg("list")), wrongtype);
    assert_eq!(query_error(&mut con, cmd("GETRANGE").arg("list").arg(0).arg(1)), wrongtype);
    // MGET is the exception: a key of another type reads as nil.
    assert_eq!(
        cmd("MGET").arg("list").arg("missing").query::<Value>(&mut con).unwrap(),
        Value::Array(vec![Value::Nil, Value::Nil])
    );
    // SET overwrites whatever type was there.
    let _: () = cmd("SET").arg("list").arg("now a string").query(&mut con).unwrap();
    assert_eq!(cmd("TYPE").arg("list").query::<String>(&mut con).unwrap(), "string");
}

#[test]
fn wrong_arity_names_the_command_in_lower_case() {
    let server = TestServer::start();
    let mut con = server.connection();
    assert_eq!(query_error(&mut con, &cmd("GET")), "ERR wrong number of arguments for 'get' command");
    assert_eq!(query_error(&mut con, cmd("GeT").arg("a").arg("b")), "ERR wrong number of arguments for 'get' command");
    assert_eq!(query_error(&mut con, cmd("SET").arg("k")), "ERR wrong number of arguments for 'set' command");
    assert_eq!(query_error(&mut con, cmd("INCRBY").arg("k")), "ERR wrong number of arguments for 'incrby' command");
    // The connection is still usable after errors.
    assert_eq!(cmd("PING").query::<String>(&mut con).unwrap(), "PONG");
}

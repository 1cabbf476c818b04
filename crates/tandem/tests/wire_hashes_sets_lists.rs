//! Hash, set and list commands through the `redis` crate against a real
//! `tandem` process: normal use, empty aggregates disappearing, WRONGTYPE,
//! arity and integer errors, and HSCAN/SSCAN completeness.

mod common;

use std::collections::{HashMap, HashSet};

use common::{query_error, TestServer};
use redis::{cmd, Value};

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

/// Runs a whole HSCAN/SSCAN iteration of `key` with `options`; returns the flat elements seen.
fn scan_key(con: &mut redis::Connection, command: &str, key: &str, options: &[&str]) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor = "0".to_string();
    for _ in 0..100_000 {
        let (next, items): (String, Vec<String>) = cmd(command).arg(key).arg(&cursor).arg(options).query(con).unwrap();
        seen.extend(items);
        if next == "0" {
            return seen;
        }
        cursor = next;
    }
    panic!("{command} {key} did not finish within 100000 calls");
}

#[test]
fn hash_fields_are_set_read_and_deleted() {
    let server = TestServer::start();
    let mut con = server.connection();
    assert_eq!(cmd("HSET").arg("h").arg("f1").arg("v1").arg("f2").arg("v2").query::<i64>(&mut con).unwrap(), 2);
    assert_eq!(cmd("HSET").arg("h").arg("f1").arg("x").arg("f3").arg("v3").query::<i64>(&mut con).unwrap(), 1);
    assert_eq!(cmd("HGET").arg("h").arg("f1").query::<String>(&mut con).unwrap(), "x");
    assert_eq!(cmd("HGET").arg("h").arg("nope").query::<Value>(&mut con).unwrap(), Value::Nil);
    assert_eq!(cmd("HGET").arg("missing").arg("f").query::<Value>(&mut con).unwrap(), Value::Nil);
    let fields: Vec<Option<String>> = cmd("HMGET").arg("h").arg("f2").arg("nope").arg("f3").query(&mut con).unwrap();
    assert_eq!(fields, [Some("v2".into()), None, Some("v3".into())]);
    let all: HashMap<String, String> = cmd("HGETALL").arg("h").query(&mut con).unwrap();
    let expected: HashMap<String, String> =
        [("f1", "x"), ("f2", "v2"), ("f3", "v3")].iter().map(|(f, v)| (f.to_string(), v.to_string())).collect();
    assert_eq!(all, expected);
    assert_eq!(cmd("HLEN").arg("h").query::<i64>(&mut con).unwrap(), 3);
    assert_eq!(cmd("HEXISTS").arg("h").arg("f2").query::<i64>(&mut con).unwrap(), 1);
    assert_eq!(cmd("HEXISTS").arg("h").arg("nope").query::<i64>(&mut con).unwrap(), 0);
    assert_eq!(cmd("HSTRLEN").arg("h").arg("f3").query::<i64>(&mut con).unwrap(), 2);
    let mut keys: Vec<String> = cmd("HKEYS").arg("h").query(&mut con).unwrap();
    keys.sort();
    assert_eq!(keys, ["f1", "f2", "f3"]);
    let mut values: Vec<String> = cmd("HVALS").arg("h").query(&mut con).unwrap();
    values.sort();
    assert_eq!(values, ["v2", "v3", "x"]);
    assert_eq!(cmd("HSETNX").arg("h").arg("f1").arg("z").query::<i64>(&mut con).unwrap(), 0);
    assert_eq!(cmd("HSETNX").arg("h").arg("f4").arg("z").query::<i64>(&mut con).unwrap(), 1);
    let _: () = cmd("HMSET").arg("h").arg("f5").arg("m").query(&mut con).unwrap();
    assert_eq!(cmd("HDEL").arg("h").arg("f1").arg("f1").arg("nope").query::<i64>(&mut con).unwrap(), 1);
    // Deleting the last field deletes the key.
    assert_eq!(cmd("HDEL").arg("h").arg("f2").arg("f3").arg("f4").arg("f5").query::<i64>(&mut con).unwrap(), 4);
    assert_eq!(cmd("EXISTS").arg("h").query::<i64>(&mut con).unwrap(), 0);
    assert_eq!(cmd("HGETALL").arg("h").query::<Vec<String>>(&mut con).unwrap(), Vec::<String>::new());
}

#[test]
fn hrandfield_returns_fields_of_the_hash_with_their_values() {
    let server = TestServer::start();
    let mut con = server.connection();
    let _: () = cmd("HSET").arg("h").arg(&["a", "1", "b", "2", "c", "3"]).query(&mut con).unwrap();
    let fields: Vec<String> = cmd("HRANDFIELD").arg("h").arg(2).query(&mut con).unwrap();
    assert_eq!(fields.iter().collect::<HashSet<_>>().len(), 2);
    let pairs: Vec<(String, String)> = cmd("HRANDFIELD").arg("h").arg(-10).arg("WITHVALUES").query(&mut con).unwrap();
    assert_eq!(pairs.len(), 10);
    let expected: HashMap<&str, &str> = [("a", "1"), ("b", "2"), ("c", "3")].into();
    assert!(pairs.iter().all(|(field, value)| expected[field.as_str()] == value));
    assert_eq!(cmd("HRANDFIELD").arg("missing").query::<Option<String>>(&mut con).unwrap(), None);
}

#[test]
fn hincrby_counts_and_refuses_non_integer_fields() {
    let server = TestServer::start();
    let mut con = server.connection();
    assert_eq!(cmd("HINCRBY").arg("h").arg("n").arg(5).query::<i64>(&mut con).unwrap(), 5);
    assert_eq!(cmd("HINCRBY").arg("h").arg("n").arg(-7).query::<i64>(&mut con).unwrap(), -2);
    assert_eq!(cmd("HINCRBYFLOAT").arg("h").arg("n").arg("1.5").query::<String>(&mut con).unwrap(), "-0.5");
    let _: () = cmd("HSET").arg("h").arg("word").arg("abc").query(&mut con).unwrap();
    assert_eq!(query_error(&mut con, cmd("HINCRBY").arg("h").arg("word").arg(1)), "ERR hash value is not an integer");
    assert_eq!(
        query_error(&mut con, cmd("HINCRBY").arg("h").arg("n").arg("one")),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(query_error(&mut con, cmd("HINCRBYFLOAT").arg("h").arg("word").arg(1)), "ERR hash value is not a float");
    let _: () = cmd("HSET").arg("h").arg("max").arg(i64::MAX).query(&mut con).unwrap();
    assert_eq!(
        query_error(&mut con, cmd("HINCRBY").arg("h").arg("max").arg(1)),
        "ERR increment or decrement would overflow"
    );
}

#[test]
fn hscan_returns_every_field_and_value() {
    let server = TestServer::start();
    let mut con = server.connection();
    let mut expected = HashMap::new();
    let mut hset = cmd("HSET");
    hset.arg("big");
    for i in 0..300 {
        hset.arg(format!("field:{i}")).arg(format!("value:{i}"));
        expected.insert(format!("field:{i}"), format!("value:{i}"));
    }
    assert_eq!(hset.query::<i64>(&mut con).unwrap(), 300);
    let flat = scan_key(&mut con, "HSCAN", "big", &["COUNT", "3"]);
    assert_eq!(flat.len() % 2, 0);
    let seen: HashMap<String, String> = flat.chunks(2).map(|pair| (pair[0].clone(), pair[1].clone())).collect();
    assert_eq!(seen, expected);
    let matched = scan_key(&mut con, "HSCAN", "big", &["MATCH", "field:29?", "COUNT", "7"]);
    let matched: HashMap<String, String> = matched.chunks(2).map(|pair| (pair[0].clone(), pair[1].clone())).collect();
    let expected_matches: HashMap<String, String> =
        (290..300).map(|i| (format!("field:{i}"), format!("value:{i}"))).collect();
    assert_eq!(matched, expected_matches);
}

#[test]
fn set_members_are_added_tested_and_removed() {
    let server = TestServer::start();
    let mut con = server.connection();
    assert_eq!(cmd("SADD").arg("s").arg("a").arg("b").arg("c").arg("a").query::<i64>(&mut con).unwrap(), 3);
    assert_eq!(cmd("SADD").arg("s").arg("c").arg("d").query::<i64>(&mut con).unwrap(), 1);
    let members: HashSet<String> = cmd("SMEMBERS").arg("s").query(&mut con).unwrap();
    assert_eq!(members, ["a", "b", "c", "d"].iter().map(|m| m.to_string()).collect());
    assert_eq!(cmd("SCARD").arg("s").query::<i64>(&mut con).unwrap(), 4);
    assert_eq!(cmd("SISMEMBER").arg("s").arg("b").query::<i64>(&mut con).unwrap(), 1);
    assert_eq!(cmd("SISMEMBER").arg("s").arg("z").query::<i64>(&mut con).unwrap(), 0);
    assert_eq!(cmd("SMISMEMBER").arg("s").arg("a").arg("z").arg("d").query::<Vec<i64>>(&mut con).unwrap(), [1, 0, 1]);
    assert_eq!(cmd("SREM").arg("s").arg("a").arg("z").query::<i64>(&mut con).unwrap(), 1);
    let random: Vec<String> = cmd("SRANDMEMBER").arg("s").arg(2).query(&mut con).unwrap();
    assert_eq!(random.len(), 2);
    assert!(random.iter().all(|m| ["b", "c", "d"].contains(&m.as_str())), "{random:?}");
    assert_eq!(random.iter().collect::<HashSet<_>>().len(), 2, "positive count gives distinct members");
    assert_eq!(cmd("SRANDMEMBER").arg("s").arg(-5).query::<Vec<String>>(&mut con).unwrap().len(), 5);
    assert_eq!(cmd("SCARD").arg("s").query::<i64>(&mut con).unwrap(), 3, "SRANDMEMBER removes nothing");
    let popped: String = cmd("SPOP").arg("s").query(&mut con).unwrap();
    assert!(["b", "c", "d"].contains(&popped.as_str()));
    assert_eq!(cmd("SISMEMBER").arg("s").arg(&popped).query::<i64>(&mut con).unwrap(), 0);
    let rest: HashSet<String> = cmd("SPOP").arg("s").arg(10).query(&mut con).unwrap();
    assert_eq!(rest.len(), 2);
    assert_eq!(cmd("EXISTS").arg("s").query::<i64>(&mut con).unwrap(), 0, "an emptied set is deleted");
    assert_eq!(cmd("SPOP").arg("s").query::<Value>(&mut con).unwrap(), Value::Nil);
    assert_eq!(cmd("SMEMBERS").arg("s").query::<Vec<String>>(&mut con).unwrap(), Vec::<String>::new());
    assert_eq!(cmd("SRANDMEMBER").arg("s").arg(3).query::<Vec<String>>(&mut con).unwrap(), Vec::<String>::new());
}

fn members(con: &mut redis::Connection, key: &str) -> HashSet<String> {
    cmd("SMEMBERS").arg(key).query(con).unwrap()
}

fn set_of(members: &[&str]) -> HashSet<String> {
    members.iter().map(|member| member.to_string()).collect()
}

#[test]
fn set_algebra_reads_stores_and_moves_and_survives_a_restart() {
    let mut server = TestServer::start();
    let mut con = server.connection();
    let _: () = cmd("SADD").arg("a").arg(&["1", "2", "3", "4"]).query(&mut con).unwrap();
    let _: () = cmd("SADD").arg("b").arg(&["3", "4", "5"]).query(&mut con).unwrap();
    let _: () = cmd("SET").arg("text").arg("x").query(&mut con).unwrap();
    let inter: HashSet<String> = cmd("SINTER").arg("a").arg("b").query(&mut con).unwrap();
    assert_eq!(inter, set_of(&["3", "4"]));
    let union: HashSet<String> = cmd("SUNION").arg("a").arg("b").arg("missing").query(&mut con).unwrap();
    assert_eq!(union, set_of(&["1", "2", "3", "4", "5"]));
    let diff: HashSet<String> = cmd("SDIFF").arg("a").arg("b").query(&mut con).unwrap();
    assert_eq!(diff, set_of(&["1", "2"]));
    assert_eq!(cmd("SINTERCARD").arg(2).arg("a").arg("b").arg("LIMIT").arg(1).query::<i64>(&mut con).unwrap(), 1);
    assert_eq!(query_error(&mut con, cmd("SINTER").arg("a").arg("text")), WRONGTYPE);
    assert_eq!(query_error(&mut con, cmd("SINTERCARD").arg(0).arg("a")), "ERR numkeys should be greater than 0");
    assert_eq!(cmd("SINTERSTORE").arg("text").arg("a").arg("b").query::<i64>(&mut con).unwrap(), 2);
    assert_eq!(cmd("SDIFFSTORE").arg("d").arg("a").arg("b").query::<i64>(&mut con).unwrap(), 2);
    assert_eq!(cmd("SUNIONSTORE").arg("u").arg("a").arg("b").query::<i64>(&mut con).unwrap(), 5);
    assert_eq!(cmd("SMOVE").arg("a").arg("b").arg("1").query::<i64>(&mut con).unwrap(), 1);
    assert_eq!(cmd("SMOVE").arg("a").arg("b").arg("nope").query::<i64>(&mut con).unwrap(), 0);
    // Every change went through the log: the restarted server holds the same sets.
    drop(con);
    server.stop();
    server.restart();
    let mut con = server.connection();
    assert_eq!(members(&mut con, "text"), set_of(&["3", "4"]));
    assert_eq!(members(&mut con, "d"), set_of(&["1", "2"]));
    assert_eq!(members(&mut con, "u"), set_of(&["1", "2", "3", "4", "5"]));
    assert_eq!(members(&mut con, "a"), set_of(&["2", "3", "4"]));
    assert_eq!(members(&mut con, "b"), set_of(&["1", "3", "4", "5"]));
}

#[test]
fn sscan_returns_every_member_once_iterated() {
    let server = TestServer::start();
    let mut con = server.connection();
    let mut sadd = cmd("SADD");
    sadd.arg("big");
    let expected: HashSet<String> = (0..400).map(|i| format!("member:{i}")).collect();
    for member in &expected {
        sadd.arg(member);
    }
    assert_eq!(sadd.query::<i64>(&mut con).unwrap(), 400);
    let seen: HashSet<String> = scan_key(&mut con, "SSCAN", "big", &["COUNT", "3"]).into_iter().collect();
    assert_eq!(seen, expected);
}

#[test]
fn list_pushes_pops_and_ranges_keep_order() {
    let server = TestServer::start();
    let mut con = server.connection();
    assert_eq!(cmd("RPUSH").arg("l").arg("b").arg("c").query::<i64>(&mut con).unwrap(), 2);
    assert_eq!(cmd("LPUSH").arg("l").arg("a").arg("z").query::<i64>(&mut con).unwrap(), 4);
    assert_eq!(cmd("LRANGE").arg("l").arg(0).arg(-1).query::<Vec<String>>(&mut con).unwrap(), ["z", "a", "b", "c"]);
    assert_eq!(cmd("LRANGE").arg("l").arg(1).arg(2).query::<Vec<String>>(&mut con).unwrap(), ["a", "b"]);
    assert_eq!(cmd("LRANGE").arg("l").arg(-2).arg(100).query::<Vec<String>>(&mut con).unwrap(), ["b", "c"]);
    assert_eq!(cmd("LRANGE").arg("l").arg(5).arg(10).query::<Vec<String>>(&mut con).unwrap(), Vec::<String>::new());
    assert_eq!(cmd("LLEN").arg("l").query::<i64>(&mut con).unwrap(), 4);
    assert_eq!(cmd("LINDEX").arg("l").arg(-1).query::<String>(&mut con).unwrap(), "c");
    assert_eq!(cmd("LINDEX").arg("l").arg(10).query::<Value>(&mut con).unwrap(), Value::Nil);
    assert_eq!(cmd("LPOP").arg("l").query::<String>(&mut con).unwrap(), "z");
    assert_eq!(cmd("RPOP").arg("l").arg(2).query::<Vec<String>>(&mut con).unwrap(), ["c", "b"]);
    assert_eq!(cmd("LPOP").arg("l").arg(5).query::<Vec<String>>(&mut con).unwrap(), ["a"]);
    assert_eq!(cmd("EXISTS").arg("l").query::<i64>(&mut con).unwrap(), 0, "an emptied list is deleted");
    assert_eq!(cmd("LPOP").arg("l").query::<Value>(&mut con).unwrap(), Value::Nil);
    assert_eq!(cmd("LLEN").arg("l").query::<i64>(&mut con).unwrap(), 0);
    assert_eq!(cmd("LPUSHX").arg("l").arg("x").query::<i64>(&mut con).unwrap(), 0);
    assert_eq!(cmd("RPUSHX").arg("l").arg("x").query::<i64>(&mut con).unwrap(), 0);
    assert_eq!(cmd("EXISTS").arg("l").query::<i64>(&mut con).unwrap(), 0, "PUSHX does not create a list");
}

#[test]
fn lmove_and_rpoplpush_move_elements_between_lists() {
    let server = TestServer::start();
    let mut con = server.connection();
    let _: () = cmd("RPUSH").arg("jobs").arg(&["a", "b", "c"]).query(&mut con).unwrap();
    let moved: String = cmd("LMOVE").arg("jobs").arg("doing").arg("LEFT").arg("RIGHT").query(&mut con).unwrap();
    assert_eq!(moved, "a");
    let moved: String = cmd("RPOPLPUSH").arg("jobs").arg("doing").query(&mut con).unwrap();
    assert_eq!(moved, "c");
    assert_eq!(cmd("LRANGE").arg("doing").arg(0).arg(-1).query::<Vec<String>>(&mut con).unwrap(), ["c", "a"]);
    assert_eq!(cmd("LRANGE").arg("jobs").arg(0).arg(-1).query::<Vec<String>>(&mut con).unwrap(), ["b"]);
    let rotated: String = cmd("LMOVE").arg("doing").arg("doing").arg("LEFT").arg("RIGHT").query(&mut con).unwrap();
    assert_eq!(rotated, "c");
    assert_eq!(cmd("LRANGE").arg("doing").arg(0).arg(-1).query::<Vec<String>>(&mut con).unwrap(), ["a", "c"]);
    assert_eq!(cmd("RPOPLPUSH").arg("missing").arg("doing").query::<Value>(&mut con).unwrap(), Value::Nil);
    let _: () = cmd("SET").arg("text").arg("x").query(&mut con).unwrap();
    assert_eq!(query_error(&mut con, cmd("RPOPLPUSH").arg("jobs").arg("text")), WRONGTYPE);
    assert_eq!(query_error(&mut con, cmd("LMOVE").arg("jobs").arg("x").arg("UP").arg("LEFT")), "ERR syntax error");
}

#[test]
fn list_edits_lset_lrem_ltrim_linsert_lpos() {
    let server = TestServer::start();
    let mut con = server.connection();
    let _: () = cmd("RPUSH").arg("l").arg(&["a", "b", "a", "c", "a"]).query(&mut con).unwrap();
    assert_eq!(cmd("LREM").arg("l").arg(-2).arg("a").query::<i64>(&mut con).unwrap(), 2);
    assert_eq!(cmd("LRANGE").arg("l").arg(0).arg(-1).query::<Vec<String>>(&mut con).unwrap(), ["a", "b", "c"]);
    assert_eq!(cmd("LINSERT").arg("l").arg("BEFORE").arg("c").arg("X").query::<i64>(&mut con).unwrap(), 4);
    assert_eq!(cmd("LINSERT").arg("l").arg("AFTER").arg("a").arg("Y").query::<i64>(&mut con).unwrap(), 5);
    assert_eq!(cmd("LINSERT").arg("l").arg("BEFORE").arg("nope").arg("Z").query::<i64>(&mut con).unwrap(), -1);
    assert_eq!(
        cmd("LRANGE").arg("l").arg(0).arg(-1).query::<Vec<String>>(&mut con).unwrap(),
        ["a", "Y", "b", "X", "c"]
    );
    let _: () = cmd("LSET").arg("l").arg(-1).arg("C").query(&mut con).unwrap();
    assert_eq!(cmd("LINDEX").arg("l").arg(4).query::<String>(&mut con).unwrap(), "C");
    assert_eq!(query_error(&mut con, cmd("LSET").arg("l").arg(5).arg("x")), "ERR index out of range");
    assert_eq!(query_error(&mut con, cmd("LSET").arg("missing").arg(0).arg("x")), "ERR no such key");
    assert_eq!(cmd("LPOS").arg("l").arg("b").query::<i64>(&mut con).unwrap(), 2);
    assert_eq!(cmd("LPOS").arg("l").arg("nope").query::<Value>(&mut con).unwrap(), Value::Nil);
    let _: () = cmd("LTRIM").arg("l").arg(1).arg(2).query(&mut con).unwrap();
    assert_eq!(cmd("LRANGE").arg("l").arg(0).arg(-1).query::<Vec<String>>(&mut con).unwrap(), ["Y", "b"]);
    let _: () = cmd("LTRIM").arg("l").arg(5).arg(10).query(&mut con).unwrap();
    assert_eq!(cmd("EXISTS").arg("l").query::<i64>(&mut con).unwrap(), 0, "LTRIM to nothing deletes the key");
    assert_eq!(
        query_error(&mut con, cmd("LRANGE").arg("l").arg("zero").arg(1)),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(query_error(&mut con, cmd("LINSERT").arg("l").arg("MIDDLE").arg("a").arg("b")), "ERR syntax error");
}

#[test]
fn aggregate_commands_on_the_wrong_type_reply_wrongtype() {
    let server = TestServer::start();
    let mut con = server.connection();
    let _: () = cmd("SET").arg("string").arg("v").query(&mut con).unwrap();
    let _: () = cmd("HSET").arg("hash").arg("f").arg("v").query(&mut con).unwrap();
    let _: () = cmd("SADD").arg("set").arg("m").query(&mut con).unwrap();
    let _: () = cmd("RPUSH").arg("list").arg("x").query(&mut con).unwrap();
    let wrong: [redis::Cmd; 12] = [
        cmd("HGET").arg("string").arg("f").clone(),
        cmd("HSET").arg("list").arg("f").arg("v").clone(),
        cmd("HGETALL").arg("set").clone(),
        cmd("HINCRBY").arg("string").arg("f").arg(1).clone(),
        cmd("SADD").arg("hash").arg("m").clone(),
        cmd("SMEMBERS").arg("string").clone(),
        cmd("SISMEMBER").arg("list").arg("m").clone(),
        cmd("SCARD").arg("hash").clone(),
        cmd("LPUSH").arg("set").arg("x").clone(),
        cmd("LRANGE").arg("hash").arg(0).arg(-1).clone(),
        cmd("LLEN").arg("string").clone(),
        cmd("RPOP").arg("set").clone(),
    ];
    for command in &wrong {
        assert_eq!(query_error(&mut con, command), WRONGTYPE);
    }
    // Nothing changed type or content.
    for (key, type_name) in [("string", "string"), ("hash", "hash"), ("set", "set"), ("list", "list")] {
        assert_eq!(cmd("TYPE").arg(key).query::<String>(&mut con).unwrap(), type_name);
    }
    assert_eq!(cmd("LLEN").arg("list").query::<i64>(&mut con).unwrap(), 1);
}

#[test]
fn aggregate_commands_refuse_a_wrong_number_of_arguments() {
    let server = TestServer::start();
    let mut con = server.connection();
    let cases: [(redis::Cmd, &str); 6] = [
        (cmd("HSET").arg("h").arg("f").clone(), "hset"),
        (cmd("HGET").arg("h").clone(), "hget"),
        (cmd("SADD").arg("s").clone(), "sadd"),
        (cmd("SISMEMBER").arg("s").clone(), "sismember"),
        (cmd("LPUSH").arg("l").clone(), "lpush"),
        (cmd("LRANGE").arg("l").arg(0).clone(), "lrange"),
    ];
    for (command, name) in &cases {
        assert_eq!(query_error(&mut con, command), format!("ERR wrong number of arguments for '{name}' command"));
    }
    assert_eq!(cmd("DBSIZE").query::<i64>(&mut con).unwrap(), 0);
}

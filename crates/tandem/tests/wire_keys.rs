//! Generic key commands and transactions through the `redis` crate against a
//! real `tandem` process: DEL/EXISTS/TYPE, the expiry family, SCAN and KEYS,
//! RENAME, COPY, DUMP/RESTORE, SORT, FLUSHALL, and MULTI/EXEC/DISCARD/WATCH.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{poll_until, query_error, TestServer};
use redis::{cmd, Value};

fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Runs a full SCAN iteration with `options`; returns every key seen and the number of calls.
fn scan_all(con: &mut redis::Connection, options: &[&str]) -> (HashSet<String>, usize) {
    let mut seen = HashSet::new();
    let mut cursor = "0".to_string();
    for calls in 1..=100_000 {
        let (next, keys): (String, Vec<String>) = cmd("SCAN").arg(&cursor).arg(options).query(con).unwrap();
        seen.extend(keys);
        if next == "0" {
            return (seen, calls);
        }
        cursor = next;
    }
    panic!("SCAN {options:?} did not return cursor 0 within 100000 calls");
}

fn strings(names: &[&str]) -> HashSet<String> {
    names.iter().map(|name| name.to_string()).collect()
}

#[test]
fn del_exists_type_and_dbsize_track_keys() {
    let server = TestServer::start();
    let mut con = server.connection();
    assert_eq!(cmd("DBSIZE").query::<i64>(&mut con).unwrap(), 0);
    let _: () = cmd("SET").arg("s").arg("v").query(&mut con).unwrap();
    let _: () = cmd("HSET").arg("h").arg("f").arg("v").query(&mut con).unwrap();
    let _: () = cmd("SADD").arg("set").arg("m").query(&mut con).unwrap();
    let _: () = cmd("LPUSH").arg("l").arg("x").query(&mut con).unwrap();
    assert_eq!(cmd("DBSIZE").query::<i64>(&mut con).unwrap(), 4);
    for (key, type_name) in [("s", "string"), ("h", "hash"), ("set", "set"), ("l", "list"), ("none", "none")] {
        assert_eq!(cmd("TYPE").arg(key).query::<String>(&mut con).unwrap(), type_name, "TYPE {key}");
    }
    // EXISTS counts a repeated key each time; DEL counts it once.
    assert_eq!(cmd("EXISTS").arg("s").arg("s").arg("h").arg("missing").query::<i64>(&mut con).unwrap(), 3);
    assert_eq!(cmd("DEL").arg("s").arg("s").arg("missing").query::<i64>(&mut con).unwrap(), 1);
    assert_eq!(cmd("UNLINK").arg("h").arg("set").query::<i64>(&mut con).unwrap(), 2);
    assert_eq!(cmd("DBSIZE").query::<i64>(&mut con).unwrap(), 1);
    assert_eq!(query_error(&mut con, &cmd("DEL")), "ERR wrong number of arguments for 'del' command");
}

#[test]
fn expire_ttl_pttl_and_persist_follow_the_deadline() {
    let server = TestServer::start();
    let mut con = server.connection();
    let _: () = cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    assert_eq!(cmd("TTL").arg("k").query::<i64>(&mut con).unwrap(), -1);
    assert_eq!(cmd("PTTL").arg("k").query::<i64>(&mut con).unwrap(), -1);
    assert_eq!(cmd("EXPIRE").arg("k").arg(100).query::<i64>(&mut con).unwrap(), 1);
    let ttl: i64 = cmd("TTL").arg("k").query(&mut con).unwrap();
    assert!((90..=100).contains(&ttl), "TTL after EXPIRE 100: {ttl}");
    let pttl: i64 = cmd("PTTL").arg("k").query(&mut con).unwrap();
    assert!((90_000..=100_000).contains(&pttl), "PTTL after EXPIRE 100: {pttl}");
    assert_eq!(cmd("PERSIST").arg("k").query::<i64>(&mut con).unwrap(), 1);
    assert_eq!(cmd("TTL").arg("k").query::<i64>(&mut con).unwrap(), -1);
    assert_eq!(cmd("PERSIST").arg("k").query::<i64>(&mut con).unwrap(), 0);
    assert_eq!(cmd("EXPIRE").arg("missing").arg(100).query::<i64>(&mut con).unwrap(), 0);
    assert_eq!(cmd("TTL").arg("missing").query::<i64>(&mut con).unwrap(), -2);
    assert_eq!(cmd("PTTL").arg("missing").query::<i64>(&mut con).unwrap(), -2);

    // NX/XX/GT/LT conditions.
    assert_eq!(cmd("EXPIRE").arg("k").arg(100).arg("XX").query::<i64>(&mut con).unwrap(), 0);
    assert_eq!(cmd("EXPIRE").arg("k").arg(100).arg("NX").query::<i64>(&mut con).unwrap(), 1);
    assert_eq!(cmd("EXPIRE").arg("k").arg(200).arg("NX").query::<i64>(&mut con).unwrap(), 0);
    assert_eq!(cmd("EXPIRE").arg("k").arg(50).arg("GT").query::<i64>(&mut con).unwrap(), 0);
    assert_eq!(cmd("EXPIRE").arg("k").arg(300).arg("GT").query::<i64>(&mut con).unwrap(), 1);
    let ttl: i64 = cmd("TTL").arg("k").query(&mut con).unwrap();
    assert!((290..=300).contains(&ttl), "TTL after EXPIRE 300 GT: {ttl}");

    // Absolute deadlines.
    let at = unix_seconds() + 1000;
    assert_eq!(cmd("EXPIREAT").arg("k").arg(at).query::<i64>(&mut con).unwrap(), 1);
    assert_eq!(cmd("EXPIRETIME").arg("k").query::<u64>(&mut con).unwrap(), at);
    assert_eq!(cmd("PEXPIREAT").arg("k").arg(at * 1000 + 7).query::<i64>(&mut con).unwrap(), 1);
    assert_eq!(cmd("PEXPIRETIME").arg("k").query::<u64>(&mut con).unwrap(), at * 1000 + 7);
    // A deadline in the past deletes the key at once.
    assert_eq!(cmd("EXPIREAT").arg("k").arg(unix_seconds() - 10).query::<i64>(&mut con).unwrap(), 1);
    assert_eq!(cmd("EXISTS").arg("k").query::<i64>(&mut con).unwrap(), 0);

    assert_eq!(
        query_error(&mut con, cmd("EXPIRE").arg("k").arg("soon")),
        "ERR value is not an integer or out of range"
    );
    let _: () = cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    assert_eq!(query_error(&mut con, cmd("EXPIRE").arg("k").arg(10).arg("foo")), "ERR Unsupported option foo");
}

#[test]
fn pexpire_removes_the_key_once_its_deadline_passes() {
    let server = TestServer::start();
    let mut con = server.connection();
    let _: () = cmd("SET").arg("brief").arg("v").query(&mut con).unwrap();
    let _: () = cmd("HSET").arg("brief-hash").arg("f").arg("v").query(&mut con).unwrap();
    assert_eq!(cmd("PEXPIRE").arg("brief").arg(100).query::<i64>(&mut con).unwrap(), 1);
    assert_eq!(cmd("PEXPIRE").arg("brief-hash").arg(100).query::<i64>(&mut con).unwrap(), 1);
    poll_until(Duration::from_secs(10), "both keys expire", || {
        cmd("EXISTS").arg("brief").arg("brief-hash").query::<i64>(&mut con).unwrap() == 0
    });
    assert_eq!(cmd("TTL").arg("brief").query::<i64>(&mut con).unwrap(), -2);
    assert_eq!(cmd("HGET").arg("brief-hash").arg("f").query::<Value>(&mut con).unwrap(), Value::Nil);
    // Active expiry removes them from DBSIZE too, without anyone reading them.
    let _: () = cmd("SET").arg("unread").arg("v").arg("PX").arg(50).query(&mut con).unwrap();
    poll_until(Duration::from_secs(10), "active expiry empties the keyspace", || {
        cmd("DBSIZE").query::<i64>(&mut con).unwrap() == 0
    });
}

#[test]
fn scan_visits_every_key_with_match_count_and_type() {
    let server = TestServer::start();
    let mut con = server.connection();
    let mut pipe = redis::pipe();
    let mut users = HashSet::new();
    let mut hashes = HashSet::new();
    for i in 0..500 {
        pipe.cmd("SET").arg(format!("user:{i}")).arg(i).ignore();
        users.insert(format!("user:{i}"));
    }
    for i in 0..100 {
        pipe.cmd("HSET").arg(format!("hash:{i}")).arg("f").arg(i).ignore();
        hashes.insert(format!("hash:{i}"));
    }
    for i in 0..50 {
        pipe.cmd("SADD").arg(format!("set:{i}")).arg("m").ignore();
    }
    let _: () = pipe.query(&mut con).unwrap();
    assert_eq!(cmd("DBSIZE").query::<i64>(&mut con).unwrap(), 650);

    let (all, _) = scan_all(&mut con, &["COUNT", "7"]);
    assert_eq!(all.len(), 650);
    assert!(users.is_subset(&all) && hashes.is_subset(&all));

    let (matched, _) = scan_all(&mut con, &["MATCH", "user:1*"]);
    let expected: HashSet<String> = users.iter().filter(|key| key.starts_with("user:1")).cloned().collect();
    assert_eq!(matched, expected);

    let (typed, _) = scan_all(&mut con, &["TYPE", "hash", "COUNT", "50"]);
    assert_eq!(typed, hashes);
    let (typed_and_matched, _) = scan_all(&mut con, &["MATCH", "hash:9*", "TYPE", "HASH"]);
    assert_eq!(
        typed_and_matched,
        strings(&[
            "hash:9", "hash:90", "hash:91", "hash:92", "hash:93", "hash:94", "hash:95", "hash:96", "hash:97",
            "hash:98", "hash:99"
        ])
    );
    let (none, _) = scan_all(&mut con, &["TYPE", "list"]);
    assert!(none.is_empty());

    // A large COUNT finishes in fewer calls than a small one.
    let (_, calls_small) = scan_all(&mut con, &["COUNT", "5"]);
    let (_, calls_large) = scan_all(&mut con, &["COUNT", "10000"]);
    assert!(calls_large < calls_small, "COUNT 10000 took {calls_large} calls, COUNT 5 took {calls_small}");
}

#[test]
fn scan_refuses_a_bad_cursor_and_bad_options() {
    let server = TestServer::start();
    let mut con = server.connection();
    assert_eq!(query_error(&mut con, cmd("SCAN").arg("abc")), "ERR invalid cursor");
    assert_eq!(query_error(&mut con, cmd("SCAN").arg(0).arg("COUNT").arg(0)), "ERR syntax error");
    assert_eq!(query_error(&mut con, cmd("SCAN").arg(0).arg("FOO").arg("bar")), "ERR syntax error");
    assert_eq!(query_error(&mut con, cmd("SCAN").arg(0).arg("MATCH")), "ERR syntax error");
    assert_eq!(
        query_error(&mut con, cmd("SCAN").arg(0).arg("COUNT").arg("many")),
        "ERR value is not an integer or out of range"
    );
}

#[test]
fn keys_patterns_match_like_redis_globs() {
    let server = TestServer::start();
    let mut con = server.connection();
    for key in ["hello", "hallo", "hxllo", "hllo", "heeeello", "a[b", "a*b", "axb"] {
        let _: () = cmd("SET").arg(key).arg(1).query(&mut con).unwrap();
    }
    let keys = |con: &mut redis::Connection, pattern: &str| -> HashSet<String> {
        cmd("KEYS").arg(pattern).query::<Vec<String>>(con).unwrap().into_iter().collect()
    };
    assert_eq!(keys(&mut con, "h?llo"), strings(&["hello", "hallo", "hxllo"]));
    assert_eq!(keys(&mut con, "h*llo"), strings(&["hello", "hallo", "hxllo", "hllo", "heeeello"]));
    assert_eq!(keys(&mut con, "h[ae]llo"), strings(&["hello", "hallo"]));
    assert_eq!(keys(&mut con, "h[^e]llo"), strings(&["hallo", "hxllo"]));
    assert_eq!(keys(&mut con, "h[a-b]llo"), strings(&["hallo"]));
    assert_eq!(keys(&mut con, "a\\[b"), strings(&["a[b"]));
    assert_eq!(keys(&mut con, "a\\*b"), strings(&["a*b"]));
    assert_eq!(keys(&mut con, "a*b"), strings(&["a[b", "a*b", "axb"]));
    assert_eq!(keys(&mut con, "*").len(), 8);
    assert!(keys(&mut con, "nothing*").is_empty());
}

#[test]
fn rename_moves_the_value_with_its_ttl() {
    let server = TestServer::start();
    let mut con = server.connection();
    let _: () = cmd("SET").arg("from").arg("v").arg("EX").arg(1000).query(&mut con).unwrap();
    let _: () = cmd("HSET").arg("to").arg("f").arg("old").query(&mut con).unwrap();
    let _: () = cmd("RENAME").arg("from").arg("to").query(&mut con).unwrap();
    assert_eq!(cmd("EXISTS").arg("from").query::<i64>(&mut con).unwrap(), 0);
    assert_eq!(cmd("GET").arg("to").query::<String>(&mut con).unwrap(), "v");
    let ttl: i64 = cmd("TTL").arg("to").query(&mut con).unwrap();
    assert!((990..=1000).contains(&ttl), "TTL moved by RENAME: {ttl}");
    assert_eq!(query_error(&mut con, cmd("RENAME").arg("missing").arg("x")), "ERR no such key");
    // RENAME onto itself is OK; RENAMENX onto an existing key does nothing.
    let _: () = cmd("RENAME").arg("to").arg("to").query(&mut con).unwrap();
    let _: () = cmd("SET").arg("other").arg("o").query(&mut con).unwrap();
    assert_eq!(cmd("RENAMENX").arg("to").arg("other").query::<i64>(&mut con).unwrap(), 0);
    assert_eq!(cmd("GET").arg("other").query::<String>(&mut con).unwrap(), "o");
    assert_eq!(cmd("RENAMENX").arg("to").arg("fresh").query::<i64>(&mut con).unwrap(), 1);
    assert_eq!(cmd("GET").arg("fresh").query::<String>(&mut con).unwrap(), "v");
    assert_eq!(cmd("EXISTS").arg("to").query::<i64>(&mut con).unwrap(), 0);
}

#[test]
fn flushall_empties_the_keyspace() {
    let server = TestServer::start();
    let mut con = server.connection();
    for i in 0..20 {
        let _: () = cmd("SET").arg(format!("k{i}")).arg(i).query(&mut con).unwrap();
    }
    assert_eq!(cmd("DBSIZE").query::<i64>(&mut con).unwrap(), 20);
    let _: () = cmd("FLUSHALL").query(&mut con).unwrap();
    assert_eq!(cmd("DBSIZE").query::<i64>(&mut con).unwrap(), 0);
    assert!(cmd("KEYS").arg("*").query::<Vec<String>>(&mut con).unwrap().is_empty());
    let _: () = cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    let _: () = cmd("FLUSHDB").arg("ASYNC").query(&mut con).unwrap();
    assert_eq!(cmd("DBSIZE").query::<i64>(&mut con).unwrap(), 0);
    assert_eq!(query_error(&mut con, cmd("FLUSHALL").arg("LATER")), "ERR syntax error");
}

#[test]
fn multi_exec_runs_the_queued_commands_in_order() {
    let server = TestServer::start();
    let mut con = server.connection();
    let (set, incr, get): (String, i64, String) = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("n")
        .arg(10)
        .cmd("INCRBY")
        .arg("n")
        .arg(5)
        .cmd("GET")
        .arg("n")
        .query(&mut con)
        .unwrap();
    assert_eq!((set.as_str(), incr, get.as_str()), ("OK", 15, "15"));

    // The same on the wire: QUEUED for each command, then one array; a
    // failing command inside does not stop the others (no rollback).
    let mut raw = server.raw();
    assert_eq!(raw.command(&["MULTI"]), b"+OK\r\n");
    assert_eq!(raw.command(&["SET", "s", "text"]), b"+QUEUED\r\n");
    assert_eq!(raw.command(&["INCR", "s"]), b"+QUEUED\r\n");
    assert_eq!(raw.command(&["APPEND", "s", "!"]), b"+QUEUED\r\n");
    assert_eq!(raw.command_text(&["EXEC"]), "*3\r\n+OK\r\n-ERR value is not an integer or out of range\r\n:5\r\n");
    assert_eq!(cmd("GET").arg("s").query::<String>(&mut con).unwrap(), "text!");
    assert_eq!(raw.command_text(&["MULTI"]), "+OK\r\n");
    assert_eq!(raw.command_text(&["MULTI"]), "-ERR MULTI calls can not be nested\r\n");
    assert_eq!(raw.command_text(&["WATCH", "x"]), "-ERR WATCH inside MULTI is not allowed\r\n");
    assert_eq!(raw.command_text(&["SUBSCRIBE", "c"]), "-ERR SUBSCRIBE inside MULTI is not allowed\r\n");
    assert_eq!(raw.command_text(&["EXEC"]), "*0\r\n");
}

#[test]
fn discard_drops_the_queued_commands() {
    let server = TestServer::start();
    let mut raw = server.raw();
    assert_eq!(raw.command_text(&["EXEC"]), "-ERR EXEC without MULTI\r\n");
    assert_eq!(raw.command_text(&["DISCARD"]), "-ERR DISCARD without MULTI\r\n");
    assert_eq!(raw.command_text(&["MULTI"]), "+OK\r\n");
    assert_eq!(raw.command_text(&["SET", "x", "1"]), "+QUEUED\r\n");
    assert_eq!(raw.command_text(&["DISCARD"]), "+OK\r\n");
    assert_eq!(raw.command_text(&["GET", "x"]), "$-1\r\n");
    assert_eq!(raw.command_text(&["EXEC"]), "-ERR EXEC without MULTI\r\n");
}

#[test]
fn a_watched_key_modified_by_another_connection_aborts_exec() {
    let server = TestServer::start();
    let mut watcher = server.raw();
    let mut other = server.connection();
    let _: () = cmd("SET").arg("balance").arg(100).query(&mut other).unwrap();

    assert_eq!(watcher.command_text(&["WATCH", "balance"]), "+OK\r\n");
    assert_eq!(watcher.command_text(&["GET", "balance"]), "$3\r\n100\r\n");
    assert_eq!(watcher.command_text(&["MULTI"]), "+OK\r\n");
    assert_eq!(watcher.command_text(&["SET", "balance", "90"]), "+QUEUED\r\n");
    let _: () = cmd("SET").arg("balance").arg(200).query(&mut other).unwrap();
    assert_eq!(watcher.command_text(&["EXEC"]), "*-1\r\n", "EXEC must abort with a null array");
    assert_eq!(cmd("GET").arg("balance").query::<i64>(&mut other).unwrap(), 200);

    // EXEC ends the watch: the next transaction runs.
    assert_eq!(watcher.command_text(&["MULTI"]), "+OK\r\n");
    assert_eq!(watcher.command_text(&["SET", "balance", "90"]), "+QUEUED\r\n");
    assert_eq!(watcher.command_text(&["EXEC"]), "*1\r\n+OK\r\n");

    // A watched key nobody touches does not abort.
    assert_eq!(watcher.command_text(&["WATCH", "balance", "untouched"]), "+OK\r\n");
    let _: () = cmd("SET").arg("unrelated").arg(1).query(&mut other).unwrap();
    assert_eq!(watcher.command_text(&["MULTI"]), "+OK\r\n");
    assert_eq!(watcher.command_text(&["INCR", "balance"]), "+QUEUED\r\n");
    assert_eq!(watcher.command_text(&["EXEC"]), "*1\r\n:91\r\n");

    // Deleting a watched key, and creating one that was missing, both abort.
    for change in [&["DEL", "balance"][..], &["SET", "untouched", "now"]] {
        assert_eq!(watcher.command_text(&["WATCH", "balance", "untouched"]), "+OK\r\n");
        let _: () = cmd(change[0]).arg(&change[1..]).query(&mut other).unwrap();
        assert_eq!(watcher.command_text(&["MULTI"]), "+OK\r\n");
        assert_eq!(watcher.command_text(&["SET", "marker", "ran"]), "+QUEUED\r\n");
        assert_eq!(watcher.command_text(&["EXEC"]), "*-1\r\n", "after {change:?}");
    }
    assert_eq!(cmd("EXISTS").arg("marker").query::<i64>(&mut other).unwrap(), 0);
    // The redis crate sees the abort as nil.
    let _: () = cmd("WATCH").arg("k").query(&mut other).unwrap();
    let mut third = server.connection();
    let _: () = cmd("SET").arg("k").arg("changed").query(&mut third).unwrap();
    let aborted: Value = redis::pipe().atomic().cmd("SET").arg("k").arg("mine").query(&mut other).unwrap();
    assert_eq!(aborted, Value::Nil);
}

#[test]
fn a_queued_unknown_command_makes_exec_abort() {
    let server = TestServer::start();
    let mut raw = server.raw();
    assert_eq!(raw.command_text(&["MULTI"]), "+OK\r\n");
    assert_eq!(raw.command_text(&["SET", "a", "1"]), "+QUEUED\r\n");
    let unknown = raw.command_text(&["NOSUCHCOMMAND", "x"]);
    assert!(unknown.starts_with("-ERR unknown command 'NOSUCHCOMMAND'"), "{unknown:?}");
    assert_eq!(raw.command_text(&["SET", "b", "2"]), "+QUEUED\r\n");
    assert_eq!(raw.command_text(&["EXEC"]), "-EXECABORT Transaction discarded because of previous errors.\r\n");
    assert_eq!(raw.command_text(&["EXISTS", "a", "b"]), ":0\r\n");

    // A wrong arity inside MULTI aborts the same way.
    assert_eq!(raw.command_text(&["MULTI"]), "+OK\r\n");
    assert_eq!(raw.command_text(&["SET", "a", "1"]), "+QUEUED\r\n");
    assert_eq!(raw.command_text(&["GET"]), "-ERR wrong number of arguments for 'get' command\r\n");
    assert_eq!(raw.command_text(&["EXEC"]), "-EXECABORT Transaction discarded because of previous errors.\r\n");
    assert_eq!(raw.command_text(&["EXISTS", "a"]), ":0\r\n");

    // Through the redis crate the transaction fails as a whole, too.
    let mut con = server.connection();
    let result = redis::pipe().atomic().cmd("SET").arg("c").arg(1).cmd("NOSUCHCOMMAND").query::<Value>(&mut con);
    assert!(result.is_err(), "{result:?}");
    assert_eq!(cmd("EXISTS").arg("c").query::<i64>(&mut con).unwrap(), 0);
}

#[test]
fn copy_duplicates_value_and_expiry_and_survives_a_restart() {
    let mut server = TestServer::start();
    let mut con = server.connection();
    let _: () = cmd("HSET").arg("profile").arg(&["name", "ada", "lang", "rust"]).query(&mut con).unwrap();
    let _: i64 = cmd("EXPIRE").arg("profile").arg(1000).query(&mut con).unwrap();
    let _: i64 = cmd("ZADD").arg("board").arg(&["1", "a", "2", "b"]).query(&mut con).unwrap();
    assert_eq!(cmd("COPY").arg("profile").arg("backup").query::<i64>(&mut con).unwrap(), 1);
    assert_eq!(cmd("COPY").arg("board").arg("backup").query::<i64>(&mut con).unwrap(), 0, "no REPLACE");
    assert_eq!(cmd("COPY").arg("board").arg("board2").arg("DB").arg(0).query::<i64>(&mut con).unwrap(), 1);
    assert_eq!(cmd("COPY").arg("missing").arg("x").query::<i64>(&mut con).unwrap(), 0);
    assert_eq!(
        query_error(&mut con, cmd("COPY").arg("board").arg("x").arg("DB").arg(3)),
        "ERR DB index is out of range"
    );
    let ttl: i64 = cmd("TTL").arg("backup").query(&mut con).unwrap();
    assert!(ttl > 990 && ttl <= 1000, "the expiry is copied: {ttl}");
    // The copy is its own value: changing it leaves the original alone.
    let _: i64 = cmd("HSET").arg("backup").arg("lang").arg("c").query(&mut con).unwrap();
    drop(con);
    server.stop();
    server.restart();
    let mut con = server.connection();
    let original: HashMap<String, String> = cmd("HGETALL").arg("profile").query(&mut con).unwrap();
    let copy: HashMap<String, String> = cmd("HGETALL").arg("backup").query(&mut con).unwrap();
    assert_eq!(original["lang"], "rust");
    assert_eq!(copy["lang"], "c");
    assert_eq!(copy["name"], "ada");
    let board: Vec<(String, f64)> =
        cmd("ZRANGE").arg("board2").arg(0).arg(-1).arg("WITHSCORES").query(&mut con).unwrap();
    assert_eq!(board, [("a".to_string(), 1.0), ("b".to_string(), 2.0)]);
}

#[test]
fn dump_moves_a_key_to_another_server_where_restore_makes_it_durable() {
    let source = TestServer::start();
    let mut from = source.connection();
    let _: i64 = cmd("ZADD").arg("board").arg(&["1.5", "a", "2", "b"]).query(&mut from).unwrap();
    let _: i64 = cmd("RPUSH").arg("queue").arg(&["x", "y"]).query(&mut from).unwrap();
    let board: Vec<u8> = cmd("DUMP").arg("board").query(&mut from).unwrap();
    let queue: Vec<u8> = cmd("DUMP").arg("queue").query(&mut from).unwrap();
    let missing: Option<Vec<u8>> = cmd("DUMP").arg("nothing").query(&mut from).unwrap();
    assert_eq!(missing, None);

    let mut target = TestServer::start();
    let mut to = target.connection();
    let _: () = cmd("RESTORE").arg("board").arg(0).arg(&board).query(&mut to).unwrap();
    let _: () = cmd("RESTORE").arg("queue").arg(100_000).arg(&queue).query(&mut to).unwrap();
    assert_eq!(
        query_error(&mut to, cmd("RESTORE").arg("board").arg(0).arg(&board)),
        "BUSYKEY Target key name already exists."
    );
    let mut damaged = board.clone();
    damaged[2] ^= 0xff;
    assert_eq!(
        query_error(&mut to, cmd("RESTORE").arg("other").arg(0).arg(&damaged)),
        "ERR DUMP payload version or checksum are wrong"
    );
    drop(to);
    target.kill9();
    target.restart();
    let mut to = target.connection();
    let restored: Vec<(String, f64)> =
        cmd("ZRANGE").arg("board").arg(0).arg(-1).arg("WITHSCORES").query(&mut to).unwrap();
    assert_eq!(restored, [("a".to_string(), 1.5), ("b".to_string(), 2.0)]);
    let items: Vec<String> = cmd("LRANGE").arg("queue").arg(0).arg(-1).query(&mut to).unwrap();
    assert_eq!(items, ["x", "y"]);
    let ttl: i64 = cmd("PTTL").arg("queue").query(&mut to).unwrap();
    assert!(ttl > 90_000 && ttl <= 100_000, "the TTL given to RESTORE: {ttl}");
    assert_eq!(cmd("EXISTS").arg("other").query::<i64>(&mut to).unwrap(), 0, "a damaged payload loads nothing");
}

#[test]
fn sort_by_other_keys_with_lookups_and_a_stored_result() {
    let mut server = TestServer::start();
    let mut con = server.connection();
    let _: i64 = cmd("RPUSH").arg("ids").arg(&["1", "2", "3"]).query(&mut con).unwrap();
    let _: () = cmd("MSET").arg(&["rank_1", "20", "rank_2", "5", "rank_3", "12"]).query(&mut con).unwrap();
    let _: () = cmd("HSET").arg("item:1").arg("name").arg("one").query(&mut con).unwrap();
    let _: () = cmd("HSET").arg("item:2").arg("name").arg("two").query(&mut con).unwrap();
    let by_rank: Vec<String> = cmd("SORT").arg("ids").arg("BY").arg("rank_*").arg("DESC").query(&mut con).unwrap();
    assert_eq!(by_rank, ["1", "3", "2"]);
    let names: Vec<Option<String>> =
        cmd("SORT_RO").arg("ids").arg("BY").arg("rank_*").arg("GET").arg("item:*->name").query(&mut con).unwrap();
    assert_eq!(names, [Some("two".to_string()), None, Some("one".to_string())]);
    let stored: i64 =
        cmd("SORT").arg("ids").arg("LIMIT").arg(0).arg(2).arg("STORE").arg("top").query(&mut con).unwrap();
    assert_eq!(stored, 2);
    drop(con);
    server.stop();
    server.restart();
    let mut con = server.connection();
    let top: Vec<String> = cmd("LRANGE").arg("top").arg(0).arg(-1).query(&mut con).unwrap();
    assert_eq!(top, ["1", "2"]);
}

#[test]
fn object_reports_encodings_and_move_refuses_as_with_one_database() {
    let server = TestServer::start();
    let mut con = server.connection();
    let _: () = cmd("SET").arg("counter").arg(42).query(&mut con).unwrap();
    let _: () = cmd("SET").arg("name").arg("ada").query(&mut con).unwrap();
    let _: i64 = cmd("SADD").arg("ids").arg(&[1, 2, 3]).query(&mut con).unwrap();
    let _: i64 = cmd("ZADD").arg("board").arg(&["1", "a"]).query(&mut con).unwrap();
    for (key, expected) in [("counter", "int"), ("name", "embstr"), ("ids", "intset"), ("board", "listpack")] {
        let encoding: String = cmd("OBJECT").arg("ENCODING").arg(key).query(&mut con).unwrap();
        assert_eq!(encoding, expected, "{key}");
    }
    let missing: Option<String> = cmd("OBJECT").arg("ENCODING").arg("missing").query(&mut con).unwrap();
    assert_eq!(missing, None);
    assert_eq!(cmd("OBJECT").arg("REFCOUNT").arg("name").query::<i64>(&mut con).unwrap(), 1);
    let help: Vec<String> = cmd("OBJECT").arg("HELP").query(&mut con).unwrap();
    assert!(help[0].starts_with("OBJECT <subcommand>"), "{help:?}");
    assert_eq!(
        query_error(&mut con, cmd("MOVE").arg("name").arg(0)),
        "ERR source and destination objects are the same"
    );
    assert_eq!(query_error(&mut con, cmd("MOVE").arg("name").arg(1)), "ERR DB index is out of range");
    assert_eq!(cmd("GET").arg("name").query::<String>(&mut con).unwrap(), "ada");
}

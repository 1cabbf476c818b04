//! Sorted set commands through the `redis` crate and raw RESP3 against a
//! real `tandem` process: scores and ranks, every kind of range, pops, the
//! algebra over sorted and plain sets, errors, ZSCAN completeness, and the
//! state surviving a `kill -9` from a checkpoint plus the log after it.

mod common;

use std::collections::HashSet;

use common::{query_error, RawConnection, TestServer};
use redis::cmd;

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

fn with_scores(con: &mut redis::Connection, key: &str) -> Vec<(String, f64)> {
    cmd("ZRANGE").arg(key).arg(0).arg(-1).arg("WITHSCORES").query(con).unwrap()
}

fn pairs(items: &[(&str, f64)]) -> Vec<(String, f64)> {
    items.iter().map(|(member, score)| (member.to_string(), *score)).collect()
}

#[test]
fn scores_ranks_and_updates_follow_redis() {
    let server = TestServer::start();
    let mut con = server.connection();
    let added: i64 = cmd("ZADD").arg("z").arg(&["3", "c", "1", "a", "2", "b", "2", "bb"]).query(&mut con).unwrap();
    assert_eq!(added, 4);
    assert_eq!(with_scores(&mut con, "z"), pairs(&[("a", 1.0), ("b", 2.0), ("bb", 2.0), ("c", 3.0)]));
    // CH counts changes; NX adds only; XX updates only; GT moves scores up only.
    let changed: i64 = cmd("ZADD").arg("z").arg("CH").arg(&["5", "a", "2", "b", "9", "d"]).query(&mut con).unwrap();
    assert_eq!(changed, 2);
    assert_eq!(cmd("ZADD").arg("z").arg("NX").arg(&["0", "a", "0", "e"]).query::<i64>(&mut con).unwrap(), 1);
    assert_eq!(cmd("ZADD").arg("z").arg("XX").arg(&["7", "a", "7", "f"]).query::<i64>(&mut con).unwrap(), 0);
    assert_eq!(cmd("ZADD").arg("z").arg("GT").arg("CH").arg(&["1", "a", "10", "c"]).query::<i64>(&mut con).unwrap(), 1);
    assert_eq!(cmd("ZSCORE").arg("z").arg("a").query::<f64>(&mut con).unwrap(), 7.0);
    assert_eq!(cmd("ZADD").arg("z").arg("INCR").arg(&["0.5", "a"]).query::<f64>(&mut con).unwrap(), 7.5);
    assert_eq!(cmd("ZINCRBY").arg("z").arg("-10").arg("a").query::<f64>(&mut con).unwrap(), -2.5);
    let aborted: Option<f64> = cmd("ZADD").arg("z").arg("NX").arg("INCR").arg(&["1", "a"]).query(&mut con).unwrap();
    assert_eq!(aborted, None);
    assert_eq!(cmd("ZRANK").arg("z").arg("a").query::<i64>(&mut con).unwrap(), 0);
    assert_eq!(cmd("ZREVRANK").arg("z").arg("c").query::<i64>(&mut con).unwrap(), 0);
    assert_eq!(cmd("ZRANK").arg("z").arg("nope").query::<Option<i64>>(&mut con).unwrap(), None);
    let scores: Vec<Option<f64>> = cmd("ZMSCORE").arg("z").arg(&["b", "nope", "d"]).query(&mut con).unwrap();
    assert_eq!(scores, [Some(2.0), None, Some(9.0)]);
    assert_eq!(cmd("ZCARD").arg("z").query::<i64>(&mut con).unwrap(), 6);
    assert_eq!(cmd("ZREM").arg("z").arg(&["e", "e", "nope"]).query::<i64>(&mut con).unwrap(), 1);
    // Infinite scores are scores; a NaN result is refused and changes nothing.
    let _: i64 = cmd("ZADD").arg("z").arg(&["+inf", "top"]).query(&mut con).unwrap();
    assert_eq!(
        query_error(&mut con, cmd("ZINCRBY").arg("z").arg("-inf").arg("top")),
        "ERR resulting score is not a number (NaN)"
    );
    assert_eq!(cmd("ZSCORE").arg("z").arg("top").query::<String>(&mut con).unwrap(), "inf");
    // Errors with Redis's texts, before anything changes.
    assert_eq!(query_error(&mut con, cmd("ZADD").arg("z").arg(&["x", "a"])), "ERR value is not a valid float");
    assert_eq!(query_error(&mut con, cmd("ZADD").arg("z").arg(&["1", "a", "2"])), "ERR syntax error");
    assert_eq!(
        query_error(&mut con, cmd("ZADD").arg("z").arg("NX").arg("XX").arg(&["1", "a"])),
        "ERR XX and NX options at the same time are not compatible"
    );
    assert_eq!(
        query_error(&mut con, cmd("ZADD").arg("z").arg("INCR").arg(&["1", "a", "1", "b"])),
        "ERR INCR option supports a single increment-element pair"
    );
    let _: () = cmd("SET").arg("text").arg("x").query(&mut con).unwrap();
    assert_eq!(query_error(&mut con, cmd("ZADD").arg("text").arg(&["1", "a"])), WRONGTYPE);
    assert_eq!(query_error(&mut con, cmd("ZRANGE").arg("text").arg(0).arg(-1)), WRONGTYPE);
    assert_eq!(cmd("TYPE").arg("z").query::<String>(&mut con).unwrap(), "zset");
    // The last member removed removes the key.
    let _: i64 = cmd("ZADD").arg("one").arg(&["1", "m"]).query(&mut con).unwrap();
    assert_eq!(cmd("ZREM").arg("one").arg("m").query::<i64>(&mut con).unwrap(), 1);
    assert!(!cmd("EXISTS").arg("one").query::<bool>(&mut con).unwrap());
}

#[test]
fn ranges_by_rank_score_and_member_with_limits() {
    let server = TestServer::start();
    let mut con = server.connection();
    let _: i64 = cmd("ZADD").arg("z").arg(&["1", "a", "2", "b", "3", "c", "4", "d", "5", "e"]).query(&mut con).unwrap();
    let range = |con: &mut redis::Connection, args: &[&str]| -> Vec<String> {
        cmd(args[0]).arg(&args[1..]).query(con).unwrap()
    };
    assert_eq!(range(&mut con, &["ZRANGE", "z", "1", "-2"]), ["b", "c", "d"]);
    assert_eq!(range(&mut con, &["ZRANGE", "z", "0", "1", "REV"]), ["e", "d"]);
    assert_eq!(range(&mut con, &["ZREVRANGE", "z", "0", "1"]), ["e", "d"]);
    assert_eq!(range(&mut con, &["ZRANGE", "z", "(1", "3", "BYSCORE"]), ["b", "c"]);
    assert_eq!(range(&mut con, &["ZRANGE", "z", "+inf", "(1", "BYSCORE", "REV", "LIMIT", "1", "2"]), ["d", "c"]);
    assert_eq!(range(&mut con, &["ZRANGEBYSCORE", "z", "-inf", "+inf", "LIMIT", "3", "-1"]), ["d", "e"]);
    assert_eq!(range(&mut con, &["ZREVRANGEBYSCORE", "z", "4", "2"]), ["d", "c", "b"]);
    assert_eq!(cmd("ZCOUNT").arg("z").arg("(2").arg("+inf").query::<i64>(&mut con).unwrap(), 3);
    let scored: Vec<(String, f64)> =
        cmd("ZRANGEBYSCORE").arg("z").arg(2).arg(3).arg("WITHSCORES").query(&mut con).unwrap();
    assert_eq!(scored, pairs(&[("b", 2.0), ("c", 3.0)]));
    assert_eq!(query_error(&mut con, cmd("ZRANGEBYSCORE").arg("z").arg("x").arg(3)), "ERR min or max is not a float");
    assert_eq!(
        query_error(&mut con, cmd("ZRANGE").arg("z").arg(0).arg(1).arg("LIMIT").arg(0).arg(1)),
        "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
    );
    // Member ranges over one score.
    let _: i64 =
        cmd("ZADD").arg("lex").arg(&["0", "apple", "0", "banana", "0", "cherry", "0", "date"]).query(&mut con).unwrap();
    assert_eq!(range(&mut con, &["ZRANGEBYLEX", "lex", "[banana", "(date"]), ["banana", "cherry"]);
    assert_eq!(range(&mut con, &["ZREVRANGEBYLEX", "lex", "+", "-", "LIMIT", "0", "2"]), ["date", "cherry"]);
    assert_eq!(range(&mut con, &["ZRANGE", "lex", "(apple", "+", "BYLEX"]), ["banana", "cherry", "date"]);
    assert_eq!(cmd("ZLEXCOUNT").arg("lex").arg("-").arg("[b").query::<i64>(&mut con).unwrap(), 1);
    assert_eq!(
        query_error(&mut con, cmd("ZRANGEBYLEX").arg("lex").arg("banana").arg("+")),
        "ERR min or max not valid string range item"
    );
    // Removal by each kind of range.
    assert_eq!(cmd("ZREMRANGEBYLEX").arg("lex").arg("-").arg("(c").query::<i64>(&mut con).unwrap(), 2);
    assert_eq!(cmd("ZREMRANGEBYRANK").arg("z").arg(0).arg(1).query::<i64>(&mut con).unwrap(), 2);
    assert_eq!(cmd("ZREMRANGEBYSCORE").arg("z").arg("(3").arg("4").query::<i64>(&mut con).unwrap(), 1);
    assert_eq!(range(&mut con, &["ZRANGE", "z", "0", "-1"]), ["c", "e"]);
    assert_eq!(cmd("ZRANGESTORE").arg("copy").arg("z").arg(0).arg(0).query::<i64>(&mut con).unwrap(), 1);
    assert_eq!(with_scores(&mut con, "copy"), pairs(&[("c", 3.0)]));
}

#[test]
fn pops_random_members_and_zscan() {
    let server = TestServer::start();
    let mut con = server.connection();
    let _: i64 = cmd("ZADD").arg("p").arg(&["1", "a", "2", "b", "3", "c", "4", "d"]).query(&mut con).unwrap();
    assert_eq!(cmd("ZPOPMIN").arg("p").query::<(String, f64)>(&mut con).unwrap(), ("a".to_string(), 1.0));
    assert_eq!(
        cmd("ZPOPMAX").arg("p").arg(2).query::<Vec<(String, f64)>>(&mut con).unwrap(),
        pairs(&[("d", 4.0), ("c", 3.0)])
    );
    let popped: (String, Vec<(String, f64)>) =
        cmd("ZMPOP").arg(2).arg("missing").arg("p").arg("MIN").arg("COUNT").arg(5).query(&mut con).unwrap();
    assert_eq!(popped, ("p".to_string(), pairs(&[("b", 2.0)])));
    assert!(!cmd("EXISTS").arg("p").query::<bool>(&mut con).unwrap());
    assert_eq!(cmd("ZMPOP").arg(1).arg("p").arg("MAX").query::<Option<String>>(&mut con).unwrap(), None);
    assert_eq!(query_error(&mut con, cmd("ZPOPMIN").arg("p").arg(-1)), "ERR value is out of range, must be positive");

    let members: Vec<String> = (0..300).map(|index| format!("m{index}")).collect();
    let mut zadd = cmd("ZADD");
    zadd.arg("big");
    for (index, member) in members.iter().enumerate() {
        zadd.arg(index).arg(member);
    }
    assert_eq!(zadd.query::<i64>(&mut con).unwrap(), 300);
    let picked: Vec<String> = cmd("ZRANDMEMBER").arg("big").arg(20).query(&mut con).unwrap();
    assert_eq!(picked.iter().collect::<HashSet<_>>().len(), 20, "distinct");
    assert!(picked.iter().all(|member| members.contains(member)));
    let repeated: Vec<(String, f64)> =
        cmd("ZRANDMEMBER").arg("big").arg(-500).arg("WITHSCORES").query(&mut con).unwrap();
    assert_eq!(repeated.len(), 500);
    assert!(repeated.iter().all(|(member, score)| members[*score as usize] == *member));
    // ZSCAN visits every member once, with its score.
    let mut seen = Vec::new();
    let mut cursor = "0".to_string();
    for _ in 0..10_000 {
        let (next, items): (String, Vec<(String, f64)>) =
            cmd("ZSCAN").arg("big").arg(&cursor).arg("COUNT").arg(7).query(&mut con).unwrap();
        seen.extend(items);
        cursor = next;
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(cursor, "0", "ZSCAN finished");
    seen.sort_by(|left, right| left.1.total_cmp(&right.1));
    let expected: Vec<(String, f64)> =
        members.iter().enumerate().map(|(index, member)| (member.clone(), index as f64)).collect();
    assert_eq!(seen, expected);
}

#[test]
fn union_intersection_and_difference_over_sorted_and_plain_sets() {
    let server = TestServer::start();
    let mut con = server.connection();
    let _: i64 = cmd("ZADD").arg("a").arg(&["1", "x", "2", "y", "3", "z"]).query(&mut con).unwrap();
    let _: i64 = cmd("ZADD").arg("b").arg(&["10", "y", "20", "z", "30", "w"]).query(&mut con).unwrap();
    let _: i64 = cmd("SADD").arg("plain").arg(&["z", "w"]).query(&mut con).unwrap();
    let union: Vec<(String, f64)> = cmd("ZUNION")
        .arg(2)
        .arg("a")
        .arg("b")
        .arg("WEIGHTS")
        .arg(2)
        .arg(0.5)
        .arg("WITHSCORES")
        .query(&mut con)
        .unwrap();
    assert_eq!(union, pairs(&[("x", 2.0), ("y", 9.0), ("w", 15.0), ("z", 16.0)]));
    let inter: Vec<(String, f64)> = cmd("ZINTER")
        .arg(3)
        .arg("a")
        .arg("b")
        .arg("plain")
        .arg("AGGREGATE")
        .arg("MAX")
        .arg("WITHSCORES")
        .query(&mut con)
        .unwrap();
    assert_eq!(inter, pairs(&[("z", 20.0)]));
    let diff: Vec<String> = cmd("ZDIFF").arg(2).arg("b").arg("a").query(&mut con).unwrap();
    assert_eq!(diff, ["w"]);
    assert_eq!(cmd("ZINTERCARD").arg(2).arg("a").arg("b").query::<i64>(&mut con).unwrap(), 2);
    // A STORE form may overwrite one of its sources.
    assert_eq!(cmd("ZUNIONSTORE").arg("a").arg(2).arg("a").arg("plain").query::<i64>(&mut con).unwrap(), 4);
    assert_eq!(with_scores(&mut con, "a"), pairs(&[("w", 1.0), ("x", 1.0), ("y", 2.0), ("z", 4.0)]));
    assert_eq!(cmd("ZINTERSTORE").arg("i").arg(2).arg("a").arg("missing").query::<i64>(&mut con).unwrap(), 0);
    assert!(!cmd("EXISTS").arg("i").query::<bool>(&mut con).unwrap());
    let _: () = cmd("SET").arg("text").arg("x").query(&mut con).unwrap();
    assert_eq!(query_error(&mut con, cmd("ZUNION").arg(2).arg("a").arg("text")), WRONGTYPE);
    assert_eq!(
        query_error(&mut con, cmd("ZUNION").arg(0).arg("a")),
        "ERR at least 1 input key is needed for 'zunion' command"
    );
    assert_eq!(
        query_error(&mut con, cmd("ZINTER").arg(2).arg("a").arg("b").arg("WEIGHTS").arg(1).arg("x")),
        "ERR weight value is not a float"
    );
}

#[test]
fn resp3_nests_score_pairs_and_sends_doubles() {
    let server = TestServer::start();
    let mut raw = RawConnection::connect(server.addr());
    raw.command(&["HELLO", "3"]);
    raw.command(&["ZADD", "z", "1.5", "a", "2", "b"]);
    assert_eq!(raw.command_text(&["ZSCORE", "z", "a"]), ",1.5\r\n");
    assert_eq!(
        raw.command_text(&["ZRANGE", "z", "0", "-1", "WITHSCORES"]),
        "*2\r\n*2\r\n$1\r\na\r\n,1.5\r\n*2\r\n$1\r\nb\r\n,2\r\n"
    );
    // Without a count a pop replies one flat pair, as Redis does.
    assert_eq!(raw.command_text(&["ZPOPMIN", "z"]), "*2\r\n$1\r\na\r\n,1.5\r\n");
    let mut resp2 = RawConnection::connect(server.addr());
    assert_eq!(resp2.command_text(&["ZRANGE", "z", "0", "-1", "WITHSCORES"]), "*2\r\n$1\r\nb\r\n$1\r\n2\r\n");
}

#[test]
fn sorted_sets_survive_kill_9_from_a_checkpoint_and_the_log_after_it() {
    let mut server = TestServer::start();
    let mut con = server.connection();
    for key in 0..50 {
        let mut zadd = cmd("ZADD");
        zadd.arg(format!("board:{key}"));
        for member in 0..20 {
            zadd.arg(format!("{}.25", member * key)).arg(format!("player:{member}"));
        }
        let _: i64 = zadd.query(&mut con).unwrap();
    }
    let _: i64 = cmd("CHECKPOINT").arg("FULL").query(&mut con).unwrap();
    // After the checkpoint: only in the log.
    let _: f64 = cmd("ZINCRBY").arg("board:7").arg(1000).arg("player:3").query(&mut con).unwrap();
    let _: i64 = cmd("ZREM").arg("board:8").arg("player:0").query(&mut con).unwrap();
    let _: i64 = cmd("ZUNIONSTORE").arg("total").arg(2).arg("board:1").arg("board:2").query(&mut con).unwrap();
    let _: i64 = cmd("CHECKPOINT").query(&mut con).unwrap();
    let _: i64 = cmd("ZADD").arg("board:9").arg(&["-inf", "last"]).query(&mut con).unwrap();
    let everything = |con: &mut redis::Connection| -> Vec<Vec<(String, f64)>> {
        let keys = (0..50).map(|key| format!("board:{key}")).chain(["total".to_string()]);
        keys.map(|key| with_scores(con, &key)).collect()
    };
    let before = everything(&mut con);
    drop(con);
    server.kill9();
    server.restart();
    let mut con = server.connection();
    assert_eq!(everything(&mut con), before);
    assert_eq!(cmd("ZSCORE").arg("board:7").arg("player:3").query::<f64>(&mut con).unwrap(), 1021.25);
    assert_eq!(cmd("ZRANK").arg("board:9").arg("last").query::<i64>(&mut con).unwrap(), 0);
    assert_eq!(cmd("ZCARD").arg("board:8").query::<i64>(&mut con).unwrap(), 19);
}

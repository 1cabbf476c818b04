//! Blocking pops against a real `tandem` process: a client blocked in
//! BLPOP, BZPOPMIN, BLMOVE or BLMPOP is served by another client's push, in
//! the order the clients blocked; timeouts reply nil; requests pipelined
//! behind a blocked one wait for it; MULTI never blocks; a client that goes
//! away or is killed stops waiting; and a pop, being a write, survives a
//! restart.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{poll_until, query_error, RawConnection, TestServer};
use redis::cmd;

const WITHIN: Duration = Duration::from_secs(10);

fn blocked_clients(con: &mut redis::Connection) -> u64 {
    let info: String = cmd("INFO").arg("clients").query(con).unwrap();
    let line = info.lines().find(|line| line.starts_with("blocked_clients:")).expect("blocked_clients in INFO");
    line["blocked_clients:".len()..].trim().parse().unwrap()
}

fn wait_blocked(con: &mut redis::Connection, count: u64) {
    poll_until(WITHIN, &format!("{count} blocked clients"), || blocked_clients(con) == count);
}

/// Runs `command` on a connection of its own, in a thread.
fn in_background<T: redis::FromRedisValue + Send + 'static>(
    server: &TestServer,
    command: redis::Cmd,
) -> thread::JoinHandle<T> {
    let mut con = server.connection();
    thread::spawn(move || command.query(&mut con).unwrap())
}

#[test]
fn a_push_serves_the_blocked_clients_in_the_order_they_blocked() {
    let server = TestServer::start();
    let mut con = server.connection();
    let first = in_background::<(String, String)>(&server, cmd("BLPOP").arg("jobs").arg(0).clone());
    wait_blocked(&mut con, 1);
    let second = in_background::<(String, String)>(&server, cmd("BLPOP").arg("other").arg("jobs").arg(0).clone());
    wait_blocked(&mut con, 2);
    let _: i64 = cmd("RPUSH").arg("jobs").arg(&["a", "b"]).query(&mut con).unwrap();
    assert_eq!(first.join().unwrap(), ("jobs".to_string(), "a".to_string()));
    assert_eq!(second.join().unwrap(), ("jobs".to_string(), "b".to_string()));
    assert_eq!(blocked_clients(&mut con), 0);
    assert!(!cmd("EXISTS").arg("jobs").query::<bool>(&mut con).unwrap(), "both popped");
}

#[test]
fn every_blocking_pop_wakes_on_the_write_it_waits_for() {
    let server = TestServer::start();
    let mut con = server.connection();
    let zpop = in_background::<(String, String, f64)>(&server, cmd("BZPOPMIN").arg("board").arg(0).clone());
    let moved =
        in_background::<String>(&server, cmd("BLMOVE").arg("in").arg("out").arg("LEFT").arg("RIGHT").arg(0).clone());
    let mpop = in_background::<(String, Vec<String>)>(
        &server,
        cmd("BLMPOP").arg(0).arg(2).arg("x").arg("y").arg("RIGHT").arg("COUNT").arg(2).clone(),
    );
    wait_blocked(&mut con, 3);
    let _: i64 = cmd("ZADD").arg("board").arg(&["5", "five", "1", "one"]).query(&mut con).unwrap();
    let _: i64 = cmd("LPUSH").arg("in").arg("item").query(&mut con).unwrap();
    let _: i64 = cmd("RPUSH").arg("y").arg(&["1", "2", "3"]).query(&mut con).unwrap();
    assert_eq!(zpop.join().unwrap(), ("board".to_string(), "one".to_string(), 1.0));
    assert_eq!(moved.join().unwrap(), "item");
    assert_eq!(mpop.join().unwrap(), ("y".to_string(), vec!["3".to_string(), "2".to_string()]));
    let out: Vec<String> = cmd("LRANGE").arg("out").arg(0).arg(-1).query(&mut con).unwrap();
    assert_eq!(out, ["item"]);
    // A write to another key, or of another kind, leaves a blocked client waiting.
    let waiting = in_background::<Option<(String, String)>>(&server, cmd("BRPOP").arg("queue").arg(0).clone());
    wait_blocked(&mut con, 1);
    let _: () = cmd("SET").arg("unrelated").arg("x").query(&mut con).unwrap();
    let _: i64 = cmd("DEL").arg("queue").query(&mut con).unwrap();
    thread::sleep(Duration::from_millis(100));
    assert_eq!(blocked_clients(&mut con), 1);
    let _: i64 = cmd("RPUSH").arg("queue").arg("last").query(&mut con).unwrap();
    assert_eq!(waiting.join().unwrap(), Some(("queue".to_string(), "last".to_string())));
}

#[test]
fn a_timeout_replies_nil_and_requests_behind_a_blocked_one_wait_for_it() {
    let server = TestServer::start();
    let mut con = server.connection();
    let started = Instant::now();
    let reply: Option<(String, String)> = cmd("BLPOP").arg("empty").arg(0.2).query(&mut con).unwrap();
    assert_eq!(reply, None);
    // A lower bound only: the server must not give up before the timeout.
    assert!(started.elapsed() >= Duration::from_millis(200), "replied after {:?}", started.elapsed());
    assert_eq!(query_error(&mut con, cmd("BLPOP").arg("empty").arg(-1)), "ERR timeout is negative");

    let mut raw = RawConnection::connect(server.addr());
    raw.send(b"BLPOP q 0\r\nPING\r\n");
    wait_blocked(&mut con, 1);
    let _: i64 = cmd("RPUSH").arg("q").arg("v").query(&mut con).unwrap();
    assert_eq!(raw.read_frame(), b"*2\r\n$1\r\nq\r\n$1\r\nv\r\n");
    assert_eq!(raw.read_frame(), b"+PONG\r\n");
}

#[test]
fn multi_never_blocks_and_departed_or_killed_clients_stop_waiting() {
    let server = TestServer::start();
    let mut con = server.connection();
    let mut raw = RawConnection::connect(server.addr());
    assert_eq!(raw.command_text(&["MULTI"]), "+OK\r\n");
    assert_eq!(raw.command_text(&["BLPOP", "nothing", "0"]), "+QUEUED\r\n");
    assert_eq!(raw.command_text(&["BLMOVE", "nothing", "x", "LEFT", "LEFT", "0"]), "+QUEUED\r\n");
    assert_eq!(raw.command_text(&["EXEC"]), "*2\r\n*-1\r\n$-1\r\n");

    let mut leaving = RawConnection::connect(server.addr());
    leaving.send(b"BLPOP gone 0\r\n");
    wait_blocked(&mut con, 1);
    drop(leaving);
    wait_blocked(&mut con, 0);

    let mut victim = RawConnection::connect(server.addr());
    let id = victim.command_text(&["CLIENT", "ID"]);
    let id = id.trim_start_matches(':').trim().to_string();
    victim.send(b"BZPOPMAX gone 0\r\n");
    wait_blocked(&mut con, 1);
    assert_eq!(cmd("CLIENT").arg("KILL").arg("ID").arg(&id).query::<i64>(&mut con).unwrap(), 1);
    wait_blocked(&mut con, 0);
    assert!(victim.try_read_frame().is_none(), "the killed client's connection is closed");
}

#[test]
fn a_served_pop_is_a_logged_write() {
    let mut server = TestServer::start();
    let mut con = server.connection();
    let popper = in_background::<(String, String)>(&server, cmd("BRPOP").arg("q").arg(0).clone());
    wait_blocked(&mut con, 1);
    let _: i64 = cmd("RPUSH").arg("q").arg(&["keep", "take"]).query(&mut con).unwrap();
    assert_eq!(popper.join().unwrap(), ("q".to_string(), "take".to_string()));
    drop(con);
    server.kill9();
    server.restart();
    let mut con = server.connection();
    let left: Vec<String> = cmd("LRANGE").arg("q").arg(0).arg(-1).query(&mut con).unwrap();
    assert_eq!(left, ["keep"]);
}

#[test]
fn client_unblock_ends_a_wait_as_a_timeout_or_an_error() {
    let server = TestServer::start();
    let mut con = server.connection();
    let mut waiting = RawConnection::connect(server.addr());
    let id = waiting.command_text(&["CLIENT", "ID"]).trim_start_matches(':').trim().to_string();
    assert_eq!(cmd("CLIENT").arg("UNBLOCK").arg(&id).query::<i64>(&mut con).unwrap(), 0, "not blocked yet");
    waiting.send(b"BLPOP q 0\r\n");
    wait_blocked(&mut con, 1);
    let list: String = cmd("CLIENT").arg("LIST").query(&mut con).unwrap();
    let line = list.lines().find(|line| line.starts_with(&format!("id={id} "))).expect("the blocked client is listed");
    assert!(line.contains(" flags=b "), "{line}");
    assert_eq!(cmd("CLIENT").arg("UNBLOCK").arg(&id).query::<i64>(&mut con).unwrap(), 1);
    assert_eq!(waiting.read_frame(), b"*-1\r\n", "as if the timeout passed");
    waiting.send(b"BZPOPMIN z 0\r\n");
    wait_blocked(&mut con, 1);
    assert_eq!(cmd("CLIENT").arg("UNBLOCK").arg(&id).arg("ERROR").query::<i64>(&mut con).unwrap(), 1);
    assert_eq!(waiting.read_frame(), b"-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n");
    assert_eq!(blocked_clients(&mut con), 0);
    assert_eq!(
        query_error(&mut con, cmd("CLIENT").arg("UNBLOCK").arg(&id).arg("LATER")),
        "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR"
    );
    assert_eq!(cmd("CLIENT").arg("UNBLOCK").arg(999_999).query::<i64>(&mut con).unwrap(), 0, "no such client");
}

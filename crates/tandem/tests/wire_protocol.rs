//! The RESP wire as raw bytes against a real `tandem` process: inline
//! commands, pipelining, protocol errors that close the connection, limits
//! (`proto_max_bulk_len`, `maxclients`, `maxmemory`), and a seeded fuzz run
//! of garbage from many connections that must leave the server serving.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::{encode_command, poll_until, query_error, RawConnection, TestServer};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use redis::{cmd, Value};

#[test]
fn inline_commands_are_split_like_redis_including_quotes() {
    let server = TestServer::start();
    let mut raw = server.raw();
    raw.send(b"PING\r\n");
    assert_eq!(raw.read_frame(), b"+PONG\r\n");
    raw.send(b"SET a \"b c\"\r\n");
    assert_eq!(raw.read_frame(), b"+OK\r\n");
    raw.send(b"GET a\r\n");
    assert_eq!(raw.read_frame(), b"$3\r\nb c\r\n");
    raw.send(b"set   spaced   'single quoted'  \n");
    assert_eq!(raw.read_frame(), b"+OK\r\n");
    raw.send(b"get spaced\r\n");
    assert_eq!(raw.read_frame(), b"$13\r\nsingle quoted\r\n");
    raw.send(b"SET hex \"\\x41\\x42\\n\"\r\n");
    assert_eq!(raw.read_frame(), b"+OK\r\n");
    assert_eq!(raw.command(&["GET", "hex"]), b"$3\r\nAB\n\r\n");
    // Empty lines are skipped; inline and multibulk requests mix in one write.
    raw.send(b"\r\n\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\nECHO x\r\n");
    assert_eq!(raw.read_frames(3), [&b"+PONG\r\n"[..], b"$3\r\nb c\r\n", b"$1\r\nx\r\n"]);
}

#[test]
fn unbalanced_quotes_in_an_inline_command_are_a_protocol_error() {
    let server = TestServer::start();
    let mut raw = server.raw();
    raw.send(b"SET a \"b c\r\n");
    assert_eq!(raw.read_until_closed(), b"-ERR Protocol error: unbalanced quotes in request\r\n");
    assert_eq!(server.raw().command(&["EXISTS", "a"]), b":0\r\n");
}

#[test]
fn a_thousand_pipelined_commands_in_one_write_get_a_thousand_replies_in_order() {
    let server = TestServer::start();
    let mut raw = server.raw();
    let mut batch = Vec::new();
    for i in 0..1000 {
        if i % 2 == 0 {
            batch.extend(encode_command(&[b"INCR", b"counter"]));
        } else {
            let key = format!("key:{i}");
            batch.extend(encode_command(&[b"SET", key.as_bytes(), i.to_string().as_bytes()]));
        }
    }
    raw.send(&batch);
    let replies = raw.read_frames(1000);
    for (i, reply) in replies.iter().enumerate() {
        let expected = if i % 2 == 0 { format!(":{}\r\n", i / 2 + 1) } else { "+OK\r\n".to_string() };
        assert_eq!(String::from_utf8_lossy(reply), expected, "reply {i}");
    }
    assert!(raw.read_for(Duration::from_millis(50)).is_empty(), "exactly 1000 replies");
    let mut con = server.connection();
    assert_eq!(cmd("GET").arg("counter").query::<i64>(&mut con).unwrap(), 500);
    assert_eq!(cmd("DBSIZE").query::<i64>(&mut con).unwrap(), 501);
    assert_eq!(cmd("GET").arg("key:999").query::<String>(&mut con).unwrap(), "999");
}

#[test]
fn a_protocol_error_after_a_long_pipeline_follows_every_reply_before_it() {
    // Longer than the look-ahead the server parses (and prefetches) at once.
    let server = TestServer::start();
    let mut raw = server.raw();
    let mut batch = Vec::new();
    for i in 0..150 {
        batch.extend(encode_command(&[b"SET", format!("k{}", i % 7).as_bytes(), i.to_string().as_bytes()]));
        batch.extend(encode_command(&[b"GET", format!("k{}", i % 7).as_bytes()]));
    }
    batch.extend(b"*1\r\n$x\r\nPING\r\n");
    raw.send(&batch);
    let replies = raw.read_until_closed();
    let mut expected = String::new();
    for i in 0..150 {
        expected.push_str(&format!("+OK\r\n${}\r\n{i}\r\n", i.to_string().len()));
    }
    expected.push_str("-ERR Protocol error: invalid bulk length\r\n");
    assert_eq!(String::from_utf8_lossy(&replies), expected);
}

#[test]
fn replies_larger_than_the_reply_buffer_arrive_complete_and_in_order() {
    let server = TestServer::start();
    let mut raw = server.raw();
    let value: Vec<u8> = (0..200 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    raw.send(&encode_command(&[b"SET", b"big", &value]));
    assert_eq!(raw.read_frame(), b"+OK\r\n");
    // 100 pipelined GETs: about 20 MB of replies, several times the server's reply buffer.
    let mut batch = Vec::new();
    for i in 0..100 {
        batch.extend(encode_command(&[b"GET", b"big"]));
        batch.extend(encode_command(&[b"ECHO", i.to_string().as_bytes()]));
    }
    raw.send(&batch);
    let mut expected_get = format!("${}\r\n", value.len()).into_bytes();
    expected_get.extend_from_slice(&value);
    expected_get.extend_from_slice(b"\r\n");
    for i in 0..100 {
        assert!(raw.read_frame() == expected_get, "GET reply {i} differs");
        let echo = raw.read_frame();
        assert_eq!(String::from_utf8_lossy(&echo), format!("${}\r\n{i}\r\n", i.to_string().len()));
    }
}

#[test]
fn an_invalid_multibulk_length_is_a_protocol_error_and_closes_the_connection() {
    let server = TestServer::start();
    let mut raw = server.raw();
    raw.send(b"*abc\r\n");
    assert_eq!(raw.read_until_closed(), b"-ERR Protocol error: invalid multibulk length\r\n");
    // Commands before the bad frame in the same write still run and answer.
    let mut raw = server.raw();
    raw.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*-5\r\n*1\r\n$4\r\nPING\r\n");
    assert_eq!(raw.read_until_closed(), b"+OK\r\n-ERR Protocol error: invalid multibulk length\r\n");
    let mut raw = server.raw();
    raw.send(b"*1\r\n:12\r\n");
    assert_eq!(raw.read_until_closed(), b"-ERR Protocol error: expected '$', got ':'\r\n");
    assert_eq!(server.raw().command(&["GET", "k"]), b"$1\r\nv\r\n");
}

#[test]
fn a_bulk_length_beyond_proto_max_bulk_len_is_refused_and_closes_the_connection() {
    let server = TestServer::with_config(Some("proto_max_bulk_len = \"1kb\"\n"), &[]);
    let mut raw = server.raw();
    let at_limit = "v".repeat(1024);
    assert_eq!(raw.command(&["SET", "k", &at_limit]), b"+OK\r\n");
    raw.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1025\r\n");
    assert_eq!(raw.read_until_closed(), b"-ERR Protocol error: invalid bulk length\r\n");
    assert_eq!(server.raw().command(&["STRLEN", "k"]), b":1024\r\n");

    // With the default limit (512 MB), a larger declared length is refused before any data arrives.
    let default_server = TestServer::start();
    let mut raw = default_server.raw();
    raw.send(b"*2\r\n$3\r\nGET\r\n$600000000\r\n");
    assert_eq!(raw.read_until_closed(), b"-ERR Protocol error: invalid bulk length\r\n");
    let mut raw = default_server.raw();
    raw.send(b"*2\r\n$3\r\nGET\r\n$-3\r\n");
    assert_eq!(raw.read_until_closed(), b"-ERR Protocol error: invalid bulk length\r\n");
    assert_eq!(default_server.raw().command(&["PING"]), b"+PONG\r\n");
}

#[test]
fn an_unknown_command_is_an_error_reply_and_the_connection_stays_open() {
    let server = TestServer::start();
    let mut raw = server.raw();
    assert_eq!(
        raw.command_text(&["FOO", "a"]),
        "-ERR unknown command 'FOO', with args beginning with: 'a' \r\n",
        "the text Redis sends, trailing space included"
    );
    assert_eq!(raw.command_text(&["FOO"]), "-ERR unknown command 'FOO', with args beginning with: \r\n");
    raw.send(b"FOO a b\r\n");
    let inline = String::from_utf8(raw.read_frame()).unwrap();
    assert!(inline.starts_with("-ERR unknown command 'FOO', with args beginning with: 'a' 'b'"), "{inline:?}");
    assert_eq!(raw.command(&["PING"]), b"+PONG\r\n");
}

#[test]
fn half_a_frame_then_disconnect_runs_nothing_and_the_server_keeps_serving() {
    let server = TestServer::start();
    {
        let mut raw = server.raw();
        raw.send(b"*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$5\r\nval");
    }
    {
        // The same with a half-close: the server sees EOF in the middle of a frame.
        let mut raw = server.raw();
        raw.send(b"*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$5\r\nval");
        raw.shutdown_write();
        assert!(raw.read_until_closed().is_empty(), "no reply to an incomplete request");
    }
    let mut con = server.connection();
    assert_eq!(cmd("EXISTS").arg("half").query::<i64>(&mut con).unwrap(), 0);
    assert_eq!(cmd("PING").query::<String>(&mut con).unwrap(), "PONG");
    poll_until(Duration::from_secs(10), "the abandoned connections are unregistered", || {
        cmd("CLIENT").arg("LIST").query::<String>(&mut con).unwrap().lines().count() == 1
    });
}

/// A client the server admitted: retries while earlier connections (e.g. the
/// readiness probe) are still being unregistered, which happens asynchronously.
fn admitted_client(server: &TestServer) -> RawConnection {
    let mut admitted = None;
    poll_until(Duration::from_secs(10), "the server admits a client", || {
        let mut raw = server.raw();
        raw.send(b"PING\r\n");
        if raw.try_read_frame().is_some_and(|reply| reply == b"+PONG\r\n") {
            admitted = Some(raw);
        }
        admitted.is_some()
    });
    admitted.unwrap()
}

fn rejected_connections(raw: &mut RawConnection) -> u64 {
    let info = String::from_utf8(raw.command(&["INFO", "stats"])).unwrap();
    let line = info.lines().find_map(|line| line.strip_prefix("rejected_connections:")).expect("rejected_connections");
    line.trim().parse().unwrap()
}

#[test]
fn maxclients_refuses_the_connection_beyond_the_limit() {
    let mut server = TestServer::with_args(&["--maxclients", "2"]);
    let mut first = admitted_client(&server);
    let second = admitted_client(&server);
    let rejected_before = rejected_connections(&mut first);
    let mut third = server.raw();
    assert_eq!(third.read_until_closed(), b"-ERR max number of clients reached\r\n");
    assert_eq!(first.command(&["PING"]), b"+PONG\r\n", "the admitted clients are unaffected");
    assert_eq!(rejected_connections(&mut first), rejected_before + 1);
    // Once a client leaves, a new one is admitted.
    drop(second);
    let mut fourth = admitted_client(&server);
    assert_eq!(
        fourth
            .command(&["CLIENT", "LIST"])
            .split(|&byte| byte == b'\n')
            .filter(|line| line.starts_with(b"id="))
            .count(),
        2
    );
    assert!(server.is_running());
}

#[test]
fn writes_are_refused_above_maxmemory_and_reads_still_work() {
    let server = TestServer::with_args(&["--maxmemory", "1mb"]);
    let mut con = server.connection();
    let maxmemory: Vec<String> = cmd("CONFIG").arg("GET").arg("maxmemory").query(&mut con).unwrap();
    assert_eq!(maxmemory, ["maxmemory", "1048576"]);
    let _: Value = cmd("GET").arg("nothing").query(&mut con).unwrap();
    // The server's baseline may already exceed 1 MB; if not, fill it until it does.
    let value = vec![b'x'; 64 * 1024];
    let mut written = 0;
    let mut refusal = None;
    poll_until(Duration::from_secs(20), "a write is refused for memory", || {
        match cmd("SET").arg(format!("fill:{written}")).arg(&value).query::<Value>(&mut con) {
            Ok(_) => {
                written += 1;
                false
            }
            Err(error) => {
                refusal = Some(common::error_text(&error));
                true
            }
        }
    });
    println!("{written} writes of 64 KiB were accepted before the first OOM refusal");
    assert_eq!(refusal.unwrap(), "OOM command not allowed when used memory > 'maxmemory'.");
    assert_eq!(
        query_error(&mut con, cmd("SET").arg("small").arg("v")),
        "OOM command not allowed when used memory > 'maxmemory'."
    );
    assert_eq!(cmd("EXISTS").arg("small").query::<i64>(&mut con).unwrap(), 0);
    if written > 0 {
        assert_eq!(cmd("STRLEN").arg("fill:0").query::<usize>(&mut con).unwrap(), value.len());
    }
    assert_eq!(cmd("DBSIZE").query::<i64>(&mut con).unwrap(), written as i64);
    let info: String = cmd("INFO").arg("memory").query(&mut con).unwrap();
    assert!(info.contains("maxmemory:1048576"), "{info}");
    // A transaction with a write is refused as a whole.
    let mut raw = server.raw();
    assert_eq!(raw.command(&["MULTI"]), b"+OK\r\n");
    assert_eq!(raw.command(&["SET", "tx", "v"]), b"+QUEUED\r\n");
    assert_eq!(raw.command_text(&["EXEC"]), "-EXECABORT OOM command not allowed when used memory > 'maxmemory'.\r\n");
    // Raising the limit at run time lets writes through again.
    let _: () = cmd("CONFIG").arg("SET").arg("maxmemory").arg("0").query(&mut con).unwrap();
    let _: () = cmd("SET").arg("small").arg("v").query(&mut con).unwrap();
    assert_eq!(cmd("GET").arg("small").query::<String>(&mut con).unwrap(), "v");
}

/// Commands the fuzzer may form; nothing that stops the server or changes its configuration.
const FUZZ_COMMANDS: &[&str] = &[
    "SET",
    "GET",
    "INCR",
    "DEL",
    "LPUSH",
    "RPOP",
    "HSET",
    "HGETALL",
    "SADD",
    "SMEMBERS",
    "EXPIRE",
    "PING",
    "ECHO",
    "MULTI",
    "EXEC",
    "WATCH",
    "SUBSCRIBE",
    "PUBLISH",
    "SCAN",
    "KEYS",
    "MGET",
    "APPEND",
    "GETRANGE",
    "HELLO",
];

/// One piece of fuzz input: random bytes, or something RESP-like that is often broken.
fn fuzz_fragment(rng: &mut SmallRng) -> Vec<u8> {
    let random_arg = |rng: &mut SmallRng| -> Vec<u8> {
        let length = rng.gen_range(0..40);
        (0..length).map(|_| rng.gen()).collect()
    };
    match rng.gen_range(0..8) {
        0 | 1 => (0..rng.gen_range(1..600)).map(|_| rng.gen()).collect(),
        2 | 3 => {
            let name = FUZZ_COMMANDS[rng.gen_range(0..FUZZ_COMMANDS.len())];
            let mut args: Vec<Vec<u8>> = vec![format!("fuzz:{}", rng.gen_range(0..50)).into_bytes()];
            for _ in 0..rng.gen_range(0..4) {
                args.push(random_arg(rng));
            }
            let mut all: Vec<&[u8]> = vec![name.as_bytes()];
            all.extend(args.iter().map(|arg| arg.as_slice()));
            let mut frame = encode_command(&all);
            if rng.gen_bool(0.3) {
                frame.truncate(rng.gen_range(0..frame.len()));
            }
            frame
        }
        4 => {
            let headers = ["*", "$", "*-1", "$-1", "*0", "*99999999999", "$99999999999", "*1\r\n$", "*2\r\n$3\r\nGET"];
            let mut frame = headers[rng.gen_range(0..headers.len())].as_bytes().to_vec();
            frame.extend(rng.gen_range(-5i64..100_000).to_string().into_bytes());
            frame.extend(if rng.gen_bool(0.8) { &b"\r\n"[..] } else { &b"\n"[..] });
            frame
        }
        5 => {
            let mut line = b"GET \"".to_vec();
            line.extend(random_arg(rng));
            line.extend(b"\r\n");
            line
        }
        6 => {
            let nested = rng.gen_range(1..50);
            let mut frame = Vec::new();
            for _ in 0..nested {
                frame.extend(b"*1\r\n");
            }
            frame
        }
        _ => vec![b'\r'; rng.gen_range(1..10)],
    }
}

/// Sends a few KB of fuzz on a fresh connection, reading whatever comes back, then leaves.
fn fuzz_connection(addr: std::net::SocketAddr, rng: &mut SmallRng) {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        panic!("cannot connect to the server during the fuzz run");
    };
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let budget = rng.gen_range(1024..6 * 1024);
    let mut sent = 0;
    while sent < budget {
        let fragment = fuzz_fragment(rng);
        sent += fragment.len();
        if stream.write_all(&fragment).is_err() {
            break; // the server closed the connection after a protocol error
        }
    }
    let mut raw = RawConnection::from_stream(stream);
    let _ = raw.read_for(Duration::from_millis(rng.gen_range(0..20)));
}

#[test]
fn random_bytes_from_many_connections_leave_the_server_serving() {
    let seed = common::test_seed();
    let mut server = TestServer::start();
    let addr = server.addr();
    let threads: Vec<_> = (0..4u64)
        .map(|thread| {
            std::thread::spawn(move || {
                let mut rng = SmallRng::seed_from_u64(seed ^ (thread + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                for _ in 0..50 {
                    fuzz_connection(addr, &mut rng);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a fuzz thread panicked");
    }
    assert!(server.is_running(), "the server died during the fuzz run (seed {seed}):\n{}", server.stderr());
    let mut con = server.connection();
    let _: () = cmd("SET").arg("after-fuzz").arg("still here").query(&mut con).unwrap();
    assert_eq!(cmd("GET").arg("after-fuzz").query::<String>(&mut con).unwrap(), "still here");
    assert_eq!(cmd("INCRBY").arg("after-fuzz-counter").arg(41).query::<i64>(&mut con).unwrap(), 41);
    assert_eq!(cmd("INCR").arg("after-fuzz-counter").query::<i64>(&mut con).unwrap(), 42);
    assert_eq!(cmd("ECHO").arg("bytes\r\nintact").query::<String>(&mut con).unwrap(), "bytes\r\nintact");
    poll_until(Duration::from_secs(20), "every fuzz connection is unregistered", || {
        cmd("CLIENT").arg("LIST").query::<String>(&mut con).unwrap().lines().count() == 1
    });
    let info: String = cmd("INFO").arg("stats").query(&mut con).unwrap();
    assert!(info.contains("total_connections_received:"), "{info}");
    assert!(server.is_running(), "seed {seed}");
}

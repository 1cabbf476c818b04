//! Connection and server commands against a real `tandem` process: pub/sub,
//! AUTH with `--requirepass`, HELLO and RESP3, CLIENT, INFO, CONFIG, SELECT,
//! COMMAND. Where the exact reply bytes matter, raw sockets check them.

mod common;

use std::time::Duration;

use common::{error_text, poll_until, query_error, TestServer};
use redis::{cmd, Value};

#[test]
fn subscribe_and_psubscribe_reply_with_running_counts() {
    let server = TestServer::start();
    let mut subscriber = server.raw();
    subscriber.send(b"*3\r\n$9\r\nSUBSCRIBE\r\n$4\r\nnews\r\n$6\r\nsports\r\n");
    assert_eq!(subscriber.read_frame(), b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n");
    assert_eq!(subscriber.read_frame(), b"*3\r\n$9\r\nsubscribe\r\n$6\r\nsports\r\n:2\r\n");
    assert_eq!(subscriber.command(&["PSUBSCRIBE", "n*"]), b"*3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:3\r\n");
    // Subscribing again to the same channel does not add to the count.
    assert_eq!(subscriber.command(&["SUBSCRIBE", "news"]), b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:3\r\n");
    // In RESP2 a subscribed connection may only (un)subscribe, PING, QUIT or RESET.
    let refused = String::from_utf8(subscriber.command(&["GET", "k"])).unwrap();
    assert!(refused.starts_with("-ERR Can't execute 'get'"), "{refused:?}");
    assert_eq!(subscriber.command(&["PING"]), b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    assert_eq!(subscriber.command(&["UNSUBSCRIBE", "sports"]), b"*3\r\n$11\r\nunsubscribe\r\n$6\r\nsports\r\n:2\r\n");
    assert_eq!(subscriber.command(&["PUNSUBSCRIBE", "n*"]), b"*3\r\n$12\r\npunsubscribe\r\n$2\r\nn*\r\n:1\r\n");
    assert_eq!(subscriber.command(&["UNSUBSCRIBE"]), b"*3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:0\r\n");
    // With no subscription left, normal commands work again.
    assert_eq!(subscriber.command(&["GET", "k"]), b"$-1\r\n");
}

#[test]
fn publish_delivers_to_channel_and_pattern_subscribers_and_counts_them() {
    let server = TestServer::start();
    let mut subscriber = server.raw();
    subscriber.send(b"*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nnews\r\n");
    subscriber.read_frame();
    subscriber.send(b"*2\r\n$10\r\nPSUBSCRIBE\r\n$2\r\nn*\r\n");
    subscriber.read_frame();
    let mut publisher = server.connection();
    assert_eq!(cmd("PUBLISH").arg("news").arg("hello").query::<i64>(&mut publisher).unwrap(), 2);
    assert_eq!(subscriber.read_frame(), b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n");
    assert_eq!(subscriber.read_frame(), b"*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$5\r\nhello\r\n");
    assert_eq!(cmd("PUBLISH").arg("nightly").arg("x").query::<i64>(&mut publisher).unwrap(), 1);
    assert_eq!(subscriber.read_frame(), b"*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$7\r\nnightly\r\n$1\r\nx\r\n");
    assert_eq!(cmd("PUBLISH").arg("other").arg("x").query::<i64>(&mut publisher).unwrap(), 0);
    assert!(subscriber.read_for(Duration::from_millis(100)).is_empty(), "no message for an unmatched channel");
    // A subscriber that leaves is no longer counted.
    drop(subscriber);
    poll_until(Duration::from_secs(10), "the closed subscriber is dropped", || {
        cmd("PUBLISH").arg("news").arg("x").query::<i64>(&mut publisher).unwrap() == 0
    });
}

#[test]
fn pubsub_messages_reach_a_redis_crate_subscriber_in_order() {
    let server = TestServer::start();
    let mut subscriber_connection = server.connection();
    let mut pubsub = subscriber_connection.as_pubsub();
    pubsub.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    pubsub.subscribe("orders").unwrap();
    pubsub.psubscribe("audit.*").unwrap();
    let mut publisher = server.connection();
    for i in 0..50 {
        let receivers: i64 = cmd("PUBLISH").arg("orders").arg(format!("order-{i}")).query(&mut publisher).unwrap();
        assert_eq!(receivers, 1);
    }
    assert_eq!(cmd("PUBLISH").arg("audit.login").arg("alice").query::<i64>(&mut publisher).unwrap(), 1);
    for i in 0..50 {
        let message = pubsub.get_message().unwrap();
        assert_eq!(message.get_channel_name(), "orders");
        assert_eq!(message.get_payload::<String>().unwrap(), format!("order-{i}"));
    }
    let message = pubsub.get_message().unwrap();
    assert_eq!(message.get_channel_name(), "audit.login");
    assert_eq!(message.get_pattern::<String>().unwrap(), "audit.*");
    assert_eq!(message.get_payload::<String>().unwrap(), "alice");
}

#[test]
fn requirepass_demands_auth_and_refuses_a_wrong_password() {
    let server = TestServer::with_args(&["--requirepass", "s3cret"]);
    let mut raw = server.raw();
    assert_eq!(raw.command_text(&["GET", "k"]), "-NOAUTH Authentication required.\r\n");
    assert_eq!(raw.command_text(&["SET", "k", "v"]), "-NOAUTH Authentication required.\r\n");
    assert_eq!(
        raw.command_text(&["AUTH", "wrong"]),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(
        raw.command_text(&["AUTH", "someone", "s3cret"]),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(raw.command_text(&["GET", "k"]), "-NOAUTH Authentication required.\r\n");
    assert_eq!(raw.command_text(&["AUTH", "s3cret"]), "+OK\r\n");
    assert_eq!(raw.command_text(&["SET", "k", "v"]), "+OK\r\n");
    assert_eq!(raw.command_text(&["GET", "k"]), "$1\r\nv\r\n");

    let mut second = server.raw();
    assert_eq!(second.command_text(&["AUTH", "default", "s3cret"]), "+OK\r\n");
    assert_eq!(second.command_text(&["GET", "k"]), "$1\r\nv\r\n");
    // RESET forgets the authentication.
    assert_eq!(second.command_text(&["RESET"]), "+RESET\r\n");
    assert_eq!(second.command_text(&["GET", "k"]), "-NOAUTH Authentication required.\r\n");

    // The redis crate authenticates from the URL.
    let url = format!("redis://:s3cret@127.0.0.1:{}/", server.port());
    let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
    assert_eq!(cmd("GET").arg("k").query::<String>(&mut con).unwrap(), "v");
    let bad_url = format!("redis://:nope@127.0.0.1:{}/", server.port());
    assert!(redis::Client::open(bad_url).unwrap().get_connection().is_err());
    let mut unauthenticated = server.connection();
    let error = cmd("GET").arg("k").query::<Value>(&mut unauthenticated).unwrap_err();
    assert_eq!(error_text(&error), "NOAUTH Authentication required.");
}

#[test]
fn hello_with_auth_authenticates_and_without_it_is_refused() {
    let server = TestServer::with_args(&["--requirepass", "s3cret"]);
    let mut raw = server.raw();
    let refused = raw.command_text(&["HELLO", "3"]);
    assert!(refused.starts_with("-NOAUTH HELLO must be called with the client already authenticated"), "{refused:?}");
    let wrong = raw.command_text(&["HELLO", "3", "AUTH", "default", "bad"]);
    assert_eq!(wrong, "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
    let hello = raw.command_text(&["HELLO", "3", "AUTH", "default", "s3cret", "SETNAME", "me"]);
    assert!(hello.starts_with("%7\r\n"), "{hello:?}");
    assert_eq!(raw.command_text(&["CLIENT", "GETNAME"]), "$2\r\nme\r\n");
}

#[test]
fn auth_without_a_configured_password_is_an_error() {
    let server = TestServer::start();
    let mut raw = server.raw();
    let reply = raw.command_text(&["AUTH", "anything"]);
    assert!(reply.starts_with("-ERR AUTH <password> called without any password configured"), "{reply:?}");
    assert_eq!(raw.command_text(&["PING"]), "+PONG\r\n");
}

#[test]
fn hello_3_switches_the_connection_to_resp3_types() {
    let server = TestServer::start();
    let mut raw = server.raw();
    raw.command(&["HSET", "h", "f", "v"]);
    assert_eq!(raw.command(&["GET", "missing"]), b"$-1\r\n");
    assert_eq!(raw.command(&["HGETALL", "h"]), b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n");

    let hello = raw.command_text(&["HELLO", "3"]);
    assert!(hello.starts_with("%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n"), "{hello:?}");
    assert!(hello.contains("$5\r\nproto\r\n:3\r\n"), "{hello:?}");
    assert!(hello.contains("$4\r\nmode\r\n$10\r\nstandalone\r\n"), "{hello:?}");
    assert!(hello.contains("$4\r\nrole\r\n$6\r\nmaster\r\n"), "{hello:?}");
    assert_eq!(raw.command(&["GET", "missing"]), b"_\r\n");
    assert_eq!(raw.command(&["HGETALL", "h"]), b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n");
    assert_eq!(raw.command(&["PING"]), b"+PONG\r\n");
    let info = raw.command_text(&["INFO", "server"]);
    assert!(info.starts_with('=') && info.contains("txt:# Server"), "{:?}", &info[..info.len().min(40)]);

    // HELLO 2 switches back; an unknown version is refused and changes nothing.
    let hello2 = raw.command_text(&["HELLO", "2"]);
    assert!(hello2.starts_with("*14\r\n") && hello2.contains("$5\r\nproto\r\n:2\r\n"), "{hello2:?}");
    assert_eq!(raw.command(&["GET", "missing"]), b"$-1\r\n");
    assert_eq!(raw.command_text(&["HELLO", "4"]), "-NOPROTO unsupported protocol version\r\n");
    assert_eq!(raw.command(&["GET", "missing"]), b"$-1\r\n");
}

#[test]
fn resp3_subscribers_receive_push_frames() {
    let server = TestServer::start();
    let mut subscriber = server.raw();
    subscriber.command(&["HELLO", "3"]);
    assert_eq!(subscriber.command(&["SUBSCRIBE", "c"]), b">3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n");
    // RESP3 allows ordinary commands on a subscribed connection.
    assert_eq!(subscriber.command(&["GET", "missing"]), b"_\r\n");
    let mut publisher = server.connection();
    assert_eq!(cmd("PUBLISH").arg("c").arg("m").query::<i64>(&mut publisher).unwrap(), 1);
    assert_eq!(subscriber.read_frame(), b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n");
}

#[test]
fn client_id_setname_getname_list_and_kill() {
    let server = TestServer::start();
    let mut victim = server.raw();
    let mut admin = server.connection();
    let id_text = victim.command_text(&["CLIENT", "ID"]);
    let victim_id: u64 = id_text.trim_start_matches(':').trim().parse().expect("CLIENT ID is an integer");
    let admin_id: u64 = cmd("CLIENT").arg("ID").query(&mut admin).unwrap();
    assert_ne!(victim_id, admin_id);

    assert_eq!(victim.command(&["CLIENT", "GETNAME"]), b"$-1\r\n");
    assert_eq!(victim.command(&["CLIENT", "SETNAME", "worker-1"]), b"+OK\r\n");
    assert_eq!(victim.command(&["CLIENT", "GETNAME"]), b"$8\r\nworker-1\r\n");
    let bad_name = victim.command_text(&["CLIENT", "SETNAME", "has space"]);
    assert_eq!(bad_name, "-ERR Client names cannot contain spaces, newlines or special characters.\r\n");
    assert_eq!(victim.command(&["CLIENT", "GETNAME"]), b"$8\r\nworker-1\r\n");

    // Earlier connections (the readiness probe) leave the registry asynchronously.
    poll_until(Duration::from_secs(10), "CLIENT LIST shows exactly the two test clients", || {
        cmd("CLIENT").arg("LIST").query::<String>(&mut admin).unwrap().lines().count() == 2
    });
    let list: String = cmd("CLIENT").arg("LIST").query(&mut admin).unwrap();
    let lines: Vec<&str> = list.lines().collect();
    let victim_line = lines.iter().find(|line| line.starts_with(&format!("id={victim_id} "))).expect("victim listed");
    assert!(victim_line.contains(" name=worker-1 "), "{victim_line}");
    assert!(victim_line.contains(" cmd=client"), "{victim_line}");
    let admin_line = lines.iter().find(|line| line.starts_with(&format!("id={admin_id} "))).expect("admin listed");
    assert!(admin_line.contains("lib-name=redis-rs"), "{admin_line}");

    assert_eq!(cmd("CLIENT").arg("KILL").arg("ID").arg(999_999).query::<i64>(&mut admin).unwrap(), 0);
    assert_eq!(cmd("CLIENT").arg("KILL").arg("ID").arg(victim_id).query::<i64>(&mut admin).unwrap(), 1);
    assert!(victim.read_until_closed().is_empty(), "the killed client gets no further reply");
    poll_until(Duration::from_secs(10), "the killed client leaves CLIENT LIST", || {
        cmd("CLIENT").arg("LIST").query::<String>(&mut admin).unwrap().lines().count() == 1
    });
    assert_eq!(
        query_error(&mut admin, cmd("CLIENT").arg("NOSUCH")),
        "ERR unknown subcommand 'NOSUCH'. Try CLIENT HELP."
    );
}

#[test]
fn info_reports_the_default_sections_and_single_sections() {
    let server = TestServer::start();
    let mut con = server.connection();
    let _: () = cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    let info: String = cmd("INFO").query(&mut con).unwrap();
    for section in ["# Server", "# Clients", "# Memory", "# Persistence", "# Stats", "# Replication", "# Keyspace"] {
        assert!(info.contains(section), "INFO lacks {section}:\n{info}");
    }
    assert!(info.contains("redis_version:"), "{info}");
    assert!(info.contains(&format!("tcp_port:{}", server.port())), "{info}");
    assert!(info.contains("process_id:"), "{info}");
    assert!(info.contains("db0:keys=1,"), "{info}");
    assert!(info.contains("maxmemory:0"), "{info}");

    let server_only: String = cmd("INFO").arg("server").query(&mut con).unwrap();
    assert!(server_only.starts_with("# Server"), "{server_only}");
    assert!(!server_only.contains("# Clients"), "{server_only}");
    poll_until(Duration::from_secs(10), "INFO clients counts this one connection", || {
        cmd("INFO").arg("clients").query::<String>(&mut con).unwrap().contains("connected_clients:1\r\n")
    });
}

#[test]
fn config_get_reports_maxmemory_port_and_appendfsync() {
    let server = TestServer::with_args(&["--appendfsync", "everysec", "--maxmemory", "100mb"]);
    let mut con = server.connection();
    let maxmemory: Vec<String> = cmd("CONFIG").arg("GET").arg("maxmemory").query(&mut con).unwrap();
    assert_eq!(maxmemory, ["maxmemory", &(100 * 1024 * 1024).to_string()]);
    let port: Vec<String> = cmd("CONFIG").arg("GET").arg("port").query(&mut con).unwrap();
    assert_eq!(port, ["port".to_string(), server.port().to_string()]);
    let fsync: Vec<String> = cmd("CONFIG").arg("GET").arg("appendfsync").query(&mut con).unwrap();
    assert_eq!(fsync, ["appendfsync", "everysec"]);
    // The checkpoint schedule in Redis's `save` shape: full (3600 s, 1 change), incremental (60 s, 1000).
    let save: Vec<String> = cmd("CONFIG").arg("GET").arg("save").query(&mut con).unwrap();
    assert_eq!(save, ["save", "3600 1 60 1000"]);
    let nothing: Vec<String> = cmd("CONFIG").arg("GET").arg("no-such-parameter").query(&mut con).unwrap();
    assert!(nothing.is_empty());
    let _: () = cmd("CONFIG").arg("SET").arg("maxmemory").arg("200mb").query(&mut con).unwrap();
    let maxmemory: Vec<String> = cmd("CONFIG").arg("GET").arg("maxmemory").query(&mut con).unwrap();
    assert_eq!(maxmemory, ["maxmemory", &(200 * 1024 * 1024).to_string()]);
}

#[test]
fn select_accepts_database_zero_only() {
    let server = TestServer::start();
    let mut con = server.connection();
    let _: () = cmd("SELECT").arg(0).query(&mut con).unwrap();
    assert_eq!(query_error(&mut con, cmd("SELECT").arg(1)), "ERR DB index is out of range");
    assert_eq!(query_error(&mut con, cmd("SELECT").arg("one")), "ERR value is not an integer or out of range");
    assert_eq!(
        query_error(&mut con, cmd("SELECT").arg("2147483648")),
        "ERR value is out of range, value must between -2147483648 and 2147483647"
    );
    assert_eq!(cmd("PING").query::<String>(&mut con).unwrap(), "PONG");
}

#[test]
fn command_count_lists_more_than_a_hundred_commands() {
    let server = TestServer::start();
    let mut con = server.connection();
    let count: i64 = cmd("COMMAND").arg("COUNT").query(&mut con).unwrap();
    assert!(count > 100, "COMMAND COUNT = {count}");
    let names: Vec<String> = cmd("COMMAND").arg("LIST").query(&mut con).unwrap();
    assert_eq!(names.len() as i64, count);
    for name in ["get", "set", "hset", "sadd", "lpush", "scan", "multi", "subscribe"] {
        assert!(names.iter().any(|listed| listed == name), "COMMAND LIST lacks {name}");
    }
    let info: Value = cmd("COMMAND").arg("INFO").arg("get").query(&mut con).unwrap();
    let Value::Array(entries) = info else { panic!("COMMAND INFO is an array: {info:?}") };
    let Value::Array(get) = &entries[0] else { panic!("one entry per command: {entries:?}") };
    assert_eq!(get[0], Value::BulkString(b"get".to_vec()));
    assert_eq!(get[1], Value::Int(2));
}

#[test]
fn an_idle_client_is_closed_once_the_configured_timeout_passes() {
    let server = TestServer::start();
    let mut admin = server.connection();
    let _: () = cmd("CONFIG").arg("SET").arg("timeout").arg(1).query(&mut admin).unwrap();
    let timeout: Vec<String> = cmd("CONFIG").arg("GET").arg("timeout").query(&mut admin).unwrap();
    assert_eq!(timeout, ["timeout", "1"]);
    let mut idle = server.raw();
    assert_eq!(idle.command(&["PING"]), b"+PONG\r\n");
    assert!(idle.read_until_closed().is_empty(), "the idle client is closed without a reply");
    let _: () = cmd("CONFIG").arg("SET").arg("timeout").arg(0).query(&mut server.connection()).unwrap();
}

#[test]
fn ping_echo_and_time_answer() {
    let server = TestServer::start();
    let mut raw = server.raw();
    assert_eq!(raw.command(&["PING"]), b"+PONG\r\n");
    assert_eq!(raw.command(&["PING", "hi there"]), b"$8\r\nhi there\r\n");
    assert_eq!(raw.command(&["ECHO", "x\r\ny"]), b"$4\r\nx\r\ny\r\n");
    let mut con = server.connection();
    let (seconds, micros): (u64, u64) = cmd("TIME").query(&mut con).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(seconds.abs_diff(now) <= 5, "TIME {seconds} vs {now}");
    assert!(micros < 1_000_000);
    assert_eq!(raw.command(&["QUIT"]), b"+OK\r\n");
    assert!(raw.read_until_closed().is_empty(), "QUIT closes the connection");
}

/// The ids in CLIENT LIST.
fn client_ids(con: &mut redis::Connection) -> Vec<u64> {
    let list: String = cmd("CLIENT").arg("LIST").query(con).unwrap();
    list.lines().filter_map(|line| line.strip_prefix("id=")?.split(' ').next()?.parse().ok()).collect()
}

#[test]
fn client_kill_closes_a_client_that_does_not_read_its_replies() {
    let server = TestServer::start();
    let mut admin = server.connection();
    let mut victim = server.raw();
    let victim_id: u64 = String::from_utf8(victim.command(&["CLIENT", "ID"])).unwrap()[1..].trim().parse().unwrap();
    let value = "v".repeat(256 * 1024);
    let _: () = cmd("SET").arg("big").arg(&value).query(&mut admin).unwrap();
    // About 50 MB of replies that the victim never reads: the server's writes to it block.
    let mut batch = Vec::new();
    for _ in 0..200 {
        batch.extend(common::encode_command(&[b"GET", b"big"]));
    }
    victim.send(&batch);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(cmd("CLIENT").arg("KILL").arg("ID").arg(victim_id).query::<i64>(&mut admin).unwrap(), 1);
    poll_until(Duration::from_secs(10), "the killed client leaves CLIENT LIST", || {
        !client_ids(&mut admin).contains(&victim_id)
    });
}

#[test]
fn a_subscriber_that_does_not_read_is_disconnected_and_unregistered() {
    let server = TestServer::start();
    let mut publisher = server.connection();
    let mut subscriber = server.raw();
    let subscriber_id: u64 =
        String::from_utf8(subscriber.command(&["CLIENT", "ID"])).unwrap()[1..].trim().parse().unwrap();
    assert_eq!(subscriber.command(&["SUBSCRIBE", "flood"]), b"*3\r\n$9\r\nsubscribe\r\n$5\r\nflood\r\n:1\r\n");
    let message = "m".repeat(4096);
    let mut delivered_to_nobody = false;
    for _ in 0..40_000 {
        let receivers: i64 = cmd("PUBLISH").arg("flood").arg(&message).query(&mut publisher).unwrap();
        if receivers == 0 {
            delivered_to_nobody = true;
            break;
        }
    }
    assert!(delivered_to_nobody, "160 MB to a subscriber that never reads were all queued");
    poll_until(Duration::from_secs(10), "the slow subscriber leaves CLIENT LIST", || {
        !client_ids(&mut publisher).contains(&subscriber_id)
    });
}

#[test]
fn wait_on_a_standalone_node_counts_no_replica() {
    let server = TestServer::start();
    let mut con = server.connection();
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    assert_eq!(cmd("WAIT").arg(0).arg(0).query::<i64>(&mut con).unwrap(), 0);
    let started = std::time::Instant::now();
    assert_eq!(cmd("WAIT").arg(1).arg(100).query::<i64>(&mut con).unwrap(), 0);
    assert!(started.elapsed() >= Duration::from_millis(100), "it waits out its timeout");
}

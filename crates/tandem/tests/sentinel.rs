//! The Sentinel-compatible discovery endpoint with real processes (issue #5): a client
//! that speaks Sentinel finds the active, follows it across a failover, and hears of the
//! failover as `+switch-master` — from the data nodes' endpoints and from the witness's
//! alone; replies have Sentinel's RESP2 and RESP3 shapes.

mod cluster_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cluster_support::{poll_until, wait_active, wait_standby_joined, Cluster, CONVERGE_TIMEOUT};

/// Sentinel ports come from a range apart from the harness's (20000–32000), so that the
/// two pickers never hand out the same port.
fn free_sentinel_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    for _ in 0..1000 {
        let offset = (std::process::id().wrapping_mul(31) + NEXT.fetch_add(1, Ordering::Relaxed)) % 1000;
        let port = (19_000 + offset) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free sentinel port in 19000..20000");
}

/// A cluster whose data members have Sentinel endpoints; returns it and their ports.
fn cluster_with_sentinels(extra: &str) -> (Cluster, [u16; 2]) {
    let ports = [free_sentinel_port(), free_sentinel_port()];
    let fields = ports.map(|port| format!("sentinel = \"127.0.0.1:{port}\""));
    let cluster = Cluster::start_with_admin(extra, [&fields[0], &fields[1]]);
    (cluster, ports)
}

/// A cluster whose three members (the witness too) have Sentinel endpoints; returns it and
/// their ports (node 1, node 2, the witness).
fn cluster_with_witness_sentinel(extra: &str) -> (Cluster, [u16; 3]) {
    let ports = [free_sentinel_port(), free_sentinel_port(), free_sentinel_port()];
    let fields = ports.map(|port| format!("sentinel = \"127.0.0.1:{port}\""));
    let cluster = Cluster::start_with_admin_fields(extra, [&fields[0], &fields[1], &fields[2]]);
    (cluster, ports)
}

fn sentinel_connection(port: u16) -> redis::Connection {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let connection = client.get_connection_with_timeout(Duration::from_secs(5)).unwrap();
    connection.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    connection
}

fn master_addr(port: u16) -> Option<(String, u16)> {
    redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg("tandem").query(&mut sentinel_connection(port)).unwrap()
}

#[test]
fn sentinel_clients_find_the_active_and_follow_a_failover() {
    let (mut cluster, sentinels) = cluster_with_sentinels("ack_mode = \"sync\"");
    wait_active(&cluster, 0);
    wait_standby_joined(&cluster);
    let (first, second) = (cluster.nodes[0].port, cluster.nodes[1].port);
    for port in sentinels {
        poll_until(CONVERGE_TIMEOUT, "the endpoint names node 1", || {
            master_addr(port) == Some(("127.0.0.1".into(), first))
        });
    }
    // redis-rs's own Sentinel client: SENTINEL MASTERS, then ROLE on the node it found.
    let mut sentinel =
        redis::sentinel::Sentinel::build(sentinels.map(|port| format!("redis://127.0.0.1:{port}/")).to_vec()).unwrap();
    let mut active = sentinel.master_for("tandem", None).unwrap().get_connection().unwrap();
    let _: () = redis::cmd("SET").arg("through-sentinel").arg("1").query(&mut active).unwrap();

    let mut subscriber = sentinel_connection(sentinels[1]);
    let mut subscriber = subscriber.as_pubsub();
    subscriber.subscribe("+switch-master").unwrap();
    subscriber.psubscribe("*").unwrap();
    subscriber.set_read_timeout(Some(CONVERGE_TIMEOUT)).unwrap();

    cluster.nodes[0].kill9();
    wait_active(&cluster, 1);
    let expected = format!("tandem 127.0.0.1 {first} 127.0.0.1 {second}");
    let message = subscriber.get_message().expect("a +switch-master message");
    assert_eq!(message.get_channel_name(), "+switch-master");
    assert_eq!(message.get_payload::<String>().unwrap(), expected);
    let pattern = subscriber.get_message().expect("the same message for the pattern");
    assert_eq!(pattern.get_pattern::<String>().unwrap(), "*");
    assert_eq!(pattern.get_payload::<String>().unwrap(), expected);

    poll_until(CONVERGE_TIMEOUT, "the surviving endpoint names node 2", || {
        master_addr(sentinels[1]) == Some(("127.0.0.1".into(), second))
    });
    // The first endpoint died with its node: the client moves on to the second.
    let mut active = sentinel.master_for("tandem", None).unwrap().get_connection().unwrap();
    let value: String = redis::cmd("GET").arg("through-sentinel").query(&mut active).unwrap();
    assert_eq!(value, "1");
}

/// Sends one request as RESP and returns what arrives until the connection goes quiet.
fn exchange(socket: &mut TcpStream, words: &[&str]) -> String {
    let mut request = format!("*{}\r\n", words.len());
    for word in words {
        request.push_str(&format!("${}\r\n{word}\r\n", word.len()));
    }
    socket.write_all(request.as_bytes()).unwrap();
    let mut reply = Vec::new();
    let mut buffer = [0u8; 4096];
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    loop {
        match socket.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => reply.extend_from_slice(&buffer[..count]),
            Err(_) => break,
        }
        socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    }
    String::from_utf8(reply).unwrap()
}

#[test]
fn replies_have_sentinel_shapes_in_resp2_and_resp3() {
    let (cluster, sentinels) = cluster_with_sentinels("");
    wait_active(&cluster, 0);
    let first = cluster.nodes[0].port;
    poll_until(CONVERGE_TIMEOUT, "the endpoint names node 1", || master_addr(sentinels[0]).is_some());
    let mut socket = TcpStream::connect(("127.0.0.1", sentinels[0])).unwrap();
    assert_eq!(exchange(&mut socket, &["PING"]), "+PONG\r\n");
    assert_eq!(exchange(&mut socket, &["ROLE"]), "*2\r\n$8\r\nsentinel\r\n*1\r\n$6\r\ntandem\r\n");
    let master = exchange(&mut socket, &["SENTINEL", "master", "tandem"]);
    assert!(master.starts_with("*20\r\n$4\r\nname\r\n$6\r\ntandem\r\n"), "{master}");
    assert!(master.contains(&format!("$4\r\nport\r\n${}\r\n{first}\r\n", first.to_string().len())), "{master}");
    let replicas = exchange(&mut socket, &["SENTINEL", "replicas", "tandem"]);
    assert!(replicas.contains("slave") && replicas.contains(&cluster.nodes[1].port.to_string()), "{replicas}");
    let others = exchange(&mut socket, &["SENTINEL", "sentinels", "tandem"]);
    assert!(others.contains(&sentinels[1].to_string()), "{others}");
    let quorum = exchange(&mut socket, &["SENTINEL", "ckquorum", "tandem"]);
    assert_eq!(quorum, "+OK 2 usable Sentinels. Quorum and failover authorization can be reached\r\n");
    let unknown = exchange(&mut socket, &["GET", "key"]);
    assert!(unknown.starts_with("-ERR unknown command 'GET', with args beginning with: 'key'"), "{unknown}");
    assert!(exchange(&mut socket, &["SENTINEL", "master", "other"]).starts_with("-ERR No such master"));

    let hello = exchange(&mut socket, &["HELLO", "3"]);
    assert!(hello.starts_with('%') && hello.contains("sentinel"), "{hello}");
    let master = exchange(&mut socket, &["SENTINEL", "master", "tandem"]);
    assert!(master.starts_with("%10\r\n$4\r\nname\r\n"), "{master}");
    let masters = exchange(&mut socket, &["SENTINEL", "masters"]);
    assert!(masters.starts_with("*1\r\n%10\r\n"), "{masters}");
    let none = exchange(&mut socket, &["SENTINEL", "get-master-addr-by-name", "other"]);
    assert_eq!(none, "_\r\n");
    let subscribed = exchange(&mut socket, &["SUBSCRIBE", "+switch-master"]);
    assert_eq!(subscribed, ">3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n");
    assert_eq!(exchange(&mut socket, &["QUIT"]), "+OK\r\n");

    // Malformed input: an error reply, then the connection closes.
    let mut socket = TcpStream::connect(("127.0.0.1", sentinels[0])).unwrap();
    socket.write_all(b"*1\r\n$-7\r\n").unwrap();
    let mut reply = String::new();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    socket.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("-ERR Protocol error"), "{reply}");
}

/// The Python interpreter for the redis-py test: `TANDEM_PYTHON`, else `python3`; `None`
/// when it lacks the `redis` package (the test is then skipped: redis-py is optional).
fn python_with_redis() -> Option<String> {
    let python = std::env::var("TANDEM_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = std::process::Command::new(&python).args(["-c", "import redis.sentinel"]).output().ok()?;
    probe.status.success().then_some(python)
}

/// redis-py's `redis.sentinel.Sentinel`, in RESP2 and RESP3, discovers the active and writes
/// to it. Arguments: the endpoints' ports, comma-separated; the active's client port.
const REDIS_PY_SCRIPT: &str = r#"
import sys
from redis.sentinel import Sentinel
sentinel_ports, expected = [int(port) for port in sys.argv[1].split(",")], int(sys.argv[2])
for protocol in (2, 3):
    timeouts = {"socket_timeout": 2, "socket_connect_timeout": 2}
    sentinel = Sentinel([("127.0.0.1", port) for port in sentinel_ports], sentinel_kwargs=dict(timeouts, protocol=protocol), **timeouts)
    assert sentinel.discover_master("tandem") == ("127.0.0.1", expected), sentinel.discover_master("tandem")
    assert len(sentinel.discover_slaves("tandem")) == 1, sentinel.discover_slaves("tandem")
    master = sentinel.master_for("tandem")
    assert master.set("from-redis-py", protocol)
    assert master.get("from-redis-py") == str(protocol).encode()
print("ok")
"#;

#[test]
fn redis_py_sentinel_finds_the_active_when_installed() {
    let Some(python) = python_with_redis() else {
        eprintln!("skipped: no Python with the redis package (set TANDEM_PYTHON or `pip install redis`)");
        return;
    };
    let (cluster, sentinels) = cluster_with_sentinels("");
    wait_active(&cluster, 0);
    wait_standby_joined(&cluster);
    poll_until(CONVERGE_TIMEOUT, "the endpoint names node 1", || master_addr(sentinels[0]).is_some());
    run_redis_py(&python, &sentinels, cluster.nodes[0].port);
}

/// Runs [`REDIS_PY_SCRIPT`] against the endpoints `sentinels`, expecting the active at `active_port`.
fn run_redis_py(python: &str, sentinels: &[u16], active_port: u16) {
    let ports: Vec<String> = sentinels.iter().map(u16::to_string).collect();
    let child = std::process::Command::new(python)
        .args(["-c", REDIS_PY_SCRIPT, &ports.join(","), &active_port.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A script killed at the deadline fails the assertion below.
    let (output, _) = tandem_testkit::process::output_within(child, CONVERGE_TIMEOUT);
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && stdout.contains("ok"), "{stdout}{stderr}");
}

#[test]
fn the_witness_endpoint_alone_finds_the_active_and_follows_a_failover() {
    let (mut cluster, [first_sentinel, _, witness_sentinel]) = cluster_with_witness_sentinel("ack_mode = \"sync\"");
    wait_active(&cluster, 0);
    wait_standby_joined(&cluster);
    let (first, second) = (cluster.nodes[0].port, cluster.nodes[1].port);
    poll_until(CONVERGE_TIMEOUT, "the witness's endpoint names node 1", || {
        master_addr(witness_sentinel) == Some(("127.0.0.1".into(), first))
    });
    let mut socket = TcpStream::connect(("127.0.0.1", witness_sentinel)).unwrap();
    assert_eq!(exchange(&mut socket, &["ROLE"]), "*2\r\n$8\r\nsentinel\r\n*1\r\n$6\r\ntandem\r\n");
    let master = exchange(&mut socket, &["SENTINEL", "master", "tandem"]);
    assert!(master.contains("$5\r\nflags\r\n$6\r\nmaster\r\n"), "{master}");
    assert!(master.contains("$19\r\nnum-other-sentinels\r\n$1\r\n2\r\n"), "{master}");
    let replicas = exchange(&mut socket, &["SENTINEL", "replicas", "tandem"]);
    assert!(replicas.contains("slave") && replicas.contains(&second.to_string()), "{replicas}");
    let others = exchange(&mut socket, &["SENTINEL", "sentinels", "tandem"]);
    assert!(others.starts_with("*2\r\n") && others.contains(&first_sentinel.to_string()), "{others}");
    let from_data_node =
        exchange(&mut TcpStream::connect(("127.0.0.1", first_sentinel)).unwrap(), &["SENTINEL", "sentinels", "tandem"]);
    assert!(
        from_data_node.contains(&witness_sentinel.to_string()),
        "the data nodes list the witness: {from_data_node}"
    );

    // redis-rs's Sentinel client, given the witness's endpoint only.
    let mut sentinel =
        redis::sentinel::Sentinel::build(vec![format!("redis://127.0.0.1:{witness_sentinel}/")]).unwrap();
    let mut active = sentinel.master_for("tandem", None).unwrap().get_connection().unwrap();
    let _: () = redis::cmd("SET").arg("through-the-witness").arg("1").query(&mut active).unwrap();
    let python = python_with_redis();
    if let Some(python) = &python {
        run_redis_py(python, &[witness_sentinel], first);
    }
    let mut subscriber = sentinel_connection(witness_sentinel);
    let mut subscriber = subscriber.as_pubsub();
    subscriber.subscribe("+switch-master").unwrap();
    subscriber.set_read_timeout(Some(CONVERGE_TIMEOUT)).unwrap();

    cluster.nodes[0].kill9();
    wait_active(&cluster, 1);
    let message = subscriber.get_message().expect("a +switch-master message from the witness");
    assert_eq!(message.get_channel_name(), "+switch-master");
    assert_eq!(message.get_payload::<String>().unwrap(), format!("tandem 127.0.0.1 {first} 127.0.0.1 {second}"));
    poll_until(CONVERGE_TIMEOUT, "the witness's endpoint names node 2", || {
        master_addr(witness_sentinel) == Some(("127.0.0.1".into(), second))
    });
    let mut active = sentinel.master_for("tandem", None).unwrap().get_connection().unwrap();
    let value: String = redis::cmd("GET").arg("through-the-witness").query(&mut active).unwrap();
    assert_eq!(value, "1");
    match &python {
        Some(python) => run_redis_py(python, &[witness_sentinel], second),
        None => eprintln!("redis-py part skipped: no Python with the redis package (set TANDEM_PYTHON)"),
    }
}

#[test]
fn sentinel_failover_asked_of_the_witness_is_forwarded_to_the_active() {
    let (cluster, [_, _, witness_sentinel]) = cluster_with_witness_sentinel("ack_mode = \"sync\"");
    wait_active(&cluster, 0);
    wait_standby_joined(&cluster);
    let second = cluster.nodes[1].port;
    poll_until(CONVERGE_TIMEOUT, "the witness's endpoint names node 1", || master_addr(witness_sentinel).is_some());
    let mut connection = sentinel_connection(witness_sentinel);
    let _ = connection.set_read_timeout(Some(CONVERGE_TIMEOUT));
    let reply: String = redis::cmd("SENTINEL").arg("FAILOVER").arg("tandem").query(&mut connection).unwrap();
    assert_eq!(reply, "OK");
    poll_until(CONVERGE_TIMEOUT, "the witness's endpoint names node 2", || {
        master_addr(witness_sentinel) == Some(("127.0.0.1".into(), second))
    });
    wait_active(&cluster, 1);
}

#[test]
fn sentinel_failover_is_a_planned_switchover_even_when_asked_of_the_standby() {
    let (cluster, sentinels) = cluster_with_sentinels("ack_mode = \"sync\"");
    wait_active(&cluster, 0);
    wait_standby_joined(&cluster);
    let (first, second) = (cluster.nodes[0].port, cluster.nodes[1].port);
    poll_until(CONVERGE_TIMEOUT, "the endpoint names node 1", || {
        master_addr(sentinels[1]) == Some(("127.0.0.1".into(), first))
    });
    let mut standby_sentinel = sentinel_connection(sentinels[1]);
    let unknown = redis::cmd("SENTINEL").arg("FAILOVER").arg("other").query::<String>(&mut standby_sentinel);
    assert!(unknown.unwrap_err().to_string().contains("No such master"));
    // Asked of node 2's endpoint: forwarded to the active, which hands the role over.
    let _ = standby_sentinel.set_read_timeout(Some(CONVERGE_TIMEOUT));
    let reply: String = redis::cmd("SENTINEL").arg("FAILOVER").arg("tandem").query(&mut standby_sentinel).unwrap();
    assert_eq!(reply, "OK");
    for port in sentinels {
        poll_until(CONVERGE_TIMEOUT, "the endpoints name node 2", || {
            master_addr(port) == Some(("127.0.0.1".into(), second))
        });
    }
    wait_active(&cluster, 1);
}

#[test]
fn the_witness_endpoint_asks_for_the_requirepass_of_its_file() {
    let (mut cluster, [_, _, witness_sentinel]) = cluster_with_witness_sentinel("ack_mode = \"sync\"");
    wait_active(&cluster, 0);
    let witness = cluster.witness.as_mut().unwrap();
    witness.kill9();
    let path = witness.config_path().to_path_buf();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("requirepass = \"w1tness\"\n{text}")).unwrap();
    witness.start();
    poll_until(CONVERGE_TIMEOUT, "the witness's endpoint answers", || {
        std::net::TcpStream::connect(("127.0.0.1", witness_sentinel)).is_ok()
    });
    let mut connection = sentinel_connection(witness_sentinel);
    let refused = redis::cmd("SENTINEL").arg("failover").arg("tandem").query::<String>(&mut connection).unwrap_err();
    assert_eq!(refused.code(), Some("NOAUTH"), "no switchover without the password: {refused}");
    let ok: String = redis::cmd("AUTH").arg("w1tness").query(&mut connection).unwrap();
    assert_eq!(ok, "OK");
    let first = cluster.nodes[0].port;
    poll_until(CONVERGE_TIMEOUT, "the witness's endpoint names node 1", || {
        let client = redis::Client::open(format!("redis://:w1tness@127.0.0.1:{witness_sentinel}/")).unwrap();
        let mut connection = client.get_connection_with_timeout(Duration::from_secs(5)).unwrap();
        let found: Option<(String, u16)> =
            redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg("tandem").query(&mut connection).unwrap();
        found == Some(("127.0.0.1".into(), first))
    });
}

#[test]
fn with_requirepass_the_endpoint_answers_only_after_auth() {
    let (mut cluster, sentinels) = cluster_with_sentinels("ack_mode = \"async\"");
    for node in &mut cluster.nodes {
        node.kill9();
        let path = node.node_config_path().to_path_buf();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("requirepass = \"s3cret\"\n{text}")).unwrap();
    }
    for node in &mut cluster.nodes {
        node.spawn();
    }
    // Both restarted nodes' endpoints: the second one is used at the end.
    for port in sentinels {
        poll_until(CONVERGE_TIMEOUT, "the endpoint answers", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }
    let mut connection = sentinel_connection(sentinels[0]);
    let refused = redis::cmd("SENTINEL").arg("masters").query::<redis::Value>(&mut connection).unwrap_err();
    assert_eq!(refused.code(), Some("NOAUTH"), "{refused}");
    let wrong = redis::cmd("AUTH").arg("nope").query::<String>(&mut connection).unwrap_err();
    assert_eq!(wrong.code(), Some("WRONGPASS"), "{wrong}");
    let failover = redis::cmd("SENTINEL").arg("failover").arg("tandem").query::<String>(&mut connection).unwrap_err();
    assert_eq!(failover.code(), Some("NOAUTH"), "no switchover without the password");
    let ok: String = redis::cmd("AUTH").arg("s3cret").query(&mut connection).unwrap();
    assert_eq!(ok, "OK");
    let pong: String = redis::cmd("PING").query(&mut connection).unwrap();
    assert_eq!(pong, "PONG");
    // redis-rs authenticates to the endpoint with the password in its URL.
    let client = redis::Client::open(format!("redis://:s3cret@127.0.0.1:{}/", sentinels[1])).unwrap();
    let mut authenticated = client.get_connection_with_timeout(Duration::from_secs(5)).unwrap();
    let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut authenticated).unwrap();
    assert_eq!(redis::from_redis_value::<String>(&role[0]).unwrap(), "sentinel");
}

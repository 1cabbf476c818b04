//! Helpers for the cluster tests: two real `tandem server` processes on
//! loopback with one cluster configuration (node 1 starts active, node 2
//! standby), killed and restarted by the tests. Every wait is bounded.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a node may take to answer its first PING.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long replication may take to converge in a test.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(20);
/// The shared secret of the test clusters.
pub const SECRET: &str = "test-cluster-secret-0123456789";
/// The cluster id of the test clusters.
pub const CLUSTER_ID: &str = "tandem-test";

pub use tandem_testkit::ports::free_port;

/// One data node process.
pub struct Node {
    /// Member id (1 or 2).
    pub id: u32,
    child: Option<Child>,
    /// Client port.
    pub port: u16,
    /// Replication port.
    pub peer_port: u16,
    /// Admin HTTP port, when the cluster gives members admin addresses.
    pub admin_port: Option<u16>,
    data_dir: PathBuf,
    config: PathBuf,
    dir: PathBuf,
    runs: u32,
}

/// The witness process of a cluster with a control plane.
pub struct Witness {
    /// Admin HTTP port, when the cluster gives members admin addresses.
    pub admin_port: Option<u16>,
    child: Option<Child>,
    config: PathBuf,
    dir: PathBuf,
}

/// Two data nodes of one cluster (and its witness, with a control plane).
pub struct Cluster {
    /// Node 1 (starts active) and node 2 (starts standby).
    pub nodes: Vec<Node>,
    /// The witness (member 3), when the cluster runs the control plane.
    pub witness: Option<Witness>,
    /// The `[cluster]` section both nodes share, minus `node_id`.
    pub section: String,
    /// Dropped last, so that a failing test still prints the processes' stderr.
    _temp: TempDir,
}

impl Cluster {
    /// Starts a cluster; `extra` is appended to the `[cluster]` section (e.g. `ack_mode = "async"`).
    pub fn start(extra: &str) -> Cluster {
        Cluster::start_with(extra, false)
    }

    /// Starts a witness and two data nodes whose roles the control plane decides.
    pub fn start_with_control_plane(extra: &str) -> Cluster {
        Cluster::start_with(extra, true)
    }

    /// Starts a cluster with the control plane whose three members also have admin addresses
    /// (for `tandem status|switchover|promote`); `member_fields` are appended to data
    /// members 1 and 2 (e.g. `priority = 200`).
    pub fn start_with_admin(extra: &str, member_fields: [&str; 2]) -> Cluster {
        Cluster::start_with_members(extra, true, Some([member_fields[0], member_fields[1], ""]))
    }

    /// As [`Cluster::start_with_admin`], with `member_fields` appended to members 1, 2 and 3
    /// (the witness; e.g. a `sentinel` address).
    pub fn start_with_admin_fields(extra: &str, member_fields: [&str; 3]) -> Cluster {
        Cluster::start_with_members(extra, true, Some(member_fields))
    }

    /// Starts a witness and two data nodes with the control plane, with `top_level` (a
    /// section such as `[archive]`, where `{node}` becomes the node's id) in each data
    /// node's file before its `[cluster]` section.
    pub fn start_with_sections(extra: &str, top_level: &str) -> Cluster {
        Cluster::start_with_members_and(extra, true, None, top_level, true)
    }

    /// As [`Cluster::start_with_control_plane`], with node 1 (the initial active) left
    /// stopped: the witness and node 2 form the control group without it.
    pub fn start_with_control_plane_without_node_1(extra: &str) -> Cluster {
        Cluster::start_with_members_and(extra, true, None, "", false)
    }

    fn start_with(extra: &str, control_plane: bool) -> Cluster {
        Cluster::start_with_members(extra, control_plane, None)
    }

    fn start_with_members(extra: &str, control_plane: bool, admin: Option<[&str; 3]>) -> Cluster {
        Cluster::start_with_members_and(extra, control_plane, admin, "", true)
    }

    fn start_with_members_and(
        extra: &str,
        control_plane: bool,
        admin: Option<[&str; 3]>,
        top_level: &str,
        start_node_1: bool,
    ) -> Cluster {
        let temp = tempfile::Builder::new().prefix("tandem-cluster-").tempdir().unwrap();
        let ports: Vec<(u16, u16)> = (0..2).map(|_| (free_port(), free_port())).collect();
        let admin_ports: Vec<Option<u16>> = (0..3).map(|_| admin.map(|_| free_port())).collect();
        let member_extra = |index: usize| {
            let mut fields = String::new();
            if let Some(port) = admin_ports[index] {
                fields.push_str(&format!(", admin = \"127.0.0.1:{port}\""));
            }
            if let Some(extra) = admin.and_then(|fields| fields.get(index).copied()).filter(|text| !text.is_empty()) {
                fields.push_str(&format!(", {extra}"));
            }
            fields
        };
        let control = |index: usize| {
            let control =
                if control_plane { format!(", control = \"127.0.0.1:{}\"", free_port()) } else { String::new() };
            control + &member_extra(index)
        };
        let section = format!(
            "cluster_id = \"{CLUSTER_ID}\"\nsecret = \"{SECRET}\"\ninitial_active = 1\nheartbeat_ms = 50\n{extra}\n\
             members = [\n  {{ id = 1, role = \"data\", client = \"127.0.0.1:{}\", peer = \"127.0.0.1:{}\"{} }},\n  \
             {{ id = 2, role = \"data\", client = \"127.0.0.1:{}\", peer = \"127.0.0.1:{}\"{} }},\n  \
             {{ id = 3, role = \"witness\", peer = \"127.0.0.1:{}\"{} }},\n]\n",
            ports[0].0,
            ports[0].1,
            control(0),
            ports[1].0,
            ports[1].1,
            control(1),
            free_port(),
            control(2),
        );
        let witness = control_plane.then(|| {
            let dir = temp.path().join("witness");
            std::fs::create_dir_all(&dir).unwrap();
            let config = dir.join("tandem.toml");
            std::fs::write(&config, format!("[cluster]\nnode_id = 3\n{section}")).unwrap();
            let mut witness = Witness { admin_port: admin_ports[2], child: None, config, dir };
            witness.start();
            witness
        });
        let nodes = (1..=2u32)
            .map(|id| {
                let dir = temp.path().join(format!("node{id}"));
                std::fs::create_dir_all(&dir).unwrap();
                let config = dir.join("tandem.toml");
                // With member admin addresses the admin endpoint listens there; else none.
                let admin_port_line = if admin.is_some() { "" } else { "admin_port = 0\n" };
                let top_level = top_level.replace("{node}", &id.to_string());
                std::fs::write(&config, format!("{admin_port_line}{top_level}\n[cluster]\nnode_id = {id}\n{section}"))
                    .unwrap();
                let (port, peer_port) = ports[id as usize - 1];
                let admin_port = admin_ports[id as usize - 1];
                Node { id, child: None, port, peer_port, admin_port, data_dir: dir.join("data"), config, dir, runs: 0 }
            })
            .collect();
        let mut cluster = Cluster { _temp: temp, nodes, witness, section };
        for node in cluster.nodes.iter_mut().skip(usize::from(!start_node_1)) {
            node.start();
        }
        cluster
    }

    /// A configuration file for the operator's commands: the `[cluster]` section alone,
    /// without `node_id` (`tandem status --config <this>`).
    pub fn operator_config(&self) -> PathBuf {
        let path = self._temp.path().join("cluster.toml");
        std::fs::write(&path, format!("[cluster]\n{}", self.section)).unwrap();
        path
    }

    /// Runs `tandem <args>` (an operator command) to completion, bounded by `within`.
    pub fn tandem(&self, args: &[&str], within: Duration) -> std::process::Output {
        let child = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .env_remove("RUST_LOG")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tandem");
        let (output, finished) = tandem_testkit::process::output_within(child, within);
        assert!(finished, "tandem {args:?} did not finish within {within:?}");
        output
    }

    /// The node that starts active.
    pub fn active(&mut self) -> &mut Node {
        &mut self.nodes[0]
    }

    /// The node that starts standby.
    pub fn standby(&mut self) -> &mut Node {
        &mut self.nodes[1]
    }

    /// Waits until the standby holds exactly the active's records and keyspace.
    pub fn wait_converged(&mut self) {
        let (active, standby) = (&self.nodes[0], &self.nodes[1]);
        let mut active_connection = active.connection();
        let mut standby_connection = standby.connection();
        poll_until(CONVERGE_TIMEOUT, "the standby converges on the active", || {
            let active_offset = info_field(&mut active_connection, "master_repl_offset");
            let standby_offset = info_field(&mut standby_connection, "slave_repl_offset");
            active_offset == standby_offset && digest(&mut active_connection) == digest(&mut standby_connection)
        });
    }
}

impl Witness {
    /// Starts `tandem witness` (it has no client port to wait for).
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "the witness is already running");
        let stderr = File::create(self.stderr_path()).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .arg("witness")
            .arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("spawn tandem witness");
        self.child = Some(child);
    }

    /// SIGKILL, and wait until the process is gone.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("the witness is running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|child| child.try_wait().unwrap().is_none())
    }

    /// The witness's stderr.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    /// The witness's configuration file.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir.join("stderr.log")
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- witness stderr ----\n{}", self.stderr());
        }
    }
}

impl Node {
    /// Starts (or restarts) the process without waiting for it to be ready.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "node {} is already running", self.id);
        self.runs += 1;
        let stderr = File::create(self.stderr_path()).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .arg("server")
            .arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("spawn tandem server");
        self.child = Some(child);
    }

    /// Starts (or restarts) the process and waits until it answers PING.
    pub fn start(&mut self) {
        self.spawn();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!("node {} exited with {status}; stderr:\n{}", self.id, self.stderr());
            }
            if let Ok(mut connection) = redis::Client::open(self.url()).unwrap().get_connection() {
                if redis::cmd("PING").query::<String>(&mut connection).is_ok() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "node {} not ready; stderr:\n{}", self.id, self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, and wait until the process is gone.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("the node is running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Freezes the whole process (SIGSTOP), as a VM stall or a long GC pause would: its
    /// sockets stay open, its clocks keep running, it answers nothing until `resume`.
    /// Returns once every thread is stopped, so nothing sent afterwards is served before
    /// `resume`.
    pub fn pause(&mut self) {
        self.signal(libc::SIGSTOP);
        let pid = self.child.as_ref().expect("the node is running").id();
        poll_until(READY_TIMEOUT, &format!("every thread of node {} is stopped", self.id), || all_threads_stopped(pid));
    }

    /// Lets a paused process run again (SIGCONT).
    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&mut self, signal: libc::c_int) {
        let child = self.child.as_ref().expect("the node is running");
        let pid = libc::pid_t::try_from(child.id()).expect("a pid fits pid_t");
        // SAFETY: kill(2) with a pid this test spawned and has not reaped (it holds the `Child`).
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(result, 0, "kill({pid}, {signal}): {}", std::io::Error::last_os_error());
    }

    /// Whether the process is still running (a paused process counts as running).
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|child| child.try_wait().unwrap().is_none())
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The replication address.
    pub fn peer_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.peer_port))
    }

    /// A client connection with a bounded read timeout.
    pub fn connection(&self) -> redis::Connection {
        let connection = redis::Client::open(self.url()).unwrap().get_connection().unwrap();
        connection.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        connection
    }

    /// Its configuration file (a test may edit it before `start`).
    pub fn node_config_path(&self) -> &Path {
        &self.config
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The stderr of the current (or last) process.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir.join(format!("stderr.{}.log", self.runs))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- node {} stderr (run {}) ----\n{}", self.id, self.runs, self.stderr());
        }
    }
}

/// Whether every thread of process `pid` is in the stopped state (`T` in `/proc`).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.filter_map(Result::ok).all(|task| {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // The state follows the parenthesised command name, which may itself contain spaces.
        stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) == Some("T")
    })
}

// Each test binary uses a different subset of these helpers.
#[allow(unused_imports)]
pub use tandem_testkit::seed::test_seed;

/// One `INFO replication` field of `node` over a fresh connection; "" if the node cannot
/// answer (down, paused, or the field is absent).
pub fn info(node: &Node, field: &str) -> String {
    let Ok(connection) = redis::Client::open(node.url()).unwrap().get_connection_with_timeout(Duration::from_secs(2))
    else {
        return String::new();
    };
    let mut connection = connection;
    let _ = connection.set_read_timeout(Some(Duration::from_secs(2)));
    let Ok(text) = redis::cmd("INFO").arg("replication").query::<String>(&mut connection) else {
        return String::new();
    };
    text.lines()
        .find_map(|line| line.strip_prefix(field).and_then(|rest| rest.strip_prefix(':')))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The first element of `ROLE`'s reply ("master" or "slave"), or "" if the node cannot answer.
pub fn role(node: &Node) -> String {
    let Ok(mut connection) = redis::Client::open(node.url()).unwrap().get_connection() else {
        return String::new();
    };
    let _ = connection.set_read_timeout(Some(Duration::from_secs(2)));
    let reply: redis::RedisResult<Vec<redis::Value>> = redis::cmd("ROLE").query(&mut connection);
    match reply.ok().and_then(|values| values.into_iter().next()) {
        Some(value) => redis::from_redis_value::<String>(&value).unwrap_or_default(),
        None => String::new(),
    }
}

/// Whether a `SET` on `node` is acknowledged now (over a fresh connection).
pub fn accepts_a_write(node: &Node, key: &str) -> bool {
    let Ok(mut connection) = redis::Client::open(node.url()).unwrap().get_connection() else {
        return false;
    };
    let _ = connection.set_read_timeout(Some(Duration::from_secs(5)));
    redis::cmd("SET").arg(key).arg("1").query::<String>(&mut connection).is_ok()
}

/// Waits until node `index` is the active and acknowledges writes.
pub fn wait_active(cluster: &Cluster, index: usize) {
    let node = &cluster.nodes[index];
    poll_until(CONVERGE_TIMEOUT, &format!("node {} is the active and accepts writes", node.id), || {
        role(node) == "master" && accepts_a_write(node, "probe")
    });
}

/// Waits until node 2 follows node 1 and its control-plane member holds the current control
/// log with node 1 leading it (the active's lease is the control leader's lease).
pub fn wait_standby_joined(cluster: &Cluster) {
    let standby = &cluster.nodes[1];
    poll_until(CONVERGE_TIMEOUT, "node 2 follows node 1 on both planes", || {
        info(standby, "role") == "slave"
            && info(standby, "master_link_status") == "up"
            && info(standby, "tandem_control_active") == "1"
            && info(standby, "tandem_control_leader") == "1"
    });
}

/// One `INFO replication` field's value ("" if absent).
pub fn info_field(connection: &mut redis::Connection, field: &str) -> String {
    try_info_field(connection, field).unwrap()
}

/// [`info_field`], with the connection's error for a caller that expects the node
/// to close it (a restart).
pub fn try_info_field(connection: &mut redis::Connection, field: &str) -> redis::RedisResult<String> {
    let info: String = redis::cmd("INFO").arg("replication").query(connection)?;
    Ok(info
        .lines()
        .find_map(|line| line.strip_prefix(field).and_then(|rest| rest.strip_prefix(':')))
        .unwrap_or_default()
        .trim()
        .to_string())
}

/// `DEBUG DIGEST` of a node.
pub fn digest(connection: &mut redis::Connection) -> String {
    try_digest(connection).unwrap()
}

/// [`digest`], with the connection's error.
pub fn try_digest(connection: &mut redis::Connection) -> redis::RedisResult<String> {
    redis::cmd("DEBUG").arg("DIGEST").query(connection)
}

/// Polls until `condition` holds; panics with `what` after `within`.
pub fn poll_until(within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The validated cluster section of node `node_id`, with `edit` applied to its TOML (for
/// tests that speak the peer protocol themselves, e.g. with a wrong secret).
pub fn cluster_config(
    cluster: &Cluster,
    node_id: u32,
    edit: impl Fn(String) -> String,
) -> tandem::config::ClusterConfig {
    let text = edit(format!("[cluster]\nnode_id = {node_id}\n{}", cluster.section));
    let file: tandem::config::FileConfig = toml::from_str(&text).unwrap();
    file.validate().unwrap().cluster.unwrap()
}

/// Client threads that `SET` unique keys until stopped, recording every
/// acknowledged write. An I/O error or a timeout ends a writer: that write's
/// outcome is unknown, never counted as absent; an error reply (e.g.
/// `READONLY` while fenced) is retried.
pub struct Writers {
    acknowledged: Arc<Mutex<BTreeMap<String, String>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Writers {
    /// Starts `count` writers against `url`.
    pub fn start(url: &str, count: usize) -> Writers {
        let acknowledged: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..count)
            .map(|writer| {
                let (url, acknowledged, stop) = (url.to_string(), acknowledged.clone(), stop.clone());
                std::thread::spawn(move || write_until_stopped(&url, writer, &acknowledged, &stop))
            })
            .collect();
        Writers { acknowledged, stop, threads }
    }

    /// Writes acknowledged so far.
    pub fn acknowledged_count(&self) -> usize {
        self.acknowledged.lock().unwrap().len()
    }

    /// Stops the writers and returns every acknowledged (key, value).
    pub fn stop(self) -> BTreeMap<String, String> {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().unwrap();
        }
        self.acknowledged.lock().unwrap().clone()
    }
}

fn write_until_stopped(url: &str, writer: usize, acknowledged: &Mutex<BTreeMap<String, String>>, stop: &AtomicBool) {
    let mut connection = redis::Client::open(url).unwrap().get_connection().unwrap();
    connection.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for sequence in 0.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let (key, value) = (format!("w{writer}:k{sequence}"), format!("v{sequence}"));
        match redis::cmd("SET").arg(&key).arg(&value).query::<String>(&mut connection) {
            Ok(_) => {
                acknowledged.lock().unwrap().insert(key, value);
            }
            Err(error) if error.is_io_error() || error.is_connection_dropped() || error.is_timeout() => return,
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// The acknowledged keys whose value `connection` does not return.
pub fn lost_writes(connection: &mut redis::Connection, acknowledged: &BTreeMap<String, String>) -> Vec<String> {
    acknowledged
        .iter()
        .filter(|(key, value)| read_when_served(connection, key).as_ref() != Some(*value))
        .map(|(key, _)| key.clone())
        .collect()
}

/// `GET key`, retried while the node refuses reads because it holds no lease at that
/// moment: on a loaded machine an active's lease can lapse for a moment (a late control
/// heartbeat) and it then fences itself, correctly; that says nothing about its data.
fn read_when_served(connection: &mut redis::Connection, key: &str) -> Option<String> {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        match redis::cmd("GET").arg(key).query::<Option<String>>(connection) {
            Ok(value) => return value,
            Err(error) if error.to_string().contains("fenced") && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(error) => panic!("GET {key}: {error}"),
        }
    }
}

/// A single-threaded runtime for tests that speak the peer protocol themselves.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Connects to `addr` as node 2 with `config`; returns the handshake outcome and the open socket.
pub async fn connect_as(
    addr: SocketAddr,
    config: &tandem::config::ClusterConfig,
) -> (Result<(), String>, tokio::net::TcpStream, tandem::repl::wire::PeerReader) {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut reader = tandem::repl::wire::PeerReader::new(1 << 20);
    let outcome =
        tandem::repl::handshake::connect(&mut socket, &mut reader, config, 1).await.map_err(|error| error.to_string());
    (outcome, socket, reader)
}

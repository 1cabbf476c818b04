//! A tandem cluster across the hosts of a network lab (`tandem_testkit::lab`): one
//! host per member (data members 1 and 2, the witness as member 3), the virtual IP
//! on `eth0`, clients on hosts of their own. Used by `tests/lab_failover.rs` and the
//! lab test of `tests/virtual_ip.rs`.
//!
//! Test code reaches a host by running a thread inside the host's network namespace
//! ([`within`], `setns(2)` moves the calling thread only), so that clients and the
//! test share one process and one clock. Every wait is bounded; when a test panics, the
//! cluster, as it is dropped, prints the nodes' logs and INFO, the switch's rules and
//! the hosts' addresses and neighbour tables.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use tandem_testkit::lab::{self, Lab, Skip};

/// Every member uses the same ports: each has an address (a host) of its own.
pub const CLIENT_PORT: u16 = 6379;
const PEER_PORT: u16 = 17100;
const CONTROL_PORT: u16 = 17201;
/// The data members' Sentinel endpoints, when [`Settings::sentinel`] is set.
pub const SENTINEL_PORT: u16 = 26379;
/// How long a cluster may take to start, and a failover or a rejoin to complete.
pub const WAIT: Duration = Duration::from_secs(30);
/// How long a request of the test's own (INFO, a read-back) may wait.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Lines of each node's log printed with a failure.
const LOG_TAIL_LINES: usize = 60;
const SECRET: &str = "lab-cluster-secret-0123456789";
/// The members' log filter.
const LOG_FILTER: &str = "RUST_LOG=info,openraft=warn";

/// Which lab hosts run the members.
#[derive(Debug, Clone, Copy)]
pub struct Placement<'a> {
    /// The hosts of data members 1 and 2 (member 1 is the initial active).
    pub data: [&'a str; 2],
    /// The witness's host (member 3).
    pub witness: &'a str,
}

/// What the cluster's configuration adds to the common part.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    /// The `cluster_id`.
    pub cluster_id: &'a str,
    /// Lines appended to the `[cluster]` section (ack mode, timings).
    pub cluster_lines: &'a str,
    /// Lines appended to `[cluster.virtual_ip]` (address and interface are given).
    pub virtual_ip_lines: &'a str,
    /// Whether data members serve a Sentinel endpoint on their address, [`SENTINEL_PORT`].
    pub sentinel: bool,
}

/// A running cluster in its lab; dropping it tears the lab down (processes included).
pub struct LabCluster {
    /// The lab: faults, neighbour tables, rules.
    pub lab: Lab,
    /// Hosts of data members 1 and 2.
    pub data_hosts: [String; 2],
    /// The witness's host.
    pub witness_host: String,
    /// The service address that follows the active.
    pub virtual_ip: Ipv4Addr,
    /// The hosts that run no member.
    client_hosts: Vec<String>,
    /// The PID of each member's process, by host.
    pids: BTreeMap<String, u32>,
    /// Configurations, data directories and logs.
    dir: tempfile::TempDir,
}

impl LabCluster {
    /// Builds a lab with the members' hosts and `clients`, and starts the witness and both
    /// data nodes, each on its host; `Err` says why the lab cannot run here.
    pub fn up(placement: Placement, clients: &[&str], settings: Settings) -> Result<LabCluster, Skip> {
        let mut hosts = vec![placement.data[0], placement.data[1], placement.witness];
        hosts.extend_from_slice(clients);
        let lab = Lab::up(&hosts)?;
        let dir = tempfile::Builder::new().prefix("tandem-lab-cluster-").tempdir().unwrap();
        let virtual_ip = lab.virtual_address(0);
        let member = |id: u32, host: &str, data: bool| {
            let address = lab.address(host);
            let mut fields = format!("id = {id}, role = \"{}\", ", if data { "data" } else { "witness" });
            if data {
                fields.push_str(&format!("client = \"{address}:{CLIENT_PORT}\", "));
            }
            fields.push_str(&format!("peer = \"{address}:{PEER_PORT}\", control = \"{address}:{CONTROL_PORT}\""));
            if data && settings.sentinel {
                fields.push_str(&format!(", sentinel = \"{address}:{SENTINEL_PORT}\""));
            }
            format!("  {{ {fields} }},\n")
        };
        // The virtual IP's port is left to its default: the data members' client port.
        let section = format!(
            "cluster_id = \"{}\"\nsecret = \"{SECRET}\"\ninitial_active = 1\n{}\nmembers = [\n{}{}{}]\n\n\
             [cluster.virtual_ip]\naddress = \"{virtual_ip}/16\"\ninterface = \"eth0\"\n{}\n",
            settings.cluster_id,
            settings.cluster_lines,
            member(1, placement.data[0], true),
            member(2, placement.data[1], true),
            member(3, placement.witness, false),
            settings.virtual_ip_lines,
        );
        let tandem = env!("CARGO_BIN_EXE_tandem");
        let mut pids = BTreeMap::new();
        let members =
            [(3, placement.witness, "witness"), (1, placement.data[0], "server"), (2, placement.data[1], "server")];
        for (id, host, command) in members {
            let admin = if id == 3 { "" } else { "admin_port = 0\n" };
            let config = dir.path().join(format!("node{id}.toml"));
            std::fs::write(&config, format!("{admin}[cluster]\nnode_id = {id}\n{section}")).unwrap();
            let data_dir = dir.path().join(format!("data{id}"));
            let log = dir.path().join(format!("{host}.log"));
            // `env` execs, so the recorded PID is the member's. Raft's own chatter would
            // drown the tails printed with a failure.
            let (config, data_dir) = (config.to_str().unwrap(), data_dir.to_str().unwrap());
            let args = ["env", "NO_COLOR=1", LOG_FILTER, tandem, command, "--config", config, "--data-dir", data_dir];
            pids.insert(host.to_owned(), lab.spawn(host, &log, &args));
        }
        Ok(LabCluster {
            lab,
            data_hosts: placement.data.map(str::to_owned),
            witness_host: placement.witness.to_owned(),
            virtual_ip,
            client_hosts: clients.iter().map(|host| (*host).to_owned()).collect(),
            pids,
            dir,
        })
    }

    /// The member id of a data host (1 or 2).
    pub fn member_id(&self, host: &str) -> u32 {
        match self.data_hosts.iter().position(|data| data == host) {
            Some(index) => index as u32 + 1,
            None => panic!("{host} runs no data member"),
        }
    }

    /// The other data member's host.
    pub fn other_data_host(&self, host: &str) -> &str {
        &self.data_hosts[2 - self.member_id(host) as usize]
    }

    /// A data member's client address (its own, not the virtual IP).
    pub fn client_address(&self, host: &str) -> SocketAddrV4 {
        SocketAddrV4::new(self.lab.address(host), CLIENT_PORT)
    }

    /// The virtual IP's client address.
    pub fn virtual_address(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.virtual_ip, CLIENT_PORT)
    }

    /// The PID of the member on `host`, for the lab's `kill`, `pause`, `resume`.
    pub fn pid(&self, host: &str) -> u32 {
        self.pids[host]
    }

    /// `kill -9` of the member on `host`.
    pub fn kill(&self, host: &str) {
        self.lab.kill(self.pid(host));
    }

    /// The `INFO replication` fields of the data node on `host`, asked from inside its host
    /// (so that partitions do not hide it); empty when it does not answer.
    pub fn info(&self, host: &str) -> BTreeMap<String, String> {
        let address = self.client_address(host);
        let text = try_within(&self.lab.namespace(host), move || {
            let mut connection = connect(address, REQUEST_TIMEOUT)?;
            redis::cmd("INFO").arg("replication").query::<String>(&mut connection).ok()
        });
        let text = text.flatten().unwrap_or_default();
        text.lines()
            .filter_map(|line| line.split_once(':'))
            .map(|(field, value)| (field.to_owned(), value.trim().to_owned()))
            .collect()
    }

    /// One `INFO replication` field of the node on `host` (empty when absent).
    pub fn info_field(&self, host: &str, field: &str) -> String {
        self.info(host).remove(field).unwrap_or_default()
    }

    /// Whether the node on `host` is the active with a valid lease (it accepts writes).
    pub fn is_active(&self, host: &str) -> bool {
        self.info_field(host, "tandem_lease_valid") == "1"
    }

    /// Whether the node on `host` follows the active: a standby with its link up.
    pub fn follows(&self, host: &str) -> bool {
        let info = self.info(host);
        info.get("role").map(String::as_str) == Some("slave")
            && info.get("master_link_status").map(String::as_str) == Some("up")
    }

    /// Whether `host`'s `eth0` carries the virtual IP (`ip -n NS addr`).
    pub fn holds_virtual_ip(&self, host: &str) -> bool {
        let output = Command::new("ip")
            .args(["-n", &self.lab.namespace(host), "-4", "-o", "addr", "show", "dev", "eth0"])
            .output()
            .expect("ip runs");
        let prefix = format!("{}/", self.virtual_ip);
        String::from_utf8_lossy(&output.stdout).split_whitespace().any(|word| word.starts_with(&prefix))
    }

    /// The lab host `from` sends the virtual IP's frames to (its ARP entry's owner).
    pub fn virtual_ip_owner_seen_by(&self, from: &str) -> Option<String> {
        self.lab.neigh(from).into_iter().find(|entry| entry.address == self.virtual_ip).and_then(|entry| entry.owner)
    }

    /// Polls `check` until it holds; fails with `what` after [`WAIT`] (the diagnostics
    /// follow when the cluster is dropped).
    pub fn wait_until(&self, what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + WAIT;
        while !check() {
            assert!(Instant::now() < deadline, "timed out after {WAIT:?} waiting until {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until one data node is the active holding the virtual IP and the other its
    /// in-sync standby holding the current control state (so that it can be elected);
    /// returns their hosts, active first.
    pub fn wait_stable(&self) -> (String, String) {
        let mut found = None;
        self.wait_until("one node is the active with the virtual IP and the other its in-sync standby", || {
            for host in &self.data_hosts {
                let other = self.other_data_host(host);
                let (active, standby) = (self.info(host), self.info(other));
                let field = |info: &BTreeMap<String, String>, name: &str| info.get(name).cloned().unwrap_or_default();
                let stable = field(&active, "tandem_lease_valid") == "1"
                    && field(&active, "tandem_service_address_bound") == "1"
                    && field(&active, "tandem_control_in_sync")
                        .split(',')
                        .any(|id| id == field(&standby, "tandem_node_id"))
                    && field(&standby, "master_link_status") == "up"
                    && field(&standby, "tandem_control_active") == field(&active, "tandem_node_id")
                    && self.holds_virtual_ip(host)
                    && !self.holds_virtual_ip(other);
                if stable {
                    found = Some((host.clone(), other.to_owned()));
                    return true;
                }
            }
            false
        });
        found.expect("the wait returned")
    }

    /// The last lines of the log of the member on `host`.
    pub fn log_tail(&self, host: &str) -> String {
        tail(&self.log_path(host))
    }

    /// A directory for the test's own files (it goes with the cluster).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn log_path(&self, host: &str) -> PathBuf {
        self.dir.path().join(format!("{host}.log"))
    }

    /// The nodes' logs, INFO, the switch's rules, every host's addresses and neighbours.
    /// Never panics (it runs while a test panics).
    pub fn diagnostics(&self) -> String {
        let mut text = String::new();
        // The members' logs, and those a test keeps in the same directory.
        let mut logs: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .map(|entries| entries.filter_map(Result::ok).map(|entry| entry.path()).collect())
            .unwrap_or_default();
        logs.retain(|path| path.extension().is_some_and(|extension| extension == "log"));
        logs.sort();
        for path in logs {
            let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            text.push_str(&format!("---- {name} (last {LOG_TAIL_LINES} lines) ----\n{}\n", tail(&path)));
        }
        for host in &self.data_hosts {
            let info: Vec<String> = self
                .info(host)
                .into_iter()
                .filter(|(field, _)| field == "role" || field.starts_with("tandem_") || field.starts_with("master_"))
                .map(|(field, value)| format!("{field}:{value}"))
                .collect();
            text.push_str(&format!("---- {host} INFO replication ----\n{}\n", info.join(" ")));
        }
        let rules = Command::new(lab::script()).args(["rules", self.lab.name()]).output();
        let rules = rules.map(|output| String::from_utf8_lossy(&output.stdout).into_owned()).unwrap_or_default();
        text.push_str(&format!("---- switch rules ----\n{rules}\n"));
        let mut hosts: Vec<&str> = self.pids.keys().map(String::as_str).collect();
        hosts.extend(self.client_hosts.iter().map(String::as_str));
        for host in hosts {
            let namespace = format!("{}-{host}", self.lab.name());
            for what in [&["-4", "-o", "addr", "show", "dev", "eth0"][..], &["-4", "neigh", "show", "dev", "eth0"][..]]
            {
                let output = Command::new("ip").arg("-n").arg(&namespace).args(what).output();
                let shown =
                    output.map(|output| String::from_utf8_lossy(&output.stdout).into_owned()).unwrap_or_default();
                text.push_str(&format!("---- {host}: ip {} ----\n{shown}", what.join(" ")));
            }
        }
        text
    }
}

impl Drop for LabCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.diagnostics());
        }
    }
}

/// The last [`LOG_TAIL_LINES`] lines of a file (empty if it cannot be read).
fn tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// Moves the calling thread into a network namespace (`/run/netns/NAME`, as `ip netns`
/// makes them); it stays there until it ends.
pub fn enter_namespace(namespace: &str) -> std::io::Result<()> {
    let file = std::fs::File::open(format!("/run/netns/{namespace}"))?;
    // SAFETY: setns(2) with a namespace descriptor this thread holds open; CLONE_NEWNET
    // moves only the calling thread, which owns no socket yet.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `work` on a thread inside a host's network namespace; its result.
pub fn within<T: Send>(namespace: &str, work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        let thread = scope.spawn(|| {
            enter_namespace(namespace).unwrap_or_else(|error| panic!("setns into {namespace}: {error}"));
            work()
        });
        thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// [`within`], but `None` instead of a panic when the namespace cannot be entered or the
/// work panicked (for diagnostics).
pub fn try_within<T: Send>(namespace: &str, work: impl FnOnce() -> T + Send) -> Option<T> {
    std::thread::scope(|scope| {
        let thread = scope.spawn(|| enter_namespace(namespace).ok().map(|()| work()));
        thread.join().ok().flatten()
    })
}

/// A connection to `address` with connect, read and write timeouts; `None` if it fails.
pub fn connect(address: SocketAddrV4, timeout: Duration) -> Option<redis::Connection> {
    let client = redis::Client::open(format!("redis://{address}/")).ok()?;
    let connection = client.get_connection_with_timeout(timeout).ok()?;
    connection.set_read_timeout(Some(timeout)).ok()?;
    connection.set_write_timeout(Some(timeout)).ok()?;
    Some(connection)
}

/// One request from host `from` to `to`, its reply as `redis-cli` would print a simple
/// one (`OK`, a string, `(nil)`), `(error) …` or `(no reply)`.
pub fn request(cluster: &LabCluster, from: &str, to: SocketAddrV4, args: &[&str]) -> String {
    within(&cluster.lab.namespace(from), || {
        let Some(mut connection) = connect(to, REQUEST_TIMEOUT) else { return "(no connection)".to_owned() };
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        match command.query::<redis::Value>(&mut connection) {
            Ok(redis::Value::Okay) => "OK".to_owned(),
            Ok(redis::Value::Nil) => "(nil)".to_owned(),
            Ok(redis::Value::SimpleString(text)) => text,
            Ok(redis::Value::BulkString(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            Ok(redis::Value::Int(number)) => number.to_string(),
            Ok(other) => format!("{other:?}"),
            Err(error) if error.code().is_some() => format!("(error) {error}"),
            Err(_) => "(no reply)".to_owned(),
        }
    })
}

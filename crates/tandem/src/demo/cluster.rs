//! The demo's local cluster: a witness and two data nodes, child processes of
//! `tandem demo` (the same executable), on loopback ports, with their files
//! and stderr in one temporary directory.
//!
//! Children are registered by member id in [`Children`], shared with the
//! Ctrl-C handler, so that every exit path stops exactly the processes this
//! demo started (by PID), and nothing else.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::Rng;

/// The data nodes' member ids; node 1 is the first active.
pub const DATA_NODES: [u32; 2] = [1, 2];
/// The witness's member id.
pub const WITNESS: u32 = 3;
/// Ports the demo picks from: below Linux's ephemeral range, so that a node's outgoing
/// connection never takes a port picked for another member before that member binds it.
const PORTS: std::ops::Range<u16> = 20_000..32_000;
/// How long a started node may take to answer PING.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the children get to exit after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);
/// Lines of a process's stderr shown when something fails.
const STDERR_TAIL_LINES: usize = 15;

/// How the `[cluster]` section is tuned.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// `sync`, `semi-sync` or `async`.
    pub ack_mode: &'static str,
    /// Heartbeat and detector fields, as TOML lines (empty: the built-in defaults).
    pub timing_lines: String,
    /// `hot` or `cold`.
    pub standby: &'static str,
    /// With a cold standby: how often the active ships to the archive, ms.
    pub archive_interval_ms: u64,
}

/// The child processes by member id. Once closed (Ctrl-C or the end of the demo), a
/// process registered afterwards is stopped at once.
#[derive(Default)]
pub struct Children {
    running: Mutex<BTreeMap<u32, Child>>,
    closed: std::sync::atomic::AtomicBool,
}

impl Children {
    fn insert(&self, member: u32, mut child: Child) {
        let mut running = self.running.lock().expect("children lock");
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = child.kill();
            let _ = child.wait();
            return;
        }
        running.insert(member, child);
    }

    /// SIGKILL of one member, waiting until it is gone; false if it was not running.
    pub fn kill(&self, member: u32) -> bool {
        let Some(mut child) = self.running.lock().expect("children lock").remove(&member) else { return false };
        let _ = child.kill();
        let _ = child.wait();
        true
    }

    /// Whether `member` is running; a process that exited is reaped and reported.
    fn check_running(&self, member: u32) -> Result<(), String> {
        let mut running = self.running.lock().expect("children lock");
        let Some(child) = running.get_mut(&member) else { return Err("not running".into()) };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                running.remove(&member);
                Err(format!("exited with {status}"))
            }
            Err(error) => Err(error.to_string()),
        }
    }

    /// Stops every child (SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]) and refuses new ones.
    pub fn stop_all(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut children: Vec<Child> =
            std::mem::take(&mut *self.running.lock().expect("children lock")).into_values().collect();
        for child in &children {
            // SAFETY: kill(2) of a child this process started and has not reaped yet.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline && children.iter_mut().any(|child| matches!(child.try_wait(), Ok(None))) {
            std::thread::sleep(Duration::from_millis(20));
        }
        for child in &mut children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One member's addresses.
#[derive(Debug, Clone, Copy)]
struct MemberAddresses {
    client: Option<SocketAddr>,
    peer: SocketAddr,
    control: SocketAddr,
}

/// The running demo cluster.
pub struct LocalCluster {
    directory: PathBuf,
    members: BTreeMap<u32, MemberAddresses>,
    /// The address clients use whichever node is active.
    pub service_address: SocketAddr,
    children: std::sync::Arc<Children>,
    /// Processes started per member, naming each run's stderr file.
    runs: BTreeMap<u32, u32>,
}

impl LocalCluster {
    /// Writes the configurations, starts the witness and both data nodes, and waits
    /// until both data nodes answer PING.
    pub async fn start(
        directory: &Path,
        settings: &ClusterSettings,
        children: std::sync::Arc<Children>,
    ) -> anyhow::Result<LocalCluster> {
        let mut ports = PortPicker::new();
        let mut members = BTreeMap::new();
        for id in DATA_NODES {
            let client = Some(ports.loopback()?);
            members.insert(id, MemberAddresses { client, peer: ports.loopback()?, control: ports.loopback()? });
        }
        members.insert(WITNESS, MemberAddresses { client: None, peer: ports.loopback()?, control: ports.loopback()? });
        let service_address = ports.service_address()?;
        let mut cluster = LocalCluster {
            directory: directory.to_path_buf(),
            members,
            service_address,
            children,
            runs: BTreeMap::new(),
        };
        let section = cluster.cluster_section(settings);
        for id in [WITNESS, 1, 2] {
            let member_directory = cluster.member_directory(id);
            std::fs::create_dir_all(&member_directory)
                .with_context(|| format!("creating {}", member_directory.display()))?;
            let admin = if id == WITNESS { "" } else { "admin_port = 0\n" };
            let archive = if id != WITNESS && settings.standby == "cold" {
                // One archive directory for both nodes (each ships to its own folder in it).
                format!(
                    "[archive]\ndir = \"{}\"\ninterval_ms = {}\n",
                    directory.join("archive").display(),
                    settings.archive_interval_ms
                )
            } else {
                String::new()
            };
            let text = format!("{admin}{archive}[cluster]\nnode_id = {id}\n{section}");
            std::fs::write(member_directory.join("tandem.toml"), text)?;
        }
        for id in [WITNESS, 1, 2] {
            cluster.spawn(id)?;
        }
        for id in DATA_NODES {
            cluster.wait_answers_ping(id).await?;
        }
        Ok(cluster)
    }

    fn cluster_section(&self, settings: &ClusterSettings) -> String {
        let secret: String =
            rand::thread_rng().sample_iter(&rand::distributions::Alphanumeric).take(32).map(char::from).collect();
        let mut section = format!(
            "cluster_id = \"tandem-demo\"\nsecret = \"{secret}\"\ninitial_active = 1\nack_mode = \"{}\"\n\
             standby = \"{}\"\nservice_address = \"{}\"\n{}members = [\n",
            settings.ack_mode, settings.standby, self.service_address, settings.timing_lines
        );
        for (id, addresses) in &self.members {
            let (role, client) = match addresses.client {
                Some(client) => ("data", format!(", client = \"{client}\"")),
                None => ("witness", String::new()),
            };
            section.push_str(&format!(
                "  {{ id = {id}, role = \"{role}\"{client}, peer = \"{}\", control = \"{}\" }},\n",
                addresses.peer, addresses.control
            ));
        }
        section.push_str("]\n");
        section
    }

    fn member_directory(&self, id: u32) -> PathBuf {
        let name = if id == WITNESS { "witness".to_string() } else { format!("node{id}") };
        self.directory.join(name)
    }

    fn stderr_path(&self, id: u32) -> PathBuf {
        let run = self.runs.get(&id).copied().unwrap_or(0);
        self.member_directory(id).join(format!("stderr.{run}.log"))
    }

    /// Starts member `id`'s process (`tandem witness` or `tandem server`).
    fn spawn(&mut self, id: u32) -> anyhow::Result<()> {
        *self.runs.entry(id).or_insert(0) += 1;
        let member_directory = self.member_directory(id);
        let stderr = File::create(self.stderr_path(id))?;
        let mut command = Command::new(std::env::current_exe().context("locating the tandem executable")?);
        command
            .arg(if id == WITNESS { "witness" } else { "server" })
            .arg("--config")
            .arg(member_directory.join("tandem.toml"))
            .arg("--data-dir")
            .arg(member_directory.join("data"))
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr));
        // SAFETY: prctl(2) only, between fork and exec: the child dies with this process
        // even if the demo itself is killed with SIGKILL. The demo spawns from its main
        // thread (a current-thread runtime), whose exit is the process's exit.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn().with_context(|| format!("starting member {id}"))?;
        self.children.insert(id, child);
        Ok(())
    }

    /// SIGKILL of data node `id`.
    pub fn kill(&self, id: u32) -> anyhow::Result<()> {
        anyhow::ensure!(self.children.kill(id), "node {id} is not running");
        Ok(())
    }

    /// Starts data node `id` again on its data directory and waits until it answers PING.
    pub async fn restart(&mut self, id: u32) -> anyhow::Result<()> {
        self.spawn(id)?;
        self.wait_answers_ping(id).await
    }

    /// The client address of data node `id`.
    pub fn client_address(&self, id: u32) -> SocketAddr {
        self.members[&id].client.expect("data nodes have a client address")
    }

    /// The other data node.
    pub fn other(&self, id: u32) -> u32 {
        if id == DATA_NODES[0] {
            DATA_NODES[1]
        } else {
            DATA_NODES[0]
        }
    }

    /// An error unless member `id` is running (naming its exit and its stderr).
    pub fn check_running(&self, id: u32) -> anyhow::Result<()> {
        self.children.check_running(id).map_err(|why| anyhow::anyhow!("member {id} {why}\n{}", self.stderr_tail(id)))
    }

    async fn wait_answers_ping(&self, id: u32) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let address = self.client_address(id);
        loop {
            self.check_running(id)?;
            if super::workload::answers_ping(address).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!("node {id} did not answer PING on {address} within {READY_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The last lines of member `id`'s current stderr, titled.
    pub fn stderr_tail(&self, id: u32) -> String {
        let path = self.stderr_path(id);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n");
        format!("---- {} (last {STDERR_TAIL_LINES} lines) ----\n{tail}", path.display())
    }

    /// The stderr tails of every member.
    pub fn all_stderr_tails(&self) -> String {
        [WITNESS, 1, 2].iter().map(|id| self.stderr_tail(*id)).collect::<Vec<_>>().join("\n")
    }
}

/// Picks free loopback ports from [`PORTS`], never the same one twice.
struct PortPicker {
    next: u16,
    taken: Vec<u16>,
}

impl PortPicker {
    fn new() -> PortPicker {
        PortPicker { next: rand::thread_rng().gen_range(PORTS), taken: Vec::new() }
    }

    fn free_port(&mut self, ip: IpAddr) -> anyhow::Result<u16> {
        for _ in PORTS {
            let port = self.next;
            self.next = if self.next + 1 >= PORTS.end { PORTS.start } else { self.next + 1 };
            if !self.taken.contains(&port) && TcpListener::bind((ip, port)).is_ok() {
                self.taken.push(port);
                return Ok(port);
            }
        }
        anyhow::bail!("no free port in {PORTS:?} on {ip}")
    }

    fn loopback(&mut self) -> anyhow::Result<SocketAddr> {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Ok(SocketAddr::new(ip, self.free_port(ip)?))
    }

    /// A loopback address of its own (`127.0.X.1`), so that the address itself, not
    /// only a port, moves between the nodes.
    fn service_address(&mut self) -> anyhow::Result<SocketAddr> {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, rand::thread_rng().gen_range(2..250), 1));
        Ok(SocketAddr::new(ip, self.free_port(ip)?))
    }
}

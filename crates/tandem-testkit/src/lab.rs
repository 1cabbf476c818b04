//! The network lab for tests that need a real network: hosts in network
//! namespaces joined by a bridge, with faults (host loss, partitions) on demand.
//!
//! A thin wrapper over `lab/tandem-lab`, which does the work and documents it
//! (`lab/README.md`); benchmarks call the same script. The lab needs root:
//! [`Lab::up`] returns a [`Skip`] with the reason when it cannot run, and a
//! test then reports the skip and returns:
//!
//! ```no_run
//! use tandem_testkit::lab::Lab;
//! let lab = match Lab::up(&["a", "b"]) {
//!     Ok(lab) => lab,
//!     Err(skip) => return skip.report(),
//! };
//! lab.partition("a", "b");
//! ```
//!
//! Dropping a [`Lab`] tears it down, also when the test panicked; labs left by
//! a test process that died without unwinding are collected by the next
//! [`Lab::up`] (`tandem-lab gc`).

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// The script's exit status for "cannot run here" (not root, tools missing).
const CANNOT_RUN: i32 = 2;

/// Set (to anything) where the lab must run, such as CI: a skip then fails the test.
pub const REQUIRED_VARIABLE: &str = "TANDEM_LAB_REQUIRED";

/// Virtual addresses are `.200` onwards in the lab's /24 (see the script).
const VIRTUAL_FIRST: u8 = 200;
/// How many virtual addresses a lab has.
pub const VIRTUAL_COUNT: u8 = 55;

/// Why a test that needs the lab did not run.
#[derive(Debug, Clone)]
pub struct Skip {
    reason: String,
}

impl Skip {
    /// The reason, as the lab printed it.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Prints the skip so it shows in the test's output; panics instead when
    /// [`REQUIRED_VARIABLE`] is set, so that CI cannot pass by skipping.
    pub fn report(self) {
        if std::env::var_os(REQUIRED_VARIABLE).is_some() {
            panic!("the network lab is required ({REQUIRED_VARIABLE} is set) but cannot run: {}", self.reason);
        }
        eprintln!("skipped: {}", self.reason);
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "skipped: {}", self.reason)
    }
}

/// `Ok` when this process runs as root (effective uid 0), else the [`Skip`] to report.
pub fn skip_unless_root() -> Result<(), Skip> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective_uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .map(str::to_owned);
    match effective_uid.as_deref() {
        Some("0") => Ok(()),
        _ => Err(Skip { reason: "needs root (network namespaces); run the tests as root".to_owned() }),
    }
}

/// The path of `lab/tandem-lab`.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../lab/tandem-lab")
}

/// One entry of a host's IPv4 neighbour (ARP) table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    /// The address asked for.
    pub address: Ipv4Addr,
    /// The MAC address that answered, if any did.
    pub mac: Option<String>,
    /// The lab host whose MAC that is.
    pub owner: Option<String>,
    /// The kernel's state for the entry: `REACHABLE`, `STALE`, `INCOMPLETE`, `FAILED`, ...
    pub state: String,
}

/// A running lab; dropping it tears it down.
#[derive(Debug)]
pub struct Lab {
    name: String,
    hosts: Vec<(String, Ipv4Addr)>,
}

impl Lab {
    /// Builds a lab with these hosts (each gets `eth0` on the lab's bridge), or
    /// says why it cannot run here.
    pub fn up(hosts: &[&str]) -> Result<Lab, Skip> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        skip_unless_root()?;
        collect_garbage()?;
        let name = format!("t{}n{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let output = Command::new(script())
            .arg("up")
            .arg(&name)
            .args(hosts)
            .env("TANDEM_LAB_OWNER", std::process::id().to_string())
            .output()
            .expect("tandem-lab runs");
        if output.status.code() == Some(CANNOT_RUN) {
            return Err(Skip { reason: String::from_utf8_lossy(&output.stderr).trim().to_owned() });
        }
        let stdout = checked("up", output);
        let hosts = stdout
            .lines()
            .map(|line| {
                let (host, address) = line.split_once(' ').expect("up prints HOST ADDRESS");
                (host.to_owned(), address.parse().expect("up prints an IPv4 address"))
            })
            .collect();
        Ok(Lab { name, hosts })
    }

    /// The lab's name: its namespaces are `NAME-sw` and `NAME-HOST`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The network namespace of a host, for `ip netns exec`.
    pub fn namespace(&self, host: &str) -> String {
        self.address(host);
        format!("{}-{host}", self.name)
    }

    /// The address of a host's `eth0`.
    pub fn address(&self, host: &str) -> Ipv4Addr {
        match self.hosts.iter().find(|(name, _)| name == host) {
            Some((_, address)) => *address,
            None => panic!("lab {} has no host {host:?}", self.name),
        }
    }

    /// The MAC address of a host's `eth0` (fixed by its address).
    pub fn mac(&self, host: &str) -> String {
        let [_, _, slot, index] = self.address(host).octets();
        format!("02:00:0a:e7:{slot:02x}:{index:02x}")
    }

    /// A free address on the lab's network for a service address that moves
    /// between hosts; `index` is below [`VIRTUAL_COUNT`].
    pub fn virtual_address(&self, index: u8) -> Ipv4Addr {
        assert!(index < VIRTUAL_COUNT, "virtual address index {index} is not below {VIRTUAL_COUNT}");
        let [first, second, slot, _] = self.hosts[0].1.octets();
        Ipv4Addr::new(first, second, slot, VIRTUAL_FIRST + index)
    }

    /// Runs a command in a host and waits for it; the caller bounds its time.
    pub fn exec(&self, host: &str, args: &[&str]) -> Output {
        self.run(&[&["exec", &self.name, host], args].concat())
    }

    /// Starts a command in a host in the background, its output appended to
    /// `log`; returns its PID, which [`kill`](Self::kill) and friends accept.
    pub fn spawn(&self, host: &str, log: &Path, args: &[&str]) -> u32 {
        let log = log.to_str().expect("log path is UTF-8");
        let stdout = checked("spawn", self.run(&[&["spawn", &self.name, host, log], args].concat()));
        stdout.trim().parse().expect("spawn prints a PID")
    }

    /// Whether a TCP connection from `host` to `address:port` opens within a second.
    pub fn tcp_connects(&self, host: &str, address: Ipv4Addr, port: u16) -> bool {
        let connect = format!("exec 3<>/dev/tcp/{address}/{port}");
        self.exec(host, &["timeout", "1", "bash", "-c", &connect]).status.success()
    }

    /// The host is lost to everyone (link down at the switch); its processes keep running.
    pub fn host_down(&self, host: &str) {
        self.verb(&["host-down", &self.name, host]);
    }

    /// The host is reachable again.
    pub fn host_up(&self, host: &str) {
        self.verb(&["host-up", &self.name, host]);
    }

    /// Drops every frame between `a` and `b`, both ways, ARP included, whatever their addresses.
    pub fn partition(&self, a: &str, b: &str) {
        self.verb(&["partition", &self.name, a, b]);
    }

    /// Drops every frame between `host` and every other host; unlike
    /// [`host_down`](Self::host_down), the host keeps its carrier.
    pub fn partition_from_all(&self, host: &str) {
        self.verb(&["partition", &self.name, host, "--from-all"]);
    }

    /// Removes every partition.
    pub fn heal(&self) {
        self.verb(&["heal", &self.name]);
    }

    /// `kill -9` a process spawned by this lab, and waits until it is gone.
    pub fn kill(&self, pid: u32) {
        self.verb(&["kill", &self.name, &pid.to_string()]);
    }

    /// `SIGSTOP` a process spawned by this lab.
    pub fn pause(&self, pid: u32) {
        self.verb(&["pause", &self.name, &pid.to_string()]);
    }

    /// `SIGCONT` a process spawned by this lab.
    pub fn resume(&self, pid: u32) {
        self.verb(&["resume", &self.name, &pid.to_string()]);
    }

    /// A host's IPv4 neighbour table: who answered ARP for which address.
    pub fn neigh(&self, host: &str) -> Vec<Neighbour> {
        self.verb(&["neigh", &self.name, host]).lines().map(parse_neighbour).collect()
    }

    /// The switch's nftables ruleset, with per-rule counters (for failure messages).
    pub fn rules(&self) -> String {
        self.verb(&["rules", &self.name])
    }

    /// Tears the lab down now, failing loudly if that fails (dropping only
    /// reports it, and then finds nothing left to do: `down` is idempotent).
    pub fn down(self) {
        self.verb(&["down", &self.name]);
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(script()).args(args).output().expect("tandem-lab runs")
    }

    fn verb(&self, args: &[&str]) -> String {
        checked(args[0], self.run(args))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        match Command::new(script()).args(["down", &self.name]).output() {
            Ok(output) if output.status.success() => {}
            Ok(output) => {
                eprintln!("tandem-lab down {} failed: {}", self.name, String::from_utf8_lossy(&output.stderr))
            }
            Err(error) => eprintln!("tandem-lab down {} did not run: {error}", self.name),
        }
    }
}

/// Tears down, once per process, the labs of test processes that died
/// without unwinding (killed by a timeout, say).
fn collect_garbage() -> Result<(), Skip> {
    static RESULT: OnceLock<Result<(), Skip>> = OnceLock::new();
    RESULT
        .get_or_init(|| {
            let output = Command::new(script()).arg("gc").output().expect("tandem-lab runs");
            if output.status.code() == Some(CANNOT_RUN) {
                return Err(Skip { reason: String::from_utf8_lossy(&output.stderr).trim().to_owned() });
            }
            checked("gc", output);
            Ok(())
        })
        .clone()
}

/// The stdout of a verb that succeeded; a failed verb fails the test.
fn checked(verb: &str, output: Output) -> String {
    assert!(
        output.status.success(),
        "tandem-lab {verb} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    String::from_utf8(output.stdout).expect("tandem-lab prints UTF-8")
}

/// Parses a line of `tandem-lab neigh`: `ADDRESS MAC OWNER STATE`, `-` for none.
fn parse_neighbour(line: &str) -> Neighbour {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [address, mac, owner, state] = fields[..] else { panic!("bad neigh line {line:?}") };
    let known = |field: &str| (field != "-").then(|| field.to_owned());
    Neighbour {
        address: address.parse().expect("neigh prints an IPv4 address"),
        mac: known(mac),
        owner: known(owner),
        state: state.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_neighbour_line_names_the_host_that_answered() {
        let neighbour = parse_neighbour("10.231.3.200 02:00:0a:e7:03:02 b REACHABLE");
        assert_eq!(neighbour.address, Ipv4Addr::new(10, 231, 3, 200));
        assert_eq!(neighbour.mac.as_deref(), Some("02:00:0a:e7:03:02"));
        assert_eq!(neighbour.owner.as_deref(), Some("b"));
        assert_eq!(neighbour.state, "REACHABLE");
    }

    #[test]
    fn an_unanswered_neighbour_has_no_mac_and_no_owner() {
        let neighbour = parse_neighbour("10.231.3.200 - - INCOMPLETE");
        assert_eq!((neighbour.mac, neighbour.owner), (None, None));
    }

    #[test]
    fn the_script_is_where_the_wrapper_looks() {
        assert!(script().is_file(), "{} is missing", script().display());
    }
}

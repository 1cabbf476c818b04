//! The Linux virtual IP form of the service address, in a network lab (needs
//! root and `ip netns`; skipped with a printed reason otherwise).
//!
//! Two network namespaces joined by a veth pair: `tvip-<pid>-<x>-srv` runs the
//! witness and both data nodes (peer and control addresses on its 127.0.0.1,
//! the virtual IP on its veth end), `tvip-<pid>-<x>-cli` runs `redis-cli`
//! through the virtual IP. Addresses are 10.231.<x>.0/24, inside these
//! namespaces only; both are deleted when a test ends, however it ends.
//! Every wait is bounded. The last test runs in the network lab instead
//! (`tandem_testkit::lab`, through `lab_support`), one host per member.

mod lab_support;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use lab_support::{request, LabCluster, Placement, Settings};
use tandem_testkit::ports::free_port;
use tandem_testkit::process::output_within;

/// How long a node may take to start, and a failover to complete.
const WAIT: Duration = Duration::from_secs(30);
/// How long one helper command (`ip`, `redis-cli`) may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
const SECRET: &str = "virtual-ip-test-secret-0123456789";

/// Why this machine cannot run the lab, if it cannot.
fn skip_reason() -> Option<String> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces, CAP_NET_ADMIN)".into());
    }
    for (program, args) in [("ip", &["netns", "list"][..]), ("redis-cli", &["--version"][..])] {
        match Command::new(program).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status() {
            Ok(status) if status.success() => {}
            _ => return Some(format!("`{program} {}` is unavailable", args.join(" "))),
        }
    }
    None
}

/// The tests that run a whole cluster take turns: two at once on two cores can starve a
/// node long enough to fail over for no reason.
fn one_cluster_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Set where the lab must run, such as CI: a skip then fails the test (as `tandem_testkit::lab`).
const LAB_REQUIRED_VARIABLE: &str = "TANDEM_LAB_REQUIRED";

macro_rules! skip_unless_lab {
    () => {
        if let Some(reason) = skip_reason() {
            if std::env::var_os(LAB_REQUIRED_VARIABLE).is_some() {
                panic!("the network lab is required ({LAB_REQUIRED_VARIABLE} is set) but cannot run: {reason}");
            }
            eprintln!("skipped: {reason}");
            return;
        }
    };
}

/// Runs a command to completion, killed after `COMMAND_TIMEOUT`.
fn run(program: &str, args: &[&str]) -> Output {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("spawn {program}: {error}"));
    let (output, finished) = output_within(child, COMMAND_TIMEOUT);
    assert!(finished, "{program} {args:?} did not finish within {COMMAND_TIMEOUT:?}");
    output
}

/// Runs a command that must succeed; returns its stdout.
fn must(program: &str, args: &[&str]) -> String {
    let output = run(program, args);
    assert!(output.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Polls `check` until it holds, failing with `what` after `WAIT`.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out after {WAIT:?} waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The two namespaces and the veth pair between them; deleted on drop.
struct Lab {
    server: String,
    client: String,
    /// The veth end in the server namespace (the virtual IP's interface).
    server_interface: String,
    /// The third octet of the lab's 10.231.<x>.0/24.
    subnet: u8,
}

impl Lab {
    /// Creates the lab; `index` tells apart the tests of one run (same pid).
    fn new(index: u32) -> Lab {
        let pid = std::process::id();
        let subnet = ((pid * 4 + index) % 250 + 1) as u8;
        let lab = Lab {
            server: format!("tvip-{pid}-{subnet}-srv"),
            client: format!("tvip-{pid}-{subnet}-cli"),
            server_interface: format!("tv{subnet}s"),
            subnet,
        };
        must("ip", &["netns", "add", &lab.server]);
        must("ip", &["netns", "add", &lab.client]);
        let client_interface = format!("tv{subnet}c");
        // Both ends are created inside the namespaces: nothing appears on the host.
        must(
            "ip",
            &[
                "link",
                "add",
                &lab.server_interface,
                "netns",
                &lab.server,
                "type",
                "veth",
                "peer",
                "name",
                &client_interface,
                "netns",
                &lab.client,
            ],
        );
        for (namespace, interface, host) in
            [(&lab.server, &lab.server_interface, 1), (&lab.client, &client_interface, 2)]
        {
            must("ip", &["-n", namespace, "addr", "add", &format!("10.231.{subnet}.{host}/24"), "dev", interface]);
            must("ip", &["-n", namespace, "link", "set", interface, "up"]);
            must("ip", &["-n", namespace, "link", "set", "lo", "up"]);
        }
        // Let the client learn a neighbour from a gratuitous ARP alone (Linux only updates
        // an existing entry otherwise), so that the announcement itself is observable.
        // (/proc/sys/net is the namespace's own, as seen from inside it.)
        for conf in ["all", &client_interface] {
            let write = format!("echo 1 > /proc/sys/net/ipv4/conf/{conf}/arp_accept");
            must("ip", &["netns", "exec", &lab.client, "sh", "-c", &write]);
        }
        lab
    }

    fn virtual_ip(&self) -> String {
        format!("10.231.{}.100", self.subnet)
    }

    /// `ip -4 addr show` of the server's veth end.
    fn server_addresses(&self) -> String {
        must("ip", &["-n", &self.server, "-4", "addr", "show", "dev", &self.server_interface])
    }

    fn client_addresses(&self) -> String {
        must("ip", &["-n", &self.client, "-4", "addr", "show"])
    }

    /// The MAC address of the server's veth end.
    fn server_mac(&self) -> String {
        let link = must("ip", &["-n", &self.server, "-o", "link", "show", "dev", &self.server_interface]);
        let mac = link.split_whitespace().skip_while(|word| *word != "link/ether").nth(1);
        mac.unwrap_or_else(|| panic!("no MAC in {link}")).to_string()
    }

    /// The client namespace's neighbour entry for the virtual IP, if any.
    fn client_neighbour(&self) -> String {
        must("ip", &["-n", &self.client, "neigh", "show", &self.virtual_ip()])
    }

    /// `redis-cli <args>` from the client namespace, through the virtual IP.
    fn client_redis(&self, port: u16, args: &[&str]) -> String {
        let (ip, port) = (self.virtual_ip(), port.to_string());
        let mut full = vec!["netns", "exec", &self.client, "redis-cli", "-h", &ip, "-p", &port];
        full.extend_from_slice(args);
        let output = run("ip", &full);
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// `redis-cli -p <port> <args>` inside the server namespace, on a node's own port.
    fn node_redis(&self, port: u16, args: &[&str]) -> String {
        let port = port.to_string();
        let mut full = vec!["netns", "exec", &self.server, "redis-cli", "-p", &port];
        full.extend_from_slice(args);
        String::from_utf8_lossy(&run("ip", &full).stdout).into_owned()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for namespace in [&self.server, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", namespace]).stderr(Stdio::null()).status();
        }
    }
}

/// One `tandem` process started under `ip netns exec`; killed on drop, its stderr
/// printed if the test failed.
struct Process {
    name: String,
    child: Option<Child>,
    stderr: PathBuf,
}

impl Process {
    /// Starts `[prefix…] tandem <args>` with stderr to `<dir>/<name>.log`.
    fn start(name: &str, prefix: &[&str], args: &[&str], dir: &Path) -> Process {
        let stderr = dir.join(format!("{name}.log"));
        let (program, rest) = match prefix.split_first() {
            Some((program, rest)) => (*program, rest.to_vec()),
            None => (env!("CARGO_BIN_EXE_tandem"), Vec::new()),
        };
        let mut command = Command::new(program);
        command.args(rest);
        if !prefix.is_empty() {
            command.arg(env!("CARGO_BIN_EXE_tandem"));
        }
        let child = command
            .args(args)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(File::create(&stderr).unwrap()))
            .spawn()
            .expect("spawn tandem");
        Process { name: name.to_string(), child: Some(child), stderr }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and waits (bounded) for a clean exit.
    fn terminate(&mut self) {
        let mut child = self.child.take().expect("running");
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        // SAFETY: kill(2) on a child this test spawned and has not reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + WAIT;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{} did not stop within {WAIT:?} after SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded) for the process to exit by itself; its status.
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let child = self.child.as_mut().expect("running");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                panic!("{} still running after {WAIT:?}; stderr:\n{}", self.name, self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("---- {} stderr ----\n{}", self.name, self.stderr());
        }
    }
}

/// The cluster's configuration files: two data nodes and a witness on the server
/// namespace's loopback, the virtual IP on its veth end.
struct Configs {
    dir: tempfile::TempDir,
    client_ports: [u16; 2],
    virtual_ip_port: u16,
}

impl Configs {
    fn write(lab: &Lab, interface: &str) -> Configs {
        let dir = tempfile::Builder::new().prefix("tandem-vip-").tempdir().unwrap();
        let client_ports = [free_port(), free_port()];
        let virtual_ip_port = free_port();
        let member = |id: u32, role: &str, client: Option<u16>| {
            let client = client.map(|port| format!("client = \"127.0.0.1:{port}\", ")).unwrap_or_default();
            format!(
                "  {{ id = {id}, role = \"{role}\", {client}peer = \"127.0.0.1:{}\", control = \"127.0.0.1:{}\" }},\n",
                free_port(),
                free_port()
            )
        };
        let members = member(1, "data", Some(client_ports[0]))
            + &member(2, "data", Some(client_ports[1]))
            + &member(3, "witness", None);
        let section = format!(
            "cluster_id = \"tandem-vip-test\"\nsecret = \"{SECRET}\"\ninitial_active = 1\nheartbeat_ms = 50\n\
             members = [\n{members}]\n\n[cluster.virtual_ip]\naddress = \"{}/24\"\ninterface = \"{interface}\"\n\
             port = {virtual_ip_port}\ngarp_count = 3\ngarp_interval_ms = 50\n",
            lab.virtual_ip()
        );
        for id in 1..=3 {
            let admin = if id == 3 { "" } else { "admin_port = 0\n" };
            let text = format!("{admin}[cluster]\nnode_id = {id}\n{section}");
            std::fs::write(dir.path().join(format!("node{id}.toml")), text).unwrap();
        }
        Configs { dir, client_ports, virtual_ip_port }
    }

    fn path(&self, id: u32) -> String {
        self.dir.path().join(format!("node{id}.toml")).display().to_string()
    }

    fn data_dir(&self, id: u32) -> String {
        self.dir.path().join(format!("data{id}")).display().to_string()
    }

    /// Starts member `id` (3: the witness) in the server namespace.
    fn start(&self, lab: &Lab, id: u32) -> Process {
        let command = if id == 3 { "witness" } else { "server" };
        let (config, data_dir) = (self.path(id), self.data_dir(id));
        let prefix = ["ip", "netns", "exec", &lab.server];
        Process::start(
            &format!("member {id}"),
            &prefix,
            &[command, "--config", &config, "--data-dir", &data_dir],
            self.dir.path(),
        )
    }
}

/// An `INFO replication` field of the node on `port`.
fn info_field(lab: &Lab, port: u16, field: &str) -> String {
    let info = lab.node_redis(port, &["INFO", "replication"]);
    let prefix = format!("{field}:");
    info.lines().find_map(|line| line.strip_prefix(&prefix)).unwrap_or_default().trim().to_string()
}

#[test]
fn virtual_ip_follows_the_active_and_is_announced() {
    skip_unless_lab!();
    let _serial = one_cluster_at_a_time();
    let lab = Lab::new(0);
    let configs = Configs::write(&lab, &lab.server_interface);
    let _witness = configs.start(&lab, 3);
    let mut first = configs.start(&lab, 1);
    let mut second = configs.start(&lab, 2);
    let [first_port, second_port] = configs.client_ports;
    let vip_port = configs.virtual_ip_port;
    let vip_cidr = format!("{}/24", lab.virtual_ip());

    wait_until("node 1 is active and holds the virtual IP", || {
        info_field(&lab, first_port, "tandem_service_address_bound") == "1"
            && lab.server_addresses().contains(&vip_cidr)
    });
    assert_eq!(info_field(&lab, second_port, "tandem_service_address_bound"), "0", "the standby holds nothing");
    assert_eq!(info_field(&lab, first_port, "tandem_service_address"), format!("{}:{vip_port}", lab.virtual_ip()));
    assert!(!lab.client_addresses().contains(&lab.virtual_ip()), "the virtual IP is only on the server side");

    // No client traffic has gone to the virtual IP yet: only the gratuitous ARP can have
    // taught the client namespace where it is.
    let mac = lab.server_mac();
    wait_until("the client learnt the virtual IP's MAC from the gratuitous ARP", || {
        lab.client_neighbour().contains(&mac)
    });

    eprintln!("client neighbour entry after the gratuitous ARP: {}", lab.client_neighbour().trim());
    // Node 2 can only be elected once it holds the control log naming node 1 the active.
    wait_until("node 2 follows node 1 and holds the control state", || {
        info_field(&lab, second_port, "master_link_status") == "up"
            && info_field(&lab, second_port, "tandem_control_active") == "1"
            && info_field(&lab, first_port, "tandem_control_in_sync").split(',').any(|id| id == "2")
    });
    assert_eq!(lab.client_redis(vip_port, &["SET", "before", "1"]), "OK");
    assert_eq!(lab.client_redis(vip_port, &["GET", "before"]), "1");

    // Forget the neighbour, so that the new holder's announcement is seen again (after the
    // announcement node 1 made when node 2 connected is over).
    std::thread::sleep(Duration::from_millis(500));
    must("ip", &["-n", &lab.client, "neigh", "flush", "to", &lab.virtual_ip()]);
    assert!(!lab.client_neighbour().contains(&mac));
    first.kill9();
    let killed = Instant::now();
    wait_until("node 2 takes the virtual IP over", || {
        info_field(&lab, second_port, "tandem_service_address_bound") == "1"
    });
    wait_until("the new holder announced the virtual IP", || lab.client_neighbour().contains(&mac));
    wait_until("writes through the virtual IP work again", || {
        lab.client_redis(vip_port, &["SET", "after", "2"]) == "OK"
    });
    eprintln!("writes through the virtual IP {} ms after kill -9 of the active", killed.elapsed().as_millis());
    assert_eq!(lab.client_redis(vip_port, &["GET", "before"]), "1", "the acknowledged write survived");
    assert_eq!(lab.server_addresses().matches(&vip_cidr).count(), 1, "one copy of the address");
    assert!(lab.client_neighbour().contains(&mac));

    second.terminate();
    assert!(!lab.server_addresses().contains(&vip_cidr), "a clean shutdown deletes the virtual IP");
}

#[test]
fn a_missing_interface_refuses_to_start() {
    skip_unless_lab!();
    let lab = Lab::new(1);
    let configs = Configs::write(&lab, "tvipmissing0");
    let mut node = configs.start(&lab, 1);
    let status = node.wait_exit();
    let stderr = node.stderr();
    assert!(!status.success());
    assert!(
        stderr.contains("cluster.virtual_ip.interface") && stderr.contains("tvipmissing0"),
        "the error names the field and the interface:\n{stderr}"
    );
}

#[test]
fn a_start_without_capabilities_is_refused() {
    skip_unless_lab!();
    if run("setpriv", &["--version"]).status.code() != Some(0) {
        eprintln!("skipped: setpriv is unavailable");
        return;
    }
    let lab = Lab::new(2);
    let configs = Configs::write(&lab, &lab.server_interface);
    // The unprivileged user must read the configuration.
    for path in [configs.dir.path().to_path_buf(), configs.dir.path().join("node1.toml")] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let (config, data_dir) = (configs.path(1), configs.data_dir(1));
    let prefix = [
        "ip",
        "netns",
        "exec",
        &lab.server,
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
    ];
    let args = ["server", "--config", &config, "--data-dir", &data_dir];
    let mut node = Process::start("unprivileged node", &prefix, &args, configs.dir.path());
    let status = node.wait_exit();
    let stderr = node.stderr();
    assert!(!status.success());
    assert!(
        stderr.contains("cluster.virtual_ip needs CAP_NET_ADMIN and CAP_NET_RAW (missing: CAP_NET_ADMIN, CAP_NET_RAW)")
            && stderr.contains("AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW"),
        "the refusal names the missing capabilities and the systemd setting:\n{stderr}"
    );
    assert!(!lab.server_addresses().contains(&lab.virtual_ip()));
}

#[test]
fn a_partitioned_active_lets_the_virtual_ip_go_and_the_new_holder_announces_it() {
    let _serial = one_cluster_at_a_time();
    let placement = Placement { data: ["a", "b"], witness: "w" };
    let settings = Settings {
        cluster_id: "tandem-vip-lab",
        cluster_lines: "heartbeat_ms = 50",
        virtual_ip_lines: "",
        sentinel: false,
    };
    let cluster = match LabCluster::up(placement, &["c"], settings) {
        Ok(cluster) => cluster,
        Err(skip) => return skip.report(),
    };
    let vip = cluster.virtual_address();

    cluster.wait_until("host a holds the virtual IP", || {
        cluster.holds_virtual_ip("a") && cluster.info_field("a", "tandem_service_address_bound") == "1"
    });
    assert!(!cluster.holds_virtual_ip("b"), "only the active's host has the address");
    // b can only be elected once it holds the control log naming a the active.
    cluster.wait_until("b follows a and holds the control state", || {
        cluster.info_field("b", "master_link_status") == "up"
            && cluster.info_field("b", "tandem_control_active") == "1"
            && cluster.info_field("b", "tandem_control_in_sync").split(',').any(|id| id == "2")
    });
    assert_eq!(request(&cluster, "c", vip, &["SET", "before", "1"]), "OK");
    assert_eq!(cluster.virtual_ip_owner_seen_by("c").as_deref(), Some("a"));

    // Cut the active off: its lease lapses and it deletes the address; b is promoted,
    // adds the address and announces it, so the client's ARP entry moves to b.
    cluster.lab.partition_from_all("a");
    let partitioned = Instant::now();
    cluster.wait_until("the fenced active deleted the virtual IP", || !cluster.holds_virtual_ip("a"));
    cluster.wait_until("host b holds the virtual IP", || cluster.holds_virtual_ip("b"));
    cluster.wait_until("the client sends to b, taught by the gratuitous ARP", || {
        cluster.virtual_ip_owner_seen_by("c").as_deref() == Some("b")
    });
    cluster.wait_until("writes through the virtual IP reach b", || {
        request(&cluster, "c", vip, &["SET", "during", "2"]) == "OK"
    });
    eprintln!("writes through the virtual IP on b {} ms after the partition", partitioned.elapsed().as_millis());
    assert_eq!(request(&cluster, "c", vip, &["GET", "before"]), "1", "the acknowledged write survived");

    // Heal: a comes back as a standby and does not take the address back.
    cluster.lab.heal();
    cluster.wait_until("a rejoins as the standby", || cluster.info_field("a", "master_link_status") == "up");
    assert!(!cluster.holds_virtual_ip("a"), "the old active stays without the address");
    assert!(cluster.holds_virtual_ip("b"));
    assert_eq!(cluster.virtual_ip_owner_seen_by("c").as_deref(), Some("b"));
    assert_eq!(request(&cluster, "c", vip, &["SET", "after", "3"]), "OK");
}

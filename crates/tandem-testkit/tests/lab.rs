//! Tests of the network lab itself (`lab/tandem-lab` through `tandem_testkit::lab`),
//! with real processes and no tandem: reachability, host loss, partitions
//! (also for an address that moves, and for ARP), labs side by side, and
//! cleanup after `down`, after a panic, after a failed `up` and after the
//! creator died. They need root; elsewhere each prints why it skipped.
//!
//! A blocked connection is proved by one attempt of a second (the fault is in
//! place when its verb returns); a restored one is retried for a few seconds,
//! since ARP entries that failed during the fault must be resolved again.

use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use tandem_testkit::lab::{self, Lab};

/// A TCP listener that accepts and closes every connection: `python3 -c LISTENER PORT`.
const LISTENER: &str = "import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', int(sys.argv[1])))
s.listen(64)
while True:
    s.accept()[0].close()
";
const PORT: u16 = 7000;
const RESTORE_TIMEOUT: Duration = Duration::from_secs(10);

macro_rules! lab_or_skip {
    ($hosts:expr) => {
        match Lab::up($hosts) {
            Ok(lab) => lab,
            Err(skip) => return skip.report(),
        }
    };
}

fn log_path(lab: &Lab, host: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("lab-{}-{host}.log", lab.name()))
}

/// Starts a listener on `host` and waits until it accepts; returns its PID.
fn listen(lab: &Lab, host: &str) -> u32 {
    let log = log_path(lab, host);
    let pid = lab.spawn(host, &log, &["python3", "-c", LISTENER, &PORT.to_string()]);
    let deadline = Instant::now() + RESTORE_TIMEOUT;
    while !lab.tcp_connects(host, Ipv4Addr::LOCALHOST, PORT) {
        let output = fs::read_to_string(&log).unwrap_or_default();
        assert!(Instant::now() < deadline, "the listener on {host} did not start: {output}");
        sleep(Duration::from_millis(100));
    }
    pid
}

/// Whether `from` reaches `address` within [`RESTORE_TIMEOUT`].
fn connects_eventually(lab: &Lab, from: &str, address: Ipv4Addr) -> bool {
    let deadline = Instant::now() + RESTORE_TIMEOUT;
    loop {
        if lab.tcp_connects(from, address, PORT) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(Duration::from_millis(100));
    }
}

fn exec_ok(lab: &Lab, host: &str, args: &[&str]) {
    let output = lab.exec(host, args);
    assert!(output.status.success(), "{args:?} on {host}: {}", String::from_utf8_lossy(&output.stderr));
}

/// The namespaces of lab `name` that exist now.
fn namespaces_of(name: &str) -> Vec<String> {
    let output = Command::new("ip").args(["netns", "list"]).output().expect("ip runs");
    let prefix = format!("{name}-");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|namespace| namespace.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

/// The state letter of a process (`R`, `S`, `T`, `Z`, ...), `None` once it is gone.
fn process_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

fn is_running(pid: u32) -> bool {
    !matches!(process_state(pid), None | Some('Z'))
}

/// Waits until `pid` is in `state`, for at most five seconds.
fn wait_for_state(pid: u32, state: char) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while process_state(pid) != Some(state) {
        assert!(Instant::now() < deadline, "process {pid} is {:?}, not {state}", process_state(pid));
        sleep(Duration::from_millis(20));
    }
}

fn script(args: &[&str]) -> std::process::Output {
    Command::new(lab::script()).args(args).output().expect("tandem-lab runs")
}

#[test]
fn every_host_reaches_every_other_over_tcp() {
    let lab = lab_or_skip!(&["a", "b", "c"]);
    for host in ["a", "b", "c"] {
        listen(&lab, host);
    }
    for from in ["a", "b", "c"] {
        for to in ["a", "b", "c"] {
            assert!(lab.tcp_connects(from, lab.address(to), PORT), "{from} cannot reach {to}");
        }
    }
    let neighbours = lab.neigh("a");
    let b = neighbours.iter().find(|entry| entry.address == lab.address("b")).expect("a has asked for b");
    assert_eq!(b.owner.as_deref(), Some("b"));
    assert_eq!(b.mac.as_deref(), Some(lab.mac("b").as_str()));
}

#[test]
fn host_down_cuts_the_host_off_and_host_up_brings_it_back() {
    let lab = lab_or_skip!(&["a", "b", "c"]);
    listen(&lab, "a");
    let listener_b = listen(&lab, "b");
    lab.host_down("b");
    assert!(!lab.tcp_connects("a", lab.address("b"), PORT), "a reaches b, which is down");
    assert!(!lab.tcp_connects("c", lab.address("b"), PORT), "c reaches b, which is down");
    assert!(!lab.tcp_connects("b", lab.address("a"), PORT), "b, which is down, reaches a");
    assert!(lab.tcp_connects("c", lab.address("a"), PORT), "a host that is up is cut off");
    assert!(is_running(listener_b), "the lost host's process died");
    lab.host_up("b");
    assert!(connects_eventually(&lab, "a", lab.address("b")), "b stays unreachable after host-up");
    assert!(connects_eventually(&lab, "b", lab.address("a")), "b cannot reach a after host-up");
}

#[test]
fn partition_cuts_only_the_named_pair_and_heal_restores_it() {
    let lab = lab_or_skip!(&["a", "b", "c"]);
    for host in ["a", "b", "c"] {
        listen(&lab, host);
    }
    lab.partition("a", "b");
    assert!(!lab.tcp_connects("a", lab.address("b"), PORT), "a reaches b across the partition\n{}", lab.rules());
    assert!(!lab.tcp_connects("b", lab.address("a"), PORT), "b reaches a across the partition\n{}", lab.rules());
    assert!(lab.tcp_connects("a", lab.address("c"), PORT), "the partition cut a from c");
    assert!(lab.tcp_connects("c", lab.address("b"), PORT), "the partition cut c from b");
    lab.heal();
    assert!(connects_eventually(&lab, "a", lab.address("b")), "a cannot reach b after heal");
    assert!(connects_eventually(&lab, "b", lab.address("a")), "b cannot reach a after heal");
}

#[test]
fn partition_follows_the_host_when_an_address_moves_and_blocks_arp() {
    let lab = lab_or_skip!(&["a", "b", "c"]);
    listen(&lab, "b");
    listen(&lab, "c");
    let moving = lab.virtual_address(0);
    let moving_cidr = format!("{moving}/16");
    exec_ok(&lab, "b", &["ip", "addr", "add", &moving_cidr, "dev", "eth0"]);
    lab.partition("a", "c");
    assert!(lab.tcp_connects("a", moving, PORT), "a cannot reach the address on b");

    exec_ok(&lab, "b", &["ip", "addr", "del", &moving_cidr, "dev", "eth0"]);
    exec_ok(&lab, "c", &["ip", "addr", "add", &moving_cidr, "dev", "eth0"]);
    // A real takeover announces the move with gratuitous ARP; here a forgets.
    exec_ok(&lab, "a", &["ip", "neigh", "flush", "dev", "eth0"]);
    assert!(!lab.tcp_connects("a", moving, PORT), "a reaches the address now on c, across the partition");
    let entry = lab.neigh("a").into_iter().find(|entry| entry.address == moving);
    assert!(
        entry.as_ref().is_none_or(|entry| entry.mac.is_none()),
        "c answered a's ARP across the partition: {entry:?}"
    );
    assert!(lab.tcp_connects("b", moving, PORT), "b cannot reach the address on c");
    let entry = lab.neigh("b").into_iter().find(|entry| entry.address == moving).expect("b asked for it");
    assert_eq!(entry.owner.as_deref(), Some("c"), "the moved address is answered by c");

    lab.heal();
    assert!(connects_eventually(&lab, "a", moving), "a cannot reach the moved address after heal");
}

#[test]
fn partition_from_all_cuts_one_host_off_and_keeps_its_carrier() {
    let lab = lab_or_skip!(&["a", "b", "c"]);
    for host in ["a", "b", "c"] {
        listen(&lab, host);
    }
    lab.partition_from_all("a");
    assert!(!lab.tcp_connects("a", lab.address("b"), PORT), "a reaches b");
    assert!(!lab.tcp_connects("c", lab.address("a"), PORT), "c reaches a");
    assert!(lab.tcp_connects("b", lab.address("c"), PORT), "b cannot reach c");
    let carrier = lab.exec("a", &["cat", "/sys/class/net/eth0/carrier"]);
    assert_eq!(String::from_utf8_lossy(&carrier.stdout).trim(), "1", "a lost its carrier");
    lab.heal();
    assert!(connects_eventually(&lab, "c", lab.address("a")), "c cannot reach a after heal");
}

#[test]
fn pause_resume_and_kill_act_only_on_spawned_processes() {
    let lab = lab_or_skip!(&["a"]);
    let pid = lab.spawn("a", &log_path(&lab, "a"), &["sleep", "1000"]);
    wait_for_state(pid, 'S');
    lab.pause(pid);
    wait_for_state(pid, 'T');
    lab.resume(pid);
    wait_for_state(pid, 'S');
    lab.kill(pid);
    assert!(!is_running(pid), "process {pid} survived kill");

    let ours = std::process::id().to_string();
    for verb in ["kill", "pause", "resume"] {
        let output = script(&[verb, lab.name(), &ours]);
        assert!(!output.status.success(), "`{verb}` accepted a PID the lab did not spawn");
    }
}

#[test]
fn two_labs_side_by_side_do_not_collide() {
    let first = lab_or_skip!(&["a", "b"]);
    let second = lab_or_skip!(&["a", "b"]);
    assert_ne!(first.name(), second.name());
    for host in ["a", "b"] {
        assert_ne!(first.address(host), second.address(host), "both labs gave {host} one address");
        assert_ne!(first.mac(host), second.mac(host), "both labs gave {host} one MAC");
    }
    listen(&first, "b");
    listen(&second, "b");
    first.partition("a", "b");
    assert!(!first.tcp_connects("a", first.address("b"), PORT), "the first lab's partition does not hold");
    assert!(second.tcp_connects("a", second.address("b"), PORT), "a partition leaked into the other lab");
    assert!(!second.tcp_connects("a", first.address("b"), PORT), "one lab reaches a host of the other");
}

#[test]
fn down_leaves_no_namespace_state_or_process_behind() {
    let lab = lab_or_skip!(&["a", "b"]);
    let name = lab.name().to_owned();
    let listener = listen(&lab, "a");
    let sleeper = lab.spawn("b", &log_path(&lab, "b"), &["sleep", "1000"]);
    assert_eq!(namespaces_of(&name).len(), 3, "a lab of two hosts has three namespaces");
    lab.down();
    assert_eq!(namespaces_of(&name), Vec::<String>::new());
    assert!(!is_running(listener) && !is_running(sleeper), "a process of the lab survived down");
    assert!(!PathBuf::from("/run/tandem-lab").join(&name).exists(), "the lab's state survived down");
    assert!(script(&["down", &name]).status.success(), "a second down fails");
}

#[test]
fn a_lab_whose_test_panicked_is_torn_down() {
    if let Err(skip) = lab::skip_unless_root() {
        return skip.report();
    }
    let mut name = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lab = Lab::up(&["a", "b"]).expect("the lab runs as root");
        name = Some(lab.name().to_owned());
        panic!("a test fails with its lab up");
    }));
    assert!(result.is_err());
    let name = name.expect("the lab came up");
    assert_eq!(namespaces_of(&name), Vec::<String>::new(), "the panicked test's lab is still there");
}

#[test]
fn gc_tears_down_a_lab_whose_creator_died_and_keeps_the_others() {
    let alive = lab_or_skip!(&["a"]);
    let mut creator = Command::new("true").spawn().expect("true runs");
    let creator_pid = creator.id().to_string();
    creator.wait().expect("true exits");
    let orphan = format!("t{}gc", std::process::id());
    let up = Command::new(lab::script())
        .args(["up", &orphan, "a", "b"])
        .env("TANDEM_LAB_OWNER", &creator_pid)
        .output()
        .expect("tandem-lab runs");
    assert!(up.status.success(), "up: {}", String::from_utf8_lossy(&up.stderr));

    let gc = script(&["gc"]);
    let left = namespaces_of(&orphan);
    script(&["down", &orphan]);
    assert!(gc.status.success(), "gc: {}", String::from_utf8_lossy(&gc.stderr));
    assert_eq!(left, Vec::<String>::new(), "gc left the orphan lab");
    assert_eq!(namespaces_of(alive.name()).len(), 2, "gc took a lab whose creator lives");
}

#[test]
fn a_failed_up_leaves_nothing_behind() {
    if let Err(skip) = lab::skip_unless_root() {
        return skip.report();
    }
    let name = format!("t{}failed", std::process::id());
    let duplicate = script(&["up", &name, "a", "a"]);
    assert!(!duplicate.status.success(), "up accepted a host named twice");
    // A namespace in the way makes `up` fail half-built, after the switch and host a.
    let blocker = format!("{name}-b");
    assert!(Command::new("ip").args(["netns", "add", &blocker]).status().expect("ip runs").success());
    let blocked = script(&["up", &name, "a", "b"]);
    let left = namespaces_of(&name);
    script(&["down", &name]);
    assert!(!blocked.status.success(), "up succeeded over an existing namespace");
    assert_eq!(left, Vec::<String>::new(), "a failed up left namespaces");
    assert!(!PathBuf::from("/run/tandem-lab").join(&name).exists(), "a failed up left its state");
}

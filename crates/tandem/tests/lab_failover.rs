//! Failover in the network lab (issue #5): the witness and the two data nodes each on a
//! host of their own, sync acknowledgements, the virtual IP on `eth0`, clients on the
//! host `client`. Each test brings one fault and checks what DESIGN.md promises:
//! every acknowledged write survives (the history checker of `tests/history/`: every
//! write recorded as invoked, then acknowledged, refused or unknown, and every key's
//! history linearizable once read back from the new active), writes through the
//! virtual IP resume on the other node, a fenced active lets the address go before a
//! successor takes it, and a returning node comes back as a standby.
//!
//! Fault verbs are the lab's: `host_down`, `kill` (`kill -9`), `partition`,
//! `partition_from_all`, `heal`. No test asserts how fast anything happened; every wait
//! is bounded, and a failure prints the nodes' logs, the switch's rules and the hosts'
//! addresses and neighbour tables (`lab_support`). They need root; elsewhere each prints why it
//! skipped (and fails instead when `TANDEM_LAB_REQUIRED` is set). The tests run one at
//! a time: with tight timings, two clusters on two cores would fail over for nothing.

mod history;
mod lab_support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use history::{History, Operation, Outcome};
use lab_support::{connect, enter_namespace, within, LabCluster, Placement, Settings, SENTINEL_PORT};

/// The client host.
const CLIENT: &str = "client";
/// Tight timings, so that a failover takes a fraction of a second.
const TIMINGS: &str = "ack_mode = \"sync\"\nheartbeat_ms = 20\ndetector_dead_min_ms = 150\n\
                       detector_dead_max_ms = 600\ncontrol_election_timeout_ms = 100";
/// Shorter announcements than the default, so that one is over before the next fault.
const ANNOUNCEMENTS: &str = "garp_count = 3\ngarp_interval_ms = 50";
/// How long a writer waits for a connection or a reply before it calls the write unknown.
const CLIENT_TIMEOUT: Duration = Duration::from_millis(500);
/// Registers: keys every writer writes, so that their histories overlap.
const REGISTERS: u64 = 4;
/// Acknowledged writes that show a workload is running (before a fault, after a failover).
const PROGRESS: usize = 100;

/// One test at a time (see the module comment); a failed test leaves the lock poisoned.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A cluster on hosts n1, n2, witness, with the host `client`; `None` when skipped.
fn start_cluster(sentinel: bool) -> Option<LabCluster> {
    let placement = Placement { data: ["n1", "n2"], witness: "witness" };
    let settings = Settings {
        cluster_id: "tandem-lab-failover",
        cluster_lines: TIMINGS,
        virtual_ip_lines: ANNOUNCEMENTS,
        sentinel,
    };
    match LabCluster::up(placement, &[CLIENT], settings) {
        Ok(cluster) => Some(cluster),
        Err(skip) => {
            skip.report();
            None
        }
    }
}

// ---------------------------------------------------------------------------------------
// The workload: writers in a host's namespace, recording the history.

/// An acknowledged write, and when the acknowledgement arrived.
#[derive(Debug, Clone)]
struct Acknowledged {
    key: String,
    value: String,
    at: Instant,
    /// When the write was sent.
    invoked: Instant,
}

/// What one writer did.
#[derive(Debug, Default)]
struct WriterReport {
    name: String,
    acknowledged: Vec<Acknowledged>,
    refused: usize,
    unknown: usize,
    /// Every key it wrote, whatever the outcome.
    keys: BTreeSet<String>,
}

/// `SET`s from one host to one address, one at a time, until stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<AtomicUsize>,
    thread: JoinHandle<WriterReport>,
}

impl Writer {
    /// Starts writer `name` in `namespace`, writing to `target`. Most writes go to keys of
    /// its own (so that each acknowledged one can be looked for), every fourth to a register
    /// shared by all writers. Every write goes to the history.
    fn start(namespace: String, target: SocketAddrV4, name: &str, history: Arc<History>) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let (stopped, count, name) = (stop.clone(), acknowledged.clone(), name.to_owned());
        let thread = std::thread::spawn(move || {
            enter_namespace(&namespace).unwrap_or_else(|error| panic!("setns into {namespace}: {error}"));
            write_until_stopped(target, name, &history, &stopped, &count)
        });
        Writer { stop, acknowledged, thread }
    }
}

/// The writer's loop: one `SET` at a time, reconnecting after anything but an acknowledgement.
fn write_until_stopped(
    target: SocketAddrV4,
    name: String,
    history: &History,
    stop: &AtomicBool,
    count: &AtomicUsize,
) -> WriterReport {
    let mut report = WriterReport { name: name.clone(), ..WriterReport::default() };
    let mut connection = None;
    let mut sequence = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let Some(open) = connection.as_mut() else {
            connection = connect(target, CLIENT_TIMEOUT);
            if connection.is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            continue;
        };
        sequence += 1;
        let key = if sequence.is_multiple_of(4) {
            format!("register:{}", sequence / 4 % REGISTERS)
        } else {
            format!("{name}:{sequence}")
        };
        let value = format!("{name}-{sequence}");
        report.keys.insert(key.clone());
        let invoked = Instant::now();
        let id = history.invoke(Operation::Write { key: key.clone(), value: value.clone() });
        let result = redis::cmd("SET").arg(&key).arg(&value).query::<redis::Value>(open);
        let outcome = match &result {
            Ok(_) => Outcome::Ok(None),
            // An error reply: refused before anything was applied (not the active, fenced).
            Err(error) if !error.is_io_error() && error.code().is_some() => Outcome::Failed,
            Err(_) => Outcome::Unknown,
        };
        history.complete(id, outcome.clone());
        match outcome {
            Outcome::Ok(_) => {
                report.acknowledged.push(Acknowledged { key, value, at: Instant::now(), invoked });
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
            other => {
                if other == Outcome::Failed {
                    report.refused += 1;
                } else {
                    report.unknown += 1;
                }
                // Reconnect: through the virtual IP that may reach another node.
                connection = None;
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    report
}

/// Writers sharing one history.
struct Workload {
    history: Arc<History>,
    writers: Vec<(String, Writer)>,
}

impl Workload {
    fn new() -> Workload {
        Workload { history: Arc::new(History::default()), writers: Vec::new() }
    }

    /// Adds writer `name` on host `from`, writing to `target`.
    fn add(&mut self, cluster: &LabCluster, from: &str, target: SocketAddrV4, name: &str) {
        let writer = Writer::start(cluster.lab.namespace(from), target, name, self.history.clone());
        self.writers.push((name.to_owned(), writer));
    }

    /// Acknowledged writes so far, of the writers whose names start with `prefix`.
    fn acknowledged(&self, prefix: &str) -> usize {
        let of = |(name, writer): &(String, Writer)| {
            name.starts_with(prefix).then(|| writer.acknowledged.load(Ordering::SeqCst))
        };
        self.writers.iter().filter_map(of).sum()
    }

    /// Waits until the writers named `prefix…` have [`PROGRESS`] more acknowledged writes.
    fn wait_for_progress(&self, cluster: &LabCluster, prefix: &str, what: &str) {
        let target = self.acknowledged(prefix) + PROGRESS;
        cluster.wait_until(what, || self.acknowledged(prefix) >= target);
    }

    /// Stops the writers; the history and what each writer did.
    fn stop(mut self) -> (Arc<History>, Vec<WriterReport>) {
        self.signal_stop();
        let writers = std::mem::take(&mut self.writers);
        let reports = writers.into_iter().map(|(_, writer)| writer.thread.join().expect("writer")).collect();
        (self.history.clone(), reports)
    }

    fn signal_stop(&self) {
        for (_, writer) in &self.writers {
            writer.stop.store(true, Ordering::SeqCst);
        }
    }
}

impl Drop for Workload {
    /// A test that failed does not leave its writers running into the next test.
    fn drop(&mut self) {
        self.signal_stop();
    }
}

/// Reads every written key back from the active on `host` (recorded in the history),
/// checks the history, and checks each acknowledged write of a key of its own is there.
/// Returns the values read.
fn read_back_and_check(
    cluster: &LabCluster,
    active: &str,
    history: &History,
    reports: &[WriterReport],
) -> BTreeMap<String, Option<String>> {
    let keys: Vec<String> = reports.iter().flat_map(|report| report.keys.iter().cloned()).collect();
    assert!(cluster.is_active(active), "{active} is no longer the active before the read-back");
    let address = cluster.client_address(active);
    let values = within(&cluster.lab.namespace(active), || {
        let mut connection = connect(address, Duration::from_secs(5)).expect("a connection to the new active");
        let mut values = BTreeMap::new();
        for chunk in keys.chunks(200) {
            let ids: Vec<usize> =
                chunk.iter().map(|key| history.invoke(Operation::Read { key: key.clone() })).collect();
            let read: Vec<Option<String>> = redis::cmd("MGET").arg(chunk).query(&mut connection).expect("MGET");
            for ((key, id), value) in chunk.iter().zip(ids).zip(read) {
                history.complete(id, Outcome::Ok(value.clone()));
                values.insert(key.clone(), value);
            }
        }
        values
    });
    assert!(cluster.is_active(active), "{active} is no longer the active after the read-back");
    for report in reports {
        let lost: Vec<&Acknowledged> = report
            .acknowledged
            .iter()
            .filter(|write| !write.key.starts_with("register:"))
            .filter(|write| values.get(&write.key) != Some(&Some(write.value.clone())))
            .collect();
        assert!(lost.is_empty(), "writer {}: {} acknowledged writes lost: {lost:?}", report.name, lost.len());
        eprintln!(
            "writer {}: {} acknowledged, {} refused, {} unknown",
            report.name,
            report.acknowledged.len(),
            report.refused,
            report.unknown
        );
    }
    history.check().unwrap_or_else(|error| panic!("{error}"));
    values
}

/// Waits until `host` (the standby) is the active holding the virtual IP.
fn wait_promoted(cluster: &LabCluster, host: &str) {
    cluster.wait_until(&format!("{host} is the active and holds the virtual IP"), || {
        cluster.is_active(host) && cluster.holds_virtual_ip(host)
    });
}

/// Acknowledged writes of the writers named `prefix…` sent after `instant`.
/// While the successor serves more writes through the virtual IP, the `writer` (to the cut-off
/// `node`) gets no acknowledgement; then stops the workload and checks that no write sent
/// after the promotion was acknowledged by it.
fn stop_once_silent(
    cluster: &LabCluster,
    workload: Workload,
    writer: &str,
    promoted: Instant,
    node: &str,
    progress: &str,
) -> (Arc<History>, Vec<WriterReport>) {
    let before = workload.acknowledged(writer);
    workload.wait_for_progress(cluster, "vip", progress);
    assert_eq!(workload.acknowledged(writer), before, "{node} acknowledged writes after its successor served writes");
    let (history, reports) = workload.stop();
    let after_promotion = acknowledged_after(&reports, writer, promoted);
    assert!(after_promotion.is_empty(), "{node} acknowledged writes sent after the promotion: {after_promotion:?}");
    (history, reports)
}

fn acknowledged_after<'a>(reports: &'a [WriterReport], prefix: &str, instant: Instant) -> Vec<&'a Acknowledged> {
    let of_prefix = reports.iter().filter(|report| report.name.starts_with(prefix));
    of_prefix.flat_map(|report| report.acknowledged.iter()).filter(|write| write.invoked >= instant).collect()
}

// ---------------------------------------------------------------------------------------
// 1 and 2. The active's host is lost; the active's process is killed.

/// Waits for a stable cluster and starts two writers through the virtual IP; returns the
/// active, the standby and the running workload.
fn writing_through_the_virtual_ip(cluster: &LabCluster) -> (String, String, Workload) {
    let (active, standby) = cluster.wait_stable();
    let mut workload = Workload::new();
    workload.add(cluster, CLIENT, cluster.virtual_address(), "vip-a");
    workload.add(cluster, CLIENT, cluster.virtual_address(), "vip-b");
    workload.wait_for_progress(cluster, "vip", "writes through the virtual IP are acknowledged");
    (active, standby, workload)
}

#[test]
fn the_active_host_going_down_moves_writes_through_the_virtual_ip_to_the_standby_losing_none() {
    let _serial = serial();
    let Some(cluster) = start_cluster(false) else { return };
    let (active, standby, workload) = writing_through_the_virtual_ip(&cluster);

    cluster.lab.host_down(&active);
    let fault = Instant::now();
    wait_promoted(&cluster, &standby);
    workload.wait_for_progress(&cluster, "vip", "writes through the virtual IP resume on the standby");
    eprintln!("writes resumed {} ms after the host went down", fault.elapsed().as_millis());
    let (history, reports) = workload.stop();
    read_back_and_check(&cluster, &standby, &history, &reports);
    // The lost host's node let the address go when its lease lapsed (it cannot hear anyone).
    cluster.wait_until("the lost host no longer holds the virtual IP", || !cluster.holds_virtual_ip(&active));
}

#[test]
fn killing_the_active_moves_writes_through_the_virtual_ip_to_the_standby_losing_none() {
    let _serial = serial();
    let Some(cluster) = start_cluster(false) else { return };
    let (active, standby, workload) = writing_through_the_virtual_ip(&cluster);

    cluster.kill(&active);
    wait_promoted(&cluster, &standby);
    // A node killed with -9 leaves the address on its host (README: until it starts
    // again); the successor's gratuitous ARP moves the client anyway.
    cluster.wait_until("the client sends the virtual IP's frames to the new active", || {
        cluster.virtual_ip_owner_seen_by(CLIENT).as_deref() == Some(standby.as_str())
    });
    workload.wait_for_progress(&cluster, "vip", "writes through the virtual IP resume on the standby");
    let (history, reports) = workload.stop();
    read_back_and_check(&cluster, &standby, &history, &reports);
}

// ---------------------------------------------------------------------------------------
// 3. The active cut off from everyone.

#[test]
fn an_active_cut_off_from_everyone_lets_the_virtual_ip_go_before_the_standby_takes_it() {
    let _serial = serial();
    let Some(cluster) = start_cluster(false) else { return };
    let (active, standby) = cluster.wait_stable();
    let mut workload = Workload::new();
    workload.add(&cluster, CLIENT, cluster.virtual_address(), "vip-a");
    workload.add(&cluster, CLIENT, cluster.virtual_address(), "vip-b");
    // A client on the active's own host keeps writing to it: the partition does not cut it.
    workload.add(&cluster, &active, cluster.client_address(&active), "local");
    workload.wait_for_progress(&cluster, "vip", "writes through the virtual IP are acknowledged");

    cluster.lab.partition_from_all(&active);
    let partitioned = Instant::now();
    // Sampled from the partition on: never both hosts with the address.
    let mut samples = 0;
    cluster.wait_until("the standby holds the virtual IP", || {
        let (old, new) = (cluster.holds_virtual_ip(&active), cluster.holds_virtual_ip(&standby));
        assert!(!(old && new), "both hosts hold the virtual IP (sample {samples})");
        samples += 1;
        new
    });
    assert!(!cluster.holds_virtual_ip(&active), "the isolated active let the virtual IP go");
    wait_promoted(&cluster, &standby);
    let promoted = Instant::now();
    cluster.wait_until("the isolated node reports its lease lapsed", || {
        cluster.info_field(&active, "tandem_lease_valid") == "0"
    });
    cluster.wait_until("the client sends the virtual IP's frames to the new active", || {
        cluster.virtual_ip_owner_seen_by(CLIENT).as_deref() == Some(standby.as_str())
    });
    workload.wait_for_progress(&cluster, "vip", "writes through the virtual IP resume on the standby");
    let (history, reports) = stop_once_silent(
        &cluster,
        workload,
        "local",
        promoted,
        "the isolated node",
        "more writes through the virtual IP",
    );
    let late = acknowledged_after(&reports, "local", partitioned);
    eprintln!(
        "{samples} address samples; the isolated node acknowledged {} writes sent after the partition",
        late.len()
    );
    read_back_and_check(&cluster, &standby, &history, &reports);
    assert!(!cluster.holds_virtual_ip(&active), "the isolated node stays without the address");
    let neighbours = cluster.lab.neigh(CLIENT);
    let entries: Vec<_> = neighbours.iter().filter(|entry| entry.address == cluster.virtual_ip).collect();
    assert_eq!(entries.len(), 1, "one ARP entry for the virtual IP: {neighbours:?}");
    assert_eq!(entries[0].mac.as_deref(), Some(cluster.lab.mac(&standby).as_str()), "{neighbours:?}");
}

// ---------------------------------------------------------------------------------------
// 4 and 5. The active cut off from the standby and the witness but not from the client
// (where Redis Sentinel loses acknowledged writes); then the heal.

/// A cluster whose active is cut off from its peers, and its workload.
struct Cut {
    /// The old active's host.
    old: String,
    /// The new active's host.
    new: String,
    workload: Workload,
    /// When the partition was in place.
    partitioned: Instant,
    /// When the new active was seen holding the role, its lease and the virtual IP.
    promoted: Instant,
}

/// Partitions the active from the standby and the witness, with writers through the
/// virtual IP and one writing from the client to the active's own address; returns once
/// the standby serves writes through the virtual IP and the old active's lease lapsed.
fn cut_the_active_off_but_not_from_the_client(cluster: &LabCluster) -> Cut {
    let (active, standby) = cluster.wait_stable();
    let mut workload = Workload::new();
    workload.add(cluster, CLIENT, cluster.virtual_address(), "vip-a");
    workload.add(cluster, CLIENT, cluster.virtual_address(), "vip-b");
    workload.add(cluster, CLIENT, cluster.client_address(&active), "direct");
    workload.wait_for_progress(cluster, "vip", "writes through the virtual IP are acknowledged");
    workload.wait_for_progress(cluster, "direct", "writes to the active's own address are acknowledged");

    cluster.lab.partition(&active, &standby);
    cluster.lab.partition(&active, &cluster.witness_host);
    let partitioned = Instant::now();
    wait_promoted(cluster, &standby);
    let promoted = Instant::now();
    cluster.wait_until("the old active reports its lease lapsed", || {
        cluster.info_field(&active, "tandem_lease_valid") == "0"
    });
    workload.wait_for_progress(cluster, "vip", "writes through the virtual IP resume on the standby");
    assert!(!cluster.holds_virtual_ip(&active), "the old active let the virtual IP go");
    Cut { old: active, new: standby, workload, partitioned, promoted }
}

#[test]
fn an_active_cut_off_from_its_peers_but_not_from_the_client_loses_no_acknowledged_write() {
    let _serial = serial();
    let Some(cluster) = start_cluster(false) else { return };
    let Cut { old: active, new: standby, workload, partitioned, promoted } =
        cut_the_active_off_but_not_from_the_client(&cluster);
    // Keep writing to the old active while the new one serves writes.
    let (history, reports) = stop_once_silent(
        &cluster,
        workload,
        "direct",
        promoted,
        "the old active",
        "more writes through the virtual IP during the partition",
    );
    let late = acknowledged_after(&reports, "direct", partitioned);
    let last = late.iter().map(|write| write.at.duration_since(partitioned).as_millis()).max();
    eprintln!(
        "the old active {active} acknowledged {} writes sent after the partition (last at {last:?} ms)",
        late.len()
    );
    let values = read_back_and_check(&cluster, &standby, &history, &reports);
    for write in late {
        assert!(
            write.key.starts_with("register:") || values.get(&write.key) == Some(&Some(write.value.clone())),
            "a write the old active acknowledged during the partition is missing: {write:?}"
        );
    }
}

#[test]
fn a_healed_old_active_rejoins_as_the_standby_without_the_virtual_ip_or_acknowledging_writes() {
    let _serial = serial();
    let Some(cluster) = start_cluster(false) else { return };
    let Cut { old, new, workload, .. } = cut_the_active_off_but_not_from_the_client(&cluster);

    cluster.lab.heal();
    let healed = Instant::now();
    // Polled through the heal and after: the old node never holds the address while the
    // new one is the active, and never takes the role back.
    let mut samples = 0;
    let mut sample = || {
        let new_is_active = cluster.is_active(&new);
        let old_holds = cluster.holds_virtual_ip(&old);
        assert!(
            !(new_is_active && old_holds),
            "the old node holds the virtual IP while {new} is the active (sample {samples})"
        );
        assert!(!cluster.is_active(&old), "the old node took the active role back");
        samples += 1;
    };
    let new_id = cluster.member_id(&new).to_string();
    cluster.wait_until("the old active rejoins as the standby", || {
        sample();
        cluster.follows(&old) && cluster.info_field(&old, "tandem_control_active") == new_id
    });
    let rejoined = Instant::now();
    let target = workload.acknowledged("vip") + PROGRESS;
    cluster.wait_until("writes through the virtual IP go on after the rejoin", || {
        sample();
        workload.acknowledged("vip") >= target
    });
    cluster.wait_until("the old node follows the new active", || cluster.follows(&old));
    assert!(!cluster.holds_virtual_ip(&old) && cluster.holds_virtual_ip(&new), "the new active keeps the address");
    cluster.wait_until("the client sends the virtual IP's frames to the new active", || {
        cluster.virtual_ip_owner_seen_by(CLIENT).as_deref() == Some(new.as_str())
    });
    let (history, reports) = workload.stop();
    let after_heal = acknowledged_after(&reports, "direct", healed);
    assert!(after_heal.is_empty(), "the returning node acknowledged writes after the heal: {after_heal:?}");
    eprintln!("{samples} samples during the heal; rejoined {} ms after it", (rejoined - healed).as_millis());
    read_back_and_check(&cluster, &new, &history, &reports);
}

// ---------------------------------------------------------------------------------------
// 6. A redis-py Sentinel client follows a failover.

/// Writes through redis-py's `Sentinel.master_for` until a stop file appears, printing
/// one line per event: `master ADDRESS` when discovery names another node, `invoke KEY
/// VALUE`, then `ok|failed|unknown KEY` (one client, in order: the log is its history).
const SENTINEL_CLIENT: &str = r#"
import os, sys, time
from redis.sentinel import Sentinel
from redis.exceptions import ConnectionError, ResponseError, TimeoutError
endpoints = [(host, int(port)) for host, port in (item.rsplit(":", 1) for item in sys.argv[1].split(","))]
stop_file, deadline = sys.argv[2], time.monotonic() + float(sys.argv[3])
timeouts = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
sentinel = Sentinel(endpoints, sentinel_kwargs=dict(timeouts), **timeouts)
master = sentinel.master_for("tandem")
seen, sequence, rediscover = None, 0, True
while not os.path.exists(stop_file) and time.monotonic() < deadline:
    if rediscover or sequence % 20 == 0:
        try:
            found = "%s:%d" % sentinel.discover_master("tandem")
        except Exception:
            found = None
        if found != seen:
            print("master", found, flush=True)
            seen = found
    sequence += 1
    key, value = "py:%d" % sequence, "py-%d" % sequence
    print("invoke", key, value, flush=True)
    try:
        master.set(key, value)
        print("ok", key, flush=True)
        rediscover = False
    except ResponseError as error:
        print("failed", key, repr(error), flush=True)
        rediscover = True
    except (ConnectionError, TimeoutError) as error:
        print("unknown", key, repr(error), flush=True)
        rediscover = True
        time.sleep(0.05)
    time.sleep(0.005)
print("done", flush=True)
"#;

/// The Python with redis-py: `TANDEM_PYTHON`, else `python3` (as `tests/sentinel.rs`:
/// `./scripts/test` sets the variable only when `python3` lacks redis-py); `Err` says
/// why the test skips.
fn python_with_redis() -> Result<String, String> {
    let python = std::env::var("TANDEM_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = std::process::Command::new(&python).args(["-c", "import redis.sentinel"]).output();
    match probe {
        Ok(output) if output.status.success() => Ok(python),
        _ => Err(format!("{python} cannot import redis.sentinel (set TANDEM_PYTHON to a Python with redis-py)")),
    }
}

/// The Sentinel client's log, turned into a history; the events after `master ADDRESS`
/// lines are returned per master seen.
fn replay_sentinel_log(log: &str, history: &History) -> (WriterReport, Vec<(String, usize)>) {
    let mut report = WriterReport { name: "redis-py".into(), ..WriterReport::default() };
    let mut masters: Vec<(String, usize)> = Vec::new();
    let mut pending: Option<(usize, String, String)> = None;
    for line in log.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["master", address] => masters.push(((*address).to_owned(), 0)),
            ["invoke", key, value] => {
                let id = history.invoke(Operation::Write { key: (*key).into(), value: (*value).into() });
                report.keys.insert((*key).into());
                pending = Some((id, (*key).into(), (*value).into()));
            }
            [outcome @ ("ok" | "failed" | "unknown"), key, ..] => {
                let (id, pending_key, value) = pending.take().expect("an outcome follows an invoke");
                assert_eq!(*key, pending_key, "the log is in order");
                let outcome = match *outcome {
                    "ok" => Outcome::Ok(None),
                    "failed" => Outcome::Failed,
                    _ => Outcome::Unknown,
                };
                history.complete(id, outcome.clone());
                match outcome {
                    Outcome::Ok(_) => {
                        let now = Instant::now();
                        report.acknowledged.push(Acknowledged { key: pending_key, value, at: now, invoked: now });
                        if let Some((_, count)) = masters.last_mut() {
                            *count += 1;
                        }
                    }
                    Outcome::Failed => report.refused += 1,
                    Outcome::Unknown => report.unknown += 1,
                }
            }
            _ => {}
        }
    }
    (report, masters)
}

#[test]
fn a_redis_py_sentinel_client_in_the_client_host_follows_a_failover() {
    let _serial = serial();
    let python = match python_with_redis() {
        Ok(python) => python,
        Err(reason) => return eprintln!("skipped: {reason}"),
    };
    let Some(cluster) = start_cluster(true) else { return };
    let (active, standby) = cluster.wait_stable();
    let endpoints: Vec<String> =
        cluster.data_hosts.iter().map(|host| format!("{}:{SENTINEL_PORT}", cluster.lab.address(host))).collect();
    let (log, stop_file) = (cluster.dir().join("redis-py.log"), cluster.dir().join("redis-py.stop"));
    let deadline_seconds = (lab_support::WAIT * 3).as_secs().to_string();
    let script = [python.as_str(), "-c", SENTINEL_CLIENT, &endpoints.join(","), stop_file.to_str().unwrap()];
    cluster.lab.spawn(CLIENT, &log, &[&script[..], &[deadline_seconds.as_str()]].concat());
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let oks_after = |address: &str| {
        let text = read_log();
        let Some(start) = text.find(&format!("master {address}\n")) else { return 0 };
        text[start..].lines().filter(|line| line.starts_with("ok ")).count()
    };
    let (old_address, new_address) =
        (cluster.client_address(&active).to_string(), cluster.client_address(&standby).to_string());
    cluster.wait_until("redis-py writes to the active it discovered", || oks_after(&old_address) >= PROGRESS);

    cluster.kill(&active);
    wait_promoted(&cluster, &standby);
    cluster.wait_until("redis-py discovers the new active and writes to it", || oks_after(&new_address) >= PROGRESS);
    std::fs::write(&stop_file, "").unwrap();
    cluster.wait_until("the redis-py client stops", || read_log().lines().any(|line| line == "done"));

    let history = History::default();
    let (report, masters) = replay_sentinel_log(&read_log(), &history);
    eprintln!("redis-py saw the masters {masters:?}");
    let seen: Vec<&str> = masters.iter().map(|(address, _)| address.as_str()).collect();
    assert!(
        seen.first() == Some(&old_address.as_str()) && seen.last() == Some(&new_address.as_str()),
        "redis-py found {old_address} then {new_address}: {seen:?}\n{}",
        read_log()
    );
    read_back_and_check(&cluster, &standby, &history, &[report]);
}

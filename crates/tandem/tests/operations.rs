//! Operations with real processes (issue 4, "Operations"; DESIGN.md "Planned switchover",
//! "Failback", invariants 1 and 3): `tandem status` shows every member, `tandem switchover`
//! swaps the roles under write load with no acknowledged write lost, a switchover to a
//! standby that is down is refused, a promotion needs `--force --accept-data-loss` and then
//! works with the active down and the standby out of sync, and `preempt` hands the role
//! back to the preferred node.

mod cluster_support;

use std::path::Path;
use std::time::{Duration, Instant};

use cluster_support::{
    accepts_a_write, info, lost_writes, poll_until, role, wait_active, Cluster, Writers, CONVERGE_TIMEOUT,
};
use serde_json::Value;
use tandem::admin::status::NodeStatus;

/// How long an operator command may take in a test.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits until node `standby` follows the active `active` on both planes.
fn wait_following(cluster: &Cluster, standby: usize, active: u32) {
    let node = &cluster.nodes[standby];
    poll_until(CONVERGE_TIMEOUT, "the standby follows the active on both planes", || {
        info(node, "role") == "slave"
            && info(node, "master_link_status") == "up"
            && info(node, "tandem_control_active") == active.to_string()
    });
}

/// `GET /status` of a node's admin endpoint.
fn node_status(port: u16) -> Option<NodeStatus> {
    let address = ([127, 0, 0, 1], port).into();
    let response = tandem::admin::client::request(address, "GET", "/status", None, Duration::from_secs(5)).ok()?;
    serde_json::from_str(&response.body).ok()
}

/// Runs `tandem <command> --config <operator config> <args>`.
fn operator(cluster: &Cluster, config: &Path, command: &str, args: &[&str]) -> std::process::Output {
    let config = config.to_str().unwrap();
    let mut all = vec![command, "--config", config];
    all.extend_from_slice(args);
    cluster.tandem(&all, COMMAND_TIMEOUT)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A sync cluster whose members have admin addresses, node 1 active and node 2 following
/// it; with the operator's configuration file.
fn sync_cluster_with_admin() -> (Cluster, std::path::PathBuf) {
    let cluster = Cluster::start_with_admin("ack_mode = \"sync\"", ["", ""]);
    wait_active(&cluster, 0);
    wait_following(&cluster, 1, 1);
    let config = cluster.operator_config();
    (cluster, config)
}

/// The `status` member of `tandem status --json`'s entry for `node_id`.
fn member(reports: &Value, node_id: u64) -> &Value {
    let entry = reports.as_array().unwrap().iter().find(|entry| entry["node_id"] == node_id).unwrap();
    &entry["status"]
}

#[test]
fn status_shows_both_data_nodes_and_the_witness_with_their_roles_and_epoch() {
    let (mut cluster, config) = sync_cluster_with_admin();

    let output = operator(&cluster, &config, "status", &["--json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let reports: Value = serde_json::from_slice(&output.stdout).unwrap();
    let (active, standby, witness) = (member(&reports, 1), member(&reports, 2), member(&reports, 3));
    assert_eq!(active["role"], "active", "{reports:#}");
    assert_eq!(standby["role"], "standby", "{reports:#}");
    assert_eq!(witness["role"], "witness", "{reports:#}");
    let epoch = active["epoch"].as_u64().unwrap();
    assert!(epoch >= 1, "{reports:#}");
    assert_eq!(standby["epoch"], epoch, "{reports:#}");
    assert_eq!(witness["control"]["active"], 1, "{reports:#}");
    assert_eq!(active["control"]["address_holder"], 1, "{reports:#}");
    assert_eq!(active["in_sync"], true, "{reports:#}");
    assert_eq!(standby["peer"]["state"], "alive", "{reports:#}");

    let output = operator(&cluster, &config, "status", &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let table = text(&output.stdout);
    println!("{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NODE") && lines[0].contains("ADDRESS HOLDER"), "{table}");
    assert!(lines[1].starts_with("1 (data)") && lines[1].contains("active"), "{table}");
    assert!(lines[2].starts_with("2 (data)") && lines[2].contains("standby"), "{table}");
    assert!(lines[3].starts_with("3 (witness)") && lines[3].contains("witness"), "{table}");

    // An unreachable member is shown as such; the others still answer.
    cluster.witness.as_mut().unwrap().kill9();
    let output = operator(&cluster, &config, "status", &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let table = text(&output.stdout);
    assert!(table.lines().any(|line| line.starts_with("3 (witness)") && line.contains("unreachable")), "{table}");
}

#[test]
fn switchover_under_write_load_swaps_roles_and_loses_no_acknowledged_write() {
    let (cluster, config) = sync_cluster_with_admin();
    let epoch_before = node_status(cluster.nodes[0].admin_port.unwrap()).unwrap().epoch;

    let writers = Writers::start(&cluster.nodes[0].url(), 4);
    poll_until(CONVERGE_TIMEOUT, "writers acknowledged 300 writes", || writers.acknowledged_count() >= 300);
    let started = Instant::now();
    let output = operator(&cluster, &config, "switchover", &[]);
    let took = started.elapsed();
    let acknowledged = writers.stop();
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "stdout: {stdout}\nstderr: {}", text(&output.stderr));
    println!("switchover ({took:?} end to end): {stdout}");
    let pause_ms: u64 = stdout
        .lines()
        .find_map(|line| line.strip_prefix("write pause: "))
        .and_then(|rest| rest.trim_end_matches(" ms").parse().ok())
        .unwrap_or_else(|| panic!("no write pause reported: {stdout}"));
    assert!(pause_ms < 5_000, "write pause {pause_ms} ms");

    wait_active(&cluster, 1);
    assert_eq!(role(&cluster.nodes[0]), "slave");
    let status = node_status(cluster.nodes[1].admin_port.unwrap()).unwrap();
    assert_eq!(status.epoch, epoch_before + 1, "{status:?}");
    assert_eq!(status.control.as_ref().unwrap().address_holder, Some(2), "{status:?}");
    let lost = lost_writes(&mut cluster.nodes[1].connection(), &acknowledged);
    assert!(lost.is_empty(), "{} of {} acknowledged writes lost: {lost:?}", lost.len(), acknowledged.len());

    // A switchover asked of the standby is forwarded to the active: the role goes back.
    wait_following(&cluster, 0, 2);
    let address = ([127, 0, 0, 1], cluster.nodes[0].admin_port.unwrap()).into();
    let response = tandem::admin::client::request(address, "POST", "/switchover", Some("{}"), COMMAND_TIMEOUT).unwrap();
    assert_eq!(response.status, 200, "{}", response.body);
    wait_active(&cluster, 0);
    assert_eq!(node_status(cluster.nodes[0].admin_port.unwrap()).unwrap().epoch, epoch_before + 2);
}

#[test]
fn switchover_is_refused_when_the_standby_is_down_and_writes_continue() {
    let (mut cluster, config) = sync_cluster_with_admin();
    cluster.nodes[1].kill9();
    poll_until(CONVERGE_TIMEOUT, "the active saw its standby go", || {
        node_status(cluster.nodes[0].admin_port.unwrap())
            .and_then(|status| status.peer)
            .is_some_and(|peer| !peer.connected)
    });
    let output = operator(&cluster, &config, "switchover", &["--to", "2"]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{}", text(&output.stdout));
    assert!(stderr.contains("refused") && stderr.contains("node 2"), "{stderr}");
    // Once the active recorded the dead standby out of sync, writes go on without it.
    assert!(accepts_a_write(&cluster.nodes[0], "after-refusal"));
    assert_eq!(role(&cluster.nodes[0]), "master");
    let output = operator(&cluster, &config, "switchover", &[]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success() && stderr.contains("not in sync"), "{stderr}");
}

#[test]
fn promotion_without_both_flags_or_with_a_live_active_is_refused() {
    let (cluster, config) = sync_cluster_with_admin();
    for flags in [&[][..], &["--force"][..], &["--accept-data-loss"][..]] {
        let mut args = vec!["2"];
        args.extend_from_slice(flags);
        let output = operator(&cluster, &config, "promote", &args);
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "promote {flags:?} must be refused");
        assert!(stderr.contains("without --force --accept-data-loss"), "{stderr}");
    }
    let output = operator(&cluster, &config, "promote", &["2", "--force", "--accept-data-loss"]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success() && stderr.contains("tandem switchover"), "{stderr}");
    let output = operator(&cluster, &config, "promote", &["3", "--force", "--accept-data-loss"]);
    assert_eq!(output.status.code(), Some(2), "the witness is never promoted");
    assert_eq!(role(&cluster.nodes[0]), "master");
    assert_eq!(role(&cluster.nodes[1]), "slave");
}

/// The standby is down while the active writes on alone (and records it out of sync); then
/// the active dies and the standby returns. Its control log is behind the witness's, so the
/// witness brings it up to date (`tandem_control::witness`); it learns it is out of sync and is
/// not promoted by itself, and the operator's forced promotion makes it the active.
#[test]
fn forced_promotion_needs_both_flags_and_takes_over_from_a_lost_active() {
    let (mut cluster, config) = sync_cluster_with_admin();
    cluster.nodes[1].kill9();
    let mut active = cluster.nodes[0].connection();
    for each in 0..100 {
        let _: String = redis::cmd("SET").arg(format!("alone:{each}")).arg(each).query(&mut active).unwrap();
    }
    let admin_ports = [cluster.nodes[0].admin_port.unwrap(), cluster.nodes[1].admin_port.unwrap()];
    let in_sync = |index: usize| node_status(admin_ports[index]).and_then(|status| status.control).map(|c| c.in_sync);
    assert_eq!(in_sync(0), Some(vec![1]), "the active recorded the standby out of sync before acknowledging");
    cluster.nodes[0].kill9();
    cluster.nodes[1].spawn();
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    while in_sync(1) != Some(vec![1]) {
        assert!(Instant::now() < deadline, "node 2 never learnt the control log recording it out of sync");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(role(&cluster.nodes[1]), "slave", "an out-of-sync standby is never promoted automatically");

    for flags in [&[][..], &["--force"][..], &["--accept-data-loss"][..]] {
        let mut args = vec!["2"];
        args.extend_from_slice(flags);
        let output = operator(&cluster, &config, "promote", &args);
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "promote {flags:?} must be refused");
        assert!(stderr.contains("--force --accept-data-loss") && stderr.contains("not in sync"), "{stderr}");
    }
    // With both flags it is done (once node 2 leads the control group with the witness).
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let output = operator(&cluster, &config, "promote", &["2", "--force", "--accept-data-loss"]);
        if output.status.success() {
            println!("{}", text(&output.stdout));
            break;
        }
        assert!(Instant::now() < deadline, "forced promotion failed: {}", text(&output.stderr));
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_active(&cluster, 1);
    let status = node_status(admin_ports[1]).unwrap();
    assert_eq!(status.control.unwrap().in_sync, vec![2], "after a forced promotion only the new active is in sync");
    let mut new_active = cluster.nodes[1].connection();
    let _: String = redis::cmd("SET").arg("after").arg(1).query(&mut new_active).unwrap();
    let lacked: Option<String> = redis::cmd("GET").arg("alone:99").query(&mut new_active).unwrap();
    assert_eq!(lacked, None, "the writes it lacked are the accepted loss");
}

#[test]
fn preempt_hands_the_role_back_to_the_preferred_node() {
    let cluster = Cluster::start_with_admin(
        "ack_mode = \"sync\"\npreempt = true\npreempt_delay_ms = 500",
        ["priority = 100", "priority = 200"],
    );
    // Node 1 is elected first (initial_active); node 2 is preferred and takes over once in sync.
    wait_active(&cluster, 1);
    wait_following(&cluster, 0, 2);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(role(&cluster.nodes[1]), "master", "the preferred node keeps the role");
    assert!(!cluster.nodes[1].stderr().contains("preempt: handing"), "the preferred node never hands the role back");
    assert!(cluster.nodes[0].stderr().contains("preempt: handing the role to the preferred node"));
}

/// `INFO clients`' `blocked_clients` of a node ("" if it cannot answer).
fn blocked_clients(node: &cluster_support::Node) -> String {
    let Ok(mut connection) = redis::Client::open(node.url()).unwrap().get_connection() else { return String::new() };
    let text: String = redis::cmd("INFO").arg("clients").query(&mut connection).unwrap_or_default();
    text.lines().find_map(|line| line.strip_prefix("blocked_clients:")).unwrap_or_default().trim().to_string()
}

#[test]
fn a_client_blocked_on_the_active_stops_waiting_when_a_switchover_demotes_it() {
    let (cluster, config) = sync_cluster_with_admin();
    let (sender, outcome) = std::sync::mpsc::channel();
    let mut blocked = cluster.nodes[0].connection();
    std::thread::spawn(move || {
        let reply: redis::RedisResult<Option<(String, String)>> =
            redis::cmd("BLPOP").arg("jobs").arg(0).query(&mut blocked);
        let _ = sender.send(reply);
    });
    poll_until(CONVERGE_TIMEOUT, "one client blocked on the active", || blocked_clients(&cluster.nodes[0]) == "1");
    let output = operator(&cluster, &config, "switchover", &[]);
    assert!(output.status.success(), "stdout: {}\nstderr: {}", text(&output.stdout), text(&output.stderr));
    // Demoted, the old active answers its blocked client (or closes its connection): never a hang.
    let reply = outcome.recv_timeout(COMMAND_TIMEOUT).expect("the blocked client was answered");
    match reply {
        Ok(popped) => panic!("a demoted node served a pop: {popped:?}"),
        Err(error) => println!("the blocked client got: {error}"),
    }
    assert_eq!(blocked_clients(&cluster.nodes[0]), "0");
    // The new active serves blocking pops.
    wait_active(&cluster, 1);
    let mut waiting = cluster.nodes[1].connection();
    let (sender, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let reply: redis::RedisResult<(String, String)> = redis::cmd("BRPOP").arg("jobs").arg(0).query(&mut waiting);
        let _ = sender.send(reply);
    });
    poll_until(CONVERGE_TIMEOUT, "one client blocked on the new active", || blocked_clients(&cluster.nodes[1]) == "1");
    assert!(accepts_a_write(&cluster.nodes[1], "jobs-marker"));
    let _: i64 = redis::cmd("RPUSH").arg("jobs").arg("after").query(&mut cluster.nodes[1].connection()).unwrap();
    let popped = outcome.recv_timeout(COMMAND_TIMEOUT).expect("served").unwrap();
    assert_eq!(popped, ("jobs".to_string(), "after".to_string()));
}

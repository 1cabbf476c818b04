//! Automatic failover through the control plane with real processes (issue 4;
//! DESIGN.md "Active-passive", invariants 1–3): a witness and two data nodes
//! elect the initial active, a killed active is replaced by the in-sync
//! standby with no acknowledged write lost, the witness never takes a data
//! role, and the loss of the witness alone changes nothing.

mod cluster_support;
mod prometheus;

use prometheus::metric;
use std::time::Duration;

use cluster_support::{
    info_field, lost_writes, poll_until, role, wait_active, wait_standby_joined, Cluster, Writers, CONVERGE_TIMEOUT,
};

#[test]
fn the_initial_active_is_elected_and_serves_writes_while_the_standby_refuses_them() {
    let cluster = Cluster::start_with_control_plane("ack_mode = \"sync\"");
    wait_active(&cluster, 0);
    wait_standby_joined(&cluster);
    let mut standby = cluster.nodes[1].connection();
    let error =
        redis::cmd("SET").arg("k").arg("v").query::<String>(&mut standby).expect_err("a standby refuses writes");
    assert_eq!(error.code(), Some("READONLY"), "{error}");
}

#[test]
fn killing_the_active_under_sync_load_promotes_the_standby_and_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start_with_control_plane("ack_mode = \"sync\"");
    wait_active(&cluster, 0);
    wait_standby_joined(&cluster);
    let writers = Writers::start(&cluster.nodes[0].url(), 4);
    poll_until(CONVERGE_TIMEOUT, "writers acknowledged 400 writes", || writers.acknowledged_count() >= 400);
    cluster.nodes[0].kill9();
    let acknowledged = writers.stop();
    wait_active(&cluster, 1);
    let lost = lost_writes(&mut cluster.nodes[1].connection(), &acknowledged);
    assert!(lost.is_empty(), "{} of {} acknowledged writes lost: {lost:?}", lost.len(), acknowledged.len());
    // The witness voted for the promotion but took no data role.
    let witness = cluster.witness.as_mut().expect("a witness");
    assert!(witness.is_running());
    assert!(!witness.stderr().contains("role set"), "the witness never takes a data role");
}

#[test]
fn the_witness_is_refused_a_data_members_id_and_never_serves_clients() {
    let cluster = Cluster::start_with_control_plane("");
    let witness = cluster.witness.as_ref().expect("a witness");
    let text = std::fs::read_to_string(witness.config_path()).unwrap().replace("node_id = 3", "node_id = 1");
    let path = witness.config_path().with_file_name("as-data-member.toml");
    std::fs::write(&path, text).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("witness")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cluster.node_id") && stderr.contains("not the witness"), "{stderr}");
    // The active is one of the data nodes, and the witness never logs a data role.
    wait_active(&cluster, 0);
    assert!(!witness.stderr().contains("role set"));
}

#[test]
fn killing_the_witness_leaves_writes_on_the_active_running() {
    let mut cluster = Cluster::start_with_control_plane("ack_mode = \"sync\"");
    wait_active(&cluster, 0);
    wait_standby_joined(&cluster);
    cluster.witness.as_mut().expect("a witness").kill9();
    let mut active = cluster.nodes[0].connection();
    for each in 0..200 {
        let reply: String =
            redis::cmd("SET").arg(format!("after-witness:{each}")).arg(each).query(&mut active).unwrap();
        assert_eq!(reply, "OK");
    }
    assert_eq!(role(&cluster.nodes[0]), "master");
    assert_eq!(role(&cluster.nodes[1]), "slave");
}

/// A loopback service address of its own for this test process (127.0.0.0/8 needs no setup).
fn service_address() -> String {
    service_address_on(6390)
}

/// A loopback service address of this test process; tests that run side by side take
/// different ports.
fn service_address_on(port: u16) -> String {
    let pid = std::process::id();
    format!("127.{}.{}.1:{port}", 20 + pid % 200, 1 + (pid / 200) % 250)
}

fn connect_through(address: &str) -> Option<redis::Connection> {
    let connection = redis::Client::open(format!("redis://{address}")).unwrap().get_connection().ok()?;
    let _ = connection.set_read_timeout(Some(Duration::from_secs(5)));
    Some(connection)
}

#[test]
fn the_service_address_moves_to_the_new_active_and_role_changes_are_announced() {
    let address = service_address();
    let marker = tempfile::NamedTempFile::new().unwrap();
    let extra = format!(
        "ack_mode = \"sync\"\nservice_address = \"{address}\"\n\
         on_role_change = \"echo $TANDEM_NODE_ID $TANDEM_ROLE $TANDEM_EPOCH $TANDEM_SERVICE_ADDRESS >> {}\"",
        marker.path().display()
    );
    let mut cluster = Cluster::start_with_admin(&extra, ["", ""]);
    wait_active(&cluster, 0);
    wait_standby_joined(&cluster);
    let mut through = None;
    poll_until(CONVERGE_TIMEOUT, "the service address answers", || {
        through = connect_through(&address);
        through.is_some()
    });
    let mut through = through.unwrap();
    let _: () = redis::cmd("SET").arg("via-address").arg("1").query(&mut through).unwrap();
    let node_id: String = redis::cmd("INFO").arg("replication").query::<String>(&mut through).unwrap();
    assert!(node_id.contains("tandem_node_id:1"), "the address leads to the active: {node_id}");
    let mut standby = cluster.nodes[1].connection();
    assert_eq!(info_field(&mut standby, "tandem_service_address_bound"), "0", "the standby does not hold it");
    let mut subscriber = cluster.nodes[1].connection();
    let _ = subscriber.set_read_timeout(Some(Duration::from_secs(20)));
    let mut pubsub = subscriber.as_pubsub();
    pubsub.subscribe("__tandem__:role").unwrap();

    cluster.nodes[0].kill9();
    let message = pubsub.get_message().expect("a role-change message");
    assert_eq!(message.get_payload::<String>().unwrap(), "active 2 2", "role epoch node");
    drop(pubsub);
    let mut moved = None;
    poll_until(CONVERGE_TIMEOUT, "the service address leads to node 2", || {
        moved = connect_through(&address);
        let Some(connection) = moved.as_mut() else { return false };
        redis::cmd("SET").arg("after-failover").arg("1").query::<String>(connection).is_ok()
    });
    let mut moved = moved.unwrap();
    let info: String = redis::cmd("INFO").arg("replication").query(&mut moved).unwrap();
    assert!(info.contains("tandem_node_id:2") && info.contains("tandem_service_address_bound:1"), "{info}");
    assert!(info.contains("tandem_failovers:1"), "{info}");
    let value: String = redis::cmd("GET").arg("via-address").query(&mut moved).unwrap();
    assert_eq!(value, "1", "the write made through the address before the failover survived");
    // The command runs beside the node: wait for it, bounded.
    let mut runs = String::new();
    poll_until(CONVERGE_TIMEOUT, "on_role_change ran on the promotion", || {
        runs = std::fs::read_to_string(marker.path()).unwrap();
        runs.contains(&format!("2 active 2 {address}"))
    });
    assert!(runs.contains(&format!("1 active 1 {address}")), "and on the first promotion: {runs}");
    assert!(
        !runs.contains("1 standby 1") && !runs.contains("2 standby 2"),
        "a node its own promotion made current takes the role without a standby step at the new epoch: {runs}"
    );
    let metrics = http_get(cluster.nodes[1].admin_port.expect("an admin port"), "/metrics");
    for (name, value) in [("tandem_failovers_total", 1.0), ("tandem_role", 1.0), ("tandem_epoch", 2.0)] {
        assert_eq!(metric(&metrics, name), value, "{name}");
    }
    assert_eq!(metric(&metrics, "tandem_service_address_bound"), 1.0);
    assert!(metric(&metrics, "tandem_last_failover_detected_to_promoted_ms") < 60_000.0);
}

/// The failover's timeline keeps the new active's first bind of the service address: a
/// lease that lapses afterwards releases the address, and the renewal binds it again (the
/// address's own stamps show that), but the failover's "address moved" stays when it moved.
/// (`tandem demo` had reported the last bind, which a loaded CI run saw after the first
/// write the new active had served through the address.)
#[test]
fn a_lease_that_lapses_after_a_failover_rebinds_the_address_but_keeps_the_failovers_first_bind() {
    let address = service_address_on(6391);
    let mut cluster =
        Cluster::start_with_control_plane(&format!("ack_mode = \"sync\"\nservice_address = \"{address}\""));
    wait_active(&cluster, 0);
    wait_standby_joined(&cluster);
    cluster.nodes[0].kill9();
    wait_active(&cluster, 1);
    let mut node2 = cluster.nodes[1].connection();
    poll_until(CONVERGE_TIMEOUT, "node 2 holds the service address", || {
        info_field(&mut node2, "tandem_service_address_bound") == "1"
    });
    let stamp =
        |connection: &mut redis::Connection, field: &str| -> u64 { info_field(connection, field).parse().unwrap() };
    let promoted = stamp(&mut node2, "tandem_last_failover_promoted_unix_ms");
    let first_bind = stamp(&mut node2, "tandem_last_failover_address_bound_unix_ms");
    assert!(promoted > 0 && first_bind >= promoted, "promoted {promoted}, then bound {first_bind}");
    assert_eq!(stamp(&mut node2, "tandem_service_address_bound_unix_ms"), first_bind, "one bind so far");

    // Node 1 is dead: without the witness node 2 has no majority, and its lease lapses.
    cluster.witness.as_mut().expect("a witness").kill9();
    poll_until(CONVERGE_TIMEOUT, "node 2 released the address", || {
        info_field(&mut node2, "tandem_service_address_bound") == "0"
    });
    cluster.witness.as_mut().expect("a witness").start();
    poll_until(CONVERGE_TIMEOUT, "node 2 bound the address again", || {
        info_field(&mut node2, "tandem_service_address_bound") == "1"
    });
    let released = stamp(&mut node2, "tandem_service_address_released_unix_ms");
    let last_bind = stamp(&mut node2, "tandem_service_address_bound_unix_ms");
    assert!(
        first_bind <= released && released <= last_bind,
        "bound {first_bind}, released {released}, bound {last_bind}"
    );
    assert!(last_bind > first_bind, "the renewal bound it again: {first_bind} -> {last_bind}");
    assert_eq!(
        stamp(&mut node2, "tandem_last_failover_address_bound_unix_ms"),
        first_bind,
        "the failover's timeline keeps its first bind"
    );
    assert_eq!(info_field(&mut node2, "tandem_failovers"), "1", "a lapsed lease is not a failover");
    let mut through = connect_through(&address).expect("the address answers again");
    let _: () = redis::cmd("SET").arg("after-renewal").arg("1").query(&mut through).unwrap();
}

fn http_get(port: u16, path: &str) -> String {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let response = tandem::admin::client::request(address, "GET", path, None, Duration::from_secs(10)).unwrap();
    assert_eq!(response.status, 200, "{}", response.body);
    response.body
}

#[test]
fn a_transaction_queued_before_the_active_lost_its_lease_is_refused_at_exec() {
    let mut cluster = Cluster::start_with_control_plane("ack_mode = \"semi-sync\"\nsync_timeout_ms = 200");
    wait_active(&cluster, 0);
    wait_standby_joined(&cluster);
    let mut transaction = cluster.nodes[0].connection();
    let _: () = redis::cmd("MULTI").query(&mut transaction).unwrap();
    let queued: String = redis::cmd("SET").arg("in-transaction").arg("1").query(&mut transaction).unwrap();
    assert_eq!(queued, "QUEUED");
    // No quorum any more: the active's lease runs out.
    cluster.witness.as_mut().expect("a witness").kill9();
    cluster.nodes[1].kill9();
    let mut observer = cluster.nodes[0].connection();
    poll_until(CONVERGE_TIMEOUT, "the active's lease lapsed", || {
        info_field(&mut observer, "tandem_lease_valid") == "0"
    });
    let error = redis::cmd("EXEC").query::<redis::Value>(&mut transaction).expect_err("a fenced node runs no write");
    assert_eq!(error.code(), Some("READONLY"), "{error}");
    // With the quorum back, the active holds its lease again: the transaction never ran.
    cluster.witness.as_mut().expect("a witness").start();
    poll_until(CONVERGE_TIMEOUT, "the active holds its lease again", || {
        info_field(&mut observer, "tandem_lease_valid") == "1"
    });
    let exists: i64 = redis::cmd("EXISTS").arg("in-transaction").query(&mut observer).unwrap();
    assert_eq!(exists, 0);
}

/// The witness and node 2 form the control group first; node 1, the initial active, starts
/// only after node 2 has gone without hearing an active for several detector timeouts. Its
/// promotion must stand: node 2 gives a new active one detector timeout from the moment it
/// learns of it, and reconnects at once, instead of calling it dead (it refused node 2's
/// sessions until it took the role) and taking over right after the first promotion.
#[test]
fn an_initial_active_that_starts_late_keeps_its_role() {
    let mut cluster = Cluster::start_with_control_plane_without_node_1("ack_mode = \"sync\"");
    // Longer than the detector's timeout (600 ms by default) with no active at all.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(role(&cluster.nodes[1]), "slave", "without node 1 nothing is promoted");
    cluster.nodes[0].start();
    wait_active(&cluster, 0);
    wait_standby_joined(&cluster);
    let mut standby = cluster.nodes[1].connection();
    for _ in 0..20 {
        assert_eq!(info_field(&mut standby, "tandem_epoch"), "1", "node 2 did not take over");
        assert_eq!(info_field(&mut standby, "tandem_failovers"), "0");
        assert_eq!(role(&cluster.nodes[0]), "master");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Not even tried (a refusal, had node 1 marked it out of sync first, would hide it).
    let log = cluster.nodes[1].stderr();
    assert!(!log.contains("Promote { node: 2"), "node 2 proposed its own promotion:\n{log}");
}

//! Cold standby (`standby = "cold"`): the standby holds no data until it takes
//! over, then rebuilds from the dead active's archive. Real processes, a real
//! shared archive directory, SIGKILL of the active under concurrent write load.
//! The lost writes are the acknowledged ones the archive did not hold yet, and
//! the reports of them (the new active's lower bound, the old active's diverged
//! records) are checked against what the clients actually lost.

mod cluster_support;

use std::collections::BTreeMap;
use std::path::Path;

use cluster_support::{info, poll_until, role, wait_active, wait_standby_joined, Cluster, CONVERGE_TIMEOUT};

/// An archive shipped often, so that the test's first batch is archived quickly.
fn archive_section(archive: &Path) -> String {
    format!("[archive]\ndir = \"{}\"\ninterval_ms = 100\n", archive.display())
}

fn cold_cluster(archive: &Path) -> Cluster {
    Cluster::start_with_sections("standby = \"cold\"\nack_mode = \"async\"", &archive_section(archive))
}

fn persistence_field(node: &cluster_support::Node, field: &str) -> String {
    let mut connection = node.connection();
    let text: String = redis::cmd("INFO").arg("persistence").query(&mut connection).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(field).and_then(|rest| rest.strip_prefix(':')))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn write_keys(node: &cluster_support::Node, prefix: &str, count: usize) -> BTreeMap<String, String> {
    let mut connection = node.connection();
    let mut written = BTreeMap::new();
    for n in 0..count {
        let (key, value) = (format!("{prefix}:{n}"), format!("value-{n}"));
        let reply: String = redis::cmd("SET").arg(&key).arg(&value).query(&mut connection).unwrap();
        assert_eq!(reply, "OK");
        written.insert(key, value);
    }
    written
}

fn missing(node: &cluster_support::Node, written: &BTreeMap<String, String>) -> usize {
    let mut connection = node.connection();
    written
        .iter()
        .filter(|(key, value)| {
            let found: Option<String> = redis::cmd("GET").arg(key).query(&mut connection).unwrap();
            found.as_ref() != Some(*value)
        })
        .count()
}

#[test]
fn a_cold_standby_takes_over_from_the_archive_and_the_old_active_saves_what_was_not_shipped() {
    let archive = tempfile::tempdir().unwrap();
    let mut cluster = cold_cluster(archive.path());
    wait_active(&cluster, 0);
    wait_standby_joined(&cluster);
    assert_eq!(info(&cluster.nodes[1], "tandem_standby_kind"), "cold");

    // Archived before the fault: these must all survive.
    let archived = write_keys(&cluster.nodes[0], "archived", 300);
    poll_until(CONVERGE_TIMEOUT, "the active ships everything to the archive", || {
        persistence_field(&cluster.nodes[0], "archive_lag_records") == "0"
    });
    let mut standby_connection = cluster.nodes[1].connection();
    let keys: u64 = redis::cmd("DBSIZE").query(&mut standby_connection).unwrap();
    assert_eq!(keys, 0, "a cold standby receives no records before it takes over");
    drop(standby_connection);

    // Under load from concurrent writers, the active dies: what it acknowledged since the
    // archive's last pass is lost.
    const WRITERS: usize = 4;
    let archived_before: u64 = persistence_field(&cluster.nodes[0], "archive_last_index").parse().unwrap();
    let writers = cluster_support::Writers::start(&cluster.nodes[0].url(), WRITERS);
    poll_until(CONVERGE_TIMEOUT, "the archive ships some of the load", || {
        let shipped: u64 = persistence_field(&cluster.nodes[0], "archive_last_index").parse().unwrap_or(0);
        writers.acknowledged_count() > 500 && shipped > archived_before + 100
    });
    cluster.nodes[0].kill9();
    let acknowledged = writers.stop();

    wait_active(&cluster, 1);
    let new_active = &cluster.nodes[1];
    assert_eq!(missing(new_active, &archived), 0, "a write archived before the fault was lost");
    let lost = missing(new_active, &acknowledged) as u64;
    assert!(lost < acknowledged.len() as u64, "the writes archived during the load survive");
    println!("acknowledged under load: {}, lost (not yet archived): {lost}", acknowledged.len());
    let reported: u64 = info(new_active, "tandem_cold_lost_records_at_least").parse().expect("the loss is reported");
    assert!(reported <= lost + WRITERS as u64, "the new active reports at least {reported} lost, {lost} are missing");
    let restored: u64 = info(new_active, "tandem_cold_restored_index").parse().unwrap();
    assert!(restored >= archived.len() as u64, "restored only to index {restored}");

    // The old active returns as a cold standby: its records the archive never had go to its
    // diverged file — the acknowledged writes the cluster lost, plus at most one write per
    // writer whose reply the kill cut off (its outcome unknown to the client).
    cluster.nodes[0].start();
    let old = &cluster.nodes[0];
    poll_until(CONVERGE_TIMEOUT, "the old active rejoins as a standby and saves its unshipped records", || {
        info(old, "role") == "slave"
            && info(old, "master_link_status") == "up"
            && info(old, "tandem_control_active") == "2"
            && info(old, "tandem_control_leader") == "2"
    });
    let diverged: u64 = info(old, "tandem_diverged_records").parse().unwrap();
    assert!(
        (lost..=lost + WRITERS as u64).contains(&diverged),
        "{diverged} records saved as diverged, {lost} acknowledged writes missing"
    );
    let diverged_files: Vec<_> = std::fs::read_dir(old.data_dir())
        .unwrap()
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("diverged-"))
        .collect();
    assert_eq!(diverged_files.len(), usize::from(diverged > 0), "one diverged file when something was lost");

    // And it can take over in turn: node 1 rebuilds from node 2's archive.
    let after = write_keys(&cluster.nodes[1], "after", 100);
    poll_until(CONVERGE_TIMEOUT, "node 2 ships everything to its archive", || {
        persistence_field(&cluster.nodes[1], "archive_lag_records") == "0"
    });
    cluster.nodes[1].kill9();
    wait_active(&cluster, 0);
    assert_eq!(missing(&cluster.nodes[0], &archived), 0);
    assert_eq!(missing(&cluster.nodes[0], &after), 0, "node 2's archived writes survive the second takeover");
    assert_eq!(role(&cluster.nodes[0]), "master");
}

#[test]
fn a_cold_standby_needs_async_acks_and_an_archive() {
    let archive = tempfile::tempdir().unwrap();
    let config_dir = tempfile::tempdir().unwrap();
    let check = |text: &str, expected: &str| {
        let path = config_dir.path().join("tandem.toml");
        std::fs::write(&path, text).unwrap();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(["server", "--config"])
            .arg(&path)
            .arg("--data-dir")
            .arg(config_dir.path().join("data"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "started with:\n{text}");
        assert!(stderr.contains(expected), "expected {expected:?} in:\n{stderr}");
    };
    let cluster = |extra: &str| {
        format!(
            "[cluster]\nnode_id = 1\ncluster_id = \"c\"\nsecret = \"0123456789abcdef0123\"\ninitial_active = 1\n\
             standby = \"cold\"\n{extra}\nmembers = [\n  {{ id = 1, client = \"127.0.0.1:1\", peer = \"127.0.0.1:2\" }},\n  \
             {{ id = 2, client = \"127.0.0.1:3\", peer = \"127.0.0.1:4\" }},\n]\n"
        )
    };
    check(&format!("{}{}", archive_section(archive.path()), cluster("")), "cluster.ack_mode");
    check(&cluster("ack_mode = \"async\""), "[archive]");
}

#[test]
fn a_cold_standby_takes_over_from_an_archive_that_ends_with_a_checkpoint() {
    let archive = tempfile::tempdir().unwrap();
    let cluster = cold_cluster(archive.path());
    wait_active(&cluster, 0);
    wait_standby_joined(&cluster);
    let written = write_keys(&cluster.nodes[0], "checkpointed", 500);
    let mut connection = cluster.nodes[0].connection();
    let _: redis::Value = redis::cmd("CHECKPOINT").query(&mut connection).unwrap();
    drop(connection);
    // The checkpoint is shipped and the records it covers leave the archive: it ends with
    // the checkpoint, not with a record.
    poll_until(CONVERGE_TIMEOUT, "the archive ends with the checkpoint", || {
        let manifest = std::fs::read_to_string(archive.path().join("node-1").join("MANIFEST")).unwrap_or_default();
        manifest.contains("\"checkpoint\"") && persistence_field(&cluster.nodes[0], "archive_lag_records") == "0"
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut cluster = cluster;
    cluster.nodes[0].kill9();
    wait_active(&cluster, 1);
    assert_eq!(missing(&cluster.nodes[1], &written), 0, "every archived write survives");
    // One rebuild, then it serves: it does not rebuild again and again.
    let stderr = cluster.nodes[1].stderr();
    assert_eq!(stderr.matches("restarting to rebuild this node's data").count(), 1, "{stderr}");
}

//! A returning old active rejoins as the standby (issue 4; DESIGN.md
//! "Promotion"): it finds the last index its log shares with the new active,
//! saves the records it had beyond it to `diverged-<epoch>.log` instead of
//! discarding them silently, drops them, and catches up. Real processes,
//! real `kill -9` and SIGSTOP.

mod cluster_support;

use cluster_support::{
    digest, info, info_field, lost_writes, poll_until, try_digest, try_info_field, wait_active, Cluster, Writers,
    CONVERGE_TIMEOUT,
};
use std::collections::BTreeMap;

/// Waits until node `standby` follows node `active` and holds exactly its records and keyspace.
fn wait_rejoined(cluster: &Cluster, active: usize, standby: usize) {
    let (active, standby) = (&cluster.nodes[active], &cluster.nodes[standby]);
    poll_until(CONVERGE_TIMEOUT, &format!("node {} rejoins node {} and converges", standby.id, active.id), || {
        if info(standby, "role") != "slave" || info(standby, "master_link_status") != "up" {
            return false;
        }
        let (Ok(mut a), Ok(mut b)) = (
            redis::Client::open(active.url()).unwrap().get_connection(),
            redis::Client::open(standby.url()).unwrap().get_connection(),
        ) else {
            return false;
        };
        info_field(&mut a, "master_repl_offset") == info_field(&mut b, "slave_repl_offset")
            && digest(&mut a) == digest(&mut b)
    });
}

#[test]
fn a_killed_active_restarts_rejoins_as_standby_and_catches_up_with_no_acknowledged_write_lost() {
    let mut cluster = Cluster::start_with_control_plane("ack_mode = \"sync\"");
    wait_active(&cluster, 0);
    cluster_support::wait_standby_joined(&cluster);
    let writers = Writers::start(&cluster.nodes[0].url(), 4);
    poll_until(CONVERGE_TIMEOUT, "writers acknowledged 300 writes", || writers.acknowledged_count() >= 300);
    cluster.nodes[0].kill9();
    let before = writers.stop();
    wait_active(&cluster, 1);
    // Writes continue on the new active while the old one comes back.
    let writers = Writers::start(&cluster.nodes[1].url(), 2);
    cluster.nodes[0].start();
    wait_rejoined(&cluster, 1, 0);
    let after = writers.stop();
    wait_rejoined(&cluster, 1, 0);
    let mut acknowledged: BTreeMap<String, String> = before;
    acknowledged.extend(after);
    for node in [1, 0] {
        let lost = lost_writes(&mut cluster.nodes[node].connection(), &acknowledged);
        assert!(lost.is_empty(), "node {}: {} of {} lost: {lost:?}", node + 1, lost.len(), acknowledged.len());
    }
    assert_eq!(info(&cluster.nodes[0], "role"), "slave");
    assert_eq!(info(&cluster.nodes[0], "tandem_in_sync"), "1");
}

#[test]
fn in_async_mode_the_old_actives_unreplicated_writes_go_to_the_diverged_file_and_are_counted() {
    let mut cluster = Cluster::start_with_control_plane("ack_mode = \"async\"\nmax_lag_records = 0");
    wait_active(&cluster, 0);
    cluster_support::wait_standby_joined(&cluster);
    let mut active = cluster.nodes[0].connection();
    for each in 0..20 {
        let _: () = redis::cmd("SET").arg(format!("shared:{each}")).arg(each).query(&mut active).unwrap();
    }
    cluster.wait_converged();
    // The standby goes down; the active acknowledges writes alone before its detector
    // notices (async mode does not wait), then dies too; the standby comes back and,
    // still in sync as far as the control plane knows, takes over without those writes.
    cluster.nodes[1].kill9();
    let unreplicated = 25;
    for each in 0..unreplicated {
        let _: () = redis::cmd("SET").arg(format!("only-on-old:{each}")).arg(each).query(&mut active).unwrap();
    }
    cluster.nodes[0].kill9();
    cluster.nodes[1].start();
    wait_active(&cluster, 1);
    let mut new_active = cluster.nodes[1].connection();
    let missing: i64 = redis::cmd("EXISTS").arg("only-on-old:0").query(&mut new_active).unwrap();
    assert_eq!(missing, 0, "the standby never received these (async mode's bounded, reported loss)");
    let _: () = redis::cmd("SET").arg("after-failover").arg("1").query(&mut new_active).unwrap();

    cluster.nodes[0].start();
    wait_rejoined(&cluster, 1, 0);
    let epoch = info(&cluster.nodes[1], "tandem_epoch");
    let diverged_file = cluster.nodes[0].data_dir().join(format!("diverged-{epoch}.log"));
    let text = std::fs::read_to_string(&diverged_file)
        .unwrap_or_else(|error| panic!("{}: {error}\n{}", diverged_file.display(), cluster.nodes[0].stderr()));
    let records = text.lines().filter(|line| line.starts_with("record ")).count();
    for each in 0..unreplicated {
        assert!(text.contains(&format!("only-on-old:{each}")), "record {each} saved aside:\n{text}");
    }
    // The `probe` writes of wait_active may add records; every unreplicated SET is one record.
    assert!(records >= unreplicated, "{records} records saved\n{text}");
    assert_eq!(info(&cluster.nodes[0], "tandem_diverged_records"), records.to_string());
    let mut old = cluster.nodes[0].connection();
    let gone: i64 = redis::cmd("EXISTS").arg("only-on-old:0").query(&mut old).unwrap();
    assert_eq!(gone, 0, "the rejoined node holds the new active's data, not its own diverged writes");
    let kept: String = redis::cmd("GET").arg("after-failover").query(&mut old).unwrap();
    assert_eq!(kept, "1");
    assert!(cluster.nodes[0].stderr().contains("saved aside"), "the rejoin is logged");
}

#[test]
fn semi_sync_records_a_silent_standby_out_of_sync_before_continuing_and_back_in_sync_after_it_caught_up() {
    let mut cluster = Cluster::start_with_control_plane("ack_mode = \"semi-sync\"\nsync_timeout_ms = 300");
    wait_active(&cluster, 0);
    cluster_support::wait_standby_joined(&cluster);
    assert_eq!(info(&cluster.nodes[0], "tandem_control_in_sync"), "1,2");
    // Frozen, the standby neither acknowledges nor looks dead at first: the timeout decides.
    cluster.nodes[1].pause();
    let mut active = cluster.nodes[0].connection();
    let _: () = redis::cmd("SET").arg("alone").arg(1).query(&mut active).unwrap();
    assert_eq!(
        info(&cluster.nodes[0], "tandem_control_in_sync"),
        "1",
        "the reply left only after the control plane recorded the standby out of sync"
    );
    for each in 0..50 {
        let _: () = redis::cmd("SET").arg(format!("alone:{each}")).arg(each).query(&mut active).unwrap();
    }
    cluster.nodes[1].resume();
    poll_until(CONVERGE_TIMEOUT, "the standby caught up and is in sync again", || {
        info(&cluster.nodes[0], "tandem_control_in_sync") == "1,2"
    });
    cluster.wait_converged();
    // In sync again: a killed active is replaced with nothing lost.
    let writers = Writers::start(&cluster.nodes[0].url(), 2);
    poll_until(CONVERGE_TIMEOUT, "writers acknowledged 100 writes", || writers.acknowledged_count() >= 100);
    cluster.nodes[0].kill9();
    let acknowledged = writers.stop();
    wait_active(&cluster, 1);
    let lost = lost_writes(&mut cluster.nodes[1].connection(), &acknowledged);
    assert!(lost.is_empty(), "{} of {} lost: {lost:?}", lost.len(), acknowledged.len());
    for each in 0..50 {
        let value: String =
            redis::cmd("GET").arg(format!("alone:{each}")).query(&mut cluster.nodes[1].connection()).unwrap();
        assert_eq!(value, each.to_string());
    }
}

/// Stops both data nodes, gives them `lines` as top-level settings, and starts node 1 alone.
fn restart_active_alone_with(cluster: &mut Cluster, lines: &str) {
    for node in &mut cluster.nodes {
        node.kill9();
        let path = node.node_config_path().to_path_buf();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{lines}\n{text}")).unwrap();
    }
    cluster.nodes[0].start();
    wait_active(cluster, 0);
}

#[test]
fn a_standby_the_log_no_longer_reaches_catches_up_from_a_snapshot_of_the_active() {
    let mut cluster = Cluster::start_with_control_plane("ack_mode = \"semi-sync\"\nsync_timeout_ms = 200");
    wait_active(&cluster, 0);
    cluster_support::wait_standby_joined(&cluster);
    let mut active = cluster.nodes[0].connection();
    let _: () = redis::cmd("SET").arg("before").arg("1").query(&mut active).unwrap();
    cluster.wait_converged();
    // Small log segments and one full checkpoint kept: the log soon starts after the
    // standby's last record.
    restart_active_alone_with(&mut cluster, "log_segment_size = \"64kb\"\ncheckpoint_retain_full = 1");
    let mut active = cluster.nodes[0].connection();
    let value = "v".repeat(100);
    for each in 0..4_000 {
        let _: () = redis::cmd("SET").arg(format!("while-away:{each}")).arg(&value).query(&mut active).unwrap();
    }
    for _ in 0..2 {
        let _: String = redis::cmd("SAVE").query(&mut active).unwrap();
    }
    let log_dir = cluster.nodes[0].data_dir().join("log");
    let first_segment = std::fs::read_dir(&log_dir).unwrap().filter_map(|entry| entry.ok()).count();
    assert!(first_segment > 0);
    let checked = tandem_log::check(&log_dir, &tandem_log::LogOptions::default()).unwrap();
    assert!(
        checked.first_index.is_some_and(|first| first.0 > 10),
        "retention removed the log the standby would need: {checked:?}"
    );

    cluster.nodes[1].start();
    poll_until(CONVERGE_TIMEOUT, "the standby installed a snapshot and caught up", || {
        // The standby restarts once to install the snapshot, closing this connection:
        // an error is a "not yet".
        let standby_view = || -> redis::RedisResult<(String, String, String)> {
            let mut standby = redis::Client::open(cluster.nodes[1].url())?.get_connection()?;
            let link = try_info_field(&mut standby, "master_link_status")?;
            Ok((link, try_digest(&mut standby)?, try_info_field(&mut standby, "slave_repl_offset")?))
        };
        let Ok((link, standby_digest, standby_offset)) = standby_view() else { return false };
        link == "up"
            && standby_digest == digest(&mut active)
            && standby_offset == info_field(&mut active, "master_repl_offset")
    });
    assert!(cluster.nodes[1].stderr().contains("installed the active's snapshot"), "{}", cluster.nodes[1].stderr());
    assert!(cluster.nodes[0].stderr().contains("sending it a snapshot"));
    poll_until(CONVERGE_TIMEOUT, "the standby is in sync again", || {
        info(&cluster.nodes[0], "tandem_control_in_sync") == "1,2"
    });
    // The standby follows the log from the snapshot on.
    let _: () = redis::cmd("SET").arg("after").arg("1").query(&mut active).unwrap();
    poll_until(CONVERGE_TIMEOUT, "the standby applies new writes", || {
        let mut standby = cluster.nodes[1].connection();
        redis::cmd("GET").arg("after").query::<Option<String>>(&mut standby).unwrap().is_some()
    });
}

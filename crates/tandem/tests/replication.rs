//! The replication plane between two real `tandem server` processes (issue 4,
//! DESIGN.md "Replication plane", invariants 1 and 6): records reach the
//! standby at the same indexes, sync mode loses no acknowledged write when
//! the active is killed, the ack modes behave as configured while the
//! standby is away, and bad peers are refused without harm.

mod cluster_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;
use cluster_support::{
    cluster_config, connect_as, digest, info_field, lost_writes, poll_until, runtime, Cluster, Writers,
    CONVERGE_TIMEOUT,
};
use tandem::repl::wire::{self, Message};

fn error_text(result: redis::RedisResult<redis::Value>) -> String {
    let error = result.expect_err("an error reply");
    format!("{} {}", error.code().unwrap_or(""), error.detail().unwrap_or(""))
}

#[test]
fn records_written_on_the_active_appear_on_the_standby_at_the_same_indexes() {
    let mut cluster = Cluster::start("ack_mode = \"sync\"");
    let mut active = cluster.active().connection();
    for each in 0..100 {
        let _: () = redis::cmd("SET").arg(format!("string:{each}")).arg(each).query(&mut active).unwrap();
        let _: i64 = redis::cmd("INCRBY").arg("counter").arg(each).query(&mut active).unwrap();
        let _: i64 = redis::cmd("HSET").arg("hash").arg(format!("field{each}")).arg(each).query(&mut active).unwrap();
        let _: i64 = redis::cmd("RPUSH").arg("list").arg(each).query(&mut active).unwrap();
        let _: i64 = redis::cmd("SADD").arg("set").arg(each % 7).query(&mut active).unwrap();
        let _: i64 =
            redis::cmd("ZADD").arg("board").arg(each % 13).arg(format!("player{each}")).query(&mut active).unwrap();
        let _: f64 =
            redis::cmd("ZINCRBY").arg("board").arg(0.5).arg(format!("player{}", each / 2)).query(&mut active).unwrap();
    }
    let _: i64 = redis::cmd("EXPIRE").arg("string:1").arg(1000).query(&mut active).unwrap();
    let _: i64 = redis::cmd("DEL").arg("string:2").query(&mut active).unwrap();
    cluster.wait_converged();
    let mut standby = cluster.standby().connection();
    let value: String = redis::cmd("GET").arg("string:99").query(&mut standby).unwrap();
    assert_eq!(value, "99");
    let counter: i64 = redis::cmd("GET").arg("counter").query(&mut standby).unwrap();
    assert_eq!(counter, (0..100).sum::<i64>());
    let ttl: i64 = redis::cmd("TTL").arg("string:1").query(&mut standby).unwrap();
    assert!(ttl > 0, "the expiry travels as an absolute deadline");
    let board = |connection: &mut redis::Connection| -> Vec<(String, f64)> {
        redis::cmd("ZRANGE").arg("board").arg(0).arg(-1).arg("WITHSCORES").query(connection).unwrap()
    };
    assert_eq!(board(&mut standby).len(), 100);
    assert_eq!(board(&mut standby), board(&mut active), "sorted sets replicate with their scores and order");
    // Same indexes: the standby's log has exactly the active's last index.
    assert_eq!(info_field(&mut standby, "slave_repl_offset"), info_field(&mut active, "master_repl_offset"));
}

#[test]
fn sync_mode_loses_no_acknowledged_write_when_the_active_is_killed() {
    let mut cluster = Cluster::start("ack_mode = \"sync\"");
    let writers = Writers::start(&cluster.active().url(), 4);
    poll_until(CONVERGE_TIMEOUT, "writers acknowledged 400 writes", || writers.acknowledged_count() >= 400);
    cluster.active().kill9();
    let acknowledged = writers.stop();
    let lost = lost_writes(&mut cluster.standby().connection(), &acknowledged);
    assert!(lost.is_empty(), "{} of {} acknowledged writes lost: {lost:?}", lost.len(), acknowledged.len());
}

#[test]
fn a_restarted_standby_catches_up_while_writes_continue() {
    let mut cluster = Cluster::start("ack_mode = \"async\"");
    let mut active = cluster.active().connection();
    for each in 0..50 {
        let _: () = redis::cmd("SET").arg(format!("before:{each}")).arg(each).query(&mut active).unwrap();
    }
    cluster.wait_converged();
    cluster.standby().kill9();
    for each in 0..200 {
        let _: () = redis::cmd("SET").arg(format!("during:{each}")).arg(each).query(&mut active).unwrap();
    }
    let lag: u64 = info_field(&mut active, "tandem_replication_lag_records").parse().unwrap();
    assert!(lag >= 200, "async mode reports the standby's lag: {lag}");
    cluster.standby().start();
    cluster.wait_converged();
    // The standby's acknowledgement follows its apply, so the active's view of the lag
    // reaches 0 shortly after the data converged.
    poll_until(CONVERGE_TIMEOUT, "the active sees no lag", || {
        info_field(&mut active, "tandem_replication_lag_records") == "0"
    });
}

#[test]
fn semi_sync_continues_alone_after_the_timeout_and_reports_not_in_sync() {
    let mut cluster = Cluster::start("ack_mode = \"semi-sync\"\nsync_timeout_ms = 200");
    let mut active = cluster.active().connection();
    let _: () = redis::cmd("SET").arg("first").arg(1).query(&mut active).unwrap();
    // A write before the standby first connected may already have timed out: wait for sync.
    cluster.wait_converged();
    poll_until(CONVERGE_TIMEOUT, "the standby is in sync", || info_field(&mut active, "tandem_in_sync") == "1");
    let events = |connection: &mut redis::Connection| -> u64 {
        info_field(connection, "tandem_standby_out_of_sync_events").parse().unwrap()
    };
    let before = events(&mut active);
    cluster.standby().kill9();
    for each in 0..5 {
        let _: () = redis::cmd("SET").arg(format!("alone:{each}")).arg(each).query(&mut active).unwrap();
    }
    assert_eq!(info_field(&mut active, "tandem_in_sync"), "0");
    assert_eq!(events(&mut active), before + 1, "one fall out of sync, then writes continue without waiting");
    assert!(cluster.active().stderr().contains("no longer in sync"));
    cluster.standby().start();
    cluster.wait_converged();
    poll_until(CONVERGE_TIMEOUT, "the standby is in sync again", || info_field(&mut active, "tandem_in_sync") == "1");
}

#[test]
fn sync_mode_blocks_writes_while_the_standby_is_down() {
    let mut cluster = Cluster::start("ack_mode = \"sync\"");
    let mut active = cluster.active().connection();
    let _: () = redis::cmd("SET").arg("before").arg(1).query(&mut active).unwrap();
    cluster.standby().kill9();
    active.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let blocked = redis::cmd("SET").arg("blocked").arg(1).query::<String>(&mut active);
    assert!(blocked.is_err(), "sync mode must not acknowledge without the standby: {blocked:?}");
    cluster.standby().start();
    // The blocked write was applied locally; once the standby persists it, replies flow again.
    let mut fresh = cluster.active().connection();
    let _: () = redis::cmd("SET").arg("after").arg(1).query(&mut fresh).unwrap();
    cluster.wait_converged();
    let mut standby = cluster.standby().connection();
    let blocked: Option<String> = redis::cmd("GET").arg("blocked").query(&mut standby).unwrap();
    assert_eq!(blocked.as_deref(), Some("1"));
}

fn wait(connection: &mut redis::Connection, replicas: i64, timeout_ms: u64) -> i64 {
    redis::cmd("WAIT").arg(replicas).arg(timeout_ms).query(connection).unwrap()
}

#[test]
fn wait_counts_the_standby_once_it_holds_the_connections_writes() {
    let mut cluster = Cluster::start("ack_mode = \"async\"");
    let mut active = cluster.active().connection();
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut active).unwrap();
    assert_eq!(wait(&mut active, 1, 10_000), 1, "the standby acknowledges the write");
    let mut standby = cluster.standby().connection();
    let refused = error_text(redis::cmd("WAIT").arg(0).arg(0).query(&mut standby));
    assert!(refused.starts_with("ERR WAIT cannot be used with replica instances"), "{refused}");
    drop(standby);
    // Async mode acknowledges without the standby: WAIT tells the client no replica holds it.
    cluster.standby().kill9();
    let _: () = redis::cmd("SET").arg("alone").arg(1).query(&mut active).unwrap();
    assert_eq!(wait(&mut active, 1, 300), 0, "no standby holds the write: 0 after the timeout");
    assert_eq!(wait(&mut active, 0, 0), 0, "numreplicas 0 answers at once");
    cluster.standby().start();
    assert_eq!(wait(&mut active, 1, 20_000), 1, "the restarted standby caught up with the write");
    let bad = error_text(redis::cmd("WAIT").arg("x").arg(0).query(&mut active));
    assert_eq!(bad, "ERR value is not an integer or out of range");
    let negative = error_text(redis::cmd("WAIT").arg(1).arg(-1).query(&mut active));
    assert_eq!(negative, "ERR timeout is negative");
}

#[test]
fn the_standby_refuses_writes_and_both_report_their_role() {
    let mut cluster = Cluster::start("");
    let mut active = cluster.active().connection();
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut active).unwrap();
    cluster.wait_converged();
    let standby_port = cluster.standby().port;
    let active_port = cluster.active().port;
    let mut standby = cluster.standby().connection();
    let refused = error_text(redis::cmd("SET").arg("k").arg("w").query(&mut standby));
    assert_eq!(refused, "READONLY You can't write against a read only replica.");
    let _: () = redis::cmd("MULTI").query(&mut standby).unwrap();
    let queued = error_text(redis::cmd("INCR").arg("n").query(&mut standby));
    assert!(queued.starts_with("READONLY"), "{queued}");
    let aborted = error_text(redis::cmd("EXEC").query(&mut standby));
    assert!(aborted.starts_with("EXECABORT"), "{aborted}");
    let value: String = redis::cmd("GET").arg("k").query(&mut standby).unwrap();
    assert_eq!(value, "v", "replica_read defaults to true");

    let role: redis::Value = redis::cmd("ROLE").query(&mut standby).unwrap();
    let expected = format!("[slave, 127.0.0.1, {active_port}, connected, ");
    assert!(flat(&role).starts_with(&expected), "{}", flat(&role));
    let role: redis::Value = redis::cmd("ROLE").query(&mut active).unwrap();
    let expected = format!("[master, 1, [[127.0.0.1, {standby_port}, 1]]]");
    assert_eq!(flat(&role), expected);

    assert_eq!(info_field(&mut standby, "role"), "slave");
    assert_eq!(info_field(&mut standby, "master_link_status"), "up");
    assert_eq!(info_field(&mut standby, "master_port"), active_port.to_string());
    assert_eq!(info_field(&mut standby, "tandem_epoch"), "1");
    assert_eq!(info_field(&mut standby, "tandem_peer_state"), "alive");
    assert_eq!(info_field(&mut active, "role"), "master");
    assert_eq!(info_field(&mut active, "connected_slaves"), "1");
    let slave = info_field(&mut active, "slave0");
    assert!(slave.starts_with(&format!("ip=127.0.0.1,port={standby_port},state=online,offset=1,")), "{slave}");
    assert_eq!(info_field(&mut active, "tandem_in_sync"), "1");
    assert_eq!(info_field(&mut active, "tandem_ack_mode"), "sync");
}

#[test]
fn replica_read_false_refuses_reads_on_the_standby() {
    let mut cluster = Cluster::start("replica_read = false");
    let mut standby = cluster.standby().connection();
    let refused = error_text(redis::cmd("GET").arg("k").query(&mut standby));
    assert!(refused.starts_with("READONLY"), "{refused}");
    let _: String = redis::cmd("PING").query(&mut standby).unwrap();
}

/// A RESP value as flat text: arrays in brackets, strings and numbers bare.
fn flat(value: &redis::Value) -> String {
    match value {
        redis::Value::Array(items) => format!("[{}]", items.iter().map(flat).collect::<Vec<_>>().join(", ")),
        redis::Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        redis::Value::SimpleString(text) => text.clone(),
        redis::Value::Int(number) => number.to_string(),
        other => format!("{other:?}"),
    }
}

#[test]
fn peers_with_a_wrong_secret_or_cluster_id_are_refused_and_logged() {
    let mut cluster = Cluster::start("");
    let addr = cluster.active().peer_addr();
    let wrong_secret =
        cluster_config(&cluster, 2, |text| text.replace(cluster_support::SECRET, "not-the-secret-at-all-123"));
    let wrong_cluster = cluster_config(&cluster, 2, |text| text.replace(cluster_support::CLUSTER_ID, "somebody-else"));
    runtime().block_on(async {
        let (outcome, ..) = connect_as(addr, &wrong_secret).await;
        assert!(outcome.unwrap_err().contains("authentication failed"));
        let (outcome, ..) = connect_as(addr, &wrong_cluster).await;
        assert!(outcome.unwrap_err().contains("wrong cluster id"));
    });
    let active = cluster.active();
    poll_until(CONVERGE_TIMEOUT, "the active logs both refusals", || {
        let log = active.stderr();
        log.contains("replication peer refused") && log.contains("wrong cluster id `somebody-else`")
    });
    let mut connection = active.connection();
    let _: () = redis::cmd("SET").arg("still").arg("serving").query(&mut connection).unwrap();
}

#[test]
fn garbage_on_the_peer_port_disconnects_without_harm() {
    let mut cluster = Cluster::start("");
    let addr = cluster.active().peer_addr();
    for garbage in [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0xff; 64],                                    // a huge length prefix
        [8u32.to_le_bytes(), 0u32.to_le_bytes()].concat(), // a checksum that does not match
    ] {
        let mut socket = TcpStream::connect(addr).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        socket.write_all(&garbage).unwrap();
        socket.write_all(&[0u8; 16]).unwrap();
        let mut sink = Vec::new();
        let _ = socket.read_to_end(&mut sink); // the node closes the connection
    }
    let active = cluster.active();
    poll_until(CONVERGE_TIMEOUT, "the active logs the refusals", || {
        active.stderr().matches("replication peer refused").count() >= 3
    });
    assert!(active.stderr().contains("above the limit"), "{}", active.stderr());
    cluster.wait_converged();
    let mut connection = cluster.active().connection();
    let _: () = redis::cmd("SET").arg("still").arg("serving").query(&mut connection).unwrap();
    cluster.wait_converged();
}

#[test]
fn a_stale_epoch_is_rejected() {
    let mut cluster = Cluster::start("");
    let addr = cluster.active().peer_addr();
    let config = cluster_config(&cluster, 2, |text| text);
    let reason = runtime().block_on(async {
        let (outcome, mut socket, mut reader) = connect_as(addr, &config).await;
        outcome.unwrap();
        let mut scratch = BytesMut::new();
        let catch_up = Message::CatchUpFrom { epoch: 1, index: 1, prev_epoch: 0 };
        wire::send(&mut socket, &catch_up, &mut scratch).await.unwrap();
        wire::send(&mut socket, &Message::Ack { epoch: 0, durable_index: 0 }, &mut scratch).await.unwrap();
        loop {
            match reader.next(&mut socket).await.unwrap() {
                Message::Refused { reason } => break reason,
                _ => continue, // heartbeats and records before the refusal
            }
        }
    });
    assert!(reason.contains("stale epoch 0"), "{reason}");
    let active = cluster.active();
    poll_until(CONVERGE_TIMEOUT, "the active logs the stale epoch", || active.stderr().contains("stale epoch 0"));
    // The real standby reconnects and the pair converges again.
    let mut connection = active.connection();
    let _: () = redis::cmd("SET").arg("after").arg(1).query(&mut connection).unwrap();
    cluster.wait_converged();
    let _ = digest(&mut connection);
}

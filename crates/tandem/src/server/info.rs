//! `INFO`, `ROLE` and `CONFIG`: what the server tells about itself.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tandem_resp::Frame;

use super::Shared;
use crate::cmd::args::{self, is};
use crate::cmd::CommandError;
use crate::repl::Role;
use crate::store::glob;

/// The Redis version tandem reports, for clients that gate features on it.
pub const REDIS_VERSION: &str = "7.2.0";

/// This node's role name as `ROLE` and `HELLO` report it.
pub fn role_name(shared: &Shared) -> String {
    shared.replication.role().redis_name().to_string()
}

/// `ROLE` in Redis's shape: `["master", offset, [[ip, port, offset]…]]` on the
/// active (and a standalone node), `["slave", host, port, state, offset]` on
/// the standby. Offsets are log indexes.
pub fn role(shared: &Shared) -> Frame {
    let replication = &shared.replication;
    let bulk = |text: String| Frame::bulk(Bytes::from(text));
    match (replication.role(), replication.cluster.as_ref()) {
        (Role::Standby, Some(cluster)) => {
            let active = cluster.peer_data_member().client.expect("validated: data members have a client address");
            let state = if replication.link_up() { "connected" } else { "connect" };
            Frame::Array(vec![
                bulk("slave".into()),
                bulk(active.ip().to_string()),
                Frame::Integer(active.port() as i64),
                bulk(state.into()),
                Frame::Integer(shared.db.last_index().0 as i64),
            ])
        }
        (_, cluster) => {
            let standbys = match cluster {
                Some(cluster) if replication.standby_connected() => {
                    let standby =
                        cluster.peer_data_member().client.expect("validated: data members have a client address");
                    vec![Frame::Array(vec![
                        bulk(standby.ip().to_string()),
                        bulk(standby.port().to_string()),
                        bulk(replication.replicated_index().0.to_string()),
                    ])]
                }
                _ => Vec::new(),
            };
            Frame::Array(vec![
                bulk("master".into()),
                Frame::Integer(shared.db.last_index().0 as i64),
                Frame::Array(standbys),
            ])
        }
    }
}

/// `DEBUG DIGEST`: a digest of the whole keyspace, equal on two nodes holding the same data.
pub fn debug(shared: &Shared, args: &[Bytes]) -> Result<Frame, CommandError> {
    if is(&args[1], "digest") && args.len() == 2 {
        let digest = shared.db.with_keyspace(|keyspace| keyspace.digest());
        return Ok(Frame::bulk(Bytes::from(format!("{digest:016x}"))));
    }
    Err(CommandError::err(format!(
        "unknown subcommand or wrong number of arguments for '{}'. Try DEBUG DIGEST.",
        crate::cmd::error::printable(&args[1], 64)
    )))
}

/// Writes one INFO section's lines.
type SectionWriter = fn(&Shared, &mut String);

const DEFAULT_SECTIONS: &[&str] =
    &["server", "clients", "memory", "persistence", "stats", "replication", "cpu", "keyspace"];

/// The text of `INFO [section …]`.
pub fn render(shared: &Shared, sections: &[Bytes]) -> String {
    let wanted: Vec<String> = sections.iter().map(|s| String::from_utf8_lossy(s).to_ascii_lowercase()).collect();
    let all = wanted.iter().any(|s| s == "all" || s == "everything");
    let include = |name: &str| {
        if wanted.is_empty() || wanted.iter().any(|s| s == "default") {
            DEFAULT_SECTIONS.contains(&name)
        } else {
            all || wanted.iter().any(|s| s == name)
        }
    };
    let mut text = String::new();
    let writers: [(&str, SectionWriter); 8] = [
        ("server", server),
        ("clients", clients),
        ("memory", memory),
        ("persistence", persistence),
        ("stats", stats),
        ("replication", replication),
        ("cpu", cpu),
        ("keyspace", keyspace),
    ];
    for (name, write) in writers {
        if include(name) {
            if !text.is_empty() {
                text.push_str("\r\n");
            }
            let mut title = name.to_string();
            title[..1].make_ascii_uppercase();
            let _ = write!(text, "# {title}\r\n");
            write(shared, &mut text);
        }
    }
    text
}

fn line(text: &mut String, key: &str, value: impl std::fmt::Display) {
    let _ = write!(text, "{key}:{value}\r\n");
}

fn server(shared: &Shared, text: &mut String) {
    line(text, "redis_version", REDIS_VERSION);
    line(text, "tandem_version", env!("CARGO_PKG_VERSION"));
    line(text, "redis_mode", "standalone");
    line(text, "os", std::env::consts::OS);
    line(text, "arch_bits", usize::BITS);
    line(text, "process_id", std::process::id());
    line(text, "tcp_port", shared.local_addr.port());
    line(text, "uptime_in_seconds", shared.started.elapsed().as_secs());
    line(text, "uptime_in_days", shared.started.elapsed().as_secs() / 86_400);
    line(text, "hz", shared.config.hz);
    line(text, "executable", std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default());
}

fn clients(shared: &Shared, text: &mut String) {
    let (channels, patterns) = shared.broker.counts();
    line(text, "connected_clients", shared.clients.len());
    line(text, "maxclients", shared.runtime.maxclients.load(Ordering::Relaxed));
    line(text, "blocked_clients", shared.db.ready_keys().blocked_clients());
    line(text, "pubsub_channels", channels);
    line(text, "pubsub_patterns", patterns);
}

fn human(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes}B"),
        1024..1_048_576 => format!("{:.2}K", bytes as f64 / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.2}M", bytes as f64 / 1_048_576.0),
        _ => format!("{:.2}G", bytes as f64 / 1_073_741_824.0),
    }
}

fn memory(shared: &Shared, text: &mut String) {
    let used = shared.used_memory_bytes.load(Ordering::Relaxed);
    let peak = shared.used_memory_peak_bytes.load(Ordering::Relaxed);
    let rss = crate::admin::memory::resident_bytes();
    let maxmemory = shared.runtime.maxmemory_bytes.load(Ordering::Relaxed);
    line(text, "used_memory", used);
    line(text, "used_memory_human", human(used));
    line(text, "used_memory_rss", rss);
    line(text, "used_memory_rss_human", human(rss));
    line(text, "used_memory_peak", peak);
    line(text, "used_memory_peak_human", human(peak));
    line(text, "maxmemory", maxmemory);
    line(text, "maxmemory_human", human(maxmemory));
    line(text, "maxmemory_policy", "noeviction");
    line(text, "mem_allocator", "jemalloc");
    line(text, "mem_allocator_huge_pages", crate::admin::memory::allocator_huge_pages());
    line(text, "mem_allocator_background_purge", u8::from(crate::admin::memory::allocator_background_purge()));
}

fn persistence(shared: &Shared, text: &mut String) {
    let progress = shared.db.progress();
    line(text, "loading", 0);
    line(text, "aof_enabled", 1);
    line(text, "appendfsync", shared.db.fsync_policy());
    line(text, "log_last_index", shared.db.last_index().0);
    line(text, "log_written_index", progress.written().0);
    line(text, "log_durable_index", progress.durable().0);
    line(text, "log_bytes_appended", shared.db.log_bytes());
    let counters = shared.db.log_counters();
    line(text, "log_segments_created", counters.segments_created);
    line(text, "log_segments_preallocated", counters.segments_preallocated);
    line(text, "changes_since_start", shared.db.changes());
    crate::checkpoint::commands::info(shared, text);
    for (key, value) in crate::archive::info_fields(shared.db.last_index().0) {
        line(text, key, value);
    }
}

fn stats(shared: &Shared, text: &mut String) {
    line(text, "total_connections_received", shared.clients.accepted.load(Ordering::Relaxed));
    line(text, "total_commands_processed", shared.metrics.commands_processed.get());
    line(text, "rejected_connections", shared.clients.rejected.load(Ordering::Relaxed));
    line(text, "expired_keys", shared.metrics.expired_keys.get());
    line(text, "evicted_keys", 0);
}

fn replication(shared: &Shared, text: &mut String) {
    let replication = &shared.replication;
    let last_index = shared.db.last_index().0;
    line(text, "role", role_name(shared));
    let Some(cluster) = replication.cluster.as_ref() else {
        line(text, "connected_slaves", 0);
        line(text, "master_repl_offset", last_index);
        return;
    };
    let peer_client = cluster.peer_data_member().client.expect("validated: data members have a client address");
    if replication.role() == Role::Standby {
        line(text, "master_host", peer_client.ip());
        line(text, "master_port", peer_client.port());
        line(text, "master_link_status", if replication.link_up() { "up" } else { "down" });
        let silence_seconds = replication.peer_silence_ms().map_or(-1, |ms| (ms / 1000) as i64);
        line(text, "master_last_io_seconds_ago", silence_seconds);
        line(text, "master_sync_in_progress", 0);
        line(text, "slave_repl_offset", last_index);
        line(text, "slave_read_only", 1);
        line(text, "replica_announced", 1);
        line(text, "connected_slaves", 0);
        line(text, "master_repl_offset", replication.active_last_index().max(last_index));
        line(text, "tandem_replica_read", u8::from(cluster.replica_read));
    } else {
        let connected = replication.standby_connected();
        line(text, "connected_slaves", u8::from(connected));
        if connected {
            let lag_seconds = replication.peer_silence_ms().unwrap_or(0) / 1000;
            line(
                text,
                "slave0",
                format!(
                    "ip={},port={},state=online,offset={},lag={lag_seconds}",
                    peer_client.ip(),
                    peer_client.port(),
                    replication.replicated_index().0
                ),
            );
        }
        line(text, "master_failover_state", "no-failover");
        line(text, "master_repl_offset", last_index);
        line(text, "tandem_ack_mode", cluster.ack_mode.as_str());
        line(text, "tandem_replicated_index", replication.replicated_index().0);
        line(text, "tandem_replication_lag_records", replication.lag_records(&shared.db));
        line(text, "tandem_replication_lag_ms", replication.lag_ms(&shared.db));
        line(text, "tandem_standby_out_of_sync_events", replication.out_of_sync_events());
    }
    line(text, "tandem_node_id", cluster.node_id);
    line(text, "tandem_epoch", shared.db.epoch());
    line(text, "tandem_in_sync", u8::from(replication.in_sync(&shared.db)));
    line(text, "tandem_peer_state", replication.peer_verdict().map_or("unknown", |verdict| verdict.as_str()));
    line(text, "tandem_peer_silence_ms", replication.peer_silence_ms().map_or(-1, |ms| ms as i64));
    line(text, "tandem_rejected_peers", replication.rejected_peers());
    let failover = replication.failover_record();
    line(text, "tandem_failovers", failover.failovers);
    line(text, "tandem_diverged_records", replication.diverged_records());
    line(text, "tandem_standby_kind", cluster.standby.as_str());
    if let Some(restored) = replication.cold_restore() {
        line(text, "tandem_cold_restored_index", restored.restored_index);
        line(text, "tandem_cold_heard_index", restored.heard_index);
        line(text, "tandem_cold_lost_records_at_least", restored.lost_records_at_least);
        line(text, "tandem_cold_restore_ms", restored.elapsed_ms);
    }
    line(text, "tandem_last_failover_detected_unix_ms", failover.detected_unix_ms);
    line(text, "tandem_last_failover_promoted_unix_ms", failover.promoted_unix_ms);
    line(text, "tandem_last_failover_address_bound_unix_ms", failover.address_bound_unix_ms);
    let address = &replication.service_address;
    line(text, "tandem_service_address", cluster.service_endpoint().map(|a| a.to_string()).unwrap_or_default());
    line(text, "tandem_service_address_bound", u8::from(address.is_bound()));
    line(text, "tandem_service_address_bound_unix_ms", address.bound_unix_ms());
    line(text, "tandem_service_address_released_unix_ms", address.released_unix_ms());
    if let Some(control) = replication.control() {
        // This member's applied control state: until it shows the current epoch, this node's
        // control log lags and the witness would not vote for it.
        let state = control.state();
        let leader = control.metrics().borrow().current_leader;
        let in_sync: Vec<String> = state.in_sync.iter().map(|id| id.to_string()).collect();
        line(text, "tandem_control_epoch", state.epoch);
        line(text, "tandem_control_active", state.active.map_or(-1, |id| id as i64));
        line(text, "tandem_control_leader", leader.map_or(-1, |id| id as i64));
        line(text, "tandem_control_in_sync", in_sync.join(","));
        line(text, "tandem_lease_valid", u8::from(replication.role() == Role::Active && !replication.lease_lost()));
    }
}

fn cpu(_shared: &Shared, text: &mut String) {
    let (user, system) = crate::admin::memory::cpu_seconds();
    line(text, "used_cpu_sys", format!("{system:.6}"));
    line(text, "used_cpu_user", format!("{user:.6}"));
}

fn keyspace(shared: &Shared, text: &mut String) {
    let (keys, expiring) = shared.db.with_keyspace(|keyspace| (keyspace.len(), keyspace.expiring_len()));
    if keys > 0 {
        line(text, "db0", format!("keys={keys},expires={expiring},avg_ttl=0"));
    }
}

/// The parameters `CONFIG GET` knows, with their current values.
fn parameters(shared: &Shared) -> Vec<(&'static str, String)> {
    let config = &shared.config;
    vec![
        ("bind", config.bind.to_string()),
        ("port", shared.local_addr.port().to_string()),
        ("dir", config.data_dir.display().to_string()),
        ("appendonly", "yes".into()),
        ("appendfsync", config.appendfsync.to_string()),
        ("save", save_points(&config.checkpoint)),
        ("databases", "1".into()),
        ("maxmemory", shared.runtime.maxmemory_bytes.load(Ordering::Relaxed).to_string()),
        ("maxmemory-policy", "noeviction".into()),
        ("maxclients", shared.runtime.maxclients.load(Ordering::Relaxed).to_string()),
        ("timeout", shared.runtime.timeout_seconds.load(Ordering::Relaxed).to_string()),
        ("proto-max-bulk-len", config.proto_max_bulk_len.to_string()),
        ("client-query-buffer-limit", config.client_query_buffer_limit.to_string()),
        ("hz", config.hz.to_string()),
        ("requirepass", config.requirepass.clone().unwrap_or_default()),
        ("cluster-enabled", "no".into()),
        ("replica-read-only", "yes".into()),
        ("replica-serve-stale-data", if shared.replication.refuses_reads() { "no" } else { "yes" }.into()),
    ]
}

/// The checkpoint schedule as Redis's `save` parameter: `<seconds> <changes>` pairs, the
/// full checkpoint's first, then the incremental's (a pair whose seconds are 0 is off).
fn save_points(checkpoint: &crate::config::CheckpointConfig) -> String {
    [
        (checkpoint.full_seconds, checkpoint.full_changes),
        (checkpoint.incremental_seconds, checkpoint.incremental_changes),
    ]
    .iter()
    .filter(|(seconds, _)| *seconds > 0)
    .map(|(seconds, changes)| format!("{seconds} {changes}"))
    .collect::<Vec<_>>()
    .join(" ")
}

/// `CONFIG GET pattern…`, `CONFIG SET name value…`, `CONFIG RESETSTAT`.
pub fn config(shared: &Shared, args: &[Bytes]) -> Result<Frame, CommandError> {
    let sub = &args[1];
    if is(sub, "get") {
        if args.len() < 3 {
            return Err(CommandError::WrongArity("config|get".into()));
        }
        let pairs = parameters(shared)
            .into_iter()
            .filter(|(name, _)| {
                args[2..].iter().any(|pattern| glob::matches(&pattern.to_ascii_lowercase(), name.as_bytes()))
            })
            .map(|(name, value)| (Frame::bulk(Bytes::from_static(name.as_bytes())), Frame::bulk(Bytes::from(value))))
            .collect();
        Ok(Frame::Map(pairs))
    } else if is(sub, "set") {
        if args.len() < 4 || !args.len().is_multiple_of(2) {
            return Err(CommandError::WrongArity("config|set".into()));
        }
        for pair in args[2..].chunks_exact(2) {
            config_set(shared, &pair[0], &pair[1])?;
        }
        Ok(Frame::ok())
    } else if is(sub, "resetstat") {
        Ok(Frame::ok())
    } else {
        Err(CommandError::err(format!(
            "unknown subcommand '{}'. Try CONFIG HELP.",
            crate::cmd::error::printable(sub, 64)
        )))
    }
}

fn config_set(shared: &Shared, name: &[u8], value: &[u8]) -> Result<(), CommandError> {
    let text = String::from_utf8_lossy(value);
    let invalid = |reason: &str| {
        CommandError::err(format!(
            "CONFIG SET failed (possibly related to argument '{}') - {reason}",
            String::from_utf8_lossy(name)
        ))
    };
    if is(name, "maxmemory") {
        let bytes = crate::config::parse_size(&text).ok_or_else(|| invalid("argument must be a memory value"))?;
        shared.runtime.maxmemory_bytes.store(bytes, Ordering::Relaxed);
    } else if is(name, "maxclients") {
        let count = args::parse_integer(value).filter(|n| *n >= 1).ok_or_else(|| invalid("argument must be >= 1"))?;
        shared.runtime.maxclients.store(count as u64, Ordering::Relaxed);
    } else if is(name, "timeout") {
        let seconds = args::parse_integer(value).filter(|n| *n >= 0).ok_or_else(|| invalid("argument must be >= 0"))?;
        shared.runtime.timeout_seconds.store(seconds as u64, Ordering::Relaxed);
    } else {
        return Err(CommandError::err(format!(
            "Unknown option or number of arguments for CONFIG SET - '{}'",
            String::from_utf8_lossy(name)
        )));
    }
    Ok(())
}

//! Wires a node together: opens the database, binds the ports, starts the
//! client plane, the admin plane and the background tasks, and carries out
//! a clean shutdown. It holds no policy of its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use tandem_control::ControlNode;
use tandem_log::NodeId;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin;
use crate::config::Config;
use crate::db::{self, Database};
use crate::failover;
use crate::limits;
use crate::repl::{self, Replication, Role};
use crate::server::{self, Runtime, Shared};

/// How a node's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stopped for good (SIGTERM, SIGINT, `SHUTDOWN`).
    Stopped,
    /// Must start again at once: a rejoin is pending (`repl::rejoin`).
    Restart,
}

/// Runs a data node until SIGTERM, SIGINT or `SHUTDOWN`, or until it must restart.
pub async fn run(config: Config) -> anyhow::Result<Outcome> {
    admin::metrics::recorder();
    // Before anything starts: a node that cannot hold its virtual IP refuses to start.
    let virtual_ip = match config.cluster.as_ref().and_then(|cluster| cluster.virtual_ip.clone()) {
        Some(virtual_ip) => Some(failover::vip::prepare(virtual_ip).await?),
        None => None,
    };
    let data_dir = config.data_dir.clone();
    let log_options = config.log_options();
    let cold_restored = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || failover::cold::prepare(&config))
            .await
            .context("preparing the cold takeover")?
            .context("cannot rebuild this node from the peer's archive")?
    };
    let rejoined = {
        let (data_dir, options) = (data_dir.clone(), log_options.clone());
        tokio::task::spawn_blocking(move || repl::rejoin::prepare(&data_dir, &options))
            .await
            .context("preparing the rejoin")?
            .context("cannot carry out the pending rejoin")?
    };
    if let Some(rejoined) = rejoined.as_ref().filter(|rejoined| rejoined.rewrote_log()) {
        failover::cold::set_aside_own_archive(&config, rejoined.epoch)
            .context("cannot move this node's superseded archive aside")?;
    }
    let node = NodeId(config.node_id);
    let opened = Instant::now();
    let database = tokio::task::spawn_blocking(move || Database::open(&data_dir, log_options, node))
        .await
        .context("opening the database")?
        .with_context(|| format!("cannot open the data directory {}", config.data_dir.display()))?;
    tracing::info!(elapsed_ms = opened.elapsed().as_millis() as u64, "database open");

    let listener = TcpListener::bind((config.bind, config.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", config.bind, config.port))?;
    let local_addr = listener.local_addr()?;
    let admin_listener = match config.admin_port {
        Some(port) => Some(
            TcpListener::bind((config.bind, port))
                .await
                .with_context(|| format!("cannot listen on admin port {}:{port}", config.bind))?,
        ),
        None => None,
    };
    let replication = match &config.cluster {
        None => Replication::standalone(),
        Some(cluster) if cluster.has_control_plane() => {
            // A standby until the control plane names this node active (failover::control).
            let replication = Replication::new(cluster.clone(), Role::Standby);
            replication.set_role(&database, Role::Standby, database.epoch());
            replication
        }
        Some(cluster) => {
            // Static roles until the control plane elects the active (it will call `set_role`).
            let role = if cluster.initial_active == cluster.node_id { Role::Active } else { Role::Standby };
            let replication = Replication::new(cluster.clone(), role);
            replication.set_role(&database, role, database.epoch().max(1));
            replication
        }
    };
    let peer_listener = match &config.cluster {
        Some(cluster) => {
            let addr = cluster.this_member().peer;
            Some(TcpListener::bind(addr).await.with_context(|| format!("cannot listen on peer address {addr}"))?)
        }
        None => None,
    };
    let sentinel_listener = match config.cluster.as_ref().and_then(|cluster| cluster.this_member().sentinel) {
        Some(addr) => {
            Some(TcpListener::bind(addr).await.with_context(|| format!("cannot listen on sentinel address {addr}"))?)
        }
        None => None,
    };
    let control = match &config.cluster {
        Some(cluster) if cluster.has_control_plane() => {
            let control_config = failover::control::control_config(cluster, &config.data_dir);
            Some(start_control_plane(control_config).await?)
        }
        _ => None,
    };
    let (shutdown, _) = watch::channel(false);
    let checkpoints = Arc::new(crate::checkpoint::Checkpointer::new(
        config.checkpoint_settings(),
        &database.restored().loaded,
        database.restored().base_generation,
        db::unix_ms(),
    ));
    let shared = Arc::new(Shared {
        runtime: Runtime {
            maxmemory_bytes: AtomicU64::new(config.maxmemory_bytes),
            maxclients: AtomicU64::new(config.maxclients as u64),
            timeout_seconds: AtomicU64::new(config.timeout_seconds),
        },
        config,
        db: database,
        replication,
        checkpoints,
        clients: Default::default(),
        broker: Default::default(),
        metrics: Default::default(),
        used_memory_bytes: AtomicU64::new(admin::memory::allocated_bytes()),
        used_memory_peak_bytes: AtomicU64::new(0),
        started: Instant::now(),
        started_wall: SystemTime::now(),
        local_addr,
        shutdown,
        restart: Default::default(),
    });
    if let Some(rejoined) = &rejoined {
        shared.replication.record_diverged(rejoined.diverged_records);
    }
    if let Some(restored) = cold_restored {
        shared.replication.record_cold_restore(restored);
    }
    let admin_addr = admin_listener.as_ref().and_then(|listener| listener.local_addr().ok());
    tracing::info!(clients = %local_addr, admin = ?admin_addr, "tandem ready");

    let accept = tokio::spawn(server::accept_loop(listener, shared.clone()));
    let admin = admin_listener.map(|listener| tokio::spawn(admin::http::serve(listener, shared.clone())));
    let mut background = vec![
        tokio::spawn(expire_keys(shared.clone())),
        tokio::spawn(watch_memory(shared.clone())),
        tokio::spawn(stop_on_signal(shared.clone())),
        tokio::spawn(take_checkpoints(shared.clone())),
        tokio::spawn(merge_checkpoint_layers(shared.clone())),
        tokio::spawn(flush_log(shared.clone())),
        tokio::spawn(relay_acknowledged(shared.clone())),
        tokio::spawn(relay_replicated(shared.clone())),
    ];
    if let Some(mut archive) = shared.config.archive.clone() {
        if let Some(cluster) = &shared.config.cluster {
            // Each data node ships to its own folder of the shared archive; a cold standby
            // takes over from its peer's (`failover::cold`).
            archive.dir = failover::cold::archive_of(&archive.dir, cluster.node_id);
        }
        background.push(tokio::spawn(crate::archive::shipper::run(shared.clone(), archive)));
    }
    let mut replication_plane = None;
    if let Some(listener) = peer_listener {
        tracing::info!(peer = ?listener.local_addr().ok(), role = ?shared.replication.role(), "replication plane up");
        replication_plane = Some(start_replication_plane(listener, shared.clone())?);
    }
    // Awaited at shutdown, not aborted: it releases the address (deletes the virtual IP).
    let mut address_holder = None;
    if let Some(cluster) = &shared.config.cluster {
        background.push(tokio::spawn(failover::roles::react(shared.clone())));
        if let Some(address) = cluster.service_address {
            let loopback = failover::address::Loopback(address);
            address_holder = Some(tokio::spawn(failover::address::hold(shared.clone(), loopback)));
        } else if let Some(virtual_ip) = virtual_ip {
            address_holder = Some(tokio::spawn(failover::address::hold(shared.clone(), virtual_ip)));
        }
    }
    if let Some(control) = control {
        shared.replication.attach_control(control.clone());
        background.push(tokio::spawn(failover::control::run(shared.clone(), control)));
        background.push(tokio::spawn(failover::switchover::run_preempt(shared.clone())));
    }
    if let Some(listener) = sentinel_listener {
        // After the control plane is attached: the endpoint reports its state.
        tracing::info!(sentinel = ?listener.local_addr().ok(), "sentinel endpoint up");
        background.push(tokio::spawn(crate::sentinel::serve(listener, shared.clone())));
    }

    let mut stopped = shared.shutdown.subscribe();
    let _ = stopped.wait_for(|stop| *stop).await;
    tracing::info!("shutting down");
    if let Some(holder) = address_holder {
        let _ = tokio::time::timeout(Duration::from_secs(5), holder).await;
    }
    let _ = accept.await;
    shared.clients.kill_all();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !shared.clients.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for task in background {
        task.abort();
        let _ = task.await;
    }
    if let Some(thread) = replication_plane {
        // Its tasks end at the shutdown signal; the thread drops its share of the state.
        let joined = tokio::task::spawn_blocking(move || thread.join());
        if tokio::time::timeout(Duration::from_secs(5), joined).await.is_err() {
            tracing::warn!("the replication plane did not stop within 5 s");
        }
    }
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    let outcome = if shared.restart.load(Ordering::Acquire) { Outcome::Restart } else { Outcome::Stopped };
    close_database(shared).await?;
    Ok(outcome)
}

/// Starts the control-plane member on a thread and runtime of its own, so that its
/// heartbeats — and with them the active's lease — keep their rhythm however busy the
/// client plane is (a saturated event loop must not fence a healthy active).
async fn start_control_plane(config: tandem_control::ControlConfig) -> anyhow::Result<Arc<ControlNode>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("creating the control plane's runtime")?;
    let (started, starting) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("tandem-control".into())
        .spawn(move || {
            runtime.block_on(async move {
                let control = ControlNode::start(config).await.map(Arc::new);
                let running = control.as_ref().ok().cloned();
                if started.send(control).is_err() {
                    return;
                }
                // Runs the member's tasks until the process ends.
                if running.is_some() {
                    std::future::pending::<()>().await;
                }
            })
        })
        .context("starting the control plane's thread")?;
    starting.await.context("the control plane's thread stopped")?.context("starting the control-plane member")
}

/// Runs the replication plane — the active's listener for its standby, the standby's
/// follower — on a thread and runtime of its own, beside the client event loop.
///
/// Why: the standby persists what it received (fsync) on this thread and acknowledges it
/// right after, with no hand-off to the log's thread and back; and the active ships records
/// and takes acknowledgements without waiting for a turn of a busy client event loop. Sync
/// replication is latency-bound, and each hand-off between threads costs a wake-up.
fn start_replication_plane(listener: TcpListener, shared: Arc<Shared>) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let listener = listener.into_std().context("moving the peer listener to the replication plane")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("creating the replication plane's runtime")?;
    std::thread::Builder::new()
        .name("tandem-repl".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(error) => {
                        tracing::error!(%error, "cannot listen for the standby; the replication plane is down");
                        shared.request_shutdown();
                        return;
                    }
                };
                let sender = tokio::spawn(repl::sender::listen(listener, shared.clone()));
                let follower = tokio::spawn(repl::receiver::follow(shared));
                let _ = tokio::join!(sender, follower);
            });
            // Dropping the runtime here drops any session still running, and its state.
        })
        .context("starting the replication plane's thread")
}

/// Takes the database back from the connections that shared it and closes
/// the log: everything appended is written and fsynced.
async fn close_database(mut shared: Arc<Shared>) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Arc::try_unwrap(shared) {
            Ok(owned) => {
                let last_index = owned.db.last_index().0;
                owned.db.close().context("closing the log at shutdown")?;
                tracing::info!(last_index, "log closed; bye");
                return Ok(());
            }
            Err(still_shared) if Instant::now() < deadline => {
                shared = still_shared;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(still_shared) => {
                // A connection task did not finish; the log's Drop still writes and fsyncs.
                tracing::warn!("connections still open after 5 s; closing the log on exit");
                drop(still_shared);
                return Ok(());
            }
        }
    }
}

async fn flush_log(shared: Arc<Shared>) {
    shared.db.run_flusher().await;
}

async fn relay_acknowledged(shared: Arc<Shared>) {
    shared.db.relay_acknowledged().await;
}

async fn relay_replicated(shared: Arc<Shared>) {
    shared.replication.relay_replicated().await;
}

async fn stop_on_signal(shared: Arc<Shared>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut terminate), Ok(mut interrupt)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot install signal handlers; stop the server with SHUTDOWN");
        return;
    };
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = interrupt.recv() => tracing::info!("SIGINT received"),
    }
    shared.request_shutdown();
}

/// Active expiry: a bounded pass `hz` times a second, repeated at once
/// while a pass finds many expired keys (as Redis's fast cycle does).
async fn expire_keys(shared: Arc<Shared>) {
    let mut interval = tokio::time::interval(db::expiry_interval(shared.config.hz));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if shared.replication.lease_lost() {
            // A fenced active appends nothing: its deletions could be records no successor has.
            continue;
        }
        for _ in 0..16 {
            let deleted = shared.db.expire_pass(limits::EXPIRY_KEYS_PER_PASS_MAX);
            shared.metrics.expired_keys.increment(deleted as u64);
            if deleted < limits::EXPIRY_KEYS_PER_PASS_MAX / 4 {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
}

/// Ten times a second, merges the buckets a checkpoint held (and a write
/// layered over) back into plain ones once the checkpoint has written them,
/// a few under the lock at a time so that clients wait for no more than a
/// few microseconds. Bounded: each pass visits each layer at most once.
async fn merge_checkpoint_layers(shared: Arc<Shared>) {
    let mut interval = tokio::time::interval(Duration::from_millis(100));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let mut left = shared.db.with_keyspace(|keyspace| keyspace.layer_counts().1);
        while left > 0 {
            let batch = left.min(limits::LAYERS_MERGED_PER_LOCK);
            shared.db.merge_released_layers(batch);
            left -= batch;
            tokio::task::yield_now().await;
        }
    }
}

/// Runs the checkpoint policy twice a second; the checkpointer writes in
/// its own thread, so this task never waits for the disk.
async fn take_checkpoints(shared: Arc<Shared>) {
    let mut interval = tokio::time::interval(Duration::from_millis(500));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        shared.checkpoints.tick(&shared.db, db::unix_ms());
    }
}

/// Refreshes `used_memory` ten times a second for `maxmemory` and INFO.
async fn watch_memory(shared: Arc<Shared>) {
    let mut interval = tokio::time::interval(Duration::from_millis(100));
    loop {
        interval.tick().await;
        let used = admin::memory::allocated_bytes();
        shared.used_memory_bytes.store(used, Ordering::Relaxed);
        shared.used_memory_peak_bytes.fetch_max(used, Ordering::Relaxed);
    }
}

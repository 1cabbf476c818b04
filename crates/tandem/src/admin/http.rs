//! The admin HTTP endpoint: `/metrics` (Prometheus text) and `/health`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::server::Shared;

/// Serves the admin endpoints until shutdown.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(|| async { "ok\n" }))
        .with_state(shared.clone());
    let mut shutdown = shared.shutdown.subscribe();
    let stop = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    if let Err(error) = axum::serve(listener, router).with_graceful_shutdown(stop).await {
        tracing::error!(%error, "admin HTTP server failed");
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> String {
    let (keys, expiring) = shared.db.with_keyspace(|keyspace| (keyspace.len(), keyspace.expiring_len()));
    metrics::counter!("tandem_commands_processed_total").absolute(shared.metrics.commands_processed.get());
    metrics::counter!("tandem_expired_keys_total").absolute(shared.metrics.expired_keys.get());
    metrics::gauge!("tandem_connected_clients").set(shared.metrics.connected_clients.get() as f64);
    metrics::gauge!("tandem_keys").set(keys as f64);
    metrics::gauge!("tandem_keys_with_expiry").set(expiring as f64);
    metrics::counter!("tandem_log_appended_bytes_total").absolute(shared.db.log_bytes());
    metrics::gauge!("tandem_log_last_index").set(shared.db.last_index().0 as f64);
    metrics::gauge!("tandem_log_durable_index").set(shared.db.progress().durable().0 as f64);
    metrics::gauge!("tandem_used_memory_bytes").set(shared.used_memory_bytes.load(Ordering::Relaxed) as f64);
    metrics::gauge!("tandem_resident_memory_bytes").set(crate::admin::memory::resident_bytes() as f64);
    replication_metrics(&shared);
    crate::admin::metrics::recorder().render()
}

/// Role, epoch, lag, in-sync state and the peer's liveness.
fn replication_metrics(shared: &Shared) {
    let replication = &shared.replication;
    let role = match replication.role() {
        crate::repl::Role::Standalone => 0.0,
        crate::repl::Role::Active => 1.0,
        crate::repl::Role::Standby => 2.0,
    };
    metrics::gauge!("tandem_role").set(role);
    metrics::gauge!("tandem_epoch").set(shared.db.epoch() as f64);
    if replication.cluster.is_none() {
        return;
    }
    metrics::gauge!("tandem_replication_lag_records").set(replication.lag_records(&shared.db) as f64);
    metrics::gauge!("tandem_replication_lag_ms").set(replication.lag_ms(&shared.db) as f64);
    metrics::gauge!("tandem_replication_in_sync").set(f64::from(u8::from(replication.in_sync(&shared.db))));
    metrics::gauge!("tandem_replication_replicated_index").set(replication.replicated_index().0 as f64);
    metrics::counter!("tandem_replication_out_of_sync_total").absolute(replication.out_of_sync_events());
    metrics::counter!("tandem_replication_rejected_peers_total").absolute(replication.rejected_peers());
    let peer = match replication.peer_verdict() {
        None => -1.0,
        Some(verdict) => verdict as u8 as f64,
    };
    metrics::gauge!("tandem_replication_peer_state").set(peer);
}

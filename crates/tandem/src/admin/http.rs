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
    crate::admin::metrics::recorder().render()
}

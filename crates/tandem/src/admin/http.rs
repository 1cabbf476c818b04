//! The admin HTTP endpoint: `/metrics` (Prometheus text), `/health`, `/status` (JSON),
//! and the operations `POST /switchover` and `POST /promote` (`tandem switchover|promote`).
//! The witness serves `/health` and `/status` only ([`WitnessAdmin`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tandem_control::ControlNode;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::status;
use crate::failover::switchover::{self, PromoteRequest, SwitchoverRequest};
use crate::server::Shared;

/// Serves the admin endpoints until shutdown.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(|| async { "ok\n" }))
        .route("/status", get(node_status))
        .route("/switchover", post(run_switchover))
        .route("/promote", post(run_promote))
        .with_state(shared.clone());
    let mut shutdown = shared.shutdown.subscribe();
    let stop = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    if let Err(error) = axum::serve(listener, router).with_graceful_shutdown(stop).await {
        tracing::error!(%error, "admin HTTP server failed");
    }
}

/// A JSON response with `status`.
fn json(status: u16, value: &impl Serialize) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match serde_json::to_string(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(error) => {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the reply: {error}\n")).into_response()
        }
    }
}

/// The request body as `T`; an empty body is `T::default()`.
fn request_body<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, Box<Response>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|error| {
        let reply = serde_json::json!({ "ok": false, "epoch": 0, "message": format!("bad request body: {error}") });
        Box::new(json(400, &reply))
    })
}

async fn node_status(State(shared): State<Arc<Shared>>) -> Response {
    json(200, &status::data_node(&shared))
}

async fn run_switchover(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: SwitchoverRequest = match request_body(&body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let (status, reply) = switchover::switchover(&shared, request).await;
    json(status, &reply)
}

async fn run_promote(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: PromoteRequest = match request_body(&body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let (status, reply) = switchover::promote(&shared, request).await;
    json(status, &reply)
}

/// The witness's admin endpoint (`/health`, `/status`), when its member has an `admin` address.
pub struct WitnessAdmin {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl WitnessAdmin {
    /// Binds `address` and serves the witness's status from `control`.
    pub async fn start(
        address: std::net::SocketAddr,
        node_id: u32,
        control: Arc<ControlNode>,
    ) -> std::io::Result<WitnessAdmin> {
        let listener = TcpListener::bind(address).await?;
        let (stop, mut stopped) = watch::channel(false);
        let router = Router::new()
            .route("/health", get(|| async { "ok\n" }))
            .route(
                "/status",
                get(move |State(control): State<Arc<ControlNode>>| async move {
                    json(200, &status::witness(node_id, &control))
                }),
            )
            .with_state(control);
        let task = tokio::spawn(async move {
            let stop = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            if let Err(error) = axum::serve(listener, router).with_graceful_shutdown(stop).await {
                tracing::error!(%error, "witness admin HTTP server failed");
            }
        });
        tracing::info!(%address, "witness admin endpoint up");
        Ok(WitnessAdmin { stop, task })
    }

    /// Stops serving and waits for the server task (it releases its handle on the member).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> String {
    let (keys, expiring, (layers_created, layers_pending)) =
        shared.db.with_keyspace(|keyspace| (keyspace.len(), keyspace.expiring_len(), keyspace.layer_counts()));
    metrics::counter!("tandem_commands_processed_total").absolute(shared.metrics.commands_processed.get());
    metrics::counter!("tandem_expired_keys_total").absolute(shared.metrics.expired_keys.get());
    metrics::gauge!("tandem_connected_clients").set(shared.metrics.connected_clients.get() as f64);
    metrics::gauge!("tandem_keys").set(keys as f64);
    metrics::gauge!("tandem_keys_with_expiry").set(expiring as f64);
    metrics::counter!("tandem_checkpoint_layers_created_total").absolute(layers_created);
    metrics::gauge!("tandem_checkpoint_layers_pending").set(layers_pending as f64);
    metrics::counter!("tandem_log_appended_bytes_total").absolute(shared.db.log_bytes());
    let log = shared.db.log_counters();
    metrics::counter!("tandem_log_segments_created_total").absolute(log.segments_created);
    metrics::counter!("tandem_log_segments_preallocated_total").absolute(log.segments_preallocated);
    metrics::gauge!("tandem_log_last_index").set(shared.db.last_index().0 as f64);
    metrics::gauge!("tandem_log_durable_index").set(shared.db.progress().durable().0 as f64);
    metrics::gauge!("tandem_used_memory_bytes").set(shared.used_memory_bytes.load(Ordering::Relaxed) as f64);
    metrics::gauge!("tandem_resident_memory_bytes").set(crate::admin::memory::resident_bytes() as f64);
    replication_metrics(&shared);
    crate::archive::publish_metrics(shared.db.last_index().0);
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
    let failover = replication.failover_record();
    metrics::counter!("tandem_failovers_total").absolute(failover.failovers);
    let duration_ms = failover.promoted_unix_ms.saturating_sub(failover.detected_unix_ms);
    metrics::gauge!("tandem_last_failover_detected_to_promoted_ms").set(duration_ms as f64);
    metrics::gauge!("tandem_diverged_records").set(replication.diverged_records() as f64);
    if let Some(restored) = replication.cold_restore() {
        metrics::gauge!("tandem_cold_lost_records_at_least").set(restored.lost_records_at_least as f64);
        metrics::gauge!("tandem_cold_restore_seconds").set(restored.elapsed_ms as f64 / 1000.0);
    }
    let bound = replication.service_address.is_bound();
    metrics::gauge!("tandem_service_address_bound").set(f64::from(u8::from(bound)));
}

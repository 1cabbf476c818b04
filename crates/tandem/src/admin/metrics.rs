//! Prometheus metrics, through the `metrics` facade.
//!
//! Hot-path counters are plain atomics (read back by `INFO` too); at scrape
//! time they are published as absolute values, so a command costs one
//! relaxed atomic add and no registry lookup.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// A gauge kept as an atomic integer.
#[derive(Default)]
pub struct Level(AtomicU64);

impl Level {
    /// Adds to the level.
    pub fn increment(&self, by: u64) {
        self.0.fetch_add(by, Ordering::Relaxed);
    }
    /// Subtracts from the level.
    pub fn decrement(&self, by: u64) {
        self.0.fetch_sub(by, Ordering::Relaxed);
    }
    /// The current level.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A monotonically increasing count.
#[derive(Default)]
pub struct Count(AtomicU64);

impl Count {
    /// Adds to the count.
    pub fn increment(&self, by: u64) {
        self.0.fetch_add(by, Ordering::Relaxed);
    }
    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The server's metrics.
#[derive(Default)]
pub struct Metrics {
    /// Commands processed since start.
    pub commands_processed: Count,
    /// Clients connected now.
    pub connected_clients: Level,
    /// Keys deleted by expiry since start.
    pub expired_keys: Count,
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder once per process and returns its handle.
pub fn recorder() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0])
            .expect("bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Fails only if a recorder is already installed (tests embedding two servers).
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Records one log fsync's duration.
pub fn record_fsync(duration: Duration) {
    metrics::histogram!("tandem_log_fsync_seconds").record(duration.as_secs_f64());
}

/// Records how long a checkpoint's cut held the keyspace lock (the stall clients can see).
pub fn record_checkpoint_stall(stall: Duration) {
    metrics::histogram!("tandem_checkpoint_stall_seconds").record(stall.as_secs_f64());
}

/// Records one finished checkpoint attempt of level `kind`.
pub fn record_checkpoint(kind: &'static str, duration: Duration, bytes: u64, succeeded: bool) {
    if succeeded {
        metrics::histogram!("tandem_checkpoint_duration_seconds", "kind" => kind).record(duration.as_secs_f64());
        metrics::counter!("tandem_checkpoint_bytes_total", "kind" => kind).increment(bytes);
        metrics::gauge!("tandem_checkpoint_last_bytes").set(bytes as f64);
        metrics::gauge!("tandem_checkpoint_last_success_unix_seconds").set(crate::db::unix_ms() as f64 / 1000.0);
    } else {
        metrics::counter!("tandem_checkpoint_failures_total", "kind" => kind).increment(1);
    }
}

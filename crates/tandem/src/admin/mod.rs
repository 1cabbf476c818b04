//! The admin plane: Prometheus metrics over HTTP, memory and CPU readings.

pub mod http;
pub mod memory;
pub mod metrics;

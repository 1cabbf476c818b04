//! The admin endpoint: `/metrics` serves Prometheus text with the documented
//! series, and `/health` answers.

mod common;
mod prometheus;

use prometheus::metric;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{free_port, TestServer};

fn http_get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the admin port");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read the HTTP response");
    response
}

#[test]
fn metrics_report_commands_keys_clients_log_and_fsync_latency() {
    let admin_port = free_port();
    let server = TestServer::with_args(&["--admin-port", &admin_port.to_string()]);
    let mut connection = server.connection();
    for index in 0..3 {
        let _: () = redis::cmd("SET").arg(format!("key{index}")).arg("value").query(&mut connection).unwrap();
    }
    let response = http_get(admin_port, "/metrics");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(metric(&response, "tandem_commands_processed_total") >= 3.0);
    assert_eq!(metric(&response, "tandem_keys"), 3.0);
    assert!(metric(&response, "tandem_connected_clients") >= 1.0);
    assert!(metric(&response, "tandem_log_appended_bytes_total") > 0.0);
    // The first write gave the segment preallocated zeros (the default `log_preallocate`).
    assert_eq!(metric(&response, "tandem_log_segments_preallocated_total"), 1.0, "{response}");
    assert_eq!(metric(&response, "tandem_log_segments_created_total"), 1.0, "{response}");
    let info: String = redis::cmd("INFO").arg("persistence").query(&mut connection).unwrap();
    assert!(info.contains("log_segments_preallocated:1\r\n"), "{info}");
    assert_eq!(metric(&response, "tandem_log_durable_index"), metric(&response, "tandem_log_last_index"));
    // appendfsync always: every acknowledged SET was fsynced, and each fsync was timed.
    assert!(metric(&response, "tandem_log_fsync_seconds_count") >= 1.0, "{response}");
    assert!(metric(&response, "tandem_used_memory_bytes") > 0.0);
    // No checkpoint held a bucket while it was written.
    assert_eq!(metric(&response, "tandem_checkpoint_layers_created_total"), 0.0, "{response}");
    assert_eq!(metric(&response, "tandem_checkpoint_layers_pending"), 0.0, "{response}");

    let health = http_get(admin_port, "/health");
    assert!(health.starts_with("HTTP/1.1 200") && health.ends_with("ok\n"), "{health}");
}

//! `tandem demo` end to end: one round of load, SIGKILL and restart must
//! report acknowledged writes and lose none of them.

mod common;

use common::tandem_command;

#[test]
fn demo_round_reports_acknowledged_writes_and_loses_none() {
    let output = tandem_command().args(["demo", "--rounds", "1", "--load-ms", "500", "--json"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "demo exit; stdout:\n{stdout}\nstderr:\n{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("demo --json is not JSON ({error}):\n{stdout}"));
    let acknowledged = summary["acknowledged_writes"].as_u64().expect("acknowledged_writes is a number");
    assert!(acknowledged > 0, "{summary}");
    assert_eq!(summary["lost_acknowledged_writes"].as_u64(), Some(0), "{summary}");
    assert_eq!(summary["appendfsync"], "always", "{summary}");
    let rounds = summary["rounds"].as_array().expect("rounds is an array");
    assert_eq!(rounds.len(), 1, "{summary}");
    assert_eq!(rounds[0]["acknowledged_writes"].as_u64(), Some(acknowledged), "{summary}");
    assert_eq!(summary["failover_ms"].as_array().map(Vec::len), Some(1), "{summary}");
}

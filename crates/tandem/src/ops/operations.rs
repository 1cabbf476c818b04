//! `tandem switchover` and `tandem promote`: find the right member, `POST` the operation
//! to its admin address, print its answer. The node does the work and the checks
//! (`failover::switchover`); the exit code says whether it was done.

use std::process::ExitCode;
use std::time::Duration;

use crate::admin::client;
use crate::admin::status::OperationReply;
use crate::config::{ClusterConfig, Member, MemberRole};

/// Extra time the CLI gives a node beyond `switchover_timeout_ms` to answer.
const ANSWER_MARGIN_MS: u64 = 10_000;

/// Runs `tandem switchover [--to NODE]`: asks the active (found through `/status`), or any
/// data node that answers (a standby forwards to the active).
pub fn switchover(cluster: &ClusterConfig, to: Option<u32>) -> ExitCode {
    if let Some(to) = to {
        if cluster.member(to).is_none_or(|member| member.role != MemberRole::Data) {
            eprintln!("tandem: node {to} is not a data member of this cluster");
            return ExitCode::from(2);
        }
    }
    let reports = super::status::query_all(cluster);
    let active = reports
        .iter()
        .filter_map(|report| report.status.as_ref())
        .filter(|status| status.role == "active")
        .max_by_key(|status| status.epoch)
        .map(|status| status.node_id);
    let reachable_data =
        reports.iter().find(|report| report.kind == "data" && report.status.is_some()).map(|report| report.node_id);
    let Some(target) = active.or(reachable_data).and_then(|id| cluster.member(id)) else {
        eprintln!("tandem: no data node answered on its admin address; cannot run a switchover");
        for report in &reports {
            if let Some(error) = &report.error {
                eprintln!("  node {}: {error}", report.node_id);
            }
        }
        return ExitCode::FAILURE;
    };
    let body = serde_json::json!({ "to": to }).to_string();
    let wait = Duration::from_millis(cluster.switchover_timeout_ms + ANSWER_MARGIN_MS);
    post(target, "/switchover", &body, wait)
}

/// Runs `tandem promote NODE [--force --accept-data-loss]` on node `node`.
pub fn promote(cluster: &ClusterConfig, node: u32, force: bool, accept_data_loss: bool) -> ExitCode {
    let Some(member) = cluster.member(node).filter(|member| member.role == MemberRole::Data) else {
        eprintln!("tandem: node {node} is not a data member of this cluster (the witness is never promoted)");
        return ExitCode::from(2);
    };
    let body = serde_json::json!({ "force": force, "accept_data_loss": accept_data_loss }).to_string();
    let wait = Duration::from_millis(cluster.switchover_timeout_ms + ANSWER_MARGIN_MS);
    post(member, "/promote", &body, wait)
}

/// Posts `body` to `member`'s admin `path` and prints the answer; success iff `ok`.
fn post(member: &Member, path: &str, body: &str, wait: Duration) -> ExitCode {
    let Some(address) = member.admin else {
        eprintln!("tandem: node {} has no admin address in the configuration", member.id);
        return ExitCode::FAILURE;
    };
    let response = match client::request(address, "POST", path, Some(body), wait) {
        Ok(response) => response,
        Err(error) => {
            eprintln!("tandem: node {} unreachable: {error}", member.id);
            return ExitCode::FAILURE;
        }
    };
    match serde_json::from_str::<OperationReply>(&response.body) {
        Ok(reply) if reply.ok => {
            println!("{}", reply.message);
            if let Some(pause_ms) = reply.write_pause_ms {
                println!("write pause: {pause_ms} ms");
            }
            ExitCode::SUCCESS
        }
        Ok(reply) => {
            eprintln!("tandem: {} (HTTP {})", reply.message, response.status);
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("tandem: node {} answered HTTP {}: {}", member.id, response.status, response.body.trim());
            ExitCode::FAILURE
        }
    }
}

//! `tandem status`: asks every member's admin address for `/status` and prints one line
//! per member (or `--json`). An unreachable member is shown as such, never skipped.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

use crate::admin::client;
use crate::admin::status::{age_ms, NodeStatus};
use crate::config::{ClusterConfig, Member};
use crate::limits;

/// One member's row: its status, or why it could not be had.
#[derive(Debug, Clone, Serialize)]
pub struct MemberReport {
    /// The member id.
    pub node_id: u32,
    /// `data` or `witness`.
    pub kind: &'static str,
    /// Its admin address, if configured.
    pub admin: Option<SocketAddr>,
    /// Its status, when it answered.
    pub status: Option<NodeStatus>,
    /// Why it did not answer (`unreachable: …`, `no admin address`).
    pub error: Option<String>,
}

/// Asks one member for its status.
pub fn query(member: &Member) -> MemberReport {
    let kind = match member.role {
        crate::config::MemberRole::Data => "data",
        crate::config::MemberRole::Witness => "witness",
    };
    let mut report = MemberReport { node_id: member.id, kind, admin: member.admin, status: None, error: None };
    let Some(address) = member.admin else {
        report.error = Some("no admin address in the configuration".into());
        return report;
    };
    let timeout = Duration::from_millis(limits::ADMIN_HTTP_TIMEOUT_MS);
    match client::request(address, "GET", "/status", None, timeout) {
        Ok(response) if response.status == 200 => match serde_json::from_str::<NodeStatus>(&response.body) {
            Ok(status) => report.status = Some(status),
            Err(error) => report.error = Some(format!("bad /status reply: {error}")),
        },
        Ok(response) => report.error = Some(format!("/status answered {}", response.status)),
        Err(error) => report.error = Some(format!("unreachable: {error}")),
    }
    report
}

/// Asks every member, data nodes first.
pub fn query_all(cluster: &ClusterConfig) -> Vec<MemberReport> {
    super::members_in_order(cluster).into_iter().map(query).collect()
}

/// Runs `tandem status`.
pub fn run(cluster: &ClusterConfig, as_json: bool) -> ExitCode {
    let reports = query_all(cluster);
    if as_json {
        match serde_json::to_string_pretty(&reports) {
            Ok(text) => println!("{text}"),
            Err(error) => {
                eprintln!("tandem: cannot encode the status: {error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", table(&reports));
    }
    if reports.iter().any(|report| report.status.is_some()) {
        ExitCode::SUCCESS
    } else {
        eprintln!("tandem: no member answered");
        ExitCode::FAILURE
    }
}

const HEADERS: [&str; 10] = [
    "NODE",
    "ROLE",
    "EPOCH",
    "LAST INDEX",
    "LAG",
    "IN SYNC",
    "LAST HEARTBEAT",
    "LAST CHECKPOINT",
    "ARCHIVE LAG",
    "ADDRESS HOLDER",
];

/// The aligned table, one line per member, then the control plane's view.
pub fn table(reports: &[MemberReport]) -> String {
    let rows: Vec<[String; 10]> = reports.iter().map(row).collect();
    let mut widths = HEADERS.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let mut line = |cells: &[String]| {
        let padded: Vec<String> = cells.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        text.push_str(padded.join("  ").trim_end());
        text.push('\n');
    };
    line(&HEADERS.map(String::from));
    for row in &rows {
        line(row);
    }
    text.push_str(&summary(reports));
    text
}

fn row(report: &MemberReport) -> [String; 10] {
    let node = format!("{} ({})", report.node_id, report.kind);
    let Some(status) = &report.status else {
        let role = if report.admin.is_some() { "unreachable" } else { "no admin address" };
        let dash = || "-".to_string();
        return [node, role.into(), dash(), dash(), dash(), dash(), dash(), dash(), dash(), dash()];
    };
    let dash = || "-".to_string();
    let lag = match (status.lag_records, status.lag_ms) {
        (Some(records), Some(ms)) => format!("{records} rec / {ms} ms"),
        (Some(records), None) => format!("{records} rec"),
        _ => dash(),
    };
    let in_sync = status.in_sync.map_or_else(dash, |in_sync| if in_sync { "yes" } else { "no" }.into());
    let heartbeat = status.peer.as_ref().map_or_else(dash, |peer| match peer.last_heartbeat_ms_ago {
        Some(ms) => format!("{ms} ms ago ({})", peer.state),
        None => format!("never ({})", peer.state),
    });
    let checkpoint = status.last_checkpoint.as_ref().map_or_else(
        || if status.kind == "witness" { dash() } else { "none".into() },
        |checkpoint| {
            format!("#{} @{} {}s ago", checkpoint.id, checkpoint.log_index, age_ms(checkpoint.created_unix_ms) / 1000)
        },
    );
    let archive = status.archive.as_ref().map_or_else(dash, |archive| {
        let state = if archive.status == "ok" { "" } else { " (err)" };
        format!("{} rec / {} s{state}", archive.lag_records, archive.lag_seconds)
    });
    let holder = status
        .control
        .as_ref()
        .map_or_else(dash, |control| control.address_holder.map_or("none".into(), |holder| format!("node {holder}")));
    [
        node,
        status.role.clone(),
        status.epoch.to_string(),
        if status.kind == "witness" { dash() } else { status.last_index.to_string() },
        lag,
        in_sync,
        heartbeat,
        checkpoint,
        archive,
        holder,
    ]
}

/// One line with the control plane's view, from the member with the highest control epoch.
fn summary(reports: &[MemberReport]) -> String {
    let newest = reports
        .iter()
        .filter_map(|report| report.status.as_ref()?.control.as_ref())
        .max_by_key(|control| control.epoch);
    let Some(control) = newest else {
        return String::new();
    };
    let node = |id: Option<u64>| id.map_or("none".to_string(), |id| format!("node {id}"));
    let in_sync: Vec<String> = control.in_sync.iter().map(u64::to_string).collect();
    format!(
        "control plane: epoch {}, active {}, in sync [{}], address holder {}, leader {}\n",
        control.epoch,
        node(control.active),
        in_sync.join(", "),
        node(control.address_holder),
        node(control.leader)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::status::{ControlView, PeerStatus};

    fn data(node_id: u32, role: &str) -> NodeStatus {
        NodeStatus {
            node_id,
            kind: "data".into(),
            role: role.into(),
            epoch: 3,
            accepting_writes: role == "active",
            last_index: 1234,
            replicated_index: Some(1234),
            lag_records: Some(0),
            lag_ms: (role == "active").then_some(0),
            in_sync: Some(true),
            peer: Some(PeerStatus {
                node_id: 3 - node_id,
                state: "alive".into(),
                last_heartbeat_ms_ago: Some(12),
                connected: true,
            }),
            last_checkpoint: None,
            control: Some(ControlView {
                epoch: 3,
                active: Some(1),
                in_sync: vec![1, 2],
                address_holder: Some(1),
                leader: Some(1),
            }),
            archive: None,
        }
    }

    #[test]
    fn the_table_is_aligned_and_shows_unreachable_members() {
        let reports = vec![
            MemberReport { node_id: 1, kind: "data", admin: None, status: Some(data(1, "active")), error: None },
            MemberReport { node_id: 2, kind: "data", admin: None, status: Some(data(2, "standby")), error: None },
            MemberReport {
                node_id: 3,
                kind: "witness",
                admin: Some(([127, 0, 0, 1], 1).into()),
                status: None,
                error: Some("unreachable: refused".into()),
            },
        ];
        let text = table(&reports);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        let epoch_column = lines[0].find("EPOCH").unwrap();
        assert_eq!(lines[1].as_bytes()[epoch_column], b'3', "{text}");
        assert_eq!(lines[2].as_bytes()[epoch_column], b'3', "{text}");
        assert!(
            lines[1].contains("active") && lines[1].contains("0 rec / 0 ms") && lines[1].contains("node 1"),
            "{text}"
        );
        assert!(lines[2].contains("standby") && lines[2].contains("12 ms ago (alive)"), "{text}");
        assert!(lines[3].contains("unreachable"), "{text}");
        assert!(lines[4].contains("epoch 3, active node 1, in sync [1, 2]"), "{text}");
    }
}

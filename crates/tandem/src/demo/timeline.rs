//! What the demo reads from the nodes (`INFO replication`) and what it prints:
//! each round's timeline in milliseconds since the fault, and the audit.
//!
//! Phases the node reports are wall-clock stamps (unix ms) compared with the
//! demo's own stamp of the fault, taken on the same machine just before the
//! SIGKILL. A field that is missing, 0, or older than the fault is shown as
//! "n/a": the demo never invents a value.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tandem_resp::Frame;

use super::Round;
use crate::client::Client;

/// The `INFO replication` fields of one node, by name.
#[derive(Debug, Default, Clone)]
pub struct Info(BTreeMap<String, String>);

impl Info {
    /// Reads `INFO replication` from `address`.
    pub async fn read(address: SocketAddr) -> anyhow::Result<Info> {
        Info::read_section(address, "replication").await
    }

    /// Reads `INFO <section>` from `address`.
    pub async fn read_section(address: SocketAddr, section: &str) -> anyhow::Result<Info> {
        let mut client = Client::connect(address, Duration::from_millis(1000)).await?;
        let text = match client.call(&[b"INFO", section.as_bytes()]).await? {
            Frame::Bulk(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Frame::Verbatim { text, .. } => String::from_utf8_lossy(&text).into_owned(),
            other => anyhow::bail!("INFO on {address} answered {other:?}"),
        };
        let fields = text
            .lines()
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
            .collect();
        Ok(Info(fields))
    }

    /// A field's text ("" when absent).
    pub fn text(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }

    /// A numeric field, if present and a number.
    pub fn number(&self, name: &str) -> Option<u64> {
        self.0.get(name)?.parse().ok()
    }

    /// Milliseconds from `fault_unix_ms` to the unix-ms stamp in field `name`; `None` when
    /// the field is missing, 0, or older than the fault (from an earlier failover).
    pub fn since(&self, name: &str, fault_unix_ms: u64) -> Option<u64> {
        self.number(name).filter(|stamp| *stamp != 0)?.checked_sub(fault_unix_ms)
    }
}

fn phase(ms: Option<u64>) -> String {
    match ms {
        Some(ms) => format!("+{ms:>5} ms"),
        None => format!("{:>9}", "n/a"),
    }
}

/// Prints one round: the timeline, then the audit.
pub fn print_round(round: &Round, service_address: Option<SocketAddr>) {
    let (old, new) = (round.old_active, round.new_active);
    println!(
        "round {}: node {old} active, {} writes acknowledged before the fault",
        round.round, round.writes_before_fault
    );
    println!("  {}  fault: SIGKILL of node {old}, the active", phase(Some(0)));
    println!("  {}  detected: node {new}'s failure detector declared node {old} dead", phase(round.detected_ms));
    let epoch = round.epoch.map_or("n/a".to_string(), |epoch| epoch.to_string());
    println!("  {}  promoted: the control plane made node {new} active (epoch {epoch})", phase(round.promoted_ms));
    match service_address {
        Some(address) => {
            println!(
                "  {}  address moved: node {new} bound the service address {address}",
                phase(round.address_moved_ms)
            )
        }
        None => println!("  {}  address moved: (this build's nodes do not bind the service address)", phase(None)),
    }
    let through = if service_address.is_some() { "through the service address" } else { "on node's own address" };
    println!("  {}  first write served {through}", phase(Some(round.first_write_ms)));
    if let Some(again) = round.address_bound_again_ms {
        println!(
            "  {}  address bound again: node {new}'s lease had lapsed (it released the address and refused \
             writes until the control plane renewed it)",
            phase(Some(again))
        );
    }
    if let Some(lag) = round.archive_lag_records {
        let restore = round.cold_restore_ms.map_or("n/a".to_string(), |ms| format!("{ms} ms"));
        println!(
            "  cold standby: node {new} rebuilt from node {old}'s archive in {restore}; {lag} records were not yet \
             archived at the fault (node {new} reports at least {} lost)",
            round.cold_lost_records_at_least.unwrap_or(0)
        );
    }
    println!(
        "  audit: {} acknowledged writes checked, lost: {} ({} writes in flight at the fault: outcome unknown, not counted)",
        round.acknowledged_writes, round.lost_acknowledged_writes, round.unknown_writes
    );
    if !round.lost_keys.is_empty() {
        println!("  lost keys (first {}): {}", round.lost_keys.len(), round.lost_keys.join(" "));
    }
}

/// Prints the closing summary of all rounds.
pub fn print_summary(rounds: &[Round]) {
    let acknowledged: u64 = rounds.iter().map(|round| round.acknowledged_writes).sum();
    let lost: u64 = rounds.iter().map(|round| round.lost_acknowledged_writes).sum();
    let failovers: Vec<String> = rounds.iter().map(|round| round.failover_ms.to_string()).collect();
    println!(
        "summary: {} rounds; acknowledged writes checked: {acknowledged}, lost: {lost}; \
         failover (fault to first write served), ms: {}",
        rounds.len(),
        failovers.join(", ")
    );
}

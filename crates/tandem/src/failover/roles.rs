//! What follows a role change, besides the service address: the message on
//! the role-change channel, closing client connections on demotion (pooled
//! clients reconnect and find the active, as after a Redis failover), the
//! operator's `on_role_change` command.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::limits;
use crate::repl::{Role, RoleEvent};
use crate::server::Shared;

/// The pub/sub channel every role change is published on.
pub const ROLE_CHANNEL: &str = "__tandem__:role";

/// The message published on [`ROLE_CHANNEL`]: `<role> <epoch> <node id>`, role as
/// `active` or `standby`.
pub fn role_message(event: RoleEvent, node_id: u32) -> String {
    format!("{} {} {node_id}", role_word(event.role), event.epoch)
}

fn role_word(role: Role) -> &'static str {
    match role {
        Role::Active => "active",
        Role::Standby => "standby",
        Role::Standalone => "standalone",
    }
}

/// Whether this change demotes a node that served writes: its clients must reconnect.
pub fn is_demotion(event: RoleEvent) -> bool {
    event.previous == Role::Active && event.role == Role::Standby
}

/// Reacts to every role change until shutdown.
pub async fn react(shared: Arc<Shared>) {
    let Some(cluster) = shared.replication.cluster.as_ref() else {
        return;
    };
    let mut events = shared.replication.role_events();
    let mut shutdown = shared.shutdown.subscribe();
    let mut last = *events.borrow_and_update();
    loop {
        tokio::select! {
            changed = events.changed() => if changed.is_err() { return },
            _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => return,
        }
        let event = *events.borrow_and_update();
        if (event.role, event.epoch) == (last.role, last.epoch) {
            continue;
        }
        // A watch keeps only the newest change: what counts is where this node came from.
        let event = RoleEvent { previous: last.role, ..event };
        last = event;
        let message = role_message(event, cluster.node_id);
        let receivers = shared.broker.publish(&Bytes::from_static(ROLE_CHANNEL.as_bytes()), &Bytes::from(message));
        if is_demotion(event) {
            let clients = close_normal_clients(&shared);
            tracing::warn!(epoch = event.epoch, clients, "demoted to standby: closed client connections");
        }
        tracing::info!(role = ?event.role, epoch = event.epoch, receivers, "role change published");
        if let Some(command) = &cluster.on_role_change {
            let address = cluster.service_endpoint().map(|address| address.to_string()).unwrap_or_default();
            tokio::spawn(run_command(command.clone(), event, cluster.node_id, address));
        }
    }
}

/// Closes every connection that is not only subscribed (subscribers stay to hear of the
/// change); returns how many.
fn close_normal_clients(shared: &Shared) -> usize {
    let mut closed = 0;
    for client in shared.clients.all() {
        if client.subscriptions.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            client.kill();
            closed += 1;
        }
    }
    closed
}

/// Runs the operator's command through `sh -c` with the new role in its environment;
/// logs its outcome, kills it after `ROLE_CHANGE_COMMAND_TIMEOUT_MS`.
async fn run_command(command: String, event: RoleEvent, node_id: u32, address: String) {
    let spawned = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&command)
        .env("TANDEM_ROLE", role_word(event.role))
        .env("TANDEM_PREVIOUS_ROLE", role_word(event.previous))
        .env("TANDEM_EPOCH", event.epoch.to_string())
        .env("TANDEM_NODE_ID", node_id.to_string())
        .env("TANDEM_SERVICE_ADDRESS", address)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            tracing::error!(%command, %error, "on_role_change: cannot start the command");
            return;
        }
    };
    let timeout = Duration::from_millis(limits::ROLE_CHANGE_COMMAND_TIMEOUT_MS);
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => tracing::info!(%command, "on_role_change: done"),
        Ok(Ok(status)) => tracing::error!(%command, %status, "on_role_change: the command failed"),
        Ok(Err(error)) => tracing::error!(%command, %error, "on_role_change: waiting for the command failed"),
        Err(_) => {
            let _ = child.kill().await;
            tracing::error!(%command, timeout_ms = timeout.as_millis() as u64, "on_role_change: timed out; killed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_role_epoch_and_node() {
        let event = RoleEvent { role: Role::Active, epoch: 7, previous: Role::Standby };
        assert_eq!(role_message(event, 2), "active 7 2");
    }

    #[test]
    fn only_losing_the_active_role_is_a_demotion() {
        let demoted = RoleEvent { role: Role::Standby, epoch: 3, previous: Role::Active };
        assert!(is_demotion(demoted));
        assert!(!is_demotion(RoleEvent { previous: Role::Standby, ..demoted }));
        assert!(!is_demotion(RoleEvent { role: Role::Active, epoch: 3, previous: Role::Standby }));
    }
}

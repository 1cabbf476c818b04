//! The witness's endpoint: it reports the witness's applied control state (the witness
//! holds no data, but knows who is active) and forwards `SENTINEL failover` to the active's
//! admin endpoint, as a standby forwards `tandem switchover`.
//!
//! It has no password: the witness has no `requirepass` (it serves no data). Its requests
//! are Sentinel's few short words, so its limits are small and fixed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tandem_control::ControlNode;
use tandem_resp::Frame;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::commands::View;
use super::source::{failover_reply, view_of, Changes, RequestLimits, Roles, Source, REFUSED};
use crate::admin::client;
use crate::admin::status::OperationReply;
use crate::config::ClusterConfig;
use crate::limits;

/// Longest bulk string or inline line a witness endpoint accepts.
const REQUEST_BYTES_MAX: usize = 64 * 1024;
/// Most unparsed bytes a witness endpoint buffers for one connection.
const QUERY_BUFFER_BYTES_MAX: usize = 4 * REQUEST_BYTES_MAX;
/// Most words in one request (the longest Sentinel request has a handful).
const REQUEST_WORDS_MAX: usize = 1024;
const _: () = assert!(QUERY_BUFFER_BYTES_MAX > REQUEST_BYTES_MAX);

/// Serves from the witness's control-plane member.
pub struct WitnessSource {
    cluster: ClusterConfig,
    control: Arc<ControlNode>,
    shutdown: watch::Receiver<bool>,
    /// The witness file's `requirepass`, if set.
    requirepass: Option<String>,
}

/// Starts the witness's endpoint when its member has a `sentinel` address, asking for
/// `requirepass` when given; it stops once `shutdown` is true, and its task ends only after
/// every connection did (they hold `control`).
pub async fn start(
    cluster: &ClusterConfig,
    requirepass: Option<String>,
    control: Arc<ControlNode>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    let Some(address) = cluster.this_member().sentinel else {
        return Ok(None);
    };
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on the witness's sentinel address {address}"))?;
    tracing::info!(sentinel = %address, "sentinel endpoint up");
    let source = WitnessSource { cluster: cluster.clone(), control, shutdown, requirepass };
    Ok(Some(tokio::spawn(super::serve_from(listener, Arc::new(source)))))
}

impl Source for WitnessSource {
    fn view(&self) -> Option<View> {
        let state = self.control.state();
        let has_leader = self.control.metrics().borrow().current_leader.is_some();
        let roles = Roles { active: state.active.map(|id| id as u32), has_leader, epoch: state.epoch };
        view_of(&self.cluster, roles, |replica| state.in_sync.contains(&u64::from(replica)))
    }

    fn changes(&self) -> Changes {
        Changes::Control(self.control.state_changes())
    }

    fn shutdown(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    fn request_limits(&self) -> RequestLimits {
        let resp = tandem_resp::Limits {
            bulk_bytes_max: REQUEST_BYTES_MAX,
            array_len_max: REQUEST_WORDS_MAX,
            depth_max: limits::FRAME_DEPTH_MAX,
            inline_bytes_max: REQUEST_BYTES_MAX.min(limits::INLINE_BYTES_MAX),
        };
        RequestLimits { resp, query_buffer_bytes_max: QUERY_BUFFER_BYTES_MAX }
    }

    fn requirepass(&self) -> Option<&str> {
        self.requirepass.as_deref()
    }

    /// Asks the active's admin endpoint for a switchover to the other data node.
    async fn failover(&self) -> Frame {
        let view = self.view();
        let Some((active, standby)) = view.and_then(|view| Some((view.active?.id, view.replica.id))) else {
            return failover_reply(false, REFUSED, "no node is active yet; the control plane has not elected one");
        };
        let Some(address) = self.cluster.member(active).and_then(|member| member.admin) else {
            let message = format!("the active (node {active}) has no admin address to forward the failover to");
            return failover_reply(false, REFUSED, &message);
        };
        let (status, reply) = forward(&self.cluster, address, active, standby).await;
        failover_reply(reply.ok, status, &reply.message)
    }
}

/// Posts the switchover to the active's admin `address`; its HTTP status and answer.
async fn forward(cluster: &ClusterConfig, address: SocketAddr, active: u32, to: u32) -> (u16, OperationReply) {
    let body = serde_json::json!({ "to": to, "forwarded": true }).to_string();
    let wait = Duration::from_millis(cluster.switchover_timeout_ms + 5_000);
    let unavailable = |message: String| {
        (503, OperationReply { ok: false, epoch: 0, message, write_pause_ms: None, active: Some(u64::from(active)) })
    };
    match client::request_async(address, "POST", "/switchover", Some(body), wait).await {
        Ok(response) => match serde_json::from_str::<OperationReply>(&response.body) {
            Ok(reply) => (response.status, reply),
            Err(error) => unavailable(format!("the active (node {active}) answered badly: {error}")),
        },
        Err(error) => unavailable(format!("cannot reach the active (node {active}) at {address}: {error}")),
    }
}

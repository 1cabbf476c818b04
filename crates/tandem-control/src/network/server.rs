//! The accepting side: handshake every connection, then serve its RPCs into the local Raft.

use std::net::SocketAddr;
use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use super::wire::{
    read_frame, write_frame, ClusterAuth, Handshake, RpcRequest, RpcResponse, Side, FRAME_BYTES_MAX,
    HANDSHAKE_FRAME_BYTES_MAX, HANDSHAKE_TIMEOUT, NONCE_BYTES,
};
use crate::error::ControlError;
use crate::grant::Grants;
use crate::state::{ControlCommand, ControlResponse, ControlState, NodeId};
use crate::types::ControlRaft;
use crate::witness::Heard;

/// What the server needs besides Raft: grants answered by the applied state, and a record
/// of the leaders and candidates heard (for the witness, `witness.rs`).
#[derive(Clone)]
pub struct MemberContext {
    /// This member's grants.
    pub grants: Arc<Grants>,
    /// This member's applied control state.
    pub state: watch::Receiver<ControlState>,
    /// Leaders and candidates heard.
    pub heard: Arc<Heard>,
}

/// Inbound connections served at once; each member opens one per peer, plus forwarded proposals.
pub const INBOUND_CONNECTIONS_MAX: usize = 32;

/// Accepts connections until `shutdown` turns true; each runs on its own task.
pub async fn serve(
    listener: TcpListener,
    raft: ControlRaft,
    auth: Arc<ClusterAuth>,
    desk: MemberContext,
    shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(INBOUND_CONNECTIONS_MAX));
    let mut stop = shutdown.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "control plane: accept failed");
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = INBOUND_CONNECTIONS_MAX, "control plane: refusing connection, too many open");
            continue;
        };
        let (raft, auth, desk, mut stop) = (raft.clone(), auth.clone(), desk.clone(), shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = serve_connection(stream, peer, raft, &auth, &desk) => {},
                _ = stop.wait_for(|stopped| *stopped) => {},
            }
            drop(permit);
        });
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    raft: ControlRaft,
    auth: &ClusterAuth,
    desk: &MemberContext,
) {
    let _ = stream.set_nodelay(true);
    let from = match tokio::time::timeout(HANDSHAKE_TIMEOUT, server_handshake(&mut stream, auth)).await {
        Ok(Ok(from)) => from,
        Ok(Err(reason)) => {
            tracing::warn!(%peer, %reason, "control plane: refused peer");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, "control plane: refused peer, handshake timed out");
            return;
        }
    };
    loop {
        let request: RpcRequest = match read_frame(&mut stream, FRAME_BYTES_MAX).await {
            Ok(request) => request,
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return,
            Err(error) => {
                tracing::warn!(%peer, from, %error, "control plane: disconnecting peer");
                return;
            }
        };
        let response = dispatch(&raft, desk, from, request).await;
        if let Err(error) = write_frame(&mut stream, &response).await {
            tracing::debug!(%peer, from, %error, "control plane: peer went away");
            return;
        }
    }
}

/// Runs the server side of the handshake; returns the authenticated peer's id or why not.
async fn server_handshake(stream: &mut TcpStream, auth: &ClusterAuth) -> Result<NodeId, String> {
    let hello = read_frame(stream, HANDSHAKE_FRAME_BYTES_MAX).await.map_err(|error| format!("bad hello: {error}"))?;
    let Handshake::Hello { cluster_id, from, client_nonce } = hello else {
        return Err("first frame is not a hello".into());
    };
    if cluster_id != auth.cluster_id {
        return Err(format!("wrong cluster id {cluster_id:?} (member {from})"));
    }
    let server_nonce: [u8; NONCE_BYTES] = rand::random();
    let server_proof = auth.proof(Side::Server, from, &client_nonce, &server_nonce);
    write_frame(stream, &Handshake::Challenge { server_nonce, server_proof })
        .await
        .map_err(|error| error.to_string())?;
    let proof = read_frame(stream, HANDSHAKE_FRAME_BYTES_MAX).await.map_err(|error| match error.kind() {
        // A client with another secret rejects our proof and hangs up before sending its own.
        std::io::ErrorKind::UnexpectedEof => format!("member {from} hung up after the challenge (secret mismatch?)"),
        _ => format!("bad proof: {error}"),
    })?;
    let Handshake::Proof { client_proof } = proof else {
        return Err("third frame is not a proof".into());
    };
    if !auth.verify(Side::Client, from, &client_nonce, &server_nonce, &client_proof) {
        return Err(format!("wrong cluster secret (member {from})"));
    }
    write_frame(stream, &Handshake::Welcome).await.map_err(|error| error.to_string())?;
    Ok(from)
}

async fn dispatch(raft: &ControlRaft, desk: &MemberContext, from: NodeId, request: RpcRequest) -> RpcResponse {
    match request {
        RpcRequest::AppendEntries(rpc) => {
            desk.heard.leader(tokio::time::Instant::now());
            RpcResponse::AppendEntries(raft.append_entries(rpc).await.map_err(|error| error.to_string()))
        }
        RpcRequest::Vote(rpc) => {
            let own_last = raft.metrics().borrow().last_log_index;
            desk.heard.candidate(tokio::time::Instant::now(), rpc.last_log_id.map(|id| id.index), own_last);
            RpcResponse::Vote(raft.vote(rpc).await.map_err(|error| error.to_string()))
        }
        RpcRequest::InstallSnapshot(rpc) => {
            RpcResponse::InstallSnapshot(raft.install_snapshot(rpc).await.map_err(|error| error.to_string()))
        }
        RpcRequest::Propose(command) => RpcResponse::Propose(propose_locally(raft, command).await),
        RpcRequest::GrantLease { epoch } => {
            let received_at = tokio::time::Instant::now();
            let state = desk.state.borrow().clone();
            let decided = desk.grants.decide(from, epoch, &state, received_at);
            if let Err(reason) = &decided {
                tracing::debug!(from, epoch, %reason, "control plane: lease grant refused");
            }
            RpcResponse::GrantLease(decided.map(|lease| lease.as_millis() as u64))
        }
    }
}

/// Proposes `command` through this member's Raft, which must be the leader.
pub async fn propose_locally(raft: &ControlRaft, command: ControlCommand) -> Result<ControlResponse, ControlError> {
    match raft.client_write(command).await {
        Ok(written) => Ok(written.data),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
            Err(ControlError::NotLeader { leader: forward.leader_id })
        }
        Err(error) => Err(ControlError::Raft(error.to_string())),
    }
}

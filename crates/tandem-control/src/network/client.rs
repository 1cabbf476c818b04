//! The connecting side: openraft's network factory and one client per peer.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::wire::{
    read_frame, write_frame, ClusterAuth, Handshake, RpcRequest, RpcResponse, Side, FRAME_BYTES_MAX,
    HANDSHAKE_FRAME_BYTES_MAX, HANDSHAKE_TIMEOUT, NONCE_BYTES,
};
use crate::error::ControlError;
use crate::lease::LeaseTracker;
use crate::state::{ControlCommand, ControlResponse, Epoch, NodeId};
use crate::types::{Member, TypeConfig};

/// Opens a TCP connection to `address` and runs the client side of the handshake.
pub async fn connect(address: &str, auth: &ClusterAuth, from: NodeId) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    tokio::time::timeout(HANDSHAKE_TIMEOUT, client_handshake(&mut stream, auth, from))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "handshake timed out"))??;
    Ok(stream)
}

async fn client_handshake(stream: &mut TcpStream, auth: &ClusterAuth, from: NodeId) -> io::Result<()> {
    let client_nonce: [u8; NONCE_BYTES] = rand::random();
    write_frame(stream, &Handshake::Hello { cluster_id: auth.cluster_id.clone(), from, client_nonce }).await?;
    let refused = |what: &str| io::Error::new(io::ErrorKind::PermissionDenied, format!("handshake refused: {what}"));
    let challenge = read_frame(stream, HANDSHAKE_FRAME_BYTES_MAX).await.map_err(|_| refused("no challenge"))?;
    let Handshake::Challenge { server_nonce, server_proof } = challenge else {
        return Err(refused("unexpected message instead of a challenge"));
    };
    if !auth.verify(Side::Server, from, &client_nonce, &server_nonce, &server_proof) {
        return Err(refused("the server does not know the cluster secret"));
    }
    let client_proof = auth.proof(Side::Client, from, &client_nonce, &server_nonce);
    write_frame(stream, &Handshake::Proof { client_proof }).await?;
    match read_frame(stream, HANDSHAKE_FRAME_BYTES_MAX).await {
        Ok(Handshake::Welcome) => Ok(()),
        _ => Err(refused("the server did not accept our proof")),
    }
}

/// Sends one request on `stream` and reads its answer.
pub async fn call(stream: &mut TcpStream, request: &RpcRequest) -> io::Result<RpcResponse> {
    write_frame(stream, request).await?;
    read_frame(stream, FRAME_BYTES_MAX).await
}

/// Sends `request` to the member at `address` over `stream` (opened when `None`, kept
/// after a full exchange, dropped after any failure) and reads its answer within `timeout`;
/// a failure is described for the caller's message.
async fn exchange(
    stream: &mut Option<TcpStream>,
    address: &str,
    auth: &ClusterAuth,
    from: NodeId,
    request: &RpcRequest,
    timeout: Duration,
) -> Result<RpcResponse, String> {
    let exchange = async {
        let mut open = match stream.take() {
            Some(open) => open,
            None => connect(address, auth, from).await?,
        };
        let response = call(&mut open, request).await?;
        *stream = Some(open);
        Ok::<_, io::Error>(response)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer in {timeout:?}")),
    }
}

/// Hands `command` to the leader at `address` and returns its outcome.
pub async fn forward_proposal(
    address: &str,
    auth: &ClusterAuth,
    from: NodeId,
    command: ControlCommand,
    timeout: Duration,
) -> Result<ControlResponse, ControlError> {
    match exchange(&mut None, address, auth, from, &RpcRequest::Propose(command), timeout).await {
        Ok(RpcResponse::Propose(result)) => result,
        Ok(other) => Err(ControlError::Unavailable(format!("leader answered with {other:?}"))),
        Err(reason) => Err(ControlError::Unavailable(format!("leader at {address}: {reason}"))),
    }
}

/// Asks the member at `address` for a lease grant in `epoch` (`grant.rs`) over `stream`,
/// opened when `None` and dropped after any failure; the granted lease, or why not.
pub async fn ask_grant(
    stream: &mut Option<TcpStream>,
    address: &str,
    auth: &ClusterAuth,
    from: NodeId,
    epoch: Epoch,
    timeout: Duration,
) -> Result<Duration, String> {
    match exchange(stream, address, auth, from, &RpcRequest::GrantLease { epoch }, timeout).await? {
        RpcResponse::GrantLease(Ok(millis)) => Ok(Duration::from_millis(millis)),
        RpcResponse::GrantLease(Err(reason)) => Err(reason),
        other => Err(format!("answered with {other:?}")),
    }
}

/// Creates one [`PeerClient`] per peer for openraft.
pub struct PeerClientFactory {
    /// This member's id (sent in the handshake).
    pub own_id: NodeId,
    /// Peer addresses by id, from the configuration (not from the replicated membership, so a
    /// forged membership entry cannot redirect traffic).
    pub peer_addresses: BTreeMap<NodeId, String>,
    /// The cluster identity.
    pub auth: Arc<ClusterAuth>,
    /// Where accepted heartbeats are recorded for the lease.
    pub lease: Arc<LeaseTracker>,
}

impl RaftNetworkFactory<TypeConfig> for PeerClientFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerClient {
        let address = self.peer_addresses.get(&target).cloned().unwrap_or_else(|| node.addr.clone());
        PeerClient {
            own_id: self.own_id,
            target,
            address,
            auth: self.auth.clone(),
            lease: self.lease.clone(),
            stream: None,
        }
    }
}

/// openraft's client for one peer: one connection, opened on first use and after any failure.
pub struct PeerClient {
    own_id: NodeId,
    target: NodeId,
    address: String,
    auth: Arc<ClusterAuth>,
    lease: Arc<LeaseTracker>,
    /// `None` while no healthy connection exists; taken out during a call so that an
    /// abandoned call drops its connection instead of leaving a stray answer in it.
    stream: Option<TcpStream>,
}

type RpcResult<T, E = openraft::error::Infallible> = Result<T, RPCError<NodeId, Member, RaftError<NodeId, E>>>;

impl PeerClient {
    async fn request(
        &mut self,
        request: &RpcRequest,
        timeout: Duration,
    ) -> Result<RpcResponse, RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>> {
        let exchange = async {
            let mut stream = match self.stream.take() {
                Some(stream) => stream,
                None => connect(&self.address, &self.auth, self.own_id)
                    .await
                    .map_err(|error| RPCError::Unreachable(Unreachable::new(&error)))?,
            };
            let response =
                call(&mut stream, request).await.map_err(|error| RPCError::Network(NetworkError::new(&error)))?;
            self.stream = Some(stream);
            Ok(response)
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => {
                let error =
                    io::Error::new(io::ErrorKind::TimedOut, format!("no answer from {} in {timeout:?}", self.target));
                Err(RPCError::Network(NetworkError::new(&error)))
            }
        }
    }
}

fn remote_error<E: std::error::Error>(message: String) -> RPCError<NodeId, Member, RaftError<NodeId, E>> {
    RPCError::Network(NetworkError::new(&io::Error::other(message)))
}

fn unexpected<E: std::error::Error>(response: RpcResponse) -> RPCError<NodeId, Member, RaftError<NodeId, E>> {
    remote_error(format!("mismatched answer: {response:?}"))
}

/// Drops the error type parameter of a transport-level error (network and unreachable only).
fn retype<E: std::error::Error>(
    error: RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>,
) -> RPCError<NodeId, Member, RaftError<NodeId, E>> {
    match error {
        RPCError::Unreachable(unreachable) => RPCError::Unreachable(unreachable),
        other => remote_error(other.to_string()),
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        let vote = rpc.vote;
        // Stamped before sending: the lease may only count from when the heartbeat left.
        let sent_at = Instant::now();
        match self.request(&RpcRequest::AppendEntries(rpc), option.hard_ttl()).await.map_err(retype)? {
            RpcResponse::AppendEntries(Ok(response)) => {
                if !matches!(response, AppendEntriesResponse::HigherVote(_)) {
                    self.lease.record_ack(self.target, vote, sent_at);
                }
                Ok(response)
            }
            RpcResponse::AppendEntries(Err(message)) => Err(remote_error(message)),
            other => Err(unexpected(other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        match self.request(&RpcRequest::InstallSnapshot(rpc), option.hard_ttl()).await? {
            RpcResponse::InstallSnapshot(Ok(response)) => Ok(response),
            RpcResponse::InstallSnapshot(Err(message)) => Err(remote_error(message)),
            other => Err(unexpected(other)),
        }
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> RpcResult<VoteResponse<NodeId>> {
        match self.request(&RpcRequest::Vote(rpc), option.hard_ttl()).await.map_err(retype)? {
            RpcResponse::Vote(Ok(response)) => Ok(response),
            RpcResponse::Vote(Err(message)) => Err(remote_error(message)),
            other => Err(unexpected(other)),
        }
    }
}

//! Frames, handshake and RPC messages of the control-plane protocol.
//!
//! Frame: `length: u32 big-endian | postcard payload`, `length <= limit`.
//!
//! Handshake (mutual, HMAC-SHA256 keyed by the cluster secret; the secret never travels):
//! 1. client → `Hello { cluster_id, from, client_nonce }` — a wrong cluster id is refused here;
//! 2. server → `Challenge { server_nonce, server_proof }`,
//!    `server_proof = HMAC(secret, "tandem-control server" | cluster_id | from | client_nonce | server_nonce)`;
//! 3. client checks `server_proof`, then → `Proof { client_proof }` (same with "client");
//! 4. server checks it (constant time) → `Welcome`; then RPC frames follow.
//!
//! Fresh nonces on both sides make a recorded handshake useless for replay.

use std::io;
use std::time::Duration;

use hmac::{Hmac, Mac};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::ControlError;
use crate::state::{ControlCommand, ControlResponse, Epoch, NodeId};
use crate::types::TypeConfig;

/// The largest RPC frame (snapshot chunks are 3 MiB by default in openraft).
pub const FRAME_BYTES_MAX: usize = 8 * 1024 * 1024;
/// The largest handshake frame: a few ids and nonces.
pub const HANDSHAKE_FRAME_BYTES_MAX: usize = 1024;
/// How long a peer has to complete the handshake before it is disconnected.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// The size of each side's nonce.
pub const NONCE_BYTES: usize = 32;

const _: () = assert!(HANDSHAKE_FRAME_BYTES_MAX < FRAME_BYTES_MAX);

/// Messages of the handshake, in the order they are sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Handshake {
    /// Client's opening: which cluster and member it is, and its nonce.
    Hello {
        /// The cluster the client belongs to.
        cluster_id: String,
        /// The client's member id.
        from: NodeId,
        /// The client's fresh nonce.
        client_nonce: [u8; NONCE_BYTES],
    },
    /// Server's answer: its nonce and its proof of the secret.
    Challenge {
        /// The server's fresh nonce.
        server_nonce: [u8; NONCE_BYTES],
        /// HMAC proving the server knows the secret.
        server_proof: Vec<u8>,
    },
    /// Client's proof of the secret.
    Proof {
        /// HMAC proving the client knows the secret.
        client_proof: Vec<u8>,
    },
    /// The server accepted the client.
    Welcome,
}

/// The cluster identity both sides must share.
#[derive(Clone)]
pub struct ClusterAuth {
    /// The cluster id, checked in the clear.
    pub cluster_id: String,
    /// The shared secret, used only as an HMAC key.
    pub secret: Vec<u8>,
}

/// Which side a proof is computed for, so one side's proof is never valid for the other.
#[derive(Clone, Copy)]
pub enum Side {
    /// The accepting member.
    Server,
    /// The connecting member.
    Client,
}

impl ClusterAuth {
    fn mac(&self, side: Side, from: NodeId, client_nonce: &[u8], server_nonce: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC accepts keys of any length");
        let label: &[u8] = match side {
            Side::Server => b"tandem-control server",
            Side::Client => b"tandem-control client",
        };
        mac.update(label);
        mac.update(&(self.cluster_id.len() as u64).to_be_bytes());
        mac.update(self.cluster_id.as_bytes());
        mac.update(&from.to_be_bytes());
        mac.update(client_nonce);
        mac.update(server_nonce);
        mac
    }

    /// The proof `side` sends for this handshake.
    pub fn proof(&self, side: Side, from: NodeId, client_nonce: &[u8], server_nonce: &[u8]) -> Vec<u8> {
        self.mac(side, from, client_nonce, server_nonce).finalize().into_bytes().to_vec()
    }

    /// Whether `proof` is `side`'s proof for this handshake (constant-time comparison).
    pub fn verify(&self, side: Side, from: NodeId, client_nonce: &[u8], server_nonce: &[u8], proof: &[u8]) -> bool {
        self.mac(side, from, client_nonce, server_nonce).verify_slice(proof).is_ok()
    }
}

/// An RPC from one member to another.
#[derive(Debug, Serialize, Deserialize)]
pub enum RpcRequest {
    /// Raft log replication and heartbeat.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// Raft election.
    Vote(VoteRequest<NodeId>),
    /// Raft snapshot transfer (one chunk).
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A follower hands a client's proposal to the leader.
    Propose(ControlCommand),
    /// The active asks the other data node for a lease grant in `epoch` (`grant.rs`).
    GrantLease {
        /// The epoch the asking member is active in.
        epoch: Epoch,
    },
}

/// The answer to an [`RpcRequest`], of the same variant; `Err` carries the remote error text.
#[derive(Debug, Serialize, Deserialize)]
pub enum RpcResponse {
    /// Answer to `AppendEntries`.
    AppendEntries(Result<AppendEntriesResponse<NodeId>, String>),
    /// Answer to `Vote`.
    Vote(Result<VoteResponse<NodeId>, String>),
    /// Answer to `InstallSnapshot`.
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, String>),
    /// Answer to `Propose`.
    Propose(Result<ControlResponse, ControlError>),
    /// Answer to `GrantLease`: the granted lease in milliseconds, or why not.
    GrantLease(Result<u64, String>),
}

/// Writes `value` as one frame.
pub async fn write_frame<T: Serialize>(stream: &mut (impl AsyncWrite + Unpin), value: &T) -> io::Result<()> {
    let payload = postcard::to_allocvec(value).map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
    if payload.len() > FRAME_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {} bytes is over the limit", payload.len()),
        ));
    }
    let mut bytes = Vec::with_capacity(4 + payload.len());
    bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&payload);
    stream.write_all(&bytes).await?;
    stream.flush().await
}

/// Reads one frame of at most `limit` bytes and decodes it; oversize or malformed is an error.
pub async fn read_frame<T: DeserializeOwned>(stream: &mut (impl AsyncRead + Unpin), limit: usize) -> io::Result<T> {
    let mut length_bytes = [0u8; 4];
    stream.read_exact(&mut length_bytes).await?;
    let length = u32::from_be_bytes(length_bytes) as usize;
    if length > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {length} bytes is over the {limit}-byte limit"),
        ));
    }
    let mut payload = vec![0u8; length];
    stream.read_exact(&mut payload).await?;
    postcard::from_bytes(&payload)
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, format!("malformed frame: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_bind_side_secret_and_nonces() {
        let auth = ClusterAuth { cluster_id: "c".into(), secret: b"s".to_vec() };
        let proof = auth.proof(Side::Client, 1, &[1; 32], &[2; 32]);
        assert!(auth.verify(Side::Client, 1, &[1; 32], &[2; 32], &proof));
        assert!(!auth.verify(Side::Server, 1, &[1; 32], &[2; 32], &proof));
        assert!(!auth.verify(Side::Client, 2, &[1; 32], &[2; 32], &proof));
        assert!(!auth.verify(Side::Client, 1, &[1; 32], &[3; 32], &proof));
        let other = ClusterAuth { cluster_id: "c".into(), secret: b"t".to_vec() };
        assert!(!other.verify(Side::Client, 1, &[1; 32], &[2; 32], &proof));
    }

    #[tokio::test]
    async fn oversize_and_garbage_frames_are_errors() {
        let mut oversize: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(read_frame::<RpcRequest>(&mut oversize, FRAME_BYTES_MAX).await.is_err());
        let mut garbage: &[u8] = &[0, 0, 0, 3, 0xfe, 0xfe, 0xfe];
        assert!(read_frame::<RpcRequest>(&mut garbage, FRAME_BYTES_MAX).await.is_err());
    }
}

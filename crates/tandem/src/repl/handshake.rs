//! Peer authentication: both sides prove they know the cluster secret
//! without sending it, and each checks the other's cluster id and node id.
//!
//! ```text
//! caller (standby)                          listener (active)
//!   Hello {version, cluster_id, node_id, nonce_c} ─>
//!                                          checks version, cluster id, node id
//!   <─ Challenge {node_id, nonce_s, proof_s = HMAC(secret, "listener", ids, nonce_c, nonce_s)}
//!   verifies proof_s (constant time)
//!   Proof {proof_c = HMAC(secret, "caller", ids, nonce_s, nonce_c)} ─>
//!                                          verifies proof_c (constant time)
//!   <─ Welcome                  (or Refused {reason} at any step, logged on both sides)
//! ```
//!
//! Fresh random nonces on both sides make a recorded exchange useless to
//! replay; the role label and both ids inside the MAC stop a proof made for
//! one direction or one pair of nodes from being reflected in another.
//! Frames are limited to `PEER_HANDSHAKE_FRAME_BYTES_MAX` until `Welcome`.

use bytes::BytesMut;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite};

use super::wire::{self, Message, PeerReader, WireError, NONCE_BYTES, PROTOCOL_VERSION};
use crate::config::ClusterConfig;

type HmacSha256 = Hmac<Sha256>;

/// Why a handshake failed; the text is what both sides log.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// This side refused the peer.
    #[error("refused the peer: {0}")]
    Refused(String),
    /// The peer refused this side.
    #[error("the peer refused this node: {0}")]
    RefusedByPeer(String),
    /// The peer sent something other than the next handshake message.
    #[error("unexpected {0} during the handshake")]
    Unexpected(&'static str),
    /// The bytes or the socket failed.
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// The MAC of one side's proof.
fn proof(secret: &[u8], label: &[u8], cluster_id: &str, ids: (u32, u32), nonces: (&[u8], &[u8])) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(b"tandem-peer-v1\0");
    mac.update(label);
    // Lengths first, so that no two different inputs concatenate to the same bytes.
    mac.update(&(cluster_id.len() as u64).to_le_bytes());
    mac.update(cluster_id.as_bytes());
    mac.update(&ids.0.to_le_bytes());
    mac.update(&ids.1.to_le_bytes());
    mac.update(nonces.0);
    mac.update(nonces.1);
    mac
}

fn proof_bytes(mac: HmacSha256) -> [u8; NONCE_BYTES] {
    mac.finalize().into_bytes().into()
}

/// What the listener learned: the authenticated caller's node id.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// The caller's member id.
    pub node_id: u32,
}

/// The listener's side: accepts only the other data node of this cluster.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    socket: &mut S,
    reader: &mut PeerReader,
    cluster: &ClusterConfig,
) -> Result<Caller, HandshakeError> {
    let mut scratch = BytesMut::new();
    let outcome = accept_steps(socket, reader, cluster, &mut scratch).await;
    if let Err(HandshakeError::Refused(reason)) = &outcome {
        // Best effort: the peer learns why; a peer that already left does not matter.
        let _ = wire::send(socket, &Message::Refused { reason: reason.clone() }, &mut scratch).await;
    }
    outcome
}

async fn accept_steps<S: AsyncRead + AsyncWrite + Unpin>(
    socket: &mut S,
    reader: &mut PeerReader,
    cluster: &ClusterConfig,
    scratch: &mut BytesMut,
) -> Result<Caller, HandshakeError> {
    let (caller_id, caller_nonce) = match reader.next(socket).await? {
        Message::Hello { version, cluster_id, node_id, nonce } => {
            if version != PROTOCOL_VERSION {
                return Err(refuse(format!("protocol version {version}, this node speaks {PROTOCOL_VERSION}")));
            }
            if cluster_id != cluster.cluster_id {
                return Err(refuse(format!("wrong cluster id `{}`", printable(&cluster_id))));
            }
            if node_id != cluster.peer_data_member().id {
                return Err(refuse(format!("node {node_id} is not the other data node of this cluster")));
            }
            (node_id, nonce)
        }
        other => return Err(HandshakeError::Unexpected(other.name())),
    };
    let nonce: [u8; NONCE_BYTES] = rand::random();
    let ids = (cluster.node_id, caller_id);
    let listener_proof =
        proof_bytes(proof(&cluster.secret.0, b"listener", &cluster.cluster_id, ids, (&caller_nonce, &nonce)));
    let challenge = Message::Challenge { node_id: cluster.node_id, nonce, proof: listener_proof };
    wire::send(socket, &challenge, scratch).await?;
    match reader.next(socket).await? {
        Message::Proof { proof: caller_proof } => {
            let expected = proof(&cluster.secret.0, b"caller", &cluster.cluster_id, ids, (&nonce, &caller_nonce));
            if expected.verify_slice(&caller_proof).is_err() {
                return Err(refuse("authentication failed: the peer does not know the cluster secret".into()));
            }
        }
        Message::Refused { reason } => return Err(HandshakeError::RefusedByPeer(reason)),
        other => return Err(HandshakeError::Unexpected(other.name())),
    }
    wire::send(socket, &Message::Welcome, scratch).await?;
    Ok(Caller { node_id: caller_id })
}

/// The caller's side: connects as `cluster.node_id` to the data node `expected_peer`.
pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    socket: &mut S,
    reader: &mut PeerReader,
    cluster: &ClusterConfig,
    expected_peer: u32,
) -> Result<(), HandshakeError> {
    let mut scratch = BytesMut::new();
    let nonce: [u8; NONCE_BYTES] = rand::random();
    let hello = Message::Hello {
        version: PROTOCOL_VERSION,
        cluster_id: cluster.cluster_id.clone(),
        node_id: cluster.node_id,
        nonce,
    };
    wire::send(socket, &hello, &mut scratch).await?;
    let listener_nonce = match reader.next(socket).await? {
        Message::Challenge { node_id, nonce: listener_nonce, proof: listener_proof } => {
            let ids = (node_id, cluster.node_id);
            let expected = proof(&cluster.secret.0, b"listener", &cluster.cluster_id, ids, (&nonce, &listener_nonce));
            let reason = if node_id != expected_peer {
                Some(format!("the peer says it is node {node_id}, expected {expected_peer}"))
            } else if expected.verify_slice(&listener_proof).is_err() {
                Some("authentication failed: the peer does not know the cluster secret".to_string())
            } else {
                None
            };
            if let Some(reason) = reason {
                let _ = wire::send(socket, &Message::Refused { reason: reason.clone() }, &mut scratch).await;
                return Err(HandshakeError::Refused(reason));
            }
            listener_nonce
        }
        Message::Refused { reason } => return Err(HandshakeError::RefusedByPeer(reason)),
        other => return Err(HandshakeError::Unexpected(other.name())),
    };
    let ids = (expected_peer, cluster.node_id);
    let caller_proof =
        proof_bytes(proof(&cluster.secret.0, b"caller", &cluster.cluster_id, ids, (&listener_nonce, &nonce)));
    wire::send(socket, &Message::Proof { proof: caller_proof }, &mut scratch).await?;
    match reader.next(socket).await? {
        Message::Welcome => Ok(()),
        Message::Refused { reason } => Err(HandshakeError::RefusedByPeer(reason)),
        other => Err(HandshakeError::Unexpected(other.name())),
    }
}

fn refuse(reason: String) -> HandshakeError {
    HandshakeError::Refused(reason)
}

/// At most 64 printable characters of peer-supplied text, for logs.
fn printable(text: &str) -> String {
    text.chars().take(64).map(|c| if c.is_control() { '?' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FileConfig;

    fn cluster(node_id: u32, cluster_id: &str, secret: &str) -> ClusterConfig {
        let text = format!(
            r#"
[cluster]
cluster_id = "{cluster_id}"
secret = "{secret}"
node_id = {node_id}
initial_active = 1
members = [
  {{ id = 1, client = "127.0.0.1:7001", peer = "127.0.0.1:17101" }},
  {{ id = 2, client = "127.0.0.1:7002", peer = "127.0.0.1:17102" }},
]
"#
        );
        toml::from_str::<FileConfig>(&text).unwrap().validate().unwrap().cluster.unwrap()
    }

    const SECRET: &str = "a-shared-secret-of-some-length";

    async fn run(listener: ClusterConfig, caller: ClusterConfig) -> (Result<Caller, String>, Result<(), String>) {
        let (mut left, mut right) = tokio::io::duplex(64 * 1024);
        let limit = crate::limits::PEER_HANDSHAKE_FRAME_BYTES_MAX;
        let accepting = async move {
            accept(&mut left, &mut PeerReader::new(limit), &listener).await.map_err(|error| error.to_string())
        };
        let connecting = async move {
            connect(&mut right, &mut PeerReader::new(limit), &caller, 1).await.map_err(|error| error.to_string())
        };
        tokio::join!(accepting, connecting)
    }

    #[tokio::test]
    async fn members_of_one_cluster_with_the_secret_are_accepted() {
        let (accepted, connected) = run(cluster(1, "c", SECRET), cluster(2, "c", SECRET)).await;
        assert_eq!(accepted.unwrap().node_id, 2);
        connected.unwrap();
    }

    #[tokio::test]
    async fn a_wrong_secret_is_refused_on_both_sides() {
        let (accepted, connected) = run(cluster(1, "c", SECRET), cluster(2, "c", "another-secret-entirely")).await;
        // The caller checks the listener's proof first, so it is the one that refuses.
        let caller_error = connected.unwrap_err();
        assert!(caller_error.contains("authentication failed"), "{caller_error}");
        let listener_error = accepted.unwrap_err();
        assert!(listener_error.contains("authentication failed"), "{listener_error}");
    }

    #[tokio::test]
    async fn a_wrong_cluster_id_is_refused() {
        let (accepted, connected) = run(cluster(1, "c", SECRET), cluster(2, "other", SECRET)).await;
        assert!(accepted.unwrap_err().contains("wrong cluster id"));
        assert!(connected.unwrap_err().contains("wrong cluster id"));
    }

    #[tokio::test]
    async fn a_node_claiming_the_listeners_own_id_is_refused() {
        let (accepted, _) = run(cluster(1, "c", SECRET), cluster(1, "c", SECRET)).await;
        assert!(accepted.unwrap_err().contains("not the other data node"));
    }
}

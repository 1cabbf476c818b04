//! The replication wire format: length-prefixed, checksummed, postcard-encoded
//! messages on the peer port. Framing is pure (encode into a buffer, decode
//! from a buffer; "incomplete" is a normal result); [`PeerReader`] only adds
//! the socket.
//!
//! A frame is `body_len u32 LE | crc32c(body) u32 LE | body`, the body a
//! postcard-encoded [`Message`]. A length above the reader's limit (small
//! until the handshake succeeds), a checksum mismatch or a body that does not
//! decode is an error: the connection is closed with that reason, never a panic.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tandem_log::{Epoch, LogIndex, NodeId, Record};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;

/// The protocol version a `Hello` announces; a peer with another is refused.
pub const PROTOCOL_VERSION: u16 = 2;
/// Bytes before the body: length and checksum.
pub const FRAME_HEADER_BYTES: usize = 8;
/// Length of a handshake nonce and of an HMAC-SHA256 proof.
pub const NONCE_BYTES: usize = 32;

/// One log record on the wire: the same fields the log stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireRecord {
    /// Its index in the active's log, kept by the standby.
    pub index: u64,
    /// The epoch it was written in.
    pub epoch: u64,
    /// Its hybrid logical clock timestamp.
    pub hlc: u64,
    /// The node whose client issued it.
    pub origin: u32,
    /// The encoded effects, exactly as in the log.
    pub payload: Bytes,
}

impl From<Record> for WireRecord {
    fn from(record: Record) -> WireRecord {
        WireRecord {
            index: record.index.0,
            epoch: record.epoch.0,
            hlc: record.hlc,
            origin: record.origin.0,
            payload: record.payload,
        }
    }
}

impl From<WireRecord> for Record {
    fn from(record: WireRecord) -> Record {
        Record {
            index: LogIndex(record.index),
            epoch: Epoch(record.epoch),
            hlc: record.hlc,
            origin: NodeId(record.origin),
            payload: record.payload,
        }
    }
}

/// Everything two data nodes say to each other. After the handshake every
/// message carries the sender's epoch; a receiver rejects a stale one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Handshake 1, connecting node → listening node: who I am, and a nonce to prove yourself on.
    Hello { version: u16, cluster_id: String, node_id: u32, nonce: [u8; NONCE_BYTES] },
    /// Handshake 2: the listener's proof over the caller's nonce, and its own nonce.
    Challenge { node_id: u32, nonce: [u8; NONCE_BYTES], proof: [u8; NONCE_BYTES] },
    /// Handshake 3: the caller's proof over the listener's nonce.
    Proof { proof: [u8; NONCE_BYTES] },
    /// Handshake 4: accepted.
    Welcome,
    /// The connection is refused or closed, with the reason (also logged on both sides).
    Refused { reason: String },
    /// Standby → active, first after the handshake: send records from `index` on; the
    /// standby's record `index - 1` has epoch `prev_epoch` (0 for none). The active streams
    /// only if its own record there has the same epoch (then both logs agree up to it:
    /// one writer per epoch), and answers `Diverged` otherwise.
    CatchUpFrom { epoch: u64, index: u64, prev_epoch: u64 },
    /// Active → standby: the logs do not agree at the index asked from; the active's last
    /// record that can still agree is `index`, of epoch `index_epoch` (0, 0: none). The
    /// standby probes again lower, or finds the common point.
    Diverged { epoch: u64, index: u64, index_epoch: u64 },
    /// Active → standby: the log no longer reaches back to what the standby needs; a full
    /// checkpoint of `bytes` bytes, the state at `log_index`, follows in `SnapshotChunk`s.
    Snapshot { epoch: u64, log_index: u64, bytes: u64 },
    /// A piece of the snapshot file, in order.
    SnapshotChunk { epoch: u64, bytes: Bytes },
    /// The snapshot is complete.
    SnapshotEnd { epoch: u64 },
    /// Active → standby: the next records, contiguous, in index order.
    Records { epoch: u64, records: Vec<WireRecord> },
    /// Standby → active: every record up to `durable_index` is persisted.
    Ack { epoch: u64, durable_index: u64 },
    /// Either way, every `heartbeat_ms`: I am alive, and my last index.
    Heartbeat { epoch: u64, sent_at_ms: u64, last_index: u64 },
    /// A cold standby → active, instead of `CatchUpFrom` (same fields, same agreement
    /// probing): send heartbeats only, no records. It finds divergence as a hot standby
    /// does, and learns the active's last index from its heartbeats.
    Watch { epoch: u64, index: u64, prev_epoch: u64 },
}

impl Message {
    /// The epoch the message carries, if it is not a handshake message.
    pub fn epoch(&self) -> Option<u64> {
        match self {
            Message::CatchUpFrom { epoch, .. }
            | Message::Diverged { epoch, .. }
            | Message::Snapshot { epoch, .. }
            | Message::SnapshotChunk { epoch, .. }
            | Message::SnapshotEnd { epoch }
            | Message::Records { epoch, .. }
            | Message::Ack { epoch, .. }
            | Message::Heartbeat { epoch, .. }
            | Message::Watch { epoch, .. } => Some(*epoch),
            _ => None,
        }
    }

    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "Hello",
            Message::Challenge { .. } => "Challenge",
            Message::Proof { .. } => "Proof",
            Message::Welcome => "Welcome",
            Message::Refused { .. } => "Refused",
            Message::CatchUpFrom { .. } => "CatchUpFrom",
            Message::Diverged { .. } => "Diverged",
            Message::Snapshot { .. } => "Snapshot",
            Message::SnapshotChunk { .. } => "SnapshotChunk",
            Message::SnapshotEnd { .. } => "SnapshotEnd",
            Message::Records { .. } => "Records",
            Message::Ack { .. } => "Ack",
            Message::Heartbeat { .. } => "Heartbeat",
            Message::Watch { .. } => "Watch",
        }
    }
}

/// Why a peer's bytes were not a message, or the connection failed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The length prefix is above what this connection accepts now.
    #[error("frame of {length} bytes is above the limit of {limit}")]
    TooLarge { length: usize, limit: usize },
    /// The body does not match its checksum.
    #[error("frame checksum mismatch")]
    Checksum,
    /// The body is not a message of this protocol.
    #[error("frame does not decode as a message: {0}")]
    Decode(postcard::Error),
    /// The peer closed the connection (in the middle of a frame if `partial`).
    #[error("peer closed the connection{}", if *partial { " in the middle of a frame" } else { "" })]
    Closed { partial: bool },
    /// The socket failed.
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
}

/// Appends `message` as one frame to `out`.
pub fn encode(message: &Message, out: &mut BytesMut) {
    let body = postcard::to_stdvec(message).expect("messages always serialize: plain structs, bytes and strings");
    out.reserve(FRAME_HEADER_BYTES + body.len());
    out.put_u32_le(u32::try_from(body.len()).expect("a message body fits a u32 length"));
    out.put_u32_le(crc32c::crc32c(&body));
    out.put_slice(&body);
}

/// Takes one complete frame from the front of `input`, if there is one.
pub fn decode(input: &mut BytesMut, limit: usize) -> Result<Option<Message>, WireError> {
    if input.len() < FRAME_HEADER_BYTES {
        return Ok(None);
    }
    let length = u32::from_le_bytes(input[0..4].try_into().expect("4 bytes")) as usize;
    if length > limit {
        return Err(WireError::TooLarge { length, limit });
    }
    if input.len() < FRAME_HEADER_BYTES + length {
        input.reserve(FRAME_HEADER_BYTES + length - input.len());
        return Ok(None);
    }
    let checksum = u32::from_le_bytes(input[4..8].try_into().expect("4 bytes"));
    input.advance(FRAME_HEADER_BYTES);
    let body = input.split_to(length);
    if crc32c::crc32c(&body) != checksum {
        return Err(WireError::Checksum);
    }
    postcard::from_bytes(&body).map(Some).map_err(WireError::Decode)
}

/// Reads messages from a socket with a bounded buffer; cancel-safe (a
/// partial frame stays buffered), so it can sit in a `select!`.
#[derive(Debug)]
pub struct PeerReader {
    input: BytesMut,
    /// Largest frame accepted now; raised once the peer is authenticated.
    pub limit: usize,
}

impl PeerReader {
    /// A reader accepting frames up to `limit` bytes.
    pub fn new(limit: usize) -> PeerReader {
        PeerReader { input: BytesMut::with_capacity(16 * 1024), limit }
    }

    /// A message that already arrived, without waiting: one in the buffer, or one the
    /// socket holds now. None if there is none yet (a closed socket is reported by `next`).
    pub fn try_next(&mut self, socket: &mut OwnedReadHalf) -> Result<Option<Message>, WireError> {
        if let Some(message) = decode(&mut self.input, self.limit)? {
            return Ok(Some(message));
        }
        if self.input.capacity() - self.input.len() < 4096 {
            self.input.reserve(16 * 1024);
        }
        match socket.try_read_buf(&mut self.input) {
            Ok(0) => Ok(None),
            Ok(_) => decode(&mut self.input, self.limit),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// The next message.
    pub async fn next<R: AsyncRead + Unpin>(&mut self, socket: &mut R) -> Result<Message, WireError> {
        loop {
            if let Some(message) = decode(&mut self.input, self.limit)? {
                return Ok(message);
            }
            if self.input.capacity() - self.input.len() < 4096 {
                self.input.reserve(16 * 1024);
            }
            if socket.read_buf(&mut self.input).await? == 0 {
                return Err(WireError::Closed { partial: !self.input.is_empty() });
            }
        }
    }
}

/// Writes one message (not cancel-safe: call it outside `select!` branches' futures).
pub async fn send<W: AsyncWrite + Unpin>(
    socket: &mut W,
    message: &Message,
    scratch: &mut BytesMut,
) -> Result<(), WireError> {
    scratch.clear();
    encode(message, scratch);
    socket.write_all(scratch).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn records() -> Message {
        let record = |index| WireRecord { index, epoch: 2, hlc: 99, origin: 1, payload: Bytes::from_static(b"xyz") };
        Message::Records { epoch: 2, records: vec![record(5), record(6)] }
    }

    #[test]
    fn messages_roundtrip_and_partial_frames_wait() {
        let messages = [
            Message::Hello { version: 1, cluster_id: "c".into(), node_id: 2, nonce: [7; NONCE_BYTES] },
            records(),
            Message::Ack { epoch: 2, durable_index: 6 },
            Message::Heartbeat { epoch: 2, sent_at_ms: 1, last_index: 6 },
        ];
        let mut wire = BytesMut::new();
        for message in &messages {
            encode(message, &mut wire);
        }
        let mut input = BytesMut::new();
        let mut decoded = Vec::new();
        for byte in wire.iter() {
            input.put_u8(*byte);
            if let Some(message) = decode(&mut input, 1 << 20).unwrap() {
                decoded.push(message);
            }
        }
        assert_eq!(decoded, messages);
        assert!(input.is_empty());
    }

    #[test]
    fn an_oversize_length_is_refused_before_reading_the_body() {
        let mut wire = BytesMut::new();
        encode(&records(), &mut wire);
        let error = decode(&mut wire.clone(), 8).unwrap_err();
        assert!(matches!(error, WireError::TooLarge { limit: 8, .. }), "{error}");
        let mut header_only = BytesMut::from(&u32::MAX.to_le_bytes()[..]);
        header_only.put_u32_le(0);
        assert!(matches!(decode(&mut header_only, 1 << 20), Err(WireError::TooLarge { .. })));
    }

    #[test]
    fn a_flipped_bit_fails_the_checksum() {
        let mut wire = BytesMut::new();
        encode(&records(), &mut wire);
        let last = wire.len() - 1;
        wire[last] ^= 1;
        assert!(matches!(decode(&mut wire, 1 << 20), Err(WireError::Checksum)));
    }

    #[test]
    fn a_checksummed_body_of_garbage_does_not_decode() {
        let body = [0xffu8; 12];
        let mut wire = BytesMut::new();
        wire.put_u32_le(body.len() as u32);
        wire.put_u32_le(crc32c::crc32c(&body));
        wire.put_slice(&body);
        assert!(matches!(decode(&mut wire, 1 << 20), Err(WireError::Decode(_))));
    }

    proptest! {
        /// Any bytes at all: decoding returns a message, "incomplete" or an error — never panics.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut input = BytesMut::from(&bytes[..]);
            for _ in 0..8 {
                match decode(&mut input, 4096) {
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }

    #[tokio::test]
    async fn try_next_returns_what_already_arrived_and_never_waits() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut sender = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (receiver, _) = listener.accept().await.unwrap();
        let (mut read_half, _write_half) = receiver.into_split();
        let mut bytes = BytesMut::new();
        encode(&records(), &mut bytes);
        encode(&Message::Ack { epoch: 2, durable_index: 6 }, &mut bytes);
        sender.write_all(&bytes).await.unwrap();
        let mut reader = PeerReader::new(1 << 20);
        assert_eq!(reader.next(&mut read_half).await.unwrap(), records());
        assert_eq!(reader.try_next(&mut read_half).unwrap(), Some(Message::Ack { epoch: 2, durable_index: 6 }));
        assert_eq!(reader.try_next(&mut read_half).unwrap(), None, "nothing more arrived");
        // Half a frame: not a message yet; the rest completes it.
        bytes.clear();
        encode(&records(), &mut bytes);
        sender.write_all(&bytes[..5]).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(reader.try_next(&mut read_half).unwrap(), None);
        sender.write_all(&bytes[5..]).await.unwrap();
        assert_eq!(reader.next(&mut read_half).await.unwrap(), records());
        // A closed socket is left for `next` to report.
        drop(sender);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(reader.try_next(&mut read_half).unwrap(), None);
        assert!(matches!(reader.next(&mut read_half).await, Err(WireError::Closed { partial: false })));
    }
}

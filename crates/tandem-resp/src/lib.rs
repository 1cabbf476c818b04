//! RESP2/RESP3 codec for tandem: pure framing, no I/O.
//!
//! The server appends what it reads to a `BytesMut` and calls [`parse_request`]
//! until it returns `Ok(None)`; replies are built as [`Frame`]s and written with
//! [`Frame::encode`] in the connection's [`Protocol`]. Client tools read replies
//! with [`decode_frame`]. Every length read from the wire is bounded by [`Limits`].
//!
//! Layout, one line per module:
//! * `limits`  — [`Limits`]: the bounds every parser obeys, and their defaults.
//! * `error`   — [`ProtocolError`]: malformed input, with Redis's reply texts.
//! * `frame`   — [`Frame`] and [`Protocol`]: one RESP value and the dialect it is written in.
//! * `encode`  — [`Frame::encode`] and [`format_double`]: writing frames, downgrading RESP3 types for RESP2.
//! * `scan`    — primitives shared by the parsers: CRLF lines, strict integers, length-prefixed payloads.
//! * `request` — [`parse_request`]: the server's hot path, multibulk requests and the dispatch to inline.
//! * `inline`  — inline (telnet) requests, split like Redis's `sdssplitargs`.
//! * `decode`  — [`decode_frame`]: every RESP2/RESP3 type, for reading replies.

// Every public item carries a one-line doc comment saying what it is for.
#![warn(missing_docs)]

mod decode;
mod encode;
mod error;
mod frame;
mod inline;
mod limits;
mod request;
mod scan;

pub use decode::decode_frame;
pub use encode::format_double;
pub use error::ProtocolError;
pub use frame::{Frame, Protocol};
pub use limits::{Limits, ARRAY_LEN_MAX_DEFAULT, BULK_BYTES_MAX_DEFAULT, DEPTH_MAX_DEFAULT, INLINE_BYTES_MAX_DEFAULT};
pub use request::parse_request;

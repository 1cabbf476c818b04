//! One RESP value, and the protocol version a connection speaks.

use bytes::Bytes;

/// The RESP dialect a connection speaks; `HELLO 3` moves a connection to RESP3.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// RESP2, the default for new connections: RESP3-only types are downgraded when encoded.
    #[default]
    Resp2,
    /// RESP3: every [`Frame`] type is encoded natively.
    Resp3,
}

/// One RESP value; see [`Frame::encode`] for how RESP3-only types are written for RESP2.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// `+<text>\r\n`; CR and LF in the text are written as spaces.
    Simple(Bytes),
    /// `-<message>\r\n`, the message starting with its code (`ERR ...`); CR and LF are written as spaces.
    Error(Bytes),
    /// `:<value>\r\n`.
    Integer(i64),
    /// `$<length>\r\n<bytes>\r\n`, binary safe.
    Bulk(Bytes),
    /// The null bulk string: RESP2 `$-1\r\n`, RESP3 `_\r\n`.
    Null,
    /// The null array: RESP2 `*-1\r\n`, RESP3 `_\r\n`.
    NullArray,
    /// `*<count>\r\n` followed by the elements.
    Array(Vec<Frame>),
    /// RESP3 `%<pairs>\r\n` followed by key, value, key, value...; RESP2: a flat array.
    Map(Vec<(Frame, Frame)>),
    /// RESP3 `~<count>\r\n` followed by the elements; RESP2: an array.
    Set(Vec<Frame>),
    /// Pairs that RESP3 sends as an array of two-element arrays and RESP2 as
    /// one flat array (Redis's `WITHSCORES` replies). Written, never read:
    /// the decoder returns the arrays it sees.
    Pairs(Vec<(Frame, Frame)>),
    /// RESP3 out-of-band `><count>\r\n` followed by the elements; RESP2: an array.
    Push(Vec<Frame>),
    /// RESP3 `,<value>\r\n` (`inf`, `-inf`, `nan`); RESP2: a bulk string of [`crate::format_double`].
    Double(f64),
    /// RESP3 `#t\r\n` / `#f\r\n`; RESP2: the integer 1 or 0.
    Boolean(bool),
    /// RESP3 `(<digits>\r\n`; RESP2: a bulk string of the digits.
    BigNumber(Bytes),
    /// RESP3 `!<length>\r\n<message>\r\n`; RESP2: a simple error.
    BulkError(Bytes),
    /// RESP3 `=<length>\r\n<format>:<text>\r\n` (format `txt` or `mkd`); RESP2: a bulk string of the text.
    Verbatim {
        /// The 3-byte format, `txt` or `mkd`.
        format: [u8; 3],
        /// The text, without the format prefix.
        text: Bytes,
    },
}

impl Frame {
    /// The `+OK` reply.
    pub fn ok() -> Frame {
        Frame::Simple(Bytes::from_static(b"OK"))
    }

    /// A simple-string reply from static text, e.g. `Frame::simple("PONG")`.
    pub fn simple(text: &'static str) -> Frame {
        Frame::Simple(Bytes::from_static(text.as_bytes()))
    }

    /// An error reply; `message` has no leading `-` and starts with its code, e.g. `"ERR syntax error"`.
    pub fn error(message: impl Into<String>) -> Frame {
        Frame::Error(Bytes::from(message.into()))
    }

    /// A bulk-string reply.
    pub fn bulk(data: impl Into<Bytes>) -> Frame {
        Frame::Bulk(data.into())
    }
}

//! Malformed input. Display texts are Redis's own, without the `ERR ` code:
//! the server replies `-ERR <text>` and then closes the connection, as Redis does.

/// Why bytes from the wire are not valid RESP; the connection cannot be resynchronised after one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// `*<count>` is not an integer, is below -1, or exceeds [`crate::Limits::array_len_max`].
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// `$<length>` (or `!`, `=`) is not an integer, is negative, or exceeds [`crate::Limits::bulk_bytes_max`].
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// An argument of a multibulk request does not start with `$`.
    #[error("Protocol error: expected '$', got '{found}'")]
    ExpectedBulkPrefix {
        /// The byte found instead, as a Latin-1 character.
        found: char,
    },
    /// The `*<count>` line is longer than [`crate::Limits::inline_bytes_max`].
    #[error("Protocol error: too big mbulk count string")]
    MultibulkCountTooLong,
    /// The `$<length>` line is longer than [`crate::Limits::inline_bytes_max`].
    #[error("Protocol error: too big bulk count string")]
    BulkCountTooLong,
    /// An inline request line is longer than [`crate::Limits::inline_bytes_max`].
    #[error("Protocol error: too big inline request")]
    InlineTooLong,
    /// An inline request has an unclosed quote, or a closing quote followed by something other than a space.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// The payload of a bulk string is not followed by `\r\n`.
    #[error("Protocol error: expected CRLF after bulk data")]
    ExpectedCrlfAfterBulk,
    /// A `\r` that ends a line is followed by something other than `\n`.
    #[error("Protocol error: expected CRLF at end of line")]
    ExpectedCrlf,
    /// A one-line reply (`+`, `-`, `:`, `,`, `(`, ...) is longer than [`crate::Limits::inline_bytes_max`].
    #[error("Protocol error: too big line")]
    LineTooLong,
    /// A reply starts with a byte that is no RESP2 or RESP3 type.
    #[error("Protocol error: unknown frame type '{found}'")]
    UnknownFrameType {
        /// The byte found, as a Latin-1 character.
        found: char,
    },
    /// A `:` reply is not a 64-bit integer.
    #[error("Protocol error: invalid integer")]
    InvalidInteger,
    /// A `,` reply is not a double.
    #[error("Protocol error: invalid double")]
    InvalidDouble,
    /// A `#` reply is neither `t` nor `f`.
    #[error("Protocol error: invalid boolean")]
    InvalidBoolean,
    /// A `_` reply has text before its CRLF.
    #[error("Protocol error: invalid null")]
    InvalidNull,
    /// A `(` reply is not an optional `-` followed by digits.
    #[error("Protocol error: invalid big number")]
    InvalidBigNumber,
    /// A `=` reply is shorter than 4 bytes or lacks the `:` after its 3-byte format.
    #[error("Protocol error: invalid verbatim string")]
    InvalidVerbatim,
    /// A `%`, `~`, `>` or `|` length is not an integer, is negative, or exceeds [`crate::Limits::array_len_max`].
    #[error("Protocol error: invalid aggregate length")]
    InvalidAggregateLength,
    /// Aggregates are nested deeper than [`crate::Limits::depth_max`].
    #[error("Protocol error: aggregates nested too deep")]
    NestingTooDeep,
}

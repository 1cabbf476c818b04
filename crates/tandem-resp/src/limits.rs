//! The bounds every parser in this crate obeys.
//!
//! Invariant: a length read from the wire never sizes an allocation. Parsers
//! first check that a whole request or frame is in the buffer, and only then
//! allocate, for the elements that are really there.

/// Default for [`Limits::bulk_bytes_max`]: 512 MiB, Redis's `proto-max-bulk-len`.
pub const BULK_BYTES_MAX_DEFAULT: usize = 512 * 1024 * 1024;

/// Default for [`Limits::array_len_max`]: 1 Mi elements (arguments of one request).
pub const ARRAY_LEN_MAX_DEFAULT: usize = 1_048_576;

/// Default for [`Limits::depth_max`]: nesting of aggregates in a reply.
pub const DEPTH_MAX_DEFAULT: usize = 32;

/// Default for [`Limits::inline_bytes_max`]: 64 KiB, Redis's `PROTO_INLINE_MAX_SIZE`.
pub const INLINE_BYTES_MAX_DEFAULT: usize = 64 * 1024;

/// Length of the longest integer text, `-9223372036854775808`.
pub(crate) const INTEGER_TEXT_BYTES_MAX: usize = 20;

// Every length header ("*<n>", "$<n>") is a line, so the line limit must admit the longest integer.
const _: () = assert!(INLINE_BYTES_MAX_DEFAULT >= INTEGER_TEXT_BYTES_MAX);
// Lengths are parsed as i64 and then compared with these limits.
const _: () = assert!(BULK_BYTES_MAX_DEFAULT as u64 <= i64::MAX as u64);
const _: () = assert!(ARRAY_LEN_MAX_DEFAULT as u64 <= i64::MAX as u64);
// Decoding recurses once per nesting level: keep the default far from stack exhaustion.
const _: () = assert!(DEPTH_MAX_DEFAULT <= 128);

/// Bounds on what the parsers accept from the wire; exceeding one is a [`crate::ProtocolError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string (`$`, `!`, `=` payload) in bytes.
    pub bulk_bytes_max: usize,
    /// Largest element count of one array, set or push, and pair count of one map or attribute.
    pub array_len_max: usize,
    /// Deepest nesting of aggregates in [`crate::decode_frame`]; decoding recurses once per level, so keep it small.
    pub depth_max: usize,
    /// Longest line without its terminator: an inline request, a length header or a one-line reply such as `+OK`.
    ///
    /// Keep it at least 20 bytes, the longest integer text, or valid length headers are rejected.
    pub inline_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            bulk_bytes_max: BULK_BYTES_MAX_DEFAULT,
            array_len_max: ARRAY_LEN_MAX_DEFAULT,
            depth_max: DEPTH_MAX_DEFAULT,
            inline_bytes_max: INLINE_BYTES_MAX_DEFAULT,
        }
    }
}

//! Command errors with Redis's exact texts, so existing clients react to them.

use tandem_resp::Frame;

/// An error reply. `Display` gives the full Redis text, code first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The key holds a value of another type.
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,
    /// An argument that must be an integer is not one.
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    /// An argument that must be a float is not one.
    #[error("ERR value is not a valid float")]
    NotFloat,
    /// Unknown option or bad option combination.
    #[error("ERR syntax error")]
    Syntax,
    /// An increment or decrement would overflow.
    #[error("ERR increment or decrement would overflow")]
    Overflow,
    /// The stored value is not an integer (INCR family).
    #[error("ERR hash value is not an integer")]
    HashNotInteger,
    /// The key does not exist (RENAME, LSET).
    #[error("ERR no such key")]
    NoSuchKey,
    /// An index outside the list (LSET).
    #[error("ERR index out of range")]
    IndexOutOfRange,
    /// The number of arguments does not fit the command.
    #[error("ERR wrong number of arguments for '{0}' command")]
    WrongArity(String),
    /// The command name is unknown.
    #[error("ERR unknown command '{name}', with args beginning with: {args}")]
    UnknownCommand { name: String, args: String },
    /// Writes refused because memory is above `maxmemory`.
    #[error("OOM command not allowed when used memory > 'maxmemory'.")]
    OutOfMemory,
    /// A write sent to a standby (Redis replicas answer the same, so clients reconnect).
    #[error("READONLY You can't write against a read only replica.")]
    ReadOnly,
    /// Any other error; the text includes its code (`ERR …`).
    #[error("{0}")]
    Other(String),
}

impl CommandError {
    /// An `ERR …` error with the given message.
    pub fn err(message: impl std::fmt::Display) -> CommandError {
        CommandError::Other(format!("ERR {message}"))
    }

    /// The reply frame for this error.
    pub fn to_frame(&self) -> Frame {
        Frame::error(self.to_string())
    }
}

impl From<CommandError> for Frame {
    fn from(error: CommandError) -> Frame {
        error.to_frame()
    }
}

/// The `ERR unknown command` error, quoting the arguments like Redis does.
pub fn unknown_command(name: &[u8], args: &[bytes::Bytes]) -> CommandError {
    // Like Redis: each argument quoted and followed by a space, until 128 characters.
    let mut quoted = String::new();
    for arg in args {
        if quoted.len() >= 128 {
            break;
        }
        let room = 128 - quoted.len();
        quoted.push_str(&format!("'{}' ", printable(arg, room)));
    }
    CommandError::UnknownCommand { name: printable(name, 128), args: quoted }
}

/// Bytes as text for an error message: lossy, control characters replaced, cut to `max` chars.
pub fn printable(bytes: &[u8], max: usize) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .take(max)
        .map(|character| if character.is_control() { ' ' } else { character })
        .collect()
}

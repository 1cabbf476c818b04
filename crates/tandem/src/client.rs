//! A small async RESP client, used by `tandem demo` and the admin commands
//! (and by tests as a second, independent client beside the `redis` crate).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tandem_resp::{decode_frame, Frame, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a call failed. A timeout or broken connection leaves the outcome of
/// a write *unknown*: it may or may not have been applied.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting, reading or writing failed.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    /// No reply within the deadline.
    #[error("timed out")]
    Timeout,
    /// The server closed the connection.
    #[error("connection closed by the server")]
    Closed,
    /// The reply did not parse.
    #[error("bad reply: {0}")]
    Protocol(String),
}

/// One connection to a RESP server.
pub struct Client {
    socket: TcpStream,
    input: BytesMut,
    output: BytesMut,
    timeout: Duration,
    limits: Limits,
}

impl Client {
    /// Connects with a deadline for the connection and for every call.
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Client, ClientError> {
        let socket =
            tokio::time::timeout(timeout, TcpStream::connect(addr)).await.map_err(|_| ClientError::Timeout)??;
        socket.set_nodelay(true)?;
        Ok(Client {
            socket,
            input: BytesMut::with_capacity(4096),
            output: BytesMut::new(),
            timeout,
            limits: Limits::default(),
        })
    }

    /// Sends one command and waits for its reply (errors come back as `Frame::Error`).
    pub async fn call(&mut self, args: &[&[u8]]) -> Result<Frame, ClientError> {
        self.output.clear();
        encode_command(args, &mut self.output);
        let deadline = self.timeout;
        tokio::time::timeout(deadline, self.exchange()).await.map_err(|_| ClientError::Timeout)?
    }

    async fn exchange(&mut self) -> Result<Frame, ClientError> {
        self.socket.write_all(&self.output).await?;
        loop {
            match decode_frame(&mut self.input, &self.limits) {
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(error) => return Err(ClientError::Protocol(error.to_string())),
            }
            if self.socket.read_buf(&mut self.input).await? == 0 {
                return Err(ClientError::Closed);
            }
        }
    }
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode_command(args: &[&[u8]], out: &mut BytesMut) {
    out.put_u8(b'*');
    out.put_slice(args.len().to_string().as_bytes());
    out.put_slice(b"\r\n");
    for arg in args {
        out.put_u8(b'$');
        out.put_slice(arg.len().to_string().as_bytes());
        out.put_slice(b"\r\n");
        out.put_slice(arg);
        out.put_slice(b"\r\n");
    }
}

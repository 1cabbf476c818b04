//! A small HTTP/1.1 client for the admin endpoints: `tandem status|switchover|promote`
//! ask the members with it, and a node forwards a switchover to the active with it.
//!
//! Hand-written over `std::net::TcpStream` (no HTTP client is in the dependency tree, and
//! these requests are few and tiny): one request per connection (`Connection: close`),
//! every step under a timeout, the response bounded by `ADMIN_HTTP_BODY_BYTES_MAX`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::limits;

/// An HTTP response: the status code and the body as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code, e.g. 200.
    pub status: u16,
    /// The body (chunked transfer decoded).
    pub body: String,
}

/// Why a request failed before a response arrived.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Connecting, sending or receiving failed or timed out.
    #[error("{address}: {source}")]
    Io {
        /// The address asked.
        address: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
    /// The bytes received are not an HTTP response this client understands.
    #[error("{address}: malformed HTTP response: {reason}")]
    Malformed {
        /// The address asked.
        address: SocketAddr,
        /// What was wrong.
        reason: String,
    },
}

/// Sends one request and reads the whole response. `connect_timeout` bounds the connection;
/// `response_timeout` bounds each read (a switchover may take seconds to answer).
pub fn request(
    address: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    response_timeout: Duration,
) -> Result<Response, RequestError> {
    let io = |source| RequestError::Io { address, source };
    let connect_timeout = Duration::from_millis(limits::ADMIN_HTTP_TIMEOUT_MS);
    let mut stream = TcpStream::connect_timeout(&address, connect_timeout).map_err(io)?;
    stream.set_write_timeout(Some(connect_timeout)).map_err(io)?;
    stream.set_read_timeout(Some(response_timeout.max(Duration::from_millis(1)))).map_err(io)?;
    let body = body.unwrap_or("");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).map_err(io)?;
    stream.write_all(body.as_bytes()).map_err(io)?;
    let mut received = Vec::new();
    let limit = limits::ADMIN_HTTP_BODY_BYTES_MAX as u64 + 64 * 1024;
    (&mut stream).take(limit).read_to_end(&mut received).map_err(io)?;
    parse_response(&received).map_err(|reason| RequestError::Malformed { address, reason })
}

/// Parses a complete response (read until the server closed the connection).
pub fn parse_response(bytes: &[u8]) -> Result<Response, String> {
    let split = bytes.windows(4).position(|window| window == b"\r\n\r\n").ok_or("no end of headers")?;
    let head = std::str::from_utf8(&bytes[..split]).map_err(|_| "headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("no status line")?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("bad status line `{status_line}`"))?;
    let mut chunked = false;
    let mut content_length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(value.parse::<usize>().map_err(|_| format!("bad content-length `{value}`"))?);
        }
    }
    let raw = &bytes[split + 4..];
    let body = if chunked {
        decode_chunked(raw)?
    } else {
        match content_length {
            Some(length) if length > raw.len() => {
                return Err(format!("body cut short: {} of {length} bytes", raw.len()))
            }
            Some(length) => raw[..length].to_vec(),
            None => raw.to_vec(),
        }
    };
    if body.len() > limits::ADMIN_HTTP_BODY_BYTES_MAX {
        return Err(format!("body larger than {} bytes", limits::ADMIN_HTTP_BODY_BYTES_MAX));
    }
    let body = String::from_utf8(body).map_err(|_| "body is not UTF-8")?;
    Ok(Response { status, body })
}

fn decode_chunked(mut raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|window| window == b"\r\n").ok_or("chunk size line not ended")?;
        let size_text = std::str::from_utf8(&raw[..line_end]).map_err(|_| "chunk size is not text")?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| format!("bad chunk size `{size_text}`"))?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if raw.len() < size + 2 || body.len() + size > limits::ADMIN_HTTP_BODY_BYTES_MAX {
            return Err("chunk cut short or too large".into());
        }
        body.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// [`request`] from async code: runs it on the blocking pool.
pub async fn request_async(
    address: SocketAddr,
    method: &'static str,
    path: &'static str,
    body: Option<String>,
    response_timeout: Duration,
) -> Result<Response, RequestError> {
    tokio::task::spawn_blocking(move || request(address, method, path, body.as_deref(), response_timeout))
        .await
        .unwrap_or_else(|error| {
            Err(RequestError::Io { address, source: std::io::Error::other(format!("request task failed: {error}")) })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_and_chunked_bodies() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        assert_eq!(parse_response(plain).unwrap(), Response { status: 200, body: "hello".into() });
        let chunked = b"HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), Response { status: 409, body: "abcde".into() });
        let until_close = b"HTTP/1.1 200 OK\r\n\r\n{}";
        assert_eq!(parse_response(until_close).unwrap().body, "{}");
    }

    #[test]
    fn refuses_malformed_responses() {
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n").is_err());
    }
}

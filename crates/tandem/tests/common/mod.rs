//! Shared helpers for the integration tests: a real `tandem` process per
//! test, on a free loopback port with a fresh data directory, and raw-socket
//! access for tests that must see the exact bytes on the wire.
//!
//! Every wait here is bounded; a server that does not come up, or does not
//! stop, fails the test with its stderr attached.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a server may take to answer its first PING.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a server may take to exit after SIGTERM or SHUTDOWN.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a raw-socket read waits for a complete reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts at finding a free port when another process takes ours first.
const PORT_ATTEMPTS: usize = 5;

/// The path of the `tandem` binary under test.
pub fn tandem_binary() -> &'static str {
    env!("CARGO_BIN_EXE_tandem")
}

/// A `tandem` command with a clean environment for logging.
pub fn tandem_command() -> Command {
    let mut command = Command::new(tandem_binary());
    command.env_remove("RUST_LOG").env("NO_COLOR", "1");
    command
}

pub use tandem_testkit::ports::free_port;

/// A running `tandem server` child process with its own data directory.
pub struct TestServer {
    child: Option<Child>,
    temp: TempDir,
    data_dir: PathBuf,
    port: u16,
    extra_args: Vec<String>,
    config_file: Option<PathBuf>,
    /// Processes started so far; each writes its own stderr file.
    runs: u32,
}

impl TestServer {
    /// Starts a server with default options (appendfsync always).
    pub fn start() -> TestServer {
        TestServer::with_args(&[])
    }

    /// Starts a server with extra `tandem server` flags.
    pub fn with_args(args: &[&str]) -> TestServer {
        TestServer::with_config(None, args)
    }

    /// Starts a server with a TOML config file (written into the temp dir) and extra flags.
    pub fn with_config(config_toml: Option<&str>, args: &[&str]) -> TestServer {
        let temp = tempfile::Builder::new().prefix("tandem-test-").tempdir().expect("create a temp dir");
        let data_dir = temp.path().join("data");
        let config_file = config_toml.map(|text| {
            let path = temp.path().join("tandem.toml");
            std::fs::write(&path, text).expect("write the config file");
            path
        });
        let mut server = TestServer {
            child: None,
            temp,
            data_dir,
            port: 0,
            extra_args: args.iter().map(|arg| arg.to_string()).collect(),
            config_file,
            runs: 0,
        };
        for attempt in 1..=PORT_ATTEMPTS {
            server.port = free_port();
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(Exited(status)) => {
                    let stderr = server.stderr();
                    if stderr.contains("cannot listen on") && attempt < PORT_ATTEMPTS {
                        continue; // someone took the port between our probe and the bind
                    }
                    panic!("tandem server exited with {status} before serving; stderr:\n{stderr}");
                }
            }
        }
        unreachable!("the loop returns or panics");
    }

    /// The client address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory (`--data-dir`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The log directory inside the data directory.
    pub fn log_dir(&self) -> PathBuf {
        self.data_dir.join("log")
    }

    /// A `redis://` URL for this server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A new `redis` crate connection (sync API).
    pub fn connection(&self) -> redis::Connection {
        let client = redis::Client::open(self.url()).expect("redis client");
        let connection = client.get_connection().expect("connect with the redis crate");
        connection.set_read_timeout(Some(REPLY_TIMEOUT)).expect("set read timeout");
        connection
    }

    /// A new raw socket to this server.
    pub fn raw(&self) -> RawConnection {
        RawConnection::connect(self.addr())
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server is running").id()
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    /// The stderr of the current (or last) server process.
    pub fn stderr(&self) -> String {
        read_text(&self.stderr_path(self.runs))
    }

    /// SIGKILL, then wait for the process to be gone.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("kill9: the server is not running");
        child.kill().expect("SIGKILL the server");
        child.wait().expect("wait for the killed server");
    }

    /// SIGTERM, then wait (bounded) and assert a clean exit with code 0.
    pub fn stop(&mut self) {
        let pid = self.pid();
        // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
        let sent = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM to the server failed");
        let status = self.wait_exit();
        assert_eq!(status.code(), Some(0), "tandem did not exit cleanly after SIGTERM ({status}); stderr:\n{}", {
            self.stderr()
        });
    }

    /// Waits (bounded) for the server to exit by itself (after SHUTDOWN, or a refusal to start).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("wait_exit: the server is not running");
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                panic!("tandem did not exit within {EXIT_TIMEOUT:?}; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the server again on the same data directory and port, and waits until it serves.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart: the server is still running; kill9() or stop() it first");
        if let Err(Exited(status)) = self.spawn_and_wait() {
            panic!("tandem exited with {status} on restart instead of serving; stderr:\n{}", self.stderr());
        }
    }

    /// Starts the server again and expects it to refuse: returns its exit status and stderr.
    pub fn restart_expecting_failure(&mut self) -> (ExitStatus, String) {
        assert!(self.child.is_none(), "the server is still running");
        match self.spawn_and_wait() {
            Ok(()) => panic!("tandem started serving, but it was expected to refuse; stderr:\n{}", self.stderr()),
            Err(Exited(status)) => (status, self.stderr()),
        }
    }

    fn stderr_path(&self, run: u32) -> PathBuf {
        self.temp.path().join(format!("stderr.{run}.log"))
    }

    fn spawn_and_wait(&mut self) -> Result<(), Exited> {
        self.runs += 1;
        let stderr = File::create(self.stderr_path(self.runs)).expect("create the stderr file");
        let mut command = tandem_command();
        command.arg("server");
        if let Some(config) = &self.config_file {
            command.arg("--config").arg(config);
        }
        command
            .args(["--port", &self.port.to_string(), "--admin-port", "0"])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr));
        self.child = Some(command.spawn().expect("spawn tandem server"));
        self.wait_ready()
    }

    /// Polls with PING until the server answers (PONG, or NOAUTH when a password is set).
    fn wait_ready(&mut self) -> Result<(), Exited> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = self.addr();
        loop {
            let child = self.child.as_mut().expect("a spawned child");
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return Err(Exited(status));
            }
            if ping_answers(addr) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                panic!("tandem did not answer PING within {READY_TIMEOUT:?}; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- tandem server stderr (run {}) ----\n{}", self.runs, self.stderr());
        }
    }
}

/// A server process that exited before it served.
#[derive(Debug)]
struct Exited(ExitStatus);

fn read_text(path: &Path) -> String {
    strip_ansi(&String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()))
}

/// Removes terminal colour sequences, in case the log writer adds them anyway.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(character) = chars.next() {
        if character == '\u{1b}' {
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(character);
        }
    }
    out
}

fn ping_answers(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 64];
    match stream.read(&mut reply) {
        Ok(read) => reply[..read].starts_with(b"+PONG") || reply[..read].starts_with(b"-NOAUTH"),
        Err(_) => false,
    }
}

// Each test binary uses a different subset of these helpers.
#[allow(unused_imports)]
pub use tandem_testkit::seed::test_seed;

/// Polls `condition` every few milliseconds until it holds; panics with `what` after `within`.
pub fn poll_until(within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A server error as Redis sent it: code, a space, the message.
pub fn error_text(error: &redis::RedisError) -> String {
    match (error.code(), error.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_string(),
        _ => panic!("not a server error reply: {error:?}"),
    }
}

/// Runs a command that must fail and returns its error text (`ERR ...`, `WRONGTYPE ...`).
pub fn query_error(connection: &mut redis::Connection, command: &redis::Cmd) -> String {
    match command.query::<redis::Value>(connection) {
        Ok(value) => panic!("{:?} succeeded with {value:?}; an error was expected", command_name(command)),
        Err(error) => error_text(&error),
    }
}

fn command_name(command: &redis::Cmd) -> String {
    String::from_utf8_lossy(&command.get_packed_command()).replace("\r\n", " ")
}

/// Encodes a request as a RESP multibulk array.
pub fn encode_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A plain TCP connection that sends and reads raw RESP bytes.
pub struct RawConnection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl RawConnection {
    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> RawConnection {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("raw connect");
        stream.set_nodelay(true).expect("nodelay");
        RawConnection { stream, buffer: Vec::new() }
    }

    /// Wraps an already connected stream.
    /// The underlying socket (e.g. to clone it for a writer thread).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    pub fn from_stream(stream: TcpStream) -> RawConnection {
        RawConnection { stream, buffer: Vec::new() }
    }

    /// Writes bytes as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("raw write");
    }

    /// Writes bytes, ignoring errors (the server may already have closed the connection).
    pub fn send_lossy(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// Sends one multibulk request and returns its reply's bytes.
    pub fn command(&mut self, args: &[&str]) -> Vec<u8> {
        let args: Vec<&[u8]> = args.iter().map(|arg| arg.as_bytes()).collect();
        self.send(&encode_command(&args));
        self.read_frame()
    }

    /// Like [`RawConnection::command`], with the reply as (lossy) text.
    pub fn command_text(&mut self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.command(args)).into_owned()
    }

    /// Reads exactly one complete RESP frame; panics after [`REPLY_TIMEOUT`] or at EOF.
    pub fn read_frame(&mut self) -> Vec<u8> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            if let Some(length) = frame_length(&self.buffer) {
                return self.buffer.drain(..length).collect();
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            assert!(!remaining.is_zero(), "no complete reply within {REPLY_TIMEOUT:?}; have {:?}", self.lossy());
            match self.fill(remaining) {
                Fill::Data => {}
                Fill::Eof => panic!("connection closed before a complete reply; have {:?}", self.lossy()),
                Fill::Timeout => {}
            }
        }
    }

    /// Reads one complete frame, or `None` if the server closes the connection first.
    pub fn try_read_frame(&mut self) -> Option<Vec<u8>> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            if let Some(length) = frame_length(&self.buffer) {
                return Some(self.buffer.drain(..length).collect());
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            assert!(!remaining.is_zero(), "no complete reply within {REPLY_TIMEOUT:?}; have {:?}", self.lossy());
            if let Fill::Eof = self.fill(remaining) {
                return None;
            }
        }
    }

    /// Reads `count` complete frames.
    pub fn read_frames(&mut self, count: usize) -> Vec<Vec<u8>> {
        (0..count).map(|_| self.read_frame()).collect()
    }

    /// Reads until the server closes the connection; returns every byte received
    /// (buffered ones included). Panics if it stays open for [`REPLY_TIMEOUT`].
    pub fn read_until_closed(&mut self) -> Vec<u8> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            assert!(!remaining.is_zero(), "the server kept the connection open; received {:?}", self.lossy());
            if let Fill::Eof = self.fill(remaining) {
                return std::mem::take(&mut self.buffer);
            }
        }
    }

    /// Whatever arrives within `window` (for tests that must see that nothing comes).
    pub fn read_for(&mut self, window: Duration) -> Vec<u8> {
        let deadline = Instant::now() + window;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            if let Fill::Eof = self.fill(remaining) {
                break;
            }
        }
        std::mem::take(&mut self.buffer)
    }

    /// Half-closes the sending side (the server sees EOF after our bytes).
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    fn lossy(&self) -> String {
        String::from_utf8_lossy(&self.buffer).into_owned()
    }

    fn fill(&mut self, within: Duration) -> Fill {
        self.stream.set_read_timeout(Some(within.max(Duration::from_millis(1)))).expect("set read timeout");
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Fill::Eof,
            Ok(read) => {
                self.buffer.extend_from_slice(&chunk[..read]);
                Fill::Data
            }
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Fill::Timeout,
            Err(error) if error.kind() == ErrorKind::Interrupted => Fill::Data,
            // A reset after the server closed is an end of stream for these tests.
            Err(_) => Fill::Eof,
        }
    }
}

enum Fill {
    Data,
    Eof,
    Timeout,
}

/// The byte length of the first complete RESP2/RESP3 frame in `bytes`, if it is all there.
pub fn frame_length(bytes: &[u8]) -> Option<usize> {
    let line_end = bytes.windows(2).position(|pair| pair == b"\r\n")?;
    let header = std::str::from_utf8(&bytes[1..line_end]).ok();
    let after_line = line_end + 2;
    match bytes[0] {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Some(after_line),
        b'$' | b'!' | b'=' => {
            let length: i64 = header?.parse().ok()?;
            if length < 0 {
                return Some(after_line);
            }
            let end = after_line + length as usize + 2;
            (bytes.len() >= end).then_some(end)
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let count: i64 = header?.parse().ok()?;
            let elements = if matches!(bytes[0], b'%' | b'|') { count * 2 } else { count };
            let mut at = after_line;
            for _ in 0..elements.max(0) {
                at += frame_length(&bytes[at..])?;
            }
            Some(at)
        }
        other => panic!("not a RESP frame type: {:?} in {:?}", other as char, String::from_utf8_lossy(bytes)),
    }
}

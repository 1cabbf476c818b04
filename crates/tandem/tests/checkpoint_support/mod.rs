//! Helpers for the checkpoint tests: an in-process database with a
//! checkpointer, and real `tandem` processes that can be killed or crashed
//! at a named fail point.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tandem_testkit::ports::free_port;

use bytes::Bytes;
use tandem::checkpoint::policy::Schedule;
use tandem::checkpoint::{Checkpointer, Outcome, Requested, Settings};
use tandem::db::Database;
use tandem_log::{FsyncPolicy, LogOptions, NodeId};

/// Log options with small segments, so that truncation behind a checkpoint has segments to remove.
pub fn small_log() -> LogOptions {
    LogOptions { segment_bytes_max: 4096, fsync: FsyncPolicy::Always, ..LogOptions::default() }
}

/// A schedule that never fires on its own: tests take checkpoints explicitly.
pub const MANUAL: Schedule = Schedule {
    full_interval_ms: 0,
    full_changes_min: 1,
    incremental_interval_ms: 0,
    incremental_changes_min: 1,
    chain_incrementals_max: 64,
    retry_after_failure_ms: 0,
};

/// An open database and its checkpointer.
pub struct Node {
    pub db: Database,
    pub checkpoints: Arc<Checkpointer>,
}

impl Node {
    /// Opens `data_dir` as node `node` keeping `retain_full` full checkpoints.
    pub fn open(data_dir: &Path, node: u32, retain_full: u32) -> Result<Node, tandem::db::OpenError> {
        let db = Database::open(data_dir, small_log(), NodeId(node))?;
        let settings = Settings {
            schedule: MANUAL,
            retain_full,
            node,
            dir: tandem::checkpoint::file::directory(data_dir),
            log_dir: tandem::db::log_dir(data_dir),
        };
        let restored = db.restored().clone();
        let checkpoints =
            Arc::new(Checkpointer::new(settings, &restored.loaded, restored.base_generation, tandem::db::unix_ms()));
        Ok(Node { db, checkpoints })
    }

    /// Runs a command (name first), returning the reply.
    pub fn run(&self, words: &[&str]) -> tandem_resp::Frame {
        let args: Vec<Bytes> = words.iter().map(|word| Bytes::copy_from_slice(word.as_bytes())).collect();
        let spec = tandem::cmd::lookup(&args[0]).expect("a known command");
        self.db.execute(spec, &args).reply
    }

    /// Takes a checkpoint and waits until it is durable; returns its id.
    pub fn checkpoint(&self, requested: Requested) -> u64 {
        let started = self.checkpoints.start(&self.db, requested).expect("no checkpoint running");
        match started.outcome.blocking_recv().expect("an outcome") {
            Outcome::Done(verified) => verified.id,
            Outcome::Failed(message) => panic!("checkpoint failed: {message}"),
        }
    }

    /// Waits until the log's writer has written every record appended so far, so that
    /// its segments on disk are the ones a checkpoint's retention then finds.
    pub fn wait_log_written(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.db.progress().written() < self.db.last_index() {
            assert!(std::time::Instant::now() < deadline, "the log writer did not catch up within 10 s");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// The digest of the keyspace.
    pub fn digest(&self) -> u64 {
        self.db.with_keyspace(|keyspace| keyspace.digest())
    }

    /// Closes the log cleanly.
    pub fn close(self) {
        self.db.close().unwrap();
    }
}

/// The checkpoint files of a data directory, ascending by id.
pub fn checkpoint_files(data_dir: &Path) -> Vec<PathBuf> {
    tandem::checkpoint::file::list(&tandem::checkpoint::file::directory(data_dir))
        .unwrap()
        .into_iter()
        .map(|listed| listed.path)
        .collect()
}

/// Flips one byte of a file.
pub fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = (offset as usize).min(bytes.len() - 1);
    bytes[at] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

/// A real `tandem server` process; killed when dropped, so a failing test
/// leaves no server behind.
pub struct Process {
    pub child: Child,
    pub port: u16,
    pub data_dir: PathBuf,
    pub stderr: PathBuf,
}

impl Process {
    /// Starts a server on `data_dir` with extra flags, a config text and a fail point (or none).
    pub fn start(data_dir: &Path, config: &str, failpoint: Option<&str>) -> Process {
        std::fs::create_dir_all(data_dir).unwrap();
        let config_path = data_dir.with_extension("toml");
        std::fs::write(&config_path, config).unwrap();
        let port = free_port();
        let stderr = data_dir.with_extension(format!("{port}.stderr"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_tandem"));
        command
            .args(["server", "--port", &port.to_string(), "--admin-port", "0", "--config"])
            .arg(&config_path)
            .arg("--data-dir")
            .arg(data_dir)
            .env_remove("RUST_LOG")
            .env_remove(tandem::checkpoint::failpoint::VARIABLE)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap());
        if let Some(name) = failpoint {
            command.env(tandem::checkpoint::failpoint::VARIABLE, name);
        }
        let child = command.spawn().expect("start tandem");
        let process = Process { child, port, data_dir: data_dir.to_path_buf(), stderr };
        process.wait_ready();
        process
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(mut connection) = self.connect() {
                if redis::cmd("PING").query::<String>(&mut connection).is_ok() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("server did not start: {}", self.stderr_text());
    }

    /// A client connection.
    pub fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))?;
        client.get_connection_with_timeout(Duration::from_secs(5))
    }

    /// The server's stderr so far.
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// `kill -9`.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to end on its own (a fail point aborted it).
    pub fn wait_exit(mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One INFO field.
    pub fn info_field(&self, name: &str) -> String {
        let mut connection = self.connect().unwrap();
        let info: String = redis::cmd("INFO").arg("persistence").query(&mut connection).unwrap();
        info.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}:")).map(|value| value.trim().to_string()))
            .unwrap_or_else(|| panic!("no {name} in INFO"))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

//! Shipping to stable storage, `tandem archive verify` and `tandem restore --from`, with
//! real `tandem server` processes (issue #6). Invariants tested (`crate::archive`):
//! * writes reach the archive and the lag falls to 0; the archive verifies; a restore
//!   gives the same keyspace;
//! * a point-in-time restore lands exactly on the requested index (or time);
//! * a truncated segment, a flipped byte, a missing manifest entry are detected: restore
//!   stops at the last consistent point and says so;
//! * on a full archive disk clients keep being served, the manifest stays consistent, and
//!   shipping resumes once there is space again (needs root for a tmpfs; skipped otherwise).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{free_port, poll_until, tandem_command, TestServer};
use redis::Connection;
use tandem::archive::{manifest, segment};

/// How long shipping may take to catch up in these tests.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

/// A node configuration shipping to `archive` every 50 ms, with small log segments and
/// no automatic checkpoints (tests take them with CHECKPOINT).
fn config(archive: &Path) -> String {
    format!(
        "log_segment_size = \"64kb\"\ncheckpoint_full_seconds = 0\ncheckpoint_incremental_seconds = 0\n\
         [archive]\ndir = \"{}\"\ninterval_ms = 50\nsegment_size = \"64kb\"\n",
        archive.display()
    )
}

fn info_field(connection: &mut Connection, field: &str) -> String {
    let info: String = redis::cmd("INFO").arg("persistence").query(connection).expect("INFO persistence");
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")).map(|value| value.trim().to_string()))
        .unwrap_or_else(|| panic!("INFO has no {field}:\n{info}"))
}

fn last_index(connection: &mut Connection) -> u64 {
    info_field(connection, "log_last_index").parse().expect("a number")
}

fn digest(connection: &mut Connection) -> String {
    redis::cmd("DEBUG").arg("DIGEST").query(connection).expect("DEBUG DIGEST")
}

fn dbsize(connection: &mut Connection) -> u64 {
    redis::cmd("DBSIZE").query(connection).expect("DBSIZE")
}

/// Sets `count` keys `{prefix}{n}` with values of `value_bytes`; returns (log index, key) of each.
fn write_numbered(connection: &mut Connection, prefix: &str, count: usize, value_bytes: usize) -> Vec<(u64, String)> {
    let value = "v".repeat(value_bytes);
    (0..count)
        .map(|number| {
            let key = format!("{prefix}{number}");
            let () = redis::cmd("SET").arg(&key).arg(&value).query(connection).expect("SET");
            (last_index(connection), key)
        })
        .collect()
}

/// Waits until the archive holds every record of the log and the shipper reports no error.
fn wait_caught_up(connection: &mut Connection) {
    poll_until(CATCH_UP_TIMEOUT, "the archive caught up", || {
        info_field(connection, "archive_lag_records") == "0"
            && info_field(connection, "archive_last_index") == info_field(connection, "log_last_index")
            && info_field(connection, "archive_status") == "ok"
    });
}

/// Runs `tandem ARGS`; returns (exit code, stdout, stderr).
fn tandem(args: &[&str]) -> (i32, String, String) {
    let output: std::process::Output = tandem_command().args(args).output().expect("run tandem");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
}

fn restore(archive: &Path, data_dir: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["restore", "--from", path_str(archive), "--data-dir", path_str(data_dir)];
    args.extend_from_slice(extra);
    tandem(&args)
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// A server started on a restored data directory.
fn serve(data_dir: &Path) -> TestServer {
    TestServer::with_args(&["--data-dir", path_str(data_dir)])
}

fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir().expect("a temp dir")
}

#[test]
fn writes_are_shipped_and_a_restore_gives_the_same_keyspace() {
    let archive = temp_dir("tandem-archive-");
    let admin_port = free_port().to_string();
    let mut server = TestServer::with_config(Some(&config(archive.path())), &["--admin-port", &admin_port]);
    let mut connection = server.connection();
    write_numbered(&mut connection, "early", 150, 500);
    let _: i64 = redis::cmd("CHECKPOINT").arg("FULL").query(&mut connection).expect("CHECKPOINT FULL");
    write_numbered(&mut connection, "middle", 150, 500);
    let _: i64 = redis::cmd("CHECKPOINT").arg("INCREMENTAL").query(&mut connection).expect("CHECKPOINT");
    let () = redis::cmd("DEL").arg("early3").query(&mut connection).expect("DEL");
    write_numbered(&mut connection, "late", 150, 500);
    wait_caught_up(&mut connection);

    let metrics = http_get(&format!("127.0.0.1:{admin_port}"), "/metrics");
    for name in ["tandem_archive_lag_records 0", "tandem_archive_last_shipped_index", "tandem_archive_errors_total 0"] {
        assert!(metrics.contains(name), "/metrics lacks {name}:\n{metrics}");
    }
    let shipped = manifest::read(archive.path()).expect("a manifest");
    assert_eq!(shipped.checkpoints.len(), 2, "{shipped:?}");
    assert!(shipped.segments.len() > 2, "several archived segments: {shipped:?}");
    assert_eq!(shipped.last_index(), last_index(&mut connection));

    let (code, stdout, stderr) = tandem(&["archive", "verify", path_str(archive.path())]);
    assert_eq!(code, 0, "archive verify failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("ok: every checksum matches"), "{stdout}");

    let expected = (digest(&mut connection), dbsize(&mut connection), last_index(&mut connection));
    server.stop();
    let restored = temp_dir("tandem-restored-");
    let data_dir = restored.path().join("data");
    let (code, stdout, stderr) = restore(archive.path(), &data_dir, &[]);
    assert_eq!(code, 0, "restore failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("verified: the data directory opens at log index {}", expected.2)), "{stdout}");
    let (code, _, stderr) = restore(archive.path(), &data_dir, &[]);
    assert_eq!(code, 2, "a restore into a non-empty directory is refused");
    assert!(stderr.contains("not empty"), "{stderr}");

    let restored_server = serve(&data_dir);
    let mut connection = restored_server.connection();
    assert_eq!((digest(&mut connection), dbsize(&mut connection), last_index(&mut connection)), expected);

    // A damaged incremental checkpoint: the chain ends at the full one, the log covers the rest.
    let damaged = copy_archive(archive.path());
    let incremental = manifest::read(damaged.path()).expect("a manifest").checkpoints[1].clone();
    let path = incremental.path(damaged.path());
    let mut bytes = std::fs::read(&path).expect("read the checkpoint");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, &bytes).expect("write the damaged checkpoint");
    let (code, stdout, _) = tandem(&["archive", "verify", path_str(damaged.path())]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains(&incremental.name) && stdout.contains("a restore still reaches"), "{stdout}");
    let data_dir = restored.path().join("from-damaged");
    let (code, stdout, stderr) = restore(damaged.path(), &data_dir, &[]);
    assert_eq!(code, 0, "the full checkpoint and the log still reach the end:\n{stdout}\n{stderr}");
    assert!(stderr.contains("checkpoint skipped"), "{stderr}");
    drop(restored_server);
    let restored_server = serve(&data_dir);
    let mut connection = restored_server.connection();
    assert_eq!((digest(&mut connection), dbsize(&mut connection), last_index(&mut connection)), expected);
}

#[test]
fn restores_from_a_live_archive_while_writes_continue() {
    let archive = temp_dir("tandem-archive-");
    let server = TestServer::with_config(Some(&config(archive.path())), &[]);
    let mut connection = server.connection();
    write_numbered(&mut connection, "first", 100, 1000);
    wait_caught_up(&mut connection);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, mut connection) = (stop.clone(), server.connection());
        std::thread::spawn(move || {
            let mut written = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                write_numbered(&mut connection, &format!("live{written}-"), 20, 1000);
                written += 1;
            }
        })
    };
    // The shipper replaces the archive's last file every pass; a restore must not trip on it.
    for attempt in 0..5 {
        let restored = temp_dir("tandem-live-");
        let data_dir = restored.path().join("data");
        let (code, stdout, stderr) = restore(archive.path(), &data_dir, &[]);
        assert_eq!(code, 0, "restore {attempt} from the live archive:\n{stdout}\n{stderr}");
        assert!(stdout.contains("verified: the data directory opens"), "{stdout}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().expect("the writer");
}

#[test]
fn point_in_time_restore_lands_exactly_on_the_index_and_the_time() {
    let archive = temp_dir("tandem-archive-");
    let server = TestServer::with_config(Some(&config(archive.path())), &[]);
    let mut connection = server.connection();
    let mut written = write_numbered(&mut connection, "a", 40, 2000);
    let _: i64 = redis::cmd("CHECKPOINT").arg("FULL").query(&mut connection).expect("CHECKPOINT FULL");
    written.extend(write_numbered(&mut connection, "b", 40, 2000));
    std::thread::sleep(Duration::from_millis(30));
    let time = tandem::db::unix_ms();
    std::thread::sleep(Duration::from_millis(30));
    written.extend(write_numbered(&mut connection, "c", 40, 2000));
    wait_caught_up(&mut connection);

    // After the checkpoint (chain + log), before it (log from index 1), and the time.
    for position in [60, 15] {
        let (index, key) = written[position].clone();
        let (_, next_key) = written[position + 1].clone();
        let restored = temp_dir("tandem-pitr-");
        let data_dir = restored.path().join("data");
        let (code, stdout, stderr) = restore(archive.path(), &data_dir, &["--to-index", &index.to_string()]);
        assert_eq!(code, 0, "restore --to-index {index} failed:\n{stdout}\n{stderr}");
        let restored_server = serve(&data_dir);
        let mut restored_connection = restored_server.connection();
        assert_eq!(last_index(&mut restored_connection), index);
        let exists = |connection: &mut Connection, key: &str| -> bool {
            redis::cmd("EXISTS").arg(key).query::<u64>(connection).expect("EXISTS") == 1
        };
        assert!(exists(&mut restored_connection, &key), "{key} (record {index}) is missing");
        assert!(!exists(&mut restored_connection, &next_key), "{next_key} (record {}) is present", index + 1);
    }

    let restored = temp_dir("tandem-pitr-time-");
    let data_dir = restored.path().join("data");
    let (code, stdout, stderr) = restore(archive.path(), &data_dir, &["--to-time", &time.to_string()]);
    assert_eq!(code, 0, "restore --to-time failed:\n{stdout}\n{stderr}");
    let restored_server = serve(&data_dir);
    let mut restored_connection = restored_server.connection();
    assert_eq!(last_index(&mut restored_connection), written[79].0, "the last record written before the time");
}

#[test]
fn a_new_archive_of_a_truncated_log_starts_at_the_newest_full_checkpoint() {
    let plain = "log_segment_size = \"64kb\"\ncheckpoint_full_seconds = 0\ncheckpoint_incremental_seconds = 0\n\
                 checkpoint_retain_full = 1\n";
    let mut first = TestServer::with_config(Some(plain), &[]);
    let mut connection = first.connection();
    write_numbered(&mut connection, "old", 200, 1000);
    let _: i64 = redis::cmd("CHECKPOINT").arg("FULL").query(&mut connection).expect("CHECKPOINT FULL");
    write_numbered(&mut connection, "newer", 200, 1000);
    let _: i64 = redis::cmd("CHECKPOINT").arg("FULL").query(&mut connection).expect("CHECKPOINT FULL");
    write_numbered(&mut connection, "newest", 50, 1000);
    first.stop();
    let log_starts = std::fs::read_dir(first.log_dir())
        .expect("the log directory")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.strip_suffix(".log")?.parse::<u64>().ok())
        .min()
        .expect("a segment");
    assert!(log_starts > 1, "the log was truncated behind the checkpoint");

    let archive = temp_dir("tandem-archive-");
    let data_dir = path_str(first.data_dir()).to_string();
    let server = TestServer::with_config(Some(&config(archive.path())), &["--data-dir", &data_dir]);
    let mut connection = server.connection();
    wait_caught_up(&mut connection);
    let shipped = manifest::read(archive.path()).expect("a manifest");
    assert_eq!(shipped.checkpoints.len(), 1, "only the newest full checkpoint: {shipped:?}");
    assert_eq!(shipped.segments.first().map(|segment| segment.first_index), Some(log_starts));
    let (code, stdout, _) = tandem(&["archive", "verify", path_str(archive.path())]);
    assert_eq!(code, 0, "{stdout}");
    let restored = temp_dir("tandem-restored-");
    let restored_dir = restored.path().join("data");
    let (code, stdout, stderr) = restore(archive.path(), &restored_dir, &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let restored_server = serve(&restored_dir);
    let mut restored_connection = restored_server.connection();
    assert_eq!(digest(&mut restored_connection), digest(&mut connection));
}

/// An archive of 400 writes and no checkpoint, in several segment files; the server is
/// stopped. Returns the archive and (index, key) of each write.
fn stopped_archive() -> (tempfile::TempDir, Vec<(u64, String)>) {
    let archive = temp_dir("tandem-archive-");
    let mut server = TestServer::with_config(Some(&config(archive.path())), &[]);
    let mut connection = server.connection();
    let written = write_numbered(&mut connection, "k", 400, 1000);
    wait_caught_up(&mut connection);
    server.stop();
    (archive, written)
}

/// Copies the archive so that each damage gets its own.
fn copy_archive(archive: &Path) -> tempfile::TempDir {
    let copy = temp_dir("tandem-archive-copy-");
    let status = Command::new("cp").arg("-a").arg(format!("{}/.", archive.display())).arg(copy.path()).status();
    assert!(status.expect("run cp").success(), "copy the archive");
    copy
}

/// The middle archived segment of `archive`.
fn middle_segment(archive: &Path) -> manifest::Entry {
    let segments = manifest::read(archive).expect("a manifest").segments;
    assert!(segments.len() >= 3, "the test needs several segments: {segments:?}");
    segments[segments.len() / 2].clone()
}

/// Checks that verify fails naming `needle`, and that restore stops exactly at `expected`
/// and says so; a server on the result holds exactly the writes up to it.
fn assert_stops_at(archive: &Path, written: &[(u64, String)], expected: u64, needle: &str) {
    let (code, stdout, _) = tandem(&["archive", "verify", path_str(archive)]);
    assert_eq!(code, 1, "verify must fail:\n{stdout}");
    assert!(stdout.contains(needle) && stdout.contains(&format!("last consistent index: {expected}")), "{stdout}");
    let restored = temp_dir("tandem-damaged-");
    let data_dir = restored.path().join("data");
    let (code, stdout, stderr) = restore(archive, &data_dir, &[]);
    assert_eq!(code, 1, "restore must report stopping early:\n{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("STOPPED at the last consistent point, index {expected}")), "{stdout}");
    let server = serve(&data_dir);
    let mut connection = server.connection();
    assert_eq!(last_index(&mut connection), expected);
    let kept = written.iter().filter(|(index, _)| *index <= expected).count() as u64;
    assert_eq!(dbsize(&mut connection), kept, "exactly the writes up to index {expected}");
}

#[test]
fn damaged_archives_are_detected_and_restore_stops_at_the_last_consistent_point() {
    let (archive, written) = stopped_archive();
    let (code, stdout, _) = tandem(&["archive", "verify", path_str(archive.path())]);
    assert_eq!(code, 0, "the undamaged archive verifies:\n{stdout}");

    let truncated = copy_archive(archive.path());
    let entry = middle_segment(truncated.path());
    let path = entry.path(truncated.path());
    let file = std::fs::OpenOptions::new().write(true).open(&path).expect("open the segment");
    file.set_len(entry.bytes - 10).expect("truncate the segment");
    assert_stops_at(truncated.path(), &written, entry.last_index - 1, &entry.name);

    let flipped = copy_archive(archive.path());
    let entry = middle_segment(flipped.path());
    let path = entry.path(flipped.path());
    let mut bytes = std::fs::read(&path).expect("read the segment");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&path, &bytes).expect("write the damaged segment");
    let intact = segment::parse(&bytes).frames.last().map(|frame| frame.index).expect("records before the damage");
    assert!(intact < entry.last_index);
    assert_stops_at(flipped.path(), &written, intact, &entry.name);

    let unnamed = copy_archive(archive.path());
    let entry = middle_segment(unnamed.path());
    let mut edited = manifest::read(unnamed.path()).expect("a manifest");
    edited.segments.retain(|segment| segment.name != entry.name);
    manifest::write(unnamed.path(), &edited).expect("rewrite the manifest");
    assert_stops_at(unnamed.path(), &written, entry.first_index - 1, "not in the archive");

    let bad_manifest = copy_archive(archive.path());
    let path = bad_manifest.path().join(manifest::FILE_NAME);
    let mut bytes = std::fs::read(&path).expect("read the manifest");
    bytes[40] ^= 0x01;
    std::fs::write(&path, &bytes).expect("write the damaged manifest");
    let (code, _, stderr) = tandem(&["archive", "verify", path_str(bad_manifest.path())]);
    assert_eq!(code, 1);
    assert!(stderr.contains("damaged"), "{stderr}");
    let restored = temp_dir("tandem-damaged-");
    let (code, _, stderr) = restore(bad_manifest.path(), &restored.path().join("data"), &[]);
    assert_eq!(code, 2, "nothing is restored from a damaged manifest: {stderr}");
}

/// A tmpfs mounted for the test's life (root only), unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = temp_dir("tandem-small-disk-");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map(|output| output.status.success())
            .unwrap_or(false);
        mounted.then_some(SmallDisk { dir })
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn grow(&self, size: &str) {
        let status = Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(self.dir.path()).status();
        assert!(status.expect("run mount").success(), "grow the tmpfs");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_archive_disk_never_blocks_clients_nor_corrupts_the_archive() {
    let Some(disk) = SmallDisk::mount("1m") else {
        eprintln!("skipped: cannot mount a tmpfs (needs root) to fill the archive's disk");
        return;
    };
    let mut server = TestServer::with_config(Some(&config(&disk.path())), &[]);
    let mut connection = server.connection();
    // 3 MB of writes into a 1 MB archive: every SET must still be answered promptly.
    let started = std::time::Instant::now();
    write_numbered(&mut connection, "big", 300, 10_000);
    assert!(started.elapsed() < Duration::from_secs(20), "clients were held up: {:?}", started.elapsed());
    poll_until(CATCH_UP_TIMEOUT, "the shipper reports the full disk", || {
        info_field(&mut connection, "archive_status").starts_with("err")
    });
    assert!(info_field(&mut connection, "archive_errors").parse::<u64>().unwrap() > 0);
    assert!(info_field(&mut connection, "archive_lag_records").parse::<u64>().unwrap() > 0);
    let (code, stdout, stderr) = tandem(&["archive", "verify", path_str(&disk.path())]);
    assert_eq!(code, 0, "the manifest names only complete files:\n{stdout}\n{stderr}");

    disk.grow("64m");
    wait_caught_up(&mut connection);
    let expected = (digest(&mut connection), dbsize(&mut connection));
    server.stop();
    let (code, stdout, _) = tandem(&["archive", "verify", path_str(&disk.path())]);
    assert_eq!(code, 0, "{stdout}");
    let restored = temp_dir("tandem-restored-");
    let data_dir = restored.path().join("data");
    let (code, stdout, stderr) = restore(&disk.path(), &data_dir, &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let restored_server = serve(&data_dir);
    let mut connection = restored_server.connection();
    assert_eq!((digest(&mut connection), dbsize(&mut connection)), expected);
}

/// A minimal HTTP GET, returning the body.
fn http_get(address: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the admin port");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read the response");
    response.split_once("\r\n\r\n").map_or(response.clone(), |(_, body)| body.to_string())
}

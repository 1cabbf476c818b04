//! Durability against real processes: `kill -9` under write load, clean
//! stops under every `appendfsync`, a torn log tail, corruption inside the
//! log (refused at startup, reported and repaired by `tandem log check`),
//! expiry across restarts, and transactions that stay all-or-nothing.
//!
//! The checker treats a write whose reply never came as unknown: it may be
//! present or absent after the crash, and is never counted as lost.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{poll_until, tandem_command, TestServer};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use redis::{cmd, Value};

/// Load before a crash: long enough for many group commits, short enough to keep the suite fast.
const LOAD: Duration = Duration::from_millis(1000);

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// What one writer saw acknowledged before the server died.
#[derive(Default)]
struct Ledger {
    sets: Vec<(String, String)>,
    increments: u64,
    /// An INCR was sent but its reply never came: it may or may not have happened.
    increment_unknown: bool,
}

/// Writes `SET w<id>:<n> v<n>` then `INCR counter` until the connection fails.
fn spawn_writer(url: String, id: usize) -> JoinHandle<Ledger> {
    std::thread::spawn(move || {
        let mut ledger = Ledger::default();
        let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
        con.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        for sequence in 0u64.. {
            let key = format!("w{id}:{sequence}");
            let value = format!("v{sequence}-{}", "x".repeat(sequence as usize % 50));
            match cmd("SET").arg(&key).arg(&value).query::<Value>(&mut con) {
                Ok(Value::Okay) => ledger.sets.push((key, value)),
                Ok(other) => panic!("SET replied {other:?}"),
                Err(_) => break,
            }
            match cmd("INCR").arg("counter").query::<i64>(&mut con) {
                Ok(_) => ledger.increments += 1,
                Err(_) => {
                    ledger.increment_unknown = true;
                    break;
                }
            }
        }
        ledger
    })
}

/// Keys whose acknowledged value is not what the server holds now.
fn missing_acknowledged(con: &mut redis::Connection, acknowledged: &[(String, String)]) -> Vec<String> {
    let mut missing = Vec::new();
    for chunk in acknowledged.chunks(500) {
        let keys: Vec<&str> = chunk.iter().map(|(key, _)| key.as_str()).collect();
        let values: Vec<Option<String>> = cmd("MGET").arg(&keys).query(con).unwrap();
        for ((key, expected), actual) in chunk.iter().zip(values) {
            if actual.as_deref() != Some(expected.as_str()) {
                missing.push(format!("{key}: expected {expected:?}, found {actual:?}"));
            }
        }
    }
    missing
}

/// Runs 8 writers for `load`, then stops the server with `fault`, restarts it, and checks
/// every acknowledged write; returns how many SETs were checked.
fn acknowledged_writes_survive(appendfsync: &str, load: Duration, fault: impl FnOnce(&mut TestServer)) -> usize {
    let mut server = TestServer::with_args(&["--appendfsync", appendfsync]);
    let writers: Vec<_> = (0..8).map(|id| spawn_writer(server.url(), id)).collect();
    std::thread::sleep(load);
    fault(&mut server);
    let ledgers: Vec<Ledger> = writers.into_iter().map(|writer| writer.join().expect("writer thread")).collect();
    let acknowledged: Vec<(String, String)> = ledgers.iter().flat_map(|ledger| ledger.sets.clone()).collect();
    let increments: u64 = ledgers.iter().map(|ledger| ledger.increments).sum();
    let unknown_increments = ledgers.iter().filter(|ledger| ledger.increment_unknown).count() as u64;
    assert!(!acknowledged.is_empty() && increments > 0, "no write was acknowledged before the fault");

    server.restart();
    let mut con = server.connection();
    let missing = missing_acknowledged(&mut con, &acknowledged);
    assert!(
        missing.is_empty(),
        "appendfsync {appendfsync}: {} of {} acknowledged SETs lost: {:?}",
        missing.len(),
        acknowledged.len(),
        { &missing[..missing.len().min(10)] }
    );
    let counter: u64 = cmd("GET").arg("counter").query(&mut con).unwrap();
    assert!(
        (increments..=increments + unknown_increments).contains(&counter),
        "appendfsync {appendfsync}: counter {counter}: {increments} INCRs acknowledged, {unknown_increments} in flight"
    );
    acknowledged.len()
}

#[test]
fn kill_9_under_load_with_appendfsync_always_loses_no_acknowledged_write() {
    let checked = acknowledged_writes_survive("always", LOAD, TestServer::kill9);
    println!("{checked} acknowledged SETs found after kill -9");
}

#[test]
fn kill_9_under_load_with_appendfsync_everysec_and_no_loses_no_acknowledged_write() {
    // A reply is sent once its record is written to the OS, which survives a process crash.
    for policy in ["everysec", "no"] {
        acknowledged_writes_survive(policy, LOAD / 2, TestServer::kill9);
    }
}

#[test]
fn sigterm_under_load_stops_cleanly_and_loses_no_acknowledged_write() {
    acknowledged_writes_survive("everysec", LOAD / 2, TestServer::stop);
}

/// Writes strings, a hash, a list and a set, in pipelines; returns the strings written.
fn write_mixed_data(con: &mut redis::Connection) -> Vec<(String, String)> {
    let mut strings = Vec::new();
    for batch in 0..10 {
        let mut pipe = redis::pipe();
        for i in 0..100 {
            let (key, value) = (format!("key:{batch}:{i}"), format!("value-{batch}-{i}"));
            pipe.cmd("SET").arg(&key).arg(&value).ignore();
            strings.push((key, value));
        }
        let _: () = pipe.query(con).unwrap();
    }
    let _: () = cmd("HSET").arg("hash").arg(&["a", "1", "b", "2"]).query(con).unwrap();
    let _: () = cmd("RPUSH").arg("list").arg(&["x", "y", "z"]).query(con).unwrap();
    let _: () = cmd("SADD").arg("set").arg(&["m1", "m2"]).query(con).unwrap();
    let _: () = cmd("INCRBY").arg("counter").arg(77).query(con).unwrap();
    let _: () = cmd("DEL").arg("key:0:0").query(con).unwrap();
    strings.remove(0);
    strings
}

fn assert_mixed_data(con: &mut redis::Connection, strings: &[(String, String)]) {
    let missing = missing_acknowledged(con, strings);
    assert!(missing.is_empty(), "lost: {:?}", &missing[..missing.len().min(10)]);
    assert_eq!(cmd("EXISTS").arg("key:0:0").query::<i64>(con).unwrap(), 0, "a deleted key came back");
    assert_eq!(cmd("HGET").arg("hash").arg("b").query::<String>(con).unwrap(), "2");
    assert_eq!(cmd("LRANGE").arg("list").arg(0).arg(-1).query::<Vec<String>>(con).unwrap(), ["x", "y", "z"]);
    assert_eq!(cmd("SCARD").arg("set").query::<i64>(con).unwrap(), 2);
    assert_eq!(cmd("GET").arg("counter").query::<i64>(con).unwrap(), 77);
    assert_eq!(cmd("DBSIZE").query::<usize>(con).unwrap(), strings.len() + 4);
}

#[test]
fn a_clean_sigterm_keeps_everything_with_appendfsync_everysec_and_no() {
    for policy in ["everysec", "no"] {
        let mut server = TestServer::with_args(&["--appendfsync", policy]);
        let strings = write_mixed_data(&mut server.connection());
        server.stop();
        server.restart();
        let mut con = server.connection();
        assert_mixed_data(&mut con, &strings);
        let fsync: Vec<String> = cmd("CONFIG").arg("GET").arg("appendfsync").query(&mut con).unwrap();
        assert_eq!(fsync, ["appendfsync", policy]);
    }
}

#[test]
fn a_shutdown_command_stops_cleanly_and_keeps_everything() {
    let mut server = TestServer::with_args(&["--appendfsync", "no"]);
    let strings = write_mixed_data(&mut server.connection());
    let mut raw = server.raw();
    raw.send(b"SHUTDOWN\r\n");
    raw.read_until_closed();
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(0), "SHUTDOWN exit: {status}; stderr:\n{}", server.stderr());
    server.restart();
    assert_mixed_data(&mut server.connection(), &strings);
}

/// One record frame in a segment file, located by an independent reading of FORMAT.md.
#[derive(Debug, Clone)]
struct Frame {
    /// Byte offset of the frame (its length field) in the file.
    offset: usize,
    /// Frame length: 8 header bytes plus the body.
    length: usize,
    /// The record's log index.
    index: u64,
    /// The opaque payload (the server's encoded effects).
    payload: Vec<u8>,
}

const SEGMENT_HEADER_BYTES: usize = 28;

/// The segment files of a log directory, oldest first.
fn segments(log_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(log_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    files.sort();
    files
}

fn newest_segment(log_dir: &Path) -> PathBuf {
    segments(log_dir).pop().expect("the log has a segment file")
}

/// Parses a whole, undamaged segment; asserts the format's checks along the way. Zeros after
/// the records, to the end of the file, are unwritten space.
fn parse_segment(path: &Path) -> Vec<Frame> {
    let bytes = std::fs::read(path).unwrap();
    assert!(bytes.len() >= SEGMENT_HEADER_BYTES, "{} is shorter than a header", path.display());
    assert_eq!(&bytes[0..8], b"TNDMLOG\0", "magic");
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 1, "format version");
    assert!(bytes[10..16].iter().all(|&byte| byte == 0), "reserved bytes");
    let first_index = u64::from_le_bytes(bytes[16..24].try_into().unwrap());
    let name = path.file_stem().unwrap().to_str().unwrap();
    assert_eq!(name, format!("{first_index:020}"), "the file name is the first index");
    assert_eq!(crc32c::crc32c(&bytes[0..24]), u32::from_le_bytes(bytes[24..28].try_into().unwrap()), "header crc");
    let mut frames = Vec::new();
    let mut offset = SEGMENT_HEADER_BYTES;
    while offset < bytes.len() {
        if bytes[offset..].iter().all(|&byte| byte == 0) {
            // Preallocated space the writer had not reached (only a crash leaves it).
            break;
        }
        let body_length = u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
        let checksum = u32::from_le_bytes(bytes[offset + 4..offset + 8].try_into().unwrap());
        assert!(body_length >= 28, "body length {body_length} at offset {offset}");
        let body = &bytes[offset + 8..offset + 8 + body_length];
        assert_eq!(crc32c::crc32c(body), checksum, "record crc at offset {offset}");
        let index = u64::from_le_bytes(body[0..8].try_into().unwrap());
        assert_eq!(index, first_index + frames.len() as u64, "indexes are contiguous");
        frames.push(Frame { offset, length: 8 + body_length, index, payload: body[28..].to_vec() });
        offset += 8 + body_length;
    }
    frames
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// Writes `key:1..=count` one command (one record) at a time, then stops the server cleanly.
fn write_records_and_stop(server: &mut TestServer, count: usize) {
    let mut con = server.connection();
    for i in 1..=count {
        let _: () = cmd("SET").arg(format!("key:{i}")).arg(format!("value:{i}")).query(&mut con).unwrap();
    }
    drop(con);
    server.stop();
}

fn key_present(con: &mut redis::Connection, i: usize) -> bool {
    match cmd("GET").arg(format!("key:{i}")).query::<Option<String>>(con).unwrap() {
        Some(value) => {
            assert_eq!(value, format!("value:{i}"));
            true
        }
        None => false,
    }
}

#[test]
fn the_log_on_disk_follows_the_documented_format() {
    let mut server = TestServer::start();
    write_records_and_stop(&mut server, 10);
    let frames = parse_segment(&newest_segment(&server.log_dir()));
    assert_eq!(frames.len(), 10, "one record per write command");
    for (i, frame) in frames.iter().enumerate() {
        assert!(contains(&frame.payload, format!("key:{}", i + 1).as_bytes()), "record {} holds key:{}", i, i + 1);
    }
}

#[test]
fn the_log_rolls_into_several_segments_and_replays_all_of_them() {
    let mut server = TestServer::with_config(Some("log_segment_size = \"64kb\"\n"), &["--appendfsync", "always"]);
    let mut con = server.connection();
    let value = "s".repeat(4000);
    for i in 0..100 {
        let _: () = cmd("SET").arg(format!("key:{i}")).arg(format!("{i}:{value}")).query(&mut con).unwrap();
    }
    drop(con);
    server.kill9();
    let files = segments(&server.log_dir());
    assert!(files.len() >= 5, "400 KB in 64 KB segments gave only {} files", files.len());
    let mut next_index = None;
    for file in &files {
        let frames = parse_segment(file);
        assert!(!frames.is_empty(), "{} holds no record", file.display());
        if let Some(expected) = next_index {
            assert_eq!(frames[0].index, expected, "{} continues the previous segment", file.display());
        }
        let bytes = std::fs::metadata(file).unwrap().len();
        assert!(frames.len() == 1 || bytes <= 64 * 1024, "{} has {bytes} bytes", file.display());
        next_index = Some(frames.last().unwrap().index + 1);
    }
    server.restart();
    let mut con = server.connection();
    for i in 0..100 {
        let stored: String = cmd("GET").arg(format!("key:{i}")).query(&mut con).unwrap();
        assert_eq!(stored, format!("{i}:{value}"));
    }
}

#[test]
fn a_damaged_older_segment_is_corruption_even_at_its_end() {
    let mut server = TestServer::with_config(Some("log_segment_size = \"64kb\"\n"), &[]);
    let mut con = server.connection();
    let value = "s".repeat(4000);
    for i in 0..60 {
        let _: () = cmd("SET").arg(format!("key:{i}")).arg(&value).query(&mut con).unwrap();
    }
    drop(con);
    server.stop();
    let files = segments(&server.log_dir());
    assert!(files.len() >= 2, "expected several segments, got {}", files.len());
    // Cutting the end of a segment that is not the newest is not a torn write: startup must refuse.
    let older = &files[0];
    let last = parse_segment(older).last().unwrap().clone();
    let file = std::fs::OpenOptions::new().write(true).open(older).unwrap();
    file.set_len((last.offset + last.length - 10) as u64).unwrap();
    drop(file);
    let (status, stderr) = server.restart_expecting_failure();
    assert_ne!(status.code(), Some(0), "stderr:\n{stderr}");
    assert!(stderr.contains(older.file_name().unwrap().to_str().unwrap()), "{stderr}");
    let repair =
        tandem_command().args(["log", "check", "--repair", "--data-dir"]).arg(server.data_dir()).output().unwrap();
    assert_eq!(repair.status.code(), Some(0), "{}", String::from_utf8_lossy(&repair.stdout));
    assert_eq!(segments(&server.log_dir()).len(), 1, "repair removes the segments after the damage");
    server.restart();
    let mut con = server.connection();
    let kept: i64 = cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(kept as usize, parse_segment(older).len(), "exactly the intact records of the first segment");
    assert!((0..kept as usize).all(|i| cmd("EXISTS").arg(format!("key:{i}")).query::<i64>(&mut con).unwrap() == 1));
}

#[test]
fn garbage_appended_to_the_newest_segment_is_dropped_as_a_torn_tail() {
    let mut server = TestServer::start();
    write_records_and_stop(&mut server, 20);
    let segment = newest_segment(&server.log_dir());
    let clean_length = std::fs::metadata(&segment).unwrap().len();
    // A frame header announcing 42 body bytes, then only three of them: a write cut short.
    let mut file = std::fs::OpenOptions::new().append(true).open(&segment).unwrap();
    std::io::Write::write_all(&mut file, &[42, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3]).unwrap();
    drop(file);

    server.restart();
    let stderr = server.stderr();
    assert!(stderr.contains("torn tail"), "no torn-tail warning in stderr:\n{stderr}");
    assert!(stderr.contains(segment.file_name().unwrap().to_str().unwrap()), "the warning names the file:\n{stderr}");
    let bytes = std::fs::read(&segment).unwrap();
    assert!(
        bytes[clean_length as usize..].iter().all(|&byte| byte == 0),
        "the garbage was truncated away (what follows the records now is preallocated zeros)"
    );
    let mut con = server.connection();
    assert!((1..=20).all(|i| key_present(&mut con, i)), "data before the tear is present");
    // The log continues cleanly after the repair.
    let _: () = cmd("SET").arg("after").arg("tear").query(&mut con).unwrap();
    drop(con);
    server.stop();
    assert_eq!(parse_segment(&segment).len(), 21);
}

#[test]
fn a_truncated_final_record_is_dropped_and_earlier_records_survive() {
    let mut server = TestServer::start();
    write_records_and_stop(&mut server, 20);
    let segment = newest_segment(&server.log_dir());
    let frames = parse_segment(&segment);
    let last = frames.last().unwrap().clone();
    assert!(contains(&last.payload, b"key:20"), "the last record is the last SET");
    let file = std::fs::OpenOptions::new().write(true).open(&segment).unwrap();
    file.set_len((last.offset + last.length - 3) as u64).unwrap();
    drop(file);

    server.restart();
    assert!(server.stderr().contains("torn tail"), "stderr:\n{}", server.stderr());
    let mut con = server.connection();
    assert!((1..=19).all(|i| key_present(&mut con, i)), "records before the torn one survive");
    assert!(!key_present(&mut con, 20), "the torn record is dropped whole");
    assert_eq!(cmd("DBSIZE").query::<i64>(&mut con).unwrap(), 19);
}

#[test]
fn corruption_inside_the_log_stops_startup_until_log_check_repairs_it() {
    let mut server = TestServer::start();
    write_records_and_stop(&mut server, 30);
    let segment = newest_segment(&server.log_dir());
    let segment_name = segment.file_name().unwrap().to_str().unwrap().to_string();
    let frames = parse_segment(&segment);
    assert_eq!(frames.len(), 30);
    let damaged = frames[14].clone();
    assert_eq!(damaged.index, frames[0].index + 14);
    assert!(contains(&damaged.payload, b"key:15"), "record 15 holds the 15th SET");
    // Flip one byte of the value inside record 15: its checksum no longer matches.
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[damaged.offset + damaged.length - 1] ^= 0xff;
    std::fs::write(&segment, &bytes).unwrap();

    let (status, stderr) = server.restart_expecting_failure();
    assert_ne!(status.code(), Some(0), "the server must refuse a corrupted log; stderr:\n{stderr}");
    assert!(stderr.contains(&segment_name), "the refusal names the file:\n{stderr}");
    assert!(stderr.contains(&format!("byte offset {}", damaged.offset)), "the refusal names the offset:\n{stderr}");
    assert!(stderr.contains("tandem log check --repair"), "the refusal says how to repair:\n{stderr}");

    let data_dir = server.data_dir().to_path_buf();
    let check = tandem_command().args(["log", "check", "--data-dir"]).arg(&data_dir).output().unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "log check exit; stdout:\n{report}");
    assert!(report.contains(&segment_name), "{report}");
    assert!(report.contains(&format!("byte offset {}", damaged.offset)), "{report}");
    assert!(report.contains("14 valid records"), "{report}");

    let repair = tandem_command().args(["log", "check", "--repair", "--data-dir"]).arg(&data_dir).output().unwrap();
    let report = String::from_utf8_lossy(&repair.stdout);
    assert_eq!(repair.status.code(), Some(0), "repair exit; stdout:\n{report}");
    assert!(report.contains("kept 14 records"), "{report}");
    assert!(report.contains("dropped 15 intact records"), "{report}");

    let check = tandem_command().args(["log", "check", "--data-dir"]).arg(&data_dir).output().unwrap();
    assert_eq!(check.status.code(), Some(0), "{}", String::from_utf8_lossy(&check.stdout));
    assert!(String::from_utf8_lossy(&check.stdout).contains("no problems"));

    server.restart();
    let mut con = server.connection();
    assert!((1..=14).all(|i| key_present(&mut con, i)), "the prefix before the damage is present");
    assert!((15..=30).all(|i| !key_present(&mut con, i)), "nothing from the damage on is replayed");
    assert_eq!(cmd("DBSIZE").query::<i64>(&mut con).unwrap(), 14);
}

#[test]
fn expiry_deadlines_hold_across_a_kill_9_and_restart() {
    let mut server = TestServer::start();
    let mut con = server.connection();
    let _: () = cmd("SET").arg("already-gone").arg("v").arg("PX").arg(50).query(&mut con).unwrap();
    poll_until(Duration::from_secs(10), "already-gone expires before the crash", || {
        cmd("DBSIZE").query::<i64>(&mut con).unwrap() == 0
    });
    let _: () = cmd("SET").arg("short").arg("v").arg("PX").arg(400).query(&mut con).unwrap();
    let _: () = cmd("SET").arg("long").arg("v").arg("EX").arg(3600).query(&mut con).unwrap();
    let long_deadline_ms: u64 = cmd("PEXPIRETIME").arg("long").query(&mut con).unwrap();
    let short_deadline_ms: u64 = cmd("PEXPIRETIME").arg("short").query(&mut con).unwrap();
    drop(con);
    server.kill9();
    poll_until(Duration::from_secs(10), "the short deadline passes while the server is down", || {
        unix_ms() > short_deadline_ms + 10
    });

    server.restart();
    let mut con = server.connection();
    assert_eq!(cmd("GET").arg("short").query::<Value>(&mut con).unwrap(), Value::Nil);
    assert_eq!(cmd("TTL").arg("short").query::<i64>(&mut con).unwrap(), -2);
    assert_eq!(cmd("GET").arg("already-gone").query::<Value>(&mut con).unwrap(), Value::Nil);
    assert_eq!(cmd("GET").arg("long").query::<String>(&mut con).unwrap(), "v");
    assert_eq!(
        cmd("PEXPIRETIME").arg("long").query::<u64>(&mut con).unwrap(),
        long_deadline_ms,
        "the absolute deadline is kept, not restarted"
    );
    poll_until(Duration::from_secs(10), "active expiry removes the expired key after restart", || {
        cmd("DBSIZE").query::<i64>(&mut con).unwrap() == 1
    });
}

#[test]
fn multi_exec_transfers_stay_all_or_nothing_across_kill_9() {
    let mut server = TestServer::with_args(&["--appendfsync", "always"]);
    let mut con = server.connection();
    let _: () = cmd("MSET").arg(&["a", "1000000", "b", "1000000"]).query(&mut con).unwrap();
    drop(con);
    let stop = Arc::new(AtomicBool::new(false));
    let movers: Vec<JoinHandle<(u64, bool)>> = (0..4)
        .map(|_| {
            let url = server.url();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
                con.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut acknowledged = 0;
                while !stop.load(Ordering::Relaxed) {
                    let moved: redis::RedisResult<(i64, i64)> = redis::pipe()
                        .atomic()
                        .cmd("DECRBY")
                        .arg("a")
                        .arg(3)
                        .cmd("INCRBY")
                        .arg("b")
                        .arg(3)
                        .query(&mut con);
                    match moved {
                        Ok(_) => acknowledged += 1,
                        Err(_) => return (acknowledged, true),
                    }
                }
                (acknowledged, false)
            })
        })
        .collect();
    std::thread::sleep(LOAD / 2);
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    let outcomes: Vec<(u64, bool)> = movers.into_iter().map(|mover| mover.join().unwrap()).collect();
    let acknowledged: u64 = outcomes.iter().map(|(count, _)| count).sum();
    let unknown = outcomes.iter().filter(|(_, in_flight)| *in_flight).count() as u64;
    assert!(acknowledged > 0, "no transaction was acknowledged before the kill");

    server.restart();
    let mut con = server.connection();
    let (a, b): (i64, i64) = cmd("MGET").arg(&["a", "b"]).query(&mut con).unwrap();
    assert_eq!(a + b, 2_000_000, "a={a} b={b}: a transaction was applied in part");
    let moved = b - 1_000_000;
    assert_eq!(moved % 3, 0, "b={b}: every transfer moves exactly 3");
    let transfers = (moved / 3) as u64;
    assert!(
        (acknowledged..=acknowledged + unknown).contains(&transfers),
        "{transfers} transfers found, {acknowledged} acknowledged, {unknown} in flight"
    );
}

/// One key as clients see it: type, absolute deadline (-1: none) and contents.
type KeyState = (String, i64, Vec<String>);

/// Everything in the keyspace, read through ordinary commands.
fn snapshot(con: &mut redis::Connection) -> BTreeMap<String, KeyState> {
    let keys: Vec<String> = cmd("KEYS").arg("*").query(con).unwrap();
    let mut state = BTreeMap::new();
    for key in keys {
        let type_name: String = cmd("TYPE").arg(&key).query(con).unwrap();
        let deadline: i64 = cmd("PEXPIRETIME").arg(&key).query(con).unwrap();
        let mut contents: Vec<String> = match type_name.as_str() {
            "string" => vec![cmd("GET").arg(&key).query(con).unwrap()],
            "list" => cmd("LRANGE").arg(&key).arg(0).arg(-1).query(con).unwrap(),
            "set" => cmd("SMEMBERS").arg(&key).query(con).unwrap(),
            "hash" => {
                cmd("HGETALL").arg(&key).query::<Vec<String>>(con).unwrap().chunks(2).map(|p| p.join("=")).collect()
            }
            other => panic!("unexpected type {other} of {key}"),
        };
        if type_name == "set" || type_name == "hash" {
            contents.sort();
        }
        state.insert(key, (type_name, deadline, contents));
    }
    state
}

/// One random write of any family; errors (e.g. WRONGTYPE) are part of the workload.
fn random_write(rng: &mut SmallRng) -> redis::Cmd {
    let key = format!("k{}", rng.gen_range(0..40));
    let other = format!("k{}", rng.gen_range(0..40));
    let word = format!("w{}", rng.gen_range(0..12));
    let number = rng.gen_range(-20i64..20);
    let mut command = redis::Cmd::new();
    match rng.gen_range(0..24) {
        0 => command.arg("SET").arg(&key).arg(&word),
        1 => command.arg("SET").arg(&key).arg(&word).arg("EX").arg(3600),
        2 => command.arg("APPEND").arg(&key).arg(&word),
        3 => command.arg("INCRBY").arg(&key).arg(number),
        4 => command.arg("INCRBYFLOAT").arg(&key).arg(format!("{number}.25")),
        5 => command.arg("SETRANGE").arg(&key).arg(rng.gen_range(0..8)).arg(&word),
        6 => command.arg("DEL").arg(&key),
        7 => command.arg("RENAME").arg(&key).arg(&other),
        8 => command.arg("EXPIRE").arg(&key).arg(rng.gen_range(100..10_000)),
        9 => command.arg("PERSIST").arg(&key),
        10 => command.arg("HSET").arg(&key).arg(&word).arg(number),
        11 => command.arg("HINCRBY").arg(&key).arg(&word).arg(number),
        12 => command.arg("HDEL").arg(&key).arg(&word),
        13 => command.arg("SADD").arg(&key).arg(&word).arg(&other),
        14 => command.arg("SREM").arg(&key).arg(&word),
        15 => command.arg("SPOP").arg(&key),
        16 => command.arg("LPUSH").arg(&key).arg(&word),
        17 => command.arg("RPUSH").arg(&key).arg(&word).arg(number),
        18 => command.arg("LPOP").arg(&key),
        19 => command.arg("LREM").arg(&key).arg(number % 3).arg(&word),
        20 => command.arg("LINSERT").arg(&key).arg("BEFORE").arg(&word).arg(&other),
        21 => command.arg("LTRIM").arg(&key).arg(0).arg(rng.gen_range(0..6)),
        22 => command.arg("GETEX").arg(&key).arg("PX").arg(rng.gen_range(1_000_000..2_000_000)),
        _ => command.arg("LSET").arg(&key).arg(number % 4).arg(&word),
    };
    command
}

#[test]
fn replay_after_kill_9_rebuilds_exactly_the_state_clients_saw() {
    let seed = common::test_seed();
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut server = TestServer::with_args(&["--appendfsync", "always"]);
    let mut con = server.connection();
    for _ in 0..30 {
        let mut pipe = redis::pipe();
        for _ in 0..40 {
            pipe.add_command(random_write(&mut rng));
        }
        // Some commands fail by design (WRONGTYPE, no such key); the others must still apply.
        let _: Vec<Value> = pipe.query(&mut con).unwrap_or_default();
        let mut transaction = redis::pipe();
        transaction.atomic();
        for _ in 0..3 {
            transaction.add_command(random_write(&mut rng));
        }
        let _: Result<Value, _> = transaction.query(&mut con);
    }
    let before = snapshot(&mut con);
    println!("{} keys to compare", before.len());
    assert!(before.len() > 5, "the workload left too little state to compare (seed {seed})");
    drop(con);
    server.kill9();
    server.restart();
    let after = snapshot(&mut server.connection());
    for (key, state) in &before {
        assert_eq!(after.get(key), Some(state), "key {key} differs after replay (seed {seed})");
    }
    assert_eq!(after.len(), before.len(), "extra keys after replay (seed {seed})");
}

//! Checkpoints and crashes, with real processes: a node killed at each fail
//! point of the checkpoint write, or by `kill -9` at random while
//! checkpoints are written under load, restarts with every acknowledged
//! write (`appendfsync always`) and never loads a partial checkpoint; an
//! fsync error fails the checkpoint, is reported, and leaves nothing behind;
//! writes during checkpoints (layered over the buckets a checkpoint holds)
//! are merged back and survive a crash.

mod checkpoint_support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use checkpoint_support::{checkpoint_files, Process};
use rand::Rng;

const MANUAL: &str = "appendfsync = \"always\"\ncheckpoint_full_seconds = 0\ncheckpoint_incremental_seconds = 0\n";

fn write_keys(process: &Process, from: u64, to: u64) {
    let mut connection = process.connect().unwrap();
    for index in from..to {
        let _: () = redis::cmd("SET").arg(format!("key:{index}")).arg(index).query(&mut connection).unwrap();
    }
}

fn assert_keys(process: &Process, to: u64) {
    let mut connection = process.connect().unwrap();
    for index in 0..to {
        let value: Option<u64> = redis::cmd("GET").arg(format!("key:{index}")).query(&mut connection).unwrap();
        assert_eq!(value, Some(index), "acknowledged write key:{index} lost");
    }
}

fn temporary_files(data_dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(data_dir.join("checkpoints"))
        .map(|entries| {
            entries.flatten().map(|entry| entry.file_name().to_string_lossy().into_owned()).collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .filter(|name: &String| name.ends_with(".tmp"))
        .collect()
}

#[test]
fn a_crash_at_each_fail_point_loses_no_write_and_loads_no_partial_checkpoint() {
    for failpoint in ["checkpoint-before-fsync", "checkpoint-before-rename", "checkpoint-before-dir-fsync"] {
        let temp = tempfile::tempdir().unwrap();
        let data_dir = temp.path().join("data");
        // A good checkpoint first, so that the crashed one has a predecessor to fall back to.
        let process = Process::start(&data_dir, MANUAL, None);
        write_keys(&process, 0, 300);
        let mut connection = process.connect().unwrap();
        let first: u64 = redis::cmd("CHECKPOINT").arg("FULL").query(&mut connection).unwrap();
        process.kill();

        let process = Process::start(&data_dir, MANUAL, Some(failpoint));
        write_keys(&process, 300, 600);
        let mut connection = process.connect().unwrap();
        let reply: redis::RedisResult<u64> = redis::cmd("CHECKPOINT").arg("FULL").query(&mut connection);
        assert!(reply.is_err(), "{failpoint}: the process should have aborted");
        let status = process.wait_exit();
        assert!(!status.success(), "{failpoint}");
        let files = checkpoint_files(&data_dir);
        match failpoint {
            "checkpoint-before-dir-fsync" => assert_eq!(files.len(), 2, "renamed: complete, may be used"),
            _ => {
                assert_eq!(files.len(), 1, "{failpoint}: the unfinished checkpoint has no checkpoint name");
                assert_eq!(temporary_files(&data_dir).len(), 1, "{failpoint}");
            }
        }

        let process = Process::start(&data_dir, MANUAL, None);
        assert_keys(&process, 600);
        assert!(temporary_files(&data_dir).is_empty(), "{failpoint}: the temporary file is removed at start");
        let loaded: u64 = process.info_field("checkpoint_loaded_id").parse().unwrap();
        let expected = if failpoint == "checkpoint-before-dir-fsync" { first + 1 } else { first };
        assert_eq!(loaded, expected, "{failpoint}");
        assert_eq!(process.info_field("checkpoint_skipped_at_start"), "0", "{failpoint}");
        process.kill();
    }
}

#[test]
fn an_fsync_error_fails_the_checkpoint_reports_it_and_leaves_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let process = Process::start(&data_dir, MANUAL, Some("checkpoint-fsync-error"));
    write_keys(&process, 0, 100);
    let mut connection = process.connect().unwrap();
    let reply: redis::RedisResult<u64> = redis::cmd("CHECKPOINT").query(&mut connection);
    let error = reply.unwrap_err().to_string();
    assert!(error.contains("fsync"), "{error}");
    assert_eq!(process.info_field("rdb_last_bgsave_status"), "err");
    assert!(process.info_field("checkpoint_last_error").contains("injected"));
    assert_eq!(process.info_field("checkpoints_failed"), "1");
    assert_eq!(process.info_field("checkpoint_last_id"), "0", "never reported as done");
    assert!(checkpoint_files(&data_dir).is_empty());
    assert!(temporary_files(&data_dir).is_empty());
    // The node keeps serving.
    write_keys(&process, 100, 110);
    process.kill();
}

/// `kill -9` at random moments while a client writes (every acknowledged
/// write recorded) and checkpoints of both levels are taken, automatically
/// and by command; each restart must hold every acknowledged write.
#[test]
fn random_kill_during_checkpoints_keeps_every_acknowledged_write() {
    let config = "appendfsync = \"always\"\ncheckpoint_full_seconds = 1\ncheckpoint_full_changes = 1\n\
                  checkpoint_incremental_seconds = 1\ncheckpoint_incremental_changes = 1\ncheckpoint_retain_full = 1\n";
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let seed: u64 =
        std::env::var("TANDEM_TEST_SEED").ok().and_then(|seed| seed.parse().ok()).unwrap_or_else(rand::random);
    println!("seed {seed} (set TANDEM_TEST_SEED to repeat)");
    let mut rng = <rand::rngs::SmallRng as rand::SeedableRng>::seed_from_u64(seed);
    let acknowledged = Arc::new(AtomicU64::new(0));
    for round in 0..5 {
        let process = Process::start(&data_dir, config, None);
        assert_keys(&process, acknowledged.load(Ordering::SeqCst));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
            let mut connection = process.connect().unwrap();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let next = acknowledged.load(Ordering::SeqCst);
                    let set: redis::RedisResult<()> =
                        redis::cmd("SET").arg(format!("key:{next}")).arg(next).query(&mut connection);
                    if set.is_err() {
                        return;
                    }
                    acknowledged.store(next + 1, Ordering::SeqCst);
                }
            })
        };
        let checkpointer = {
            let stop = stop.clone();
            let mut connection = process.connect().unwrap();
            std::thread::spawn(move || {
                let mut full = false;
                while !stop.load(Ordering::SeqCst) {
                    full = !full;
                    let level = if full { "FULL" } else { "INCREMENTAL" };
                    // Busy (an automatic one runs) and killed are both fine here.
                    if let Err(error) = redis::cmd("CHECKPOINT").arg(level).query::<u64>(&mut connection) {
                        if error.is_io_error() || error.is_connection_dropped() {
                            return;
                        }
                    }
                }
            })
        };
        std::thread::sleep(Duration::from_millis(rng.gen_range(300..1_500)));
        process.kill();
        stop.store(true, Ordering::SeqCst);
        writer.join().unwrap();
        checkpointer.join().unwrap();
        println!("round {round}: {} acknowledged writes", acknowledged.load(Ordering::SeqCst));
    }
    let process = Process::start(&data_dir, config, None);
    assert_keys(&process, acknowledged.load(Ordering::SeqCst));
    let loaded: u64 = process.info_field("checkpoint_loaded_id").parse().unwrap();
    assert!(loaded > 0, "some checkpoint was loaded");
    assert_eq!(process.info_field("checkpoint_skipped_at_start"), "0", "no partial checkpoint is ever named as one");
    process.kill();
}

/// Keys loaded before the layering test's checkpoints: about 12 a bucket,
/// so a bucket a checkpoint holds is layered over, not copied.
const LAYERED_KEYS: u64 = 200_000;

fn load_keys(process: &Process) {
    let mut connection = process.connect().unwrap();
    for chunk in (0..LAYERED_KEYS).collect::<Vec<_>>().chunks(10_000) {
        let mut pipe = redis::pipe();
        for index in chunk {
            pipe.cmd("SET").arg(format!("key:{index}")).arg(format!("initial:{index}")).ignore();
        }
        let _: () = pipe.query(&mut connection).unwrap();
    }
}

fn assert_values(process: &Process, last: &std::collections::HashMap<u64, String>) {
    let mut connection = process.connect().unwrap();
    for chunk in (0..LAYERED_KEYS).collect::<Vec<_>>().chunks(10_000) {
        let mut pipe = redis::pipe();
        for index in chunk {
            pipe.cmd("GET").arg(format!("key:{index}"));
        }
        let values: Vec<Option<String>> = pipe.query(&mut connection).unwrap();
        for (index, value) in chunk.iter().zip(values) {
            let expected = last.get(index).cloned().unwrap_or_else(|| format!("initial:{index}"));
            assert_eq!(value.as_deref(), Some(&expected[..]), "key:{index}");
        }
    }
}

#[test]
fn writes_during_checkpoints_layer_over_held_buckets_merge_back_and_survive_a_crash() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let process = Process::start(&data_dir, MANUAL, None);
    load_keys(&process);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, mut connection) = (stop.clone(), process.connect().unwrap());
        std::thread::spawn(move || {
            let mut rng = rand::thread_rng();
            let mut last = std::collections::HashMap::new();
            for round in 0u64.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let index = rng.gen_range(0..LAYERED_KEYS);
                let value = format!("write:{round}");
                let _: () = redis::cmd("SET").arg(format!("key:{index}")).arg(&value).query(&mut connection).unwrap();
                last.insert(index, value);
            }
            last
        })
    };
    let mut connection = process.connect().unwrap();
    for level in ["FULL", "INCREMENTAL", "FULL"] {
        let _: u64 = redis::cmd("CHECKPOINT").arg(level).query(&mut connection).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let last = writer.join().unwrap();
    let created: u64 = process.info_field("checkpoint_layers_created").parse().unwrap();
    assert!(created > 0, "writes to held buckets made layers ({} writes)", last.len());
    // Every layer is merged back once the checkpoints let go (bounded wait).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while process.info_field("checkpoint_layers_pending") != "0" {
        assert!(std::time::Instant::now() < deadline, "layers still pending: {}", process.stderr_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_values(&process, &last);
    process.kill();
    let process = Process::start(&data_dir, MANUAL, None);
    assert_values(&process, &last);
    process.kill();
}

//! A process appending with `FsyncPolicy::Always` is killed with SIGKILL mid-stream; every
//! index it acknowledged (saw durable) is on disk afterwards, byte for byte, twice over.
//!
//! A test binary of its own: the child is this binary re-run, and forking it from a binary
//! whose other tests hold log directory locks would let the child inherit those locks for
//! the moment between fork and exec.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use tandem_log::{read_from, recover, Epoch, FsyncPolicy, Log, LogIndex, LogOptions, NodeId};

/// Set in the child process to the log directory it appends to.
const CHILD_DIRECTORY_VARIABLE: &str = "TANDEM_LOG_CRASH_CHILD_DIRECTORY";
/// Set in the child process to the round it runs in.
const CHILD_ROUND_VARIABLE: &str = "TANDEM_LOG_CRASH_CHILD_ROUND";
/// Acknowledgements the parent waits for before killing the child.
const ACKNOWLEDGEMENTS_BEFORE_KILL: usize = 1500;
const CHILD_TASKS: u64 = 8;
/// Kill-and-recover rounds; each round continues the log the previous one left.
const ROUNDS: u64 = 3;

fn options() -> LogOptions {
    LogOptions {
        segment_bytes_max: 16 * 1024,
        record_bytes_max: 64 * 1024,
        fsync: FsyncPolicy::Always,
        preallocate: true,
    }
}

/// The payload of a child task's `sequence`-th record: distinct, and of varied length.
fn child_payload(task: u64, sequence: u64) -> Vec<u8> {
    format!("task {task} record {sequence};").repeat((sequence % 9 * 7) as usize + 1).into_bytes()
}

#[test]
fn acknowledged_records_survive_sigkill() {
    if let Ok(dir) = std::env::var(CHILD_DIRECTORY_VARIABLE) {
        run_child(Path::new(&dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut acknowledged = BTreeMap::new();
    for round in 0..ROUNDS {
        acknowledged.extend(run_and_kill_child(dir.path(), round));
        let recovery = recover(dir.path(), &options()).expect("recover after SIGKILL");
        let records: Vec<_> = read_from(dir.path(), LogIndex(1), &options())
            .unwrap()
            .collect::<Result<_, _>>()
            .expect("every record reads back intact");
        assert_eq!(records.len() as u64, recovery.last_index.map_or(0, |last| last.0));
        for (index, (task, sequence)) in &acknowledged {
            let record = records
                .get(*index as usize - 1)
                .unwrap_or_else(|| panic!("acknowledged index {index} lost in round {round}"));
            assert_eq!(record.index, LogIndex(*index));
            assert_eq!(record.origin, NodeId(*task as u32));
            assert_eq!(record.hlc, *sequence);
            assert_eq!(record.payload[..], child_payload(*task, *sequence)[..]);
        }
    }
}

/// Runs this test binary as a child that appends until killed; returns what it acknowledged.
fn run_and_kill_child(dir: &Path, round: u64) -> BTreeMap<u64, (u64, u64)> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["acknowledged_records_survive_sigkill", "--exact", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(CHILD_DIRECTORY_VARIABLE, dir)
        .env(CHILD_ROUND_VARIABLE, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acknowledged = BTreeMap::new();
    while acknowledged.len() < ACKNOWLEDGEMENTS_BEFORE_KILL {
        let line = lines.next().expect("child ended early").unwrap();
        record_acknowledgement(&line, round, &mut acknowledged);
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Lines already printed were acknowledged before the kill.
    for line in lines {
        record_acknowledgement(&line.unwrap(), round, &mut acknowledged);
    }
    acknowledged
}

fn record_acknowledgement(line: &str, round: u64, acknowledged: &mut BTreeMap<u64, (u64, u64)>) {
    let Some(fields) = line.strip_prefix("ack ") else {
        return;
    };
    let numbers: Vec<u64> = fields.split(' ').map(|field| field.parse().unwrap()).collect();
    let [index, task, sequence] = numbers[..] else {
        panic!("bad line {line:?}");
    };
    assert!((round * CHILD_TASKS..(round + 1) * CHILD_TASKS).contains(&task));
    acknowledged.insert(index, (task, sequence));
}

/// The child: appends from several tasks, printing each index once it is durable.
fn run_child(dir: &Path) -> ! {
    let options = options();
    let recovery = recover(dir, &options).unwrap();
    let log = std::sync::Arc::new(Log::open(dir, &options, &recovery).unwrap());
    // Tasks of later rounds get distinct numbers, so payloads never repeat across rounds.
    let round: u64 = std::env::var(CHILD_ROUND_VARIABLE).unwrap().parse().unwrap();
    let task_base = round * CHILD_TASKS;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for task in task_base..task_base + CHILD_TASKS {
            let log = std::sync::Arc::clone(&log);
            tasks.push(tokio::spawn(async move {
                let progress = log.progress();
                for sequence in 0.. {
                    let body = child_payload(task, sequence);
                    let index = log.append(Epoch(1), sequence, NodeId(task as u32), &body);
                    progress.wait_durable(index).await;
                    let mut stdout = std::io::stdout().lock();
                    writeln!(stdout, "ack {} {task} {sequence}", index.0).unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
    unreachable!("the child appends until it is killed");
}

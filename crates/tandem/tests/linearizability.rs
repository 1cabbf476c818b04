//! Every key's history is linearizable across a `kill -9` and restart of a
//! node with `appendfsync always` — which includes that no acknowledged
//! write is lost and no failed write appears. Timed-out operations are
//! *unknown*, never assumed absent (see `history`).

mod common;
mod history;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{poll_until, test_seed, TestServer};
use history::{History, Operation, Outcome};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CLIENTS: usize = 6;
const KEYS: usize = 8;
const OPERATIONS_PER_PHASE: usize = 120;

#[test]
fn the_history_checker_catches_lost_and_phantom_writes() {
    history::self_test();
}

fn connect(url: &str) -> Option<redis::Connection> {
    let client = redis::Client::open(url).ok()?;
    let connection = client.get_connection_with_timeout(Duration::from_secs(2)).ok()?;
    connection.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    connection.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    Some(connection)
}

/// Runs `count` random register operations, recording each; a broken
/// connection makes the operation in flight unknown and is reopened.
fn run_client(url: &str, client: usize, count: usize, seed: u64, history: &History, stop: &AtomicBool) {
    let mut rng = StdRng::seed_from_u64(seed ^ client as u64);
    let mut connection = connect(url);
    for sequence in 0..count {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Some(open) = connection.as_mut() else {
            std::thread::sleep(Duration::from_millis(20));
            connection = connect(url);
            continue;
        };
        let key = format!("register:{}", rng.gen_range(0..KEYS));
        if rng.gen_bool(0.5) {
            let value = format!("c{client}-{sequence}");
            let id = history.invoke(Operation::Write { key: key.clone(), value: value.clone() });
            match redis::cmd("SET").arg(&key).arg(&value).query::<String>(open) {
                Ok(_) => history.complete(id, Outcome::Ok(None)),
                Err(error) if error.kind() == redis::ErrorKind::ResponseError => history.complete(id, Outcome::Failed),
                Err(_) => {
                    history.complete(id, Outcome::Unknown);
                    connection = None;
                }
            }
        } else {
            let id = history.invoke(Operation::Read { key: key.clone() });
            match redis::cmd("GET").arg(&key).query::<Option<String>>(open) {
                Ok(value) => history.complete(id, Outcome::Ok(value)),
                Err(error) if error.kind() == redis::ErrorKind::ResponseError => history.complete(id, Outcome::Failed),
                Err(_) => {
                    history.complete(id, Outcome::Unknown);
                    connection = None;
                }
            }
        }
    }
}

fn phase(url: &str, seed: u64, history: &Arc<History>, stop: &Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    (0..CLIENTS)
        .map(|client| {
            let (url, history, stop) = (url.to_string(), history.clone(), stop.clone());
            std::thread::spawn(move || run_client(&url, client, OPERATIONS_PER_PHASE, seed, &history, &stop))
        })
        .collect()
}

#[test]
fn register_histories_stay_linearizable_across_kill_9_and_restart() {
    let seed = test_seed();
    let mut server = TestServer::with_args(&["--appendfsync", "always"]);
    let url = server.url();
    let history = Arc::new(History::default());
    let stop = Arc::new(AtomicBool::new(false));

    // Phase 1: load, then SIGKILL while clients are mid-operation.
    let clients = phase(&url, seed, &history, &stop);
    poll_until(Duration::from_secs(20), "some operations before the kill", || history.counts().0 >= 200);
    server.kill9();
    for client in clients {
        client.join().unwrap();
    }
    // Phase 2: the restarted node serves the same clients again.
    server.restart();
    let clients = phase(&url, seed.wrapping_add(1), &history, &stop);
    for client in clients {
        client.join().unwrap();
    }
    // Final reads of every key close each history.
    let mut connection = server.connection();
    for key in 0..KEYS {
        let key = format!("register:{key}");
        let id = history.invoke(Operation::Read { key: key.clone() });
        let value: Option<String> = redis::cmd("GET").arg(&key).query(&mut connection).unwrap();
        history.complete(id, Outcome::Ok(value));
    }
    let (operations, acknowledged_writes) = history.counts();
    assert!(acknowledged_writes > 0, "the workload acknowledged no write");
    if let Err(problem) = history.check() {
        panic!("seed {seed}: {operations} operations: {problem}");
    }
}

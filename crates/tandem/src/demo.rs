//! `tandem demo`: the main job on one machine.
//!
//! Starts a node as a child process in a temporary directory, drives a
//! write load that records every acknowledged write, kills the node with
//! SIGKILL, restarts it, and prints the timeline (fault, restarted, serving,
//! first write) and the audit of acknowledged writes (lost must be 0 with
//! `appendfsync always`). Until the cluster lands this demonstrates the
//! single node's durability; the same audit then covers failover.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tandem_resp::Frame;

use crate::client::{Client, ClientError};

/// Options of `tandem demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Rounds of load, kill and recovery.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Milliseconds of write load before each kill.
    #[arg(long, default_value_t = 1500)]
    pub load_ms: u64,
    /// Concurrent writer connections.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// The node's appendfsync: always (no acknowledged write may be lost), everysec or no.
    #[arg(long, default_value = "always")]
    pub appendfsync: String,
    /// Print the summary as JSON instead of the timeline.
    #[arg(long)]
    pub json: bool,
    /// Keep the temporary data directory afterwards.
    #[arg(long)]
    pub keep: bool,
}

/// One round's measurements.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    /// Round number, from 1.
    pub round: u32,
    /// Writes acknowledged before the fault.
    pub acknowledged_writes: u64,
    /// Writes whose outcome is unknown (in flight at the fault).
    pub unknown_writes: u64,
    /// Acknowledged writes missing after recovery.
    pub lost_acknowledged_writes: u64,
    /// Fault to the new process being started, ms.
    pub restarted_ms: u64,
    /// Fault to the first PING answered, ms.
    pub serving_ms: u64,
    /// Fault to the first write acknowledged, ms (the outage a client sees).
    pub first_write_ms: u64,
}

/// The whole run.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// What was demonstrated.
    pub scenario: &'static str,
    /// The node's appendfsync.
    pub appendfsync: String,
    /// Every round.
    pub rounds: Vec<Round>,
    /// Sum of acknowledged writes.
    pub acknowledged_writes: u64,
    /// Sum of lost acknowledged writes.
    pub lost_acknowledged_writes: u64,
    /// Fault to first write, ms, per round (named like the failover demo's field).
    pub failover_ms: Vec<u64>,
}

/// Runs the demo; exit code 0 when no acknowledged write was lost.
pub fn run(args: DemoArgs) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let directory = std::env::temp_dir().join(format!("tandem-demo-{}", std::process::id()));
    let node = Arc::new(Mutex::new(None::<Child>));
    install_interrupt_cleanup(node.clone(), directory.clone(), args.keep);
    let result = runtime.block_on(demo(&args, &directory, &node));
    stop_node(&node);
    if !args.keep {
        let _ = std::fs::remove_dir_all(&directory);
    }
    match result {
        Ok(summary) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&summary).expect("summary serializes"));
            } else {
                println!(
                    "summary: {} rounds, {} acknowledged writes checked, {} lost",
                    summary.rounds.len(),
                    summary.acknowledged_writes,
                    summary.lost_acknowledged_writes
                );
            }
            if summary.lost_acknowledged_writes == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("tandem demo: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn install_interrupt_cleanup(node: Arc<Mutex<Option<Child>>>, directory: PathBuf, keep: bool) {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        runtime.block_on(async {
            let _ = tokio::signal::ctrl_c().await;
        });
        eprintln!("tandem demo: interrupted; stopping the node and cleaning up");
        stop_node(&node);
        if !keep {
            let _ = std::fs::remove_dir_all(&directory);
        }
        std::process::exit(130);
    });
}

fn stop_node(node: &Mutex<Option<Child>>) {
    if let Some(mut child) = node.lock().expect("node lock").take() {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn spawn_node(directory: &Path, port: u16, appendfsync: &str) -> anyhow::Result<Child> {
    let exe = std::env::current_exe()?;
    let child = Command::new(exe)
        .args(["server", "--port", &port.to_string(), "--admin-port", "0", "--appendfsync", appendfsync])
        .arg("--data-dir")
        .arg(directory)
        .args(["--log-level", "warn"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()?;
    Ok(child)
}

async fn demo(args: &DemoArgs, directory: &Path, node: &Mutex<Option<Child>>) -> anyhow::Result<Summary> {
    std::fs::create_dir_all(directory)?;
    let port = free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    *node.lock().expect("node lock") = Some(spawn_node(directory, port, &args.appendfsync)?);
    wait_serving(addr, Duration::from_secs(30)).await?;
    if !args.json {
        println!(
            "tandem demo: one node on {addr}, appendfsync={}, {} writers, {} rounds of {} ms load then SIGKILL",
            args.appendfsync, args.clients, args.rounds, args.load_ms
        );
    }
    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        let outcome = run_round(args, round, addr, directory, node).await?;
        if !args.json {
            print_round(&outcome);
        }
        rounds.push(outcome);
    }
    Ok(Summary {
        scenario: "single node: SIGKILL under write load, restart, audit",
        appendfsync: args.appendfsync.clone(),
        acknowledged_writes: rounds.iter().map(|r| r.acknowledged_writes).sum(),
        lost_acknowledged_writes: rounds.iter().map(|r| r.lost_acknowledged_writes).sum(),
        failover_ms: rounds.iter().map(|r| r.first_write_ms).collect(),
        rounds,
    })
}

fn print_round(round: &Round) {
    println!(
        "round {}: {} writes acknowledged, {} in flight at the fault",
        round.round, round.acknowledged_writes, round.unknown_writes
    );
    println!("  +{:>5} ms  fault: SIGKILL of the node", 0);
    println!("  +{:>5} ms  restarted: new process started on the same data directory", round.restarted_ms);
    println!("  +{:>5} ms  serving: log replayed, PING answered", round.serving_ms);
    println!("  +{:>5} ms  first write acknowledged", round.first_write_ms);
    println!(
        "  audit: {} acknowledged writes checked, {} lost",
        round.acknowledged_writes, round.lost_acknowledged_writes
    );
}

/// Acknowledged (key, value) pairs and the count of unknown outcomes.
#[derive(Default)]
struct Ledger {
    acknowledged: Vec<(String, String)>,
    unknown: u64,
}

async fn run_round(
    args: &DemoArgs,
    round: u32,
    addr: SocketAddr,
    directory: &Path,
    node: &Mutex<Option<Child>>,
) -> anyhow::Result<Round> {
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for writer in 0..args.clients {
        writers.push(tokio::spawn(write_load(addr, round, writer, ledger.clone(), stop.clone())));
    }
    tokio::time::sleep(Duration::from_millis(args.load_ms)).await;
    let fault = Instant::now();
    if let Some(mut child) = node.lock().expect("node lock").take() {
        child.kill()?;
        child.wait()?;
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        let _ = writer.await;
    }
    *node.lock().expect("node lock") = Some(spawn_node(directory, addr.port(), &args.appendfsync)?);
    let restarted_ms = fault.elapsed().as_millis() as u64;
    wait_serving(addr, Duration::from_secs(60)).await?;
    let serving_ms = fault.elapsed().as_millis() as u64;
    let mut client = Client::connect(addr, Duration::from_secs(5)).await?;
    let probe = format!("demo:{round}:first-write");
    expect_ok(client.call(&[b"SET", probe.as_bytes(), b"1"]).await?)?;
    let first_write_ms = fault.elapsed().as_millis() as u64;
    let ledger = std::mem::take(&mut *ledger.lock().expect("ledger lock"));
    let lost = audit(&mut client, &ledger.acknowledged).await?;
    Ok(Round {
        round,
        acknowledged_writes: ledger.acknowledged.len() as u64,
        unknown_writes: ledger.unknown,
        lost_acknowledged_writes: lost,
        restarted_ms,
        serving_ms,
        first_write_ms,
    })
}

fn expect_ok(frame: Frame) -> anyhow::Result<()> {
    match frame {
        Frame::Simple(text) if &text[..] == b"OK" => Ok(()),
        other => anyhow::bail!("unexpected reply {other:?}"),
    }
}

async fn write_load(addr: SocketAddr, round: u32, writer: usize, ledger: Arc<Mutex<Ledger>>, stop: Arc<AtomicBool>) {
    let Ok(mut client) = Client::connect(addr, Duration::from_secs(2)).await else { return };
    let mut sequence = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("demo:{round}:{writer}:{sequence}");
        let value = format!("{sequence}");
        match client.call(&[b"SET", key.as_bytes(), value.as_bytes()]).await {
            Ok(Frame::Simple(ok)) if &ok[..] == b"OK" => {
                ledger.lock().expect("ledger lock").acknowledged.push((key, value));
            }
            Ok(_) => {}
            Err(ClientError::Io(_) | ClientError::Closed | ClientError::Timeout | ClientError::Protocol(_)) => {
                // The node died with this write in flight: its outcome is unknown.
                ledger.lock().expect("ledger lock").unknown += 1;
                return;
            }
        }
        sequence += 1;
    }
}

/// Counts acknowledged writes whose value is not there.
async fn audit(client: &mut Client, acknowledged: &[(String, String)]) -> anyhow::Result<u64> {
    let mut lost = 0;
    for chunk in acknowledged.chunks(500) {
        let mut args: Vec<&[u8]> = vec![b"MGET"];
        args.extend(chunk.iter().map(|(key, _)| key.as_bytes()));
        let Frame::Array(values) = client.call(&args).await? else { anyhow::bail!("MGET did not return an array") };
        for ((_, expected), value) in chunk.iter().zip(values) {
            match value {
                Frame::Bulk(bytes) if bytes == expected.as_bytes() => {}
                _ => lost += 1,
            }
        }
    }
    Ok(lost)
}

async fn wait_serving(addr: SocketAddr, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(mut client) = Client::connect(addr, Duration::from_millis(200)).await {
            if let Ok(Frame::Simple(pong)) = client.call(&[b"PING"]).await {
                if &pong[..] == b"PONG" {
                    return Ok(());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    anyhow::bail!("the node at {addr} did not answer PING within {within:?}")
}

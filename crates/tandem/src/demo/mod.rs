//! `tandem demo`: the main job on one machine — a failover under write load.
//!
//! Starts a witness and two data nodes as child processes on loopback
//! addresses in a temporary directory (`cluster`), drives writers through
//! the service address that record every acknowledged write (`workload`),
//! kills the active with SIGKILL, and prints the timeline — fault, detected,
//! promoted, address moved, first write served, in ms since the fault — and
//! the audit of every acknowledged write on the new active (`timeline`).
//! Each further round restarts the killed node, waits until it is an in-sync
//! standby again, and kills the current active.
//!
//! Exit status: 0 when no acknowledged write was lost, 1 when some were, 2
//! when the demo could not run to the end (the reason and the nodes' stderr
//! are printed). Every exit path, Ctrl-C included, stops the children this
//! demo started (by PID) and removes the temporary directory unless `--keep`.

mod cluster;
mod timeline;
mod workload;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use self::cluster::{Children, ClusterSettings, LocalCluster, DATA_NODES};
use self::timeline::Info;
use self::workload::{Target, Writers};
use crate::limits;

/// How long a new cluster, or a restarted node, may take to be an in-sync standby
/// beside a writable active.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long after the fault a write must be served again.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to try the service address before following the nodes' own addresses.
const SERVICE_ADDRESS_PROBE: Duration = Duration::from_secs(3);

/// Options of `tandem demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Failover mode; only active-passive exists so far.
    #[arg(long, default_value = "active-passive")]
    pub mode: String,
    /// When a write is acknowledged: after the standby persisted it (sync), the same
    /// with a fallback after a timeout (semi-sync), or after the local write (async).
    /// Default: sync with a hot standby, async with a cold one (the only mode it allows).
    #[arg(long, value_enum)]
    pub ack_mode: Option<AckMode>,
    /// A hot standby applies the replication stream; a cold one only watches the active
    /// and, when it takes over, rebuilds from the active's archive (shipped every
    /// `--archive-interval-ms`): what was not shipped yet is lost, and counted.
    #[arg(long, value_enum, default_value_t = Standby::Hot)]
    pub standby: Standby,
    /// Keys (100-byte values) written before the first round, then checkpointed (and, with a
    /// cold standby, archived): the dataset a takeover has to restore.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=100_000_000))]
    pub preload_keys: u64,
    /// With `--standby cold`: how often the active ships its log to the archive, ms.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub archive_interval_ms: u64,
    /// Heartbeat and failure-detector settings: the built-in defaults, or tight ones.
    #[arg(long, value_enum, default_value_t = Timings::Default)]
    pub timings: Timings,
    /// Rounds of load, SIGKILL of the active, failover and audit.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub rounds: u32,
    /// Milliseconds of write load before each kill.
    #[arg(long, default_value_t = 1500)]
    pub load_ms: u64,
    /// Concurrent writer connections.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub clients: u32,
    /// Print the summary as JSON instead of the timeline.
    #[arg(long)]
    pub json: bool,
    /// Keep the temporary directory (configurations, data, stderr of every process).
    #[arg(long)]
    pub keep: bool,
}

/// `--ack-mode`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// Reply after the standby persisted the write.
    Sync,
    /// Sync, falling back to async when the standby is slow.
    SemiSync,
    /// Reply after the local write.
    Async,
}

impl AckMode {
    fn as_str(self) -> &'static str {
        match self {
            AckMode::Sync => "sync",
            AckMode::SemiSync => "semi-sync",
            AckMode::Async => "async",
        }
    }
}

/// `--standby`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standby {
    /// Applies the replication stream; takes over at once, loses nothing in sync mode.
    Hot,
    /// Watches the active only; takes over by restoring the active's archive.
    Cold,
}

impl Standby {
    fn as_str(self) -> &'static str {
        match self {
            Standby::Hot => "hot",
            Standby::Cold => "cold",
        }
    }
}

impl DemoArgs {
    /// The ack mode: as given, or the default for the standby kind; an error for a cold
    /// standby with an ack mode that waits for it.
    fn ack_mode(&self) -> Result<AckMode, String> {
        match (self.standby, self.ack_mode) {
            (Standby::Hot, mode) => Ok(mode.unwrap_or(AckMode::Sync)),
            (Standby::Cold, None | Some(AckMode::Async)) => Ok(AckMode::Async),
            (Standby::Cold, Some(mode)) => Err(format!(
                "--ack-mode {} waits for the standby, but a cold standby receives no stream; use --ack-mode async",
                mode.as_str()
            )),
        }
    }
}

/// `--timings`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timings {
    /// The built-in heartbeat and detector defaults.
    Default,
    /// Heartbeat every 10 ms; dead after 50–300 ms of silence; control-plane election timeout 30 ms.
    Tight,
}

impl Timings {
    fn as_str(self) -> &'static str {
        match self {
            Timings::Default => "default",
            Timings::Tight => "tight",
        }
    }

    /// (heartbeat, dead after at least, dead after at most), ms.
    fn values_ms(self) -> (u64, u64, u64) {
        match self {
            Timings::Default => (
                limits::HEARTBEAT_MS_DEFAULT,
                limits::DETECTOR_DEAD_MIN_MS_DEFAULT,
                limits::DETECTOR_DEAD_MAX_MS_DEFAULT,
            ),
            Timings::Tight => (10, 50, 300),
        }
    }

    /// The `[cluster]` lines; none for the defaults, so the demo shows what a user gets.
    fn toml_lines(self) -> String {
        match self {
            Timings::Default => String::new(),
            Timings::Tight => {
                let (heartbeat, floor, ceiling) = self.values_ms();
                format!(
                    "heartbeat_ms = {heartbeat}\ndetector_dead_min_ms = {floor}\ndetector_dead_max_ms = {ceiling}\n\
                     control_election_timeout_ms = {}\n",
                    TIGHT_CONTROL_ELECTION_TIMEOUT_MS
                )
            }
        }
    }
}

/// The control plane's election timeout with tight timings: elections, and so promotions,
/// follow a dead active within about twice this.
const TIGHT_CONTROL_ELECTION_TIMEOUT_MS: u64 = 30;

/// One round's measurements; phases are ms since the fault, `None` when the node did not
/// report them.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    /// Round number, from 1.
    pub round: u32,
    /// Writes acknowledged in this round (before and after the fault).
    pub acknowledged_writes: u64,
    /// Writes sent before the fault and acknowledged (by the old active; a reply may
    /// arrive just after the kill).
    pub writes_before_fault: u64,
    /// Writes whose outcome is unknown (in flight at the fault).
    pub unknown_writes: u64,
    /// Acknowledged writes missing or different on the new active.
    pub lost_acknowledged_writes: u64,
    /// The new active's detector declared the old one dead.
    pub detected_ms: Option<u64>,
    /// The control plane made the new active active.
    pub promoted_ms: Option<u64>,
    /// The new active bound the service address (its first bind after the promotion).
    pub address_moved_ms: Option<u64>,
    /// The new active bound the address again later in the round: its lease lapsed (it
    /// released the address and refused writes) and was renewed. The last such bind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address_bound_again_ms: Option<u64>,
    /// The first write sent after the fault was acknowledged.
    pub first_write_ms: u64,
    /// Fault to first write served: the outage a client sees.
    pub failover_ms: u64,
    /// The node killed.
    pub old_active: u32,
    /// The node promoted.
    pub new_active: u32,
    /// The new active's epoch.
    pub epoch: Option<u64>,
    /// The new active's count of promotions after a failed active.
    pub failovers: Option<u64>,
    /// The first few lost keys, if any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lost_keys: Vec<String>,
    /// Cold standby: records the active had not yet archived just before the fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_lag_records: Option<u64>,
    /// Cold standby: writes acknowledged just before the archive lag was read (those sent
    /// before the fault and acknowledged later are `writes_before_fault` minus this).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writes_at_archive_reading: Option<u64>,
    /// Cold standby: how long the new active took to rebuild from the archive, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cold_restore_ms: Option<u64>,
    /// Cold standby: the loss the new active reports (a lower bound: the old active's last
    /// index it heard of, minus the index it restored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cold_lost_records_at_least: Option<u64>,
}

/// The whole run.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// What was demonstrated.
    pub scenario: &'static str,
    /// `--mode`.
    pub mode: String,
    /// `--ack-mode`.
    pub ack_mode: &'static str,
    /// `--standby`.
    pub standby: &'static str,
    /// `--timings`.
    pub timings: &'static str,
    /// Heartbeat interval, ms.
    pub heartbeat_ms: u64,
    /// The detector's floor and ceiling, ms.
    pub detector_dead_ms: [u64; 2],
    /// The service address of the cluster.
    pub service_address: Option<String>,
    /// Whether writers went through the service address (else through the nodes' own).
    pub through_service_address: bool,
    /// Every completed round.
    pub rounds: Vec<Round>,
    /// Sum of acknowledged writes.
    pub acknowledged_writes: u64,
    /// Sum of lost acknowledged writes.
    pub lost_acknowledged_writes: u64,
    /// Fault to first write served, ms, per round.
    pub failover_ms: Vec<u64>,
    /// Why the demo stopped before the last round, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Summary {
    fn new(args: &DemoArgs, ack_mode: AckMode) -> Summary {
        let (heartbeat_ms, floor, ceiling) = args.timings.values_ms();
        Summary {
            scenario: match args.standby {
                Standby::Hot => "active-passive, hot standby: SIGKILL of the active under write load, failover, audit",
                Standby::Cold => {
                    "active-passive, cold standby: SIGKILL of the active under write load, restore from its archive, \
                     audit"
                }
            },
            mode: args.mode.clone(),
            ack_mode: ack_mode.as_str(),
            standby: args.standby.as_str(),
            timings: args.timings.as_str(),
            heartbeat_ms,
            detector_dead_ms: [floor, ceiling],
            service_address: None,
            through_service_address: false,
            rounds: Vec::new(),
            acknowledged_writes: 0,
            lost_acknowledged_writes: 0,
            failover_ms: Vec::new(),
            error: None,
        }
    }

    fn add(&mut self, round: Round) {
        self.acknowledged_writes += round.acknowledged_writes;
        self.lost_acknowledged_writes += round.lost_acknowledged_writes;
        self.failover_ms.push(round.failover_ms);
        self.rounds.push(round);
    }
}

/// Runs the demo; see the module docs for the exit status.
pub fn run(args: DemoArgs) -> ExitCode {
    if args.mode != "active-passive" {
        eprintln!(
            "tandem demo: --mode {}: only active-passive exists so far (active-active is not built yet)",
            args.mode
        );
        return ExitCode::from(2);
    }
    let ack_mode = match args.ack_mode() {
        Ok(ack_mode) => ack_mode,
        Err(message) => {
            eprintln!("tandem demo: {message}");
            return ExitCode::from(2);
        }
    };
    // A current-thread runtime: the children are spawned from the main thread, so their
    // parent-death signal fires only when this process exits (see cluster::spawn).
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let suffix: u32 = rand::random();
    let directory = std::env::temp_dir().join(format!("tandem-demo-{}-{suffix:08x}", std::process::id()));
    let children = Arc::new(Children::default());
    install_interrupt_cleanup(children.clone(), directory.clone(), args.keep);
    let summary = runtime.block_on(demo(&args, ack_mode, &directory, children.clone()));
    children.stop_all();
    if args.keep {
        eprintln!("tandem demo: kept {}", directory.display());
    } else {
        let _ = std::fs::remove_dir_all(&directory);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary).expect("the summary serializes"));
    } else if !summary.rounds.is_empty() {
        timeline::print_summary(&summary.rounds);
    }
    if let Some(error) = &summary.error {
        eprintln!("tandem demo: {error}");
        ExitCode::from(2)
    } else if summary.lost_acknowledged_writes > 0 && args.standby == Standby::Hot {
        // With a cold standby the writes not yet archived are lost by design (and counted).
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn install_interrupt_cleanup(children: Arc<Children>, directory: PathBuf, keep: bool) {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        runtime.block_on(async {
            let _ = tokio::signal::ctrl_c().await;
        });
        eprintln!("tandem demo: interrupted; stopping the cluster and cleaning up");
        children.stop_all();
        if !keep {
            let _ = std::fs::remove_dir_all(&directory);
        }
        std::process::exit(130);
    });
}

async fn demo(args: &DemoArgs, ack_mode: AckMode, directory: &Path, children: Arc<Children>) -> Summary {
    let mut summary = Summary::new(args, ack_mode);
    if let Err(error) = run_rounds(args, ack_mode, directory, children, &mut summary).await {
        summary.error = Some(format!("{error:#}"));
    }
    summary
}

async fn run_rounds(
    args: &DemoArgs,
    ack_mode: AckMode,
    directory: &Path,
    children: Arc<Children>,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(directory)?;
    let settings = ClusterSettings {
        ack_mode: ack_mode.as_str(),
        timing_lines: args.timings.toml_lines(),
        standby: args.standby.as_str(),
        archive_interval_ms: args.archive_interval_ms,
    };
    let mut cluster = LocalCluster::start(directory, &settings, children).await?;
    let mut active = wait_ready(&cluster, args.standby).await?;
    let target = choose_target(&cluster).await;
    summary.service_address = Some(cluster.service_address.to_string());
    summary.through_service_address = matches!(target, Target::ServiceAddress(_));
    if !args.json {
        print_header(args, ack_mode, directory, &cluster, &target);
    }
    if args.preload_keys > 0 {
        let loaded = Instant::now();
        workload::preload(cluster.client_address(active), args.preload_keys).await?;
        if args.standby == Standby::Cold {
            wait_archived(&cluster, active, args.archive_interval_ms).await?;
        }
        if !args.json {
            println!("  preloaded {} keys in {} ms\n", args.preload_keys, loaded.elapsed().as_millis());
        }
    }
    for round in 1..=args.rounds {
        let outcome = run_round(args, round, &cluster, active, &target).await?;
        if !args.json {
            timeline::print_round(&outcome, summary.through_service_address.then_some(cluster.service_address));
        }
        let killed = outcome.old_active;
        active = outcome.new_active;
        summary.add(outcome);
        if round < args.rounds {
            let restarted = Instant::now();
            cluster.restart(killed).await?;
            let now_active = wait_ready(&cluster, args.standby).await?;
            anyhow::ensure!(now_active == active, "node {now_active} became active after node {killed} restarted");
            if !args.json {
                let ms = restarted.elapsed().as_millis();
                let what = match args.standby {
                    Standby::Hot => "an in-sync standby",
                    Standby::Cold => "a cold standby",
                };
                println!("  node {killed} restarted: {what} again after {ms} ms\n");
            }
        }
    }
    Ok(())
}

fn print_header(args: &DemoArgs, ack_mode: AckMode, directory: &Path, cluster: &LocalCluster, target: &Target) {
    let (heartbeat, floor, ceiling) = args.timings.values_ms();
    println!(
        "tandem demo: a witness and two data nodes on loopback, files in {}\n  \
         mode active-passive, {} standby, ack mode {}, {} timings (heartbeat {heartbeat} ms, dead after \
         {floor}-{ceiling} ms)",
        directory.display(),
        args.standby.as_str(),
        ack_mode.as_str(),
        args.timings.as_str(),
    );
    if args.standby == Standby::Cold {
        println!(
            "  the active ships its log to {} every {} ms; the cold standby holds no data until it takes over",
            directory.join("archive").display(),
            args.archive_interval_ms
        );
    }
    match target {
        Target::ServiceAddress(address) => println!("  clients use the service address {address}"),
        Target::FollowActive(_) => println!(
            "  the nodes do not bind the service address {} (not in this build): clients follow the active on the nodes' own addresses",
            cluster.service_address
        ),
    }
    println!(
        "  {} writers; {} rounds of {} ms load, then SIGKILL of the active\n",
        args.clients, args.rounds, args.load_ms
    );
}

/// Waits until the active's archive holds everything it wrote, and a little more for the
/// checkpoint taken after the preload to be shipped too.
async fn wait_archived(cluster: &LocalCluster, active: u32, interval_ms: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let info = Info::read_section(cluster.client_address(active), "persistence").await?;
        if info.number("archive_lag_records") == Some(0) && info.text("archive_status") == "ok" {
            tokio::time::sleep(Duration::from_millis(interval_ms * 2)).await;
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "node {active} did not archive the preloaded keys within {READY_TIMEOUT:?}: archive_status {}",
            info.text("archive_status")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The service address when it leads to the active, else the nodes' own addresses.
async fn choose_target(cluster: &LocalCluster) -> Target {
    let deadline = Instant::now() + SERVICE_ADDRESS_PROBE;
    while Instant::now() < deadline {
        if workload::accepts_a_write(cluster.service_address).await {
            return Target::ServiceAddress(cluster.service_address);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Target::FollowActive(DATA_NODES.iter().map(|id| cluster.client_address(*id)).collect())
}

/// Waits until one data node is a writable active and the other a standby (in sync, if hot)
/// that follows it on both planes; returns the active.
async fn wait_ready(cluster: &LocalCluster, standby: Standby) -> anyhow::Result<u32> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        for id in DATA_NODES {
            cluster.check_running(id)?;
        }
        let why = match ready_active(cluster, standby).await {
            Ok(active) => return Ok(active),
            Err(reason) => reason,
        };
        if Instant::now() > deadline {
            anyhow::bail!(
                "no writable active with an in-sync standby within {READY_TIMEOUT:?} ({why})\n{}",
                cluster.all_stderr_tails()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn ready_active(cluster: &LocalCluster, standby_kind: Standby) -> Result<u32, String> {
    let mut infos = Vec::new();
    for id in DATA_NODES {
        infos.push(Info::read(cluster.client_address(id)).await.map_err(|error| format!("node {id}: {error}"))?);
    }
    let Some(index) = infos.iter().position(|info| info.text("role") == "master") else {
        return Err("no node is active yet".into());
    };
    let (active, standby) = (DATA_NODES[index], &infos[1 - index]);
    let standby_id = cluster.other(active).to_string();
    // In sync by its own account *and* in the control plane's in-sync set, as both nodes
    // see it: only then would the control plane promote it (invariant 3).
    let in_sync_set = |info: &Info| info.text("tandem_control_in_sync").split(',').any(|id| id == standby_id);
    let watching = standby.text("role") == "slave"
        && standby.text("master_link_status") == "up"
        && standby.number("tandem_control_active") == Some(u64::from(active))
        && standby.number("tandem_control_leader") == Some(u64::from(active));
    let follows = match standby_kind {
        Standby::Hot => {
            watching && standby.text("tandem_in_sync") == "1" && in_sync_set(standby) && in_sync_set(&infos[index])
        }
        // A cold standby is never in sync: it only has to follow the control log, or it could
        // not be elected.
        Standby::Cold => watching,
    };
    if !follows {
        let fields =
            ["role", "master_link_status", "tandem_in_sync", "tandem_control_active", "tandem_control_in_sync"]
                .map(|name| format!("{name}:{}", standby.text(name)))
                .join(" ");
        return Err(format!(
            "node {standby_id} is not yet an in-sync standby of node {active}: it shows {fields}; \
             node {active} shows tandem_control_in_sync:{}",
            infos[index].text("tandem_control_in_sync")
        ));
    }
    if !workload::accepts_a_write(cluster.client_address(active)).await {
        return Err(format!("node {active} does not acknowledge writes yet"));
    }
    Ok(active)
}

/// One round: load, SIGKILL of `active`, recovery, post-fault load, audit.
async fn run_round(
    args: &DemoArgs,
    round: u32,
    cluster: &LocalCluster,
    active: u32,
    target: &Target,
) -> anyhow::Result<Round> {
    let writers = Writers::start(target, round, args.clients as usize);
    tokio::time::sleep(Duration::from_millis(args.load_ms)).await;
    // Read before the lag: every write acknowledged by then is archived or counted in it.
    let writes_at_archive_reading = writers.ledger().acknowledged_count();
    let archive_lag_records = match args.standby {
        Standby::Hot => None,
        Standby::Cold => Info::read_section(cluster.client_address(active), "persistence")
            .await
            .ok()
            .and_then(|info| info.number("archive_lag_records")),
    };
    let fault = Instant::now();
    let fault_unix_ms = crate::db::unix_ms();
    writers.ledger().mark_fault(fault);
    cluster.kill(active)?;
    let new_active = cluster.other(active);
    let Some(first_write) = wait_first_write(&writers).await else {
        writers.stop().await;
        anyhow::bail!(
            "no write was served within {RECOVERY_TIMEOUT:?} of killing node {active}\n{}",
            cluster.all_stderr_tails()
        );
    };
    // A little load on the new active, so that the audit also covers writes after the failover.
    tokio::time::sleep(Duration::from_millis((args.load_ms / 2).clamp(200, 1000))).await;
    let tally = writers.stop().await;
    let info = Info::read(cluster.client_address(new_active)).await?;
    anyhow::ensure!(info.text("role") == "master", "node {new_active} served a write but is not the active");
    let audit = workload::audit(cluster.client_address(new_active), &tally.acknowledged).await?;
    let first_write_ms = first_write.duration_since(fault).as_millis() as u64;
    let address_bound = info.text("tandem_service_address_bound") == "1";
    let address_last_bound_ms =
        address_bound.then(|| info.since("tandem_service_address_bound_unix_ms", fault_unix_ms)).flatten();
    // The failover's first bind; a promotion the node did not record as a failover (no
    // detection stamp) has none, and then the last bind is all there is.
    let address_first_bound_ms =
        address_bound.then(|| info.since("tandem_last_failover_address_bound_unix_ms", fault_unix_ms)).flatten();
    let address_moved_ms = address_first_bound_ms.or(address_last_bound_ms);
    Ok(Round {
        round,
        acknowledged_writes: tally.acknowledged.len() as u64,
        writes_before_fault: tally.sent_before_fault,
        unknown_writes: tally.unknown,
        lost_acknowledged_writes: audit.lost,
        detected_ms: info.since("tandem_last_failover_detected_unix_ms", fault_unix_ms),
        promoted_ms: info.since("tandem_last_failover_promoted_unix_ms", fault_unix_ms),
        address_moved_ms,
        address_bound_again_ms: address_first_bound_ms
            .and_then(|first| address_last_bound_ms.filter(|last| *last > first)),
        first_write_ms,
        failover_ms: first_write_ms,
        old_active: active,
        new_active,
        epoch: info.number("tandem_epoch"),
        failovers: info.number("tandem_failovers"),
        lost_keys: audit.lost_keys,
        archive_lag_records,
        writes_at_archive_reading: archive_lag_records.map(|_| writes_at_archive_reading),
        cold_restore_ms: info.number("tandem_cold_restore_ms"),
        cold_lost_records_at_least: info.number("tandem_cold_lost_records_at_least"),
    })
}

async fn wait_first_write(writers: &Writers) -> Option<Instant> {
    let deadline = Instant::now() + RECOVERY_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(first) = writers.ledger().first_write_after_fault() {
            return Some(first);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

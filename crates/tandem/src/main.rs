//! The `tandem` command: `server`, `witness`, `status`, `switchover`, `promote`, `log check`,
//! `checkpoint …`, `archive verify`, `restore --from`, `demo`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tandem::config::{self, FileConfig};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read as it starts (before `main`). `background_thread:true`:
/// freed pages go back to the kernel (`madvise`) from jemalloc's own threads. Without
/// it the thread whose `free` crossed a decay tick did that work: the event loop,
/// freeing a checkpoint's merged layers, spent 7–30 ms in `madvise` (a scheduler trace
/// of 12 checkpoints at 1M keys), and every client waited. `_RJEM_MALLOC_CONF` in the
/// environment adds to or overrides this (README, "Huge pages").
#[unsafe(export_name = "_rjem_malloc_conf")]
static ALLOCATOR_SETTINGS: &u8 = &b"background_thread:true\0"[0];

/// tandem: a fault-tolerant key-value service that speaks the Redis protocol.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a data node (a flag given twice: the last one wins).
    #[command(args_override_self = true)]
    Server(ServerArgs),
    /// Run the cluster's witness: a control-plane member that votes, holds no data and
    /// never becomes active.
    Witness(WitnessArgs),
    /// Inspect or repair the log of a data directory.
    #[command(subcommand)]
    Log(LogCommand),
    /// List, inspect, verify or restore the checkpoints of a data directory.
    #[command(subcommand)]
    Checkpoint(CheckpointCommand),
    /// Check an archive written by a node's `[archive]` shipper.
    #[command(subcommand)]
    Archive(ArchiveCommand),
    /// Rebuild a data directory from an archive, up to its newest consistent point or
    /// exactly to --to-index / --to-time; verified, then opened as the server would.
    Restore(RestoreArgs),
    /// Show every member of the cluster: role, epoch, lag, in sync, heartbeat, checkpoint,
    /// address holder (asks each member's admin address).
    Status(StatusArgs),
    /// Planned switchover: stop new writes, let the standby catch up, hand it the epoch and
    /// the address; no acknowledged write is lost.
    Switchover(SwitchoverArgs),
    /// Promote a data node by force, when the active is lost and the node is not in sync;
    /// the writes it lacks are lost, so both --force and --accept-data-loss are required.
    Promote(PromoteArgs),
    /// Run the demonstration: a witness and two nodes on loopback, the active killed
    /// with SIGKILL under write load, the failover timed and every acknowledged write checked.
    Demo(tandem::demo::DemoArgs),
}

/// `tandem server` options; flags override the config file.
#[derive(Args)]
struct ServerArgs {
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Client port (default 6379; 0 picks a free one).
    #[arg(long)]
    port: Option<u16>,
    /// Address to listen on (default 127.0.0.1).
    #[arg(long)]
    bind: Option<String>,
    /// Data directory (default ./tandem-data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// always | everysec | no (default always).
    #[arg(long)]
    appendfsync: Option<String>,
    /// Password required from clients.
    #[arg(long)]
    requirepass: Option<String>,
    /// Refuse writes above this memory, e.g. 100mb (default 0 = none).
    #[arg(long)]
    maxmemory: Option<String>,
    /// Most simultaneous clients (default 10000).
    #[arg(long)]
    maxclients: Option<u32>,
    /// Admin HTTP port for /metrics (default port+10000; 0 disables).
    #[arg(long)]
    admin_port: Option<u16>,
    /// Threads serving clients (default 1, like Redis's single event loop).
    #[arg(long)]
    worker_threads: Option<usize>,
    /// Log filter, e.g. info, debug, tandem=debug (default info; RUST_LOG also works).
    #[arg(long, default_value = "info")]
    log_level: String,
}

/// `tandem witness` options.
#[derive(Args)]
struct WitnessArgs {
    /// TOML configuration file with the `[cluster]` section; `cluster.node_id` names the witness.
    #[arg(long)]
    config: PathBuf,
    /// Where the control plane's files live (default: `data_dir` from the file, else `tandem-witness-data`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Log filter (`RUST_LOG` syntax) when `RUST_LOG` is unset.
    #[arg(long, default_value = "info")]
    log_level: String,
}

/// `tandem status` options.
#[derive(Args)]
struct StatusArgs {
    /// A configuration file with the `[cluster]` section (any member's, or the operator's own).
    #[arg(long)]
    config: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// `tandem switchover` options.
#[derive(Args)]
struct SwitchoverArgs {
    /// A configuration file with the `[cluster]` section.
    #[arg(long)]
    config: PathBuf,
    /// The data node to hand the role to (default: the current standby).
    #[arg(long)]
    to: Option<u32>,
}

/// `tandem promote` options.
#[derive(Args)]
struct PromoteArgs {
    /// A configuration file with the `[cluster]` section.
    #[arg(long)]
    config: PathBuf,
    /// The data node to promote.
    node: u32,
    /// Promote even if the node is not in sync.
    #[arg(long)]
    force: bool,
    /// Accept that the acknowledged writes the node lacks are lost.
    #[arg(long)]
    accept_data_loss: bool,
}

#[derive(Subcommand)]
enum LogCommand {
    /// Verify every record of the log; with --repair keep the valid prefix.
    Check {
        /// Data directory whose log/ to check.
        #[arg(long, default_value = "tandem-data")]
        data_dir: PathBuf,
        /// Truncate at the first bad record, dropping it and everything after.
        #[arg(long)]
        repair: bool,
    },
}

#[derive(Subcommand)]
enum CheckpointCommand {
    /// One line per checkpoint file, from its header.
    List {
        /// Data directory whose checkpoints/ to list.
        #[arg(long, default_value = "tandem-data")]
        data_dir: PathBuf,
    },
    /// Print a checkpoint's header and verify its every byte.
    Inspect {
        /// The checkpoint id.
        id: u64,
        /// Data directory holding it.
        #[arg(long, default_value = "tandem-data")]
        data_dir: PathBuf,
    },
    /// Verify every byte of one checkpoint, or of all; exits 1 if any is bad.
    Verify {
        /// The checkpoint id (all when omitted).
        id: Option<u64>,
        /// Data directory holding them.
        #[arg(long, default_value = "tandem-data")]
        data_dir: PathBuf,
    },
    /// Copy checkpoint ID and its chain into an empty data directory (node stopped), verified.
    Restore {
        /// The checkpoint id.
        id: u64,
        /// The empty data directory to restore into.
        #[arg(long)]
        data_dir: PathBuf,
        /// The data directory holding the checkpoint.
        #[arg(long, default_value = "tandem-data")]
        from: PathBuf,
    },
}

#[derive(Subcommand)]
enum ArchiveCommand {
    /// Check every file's checksum and the manifest's continuity; prints the last
    /// consistent index; exits 1 if anything is damaged.
    Verify {
        /// The archive directory.
        archive: PathBuf,
    },
}

/// `tandem restore --from ARCHIVE --data-dir DIR [--to-index N | --to-time T]`.
#[derive(Args)]
struct RestoreArgs {
    /// The archive directory.
    #[arg(long)]
    from: PathBuf,
    /// The data directory to create (must be missing or empty).
    #[arg(long)]
    data_dir: PathBuf,
    /// Restore exactly the state after this log index.
    #[arg(long, conflicts_with = "to_time")]
    to_index: Option<u64>,
    /// Restore the state before the first record stamped later than this Unix time in milliseconds.
    #[arg(long)]
    to_time: Option<u64>,
}

fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

/// A panic means a broken invariant: the keyspace may be half-changed, so the
/// node stops at once (the log holds every acknowledged write) instead of
/// serving possibly corrupted state.
fn abort_on_panic() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        tracing::error!("tandem: internal error (panic); stopping the node so no corrupted state is served");
        std::process::abort();
    }));
}

fn server_config(args: &ServerArgs) -> Result<config::Config, config::ConfigError> {
    let mut file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    file.port = args.port.or(file.port);
    file.bind = args.bind.clone().or(file.bind);
    file.data_dir = args.data_dir.clone().or(file.data_dir);
    file.appendfsync = args.appendfsync.clone().or(file.appendfsync);
    file.requirepass = args.requirepass.clone().or(file.requirepass);
    file.maxmemory = args.maxmemory.clone().map(toml::Value::String).or(file.maxmemory);
    file.maxclients = args.maxclients.or(file.maxclients);
    file.admin_port = args.admin_port.or(file.admin_port);
    file.worker_threads = args.worker_threads.or(file.worker_threads);
    file.validate()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Server(args) => {
            init_tracing(&args.log_level);
            abort_on_panic();
            let config = match server_config(&args) {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("tandem: {error}");
                    return ExitCode::from(2);
                }
            };
            let runtime = match config.worker_threads {
                1 => tokio::runtime::Builder::new_current_thread().enable_all().build(),
                threads => tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build(),
            }
            .expect("tokio runtime");
            let outcome = runtime.block_on(tandem::node::run(config));
            drop(runtime);
            match outcome {
                Ok(tandem::node::Outcome::Stopped) => ExitCode::SUCCESS,
                Ok(tandem::node::Outcome::Restart) => restart_in_place(),
                Err(error) => {
                    eprintln!("tandem: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Log(LogCommand::Check { data_dir, repair }) => {
            init_tracing("warn");
            tandem::logcheck::run(&data_dir, repair)
        }
        Command::Checkpoint(command) => {
            init_tracing("warn");
            use tandem::checkpoint::cli;
            match command {
                CheckpointCommand::List { data_dir } => cli::list(&data_dir),
                CheckpointCommand::Inspect { id, data_dir } => cli::inspect(&data_dir, id),
                CheckpointCommand::Verify { id, data_dir } => cli::verify(&data_dir, id),
                CheckpointCommand::Restore { id, data_dir, from } => cli::restore(&from, id, &data_dir),
            }
        }
        Command::Archive(ArchiveCommand::Verify { archive }) => {
            init_tracing("warn");
            tandem::archive::cli::verify(&archive)
        }
        Command::Restore(args) => {
            init_tracing("warn");
            let target = tandem::archive::cli::target(args.to_index, args.to_time);
            tandem::archive::cli::restore(&args.from, &args.data_dir, target)
        }
        Command::Witness(args) => {
            init_tracing(&args.log_level);
            abort_on_panic();
            let loaded = FileConfig::load(&args.config).and_then(|file| {
                let data_dir = args.data_dir.clone().or(file.data_dir.clone());
                let cluster = file.cluster.ok_or(config::ConfigError::Invalid {
                    field: "cluster",
                    message: "the witness needs the [cluster] section".into(),
                })?;
                let requirepass = file.requirepass.clone().filter(|password| !password.is_empty());
                let data_dir = data_dir.unwrap_or_else(|| PathBuf::from("tandem-witness-data"));
                Ok((cluster.validate_witness()?, requirepass, data_dir))
            });
            let (cluster, requirepass, data_dir) = match loaded {
                Ok(loaded) => loaded,
                Err(error) => {
                    eprintln!("tandem: {error}");
                    return ExitCode::from(2);
                }
            };
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
            match runtime.expect("tokio runtime").block_on(tandem::failover::control::run_witness(
                cluster,
                requirepass,
                data_dir,
            )) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("tandem: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Status(args) => run_operation(&args.config, |cluster| tandem::ops::status::run(cluster, args.json)),
        Command::Switchover(args) => {
            run_operation(&args.config, |cluster| tandem::ops::operations::switchover(cluster, args.to))
        }
        Command::Promote(args) => run_operation(&args.config, |cluster| {
            tandem::ops::operations::promote(cluster, args.node, args.force, args.accept_data_loss)
        }),
        Command::Demo(args) => {
            init_tracing("warn");
            tandem::demo::run(args)
        }
    }
}

/// Replaces this process with a fresh run of the same command line (same PID, so a
/// supervisor keeps tracking it): a node whose log diverged starts again to rejoin.
fn restart_in_place() -> ExitCode {
    use std::os::unix::process::CommandExt;
    let mut arguments = std::env::args_os();
    let name = arguments.next().unwrap_or_default();
    // The running binary even if its file was replaced since it started.
    let mut command = std::process::Command::new("/proc/self/exe");
    command.arg0(name).args(arguments);
    eprintln!("tandem: restarting to rejoin the cluster");
    let error = command.exec();
    eprintln!("tandem: cannot restart: {error}");
    ExitCode::FAILURE
}

/// Loads the cluster section for an operator command and runs it; a bad file exits 2.
fn run_operation(config: &std::path::Path, run: impl FnOnce(&config::ClusterConfig) -> ExitCode) -> ExitCode {
    init_tracing("warn");
    match tandem::ops::load_cluster(config) {
        Ok(cluster) => run(&cluster),
        Err(error) => {
            eprintln!("tandem: {error}");
            ExitCode::from(2)
        }
    }
}

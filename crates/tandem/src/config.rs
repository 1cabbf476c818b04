//! Configuration: a TOML file plus command-line overrides, validated into a
//! [`Config`]. Every error names the field it is about.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tandem_log::FsyncPolicy;

use crate::limits;

/// A validated server configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the client port listens on.
    pub bind: IpAddr,
    /// Client (RESP) port; 0 picks a free port.
    pub port: u16,
    /// Admin HTTP port serving `/metrics`; `None` disables it.
    pub admin_port: Option<u16>,
    /// Directory holding the log (and later checkpoints).
    pub data_dir: PathBuf,
    /// When the log is fsynced, like Redis `appendfsync`.
    pub appendfsync: FsyncPolicy,
    /// Password clients must give with `AUTH` or `HELLO … AUTH`.
    pub requirepass: Option<String>,
    /// Most simultaneous clients.
    pub maxclients: u32,
    /// Memory above which writes are refused with `-OOM`; 0 = no limit.
    pub maxmemory_bytes: u64,
    /// Largest bulk string in a request.
    pub proto_max_bulk_len: u64,
    /// Most arguments in one request.
    pub proto_max_array_len: u64,
    /// Largest unparsed input buffered for one client.
    pub client_query_buffer_limit: u64,
    /// Size at which the log rolls to a new segment.
    pub log_segment_bytes: u64,
    /// Active-expiry passes per second.
    pub hz: u32,
    /// Close clients idle for this many seconds; 0 = never.
    pub timeout_seconds: u64,
    /// This node's id, stamped on every log record.
    pub node_id: u32,
    /// When checkpoints are taken and how many are kept.
    pub checkpoint: CheckpointConfig,
    /// Threads serving clients: 1 runs every connection on one thread, as
    /// Redis does (no lock contention, no cross-thread wake-ups).
    pub worker_threads: usize,
    /// The cluster this node belongs to; `None` runs a standalone node.
    pub cluster: Option<ClusterConfig>,
}

/// The TOML file's shape: every field optional, unknown fields refused.
/// The checkpoint schedule and retention (`checkpoint_*` fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointConfig {
    /// Least seconds between full checkpoints; 0 = no automatic full ones.
    pub full_seconds: u64,
    /// Least log records since the last full checkpoint for one to be due.
    pub full_changes: u64,
    /// Least seconds between incremental checkpoints; 0 = none automatic.
    pub incremental_seconds: u64,
    /// Least log records since the last checkpoint for an incremental.
    pub incremental_changes: u64,
    /// Full checkpoints kept, each with its incrementals.
    pub retain_full: u32,
    /// Most incrementals on one full checkpoint before a full one is taken instead.
    pub chain_max: u32,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            full_seconds: limits::CHECKPOINT_FULL_SECONDS_DEFAULT,
            full_changes: 1,
            incremental_seconds: limits::CHECKPOINT_INCREMENTAL_SECONDS_DEFAULT,
            incremental_changes: 1_000,
            retain_full: 2,
            chain_max: limits::CHECKPOINT_CHAIN_DEFAULT,
        }
    }
}

/// The TOML file's shape: every field optional, unknown fields refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub bind: Option<String>,
    pub port: Option<u16>,
    pub admin_port: Option<u16>,
    pub data_dir: Option<PathBuf>,
    pub appendfsync: Option<String>,
    pub requirepass: Option<String>,
    pub maxclients: Option<u32>,
    pub maxmemory: Option<toml::Value>,
    pub proto_max_bulk_len: Option<toml::Value>,
    pub proto_max_array_len: Option<u64>,
    pub client_query_buffer_limit: Option<toml::Value>,
    pub log_segment_size: Option<toml::Value>,
    pub hz: Option<u32>,
    pub timeout: Option<u64>,
    pub node_id: Option<u32>,
    pub checkpoint_full_seconds: Option<u64>,
    pub checkpoint_full_changes: Option<u64>,
    pub checkpoint_incremental_seconds: Option<u64>,
    pub checkpoint_incremental_changes: Option<u64>,
    pub checkpoint_retain_full: Option<u32>,
    pub checkpoint_chain_max: Option<u32>,
    pub worker_threads: Option<usize>,
    pub cluster: Option<ClusterFile>,
}

/// The `[cluster]` section's shape: every field optional, unknown fields refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    pub cluster_id: Option<String>,
    pub secret: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub node_id: Option<u32>,
    pub members: Option<Vec<MemberFile>>,
    pub mode: Option<String>,
    pub standby: Option<String>,
    pub ack_mode: Option<String>,
    pub sync_timeout_ms: Option<u64>,
    pub max_lag_records: Option<u64>,
    pub heartbeat_ms: Option<u64>,
    pub detector_dead_min_ms: Option<u64>,
    pub detector_dead_max_ms: Option<u64>,
    pub initial_active: Option<u32>,
    pub replica_read: Option<bool>,
    pub service_address: Option<String>,
    pub on_role_change: Option<String>,
    pub preempt: Option<bool>,
    pub preempt_delay_ms: Option<u64>,
    pub switchover_timeout_ms: Option<u64>,
    pub control_election_timeout_ms: Option<u64>,
    pub sentinel_master_name: Option<String>,
}

/// One `[[cluster.members]]` entry's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberFile {
    pub id: Option<u32>,
    pub role: Option<String>,
    pub client: Option<String>,
    pub peer: Option<String>,
    pub admin: Option<String>,
    pub control: Option<String>,
    pub priority: Option<u8>,
    pub sentinel: Option<String>,
}

/// A validated `[cluster]` section.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Names the cluster; a peer from another cluster is refused.
    pub cluster_id: String,
    /// The shared secret peers prove they know (HMAC-SHA256), never sent.
    pub secret: Secret,
    /// This node's member id.
    pub node_id: u32,
    /// Every member: two data nodes and, optionally, a witness.
    pub members: Vec<Member>,
    /// How ack replies wait for the standby.
    pub ack_mode: AckMode,
    /// Semi-sync: how long a write waits for the standby before the active continues alone.
    pub sync_timeout_ms: u64,
    /// Async: how many records the standby may lag before writes wait for it (0 = no bound).
    pub max_lag_records: u64,
    /// Interval between heartbeats on the replication connection.
    pub heartbeat_ms: u64,
    /// The failure detector's floor and ceiling.
    pub detector: crate::failover::detector::Settings,
    /// The data node that is active at start (until the control plane decides).
    pub initial_active: u32,
    /// Whether a standby serves reads.
    pub replica_read: bool,
    /// The address clients use whichever node is active: the active binds it, a demoted
    /// node unbinds it. A loopback address (127.0.0.0/8) for now.
    pub service_address: Option<std::net::SocketAddr>,
    /// A shell command run on every role change, with `TANDEM_ROLE`, `TANDEM_EPOCH`,
    /// `TANDEM_NODE_ID` and `TANDEM_SERVICE_ADDRESS` in its environment.
    pub on_role_change: Option<String>,
    /// Whether the active hands the role back to a data node of higher `priority` once that
    /// node is in sync (failback, as a planned switchover); off by default: it can flap.
    pub preempt: bool,
    /// How long the preferred node must have stayed in sync before `preempt` moves the role.
    pub preempt_delay_ms: u64,
    /// How long a planned switchover may refuse writes while the standby catches up.
    pub switchover_timeout_ms: u64,
    /// The control plane's shortest election timeout; its heartbeat, lease and drift
    /// margin follow from it (`failover::control::control_config`).
    pub control_election_timeout_ms: u64,
    /// The master name the Sentinel-compatible endpoint answers for (`tandem` by default).
    pub sentinel_master_name: String,
}

/// The shared cluster secret; `Debug` does not print it.
#[derive(Clone)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Secret(…)")
    }
}

/// Least length of the cluster secret, so that it cannot be guessed online.
pub const SECRET_BYTES_MIN: usize = 16;

/// What a member does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberRole {
    /// Holds data, serves clients, can be active.
    Data,
    /// Votes in the control plane only.
    Witness,
}

/// One member of the cluster.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its id, unique in the cluster.
    pub id: u32,
    /// Data node or witness.
    pub role: MemberRole,
    /// Where clients reach it (data nodes).
    pub client: Option<std::net::SocketAddr>,
    /// Where peers reach it: replication (data nodes) and the control plane.
    pub peer: std::net::SocketAddr,
    /// Its admin HTTP address, if any.
    pub admin: Option<std::net::SocketAddr>,
    /// Its control-plane (Raft) address; given for every member or for none. When given,
    /// the control plane elects the active and fences the old one; without it, roles are
    /// static (`initial_active`).
    pub control: Option<std::net::SocketAddr>,
    /// Preference for the active role (higher wins) when `preempt` is on; data members only.
    pub priority: u8,
    /// Where its Sentinel-compatible discovery endpoint listens, if any; data members only.
    pub sentinel: Option<std::net::SocketAddr>,
}

/// When a write's reply may leave, relative to the standby.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// After the standby persisted the record; blocks while it is away.
    Sync,
    /// Like sync, but after `sync_timeout_ms` without the standby the active continues
    /// alone and the standby is no longer in sync.
    SemiSync,
    /// After the local write; the standby's lag is reported (and bounded by `max_lag_records`).
    Async,
}

impl AckMode {
    /// The configuration spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            AckMode::Sync => "sync",
            AckMode::SemiSync => "semi-sync",
            AckMode::Async => "async",
        }
    }
}

impl ClusterConfig {
    /// The member entry of this node.
    pub fn this_member(&self) -> &Member {
        self.member(self.node_id).expect("validated: node_id is a member")
    }

    /// The member with this id.
    pub fn member(&self, id: u32) -> Option<&Member> {
        self.members.iter().find(|member| member.id == id)
    }

    /// The other data node: the one this node replicates to or from.
    pub fn peer_data_member(&self) -> &Member {
        self.members
            .iter()
            .find(|member| member.role == MemberRole::Data && member.id != self.node_id)
            .expect("validated: two data members")
    }

    /// Whether the members have control-plane addresses: the control plane then drives the roles.
    pub fn has_control_plane(&self) -> bool {
        self.members.iter().all(|member| member.control.is_some())
    }
}

/// A configuration error; the text names the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The file is not valid TOML or has an unknown field.
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A field has a value outside what it accepts.
    #[error("config field `{field}`: {message}")]
    Invalid { field: &'static str, message: String },
}

fn invalid(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field, message: message.into() }
}

impl FileConfig {
    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        toml::from_str(&text).map_err(|error| ConfigError::Parse { path: path.to_owned(), message: error.to_string() })
    }

    /// Validates the file's values, filling in defaults.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let port = self.port.unwrap_or(6379);
        let bind_given = self.bind.clone();
        let bind_text = self.bind.unwrap_or_else(|| "127.0.0.1".to_string());
        let bind = bind_text.parse().map_err(|_| invalid("bind", format!("`{bind_text}` is not an IP address")))?;
        let appendfsync = match self.appendfsync {
            None => FsyncPolicy::Always,
            Some(text) => text
                .parse()
                .map_err(|_| invalid("appendfsync", format!("`{text}` is not one of always, everysec, no")))?,
        };
        let admin_port = match self.admin_port {
            Some(0) => None,
            Some(admin) => Some(admin),
            None if port == 0 => None,
            None => port.checked_add(10_000),
        };
        let config = Config {
            bind,
            port,
            admin_port,
            data_dir: self.data_dir.unwrap_or_else(|| PathBuf::from("tandem-data")),
            appendfsync,
            requirepass: self.requirepass.filter(|password| !password.is_empty()),
            maxclients: self.maxclients.unwrap_or(limits::CLIENTS_MAX_DEFAULT),
            maxmemory_bytes: size_field("maxmemory", self.maxmemory, 0)?,
            proto_max_bulk_len: size_field(
                "proto_max_bulk_len",
                self.proto_max_bulk_len,
                limits::BULK_BYTES_MAX_DEFAULT,
            )?,
            proto_max_array_len: self.proto_max_array_len.unwrap_or(limits::ARRAY_LEN_MAX_DEFAULT),
            client_query_buffer_limit: size_field(
                "client_query_buffer_limit",
                self.client_query_buffer_limit,
                limits::QUERY_BUFFER_BYTES_MAX_DEFAULT,
            )?,
            log_segment_bytes: size_field(
                "log_segment_size",
                self.log_segment_size,
                limits::LOG_SEGMENT_BYTES_DEFAULT,
            )?,
            hz: self.hz.unwrap_or(limits::EXPIRY_HZ_DEFAULT),
            timeout_seconds: self.timeout.unwrap_or(0),
            node_id: self.node_id.unwrap_or(1),
            checkpoint: {
                let defaults = CheckpointConfig::default();
                CheckpointConfig {
                    full_seconds: self.checkpoint_full_seconds.unwrap_or(defaults.full_seconds),
                    full_changes: self.checkpoint_full_changes.unwrap_or(defaults.full_changes),
                    incremental_seconds: self.checkpoint_incremental_seconds.unwrap_or(defaults.incremental_seconds),
                    incremental_changes: self.checkpoint_incremental_changes.unwrap_or(defaults.incremental_changes),
                    retain_full: self.checkpoint_retain_full.unwrap_or(defaults.retain_full),
                    chain_max: self.checkpoint_chain_max.unwrap_or(defaults.chain_max),
                }
            },
            worker_threads: self.worker_threads.unwrap_or(1),
            cluster: None,
        };
        let mut config = config;
        if let Some(cluster) = self.cluster {
            let cluster = cluster.validate()?;
            if self.node_id.is_some_and(|node_id| node_id != cluster.node_id) {
                return Err(invalid("node_id", "differs from cluster.node_id; give only cluster.node_id"));
            }
            config.node_id = cluster.node_id;
            if let Some(client) = cluster.this_member().client {
                // The member's client address is where this node listens unless `bind`/`port` say otherwise.
                if bind_given.is_none() {
                    config.bind = client.ip();
                }
                if self.port.is_none() {
                    config.port = client.port();
                }
            }
            if let Some(admin) = cluster.this_member().admin {
                // The member's admin address is where `tandem status|switchover|promote` reach
                // this node, so the admin endpoint listens there.
                match self.admin_port {
                    None => config.admin_port = Some(admin.port()),
                    Some(port) if port == admin.port() => {}
                    Some(port) => {
                        return Err(invalid(
                            "admin_port",
                            format!("{port} differs from this member's admin address {admin}; give only one"),
                        ))
                    }
                }
                if !config.bind.is_unspecified() && config.bind != admin.ip() {
                    return Err(invalid(
                        "cluster.members",
                        format!(
                            "member {}: admin address {admin} is not on bind address {}",
                            cluster.node_id, config.bind
                        ),
                    ));
                }
            }
            config.cluster = Some(cluster);
        }
        config.check()?;
        Ok(config)
    }
}

impl Config {
    /// Cross-field checks; each failure names the field at fault.
    fn check(&self) -> Result<(), ConfigError> {
        if self.maxclients == 0 {
            return Err(invalid("maxclients", "must be at least 1"));
        }
        if self.proto_max_bulk_len < 1024 || self.proto_max_bulk_len > limits::BULK_BYTES_MAX_CEILING {
            return Err(invalid(
                "proto_max_bulk_len",
                format!("must be between 1kb and {} bytes", limits::BULK_BYTES_MAX_CEILING),
            ));
        }
        if self.proto_max_array_len == 0 || self.proto_max_array_len > i32::MAX as u64 {
            return Err(invalid("proto_max_array_len", "must be between 1 and 2147483647"));
        }
        if self.client_query_buffer_limit < self.proto_max_bulk_len {
            return Err(invalid(
                "client_query_buffer_limit",
                "must be at least proto_max_bulk_len, or the largest value could never arrive",
            ));
        }
        if self.log_segment_bytes < 64 * 1024 {
            return Err(invalid("log_segment_size", "must be at least 64kb"));
        }
        if !(1..=64).contains(&self.worker_threads) {
            return Err(invalid("worker_threads", "must be between 1 and 64"));
        }
        if !(1..=500).contains(&self.hz) {
            return Err(invalid("hz", "must be between 1 and 500"));
        }
        if self.checkpoint.retain_full == 0 {
            return Err(invalid("checkpoint_retain_full", "must be at least 1"));
        }
        if self.checkpoint.chain_max > limits::CHECKPOINT_CHAIN_MAX {
            return Err(invalid(
                "checkpoint_chain_max",
                format!("must be at most {}: a longer chain makes restores slow", limits::CHECKPOINT_CHAIN_MAX),
            ));
        }
        if self.admin_port.is_some() && self.admin_port == Some(self.port) && self.port != 0 {
            return Err(invalid("admin_port", "must differ from port"));
        }
        Ok(())
    }

    /// The RESP codec limits this configuration implies.
    pub fn resp_limits(&self) -> tandem_resp::Limits {
        tandem_resp::Limits {
            bulk_bytes_max: self.proto_max_bulk_len as usize,
            array_len_max: self.proto_max_array_len as usize,
            depth_max: limits::FRAME_DEPTH_MAX,
            inline_bytes_max: limits::INLINE_BYTES_MAX,
        }
    }

    /// The checkpointer's settings this configuration implies.
    pub fn checkpoint_settings(&self) -> crate::checkpoint::Settings {
        let checkpoint = &self.checkpoint;
        crate::checkpoint::Settings {
            schedule: crate::checkpoint::policy::Schedule {
                full_interval_ms: checkpoint.full_seconds.saturating_mul(1000),
                full_changes_min: checkpoint.full_changes,
                incremental_interval_ms: checkpoint.incremental_seconds.saturating_mul(1000),
                incremental_changes_min: checkpoint.incremental_changes,
                chain_incrementals_max: checkpoint.chain_max,
                retry_after_failure_ms: limits::CHECKPOINT_RETRY_AFTER_FAILURE_MS,
            },
            retain_full: checkpoint.retain_full,
            node: self.node_id,
            dir: crate::checkpoint::file::directory(&self.data_dir),
            log_dir: crate::db::log_dir(&self.data_dir),
        }
    }

    /// The log options this configuration implies.
    pub fn log_options(&self) -> tandem_log::LogOptions {
        tandem_log::LogOptions {
            segment_bytes_max: self.log_segment_bytes,
            record_bytes_max: limits::LOG_RECORD_BYTES_MAX,
            fsync: self.appendfsync,
        }
    }
}

impl ClusterFile {
    /// Validates the `[cluster]` section of a data node; errors name the field as `cluster.<field>`.
    pub fn validate(self) -> Result<ClusterConfig, ConfigError> {
        self.validate_as(MemberRole::Data)
    }

    /// Validates the `[cluster]` section of the witness (`tandem witness`): `node_id` names the
    /// witness member, and every member has a `control` address.
    pub fn validate_witness(self) -> Result<ClusterConfig, ConfigError> {
        let cluster = self.validate_as(MemberRole::Witness)?;
        if !cluster.has_control_plane() {
            return Err(invalid("cluster.members", "the witness needs a control address on every member"));
        }
        Ok(cluster)
    }

    fn validate_as(self, expected_role: MemberRole) -> Result<ClusterConfig, ConfigError> {
        let cluster_id = self.cluster_id.filter(|id| !id.trim().is_empty()).ok_or_else(|| {
            invalid("cluster.cluster_id", "is required: it names the cluster, and peers of another are refused")
        })?;
        let secret = cluster_secret(self.secret, self.secret_file)?;
        let members = self
            .members
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(position, member)| member.validate(position))
            .collect::<Result<Vec<Member>, ConfigError>>()?;
        check_members(&members)?;
        let node_id = self.node_id.ok_or_else(|| invalid("cluster.node_id", "is required: this node's member id"))?;
        match members.iter().find(|member| member.id == node_id) {
            None => return Err(invalid("cluster.node_id", format!("{node_id} is not the id of any member"))),
            Some(member) if member.role != expected_role => {
                let message = match expected_role {
                    MemberRole::Data => format!("member {node_id} is a witness, not a data node"),
                    MemberRole::Witness => format!("member {node_id} is a data node, not the witness"),
                };
                return Err(invalid("cluster.node_id", message));
            }
            Some(_) => {}
        }
        match self.mode.as_deref() {
            None | Some("active-passive") => {}
            Some(other) => {
                return Err(invalid("cluster.mode", format!("`{other}` is not supported; only active-passive is")))
            }
        }
        match self.standby.as_deref() {
            None | Some("hot") => {}
            Some(other) => return Err(invalid("cluster.standby", format!("`{other}` is not supported; only hot is"))),
        }
        let ack_mode = match self.ack_mode.as_deref() {
            None | Some("sync") => AckMode::Sync,
            Some("semi-sync") => AckMode::SemiSync,
            Some("async") => AckMode::Async,
            Some(other) => {
                return Err(invalid("cluster.ack_mode", format!("`{other}` is not one of sync, semi-sync, async")))
            }
        };
        let heartbeat_ms = self.heartbeat_ms.unwrap_or(limits::HEARTBEAT_MS_DEFAULT);
        if !(1..=limits::HEARTBEAT_MS_MAX).contains(&heartbeat_ms) {
            return Err(invalid("cluster.heartbeat_ms", format!("must be between 1 and {}", limits::HEARTBEAT_MS_MAX)));
        }
        let detector = crate::failover::detector::Settings {
            heartbeat_ms,
            dead_after_min_ms: self.detector_dead_min_ms.unwrap_or(limits::DETECTOR_DEAD_MIN_MS_DEFAULT),
            dead_after_max_ms: self.detector_dead_max_ms.unwrap_or(limits::DETECTOR_DEAD_MAX_MS_DEFAULT),
        };
        detector.check().map_err(|message| invalid("cluster.detector_dead_min_ms", message))?;
        let sync_timeout_ms = self.sync_timeout_ms.unwrap_or(limits::SYNC_TIMEOUT_MS_DEFAULT);
        if sync_timeout_ms == 0 {
            return Err(invalid("cluster.sync_timeout_ms", "must be at least 1"));
        }
        let data_ids: Vec<u32> =
            members.iter().filter(|member| member.role == MemberRole::Data).map(|member| member.id).collect();
        let initial_active = self.initial_active.ok_or_else(|| {
            invalid("cluster.initial_active", "is required until the control plane elects the active")
        })?;
        if !data_ids.contains(&initial_active) {
            return Err(invalid("cluster.initial_active", format!("{initial_active} is not a data member")));
        }
        let (preempt, switchover_timeout_ms) = check_operations(&self.preempt, self.switchover_timeout_ms, &members)?;
        Ok(ClusterConfig {
            cluster_id,
            secret,
            node_id,
            members,
            ack_mode,
            sync_timeout_ms,
            max_lag_records: self.max_lag_records.unwrap_or(limits::MAX_LAG_RECORDS_DEFAULT),
            heartbeat_ms,
            detector,
            initial_active,
            replica_read: self.replica_read.unwrap_or(true),
            service_address: self.service_address.as_deref().map(service_address).transpose()?,
            on_role_change: self.on_role_change.filter(|command| !command.trim().is_empty()),
            preempt,
            preempt_delay_ms: self.preempt_delay_ms.unwrap_or(limits::PREEMPT_DELAY_MS_DEFAULT),
            switchover_timeout_ms,
            control_election_timeout_ms: control_election_timeout(self.control_election_timeout_ms)?,
            sentinel_master_name: sentinel_master_name(self.sentinel_master_name)?,
        })
    }
}

/// `control_election_timeout_ms`, within bounds a Raft group on real machines can keep.
fn control_election_timeout(value: Option<u64>) -> Result<u64, ConfigError> {
    let value = value.unwrap_or(limits::CONTROL_ELECTION_TIMEOUT_MS_DEFAULT);
    let range = limits::CONTROL_ELECTION_TIMEOUT_MS_MIN..=limits::CONTROL_ELECTION_TIMEOUT_MS_MAX;
    if !range.contains(&value) {
        let message = format!("must be between {} and {}", range.start(), range.end());
        return Err(invalid("cluster.control_election_timeout_ms", message));
    }
    Ok(value)
}

/// `sentinel_master_name`: one word clients can pass to `SENTINEL get-master-addr-by-name`.
fn sentinel_master_name(name: Option<String>) -> Result<String, ConfigError> {
    let Some(name) = name else {
        return Ok(crate::sentinel::MASTER_NAME_DEFAULT.to_string());
    };
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_graphic()) {
        return Err(invalid("cluster.sentinel_master_name", "must be 1 to 64 printable ASCII characters, no spaces"));
    }
    Ok(name)
}

/// A service address: `ip:port` on loopback (the Linux virtual IP form is not built yet).
fn service_address(text: &str) -> Result<std::net::SocketAddr, ConfigError> {
    let field = "cluster.service_address";
    let address: std::net::SocketAddr =
        text.parse().map_err(|_| invalid(field, format!("`{text}` is not an ip:port address")))?;
    if !address.ip().is_loopback() {
        return Err(invalid(field, format!("`{text}` is not a loopback address (127.0.0.0/8 or ::1)")));
    }
    if address.port() == 0 {
        return Err(invalid(field, "needs a port other than 0"));
    }
    Ok(address)
}

/// The secret from `secret` or `secret_file` (exactly one), at least `SECRET_BYTES_MIN` long.
fn cluster_secret(secret: Option<String>, secret_file: Option<PathBuf>) -> Result<Secret, ConfigError> {
    let bytes = match (secret, secret_file) {
        (Some(_), Some(_)) => return Err(invalid("cluster.secret", "give either secret or secret_file, not both")),
        (None, None) => {
            return Err(invalid("cluster.secret", "is required (or cluster.secret_file): peers authenticate with it"))
        }
        (Some(text), None) => text.into_bytes(),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|error| invalid("cluster.secret_file", format!("cannot read {}: {error}", path.display())))?;
            text.trim_end_matches(['\n', '\r']).as_bytes().to_vec()
        }
    };
    if bytes.len() < SECRET_BYTES_MIN {
        return Err(invalid("cluster.secret", format!("must be at least {SECRET_BYTES_MIN} bytes")));
    }
    Ok(Secret(bytes))
}

/// Unique ids and addresses, exactly two data nodes, at most one witness.
fn check_members(members: &[Member]) -> Result<(), ConfigError> {
    let mut ids = std::collections::HashSet::new();
    for member in members {
        if !ids.insert(member.id) {
            return Err(invalid("cluster.members", format!("two members have the id {}", member.id)));
        }
    }
    let data = members.iter().filter(|member| member.role == MemberRole::Data).count();
    if data != 2 {
        return Err(invalid("cluster.members", format!("needs exactly 2 data members, found {data}")));
    }
    if members.len() - data > 1 {
        return Err(invalid("cluster.members", "at most one witness"));
    }
    let mut peers = std::collections::HashSet::new();
    for member in members {
        if !peers.insert(member.peer) {
            return Err(invalid("cluster.members", format!("two members have the peer address {}", member.peer)));
        }
    }
    check_control_addresses(members)
}

/// Control addresses on every member (then a witness is needed for a majority of three) or on none.
fn check_control_addresses(members: &[Member]) -> Result<(), ConfigError> {
    let with_control = members.iter().filter(|member| member.control.is_some()).count();
    if with_control == 0 {
        return Ok(());
    }
    if with_control != members.len() {
        return Err(invalid("cluster.members", "give a control address to every member or to none"));
    }
    if !members.iter().any(|member| member.role == MemberRole::Witness) {
        return Err(invalid(
            "cluster.members",
            "the control plane needs a witness: two data nodes alone have no majority",
        ));
    }
    let mut addresses = std::collections::HashSet::new();
    for member in members {
        let control = member.control.expect("counted above");
        if !addresses.insert(control) || members.iter().any(|other| other.peer == control) {
            return Err(invalid(
                "cluster.members",
                format!("member {}: control address {control} is used twice", member.id),
            ));
        }
    }
    Ok(())
}

/// `preempt` (needs two data members of different priority) and `switchover_timeout_ms`.
fn check_operations(
    preempt: &Option<bool>,
    switchover_timeout_ms: Option<u64>,
    members: &[Member],
) -> Result<(bool, u64), ConfigError> {
    let preempt = preempt.unwrap_or(false);
    let priorities: Vec<u8> =
        members.iter().filter(|member| member.role == MemberRole::Data).map(|member| member.priority).collect();
    if preempt && priorities.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err(invalid(
            "cluster.preempt",
            "needs the data members to have different priorities (members[].priority), or no node is preferred",
        ));
    }
    let timeout_ms = switchover_timeout_ms.unwrap_or(limits::SWITCHOVER_TIMEOUT_MS_DEFAULT);
    if !(1..=limits::SWITCHOVER_TIMEOUT_MS_MAX).contains(&timeout_ms) {
        return Err(invalid(
            "cluster.switchover_timeout_ms",
            format!("must be between 1 and {}", limits::SWITCHOVER_TIMEOUT_MS_MAX),
        ));
    }
    Ok((preempt, timeout_ms))
}

impl MemberFile {
    fn validate(self, position: usize) -> Result<Member, ConfigError> {
        let field = "cluster.members";
        let id = self.id.ok_or_else(|| invalid(field, format!("member #{} has no id", position + 1)))?;
        let role = match self.role.as_deref() {
            None | Some("data") => MemberRole::Data,
            Some("witness") => MemberRole::Witness,
            Some(other) => {
                return Err(invalid(field, format!("member {id}: role `{other}` is not one of data, witness")))
            }
        };
        let address = |name: &str, text: Option<String>| -> Result<Option<std::net::SocketAddr>, ConfigError> {
            text.map(|text| {
                text.parse()
                    .map_err(|_| invalid(field, format!("member {id}: {name} `{text}` is not an ip:port address")))
            })
            .transpose()
        };
        let client = address("client", self.client)?;
        let peer =
            address("peer", self.peer)?.ok_or_else(|| invalid(field, format!("member {id} has no peer address")))?;
        let admin = address("admin", self.admin)?;
        let control = address("control", self.control)?;
        if role == MemberRole::Data && client.is_none() {
            return Err(invalid(field, format!("data member {id} has no client address")));
        }
        if role == MemberRole::Witness && self.priority.is_some() {
            return Err(invalid(field, format!("member {id}: a witness has no priority (it never becomes active)")));
        }
        let priority = self.priority.unwrap_or(limits::MEMBER_PRIORITY_DEFAULT);
        let sentinel = address("sentinel", self.sentinel)?;
        if let Some(sentinel) = sentinel {
            if role == MemberRole::Witness {
                return Err(invalid(
                    field,
                    format!("member {id}: a witness has no sentinel address (it holds no data)"),
                ));
            }
            if sentinel.port() == 0 {
                return Err(invalid(
                    field,
                    format!("member {id}: sentinel address {sentinel} needs a port other than 0"),
                ));
            }
            if [client, Some(peer), admin, control].contains(&Some(sentinel)) {
                return Err(invalid(
                    field,
                    format!("member {id}: sentinel address {sentinel} is used by another of its ports"),
                ));
            }
        }
        Ok(Member { id, role, client, peer, admin, control, priority, sentinel })
    }
}

/// Parses a size such as `100mb`, `1gb`, `4096` or a TOML integer, like Redis's memory units.
pub fn parse_size(text: &str) -> Option<u64> {
    let lower = text.trim().to_ascii_lowercase();
    let split = lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(split);
    let number: u64 = digits.parse().ok()?;
    let multiplier: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    number.checked_mul(multiplier)
}

fn size_field(field: &'static str, value: Option<toml::Value>, default: u64) -> Result<u64, ConfigError> {
    match value {
        None => Ok(default),
        Some(toml::Value::Integer(number)) if number >= 0 => Ok(number as u64),
        Some(toml::Value::String(text)) => {
            parse_size(&text).ok_or_else(|| invalid(field, format!("`{text}` is not a size (e.g. 4096, 100mb, 1gb)")))
        }
        Some(other) => Err(invalid(field, format!("`{other}` is not a size (e.g. 4096, 100mb, 1gb)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_redis() {
        assert_eq!(parse_size("100mb"), Some(100 * 1024 * 1024));
        assert_eq!(parse_size("1gb"), Some(1 << 30));
        assert_eq!(parse_size("1k"), Some(1000));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("12parsecs"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn defaults_are_valid() {
        let config = FileConfig::default().validate().unwrap();
        assert_eq!(config.port, 6379);
        assert_eq!(config.admin_port, Some(16379));
        assert_eq!(config.appendfsync, FsyncPolicy::Always);
    }

    #[test]
    fn errors_name_the_field() {
        let file: FileConfig = toml::from_str("appendfsync = \"sometimes\"").unwrap();
        let error = file.validate().unwrap_err().to_string();
        assert!(error.contains("`appendfsync`"), "{error}");
        let file: FileConfig = toml::from_str("maxmemory = \"lots\"").unwrap();
        assert!(file.validate().unwrap_err().to_string().contains("`maxmemory`"));
        let error = toml::from_str::<FileConfig>("prot = 1").unwrap_err().to_string();
        assert!(error.contains("prot"), "{error}");
    }
    const CLUSTER: &str = r#"
[cluster]
cluster_id = "test"
secret = "0123456789abcdef0123"
node_id = 1
initial_active = 1
members = [
  { id = 1, role = "data", client = "127.0.0.1:7001", peer = "127.0.0.1:17101" },
  { id = 2, role = "data", client = "127.0.0.1:7002", peer = "127.0.0.1:17102" },
  { id = 3, role = "witness", peer = "127.0.0.1:17103" },
]
"#;

    fn cluster_error(edit: impl Fn(&str) -> String) -> String {
        let file: FileConfig = toml::from_str(&edit(CLUSTER)).unwrap();
        file.validate().unwrap_err().to_string()
    }

    #[test]
    fn a_cluster_section_validates_with_defaults() {
        let file: FileConfig = toml::from_str(CLUSTER).unwrap();
        let config = file.validate().unwrap();
        let cluster = config.cluster.as_ref().unwrap();
        assert_eq!(cluster.ack_mode, AckMode::Sync);
        assert_eq!(cluster.heartbeat_ms, limits::HEARTBEAT_MS_DEFAULT);
        assert!(cluster.replica_read);
        assert_eq!(cluster.peer_data_member().id, 2);
        assert_eq!(config.node_id, 1);
        assert_eq!(config.port, 7001, "the member's client address is the default listen address");
        assert!(!format!("{cluster:?}").contains("0123456789abcdef"), "Debug must not print the secret");
    }

    #[test]
    fn cluster_errors_name_the_field() {
        let duplicate = cluster_error(|text| text.replace("id = 3", "id = 2"));
        assert!(duplicate.contains("`cluster.members`") && duplicate.contains("id 2"), "{duplicate}");
        let three =
            cluster_error(|text| text.replace("role = \"witness\"", "role = \"data\", client = \"127.0.0.1:7003\""));
        assert!(three.contains("`cluster.members`") && three.contains("exactly 2 data"), "{three}");
        let no_secret = cluster_error(|text| text.replace("secret = \"0123456789abcdef0123\"", ""));
        assert!(no_secret.contains("`cluster.secret`"), "{no_secret}");
        let short = cluster_error(|text| text.replace("0123456789abcdef0123", "short"));
        assert!(short.contains("`cluster.secret`"), "{short}");
        let mode = cluster_error(|text| text.replace("node_id = 1", "node_id = 1\nack_mode = \"maybe\""));
        assert!(mode.contains("`cluster.ack_mode`"), "{mode}");
        let witness = cluster_error(|text| text.replace("node_id = 1", "node_id = 3"));
        assert!(witness.contains("`cluster.node_id`"), "{witness}");
        let active = cluster_error(|text| text.replace("initial_active = 1", "initial_active = 3"));
        assert!(active.contains("`cluster.initial_active`"), "{active}");
        let missing = cluster_error(|text| text.replace("cluster_id = \"test\"", ""));
        assert!(missing.contains("`cluster.cluster_id`"), "{missing}");
        let address =
            cluster_error(|text| text.replace("node_id = 1", "node_id = 1\nservice_address = \"10.0.0.9:6379\""));
        assert!(address.contains("`cluster.service_address`") && address.contains("loopback"), "{address}");
        let election =
            cluster_error(|text| text.replace("node_id = 1", "node_id = 1\ncontrol_election_timeout_ms = 5"));
        assert!(election.contains("`cluster.control_election_timeout_ms`"), "{election}");
    }

    fn with_control(text: &str) -> String {
        text.replace("peer = \"127.0.0.1:17101\"", "peer = \"127.0.0.1:17101\", control = \"127.0.0.1:17201\"")
            .replace("peer = \"127.0.0.1:17102\"", "peer = \"127.0.0.1:17102\", control = \"127.0.0.1:17202\"")
            .replace("peer = \"127.0.0.1:17103\"", "peer = \"127.0.0.1:17103\", control = \"127.0.0.1:17203\"")
    }

    #[test]
    fn control_addresses_go_on_every_member_or_none() {
        let config = toml::from_str::<FileConfig>(&with_control(CLUSTER)).unwrap().validate().unwrap();
        assert!(config.cluster.unwrap().has_control_plane());
        let plain = toml::from_str::<FileConfig>(CLUSTER).unwrap().validate().unwrap();
        assert!(!plain.cluster.unwrap().has_control_plane());
        let partial = cluster_error(|text| with_control(text).replace(", control = \"127.0.0.1:17203\"", ""));
        assert!(partial.contains("`cluster.members`") && partial.contains("every member"), "{partial}");
        let twice = cluster_error(|text| with_control(text).replace("17202", "17201"));
        assert!(twice.contains("`cluster.members`") && twice.contains("used twice"), "{twice}");
        let bad = cluster_error(|text| with_control(text).replace("127.0.0.1:17202", "nowhere"));
        assert!(bad.contains("`cluster.members`") && bad.contains("control `nowhere`"), "{bad}");
    }

    #[test]
    fn the_witness_validates_its_own_member() {
        let witness_section = |text: &str| {
            let file: FileConfig = toml::from_str(text).unwrap();
            file.cluster.unwrap().validate_witness().map(|cluster| cluster.node_id).map_err(|error| error.to_string())
        };
        assert_eq!(witness_section(&with_control(CLUSTER).replace("node_id = 1", "node_id = 3")), Ok(3));
        let data = witness_section(&with_control(CLUSTER)).unwrap_err();
        assert!(data.contains("`cluster.node_id`") && data.contains("not the witness"), "{data}");
        let no_control = witness_section(&CLUSTER.replace("node_id = 1", "node_id = 3")).unwrap_err();
        assert!(no_control.contains("control address"), "{no_control}");
    }

    #[test]
    fn priority_preempt_and_admin_addresses_validate() {
        let plain = toml::from_str::<FileConfig>(CLUSTER).unwrap().validate().unwrap();
        let cluster = plain.cluster.unwrap();
        assert!(!cluster.preempt, "no automatic failback by default");
        assert_eq!(cluster.this_member().priority, limits::MEMBER_PRIORITY_DEFAULT);
        let same = cluster_error(|text| text.replace("node_id = 1", "node_id = 1\npreempt = true"));
        assert!(same.contains("`cluster.preempt`") && same.contains("different priorities"), "{same}");
        let preferred = CLUSTER
            .replace("node_id = 1", "node_id = 1\npreempt = true")
            .replace(
                "peer = \"127.0.0.1:17102\"",
                "peer = \"127.0.0.1:17102\", priority = 200, admin = \"127.0.0.1:17302\"",
            )
            .replace("node_id = 1\npreempt", "node_id = 2\npreempt");
        let config = toml::from_str::<FileConfig>(&preferred).unwrap().validate().unwrap();
        assert_eq!(config.admin_port, Some(17302), "a member's admin address is where its endpoint listens");
        assert!(config.cluster.as_ref().unwrap().preempt);
        let witness = cluster_error(|text| {
            text.replace("peer = \"127.0.0.1:17103\"", "peer = \"127.0.0.1:17103\", priority = 1")
        });
        assert!(witness.contains("witness has no priority"), "{witness}");
        let timeout = cluster_error(|text| text.replace("node_id = 1", "node_id = 1\nswitchover_timeout_ms = 0"));
        assert!(timeout.contains("`cluster.switchover_timeout_ms`"), "{timeout}");
    }

    #[test]
    fn the_secret_may_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "fedcba9876543210fedcba\n").unwrap();
        let text = CLUSTER
            .replace("secret = \"0123456789abcdef0123\"", &format!("secret_file = {:?}", path.display().to_string()));
        let config = toml::from_str::<FileConfig>(&text).unwrap().validate().unwrap();
        assert_eq!(config.cluster.unwrap().secret.0, b"fedcba9876543210fedcba");
        let missing = text.replace("secret\"", "absent\"");
        let error = toml::from_str::<FileConfig>(&missing).unwrap().validate().unwrap_err().to_string();
        assert!(error.contains("`cluster.secret_file`"), "{error}");
    }

    #[test]
    fn sentinel_addresses_and_master_name_validate() {
        let plain = toml::from_str::<FileConfig>(CLUSTER).unwrap().validate().unwrap().cluster.unwrap();
        assert_eq!(plain.sentinel_master_name, "tandem");
        assert_eq!(plain.this_member().sentinel, None);
        let with = CLUSTER
            .replace("peer = \"127.0.0.1:17101\"", "peer = \"127.0.0.1:17101\", sentinel = \"127.0.0.1:26379\"")
            .replace("node_id = 1", "node_id = 1\nsentinel_master_name = \"mymaster\"");
        let cluster = toml::from_str::<FileConfig>(&with).unwrap().validate().unwrap().cluster.unwrap();
        assert_eq!(cluster.this_member().sentinel, Some("127.0.0.1:26379".parse().unwrap()));
        assert_eq!(cluster.sentinel_master_name, "mymaster");
        let witness = cluster_error(|text| {
            text.replace("peer = \"127.0.0.1:17103\"", "peer = \"127.0.0.1:17103\", sentinel = \"127.0.0.1:26381\"")
        });
        assert!(witness.contains("`cluster.members`") && witness.contains("no sentinel address"), "{witness}");
        let reused = cluster_error(|text| {
            text.replace("peer = \"127.0.0.1:17101\"", "peer = \"127.0.0.1:17101\", sentinel = \"127.0.0.1:7001\"")
        });
        assert!(reused.contains("used by another of its ports"), "{reused}");
        let garbled = cluster_error(|text| {
            text.replace("peer = \"127.0.0.1:17101\"", "peer = \"127.0.0.1:17101\", sentinel = \"nowhere\"")
        });
        assert!(garbled.contains("sentinel `nowhere` is not an ip:port address"), "{garbled}");
        let name =
            cluster_error(|text| text.replace("node_id = 1", "node_id = 1\nsentinel_master_name = \"my master\""));
        assert!(name.contains("`cluster.sentinel_master_name`"), "{name}");
    }
}

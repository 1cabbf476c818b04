//! Configuration: a TOML file plus command-line overrides, validated into a
//! [`Config`]. Every error names the field it is about.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tandem_log::FsyncPolicy;

use crate::limits;

mod archive;
mod cluster;
mod vip;
pub use archive::*;
pub use cluster::*;
pub use vip::*;

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
    /// Write log segments into zero-filled files prepared ahead (`tandem_log::LogOptions`).
    pub log_preallocate: bool,
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
    /// Shipping to stable storage (`[archive]`); `None` ships nothing.
    pub archive: Option<ArchiveConfig>,
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
    pub log_preallocate: Option<bool>,
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
    pub archive: Option<archive::ArchiveFile>,
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
            log_preallocate: self.log_preallocate.unwrap_or(true),
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
            archive: self.archive.map(ArchiveFile::validate).transpose()?,
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
        let cold = self.cluster.as_ref().is_some_and(|cluster| cluster.standby == StandbyKind::Cold);
        if cold && self.archive.is_none() {
            return Err(invalid(
                "cluster.standby",
                "`cold` needs an [archive] section: a cold standby takes over by restoring the active's archive",
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
            preallocate: self.log_preallocate,
        }
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
    fn log_preallocation_is_on_by_default_and_can_be_turned_off() {
        assert!(FileConfig::default().validate().unwrap().log_options().preallocate);
        let file: FileConfig = toml::from_str("log_preallocate = false").unwrap();
        assert!(!file.validate().unwrap().log_options().preallocate);
        let error = toml::from_str::<FileConfig>("log_preallocate = \"no\"").unwrap_err().to_string();
        assert!(error.contains("log_preallocate"), "{error}");
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
    fn a_cold_standby_needs_async_acks_and_an_archive() {
        let cold = |text: &str| text.replace("initial_active = 1", "initial_active = 1\nstandby = \"cold\"");
        let sync = cluster_error(cold);
        assert!(sync.contains("`cluster.ack_mode`") && sync.contains("cold standby"), "{sync}");
        let no_archive =
            cluster_error(|text| cold(text).replace("initial_active", "ack_mode = \"async\"\ninitial_active"));
        assert!(no_archive.contains("`cluster.standby`") && no_archive.contains("[archive]"), "{no_archive}");
        let text = format!(
            "[archive]\ndir = \"/mnt/archive\"\n{}",
            cold(CLUSTER).replace("initial_active", "ack_mode = \"async\"\ninitial_active")
        );
        let config = toml::from_str::<FileConfig>(&text).unwrap().validate().unwrap();
        assert_eq!(config.cluster.unwrap().standby, StandbyKind::Cold);
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
        let with_witness =
            with.replace("peer = \"127.0.0.1:17103\"", "peer = \"127.0.0.1:17103\", sentinel = \"127.0.0.1:26381\"");
        let cluster = toml::from_str::<FileConfig>(&with_witness).unwrap().validate().unwrap().cluster.unwrap();
        let witness = cluster.members.iter().find(|member| member.role == MemberRole::Witness).unwrap();
        assert_eq!(witness.sentinel, Some("127.0.0.1:26381".parse().unwrap()), "the witness serves one too");
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

//! The `[cluster]` section: members, roles, ack mode, timings and the service
//! address, validated into a [`ClusterConfig`]. Errors name the field as
//! `cluster.<field>`.

use std::path::PathBuf;

use serde::Deserialize;

use super::{invalid, ConfigError};
use crate::limits;

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
    pub virtual_ip: Option<super::VirtualIpFile>,
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
    /// Whether the standby applies the replication stream (`hot`) or restores from the
    /// active's archive when it takes over (`cold`).
    pub standby: StandbyKind,
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
    /// The Linux virtual IP form of the service address (`[cluster.virtual_ip]`); exclusive
    /// with `service_address`.
    pub virtual_ip: Option<super::VirtualIpConfig>,
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
    /// Where its Sentinel-compatible discovery endpoint listens, if any (data members and
    /// the witness).
    pub sentinel: Option<std::net::SocketAddr>,
}

/// How the standby keeps up with the active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandbyKind {
    /// Receives and applies the replication stream; takes over at once.
    Hot,
    /// Receives heartbeats only; on takeover it rebuilds its data from the active's archive
    /// (`[archive]`), losing what was not yet shipped.
    Cold,
}

impl StandbyKind {
    /// The configuration spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            StandbyKind::Hot => "hot",
            StandbyKind::Cold => "cold",
        }
    }
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
        let standby = match self.standby.as_deref() {
            None | Some("hot") => StandbyKind::Hot,
            Some("cold") => StandbyKind::Cold,
            Some(other) => return Err(invalid("cluster.standby", format!("`{other}` is not one of hot, cold"))),
        };
        let ack_mode = match self.ack_mode.as_deref() {
            None | Some("sync") => AckMode::Sync,
            Some("semi-sync") => AckMode::SemiSync,
            Some("async") => AckMode::Async,
            Some(other) => {
                return Err(invalid("cluster.ack_mode", format!("`{other}` is not one of sync, semi-sync, async")))
            }
        };
        if standby == StandbyKind::Cold && ack_mode != AckMode::Async {
            return Err(invalid(
                "cluster.ack_mode",
                format!(
                    "`{}` waits for the standby, but a cold standby receives no stream; use async with \
                     standby = \"cold\"",
                    ack_mode.as_str()
                ),
            ));
        }
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
        let virtual_ip = super::vip::virtual_ip(self.virtual_ip, self.service_address.is_some(), &members)?;
        Ok(ClusterConfig {
            cluster_id,
            secret,
            node_id,
            members,
            standby,
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
            virtual_ip,
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

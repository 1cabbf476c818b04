//! The operator's commands, run from any machine that can reach the members' admin
//! addresses: `tandem status` ([`status`]), `tandem switchover` and `tandem promote`
//! ([`operations`]). They read the cluster's member list from a configuration file with
//! a `[cluster]` section and talk HTTP to each member (`admin::client`).

pub mod operations;
pub mod status;

use std::path::Path;

use crate::config::{ClusterConfig, ConfigError, FileConfig, MemberRole};

/// The `[cluster]` section of `path`, validated. Any member's file will do: `node_id` may
/// name a data node or the witness, or be absent (the operator's own file).
pub fn load_cluster(path: &Path) -> Result<ClusterConfig, ConfigError> {
    let file = FileConfig::load(path)?;
    let mut cluster = file.cluster.ok_or(ConfigError::Invalid {
        field: "cluster",
        message: format!("{} has no [cluster] section naming the members", path.display()),
    })?;
    let members = cluster.members.as_deref().unwrap_or_default();
    let role_of = |id: u32| {
        members.iter().find(|member| member.id == Some(id)).map(|member| member.role.as_deref() == Some("witness"))
    };
    if cluster.node_id.is_none() {
        cluster.node_id = members.iter().find(|member| member.role.as_deref() != Some("witness")).and_then(|m| m.id);
    }
    match cluster.node_id.and_then(role_of) {
        Some(true) => cluster.validate_witness(),
        _ => cluster.validate(),
    }
}

/// Every member, data nodes first, by id.
pub fn members_in_order(cluster: &ClusterConfig) -> Vec<&crate::config::Member> {
    let mut members: Vec<_> = cluster.members.iter().collect();
    members.sort_by_key(|member| (member.role == MemberRole::Witness, member.id));
    members
}

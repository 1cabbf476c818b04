//! The `[cluster.virtual_ip]` sub-table: the Linux virtual IP form of the
//! service address (`failover::vip`), validated into a [`VirtualIpConfig`].
//! Errors name the field as `cluster.virtual_ip.<field>`.

use std::net::{Ipv4Addr, SocketAddr};

use serde::Deserialize;

use super::{invalid, ClusterConfig, ConfigError, Member, MemberRole};

/// Gratuitous ARPs in one announcement by default (keepalived's `garp_master_repeat`).
pub const GARP_COUNT_DEFAULT: u32 = 5;
/// Most gratuitous ARPs in one announcement.
pub const GARP_COUNT_MAX: u32 = 100;
/// Spacing of the gratuitous ARPs inside one announcement, by default.
pub const GARP_INTERVAL_MS_DEFAULT: u64 = 200;
/// Widest spacing inside one announcement.
pub const GARP_INTERVAL_MS_MAX: u64 = 10_000;
/// Shortest period of the re-announcement while the address is held (when on).
pub const GARP_REFRESH_MS_MIN: u64 = 100;
/// Longest period of the re-announcement while the address is held.
pub const GARP_REFRESH_MS_MAX: u64 = 86_400_000;
/// Longest Linux interface name (`IFNAMSIZ` less the terminating zero).
pub const INTERFACE_NAME_BYTES_MAX: usize = 15;

/// The `[cluster.virtual_ip]` sub-table's shape: every field optional, unknown fields refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualIpFile {
    pub address: Option<String>,
    pub interface: Option<String>,
    pub port: Option<u16>,
    pub garp_count: Option<u32>,
    pub garp_interval_ms: Option<u64>,
    pub garp_refresh_ms: Option<u64>,
}

/// A validated `[cluster.virtual_ip]`: the IPv4 address the active adds to an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualIpConfig {
    /// The virtual address clients use.
    pub address: Ipv4Addr,
    /// Its prefix length on the interface (the `/24` of `10.0.0.100/24`).
    pub prefix_len: u8,
    /// The interface it is added to (`eth0`).
    pub interface: String,
    /// The client port listening on it; the same on both data nodes.
    pub port: u16,
    /// Gratuitous ARPs sent in one announcement.
    pub garp_count: u32,
    /// Spacing of the gratuitous ARPs inside one announcement.
    pub garp_interval_ms: u64,
    /// Period of the re-announcement while the address is held; 0 = none.
    pub garp_refresh_ms: u64,
}

impl VirtualIpConfig {
    /// Where clients connect: the virtual address and the port.
    pub fn socket_address(&self) -> SocketAddr {
        SocketAddr::from((self.address, self.port))
    }
}

impl ClusterConfig {
    /// The service address in either form — loopback `service_address` or the virtual
    /// IP's `address:port` — for INFO and `on_role_change`.
    pub fn service_endpoint(&self) -> Option<SocketAddr> {
        self.service_address.or_else(|| self.virtual_ip.as_ref().map(VirtualIpConfig::socket_address))
    }
}

/// Validates the optional sub-table; `service_address_given` refuses both forms at once,
/// and `members` give the default port (the data members' common client port).
pub fn virtual_ip(
    file: Option<VirtualIpFile>,
    service_address_given: bool,
    members: &[Member],
) -> Result<Option<VirtualIpConfig>, ConfigError> {
    let Some(file) = file else {
        return Ok(None);
    };
    if service_address_given {
        return Err(invalid(
            "cluster.virtual_ip",
            "cannot be combined with cluster.service_address: configure the loopback service address or the \
             virtual IP, not both",
        ));
    }
    file.validate(members).map(Some)
}

impl VirtualIpFile {
    fn validate(self, members: &[Member]) -> Result<VirtualIpConfig, ConfigError> {
        let text = self.address.ok_or_else(|| {
            invalid("cluster.virtual_ip.address", "is required: the IPv4 address with its prefix, e.g. 10.0.0.100/24")
        })?;
        let (address, prefix_len) =
            parse_address(&text).map_err(|message| invalid("cluster.virtual_ip.address", message))?;
        let interface = self.interface.ok_or_else(|| {
            invalid("cluster.virtual_ip.interface", "is required: the interface to add the address to")
        })?;
        check_interface_name(&interface).map_err(|message| invalid("cluster.virtual_ip.interface", message))?;
        let port = match self.port {
            Some(0) => return Err(invalid("cluster.virtual_ip.port", "needs a port other than 0")),
            Some(port) => port,
            None => common_client_port(members).map_err(|message| invalid("cluster.virtual_ip.port", message))?,
        };
        let garp_count = self.garp_count.unwrap_or(GARP_COUNT_DEFAULT);
        if !(1..=GARP_COUNT_MAX).contains(&garp_count) {
            return Err(invalid("cluster.virtual_ip.garp_count", format!("must be between 1 and {GARP_COUNT_MAX}")));
        }
        let garp_interval_ms = self.garp_interval_ms.unwrap_or(GARP_INTERVAL_MS_DEFAULT);
        if !(1..=GARP_INTERVAL_MS_MAX).contains(&garp_interval_ms) {
            let message = format!("must be between 1 and {GARP_INTERVAL_MS_MAX}");
            return Err(invalid("cluster.virtual_ip.garp_interval_ms", message));
        }
        let garp_refresh_ms = self.garp_refresh_ms.unwrap_or(0);
        if garp_refresh_ms != 0 && !(GARP_REFRESH_MS_MIN..=GARP_REFRESH_MS_MAX).contains(&garp_refresh_ms) {
            let message = format!("must be 0 (off) or between {GARP_REFRESH_MS_MIN} and {GARP_REFRESH_MS_MAX}");
            return Err(invalid("cluster.virtual_ip.garp_refresh_ms", message));
        }
        Ok(VirtualIpConfig { address, prefix_len, interface, port, garp_count, garp_interval_ms, garp_refresh_ms })
    }
}

/// `a.b.c.d/len`: a unicast IPv4 address a host can hold, with its prefix length.
fn parse_address(text: &str) -> Result<(Ipv4Addr, u8), String> {
    let (ip, prefix) = text
        .split_once('/')
        .ok_or_else(|| format!("`{text}` needs a prefix length, e.g. {text}/24 (IPv4 CIDR notation)"))?;
    let address: Ipv4Addr = ip.parse().map_err(|_| format!("`{ip}` is not an IPv4 address"))?;
    let prefix_len: u8 = prefix
        .parse()
        .ok()
        .filter(|length| (1..=32).contains(length))
        .ok_or_else(|| format!("`{prefix}` is not a prefix length between 1 and 32"))?;
    if address.is_loopback() || address.is_unspecified() || address.is_multicast() || address.is_broadcast() {
        return Err(format!(
            "`{address}` cannot be a virtual IP (loopback, unspecified, multicast or broadcast); for a loopback \
             address use cluster.service_address"
        ));
    }
    Ok((address, prefix_len))
}

/// A Linux interface name: 1 to 15 bytes, no `/`, whitespace or control characters.
fn check_interface_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_graphic() && c != '/' && c != ':';
    if name.is_empty() || name.len() > INTERFACE_NAME_BYTES_MAX || !name.chars().all(allowed) {
        return Err(format!(
            "`{name}` is not an interface name (1 to {INTERFACE_NAME_BYTES_MAX} printable characters, no `/` or `:`)"
        ));
    }
    Ok(())
}

/// The client port both data members share: the virtual IP's port must be the same
/// whichever node holds it.
fn common_client_port(members: &[Member]) -> Result<u16, String> {
    let mut ports = members
        .iter()
        .filter(|member| member.role == MemberRole::Data)
        .filter_map(|member| member.client.map(|client| client.port()));
    let first = ports.next().ok_or("is required: no data member has a client address to take the port from")?;
    if ports.any(|port| port != first) {
        return Err("is required when the data members' client ports differ: clients need one port whichever \
                    node holds the address"
            .to_string());
    }
    if first == 0 {
        return Err("is required: the data members' client port is 0".to_string());
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u32, role: MemberRole, client_port: Option<u16>) -> Member {
        Member {
            id,
            role,
            client: client_port.map(|port| SocketAddr::from(([10, 0, 0, id as u8], port))),
            peer: SocketAddr::from(([10, 0, 0, id as u8], 17100)),
            admin: None,
            control: None,
            priority: 100,
            sentinel: None,
        }
    }

    fn members(ports: [u16; 2]) -> Vec<Member> {
        vec![
            member(1, MemberRole::Data, Some(ports[0])),
            member(2, MemberRole::Data, Some(ports[1])),
            member(3, MemberRole::Witness, None),
        ]
    }

    fn file(address: &str, interface: &str) -> VirtualIpFile {
        VirtualIpFile { address: Some(address.into()), interface: Some(interface.into()), ..Default::default() }
    }

    fn field_of(result: Result<Option<VirtualIpConfig>, ConfigError>) -> &'static str {
        match result {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_follow_keepalived_and_the_members_client_port() {
        let config = virtual_ip(Some(file("10.231.0.100/16", "eth0")), false, &members([6379, 6379])).unwrap().unwrap();
        assert_eq!(config.address, Ipv4Addr::new(10, 231, 0, 100));
        assert_eq!(config.prefix_len, 16);
        assert_eq!(config.interface, "eth0");
        assert_eq!(config.port, 6379);
        assert_eq!((config.garp_count, config.garp_interval_ms, config.garp_refresh_ms), (5, 200, 0));
        assert_eq!(config.socket_address(), "10.231.0.100:6379".parse().unwrap());
    }

    #[test]
    fn explicit_fields_are_kept() {
        let given = VirtualIpFile {
            port: Some(7000),
            garp_count: Some(3),
            garp_interval_ms: Some(50),
            garp_refresh_ms: Some(60_000),
            ..file("192.168.1.10/24", "bond0.100")
        };
        let config = virtual_ip(Some(given), false, &members([6379, 6380])).unwrap().unwrap();
        assert_eq!(
            (config.port, config.garp_count, config.garp_interval_ms, config.garp_refresh_ms),
            (7000, 3, 50, 60_000)
        );
    }

    #[test]
    fn absent_sub_table_is_none() {
        assert_eq!(virtual_ip(None, true, &members([1, 2])).unwrap(), None);
    }

    #[test]
    fn exclusive_with_the_loopback_service_address() {
        let result = virtual_ip(Some(file("10.0.0.100/24", "eth0")), true, &members([6379, 6379]));
        assert_eq!(field_of(result), "cluster.virtual_ip");
    }

    #[test]
    fn address_must_be_ipv4_cidr_a_host_can_hold() {
        for bad in [
            "10.0.0.100",
            "10.0.0.100/0",
            "10.0.0.100/33",
            "10.0.0.100/x",
            "fe80::1/64",
            "127.0.0.5/8",
            "0.0.0.0/8",
            "224.0.0.1/4",
            "255.255.255.255/32",
            "host/24",
        ] {
            let result = virtual_ip(Some(file(bad, "eth0")), false, &members([6379, 6379]));
            assert_eq!(field_of(result), "cluster.virtual_ip.address", "{bad}");
        }
        let missing = VirtualIpFile { address: None, ..file("x", "eth0") };
        assert_eq!(field_of(virtual_ip(Some(missing), false, &members([1, 1]))), "cluster.virtual_ip.address");
    }

    #[test]
    fn interface_is_required_and_a_linux_name() {
        for bad in ["", "a-name-longer-than-15", "eth 0", "eth0/1", "eth0:1"] {
            let result = virtual_ip(Some(file("10.0.0.100/24", bad)), false, &members([6379, 6379]));
            assert_eq!(field_of(result), "cluster.virtual_ip.interface", "{bad:?}");
        }
        let missing = VirtualIpFile { interface: None, ..file("10.0.0.100/24", "x") };
        assert_eq!(field_of(virtual_ip(Some(missing), false, &members([1, 1]))), "cluster.virtual_ip.interface");
    }

    #[test]
    fn port_defaults_only_when_the_data_members_agree() {
        let result = virtual_ip(Some(file("10.0.0.100/24", "eth0")), false, &members([6379, 6380]));
        assert_eq!(field_of(result), "cluster.virtual_ip.port");
        let zero = VirtualIpFile { port: Some(0), ..file("10.0.0.100/24", "eth0") };
        assert_eq!(field_of(virtual_ip(Some(zero), false, &members([1, 1]))), "cluster.virtual_ip.port");
    }

    #[test]
    fn garp_settings_are_bounded() {
        let cases = [
            (VirtualIpFile { garp_count: Some(0), ..file("10.0.0.100/24", "eth0") }, "cluster.virtual_ip.garp_count"),
            (VirtualIpFile { garp_count: Some(101), ..file("10.0.0.100/24", "eth0") }, "cluster.virtual_ip.garp_count"),
            (
                VirtualIpFile { garp_interval_ms: Some(0), ..file("10.0.0.100/24", "eth0") },
                "cluster.virtual_ip.garp_interval_ms",
            ),
            (
                VirtualIpFile { garp_refresh_ms: Some(10), ..file("10.0.0.100/24", "eth0") },
                "cluster.virtual_ip.garp_refresh_ms",
            ),
        ];
        for (given, field) in cases {
            assert_eq!(field_of(virtual_ip(Some(given), false, &members([1, 1]))), field);
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let parsed: Result<VirtualIpFile, _> = toml::from_str("address = \"10.0.0.1/24\"\ninterfce = \"eth0\"\n");
        assert!(parsed.unwrap_err().to_string().contains("interfce"));
    }
}

//! Whether this process may hold a virtual IP: it needs `CAP_NET_ADMIN` (add and
//! delete addresses) and `CAP_NET_RAW` (send gratuitous ARPs) in its effective
//! set. Read from `/proc/self/status` (`CapEff`), parsed by a pure function.

/// A Linux capability the virtual IP needs: its name and bit number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capability {
    /// The name systemd and `capsh` use.
    pub name: &'static str,
    /// Its bit in the capability sets (`linux/capability.h`).
    pub bit: u32,
}

/// `CAP_NET_ADMIN`: add and delete interface addresses through netlink.
pub const NET_ADMIN: Capability = Capability { name: "CAP_NET_ADMIN", bit: 12 };
/// `CAP_NET_RAW`: open the packet socket that sends gratuitous ARPs.
pub const NET_RAW: Capability = Capability { name: "CAP_NET_RAW", bit: 13 };
/// Everything holding a virtual IP needs.
pub const NEEDED: [Capability; 2] = [NET_ADMIN, NET_RAW];

/// The effective capability set from the text of `/proc/<pid>/status` (`CapEff:` in hex).
pub fn effective_set(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|line| line.strip_prefix("CapEff:"))?;
    u64::from_str_radix(line.trim(), 16).ok()
}

/// The needed capabilities missing from an effective set.
pub fn missing(effective: u64) -> Vec<Capability> {
    NEEDED.into_iter().filter(|capability| effective & (1u64 << capability.bit) == 0).collect()
}

/// Checks this process's effective set; the error says what is missing and how to grant it.
pub fn check() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|error| format!("cluster.virtual_ip: cannot read /proc/self/status for the capabilities: {error}"))?;
    let effective = effective_set(&status)
        .ok_or("cluster.virtual_ip: /proc/self/status has no readable CapEff line (not Linux?)".to_string())?;
    let missing = missing(effective);
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|capability| capability.name).collect();
    Err(format!(
        "cluster.virtual_ip needs CAP_NET_ADMIN and CAP_NET_RAW (missing: {}); run as root or add to the systemd \
         unit: AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW",
        names.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT_STATUS: &str = "Name:\ttandem\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n\
                               CapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\n";

    #[test]
    fn reads_the_effective_set_not_the_others() {
        let status = "CapPrm:\t0000000000003000\nCapEff:\t0000000000001000\n";
        assert_eq!(effective_set(status), Some(0x1000));
        assert_eq!(effective_set(ROOT_STATUS), Some(0x1ff_ffff_ffff));
    }

    #[test]
    fn a_status_without_capeff_is_unreadable() {
        assert_eq!(effective_set("Name:\ttandem\n"), None);
        assert_eq!(effective_set("CapEff:\tnot-hex\n"), None);
    }

    #[test]
    fn names_exactly_what_is_missing() {
        assert!(missing(0x1ff_ffff_ffff).is_empty());
        assert!(missing((1 << 12) | (1 << 13)).is_empty());
        assert_eq!(missing(1 << 12), vec![NET_RAW]);
        assert_eq!(missing(1 << 13), vec![NET_ADMIN]);
        assert_eq!(missing(0), vec![NET_ADMIN, NET_RAW]);
    }
}

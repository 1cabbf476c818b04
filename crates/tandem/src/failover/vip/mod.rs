//! The Linux virtual IP form of the service address (`[cluster.virtual_ip]`):
//! the active adds the address to an interface, listens on it, and sends
//! gratuitous ARPs so the hosts on the link send to it; on demotion, a lapsed
//! lease or shutdown it stops listening and deletes the address. The hold
//! loop and its decision are `failover::address`'s; this is the [`AddressTakeover`]
//! that carries them out on the host.
//!
//! * [`capabilities`] — `CAP_NET_ADMIN` and `CAP_NET_RAW` from `CapEff` (pure parser).
//! * [`netlink`] — the interface's index and MAC; add and delete the address.
//! * [`garp`] — the gratuitous ARP frame (pure) and the packet socket sending it.
//!
//! Invariants: the address is on this node's interface only while the hold
//! loop holds it, or until [`prepare`] removed a leftover at start (a process
//! killed while holding cannot remove it); a burst of gratuitous ARPs never
//! outlives the holding that started it (`surrender` stops it).

pub mod capabilities;
pub mod garp;
pub mod netlink;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinHandle;

use crate::config::VirtualIpConfig;
use crate::failover::address::AddressTakeover;
use netlink::Interface;

/// The virtual IP on one interface, ready to be held.
pub struct VirtualIp {
    config: VirtualIpConfig,
    interface: Interface,
    /// The announcement in progress, if any.
    announcing: Option<JoinHandle<u32>>,
}

/// The start-up check, before the node serves: the capabilities, the interface, and no
/// leftover of the address on it (from a predecessor killed while holding it: a standby
/// that kept it would answer ARP for the active's address). Errors name the field.
pub async fn prepare(config: VirtualIpConfig) -> anyhow::Result<VirtualIp> {
    capabilities::check().map_err(anyhow::Error::msg)?;
    let interface = match netlink::interface(&config.interface).await {
        Ok(interface) => interface,
        Err(error) if error.kind() == io::ErrorKind::NotFound => anyhow::bail!(
            "cluster.virtual_ip.interface: there is no interface `{}` on this host (`ip link show` lists them)",
            config.interface
        ),
        Err(error) => {
            return Err(error).with_context(|| format!("cluster.virtual_ip.interface: reading `{}`", config.interface))
        }
    };
    let removed = netlink::delete(interface, config.address).await.with_context(|| {
        format!("cluster.virtual_ip: removing a leftover {} from {}", config.address, config.interface)
    })?;
    if removed {
        tracing::warn!(address = %config.address, interface = %config.interface, "removed the virtual IP left on the interface by an earlier run");
    }
    tracing::info!(address = %config.socket_address(), interface = %config.interface, "virtual IP ready");
    Ok(VirtualIp { config, interface, announcing: None })
}

impl VirtualIp {
    fn stop_announcing(&mut self) {
        if let Some(task) = self.announcing.take() {
            task.abort();
        }
    }
}

impl AddressTakeover for VirtualIp {
    fn address(&self) -> SocketAddr {
        self.config.socket_address()
    }

    async fn claim(&mut self) -> io::Result<()> {
        let config = &self.config;
        if netlink::add(self.interface, config.address, config.prefix_len).await? {
            tracing::info!(address = %config.address, prefix_len = config.prefix_len, interface = %config.interface, "virtual IP added");
        }
        Ok(())
    }

    fn announce(&mut self) {
        self.stop_announcing();
        let burst = garp::Burst {
            count: self.config.garp_count,
            interval: Duration::from_millis(self.config.garp_interval_ms),
        };
        let (index, mac, address) = (self.interface.index, self.interface.mac, self.config.address);
        self.announcing = Some(tokio::spawn(garp::announce(index, mac, address, burst)));
    }

    async fn surrender(&mut self) -> io::Result<()> {
        self.stop_announcing();
        if netlink::delete(self.interface, self.config.address).await? {
            tracing::warn!(address = %self.config.address, interface = %self.config.interface, "virtual IP deleted");
        }
        Ok(())
    }

    fn refresh_interval(&self) -> Option<Duration> {
        (self.config.garp_refresh_ms > 0).then(|| Duration::from_millis(self.config.garp_refresh_ms))
    }

    fn served_by_wildcard_listener(&self) -> bool {
        true
    }
}

//! The interface and its addresses, through rtnetlink (what `ip link show`,
//! `ip addr add` and `ip addr del` do). Adding an address that is already
//! there and deleting one that is not are successes: both operations are
//! idempotent, so a retry or a predecessor's leftover changes nothing.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::LinkAttribute;
use tokio::task::JoinHandle;

use super::garp::Mac;

/// The interface the virtual IP is added to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interface {
    /// Its index (`ip link` numbers).
    pub index: u32,
    /// Its Ethernet address: the gratuitous ARPs announce it.
    pub mac: Mac,
}

/// One rtnetlink connection, its task stopped when dropped.
struct Netlink {
    handle: rtnetlink::Handle,
    connection: JoinHandle<()>,
}

impl Netlink {
    fn open() -> io::Result<Netlink> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        Ok(Netlink { handle, connection: tokio::spawn(connection) })
    }
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// The kernel's errno behind a netlink error, as an `io::Error`.
fn io_error(error: rtnetlink::Error) -> io::Error {
    match error {
        rtnetlink::Error::NetlinkError(message) => message.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

/// Looks the interface up by name; `NotFound` when there is none.
pub async fn interface(name: &str) -> io::Result<Interface> {
    let netlink = Netlink::open()?;
    let mut links = netlink.handle.link().get().match_name(name.to_string()).execute();
    let link = match links.try_next().await {
        Ok(Some(link)) => link,
        Ok(None) => return Err(io::Error::new(io::ErrorKind::NotFound, format!("no interface `{name}`"))),
        Err(error) => {
            let error = io_error(error);
            if error.raw_os_error() == Some(libc::ENODEV) {
                return Err(io::Error::new(io::ErrorKind::NotFound, format!("no interface `{name}`")));
            }
            return Err(error);
        }
    };
    let mac = link.attributes.iter().find_map(|attribute| match attribute {
        LinkAttribute::Address(bytes) => <Mac>::try_from(bytes.as_slice()).ok(),
        _ => None,
    });
    let mac = mac.ok_or_else(|| io::Error::other(format!("interface `{name}` has no Ethernet (MAC) address")))?;
    Ok(Interface { index: link.header.index, mac })
}

/// Adds `address/prefix_len` to the interface; `Ok(false)` if it was already there.
pub async fn add(interface: Interface, address: Ipv4Addr, prefix_len: u8) -> io::Result<bool> {
    let netlink = Netlink::open()?;
    let added = netlink.handle.address().add(interface.index, IpAddr::V4(address), prefix_len).execute().await;
    match added.map_err(io_error) {
        Ok(()) => Ok(true),
        Err(error) if error.raw_os_error() == Some(libc::EEXIST) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Deletes `address` (whatever its prefix) from the interface; `Ok(false)` if it was not there.
pub async fn delete(interface: Interface, address: Ipv4Addr) -> io::Result<bool> {
    let netlink = Netlink::open()?;
    let found: Vec<_> = netlink
        .handle
        .address()
        .get()
        .set_link_index_filter(interface.index)
        .set_address_filter(IpAddr::V4(address))
        .execute()
        .try_collect()
        .await
        .map_err(io_error)?;
    let mut deleted = false;
    for message in found {
        match netlink.handle.address().del(message).execute().await.map_err(io_error) {
            Ok(()) => deleted = true,
            Err(error) if error.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(deleted)
}

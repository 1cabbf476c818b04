//! Gratuitous ARP: tells the hosts on the link that the virtual IP is now at
//! this interface's MAC address, so they stop sending to the old holder.
//!
//! The frame is the ARP *request* form (RFC 5227's announcement; what
//! keepalived sends): sender IP = target IP = the virtual IP, target MAC all
//! zeros, Ethernet destination broadcast. Linux updates an existing
//! neighbour entry from it (and creates one where `arp_accept` is on).
//! [`frame`] builds it (pure); [`Sender`] writes it to an `AF_PACKET` socket.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// An Ethernet (MAC) address.
pub type Mac = [u8; 6];

/// EtherType of ARP.
const ETHERTYPE_ARP: u16 = 0x0806;
/// ARP hardware type Ethernet.
const HARDWARE_ETHERNET: u16 = 1;
/// ARP protocol type IPv4.
const PROTOCOL_IPV4: u16 = 0x0800;
/// ARP opcode "request".
const OPERATION_REQUEST: u16 = 1;
/// The Ethernet broadcast address.
const BROADCAST: Mac = [0xff; 6];
/// Bytes of a frame: Ethernet's 60-byte minimum (14 header + 28 ARP + 18 padding,
/// without the checksum the interface adds), so no driver has to pad it.
pub const FRAME_BYTES: usize = 60;

/// The gratuitous ARP frame announcing that `address` is at `mac`.
pub fn frame(mac: Mac, address: Ipv4Addr) -> [u8; FRAME_BYTES] {
    let mut frame = [0u8; FRAME_BYTES];
    let ip = address.octets();
    // Ethernet header: destination, source, EtherType.
    frame[0..6].copy_from_slice(&BROADCAST);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    // ARP: hardware and protocol types and lengths, operation.
    frame[14..16].copy_from_slice(&HARDWARE_ETHERNET.to_be_bytes());
    frame[16..18].copy_from_slice(&PROTOCOL_IPV4.to_be_bytes());
    frame[18] = 6;
    frame[19] = 4;
    frame[20..22].copy_from_slice(&OPERATION_REQUEST.to_be_bytes());
    // Sender MAC and IP; target MAC (zeros, already) and IP, the same address.
    frame[22..28].copy_from_slice(&mac);
    frame[28..32].copy_from_slice(&ip);
    frame[38..42].copy_from_slice(&ip);
    frame
}

/// A packet socket bound to one interface that sends gratuitous ARPs (needs `CAP_NET_RAW`).
pub struct Sender {
    socket: OwnedFd,
    interface_index: u32,
}

impl Sender {
    /// Opens the socket (non-blocking: a full transmit queue drops an announcement
    /// instead of stalling the caller).
    pub fn open(interface_index: u32) -> io::Result<Sender> {
        let protocol = i32::from(ETHERTYPE_ARP.to_be());
        // SAFETY: plain socket(2) call; the descriptor is owned right below.
        let fd = unsafe {
            libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, protocol)
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Sender { socket, interface_index })
    }

    /// Sends one frame out of the interface, to the Ethernet broadcast address.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid start.
        let mut destination: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        destination.sll_family = libc::AF_PACKET as u16;
        destination.sll_protocol = ETHERTYPE_ARP.to_be();
        destination.sll_ifindex = self.interface_index as i32;
        destination.sll_halen = 6;
        destination.sll_addr[..6].copy_from_slice(&BROADCAST);
        // SAFETY: the buffer and the address outlive the call; the lengths are theirs.
        let sent = unsafe {
            libc::sendto(
                self.socket.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                std::ptr::addr_of!(destination).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// What one announcement sends: `count` frames, `interval` apart.
#[derive(Debug, Clone, Copy)]
pub struct Burst {
    /// Frames in the announcement.
    pub count: u32,
    /// Spacing between them.
    pub interval: Duration,
}

/// Sends one announcement of `address` at `mac`; returns the frames sent. A failed send is
/// logged and the rest still go (the next announcement tries again).
pub async fn announce(interface_index: u32, mac: Mac, address: Ipv4Addr, burst: Burst) -> u32 {
    let sender = match Sender::open(interface_index) {
        Ok(sender) => sender,
        Err(error) => {
            tracing::error!(%address, %error, "gratuitous ARP: cannot open the packet socket");
            return 0;
        }
    };
    let frame = frame(mac, address);
    let mut sent = 0;
    for number in 0..burst.count {
        if number > 0 {
            tokio::time::sleep(burst.interval).await;
        }
        match sender.send(&frame) {
            Ok(()) => sent += 1,
            Err(error) => tracing::warn!(%address, %error, "gratuitous ARP: a send failed"),
        }
    }
    tracing::info!(%address, sent, "gratuitous ARPs sent");
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_is_a_broadcast_arp_request_for_the_address_itself() {
        let mac: Mac = [0x02, 0x42, 0xac, 0x11, 0x00, 0x02];
        let frame = frame(mac, Ipv4Addr::new(10, 231, 7, 100));
        let expected: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // Ethernet destination: broadcast
            0x02, 0x42, 0xac, 0x11, 0x00, 0x02, // Ethernet source: our MAC
            0x08, 0x06, // EtherType ARP
            0x00, 0x01, 0x08, 0x00, 6, 4, // Ethernet / IPv4, address lengths
            0x00, 0x01, // request
            0x02, 0x42, 0xac, 0x11, 0x00, 0x02, 10, 231, 7, 100, // sender MAC and IP
            0, 0, 0, 0, 0, 0, 10, 231, 7, 100, // target MAC zero, target IP = sender IP
        ];
        assert_eq!(frame[..42], expected);
        assert!(frame[42..].iter().all(|byte| *byte == 0), "padding is zero");
        assert_eq!(frame.len(), 60, "the Ethernet minimum without the FCS");
    }
}

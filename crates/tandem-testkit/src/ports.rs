//! Loopback ports for servers started by tests.
//!
//! `bind(":0")` hands out a port from the kernel's ephemeral range and forgets it
//! once the probe socket closes; until the server under test binds it, any
//! outgoing connection (another test's client, a Raft peer) may take the same
//! port as its source port, and the server then fails with `EADDRINUSE`. The
//! ports here come from below the ephemeral range instead, which outgoing
//! connections never use, and each process walks them from its own offset so
//! tests running in parallel in one process never pick the same port twice.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};

/// The ports handed out: below Linux's default ephemeral range (32768–60999).
pub const TEST_PORTS: Range<u32> = 20_000..32_000;

/// A loopback port that is free now and is handed out to no one else in this process.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = TEST_PORTS.end - TEST_PORTS.start;
    for _ in 0..span {
        let offset = (std::process::id().wrapping_mul(97).wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed))) % span;
        let port = (TEST_PORTS.start + offset) as u16;
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {TEST_PORTS:?}");
}

/// `count` distinct free loopback addresses.
pub fn free_addresses(count: usize) -> Vec<SocketAddr> {
    (0..count).map(|_| SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn bind_within(address: SocketAddr, within: Duration) -> TcpListener {
        let deadline = Instant::now() + within;
        loop {
            match TcpListener::bind(address) {
                Ok(listener) => return listener,
                Err(error) if Instant::now() < deadline && error.kind() == std::io::ErrorKind::AddrInUse => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(error) => panic!("handed-out port {address} does not bind: {error}"),
            }
        }
    }

    #[test]
    fn ports_are_distinct_bindable_and_outside_the_ephemeral_range() {
        let mut ports = Vec::new();
        let mut held = Vec::new();
        for _ in 0..50 {
            let address = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
            assert!(TEST_PORTS.contains(&u32::from(address.port())));
            // Bound at once, as a server under test does. Another process on the machine
            // can still hold the port for a moment between the probe and this bind (CI
            // runs saw EADDRINUSE twice); a port that stays taken fails the test.
            held.push(bind_within(address, Duration::from_secs(1)));
            ports.push(address.port());
        }
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 50, "a port was handed out twice");
    }
}

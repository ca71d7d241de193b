//! Neighbour discovery for BGP unnumbered, the way FRR and Cumulus do it:
//! send IPv6 Router Advertisements on the interface and learn the peer's
//! link-local address from the RAs (or Router Solicitations) it sends.
//!
//! Our RAs carry a router lifetime of 0: they announce a neighbour, not a
//! default router, so hosts on the link never route through us because of them.

use std::io;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::mpsc;
use tracing::{debug, warn};

const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ICMP6_ROUTER_SOLICIT: u8 = 133;
const ICMP6_ROUTER_ADVERT: u8 = 134;

/// The interface index (from sysfs).
pub fn ifindex(ifname: &str) -> io::Result<u32> {
    let s = std::fs::read_to_string(format!("/sys/class/net/{ifname}/ifindex"))?;
    s.trim()
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad ifindex"))
}

/// This host's link-local address on an interface (from /proc/net/if_inet6).
pub fn link_local(ifindex: u32) -> Option<Ipv6Addr> {
    let text = std::fs::read_to_string("/proc/net/if_inet6").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let idx = u32::from_str_radix(f.get(1)?, 16).ok()?;
        let hex = f.first()?;
        if idx != ifindex || hex.len() != 32 {
            return None;
        }
        let mut b = [0u8; 16];
        for (i, byte) in b.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).ok()?;
        }
        let a = Ipv6Addr::from(b);
        a.is_unicast_link_local().then_some(a)
    })
}

/// A Router Advertisement: hop limit 64, no flags, router lifetime 0.
fn router_advertisement() -> [u8; 16] {
    let mut p = [0u8; 16];
    p[0] = ICMP6_ROUTER_ADVERT;
    p[4] = 64;
    p
}

fn open(ifname: &str, ifindex: u32) -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
    s.bind_device(Some(ifname.as_bytes()))?;
    s.set_multicast_hops_v6(255)?;
    s.set_unicast_hops_v6(255)?;
    s.set_multicast_if_v6(ifindex)?;
    s.set_multicast_loop_v6(false)?;
    s.join_multicast_v6(&ALL_NODES, ifindex)?;
    s.set_read_timeout(Some(Duration::from_millis(250)))?;
    Ok(s)
}

/// Run the RA exchange on `ifname` until `found` is closed: advertise every
/// `interval`, report each neighbour link-local address heard.
pub fn spawn(
    ifname: String,
    interval: Duration,
    found: mpsc::UnboundedSender<Ipv6Addr>,
) -> io::Result<()> {
    let idx = ifindex(&ifname)?;
    // Configured through socket2, used through std's safe datagram calls
    // (recvfrom/sendto behave the same on a raw ICMPv6 socket).
    let sock: UdpSocket = open(&ifname, idx)?.into();
    let own = link_local(idx);
    std::thread::Builder::new()
        .name(format!("ra-{ifname}"))
        .spawn(move || {
            let dst = SocketAddrV6::new(ALL_NODES, 0, 0, idx);
            let mut next = std::time::Instant::now();
            let mut buf = [0u8; 1500];
            loop {
                if found.is_closed() {
                    return;
                }
                if std::time::Instant::now() >= next {
                    if let Err(e) = sock.send_to(&router_advertisement(), dst) {
                        debug!(interface = %ifname, "sending a router advertisement: {e}");
                    }
                    next = std::time::Instant::now() + interval;
                }
                match sock.recv_from(&mut buf) {
                    Ok((n, SocketAddr::V6(src))) if n >= 4 => {
                        let a = *src.ip();
                        let kind = buf[0];
                        if (kind == ICMP6_ROUTER_ADVERT || kind == ICMP6_ROUTER_SOLICIT)
                            && a.is_unicast_link_local()
                            && Some(a) != own
                            && found.send(a).is_err()
                        {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => {
                        warn!(interface = %ifname, "router advertisement socket: {e}");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_interface_lookups() {
        assert_eq!(ifindex("lo").unwrap(), 1);
        assert!(ifindex("no-such-if0").is_err());
        // lo has no link-local address.
        assert_eq!(link_local(1), None);
        let ra = router_advertisement();
        assert_eq!((ra[0], ra[4], ra[6], ra[7]), (134, 64, 0, 0));
    }
}

//! Two socket options the netlink sockets need that `netlink-sys` does not
//! offer: a classic BPF filter (`SO_ATTACH_FILTER`) and a receive buffer
//! above `rmem_max` (`SO_RCVBUFFORCE`, needs CAP_NET_ADMIN, which programming
//! routes needs anyway).
//!
//! The filter is why this module exists: the route-change socket must not be
//! woken, or overflow, once per route kbgp itself installs (a million at a
//! full table), so the kernel drops those notifications before queueing them,
//! as FRR's zebra does with its own filter. The program only reads the first
//! message of a datagram; notifications are one message a datagram.
//!
//! The `unsafe` here is one `setsockopt` call with `#[repr(C)]` values from
//! `libc` that the kernel only reads during the call. The program itself is
//! checked twice: the kernel verifies it on attach (tested below), and
//! [`own_route_change`] states the same rule in Rust; the netlink module
//! applies that too, so a kernel that refuses the filter only costs wake-ups.
//! Tested in `netlink::tests` against the running kernel, in a network
//! namespace of the test's own.

use std::io;
use std::os::fd::RawFd;

/// `RTM_NEWROUTE`, `RTM_DELROUTE` (include/uapi/linux/rtnetlink.h).
pub(crate) const RTM_NEWROUTE: u16 = 24;
pub(crate) const RTM_DELROUTE: u16 = 25;
/// Offset of `rtm_protocol`: a 16-byte `nlmsghdr`, then `struct rtmsg`
/// (family, dst_len, src_len, tos, table, protocol...).
pub(crate) const RTM_PROTOCOL_OFFSET: usize = 16 + 5;

/// Is this netlink message a route change of `protocol`'s (one kbgp made)?
/// The same rule as [`own_route_filter`], for datagrams that reach userspace.
pub(crate) fn own_route_change(msg: &[u8], protocol: u8) -> bool {
    if msg.len() <= RTM_PROTOCOL_OFFSET {
        return false;
    }
    let kind = u16::from_ne_bytes([msg[4], msg[5]]);
    (kind == RTM_NEWROUTE || kind == RTM_DELROUTE) && msg[RTM_PROTOCOL_OFFSET] == protocol
}

/// The classic BPF program that drops route notifications of `protocol`.
/// BPF loads are big-endian; `nlmsg_type` is in host order, so the constants
/// it is compared with are turned around the same way.
pub(crate) fn own_route_filter(protocol: u8) -> Vec<libc::sock_filter> {
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let host16 = |v: u16| u32::from(u16::from_be_bytes(v.to_ne_bytes()));
    let (ld, jeq, ret) = (
        libc::BPF_LD,
        libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
        libc::BPF_RET | libc::BPF_K,
    );
    vec![
        // A = nlmsg_type
        op(ld | libc::BPF_H | libc::BPF_ABS, 0, 0, 4),
        // route change? on to the protocol; else accept
        op(jeq, 1, 0, host16(RTM_NEWROUTE)),
        op(jeq, 0, 2, host16(RTM_DELROUTE)),
        // A = rtm_protocol
        op(
            ld | libc::BPF_B | libc::BPF_ABS,
            0,
            0,
            RTM_PROTOCOL_OFFSET as u32,
        ),
        // ours: drop; else accept
        op(jeq, 1, 0, u32::from(protocol)),
        op(ret, 0, 0, u32::MAX),
        op(ret, 0, 0, 0),
    ]
}

/// `setsockopt(fd, SOL_SOCKET, opt, value)`: the module's one `unsafe` call.
fn set<T>(fd: RawFd, opt: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live, initialised `T` of the size passed, which
    // the kernel only reads (copies) during the call. Callers pass the
    // `#[repr(C)]` type the option expects.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            value as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Attach `prog` to socket `fd` (the kernel copies the program).
pub(crate) fn attach_filter(fd: RawFd, prog: &mut [libc::sock_filter]) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    set(fd, libc::SO_ATTACH_FILTER, &fprog)
}

/// A receive buffer of `bytes`, above `rmem_max` if need be.
pub(crate) fn force_rcvbuf(fd: RawFd, bytes: usize) -> io::Result<()> {
    let v = bytes.min(i32::MAX as usize) as libc::c_int;
    set(fd, libc::SO_RCVBUFFORCE, &v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn msg(kind: u16, protocol: u8) -> Vec<u8> {
        let mut m = vec![0u8; 28];
        m[..4].copy_from_slice(&28u32.to_ne_bytes());
        m[4..6].copy_from_slice(&kind.to_ne_bytes());
        m[RTM_PROTOCOL_OFFSET] = protocol;
        m
    }

    #[test]
    fn own_route_changes_are_told_apart() {
        assert!(own_route_change(&msg(RTM_NEWROUTE, 186), 186));
        assert!(own_route_change(&msg(RTM_DELROUTE, 186), 186));
        assert!(!own_route_change(&msg(RTM_NEWROUTE, 4), 186));
        // RTM_NEWADDR with the same byte where a route's protocol would be
        assert!(!own_route_change(&msg(20, 186), 186));
        assert!(!own_route_change(&msg(RTM_NEWROUTE, 186)[..20], 186));
    }

    #[test]
    fn the_kernel_accepts_the_filter() {
        let s = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_ROUTE).unwrap();
        let mut prog = own_route_filter(186);
        attach_filter(s.as_raw_fd(), &mut prog).expect("a valid classic BPF program");
        // A jump past the end is refused: the kernel does check programs.
        let mut bad = own_route_filter(186);
        bad[1].jt = 40;
        assert!(attach_filter(s.as_raw_fd(), &mut bad).is_err());
    }
}

//! TCP MD5 signatures (RFC 2385) for BGP passwords: the one socket option
//! kbgp needs that tokio and std do not offer.
//!
//! One of kbgp's three `unsafe` modules (the others: `fib::sockopt`,
//! `bgp_rib::prefetch`): a single `setsockopt(TCP_MD5SIG)` with a
//! `#[repr(C)]` struct laid out like the kernel's `struct tcp_md5sig`
//! (include/uapi/linux/tcp.h): a 128-byte `sockaddr_storage`, flags, prefix
//! length, key length, ifindex, an 80-byte key — 216 bytes. The address is
//! written byte by byte, so no other unsafe code is needed. Tested below
//! against the running kernel and in `tests/md5.rs` against FRR.

use std::io;
use std::net::IpAddr;
use std::os::fd::RawFd;

pub const MAX_KEY_LEN: usize = 80;

#[repr(C)]
struct TcpMd5Sig {
    addr: [u8; 128],
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: u32,
    key: [u8; MAX_KEY_LEN],
}

/// Set (`Some`) or delete (`None`) the MD5 key for connections with `peer` on socket `fd`.
pub fn set_md5(fd: RawFd, peer: IpAddr, key: Option<&[u8]>) -> io::Result<()> {
    let key = key.unwrap_or_default();
    if key.len() > MAX_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("TCP MD5 key longer than {MAX_KEY_LEN} bytes"),
        ));
    }
    let mut sig = TcpMd5Sig {
        addr: [0; 128],
        flags: 0,
        prefixlen: 0,
        keylen: key.len() as u16,
        ifindex: 0,
        key: [0; MAX_KEY_LEN],
    };
    sig.key[..key.len()].copy_from_slice(key);
    match peer {
        IpAddr::V4(a) => {
            // struct sockaddr_in: family, port, address.
            sig.addr[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            sig.addr[4..8].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            // struct sockaddr_in6: family, port, flowinfo, address, scope id.
            sig.addr[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            sig.addr[8..24].copy_from_slice(&a.octets());
        }
    }
    // SAFETY: `sig` is a fully initialised #[repr(C)] value of the size the
    // kernel expects for TCP_MD5SIG; the kernel only reads it during the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            &sig as *const TcpMd5Sig as *const libc::c_void,
            std::mem::size_of::<TcpMd5Sig>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn layout_matches_the_kernel() {
        assert_eq!(std::mem::size_of::<TcpMd5Sig>(), 216);
    }

    #[test]
    fn set_and_delete_keys_on_a_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = l.as_raw_fd();
        set_md5(fd, "127.0.0.2".parse().unwrap(), Some(b"secret")).unwrap();
        set_md5(fd, "127.0.0.2".parse().unwrap(), None).unwrap();
        // Deleting a key that is not there is an error from the kernel.
        assert!(set_md5(fd, "127.0.0.3".parse().unwrap(), None).is_err());
        assert!(set_md5(fd, "127.0.0.2".parse().unwrap(), Some(&[b'x'; 81])).is_err());
        let l6 = std::net::TcpListener::bind("[::1]:0").unwrap();
        set_md5(l6.as_raw_fd(), "::1".parse().unwrap(), Some(b"secret")).unwrap();
    }
}

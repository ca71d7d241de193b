//! systemd's notify protocol (sd_notify(3)): READY=1 once sessions are
//! configured, RELOADING=1 / READY=1 around a SIGHUP reload, STOPPING=1 on
//! SIGTERM, WATCHDOG=1 every half WatchdogSec. A datagram to $NOTIFY_SOCKET
//! (a path, or an abstract name starting with '@'); nothing when unset.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

pub struct Notifier {
    sock: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// From the environment; `None` when not started by systemd with Type=notify.
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let path = path.to_str()?;
        let addr = match path.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes()).ok()?,
            None => SocketAddr::from_pathname(path).ok()?,
        };
        let sock = UnixDatagram::unbound().ok()?;
        Some(Notifier { sock, addr })
    }

    pub fn send(&self, state: &str) {
        if let Err(e) = self.sock.send_to_addr(state.as_bytes(), &self.addr) {
            tracing::warn!("sd_notify {state:?}: {e}");
        }
    }

    /// Half the watchdog interval systemd asked for, if it asked (WATCHDOG_USEC,
    /// for this process per WATCHDOG_PID).
    pub fn watchdog_interval() -> Option<Duration> {
        if let Some(pid) = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
        {
            if pid != std::process::id() {
                return None;
            }
        }
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        (usec > 0).then(|| Duration::from_micros(usec / 2))
    }
}

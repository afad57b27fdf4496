//! systemd's readiness protocol without libsystemd: datagrams of
//! `KEY=value` lines to the Unix socket named by `NOTIFY_SOCKET` (a path, or
//! an abstract name written with a leading `@`).
//!
//! The daemon says `READY=1` once every channel is open and the keys are
//! loaded, `STATUS=` with its remotes and MACs every ~10 s, `WATCHDOG=1` at
//! half of `WATCHDOG_USEC` when the service has a watchdog, and `STOPPING=1`
//! when it exits. Without `NOTIFY_SOCKET` nothing is sent. A failed send is
//! logged once and otherwise ignored: readiness is a courtesy to the service
//! manager, never a reason to stop forwarding.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// How often `STATUS=` is refreshed.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// A connection to the service manager.
#[derive(Debug)]
pub struct Notifier {
    sock: UnixDatagram,
    addr: SocketAddr,
    watchdog: Option<Duration>,
    failed: bool,
}

impl Notifier {
    /// The notifier `NOTIFY_SOCKET` asks for, if any. A malformed value is
    /// an error; an absent one is `Ok(None)`.
    pub fn from_env() -> io::Result<Option<Notifier>> {
        let Some(name) = std::env::var_os("NOTIFY_SOCKET") else { return Ok(None) };
        let name = name.to_string_lossy().into_owned();
        let addr = match name.strip_prefix('@') {
            Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name.as_bytes())?,
            None if name.starts_with('/') => SocketAddr::from_pathname(&name)?,
            None => return Err(io::Error::new(io::ErrorKind::InvalidInput, NotAbsolute)),
        };
        let sock = UnixDatagram::unbound()?;
        sock.set_nonblocking(true)?;
        Ok(Some(Notifier { sock, addr, watchdog: watchdog_interval(), failed: false }))
    }

    /// How often `WATCHDOG=1` is due (half the service's watchdog timeout).
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends one message (`READY=1`, `STATUS=...`, ...).
    pub fn send(&mut self, message: &str) {
        if let Err(e) = self.sock.send_to_addr(message.as_bytes(), &self.addr) {
            if !self.failed {
                self.failed = true;
                log::warn!("cannot notify the service manager ({message}): {e}");
            }
        }
    }
}

/// `NOTIFY_SOCKET` must be an absolute path or an abstract name.
#[derive(Debug)]
struct NotAbsolute;

impl std::fmt::Display for NotAbsolute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NOTIFY_SOCKET is neither an absolute path nor an abstract name (@...)")
    }
}

impl std::error::Error for NotAbsolute {}

/// Half of `WATCHDOG_USEC`, when the watchdog is meant for this process
/// (`WATCHDOG_PID` absent or ours).
fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_a_datagram_socket() {
        let dir = std::env::temp_dir().join(format!("rrqnet-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let mut n = Notifier {
            sock: UnixDatagram::unbound().unwrap(),
            addr: SocketAddr::from_pathname(&path).unwrap(),
            watchdog: None,
            failed: false,
        };
        n.send("READY=1");
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

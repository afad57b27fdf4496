//! The status socket (`--status-socket PATH`): a Unix stream socket where
//! each connection gets one JSON [`super::Status`] document and is closed.
//!
//! A client must never stall or grow the daemon: the listener and every
//! connection are non-blocking and live in the event loop; the document is
//! written as far as the socket takes it, and the rest (bounded by the
//! document) waits for writability, at most [`WRITE_DEADLINE`]; at most
//! [`MAX_PENDING`] such unfinished connections are kept, and a connection
//! beyond that is closed at once without a document. The socket is created
//! mode 0600 (under a umask, so it is never open wider, even for an instant),
//! a stale one left by a dead daemon is replaced, one still served by a live
//! daemon is not, and the file is removed when the server is dropped.

use std::fmt;
use std::io::{self, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

/// Unfinished connections kept at once; more are closed at once.
pub const MAX_PENDING: usize = 8;
/// How long an unfinished connection may take to read its document.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(5);
/// Connections accepted per readiness event, so a flood of clients cannot
/// hold the loop.
const ACCEPT_BUDGET: usize = 64;

/// Why the status socket could not be set up.
#[derive(Debug)]
pub enum StatusSocketError {
    /// Another process serves the path.
    InUse(PathBuf),
    /// Something other than a socket is at the path.
    NotASocket(PathBuf),
    /// Creating or binding it failed.
    Bind {
        /// The path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

impl fmt::Display for StatusSocketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusSocketError::InUse(p) => write!(f, "status socket {} is served by a running process", p.display()),
            StatusSocketError::NotASocket(p) => {
                write!(f, "status socket {}: something other than a socket is there", p.display())
            }
            StatusSocketError::Bind { path, .. } => write!(f, "cannot create status socket {}", path.display()),
        }
    }
}

impl std::error::Error for StatusSocketError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StatusSocketError::Bind { source, .. } => Some(source),
            _ => None,
        }
    }
}

struct Pending {
    stream: UnixStream,
    doc: Vec<u8>,
    at: usize,
    deadline: Instant,
}

/// The listener and its unfinished connections.
pub struct StatusServer {
    listener: UnixListener,
    path: PathBuf,
    pending: Vec<Option<Pending>>,
    base: Token,
    served: u64,
    refused: u64,
}

impl fmt::Debug for StatusServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StatusServer({})", self.path.display())
    }
}

impl StatusServer {
    /// Binds `path` mode 0600, replacing a stale socket.
    pub fn bind(path: &Path) -> Result<StatusServer, StatusSocketError> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => {
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(StatusSocketError::InUse(path.to_owned()));
                }
                // Nobody listens: a dead daemon's socket.
                let _ = std::fs::remove_file(path);
            }
            Ok(_) => return Err(StatusSocketError::NotASocket(path.to_owned())),
            Err(_) => {}
        }
        let listener = crate::sys::with_umask(0o177, || UnixListener::bind(path))
            .map_err(|source| StatusSocketError::Bind { path: path.to_owned(), source })?;
        Ok(StatusServer {
            listener,
            path: path.to_owned(),
            pending: (0..MAX_PENDING).map(|_| None).collect(),
            base: Token(0),
            served: 0,
            refused: 0,
        })
    }

    /// Registers the listener as `base`; connections take the next
    /// [`MAX_PENDING`] tokens.
    pub fn register(&mut self, registry: &Registry, base: Token) -> io::Result<()> {
        self.base = base;
        registry.register(&mut self.listener, base, Interest::READABLE)
    }

    /// Whether `token` is the listener's or one of its connections'.
    pub fn owns(&self, token: Token) -> bool {
        token.0 >= self.base.0 && token.0 <= self.base.0 + MAX_PENDING
    }

    /// The path it listens on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Connections served and refused so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.served, self.refused)
    }

    /// Serves a readiness event for `token`: accepts connections (each gets
    /// `render()`'s document, rendered at most once per event), or goes on
    /// writing an unfinished one.
    pub fn handle(&mut self, registry: &Registry, token: Token, now: Instant, mut render: impl FnMut() -> String) {
        if token == self.base {
            let mut doc: Option<Vec<u8>> = None;
            for _ in 0..ACCEPT_BUDGET {
                let stream = match self.listener.accept() {
                    Ok((s, _)) => s,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    // WouldBlock, or a resource limit: try again at the next event.
                    Err(_) => break,
                };
                let doc = doc.get_or_insert_with(|| render().into_bytes());
                self.serve(registry, stream, doc, now);
            }
            return;
        }
        let slot = token.0 - self.base.0 - 1;
        if let Some(Some(p)) = self.pending.get_mut(slot) {
            if write_some(p) {
                self.finish(registry, slot);
            }
        }
    }

    fn serve(&mut self, registry: &Registry, stream: UnixStream, doc: &[u8], now: Instant) {
        let mut p = Pending { stream, doc: Vec::new(), at: 0, deadline: now + WRITE_DEADLINE };
        // Most documents fit the socket buffer: written whole, closed at once.
        loop {
            match (&p.stream).write(&doc[p.at..]) {
                Ok(n) if n > 0 && p.at + n < doc.len() => p.at += n,
                Ok(_) => {
                    self.served += 1;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return,
            }
        }
        let Some(slot) = self.pending.iter().position(Option::is_none) else {
            self.refused += 1;
            return;
        };
        p.doc = doc.to_vec();
        let token = Token(self.base.0 + 1 + slot);
        if registry.register(&mut p.stream, token, Interest::WRITABLE).is_ok() {
            self.pending[slot] = Some(p);
        }
    }

    fn finish(&mut self, registry: &Registry, slot: usize) {
        if let Some(mut p) = self.pending[slot].take() {
            let _ = registry.deregister(&mut p.stream);
            self.served += 1;
        }
    }

    /// Closes unfinished connections past their deadline.
    pub fn expire(&mut self, registry: &Registry, now: Instant) {
        for slot in 0..self.pending.len() {
            if self.pending[slot].as_ref().is_some_and(|p| now >= p.deadline) {
                if let Some(mut p) = self.pending[slot].take() {
                    let _ = registry.deregister(&mut p.stream);
                    self.refused += 1;
                }
            }
        }
    }
}

/// Writes what the socket takes; true when the connection is done (written
/// whole, or failed).
fn write_some(p: &mut Pending) -> bool {
    loop {
        match (&p.stream).write(&p.doc[p.at..]) {
            Ok(0) => return true,
            Ok(n) => {
                p.at += n;
                if p.at >= p.doc.len() {
                    return true;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads one document from the status socket at `path` (the client side of
/// `rrqnet --status`), giving up after `limit`.
pub fn fetch(path: &Path, limit: Duration) -> io::Result<String> {
    use std::io::Read;
    let mut s = std::os::unix::net::UnixStream::connect(path)?;
    s.set_read_timeout(Some(limit))?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text)
}

//! rrqnet in stdio mode (`-t -`) driven by a test: frames go in on its stdin
//! as VDE records (a 2-byte big-endian length, then the frame) and come out
//! of its stdout decoded by a reader thread; its stderr is collected as it
//! comes, for readiness checks, drop counts and failure messages.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{rrqnet_bin, wait_for, Netns, Proc};

/// A process whose stderr is collected in memory as it comes.
pub struct Captured {
    pub proc: Proc,
    log: Arc<Mutex<String>>,
    eof: Arc<AtomicBool>,
}

impl Captured {
    /// Spawns `cmd` with its stderr piped to a collecting thread.
    pub fn spawn(name: &str, cmd: &mut Command) -> Captured {
        cmd.stderr(Stdio::piped());
        let mut proc = Proc::spawn(name, cmd);
        let log = Arc::new(Mutex::new(String::new()));
        let eof = Arc::new(AtomicBool::new(false));
        let mut err = proc.child.stderr.take().expect("stderr is piped");
        let (sink, done) = (Arc::clone(&log), Arc::clone(&eof));
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
            done.store(true, Ordering::SeqCst);
        });
        Captured { proc, log, eof }
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits up to `limit` for `what` to show in the log.
    pub fn wait_log(&self, what: &str, limit: Duration) -> bool {
        wait_for(limit, || self.log().contains(what))
    }

    /// Waits up to `limit` for its stderr to close, so that the log is whole.
    pub fn wait_eof(&self, limit: Duration) -> bool {
        wait_for(limit, || self.eof.load(Ordering::SeqCst))
    }

    /// Its name and log, for failure messages.
    pub fn named_log(&self) -> String {
        format!("--- {} ---\n{}", self.proc.name, self.log())
    }
}

/// An rrqnet whose local end is its stdin and stdout.
pub struct StdioDaemon {
    pub captured: Captured,
    stdin: Option<ChildStdin>,
    frames: Receiver<Vec<u8>>,
    expect_limit: Duration,
}

impl StdioDaemon {
    /// Starts `rrqnet VERBOSITY -t - ARGS`, in `ns` if given. It returns at
    /// once: callers wait for readiness as their test requires.
    pub fn spawn(name: &str, ns: Option<&Netns>, verbosity: &str, args: &[&str]) -> StdioDaemon {
        let bin = rrqnet_bin();
        let mut cmd = match ns {
            Some(ns) => ns.cmd(bin.to_str().unwrap()),
            None => Command::new(bin),
        };
        cmd.args([verbosity, "-t", "-"]).args(args).stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut captured = Captured::spawn(name, &mut cmd);
        let stdin = captured.proc.child.stdin.take();
        let mut out = captured.proc.child.stdout.take().expect("stdout is piped");
        let (tx, frames) = mpsc::channel();
        std::thread::spawn(move || {
            let mut hdr = [0u8; 2];
            loop {
                if out.read_exact(&mut hdr).is_err() {
                    return;
                }
                let mut f = vec![0u8; u16::from_be_bytes(hdr) as usize];
                if out.read_exact(&mut f).is_err() || tx.send(f).is_err() {
                    return;
                }
            }
        });
        StdioDaemon { captured, stdin, frames, expect_limit: Duration::from_secs(5) }
    }

    /// Sets how long [`StdioDaemon::expect`] waits (5 s unless set).
    pub fn with_expect_limit(mut self, limit: Duration) -> StdioDaemon {
        self.expect_limit = limit;
        self
    }

    pub fn name(&self) -> &str {
        &self.captured.proc.name
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        self.captured.log()
    }

    /// Waits up to `limit` for `what` to show in the log.
    pub fn wait_log(&self, what: &str, limit: Duration) -> bool {
        self.captured.wait_log(what, limit)
    }

    /// Its log and those of `others`, each under its name.
    pub fn logs(&self, others: &[&StdioDaemon]) -> String {
        let mut s = self.captured.named_log();
        for o in others {
            s += &o.captured.named_log();
        }
        s
    }

    /// Writes one frame as one VDE record.
    pub fn send(&mut self, frame: &[u8]) {
        self.send_all(std::slice::from_ref(&frame.to_vec()));
    }

    /// Writes all `frames` in one write.
    pub fn send_all(&mut self, frames: &[Vec<u8>]) {
        let mut buf = Vec::new();
        for f in frames {
            buf.extend_from_slice(&(f.len() as u16).to_be_bytes());
            buf.extend_from_slice(f);
        }
        self.stdin.as_mut().expect("stdin open").write_all(&buf).expect("write to rrqnet stdin");
    }

    /// The next frame out of it within `limit`.
    pub fn recv(&self, limit: Duration) -> Option<Vec<u8>> {
        self.frames.recv_timeout(limit).ok()
    }

    /// The next frame out of it is `want`.
    pub fn expect(&self, want: &[u8], what: &str) {
        self.expect_with_logs(want, what, &[]);
    }

    /// Like [`StdioDaemon::expect`], with the logs of `others` in the failure message.
    pub fn expect_with_logs(&self, want: &[u8], what: &str, others: &[&StdioDaemon]) {
        match self.recv(self.expect_limit) {
            Some(got) => {
                assert!(got == want, "{what}: got a different frame ({} bytes, want {})", got.len(), want.len())
            }
            None => panic!("{what}: nothing arrived\n{}", self.logs(others)),
        }
    }

    /// No frame comes out of it within `limit`.
    pub fn expect_nothing(&self, limit: Duration, what: &str) {
        if let Some(got) = self.recv(limit) {
            panic!(
                "{what}: an unexpected {}-byte frame arrived: {:02x?}\n{}",
                got.len(),
                &got[..got.len().min(32)],
                self.logs(&[])
            );
        }
    }

    /// Closes stdin, checks the daemon exits 0 within 5 s, and returns its
    /// whole log (statistics included).
    pub fn finish(mut self) -> String {
        drop(self.stdin.take());
        let st = self.captured.proc.wait_timeout(Duration::from_secs(5));
        self.captured.wait_eof(Duration::from_secs(2));
        let log = self.log();
        assert!(st.is_some_and(|s| s.success()), "{} did not exit 0 on EOF ({st:?}):\n{log}", self.name());
        log
    }
}

/// The exchange every stdio pair test makes between `a` (uplinked to `b`)
/// and `b`, with frames built by `frame(dst, src, len, fill)`: a broadcast
/// and a unicast reply; 60, 1514 and 9000-byte frames both ways; then 1000
/// back to back each way, none lost, in order.
pub fn exchange_frames(a: &mut StdioDaemon, b: &mut StdioDaemon, frame: fn([u8; 6], [u8; 6], usize, u8) -> Vec<u8>) {
    use super::frames::{mac, BCAST};
    // A's broadcast reaches B (B learns A from it), B's unicast reply reaches A.
    let hello = frame(BCAST, mac(1), 60, 1);
    a.send(&hello);
    b.expect(&hello, "broadcast a->b");
    let reply = frame(mac(1), mac(2), 60, 2);
    b.send(&reply);
    a.expect(&reply, "unicast b->a");

    for len in [60, 1514, 9000] {
        let f = frame(mac(2), mac(1), len, len as u8);
        a.send(&f);
        b.expect(&f, &format!("{len}-byte frame a->b"));
        let g = frame(mac(1), mac(2), len, 3);
        b.send(&g);
        a.expect(&g, &format!("{len}-byte frame b->a"));
    }

    let burst: Vec<Vec<u8>> = (0..1000).map(|i| frame(mac(2), mac(1), 60 + (i * 97) % 1455, i as u8)).collect();
    a.send_all(&burst);
    for (i, f) in burst.iter().enumerate() {
        match b.recv(Duration::from_secs(5)) {
            Some(got) => assert!(&got == f, "burst frame {i} differs"),
            None => panic!("burst: only {i} of 1000 frames arrived"),
        }
    }
    let burst: Vec<Vec<u8>> = (0..1000).map(|i| frame(mac(1), mac(2), 1514, i as u8)).collect();
    b.send_all(&burst);
    for (i, f) in burst.iter().enumerate() {
        match a.recv(Duration::from_secs(5)) {
            Some(got) => assert!(&got == f, "reverse burst frame {i} differs"),
            None => panic!("reverse burst: only {i} of 1000 frames arrived"),
        }
    }
}

//! A daemon in stdio mode (`-t -`) driven by a test: frames in and out as
//! VDE records, its log collected as it comes; and the frames the tests send.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{rrqnet_bin, wait_for, Netns, Proc};

/// An rrqnet with `-vv -t -`: frames in and out as VDE records, its log
/// collected as it comes.
pub struct StdioDaemon {
    proc_: Proc,
    stdin: Option<ChildStdin>,
    frames: Receiver<Vec<u8>>,
    log: Arc<Mutex<String>>,
}

impl StdioDaemon {
    pub fn spawn(args: &[&str]) -> StdioDaemon {
        StdioDaemon::spawn_in(None, args)
    }

    pub fn spawn_in(ns: Option<&Netns>, args: &[&str]) -> StdioDaemon {
        let bin = rrqnet_bin();
        let mut cmd = match ns {
            Some(ns) => ns.cmd(bin.to_str().unwrap()),
            None => Command::new(bin),
        };
        cmd.args(["-vv", "-t", "-"]).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut p = Proc::spawn("rrqnet", &mut cmd);
        let stdin = p.child.stdin.take();
        let mut out = p.child.stdout.take().expect("stdout");
        let mut err = p.child.stderr.take().expect("stderr");
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
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let r = StdioDaemon { proc_: p, stdin, frames, log };
        assert!(
            wait_for(Duration::from_secs(5), || r.log().contains("local end: stdio")),
            "rrqnet {args:?} did not start:\n{}",
            r.log()
        );
        r
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn send(&mut self, frame: &[u8]) {
        self.send_all(std::slice::from_ref(&frame.to_vec()));
    }

    pub fn send_all(&mut self, frames: &[Vec<u8>]) {
        let mut buf = Vec::new();
        for f in frames {
            buf.extend_from_slice(&(f.len() as u16).to_be_bytes());
            buf.extend_from_slice(f);
        }
        self.stdin.as_mut().expect("stdin open").write_all(&buf).expect("write to rrqnet stdin");
    }

    pub fn recv(&self, limit: Duration) -> Option<Vec<u8>> {
        self.frames.recv_timeout(limit).ok()
    }

    pub fn expect(&self, want: &[u8], what: &str) {
        match self.recv(Duration::from_secs(5)) {
            Some(got) => {
                assert!(got == want, "{what}: got a different frame ({} bytes, want {})", got.len(), want.len())
            }
            None => panic!("{what}: nothing arrived; log:\n{}", self.log()),
        }
    }

    pub fn expect_nothing(&self, limit: Duration, what: &str) {
        if let Some(got) = self.recv(limit) {
            panic!("{what}: unexpected {}-byte frame; log:\n{}", got.len(), self.log());
        }
    }

    /// Closes stdin, checks the daemon exits 0, and returns its whole log.
    pub fn finish(mut self) -> String {
        drop(self.stdin.take());
        let st = self.proc_.wait_timeout(Duration::from_secs(5)).expect("rrqnet exits on stdin EOF");
        wait_for(Duration::from_secs(2), || self.log().contains("drops:"));
        let log = self.log();
        assert!(st.success(), "rrqnet exit status {st}; log:\n{log}");
        log
    }
}

/// A locally administered unicast MAC address ending in `last`.
pub fn mac(last: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, last]
}

/// The broadcast address.
pub const BCAST: [u8; 6] = [0xff; 6];

/// A frame of `len` bytes from `src` to `dst` with a local experimental
/// EtherType and a fill pattern that starts at `fill`.
pub fn frame(dst: [u8; 6], src: [u8; 6], len: usize, fill: u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]);
    while f.len() < len {
        f.push(fill.wrapping_add(f.len() as u8).wrapping_mul(7));
    }
    f
}

/// The exchange every pair test makes between `a` (uplinked to `b`) and `b`:
/// a broadcast and a unicast reply; 60, 1514 and 9000-byte frames both ways;
/// then 1000 back to back each way, none lost, in order.
pub fn exchange_frames(a: &mut StdioDaemon, b: &mut StdioDaemon) {
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

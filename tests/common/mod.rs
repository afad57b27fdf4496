//! Shared helpers for the integration tests: the built binary, child
//! processes that are always ended (by PID) when a test ends, network
//! namespaces that are always removed, and the privileged-test rule.
//!
//! Tests that need root or network namespaces call [`privileged`]: it returns
//! false (and the test prints why it skips) only when
//! `RRQNET_REQUIRE_PRIVILEGED` is not `1`; with it set, a missing privilege is
//! a failure.

#![allow(dead_code)]

pub mod frames;
pub mod netns_util;
pub mod netsim;
pub mod scratch;
pub mod stdio;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The `rrqnet` binary cargo built for these tests.
pub fn rrqnet_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rrqnet"))
}

/// True when privileged tests must run (and fail rather than skip).
pub fn privileged_required() -> bool {
    std::env::var("RRQNET_REQUIRE_PRIVILEGED").as_deref() == Ok("1")
}

fn is_root() -> bool {
    // `id -u` keeps this file free of unsafe code.
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// Says why a test skips, on the process's real stderr: the test harness
/// captures `eprintln!` of passing tests, and a skip must be seen.
fn skipped(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Whether a privileged test can run. Without root it panics when
/// `RRQNET_REQUIRE_PRIVILEGED=1`, else prints why it skips and returns false.
pub fn privileged(test: &str) -> bool {
    let ok = is_root() && Command::new("ip").arg("-V").output().map(|o| o.status.success()).unwrap_or(false);
    if ok {
        return true;
    }
    if privileged_required() {
        panic!("{test}: needs root and iproute2, and RRQNET_REQUIRE_PRIVILEGED=1 forbids skipping");
    }
    skipped(&format!(
        "SKIPPED {test}: needs root and iproute2 (set RRQNET_REQUIRE_PRIVILEGED=1 to make this a failure)"
    ));
    false
}

/// Whether a program is installed. With `RRQNET_REQUIRE_PRIVILEGED=1` a missing
/// program is a failure; otherwise the test prints why it skips.
/// The path of `prog` if it is installed.
pub fn which(prog: &str) -> Option<String> {
    let out = Command::new("sh").arg("-c").arg(format!("command -v {prog}")).output().ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !path.is_empty()).then_some(path)
}

pub fn have_program(test: &str, prog: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {prog}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        if privileged_required() {
            panic!("{test}: needs {prog}, and RRQNET_REQUIRE_PRIVILEGED=1 forbids skipping");
        }
        skipped(&format!("SKIPPED {test}: {prog} is not installed"));
    }
    found
}

/// A child process that is ended by its PID when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    /// Spawns `cmd`, naming it for messages.
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc { child, name: name.to_owned() }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `limit` for the process to exit on its own.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its stderr so far, if it was piped and the process has ended.
    pub fn stderr_text(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }

    /// Ends the process (SIGTERM, then SIGKILL) and reaps it.
    pub fn stop(&mut self) {
        if self.running() {
            let _ = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status();
            if self.wait_timeout(Duration::from_secs(2)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs a command and returns its output, panicking with its stderr when it fails.
pub fn run(cmd: &str, args: &[&str]) -> Output {
    let out = Command::new(cmd).args(args).stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    if !out.status.success() {
        panic!("{cmd} {}: {}\n{}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr));
    }
    out
}

/// Runs a shell command line, panicking when it fails.
pub fn sh(script: &str) -> String {
    let out = run("sh", &["-c", script]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

static NS_SEQ: AtomicU32 = AtomicU32::new(0);

/// A network namespace, removed (with everything in it) when dropped.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates a namespace with a unique name built from `tag`, loopback up.
    pub fn new(tag: &str) -> Netns {
        let n = NS_SEQ.fetch_add(1, Ordering::SeqCst);
        let name = format!("rrq{}-{}-{}", std::process::id() % 100000, tag, n);
        run("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME args...`
    pub fn ip(&self, args: &[&str]) -> Output {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// A command to run inside the namespace.
    pub fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, prog]);
        c
    }

    /// Runs a shell command line inside the namespace, panicking on failure.
    pub fn sh(&self, script: &str) -> String {
        let out = run("ip", &["netns", "exec", &self.name, "sh", "-c", script]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a shell command line inside the namespace; true if it succeeded.
    pub fn try_sh(&self, script: &str) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.name, "sh", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // End whatever still runs inside (only processes in our own namespace).
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.name]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Joins two namespaces with a veth pair, `a_if` in `a` and `b_if` in `b`, both up.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
    run("ip", &["link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns", &b.name]);
    a.ip(&["link", "set", a_if, "up"]);
    b.ip(&["link", "set", b_if, "up"]);
}

/// Polls `cond` every 50 ms until it holds or `limit` passes.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A UDP port that was free a moment ago, on both stacks.
pub fn free_port() -> u16 {
    std::net::UdpSocket::bind("[::]:0").unwrap().local_addr().unwrap().port()
}

/// The count of one drop reason in the exit statistics line ("drops: a 1, b 2").
pub fn drop_count(log: &str, reason: &str) -> u64 {
    let line = log.lines().rev().find(|l| l.contains("drops:")).unwrap_or_else(|| panic!("no statistics in:\n{log}"));
    let drops = line.split("drops:").nth(1).unwrap();
    drops
        .split(',')
        .filter_map(|d| d.trim().rsplit_once(' '))
        .find(|(name, _)| *name == reason)
        .map_or(0, |(_, n)| n.parse().unwrap())
}

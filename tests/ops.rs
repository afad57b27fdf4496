//! rrqnet the way operators run it, end to end: `plugins/rrqnet-cron`
//! upholding plugs from conf.d files in network namespaces, the ifupdown
//! hook under real `ifup`/`ifdown`, the systemd unit under `systemd-analyze
//! verify`, the man pages (rendered again from their sources, warning-free),
//! key files that are private from their first instant, and the Debian
//! package built, installed, upgraded over itself and purged.
//!
//! `ip netns exec NS` binds `/etc/netns/NS/X` over `/etc/X`, so each test
//! namespace gets its own `/etc/rrqnet` and `/etc/network`; the bind needs
//! `/etc/X` to exist on the host. These tests therefore touch the host
//! (those mount points, `/run/rrqnet`, `/var/log/rrqnet`, dpkg's database):
//! they run one at a time under a process-wide lock, and a [`Trail`] puts
//! back what they made, also when they fail. Namespaces (and the daemons in
//! them) go with [`Netns`]'s drop. Underlay 192.0.2.0/24, overlay
//! 198.51.100.0/24, both inside the namespaces.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::netns_util::{self, pings};
use common::scratch::Scratch;
use common::{have_program, privileged, privileged_required, rrqnet_bin, wait_for, Netns, Proc};

/// One test at a time: they share host paths and dpkg.
static HOST: Mutex<()> = Mutex::new(());

fn host_lock() -> MutexGuard<'static, ()> {
    HOST.lock().unwrap_or_else(|e| e.into_inner())
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn plugin(name: &str) -> PathBuf {
    repo().join("plugins").join(name)
}

fn bin() -> String {
    rrqnet_bin().to_str().unwrap().to_owned()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What a test made on the host, removed in reverse order when dropped:
/// files, whole trees, and directories (only if empty: a directory that
/// existed before is never recorded).
#[derive(Default)]
struct Trail {
    items: Vec<Made>,
}

enum Made {
    File(PathBuf),
    Tree(PathBuf),
    Dir(PathBuf),
}

impl Trail {
    /// Makes `path` (and missing parents) a directory, recording each one made.
    fn dir(&mut self, path: &Path) {
        let mut missing = Vec::new();
        let mut p = path;
        while !p.exists() {
            missing.push(p.to_path_buf());
            p = p.parent().unwrap();
        }
        for d in missing.into_iter().rev() {
            fs::create_dir(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
            self.items.push(Made::Dir(d));
        }
    }

    /// Records a directory that something the test runs may create.
    fn dir_if_missing(&mut self, path: &str) {
        if !Path::new(path).exists() {
            self.items.push(Made::Dir(path.into()));
        }
    }

    fn file(&mut self, path: impl Into<PathBuf>) {
        self.items.push(Made::File(path.into()));
    }

    fn tree(&mut self, path: impl Into<PathBuf>) {
        self.items.push(Made::Tree(path.into()));
    }

    /// `/etc/netns/NS/sub`, which `ip netns exec NS` binds over `/etc/sub`
    /// (made as an empty mount point if the host has none).
    fn etc_for(&mut self, ns: &Netns, sub: &str) -> PathBuf {
        self.dir(Path::new(&format!("/etc/{sub}")));
        self.dir(Path::new("/etc/netns"));
        let top = PathBuf::from(format!("/etc/netns/{}", ns.name));
        if !top.exists() {
            fs::create_dir(&top).unwrap();
            self.tree(&top);
        }
        let d = top.join(sub);
        fs::create_dir_all(&d).unwrap();
        d
    }
}

impl Drop for Trail {
    fn drop(&mut self) {
        for m in self.items.drain(..).rev() {
            let _ = match m {
                Made::File(p) => fs::remove_file(p),
                Made::Tree(p) => fs::remove_dir_all(p),
                Made::Dir(p) => fs::remove_dir(p),
            };
        }
    }
}

/// Runs `plugins/rrqnet-cron ARGS` in `ns` with the test's rrqnet.
fn cron(ns: &Netns, args: &[&str]) -> Output {
    ns.cmd(plugin("rrqnet-cron").to_str().unwrap())
        .args(args)
        .env("RRQNET", bin())
        .stdin(Stdio::null())
        .output()
        .expect("rrqnet-cron")
}

fn describe(o: &Output) -> String {
    format!("status {}\nstdout: {}\nstderr: {}", o.status, text(&o.stdout), text(&o.stderr))
}

/// The pid a plug's lock file names.
fn lock_pid(path: &str) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The live rrqnet processes (the test's binary) in a namespace.
fn rrqnet_pids(ns: &Netns) -> Vec<u32> {
    let out = Command::new("ip").args(["netns", "pids", &ns.name]).output().unwrap();
    let me = fs::canonicalize(rrqnet_bin()).unwrap();
    text(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .filter(|p| fs::read_link(format!("/proc/{p}/exe")).map(|e| e == me).unwrap_or(false))
        .collect()
}

/// A process's command line, arguments joined by spaces.
fn cmdline(pid: u32) -> String {
    fs::read(format!("/proc/{pid}/cmdline")).map(|b| text(&b).replace('\0', " ").trim().to_owned()).unwrap_or_default()
}

/// True while `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')).unwrap_or(false),
        Err(_) => false,
    }
}

fn tap_exists(ns: &Netns, tap: &str) -> bool {
    ns.try_sh(&format!("test -e /sys/class/net/{tap}/tun_flags"))
}

/// Two namespaces on the underlay, and an `/etc/rrqnet` of its own for each.
struct CronPair {
    srv: Netns,
    cli: Netns,
    etc_srv: PathBuf,
    etc_cli: PathBuf,
}

impl CronPair {
    fn new(trail: &mut Trail, tag: &str) -> CronPair {
        let (srv, cli, _, _) = netns_util::pair("o", tag, "192.0.2.1/24", "192.0.2.2/24", false);
        let etc_srv = trail.etc_for(&srv, "rrqnet");
        let etc_cli = trail.etc_for(&cli, "rrqnet");
        for d in [&etc_srv, &etc_cli] {
            fs::create_dir_all(d.join("conf.d")).unwrap();
            fs::create_dir_all(d.join("keys")).unwrap();
            fs::set_permissions(d.join("keys"), fs::Permissions::from_mode(0o700)).unwrap();
        }
        CronPair { srv, cli, etc_srv, etc_cli }
    }
}

/// Records the host files a plug NAME makes.
fn plug_trail(trail: &mut Trail, name: &str) {
    trail.dir_if_missing("/run/rrqnet");
    trail.dir_if_missing("/var/log/rrqnet");
    trail.file(format!("/run/rrqnet/{name}.lock"));
    trail.file(format!("/var/log/rrqnet/{name}.log"));
}

/// rrqnet-cron brings up a keyed server and client from conf.d files and
/// they ping each other over their taps; a second run changes nothing;
/// after the daemon is killed by its pid --release frees its tap and the
/// next run restarts it; --stop stops both; --exec (systemd's way) holds
/// the same lock.
#[test]
fn cron_upholds_a_server_and_a_client() {
    if !privileged("cron_upholds_a_server_and_a_client") || !have_program("cron_upholds", "ping") {
        return;
    }
    let _host = host_lock();
    let mut trail = Trail::default();
    let p = CronPair::new(&mut trail, "cr");
    let id = std::process::id() % 100000;
    let (s_name, c_name) = (format!("ops{id}srv"), format!("ops{id}cli"));
    plug_trail(&mut trail, &s_name);
    plug_trail(&mut trail, &c_name);
    let (s_tap, c_tap) = (netns_util::ifname("t", "cr", 0), netns_util::ifname("t", "cr", 1));

    // One key for both ends, made the documented way.
    let key = p.etc_srv.join("keys/vpn.key");
    let out = Command::new(plugin("rrqnet-cron")).arg("--genkey").arg(&key).output().unwrap();
    assert!(out.status.success(), "--genkey: {}", describe(&out));
    fs::copy(&key, p.etc_cli.join("keys/vpn.key")).unwrap();
    fs::set_permissions(p.etc_cli.join("keys/vpn.key"), fs::Permissions::from_mode(0o600)).unwrap();

    fs::write(
        p.etc_srv.join(format!("conf.d/{s_name}.conf")),
        format!(
            "# the server\nTAP={s_tap}\nMAC=02:00:00:00:0a:01\nIP=198.51.100.1/24\nPORT=1400\n\
             VPN=( 192.0.2.0/24:1400=/etc/rrqnet/keys/vpn.key )\nVERBOSE=-vv\n"
        ),
    )
    .unwrap();
    fs::write(
        p.etc_cli.join(format!("conf.d/{c_name}.conf")),
        format!(
            "TAP={c_tap}\nIP=( 198.51.100.2/24 )\nPORT=1400\nOPTIONS=( -B 16 )\n\
             VPN=( 192.0.2.1:1400=/etc/rrqnet/keys/vpn.key )\nVERBOSE=-v\n"
        ),
    )
    .unwrap();

    let check = cron(&p.srv, &["--check", &s_name]);
    assert!(check.status.success(), "--check: {}", describe(&check));
    assert_eq!(
        text(&check.stdout).trim(),
        format!(
            "{} -vv --status-socket /run/rrqnet/{s_name}.sock -t {s_tap} 1400 192.0.2.0/24:1400=/etc/rrqnet/keys/vpn.key",
            bin()
        )
    );

    let s_lock = format!("/run/rrqnet/{s_name}.lock");
    let c_lock = format!("/run/rrqnet/{c_name}.lock");
    for (ns, name, lock) in [(&p.srv, &s_name, &s_lock), (&p.cli, &c_name, &c_lock)] {
        let out = cron(ns, &[name]);
        assert!(out.status.success(), "starting {name}: {}", describe(&out));
        let pid = lock_pid(lock).expect("a pid in the lock file");
        assert_eq!(
            text(&out.stdout).trim(),
            format!("rrqnet-cron: {name}: started rrqnet (pid {pid}), log /var/log/rrqnet/{name}.log")
        );
        assert_eq!(rrqnet_pids(ns), vec![pid], "one rrqnet, the one the lock names");
    }
    let logs = || {
        format!(
            "--- server ---\n{}\n--- client ---\n{}",
            fs::read_to_string(format!("/var/log/rrqnet/{s_name}.log")).unwrap_or_default(),
            fs::read_to_string(format!("/var/log/rrqnet/{c_name}.log")).unwrap_or_default()
        )
    };
    // The taps: persistent (IFF_PERSIST 0x0800), the MAC and address set.
    let flags = p.srv.sh(&format!("cat /sys/class/net/{s_tap}/tun_flags"));
    assert!(u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap() & 0x0800 != 0, "tun_flags {flags}");
    assert_eq!(p.srv.sh(&format!("cat /sys/class/net/{s_tap}/address")).trim(), "02:00:00:00:0a:01");
    assert!(pings(&p.cli, "198.51.100.1"), "the client cannot ping the server\n{}", logs());
    assert!(pings(&p.srv, "198.51.100.2"), "the server cannot ping the client\n{}", logs());
    let (s_pid, c_pid) = (lock_pid(&s_lock).unwrap(), lock_pid(&c_lock).unwrap());
    // Each plug serves its status at /run/rrqnet/NAME.sock.
    let status = Command::new(bin()).args(["--status", &format!("/run/rrqnet/{s_name}.sock")]).output().unwrap();
    assert!(status.status.success(), "rrqnet --status: {}", describe(&status));
    assert!(text(&status.stdout).contains("\nremote: 192.0.2.2:1400\n  kind: downlink"), "{}", describe(&status));

    // Cron again: both run, so nothing is said and nothing changes.
    for (ns, name) in [(&p.srv, &s_name), (&p.cli, &c_name)] {
        let out = cron(ns, &[name]);
        assert!(out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(), "{}", describe(&out));
    }
    assert_eq!(
        (rrqnet_pids(&p.srv), rrqnet_pids(&p.cli)),
        (vec![s_pid], vec![c_pid]),
        "a second run changed the daemons"
    );

    // --release leaves a running plug's tap alone.
    let out = cron(&p.srv, &["--release", &s_name]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(text(&out.stdout).contains(&format!("{s_name}: running")), "{}", describe(&out));

    // The server's daemon dies (SIGKILL, by its pid), so its tap keeps its
    // offloads: --release (systemd's ExecStopPost) switches them off; the
    // next run restarts the plug.
    common::run("kill", &["-KILL", &s_pid.to_string()]);
    assert!(wait_for(Duration::from_secs(5), || !alive(s_pid)), "{s_pid} survived SIGKILL");
    let out = cron(&p.srv, &["--release", &s_name]);
    assert!(out.status.success(), "--release: {}", describe(&out));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("rrqnet-cron: {s_name}: {s_tap} released (offloads off)"),
        "{}",
        describe(&out)
    );
    let out = cron(&p.srv, &[&s_name]);
    assert!(out.status.success(), "restart: {}", describe(&out));
    let s_pid2 = lock_pid(&s_lock).unwrap();
    assert_ne!(s_pid2, s_pid);
    assert!(text(&out.stdout).contains(&format!("started rrqnet (pid {s_pid2})")), "{}", describe(&out));
    assert_eq!(rrqnet_pids(&p.srv), vec![s_pid2]);
    assert!(pings(&p.cli, "198.51.100.1"), "no ping after the restart\n{}", logs());

    // --stop: SIGTERM, a clean exit, the tap and its address stay.
    for (ns, name, pid) in [(&p.srv, &s_name, s_pid2), (&p.cli, &c_name, c_pid)] {
        let out = cron(ns, &["--stop", name]);
        assert!(out.status.success(), "--stop: {}", describe(&out));
        assert_eq!(text(&out.stdout).trim(), format!("rrqnet-cron: {name}: stopped rrqnet (pid {pid})"));
        assert!(rrqnet_pids(ns).is_empty(), "{name} still runs after --stop");
    }
    assert!(logs().contains("terminated by a signal"), "{}", logs());
    assert!(p.srv.sh(&format!("ip -4 addr show {s_tap}")).contains("198.51.100.1/24"), "the tap lost its address");
    let out = cron(&p.srv, &["--stop", &s_name]);
    assert_eq!(text(&out.stdout).trim(), format!("rrqnet-cron: {s_name}: not running"), "{}", describe(&out));

    // --exec, as rrqnet@.service runs it: the process becomes the plug.
    let scratch = Scratch::unique("ops-exec");
    let exec_log = scratch.file("exec.log");
    let mut cmd = p.srv.cmd(plugin("rrqnet-cron").to_str().unwrap());
    cmd.args(["--exec", &s_name])
        .env("RRQNET", bin())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&exec_log).unwrap());
    let mut exec = Proc::spawn("rrqnet-cron --exec", &mut cmd);
    let exec_pid = exec.pid();
    // `ip netns exec` execs, and so does rrqnet-cron: one pid throughout.
    assert!(
        wait_for(Duration::from_secs(5), || lock_pid(&s_lock) == Some(exec_pid)
            && cmdline(exec_pid).starts_with(&bin())),
        "--exec did not become rrqnet: {}",
        fs::read_to_string(&exec_log).unwrap_or_default()
    );
    let out = cron(&p.cli, &[&c_name]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(pings(&p.cli, "198.51.100.1"), "no ping to the --exec plug\n{}", fs::read_to_string(&exec_log).unwrap());
    let out = cron(&p.srv, &[&s_name]);
    assert!(out.status.success() && out.stdout.is_empty(), "cron restarted a plug --exec runs: {}", describe(&out));
    let out = cron(&p.srv, &["--exec", &s_name]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(text(&out.stderr).contains(&format!("already running (pid {exec_pid})")), "{}", describe(&out));
    assert_eq!(rrqnet_pids(&p.srv), vec![exec_pid]);
    let out = cron(&p.srv, &["--stop", &s_name]);
    assert!(out.status.success(), "{}", describe(&out));
    let st = exec.wait_timeout(Duration::from_secs(5)).expect("--exec plug did not end");
    assert!(st.success(), "the --exec plug exited with {st}");
    let out = cron(&p.cli, &["--stop", &c_name]);
    assert!(out.status.success(), "{}", describe(&out));
}

/// A bad conf file is refused with one line naming the file (and its line),
/// with status 2, and nothing is started or changed for it.
#[test]
fn cron_refuses_bad_conf_files_with_one_line() {
    if !privileged("cron_refuses_bad_conf_files_with_one_line") {
        return;
    }
    let _host = host_lock();
    let mut trail = Trail::default();
    let ns = Netns::new("badconf");
    let etc = trail.etc_for(&ns, "rrqnet");
    fs::create_dir_all(etc.join("conf.d")).unwrap();
    fs::create_dir_all(etc.join("keys")).unwrap();
    let tap = netns_util::ifname("t", "bad", 0);
    let id = std::process::id() % 100000;
    let head = format!("TAP={tap}\nPORT=1400\n");
    let cases: Vec<(String, &str)> = vec![
        (format!("{head}VPN=( 192.0.2.1:1400\n"), "line 3: unexpected EOF"),
        (format!("TAP={tap}\nif then\nPORT=1400\n"), "line 2: syntax error near unexpected token"),
        (format!("{head}VERBOSE=-vvvv\n"), "unknown VERBOSE value '-vvvv' (use empty, -v, -vv or -vvv)"),
        (format!("{head}VERBOSE=yes\n"), "unknown VERBOSE value 'yes'"),
        (format!("{head}frobnicate --now\n"), "line 3: frobnicate: command not found"),
        (format!("{head}exit 0\n"), "the file ended the shell reading it"),
        (format!("{head}false\n"), "its last command failed (status 1)"),
        (format!("TAP={tap}\nPORT=99999\n"), "PORT='99999' is not a UDP port (1-65535)"),
        (format!("TAP={tap}\nVPN=( 192.0.2.1:1400 )\n"), "PORT is missing"),
        (format!("{head}MAC=03:00:00:00:00:01\n"), "is a multicast address"),
        (format!("{head}MAC=nope\n"), "MAC='nope' is not a MAC address"),
        (format!("{head}IP=198.51.100.1/33\n"), "IP='198.51.100.1/33' is not an IPv4 or IPv6 address"),
        (format!("{head}OPTIONS=( -t other )\n"), "OPTIONS: '-t' is not one of"),
        (format!("{head}OPTIONS=( -B 0 )\n"), "OPTIONS: -B needs a number (1-1024)"),
        (format!("{head}VPN=\"192.0.2.1:1400 192.0.2.2:1400\"\n"), "is not one remote declaration"),
        (format!("{head}VPN=( 192.0.2.1:1400=keys/k )\n"), "key file 'keys/k' must be an absolute path"),
        ("TAP=-\nPORT=1400\n".to_owned(), "TAP=- (stdin/stdout) cannot be upheld"),
        ("TAP=this-name-is-too-long\nPORT=1400\n".to_owned(), "is not an interface name"),
        ("IP=198.51.100.1/24\nPORT=1400\n".to_owned(), "IP is set but TAP is empty"),
    ];
    for (i, (content, want)) in cases.iter().enumerate() {
        let name = format!("ops{id}bad{i}");
        plug_trail(&mut trail, &name);
        let file = format!("/etc/rrqnet/conf.d/{name}.conf");
        fs::write(etc.join(format!("conf.d/{name}.conf")), content).unwrap();
        for args in [vec![name.as_str()], vec!["--check", &name], vec!["--exec", &name]] {
            let out = cron(&ns, &args);
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?} on\n{content}\n{}", describe(&out));
            assert_eq!(err.lines().count(), 1, "not one line for\n{content}\n{err}");
            assert!(err.starts_with(&format!("rrqnet-cron: {file}: ")), "the line does not name the file: {err}");
            assert!(err.contains(want), "{args:?} on\n{content}\nwanted {want:?}, got: {err}");
            assert!(out.stdout.is_empty(), "{}", describe(&out));
        }
        assert!(!Path::new(&format!("/run/rrqnet/{name}.lock")).exists(), "a refused plug took its lock");
        assert!(!Path::new(&format!("/var/log/rrqnet/{name}.log")).exists(), "a refused plug has a log");
    }
    assert!(!tap_exists(&ns, &tap), "a refused plug made its tap");
    assert!(rrqnet_pids(&ns).is_empty(), "a refused plug runs");

    // Key files are checked as rrqnet checks them: status 1, nothing started.
    let name = format!("ops{id}nokey");
    plug_trail(&mut trail, &name);
    fs::write(
        etc.join(format!("conf.d/{name}.conf")),
        format!("{head}VPN=( 192.0.2.0/24:1400=/etc/rrqnet/keys/none.key )\n"),
    )
    .unwrap();
    let out = cron(&ns, &[&name]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(
        text(&out.stderr).trim(),
        format!("rrqnet-cron: /etc/rrqnet/conf.d/{name}.conf: key file /etc/rrqnet/keys/none.key: no such file")
    );
    fs::write(etc.join("keys/none.key"), [7u8; 31]).unwrap();
    let out = cron(&ns, &["--check", &name]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(text(&out.stderr).contains("31 bytes, fewer than the 32 rrqnet needs"), "{}", describe(&out));
    assert!(!tap_exists(&ns, &tap) && rrqnet_pids(&ns).is_empty(), "a plug with a bad key started");

    // The packaged examples pass --check as they are (given their key),
    // a readable key with a warning.
    fs::write(etc.join("keys/vpn0.key"), [7u8; 64]).unwrap();
    fs::set_permissions(etc.join("keys/vpn0.key"), fs::Permissions::from_mode(0o644)).unwrap();
    for (example, want) in [
        ("server", " -t vpn0 1400 198.51.100.0/24:1400=/etc/rrqnet/keys/vpn0.key"),
        ("client", " -t vpn0 1400 192.0.2.1:1400=/etc/rrqnet/keys/vpn0.key"),
    ] {
        let name = format!("ops{id}{example}");
        let want = format!(" -v --status-socket /run/rrqnet/{name}.sock{want}");
        fs::copy(plugin(&format!("conf.d/{example}.conf.example")), etc.join(format!("conf.d/{name}.conf"))).unwrap();
        let out = cron(&ns, &["--check", &name]);
        assert!(out.status.success(), "{example}.conf.example: {}", describe(&out));
        assert_eq!(text(&out.stdout).trim(), format!("{}{want}", bin()));
        assert!(text(&out.stderr).contains("is readable by group or others (mode 644)"), "{}", describe(&out));
    }
}

/// rrqnet-cron --genkey: mode 0600 whatever the caller's umask, random
/// content, never over an existing file or through a symbolic link.
#[test]
fn genkey_makes_private_keys_and_never_overwrites() {
    let dir = Scratch::unique("ops-genkey");
    let genkey = |path: &Path, extra: &[&str]| {
        // umask 000: the script's own umask must make the file private.
        Command::new("sh")
            .arg("-c")
            .arg("umask 000; exec \"$@\"")
            .arg("sh")
            .arg(plugin("rrqnet-cron"))
            .arg("--genkey")
            .arg(path)
            .args(extra)
            .output()
            .unwrap()
    };
    let key = dir.file("a.key");
    let out = genkey(&key, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("rrqnet-cron: wrote 1048576 random bytes to {} (mode 600)", key.display())
    );
    let meta = fs::metadata(&key).unwrap();
    assert_eq!((meta.len(), meta.permissions().mode() & 0o7777), (1 << 20, 0o600));
    let content = fs::read(&key).unwrap();
    let mut seen = [false; 256];
    content.iter().for_each(|&b| seen[b as usize] = true);
    assert_eq!(seen.iter().filter(|&&s| s).count(), 256, "1 MiB of random bytes has every byte value");

    let out = genkey(&key, &["64"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(text(&out.stderr).contains("exists; rrqnet-cron never overwrites a key file"), "{}", describe(&out));
    assert_eq!(fs::read(&key).unwrap(), content, "an existing key changed");

    let target = dir.file("target");
    let link = dir.file("link.key");
    symlink(&target, &link).unwrap();
    let out = genkey(&link, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(!target.exists(), "--genkey wrote through a symbolic link");

    let small = dir.file("small.key");
    let out = genkey(&small, &["64"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(fs::metadata(&small).unwrap().len(), 64);
    for bad in ["31", "many"] {
        let out = genkey(&dir.file("bad.key"), &[bad]);
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        assert!(!dir.file("bad.key").exists());
    }
    let out = genkey(&dir.file("no/such/dir.key"), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(text(&out.stderr).lines().count(), 1, "{}", describe(&out));
}

/// rrqnet-cron's usage: no plug named is a usage error.
#[test]
fn cron_usage_and_help() {
    let run = |args: &[&str]| Command::new(plugin("rrqnet-cron")).args(args).output().unwrap();
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("Usage:\n  rrqnet-cron NAME..."), "{}", describe(&out));
    let out = run(&["--help"]);
    assert!(out.status.success() && text(&out.stdout).contains("--genkey PATH [BYTES]"), "{}", describe(&out));
    for bad in [&["--frob"][..], &["--exec"], &["--exec", "a", "b"], &["--stop"], &["--release"], &["../etc"]] {
        assert_eq!(run(bad).status.code(), Some(2), "{bad:?}");
    }
}

/// The hook leaves stanzas without rrqnet_port alone, and refuses a bad
/// rrqnet_port with one line, whatever the phase.
#[test]
fn ifupdown_hook_ignores_other_stanzas_and_refuses_bad_ports() {
    let hook = |env: &[(&str, &str)]| {
        Command::new(plugin("ifupdown.sh"))
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    for phase in ["pre-up", "post-up", "pre-down", "post-down"] {
        let mode = if phase.ends_with("up") { "start" } else { "stop" };
        let out = hook(&[("IFACE", "eth9"), ("MODE", mode), ("PHASE", phase), ("IF_ADDRESS", "192.0.2.1/24")]);
        assert!(out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(), "{phase}: {}", describe(&out));
        for bad in ["notap", "0", "1400 1401", "notap x", "tap 1400"] {
            let out = hook(&[("IFACE", "eth9"), ("MODE", mode), ("PHASE", phase), ("IF_RRQNET_PORT", bad)]);
            assert_eq!(out.status.code(), Some(1), "{bad}: {}", describe(&out));
            assert_eq!(
                text(&out.stderr).trim(),
                format!(
                    "rrqnet-ifupdown: eth9: rrqnet_port: expected '[notap] PORT' with PORT in 1-65535, got '{bad}'"
                )
            );
        }
    }
}

/// Bad option values stop `ifup` with one line before anything is made.
#[test]
fn ifupdown_hook_refuses_bad_option_values() {
    for (option, value, want) in [
        ("IF_RRQNET_NICE", "25", "rrqnet_nice: '25' is not a nice level (-20 to 19)"),
        ("IF_RRQNET_NICE", "x", "rrqnet_nice: 'x' is not a nice level (-20 to 19)"),
        ("IF_RRQNET_LOG", "/var/log/x.log", "rrqnet_log: expected 'LEVEL PATH' with LEVEL -, -v, -vv or -vvv"),
        ("IF_RRQNET_LOG", "-vvvv /var/log/x.log", "rrqnet_log: expected 'LEVEL PATH'"),
        ("IF_RRQNET_LOG", "-v log/x.log", "rrqnet_log: expected 'LEVEL PATH'"),
        (
            "IF_RRQNET_OPTIONS",
            "-B 8 -t tap9",
            "rrqnet_options: '-t' is not one of -4, -B n, -T n, -m group:port[=keyfile]",
        ),
        ("IF_RRQNET_BINARY", "/nonexistent/rrqnet", "/nonexistent/rrqnet is not an executable"),
    ] {
        let out = Command::new(plugin("ifupdown.sh"))
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .envs([("IFACE", "eth9"), ("MODE", "start"), ("PHASE", "post-up"), ("IF_RRQNET_PORT", "1400")])
            .env(option, value)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{option}={value}: {}", describe(&out));
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{option}={value}: {err}");
        assert!(err.starts_with("rrqnet-ifupdown: eth9: ") && err.contains(want), "{option}={value}: {err}");
    }
}

/// Real `ifup -i FILE` / `ifdown -i FILE` in two namespaces: a tap stanza
/// each (one logged, one niced with an -i list), a notap stanza (a pure
/// switch on the underlay interface) and a stanza without rrqnet. Up, they
/// ping over the tunnel; down, no rrqnet, no tap and no lock is left.
#[test]
fn ifupdown_hook_brings_a_tunnel_up_and_down() {
    if !privileged("ifupdown_hook_brings_a_tunnel_up_and_down")
        || !have_program("ifupdown_hook", "ifup")
        || !have_program("ifupdown_hook", "ping")
    {
        return;
    }
    let _host = host_lock();
    let mut trail = Trail::default();
    trail.dir_if_missing("/run/rrqnet");
    let (a, b, veth_a, veth_b) = netns_util::pair("o", "if", "192.0.2.1/24", "192.0.2.2/24", false);
    for ns in [&a, &b] {
        let net = trail.etc_for(ns, "network");
        for phase in ["if-pre-up.d", "if-up.d", "if-down.d", "if-post-down.d"] {
            fs::create_dir_all(net.join(phase)).unwrap();
            symlink(plugin("ifupdown.sh"), net.join(phase).join("rrqnet")).unwrap();
        }
    }
    let dir = Scratch::unique("ops-ifupdown");
    let (tap_a, tap_b) = (netns_util::ifname("t", "if", 0), netns_util::ifname("t", "if", 1));
    // The hook's locks, named after each namespace's inode (also removed
    // if the test fails).
    let lock = |ns: &Netns, iface: &str| {
        let inode = fs::metadata(format!("/run/netns/{}", ns.name)).unwrap().ino();
        format!("/run/rrqnet/ifupdown.{iface}.net{inode}.lock")
    };
    for (ns, iface) in [(&a, &tap_a), (&a, &veth_a), (&b, &tap_b), (&b, &veth_b)] {
        trail.file(lock(ns, iface));
    }
    let (log_a, log_n) = (dir.file("a.log"), dir.file("notap.log"));
    let bin = bin();
    let file_a = dir.write(
        "a.interfaces",
        format!(
            "iface {tap_a} inet static\n    address 198.51.100.1/24\n    rrqnet_port 1400\n    rrqnet_remote 192.0.2.2:1400\n\
             \x20   rrqnet_log -vv {}\n    rrqnet_binary {bin}\n\n\
             iface {veth_a} inet manual\n    rrqnet_port notap 1500\n    rrqnet_remote 192.0.2.2:1500\n\
             \x20   rrqnet_remote 203.0.113.0/24:1500\n    rrqnet_options -B 8\n    rrqnet_log -v {}\n    rrqnet_binary {bin}\n",
            log_a.display(),
            log_n.display()
        )
        .as_bytes(),
        0o644,
    );
    let file_b = dir.write(
        "b.interfaces",
        format!(
            "iface {tap_b} inet static\n    address 198.51.100.2/24\n    rrqnet_port 1400\n\
             \x20   rrqnet_remote 192.0.2.0/24:1400 -i 02:00:00:00:00:99\n    rrqnet_nice 3\n    rrqnet_binary {bin}\n\n\
             iface {veth_b} inet manual\n"
        )
        .as_bytes(),
        0o644,
    );
    let ifupdown = |ns: &Netns, prog: &str, file: &str, state: &str, iface: &str| {
        let state = dir.file(state);
        fs::create_dir_all(&state).unwrap();
        let out = ns
            .cmd(prog)
            .args(["-i", file, "--state-dir", state.to_str().unwrap(), iface])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{prog} {iface} in {}: {}", ns.name, describe(&out));
    };
    let log = || fs::read_to_string(&log_a).unwrap_or_default();

    ifupdown(&a, "ifup", &file_a, "sa", &tap_a);
    ifupdown(&b, "ifup", &file_b, "sb", &tap_b);
    let (pa, pb) = (rrqnet_pids(&a), rrqnet_pids(&b));
    assert_eq!((pa.len(), pb.len()), (1, 1), "one rrqnet per tap stanza");
    assert_eq!(lock_pid(&lock(&a, &tap_a)), Some(pa[0]), "the lock names the plug");
    assert_eq!(lock_pid(&lock(&b, &tap_b)), Some(pb[0]), "the lock names the plug");
    assert_eq!(cmdline(pa[0]), format!("{bin} -vv -t {tap_a} 1400 192.0.2.2:1400"));
    assert_eq!(cmdline(pb[0]), format!("{bin} -t {tap_b} 1400 192.0.2.0/24:1400 -i 02:00:00:00:00:99"));
    let stat = fs::read_to_string(format!("/proc/{}/stat", pb[0])).unwrap();
    let nice: i32 = stat.rsplit_once(") ").unwrap().1.split(' ').nth(16).unwrap().parse().unwrap();
    assert_eq!(nice, 3, "rrqnet_nice 3");
    assert!(pings(&a, "198.51.100.2"), "no ping a -> b\n{}", log());
    assert!(pings(&b, "198.51.100.1"), "no ping b -> a\n{}", log());

    // notap: a pure switch that follows the underlay interface.
    ifupdown(&a, "ifup", &file_a, "sa", &veth_a);
    let pn: Vec<u32> = rrqnet_pids(&a).into_iter().filter(|p| *p != pa[0]).collect();
    assert_eq!(pn.len(), 1, "one more rrqnet for the notap stanza");
    assert_eq!(cmdline(pn[0]), format!("{bin} -v -B 8 1500 192.0.2.2:1500 203.0.113.0/24:1500"));
    // A stanza without rrqnet_port: nothing started or made.
    ifupdown(&b, "ifup", &file_b, "sb", &veth_b);
    assert_eq!(rrqnet_pids(&b), pb, "a stanza without rrqnet_port started something");

    ifupdown(&a, "ifdown", &file_a, "sa", &veth_a);
    assert!(!alive(pn[0]), "ifdown left the notap rrqnet running");
    assert!(a.try_sh(&format!("test -e /sys/class/net/{veth_a}")), "notap removed the stanza's interface");
    assert!(fs::read_to_string(&log_n).unwrap().contains("no local end: switching among remotes only"));
    ifupdown(&b, "ifdown", &file_b, "sb", &veth_b);
    ifupdown(&a, "ifdown", &file_a, "sa", &tap_a);
    ifupdown(&b, "ifdown", &file_b, "sb", &tap_b);
    assert!(rrqnet_pids(&a).is_empty() && rrqnet_pids(&b).is_empty(), "ifdown left an rrqnet running");
    assert!(!tap_exists(&a, &tap_a) && !tap_exists(&b, &tap_b), "ifdown left a tap");
    assert!(log().contains("terminated by a signal"), "{}", log());
    let ours = |f: &String| [&tap_a, &tap_b, &veth_a, &veth_b].iter().any(|i| f.starts_with(&format!("ifupdown.{i}.")));
    let left: Vec<String> = fs::read_dir("/run/rrqnet")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).filter(ours).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "locks left behind: {left:?}");
}

/// The unit's directives, and `systemd-analyze verify` on it (ExecStart
/// pointed at this checkout's rrqnet-cron, the man pages from doc/).
#[test]
fn systemd_unit_passes_verify() {
    let unit = fs::read_to_string(plugin("rrqnet@.service")).unwrap();
    let directives: Vec<&str> = unit.lines().filter(|l| !l.starts_with('#') && l.contains('=')).collect();
    for want in [
        "Type=notify",
        "ExecStart=/usr/sbin/rrqnet-cron --exec %i",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",
        "Documentation=man:rrqnet(8) man:rrqnet-cron(8)",
        "RuntimeDirectory=rrqnet",
        "RuntimeDirectoryPreserve=yes",
        "DeviceAllow=/dev/net/tun rw",
        "DevicePolicy=closed",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_BIND_SERVICE",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "SystemCallFilter=@system-service",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
    ] {
        assert!(directives.contains(&want), "the unit lacks {want}");
    }
    assert!(directives.iter().any(|d| d.starts_with("WatchdogSec=")), "the unit has no WatchdogSec");
    if !have_program("systemd_unit_passes_verify", "systemd-analyze") {
        return;
    }
    let dir = Scratch::unique("ops-unit");
    let unit_path = dir.write(
        "rrqnet@.service",
        unit.replace("/usr/sbin/rrqnet-cron", plugin("rrqnet-cron").to_str().unwrap()).as_bytes(),
        0o644,
    );
    let man8 = dir.file("man/man8");
    fs::create_dir_all(&man8).unwrap();
    for page in ["rrqnet.8", "rrqnet-cron.8"] {
        fs::copy(repo().join("doc").join(page), man8.join(page)).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", &unit_path])
        .env("MANPATH", dir.file("man"))
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .output()
        .unwrap();
    assert!(
        out.status.success() && !text(&out.stderr).contains("rrqnet"),
        "systemd-analyze verify: {}",
        describe(&out)
    );
}

/// The man pages are rendered from doc/*.8.adoc (doc/build, asciidoctor)
/// exactly as kept, groff finds nothing to warn about in them, `man -l`
/// renders them silently, and they cover what they must.
#[test]
fn man_pages_are_current_and_render_without_warnings() {
    let doc = repo().join("doc");
    let pages = ["rrqnet.8", "rrqnet-cron.8", "rrqnet-ifupdown.8"];
    for prog in ["groff", "man"] {
        if !have_program("man_pages", prog) {
            return;
        }
    }
    for page in pages {
        let path = doc.join(page);
        let out = Command::new("groff").args(["-t", "-ww", "-z", "-man"]).arg(&path).output().unwrap();
        assert!(out.status.success() && out.stderr.is_empty(), "groff -ww {page}: {}", describe(&out));
        let out = Command::new("man").args(["--warnings=w", "-l"]).arg(&path).env("MANWIDTH", "80").output().unwrap();
        assert!(out.status.success() && out.stderr.is_empty(), "man -l {page}: {}", describe(&out));
        let shown = text(&out.stdout);
        for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "SEE ALSO"] {
            assert!(shown.contains(&format!("\n{section}\n")), "{page} has no {section}");
        }
    }
    let show = |page: &str| {
        let out = Command::new("man").arg("-l").arg(doc.join(page)).env("MANWIDTH", "200").output().unwrap();
        text(&out.stdout)
    };
    let main = show("rrqnet.8");
    for want in [
        "--status-socket path",
        "rrqnet --status path [--json|--prometheus]",
        "SIGUSR1, SIGUSR2",
        "SIGHUP",
        "SIGTERM, SIGINT",
        "EXIT STATUS",
        "TRANSPORT ENCRYPTION",
        "1500 - 20 - 8 - 50 - 14 = 1408",
        "1500 - 40 - 8 - 50 - 14 = 1388",
        "rrqnet-cron --genkey",
        "/dev/net/tun",
        "READY=1",
    ] {
        assert!(main.contains(want), "rrqnet(8) does not say {want:?}");
    }
    let cron = show("rrqnet-cron.8");
    for want in [
        "--exec NAME",
        "--stop NAME",
        "--check NAME",
        "--genkey PATH [BYTES]",
        "/etc/cron.d/rrqnet",
        "VERBOSE",
        "/32 or /128",
    ] {
        assert!(cron.contains(want), "rrqnet-cron(8) does not say {want:?}");
    }
    let hook = show("rrqnet-ifupdown.8");
    for want in ["rrqnet_port [notap] PORT", "rrqnet_remote", "rrqnet_log LEVEL PATH", "rrqnet_nice", "rrqnet_bridge"] {
        assert!(hook.contains(want), "rrqnet-ifupdown(8) does not say {want:?}");
    }
    if !have_program("man_pages", "asciidoctor") {
        return;
    }
    let out_dir = Scratch::unique("ops-man");
    let out = Command::new(doc.join("build")).arg(&out_dir.dir).output().unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "doc/build: {}", describe(&out));
    for page in pages {
        let kept = fs::read_to_string(doc.join(page)).unwrap();
        let fresh = fs::read_to_string(out_dir.file(page)).unwrap();
        assert!(kept == fresh, "doc/{page} is stale: run doc/build and commit it");
    }
}

/// bash completion: options, plug names from conf.d, taps for -t, files
/// after a declaration's '='.
#[test]
fn bash_completion_completes_options_and_plugs() {
    let lib = "/usr/share/bash-completion/bash_completion";
    if !Path::new(lib).exists() {
        if privileged_required() {
            panic!("bash_completion: {lib} is missing (package bash-completion)");
        }
        eprintln!("SKIPPED bash_completion: {lib} is missing");
        return;
    }
    let dir = Scratch::unique("ops-compl");
    dir.write("vpn.key", b"k", 0o600);
    let complete = |line: &str| {
        let script = format!(
            "source {lib}; source {}; COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}; \
             read -r -a COMP_WORDS <<< \"$COMP_LINE\"; [[ $COMP_LINE == *' ' ]] && COMP_WORDS+=(''); \
             COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); cd {}; \
             _${{COMP_WORDS[0]//-/_}}; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            plugin("rrqnet.bash-completion").display(),
            dir.dir.display()
        );
        let out = Command::new("bash").arg("-c").arg(&script).output().unwrap();
        assert!(out.status.success(), "{line}: {}", describe(&out));
        let mut words: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
        words.sort();
        words
    };
    assert_eq!(complete("rrqnet-cron --st"), ["--stop"]);
    assert_eq!(complete("rrqnet-cron --ge"), ["--genkey"]);
    assert_eq!(complete("rrqnet --sta"), ["--status", "--status-socket"]);
    assert!(complete("rrqnet -v -t ").contains(&"-".to_owned()));
    assert_eq!(complete("rrqnet 1400 192.0.2.1:1400=vp"), ["vpn.key"]);
}

/// The Debian package: `cargo deb` packages this build's rrqnet (with
/// --no-build, so the test does not rebuild in release), its contents and
/// control files are checked, and `dpkg -i`, an upgrade over itself and
/// `dpkg --purge` work on this machine; the test removes what is left.
#[test]
fn debian_package_installs_upgrades_and_purges() {
    if !privileged("debian_package_installs_upgrades_and_purges") {
        return;
    }
    for prog in ["cargo-deb", "dpkg", "dpkg-deb"] {
        if !have_program("debian_package", prog) {
            return;
        }
    }
    let _host = host_lock();
    let installed = Command::new("dpkg-query").args(["-W", "-f=${Status}", "rrqnet"]).output().unwrap();
    if text(&installed.stdout).contains("installed") || text(&installed.stdout).contains("config-files") {
        let why = "the rrqnet package is on this machine already; this test installs and purges it";
        if privileged_required() {
            panic!("debian_package: {why}");
        }
        eprintln!("SKIPPED debian_package: {why}");
        return;
    }
    let work = Scratch::unique("ops-deb");
    fs::create_dir_all(work.file("release")).unwrap();
    fs::copy(rrqnet_bin(), work.file("release/rrqnet")).unwrap();
    let deb = work.file("rrqnet.deb");
    let out = Command::new("cargo")
        .args(["deb", "--no-build", "--fast", "--output"])
        .arg(&deb)
        .current_dir(repo())
        .env("CARGO_TARGET_DIR", &work.dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo deb: {}", describe(&out));

    // Contents: path, mode.
    let listing = text(&common::run("dpkg-deb", &["-c", deb.to_str().unwrap()]).stdout);
    let entries: Vec<(String, String)> = listing
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[5].trim_start_matches('.').to_owned(), f[0].to_owned())
        })
        .collect();
    let mode = |path: &str| entries.iter().find(|(p, _)| p == path).map(|(_, m)| m.as_str());
    for (path, want) in [
        ("/usr/sbin/rrqnet", "-rwxr-xr-x"),
        ("/usr/sbin/rrqnet-cron", "-rwxr-xr-x"),
        ("/etc/rrqnet/ifupdown.sh", "-rwxr-xr-x"),
        ("/lib/systemd/system/rrqnet@.service", "-rw-r--r--"),
        ("/etc/rrqnet/conf.d/server.conf.example", "-rw-r--r--"),
        ("/etc/rrqnet/conf.d/client.conf.example", "-rw-r--r--"),
        ("/etc/cron.d/rrqnet", "-rw-r--r--"),
        ("/etc/logrotate.d/rrqnet", "-rw-r--r--"),
        ("/usr/share/bash-completion/completions/rrqnet", "-rw-r--r--"),
        ("/usr/share/bash-completion/completions/rrqnet-cron", "-rw-r--r--"),
        ("/usr/share/man/man8/rrqnet.8.gz", "-rw-r--r--"),
        ("/usr/share/man/man8/rrqnet-cron.8.gz", "-rw-r--r--"),
        ("/usr/share/man/man8/rrqnet-ifupdown.8.gz", "-rw-r--r--"),
        ("/usr/share/doc/rrqnet/copyright", "-rw-r--r--"),
    ] {
        assert_eq!(mode(path), Some(want), "{path} in the package:\n{listing}");
    }
    let ctrl = work.file("control");
    common::run("dpkg-deb", &["-e", deb.to_str().unwrap(), ctrl.to_str().unwrap()]);
    let conffiles = fs::read_to_string(ctrl.join("conffiles")).unwrap();
    let mut conffiles: Vec<&str> = conffiles.lines().collect();
    conffiles.sort();
    assert_eq!(
        conffiles,
        [
            "/etc/cron.d/rrqnet",
            "/etc/logrotate.d/rrqnet",
            "/etc/rrqnet/conf.d/client.conf.example",
            "/etc/rrqnet/conf.d/server.conf.example",
            "/etc/rrqnet/ifupdown.sh",
        ]
    );
    let control = fs::read_to_string(ctrl.join("control")).unwrap();
    for want in ["Package: rrqnet\n", "Section: net\n", "Depends: iproute2, libc6"] {
        assert!(control.contains(want), "control lacks {want:?}:\n{control}");
    }
    for script in ["postinst", "prerm", "postrm"] {
        assert!(ctrl.join(script).exists(), "no {script}");
    }

    // Install; the guard purges it if the test fails half-way.
    struct Installed;
    impl Drop for Installed {
        fn drop(&mut self) {
            let _ = Command::new("dpkg").args(["--purge", "rrqnet"]).output();
            let _ = fs::remove_file("/etc/rrqnet/keys/ops-test.key");
            for d in ["/etc/rrqnet/keys", "/etc/rrqnet/conf.d", "/etc/rrqnet"] {
                let _ = fs::remove_dir(d);
            }
        }
    }
    let dpkg = |args: &[&str]| {
        let out = Command::new("dpkg")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "dpkg {args:?}: {}", describe(&out));
        out
    };
    let had_network = Path::new("/etc/network").exists();
    let _installed = Installed;
    dpkg(&["-i", deb.to_str().unwrap()]);
    let out = common::run("/usr/sbin/rrqnet", &["--version"]);
    assert!(text(&out.stdout).starts_with("rrqnet "), "{}", text(&out.stdout));
    common::run("/usr/sbin/rrqnet-cron", &["--help"]);
    let keys = fs::metadata("/etc/rrqnet/keys").expect("/etc/rrqnet/keys");
    assert!(keys.is_dir() && keys.permissions().mode() & 0o7777 == 0o700, "/etc/rrqnet/keys is not mode 0700");
    for phase in ["pre-up", "up", "down", "post-down"] {
        let link = format!("/etc/network/if-{phase}.d/rrqnet");
        assert_eq!(
            fs::read_link(&link).unwrap_or_else(|e| panic!("{link}: {e}")),
            Path::new("../../rrqnet/ifupdown.sh")
        );
        assert!(fs::metadata(&link).unwrap().permissions().mode() & 0o111 != 0, "{link} is not executable");
    }
    if Path::new("/usr/bin/systemd-analyze").exists() {
        // The installed unit, its ExecStart installed; the man pages were
        // checked above (an image may exclude /usr/share/man from dpkg).
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no", "/lib/systemd/system/rrqnet@.service"])
            .output()
            .unwrap();
        assert!(out.status.success() && !text(&out.stderr).contains("rrqnet"), "verify: {}", describe(&out));
    }

    // A key the administrator made, and an edited conffile, survive an
    // upgrade over the same version.
    common::run("/usr/sbin/rrqnet-cron", &["--genkey", "/etc/rrqnet/keys/ops-test.key", "64"]);
    let mut cron_d = fs::read_to_string("/etc/cron.d/rrqnet").unwrap();
    cron_d.push_str("# edited by tests/ops.rs\n");
    fs::write("/etc/cron.d/rrqnet", &cron_d).unwrap();
    dpkg(&["-i", deb.to_str().unwrap()]);
    assert_eq!(fs::read_to_string("/etc/cron.d/rrqnet").unwrap(), cron_d, "the upgrade replaced an edited conffile");
    assert!(Path::new("/etc/rrqnet/keys/ops-test.key").exists());
    assert!(Path::new("/etc/network/if-up.d/rrqnet").exists(), "the upgrade lost the hook's links");

    // Purge: everything goes but the key (and its directory), said so.
    let out = dpkg(&["--purge", "rrqnet"]);
    assert!(text(&out.stderr).contains("kept /etc/rrqnet/keys: it still holds key files"), "{}", describe(&out));
    assert!(Path::new("/etc/rrqnet/keys/ops-test.key").exists(), "purge deleted a key file");
    for gone in [
        "/usr/sbin/rrqnet",
        "/usr/sbin/rrqnet-cron",
        "/etc/rrqnet/ifupdown.sh",
        "/etc/rrqnet/conf.d",
        "/etc/cron.d/rrqnet",
        "/lib/systemd/system/rrqnet@.service",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} is left after purge");
    }
    for phase in ["pre-up", "up", "down", "post-down"] {
        let link = format!("/etc/network/if-{phase}.d/rrqnet");
        assert!(fs::symlink_metadata(&link).is_err(), "{link} is left after purge");
    }
    assert_eq!(Path::new("/etc/network").exists(), had_network, "purge did not put /etc/network back");
    let status = Command::new("dpkg-query").args(["-W", "-f=${Status}", "rrqnet"]).output().unwrap();
    assert!(!text(&status.stdout).contains("installed"), "{}", describe(&status));
}

/// The shell scripts this repository installs pass shellcheck.
#[test]
fn installed_scripts_pass_shellcheck() {
    if !have_program("installed_scripts_pass_shellcheck", "shellcheck") {
        return;
    }
    for (shell, file) in [
        ("bash", "plugins/rrqnet-cron"),
        ("bash", "plugins/ifupdown.sh"),
        ("bash", "plugins/rrqnet.bash-completion"),
        ("sh", "plugins/debian/postinst"),
        ("sh", "plugins/debian/prerm"),
        ("sh", "plugins/debian/postrm"),
        ("sh", "doc/build"),
    ] {
        let out = Command::new("shellcheck").args(["-s", shell]).arg(repo().join(file)).output().unwrap();
        assert!(out.status.success(), "shellcheck {file}:\n{}", text(&out.stdout));
    }
}

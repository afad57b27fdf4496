//! Interop with real VDE: `dpipe rrqnet -t - PORT REMOTE = vde_plug SWITCH`
//! carries frames between a vde_switch and a UDP peer (SPEC 4 and 7).

mod common;

use std::io::{Read, Write};
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::frames::frame_with;
use common::Proc;

/// A vde_switch started with `-d -p`, ended by the PID it wrote.
struct VdeSwitch {
    dir: std::path::PathBuf,
}

impl VdeSwitch {
    fn start(tag: &str) -> VdeSwitch {
        let dir = std::env::temp_dir().join(format!("rrqnet-vde-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let sw = VdeSwitch { dir };
        let st = Command::new("vde_switch")
            .arg("-s")
            .arg(sw.sock())
            .arg("-d")
            .arg("-p")
            .arg(sw.dir.join("pid"))
            .stdin(Stdio::null())
            .status()
            .expect("vde_switch runs");
        assert!(st.success(), "vde_switch failed: {st}");
        assert!(common::wait_for(Duration::from_secs(3), || sw.sock().join("ctl").exists()), "vde_switch socket");
        sw
    }

    fn sock(&self) -> std::path::PathBuf {
        self.dir.join("sw")
    }
}

impl Drop for VdeSwitch {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Ends the children dpipe started (found by parent PID), then dpipe.
struct Dpipe(Proc);

impl Drop for Dpipe {
    fn drop(&mut self) {
        let pid = self.0.pid();
        if let Ok(kids) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
            for kid in kids.split_whitespace() {
                let _ = Command::new("kill").arg(kid).status();
            }
        }
        self.0.stop();
    }
}

fn record(frame: &[u8]) -> Vec<u8> {
    let mut r = (frame.len() as u16).to_be_bytes().to_vec();
    r.extend_from_slice(frame);
    r
}

/// Frames padded with `fill`.
fn frame(dst: [u8; 6], src: [u8; 6], len: usize, fill: u8) -> Vec<u8> {
    frame_with(dst, src, len, |_| fill)
}

#[test]
fn dpipe_rrqnet_vde_plug_carries_frames_both_ways() {
    let t = "dpipe_rrqnet_vde_plug_carries_frames_both_ways";
    if !(common::have_program(t, "vde_switch")
        && common::have_program(t, "vde_plug")
        && common::have_program(t, "dpipe"))
    {
        return;
    }
    let sw = VdeSwitch::start("a");
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let peer_port = peer.local_addr().unwrap().port();
    let rport = 31000 + (std::process::id() % 1000) as u16;

    let bin = common::rrqnet_bin();
    let mut cmd = Command::new("dpipe");
    cmd.arg(&bin)
        .args(["-vv", "-t", "-", &rport.to_string(), &format!("127.0.0.1:{peer_port}")])
        .arg("=")
        .arg("vde_plug")
        .arg(sw.sock())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let _plug = Dpipe(Proc::spawn("dpipe rrqnet = vde_plug", &mut cmd));

    // An observer port on the same vde_switch, driven through its stdio.
    let mut obs = Command::new("vde_plug");
    obs.arg(sw.sock()).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut obs = Proc::spawn("vde_plug observer", &mut obs);
    let mut obs_in = obs.child.stdin.take().unwrap();
    let mut obs_out = obs.child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut hdr = [0u8; 2];
        while obs_out.read_exact(&mut hdr).is_ok() {
            let mut f = vec![0u8; u16::from_be_bytes(hdr) as usize];
            if obs_out.read_exact(&mut f).is_err() || tx.send(f).is_err() {
                return;
            }
        }
    });

    // rrqnet's first heartbeat tells the peer where it is.
    let mut buf = [0u8; 65536];
    let (n, from) = peer.recv_from(&mut buf).expect("rrqnet's heartbeat reaches the UDP peer");
    assert!(n < 12 && from.port() == rport, "heartbeat {n} bytes from {from}");
    let peer_mac = [2, 0, 0, 0, 0, 0x11];
    let obs_mac = [2, 0, 0, 0, 0, 0x22];
    // The observer has attached once a probe reaches it: until then the
    // switch has no port to flood to.
    let probe = frame([0xff; 6], peer_mac, 60, 0xee);
    let attached = (0..50).any(|_| {
        peer.send_to(&probe, ("127.0.0.1", rport)).unwrap();
        rx.recv_timeout(Duration::from_millis(100)).is_ok_and(|f| f == probe)
    });
    assert!(attached, "no probe reached the observer in 5 s");
    // UDP peer -> rrqnet -> vde_plug -> vde_switch -> observer, several sizes.
    for (i, len) in [60usize, 1514, 400, 60].into_iter().enumerate() {
        let f = frame([0xff; 6], peer_mac, len, i as u8);
        peer.send_to(&f, ("127.0.0.1", rport)).unwrap();
        // A probe still in flight when the first one answered is not a frame.
        let got = std::iter::from_fn(|| rx.recv_timeout(Duration::from_secs(3)).ok())
            .find(|g| *g != probe)
            .unwrap_or_else(|| panic!("frame {i} ({len} bytes) reached the vde_switch"));
        assert_eq!(got, f, "frame {i} intact");
    }
    // Observer -> vde_switch -> vde_plug -> rrqnet -> UDP peer.
    for (i, len) in [60usize, 1514, 1000].into_iter().enumerate() {
        let f = frame(peer_mac, obs_mac, len, 0x40 + i as u8);
        obs_in.write_all(&record(&f)).unwrap();
        loop {
            let (n, _) = peer.recv_from(&mut buf).unwrap_or_else(|_| panic!("frame {i} reached the UDP peer"));
            if n < 12 {
                continue; // a heartbeat
            }
            assert_eq!(&buf[..n], &f[..], "frame {i} intact");
            break;
        }
    }
    drop(obs_in);
    obs.stop();
}

//! What a running rrqnet reports about itself: one [`Status`] document, made
//! by the node from its counters, and the three ways it is shown.
//!
//! The document is what the status socket serves (as JSON, one document per
//! connection) and what `rrqnet --status PATH` reads back; the same data
//! becomes the readable table of `--status` (like `wg show`), the Prometheus
//! text exposition of `--prometheus` (for node_exporter's textfile
//! collector), and the dump SIGUSR1 and SIGUSR2 write to stderr. Everything
//! here is pure: the I/O is in [`server`] and in `main`.

pub mod server;

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

/// Counters of one port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    /// Frames received on the port.
    pub rx_frames: u64,
    /// Their bytes (Ethernet frames).
    pub rx_bytes: u64,
    /// Frames sent out of the port.
    pub tx_frames: u64,
    /// Their bytes.
    pub tx_bytes: u64,
}

/// The local end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Local {
    /// "tap" or "stdio".
    pub kind: String,
    /// The channel's name ("tap vpn0", "stdio").
    pub name: String,
    /// What crossed it.
    #[serde(flatten)]
    pub traffic: Traffic,
    /// Drops of what came in on it, by reason (non-zero ones).
    pub drops: BTreeMap<String, u64>,
}

/// One remote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Remote {
    /// "ip:port" (the group and port for the multicast remote).
    pub address: String,
    /// "uplink", "downlink" or "multicast".
    pub kind: String,
    /// The declaration it matched, as given (key paths hidden).
    pub declaration: String,
    /// The fingerprint of its key, if keyed.
    pub key: Option<String>,
    /// Seconds since it became a remote.
    pub since_s: f64,
    /// Seconds since it last sent a frame or a heartbeat.
    pub last_rx_s: f64,
    /// What crossed it.
    #[serde(flatten)]
    pub traffic: Traffic,
    /// MAC addresses bound to it now.
    pub macs: u64,
    /// Drops of what came from it, by reason (non-zero ones).
    pub drops: BTreeMap<String, u64>,
}

/// Frames through the switch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frames {
    /// Frames handed to the switch.
    #[serde(rename = "in")]
    pub frames_in: u64,
    /// Frames sent to one known port.
    pub unicast: u64,
    /// Frames flooded.
    pub flooded: u64,
}

/// The MAC table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Macs {
    /// Addresses learned now.
    pub count: u64,
    /// The table's bound.
    pub capacity: u64,
}

/// The tap's offloads: which are on, and what they did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offload {
    /// The tap may hand us partial checksums, which we complete.
    pub checksum: bool,
    /// The tap may hand us TCP super-frames, which we cut into segments.
    pub tso: bool,
    /// The tap may hand us UDP super-frames, which we cut into datagrams.
    #[serde(default)]
    pub uso: bool,
    /// We join TCP segments from the network into super-frames for the tap.
    pub gro: bool,
    /// We join UDP datagrams from the network into super-frames for the
    /// tap too (its kernel takes them).
    #[serde(default)]
    pub gro_udp: bool,
    /// Tap to network.
    pub from_tap: FromTap,
    /// Network to tap.
    pub to_tap: ToTap,
}

/// What was read from an offloading tap.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FromTap {
    /// Ordinary frames that needed nothing.
    pub plain: u64,
    /// Ordinary frames whose partial checksum was completed.
    pub checksums_completed: u64,
    /// TCP super-frames cut into segments.
    pub super_frames: u64,
    /// The segments they made.
    pub segments: u64,
    /// Reads that could not be split, dropped, by reason (non-zero ones):
    /// each scales the offloads back.
    pub refused: BTreeMap<String, u64>,
}

/// What was written to an offloading tap.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToTap {
    /// Frames handed to the coalescer.
    pub frames: u64,
    /// Super-frames made of them.
    pub super_frames: u64,
    /// Frames that joined a super-frame started by another.
    pub joined: u64,
    /// Super-frames the kernel refused (`EINVAL`), written frame by frame.
    pub rejected: u64,
    /// Frames written as they came, by reason (non-zero ones).
    pub plain: BTreeMap<String, u64>,
    /// Runs ended by a frame of their flow, by reason (non-zero ones).
    pub breaks: BTreeMap<String, u64>,
}

impl Offload {
    /// The report of the node's split and the tap channel's state.
    pub fn new(split: &crate::offload::SplitCounters, tap: &crate::offload::TapState) -> Offload {
        use crate::offload::{Break, Plain, Refusal};
        let nonzero = |pairs: &mut dyn Iterator<Item = (&'static str, u64)>| -> BTreeMap<String, u64> {
            pairs.filter(|(_, n)| *n > 0).map(|(k, n)| (k.to_owned(), n)).collect()
        };
        let c = &tap.coalesce;
        Offload {
            checksum: tap.checksum,
            tso: tap.tso,
            uso: tap.uso,
            gro: tap.gro,
            gro_udp: tap.gro_udp,
            from_tap: FromTap {
                plain: split.plain,
                checksums_completed: split.completed,
                super_frames: split.super_frames,
                segments: split.segments,
                refused: nonzero(&mut Refusal::ALL.iter().map(|r| (r.name(), split.refused(*r)))),
            },
            to_tap: ToTap {
                frames: c.frames,
                super_frames: c.super_frames,
                joined: c.joined,
                rejected: tap.rejected,
                plain: nonzero(&mut Plain::ALL.iter().map(|r| (r.name(), c.plain(*r)))),
                breaks: nonzero(&mut Break::ALL.iter().map(|b| (b.name(), c.breaks(*b)))),
            },
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// rrqnet's version.
    pub version: String,
    /// Seconds since the daemon started.
    pub uptime_s: f64,
    /// The local end, if any.
    pub local: Option<Local>,
    /// Every remote, in port order.
    pub remotes: Vec<Remote>,
    /// Frames through the switch.
    pub frames: Frames,
    /// The MAC table.
    pub macs: Macs,
    /// Every drop reason with its count, zeros too.
    pub drops: BTreeMap<String, u64>,
    /// Keyed sessions of peers we know.
    pub sessions: u64,
    /// The tap's offloads, when the local end is a tap opened with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offload: Option<Offload>,
}

impl Status {
    /// The document as the status socket serves it: one line of JSON.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned());
        s.push('\n');
        s
    }

    /// A document read back from the socket.
    pub fn from_json(text: &str) -> Result<Status, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The drop counters that are not zero, "reason count" joined by
    /// commas, or "none".
    fn drops_summary(&self) -> String {
        let drops: Vec<String> = self.drops.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k} {n}")).collect();
        if drops.is_empty() {
            "none".to_owned()
        } else {
            drops.join(", ")
        }
    }

    /// The dump SIGUSR1 and SIGUSR2 write: a header line, one line per
    /// remote, one line of drops.
    pub fn dump_lines(&self) -> Vec<String> {
        let mut lines = Vec::with_capacity(self.remotes.len() + 2);
        let local = match &self.local {
            Some(l) => format!(
                "{}: rx {} frames {} bytes, tx {} frames {} bytes",
                l.name, l.traffic.rx_frames, l.traffic.rx_bytes, l.traffic.tx_frames, l.traffic.tx_bytes
            ),
            None => "no local end".to_owned(),
        };
        lines.push(format!(
            "status: rrqnet {} up {:.0}s, {} remotes, macs {}/{}, frames in {} unicast {} flooded {}, {}",
            self.version,
            self.uptime_s,
            self.remotes.len(),
            self.macs.count,
            self.macs.capacity,
            self.frames.frames_in,
            self.frames.unicast,
            self.frames.flooded,
            local
        ));
        for r in &self.remotes {
            lines.push(format!(
                "remote {} {} ({}{}): up {:.0}s, last rx {:.1}s ago, rx {} frames {} bytes, tx {} frames {} bytes, macs {}{}",
                r.address,
                r.kind,
                r.declaration,
                r.key.as_ref().map_or_else(String::new, |k| format!(", key {k}")),
                r.since_s,
                r.last_rx_s,
                r.traffic.rx_frames,
                r.traffic.rx_bytes,
                r.traffic.tx_frames,
                r.traffic.tx_bytes,
                r.macs,
                drops_suffix(&r.drops)
            ));
        }
        if let Some(o) = &self.offload {
            lines.push(format!(
                "offloads: checksum {}, tso {}, uso {}, gro {}, gro-udp {}; from tap {} super-frames into {} segments, {} \
                 checksums completed{}; to tap {} frames, {} super-frames, {} joined, {} refused by the kernel",
                o.checksum,
                o.tso,
                o.uso,
                o.gro,
                o.gro_udp,
                o.from_tap.super_frames,
                o.from_tap.segments,
                o.from_tap.checksums_completed,
                drops_suffix(&o.from_tap.refused).replace("drops", "refused"),
                o.to_tap.frames,
                o.to_tap.super_frames,
                o.to_tap.joined,
                o.to_tap.rejected
            ));
        }
        lines.push(format!("drops: {}", self.drops_summary()));
        lines
    }

    /// The readable table of `rrqnet --status`.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "rrqnet {}: up {}", self.version, human_duration(self.uptime_s));
        if let Some(l) = &self.local {
            let _ = writeln!(
                out,
                "  local end: {}\n    transfer: {} received, {} sent ({} / {} frames)",
                l.name,
                human_bytes(l.traffic.rx_bytes),
                human_bytes(l.traffic.tx_bytes),
                l.traffic.rx_frames,
                l.traffic.tx_frames
            );
        } else {
            let _ = writeln!(out, "  local end: none (switching among remotes only)");
        }
        let _ = writeln!(
            out,
            "  macs: {} of {}\n  frames: {} in, {} unicast, {} flooded\n  keyed sessions: {}",
            self.macs.count,
            self.macs.capacity,
            self.frames.frames_in,
            self.frames.unicast,
            self.frames.flooded,
            self.sessions
        );
        for r in &self.remotes {
            let _ = writeln!(out, "\nremote: {}", r.address);
            let _ = writeln!(out, "  kind: {}\n  declaration: {}", r.kind, r.declaration);
            if let Some(k) = &r.key {
                let _ = writeln!(out, "  key: {k}");
            }
            let _ = writeln!(
                out,
                "  up: {}\n  last received: {} ago\n  transfer: {} received, {} sent ({} / {} frames)\n  macs: {}",
                human_duration(r.since_s),
                human_duration(r.last_rx_s),
                human_bytes(r.traffic.rx_bytes),
                human_bytes(r.traffic.tx_bytes),
                r.traffic.rx_frames,
                r.traffic.tx_frames,
                r.macs
            );
            if r.drops.values().any(|n| *n > 0) {
                let _ = writeln!(out, "  drops:{}", drops_suffix(&r.drops).trim_start_matches(','));
            }
        }
        if let Some(o) = &self.offload {
            let on = |b: bool| if b { "on" } else { "off" };
            let _ = writeln!(
                out,
                "\ntap offloads: checksum {}, segmentation {}, coalescing {}; UDP: segmentation {}, coalescing {}\n  \
                 from tap: {} super-frames cut into {} \
                 segments, {} checksums completed, {} plain{}\n  to tap: {} frames, {} super-frames ({} frames \
                 joined), {} refused by the kernel",
                on(o.checksum),
                on(o.tso),
                on(o.gro),
                on(o.uso),
                on(o.gro_udp),
                o.from_tap.super_frames,
                o.from_tap.segments,
                o.from_tap.checksums_completed,
                o.from_tap.plain,
                drops_suffix(&o.from_tap.refused).replace("drops", "refused"),
                o.to_tap.frames,
                o.to_tap.super_frames,
                o.to_tap.joined,
                o.to_tap.rejected
            );
        }
        let _ = writeln!(out, "\ndrops: {}", self.drops_summary());
        out
    }

    /// The counters in the Prometheus text exposition format (0.0.4).
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP rrqnet_{name} {help}\n# TYPE rrqnet_{name} {kind}");
        };
        family("up", "gauge", "1 when the status was read from a running rrqnet.");
        family("uptime_seconds", "gauge", "Seconds since the daemon started.");
        family("frames_total", "counter", "Frames through the switch, by what became of them.");
        family("macs", "gauge", "MAC addresses learned now.");
        family("macs_capacity", "gauge", "The bound on learned MAC addresses.");
        family("sessions", "gauge", "Keyed sessions of peers known now.");
        family("drops_total", "counter", "Frames and datagrams dropped, by reason.");
        family("remotes", "gauge", "Remotes now.");
        family("port_rx_frames_total", "counter", "Frames received on a port.");
        family("port_rx_bytes_total", "counter", "Bytes of frames received on a port.");
        family("port_tx_frames_total", "counter", "Frames sent out of a port.");
        family("port_tx_bytes_total", "counter", "Bytes of frames sent out of a port.");
        family("port_macs", "gauge", "MAC addresses bound to a port now.");
        family("port_last_rx_seconds", "gauge", "Seconds since a remote last sent a frame or heartbeat.");
        family("port_drops_total", "counter", "Drops of what came in on a port, by reason.");
        if self.offload.is_some() {
            family("offload_on", "gauge", "1 when a tap offload is on.");
            family("offload_from_tap_total", "counter", "What was read from an offloading tap, by kind.");
            family("offload_refused_total", "counter", "Reads from the tap that could not be split, by reason.");
            family("offload_to_tap_total", "counter", "What was written to an offloading tap, by kind.");
        }
        // The samples, grouped after their families' headers.
        let mut samples = String::new();
        let mut sample = |name: &str, labels: &[(&str, &str)], value: f64| {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
            let labels = if labels.is_empty() { String::new() } else { format!("{{{}}}", labels.join(",")) };
            let _ = writeln!(samples, "rrqnet_{name}{labels} {value}");
        };
        sample("up", &[], 1.0);
        sample("uptime_seconds", &[], self.uptime_s);
        sample("frames_total", &[("kind", "in")], self.frames.frames_in as f64);
        sample("frames_total", &[("kind", "unicast")], self.frames.unicast as f64);
        sample("frames_total", &[("kind", "flooded")], self.frames.flooded as f64);
        sample("macs", &[], self.macs.count as f64);
        sample("macs_capacity", &[], self.macs.capacity as f64);
        sample("sessions", &[], self.sessions as f64);
        for (reason, n) in &self.drops {
            sample("drops_total", &[("reason", reason)], *n as f64);
        }
        sample("remotes", &[], self.remotes.len() as f64);
        let mut port = |labels: &[(&str, &str)], t: &Traffic, drops: &BTreeMap<String, u64>| {
            sample("port_rx_frames_total", labels, t.rx_frames as f64);
            sample("port_rx_bytes_total", labels, t.rx_bytes as f64);
            sample("port_tx_frames_total", labels, t.tx_frames as f64);
            sample("port_tx_bytes_total", labels, t.tx_bytes as f64);
            for (reason, n) in drops {
                let mut with_reason = labels.to_vec();
                with_reason.push(("reason", reason));
                sample("port_drops_total", &with_reason, *n as f64);
            }
        };
        if let Some(l) = &self.local {
            port(&[("port", "local"), ("kind", &l.kind)], &l.traffic, &l.drops);
        }
        for r in &self.remotes {
            port(&[("port", &r.address), ("kind", &r.kind)], &r.traffic, &r.drops);
        }
        for r in &self.remotes {
            let labels = [("port", r.address.as_str()), ("kind", r.kind.as_str())];
            sample("port_macs", &labels, r.macs as f64);
            sample("port_last_rx_seconds", &labels, r.last_rx_s);
        }
        if let Some(o) = &self.offload {
            let kinds =
                [("checksum", o.checksum), ("tso", o.tso), ("uso", o.uso), ("gro", o.gro), ("gro_udp", o.gro_udp)];
            for (kind, on) in kinds {
                sample("offload_on", &[("kind", kind)], f64::from(u8::from(on)));
            }
            let f = &o.from_tap;
            for (kind, n) in [
                ("plain", f.plain),
                ("checksums_completed", f.checksums_completed),
                ("super_frames", f.super_frames),
                ("segments", f.segments),
            ] {
                sample("offload_from_tap_total", &[("kind", kind)], n as f64);
            }
            for (reason, n) in &f.refused {
                sample("offload_refused_total", &[("reason", reason)], *n as f64);
            }
            let t = &o.to_tap;
            for (kind, n) in
                [("frames", t.frames), ("super_frames", t.super_frames), ("joined", t.joined), ("rejected", t.rejected)]
            {
                sample("offload_to_tap_total", &[("kind", kind)], n as f64);
            }
        }
        // Prometheus wants each family's samples together, after its header.
        let mut grouped = String::new();
        for block in out.split("# HELP ").filter(|b| !b.is_empty()) {
            let name = block.split_whitespace().next().unwrap_or_default();
            grouped.push_str("# HELP ");
            grouped.push_str(block);
            for line in samples.lines() {
                let metric = line.split(['{', ' ']).next().unwrap_or_default();
                if metric == name {
                    grouped.push_str(line);
                    grouped.push('\n');
                }
            }
        }
        grouped
    }
}

/// ", reason n, ..." for the non-zero drops, or nothing.
fn drops_suffix(drops: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = drops.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k} {n}")).collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(", drops {}", parts.join(", "))
    }
}

/// A label value as the exposition format wants it.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

fn human_duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..=59 => format!("{secs:.1} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Status {
        let mut drops: BTreeMap<String, u64> = BTreeMap::new();
        drops.insert("bad-auth".into(), 2);
        drops.insert("sticky-elsewhere".into(), 0);
        Status {
            version: "0.1.0".into(),
            uptime_s: 75.5,
            local: Some(Local {
                kind: "tap".into(),
                name: "tap vpn0".into(),
                traffic: Traffic { rx_frames: 3, rx_bytes: 300, tx_frames: 4, tx_bytes: 400 },
                drops: BTreeMap::new(),
            }),
            remotes: vec![Remote {
                address: "192.0.2.2:1400".into(),
                kind: "uplink".into(),
                declaration: "192.0.2.2:1400".into(),
                key: Some("0011223344556677".into()),
                since_s: 70.0,
                last_rx_s: 1.5,
                traffic: Traffic { rx_frames: 4, rx_bytes: 400, tx_frames: 3, tx_bytes: 300 },
                macs: 1,
                drops: [("bad-auth".to_owned(), 2)].into_iter().collect(),
            }],
            frames: Frames { frames_in: 7, unicast: 5, flooded: 2 },
            macs: Macs { count: 2, capacity: 16384 },
            drops,
            sessions: 1,
            offload: None,
        }
    }

    #[test]
    fn json_round_trips_with_the_documented_names() {
        let s = sample();
        let json = s.to_json();
        assert!(json.ends_with('\n') && json.lines().count() == 1);
        for key in [
            "\"version\"",
            "\"uptime_s\"",
            "\"local\"",
            "\"remotes\"",
            "\"address\"",
            "\"kind\"",
            "\"declaration\"",
            "\"key\"",
            "\"since_s\"",
            "\"last_rx_s\"",
            "\"rx_frames\"",
            "\"rx_bytes\"",
            "\"tx_frames\"",
            "\"tx_bytes\"",
            "\"macs\"",
            "\"drops\"",
            "\"capacity\"",
            "\"count\"",
            "\"in\"",
            "\"sessions\"",
        ] {
            assert!(json.contains(key), "{key} missing from {json}");
        }
        assert_eq!(Status::from_json(&json).unwrap(), s);
    }

    #[test]
    fn the_dump_has_a_header_a_line_per_remote_and_the_drops() {
        let lines = sample().dump_lines();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("status: rrqnet 0.1.0 up 76s, 1 remotes, macs 2/16384"), "{}", lines[0]);
        assert!(
            lines[1].starts_with("remote 192.0.2.2:1400 uplink (192.0.2.2:1400, key 0011223344556677)"),
            "{}",
            lines[1]
        );
        assert!(lines[1].ends_with("drops bad-auth 2"), "{}", lines[1]);
        assert_eq!(lines[2], "drops: bad-auth 2");
    }

    #[test]
    fn prometheus_groups_samples_under_their_families() {
        let text = sample().prometheus();
        let mut seen_type = std::collections::HashSet::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                current = rest.split_whitespace().next().unwrap().to_owned();
                assert!(seen_type.insert(current.clone()), "{current} declared twice");
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(name, current, "sample {line} outside its family");
            }
        }
        assert!(text.contains("rrqnet_drops_total{reason=\"bad-auth\"} 2\n"), "{text}");
        assert!(text.contains("rrqnet_port_rx_frames_total{port=\"192.0.2.2:1400\",kind=\"uplink\"} 4\n"), "{text}");
    }

    #[test]
    fn the_table_reads_like_wg_show() {
        let t = sample().table();
        assert!(t.starts_with("rrqnet 0.1.0: up 1 min 15 s\n"), "{t}");
        assert!(t.contains("\nremote: 192.0.2.2:1400\n  kind: uplink\n"), "{t}");
        assert!(t.contains("transfer: 400 B received, 300 B sent (4 / 3 frames)"), "{t}");
        assert!(t.ends_with("drops: bad-auth 2\n"), "{t}");
    }

    /// A status with a tap's offloads: the split's and the tap's counters.
    fn with_offload() -> Status {
        use crate::offload::{Break, CoalesceCounters, Plain, Refusal, SplitCounters, TapState};
        let mut split = SplitCounters { plain: 5, completed: 6, super_frames: 7, segments: 300, ..Default::default() };
        split.refused[Refusal::Ipv4Options as usize] = 1;
        let mut coalesce = CoalesceCounters { frames: 400, super_frames: 9, joined: 390, ..Default::default() };
        coalesce.plain[Plain::NotTcp as usize] = 1;
        coalesce.breaks[Break::Sequence as usize] = 2;
        let tap = TapState {
            checksum: true,
            tso: false,
            uso: false,
            gro: true,
            gro_udp: true,
            coalesce,
            written: 9,
            rejected: 3,
        };
        Status { offload: Some(Offload::new(&split, &tap)), ..sample() }
    }

    /// Without a tap with offloads there is no `offload` key at all; with
    /// one, every counter appears under its documented name, zero reasons
    /// left out, and it reads back the same.
    #[test]
    fn the_offload_object_is_there_only_with_offloads() {
        assert!(!sample().to_json().contains("offload"));
        let s = with_offload();
        let json = s.to_json();
        for key in [
            "\"offload\":{\"checksum\":true,\"tso\":false,\"uso\":false,\"gro\":true,\"gro_udp\":true",
            "\"from_tap\":{\"plain\":5,\"checksums_completed\":6,\"super_frames\":7,\"segments\":300",
            "\"refused\":{\"ipv4-options\":1}",
            "\"to_tap\":{\"frames\":400,\"super_frames\":9,\"joined\":390,\"rejected\":3",
            "\"plain\":{\"not-tcp\":1}",
            "\"breaks\":{\"sequence-gap\":2}",
        ] {
            assert!(json.contains(key), "{key} missing from {json}");
        }
        assert_eq!(Status::from_json(&json).unwrap(), s);
        let dump = s.dump_lines();
        assert_eq!(dump.len(), 4);
        assert!(
            dump[2].starts_with("offloads: checksum true, tso false, uso false, gro true, gro-udp true; from tap 7"),
            "{dump:?}"
        );
        assert!(dump[2].contains("refused ipv4-options 1"), "{dump:?}");
        let table = s.table();
        assert!(table.contains("tap offloads: checksum on, segmentation off, coalescing on; UDP: segmentation off, coalescing on\n  from tap"), "{table}");
        let prom = s.prometheus();
        assert!(prom.contains("rrqnet_offload_on{kind=\"tso\"} 0\n"), "{prom}");
        assert!(prom.contains("rrqnet_offload_from_tap_total{kind=\"segments\"} 300\n"), "{prom}");
        assert!(prom.contains("rrqnet_offload_refused_total{reason=\"ipv4-options\"} 1\n"), "{prom}");
        assert!(prom.contains("rrqnet_offload_to_tap_total{kind=\"rejected\"} 3\n"), "{prom}");
        assert!(!sample().prometheus().contains("offload"));
    }
}

//! The command line against the manual (seed/rrqnet.8.adoc) and SPEC sections
//! 1 and 2: every example in the manual parses to the exact `Config`, the
//! remote-declaration grammar decides uplink versus downlink as specified,
//! and bad command lines are refused with a message that quotes the argument.
//! The last tests run the built binary for exit statuses and stderr shape.

mod common;

use std::ffi::OsString;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use rrqnet::cli::{parse, Invocation};
use rrqnet::config::{ArgError, Config, LocalEnd, McastSpec, RemoteSpec};
use rrqnet::mac::MacAddr;

fn argv(args: &[&str]) -> Vec<String> {
    std::iter::once("rrqnet").chain(args.iter().copied()).map(str::to_owned).collect()
}

/// Parses a command line that must be good.
fn ok(args: &[&str]) -> Config {
    match parse(argv(args)) {
        Ok(Invocation::Run(cfg)) => cfg,
        Ok(Invocation::Print(text)) => panic!("{args:?}: printed instead of running:\n{text}"),
        Ok(other @ (Invocation::Status { .. } | Invocation::ReleaseTap(_))) => {
            panic!("{args:?}: {other:?} instead of running")
        }
        Err(e) => panic!("{args:?}: rejected: {e}"),
    }
}

/// Parses a command line that must be refused.
fn bad(args: &[&str]) -> ArgError {
    match parse(argv(args)) {
        Ok(Invocation::Run(cfg)) => panic!("{args:?}: accepted as {cfg:?}"),
        Ok(Invocation::Print(text)) => panic!("{args:?}: printed instead of failing:\n{text}"),
        Ok(other @ (Invocation::Status { .. } | Invocation::ReleaseTap(_))) => {
            panic!("{args:?}: {other:?} instead of failing")
        }
        Err(e) => e,
    }
}

/// A configuration with every option at its default.
fn base(local: LocalEnd, port: Option<u16>, remotes: Vec<RemoteSpec>) -> Config {
    Config {
        verbosity: 0,
        ipv4_only: false,
        buffers: None,
        threads: None,
        multicast: None,
        local,
        port,
        remotes,
        status_socket: None,
        user: None,
        join_udp: false,
    }
}

fn tap(name: &str) -> LocalEnd {
    LocalEnd::Tap(name.to_owned())
}

/// A remote declaration as the parser should produce it.
fn remote(net: &str, port: Option<u16>, key: Option<&str>) -> RemoteSpec {
    RemoteSpec { net: net.parse().unwrap(), port, key: key.map(PathBuf::from), ignore: Vec::new(), max_remotes: None }
}

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

// ---------------------------------------------------------------------------
// The manual's examples, each compared as a whole Config.
// ---------------------------------------------------------------------------

#[test]
fn manual_matching_ipv4_uplink_and_downlink() {
    let up = ok(&["-t", "vpn0", "2300", "5.6.7.1:2300=/sec/vpn0.key"]);
    assert_eq!(up, base(tap("vpn0"), Some(2300), vec![remote("5.6.7.1/32", Some(2300), Some("/sec/vpn0.key"))]));
    assert!(up.remotes[0].is_uplink());
    assert_eq!(up.remotes[0].key, Some(PathBuf::from("/sec/vpn0.key")));

    let down = ok(&["-t", "vpn0", "2300", "1.2.3.0/24:2300=/sec/vpn0.key"]);
    assert_eq!(down, base(tap("vpn0"), Some(2300), vec![remote("1.2.3.0/24", Some(2300), Some("/sec/vpn0.key"))]));
    assert!(!down.remotes[0].is_uplink());
}

#[test]
fn manual_matching_ipv6_uplink_and_downlink() {
    let up = ok(&["-t", "vpn0", "2300", "[fe::1:4]:2300=/sec/vpn0.key"]);
    assert_eq!(up, base(tap("vpn0"), Some(2300), vec![remote("fe::1:4/128", Some(2300), Some("/sec/vpn0.key"))]));
    assert!(up.remotes[0].is_uplink());

    let down = ok(&["-t", "vpn0", "2300", "[fd::/120]:2300=/sec/vpn0.key"]);
    assert_eq!(down, base(tap("vpn0"), Some(2300), vec![remote("fd::/120", Some(2300), Some("/sec/vpn0.key"))]));
    assert!(!down.remotes[0].is_uplink());
}

#[test]
fn manual_multiple_pairwise_uplinks() {
    let lines: [[&str; 3]; 4] = [
        ["2.0.0.1", "3.0.0.1", "4.0.0.1"],
        ["1.0.0.1", "3.0.0.1", "4.0.0.1"],
        ["2.0.0.1", "1.0.0.1", "4.0.0.1"],
        ["2.0.0.1", "3.0.0.1", "1.0.0.1"],
    ];
    for peers in lines {
        let decls: Vec<String> = peers.iter().map(|p| format!("{p}:2300")).collect();
        let mut args = vec!["-t", "vpn0", "2300"];
        args.extend(decls.iter().map(String::as_str));
        let want =
            base(tap("vpn0"), Some(2300), peers.iter().map(|p| remote(&format!("{p}/32"), Some(2300), None)).collect());
        let got = ok(&args);
        assert_eq!(got, want, "{args:?}");
        assert!(got.remotes.iter().all(RemoteSpec::is_uplink));
    }
}

#[test]
fn manual_multicast_example_244_is_refused_and_239_parses() {
    // The manual's 244.0.2.1 is not a multicast address (SPEC 1).
    let e = bad(&["-m", "244.0.2.1:2000", "-t", "vpn0"]);
    assert_eq!(e.arg, "244.0.2.1:2000");
    assert!(e.expected.contains("224.0.0.0/4"), "{e}");

    let mut want = base(tap("vpn0"), None, vec![]);
    want.multicast = Some(McastSpec { group: Ipv4Addr::new(239, 0, 2, 1), port: 2000, key: None });
    assert_eq!(ok(&["-m", "239.0.2.1:2000", "-t", "vpn0"]), want);
}

#[test]
fn manual_downlink_with_encryption() {
    let mut want = base(tap("tap0"), Some(1400), vec![remote("10.2.0.0/16", Some(1400), Some("/sec/keyfile"))]);
    want.verbosity = 1;
    assert_eq!(ok(&["-v", "-t", "tap0", "1400", "10.2.0.0/16:1400=/sec/keyfile"]), want);
}

#[test]
fn manual_simple_setups_ipv6_ipv4_and_nat() {
    let cases: [(&str, &str); 6] = [
        ("[fe::1:3]:1400", "fe::1:3/128"),
        ("[fe::2]:1400", "fe::2/128"),
        ("192.168.0.1:1400", "192.168.0.1/32"),
        ("10.0.0.1:1400", "10.0.0.1/32"),
        // The NAT "server": a downlink for the client's external network.
        ("10.2.0.0/16:1400", "10.2.0.0/16"),
        ("10.0.0.1:1400", "10.0.0.1/32"),
    ];
    for (decl, net) in cases {
        let mut want = base(tap("tap0"), Some(1400), vec![remote(net, Some(1400), None)]);
        want.verbosity = 1;
        let got = ok(&["-v", "-t", "tap0", "1400", decl]);
        assert_eq!(got, want, "{decl}");
        assert_eq!(got.remotes[0].is_uplink(), !decl.contains('/'), "{decl}");
    }
}

#[test]
fn manual_dpipe_examples_with_stdio() {
    // SPEC 1: the dpipe examples need `-t -` to use stdin/stdout.
    assert_eq!(
        ok(&["-t", "-", "1400", "0.0.0.0/0=keyfile0"]),
        base(LocalEnd::Stdio, Some(1400), vec![remote("0.0.0.0/0", None, Some("keyfile0"))])
    );
    assert_eq!(
        ok(&["-t", "-", "1401", "0.0.0.0/0=keyfile1"]),
        base(LocalEnd::Stdio, Some(1401), vec![remote("0.0.0.0/0", None, Some("keyfile1"))])
    );
    assert_eq!(
        ok(&["-t", "-", "1400", "0.0.0.0/0"]),
        base(LocalEnd::Stdio, Some(1400), vec![remote("0.0.0.0/0", None, None)])
    );
    // As the manual types them, without -t: a pure switch, stdin unused.
    assert_eq!(ok(&["1400", "0.0.0.0/0"]), base(LocalEnd::None, Some(1400), vec![remote("0.0.0.0/0", None, None)]));
}

// ---------------------------------------------------------------------------
// The remote-declaration grammar (SPEC 2).
// ---------------------------------------------------------------------------

#[test]
fn uplink_or_downlink_by_family_and_form() {
    // (declaration, network after truncation, port, uplink?)
    let cases: &[(&str, &str, Option<u16>, bool)] = &[
        // IPv4
        ("10.1.2.3:1400", "10.1.2.3/32", Some(1400), true),
        ("10.1.2.3/32:1400", "10.1.2.3/32", Some(1400), true),
        ("10.1.2.3", "10.1.2.3/32", None, false),
        ("10.1.2.3/32", "10.1.2.3/32", None, false),
        ("10.1.2.3/31:1400", "10.1.2.2/31", Some(1400), false),
        ("10.1.2.3/24", "10.1.2.0/24", None, false),
        ("10.1.2.3/0:7", "0.0.0.0/0", Some(7), false),
        ("0.0.0.0/0", "0.0.0.0/0", None, false),
        ("10.1.2.3:65535", "10.1.2.3/32", Some(65535), true),
        ("10.1.2.3:1", "10.1.2.3/32", Some(1), true),
        // plain IPv6: never a port, so never an uplink
        ("fd::1", "fd::1/128", None, false),
        ("fd::1/128", "fd::1/128", None, false),
        ("fd::1:2:3/64", "fd::/64", None, false),
        ("::/0", "::/0", None, false),
        // A port-looking last group is part of the address without brackets.
        ("fe::1:4:2300", "fe::1:4:2300/128", None, false),
        // bracketed IPv6
        ("[fd::1]:1400", "fd::1/128", Some(1400), true),
        ("[fd::1/128]:1400", "fd::1/128", Some(1400), true),
        ("[fd::1]", "fd::1/128", None, false),
        ("[fd::1/128]", "fd::1/128", None, false),
        ("[fd::1:2:3/127]:1400", "fd::1:2:2/127", Some(1400), false),
        ("[fd::ff/120]:1400", "fd::/120", Some(1400), false),
        ("[::/0]", "::/0", None, false),
        ("[2001:db8::7]:9", "2001:db8::7/128", Some(9), true),
    ];
    for &(decl, net, port, uplink) in cases {
        let got = ok(&["1400", decl]);
        assert_eq!(got.remotes, vec![remote(net, port, None)], "{decl}");
        assert_eq!(got.remotes[0].is_uplink(), uplink, "{decl}");
        assert_eq!(got.remotes[0].uplink_addr().is_some(), uplink, "{decl}");
    }
}

#[test]
fn ipv4_mapped_declarations_become_ipv4() {
    // Sources are matched unmapped, so a mapped declaration is its IPv4 block.
    let got = ok(&["1400", "[::ffff:10.1.2.3]:1400", "::ffff:10.9.0.0/112", "[::ffff:0:0/96]"]);
    assert_eq!(
        got.remotes,
        vec![
            remote("10.1.2.3/32", Some(1400), None),
            remote("10.9.0.0/16", None, None),
            remote("0.0.0.0/0", None, None),
        ]
    );
    assert!(got.remotes[0].is_uplink());
    // ... which -4 can serve.
    assert_eq!(ok(&["-4", "1400", "[::ffff:10.1.2.3]:1400"]).remotes, vec![remote("10.1.2.3/32", Some(1400), None)]);
}

#[test]
fn key_path_is_everything_after_the_first_equals() {
    let got = ok(&["1400", "10.0.0.1:1400=/sec/a=b.key", "[fd::1]:1400==x", "fd::/64=k=", "10.0.0.0/8=relative/key"]);
    assert_eq!(
        got.remotes,
        vec![
            remote("10.0.0.1/32", Some(1400), Some("/sec/a=b.key")),
            remote("fd::1/128", Some(1400), Some("=x")),
            remote("fd::/64", None, Some("k=")),
            remote("10.0.0.0/8", None, Some("relative/key")),
        ]
    );
    let mut want = base(LocalEnd::None, None, vec![]);
    want.multicast =
        Some(McastSpec { group: Ipv4Addr::new(239, 1, 2, 3), port: 5000, key: Some(PathBuf::from("/k=1")) });
    assert_eq!(ok(&["-m", "239.1.2.3:5000=/k=1"]), want);
}

#[test]
fn ignore_lists_attach_to_the_preceding_remote_and_accumulate() {
    let got = ok(&[
        "1400",
        "10.0.0.1:1400",
        "-i",
        "02:00:00:00:00:01,02:00:00:00:00:02",
        "-i",
        "02-00-00-00-00-03",
        "[fd::/64]",
        "10.9.0.0/16",
        "-i",
        "ff:ff:ff:ff:ff:ff",
    ]);
    let mut a = remote("10.0.0.1/32", Some(1400), None);
    a.ignore = vec![mac("02:00:00:00:00:01"), mac("02:00:00:00:00:02"), mac("02:00:00:00:00:03")];
    let b = remote("fd::/64", None, None);
    let mut c = remote("10.9.0.0/16", None, None);
    c.ignore = vec![MacAddr::BROADCAST];
    assert_eq!(got, base(LocalEnd::None, Some(1400), vec![a, b, c]));
}

#[test]
fn ipv4_only_takes_ipv4_declarations() {
    let mut want = base(LocalEnd::None, Some(1400), vec![remote("10.0.0.1/32", Some(1400), None)]);
    want.ipv4_only = true;
    assert_eq!(ok(&["-4", "1400", "10.0.0.1:1400"]), want);
    for v6 in ["fd::/64", "[fd::1]:1400", "[fd::1]", "::/0"] {
        let e = bad(&["-4", "1400", v6]);
        assert_eq!(e.arg, v6);
        assert!(e.expected.contains("-4"), "{e}");
    }
}

// ---------------------------------------------------------------------------
// Options.
// ---------------------------------------------------------------------------

#[test]
fn local_end_stdio_none_and_tap_names() {
    assert_eq!(ok(&["-t", "-", "1400"]).local, LocalEnd::Stdio);
    assert_eq!(ok(&["1400"]).local, LocalEnd::None);
    for name in ["t", "tap0", "vpn.0", "br-lan_x", "abcdefghijklmno", "ééééééé"] {
        assert!(name.len() <= 15);
        assert_eq!(ok(&["-t", name, "1400"]).local, tap(name), "{name}");
    }
    // getopt-style attached values.
    assert_eq!(ok(&["-ttap0", "1400"]).local, tap("tap0"));
    assert_eq!(ok(&["-t-", "1400"]).local, LocalEnd::Stdio);
}

#[test]
fn port_may_be_left_out_only_with_multicast_and_no_remotes() {
    let m = Some(McastSpec { group: Ipv4Addr::new(239, 1, 2, 3), port: 5000, key: None });
    let mut want = base(LocalEnd::Stdio, None, vec![]);
    want.multicast = m.clone();
    assert_eq!(ok(&["-m", "239.1.2.3:5000", "-t", "-"]), want);

    let mut want = base(LocalEnd::None, Some(1400), vec![remote("10.0.0.0/8", None, None)]);
    want.multicast = m;
    assert_eq!(ok(&["-m", "239.1.2.3:5000", "1400", "10.0.0.0/8"]), want);

    assert_eq!(bad(&["-t", "-"]).arg, "");
    let e = bad(&["-m", "239.1.2.3:5000", "10.0.0.1:1400"]);
    assert_eq!(e.arg, "10.0.0.1:1400");
    assert!(e.expected.contains("UDP port"), "{e}");
}

#[test]
fn buffers_and_threads_range() {
    for (n, v) in [("1", 1u16), ("32", 32), ("1024", 1024), ("0007", 7)] {
        let got = ok(&["-B", n, "-T", n, "1400"]);
        assert_eq!((got.buffers, got.threads), (Some(v), Some(v)), "{n}");
    }
    let got = ok(&["-B8", "-T2", "1400"]);
    assert_eq!((got.buffers, got.threads), (Some(8), Some(2)));
    let got = ok(&["1400"]);
    assert_eq!((got.buffers, got.threads), (None, None));
}

#[test]
fn verbosity_counts_and_caps_at_three() {
    let cases: &[(&[&str], u8)] = &[
        (&[], 0),
        (&["-v"], 1),
        (&["-vv"], 2),
        (&["-vvv"], 3),
        (&["-vvvv"], 3),
        (&["-v", "-v"], 2),
        (&["-v", "-vv"], 3),
        (&["-vv", "-4", "-v", "-v", "-v"], 3),
        (&["-4v"], 1),
    ];
    for &(flags, level) in cases {
        let mut args = flags.to_vec();
        args.push("1400");
        assert_eq!(ok(&args).verbosity, level, "{args:?}");
    }
    let many = format!("-{}", "v".repeat(300));
    assert_eq!(ok(&[&many, "1400"]).verbosity, 3);
}

/// All orderings of the options give the same Config (SPEC 1 allows any order
/// among themselves, before the port).
#[test]
fn options_in_any_order_before_the_port() {
    let groups: [&[&str]; 6] =
        [&["-v"], &["-4"], &["-B", "8"], &["-T", "2"], &["-m", "239.1.2.3:5000"], &["-t", "tap0"]];
    let mut want = base(tap("tap0"), Some(1400), vec![remote("10.0.0.1/32", Some(1400), None)]);
    want.verbosity = 1;
    want.ipv4_only = true;
    want.buffers = Some(8);
    want.threads = Some(2);
    want.multicast = Some(McastSpec { group: Ipv4Addr::new(239, 1, 2, 3), port: 5000, key: None });

    let mut order: Vec<usize> = (0..groups.len()).collect();
    let mut count = 0;
    // Heap's algorithm: every permutation once.
    let mut c = vec![0usize; order.len()];
    let mut check = |order: &[usize]| {
        let mut args: Vec<&str> = order.iter().flat_map(|&i| groups[i].iter().copied()).collect();
        args.extend(["1400", "10.0.0.1:1400"]);
        assert_eq!(ok(&args), want, "{args:?}");
        count += 1;
    };
    check(&order);
    let mut i = 0;
    while i < order.len() {
        if c[i] < i {
            if i % 2 == 0 {
                order.swap(0, i);
            } else {
                order.swap(c[i], i);
            }
            check(&order);
            c[i] += 1;
            i = 0;
        } else {
            c[i] = 0;
            i += 1;
        }
    }
    assert_eq!(count, 720);
}

#[test]
fn help_and_version_print() {
    for flag in ["-h", "--help"] {
        match parse(argv(&[flag])) {
            Ok(Invocation::Print(text)) => {
                assert!(text.contains("Usage: rrqnet"), "{text}");
                assert!(text.contains("-i mac"), "{text}");
            }
            other => panic!("{flag}: {other:?}"),
        }
    }
    match parse(argv(&["--version"])) {
        Ok(Invocation::Print(text)) => assert_eq!(text.trim(), format!("rrqnet {}", env!("CARGO_PKG_VERSION"))),
        other => panic!("--version: {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Bad command lines: the quoted argument and what was expected.
// ---------------------------------------------------------------------------

/// (command line, the offending argument, a distinctive part of `expected`)
const BAD: &[(&[&str], &str, &str)] = &[
    // the port
    (&[], "", "UDP port number (1-65535)"),
    (&["-t", "vpn0"], "", "UDP port number (1-65535)"),
    (&["0"], "0", "UDP port number (1-65535)"),
    (&["65536"], "65536", "UDP port number (1-65535)"),
    (&["14OO"], "14OO", "UDP port number (1-65535)"),
    (&["+1400"], "+1400", "UDP port number (1-65535)"),
    (&["10.0.0.1:1400"], "10.0.0.1:1400", "UDP port (1-65535) before the first remote"),
    // options after the port
    (&["1400", "-v"], "-v", "options must come before the port"),
    (&["1400", "-t", "tap0"], "-t", "options must come before the port"),
    (&["1400", "10.0.0.1:1400", "-t", "-"], "-t", "options must come before the port"),
    (&["1400", "10.0.0.1:1400", "-4"], "-4", "options must come before the port"),
    // -i
    (&["-i", "02:00:00:00:00:01", "1400"], "-i", "-i must follow a remote declaration"),
    (&["1400", "-i", "02:00:00:00:00:01"], "-i", "-i must follow a remote declaration"),
    (&["1400", "10.0.0.1:1400", "-i"], "-i", "list of MAC addresses after -i"),
    (&["1400", "10.0.0.1:1400", "-i", "02:00:00:00:00:0g"], "02:00:00:00:00:0g", "MAC addresses"),
    (&["1400", "10.0.0.0/8", "-i", "02:00:00:00:00:01,"], "02:00:00:00:00:01,", "MAC addresses"),
    (&["1400", "10.0.0.0/8", "-i", "02:00:00:00:01"], "02:00:00:00:01", "MAC addresses"),
    // IPv4 blocks
    (&["1400", "10.0.0.0/33"], "10.0.0.0/33", "IPv4 prefix length 0-32"),
    (&["1400", "10.0.0.0/"], "10.0.0.0/", "IPv4 prefix length 0-32"),
    (&["1400", "10.0.0.0/-1:1400"], "10.0.0.0/-1:1400", "IPv4 prefix length 0-32"),
    (&["1400", "10.0.0.256:1400"], "10.0.0.256:1400", "IPv4 address a.b.c.d"),
    (&["1400", "10.0.0:1400"], "10.0.0:1400", "IPv4 address a.b.c.d"),
    (&["1400", "10.0.0.1:0"], "10.0.0.1:0", "port number (1-65535) after ':'"),
    (&["1400", "10.0.0.1:65536"], "10.0.0.1:65536", "port number (1-65535) after ':'"),
    (&["1400", "10.0.0.1:"], "10.0.0.1:", "port number (1-65535) after ':'"),
    (&["1400", "10.0.0.1:1400:5"], "10.0.0.1:1400:5", "one ':port' at most"),
    (&["1400", "vpn.example.org:1400"], "vpn.example.org:1400", "host names are not resolved"),
    (&["1400", "[10.0.0.1]:1400"], "[10.0.0.1]:1400", "brackets are for IPv6"),
    // IPv6 blocks
    (&["1400", "fd::/129"], "fd::/129", "IPv6 prefix length 0-128"),
    (&["1400", "[fd::/129]:1400"], "[fd::/129]:1400", "IPv6 prefix length 0-128"),
    (&["1400", "[fd::/]:1400"], "[fd::/]:1400", "IPv6 prefix length 0-128"),
    (&["1400", "[fe::1:4:1400"], "[fe::1:4:1400", "']' to close"),
    (&["1400", "[fe::1:4]x1400"], "[fe::1:4]x1400", "after ']'"),
    (&["1400", "[fe::1:4]:0"], "[fe::1:4]:0", "port number (1-65535) after ']:'"),
    (&["1400", "[fe::1:4]:"], "[fe::1:4]:", "port number (1-65535) after ']:'"),
    (&["1400", "fe::1:4:99999"], "fe::1:4:99999", "[addr[/n]]:port with brackets"),
    (&["1400", "fd:1:2:3:4:5:6:7:8"], "fd:1:2:3:4:5:6:7:8", "IPv6 address block"),
    (&["1400", "[fd::g]:1400"], "[fd::g]:1400", "IPv6 address block"),
    // key files and empty declarations
    (&["1400", "10.0.0.1:1400="], "10.0.0.1:1400=", "key file path after '='"),
    (&["1400", "[fd::1]="], "[fd::1]=", "key file path after '='"),
    (&["1400", "=/sec/key"], "=/sec/key", "remote declaration"),
    // uplinks must be unicast hosts
    (&["1400", "0.0.0.0:1400"], "0.0.0.0:1400", "unspecified"),
    (&["1400", "[::]:1400"], "[::]:1400", "unspecified"),
    (&["1400", "239.1.2.3:1400"], "239.1.2.3:1400", "declared with -m"),
    (&["1400", "[ff02::1]:1400"], "[ff02::1]:1400", "declared with -m"),
    (&["1400", "255.255.255.255:1400"], "255.255.255.255:1400", "broadcast"),
    // -m
    (&["-m"], "-m", "multicast channel after -m"),
    (&["-m", "239.1.2.3"], "239.1.2.3", "group:port"),
    (&["-m", "244.0.2.1:2000", "-t", "vpn0"], "244.0.2.1:2000", "224.0.0.0/4"),
    (&["-m", "10.0.0.1:2000"], "10.0.0.1:2000", "224.0.0.0/4"),
    (&["-m", "[ff02::1]:2000"], "[ff02::1]:2000", "IPv4 only"),
    (&["-m", "ff02::1:2000"], "ff02::1:2000", "IPv4 only"),
    (&["-m", "239.1.2.3:0"], "239.1.2.3:0", "multicast port number (1-65535)"),
    (&["-m", "239.1.2.3:2000="], "239.1.2.3:2000=", "key file path after '='"),
    (&["-m", "mcast.example:2000"], "mcast.example:2000", "IPv4 multicast group"),
    // -B and -T
    (&["-B", "0", "1400"], "0", "receive buffers (1-1024)"),
    (&["-B", "1025", "1400"], "1025", "receive buffers (1-1024)"),
    (&["-B", "-1", "1400"], "-1", "receive buffers (1-1024)"),
    (&["-B"], "-B", "receive buffers (1-1024) after -B"),
    (&["-T", "abc", "1400"], "abc", "threads (1-1024)"),
    (&["-T", "0", "1400"], "0", "threads (1-1024)"),
    (&["-T", "65537", "1400"], "65537", "threads (1-1024)"),
    (&["-T"], "-T", "threads (1-1024) after -T"),
    // -t
    (&["-t"], "-t", "tap interface name or '-'"),
    (&["-t", "abcdefghijklmnop", "1400"], "abcdefghijklmnop", "1-15 bytes"),
    (&["-t", "éééééééé", "1400"], "éééééééé", "1-15 bytes"),
    (&["-t", "tap/0", "1400"], "tap/0", "without '/'"),
    (&["-t", "tap:0", "1400"], "tap:0", "without '/', ':'"),
    (&["-t", "tap 0", "1400"], "tap 0", "spaces"),
    (&["-t", "..", "1400"], "..", "tap interface name"),
    (&["-t", "-v", "1400"], "-v", "not an option"),
    (&["-t", "-", "-t", "tap0", "1400"], "-t", "only once"),
    // unknown options
    (&["-x", "1400"], "-x", "unknown option"),
    (&["--tap", "tap0", "1400"], "--tap", "unknown option"),
    (&["-4q", "1400"], "-q", "unknown option"),
];

#[test]
fn bad_command_lines_are_refused_with_the_argument_quoted() {
    for &(args, arg, expected) in BAD {
        let e = bad(args);
        assert_eq!(e.arg, arg, "{args:?}: {e}");
        assert!(e.expected.contains(expected), "{args:?}: expected text {:?} lacks {expected:?}", e.expected);
        let line = e.to_string();
        assert!(!line.contains('\n'), "{args:?}: {line}");
        if !arg.is_empty() {
            assert!(line.contains(&format!("'{arg}'")), "{args:?}: {line}");
        }
    }
    assert!(BAD.len() >= 30);
}

/// The long options added to the manual's grammar: the status socket, and
/// the status client.
#[test]
fn status_options() {
    use rrqnet::cli::StatusFormat;
    let cfg = ok(&["-v", "--status-socket", "/run/rrqnet/vpn0.sock", "-t", "vpn0", "1400"]);
    assert_eq!(cfg.status_socket, Some(PathBuf::from("/run/rrqnet/vpn0.sock")));
    assert_eq!(cfg.local, tap("vpn0"));
    for (args, format) in [
        (&["--status", "/s"][..], StatusFormat::Table),
        (&["--status", "/s", "--json"], StatusFormat::Json),
        (&["--prometheus", "--status", "/s"], StatusFormat::Prometheus),
    ] {
        match parse(argv(args)) {
            Ok(Invocation::Status { path, format: f }) => {
                assert_eq!((path, f), (PathBuf::from("/s"), format), "{args:?}")
            }
            other => panic!("{args:?}: {other:?}"),
        }
    }
    assert_eq!(bad(&["--json"]).arg, "--json");
    assert!(bad(&["--status", "/s", "--json", "--prometheus"]).expected.contains("pick one"));
    assert!(bad(&["--status", "/s", "1400"]).expected.contains("takes no port"));
    assert!(bad(&["--status-socket"]).expected.contains("value"));
}

/// `--release-tap NAME` is a command of its own.
#[test]
fn release_tap_takes_a_name_and_nothing_else() {
    match parse(argv(&["--release-tap", "vpn0"])) {
        Ok(Invocation::ReleaseTap(name)) => assert_eq!(name, "vpn0"),
        other => panic!("{other:?}"),
    }
    assert!(bad(&["--release-tap", "vpn0", "1400"]).expected.contains("takes no port"));
    for args in [&["--release-tap", "vpn0", "-t", "vpn0"][..], &["--release-tap", "vpn0", "--status", "/s"]] {
        assert!(bad(args).expected.contains("command of its own"), "{args:?}");
    }
    assert!(bad(&["--release-tap"]).expected.contains("value"));
}

/// A bad option value is quoted with the option it belongs to.
#[test]
fn a_bad_option_value_names_the_option() {
    let cases: &[(&[&str], &str, &str)] = &[
        (&["-B", "0", "1400"], "-B", "0"),
        (&["-B8x", "1400"], "-B", "8x"),
        (&["-T", "abc", "1400"], "-T", "abc"),
        (&["-m", "10.0.0.1:2000"], "-m", "10.0.0.1:2000"),
        (&["-t", "tap/0", "1400"], "-t", "tap/0"),
        (&["-t", "-v", "1400"], "-t", "-v"),
    ];
    for &(args, option, value) in cases {
        let e = bad(args);
        assert_eq!((e.option.as_deref(), e.arg.as_str()), (Some(option), value), "{args:?}: {e}");
        let line = e.to_string();
        assert!(line.starts_with(&format!("bad argument '{value}' for {option}: ")), "{args:?}: {line}");
        assert!(line.contains("expected"), "{args:?}: {line}");
    }
    // An option without its value, an unknown one, or one given twice is
    // the argument itself.
    for args in [&["-B"][..], &["-x", "1400"], &["-t", "-", "-t", "-", "1400"]] {
        assert_eq!(bad(args).option, None, "{args:?}");
    }
}

#[test]
fn non_utf8_argument_is_refused() {
    use std::os::unix::ffi::OsStringExt;
    let args = [OsString::from("rrqnet"), OsString::from("1400"), OsString::from_vec(b"10.0.0.1:1400=/k\xff".to_vec())];
    match parse(args) {
        Err(e) => {
            assert_eq!(e.arg, "10.0.0.1:1400=/k\u{fffd}");
            assert!(e.expected.contains("UTF-8"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn control_characters_are_escaped_in_the_message() {
    let e = bad(&["1400", "10.0.0.1\n:1400"]);
    assert_eq!(e.arg, "10.0.0.1\n:1400");
    assert!(e.to_string().contains("'10.0.0.1\\n:1400'"), "{e}");
}

// ---------------------------------------------------------------------------
// The built binary: exit statuses and the shape of stderr.
// ---------------------------------------------------------------------------

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the binary with stdin closed; a process still running after 10 s
/// is a failure (and is ended by the Proc guard).
fn run_bin(args: &[OsString]) -> Ran {
    let mut cmd = Command::new(common::rrqnet_bin());
    cmd.args(args).env("RUST_BACKTRACE", "1").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut p = common::Proc::spawn("rrqnet", &mut cmd);
    let status = p.wait_timeout(Duration::from_secs(10));
    assert!(status.is_some(), "rrqnet {args:?} still running after 10 s");
    let mut stdout = String::new();
    if let Some(mut o) = p.child.stdout.take() {
        std::io::Read::read_to_string(&mut o, &mut stdout).unwrap();
    }
    let stderr = p.stderr_text();
    for text in [&stdout, &stderr] {
        assert!(!text.contains("panicked") && !text.contains("backtrace"), "rrqnet {args:?}: {text}");
    }
    Ran { code: status.and_then(|s| s.code()), stdout, stderr }
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

#[test]
fn binary_bad_argument_exits_2_with_one_quoted_line() {
    use std::os::unix::ffi::OsStringExt;
    let cases: Vec<(Vec<OsString>, &str)> = vec![
        (os(&["0"]), "'0'"),
        (os(&["-t"]), "'-t'"),
        (os(&["-x", "1400"]), "'-x'"),
        (os(&["1400", "-v"]), "'-v'"),
        (os(&["1400", "-i", "02:00:00:00:00:01"]), "'-i'"),
        (os(&["-B", "1025", "1400"]), "'1025' for -B"),
        (os(&["-t", "abcdefghijklmnop", "1400"]), "'abcdefghijklmnop'"),
        (os(&["-m", "244.0.2.1:2000", "-t", "vpn0"]), "'244.0.2.1:2000'"),
        (os(&["-4", "1400", "[fd::1]:1400"]), "'[fd::1]:1400'"),
        (os(&["1400", "[fe::1:4]:0"]), "'[fe::1:4]:0'"),
        (os(&["1400", "10.0.0.1\n:1400"]), "'10.0.0.1\\n:1400'"),
        (os(&["-t", "-", "-t", "-", "1400"]), "'-t'"),
        (vec![OsString::from("1400"), OsString::from_vec(b"\xff".to_vec())], "'\u{fffd}'"),
        (os(&[]), "UDP port"),
    ];
    for (args, quoted) in cases {
        let r = run_bin(&args);
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{args:?}: stdout {:?}", r.stdout);
        assert_eq!(r.stderr.lines().count(), 1, "{args:?}: stderr {:?}", r.stderr);
        assert!(r.stderr.ends_with('\n'), "{args:?}: {:?}", r.stderr);
        assert!(r.stderr.contains(quoted), "{args:?}: {:?} lacks {quoted}", r.stderr);
    }
}

#[test]
fn binary_help_and_version_exit_0_on_stdout() {
    for flag in ["-h", "--help"] {
        let r = run_bin(&os(&[flag]));
        assert_eq!(r.code, Some(0), "{flag}: {}", r.stderr);
        assert!(r.stdout.contains("Usage: rrqnet"), "{flag}: {}", r.stdout);
        assert!(r.stderr.is_empty(), "{flag}: {}", r.stderr);
    }
    let r = run_bin(&os(&["--version"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.stdout, format!("rrqnet {}\n", env!("CARGO_PKG_VERSION")));
    assert!(r.stderr.is_empty(), "{}", r.stderr);
}

/// SPEC 1: a runtime failure at start exits 1 with a line naming the thing.
#[test]
fn binary_port_in_use_exits_1_naming_the_port() {
    // On Linux `[::]:P` from std is dual-stack, so it also holds 0.0.0.0:P.
    let held = UdpSocket::bind("[::]:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    for args in [vec![port.as_str()], vec!["-4", port.as_str()], vec!["-vv", port.as_str(), "10.0.0.0/8"]] {
        let r = run_bin(&os(&args));
        assert_eq!(r.code, Some(1), "{args:?}: {}", r.stderr);
        let line = r.stderr.lines().find(|l| l.contains("bind")).unwrap_or_else(|| panic!("{args:?}: {}", r.stderr));
        assert!(line.contains(&format!("port {port}")), "{args:?}: {line}");
    }
    drop(held);

    // An IPv4-only holder blocks the dual-stack bind as well.
    let held = UdpSocket::bind("0.0.0.0:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let r = run_bin(&os(&[&port]));
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("port {port}")), "{}", r.stderr);
}

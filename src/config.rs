//! The typed configuration and the remote-declaration grammar.
//!
//! Everything the user types is parsed here, once, into [`Config`] and
//! [`RemoteSpec`]: the rest of the program never sees a string. The grammar is
//! the manual's, as settled by SPEC sections 1 and 2:
//!
//! ```text
//! a.b.c.d[/n][:port][=keyfile]        IPv4 block
//! addr6[/n][=keyfile]                 plain IPv6 block (no port)
//! [addr6[/n]][:port][=keyfile]        bracketed IPv6 block
//! ```
//!
//! A full-length address with a port is an uplink; anything else is a
//! downlink mask. An uplink must be one unicast host. An IPv4-mapped IPv6
//! block (`::ffff:a.b.c.d/n`, n >= 96) is stored as the IPv4 block it maps,
//! since sources are matched unmapped.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::mac::MacAddr;

/// What the daemon uses as its local end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalEnd {
    /// No `-t`: a pure switch among the UDP channels.
    None,
    /// `-t -`: stdin/stdout with VDE framing.
    Stdio,
    /// `-t NAME`: a tap interface.
    Tap(String),
}

/// The complete, validated command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// 0 (warnings only) to 3 (`-vvv`, trace).
    pub verbosity: u8,
    /// `-4`: an IPv4-only UDP socket.
    pub ipv4_only: bool,
    /// `-B n`, 1–1024.
    pub buffers: Option<u16>,
    /// `-T n`, 1–1024.
    pub threads: Option<u16>,
    /// `-m group:port[=keyfile]`.
    pub multicast: Option<McastSpec>,
    /// `-t`.
    pub local: LocalEnd,
    /// The UDP port; absent only with `-m` and no remotes.
    pub port: Option<u16>,
    /// The remote declarations, in the order given.
    pub remotes: Vec<RemoteSpec>,
    /// `--status-socket PATH`: serve status documents there.
    pub status_socket: Option<PathBuf>,
    /// `--user USER`: the user to run as once the tap, the sockets and the
    /// keys are open.
    pub user: Option<String>,
    /// `--join-udp`: join UDP datagrams of one flow into super-frames for
    /// the tap, where its kernel takes them.
    pub join_udp: bool,
}

/// One remote declaration: `address-block[:port][=keyfile] [-i mac[,mac]*]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSpec {
    /// The address block; host bits are cleared.
    pub net: IpNet,
    /// The remote port, if given.
    pub port: Option<u16>,
    /// The transport key file, if given.
    pub key: Option<PathBuf>,
    /// MAC addresses dropped on this declaration's remotes, both directions.
    pub ignore: Vec<MacAddr>,
    /// `-r n` after a downlink: at most this many remotes from it at once
    /// (`None`: the default, `node::guard::DEFAULT_MAX_REMOTES`).
    pub max_remotes: Option<u16>,
}

impl RemoteSpec {
    /// An uplink is a full-length address with a port: a fixed peer we keep
    /// alive with heartbeats.
    pub fn is_uplink(&self) -> bool {
        self.port.is_some() && self.net.prefix_len() == self.net.max_prefix_len()
    }

    /// The uplink's address, for uplinks.
    pub fn uplink_addr(&self) -> Option<SocketAddr> {
        match (self.is_uplink(), self.port) {
            (true, Some(port)) => Some(SocketAddr::new(self.net.addr(), port)),
            _ => None,
        }
    }

    /// Does a (canonical, unmapped) source address fall under this declaration?
    ///
    /// An IPv6 block that covers IPv4-mapped space (`::/0`, `::ffff:0:0/96`)
    /// also matches IPv4 sources, as on the C rrqnet's all-mapped socket.
    pub fn matches(&self, src: SocketAddr) -> bool {
        let ip_ok = match (self.net, src.ip()) {
            (IpNet::V6(n), IpAddr::V4(v4)) => n.contains(&v4.to_ipv6_mapped()),
            (net, ip) => net.contains(&ip),
        };
        ip_ok && self.port.is_none_or(|p| p == src.port())
    }

    /// The prefix length as it applies to a source of the same family as
    /// `src`: an IPv6 block matching an IPv4 source counts its bits past
    /// the 96-bit mapped prefix.
    pub fn prefix_len_for(&self, src: SocketAddr) -> u8 {
        match (self.net, src.ip()) {
            (IpNet::V6(n), IpAddr::V4(_)) => n.prefix_len().saturating_sub(96),
            (net, _) => net.prefix_len(),
        }
    }
}

impl fmt::Display for RemoteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = self.net.prefix_len() == self.net.max_prefix_len();
        match (self.net, full) {
            (IpNet::V4(n), true) => write!(f, "{}", n.addr())?,
            (IpNet::V4(n), false) => write!(f, "{n}")?,
            (IpNet::V6(n), true) => write!(f, "[{}]", n.addr())?,
            (IpNet::V6(n), false) => write!(f, "[{n}]")?,
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        if self.key.is_some() {
            f.write_str("=<key>")?;
        }
        Ok(())
    }
}

/// The multicast channel: `group:port[=keyfile]`, IPv4 only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McastSpec {
    /// A group in 224.0.0.0/4.
    pub group: Ipv4Addr,
    /// The group's UDP port.
    pub port: u16,
    /// The transport key file, if given.
    pub key: Option<PathBuf>,
}

impl McastSpec {
    /// The group as a socket address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.group), self.port)
    }
}

/// A bad argument: the text as given, the option it was the value of, and
/// what was expected instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError {
    /// The offending argument, verbatim.
    pub arg: String,
    /// The option whose value it is (`-B`, `-t`, ...), if it is one.
    pub option: Option<String>,
    /// What was expected there.
    pub expected: String,
}

impl ArgError {
    pub(crate) fn new(arg: &str, expected: impl Into<String>) -> Self {
        ArgError { arg: arg.to_owned(), option: None, expected: expected.into() }
    }

    /// The same error, as the value of `option`.
    pub(crate) fn of_option(self, option: &str) -> Self {
        ArgError { option: Some(option.to_owned()), ..self }
    }
}

impl fmt::Display for ArgError {
    /// One line, always: control characters in the argument are escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.arg.is_empty() {
            return write!(f, "missing argument: {}", self.expected);
        }
        f.write_str("bad argument '")?;
        for c in self.arg.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_debug())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        f.write_str("'")?;
        if let Some(option) = &self.option {
            write!(f, " for {option}")?;
        }
        write!(f, ": {}", self.expected)
    }
}

impl std::error::Error for ArgError {}

/// The options, as listed when an unknown one is met.
pub(crate) const OPTIONS: &str =
    "options are -v, -4, -B n, -T n, -m mcast, -t tap, --user USER, --join-udp, -h, --version, all before the port";

/// Parses a UDP port, 1–65535.
pub fn parse_port(s: &str) -> Result<u16, ArgError> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 && s.bytes().all(|c| c.is_ascii_digit()) => Ok(p),
        _ => Err(ArgError::new(s, "expected a UDP port number (1-65535)")),
    }
}

/// Parses `-B`/`-T` counts, 1–1024.
pub fn parse_count(s: &str, what: &str) -> Result<u16, ArgError> {
    match s.parse::<u16>() {
        Ok(n) if (1..=1024).contains(&n) && s.bytes().all(|c| c.is_ascii_digit()) => Ok(n),
        _ => Err(ArgError::new(s, format!("expected a number of {what} (1-1024)"))),
    }
}

/// Parses the `-t` value: `-` for stdio, else a tap name as the kernel
/// accepts it (`dev_valid_name`): 1–15 bytes, not `.` or `..`, no `/`, `:`
/// or white space (the kernel's `isspace` includes byte 0xa0).
///
/// A name starting with `-` is refused too: `-t -v 1400` is far more likely a
/// forgotten tap name than a tap called `-v`.
pub fn parse_tap(s: &str) -> Result<LocalEnd, ArgError> {
    if s == "-" {
        return Ok(LocalEnd::Stdio);
    }
    if s.starts_with('-') {
        return Err(ArgError::new(
            s,
            "expected a tap interface name after -t, not an option (use '-' alone for stdin/stdout)",
        ));
    }
    let ok = !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && !s.bytes().any(|c| c == b'/' || c == b':' || c == 0xa0 || c.is_ascii_whitespace() || c.is_ascii_control());
    if ok {
        Ok(LocalEnd::Tap(s.to_owned()))
    } else {
        Err(ArgError::new(s, "expected '-' for stdio or a tap interface name of 1-15 bytes without '/', ':' or spaces"))
    }
}

/// Splits `text=keyfile` at the first `=`.
fn split_key<'a>(arg: &str, s: &'a str) -> Result<(&'a str, Option<PathBuf>), ArgError> {
    match s.split_once('=') {
        None => Ok((s, None)),
        Some((_, "")) => Err(ArgError::new(arg, "expected a key file path after '='")),
        Some((head, path)) => Ok((head, Some(PathBuf::from(path)))),
    }
}

/// Parses the multicast channel, `group:port[=keyfile]`.
pub fn parse_mcast(arg: &str) -> Result<McastSpec, ArgError> {
    let (head, key) = split_key(arg, arg)?;
    if head.contains('[') || head.bytes().filter(|&c| c == b':').count() > 1 {
        return Err(ArgError::new(
            arg,
            "the multicast channel is IPv4 only: expected group:port with a group in 224.0.0.0/4",
        ));
    }
    let Some((addr, port)) = head.split_once(':') else {
        return Err(ArgError::new(arg, "expected a multicast channel as group:port[=keyfile], e.g. 239.1.2.3:2000"));
    };
    let group: Ipv4Addr = addr
        .parse()
        .map_err(|_| ArgError::new(arg, "expected an IPv4 multicast group address (224.0.0.0/4) before ':port'"))?;
    if !group.is_multicast() {
        return Err(ArgError::new(
            arg,
            format!("{group} is not multicast: expected an IPv4 group in 224.0.0.0/4, e.g. 239.1.2.3"),
        ));
    }
    let port =
        parse_port(port).map_err(|_| ArgError::new(arg, "expected a multicast port number (1-65535) after ':'"))?;
    Ok(McastSpec { group, port, key })
}

/// Parses a remote declaration (without its `-i` list).
pub fn parse_remote(arg: &str, ipv4_only: bool) -> Result<RemoteSpec, ArgError> {
    let (head, key) = split_key(arg, arg)?;
    if head.is_empty() {
        return Err(ArgError::new(arg, "expected a remote declaration: address-block[:port][=keyfile]"));
    }
    let (net, port) = if let Some(rest) = head.strip_prefix('[') {
        let Some((block, after)) = rest.split_once(']') else {
            return Err(ArgError::new(arg, "expected ']' to close the bracketed IPv6 address block"));
        };
        let net = parse_v6_block(arg, block)?;
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(p) => {
                    Some(parse_port(p).map_err(|_| ArgError::new(arg, "expected a port number (1-65535) after ']:'"))?)
                }
                None => return Err(ArgError::new(arg, "expected ':port' or '=keyfile' after ']'")),
            },
        };
        (net, port)
    } else if head.bytes().filter(|&c| c == b':').count() >= 2 {
        if head.split(':').next().is_some_and(|first| first.contains('.')) {
            return Err(ArgError::new(arg, "expected an IPv4 block a.b.c.d[/n][:port] with one ':port' at most"));
        }
        (parse_v6_block(arg, head)?, None)
    } else {
        let (block, port) = match head.split_once(':') {
            Some((b, p)) => {
                (b, Some(parse_port(p).map_err(|_| ArgError::new(arg, "expected a port number (1-65535) after ':'"))?))
            }
            None => (head, None),
        };
        (parse_v4_block(arg, block)?, port)
    };
    let net = unmap(net);
    if ipv4_only && matches!(net, IpNet::V6(_)) {
        return Err(ArgError::new(arg, "IPv6 remotes cannot be used with -4 (IPv4-only socket)"));
    }
    let spec = RemoteSpec { net, port, key, ignore: Vec::new(), max_remotes: None };
    if let Some(addr) = spec.uplink_addr() {
        check_uplink(arg, addr.ip())?;
    }
    Ok(spec)
}

/// An IPv4-mapped block (`::ffff:a.b.c.d/n`, n ≥ 96) is the IPv4 block it
/// maps: sources are matched in their unmapped form, and `-4` can serve it.
fn unmap(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(n) if n.prefix_len() >= 96 => match n.addr().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, n.prefix_len() - 96).map(IpNet::V4).unwrap_or(net),
            None => net,
        },
        _ => net,
    }
}

/// An uplink is a peer we send to unasked, so it must be one unicast host.
fn check_uplink(arg: &str, ip: IpAddr) -> Result<(), ArgError> {
    let problem = if ip.is_unspecified() {
        "an uplink needs a host address, not the unspecified address (a downlink for any host is 0.0.0.0/0 or ::/0)"
    } else if ip.is_multicast() {
        "an uplink needs a unicast host address; a multicast group is declared with -m"
    } else if ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
        "an uplink needs a unicast host address, not the broadcast address"
    } else {
        return Ok(());
    };
    Err(ArgError::new(arg, problem))
}

fn parse_v4_block(arg: &str, block: &str) -> Result<IpNet, ArgError> {
    let (addr, len) = split_prefix(block);
    let addr: Ipv4Addr = addr.parse().map_err(|_| {
        if addr.contains('[') || addr.contains(']') {
            ArgError::new(arg, "expected the whole IPv6 block in brackets, as [addr[/n]]:port")
        } else if addr.contains(|c: char| c.is_ascii_alphabetic()) {
            ArgError::new(
                arg,
                "expected a numeric IPv4 address a.b.c.d[/n][:port] (host names are not resolved), \
                 or an IPv6 block",
            )
        } else {
            ArgError::new(arg, "expected an IPv4 address a.b.c.d before '/n', ':port' or '=keyfile'")
        }
    })?;
    let len = match len {
        None => 32,
        Some(l) => {
            parse_len(l, 32).ok_or_else(|| ArgError::new(arg, "expected an IPv4 prefix length 0-32 after '/'"))?
        }
    };
    let net =
        Ipv4Net::new(addr, len).map_err(|_| ArgError::new(arg, "expected an IPv4 prefix length 0-32 after '/'"))?;
    Ok(IpNet::V4(net.trunc()))
}

fn parse_v6_block(arg: &str, block: &str) -> Result<IpNet, ArgError> {
    let (addr, len) = split_prefix(block);
    let addr: std::net::Ipv6Addr = addr.parse().map_err(|_| {
        if addr.parse::<Ipv4Addr>().is_ok() {
            ArgError::new(arg, "brackets are for IPv6; write an IPv4 block as a.b.c.d[/n][:port]")
        } else {
            ArgError::new(arg, "expected an IPv6 address block addr[/n], or [addr[/n]]:port with brackets")
        }
    })?;
    let len = match len {
        None => 128,
        Some(l) => {
            parse_len(l, 128).ok_or_else(|| ArgError::new(arg, "expected an IPv6 prefix length 0-128 after '/'"))?
        }
    };
    let net =
        Ipv6Net::new(addr, len).map_err(|_| ArgError::new(arg, "expected an IPv6 prefix length 0-128 after '/'"))?;
    Ok(IpNet::V6(net.trunc()))
}

fn split_prefix(block: &str) -> (&str, Option<&str>) {
    match block.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (block, None),
    }
}

fn parse_len(s: &str, max: u8) -> Option<u8> {
    if s.is_empty() || s.len() > 3 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse::<u8>().ok().filter(|&n| n <= max)
}

/// Parses an `-i` list: `mac[,mac]*`.
pub fn parse_ignore_list(arg: &str) -> Result<Vec<MacAddr>, ArgError> {
    arg.split(',').map(|m| m.parse::<MacAddr>()).collect::<Result<Vec<_>, _>>().map_err(|_| {
        ArgError::new(arg, "expected a comma-separated list of MAC addresses like 02:00:00:00:00:01,02:00:00:00:00:02")
    })
}

/// Most remotes `-r` may allow one declaration: the switch's bound on all
/// remotes at once.
pub const MAX_REMOTES_PER_DECLARATION: u16 = 4096;

/// Parses the value of `-r`: remotes one downlink may have at once.
pub fn parse_max_remotes(s: &str) -> Result<u16, ArgError> {
    match s.parse::<u16>() {
        Ok(n) if (1..=MAX_REMOTES_PER_DECLARATION).contains(&n) && s.bytes().all(|c| c.is_ascii_digit()) => Ok(n),
        _ => Err(ArgError::new(s, format!("expected a number of remotes (1-{MAX_REMOTES_PER_DECLARATION}) after -r"))),
    }
}

/// Parses a user name for `--user`: what `useradd` accepts, so that an
/// option or an empty string is never taken for one.
pub fn parse_user(s: &str) -> Result<String, ArgError> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && !s.starts_with('-')
        && s.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'$'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(ArgError::new(s, "expected a user name after --user"))
    }
}

/// Parses what follows the options:
/// `[port] (remote [-i mac[,mac]*] [-r n])*`.
pub fn parse_positionals(
    args: &[String],
    ipv4_only: bool,
    has_mcast: bool,
) -> Result<(Option<u16>, Vec<RemoteSpec>), ArgError> {
    let mut it = args.iter().peekable();
    let port = match it.peek() {
        None if has_mcast => None,
        None => {
            return Err(ArgError::new(
                "",
                "expected a UDP port number (1-65535); it may be left out only with -m and no remotes",
            ))
        }
        Some(first) if first.starts_with('-') && first.len() > 1 => {
            return Err(ArgError::new(first, format!("unknown option ({OPTIONS})")))
        }
        Some(first) => {
            let p = parse_port(first).map_err(|e| match parse_remote(first, ipv4_only) {
                Ok(_) => ArgError::new(first, "expected the UDP port (1-65535) before the first remote declaration"),
                Err(_) => e,
            })?;
            it.next();
            Some(p)
        }
    };
    let mut remotes: Vec<RemoteSpec> = Vec::new();
    while let Some(arg) = it.next() {
        if arg == "-i" {
            let Some(last) = remotes.last_mut() else {
                return Err(ArgError::new(arg, "-i must follow a remote declaration"));
            };
            let Some(list) = it.next() else {
                return Err(ArgError::new(arg, "expected a list of MAC addresses after -i"));
            };
            last.ignore.extend(parse_ignore_list(list)?);
        } else if arg == "-r" {
            let Some(last) = remotes.last_mut() else {
                return Err(ArgError::new(arg, "-r must follow a downlink declaration"));
            };
            let Some(n) = it.next() else {
                return Err(ArgError::new(arg, "expected a number of remotes after -r"));
            };
            let n = parse_max_remotes(n).map_err(|e| e.of_option("-r"))?;
            if last.is_uplink() {
                return Err(ArgError::new(
                    &last.to_string(),
                    "-r limits the remotes of a downlink mask; an uplink is one remote",
                ));
            }
            if last.max_remotes.replace(n).is_some() {
                return Err(ArgError::new(arg, "-r may be given once per declaration"));
            }
        } else if arg.starts_with('-') {
            return Err(ArgError::new(
                arg,
                "options must come before the port; only -i and -r may follow a remote declaration",
            ));
        } else {
            remotes.push(parse_remote(arg, ipv4_only)?);
        }
    }
    Ok((port, remotes))
}

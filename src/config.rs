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
//! downlink mask.

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
    pub fn matches(&self, src: SocketAddr) -> bool {
        self.net.contains(&src.ip()) && self.port.is_none_or(|p| p == src.port())
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

/// A bad argument: the text as given, and what was expected instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError {
    /// The offending argument, verbatim.
    pub arg: String,
    /// What was expected there.
    pub expected: String,
}

impl ArgError {
    pub(crate) fn new(arg: &str, expected: impl Into<String>) -> Self {
        ArgError { arg: arg.to_owned(), expected: expected.into() }
    }
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.arg.is_empty() {
            write!(f, "missing argument: {}", self.expected)
        } else {
            write!(f, "bad argument '{}': {}", self.arg, self.expected)
        }
    }
}

impl std::error::Error for ArgError {}

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

/// Parses a tap name: 1–15 bytes, no `/`, no white space.
pub fn parse_tap(s: &str) -> Result<LocalEnd, ArgError> {
    if s == "-" {
        return Ok(LocalEnd::Stdio);
    }
    let ok = !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && !s.bytes().any(|c| c == b'/' || c == b':' || c.is_ascii_whitespace() || c.is_ascii_control());
    if ok {
        Ok(LocalEnd::Tap(s.to_owned()))
    } else {
        Err(ArgError::new(
            s,
            "expected '-' for stdio or a tap interface name of 1-15 characters without '/', ':' or spaces",
        ))
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
    let Some((addr, port)) = head.rsplit_once(':') else {
        return Err(ArgError::new(arg, "expected a multicast channel as group:port[=keyfile], e.g. 239.1.2.3:2000"));
    };
    let group: Ipv4Addr = addr
        .parse()
        .map_err(|_| ArgError::new(arg, "expected an IPv4 multicast group address (224.0.0.0/4) before ':port'"))?;
    if !group.is_multicast() {
        return Err(ArgError::new(arg, format!("{group} is not an IPv4 multicast address (224.0.0.0/4)")));
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
    if ipv4_only && matches!(net, IpNet::V6(_)) {
        return Err(ArgError::new(arg, "IPv6 remotes cannot be used with -4 (IPv4-only socket)"));
    }
    Ok(RemoteSpec { net, port, key, ignore: Vec::new() })
}

fn parse_v4_block(arg: &str, block: &str) -> Result<IpNet, ArgError> {
    let (addr, len) = split_prefix(block);
    let addr: Ipv4Addr = addr.parse().map_err(|_| {
        if addr.contains(|c: char| c.is_ascii_hexdigit() && !c.is_ascii_digit())
            || addr.contains('[')
            || addr.contains(']')
        {
            ArgError::new(arg, "expected an IPv4 address block a.b.c.d[/n][:port], or an IPv6 block in [brackets]")
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
    let addr: std::net::Ipv6Addr = addr
        .parse()
        .map_err(|_| ArgError::new(arg, "expected an IPv6 address block addr[/n], or [addr[/n]]:port with brackets"))?;
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

/// Parses what follows the options: `[port] (remote [-i mac[,mac]*])*`.
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
            return Err(ArgError::new(
                first,
                "unknown option (options are -v, -4, -B n, -T n, -m mcast, -t tap, before the port)",
            ))
        }
        Some(first) => {
            let p = parse_port(first)?;
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
        } else if arg.starts_with('-') {
            return Err(ArgError::new(
                arg,
                "options must come before the port; only -i may follow a remote declaration",
            ));
        } else {
            remotes.push(parse_remote(arg, ipv4_only)?);
        }
    }
    Ok((port, remotes))
}

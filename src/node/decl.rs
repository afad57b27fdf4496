//! The declarations: which sources may send to us, and what each one's
//! remotes get (SPEC section 2).
//!
//! One table holds every fact about a declaration: its address block and
//! port (for the remote declarations of the command line), its kind (uplink,
//! downlink mask, or the multicast group), its ignore list and its key. A
//! declaration's index in the table is its [`DeclId`], which the switch
//! keeps on every port so the node can find a target's key.
//!
//! A datagram is accepted only from a source that some declaration covers.
//! When several do, an uplink that names the source exactly wins, then the
//! longest prefix, then the declaration given first.

use std::net::{IpAddr, SocketAddr};

use crate::config::RemoteSpec;
use crate::mac::MacAddr;
use crate::switch::DeclId;

/// Folds an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) to plain IPv4, so a
/// dual-stack socket's sources match IPv4 declarations.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

/// What a declaration declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeclKind {
    /// A fixed peer we keep alive with heartbeats.
    Uplink(SocketAddr),
    /// A mask of sources that may become remotes by sending to us.
    Downlink,
    /// The multicast group (`-m`): one persistent remote.
    Multicast,
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Declaration {
    /// Uplink, downlink mask or the group.
    pub kind: DeclKind,
    /// The declaration as given (`None` for the multicast group).
    pub spec: Option<RemoteSpec>,
    /// Index of its key in the node's keys, if keyed.
    pub key: Option<usize>,
}

impl Declaration {
    /// MAC addresses dropped on this declaration's remotes.
    pub fn ignore(&self) -> &[MacAddr] {
        self.spec.as_ref().map_or(&[], |s| s.ignore.as_slice())
    }
}

impl std::fmt::Display for Declaration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.spec {
            Some(s) => write!(f, "{s}"),
            None => f.write_str("multicast group"),
        }
    }
}

/// The declarations, in command-line order, the multicast group's (if any)
/// last; a declaration's index is its [`DeclId`].
#[derive(Debug, Clone, Default)]
pub struct Declarations {
    rows: Vec<Declaration>,
}

impl Declarations {
    /// The remote declarations of the command line, each with the index of
    /// its key.
    pub fn new(remotes: impl IntoIterator<Item = (RemoteSpec, Option<usize>)>) -> Self {
        let rows = remotes
            .into_iter()
            .map(|(spec, key)| {
                let kind = match spec.uplink_addr() {
                    Some(addr) => DeclKind::Uplink(addr),
                    None => DeclKind::Downlink,
                };
                Declaration { kind, spec: Some(spec), key }
            })
            .collect();
        Declarations { rows }
    }

    /// Adds the multicast group's declaration; returns its id.
    pub fn add_multicast(&mut self, key: Option<usize>) -> DeclId {
        self.rows.push(Declaration { kind: DeclKind::Multicast, spec: None, key });
        (self.rows.len() - 1) as DeclId
    }

    /// All declarations with their ids.
    pub fn iter(&self) -> impl Iterator<Item = (DeclId, &Declaration)> {
        self.rows.iter().enumerate().map(|(i, s)| (i as DeclId, s))
    }

    /// The declaration with this id.
    pub fn get(&self, id: DeclId) -> Option<&Declaration> {
        self.rows.get(id as usize)
    }

    /// The key of declaration `id`, if it has one.
    pub fn key_of(&self, id: DeclId) -> Option<usize> {
        self.rows.get(id as usize).and_then(|d| d.key)
    }

    /// Number of declarations.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The ignore lists, indexed by [`DeclId`], as the switch takes them.
    pub fn ignore_lists(&self) -> Vec<Vec<MacAddr>> {
        self.rows.iter().map(|d| d.ignore().to_vec()).collect()
    }

    /// The remote declaration that admits `src`, if any. The multicast
    /// group's declaration admits no unicast source.
    pub fn match_source(&self, src: SocketAddr) -> Option<DeclId> {
        let src = canonical(src);
        let mut best: Option<(DeclId, (bool, u8))> = None;
        for (id, decl) in self.iter() {
            let Some(spec) = &decl.spec else { continue };
            if !spec.matches(src) {
                continue;
            }
            let rank = (spec.uplink_addr() == Some(src), spec.prefix_len_for(src));
            if best.is_none_or(|(_, r)| rank > r) {
                best = Some((id, rank));
            }
        }
        best.map(|(id, _)| id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_remote;

    fn decls(list: &[&str]) -> Declarations {
        Declarations::new(list.iter().map(|s| (parse_remote(s, false).unwrap(), None)))
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn prefix_and_port_rules() {
        let d = decls(&["10.2.0.0/16:1400", "10.2.3.0/24", "10.2.3.4:1400", "[2001:db8::/32]"]);
        assert_eq!(d.match_source(sa("10.2.9.9:1400")), Some(0));
        assert_eq!(d.match_source(sa("10.2.9.9:1401")), None, "port restricts a downlink");
        assert_eq!(d.match_source(sa("10.2.3.9:7")), Some(1), "longest prefix");
        assert_eq!(d.match_source(sa("10.2.3.4:1400")), Some(2), "exact uplink first");
        assert_eq!(d.match_source(sa("10.2.3.4:1401")), Some(1));
        assert_eq!(d.match_source(sa("[2001:db8::7]:9")), Some(3));
        assert_eq!(d.match_source(sa("192.0.2.1:1400")), None);
    }

    #[test]
    fn mapped_sources_match_ipv4() {
        let d = decls(&["192.0.2.0/24"]);
        assert_eq!(d.match_source(sa("[::ffff:192.0.2.7]:5")), Some(0));
        assert_eq!(canonical(sa("[::ffff:192.0.2.7]:5")), sa("192.0.2.7:5"));
    }

    #[test]
    fn ipv6_blocks_covering_mapped_space_match_ipv4() {
        let d = decls(&["::/0", "192.0.2.0/24"]);
        assert_eq!(d.match_source(sa("198.51.100.1:5")), Some(0));
        assert_eq!(d.match_source(sa("192.0.2.1:5")), Some(1), "the /24 is longer than ::/0's 0 IPv4 bits");
        assert_eq!(d.match_source(sa("[2001:db8::1]:5")), Some(0));
    }

    #[test]
    fn first_declared_breaks_ties() {
        let d = decls(&["192.0.2.0/24", "192.0.2.0/24:9"]);
        assert_eq!(d.match_source(sa("192.0.2.1:9")), Some(0));
    }
}

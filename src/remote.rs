//! Matching UDP sources to remote declarations (SPEC section 2).
//!
//! A datagram is accepted only from a source that some declaration covers.
//! When several do, an uplink that names the source exactly wins, then the
//! longest prefix, then the declaration given first.

use std::net::{IpAddr, SocketAddr};

use crate::config::RemoteSpec;
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

/// The remote declarations, in command-line order; a declaration's index is
/// its [`DeclId`].
#[derive(Debug, Clone, Default)]
pub struct Declarations {
    specs: Vec<RemoteSpec>,
}

impl Declarations {
    /// Wraps the declarations from the command line.
    pub fn new(specs: Vec<RemoteSpec>) -> Self {
        Declarations { specs }
    }

    /// All declarations with their ids.
    pub fn iter(&self) -> impl Iterator<Item = (DeclId, &RemoteSpec)> {
        self.specs.iter().enumerate().map(|(i, s)| (i as DeclId, s))
    }

    /// The declaration with this id.
    pub fn get(&self, id: DeclId) -> Option<&RemoteSpec> {
        self.specs.get(id as usize)
    }

    /// Number of declarations.
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// The declaration that admits `src` (canonical form), if any.
    pub fn match_source(&self, src: SocketAddr) -> Option<DeclId> {
        let src = canonical(src);
        let mut best: Option<(DeclId, (bool, u8))> = None;
        for (id, spec) in self.iter() {
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
        Declarations::new(list.iter().map(|s| parse_remote(s, false).unwrap()).collect())
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

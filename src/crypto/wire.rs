//! The keyed datagram header: its layout, and the newtypes it is made of.
//!
//! This file is the only place that knows the byte offsets; the layout is
//! documented byte by byte in the [module docs](super). A header is parsed
//! once, by [`Header::parse`], which does the cheap checks (length, version,
//! type) and nothing else: it says nothing about authenticity.

use std::fmt;

/// The format version in byte 0. A change of the wire format or of the key
/// derivation gets a new number.
pub const VERSION: u8 = 1;
/// The length of the header, the authenticated associated data.
pub const HEADER_LEN: usize = 34;
/// The length of the Poly1305 tag after the ciphertext.
pub const TAG_LEN: usize = 16;
/// What encryption adds to a payload: the header in front and the tag after.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;

const OFF_VERSION: usize = 0;
const OFF_KIND: usize = 1;
const OFF_SESSION: usize = 2;
const OFF_COUNTER: usize = 18;
const OFF_START: usize = 26;

/// A sender's session: 128 random bits picked when the session is created.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub [u8; 16]);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What a keyed datagram carries.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Kind {
    /// One Ethernet frame (a non-empty payload).
    Data,
    /// A heartbeat: an authenticated empty payload.
    Heartbeat,
}

impl Kind {
    /// The byte on the wire.
    pub const fn to_byte(self) -> u8 {
        match self {
            Kind::Data => 1,
            Kind::Heartbeat => 2,
        }
    }

    /// The kind for a byte on the wire, if it names one.
    pub const fn from_byte(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Data),
            2 => Some(Kind::Heartbeat),
            _ => None,
        }
    }
}

/// A parsed header. Parsing checks only the shape; the tag decides whether
/// any of it is true.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Header {
    /// Data or heartbeat.
    pub kind: Kind,
    /// The sender's session.
    pub session: SessionId,
    /// The per-session message counter, which is also the nonce.
    pub counter: u64,
    /// When the session was created, in unix seconds (the sender's clock).
    pub start: u64,
}

impl Header {
    /// Reads the header at the start of `datagram`: `None` when it is shorter
    /// than [`HEADER_LEN`], of another version, or of an unknown type.
    pub fn parse(datagram: &[u8]) -> Option<Header> {
        let h: &[u8; HEADER_LEN] = datagram.get(..HEADER_LEN)?.try_into().ok()?;
        if h[OFF_VERSION] != VERSION {
            return None;
        }
        let kind = Kind::from_byte(h[OFF_KIND])?;
        Some(Header {
            kind,
            session: SessionId(array(h, OFF_SESSION)),
            counter: u64::from_be_bytes(array(h, OFF_COUNTER)),
            start: u64::from_be_bytes(array(h, OFF_START)),
        })
    }

    /// The header's bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[OFF_VERSION] = VERSION;
        h[OFF_KIND] = self.kind.to_byte();
        h[OFF_SESSION..OFF_COUNTER].copy_from_slice(&self.session.0);
        h[OFF_COUNTER..OFF_START].copy_from_slice(&self.counter.to_be_bytes());
        h[OFF_START..].copy_from_slice(&self.start.to_be_bytes());
        h
    }
}

fn array<const N: usize>(h: &[u8; HEADER_LEN], off: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&h[off..off + N]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_add_up_to_the_header_length() {
        assert_eq!(OFF_START + 8, HEADER_LEN);
        assert_eq!(OVERHEAD, 50);
    }

    #[test]
    fn header_round_trips_and_has_the_documented_layout() {
        let h = Header {
            kind: Kind::Heartbeat,
            session: SessionId(*b"0123456789abcdef"),
            counter: 0x0102_0304_0506_0708,
            start: 0x1112_1314_1516_1718,
        };
        let b = h.to_bytes();
        assert_eq!(b[0], 1);
        assert_eq!(b[1], 2);
        assert_eq!(&b[2..18], b"0123456789abcdef");
        assert_eq!(b[18..26], [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(b[26..34], [0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18]);
        assert_eq!(Header::parse(&b), Some(h));
    }

    #[test]
    fn parse_rejects_short_other_versions_and_unknown_types() {
        let b = Header { kind: Kind::Data, session: SessionId([7; 16]), counter: 1, start: 2 }.to_bytes();
        for n in 0..HEADER_LEN {
            assert_eq!(Header::parse(&b[..n]), None, "length {n}");
        }
        for v in (0..=255u8).filter(|&v| v != VERSION) {
            let mut c = b;
            c[0] = v;
            assert_eq!(Header::parse(&c), None, "version {v}");
        }
        for t in (0..=255u8).filter(|&t| t != 1 && t != 2) {
            let mut c = b;
            c[1] = t;
            assert_eq!(Header::parse(&c), None, "type {t}");
        }
    }
}

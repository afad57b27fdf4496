//! Ethernet addresses and a checked view of an Ethernet frame.
//!
//! Everything the switch knows about a frame it reads through [`Frame`], which
//! is only ever built by [`Frame::new_checked`]: a slice shorter than an
//! Ethernet header never reaches the forwarding logic.

use std::fmt;
use std::str::FromStr;

/// A 48-bit IEEE 802 MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The broadcast address `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// The all-zero address, never a valid source.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// True for group addresses (the I/G bit), broadcast included.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// True for `ff:ff:ff:ff:ff:ff`.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// True for the all-zero address.
    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }

    /// A source address a switch may learn: a unicast, non-zero address.
    pub fn is_learnable(&self) -> bool {
        !self.is_multicast() && !self.is_zero()
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a string is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseMacError;

impl fmt::Display for ParseMacError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected a MAC address of six hex octets like 02:00:5e:10:00:01")
    }
}

impl std::error::Error for ParseMacError {}

impl FromStr for MacAddr {
    type Err = ParseMacError;

    /// Accepts six one- or two-digit hex octets separated by `:` or `-`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for byte in out.iter_mut() {
            let part = parts.next().ok_or(ParseMacError)?;
            if part.is_empty() || part.len() > 2 || !part.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(ParseMacError);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| ParseMacError)?;
        }
        if parts.next().is_some() {
            return Err(ParseMacError);
        }
        Ok(MacAddr(out))
    }
}

/// Length of an Ethernet II header: destination, source, EtherType.
pub const ETH_HEADER_LEN: usize = 14;

/// A read-only view of an Ethernet frame at least one header long.
#[derive(Clone, Copy)]
pub struct Frame<'a> {
    bytes: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Wraps `bytes` if it is long enough to hold an Ethernet header.
    pub fn new_checked(bytes: &'a [u8]) -> Option<Frame<'a>> {
        (bytes.len() >= ETH_HEADER_LEN).then_some(Frame { bytes })
    }

    /// The destination address.
    pub fn dst(&self) -> MacAddr {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.bytes[0..6]);
        MacAddr(m)
    }

    /// The source address.
    pub fn src(&self) -> MacAddr {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.bytes[6..12]);
        MacAddr(m)
    }

    /// The EtherType (or 802.3 length) field.
    pub fn ethertype(&self) -> u16 {
        u16::from_be_bytes([self.bytes[12], self.bytes[13]])
    }

    /// The whole frame.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let m: MacAddr = "02:0:5E:10:00:1".parse().unwrap();
        assert_eq!(m.0, [2, 0, 0x5e, 0x10, 0, 1]);
        assert_eq!(m.to_string(), "02:00:5e:10:00:01");
        assert_eq!("02-00-5e-10-00-01".parse::<MacAddr>().unwrap(), m);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "02:00:5e:10:00",
            "02:00:5e:10:00:01:02",
            "02:00:5e:10:00:1g",
            "020:00:5e:10:00:01",
            "02::5e:10:00:01",
            "02:00-5e:10:00:01",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn classifies() {
        assert!(MacAddr::BROADCAST.is_multicast() && MacAddr::BROADCAST.is_broadcast());
        assert!(MacAddr([1, 0, 0x5e, 0, 0, 1]).is_multicast());
        assert!(!MacAddr::ZERO.is_learnable());
        assert!(MacAddr([2, 0, 0, 0, 0, 1]).is_learnable());
    }

    #[test]
    fn frame_view() {
        assert!(Frame::new_checked(&[0u8; 13]).is_none());
        let mut b = [0u8; 14];
        b[0..6].copy_from_slice(&[0xff; 6]);
        b[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
        b[12] = 0x08;
        b[13] = 0x06;
        let f = Frame::new_checked(&b).unwrap();
        assert!(f.dst().is_broadcast());
        assert_eq!(f.src(), MacAddr([2, 0, 0, 0, 0, 9]));
        assert_eq!(f.ethertype(), 0x0806);
    }
}

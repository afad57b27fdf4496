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

    /// The Bridge Group Address `01:80:c2:00:00:00`, where STP BPDUs go.
    pub const STP: MacAddr = MacAddr([0x01, 0x80, 0xc2, 0x00, 0x00, 0x00]);
    /// The MAC Control address `01:80:c2:00:00:01` of 802.3x PAUSE (and
    /// 802.1Qbb priority flow control) frames.
    pub const PAUSE: MacAddr = MacAddr([0x01, 0x80, 0xc2, 0x00, 0x00, 0x01]);
    /// The Slow Protocols address `01:80:c2:00:00:02`: LACP, LAMP markers,
    /// 802.3ah link OAM, SyncE ESMC.
    pub const SLOW_PROTOCOLS: MacAddr = MacAddr([0x01, 0x80, 0xc2, 0x00, 0x00, 0x02]);

    /// The last octet of an IEEE 802.1 reserved link-local group address,
    /// `01:80:c2:00:00:00` to `01:80:c2:00:00:0f` (the block the Linux
    /// bridge calls link-local and masks with `group_fwd_mask`); `None` for
    /// every other address.
    pub fn link_local_group(&self) -> Option<u8> {
        let b = self.0;
        (b[..5] == [0x01, 0x80, 0xc2, 0x00, 0x00] && b[5] <= 0x0f).then_some(b[5])
    }

    /// True for the reserved link-local group addresses
    /// `01:80:c2:00:00:0X` (see [`MacAddr::link_local_group`]).
    pub fn is_link_local(&self) -> bool {
        self.link_local_group().is_some()
    }

    /// True for [`MacAddr::PAUSE`] and [`MacAddr::SLOW_PROTOCOLS`]: the
    /// group addresses of protocols that run between the two MACs of one
    /// physical link and that no bridge forwards, whatever its settings
    /// (Linux refuses them in `group_fwd_mask`).
    pub fn is_link_control(&self) -> bool {
        matches!(self.link_local_group(), Some(0x01 | 0x02))
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

/// The EtherType of 802.3 MAC Control frames (PAUSE, priority flow
/// control). The MAC Control sublayer of the receiving port consumes them
/// whatever their destination address; they never reach a bridge's relay.
pub const ETHERTYPE_MAC_CONTROL: u16 = 0x8808;

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

    /// True for a frame that belongs to one physical link and that no bridge
    /// forwards: one to [`MacAddr::PAUSE`] or [`MacAddr::SLOW_PROTOCOLS`],
    /// or a MAC Control frame ([`ETHERTYPE_MAC_CONTROL`]) to any address (a
    /// PAUSE may also be sent to the port's own unicast address). The switch
    /// drops these before learning from them.
    ///
    /// The IEEE 802.1 reserved group addresses `01:80:c2:00:00:0X` are
    /// link-local: a standard bridge consumes or drops them instead of
    /// relaying them. rrqnet is a virtual cable between bridges and hosts,
    /// so it forwards what a cable carries and drops only what cannot cross
    /// even a configurable bridge. The Linux bridge's `br_handle_frame` is
    /// the reference, address by address:
    ///
    /// - `00`, STP BPDUs: forwarded. Linux forwards them when STP is off
    ///   (the default), "to keep loop detection": bridges at the ends that
    ///   run STP must see each other's BPDUs through the cable, or a second
    ///   path between them makes a loop nobody detects.
    /// - `01`, 802.3x PAUSE and priority flow control: dropped. Linux drops
    ///   them unconditionally. Flow control is between one MAC and its link
    ///   partner; relayed, a guest could pause a real switch port behind a
    ///   far-end bridge. Any frame of the MAC Control EtherType 0x8808 is
    ///   dropped too, whatever its address, since the receiving port's MAC
    ///   consumes it.
    /// - `02`, slow protocols (LACP, markers, link OAM, SyncE): dropped.
    ///   Linux never forwards them (`BR_GROUPFWD_RESTRICTED` refuses the
    ///   bit in `group_fwd_mask`). Relayed, two ends would negotiate a link
    ///   aggregate with each other through a path that is no single link.
    /// - `03` to `0f` (802.1X PAE at `03`, LLDP at `0e`, the rest reserved):
    ///   forwarded. Linux keeps them by default but lets each of them be
    ///   forwarded through `group_fwd_mask`, and that is how a bridge is made
    ///   transparent for 802.1X authentication or LLDP neighbours across it;
    ///   a cable is transparent, and rrqnet has no mask to set.
    ///
    /// Every other multicast address is switched as usual.
    pub fn is_link_control(&self) -> bool {
        self.dst().is_link_control() || self.ethertype() == ETHERTYPE_MAC_CONTROL
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
    fn link_local_group_addresses() {
        for last in 0..=0x0f {
            let m = MacAddr([0x01, 0x80, 0xc2, 0, 0, last]);
            assert_eq!(m.link_local_group(), Some(last), "{m}");
            assert!(m.is_link_local() && m.is_multicast());
            assert_eq!(m.is_link_control(), last == 1 || last == 2, "{m}");
        }
        assert_eq!(MacAddr::STP.link_local_group(), Some(0));
        assert_eq!(MacAddr::PAUSE.to_string(), "01:80:c2:00:00:01");
        assert_eq!(MacAddr::SLOW_PROTOCOLS.to_string(), "01:80:c2:00:00:02");
        for other in [
            MacAddr([0x01, 0x80, 0xc2, 0, 0, 0x10]), // all bridges, not link-local
            MacAddr([0x01, 0x80, 0xc2, 0, 0, 0x21]), // GVRP
            MacAddr([0x01, 0x80, 0xc2, 0, 0x01, 0x01]),
            MacAddr([0x01, 0x80, 0xc3, 0, 0, 0x01]),
            MacAddr([0x03, 0x80, 0xc2, 0, 0, 0x01]),
            MacAddr([0x00, 0x80, 0xc2, 0, 0, 0x01]), // unicast look-alike
            MacAddr::BROADCAST,
            MacAddr::ZERO,
        ] {
            assert_eq!(other.link_local_group(), None, "{other}");
            assert!(!other.is_link_local() && !other.is_link_control(), "{other}");
        }
    }

    #[test]
    fn link_control_frames() {
        let frame = |dst: MacAddr, ethertype: u16| {
            let mut b = [0u8; 60];
            b[0..6].copy_from_slice(&dst.0);
            b[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
            b[12..14].copy_from_slice(&ethertype.to_be_bytes());
            b
        };
        let is = |dst, ethertype| Frame::new_checked(&frame(dst, ethertype)).unwrap().is_link_control();
        assert!(is(MacAddr::PAUSE, ETHERTYPE_MAC_CONTROL));
        assert!(is(MacAddr::SLOW_PROTOCOLS, 0x8809));
        // By address alone, and by EtherType alone.
        assert!(is(MacAddr::PAUSE, 0x0800));
        assert!(is(MacAddr([2, 0, 0, 0, 0, 2]), ETHERTYPE_MAC_CONTROL));
        assert!(is(MacAddr::BROADCAST, ETHERTYPE_MAC_CONTROL));
        assert!(!is(MacAddr::STP, 0x0026));
        assert!(!is(MacAddr([0x01, 0x80, 0xc2, 0, 0, 0x0e]), 0x88cc));
        assert!(!is(MacAddr([2, 0, 0, 0, 0, 2]), 0x8809));
        assert!(!is(MacAddr::BROADCAST, 0x0806));
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

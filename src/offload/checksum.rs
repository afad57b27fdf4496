//! The Internet checksum (RFC 1071) as the offloads need it: sums of byte
//! runs that can be added together, so a segment's checksum is its
//! pseudo-header, its TCP header and its payload summed separately.
//!
//! Bytes are summed as native-endian 32-bit words (which the compiler turns
//! into wide vector adds) and byte-swapped once at the end: a one's-complement
//! sum does not care about byte order as long as every word is read the same
//! way (RFC 1071, section 2(B)). Every byte run but the last of a checksum
//! must have an even length, which headers always have.

/// A one's-complement sum of big-endian 16-bit words, not yet folded.
///
/// The inner value stays far below `u64::MAX`: each added byte run is
/// folded to 16 bits first.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub(crate) struct Sum(u64);

impl Sum {
    /// The sum of `data`, an odd last byte padded with a zero.
    #[inline]
    pub fn of(data: &[u8]) -> Sum {
        Sum(u64::from(be_sum(data)))
    }

    /// Adds the words of `data` (see [`Sum::of`]).
    #[inline]
    pub fn bytes(self, data: &[u8]) -> Sum {
        Sum(self.0 + u64::from(be_sum(data)))
    }

    /// Adds one 16-bit word.
    #[inline]
    pub fn word(self, w: u16) -> Sum {
        Sum(self.0 + u64::from(w))
    }

    /// The folded 16-bit sum, not complemented: what a partial checksum
    /// field holds (a pseudo-header sum), and 0xffff over bytes whose
    /// checksum is right.
    #[inline]
    pub fn fold(self) -> u16 {
        fold(self.0)
    }

    /// The checksum to store: the complement of the folded sum.
    #[inline]
    pub fn finish(self) -> u16 {
        !self.fold()
    }
}

#[inline]
fn fold(mut s: u64) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The folded sum of `data` as big-endian words.
#[inline]
fn be_sum(data: &[u8]) -> u16 {
    // Four independent accumulators over 16-byte blocks keep the adds apart;
    // a u64 holds 2^32 u32 words, far more than a frame has.
    let mut acc = [0u64; 4];
    let mut blocks = data.chunks_exact(16);
    for b in &mut blocks {
        for (k, a) in acc.iter_mut().enumerate() {
            *a += u64::from(u32::from_ne_bytes([b[4 * k], b[4 * k + 1], b[4 * k + 2], b[4 * k + 3]]));
        }
    }
    let mut s = acc[0] + acc[1] + acc[2] + acc[3];
    let mut rest = blocks.remainder();
    while rest.len() >= 2 {
        s += u64::from(u16::from_ne_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
    }
    if let [last] = rest {
        s += u64::from(u16::from_ne_bytes([*last, 0]));
    }
    u16::from_be(fold(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook definition, word by word.
    fn reference(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for c in data.chunks(2) {
            let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
            s += u32::from(w);
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        assert_eq!(Sum::of(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]).fold(), 0xddf2);
    }

    #[test]
    fn matches_the_definition_for_every_length_and_content() {
        let mut x: u32 = 0x1234_5678;
        let data: Vec<u8> = (0..300)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        for len in 0..data.len() {
            for start in [0, 1, 2, 3] {
                let d = &data[start.min(len)..len];
                assert_eq!(Sum::of(d).fold(), reference(d), "len {} from {start}", d.len());
            }
        }
        assert_eq!(Sum::of(&[0xff; 64]).fold(), 0xffff);
        assert_eq!(Sum::of(&[]).fold(), 0);
    }

    #[test]
    fn sums_add_up() {
        let a = [1u8, 2, 3, 4, 5, 6];
        let b = [7u8, 8, 9];
        let whole: Vec<u8> = a.iter().chain(&b).copied().collect();
        assert_eq!(Sum::of(&a).bytes(&b).fold(), Sum::of(&whole).fold());
        assert_eq!(Sum::default().word(0x0102).word(0x0304).fold(), Sum::of(&[1, 2, 3, 4]).fold());
        // A checksum stored in the data makes the whole sum 0xffff.
        let mut pkt = [0x45u8, 0, 0, 40, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2];
        let c = Sum::of(&pkt).finish();
        pkt[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(Sum::of(&pkt).fold(), 0xffff);
    }
}

//! The fuzz target `vnet` (fuzz/fuzz_targets/vnet.rs), here so that
//! `cargo test` replays its seeds (tests/fuzz_seeds.rs) through the same
//! code: a tap read through the splitter, then a receive batch through the
//! coalescer, with properties that must hold for every input.

/// The layout of a `vnet` fuzz input, for making seeds: a mode byte (bit
/// 0: 12-byte headers; bit 1: the batch's coalescer joins UDP), the tap read (virtio-net header and frame) behind
/// its 16-bit little-endian length, then extra frames for the coalescer,
/// each a position byte (insert before that segment of the split) and a
/// 16-bit little-endian length.
pub fn vnet_input(mode: u8, read: &[u8], extra: &[(u8, &[u8])]) -> Vec<u8> {
    let mut v = vec![mode];
    v.extend_from_slice(&(read.len() as u16).to_le_bytes());
    v.extend_from_slice(read);
    for (pos, f) in extra {
        v.push(*pos);
        v.extend_from_slice(&(f.len() as u16).to_le_bytes());
        v.extend_from_slice(f);
    }
    v
}

/// One tap read through the splitter, then its segments mixed with extra
/// frames through the coalescer (see [`vnet_input`]). Properties: what is
/// split is all there, in frames whose headers and checksums the
/// coalescer accepts; every frame of a batch comes out exactly once, in
/// flow order; a super-frame splits back into the frames it was made of.
pub fn vnet(data: &[u8]) {
    use super::{Coalescer, FromTap, Output, Placement, Plain, Splitter, VnetHdr, VnetHdrSize};

    let Some((&mode, rest)) = data.split_first() else { return };
    let size = if mode & 1 == 1 { VnetHdrSize::WithNumBuffers } else { VnetHdrSize::Basic };
    let Some(len) = rest.get(..2).map(|b| usize::from(u16::from_le_bytes([b[0], b[1]]))) else { return };
    let Some(read) = rest.get(2..2 + len) else { return };
    let mut rest = &rest[2 + len..];
    let mut extra = Vec::new();
    while let [pos, a, b, tail @ ..] = rest {
        let n = usize::from(u16::from_le_bytes([*a, *b])).min(tail.len());
        extra.push((*pos as usize, &tail[..n]));
        rest = &tail[n..];
    }

    let mut splitter = Splitter::new(size);
    let mut read = read.to_vec();
    let read_len = read.len();
    let mut segments: Vec<Vec<u8>> = Vec::new();
    match splitter.handle(&mut read) {
        Err(_) => assert_eq!(splitter.counters.refused_total(), 1),
        Ok(FromTap::Frame(f)) => assert_eq!(f.len(), read_len - size.len()),
        Ok(FromTap::Segments(mut s)) => {
            let (count, hl, max) = (s.segments(), s.header_len(), s.max_len());
            let total = read_len - size.len() - hl;
            let mut buf = vec![0u8; max];
            while let Some(r) = s.next_into(&mut buf) {
                let n = r.expect("max_len bytes hold every segment");
                assert!(n <= max && n >= hl);
                segments.push(buf[..n].to_vec());
            }
            assert_eq!(segments.len(), count);
            assert_eq!(segments.iter().map(|x| x.len() - hl).sum::<usize>(), total, "every payload byte is sent once");
            let mut c = Coalescer::new(size, count).with_udp(true);
            for seg in &segments {
                if let Placement::Plain(why) = c.push(seg).expect("room for every segment") {
                    assert!(
                        matches!(why, Plain::Flags | Plain::NoPayload | Plain::EcnCe),
                        "a segment the splitter wrote was refused as {why:?}"
                    );
                }
            }
        }
    }

    let mut batch: Vec<&[u8]> = segments.iter().map(|s| &s[..]).collect();
    for (pos, f) in extra.iter().rev() {
        batch.insert((*pos).min(batch.len()), f);
    }
    let mut c = Coalescer::new(size, batch.len().max(1)).with_udp(mode & 2 != 0);
    for f in &batch {
        c.push(f).expect("room for the batch");
    }
    let mut seen = vec![false; batch.len()];
    let mut last_first = None;
    let mut split_again = Splitter::new(size);
    for out in c.outputs() {
        let first = match out {
            Output::Frame(i) => {
                let mut buf = vec![0u8; size.len() + batch[i].len()];
                assert_eq!(c.write_frame(batch[i], &mut buf), Ok(buf.len()));
                assert_eq!((VnetHdr::parse(&buf, size), &buf[size.len()..]), (Ok(VnetHdr::ZERO), batch[i]));
                assert!(!std::mem::replace(&mut seen[i], true), "frame {i} written twice");
                i
            }
            Output::Super(s) => {
                let members: Vec<usize> = c.members(s.run).collect();
                assert_eq!(members.len(), s.segments);
                assert!(members.windows(2).all(|w| w[0] < w[1]) && members[0] == s.first);
                let mut buf = vec![0u8; s.len];
                assert_eq!(c.write(&s, |i| batch[i], &mut buf), Ok(s.len));
                let Ok(FromTap::Segments(mut again)) = split_again.handle(&mut buf) else {
                    panic!("a super-frame we wrote is refused: {:?}", split_again.counters)
                };
                let mut seg = vec![0u8; again.max_len()];
                for &m in &members {
                    let n = again.next_into(&mut seg).expect("as many segments as members").expect("room");
                    assert!(!std::mem::replace(&mut seen[m], true), "frame {m} written twice");
                    let (a, b) = (&seg[..n], batch[m]);
                    assert!(a.len() == b.len() && same_but_equivalent(a, b), "member {m} does not come back");
                }
                assert!(again.next_into(&mut seg).is_none());
                s.first
            }
        };
        assert!(last_first < Some(first), "outputs in first-frame order");
        last_first = Some(first);
    }
    assert!(seen.iter().all(|&s| s), "every frame written");
    assert_eq!(c.counters.frames, batch.len() as u64);
}

/// Whether a segment split from a super-frame is the frame it was made of:
/// byte for byte, but for two things a sender may do either way. A run of
/// IPv4 segments with one fixed id (allowed with DF) comes back with ids
/// counting up, and a TCP checksum of 0xffff is the same as one of 0 (one's
/// complement has two zeros; we write 0).
fn same_but_equivalent(a: &[u8], b: &[u8]) -> bool {
    let ipv4 = b[12..14] == [8, 0];
    let l4 = if ipv4 { 34 } else { 54 };
    let udp = b[if ipv4 { 23 } else { 20 }] == 17;
    let csum = l4 + if udp { 6 } else { 16 };
    let word = |x: &[u8], i: usize| u16::from_be_bytes([x[i], x[i + 1]]);
    let zero = |x: u16| x == 0 || x == 0xffff;
    let csum_same = |i: usize| word(a, i) == word(b, i) || (zero(word(a, i)) && zero(word(b, i)));
    (0..a.len()).all(|i| {
        a[i] == b[i]
            || (ipv4 && (i == 18 || i == 19))
            || (ipv4 && (i == 24 || i == 25) && (a[18..20] != b[18..20] || csum_same(24)))
            || ((i == csum || i == csum + 1) && csum_same(csum))
    })
}

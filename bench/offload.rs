//! Micro-benchmark of the tap offloads in software: bytes per second
//! through the split (a 64 KiB TCP super-frame cut into 1448-byte segments
//! written back to back, as into a transmit queue), through the coalescing
//! of those segments into the super-frame again (planning and writing), and
//! through completing the partial checksum of one ordinary frame.
//! Run: `cargo bench --bench offload`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use etherparse::PacketBuilder;
use rrqnet::offload::vnet::F_NEEDS_CSUM;
use rrqnet::offload::{Coalescer, FromTap, Gso, Output, Splitter, VnetHdr, VnetHdrSize, MAX_SUPER_FRAME};

const MSS: u16 = 1448;

/// A tap read: the virtio-net header and a TCP frame of `payload` bytes.
fn tap_read(v6: bool, payload: usize, hdr: VnetHdr) -> Vec<u8> {
    let data: Vec<u8> = (0..payload).map(|i| (i * 13) as u8).collect();
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let b = if v6 {
        b.ipv6(
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            64,
        )
    } else {
        b.ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
    };
    let mut read = vec![0u8; 10];
    hdr.emit(&mut read, VnetHdrSize::Basic);
    b.tcp(40000, 443, 1, 502).ack(1).write(&mut read, &data).unwrap();
    read
}

fn super_read(v6: bool) -> Vec<u8> {
    let l4 = if v6 { 54 } else { 34 };
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso: if v6 { Gso::TcpV6 } else { Gso::TcpV4 },
        hdr_len: l4 + 20,
        gso_size: MSS,
        csum_start: l4,
        csum_offset: 16,
        ..VnetHdr::ZERO
    };
    // 45 full segments: 65,160 bytes of payload, the most under 64 KiB.
    tap_read(v6, 45 * usize::from(MSS), hdr)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("offload");
    for v6 in [false, true] {
        let ip = if v6 { "IPv6" } else { "IPv4" };
        let mut read = super_read(v6);
        let mut splitter = Splitter::new(VnetHdrSize::Basic);
        let mut arena = vec![0u8; 128 * 1024];
        let mut lens = Vec::with_capacity(64);
        g.throughput(Throughput::Bytes(read.len() as u64));
        g.bench_function(format!("split 64 KiB {ip} super-frame at mss {MSS}"), |b| {
            b.iter(|| {
                let Ok(FromTap::Segments(mut s)) = splitter.handle(black_box(&mut read)) else { panic!("not split") };
                let mut at = 0;
                lens.clear();
                while let Some(Ok(n)) = s.next_into(&mut arena[at..]) {
                    lens.push(n);
                    at += n;
                }
                black_box(at)
            })
        });

        // The segments that split made, coalesced back.
        let mut starts = Vec::with_capacity(lens.len());
        let mut at = 0;
        for n in &lens {
            starts.push(at..at + n);
            at += n;
        }
        let mut co = Coalescer::new(VnetHdrSize::Basic, 64);
        let mut out = vec![0u8; MAX_SUPER_FRAME];
        g.throughput(Throughput::Bytes(at as u64));
        g.bench_function(format!("coalesce {} {ip} segments into one super-frame", lens.len()), |b| {
            b.iter(|| {
                co.clear();
                for r in &starts {
                    co.push(black_box(&arena[r.clone()])).unwrap();
                }
                let mut written = 0;
                for o in co.outputs() {
                    if let Output::Super(s) = o {
                        written += co.write(&s, |i| &arena[starts[i].clone()], &mut out).unwrap();
                    }
                }
                black_box(written)
            })
        });
    }

    let hdr = VnetHdr { flags: F_NEEDS_CSUM, csum_start: 34, csum_offset: 16, ..VnetHdr::ZERO };
    let mut read = tap_read(false, 1460, hdr);
    let mut splitter = Splitter::new(VnetHdrSize::Basic);
    g.throughput(Throughput::Bytes(read.len() as u64 - 10));
    g.bench_function("complete the checksum of a 1514-byte frame", |b| {
        b.iter(|| match splitter.handle(black_box(&mut read)) {
            Ok(FromTap::Frame(f)) => black_box(f.len()),
            _ => panic!("not one frame"),
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

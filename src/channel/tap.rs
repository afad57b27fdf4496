//! The tap channel (`-t NAME`): Ethernet frames to and from a Linux tap
//! interface, with the tap's offloads when the kernel has them.
//!
//! The tap is opened through `/dev/net/tun` as `IFF_TAP | IFF_NO_PI |
//! IFF_VNET_HDR`: every read and write starts with a 10-byte virtio-net
//! header, and `TUNSETOFFLOAD` tells the kernel that we complete checksums
//! and cut TCP super-frames (and, from Linux 6.2, UDP ones) ourselves. A
//! TCP stream then crosses the tap as frames of up to 64 KiB each way,
//! which saves the kernel most of its per-frame work. What the tap hands us
//! is split into ordinary frames by the node
//! ([`crate::offload::Splitter`]); what we write is joined here, a batch at
//! a time ([`Coalescer`]): consecutive TCP segments of one flow as one
//! super-frame, consecutive UDP datagrams of one flow too where the kernel
//! takes them, everything else as it came behind an all-zero header. The
//! wire never sees a super-frame.
//!
//! The `tun-tap` crate fixes its `TUNSETIFF` flags and the kernel takes them
//! once per descriptor, so the offloading open is ours (`crate::sys`); the
//! crate still opens the tap the plain way (one frame per read and write, no
//! header) when the kernel refuses `IFF_VNET_HDR`. Offloads are scaled back
//! at run time, never silently: when the node could not split what the tap
//! handed it ([`Channel::offload_refused`]) segmentation goes off for a
//! super-frame, checksum offload too for an ordinary frame; when the kernel refuses our super-frames
//! (`EINVAL`) their frames are written one by one, and after a few such
//! refusals we stop joining. At exit the offloads are switched off again,
//! so the next user of a persistent tap (vde_plug, say) gets ordinary frames.
//!
//! An existing tap (`ip tuntap add NAME mode tap`) is attached to; a missing
//! one is created and vanishes when we exit. The descriptor is non-blocking
//! and lives in the event loop. A tap whose interface was deleted answers
//! every read and write with `EBADFD` (and epoll reports `EPOLLERR`): that
//! is fatal, with a message saying so. A write refused for one frame (`EIO`
//! while the interface is down, `EINVAL` for a runt from the network, no
//! memory) loses that frame only.

use std::fmt;
use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::AsRawFd;

use log::{debug, warn};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use tun_tap::{Iface, Mode};

use super::batch::{ReadOne, RxPool, MAX_READ};
use super::{Channel, Datagram, Rx, SendReport, MAX_PAYLOAD};
use crate::offload::{Coalescer, Output, TapState, Trouble, VnetHdrSize, MAX_SUPER_FRAME};
use crate::sys::{TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_USO4, TUN_F_USO6};

/// The virtio-net header we ask for: the basic 10 bytes.
const VNET: VnetHdrSize = VnetHdrSize::Basic;
/// The header of every ordinary frame we write.
const ZERO_HDR: [u8; 12] = [0; 12];
/// Super-frames the kernel may refuse before we stop joining segments.
const REJECTS_BEFORE_OFF: u64 = 4;

/// A tap interface as a channel.
#[derive(Debug)]
pub struct TapChannel {
    file: File,
    label: String,
    warned_oversize: bool,
    /// Present when the tap was opened with `IFF_VNET_HDR`.
    offload: Option<Offload>,
}

/// The offloads of a tap opened with `IFF_VNET_HDR`.
#[derive(Debug)]
struct Offload {
    state: TapState,
    coalescer: Coalescer,
    /// The most frames the coalescer takes at once.
    capacity: usize,
    /// Where a super-frame is built before its one write.
    buf: Box<[u8]>,
}

/// The tap's interface was deleted: every read and write fails from now on.
#[derive(Debug)]
pub struct InterfaceGone {
    source: io::Error,
}

impl fmt::Display for InterfaceGone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the interface is gone (deleted with 'ip link del'?)")
    }
}

impl std::error::Error for InterfaceGone {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The tap could not be opened for lack of privilege: says what is missing.
#[derive(Debug)]
pub struct NotPermitted {
    name: String,
    source: io::Error,
}

impl fmt::Display for NotPermitted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = crate::sys::current_account().map_or_else(|| "USER".to_owned(), |a| a.name);
        f.write_str("not permitted: ")?;
        if self.source.raw_os_error() == Some(libc::EACCES) {
            // open("/dev/net/tun") refused: the device node's mode.
            f.write_str("/dev/net/tun is not open to this user (Debian makes it mode 0666), and ")?;
        }
        write!(
            f,
            "opening a tap needs root or CAP_NET_ADMIN, or a tap made beforehand for this user \
             ('ip tuntap add {} mode tap user {user}')",
            self.name
        )
    }
}

impl std::error::Error for NotPermitted {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// A refusal for lack of privilege says what is missing ([`NotPermitted`]).
fn not_permitted(name: &str, e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => io::Error::new(e.kind(), NotPermitted { name: name.to_owned(), source: e }),
        _ => e,
    }
}

impl TapChannel {
    /// Opens (or creates) the tap `name`, non-blocking, with offloads if
    /// the kernel has them; `batch` is the most frames one write batch
    /// holds (the receive batch), which the coalescer is sized for. With
    /// `join_udp` UDP datagrams are joined too, if the kernel takes them.
    pub fn open(name: &str, batch: usize, join_udp: bool) -> io::Result<Self> {
        let (file, name, offload) = match crate::sys::open_tap_vnet(name) {
            Ok((file, name)) => {
                let offload = Offload::switch_on(&file, &name, batch, join_udp);
                (file, name, Some(offload))
            }
            // A kernel (or a sandbox) without IFF_VNET_HDR: the plain way.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                debug!("tap {name}: no virtio-net header ({e}); opening without offloads");
                let iface = Iface::without_packet_info(name, Mode::Tap).map_err(|e| not_permitted(name, e))?;
                let name = iface.name().to_owned();
                (crate::sys::file_of_iface(iface), name, None)
            }
            Err(e) => return Err(not_permitted(name, e)),
        };
        crate::sys::set_nonblocking(&file)?;
        Ok(TapChannel { file, label: format!("tap {name}"), warned_oversize: false, offload })
    }

    /// The virtio-net header every read and write carries, if the tap was
    /// opened with one: the node must then split what it reads.
    pub fn vnet(&self) -> Option<VnetHdrSize> {
        self.offload.as_ref().map(|_| VNET)
    }

    /// Turns an error that ends the channel into one that says why.
    fn fatal(&self, e: io::Error) -> io::Error {
        match e.raw_os_error() {
            Some(libc::EBADFD) | Some(libc::ENODEV) | Some(libc::ENXIO) => {
                io::Error::new(e.kind(), InterfaceGone { source: e })
            }
            _ => e,
        }
    }

    fn read_one(&mut self, buf: &mut [u8]) -> io::Result<ReadOne> {
        loop {
            return match (&self.file).read(buf) {
                // The kernel reports a frame's full length even when it
                // copied only what fit; such a frame cannot cross any of our
                // channels anyway. The pool marks it cut; the node counts it.
                Ok(n) if n > buf.len() => {
                    if !self.warned_oversize {
                        self.warned_oversize = true;
                        warn!(
                            "{}: dropped a {n}-byte frame, larger than the largest datagram ({MAX_PAYLOAD}); \
                             lower the interface MTU",
                            self.label
                        );
                    }
                    Ok(ReadOne::Got { len: n, from: None })
                }
                // A tap never reads 0 bytes for a frame; treat it as nothing.
                Ok(0) => Ok(ReadOne::Empty),
                Ok(len) => Ok(ReadOne::Got { len, from: None }),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(ReadOne::Empty),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(self.fatal(e)),
            };
        }
    }
}

impl Offload {
    /// Sets the header size and asks for checksum, TCP and UDP segmentation
    /// offload, as much of it as the kernel allows.
    fn switch_on(file: &File, name: &str, batch: usize, join_udp: bool) -> Offload {
        if let Err(e) = crate::sys::set_tap_vnet_hdr_size(file, VNET.len()) {
            // The kernel's default is the same 10 bytes.
            debug!("tap {name}: TUNSETVNETHDRSZ refused ({e}); the default header size stays");
        }
        let mut state = TapState { gro: true, ..TapState::default() };
        // A kernel that knows UDP segmentation offload (Linux 6.2) takes
        // the flags, and takes UDP super-frames from us as well.
        let tso = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
        for (flags, csum, tso, uso) in [
            (tso | TUN_F_USO4 | TUN_F_USO6, true, true, true),
            (tso, true, true, false),
            (TUN_F_CSUM, true, false, false),
        ] {
            match crate::sys::set_tap_offload(file, flags) {
                Ok(()) => {
                    (state.checksum, state.tso, state.uso, state.gro_udp) = (csum, tso, uso, uso && join_udp);
                    break;
                }
                Err(e) => debug!("tap {name}: offload flags {flags:#x} refused: {e}"),
            }
        }
        let on = |b: bool| if b { "on" } else { "off" };
        log::info!(
            "tap {name}: offloads: checksum {}, TCP segmentation {}, UDP segmentation {}, joining TCP segments on, \
             joining UDP datagrams {}",
            on(state.checksum),
            on(state.tso),
            on(state.uso),
            on(state.gro_udp)
        );
        Offload {
            coalescer: Coalescer::new(VNET, batch.max(1)).with_udp(state.gro_udp),
            state,
            capacity: batch.max(1),
            buf: vec![0u8; MAX_SUPER_FRAME].into_boxed_slice(),
        }
    }
}

impl Drop for TapChannel {
    /// Switches the offloads off, so the next reader of a persistent tap is
    /// not handed super-frames or partial checksums.
    fn drop(&mut self) {
        if self.offload.as_ref().is_some_and(|o| o.state.checksum || o.state.tso || o.state.uso) {
            if let Err(e) = crate::sys::set_tap_offload(&self.file, 0) {
                debug!("{}: could not switch offloads off at exit: {e}", self.label);
            }
        }
    }
}

/// Whether a write error loses only that frame.
fn transient_write_error(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock)
        || matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL | libc::ENOMEM | libc::ENOBUFS | libc::EMSGSIZE))
}

/// What became of one write to the tap.
enum Wrote {
    Ok,
    /// `EINVAL`: the kernel refused it.
    Refused,
    TooLarge,
    Failed,
}

/// Writes `bufs` as one frame, retrying an interrupted write; an error
/// that is not about this frame alone is returned.
fn write_one(write: &mut impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>, bufs: &[IoSlice<'_>]) -> io::Result<Wrote> {
    loop {
        return match write(bufs) {
            Ok(_) => Ok(Wrote::Ok),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => Ok(Wrote::TooLarge),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(Wrote::Refused),
            Err(e) if transient_write_error(&e) => Ok(Wrote::Failed),
            Err(e) => Err(e),
        };
    }
}

impl Wrote {
    fn count(self, frames: usize, report: &mut SendReport) {
        match self {
            Wrote::Ok => report.sent += frames,
            Wrote::TooLarge => report.too_large += frames,
            Wrote::Refused | Wrote::Failed => report.failed += frames,
        }
    }
}

impl Offload {
    /// Writes `batch` through `write` (one frame, header first, per call):
    /// runs of TCP segments joined into super-frames while joining is on,
    /// everything else behind an all-zero header. A super-frame the kernel
    /// refuses is written again frame by frame.
    fn send(
        &mut self,
        arena: &[u8],
        batch: &[Datagram],
        label: &str,
        mut write: impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    ) -> io::Result<SendReport> {
        let mut report = SendReport::default();
        let zero = &ZERO_HDR[..VNET.len()];
        let frame = |d: &Datagram| &arena[d.range.clone()];
        let mut at = 0;
        while at < batch.len() {
            if !self.state.gro {
                for d in &batch[at..] {
                    write_one(&mut write, &[IoSlice::new(zero), IoSlice::new(frame(d))])?.count(1, &mut report);
                }
                break;
            }
            let chunk = &batch[at..(at + self.capacity).min(batch.len())];
            at += chunk.len();
            self.coalescer.clear();
            for d in chunk {
                // Never full: the chunk is no longer than the capacity.
                let _ = self.coalescer.push(frame(d));
            }
            let mut refused = 0;
            for out in self.coalescer.outputs() {
                let s = match out {
                    Output::Frame(i) => {
                        write_one(&mut write, &[IoSlice::new(zero), IoSlice::new(frame(&chunk[i]))])?
                            .count(1, &mut report);
                        continue;
                    }
                    Output::Super(s) => s,
                };
                let wrote = match self.coalescer.write(&s, |i| frame(&chunk[i]), &mut self.buf) {
                    Ok(n) => write_one(&mut write, &[IoSlice::new(&self.buf[..n])])?,
                    // Cannot happen for what this batch pushed; the frames
                    // still go, one by one.
                    Err(_) => Wrote::Refused,
                };
                if let Wrote::Refused = wrote {
                    refused += 1;
                    for i in self.coalescer.members(s.run) {
                        write_one(&mut write, &[IoSlice::new(zero), IoSlice::new(frame(&chunk[i]))])?
                            .count(1, &mut report);
                    }
                } else {
                    self.state.written += u64::from(matches!(wrote, Wrote::Ok));
                    wrote.count(s.segments, &mut report);
                }
            }
            self.state.rejected += refused;
            if refused > 0 && self.state.rejected >= REJECTS_BEFORE_OFF {
                self.state.gro = false;
                self.state.gro_udp = false;
                warn!(
                    "{label}: the kernel refused {} super-frames; writing frame by frame from now on",
                    self.state.rejected
                );
            }
        }
        Ok(report)
    }
}

impl Channel for TapChannel {
    fn name(&self) -> &str {
        &self.label
    }

    fn kind(&self) -> &'static str {
        "tap"
    }

    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        // Writes to a tap do not block (the kernel queues or drops), so only
        // readability is asked for; EPOLLERR comes regardless, and that is
        // how a deleted interface shows.
        registry.register(&mut SourceFd(&self.file.as_raw_fd()), token, Interest::READABLE)
    }

    /// One `read` per frame (or super-frame), up to a batch.
    fn recv_batch(&mut self, pool: &mut RxPool) -> io::Result<Rx> {
        let area = if self.offload.is_some() { MAX_READ } else { MAX_PAYLOAD };
        pool.fill_each_with(area, |buf| self.read_one(buf))
    }

    /// One `write` per frame, or per super-frame.
    fn send_batch(&mut self, arena: &[u8], batch: &[Datagram]) -> io::Result<SendReport> {
        let file = &self.file;
        let r = match self.offload.as_mut() {
            Some(o) => o.send(arena, batch, &self.label, |bufs| (&*file).write_vectored(bufs)),
            None => {
                let mut report = SendReport::default();
                let mut write = |bufs: &[IoSlice<'_>]| (&*file).write_vectored(bufs);
                for d in batch {
                    write_one(&mut write, &[IoSlice::new(&arena[d.range.clone()])]).map(|w| w.count(1, &mut report))?;
                }
                Ok(report)
            }
        };
        r.map_err(|e| self.fatal(e))
    }

    fn offload(&self) -> Option<TapState> {
        self.offload.as_ref().map(|o| TapState { coalesce: o.coalescer.counters.clone(), ..o.state.clone() })
    }

    /// A super-frame that could not be cut switches TCP segmentation off
    /// (the kernel then cuts super-frames itself); one that arrives after
    /// that was queued before and changes nothing more. An ordinary frame
    /// that could not be used switches checksum offload off too, and the
    /// tap gives ordinary, complete frames.
    fn offload_refused(&mut self, trouble: Trouble) {
        let Some(o) = self.offload.as_mut() else { return };
        let (flags, what) = if trouble.frame && (o.state.checksum || o.state.tso || o.state.uso) {
            (0, "checksum and UDP and TCP segmentation offload")
        } else if trouble.super_frame && (o.state.tso || o.state.uso) {
            (TUN_F_CSUM, "UDP and TCP segmentation offload")
        } else {
            return;
        };
        match crate::sys::set_tap_offload(&self.file, flags) {
            Ok(()) => {
                o.state.tso = false;
                o.state.uso = false;
                o.state.checksum = flags != 0;
                warn!("{}: could not use what the tap handed over; {what} switched off", self.label);
            }
            Err(e) => warn!("{}: could not switch {what} off: {e}", self.label),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::{VnetHdr, MAX_SUPER_FRAME};

    fn offload(batch: usize) -> Offload {
        Offload {
            state: TapState { checksum: true, tso: true, gro: true, ..TapState::default() },
            coalescer: Coalescer::new(VNET, batch),
            capacity: batch,
            buf: vec![0u8; MAX_SUPER_FRAME].into_boxed_slice(),
        }
    }

    /// An arena of `frames` and the batch that lists them.
    fn planned(frames: &[Vec<u8>]) -> (Vec<u8>, Vec<Datagram>) {
        let mut arena = Vec::new();
        let mut batch = Vec::new();
        for f in frames {
            batch.push(Datagram { range: arena.len()..arena.len() + f.len(), to: None });
            arena.extend_from_slice(f);
        }
        (arena, batch)
    }

    /// Ten segments of one flow and a broadcast between them, in batches of
    /// 8: super-frames for the runs (none across a batch's edge), the other
    /// frame alone behind a zero header, the flow in order.
    #[test]
    fn runs_go_as_super_frames_and_the_rest_as_it_came() {
        let segs = crate::testing::tcp_segments(10 * 1000, 1000);
        let other = crate::testing::frame([0xff; 6], crate::testing::mac(1), 60, 3);
        let mut frames = segs[..3].to_vec();
        frames.push(other.clone());
        frames.extend_from_slice(&segs[3..]);
        let (arena, batch) = planned(&frames);
        let mut o = offload(8);
        let mut writes: Vec<Vec<u8>> = Vec::new();
        let r = o
            .send(&arena, &batch, "tap test", |bufs| {
                writes.push(bufs.iter().flat_map(|b| b.iter().copied()).collect());
                Ok(0)
            })
            .unwrap();
        assert_eq!(r, SendReport { sent: 11, failed: 0, too_large: 0 });
        let kinds: Vec<(u8, usize)> = writes
            .iter()
            .map(|w| {
                let h = VnetHdr::parse(w, VNET).unwrap();
                (h.gso_type(), w.len() - VNET.len())
            })
            .collect();
        // The first chunk of 8: its 7 segments as one super-frame, written
        // where the run began (another flow's frame does not end it), then
        // the other frame; the second chunk: the last 3 segments.
        assert_eq!(kinds, [(1, 54 + 7000), (0, 60), (1, 54 + 3000)]);
        assert_eq!(&writes[1][VNET.len()..], &other[..]);
        assert_eq!((o.state.written, o.state.rejected, o.coalescer.counters.super_frames), (2, 0, 2));
    }

    /// A super-frame the kernel refuses (EINVAL) is written again frame by
    /// frame, nothing lost; after a few refusals joining stops for good.
    #[test]
    fn refused_super_frames_fall_back_to_frames_then_joining_stops() {
        let segs = crate::testing::tcp_segments(4 * 1000, 1000);
        let (arena, batch) = planned(&segs);
        let mut o = offload(32);
        for round in 1..=REJECTS_BEFORE_OFF + 1 {
            let mut frames_written = 0;
            let r = o
                .send(&arena, &batch, "tap test", |bufs| {
                    let h = VnetHdr::parse(&bufs[0], VNET).unwrap();
                    if h.gso_type() != 0 {
                        return Err(io::Error::from_raw_os_error(libc::EINVAL));
                    }
                    frames_written += 1;
                    Ok(0)
                })
                .unwrap();
            assert_eq!(r, SendReport { sent: 4, failed: 0, too_large: 0 }, "round {round}");
            assert_eq!(frames_written, 4);
            assert_eq!(o.state.rejected, round.min(REJECTS_BEFORE_OFF));
            assert_eq!(o.state.gro, round < REJECTS_BEFORE_OFF, "round {round}");
        }
    }

    /// Errors that end the channel pass through; one frame's trouble is
    /// counted.
    #[test]
    fn write_errors_are_counted_or_returned() {
        let segs = crate::testing::tcp_segments(2 * 1000, 1000);
        let (arena, batch) = planned(&segs);
        let mut o = offload(32);
        let r = o.send(&arena, &batch, "tap test", |_| Err(io::Error::from_raw_os_error(libc::EIO))).unwrap();
        assert_eq!(r, SendReport { sent: 0, failed: 2, too_large: 0 });
        let e = o.send(&arena, &batch, "tap test", |_| Err(io::Error::from_raw_os_error(libc::EBADFD)));
        assert_eq!(e.unwrap_err().raw_os_error(), Some(libc::EBADFD));
    }

    #[test]
    fn write_errors_are_sorted() {
        for errno in [libc::EAGAIN, libc::EIO, libc::EINVAL, libc::ENOMEM, libc::ENOBUFS] {
            assert!(transient_write_error(&io::Error::from_raw_os_error(errno)), "errno {errno}");
        }
        for errno in [libc::EBADFD, libc::EBADF, libc::ENODEV, libc::EFAULT] {
            assert!(!transient_write_error(&io::Error::from_raw_os_error(errno)), "errno {errno}");
        }
    }
}

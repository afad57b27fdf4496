//! The few system calls that std, mio, socket2 and libc's constants do not
//! wrap: the pipe size of stdout, forced socket buffer sizes, batched UDP
//! I/O (`recvmmsg`/`sendmmsg` with `UDP_SEGMENT` and `UDP_GRO`), the tap
//! ioctls for its offloads (`IFF_VNET_HDR`, `TUNSETVNETHDRSZ`,
//! `TUNSETOFFLOAD`), and switching to another user (`--user`). This is
//! the one module allowed unsafe code; each block says why it is sound.
//! Addresses are converted by socket2; signals come through
//! signal-hook-mio, not from here.

#![allow(unsafe_code)]

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use socket2::{SockAddr, SockAddrStorage};

use crate::plan::Datagram;

/// Sets the capacity of the pipe behind `fd` (`F_SETPIPE_SZ`), returning the
/// size the kernel chose.
pub fn set_pipe_size(fd: BorrowedFd<'_>, size: usize) -> io::Result<usize> {
    let size = libc::c_int::try_from(size).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: fcntl with F_SETPIPE_SZ takes an int argument and touches no
    // memory of ours; the descriptor is valid for the borrow.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, size) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Points stdin and stdout at /dev/null, closing whatever they were, so a
/// daemon with a tap does not hold its parent's pipes open.
pub fn close_stdin_stdout() -> io::Result<()> {
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?;
    for target in [libc::STDIN_FILENO, libc::STDOUT_FILENO] {
        // SAFETY: dup2 onto the standard descriptors; both descriptors are
        // valid, and nothing in this process holds a Rust object that owns
        // fd 0 or 1 (std's handles borrow them).
        let r = unsafe { libc::dup2(null.as_raw_fd(), target) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Runs `f` with the process umask set to `mask`, then puts the old one
/// back: files `f` creates are never more open than `mask` allows, not even
/// for an instant (a chmod after creating them would leave one).
pub fn with_umask<T>(mask: u32, f: impl FnOnce() -> T) -> T {
    // SAFETY: umask only swaps the process's file mode creation mask; it
    // touches no memory. The daemon is single-threaded while it sets up, so
    // nothing else creates files under the changed mask.
    let old = unsafe { libc::umask(mask as libc::mode_t) };
    let r = f();
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    r
}

/// Sets a socket buffer past `rmem_max`/`wmem_max` (`SO_RCVBUFFORCE` or
/// `SO_SNDBUFFORCE`); needs CAP_NET_ADMIN, so callers fall back on failure.
pub fn set_buffer_force(sock: &impl AsRawFd, option: libc::c_int, bytes: usize) -> io::Result<()> {
    let val = libc::c_int::try_from(bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: setsockopt reads exactly size_of::<c_int>() bytes from a live
    // local; the descriptor is valid while `sock` is borrowed.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&val as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The interface request of the tun ioctls (`struct ifreq` with the
/// `ifr_flags` member of its union), 40 bytes as the kernel copies it.
#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Opens `/dev/net/tun` and attaches it to the tap `name` (creating it if
/// it does not exist) as `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`: every read
/// and write starts with a virtio-net header. The `tun-tap` crate sets its
/// flags in its own `TUNSETIFF` and the kernel takes them once per
/// descriptor (a second `TUNSETIFF` is `EEXIST`), so this open is ours.
/// Returns the descriptor, blocking, and the interface's name.
pub fn open_tap_vnet(name: &str) -> io::Result<(std::fs::File, String)> {
    attach_tun(name, (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short)
}

/// Opens `/dev/net/tun` and attaches it (`TUNSETIFF`) to the interface
/// `name` with `flags`; returns the descriptor and the interface's name.
fn attach_tun(name: &str, flags: libc::c_short) -> io::Result<(std::fs::File, String)> {
    let bytes = name.as_bytes();
    if bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let file = std::fs::OpenOptions::new().read(true).write(true).open("/dev/net/tun")?;
    let mut req = IfReqFlags { name: [0; libc::IFNAMSIZ], flags, _pad: [0; 22] };
    req.name[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: TUNSETIFF reads and writes one struct ifreq; `req` is a live
    // local of that size and layout (name, then the flags at offset 16).
    let r = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReqFlags) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let end = req.name.iter().position(|&b| b == 0).unwrap_or(req.name.len());
    Ok((file, String::from_utf8_lossy(&req.name[..end]).into_owned()))
}

/// Tells the tap how long its virtio-net header is (`TUNSETVNETHDRSZ`).
pub fn set_tap_vnet_hdr_size(fd: &impl AsRawFd, size: usize) -> io::Result<()> {
    let size = libc::c_int::try_from(size).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, a live local.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &size as *const libc::c_int) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Checksum offload: the tap may hand us partial checksums.
pub const TUN_F_CSUM: libc::c_uint = libc::TUN_F_CSUM;
/// TCP segmentation offload over IPv4.
pub const TUN_F_TSO4: libc::c_uint = libc::TUN_F_TSO4;
/// TCP segmentation offload over IPv6.
pub const TUN_F_TSO6: libc::c_uint = libc::TUN_F_TSO6;
/// UDP segmentation offload over IPv4 (Linux 6.2; not in the libc crate).
pub const TUN_F_USO4: libc::c_uint = 0x20;
/// UDP segmentation offload over IPv6.
pub const TUN_F_USO6: libc::c_uint = 0x40;

/// Says which offloads we do for the tap (`TUNSETOFFLOAD`): what the kernel
/// may leave undone in what it hands us, and so what it may hand us; 0
/// switches them all off again.
pub fn set_tap_offload(fd: &impl AsRawFd, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned long)
    // and touches no memory of ours.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD, flags as libc::c_ulong) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Switches off the offloads of the persistent tap `name`, as rrqnet does at
/// exit, for a tap whose rrqnet was killed (`rrqnet --release-tap`): the
/// kernel keeps them when the next program opens the tap without a
/// virtio-net header, and hands that program frames with partial checksums
/// and super-frames. Attaches to the tap and detaches again; never creates
/// one (`NotFound` when there is no tap of that name, `InvalidInput` when
/// the interface is a tun, and the kernel's `EBUSY` when a program holds
/// it).
pub fn release_tap(name: &str) -> io::Result<()> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) || bytes.contains(&b'/') {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // tun and tap devices, and only they, have tun_flags; attaching with
    // the flags it was made with never makes a new device.
    let flags = std::fs::read_to_string(format!("/sys/class/net/{name}/tun_flags"))?;
    let flags = i64::from_str_radix(flags.trim().trim_start_matches("0x"), 16)
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    if flags & i64::from(libc::IFF_TAP) == 0 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let keep = i64::from(libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_MULTI_QUEUE);
    let (file, _) = attach_tun(name, (flags & keep) as libc::c_short)?;
    set_tap_offload(&file, 0)
}

/// Makes `fd` non-blocking.
pub fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: F_GETFL and F_SETFL take and return ints; no memory is touched.
    let r = unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 {
            flags
        } else {
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK)
        }
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Takes the descriptor of a tap the `tun-tap` crate opened, as a file.
pub fn file_of_iface(iface: tun_tap::Iface) -> std::fs::File {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let fd = iface.into_raw_fd();
    // SAFETY: `into_raw_fd` gave up the crate's ownership of this open
    // descriptor; the File is now its only owner.
    unsafe { std::fs::File::from_raw_fd(fd) }
}

/// Reusable headers for `recvmmsg`/`sendmmsg`: allocated once, pointed at
/// the caller's buffers on every call, so a batch costs no allocation.
pub struct Mmsg {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    /// Where `recvmmsg` writes each source.
    sources: Vec<SockAddrStorage>,
    /// Each destination of a `sendmmsg`, as the kernel reads it.
    dests: Vec<SockAddr>,
    /// One control message per header, for `UDP_SEGMENT` (8-byte aligned).
    cmsgs: Vec<[u64; 4]>,
    /// Datagrams in each header of the call under way.
    counts: Vec<usize>,
    /// The receive buffers the headers point at (`store` address and
    /// length, slot size, offset, headers used), set when they were last
    /// pointed there: a receive into the same buffers only resets what the
    /// kernel wrote.
    recv_layout: Option<(usize, usize, usize, usize, usize)>,
    /// Headers the last receive may have written to: only these are reset,
    /// so a lone datagram costs a few cache lines, not the whole batch's.
    recv_dirty: usize,
    /// Whether equal-sized datagrams to one peer go out as one segmented
    /// send (`UDP_SEGMENT`); switched off for good if the kernel refuses.
    gso: bool,
}

/// Most datagrams in one segmented send (the kernel's `UDP_MAX_SEGMENTS`).
const GSO_MAX_SEGMENTS: usize = 64;
/// Most bytes in one segmented send.
const GSO_MAX_BYTES: usize = 65000;
/// Most datagrams in one `sendmmsg` over all its headers.
const MAX_IOVS: usize = 4096;

// SAFETY: the raw pointers inside are only ever set from, and used during,
// a call that borrows the buffers they point to; between calls they dangle
// harmlessly and are overwritten before the next use.
unsafe impl Send for Mmsg {}

impl std::fmt::Debug for Mmsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mmsg({})", self.hdrs.len())
    }
}

impl Mmsg {
    /// Room for batches of up to `n` datagrams.
    pub fn new(n: usize) -> Self {
        // SAFETY: mmsghdr is a plain C struct for which all-zero bytes is a
        // valid value.
        let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        let unspecified = SockAddr::from(SocketAddr::from(([0, 0, 0, 0], 0)));
        Mmsg {
            hdrs: vec![zero_hdr; n],
            // Room for full segmented runs: a tap's super-frame alone makes
            // dozens of datagrams to one peer.
            iovs: vec![
                libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 };
                (n * GSO_MAX_SEGMENTS).min(MAX_IOVS)
            ],
            sources: (0..n).map(|_| SockAddrStorage::zeroed()).collect(),
            dests: vec![unspecified; n],
            cmsgs: vec![[0u64; 4]; n],
            counts: vec![0; n],
            recv_layout: None,
            recv_dirty: 0,
            gso: true,
        }
    }

    /// Receives up to `meta.len()` datagrams without blocking into equal
    /// slots of `store`: datagram `i` lands at
    /// `store[i * slot + offset .. (i + 1) * slot]`. Fills `meta` with each
    /// one's length (`usize::MAX` if it was cut) and source; returns how many
    /// arrived (`WouldBlock` when none).
    pub fn recv(
        &mut self,
        fd: &impl AsRawFd,
        store: &mut [u8],
        slot: usize,
        offset: usize,
        meta: &mut [RecvMeta],
    ) -> io::Result<usize> {
        assert!(offset < slot, "receive offset inside the slot");
        let n = (store.len() / slot).min(self.hdrs.len()).min(meta.len());
        let layout = (store.as_ptr() as usize, store.len(), slot, offset, n);
        // Pointing every header at its buffers touches the whole batch's
        // headers; a send through this Mmsg repoints them too. Done again
        // only when the buffers changed; otherwise only the fields the
        // kernel writes back (name and control lengths, flags) are reset, in
        // the headers the last receive filled.
        let reset = if self.recv_layout == Some(layout) {
            self.recv_dirty.min(n)
        } else {
            for i in 0..n {
                let buf = &mut store[i * slot + offset..(i + 1) * slot];
                self.iovs[i] = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
                let h = &mut self.hdrs[i];
                h.msg_hdr.msg_name = (&mut self.sources[i] as *mut SockAddrStorage).cast();
                h.msg_hdr.msg_iov = &mut self.iovs[i];
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_control = self.cmsgs[i].as_mut_ptr().cast();
            }
            self.recv_layout = Some(layout);
            n
        };
        for i in 0..reset {
            let h = &mut self.hdrs[i];
            h.msg_hdr.msg_namelen = self.sources[i].size_of();
            h.msg_hdr.msg_controllen = std::mem::size_of::<[u64; 4]>();
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        // Until the call returns, any header may have been written.
        self.recv_dirty = n;
        // SAFETY: the first n headers point at n disjoint regions of `store`
        // (the same buffer, slot size and offset they were last pointed at,
        // checked above), exclusively borrowed for this call, and at address
        // slots of the sizes given; the kernel writes only within them.
        let r = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let got = r as usize;
        // The kernel writes back only the headers of the messages it returns.
        self.recv_dirty = got;
        for ((m, h), addr) in meta.iter_mut().zip(&self.hdrs).zip(&self.sources).take(got) {
            let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            let len = if truncated { usize::MAX } else { h.msg_len as usize };
            // SAFETY: SockAddrStorage is plain data with no Drop, so a bitwise
            // copy is a valid value; the kernel wrote msg_namelen bytes of a
            // socket address into it, which is what SockAddr::new requires.
            let from = unsafe { SockAddr::new(std::ptr::read(addr), h.msg_hdr.msg_namelen) }.as_socket();
            *m = RecvMeta { len, from, segment: gro_segment(&h.msg_hdr) };
        }
        Ok(got)
    }

    /// Turns segmented sends (`UDP_SEGMENT`) on or off.
    pub fn set_gso(&mut self, on: bool) {
        self.gso = on;
    }

    /// Sends `msgs` (ranges of `arena`, each to its destination passed
    /// through `map`) without blocking, as many per system call as fit; a
    /// datagram without a destination is not sent. Runs of datagrams to one peer whose
    /// sizes are equal (the last may be shorter) go out as one segmented
    /// send when the kernel allows it: one pass through the stack for up to
    /// [`GSO_MAX_SEGMENTS`] datagrams, the same datagrams on the wire.
    /// Returns how many were sent and how many were not: a datagram the
    /// kernel refuses is skipped, and when the socket buffer is full the rest
    /// are not sent.
    pub fn send(
        &mut self,
        fd: &impl AsRawFd,
        arena: &[u8],
        msgs: &[Datagram],
        map: impl Fn(SocketAddr) -> SocketAddr,
    ) -> io::Result<(usize, usize)> {
        // The headers are repointed at what is sent.
        self.recv_layout = None;
        let mut sent = 0;
        let mut failed = 0;
        let mut at = 0;
        while at < msgs.len() {
            if msgs[at].to.is_none() {
                failed += 1;
                at += 1;
                continue;
            }
            let first = at;
            let (mut h, mut iov) = (0, 0);
            while h < self.hdrs.len() && at < msgs.len() && iov < self.iovs.len() {
                let Datagram { range: r0, to } = &msgs[at];
                let Some(to) = *to else { break };
                let size = r0.len();
                let mut n = 1;
                let mut total = size;
                if self.gso && size > 0 {
                    while at + n < msgs.len() && n < GSO_MAX_SEGMENTS && iov + n < self.iovs.len() {
                        let Datagram { range: r, to: t } = &msgs[at + n];
                        if *t != Some(to) || r.is_empty() || r.len() > size || total + r.len() > GSO_MAX_BYTES {
                            break;
                        }
                        n += 1;
                        total += r.len();
                        if r.len() < size {
                            break;
                        }
                    }
                }
                for k in 0..n {
                    let range = msgs[at + k].range.clone();
                    let payload = &arena[range];
                    self.iovs[iov + k] =
                        libc::iovec { iov_base: payload.as_ptr() as *mut libc::c_void, iov_len: payload.len() };
                }
                self.dests[h] = SockAddr::from(map(to));
                let hdr = &mut self.hdrs[h].msg_hdr;
                // The kernel only reads a sendmmsg destination.
                hdr.msg_name = self.dests[h].as_ptr() as *mut libc::c_void;
                hdr.msg_namelen = self.dests[h].len();
                hdr.msg_iov = &mut self.iovs[iov];
                hdr.msg_iovlen = n;
                hdr.msg_flags = 0;
                if n > 1 {
                    set_segment_cmsg(hdr, &mut self.cmsgs[h], size as u16);
                } else {
                    hdr.msg_control = std::ptr::null_mut();
                    hdr.msg_controllen = 0;
                }
                self.hdrs[h].msg_len = 0;
                self.counts[h] = n;
                h += 1;
                iov += n;
                at += n;
            }
            // SAFETY: the first h headers point at payloads of `arena`,
            // borrowed for this call (the kernel only reads them), at filled
            // address slots and at their control messages.
            let r = unsafe {
                libc::sendmmsg(fd.as_raw_fd(), self.hdrs.as_mut_ptr(), h as libc::c_uint, libc::MSG_DONTWAIT)
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => at = first,
                    io::ErrorKind::WouldBlock => return Ok((sent, failed + msgs.len() - first)),
                    // A segmented send the kernel or the device cannot do:
                    // send datagram by datagram from now on.
                    _ if self.counts[0] > 1 && self.gso => {
                        log::debug!("segmented UDP sends refused ({e}); sending datagram by datagram");
                        self.gso = false;
                        at = first;
                    }
                    // The first datagram of this round failed (too large,
                    // unreachable): skip it and go on with the rest.
                    _ => {
                        failed += self.counts[0];
                        at = first + self.counts[0];
                    }
                }
                continue;
            }
            let done: usize = self.counts[..r as usize].iter().sum();
            sent += done;
            at = first + done;
        }
        Ok((sent, failed))
    }
}

/// What one received message was.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecvMeta {
    /// Bytes received (`usize::MAX` if they were cut).
    pub len: usize,
    /// The source.
    pub from: Option<SocketAddr>,
    /// With `UDP_GRO`: the size of each of the coalesced datagrams the
    /// message holds (the last may be shorter); 0 for one datagram.
    pub segment: usize,
}

/// Asks the kernel to coalesce received datagrams (`UDP_GRO`); each message
/// then says its segment size in [`RecvMeta::segment`].
pub fn enable_udp_gro(sock: &impl AsRawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads one c_int from a live local.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_GRO,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The `UDP_GRO` segment size in a received message's control data, if any.
fn gro_segment(hdr: &libc::msghdr) -> usize {
    if hdr.msg_control.is_null() || hdr.msg_controllen == 0 {
        return 0;
    }
    // SAFETY: the kernel filled msg_control (our 32-byte buffer) with
    // msg_controllen bytes of control messages; CMSG_FIRSTHDR/CMSG_NXTHDR
    // walk only within that, and CMSG_DATA of a UDP_GRO message holds an int.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                return usize::try_from(size).unwrap_or(0);
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    0
}

/// Points `hdr` at a control message in `space` that sets the segment size.
fn set_segment_cmsg(hdr: &mut libc::msghdr, space: &mut [u64; 4], size: u16) {
    hdr.msg_control = space.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is arithmetic on a constant.
    hdr.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as libc::c_uint) } as usize;
    // SAFETY: msg_control points at 32 bytes, 8-byte aligned, enough for one
    // cmsghdr with a u16 of data (CMSG_SPACE(2) is 24); CMSG_FIRSTHDR and
    // CMSG_DATA stay inside it.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(hdr);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = libc::UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as libc::c_uint) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), size);
    }
}

// ---------------------------------------------------------------------------
// Privileges (issue 13): `--user USER` switches to USER and its groups once
// the tap, the sockets and the key files are open.

/// A user account, as the password database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Its name.
    pub name: String,
    /// Its user id.
    pub uid: libc::uid_t,
    /// Its primary group id.
    pub gid: libc::gid_t,
}

/// Why the process could not become another user.
#[derive(Debug)]
pub enum PrivilegeError {
    /// The password database has no such user.
    NoSuchUser(String),
    /// Looking the user up failed.
    Lookup(io::Error),
    /// A step of the switch failed (`initgroups`, `setgid`, `setuid`).
    Step {
        /// Which call.
        call: &'static str,
        /// Why.
        source: io::Error,
    },
    /// After the switch, the process could still become root again.
    NotDropped,
}

impl std::fmt::Display for PrivilegeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PrivilegeError::NoSuchUser(name) => write!(f, "no user named {name}"),
            PrivilegeError::Lookup(_) => f.write_str("cannot look the user up"),
            PrivilegeError::Step { call, .. } => write!(f, "{call} failed (switching users needs root)"),
            PrivilegeError::NotDropped => {
                f.write_str("root privileges could be regained after switching; refusing to run")
            }
        }
    }
}

impl std::error::Error for PrivilegeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PrivilegeError::Lookup(e) | PrivilegeError::Step { source: e, .. } => Some(e),
            PrivilegeError::NoSuchUser(_) | PrivilegeError::NotDropped => None,
        }
    }
}

/// Looks up an account by name (`getpwnam_r`), or by uid when `name` is
/// `None` and `uid` is given (`getpwuid_r`).
fn lookup_account(name: Option<&str>, uid: libc::uid_t) -> io::Result<Option<Account>> {
    let cname = match name {
        Some(n) => Some(std::ffi::CString::new(n).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?),
        None => None,
    };
    let mut buf: Vec<libc::c_char> = vec![0; 1024];
    loop {
        // SAFETY: passwd is plain old data; zeroed is a valid value for it.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is to a live local or to `buf`, whose length
        // is passed; the strings `pwd` points at live in `buf` and are read
        // below while `buf` still lives.
        let r = unsafe {
            match &cname {
                Some(c) => libc::getpwnam_r(c.as_ptr(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result),
                None => libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result),
            }
        };
        if r == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        if result.is_null() {
            return Ok(None);
        }
        // SAFETY: on success pw_name points at a NUL-terminated string in
        // `buf`, which is alive here.
        let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) }.to_string_lossy().into_owned();
        return Ok(Some(Account { name, uid: pwd.pw_uid, gid: pwd.pw_gid }));
    }
}

/// The account of the effective user, if the password database has it.
pub fn current_account() -> Option<Account> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    lookup_account(None, euid).ok().flatten()
}

/// Looks up `name` in the password database.
pub fn account(name: &str) -> Result<Account, PrivilegeError> {
    lookup_account(Some(name), 0)
        .map_err(PrivilegeError::Lookup)?
        .ok_or_else(|| PrivilegeError::NoSuchUser(name.to_owned()))
}

fn step(call: &'static str, r: libc::c_int) -> Result<(), PrivilegeError> {
    if r < 0 {
        Err(PrivilegeError::Step { call, source: io::Error::last_os_error() })
    } else {
        Ok(())
    }
}

/// Becomes `user` for good: its supplementary groups (`initgroups`), its
/// group, then its user id, in that order (the group calls need the
/// privilege the last call gives up). Checks afterwards that root cannot be
/// regained. Already being that user (and nobody else) is not an error.
pub fn become_user(user: &str) -> Result<Account, PrivilegeError> {
    let acct = account(user)?;
    let cname = std::ffi::CString::new(acct.name.as_str()).map_err(|_| PrivilegeError::NoSuchUser(user.to_owned()))?;
    // SAFETY: the id getters have no preconditions and cannot fail.
    let (uid, euid, gid, egid) = unsafe { (libc::getuid(), libc::geteuid(), libc::getgid(), libc::getegid()) };
    if (uid, euid, gid, egid) == (acct.uid, acct.uid, acct.gid, acct.gid) && acct.uid != 0 {
        return Ok(acct);
    }
    // SAFETY: initgroups reads the NUL-terminated name for the duration of
    // the call; setgid and setuid take plain ids.
    unsafe {
        step("initgroups", libc::initgroups(cname.as_ptr(), acct.gid))?;
        step("setgid", libc::setgid(acct.gid))?;
        step("setuid", libc::setuid(acct.uid))?;
    }
    if acct.uid != 0 {
        // SAFETY: setuid(0) takes a plain id; it must fail now.
        let regained = unsafe { libc::setuid(0) } == 0;
        // SAFETY: as above.
        let (uid, euid) = unsafe { (libc::getuid(), libc::geteuid()) };
        if regained || uid != acct.uid || euid != acct.uid {
            return Err(PrivilegeError::NotDropped);
        }
    }
    Ok(acct)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn mmsg_round_trip_v4_and_v6() {
        for (bind, peer) in [("127.0.0.1:0", "127.0.0.1:0"), ("[::1]:0", "[::1]:0")] {
            let rx = UdpSocket::bind(bind).unwrap();
            let tx = UdpSocket::bind(peer).unwrap();
            let to = rx.local_addr().unwrap();
            let payloads: Vec<Vec<u8>> = (0..5).map(|i| vec![i as u8; 10 + i * 100]).collect();
            let arena: Vec<u8> = payloads.concat();
            let mut msgs = Vec::new();
            let mut at = 0;
            for p in &payloads {
                msgs.push(Datagram { range: at..at + p.len(), to: Some(to) });
                at += p.len();
            }
            let mut m = Mmsg::new(3);
            assert_eq!(m.send(&tx, &arena, &msgs, |a| a).unwrap(), (5, 0));
            let mut store = vec![0u8; 2048 * 8];
            let mut meta = vec![RecvMeta::default(); 8];
            let mut got = Vec::new();
            for _ in 0..100 {
                match m.recv(&rx, &mut store, 2048, 16, &mut meta) {
                    Ok(n) => {
                        for (i, m) in meta.iter().take(n).enumerate() {
                            assert_eq!(m.from, Some(tx.local_addr().unwrap()));
                            assert_eq!(m.segment, 0);
                            got.push(store[i * 2048 + 16..][..m.len].to_vec());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("{e}"),
                }
                if got.len() == 5 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            assert_eq!(got, payloads);
        }
    }

    #[test]
    fn segmented_sends_arrive_as_the_same_datagrams() {
        for gso in [true, false] {
            let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
            rx.set_read_timeout(Some(std::time::Duration::from_secs(1))).unwrap();
            let other = UdpSocket::bind("127.0.0.1:0").unwrap();
            other.set_read_timeout(Some(std::time::Duration::from_secs(1))).unwrap();
            let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
            // 70 equal datagrams and a short one to rx (more than one
            // segmented send holds), one to another peer in between, then
            // three more to rx.
            let mut payloads: Vec<(Vec<u8>, std::net::SocketAddr)> = Vec::new();
            for i in 0..70u8 {
                payloads.push((vec![i; 1000], rx.local_addr().unwrap()));
            }
            payloads.push((vec![70; 300], rx.local_addr().unwrap()));
            payloads.push((vec![99; 1000], other.local_addr().unwrap()));
            for i in 0..3u8 {
                payloads.push((vec![200 + i; 1000], rx.local_addr().unwrap()));
            }
            let arena: Vec<u8> = payloads.iter().flat_map(|(p, _)| p.clone()).collect();
            let mut msgs = Vec::new();
            let mut at = 0;
            for (p, to) in &payloads {
                msgs.push(Datagram { range: at..at + p.len(), to: Some(*to) });
                at += p.len();
            }
            // A datagram without a destination is counted, not sent.
            msgs.push(Datagram { range: 0..10, to: None });
            let mut m = Mmsg::new(128);
            m.set_gso(gso);
            assert_eq!(m.send(&tx, &arena, &msgs, |a| a).unwrap(), (payloads.len(), 1));
            let mut buf = [0u8; 4096];
            for (p, to) in &payloads {
                let sock = if *to == rx.local_addr().unwrap() { &rx } else { &other };
                let n = sock.recv(&mut buf).unwrap();
                assert_eq!(&buf[..n], &p[..], "gso {gso}");
            }
        }
    }

    #[test]
    fn mmsg_marks_truncated_datagrams() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(&[7u8; 100], rx.local_addr().unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut m = Mmsg::new(2);
        let mut store = [0u8; 50];
        let mut meta = [RecvMeta::default(); 1];
        assert_eq!(m.recv(&rx, &mut store, 50, 0, &mut meta).unwrap(), 1);
        assert_eq!(meta[0].len, usize::MAX);
    }
}

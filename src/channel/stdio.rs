//! The stdio channel (`-t -`): Ethernet frames on stdin/stdout in VDE
//! framing, each record a 2-byte big-endian length and that many bytes.
//!
//! Input is decoded incrementally (records split across reads, several in
//! one read). Output goes out one `writev` per record; when the reader is
//! slow the rest waits in a bounded queue, and what does not fit is dropped
//! and counted, so a stalled reader never stalls the switch. When stdout is a
//! pipe it is shrunk to 4096 bytes (SPEC 4: vde_plug 4.0.1 loses sync when a
//! read ends inside a length header; with a small pipe it does not).
//!
//! stdin and stdout may also be regular files or `/dev/null`, which epoll
//! refuses to watch (`EPERM`) because they are always ready: such an end is
//! not registered. Reading a file never says "nothing yet", so the loop reads
//! it batch after batch until its end (which ends the daemon, as end of input
//! does); writing one never says "try later", so a record is written whole at
//! once. Anything else that cannot be watched (a terminal can; `/dev/zero`
//! cannot, and would never end) is refused at start with a line that names
//! stdin or stdout.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use mio::unix::pipe;
use mio::{Interest, Registry, Token};

use super::batch::{ReadOne, RxPool};
use super::{Channel, Datagram, Rx, SendReport, MAX_PAYLOAD};

/// Pipe size for stdout (SPEC section 4).
pub const STDOUT_PIPE_SIZE: usize = 4096;
/// Most output bytes queued for a slow reader: a burst of a few thousand
/// full-size frames, since the pipe itself holds only two.
pub const OUTPUT_QUEUE_LIMIT: usize = 4 << 20;
/// Queue memory kept after a burst has drained.
const QUEUE_KEEP: usize = 64 << 10;

/// An incremental decoder of VDE records.
#[derive(Debug)]
pub struct Decoder {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder with room for the largest record plus a read's worth.
    pub fn new() -> Self {
        Decoder { buf: vec![0u8; 2 * (MAX_PAYLOAD + 2)].into_boxed_slice(), start: 0, end: 0 }
    }

    /// The next complete record's frame, if one is buffered. Zero-length
    /// records are skipped.
    pub fn next_frame(&mut self) -> Option<&[u8]> {
        loop {
            let avail = &self.buf[self.start..self.end];
            if avail.len() < 2 {
                return None;
            }
            let n = u16::from_be_bytes([avail[0], avail[1]]) as usize;
            if n == 0 {
                self.start += 2;
                continue;
            }
            if avail.len() < 2 + n {
                return None;
            }
            let at = self.start + 2;
            self.start = at + n;
            return Some(&self.buf[at..at + n]);
        }
    }

    /// Room to read more bytes into; compacts first when needed.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.buf.len() - self.end < MAX_PAYLOAD + 2 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// Marks `n` bytes of [`Decoder::spare`] as filled.
    pub fn filled(&mut self, n: usize) {
        self.end += n;
    }

    /// Bytes of an incomplete record left over.
    pub fn pending(&self) -> usize {
        self.end - self.start
    }

    /// Decodes a whole byte string at once (for tests and fuzzing): the
    /// frames, and the number of bytes left incomplete at the end.
    pub fn decode_all(bytes: &[u8]) -> (Vec<Vec<u8>>, usize) {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let spare = d.spare();
            let n = spare.len().min(rest.len());
            spare[..n].copy_from_slice(&rest[..n]);
            d.filled(n);
            rest = &rest[n..];
            while let Some(f) = d.next_frame() {
                out.push(f.to_vec());
            }
        }
        (out, d.pending())
    }
}

/// Encodes one record's header.
pub fn header(len: usize) -> Option<[u8; 2]> {
    u16::try_from(len).ok().filter(|&n| n > 0).map(u16::to_be_bytes)
}

/// What stdin or stdout is, when the event loop cannot watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unwatched {
    /// A regular file, or `/dev/null`: always ready, read and written
    /// without the event loop.
    AlwaysReady,
    /// Anything else epoll refuses (a device such as `/dev/zero`): refused.
    Refused(&'static str),
}

/// Sorts an end that epoll refused to watch, by its `fstat`.
pub fn unwatched_kind(meta: &std::fs::Metadata) -> Unwatched {
    // /dev/null is character device 1:3 on Linux.
    const DEV_NULL: u64 = (1 << 8) | 3;
    let ft = meta.file_type();
    if ft.is_file() || (ft.is_char_device() && meta.rdev() == DEV_NULL) {
        Unwatched::AlwaysReady
    } else if ft.is_char_device() {
        Unwatched::Refused("a character device")
    } else if ft.is_block_device() {
        Unwatched::Refused("a block device")
    } else if ft.is_dir() {
        Unwatched::Refused("a directory")
    } else {
        Unwatched::Refused("a file that cannot be watched")
    }
}

/// stdin or stdout is of a kind the channel cannot use.
#[derive(Debug)]
pub struct UnusableEnd {
    /// "stdin" or "stdout".
    pub which: &'static str,
    /// What it is.
    pub what: &'static str,
    source: io::Error,
}

impl fmt::Display for UnusableEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is {} that cannot be watched for readiness; use a pipe, a socket, a regular file or /dev/null",
            self.which, self.what
        )
    }
}

impl std::error::Error for UnusableEnd {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Registers one end; an end epoll refuses is either always ready (false:
/// not registered) or an error naming it.
fn register_end(
    which: &'static str,
    fd: std::os::fd::BorrowedFd<'_>,
    register: impl FnOnce() -> io::Result<()>,
) -> io::Result<bool> {
    match register() {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            let meta = std::fs::File::from(fd.try_clone_to_owned()?).metadata()?;
            match unwatched_kind(&meta) {
                Unwatched::AlwaysReady => {
                    log::debug!("{which} is a regular file or /dev/null: used without the event loop");
                    Ok(false)
                }
                Unwatched::Refused(what) => Err(io::Error::new(e.kind(), UnusableEnd { which, what, source: e })),
            }
        }
        Err(e) => Err(e),
    }
}

/// stdin/stdout as a channel.
#[derive(Debug)]
pub struct StdioChannel {
    input: pipe::Receiver,
    output: pipe::Sender,
    decoder: Decoder,
    queue: Vec<u8>,
    queued_from: usize,
    eof: bool,
    /// False when stdout is a regular file or /dev/null: always writable,
    /// so a record is written whole at once, never queued for later.
    output_watched: bool,
}

impl StdioChannel {
    /// Takes over stdin and stdout: non-blocking, stdout shrunk if a pipe.
    pub fn open() -> io::Result<Self> {
        let input: OwnedFd = io::stdin().as_fd().try_clone_to_owned()?;
        let output: OwnedFd = io::stdout().as_fd().try_clone_to_owned()?;
        let is_fifo =
            std::fs::File::from(output.try_clone()?).metadata().map(|m| m.file_type().is_fifo()).unwrap_or(false);
        if is_fifo {
            match crate::sys::set_pipe_size(output.as_fd(), STDOUT_PIPE_SIZE) {
                Ok(n) => log::debug!("stdout pipe size set to {n} bytes"),
                Err(e) => log::warn!("could not shrink the stdout pipe to {STDOUT_PIPE_SIZE} bytes: {e}"),
            }
        }
        let input = pipe::Receiver::from(input);
        let output = pipe::Sender::from(output);
        input.set_nonblocking(true)?;
        output.set_nonblocking(true)?;
        Ok(StdioChannel {
            input,
            output,
            decoder: Decoder::new(),
            queue: Vec::new(),
            queued_from: 0,
            eof: false,
            output_watched: true,
        })
    }

    fn backlog(&self) -> usize {
        self.queue.len() - self.queued_from
    }

    /// The next frame from stdin into `buf`, reading more when no whole
    /// record is buffered.
    fn read_one(&mut self, buf: &mut [u8]) -> io::Result<ReadOne> {
        loop {
            if let Some(frame) = self.decoder.next_frame() {
                let len = frame.len();
                buf[..len].copy_from_slice(frame);
                return Ok(ReadOne::Got { len, from: None });
            }
            if self.eof {
                if self.decoder.pending() > 0 {
                    log::warn!("stdin ended inside a record; {} bytes discarded", self.decoder.pending());
                    self.decoder = Decoder::new();
                }
                return Ok(ReadOne::Closed);
            }
            match self.input.read(self.decoder.spare()) {
                Ok(0) => self.eof = true,
                Ok(n) => self.decoder.filled(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadOne::Empty),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes one record, or queues what the pipe did not take.
    fn write_record(&mut self, payload: &[u8]) -> io::Result<Record> {
        let Some(hdr) = header(payload.len()) else { return Ok(Record::TooLarge) };
        if !self.output_watched {
            return self.write_whole(hdr, payload);
        }
        let mut written = 0;
        if !self.has_backlog() {
            loop {
                match self.output.write_vectored(&[IoSlice::new(&hdr), IoSlice::new(payload)]) {
                    Ok(n) => written = n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
                break;
            }
            if written == 2 + payload.len() {
                return Ok(Record::Written);
            }
        }
        if written == 0 && self.backlog() + 2 + payload.len() > OUTPUT_QUEUE_LIMIT {
            return Ok(Record::QueueFull);
        }
        // Once any byte of a record is out, the rest must follow, or the
        // stream loses sync; a partial record is always queued whole.
        if self.queued_from > 0 && self.queued_from == self.queue.len() {
            self.queue.clear();
            self.queued_from = 0;
        }
        let rest_hdr = &hdr[written.min(2)..];
        self.queue.extend_from_slice(rest_hdr);
        self.queue.extend_from_slice(&payload[written.saturating_sub(2)..]);
        Ok(Record::Written)
    }
}

impl StdioChannel {
    /// Writes a record to a stdout that is always ready (a file): whole, now.
    fn write_whole(&mut self, hdr: [u8; 2], payload: &[u8]) -> io::Result<Record> {
        let total = 2 + payload.len();
        let mut done = 0;
        while done < total {
            let slices = if done < 2 {
                [IoSlice::new(&hdr[done..]), IoSlice::new(payload)]
            } else {
                [IoSlice::new(&[]), IoSlice::new(&payload[done - 2..])]
            };
            match self.output.write_vectored(&slices) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Record::Written)
    }
}

/// What became of one record.
enum Record {
    /// Written, or queued whole behind earlier output.
    Written,
    /// The output queue is full: the record is dropped.
    QueueFull,
    /// Longer than a record can say.
    TooLarge,
}

impl Channel for StdioChannel {
    fn name(&self) -> &str {
        "stdio"
    }

    fn kind(&self) -> &'static str {
        "stdio"
    }

    /// Registers what epoll can watch. A file (or /dev/null) on stdin is not
    /// registered: its reads never wait, so the loop, told by
    /// [`StdioChannel::recv_batch`] that more may come, reads it to its end.
    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let input = self.input.as_fd().try_clone_to_owned()?;
        register_end("stdin", input.as_fd(), || registry.register(&mut self.input, token, Interest::READABLE))?;
        let output = self.output.as_fd().try_clone_to_owned()?;
        self.output_watched =
            register_end("stdout", output.as_fd(), || registry.register(&mut self.output, token, Interest::WRITABLE))?;
        Ok(())
    }

    /// Decodes as many records as the pool holds, reading stdin as needed.
    fn recv_batch(&mut self, pool: &mut RxPool) -> io::Result<Rx> {
        pool.fill_each(|buf| self.read_one(buf))
    }

    /// One `writev` per record; what the pipe does not take waits in the
    /// bounded queue.
    fn send_batch(&mut self, arena: &[u8], batch: &[Datagram]) -> io::Result<SendReport> {
        let mut report = SendReport::default();
        for d in batch {
            match self.write_record(&arena[d.range.clone()])? {
                Record::Written => report.sent += 1,
                Record::QueueFull => report.failed += 1,
                Record::TooLarge => report.too_large += 1,
            }
        }
        Ok(report)
    }

    fn flush(&mut self) -> io::Result<()> {
        while self.has_backlog() {
            match self.output.write(&self.queue[self.queued_from..]) {
                Ok(n) => self.queued_from += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if !self.has_backlog() {
            self.queue.clear();
            self.queue.shrink_to(QUEUE_KEEP);
            self.queued_from = 0;
        }
        Ok(())
    }

    fn has_backlog(&self) -> bool {
        self.queued_from < self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(frame: &[u8]) -> Vec<u8> {
        let mut v = header(frame.len()).unwrap().to_vec();
        v.extend_from_slice(frame);
        v
    }

    #[test]
    fn decodes_split_and_joined_records() {
        let frames: Vec<Vec<u8>> = (0..50).map(|i| vec![i as u8; 14 + i * 37]).collect();
        let mut stream = Vec::new();
        for f in &frames {
            stream.extend(record(f));
            stream.extend([0, 0]); // no-op records are skipped
        }
        for chunk in [1, 2, 3, 7, 64, 1500, stream.len()] {
            let mut d = Decoder::new();
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                let spare = d.spare();
                spare[..piece.len()].copy_from_slice(piece);
                d.filled(piece.len());
                while let Some(f) = d.next_frame() {
                    got.push(f.to_vec());
                }
            }
            assert_eq!(got, frames, "chunk {chunk}");
            assert_eq!(d.pending(), 0);
        }
    }

    #[test]
    fn largest_record_fits_after_compaction() {
        let big = vec![7u8; MAX_PAYLOAD];
        let mut stream = record(&[1u8; 20]);
        stream.truncate(5);
        let mut all = record(&[1u8; 20]);
        all.extend(record(&big));
        all.extend(record(&big));
        let (frames, pending) = Decoder::decode_all(&all);
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[2], big);
        assert_eq!(pending, 0);
        let (frames, pending) = Decoder::decode_all(&stream);
        assert!(frames.is_empty());
        assert_eq!(pending, 5);
    }

    #[test]
    fn header_bounds() {
        assert_eq!(header(0), None);
        assert_eq!(header(0x1234), Some([0x12, 0x34]));
        assert_eq!(header(65535), Some([0xff, 0xff]));
        assert_eq!(header(65536), None);
    }
}

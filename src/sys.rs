//! The few system calls std and mio do not wrap. This is the one module
//! allowed unsafe code; each block says why it is sound.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

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

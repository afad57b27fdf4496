//! The key file and the key derivation.
//!
//! A key file is any file of at least [`MIN_KEY_FILE_LEN`] bytes (1 MiB of
//! random data is typical). It is read once, at start, in small pieces that
//! go straight into HKDF-Extract, so no copy of the whole file is ever held:
//!
//! ```text
//! master  = HKDF-Extract(salt = "rrqnet transport v1", IKM = whole file)
//!         = HMAC-SHA256("rrqnet transport v1", file)
//! session = HKDF-Expand(master, info = "rrqnet transport v1" || session id, 32)
//! finger  = HKDF-Expand(master, info = "rrqnet transport v1 fingerprint", 8)
//! ```
//!
//! The session key is the ChaCha20-Poly1305 key of one sender session. The
//! fingerprint is a non-secret name of the key for logs and for telling key
//! files with the same content apart from different ones.
//!
//! # Opening
//!
//! A key file path may name anything, and reading a FIFO, a socket or a
//! device would block the start or never end. So the path is looked at
//! first (a device is not even opened: opening one can have effects of its
//! own), then opened with `O_NONBLOCK` (a FIFO that appeared meanwhile does
//! not wait for a writer), and the type that counts is the one `fstat`
//! reports on the opened descriptor, before a byte is read. Symbolic links
//! are followed: a key kept elsewhere and linked is normal. A key file that
//! the group or others may read or write is used, with a warning.
//!
//! # What is wiped from memory
//!
//! Wiped (with `zeroize`, which the compiler cannot optimise away): the
//! buffer every byte of the file passes through on its way into HMAC, and
//! each session key we derive, once it is handed to the AEAD. (A value the
//! compiler chose to copy while moving it between stack frames can leave a
//! copy behind; `zeroize` clears the place a value ends its life in.)
//!
//! Not wiped, because `ring` keeps them in opaque types with no way to clear
//! them and does not clear them itself when they are dropped: the HMAC
//! state while the file streams through it (its pending block holds up to
//! the last 63 bytes of the file, and the copy `sign` consumes is left on
//! the stack), the tag that is the master key for the moment it takes to
//! make the [`hkdf::Prk`], the `Prk` itself (it lives as long as the
//! [`MasterKey`]: it is needed for every new session), and the expanded
//! ChaCha20 key inside each AEAD key. They stay in this process's memory
//! until reused. Against a reader of that memory (a core dump, swap, a
//! debugger) only the process's own settings help: no core dumps, no
//! ptrace, no swap.

use std::fmt;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ring::{hkdf, hmac};
use zeroize::Zeroizing;

use super::aead::KEY_LEN;
use super::wire::SessionId;

/// The shortest key file accepted.
pub const MIN_KEY_FILE_LEN: u64 = 32;

/// The versioned context of every derivation: the HKDF salt, and the prefix
/// of every HKDF info.
pub const CONTEXT: &[u8] = b"rrqnet transport v1";

const FINGERPRINT_INFO: &[u8] = b" fingerprint";

/// The master key of one key file: the HKDF pseudorandom key.
#[derive(Clone)]
pub struct MasterKey {
    prk: hkdf::Prk,
    fingerprint: KeyFingerprint,
}

/// A non-secret 64-bit name of a master key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyFingerprint(pub [u8; 8]);

impl fmt::Display for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.fingerprint)
    }
}

/// Why a key file cannot be used.
#[derive(Debug)]
pub enum KeyFileProblem {
    /// It could not be opened (missing, permission denied, ...).
    Open(io::Error),
    /// Reading it failed.
    Read(io::Error),
    /// It is a directory.
    Directory,
    /// It is not a regular file: a FIFO, a socket, a device.
    NotRegular(FileKind),
    /// It has no bytes.
    Empty,
    /// It has fewer than [`MIN_KEY_FILE_LEN`] bytes.
    TooShort(u64),
}

impl fmt::Display for KeyFileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyFileProblem::Open(e) => write!(f, "cannot open: {e}"),
            KeyFileProblem::Read(e) => write!(f, "cannot read: {e}"),
            KeyFileProblem::Directory => f.write_str("is a directory, not a key file"),
            KeyFileProblem::NotRegular(kind) => write!(f, "is {kind}, not a regular file"),
            KeyFileProblem::Empty => write!(f, "is empty; a key file needs at least {MIN_KEY_FILE_LEN} bytes"),
            KeyFileProblem::TooShort(n) => {
                write!(f, "is too short: {n} bytes, a key file needs at least {MIN_KEY_FILE_LEN}")
            }
        }
    }
}

/// What a path that is not a regular file or a directory names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A named pipe: reading it would wait for a writer.
    Fifo,
    /// A unix-domain socket.
    Socket,
    /// A character device such as `/dev/null`, `/dev/zero` or a terminal.
    CharDevice,
    /// A block device such as a disk.
    BlockDevice,
    /// Anything else.
    Other,
}

impl FileKind {
    fn of(t: fs::FileType) -> FileKind {
        if t.is_fifo() {
            FileKind::Fifo
        } else if t.is_socket() {
            FileKind::Socket
        } else if t.is_char_device() {
            FileKind::CharDevice
        } else if t.is_block_device() {
            FileKind::BlockDevice
        } else {
            FileKind::Other
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Fifo => "a FIFO (named pipe)",
            FileKind::Socket => "a socket",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Other => "an unknown kind of file",
        })
    }
}

/// A key file that cannot be used: the daemon exits 1 with this line.
#[derive(Debug)]
pub struct KeyFileError {
    /// The path as the user gave it.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: KeyFileProblem,
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key file {}: {}", self.path.display(), self.problem)
    }
}

impl std::error::Error for KeyFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.problem {
            KeyFileProblem::Open(e) | KeyFileProblem::Read(e) => Some(e),
            _ => None,
        }
    }
}

/// Something to log about a key file that is still used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyFileWarning {
    /// The group or others may read it (and perhaps write it too: `mode`
    /// tells, and so does the message).
    ReadableByOthers {
        /// The path as the user gave it.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The group or others may write it, though not read it: whoever can
    /// write it can put a key of their choosing in place for the next start.
    WritableByOthers {
        /// The path as the user gave it.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

impl KeyFileWarning {
    /// The warning for a file of permission bits `mode`, if any.
    fn for_mode(path: &Path, mode: u32) -> Option<KeyFileWarning> {
        let path = path.to_path_buf();
        if mode & 0o044 != 0 {
            Some(KeyFileWarning::ReadableByOthers { path, mode })
        } else if mode & 0o022 != 0 {
            Some(KeyFileWarning::WritableByOthers { path, mode })
        } else {
            None
        }
    }
}

impl fmt::Display for KeyFileWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (path, mode, what) = match self {
            KeyFileWarning::ReadableByOthers { path, mode } if mode & 0o022 != 0 => {
                (path, mode, "is readable by group or others, and writable by them too")
            }
            KeyFileWarning::ReadableByOthers { path, mode } => (path, mode, "is readable by group or others"),
            KeyFileWarning::WritableByOthers { path, mode } => (path, mode, "is writable by group or others"),
        };
        write!(f, "key file {} {what} (mode {:04o}); it should be mode 0600", path.display(), mode & 0o7777)
    }
}

/// A read key file: the key, and a warning to log if there is one.
#[derive(Debug)]
pub struct LoadedKey {
    /// The master key.
    pub key: MasterKey,
    /// Set when the file's permissions are too open.
    pub warning: Option<KeyFileWarning>,
}

impl MasterKey {
    /// Reads the key file at `path` once, streaming it through HKDF-Extract.
    /// Never blocks on what the path names: anything but a regular file is
    /// refused before it is read.
    pub fn load(path: &Path) -> Result<LoadedKey, KeyFileError> {
        let fail = |problem| KeyFileError { path: path.to_path_buf(), problem };
        // A path that names something else is refused without opening it.
        // When it cannot be looked at, opening it says why.
        if let Ok(meta) = fs::metadata(path) {
            regular(&meta).map_err(fail)?;
        }
        let file = open_nonblocking(path).map_err(|e| fail(KeyFileProblem::Open(e)))?;
        // What counts is the opened file, not the path again: it may have
        // changed since.
        let meta = file.metadata().map_err(|e| fail(KeyFileProblem::Read(e)))?;
        regular(&meta).map_err(fail)?;
        let warning = KeyFileWarning::for_mode(path, meta.permissions().mode());
        let key = Self::from_reader(file).map_err(fail)?;
        Ok(LoadedKey { key, warning })
    }

    /// The master key of key material given whole. At least
    /// [`MIN_KEY_FILE_LEN`] bytes, like a key file.
    pub fn from_bytes(material: &[u8]) -> Result<MasterKey, KeyFileProblem> {
        Self::from_reader(material)
    }

    fn from_reader(mut r: impl Read) -> Result<MasterKey, KeyFileProblem> {
        let mut extract = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, CONTEXT));
        // Wiped when dropped, on every path out of here.
        let mut buf = Zeroizing::new([0u8; 8192]);
        let mut total: u64 = 0;
        loop {
            match r.read(&mut buf[..]) {
                Ok(0) => break,
                Ok(n) => {
                    extract.update(&buf[..n]);
                    total += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(KeyFileProblem::Read(e)),
            }
        }
        match total {
            0 => return Err(KeyFileProblem::Empty),
            n if n < MIN_KEY_FILE_LEN => return Err(KeyFileProblem::TooShort(n)),
            _ => {}
        }
        let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, extract.sign().as_ref());
        let mut fingerprint = [0u8; 8];
        expand(&prk, &[CONTEXT, FINGERPRINT_INFO], &mut fingerprint);
        Ok(MasterKey { prk, fingerprint: KeyFingerprint(fingerprint) })
    }

    /// The key's non-secret fingerprint.
    pub fn fingerprint(&self) -> KeyFingerprint {
        self.fingerprint
    }

    /// The ChaCha20-Poly1305 key of session `id`, wiped when dropped.
    pub(crate) fn session_key(&self, id: &SessionId) -> Zeroizing<[u8; KEY_LEN]> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        expand(&self.prk, &[CONTEXT, &id.0], &mut key[..]);
        key
    }
}

/// Opens `path` for reading without waiting: `O_NONBLOCK` makes opening a
/// FIFO return at once instead of waiting for a writer (it changes nothing
/// for a regular file), and `O_NOCTTY` keeps a terminal from becoming ours.
/// Symbolic links are followed.
fn open_nonblocking(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path)
}

/// Refuses anything but a regular file, naming what it is.
fn regular(meta: &Metadata) -> Result<(), KeyFileProblem> {
    let t = meta.file_type();
    if t.is_file() {
        Ok(())
    } else if t.is_dir() {
        Err(KeyFileProblem::Directory)
    } else {
        Err(KeyFileProblem::NotRegular(FileKind::of(t)))
    }
}

/// HKDF-Expand into `out`, which is at most 255 hash lengths, as every
/// caller's fixed-size array is.
fn expand(prk: &hkdf::Prk, info: &[&[u8]], out: &mut [u8]) {
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let filled = prk.expand(info, Len(out.len())).and_then(|okm| okm.fill(out));
    debug_assert!(filled.is_ok(), "HKDF-Expand fails only above 8160 bytes");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The fixed key material of the golden vectors: bytes 0, 1, ..., 63.
    pub(crate) fn golden_material() -> Vec<u8> {
        (0..64u8).collect()
    }

    /// The derivation is pinned: these were computed independently with
    /// Python's hmac module (HKDF by hand per RFC 5869) and must never change
    /// for version 1.
    #[test]
    fn golden_hkdf_outputs() {
        let key = MasterKey::from_bytes(&golden_material()).unwrap();
        assert_eq!(
            hex(&key.session_key(&SessionId(*b"0123456789abcdef"))[..]),
            "5609e4275bacd2bcdb574e56167ecf66d5cc846aac43ba5f16f7209d02c41428"
        );
        assert_eq!(key.fingerprint().to_string(), "c3ad36c96d912237");
    }

    #[test]
    fn streaming_in_pieces_equals_the_whole() {
        struct Dribble<'a>(&'a [u8]);
        impl Read for Dribble<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(out.len()).min(7);
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let material: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 256) as u8).collect();
        let a = MasterKey::from_bytes(&material).unwrap();
        let b = MasterKey::from_reader(Dribble(&material)).unwrap();
        let id = SessionId([3; 16]);
        assert_eq!(a.session_key(&id), b.session_key(&id));
        assert_eq!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn every_byte_of_the_file_matters_and_sessions_get_distinct_keys() {
        let material = golden_material();
        let base = MasterKey::from_bytes(&material).unwrap();
        let id = SessionId([9; 16]);
        for i in [0, 31, 63] {
            let mut m = material.clone();
            m[i] ^= 0x80;
            let other = MasterKey::from_bytes(&m).unwrap();
            assert_ne!(other.session_key(&id), base.session_key(&id), "byte {i}");
            assert_ne!(other.fingerprint(), base.fingerprint());
        }
        let mut longer = material.clone();
        longer.push(0);
        assert_ne!(MasterKey::from_bytes(&longer).unwrap().session_key(&id), base.session_key(&id));
        assert_ne!(base.session_key(&SessionId([10; 16])), base.session_key(&id));
    }

    #[test]
    fn short_material_is_refused() {
        assert!(matches!(MasterKey::from_bytes(&[]), Err(KeyFileProblem::Empty)));
        assert!(matches!(MasterKey::from_bytes(&[1; 31]), Err(KeyFileProblem::TooShort(31))));
        assert!(MasterKey::from_bytes(&[1; 32]).is_ok());
    }

    /// The check on the opened descriptor, apart from the look at the path
    /// before it: a FIFO opened without blocking is refused by its `fstat`.
    #[test]
    fn a_fifo_opens_at_once_and_its_descriptor_is_refused() {
        let dir = std::env::temp_dir().join(format!("rrqnet-key-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        struct Remove(PathBuf);
        impl Drop for Remove {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let _guard = Remove(dir.clone());
        let fifo = dir.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
        assert!(made.success());
        // No writer: a blocking open would wait here for ever.
        let file = open_nonblocking(&fifo).unwrap();
        let meta = file.metadata().unwrap();
        assert!(matches!(regular(&meta), Err(KeyFileProblem::NotRegular(FileKind::Fifo))));
    }

    #[test]
    fn warnings_by_mode() {
        let p = Path::new("/k");
        assert_eq!(KeyFileWarning::for_mode(p, 0o100600), None);
        assert_eq!(KeyFileWarning::for_mode(p, 0o400), None);
        assert_eq!(KeyFileWarning::for_mode(p, 0o700), None, "the owner's own bits are fine");
        for m in [0o640, 0o604, 0o644, 0o660, 0o666] {
            assert!(matches!(KeyFileWarning::for_mode(p, m), Some(KeyFileWarning::ReadableByOthers { .. })), "{m:o}");
        }
        for m in [0o620, 0o602, 0o622] {
            assert!(matches!(KeyFileWarning::for_mode(p, m), Some(KeyFileWarning::WritableByOthers { .. })), "{m:o}");
        }
        let line = |m| KeyFileWarning::for_mode(p, m).unwrap().to_string();
        assert_eq!(line(0o100644), "key file /k is readable by group or others (mode 0644); it should be mode 0600");
        assert_eq!(
            line(0o666),
            "key file /k is readable by group or others, and writable by them too (mode 0666); it should be mode 0600"
        );
        assert_eq!(line(0o602), "key file /k is writable by group or others (mode 0602); it should be mode 0600");
    }

    #[test]
    fn debug_shows_the_fingerprint_not_the_key() {
        let key = MasterKey::from_bytes(&golden_material()).unwrap();
        assert_eq!(format!("{key:?}"), format!("MasterKey({})", key.fingerprint()));
    }
}

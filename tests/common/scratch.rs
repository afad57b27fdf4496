//! Scratch directories for logs, key files and datagrams, removed (with
//! everything in them) when dropped, also when a test fails.

#![allow(dead_code)]

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A directory under the system temp dir, removed when dropped.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    /// `rrqnet-<kind>-<pid>-<tag>`, emptied if a previous run left it.
    pub fn new(kind: &str, tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("rrqnet-{kind}-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch { dir }
    }

    /// Like [`Scratch::new`], with a tag unique in this process.
    pub fn unique(kind: &str) -> Scratch {
        Scratch::new(kind, &SEQ.fetch_add(1, Ordering::SeqCst).to_string())
    }

    /// The path of `name` in it.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `content` to `name` with permissions `mode`; returns the path.
    pub fn write(&self, name: &str, content: &[u8], mode: u32) -> String {
        let path = self.file(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path.to_str().unwrap().to_owned()
    }

    /// A 1 KiB key file of pseudo-random content picked by `seed`, mode 0600.
    pub fn seeded_key(&self, name: &str, seed: u8) -> String {
        let content: Vec<u8> = (0..1024u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 ^ seed).collect();
        self.write(name, &content, 0o600)
    }

    /// A 1 MiB key file, as the manual makes it (`dd if=/dev/random`), mode 0600.
    pub fn random_key(&self, name: &str) -> String {
        let mut content = vec![0u8; 1 << 20];
        File::open("/dev/urandom").unwrap().read_exact(&mut content).unwrap();
        self.write(name, &content, 0o600)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

//! A thin wrapper over ring's ChaCha20-Poly1305 (RFC 8439), in place, with a
//! separate tag, and the nonce rule of this format.
//!
//! Each session has its own key, so the nonce only has to be unique within a
//! session: it is the session's 64-bit counter, big-endian, after four zero
//! bytes.

use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, CHACHA20_POLY1305};

use super::wire::TAG_LEN;

/// The length of a ChaCha20-Poly1305 key.
pub(crate) const KEY_LEN: usize = 32;

/// One session's AEAD key.
#[derive(Clone)]
pub(crate) struct Aead(LessSafeKey);

/// Authentication failed, or the input was of an impossible length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AeadError;

impl Aead {
    /// A key from its 32 bytes.
    pub(crate) fn new(key: &[u8; KEY_LEN]) -> Aead {
        // The only failure of `UnboundKey::new` is a wrong key length, which
        // the array type rules out; fall back on nothing.
        match UnboundKey::new(&CHACHA20_POLY1305, key) {
            Ok(k) => Aead(LessSafeKey::new(k)),
            Err(_) => unreachable!("a 32-byte ChaCha20-Poly1305 key is always accepted"),
        }
    }

    /// The nonce for message number `counter` of a session.
    pub(crate) fn nonce(counter: u64) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&counter.to_be_bytes());
        n
    }

    /// Encrypts `in_out` in place and returns the tag.
    pub(crate) fn seal(&self, nonce: [u8; 12], aad: &[u8], in_out: &mut [u8]) -> Result<[u8; TAG_LEN], AeadError> {
        let tag: Tag = self
            .0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), in_out)
            .map_err(|_| AeadError)?;
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(tag.as_ref());
        Ok(t)
    }

    /// Checks and decrypts `in_out`, which is ciphertext then tag. On success
    /// the plaintext is `in_out[..in_out.len() - TAG_LEN]`; on failure the
    /// contents of `in_out` are unspecified.
    pub(crate) fn open(&self, nonce: [u8; 12], aad: &[u8], in_out: &mut [u8]) -> Result<(), AeadError> {
        self.0
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), in_out)
            .map(|_| ())
            .map_err(|_| AeadError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// RFC 8439 section 2.8.2, through this wrapper.
    #[test]
    fn rfc8439_aead_test_vector() {
        let mut key = [0u8; 32];
        for (i, k) in key.iter_mut().enumerate() {
            *k = 0x80 + i as u8;
        }
        let nonce: [u8; 12] = unhex("07000000 4041424344454647").try_into().unwrap();
        let aad = unhex("50515253c0c1c2c3c4c5c6c7");
        let plaintext: &[u8] = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let ciphertext = unhex(
            "d31a8d34648e60db7b86afbc53ef7ec2 a4aded51296e08fea9e2b5a736ee62d6 3dbea45e8ca9671282fafb69da92728b
             1a71de0a9e060b2905d6a5b67ecd3b36 92ddbd7f2d778b8c9803aee328091b58 fab324e4fad675945585808b4831d7bc
             3ff4def08e4b7a9de576d26586cec64b 6116",
        );
        let tag = unhex("1ae10b594f09e26a7e902ecbd0600691");

        let aead = Aead::new(&key);
        let mut buf = plaintext.to_vec();
        let t = aead.seal(nonce, &aad, &mut buf).unwrap();
        assert_eq!(buf, ciphertext);
        assert_eq!(t.to_vec(), tag);

        buf.extend_from_slice(&t);
        aead.open(nonce, &aad, &mut buf).unwrap();
        assert_eq!(&buf[..plaintext.len()], plaintext);

        let mut bad = ciphertext.clone();
        bad.extend_from_slice(&tag);
        bad[0] ^= 1;
        assert_eq!(aead.open(nonce, &aad, &mut bad), Err(AeadError));
        let mut bad = ciphertext.clone();
        bad.extend_from_slice(&tag);
        assert_eq!(aead.open(nonce, &aad[1..], &mut bad), Err(AeadError));
    }

    #[test]
    fn nonce_is_four_zero_bytes_then_the_counter_big_endian() {
        assert_eq!(Aead::nonce(0x0102_0304_0506_0708), [0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(Aead::nonce(0), [0; 12]);
    }
}

//! The per-session anti-replay window (RFC 6479, as WireGuard does it).
//!
//! A ring of 128 64-bit words holds one bit per counter. One word is kept as
//! slack for the word being filled, so the window is 8192 - 64 = 8128
//! counters: with `h` the highest counter accepted, a counter `c` is new if
//! `c > h`, or if `h - c <= 8128` and its bit is clear. Anything older is
//! rejected. Moving the top clears whole words, never more than the ring.
//!
//! Checking and marking are separate on purpose: the receiver checks before
//! it decrypts (cheap) and marks only after the tag verified, so a forged
//! packet cannot move the window.

/// How far behind the highest accepted counter a counter may be.
pub const REPLAY_WINDOW: u64 = 8128;

const WORD_BITS: u64 = 64;
const WORDS: usize = 128;
const _: () = assert!(WORDS as u64 * WORD_BITS - WORD_BITS == REPLAY_WINDOW);

/// The replay window of one session.
#[derive(Clone)]
pub(crate) struct ReplayWindow {
    /// One more than the highest counter accepted; 0 when none was. Shifting
    /// by one lets counter 0 be a real counter without an extra flag.
    next: u64,
    bits: [u64; WORDS],
}

impl ReplayWindow {
    /// A window that has seen nothing.
    pub(crate) fn new() -> ReplayWindow {
        ReplayWindow { next: 0, bits: [0; WORDS] }
    }

    /// Whether `counter` would be accepted now. Changes nothing.
    pub(crate) fn check(&self, counter: u64) -> bool {
        // u64::MAX is never sent: the sender stops one short.
        let Some(t) = counter.checked_add(1) else { return false };
        if t > self.next {
            return true;
        }
        if self.next - t > REPLAY_WINDOW {
            return false;
        }
        let (word, bit) = Self::slot(t);
        self.bits[word] & bit == 0
    }

    /// Accepts `counter` if [`check`](Self::check) allows it, and records it.
    /// Returns whether it was accepted.
    pub(crate) fn mark(&mut self, counter: u64) -> bool {
        if !self.check(counter) {
            return false;
        }
        let t = counter + 1;
        if t > self.next {
            let current = self.next / WORD_BITS;
            let top = t / WORD_BITS;
            let clear = (top - current).min(WORDS as u64);
            for i in 1..=clear {
                self.bits[((current + i) % WORDS as u64) as usize] = 0;
            }
            self.next = t;
        }
        let (word, bit) = Self::slot(t);
        self.bits[word] |= bit;
        true
    }

    fn slot(t: u64) -> (usize, u64) {
        (((t / WORD_BITS) % WORDS as u64) as usize, 1u64 << (t % WORD_BITS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// The obvious model: every counter ever accepted, and the highest.
    #[derive(Default)]
    struct Model {
        seen: HashSet<u64>,
        highest: Option<u64>,
    }

    impl Model {
        fn accept(&mut self, c: u64) -> bool {
            if c == u64::MAX {
                return false;
            }
            let ok = match self.highest {
                None => true,
                Some(h) if c > h => true,
                Some(h) => h - c <= REPLAY_WINDOW && !self.seen.contains(&c),
            };
            if ok {
                self.seen.insert(c);
                self.highest = Some(self.highest.map_or(c, |h| h.max(c)));
            }
            ok
        }
    }

    /// splitmix64: a small, fixed PRNG so every run sees the same sequences.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn in_order_counters_are_accepted_once() {
        let mut w = ReplayWindow::new();
        for c in 0..20_000 {
            assert!(w.check(c));
            assert!(w.mark(c), "{c}");
            assert!(!w.check(c));
            assert!(!w.mark(c), "{c} twice");
        }
    }

    #[test]
    fn reordering_inside_the_window_is_accepted_once_and_older_is_not() {
        let mut w = ReplayWindow::new();
        assert!(w.mark(10_000));
        let oldest = 10_000 - REPLAY_WINDOW;
        for c in (oldest..10_000).rev() {
            assert!(w.mark(c), "{c}");
            assert!(!w.mark(c), "{c} twice");
        }
        assert!(!w.check(oldest - 1));
        assert!(!w.mark(oldest - 1));
        assert!(!w.mark(0));
        // Moving up by one pushes the oldest out.
        assert!(w.mark(10_001));
        assert!(!w.check(oldest));
    }

    #[test]
    fn check_does_not_change_the_window() {
        let mut w = ReplayWindow::new();
        assert!(w.check(5));
        assert!(w.check(5));
        assert!(w.mark(5));
        assert!(w.check(4));
        assert!(w.check(100_000));
        assert!(w.mark(4));
    }

    #[test]
    fn the_last_counter_is_never_accepted_and_the_one_before_is() {
        let mut w = ReplayWindow::new();
        assert!(!w.check(u64::MAX));
        assert!(w.mark(u64::MAX - 1));
        assert!(!w.mark(u64::MAX));
        assert!(w.mark(u64::MAX - 1 - REPLAY_WINDOW));
        assert!(!w.mark(u64::MAX - 2 - REPLAY_WINDOW));
    }

    #[test]
    fn a_jump_far_ahead_forgets_everything_behind_the_window() {
        let mut w = ReplayWindow::new();
        for c in 0..300 {
            assert!(w.mark(c));
        }
        assert!(w.mark(1_000_000));
        for c in 0..300 {
            assert!(!w.check(c));
        }
        // Counters just inside the new window, whose ring words held old
        // bits, are clear.
        for c in (1_000_000 - REPLAY_WINDOW)..1_000_000 {
            assert!(w.mark(c), "{c}");
        }
    }

    /// The window against the model over many random sequences: small and
    /// large steps forward, reordering near the window's edge, duplicates.
    #[test]
    fn window_matches_the_model_on_random_sequences() {
        let mut rng = Rng(0x5eed_0f4e_91a7);
        let mut accepted = 0u64;
        let mut rejected = 0u64;
        for seq in 0..300 {
            let mut w = ReplayWindow::new();
            let mut m = Model::default();
            let mut top: u64 = if seq % 10 == 0 { u64::MAX - 50_000 } else { rng.below(1 << 40) };
            let base_top = top;
            for step in 0..4_000 {
                let c = match rng.below(10) {
                    // Forward by a little.
                    0..=2 => {
                        top = top.saturating_add(rng.below(8));
                        top
                    }
                    // Forward by around a word or a window.
                    3 => {
                        top = top.saturating_add(match rng.below(3) {
                            0 => rng.below(130),
                            1 => REPLAY_WINDOW - 64 + rng.below(192),
                            _ => rng.below(3 * REPLAY_WINDOW),
                        });
                        top
                    }
                    // Behind the top, near and across the window's edge.
                    4..=6 => top.saturating_sub(REPLAY_WINDOW - 3 + rng.below(8)),
                    7 => top.saturating_sub(rng.below(REPLAY_WINDOW + 200)),
                    // A duplicate of something recent.
                    8 => top.saturating_sub(rng.below(64)),
                    // Anything since the sequence began.
                    _ => base_top + rng.below(top - base_top + 1),
                };
                let (want, got) = (m.accept(c), w.mark(c));
                assert_eq!(got, want, "sequence {seq} step {step} counter {c} top {top}");
                if got {
                    accepted += 1;
                } else {
                    rejected += 1;
                }
            }
        }
        // The generator exercises both outcomes in quantity.
        assert!(accepted > 200_000 && rejected > 200_000, "{accepted} accepted, {rejected} rejected");
    }
}

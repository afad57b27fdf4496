//! Rate limits for log lines that a stranger on the network can trigger.
//!
//! Time is an argument here too: the caller passes `now`.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Allows one event per key per period, remembering at most `cap` keys (when
/// full, the memory is cleared: at worst a few extra lines).
#[derive(Debug)]
pub struct PerKey<K> {
    seen: HashMap<K, Instant>,
    period: Duration,
    cap: usize,
    suppressed: u64,
}

impl<K: Hash + Eq> PerKey<K> {
    /// A limiter of one event per key per `period`.
    pub fn new(period: Duration, cap: usize) -> Self {
        PerKey { seen: HashMap::new(), period, cap, suppressed: 0 }
    }

    /// Whether an event for `key` at `now` may be logged. When it may, the
    /// number of events suppressed since the last allowed one (for any key)
    /// is returned too.
    pub fn allow(&mut self, key: K, now: Instant) -> Option<u64> {
        match self.seen.get(&key) {
            Some(&t) if now.saturating_duration_since(t) < self.period => {
                self.suppressed += 1;
                None
            }
            _ => {
                if self.seen.len() >= self.cap {
                    self.seen.clear();
                }
                self.seen.insert(key, now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// Allows one event per period, whatever it is.
#[derive(Debug)]
pub struct Every {
    last: Option<Instant>,
    period: Duration,
    suppressed: u64,
}

impl Every {
    /// A limiter of one event per `period`.
    pub fn new(period: Duration) -> Self {
        Every { last: None, period, suppressed: 0 }
    }

    /// Whether an event at `now` may be logged, with the number suppressed
    /// since the last one that was.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < self.period => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_key_per_period() {
        let t0 = Instant::now();
        let mut rl = PerKey::new(Duration::from_secs(60), 2);
        assert_eq!(rl.allow("a", t0), Some(0));
        assert_eq!(rl.allow("a", t0 + Duration::from_secs(59)), None);
        assert_eq!(rl.allow("b", t0 + Duration::from_secs(1)), Some(1));
        assert_eq!(rl.allow("a", t0 + Duration::from_secs(60)), Some(0));
    }

    #[test]
    fn every_period() {
        let t0 = Instant::now();
        let mut rl = Every::new(Duration::from_secs(1));
        assert_eq!(rl.allow(t0), Some(0));
        assert_eq!(rl.allow(t0), None);
        assert_eq!(rl.allow(t0), None);
        assert_eq!(rl.allow(t0 + Duration::from_secs(1)), Some(2));
    }
}

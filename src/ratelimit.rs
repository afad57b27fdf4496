//! Rate limits for log lines that a stranger on the network can trigger.
//!
//! Two layers, because either alone has a hole. A *site* limiter ([`PerKey`]
//! or [`Every`]) belongs to one log statement and keeps it to one line per
//! source (or per site) per period; but 20 000 spoofed sources are 20 000
//! sources. So every rate-limited site also asks the one [`LogBudget`] of the
//! process, a token bucket that lets through at most [`LogBudget::BURST`]
//! lines at once and one per [`LogBudget::REFILL`] after that, whatever the
//! input. The event loop owns the budget and lends it by `&mut` to each site:
//! no global, no lock, no clock read here (time is an argument, as everywhere
//! else).
//!
//! Nothing suppressed is lost from the count. Each suppressed event is
//! counted exactly once: by its site when the site limiter refused it, by the
//! budget when the site would have logged but the budget was empty. The next
//! line that gets through reports both counts ([`Allowed`], whose `Display`
//! is the suffix to append), so the sum of lines written and counts reported
//! is the number of events, to the last one still pending.
//!
//! ```
//! use std::net::IpAddr;
//! use std::time::{Duration, Instant};
//! use rrqnet::ratelimit::{LogBudget, PerKey};
//!
//! // Owned by the event loop, beside the site limiters.
//! let mut budget = LogBudget::default();
//! let mut unknown: PerKey<IpAddr> = PerKey::new(Duration::from_secs(60), 1024);
//! // Once per turn of the loop.
//! let now = Instant::now();
//! let from: IpAddr = "192.0.2.7".parse().unwrap();
//! if let Some(suppressed) = unknown.check(from, now, &mut budget) {
//!     log::debug!("dropped a datagram from undeclared source {from}{suppressed}");
//! }
//! ```

use std::collections::VecDeque;

use crate::hash::Map;
use std::fmt;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// What a line that got through carries: how many were suppressed before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[must_use]
pub struct Allowed {
    /// Events of the same site that its own limiter suppressed since its
    /// last line.
    pub similar: u64,
    /// Events of any site that the global [`LogBudget`] suppressed since the
    /// last line it let through.
    pub over_budget: u64,
}

impl fmt::Display for Allowed {
    /// The suffix for the log line: empty when nothing was suppressed, else
    /// `" (N similar lines suppressed)"` and/or the global count.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.similar, self.over_budget) {
            (0, 0) => Ok(()),
            (n, 0) => write!(f, " ({n} similar lines suppressed)"),
            (0, m) => write!(f, " ({m} lines suppressed by the global log limit)"),
            (n, m) => write!(f, " ({n} similar lines suppressed, {m} by the global log limit)"),
        }
    }
}

/// The one log budget of a process: a token bucket shared by every
/// rate-limited log site.
#[derive(Debug, Clone)]
pub struct LogBudget {
    burst: u32,
    refill: Duration,
    tokens: u32,
    /// When the bucket last gained a token, or when it was last seen full.
    since: Option<Instant>,
    suppressed: u64,
}

impl Default for LogBudget {
    fn default() -> Self {
        LogBudget::new(LogBudget::BURST, LogBudget::REFILL)
    }
}

impl LogBudget {
    /// Lines that may be written at once after a quiet spell.
    pub const BURST: u32 = 5;
    /// One more line may be written each this long: two a second at most,
    /// sustained, which a person can still read and a disk never notices.
    pub const REFILL: Duration = Duration::from_millis(500);

    /// A budget of `burst` lines at once and one more per `refill`. It
    /// starts full.
    pub fn new(burst: u32, refill: Duration) -> Self {
        LogBudget { burst, refill, tokens: burst, since: None, suppressed: 0 }
    }

    /// Whether a line at `now` of a site with no limiter of its own may be
    /// written; every refusal is counted and reported by the next line
    /// allowed.
    pub fn allow(&mut self, now: Instant) -> Option<Allowed> {
        if self.take(now) {
            Some(Allowed { similar: 0, over_budget: std::mem::take(&mut self.suppressed) })
        } else {
            self.suppressed += 1;
            None
        }
    }

    /// Events suppressed by the budget and not yet reported.
    pub fn pending(&self) -> u64 {
        self.suppressed
    }

    /// Takes a token if there is one. A refusal is not counted here: the
    /// caller counts it, once.
    fn take(&mut self, now: Instant) -> bool {
        self.earn(now);
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }

    /// Adds the tokens earned since the last one, up to a full bucket.
    fn earn(&mut self, now: Instant) {
        let Some(since) = self.since else {
            self.since = Some(now);
            return;
        };
        if self.tokens >= self.burst || self.refill.is_zero() {
            // A full bucket gains nothing by waiting: count from now.
            self.tokens = self.burst;
            self.since = Some(now);
            return;
        }
        // A clock that went back gives nothing and takes nothing.
        let elapsed = now.saturating_duration_since(since);
        let earned = elapsed.as_nanos() / self.refill.as_nanos();
        if earned == 0 {
            return;
        }
        let room = u128::from(self.burst - self.tokens);
        if earned >= room {
            self.tokens = self.burst;
            self.since = Some(now);
        } else {
            // `earned < room <= u32::MAX`, so neither cast truncates.
            self.tokens += earned as u32;
            self.since = Some(since + self.refill * earned as u32);
        }
    }
}

/// Allows one event per key per period, remembering at most `cap` keys.
///
/// A key is forgotten only once its period is over, so a flood of new keys
/// cannot make it forget the ones it has just logged. When `cap` keys are
/// all still in their period, a new key is suppressed (and counted), not let
/// in: the table is bounded, and so are the lines (at most `cap` per period
/// from this site, and the [`LogBudget`] bounds that further).
#[derive(Debug)]
pub struct PerKey<K> {
    seen: Map<K, Instant>,
    /// `seen`'s keys in the order they were logged, which is the order of
    /// their times, so the expired ones are always at the front. A key
    /// logged again leaves an outdated entry behind, skipped when popped.
    order: VecDeque<(Instant, K)>,
    period: Duration,
    cap: usize,
    suppressed: u64,
}

impl<K: Hash + Eq + Clone> PerKey<K> {
    /// A limiter of one event per key per `period`, remembering at most
    /// `cap` keys.
    pub fn new(period: Duration, cap: usize) -> Self {
        PerKey { seen: Map::default(), order: VecDeque::new(), period, cap, suppressed: 0 }
    }

    /// Whether an event for `key` at `now` may be logged, by this limiter
    /// alone. When it may, the number of events it suppressed since the last
    /// allowed one (for any key) is returned too.
    pub fn allow(&mut self, key: K, now: Instant) -> Option<u64> {
        if self.admits(&key, now) {
            self.mark(key, now);
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }

    /// Whether an event for `key` at `now` may be logged, by this limiter and
    /// then by the global `budget`. An event the budget refuses does not use
    /// up the key's period: the key may log at its next event when the
    /// budget has room again.
    pub fn check(&mut self, key: K, now: Instant, budget: &mut LogBudget) -> Option<Allowed> {
        if !self.admits(&key, now) {
            self.suppressed += 1;
            return None;
        }
        if !budget.take(now) {
            budget.suppressed += 1;
            return None;
        }
        self.mark(key, now);
        Some(Allowed {
            similar: std::mem::take(&mut self.suppressed),
            over_budget: std::mem::take(&mut budget.suppressed),
        })
    }

    /// Events this limiter suppressed and has not yet reported.
    pub fn pending(&self) -> u64 {
        self.suppressed
    }

    /// Number of keys remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    fn admits(&mut self, key: &K, now: Instant) -> bool {
        self.expire(now);
        match self.seen.get(key) {
            Some(&t) => now.saturating_duration_since(t) >= self.period,
            None => self.seen.len() < self.cap,
        }
    }

    fn mark(&mut self, key: K, now: Instant) {
        self.seen.insert(key.clone(), now);
        self.order.push_back((now, key));
        // With a clock that never goes back, `expire` keeps `order` as long
        // as `seen`. A clock that went back can strand outdated entries
        // behind a young one; drop them before they add up.
        if self.order.len() > 2 * self.cap.max(1) {
            let seen = &self.seen;
            self.order.retain(|(t, k)| seen.get(k) == Some(t));
        }
    }

    /// Forgets the keys whose period is over.
    fn expire(&mut self, now: Instant) {
        while let Some((t, _)) = self.order.front() {
            if now.saturating_duration_since(*t) < self.period {
                break;
            }
            if let Some((t, k)) = self.order.pop_front() {
                if self.seen.get(&k) == Some(&t) {
                    self.seen.remove(&k);
                }
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

    /// Whether an event at `now` may be logged, by this limiter alone, with
    /// the number suppressed since the last one that was.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.admits(now) {
            self.last = Some(now);
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }

    /// Whether an event at `now` may be logged, by this limiter and then by
    /// the global `budget`. An event the budget refuses does not start a new
    /// period: the site may log at its next event when the budget has room.
    pub fn check(&mut self, now: Instant, budget: &mut LogBudget) -> Option<Allowed> {
        if !self.admits(now) {
            self.suppressed += 1;
            return None;
        }
        if !budget.take(now) {
            budget.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(Allowed {
            similar: std::mem::take(&mut self.suppressed),
            over_budget: std::mem::take(&mut budget.suppressed),
        })
    }

    /// Events this limiter suppressed and has not yet reported.
    pub fn pending(&self) -> u64 {
        self.suppressed
    }

    fn admits(&self, now: Instant) -> bool {
        match self.last {
            Some(t) => now.saturating_duration_since(t) >= self.period,
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::Clock;

    /// The limits the daemon uses for undeclared sources.
    fn per_source() -> PerKey<u32> {
        PerKey::new(Duration::from_secs(60), 1024)
    }

    #[test]
    fn one_per_key_per_period() {
        let c = Clock::new();
        let mut rl = PerKey::new(Duration::from_secs(60), 2);
        assert_eq!(rl.allow("a", c.0), Some(0));
        assert_eq!(rl.allow("a", c.s(59)), None);
        assert_eq!(rl.allow("b", c.s(1)), Some(1));
        assert_eq!(rl.allow("a", c.s(60)), Some(0));
    }

    #[test]
    fn a_full_table_suppresses_new_keys_and_keeps_the_ones_it_logged() {
        let c = Clock::new();
        let mut rl = PerKey::new(Duration::from_secs(60), 2);
        assert_eq!(rl.allow("a", c.0), Some(0));
        assert_eq!(rl.allow("b", c.s(10)), Some(0));
        // Full of keys still in their period: new ones are suppressed...
        assert_eq!(rl.allow("c", c.s(11)), None);
        assert_eq!(rl.allow("d", c.s(12)), None);
        // ...and the ones it holds are not forgotten (the old limiter
        // cleared itself here and let "a" log again at once).
        assert_eq!(rl.allow("a", c.s(13)), None);
        assert_eq!(rl.len(), 2);
        // Once "a"'s period is over it makes room.
        assert_eq!(rl.allow("c", c.s(60)), Some(3));
        assert_eq!(rl.allow("b", c.s(61)), None);
        assert_eq!(rl.allow("a", c.s(62)), None, "the table is full again");
        assert_eq!(rl.allow("a", c.s(70)), Some(2), "b's period is over");
        assert_eq!(rl.len(), 2);
    }

    #[test]
    fn the_table_stays_bounded_when_the_clock_goes_back() {
        let c = Clock::new();
        let mut rl = PerKey::new(Duration::from_secs(1), 4);
        for i in 0..1000u64 {
            // Zig-zag time: forward 5 s, back 3 s.
            let t = if i % 2 == 0 { c.s(100 + i * 5) } else { c.s(100 + i * 5 - 8) };
            let _ = rl.allow(i % 7, t);
            assert!(rl.len() <= 4);
            assert!(rl.order.len() <= 2 * 4, "{}", rl.order.len());
        }
    }

    #[test]
    fn every_period() {
        let c = Clock::new();
        let mut rl = Every::new(Duration::from_secs(1));
        assert_eq!(rl.allow(c.0), Some(0));
        assert_eq!(rl.allow(c.0), None);
        assert_eq!(rl.allow(c.0), None);
        assert_eq!(rl.allow(c.s(1)), Some(2));
    }

    #[test]
    fn the_budget_allows_a_burst_then_one_line_per_refill() {
        let c = Clock::new();
        let mut b = LogBudget::new(3, Duration::from_millis(500));
        for _ in 0..3 {
            assert_eq!(b.allow(c.0), Some(Allowed::default()));
        }
        assert_eq!(b.allow(c.ms(499)), None);
        assert_eq!(b.allow(c.ms(500)), Some(Allowed { similar: 0, over_budget: 1 }));
        assert_eq!(b.allow(c.ms(999)), None);
        // A long silence refills the bucket, no more than full.
        assert_eq!(b.allow(c.s(100)), Some(Allowed { similar: 0, over_budget: 1 }));
        assert_eq!(b.allow(c.s(100)), Some(Allowed::default()));
        assert_eq!(b.allow(c.s(100)), Some(Allowed::default()));
        assert_eq!(b.allow(c.s(100)), None);
        // Partial refills are not lost: 250 ms + 250 ms make a token.
        assert_eq!(b.allow(c.ms(100_250)), None);
        assert_eq!(b.allow(c.ms(100_500)), Some(Allowed { similar: 0, over_budget: 2 }));
        // A clock that goes back earns nothing.
        assert_eq!(b.allow(c.s(50)), None);
        assert_eq!(b.pending(), 1);
    }

    #[test]
    fn twenty_thousand_sources_within_a_second_give_a_few_lines() {
        let c = Clock::new();
        let mut budget = LogBudget::default();
        let mut rl = per_source();
        let mut lines = 0u64;
        let mut reported = 0u64;
        for i in 0..20_000u32 {
            // Spread evenly over one second.
            let now = c.0 + Duration::from_micros(u64::from(i) * 50);
            if let Some(a) = rl.check(i, now, &mut budget) {
                lines += 1;
                reported += a.similar + a.over_budget;
            }
        }
        // The burst, and one more per refill in the second.
        assert_eq!(lines, u64::from(LogBudget::BURST) + 1);
        assert!(lines <= 10);
        assert_eq!(lines + reported + rl.pending() + budget.pending(), 20_000);
        // Only sources that were logged are remembered.
        assert_eq!(rl.len() as u64, lines);
    }

    #[test]
    fn without_the_budget_a_full_table_bounds_the_lines_to_its_cap() {
        let c = Clock::new();
        let mut rl = per_source();
        let lines = (0..20_000u32).filter(|&i| rl.allow(i, c.ms(u64::from(i) / 20)).is_some()).count();
        assert_eq!(lines, 1024, "the old limiter wrote 20 000");
        assert_eq!(rl.pending(), 20_000 - 1024);
    }

    #[test]
    fn a_steady_trickle_from_one_source_logs_once_a_minute() {
        let c = Clock::new();
        let mut budget = LogBudget::default();
        let mut rl = per_source();
        let mut lines = Vec::new();
        // Ten events a second for ten minutes.
        for i in 0..6_000u64 {
            let now = c.ms(i * 100);
            if let Some(a) = rl.check(7, now, &mut budget) {
                lines.push((i * 100, a));
            }
        }
        let times: Vec<u64> = lines.iter().map(|(t, _)| *t).collect();
        assert_eq!(times, (0..10).map(|m| m * 60_000).collect::<Vec<_>>());
        assert_eq!(lines[0].1, Allowed::default());
        for (_, a) in &lines[1..] {
            assert_eq!(*a, Allowed { similar: 599, over_budget: 0 });
        }
    }

    #[test]
    fn a_trickle_still_logs_beside_a_steady_flood_from_another_site() {
        let c = Clock::new();
        let mut budget = LogBudget::default();
        let mut trickle = per_source();
        let mut flood = Every::new(Duration::from_secs(10));
        let mut trickle_lines = 0;
        for i in 0..600_000u64 {
            let now = c.ms(i);
            // The other site asks a thousand times a second, but its own
            // limiter lets it ask the budget once in ten seconds.
            let _ = flood.check(now, &mut budget);
            if i % 1000 == 0 && trickle.check(1, now, &mut budget).is_some() {
                trickle_lines += 1;
            }
        }
        assert_eq!(trickle_lines, 10);
    }

    #[test]
    fn suppressed_counts_add_up_exactly_across_sites() {
        let c = Clock::new();
        let mut budget = LogBudget::default();
        let mut sources = per_source();
        let mut auth = Every::new(Duration::from_secs(10));
        let mut events = 0u64;
        let mut lines = 0u64;
        let mut reported = 0u64;
        let mut tally = |a: Option<Allowed>| {
            if let Some(a) = a {
                lines += 1;
                reported += a.similar + a.over_budget;
            }
        };
        // A deterministic mix: a flood of new and repeated sources, bursts
        // of bad datagrams, and quiet spells, over five minutes.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut t_us = 0u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            t_us += x % 3000;
            let now = c.0 + Duration::from_micros(t_us);
            events += 1;
            match x % 10 {
                0..=5 => tally(sources.check((x >> 20) as u32 % 5000, now, &mut budget)),
                6..=8 => tally(auth.check(now, &mut budget)),
                _ => tally(budget.allow(now)),
            }
        }
        assert!(t_us > 200_000_000, "{t_us}");
        assert_eq!(lines + reported + sources.pending() + auth.pending() + budget.pending(), events);
        // Over about five minutes at two lines a second, after a burst.
        let secs = t_us / 1_000_000;
        assert!(lines <= u64::from(LogBudget::BURST) + 2 * secs + 1, "{lines} lines in {secs} s");
        assert!(lines >= secs, "{lines} lines in {secs} s: the budget is not too tight");
    }

    #[test]
    fn the_suffix_says_what_was_suppressed() {
        let a = |similar, over_budget| Allowed { similar, over_budget }.to_string();
        assert_eq!(a(0, 0), "");
        assert_eq!(a(1234, 0), " (1234 similar lines suppressed)");
        assert_eq!(a(0, 56), " (56 lines suppressed by the global log limit)");
        assert_eq!(a(1234, 56), " (1234 similar lines suppressed, 56 by the global log limit)");
    }
}

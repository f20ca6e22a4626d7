//! Rate limiting per peer: for warnings a remote peer can trigger at will, and for the
//! announcements the daemon decodes from each peer.
//!
//! A hostile or broken peer can send thousands of invalid messages a second. Logging each
//! one would flood the operator's logs and disk, so each peer gets a small burst of
//! warnings per window; the rest are counted and the count is logged with the next
//! warning that gets through.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The most keys tracked at once; older windows are dropped first past this.
const MAX_KEYS: usize = 4096;

pub(crate) struct WarnLimiter {
    window: Duration,
    burst: u32,
    entries: HashMap<String, Entry>,
}

struct Entry {
    started: Instant,
    logged: u32,
    suppressed: u32,
}

impl WarnLimiter {
    /// Allows `burst` warnings per key in each `window`.
    pub(crate) fn new(window: Duration, burst: u32) -> Self {
        WarnLimiter { window, burst, entries: HashMap::new() }
    }

    /// Returns `Some(suppressed)` when a warning for `key` should be logged now, with the
    /// number suppressed since the last one logged, or `None` to suppress it.
    pub(crate) fn check(&mut self, key: &str, now: Instant) -> Option<u32> {
        if self.entries.len() >= MAX_KEYS && !self.entries.contains_key(key) {
            let window = self.window;
            self.entries.retain(|_, entry| now.duration_since(entry.started) < window);
        }
        let entry = self
            .entries
            .entry(key.to_string())
            .or_insert(Entry { started: now, logged: 0, suppressed: 0 });
        if now.duration_since(entry.started) >= self.window {
            entry.started = now;
            entry.logged = 0;
        }
        if entry.logged < self.burst {
            entry.logged += 1;
            return Some(std::mem::take(&mut entry.suppressed));
        }
        entry.suppressed += 1;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_suppressed() {
        let mut limiter = WarnLimiter::new(Duration::from_secs(60), 3);
        let now = Instant::now();
        let results: Vec<Option<u32>> = (0..5).map(|_| limiter.check("peer", now)).collect();
        assert_eq!(results, vec![Some(0), Some(0), Some(0), None, None]);
    }

    #[test]
    fn next_window_reports_suppressed() {
        let mut limiter = WarnLimiter::new(Duration::from_secs(60), 1);
        let now = Instant::now();
        assert_eq!(limiter.check("peer", now), Some(0));
        assert_eq!(limiter.check("peer", now), None);
        assert_eq!(limiter.check("peer", now), None);
        assert_eq!(limiter.check("peer", now + Duration::from_secs(61)), Some(2));
    }

    #[test]
    fn keys_are_independent() {
        let mut limiter = WarnLimiter::new(Duration::from_secs(60), 1);
        let now = Instant::now();
        assert_eq!(limiter.check("a", now), Some(0));
        assert_eq!(limiter.check("b", now), Some(0));
    }

    #[test]
    fn key_count_bounded() {
        let mut limiter = WarnLimiter::new(Duration::from_secs(1), 1);
        let start = Instant::now();
        for index in 0..3 * MAX_KEYS {
            limiter.check(&index.to_string(), start + Duration::from_secs(2 * (index / MAX_KEYS) as u64));
        }
        assert!(limiter.entries.len() <= MAX_KEYS, "{} keys tracked", limiter.entries.len());
    }
}

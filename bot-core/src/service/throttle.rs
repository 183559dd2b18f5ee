//! Per-person request limits: a token bucket per identity, so that one person flooding the bot
//! (thousands of updates a minute) gets one polite refusal and is then ignored until their
//! bucket refills, while everyone else is served as usual. Buckets live in this process (each
//! instance limits what reaches it), in a map that forgets full buckets once it grows.

use std::time::Instant;

use dashmap::DashMap;
use serde::Deserialize;

use crate::Identity;

/// The `[limits]` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    /// Requests (messages, commands, button presses) one person may send per minute, on
    /// average; 0 turns the limit off.
    pub requests_per_minute: u32,
    /// How many may come at once before the average applies.
    pub burst: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            requests_per_minute: 30,
            burst: 10,
        }
    }
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// The first request over the limit: say so, once.
    Refuse,
    /// Later ones while still over: ignore them, so the bot does not flood the chat back.
    Ignore,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
    told: bool,
}

/// The buckets of everyone who wrote recently.
#[derive(Debug)]
pub struct Throttle {
    limits: RateLimits,
    buckets: DashMap<Identity, Bucket>,
}

/// Past this many buckets, full ones (people who have not written lately) are forgotten.
const SWEEP_FROM: usize = 4_096;

impl Throttle {
    pub fn new(limits: RateLimits) -> Throttle {
        Throttle {
            limits,
            buckets: DashMap::new(),
        }
    }

    fn per_second(&self) -> f64 {
        f64::from(self.limits.requests_per_minute) / 60.0
    }

    fn capacity(&self) -> f64 {
        f64::from(self.limits.burst.max(1))
    }

    /// Takes one request of `who` now.
    pub fn check(&self, who: &Identity) -> Verdict {
        self.check_at(who, Instant::now())
    }

    fn check_at(&self, who: &Identity, now: Instant) -> Verdict {
        if self.limits.requests_per_minute == 0 {
            return Verdict::Allow;
        }
        let len = self.buckets.len();
        if len >= SWEEP_FROM && len.is_power_of_two() {
            let (rate, full) = (self.per_second(), self.capacity());
            self.buckets
                .retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < full);
        }
        let mut bucket = self.buckets.entry(who.clone()).or_insert(Bucket {
            tokens: self.capacity(),
            at: now,
            told: false,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * self.per_second();
        bucket.tokens = (bucket.tokens + refill).min(self.capacity());
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            bucket.told = false;
            return Verdict::Allow;
        }
        if bucket.told {
            Verdict::Ignore
        } else {
            bucket.told = true;
            Verdict::Refuse
        }
    }

    /// How many people have a bucket now (for tests of the bound).
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn who(n: u32) -> Identity {
        format!("telegram:{n}").parse().expect("identity")
    }

    #[test]
    fn a_flood_gets_one_refusal_then_silence_and_others_are_unaffected() {
        let throttle = Throttle::new(RateLimits {
            requests_per_minute: 60,
            burst: 5,
        });
        let start = Instant::now();
        let verdicts: Vec<Verdict> = (0..1_000)
            .map(|_| throttle.check_at(&who(1), start))
            .collect();
        assert_eq!(verdicts.iter().filter(|v| **v == Verdict::Allow).count(), 5);
        assert_eq!(verdicts[5], Verdict::Refuse);
        assert!(verdicts[6..].iter().all(|v| *v == Verdict::Ignore));
        assert_eq!(
            throttle.check_at(&who(2), start),
            Verdict::Allow,
            "someone else"
        );
        // One a second comes back.
        let later = start + Duration::from_millis(1_100);
        assert_eq!(throttle.check_at(&who(1), later), Verdict::Allow);
        assert_eq!(throttle.check_at(&who(1), later), Verdict::Refuse);
    }

    #[test]
    fn zero_turns_the_limit_off() {
        let throttle = Throttle::new(RateLimits {
            requests_per_minute: 0,
            burst: 0,
        });
        assert!((0..10_000).all(|_| throttle.check(&who(1)) == Verdict::Allow));
        assert_eq!(throttle.tracked(), 0);
    }

    #[test]
    fn the_map_forgets_people_whose_buckets_are_full_again() {
        let throttle = Throttle::new(RateLimits::default());
        let start = Instant::now();
        for n in 0..(SWEEP_FROM as u32 - 1) {
            throttle.check_at(&who(n), start);
        }
        assert_eq!(throttle.tracked(), SWEEP_FROM - 1);
        // A minute later everyone's bucket is full again: the next newcomer sweeps them.
        let later = start + Duration::from_secs(60);
        throttle.check_at(&who(1_000_000), later);
        throttle.check_at(&who(1_000_001), later);
        assert!(throttle.tracked() <= 2, "{}", throttle.tracked());
    }
}

//! Per-person request limits: a token bucket per identity, so that one person flooding the bot
//! (thousands of updates a minute) gets one polite refusal and is then ignored until their
//! bucket refills, while everyone else is served as usual. Buckets live in this process, in a
//! map that forgets full buckets once it grows; the decision never waits for the database.
//!
//! Instances on one PostgreSQL database hold a person to one limit between them: every
//! `share_ms` each reports what it let through and takes from its own buckets what the others
//! let through (`Service::run_limits`). Between two exchanges each instance may let a person's
//! burst through on its own, so several instances together admit at most a burst more per
//! instance and exchange than one would, not a multiple of the limit.

use std::{collections::HashMap, time::Instant};

use dashmap::DashMap;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

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
    /// How often, in milliseconds, instances sharing a PostgreSQL database tell each other what
    /// they let through; 0 keeps each instance's limit to itself.
    pub share_ms: u64,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            requests_per_minute: 30,
            burst: 10,
            share_ms: 250,
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
    /// Requests let through since the last exchange with other instances, while sharing.
    let_through: DashMap<Identity, u32>,
    sharing: std::sync::atomic::AtomicBool,
}

/// Past this many buckets, full ones (people who have not written lately) are forgotten.
const SWEEP_FROM: usize = 4_096;

impl Throttle {
    pub fn new(limits: RateLimits) -> Throttle {
        Throttle {
            limits,
            buckets: DashMap::new(),
            let_through: DashMap::new(),
            sharing: std::sync::atomic::AtomicBool::new(false),
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
        let mut bucket = self.bucket_at(who, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            bucket.told = false;
            drop(bucket);
            if self.sharing.load(std::sync::atomic::Ordering::Relaxed) {
                *self.let_through.entry(who.clone()).or_default() += 1;
            }
            return Verdict::Allow;
        }
        if bucket.told {
            Verdict::Ignore
        } else {
            bucket.told = true;
            Verdict::Refuse
        }
    }

    /// Starts counting what is let through, for [`Throttle::take_let_through`].
    pub fn share(&self) {
        self.sharing
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// What was let through since the last call, by person.
    pub fn take_let_through(&self) -> Vec<(Identity, u32)> {
        let people: Vec<Identity> = self.let_through.iter().map(|e| e.key().clone()).collect();
        people
            .into_iter()
            .filter_map(|who| self.let_through.remove(&who))
            .collect()
    }

    /// Takes from `who`'s bucket what other instances let through of theirs. A bucket may go
    /// below empty, down to minus one burst: the debt is paid back at the usual rate.
    pub fn charge(&self, who: &Identity, requests: u32) {
        self.charge_at(who, requests, Instant::now());
    }

    fn charge_at(&self, who: &Identity, requests: u32, now: Instant) {
        if self.limits.requests_per_minute == 0 || requests == 0 {
            return;
        }
        let full = self.capacity();
        let mut bucket = self.bucket_at(who, now);
        bucket.tokens = (bucket.tokens - f64::from(requests)).max(-full);
    }

    /// `who`'s bucket refilled up to `now` (full for someone new).
    fn bucket_at(
        &self,
        who: &Identity,
        now: Instant,
    ) -> dashmap::mapref::one::RefMut<'_, Identity, Bucket> {
        let (rate, full) = (self.per_second(), self.capacity());
        let mut bucket = self.buckets.entry(who.clone()).or_insert(Bucket {
            tokens: full,
            at: now,
            told: false,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refill).min(full);
        bucket.at = now;
        bucket
    }

    /// How many people have a bucket now (for tests of the bound).
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

/// Exchanges between two forgettings of totals nobody added to lately (about a minute).
const EXCHANGES_PER_SWEEP: u64 = 240;
/// Totals untouched this long are forgotten, here and in the database.
const FORGET_AFTER_MS: i64 = 10 * 60 * 1_000;
/// How far back each exchange reads the others' totals, beyond the last exchange: covers a
/// report still committing and the instances' clocks disagreeing a little.
const READ_BACK_MS: i64 = 10_000;

impl super::Service {
    /// Shares this instance's request counts with the other instances on the same PostgreSQL
    /// database until `shutdown`: every `share_ms` it reports what it let through and takes
    /// from its buckets what the others let through since. Returns at once on SQLite (one
    /// process serves a file) or when the limit or the sharing is off. When the database
    /// cannot be reached, the counts of that moment are not shared: the limit is looser for
    /// as long, never stricter.
    pub async fn run_limits(self: std::sync::Arc<Self>, shutdown: CancellationToken) {
        let limits = self.settings.limits;
        if limits.share_ms == 0
            || limits.requests_per_minute == 0
            || self.store.backend() != crate::Backend::Postgres
        {
            return;
        }
        self.throttle.share();
        let instance = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
        let every = std::time::Duration::from_millis(limits.share_ms);
        // The others' totals as last read, with when: what grew since is what to take.
        let mut seen: HashMap<(String, String), (i64, i64)> = HashMap::new();
        let mut since = crate::store::now_millis() - READ_BACK_MS;
        let mut failing = false;
        for round in 0_u64.. {
            let started = crate::store::now_millis();
            let mine = self
                .throttle
                .take_let_through()
                .into_iter()
                .map(|(who, n)| (who.to_string(), n))
                .collect();
            match self
                .store
                .exchange_let_through(&instance, mine, since)
                .await
            {
                Ok(others) => {
                    failing = false;
                    since = started - READ_BACK_MS;
                    for row in others {
                        let total = row.total;
                        let before =
                            seen.insert((row.identity.clone(), row.instance), (total, started));
                        // At the first exchange the others' totals are where counting starts.
                        let grew = match before {
                            None if round == 0 => 0,
                            None => total,
                            Some((before, _)) if total >= before => total - before,
                            // Restarted from nothing after a quiet spell (see the store).
                            Some(_) => total,
                        };
                        if grew > 0
                            && let Ok(who) = row.identity.parse::<Identity>()
                        {
                            self.throttle
                                .charge(&who, u32::try_from(grew).unwrap_or(u32::MAX));
                        }
                    }
                }
                Err(error) => {
                    if !failing {
                        tracing::warn!(
                            error = format!("{error:#}"),
                            "sharing request counts failed; each instance limits on its own meanwhile"
                        );
                    }
                    failing = true;
                }
            }
            if round % EXCHANGES_PER_SWEEP == EXCHANGES_PER_SWEEP - 1 {
                let before = started - FORGET_AFTER_MS;
                seen.retain(|_, (_, at)| *at >= before);
                if let Err(error) = self.store.forget_let_through(before).await {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "forgetting old request counts failed"
                    );
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(every) => {}
            }
        }
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
            ..RateLimits::default()
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
            ..RateLimits::default()
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

    #[test]
    fn what_another_instance_let_through_is_taken_from_this_ones_bucket() {
        let limits = RateLimits {
            requests_per_minute: 60,
            burst: 5,
            ..RateLimits::default()
        };
        let (one, two) = (Throttle::new(limits), Throttle::new(limits));
        one.share();
        let start = Instant::now();
        for _ in 0..5 {
            assert_eq!(one.check_at(&who(1), start), Verdict::Allow);
        }
        assert_eq!(two.check_at(&who(2), start), Verdict::Allow, "not shared");
        let reported = one.take_let_through();
        assert_eq!(reported, vec![(who(1), 5)]);
        assert!(one.take_let_through().is_empty(), "taken once");
        for (person, n) in reported {
            two.charge_at(&person, n, start);
        }
        assert_eq!(
            two.check_at(&who(1), start),
            Verdict::Refuse,
            "the burst was spent on the other instance"
        );
        // A flood elsewhere leaves a debt of one burst at most, paid back at the usual rate.
        two.charge_at(&who(1), 10_000, start);
        let later = start + Duration::from_millis(6_100);
        assert_eq!(two.check_at(&who(1), later), Verdict::Allow);
    }
}

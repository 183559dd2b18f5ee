//! Telegram's sending limits, kept before a message goes out: about 30 messages a second
//! overall, one a second in a chat, 20 a minute in a group (Bots FAQ, "My bot is hitting limits,
//! how do I avoid this?", <https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this>).
//!
//! Each message reserves its moment at once and waits only for that moment: the first message
//! to a quiet chat goes out immediately, and a chat that must wait never holds up the others
//! (teloxide's `Throttle`, used before, released its queue in ticks of 250 ms, which added up
//! to a quarter of a second to every answer and capped how many answers an update burst got).
//! Overall, messages take distinct slots of a little over 1/N s, so that no second ever holds
//! more than N. When Telegram still answers 429 with `retry_after`, the chat waits that long
//! (see [`Pace::hold`]).

use std::{
    collections::{BTreeSet, VecDeque},
    sync::Mutex,
    time::Duration,
};

use dashmap::DashMap;
use teloxide::RequestError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
/// Messages a group takes per minute.
const GROUP_PER_MINUTE: usize = 20;
/// Kept beyond each limit (a chat's second, the overall second), for clock and network jitter.
const MARGIN: Duration = Duration::from_millis(25);
/// Chats remembered at most; quiet ones are forgotten first.
const CHATS: usize = 50_000;
/// Times a message is sent when Telegram keeps answering 429.
const RATE_LIMITED_ATTEMPTS: u32 = 6;

/// The limits of one bot.
#[derive(Debug)]
pub(crate) struct Pace {
    /// The overall slot length.
    slot: Duration,
    origin: Instant,
    /// Overall slots taken from now on.
    taken: Mutex<BTreeSet<u64>>,
    chats: DashMap<i64, Chat>,
}

#[derive(Debug, Default)]
struct Chat {
    /// Not before this moment.
    next: Option<Instant>,
    /// A group's sends in the last minute, oldest first.
    recent: VecDeque<Instant>,
}

impl Pace {
    /// At most `per_second` messages a second overall.
    pub(crate) fn new(per_second: u32) -> Pace {
        // Slots of 1/(N−1) s: any second overlaps at most N of them. Stretched by the margin,
        // N messages span a second and the margin, so that a late send in one slot and an
        // early arrival from the next do not put N + 1 into a second where Telegram counts.
        let per_second = f64::from(per_second.max(2));
        Pace {
            slot: Duration::from_secs_f64((SECOND + MARGIN).as_secs_f64() / (per_second - 1.0)),
            origin: Instant::now(),
            taken: Mutex::new(BTreeSet::new()),
            chats: DashMap::new(),
        }
    }

    /// Sends a message to `chat` in its turn; after a 429, waits what Telegram said and sends
    /// it again.
    pub(crate) async fn send<T, F, Fut>(&self, chat: i64, send: F) -> Result<T, RequestError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, RequestError>>,
    {
        match self.send_unless(chat, None, send).await {
            Some(sent) => sent,
            None => unreachable!("nothing abandons a send without a token"),
        }
    }

    /// As [`Pace::send`], but gives up (`None`) when `abandon` fires while the message is still
    /// waiting its turn. A request already sent is always awaited to its answer: cut there,
    /// Telegram could hold a message we believe unsent.
    pub(crate) async fn send_unless<T, F, Fut>(
        &self,
        chat: i64,
        abandon: Option<&CancellationToken>,
        send: F,
    ) -> Option<Result<T, RequestError>>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, RequestError>>,
    {
        let mut attempt = 1;
        loop {
            let turn = self.turn(chat);
            match abandon {
                Some(abandon) => tokio::select! {
                    biased;
                    () = abandon.cancelled() => return None,
                    () = turn => {}
                },
                None => turn.await,
            }
            match send().await {
                Err(RequestError::RetryAfter(after)) if attempt < RATE_LIMITED_ATTEMPTS => {
                    attempt += 1;
                    bot_core::metrics::metrics().rate_limited("telegram");
                    self.hold(chat, after.duration());
                }
                other => return Some(other),
            }
        }
    }

    async fn turn(&self, chat: i64) {
        let now = Instant::now();
        let at = self.reserve(chat, now);
        // A message free to go now goes without the timer, whose wheel turns once a
        // millisecond: sleeping until `now` would cost a registration and up to a millisecond.
        if at > now {
            tokio::time::sleep_until(at).await;
        }
    }

    /// The moment a message to `chat` may go, reserved: `now` itself when nothing holds it.
    fn reserve(&self, chat: i64, now: Instant) -> Instant {
        if self.chats.len() >= CHATS {
            self.chats
                .retain(|_, c| c.next.is_some_and(|next| next + MINUTE > now));
        }
        let mut state = self.chats.entry(chat).or_default();
        let mut earliest = state.next.map_or(now, |next| next.max(now));
        let group = chat < 0;
        if group {
            while state.recent.front().is_some_and(|at| *at + MINUTE < now) {
                state.recent.pop_front();
            }
            if state.recent.len() >= GROUP_PER_MINUTE
                && let Some(oldest) = state.recent.front()
            {
                earliest = earliest.max(*oldest + MINUTE + MARGIN);
            }
        }
        let at = self.take_slot(earliest, now);
        state.next = Some(at + SECOND + MARGIN);
        if group {
            state.recent.push_back(at);
            if state.recent.len() > GROUP_PER_MINUTE {
                state.recent.pop_front();
            }
        }
        at
    }

    /// The first free overall slot at or after `earliest`, taken; the moment the message goes
    /// (`now` when that is the slot `now` is in).
    ///
    /// Slot `k` covers `[k, k + 1)` slot lengths from the origin, and a message goes within its
    /// slot: at its start, or at once when its slot has begun. One message a slot of 1/(N−1) s
    /// puts at most N in any second.
    fn take_slot(&self, earliest: Instant, now: Instant) -> Instant {
        let slot = self.slot.as_secs_f64();
        let since = |at: Instant| at.duration_since(self.origin).as_secs_f64() / slot;
        let mut taken = self
            .taken
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Slots before the one now is in are of no use to anyone.
        let current = since(now).floor() as u64;
        while taken.first().is_some_and(|first| *first < current) {
            taken.pop_first();
        }
        // A message free to go now may take the slot already begun; one that must wait takes
        // the first slot starting at or after its moment.
        let mut at = if earliest <= now {
            current
        } else {
            since(earliest).ceil() as u64
        };
        while taken.contains(&at) {
            at += 1;
        }
        taken.insert(at);
        if at == current {
            now
        } else {
            self.origin + Duration::from_secs_f64(at as f64 * slot)
        }
    }

    /// Telegram said to wait: nothing more goes to `chat` before `after` has passed.
    pub(crate) fn hold(&self, chat: i64, after: Duration) {
        let until = Instant::now() + after;
        let mut state = self.chats.entry(chat).or_default();
        state.next = Some(state.next.map_or(until, |next| next.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends times within `window` of each other, at most.
    fn most_within(times: &[Instant], window: Duration) -> usize {
        let mut sorted = times.to_vec();
        sorted.sort();
        (0..sorted.len())
            .map(|i| {
                sorted[i..]
                    .iter()
                    .take_while(|t| **t - sorted[i] < window)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn a_quiet_chat_sends_at_once_and_then_once_a_second() {
        let pace = Pace::new(30);
        let now = Instant::now();
        let first = pace.reserve(7, now);
        let second = pace.reserve(7, now);
        assert_eq!(first, now, "the first message waits for nothing");
        assert!(second - first >= SECOND, "{:?}", second - first);
    }

    #[test]
    fn the_slot_already_begun_goes_to_one_message_only() {
        let pace = Pace::new(30);
        let now = Instant::now();
        let first = pace.reserve(1, now);
        let second = pace.reserve(2, now);
        assert_eq!(first, now);
        assert!(
            second > now && second - now <= pace.slot,
            "the second waits for the next slot: {:?}",
            second - now
        );
    }

    #[test]
    fn no_second_holds_more_than_the_overall_limit() {
        let pace = Pace::new(30);
        let now = Instant::now();
        let times: Vec<Instant> = (0..300).map(|chat| pace.reserve(chat, now)).collect();
        assert!(
            most_within(&times, SECOND) <= 30,
            "{}",
            most_within(&times, SECOND)
        );
        // …and the slots are used: 300 messages take about ten seconds, not more.
        let last = times.iter().max().copied().unwrap_or(now);
        assert!(last - now < Duration::from_secs(11), "{:?}", last - now);
    }

    #[test]
    fn a_waiting_chat_does_not_hold_up_the_others() {
        let pace = Pace::new(30);
        let now = Instant::now();
        for _ in 0..5 {
            pace.reserve(1, now);
        }
        let other = pace.reserve(2, now);
        assert!(
            other - now < Duration::from_millis(300),
            "{:?}",
            other - now
        );
    }

    #[test]
    fn a_group_gets_twenty_messages_a_minute() {
        let pace = Pace::new(30);
        let now = Instant::now();
        let times: Vec<Instant> = (0..45).map(|_| pace.reserve(-100, now)).collect();
        assert!(most_within(&times, MINUTE) <= GROUP_PER_MINUTE);
        assert!(most_within(&times, SECOND) <= 1);
    }

    #[test]
    fn a_retry_after_holds_the_chat() {
        let pace = Pace::new(30);
        pace.hold(5, Duration::from_secs(7));
        let now = Instant::now();
        let at = pace.reserve(5, now);
        assert!(at - now >= Duration::from_secs(7));
    }

    #[tokio::test]
    async fn a_message_waiting_its_turn_is_abandoned_unsent_and_one_already_sent_is_finished() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

        let pace = Pace::new(30);
        let calls = AtomicUsize::new(0);
        let send = || async {
            calls.fetch_add(1, SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<_, RequestError>(())
        };
        // The chat's first message goes at once, and is finished though abandoned while on
        // the wire.
        let abandon = CancellationToken::new();
        let cancel = async {
            tokio::time::sleep(Duration::from_millis(70)).await;
            abandon.cancel();
        };
        let (sent, ()) = tokio::join!(pace.send_unless(9, Some(&abandon), send), cancel);
        assert!(matches!(sent, Some(Ok(()))), "finished once on the wire");
        assert_eq!(calls.load(SeqCst), 1);
        // The next must wait about a second for its turn: abandoned there, it is never sent.
        let abandon = CancellationToken::new();
        let cancel = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            abandon.cancel();
        };
        let (sent, ()) = tokio::join!(pace.send_unless(9, Some(&abandon), send), cancel);
        assert!(sent.is_none(), "abandoned before its turn");
        assert_eq!(calls.load(SeqCst), 1, "and never sent");
    }
}

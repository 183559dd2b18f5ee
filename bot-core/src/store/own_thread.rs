//! A future driven to its end on a thread of its own, which spins a moment before it sleeps:
//! how SQLite's writer runs (see [`writer`](super::writer)).
//!
//! The writer waits on sqlx's SQLite thread many times per batch: that thread sends every
//! statement's end and every row back through a channel that holds
//! [`SQLX_ROW_CHANNEL`](super::plan::SQLX_ROW_CHANNEL), and is woken for each
//! query sent. On the runtime, each of those wakes put the writer in the runtime's queue behind
//! every request task (a busy bot has hundreds), and often cost a system call to wake a parked
//! runtime thread: in `perf` of `cargo bench --bench telegram -- --only imagine`, futex and
//! eventfd calls were a quarter of the runtime threads' time, while sqlx's SQLite thread sat idle
//! half the time waiting for the writer. On a thread of its own that spins before sleeping, a
//! wake during the spin is a store to an atomic, and the writer runs at once.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, Wake, Waker},
    thread::Thread,
    time::{Duration, Instant},
};

/// How long the thread waits for a wake-up awake before it sleeps. A query to SQLite's thread
/// mostly answers within it, and a thread with nothing to do sleeps after it.
///
/// Measured on a first version of this loop, which read the clock at every turn, with `cargo
/// bench --bench telegram -- --only imagine --updates 8000 --runs 1` (updates/s, two rounds):
/// 0 µs (sleep at once) 7,529 / 8,649; 20 µs 8,678 / 9,058; 50 µs 8,930 / 10,051; 150 µs
/// 9,546 / 8,890; 400 µs 9,933 / 9,481.
const SPIN: Duration = Duration::from_micros(50);

/// While spinning, the thread gives way to any other that is ready this often (in turns of the
/// spin), so that on a machine with one core it does not keep the thread it waits for from
/// running.
const YIELD_EVERY: u32 = 64;

/// Starts a thread named `name` that drives `future` to its end.
pub(super) fn spawn<F>(name: &str, future: F) -> std::io::Result<std::thread::JoinHandle<F::Output>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || block_on(future))
}

/// Whether the future was woken since it was last polled, and the thread to wake if it sleeps.
struct Signal {
    woken: AtomicBool,
    thread: Thread,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        // A system call only when the thread sleeps (or is about to: its next park returns at
        // once).
        self.thread.unpark();
    }
}

/// Drives `future` to its end on this thread: polled whenever woken, spinning up to [`SPIN`]
/// between a poll that is not ready and its wake-up, then sleeping until it.
fn block_on<F: Future>(future: F) -> F::Output {
    let signal = Arc::new(Signal {
        woken: AtomicBool::new(false),
        thread: std::thread::current(),
    });
    let waker = Waker::from(signal.clone());
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        let started = Instant::now();
        let mut turns: u32 = 0;
        while !signal.woken.swap(false, Ordering::Acquire) {
            turns = turns.wrapping_add(1);
            if !turns.is_multiple_of(YIELD_EVERY) {
                std::hint::spin_loop();
            } else if started.elapsed() < SPIN {
                std::thread::yield_now();
            } else {
                // Returns at once if unparked since the flag was read; may also return for no
                // reason, and the flag is read again.
                std::thread::park();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Runs `test` on a thread of its own, failing (rather than hanging the suite) if it has not
    /// ended within a few seconds: a lost wake-up leaves [`block_on`] asleep for ever.
    fn within_seconds<T: Send + 'static>(test: impl FnOnce() -> T + Send + 'static) -> T {
        let (done, ended) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(test());
        });
        ended
            .recv_timeout(Duration::from_secs(10))
            .expect("block_on never returned: a wake-up was lost")
    }

    /// A future woken long after the spin, once the thread sleeps, is polled again and ends.
    #[test]
    fn a_wake_after_the_spin_wakes_the_sleeping_thread() {
        let answer = within_seconds(|| {
            let (send, receive) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || {
                std::thread::sleep(SPIN * 200);
                let _ = send.send(42);
            });
            block_on(receive)
        });
        assert_eq!(answer, Ok(42));
    }

    /// Wake-ups in quick succession from another thread, some within the spin and some racing
    /// its end, are none of them lost: 20,000 messages back and forth between two threads.
    #[test]
    fn no_wake_up_is_lost_between_two_threads() {
        const ROUNDS: u64 = 20_000;
        let sum = within_seconds(|| {
            let (to_echo, mut at_echo) = tokio::sync::mpsc::channel::<u64>(1);
            let (to_driver, mut at_driver) = tokio::sync::mpsc::channel::<u64>(1);
            let echo = spawn("echo", async move {
                while let Some(n) = at_echo.recv().await {
                    if to_driver.send(n + 1).await.is_err() {
                        break;
                    }
                }
            })
            .expect("starts a thread");
            let sum = block_on(async move {
                let mut sum = 0;
                for n in 0..ROUNDS {
                    to_echo.send(n).await.expect("the echo listens");
                    sum += at_driver.recv().await.expect("the echo answers");
                }
                sum
            });
            echo.join().expect("the echo thread ends");
            sum
        });
        assert_eq!(sum, (1..=ROUNDS).sum::<u64>());
    }
}

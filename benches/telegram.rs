//! Updates per second through the Telegram adapter (long polling the in-repo fake Bot API,
//! through the core, answered back to the fake) for `/balance` and `/imagine` (the status
//! message is the answer; no provider runs), and in the same run a bare teloxide echo bot
//! polling the same kind of fake. Each update comes from its own private chat, and the overall
//! message limit is raised for the run, so the figure is the adapter's own cost, not
//! Telegram's limits. Each person has sent /start before the timed part. SQLite.
//!
//! The fake runs on a runtime of its own (threads `fake-*`), the bots on another (`bot-*`, with
//! sqlx's SQLite threads and the store's writer, `sqlite-writer`): the CPU microseconds per
//! update beside each rate are the bot's own, the process's CPU less the fake's threads and the
//! main thread that queues the updates. The context switches per update beside them count the
//! same threads' parks and wake-ups: each is a hand-off between threads (the runtime's, the
//! writer's, sqlx's SQLite ones) that costs beyond its CPU.
//!
//! `cargo bench --bench telegram [-- --updates N --runs N --only echo|balance|imagine]`: each
//! row is the median of `runs` (default 3); `--only` runs one bot alone, for a profile of it.
//! `SQL_LOG=PATH` writes every statement with its time (see `support/sql_log.rs`), and
//! `PERF_CTL_FIFO=PATH` with `perf record --control fifo:PATH -D -1` records the timed part
//! alone.

#[path = "support/alloc.rs"]
mod alloc;
#[path = "support/args.rs"]
mod args;
#[path = "support/cpu.rs"]
mod cpu;
#[path = "support/sql_log.rs"]
mod sql_log;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bot_core::{
    Backend,
    service::{Service, Settings},
    store::testing::TestDb,
};
use fakes::telegram::{Chat, FakeTelegram};
use secrecy::SecretString;
use teloxide::{
    payloads::GetUpdatesSetters as _,
    prelude::Requester as _,
    types::{ChatId, UpdateKind},
};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "123456:BENCH-token";
/// The threads whose CPU is not the bot's (besides the main thread, which queues updates).
const FAKE_THREADS: &[&str] = &["fake-"];

/// One timed run: updates per second, the bot's CPU microseconds per update, and its threads'
/// context switches per update.
#[derive(Debug, Clone, Copy)]
struct Run {
    rate: f64,
    cpu_us: f64,
    switches: f64,
}

fn main() {
    sql_log::start();
    let updates = args::option("--updates", 2_000) as usize;
    let runs = args::option("--runs", 3).max(1) as usize;
    let only = args::word("--only");
    let wanted = |name: &str| only.as_deref().is_none_or(|only| name.starts_with(only));
    let fakes = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("fake-runtime")
        .enable_all()
        .build()
        .expect("fake runtime");
    let bots = tokio::runtime::Builder::new_multi_thread()
        .thread_name("bot-runtime")
        .enable_all()
        .build()
        .expect("bot runtime");
    println!(
        "telegram benchmark: {updates} updates, each from its own private chat; median of {runs} runs"
    );
    println!(
        "{:<22} {:>12} {:>10} {:>16} {:>16}",
        "bot", "updates/s", "vs echo", "bot CPU µs/upd", "switches/upd"
    );
    let median = |mut all: Vec<Run>| {
        all.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        all[all.len() / 2]
    };
    let mut echo_runs = Vec::new();
    let mut adapter_runs: Vec<Vec<Run>> = vec![Vec::new(), Vec::new()];
    let commands = ["/balance", "/imagine a fox"];
    // Interleaved, so that a slow moment of the machine falls on both.
    for _ in 0..runs {
        if wanted("echo") {
            let fake = fakes.block_on(FakeTelegram::start(TOKEN));
            echo_runs.push(bots.block_on(echo_bot(&fake, updates)));
        }
        for (at, command) in commands.iter().enumerate() {
            if !wanted(&command[1..]) {
                continue;
            }
            let fake = fakes.block_on(FakeTelegram::start(TOKEN));
            adapter_runs[at].push(bots.block_on(adapter(&fake, command, updates)));
        }
    }
    let echo = (!echo_runs.is_empty()).then(|| median(echo_runs));
    if let Some(echo) = echo {
        print_row("teloxide echo bot", "1.00×", echo);
    }
    for (command, runs) in commands.iter().zip(adapter_runs) {
        if runs.is_empty() {
            continue;
        }
        let run = median(runs);
        // Without the echo bot in this run (`--only`), there is nothing to compare with.
        let ratio = echo.map_or("—".to_string(), |echo| {
            format!("{:.2}×", run.rate / echo.rate)
        });
        let name = format!("adapter {}", command.split(' ').next().unwrap_or(command));
        print_row(&name, &ratio, run);
    }
}

/// One row of the table: the bot, its rate and the ratio to the echo bot, its CPU and switches.
fn print_row(bot: &str, ratio: &str, run: Run) {
    println!(
        "{:<22} {:>12.0} {:>10} {:>16.1} {:>16.2}",
        bot, run.rate, ratio, run.cpu_us, run.switches
    );
}

/// Queues `n` messages from `n` people.
fn queue(fake: &FakeTelegram, n: usize, text: &str) {
    for person in 0..n {
        let id = 100_000 + person as i64;
        fake.message(&Chat::private(id), id, text);
    }
}

/// Waits until `total` messages were sent.
async fn answered(fake: &FakeTelegram, total: usize) {
    let sent = fake
        .wait_for_count(Duration::from_secs(600), "sendMessage", total)
        .await;
    assert!(sent >= total, "only {sent} of {total} answers were sent");
}

/// Tells `perf record --control fifo:PATH -D -1` to start or stop recording, when the
/// variable `PERF_CTL_FIFO` names that fifo: a profile of the timed part alone.
fn perf_control(command: &str) {
    use std::io::Write as _;
    if let Ok(path) = std::env::var("PERF_CTL_FIFO")
        && let Ok(mut fifo) = std::fs::OpenOptions::new().write(true).open(path)
    {
        let _ = writeln!(fifo, "{command}");
    }
}

/// Times `n` answers from the moment `started`, with the bot's CPU and its threads' context
/// switches over the same time.
async fn timed(fake: &FakeTelegram, n: usize, total: usize, queue_them: impl FnOnce()) -> Run {
    let cpu = cpu::seconds_except(FAKE_THREADS);
    let switches = cpu::switches_except(FAKE_THREADS);
    perf_control("enable");
    let started = Instant::now();
    queue_them();
    answered(fake, total).await;
    let elapsed = started.elapsed().as_secs_f64();
    perf_control("disable");
    Run {
        rate: n as f64 / elapsed,
        cpu_us: (cpu::seconds_except(FAKE_THREADS) - cpu) * 1e6 / n as f64,
        switches: cpu::switches_between(&switches, &cpu::switches_except(FAKE_THREADS)) as f64
            / n as f64,
    }
}

async fn echo_bot(fake: &FakeTelegram, n: usize) -> Run {
    let bot = teloxide::Bot::new(TOKEN).set_api_url(fake.url().parse().expect("url"));
    let stop = CancellationToken::new();
    let polling = {
        let (bot, stop) = (bot.clone(), stop.clone());
        tokio::spawn(async move {
            let mut offset = 0;
            while !stop.is_cancelled() {
                let Ok(updates) = bot.get_updates().offset(offset).timeout(1).await else {
                    continue;
                };
                for update in updates {
                    offset = update.id.0 as i32 + 1;
                    if let UpdateKind::Message(message) = update.kind {
                        let bot = bot.clone();
                        tokio::spawn(async move {
                            let text = message.text().unwrap_or("…").to_string();
                            let _ = bot.send_message(ChatId(message.chat.id.0), text).await;
                        });
                    }
                }
            }
        })
    };
    let run = timed(fake, n, n, || queue(fake, n, "hello")).await;
    stop.cancel();
    let _ = polling.await;
    run
}

async fn adapter(fake: &FakeTelegram, command: &str, n: usize) -> Run {
    let db = TestDb::with_connections(Backend::Sqlite, "telegram benchmark", 4)
        .await
        .expect("SQLite");
    let config = telegram::TelegramConfig {
        bot_token: Some(SecretString::from(TOKEN.to_string())),
        api_url: fake.url(),
        messages_per_second: 1_000_000,
        ..telegram::TelegramConfig::default()
    };
    let bot = telegram::Telegram::connect(&config, &Default::default(), &[], None)
        .await
        .expect("connects");
    let settings = Settings {
        welcome_credits: bot_core::Credits::new(100),
        // The adapter's and the store's speed are measured, not the per-person limit.
        limits: bot_core::service::throttle::RateLimits {
            requests_per_minute: 0,
            burst: 0,
            share_ms: 0,
        },
        ..Settings::default()
    };
    let service = Arc::new(Service::new(
        db.store().clone(),
        settings,
        vec![bot.messenger()],
    ));
    // Everyone has met the bot before the timed part: first contact (a new person, the welcome
    // grant, the terms) is not what is measured. Each has also waited out the one message a
    // second Telegram allows a chat.
    queue(fake, n, "/start");
    let stop = CancellationToken::new();
    let running = tokio::spawn(bot.run(service, stop.clone()));
    answered(fake, n).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let run = timed(fake, n, 2 * n, || queue(fake, n, command)).await;
    stop.cancel();
    let _ = running.await;
    let audit = db.store().audit().await.expect("audit");
    assert!(audit.is_clean(), "{audit}");
    run
}

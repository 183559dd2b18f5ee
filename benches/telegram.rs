//! Updates per second through the Telegram adapter (long polling the in-repo fake Bot API,
//! through the core, answered back to the fake) for `/balance` and `/imagine` (the status
//! message is the answer; no provider runs), and in the same run a bare teloxide echo bot
//! polling the same fake. Each update comes from its own private chat, and the overall message
//! limit is raised for the run, so the figure is the adapter's own cost, not Telegram's limits.
//! Each person has sent /start before the timed part. SQLite.
//!
//! `cargo bench --bench telegram [-- --updates N]`

#[path = "support/args.rs"]
mod args;

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

fn main() {
    let updates = args::option("--updates", 2_000) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("telegram benchmark: {updates} updates, each from its own private chat");
    println!("{:<22} {:>12} {:>10}", "bot", "updates/s", "vs echo");
    let echo = runtime.block_on(echo_bot(updates));
    println!("{:<22} {:>12.0} {:>10}", "teloxide echo bot", echo, "1.00×");
    for command in ["/balance", "/imagine a fox"] {
        let rate = runtime.block_on(adapter(command, updates));
        println!(
            "{:<22} {:>12.0} {:>9.2}×",
            format!("adapter {}", command.split(' ').next().unwrap_or(command)),
            rate,
            rate / echo
        );
    }
}

/// Queues `n` messages from `n` people, then counts the time until `n` answers were sent.
async fn queue(fake: &FakeTelegram, n: usize, text: &str) {
    for person in 0..n {
        let id = 100_000 + person as i64;
        fake.message(&Chat::private(id), id, text);
    }
}

/// Waits until `total` messages were sent; the rate of the last `n` of them since `started`.
async fn answered(fake: &FakeTelegram, n: usize, total: usize, started: Instant) -> f64 {
    fake.wait_for(Duration::from_secs(600), |sent| {
        sent.iter().filter(|m| m.method == "sendMessage").count() >= total
    })
    .await;
    n as f64 / started.elapsed().as_secs_f64()
}

async fn echo_bot(n: usize) -> f64 {
    let fake = FakeTelegram::start(TOKEN).await;
    queue(&fake, n, "hello").await;
    let bot = teloxide::Bot::new(TOKEN).set_api_url(fake.url().parse().expect("url"));
    let stop = CancellationToken::new();
    let started = Instant::now();
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
    let rate = answered(&fake, n, n, started).await;
    stop.cancel();
    let _ = polling.await;
    rate
}

async fn adapter(command: &str, n: usize) -> f64 {
    let fake = FakeTelegram::start(TOKEN).await;
    let db = TestDb::with_connections(Backend::Sqlite, "telegram benchmark", 4)
        .await
        .expect("SQLite");
    let config = telegram::TelegramConfig {
        bot_token: Some(SecretString::from(TOKEN.to_string())),
        api_url: fake.url(),
        messages_per_second: 1_000_000,
        ..telegram::TelegramConfig::default()
    };
    let bot = telegram::Telegram::connect(&config, &Default::default(), None)
        .await
        .expect("connects");
    let settings = Settings {
        welcome_credits: bot_core::Credits::new(100),
        // The adapter's and the store's speed are measured, not the per-person limit.
        limits: bot_core::service::throttle::RateLimits {
            requests_per_minute: 0,
            burst: 0,
        },
        ..Settings::default()
    };
    let service = Arc::new(Service::new(
        db.store().clone(),
        settings,
        vec![bot.messenger()],
    ));
    // Everyone has met the bot before the timed part: first contact (a new person, the welcome
    // grant, the terms) is not what is measured.
    queue(&fake, n, "/start").await;
    let stop = CancellationToken::new();
    let running = tokio::spawn(bot.run(service, stop.clone()));
    answered(&fake, n, n, Instant::now()).await;
    let started = Instant::now();
    queue(&fake, n, command).await;
    let rate = answered(&fake, n, 2 * n, started).await;
    stop.cancel();
    let _ = running.await;
    let audit = db.store().audit().await.expect("audit");
    assert!(audit.is_clean(), "{audit}");
    rate
}

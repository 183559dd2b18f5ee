//! Stripe webhook throughput: unique signed `checkout.session.completed` events, each crediting
//! its own purchase, verified and applied per second through `POST /stripe/webhook` of the whole
//! application, at 32 concurrent senders. The purchases belong to `--buyers` people (default
//! 64; `--buyers 1` is the worst case, every credit contending for one wallet). On SQLite and
//! (with `TEST_POSTGRES_URL`) PostgreSQL. SQLite runs twice: with its one-round-trip credit
//! script (`sqlite`, the default) and with the general path every backend has (`sqlite-gen`),
//! which is what decides whether the script is worth keeping (`Store::use_credit_script`).
//!
//! `cargo bench --bench webhook [-- --events N --buyers N]`

#[path = "support/alloc.rs"]
mod alloc;
#[path = "support/args.rs"]
mod args;

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bot_core::{
    Backend, Platform,
    service::{ChatKind, ChatRef},
    store::testing::{TestDb, person, stripe_order},
};
use fakes::stripe::{FakeStripe, Session, sign};
use imagegpt::{config::Config, startup::Application};
use tokio_util::sync::CancellationToken;

const SENDERS: usize = 32;
const SECRET: &str = "whsec_bench";

fn main() {
    let events = args::option("--events", 4_000) as usize;
    let buyers = args::option("--buyers", 64).max(1) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "webhook benchmark: {events} unique signed events from {buyers} buyers, {SENDERS} \
         concurrent senders"
    );
    println!(
        "{:<10} {:>10} {:>10} {:>10}",
        "backend", "events/s", "p50 ms", "p99 ms"
    );
    for (backend, script) in [
        (Backend::Sqlite, true),
        (Backend::Sqlite, false),
        (Backend::Postgres, false),
    ] {
        if !runtime.block_on(run(backend, script, events, buyers)) {
            println!(
                "{:<10} skipped: TEST_POSTGRES_URL is not set",
                backend.name()
            );
        }
    }
}

async fn run(backend: Backend, script: bool, events: usize, buyers: usize) -> bool {
    let Some(db) = TestDb::new(backend, "webhook benchmark").await else {
        return false;
    };
    let stripe = FakeStripe::start("sk_bench").await;
    let config = Config::load_from(
        None,
        [
            ("DATABASE_URL", db.url()),
            ("HTTP_ADDR", "127.0.0.1:0"),
            ("STRIPE_SECRET_KEY", "sk_bench"),
            ("STRIPE_WEBHOOK_SECRET", SECRET),
            ("STRIPE_API_URL", &stripe.url()),
            ("PUBLIC_BASE_URL", "https://bot.example.org"),
            ("RUST_LOG", "warn"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    )
    .expect("configuration");
    let app = Application::build(&config).await.expect("application");
    let address = app.local_addr().expect("address");
    let store = app.store().clone();
    store.use_credit_script(script);
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));

    let mut people = Vec::with_capacity(buyers);
    for n in 0..buyers {
        people.push(person(&store, &format!("bench-buyer-{n}"), 0).await);
    }
    let chat = ChatRef {
        platform: Platform::Console,
        id: "bench".into(),
        kind: ChatKind::Private,
    };
    let mut bodies = Vec::with_capacity(events);
    for n in 0..events {
        let buyer = &people[n % buyers];
        let payer = format!("console:bench-buyer-{}", n % buyers);
        let purchase = stripe_order(&store, buyer, &payer, chat.clone()).await;
        let session = Session::for_order(purchase.id, 500, "usd");
        bodies.push(stripe.event(
            "checkout.session.completed",
            stripe.session_object(&session, "paid"),
        ));
    }
    let bodies = Arc::new(bodies);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(SENDERS)
        .build()
        .expect("client");
    let url = format!("http://{address}/stripe/webhook");
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        let (client, url, bodies, next) =
            (client.clone(), url.clone(), bodies.clone(), next.clone());
        senders.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
                    return latencies;
                };
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                let sent = Instant::now();
                let status = client
                    .post(&url)
                    .header("Stripe-Signature", sign(body, SECRET, now))
                    .body(body.clone())
                    .send()
                    .await
                    .expect("webhook answers")
                    .status();
                assert_eq!(status.as_u16(), 200);
                latencies.push(sent.elapsed());
            }
        }));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    for sender in senders {
        latencies.extend(sender.await.expect("sender"));
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    let mut credited = 0;
    for buyer in &people {
        credited += store
            .account_balance(buyer.wallet)
            .await
            .expect("balance")
            .available()
            .get();
    }
    assert_eq!(credited, 150 * events as u64, "every event credited once");
    println!(
        "{:<10} {:>10.0} {:>10.2} {:>10.2}",
        match (backend, script) {
            (Backend::Sqlite, false) => "sqlite-gen",
            _ => backend.name(),
        },
        events as f64 / elapsed.as_secs_f64(),
        at(0.5).as_secs_f64() * 1000.0,
        at(0.99).as_secs_f64() * 1000.0
    );
    let audit = store.audit().await.expect("audit");
    assert!(audit.is_clean(), "{audit}");
    shutdown.cancel();
    let _ = server.await;
    drop(db);
    true
}

//! Discord interactions per second through `POST /discord/interactions`: each one signed with
//! Ed25519 by the in-repo fake Discord, verified, translated, acknowledged (the HTTP answer) and
//! then answered through the fake's REST API, at 32 concurrent senders. `/balance` (the answer
//! replaces the deferred response) and `/imagine` (the status message replaces it; two workers
//! with an instant provider deliver the result as a follow-up). Every interaction comes from its
//! own person, who met the bot before the timed part. SQLite.
//!
//! Reported: acknowledgements per second (what Discord waits for, within 3 s) with p50/p99;
//! answered per second (until the last deferred response was replaced by the balance or the
//! job's status); for `/imagine`, delivered per second (until the last result was posted).
//!
//! `cargo bench --bench discord [-- --interactions N]`

#[path = "support/alloc.rs"]
mod alloc;
#[path = "support/args.rs"]
mod args;
#[path = "support/instant.rs"]
mod instant;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bot_core::{
    Backend, Credits,
    jobs::JobLimits,
    providers::Routes,
    service::{
        Service, Settings,
        worker::{Worker, WorkerConfig},
    },
    store::testing::TestDb,
};
use fakes::discord::{FakeDiscord, Person, Place, Via};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const SENDERS: usize = 32;
const APPLICATION: &str = "1100000000000000001";

fn main() {
    let interactions = args::option("--interactions", 4_000) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "discord benchmark: {interactions} signed interactions, each from its own person, \
         {SENDERS} concurrent senders, SQLite"
    );
    println!(
        "{:<10} {:>10} {:>9} {:>9} {:>12} {:>13}",
        "command", "acks/s", "p50 ms", "p99 ms", "answered/s", "delivered/s"
    );
    for command in ["balance", "imagine"] {
        runtime.block_on(run(command, interactions));
    }
}

async fn run(command: &str, n: usize) {
    let fake = Arc::new(FakeDiscord::start(APPLICATION, "bench-token").await);
    let db = TestDb::with_connections(Backend::Sqlite, "discord benchmark", 4)
        .await
        .expect("SQLite");
    let config = discord::DiscordConfig {
        application_id: Some(APPLICATION.into()),
        public_key: Some(fake.public_key()),
        api_url: fake.url(),
        ..discord::DiscordConfig::default()
    };
    let adapter = discord::Discord::connect(&config, &Default::default(), None)
        .await
        .expect("connects");
    let settings = Settings {
        welcome_credits: Credits::new(100),
        jobs: JobLimits {
            max_queued_per_person: u32::MAX,
            ..JobLimits::default()
        },
        local_preview: false,
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
        vec![adapter.messenger()],
    ));
    let handler = adapter.handler(service.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, adapter.router(&handler)).await;
    });
    fake.set_endpoint(&format!("http://{address}/discord/interactions"));
    let shutdown = CancellationToken::new();
    let routes = Routes::every(vec![Arc::new(instant::InstantProvider)]);
    let workers: Vec<_> = (0..2)
        .map(|n| {
            let config = WorkerConfig {
                poll_ms: 5,
                ..WorkerConfig::default()
            };
            tokio::spawn(
                Worker::new(service.clone(), routes.clone(), config, format!("w{n}"))
                    .run(shutdown.clone()),
            )
        })
        .collect();
    let people: Vec<Person> = (0..n)
        .map(|i| Person::new(10_000 + i as u64, &format!("p{i}")))
        .collect();
    let place = Place::guild(1, 2);
    // Everyone meets the bot first (a new person, the welcome grant, the terms): not timed.
    let warm = send_all(&fake, &people, &place, "balance").await;
    wait_answered(&fake, &warm, "answered").await;

    let started = Instant::now();
    let (ids, mut latencies) = {
        let (ids, latencies) = send_timed(&fake, &people, &place, command).await;
        (ids, latencies)
    };
    let acked = started.elapsed();
    wait_answered(&fake, &ids, "answered").await;
    let answered = started.elapsed();
    let delivered = if command == "imagine" {
        wait_answered(&fake, &ids, "delivered").await;
        format!("{:.0}", n as f64 / started.elapsed().as_secs_f64())
    } else {
        "-".into()
    };
    latencies.sort();
    let at = |q: f64| {
        latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)].as_secs_f64()
            * 1000.0
    };
    println!(
        "{:<10} {:>10.0} {:>9.2} {:>9.2} {:>12.0} {:>13}",
        format!("/{command}"),
        n as f64 / acked.as_secs_f64(),
        at(0.5),
        at(0.99),
        n as f64 / answered.as_secs_f64(),
        delivered
    );
    assert_eq!(fake.late_acks() + fake.bad_acks(), 0);
    shutdown.cancel();
    for worker in workers {
        let _ = worker.await;
    }
    let audit = db.store().audit().await.expect("audit");
    assert!(audit.is_clean(), "{audit}");
    server.abort();
}

fn interaction(
    fake: &FakeDiscord,
    person: &Person,
    place: &Place,
    command: &str,
) -> serde_json::Value {
    let options = match command {
        "imagine" => json!([{"name": "prompt", "type": 3, "value": "a fox"}]),
        _ => json!([]),
    };
    fake.slash(person, place, command, options, json!({}))
}

async fn send_all(
    fake: &Arc<FakeDiscord>,
    people: &[Person],
    place: &Place,
    command: &str,
) -> Vec<String> {
    send_timed(fake, people, place, command).await.0
}

/// Sends one interaction per person from 32 senders; the interaction ids and each one's time to
/// acknowledgement.
async fn send_timed(
    fake: &Arc<FakeDiscord>,
    people: &[Person],
    place: &Place,
    command: &str,
) -> (Vec<String>, Vec<Duration>) {
    let bodies: Arc<Vec<serde_json::Value>> = Arc::new(
        people
            .iter()
            .map(|person| interaction(fake, person, place, command))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            let (fake, bodies, next) = (fake.clone(), bodies.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else {
                        return latencies;
                    };
                    let at = Instant::now();
                    let answer = fake.interact(body).await;
                    assert_eq!(answer.status, 200, "{:?}", answer.body);
                    assert_eq!(answer.body["type"], 5);
                    latencies.push(at.elapsed());
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for sender in senders {
        latencies.extend(sender.await.expect("sender"));
    }
    let ids = bodies
        .iter()
        .map(|b| b["id"].as_str().unwrap_or_default().to_string())
        .collect();
    (ids, latencies)
}

/// Waits until every interaction in `ids` was answered (its deferred response replaced: the
/// balance, or a job's status) or, with `"delivered"`, its result delivered.
async fn wait_answered(fake: &FakeDiscord, ids: &[String], what: &str) {
    let wanted: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done = fake.count(|m| {
            m.interaction.as_deref().is_some_and(|i| wanted.contains(i))
                && match what {
                    "delivered" => !m.files.is_empty(),
                    _ => m.via == Via::Original && !m.loading,
                }
        });
        if done >= ids.len() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {} answered",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

//! Requests through `Service::handle`: `/balance` per second, and `/imagine` enqueues per second
//! with the p99 latency of one enqueue, at 8 concurrent people (`--people`), while workers
//! drain the queue with an instant provider. On SQLite and (with `TEST_POSTGRES_URL`)
//! PostgreSQL.
//!
//! `cargo bench --bench service [-- --seconds N --people N --workers N --runs N --only
//! balance|imagine]`: each row is the median of `runs` runs (default 3) by rate, with the audit
//! clean after each run. `SQL_LOG=PATH` writes every statement with its time (see `support/sql_log.rs`).

#[path = "support/alloc.rs"]
mod alloc;
#[path = "support/args.rs"]
mod args;
#[path = "support/instant.rs"]
mod instant;
#[path = "support/sql_log.rs"]
mod sql_log;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bot_core::{
    Backend, Platform,
    jobs::JobLimits,
    media::Output,
    providers::Routes,
    service::{
        Attachment, Button, ChatKind, ChatRef, Input, MessageRef, Messenger, MessengerFuture,
        Request, Service, Settings,
        worker::{Worker, WorkerConfig},
    },
    store::testing::{TestDb, person},
};
use tokio_util::sync::CancellationToken;

/// Concurrent people, unless `--people` says otherwise.
const PEOPLE: usize = 8;

/// The chat platform, answering at once.
#[derive(Debug)]
struct Instant_;

impl Messenger for Instant_ {
    fn platform(&self) -> Platform {
        Platform::Console
    }
    fn send_text<'a>(
        &'a self,
        chat: &'a ChatRef,
        _: Option<&'a str>,
        _: &'a str,
        _: &'a [Button],
    ) -> MessengerFuture<'a, MessageRef> {
        Box::pin(async move {
            Ok(MessageRef {
                chat: chat.clone(),
                id: "1".into(),
            })
        })
    }
    fn edit_text<'a>(
        &'a self,
        _: &'a MessageRef,
        _: &'a str,
        _: &'a [Button],
    ) -> MessengerFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }
    fn send_media<'a>(
        &'a self,
        chat: &'a ChatRef,
        _: Option<&'a str>,
        _: &'a Output,
        _: &'a str,
        _: &'a [Button],
        _: &'a CancellationToken,
    ) -> MessengerFuture<'a, MessageRef> {
        Box::pin(async move {
            Ok(MessageRef {
                chat: chat.clone(),
                id: "2".into(),
            })
        })
    }
    fn fetch<'a>(&'a self, _: &'a Attachment, _: usize) -> MessengerFuture<'a, Vec<u8>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

fn main() {
    sql_log::start();
    let seconds = args::option("--seconds", 5);
    let workers = args::option("--workers", 2) as usize;
    // One person, with `--workers 0`: each write alone in its batch, as on a quiet bot.
    let people = args::option("--people", PEOPLE as u64).max(1) as usize;
    let runs = args::option("--runs", 3).max(1) as usize;
    let duration = Duration::from_secs(seconds);
    // One command alone, for a profile of it.
    let only = args::word("--only");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "service benchmark: {people} concurrent people, {workers} workers with an instant \
         provider, {seconds} s per run, median of {runs} runs"
    );
    println!(
        "{:<10} {:<10} {:>12} {:>10} {:>10}   all runs (requests/s)",
        "backend", "command", "requests/s", "p50 ms", "p99 ms"
    );
    for backend in [Backend::Sqlite, Backend::Postgres] {
        for command in ["/balance", "/imagine a fox"] {
            if only
                .as_deref()
                .is_some_and(|only| !command[1..].starts_with(only))
            {
                continue;
            }
            let mut all = Vec::new();
            for _ in 0..runs {
                match runtime.block_on(run(backend, command, duration, people, workers)) {
                    Some(figures) => all.push(figures),
                    None => break,
                }
            }
            if all.is_empty() {
                break;
            }
            let every: Vec<String> = all.iter().map(|f| format!("{:.0}", f.rate)).collect();
            all.sort_by(|a, b| a.rate.total_cmp(&b.rate));
            let median = all[all.len() / 2];
            println!(
                "{:<10} {:<10} {:>12.0} {:>10.2} {:>10.2}   {}",
                backend.name(),
                command.split(' ').next().unwrap_or(command),
                median.rate,
                median.p50,
                median.p99,
                every.join(", ")
            );
        }
    }
}

/// One run's figures.
#[derive(Debug, Clone, Copy)]
struct Figures {
    rate: f64,
    p50: f64,
    p99: f64,
}

async fn run(
    backend: Backend,
    command: &str,
    duration: Duration,
    people: usize,
    workers: usize,
) -> Option<Figures> {
    let db = TestDb::with_connections(backend, "service benchmark", 4).await?;
    let settings = Settings {
        jobs: JobLimits {
            max_queued_per_person: u32::MAX,
            max_running_per_person: 4,
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
    let store = db.store().clone();
    let service = Arc::new(Service::new(
        store.clone(),
        settings,
        vec![Arc::new(Instant_)],
    ));
    for n in 0..people {
        person(&store, &format!("bench{n}"), 1_000_000_000).await;
    }
    let shutdown = CancellationToken::new();
    let providers = Routes::every(vec![Arc::new(instant::InstantProvider)]);
    let workers: Vec<_> = (0..workers)
        .map(|n| {
            let config = WorkerConfig {
                poll_ms: 5,
                ..WorkerConfig::default()
            };
            tokio::spawn(
                Worker::new(service.clone(), providers.clone(), config, format!("w{n}"))
                    .run(shutdown.clone()),
            )
        })
        .collect();
    let counter = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let tasks: Vec<_> = (0..people)
        .map(|person| {
            let (service, counter, command) =
                (service.clone(), counter.clone(), command.to_string());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let request = Request {
                        identity: format!("console:bench{person}").parse().expect("identity"),
                        name: format!("bench{person}"),
                        chat: ChatRef {
                            platform: Platform::Console,
                            id: person.to_string(),
                            kind: ChatKind::Private,
                        },
                        message_id: None,
                        key: format!("bench:{n}"),
                        input: Input::Text(command.clone()),
                        attachments: Vec::new(),
                    };
                    let at = Instant::now();
                    service.handle(request).await.expect("handled");
                    latencies.push(at.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    shutdown.cancel();
    for worker in workers {
        let _ = worker.await;
    }
    latencies.sort();
    let at = |q: f64| {
        latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)].as_secs_f64()
            * 1000.0
    };
    let figures = Figures {
        rate: latencies.len() as f64 / elapsed,
        p50: at(0.50),
        p99: at(0.99),
    };
    let audit = store.audit().await.expect("audit");
    assert!(audit.is_clean(), "{audit}");
    store.close().await;
    Some(figures)
}

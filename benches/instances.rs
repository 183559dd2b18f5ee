//! Jobs per second end to end with one and with two processes of the real (release) binary on
//! one PostgreSQL: jobs are enqueued with their holds (by 16 concurrent tasks of this process,
//! timed apart), then the instances start; once every instance answers `/readyz` the clock runs
//! until the last job was claimed, run by a near-instant provider (the in-repo fake Replicate
//! answering after two 5 ms polls with a 64×64 PNG), delivered to the fake Bot API and posted.
//! Jobs finished before the clock started are not counted. Each job's result goes to its own
//! chat, so Telegram's one-message-per-second-per-chat pacing (which the adapter keeps) is not
//! what is measured. Then the idle memory (RSS) of one
//! instance on the embedded defaults (SQLite, no tokens) and of one on PostgreSQL with Telegram
//! on.
//!
//! `TEST_POSTGRES_URL=… cargo bench --bench instances [-- --jobs N]`

#[path = "support/alloc.rs"]
mod alloc;
#[path = "support/args.rs"]
mod args;

use std::{
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use bot_core::{
    Backend, Credits, Platform,
    command::Quality,
    jobs::{JobLimits, NewJob},
    pricing::Operation,
    service::{ChatKind, ChatRef, JobSpec},
    store::testing::{TestDb, person},
};
use fakes::{replicate::FakeReplicate, telegram::FakeTelegram};

const TOKEN: &str = "123456:BENCH-instances";
const PEOPLE: usize = 50;

fn main() {
    let jobs = args::option("--jobs", 2_000) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "instances benchmark: {jobs} jobs from {PEOPLE} people, 8 workers per instance, \
         near-instant provider, PostgreSQL"
    );
    let one = runtime.block_on(run(1, jobs));
    let two = runtime.block_on(run(2, jobs));
    match (one, two) {
        (Some((one, enqueued)), Some((two, _))) => {
            println!("enqueued with holds: {enqueued:.0} jobs/s (16 tasks, before the instances)");
            println!("{:<12} {:>10}", "instances", "jobs/s");
            println!("{:<12} {:>10.0}", 1, one);
            println!("{:<12} {:>10.0}   ({:.2}× one)", 2, two, two / one);
        }
        _ => println!("skipped: TEST_POSTGRES_URL is not set"),
    }
    println!("idle RSS, embedded defaults: {:.1} MB", idle_rss(&[]));
    if let Ok(url) = std::env::var("TEST_POSTGRES_URL") {
        let telegram = runtime.block_on(FakeTelegram::start(TOKEN));
        let api = telegram.url();
        let rss = idle_rss(&[
            ("DATABASE_URL", url.as_str()),
            ("TELEGRAM_BOT_TOKEN", TOKEN),
            ("TELEGRAM_API_URL", api.as_str()),
        ]);
        println!("idle RSS, PostgreSQL and Telegram long polling: {rss:.1} MB");
    }
}

/// Starts the release binary with `env` and a config file in a fresh folder.
fn start(env: &[(&str, &str)], config: &str, addr: &str) -> (Child, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("imagegpt.toml");
    std::fs::write(&path, config).expect("config");
    let child = Command::new(env!("CARGO_BIN_EXE_imagegpt"))
        .args(["--config", path.to_str().expect("utf-8"), "serve"])
        .current_dir(dir.path())
        .env_clear()
        .envs(env.iter().copied())
        .env("HTTP_ADDR", addr)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    (child, dir)
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn idle_rss(env: &[(&str, &str)]) -> f64 {
    let (mut child, _dir) = start(env, "", "127.0.0.1:0");
    std::thread::sleep(Duration::from_secs(5));
    let rss = rss_mb(child.id());
    let _ = child.kill();
    let _ = child.wait();
    rss
}

/// A port free right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn succeeded(store: &bot_core::Store) -> i64 {
    let stats = store.stats(0).await.expect("stats");
    stats
        .jobs
        .iter()
        .filter(|(_, state, _)| state == "succeeded")
        .map(|(_, _, n)| n)
        .sum()
}

/// Jobs per second through `instances` processes, and the enqueue rate.
async fn run(instances: usize, jobs: usize) -> Option<(f64, f64)> {
    let db = TestDb::with_connections(Backend::Postgres, "instances benchmark", 16).await?;
    let telegram = FakeTelegram::start(TOKEN).await;
    let replicate = FakeReplicate::start("r8_bench").await;
    let (api, replicate_url) = (telegram.url(), replicate.url());
    let env = [
        ("DATABASE_URL", db.url()),
        ("TELEGRAM_BOT_TOKEN", TOKEN),
        ("TELEGRAM_API_URL", api.as_str()),
        ("REPLICATE_API_TOKEN", "r8_bench"),
        ("REPLICATE_API_URL", replicate_url.as_str()),
    ];
    let config = "[workers]\ncount = 8\npoll_ms = 5\nstatus_edit_ms = 0\n\n\
                  [jobs]\nmax_queued_per_person = 100000\nmax_running_per_person = 8\n\n\
                  [telegram]\nmessages_per_second = 1000000\n\n\
                  [limits]\nrequests_per_minute = 0\n\n\
                  [providers.replicate]\npoll_ms = 5\n";
    let store = db.store().clone();
    let mut people = Vec::new();
    for n in 0..PEOPLE {
        people.push(person(&store, &format!("bench{n}"), 1_000_000).await);
    }
    let people = Arc::new(people);
    let enqueueing = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let enqueuers: Vec<_> = (0..16)
        .map(|_| {
            let (store, people, next) = (store.clone(), people.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= jobs {
                        return;
                    }
                    let who = &people[n % PEOPLE];
                    let spec = JobSpec {
                        operation: Operation::Image(Quality::Standard),
                        prompt: Some(format!("bench job {n}")),
                        negative: None,
                        seed: None,
                        aspect: "1:1".into(),
                        style: None,
                        attachments: Vec::new(),
                        chat: ChatRef {
                            platform: Platform::Telegram,
                            id: (30_000 + n).to_string(),
                            kind: ChatKind::Private,
                        },
                        reply_to: None,
                        requester: "bench".into(),
                        identity: format!("telegram:{}", 30_000 + n),
                    };
                    store
                        .enqueue(
                            &NewJob {
                                key: format!("bench:{n}"),
                                user: who.id,
                                wallet: who.wallet,
                                operation: "image".into(),
                                cost: Credits::new(1),
                                payload: serde_json::to_string(&spec).expect("json"),
                            },
                            &JobLimits {
                                max_queued_per_person: u32::MAX,
                                max_running_per_person: 8,
                                ..JobLimits::default()
                            },
                        )
                        .await
                        .expect("enqueued");
                }
            })
        })
        .collect();
    for enqueuer in enqueuers {
        enqueuer.await.expect("enqueuer");
    }
    let enqueue_rate = jobs as f64 / enqueueing.elapsed().as_secs_f64();
    let addresses: Vec<String> = (0..instances)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let mut children: Vec<(Child, tempfile::TempDir)> = addresses
        .iter()
        .map(|addr| start(&env, config, addr))
        .collect();
    let http = reqwest::Client::new();
    for addr in &addresses {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = http
                .get(format!("http://{addr}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "{addr} never became ready");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let started = Instant::now();
    let before = succeeded(&store).await;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done = succeeded(&store).await;
        if done as usize >= jobs {
            break;
        }
        assert!(Instant::now() < deadline, "{done} of {jobs}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = (jobs as f64 - before as f64) / started.elapsed().as_secs_f64();
    let photos = telegram
        .sent()
        .iter()
        .filter(|m| m.method == "sendPhoto")
        .count();
    assert_eq!(photos, jobs, "each job delivered once");
    for (child, _) in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    let audit = store.audit().await.expect("audit");
    assert!(audit.is_clean(), "{audit}");
    Some((rate, enqueue_rate))
}

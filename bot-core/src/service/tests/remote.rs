//! The worker with a real HTTP provider (the Replicate client against the fake Replicate): the
//! run's id is stored at once, a restarted worker polls that run instead of paying for another,
//! cancelling and timing out stop the run at the provider, progress is shown with edits spaced
//! out, and an outage of every provider retries instead of failing.

use std::time::Duration;

use fakes::replicate::{FakeReplicate, Script};
use secrecy::SecretString;

use super::*;
use crate::jobs::Job;
use crate::providers::replicate::{Replicate, ReplicateConfig};

on_every_backend!(
    a_restarted_worker_polls_the_same_run_and_the_job_is_paid_once,
    cancelling_a_running_job_cancels_the_run_at_the_provider,
    a_run_past_its_timeout_is_cancelled_at_the_provider_and_retried,
    progress_is_shown_with_edits_at_least_the_interval_apart,
    when_every_provider_is_down_the_job_waits_and_costs_nothing,
    each_job_records_its_provider_cost_and_stats_show_the_margin,
);

fn replicate(fake: &FakeReplicate) -> Routes {
    let provider = Replicate::from_config(&ReplicateConfig {
        api_token: Some(SecretString::from("r8_token".to_string())),
        api_url: fake.url(),
        poll_ms: 10,
        ..ReplicateConfig::default()
    })
    .expect("configured");
    Routes::every(vec![Arc::new(provider)])
}

fn worker(h: &Harness, routes: Routes, config: WorkerConfig, name: &str) -> Worker {
    Worker::new(h.service.clone(), routes, config, name.into())
}

/// The job's row, once `ready` says it has reached the wanted point (within five seconds).
async fn wait_for(h: &Harness, ready: impl Fn(&Job) -> bool) -> Job {
    for _ in 0..500 {
        let id: i64 = sqlx::query_scalar("SELECT MAX(id) FROM jobs")
            .fetch_one(&mut *h.service.store().reader().await.expect("reader"))
            .await
            .expect("job id");
        let job = h
            .service
            .store()
            .job(JobId::from_db(id))
            .await
            .expect("job");
        if ready(&job) {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the job never got there");
}

/// Claims the job once its retry backoff has passed.
async fn claim_when_due(h: &Harness) -> crate::jobs::Lease {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(lease) = h
                .service
                .store()
                .claim("w", Duration::from_secs(30), &h.service.settings().jobs)
                .await
                .expect("claim")
            {
                return lease;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the retry comes due")
}

async fn a_restarted_worker_polls_the_same_run_and_the_job_is_paid_once(store: Store) {
    let fake = FakeReplicate::start("r8_token").await;
    fake.script(Script::Succeed { polls: 40 });
    let h = harness(store, settings());
    h.say("ola", "/imagine a harbour").await;
    let doomed = worker(
        &h,
        replicate(&fake),
        WorkerConfig {
            lease_seconds: 1,
            ..test_config()
        },
        "doomed",
    );
    let lease = h.claim("doomed", Duration::from_millis(1_500)).await;
    let running = tokio::spawn(async move { doomed.work(lease).await });
    let job = wait_for(&h, |job| job.provider_job_id.is_some()).await;
    assert_eq!(job.provider.as_deref(), Some("replicate"));
    running.abort();
    let _ = running.await;
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    let second = worker(&h, replicate(&fake), test_config(), "second");
    let lease = h.claim("second", Duration::from_secs(30)).await;
    second.work(lease).await;
    assert_eq!(
        fake.created().len(),
        1,
        "one paid run, polled by both workers"
    );
    assert_eq!(h.recorder.seen(|s| s.media.len()), 1, "delivered once");
    let job = h.service.store().job(job.id).await.expect("job");
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(h.balance("ola").await, 10 - 1, "charged once");
}

async fn cancelling_a_running_job_cancels_the_run_at_the_provider(store: Store) {
    let fake = FakeReplicate::start("r8_token").await;
    fake.script(Script::Hang);
    let h = harness(store, settings());
    h.say("pia", "/imagine a harbour").await;
    let w = worker(&h, replicate(&fake), test_config(), "w");
    let lease = h.claim("w", Duration::from_secs(30)).await;
    let working = tokio::spawn(async move { w.work(lease).await });
    let job = wait_for(&h, |job| job.provider_job_id.is_some()).await;
    assert!(h.say("pia", "/cancel").await.contains("it will stop"));
    tokio::time::timeout(Duration::from_secs(10), working)
        .await
        .expect("the worker stops")
        .expect("worker task");
    assert_eq!(
        fake.cancelled(),
        vec![job.provider_job_id.clone().expect("id")]
    );
    assert_eq!(h.balance("pia").await, 10);
    assert_eq!(h.recorder.seen(|s| s.media.len()), 0);
}

async fn a_run_past_its_timeout_is_cancelled_at_the_provider_and_retried(store: Store) {
    let fake = FakeReplicate::start("r8_token").await;
    fake.script(Script::Hang);
    let h = harness(store, settings());
    h.say("quinn", "/imagine a harbour").await;
    let mut config = test_config();
    config.timeouts.seconds[0] = 1;
    let w = worker(&h, replicate(&fake), config, "w");
    let lease = h.claim("w", Duration::from_secs(30)).await;
    w.work(lease).await;
    let job = wait_for(&h, |job| job.state == JobState::Queued).await;
    assert_eq!(fake.cancelled().len(), 1, "the slow run was stopped");
    assert!(
        job.failure
            .as_deref()
            .is_some_and(|f| f.contains("replicate took longer than 1s")),
        "{job:?}"
    );
    assert_eq!(h.balance("quinn").await, 10 - 1, "still held, not charged");
    // The next attempt starts a new run (the old one was cancelled) and delivers.
    let lease = claim_when_due(&h).await;
    worker(&h, replicate(&fake), test_config(), "w")
        .work(lease)
        .await;
    assert_eq!(fake.created().len(), 2);
    assert_eq!(h.recorder.seen(|s| s.media.len()), 1);
    assert_eq!(h.charged("quinn").await, (1, 0));
}

async fn progress_is_shown_with_edits_at_least_the_interval_apart(store: Store) {
    let fake = FakeReplicate::start("r8_token").await;
    fake.script(Script::Succeed { polls: 60 });
    let h = harness(store, settings());
    h.say("rui", "/imagine a harbour").await;
    let interval = Duration::from_millis(150);
    let w = worker(
        &h,
        replicate(&fake),
        WorkerConfig {
            status_edit_ms: 150,
            ..test_config()
        },
        "w",
    );
    let lease = h.claim("w", Duration::from_secs(30)).await;
    w.work(lease).await;
    // The last edit may be waiting its turn apart from the worker.
    tokio::time::sleep(interval * 2).await;
    let (edits, times) = h.recorder.seen(|s| (s.edits.clone(), s.edit_times.clone()));
    assert!(
        edits
            .iter()
            .any(|(_, t)| t.contains("running ") && t.contains('%')),
        "{edits:?}"
    );
    assert!(
        edits.last().is_some_and(|(_, t)| t.contains("done")),
        "{edits:?}"
    );
    // Sixty progress reports, but edits never closer than the interval.
    assert!(edits.len() < 30, "{} edits", edits.len());
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= interval - Duration::from_millis(5),
            "{times:?}"
        );
    }
}

async fn when_every_provider_is_down_the_job_waits_and_costs_nothing(store: Store) {
    let mut settings = settings();
    settings.jobs.max_attempts = 2;
    let h = harness(store, settings);
    h.say("sam", "/imagine a harbour").await;
    let down = worker(
        &h,
        Routes::every(vec![Arc::new(Scripted::down())]),
        test_config(),
        "w",
    );
    let lease = h.claim("w", Duration::from_secs(30)).await;
    down.work(lease).await;
    let job = wait_for(&h, |job| job.state == JobState::Queued).await;
    assert!(
        job.failure
            .as_deref()
            .is_some_and(|f| f.contains("unavailable")),
        "{job:?}"
    );
    assert_eq!(h.balance("sam").await, 10 - 1);
    // The last attempt fails for good and gives the credits back.
    let lease = claim_when_due(&h).await;
    down.work(lease).await;
    let job = h.service.store().job(job.id).await.expect("job");
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(h.balance("sam").await, 10);
}

async fn each_job_records_its_provider_cost_and_stats_show_the_margin(store: Store) {
    let fake = FakeReplicate::start("r8_token").await;
    let settings = Settings {
        admins: vec!["console:root".parse().expect("identity")],
        ..settings()
    };
    let h = harness(store.clone(), settings);
    h.say("ida", "/imagine a harbour").await;
    h.say("ida", "/imagine a harbour --hd").await;
    let w = worker(&h, replicate(&fake), test_config(), "w");
    for _ in 0..2 {
        let lease = h.claim("w", Duration::from_secs(30)).await;
        w.work(lease).await;
    }
    // A job the local preview made costs nothing at a provider, and is counted as such.
    h.say("ida", "/imagine a lantern").await;
    assert_eq!(h.drain().await, 1);
    let costs: Vec<(String, Option<String>, Option<i64>)> =
        sqlx::query_as("SELECT state, provider, provider_cost_micros FROM jobs ORDER BY id")
            .fetch_all(&mut *store.reader().await.expect("reader"))
            .await
            .expect("jobs");
    assert_eq!(
        costs,
        vec![
            ("succeeded".into(), Some("replicate".into()), Some(3_000)),
            ("succeeded".into(), Some("replicate".into()), Some(40_000)),
            ("succeeded".into(), Some("local".into()), Some(0)),
        ]
    );
    let stats = h.say("root", "/admin stats").await;
    // 1 + 2 + 1 credits at 2.4 cents (the large pack's rate) = $0.096; $0.043 at Replicate.
    assert!(
        stats.contains(
            "image: 3 done, 4 credits = $0.096, provider cost $0.043, margin $0.053 (55%)"
        ),
        "{stats}"
    );
    assert!(stats.contains("Sales: none"), "{stats}");
    assert!(store.audit().await.expect("audit").is_clean());
}

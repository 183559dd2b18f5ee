//! The façade and the worker end to end on a real store (both backends), with a recording
//! messenger standing in for the chat platform and the local provider doing the work.

use crate::UserError;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use super::{worker::Worker, *};
use crate::command::Quality;
use crate::{
    media::{MediaKind, Output, tests::png},
    on_every_backend,
    providers::{Provider, ProviderFuture, Routes, Run, local::LocalProvider},
    service::worker::WorkerConfig,
};
use tokio_util::sync::CancellationToken;

/// What the recording messenger saw.
#[derive(Debug, Default)]
struct Seen {
    texts: Vec<String>,
    edits: Vec<(String, String)>,
    edit_times: Vec<std::time::Instant>,
    media: Vec<(String, String)>,
    files: HashMap<String, Vec<u8>>,
    fail_deliveries: usize,
    /// Results wait for a turn that never comes (a platform's per-chat queue) until abandoned.
    queue_deliveries: bool,
    /// Results waiting so.
    waiting: usize,
    next_id: u64,
}

#[derive(Debug, Default, Clone)]
struct Recorder(Arc<Mutex<Seen>>);

impl Recorder {
    fn seen<T>(&self, f: impl FnOnce(&mut Seen) -> T) -> T {
        f(&mut self.0.lock().expect("lock"))
    }
}

impl Messenger for Recorder {
    fn platform(&self) -> Platform {
        Platform::Console
    }

    fn send_text<'a>(
        &'a self,
        chat: &'a ChatRef,
        _: Option<&'a str>,
        text: &'a str,
        _: &'a [Button],
    ) -> MessengerFuture<'a, MessageRef> {
        let id = self.seen(|s| {
            s.texts.push(text.to_string());
            s.next_id += 1;
            s.next_id.to_string()
        });
        Box::pin(async move {
            Ok(MessageRef {
                chat: chat.clone(),
                id,
            })
        })
    }

    fn edit_text<'a>(
        &'a self,
        message: &'a MessageRef,
        text: &'a str,
        _: &'a [Button],
    ) -> MessengerFuture<'a, ()> {
        self.seen(|s| {
            s.edits.push((message.id.clone(), text.to_string()));
            s.edit_times.push(std::time::Instant::now());
        });
        Box::pin(async { Ok(()) })
    }

    fn send_media<'a>(
        &'a self,
        chat: &'a ChatRef,
        _: Option<&'a str>,
        media: &'a Output,
        caption: &'a str,
        _: &'a [Button],
        abandon: &'a CancellationToken,
    ) -> MessengerFuture<'a, MessageRef> {
        if self.seen(|s| {
            s.waiting += usize::from(s.queue_deliveries);
            s.queue_deliveries
        }) {
            return Box::pin(async move {
                abandon.cancelled().await;
                Err(DeliveryError::Abandoned)
            });
        }
        let result = self.seen(|s| {
            if s.fail_deliveries > 0 {
                s.fail_deliveries -= 1;
                return Err(DeliveryError::Retry("429 Too Many Requests".into()));
            }
            s.media.push((media.mime.to_string(), caption.to_string()));
            s.next_id += 1;
            Ok(s.next_id.to_string())
        });
        Box::pin(async move {
            result.map(|id| MessageRef {
                chat: chat.clone(),
                id,
            })
        })
    }

    fn fetch<'a>(
        &'a self,
        attachment: &'a Attachment,
        limit: usize,
    ) -> MessengerFuture<'a, Vec<u8>> {
        let file = self.seen(|s| s.files.get(&attachment.id).cloned());
        Box::pin(async move {
            match file {
                Some(bytes) if bytes.len() > limit => {
                    Err(DeliveryError::TooLarge("too large".into()))
                }
                Some(bytes) => Ok(bytes),
                None => Err(DeliveryError::Permanent("the file is gone".into())),
            }
        })
    }
}

/// A provider that always answers the same way: never (standing for a worker stuck mid-job),
/// or with the same error.
#[derive(Debug)]
struct Scripted(&'static str, Option<crate::providers::ProviderError>);

impl Scripted {
    fn stuck() -> Scripted {
        Scripted("stuck", None)
    }

    /// Refuses every request, as a real provider does for "no face found".
    fn refuses() -> Scripted {
        Scripted(
            "refuses",
            Some(crate::providers::ProviderError::Refused(
                "No face found in the photo.".into(),
            )),
        )
    }

    /// Always down, to prove fall-through.
    fn down() -> Scripted {
        Scripted(
            "down",
            Some(crate::providers::ProviderError::Unavailable("503".into())),
        )
    }
}

impl Provider for Scripted {
    fn name(&self) -> &'static str {
        self.0
    }
    fn supports(&self, _: Operation) -> bool {
        true
    }
    fn generate<'a>(&'a self, _: Run<'a>) -> ProviderFuture<'a> {
        match self.1.clone() {
            None => Box::pin(std::future::pending()),
            Some(error) => Box::pin(async move { Err(error) }),
        }
    }
}

/// The offline provider behind a gate: each generation waits until the test opens it.
#[derive(Debug, Default)]
struct Gated {
    open: tokio::sync::Notify,
    inner: LocalProvider,
}

impl Provider for Gated {
    fn name(&self) -> &'static str {
        "gated"
    }
    fn supports(&self, _: Operation) -> bool {
        true
    }
    fn generate<'a>(&'a self, run: Run<'a>) -> ProviderFuture<'a> {
        Box::pin(async move {
            self.open.notified().await;
            self.inner.generate(run).await
        })
    }
}

struct Harness {
    service: Arc<Service>,
    recorder: Recorder,
    worker: Worker,
}

fn settings() -> Settings {
    Settings {
        welcome_credits: Credits::new(10),
        ..Settings::default()
    }
}

fn harness(store: Store, settings: Settings) -> Harness {
    let recorder = Recorder::default();
    let service = Arc::new(Service::new(
        store,
        settings,
        vec![Arc::new(recorder.clone())],
    ));
    let providers = Routes::every(vec![
        Arc::new(Scripted::down()),
        Arc::new(LocalProvider::default()),
    ]);
    let worker = Worker::new(
        service.clone(),
        providers,
        test_config(),
        "test-worker".into(),
    );
    Harness {
        service,
        recorder,
        worker,
    }
}

/// Workers as configured, except that status edits are not spaced out.
fn test_config() -> WorkerConfig {
    WorkerConfig {
        status_edit_ms: 0,
        ..WorkerConfig::default()
    }
}

static KEY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn request(name: &str, text: &str, attachments: &[&str]) -> Request {
    Request {
        identity: format!("console:{name}").parse().expect("identity"),
        name: name.into(),
        chat: ChatRef {
            platform: Platform::Console,
            id: name.into(),
            kind: ChatKind::Private,
        },
        message_id: None,
        key: format!(
            "k{}",
            KEY.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ),
        input: Input::Text(text.into()),
        attachments: attachments
            .iter()
            .map(|id| Attachment {
                id: id.to_string(),
                size: None,
            })
            .collect(),
    }
}

impl Harness {
    async fn say(&self, name: &str, text: &str) -> String {
        self.send(request(name, text, &[])).await
    }

    async fn send(&self, request: Request) -> String {
        self.service
            .answer(request)
            .await
            .map(|r| r.text)
            .unwrap_or_default()
    }

    /// Claims the next job for `worker`; panics when there is none.
    async fn claim(&self, worker: &str, lease: std::time::Duration) -> crate::jobs::Lease {
        self.service
            .store()
            .claim(worker, lease, &self.service.settings().jobs)
            .await
            .expect("claim")
            .expect("a job")
    }

    /// Runs every job that is ready.
    async fn drain(&self) -> usize {
        let mut ran = 0;
        while let Some(lease) = self
            .service
            .store()
            .claim(
                "test-worker",
                std::time::Duration::from_secs(30),
                &self.service.settings().jobs,
            )
            .await
            .expect("claim")
        {
            self.worker.work(lease).await;
            ran += 1;
        }
        ran
    }

    /// What `name` has been charged: (posted, still held).
    async fn charged(&self, name: &str) -> (u64, u64) {
        let identity: Identity = format!("console:{name}").parse().expect("identity");
        let user = self
            .service
            .store()
            .find_user(&identity)
            .await
            .expect("lookup")
            .expect("exists");
        let balance = self
            .service
            .store()
            .account_balance(user.wallet)
            .await
            .expect("balance");
        (balance.debits_posted.get(), balance.debits_pending.get())
    }

    async fn balance(&self, name: &str) -> u64 {
        let identity: Identity = format!("console:{name}").parse().expect("identity");
        let user = self
            .service
            .store()
            .find_user(&identity)
            .await
            .expect("lookup")
            .expect("exists");
        self.service
            .store()
            .account_balance(user.wallet)
            .await
            .expect("balance")
            .available()
            .get()
    }
}

on_every_backend!(
    account_answers_are_private_and_a_generation_refusal_too,
    forget_deletes_prompts_and_keeps_the_ledger,
    admin_commands_are_for_admins_only_and_every_action_is_audited,
    a_banned_person_gets_a_notice_and_their_open_jobs_end_without_charge,
    the_real_card_fee_replaces_the_estimate_once_stripe_tells_it,
    link_shows_a_code_and_the_other_account_joins_with_it,
    a_payment_notice_waits_for_a_messenger_and_is_sent_once,
    a_frozen_wallet_cannot_generate_or_buy,
    start_welcomes_once_with_the_welcome_grant_and_records_the_terms,
    each_operation_charges_exactly_its_price_once_delivered,
    insufficient_credits_offer_buy_and_hold_nothing,
    costly_operations_are_quoted_and_a_quote_works_once,
    policy_refusals_hold_nothing_and_are_counted,
    bad_or_missing_uploads_cost_nothing,
    a_terms_change_is_told_once,
    a_result_is_not_charged_until_it_is_delivered,
    cancelling_a_queued_job_gives_the_credits_back,
    only_the_requester_can_press_their_buttons,
    a_worker_killed_mid_job_leaves_it_to_another_that_finishes_it_once,
    a_result_waiting_its_turn_at_shutdown_is_handed_back_unsent_and_delivered_once,
    a_worker_that_lost_its_lease_while_making_does_not_deliver,
    a_refusal_ends_the_job_without_trying_other_providers,
    a_provider_that_runs_past_its_operation_timeout_fails_the_job_without_charge,
    cancelling_a_running_job_stops_its_worker_within_seconds_and_charges_nothing,
);

async fn cancelling_a_running_job_stops_its_worker_within_seconds_and_charges_nothing(
    store: Store,
) {
    let h = harness(store, settings());
    let stuck = Worker::new(
        h.service.clone(),
        Routes::every(vec![Arc::new(Scripted::stuck()) as Arc<dyn Provider>]),
        test_config(),
        "w".into(),
    );
    h.say("ned", "/imagine a fox").await;
    let lease = h.claim("w", std::time::Duration::from_secs(60)).await;
    let working = tokio::spawn(async move { stuck.work(lease).await });
    assert!(
        h.say("ned", "/cancel")
            .await
            .contains("is running; it will stop")
    );
    tokio::time::timeout(std::time::Duration::from_secs(10), working)
        .await
        .expect("the worker stops within seconds")
        .expect("worker task");
    let edits = h.recorder.seen(|s| s.edits.clone());
    assert!(
        edits
            .iter()
            .any(|(_, t)| t.contains("failed, no credits taken: cancelled at your request")),
        "{edits:?}"
    );
    assert_eq!(h.balance("ned").await, 10);
}

async fn a_provider_that_runs_past_its_operation_timeout_fails_the_job_without_charge(
    store: Store,
) {
    let mut settings = settings();
    settings.jobs.max_attempts = 1;
    let h = harness(store, settings);
    let mut config = test_config();
    config.timeouts.seconds[0] = 1;
    let stuck = Worker::new(
        h.service.clone(),
        Routes::every(vec![Arc::new(Scripted::stuck()) as Arc<dyn Provider>]),
        config,
        "w".into(),
    );
    h.say("max", "/imagine a fox").await;
    let lease = h.claim("w", std::time::Duration::from_secs(30)).await;
    stuck.work(lease).await;
    let edits = h.recorder.seen(|s| s.edits.clone());
    assert!(
        edits
            .iter()
            .any(|(_, t)| t.contains("failed, no credits taken: stuck took longer than 1s")),
        "{edits:?}"
    );
    assert_eq!(h.balance("max").await, 10);
}

async fn start_welcomes_once_with_the_welcome_grant_and_records_the_terms(store: Store) {
    let h = harness(store, settings());
    let welcome = h.say("ann", "/start").await;
    assert!(welcome.contains("You have 10 credits"), "{welcome}");
    assert!(
        welcome.contains("local preview"),
        "the offline provider is disclosed: {welcome}"
    );
    h.say("ann", "/start").await;
    assert_eq!(
        h.balance("ann").await,
        10,
        "welcome credits are granted once"
    );
    let identity: Identity = "console:ann".parse().expect("identity");
    let user = h
        .service
        .store()
        .find_user(&identity)
        .await
        .expect("lookup")
        .expect("exists");
    assert_eq!(
        user.terms.map(|t| t.version),
        Some("2026-04-06".to_string())
    );
    assert!(h.say("ann", "/help").await.contains("/imagine <prompt>"));
    assert!(
        h.say("ann", "/balance")
            .await
            .contains("Your balance: 10 credits.")
    );
}

async fn each_operation_charges_exactly_its_price_once_delivered(store: Store) {
    let mut settings = settings();
    settings.welcome_credits = Credits::new(100);
    settings.pricing.confirm_from = 1_000;
    let h = harness(store, settings);
    h.recorder.seen(|s| {
        s.files.insert("photo".into(), png(48, 32));
        s.files.insert("face".into(), png(20, 20));
    });
    let cases: &[(&str, &[&str], u64)] = &[
        ("/imagine a fox", &[], 1),
        ("/imagine a fox --hd", &[], 2),
        ("/enhance", &["photo"], 1),
        ("/removebg", &["photo"], 1),
        ("/faceswap", &["face", "photo"], 2),
        ("/portrait anime", &["photo"], 3),
        ("/video waves", &[], 10),
        ("/music rain --seconds 1", &[], 5),
    ];
    let mut expected = 100;
    for (text, attachments, price) in cases {
        let reply = h.send(request("bob", text, attachments)).await;
        assert_eq!(
            reply, "",
            "{text}: the status message goes through the messenger"
        );
        assert_eq!(
            h.balance("bob").await,
            expected - price,
            "{text}: held at once"
        );
        assert_eq!(h.drain().await, 1, "{text}");
        expected -= price;
        assert_eq!(h.balance("bob").await, expected, "{text}: charged once");
    }
    let (media, edits) = h.recorder.seen(|s| (s.media.clone(), s.edits.clone()));
    assert_eq!(media.len(), cases.len());
    assert!(media.iter().any(|(mime, _)| mime == "audio/wav"));
    assert!(media.iter().any(|(mime, _)| mime == "image/gif"));
    assert!(
        media[0].1.contains("“a fox”") && media[0].1.contains("balance 99 credits"),
        "{}",
        media[0].1
    );
    assert!(
        edits.iter().all(|(_, text)| !text.contains("queued"))
            || edits.iter().any(|(_, t)| t.contains("done"))
    );
    assert!(
        h.say("bob", "/history")
            .await
            .contains("succeeded (1 credits)")
    );
}

async fn insufficient_credits_offer_buy_and_hold_nothing(store: Store) {
    let mut settings = settings();
    settings.welcome_credits = Credits::new(1);
    let h = harness(store, settings);
    let reply = h
        .service
        .handle(request("cat", "/imagine a fox --4k", &[]))
        .await;
    let error = reply.expect_err("cannot pay");
    let words = h
        .service
        .reply_for_error(error.user().expect("a person's error"));
    assert_eq!(
        words.text,
        "This costs 4 credits, and your balance is 1 credit. Buy credits to continue."
    );
    assert_eq!(words.buttons[0].press, Press::Action(Action::Buy));
    assert_eq!(h.drain().await, 0);
    assert_eq!(h.balance("cat").await, 1);
    let packs = h
        .service
        .handle(request("cat", "/buy", &[]))
        .await
        .expect("packs")
        .expect("a reply");
    assert_eq!(
        packs.buttons.len(),
        h.service.settings().pricing.packs.len()
    );
    assert_eq!(packs.buttons[0].press, Press::Action(Action::Pack(1)));
    let mut press = request("cat", "", &[]);
    press.input = Input::Action(Action::Pack(1));
    assert!(h.send(press).await.contains("payments are not configured"));
    assert_eq!(h.balance("cat").await, 1);
}

async fn costly_operations_are_quoted_and_a_quote_works_once(store: Store) {
    let mut settings = settings();
    settings.welcome_credits = Credits::new(12);
    let h = harness(store, settings);
    let quote = h
        .service
        .handle(request("dan", "/video waves", &[]))
        .await
        .expect("quote")
        .expect("a reply");
    assert_eq!(
        quote.text,
        "A 5-second video costs 10 credits (10 credits per 5 seconds, started blocks); your balance 12 → 2."
    );
    assert_eq!(h.balance("dan").await, 12, "nothing is held for a quote");
    let Press::Action(Action::Confirm(id)) = quote.buttons[0].press else {
        panic!("{quote:?}")
    };
    let confirm = |action| {
        let mut r = request("dan", "", &[]);
        r.input = Input::Action(action);
        r
    };
    assert_eq!(h.send(confirm(Action::Confirm(id))).await, "");
    assert_eq!(h.balance("dan").await, 2);
    assert!(
        h.send(confirm(Action::Confirm(id)))
            .await
            .contains("already used")
    );
    assert!(
        h.send(confirm(Action::Dismiss(id)))
            .await
            .contains("already used")
    );
    assert_eq!(h.drain().await, 1);
    assert_eq!(h.balance("dan").await, 2);
}

async fn policy_refusals_hold_nothing_and_are_counted(store: Store) {
    let h = harness(store, settings());
    for _ in 0..2 {
        let reply = h.say("eve", "/imagine a beheading scene").await;
        assert!(
            reply.contains("§3.3") && reply.contains("No credits were charged"),
            "{reply}"
        );
    }
    assert_eq!(h.balance("eve").await, 10);
    let refusals: i64 = sqlx::query_scalar("SELECT policy_refusals FROM users")
        .fetch_one(&mut *h.service.store().reader().await.expect("reader"))
        .await
        .expect("count");
    assert_eq!(refusals, 2);
}

async fn bad_or_missing_uploads_cost_nothing(store: Store) {
    let h = harness(store, settings());
    assert!(h.say("fay", "/enhance").await.contains("with a photo"));
    let mut bomb = png(1, 1);
    bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    h.recorder.seen(|s| {
        s.files.insert("pdf".into(), b"%PDF-1.4".to_vec());
        s.files.insert("bomb".into(), bomb);
    });
    for file in ["pdf", "bomb", "missing"] {
        h.send(request("fay", "/enhance", &[file])).await;
        assert_eq!(h.drain().await, 1);
        assert_eq!(h.balance("fay").await, 10, "{file}: voided");
    }
    let mut big = request("fay", "/enhance", &["huge"]);
    big.attachments[0].size = Some(25 * 1024 * 1024);
    assert!(h.send(big).await.contains("the limit is 20 MB"));
    let edits = h.recorder.seen(|s| s.edits.clone());
    assert!(
        edits
            .iter()
            .any(|(_, t)| t
                .contains("failed, no credits taken: That is not a JPEG, PNG or WebP image.")),
        "{edits:?}"
    );
    assert!(
        edits.iter().any(|(_, t)| t.contains("megapixels")),
        "{edits:?}"
    );
}

async fn a_terms_change_is_told_once(store: Store) {
    let h = harness(store.clone(), settings());
    h.say("gus", "/balance").await;
    let mut newer = settings();
    newer.terms_version = "2026-12-01".into();
    let h = harness(store, newer);
    let first = h.say("gus", "/balance").await;
    assert!(
        first.starts_with("Our terms of service changed (version 2026-12-01)"),
        "{first}"
    );
    let second = h.say("gus", "/balance").await;
    assert!(!second.contains("terms of service changed"), "{second}");
}

async fn a_result_is_not_charged_until_it_is_delivered(store: Store) {
    let h = harness(store, settings());
    h.recorder.seen(|s| s.fail_deliveries = 1);
    h.say("hal", "/imagine a fox").await;
    assert_eq!(h.drain().await, 1);
    assert_eq!(h.charged("hal").await, (0, 1), "still held, not charged");
    crate::store::execute_unchecked(h.service.store(), "UPDATE jobs SET run_after = $1", 0)
        .await
        .expect("due");
    assert_eq!(h.drain().await, 1);
    assert_eq!(
        h.charged("hal").await,
        (1, 0),
        "charged once, after delivery"
    );
    assert_eq!(h.recorder.seen(|s| s.media.len()), 1);
}

async fn cancelling_a_queued_job_gives_the_credits_back(store: Store) {
    let h = harness(store, settings());
    h.say("ida", "/imagine a fox --4k").await;
    assert_eq!(h.balance("ida").await, 6);
    assert!(h.say("ida", "/cancel").await.contains("cancelled"));
    assert_eq!(h.balance("ida").await, 10);
    assert_eq!(h.drain().await, 0);
    assert!(h.say("ida", "/cancel").await.contains("no job waiting"));
}

async fn only_the_requester_can_press_their_buttons(store: Store) {
    let h = harness(store, settings());
    h.say("jon", "/imagine a fox").await;
    h.drain().await;
    let job: i64 = sqlx::query_scalar("SELECT id FROM jobs")
        .fetch_one(&mut *h.service.store().reader().await.expect("reader"))
        .await
        .expect("job");
    let mut press = request("kim", "", &[]);
    press.input = Input::Action(Action::Regenerate(JobId::from_db(job)));
    assert!(h.send(press).await.contains("Only the person who asked"));
    let mut press = request("jon", "", &[]);
    press.input = Input::Action(Action::Upscale(JobId::from_db(job), Quality::Hd));
    h.send(press).await;
    assert_eq!(h.balance("jon").await, 10 - 1 - 2);
    h.drain().await;
    let media = h.recorder.seen(|s| s.media.clone());
    assert!(media[1].1.contains("HD image"), "{media:?}");
}

async fn a_worker_killed_mid_job_leaves_it_to_another_that_finishes_it_once(store: Store) {
    let h = harness(store, settings());
    h.say("kit", "/imagine a fox").await;
    let stuck = Worker::new(
        h.service.clone(),
        Routes::every(vec![Arc::new(Scripted::stuck()) as Arc<dyn Provider>]),
        WorkerConfig {
            lease_seconds: 1,
            ..test_config()
        },
        "doomed".into(),
    );
    let lease = h
        .claim("doomed", std::time::Duration::from_millis(1_500))
        .await;
    let running = tokio::spawn(async move { stuck.work(lease).await });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    running.abort();
    let _ = running.await;
    assert_eq!(h.drain().await, 0, "the lease has not expired yet");
    // Past the lease and the killed worker's renewals (every second): a renewal still running
    // would have pushed the lease beyond this point.
    tokio::time::sleep(std::time::Duration::from_millis(2_600)).await;
    assert_eq!(h.drain().await, 1, "another worker takes the expired lease");
    assert_eq!(h.drain().await, 0);
    assert_eq!(h.recorder.seen(|s| s.media.len()), 1, "delivered once");
    assert_eq!(h.charged("kit").await, (1, 0), "posted once");
}

/// Shutting down with a result made and still waiting its turn behind the platform's limits:
/// the result is abandoned unsent and the job goes back to the queue with its hold, so the
/// next worker delivers it once and posts it once.
async fn a_result_waiting_its_turn_at_shutdown_is_handed_back_unsent_and_delivered_once(
    store: Store,
) {
    let h = harness(store, settings());
    h.recorder.seen(|s| s.queue_deliveries = true);
    h.say("uma", "/imagine a fox").await;
    let stopping = Worker::new(
        h.service.clone(),
        Routes::every(vec![Arc::new(LocalProvider::default()) as Arc<dyn Provider>]),
        WorkerConfig {
            hand_back_seconds: 0,
            ..test_config()
        },
        "stopping".into(),
    );
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(stopping.run(shutdown.clone()));
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while h.recorder.seen(|s| s.waiting) == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the result waits its turn");
    shutdown.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(10), running)
        .await
        .expect("the worker stops at once")
        .expect("worker task");
    assert_eq!(h.recorder.seen(|s| s.media.len()), 0, "nothing was sent");
    assert_eq!(h.charged("uma").await, (0, 1), "still held, not posted");
    h.recorder.seen(|s| s.queue_deliveries = false);
    assert_eq!(h.drain().await, 1, "the job is back in the queue");
    assert_eq!(h.recorder.seen(|s| s.media.len()), 1, "delivered once");
    assert_eq!(h.charged("uma").await, (1, 0), "posted once");
}

/// A worker that lost its job to another while making the result (too starved to renew in
/// time) does not deliver it: the other worker does, once.
async fn a_worker_that_lost_its_lease_while_making_does_not_deliver(store: Store) {
    let h = harness(store, settings());
    h.say("ivo", "/imagine a fox").await;
    let gate = Arc::new(Gated::default());
    let slow = Worker::new(
        h.service.clone(),
        Routes::every(vec![gate.clone() as Arc<dyn Provider>]),
        test_config(),
        "starved".into(),
    );
    let lease = h.claim("starved", std::time::Duration::from_secs(30)).await;
    let job = lease.job.id;
    let working = tokio::spawn(async move { slow.work(lease).await });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // Its lease lapsed and another worker took the job meanwhile.
    crate::store::testing::execute(
        h.service.store(),
        "UPDATE jobs SET lease_owner = 'other' WHERE id = $1",
        &[job.get()],
    )
    .await;
    gate.open.notify_one();
    tokio::time::timeout(std::time::Duration::from_secs(10), working)
        .await
        .expect("the worker gives up")
        .expect("worker task");
    assert_eq!(
        h.recorder.seen(|s| s.media.len()),
        0,
        "not delivered by the loser"
    );
    assert_eq!(h.charged("ivo").await, (0, 1), "still held for the winner");
}

async fn a_refusal_ends_the_job_without_trying_other_providers(store: Store) {
    let h = harness(store, settings());
    let refusing = Worker::new(
        h.service.clone(),
        Routes::every(vec![
            Arc::new(Scripted::refuses()) as Arc<dyn Provider>,
            Arc::new(LocalProvider::default()),
        ]),
        test_config(),
        "w".into(),
    );
    h.say("lea", "/imagine a fox").await;
    let lease = h.claim("w", std::time::Duration::from_secs(30)).await;
    refusing.work(lease).await;
    assert_eq!(
        h.recorder.seen(|s| s.media.len()),
        0,
        "the local provider was not asked"
    );
    let edits = h.recorder.seen(|s| s.edits.clone());
    assert!(
        edits
            .iter()
            .any(|(_, t)| t.contains("failed, no credits taken: No face found in the photo.")),
        "{edits:?}"
    );
    assert_eq!(h.balance("lea").await, 10);
}

#[test]
fn prices_read_as_people_write_them() {
    assert_eq!(crate::payments::format_price(500, "usd"), "$5");
    assert_eq!(crate::payments::format_price(1_050, "usd"), "$10.50");
    assert_eq!(crate::payments::format_price(1_205, "eur"), "12.05 EUR");
}

#[test]
fn actions_fit_in_telegram_callback_data_and_round_trip() {
    for action in [
        Action::Confirm(i64::MAX),
        Action::Dismiss(1),
        Action::Cancel(JobId::from_db(i64::MAX)),
        Action::Regenerate(JobId::from_db(5)),
        Action::Upscale(JobId::from_db(5), Quality::Hd),
        Action::Upscale(JobId::from_db(5), Quality::FourK),
        Action::Buy,
        Action::Pack(1),
        Action::Pack(u8::MAX),
    ] {
        let text = action.encode();
        assert!(text.len() <= 24, "{text}");
        assert_eq!(Action::decode(&text), Some(action));
    }
    for junk in ["", "x:1", "c:", "c:-4", "c:abc", "q:0", "p:0", "p:256"] {
        assert_eq!(Action::decode(junk), None, "{junk}");
    }
}

#[test]
fn an_output_shows_its_size_not_its_bytes_in_debug() {
    let output = Output {
        kind: MediaKind::Audio,
        mime: "audio/wav",
        file_name: "x.wav".into(),
        bytes: vec![1, 2],
        dimensions: None,
    };
    assert!(format!("{output:?}").contains("<2 bytes>"));
}

mod remote;

async fn paid_purchase(store: &Store, name: &str) -> User {
    use crate::payments::{NewPurchase, PaymentEvent, Rail};
    let user = crate::store::testing::person(store, name, 0).await;
    let purchase = store
        .create_purchase(&NewPurchase {
            user: user.id,
            payer: format!("console:{name}"),
            pack: "small".into(),
            credits: Credits::new(150),
            rail: Rail::Stripe,
            amount: 500,
            currency: "usd".into(),
            chat: request(name, "/buy", &[]).chat,
            fee_estimate: 44,
        })
        .await
        .expect("purchase");
    store
        .apply_stripe_event(
            &format!("evt_{name}"),
            "checkout.session.completed",
            Some(PaymentEvent::Paid {
                purchase: purchase.id,
                session: "cs_1".into(),
                payment_intent: None,
            }),
        )
        .await
        .expect("credited");
    user
}

async fn a_payment_notice_waits_for_a_messenger_and_is_sent_once(store: Store) {
    paid_purchase(&store, "ann").await;
    // A process without the buyer's platform (another instance, or before a restart) leaves
    // the notice alone…
    let elsewhere = Service::new(store.clone(), settings(), Vec::new());
    assert_eq!(elsewhere.deliver_notices().await.expect("runs"), 0);
    // …and the one with it sends it, once.
    let h = harness(store.clone(), settings());
    assert_eq!(h.service.deliver_notices().await.expect("runs"), 1);
    assert_eq!(h.service.deliver_notices().await.expect("runs"), 0);
    let texts = h.recorder.seen(|s| s.texts.clone());
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0].contains("150 credits added"), "{texts:?}");
    assert_eq!(store.pending_notices().await.expect("count"), 0);
}

async fn a_frozen_wallet_cannot_generate_or_buy(store: Store) {
    use crate::payments::PaymentEvent;
    let user = paid_purchase(&store, "bo").await;
    store
        .apply_stripe_event(
            "evt_dispute",
            "charge.dispute.created",
            Some(PaymentEvent::Disputed {
                purchase: Some(PurchaseId::from_raw(1)),
                payment_intent: None,
                charge: "ch_1".into(),
            }),
        )
        .await
        .expect("applied");
    assert!(store.user(user.id).await.expect("user").frozen_at.is_some());
    let h = harness(store.clone(), settings());
    for text in ["/imagine a fox", "/buy small", "/refund"] {
        let error = h
            .service
            .handle(request("bo", text, &[]))
            .await
            .expect_err("frozen");
        assert!(
            matches!(error, Error::User(UserError::Frozen)),
            "{text}: {error:?}"
        );
        assert!(
            h.service
                .reply_for_error(error.user().expect("a person's error"))
                .text
                .contains("frozen")
        );
    }
    assert_eq!(crate::store::testing::available(&store, &user).await, 0);
}

async fn link_shows_a_code_and_the_other_account_joins_with_it(store: Store) {
    let h = harness(store.clone(), settings());
    let shown = h
        .service
        .handle(request("ann", "/link", &[]))
        .await
        .expect("handled")
        .expect("a reply");
    assert!(
        shown.text.contains("Linked now: console:ann"),
        "{}",
        shown.text
    );
    let code = shown
        .text
        .split_whitespace()
        .nth(3)
        .map(|w| {
            w.trim_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_string()
        })
        .expect("the code");
    assert_eq!(code.len(), 8, "{}", shown.text);
    // Bob (10 welcome credits) joins Ann (10 welcome credits) with her code.
    let joined = h
        .service
        .handle(request("bob", &format!("/link {code}"), &[]))
        .await
        .expect("handled")
        .expect("a reply");
    assert!(
        joined.text.contains("10 credits moved over"),
        "{}",
        joined.text
    );
    assert!(
        joined.text.contains("Balance: 20 credits"),
        "{}",
        joined.text
    );
    for name in ["ann", "bob"] {
        let balance = h
            .service
            .handle(request(name, "/balance", &[]))
            .await
            .expect("handled")
            .expect("a reply");
        assert!(
            balance.text.contains("20 credits"),
            "{name}: {}",
            balance.text
        );
    }
    let again = h
        .service
        .handle(request("cy", &format!("/link {code}"), &[]))
        .await
        .expect_err("used");
    assert!(
        h.service
            .reply_for_error(again.user().expect("a person's error"))
            .text
            .contains("already used")
    );
    let unlinked = h
        .service
        .handle(request("ann", "/unlink console:bob", &[]))
        .await
        .expect("handled")
        .expect("a reply");
    assert!(
        unlinked.text.contains("console:bob is unlinked"),
        "{}",
        unlinked.text
    );
}

/// Stripe as the card rail sees it, reporting a fixed fee for every charge.
#[derive(Debug)]
struct CardFees(u64);

impl PaymentRail for CardFees {
    fn rail(&self) -> Rail {
        Rail::Stripe
    }

    fn checkout<'a>(
        &'a self,
        _: &'a crate::payments::Purchase,
        _: &'a str,
    ) -> crate::payments::PaymentFuture<'a, crate::payments::Checkout> {
        Box::pin(async {
            Err(crate::payments::PaymentError::Unavailable(
                "not here".into(),
            ))
        })
    }

    fn refund<'a>(
        &'a self,
        _: &'a crate::payments::Purchase,
        _: u64,
        _: &'a str,
    ) -> crate::payments::PaymentFuture<'a, String> {
        Box::pin(async {
            Err(crate::payments::PaymentError::Unavailable(
                "not here".into(),
            ))
        })
    }

    fn fee<'a>(
        &'a self,
        purchase: &'a crate::payments::Purchase,
    ) -> crate::payments::PaymentFuture<'a, Option<u64>> {
        let known = purchase.stripe_balance_transaction.is_some();
        let fee = self.0;
        Box::pin(async move { Ok(known.then_some(fee)) })
    }
}

async fn the_real_card_fee_replaces_the_estimate_once_stripe_tells_it(store: Store) {
    let user = paid_purchase(&store, "fay").await;
    let service =
        Service::new(store.clone(), settings(), Vec::new()).with_rail(Arc::new(CardFees(37)));
    // No charge event yet: nothing to ask Stripe about.
    assert_eq!(service.refresh_fees().await.expect("runs"), 0);
    let purchase = store.purchases(user.id).await.expect("list").remove(0);
    store
        .apply_stripe_event(
            "evt_charge",
            "charge.succeeded",
            Some(crate::payments::PaymentEvent::Charge {
                purchase: Some(purchase.id),
                payment_intent: None,
                charge: "ch_fay".into(),
                balance_transaction: Some("txn_fay".into()),
                amount_refunded: 0,
            }),
        )
        .await
        .expect("applied");
    assert_eq!(service.refresh_fees().await.expect("runs"), 1);
    assert_eq!(service.refresh_fees().await.expect("runs"), 0);
    let now = store
        .purchase(purchase.id)
        .await
        .expect("read")
        .expect("there");
    assert_eq!((now.fee, now.fee_estimated), (37, false));
    // Refunds use it: (500 − 37) × 150 ÷ 150.
    assert_eq!(
        store.refundable(user.id, 0).await.expect("list")[0].amount,
        463
    );
}

fn admin_settings() -> Settings {
    Settings {
        admins: vec!["console:root".parse().expect("identity")],
        ..settings()
    }
}

async fn admin_commands_are_for_admins_only_and_every_action_is_audited(store: Store) {
    let h = harness(store.clone(), admin_settings());
    h.say("amy", "/start").await;
    // Not an admin: the command does not exist, and nothing is recorded.
    let refused = h.say("eve", "/admin grant console:eve 500 please").await;
    assert!(refused.contains("Unknown command /admin"), "{refused}");
    assert!(store.admin_actions(10).await.expect("log").is_empty());
    let balance = |name: &'static str| {
        let h = &h;
        async move { h.say(name, "/balance").await }
    };
    assert!(balance("eve").await.contains("Your balance: 10 credits"));

    let granted = h
        .say(
            "root",
            "/admin grant console:amy 25 goodwill for the outage",
        )
        .await;
    assert!(granted.contains("Their balance: 35 credits"), "{granted}");
    // The same request again (a redelivered update) moves nothing twice.
    let again = request(
        "root",
        "/admin grant console:amy 25 goodwill for the outage",
        &[],
    );
    let key = again.key.clone();
    h.send(again.clone()).await;
    h.send(Request { key, ..again }).await;
    assert!(balance("amy").await.contains("Your balance: 60 credits"));
    let took = h.say("root", "/admin take console:amy 100 typo").await;
    assert!(took.contains("nothing was taken"), "{took}");
    let took = h
        .say("root", "/admin take console:amy 60 test credits")
        .await;
    assert!(took.contains("Their balance: 0 credits"), "{took}");
    let lookup = h.say("root", "/admin lookup console:amy").await;
    assert!(lookup.contains("console:amy"), "{lookup}");
    assert!(lookup.contains("0 credits available"), "{lookup}");
    let unknown = h.say("root", "/admin lookup console:nobody").await;
    assert!(unknown.contains("No one"), "{unknown}");
    let frozen = h.say("root", "/admin freeze console:amy chargeback").await;
    assert!(frozen.contains("frozen"), "{frozen}");
    assert!(h.say("amy", "/imagine a fox").await.contains("frozen"));
    h.say("root", "/admin unfreeze console:amy").await;
    let stats = h.say("root", "/admin stats 7").await;
    assert!(stats.contains("3 people"), "{stats}");
    // Welcome credits (3 × 10) and the two grants (2 × 25).
    assert!(stats.contains("granted 80"), "{stats}");
    let usage = h.say("root", "/admin fly").await;
    assert!(usage.contains("Usage"), "{usage}");

    let log = store.admin_actions(50).await.expect("log");
    let actions: Vec<&str> = log.iter().rev().map(|a| a.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "grant", "grant", "take", "take", "lookup", "lookup", "freeze", "unfreeze", "stats"
        ],
        "every action once, in order; the redelivered grant is not a second action"
    );
    assert!(log.iter().all(|a| a.actor == "console:root"));
    assert!(
        log.iter()
            .any(|a| a.detail.contains("goodwill for the outage"))
    );
    assert!(
        log.iter().any(|a| a.detail.starts_with("refused")),
        "the refused take is recorded"
    );
    let audit = store.audit().await.expect("audit");
    assert!(audit.is_clean(), "{audit}");
}

async fn a_banned_person_gets_a_notice_and_their_open_jobs_end_without_charge(store: Store) {
    let h = harness(store.clone(), admin_settings());
    h.say("bea", "/imagine a quiet lake").await;
    h.say("bea", "/imagine a loud city").await;
    let banned = h.say("root", "/admin ban console:bea spam").await;
    assert!(banned.contains("2 open job(s) cancelled"), "{banned}");
    assert_eq!(h.drain().await, 0, "nothing of theirs runs");
    let notice = h.say("bea", "/imagine again").await;
    assert!(notice.contains("suspended"), "{notice}");
    h.say("root", "/admin unban console:bea").await;
    assert!(
        h.say("bea", "/balance")
            .await
            .contains("Your balance: 10 credits")
    );
    let audit = store.audit().await.expect("audit");
    assert!(audit.is_clean(), "{audit}");
}

async fn forget_deletes_prompts_and_keeps_the_ledger(store: Store) {
    let h = harness(store.clone(), settings());
    h.say("fin", "/imagine a secret garden").await;
    // Someone else's job, made before the forgetting, must keep its prompt.
    h.say("gil", "/imagine my own secret").await;
    h.drain().await;
    h.say("fin", "/imagine another secret").await;
    let press = |action| Request {
        input: Input::Action(action),
        ..request("fin", "", &[])
    };
    // Refused while a job is open.
    let asked = h.say("fin", "/forget").await;
    assert!(asked.contains("cannot be undone"), "{asked}");
    let refused = h.send(press(Action::Forget)).await;
    assert!(refused.contains("queued or running"), "{refused}");
    h.drain().await;
    let done = h.send(press(Action::Forget)).await;
    assert!(done.contains("2 past generation(s)"), "{done}");
    let user = |name: &str| {
        let store = store.clone();
        let identity = format!("console:{name}").parse().expect("identity");
        async move {
            store
                .find_user(&identity)
                .await
                .expect("find")
                .expect("known")
        }
    };
    let jobs = store
        .recent_jobs(user("fin").await.id, 10)
        .await
        .expect("jobs");
    assert_eq!(jobs.len(), 2);
    for (job, _) in jobs {
        assert!(!job.payload.contains("secret"), "{}", job.payload);
        let again = h.send(press(Action::Regenerate(job.id))).await;
        assert!(again.contains("forgotten"), "{again}");
    }
    // Someone else's data is untouched; the history and the balance remain.
    let history = h.say("fin", "/history").await;
    assert!(history.contains("succeeded"), "{history}");
    assert!(
        h.say("fin", "/balance")
            .await
            .contains("Your balance: 8 credits")
    );
    let kept = store
        .recent_jobs(user("gil").await.id, 10)
        .await
        .expect("jobs");
    assert!(kept[0].0.payload.contains("my own secret"));
    let audit = store.audit().await.expect("audit");
    assert!(audit.is_clean(), "{audit}");
}

#[tokio::test]
async fn an_internal_fault_reaches_a_person_only_as_an_apology_with_a_reference() {
    let db = crate::store::testing::TestDb::new(crate::Backend::Sqlite, "service_internal_fault")
        .await
        .expect("SQLite is always available");
    let store = db.store().clone();
    let h = harness(store.clone(), Settings::default());
    assert!(h.say("amy", "/balance").await.contains("Your balance"));
    // The database goes away under the service: a fault of ours, not the person's.
    store.close().await;
    let reply = h
        .service
        .answer(request("amy", "/balance", &[]))
        .await
        .expect("an answer");
    assert!(
        reply
            .text
            .starts_with("Sorry, something went wrong on our side (reference "),
        "{}",
        reply.text
    );
    assert_eq!(reply.visibility, Visibility::Requester);
    let lower = reply.text.to_lowercase();
    for internal in ["pool", "sqlx", "database", "closed"] {
        assert!(!lower.contains(internal), "{internal} in {}", reply.text);
    }
}

async fn account_answers_are_private_and_a_generation_refusal_too(store: Store) {
    let h = harness(store, Settings::default());
    let visibility = |reply: Option<Reply>| reply.expect("an answer").visibility;
    for text in ["/balance", "/link", "/refund", "/history", "/buy"] {
        let reply = h.service.answer(request("ben", text, &[])).await;
        assert_eq!(visibility(reply), Visibility::Requester, "{text}");
    }
    let help = h.service.answer(request("ben", "/help", &[])).await;
    assert_eq!(visibility(help), Visibility::Chat);
    // /imagine is public (its status), but its refusal is only for the person.
    let refused = h.service.answer(request("ben", "/imagine", &[])).await;
    assert_eq!(visibility(refused), Visibility::Requester);
}

/// Waits (up to five seconds) until `h` answers `name`'s `text` with something containing
/// `expected`; how long that took.
async fn until_answered(
    h: &Harness,
    name: &str,
    text: &str,
    expected: &str,
) -> Option<std::time::Duration> {
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(5) {
        if h.say(name, text).await.contains(expected) {
            return Some(started.elapsed());
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    None
}

/// Another store on `db`'s database, as a second instance of the bot has.
async fn second_instance(db: &crate::store::testing::TestDb) -> Store {
    let config = crate::store::DatabaseConfig {
        url: db.url().to_string(),
        max_connections: 3,
        ..crate::store::DatabaseConfig::default()
    };
    Store::connect(&config, crate::store::Migrations::Apply)
        .await
        .expect("a second instance")
}

/// Two instances on one PostgreSQL hold a person to one request limit between them: a person
/// sending to both alternately gets about one burst answered, not one per instance. The same
/// run with sharing off lets twice as much through, so the check can tell the two apart.
#[tokio::test]
async fn two_instances_hold_a_person_to_one_request_limit_between_them() {
    let Some(db) = crate::store::testing::TestDb::postgres("one limit for two instances").await
    else {
        return;
    };
    let other = second_instance(&db).await;
    let mut answered = Vec::new();
    for (name, share_ms) in [("shared", 40), ("apart", 0)] {
        let mut settings = settings();
        settings.limits = throttle::RateLimits {
            requests_per_minute: 60,
            burst: 5,
            share_ms,
        };
        let one = harness(db.store().clone(), settings.clone());
        let two = harness(other.clone(), settings);
        let stop = CancellationToken::new();
        let sharing = [
            tokio::spawn(one.service.clone().run_limits(stop.clone())),
            tokio::spawn(two.service.clone().run_limits(stop.clone())),
        ];
        // Both instances have met the person (their first exchange sets where counting starts).
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let mut through = 0;
        for n in 0..30 {
            let at = if n % 2 == 0 { &one } else { &two };
            if at.say(name, "/balance").await.contains("Your balance") {
                through += 1;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        stop.cancel();
        for task in sharing {
            task.await.expect("sharing stops");
        }
        answered.push(through);
    }
    let (shared, apart) = (answered[0], answered[1]);
    eprintln!("30 requests over 1.5 s to two instances: {shared} answered sharing, {apart} apart");
    // One burst of 5 and about 1.5 s of refill at one a second, plus a request or two in
    // flight between two exchanges.
    assert!(shared <= 9, "one limit between them: {shared} answered");
    assert!(apart >= 10, "each instance its own burst: {apart} answered");
}

/// Two instances on one PostgreSQL, each remembering who people are: a ban, a freeze and a
/// terms acceptance made on one reach the other. Spending is refused by the database at once,
/// whatever the other instance remembers; what it shows follows within moments (its
/// notification).
#[tokio::test]
async fn what_one_instance_changes_about_a_person_the_other_forgets_at_once() {
    let Some(db) =
        crate::store::testing::TestDb::postgres("two instances remembering people").await
    else {
        return;
    };
    let other = second_instance(&db).await;
    let one = harness(db.store().clone(), admin_settings());
    let two = harness(other.clone(), admin_settings());
    // The second instance has met bea and remembers her.
    assert!(
        two.say("bea", "/balance")
            .await
            .contains("Your balance: 10")
    );
    assert!(
        two.say("bea", "/balance")
            .await
            .contains("Your balance: 10")
    );

    let banned = one.say("root", "/admin ban console:bea spam").await;
    assert!(banned.contains("banned"), "{banned}");
    // The very next generation on the other instance is refused by the database itself.
    let refused = two.say("bea", "/imagine a fox").await;
    assert!(refused.contains("suspended"), "{refused}");
    assert_eq!(two.charged("bea").await, (0, 0), "nothing held or taken");
    let shown = until_answered(&two, "bea", "/balance", "suspended").await;
    assert!(shown.is_some(), "the ban never reached the other instance");

    one.say("root", "/admin unban console:bea").await;
    assert!(
        until_answered(&two, "bea", "/balance", "Your balance: 10")
            .await
            .is_some(),
        "the unban never reached the other instance"
    );

    let frozen = one
        .say("root", "/admin freeze console:bea chargeback")
        .await;
    assert!(frozen.contains("froz"), "{frozen}");
    let refused = two.say("bea", "/imagine a fox").await;
    assert!(refused.contains("frozen"), "{refused}");
    assert_eq!(two.charged("bea").await, (0, 0));

    // A newer terms version accepted on one instance is what the other then reads.
    let bumped = harness(
        db.store().clone(),
        Settings {
            terms_version: "2099-01-01".into(),
            ..admin_settings()
        },
    );
    bumped.say("cal", "/start").await;
    assert!(
        two.say("cal", "/balance")
            .await
            .contains("terms of service changed")
    );
    // The first instance remembered cal's acceptance of 2099-01-01 from /start; it must forget
    // it once the second has recorded its own version.
    let identity: Identity = "console:cal".parse().expect("identity");
    let started = std::time::Instant::now();
    loop {
        let user = db.store().find_user(&identity).await.expect("read");
        let version = user.and_then(|u| u.terms).map(|t| t.version);
        if version.as_deref() == Some(crate::policy::TERMS_VERSION) {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "the first instance kept an old acceptance: {version:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    for store in [db.store(), &other] {
        let audit = store.audit().await.expect("audit");
        assert!(audit.is_clean(), "{audit}");
    }
    other.close().await;
}

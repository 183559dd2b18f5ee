//! Operations end to end: admins in a chat and on the command line, metrics, several instances
//! on one PostgreSQL (the long-polling lead handed over, jobs handed back at shutdown), and no
//! upload left behind.

use std::time::Duration;

use bot_core::Backend;
use fakes::telegram::{Chat, FakeTelegram, Sent};

use crate::helpers::{TestApp, imagegpt_beside, spawn_app, spawn_instance, text};

const TOKEN: &str = "123456:OPS-token";
const SETTINGS: &str = "[workers]\npoll_ms = 20\nstatus_edit_ms = 0\n";
const WAIT: Duration = Duration::from_secs(20);

async fn start(
    backend: Backend,
    test: &str,
    extra: &[(&str, &str)],
) -> Option<(FakeTelegram, TestApp)> {
    spawn_app(backend, test)
        .env(extra)
        .file(SETTINGS)
        .with_telegram(TOKEN, "10")
        .await
}

fn said(sent: &[Sent], chat: i64, needle: &str) -> usize {
    sent.iter()
        .filter(|s| s.chat_id == chat && s.text.contains(needle))
        .count()
}

async fn wait_said(fake: &FakeTelegram, chat: i64, needle: &str, times: usize) -> Vec<Sent> {
    let sent = fake
        .wait_for(WAIT, |sent| said(sent, chat, needle) >= times)
        .await;
    assert_eq!(
        said(&sent, chat, needle),
        times,
        "{needle:?} in {chat}: {sent:#?}"
    );
    sent
}

async fn stop(app: TestApp) {
    let db = app.stop().await;
    let audit = db.store().audit().await.expect("audit");
    assert!(audit.is_clean(), "{audit}");
}

#[tokio::test]
async fn admins_act_in_a_chat_and_on_the_command_line_and_everything_is_audited() {
    let (fake, app) = start(
        Backend::Sqlite,
        "ops_admin",
        &[("ADMIN_IDS", "telegram:9501")],
    )
    .await
    .expect("SQLite");
    let (root, ann) = (Chat::private(9501), Chat::private(9502));
    fake.message(&ann, 9502, "/admin grant telegram:9502 1000 please");
    wait_said(&fake, 9502, "Unknown command /admin", 1).await;
    fake.message(&root, 9501, "/admin grant telegram:9502 5 welcome back");
    wait_said(&fake, 9501, "Their balance: 15 credits", 1).await;
    fake.message(&root, 9501, "/admin ban telegram:9502 spam");
    wait_said(&fake, 9501, "is banned", 1).await;
    fake.message(&ann, 9502, "/imagine a fox");
    wait_said(&fake, 9502, "suspended", 1).await;
    // The operator's command line, on the same database and rules.
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [("DATABASE_URL", app.db.url())];
    let out = imagegpt_beside(dir.path(), &["admin", "unban", "telegram:9502"], &env).await;
    assert!(out.status.success(), "{:?}", text(&out));
    let out = imagegpt_beside(
        dir.path(),
        &[
            "admin",
            "take",
            "telegram:9502",
            "3",
            "--reason",
            "correction",
        ],
        &env,
    )
    .await;
    assert!(
        text(&out).0.contains("Their balance: 12 credits"),
        "{:?}",
        text(&out)
    );
    let out = imagegpt_beside(dir.path(), &["admin", "stats", "--days", "1"], &env).await;
    assert!(text(&out).0.contains("2 people"), "{:?}", text(&out));
    let out = imagegpt_beside(dir.path(), &["admin", "log"], &env).await;
    let (log, _) = text(&out);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 5, "{log}");
    assert!(lines[0].contains("cli stats"), "{log}");
    assert!(lines[1].contains("cli take telegram:9502"), "{log}");
    assert!(lines[2].contains("cli unban telegram:9502"), "{log}");
    assert!(
        lines[3].contains("telegram:9501 ban telegram:9502: spam"),
        "{log}"
    );
    assert!(
        lines[4].contains("telegram:9501 grant telegram:9502"),
        "{log}"
    );
    // Exit codes come from the outcome, not from the words: refused 1, unreadable 2.
    let out = imagegpt_beside(dir.path(), &["admin", "lookup", "telegram:404"], &env).await;
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("No one with the identity"),
        "{:?}",
        text(&out)
    );
    let out = imagegpt_beside(
        dir.path(),
        &["admin", "unban", "telegram:9502", "twice"],
        &env,
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(text(&out).1.contains("Usage"), "{:?}", text(&out));
    fake.message(&ann, 9502, "/balance");
    wait_said(&fake, 9502, "Your balance: 12 credits", 1).await;
    stop(app).await;
}

/// Two instances on one PostgreSQL: one long-polls Telegram; when it stops, the other takes the
/// lead and answers, and nothing is answered twice.
#[tokio::test]
async fn the_long_polling_lead_passes_to_another_instance() {
    let Some((fake, first)) = start(Backend::Postgres, "ops_leader", &[]).await else {
        eprintln!("skipped: PostgreSQL is not available (set TEST_POSTGRES_URL)");
        return;
    };
    let url = fake.url();
    let env = [
        ("TELEGRAM_BOT_TOKEN", TOKEN),
        ("TELEGRAM_API_URL", url.as_str()),
        ("WELCOME_CREDITS", "10"),
    ];
    let second = spawn_instance(&first, &env, SETTINGS).await;
    let cy = Chat::private(9701);
    fake.message(&cy, 9701, "/balance");
    wait_said(&fake, 9701, "Your balance", 1).await;
    let db = first.stop().await;
    fake.message(&cy, 9701, "/history");
    wait_said(&fake, 9701, "No generations yet", 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(said(&fake.sent(), 9701, "Your balance"), 1, "answered once");
    second.stop().await;
    let audit = db.store().audit().await.expect("audit");
    assert!(audit.is_clean(), "{audit}");
}

/// A job running when its instance is told to stop is handed back and finished, once, by the
/// other instance; the first exits within its grace.
#[tokio::test]
async fn a_job_in_hand_at_shutdown_is_handed_back_and_finished_once_elsewhere() {
    let replicate = fakes::replicate::FakeReplicate::start("r8_ops").await;
    let replicate_url = replicate.url();
    let settings = "[workers]\npoll_ms = 20\nstatus_edit_ms = 0\nhand_back_seconds = 1\ncount = 1\n\n[providers.replicate]\npoll_ms = 200\n";
    let fake = FakeTelegram::start(TOKEN).await;
    let url = fake.url();
    let env = [
        ("TELEGRAM_BOT_TOKEN", TOKEN),
        ("TELEGRAM_API_URL", url.as_str()),
        ("WELCOME_CREDITS", "10"),
        ("REPLICATE_API_TOKEN", "r8_ops"),
        ("REPLICATE_API_URL", replicate_url.as_str()),
    ];
    let Some(first) = spawn_app(Backend::Postgres, "ops_hand_back")
        .env(&env)
        .file(settings)
        .await
    else {
        eprintln!("skipped: PostgreSQL is not available (set TEST_POSTGRES_URL)");
        return;
    };
    // About 12 seconds of work: far longer than the hand-back delay.
    replicate.script(fakes::replicate::Script::Succeed { polls: 60 });
    let dee = Chat::private(9801);
    fake.message(&dee, 9801, "/imagine a slow sunrise");
    let sent = fake
        .wait_for(WAIT, |s| s.iter().any(|m| m.text.contains("running")))
        .await;
    assert!(
        sent.iter().any(|m| m.text.contains("running")),
        "the first instance runs the job: {sent:#?}"
    );
    // The second instance starts now, so the job was surely the first's.
    let second = spawn_instance(&first, &env, settings).await;
    let stopping = std::time::Instant::now();
    let db = first.stop().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(6),
        "handed the job back rather than finishing it: {:?}",
        stopping.elapsed()
    );
    let sent = fake
        .wait_for(Duration::from_secs(30), |s| {
            s.iter().any(|m| m.method == "sendPhoto")
        })
        .await;
    assert_eq!(
        sent.iter().filter(|m| m.method == "sendPhoto").count(),
        1,
        "{sent:#?}"
    );
    assert_eq!(
        replicate.created().len(),
        1,
        "the prediction was resumed, not paid twice"
    );
    fake.message(&dee, 9801, "/balance");
    wait_said(&fake, 9801, "Your balance: 9 credits", 1).await;
    let photos = fake
        .sent()
        .iter()
        .filter(|m| m.method == "sendPhoto")
        .count();
    assert_eq!(photos, 1, "still delivered once");
    second.stop().await;
    let audit = db.store().audit().await.expect("audit");
    assert!(audit.is_clean(), "{audit}");
}

/// Every file under `dir` (recursively) modified since `since` that contains `needle`.
fn files_containing(
    dir: &std::path::Path,
    since: std::time::SystemTime,
    needle: &[u8],
) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            found.extend(files_containing(&path, since, needle));
        } else if meta.len() < 64 * 1024 * 1024
            && meta.modified().is_ok_and(|at| at >= since)
            && std::fs::read(&path)
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        {
            found.push(path);
        }
    }
    found
}

/// Terms §6.2: an upload lives in memory for its job only. After a success, a failure and a
/// cancellation, none of its bytes are in the database or in any file written meanwhile.
#[tokio::test]
async fn no_upload_bytes_remain_after_success_failure_or_cancel() {
    let since = std::time::SystemTime::now();
    let replicate = fakes::replicate::FakeReplicate::start("r8_priv").await;
    let replicate_url = replicate.url();
    let (fake, app) = start(
        Backend::Sqlite,
        "ops_uploads",
        &[
            ("REPLICATE_API_TOKEN", "r8_priv"),
            ("REPLICATE_API_URL", replicate_url.as_str()),
        ],
    )
    .await
    .expect("SQLite");
    // Noise compresses to bytes found nowhere else: a window of them is the upload's mark.
    let mut seed = 0x2545_f491_u32;
    let noise = image::RgbImage::from_fn(96, 96, |_, _| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let [a, b, c, _] = seed.to_le_bytes();
        image::Rgb([a, b, c])
    });
    let mut png = std::io::Cursor::new(Vec::new());
    noise
        .write_to(&mut png, image::ImageFormat::Png)
        .expect("png");
    let png = png.into_inner();
    let mark = png[png.len() / 2..png.len() / 2 + 48].to_vec();
    let eve = Chat::private(9901);
    let photo = fake.upload(png.clone());
    replicate.script(fakes::replicate::Script::Succeed { polls: 1 });
    fake.photo(&eve, 9901, &photo, Some("/enhance"), None);
    wait_said(&fake, 9901, "enhancement: done", 1).await;
    replicate.script(fakes::replicate::Script::Fail("out of memory".into()));
    fake.photo(&eve, 9901, &photo, Some("/enhance"), None);
    wait_said(&fake, 9901, "failed, no credits taken", 1).await;
    replicate.script(fakes::replicate::Script::Hang);
    fake.photo(&eve, 9901, &photo, Some("/enhance"), None);
    // Running: its prediction was created at the provider.
    for _ in 0..200 {
        if replicate.created().len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(replicate.created().len(), 3);
    fake.message(&eve, 9901, "/cancel");
    wait_said(&fake, 9901, "cancelled at your request", 1).await;
    let db = app.stop().await;
    let database = std::path::Path::new(db.url().trim_start_matches("sqlite://"))
        .parent()
        .expect("the database's folder")
        .to_path_buf();
    for dir in [
        database,
        std::env::temp_dir(),
        std::env::current_dir().expect("cwd").join("data"),
    ] {
        let found = files_containing(&dir, since, &mark);
        assert!(found.is_empty(), "upload bytes left in {found:?}");
    }
    let audit = db.store().audit().await.expect("audit");
    assert!(audit.is_clean(), "{audit}");
}

/// Two processes of the real binary on one PostgreSQL share 500 jobs from 50 people; one is
/// killed with SIGKILL midway. Every job ends once in the ledger (posted once or voided), the
/// survivor takes over the long polling and the dead one's leases, and the audit passes. A
/// result whose delivery had just gone out when its process died is delivered again by the
/// survivor (no chat platform takes an idempotency key): the test counts those, and they can
/// only be jobs the killed process had in hand.
#[tokio::test]
async fn two_processes_share_500_jobs_and_one_killed_midway_loses_nothing() {
    share_500_jobs("ops_kill", Stop::Kill).await;
}

/// As above with SIGTERM: the stopping process exits within its grace, finishing or handing
/// back every job it holds; each success is posted once and delivered exactly once. Ten jobs
/// per private chat queue far more messages than Telegram's one a second per chat lets out, so
/// many results are still waiting their turn at the hand-back: those are abandoned unsent and
/// handed back, while one already on its way is seen through, so nothing is sent twice.
#[tokio::test]
async fn adversarial_a_sigterm_with_500_jobs_on_two_instances_exits_in_grace_and_posts_each_once() {
    share_500_jobs("ops_term", Stop::Term).await;
}

/// How the first process is stopped midway.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    Kill,
    Term,
}

async fn share_500_jobs(test: &str, stop: Stop) {
    let Some(db) = bot_core::store::testing::TestDb::new(Backend::Postgres, test).await else {
        eprintln!("skipped: PostgreSQL is not available (set TEST_POSTGRES_URL)");
        return;
    };
    let fake = FakeTelegram::start(TOKEN).await;
    let url = fake.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("imagegpt.toml");
    // Stopped with SIGTERM, jobs in hand are handed back at once: results then still waiting
    // their turn behind Telegram's one message a second per chat are the ones to abandon.
    let hand_back = match stop {
        Stop::Kill => 2,
        Stop::Term => 0,
    };
    std::fs::write(
        &config,
        format!(
            "[workers]\ncount = 4\npoll_ms = 20\nlease_seconds = 3\nstatus_edit_ms = 0\n\
             hand_back_seconds = {hand_back}\n\n\
             [jobs]\nmax_queued_per_person = 20\nmax_running_per_person = 4\n\n\
             [telegram]\nmessages_per_second = 10000\n"
        ),
    )
    .expect("config");
    let env = [
        ("DATABASE_URL", db.url()),
        ("HTTP_ADDR", "127.0.0.1:0"),
        ("TELEGRAM_BOT_TOKEN", TOKEN),
        ("TELEGRAM_API_URL", url.as_str()),
        ("WELCOME_CREDITS", "100"),
        ("RUST_LOG", "info,sqlx=warn"),
        ("SHUTDOWN_GRACE_SECONDS", "20"),
    ];
    let spawn = || {
        crate::helpers::Process(
            std::process::Command::new(env!("CARGO_BIN_EXE_imagegpt"))
                .args(["--config", config.to_str().expect("utf-8 path"), "serve"])
                .current_dir(dir.path())
                .env_clear()
                .envs(env)
                .stdout(std::process::Stdio::null())
                .stderr(
                    std::fs::File::create(dir.path().join(format!(
                    "stderr-{}",
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos())
                )))
                    .map_or_else(|_| std::process::Stdio::null(), std::process::Stdio::from),
                )
                .spawn()
                .expect("the binary starts"),
        )
    };
    let mut first = spawn();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut second = spawn();
    for person in 0..50_i64 {
        let id = 20_000 + person;
        for n in 0..10 {
            fake.message(
                &Chat::private(id),
                id,
                &format!("/imagine job {person} {n}"),
            );
        }
    }
    let photos = |sent: &[Sent]| sent.iter().filter(|m| m.method == "sendPhoto").count();
    fake.wait_for(Duration::from_secs(120), |sent| photos(sent) >= 150)
        .await;
    match stop {
        Stop::Kill => first.kill().expect("SIGKILL"),
        Stop::Term => {
            let signalled = std::process::Command::new("kill")
                .args(["-TERM", &first.id().to_string()])
                .status()
                .expect("kill runs");
            assert!(signalled.success());
        }
    }
    // Waited for without blocking this runtime: the fake Telegram runs on it, and a process
    // finishing its last sends needs it to answer them.
    let exited = loop {
        if let Some(status) = first.try_wait().expect("the first process is ours") {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let logs = || {
        let mut logs = String::new();
        for entry in std::fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.file_name().to_string_lossy().starts_with("stderr-") {
                logs.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        logs
    };
    if stop == Stop::Term && !exited.success() {
        let logs = logs();
        let tail: Vec<&str> = logs.lines().filter(|l| !l.contains("queued")).collect();
        let from = tail.len().saturating_sub(80);
        panic!(
            "stopped within its grace: {exited:?}\n{}",
            tail[from..].join("\n")
        );
    }
    // Every job ends: the survivor takes over the polling and, once their leases lapse, the
    // dead process's jobs.
    let store = db.store();
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let stats = loop {
        let stats = store.stats(0).await.expect("stats");
        let ended: i64 = stats
            .jobs
            .iter()
            .filter(|(_, state, _)| matches!(state.as_str(), "succeeded" | "failed" | "cancelled"))
            .map(|(_, _, n)| n)
            .sum();
        let all: i64 = stats.jobs.iter().map(|(_, _, n)| n).sum();
        if all == 500 && ended == 500 {
            break stats;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{ended} of {all} jobs ended: {:?}",
            stats.jobs
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = fake.sent();
    let mut deliveries: std::collections::HashMap<String, usize> = Default::default();
    for photo in sent.iter().filter(|m| m.method == "sendPhoto") {
        let prompt = photo.text.lines().next().unwrap_or_default().to_string();
        *deliveries.entry(prompt).or_default() += 1;
    }
    let succeeded: i64 = stats
        .jobs
        .iter()
        .filter(|(_, state, _)| state == "succeeded")
        .map(|(_, _, n)| n)
        .sum();
    let repeated = deliveries.values().filter(|n| **n > 1).count();
    let logs = logs();
    let handed_back = logs.matches("handed back at shutdown").count();
    let abandoned = logs.matches("result abandoned unsent").count();
    eprintln!(
        "500 jobs: {succeeded} succeeded, {} other; {} results delivered, {repeated} delivered \
         twice; {handed_back} handed back at shutdown, {abandoned} of them with a result \
         abandoned unsent",
        500 - succeeded,
        deliveries.len()
    );
    assert_eq!(
        deliveries.len() as i64,
        succeeded,
        "every succeeded job was delivered, and nothing that failed was"
    );
    // A SIGKILL can cut a send Telegram already has; a SIGTERM never does.
    let allowed = match stop {
        Stop::Kill => 4,
        Stop::Term => 0,
    };
    assert!(
        repeated <= allowed,
        "at most {allowed} delivered twice, and only jobs the killed process had in hand: \
         {repeated}: {:?}\n{}",
        deliveries
            .iter()
            .filter(|(_, n)| **n > 1)
            .collect::<Vec<_>>(),
        logs.lines()
            .filter(|l| l.contains("WARN") || l.contains("lease") || l.contains("handed"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // 50 people × 100 welcome credits; each succeeded job posted its 1 credit once.
    assert_eq!(stats.credits_spent, succeeded, "each success posted once");
    second.kill().expect("stop");
    let _ = second.wait();
    let audit = store.audit().await.expect("audit");
    assert!(audit.is_clean(), "{audit}");
}

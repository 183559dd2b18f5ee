//! Operations end to end: admins in a chat and on the command line, metrics, several instances
//! on one PostgreSQL (the long-polling lead handed over, jobs handed back at shutdown), and no
//! upload left behind.

use std::time::Duration;

use bot_core::Backend;
use fakes::telegram::{Chat, FakeTelegram, Sent};

use crate::helpers::{TestApp, imagegpt, spawn_app_with, spawn_instance, text};

const TOKEN: &str = "123456:OPS-token";
const SETTINGS: &str = "[workers]\npoll_ms = 20\nstatus_edit_ms = 0\n";
const WAIT: Duration = Duration::from_secs(20);

async fn start(
    backend: Backend,
    test: &str,
    extra: &[(&str, &str)],
) -> Option<(FakeTelegram, TestApp)> {
    let fake = FakeTelegram::start(TOKEN).await;
    let url = fake.url();
    let mut env = vec![
        ("TELEGRAM_BOT_TOKEN", TOKEN),
        ("TELEGRAM_API_URL", url.as_str()),
        ("WELCOME_CREDITS", "10"),
    ];
    env.extend_from_slice(extra);
    let app = spawn_app_with(backend, test, &env, SETTINGS).await?;
    Some((fake, app))
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
    let out = imagegpt(dir.path(), &["admin", "unban", "telegram:9502"], &env);
    assert!(out.status.success(), "{:?}", text(&out));
    let out = imagegpt(
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
    );
    assert!(
        text(&out).0.contains("Their balance: 12 credits"),
        "{:?}",
        text(&out)
    );
    let out = imagegpt(dir.path(), &["admin", "stats", "--days", "1"], &env);
    assert!(text(&out).0.contains("2 people"), "{:?}", text(&out));
    let out = imagegpt(dir.path(), &["admin", "log"], &env);
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
    fake.message(&ann, 9502, "/balance");
    wait_said(&fake, 9502, "Your balance: 12 credits", 1).await;
    stop(app).await;
}

#[tokio::test]
async fn metrics_are_exposed_and_count() {
    let (fake, app) = start(Backend::Sqlite, "ops_metrics", &[])
        .await
        .expect("SQLite");
    let bea = Chat::private(9601);
    fake.message(&bea, 9601, "/imagine a lighthouse");
    fake.wait_for(WAIT, |s| s.iter().any(|m| m.method == "sendPhoto"))
        .await;
    fake.message(&bea, 9601, "/balance");
    wait_said(&fake, 9601, "Your balance", 1).await;
    let http = reqwest::Client::new();
    // The job's end is counted just after delivery.
    let mut body = String::new();
    for _ in 0..50 {
        let response = http
            .get(format!("http://{}/metrics", app.address))
            .send()
            .await
            .expect("metrics");
        assert_eq!(response.status(), 200);
        body = response.text().await.expect("text");
        if body.contains("imagegpt_jobs_total{operation=\"image\",state=\"succeeded\"}") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for needle in [
        "imagegpt_requests_total{platform=\"telegram\",outcome=\"answered\"}",
        "imagegpt_jobs_total{operation=\"image\",state=\"succeeded\"}",
        "imagegpt_ledger_credits_total{kind=\"generation\"}",
        "imagegpt_provider_seconds_count{provider=\"local\"}",
        "imagegpt_queue_depth ",
        "# EOF",
    ] {
        assert!(body.contains(needle), "{needle} in\n{body}");
    }
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
    let Some(first) = spawn_app_with(Backend::Postgres, "ops_hand_back", &env, settings).await
    else {
        eprintln!("skipped: PostgreSQL is not available (set TEST_POSTGRES_URL)");
        return;
    };
    // About 12 seconds of work: far longer than the hand-back delay.
    replicate.script(fakes::replicate::Script::Succeed { polls: 60 });
    let dee = Chat::private(9801);
    fake.message(&dee, 9801, "/imagine a slow sunrise");
    fake.wait_for(WAIT, |s| s.iter().any(|m| m.text.contains("running")))
        .await;
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
    second.stop().await;
    let audit = db.store().audit().await.expect("audit");
    assert!(audit.is_clean(), "{audit}");
}

//! `/metrics` in a test binary of its own: the registry is the process's, so only here do its
//! counts belong to one application and can be checked exactly.

#[allow(dead_code)]
#[path = "e2e/helpers.rs"]
mod helpers;

use std::time::Duration;

use bot_core::Backend;
use fakes::telegram::{Chat, FakeTelegram};

const TOKEN: &str = "123456:METRICS-token";
const WAIT: Duration = Duration::from_secs(20);

/// The value of the sample line starting with `name` (labels included), if any.
fn sample(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
}

#[tokio::test]
async fn metrics_are_exposed_and_count_exactly() {
    let fake = FakeTelegram::start(TOKEN).await;
    let url = fake.url();
    let env = [
        ("TELEGRAM_BOT_TOKEN", TOKEN),
        ("TELEGRAM_API_URL", url.as_str()),
        ("WELCOME_CREDITS", "10"),
    ];
    let app = helpers::spawn_app(Backend::Sqlite, "metrics")
        .env(&env)
        .file("[workers]\npoll_ms = 20\nstatus_edit_ms = 0\n")
        .await
        .expect("SQLite");
    let bea = Chat::private(9601);
    fake.message(&bea, 9601, "/imagine a lighthouse");
    let sent = fake
        .wait_for(WAIT, |s| s.iter().any(|m| m.method == "sendPhoto"))
        .await;
    assert!(sent.iter().any(|m| m.method == "sendPhoto"), "{sent:#?}");
    fake.message(&bea, 9601, "/balance");
    let sent = fake
        .wait_for(WAIT, |s| s.iter().any(|m| m.text.contains("Your balance")))
        .await;
    assert!(
        sent.iter()
            .any(|m| m.text.contains("Your balance: 9 credits"))
    );
    let http = reqwest::Client::new();
    // The job's end is counted just after its delivery.
    let mut body = String::new();
    for _ in 0..50 {
        body = http
            .get(format!("http://{}/metrics", app.address))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        if sample(
            &body,
            "imagegpt_jobs_total{operation=\"image\",state=\"succeeded\"}",
        )
        .is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (name, value) in [
        // /imagine is answered through its status message, /balance with a reply.
        (
            "imagegpt_requests_total{platform=\"telegram\",outcome=\"silent\"}",
            1.0,
        ),
        (
            "imagegpt_requests_total{platform=\"telegram\",outcome=\"answered\"}",
            1.0,
        ),
        (
            "imagegpt_jobs_total{operation=\"image\",state=\"succeeded\"}",
            1.0,
        ),
        ("imagegpt_ledger_credits_total{kind=\"generation\"}", 1.0),
        ("imagegpt_ledger_credits_total{kind=\"grant\"}", 10.0),
        ("imagegpt_provider_seconds_count{provider=\"local\"}", 1.0),
        ("imagegpt_queue_depth", 0.0),
    ] {
        assert_eq!(sample(&body, name), Some(value), "{name} in\n{body}");
    }
    assert!(body.ends_with("# EOF\n"));
    let db = app.stop().await;
    let audit = db.store().audit().await.expect("audit");
    assert!(audit.is_clean(), "{audit}");
}

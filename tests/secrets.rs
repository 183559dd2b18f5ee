//! Secrets never reach the logs. Its own test binary: the capturing subscriber must be the
//! process's global one, which no other test may set. `cargo test -- adversarial` runs it with
//! the rest of the adversarial suite.

#[path = "e2e/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::time::Duration;

use bot_core::Backend;
use fakes::telegram::{Chat, FakeTelegram};
use serde_json::{Value, json};

const SETTINGS: &str = "[workers]\npoll_ms = 20\nstatus_edit_ms = 0\n";
const WAIT: Duration = Duration::from_secs(30);
const APPLICATION: &str = "1100000000000000001";

fn option(name: &str, kind: u8, value: Value) -> Value {
    json!({"name": name, "type": kind, "value": value})
}

/// Everything the application logs while it is used, captured.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// No secret reaches the logs, even at debug level and on error paths: the bot token, provider
/// keys (one of them refused), the Stripe keys (a forged signature too), the Discord bot token
/// and every interaction token used. This binary holds this one test, so the capturing
/// subscriber is the process's global one and sees every thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_no_secret_or_token_reaches_the_logs() {
    use fakes::{
        discord::{FakeDiscord, Person, Place},
        openai::FakeOpenAi,
        replicate::FakeReplicate,
        stripe::FakeStripe,
    };

    const BOT: &str = "123456:SECRET-telegram-token";
    const DISCORD_BOT: &str = "SECRET-discord-bot-token";
    const REPLICATE: &str = "r8_SECRET_replicate_token";
    const OPENAI_WRONG: &str = "sk-SECRET-openai-key";
    const STRIPE: &str = "sk_test_SECRET_stripe_key";
    const HOOK: &str = "whsec_SECRET_stripe_hook";

    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_env_filter("debug,hyper=info,h2=info,rustls=info")
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let telegram = FakeTelegram::start(BOT).await;
    let discord = FakeDiscord::start(APPLICATION, DISCORD_BOT).await;
    let replicate = FakeReplicate::start(REPLICATE).await;
    let openai = FakeOpenAi::start("sk-the-one-openai-accepts").await;
    let stripe = FakeStripe::start(STRIPE).await;
    let urls = (
        telegram.url(),
        discord.url(),
        replicate.url(),
        openai.base_url(),
        stripe.url(),
        discord.public_key(),
    );
    let app = helpers::spawn_app(Backend::Sqlite, "adversarial_secrets")
        .env(&[
            ("TELEGRAM_BOT_TOKEN", BOT),
            ("TELEGRAM_API_URL", urls.0.as_str()),
            ("DISCORD_APPLICATION_ID", APPLICATION),
            ("DISCORD_BOT_TOKEN", DISCORD_BOT),
            ("DISCORD_PUBLIC_KEY", urls.5.as_str()),
            ("DISCORD_API_URL", urls.1.as_str()),
            ("REPLICATE_API_TOKEN", REPLICATE),
            ("REPLICATE_API_URL", urls.2.as_str()),
            ("OPENAI_API_KEY", OPENAI_WRONG),
            ("OPENAI_BASE_URL", urls.3.as_str()),
            ("STRIPE_SECRET_KEY", STRIPE),
            ("STRIPE_WEBHOOK_SECRET", HOOK),
            ("STRIPE_API_URL", urls.4.as_str()),
            ("PUBLIC_BASE_URL", "https://bot.example.org"),
            ("WELCOME_CREDITS", "10"),
        ])
        .file(&format!(
            "{SETTINGS}\n[providers.replicate]\npoll_ms = 20\n\n\
             [operations.image]\nroutes = [\"openai\", \"replicate\"]\n"
        ))
        .await
        .expect("SQLite is always available");
    discord.set_endpoint(&format!("http://{}/discord/interactions", app.address));

    // Telegram: an image (OpenAI refuses the key, Replicate makes it), a purchase link.
    let ann = Chat::private(9990);
    telegram.message(&ann, 9990, "/imagine a lighthouse at dusk");
    telegram.message(&ann, 9990, "/buy");
    let sent = telegram
        .wait_for(WAIT, |sent| {
            sent.iter()
                .any(|s| s.chat_id == 9990 && s.method == "sendPhoto")
        })
        .await;
    assert!(sent.iter().any(|s| s.method == "sendPhoto"), "{sent:#?}");

    // Discord: a balance and an image, through interaction tokens.
    let kim = Person::new(4501, "Kim");
    let place = Place::guild(5501, 6501);
    let mut tokens = Vec::new();
    for (command, options) in [
        ("balance", json!([])),
        ("imagine", json!([option("prompt", 3, json!("a harbour"))])),
    ] {
        let interaction = discord.slash(&kim, &place, command, options, json!({}));
        tokens.push(
            interaction["token"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        discord.interact(&interaction).await;
    }
    discord
        .wait_for(WAIT, |m| !m.deleted && !m.files.is_empty())
        .await
        .expect("a Discord result");

    // Stripe: a forged signature and a signed event for no known order.
    let http = reqwest::Client::new();
    let body = stripe.event("checkout.session.completed", json!({"id": "cs_nobody"}));
    for signature in [
        "t=1,v1=forged".to_string(),
        fakes::stripe::sign(
            &body,
            HOOK,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        ),
    ] {
        let _ = http
            .post(format!("http://{}/stripe/webhook", app.address))
            .header("stripe-signature", signature)
            .body(body.clone())
            .send()
            .await;
    }
    let db = app.stop().await;
    drop(db);

    let text = String::from_utf8_lossy(&logs.0.lock().expect("logs")).into_owned();
    assert!(text.lines().count() > 15, "the logs were captured:\n{text}");
    assert!(
        text.contains("OpenAI refused the API key"),
        "the refused key was logged about"
    );
    let mut secrets: Vec<&str> = vec![BOT, DISCORD_BOT, REPLICATE, OPENAI_WRONG, STRIPE, HOOK];
    // The Bot API token's secret half alone, too.
    secrets.push("SECRET-telegram-token");
    secrets.extend(tokens.iter().map(String::as_str).filter(|t| !t.is_empty()));
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "{secret} appears in the logs:\n{}",
            text.lines()
                .filter(|l| l.contains(secret))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

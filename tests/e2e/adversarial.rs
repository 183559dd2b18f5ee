//! The attacker's and the crash's point of view, on the whole application: updates delivered
//! again after a kill, and what several instances must share. `cargo test -- adversarial` runs
//! them all.

use std::time::Duration;

use bot_core::{Backend, Identity, store::testing::TestDb};
use fakes::telegram::{Chat, FakeTelegram, Sent};

use crate::helpers::spawn_instance_on;

const TOKEN: &str = "123456:ADV-token";
const SETTINGS: &str = "[workers]\npoll_ms = 20\nstatus_edit_ms = 0\n";
const WAIT: Duration = Duration::from_secs(30);

fn count(sent: &[Sent], chat: i64, method: &str, needle: &str) -> usize {
    sent.iter()
        .filter(|s| s.chat_id == chat && s.method == method && s.text.contains(needle))
        .count()
}

/// The application on SQLite against a fresh fake Telegram, everyone welcomed with 10 credits,
/// with `extra` variables and `file` as its configuration file.
async fn telegram_app(
    test: &str,
    extra: &[(&str, &str)],
    file: &str,
) -> (FakeTelegram, crate::helpers::TestApp) {
    crate::helpers::spawn_app(Backend::Sqlite, test)
        .env(extra)
        .file(file)
        .with_telegram(TOKEN, "10")
        .await
        .expect("SQLite is always available")
}

/// `who` asks for `/imagine prompt` on Discord in `place`; the interaction's answer and the first
/// message with a file (the result).
async fn discord_result(
    discord: &fakes::discord::FakeDiscord,
    who: &fakes::discord::Person,
    place: &fakes::discord::Place,
    prompt: &str,
) -> (fakes::discord::Answer, fakes::discord::Message) {
    let imagine = discord.slash(
        who,
        place,
        "imagine",
        serde_json::json!([crate::discord_adapter::option(
            "prompt",
            3,
            serde_json::json!(prompt)
        )]),
        serde_json::json!({}),
    );
    let answer = discord.interact(&imagine).await;
    let result = discord
        .wait_for(WAIT, |m| !m.deleted && !m.files.is_empty())
        .await
        .unwrap_or_else(|| panic!("a result: {:#?}", discord.messages()));
    (answer, result)
}
/// What `identity` has available and on hold.
async fn balance_of(store: &bot_core::Store, identity: &str) -> (u64, u64) {
    let identity: Identity = identity.parse().expect("identity");
    let user = store
        .find_user(&identity)
        .await
        .expect("lookup")
        .expect("exists");
    let balance = store.account_balance(user.wallet).await.expect("balance");
    (balance.available().get(), balance.debits_pending.get())
}

/// The real binary, serving on `url`'s database against the fake Telegram.
fn serve(dir: &std::path::Path, url: &str, telegram: &str) -> crate::helpers::Process {
    std::fs::write(dir.join("imagegpt.toml"), SETTINGS).expect("write configuration");
    crate::helpers::Process(
        std::process::Command::new(env!("CARGO_BIN_EXE_imagegpt"))
            .arg("serve")
            .current_dir(dir)
            .env_clear()
            .envs([
                ("DATABASE_URL", url),
                ("HTTP_ADDR", "127.0.0.1:0"),
                ("TELEGRAM_BOT_TOKEN", TOKEN),
                ("TELEGRAM_API_URL", telegram),
                ("WELCOME_CREDITS", "10"),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the binary starts"),
    )
}

/// Telegram confirms a batch only when the bot next asks for updates. An instance killed after
/// handling a batch and before asking again leaves it unconfirmed, and Telegram delivers it
/// again to whoever polls next: that leader must not answer it, charge it or run it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_a_batch_handled_before_a_kill_is_not_handled_again_by_the_next_leader() {
    let Some(db) = TestDb::new(Backend::Postgres, "adversarial_kill_mid_batch").await else {
        eprintln!("skipped: PostgreSQL is not available (set TEST_POSTGRES_URL)");
        return;
    };
    let fake = FakeTelegram::start(TOKEN).await;
    let telegram = fake.url();
    let askers = [9901, 9902, 9903];
    let makers = [9904, 9905, 9906];
    for id in askers {
        fake.message(&Chat::private(id), id, "/balance");
    }
    for id in makers {
        fake.message(&Chat::private(id), id, "/imagine a lamp in the fog");
    }
    // The first instance gets the batch; it dies before its next poll reaches Telegram.
    fake.answer_polls(Some(1));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut first = serve(dir.path(), db.url(), &telegram);
    let sent = fake
        .wait_for(WAIT, |sent| {
            askers
                .iter()
                .all(|&c| count(sent, c, "sendMessage", "Your balance") == 1)
                && makers.iter().all(|&c| count(sent, c, "sendPhoto", "") == 1)
        })
        .await;
    assert!(
        makers
            .iter()
            .all(|&c| count(&sent, c, "sendPhoto", "") == 1),
        "the first instance handled the whole batch: {sent:#?}"
    );
    first.kill().expect("kill");
    first.wait().expect("reaped");

    // The next leader: Telegram still holds the batch.
    fake.answer_polls(None);
    let second = spawn_instance_on(
        db.url(),
        &[
            ("TELEGRAM_BOT_TOKEN", TOKEN),
            ("TELEGRAM_API_URL", telegram.as_str()),
            ("WELCOME_CREDITS", "10"),
        ],
        SETTINGS,
    )
    .await;
    fake.message(&Chat::private(9901), 9901, "/balance");
    let sent = fake
        .wait_for(WAIT, |sent| {
            count(sent, 9901, "sendMessage", "Your balance") == 2
        })
        .await;
    assert_eq!(
        count(&sent, 9901, "sendMessage", "Your balance"),
        2,
        "the second instance polls: {sent:#?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = fake.sent();
    for id in &askers[1..] {
        assert_eq!(
            count(&sent, *id, "sendMessage", "Your balance"),
            1,
            "{id} was answered once: {sent:#?}"
        );
    }
    for id in makers {
        assert_eq!(
            count(&sent, id, "sendMessage", "queued"),
            1,
            "{id}: {sent:#?}"
        );
        assert_eq!(count(&sent, id, "sendPhoto", ""), 1, "{id} got one result");
    }
    second.stop().await;
    let store = db.store();
    for id in makers {
        let (available, _) = balance_of(store, &format!("telegram:{id}")).await;
        assert_eq!(available, 9, "{id} was charged once");
    }
    let audit = store.audit().await.expect("audit");
    assert!(audit.is_clean(), "{audit}");
}

/// Workers run on every instance: a job queued from an interaction one instance acknowledged
/// and finished by another is still answered through that interaction (its token is in the
/// store), not posted in the channel with the bot token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_an_interaction_acknowledged_on_one_instance_is_answered_from_another() {
    use fakes::discord::{Person, Place, Via};

    use crate::discord_adapter::{close, open_with, second_instance};

    // The first instance's only worker looks at the queue once a minute: the second, polling
    // every 20 ms, takes the job.
    let lazy = "[workers]\npoll_ms = 60000\ncount = 1\nstatus_edit_ms = 0\n";
    let Some(server) = open_with(
        Backend::Postgres,
        "adversarial_interaction_tokens",
        &[],
        lazy,
    )
    .await
    else {
        eprintln!("skipped: PostgreSQL is not available (set TEST_POSTGRES_URL)");
        return;
    };
    let discord = &server.discord;
    let second = second_instance(&server, SETTINGS).await;
    let ann = Person::new(4401, "Ann");
    let place = Place::guild(5401, 6401);
    let (answer, result) = discord_result(discord, &ann, &place, "a lighthouse").await;
    assert!(
        matches!(result.via, Via::Followup | Via::Original)
            && result.interaction.as_deref() == Some(answer.interaction.as_str()),
        "answered through the interaction: {result:?}"
    );
    assert!(
        discord.messages().iter().all(|m| m.via != Via::Bot),
        "nothing was posted with the bot token: {:#?}",
        discord.messages()
    );
    second.stop().await;
    close(server).await;
}

/// One person sending 10,000 updates in a burst gets their first few answered, one polite
/// refusal, and silence for the rest; someone else writing meanwhile is answered at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_a_flood_from_one_person_is_refused_once_and_others_are_unaffected() {
    let (fake, app) = telegram_app(
        "adversarial_flood",
        &[],
        &format!("{SETTINGS}\n[limits]\nrequests_per_minute = 30\nburst = 10\n"),
    )
    .await;
    let flooder = Chat::private(9950);
    for n in 0..10_000 {
        fake.message(
            &flooder,
            9950,
            if n % 2 == 0 { "/balance" } else { "hello?" },
        );
    }
    let other = Chat::private(9951);
    fake.message(&other, 9951, "/balance");
    let sent = fake
        .wait_for(WAIT, |sent| {
            count(sent, 9951, "sendMessage", "Your balance") == 1
        })
        .await;
    assert_eq!(
        count(&sent, 9951, "sendMessage", "Your balance"),
        1,
        "the other person"
    );
    // Let the rest of the flood drain.
    let started = std::time::Instant::now();
    while fake.pending_updates() > 0 && started.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(fake.pending_updates(), 0, "every update was read");
    // The flooder's answers go out at Telegram's one a second per chat: the refusal comes
    // after the burst's answers.
    let refused = |sent: &[Sent]| {
        sent.iter()
            .any(|s| s.chat_id == 9950 && s.text.contains("faster than I can take them"))
    };
    fake.wait_for(WAIT, refused).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let to_flooder: Vec<Sent> = fake
        .sent()
        .into_iter()
        .filter(|s| s.chat_id == 9950)
        .collect();
    let refusals = to_flooder
        .iter()
        .filter(|s| s.text.contains("faster than I can take them"))
        .count();
    assert_eq!(
        refusals,
        1,
        "one refusal: {:#?}",
        &to_flooder[..to_flooder.len().min(20)]
    );
    // The burst, plus what the bucket refilled while the flood was read (30 a minute).
    let elapsed = started.elapsed().as_secs() as usize + 30;
    assert!(
        to_flooder.len() <= 10 + 1 + elapsed / 2 + 1,
        "{} answers to the flooder",
        to_flooder.len()
    );
    let db = app.stop().await;
    let audit = db.store().audit().await.expect("audit");
    assert!(audit.is_clean(), "{audit}");
}

/// Every HTTP route that takes a body: one over its limit is 413 and one that is not JSON
/// (properly signed, so the parser is what refuses it) is 400, and neither leaves anything in
/// the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_oversized_and_malformed_bodies_are_refused_and_nothing_is_written() {
    use fakes::{discord::FakeDiscord, stripe::FakeStripe};

    use crate::discord_adapter::{APPLICATION, BOT_TOKEN};

    let telegram = FakeTelegram::start(TOKEN).await;
    let discord = FakeDiscord::start(APPLICATION, BOT_TOKEN).await;
    let stripe = FakeStripe::start("sk_test_adversarial").await;
    let (telegram_url, discord_url, stripe_url, key) = (
        telegram.url(),
        discord.url(),
        stripe.url(),
        discord.public_key(),
    );
    let app = crate::helpers::spawn_app(Backend::Sqlite, "adversarial_bodies")
        .env(&[
            ("TELEGRAM_BOT_TOKEN", TOKEN),
            ("TELEGRAM_API_URL", telegram_url.as_str()),
            (
                "TELEGRAM_WEBHOOK_URL",
                "https://bot.example.org/telegram/webhook",
            ),
            ("TELEGRAM_WEBHOOK_SECRET", "hook_secret"),
            ("DISCORD_APPLICATION_ID", APPLICATION),
            ("DISCORD_BOT_TOKEN", BOT_TOKEN),
            ("DISCORD_PUBLIC_KEY", key.as_str()),
            ("DISCORD_API_URL", discord_url.as_str()),
            ("STRIPE_SECRET_KEY", "sk_test_adversarial"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_adversarial"),
            ("STRIPE_API_URL", stripe_url.as_str()),
            ("PUBLIC_BASE_URL", "https://bot.example.org"),
        ])
        .file(SETTINGS)
        .await
        .expect("SQLite is always available");
    // A connection of its own for each request: one left with an unread oversized body is not
    // reused for the next.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let base = format!("http://{}", app.address);
    let post = |path: &str, body: Vec<u8>, headers: Vec<(&'static str, String)>| {
        let mut request = http
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        // The server answers 413 as soon as the declared length is over the limit and closes
        // the connection without reading the rest, so a client still sending may see the
        // connection end instead of the answer; 0 stands for that.
        async move {
            match request.send().await {
                Ok(response) => response.status().as_u16(),
                Err(error) if error.is_request() => 0,
                Err(error) => panic!("no answer: {error}"),
            }
        }
    };
    let telegram_headers = || vec![("x-telegram-bot-api-secret-token", "hook_secret".to_string())];
    let discord_headers = |body: &[u8]| {
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .to_string();
        vec![
            ("x-signature-ed25519", discord.sign(&timestamp, body)),
            ("x-signature-timestamp", timestamp),
        ]
    };
    let stripe_headers = |body: &[u8]| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        vec![(
            "stripe-signature",
            fakes::stripe::sign(&String::from_utf8_lossy(body), "whsec_adversarial", now),
        )]
    };
    let malformed = b"{\"update_id\": 1, \"message\": ".to_vec();
    let huge = |n: usize| format!("{{\"pad\":\"{}\"}}", "x".repeat(n)).into_bytes();

    let mut answers = Vec::new();
    answers.push((
        "telegram malformed",
        post("/telegram/webhook", malformed.clone(), telegram_headers()).await,
        400,
    ));
    answers.push((
        "telegram huge",
        post("/telegram/webhook", huge(3_000_000), telegram_headers()).await,
        413,
    ));
    answers.push((
        "discord malformed",
        post(
            "/discord/interactions",
            malformed.clone(),
            discord_headers(&malformed),
        )
        .await,
        400,
    ));
    let big = huge(300_000);
    answers.push((
        "discord huge",
        post("/discord/interactions", big.clone(), discord_headers(&big)).await,
        413,
    ));
    answers.push((
        "stripe malformed",
        post(
            "/stripe/webhook",
            malformed.clone(),
            stripe_headers(&malformed),
        )
        .await,
        400,
    ));
    let big = huge(1_100_000);
    answers.push((
        "stripe huge",
        post("/stripe/webhook", big.clone(), stripe_headers(&big)).await,
        413,
    ));
    let wrong: Vec<_> = answers
        .iter()
        .filter(|(_, got, want)| got != want && !(*want == 413 && *got == 0))
        .collect();
    assert!(wrong.is_empty(), "{wrong:?}");

    let db = app.stop().await;
    let store = db.store();
    let audit = store.audit().await.expect("audit");
    assert!(audit.is_clean(), "{audit}");
    assert!(
        audit.to_string().contains("0 wallets") && audit.to_string().contains("0 transfers"),
        "nobody was created and no credit moved: {audit}"
    );
    assert!(telegram.sent().is_empty(), "nothing was answered");
    assert!(discord.messages().is_empty(), "nothing was answered");
}

/// A PNG of about 1 KB whose header declares `width`×`height` (nothing decodes it).
fn png_declaring(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
    bytes.extend_from_slice(&width.to_be_bytes());
    bytes.extend_from_slice(&height.to_be_bytes());
    bytes.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
    bytes.resize(1_024, 0);
    bytes
}

/// A WebP whose extended header declares `width`×`height`.
fn webp_declaring(width: u32, height: u32) -> Vec<u8> {
    let mut chunk = vec![0x10, 0, 0, 0];
    chunk.extend_from_slice(&(width - 1).to_le_bytes()[..3]);
    chunk.extend_from_slice(&(height - 1).to_le_bytes()[..3]);
    let mut bytes = b"RIFF".to_vec();
    bytes.extend_from_slice(&(4 + 8 + chunk.len() as u32).to_le_bytes());
    bytes.extend_from_slice(b"WEBPVP8X");
    bytes.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&chunk);
    bytes
}

/// A GIF of 10,000 one-pixel frames.
fn gif_of_many_frames() -> Vec<u8> {
    let mut bytes = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff".to_vec();
    for _ in 0..10_000 {
        bytes.extend_from_slice(b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00");
    }
    bytes.push(b';');
    bytes
}

/// Uploads made to hurt: each with what the answer to it says.
fn hostile_uploads() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let mut real = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8, y as u8, 7]))
        .write_to(&mut real, image::ImageFormat::Png)
        .expect("encode");
    let real = real.into_inner();
    vec![
        (
            "png bomb",
            png_declaring(100_000, 100_000),
            "megapixels allowed",
        ),
        (
            "webp bomb",
            webp_declaring(100_000, 100_000),
            "megapixels allowed",
        ),
        (
            "gif frames",
            gif_of_many_frames(),
            "not a JPEG, PNG or WebP",
        ),
        ("truncated", real[..real.len() / 2].to_vec(), "damaged"),
        (
            "lying name",
            b"this is not a picture at all".to_vec(),
            "not a JPEG, PNG or WebP",
        ),
        ("empty", Vec::new(), "empty"),
    ]
}

/// Uploads that lie or attack: a decompression bomb in each accepted format, a GIF of 10,000
/// frames, a truncated PNG, a text file calling itself a PNG, an empty file. Each ends with a
/// sentence the person can act on and costs nothing; the process's peak memory stays far
/// below what decoding a bomb would take (100,000² pixels is 30 GB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_hostile_uploads_get_a_clear_answer_and_cost_nothing() {
    let (fake, app) = telegram_app("adversarial_uploads", &[], SETTINGS).await;
    let cases = hostile_uploads();
    let before = peak_rss_kb();
    for (n, (_, bytes, _)) in cases.iter().enumerate() {
        let id = 9960 + n as i64;
        let file = fake.upload(bytes.clone());
        fake.document(&Chat::private(id), id, &file, "image/png", "/enhance");
    }
    for (n, (what, _, words)) in cases.iter().enumerate() {
        let id = 9960 + n as i64;
        let sent = fake
            .wait_for(WAIT, |sent| {
                sent.iter()
                    .any(|s| s.chat_id == id && s.text.contains(words))
            })
            .await;
        assert!(
            sent.iter()
                .any(|s| s.chat_id == id && s.text.contains(words)),
            "{what}: {:#?}",
            sent.iter().filter(|s| s.chat_id == id).collect::<Vec<_>>()
        );
    }
    let grew = peak_rss_kb().saturating_sub(before);
    eprintln!("hostile uploads: peak RSS grew by {grew} KB (test process, all tests)");
    assert!(grew < 512 * 1024, "peak memory grew by {grew} KB");
    let db = app.stop().await;
    let store = db.store();
    for (n, (what, _, _)) in cases.iter().enumerate() {
        let id = format!("telegram:{}", 9960 + n);
        assert_eq!(
            balance_of(store, &id).await,
            (10, 0),
            "{what}: nothing charged or held"
        );
    }
    let audit = store.audit().await.expect("audit");
    assert!(audit.is_clean(), "{audit}");
}

/// This process's peak resident memory (`VmHWM`), in KB.
fn peak_rss_kb() -> u64 {
    peak_rss_kb_of("self")
}

/// A process's peak resident memory (`VmHWM`), in KB; `process` is a pid or `self`.
fn peak_rss_kb_of(process: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{process}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// The same uploads sent to the real binary in a process of its own, so that its peak memory
/// is the figure for them and for nothing else: read once the bot has answered a first
/// message (its resting size) and again after every hostile upload and a 100-photo album have
/// been answered. None of it may cost a credit, and `imagegpt audit` passes afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_hostile_uploads_keep_the_serving_process_small() {
    let fake = FakeTelegram::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("imagegpt.db").display());
    let mut child = serve(dir.path(), &url, &fake.url());
    let pid = child.id().to_string();
    let first = Chat::private(9990);
    fake.message(&first, 9990, "/balance");
    fake.wait_for(WAIT, |sent| {
        count(sent, 9990, "sendMessage", "Your balance") == 1
    })
    .await;
    let resting = peak_rss_kb_of(&pid);

    let cases = hostile_uploads();
    for (n, (_, bytes, _)) in cases.iter().enumerate() {
        let id = 9991 + n as i64;
        let file = fake.upload(bytes.clone());
        fake.document(&Chat::private(id), id, &file, "image/png", "/enhance");
    }
    let album_sender = Chat::private(9989);
    let photo = fake.upload(png_declaring(640, 480));
    fake.photo(
        &album_sender,
        9989,
        &photo,
        Some("/enhance"),
        Some("big-album"),
    );
    for _ in 1..100 {
        fake.photo(&album_sender, 9989, &photo, None, Some("big-album"));
    }
    let answered = |sent: &[Sent]| {
        // A job's ending is an edit of its status message.
        cases.iter().enumerate().all(|(n, (_, _, words))| {
            sent.iter()
                .any(|s| s.chat_id == 9991 + n as i64 && s.text.contains(words))
        }) && count(sent, 9989, "sendMessage", "more than 10 photos") == 1
    };
    let sent = fake.wait_for(WAIT, answered).await;
    assert!(answered(&sent), "every upload answered: {sent:#?}");
    let peak = peak_rss_kb_of(&pid);
    eprintln!(
        "hostile uploads, served process alone: resting peak RSS {resting} KB, peak after {} \
         uploads and a 100-photo album {peak} KB (+{} KB)",
        cases.len(),
        peak.saturating_sub(resting)
    );
    assert!(peak > 0, "the peak was read");
    assert!(
        peak < resting + 128 * 1024,
        "peak memory went from {resting} KB to {peak} KB"
    );

    for id in (9991..9991 + cases.len() as i64).chain([9989]) {
        fake.message(&Chat::private(id), id, "/balance");
    }
    let sent = fake
        .wait_for(WAIT, |sent| {
            (9991..9991 + cases.len() as i64)
                .chain([9989])
                .all(|id| count(sent, id, "sendMessage", "Your balance") == 1)
        })
        .await;
    for id in (9991..9991 + cases.len() as i64).chain([9989]) {
        assert_eq!(
            count(&sent, id, "sendMessage", "Your balance: 10 credits"),
            1,
            "{id} paid nothing: {:#?}",
            sent.iter().filter(|s| s.chat_id == id).collect::<Vec<_>>()
        );
    }
    child.kill().expect("stop");
    child.wait().expect("reaped");
    let audit = std::process::Command::new(env!("CARGO_BIN_EXE_imagegpt"))
        .arg("audit")
        .current_dir(dir.path())
        .env_clear()
        .env("DATABASE_URL", &url)
        .output()
        .expect("audit runs");
    assert!(
        audit.status.success(),
        "{}{}",
        String::from_utf8_lossy(&audit.stdout),
        String::from_utf8_lossy(&audit.stderr)
    );
}

/// Telegram's albums hold ten items; a client that sends a hundred under one media group id is
/// not a person's. The album is answered once, refused whole with a reason, nothing of it is
/// downloaded, nothing is charged, and only eleven of its parts are ever held in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_an_album_of_a_hundred_photos_is_refused_whole_and_costs_nothing() {
    let (fake, app) = telegram_app("adversarial_album", &[], SETTINGS).await;
    let chat = Chat::private(9988);
    let photo = fake.upload(png_declaring(640, 480));
    fake.photo(&chat, 9988, &photo, Some("/enhance"), Some("huge"));
    for _ in 1..100 {
        fake.photo(&chat, 9988, &photo, None, Some("huge"));
    }
    let sent = fake
        .wait_for(WAIT, |sent| sent.iter().any(|s| s.chat_id == 9988))
        .await;
    assert!(
        count(&sent, 9988, "sendMessage", "more than 10 photos") == 1,
        "refused with its reason: {sent:#?}"
    );
    // Anything else the album would set off (a job, a second answer) has time to show.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let answers: Vec<Sent> = fake
        .sent()
        .into_iter()
        .filter(|s| s.chat_id == 9988)
        .collect();
    assert_eq!(answers.len(), 1, "one answer for the album: {answers:#?}");
    assert!(
        !fake.calls().iter().any(|call| call == "getFile"),
        "nothing of the album was downloaded: {:?}",
        fake.calls()
    );
    let db = app.stop().await;
    let store = db.store();
    assert_eq!(balance_of(store, "telegram:9988").await, (10, 0));
    let audit = store.audit().await.expect("audit");
    assert!(audit.is_clean(), "{audit}");
}

/// A provider that answers garbage bytes, succeeds with no output, or never finishes: each job
/// ends, the person is told, and nothing is charged or left on hold; the hung run is cancelled
/// at the provider so it is not billed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_a_misbehaving_provider_ends_the_job_without_a_charge() {
    use fakes::replicate::{FakeReplicate, Script};

    let replicate = FakeReplicate::start("r8_adversarial").await;
    let replicate_url = replicate.url();
    let (fake, app) = telegram_app(
        "adversarial_providers",
        &[
            ("REPLICATE_API_TOKEN", "r8_adversarial"),
            ("REPLICATE_API_URL", replicate_url.as_str()),
        ],
        &format!(
            "{SETTINGS}\n[providers.replicate]\npoll_ms = 20\n\n[jobs]\nmax_attempts = 1\n\n\
             [operations.image]\ntimeout_seconds = 2\n"
        ),
    )
    .await;
    let cases = [
        (9970, Script::Garbage, "failed"),
        (9971, Script::Empty, "failed"),
        (9972, Script::Hang, "failed"),
    ];
    for (id, script, _) in &cases {
        replicate.script(script.clone());
        fake.message(&Chat::private(*id), *id, "/imagine a bell tower");
        // One at a time, so that each prediction gets its own script.
        fake.wait_for(WAIT, |sent| sent.iter().any(|s| s.chat_id == *id))
            .await;
    }
    for (id, _, words) in &cases {
        let sent = fake
            .wait_for(WAIT, |sent| {
                sent.iter()
                    .any(|s| s.chat_id == *id && s.text.to_lowercase().contains(words))
            })
            .await;
        let mine: Vec<&Sent> = sent.iter().filter(|s| s.chat_id == *id).collect();
        assert!(
            mine.iter().any(|s| s.text.to_lowercase().contains(words)),
            "{id}: {mine:#?}"
        );
        assert!(
            mine.iter().all(|s| s.method != "sendPhoto"),
            "{id}: {mine:#?}"
        );
    }
    assert_eq!(replicate.cancelled().len(), 1, "the hung run was cancelled");
    let db = app.stop().await;
    let store = db.store();
    for (id, _, _) in &cases {
        assert_eq!(
            balance_of(store, &format!("telegram:{id}")).await,
            (10, 0),
            "{id}: nothing charged or held"
        );
    }
    let audit = store.audit().await.expect("audit");
    assert!(audit.is_clean(), "{audit}");
}

/// A TCP proxy to PostgreSQL that a test can cut (every connection dropped, new ones refused)
/// and restore, to stand for the database becoming unreachable.
struct Proxy {
    addr: std::net::SocketAddr,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn to(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let links = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (flag, held) = (cut.clone(), links.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if flag.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                let upstream = upstream.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                held.lock().expect("links").push(link.abort_handle());
            }
        });
        Proxy {
            addr,
            cut,
            links,
            task,
        }
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for link in self.links.lock().expect("links").drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The database unreachable for ten seconds under load: what arrives meanwhile is answered
/// once it is back (Telegram keeps what was not taken), the job queued before the cut is
/// finished, everything is charged once, and the books balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_the_database_unreachable_for_ten_seconds_loses_and_doubles_nothing() {
    let Some(db) = TestDb::new(Backend::Postgres, "adversarial_database_outage").await else {
        eprintln!("skipped: PostgreSQL is not available (set TEST_POSTGRES_URL)");
        return;
    };
    let url = url::Url::parse(db.url()).expect("a URL");
    let upstream = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5432)
    );
    let proxy = Proxy::to(upstream).await;
    let mut through = url.clone();
    through.set_port(Some(proxy.addr.port())).expect("port");
    let _ = through.set_host(Some("127.0.0.1"));
    let fake = FakeTelegram::start(TOKEN).await;
    let telegram = fake.url();
    let app = spawn_instance_on(
        through.as_str(),
        &[
            ("TELEGRAM_BOT_TOKEN", TOKEN),
            ("TELEGRAM_API_URL", telegram.as_str()),
            ("WELCOME_CREDITS", "10"),
        ],
        SETTINGS,
    )
    .await;
    let (ann, bob) = (Chat::private(9980), Chat::private(9981));
    fake.message(&ann, 9980, "/balance");
    fake.wait_for(WAIT, |sent| {
        count(sent, 9980, "sendMessage", "Your balance") == 1
    })
    .await;

    proxy.cut();
    fake.message(&ann, 9980, "/imagine a quiet harbour");
    fake.message(&bob, 9981, "/balance");
    tokio::time::sleep(Duration::from_secs(10)).await;
    proxy.restore();

    let sent = fake
        .wait_for(Duration::from_secs(60), |sent| {
            count(sent, 9980, "sendPhoto", "") == 1
                && count(sent, 9981, "sendMessage", "Your balance") == 1
        })
        .await;
    assert_eq!(count(&sent, 9980, "sendPhoto", ""), 1, "{sent:#?}");
    assert_eq!(
        count(&sent, 9981, "sendMessage", "Your balance"),
        1,
        "{sent:#?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = fake.sent();
    assert_eq!(
        count(&sent, 9980, "sendMessage", "queued"),
        1,
        "asked once: {sent:#?}"
    );
    app.stop().await;
    let store = db.store();
    assert_eq!(
        balance_of(store, "telegram:9980").await.0,
        9,
        "charged once"
    );
    let audit = store.audit().await.expect("audit");
    assert!(audit.is_clean(), "{audit}");
}

/// A small deterministic shuffle (the test must replay the same order when it fails).
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        items.swap(i, (seed >> 33) as usize % (i + 1));
    }
}

/// Two instances take 1,000 Stripe events (duplicates, refunds made on Stripe's side and
/// disputes among them) for 200 purchases, in a shuffled order, half each, while the buyers
/// spend their credits: every purchase is credited exactly once, no wallet goes below zero,
/// and the books balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_a_thousand_shuffled_stripe_events_on_two_instances_credit_each_purchase_once()
{
    use bot_core::{
        Credits,
        ledger::{SystemAccount, TransferKind, TransferRequest},
        payments::PurchaseState,
        service::{ChatKind, ChatRef},
        store::testing::stripe_order,
    };
    use fakes::stripe::{FakeStripe, Session, sign};

    const KEY: &str = "sk_test_races";
    const HOOK: &str = "whsec_races";
    let Some(db) = TestDb::with_connections(Backend::Postgres, "adversarial_stripe_races", 8).await
    else {
        eprintln!("skipped: PostgreSQL is not available (set TEST_POSTGRES_URL)");
        return;
    };
    let stripe = FakeStripe::start(KEY).await;
    let stripe_url = stripe.url();
    let env = [
        ("STRIPE_SECRET_KEY", KEY),
        ("STRIPE_WEBHOOK_SECRET", HOOK),
        ("STRIPE_API_URL", stripe_url.as_str()),
        ("PUBLIC_BASE_URL", "https://bot.example.org"),
    ];
    let first = spawn_instance_on(db.url(), &env, SETTINGS).await;
    let second = spawn_instance_on(db.url(), &env, SETTINGS).await;
    let store = db.store().clone();

    let mut buyers = Vec::new();
    for n in 0..50 {
        let identity: Identity = format!("console:racer{n}").parse().expect("identity");
        buyers.push(store.contact(&identity).await.expect("contact").user);
    }
    let chat = ChatRef {
        platform: bot_core::Platform::Console,
        id: "races".into(),
        kind: ChatKind::Private,
    };
    let mut events = Vec::new();
    let mut purchases = Vec::new();
    for n in 0..200 {
        let buyer = &buyers[n % buyers.len()];
        let payer = format!("console:racer{}", n % buyers.len());
        let purchase = stripe_order(&store, buyer, &payer, chat.clone()).await;
        let session = Session::for_order(purchase.id, 500, "usd");
        let completed = stripe.event(
            "checkout.session.completed",
            stripe.session_object(&session, "paid"),
        );
        events.push(completed.clone());
        events.push(completed);
        events.push(stripe.event("charge.succeeded", stripe.charge_object(&session)));
        if n % 10 == 3 {
            // Refunded in Stripe's dashboard: the charge says so.
            let mut charge = stripe.charge_object(&session);
            charge["amount_refunded"] = serde_json::json!(500);
            charge["refunded"] = serde_json::json!(true);
            let refunded = stripe.event("charge.refunded", charge);
            events.push(refunded.clone());
            events.push(refunded);
        }
        if n % 10 == 7 {
            events.push(stripe.event("charge.dispute.created", stripe.dispute_object(&session)));
        }
        purchases.push(purchase.id);
    }
    let mut n = 0;
    while events.len() < 1_000 {
        events.push(events[n * 7 % events.len()].clone());
        n += 1;
    }
    shuffle(&mut events, 0x5eed);
    let events = std::sync::Arc::new(events);
    let addresses = [first.address, second.address];
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let http = reqwest::Client::new();
    let mut senders = Vec::new();
    for _ in 0..8 {
        let (events, next, http) = (events.clone(), next.clone(), http.clone());
        senders.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(body) = events.get(i) else {
                    return statuses;
                };
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                let status = http
                    .post(format!("http://{}/stripe/webhook", addresses[i % 2]))
                    .header("Stripe-Signature", sign(body, HOOK, now))
                    .body(body.clone())
                    .send()
                    .await
                    .expect("answered")
                    .status()
                    .as_u16();
                statuses.push(status);
            }
        }));
    }
    // Meanwhile the buyers spend what they have.
    let mut spenders = Vec::new();
    for s in 0..4 {
        let (store, buyers) = (store.clone(), buyers.clone());
        spenders.push(tokio::spawn(async move {
            let mut spent = 0u64;
            for k in 0..300 {
                let buyer = &buyers[(k * 7 + s) % buyers.len()];
                let amount = 1 + (k as u64 * 13 % 40);
                let done = store
                    .transfer(&TransferRequest {
                        key: format!("race-spend:{s}:{k}"),
                        debit: buyer.wallet,
                        credit: store.account(SystemAccount::GenerationRevenue),
                        amount: Credits::new(amount),
                        kind: TransferKind::Generation,
                        memo: None,
                    })
                    .await;
                if done.is_ok() {
                    spent += amount;
                }
            }
            spent
        }));
    }
    let mut statuses = Vec::new();
    for sender in senders {
        statuses.extend(sender.await.expect("sender"));
    }
    let mut spent = 0;
    for spender in spenders {
        spent += spender.await.expect("spender");
    }
    assert_eq!(statuses.len(), 1_000);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    first.stop().await;
    second.stop().await;

    let mut sold = 0;
    for id in &purchases {
        let purchase = store.purchase(*id).await.expect("read").expect("exists");
        assert_eq!(purchase.state, PurchaseState::Paid, "{id}");
        sold += purchase.credits.get();
    }
    assert_eq!(sold, 200 * 150);
    let stats = store.stats(0).await.expect("stats");
    assert_eq!(
        stats.credits_sold,
        200 * 150,
        "every purchase credited exactly once"
    );
    let mut left = 0;
    for buyer in &buyers {
        // A negative balance cannot even be read: the store refuses it as broken books.
        left += store
            .account_balance(buyer.wallet)
            .await
            .expect("a balance, never negative")
            .available()
            .get();
    }
    let taken_back = u64::try_from(stats.credits_refunded).unwrap_or(0);
    eprintln!(
        "stripe races: 1,000 events, {spent} credits spent meanwhile, {taken_back} taken back \
         for refunds, {left} left"
    );
    assert_eq!(
        left + spent + taken_back,
        200 * 150,
        "every credit is accounted for"
    );
    let audit = store.audit().await.expect("audit");
    assert!(audit.is_clean(), "{audit}");
}

/// Nobody acts as someone else: on Telegram a stranger pressing the Confirm of another
/// person's price gets "not yours" and nothing is queued or charged; on Discord a user whose
/// id equals a Telegram admin's id is no admin, and a stranger pressing another's Regenerate is
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_nobody_acts_with_another_persons_identity_or_buttons() {
    use fakes::discord::{Person, Place};

    use crate::discord_adapter::{close, open_with, option};

    // Telegram: a quote is Ann's alone.
    let (fake, app) = telegram_app("adversarial_identity_telegram", &[], SETTINGS).await;
    let (ann, bob) = (Chat::private(9701), Chat::private(9702));
    fake.message(&bob, 9702, "/start");
    fake.message(&ann, 9701, "/video waves at dusk");
    let sent = fake
        .wait_for(WAIT, |sent| count(sent, 9701, "sendMessage", "costs") == 1)
        .await;
    let quote = sent
        .iter()
        .find(|s| s.chat_id == 9701 && s.text.contains("costs"))
        .expect("a quote")
        .clone();
    let confirm = quote.buttons[0][0].1.clone();
    fake.press(&ann, 9702, quote.message_id, &confirm);
    let sent = fake
        .wait_for(WAIT, |sent| {
            sent.iter().any(|s| s.method == "answerCallbackQuery")
        })
        .await;
    let refusal = sent
        .iter()
        .find(|s| s.method == "answerCallbackQuery")
        .expect("answered");
    assert!(refusal.text.contains("not yours"), "{refusal:?}");
    fake.press(&ann, 9701, quote.message_id, &confirm);
    let sent = fake
        .wait_for(WAIT, |sent| count(sent, 9701, "sendMessage", "queued") == 1)
        .await;
    assert_eq!(
        count(&sent, 9701, "sendMessage", "queued"),
        1,
        "Ann's own press works"
    );
    let db = app.stop().await;
    let store = db.store();
    assert_eq!(
        balance_of(store, "telegram:9702").await.0,
        10,
        "Bob paid nothing"
    );
    assert_eq!(
        balance_of(store, "telegram:9701").await.0,
        0,
        "Ann paid for her video"
    );
    assert!(store.audit().await.expect("audit").is_clean());

    // Discord: the same number as a Telegram admin is not an admin.
    let Some(server) = open_with(
        Backend::Sqlite,
        "adversarial_identity_discord",
        &[("ADMIN_IDS", "telegram:4601")],
        SETTINGS,
    )
    .await
    else {
        unreachable!("SQLite is always available");
    };
    let discord = &server.discord;
    let place = Place::guild(5601, 6601);
    let (twin, kim, eve) = (
        Person::new(4601, "Twin"),
        Person::new(4602, "Kim"),
        Person::new(4603, "Eve"),
    );
    let admin = discord.slash(
        &twin,
        &place,
        "admin",
        serde_json::json!([option(
            "command",
            3,
            serde_json::json!("grant discord:4601 500 mine")
        )]),
        serde_json::json!({}),
    );
    let answer = discord.interact(&admin).await;
    // In a server channel an unknown command gets no answer: the "thinking…" goes.
    let reply = discord
        .wait_for(WAIT, |m| {
            m.interaction.as_deref() == Some(&answer.interaction) && (m.deleted || !m.loading)
        })
        .await
        .expect("an answer");
    assert!(
        reply.deleted || reply.text().contains("Unknown command /admin"),
        "{reply:?}"
    );
    let (_, result) = discord_result(discord, &kim, &place, "a red kite").await;
    let regenerate = result.custom_ids()[0].clone();
    let press = discord.press(&eve, &place, &result, &regenerate);
    let answer = discord.interact(&press).await;
    let refusal = discord
        .wait_for(WAIT, |m| {
            m.interaction.as_deref() == Some(&answer.interaction)
                && m.text().contains("Only the person who asked")
        })
        .await
        .expect("Eve is refused");
    assert!(refusal.ephemeral(), "{refusal:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        discord
            .messages()
            .iter()
            .filter(|m| !m.deleted && !m.files.is_empty())
            .count(),
        1,
        "nothing was made for Eve"
    );
    let twin_is: Identity = "discord:4601".parse().expect("identity");
    let twin_user = server
        .app
        .db
        .store()
        .find_user(&twin_is)
        .await
        .expect("find");
    if let Some(user) = twin_user {
        let balance = server
            .app
            .db
            .store()
            .account_balance(user.wallet)
            .await
            .expect("balance");
        assert_eq!(balance.available().get(), 10, "no grant happened");
    }
    assert!(
        server
            .app
            .db
            .store()
            .admin_actions(10)
            .await
            .expect("log")
            .is_empty(),
        "nothing was recorded as an admin action"
    );
    close(server).await;
}

/// `/link` racing spending on both wallets, on two instances of one PostgreSQL: each round, one
/// person makes a code on the first instance, then, all at once, the other sends `/link CODE`
/// to the second instance while both spend on whichever instance is the other one. Whether the
/// link wins or is refused for the jobs under way, no credit is spent twice or lost: what both
/// wallets hold plus what was spent is what they were given, nothing stays on hold, every
/// success was delivered once, and the instance that did not make the link sees its wallet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_links_racing_spending_on_both_wallets_across_two_instances_lose_nothing() {
    use fakes::discord::{Person, Place};

    use crate::discord_adapter::{close, open_with, option, second_instance};

    let Some(server) = open_with(Backend::Postgres, "adversarial_link_race", &[], SETTINGS).await
    else {
        eprintln!("skipped: PostgreSQL is not available (set TEST_POSTGRES_URL)");
        return;
    };
    let discord = &server.discord;
    let second = second_instance(&server, SETTINGS).await;
    let endpoints = [
        format!("http://{}/discord/interactions", server.app.address),
        format!("http://{}/discord/interactions", second.address),
    ];
    let place = Place::guild(5701, 6701);
    let reply_to = |interaction: &str, words: &'static str| {
        let interaction = interaction.to_string();
        move |m: &fakes::discord::Message| {
            m.interaction.as_deref() == Some(interaction.as_str())
                && !m.loading
                && m.text().contains(words)
        }
    };
    const ROUNDS: u64 = 6;
    let (mut linked, mut refused) = (0, 0);
    let mut imagines = Vec::new();
    for round in 0..ROUNDS {
        let maker = Person::new(4700 + round, "Maker");
        let joiner = Person::new(4800 + round, "Joiner");
        let (first, other) = if round % 2 == 0 { (0, 1) } else { (1, 0) };
        let ask = discord.slash(
            &maker,
            &place,
            "link",
            serde_json::json!([]),
            serde_json::json!({}),
        );
        let answer = discord.interact_at(&endpoints[first], &ask).await;
        let code = discord
            .wait_for(WAIT, reply_to(&answer.interaction, "Your link code:"))
            .await
            .unwrap_or_else(|| panic!("a code: {:#?}", discord.messages()))
            .text()
            .split("Your link code:")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(|code| {
                code.trim_matches(|c: char| !c.is_ascii_alphanumeric())
                    .to_string()
            })
            .expect("the code");
        let link = discord.slash(
            &joiner,
            &place,
            "link",
            serde_json::json!([option("code", 3, serde_json::json!(code))]),
            serde_json::json!({}),
        );
        let imagine = |who: &Person, n: u64| {
            discord.slash(
                who,
                &place,
                "imagine",
                serde_json::json!([option(
                    "prompt",
                    3,
                    serde_json::json!(format!("race {round} {n}"))
                )]),
                serde_json::json!({}),
            )
        };
        let spends = [
            (imagine(&joiner, 0), first),
            (imagine(&maker, 1), first),
            (imagine(&joiner, 2), other),
            (imagine(&maker, 3), other),
        ];
        // The spending starts a little later each round, so that rounds go either way.
        let link_sent = discord.interact_at(&endpoints[other], &link);
        let lag = Duration::from_millis(15 * round);
        let endpoints = &endpoints;
        let spent = spends.iter().map(|(interaction, at)| async move {
            tokio::time::sleep(lag).await;
            discord.interact_at(&endpoints[*at], interaction).await
        });
        let (link_answer, spent) = tokio::join!(link_sent, futures_util::future::join_all(spent));
        imagines.extend(spent.into_iter().map(|a| a.interaction));
        let outcome = discord
            .wait_for(WAIT, |m| {
                m.interaction.as_deref() == Some(link_answer.interaction.as_str()) && !m.loading
            })
            .await
            .unwrap_or_else(|| panic!("a link answer: {:#?}", discord.messages()));
        if outcome.text().contains("Linked") {
            linked += 1;
        } else {
            refused += 1;
        }
    }
    // Every job ends.
    let store = server.app.db.store();
    let deadline = std::time::Instant::now() + WAIT;
    let stats = loop {
        let stats = store.stats(0).await.expect("stats");
        let open: i64 = stats
            .jobs
            .iter()
            .filter(|(_, state, _)| matches!(state.as_str(), "queued" | "running"))
            .map(|(_, _, n)| n)
            .sum();
        if open == 0 {
            break stats;
        }
        assert!(std::time::Instant::now() < deadline, "{:?}", stats.jobs);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut wallets = std::collections::BTreeMap::new();
    for round in 0..ROUNDS {
        for id in [4700 + round, 4800 + round] {
            let identity: Identity = format!("discord:{id}").parse().expect("identity");
            let user = store
                .find_user(&identity)
                .await
                .expect("lookup")
                .expect("exists");
            let balance = store.account_balance(user.wallet).await.expect("balance");
            assert_eq!(
                balance.debits_pending.get(),
                0,
                "{id}: nothing left on hold"
            );
            wallets.insert(user.wallet, balance.available().get());
        }
    }
    let left: u64 = wallets.values().sum();
    eprintln!(
        "links racing spending: {linked} linked, {refused} refused, {} spent, {left} left in {} \
         wallets",
        stats.credits_spent,
        wallets.len()
    );
    assert_eq!(wallets.len() as u64, 2 * ROUNDS - linked);
    assert_eq!(
        left + stats.credits_spent as u64,
        20 * ROUNDS,
        "held, spent and left add up to what was given"
    );
    let delivered = discord.count(|m| {
        !m.deleted
            && !m.files.is_empty()
            && m.interaction.as_ref().is_some_and(|i| imagines.contains(i))
    });
    assert_eq!(
        delivered as i64, stats.credits_spent,
        "each success delivered once"
    );
    // The instance that did not take a link forgets the joiner's old wallet at once.
    for round in 0..ROUNDS {
        let maker = store
            .find_user(
                &format!("discord:{}", 4700 + round)
                    .parse()
                    .expect("identity"),
            )
            .await
            .expect("lookup")
            .expect("exists");
        let joiner = store
            .find_user(
                &format!("discord:{}", 4800 + round)
                    .parse()
                    .expect("identity"),
            )
            .await
            .expect("lookup")
            .expect("exists");
        if maker.wallet != joiner.wallet {
            continue;
        }
        let expected = format!("{} credits", wallets[&maker.wallet]);
        let at = if round % 2 == 0 { 0 } else { 1 };
        let ask = discord.slash(
            &Person::new(4800 + round, "Joiner"),
            &place,
            "balance",
            serde_json::json!([]),
            serde_json::json!({}),
        );
        let answer = discord.interact_at(&endpoints[at], &ask).await;
        let said = discord
            .wait_for(WAIT, |m| {
                m.interaction.as_deref() == Some(answer.interaction.as_str()) && !m.loading
            })
            .await
            .expect("a balance");
        assert!(
            said.text().contains(&expected),
            "round {round}: the joined wallet's {expected}: {}",
            said.text()
        );
    }
    second.stop().await;
    close(server).await;
}

/// On Telegram a button or a message acts only for whoever sent it, on what is theirs: Bob
/// sending the data of Ann's refund Confirm, her Buy and her Forget buttons from his own chat
/// refunds nothing of hers, shows her nothing and forgets nothing of hers; in a group, a
/// message of Ann's that Bob forwards or replies to is Bob's request, answered with his
/// balance and his purchases, never hers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_anothers_buttons_forwards_and_replies_act_only_for_the_sender() {
    use crate::payments::said;

    let (fake, app) = telegram_app(
        "adversarial_buttons",
        &[("TELEGRAM_PAYMENT_RAILS", "stars")],
        SETTINGS,
    )
    .await;
    let (ann, bob) = (9721_i64, 9722_i64);
    let (ann_chat, bob_chat, group) = (Chat::private(ann), Chat::private(bob), Chat::group(-9720));
    fake.message(&bob_chat, bob, "/start");
    said(&fake, bob, "10 credits").await;
    // Ann buys 150 credits with Stars, makes an image, and asks for her refund offer.
    fake.message(&ann_chat, ann, "/buy small");
    fake.wait_for(WAIT, |_| !fake.invoices().is_empty()).await;
    let (_, payload, amount) = fake.invoices()[0].clone();
    let query = fake.pre_checkout(ann, &payload, amount);
    fake.wait_for(WAIT, |_| fake.pre_checkout_answer(&query).is_some())
        .await;
    fake.successful_payment(&ann_chat, ann, &payload, amount, "stxADVERSARIAL-1");
    said(&fake, ann, "150 credits added").await;
    fake.message(&ann_chat, ann, "/imagine a harbour at dawn");
    let result = fake
        .wait_for(WAIT, |sent| count(sent, ann, "sendPhoto", "") == 1)
        .await
        .into_iter()
        .find(|s| s.chat_id == ann && s.method == "sendPhoto")
        .expect("Ann's result");
    fake.message(&ann_chat, ann, "/balance");
    let balance = said(&fake, ann, "Your balance: 159 credits").await;
    fake.message(&ann_chat, ann, "/refund 1");
    let offer = said(&fake, ann, "as Stars").await;
    fake.message(&ann_chat, ann, "/forget");
    let forget = said(&fake, ann, "prompts").await;
    let data = |sent: &Sent, label: &str| {
        sent.buttons
            .iter()
            .flatten()
            .find(|(l, _)| l.contains(label))
            .map(|(_, d)| d.clone())
            .unwrap_or_else(|| panic!("a {label} button: {sent:?}"))
    };
    let (refund, buy) = (data(&offer, "Confirm"), data(&balance, "Buy"));
    let forget = forget
        .buttons
        .iter()
        .flatten()
        .map(|(_, d)| d.clone())
        .next()
        .unwrap_or_else(|| panic!("a forget button: {forget:?}"));
    let regenerate = data(&result, "Regenerate");
    let to_ann_before = fake.sent().iter().filter(|s| s.chat_id == ann).count();

    // Bob sends each of Ann's buttons' data from his own chat.
    for (n, pressed) in [&refund, &buy, &forget].into_iter().enumerate() {
        fake.press(&bob_chat, bob, 900_000 + n as i64, pressed);
    }
    fake.wait_for(WAIT, |sent| {
        sent.iter()
            .filter(|s| s.method == "answerCallbackQuery")
            .count()
            >= 3
    })
    .await;
    // In a group, Bob forwards Ann's commands and replies to one of hers.
    let hers = fake.message(
        &group,
        ann,
        &format!("/balance@{}", fakes::telegram::BOT_USERNAME),
    );
    fake.forward(
        &group,
        bob,
        ann,
        &format!("/balance@{}", fakes::telegram::BOT_USERNAME),
    );
    fake.forward(
        &group,
        bob,
        ann,
        &format!("/refund@{}", fakes::telegram::BOT_USERNAME),
    );
    fake.reply(
        &group,
        bob,
        hers,
        &format!("/balance@{}", fakes::telegram::BOT_USERNAME),
    );
    let sent = fake
        .wait_for(WAIT, |sent| {
            count(sent, bob, "sendMessage", "Your balance: 10 credits") == 2
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent: Vec<Sent> = fake.sent().into_iter().chain(sent).collect();
    assert!(
        count(&sent, bob, "sendMessage", "Your balance: 10 credits") >= 2,
        "the forward and the reply were Bob's: {:#?}",
        sent.iter().filter(|s| s.chat_id == bob).collect::<Vec<_>>()
    );
    assert!(
        !fake.star_refunded("stxADVERSARIAL-1"),
        "Ann's Stars were not refunded"
    );
    let to_ann: Vec<Sent> = fake
        .sent()
        .into_iter()
        .filter(|s| s.chat_id == ann)
        .skip(to_ann_before)
        .collect();
    // Her own group message is answered to her (privately, with her balance); nothing else.
    assert!(
        to_ann
            .iter()
            .all(|s| s.text.contains("Your balance: 159 credits")),
        "Ann heard nothing of Bob's presses: {to_ann:#?}"
    );
    let in_group: String = fake
        .sent()
        .iter()
        .filter(|s| s.chat_id == group.id)
        .map(|s| s.text.clone())
        .collect::<Vec<_>>()
        .join("\n");
    for secret in ["159", "150", "Stars", "credits"] {
        assert!(
            !in_group.contains(secret),
            "{secret} in the group: {in_group}"
        );
    }
    // Ann's request was not forgotten: her Regenerate still works.
    fake.press(&ann_chat, ann, result.message_id, &regenerate);
    fake.wait_for(WAIT, |sent| count(sent, ann, "sendPhoto", "") == 2)
        .await;
    assert_eq!(count(&fake.sent(), ann, "sendPhoto", ""), 2, "regenerated");
    let db = app.stop().await;
    let store = db.store();
    assert_eq!(balance_of(store, "telegram:9721").await, (158, 0));
    assert_eq!(balance_of(store, "telegram:9722").await, (10, 0));
    let audit = store.audit().await.expect("audit");
    assert!(audit.is_clean(), "{audit}");
}

/// On Discord, the same: Eve pressing Kim's refund Confirm, Buy and Forget buttons refunds
/// nothing of Kim's card purchase and forgets nothing of hers; Buy and Forget act on Eve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_on_discord_anothers_refund_buy_and_forget_buttons_act_only_for_the_presser() {
    use fakes::discord::{Message, Person, Place};

    use crate::discord_adapter::{close, open_with};

    let stripe = fakes::stripe::FakeStripe::start("sk_test_adversarial").await;
    let stripe_url = stripe.url();
    let Some(server) = open_with(
        Backend::Sqlite,
        "adversarial_discord_buttons",
        &[
            ("STRIPE_SECRET_KEY", "sk_test_adversarial"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_adversarial"),
            ("STRIPE_API_URL", stripe_url.as_str()),
            ("PUBLIC_BASE_URL", "https://bot.example.org"),
        ],
        SETTINGS,
    )
    .await
    else {
        unreachable!("SQLite is always available");
    };
    let discord = &server.discord;
    let place = Place::guild(5801, 6801);
    let (kim, eve) = (Person::new(4851, "Kim"), Person::new(4852, "Eve"));
    let answered = |interaction: String, check: fn(&Message) -> bool| async move {
        discord
            .wait_for(WAIT, |m| {
                m.interaction.as_deref() == Some(interaction.as_str()) && !m.loading && check(m)
            })
            .await
            .unwrap_or_else(|| panic!("{interaction}: {:#?}", discord.messages()))
    };
    // Kim buys the small pack by card and makes an image.
    let buy = discord.slash(
        &kim,
        &place,
        "buy",
        serde_json::json!([]),
        serde_json::json!({}),
    );
    let answer = discord.interact(&buy).await;
    let packs = answered(answer.interaction, |m| !m.custom_ids().is_empty()).await;
    let press = discord.press(&kim, &place, &packs, &packs.custom_ids()[0]);
    let pressed = discord.interact(&press).await;
    answered(pressed.interaction, |m| !m.links().is_empty()).await;
    let session = stripe.sessions().last().cloned().expect("a session");
    let event = stripe.event(
        "checkout.session.completed",
        stripe.session_object(&session, "paid"),
    );
    let status =
        crate::helpers::post_stripe_event(server.app.address, "whsec_adversarial", &event).await;
    assert_eq!(status, 200);
    discord
        .wait_for(WAIT, |m| m.content.contains("credits added"))
        .await
        .expect("Kim's purchase is credited");
    let (_, result) = discord_result(discord, &kim, &place, "a paper boat").await;
    // Her refund offer, her packs and her forget question, each with its buttons.
    let refund = discord.slash(
        &kim,
        &place,
        "refund",
        serde_json::json!([]),
        serde_json::json!({}),
    );
    let answer = discord.interact(&refund).await;
    let list = answered(answer.interaction, |m| !m.custom_ids().is_empty()).await;
    let ask = discord.press(&kim, &place, &list, &list.custom_ids()[0]);
    let asked = discord.interact(&ask).await;
    let offer = answered(asked.interaction, |m| m.text().contains("Refund order")).await;
    let forget = discord.slash(
        &kim,
        &place,
        "forget",
        serde_json::json!([]),
        serde_json::json!({}),
    );
    let answer = discord.interact(&forget).await;
    let forget = answered(answer.interaction, |m| !m.custom_ids().is_empty()).await;

    // Eve presses each of them.
    for (message, what) in [(&offer, "refund"), (&packs, "buy"), (&forget, "forget")] {
        let press = discord.press(&eve, &place, message, &message.custom_ids()[0]);
        let answer = discord.interact(&press).await;
        let said = discord
            .wait_for(WAIT, |m| {
                m.interaction.as_deref() == Some(answer.interaction.as_str()) && !m.loading
            })
            .await
            .unwrap_or_else(|| panic!("{what}: {:#?}", discord.messages()));
        assert!(said.ephemeral(), "{what}: for Eve alone: {said:?}");
        assert!(
            !said.text().contains("159") && !said.text().contains("Kim"),
            "{what}: nothing of Kim's: {}",
            said.text()
        );
    }
    assert!(
        stripe.refunds().is_empty(),
        "no refund: {:?}",
        stripe.refunds()
    );
    // Kim's request is still hers to repeat.
    let again = discord.press(&kim, &place, &result, &result.custom_ids()[0]);
    discord.interact(&again).await;
    let deadline = std::time::Instant::now() + WAIT;
    while discord.count(|m| !m.deleted && !m.files.is_empty()) < 2
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        discord.count(|m| !m.deleted && !m.files.is_empty()),
        2,
        "Kim regenerated: {:#?}",
        discord.messages()
    );
    let store = server.app.db.store();
    assert_eq!(balance_of(store, "discord:4851").await, (158, 0));
    assert_eq!(balance_of(store, "discord:4852").await, (10, 0));
    close(server).await;
}

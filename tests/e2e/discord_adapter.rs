//! Discord end to end: the application in HTTP interactions mode against the fake Discord, with
//! interactions signed by a real Ed25519 key. Each test ends with a clean audit.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bot_core::Backend;
use fakes::discord::{FakeDiscord, Message, Person, Place, Via};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

pub(super) const APPLICATION: &str = "1100000000000000001";
pub(super) const BOT_TOKEN: &str = "discord-test-bot-token";
const SETTINGS: &str = "[workers]\npoll_ms = 20\nstatus_edit_ms = 0\n";
const WAIT: Duration = Duration::from_secs(20);

pub(super) struct Server {
    pub(super) discord: FakeDiscord,
    pub(super) app: TestApp,
}

async fn open(backend: Backend, test: &str, extra: &[(&str, &str)]) -> Option<Server> {
    open_with(backend, test, extra, SETTINGS).await
}

/// The application in HTTP interactions mode against a fresh fake Discord, with `file` as its
/// configuration file.
pub(super) async fn open_with(
    backend: Backend,
    test: &str,
    extra: &[(&str, &str)],
    file: &str,
) -> Option<Server> {
    let discord = FakeDiscord::start(APPLICATION, BOT_TOKEN).await;
    let (url, key) = (discord.url(), discord.public_key());
    let mut env = vec![
        ("DISCORD_APPLICATION_ID", APPLICATION),
        ("DISCORD_BOT_TOKEN", BOT_TOKEN),
        ("DISCORD_PUBLIC_KEY", key.as_str()),
        ("DISCORD_API_URL", url.as_str()),
        ("WELCOME_CREDITS", "10"),
    ];
    env.extend_from_slice(extra);
    let app = spawn_app(backend, test).env(&env).file(file).await?;
    discord.set_endpoint(&format!("http://{}/discord/interactions", app.address));
    Some(Server { discord, app })
}

/// Another instance of the application on `server`'s database, against the same fake
/// Discord, with `file` as its configuration file.
pub(super) async fn second_instance(server: &Server, file: &str) -> crate::helpers::Instance {
    let (url, key) = (server.discord.url(), server.discord.public_key());
    crate::helpers::spawn_instance_on(
        server.app.db.url(),
        &[
            ("DISCORD_APPLICATION_ID", APPLICATION),
            ("DISCORD_BOT_TOKEN", BOT_TOKEN),
            ("DISCORD_PUBLIC_KEY", key.as_str()),
            ("DISCORD_API_URL", url.as_str()),
            ("WELCOME_CREDITS", "10"),
        ],
        file,
    )
    .await
}

pub(super) async fn close(server: Server) {
    assert_eq!(
        server.discord.bad_acks(),
        0,
        "every acknowledgement was valid"
    );
    assert_eq!(
        server.discord.late_acks(),
        0,
        "every acknowledgement was in time"
    );
    let db = server.app.stop().await;
    let audit = db.store().audit().await.expect("audit");
    assert!(audit.is_clean(), "{audit}");
}

pub(super) fn option(name: &str, kind: u8, value: Value) -> Value {
    json!({"name": name, "type": kind, "value": value})
}

fn is_result(message: &Message) -> bool {
    !message.deleted && !message.files.is_empty()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Waits for the original response of `interaction` to stop "thinking" and satisfy `check`.
async fn original(
    discord: &FakeDiscord,
    interaction: &str,
    check: impl Fn(&Message) -> bool,
) -> Message {
    discord
        .wait_for(WAIT, |m| {
            m.via == Via::Original
                && m.interaction.as_deref() == Some(interaction)
                && !m.loading
                && check(m)
        })
        .await
        .unwrap_or_else(|| panic!("original of {interaction}: {:#?}", discord.messages()))
}

async fn server_flow(backend: Backend, test: &str) {
    let Some(server) = open(backend, test, &[]).await else {
        eprintln!("skipped: {backend:?} is not available (set TEST_POSTGRES_URL)");
        return;
    };
    let discord = &server.discord;
    // Every command registered at start-up, in one overwrite.
    let global = discord
        .commands()
        .get("global")
        .cloned()
        .expect("registered");
    assert_eq!(
        global.as_array().map(Vec::len),
        Some(discord::register::commands(&bot_core::command::specs(&Default::default())).len())
    );
    // Discord checks the endpoint with a PING.
    let ping = json!({"id": discord.snowflake(), "application_id": APPLICATION, "type": 1,
                      "token": "ping-token", "version": 1});
    let pong = discord.interact(&ping).await;
    assert_eq!((pong.status, pong.body["type"].clone()), (200, json!(1)));

    let ann = Person::new(4001, "Ann");
    let bob = Person::new(4002, "Bob");
    let place = Place::guild(5001, 6001);
    let imagine = discord.slash(
        &ann,
        &place,
        "imagine",
        json!([
            option("prompt", 3, json!("a red fox in the snow")),
            option("aspect", 3, json!("16:9"))
        ]),
        json!({}),
    );
    let answer = discord.interact(&imagine).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["type"], 5, "deferred: {:?}", answer.body);
    assert!(
        answer.body["data"]["flags"].is_null(),
        "a generation is public"
    );
    let result = discord
        .wait_for(WAIT, |m| {
            is_result(m) && m.interaction.as_deref() == Some(&answer.interaction)
        })
        .await
        .unwrap_or_else(|| panic!("a result: {:#?}", discord.messages()));
    // A follow-up, or the response itself when the result beat the status message to it.
    assert!(
        matches!(result.via, Via::Followup | Via::Original),
        "{result:?}"
    );
    assert!(!result.ephemeral(), "results are public");
    let caption = result.text();
    assert!(caption.contains("a red fox in the snow"), "{caption}");
    assert!(caption.contains("1 credit"), "{caption}");
    assert!(caption.contains("balance 9 credits"), "{caption}");
    assert!(
        result.embeds[0]["image"]["url"]
            .as_str()
            .is_some_and(|url| url.starts_with("attachment://"))
    );
    let buttons = result.custom_ids();
    assert_eq!(buttons.len(), 3, "Regenerate, HD, 4K: {buttons:?}");
    assert!(buttons.iter().all(|id| id.len() <= 100));
    // The deferred response became the status line, which ends "done".
    let status = original(discord, &answer.interaction, |m| m.content.contains("done")).await;
    assert!(status.custom_ids().is_empty(), "no Cancel once done");
    assert_eq!(discord.acks(&answer.interaction), 1);

    // Bob presses Ann's Regenerate: a private note, no job, nothing charged.
    let press = discord.press(&bob, &place, &result, &buttons[0]);
    let pressed = discord.interact(&press).await;
    assert_eq!(
        pressed.body["type"], 6,
        "a button is acknowledged without a message"
    );
    let note = discord
        .wait_for(WAIT, |m| {
            m.interaction.as_deref() == Some(&pressed.interaction)
        })
        .await
        .expect("a note for Bob");
    assert!(note.ephemeral(), "{note:?}");
    assert!(note.content.contains("Only"), "{}", note.content);
    // Ann presses it: a second result.
    let press = discord.press(&ann, &place, &result, &buttons[0]);
    let pressed = discord.interact(&press).await;
    discord
        .wait_for(WAIT, |m| {
            is_result(m) && m.interaction.as_deref() == Some(&pressed.interaction)
        })
        .await
        .expect("a regenerated result");

    // Account answers are ephemeral.
    let balance = discord.slash(&ann, &place, "balance", json!([]), json!({}));
    let answer = discord.interact(&balance).await;
    assert_eq!(answer.body["data"]["flags"], 64, "{:?}", answer.body);
    let reply = original(discord, &answer.interaction, |m| {
        m.content.contains("balance")
    })
    .await;
    assert!(
        reply.content.contains("Your balance: 8 credits"),
        "{}",
        reply.content
    );
    // An error for a public command goes privately: the public "thinking…" is removed.
    let long = "word ".repeat(500);
    let empty = discord.slash(
        &bob,
        &place,
        "imagine",
        json!([option("prompt", 3, json!(long))]),
        json!({}),
    );
    let answer = discord.interact(&empty).await;
    let refusal = discord
        .wait_for(WAIT, |m| {
            m.via == Via::Followup && m.interaction.as_deref() == Some(&answer.interaction)
        })
        .await
        .expect("a private refusal");
    assert!(refusal.ephemeral(), "{refusal:?}");
    assert!(
        refusal.content.contains("limit is 2000"),
        "{}",
        refusal.content
    );
    // The public response is resolved before the private answer and deleted after it.
    let original = discord
        .wait_for(WAIT, |m| {
            m.via == Via::Original
                && m.interaction.as_deref() == Some(&answer.interaction)
                && m.deleted
        })
        .await;
    assert!(
        original.is_some(),
        "{:#?}",
        discord.original(&answer.interaction)
    );
    close(server).await;
}

#[tokio::test]
async fn a_server_flow_from_imagine_to_a_delivered_image_and_balance_on_sqlite() {
    server_flow(Backend::Sqlite, "discord_flow").await;
}

#[tokio::test]
async fn a_server_flow_from_imagine_to_a_delivered_image_and_balance_on_postgres() {
    server_flow(Backend::Postgres, "discord_flow").await;
}

#[tokio::test]
async fn attachment_commands_and_the_message_context_menu() {
    let server = open(Backend::Sqlite, "discord_attachments", &[])
        .await
        .expect("SQLite");
    let discord = &server.discord;
    let cy = Person::new(4101, "Cy");
    let place = Place::dm(6101);
    let photo = discord.attachment(fakes::png(320, 240), "photo.png", "image/png");
    let id = photo["id"].as_str().expect("id").to_string();
    let enhance = discord.slash(
        &cy,
        &place,
        "enhance",
        json!([option("image", 11, json!(id))]),
        json!({"attachments": {id.clone(): photo.clone()}}),
    );
    let answer = discord.interact(&enhance).await;
    assert_eq!(answer.body["type"], 5);
    let result = discord
        .wait_for(WAIT, |m| {
            is_result(m) && m.interaction.as_deref() == Some(&answer.interaction)
        })
        .await
        .unwrap_or_else(|| panic!("an enhanced photo: {:#?}", discord.messages()));
    assert!(
        result.text().contains("enhancement for Cy"),
        "{}",
        result.text()
    );
    // "Remove background" on any message with an image.
    let target = json!({"id": discord.snowflake(), "channel_id": "6101", "content": "look",
                        "attachments": [photo], "author": {"id": "4102", "username": "dee"}});
    let menu = discord.message_command(&cy, &place, "Remove background", target);
    let answer = discord.interact(&menu).await;
    discord
        .wait_for(WAIT, |m| {
            is_result(m) && m.interaction.as_deref() == Some(&answer.interaction)
        })
        .await
        .expect("a cut-out");
    // A message without an image is refused at once, privately, and costs nothing.
    let bare = json!({"id": discord.snowflake(), "channel_id": "6101", "content": "no image",
                      "attachments": []});
    let menu = discord.message_command(&cy, &place, "Enhance", bare);
    let answer = discord.interact(&menu).await;
    assert_eq!(answer.body["type"], 4);
    assert_eq!(answer.body["data"]["flags"], 64);
    assert!(
        answer.body["data"]["content"]
            .as_str()
            .is_some_and(|t| t.contains("no image"))
    );
    // A text file as the image is refused the same way.
    let notes = discord.attachment(b"hello".to_vec(), "notes.txt", "text/plain");
    let notes_id = notes["id"].as_str().expect("id").to_string();
    let wrong = discord.slash(
        &cy,
        &place,
        "removebg",
        json!([option("image", 11, json!(notes_id))]),
        json!({"attachments": {notes_id.clone(): notes}}),
    );
    let answer = discord.interact(&wrong).await;
    assert_eq!(answer.body["type"], 4);
    let balance = discord.slash(&cy, &place, "balance", json!([]), json!({}));
    let answer = discord.interact(&balance).await;
    let reply = original(discord, &answer.interaction, |m| {
        m.content.contains("balance")
    })
    .await;
    // 10 welcome credits, enhance 1 and remove background 1 (§4.1); refusals cost nothing.
    assert!(
        reply.content.contains("Your balance: 8 credits"),
        "{}",
        reply.content
    );
    close(server).await;
}

#[tokio::test]
async fn bad_signatures_are_refused_and_nothing_is_done() {
    let server = open(Backend::Sqlite, "discord_signatures", &[])
        .await
        .expect("SQLite");
    let discord = &server.discord;
    let eve = Person::new(4201, "Eve");
    let interaction = discord.slash(&eve, &Place::dm(6201), "balance", json!([]), json!({}));
    let body = interaction.to_string();
    let at = now().to_string();
    let good = discord.sign(&at, body.as_bytes());
    let stale_at = (now() - 600).to_string();
    let stale = discord.sign(&stale_at, body.as_bytes());
    let tampered = body.replace("balance", "history");
    let cases: [(&str, Option<&str>, Option<&str>); 5] = [
        (&body, None, None),
        (&body, Some(&good), None),
        (&body, Some(&"0".repeat(128)), Some(&at)),
        (&tampered, Some(&good), Some(&at)),
        (&body, Some(&stale), Some(&stale_at)),
    ];
    for (body, signature, timestamp) in cases {
        let answer = discord
            .deliver(&interaction, body, signature, timestamp)
            .await;
        assert_eq!(answer.status, 401, "{signature:?} {timestamp:?}");
    }
    // Signed but unreadable.
    let garbage = "{not json";
    let signature = discord.sign(&at, garbage.as_bytes());
    let answer = discord
        .deliver(&interaction, garbage, Some(&signature), Some(&at))
        .await;
    assert_eq!(answer.status, 400);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(discord.messages().is_empty(), "{:?}", discord.messages());
    assert_eq!(
        discord.acks(interaction["id"].as_str().unwrap_or_default()),
        0
    );
    // Nothing reached the core: nobody was created for the refused requests.
    let eve = server
        .app
        .db
        .store()
        .find_user(&"discord:4201".parse().expect("identity"))
        .await
        .expect("lookup");
    assert!(eve.is_none(), "{eve:?}");
    close(server).await;
}

#[tokio::test]
async fn a_job_that_outlives_its_token_is_posted_with_the_bot_token() {
    let replicate = fakes::replicate::FakeReplicate::start("r8_dc").await;
    let url = replicate.url();
    let server = open(
        Backend::Sqlite,
        "discord_expired_token",
        &[
            ("REPLICATE_API_TOKEN", "r8_dc"),
            ("REPLICATE_API_URL", url.as_str()),
        ],
    )
    .await
    .expect("SQLite");
    let discord = &server.discord;
    let fay = Person::new(4301, "Fay");
    let mut seen: Vec<String> = Vec::new();
    for (channel, denied) in [(6301_u64, false), (6302, true)] {
        replicate.script(fakes::replicate::Script::Succeed { polls: 2 });
        let place = Place::guild(5301, channel);
        if denied {
            discord.deny_channel(&channel.to_string());
        }
        let imagine = discord.slash(
            &fay,
            &place,
            "imagine",
            json!([option("prompt", 3, json!("a lighthouse at night"))]),
            json!({}),
        );
        let answer = discord.interact(&imagine).await;
        // The status shows, then the token runs out before the result is ready.
        original(discord, &answer.interaction, |m| {
            m.content.contains("queued") || m.content.contains("running")
        })
        .await;
        discord.expire(&answer.interaction);
        let posted = discord
            .wait_for(Duration::from_secs(30), |m| {
                is_result(m) && m.via == Via::Bot && !seen.contains(&m.id)
            })
            .await;
        let posted = posted.unwrap_or_else(|| panic!("posted: {:#?}", discord.messages()));
        if denied {
            assert_eq!(
                Some(posted.channel.clone()),
                discord.dm_channel(&fay.id),
                "sent in a DM"
            );
        } else {
            assert_eq!(posted.channel, channel.to_string());
        }
        assert_eq!(posted.content, format!("<@{}>", fay.id));
        assert_eq!(posted.mentions, std::slice::from_ref(&fay.id));
        // The second round waits for its own.
        seen.push(posted.id);
    }
    close(server).await;
}

#[tokio::test]
async fn an_oversized_result_is_reencoded_to_fit_the_upload_limit() {
    let server = open(Backend::Sqlite, "discord_oversized", &[])
        .await
        .expect("SQLite");
    let discord = &server.discord;
    discord.set_upload_limit(60 * 1024);
    let gil = Person::new(4401, "Gil");
    let place = Place::guild(5401, 6401);
    let imagine = discord.slash(
        &gil,
        &place,
        "imagine",
        json!([
            option("prompt", 3, json!("a detailed city skyline")),
            option("quality", 3, json!("hd"))
        ]),
        json!({}),
    );
    let answer = discord.interact(&imagine).await;
    let result = discord
        .wait_for(WAIT, |m| {
            is_result(m) && m.interaction.as_deref() == Some(&answer.interaction)
        })
        .await
        .unwrap_or_else(|| panic!("a result: {:#?}", discord.messages()));
    let (name, size) = result.files[0].clone();
    assert!(name.ends_with(".jpg"), "{name}");
    assert!(size <= 60 * 1024, "{size}");
    close(server).await;
}

#[tokio::test]
async fn rate_limits_and_a_slow_acknowledgement_are_waited_out_and_nothing_is_lost() {
    let server = open(Backend::Sqlite, "discord_rate_limits", &[])
        .await
        .expect("SQLite");
    let discord = &server.discord;
    let hal = Person::new(4501, "Hal");
    let place = Place::guild(5501, 6501);
    discord.rate_limit(4, 0.2);
    // Discord slow to take the acknowledgement: the first answers wait for it.
    discord.delay_acks(Duration::from_millis(400));
    let imagine = discord.slash(
        &hal,
        &place,
        "imagine",
        json!([option("prompt", 3, json!("a quiet harbour"))]),
        json!({}),
    );
    let answer = discord.interact(&imagine).await;
    let result = discord
        .wait_for(WAIT, |m| {
            is_result(m) && m.interaction.as_deref() == Some(&answer.interaction)
        })
        .await
        .unwrap_or_else(|| panic!("a result: {:#?}", discord.messages()));
    assert_eq!(discord.rate_limited(), 4);
    // A button's answers are follow-ups, which also wait for the acknowledgement.
    let press = discord.press(&hal, &place, &result, &result.custom_ids()[0]);
    let pressed = discord.interact(&press).await;
    discord
        .wait_for(WAIT, |m| {
            is_result(m) && m.interaction.as_deref() == Some(&pressed.interaction)
        })
        .await
        .unwrap_or_else(|| panic!("a regenerated result: {:#?}", discord.messages()));
    let status = original(discord, &answer.interaction, |m| m.content.contains("done")).await;
    assert!(!status.deleted);
    assert!(
        discord.messages().iter().all(|m| m.via != Via::Bot),
        "nothing fell back to the bot token while the interaction lived"
    );
    close(server).await;
}

#[tokio::test]
async fn linking_telegram_and_discord_spends_one_balance_from_both() {
    let telegram = fakes::telegram::FakeTelegram::start("123456:TEST-token").await;
    let telegram_url = telegram.url();
    let server = open(
        Backend::Sqlite,
        "discord_linking",
        &[
            ("TELEGRAM_BOT_TOKEN", "123456:TEST-token"),
            ("TELEGRAM_API_URL", telegram_url.as_str()),
        ],
    )
    .await
    .expect("SQLite");
    let discord = &server.discord;
    let ivy_tg = fakes::telegram::Chat::private(9301);
    telegram.message(&ivy_tg, 9301, "/link");
    let sent = telegram
        .wait_for(WAIT, |s| {
            s.iter().any(|m| m.text.contains("Your link code"))
        })
        .await;
    let text = sent
        .iter()
        .find(|m| m.text.contains("Your link code"))
        .expect("a code")
        .text
        .clone();
    let code = text
        .split_whitespace()
        .nth(3)
        .expect("the code")
        .to_string();
    let ivy = Person::new(4601, "Ivy");
    let place = Place::dm(6601);
    let link = discord.slash(
        &ivy,
        &place,
        "link",
        json!([option("code", 3, json!(code))]),
        json!({}),
    );
    let answer = discord.interact(&link).await;
    let reply = original(discord, &answer.interaction, |m| {
        m.content.contains("Linked")
    })
    .await;
    // Both had 10 welcome credits; Discord's moved over by a ledger transfer.
    assert!(
        reply.content.contains("Balance: 20 credits"),
        "{}",
        reply.content
    );
    // The same code does not work twice.
    let again = discord.slash(
        &Person::new(4602, "Jo"),
        &place,
        "link",
        json!([option("code", 3, json!(code))]),
        json!({}),
    );
    let answer = discord.interact(&again).await;
    let refused = discord
        .wait_for(WAIT, |m| {
            m.interaction.as_deref() == Some(&answer.interaction) && !m.loading
        })
        .await
        .expect("a refusal");
    assert!(!refused.content.contains("Linked:"), "{}", refused.content);
    // Spend on Discord, then see the balance on Telegram.
    let imagine = discord.slash(
        &ivy,
        &place,
        "imagine",
        json!([option("prompt", 3, json!("two moons"))]),
        json!({}),
    );
    let answer = discord.interact(&imagine).await;
    discord
        .wait_for(WAIT, |m| {
            is_result(m) && m.interaction.as_deref() == Some(&answer.interaction)
        })
        .await
        .expect("a result on Discord");
    telegram.message(&ivy_tg, 9301, "/imagine three suns");
    telegram
        .wait_for(WAIT, |s| s.iter().any(|m| m.method == "sendPhoto"))
        .await;
    telegram.message(&ivy_tg, 9301, "/balance");
    let sent = telegram
        .wait_for(WAIT, |s| s.iter().any(|m| m.text.contains("Your balance")))
        .await;
    let balance = sent
        .iter()
        .find(|m| m.text.contains("Your balance"))
        .expect("balance");
    assert!(
        balance.text.contains("Your balance: 18 credits"),
        "{}",
        balance.text
    );
    close(server).await;
}

/// Gateway mode reads `INTERACTION_CREATE` through serenity's model; recorded dispatches must
/// come out as the same core requests the HTTP endpoint makes.
#[test]
fn recorded_gateway_payloads_translate_like_http_ones() {
    let recorded: Value = serde_json::from_str(include_str!("../fixtures/discord_gateway.json"))
        .expect("recorded payloads");
    for dispatch in recorded.as_array().expect("a list") {
        assert_eq!(dispatch["t"], "INTERACTION_CREATE");
        let expected = dispatch["expect"].as_str().expect("expectation");
        let serenity: serenity::all::Interaction =
            serde_json::from_value(dispatch["d"].clone()).expect("serenity reads the dispatch");
        let through_gateway = discord::gateway::from_gateway(&serenity).expect("reads back");
        let through_http: discord::model::Interaction =
            serde_json::from_value(dispatch["d"].clone()).expect("the HTTP reading");
        let describe =
            |interaction: &discord::model::Interaction| match discord::translate::interaction(
                interaction,
                &bot_core::command::specs(&Default::default()),
            ) {
                discord::translate::Incoming::Request(t) => format!(
                    "{} {} {:?} {:?} {}",
                    t.request.identity,
                    t.request.chat.id,
                    t.request.input,
                    t.ack,
                    t.request.attachments.len()
                ),
                other => format!("{other:?}"),
            };
        assert_eq!(describe(&through_gateway), describe(&through_http));
        assert_eq!(describe(&through_gateway), expected);
    }
}

#[tokio::test]
async fn buying_on_discord_links_to_checkout_and_the_notice_reaches_the_buyer() {
    let stripe = fakes::stripe::FakeStripe::start("sk_test_discord").await;
    let stripe_url = stripe.url();
    let server = open(
        Backend::Sqlite,
        "discord_buy",
        &[
            ("STRIPE_SECRET_KEY", "sk_test_discord"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_discord"),
            ("STRIPE_API_URL", stripe_url.as_str()),
            ("PUBLIC_BASE_URL", "https://bot.example.org"),
        ],
    )
    .await
    .expect("SQLite");
    let discord = &server.discord;
    let http = reqwest::Client::new();
    let kim = Person::new(4701, "Kim");
    let place = Place::guild(5701, 6701);
    let mut interactions = Vec::new();
    let mut seen = Vec::new();
    for round in 0..2 {
        let buy = discord.slash(&kim, &place, "buy", json!([]), json!({}));
        let answer = discord.interact(&buy).await;
        assert_eq!(answer.body["data"]["flags"], 64, "/buy is private");
        let packs = original(discord, &answer.interaction, |m| !m.custom_ids().is_empty()).await;
        assert!(packs.content.contains("Credit packs"), "{}", packs.content);
        let press = discord.press(&kim, &place, &packs, &packs.custom_ids()[0]);
        let pressed = discord.interact(&press).await;
        let link = discord
            .wait_for(WAIT, |m| {
                m.interaction.as_deref() == Some(&pressed.interaction) && !m.links().is_empty()
            })
            .await
            .unwrap_or_else(|| panic!("a checkout link: {:#?}", discord.messages()));
        assert!(link.ephemeral());
        assert!(
            link.links()[0].starts_with("https://checkout.stripe.com/"),
            "{:?}",
            link.links()
        );
        let sessions = stripe.sessions();
        let session = sessions.last().expect("a session");
        assert_eq!(
            session.metadata.get("identity").map(String::as_str),
            Some("discord:4701")
        );
        interactions.extend([answer.interaction.clone(), pressed.interaction.clone()]);
        if round == 1 {
            // Paid after Kim's interactions ran out: the notice goes by DM.
            for interaction in &interactions {
                discord.expire(interaction);
            }
        }
        let event = stripe.event(
            "checkout.session.completed",
            stripe.session_object(session, "paid"),
        );
        let signature = fakes::stripe::sign(&event, "whsec_discord", now() as i64);
        for _ in 0..2 {
            let status = http
                .post(format!("http://{}/stripe/webhook", server.app.address))
                .header("Stripe-Signature", &signature)
                .body(event.clone())
                .send()
                .await
                .expect("webhook")
                .status();
            assert_eq!(status, 200);
        }
        let notice = discord
            .wait_for(WAIT, |m| {
                m.content.contains("credits added") && !m.deleted && !seen.contains(&m.id)
            })
            .await
            .unwrap_or_else(|| panic!("a notice: {:#?}", discord.messages()));
        seen.push(notice.id.clone());
        if round == 0 {
            assert!(notice.ephemeral(), "where they bought, for them only");
            assert_eq!(notice.interaction, Some(pressed.interaction.clone()));
        } else {
            assert_eq!(notice.via, Via::Bot);
            assert_eq!(Some(notice.channel.clone()), discord.dm_channel(&kim.id));
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let notices = discord
        .messages()
        .iter()
        .filter(|m| m.content.contains("credits added"))
        .count();
    assert_eq!(
        notices, 2,
        "one notice per purchase, though each event came twice"
    );
    // Kim closes her DMs and buys once more: the channel where she bought hears, naming her,
    // that an update waits; never the notice, which names her balance.
    discord.close_dms(&kim.id);
    let buy = discord.slash(&kim, &place, "buy", json!([]), json!({}));
    let answer = discord.interact(&buy).await;
    let packs = original(discord, &answer.interaction, |m| !m.custom_ids().is_empty()).await;
    let press = discord.press(&kim, &place, &packs, &packs.custom_ids()[0]);
    let pressed = discord.interact(&press).await;
    discord
        .wait_for(WAIT, |m| {
            m.interaction.as_deref() == Some(&pressed.interaction) && !m.links().is_empty()
        })
        .await
        .expect("a checkout link");
    discord.expire(&answer.interaction);
    discord.expire(&pressed.interaction);
    let sessions = stripe.sessions();
    let session = sessions.last().expect("a session");
    let event = stripe.event(
        "checkout.session.completed",
        stripe.session_object(session, "paid"),
    );
    let status =
        crate::helpers::post_stripe_event(server.app.address, "whsec_discord", &event).await;
    assert_eq!(status, 200);
    let pointer = discord
        .wait_for(WAIT, |m| m.content.contains("could not be sent privately"))
        .await
        .unwrap_or_else(|| panic!("a pointer: {:#?}", discord.messages()));
    assert_eq!(pointer.channel, place.channel(), "where she bought");
    assert!(pointer.mentions.contains(&kim.id), "{pointer:?}");
    let public: Vec<String> = discord
        .messages()
        .iter()
        .filter(|m| m.channel == place.channel() && !m.ephemeral())
        .map(Message::text)
        .collect();
    assert!(
        public
            .iter()
            .all(|t| !t.contains("credits") && !t.contains("150") && !t.contains("Your balance")),
        "{public:#?}"
    );
    close(server).await;
}

/// Runs `/music` (a priced request: confirmed first) and returns the result message.
async fn music(discord: &FakeDiscord, person: &Person, place: &Place) -> Option<Message> {
    let request = discord.slash(
        person,
        place,
        "music",
        json!([
            option("prompt", 3, json!("calm piano")),
            option("seconds", 4, json!(30))
        ]),
        json!({}),
    );
    let answer = discord.interact(&request).await;
    let quote = discord
        .wait_for(WAIT, |m| {
            m.interaction.as_deref() == Some(&answer.interaction) && !m.custom_ids().is_empty()
        })
        .await
        .unwrap_or_else(|| panic!("a quote: {:#?}", discord.messages()));
    assert!(
        quote.ephemeral(),
        "a price to confirm is for the requester only"
    );
    assert!(
        quote.content.contains("costs 5 credits"),
        "{}",
        quote.content
    );
    let confirm = discord.press(person, place, &quote, &quote.custom_ids()[0]);
    let pressed = discord.interact(&confirm).await;
    // The job answers through the interaction that asked for it (its token still lives) or
    // the press that confirmed it.
    let ours = |m: &Message| {
        [&answer.interaction, &pressed.interaction]
            .iter()
            .any(|i| m.interaction.as_deref() == Some(i.as_str()))
    };
    let status = discord
        .wait_for(WAIT, |m| {
            ours(m) && (m.content.contains("done") || m.content.contains("failed"))
        })
        .await
        .unwrap_or_else(|| panic!("a final status: {:#?}", discord.messages()));
    assert!(!status.ephemeral(), "a job's status is public");
    discord
        .messages()
        .into_iter()
        .find(|m| ours(m) && !m.embeds.is_empty())
}

#[tokio::test]
async fn a_result_too_large_to_upload_is_linked_or_costs_nothing() {
    let linked = open(
        Backend::Sqlite,
        "discord_large_linked",
        &[("PUBLIC_BASE_URL", "https://bot.example.org")],
    )
    .await
    .expect("SQLite");
    let discord = &linked.discord;
    discord.set_upload_limit(8 * 1024);
    let lu = Person::new(4801, "Lu");
    let place = Place::guild(5801, 6801);
    let result = music(discord, &lu, &place).await.expect("a result");
    assert!(result.files.is_empty(), "not attached: {result:?}");
    let url = result.links().pop().expect("a download link");
    assert!(url.starts_with("https://bot.example.org/files/"), "{url}");
    assert!(result.text().contains("calm piano"), "{}", result.text());
    let local = url.replace(
        "https://bot.example.org",
        &format!("http://{}", linked.app.address),
    );
    let http = reqwest::Client::new();
    let response = http.get(&local).send().await.expect("download");
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.expect("bytes");
    assert!(bytes.len() > 8 * 1024);
    assert_eq!(&bytes[..4], b"RIFF", "the WAV itself");
    let forged = local.replace("expires=", "expires=9");
    assert_eq!(
        http.get(&forged).send().await.expect("answer").status(),
        404
    );
    close(linked).await;

    // Without PUBLIC_BASE_URL there is no way to hand it over: the job fails, nothing is taken.
    let plain = open(Backend::Sqlite, "discord_large_plain", &[])
        .await
        .expect("SQLite");
    let discord = &plain.discord;
    discord.set_upload_limit(8 * 1024);
    assert!(music(discord, &lu, &place).await.is_none());
    let status = discord
        .messages()
        .into_iter()
        .find(|m| m.content.contains("failed"))
        .expect("a failed status");
    assert!(
        status.content.contains("no credits taken"),
        "{}",
        status.content
    );
    let balance = discord.slash(&lu, &place, "balance", json!([]), json!({}));
    let answer = discord.interact(&balance).await;
    let reply = original(discord, &answer.interaction, |m| {
        m.content.contains("balance")
    })
    .await;
    assert!(
        reply.content.contains("Your balance: 10 credits"),
        "{}",
        reply.content
    );
    close(plain).await;
}

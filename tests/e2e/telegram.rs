//! The whole application with Telegram on, started on port 0 against the in-repo fake Bot API
//! (strict like Telegram: HTML must parse, lengths and callback data are checked, 429s carry
//! `retry_after`) and the offline local provider.

use std::time::Duration;

use bot_core::Backend;
use fakes::telegram::{BOT_USERNAME, Chat, FakeTelegram, Sent};
use serde_json::json;

use crate::helpers::TestApp;

const TOKEN: &str = "123456:TEST-token";
const SETTINGS: &str =
    "[workers]\npoll_ms = 20\nstatus_edit_ms = 0\n\n[telegram]\nalbum_window_ms = 300\n";
const WAIT: Duration = Duration::from_secs(20);

async fn start(test: &str, extra: &[(&str, &str)]) -> (FakeTelegram, TestApp) {
    start_with_credits(test, "10", extra).await
}

async fn start_with_credits(
    test: &str,
    credits: &str,
    extra: &[(&str, &str)],
) -> (FakeTelegram, TestApp) {
    crate::helpers::spawn_app(Backend::Sqlite, test)
        .env(extra)
        .file(SETTINGS)
        .with_telegram(TOKEN, credits)
        .await
        .expect("SQLite is always available")
}

pub(super) async fn stop(app: TestApp) {
    let db = app.stop().await;
    let audit = db.store().audit().await.expect("audit");
    assert!(audit.is_clean(), "{audit}");
}

pub(super) fn texts(sent: &[Sent], chat: i64) -> Vec<String> {
    sent.iter()
        .filter(|s| s.chat_id == chat && s.method != "answerCallbackQuery")
        .map(|s| s.text.clone())
        .collect()
}

fn media(sent: &[Sent], chat: i64) -> Vec<&Sent> {
    sent.iter()
        .filter(|s| s.chat_id == chat && s.method.starts_with("send") && s.method != "sendMessage")
        .collect()
}

fn png(width: u32, height: u32) -> Vec<u8> {
    fakes::png(width, height)
}

#[tokio::test]
async fn a_private_session_from_start_to_a_delivered_image_and_balance() {
    let (fake, app) = start("telegram_private_session", &[]).await;
    assert_eq!(fake.commands().len(), menu_length());
    let alice = Chat::private(1001);
    fake.message(&alice, 1001, "/start");
    let sent = fake.wait_for(WAIT, |s| !texts(s, 1001).is_empty()).await;
    assert!(
        texts(&sent, 1001)[0].contains("You have 10 credits"),
        "{sent:?}"
    );
    // Markup-looking prompt text comes back exactly as typed.
    let prompt = "a <b>fox</b> & _*[ 🦊 مرحبا";
    fake.message(&alice, 1001, &format!("/imagine {prompt}"));
    let sent = fake.wait_for(WAIT, |s| !media(s, 1001).is_empty()).await;
    let result = media(&sent, 1001)[0].clone();
    assert_eq!(
        result.method, "sendPhoto",
        "a standard image goes as a photo"
    );
    assert!(result.text.contains(prompt), "{}", result.text);
    assert!(result.text.contains("1 credit"), "{}", result.text);
    let labels: Vec<&str> = result
        .buttons
        .iter()
        .flatten()
        .map(|(l, _)| l.as_str())
        .collect();
    assert_eq!(labels, ["Regenerate", "HD", "4K"]);
    // The status message went from queued to done, and no message still says "queued".
    let sent = fake
        .wait_for(WAIT, |s| {
            s.iter()
                .any(|m| m.method == "editMessageText" && m.text.contains("done"))
        })
        .await;
    let status_id = sent
        .iter()
        .find(|m| m.method == "sendMessage" && m.text.contains("queued"))
        .expect("a status message")
        .message_id;
    let last_edit = sent
        .iter()
        .rfind(|m| m.method == "editMessageText" && m.message_id == status_id)
        .expect("edited");
    assert!(last_edit.text.contains("done"), "{last_edit:?}");
    assert!(fake.calls().contains(&"sendChatAction".to_string()));
    // HD goes as a document, at full resolution.
    let hd = result.buttons[0][1].1.clone();
    fake.press(&alice, 1001, result.message_id, &hd);
    let sent = fake.wait_for(WAIT, |s| media(s, 1001).len() == 2).await;
    let upscaled = media(&sent, 1001)[1].clone();
    assert_eq!(upscaled.method, "sendDocument", "{upscaled:?}");
    assert!(upscaled.thumbnail, "a document comes with a preview");
    assert!(upscaled.text.contains("HD image"), "{}", upscaled.text);
    fake.message(&alice, 1001, "/balance");
    let sent = fake
        .wait_for(WAIT, |s| {
            texts(s, 1001).iter().any(|t| t.contains("Your balance"))
        })
        .await;
    assert!(
        texts(&sent, 1001)
            .iter()
            .any(|t| t.contains("Your balance: 7 credits")),
        "{:?}",
        texts(&sent, 1001)
    );
    stop(app).await;
}

#[tokio::test]
async fn in_a_group_the_requester_pays_and_only_they_can_press_their_buttons() {
    let (fake, app) = start("telegram_group", &[]).await;
    let group = Chat::group(5005);
    fake.message(&group, 2001, "/imagine@OtherBot a cat");
    fake.message(&group, 2001, "just chatting");
    let asked = fake.message(
        &group,
        2001,
        &format!("/imagine@{BOT_USERNAME} a lighthouse"),
    );
    let sent = fake
        .wait_for(WAIT, |s| !media(s, group.id).is_empty())
        .await;
    let result = media(&sent, group.id)[0].clone();
    assert_eq!(
        result.reply_to,
        Some(asked),
        "the result replies to the request"
    );
    assert!(
        result.text.contains("@user2001"),
        "names the requester: {}",
        result.text
    );
    let sent_before = fake.sent().len();
    // Only one request was taken: the other bot's command and chatter were ignored.
    assert_eq!(media(&fake.sent(), group.id).len(), 1);
    let regenerate = result.buttons[0][0].1.clone();
    fake.press(&group, 2002, result.message_id, &regenerate);
    let sent = fake
        .wait_for(WAIT, |s| {
            s.iter().any(|m| m.method == "answerCallbackQuery")
        })
        .await;
    let answer = sent
        .iter()
        .find(|m| m.method == "answerCallbackQuery")
        .expect("answered");
    assert!(
        answer.alert && answer.text.contains("Only the person who asked"),
        "{answer:?}"
    );
    assert_eq!(
        media(&sent, group.id).len(),
        1,
        "nothing new for the stranger"
    );
    fake.press(&group, 2001, result.message_id, &regenerate);
    let sent = fake.wait_for(WAIT, |s| media(s, group.id).len() == 2).await;
    assert_eq!(media(&sent, group.id).len(), 2);
    assert!(sent.len() > sent_before);
    assert_eq!(
        sent.iter()
            .filter(|m| m.method == "answerCallbackQuery")
            .count(),
        2,
        "every press is answered"
    );
    stop(app).await;
}

#[tokio::test]
async fn enhance_replying_to_a_photo_and_faceswap_with_an_album() {
    let (fake, app) = start("telegram_photos", &[]).await;
    let bob = Chat::private(3001);
    let photo = fake.upload(png(40, 30));
    let original = fake.photo(&bob, 3001, &photo, None, None);
    fake.reply(&bob, 3001, original, "/enhance");
    let sent = fake.wait_for(WAIT, |s| !media(s, 3001).is_empty()).await;
    let enhanced = media(&sent, 3001)[0].clone();
    assert!(enhanced.media_bytes > 0);
    assert!(enhanced.text.contains("enhancement"), "{}", enhanced.text);
    let face = fake.upload(png(48, 48));
    let target = fake.upload(png(64, 48));
    fake.photo(&bob, 3001, &face, Some("/faceswap"), Some("album-1"));
    fake.photo(&bob, 3001, &target, None, Some("album-1"));
    let sent = fake.wait_for(WAIT, |s| media(s, 3001).len() >= 2).await;
    let swapped = media(&sent, 3001)[1].clone();
    assert!(swapped.text.contains("face swap"), "{}", swapped.text);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        media(&fake.sent(), 3001).len(),
        2,
        "the album was one request"
    );
    fake.message(&bob, 3001, "/balance");
    let sent = fake
        .wait_for(WAIT, |s| {
            texts(s, 3001).iter().any(|t| t.contains("Your balance"))
        })
        .await;
    assert!(
        texts(&sent, 3001)
            .iter()
            .any(|t| t.contains("Your balance: 7 credits")),
        "enhance 1 + face swap 2: {:?}",
        texts(&sent, 3001)
    );
    stop(app).await;
}

#[tokio::test]
async fn a_file_over_telegrams_download_limit_is_refused_plainly_and_costs_nothing() {
    let (fake, app) = start("telegram_big_file", &[]).await;
    let cy = Chat::private(4001);
    let huge = fake.upload_claiming(png(8, 8), 25 * 1024 * 1024);
    fake.photo(&cy, 4001, &huge, Some("/enhance"), None);
    let sent = fake
        .wait_for(WAIT, |s| texts(s, 4001).iter().any(|t| t.contains("MB")))
        .await;
    assert!(
        texts(&sent, 4001).iter().any(|t| t.contains("20 MB")),
        "{:?}",
        texts(&sent, 4001)
    );
    fake.message(&cy, 4001, "/balance");
    let sent = fake
        .wait_for(WAIT, |s| {
            texts(s, 4001).iter().any(|t| t.contains("Your balance"))
        })
        .await;
    assert!(
        texts(&sent, 4001)
            .iter()
            .any(|t| t.contains("Your balance: 10 credits"))
    );
    stop(app).await;
}

#[tokio::test]
async fn a_429_storm_loses_nothing() {
    let (fake, app) = start("telegram_429", &[]).await;
    let dee = Chat::private(5001);
    fake.rate_limit(4, 1);
    fake.message(&dee, 5001, "/imagine a storm at sea");
    let sent = fake
        .wait_for(WAIT, |s| {
            !media(s, 5001).is_empty() && texts(s, 5001).iter().any(|t| t.contains("done"))
        })
        .await;
    assert_eq!(
        media(&sent, 5001).len(),
        1,
        "delivered once after the storm"
    );
    assert!(
        texts(&sent, 5001).iter().any(|t| t.contains("done")),
        "the status message ends saying done: {:?}",
        texts(&sent, 5001)
    );
    stop(app).await;
}

/// Telegram's limits enforced by the fake (30 messages a second overall, one a second per
/// chat): a burst of answers is paced so that almost none is refused, and none is lost.
#[tokio::test]
async fn a_burst_of_answers_keeps_to_telegrams_limits() {
    let (fake, app) = start("telegram_limits", &[]).await;
    fake.enforce_limits(30);
    let people = 40;
    for person in 0..people {
        let id = 6_000 + person;
        let chat = Chat::private(id);
        fake.message(&chat, id, "/balance");
        fake.message(&chat, id, "/help");
    }
    let expected = 2 * people as usize;
    let sent = fake
        .wait_for_count(Duration::from_secs(30), "sendMessage", expected)
        .await;
    assert_eq!(sent, expected, "every answer arrives");
    let refused = fake.limited();
    assert!(
        refused * 100 < expected,
        "{refused} of {expected} messages were refused with 429"
    );
    stop(app).await;
}

/// A busy group, under Telegram's limits as the fake enforces them (one message a second in a
/// chat, 20 a minute in a group): six people's `/imagine` there, each answered with a public
/// status message and a result, all paced so that none is refused, and none lost.
#[tokio::test]
async fn a_busy_group_gets_every_status_and_result_within_telegrams_limits() {
    let (fake, app) = start("telegram_group_limits", &[]).await;
    fake.enforce_limits(30);
    let group = Chat::group(5_151);
    let people = 6_i64;
    for person in 0..people {
        fake.message(&group, 7_100 + person, "/imagine a lighthouse at dusk");
    }
    let expected = people as usize;
    let sent = fake
        .wait_for(Duration::from_secs(60), |s| {
            media(s, group.id).len() >= expected
        })
        .await;
    assert_eq!(
        media(&sent, group.id).len(),
        expected,
        "every result arrives"
    );
    let statuses = sent
        .iter()
        .filter(|m| m.chat_id == group.id && m.method == "sendMessage")
        .count();
    assert_eq!(statuses, expected, "one status message each");
    assert_eq!(
        fake.limited(),
        0,
        "no message to the group was refused with 429 (1% of {} is less than one)",
        2 * expected
    );
    stop(app).await;
}

#[tokio::test]
async fn malformed_and_unknown_updates_are_ignored_without_a_crash() {
    let (fake, app) = start("telegram_malformed", &[]).await;
    fake.raw(
        json!({ "update_id": 900, "message_reaction": { "chat": { "id": 1, "type": "private" } } }),
    );
    fake.raw(json!({ "update_id": 901, "message": { "text": "no chat or id" } }));
    fake.raw(json!({ "update_id": 902, "callback_query": { "id": "x", "from": { "id": 1, "is_bot": false, "first_name": "A" }, "chat_instance": "c", "data": "garbage" } }));
    let eve = Chat::private(6001);
    fake.message(&eve, 6001, "/balance");
    let sent = fake
        .wait_for(WAIT, |s| {
            texts(s, 6001).iter().any(|t| t.contains("Your balance"))
        })
        .await;
    assert!(
        texts(&sent, 6001)
            .iter()
            .any(|t| t.contains("Your balance"))
    );
    let answered = sent.iter().any(|m| m.method == "answerCallbackQuery");
    assert!(answered, "even a press with bad data is answered");
    stop(app).await;
}

#[tokio::test]
async fn webhook_mode_takes_updates_with_the_right_secret_only() {
    // The webhook URL names the port the application will listen on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("address")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let hook = format!("http://{addr}/telegram/webhook");
    let (fake, app) = start(
        "telegram_webhook",
        &[
            ("HTTP_ADDR", addr.as_str()),
            ("TELEGRAM_WEBHOOK_URL", hook.as_str()),
            ("TELEGRAM_WEBHOOK_SECRET", "s3cret_token"),
        ],
    )
    .await;
    assert_eq!(
        fake.webhook(),
        Some((hook.clone(), Some("s3cret_token".into())))
    );
    let fay = Chat::private(7001);
    fake.message(&fay, 7001, "/balance");
    assert_eq!(fake.deliver_to_webhook(Some("wrong")).await, vec![401]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        texts(&fake.sent(), 7001).is_empty(),
        "a wrong secret is dropped"
    );
    fake.message(&fay, 7001, "/balance");
    assert_eq!(fake.deliver_to_webhook(None).await, vec![200]);
    let sent = fake
        .wait_for(WAIT, |s| {
            texts(s, 7001).iter().any(|t| t.contains("Your balance"))
        })
        .await;
    assert!(
        texts(&sent, 7001)
            .iter()
            .any(|t| t.contains("Your balance"))
    );
    stop(app).await;
}

#[tokio::test]
async fn video_after_a_confirmed_quote_and_music_arrive_as_animation_and_audio() {
    let (fake, app) = start_with_credits("telegram_video_music", "20", &[]).await;
    let gus = Chat::private(8001);
    fake.message(&gus, 8001, "/video waves on a beach");
    let sent = fake
        .wait_for(WAIT, |s| {
            s.iter().any(|m| m.chat_id == 8001 && !m.buttons.is_empty())
        })
        .await;
    let quote = sent
        .iter()
        .find(|m| m.chat_id == 8001 && m.text.contains("costs 10 credits"))
        .expect("a quote")
        .clone();
    let (label, confirm) = quote.buttons[0][0].clone();
    assert_eq!(label, "Confirm");
    assert!(confirm.len() <= 64);
    fake.press(&gus, 8001, quote.message_id, &confirm);
    let sent = fake.wait_for(WAIT, |s| !media(s, 8001).is_empty()).await;
    assert_eq!(media(&sent, 8001)[0].method, "sendAnimation");
    fake.message(&gus, 8001, "/music calm piano --seconds 30");
    let sent = fake
        .wait_for(WAIT, |s| {
            texts(s, 8001).iter().any(|t| t.contains("costs 5 credits"))
        })
        .await;
    let quote = sent
        .iter()
        .find(|m| m.chat_id == 8001 && m.text.contains("costs 5 credits"))
        .expect("a quote for music")
        .clone();
    fake.press(&gus, 8001, quote.message_id, &quote.buttons[0][0].1);
    let sent = fake.wait_for(WAIT, |s| media(s, 8001).len() == 2).await;
    assert_eq!(media(&sent, 8001)[1].method, "sendAudio");
    fake.message(&gus, 8001, "/buy");
    let sent = fake
        .wait_for(WAIT, |s| {
            texts(s, 8001).iter().any(|t| t.contains("Credit packs"))
        })
        .await;
    let packs = sent
        .iter()
        .find(|m| m.text.contains("Credit packs"))
        .expect("packs")
        .clone();
    assert!(!packs.buttons.is_empty());
    fake.press(&gus, 8001, packs.message_id, &packs.buttons[0][0].1);
    // Stars are Telegram's default rail: the pack comes as an invoice in XTR.
    fake.wait_for(WAIT, |_| !fake.invoices().is_empty()).await;
    let invoices = fake.invoices();
    assert_eq!(invoices.len(), 1, "{invoices:?}");
    assert_eq!((invoices[0].0, invoices[0].2), (8001, 250));
    stop(app).await;
}

#[tokio::test]
async fn an_image_sent_as_a_document_is_used_and_other_documents_are_not() {
    let (fake, app) = start("telegram_documents", &[]).await;
    let hal = Chat::private(9001);
    let pdf = fake.upload(b"%PDF-1.7 not an image".to_vec());
    fake.document(&hal, 9001, &pdf, "application/pdf", "/enhance");
    let sent = fake
        .wait_for(WAIT, |s| texts(s, 9001).iter().any(|t| t.contains("photo")))
        .await;
    assert!(
        texts(&sent, 9001)
            .iter()
            .any(|t| t.contains("Send this command with a photo")),
        "{:?}",
        texts(&sent, 9001)
    );
    let full = fake.upload(png(64, 48));
    fake.document(&hal, 9001, &full, "image/png", "/removebg");
    let sent = fake.wait_for(WAIT, |s| !media(s, 9001).is_empty()).await;
    assert!(
        media(&sent, 9001)[0].text.contains("background removal"),
        "{:?}",
        media(&sent, 9001)
    );
    stop(app).await;
}

#[tokio::test]
async fn a_replicate_video_arrives_as_a_telegram_video() {
    let replicate = fakes::replicate::FakeReplicate::start("r8_tg").await;
    let url = replicate.url();
    let (fake, app) = start_with_credits(
        "telegram_replicate_video",
        "20",
        &[
            ("REPLICATE_API_TOKEN", "r8_tg"),
            ("REPLICATE_API_URL", url.as_str()),
        ],
    )
    .await;
    let ivy = Chat::private(9101);
    fake.message(&ivy, 9101, "/video a wave breaking");
    let sent = fake
        .wait_for(WAIT, |s| {
            texts(s, 9101)
                .iter()
                .any(|t| t.contains("costs 10 credits"))
        })
        .await;
    let quote = sent
        .iter()
        .find(|m| m.chat_id == 9101 && m.text.contains("costs 10 credits"))
        .expect("a quote")
        .clone();
    fake.press(&ivy, 9101, quote.message_id, &quote.buttons[0][0].1);
    let sent = fake
        .wait_for(Duration::from_secs(30), |s| !media(s, 9101).is_empty())
        .await;
    let video = media(&sent, 9101)[0].clone();
    assert_eq!(video.method, "sendVideo", "{video:?}");
    assert!(!video.text.contains("local preview"), "{}", video.text);
    assert_eq!(replicate.created()[0].0, "bytedance/seedance-1-lite");
    stop(app).await;
}

/// The commands people see in the menu: every command but the operators'.
fn menu_length() -> usize {
    bot_core::command::specs(&Default::default())
        .iter()
        .filter(|spec| !spec.operators_only)
        .count()
}

/// Confirms a `/music` quote in `chat` and returns the final status message's text once the job
/// ended, with everything sent to the chat.
async fn confirmed_music(fake: &FakeTelegram, chat: &Chat) -> Vec<Sent> {
    fake.message(chat, chat.id, "/music calm piano --seconds 30");
    let sent = fake
        .wait_for(WAIT, |s| {
            texts(s, chat.id)
                .iter()
                .any(|t| t.contains("costs 5 credits"))
        })
        .await;
    let quote = sent
        .iter()
        .find(|m| m.chat_id == chat.id && m.text.contains("costs 5 credits"))
        .expect("a quote for music")
        .clone();
    fake.press(chat, chat.id, quote.message_id, &quote.buttons[0][0].1);
    fake.wait_for(WAIT, |s| {
        texts(s, chat.id)
            .iter()
            .any(|t| t.contains(": done") || t.contains("failed"))
    })
    .await
}

#[tokio::test]
async fn a_result_over_telegrams_upload_limit_arrives_as_a_link_or_costs_nothing() {
    let (fake, app) = start_with_credits(
        "telegram_large_linked",
        "20",
        &[("PUBLIC_BASE_URL", "https://bot.example.org")],
    )
    .await;
    // Telegram refuses uploads over its limit with 413; 8 KB stands in for 50 MB.
    fake.set_upload_limit(8 * 1024);
    let ida = Chat::private(9201);
    let sent = confirmed_music(&fake, &ida).await;
    assert!(media(&sent, ida.id).is_empty(), "nothing was uploaded");
    let linked = sent
        .iter()
        .find(|m| m.chat_id == ida.id && m.text.contains("too large to send here"))
        .unwrap_or_else(|| panic!("a link message: {:#?}", texts(&sent, ida.id)));
    assert!(linked.text.contains("calm piano"), "{}", linked.text);
    let url = linked
        .buttons
        .iter()
        .flatten()
        .find_map(|(label, data)| {
            label
                .starts_with("Download")
                .then(|| data.trim_start_matches("url:").to_string())
        })
        .unwrap_or_else(|| panic!("a Download button: {linked:?}"));
    assert!(url.starts_with("https://bot.example.org/files/"), "{url}");
    let local = url.replace(
        "https://bot.example.org",
        &format!("http://{}", app.address),
    );
    let http = reqwest::Client::new();
    let response = http.get(&local).send().await.expect("download");
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.expect("bytes");
    assert!(bytes.len() > 8 * 1024);
    assert_eq!(&bytes[..4], b"RIFF", "the WAV itself");
    for forged in [
        local.replace("sig=", "sig=0"),
        local.replace("expires=", "expires=1"),
        local.replace(".wav?", ".mp3?"),
    ] {
        let status = http.get(&forged).send().await.expect("answer").status();
        assert!(status == 404 || status == 410, "{forged}: {status}");
    }
    fake.message(&ida, ida.id, "/balance");
    let sent = fake
        .wait_for(WAIT, |s| {
            texts(s, ida.id).iter().any(|t| t.contains("Your balance"))
        })
        .await;
    assert!(
        texts(&sent, ida.id)
            .iter()
            .any(|t| t.contains("Your balance: 15 credits")),
        "delivered as a link, charged once: {:#?}",
        texts(&sent, ida.id)
    );
    stop(app).await;

    // Without PUBLIC_BASE_URL it cannot be handed over: the job fails and nothing is taken.
    let (fake, app) = start_with_credits("telegram_large_plain", "20", &[]).await;
    fake.set_upload_limit(8 * 1024);
    let jo = Chat::private(9202);
    let sent = confirmed_music(&fake, &jo).await;
    assert!(
        texts(&sent, jo.id)
            .iter()
            .any(|t| t.contains("failed, no credits taken")),
        "{:#?}",
        texts(&sent, jo.id)
    );
    fake.message(&jo, jo.id, "/balance");
    let sent = fake
        .wait_for(WAIT, |s| {
            texts(s, jo.id).iter().any(|t| t.contains("Your balance"))
        })
        .await;
    assert!(
        texts(&sent, jo.id)
            .iter()
            .any(|t| t.contains("Your balance: 20 credits")),
        "{:#?}",
        texts(&sent, jo.id)
    );
    stop(app).await;
}

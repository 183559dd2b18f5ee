//! Who sees an answer is decided in the core: account answers (balances, refunds, link codes)
//! never appear in a group or a server channel. On Telegram they go to the person's private chat
//! with the bot, or the group is told to open it first; on Discord they are ephemeral. And a
//! Discord prompt is one typed value: words in it that look like options change nothing.

use std::time::Duration;

use bot_core::Backend;
use fakes::{
    discord::{Person, Place, Via},
    telegram::{BOT_USERNAME, Chat, FakeTelegram},
};
use serde_json::{Value, json};

use crate::{
    discord_adapter::{Server, close, open_with, option},
    helpers::spawn_app,
    payments::said,
    telegram::{stop, texts},
};

const TOKEN: &str = "123456:TEST-token";
const SETTINGS: &str =
    "[workers]\npoll_ms = 20\nstatus_edit_ms = 0\n\n[telegram]\nalbum_window_ms = 300\n";
const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_telegram_group_balances_refunds_and_link_codes_go_to_the_private_chat() {
    let fake = FakeTelegram::start(TOKEN).await;
    let url = fake.url();
    let app = spawn_app(Backend::Sqlite, "visibility_telegram_group")
        .env(&[
            ("TELEGRAM_BOT_TOKEN", TOKEN),
            ("TELEGRAM_API_URL", url.as_str()),
            ("TELEGRAM_PAYMENT_RAILS", "stars"),
            ("WELCOME_CREDITS", "10"),
        ])
        .file(SETTINGS)
        .await
        .expect("SQLite is always available");
    let group = Chat::group(6006);
    let ann = 2101;
    let to_bot = |command: &str| format!("/{command}@{BOT_USERNAME}");

    // Ann has never opened a chat with the bot: it cannot write to her there, so the group is
    // told how, and hears nothing of her balance.
    fake.message(&group, ann, &to_bot("balance"));
    let pointer = said(&fake, group.id, "Open @").await;
    assert!(pointer.text.contains("@user2101"), "{}", pointer.text);
    assert!(pointer.text.contains(BOT_USERNAME), "{}", pointer.text);
    assert!(texts(&fake.sent(), ann).is_empty(), "nothing reached her");

    // She opens it and buys a pack with Stars there.
    let private = Chat::private(ann);
    fake.message(&private, ann, "/buy small");
    fake.wait_for(WAIT, |_| !fake.invoices().is_empty()).await;
    let (_, payload, amount) = fake.invoices()[0].clone();
    let query = fake.pre_checkout(ann, &payload, amount);
    fake.wait_for(WAIT, |_| fake.pre_checkout_answer(&query).is_some())
        .await;
    fake.successful_payment(&private, ann, &payload, amount, "stxVISIBLE-1");
    said(&fake, ann, "150 credits added").await;

    // Now every account answer asked in the group arrives privately; the group gets a pointer.
    let asked = fake.message(&group, ann, &to_bot("balance"));
    said(&fake, ann, "Your balance: 160 credits").await;
    let pointer = said(&fake, group.id, "private message").await;
    assert_eq!(pointer.reply_to, Some(asked), "the pointer answers her");
    fake.message(&group, ann, &to_bot("link"));
    let code = said(&fake, ann, "Your link code:").await;
    let code = code
        .text
        .split_whitespace()
        .nth(3)
        .expect("a code")
        .to_string();
    fake.message(&group, ann, &to_bot("refund"));
    said(&fake, ann, "Refundable purchases").await;
    fake.message(&group, ann, &format!("{} 1", to_bot("refund")));
    let offer = said(&fake, ann, "as Stars").await;
    // The refund's buttons work where they arrived.
    let confirm = offer
        .buttons
        .iter()
        .flatten()
        .find(|(label, _)| label.contains("Confirm"))
        .map(|(_, data)| data.clone())
        .unwrap_or_else(|| panic!("a Confirm button: {offer:?}"));
    fake.press(&private, ann, offer.message_id, &confirm);
    said(&fake, ann, "is on its way back").await;

    let in_group = texts(&fake.sent(), group.id).join("\n");
    for secret in [code.as_str(), "160", "150", "credits", "Stars", "efund"] {
        assert!(
            !in_group.contains(secret),
            "{secret:?} was shown in the group:\n{in_group}"
        );
    }
    stop(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telegram_button_pressed_in_a_group_answers_privately() {
    let fake = FakeTelegram::start(TOKEN).await;
    let url = fake.url();
    let app = spawn_app(Backend::Sqlite, "visibility_telegram_press")
        .env(&[
            ("TELEGRAM_BOT_TOKEN", TOKEN),
            ("TELEGRAM_API_URL", url.as_str()),
            ("WELCOME_CREDITS", "10"),
        ])
        .file(SETTINGS)
        .await
        .expect("SQLite is always available");
    let group = Chat::group(6007);
    let cy = 2201;
    // A quote (a video needs Confirm) is for the requester: it goes to her private chat.
    fake.message(&Chat::private(cy), cy, "/start");
    fake.message(&group, cy, &format!("/video@{BOT_USERNAME} a wave"));
    let quote = said(&fake, cy, "costs 10 credits").await;
    said(&fake, group.id, "private message").await;
    // Pressing Cancel there answers there.
    let cancel = quote.buttons[0][1].1.clone();
    fake.press(&Chat::private(cy), cy, quote.message_id, &cancel);
    said(&fake, cy, "No credits were taken").await;
    let in_group = texts(&fake.sent(), group.id).join("\n");
    assert!(!in_group.contains("costs"), "{in_group}");
    assert!(!in_group.contains("balance"), "{in_group}");
    stop(app).await;
}

async fn open_discord(test: &str, extra: &[(&str, &str)], file: &str) -> Server {
    open_with(Backend::Sqlite, test, extra, file)
        .await
        .expect("SQLite is always available")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_discord_server_balances_refunds_and_link_codes_are_ephemeral() {
    let server = open_discord("visibility_discord", &[], SETTINGS).await;
    let discord = &server.discord;
    let ann = Person::new(4101, "Ann");
    let place = Place::guild(5101, 6101);
    for (command, options, words) in [
        ("balance", json!([]), "Your balance: 10 credits"),
        ("link", json!([]), "Your link code:"),
        ("refund", json!([]), "refund"),
    ] {
        let interaction = discord.slash(&ann, &place, command, options, json!({}));
        let answer = discord.interact(&interaction).await;
        assert_eq!(
            answer.body["data"]["flags"], 64,
            "/{command}: {:?}",
            answer.body
        );
        let reply = discord
            .wait_for(WAIT, |m| {
                m.interaction.as_deref() == Some(&answer.interaction)
                    && !m.loading
                    && m.text().to_lowercase().contains(&words.to_lowercase())
            })
            .await
            .unwrap_or_else(|| panic!("/{command}: {:#?}", discord.messages()));
        assert!(reply.ephemeral(), "/{command} is for Ann alone: {reply:?}");
    }
    let public: Vec<String> = discord
        .messages()
        .iter()
        .filter(|m| !m.ephemeral() && !m.deleted)
        .map(|m| m.text())
        .collect();
    assert!(
        public
            .iter()
            .all(|t| !t.contains("link code") && !t.contains("10 credits")),
        "{public:#?}"
    );
    close(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discord_prompt_that_looks_like_options_is_drawn_as_written_at_the_standard_price() {
    let replicate = fakes::replicate::FakeReplicate::start("r8_visible").await;
    let url = replicate.url();
    let server = open_discord(
        "visibility_discord_prompt",
        &[
            ("REPLICATE_API_TOKEN", "r8_visible"),
            ("REPLICATE_API_URL", url.as_str()),
        ],
        SETTINGS,
    )
    .await;
    let discord = &server.discord;
    let ann = Person::new(4201, "Ann");
    let place = Place::guild(5201, 6201);
    let prompt = "a fox --4k --ar 21:9 -- —hd";
    let imagine = discord.slash(
        &ann,
        &place,
        "imagine",
        json!([option("prompt", 3, json!(prompt))]),
        json!({}),
    );
    let answer = discord.interact(&imagine).await;
    assert!(
        answer.body["data"]["flags"].is_null(),
        "a generation is public"
    );
    let result = discord
        .wait_for(WAIT, |m| {
            !m.deleted
                && !m.files.is_empty()
                && m.interaction.as_deref() == Some(&answer.interaction)
        })
        .await
        .unwrap_or_else(|| panic!("a result: {:#?}", discord.messages()));
    assert!(
        matches!(result.via, Via::Followup | Via::Original),
        "{result:?}"
    );
    let caption = result.text();
    assert!(caption.contains("1 credit"), "{caption}");
    assert!(caption.contains("balance 9 credits"), "{caption}");
    let created = replicate.created();
    assert_eq!(created.len(), 1, "{created:?}");
    let (model, input) = &created[0];
    assert_eq!(
        model, "black-forest-labs/flux-schnell",
        "the standard model"
    );
    assert_eq!(
        input["prompt"], prompt,
        "the prompt reaches the provider verbatim"
    );
    assert_eq!(input["aspect_ratio"], "1:1", "square: {input}");
    close(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_choices_are_what_discord_registers_and_telegram_help_lists() {
    let file = format!(
        "{SETTINGS}\n[commands]\naspect_ratios = [\"1:1\", \"5:4\", \"21:9\"]\nvideo_seconds = [4, 8]\n\
         portrait_styles = [\"noir\", \"pop-art\", \"ukiyo-e\"]\n"
    );
    let telegram = FakeTelegram::start(TOKEN).await;
    let telegram_url = telegram.url();
    let server = open_discord(
        "visibility_choices",
        &[
            ("TELEGRAM_BOT_TOKEN", TOKEN),
            ("TELEGRAM_API_URL", telegram_url.as_str()),
        ],
        &file,
    )
    .await;
    let registered = server.discord.commands()["global"].clone();
    let choices = |command: &str, option: &str| -> Vec<Value> {
        let command = registered
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == command))
            .unwrap_or_else(|| panic!("/{command} registered"));
        let option = command["options"]
            .as_array()
            .and_then(|o| o.iter().find(|o| o["name"] == option))
            .unwrap_or_else(|| panic!("/{command} {option}"));
        option["choices"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c["value"].clone())
            .collect()
    };
    assert_eq!(
        choices("imagine", "aspect"),
        [json!("1:1"), json!("5:4"), json!("21:9")]
    );
    assert_eq!(choices("video", "seconds"), [json!(4), json!(8)]);
    assert_eq!(
        choices("portrait", "style"),
        [json!("noir"), json!("pop-art"), json!("ukiyo-e")]
    );
    // The same offers in Telegram's /help, and the menu holds every command but /admin.
    let dee = 2301;
    telegram.message(&Chat::private(dee), dee, "/help");
    let help = said(&telegram, dee, "What I can do").await.text;
    for offered in [
        "1:1, 5:4, 21:9",
        "4 seconds, 8 seconds",
        "noir, pop-art, ukiyo-e",
    ] {
        assert!(help.contains(offered), "{offered:?} in:\n{help}");
    }
    assert!(help.contains("--seconds 4|8"), "{help}");
    assert!(!help.contains("/admin"), "{help}");
    let menu: Vec<String> = telegram.commands().into_iter().map(|(n, _)| n).collect();
    assert!(menu.contains(&"imagine".to_string()) && !menu.contains(&"admin".to_string()));
    // A Discord /video with a length the operator does not offer is refused before any hold.
    let ann = Person::new(4301, "Ann");
    let place = Place::guild(5301, 6301);
    let video = server.discord.slash(
        &ann,
        &place,
        "video",
        json!([
            option("prompt", 3, json!("waves")),
            option("seconds", 4, json!(5))
        ]),
        json!({}),
    );
    let answer = server.discord.interact(&video).await;
    let refusal = server
        .discord
        .wait_for(WAIT, |m| {
            m.interaction.as_deref() == Some(&answer.interaction) && m.text().contains("4 or 8")
        })
        .await
        .unwrap_or_else(|| panic!("a refusal: {:#?}", server.discord.messages()));
    assert!(refusal.ephemeral(), "{refusal:?}");
    close(server).await;
}

/// Discord keeps a deferral's visibility, and a follow-up sent while the deferral still
/// "thinks" only edits it: a price to confirm, asked in public, must still reach the requester
/// alone, and the public "thinking…" must not stay behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_to_confirm_asked_in_a_discord_channel_is_for_the_requester_alone() {
    let server = open_discord("visibility_discord_quote", &[], SETTINGS).await;
    let discord = &server.discord;
    let ann = Person::new(4301, "Ann");
    let place = Place::guild(5301, 6301);
    let video = discord.slash(
        &ann,
        &place,
        "video",
        json!([option("prompt", 3, json!("waves at dusk"))]),
        json!({}),
    );
    let answer = discord.interact(&video).await;
    assert!(answer.body["data"]["flags"].is_null(), "/video is public");
    let quote = discord
        .wait_for(WAIT, |m| {
            m.interaction.as_deref() == Some(&answer.interaction) && m.text().contains("costs")
        })
        .await
        .unwrap_or_else(|| panic!("a quote: {:#?}", discord.messages()));
    assert!(quote.ephemeral(), "the quote is for Ann alone: {quote:?}");
    assert_eq!(quote.via, Via::Followup);
    assert!(
        quote.text().contains("10 credits per 5 seconds"),
        "{quote:?}"
    );
    let original = discord
        .wait_for(WAIT, |m| {
            m.interaction.as_deref() == Some(&answer.interaction)
                && m.via == Via::Original
                && m.deleted
        })
        .await
        .unwrap_or_else(|| panic!("the public response is gone: {:#?}", discord.messages()));
    assert!(!original.text().contains("costs"), "{original:?}");
    close(server).await;
}

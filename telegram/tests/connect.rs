//! Connecting to the fake Bot API.

use secrecy::SecretString;

/// Settings for the bot `token` against `fake`.
fn config(fake: &fakes::telegram::FakeTelegram, token: &str) -> telegram::TelegramConfig {
    telegram::TelegramConfig {
        bot_token: Some(SecretString::from(token.to_string())),
        api_url: fake.url(),
        ..telegram::TelegramConfig::default()
    }
}

#[tokio::test]
async fn connects_registers_commands_and_never_shows_its_token() {
    let fake = fakes::telegram::FakeTelegram::start("123456:TEST-token").await;
    let config = config(&fake, "123456:TEST-token");
    let connected = telegram::Telegram::connect(&config, &Default::default(), &[], None)
        .await
        .expect("connects");
    let menu = bot_core::command::specs(&Default::default())
        .iter()
        .filter(|spec| !spec.operators_only)
        .count();
    assert_eq!(fake.commands().len(), menu);
    assert!(!fake.commands().iter().any(|(name, _)| name == "admin"));
    assert_eq!(
        fake.calls(),
        [
            "getMe",
            "setMyCommands",
            "setMyCommands",
            "setMyCommands",
            "deleteWebhook"
        ]
    );
    let shown = format!("{connected:?} {:?}", connected.messenger());
    assert!(
        !shown.contains("TEST-token"),
        "the token never shows: {shown}"
    );
    assert!(shown.contains("ImageGptTestBot"), "{shown}");
}

#[tokio::test]
async fn a_refused_token_stops_start_up_without_showing_it() {
    let fake = fakes::telegram::FakeTelegram::start("123456:TEST-token").await;
    let config = config(&fake, "999:WRONG-token");
    let error = telegram::Telegram::connect(&config, &Default::default(), &[], None)
        .await
        .expect_err("refused");
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("WRONG-token"), "{shown}");
}

#[tokio::test]
async fn an_edit_that_changes_nothing_is_not_an_error() {
    use bot_core::{
        Platform,
        service::{ChatKind, ChatRef},
    };
    let fake = fakes::telegram::FakeTelegram::start("123456:TEST-token").await;
    let config = config(&fake, "123456:TEST-token");
    let messenger = telegram::Telegram::connect(&config, &Default::default(), &[], None)
        .await
        .expect("connects")
        .messenger();
    // Bots may only write to people who opened a chat with them.
    fake.message(&fakes::telegram::Chat::private(42), 42, "/start");
    let chat = ChatRef {
        platform: Platform::Telegram,
        id: "42".into(),
        kind: ChatKind::Private,
    };
    let message = messenger
        .send_text(&chat, None, "#1 image: running", &[])
        .await
        .expect("sent");
    // Telegram answers 400 "message is not modified"; for a status line that is success.
    messenger
        .edit_text(&message, "#1 image: running", &[])
        .await
        .expect("an unchanged edit is fine");
    messenger
        .edit_text(&message, "#1 image: done", &[])
        .await
        .expect("edited");
    let edits: Vec<_> = fake
        .sent()
        .into_iter()
        .filter(|s| s.method == "editMessageText")
        .map(|s| s.text)
        .collect();
    assert_eq!(
        edits,
        ["#1 image: done"],
        "the unchanged edit was refused by the fake"
    );
}

/// Telegram picks a menu per chat from the scopes set: people see everyone's commands in their
/// private chat, a group sees the commands whose answers it sees, and only an operator (an
/// `ADMIN_IDS` entry for Telegram) sees `/admin`, in their own private chat.
#[tokio::test]
async fn menus_are_set_per_scope_and_only_operators_see_admin() {
    let fake = fakes::telegram::FakeTelegram::start("123456:TEST-token").await;
    let config = config(&fake, "123456:TEST-token");
    let operators = [
        "telegram:42".parse().expect("an identity"),
        "discord:42".parse().expect("an identity"),
    ];
    telegram::Telegram::connect(&config, &Default::default(), &operators, None)
        .await
        .expect("connects");
    let names = |menu: Vec<(String, String)>| -> Vec<String> {
        menu.into_iter().map(|(name, _)| name).collect()
    };
    let operator = names(fake.menu_seen(42, 42, false));
    let person = names(fake.menu_seen(7, 7, false));
    let group = names(fake.menu_seen(-100_123, 7, true));
    assert!(operator.contains(&"admin".to_string()), "{operator:?}");
    assert!(operator.contains(&"balance".to_string()), "{operator:?}");
    assert!(!person.contains(&"admin".to_string()), "{person:?}");
    assert!(person.contains(&"balance".to_string()), "{person:?}");
    assert!(person.contains(&"link".to_string()), "{person:?}");
    // A group's menu: what the group sees answered, nothing private and no /admin, even for a
    // group administrator or the operator writing in a group.
    for menu in [&group, &names(fake.menu_seen(-100_123, 42, false))] {
        assert!(menu.contains(&"imagine".to_string()), "{menu:?}");
        assert!(menu.contains(&"help".to_string()), "{menu:?}");
        for private in ["balance", "link", "refund", "admin"] {
            assert!(!menu.contains(&private.to_string()), "{menu:?}");
        }
    }
    // The Discord operator's id is not a Telegram chat: one scope per Telegram operator.
    assert!(fake.commands_in("chat:42").len() > person.len());
    assert_eq!(
        fake.calls()
            .iter()
            .filter(|call| *call == "setMyCommands")
            .count(),
        4
    );
}

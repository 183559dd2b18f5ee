//! Connecting to the fake Bot API.

use secrecy::SecretString;

#[tokio::test]
async fn connects_registers_commands_and_never_shows_its_token() {
    let fake = fakes::telegram::FakeTelegram::start("123456:TEST-token").await;
    let config = telegram::TelegramConfig {
        bot_token: Some(SecretString::from("123456:TEST-token".to_string())),
        api_url: fake.url(),
        ..telegram::TelegramConfig::default()
    };
    let connected = telegram::Telegram::connect(&config, &Default::default(), None)
        .await
        .expect("connects");
    let menu = bot_core::command::specs(&Default::default())
        .iter()
        .filter(|spec| !spec.operators_only)
        .count();
    assert_eq!(fake.commands().len(), menu);
    assert!(!fake.commands().iter().any(|(name, _)| name == "admin"));
    assert_eq!(fake.calls(), ["getMe", "setMyCommands", "deleteWebhook"]);
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
    let config = telegram::TelegramConfig {
        bot_token: Some(SecretString::from("999:WRONG-token".to_string())),
        api_url: fake.url(),
        ..telegram::TelegramConfig::default()
    };
    let error = telegram::Telegram::connect(&config, &Default::default(), None)
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
    let config = telegram::TelegramConfig {
        bot_token: Some(SecretString::from("123456:TEST-token".to_string())),
        api_url: fake.url(),
        ..telegram::TelegramConfig::default()
    };
    let messenger = telegram::Telegram::connect(&config, &Default::default(), None)
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

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
    let connected = telegram::Telegram::connect(&config)
        .await
        .expect("connects");
    assert_eq!(fake.commands().len(), bot_core::command::USAGE.len());
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
    let error = telegram::Telegram::connect(&config)
        .await
        .expect_err("refused");
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("WRONG-token"), "{shown}");
}

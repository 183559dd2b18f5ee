//! Connecting to the fake Bot API.

use secrecy::SecretString;

#[tokio::test]
async fn connects_and_registers_commands() {
    let fake = fakes::telegram::FakeTelegram::start("123456:TEST-token").await;
    let config = telegram::TelegramConfig {
        bot_token: Some(SecretString::from("123456:TEST-token".to_string())),
        api_url: fake.url(),
        ..telegram::TelegramConfig::default()
    };
    let connected = telegram::Telegram::connect(&config).await;
    eprintln!("calls {:?}", fake.calls());
    connected.expect("connects");
    assert_eq!(fake.commands().len(), bot_core::command::USAGE.len());
}

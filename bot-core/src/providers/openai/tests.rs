//! The OpenAI client against the fake OpenAI: generations and edits, sizes, the configured model,
//! and the error answers the real API gives.

use fakes::openai::FakeOpenAi;

use super::*;
use crate::{
    command::AspectRatio,
    media::{MediaKind, MediaLimits, Upload, tests::png},
};

const KEY: &str = "sk-test-key";

fn provider(fake: &FakeOpenAi, key: &str) -> OpenAi {
    OpenAi::from_config(&OpenAiConfig {
        api_key: Some(SecretString::from(key.to_string())),
        base_url: fake.base_url(),
        model: "gpt-image-1.5".into(),
        ..OpenAiConfig::default()
    })
    .expect("key configured")
}

fn request(operation: Operation, aspect: &str) -> GenerationRequest {
    let inputs = if operation == Operation::Portrait {
        vec![Upload::check(png(40, 30), &MediaLimits::default()).expect("photo")]
    } else {
        Vec::new()
    };
    GenerationRequest {
        operation,
        prompt: Some("a red fox in snow".into()),
        negative: Some("people".into()),
        seed: None,
        aspect: AspectRatio::parse(aspect).expect("ratio"),
        style: Some("watercolour".into()),
        inputs,
    }
}

async fn generate(provider: &OpenAi, request: &GenerationRequest) -> Result<Output, ProviderError> {
    provider.generate(Run::new(request)).await
}

#[tokio::test]
async fn images_use_the_configured_model_and_the_nearest_size() {
    let fake = FakeOpenAi::start(KEY).await;
    let openai = provider(&fake, KEY);
    let wide = generate(
        &openai,
        &request(Operation::Image(Quality::Standard), "16:9"),
    )
    .await
    .expect("generated");
    assert_eq!(wide.kind, MediaKind::Image);
    assert_eq!(wide.dimensions, Some((1536, 1024)));
    let tall = generate(&openai, &request(Operation::Image(Quality::Hd), "2:3"))
        .await
        .expect("generated");
    assert_eq!(tall.dimensions, Some((1024, 1536)));
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter()
            .all(|s| s.model == "gpt-image-1.5" && s.endpoint == "generations")
    );
    assert!(seen[0].prompt.contains("Avoid: people"));
    assert!(!openai.supports(Operation::Image(Quality::FourK)));
    assert!(!openai.supports(Operation::Enhance));
}

#[tokio::test]
async fn portraits_are_edits_of_the_uploaded_photo() {
    let fake = FakeOpenAi::start(KEY).await;
    let openai = provider(&fake, KEY);
    generate(&openai, &request(Operation::Portrait, "1:1"))
        .await
        .expect("edited");
    let seen = fake.seen();
    assert_eq!(seen[0].endpoint, "edits");
    assert_eq!(seen[0].images, 1);
    assert!(seen[0].prompt.contains("watercolour portrait"));
}

#[tokio::test]
async fn moderation_blocks_are_refusals_said_plainly() {
    let fake = FakeOpenAi::start(KEY).await;
    fake.block("fox");
    let openai = provider(&fake, KEY);
    let error = generate(
        &openai,
        &request(Operation::Image(Quality::Standard), "1:1"),
    )
    .await
    .expect_err("blocked");
    assert_eq!(
        error,
        ProviderError::Refused(
            "OpenAI's safety system refused this request. Try rewording it.".into()
        )
    );
}

#[tokio::test]
async fn a_wrong_key_and_server_errors_are_outages() {
    let fake = FakeOpenAi::start(KEY).await;
    let wrong = provider(&fake, "sk-wrong");
    let error = generate(&wrong, &request(Operation::Image(Quality::Standard), "1:1"))
        .await
        .expect_err("401");
    assert!(matches!(error, ProviderError::Unavailable(_)), "{error:?}");
    assert!(!format!("{error:?} {wrong:?}").contains("sk-wrong"));
    fake.fail(1);
    let openai = provider(&fake, KEY);
    let error = generate(
        &openai,
        &request(Operation::Image(Quality::Standard), "1:1"),
    )
    .await
    .expect_err("500");
    assert!(matches!(error, ProviderError::Unavailable(_)), "{error:?}");
}

#[tokio::test]
async fn rate_limits_are_waited_out_then_become_a_retry() {
    let fake = FakeOpenAi::start(KEY).await;
    let openai = provider(&fake, KEY);
    fake.throttle(1);
    generate(
        &openai,
        &request(Operation::Image(Quality::Standard), "1:1"),
    )
    .await
    .expect("second try succeeds");
    fake.throttle(3);
    let error = generate(
        &openai,
        &request(Operation::Image(Quality::Standard), "1:1"),
    )
    .await
    .expect_err("throttled");
    assert!(matches!(error, ProviderError::Transient(_)), "{error:?}");
}

#[tokio::test]
async fn an_invalid_request_is_refused_with_the_reason() {
    let fake = FakeOpenAi::start(KEY).await;
    let openai = OpenAi::from_config(&OpenAiConfig {
        api_key: Some(SecretString::from(KEY.to_string())),
        base_url: fake.base_url(),
        model: String::new(),
        ..OpenAiConfig::default()
    })
    .expect("configured");
    let error = generate(
        &openai,
        &request(Operation::Image(Quality::Standard), "1:1"),
    )
    .await
    .expect_err("no model");
    assert_eq!(
        error,
        ProviderError::Refused(
            "OpenAI could not take this request: Missing required parameter: 'model'.".into()
        )
    );
}

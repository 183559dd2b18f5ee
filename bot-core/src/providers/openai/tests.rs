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
async fn images_use_the_default_model_at_the_exact_aspect_ratio() {
    let fake = FakeOpenAi::start(KEY).await;
    let openai = provider(&fake, KEY);
    let wide = generate(
        &openai,
        &request(Operation::Image(Quality::Standard), "16:9"),
    )
    .await
    .expect("generated");
    assert_eq!(wide.kind, MediaKind::Image);
    assert_eq!(wide.dimensions, Some((1360, 768)));
    let cinema = generate(&openai, &request(Operation::Image(Quality::Hd), "21:9"))
        .await
        .expect("generated");
    assert_eq!(cinema.dimensions, Some((1568, 672)));
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter()
            .all(|s| s.model == "gpt-image-2" && s.endpoint == "generations")
    );
    assert!(seen[0].prompt.contains("Avoid: people"));
    assert!(!openai.supports(Operation::Image(Quality::FourK)));
    assert!(!openai.supports(Operation::Enhance));
}

#[tokio::test]
async fn a_model_with_three_sizes_gets_the_nearest() {
    let fake = FakeOpenAi::start(KEY).await;
    let openai = OpenAi::from_config(&OpenAiConfig {
        api_key: Some(SecretString::from(KEY.to_string())),
        base_url: fake.base_url(),
        exact_sizes: false,
        ..OpenAiConfig::default()
    })
    .expect("configured");
    let tall = generate(&openai, &request(Operation::Image(Quality::Hd), "2:3"))
        .await
        .expect("generated");
    assert_eq!(tall.dimensions, Some((1024, 1536)));
}

#[test]
fn every_exact_size_is_one_openai_draws() {
    for ratio in [
        "1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "21:9", "9:21", "5:1",
    ] {
        let aspect = AspectRatio::parse(ratio).expect("ratio");
        let size = size(aspect, true);
        assert!(
            fakes::openai::flexible_size(&size).is_some(),
            "{ratio} → {size} is not drawable"
        );
    }
    assert_eq!(size(AspectRatio::SQUARE, true), "1024x1024");
}

#[tokio::test]
async fn a_retired_model_and_an_exhausted_quota_send_the_job_elsewhere_at_once() {
    let fake = FakeOpenAi::start(KEY).await;
    let retired = OpenAi::from_config(&OpenAiConfig {
        api_key: Some(SecretString::from(KEY.to_string())),
        base_url: fake.base_url(),
        model: "gpt-image-1".into(),
        ..OpenAiConfig::default()
    })
    .expect("configured");
    let error = generate(
        &retired,
        &request(Operation::Image(Quality::Standard), "1:1"),
    )
    .await
    .expect_err("shut down");
    assert_eq!(
        error,
        ProviderError::Unavailable("OpenAI does not serve the configured model".into())
    );
    fake.exhaust_quota(5);
    let openai = provider(&fake, KEY);
    let started = std::time::Instant::now();
    let error = generate(
        &openai,
        &request(Operation::Image(Quality::Standard), "1:1"),
    )
    .await
    .expect_err("no quota");
    assert_eq!(
        error,
        ProviderError::Unavailable("OpenAI billing needs attention".into())
    );
    // Not waited out like a rate limit: the quota answer names no wait.
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    assert!(fake.seen().is_empty());
}

#[test]
fn costs_follow_the_quality_asked_for() {
    let openai = OpenAi::from_config(&OpenAiConfig {
        api_key: Some(SecretString::from(KEY.to_string())),
        ..OpenAiConfig::default()
    })
    .expect("configured");
    let cost = |operation| openai.cost(operation);
    assert_eq!(
        cost(Operation::Image(Quality::Standard)),
        Usd::from_dollars(0.006)
    );
    assert_eq!(
        cost(Operation::Image(Quality::Hd)),
        Usd::from_dollars(0.053)
    );
    assert_eq!(cost(Operation::Portrait), Usd::from_dollars(0.065));
    assert_eq!(
        openai.model(Operation::Portrait).as_deref(),
        Some("gpt-image-2")
    );
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

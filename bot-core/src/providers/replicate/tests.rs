//! The Replicate client against the fake Replicate: every default model, the error answers the
//! real API gives, resuming a run instead of paying twice, progress, and cancelling.

use std::sync::Mutex;

use fakes::replicate::{FakeReplicate, Script};

use super::*;
use crate::{
    command::AspectRatio,
    media::{MediaKind, MediaLimits, Upload, tests::png},
    providers::Progress,
};

const TOKEN: &str = "r8_test_token";

fn config(fake: &FakeReplicate, token: &str) -> ReplicateConfig {
    ReplicateConfig {
        api_token: Some(SecretString::from(token.to_string())),
        api_url: fake.url(),
        poll_ms: 10,
        ..ReplicateConfig::default()
    }
}

fn provider(fake: &FakeReplicate) -> Replicate {
    Replicate::from_config(&config(fake, TOKEN)).expect("token configured")
}

fn photo() -> Upload {
    Upload::check(png(32, 24), &MediaLimits::default()).expect("a valid photo")
}

fn request(operation: Operation) -> GenerationRequest {
    let inputs = match operation {
        Operation::FaceSwap => vec![photo(), photo()],
        Operation::Enhance | Operation::RemoveBackground | Operation::Portrait => vec![photo()],
        _ => Vec::new(),
    };
    GenerationRequest {
        operation,
        prompt: Some("a lighthouse at dawn, 灯台 🌅".into()),
        negative: None,
        seed: Some(42),
        aspect: AspectRatio::parse("16:9").expect("ratio"),
        style: Some("oil painting".into()),
        inputs,
    }
}

/// Records what the provider reports.
#[derive(Debug, Default)]
struct Seen {
    started: Mutex<Vec<String>>,
    percents: Mutex<Vec<u8>>,
}

impl Progress for Seen {
    fn started<'a>(&'a self, id: &'a str) -> Done<'a> {
        Box::pin(async move { self.started.lock().expect("lock").push(id.to_string()) })
    }
    fn percent(&self, percent: u8) {
        self.percents.lock().expect("lock").push(percent);
    }
}

async fn generate(
    provider: &Replicate,
    request: &GenerationRequest,
    resume: Option<&str>,
    seen: &Seen,
) -> Result<Output, ProviderError> {
    provider
        .generate(Run {
            request,
            resume,
            progress: seen,
        })
        .await
}

/// A standard image nobody watches.
async fn image(provider: &Replicate) -> Result<Output, ProviderError> {
    generate(
        provider,
        &request(Operation::Image(Quality::Standard)),
        None,
        &Seen::default(),
    )
    .await
}

#[tokio::test]
async fn every_operation_runs_on_its_default_model_and_downloads_the_right_media() {
    let fake = FakeReplicate::start(TOKEN).await;
    let replicate = provider(&fake);
    let cases = [
        (Operation::Image(Quality::Standard), MediaKind::Image),
        (Operation::Image(Quality::Hd), MediaKind::Image),
        (Operation::Image(Quality::FourK), MediaKind::Image),
        (Operation::Enhance, MediaKind::Image),
        (Operation::RemoveBackground, MediaKind::Image),
        (Operation::FaceSwap, MediaKind::Image),
        (Operation::Portrait, MediaKind::Image),
        (Operation::Video { seconds: 5 }, MediaKind::Video),
        (Operation::Music { seconds: 30 }, MediaKind::Audio),
    ];
    for (operation, kind) in cases {
        let seen = Seen::default();
        let output = generate(&replicate, &request(operation), None, &seen)
            .await
            .unwrap_or_else(|error| panic!("{operation:?}: {error}"));
        assert_eq!(output.kind, kind, "{operation:?}");
        assert!(!output.bytes.is_empty());
        assert_eq!(seen.started.lock().expect("lock").len(), 1, "{operation:?}");
    }
    let created = fake.created();
    assert_eq!(created.len(), cases.len());
    // The template turns placeholders into typed values and photos into data URIs.
    let (model, input) = &created[0];
    assert_eq!(model, "black-forest-labs/flux-schnell");
    assert_eq!(input["prompt"], "a lighthouse at dawn, 灯台 🌅");
    assert_eq!(input["seed"], 42);
    assert_eq!(input["aspect_ratio"], "16:9");
    let (_, swap) = &created[5];
    assert!(
        swap["swap_image"]
            .as_str()
            .is_some_and(|uri| uri.starts_with("data:image/png;base64,"))
    );
    let (_, portrait) = &created[6];
    assert!(
        portrait["prompt"]
            .as_str()
            .is_some_and(|p| p.contains("oil painting portrait"))
    );
    let (_, music) = &created[8];
    assert_eq!(music["duration"], 30);
}

#[tokio::test]
async fn a_wrong_token_is_an_outage_so_the_next_provider_is_tried() {
    let fake = FakeReplicate::start(TOKEN).await;
    let replicate = Replicate::from_config(&config(&fake, "r8_wrong")).expect("configured");
    let error = image(&replicate).await.expect_err("refused");
    assert!(matches!(error, ProviderError::Unavailable(_)), "{error:?}");
    assert!(!error.to_string().contains("r8_wrong"));
}

#[tokio::test]
async fn invalid_input_is_a_refusal_naming_what_was_wrong() {
    let fake = FakeReplicate::start(TOKEN).await;
    let mut config = config(&fake, TOKEN);
    // A configured model whose template forgot the prompt.
    config.models.insert(
        "image".into(),
        ModelConfig {
            model: "black-forest-labs/flux-schnell".into(),
            input: Map::new(),
            aspect_ratios: None,
            cost: None,
        },
    );
    let replicate = Replicate::from_config(&config).expect("configured");
    let error = image(&replicate).await.expect_err("invalid");
    assert_eq!(
        error,
        ProviderError::Refused(
            "The model could not take this request: - input.prompt: prompt is required".into()
        )
    );
}

#[tokio::test]
async fn rate_limits_are_waited_out_then_become_a_retry() {
    let fake = FakeReplicate::start(TOKEN).await;
    let replicate = provider(&fake);
    fake.throttle_creates(2);
    image(&replicate).await.expect("third try succeeds");
    fake.throttle_creates(5);
    let error = image(&replicate).await.expect_err("still throttled");
    assert!(matches!(error, ProviderError::Transient(_)), "{error:?}");
    assert_eq!(fake.created().len(), 1);
}

#[tokio::test]
async fn a_server_error_before_the_run_exists_falls_through_and_after_it_retries() {
    let fake = FakeReplicate::start(TOKEN).await;
    let replicate = provider(&fake);
    fake.fail_creates(1);
    let error = image(&replicate).await.expect_err("500");
    assert!(matches!(error, ProviderError::Unavailable(_)), "{error:?}");
    // Once the run exists, polling errors never start a second paid run elsewhere.
    fake.fail_polls(10);
    let error = image(&replicate).await.expect_err("polls fail");
    assert!(matches!(error, ProviderError::Transient(_)), "{error:?}");
}

#[tokio::test]
async fn a_failed_prediction_is_refused_with_the_models_reason() {
    let fake = FakeReplicate::start(TOKEN).await;
    let replicate = provider(&fake);
    fake.script(Script::Fail("No face found in the image".into()));
    let error = generate(
        &replicate,
        &request(Operation::FaceSwap),
        None,
        &Seen::default(),
    )
    .await
    .expect_err("failed");
    assert_eq!(
        error,
        ProviderError::Refused("No face found in the image".into())
    );
}

#[tokio::test]
async fn a_resumed_job_polls_its_run_instead_of_paying_for_another() {
    let fake = FakeReplicate::start(TOKEN).await;
    let replicate = provider(&fake);
    fake.script(Script::Succeed { polls: 3 });
    let seen = Seen::default();
    generate(
        &replicate,
        &request(Operation::Image(Quality::Standard)),
        None,
        &seen,
    )
    .await
    .expect("first run");
    let id = seen.started.lock().expect("lock")[0].clone();
    // A worker that restarted passes the recorded id: no new prediction is created.
    let again = Seen::default();
    let output = generate(
        &replicate,
        &request(Operation::Image(Quality::Standard)),
        Some(&id),
        &again,
    )
    .await
    .expect("resumed");
    assert_eq!(output.kind, MediaKind::Image);
    assert_eq!(fake.created().len(), 1);
    assert!(again.started.lock().expect("lock").is_empty());
    // The progress bars in the logs were read as percentages, rising.
    let percents = seen.percents.lock().expect("lock").clone();
    assert!(!percents.is_empty());
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{percents:?}");
}

#[tokio::test]
async fn a_cancelled_run_is_cancelled_at_replicate_and_a_resume_starts_afresh() {
    let fake = FakeReplicate::start(TOKEN).await;
    let replicate = provider(&fake);
    fake.script(Script::Hang);
    let seen = Seen::default();
    let request = request(Operation::Video { seconds: 5 });
    let hanging = tokio::time::timeout(
        Duration::from_millis(200),
        generate(&replicate, &request, None, &seen),
    )
    .await;
    assert!(hanging.is_err(), "a hanging run does not finish");
    let id = seen.started.lock().expect("lock")[0].clone();
    replicate.cancel(&id).await;
    assert_eq!(fake.cancelled(), vec![id.clone()]);
    generate(&replicate, &request, Some(&id), &Seen::default())
        .await
        .expect("a new run after the cancelled one");
    assert_eq!(fake.created().len(), 2);
}

#[test]
fn progress_is_read_from_the_last_progress_bar() {
    let logs = "Using seed: 42\n  0%|          | 0/4 [00:00<?, ?it/s]\n 50%|█████     | 2/4 [00:01<00:01]\n 75%|███████▌  | 3/4\n";
    assert_eq!(progress(logs), Some(75));
    assert_eq!(progress("loading weights"), None);
}

#[test]
fn configuration_rejects_unknown_operations_and_malformed_models() {
    let mut config = ReplicateConfig::default();
    assert!(config.validate().is_ok());
    config
        .models
        .insert("imagine".into(), default_model("image").expect("default"));
    assert_eq!(
        config.validate().expect_err("unknown key").0,
        "providers.replicate.models.imagine"
    );
    config.models.clear();
    config.models.insert(
        "image".into(),
        ModelConfig {
            model: "flux-schnell".into(),
            input: Map::new(),
            aspect_ratios: None,
            cost: None,
        },
    );
    assert_eq!(
        config.validate().expect_err("bad reference").0,
        "providers.replicate.models.image.model"
    );
    for key in MODEL_KEYS {
        assert!(default_model(key).is_some(), "{key} has a default");
    }
}

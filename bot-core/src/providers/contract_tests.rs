//! The provider contract suite. Every operation's default model on Replicate and every
//! operation OpenAI does is sent, exactly as our templates render it, for every choice people
//! have (aspect ratios, lengths, a video from a photo), to fakes that validate the body against
//! the model's published schema (stored in `fakes/contract/schemas/`) and answer in the
//! published output shape. A template with an unknown field or a wrong type fails here.

use secrecy::SecretString;
use serde_json::{Value, json};

use fakes::{openai::FakeOpenAi, replicate::FakeReplicate};

use super::{
    GenerationRequest, Provider, ProviderError, Run,
    openai::{OpenAi, OpenAiConfig},
    replicate::{ModelConfig, Replicate, ReplicateConfig, default_model, render},
    samples::{self, KEYED},
};
use crate::{command::CommandLimits, pricing::Operation};

const TOKEN: &str = "r8_contract";

fn replicate(fake: &FakeReplicate, models: &[(&str, ModelConfig)]) -> Replicate {
    Replicate::from_config(&ReplicateConfig {
        api_token: Some(SecretString::from(TOKEN.to_string())),
        api_url: fake.url(),
        poll_ms: 5,
        models: models
            .iter()
            .map(|(key, model)| ((*key).to_string(), model.clone()))
            .collect(),
        ..ReplicateConfig::default()
    })
    .expect("token configured")
}

fn openai(fake: &FakeOpenAi, config: OpenAiConfig) -> OpenAi {
    OpenAi::from_config(&OpenAiConfig {
        api_key: Some(SecretString::from(TOKEN.to_string())),
        base_url: fake.base_url(),
        ..config
    })
    .expect("key configured")
}

async fn generate(
    provider: &dyn Provider,
    request: &GenerationRequest,
) -> Result<(), ProviderError> {
    provider.generate(Run::new(request)).await.map(drop)
}

#[tokio::test]
async fn every_replicate_default_takes_every_choice_people_have() {
    let fake = FakeReplicate::start(TOKEN).await;
    let provider = replicate(&fake, &[]);
    let limits = CommandLimits::default();
    let mut sent = 0;
    for (key, operation) in KEYED {
        let model = default_model(key).expect("a default model");
        let contract = contract::replicate(&model.model)
            .unwrap_or_else(|| panic!("{key}: no stored schema for {}", model.model));
        for request in samples::requests(operation, &limits) {
            let input = render(&model, &request);
            let what = format!("{key} {}", samples::describe(&request));
            assert_eq!(contract.check_input(&input, "input"), Vec::new(), "{what}");
            generate(&provider, &request)
                .await
                .unwrap_or_else(|error| panic!("{what}: {error}"));
            sent += 1;
            let (reference, body) = fake.created().pop().expect("created");
            assert_eq!(reference, model.model, "{what}");
            assert_eq!(
                body, input,
                "{what}: the body sent is the rendered template"
            );
        }
    }
    // Eight ratios for each of three image tiers, two lengths and a photo for video, three
    // music lengths, one request for each other operation.
    assert_eq!(sent, 8 * 3 + 3 + 3 + 4);
    for (reference, output) in fake.outputs() {
        let contract = contract::replicate(&reference).expect("stored");
        assert_eq!(contract.check_output(&output), Vec::new(), "{reference}");
    }
}

#[tokio::test]
async fn a_ratio_a_model_lacks_is_sent_as_its_nearest() {
    let model = default_model("image_hd").expect("default");
    let limits = CommandLimits::default();
    let cinema = samples::requests(Operation::Image(crate::command::Quality::Hd), &limits)
        .into_iter()
        .find(|r| r.aspect.to_string() == "21:9")
        .expect("21:9 is configured");
    assert_eq!(render(&model, &cinema)["aspect_ratio"], "16:9");
    let schnell = default_model("image").expect("default");
    assert_eq!(render(&schnell, &cinema)["aspect_ratio"], "21:9");
}

#[tokio::test]
async fn every_openai_operation_sends_bodies_its_schema_accepts() {
    let fake = FakeOpenAi::start(TOKEN).await;
    let provider = openai(&fake, OpenAiConfig::default());
    let limits = CommandLimits::default();
    let config = OpenAiConfig::default();
    let mut sent = 0;
    for (key, operation) in KEYED {
        let Some(endpoint) = OpenAiConfig::endpoint(operation) else {
            assert!(!provider.supports(operation), "{key}");
            continue;
        };
        let contract = contract::openai(&config.model, endpoint).expect("stored schema");
        for request in samples::requests(operation, &limits) {
            let what = format!("{key} {}", samples::describe(&request));
            let found = if endpoint == "images/edits" {
                contract.check_form(&config.edit_fields(&request))
            } else {
                contract.check_input(&config.generation_body(&request), "")
            };
            assert_eq!(found, Vec::new(), "{what}");
            generate(&provider, &request)
                .await
                .unwrap_or_else(|error| panic!("{what}: {error}"));
            sent += 1;
        }
    }
    assert_eq!(sent, 8 * 2 + 1);
    assert_eq!(fake.seen().len(), sent);
}

#[tokio::test]
async fn a_template_with_an_unknown_field_or_a_wrong_type_fails_the_contract() {
    let fake = FakeReplicate::start(TOKEN).await;
    let mut wrong = default_model("image").expect("default");
    wrong.input.insert("colour".into(), json!("red"));
    wrong.input.insert("num_outputs".into(), json!("{prompt}"));
    let request = samples::requests(
        Operation::Image(crate::command::Quality::Standard),
        &CommandLimits::default(),
    )
    .remove(0);
    let input = render(&wrong, &request);
    let contract = contract::replicate(&wrong.model).expect("stored");
    let found: Vec<(String, &str)> = contract
        .check_input(&input, "input")
        .into_iter()
        .map(|v| (v.field, v.kind))
        .collect();
    assert_eq!(
        found,
        vec![
            ("input.colour".to_string(), "additional_property"),
            ("input.num_outputs".to_string(), "invalid_type"),
        ]
    );
    let provider = replicate(&fake, &[("image", wrong)]);
    let error = generate(&provider, &request).await.expect_err("refused");
    let ProviderError::Refused(why) = error else {
        panic!("a refusal, not {error:?}");
    };
    assert!(
        why.contains("input.colour: Additional property colour is not allowed"),
        "{why}"
    );
    assert!(
        why.contains("input.num_outputs: Invalid type. Expected: integer"),
        "{why}"
    );
    assert!(
        fake.created().is_empty(),
        "nothing ran, so nothing was billed"
    );

    // OpenAI: a quality its models do not have.
    let fake = FakeOpenAi::start(TOKEN).await;
    let provider = openai(
        &fake,
        OpenAiConfig {
            quality_hd: "ultra".into(),
            ..OpenAiConfig::default()
        },
    );
    let mut hd = request.clone();
    hd.operation = Operation::Image(crate::command::Quality::Hd);
    let error = generate(&provider, &hd).await.expect_err("refused");
    assert!(
        matches!(&error, ProviderError::Refused(why) if why.contains("quality")),
        "{error:?}"
    );
}

#[test]
fn every_default_model_has_a_stored_schema_and_a_cost() {
    for (key, _) in KEYED {
        let model = default_model(key).expect("default");
        assert!(contract::replicate(&model.model).is_some(), "{key}");
        assert!(model.cost.is_some(), "{key}");
    }
    let value: Value = serde_json::to_value(OpenAiConfig::default().model).expect("json");
    assert_eq!(value, json!("gpt-image-2"));
}

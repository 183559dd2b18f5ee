//! `imagegpt providers check`: before going live, every operation's template is rendered for
//! every choice people have and checked against the model's published schema (stored in the
//! `contract` crate), and its price is set against its provider cost; with `--live` and a key,
//! the provider is also asked whether each model exists. Start-up uses the same costing to warn
//! about an operation priced below its cost.

use bot_core::{
    pricing::Operation,
    providers::{
        GenerationRequest, ProviderError, Routes,
        openai::{OpenAi, OpenAiConfig},
        replicate::{Replicate, render},
        samples::{self, Costing, KEYED},
    },
};

use crate::config::Config;

/// One line of the report: an operation on one provider's model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The model key (`image_hd`).
    pub key: &'static str,
    pub provider: &'static str,
    pub model: String,
    /// What was found wrong with the rendered requests; empty when they all passed.
    pub problems: Vec<String>,
    /// Requests rendered and checked, and choices sent as something else (`21:9 as 16:9`).
    pub checked: usize,
    pub adjusted: Vec<String>,
    /// False when no schema is stored for the model: nothing could be checked.
    pub known: bool,
    /// False when the provider has no key: the line shows what it would send.
    pub keyed: bool,
    pub costing: Costing,
    /// With `--live`: whether the provider says the model exists.
    pub live: Option<Result<bool, String>>,
}

impl Line {
    /// True when this line stops an operator from going live.
    pub fn failed(&self) -> bool {
        !self.problems.is_empty() || matches!(self.live, Some(Ok(false)))
    }

    fn render(&self) -> String {
        let verdict = if !self.problems.is_empty() {
            format!("FAIL {}", self.problems.join("; "))
        } else if !self.known {
            "unchecked (no stored schema for this model)".to_string()
        } else {
            let plural = if self.checked == 1 { "" } else { "s" };
            let mut ok = format!("ok ({} request{plural}", self.checked);
            if !self.adjusted.is_empty() {
                ok.push_str(&format!("; {}", self.adjusted.join(", ")));
            }
            ok.push(')');
            ok
        };
        let live = match &self.live {
            None => String::new(),
            Some(Ok(true)) => " · live: exists".into(),
            Some(Ok(false)) => " · live: NOT FOUND".into(),
            Some(Err(why)) => format!(" · live: not checked ({why})"),
        };
        let off = if self.keyed { "" } else { " [no key: off]" };
        // A pinned version is named by its first twelve characters, as Replicate's pages do.
        let model = match self.model.split_once(':') {
            Some((name, version)) if version.len() > 12 => format!("{name}:{}", &version[..12]),
            _ => self.model.clone(),
        };
        format!(
            "{:<9} {:<9} {model} — {verdict} · {}{live}{off}",
            self.key,
            self.provider,
            self.costing.describe()
        )
    }
}

/// Checks every operation of both AI providers, as configured.
pub fn check(config: &Config) -> Vec<Line> {
    let limits = &config.commands;
    let mut lines = Vec::new();
    let replicate = &config.providers.replicate;
    for (key, operation) in KEYED {
        let Some(model) = replicate.model(key) else {
            continue;
        };
        let contract = contract::replicate(&model.model);
        let requests = samples::requests(operation, limits);
        let mut line = Line {
            key,
            provider: "replicate",
            model: model.model.clone(),
            problems: Vec::new(),
            checked: requests.len(),
            adjusted: Vec::new(),
            known: contract.is_some(),
            keyed: replicate.api_token.is_some(),
            costing: {
                let priced = samples::priced(operation, limits);
                Costing::of(&config.pricing, priced, replicate.cost_of(priced))
            },
            live: None,
        };
        for request in &requests {
            let input = render(&model, request);
            if let Some(sent) = input.get("aspect_ratio").and_then(|v| v.as_str())
                && sent != request.aspect.to_string()
                && matches!(operation, Operation::Image(_))
            {
                line.adjusted
                    .push(format!("{} sent as {sent}", request.aspect));
            }
            if let Some(contract) = contract {
                note(
                    &mut line.problems,
                    request,
                    contract.check_input(&input, "input"),
                );
            }
        }
        lines.push(line);
    }
    let openai = &config.providers.openai;
    for (key, operation) in KEYED {
        let Some(endpoint) = OpenAiConfig::endpoint(operation) else {
            continue;
        };
        let contract = contract::openai(&openai.model, endpoint);
        let requests = samples::requests(operation, limits);
        let mut line = Line {
            key,
            provider: "openai",
            model: openai.model.clone(),
            problems: Vec::new(),
            checked: requests.len(),
            adjusted: Vec::new(),
            known: contract.is_some(),
            keyed: openai.api_key.is_some(),
            costing: Costing::of(&config.pricing, operation, openai.cost_of(operation)),
            live: None,
        };
        if let Some(contract) = contract {
            for request in &requests {
                let found = if endpoint == "images/edits" {
                    contract.check_form(&openai.edit_fields(request))
                } else {
                    contract.check_input(&openai.generation_body(request), "")
                };
                note(&mut line.problems, request, found);
            }
        } else if contract::openai("gpt-image-2", endpoint).is_some() {
            // The stored schema names the models OpenAI serves today.
            line.problems.push(format!(
                "{} is not an image model OpenAI serves",
                openai.model
            ));
        }
        lines.push(line);
    }
    lines
}

/// Records a request's violations once each, naming the choice that caused them.
fn note(problems: &mut Vec<String>, request: &GenerationRequest, found: Vec<contract::Violation>) {
    for violation in found {
        let choice = samples::describe(request);
        let text = if choice.is_empty() {
            violation.to_string()
        } else {
            format!("{violation} (at {choice})")
        };
        let field = format!("{}:", violation.field);
        if !problems.iter().any(|p| p.starts_with(&field)) {
            problems.push(text);
        }
    }
}

/// With keys: asks each provider whether the models exist (Replicate's models and versions
/// endpoints, OpenAI's `GET /v1/models/{model}`).
pub async fn confirm_live(config: &Config, lines: &mut [Line]) {
    let replicate = Replicate::from_config(&config.providers.replicate);
    let openai = OpenAi::from_config(&config.providers.openai);
    for line in lines {
        let answer = match (line.provider, &replicate, &openai) {
            ("replicate", Some(replicate), _) => replicate.exists(&line.model).await,
            ("openai", _, Some(openai)) => openai.exists().await,
            _ => Err(ProviderError::Unavailable("no key".into())),
        };
        line.live = Some(answer.map_err(|error| error.to_string()));
    }
}

/// The report, one line per operation and provider, and a last line with the verdict.
pub fn report(lines: &[Line]) -> String {
    let mut text: Vec<String> = lines.iter().map(Line::render).collect();
    let failed = lines.iter().filter(|l| l.failed()).count();
    let below = lines.iter().filter(|l| l.costing.below_cost()).count();
    text.push(match (failed, below) {
        (0, 0) => "every template matches its model's published schema".to_string(),
        (0, n) => {
            format!("every template matches its model's published schema; {n} priced below cost")
        }
        (n, _) => format!("{n} failed: fix the configuration before going live"),
    });
    text.join("\n")
}

/// Warns at start-up about each operation a configured provider would serve for less than it
/// costs, at the cheapest pack's rate.
pub fn warn_below_cost(config: &Config, routes: &Routes) {
    for (key, operation) in KEYED {
        let operation = samples::priced(operation, &config.commands);
        for provider in routes.providers(operation) {
            let costing = Costing::of(&config.pricing, operation, provider.cost(operation));
            if costing.below_cost() {
                tracing::warn!(
                    operation = key,
                    provider = provider.name(),
                    model = provider.model(operation).unwrap_or_default(),
                    figures = %costing.describe(),
                    "an operation is priced below its provider cost at the cheapest pack's rate"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_configuration_passes_with_openais_hd_below_cost() {
        let config = Config::default();
        let lines = check(&config);
        assert_eq!(
            lines.len(),
            9 + 3,
            "nine Replicate models, three OpenAI operations"
        );
        assert!(lines.iter().all(|l| !l.failed()), "{}", report(&lines));
        let hd = lines
            .iter()
            .find(|l| l.key == "image_hd" && l.provider == "replicate")
            .expect("line");
        assert_eq!(hd.adjusted, vec!["21:9 sent as 16:9".to_string()]);
        let below: Vec<(&str, &str)> = lines
            .iter()
            .filter(|l| l.costing.below_cost())
            .map(|l| (l.key, l.provider))
            .collect();
        assert_eq!(below, vec![("image_hd", "openai")]);
    }

    #[test]
    fn a_wrong_template_fails_the_check_naming_the_field() {
        let mut config = Config::default();
        let mut model = bot_core::providers::replicate::default_model("video").expect("default");
        model.input.insert("duration".into(), serde_json::json!(30));
        model.input.insert("fps".into(), serde_json::json!("24"));
        config
            .providers
            .replicate
            .models
            .insert("video".into(), model);
        config.providers.openai.model = "gpt-image-1".into();
        let lines = check(&config);
        let video = lines.iter().find(|l| l.key == "video").expect("line");
        assert_eq!(
            video.problems,
            vec![
                "input.duration: Must be less than or equal to 12 (at 5s)".to_string(),
                "input.fps: Invalid type. Expected: integer, given: string (at 5s)".to_string(),
            ]
        );
        assert!(
            lines
                .iter()
                .filter(|l| l.provider == "openai")
                .all(|l| l.failed())
        );
        assert!(report(&lines).ends_with("failed: fix the configuration before going live"));
    }
}

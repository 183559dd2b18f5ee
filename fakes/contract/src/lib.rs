//! The published contracts of the generation models imagegpt calls: each model's input schema
//! and output shape, copied from the provider's own schema (Replicate's model API,
//! `GET /v1/models/{owner}/{name}` → `latest_version.openapi_schema`; OpenAI's API reference and
//! OpenAPI document), with where and when it was read, in `schemas/<provider>/*.json`.
//!
//! The fakes validate every request against these, so a template with an unknown field, a wrong
//! type or a value outside an enum fails a test instead of failing on day one in production; and
//! `imagegpt providers check` renders the operator's templates against them before going live.
//!
//! The checker covers the part of JSON Schema these schemas use: `type`, `enum`, `minimum`,
//! `maximum`, `minLength`, `maxLength`, `required`, `properties`, `items` and `format: uri`.
//! It is stricter than Replicate in one way, on purpose: a property the schema does not name is
//! an error (Replicate ignores it silently, which hides a misspelt input).

use std::{fmt, sync::LazyLock};

use serde::Deserialize;
use serde_json::{Map, Value};

/// One model's contract.
#[derive(Debug, Deserialize)]
pub struct Contract {
    /// `replicate` or `openai`.
    pub provider: String,
    /// `owner/name` on Replicate; the model id on OpenAI.
    pub model: String,
    /// The pinned version, for Replicate models that are not official (called by version).
    #[serde(default)]
    pub version: Option<String>,
    /// OpenAI's endpoint, `images/generations` or `images/edits`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Where the schema was read, and when.
    pub source: String,
    pub retrieved: String,
    /// The published price this contract's defaults are costed from.
    pub price: PublishedPrice,
    /// The input (Replicate's `Input` schema; OpenAI's request body).
    pub input: Value,
    /// The output (Replicate's `Output` schema; OpenAI's response body).
    pub output: Value,
}

/// A provider's published price for one run.
#[derive(Debug, Clone, Deserialize)]
pub struct PublishedPrice {
    /// US dollars per `unit`.
    pub usd: f64,
    /// `run` (one image or one prediction) or `second` (of output, or of hardware time as the
    /// note says).
    pub unit: String,
    pub source: String,
    #[serde(default)]
    pub note: String,
}

/// One thing wrong with a request, named as the provider names it (`input.aspect_ratio`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    /// `required`, `additional_property`, `invalid_type`, `enum`, `number_gte`, `number_lte`,
    /// `string_gte`, `string_lte`, `format`.
    pub kind: &'static str,
    pub description: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

const FILES: &[&str] = &[
    include_str!("../schemas/replicate/black-forest-labs__flux-schnell.json"),
    include_str!("../schemas/replicate/black-forest-labs__flux-1.1-pro.json"),
    include_str!("../schemas/replicate/black-forest-labs__flux-1.1-pro-ultra.json"),
    include_str!("../schemas/replicate/black-forest-labs__flux-kontext-pro.json"),
    include_str!("../schemas/replicate/nightmareai__real-esrgan.json"),
    include_str!("../schemas/replicate/cjwbw__rembg.json"),
    include_str!("../schemas/replicate/codeplugtech__face-swap.json"),
    include_str!("../schemas/replicate/bytedance__seedance-1-lite.json"),
    include_str!("../schemas/replicate/meta__musicgen.json"),
    include_str!("../schemas/openai/images-generations.json"),
    include_str!("../schemas/openai/images-edits.json"),
];

/// Every stored contract. A file that does not parse is a build-time mistake; the tests below
/// read them all.
pub fn all() -> &'static [Contract] {
    static ALL: LazyLock<Vec<Contract>> = LazyLock::new(|| {
        FILES
            .iter()
            .filter_map(|text| match serde_json::from_str(text) {
                Ok(contract) => Some(contract),
                Err(error) => {
                    eprintln!("a stored contract does not parse: {error}");
                    None
                }
            })
            .collect()
    });
    &ALL
}

/// The contract of a Replicate model reference, `owner/name` or `owner/name:version`: a pinned
/// reference matches only its own version, an official one only a contract without a version.
pub fn replicate(reference: &str) -> Option<&'static Contract> {
    let (name, version) = match reference.split_once(':') {
        Some((name, version)) => (name, Some(version)),
        None => (reference, None),
    };
    all()
        .iter()
        .find(|c| c.provider == "replicate" && c.model == name && c.version.as_deref() == version)
}

/// The contract of an OpenAI image model's endpoint.
pub fn openai(model: &str, endpoint: &str) -> Option<&'static Contract> {
    all().iter().find(|c| {
        c.provider == "openai"
            && c.endpoint.as_deref() == Some(endpoint)
            && models_of(c).any(|m| m == model)
    })
}

/// An OpenAI contract names the models it holds for in its input's `model` enum.
fn models_of(contract: &Contract) -> impl Iterator<Item = &str> {
    contract
        .input
        .pointer("/properties/model/enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

impl Contract {
    /// Checks a JSON input (Replicate's `input`, OpenAI's JSON body); the fields are named
    /// under `at` (`input` on Replicate).
    pub fn check_input(&self, input: &Value, at: &str) -> Vec<Violation> {
        let mut found = Vec::new();
        check(&self.input, input, at, false, &mut found);
        found
    }

    /// Checks a multipart form's text fields, whose values arrive as strings and are read as
    /// the schema's type (OpenAI's edits).
    pub fn check_form(&self, fields: &Map<String, Value>) -> Vec<Violation> {
        let mut found = Vec::new();
        check(
            &self.input,
            &Value::Object(fields.clone()),
            "",
            true,
            &mut found,
        );
        found
    }

    /// Checks an output against the published output shape.
    pub fn check_output(&self, output: &Value) -> Vec<Violation> {
        let mut found = Vec::new();
        check(&self.output, output, "output", false, &mut found);
        found
    }

    /// True when the model answers a list of files rather than one.
    pub fn output_is_list(&self) -> bool {
        self.output.get("type").and_then(Value::as_str) == Some("array")
    }

    /// The values the input property `name` may take, when the schema lists them.
    pub fn choices(&self, name: &str) -> Option<Vec<&Value>> {
        self.input
            .pointer(&format!("/properties/{name}/enum"))
            .and_then(Value::as_array)
            .map(|values| values.iter().collect())
    }

    /// The range of a numeric input property, when the schema bounds it.
    pub fn range(&self, name: &str) -> (Option<f64>, Option<f64>) {
        let property = self.input.pointer(&format!("/properties/{name}"));
        let bound = |key: &str| property.and_then(|p| p.get(key)).and_then(Value::as_f64);
        (bound("minimum"), bound("maximum"))
    }
}

fn join(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_string()
    } else {
        format!("{at}.{name}")
    }
}

fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A form field's text read as the schema's type; `None` when it does not read as one.
fn from_form(text: &str, wanted: &str) -> Option<Value> {
    match wanted {
        "integer" => text.parse::<i64>().ok().map(Value::from),
        "number" => text.parse::<f64>().ok().map(Value::from),
        "boolean" => text.parse::<bool>().ok().map(Value::from),
        _ => Some(Value::String(text.to_string())),
    }
}

fn violation(found: &mut Vec<Violation>, field: &str, kind: &'static str, description: String) {
    found.push(Violation {
        field: field.to_string(),
        kind,
        description,
    });
}

fn check(schema: &Value, value: &Value, at: &str, form: bool, found: &mut Vec<Violation>) {
    let wanted = schema.get("type").and_then(Value::as_str);
    let read;
    let value = match (form, wanted, value) {
        (true, Some(wanted), Value::String(text)) if wanted != "string" => {
            match from_form(text, wanted) {
                Some(parsed) => {
                    read = parsed;
                    &read
                }
                None => {
                    violation(
                        found,
                        at,
                        "invalid_type",
                        format!("Invalid type. Expected: {wanted}, given: string"),
                    );
                    return;
                }
            }
        }
        _ => value,
    };
    if let Some(wanted) = wanted {
        let given = type_of(value);
        let fits = given == wanted || (wanted == "number" && given == "integer");
        if !fits {
            violation(
                found,
                at,
                "invalid_type",
                format!("Invalid type. Expected: {wanted}, given: {given}"),
            );
            return;
        }
    }
    if let Some(choices) = schema.get("enum").and_then(Value::as_array) {
        let same = |choice: &Value| match (choice.as_f64(), value.as_f64()) {
            (Some(a), Some(b)) => a == b,
            _ => choice == value,
        };
        if !choices.iter().any(same) {
            let listed: Vec<String> = choices.iter().map(Value::to_string).collect();
            violation(
                found,
                at,
                "enum",
                format!("{at} must be one of the following: {}", listed.join(", ")),
            );
        }
    }
    if let Some(number) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && number < min
        {
            violation(
                found,
                at,
                "number_gte",
                format!("Must be greater than or equal to {min}"),
            );
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && number > max
        {
            violation(
                found,
                at,
                "number_lte",
                format!("Must be less than or equal to {max}"),
            );
        }
    }
    if let Value::String(text) = value {
        let length = text.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && length < min
        {
            violation(
                found,
                at,
                "string_gte",
                format!("String length must be greater than or equal to {min}"),
            );
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && length > max
        {
            violation(
                found,
                at,
                "string_lte",
                format!("String length must be less than or equal to {max}"),
            );
        }
        if schema.get("format").and_then(Value::as_str) == Some("uri") && !is_uri(text) {
            violation(
                found,
                at,
                "format",
                "Does not match format 'uri'".to_string(),
            );
        }
    }
    if let Value::Array(items) = value
        && let Some(item_schema) = schema.get("items")
    {
        for (i, item) in items.iter().enumerate() {
            check(item_schema, item, &format!("{at}.{i}"), form, found);
        }
    }
    if let Value::Object(fields) = value {
        let properties = schema.get("properties").and_then(Value::as_object);
        for name in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !fields.contains_key(name) {
                violation(
                    found,
                    &join(at, name),
                    "required",
                    format!("{name} is required"),
                );
            }
        }
        for (name, field) in fields {
            match properties.and_then(|p| p.get(name)) {
                Some(property) => check(property, field, &join(at, name), form, found),
                None if properties.is_some() => violation(
                    found,
                    &join(at, name),
                    "additional_property",
                    format!("Additional property {name} is not allowed"),
                ),
                None => {}
            }
        }
    }
}

/// A URL a model can fetch, or a data URI whose base64 payload is well formed.
fn is_uri(text: &str) -> bool {
    if let Some(data) = text.strip_prefix("data:") {
        return data.split_once(";base64,").is_some_and(|(mime, payload)| {
            mime.contains('/')
                && !payload.is_empty()
                && payload.len() % 4 == 0
                && payload.trim_end_matches('=').len() + 2 >= payload.len()
                && payload
                    .trim_end_matches('=')
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/'))
        });
    }
    text.strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .is_some_and(|rest| !rest.is_empty())
}

#[cfg(test)]
mod tests;

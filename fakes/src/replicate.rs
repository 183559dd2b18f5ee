//! Replicate's predictions API (`https://api.replicate.com/v1/…`): create a prediction for an
//! official model (`POST /v1/models/{owner}/{name}/predictions`) or a pinned version
//! (`POST /v1/predictions` with `version`), poll it (`GET /v1/predictions/{id}`), cancel it
//! (`POST /v1/predictions/{id}/cancel`). Errors are RFC 7807 problem documents as Replicate sends
//! them. Outputs are served from `/files/…`, standing for `replicate.delivery`.
//!
//! Strictness: a bearer token is required on every API call; only the models whose published
//! schema is stored in the `contract` crate exist (an official model by `owner/name`, a
//! community one only by its pinned version, as Replicate serves them), and each prediction's
//! input is validated against that schema: required fields, types, enums, ranges, file inputs
//! as URLs or well-formed data URIs, and no field the schema does not name (Replicate ignores
//! those silently; the fake refuses them so that a misspelt template fails a test). Errors are
//! `422 Input validation failed` with `invalid_fields`, as Replicate answers. The output has the
//! published shape (a list of URLs for flux-schnell, one URL for the others).
//! Sources: <https://replicate.com/docs/reference/http#predictions.create>, each model's
//! `/api/schema` page; the stored schemas name theirs.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

use contract::Contract;

use crate::Server;

/// What a fake model produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Produces {
    Png,
    Mp4,
    Mp3,
    Wav,
}

/// A model the fake serves: one whose published schema is stored in the `contract` crate.
#[derive(Debug, Clone, Copy)]
struct Model {
    contract: &'static Contract,
}

impl Model {
    /// `owner/name` or `owner/name:version`, as the fake's records name it.
    fn reference(&self) -> String {
        match &self.contract.version {
            Some(version) => format!("{}:{version}", self.contract.model),
            None => self.contract.model.clone(),
        }
    }

    /// The kind of file the model answers with, for the input it was given.
    fn produces(&self, input: &Value) -> Produces {
        let format = input
            .get("output_format")
            .and_then(Value::as_str)
            .or_else(|| {
                self.contract
                    .input
                    .pointer("/properties/output_format/default")
                    .and_then(Value::as_str)
            });
        match (self.contract.model.as_str(), format) {
            ("bytedance/seedance-1-lite", _) => Produces::Mp4,
            (_, Some("mp3")) => Produces::Mp3,
            (_, Some("wav")) => Produces::Wav,
            _ => Produces::Png,
        }
    }
}

/// The official model `owner/name`, callable without a version.
fn official(reference: &str) -> Option<Model> {
    contract::replicate(reference).map(|contract| Model { contract })
}

/// The community model pinned at `version`.
fn by_version(version: &str) -> Option<Model> {
    contract::all()
        .iter()
        .find(|c| c.provider == "replicate" && c.version.as_deref() == Some(version))
        .map(|contract| Model { contract })
}

/// How the next prediction created will go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    /// Processing for this many polls (logging progress bars), then succeeded.
    Succeed { polls: u32 },
    /// Processing for one poll, then failed with this error, as a model reports it.
    Fail(String),
    /// Processing forever (until cancelled).
    Hang,
    /// Succeeded, but the output file is not media at all.
    Garbage,
    /// Succeeded with no output, as a model that swallowed its error does.
    Empty,
}

#[derive(Debug)]
struct Prediction {
    id: String,
    model: String,
    version: String,
    input: Value,
    status: &'static str,
    logs: String,
    output: Option<Value>,
    error: Option<String>,
    script: Script,
    polls: u32,
    produces: Produces,
    output_is_list: bool,
}

#[derive(Debug, Default)]
struct Fake {
    token: String,
    origin: String,
    predictions: BTreeMap<String, Prediction>,
    files: BTreeMap<String, Vec<u8>>,
    scripts: VecDeque<Script>,
    throttle_creates: u32,
    fail_creates: u32,
    fail_polls: u32,
    created: Vec<(String, Value)>,
    outputs: Vec<(String, Value)>,
    cancelled: Vec<String>,
}

type Shared = Arc<Mutex<Fake>>;

/// A running fake Replicate.
#[derive(Debug)]
pub struct FakeReplicate {
    server: Server,
    state: Shared,
}

impl FakeReplicate {
    /// Starts a fake that accepts `token`.
    pub async fn start(token: &str) -> FakeReplicate {
        let state: Shared = Arc::new(Mutex::new(Fake {
            token: token.to_string(),
            ..Fake::default()
        }));
        let router = Router::new()
            .route(
                "/v1/models/{owner}/{name}/predictions",
                post(create_official),
            )
            .route("/v1/models/{owner}/{name}", get(model_info))
            .route(
                "/v1/models/{owner}/{name}/versions/{version}",
                get(version_info),
            )
            .route("/v1/predictions", post(create_version))
            .route("/v1/predictions/{id}", get(poll))
            .route("/v1/predictions/{id}/cancel", post(cancel))
            .route("/files/{id}/{name}", get(file))
            .with_state(state.clone());
        let server = Server::start(router).await;
        lock(&state).origin = server.origin();
        FakeReplicate { server, state }
    }

    /// The value for `REPLICATE_API_URL`.
    pub fn url(&self) -> String {
        self.server.origin()
    }

    /// Scripts the next prediction created (unscripted ones succeed after two polls).
    pub fn script(&self, script: Script) {
        lock(&self.state).scripts.push_back(script);
    }

    /// The next `n` creations are throttled (429 with `Retry-After: 1`).
    pub fn throttle_creates(&self, n: u32) {
        lock(&self.state).throttle_creates = n;
    }

    /// The next `n` creations fail with a 500.
    pub fn fail_creates(&self, n: u32) {
        lock(&self.state).fail_creates = n;
    }

    /// The next `n` polls fail with a 500.
    pub fn fail_polls(&self, n: u32) {
        lock(&self.state).fail_polls = n;
    }

    /// Every prediction created so far: the model reference and the input sent.
    pub fn created(&self) -> Vec<(String, Value)> {
        lock(&self.state).created.clone()
    }

    /// Every output a prediction succeeded with: the model reference and the `output` value.
    pub fn outputs(&self) -> Vec<(String, Value)> {
        lock(&self.state).outputs.clone()
    }

    /// Ids of predictions cancelled through the API.
    pub fn cancelled(&self) -> Vec<String> {
        lock(&self.state).cancelled.clone()
    }
}

fn lock(state: &Shared) -> MutexGuard<'_, Fake> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn problem(status: StatusCode, title: &str, detail: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        json!({ "title": title, "detail": detail, "status": status.as_u16() }).to_string(),
    )
        .into_response()
}

fn not_found() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "Not found",
        "The requested resource could not be found.",
    )
}

fn authorised(fake: &Fake, headers: &HeaderMap) -> Result<(), Response> {
    let expected = format!("Bearer {}", fake.token);
    match headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        Some(given) if given == expected => Ok(()),
        _ => Err(problem(
            StatusCode::UNAUTHORIZED,
            "Unauthenticated",
            "You did not pass a valid authentication token",
        )),
    }
}

async fn create_official(
    State(state): State<Shared>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let Some(model) = official(&format!("{owner}/{name}")) else {
        return not_found();
    };
    create(&state, &headers, model, &body)
}

/// `GET /v1/models/{owner}/{name}`: any stored model, official or not.
async fn model_info(
    State(state): State<Shared>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(denied) = authorised(&lock(&state), &headers) {
        return denied;
    }
    let reference = format!("{owner}/{name}");
    let Some(found) = contract::all()
        .iter()
        .find(|c| c.provider == "replicate" && c.model == reference)
    else {
        return not_found();
    };
    Json(json!({
        "owner": owner, "name": name, "visibility": "public",
        "url": format!("https://replicate.com/{reference}"),
        "latest_version": { "id": found.version, "openapi_schema": {
            "components": { "schemas": { "Input": found.input, "Output": found.output } } } },
    }))
    .into_response()
}

/// `GET /v1/models/{owner}/{name}/versions/{id}`: a stored pinned version.
async fn version_info(
    State(state): State<Shared>,
    Path((owner, name, version)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(denied) = authorised(&lock(&state), &headers) {
        return denied;
    }
    match by_version(&version).filter(|m| m.contract.model == format!("{owner}/{name}")) {
        Some(model) => Json(json!({ "id": version, "openapi_schema": {
            "components": { "schemas": { "Input": model.contract.input,
                                         "Output": model.contract.output } } } }))
        .into_response(),
        None => not_found(),
    }
}

async fn create_version(
    State(state): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let version = body.get("version").and_then(Value::as_str).unwrap_or("");
    let Some(model) = by_version(version) else {
        if let Err(denied) = authorised(&lock(&state), &headers) {
            return denied;
        }
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid version or not permitted",
            "The specified version does not exist (or perhaps you don't have permission to use it?)",
        );
    };
    create(&state, &headers, model, &body)
}

fn create(state: &Shared, headers: &HeaderMap, model: Model, body: &Value) -> Response {
    let mut fake = lock(state);
    if let Err(denied) = authorised(&fake, headers) {
        return denied;
    }
    if fake.throttle_creates > 0 {
        fake.throttle_creates -= 1;
        let mut response = problem(
            StatusCode::TOO_MANY_REQUESTS,
            "Request was throttled.",
            "Request was throttled. Expected available in 1 second.",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return response;
    }
    if fake.fail_creates > 0 {
        fake.fail_creates -= 1;
        return problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
            "Something went wrong.",
        );
    }
    let Some(input) = body.get("input").filter(|i| i.is_object()) else {
        return invalid(&[contract::Violation {
            field: "input".into(),
            kind: "required",
            description: "input is required".into(),
        }]);
    };
    let violations = model.contract.check_input(input, "input");
    if !violations.is_empty() {
        return invalid(&violations);
    }
    let reference = model.reference();
    fake.created.push((reference.clone(), input.clone()));
    let id = format!("fake{:04}rq7h2dxmcq", fake.created.len());
    let script = fake
        .scripts
        .pop_front()
        .unwrap_or(Script::Succeed { polls: 2 });
    let (name, version) = reference
        .split_once(':')
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .unwrap_or((
            reference.clone(),
            "dp-4d0bcc010b3049749a251855f12800be".into(),
        ));
    let prediction = Prediction {
        id: id.clone(),
        model: name,
        version,
        input: input.clone(),
        status: "starting",
        logs: String::new(),
        output: None,
        error: None,
        script,
        polls: 0,
        produces: model.produces(input),
        output_is_list: model.contract.output_is_list(),
    };
    let body = render(&fake.origin, &prediction);
    fake.predictions.insert(id, prediction);
    (StatusCode::CREATED, Json(body)).into_response()
}

/// Replicate's answer to an input its schema refuses.
fn invalid(violations: &[contract::Violation]) -> Response {
    let detail: String = violations.iter().map(|v| format!("- {v}\n")).collect();
    let fields: Vec<Value> = violations
        .iter()
        .map(|v| json!({ "type": v.kind, "field": v.field, "description": v.description }))
        .collect();
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        [(header::CONTENT_TYPE, "application/problem+json")],
        json!({
            "title": "Input validation failed",
            "detail": detail,
            "status": 422,
            "invalid_fields": fields,
        })
        .to_string(),
    )
        .into_response()
}

fn render(origin: &str, p: &Prediction) -> Value {
    json!({
        "id": p.id,
        "model": p.model,
        "version": p.version,
        "input": p.input,
        "logs": p.logs,
        "output": p.output,
        "data_removed": false,
        "error": p.error,
        "status": p.status,
        "created_at": "2026-11-25T10:00:00.000Z",
        "urls": {
            "get": format!("{origin}/v1/predictions/{}", p.id),
            "cancel": format!("{origin}/v1/predictions/{}/cancel", p.id),
            "web": format!("https://replicate.com/p/{}", p.id),
        },
    })
}

async fn poll(State(state): State<Shared>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let mut fake = lock(&state);
    if let Err(denied) = authorised(&fake, &headers) {
        return denied;
    }
    if fake.fail_polls > 0 {
        fake.fail_polls -= 1;
        return problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
            "Something went wrong.",
        );
    }
    let origin = fake.origin.clone();
    let Some(prediction) = fake.predictions.get_mut(&id) else {
        return not_found();
    };
    let mut new_file = None;
    if matches!(prediction.status, "starting" | "processing") {
        prediction.polls += 1;
        prediction.status = "processing";
        match prediction.script.clone() {
            Script::Succeed { polls } if prediction.polls > polls => {
                let (extension, bytes) = match prediction.produces {
                    Produces::Png => ("png", crate::png(64, 64)),
                    // The start of a real MP4 (`ftyp` box) and of an MP3 with an ID3 tag.
                    Produces::Mp4 => ("mp4", mp4()),
                    Produces::Mp3 => ("mp3", b"ID3\x04\x00\x00\x00\x00\x00\x00fake audio".to_vec()),
                    Produces::Wav => ("wav", wav()),
                };
                let url = format!("{origin}/files/{}/output.{extension}", prediction.id);
                prediction.output = Some(if prediction.output_is_list {
                    json!([url])
                } else {
                    json!(url)
                });
                prediction.status = "succeeded";
                new_file = Some((format!("{}/output.{extension}", prediction.id), bytes));
            }
            Script::Succeed { polls } => {
                let percent = prediction.polls * 100 / (polls + 1);
                prediction.logs.push_str(&format!(
                    "{percent:3}%|████      | {}/{} [00:01<00:02, 1.00it/s]\n",
                    prediction.polls,
                    polls + 1
                ));
            }
            Script::Fail(error) => {
                prediction.status = "failed";
                prediction.error = Some(error);
            }
            Script::Hang => {}
            Script::Garbage => {
                let url = format!("{origin}/files/{}/output.png", prediction.id);
                prediction.output = Some(if prediction.output_is_list {
                    json!([url])
                } else {
                    json!(url)
                });
                prediction.status = "succeeded";
                let garbage: Vec<u8> = (0..4_096u32).map(|i| (i * 7919 % 251) as u8).collect();
                new_file = Some((format!("{}/output.png", prediction.id), garbage));
            }
            Script::Empty => {
                prediction.status = "succeeded";
                prediction.output = Some(Value::Null);
                prediction
                    .logs
                    .push_str("Traceback (most recent call last): CUDA out of memory\n");
            }
        }
    }
    let body = render(&origin, prediction);
    let reference = match prediction.version.as_str() {
        v if v.starts_with("dp-") => prediction.model.clone(),
        v => format!("{}:{v}", prediction.model),
    };
    let output = prediction.output.clone();
    if let Some((path, bytes)) = new_file {
        fake.files.insert(path, bytes);
        fake.outputs
            .push((reference, output.unwrap_or(Value::Null)));
    }
    Json(body).into_response()
}

fn wav() -> Vec<u8> {
    let mut bytes = b"RIFF\x24\x00\x00\x00WAVEfmt ".to_vec();
    bytes.extend_from_slice(&[
        16, 0, 0, 0, 1, 0, 1, 0, 0x40, 0x1f, 0, 0, 0x80, 0x3e, 0, 0, 2, 0, 16, 0,
    ]);
    bytes.extend_from_slice(b"data\x00\x00\x00\x00");
    bytes
}

fn mp4() -> Vec<u8> {
    let mut bytes = vec![0, 0, 0, 0x18];
    bytes.extend_from_slice(b"ftypisom\x00\x00\x02\x00isomiso2");
    bytes.extend_from_slice(&[0; 64]);
    bytes
}

async fn cancel(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut fake = lock(&state);
    if let Err(denied) = authorised(&fake, &headers) {
        return denied;
    }
    let origin = fake.origin.clone();
    let Some(prediction) = fake.predictions.get_mut(&id) else {
        return not_found();
    };
    if matches!(prediction.status, "starting" | "processing") {
        prediction.status = "canceled";
    }
    let body = render(&origin, prediction);
    fake.cancelled.push(id);
    Json(body).into_response()
}

async fn file(State(state): State<Shared>, Path((id, name)): Path<(String, String)>) -> Response {
    match lock(&state).files.get(&format!("{id}/{name}")) {
        Some(bytes) => bytes.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

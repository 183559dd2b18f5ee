//! What the fake checks before it takes a call, as strictly as Discord: the bot token, the
//! rate limit, message bodies and uploads, mentions, and command options; and Discord's error
//! shapes.

use super::*;

pub(super) fn error(status: u16, code: u64, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        Json(json!({"message": message, "code": code})),
    )
        .into_response()
}

pub(super) fn form_error(field: &str, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({
            "message": "Invalid Form Body",
            "code": 50035,
            "errors": {field: {"_errors": [{"code": "BASE_TYPE_BAD_LENGTH", "message": message}]}}
        })),
    )
        .into_response()
}

/// Takes an acknowledgement for the interaction with `token`: the first only.
pub(super) fn acknowledge(state: &mut Fake, token: &str, body: &Value) -> Result<(), Response> {
    let kind = body["type"].as_u64().unwrap_or(0);
    let Some(interaction) = state.interactions.get_mut(token) else {
        return Err(error(404, 10062, "Unknown interaction"));
    };
    interaction.acks += 1;
    if interaction.ack.is_some() {
        return Err(error(
            400,
            40060,
            "Interaction has already been acknowledged.",
        ));
    }
    if interaction.created.elapsed() > ACK_DEADLINE {
        return Err(error(404, 10062, "Unknown interaction"));
    }
    if !matches!(kind, 1 | 4 | 5 | 6 | 7 | 8 | 9) {
        return Err(form_error(
            "type",
            "Value is not a valid interaction callback type.",
        ));
    }
    if matches!(kind, 4 | 7) {
        check_message(&body["data"], 0)?;
    }
    interaction.ack = Some(kind);
    let id = interaction.id.clone();
    let channel = interaction.channel.clone();
    let source = interaction.source.clone();
    let data = &body["data"];
    let original = match kind {
        4 | 5 => {
            let message_id = state.snowflake();
            let mut message = Message::from_body(
                message_id.clone(),
                channel,
                Via::Original,
                Some(id),
                data,
                Vec::new(),
            );
            message.loading = kind == 5;
            state.messages.push(message);
            Some(message_id)
        }
        _ => source,
    };
    if let Some(interaction) = state.interactions.get_mut(token) {
        interaction.original = original;
    }
    Ok(())
}

pub(super) fn authorised(state: &Fake, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bot {}", state.bot_token))
}

pub(super) fn unauthorised() -> Response {
    error(401, 0, "401: Unauthorized")
}

/// A scripted 429, when one is due.
pub(super) fn limited(state: &mut Fake) -> Option<Response> {
    let (count, retry_after) = state.rate_limit?;
    state.rate_limit = (count > 1).then_some((count - 1, retry_after));
    state.rate_limited += 1;
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({"message": "You are being rate limited.", "retry_after": retry_after, "global": false})),
    )
        .into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        ("retry-after", format!("{}", retry_after.ceil() as u64)),
        ("x-ratelimit-limit", "5".into()),
        ("x-ratelimit-remaining", "0".into()),
        ("x-ratelimit-reset-after", format!("{retry_after}")),
        ("x-ratelimit-scope", "user".into()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    Some(response)
}

/// Checks a message body; `files` is how many files come with it.
pub(super) fn check_message(body: &Value, files: usize) -> Result<(), Response> {
    let content = body["content"].as_str().unwrap_or_default();
    if content.chars().count() > 2_000 {
        return Err(form_error("content", "Must be 2000 or fewer in length."));
    }
    let embeds = body["embeds"].as_array().cloned().unwrap_or_default();
    if embeds.len() > 10 {
        return Err(form_error("embeds", "Must be 10 or fewer in length."));
    }
    for embed in &embeds {
        if embed["description"]
            .as_str()
            .is_some_and(|d| d.chars().count() > 4_096)
        {
            return Err(form_error(
                "embeds.0.description",
                "Must be 4096 or fewer in length.",
            ));
        }
    }
    let rows = body["components"].as_array().cloned().unwrap_or_default();
    if rows.len() > 5 {
        return Err(form_error("components", "Must be 5 or fewer in length."));
    }
    for row in &rows {
        let buttons = row["components"].as_array().cloned().unwrap_or_default();
        if row["type"] != 1 || buttons.is_empty() || buttons.len() > 5 {
            return Err(form_error(
                "components.0.components",
                "Must be between 1 and 5 in length.",
            ));
        }
        for button in &buttons {
            if button["label"]
                .as_str()
                .is_some_and(|l| l.chars().count() > 80)
            {
                return Err(form_error(
                    "components.0.components.0.label",
                    "Must be 80 or fewer in length.",
                ));
            }
            match button["style"].as_u64() {
                Some(5) => {
                    if button["url"].as_str().is_none_or(|u| u.len() > 512)
                        || button.get("custom_id").is_some()
                    {
                        return Err(form_error(
                            "components.0.components.0.url",
                            "A link button needs a url and no custom_id.",
                        ));
                    }
                }
                Some(1..=4) => {
                    let id = button["custom_id"].as_str().unwrap_or_default();
                    if id.is_empty() || id.chars().count() > 100 {
                        return Err(form_error(
                            "components.0.components.0.custom_id",
                            "Must be between 1 and 100 in length.",
                        ));
                    }
                }
                _ => {
                    return Err(form_error(
                        "components.0.components.0.style",
                        "Value is not a valid button style.",
                    ));
                }
            }
        }
    }
    if content.is_empty() && embeds.is_empty() && files == 0 && rows.is_empty() {
        return Err(error(400, 50006, "Cannot send an empty message"));
    }
    Ok(())
}

/// The JSON body and files of a request (JSON, or multipart with `payload_json` and `files[n]`).
pub(super) async fn read_body(
    request: Request,
    limit: usize,
) -> Result<(Value, Vec<(String, usize)>), Response> {
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|kind| kind.starts_with("multipart/form-data"));
    if multipart {
        let mut form = Multipart::from_request(request, &())
            .await
            .map_err(|_| error(400, 50035, "Invalid Form Body"))?;
        let mut payload = Value::Null;
        let mut files = Vec::new();
        while let Some(field) = form
            .next_field()
            .await
            .map_err(|_| error(400, 50035, "Invalid Form Body"))?
        {
            let name = field.name().unwrap_or_default().to_string();
            let file_name = field.file_name().map(str::to_string);
            let bytes = field
                .bytes()
                .await
                .map_err(|_| error(400, 50035, "Invalid Form Body"))?;
            if name == "payload_json" {
                payload = serde_json::from_slice(&bytes)
                    .map_err(|_| form_error("payload_json", "Invalid JSON."))?;
            } else if name.starts_with("files[") {
                if bytes.len() > limit {
                    return Err(error(413, 40005, "Request entity too large"));
                }
                files.push((file_name.unwrap_or(name), bytes.len()));
            }
        }
        return Ok((payload, files));
    }
    let body = Bytes::from_request(request, &())
        .await
        .map_err(|_| error(400, 50109, "The request body contains invalid JSON."))?;
    if body.is_empty() {
        return Ok((Value::Null, Vec::new()));
    }
    let value = serde_json::from_slice(&body)
        .map_err(|_| error(400, 50109, "The request body contains invalid JSON."))?;
    Ok((value, Vec::new()))
}

pub(super) fn mentions(body: &Value) -> Vec<String> {
    body["allowed_mentions"]["users"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u.as_str().map(str::to_string))
        .collect()
}

/// A command's options as Discord checks them: at most 25, names and descriptions within their
/// lengths, required before optional, at most 25 choices and only on string, integer and number
/// options, each choice's value of its option's type, and 4,000 characters in all.
pub(super) fn check_options(command: &Value) -> Result<(), String> {
    let options = command["options"].as_array().cloned().unwrap_or_default();
    if options.len() > 25 {
        return Err("Must be 25 or fewer in length.".into());
    }
    let mut total = command["name"].as_str().map_or(0, str::len)
        + command["description"].as_str().map_or(0, str::len);
    let mut optional_seen = false;
    for option in &options {
        let name = option["name"].as_str().unwrap_or_default();
        let description = option["description"].as_str().unwrap_or_default();
        if !(1..=32).contains(&name.chars().count())
            || !name
                .chars()
                .all(|c| c.is_lowercase() || c.is_numeric() || c == '-' || c == '_')
            || !(1..=100).contains(&description.chars().count())
        {
            return Err(format!("Invalid option name or description: {name:?}."));
        }
        total += name.len() + description.len();
        let required = option["required"].as_bool().unwrap_or(false);
        if required && optional_seen {
            return Err("Required options must be placed before non-required options.".into());
        }
        optional_seen |= !required;
        let kind = option["type"].as_u64().unwrap_or(0);
        let Some(choices) = option["choices"].as_array() else {
            continue;
        };
        if choices.len() > 25 {
            return Err("Must be 25 or fewer in length.".into());
        }
        for choice in choices {
            let label = choice["name"].as_str().unwrap_or_default();
            let value = &choice["value"];
            let typed = match kind {
                3 => value
                    .as_str()
                    .is_some_and(|v| (1..=100).contains(&v.chars().count())),
                4 => value.is_i64(),
                10 => value.is_number(),
                _ => return Err("Choices are only for string, integer and number options.".into()),
            };
            if !typed || !(1..=100).contains(&label.chars().count()) {
                return Err(format!("Invalid choice {choice} for option {name:?}."));
            }
            total += label.len() + value.to_string().len();
        }
    }
    if total > 4_000 {
        return Err("Combined sum of characters must be 4000 or fewer.".into());
    }
    Ok(())
}

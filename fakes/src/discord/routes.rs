//! The REST routes the fake answers: command registration, interaction callbacks and webhooks
//! (follow-ups, edits, deletes), channel messages, DMs and attachment downloads.

use super::*;

pub(super) async fn register(
    State(state): State<Shared>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    Json(commands): Json<Value>,
) -> Response {
    let mut state = lock(&state);
    if !authorised(&state, &headers) {
        return unauthorised();
    }
    if params.get("app") != Some(&state.application) {
        return error(403, 50001, "Missing Access");
    }
    let Some(list) = commands.as_array() else {
        return form_error("_root", "Must be an array.");
    };
    if list.len() > 100 {
        return form_error("_root", "Must be 100 or fewer in length.");
    }
    for command in list {
        let name = command["name"].as_str().unwrap_or_default();
        let kind = command["type"].as_u64().unwrap_or(1);
        let description = command["description"].as_str().unwrap_or_default();
        let name_ok = (1..=32).contains(&name.chars().count())
            && (kind != 1
                || name
                    .chars()
                    .all(|c| c.is_lowercase() || c.is_numeric() || c == '-' || c == '_'));
        let description_ok = kind != 1 || (1..=100).contains(&description.chars().count());
        if !name_ok || !description_ok {
            return form_error("0.name", "Invalid command name or description.");
        }
        if let Err(why) = check_options(command) {
            return form_error("0.options", &why);
        }
    }
    let scope = params
        .get("guild")
        .cloned()
        .unwrap_or_else(|| "global".into());
    state.commands.insert(scope, commands.clone());
    Json(commands).into_response()
}

pub(super) async fn callback(
    State(state): State<Shared>,
    Path((id, token)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    let mut state = lock(&state);
    if state.interactions.get(&token).is_none_or(|i| i.id != id) {
        return error(404, 10062, "Unknown interaction");
    }
    match acknowledge(&mut state, &token, &body) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(response) => response,
    }
}

/// The interaction behind a webhook token, if it may be used now.
pub(super) fn webhook<'a>(
    state: &'a mut Fake,
    app: &str,
    token: &str,
) -> Result<&'a mut Interaction, Response> {
    if app != state.application {
        return Err(error(404, 10015, "Unknown Webhook"));
    }
    let Some(interaction) = state.interactions.get_mut(token) else {
        return Err(error(401, 50027, "Invalid Webhook Token"));
    };
    if interaction.expired || interaction.created.elapsed() > TOKEN_LIFETIME {
        return Err(error(401, 50027, "Invalid Webhook Token"));
    }
    if interaction.ack.is_none() {
        return Err(error(404, 10015, "Unknown Webhook"));
    }
    Ok(interaction)
}

pub(super) async fn followup(
    State(state): State<Shared>,
    Path((app, token)): Path<(String, String)>,
    request: Request,
) -> Response {
    let limit = lock(&state).upload_limit;
    let (body, files) = match read_body(request, limit).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let mut state = lock(&state);
    if let Some(response) = limited(&mut state) {
        return response;
    }
    let (id, channel, ack, original) = match webhook(&mut state, &app, &token) {
        Ok(interaction) => (
            interaction.id.clone(),
            interaction.channel.clone(),
            interaction.ack,
            interaction.original.clone(),
        ),
        Err(response) => return response,
    };
    if let Err(response) = check_message(&body, files.len()) {
        return response;
    }
    // "When using this endpoint directly after responding to an interaction with
    // DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE, this endpoint will function as Edit Original
    // Interaction Response … The ephemeral flag will be ignored, and the value you provided in
    // the initial defer response will be preserved" (Create Followup Message,
    // https://discord.com/developers/docs/interactions/receiving-and-responding).
    if ack == Some(5)
        && let Some(loading) = state
            .messages
            .iter_mut()
            .find(|m| Some(&m.id) == original.as_ref() && m.loading)
    {
        if loading.deleted {
            return error(404, 10008, "Unknown Message");
        }
        edit(loading, &body, files);
        return Json(message_json(loading)).into_response();
    }
    let message_id = state.snowflake();
    let message = Message::from_body(
        message_id.clone(),
        channel,
        Via::Followup,
        Some(id),
        &body,
        files,
    );
    state.messages.push(message.clone());
    Json(message_json(&message)).into_response()
}

pub(super) fn message_json(message: &Message) -> Value {
    json!({"id": message.id, "channel_id": message.channel, "content": message.content,
           "embeds": message.embeds, "components": message.components, "flags": message.flags,
           "type": 0, "author": {"id": BOT_USER, "username": "imagegpt", "bot": true},
           "attachments": message.files.iter().map(|(name, size)| json!({"filename": name, "size": size})).collect::<Vec<_>>()})
}

pub(super) async fn webhook_message(
    State(state): State<Shared>,
    method: Method,
    Path((app, token, message)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    let limit = lock(&state).upload_limit;
    let (body, files) = if method == Method::PATCH {
        match read_body(request, limit).await {
            Ok(read) => read,
            Err(response) => return response,
        }
    } else {
        (Value::Null, Vec::new())
    };
    let mut state = lock(&state);
    if let Some(response) = limited(&mut state) {
        return response;
    }
    let (interaction, original) = match webhook(&mut state, &app, &token) {
        Ok(interaction) => (interaction.id.clone(), interaction.original.clone()),
        Err(response) => return response,
    };
    let target = if message == "@original" {
        original.clone()
    } else {
        Some(message)
    };
    // A token reaches its own messages, and (for a button) the message the button was on.
    let found = state.messages.iter_mut().find(|m| {
        Some(&m.id) == target.as_ref()
            && !m.deleted
            && (m.interaction.as_deref() == Some(interaction.as_str())
                || Some(&m.id) == original.as_ref())
    });
    let Some(found) = found else {
        return error(404, 10008, "Unknown Message");
    };
    if method == Method::DELETE {
        found.deleted = true;
        return StatusCode::NO_CONTENT.into_response();
    }
    if method == Method::GET {
        return Json(message_json(found)).into_response();
    }
    if let Err(response) = check_message(&body, files.len()) {
        return response;
    }
    edit(found, &body, files);
    Json(message_json(found)).into_response()
}

pub(super) fn edit(message: &mut Message, body: &Value, files: Vec<(String, usize)>) {
    if let Some(content) = body["content"].as_str() {
        message.content = content.into();
    }
    if let Some(embeds) = body["embeds"].as_array() {
        message.embeds = embeds.clone();
    }
    if body.get("components").is_some() {
        message.components = body["components"].clone();
    }
    if !files.is_empty() {
        message.files = files;
    }
    message.loading = false;
    message.edits += 1;
}

/// A request made with the bot token: its body and files.
pub(super) async fn bot_request(
    state: &Shared,
    request: Request,
) -> Result<(Value, Vec<(String, usize)>), Response> {
    let limit = lock(state).upload_limit;
    if !authorised(&lock(state), request.headers()) {
        return Err(unauthorised());
    }
    read_body(request, limit).await
}

pub(super) async fn channel_post(
    State(state): State<Shared>,
    Path(channel): Path<String>,
    request: Request,
) -> Response {
    let (body, files) = match bot_request(&state, request).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let mut state = lock(&state);
    if let Some(response) = limited(&mut state) {
        return response;
    }
    if state.denied.contains(&channel) {
        return error(403, 50001, "Missing Access");
    }
    let closed = state
        .dms
        .iter()
        .any(|(person, dm)| *dm == channel && state.closed_dms.contains(person));
    if closed {
        return error(403, 50007, "Cannot send messages to this user");
    }
    if let Err(response) = check_message(&body, files.len()) {
        return response;
    }
    if body["flags"].as_u64().is_some_and(|f| f & 64 != 0) {
        return form_error(
            "flags",
            "Ephemeral messages can only be sent by interactions.",
        );
    }
    let id = state.snowflake();
    // Checked above: a channel message is never ephemeral.
    let message = Message::from_body(id, channel, Via::Bot, None, &body, files);
    state.messages.push(message.clone());
    Json(message_json(&message)).into_response()
}

pub(super) async fn channel_edit(
    State(state): State<Shared>,
    Path((channel, message)): Path<(String, String)>,
    request: Request,
) -> Response {
    let (body, files) = match bot_request(&state, request).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let mut state = lock(&state);
    if let Some(response) = limited(&mut state) {
        return response;
    }
    if let Err(response) = check_message(&body, files.len()) {
        return response;
    }
    // The bot may edit its own messages; ephemeral ones are not in any channel.
    let found = state
        .messages
        .iter_mut()
        .find(|m| m.id == message && !m.deleted && !m.ephemeral() && m.channel == channel);
    let Some(found) = found else {
        return error(404, 10008, "Unknown Message");
    };
    edit(found, &body, files);
    Json(message_json(found)).into_response()
}

pub(super) async fn open_dm(
    State(state): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut state = lock(&state);
    if !authorised(&state, &headers) {
        return unauthorised();
    }
    let Some(person) = body["recipient_id"].as_str().map(str::to_string) else {
        return form_error("recipient_id", "This field is required");
    };
    let channel = match state.dms.get(&person) {
        Some(channel) => channel.clone(),
        None => {
            let channel = state.snowflake();
            state.dms.insert(person.clone(), channel.clone());
            channel
        }
    };
    Json(json!({"id": channel, "type": 1, "recipients": [{"id": person}]})).into_response()
}

pub(super) async fn download(
    State(state): State<Shared>,
    Path((id, name)): Path<(String, String)>,
) -> Response {
    match lock(&state).files.get(&format!("{id}/{name}")) {
        Some(bytes) => bytes.clone().into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "This content is no longer available.",
        )
            .into_response(),
    }
}

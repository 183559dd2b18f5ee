//! The Bot API methods the fake answers, each as strict as Telegram: routing by token and
//! method, long polling, the sending limits, and each method's checks and effects.

use super::*;

pub(super) fn buttons(markup: Option<&Value>) -> Result<Vec<Vec<(String, String)>>, Response> {
    let Some(markup) = markup else {
        return Ok(Vec::new());
    };
    let rows = markup
        .get("inline_keyboard")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            fail(
                400,
                "Bad Request: can't parse reply keyboard markup JSON object",
            )
        })?;
    let mut out = Vec::new();
    for row in rows {
        let mut cells = Vec::new();
        for button in row.as_array().into_iter().flatten() {
            let label = button.get("text").and_then(Value::as_str).unwrap_or("");
            let data = button.get("callback_data").and_then(Value::as_str);
            let url = button.get("url").and_then(Value::as_str);
            if label.is_empty() {
                return Err(fail(
                    400,
                    "Bad Request: text buttons are unallowed in the inline keyboard",
                ));
            }
            match (data, url) {
                (Some(data), _) if data.is_empty() || data.len() > 64 => {
                    return Err(fail(400, "Bad Request: BUTTON_DATA_INVALID"));
                }
                (Some(data), _) => cells.push((label.to_string(), data.to_string())),
                (None, Some(url)) => cells.push((label.to_string(), format!("url:{url}"))),
                (None, None) => {
                    return Err(fail(400, "Bad Request: can't parse inline keyboard button"));
                }
            }
        }
        out.push(cells);
    }
    Ok(out)
}

/// The methods this fake implements.
pub(super) const METHODS: &[&str] = &[
    "getMe",
    "getUpdates",
    "setMyCommands",
    "setWebhook",
    "deleteWebhook",
    "answerCallbackQuery",
    "sendChatAction",
    "getFile",
    "deleteMessage",
    "sendMessage",
    "editMessageText",
    "editMessageReplyMarkup",
    "sendPhoto",
    "sendDocument",
    "sendVideo",
    "sendAnimation",
    "sendAudio",
    "sendInvoice",
    "answerPreCheckoutQuery",
    "refundStarPayment",
];

pub(super) async fn method_get(
    state: State<Shared>,
    path: Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    method(state, path, headers, Bytes::new()).await
}

pub(super) async fn method(
    State(state): State<Shared>,
    Path((bot, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if bot.strip_prefix("bot") != Some(lock(&state).token.as_str()) {
        return fail(401, "Unauthorized");
    }
    // Method names are case-insensitive (teloxide sends `GetMe`); record Telegram's spelling.
    let Some(name) = METHODS
        .iter()
        .find(|m| m.eq_ignore_ascii_case(&name))
        .map(|m| (*m).to_string())
    else {
        return fail(404, "Not Found");
    };
    let call = match read_call(&headers, body).await {
        Ok(call) => call,
        Err(response) => return response,
    };
    lock(&state).calls.push(name.clone());
    if name == "getUpdates" {
        return get_updates(&state, &call.params).await;
    }
    let mut fake = lock(&state);
    let limit = match fake.upload_limit {
        0 => UPLOAD_LIMIT,
        limit => limit,
    };
    if call.upload > limit {
        return fail(413, "Request Entity Too Large");
    }
    let response = handle(&mut fake, &name, &call);
    if response.status().is_success() {
        *fake.counts.entry(name).or_default() += 1;
    }
    response
}

pub(super) async fn get_updates(state: &Shared, params: &Map<String, Value>) -> Response {
    let offset = params.get("offset").and_then(as_i64).unwrap_or(0);
    let timeout = params
        .get("timeout")
        .and_then(as_i64)
        .unwrap_or(0)
        .clamp(0, 50);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout as u64);
    {
        let mut fake = lock(state);
        match fake.polls_left {
            Some(0) => return fail(502, "Bad Gateway"),
            Some(n) => fake.polls_left = Some(n - 1),
            None => {}
        }
    }
    loop {
        let notified = state.1.notified();
        {
            let mut fake = lock(state);
            if fake.webhook.is_some() {
                return fail(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
                );
            }
            // Confirming an offset forgets everything before it, as Telegram does.
            while fake
                .updates
                .front()
                .and_then(|u| u.get("update_id"))
                .and_then(Value::as_i64)
                .is_some_and(|id| id < offset)
            {
                fake.updates.pop_front();
            }
            if !fake.updates.is_empty() || tokio::time::Instant::now() >= deadline {
                let batch: Vec<Value> = fake.updates.iter().take(100).cloned().collect();
                return ok(Value::Array(batch));
            }
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    }
}

/// Leeway for the network between the bot and Telegram, in the limits.
pub(super) const LEEWAY: Duration = Duration::from_millis(10);

/// `Some(retry_after)` when one more message to `chat` now would break Telegram's limits;
/// otherwise the message is counted.
pub(super) fn over_limits(fake: &mut Fake, per_second: u32, chat: i64) -> Option<u64> {
    let now = tokio::time::Instant::now();
    let second = Duration::from_secs(1) - LEEWAY;
    let minute = Duration::from_secs(60) - LEEWAY;
    while fake.recent.front().is_some_and(|at| now - *at >= second) {
        fake.recent.pop_front();
    }
    let mine = fake.recent_by_chat.entry(chat).or_default();
    while mine.front().is_some_and(|at| now - *at >= minute) {
        mine.pop_front();
    }
    let in_chat_last_second = mine.iter().filter(|at| now - **at < second).count();
    // Groups and channels have negative ids.
    let group_full = chat < 0 && mine.len() >= 20;
    if in_chat_last_second >= 1 || group_full {
        return Some(if group_full { 3 } else { 1 });
    }
    if fake.recent.len() >= per_second as usize {
        return Some(1);
    }
    mine.push_back(now);
    fake.recent.push_back(now);
    None
}

pub(super) fn handle(fake: &mut Fake, name: &str, call: &Call) -> Response {
    let params = &call.params;
    let sending = name.starts_with("send") || name.starts_with("edit");
    if sending && name != "sendChatAction" && fake.rate_limited > 0 {
        fake.rate_limited -= 1;
        return too_many_requests(fake.retry_after);
    }
    let chat_id = params.get("chat_id").and_then(as_i64);
    let message = name.starts_with("send") && name != "sendChatAction";
    if message
        && let (Some(per_second), Some(chat)) = (fake.limits, chat_id)
        && let Some(retry_after) = over_limits(fake, per_second, chat)
    {
        fake.limited += 1;
        return too_many_requests(retry_after);
    }
    // A private chat's id is the person's; a bot may only write there once they opened it.
    if (sending || name == "sendInvoice")
        && let Some(person) = chat_id.filter(|id| *id > 0)
    {
        if fake.blocked.contains(&person) {
            return fail(403, "Forbidden: bot was blocked by the user");
        }
        if !fake.started.contains(&person) {
            return fail(
                403,
                "Forbidden: bot can't initiate conversation with a user",
            );
        }
    }
    match name {
        "getMe" => ok(json!({
            "id": BOT_ID, "is_bot": true, "first_name": "ImageGPT", "username": BOT_USERNAME,
            "can_join_groups": true, "can_read_all_group_messages": false,
            "supports_inline_queries": false, "can_connect_to_business": false,
            "has_main_web_app": false,
        })),
        "setMyCommands" => {
            let Some(commands) = params.get("commands").and_then(Value::as_array) else {
                return fail(400, "Bad Request: parameter \"commands\" is required");
            };
            let mut parsed = Vec::new();
            for command in commands {
                let name = command.get("command").and_then(Value::as_str).unwrap_or("");
                let description = command
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let name_ok = !name.is_empty()
                    && name.len() <= 32
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if !name_ok {
                    return fail(400, "Bad Request: BOT_COMMAND_INVALID");
                }
                if description.is_empty() || description.chars().count() > 256 {
                    return fail(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID");
                }
                parsed.push((name.to_string(), description.to_string()));
            }
            if parsed.len() > 100 {
                return fail(400, "Bad Request: too many commands specified");
            }
            let scope = match command_scope(params.get("scope")) {
                Ok(scope) => scope,
                Err(why) => return fail(400, &why),
            };
            fake.commands.insert(scope, parsed);
            ok(json!(true))
        }
        "setWebhook" => {
            let Some(url) = params.get("url").and_then(Value::as_str) else {
                return fail(400, "Bad Request: parameter \"url\" is required");
            };
            let secret = params
                .get("secret_token")
                .and_then(Value::as_str)
                .map(str::to_string);
            fake.webhook = Some((url.to_string(), secret));
            ok(json!(true))
        }
        "deleteWebhook" => {
            fake.webhook = None;
            ok(json!(true))
        }
        "answerCallbackQuery" => {
            if params
                .get("callback_query_id")
                .and_then(Value::as_str)
                .is_none()
            {
                return fail(
                    400,
                    "Bad Request: parameter \"callback_query_id\" is required",
                );
            }
            let text = params.get("text").and_then(Value::as_str).unwrap_or("");
            if text.chars().count() > 200 {
                return fail(400, "Bad Request: MESSAGE_TOO_LONG");
            }
            fake.sent.push(Sent {
                method: name.into(),
                chat_id: 0,
                message_id: 0,
                text: text.into(),
                reply_to: None,
                buttons: Vec::new(),
                media_bytes: 0,
                alert: params
                    .get("show_alert")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    || params.get("show_alert").and_then(Value::as_str) == Some("true"),
                thumbnail: false,
            });
            ok(json!(true))
        }
        "sendChatAction" => {
            if chat_id.is_none() {
                return fail(400, "Bad Request: chat not found");
            }
            ok(json!(true))
        }
        "getFile" => {
            let id = params.get("file_id").and_then(Value::as_str).unwrap_or("");
            match fake.files.get(id) {
                Some((_, _, size)) if *size > DOWNLOAD_LIMIT => {
                    fail(400, "Bad Request: file is too big")
                }
                Some((path, _, size)) => ok(json!({
                    "file_id": id, "file_unique_id": "u", "file_size": size, "file_path": path,
                })),
                None => fail(400, "Bad Request: invalid file_id"),
            }
        }
        "deleteMessage" => ok(json!(true)),
        "sendInvoice" => {
            let Some(chat) = chat_id else {
                return fail(400, "Bad Request: chat not found");
            };
            let text = |key: &str| params.get(key).and_then(Value::as_str).unwrap_or("");
            let (title, description, payload) =
                (text("title"), text("description"), text("payload"));
            if title.is_empty() || title.chars().count() > 32 {
                return fail(400, "Bad Request: INVOICE_TITLE_INVALID");
            }
            if description.is_empty() || description.chars().count() > 255 {
                return fail(400, "Bad Request: INVOICE_DESCRIPTION_INVALID");
            }
            if payload.is_empty() || payload.len() > 128 {
                return fail(400, "Bad Request: INVOICE_PAYLOAD_INVALID");
            }
            // Stars: currency XTR, exactly one price, no provider token.
            if text("currency") != "XTR" {
                return fail(400, "Bad Request: CURRENCY_INVALID");
            }
            if !text("provider_token").is_empty() {
                return fail(400, "Bad Request: PAYMENT_PROVIDER_INVALID");
            }
            let prices = params.get("prices").and_then(Value::as_array);
            let amount = match prices.map(Vec::as_slice) {
                Some([price]) => price.get("amount").and_then(Value::as_u64).unwrap_or(0),
                _ => return fail(400, "Bad Request: STARS_INVOICE_INVALID"),
            };
            if amount == 0 || amount > 10_000 {
                return fail(400, "Bad Request: STARS_INVOICE_INVALID");
            }
            fake.invoices.push((chat, payload.to_string(), amount));
            let message_id = fake.next_message;
            fake.next_message += 1;
            fake.sent.push(Sent {
                method: name.to_string(),
                chat_id: chat,
                message_id,
                text: format!("{title}: {description}"),
                reply_to: None,
                buttons: Vec::new(),
                media_bytes: 0,
                alert: false,
                thumbnail: false,
            });
            ok(
                json!({ "message_id": message_id, "date": 0, "chat": { "id": chat, "type": "private" } }),
            )
        }
        "answerPreCheckoutQuery" => {
            let id = params
                .get("pre_checkout_query_id")
                .and_then(Value::as_str)
                .unwrap_or("");
            let ok_given = params.get("ok").and_then(Value::as_bool).or_else(|| {
                params
                    .get("ok")
                    .and_then(Value::as_str)
                    .map(|v| v == "true")
            });
            let Some(answer) = ok_given else {
                return fail(400, "Bad Request: parameter \"ok\" is required");
            };
            let error = params
                .get("error_message")
                .and_then(Value::as_str)
                .map(str::to_string);
            if !answer && error.as_deref().is_none_or(str::is_empty) {
                return fail(400, "Bad Request: ERROR_MESSAGE_EMPTY");
            }
            match fake.pre_checkouts.get_mut(id) {
                // Telegram drops the query after 10 seconds; each is answered once.
                Some(query)
                    if query.answer.is_none()
                        && query.asked.elapsed() <= Duration::from_secs(10) =>
                {
                    query.answer = Some((answer, error));
                    ok(json!(true))
                }
                _ => fail(
                    400,
                    "Bad Request: query is too old and response timeout expired or query ID is invalid",
                ),
            }
        }
        "refundStarPayment" => {
            let charge = params
                .get("telegram_payment_charge_id")
                .and_then(Value::as_str)
                .unwrap_or("");
            let user = params.get("user_id").and_then(Value::as_i64).or_else(|| {
                params
                    .get("user_id")
                    .and_then(Value::as_str)
                    .and_then(|v| v.parse().ok())
            });
            match fake.star_charges.get_mut(charge) {
                Some((payer, _)) if Some(*payer) != user => {
                    fail(400, "Bad Request: USER_ID_INVALID")
                }
                Some((_, true)) => fail(400, "Bad Request: CHARGE_ALREADY_REFUNDED"),
                Some((_, refunded)) => {
                    *refunded = true;
                    ok(json!(true))
                }
                None => fail(400, "Bad Request: CHARGE_ID_INVALID"),
            }
        }
        "sendMessage"
        | "editMessageText"
        | "sendPhoto"
        | "sendDocument"
        | "sendVideo"
        | "sendAnimation"
        | "sendAudio"
        | "editMessageReplyMarkup" => send(fake, name, call, chat_id),
        _ => fail(404, "Not Found"),
    }
}

pub(super) fn send(fake: &mut Fake, name: &str, call: &Call, chat_id: Option<i64>) -> Response {
    let params = &call.params;
    let Some(chat_id) = chat_id else {
        return fail(400, "Bad Request: chat_id is empty");
    };
    let is_text = name == "sendMessage" || name == "editMessageText";
    let raw = if is_text {
        params.get("text").and_then(Value::as_str).unwrap_or("")
    } else {
        params.get("caption").and_then(Value::as_str).unwrap_or("")
    };
    let visible = match params.get("parse_mode").and_then(Value::as_str) {
        Some("HTML") => match parse_html(raw) {
            Ok(visible) => visible,
            Err(why) => return fail(400, &format!("Bad Request: can't parse entities: {why}")),
        },
        Some(other) if !other.is_empty() => {
            return fail(
                400,
                &format!("Bad Request: unsupported parse_mode \"{other}\""),
            );
        }
        _ => raw.to_string(),
    };
    if is_text && visible.trim().is_empty() {
        return fail(400, "Bad Request: message text is empty");
    }
    if is_text && utf16(&visible) > 4096 {
        return fail(400, "Bad Request: message is too long");
    }
    if !is_text && name != "editMessageReplyMarkup" && utf16(&visible) > 1024 {
        return fail(400, "Bad Request: message caption is too long");
    }
    let buttons = match buttons(params.get("reply_markup")) {
        Ok(buttons) => buttons,
        Err(response) => return response,
    };
    let media_field = match name {
        "sendPhoto" => Some("photo"),
        "sendDocument" => Some("document"),
        "sendVideo" => Some("video"),
        "sendAnimation" => Some("animation"),
        "sendAudio" => Some("audio"),
        _ => None,
    };
    if let Some(field) = media_field
        && params.get(field).is_none()
    {
        return fail(
            400,
            &format!("Bad Request: there is no {field} in the request"),
        );
    }
    if let Some(thumbnail) = &call.thumbnail {
        // Telegram's rule: a JPEG under 200 kB, at most 320 px a side.
        let size = image::load_from_memory_with_format(thumbnail, image::ImageFormat::Jpeg)
            .map(|i| (i.width(), i.height()));
        if thumbnail.len() >= 200 * 1024 || !size.is_ok_and(|(w, h)| w <= 320 && h <= 320) {
            return fail(400, "Bad Request: wrong thumbnail");
        }
    }
    if name == "sendPhoto" && call.upload > 10 * 1024 * 1024 {
        return fail(400, "Bad Request: PHOTO_INVALID_DIMENSIONS");
    }
    let chat = if chat_id < 0 {
        Chat::group(chat_id)
    } else {
        Chat::private(chat_id)
    };
    let editing = name.starts_with("edit");
    let message_id = if editing {
        let Some(id) = params.get("message_id").and_then(as_i64) else {
            return fail(400, "Bad Request: message identifier is not specified");
        };
        let Some(current) = fake.messages.get(&(chat_id, id)) else {
            return fail(400, "Bad Request: message to edit not found");
        };
        // Telegram refuses an edit that changes nothing.
        let same_text = current.get("text").and_then(Value::as_str) == Some(visible.as_str());
        let same_markup = current.get("reply_markup") == params.get("reply_markup");
        if name == "editMessageText" && same_text && same_markup {
            return fail(
                400,
                "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
            );
        }
        id
    } else {
        let id = fake.next_message;
        fake.next_message += 1;
        id
    };
    let reply_to = params
        .get("reply_parameters")
        .and_then(|r| r.get("message_id"))
        .and_then(as_i64)
        .or_else(|| params.get("reply_to_message_id").and_then(as_i64));
    let mut message = json!({
        "message_id": message_id,
        "date": 1_764_064_800,
        "chat": chat.json(),
        "from": { "id": BOT_ID, "is_bot": true, "first_name": "ImageGPT", "username": BOT_USERNAME },
    });
    if let Value::Object(m) = &mut message {
        if is_text {
            m.insert("text".into(), json!(visible));
        } else if !visible.is_empty() {
            m.insert("caption".into(), json!(visible));
        }
        if let Some(markup) = params.get("reply_markup") {
            m.insert("reply_markup".into(), markup.clone());
        }
        let file = json!({ "file_id": format!("sent{message_id}"), "file_unique_id": format!("s{message_id}") });
        match name {
            "sendPhoto" => {
                m.insert("photo".into(), json!([{ "file_id": format!("sent{message_id}"), "file_unique_id": "s", "width": 1024, "height": 1024 }]));
            }
            "sendDocument" => {
                m.insert("document".into(), file);
            }
            "sendVideo" => {
                m.insert("video".into(), json!({ "file_id": format!("sent{message_id}"), "file_unique_id": "s", "width": 512, "height": 512, "duration": 5 }));
            }
            "sendAnimation" => {
                let animation = json!({ "file_id": format!("sent{message_id}"), "file_unique_id": "s", "width": 512, "height": 512, "duration": 5 });
                m.insert("animation".into(), animation);
                m.insert("document".into(), file);
            }
            "sendAudio" => {
                m.insert("audio".into(), json!({ "file_id": format!("sent{message_id}"), "file_unique_id": "s", "duration": 30 }));
            }
            _ => {}
        }
        if editing {
            m.insert("edit_date".into(), json!(1_764_064_801));
        }
    }
    fake.messages.insert((chat_id, message_id), message.clone());
    fake.sent.push(Sent {
        method: name.into(),
        chat_id,
        message_id,
        text: visible,
        reply_to,
        buttons,
        media_bytes: call.upload,
        alert: false,
        thumbnail: call.thumbnail.is_some(),
    });
    ok(message)
}

pub(super) async fn file(
    State(state): State<Shared>,
    Path((bot, path)): Path<(String, String)>,
) -> Response {
    let fake = lock(&state);
    if bot.strip_prefix("bot") != Some(fake.token.as_str()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match fake.files.values().find(|(p, _, _)| *p == path) {
        Some((_, bytes, _)) => bytes.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The scope of a setMyCommands call as the `commands` map names it. A BotCommandScope is an
/// object with `type` one of the seven the Bot API lists; `chat`, `chat_administrators` and
/// `chat_member` need `chat_id`, and `chat_member` also `user_id`. No scope is the default.
pub(super) fn command_scope(scope: Option<&Value>) -> Result<String, String> {
    let Some(scope) = scope else {
        return Ok("default".into());
    };
    let scope = match scope {
        // Sent as a form field, the object arrives as JSON text.
        Value::String(text) => serde_json::from_str(text)
            .map_err(|_| "Bad Request: can't parse BotCommandScope JSON object".to_string())?,
        other => other.clone(),
    };
    let id = |field: &str| {
        scope
            .get(field)
            .and_then(|v| {
                v.as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
            .ok_or_else(|| format!("Bad Request: field \"{field}\" must be an Integer"))
    };
    match scope.get("type").and_then(Value::as_str) {
        Some(
            kind
            @ ("default" | "all_private_chats" | "all_group_chats" | "all_chat_administrators"),
        ) => Ok(kind.to_string()),
        Some(kind @ ("chat" | "chat_administrators")) => Ok(format!("{kind}:{}", id("chat_id")?)),
        Some("chat_member") => Ok(format!("chat_member:{}:{}", id("chat_id")?, id("user_id")?)),
        _ => Err("Bad Request: unsupported bot command scope type specified".into()),
    }
}

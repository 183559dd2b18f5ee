//! The Bot API's wire: a call's parameters from JSON, a form, multipart or the query, and the
//! `{"ok": …}` answers, 429s included.

use super::*;

pub(super) fn ok(result: Value) -> Response {
    Json(json!({ "ok": true, "result": result })).into_response()
}

pub(super) fn fail(code: u16, description: &str) -> Response {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
        Json(json!({ "ok": false, "error_code": code, "description": description })),
    )
        .into_response()
}

/// The parameters of a call, from JSON, a form, or the query, as JSON values (form fields that
/// hold JSON, like `reply_markup`, are parsed), plus any uploaded file's length.
pub(super) struct Call {
    pub(super) params: Map<String, Value>,
    pub(super) upload: usize,
    /// The `thumbnail` file part, if one was attached.
    pub(super) thumbnail: Option<Vec<u8>>,
}

pub(super) async fn read_call(headers: &HeaderMap, body: Bytes) -> Result<Call, Response> {
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if kind.starts_with("multipart/form-data") {
        let boundary =
            multer_boundary(kind).ok_or_else(|| fail(400, "Bad Request: invalid multipart"))?;
        return parse_multipart(&body, &boundary);
    }
    if body.is_empty() {
        return Ok(Call {
            params: Map::new(),
            upload: 0,
            thumbnail: None,
        });
    }
    if kind.starts_with("application/json") {
        return match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(params)) => Ok(Call {
                params,
                upload: 0,
                thumbnail: None,
            }),
            _ => Err(fail(400, "Bad Request: can't parse JSON")),
        };
    }
    if kind.starts_with("application/x-www-form-urlencoded") {
        let params = String::from_utf8_lossy(&body)
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_string(), form_value(&percent_decode(v))))
            .collect();
        return Ok(Call {
            params,
            upload: 0,
            thumbnail: None,
        });
    }
    Err(fail(400, "Bad Request: unsupported content type"))
}

pub(super) fn form_value(text: &str) -> Value {
    if text.starts_with('{') || text.starts_with('[') {
        serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
    } else {
        Value::String(text.to_string())
    }
}

pub(super) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) fn multer_boundary(content_type: &str) -> Option<String> {
    content_type
        .split(';')
        .find_map(|part| part.trim().strip_prefix("boundary="))
        .map(|b| b.trim_matches('"').to_string())
}

/// Splits a multipart body into text fields and file parts (their length only).
pub(super) fn parse_multipart(body: &[u8], boundary: &str) -> Result<Call, Response> {
    let delimiter = format!("--{boundary}");
    let mut params = Map::new();
    let mut upload = 0;
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let text = body;
    let positions: Vec<usize> = find_all(text, delimiter.as_bytes());
    if positions.is_empty() {
        return Err(fail(400, "Bad Request: invalid multipart"));
    }
    for window in positions.windows(2) {
        let part = &text[window[0] + delimiter.len()..window[1]];
        let part = part.strip_prefix(b"\r\n").unwrap_or(part);
        let Some(split) = find_all(part, b"\r\n\r\n").first().copied() else {
            continue;
        };
        let head = String::from_utf8_lossy(&part[..split]).to_string();
        let mut content = &part[split + 4..];
        if content.ends_with(b"\r\n") {
            content = &content[..content.len() - 2];
        }
        let name = head
            .split(';')
            .find_map(|p| p.trim().strip_prefix("name="))
            .map(|n| n.trim_matches('"').to_string())
            .unwrap_or_default();
        if head.contains("filename=") {
            files.insert(name.clone(), content.to_vec());
            params
                .entry(name)
                .or_insert_with(|| Value::String("<file>".into()));
        } else {
            params.insert(name, form_value(&String::from_utf8_lossy(content)));
        }
    }
    // A thumbnail is the part named `thumbnail`, or the part its `attach://NAME` names.
    let thumbnail_part = match params.get("thumbnail").and_then(Value::as_str) {
        Some(attach) if attach.starts_with("attach://") => attach["attach://".len()..].to_string(),
        _ => "thumbnail".to_string(),
    };
    let thumbnail = files.remove(&thumbnail_part);
    upload += files.values().map(Vec::len).sum::<usize>();
    Ok(Call {
        params,
        upload,
        thumbnail,
    })
}

pub(super) fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return Vec::new();
    }
    (0..=haystack.len() - needle.len())
        .filter(|&i| &haystack[i..i + needle.len()] == needle)
        .collect()
}

pub(super) fn as_i64(value: &Value) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

/// Telegram's 429, with how long to wait.
pub(super) fn too_many_requests(retry_after: u64) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({
            "ok": false,
            "error_code": 429,
            "description": format!("Too Many Requests: retry after {retry_after}"),
            "parameters": { "retry_after": retry_after },
        })),
    )
        .into_response()
}

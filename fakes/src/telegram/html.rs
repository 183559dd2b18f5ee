//! Telegram's HTML as the Bot API parses it (only its tags, `&` only in entities) and the
//! command entities it marks a message with.

use super::*;

/// The `entities` Telegram marks a message starting with a command with.
pub(super) fn command_entities(text: &str) -> Option<Value> {
    let command = text
        .split_whitespace()
        .next()
        .filter(|w| w.starts_with('/'))?;
    Some(json!([{ "type": "bot_command", "offset": 0, "length": utf16(command) }]))
}

pub(super) fn utf16(text: &str) -> usize {
    text.encode_utf16().count()
}

/// The visible text of Telegram HTML, or the error Telegram gives.
pub fn parse_html(text: &str) -> Result<String, String> {
    const TAGS: &[&str] = &[
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "code",
        "pre",
        "blockquote",
        "tg-emoji",
    ];
    let mut visible = String::new();
    let mut open: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let offset = text.len() - rest.len();
        match c {
            '<' => {
                let end = rest
                    .find('>')
                    .ok_or_else(|| format!("Unclosed start tag at byte offset {offset}"))?;
                let inner = &rest[1..end];
                let (closing, name) = match inner.strip_prefix('/') {
                    Some(name) => (true, name.trim()),
                    None => (false, inner.split_whitespace().next().unwrap_or("")),
                };
                if !TAGS.contains(&name) {
                    return Err(format!(
                        "Unsupported start tag \"{name}\" at byte offset {offset}"
                    ));
                }
                if closing {
                    if open.pop().as_deref() != Some(name) {
                        return Err(format!(
                            "Unmatched end tag at byte offset {offset}, expected \"</{}>\", found \"</{name}>\"",
                            open.last().map(String::as_str).unwrap_or("")
                        ));
                    }
                } else {
                    open.push(name.to_string());
                }
                rest = &rest[end + 1..];
            }
            '&' => {
                let end = rest
                    .find(';')
                    .filter(|&e| e <= 10)
                    .ok_or_else(|| format!("Character entity expected at byte offset {offset}"))?;
                let entity = &rest[1..end];
                let decoded = match entity {
                    "lt" => '<',
                    "gt" => '>',
                    "amp" => '&',
                    "quot" => '"',
                    numeric if numeric.starts_with('#') => numeric[1..]
                        .parse::<u32>()
                        .ok()
                        .and_then(char::from_u32)
                        .ok_or_else(|| format!("Invalid entity at byte offset {offset}"))?,
                    _ => return Err(format!("Unsupported HTML entity at byte offset {offset}")),
                };
                visible.push(decoded);
                rest = &rest[end + 1..];
            }
            other => {
                visible.push(other);
                rest = &rest[other.len_utf8()..];
            }
        }
    }
    if let Some(tag) = open.last() {
        return Err(format!(
            "Can't find end tag corresponding to start tag \"{tag}\""
        ));
    }
    Ok(visible)
}

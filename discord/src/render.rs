//! Core replies as Discord message bodies: text within Discord's 2,000 characters, buttons as
//! action rows (five to a row, custom ids within 100 characters), results as an embed over the
//! attached file. Nobody is pinged unless the message names them on purpose.

use bot_core::{
    media::MediaKind,
    service::{Button, Press},
};
use serde_json::{Value, json};

pub const MAX_CONTENT: usize = 2_000;
pub const MAX_EMBED_DESCRIPTION: usize = 4_096;
const MAX_LABEL: usize = 80;
const MAX_CUSTOM_ID: usize = 100;
const MAX_URL: usize = 512;
const EPHEMERAL: u64 = 1 << 6;

/// Cuts text to `limit` characters, ending with an ellipsis when cut.
pub fn fit(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(limit.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Buttons as action rows; at most five rows of five, the rest dropped.
pub fn components(buttons: &[Button]) -> Value {
    let rows: Vec<Value> = buttons
        .chunks(5)
        .take(5)
        .map(|row| {
            let row: Vec<Value> = row
                .iter()
                .filter_map(|button| {
                    let label = fit(&button.label, MAX_LABEL);
                    match &button.press {
                        Press::Action(action) => {
                            let id = action.encode();
                            (id.len() <= MAX_CUSTOM_ID).then(
                                || json!({"type": 2, "style": 2, "label": label, "custom_id": id}),
                            )
                        }
                        Press::Link(url) => (url.len() <= MAX_URL)
                            .then(|| json!({"type": 2, "style": 5, "label": label, "url": url})),
                    }
                })
                .collect();
            json!({"type": 1, "components": row})
        })
        .collect();
    Value::Array(rows)
}

/// A text message (or an edit of one).
pub fn text(content: &str, buttons: &[Button], ephemeral: bool) -> Value {
    let mut body = json!({
        "content": fit(content, MAX_CONTENT),
        "components": components(buttons),
        "allowed_mentions": {"parse": []},
        "embeds": [],
    });
    if ephemeral {
        body["flags"] = json!(EPHEMERAL);
    }
    body
}

/// A text message for `person` posted where others see it: it names (and pings) them alone.
pub fn text_for(content: &str, buttons: &[Button], person: Option<&str>) -> Value {
    let mut body = text(content, buttons, false);
    if let Some(person) = person {
        name(&mut body, person, content);
    }
    body
}

/// Starts the message with `person`'s mention and lets it ping them alone.
fn name(body: &mut Value, person: &str, content: &str) {
    body["content"] = json!(fit(
        format!("<@{person}> {content}").trim_end(),
        MAX_CONTENT
    ));
    body["allowed_mentions"] = json!({"users": [person]});
}

/// A result: the file attached, shown in an embed with the caption (prompt, cost, balance).
/// `mention` pings the requester when the result is posted outside their interaction.
pub fn media(
    caption: &str,
    file_name: &str,
    kind: MediaKind,
    buttons: &[Button],
    mention: Option<&str>,
) -> Value {
    let mut embed = json!({
        "description": fit(caption, MAX_EMBED_DESCRIPTION),
        "color": 0x5865F2,
    });
    if matches!(kind, MediaKind::Image | MediaKind::Animation) {
        embed["image"] = json!({"url": format!("attachment://{file_name}")});
    }
    let mut body = json!({
        "embeds": [embed],
        "attachments": [{"id": 0, "filename": file_name}],
        "components": components(buttons),
        "allowed_mentions": {"parse": []},
    });
    if let Some(user) = mention {
        name(&mut body, user, "");
    }
    body
}

/// A result too large to attach: the caption and a download link, as a link button too.
pub fn media_link(
    caption: &str,
    url: &str,
    megabytes: f64,
    buttons: &[Button],
    mention: Option<&str>,
) -> Value {
    let note = format!(
        "\n\nToo large to attach here ({megabytes:.1} MB): [download it]({url}) within 24 hours."
    );
    let description = format!(
        "{}{note}",
        fit(
            caption,
            MAX_EMBED_DESCRIPTION.saturating_sub(note.chars().count())
        )
    );
    let mut all = buttons.to_vec();
    all.push(Button {
        label: format!("Download ({megabytes:.1} MB)"),
        press: Press::Link(url.to_string()),
    });
    let mut body = json!({
        "embeds": [{"description": description, "color": 0x5865F2}],
        "components": components(&all),
        "allowed_mentions": {"parse": []},
    });
    if let Some(user) = mention {
        name(&mut body, user, "");
    }
    body
}

#[cfg(test)]
mod tests {
    use bot_core::service::Action;

    use super::*;

    #[test]
    fn long_text_is_cut_and_buttons_are_rows_of_five() {
        let long = "x".repeat(2_500);
        let buttons: Vec<Button> = (1..=7)
            .map(|n| Button::action(format!("Pack {n}"), Action::Pack(n)))
            .collect();
        let body = text(&long, &buttons, true);
        assert_eq!(
            body["content"].as_str().map(|s| s.chars().count()),
            Some(2_000)
        );
        assert_eq!(body["flags"], 64);
        let rows = body["components"].as_array().expect("rows");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["components"].as_array().map(Vec::len), Some(5));
        assert_eq!(rows[1]["components"][1]["custom_id"], "p:7");
        assert!(text("hi", &[], false).get("flags").is_none());
    }

    #[test]
    fn results_embed_their_file_and_mention_only_the_requester() {
        let body = media("“a fox”", "fox.png", MediaKind::Image, &[], Some("42"));
        assert_eq!(body["embeds"][0]["image"]["url"], "attachment://fox.png");
        assert_eq!(body["content"], "<@42>");
        assert_eq!(body["allowed_mentions"]["users"][0], "42");
        let song = media("song", "song.wav", MediaKind::Audio, &[], None);
        assert!(song["embeds"][0].get("image").is_none());
        assert_eq!(song["allowed_mentions"]["parse"], json!([]));
    }
}

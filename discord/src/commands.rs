//! The application commands registered at start-up (one bulk overwrite), with the option names
//! the translation reads back. Usable in servers and DMs, for guild and user installs.

use serde_json::{Value, json};

/// Option types.
const STRING: u8 = 3;
const INTEGER: u8 = 4;
const ATTACHMENT: u8 = 11;

/// The two message context-menu commands.
pub const ENHANCE_MESSAGE: &str = "Enhance";
pub const REMOVE_BACKGROUND_MESSAGE: &str = "Remove background";

/// Commands whose answer is a generation shown to the channel; every other answer is ephemeral.
pub const PUBLIC: &[&str] = &[
    "imagine",
    "enhance",
    "removebg",
    "faceswap",
    "portrait",
    "video",
    "music",
    ENHANCE_MESSAGE,
    REMOVE_BACKGROUND_MESSAGE,
];

fn option(kind: u8, name: &str, description: &str, required: bool) -> Value {
    json!({"type": kind, "name": name, "description": description, "required": required})
}

fn choices(mut option: Value, choices: &[(&str, &str)]) -> Value {
    option["choices"] = choices
        .iter()
        .map(|(name, value)| json!({"name": name, "value": value}))
        .collect();
    option
}

fn seconds(choices_: &[i64], description: &str) -> Value {
    let mut option = option(INTEGER, "seconds", description, false);
    option["choices"] = choices_
        .iter()
        .map(|s| json!({"name": format!("{s} seconds"), "value": s}))
        .collect();
    option
}

fn slash(name: &str, description: &str, options: Vec<Value>) -> Value {
    json!({
        "type": 1,
        "name": name,
        "description": description,
        "options": options,
        "integration_types": [0, 1],
        "contexts": [0, 1, 2],
    })
}

fn message(name: &str) -> Value {
    json!({"type": 3, "name": name, "integration_types": [0, 1], "contexts": [0, 1, 2]})
}

/// Every command, in the shape of Discord's bulk-overwrite body.
pub fn all() -> Vec<Value> {
    let image = |description: &str| option(ATTACHMENT, "image", description, true);
    vec![
        slash(
            "imagine",
            "Generate an image from a prompt",
            vec![
                option(STRING, "prompt", "What to draw", true),
                choices(
                    option(
                        STRING,
                        "quality",
                        "Standard, HD or 4K (prices differ)",
                        false,
                    ),
                    &[("standard", "standard"), ("hd", "hd"), ("4k", "4k")],
                ),
                choices(
                    option(STRING, "aspect", "Aspect ratio", false),
                    &[
                        ("1:1", "1:1"),
                        ("16:9", "16:9"),
                        ("9:16", "9:16"),
                        ("4:3", "4:3"),
                        ("3:4", "3:4"),
                        ("3:2", "3:2"),
                        ("2:3", "2:3"),
                    ],
                ),
                json!({"type": INTEGER, "name": "seed", "description": "Seed for a repeatable result",
                       "required": false, "min_value": 0, "max_value": 4_294_967_295_u64}),
                option(STRING, "negative", "What to leave out", false),
            ],
        ),
        slash(
            "enhance",
            "Upscale and denoise a photo",
            vec![image("The photo")],
        ),
        slash(
            "removebg",
            "Remove a photo's background",
            vec![image("The photo")],
        ),
        slash(
            "faceswap",
            "Put a face onto another photo",
            vec![
                option(ATTACHMENT, "face", "The photo with the face", true),
                option(ATTACHMENT, "target", "The photo to put it on", true),
            ],
        ),
        slash(
            "portrait",
            "An AI portrait from a photo",
            vec![
                image("Your photo"),
                option(STRING, "style", "The style, e.g. oil painting", true),
            ],
        ),
        slash(
            "video",
            "Generate a short video",
            vec![
                option(STRING, "prompt", "What happens", true),
                option(ATTACHMENT, "image", "A photo to start from", false),
                seconds(&[5, 10], "Length"),
            ],
        ),
        slash(
            "music",
            "Generate music",
            vec![option(STRING, "prompt", "The music to make", true), {
                let mut seconds = option(INTEGER, "seconds", "Length in seconds", false);
                // The longest length is the operator's setting; the core checks it.
                seconds["min_value"] = json!(1);
                seconds
            }],
        ),
        slash("balance", "Your credits", vec![]),
        slash("buy", "Buy credits", vec![]),
        slash("history", "Your recent generations and payments", vec![]),
        slash("refund", "Refund unused credits", vec![]),
        slash("terms", "The terms of service", vec![]),
        slash(
            "privacy",
            "Show or set the anonymised reuse of your outputs",
            vec![choices(
                option(STRING, "reuse", "Allow anonymised reuse", false),
                &[("on", "on"), ("off", "off")],
            )],
        ),
        slash(
            "link",
            "Share one wallet with your Telegram account",
            vec![option(
                STRING,
                "code",
                "The code shown on the other platform",
                false,
            )],
        ),
        slash(
            "unlink",
            "Detach a linked account",
            vec![option(
                STRING,
                "identity",
                "As /link lists it, e.g. telegram:123",
                true,
            )],
        ),
        slash(
            "cancel",
            "Cancel a queued job",
            vec![option(INTEGER, "job", "The job number", false)],
        ),
        slash(
            "forget",
            "Delete the prompts and requests of your past generations",
            vec![],
        ),
        slash("help", "What the bot can do and what it costs", vec![]),
        // Operators only (`ADMIN_IDS`); hidden from members without the Administrator
        // permission, and anyone not an admin of the bot gets "unknown command".
        {
            let mut admin = slash(
                "admin",
                "Operator commands",
                vec![option(STRING, "command", "e.g. lookup telegram:123", true)],
            );
            admin["default_member_permissions"] = json!("0");
            admin
        },
        message(ENHANCE_MESSAGE),
        message(REMOVE_BACKGROUND_MESSAGE),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Discord's rules for a command: names, descriptions and option order.
    #[test]
    fn commands_follow_discords_rules() {
        let commands = all();
        assert!(commands.len() <= 100);
        for command in &commands {
            let name = command["name"].as_str().expect("named");
            assert!((1..=32).contains(&name.chars().count()), "{name}");
            if command["type"] == 1 {
                assert!(
                    name.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                    "{name}"
                );
                let description = command["description"].as_str().expect("described");
                assert!((1..=100).contains(&description.chars().count()));
                let options = command["options"].as_array().expect("options");
                assert!(options.len() <= 25);
                let first_optional = options
                    .iter()
                    .position(|o| o["required"] == false)
                    .unwrap_or(options.len());
                assert!(
                    options[first_optional..]
                        .iter()
                        .all(|o| o["required"] == false),
                    "required options come first in /{name}"
                );
            }
        }
        let names: Vec<&str> = commands.iter().filter_map(|c| c["name"].as_str()).collect();
        for wanted in [
            "imagine", "enhance", "removebg", "faceswap", "portrait", "video", "music", "balance",
            "buy", "history", "refund", "terms", "privacy", "link", "cancel", "help", "forget",
        ] {
            assert!(names.contains(&wanted), "/{wanted} is registered");
        }
    }
}

//! The application commands registered at start-up (one bulk overwrite), built from the core's
//! [`Spec`]s: names, descriptions, typed options and their choices as configured (aspect ratios,
//! video lengths, portrait styles). Usable in servers and DMs, for guild and user installs.

use bot_core::command::{ArgValue, OptionKind, Spec};
use serde_json::{Value, json};

/// Option types.
const STRING: u8 = 3;
const INTEGER: u8 = 4;
const ATTACHMENT: u8 = 11;
/// Discord offers at most 25 choices; past that an option is free text the core checks.
const MAX_CHOICES: usize = 25;

/// The two message context-menu commands.
pub const ENHANCE_MESSAGE: &str = "Enhance";
pub const REMOVE_BACKGROUND_MESSAGE: &str = "Remove background";

fn choice_value(value: &ArgValue) -> Value {
    match value {
        ArgValue::Text(text) => json!(text),
        ArgValue::Integer(n) => json!(n),
    }
}

fn option(option: &bot_core::command::OptionSpec) -> Value {
    let mut value = json!({
        "name": option.name,
        "description": option.description,
        "required": option.required,
    });
    let kind = match &option.kind {
        OptionKind::Text => STRING,
        OptionKind::Photo => ATTACHMENT,
        OptionKind::Integer { min, max } => {
            if let Some(min) = min {
                value["min_value"] = json!(min);
            }
            if let Some(max) = max {
                value["max_value"] = json!(max);
            }
            INTEGER
        }
        OptionKind::Choices(choices) => {
            let integer = choices
                .iter()
                .all(|c| matches!(c.value, ArgValue::Integer(_)))
                && !choices.is_empty();
            if choices.len() <= MAX_CHOICES {
                value["choices"] = choices
                    .iter()
                    .map(|c| json!({"name": c.label, "value": choice_value(&c.value)}))
                    .collect();
            }
            if integer { INTEGER } else { STRING }
        }
    };
    value["type"] = json!(kind);
    value
}

fn slash(spec: &Spec) -> Value {
    // Discord wants the required options first.
    let mut options: Vec<&bot_core::command::OptionSpec> = spec.options.iter().collect();
    options.sort_by_key(|o| !o.required);
    let mut command = json!({
        "type": 1,
        "name": spec.name,
        "description": spec.description,
        "options": options.into_iter().map(option).collect::<Vec<_>>(),
        "integration_types": [0, 1],
        "contexts": [0, 1, 2],
    });
    if spec.operators_only {
        // Hidden from members without the Administrator permission; anyone not an admin of the
        // bot gets "unknown command" all the same.
        command["default_member_permissions"] = json!("0");
    }
    command
}

fn message(name: &str) -> Value {
    json!({"type": 3, "name": name, "integration_types": [0, 1], "contexts": [0, 1, 2]})
}

/// Every command, in the shape of Discord's bulk-overwrite body.
pub fn commands(specs: &[Spec]) -> Vec<Value> {
    specs
        .iter()
        .map(slash)
        .chain([message(ENHANCE_MESSAGE), message(REMOVE_BACKGROUND_MESSAGE)])
        .collect()
}

#[cfg(test)]
mod tests {
    use bot_core::command::{CommandLimits, specs};

    use super::*;

    /// Discord's rules for a command: names, descriptions and option order.
    #[test]
    fn commands_follow_discords_rules() {
        let commands = commands(&specs(&CommandLimits::default()));
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
                for option in options {
                    let choices = option["choices"].as_array().map_or(0, Vec::len);
                    assert!(choices <= 25, "/{name} {option}");
                }
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

    #[test]
    fn choices_come_from_the_configuration() {
        let limits = CommandLimits {
            aspect_ratios: vec!["1:1".into(), "21:9".into()],
            video_seconds: vec![6, 12],
            ..CommandLimits::default()
        };
        let commands = commands(&specs(&limits));
        let option = |command: &str, option: &str| -> Value {
            let command = commands
                .iter()
                .find(|c| c["name"] == command)
                .expect("registered");
            command["options"]
                .as_array()
                .and_then(|o| o.iter().find(|o| o["name"] == option))
                .cloned()
                .expect("an option")
        };
        assert_eq!(
            option("imagine", "aspect")["choices"],
            json!([{"name": "1:1", "value": "1:1"}, {"name": "21:9", "value": "21:9"}])
        );
        let seconds = option("video", "seconds");
        assert_eq!(seconds["type"], 4);
        assert_eq!(seconds["choices"][1]["value"], 12);
        let many = CommandLimits {
            portrait_styles: (0..30).map(|n| format!("style-{n}")).collect(),
            ..CommandLimits::default()
        };
        let commands = super::commands(&specs(&many));
        let portrait = commands
            .iter()
            .find(|c| c["name"] == "portrait")
            .expect("registered");
        let style = &portrait["options"][1];
        assert_eq!(style["name"], "style");
        assert!(style.get("choices").is_none(), "over 25 becomes free text");
        assert_eq!(
            portrait["options"][0]["type"], 11,
            "the photo is an attachment"
        );
    }
}

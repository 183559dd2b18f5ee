//! Interactions into core requests. Both ways in (the HTTP endpoint and the gateway) come here.
//! Slash-command options are handed to the core as typed, named values ([`Args`]), so a prompt
//! is one value that cannot carry options; the core parses, checks and prices them with the same
//! code as Telegram's text. Whether the acknowledgement is ephemeral is the core's default
//! visibility for the command.

use bot_core::{
    Identity, Platform,
    command::{ArgValue, Args, OptionKind, Spec},
    service::{Action, Attachment, ChatKind, ChatRef, Input, Request, Visibility},
};

use crate::{
    model::{self, Interaction},
    register::{ENHANCE_MESSAGE, REMOVE_BACKGROUND_MESSAGE},
};

/// What to do with one interaction.
#[derive(Debug)]
pub enum Incoming {
    /// Discord checking the endpoint: answer PONG.
    Ping,
    /// An autocomplete request (we register none): answer with no choices.
    NoChoices,
    /// Answer at once, ephemerally, with this text; nothing else happens.
    Refuse(String),
    /// A request for the core, and how to acknowledge it.
    Request(Translated),
}

/// A core request from an interaction.
#[derive(Debug)]
pub struct Translated {
    pub request: Request,
    pub ack: Ack,
}

/// How an interaction is acknowledged before the core answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// "Thinking…" (type 5); the answer replaces it. Ephemeral for account commands.
    Message { ephemeral: bool },
    /// Nothing visible (type 6), for buttons: the message with the button stays as it is and
    /// answers come as follow-up messages.
    Update,
}

/// The reply target put in a request's `message_id`: the interaction and who made it, so a
/// result can still mention them after the interaction's token has expired.
pub fn marker(interaction_id: &str, user_id: &str) -> String {
    format!("i:{interaction_id}:{user_id}")
}

/// Reads [`marker`].
pub fn read_marker(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix("i:")?;
    rest.split_once(':')
}

/// Translates one interaction; `specs` are the core's commands as registered.
pub fn interaction(interaction: &Interaction, specs: &[Spec]) -> Incoming {
    match interaction.kind {
        model::PING => return Incoming::Ping,
        model::AUTOCOMPLETE => return Incoming::NoChoices,
        _ => {}
    }
    let (Some(person), Some(channel)) = (interaction.person(), interaction.channel_id()) else {
        return Incoming::Refuse("This can't be used here.".into());
    };
    let Ok(identity) = Identity::new(Platform::Discord, person.id.clone()) else {
        return Incoming::Refuse("This account can't use the bot.".into());
    };
    let data = interaction.data.clone().unwrap_or_default();
    let (input, attachments, ack) = match interaction.kind {
        model::APPLICATION_COMMAND => {
            let name = data.name.clone().unwrap_or_default();
            let translated = match data.kind.unwrap_or(model::CHAT_INPUT) {
                model::MESSAGE_COMMAND => message_command(&name, &data),
                _ => slash_command(&name, &data, specs),
            };
            let (input, attachments) = match translated {
                Ok(translated) => translated,
                Err(refusal) => return Incoming::Refuse(refusal),
            };
            let command = match &input {
                Input::Command { name, .. } => name.as_str(),
                _ => "",
            };
            let ephemeral =
                bot_core::command::visibility(command).is_none_or(|v| v == Visibility::Requester);
            (input, attachments, Ack::Message { ephemeral })
        }
        model::MESSAGE_COMPONENT => {
            let action = data.custom_id.as_deref().and_then(Action::decode);
            let Some(action) = action else {
                return Incoming::Refuse("This button no longer works.".into());
            };
            (Input::Action(action), Vec::new(), Ack::Update)
        }
        _ => return Incoming::Refuse("This kind of interaction isn't supported.".into()),
    };
    Incoming::Request(Translated {
        request: Request {
            identity,
            name: person.display_name().to_string(),
            chat: ChatRef {
                platform: Platform::Discord,
                id: channel.to_string(),
                kind: if interaction.guild_id.is_some() {
                    ChatKind::Group
                } else {
                    ChatKind::Private
                },
            },
            message_id: Some(marker(&interaction.id, &person.id)),
            key: format!("discord:{}", interaction.id),
            input,
            attachments,
        },
        ack,
    })
}

type Translation = Result<(Input, Vec<Attachment>), String>;

fn slash_command(name: &str, data: &model::Data, specs: &[Spec]) -> Translation {
    let Some(spec) = specs.iter().find(|spec| spec.name == name) else {
        return Err("This command is no longer offered; it will disappear shortly.".into());
    };
    let option = |option: &str| data.options.iter().find(|o| o.name == option);
    let mut attachments = Vec::new();
    for photo in spec.photos() {
        let Some(id) = option(photo.name).and_then(model::CommandOption::text) else {
            if photo.required {
                return Err(format!("Attach an image as {}.", photo.name));
            }
            continue;
        };
        let found = data
            .resolved
            .as_ref()
            .and_then(|resolved| resolved.attachments.get(&id));
        match found {
            Some(attachment) if attachment.is_image() => {
                attachments.push(core_attachment(attachment));
            }
            Some(_) => {
                return Err(format!(
                    "The {} must be an image (PNG, JPEG or WebP).",
                    photo.name
                ));
            }
            None => {
                return Err(format!(
                    "The {} was not received; please attach it again.",
                    photo.name
                ));
            }
        }
    }
    // Every other option as the value Discord typed: text stays one value, numbers numbers.
    let args = Args::from_options(data.options.iter().filter_map(|o| {
        let spec = spec.find(&o.name)?;
        if matches!(spec.kind, OptionKind::Photo) {
            return None;
        }
        let value = match o.value.as_ref()? {
            serde_json::Value::Number(n) => ArgValue::Integer(n.as_i64()?),
            serde_json::Value::String(text) => ArgValue::Text(text.clone()),
            serde_json::Value::Bool(flag) => ArgValue::Text(flag.to_string()),
            _ => return None,
        };
        Some((spec.name, value))
    }));
    Ok((
        Input::Command {
            name: spec.name.to_string(),
            args,
        },
        attachments,
    ))
}

fn message_command(name: &str, data: &model::Data) -> Translation {
    let command = match name {
        ENHANCE_MESSAGE => "enhance",
        REMOVE_BACKGROUND_MESSAGE => "removebg",
        other => return Err(format!("Unknown command {other}.")),
    };
    let target = data.target_id.as_deref().and_then(|id| {
        data.resolved
            .as_ref()
            .and_then(|resolved| resolved.messages.get(id))
    });
    let image = target
        .into_iter()
        .flat_map(|message| &message.attachments)
        .find(|attachment| attachment.is_image());
    match image {
        Some(image) => Ok((
            Input::Command {
                name: command.into(),
                args: Args::default(),
            },
            vec![core_attachment(image)],
        )),
        None => Err("That message has no image to work on.".into()),
    }
}

fn core_attachment(attachment: &model::Attachment) -> Attachment {
    Attachment {
        id: attachment.url.clone(),
        size: Some(attachment.size),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read(value: serde_json::Value) -> Incoming {
        let parsed: Interaction = serde_json::from_value(value).expect("an interaction");
        interaction(&parsed, &bot_core::command::specs(&Default::default()))
    }

    fn command(input: &Input) -> (String, Args) {
        match input {
            Input::Command { name, args } => (name.clone(), args.clone()),
            other => panic!("expected a typed command, got {other:?}"),
        }
    }

    fn request(incoming: Incoming) -> Translated {
        match incoming {
            Incoming::Request(translated) => translated,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    fn slash(name: &str, options: serde_json::Value, resolved: serde_json::Value) -> Incoming {
        read(json!({
            "id": "1300000000000000001", "application_id": "1", "type": 2, "token": "t",
            "guild_id": "5", "channel_id": "6",
            "member": {"user": {"id": "42", "username": "ann", "global_name": "Ann"}},
            "data": {"id": "9", "name": name, "type": 1, "options": options, "resolved": resolved}
        }))
    }

    #[test]
    fn imagine_options_become_the_core_grammar() {
        let translated = request(slash(
            "imagine",
            json!([
                {"name": "prompt", "type": 3, "value": "a fox in the snow"},
                {"name": "quality", "type": 3, "value": "4k"},
                {"name": "aspect", "type": 3, "value": "16:9"},
                {"name": "seed", "type": 4, "value": 7},
                {"name": "negative", "type": 3, "value": "blur"},
            ]),
            json!({}),
        ));
        let (name, args) = command(&translated.request.input);
        assert_eq!(name, "imagine");
        assert_eq!(args.text("prompt"), Some("a fox in the snow"));
        assert_eq!(args.get("seed"), Some(&ArgValue::Integer(7)));
        assert_eq!(translated.ack, Ack::Message { ephemeral: false });
        assert_eq!(translated.request.chat.kind, ChatKind::Group);
        assert_eq!(translated.request.identity.to_string(), "discord:42");
        assert_eq!(translated.request.name, "Ann");
        assert_eq!(translated.request.key, "discord:1300000000000000001");
        let built = bot_core::command::build(&name, &args, &Default::default());
        assert_eq!(
            built,
            bot_core::command::parse(
                "/imagine a fox in the snow --4k --ar 16:9 --seed 7 --no blur",
                &Default::default()
            )
            .map(|p| p.expect("a command").command)
        );
    }

    #[test]
    fn a_typed_prompt_keeps_words_that_look_like_options() {
        let translated = request(slash(
            "imagine",
            json!([{"name": "prompt", "type": 3, "value": "a fox --4k --ar 21:9 -- —hd"}]),
            json!({}),
        ));
        let (name, args) = command(&translated.request.input);
        let built = bot_core::command::build(&name, &args, &Default::default());
        let Ok(bot_core::command::Command::Imagine(imagine)) = built else {
            panic!("{built:?}");
        };
        assert_eq!(imagine.prompt, "a fox --4k --ar 21:9 -- —hd");
        assert_eq!(imagine.quality, bot_core::command::Quality::Standard);
    }

    #[test]
    fn attachments_are_resolved_and_checked() {
        let resolved = json!({"attachments": {
            "11": {"id": "11", "filename": "me.png", "size": 1000, "url": "https://cdn/me.png",
                   "content_type": "image/png"},
            "12": {"id": "12", "filename": "notes.txt", "size": 10, "url": "https://cdn/notes.txt",
                   "content_type": "text/plain"}
        }});
        let translated = request(slash(
            "enhance",
            json!([{"name": "image", "type": 11, "value": "11"}]),
            resolved.clone(),
        ));
        assert_eq!(translated.request.attachments.len(), 1);
        assert_eq!(translated.request.attachments[0].id, "https://cdn/me.png");
        assert_eq!(translated.request.attachments[0].size, Some(1000));
        let refused = slash(
            "removebg",
            json!([{"name": "image", "type": 11, "value": "12"}]),
            resolved,
        );
        assert!(matches!(refused, Incoming::Refuse(text) if text.contains("must be an image")));
    }

    #[test]
    fn account_commands_are_ephemeral() {
        let translated = request(slash("balance", json!([]), json!({})));
        assert_eq!(translated.ack, Ack::Message { ephemeral: true });
        assert_eq!(command(&translated.request.input).0, "balance");
        let admin = request(slash(
            "admin",
            json!([{"name": "command", "type": 3, "value": "lookup telegram:5"}]),
            json!({}),
        ));
        assert_eq!(
            command(&admin.request.input).1.text("command"),
            Some("lookup telegram:5")
        );
        assert_eq!(admin.ack, Ack::Message { ephemeral: true });
    }

    #[test]
    fn buttons_and_context_menus() {
        let press = request(read(json!({
            "id": "2", "application_id": "1", "type": 3, "token": "t", "channel_id": "6",
            "user": {"id": "43", "username": "bob"},
            "message": {"id": "77", "channel_id": "6"},
            "data": {"custom_id": "r:15", "component_type": 2}
        })));
        assert_eq!(press.ack, Ack::Update);
        assert_eq!(press.request.chat.kind, ChatKind::Private);
        assert!(matches!(
            press.request.input,
            Input::Action(Action::Regenerate(_))
        ));
        let stale = read(json!({
            "id": "3", "application_id": "1", "type": 3, "token": "t", "channel_id": "6",
            "user": {"id": "43", "username": "bob"}, "data": {"custom_id": "zz:1"}
        }));
        assert!(matches!(stale, Incoming::Refuse(_)));
        let menu = request(read(json!({
            "id": "4", "application_id": "1", "type": 2, "token": "t", "channel_id": "6",
            "guild_id": "5", "member": {"user": {"id": "43", "username": "bob"}},
            "data": {"name": "Remove background", "type": 3, "target_id": "88",
                     "resolved": {"messages": {"88": {"id": "88", "channel_id": "6",
                        "attachments": [{"id": "1", "filename": "cat.jpg", "size": 5,
                                          "url": "https://cdn/cat.jpg"}]}}}}
        })));
        assert_eq!(command(&menu.request.input).0, "removebg");
        assert_eq!(menu.request.attachments[0].id, "https://cdn/cat.jpg");
        assert_eq!(menu.ack, Ack::Message { ephemeral: false });
        let no_image = read(json!({
            "id": "5", "application_id": "1", "type": 2, "token": "t", "channel_id": "6",
            "user": {"id": "43", "username": "bob"},
            "data": {"name": "Enhance", "type": 3, "target_id": "88",
                     "resolved": {"messages": {"88": {"id": "88", "attachments": []}}}}
        }));
        assert!(matches!(no_image, Incoming::Refuse(text) if text.contains("no image")));
    }

    #[test]
    fn markers_round_trip() {
        assert_eq!(read_marker(&marker("12", "34")), Some(("12", "34")));
        assert_eq!(read_marker("55"), None);
    }
}

//! The grammar, one behaviour per test, and a property test that no input makes it panic.

use proptest::prelude::*;

use super::Visibility;
use super::*;

fn limits() -> CommandLimits {
    CommandLimits::default()
}

fn command(text: &str) -> Command {
    parse(text, &limits())
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
        .unwrap_or_else(|| panic!("{text:?} is not a command"))
        .command
}

fn error(text: &str) -> String {
    match parse(text, &limits()) {
        Err(error) => error.to_string(),
        Ok(parsed) => panic!("{text:?} parsed as {parsed:?}"),
    }
}

fn imagine(text: &str) -> Imagine {
    match command(text) {
        Command::Imagine(imagine) => imagine,
        other => panic!("{text:?} parsed as {other:?}"),
    }
}

#[test]
fn text_without_a_leading_slash_is_not_a_command() {
    assert_eq!(parse("hello there", &limits()), Ok(None));
    assert_eq!(parse("", &limits()), Ok(None));
    assert_eq!(parse("/", &limits()), Ok(None));
    assert_eq!(parse("a /imagine cat", &limits()), Ok(None));
}

#[test]
fn account_commands_take_no_arguments() {
    assert_eq!(command("/start"), Command::Start(Start));
    assert_eq!(command("/help"), Command::Help(Help));
    assert_eq!(command("/balance"), Command::Balance(Balance));
    assert_eq!(command("  /BALANCE  "), Command::Balance(Balance));
    assert_eq!(command("/history"), Command::History(History));
    assert_eq!(command("/terms"), Command::Terms(Terms));
    assert!(error("/balance please").contains("/balance takes no arguments"));
}

#[test]
fn a_command_may_name_the_bot_it_is_for() {
    let parsed = parse("/balance@ImageGptBot", &limits())
        .expect("parses")
        .expect("a command");
    assert_eq!(parsed.command, Command::Balance(Balance));
    assert_eq!(parsed.addressed_to.as_deref(), Some("ImageGptBot"));
    let parsed = parse("/imagine@OtherBot a cat", &limits())
        .expect("parses")
        .expect("a command");
    assert_eq!(parsed.addressed_to.as_deref(), Some("OtherBot"));
}

#[test]
fn unknown_commands_say_so_and_point_to_help() {
    let text = error("/teleport home");
    assert!(text.contains("Unknown command /teleport"), "{text}");
    assert!(text.contains("/help"), "{text}");
}

#[test]
fn imagine_takes_the_whole_prompt_with_standard_square_defaults() {
    let parsed = imagine("/imagine a red fox in the snow, golden hour");
    assert_eq!(parsed.prompt, "a red fox in the snow, golden hour");
    assert_eq!(parsed.quality, Quality::Standard);
    assert_eq!(parsed.aspect, AspectRatio::SQUARE);
    assert_eq!((parsed.seed, parsed.negative), (None, None));
}

#[test]
fn imagine_reads_quality_aspect_seed_and_negative_options_anywhere() {
    let parsed =
        imagine("/imagine --hd a lighthouse --ar 16:9 at night --seed 42 --no people, boats");
    assert_eq!(parsed.prompt, "a lighthouse at night");
    assert_eq!(parsed.quality, Quality::Hd);
    assert_eq!(parsed.aspect.to_string(), "16:9");
    assert_eq!(parsed.seed, Some(42));
    assert_eq!(parsed.negative.as_deref(), Some("people, boats"));
    assert_eq!(imagine("/imagine a cat --4k").quality, Quality::FourK);
    assert_eq!(imagine("/imagine a cat --HD --hd").quality, Quality::Hd);
}

#[test]
fn a_phone_dash_counts_as_two_dashes() {
    let parsed = imagine("/imagine a cat —hd —ar 9:16");
    assert_eq!(
        (parsed.quality, parsed.aspect.to_string()),
        (Quality::Hd, "9:16".into())
    );
}

#[test]
fn a_lone_double_dash_ends_the_options() {
    let parsed = imagine("/imagine --hd -- a sign that reads --no entry");
    assert_eq!(parsed.prompt, "a sign that reads --no entry");
    assert_eq!(parsed.negative, None);
}

#[test]
fn imagine_refuses_conflicting_or_malformed_options_with_the_usage_line() {
    for (text, expected) in [
        ("/imagine a cat --hd --4k", "either --hd or --4k"),
        ("/imagine a cat --ar 5:7", "--ar 5:7 is not available"),
        ("/imagine a cat --ar wide", "is not available"),
        ("/imagine a cat --ar", "--ar needs a value"),
        ("/imagine a cat --seed -3", "--seed takes a whole number"),
        (
            "/imagine a cat --seed 99999999999",
            "--seed takes a whole number",
        ),
        ("/imagine a cat --no", "--no needs a value"),
        ("/imagine a cat --8k", "Unknown option --8k"),
        ("/imagine", "Describe what you want"),
        ("/imagine --hd", "Describe what you want"),
    ] {
        let text_error = error(text);
        assert!(text_error.contains(expected), "{text}: {text_error}");
        assert!(
            text_error.contains("Usage: /imagine <prompt>"),
            "{text}: {text_error}"
        );
    }
}

#[test]
fn prompt_length_is_counted_in_characters_and_limited() {
    let at_limit = "é".repeat(2_000);
    assert_eq!(
        imagine(&format!("/imagine {at_limit}"))
            .prompt
            .chars()
            .count(),
        2_000
    );
    let over = "a".repeat(2_001);
    assert!(error(&format!("/imagine {over}")).contains("2001 characters long; the limit is 2000"));
    let tight = CommandLimits {
        prompt_max_chars: 10,
        ..CommandLimits::default()
    };
    assert!(parse("/imagine eleven chars", &tight).is_err());
}

#[test]
fn unicode_emoji_and_right_to_left_text_are_ordinary_prompt_text() {
    for prompt in [
        "🦊 в снегу",
        "قطة على القمر",
        "猫が月の上に座っている",
        "a café <b>&amp;</b> _*[",
    ] {
        assert_eq!(imagine(&format!("/imagine {prompt}")).prompt, prompt);
    }
}

#[test]
fn photo_operations_need_no_arguments_but_tolerate_a_caption() {
    assert_eq!(command("/enhance"), Command::Enhance(Enhance));
    assert_eq!(
        command("/removebg"),
        Command::RemoveBackground(RemoveBackground)
    );
    assert_eq!(command("/faceswap"), Command::FaceSwap(FaceSwap));
    assert_eq!(command("/enhance please"), Command::Enhance(Enhance));
}

#[test]
fn portrait_needs_a_configured_style() {
    assert_eq!(
        command("/portrait Oil Painting"),
        Command::Portrait(Portrait {
            style: "oil-painting".into()
        })
    );
    assert!(error("/portrait").contains("Choose a style: anime"));
    assert!(error("/portrait claymation").contains("There is no \"claymation\" style"));
}

#[test]
fn video_lengths_come_from_the_allowed_list() {
    assert_eq!(
        command("/video waves at dusk"),
        Command::Video(Video {
            prompt: "waves at dusk".into(),
            seconds: 5
        })
    );
    assert_eq!(
        command("/video waves --seconds 10s"),
        Command::Video(Video {
            prompt: "waves".into(),
            seconds: 10
        })
    );
    assert!(error("/video waves --seconds 7").contains("5 or 10 seconds"));
}

#[test]
fn music_length_defaults_and_is_bounded() {
    assert_eq!(
        command("/music lo-fi rain"),
        Command::Music(Music {
            prompt: "lo-fi rain".into(),
            seconds: 30
        })
    );
    assert!(matches!(
        command("/music jazz --seconds 90"),
        Command::Music(Music { seconds: 90, .. })
    ));
    assert!(error("/music jazz --seconds 0").contains("1 to 120 seconds"));
    assert!(error("/music jazz --seconds 500").contains("1 to 120 seconds"));
}

#[test]
fn cancel_buy_refund_link_and_privacy_take_optional_arguments() {
    assert_eq!(command("/cancel"), Command::Cancel(Cancel { job: None }));
    assert_eq!(
        command("/cancel #12"),
        Command::Cancel(Cancel { job: Some(12) })
    );
    assert!(error("/cancel twelve").contains("is not a number"));
    assert_eq!(command("/buy"), Command::Buy(Buy { pack: None }));
    assert_eq!(
        command("/buy Medium"),
        Command::Buy(Buy {
            pack: Some("medium".into())
        })
    );
    assert_eq!(
        command("/refund 3"),
        Command::Refund(Refund { purchase: Some(3) })
    );
    assert_eq!(command("/link"), Command::Link(Link { code: None }));
    assert_eq!(
        command("/link ab12cd"),
        Command::Link(Link {
            code: Some("AB12CD".into())
        })
    );
    assert!(error("/link a b").contains("one word at most"));
    assert_eq!(
        command("/privacy"),
        Command::Privacy(Privacy { reuse: None })
    );
    assert_eq!(
        command("/privacy off"),
        Command::Privacy(Privacy { reuse: Some(false) })
    );
    assert_eq!(
        command("/privacy ON"),
        Command::Privacy(Privacy { reuse: Some(true) })
    );
    assert!(error("/privacy maybe").contains("Usage: /privacy"));
}

#[test]
fn every_command_has_a_usage_line_and_is_known_by_its_name() {
    for spec in specs(&limits()) {
        assert!(
            spec.usage.starts_with(&format!("/{}", spec.name)),
            "{}",
            spec.usage
        );
        let parsed = parse(&format!("/{}", spec.name), &limits());
        assert!(
            !matches!(parsed, Err(ParseError::Unknown { .. })),
            "/{} is unknown",
            spec.name
        );
        assert_eq!(visibility(spec.name), Some(spec.visibility));
    }
}

#[test]
fn account_answers_are_private_and_generations_public() {
    for name in [
        "balance", "history", "refund", "link", "buy", "admin", "start", "privacy",
    ] {
        assert_eq!(visibility(name), Some(Visibility::Requester), "/{name}");
    }
    for name in ["imagine", "enhance", "video", "music", "help"] {
        assert_eq!(visibility(name), Some(Visibility::Chat), "/{name}");
    }
    assert_eq!(visibility("nothing"), None);
}

#[test]
fn typed_options_build_the_same_commands_and_a_typed_prompt_carries_no_options() {
    let typed = build(
        "imagine",
        &Args::from_options([(
            "prompt",
            ArgValue::Text("a fox --4k --ar 21:9 -- —hd".into()),
        )]),
        &limits(),
    )
    .expect("builds");
    let Command::Imagine(imagine) = typed else {
        panic!("{typed:?}");
    };
    assert_eq!(imagine.prompt, "a fox --4k --ar 21:9 -- —hd");
    assert_eq!(imagine.quality, Quality::Standard);
    assert_eq!(imagine.aspect, AspectRatio::SQUARE);
    let typed = build(
        "imagine",
        &Args::from_options([
            ("prompt", ArgValue::Text("a fox".into())),
            ("quality", ArgValue::Text("4k".into())),
            ("aspect", ArgValue::Text("21:9".into())),
            ("seed", ArgValue::Integer(7)),
        ]),
        &limits(),
    )
    .expect("builds");
    assert_eq!(typed, command("/imagine a fox --4k --ar 21:9 --seed 7"));
    let video = build(
        "video",
        &Args::from_options([
            ("prompt", ArgValue::Text("waves".into())),
            ("seconds", ArgValue::Integer(10)),
        ]),
        &limits(),
    )
    .expect("builds");
    assert_eq!(video, command("/video waves --seconds 10"));
    let refused = build(
        "video",
        &Args::from_options([
            ("prompt", ArgValue::Text("waves".into())),
            ("seconds", ArgValue::Integer(7)),
        ]),
        &limits(),
    )
    .expect_err("7 s is not offered");
    assert!(refused.to_string().contains("Usage: /video"), "{refused}");
    assert!(matches!(
        build("ping", &Args::default(), &limits()),
        Err(ParseError::Unknown { .. })
    ));
}

#[test]
fn choices_follow_the_configuration() {
    let mut limits = limits();
    limits.aspect_ratios = vec!["1:1".into(), "5:4".into()];
    limits.video_seconds = vec![4, 8, 12];
    limits.portrait_styles = vec!["noir".into()];
    let specs = specs(&limits);
    let choices = |command: &str, option: &str| -> Vec<String> {
        let spec = specs.iter().find(|s| s.name == command).expect("a spec");
        match &spec.find(option).expect("an option").kind {
            OptionKind::Choices(choices) => choices.iter().map(|c| c.label.clone()).collect(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(choices("imagine", "aspect"), ["1:1", "5:4"]);
    assert_eq!(
        choices("video", "seconds"),
        ["4 seconds", "8 seconds", "12 seconds"]
    );
    assert_eq!(choices("portrait", "style"), ["noir"]);
    assert!(
        specs
            .iter()
            .find(|s| s.name == "video")
            .is_some_and(|s| s.usage.contains("4|8|12"))
    );
}

#[test]
fn adversarial_prompts_lose_hidden_controls_and_an_invisible_prompt_is_empty() {
    // Control characters and bidirectional overrides go; right-to-left marks and emoji joiners
    // stay.
    let spoof = imagine("/imagine a cat\u{0007}\u{202e}gnp.exe\u{202c} 👩\u{200d}💻 שלום\u{200f}");
    assert_eq!(spoof.prompt, "a catgnp.exe 👩\u{200d}💻 שלום\u{200f}");
    for invisible in [
        "/imagine \u{200b}\u{200d}\u{feff}",
        "/imagine \u{0000}\u{202e}",
    ] {
        assert!(
            error(invisible).contains("Describe what you want"),
            "{invisible:?}"
        );
    }
    // 100 KB of prompt is refused with its length, not cut silently.
    let huge = format!("/imagine {}", "a fox ".repeat(17_000));
    assert!(
        error(&huge).contains("the limit is 2000"),
        "{}",
        error(&huge)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn the_parser_never_panics_on_any_text(text in "\\PC{0,300}") {
        let _ = parse(&text, &limits());
    }

    #[test]
    fn the_parser_never_panics_on_command_shaped_text(
        name in prop::sample::select(specs(&limits()).iter().map(|s| s.name).collect::<Vec<_>>()),
        words in prop::collection::vec(
            prop_oneof![
                "\\PC{0,12}",
                Just("--hd".to_string()), Just("--4k".to_string()), Just("--ar".to_string()),
                Just("--seed".to_string()), Just("--no".to_string()), Just("--seconds".to_string()),
                Just("--".to_string()), Just("—".to_string()), Just("16:9".to_string()),
            ],
            0..12,
        ),
    ) {
        let text = format!("/{name} {}", words.join(" "));
        if let Ok(Some(Parsed { command: Command::Imagine(imagine), .. })) = parse(&text, &limits()) {
            prop_assert!(!imagine.prompt.is_empty());
            prop_assert!(imagine.prompt.chars().count() <= 2_000);
        }
    }
}

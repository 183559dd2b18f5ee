//! Fuzzing the command grammar, outside CI's time: 100,000 generated messages (commands with
//! random options, dashes, quotes, control characters, RTL marks, zero-width joiners, very long
//! prompts) and as many Discord option sets, each parsed and built as the service does; any
//! panic fails the run. Also the admin grammar.
//!
//! `cargo bench --bench grammar [-- --cases N]`

use std::time::Instant;

use bot_core::{
    admin::AdminCommand,
    command::{self, ArgValue, Args, CommandLimits},
};
use proptest::{
    prelude::*,
    test_runner::{Config, TestRunner},
};

/// Pieces people and attackers type.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("--ar".to_string()),
        Just("—ar".to_string()),
        Just("--".to_string()),
        Just("—".to_string()),
        Just("--hd".to_string()),
        Just("--4k".to_string()),
        Just("--seed".to_string()),
        Just("--seconds".to_string()),
        Just("--no".to_string()),
        Just("--style".to_string()),
        Just("21:9".to_string()),
        Just("0:0".to_string()),
        Just("99999999999999999999".to_string()),
        Just("-1".to_string()),
        Just("\"".to_string()),
        Just("\u{202e}".to_string()),
        Just("\u{200d}".to_string()),
        Just("\u{0000}".to_string()),
        Just("\u{feff}".to_string()),
        Just("@imagegpt_bot".to_string()),
        "\\PC{0,12}",
        any::<String>(),
    ]
}

fn message() -> impl Strategy<Value = String> {
    let names = prop_oneof![
        Just("imagine".to_string()),
        Just("video".to_string()),
        Just("music".to_string()),
        Just("portrait".to_string()),
        Just("enhance".to_string()),
        Just("faceswap".to_string()),
        Just("refund".to_string()),
        Just("link".to_string()),
        Just("buy".to_string()),
        Just("cancel".to_string()),
        Just("history".to_string()),
        Just("admin".to_string()),
        "[a-z@_]{0,40}",
    ];
    (names, proptest::collection::vec(piece(), 0..12), 0usize..3).prop_map(
        |(name, pieces, long)| {
            let mut text = format!("/{name} {}", pieces.join(" "));
            // Now and then a prompt of 100 KB.
            if long == 2 {
                text.push_str(&"a fox ".repeat(17_000));
            }
            text
        },
    )
}

fn options() -> impl Strategy<Value = (String, Vec<(String, ArgValue)>)> {
    let value = prop_oneof![
        any::<String>().prop_map(ArgValue::Text),
        any::<i64>().prop_map(ArgValue::Integer),
    ];
    let name = prop_oneof![
        Just("prompt".to_string()),
        Just("aspect_ratio".to_string()),
        Just("quality".to_string()),
        Just("seconds".to_string()),
        Just("seed".to_string()),
        Just("style".to_string()),
        Just("code".to_string()),
        Just("order".to_string()),
        "[a-z_]{0,20}",
    ];
    (
        "[a-z]{0,12}",
        proptest::collection::vec((name, value), 0..8),
    )
}

fn main() {
    let mut cases: u32 = 100_000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--cases"
            && let Some(n) = args.next().and_then(|n| n.parse().ok())
        {
            cases = n;
        }
    }
    let limits = CommandLimits::default();
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };

    let started = Instant::now();
    let mut runner = TestRunner::new(config.clone());
    let outcome = runner.run(&message(), |text| {
        // Parsing never panics; a command parsed is one the service can build again.
        if let Ok(Some(parsed)) = command::parse(&text, &limits) {
            let _ = format!("{parsed:?}");
        }
        let words = text.trim_start_matches('/');
        let _ = AdminCommand::parse(words.strip_prefix("admin").unwrap_or(words));
        Ok(())
    });
    if let Err(failure) = outcome {
        eprintln!("the text grammar failed: {failure}");
        std::process::exit(1);
    }
    println!(
        "text grammar: {cases} messages, no panic, {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let mut runner = TestRunner::new(config);
    let outcome = runner.run(&options(), |(name, values)| {
        let _ = command::build(&name, &Args::from_options(values), &limits);
        Ok(())
    });
    if let Err(failure) = outcome {
        eprintln!("the option grammar failed: {failure}");
        std::process::exit(1);
    }
    println!(
        "Discord options: {cases} option sets, no panic, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

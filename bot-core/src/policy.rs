//! Content policy (terms §3.3): prompts are checked against a configurable blocklist of words
//! and patterns before any credit is held, and a refusal says why.

use regex::{Regex, RegexBuilder};
use serde::Deserialize;

/// The version of the terms of service (their effective date) this build ships with.
pub const TERMS_VERSION: &str = "2026-04-06";

/// The `[policy]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Words and phrases refused wherever they stand as whole words, in any letter case.
    pub blocked_words: Vec<String>,
    /// Regular expressions (case-insensitive) refused anywhere in a prompt.
    pub blocked_patterns: Vec<String>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            blocked_words: [
                "rape",
                "raped",
                "child porn",
                "csam",
                "beheading",
                "isis propaganda",
                "nazi propaganda",
            ]
            .map(String::from)
            .to_vec(),
            blocked_patterns: vec![
                r"\b(child|children|kid|kids|minor|minors|underage|preteen|teen)\b.{0,40}\b(nude|naked|sexual|sexy|porn|explicit)\b".into(),
                r"\b(nude|naked|sexual|sexy|porn|explicit)\b.{0,40}\b(child|children|kid|kids|minor|minors|underage|preteen)\b".into(),
            ],
        }
    }
}

/// Why a prompt was refused, in words a person reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: String,
}

/// The compiled policy.
#[derive(Debug, Clone)]
pub struct ContentPolicy {
    words: Vec<(String, Regex)>,
    patterns: Vec<Regex>,
}

impl Default for ContentPolicy {
    /// The default lists of [`PolicyConfig`], compiled (a test proves they compile).
    fn default() -> Self {
        ContentPolicy::new(&PolicyConfig::default()).expect("the default policy compiles")
    }
}

impl ContentPolicy {
    /// Compiles the configured lists.
    ///
    /// # Errors
    ///
    /// The first pattern that is not a valid regular expression, named.
    pub fn new(config: &PolicyConfig) -> Result<ContentPolicy, String> {
        let build = |pattern: &str| {
            RegexBuilder::new(pattern)
                .case_insensitive(true)
                .size_limit(1 << 20)
                .build()
        };
        let words = config
            .blocked_words
            .iter()
            .filter(|word| !word.trim().is_empty())
            .map(|word| {
                let words: Vec<String> = word.split_whitespace().map(regex::escape).collect();
                let pattern = format!(r"\b{}\b", words.join(r"\s+"));
                build(&pattern)
                    .map(|regex| (word.trim().to_string(), regex))
                    .map_err(|e| format!("policy.blocked_words: {word:?}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        let patterns = config
            .blocked_patterns
            .iter()
            .map(|pattern| {
                build(pattern).map_err(|e| format!("policy.blocked_patterns: {pattern:?}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(ContentPolicy { words, patterns })
    }

    /// Checks the texts of one request (prompt, negative prompt, style).
    ///
    /// # Errors
    ///
    /// A [`Refusal`] naming what was found.
    pub fn check<'a>(&self, texts: impl IntoIterator<Item = &'a str>) -> Result<(), Refusal> {
        for text in texts {
            if let Some((word, _)) = self.words.iter().find(|(_, regex)| regex.is_match(text)) {
                return Err(Refusal {
                    reason: format!(
                        "Your request contains “{word}”, which our terms (§3.3) do not allow. \
                         No credits were charged."
                    ),
                });
            }
            if self.patterns.iter().any(|regex| regex.is_match(text)) {
                return Err(Refusal {
                    reason: "Your request describes content our terms (§3.3) do not allow: \
                             sexual content involving minors, sexual violence or extremism. \
                             No credits were charged."
                        .into(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ContentPolicy {
        ContentPolicy::default()
    }

    #[test]
    fn ordinary_prompts_pass() {
        for prompt in [
            "a red fox in the snow",
            "children playing football in a park",
            "a grape vineyard at sunset",
            "drape curtains in a sunny room",
            "🦊 в снегу",
        ] {
            assert_eq!(policy().check([prompt]), Ok(()), "{prompt}");
        }
    }

    #[test]
    fn blocked_words_are_refused_as_whole_words_in_any_case_with_the_reason() {
        let refusal = policy().check(["A RAPE scene"]).expect_err("refused");
        assert!(refusal.reason.contains("“rape”"), "{}", refusal.reason);
        assert!(refusal.reason.contains("No credits were charged"));
        assert!(
            policy().check(["child   porn"]).is_err(),
            "spacing does not hide a phrase"
        );
    }

    #[test]
    fn patterns_catch_what_single_words_cannot() {
        assert!(policy().check(["naked underage girl"]).is_err());
        assert!(policy().check(["a kid in a sexy pose"]).is_err());
    }

    #[test]
    fn every_text_of_a_request_is_checked() {
        assert!(policy().check(["a portrait", "beheading"]).is_err());
    }

    #[test]
    fn configured_lists_replace_the_defaults_and_bad_patterns_are_named() {
        let config = PolicyConfig {
            blocked_words: vec!["banana".into()],
            blocked_patterns: vec![],
        };
        let custom = ContentPolicy::new(&config).expect("compiles");
        assert!(custom.check(["Banana split"]).is_err());
        assert!(custom.check(["a rape seed field"]).is_ok());
        let broken = PolicyConfig {
            blocked_words: vec![],
            blocked_patterns: vec!["(unclosed".into()],
        };
        let error = ContentPolicy::new(&broken).expect_err("invalid");
        assert!(error.contains("policy.blocked_patterns"), "{error}");
    }
}

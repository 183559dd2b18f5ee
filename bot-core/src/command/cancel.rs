//! `/cancel [job number]`: the newest queued job, or the one named; its credits come back.

use super::{Args, CommandLimits, OptionKind, ParseError, Spec, TextForm, number};
use super::Visibility;

/// A parsed `/cancel`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancel {
    pub job: Option<u64>,
}

impl Cancel {
    pub const NAME: &str = "cancel";
    pub const VISIBILITY: Visibility = Visibility::Requester;

    pub fn spec(_limits: &CommandLimits) -> Spec {
        Spec::new(Self::NAME, "Cancel a queued job", "/cancel [job number]").option(
            "job",
            "The job number",
            false,
            OptionKind::Integer {
                min: Some(1),
                max: None,
            },
            TextForm::Rest,
        )
    }

    pub fn parse(args: &Args, _limits: &CommandLimits) -> Result<Cancel, ParseError> {
        Ok(Cancel {
            job: number(args, "job")?,
        })
    }
}

//! Words the adapters show on the core's behalf when an answer cannot go where it was asked:
//! a private answer to a question asked in a group. They name no balance, code or amount.

/// Said in the group when the private answer went to the person's chat with the bot.
pub fn sent_privately(name: &str) -> String {
    format!("{name}, I sent you the answer in a private message.")
}

/// Said in the group when the bot cannot write to the person first (Telegram bots may only
/// answer people who have opened a chat with them).
pub fn open_private_chat(name: &str, bot: &str) -> String {
    format!("{name}, I can only answer this privately. Open @{bot}, press Start, then ask again.")
}

/// A button's toast when its answer went to the person's private chat.
pub const SENT_PRIVATELY_ALERT: &str = "I sent you the answer in a private message.";

/// A button's alert when the person has no private chat with the bot yet.
pub fn open_private_chat_alert(bot: &str) -> String {
    format!("Open @{bot} and press Start so I can answer you privately, then press again.")
}

/// Said in a group when a payment notice for someone there could not reach them privately.
pub fn notice_needs_private_chat(bot: &str) -> String {
    format!(
        "A payment update is waiting for someone here who has not opened a chat with me: open \
         @{bot} and send /balance."
    )
}

/// Said in a Discord channel, naming the person, when a payment notice cannot reach their DMs.
pub const DISCORD_NOTICE_NEEDS_DMS: &str = "a payment update for you could not be sent privately: \
     allow direct messages from this server's members, then send /balance.";

/// The answer to the first request over the per-person limit.
pub const TOO_FAST: &str = "You are sending requests faster than I can take them. Wait a minute, \
     then try again; what you send meanwhile is ignored.";

/// The apology for a fault of ours, with the reference an operator finds in the logs.
pub fn internal_error(reference: &str) -> String {
    format!(
        "Sorry, something went wrong on our side (reference {reference}). No credits were taken; \
         please try again."
    )
}

/// The button under a result sent as a link because it is too large to upload.
pub fn download_label(megabytes: f64) -> String {
    format!("Download ({megabytes:.1} MB)")
}

/// Said under such a result.
pub const DOWNLOAD_NOTE: &str =
    "The result is too large to send here; the button downloads it (the link works for 24 hours).";

/// A notice's words, put together as it is sent (the store keeps only the record).
pub fn notice_text(notice: &Notice) -> String {
    match notice {
        Notice::Credited {
            order,
            credits,
            amount,
            currency,
            balance,
        } => format!(
            "{credits} added (order #{order}, {}). Your balance: {balance}.",
            format_price(*amount, currency)
        ),
        Notice::PaymentFailed {
            order,
            credits,
            amount,
            currency,
        } => format!(
            "Your payment of {} for {credits} (order #{order}) did not go through, so no credits \
             were added. Send /buy to try again.",
            format_price(*amount, currency)
        ),
        Notice::RefundedOutside {
            order,
            amount,
            currency,
            removed,
            balance,
        } => format!(
            "{} of order #{order} was refunded to your card; {removed} were removed. Your \
             balance: {balance}.",
            format_price(*amount, currency)
        ),
        Notice::Disputed { order, removed } => format!(
            "The payment for order #{order} was disputed with your bank, so your wallet is frozen \
             and its {removed} unused from that order were removed. Contact support to settle it."
        ),
        Notice::RefundEnded {
            refund,
            order,
            outcome,
            reason,
            amount,
            currency,
            credits,
            balance,
        } => match outcome {
            RefundOutcome::Made => format!(
                "Refund #{refund} done: {} for order #{order} is on its way back ({credits} \
                 removed). Your balance: {balance}.",
                format_price(*amount, currency)
            ),
            RefundOutcome::Declined => format!(
                "Refund #{refund} for order #{order} was declined: {}. Your {credits} are back; \
                 balance: {balance}.",
                reason.as_deref().unwrap_or("no reason given")
            ),
            RefundOutcome::Failed => format!(
                "Refund #{refund} for order #{order} could not be made: {}. Your {credits} are \
                 back; balance: {balance}.",
                reason.as_deref().unwrap_or("the payment service refused")
            ),
        },
        Notice::Worded { text } => text.clone(),
    }
}

use std::fmt::Write as _;

use super::{JobSpec, Service};
use crate::{
    Result, command,
    jobs::{Job, JobState},
    operation::OPERATIONS,
    payments::{Notice, RefundOutcome, format_price},
    people::User,
    providers::local::DISCLOSURE,
};

impl Service {
    pub(super) fn help(&self) -> String {
        let pricing = &self.settings.pricing;
        let mut text = String::from("What I can do:\n");
        for spec in self.grammar.specs() {
            if spec.operators_only {
                continue;
            }
            // A generation command's price rule, from the operation of the same name.
            let operation = OPERATIONS
                .iter()
                .position(|info| info.name == spec.name)
                .map(|at| pricing.prices[at]);
            let cost = operation.map(|rule| rule.to_string());
            let _ = match cost {
                Some(cost) => writeln!(text, "{} — {cost}", spec.usage),
                None => writeln!(text, "{}", spec.usage),
            };
            // What an operator offers (aspect ratios, lengths, styles) is listed as configured,
            // unless the usage line already spells it out.
            for option in &spec.options {
                if let command::OptionKind::Choices(choices) = &option.kind
                    && !choices.iter().all(|c| spec.usage.contains(&c.label))
                {
                    let labels: Vec<&str> = choices.iter().map(|c| c.label.as_str()).collect();
                    let _ = writeln!(text, "    {}: {}", option.name, labels.join(", "));
                }
            }
        }
        text.push_str(self.disclosure().trim_start());
        text
    }

    pub(super) fn disclosure(&self) -> String {
        if self.settings.local_preview {
            format!("\n\n{DISCLOSURE}")
        } else {
            String::new()
        }
    }

    pub(super) async fn history(&self, user: &User) -> Result<String> {
        let rows = self.store.recent_jobs(user.id, 10).await?;
        if rows.is_empty() {
            return Ok("No generations yet. Try /imagine.".into());
        }
        let mut text = String::from("Your recent jobs:\n");
        for (job, amount) in rows {
            let charged = if job.state == JobState::Succeeded {
                format!("{} credits", amount.get())
            } else {
                "no charge".into()
            };
            let _ = writeln!(
                text,
                "#{} {}: {} ({charged})",
                job.id,
                job.operation,
                job.state.as_str()
            );
        }
        Ok(text)
    }
}

pub(crate) fn status_text(job: &Job, spec: &JobSpec, state: &str) -> String {
    match &spec.prompt {
        Some(prompt) => format!(
            "#{} {}: {state}\n“{}”",
            job.id,
            spec.operation.label(),
            shorten(prompt, 200)
        ),
        None => format!("#{} {}: {state}", job.id, spec.operation.label()),
    }
}

pub(crate) fn final_status(job: &Job, spec: &JobSpec) -> String {
    let state = match job.state {
        JobState::Succeeded => "done".to_string(),
        JobState::Cancelled => "cancelled, no credits taken".to_string(),
        JobState::Failed => format!(
            "failed, no credits taken: {}",
            job.failure.as_deref().unwrap_or("unknown reason")
        ),
        JobState::Queued | JobState::Running => "waiting".to_string(),
    };
    status_text(job, spec, &state)
}

pub(crate) fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

pub(crate) fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

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

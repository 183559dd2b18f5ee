//! Operator actions, for the identities in `ADMIN_IDS` in any chat (`/admin …`) and for the
//! command line (`imagegpt admin …`), on the same rules: credits move only by ledger transfers
//! with a reason, and every action, reads included, is written to `admin_actions` with who, what
//! and when, in the same transaction as the change it records.

use std::fmt::Write as _;

use crate::{
    Credits, Identity, RefundId,
    ledger::{self},
    people::User,
};

/// One admin action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminCommand {
    /// Give credits (a grant from the grants account).
    Grant {
        who: Identity,
        credits: u64,
        reason: String,
    },
    /// Take credits back (an adjustment to the grants account); never below zero.
    Take {
        who: Identity,
        credits: u64,
        reason: String,
    },
    /// No more requests; open jobs are cancelled and their holds voided.
    Ban {
        who: Identity,
        reason: String,
    },
    Unban {
        who: Identity,
    },
    /// No spending, buying or refunds.
    Freeze {
        who: Identity,
        reason: String,
    },
    Unfreeze {
        who: Identity,
    },
    /// Identities, balance, purchases and recent jobs.
    Lookup {
        who: Identity,
    },
    /// People, jobs by operation and outcome, credits sold, spent and refunded.
    Stats {
        days: u32,
    },
    /// Refunds waiting for approval.
    Refunds,
    Approve {
        refund: RefundId,
    },
    Reject {
        refund: RefundId,
        reason: String,
    },
    /// The newest entries of the audit table.
    Log {
        limit: u32,
    },
}

/// What an admin action came to: its words, and whether it was done (a refusal, such as an
/// unknown person or a refund no longer waiting, is not; the command line exits 1 for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminOutcome {
    pub text: String,
    pub done: bool,
}

impl AdminOutcome {
    /// Done (or nothing to do: already so).
    pub fn done(text: impl Into<String>) -> AdminOutcome {
        AdminOutcome {
            text: text.into(),
            done: true,
        }
    }

    /// Refused; nothing changed.
    pub fn refused(text: impl Into<String>) -> AdminOutcome {
        AdminOutcome {
            text: text.into(),
            done: false,
        }
    }
}

/// How to use `/admin`.
pub const USAGE: &str = "/admin grant|take <platform:id> <credits> <reason> · ban <platform:id> \
                         [reason] · unban <platform:id> · freeze <platform:id> [reason] · unfreeze \
                         <platform:id> · lookup <platform:id> · stats [days] · refunds · approve \
                         <refund> · reject <refund> [reason] · log [limit]";

impl AdminCommand {
    /// Reads the words after `/admin`.
    ///
    /// # Errors
    ///
    /// What is wrong, with the usage.
    pub fn parse(arguments: &str) -> Result<AdminCommand, String> {
        // The command line's spelling is the same grammar: `--reason`, `--days` and `--limit`
        // only name the words that follow, and `refunds list|approve|reject` the verbs.
        let mut words = arguments
            .split_whitespace()
            .filter(|word| !matches!(*word, "--reason" | "--days" | "--limit"))
            .peekable();
        let mut verb = words.next().unwrap_or_default().to_lowercase();
        if verb == "refunds"
            && let Some(sub) = words.next_if(|w| matches!(*w, "list" | "approve" | "reject"))
        {
            verb = if sub == "list" { verb } else { sub.to_string() };
        }
        let mut next = || words.next().map(str::to_string);
        let identity = |text: Option<String>| -> Result<Identity, String> {
            let text = text.ok_or("Name the person as platform:id, e.g. telegram:123.")?;
            text.parse()
                .map_err(|_| format!("{text} is not an identity like telegram:123."))
        };
        let number = |text: Option<String>, what: &str| -> Result<u64, String> {
            text.and_then(|t| t.parse::<u64>().ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("Give the {what} as a positive whole number."))
        };
        let command = match verb.as_str() {
            "grant" | "take" => {
                let who = identity(next())?;
                let credits = number(next(), "credits")?;
                let reason = rest(&mut next);
                if reason.is_empty() {
                    return Err(
                        "Say why: a reason is recorded with every change of credits.".into(),
                    );
                }
                if verb == "grant" {
                    AdminCommand::Grant {
                        who,
                        credits,
                        reason,
                    }
                } else {
                    AdminCommand::Take {
                        who,
                        credits,
                        reason,
                    }
                }
            }
            "ban" => AdminCommand::Ban {
                who: identity(next())?,
                reason: rest(&mut next),
            },
            "unban" => AdminCommand::Unban {
                who: identity(next())?,
            },
            "freeze" => AdminCommand::Freeze {
                who: identity(next())?,
                reason: rest(&mut next),
            },
            "unfreeze" => AdminCommand::Unfreeze {
                who: identity(next())?,
            },
            "lookup" => AdminCommand::Lookup {
                who: identity(next())?,
            },
            "stats" => AdminCommand::Stats {
                days: match next() {
                    None => 30,
                    text => u32::try_from(number(text, "days")?).unwrap_or(u32::MAX),
                },
            },
            "refunds" => AdminCommand::Refunds,
            "approve" => AdminCommand::Approve {
                refund: RefundId::from_raw(
                    i64::try_from(number(next(), "refund number")?).unwrap_or(i64::MAX),
                ),
            },
            "reject" => AdminCommand::Reject {
                refund: RefundId::from_raw(
                    i64::try_from(number(next(), "refund number")?).unwrap_or(i64::MAX),
                ),
                reason: match rest(&mut next) {
                    reason if reason.is_empty() => "declined by an admin".into(),
                    reason => reason,
                },
            },
            "log" => AdminCommand::Log {
                limit: match next() {
                    None => 20,
                    text => u32::try_from(number(text, "number of entries")?).unwrap_or(u32::MAX),
                },
            },
            _ => return Err(format!("Usage: {USAGE}")),
        };
        if let Some(extra) = next().filter(|_| !command.takes_reason()) {
            return Err(format!("{extra:?} is one word too many. Usage: {USAGE}"));
        }
        Ok(command)
    }

    fn takes_reason(&self) -> bool {
        matches!(
            self,
            AdminCommand::Grant { .. }
                | AdminCommand::Take { .. }
                | AdminCommand::Ban { .. }
                | AdminCommand::Freeze { .. }
                | AdminCommand::Reject { .. }
        )
    }

    /// The action's name in the audit table.
    pub fn name(&self) -> &'static str {
        match self {
            AdminCommand::Grant { .. } => "grant",
            AdminCommand::Take { .. } => "take",
            AdminCommand::Ban { .. } => "ban",
            AdminCommand::Unban { .. } => "unban",
            AdminCommand::Freeze { .. } => "freeze",
            AdminCommand::Unfreeze { .. } => "unfreeze",
            AdminCommand::Lookup { .. } => "lookup",
            AdminCommand::Stats { .. } => "stats",
            AdminCommand::Refunds => "refunds",
            AdminCommand::Approve { .. } => "approve",
            AdminCommand::Reject { .. } => "reject",
            AdminCommand::Log { .. } => "log",
        }
    }
}

fn rest(next: &mut impl FnMut() -> Option<String>) -> String {
    let mut words = Vec::new();
    while let Some(word) = next() {
        words.push(word);
    }
    words.join(" ")
}

/// One row of the audit table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminAction {
    pub id: i64,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub detail: String,
    pub created_at: i64,
}

/// Figures for a period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub people: i64,
    pub new_people: i64,
    /// (operation, state, count), in name order.
    pub jobs: Vec<(String, String, i64)>,
    pub credits_sold: i64,
    pub credits_spent: i64,
    pub credits_refunded: i64,
    pub credits_granted: i64,
    /// Paid purchases by currency.
    pub sales: Vec<Sales>,
    /// Succeeded jobs by operation, with what they earned and cost.
    pub earnings: Vec<Earnings>,
}

/// Paid purchases in one currency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sales {
    pub currency: String,
    pub orders: i64,
    pub credits: i64,
    /// In the currency's smallest unit (cents; Stars are whole).
    pub amount: i64,
    pub fees: i64,
    pub refunded: i64,
}

/// One operation's succeeded jobs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Earnings {
    pub operation: String,
    pub jobs: i64,
    /// Credits charged for them.
    pub credits: i64,
    /// What the providers charged, at their configured prices.
    pub cost: crate::Usd,
    /// Jobs whose provider had no configured price (their cost is unknown, not zero).
    pub uncosted: i64,
}

/// Which flag on a person an admin sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    Banned,
    Frozen,
}

/// The words of a lookup.
pub(crate) fn describe(
    user: &User,
    identities: &[Identity],
    balance: &ledger::AccountBalance,
    purchases: &[crate::payments::Purchase],
    jobs: &[(crate::jobs::Job, Credits)],
) -> String {
    let mut text = format!(
        "Person #{}: {}.\nBalance: {} available, {} on hold.",
        user.id,
        identities
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        balance.available(),
        balance.debits_pending,
    );
    if user.banned_at.is_some() {
        text.push_str(" Banned.");
    }
    if user.frozen_at.is_some() {
        text.push_str(" Wallet frozen.");
    }
    let _ = write!(text, "\nPurchases ({}):", purchases.len());
    for purchase in purchases.iter().take(5) {
        let _ = write!(
            text,
            "\n  #{} {} pack, {} credits, {} {}, {:?}",
            purchase.id,
            purchase.pack,
            purchase.credits,
            crate::payments::format_price(purchase.amount, &purchase.currency),
            purchase.rail,
            purchase.state
        );
    }
    let _ = write!(text, "\nRecent jobs ({}):", jobs.len());
    for (job, cost) in jobs {
        let _ = write!(
            text,
            "\n  #{} {} {} ({})",
            job.id,
            job.operation,
            job.state.as_str(),
            cost
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_read_with_their_reasons() {
        assert_eq!(
            AdminCommand::parse("grant telegram:5 50 goodwill for the outage"),
            Ok(AdminCommand::Grant {
                who: "telegram:5".parse().expect("identity"),
                credits: 50,
                reason: "goodwill for the outage".into()
            })
        );
        assert!(
            AdminCommand::parse("grant telegram:5 50").is_err(),
            "a reason is required"
        );
        assert!(AdminCommand::parse("take telegram:5 -3 x").is_err());
        assert!(AdminCommand::parse("ban bob").is_err());
        assert_eq!(
            AdminCommand::parse("stats"),
            Ok(AdminCommand::Stats { days: 30 })
        );
        assert_eq!(
            AdminCommand::parse("reject 7"),
            Ok(AdminCommand::Reject {
                refund: RefundId::from_raw(7),
                reason: "declined by an admin".into()
            })
        );
        assert!(AdminCommand::parse("launch").is_err_and(|e| e.contains("Usage")));
    }

    #[test]
    fn the_command_lines_spelling_is_the_same_grammar() {
        assert_eq!(
            AdminCommand::parse("grant telegram:5 50 --reason goodwill"),
            AdminCommand::parse("grant telegram:5 50 goodwill")
        );
        assert_eq!(
            AdminCommand::parse("stats --days 7"),
            Ok(AdminCommand::Stats { days: 7 })
        );
        assert_eq!(
            AdminCommand::parse("refunds list"),
            Ok(AdminCommand::Refunds)
        );
        assert_eq!(
            AdminCommand::parse("refunds approve 4"),
            Ok(AdminCommand::Approve {
                refund: RefundId::from_raw(4)
            })
        );
        assert_eq!(
            AdminCommand::parse("refunds reject 4 --reason too late"),
            Ok(AdminCommand::Reject {
                refund: RefundId::from_raw(4),
                reason: "too late".into()
            })
        );
        assert_eq!(
            AdminCommand::parse("log --limit 5"),
            Ok(AdminCommand::Log { limit: 5 })
        );
        assert!(
            AdminCommand::parse("unban telegram:5 now").is_err_and(|e| e.contains("too many")),
            "words a command does not take are refused, not ignored"
        );
    }
}

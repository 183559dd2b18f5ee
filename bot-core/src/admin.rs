//! Operator actions, for the identities in `ADMIN_IDS` in any chat (`/admin …`) and for the
//! command line (`imagegpt admin …`), on the same rules: credits move only by ledger transfers
//! with a reason, and every action, reads included, is written to `admin_actions` with who, what
//! and when, in the same transaction as the change it records.

use std::fmt::Write as _;

use sqlx::AnyConnection;

use crate::{
    Credits, Error, Identity, RefundId, Result, Store, UserId,
    ledger::{self, Phase, TransferKind, TransferRequest},
    people::User,
    store::{Atomic, now_millis},
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
    pub fn parse(arguments: &str) -> std::result::Result<AdminCommand, String> {
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
        let identity = |text: Option<String>| -> std::result::Result<Identity, String> {
            let text = text.ok_or("Name the person as platform:id, e.g. telegram:123.")?;
            text.parse()
                .map_err(|_| format!("{text} is not an identity like telegram:123."))
        };
        let number = |text: Option<String>, what: &str| -> std::result::Result<u64, String> {
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
}

pub(crate) async fn record(
    conn: &mut AnyConnection,
    actor: &str,
    action: &str,
    target: Option<&str>,
    detail: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO admin_actions (actor, action, target, detail, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(actor)
    .bind(action)
    .bind(target)
    .bind(detail)
    .bind(now_millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// Which flag on a person an admin sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    Banned,
    Frozen,
}

impl Store {
    /// Records an admin action that changes nothing else (a read, or a decision recorded by its
    /// own code).
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn record_admin_action(
        &self,
        actor: &str,
        action: &str,
        target: Option<&str>,
        detail: &str,
    ) -> Result<()> {
        let (actor, action, target, detail) = (
            actor.to_string(),
            action.to_string(),
            target.map(str::to_string),
            detail.to_string(),
        );
        self.write(Atomic::Statement, move |conn| {
            Box::pin(async move { record(conn, &actor, &action, target.as_deref(), &detail).await })
        })
        .await
    }

    /// Moves credits between a wallet and the grants account, with the audit row, at once.
    /// `key` makes a repeated request do nothing twice.
    ///
    /// # Errors
    ///
    /// [`UserError::InsufficientCredits`] when taking more than the wallet holds.
    pub async fn admin_transfer(
        &self,
        actor: &str,
        target: &Identity,
        request: TransferRequest,
        action: &str,
    ) -> Result<ledger::Transfer> {
        let (actor, target, action) = (actor.to_string(), target.to_string(), action.to_string());
        self.retrying(|| {
            let (actor, target, action, request) = (
                actor.clone(),
                target.clone(),
                action.clone(),
                request.clone(),
            );
            self.write(Atomic::Transaction, move |conn| {
                Box::pin(async move {
                    let detail = format!(
                        "{} {}: {}",
                        action,
                        request.amount,
                        request.memo.clone().unwrap_or_default()
                    );
                    let transfer =
                        match ledger::insert_transfer(conn, request, Phase::Posted).await? {
                            ledger::Inserted::Created(transfer) => {
                                record(conn, &actor, &action, Some(&target), &detail).await?;
                                transfer
                            }
                            ledger::Inserted::Existing(transfer) => transfer,
                            ledger::Inserted::MissingAccount => {
                                return Err(Error::Internal(anyhow::anyhow!(
                                    "an account of the transfer is missing"
                                )));
                            }
                        };
                    Ok(transfer)
                })
            })
        })
        .await
    }

    /// Sets or clears a person's ban or freeze, with the audit row; a ban also cancels the
    /// person's open jobs, in the same transaction. Returns whether anything changed and how
    /// many jobs were cancelled.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn set_flag(
        &self,
        actor: &str,
        target: &Identity,
        user: UserId,
        flag: Flag,
        on: bool,
        reason: &str,
    ) -> Result<(bool, u64)> {
        let (actor, target, reason) = (actor.to_string(), target.to_string(), reason.to_string());
        self.write(Atomic::Transaction, move |conn| {
            Box::pin(async move {
                let column = match flag {
                    Flag::Banned => "banned_at",
                    Flag::Frozen => "frozen_at",
                };
                let (value, condition) = if on {
                    (Some(now_millis()), "IS NULL")
                } else {
                    (None, "IS NOT NULL")
                };
                // The column is one of two constants above, never input.
                let sql = format!(
                    "UPDATE users SET {column} = $2 WHERE id = $1 AND {column} {condition}"
                );
                let changed = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(user.get())
                    .bind(value)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
                    == 1;
                let action = match (flag, on) {
                    (Flag::Banned, true) => "ban",
                    (Flag::Banned, false) => "unban",
                    (Flag::Frozen, true) => "freeze",
                    (Flag::Frozen, false) => "unfreeze",
                };
                let cancelled = if changed && flag == Flag::Banned && on {
                    crate::jobs::cancel_open_jobs(&mut *conn, user).await?
                } else {
                    0
                };
                let detail = match (changed, reason.is_empty()) {
                    (true, _) => reason,
                    (false, true) => "no change".to_string(),
                    (false, false) => format!("no change; {reason}"),
                };
                record(conn, &actor, action, Some(&target), &detail).await?;
                Ok((changed, cancelled))
            })
        })
        .await
    }

    /// The audit table, newest first.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn admin_actions(&self, limit: u32) -> Result<Vec<AdminAction>> {
        let rows: Vec<(i64, String, String, Option<String>, String, i64)> = sqlx::query_as(
            "SELECT id, actor, action, target, detail, created_at FROM admin_actions \
             ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&mut *self.reader().await?)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, actor, action, target, detail, created_at)| AdminAction {
                    id,
                    actor,
                    action,
                    target,
                    detail,
                    created_at,
                },
            )
            .collect())
    }

    /// Figures since `since` (unix milliseconds).
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn stats(&self, since: i64) -> Result<Stats> {
        let mut reader = self.reader().await?;
        let (people, new_people): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), \
               CAST(COALESCE(SUM(CASE WHEN created_at >= $1 THEN 1 ELSE 0 END), 0) AS BIGINT) \
             FROM users WHERE merged_into IS NULL",
        )
        .bind(since)
        .fetch_one(&mut *reader)
        .await?;
        let jobs: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT operation, state, COUNT(*) FROM jobs WHERE created_at >= $1 \
             GROUP BY operation, state ORDER BY operation, state",
        )
        .bind(since)
        .fetch_all(&mut *reader)
        .await?;
        let kinds: Vec<(String, i64)> = sqlx::query_as(
            // PostgreSQL sums BIGINTs as NUMERIC.
            "SELECT kind, CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM transfers \
             WHERE state = 'posted' AND created_at >= $1 GROUP BY kind",
        )
        .bind(since)
        .fetch_all(&mut *reader)
        .await?;
        let sum = |kind: TransferKind| {
            kinds
                .iter()
                .filter(|(k, _)| k == kind.as_str())
                .map(|(_, amount)| *amount)
                .sum::<i64>()
        };
        Ok(Stats {
            people,
            new_people,
            jobs,
            credits_sold: sum(TransferKind::Purchase),
            credits_spent: sum(TransferKind::Generation),
            credits_refunded: sum(TransferKind::Refund),
            credits_granted: sum(TransferKind::Grant),
        })
    }
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

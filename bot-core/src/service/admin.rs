//! `/admin` and `imagegpt admin`: the service side of [`crate::admin`]. Each action is taken
//! once per request key, recorded in the audit table, and answered in words for the admin.

use std::fmt::Write as _;

use crate::{
    Error, Identity, Result, Usd, UserError,
    admin::{AdminCommand, AdminOutcome, Flag, Stats, describe},
    ledger::{SystemAccount, TransferKind, TransferRequest},
    payments::{RefundState, format_price},
    people::User,
    store::now_millis,
};

use super::Service;

impl Service {
    /// Runs one admin action for `actor` (an admin identity, or `cli`); `key` makes a repeated
    /// request (the same update, the same CLI invocation) move credits once.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn admin(
        &self,
        actor: &str,
        command: AdminCommand,
        key: &str,
    ) -> Result<AdminOutcome> {
        let action = command.name();
        match command {
            AdminCommand::Grant {
                who,
                credits,
                reason,
            }
            | AdminCommand::Take {
                who,
                credits,
                reason,
            } => {
                let Some(user) = self.known(&who).await? else {
                    return Ok(unknown(&who));
                };
                let grants = self.store.account(SystemAccount::Grants);
                let (debit, credit, kind) = if action == "grant" {
                    (grants, user.wallet, TransferKind::Grant)
                } else {
                    (user.wallet, grants, TransferKind::Adjustment)
                };
                let request = TransferRequest {
                    key: format!("admin:{key}"),
                    debit,
                    credit,
                    amount: crate::Credits::new(credits),
                    kind,
                    memo: Some(format!("{action} by {actor}: {reason}")),
                };
                match self
                    .store
                    .admin_transfer(actor, &who, request, action)
                    .await
                {
                    Ok(_) => {
                        let balance = self.store.account_balance(user.wallet).await?.available();
                        Ok(AdminOutcome::done(format!(
                            "{} {} {who}. Their balance: {balance}.",
                            if action == "grant" {
                                "Granted to"
                            } else {
                                "Took from"
                            },
                            crate::Credits::new(credits)
                        )))
                    }
                    Err(Error::User(UserError::InsufficientCredits { .. })) => {
                        let balance = self.store.account_balance(user.wallet).await?.available();
                        self.store
                            .record_admin_action(
                                actor,
                                action,
                                Some(&who.to_string()),
                                &format!("refused: {credits} asked, {balance} available"),
                            )
                            .await?;
                        Ok(AdminOutcome::refused(format!(
                            "{who} has only {balance} available; nothing was taken."
                        )))
                    }
                    Err(error) => Err(error),
                }
            }
            AdminCommand::Ban { who, reason } => {
                let Some(user) = self.known(&who).await? else {
                    return Ok(unknown(&who));
                };
                // Nothing of theirs runs any more: open jobs end and their holds are voided.
                let (changed, cancelled) = self
                    .store
                    .set_flag(actor, &who, user.id, Flag::Banned, true, &reason)
                    .await?;
                Ok(AdminOutcome::done(if changed {
                    format!("{who} is banned; {cancelled} open job(s) cancelled.")
                } else {
                    format!("{who} was already banned.")
                }))
            }
            AdminCommand::Unban { who } => {
                self.flag(actor, &who, Flag::Banned, false, "", "unbanned")
                    .await
            }
            AdminCommand::Freeze { who, reason } => {
                let done = "frozen: no spending, buying or refunds";
                self.flag(actor, &who, Flag::Frozen, true, &reason, done)
                    .await
            }
            AdminCommand::Unfreeze { who } => {
                self.flag(actor, &who, Flag::Frozen, false, "", "unfrozen")
                    .await
            }
            AdminCommand::Lookup { who } => {
                let Some(user) = self.known(&who).await? else {
                    self.store
                        .record_admin_action(actor, action, Some(&who.to_string()), "not found")
                        .await?;
                    return Ok(unknown(&who));
                };
                let identities = self.store.identities(user.id).await?;
                let balance = self.store.account_balance(user.wallet).await?;
                let purchases = self.store.purchases(user.id).await?;
                let jobs = self.store.recent_jobs(user.id, 5).await?;
                self.store
                    .record_admin_action(actor, action, Some(&who.to_string()), "")
                    .await?;
                Ok(AdminOutcome::done(describe(
                    &user,
                    &identities,
                    &balance,
                    &purchases,
                    &jobs,
                )))
            }
            AdminCommand::Stats { days } => {
                let since = now_millis() - i64::from(days) * 86_400_000;
                let stats = self.store.stats(since).await?;
                self.store
                    .record_admin_action(actor, action, None, &format!("{days} days"))
                    .await?;
                let mut text = format!(
                    "Last {days} days: {} people ({} new). Credits sold {}, spent {}, refunded {}, \
                     granted {}.",
                    stats.people,
                    stats.new_people,
                    stats.credits_sold,
                    stats.credits_spent,
                    stats.credits_refunded,
                    stats.credits_granted
                );
                text.push_str(&earnings_text(
                    &stats,
                    self.settings().pricing.credit_floor(),
                ));
                if stats.jobs.is_empty() {
                    text.push_str(" none");
                }
                for (operation, state, count) in &stats.jobs {
                    let _ = write!(text, "\n  {operation} {state}: {count}");
                }
                Ok(AdminOutcome::done(text))
            }
            AdminCommand::Refunds => {
                let waiting = self
                    .store
                    .refunds_in(RefundState::AwaitingApproval, None)
                    .await?;
                self.store
                    .record_admin_action(actor, action, None, &format!("{} waiting", waiting.len()))
                    .await?;
                if waiting.is_empty() {
                    return Ok(AdminOutcome::done("No refunds are waiting for approval."));
                }
                let mut text = String::from("Refunds waiting for approval:");
                for (refund, purchase) in waiting {
                    let _ = write!(
                        text,
                        "\n  refund #{} order #{} by {}: {} → {}",
                        refund.id,
                        purchase.id,
                        purchase.payer,
                        refund.credits,
                        format_price(refund.amount, &purchase.currency)
                    );
                }
                Ok(AdminOutcome::done(text))
            }
            AdminCommand::Approve { refund } => self.decide(actor, refund, None).await,
            AdminCommand::Reject { refund, reason } => {
                self.decide(actor, refund, Some(&reason)).await
            }
            AdminCommand::Log { limit } => {
                let actions = self.store.admin_actions(limit).await?;
                self.store
                    .record_admin_action(actor, action, None, &format!("{limit} entries"))
                    .await?;
                if actions.is_empty() {
                    return Ok(AdminOutcome::done("No admin actions yet."));
                }
                let lines: Vec<String> = actions
                    .iter()
                    .map(|action| {
                        format!(
                            "#{} {} {} {} {}{}",
                            action.id,
                            action.created_at,
                            action.actor,
                            action.action,
                            action.target.as_deref().unwrap_or("-"),
                            if action.detail.is_empty() {
                                String::new()
                            } else {
                                format!(": {}", action.detail)
                            }
                        )
                    })
                    .collect();
                Ok(AdminOutcome::done(lines.join("\n")))
            }
        }
    }

    /// Approves (no reason) or rejects a refund waiting for approval; it is decided once.
    async fn decide(
        &self,
        actor: &str,
        refund: crate::RefundId,
        rejection: Option<&str>,
    ) -> Result<AdminOutcome> {
        let approve = rejection.is_none();
        let decided = self
            .decide_refund(refund, approve, rejection.unwrap_or_default())
            .await?;
        let action = if approve { "approve" } else { "reject" };
        let detail = match (decided, rejection) {
            (false, _) => "not waiting; no change".to_string(),
            (true, Some(reason)) => reason.to_string(),
            (true, None) => "sent".to_string(),
        };
        self.store
            .record_admin_action(actor, action, Some(&format!("refund:{refund}")), &detail)
            .await?;
        Ok(if !decided {
            AdminOutcome::refused(format!("Refund #{refund} is not waiting for approval."))
        } else if approve {
            AdminOutcome::done(format!("Refund #{refund} approved and sent."))
        } else {
            AdminOutcome::done(format!(
                "Refund #{refund} rejected; the credits went back to the person."
            ))
        })
    }

    /// Unbans, freezes or unfreezes; `done` says the new state.
    async fn flag(
        &self,
        actor: &str,
        who: &Identity,
        flag: Flag,
        on: bool,
        reason: &str,
        done: &str,
    ) -> Result<AdminOutcome> {
        let Some(user) = self.known(who).await? else {
            return Ok(unknown(who));
        };
        let (changed, _) = self
            .store
            .set_flag(actor, who, user.id, flag, on, reason)
            .await?;
        Ok(AdminOutcome::done(if changed {
            format!("{who} is {done}.")
        } else {
            format!("Nothing to change: {who} already was.")
        }))
    }

    async fn known(&self, who: &Identity) -> Result<Option<User>> {
        self.store.find_user(who).await
    }
}

fn unknown(who: &Identity) -> AdminOutcome {
    AdminOutcome::refused(format!("No one with the identity {who} has used the bot."))
}

/// Sales by currency, then each operation's revenue (in credits, and in dollars at `floor`, the
/// least a credit brings in), provider cost and margin; ends with the heading of the job counts.
fn earnings_text(stats: &Stats, floor: Option<Usd>) -> String {
    let mut text = String::from("\nSales:");
    if stats.sales.is_empty() {
        text.push_str(" none");
    }
    for sales in &stats.sales {
        let amount = |n: i64| format_price(u64::try_from(n).unwrap_or(0), &sales.currency);
        let _ = write!(
            text,
            "\n  {}: {} orders, {} credits, {} (fees {}, refunded {})",
            sales.currency,
            sales.orders,
            sales.credits,
            amount(sales.amount),
            amount(sales.fees),
            amount(sales.refunded)
        );
    }
    match floor {
        Some(rate) => {
            let _ = write!(
                text,
                "\nBy operation (dollars at {rate} a credit, the cheapest pack's rate):"
            );
        }
        None => text.push_str("\nBy operation (no pack is priced in dollars):"),
    }
    if stats.earnings.is_empty() {
        text.push_str(" none");
    }
    for earned in &stats.earnings {
        let credits = u64::try_from(earned.credits).unwrap_or(0);
        let _ = write!(
            text,
            "\n  {}: {} done, {credits} credits",
            earned.operation, earned.jobs
        );
        let revenue = floor.map(|rate| rate.times(credits));
        if let Some(revenue) = revenue {
            let _ = write!(text, " = {revenue}");
        }
        let _ = write!(text, ", provider cost {}", earned.cost);
        if let Some(revenue) = revenue {
            let (earned_micros, cost) = (revenue.get() as i128, earned.cost.get() as i128);
            let margin = earned_micros - cost;
            let sign = if margin < 0 { "-" } else { "" };
            let _ = write!(
                text,
                ", margin {sign}{}",
                Usd::micros(u64::try_from(margin.abs()).unwrap_or(u64::MAX))
            );
            if earned_micros > 0 {
                let _ = write!(text, " ({}%)", margin * 100 / earned_micros);
            }
        }
        if earned.uncosted > 0 {
            let _ = write!(text, " ({} with no configured cost)", earned.uncosted);
        }
    }
    text.push_str("\nJobs:");
    text
}

//! `imagegpt audit`: proves on a live database that the books balance. Reads only.

use std::{collections::HashMap, fmt};

use sqlx::AnyConnection;

use super::rows::{AccountRow, named_row};
use crate::{Result, Store};

/// What the audit found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditReport {
    pub wallets: usize,
    pub system_accounts: usize,
    pub transfers: u64,
    pub lots: usize,
    /// Credits posted into wallets and not spent: what people hold.
    pub wallet_credits: i128,
    /// Credits on hold for generations that have not ended.
    pub held_credits: i128,
    /// One readable line per broken rule; empty when the books balance.
    pub problems: Vec<String>,
}

impl AuditReport {
    /// True when no rule is broken.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for AuditReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_clean() {
            return write!(
                f,
                "audit ok: {} wallets, {} system accounts, {} transfers, {} lots; balances sum to \
                 zero; wallets hold {} credits, {} on hold",
                self.wallets,
                self.system_accounts,
                self.transfers,
                self.lots,
                self.wallet_credits,
                self.held_credits
            );
        }
        writeln!(f, "audit FAILED: {} problem(s)", self.problems.len())?;
        for problem in &self.problems {
            writeln!(f, "  - {problem}")?;
        }
        write!(
            f,
            "checked {} wallets, {} system accounts, {} transfers, {} lots",
            self.wallets, self.system_accounts, self.transfers, self.lots
        )
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Totals {
    debits_posted: i128,
    credits_posted: i128,
    debits_pending: i128,
    credits_pending: i128,
}

fn sum(a: Totals, b: Totals) -> Totals {
    Totals {
        debits_posted: a.debits_posted + b.debits_posted,
        credits_posted: a.credits_posted + b.credits_posted,
        debits_pending: a.debits_pending + b.debits_pending,
        credits_pending: a.credits_pending + b.credits_pending,
    }
}

named_row! {
    /// What the transfers on one side of an account add up to, per state.
    struct SideRow {
        account: i64,
        state: String,
        total: i64,
        transfers: i64,
    }
}

named_row! {
    /// A lot beside its transfer and what spending drew from it.
    struct LotRow {
        lot: i64,
        account: i64,
        transfer: i64,
        credits: i64,
        remaining: i64,
        consumed: i64,
        credited: i64,
        amount: i64,
        state: String,
    }
}

named_row! {
    /// A wallet debit and what it drew from lots.
    struct SpendingRow {
        transfer: i64,
        amount: i64,
        state: String,
        drawn: i64,
    }
}

/// At most this many lines of one kind of problem are listed; the rest are counted.
const MAX_LINES_PER_RULE: usize = 20;

struct Problems {
    lines: Vec<String>,
    per_rule: HashMap<&'static str, usize>,
}

impl Problems {
    fn push(&mut self, rule: &'static str, line: String) {
        let seen = self.per_rule.entry(rule).or_default();
        *seen += 1;
        if *seen <= MAX_LINES_PER_RULE {
            self.lines.push(line);
        }
    }

    fn finish(mut self) -> Vec<String> {
        let mut rules: Vec<_> = self.per_rule.into_iter().collect();
        rules.sort();
        for (rule, count) in rules {
            if count > MAX_LINES_PER_RULE {
                self.lines.push(format!(
                    "… and {} more of: {rule}",
                    count - MAX_LINES_PER_RULE
                ));
            }
        }
        self.lines
    }
}

impl Store {
    /// Checks every rule of the ledger: balances sum to zero, no wallet is negative, every
    /// cached balance equals the sum of its transfers, and lots agree with the spending.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Internal`] when the database fails; broken rules are in the report.
    pub async fn audit(&self) -> Result<AuditReport> {
        let mut conn = self.reader().await?;
        let mut report = AuditReport::default();
        let mut problems = Problems {
            lines: Vec::new(),
            per_rule: HashMap::new(),
        };

        let accounts: Vec<AccountRow> = sqlx::query_as(
            "SELECT id, kind, debits_posted, credits_posted, debits_pending, credits_pending \
             FROM accounts ORDER BY id",
        )
        .fetch_all(&mut *conn)
        .await?;

        let mut from_transfers: HashMap<i64, Totals> = HashMap::new();
        let debit_sums: Vec<SideRow> = sqlx::query_as(
            "SELECT debit_account_id AS account, state, CAST(SUM(amount) AS BIGINT) AS total, \
               CAST(COUNT(*) AS BIGINT) AS transfers \
             FROM transfers GROUP BY debit_account_id, state",
        )
        .fetch_all(&mut *conn)
        .await?;
        for side in debit_sums {
            report.transfers += u64::try_from(side.transfers).unwrap_or_default();
            let totals = from_transfers.entry(side.account).or_default();
            match side.state.as_str() {
                "posted" => totals.debits_posted += i128::from(side.total),
                "pending" => totals.debits_pending += i128::from(side.total),
                _ => {}
            }
        }
        let credit_sums: Vec<SideRow> = sqlx::query_as(
            "SELECT credit_account_id AS account, state, CAST(SUM(amount) AS BIGINT) AS total, \
               CAST(COUNT(*) AS BIGINT) AS transfers \
             FROM transfers GROUP BY credit_account_id, state",
        )
        .fetch_all(&mut *conn)
        .await?;
        for side in credit_sums {
            let totals = from_transfers.entry(side.account).or_default();
            match side.state.as_str() {
                "posted" => totals.credits_posted += i128::from(side.total),
                "pending" => totals.credits_pending += i128::from(side.total),
                _ => {}
            }
        }

        let mut net_posted: i128 = 0;
        let mut net_pending: i128 = 0;
        let mut available: HashMap<i64, i128> = HashMap::new();
        for account in &accounts {
            let (id, kind) = (&account.id, &account.kind);
            let cached = Totals {
                debits_posted: i128::from(account.debits_posted),
                credits_posted: i128::from(account.credits_posted),
                debits_pending: i128::from(account.debits_pending),
                credits_pending: i128::from(account.credits_pending),
            };
            let summed = from_transfers.remove(id).unwrap_or_default();
            // Wallets keep running totals; system accounts keep none (their totals are the sums
            // of their transfers), so anything cached there was written behind the ledger's back.
            let (expected, balance) = if kind == "wallet" {
                (summed, cached)
            } else {
                (Totals::default(), sum(summed, cached))
            };
            net_posted += balance.credits_posted - balance.debits_posted;
            net_pending += balance.credits_pending - balance.debits_pending;
            if cached != expected {
                problems.push(
                    "cached balance differs from its transfers",
                    format!(
                        "account {id} ({kind}): cached balance differs from the sum of its \
                         transfers (cached {cached:?}, expected {expected:?})"
                    ),
                );
            }
            if kind == "wallet" {
                report.wallets += 1;
                let wallet_available =
                    cached.credits_posted - cached.debits_posted - cached.debits_pending;
                report.wallet_credits += cached.credits_posted - cached.debits_posted;
                report.held_credits += cached.debits_pending;
                if wallet_available < 0 {
                    problems.push(
                        "negative wallet",
                        format!("wallet {id} is negative: {wallet_available} credits available"),
                    );
                }
                available.insert(*id, wallet_available);
            } else {
                report.system_accounts += 1;
            }
        }
        for account in from_transfers.keys() {
            problems.push(
                "transfer names a missing account",
                format!("transfers name account {account}, which does not exist"),
            );
        }
        if net_posted != 0 {
            problems.push(
                "balances do not sum to zero",
                format!("posted balances sum to {net_posted}, not zero"),
            );
        }
        if net_pending != 0 {
            problems.push(
                "balances do not sum to zero",
                format!("pending balances sum to {net_pending}, not zero"),
            );
        }

        // On the connection already held: taking a second reader while holding one waits
        // forever when the store has one reader, or when the other is taken at that moment.
        Self::audit_lots(&mut conn, &mut report, &mut problems, &available).await?;
        report.problems = problems.finish();
        Ok(report)
    }

    async fn audit_lots(
        conn: &mut AnyConnection,
        report: &mut AuditReport,
        problems: &mut Problems,
        available: &HashMap<i64, i128>,
    ) -> Result<()> {
        let lots: Vec<LotRow> = sqlx::query_as(
            "SELECT l.id AS lot, l.account_id AS account, l.transfer_id AS transfer, l.credits, \
               l.remaining, COALESCE(c.consumed, 0) AS consumed, t.credit_account_id AS credited, \
               t.amount, t.state \
             FROM lots l JOIN transfers t ON t.id = l.transfer_id \
             LEFT JOIN (SELECT lot_id, CAST(SUM(amount) AS BIGINT) AS consumed \
                        FROM lot_consumptions GROUP BY lot_id) c ON c.lot_id = l.id \
             ORDER BY l.id",
        )
        .fetch_all(&mut *conn)
        .await?;
        report.lots = lots.len();
        let mut remaining_by_wallet: HashMap<i64, i128> = HashMap::new();
        for LotRow {
            lot,
            account,
            transfer,
            credits,
            remaining,
            consumed,
            credited,
            amount,
            state,
        } in lots
        {
            *remaining_by_wallet.entry(account).or_default() += i128::from(remaining);
            if credits - remaining != consumed {
                problems.push(
                    "lot consumption disagrees with spending",
                    format!(
                        "lot {lot}: {} of {credits} credits used, but spending drew {consumed}",
                        credits - remaining
                    ),
                );
            }
            if credited != account || amount != credits || state != "posted" {
                problems.push(
                    "lot does not match its transfer",
                    format!(
                        "lot {lot} ({credits} credits into account {account}) does not match \
                         transfer {transfer} ({state}, {amount} credits into account {credited})"
                    ),
                );
            }
        }
        for (wallet, wallet_available) in available {
            let in_lots = remaining_by_wallet.remove(wallet).unwrap_or_default();
            if in_lots != *wallet_available {
                problems.push(
                    "lots disagree with the wallet balance",
                    format!(
                        "wallet {wallet}: {wallet_available} credits available but {in_lots} \
                         unused in its lots"
                    ),
                );
            }
        }
        for wallet in remaining_by_wallet.keys() {
            problems.push(
                "lot in a non-wallet account",
                format!("account {wallet} has lots but is not a wallet"),
            );
        }

        let spending: Vec<SpendingRow> = sqlx::query_as(
            "SELECT t.id AS transfer, t.amount, t.state, COALESCE(c.drawn, 0) AS drawn \
             FROM transfers t JOIN accounts a ON a.id = t.debit_account_id \
             LEFT JOIN (SELECT transfer_id, CAST(SUM(amount) AS BIGINT) AS drawn \
                        FROM lot_consumptions GROUP BY transfer_id) c ON c.transfer_id = t.id \
             WHERE a.kind = 'wallet' ORDER BY t.id",
        )
        .fetch_all(&mut *conn)
        .await?;
        for SpendingRow {
            transfer,
            amount,
            state,
            drawn,
        } in spending
        {
            let expected = if state == "voided" { 0 } else { amount };
            if drawn != expected {
                problems.push(
                    "lot consumption disagrees with spending",
                    format!(
                        "transfer {transfer} ({state}, {amount} credits from a wallet) drew \
                         {drawn} credits from lots, expected {expected}"
                    ),
                );
            }
        }
        Ok(())
    }
}

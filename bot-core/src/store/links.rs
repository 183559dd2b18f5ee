//! Link codes' SQL: a code made once, used once, and the join that moves one wallet's lots into
//! the other in one transaction.

use crate::UserError;
use crate::links::*;
use crate::{
    AccountId, Backend, Credits, Error, Identity, Result, Store, UserId,
    ledger::{Phase, TransferKind, TransferRequest},
    store::{Atomic, now_millis},
};
use rand::Rng as _;

impl Store {
    /// A fresh one-time code for `user`, replacing any unused one.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn create_link_code(&self, user: UserId) -> Result<LinkCode> {
        let code: String = {
            let mut rng = rand::rng();
            (0..8)
                .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
                .collect()
        };
        let now = now_millis();
        let expires_at = now + CODE_LIFETIME_MS;
        let stored = code.clone();
        self.write(Atomic::Transaction, move |conn| {
            Box::pin(async move {
                sqlx::query("DELETE FROM link_codes WHERE user_id = $1 AND used_at IS NULL")
                    .bind(user.get())
                    .execute(&mut *conn)
                    .await?;
                sqlx::query(
                    "INSERT INTO link_codes (code, user_id, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(stored)
                .bind(user.get())
                .bind(now)
                .bind(expires_at)
                .execute(conn)
                .await?;
                Ok(())
            })
        })
        .await?;
        Ok(LinkCode { code, expires_at })
    }

    /// Joins `user` (who typed `code`) to the person who made the code: `user`'s identities,
    /// history and balance move to them, in one transaction. The code works once.
    ///
    /// # Errors
    ///
    /// [`UserError::LinkRefused`] with the reason (wrong, used or expired code, one's own code,
    /// credits on hold or jobs still open); [`UserError::Frozen`]; [`Error::Internal`].
    pub async fn link(&self, user: UserId, wallet: AccountId, code: &str) -> Result<Linked> {
        let _changing = self.changing_people(None);
        let code: String = code
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let since = now_millis() - ATTEMPTS_WINDOW_MS;
        let wrong: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM link_attempts WHERE user_id = $1 AND created_at >= $2",
        )
        .bind(user.get())
        .bind(since)
        .fetch_one(&mut *self.reader().await?)
        .await?;
        if wrong >= MAX_WRONG_ATTEMPTS {
            return Err(Error::User(UserError::LinkRefused(
                "too many wrong codes; try again in an hour".into(),
            )));
        }
        let backend = self.backend();
        let joined = self
            .retrying(|| {
                let code = code.clone();
                self.write(Atomic::Transaction, move |conn| {
                    Box::pin(join(conn, backend, user, wallet, code))
                })
            })
            .await;
        // A code that does not exist counts against the person who typed it.
        if let Err(Error::User(UserError::LinkRefused(why))) = &joined
            && why == WRONG_CODE
        {
            self.write(Atomic::Statement, move |conn| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO link_attempts (user_id, created_at) VALUES ($1, $2)")
                        .bind(user.get())
                        .bind(now_millis())
                        .execute(conn)
                        .await?;
                    Ok(())
                })
            })
            .await?;
        }
        joined
    }

    /// Detaches `identity` from `user` into a person of its own with an empty wallet; the
    /// balance and history stay. `Ok(false)` when it is not theirs or is their last identity.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn unlink(&self, user: UserId, identity: &Identity) -> Result<bool> {
        let _changing = self.changing_people(None);
        let identities = self.identities(user).await?;
        if identities.len() < 2 || !identities.contains(identity) {
            return Ok(false);
        }
        let identity = identity.clone();
        self.write(Atomic::Transaction, move |conn| {
            Box::pin(async move {
                let now = now_millis();
                let fresh: i64 =
                    sqlx::query_scalar("INSERT INTO users (created_at) VALUES ($1) RETURNING id")
                        .bind(now)
                        .fetch_one(&mut *conn)
                        .await?;
                sqlx::query("INSERT INTO accounts (kind, user_id) VALUES ('wallet', $1)")
                    .bind(fresh)
                    .execute(&mut *conn)
                    .await?;
                let moved = sqlx::query(
                    "UPDATE identities SET user_id = $1 \
                     WHERE platform = $2 AND external_id = $3 AND user_id = $4",
                )
                .bind(fresh)
                .bind(identity.platform().as_str())
                .bind(identity.external_id())
                .bind(user.get())
                .execute(conn)
                .await?;
                if moved.rows_affected() != 1 {
                    return Err(Error::Internal(anyhow::anyhow!(
                        "the identity moved while it was being unlinked"
                    )));
                }
                Ok(true)
            })
        })
        .await
    }
}

const WRONG_CODE: &str = "that code is wrong";

async fn join(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    user: UserId,
    wallet: AccountId,
    code: String,
) -> Result<Linked> {
    let refuse = |why: &str| Err(Error::User(UserError::LinkRefused(why.to_string())));
    let now = now_millis();
    let owner: Option<(i64, i64, Option<i64>)> =
        sqlx::query_as("SELECT user_id, expires_at, used_at FROM link_codes WHERE code = $1")
            .bind(&code)
            .fetch_optional(&mut *conn)
            .await?;
    let target = match owner {
        None => return refuse(WRONG_CODE),
        Some((_, _, Some(_))) => return refuse("that code was already used"),
        Some((_, expires_at, None)) if expires_at < now => {
            return refuse("that code has expired; make a new one with /link");
        }
        Some((owner, _, None)) if owner == user.get() => {
            return refuse("that is your own code: send it from your other account");
        }
        Some((owner, _, None)) => UserId::from_db(owner),
    };
    let frozen: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM users WHERE id IN ($1, $2) AND frozen_at IS NOT NULL",
    )
    .bind(user.get())
    .bind(target.get())
    .fetch_one(&mut *conn)
    .await?;
    if frozen > 0 {
        return Err(Error::User(UserError::Frozen));
    }
    let target_wallet: i64 = sqlx::query_scalar("SELECT id FROM accounts WHERE user_id = $1")
        .bind(target.get())
        .fetch_one(&mut *conn)
        .await?;
    let target_wallet = AccountId::from_db(target_wallet);
    if backend == Backend::Postgres {
        // Both wallets, in id order, so that two joins cannot wait on each other.
        sqlx::query("SELECT id FROM accounts WHERE id IN ($1, $2) ORDER BY id FOR NO KEY UPDATE")
            .bind(wallet.get())
            .bind(target_wallet.get())
            .fetch_all(&mut *conn)
            .await?;
    }
    let open: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs WHERE user_id = $1 AND state IN ('queued', 'running')",
    )
    .bind(user.get())
    .fetch_one(&mut *conn)
    .await?;
    let (posted, held): (i64, i64) = sqlx::query_as(
        "SELECT credits_posted - debits_posted, debits_pending FROM accounts WHERE id = $1",
    )
    .bind(wallet.get())
    .fetch_one(&mut *conn)
    .await?;
    if open > 0 || held > 0 {
        return refuse("you have jobs or a refund still under way; link once they are done");
    }
    // Lot by lot, so that each purchase keeps its unused credits as a lot of its own in the
    // joined wallet (still refundable as that purchase), each transfer keyed by code and lot.
    let lots: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT id, remaining, transfer_id FROM lots \
         WHERE account_id = $1 AND remaining > 0 ORDER BY id",
    )
    .bind(wallet.get())
    .fetch_all(&mut *conn)
    .await?;
    let mut moved = Credits::ZERO;
    for (lot, remaining, bought_with) in lots {
        let inserted = crate::store::ledger::insert_transfer_from_lot(
            conn,
            TransferRequest {
                key: format!("link:{code}:{lot}"),
                debit: wallet,
                credit: target_wallet,
                amount: Credits::from_db(remaining)?,
                kind: TransferKind::Link,
                memo: Some("wallets joined with a link code".into()),
            },
            Phase::Posted,
            Some(crate::LotId::from_db(lot)),
        )
        .await?;
        let crate::store::ledger::Inserted::Created(transfer) = inserted else {
            return Err(Error::Internal(anyhow::anyhow!(
                "the link transfer for code {code}, lot {lot} already existed"
            )));
        };
        sqlx::query("UPDATE purchases SET transfer_id = $1 WHERE transfer_id = $2")
            .bind(transfer.id.get())
            .bind(bought_with)
            .execute(&mut *conn)
            .await?;
        moved = moved.saturating_add(Credits::from_db(remaining)?);
    }
    if moved != Credits::from_db(posted)? {
        return Err(Error::Internal(anyhow::anyhow!(
            "the joining wallet's lots do not add up to its balance"
        )));
    }
    for table in ["identities", "jobs", "purchases", "quotes"] {
        let sql = format!("UPDATE {table} SET user_id = $1 WHERE user_id = $2");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(target.get())
            .bind(user.get())
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query("UPDATE users SET merged_into = $1 WHERE id = $2")
        .bind(target.get())
        .bind(user.get())
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE link_codes SET used_at = $2 WHERE code = $1")
        .bind(&code)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(Linked {
        user: target,
        moved,
    })
}

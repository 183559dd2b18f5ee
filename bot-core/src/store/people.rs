//! People's SQL: first contact creates a person, their wallet and identity at once; terms,
//! privacy, bans and /forget.

use crate::Fault;
use crate::people::*;
use crate::{
    AccountId, Credits, Error, Identity, Result, Store, UserId,
    ledger::{Phase, SystemAccount, TransferKind, TransferRequest},
    store::{
        Atomic,
        ledger::{Inserted, insert_transfer},
        now_millis,
    },
};
use sqlx::AnyConnection;

use super::rows::named_row;

const USER_SELECT: &str = "SELECT u.id, a.id AS wallet_id, u.created_at, u.terms_version, \
                           u.terms_accepted_at, u.privacy_opt_out, u.frozen_at, u.banned_at \
                           FROM users u JOIN accounts a ON a.user_id = u.id";

named_row! {
    /// A person as [`USER_SELECT`] reads them.
    struct UserRow {
        id: i64,
        wallet_id: i64,
        created_at: i64,
        terms_version: Option<String>,
        terms_accepted_at: Option<i64>,
        privacy_opt_out: Option<i64>,
        frozen_at: Option<i64>,
        banned_at: Option<i64>,
    }
}

fn user_from_row(row: UserRow) -> User {
    User {
        id: UserId::from_db(row.id),
        wallet: AccountId::from_db(row.wallet_id),
        created_at: row.created_at,
        terms: row
            .terms_version
            .zip(row.terms_accepted_at)
            .map(|(version, accepted_at)| TermsAcceptance {
                version,
                accepted_at,
            }),
        privacy_opt_out: row.privacy_opt_out.map(|v| v == 1),
        frozen_at: row.frozen_at,
        banned_at: row.banned_at,
    }
}

impl Store {
    /// The person behind `identity`, created with an empty wallet on first contact.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn contact(&self, identity: &Identity) -> Result<Contact> {
        self.contact_welcomed(identity, Credits::ZERO).await
    }

    /// As [`Store::contact`], with `welcome` credits granted to a new person in the same
    /// transaction that creates them: no crash can lose the grant, and no link can join the
    /// person to another wallet before it lands (it would land in the wallet left behind).
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn contact_welcomed(&self, identity: &Identity, welcome: Credits) -> Result<Contact> {
        self.contact_accepting(identity, welcome, None).await
    }

    /// As [`Store::contact_welcomed`], with a new person's acceptance of the terms in force
    /// (`terms`, §2.4) recorded as they are created: their next update finds them remembered
    /// as they are, not changed a moment after (which would make every instance read them
    /// again).
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn contact_accepting(
        &self,
        identity: &Identity,
        welcome: Credits,
        terms: Option<&str>,
    ) -> Result<Contact> {
        if let Some(user) = self.find_user(identity).await? {
            return Ok(Contact {
                user,
                is_new: false,
            });
        }
        let generation = self.inner.people.generation();
        match self
            .retrying(|| self.create_user(identity, welcome, terms))
            .await
        {
            Ok(user) => {
                self.inner.people.remember(identity, &user, generation);
                Ok(Contact { user, is_new: true })
            }
            // Someone else created this person between our look-up and our insert.
            Err(error) if error.fault() == Some(&Fault::IdentityTaken) => {
                let user = self.find_user(identity).await?.ok_or_else(|| {
                    anyhow::anyhow!("identity {identity} vanished right after it was created")
                })?;
                Ok(Contact {
                    user,
                    is_new: false,
                })
            }
            Err(error) => Err(error),
        }
    }

    /// The person behind `identity`, if they have been here before.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn find_user(&self, identity: &Identity) -> Result<Option<User>> {
        let people = &self.inner.people;
        if let Some(user) = people.get(identity) {
            return Ok(Some(user));
        }
        let generation = people.generation();
        let sql = format!(
            "{USER_SELECT} JOIN identities i ON i.user_id = u.id \
             WHERE i.platform = $1 AND i.external_id = $2"
        );
        let row: Option<UserRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(identity.platform().as_str())
            .bind(identity.external_id())
            .fetch_optional(&mut *self.reader().await?)
            .await?;
        let user = row.map(user_from_row);
        if let Some(user) = &user {
            people.remember(identity, user, generation);
        }
        Ok(user)
    }

    /// A person by id.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when there is no such person or the database fails.
    pub async fn user(&self, id: UserId) -> Result<User> {
        let sql = format!("{USER_SELECT} WHERE u.id = $1");
        let row: Option<UserRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id.get())
            .fetch_optional(&mut *self.reader().await?)
            .await?;
        row.map(user_from_row)
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("person {id} does not exist")))
    }

    /// Every platform identity linked to a person, oldest first.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails or holds a malformed identity.
    pub async fn identities(&self, user: UserId) -> Result<Vec<Identity>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT platform, external_id FROM identities WHERE user_id = $1 \
             ORDER BY created_at, platform",
        )
        .bind(user.get())
        .fetch_all(&mut *self.reader().await?)
        .await?;
        rows.into_iter()
            .map(|(platform, id)| Identity::new(platform.parse()?, id))
            .collect()
    }

    /// Records that a person accepted a terms version now.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn accept_terms(&self, user: UserId, version: &str) -> Result<()> {
        let _changing = self.changing_people(Some(user));
        let (now, version) = (now_millis(), version.to_string());
        self.retrying(|| {
            let version = version.clone();
            self.write(Atomic::Statement, move |conn| {
                Box::pin(async move {
                    sqlx::query(
                        "UPDATE users SET terms_version = $2, terms_accepted_at = $3 WHERE id = $1",
                    )
                    .bind(user.get())
                    .bind(version)
                    .bind(now)
                    .execute(conn)
                    .await?;
                    Ok(())
                })
            })
        })
        .await
    }

    /// Sets a person's opt-out of anonymised reuse of their outputs (terms 5.4).
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn set_privacy_opt_out(&self, user: UserId, opt_out: bool) -> Result<()> {
        let _changing = self.changing_people(Some(user));
        self.retrying(|| {
            self.write(Atomic::Statement, move |conn| {
                Box::pin(async move {
                    sqlx::query("UPDATE users SET privacy_opt_out = $2 WHERE id = $1")
                        .bind(user.get())
                        .bind(i64::from(opt_out))
                        .execute(conn)
                        .await?;
                    Ok(())
                })
            })
        })
        .await
    }

    /// Deletes what a person asked for (terms 6.2): the prompts and requests of their ended
    /// jobs (the rows stay, as the ledger's holds point at them), open quotes, delivered notices
    /// and link codes. Payments and the ledger are kept as the law requires; they hold no
    /// prompts. Returns how many jobs were scrubbed. Open jobs are left alone (the caller
    /// refuses while there are any).
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn forget(&self, user: UserId) -> Result<u64> {
        let _changing = self.changing_people(Some(user));
        self.retrying(|| {
            self.write(Atomic::Transaction, move |conn| {
                Box::pin(async move {
                    let jobs = sqlx::query(
                        "UPDATE jobs SET payload = $2, status_message = NULL, failure = NULL \
                         WHERE user_id = $1 AND state IN ('succeeded', 'failed', 'cancelled') \
                           AND payload <> $2",
                    )
                    .bind(user.get())
                    .bind(FORGOTTEN)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                    sqlx::query("DELETE FROM quotes WHERE user_id = $1")
                        .bind(user.get())
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("DELETE FROM link_codes WHERE user_id = $1")
                        .bind(user.get())
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query(
                        "DELETE FROM notices WHERE sent_at IS NOT NULL AND recipient IN \
                         (SELECT platform || ':' || external_id FROM identities WHERE user_id = $1)",
                    )
                    .bind(user.get())
                    .execute(&mut *conn)
                    .await?;
                    Ok(jobs)
                })
            })
        })
        .await
    }

    /// Counts one more request of this person refused by the content policy.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn count_policy_refusal(&self, user: UserId) -> Result<()> {
        self.write(Atomic::Statement, move |conn| {
            Box::pin(async move {
                sqlx::query("UPDATE users SET policy_refusals = policy_refusals + 1 WHERE id = $1")
                    .bind(user.get())
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    /// Creates a person, their wallet and their first identity; [`Fault::IdentityTaken`] when
    /// the identity already belongs to someone (nothing is written then).
    async fn create_user(
        &self,
        identity: &Identity,
        welcome: Credits,
        terms: Option<&str>,
    ) -> Result<User> {
        let identity = identity.clone();
        let terms = terms.map(str::to_string);
        let grants = self.account(SystemAccount::Grants);
        self.write(Atomic::Transaction, move |conn| {
            Box::pin(insert_user(conn, identity, welcome, terms, grants))
        })
        .await
    }
}

async fn insert_user(
    conn: &mut AnyConnection,
    identity: Identity,
    welcome: Credits,
    terms: Option<String>,
    grants: AccountId,
) -> Result<User> {
    let now = now_millis();
    let user: i64 = sqlx::query_scalar(
        "INSERT INTO users (created_at, terms_version, terms_accepted_at) \
         VALUES ($1, $2, CASE WHEN $2 IS NULL THEN NULL ELSE $1 END) RETURNING id",
    )
    .bind(now)
    .bind(terms.as_deref())
    .fetch_one(&mut *conn)
    .await?;
    let linked: Option<i64> = sqlx::query_scalar(
        "INSERT INTO identities (platform, external_id, user_id, created_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (platform, external_id) DO NOTHING \
         RETURNING user_id",
    )
    .bind(identity.platform().as_str())
    .bind(identity.external_id())
    .bind(user)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    if linked.is_none() {
        // Someone else took the identity meanwhile. Returning a refusal undoes this
        // operation's transaction (or savepoint), person row included.
        return Err(Error::from(Fault::IdentityTaken));
    }
    let wallet: i64 = sqlx::query_scalar(
        "INSERT INTO accounts (kind, user_id) VALUES ('wallet', $1) RETURNING id",
    )
    .bind(user)
    .fetch_one(&mut *conn)
    .await?;
    let wallet = AccountId::from_db(wallet);
    if !welcome.is_zero() {
        let grant = TransferRequest {
            key: format!("welcome:{user}"),
            debit: grants,
            credit: wallet,
            amount: welcome,
            kind: TransferKind::Grant,
            memo: Some("welcome credits".into()),
        };
        let inserted = insert_transfer(conn, grant, Phase::Posted).await?;
        if !matches!(inserted, Inserted::Created(_)) {
            return Err(Error::Internal(anyhow::anyhow!(
                "the welcome credits of new person {user} were refused"
            )));
        }
    }
    Ok(User {
        id: UserId::from_db(user),
        wallet,
        created_at: now,
        terms: terms.map(|version| TermsAcceptance {
            version,
            accepted_at: now,
        }),
        privacy_opt_out: None,
        frozen_at: None,
        banned_at: None,
    })
}

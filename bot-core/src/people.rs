//! People: one wallet each, reached through one or more platform identities, created on first
//! contact. Also where terms acceptance and the privacy opt-out are kept.

use crate::{AccountId, Error, Identity, Result, Store, UserId, store::now_millis};

/// A person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    /// Their one wallet account.
    pub wallet: AccountId,
    /// Unix milliseconds.
    pub created_at: i64,
    /// The terms version they last accepted, if any (terms 2.4, 9.2).
    pub terms: Option<TermsAcceptance>,
    /// `Some(true)`: opted out of anonymised reuse of outputs (terms 5.4); `None`: the default.
    pub privacy_opt_out: Option<bool>,
}

/// Which terms a person accepted, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermsAcceptance {
    pub version: String,
    /// Unix milliseconds.
    pub accepted_at: i64,
}

/// The person behind an identity, and whether this was their first contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub user: User,
    pub is_new: bool,
}

const USER_SELECT: &str = "SELECT u.id, a.id, u.created_at, u.terms_version, u.terms_accepted_at, \
                           u.privacy_opt_out FROM users u JOIN accounts a ON a.user_id = u.id";

type UserRow = (i64, i64, i64, Option<String>, Option<i64>, Option<i64>);

fn user_from_row((id, wallet, created_at, version, accepted_at, opt_out): UserRow) -> User {
    User {
        id: UserId::from_db(id),
        wallet: AccountId::from_db(wallet),
        created_at,
        terms: version
            .zip(accepted_at)
            .map(|(version, accepted_at)| TermsAcceptance {
                version,
                accepted_at,
            }),
        privacy_opt_out: opt_out.map(|v| v == 1),
    }
}

impl Store {
    /// The person behind `identity`, created with an empty wallet on first contact.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn contact(&self, identity: &Identity) -> Result<Contact> {
        if let Some(user) = self.find_user(identity).await? {
            return Ok(Contact {
                user,
                is_new: false,
            });
        }
        let created = self.retrying(|| self.create_user(identity)).await?;
        match created {
            Some(user) => Ok(Contact { user, is_new: true }),
            // Someone else created this person between our look-up and our insert.
            None => {
                let user = self.find_user(identity).await?.ok_or_else(|| {
                    anyhow::anyhow!("identity {identity} vanished right after it was created")
                })?;
                Ok(Contact {
                    user,
                    is_new: false,
                })
            }
        }
    }

    /// The person behind `identity`, if they have been here before.
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn find_user(&self, identity: &Identity) -> Result<Option<User>> {
        let sql = format!(
            "{USER_SELECT} JOIN identities i ON i.user_id = u.id \
             WHERE i.platform = $1 AND i.external_id = $2"
        );
        let row: Option<UserRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(identity.platform().as_str())
            .bind(identity.external_id())
            .fetch_optional(&self.inner.read)
            .await?;
        Ok(row.map(user_from_row))
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
            .fetch_optional(&self.inner.read)
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
        .fetch_all(&self.inner.read)
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
        let now = now_millis();
        self.retrying(|| async {
            sqlx::query(
                "UPDATE users SET terms_version = $2, terms_accepted_at = $3 WHERE id = $1",
            )
            .bind(user.get())
            .bind(version)
            .bind(now)
            .execute(&self.inner.write)
            .await?;
            Ok(())
        })
        .await
    }

    /// Sets a person's opt-out of anonymised reuse of their outputs (terms 5.4).
    ///
    /// # Errors
    ///
    /// [`Error::Internal`] when the database fails.
    pub async fn set_privacy_opt_out(&self, user: UserId, opt_out: bool) -> Result<()> {
        self.retrying(|| async {
            sqlx::query("UPDATE users SET privacy_opt_out = $2 WHERE id = $1")
                .bind(user.get())
                .bind(i64::from(opt_out))
                .execute(&self.inner.write)
                .await?;
            Ok(())
        })
        .await
    }

    /// Creates a person, their wallet and their first identity; `None` when the identity
    /// already belongs to someone (nothing is written then).
    async fn create_user(&self, identity: &Identity) -> Result<Option<User>> {
        let now = now_millis();
        let mut tx = self.begin().await?;
        let user: i64 = sqlx::query_scalar("INSERT INTO users (created_at) VALUES ($1) RETURNING id")
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        let wallet: i64 =
            sqlx::query_scalar("INSERT INTO accounts (kind, user_id) VALUES ('wallet', $1) RETURNING id")
                .bind(user)
                .fetch_one(&mut *tx)
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
        .fetch_optional(&mut *tx)
        .await?;
        if linked.is_none() {
            tx.rollback().await?;
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(User {
            id: UserId::from_db(user),
            wallet: AccountId::from_db(wallet),
            created_at: now,
            terms: None,
            privacy_opt_out: None,
        }))
    }
}

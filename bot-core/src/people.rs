//! People: one wallet each, reached through one or more platform identities, created on first
//! contact. Also where terms acceptance and the privacy opt-out are kept.

use crate::{AccountId, UserId};

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
    /// A payment dispute froze their wallet (unix milliseconds): no spending, buying or refunds.
    pub frozen_at: Option<i64>,
    /// An admin banned them (unix milliseconds): they get a short notice and nothing runs.
    pub banned_at: Option<i64>,
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

/// What a job's request becomes when its owner asks to forget it (terms 6.2).
pub const FORGOTTEN: &str = "{}";

#[cfg(test)]
mod tests {
    use crate::{Identity, Store, on_every_backend, store::testing::TestDb};

    on_every_backend!(
        first_contact_creates_a_person_with_an_empty_wallet,
        the_same_identity_always_finds_the_same_person,
        terms_acceptance_and_the_privacy_choice_are_kept,
        racing_first_contacts_create_one_person,
        welcome_credits_arrive_with_the_person_once_however_many_race,
    );

    fn identity(text: &str) -> Identity {
        text.parse().expect("identity")
    }

    /// The welcome grant is written with the person: there is no moment (a crash, a link
    /// racing the first message on another instance) when the person exists without it, and
    /// eight first contacts at once grant it once.
    async fn welcome_credits_arrive_with_the_person_once_however_many_race(store: Store) {
        let ten = crate::Credits::new(10);
        let mut racers = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let store = store.clone();
            racers.spawn(async move {
                store
                    .contact_welcomed(&identity("telegram:4242"), ten)
                    .await
                    .expect("contact")
            });
        }
        let contacts: Vec<_> = racers.join_all().await;
        assert_eq!(contacts.iter().filter(|c| c.is_new).count(), 1);
        let wallet = contacts[0].user.wallet;
        assert!(contacts.iter().all(|c| c.user.wallet == wallet));
        // Read in the same breath as the person first appears: the grant is already there.
        let fresh = store
            .contact_welcomed(&identity("discord:99"), ten)
            .await
            .expect("contact");
        let balance = store
            .account_balance(fresh.user.wallet)
            .await
            .expect("balance");
        assert_eq!(balance.available(), ten);
        let balance = store.account_balance(wallet).await.expect("balance");
        assert_eq!(balance.available(), ten, "granted once");
        assert!(
            store
                .transfer_by_key(&format!("welcome:{}", fresh.user.id))
                .await
                .expect("read")
                .is_some()
        );
    }

    async fn first_contact_creates_a_person_with_an_empty_wallet(store: Store) {
        let contact = store
            .contact(&identity("telegram:42"))
            .await
            .expect("contact");
        assert!(contact.is_new);
        assert_eq!(contact.user.terms, None);
        assert_eq!(contact.user.privacy_opt_out, None);
        let balance = store
            .account_balance(contact.user.wallet)
            .await
            .expect("balance");
        assert_eq!(balance.available(), crate::Credits::ZERO);
        assert_eq!(
            store.identities(contact.user.id).await.expect("identities"),
            vec![identity("telegram:42")]
        );
    }

    async fn the_same_identity_always_finds_the_same_person(store: Store) {
        let first = store
            .contact(&identity("discord:80351110224678912"))
            .await
            .expect("first");
        let again = store
            .contact(&identity("discord:80351110224678912"))
            .await
            .expect("again");
        assert!(!again.is_new);
        assert_eq!(first.user, again.user);
        let other = store
            .contact(&identity("telegram:80351110224678912"))
            .await
            .expect("other");
        assert_ne!(
            other.user.id, first.user.id,
            "the same number on another platform is someone else"
        );
        assert_ne!(other.user.wallet, first.user.wallet);
        assert_eq!(
            store
                .find_user(&identity("console:nobody"))
                .await
                .expect("lookup"),
            None
        );
    }

    async fn terms_acceptance_and_the_privacy_choice_are_kept(store: Store) {
        let user = store
            .contact(&identity("console:alice"))
            .await
            .expect("contact")
            .user;
        store
            .accept_terms(user.id, "2026-04-06")
            .await
            .expect("accept");
        store
            .set_privacy_opt_out(user.id, true)
            .await
            .expect("opt out");
        let user = store.user(user.id).await.expect("user");
        assert_eq!(
            user.terms.as_ref().map(|t| t.version.as_str()),
            Some("2026-04-06")
        );
        assert!(user.terms.is_some_and(|t| t.accepted_at > 0));
        assert_eq!(user.privacy_opt_out, Some(true));
        store
            .set_privacy_opt_out(user.id, false)
            .await
            .expect("opt in");
        assert_eq!(
            store.user(user.id).await.expect("user").privacy_opt_out,
            Some(false)
        );
    }

    async fn racing_first_contacts_create_one_person(store: Store) {
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.contact(&identity("telegram:7")).await })
            })
            .collect();
        let mut people = Vec::new();
        for task in tasks {
            people.push(task.await.expect("task").expect("contact"));
        }
        assert_eq!(people.iter().filter(|c| c.is_new).count(), 1);
        assert!(people.iter().all(|c| c.user == people[0].user));
        let orphans: i64 = store_count(&store, "SELECT COUNT(*) FROM users").await;
        assert_eq!(orphans, 1, "a lost race leaves no person behind");
        let wallets: i64 = store_count(
            &store,
            "SELECT COUNT(*) FROM accounts WHERE kind = 'wallet'",
        )
        .await;
        assert_eq!(wallets, 1);
    }

    async fn store_count(store: &Store, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&mut *store.reader().await.expect("reader"))
            .await
            .expect("count")
    }

    #[tokio::test]
    async fn a_closed_store_refuses_writes_with_an_error() {
        let db = TestDb::sqlite().await;
        db.store().close().await;
        assert!(db.store().contact(&identity("console:late")).await.is_err());
    }
}

//! Linking stories, each on SQLite and PostgreSQL, each ending with a clean audit.

use super::*;
use crate::UserError;
use crate::{
    Error, Identity, Result, Store,
    ledger::{TransferKind, TransferRequest},
};
use crate::{
    on_every_backend,
    people::User,
    store::{execute_unchecked, testing::available},
};

async fn someone(store: &Store, identity: &str, credits: u64) -> User {
    let identity: Identity = identity.parse().expect("identity");
    let user = store.contact(&identity).await.expect("contact").user;
    if credits > 0 {
        store
            .transfer(&TransferRequest {
                key: format!("grant:{identity}"),
                debit: store.account(crate::ledger::SystemAccount::Grants),
                credit: user.wallet,
                amount: Credits::new(credits),
                kind: TransferKind::Grant,
                memo: None,
            })
            .await
            .expect("grant");
    }
    user
}

fn refused(result: Result<Linked>) -> String {
    match result {
        Err(Error::User(UserError::LinkRefused(why))) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn a_code_joins_two_identities_into_one_wallet_once(store: Store) {
    let ann_tg = someone(&store, "telegram:1", 30).await;
    let ann_dc = someone(&store, "discord:2", 20).await;
    let code = store.create_link_code(ann_tg.id).await.expect("code");
    assert_eq!(code.code.len(), 8);
    // Its own code, a wrong code: refused, nothing moves.
    assert!(refused(store.link(ann_tg.id, ann_tg.wallet, &code.code).await).contains("own code"));
    assert!(refused(store.link(ann_dc.id, ann_dc.wallet, "WRONG999").await).contains("wrong"));
    // Typed in lower case with a space, as people do.
    let typed = format!("{} {}", &code.code[..4], &code.code[4..]).to_lowercase();
    let linked = store
        .link(ann_dc.id, ann_dc.wallet, &typed)
        .await
        .expect("linked");
    assert_eq!(
        linked,
        Linked {
            user: ann_tg.id,
            moved: Credits::new(20)
        }
    );
    assert_eq!(available(&store, &ann_tg).await, 50);
    assert_eq!(available(&store, &ann_dc).await, 0);
    // Both identities are now one person.
    let discord: Identity = "discord:2".parse().expect("identity");
    let now = store.contact(&discord).await.expect("contact").user;
    assert_eq!(now.id, ann_tg.id);
    assert_eq!(store.identities(ann_tg.id).await.expect("list").len(), 2);
    // The code worked once.
    let bob = someone(&store, "discord:3", 0).await;
    assert!(refused(store.link(bob.id, bob.wallet, &code.code).await).contains("already used"));
    // Spending from either platform draws on the one wallet.
    let lots = store.lots(ann_tg.wallet).await.expect("lots");
    assert_eq!(
        lots.len(),
        2,
        "Ann's grant and the lot that came over: {lots:?}"
    );
    assert_eq!(lots[1].remaining, Credits::new(20));

    // Unlinking gives the identity a fresh, empty wallet; the balance stays.
    assert!(store.unlink(ann_tg.id, &discord).await.expect("unlinked"));
    let alone = store.contact(&discord).await.expect("contact").user;
    assert_ne!(alone.id, ann_tg.id);
    assert_eq!(available(&store, &alone).await, 0);
    assert_eq!(available(&store, &ann_tg).await, 50);
    let last: Identity = "telegram:1".parse().expect("identity");
    assert!(
        !store
            .unlink(ann_tg.id, &last)
            .await
            .expect("the last stays")
    );
}

async fn expired_codes_frozen_wallets_and_held_credits_are_refused(store: Store) {
    let cy = someone(&store, "telegram:10", 10).await;
    let di = someone(&store, "discord:11", 10).await;
    let code = store.create_link_code(cy.id).await.expect("code");
    execute_unchecked(&store, "UPDATE link_codes SET expires_at = $1", 0)
        .await
        .expect("age the code");
    assert!(refused(store.link(di.id, di.wallet, &code.code).await).contains("expired"));

    let code = store.create_link_code(cy.id).await.expect("code");
    store
        .hold(&TransferRequest {
            key: "job:held".into(),
            debit: di.wallet,
            credit: store.account(crate::ledger::SystemAccount::GenerationRevenue),
            amount: Credits::new(3),
            kind: TransferKind::Generation,
            memo: None,
        })
        .await
        .expect("hold");
    assert!(refused(store.link(di.id, di.wallet, &code.code).await).contains("under way"));
    let held = store
        .transfer_by_key("job:held")
        .await
        .expect("read")
        .expect("there");
    store.void(held.id).await.expect("void");

    execute_unchecked(
        &store,
        "UPDATE users SET frozen_at = 1 WHERE id = $1",
        cy.id.get(),
    )
    .await
    .expect("freeze");
    let frozen = store.link(di.id, di.wallet, &code.code).await;
    assert!(
        matches!(frozen, Err(Error::User(UserError::Frozen))),
        "{frozen:?}"
    );
    assert_eq!(available(&store, &di).await, 10);
    assert_eq!(available(&store, &cy).await, 10);
}

async fn a_purchase_stays_refundable_after_its_wallet_is_joined(store: Store) {
    use crate::payments::{NewPurchase, PaymentEvent, Rail};
    let ann = someone(&store, "telegram:20", 5).await;
    let bob = someone(&store, "discord:21", 0).await;
    let purchase = store
        .create_purchase(&NewPurchase {
            user: bob.id,
            payer: "discord:21".into(),
            pack: "small".into(),
            credits: Credits::new(150),
            rail: Rail::Stripe,
            amount: 500,
            currency: "usd".into(),
            chat: crate::service::ChatRef {
                platform: crate::Platform::Discord,
                id: "1".into(),
                kind: crate::service::ChatKind::Private,
            },
            fee_estimate: 44,
        })
        .await
        .expect("purchase");
    store
        .apply_stripe_event(
            "evt_paid",
            "checkout.session.completed",
            Some(PaymentEvent::Paid {
                purchase: purchase.id,
                session: "cs_1".into(),
                payment_intent: Some("pi_1".into()),
            }),
        )
        .await
        .expect("paid");
    let code = store.create_link_code(ann.id).await.expect("code");
    store
        .link(bob.id, bob.wallet, &code.code)
        .await
        .expect("linked");
    assert_eq!(available(&store, &ann).await, 155);
    let refundable = store.refundable(ann.id, 0).await.expect("list");
    assert_eq!(refundable.len(), 1, "{refundable:?}");
    assert_eq!(refundable[0].purchase.id, purchase.id);
    assert_eq!(refundable[0].unused, Credits::new(150));
    let (refund, _) = store
        .begin_refund(
            ann.id,
            ann.wallet,
            purchase.id,
            0,
            crate::payments::Approval::Auto,
        )
        .await
        .expect("refund starts");
    assert!(store.finish_refund(refund.id, "re_1").await.expect("done"));
    assert_eq!(
        available(&store, &ann).await,
        5,
        "only the purchase's credits left"
    );
}

/// Codes cannot be guessed: after five wrong ones in an hour even the right code is refused,
/// and the guesser's and the code-maker's wallets stay apart.
async fn adversarial_guessing_link_codes_is_cut_off_after_five_wrong_ones(store: Store) {
    let ann = someone(&store, "telegram:31", 30).await;
    let eve = someone(&store, "discord:32", 0).await;
    let code = store.create_link_code(ann.id).await.expect("code");
    for guess in ["AAAAAAAA", "BBBBBBBB", "CCCCCCCC", "DDDDDDDD", "EEEEEEEE"] {
        assert!(refused(store.link(eve.id, eve.wallet, guess).await).contains("wrong"));
    }
    let cut_off = refused(store.link(eve.id, eve.wallet, &code.code).await);
    assert!(cut_off.contains("too many wrong codes"), "{cut_off}");
    // Someone else is not held back by Eve's guesses, and Ann's code still works for them.
    let bob = someone(&store, "discord:33", 0).await;
    store
        .link(bob.id, bob.wallet, &code.code)
        .await
        .expect("linked");
    assert_eq!(
        store
            .find_user(&"discord:32".parse().expect("identity"))
            .await
            .expect("find")
            .map(|u| u.id),
        Some(eve.id),
        "Eve is still herself"
    );
    assert!(store.audit().await.expect("audit").is_clean());
}

on_every_backend!(
    adversarial_guessing_link_codes_is_cut_off_after_five_wrong_ones,
    a_purchase_stays_refundable_after_its_wallet_is_joined,
    a_code_joins_two_identities_into_one_wallet_once,
    expired_codes_frozen_wallets_and_held_credits_are_refused,
);

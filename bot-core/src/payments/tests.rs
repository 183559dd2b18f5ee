//! Purchases, refunds and payment events, each a story on SQLite and PostgreSQL ending with a
//! clean audit.

use super::*;
use crate::UserError;
use crate::{
    Backend, Platform, Store,
    ledger::{SystemAccount, TransferKind, TransferRequest},
    on_every_backend,
    people::User,
    service::ChatKind,
    store::testing::{available, person},
};

fn chat() -> ChatRef {
    ChatRef {
        platform: Platform::Console,
        id: "test".into(),
        kind: ChatKind::Private,
    }
}

async fn order(store: &Store, user: &User, rail: Rail) -> Purchase {
    let (amount, currency, fee) = match rail {
        Rail::Stripe => (500, "usd", 45),
        Rail::Stars => (250, "xtr", 0),
    };
    store
        .create_purchase(&NewPurchase {
            user: user.id,
            payer: "console:buyer".into(),
            pack: "small".into(),
            credits: Credits::new(150),
            rail,
            amount,
            currency: currency.into(),
            chat: chat(),
            fee_estimate: fee,
        })
        .await
        .expect("purchase")
}

fn paid(purchase: &Purchase) -> Option<PaymentEvent> {
    Some(PaymentEvent::Paid {
        purchase: purchase.id,
        session: format!("cs_test_{}", purchase.id),
        payment_intent: Some(format!("pi_{}", purchase.id)),
    })
}

fn charge(purchase: &Purchase, refunded: u64) -> Option<PaymentEvent> {
    Some(PaymentEvent::Charge {
        purchase: Some(purchase.id),
        payment_intent: Some(format!("pi_{}", purchase.id)),
        charge: format!("ch_{}", purchase.id),
        balance_transaction: Some(format!("txn_{}", purchase.id)),
        amount_refunded: refunded,
    })
}

/// Spends `amount` of the wallet for a generation (oldest credits first).
async fn spend(store: &Store, user: &User, amount: u64, key: &str) {
    store
        .transfer(&TransferRequest {
            key: key.into(),
            debit: user.wallet,
            credit: store.account(SystemAccount::GenerationRevenue),
            amount: Credits::new(amount),
            kind: TransferKind::Generation,
            memo: None,
        })
        .await
        .expect("spend");
}

async fn apply(store: &Store, id: &str, event: Option<PaymentEvent>) -> EventOutcome {
    store
        .apply_stripe_event(id, "test.event", event)
        .await
        .expect("event applies")
}

async fn a_purchase_is_credited_once_whatever_events_arrive(store: Store) {
    let buyer = person(&store, "buyer", 0).await;
    let purchase = order(&store, &buyer, Rail::Stripe).await;
    assert_eq!(available(&store, &buyer).await, 0);
    // The charge arrives first, then both "paid" events, each delivered twice.
    assert_eq!(
        apply(&store, "evt_charge", charge(&purchase, 0)).await,
        EventOutcome::Applied
    );
    for id in ["evt_completed", "evt_async", "evt_completed", "evt_async"] {
        apply(&store, id, paid(&purchase)).await;
    }
    assert_eq!(
        apply(&store, "evt_async", paid(&purchase)).await,
        EventOutcome::Duplicate
    );
    assert_eq!(available(&store, &buyer).await, 150);
    let now = store
        .purchase(purchase.id)
        .await
        .expect("read")
        .expect("there");
    assert_eq!(now.state, PurchaseState::Paid);
    assert_eq!(
        now.stripe_charge_id.as_deref(),
        Some(format!("ch_{}", purchase.id).as_str())
    );
    // One "credits added" notice, however many events.
    let notices = store
        .due_notices(&[Platform::Console], 10)
        .await
        .expect("notices");
    assert_eq!(notices.len(), 1, "{notices:?}");
    // A record, filled in with the balance after the credit on either path (on SQLite, the
    // one-round-trip script), and worded only when sent.
    assert_eq!(
        notices[0].notice,
        Notice::Credited {
            order: purchase.id,
            credits: Credits::new(150),
            amount: purchase.amount,
            currency: purchase.currency.clone(),
            balance: Credits::new(150),
        }
    );
    let words = crate::service::words::notice_text(&notices[0].notice);
    assert!(
        words.starts_with("150 credits added") && words.ends_with("Your balance: 150 credits."),
        "{words}"
    );
    store.notice_done(notices[0].id).await.expect("done");
    assert_eq!(store.pending_notices().await.expect("count"), 0);
    // An unknown type is recorded and changes nothing.
    assert!(matches!(
        apply(&store, "evt_other", None).await,
        EventOutcome::Ignored(_)
    ));
}

async fn a_failed_payment_credits_nothing_and_tells_the_person(store: Store) {
    let buyer = person(&store, "buyer", 0).await;
    let purchase = order(&store, &buyer, Rail::Stripe).await;
    apply(
        &store,
        "evt_failed",
        Some(PaymentEvent::Failed {
            purchase: purchase.id,
            session: "cs_x".into(),
        }),
    )
    .await;
    assert_eq!(available(&store, &buyer).await, 0);
    let notices = store
        .due_notices(&[Platform::Console], 10)
        .await
        .expect("notices");
    assert_eq!(notices.len(), 1);
    assert!(
        matches!(notices[0].notice, Notice::PaymentFailed { order, .. } if order == purchase.id),
        "{notices:?}"
    );
    assert!(crate::service::words::notice_text(&notices[0].notice).contains("did not go through"));
}

async fn a_refund_takes_only_the_unused_credits_of_that_purchase(store: Store) {
    // Ten welcome credits are older than the purchase, so spending uses them first.
    let buyer = person(&store, "buyer", 10).await;
    let purchase = order(&store, &buyer, Rail::Stripe).await;
    apply(&store, "evt_paid", paid(&purchase)).await;
    spend(&store, &buyer, 20, "job:1").await;
    assert_eq!(available(&store, &buyer).await, 140);
    let listed = store.refundable(buyer.id, 0).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].unused, Credits::new(140));
    // (500 − 45) × 140 ÷ 150, rounded down.
    assert_eq!(listed[0].amount, 424);

    let (refund, _) = store
        .begin_refund(buyer.id, buyer.wallet, purchase.id, 0, Approval::Auto)
        .await
        .expect("refund starts");
    assert_eq!((refund.credits, refund.amount), (Credits::new(140), 424));
    assert_eq!(available(&store, &buyer).await, 0);
    // A second request while one is under way is refused.
    let again = store
        .begin_refund(buyer.id, buyer.wallet, purchase.id, 0, Approval::Auto)
        .await;
    assert!(
        matches!(again, Err(Error::User(UserError::NotRefundable(_)))),
        "{again:?}"
    );
    // Stripe refuses: the credits come back to the same purchase.
    assert!(
        store
            .fail_refund(refund.id, RefundState::Failed, "charge already refunded")
            .await
            .expect("fails")
    );
    assert!(
        !store
            .fail_refund(refund.id, RefundState::Failed, "twice")
            .await
            .expect("ends once")
    );
    assert_eq!(available(&store, &buyer).await, 140);
    assert_eq!(
        store.refundable(buyer.id, 0).await.expect("list")[0].unused,
        Credits::new(140)
    );

    let (refund, _) = store
        .begin_refund(buyer.id, buyer.wallet, purchase.id, 0, Approval::Auto)
        .await
        .expect("refund starts again");
    assert!(
        store
            .finish_refund(refund.id, "re_1")
            .await
            .expect("finishes")
    );
    assert_eq!(available(&store, &buyer).await, 0);
    assert!(
        store
            .refundable(buyer.id, 0)
            .await
            .expect("list")
            .is_empty()
    );
    // Stripe's charge.refunded for our own refund takes nothing more.
    apply(&store, "evt_refunded", charge(&purchase, 424)).await;
    assert_eq!(available(&store, &buyer).await, 0);
    let texts: Vec<String> = store
        .due_notices(&[Platform::Console], 10)
        .await
        .expect("notices")
        .into_iter()
        .map(|n| crate::service::words::notice_text(&n.notice))
        .collect();
    assert!(
        texts.iter().any(|t| t.contains("could not be made")),
        "{texts:?}"
    );
    assert!(texts.iter().any(|t| t.contains("$4.24")), "{texts:?}");
}

async fn old_and_used_up_purchases_are_not_refundable(store: Store) {
    let buyer = person(&store, "buyer", 0).await;
    let purchase = order(&store, &buyer, Rail::Stripe).await;
    apply(&store, "evt_paid", paid(&purchase)).await;
    let later = now_plus_a_day();
    assert!(
        store
            .refundable(buyer.id, later)
            .await
            .expect("list")
            .is_empty()
    );
    let late = store
        .begin_refund(buyer.id, buyer.wallet, purchase.id, later, Approval::Auto)
        .await;
    assert!(
        matches!(late, Err(Error::User(UserError::NotRefundable(_)))),
        "{late:?}"
    );
    spend(&store, &buyer, 150, "job:all").await;
    let used = store
        .begin_refund(buyer.id, buyer.wallet, purchase.id, 0, Approval::Auto)
        .await;
    assert!(
        matches!(used, Err(Error::User(UserError::NotRefundable(_)))),
        "{used:?}"
    );
    let stranger = person(&store, "stranger", 0).await;
    let theirs = store
        .begin_refund(stranger.id, stranger.wallet, purchase.id, 0, Approval::Auto)
        .await;
    assert!(
        matches!(theirs, Err(Error::User(UserError::NotRefundable(_)))),
        "{theirs:?}"
    );
}

fn now_plus_a_day() -> i64 {
    crate::store::now_millis() + 86_400_000
}

async fn an_admin_decides_refunds_waiting_for_approval(store: Store) {
    let buyer = person(&store, "buyer", 0).await;
    let purchase = order(&store, &buyer, Rail::Stripe).await;
    apply(&store, "evt_paid", paid(&purchase)).await;
    let (refund, _) = store
        .begin_refund(buyer.id, buyer.wallet, purchase.id, 0, Approval::Admin)
        .await
        .expect("requested");
    assert_eq!(refund.state, RefundState::AwaitingApproval);
    assert_eq!(available(&store, &buyer).await, 0);
    let waiting = store
        .refunds_in(RefundState::AwaitingApproval, None)
        .await
        .expect("list");
    assert_eq!(waiting.len(), 1);
    assert!(
        store
            .fail_refund(
                refund.id,
                RefundState::Rejected,
                "bought by mistake? ask support"
            )
            .await
            .expect("rejected")
    );
    assert_eq!(available(&store, &buyer).await, 150);
    assert!(
        store
            .approve_refund(refund.id)
            .await
            .expect("no-op")
            .is_none()
    );

    let (refund, _) = store
        .begin_refund(buyer.id, buyer.wallet, purchase.id, 0, Approval::Admin)
        .await
        .expect("requested again");
    let (approved, _) = store
        .approve_refund(refund.id)
        .await
        .expect("approve")
        .expect("was waiting");
    assert_eq!(approved.state, RefundState::Processing);
    assert!(store.finish_refund(refund.id, "re_2").await.expect("done"));
    assert_eq!(available(&store, &buyer).await, 0);
}

async fn a_refund_made_in_stripe_takes_its_share_and_a_dispute_freezes(store: Store) {
    let buyer = person(&store, "buyer", 0).await;
    let purchase = order(&store, &buyer, Rail::Stripe).await;
    // Out of order: the partial refund is reported before the payment.
    apply(&store, "evt_refund_half", charge(&purchase, 250)).await;
    apply(&store, "evt_paid", paid(&purchase)).await;
    // Half the money: half the credits (150 × 250 ÷ 500).
    assert_eq!(available(&store, &buyer).await, 75);
    apply(&store, "evt_refund_half", charge(&purchase, 250)).await;
    apply(&store, "evt_refund_half_again", charge(&purchase, 250)).await;
    assert_eq!(available(&store, &buyer).await, 75);
    spend(&store, &buyer, 5, "job:5").await;
    apply(
        &store,
        "evt_dispute",
        Some(PaymentEvent::Disputed {
            purchase: None,
            payment_intent: None,
            charge: format!("ch_{}", purchase.id),
        }),
    )
    .await;
    assert_eq!(available(&store, &buyer).await, 0);
    let user = store.user(buyer.id).await.expect("user");
    assert!(user.frozen_at.is_some());
    let frozen = store
        .begin_refund(buyer.id, buyer.wallet, purchase.id, 0, Approval::Auto)
        .await;
    assert!(
        matches!(frozen, Err(Error::User(UserError::Frozen))),
        "{frozen:?}"
    );
}

async fn a_stars_payment_arriving_twice_is_credited_once(store: Store) {
    let buyer = person(&store, "buyer", 0).await;
    let purchase = order(&store, &buyer, Rail::Stars).await;
    let first = store
        .credit_stars(purchase.id, "stxCHARGE1", 250)
        .await
        .expect("credits");
    let second = store
        .credit_stars(purchase.id, "stxCHARGE1", 250)
        .await
        .expect("deduplicated");
    assert_eq!(
        (first, second),
        (EventOutcome::Applied, EventOutcome::Duplicate)
    );
    assert_eq!(available(&store, &buyer).await, 150);
    // Another charge for the same order, or a wrong amount, credits nothing.
    assert!(matches!(
        store
            .credit_stars(purchase.id, "stxOTHER", 250)
            .await
            .expect("read"),
        EventOutcome::Ignored(_)
    ));
    let cheap = order(&store, &buyer, Rail::Stars).await;
    assert!(matches!(
        store
            .credit_stars(cheap.id, "stxCHEAP", 1)
            .await
            .expect("read"),
        EventOutcome::Ignored(_)
    ));
    assert_eq!(available(&store, &buyer).await, 150);
    // Stars are refunded whole while nothing is used.
    let listed = store.refundable(buyer.id, 0).await.expect("list");
    assert_eq!(listed[0].amount, 250);
    spend(&store, &buyer, 1, "job:star").await;
    assert!(
        store
            .refundable(buyer.id, 0)
            .await
            .expect("list")
            .is_empty()
    );
}

async fn concurrent_payments_into_one_wallet_are_each_credited_once(store: Store) {
    let buyer = person(&store, "buyer", 0).await;
    let mut purchases = Vec::new();
    for _ in 0..16 {
        purchases.push(order(&store, &buyer, Rail::Stripe).await);
    }
    // Every purchase's payment and charge events race each other, twice over; on PostgreSQL
    // they contend for the one wallet row.
    let mut tasks = Vec::new();
    for round in 0..2 {
        for purchase in &purchases {
            for (kind, event) in [("paid", paid(purchase)), ("charge", charge(purchase, 0))] {
                let (store, id) = (store.clone(), format!("evt_{kind}_{}_{round}", purchase.id));
                tasks.push(tokio::spawn(async move {
                    store.apply_stripe_event(&id, "test.event", event).await
                }));
            }
        }
    }
    let all = async {
        for task in tasks {
            task.await.expect("task").expect("applied");
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), all)
        .await
        .expect("no deadlock between concurrent payments");
    assert_eq!(available(&store, &buyer).await, 16 * 150);
}

/// Races on one wallet, many times over: `/refund` against `/imagine` holds on the same lot, an
/// admin `take` against a hold, and `/link` against spending on both wallets. Whatever wins,
/// no credit is spent twice, refunded and spent, or lost; no wallet goes below zero; the books
/// balance after each round.
async fn adversarial_refunds_holds_takes_and_links_racing_on_one_lot_never_overspend(store: Store) {
    use crate::jobs::{JobLimits, NewJob};

    let limits = JobLimits {
        max_queued_per_person: u32::MAX,
        ..JobLimits::default()
    };
    let grants = store.account(SystemAccount::Grants);
    for round in 0..20 {
        let buyer = person(&store, &format!("racer{round}"), 0).await;
        let purchase = order(&store, &buyer, Rail::Stripe).await;
        apply(&store, &format!("evt_race_{round}"), paid(&purchase)).await;
        let other = person(&store, &format!("other{round}"), 40).await;
        let code = store.create_link_code(other.id).await.expect("code");
        let mut tasks: Vec<tokio::task::JoinHandle<&'static str>> = Vec::new();
        let (s, b) = (store.clone(), buyer.clone());
        tasks.push(tokio::spawn(async move {
            match s
                .begin_refund(b.id, b.wallet, purchase.id, 0, Approval::Auto)
                .await
            {
                Ok(_) => "refund",
                Err(_) => "refund refused",
            }
        }));
        for j in 0..4 {
            let (s, b) = (store.clone(), buyer.clone());
            tasks.push(tokio::spawn(async move {
                let job = NewJob {
                    key: format!("race:{round}:{j}"),
                    user: b.id,
                    wallet: b.wallet,
                    operation: "image".into(),
                    cost: Credits::new(40),
                    payload: "{}".into(),
                };
                match s.enqueue(&job, &limits).await {
                    Ok(_) => "hold",
                    Err(_) => "hold refused",
                }
            }));
        }
        let (s, b) = (store.clone(), buyer.clone());
        tasks.push(tokio::spawn(async move {
            let taken = s
                .transfer(&TransferRequest {
                    key: format!("admin-take:{round}"),
                    debit: b.wallet,
                    credit: grants,
                    amount: Credits::new(30),
                    kind: TransferKind::Grant,
                    memo: Some("correction".into()),
                })
                .await;
            if taken.is_ok() {
                "take"
            } else {
                "take refused"
            }
        }));
        let (s, o) = (store.clone(), other.clone());
        tasks.push(tokio::spawn(async move {
            let spent = s
                .transfer(&TransferRequest {
                    key: format!("other-spend:{round}"),
                    debit: o.wallet,
                    credit: s.account(SystemAccount::GenerationRevenue),
                    amount: Credits::new(25),
                    kind: TransferKind::Generation,
                    memo: None,
                })
                .await;
            if spent.is_ok() {
                "spend"
            } else {
                "spend refused"
            }
        }));
        let (s, b, typed) = (store.clone(), buyer.clone(), code.code.clone());
        tasks.push(tokio::spawn(async move {
            match s.link(b.id, b.wallet, &typed).await {
                Ok(_) => "link",
                Err(_) => "link refused",
            }
        }));
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.expect("task"));
        }
        // 150 bought: whatever mix won, what left the wallet fits in what came in.
        let holds = outcomes.iter().filter(|o| **o == "hold").count() as u64;
        let taken = if outcomes.contains(&"take") { 30 } else { 0 };
        assert!(holds * 40 + taken <= 150, "round {round}: {outcomes:?}");
        // What is left, held and taken out adds up to what was bought, whoever won.
        let balance = store.account_balance(buyer.wallet).await.expect("balance");
        let out = balance.debits_posted.get() + balance.debits_pending.get();
        assert_eq!(
            balance.available().get() + out,
            150,
            "round {round}: {outcomes:?}"
        );
        let audit = store.audit().await.expect("audit");
        assert!(audit.is_clean(), "round {round}: {outcomes:?}\n{audit}");
    }
}

on_every_backend!(
    adversarial_refunds_holds_takes_and_links_racing_on_one_lot_never_overspend,
    concurrent_payments_into_one_wallet_are_each_credited_once,
    a_purchase_is_credited_once_whatever_events_arrive,
    a_failed_payment_credits_nothing_and_tells_the_person,
    a_refund_takes_only_the_unused_credits_of_that_purchase,
    old_and_used_up_purchases_are_not_refundable,
    an_admin_decides_refunds_waiting_for_approval,
    a_refund_made_in_stripe_takes_its_share_and_a_dispute_freezes,
    a_stars_payment_arriving_twice_is_credited_once,
);

/// SQLite credits a card payment with a one-round-trip script; every other backend, and SQLite
/// with the script off, takes the general path. Given the same events in the same order (the
/// same payment twice, a charge before its payment, a refund made in Stripe, a dispute, an
/// unknown purchase), both leave the same outcomes, balances, purchases and notices, and a
/// clean audit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credit_script_and_the_general_path_leave_the_same_books() {
    let mut books = Vec::new();
    for script in [true, false] {
        let test = format!("the_credit_script_and_the_general_path::{script}");
        let Some(db) = crate::store::testing::TestDb::new(Backend::Sqlite, &test).await else {
            panic!("SQLite is always available");
        };
        let store = db.store().clone();
        store.use_credit_script(script);
        let buyer = person(&store, "buyer", 0).await;
        let first = order(&store, &buyer, Rail::Stripe).await;
        let second = order(&store, &buyer, Rail::Stripe).await;
        let third = order(&store, &buyer, Rail::Stripe).await;
        store
            .set_checkout_session(third.id, &format!("cs_test_{}", third.id))
            .await
            .expect("session");
        let unknown = Purchase {
            id: PurchaseId::from_db(9_999),
            ..first.clone()
        };
        let wrong_session = Some(PaymentEvent::Paid {
            purchase: third.id,
            session: "cs_someone_else".into(),
            payment_intent: None,
        });
        let dispute = Some(PaymentEvent::Disputed {
            purchase: None,
            payment_intent: None,
            charge: format!("ch_{}", third.id),
        });
        let events = [
            ("evt_1", paid(&first)),
            ("evt_1", paid(&first)),
            ("evt_2", paid(&first)),
            ("evt_3", charge(&second, 100)),
            ("evt_4", paid(&second)),
            ("evt_5", paid(&unknown)),
            ("evt_6", wrong_session),
            ("evt_7", charge(&third, 0)),
            ("evt_8", paid(&third)),
            ("evt_9", dispute),
        ];
        let mut outcomes = Vec::new();
        for (id, event) in events {
            outcomes.push(apply(&store, id, event).await);
        }
        let notices: Vec<Notice> = store
            .due_notices(&[Platform::Console], 50)
            .await
            .expect("notices")
            .into_iter()
            .map(|n| n.notice)
            .collect();
        let purchases: Vec<(PurchaseState, u64, Option<String>)> = store
            .purchases(buyer.id)
            .await
            .expect("purchases")
            .into_iter()
            .map(|p| (p.state, p.refunded, p.stripe_session_id))
            .collect();
        let balance = available(&store, &buyer).await;
        let report = store.audit().await.expect("audit runs");
        assert!(
            report.is_clean(),
            "audit with the script {script}:\n{report}"
        );
        books.push((outcomes, balance, purchases, notices));
        store.close().await;
    }
    assert_eq!(books[0], books[1]);
    // And what they agree on is right: 150 + 120 (a fifth refunded) + 0 (disputed) credits.
    let (outcomes, balance, _, notices) = &books[0];
    assert_eq!(*balance, 270, "{outcomes:?}");
    assert_eq!(outcomes[1], EventOutcome::Duplicate);
    assert!(
        matches!(outcomes[5], EventOutcome::Ignored(_)),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[6], EventOutcome::Ignored(_)),
        "{outcomes:?}"
    );
    let credited = notices
        .iter()
        .filter(|n| matches!(n, Notice::Credited { .. }))
        .count();
    assert_eq!(credited, 3, "{notices:?}");
}

#[test]
fn prices_read_as_people_write_them() {
    assert_eq!(format_price(500, "usd"), "$5");
    assert_eq!(format_price(424, "usd"), "$4.24");
    assert_eq!(format_price(1200, "eur"), "12.00 EUR");
    assert_eq!(format_price(250, "xtr"), "250 Stars");
}

#[test]
fn rails_parse_in_the_order_given() {
    assert_eq!(Rail::parse_list("stars"), Ok(vec![Rail::Stars]));
    assert_eq!(
        Rail::parse_list("stripe, stars,stripe"),
        Ok(vec![Rail::Stripe, Rail::Stars])
    );
    assert_eq!(Rail::parse_list("stars,paypal"), Err("paypal".into()));
    assert_eq!(Rail::parse_list(""), Err(String::new()));
}

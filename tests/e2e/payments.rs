//! Payments end to end: the application with Telegram and Stripe on, against the fake Bot API
//! and the fake Stripe API, with webhook events signed by Stripe's scheme. Each test ends with a
//! clean audit.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bot_core::Backend;
use fakes::{
    stripe::{FakeStripe, sign, signature},
    telegram::{Chat, FakeTelegram, Sent},
};

use crate::helpers::{TestApp, spawn_app};

const TOKEN: &str = "123456:TEST-token";
const KEY: &str = "sk_test_imagegpt";
const SECRET: &str = "whsec_imagegpt_test";
const SETTINGS: &str = "[workers]\npoll_ms = 20\nstatus_edit_ms = 0\n";
const WAIT: Duration = Duration::from_secs(20);

struct Shop {
    telegram: FakeTelegram,
    stripe: FakeStripe,
    app: TestApp,
    http: reqwest::Client,
}

async fn open(backend: Backend, test: &str, extra: &[(&str, &str)]) -> Option<Shop> {
    let telegram = FakeTelegram::start(TOKEN).await;
    let stripe = FakeStripe::start(KEY).await;
    let (telegram_url, stripe_url) = (telegram.url(), stripe.url());
    let mut env = vec![
        ("TELEGRAM_BOT_TOKEN", TOKEN),
        ("TELEGRAM_API_URL", telegram_url.as_str()),
        ("STRIPE_SECRET_KEY", KEY),
        ("STRIPE_WEBHOOK_SECRET", SECRET),
        ("STRIPE_API_URL", stripe_url.as_str()),
        ("PUBLIC_BASE_URL", "https://bot.example.org"),
    ];
    env.extend_from_slice(extra);
    let app = spawn_app(backend, test).env(&env).file(SETTINGS).await?;
    Some(Shop {
        telegram,
        stripe,
        app,
        http: reqwest::Client::new(),
    })
}

impl Shop {
    async fn post(&self, body: &str, signature: Option<&str>) -> u16 {
        let mut request = self
            .http
            .post(format!("http://{}/stripe/webhook", self.app.address))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(signature) = signature {
            request = request.header("Stripe-Signature", signature);
        }
        request
            .send()
            .await
            .expect("webhook answers")
            .status()
            .as_u16()
    }

    async fn deliver(&self, body: &str) -> u16 {
        self.post(body, Some(&sign(body, SECRET, now()))).await
    }

    async fn finish(self) {
        let db = self.app.stop().await;
        let audit = db.store().audit().await.expect("audit");
        assert!(audit.is_clean(), "{audit}");
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

fn texts(sent: &[Sent], chat: i64) -> Vec<String> {
    sent.iter()
        .filter(|s| s.chat_id == chat && s.method != "answerCallbackQuery")
        .map(|s| s.text.clone())
        .collect()
}

/// Waits for a message in `chat` containing `needle`; returns it.
pub(super) async fn said(telegram: &FakeTelegram, chat: i64, needle: &str) -> Sent {
    let sent = telegram
        .wait_for(WAIT, |sent| {
            sent.iter()
                .any(|s| s.chat_id == chat && s.text.contains(needle))
        })
        .await;
    sent.iter()
        .rev()
        .find(|s| s.chat_id == chat && s.text.contains(needle))
        .cloned()
        .unwrap_or_else(|| panic!("no {needle:?} in {:#?}", texts(&sent, chat)))
}

/// Waits until `needle` was said in `chat` at least `times` times: a repeated answer such as a
/// balance must be new, not the one from earlier in the test.
async fn said_times(telegram: &FakeTelegram, chat: i64, needle: &str, times: usize) {
    telegram
        .wait_for(WAIT, |sent| {
            texts(sent, chat)
                .iter()
                .filter(|t| t.contains(needle))
                .count()
                >= times
        })
        .await;
    assert_eq!(
        count(telegram, chat, needle),
        times,
        "{needle:?} in chat {chat}"
    );
}

fn count(telegram: &FakeTelegram, chat: i64, needle: &str) -> usize {
    texts(&telegram.sent(), chat)
        .iter()
        .filter(|t| t.contains(needle))
        .count()
}

fn button(sent: &Sent, label_starts: &str) -> String {
    sent.buttons
        .iter()
        .flatten()
        .find(|(label, _)| label.starts_with(label_starts))
        .map(|(_, data)| data.clone())
        .unwrap_or_else(|| panic!("no {label_starts:?} button in {:?}", sent.buttons))
}

async fn a_card_purchase_is_credited_once_and_refunds_follow_stripe(backend: Backend, test: &str) {
    let Some(shop) = open(backend, test, &[("TELEGRAM_PAYMENT_RAILS", "stars,stripe")]).await
    else {
        return;
    };
    let (ann, chat) = (7001, Chat::private(7001));
    let tg = &shop.telegram;

    tg.message(&chat, ann, "/buy small");
    let choice = said(tg, 7001, "How would you like to pay?").await;
    tg.press(&chat, ann, choice.message_id, &button(&choice, "💳"));
    let link = said(tg, 7001, "Pay securely with Stripe").await;
    assert!(button(&link, "Pay $5").starts_with("url:https://checkout.stripe.com/"));
    let sessions = shop.stripe.sessions();
    assert_eq!(sessions.len(), 1);
    let session = &sessions[0];
    assert_eq!(session.amount, 500);
    assert_eq!(
        session.metadata.get("identity").map(String::as_str),
        Some("telegram:7001")
    );
    assert!(
        session
            .success_url
            .starts_with("https://bot.example.org/checkout/success")
    );

    // Three events about one payment, each delivered three times, in a shuffled order.
    let events = [
        shop.stripe.event(
            "checkout.session.completed",
            shop.stripe.session_object(session, "paid"),
        ),
        shop.stripe.event(
            "checkout.session.async_payment_succeeded",
            shop.stripe.session_object(session, "paid"),
        ),
        shop.stripe
            .event("charge.succeeded", shop.stripe.charge_object(session)),
    ];
    for i in [2, 0, 1, 1, 0, 2, 0, 2, 1] {
        assert_eq!(shop.deliver(&events[i]).await, 200);
    }
    said(tg, 7001, "150 credits added").await;
    tg.message(&chat, ann, "/balance");
    said(tg, 7001, "Your balance: 150 credits").await;
    assert_eq!(count(tg, 7001, "credits added"), 1);

    // Signatures: missing, wrong secret, stale, and a body that was changed are refused and
    // change nothing; several v1 signatures are fine when one matches.
    let unknown = shop.stripe.event(
        "imagegpt.unknown_type",
        serde_json::json!({"id": "cus_1", "object": "customer"}),
    );
    assert_eq!(shop.post(&unknown, None).await, 400);
    assert_eq!(
        shop.post(&unknown, Some(&sign(&unknown, "whsec_wrong", now())))
            .await,
        400
    );
    assert_eq!(
        shop.post(&unknown, Some(&sign(&unknown, SECRET, now() - 400)))
            .await,
        400
    );
    assert_eq!(shop.post(&unknown, Some("t=abc,v1=00")).await, 400);
    let changed = unknown.replace("cus_1", "cus_2");
    assert_eq!(
        shop.post(&changed, Some(&sign(&unknown, SECRET, now())))
            .await,
        400
    );
    let t = now();
    let rotated = format!(
        "t={t},v1={},v1={}",
        signature(&unknown, "whsec_old", t),
        signature(&unknown, SECRET, t)
    );
    assert_eq!(
        shop.post(&unknown, Some(&rotated)).await,
        200,
        "unknown types get 200"
    );
    assert_eq!(
        shop.deliver("{\"id\": \"evt_x\", \"object\":").await,
        400,
        "malformed JSON"
    );
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(1_100_000));
    assert_eq!(shop.deliver(&huge).await, 413);

    // A refund Stripe refuses gives the credits back.
    shop.stripe.set_fee(&session.charge, 45);
    shop.stripe.refuse_refunds(Some("This charge is disputed."));
    tg.message(&chat, ann, "/refund");
    let list = said(tg, 7001, "Refundable purchases").await;
    assert!(
        list.text
            .contains("150 credits unused of 150 credits → $4.55"),
        "{}",
        list.text
    );
    tg.press(&chat, ann, list.message_id, &button(&list, "Refund #"));
    let offer = said(tg, 7001, "Refund order #1").await;
    tg.press(
        &chat,
        ann,
        offer.message_id,
        &button(&offer, "Confirm refund"),
    );
    said(tg, 7001, "could not be made: This charge is disputed.").await;
    tg.message(&chat, ann, "/balance");
    said_times(tg, 7001, "Your balance: 150 credits", 2).await;

    // Then Stripe agrees: the money goes back once, the credits leave once.
    shop.stripe.refuse_refunds(None);
    tg.message(&chat, ann, "/refund 1");
    let offer = said(tg, 7001, "Refund order #1").await;
    tg.press(
        &chat,
        ann,
        offer.message_id,
        &button(&offer, "Confirm refund"),
    );
    said(tg, 7001, "is on its way back").await;
    assert_eq!(
        shop.stripe
            .refunds()
            .iter()
            .map(|r| r.1)
            .collect::<Vec<_>>(),
        vec![455]
    );
    // Stripe's own event about that refund takes nothing more.
    let refunded = shop
        .stripe
        .event("charge.refunded", shop.stripe.charge_object(session));
    assert_eq!(shop.deliver(&refunded).await, 200);
    tg.message(&chat, ann, "/balance");
    said(tg, 7001, "Your balance: 0 credits").await;
    shop.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_purchase_is_credited_once_and_refunds_follow_stripe_on_sqlite() {
    a_card_purchase_is_credited_once_and_refunds_follow_stripe(
        Backend::Sqlite,
        "payments::card::sqlite",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_purchase_is_credited_once_and_refunds_follow_stripe_on_postgres() {
    a_card_purchase_is_credited_once_and_refunds_follow_stripe(
        Backend::Postgres,
        "payments::card::postgres",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stars_purchase_paid_twice_is_credited_once_and_refunded_whole() {
    let Some(shop) = open(
        Backend::Sqlite,
        "payments::stars",
        &[("TELEGRAM_PAYMENT_RAILS", "stars")],
    )
    .await
    else {
        return;
    };
    let (bo, chat) = (7002, Chat::private(7002));
    let tg = &shop.telegram;
    tg.message(&chat, bo, "/buy");
    let packs = said(tg, 7002, "Credit packs").await;
    tg.press(&chat, bo, packs.message_id, &button(&packs, "Small"));
    let sent = tg.wait_for(WAIT, |_| !tg.invoices().is_empty()).await;
    assert!(
        !tg.invoices().is_empty(),
        "{:#?}\n{:?}",
        texts(&sent, 7002),
        tg.calls()
    );
    let (invoice_chat, payload, amount) = tg.invoices()[0].clone();
    assert_eq!((invoice_chat, amount), (7002, 250));

    // Someone else cannot pay Bo's invoice; Bo can.
    let other = tg.pre_checkout(9999, &payload, 250);
    let mine = tg.pre_checkout(bo, &payload, 250);
    tg.wait_for(WAIT, |_| {
        tg.pre_checkout_answer(&other).is_some() && tg.pre_checkout_answer(&mine).is_some()
    })
    .await;
    assert_eq!(tg.pre_checkout_answer(&mine), Some((true, None)));
    let (ok, why) = tg.pre_checkout_answer(&other).expect("answered");
    assert!(!ok && why.is_some_and(|w| w.contains("someone else")));

    // Telegram delivers the same successful_payment twice.
    tg.successful_payment(&chat, bo, &payload, 250, "stxCHARGE-1");
    tg.successful_payment(&chat, bo, &payload, 250, "stxCHARGE-1");
    said(tg, 7002, "150 credits added").await;
    tg.message(&chat, bo, "/balance");
    said(tg, 7002, "Your balance: 150 credits").await;
    assert_eq!(count(tg, 7002, "credits added"), 1);

    tg.message(&chat, bo, "/refund 1");
    let offer = said(tg, 7002, "as Stars").await;
    tg.press(
        &chat,
        bo,
        offer.message_id,
        &button(&offer, "Confirm refund"),
    );
    said(tg, 7002, "is on its way back").await;
    assert!(tg.star_refunded("stxCHARGE-1"));
    tg.message(&chat, bo, "/balance");
    said(tg, 7002, "Your balance: 0 credits").await;
    shop.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_admin_approval_a_refund_waits_for_the_operator() {
    let Some(shop) = open(
        Backend::Sqlite,
        "payments::admin",
        &[
            ("TELEGRAM_PAYMENT_RAILS", "stripe"),
            ("REFUNDS_APPROVAL", "admin"),
        ],
    )
    .await
    else {
        return;
    };
    let (cy, chat) = (7003, Chat::private(7003));
    let tg = &shop.telegram;
    tg.message(&chat, cy, "/buy small");
    said(tg, 7003, "Pay securely with Stripe").await;
    let session = shop.stripe.sessions()[0].clone();
    for kind in ["checkout.session.completed", "charge.succeeded"] {
        let object = match kind {
            "charge.succeeded" => shop.stripe.charge_object(&session),
            _ => shop.stripe.session_object(&session, "paid"),
        };
        assert_eq!(shop.deliver(&shop.stripe.event(kind, object)).await, 200);
    }
    said(tg, 7003, "150 credits added").await;

    // Twice the refund; the operator rejects the first and approves the second.
    let stripe_url = shop.stripe.url();
    let database = shop.app.db.url().to_string();
    let env = [
        ("DATABASE_URL", database.as_str()),
        ("STRIPE_SECRET_KEY", KEY),
        ("STRIPE_API_URL", stripe_url.as_str()),
        ("PUBLIC_BASE_URL", "https://bot.example.org"),
        ("REFUNDS_APPROVAL", "admin"),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let admin =
        |args: &[&str]| crate::helpers::text(&crate::helpers::imagegpt(dir.path(), args, &env));
    for (round, decision) in [(1, "reject"), (2, "approve")] {
        tg.message(&chat, cy, "/refund 1");
        let offer = said(tg, 7003, "Refund order #1").await;
        tg.press(
            &chat,
            cy,
            offer.message_id,
            &button(&offer, "Confirm refund"),
        );
        said(
            tg,
            7003,
            &format!("Refund #{round} of order #1 ($4.56) requested"),
        )
        .await;
        tg.message(&chat, cy, "/balance");
        said_times(tg, 7003, "Your balance: 0 credits", round).await;
        let (listed, _) = admin(&["admin", "refunds"]);
        assert!(
            listed.contains(&format!("refund #{round} order #1")),
            "{listed}"
        );
        let id = round.to_string();
        let (out, err) = admin(&["admin", "refunds", decision, &id]);
        assert!(out.contains(decision.trim_end_matches('e')), "{out}{err}");
        let (_, err) = admin(&["admin", "refunds", decision, &id]);
        assert!(
            err.contains("not waiting"),
            "a decision is made once: {err}"
        );
    }
    // Rejected: the credits came back before the second request; approved: Stripe refunded
    // once (the fee is the estimate, 2.9 % + 30¢ = 44¢, since Stripe told none).
    said(tg, 7003, "was declined: declined by an admin").await;
    said(tg, 7003, "is on its way back").await;
    assert_eq!(
        shop.stripe
            .refunds()
            .iter()
            .map(|r| r.1)
            .collect::<Vec<_>>(),
        vec![456]
    );
    tg.message(&chat, cy, "/balance");
    said_times(tg, 7003, "Your balance: 0 credits", 3).await;
    shop.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_event_the_typed_parser_refuses_is_still_applied_once() {
    let Some(shop) = open(
        Backend::Sqlite,
        "payments::lenient",
        &[("TELEGRAM_PAYMENT_RAILS", "stripe")],
    )
    .await
    else {
        return;
    };
    let (di, chat) = (7004, Chat::private(7004));
    let tg = &shop.telegram;
    tg.message(&chat, di, "/buy small");
    said(tg, 7004, "Pay securely with Stripe").await;
    let session = shop.stripe.sessions()[0].clone();
    // Far fewer fields than async-stripe's CheckoutSession requires (as an event rendered for
    // another API version might be): it is Stripe's, signed, and is read for what we act on.
    let bare = shop.stripe.event(
        "checkout.session.completed",
        serde_json::json!({
            "id": session.id, "object": "checkout.session",
            "client_reference_id": session.client_reference_id,
            "payment_status": "paid", "payment_intent": session.payment_intent,
        }),
    );
    assert_eq!(shop.deliver(&bare).await, 200);
    assert_eq!(shop.deliver(&bare).await, 200);
    said(tg, 7004, "150 credits added").await;
    tg.message(&chat, di, "/balance");
    said(tg, 7004, "Your balance: 150 credits").await;
    assert_eq!(count(tg, 7004, "credits added"), 1);
    // The pages Checkout returns people to say where the credits arrive; nothing depends on them.
    for (path, words) in [
        ("/checkout/success?order=1", "Return to the chat"),
        ("/checkout/cancel?order=1", "No money was taken"),
    ] {
        let page = shop
            .http
            .get(format!("http://{}{path}", shop.app.address))
            .send()
            .await
            .expect("page");
        assert_eq!(page.status().as_u16(), 200);
        assert!(page.text().await.expect("body").contains(words));
    }
    // A tampered copy is still refused: the signature is checked before anything is read.
    let tampered = bare.replace("\"paid\"", "\"paid\" ");
    assert_eq!(
        shop.post(&tampered, Some(&sign(&bare, SECRET, now())))
            .await,
        400
    );
    shop.finish().await;
}

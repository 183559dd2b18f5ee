//! A fake of the Stripe API and of Stripe's webhook sender.
//!
//! API (form-encoded requests, JSON answers, `{"error": {...}}` bodies like Stripe's):
//! `POST /v1/checkout/sessions`, `POST /v1/refunds`, `GET /v1/balance_transactions/{id}`.
//! Strictness: the secret key is required as a bearer token (401 otherwise); an
//! `Idempotency-Key` reused with different parameters is a 400 `idempotency_error`, reused with
//! the same ones replays the first answer; a refund above what is left of the charge is a 400
//! `amount_too_large`; a refund of a fully refunded charge is `charge_already_refunded`.
//! Objects carry every field async-stripe requires, shaped like Stripe's API fixtures.
//!
//! Events come at the API version the webhook endpoint was created with; async-stripe
//! 1.0.0-rc.10 is generated for `2026-09-30.endive` (`stripe_shared::version::VERSION`) and
//! sends it as `Stripe-Version` on every request, so the fake's events carry that version and
//! its API answers a request naming another with 400 `invalid_request_error`, as a pinned
//! integration should never send one (<https://docs.stripe.com/api/versioning>,
//! <https://docs.stripe.com/webhooks/versioning>).
//!
//! Events: [`FakeStripe::event`] builds an event the way Stripe does and [`sign`] signs a body
//! with Stripe's scheme (`t=…,v1=HMAC-SHA256(secret, "t.body")`), written here from Stripe's
//! documentation rather than taken from the client under test.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use axum::{
    Form, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use hmac::{Hmac, KeyInit as _, Mac as _};
use serde_json::{Value, json};
use sha2::Sha256;

/// The API version async-stripe 1.0.0-rc.10 is generated for.
pub const API_VERSION: &str = "2026-09-30.endive";

use crate::Server;

/// A checkout session the bot created, as the fake keeps it.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub client_reference_id: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub amount: u64,
    pub currency: String,
    pub success_url: String,
    pub payment_intent: String,
    pub charge: String,
}

impl Session {
    /// A paid Checkout Session for the bot's order `order` (its `client_reference_id`), as if
    /// the bot had created it: for tests and benchmarks that make orders in the store directly.
    pub fn for_order(order: impl std::fmt::Display, amount: u64, currency: &str) -> Session {
        Session {
            id: format!("cs_test_{order}"),
            client_reference_id: Some(order.to_string()),
            metadata: BTreeMap::new(),
            amount,
            currency: currency.into(),
            success_url: "https://bot.example.org/checkout/success".into(),
            payment_intent: format!("pi_test_{order}"),
            charge: format!("ch_test_{order}"),
        }
    }
}

#[derive(Debug, Default)]
struct Fake {
    key: String,
    sessions: Vec<Session>,
    /// charge id → (amount, refunded so far)
    charges: BTreeMap<String, (u64, u64)>,
    refunds: Vec<(String, u64)>,
    refuse_refunds: Option<String>,
    idempotency: BTreeMap<String, (Vec<(String, String)>, Value)>,
    fees: BTreeMap<String, u64>,
    /// Price ids the account has: id → (unit amount, currency).
    prices: BTreeMap<String, (u64, String)>,
    next: u64,
}

type Shared = Arc<Mutex<Fake>>;

/// A running fake Stripe API.
#[derive(Debug)]
pub struct FakeStripe {
    server: Server,
    state: Shared,
}

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, Fake> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn error(status: u16, kind: &str, code: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        [("content-type", "application/json")],
        json!({ "error": { "type": kind, "code": code, "message": message } }).to_string(),
    )
        .into_response()
}

fn ok(value: &Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        value.to_string(),
    )
        .into_response()
}

impl FakeStripe {
    /// Starts the fake; `key` is the only secret key it accepts.
    pub async fn start(key: &str) -> FakeStripe {
        let state: Shared = Arc::new(Mutex::new(Fake {
            key: key.to_string(),
            ..Fake::default()
        }));
        let router = Router::new()
            .route("/v1/checkout/sessions", post(create_session))
            .route("/v1/refunds", post(create_refund))
            .route("/v1/balance_transactions/{id}", get(balance_transaction))
            .with_state(state.clone());
        FakeStripe {
            server: Server::start(router).await,
            state,
        }
    }

    /// What to give as `STRIPE_API_URL`.
    pub fn url(&self) -> String {
        self.server.origin()
    }

    /// The sessions created so far.
    pub fn sessions(&self) -> Vec<Session> {
        lock(&self.state).sessions.clone()
    }

    /// Refunds made so far: (refund id, amount).
    pub fn refunds(&self) -> Vec<(String, u64)> {
        lock(&self.state).refunds.clone()
    }

    /// Makes refunds fail the way Stripe refuses them (400 with `message`).
    pub fn refuse_refunds(&self, message: Option<&str>) {
        lock(&self.state).refuse_refunds = message.map(str::to_string);
    }

    /// The fee Stripe reports for a charge's balance transaction (`txn_<charge>`).
    pub fn set_fee(&self, charge: &str, fee: u64) {
        lock(&self.state).fees.insert(format!("txn_{charge}"), fee);
    }

    /// Adds a Price the account sells (`price_…`); sessions naming another price are refused.
    pub fn add_price(&self, id: &str, amount: u64, currency: &str) {
        lock(&self.state)
            .prices
            .insert(id.to_string(), (amount, currency.to_string()));
    }

    /// How much of a charge has been refunded.
    pub fn refunded(&self, charge: &str) -> u64 {
        lock(&self.state).charges.get(charge).map_or(0, |c| c.1)
    }

    /// An event of `kind` about `object`, with a fresh id, as Stripe sends it.
    pub fn event(&self, kind: &str, object: Value) -> String {
        let mut fake = lock(&self.state);
        fake.next += 1;
        json!({
            "id": format!("evt_test_{:06}", fake.next),
            "object": "event",
            "api_version": API_VERSION,
            "created": 1_764_064_800,
            "data": { "object": object },
            "livemode": false,
            "pending_webhooks": 1,
            "request": { "id": null, "idempotency_key": null },
            "type": kind,
        })
        .to_string()
    }

    /// The session as a `checkout.session.*` event shows it once paid (or not, for
    /// `payment_status` "unpaid").
    pub fn session_object(&self, session: &Session, payment_status: &str) -> Value {
        checkout_session(session, "complete", payment_status)
    }

    /// The session's charge as `charge.*` events show it.
    pub fn charge_object(&self, session: &Session) -> Value {
        let refunded = self.refunded(&session.charge);
        charge(session, refunded)
    }

    /// A dispute of the session's charge.
    pub fn dispute_object(&self, session: &Session) -> Value {
        json!({
            "id": format!("dp_{}", session.charge), "object": "dispute",
            "amount": session.amount, "balance_transactions": [], "charge": session.charge,
            "created": 1_764_064_800, "currency": session.currency,
            "enhanced_eligibility_types": [],
            "evidence": { "enhanced_evidence": {} },
            "evidence_details": { "due_by": 1_765_000_000, "has_evidence": false, "past_due": false,
                                  "submission_count": 0, "enhanced_eligibility": {} },
            "is_charge_refundable": false, "livemode": false, "metadata": {},
            "payment_intent": session.payment_intent, "reason": "fraudulent",
            "status": "needs_response",
        })
    }
}

/// Signs `body` as Stripe does: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`.
pub fn sign(body: &str, secret: &str, timestamp: i64) -> String {
    format!("t={timestamp},v1={}", signature(body, secret, timestamp))
}

/// The `v1` value alone, for headers carrying several signatures (secret rotation).
pub fn signature(body: &str, secret: &str, timestamp: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{timestamp}.{body}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn checkout_session(session: &Session, status: &str, payment_status: &str) -> Value {
    json!({
        "id": session.id, "object": "checkout.session",
        "adaptive_pricing": { "enabled": false },
        "after_expiration": null, "allow_promotion_codes": null,
        "amount_subtotal": session.amount, "amount_total": session.amount,
        "automatic_tax": { "enabled": false, "liability": null, "status": null, "provider": null },
        "billing_address_collection": null, "cancel_url": null,
        "client_reference_id": session.client_reference_id, "client_secret": null,
        "collected_information": null, "consent": null, "consent_collection": null,
        "created": 1_764_064_800, "currency": session.currency, "custom_fields": [],
        "custom_text": { "after_submit": null, "shipping_address": null, "submit": null,
                         "terms_of_service_acceptance": null },
        "customer": null, "customer_creation": "if_required", "customer_details": null,
        "customer_email": null, "discounts": [], "expires_at": 1_764_151_200,
        "invoice": null, "invoice_creation": null, "livemode": false, "locale": null,
        "metadata": session.metadata, "mode": "payment",
        "payment_intent": if payment_status == "paid" { Value::from(session.payment_intent.clone()) } else { Value::Null },
        "payment_link": null, "payment_method_collection": "if_required",
        "payment_method_configuration_details": null, "payment_method_options": {},
        "payment_method_types": ["card"], "payment_status": payment_status,
        "phone_number_collection": { "enabled": false }, "recovered_from": null,
        "saved_payment_method_options": null, "setup_intent": null,
        "shipping_address_collection": null, "shipping_cost": null, "shipping_options": [],
        "status": status, "submit_type": null, "subscription": null,
        "success_url": session.success_url, "total_details": null, "ui_mode": "hosted",
        "url": if status == "open" { Value::from(format!("https://checkout.stripe.com/c/pay/{}", session.id)) } else { Value::Null },
        "wallet_options": null,
    })
}

fn charge(session: &Session, refunded: u64) -> Value {
    json!({
        "id": session.charge, "object": "charge",
        "amount": session.amount, "amount_captured": session.amount,
        "amount_refunded": refunded, "application": null, "application_fee": null,
        "application_fee_amount": null, "balance_transaction": format!("txn_{}", session.charge),
        "billing_details": { "address": null, "email": null, "name": null, "phone": null,
                             "tax_id": null },
        "calculated_statement_descriptor": "IMAGEGPT", "captured": true,
        "created": 1_764_064_800, "currency": session.currency, "customer": null,
        "description": null, "disputed": false, "failure_balance_transaction": null,
        "failure_code": null, "failure_message": null, "fraud_details": {},
        "livemode": false, "metadata": session.metadata, "on_behalf_of": null,
        "outcome": null, "paid": true, "payment_intent": session.payment_intent,
        "payment_method": "pm_card_visa", "payment_method_details": null,
        "receipt_email": null, "receipt_number": null, "receipt_url": null,
        "refunded": refunded >= session.amount,
        "refunds": { "object": "list", "data": [], "has_more": false,
                     "url": format!("/v1/charges/{}/refunds", session.charge) },
        "review": null, "shipping": null, "source_transfer": null,
        "statement_descriptor": null, "statement_descriptor_suffix": null,
        "status": "succeeded", "transfer_data": null, "transfer_group": null,
    })
}

fn authorised(fake: &Fake, headers: &HeaderMap) -> Result<(), Response> {
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let version = headers.get("stripe-version").and_then(|v| v.to_str().ok());
    if given == Some(fake.key.as_str()) {
        match version {
            None | Some(API_VERSION) => Ok(()),
            Some(other) => Err(error(
                400,
                "invalid_request_error",
                "invalid_request_error",
                &format!("Invalid Stripe API version: {other}"),
            )),
        }
    } else {
        Err(error(
            401,
            "invalid_request_error",
            "api_key_invalid",
            "Invalid API Key provided.",
        ))
    }
}

/// Replays an earlier answer under the same `Idempotency-Key`, or refuses a reuse with other
/// parameters, like Stripe.
fn replay(fake: &Fake, headers: &HeaderMap, form: &[(String, String)]) -> Option<Response> {
    let key = headers.get("idempotency-key")?.to_str().ok()?;
    let (params, answer) = fake.idempotency.get(key)?;
    Some(if params == form {
        ok(answer)
    } else {
        error(
            400,
            "idempotency_error",
            "idempotency_key_in_use",
            "Keys for idempotent requests can only be used with the same parameters they were first used with.",
        )
    })
}

fn remember(fake: &mut Fake, headers: &HeaderMap, form: Vec<(String, String)>, answer: &Value) {
    if let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
        fake.idempotency
            .insert(key.to_string(), (form, answer.clone()));
    }
}

/// Makes the object a `POST` creates, or refuses as Stripe would.
type Create = fn(&mut Fake, &[(String, String)]) -> Result<Value, Response>;

/// A `POST` as Stripe handles one: the key is checked, an `Idempotency-Key` seen before replays
/// (or refuses) the first answer, and a new answer is remembered under it.
fn handle_post(
    state: &Shared,
    headers: &HeaderMap,
    form: Vec<(String, String)>,
    create: Create,
) -> Response {
    let mut fake = lock(state);
    if let Err(refused) = authorised(&fake, headers) {
        return refused;
    }
    if let Some(replayed) = replay(&fake, headers, &form) {
        return replayed;
    }
    match create(&mut fake, &form) {
        Ok(answer) => {
            remember(&mut fake, headers, form, &answer);
            ok(&answer)
        }
        Err(refused) => refused,
    }
}

async fn create_session(
    State(state): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    handle_post(&state, &headers, form, new_session)
}

async fn create_refund(
    State(state): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    handle_post(&state, &headers, form, new_refund)
}

fn new_session(fake: &mut Fake, form: &[(String, String)]) -> Result<Value, Response> {
    let get = |key: &str| form.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let missing = |param: &str| {
        error(
            400,
            "invalid_request_error",
            "parameter_missing",
            &format!("Missing required param: {param}."),
        )
    };
    if get("mode").as_deref() != Some("payment") {
        return Err(missing("mode"));
    }
    let Some(success_url) = get("success_url") else {
        return Err(missing("success_url"));
    };
    if !success_url.starts_with("http") {
        return Err(error(
            400,
            "invalid_request_error",
            "url_invalid",
            "Not a valid URL",
        ));
    }
    if get("line_items[0][quantity]").is_none() {
        return Err(missing("line_items[0][quantity]"));
    }
    let (amount, currency) = match (
        get("line_items[0][price]"),
        get("line_items[0][price_data][currency]"),
        get("line_items[0][price_data][unit_amount]").and_then(|a| a.parse::<u64>().ok()),
    ) {
        (Some(price), _, _) => match fake.prices.get(&price) {
            Some((amount, currency)) => (*amount, currency.clone()),
            None => {
                return Err(error(
                    400,
                    "invalid_request_error",
                    "resource_missing",
                    &format!("No such price: '{price}'"),
                ));
            }
        },
        (None, Some(currency), Some(amount)) if amount > 0 => {
            if get("line_items[0][price_data][product_data][name]").is_none() {
                return Err(missing("line_items[0][price_data][product_data][name]"));
            }
            (amount, currency)
        }
        _ => return Err(missing("line_items[0][price]")),
    };
    fake.next += 1;
    let n = fake.next;
    let metadata: BTreeMap<String, String> = form
        .iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix("metadata[")?.strip_suffix(']')?;
            Some((name.to_string(), v.clone()))
        })
        .collect();
    // Stripe's metadata limits: 50 keys, names up to 40 characters, values up to 500.
    if metadata.len() > 50
        || metadata
            .iter()
            .any(|(k, v)| k.chars().count() > 40 || v.chars().count() > 500)
    {
        return Err(error(
            400,
            "invalid_request_error",
            "parameter_invalid_string",
            "Metadata can have up to 50 keys, with names up to 40 characters and values up to 500.",
        ));
    }
    let session = Session {
        id: format!("cs_test_{n:024}"),
        client_reference_id: get("client_reference_id"),
        metadata,
        amount,
        currency,
        success_url,
        payment_intent: format!("pi_test_{n:020}"),
        charge: format!("ch_test_{n:020}"),
    };
    fake.charges
        .insert(session.charge.clone(), (session.amount, 0));
    let answer = checkout_session(&session, "open", "unpaid");
    fake.sessions.push(session);
    Ok(answer)
}

fn new_refund(fake: &mut Fake, form: &[(String, String)]) -> Result<Value, Response> {
    let get = |key: &str| form.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let charge = match (get("payment_intent"), get("charge")) {
        (Some(intent), _) => fake
            .sessions
            .iter()
            .find(|s| s.payment_intent == intent)
            .map(|s| s.charge.clone()),
        (None, Some(charge)) => Some(charge),
        (None, None) => {
            return Err(error(
                400,
                "invalid_request_error",
                "parameter_missing",
                "One of the following params should be provided for this request: payment_intent or charge.",
            ));
        }
    };
    let Some((total, refunded)) = charge.as_ref().and_then(|c| fake.charges.get(c)).copied() else {
        return Err(error(
            404,
            "invalid_request_error",
            "resource_missing",
            "No such payment_intent",
        ));
    };
    if let Some(message) = fake.refuse_refunds.clone() {
        return Err(error(
            400,
            "invalid_request_error",
            "charge_disputed",
            &message,
        ));
    }
    if refunded >= total {
        return Err(error(
            400,
            "invalid_request_error",
            "charge_already_refunded",
            "Charge has already been refunded.",
        ));
    }
    let amount = get("amount")
        .and_then(|a| a.parse::<u64>().ok())
        .unwrap_or(total - refunded);
    if amount == 0 || amount > total - refunded {
        return Err(error(
            400,
            "invalid_request_error",
            "amount_too_large",
            "Refund amount is greater than unrefunded amount on charge.",
        ));
    }
    let charge = charge.unwrap_or_default();
    fake.charges
        .insert(charge.clone(), (total, refunded + amount));
    fake.next += 1;
    let id = format!("re_test_{:020}", fake.next);
    fake.refunds.push((id.clone(), amount));
    let answer = json!({
        "id": id, "object": "refund", "amount": amount, "balance_transaction": null,
        "charge": charge, "created": 1_764_064_800, "currency": "usd",
        "destination_details": null, "metadata": {}, "payment_intent": get("payment_intent"),
        "reason": null, "receipt_number": null, "source_transfer_reversal": null,
        "status": "succeeded", "transfer_reversal": null,
    });
    Ok(answer)
}

async fn balance_transaction(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let fake = lock(&state);
    if let Err(refused) = authorised(&fake, &headers) {
        return refused;
    }
    let Some(fee) = fake.fees.get(&id).copied() else {
        return error(
            404,
            "invalid_request_error",
            "resource_missing",
            &format!("No such balance transaction: '{id}'"),
        );
    };
    ok(&json!({
        "id": id, "object": "balance_transaction", "amount": 500, "available_on": 1_764_600_000,
        "balance_type": "payments", "created": 1_764_064_800, "currency": "usd",
        "description": null, "exchange_rate": null, "fee": fee, "fee_details": [],
        "net": 500 - i64::try_from(fee).unwrap_or(0), "reporting_category": "charge",
        "source": id.trim_start_matches("txn_"), "status": "pending", "type": "charge",
    }))
}

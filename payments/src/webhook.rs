//! `POST /stripe/webhook`: the raw body is verified against `Stripe-Signature` with
//! async-stripe (HMAC-SHA256, any of several `v1` signatures, 5-minute tolerance) before
//! anything is read from it; then the event becomes a core [`PaymentEvent`] and is applied once
//! per event id. Missing, wrong or stale signatures and unreadable events get 400 and change
//! nothing; bodies over 1 MB get 413; events we do not act on get 200. Also the two small pages
//! Checkout sends people back to.

use std::sync::Arc;

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, StatusCode},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
};
use bot_core::{
    PurchaseId,
    payments::{EventOutcome, PaymentEvent},
    service::Service,
};
use secrecy::{ExposeSecret as _, SecretString};
use stripe_shared::CheckoutSessionPaymentStatus;
use stripe_webhook::{EventObject, Webhook, WebhookError};

/// The largest webhook body taken; Stripe's events are far smaller.
pub const MAX_BODY: usize = 1024 * 1024;

#[derive(Clone)]
struct Hook {
    service: Arc<Service>,
    secret: Arc<SecretString>,
}

/// The webhook route (when a signing secret is configured) and the Checkout return pages.
pub fn router(service: Arc<Service>, secret: Option<SecretString>) -> Router {
    let pages = Router::new()
        .route("/checkout/success", get(success))
        .route("/checkout/cancel", get(cancel));
    let Some(secret) = secret else {
        return pages;
    };
    let hook = Router::new()
        .route("/stripe/webhook", post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(Hook {
            service,
            secret: Arc::new(secret),
        });
    pages.merge(hook)
}

async fn receive(State(hook): State<Hook>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(signature) = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
    else {
        return refuse("missing Stripe-Signature header");
    };
    let Ok(payload) = std::str::from_utf8(&body) else {
        return refuse("the body is not UTF-8");
    };
    let (id, kind, translated) = match Webhook::construct_event(
        payload,
        signature,
        hook.secret.expose_secret(),
    ) {
        Ok(event) => (
            event.id.to_string(),
            event.type_.as_str().to_string(),
            translate(&event.data.object),
        ),
        Err(WebhookError::BadTimestamp(_)) => {
            return refuse("the signature is older than 5 minutes");
        }
        // async-stripe checks the signature and its age before it parses, so this event is
        // Stripe's; its object just does not match the library's types (another API
        // version). Read the few fields we act on ourselves rather than refuse it forever.
        Err(WebhookError::BadParse(why)) => match lenient(payload) {
            Some(read) => {
                tracing::warn!(%why, event = %read.0, "a Stripe event read without the typed parser");
                read
            }
            None => return refuse("the event could not be read"),
        },
        Err(_) => return refuse("the signature does not match"),
    };
    match hook.service.payment_event(&id, &kind, translated).await {
        Ok(outcome) => {
            match outcome {
                EventOutcome::Ignored(why) => {
                    tracing::info!(event = %id, %kind, why, "Stripe event recorded, nothing to do");
                }
                EventOutcome::Duplicate => {
                    tracing::debug!(event = %id, %kind, "Stripe event seen before");
                }
                EventOutcome::Applied => {
                    tracing::info!(event = %id, %kind, "Stripe event applied");
                }
            }
            (StatusCode::OK, "{\"received\":true}").into_response()
        }
        Err(error) => {
            // Nothing was written; Stripe retries with backoff.
            tracing::error!(event = %id, %kind, error = format!("{error:#}"), "applying a Stripe event failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not apply the event",
            )
                .into_response()
        }
    }
}

fn refuse(why: &'static str) -> Response {
    tracing::info!(why, "Stripe webhook refused");
    (StatusCode::BAD_REQUEST, why).into_response()
}

fn purchase_id(reference: Option<&str>, metadata: Option<&str>) -> Option<PurchaseId> {
    reference
        .or(metadata)
        .and_then(|id| id.parse::<i64>().ok())
        .filter(|id| *id > 0)
        .map(PurchaseId::from_raw)
}

/// The part of an event the core acts on; `None` for everything else.
fn translate(object: &EventObject) -> Option<PaymentEvent> {
    match object {
        EventObject::CheckoutSessionCompleted(session)
        | EventObject::CheckoutSessionAsyncPaymentSucceeded(session)
        | EventObject::CheckoutSessionAsyncPaymentFailed(session) => {
            let purchase = purchase_id(
                session.client_reference_id.as_deref(),
                session
                    .metadata
                    .as_ref()
                    .and_then(|m| m.get("purchase"))
                    .map(String::as_str),
            )?;
            let session_id = session.id.to_string();
            match object {
                EventObject::CheckoutSessionAsyncPaymentFailed(_) => Some(PaymentEvent::Failed {
                    purchase,
                    session: session_id,
                }),
                // A completed session with a delayed payment method is not paid yet; its
                // async_payment_succeeded event credits it.
                EventObject::CheckoutSessionCompleted(_)
                    if session.payment_status != CheckoutSessionPaymentStatus::Paid =>
                {
                    None
                }
                _ => Some(PaymentEvent::Paid {
                    purchase,
                    session: session_id,
                    payment_intent: session.payment_intent.as_ref().map(|p| p.id().to_string()),
                }),
            }
        }
        EventObject::ChargeSucceeded(charge)
        | EventObject::ChargeUpdated(charge)
        | EventObject::ChargeCaptured(charge)
        | EventObject::ChargeRefunded(charge) => Some(PaymentEvent::Charge {
            purchase: purchase_id(None, charge.metadata.get("purchase").map(String::as_str)),
            payment_intent: charge.payment_intent.as_ref().map(|p| p.id().to_string()),
            charge: charge.id.to_string(),
            balance_transaction: charge
                .balance_transaction
                .as_ref()
                .map(|b| b.id().to_string()),
            amount_refunded: u64::try_from(charge.amount_refunded).unwrap_or(0),
        }),
        EventObject::ChargeDisputeCreated(dispute) => Some(PaymentEvent::Disputed {
            purchase: purchase_id(None, dispute.metadata.get("purchase").map(String::as_str)),
            payment_intent: dispute.payment_intent.as_ref().map(|p| p.id().to_string()),
            charge: dispute.charge.id().to_string(),
        }),
        _ => None,
    }
}

/// The fields we act on, read from the raw JSON: for an event whose object async-stripe's
/// types do not accept. `None` when the body is not an event at all.
fn lenient(payload: &str) -> Option<(String, String, Option<PaymentEvent>)> {
    use serde_json::Value;
    let event: Value = serde_json::from_str(payload).ok()?;
    let id = event.get("id")?.as_str()?.to_string();
    let kind = event.get("type")?.as_str()?.to_string();
    let object = event.get("data")?.get("object")?;
    let text = |value: Option<&Value>| -> Option<String> {
        match value? {
            Value::String(s) => Some(s.clone()),
            // An expanded object: its id.
            Value::Object(o) => o.get("id")?.as_str().map(str::to_string),
            _ => None,
        }
    };
    let field = |name: &str| text(object.get(name));
    let metadata_purchase = object
        .get("metadata")
        .and_then(|m| m.get("purchase"))
        .and_then(Value::as_str);
    let translated = match kind.as_str() {
        "checkout.session.completed"
        | "checkout.session.async_payment_succeeded"
        | "checkout.session.async_payment_failed" => {
            let purchase = purchase_id(
                object.get("client_reference_id").and_then(Value::as_str),
                metadata_purchase,
            );
            let session = field("id");
            match (purchase, session) {
                (Some(purchase), Some(session)) if kind.ends_with("failed") => {
                    Some(PaymentEvent::Failed { purchase, session })
                }
                (Some(_), Some(_))
                    if kind.ends_with("completed")
                        && object.get("payment_status").and_then(Value::as_str) != Some("paid") =>
                {
                    None
                }
                (Some(purchase), Some(session)) => Some(PaymentEvent::Paid {
                    purchase,
                    session,
                    payment_intent: field("payment_intent"),
                }),
                _ => None,
            }
        }
        "charge.succeeded" | "charge.updated" | "charge.captured" | "charge.refunded" => {
            field("id").map(|charge| PaymentEvent::Charge {
                purchase: purchase_id(None, metadata_purchase),
                payment_intent: field("payment_intent"),
                charge,
                balance_transaction: field("balance_transaction"),
                amount_refunded: object
                    .get("amount_refunded")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
            })
        }
        "charge.dispute.created" => field("charge").map(|charge| PaymentEvent::Disputed {
            purchase: purchase_id(None, metadata_purchase),
            payment_intent: field("payment_intent"),
            charge,
        }),
        _ => None,
    };
    Some((id, kind, translated))
}

const PAGE_STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;\
                          padding:0 1rem;line-height:1.5}";

async fn success() -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width\"><title>Payment received</title><style>{PAGE_STYLE}</style>\
         </head><body><h1>Thank you!</h1><p>Your payment went through. Return to the chat: the \
         bot tells you there as soon as your credits are added.</p></body></html>"
    ))
}

async fn cancel() -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width\"><title>Payment cancelled</title><style>{PAGE_STYLE}</style>\
         </head><body><h1>Payment cancelled</h1><p>No money was taken. Return to the chat and \
         send /buy whenever you like.</p></body></html>"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(body: &str) -> Option<PaymentEvent> {
        lenient(body).and_then(|(_, _, event)| event)
    }

    #[test]
    fn events_the_typed_parser_refuses_are_read_for_the_fields_we_act_on() {
        assert_eq!(lenient("{\"id\": \"evt_1\", \"object\":"), None);
        assert_eq!(lenient("[]"), None);
        let paid = r#"{"id":"evt_1","type":"checkout.session.completed","data":{"object":
            {"id":"cs_1","client_reference_id":"7","payment_status":"paid",
             "payment_intent":{"id":"pi_1","object":"payment_intent"}}}}"#;
        assert_eq!(
            read(paid),
            Some(PaymentEvent::Paid {
                purchase: PurchaseId::from_raw(7),
                session: "cs_1".into(),
                payment_intent: Some("pi_1".into()),
            })
        );
        let unpaid = paid.replace("\"paid\"", "\"unpaid\"");
        assert_eq!(read(&unpaid), None);
        let (id, kind, _) = lenient(&unpaid).expect("still an event");
        assert_eq!(
            (id.as_str(), kind.as_str()),
            ("evt_1", "checkout.session.completed")
        );
        let refunded = r#"{"id":"evt_2","type":"charge.refunded","data":{"object":
            {"id":"ch_1","metadata":{"purchase":"7"},"amount_refunded":250,
             "balance_transaction":"txn_1","payment_intent":"pi_1"}}}"#;
        assert_eq!(
            read(refunded),
            Some(PaymentEvent::Charge {
                purchase: Some(PurchaseId::from_raw(7)),
                payment_intent: Some("pi_1".into()),
                charge: "ch_1".into(),
                balance_transaction: Some("txn_1".into()),
                amount_refunded: 250,
            })
        );
        let other = r#"{"id":"evt_3","type":"customer.created","data":{"object":{"id":"cus_1"}}}"#;
        assert_eq!(read(other), None);
    }
}

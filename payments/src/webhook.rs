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
use stripe_webhook::{Webhook, WebhookError};

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
    // async-stripe checks the signature and its age before it parses the object, so a body
    // that only fails to parse is Stripe's all the same (an event rendered for another API
    // version): it is read for the few fields we act on rather than refused forever.
    match Webhook::construct_event(payload, signature, hook.secret.expose_secret()) {
        Ok(_) => {}
        Err(WebhookError::BadParse(why)) => {
            tracing::info!(%why, "a Stripe event async-stripe's types do not accept");
        }
        Err(WebhookError::BadTimestamp(_)) => {
            return refuse("the signature is older than 5 minutes");
        }
        Err(_) => return refuse("the signature does not match"),
    }
    let Some((id, kind, translated)) = read_event(payload) else {
        return refuse("the event could not be read");
    };
    let metrics = bot_core::metrics::metrics();
    match hook.service.payment_event(&id, &kind, translated).await {
        Ok(outcome) => {
            metrics.webhook(
                &kind,
                match outcome {
                    EventOutcome::Ignored(_) => "ignored",
                    EventOutcome::Duplicate => "duplicate",
                    EventOutcome::Applied => "applied",
                },
            );
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
            metrics.webhook(&kind, "failed");
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
    bot_core::metrics::metrics().webhook("unverified", "refused");
    (StatusCode::BAD_REQUEST, why).into_response()
}

fn purchase_id(reference: Option<&str>, metadata: Option<&str>) -> Option<PurchaseId> {
    reference
        .or(metadata)
        .and_then(|id| id.parse::<i64>().ok())
        .filter(|id| *id > 0)
        .map(PurchaseId::from_raw)
}

/// The event's id and type and the part of it the core acts on, read from the verified body;
/// `None` when the body is not an event at all.
fn read_event(payload: &str) -> Option<(String, String, Option<PaymentEvent>)> {
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
        read_event(body).and_then(|(_, _, event)| event)
    }

    #[test]
    fn events_are_read_for_the_fields_we_act_on_whatever_else_they_carry() {
        assert_eq!(read_event("{\"id\": \"evt_1\", \"object\":"), None);
        assert_eq!(read_event("[]"), None);
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
        let (id, kind, _) = read_event(&unpaid).expect("still an event");
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

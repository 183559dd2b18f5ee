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
    let event = match Webhook::construct_event(payload, signature, hook.secret.expose_secret()) {
        Ok(event) => event,
        Err(WebhookError::BadTimestamp(_)) => {
            return refuse("the signature is older than 5 minutes");
        }
        Err(WebhookError::BadParse(why)) => {
            tracing::warn!(%why, "a signed Stripe event could not be read");
            return refuse("the event could not be read");
        }
        Err(_) => return refuse("the signature does not match"),
    };
    let kind = event.type_.as_str().to_string();
    let translated = translate(&event.data.object);
    match hook
        .service
        .payment_event(event.id.as_str(), &kind, translated)
        .await
    {
        Ok(outcome) => {
            match outcome {
                EventOutcome::Ignored(why) => {
                    tracing::info!(event = %event.id, %kind, why, "Stripe event recorded, nothing to do");
                }
                EventOutcome::Duplicate => {
                    tracing::debug!(event = %event.id, %kind, "Stripe event seen before");
                }
                EventOutcome::Applied => {
                    tracing::info!(event = %event.id, %kind, "Stripe event applied");
                }
            }
            (StatusCode::OK, "{\"received\":true}").into_response()
        }
        Err(error) => {
            // Nothing was written; Stripe retries with backoff.
            tracing::error!(event = %event.id, %kind, error = format!("{error:#}"), "applying a Stripe event failed");
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

//! The card rail: Stripe Checkout Sessions for packs, refunds, and the real fee of a charge.
//! Every call that creates something carries an idempotency key, so a retry never makes a second
//! session or a second refund.

use std::{collections::HashMap, time::Duration};

use bot_core::payments::{Checkout, PaymentError, PaymentFuture, PaymentRail, Purchase, Rail};
use bot_core::pricing::PricingConfig;
use secrecy::ExposeSecret as _;
use stripe::{Client, ClientBuilder, RequestStrategy, StripeError, StripeRequest as _};
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionLineItemsPriceData,
    CreateCheckoutSessionPaymentIntentData, ProductData,
};
use stripe_core::{balance_transaction::RetrieveBalanceTransaction, refund::CreateRefund};

use crate::{Error, StripeConfig};

/// Stripe, as a payment rail.
pub struct Stripe {
    client: Client,
    public_base_url: String,
    /// Configured Price ids by pack id; packs without one send their price inline.
    prices: HashMap<String, String>,
}

impl std::fmt::Debug for Stripe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client holds the secret key; say only where it points.
        f.debug_struct("Stripe")
            .field("public_base_url", &self.public_base_url)
            .finish_non_exhaustive()
    }
}

impl Stripe {
    /// A client for `config`'s key and API URL; Checkout returns people to `public_base_url`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when there is no key or the URL is not usable.
    pub fn new(
        config: &StripeConfig,
        public_base_url: &str,
        pricing: &PricingConfig,
    ) -> Result<Stripe, Error> {
        let key = config
            .secret_key
            .as_ref()
            .ok_or_else(|| Error::Config("STRIPE_SECRET_KEY is not set".into()))?;
        // async-stripe appends `v1/…` to the base as given.
        let base = format!("{}/", config.api_url.trim_end_matches('/'));
        let client = ClientBuilder::new(key.expose_secret())
            .url(base)
            .timeout(Duration::from_secs(config.timeout_seconds.max(1)))
            .app_info("imagegpt", Some(env!("CARGO_PKG_VERSION").into()), None)
            .build()
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(Stripe {
            client,
            public_base_url: public_base_url.trim_end_matches('/').to_string(),
            prices: pricing
                .packs
                .iter()
                .filter_map(|p| Some((p.id.clone(), p.stripe_price.clone()?)))
                .collect(),
        })
    }

    async fn create_session(
        &self,
        purchase: &Purchase,
        title: &str,
    ) -> Result<Checkout, PaymentError> {
        let id = purchase.id.to_string();
        let metadata = HashMap::from([
            ("purchase".to_string(), id.clone()),
            ("user".to_string(), purchase.user.to_string()),
            ("identity".to_string(), purchase.payer.clone()),
            ("pack".to_string(), purchase.pack.clone()),
        ]);
        let mut item = CreateCheckoutSessionLineItems::new();
        item.quantity = Some(1);
        match self.prices.get(&purchase.pack) {
            Some(price) => item.price = Some(price.clone()),
            None => {
                let currency: stripe_types::Currency = purchase.currency.parse().map_err(|_| {
                    PaymentError::Refused(format!("unknown currency {}", purchase.currency))
                })?;
                let mut data = CreateCheckoutSessionLineItemsPriceData::new(currency);
                data.unit_amount = Some(
                    i64::try_from(purchase.amount)
                        .map_err(|_| PaymentError::Refused("price too large".into()))?,
                );
                let mut product = ProductData::new(title);
                product.description = Some(format!("{} for imagegpt", purchase.credits));
                data.product_data = Some(product);
                item.price_data = Some(data);
            }
        }
        let mut intent = CreateCheckoutSessionPaymentIntentData::new();
        intent.metadata = Some(metadata.clone());
        let base = &self.public_base_url;
        let session = CreateCheckoutSession::new()
            .mode(stripe_shared::CheckoutSessionMode::Payment)
            .client_reference_id(id.clone())
            .metadata(metadata)
            .payment_intent_data(intent)
            .line_items(vec![item])
            .success_url(format!("{base}/checkout/success?order={id}"))
            .cancel_url(format!("{base}/checkout/cancel?order={id}"))
            .customize()
            .request_strategy(idempotent(&format!("imagegpt-checkout-{id}"))?)
            .send(&self.client)
            .await
            .map_err(payment_error)?;
        let url = session
            .url
            .ok_or_else(|| PaymentError::Unavailable("the session has no URL".into()))?;
        Ok(Checkout::Link {
            url,
            session: session.id.to_string(),
        })
    }

    async fn create_refund(
        &self,
        purchase: &Purchase,
        amount: u64,
        key: &str,
    ) -> Result<String, PaymentError> {
        let mut request = CreateRefund::new()
            .amount(
                i64::try_from(amount)
                    .map_err(|_| PaymentError::Refused("amount too large".into()))?,
            )
            .metadata(HashMap::from([
                ("purchase".to_string(), purchase.id.to_string()),
                ("key".to_string(), key.to_string()),
            ]));
        request = match (&purchase.stripe_payment_intent, &purchase.stripe_charge_id) {
            (Some(intent), _) => request.payment_intent(intent.clone()),
            (None, Some(charge)) => request.charge(charge.clone()),
            (None, None) => {
                return Err(PaymentError::Refused(
                    "Stripe has not told us which payment this was yet".into(),
                ));
            }
        };
        let refund = request
            .customize()
            .request_strategy(idempotent(key)?)
            .send(&self.client)
            .await
            .map_err(payment_error)?;
        match refund.status.as_deref() {
            Some("failed" | "canceled") => Err(PaymentError::Refused(
                refund
                    .failure_reason
                    .map(|r| r.replace('_', " "))
                    .unwrap_or_else(|| "Stripe could not make the refund".into()),
            )),
            _ => Ok(refund.id.to_string()),
        }
    }

    async fn charge_fee(&self, purchase: &Purchase) -> Result<Option<u64>, PaymentError> {
        let Some(txn) = &purchase.stripe_balance_transaction else {
            return Ok(None);
        };
        let txn = RetrieveBalanceTransaction::new(txn.as_str())
            .send(&self.client)
            .await
            .map_err(payment_error)?;
        Ok(u64::try_from(txn.fee).ok())
    }
}

fn idempotent(key: &str) -> Result<RequestStrategy, PaymentError> {
    Ok(RequestStrategy::Idempotent(
        stripe::IdempotencyKey::new(key).map_err(|e| PaymentError::Unavailable(e.to_string()))?,
    ))
}

/// Stripe's answer, in the rail's terms: a request Stripe understood and refused is a refusal
/// in its own words; anything else (auth, rate limit, outage, network) leaves the outcome open.
fn payment_error(error: StripeError) -> PaymentError {
    match error {
        StripeError::Stripe(errors, 400 | 402 | 404) => PaymentError::Refused(
            errors
                .message
                .clone()
                .unwrap_or_else(|| "Stripe refused the request".into()),
        ),
        StripeError::Stripe(errors, status) => PaymentError::Unavailable(format!(
            "Stripe answered {status}: {}",
            errors.message.as_deref().unwrap_or("no message")
        )),
        other => PaymentError::Unavailable(other.to_string()),
    }
}

impl PaymentRail for Stripe {
    fn rail(&self) -> Rail {
        Rail::Stripe
    }

    fn checkout<'a>(
        &'a self,
        purchase: &'a Purchase,
        title: &'a str,
    ) -> PaymentFuture<'a, Checkout> {
        Box::pin(self.create_session(purchase, title))
    }

    fn refund<'a>(
        &'a self,
        purchase: &'a Purchase,
        amount: u64,
        key: &'a str,
    ) -> PaymentFuture<'a, String> {
        Box::pin(self.create_refund(purchase, amount, key))
    }

    fn fee<'a>(&'a self, purchase: &'a Purchase) -> PaymentFuture<'a, Option<u64>> {
        Box::pin(self.charge_fee(purchase))
    }
}
